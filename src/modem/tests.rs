//! The driver over an in-memory duplex, against hw-sim's sans-IO modem (an independent
//! implementation of the AT command set) pumped by a small task: no PTY, no timing luck.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hw_sim::fault::NetworkSettings;
use hw_sim::modem::{
    Event as SimEvent, Inbound as SimInbound, InboundKind, Modem as SimModem,
    ModemConfig as SimConfig,
};
use hw_sim::profile::{Identity, Profile};
use hw_sim::{Fault, ProfileName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::at::SessionConfig;

/// One simulated modem and what the host sent it.
struct Sim {
    modem: Mutex<SimModem>,
    host_bytes: Mutex<Vec<u8>>,
    submitted: Mutex<Vec<u8>>,
    /// Direct deliveries the host refused (`+CNMA=2`) or let time out: the network's to
    /// deliver again (the test plays the network).
    not_acked: Mutex<Vec<SimInbound>>,
    /// Raw bytes to send the host ahead of the modem's own output (what no well-behaved
    /// modem says).
    inject: Mutex<Vec<u8>>,
}

impl Sim {
    fn new(profile: ProfileName, faults: Vec<Fault>) -> Arc<Sim> {
        let modem = SimModem::new(
            SimConfig {
                index: 0,
                identity: Identity::new(0, 0),
                profile: Profile::get(profile),
                seed: 1,
                latency: (0, 0),
                network: NetworkSettings::default(),
                faults,
            },
            Instant::now(),
        );
        Arc::new(Sim {
            modem: Mutex::new(modem),
            host_bytes: Mutex::new(Vec::new()),
            submitted: Mutex::new(Vec::new()),
            not_acked: Mutex::new(Vec::new()),
            inject: Mutex::new(Vec::new()),
        })
    }

    /// The network hands the modem a message (routed per its `+CNMI`).
    fn deliver(&self, inbound: SimInbound) {
        self.modem
            .lock()
            .unwrap()
            .deliver(inbound, Instant::now())
            .expect("the simulated modem takes the message");
    }

    fn sent_text(&self) -> String {
        String::from_utf8_lossy(&self.host_bytes.lock().unwrap()).into_owned()
    }

    fn count(&self, needle: &str) -> usize {
        self.sent_text().matches(needle).count()
    }
}

/// Opens a fresh duplex to the simulated modem each time.
struct SimOpener(Arc<Sim>);

impl Opener for SimOpener {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Link>, ModemError>> {
        let sim = self.0.clone();
        Box::pin(async move {
            let (host, mut dev) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    let (out, wake) = {
                        let mut m = sim.modem.lock().unwrap();
                        m.handle_timeout(Instant::now());
                        for ev in m.take_events() {
                            match ev {
                                SimEvent::Submitted(s) => sim.submitted.lock().unwrap().push(s.mr),
                                SimEvent::NotAcked(i) => sim.not_acked.lock().unwrap().push(i),
                                SimEvent::Replug { .. } => {}
                            }
                        }
                        let mut out = std::mem::take(&mut *sim.inject.lock().unwrap());
                        out.extend(m.take_output());
                        (out, m.poll_timeout())
                    };
                    if !out.is_empty() && dev.write_all(&out).await.is_err() {
                        return;
                    }
                    let wake = wake.unwrap_or_else(|| Instant::now() + Duration::from_millis(50));
                    let n = tokio::select! {
                        r = dev.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
                        () = tokio::time::sleep_until(wake.into()) => continue,
                    };
                    sim.host_bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                    sim.modem.lock().unwrap().input(&buf[..n], Instant::now());
                }
            });
            Ok(Box::new(host) as Box<dyn Link>)
        })
    }

    fn describe(&self) -> String {
        "mem://sim".into()
    }
}

fn fast_config() -> ModemConfig {
    ModemConfig {
        command_timeout: Duration::from_millis(500),
        storage_timeout: Duration::from_millis(500),
        send_timeout: Duration::from_secs(2),
        cfun_timeout: Duration::from_millis(500),
        sim_wait: Duration::from_secs(3),
        session: SessionConfig {
            drain_quiet: Duration::from_millis(30),
            drain_max: Duration::from_millis(300),
            resync_timeout: Duration::from_millis(150),
            resync_attempts: 2,
            ..SessionConfig::default()
        },
        reopen_backoff: (Duration::from_millis(20), Duration::from_millis(100)),
        reopen_attempts: 3,
        ..ModemConfig::default()
    }
}

async fn up(sim: &Arc<Sim>, cfg: ModemConfig) -> (driver::Modem, Result<(), ModemError>) {
    let mut m = driver::Modem::new(Arc::new(SimOpener(sim.clone())), cfg, None);
    m.open().await.expect("open");
    let r = tokio::time::timeout(Duration::from_secs(10), m.bring_up())
        .await
        .expect("bring-up bounded");
    (m, r)
}

#[tokio::test]
async fn bring_up_identifies_and_negotiates() {
    let sim = Sim::new(ProfileName::Generic, vec![]);
    let (m, r) = up(&sim, fast_config()).await;
    r.expect("bring-up");
    let id = Identity::new(0, 0);
    let rep = m.report();
    assert_eq!(rep.imei.as_deref(), Some(id.imei.as_str()));
    assert_eq!(rep.imsi.as_deref(), Some(id.imsi.as_str()));
    assert_eq!(rep.iccid.as_deref(), Some(id.iccid.as_str()));
    assert_eq!(rep.manufacturer.as_deref(), Some("hw-sim"));
    assert_eq!(rep.sim, Some(SimState::Ready));
    assert_eq!(rep.registration, Some(Registration::Home));
    assert_eq!(rep.cnmi.map(|c| c.to_param()), Some("2,1,0,2,0".into()));
    assert_eq!(rep.storage.map(|s| s.total), Some(30));
    assert_eq!(m.state(), ModemState::Ready);
    let sent = sim.sent_text();
    for cmd in [
        "ATE0\r",
        "AT+CMEE=1\r",
        "AT+CMGF=0\r",
        "AT+CPMS=\"SM\",\"SM\",\"SM\"\r",
    ] {
        assert!(sent.contains(cmd), "{cmd:?} missing from {sent:?}");
    }
}

#[tokio::test]
async fn cnmi_falls_back_to_what_the_firmware_accepts() {
    // Quectel (Qualcomm) firmware refuses <ds>=1.
    let sim = Sim::new(ProfileName::Quectel, vec![]);
    let mut cfg = fast_config();
    cfg.cnmi = ["2,1,0,1,0", "1,1,0,2,0"]
        .iter()
        .filter_map(|s| Cnmi::parse_param(s))
        .collect();
    let (m, r) = up(&sim, cfg).await;
    r.expect("bring-up");
    assert_eq!(
        m.report().cnmi.map(|c| c.to_param()),
        Some("1,1,0,2,0".into())
    );
    assert_eq!(sim.count("AT+CNMI="), 2);
}

#[tokio::test]
async fn ten_parts_with_cmms_and_an_mr_each() {
    let sim = Sim::new(ProfileName::Generic, vec![]);
    let (mut m, r) = up(&sim, fast_config()).await;
    r.expect("bring-up");
    let text = "0123456789".repeat(153);
    let rep = m
        .send(&SendRequest::new("+491701234567", text))
        .await
        .expect("send");
    assert_eq!(rep.mrs.len(), 10);
    assert_eq!(rep.encoding, "gsm7");
    assert_eq!(*sim.submitted.lock().unwrap(), rep.mrs);
    let sent = sim.sent_text();
    let cmms = sent.find("AT+CMMS=2\r").expect("AT+CMMS=2 sent");
    let first_cmgs = sent.find("AT+CMGS=").expect("CMGS sent");
    assert!(cmms < first_cmgs, "CMMS must precede the first part");
}

#[tokio::test]
async fn ok_without_mr_is_a_failure() {
    let sim = Sim::new(
        ProfileName::Okfail,
        vec![Fault::CmsError {
            code: 500,
            probability: 1.0,
        }],
    );
    let (mut m, r) = up(&sim, fast_config()).await;
    r.expect("bring-up");
    let e = m
        .send(&SendRequest::new("+491701234567", "hi"))
        .await
        .unwrap_err();
    assert!(matches!(e, ModemError::NoMessageReference), "{e:?}");
    assert!(!e.is_link());
}

#[tokio::test]
async fn cms_errors_are_typed_and_classified() {
    let sim = Sim::new(
        ProfileName::Generic,
        vec![Fault::CmsError {
            code: 38,
            probability: 1.0,
        }],
    );
    let (mut m, r) = up(&sim, fast_config()).await;
    r.expect("bring-up");
    let e = m
        .send(&SendRequest::new("+491701234567", "hi"))
        .await
        .unwrap_err();
    match &e {
        ModemError::Cms { error, .. } => assert_eq!(error.code(), Some(38)),
        other => panic!("expected a CMS error, got {other:?}"),
    }
    assert_eq!(e.classification(), crate::at::Classification::Temporary);
    assert!(!e.is_link() && !e.may_have_been_sent());
}

#[tokio::test]
async fn pin_unlocks_and_a_rejected_pin_is_never_retried() {
    let id = Identity::new(0, 0);
    let lock = || Fault::SimPin {
        pin: "1234".into(),
        puk: "12345678".into(),
    };
    // The right PIN.
    let sim = Sim::new(ProfileName::Generic, vec![lock()]);
    let mut cfg = fast_config();
    cfg.pins.insert(id.iccid.clone(), "1234".into());
    let (m, r) = up(&sim, cfg).await;
    r.expect("unlocked");
    assert_eq!(m.report().sim, Some(SimState::Ready));
    assert_eq!(m.report().imsi.as_deref(), Some(id.imsi.as_str()));

    // A wrong PIN: one try, then never again, even from a new driver sharing the record.
    let sim = Sim::new(ProfileName::Generic, vec![lock()]);
    let mut cfg = fast_config();
    cfg.pins.insert(id.iccid.clone(), "9999".into());
    let rejected = cfg.rejected_pins.clone();
    for _ in 0..3 {
        let (m, r) = up(&sim, cfg.clone()).await;
        assert!(matches!(r, Err(ModemError::Sim(_))), "{r:?}");
        assert!(matches!(m.state(), ModemState::SimLocked(_)));
        assert_eq!(m.report().sim, Some(SimState::Pin), "still PIN, not PUK");
    }
    assert_eq!(sim.count("AT+CPIN=\""), 1, "the wrong PIN went out once");
    assert!(rejected.contains(&id.iccid));
}

#[tokio::test]
async fn puk_and_no_pin_need_a_human() {
    let sim = Sim::new(
        ProfileName::Generic,
        vec![Fault::SimPuk { puk: "1".into() }],
    );
    let (m, r) = up(&sim, fast_config()).await;
    assert!(matches!(r, Err(ModemError::Sim(_))));
    assert_eq!(m.report().sim, Some(SimState::Puk));
    assert_eq!(sim.count("AT+CPIN=\""), 0);

    let sim = Sim::new(
        ProfileName::Generic,
        vec![Fault::SimPin {
            pin: "1234".into(),
            puk: "1".into(),
        }],
    );
    let (_, r) = up(&sim, fast_config()).await;
    assert!(matches!(r, Err(ModemError::Sim(ref s)) if s.contains("no PIN configured")));
    assert_eq!(sim.count("AT+CPIN=\""), 0);
}

#[tokio::test]
async fn a_busy_sim_is_waited_for() {
    let sim = Sim::new(ProfileName::Generic, vec![Fault::SimBusy { secs: 0.6 }]);
    let (m, r) = up(&sim, fast_config()).await;
    r.expect("bring-up after the SIM woke");
    assert_eq!(m.report().sim, Some(SimState::Ready));
    assert!(m.report().iccid.is_some());
}

#[tokio::test]
async fn a_hung_modem_is_recovered_by_the_task_within_twice_the_timeout() {
    let sim = Sim::new(ProfileName::Generic, vec![]);
    let cfg = fast_config();
    let timeout = cfg.command_timeout;
    let h = ModemHandle::spawn(Arc::new(SimOpener(sim.clone())), cfg, None);
    let mut st = h.watch_state();
    tokio::time::timeout(
        Duration::from_secs(5),
        st.wait_for(|s| *s == ModemState::Ready),
    )
    .await
    .expect("ready in time")
    .expect("state");
    sim.modem
        .lock()
        .unwrap()
        .apply_fault(Fault::HangNow, Instant::now());
    let t0 = Instant::now();
    let e = h.refresh().await.unwrap_err();
    assert!(e.is_link(), "{e:?}");
    tokio::time::timeout(timeout * 2, st.wait_for(|s| *s == ModemState::Ready))
        .await
        .expect("recovered within twice the command timeout")
        .expect("state");
    assert!(t0.elapsed() <= timeout * 2);
    assert!(sim.count("AT+CFUN=0\r") >= 1, "recovered by the radio rung");
    h.refresh().await.expect("usable again");
    h.shutdown().await;
}

#[tokio::test]
async fn handle_refuses_while_sim_locked_and_says_why() {
    let sim = Sim::new(
        ProfileName::Generic,
        vec![Fault::SimPuk { puk: "1".into() }],
    );
    let h = ModemHandle::spawn(Arc::new(SimOpener(sim)), fast_config(), None);
    let mut st = h.watch_state();
    tokio::time::timeout(
        Duration::from_secs(5),
        st.wait_for(|s| matches!(s, ModemState::SimLocked(_))),
    )
    .await
    .expect("locked state published")
    .expect("state");
    let e = h.send(SendRequest::new("+4917", "x")).await.unwrap_err();
    assert!(matches!(e, ModemError::Sim(_)), "{e:?}");
    h.shutdown().await;
}

#[test]
fn rejected_pins_block_the_same_pin_persist_and_allow_a_corrected_one() {
    let saved: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink = saved.clone();
    let r = RejectedPins::with_persistence(
        std::collections::HashMap::new(),
        Arc::new(move |i: &str, f: &str| sink.lock().unwrap().push((i.into(), f.into()))),
    );
    assert!(!r.blocks("8949", "1234"));
    r.insert("8949", "1234");
    assert!(r.blocks("8949", "1234"));
    assert!(!r.blocks("8949", "4321"), "a corrected PIN may be tried");
    assert!(!r.blocks("8950", "1234"));
    let saved = saved.lock().unwrap().clone();
    assert_eq!(saved.len(), 1);
    assert!(!saved[0].1.contains("1234"), "only a fingerprint is kept");
    // A restart that loads the record blocks the same PIN again.
    let again = RejectedPins::with_persistence(
        saved.into_iter().collect(),
        Arc::new(|_: &str, _: &str| {}),
    );
    assert!(again.blocks("8949", "1234"));
}

// ---- audit #10: inbound robustness ----

const SENDER: &str = "+4917012345678";

/// An SMS-DELIVER TPDU from the network, as hw-sim's network builds them.
fn sms(id: u64, text: &str) -> SimInbound {
    use hw_sim::pdu::{self as sp, DeliverSpec};
    let septets = sp::gsm7_encode(text).expect("GSM text");
    let spec = DeliverSpec {
        oa: sp::Address::parse(SENDER),
        pid: 0,
        dcs: 0,
        scts: sp::scts(1_700_000_000),
        udhi: false,
        sri: false,
        udl: septets.len() as u8,
        ud: sp::pack_septets(&septets, 0),
    };
    SimInbound {
        id,
        kind: InboundKind::Sms,
        tpdu: sp::encode_deliver(&spec),
        addr: SENDER.into(),
        scts_unix: 1_700_000_000,
        text: text.into(),
        report: None,
    }
}

/// Direct delivery (`+CMT`), which the driver acknowledges (`+CSMS=1` on hw-sim).
fn direct_config() -> ModemConfig {
    let mut cfg = fast_config();
    cfg.cnmi = Cnmi::parse_param("2,2,0,0,0").into_iter().collect();
    cfg
}

async fn spawn_with_sink(
    sim: &Arc<Sim>,
    cfg: ModemConfig,
) -> (ModemHandle, tokio::sync::mpsc::Receiver<Delivery>) {
    let (sink, rx) = ChannelSink::new(8);
    let h = ModemHandle::spawn(Arc::new(SimOpener(sim.clone())), cfg, Some(Arc::new(sink)));
    let mut st = h.watch_state();
    tokio::time::timeout(
        Duration::from_secs(5),
        st.wait_for(|s| *s == ModemState::Ready),
    )
    .await
    .expect("ready in time")
    .expect("state");
    (h, rx)
}

/// Waits (bounded) until `f` gives something.
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn text_of(d: &Delivery) -> Option<String> {
    match &d.message.decoded {
        Ok(p) => match &p.tpdu {
            crate::pdu::Tpdu::Deliver(d) => d.user_data.text(),
            _ => None,
        },
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_garbled_cmt_is_refused_and_its_redelivery_stored_and_acked() {
    // Audit #10, finding 5: the PDU line after "+CMT: ,<len>" arrives as line noise.
    let sim = Sim::new(ProfileName::Generic, vec![Fault::GarbledPdu { count: 1 }]);
    let (h, mut rx) = spawn_with_sink(&sim, direct_config()).await;
    sim.deliver(sms(1, "hello"));
    // Refused at once (not left to the modem's ack timeout), so the network takes it back.
    let back = eventually("the garbled delivery was never refused", || {
        sim.not_acked.lock().unwrap().pop()
    })
    .await;
    assert_eq!(sim.count("AT+CNMA=2\r"), 1);
    assert_eq!(sim.count("AT+CNMA\r"), 0, "nothing acknowledged yet");
    // The network delivers it again, intact this time.
    sim.deliver(back);
    let d = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("the redelivery reaches the sink")
        .expect("sink open");
    assert_eq!(text_of(&d).as_deref(), Some("hello"), "{:?}", d.message);
    assert_eq!(d.message.origin, Origin::Direct);
    d.commit();
    eventually("the stored message was never acknowledged", || {
        (sim.count("AT+CNMA\r") == 1).then_some(())
    })
    .await;
    // The sink saw the real message only (it is called before each ack or refusal).
    assert!(rx.try_recv().is_err(), "the noise was handed to the sink");
    assert_eq!(sim.count("AT+CNMA=2\r"), 1);
    assert!(sim.not_acked.lock().unwrap().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn an_undecodable_cmt_is_refused_not_acknowledged() {
    let sim = Sim::new(ProfileName::Generic, vec![]);
    let (h, mut rx) = spawn_with_sink(&sim, direct_config()).await;
    // The announced length fits, but the user data is cut short: 160 septets announced.
    let mut bad = sms(2, "hi");
    let udl = bad.tpdu.len() - 3;
    bad.tpdu[udl] = 160;
    assert!(crate::pdu::decode(&bad.tpdu, false).is_err());
    sim.deliver(bad);
    tokio::select! {
        d = rx.recv() => panic!(
            "an undecodable delivery was handed to the sink: {:?}",
            d.map(|d| d.message.pdu)
        ),
        _ = eventually("the undecodable delivery was never refused", || {
            sim.not_acked.lock().unwrap().pop()
        }) => {}
    }
    assert_eq!(sim.count("AT+CNMA=2\r"), 1);
    assert_eq!(sim.count("AT+CNMA\r"), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_storage_name_that_is_not_two_capitals_never_reaches_an_at_command() {
    // Audit #10, finding 11: a modem-supplied storage name went into AT+CPMS="<mem>".
    let sim = Sim::new(ProfileName::Generic, vec![]);
    let (h, mut rx) = spawn_with_sink(&sim, fast_config()).await;
    sim.inject.lock().unwrap().extend_from_slice(
        b"\r\n+CMTI: \"XY1\",17\r\n\r\n+CMTI: \"sm\",18\r\n\r\n+CMTI: \"SM;+CFUN=0\",19\r\n\r\n+CDSI: \"S R\",20\r\n",
    );
    // Then a real message, stored and indicated by the modem: handled after the others.
    sim.deliver(sms(3, "after"));
    let d = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("the real message reaches the sink")
        .expect("sink open");
    assert_eq!(text_of(&d).as_deref(), Some("after"));
    assert!(matches!(&d.message.origin, Origin::Stored { mem, .. } if mem == "SM"));
    d.commit();
    let sent = sim.sent_text();
    for bad in [
        "XY1", "sm", "SM;", "+CFUN=0", "S R", "=17", "=18", "=19", "=20",
    ] {
        assert!(!sent.contains(bad), "{bad:?} reached the modem: {sent:?}");
    }
    h.shutdown().await;
}

#[test]
fn storage_names_are_two_capitals() {
    for ok in ["SM", "ME", "MT", "SR", "BM"] {
        assert!(info::is_storage_name(ok), "{ok}");
    }
    for bad in [
        "", "S", "sm", "Sm", "SMS", "S\"", "S;", "\"SM\"", "S1", "ÄM",
    ] {
        assert!(!info::is_storage_name(bad), "{bad}");
    }
}
