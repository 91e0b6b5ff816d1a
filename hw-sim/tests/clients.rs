//! Real, unmodified Debian clients (gammu, smstools3's smsd) against a hw-sim modem.
//! A missing tool skips the test, except under CI=true where it fails.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sim;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn tool_or_skip(name: &str) -> Option<PathBuf> {
    match find_tool(name) {
        Some(p) => Some(p),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{name} is not installed (CI=true): apt-get install gammu smstools")
        }
        None => {
            eprintln!("SKIP: {name} not installed");
            None
        }
    }
}

/// Runs a command with stdin text and a time limit; returns (success, stdout+stderr).
fn run(cmd: &mut Command, stdin: Option<&str>, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let t = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "timed out: {cmd:?}\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn gammu_identify_send_and_receive() {
    let Some(gammu) = tool_or_skip("gammu") else {
        return;
    };
    let sim = Sim::start(|c| c.latency = (10, 30));
    let info = sim.bank().modems()[0].clone();
    let rc = sim.dir.path().join("gammurc");
    std::fs::write(
        &rc,
        format!(
            "[gammu]\ndevice = {}\nconnection = at\nlogfile = {}\nlogformat = textall\n",
            info.path.display(),
            sim.dir.path().join("gammu.log").display()
        ),
    )
    .unwrap();
    let g = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new(&gammu);
        c.arg("-c").arg(&rc).args(args);
        run(&mut c, stdin, Duration::from_secs(60))
    };
    let (ok, out) = g(&["identify"], None);
    assert!(ok, "{out}");
    assert!(
        out.contains(&info.imei) && out.contains(&info.imsi) && out.contains("hw-sim"),
        "{out}"
    );
    let (ok, out) = g(&["getsecuritystatus"], None);
    assert!(ok && out.contains("Nothing to enter"), "{out}");
    let (ok, out) = g(&["networkinfo"], None);
    assert!(ok && out.contains("home network"), "{out}");

    let (ok, out) = g(
        &[
            "sendsms",
            "TEXT",
            "+491701234567",
            "-text",
            "Hello from gammu",
        ],
        None,
    );
    assert!(ok, "{out}");
    let long: String = "The quick brown fox jumps over the lazy dog. "
        .repeat(10)
        .chars()
        .take(400)
        .collect();
    let (ok, out) = g(
        &["sendsms", "TEXT", "+491701234567", "-len", "400"],
        Some(&long),
    );
    assert!(ok, "{out}");
    let uni = "Grüße 😀 Привет";
    let (ok, out) = g(
        &["sendsms", "TEXT", "+491701234567", "-unicode", "-text", uni],
        None,
    );
    assert!(ok, "{out}");
    let msgs = sim.bank().messages();
    let texts: Vec<(&str, usize)> = msgs.iter().map(|m| (m.text.as_str(), m.parts)).collect();
    assert_eq!(
        texts,
        vec![("Hello from gammu", 1), (long.as_str(), 3), (uni, 1)]
    );
    assert!(
        msgs.iter()
            .all(|m| m.to == "+491701234567" && m.from == info.msisdn)
    );

    sim.bank()
        .inject_inbound(0, "+4930123456", "Inbound for gammu äöü")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (ok, out) = g(&["getallsms"], None);
    assert!(ok, "{out}");
    assert!(
        out.contains("Inbound for gammu äöü") && out.contains("+4930123456"),
        "{out}"
    );
    sim.shutdown();
}

struct Smsd(Child);

impl Drop for Smsd {
    fn drop(&mut self) {
        // SIGTERM lets smsd stop its modem process too.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn smsd_sends_spool_file_and_receives() {
    let Some(smsd) = tool_or_skip("smsd") else {
        return;
    };
    let sim = Sim::start(|_| {});
    let info = sim.bank().modems()[0].clone();
    let d = sim.dir.path().join("smsd");
    for sub in ["outgoing", "checked", "incoming", "failed", "sent"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let conf = d.join("smsd.conf");
    std::fs::write(
        &conf,
        format!(
            "devices = GSM1\noutgoing = {0}/outgoing\nchecked = {0}/checked\nincoming = {0}/incoming\n\
             failed = {0}/failed\nsent = {0}/sent\nlogfile = {0}/smsd.log\nloglevel = 7\n\
             infofile = {0}/smsd.working\npidfile = {0}/smsd.pid\n\n[GSM1]\ndevice = {1}\nincoming = yes\n",
            d.display(),
            info.path.display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("outgoing").join("msg1"),
        "To: 491701234599\n\nHello from smsd\n",
    )
    .unwrap();
    let _guard = Smsd(
        Command::new(&smsd)
            .arg("-t")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(d.join("smsd.log")).unwrap_or_default();
    let sent = wait_for(Duration::from_secs(60), || {
        sim.bank()
            .messages()
            .iter()
            .any(|m| m.text == "Hello from smsd")
    });
    assert!(sent, "smsd did not send; log:\n{}", log());
    let m = sim
        .bank()
        .messages()
        .into_iter()
        .find(|m| m.text == "Hello from smsd")
        .unwrap();
    assert_eq!(m.to, "+491701234599");
    assert!(
        wait_for(Duration::from_secs(10), || d
            .join("sent")
            .join("msg1")
            .exists()),
        "{}",
        log()
    );

    sim.bank()
        .inject_inbound(0, "+4917055555", "Inbound for smsd")
        .unwrap();
    let got = wait_for(Duration::from_secs(60), || {
        std::fs::read_dir(d.join("incoming"))
            .map(|rd| {
                rd.flatten().any(|e| {
                    std::fs::read_to_string(e.path()).is_ok_and(|s| {
                        s.contains("Inbound for smsd") && s.contains("From: 4917055555")
                    })
                })
            })
            .unwrap_or(false)
    });
    assert!(got, "nothing in incoming; log:\n{}", log());
    drop(_guard);
    sim.shutdown();
}
