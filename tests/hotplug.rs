//! Hotplug against hw-sim: links that appear and vanish in a temporary folder (as udev
//! makes them in /dev/gsmgw), a SIM moving to another port keeping its identity and
//! counters, a port that does not speak AT ignored, and an unplug/replug survived.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Daemon, Start, TOKEN};
use hw_sim::{BankHandle, Fault, ProfileName};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// The daemon watching `watched` (as it watches /dev/gsmgw), and the bank whose links
/// the tests put there.
struct Rig {
    d: Daemon,
    bank: Option<BankHandle>,
}

async fn rig(dir: &Path, modems: usize, watched: &Path, remove_after_secs: u64) -> Rig {
    let bank = common::sim_bank(dir, modems, ProfileName::Generic, 10, 3).await;
    let mut config = common::test_config();
    config.modems.command_timeout_ms = 1_000;
    config.modems.send_timeout_ms = 5_000;
    config.modems.remove_after_secs = remove_after_secs;
    config.modems.rescan_secs = 30; // only inotify can make these tests pass in time
    let d = Daemon::start(Start {
        config,
        db: Some(dir.join("g.db")),
        ports: vec![format!("{}/*", watched.display())],
        ..Start::default()
    })
    .await;
    Rig {
        d,
        bank: Some(bank),
    }
}

impl Rig {
    async fn get(&self, path: &str) -> Value {
        self.d.get_json(path).await
    }

    async fn modems(&self) -> Vec<Value> {
        self.d.modems().await
    }

    async fn wait_modems(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.d.wait_modems(what, pred).await
    }

    async fn send_and_wait(&self, text: &str) -> Value {
        let id = self.d.send("+4915112345678", text).await;
        self.d.wait_out(id).await
    }

    async fn stop(mut self) {
        self.d.stop().await;
        if let Some(b) = self.bank.take() {
            b.shutdown().await;
        }
    }
}

fn ready(m: &Value) -> bool {
    m["state"]["state"] == "ready"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_that_appear_and_vanish_are_followed_and_a_moved_sim_keeps_its_counters() {
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("gsmgw");
    std::fs::create_dir(&watched).unwrap();
    let r = rig(dir.path(), 1, &watched, 1).await;
    assert!(r.modems().await.is_empty(), "nothing plugged yet");
    let bank_link = dir.path().join("bank/modem0");

    // A stick appears: its AT port and a second port that does not speak AT.
    std::os::unix::fs::symlink(&bank_link, watched.join("stick1-if00")).unwrap();
    std::fs::write(watched.join("stick1-if01"), b"not a modem").unwrap();
    let port = watched.join("stick1-if00").display().to_string();
    let m = r
        .wait_modems("the AT port comes up", |m| m.len() == 1 && ready(&m[0]))
        .await;
    assert_eq!(m[0]["port"], port.as_str());
    let iccid = m[0]["iccid"].as_str().unwrap().to_owned();
    r.send_and_wait("first, through stick1").await;

    // The stick goes away: its modem is removed after the grace period.
    std::fs::remove_file(watched.join("stick1-if00")).unwrap();
    r.wait_modems("the gone port is removed", |m| m.is_empty())
        .await;

    // The same SIM shows up on another port: same identity, counters carried on.
    std::os::unix::fs::symlink(&bank_link, watched.join("stick2-if02")).unwrap();
    let m = r
        .wait_modems("the moved SIM comes up", |m| m.len() == 1 && ready(&m[0]))
        .await;
    assert_eq!(m[0]["iccid"], iccid.as_str());
    let sent = r.send_and_wait("second, through stick2").await;
    assert_eq!(sent["sim"], iccid.as_str());
    let sims = r.get("/v1/sims").await;
    let sims = sims
        .get("items")
        .unwrap_or(&sims)
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sim = sims.iter().find(|s| s["iccid"] == iccid.as_str()).unwrap();
    assert_eq!(sim["sent_parts"], 2, "{sim}");
    assert_eq!(
        sim["modem"],
        watched.join("stick2-if02").display().to_string().as_str()
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_modem_comes_back_on_replug() {
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("gsmgw");
    std::fs::create_dir(&watched).unwrap();
    let r = rig(dir.path(), 1, &watched, 30).await;
    std::os::unix::fs::symlink(dir.path().join("bank/modem0"), watched.join("m0")).unwrap();
    r.wait_modems("up", |m| m.len() == 1 && ready(&m[0])).await;
    // hw-sim pulls the plug for a moment: the PTY closes and the link vanishes.
    r.bank
        .as_ref()
        .unwrap()
        .set_fault(0, Fault::Unplug { down_ms: 800 })
        .unwrap();
    r.wait_modems("offline", |m| m.len() == 1 && !ready(&m[0]))
        .await;
    r.wait_modems("back", |m| m.len() == 1 && ready(&m[0]))
        .await;
    r.send_and_wait("after the replug").await;
    // Disabled by the API: out of rotation (a message waits); enabled: it goes out.
    let id = "m0";
    let port = watched.join(id).display().to_string();
    let action = |a: &'static str| {
        let url = format!(
            "http://{}/v1/modems/{}/{a}",
            r.d.running.api,
            port.replace('/', "%2F")
        );
        let http = r.d.http.clone();
        async move {
            let resp = http.post(url).bearer_auth(TOKEN).send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (s, v) = action("disable").await;
    assert_eq!((s, v["enabled"].as_bool()), (200, Some(false)), "{v}");
    let (_, v) =
        r.d.post(json!({"to": "+4915112345678", "text": "while disabled"}))
            .await;
    // A disabled modem sends nothing: the message goes out only after the enable, so
    // its part's sent_at is not before the moment the enable was asked for.
    let enabled_at = gsmgw::store::now_ms();
    let (s, _) = action("enable").await;
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = r.get(&format!("/v1/messages/{}", v["id"])).await;
        if matches!(m["status"].as_str(), Some("sent" | "delivered")) {
            let sent_at = m["part_states"][0]["sent_at"].as_str().unwrap();
            let sent_ms = humantime::parse_rfc3339(sent_at).unwrap();
            assert!(
                gsmgw::store::to_ms(sent_ms) >= enabled_at,
                "sent while disabled: {m}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not sent after enable: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, _) = action("frobnicate").await;
    assert_eq!(s, 404);
    r.stop().await;
}
