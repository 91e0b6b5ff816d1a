//! The modem driver and its CLI against hw-sim over real PTYs (and TCP): every profile,
//! and the faults the issue lists. Timeouts are short so a failure is quick; waits are
//! on conditions with deadlines, never blind sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gsmgw::at::SessionConfig;
use gsmgw::modem::{
    ChannelSink, Cnmi, Delivery, Endpoint, EndpointOpener, ModemConfig, ModemError, ModemHandle,
    ModemState, Origin,
};
use gsmgw::pdu::{Pdu, Tpdu};
use hw_sim::fault::NetworkSettings;
use hw_sim::profile::Profile;
use hw_sim::{Bank, BankConfig, BankHandle, Fault, ProfileName, Scenario};
use serde_json::Value;
use tokio::sync::mpsc;

struct Bench {
    bank: Option<BankHandle>,
    dir: tempfile::TempDir,
}

impl Bench {
    async fn start(modems: usize, profile: ProfileName, f: impl FnOnce(&mut BankConfig)) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = BankConfig {
            modems,
            profile,
            link_dir: dir.path().join("links"),
            latency: (0, 0),
            ..BankConfig::default()
        };
        f(&mut cfg);
        let bank = Bank::start(cfg).await.unwrap();
        Bench {
            bank: Some(bank),
            dir,
        }
    }

    fn bank(&self) -> &BankHandle {
        self.bank.as_ref().unwrap()
    }

    fn link(&self, i: usize) -> PathBuf {
        self.dir.path().join("links").join(format!("modem{i}"))
    }

    fn sim_state(&self, i: usize) -> String {
        self.bank().modems()[i].state.clone()
    }

    async fn stop(mut self) {
        if let Some(b) = self.bank.take() {
            b.shutdown().await;
        }
    }
}

fn config() -> ModemConfig {
    ModemConfig {
        timeouts: gsmgw::config::Timeouts {
            command: Duration::from_millis(800),
            storage: Duration::from_millis(800),
            send: Duration::from_secs(3),
            cfun: Duration::from_millis(800),
            sim_wait: Duration::from_secs(4),
            sink: Duration::from_secs(2),
            health_interval: Duration::from_secs(30),
            reset_wait: Duration::from_millis(300),
            reopen_backoff: (Duration::from_millis(50), Duration::from_millis(400)),
            ..gsmgw::config::Timeouts::default()
        },
        session: SessionConfig {
            drain_quiet: Duration::from_millis(50),
            drain_max: Duration::from_millis(400),
            resync_timeout: Duration::from_millis(200),
            resync_attempts: 2,
            ..SessionConfig::default()
        },
        reopen_attempts: 20,
        ..ModemConfig::default()
    }
}

/// Sends `text` through a modem task as the daemon does (planned by `plan_parts`, one
/// job); the MR of each part, as the task reported it.
async fn send_text(
    h: &ModemHandle,
    to: &str,
    text: impl AsRef<str>,
    status_report: bool,
) -> Result<Vec<u8>, ModemError> {
    let mut opts = gsmgw::pdu::SubmitOptions::new(gsmgw::pdu::Address::parse(to)?);
    opts.status_report = status_report;
    let (_, parts) = gsmgw::pdu::plan::plan_parts(text.as_ref(), &opts)?;
    let (progress, mut rx) = mpsc::unbounded_channel();
    h.send(gsmgw::dispatch::SendJob {
        message_id: 1,
        parts,
        progress,
    })
    .await?;
    let mut mrs = Vec::new();
    while let Ok(p) = rx.try_recv() {
        mrs.push(p.mr);
    }
    Ok(mrs)
}

fn opener(path: &Path) -> Arc<EndpointOpener> {
    Arc::new(EndpointOpener::new(Endpoint::Serial(path.to_owned())))
}

async fn wait_state(
    h: &ModemHandle,
    within: Duration,
    want: impl Fn(&ModemState) -> bool,
) -> ModemState {
    let mut rx = h.watch_state();
    match tokio::time::timeout(within, rx.wait_for(|s| want(s))).await {
        Ok(Ok(s)) => s.clone(),
        _ => panic!("state not reached within {within:?}; now {:?}", h.state()),
    }
}

async fn ready(h: &ModemHandle) {
    wait_state(h, Duration::from_secs(8), |s| *s == ModemState::Ready).await;
}

async fn next_delivery(rx: &mut mpsc::Receiver<Delivery>, within: Duration) -> Delivery {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("a delivery in time")
        .expect("sink channel open")
}

fn deliver_text(d: &Delivery) -> String {
    match &d.message.decoded {
        Ok(Pdu {
            tpdu: Tpdu::Deliver(m),
            ..
        }) => m.user_data.text().unwrap_or_default(),
        other => panic!("not an SMS-DELIVER: {other:?}"),
    }
}

/// Runs the gsmgw binary off the runtime; (exit code, stdout, stderr).
async fn gsmgw(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"))
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

const PROFILES: [ProfileName; 5] = [
    ProfileName::Generic,
    ProfileName::Huawei,
    ProfileName::Simcom,
    ProfileName::Quectel,
    ProfileName::Okfail,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_prints_the_identity_hw_sim_reports_for_every_profile() {
    let b = Bench::start(5, ProfileName::Mixed, |c| c.tcp_base = None).await;
    let infos = b.bank().modems();
    for (i, profile) in PROFILES.iter().enumerate() {
        let link = b.link(i).to_string_lossy().into_owned();
        let (code, out, err) = gsmgw(vec!["probe".into(), link.clone()]).await;
        assert_eq!(code, 0, "probe {profile:?}: {err}");
        let j: Value = serde_json::from_str(&out).unwrap();
        let info = &infos[i];
        assert_eq!(info.profile, profile.as_str());
        assert_eq!(j["imei"], info.imei.as_str(), "{profile:?}");
        assert_eq!(j["imsi"], info.imsi.as_str(), "{profile:?}");
        assert_eq!(j["iccid"], info.iccid.as_str(), "{profile:?}");
        let p = Profile::get(*profile);
        assert_eq!(j["manufacturer"], p.manufacturer);
        assert_eq!(j["model"], p.model);
        assert_eq!(j["sim"], "ready");
        assert_eq!(j["registration"], "home");
        assert_eq!(j["operator"], "HW-SIM");
        assert_eq!(j["storage"]["total"], p.storage as u64);
        assert_eq!(j["storage"]["used"], 0);
        assert!(j["smsc"].as_str().unwrap().starts_with('+'));
        let bars = j["signal"]["bars"].as_u64().unwrap();
        assert!(bars <= 5);
        assert!(j["signal"]["rssi_dbm"].as_i64().unwrap() < 0);
        assert_eq!(j["cnmi"]["mt"], 1, "stored delivery negotiated");
        assert_eq!(
            j["capabilities"],
            serde_json::json!({"receive": true, "storage": true, "status_reports": true}),
            "{profile:?}"
        );
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_over_tcp_and_scan_finds_the_at_ports() {
    let port = 47_600 + (std::process::id() % 300) as u16 * 2;
    let b = Bench::start(2, ProfileName::Simcom, |c| c.tcp_base = Some(port)).await;
    let infos = b.bank().modems();
    let (code, out, err) = gsmgw(vec![
        "probe".into(),
        format!("tcp://127.0.0.1:{}", port + 1),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["imei"], infos[1].imei.as_str());

    // A multi-port stick: only some ports speak AT. A file that is no tty stands in.
    std::fs::write(b.dir.path().join("links").join("modem9-diag"), b"").unwrap();
    let pattern = format!("{}/modem*", b.dir.path().join("links").display());
    let (code, out, err) = gsmgw(vec![
        "probe".into(),
        "--scan".into(),
        pattern,
        "--timeout".into(),
        "1s".into(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).unwrap();
    let ports = j["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 3);
    let at: Vec<bool> = ports.iter().map(|p| p["at"].as_bool().unwrap()).collect();
    assert_eq!(at, [true, true, false]);
    assert_eq!(ports[0]["probe"]["imei"], infos[0].imei.as_str());
    assert!(ports[2]["error"].as_str().unwrap().contains("modem9-diag"));

    let (code, out, err) = gsmgw(vec![
        "probe".into(),
        "--scan".into(),
        "/nonexistent/tty*".into(),
    ])
    .await;
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err.lines().count(), 1);
    assert!(err.starts_with("error: "));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_send_ten_parts_prints_the_mr_of_each() {
    let b = Bench::start(1, ProfileName::Generic, |_| {}).await;
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(34);
    let (code, out, err) = gsmgw(vec![
        "modem".into(),
        "send".into(),
        b.link(0).to_string_lossy().into_owned(),
        "--to".into(),
        "+491701234567".into(),
        text.clone(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).unwrap();
    let mrs: Vec<u8> = j["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["mr"].as_u64().unwrap() as u8)
        .collect();
    assert_eq!(mrs.len(), 10);
    let msgs = b.bank().messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].parts, 10);
    assert_eq!(msgs[0].text, text);
    assert_eq!(msgs[0].mrs, mrs);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_send_failures_are_one_error_line() {
    let b = Bench::start(2, ProfileName::Okfail, |_| {}).await;
    b.bank()
        .set_fault(
            0,
            Fault::CmsError {
                code: 500,
                probability: 1.0,
            },
        )
        .unwrap();
    b.bank().set_fault(1, Fault::NoSmsc).unwrap();
    let send = |i: usize| {
        vec![
            "modem".into(),
            "send".into(),
            b.link(i).to_string_lossy().into_owned(),
            "--to".into(),
            "+491701234567".into(),
            "hi".into(),
        ]
    };
    // OK-on-failure: OK without +CMGS is a failure, not a success.
    let (code, out, err) = gsmgw(send(0)).await;
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(err.lines().count(), 1);
    assert!(err.contains("without a message reference"), "{err}");
    // No SMSC on the SIM: the typed CMS error comes through.
    let (code, _, err) = gsmgw(send(1)).await;
    assert_eq!(code, 1);
    assert!(err.starts_with("error: AT+CMGS: +CMS ERROR: 330"), "{err}");
    assert!(b.bank().messages().is_empty());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_is_deleted_only_after_the_sink_committed() {
    let b = Bench::start(1, ProfileName::Huawei, |_| {}).await;
    // A sink that dies mid-way: it takes the message and never commits.
    let (sink, mut rx) = ChannelSink::new(4);
    let h = ModemHandle::spawn(opener(&b.link(0)), config(), Some(Arc::new(sink)));
    ready(&h).await;
    b.bank()
        .inject_inbound(0, "+491709876543", "keep me safe")
        .unwrap();
    let d = next_delivery(&mut rx, Duration::from_secs(5)).await;
    assert_eq!(deliver_text(&d), "keep me safe");
    assert!(matches!(d.message.origin, Origin::Stored { .. }));
    drop(d);
    drop(rx);
    // Still on the SIM.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = h.refresh().await.unwrap();
        if r.storage.map(|s| s.used) == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "message gone from the SIM: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.shutdown().await;

    // A new driver (as after a crash) finds it, and deletes it once committed.
    let (sink, mut rx) = ChannelSink::new(4);
    let h = ModemHandle::spawn(opener(&b.link(0)), config(), Some(Arc::new(sink)));
    let d = next_delivery(&mut rx, Duration::from_secs(8)).await;
    assert_eq!(deliver_text(&d), "keep me safe");
    d.commit();
    ready(&h).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = h.refresh().await.unwrap();
        if r.storage.map(|s| s.used) == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed message not deleted: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.shutdown().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_arrive_via_cdsi_and_cds() {
    let b = Bench::start(2, ProfileName::Generic, |_| {}).await;
    for (i, cnmi) in [(0, "2,1,0,2,0"), (1, "2,1,0,1,0")] {
        let (sink, mut rx) = ChannelSink::new(4);
        let mut cfg = config();
        cfg.cnmi = vec![Cnmi::parse_param(cnmi).unwrap()];
        let h = ModemHandle::spawn(opener(&b.link(i)), cfg, Some(Arc::new(sink)));
        ready(&h).await;
        let sent = send_text(&h, "+491701234567", "report me", true)
            .await
            .unwrap();
        let d = next_delivery(&mut rx, Duration::from_secs(5)).await;
        match &d.message.decoded {
            Ok(Pdu {
                tpdu: Tpdu::StatusReport(r),
                ..
            }) => assert_eq!(r.message_ref, sent[0]),
            other => panic!("expected a status report, got {other:?}"),
        }
        let direct = i == 1;
        assert_eq!(matches!(d.message.origin, Origin::Direct), direct, "{cnmi}");
        d.commit();
        h.shutdown().await;
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_cmt_is_acked_after_commit_and_refused_when_the_sink_fails() {
    let b = Bench::start(1, ProfileName::Generic, |c| {
        c.scenario = Some(Scenario {
            network: NetworkSettings {
                redeliver_ms: 300,
                cnma_timeout_ms: 3000,
                ..NetworkSettings::default()
            },
            ..Scenario::default()
        });
    })
    .await;
    let (sink, mut rx) = ChannelSink::new(4);
    let mut cfg = config();
    cfg.cnmi = vec![Cnmi::parse_param("2,2,0,1,0").unwrap()];
    let h = ModemHandle::spawn(opener(&b.link(0)), cfg, Some(Arc::new(sink)));
    ready(&h).await;
    b.bank()
        .inject_inbound(0, "+491709876543", "direct")
        .unwrap();
    let d = next_delivery(&mut rx, Duration::from_secs(5)).await;
    assert_eq!(d.message.origin, Origin::Direct);
    d.reject("disk full");
    // Refused with +CNMA=2: the network delivers it again.
    let d = next_delivery(&mut rx, Duration::from_secs(5)).await;
    assert_eq!(deliver_text(&d), "direct");
    d.commit();
    let m = &b.bank().metrics().modems[0].counts;
    assert_eq!(m.not_acked, 1);
    // Acknowledged: not delivered a third time.
    assert!(
        tokio::time::timeout(Duration::from_millis(1200), rx.recv())
            .await
            .is_err()
    );
    h.shutdown().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_is_entered_and_a_wrong_pin_only_once() {
    let b = Bench::start(2, ProfileName::Quectel, |_| {}).await;
    let infos = b.bank().modems();
    for i in 0..2 {
        b.bank()
            .set_fault(
                i,
                Fault::SimPin {
                    pin: "4321".into(),
                    puk: "87654321".into(),
                },
            )
            .unwrap();
        assert_eq!(b.sim_state(i), "sim_pin");
    }
    let mut cfg = config();
    cfg.pins.insert(infos[0].iccid.clone(), "4321".into());
    cfg.pins.insert(infos[1].iccid.clone(), "1111".into());
    let h = ModemHandle::spawn(opener(&b.link(0)), cfg.clone(), None);
    ready(&h).await;
    assert_eq!(b.sim_state(0), "ready");
    assert_eq!(h.report().imsi.as_deref(), Some(infos[0].imsi.as_str()));
    h.shutdown().await;

    // Three drivers in a row (restarts) share the record of the rejection.
    for _ in 0..3 {
        let h = ModemHandle::spawn(opener(&b.link(1)), cfg.clone(), None);
        let s = wait_state(&h, Duration::from_secs(8), |s| {
            matches!(s, ModemState::SimLocked(_))
        })
        .await;
        assert!(format!("{s:?}").contains("PIN"), "{s:?}");
        h.shutdown().await;
    }
    assert!(cfg.rejected_pins.contains(&infos[1].iccid));
    // Three tries would have PUK-locked it; one leaves it asking for the PIN.
    assert_eq!(b.sim_state(1), "sim_pin");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_modem_is_recovered_within_twice_the_command_timeout() {
    let b = Bench::start(1, ProfileName::Simcom, |_| {}).await;
    let cfg = config();
    let t = cfg.timeouts.command;
    let h = ModemHandle::spawn(opener(&b.link(0)), cfg, None);
    ready(&h).await;
    b.bank().set_fault(0, Fault::HangNow).unwrap();
    let t0 = Instant::now();
    let e = h.refresh().await.unwrap_err();
    assert!(e.is_link(), "{e}");
    // Recovered means: the modem answers again (hw-sim no longer hung, which only a
    // +CFUN or a replug clears) and the driver says it is ready. The state alone could
    // still read Ready before the recovery starts.
    while !(b.sim_state(0) != "hung" && h.state() == ModemState::Ready) {
        assert!(
            t0.elapsed() <= t * 2,
            "not recovered within {:?}: {:?}, sim {}",
            t * 2,
            h.state(),
            b.sim_state(0)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    send_text(&h, "+491701234567", "after the hang", false)
        .await
        .unwrap();
    h.shutdown().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modem_that_hangs_on_every_send_is_quarantined_with_the_reason() {
    let b = Bench::start(1, ProfileName::Generic, |_| {}).await;
    b.bank()
        .set_fault(0, Fault::Hang { probability: 1.0 })
        .unwrap();
    let mut cfg = config();
    cfg.quarantine_after = 2;
    let h = ModemHandle::spawn(opener(&b.link(0)), cfg, None);
    ready(&h).await;
    for _ in 0..3 {
        let e = send_text(&h, "+491701234567", "x", false)
            .await
            .unwrap_err();
        if matches!(e, ModemError::Quarantined(_)) {
            break;
        }
        assert!(e.is_link() || matches!(e, ModemError::NotReady(_)), "{e}");
        wait_state(&h, Duration::from_secs(8), |s| {
            matches!(s, ModemState::Ready | ModemState::Quarantined(_))
        })
        .await;
    }
    let s = wait_state(&h, Duration::from_secs(8), |s| {
        matches!(s, ModemState::Quarantined(_))
    })
    .await;
    assert!(format!("{s:?}").contains("recoveries"), "{s:?}");
    let e = send_text(&h, "+491701234567", "x", false)
        .await
        .unwrap_err();
    assert!(matches!(e, ModemError::Quarantined(_)), "{e}");
    h.shutdown().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplug_and_reboot_are_survived_by_reopening() {
    let b = Bench::start(1, ProfileName::Huawei, |_| {}).await;
    let h = ModemHandle::spawn(opener(&b.link(0)), config(), None);
    ready(&h).await;
    b.bank()
        .set_fault(0, Fault::Unplug { down_ms: 400 })
        .unwrap();
    wait_state(&h, Duration::from_secs(3), |s| *s != ModemState::Ready).await;
    ready(&h).await;
    send_text(&h, "+491701234567", "after unplug", false)
        .await
        .unwrap();
    b.bank()
        .set_fault(0, Fault::Reboot { down_ms: 300 })
        .unwrap();
    wait_state(&h, Duration::from_secs(3), |s| *s != ModemState::Ready).await;
    ready(&h).await;
    send_text(&h, "+491701234567", "after reboot", false)
        .await
        .unwrap();
    assert_eq!(b.bank().messages().len(), 2);
    h.shutdown().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_busy_sim_and_full_storage() {
    let b = Bench::start(3, ProfileName::Generic, |_| {}).await;
    // Line noise before answers.
    b.bank()
        .set_fault(
            0,
            Fault::Garbage {
                probability: 0.5,
                len: 12,
            },
        )
        .unwrap();
    // A SIM that stays busy for a while after boot.
    b.bank().set_fault(1, Fault::SimBusy { secs: 1.0 }).unwrap();
    // One message fills the storage.
    b.bank()
        .set_fault(2, Fault::StorageCapacity { capacity: 1 })
        .unwrap();

    let h0 = ModemHandle::spawn(opener(&b.link(0)), config(), None);
    let h1 = ModemHandle::spawn(opener(&b.link(1)), config(), None);
    ready(&h0).await;
    for i in 0..5 {
        // A timeout caused by noise is recovered; the message then goes through.
        let r = send_text(&h0, "+491701234567", format!("noisy {i}"), false).await;
        if r.is_err() {
            ready(&h0).await;
        }
    }
    assert!(!b.bank().messages().is_empty());
    ready(&h1).await;
    assert_eq!(h1.report().sim.map(|s| s.as_str()), Some("ready".into()));

    // No sink: the message stays and fills the storage; the state says so.
    let h2 = ModemHandle::spawn(opener(&b.link(2)), config(), None);
    ready(&h2).await;
    b.bank().inject_inbound(2, "+491709876543", "fill").unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let _ = h2.refresh().await;
        if let ModemState::Degraded(r) = h2.state() {
            assert!(r.contains("storage full"), "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", h2.state());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for h in [h0, h1, h2] {
        h.shutdown().await;
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_polled_and_ussd_answers() {
    let b = Bench::start(2, ProfileName::Mixed, |_| {}).await;
    let mut cfg = config();
    cfg.timeouts.health_interval = Duration::from_millis(200);
    let h = ModemHandle::spawn(opener(&b.link(0)), cfg, None);
    ready(&h).await;
    b.bank()
        .set_fault(0, Fault::Signal { rssi: 7, ber: 2 })
        .unwrap();
    b.bank()
        .set_fault(
            0,
            Fault::Registration {
                state: hw_sim::RegState::Searching,
            },
        )
        .unwrap();
    let s = wait_state(&h, Duration::from_secs(3), |s| {
        matches!(s, ModemState::Degraded(_))
    })
    .await;
    assert!(
        format!("{s:?}").contains("not registered (searching)"),
        "{s:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while h.report().signal.map(|s| s.bars) != Some(1) {
        assert!(Instant::now() < deadline, "{:?}", h.report().signal);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.report().signal.and_then(|s| s.rssi_dbm), Some(-99));
    b.bank()
        .set_fault(
            0,
            Fault::Registration {
                state: hw_sim::RegState::Roaming,
            },
        )
        .unwrap();
    wait_state(&h, Duration::from_secs(3), |s| *s == ModemState::Ready).await;
    let r = h.ussd("*100#").await.unwrap();
    assert_eq!(r.status, 0);
    assert!(r.text.unwrap().contains("balance"));
    h.shutdown().await;
    b.stop().await;
}
