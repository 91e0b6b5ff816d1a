//! The real daemon over real PTYs of an in-process hw-sim bank, driven over HTTP:
//! what `gsmgw serve --sim N` does, end to end.
#![allow(clippy::unwrap_used)]

use gsmgw::config::Config;
use gsmgw::daemon::{Running, ServeOptions};
use gsmgw::store;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::oneshot;

struct Daemon {
    running: Running,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

const TOKEN: &str = "test-token";

async fn start(modems: usize) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.modems.command_timeout_ms = 2_000;
    config.modems.send_timeout_ms = 10_000;
    let opts = ServeOptions {
        config,
        listen: Some("127.0.0.1:0".parse().unwrap()),
        db: Some(dir.path().join("gsmgw.db")),
        ports: Vec::new(),
        sim: Some(modems),
        sim_latency: None,
        tokens: vec![TOKEN.into()],
    };
    let spawned = gsmgw::daemon::spawn(opts, Duration::from_secs(20))
        .await
        .expect("daemon ready in time");
    let (running, stop_tx, task) = (spawned.running, spawned.stop, spawned.task);
    Daemon {
        running,
        stop: Some(stop_tx),
        task,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Daemon {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.api)
    }

    fn sim(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.sim_control.unwrap())
    }

    async fn post(&self, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/v1/messages"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, id: i64) -> Value {
        self.get_json(&format!("/v1/messages/{id}")).await
    }

    /// Polls (test-side only) until the message reaches `status`.
    async fn wait_status(&self, id: i64, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.get(id).await;
            if m["status"] == status {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "message {id} never reached {status}: {m}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn sink(&self) -> Vec<Value> {
        self.http
            .get(self.sim("/messages"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("daemon stops in time")
            .unwrap()
            .expect("the daemon ran without error");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_the_network_and_get_delivered() {
    let d = start(3).await;
    let (s, v) = d
        .post(json!({"to": "+491701234567", "text": "Your code is 482913", "priority": "otp"}))
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["status"], "queued");
    let id = v["id"].as_i64().unwrap();
    let long: String = "Hi 👋 your order #1234 shipped 🚚📦 track: example.com/t/1 "
        .chars()
        .cycle()
        .take(400)
        .collect();
    let (s, v) = d.post(json!({"to": "+491709999999", "text": long})).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["encoding"], "ucs2");
    let long_id = v["id"].as_i64().unwrap();
    let m = d.wait_status(id, "delivered").await;
    assert_eq!(m["part_states"][0]["status"], "delivered");
    let m2 = d.wait_status(long_id, "delivered").await;
    assert_eq!(m2["parts"], 7);
    let sink = d.sink().await;
    let code = sink.iter().find(|m| m["to"] == "+491701234567").unwrap();
    assert_eq!(code["text"], "Your code is 482913");
    let got = sink.iter().find(|m| m["to"] == "+491709999999").unwrap();
    assert_eq!(
        got["text"].as_str().unwrap(),
        long,
        "reassembled by the network, byte for byte"
    );
    assert_eq!(got["parts"], 7);
    // Prometheus: the families operators chart, with what just happened in them.
    let metrics = d
        .http
        .get(d.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "gsmgw_sent_parts_total{",
        "gsmgw_queue_depth{priority=\"otp\"}",
        "gsmgw_signal_dbm{",
        "gsmgw_registration{",
        "gsmgw_modem_ready{",
        "gsmgw_send_latency_seconds_bucket{",
    ] {
        assert!(
            metrics.contains(family),
            "{family} missing from /metrics:\n{metrics}"
        );
    }
    let sent: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("gsmgw_sent_parts_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(sent >= 8.0, "1 + 7 parts were sent: {sent}");
    let r = d.http.get(d.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "metrics need a token");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_sms_land_in_the_inbox() {
    let d = start(2).await;
    let text = "Hello gateway ✓ ".repeat(20);
    let r = d
        .http
        .post(d.sim("/inbound"))
        .json(&json!({"modem": 1, "from": "+4917612345678", "text": text}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let inbox = d
            .running
            .store
            .read(|c| store::list_inbox(c, None, 10))
            .await
            .unwrap();
        if let Some(m) = inbox.first() {
            assert_eq!(m.sender, "+4917612345678");
            assert_eq!(m.text.as_deref(), Some(text.as_str()));
            assert!(m.complete);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no inbound message");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.stop().await;
}

fn gsmgw_cli(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"))
        .args(args)
        .env("GSMGW_URL", format!("http://{}", d.running.api))
        .env("GSMGW_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_lists_and_shows_status_over_the_api() {
    let d = start(2).await;
    let (code, out, err) = tokio::task::block_in_place(|| {
        gsmgw_cli(
            &d,
            &[
                "send",
                "--to",
                "+491701234567",
                "--priority",
                "high",
                "From the CLI",
            ],
        )
    });
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "queued");
    d.wait_status(v["id"].as_i64().unwrap(), "delivered").await;

    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("batch.csv");
    std::fs::write(
        &csv,
        "to,text\n+491700000001,first row\nnot-a-number,bad row\n+491700000002,third row\n",
    )
    .unwrap();
    let csv_path = csv.display().to_string();
    let (code, out, _) =
        tokio::task::block_in_place(|| gsmgw_cli(&d, &["send", "--csv", &csv_path]));
    assert_eq!(code, 1, "a rejected row makes the exit non-zero");
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["accepted"], 2);
    assert_eq!(summary["rejected"][0]["line"], 3, "{summary}");

    let (code, out, err) =
        tokio::task::block_in_place(|| gsmgw_cli(&d, &["messages", "--limit", "10"]));
    assert_eq!(code, 0, "{err}");
    let items: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 3);

    let (code, out, err) = tokio::task::block_in_place(|| gsmgw_cli(&d, &["status", "--json"]));
    assert_eq!(code, 0, "{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["modems"].as_array().unwrap().len(), 2);
    assert!(s["queue_depth"].get("otp").is_some(), "{s}");
    let (code, table, _) = tokio::task::block_in_place(|| gsmgw_cli(&d, &["status"]));
    assert_eq!(code, 0);
    assert!(table.contains("queue: otp"), "{table}");
    let (code, _, err) = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"))
            .args([
                "status",
                "--url",
                &format!("http://{}", d.running.api),
                "--token",
                "wrong",
            ])
            .output()
            .map(|o| {
                (
                    o.status.code().unwrap_or(-1),
                    (),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
            .unwrap()
    });
    assert_eq!(code, 1);
    assert!(err.starts_with("error: 401"), "{err}");
    d.stop().await;
}

/// Issue #10, finding 1: if the store's writer ever stops, the daemon ends with an
/// error (so `Restart=on-failure` restarts it) instead of living on without a store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_store_writer_ends_the_daemon_with_an_error() {
    let d = start(1).await;
    d.running.store.crash_writer_for_tests();
    let ended = tokio::time::timeout(Duration::from_secs(30), d.task)
        .await
        .expect("the daemon stops by itself")
        .unwrap();
    let err = ended.expect_err("a stopped writer is an error");
    assert!(err.contains("store writer stopped"), "{err}");
}

/// Issue #10, finding 7: `[[http.tokens]]` alone is enough to start `gsmgw serve`
/// (it used to exit "no API token").
#[test]
fn serve_starts_with_scoped_tokens_only() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gsmgw.toml");
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // "test"
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[[http.tokens]]\nname = \"app\"\nsha256 = \"{hash}\"\nscopes = [\"send\", \"read\"]\n\n[store]\npath = \"{}\"\n",
            dir.path().join("g.db").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env_remove("GSMGW_API_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut listening = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("gsmgw API: http://") {
            listening = Some(a.to_owned());
            break;
        }
    }
    let Some(addr) = listening else {
        let out = child.wait_with_output().unwrap();
        panic!(
            "serve exited without listening: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    // The scoped token works; no made-up plain token was needed.
    let answer = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// `gsmgw webhook callback-key` prints the key apps verify callbacks with: derived
/// from the operator's secret, never the secret itself.
#[test]
fn webhook_callback_key_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gsmgw.toml");
    std::fs::write(&cfg, "[webhooks]\nsecret = \"operator-secret\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"))
        .args(["webhook", "callback-key", "--config"])
        .arg(&cfg)
        .env_remove("GSMGW_WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        key.trim(),
        gsmgw::webhook::derive_callback_secret("operator-secret")
    );
    assert!(!key.contains("operator-secret"));
}

/// Issue #12 item 2: a batch of long messages to one number gets one concatenation
/// reference each (they used to share `now % 251 + 1`), and the network reassembles
/// every message from exactly its own parts, however the parts interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_messages_to_one_number_never_share_a_reference() {
    let d = start(2).await;
    let texts: Vec<String> = (0..12)
        .map(|i| format!("Message {i:02}: ").repeat(20))
        .collect();
    let items: Vec<Value> = texts
        .iter()
        .map(|t| json!({"to": "+491701112223", "text": t}))
        .collect();
    let r = d
        .http
        .post(d.url("/v1/messages/batch"))
        .bearer_auth(TOKEN)
        .json(&json!({"messages": items}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let v: Value = r.json().await.unwrap();
    let ids: Vec<i64> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    for id in &ids {
        let m = d.wait_status(*id, "delivered").await;
        assert!(m["parts"].as_u64().unwrap() > 1, "{m}");
    }
    let refs: Vec<i64> = {
        let ids = ids.clone();
        d.running
            .store
            .read(move |c| {
                let mut out = Vec::new();
                for id in ids {
                    out.push(c.query_row(
                        "SELECT concat_ref FROM messages WHERE id = ?1",
                        [id],
                        |r| r.get(0),
                    )?);
                }
                Ok(out)
            })
            .await
            .unwrap()
    };
    let mut unique = refs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), refs.len(), "shared references: {refs:?}");
    let sink = d.sink().await;
    let got: Vec<&str> = sink
        .iter()
        .filter(|m| m["to"] == "+491701112223")
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        got.len(),
        texts.len(),
        "one reassembled message each: {sink:?}"
    );
    for t in &texts {
        assert!(
            got.contains(&t.as_str()),
            "{t:?} not reassembled intact: {got:?}"
        );
    }
    d.stop().await;
}

/// A simulated bank of `n` modems of `profile` in `dir/bank`, fixed CMGS latency.
async fn sim_bank(
    dir: &std::path::Path,
    n: usize,
    profile: hw_sim::ProfileName,
    latency_ms: u64,
    seed: u64,
) -> hw_sim::BankHandle {
    hw_sim::Bank::start(hw_sim::BankConfig {
        modems: n,
        link_dir: dir.join("bank"),
        profile,
        latency: (latency_ms, latency_ms),
        seed,
        scenario: None,
        tcp_base: None,
        control: None,
    })
    .await
    .unwrap()
}

impl Daemon {
    async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The texts in the inbox, once `done` says they are all there (polled, test side).
    async fn wait_inbox(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let inbox = self.get_json("/v1/inbox").await;
            let items = inbox["items"].as_array().cloned().unwrap_or_default();
            if done(&items) {
                return items;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: {inbox}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn modems(&self) -> Vec<Value> {
        self.get_json("/v1/modems")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// The daemon on one simulated modem of `profile`, driving exactly `port`.
async fn start_on(bank_ports: Vec<String>, dir: &std::path::Path) -> Daemon {
    let mut config = Config::default();
    config.modems.command_timeout_ms = 2_000;
    config.modems.send_timeout_ms = 10_000;
    let opts = ServeOptions {
        config,
        listen: Some("127.0.0.1:0".parse().unwrap()),
        db: Some(dir.join("gsmgw.db")),
        ports: bank_ports,
        sim: None,
        sim_latency: None,
        tokens: vec![TOKEN.into()],
    };
    let spawned = gsmgw::daemon::spawn(opts, Duration::from_secs(30))
        .await
        .expect("daemon ready in time");
    Daemon {
        running: spawned.running,
        stop: Some(spawned.stop),
        task: spawned.task,
        http: reqwest::Client::new(),
        _dir: tempfile::tempdir().unwrap(),
    }
}

/// Issue #11: every model of the zoo, as a new user would meet it: `gsmgw probe`
/// reports its identity; `gsmgw serve` sends through it (a long message included) and
/// receives where the device can. The busy and forgetful ones (SMSC lost, SIM busy
/// after boot, device busy after `+CFUN`) still end up sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_zoo_model_is_probed_sends_and_receives() {
    let mut results = Vec::new();
    for profile in hw_sim::profile::ZOO {
        let dir = tempfile::tempdir().unwrap();
        let bank = sim_bank(dir.path(), 1, profile, 10, 7).await;
        let info = bank.modems().remove(0);
        let port = info.path.display().to_string();
        // gsmgw probe, the binary, as a user runs it.
        let p = port.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"))
                .args(["probe", &p, "--timeout", "3s"])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let probe: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{profile:?}: probe printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(probe["imei"], info.imei, "{profile:?}: {probe}");
        assert!(probe["manufacturer"].is_string(), "{profile:?}: {probe}");
        let sim_id = probe["iccid"].as_str().or(probe["imsi"].as_str());
        assert!(sim_id.is_some(), "{profile:?}: no SIM identity: {probe}");
        let can_receive = probe["capabilities"]["receive"].as_bool().unwrap_or(false);

        let d = start_on(vec![port], dir.path()).await;
        let long = format!("{profile:?} works: ").repeat(12);
        let mut ids = Vec::new();
        for text in ["Your code is 482913".to_owned(), long.clone()] {
            let (s, v) = d.post(json!({"to": "+491701234567", "text": text})).await;
            assert_eq!(s, 202, "{profile:?}: {v}");
            ids.push(v["id"].as_i64().unwrap());
        }
        for id in &ids {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let m = d.get(*id).await;
                if m["status"] == "sent" || m["status"] == "delivered" {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{profile:?}: message {id} never sent: {m}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let sent: Vec<String> = bank.messages().iter().map(|m| m.text.clone()).collect();
        assert!(
            sent.contains(&long),
            "{profile:?}: the long message reassembled: {sent:?}"
        );
        if can_receive {
            bank.inject_inbound(0, "+491709876543", &format!("hello {profile:?}"))
                .unwrap();
            let want = format!("hello {profile:?}");
            let items = d
                .wait_inbox(&format!("{profile:?}: inbound"), |items| {
                    items.iter().any(|m| m["text"] == want)
                })
                .await;
            assert_eq!(items.len(), 1, "{profile:?}: stored once: {items:?}");
        }
        results.push(format!(
            "{profile:?}: probe ok ({} {}), sent 2 (long: {} chars), received: {}",
            probe["manufacturer"].as_str().unwrap_or("?"),
            probe["model"].as_str().unwrap_or("?"),
            long.chars().count(),
            if can_receive {
                "yes"
            } else {
                "cannot receive (by design)"
            }
        ));
        d.stop().await;
        bank.shutdown().await;
    }
    println!("{}", results.join("\n"));
}

/// Issue #11: a bank of multi-port sticks (Huawei E1752: a modem port that answers AT
/// but gets no URCs, a voice port that never answers AT, a PCUI port with AT and every
/// URC), given to the daemon as `/dev/gsmgw/*-if*`-style links: exactly one modem per
/// stick, the other AT port a spare (never driven), the URC port ends up driven, an
/// inbound message is stored once, and a stick unplugged mid-send fails over and comes
/// back as the same modem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_port_sticks_are_one_modem_each() {
    let dir = tempfile::tempdir().unwrap();
    let bank = sim_bank(dir.path(), 2, hw_sim::ProfileName::HuaweiE1752, 200, 9).await;
    let infos = bank.modems();
    assert!(infos.iter().all(|m| m.ports.len() == 3), "{infos:?}");
    let glob = format!("{}/modem*-if*", dir.path().join("bank").display());
    // `gsmgw probe --scan` groups the ports by device and says which it would use.
    let g = glob.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"))
            .args(["probe", "--scan", &g, "--timeout", "2s"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let scan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let devices = scan["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{scan}");
    for dev in devices {
        assert!(dev["use"].is_string(), "{dev}");
        assert_eq!(dev["spares"].as_array().map(Vec::len), Some(1), "{dev}");
    }
    assert_eq!(scan["ports"].as_array().map(Vec::len), Some(6));
    let d = start_on(vec![glob], dir.path()).await;
    let ms = d.modems().await;
    assert_eq!(ms.len(), 2, "one modem per stick: {ms:?}");
    for m in &ms {
        assert_eq!(m["spare_ports"].as_array().map(Vec::len), Some(1), "{m}");
    }
    let mut iccids: Vec<String> = Vec::new();
    // Inbound to each stick: the +CMTI comes on the PCUI port only; stored once each.
    for (i, info) in infos.iter().enumerate() {
        bank.inject_inbound(i, "+491709876543", &format!("to stick {i}"))
            .unwrap();
        iccids.push(info.iccid.clone());
    }
    let items = d.wait_inbox("inbound", |items| items.len() >= 2).await;
    let mut texts: Vec<&str> = items.iter().filter_map(|m| m["text"].as_str()).collect();
    texts.sort();
    assert_eq!(texts, vec!["to stick 0", "to stick 1"], "each stored once");
    // Now each stick is driven through its URC (PCUI) port.
    let ms = d.modems().await;
    assert_eq!(ms.len(), 2, "{ms:?}");
    for m in &ms {
        let id = m["id"].as_str().unwrap();
        let role = infos
            .iter()
            .flat_map(|i| &i.ports)
            .find(|p| p.path.display().to_string() == id)
            .map(|p| p.urcs);
        assert_eq!(role, Some(true), "driven through the URC port: {m}");
    }
    // A burst, with stick 0 unplugged mid-way: everything goes out, stick 0 returns as
    // the same modem (same SIM).
    let mut ids = Vec::new();
    for n in 0..10 {
        let (s, v) = d
            .post(json!({"to": "+491701234567", "text": format!("burst {n}")}))
            .await;
        assert_eq!(s, 202, "{v}");
        ids.push(v["id"].as_i64().unwrap());
        if n == 3 {
            bank.set_fault(0, hw_sim::Fault::Unplug { down_ms: 700 })
                .unwrap();
        }
    }
    for id in ids {
        d.wait_status(id, "delivered").await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ms = d.modems().await;
        let mut got: Vec<String> = ms
            .iter()
            .filter(|m| m["state"]["state"] == "ready")
            .filter_map(|m| m["iccid"].as_str().map(str::to_owned))
            .collect();
        got.sort();
        let mut want = iccids.clone();
        want.sort();
        if ms.len() == 2 && got == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after replug: {ms:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.stop().await;
    bank.shutdown().await;
}

/// Issue #11: a modem rung again and again (customers call the number that texted
/// them) during a burst still sends every message; each call is hung up, between
/// commands, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modem_rung_during_a_burst_sends_everything_and_hangs_up() {
    let dir = tempfile::tempdir().unwrap();
    let bank = sim_bank(dir.path(), 1, hw_sim::ProfileName::Generic, 100, 4).await;
    let port = bank.modems()[0].path.display().to_string();
    let d = start_on(vec![port], dir.path()).await;
    // Five callers, one after another (a modem has one incoming call at a time), each
    // ringing while four messages are sent.
    let mut ids = Vec::new();
    let calls = 5;
    for call in 0..calls {
        let id = bank
            .ring(
                0,
                hw_sim::RingSpec {
                    from: format!("+4917012300{call:02}"),
                    count: 10,
                    interval_ms: 500,
                    cms_error: None,
                },
            )
            .unwrap();
        for n in 0..4 {
            let (s, v) = d
                .post(json!({"to": "+491701234567", "text": format!("order {call}-{n} shipped")}))
                .await;
            assert_eq!(s, 202, "{v}");
            ids.push(v["id"].as_i64().unwrap());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let rec = bank.calls(0).unwrap();
            let c = rec.iter().find(|c| c.id == id).unwrap();
            if c.ended_by.is_some() {
                assert!(!c.answered, "{c:?}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "call {id} not hung up: {rec:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for id in ids {
        d.wait_status(id, "delivered").await;
    }
    let ms = d.modems().await;
    assert_eq!(ms[0]["calls_rejected"].as_u64(), Some(calls), "{ms:?}");
    d.stop().await;
    bank.shutdown().await;
}

/// Issue #14 item 5 (exit codes): a configuration error exits 78 (EX_CONFIG), which the
/// unit's `RestartPreventExitStatus=78` keeps from a restart loop; so does `serve`
/// without any API token.
#[test]
fn configuration_errors_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[http]\nlisten = \"not an address\"\n").unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    for args in [
        vec!["check-config", "--config", bad.to_str().unwrap()],
        vec!["serve", "--config", bad.to_str().unwrap()],
        vec!["serve", "--config", empty.to_str().unwrap()],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"))
            .args(&args)
            .env_remove("GSMGW_API_TOKEN")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(78),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/gsmgw.service"
    ))
    .unwrap();
    assert!(unit.lines().any(|l| l == "RestartPreventExitStatus=78"));
}

/// The `gsmgw serve --sim 2` process, its API and hw-sim control addresses.
struct ServeProcess {
    child: std::process::Child,
    api: String,
    control: String,
    _dir: tempfile::TempDir,
}

fn serve_process() -> ServeProcess {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"))
        .args([
            "serve",
            "--sim",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--sim-latency",
            "300",
        ])
        .arg("--db")
        .arg(dir.path().join("g.db"))
        .env("GSMGW_API_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut api, mut control) = (None, None);
    while api.is_none() {
        let line = lines.next().expect("serve printed its addresses").unwrap();
        if let Some(a) = line.strip_prefix("hw-sim control API: http://") {
            control = a.split_whitespace().next().map(str::to_owned);
        }
        if let Some(a) = line.strip_prefix("gsmgw API: http://") {
            api = Some(a.trim().to_owned());
        }
    }
    // Keep reading stdout so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    ServeProcess {
        child,
        api: api.unwrap(),
        control: control.expect("hw-sim control address"),
        _dir: dir,
    }
}

/// Issue #14 item 5: SIGTERM stops the daemon within 2 s whatever the modems are doing —
/// a port that vanished 0.3 s before, a send burst, a hung modem — with everything
/// accepted in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_within_two_seconds_whatever_the_modems_do() {
    let http = reqwest::Client::new();
    for case in ["unplug", "burst", "hang"] {
        let mut p = serve_process();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = http.get(format!("http://{}/readyz", p.api)).send().await;
            if r.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{case}: never ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let posts = if case == "burst" { 30 } else { 4 };
        for n in 0..posts {
            let r = http
                .post(format!("http://{}/v1/messages", p.api))
                .bearer_auth(TOKEN)
                .json(&json!({"to": "+491701234567", "text": format!("{case} {n}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
        }
        let fault = match case {
            "unplug" => Some(json!({"type": "unplug", "down_ms": 10_000})),
            "hang" => Some(json!({"type": "hang_now"})),
            _ => None,
        };
        if let Some(f) = fault {
            for i in 0..2 {
                let r = http
                    .post(format!("http://{}/modems/{i}/faults", p.control))
                    .json(&f)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{case}: {}", r.status());
            }
            // The scenario: the signal comes 0.3 s after the modems went away or hung.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let started = std::time::Instant::now();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = tokio::task::spawn_blocking(move || {
            let s = p.child.wait().unwrap();
            (s, p)
        })
        .await
        .unwrap()
        .0;
        let took = started.elapsed();
        println!("{case}: exited {status} after {took:?}");
        assert!(status.success(), "{case}: {status}");
        assert!(took < Duration::from_secs(2), "{case}: took {took:?}");
    }
}
