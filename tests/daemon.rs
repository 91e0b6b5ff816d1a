//! The real daemon over real PTYs of an in-process hw-sim bank, driven over HTTP:
//! what `gsmgw serve --sim N` does, end to end.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Daemon, TOKEN, sim_bank};
use gsmgw::store;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_the_network_and_get_delivered() {
    let d = Daemon::sim(3).await;
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
    assert!(!metrics.contains("NaN"), "no NaN gauges:\n{metrics}");
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
    let d = Daemon::sim(2).await;
    let text = "Hello gateway ✓ ".repeat(20);
    let r = d
        .http
        .post(d.sim_url("/inbound"))
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
    let d = Daemon::sim(2).await;
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
    let d = Daemon::sim(1).await;
    d.running.store.crash_writer_for_tests();
    let ended = d.ended(Duration::from_secs(30)).await;
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
    let d = Daemon::sim(2).await;
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

        let d = Daemon::on_ports(vec![port], dir.path()).await;
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
    let d = Daemon::on_ports(vec![glob], dir.path()).await;
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
        let id = m["port"].as_str().unwrap();
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
    let d = Daemon::on_ports(vec![port], dir.path()).await;
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

/// Issue #14 item 4: a damaged database (not a database at all, or pages that fail
/// `PRAGMA quick_check`) stops `serve` with exit 78, naming the file and what to do,
/// before anything is written into it.
#[test]
fn a_damaged_database_is_refused_with_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let damaged = dir.path().join("damaged.db");
    {
        let s = store::Store::open(&damaged).unwrap();
        s.write_blocking(|c| {
            for i in 0..400 {
                c.execute(
                    "INSERT INTO inbox (received_at, sender, parts_total, parts_received, \
                     complete, pdus, body) VALUES (?1, '+4917', 1, 1, 1, '[]', ?2)",
                    rusqlite_free_params(i),
                )?;
            }
            Ok(())
        })
        .unwrap();
        s.close();
    }
    // Scribble over the middle of the file (b-tree pages), as a failing disk would.
    let mut bytes = std::fs::read(&damaged).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 2048] {
        *b = 0xa5;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    for db in [&garbage, &damaged] {
        let before = std::fs::read(db).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--port",
                "/nonexistent/gsmgw*",
            ])
            .arg("--db")
            .arg(db)
            .env("GSMGW_API_TOKEN", "t")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{}: {err}", db.display());
        assert!(err.contains(&db.display().to_string()), "{err}");
        assert!(err.contains("gsmgw backup"), "says what to do: {err}");
        assert_eq!(
            std::fs::read(db).unwrap(),
            before,
            "nothing written into it"
        );
    }
}

/// Two parameters for the inbox insert above without naming rusqlite's types.
fn rusqlite_free_params(i: i64) -> (i64, String) {
    (i, "x".repeat(200 + i as usize))
}

/// The `gsmgw serve --sim 2` process, its API and hw-sim control addresses.
struct ServeProcess {
    child: std::process::Child,
    api: String,
    control: String,
    _dir: tempfile::TempDir,
}

fn serve_process() -> ServeProcess {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"));
    cmd.args([
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
    .env("GSMGW_API_TOKEN", TOKEN);
    let (child, api, control) = common::serve_child(cmd);
    ServeProcess {
        child,
        api,
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

/// Issue #14 item 2: `gsmgw backup` while the daemon serves gives a verified copy;
/// restoring it (stop, copy back, start) sends what was queued and nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_with_nothing_sent_twice() {
    let dir = tempfile::tempdir().unwrap();
    let bank = sim_bank(dir.path(), 1, hw_sim::ProfileName::Generic, 20, 5).await;
    let ports: Vec<String> = bank
        .modems()
        .iter()
        .map(|m| m.path.display().to_string())
        .collect();
    let db = dir.path().join("gsmgw.db");
    let d = Daemon::on_ports(ports.clone(), dir.path()).await;
    let mut sent_ids = Vec::new();
    for i in 0..4 {
        let (s, v) = d
            .post(json!({"to": "+491701234567", "text": format!("before backup {i}")}))
            .await;
        assert_eq!(s, 202, "{v}");
        sent_ids.push(v["id"].as_i64().unwrap());
    }
    for id in &sent_ids {
        d.wait_out(*id).await;
    }
    // Out of rotation: what comes next stays queued in the backup.
    let modem = d.modems().await.remove(0);
    let id = modem["id"].as_str().unwrap().replace('/', "%2F");
    let r = d
        .http
        .post(d.url(&format!("/v1/modems/{id}/disable")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut queued_ids = Vec::new();
    for i in 0..3 {
        let (s, v) = d
            .post(json!({"to": "+491701234567", "text": format!("queued at backup {i}")}))
            .await;
        assert_eq!(s, 202, "{v}");
        queued_ids.push(v["id"].as_i64().unwrap());
    }
    // The binary, as an operator runs it, while the daemon serves.
    let copy = dir.path().join("backup.db");
    let (db_arg, copy_arg) = (db.display().to_string(), copy.display().to_string());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"))
            .args(["backup", &copy_arg, "--db", &db_arg])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["integrity"], "ok", "{report}");
    assert_eq!(report["messages"], 7, "{report}");
    // The history export sees the same seven, oldest first.
    let db_arg = db.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"))
            .args(["export", "--db", &db_arg, "--format", "ndjson"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success());
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [sent_ids.clone(), queued_ids.clone()].concat());
    d.stop().await;

    // Restore as docs/install.md says: the copy replaces the file, the old WAL goes.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&copy, &db).unwrap();
    let d = Daemon::on_ports(ports, dir.path()).await;
    for id in &queued_ids {
        d.wait_out(*id).await;
    }
    let mut texts: Vec<String> = bank.messages().iter().map(|m| m.text.clone()).collect();
    texts.sort();
    let mut want: Vec<String> = (0..4)
        .map(|i| format!("before backup {i}"))
        .chain((0..3).map(|i| format!("queued at backup {i}")))
        .collect();
    want.sort();
    assert_eq!(texts, want, "each message reached the network exactly once");
    d.stop().await;
}

/// Issue #14 item 1: the daemon prunes what retention says is old, in its first
/// housekeeping pass, and keeps what is pending or recent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_finished_rows_and_keeps_pending_and_recent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let day = 86_400_000;
    let now = store::now_ms();
    let message = |to: &str| store::NewMessage {
        to: to.into(),
        body: "hello".into(),
        encoding: "gsm7".into(),
        parts_total: 1,
        priority: 0,
        send_at: None,
        expires_at: None,
        status_report: false,
        flash: false,
        validity_secs: None,
        pinned_sim: None,
        tags: Vec::new(),
        callback_url: None,
        masked: false,
    };
    let (old_done, old_queued, recent_done) = {
        let s = store::Store::open(dir.path().join("gsmgw.db")).unwrap();
        let (a, b, c) = (message("+491701"), message("+491702"), message("+491703"));
        let ids = s
            .write(move |conn| {
                let old = now - 100 * day;
                let x = store::insert_message(conn, &a, old)?;
                store::set_status(conn, x, store::MessageStatus::Delivered, None, None, old)?;
                let y = store::insert_message(conn, &b, old)?;
                let z = store::insert_message(conn, &c, now - day)?;
                store::set_status(conn, z, store::MessageStatus::Failed, None, None, now - day)?;
                conn.execute(
                    "INSERT INTO inbox (received_at, sender, parts_total, parts_received, \
                     complete, pdus) VALUES (?1, '+4917', 1, 1, 1, '[]'), (?2, '+4918', 1, 1, 1, '[]')",
                    [old, now],
                )?;
                Ok((x, y, z))
            })
            .await
            .unwrap();
        s.close();
        ids
    };
    let d = Daemon::on_ports(Vec::new(), dir.path()).await;
    let mut passes = d.running.housekeeping_passes.clone();
    tokio::time::timeout(Duration::from_secs(30), passes.wait_for(|n| *n >= 1))
        .await
        .expect("a housekeeping pass in time")
        .unwrap();
    assert_eq!(d.get(old_done).await["error"]["code"], "not_found");
    assert_eq!(d.get(old_queued).await["status"], "queued", "pending: kept");
    assert_eq!(d.get(recent_done).await["status"], "failed", "recent: kept");
    let inbox = d.get_json("/v1/inbox").await;
    let senders: Vec<&str> = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["from"].as_str().or(m["sender"].as_str()))
        .collect();
    assert_eq!(senders, ["+4918"], "{inbox}");
    d.stop().await;
}

/// `gsmgw serve --sim 1` whose database lives on a small tmpfs in a private mount
/// namespace, so a test can fill that disk for real. Needs root and util-linux's
/// `unshare`/`nsenter`: skipped without them on a laptop, a failure in CI.
struct TmpfsServe {
    child: std::process::Child,
    api: String,
    mnt: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TmpfsServe {
    fn start(size: &str) -> Option<TmpfsServe> {
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let tools = ["unshare", "nsenter"].iter().all(|t| {
            std::process::Command::new(t)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if !(root && tools) {
            assert!(
                std::env::var("CI").is_err(),
                "CI needs root, unshare and nsenter for the disk-full test"
            );
            eprintln!("skipped: needs root, unshare and nsenter");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let script = format!(
            "mount -t tmpfs -o size={size},mode=0700 gsmgw-test {m} && exec {bin} serve --sim 1 \
             --sim-latency 20 --listen 127.0.0.1:0 --db {m}/g.db",
            m = mnt.display(),
            bin = env!("CARGO_BIN_EXE_gsmgw"),
        );
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("GSMGW_API_TOKEN", TOKEN);
        let (child, api, _) = common::serve_child(cmd);
        Some(TmpfsServe {
            child,
            api,
            mnt,
            _dir: dir,
        })
    }

    /// Runs a shell command inside the daemon's mount namespace.
    fn inside(&self, cmd: &str) {
        let pid = self.child.id().to_string();
        let out = std::process::Command::new("nsenter")
            .args(["-t", &pid, "-m", "sh", "-c", cmd])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TmpfsServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue #14 item 3, for real: the database's filesystem fills up. Every 202 is a
/// committed row, the rest get 503 `store_unavailable` with `Retry-After`, `/readyz`
/// says why, and once space returns the daemon takes messages again by itself and sends
/// everything it accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_never_a_false_202_and_recovers_by_itself() {
    let Some(p) = TmpfsServe::start("6m") else {
        return;
    };
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", p.api);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !http
        .get(url("/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let post = |text: String| {
        let http = http.clone();
        let u = url("/v1/messages");
        async move {
            let r = http
                .post(u)
                .bearer_auth(TOKEN)
                .json(&json!({"to": "+491701234567", "text": text}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").is_some();
            (
                status,
                retry,
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let mut accepted = Vec::new();
    let (s, _, v) = post("before the disk fills".into()).await;
    assert_eq!(s, 202, "{v}");
    accepted.push(v["id"].as_i64().unwrap());

    // Fill the filesystem to the last block.
    p.inside(&format!(
        "dd if=/dev/zero of={}/fill bs=16k 2>/dev/null; true",
        p.mnt.display()
    ));
    let pad = "x".repeat(120);
    let mut refused = 0;
    for i in 0..5_000 {
        let (s, retry, v) = post(format!("while full {i} {pad}")).await;
        match s {
            202 => accepted.push(v["id"].as_i64().unwrap()),
            503 => {
                assert_eq!(v["error"]["code"], "store_unavailable", "{v}");
                assert!(retry, "a 503 says when to come back");
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
            other => panic!("{other}: {v}"),
        }
    }
    assert_eq!(refused, 5, "the disk filled and nothing was refused");
    eprintln!("accepted {} before the disk was full", accepted.len());
    // Every 202 is a row the daemon can read back.
    for id in &accepted {
        let r = http
            .get(url(&format!("/v1/messages/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "message {id} was accepted but is not stored"
        );
    }
    let r = http.get(url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let why: Value = r.json().await.unwrap();
    assert!(
        why["store_error"]
            .as_str()
            .is_some_and(|e| e.contains("full")),
        "{why}"
    );

    // Space returns: the daemon accepts again without a restart.
    p.inside(&format!("rm {}/fill", p.mnt.display()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let (s, _, v) = post("after space returned".into()).await;
        if s == 202 {
            break v["id"].as_i64().unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never recovered: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    accepted.push(after);
    // And everything accepted goes out.
    for id in &accepted {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let m: Value = http
                .get(url(&format!("/v1/messages/{id}")))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if m["status"] == "sent" || m["status"] == "delivered" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "accepted message {id} never went out: {m}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let r = http.get(url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "ready again");
}

/// The status of a GET to `url` with `token`.
async fn status_with(http: &reqwest::Client, url: String, token: &str) -> u16 {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Issue #14 item 5: a reload re-reads the file — here the API token — without a
/// restart, and a file that does not load leaves the running configuration in place.
/// First through `Running::reload`, then as systemd does it: `SIGHUP` to `gsmgw serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_takes_a_new_token_and_keeps_the_old_config_on_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gsmgw.toml");
    let write = |token: &str| {
        std::fs::write(
            &path,
            format!("[http]\ntoken = \"{token}\"\n[retention]\ninbox_days = 30\n"),
        )
        .unwrap();
    };
    write("first-token");
    let d = Daemon::start(common::Start {
        config: gsmgw::config::Config::load(&path).unwrap(),
        config_path: Some(path.clone()),
        tokens: vec!["first-token".into()],
        db: Some(dir.path().join("gsmgw.db")),
        ports: vec![dir.path().join("no-modems-*").display().to_string()],
        ..common::Start::default()
    })
    .await;
    let status = |token: &'static str| status_with(&d.http, d.url("/v1/messages"), token);
    assert_eq!(status("first-token").await, 200);
    let mut reloads = d.running.reloads.clone();

    write("second-token");
    d.running.reload.send(()).unwrap();
    reloads.wait_for(|r| r.applied == 1).await.unwrap();
    assert_eq!(status("second-token").await, 200);
    assert_eq!(status("first-token").await, 401, "the old token is gone");

    std::fs::write(&path, "[http\ntoken = ").unwrap();
    d.running.reload.send(()).unwrap();
    reloads.wait_for(|r| r.refused == 1).await.unwrap();
    assert_eq!(
        status("second-token").await,
        200,
        "a broken file changes nothing"
    );
    d.stop().await;

    // The real thing: SIGHUP to the process.
    write("third-token");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gsmgw"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--port",
        "/nonexistent/gsmgw*",
    ])
    .arg("--config")
    .arg(&path)
    .arg("--db")
    .arg(dir.path().join("process.db"))
    .env_remove("GSMGW_API_TOKEN");
    let (mut child, api, _) = common::serve_child(cmd);
    let http = reqwest::Client::new();
    let get = |token: &'static str| status_with(&http, format!("http://{api}/v1/messages"), token);
    assert_eq!(get("third-token").await, 200);
    write("fourth-token");
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    common::eventually(
        "SIGHUP reloads the token",
        Duration::from_secs(10),
        || async {
            match get("fourth-token").await {
                200 => Ok(()),
                s => Err(format!("{s}")),
            }
        },
    )
    .await;
    assert_eq!(get("third-token").await, 401);
    let _ = child.kill();
    let _ = child.wait();
}
