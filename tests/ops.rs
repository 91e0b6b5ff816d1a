//! Operations: the daemon logs to the journal with structured fields. A stand-in
//! journald socket is bound over `/run/systemd/journal/socket` inside a private mount
//! namespace (`unshare`, root only), so the real system is never touched.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Parses one datagram of journald's native protocol (`KEY=value` lines, or
/// `KEY\n<u64 LE length><bytes>\n` for values with newlines).
fn parse_entry(mut b: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    while !b.is_empty() {
        let nl = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
        let line = &b[..nl];
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            out.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            b = &b[(nl + 1).min(b.len())..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &b[(nl + 1).min(b.len())..];
            if rest.len() < 8 {
                break;
            }
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            let val = &rest[8..(8 + len).min(rest.len())];
            out.insert(key, String::from_utf8_lossy(val).into_owned());
            b = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    out
}

fn can_unshare() -> bool {
    Command::new("unshare")
        .args(["--mount", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn logs_reach_the_journal_with_structured_fields() {
    if !can_unshare() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must be able to run unshare --mount (root) for the journald test"
        );
        eprintln!("skipping: unshare --mount needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("journal.socket");
    let journal = UnixDatagram::bind(&sock_path).unwrap();
    journal
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let script = r#"set -e
mount -t tmpfs tmpfs /run/systemd 2>/dev/null || { mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd; }
mkdir -p /run/systemd/journal
touch /run/systemd/journal/socket
mount --bind "$SOCK" /run/systemd/journal/socket
exec "$@""#;
    let child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(env!("CARGO_BIN_EXE_gsmgw"))
        .args(["serve", "--sim", "1", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("g.db"))
        .env("SOCK", &sock_path)
        .env("JOURNAL_STREAM", "8:12345")
        .env("GSMGW_API_TOKEN", "journal-test")
        .env("RUST_LOG", "gsmgw=debug")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    // The API address is printed on stdout.
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("gsmgw API: http://") {
                let _ = tx.send(a.to_owned());
            }
        }
    });
    let api = rx.recv_timeout(Duration::from_secs(30)).expect("daemon up");
    let secret_text = "journal-check body 7731";
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut posted = false;
    let mut entries: Vec<HashMap<String, String>> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        assert!(
            Instant::now() < deadline,
            "no structured entries: {entries:?}"
        );
        // An empty datagram carries a memfd with a large entry (journald's protocol);
        // this stand-in does not read fds, so it only checks inline entries.
        if let Ok(n) = journal.recv(&mut buf)
            && n > 0
        {
            entries.push(parse_entry(&buf[..n]));
        }
        let modem_ready = entries.iter().any(|e| {
            e.get("MESSAGE").is_some_and(|m| m.contains("modem state"))
                && e.get("STATE").is_some_and(|s| s.contains("Ready"))
        });
        if modem_ready && !posted {
            let body = format!(r#"{{"to":"+491701234567","text":"{secret_text}"}}"#);
            let out = Command::new("curl")
                .args(["-s", "-H", "Authorization: Bearer journal-test", "-H"])
                .arg("Content-Type: application/json")
                .args(["-d", &body, &format!("http://{api}/v1/messages")])
                .output()
                .unwrap();
            assert!(String::from_utf8_lossy(&out.stdout).contains("queued"));
            posted = true;
        }
        let sent = entries.iter().any(|e| {
            e.contains_key("MESSAGE_ID") && e.contains_key("MODEM") && e.contains_key("ICCID")
        });
        if posted && sent {
            break;
        }
    }
    let e = entries
        .iter()
        .find(|e| e.contains_key("MESSAGE_ID") && e.contains_key("ICCID"))
        .unwrap();
    assert_eq!(
        e.get("SYSLOG_IDENTIFIER").map(String::as_str),
        Some("gsmgw")
    );
    assert!(
        e.get("PRIORITY")
            .is_some_and(|p| ["5", "6", "7"].contains(&p.as_str())),
        "{e:?}"
    );
    assert!(e.contains_key("TARGET"));
    // Errors and warnings map to journald priorities 3 and 4; info is 5 (notice).
    let bad: Vec<_> = entries
        .iter()
        .filter(|e| e.get("PRIORITY").is_none())
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    // Message bodies are not logged.
    assert!(
        entries
            .iter()
            .all(|e| e.values().all(|v| !v.contains(secret_text))),
        "a message body reached the journal"
    );
}

/// Issue #11: `gsmgw doctor` against a bank where one port is held by another process,
/// one SIM is PIN-locked and one has no SMSC reports exactly those three, each with
/// its fix, and exits non-zero (they block sending); the healthy modem adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_exactly_what_blocks_sending() {
    use hw_sim::{Bank, BankConfig, Fault, ProfileName};
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::start(BankConfig {
        modems: 4,
        link_dir: dir.path().join("bank"),
        profile: ProfileName::Generic,
        latency: (10, 10),
        seed: 5,
        scenario: None,
        tcp_base: None,
        control: None,
    })
    .await
    .unwrap();
    bank.set_fault(
        1,
        Fault::SimPin {
            pin: "1111".into(),
            puk: "12345678".into(),
        },
    )
    .unwrap();
    bank.set_fault(2, Fault::NoSmsc).unwrap();
    let ports: Vec<String> = bank
        .modems()
        .iter()
        .map(|m| m.path.display().to_string())
        .collect();
    // Another process holds port 0 (from doctor's side: this test process).
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&ports[0])
        .unwrap();
    let _lock = nix::fcntl::Flock::lock(held, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let mut args = vec![
        "doctor".to_owned(),
        "--json".into(),
        "--timeout".into(),
        "2s".into(),
        "--user".into(),
        "gsmgw-doctor-test-no-such-user".into(),
        "--config".into(),
        dir.path().join("none.toml").display().to_string(),
    ];
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    for p in &ports {
        args.push("--port".into());
        args.push(p.clone());
    }
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_gsmgw"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        !out.status.success(),
        "blocking findings exit non-zero: {v}"
    );
    let mut got: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(!f["fix"].as_str().unwrap_or("").is_empty(), "{f}");
            (
                f["check"].as_str().unwrap().to_owned(),
                f["port"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        ("port_busy".to_owned(), ports[0].clone()),
        ("sim_pin".to_owned(), ports[1].clone()),
        ("no_smsc".to_owned(), ports[2].clone()),
    ];
    want.sort();
    assert_eq!(got, want, "{v}");
    assert_eq!(v["blocking"], 3);
    // The healthy modem was identified.
    assert!(v["ports"][3]["probe"]["imei"].is_string(), "{v}");
    bank.shutdown().await;
}
