//! Reliability tests of issue #5, against hw-sim:
//!
//! - `kill_9_ten_times_during_2000_messages`: the real `gsmgw` binary as a child process is
//!   killed with SIGKILL at random (seeded) moments of a run and restarted on the same
//!   database and ports; every message the API accepted reaches hw-sim's sink at least
//!   once, and one that arrived more than once is flagged `possible_duplicate`.
//!   The regular test is the issue's size (2,000 messages, 10 kills, ~20 s); a stress
//!   variant (three more seeds, a faster producer, shorter gaps) is `#[ignore]`d:
//!   `cargo test --release --test reliability -- --ignored --nocapture`.
//! - `unplugged_modem_fails_over_within_a_second`: a modem is unplugged while its
//!   `AT+CMGS` is in flight; the message goes out on another modem within 1 s.
//! - `queue_drains_despite_every_fault`: a bank where most modems carry a different
//!   hw-sim fault still sends every message on the rest.
//!
//! hw-sim runs in the test process (an in-process [`hw_sim::Bank`] on real PTYs), not
//! as the `hw-sim` binary: for the kill test what matters is that the bank is another
//! process than the daemon, so it outlives every SIGKILL and keeps the sink. Building
//! the `hw-sim` binary from a test (a nested `cargo build`) would depend on cargo being
//! there and on the target directory's layout, which `cargo nextest` archives do not
//! promise; the in-process bank is the same code behind the same PTYs.
//!
//! Figures go to stderr (`--nocapture` shows them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Daemon, Start};
use gsmgw::config::Config;
use hw_sim::{Bank, BankConfig, BankHandle, Fault, ProfileName, RegState};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "reliability-token";

/// A tiny deterministic PRNG (xorshift64), so kill moments repeat for a given seed.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn start_bank(dir: &Path, modems: usize, latency: (u64, u64), seed: u64) -> BankHandle {
    Bank::start(BankConfig {
        modems,
        link_dir: dir.join("links"),
        profile: ProfileName::Generic,
        latency,
        seed,
        scenario: None,
        tcp_base: None,
        control: None,
    })
    .await
    .unwrap()
}

/// Texts in hw-sim's sink → the modems each copy left from.
fn sink_by_text(bank: &BankHandle) -> HashMap<String, Vec<usize>> {
    let mut out: HashMap<String, Vec<usize>> = HashMap::new();
    for m in bank.messages() {
        out.entry(m.text).or_default().push(m.modem);
    }
    out
}

fn is_final(status: &str) -> bool {
    !matches!(status, "queued" | "sending")
}

async fn get_message(http: &reqwest::Client, api: SocketAddr, id: i64) -> Value {
    http.get(format!("http://{api}/v1/messages/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// kill -9

/// The `gsmgw` binary as a child process; killed (SIGKILL) when dropped, so a failing
/// test leaves no daemon behind.
struct DaemonProc {
    child: Option<Child>,
    args: Vec<String>,
    log: PathBuf,
    api: SocketAddr,
}

impl DaemonProc {
    fn spawn(&mut self) {
        assert!(self.child.is_none());
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gsmgw"))
            .args(&self.args)
            .env("GSMGW_API_TOKEN", TOKEN)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits until the API answers (the store is open by then).
    async fn wait_up(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("daemon exited ({status}):\n{}", self.log_tail());
            }
            let r = http
                .get(format!("http://{}/healthz", self.api))
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            if r.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemon not up in 30 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the producer knows about message n.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    NotYet,
    /// 202: committed, owed.
    Accepted(i64),
    /// The request was cut (the daemon died under it): committed or not, nobody knows.
    Unknown,
}

/// A message row, read from the database read-only (WAL: works beside the daemon).
struct Row {
    id: i64,
    body: String,
    status: String,
    possible_duplicate: bool,
}

fn db_rows(db: &Path) -> Vec<Row> {
    use rusqlite::{Connection, OpenFlags};
    let c = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut st = c
        .prepare("SELECT id, body, status, possible_duplicate FROM messages ORDER BY id")
        .unwrap();
    st.query_map([], |r| {
        Ok(Row {
            id: r.get(0)?,
            body: r.get(1)?,
            status: r.get(2)?,
            possible_duplicate: r.get(3)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn text_of(n: usize) -> String {
    format!("msg-{n}")
}

/// POSTs messages `first, first + step, …` below `total`, message n not before
/// `start + n * every` (a steady stream, so kills land while clients are posting). A
/// refused connection or an error response is a definite "not stored" and is retried;
/// a request cut after it was sent is `Unknown` and not retried (a retry could store it
/// twice).
async fn produce(
    api: SocketAddr,
    (first, step, total): (usize, usize, usize),
    (start, every): (Instant, Duration),
    outcomes: Arc<Mutex<Vec<Outcome>>>,
) {
    let http = http();
    let mut n = first;
    let deadline = Instant::now() + Duration::from_secs(600);
    while n < total {
        tokio::time::sleep_until((start + every * n as u32).into()).await;
        assert!(Instant::now() < deadline, "producer stuck at message {n}");
        let r = http
            .post(format!("http://{api}/v1/messages"))
            .bearer_auth(TOKEN)
            .json(&json!({"to": format!("+49171{n:07}"), "text": text_of(n)}))
            .send()
            .await;
        let outcome = match r {
            Ok(r) if r.status().as_u16() == 202 => match r.json::<Value>().await {
                Ok(v) => Outcome::Accepted(v["id"].as_i64().unwrap()),
                // Committed, but the body was cut: unknown id, found by text later.
                Err(_) => Outcome::Unknown,
            },
            Ok(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(e) if e.is_connect() => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(_) => Outcome::Unknown,
        };
        outcomes.lock().unwrap()[n] = outcome;
        n += step;
    }
}

struct KillRun {
    messages: usize,
    kills: usize,
    modems: usize,
    seed: u64,
    /// Messages posted per second.
    rate: u32,
    /// Time from a (re)start to the next kill, ms.
    gap_ms: (u64, u64),
    /// How long everything may take.
    deadline: Duration,
}

async fn kill_run(p: KillRun) {
    let t_start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let bank = start_bank(dir.path(), p.modems, (5, 20), p.seed).await;
    let db = dir.path().join("gsmgw.db");
    let config = dir.path().join("gsmgw.toml");
    // exclusive = false: hw-sim keeps its own descriptor on every PTY slave, so a
    // TIOCEXCL the killed daemon set would outlive it (on a real serial device the
    // last close clears it) and, without CAP_SYS_ADMIN, lock the restart out.
    std::fs::write(
        &config,
        r#"
[http]
# This test polls every message; the per-token rate limit is not what it measures.
rate_limit = { per_second = 100000.0, burst = 100000 }

[modems]
exclusive = false
command_timeout_ms = 1000
send_timeout_ms = 3000
health_interval_secs = 30

[dispatch]
max_attempts = 100
retry_base_ms = 100
retry_max_ms = 1000

[log]
level = "info"
"#,
    )
    .unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut daemon = DaemonProc {
        child: None,
        args: vec![
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            api.to_string(),
            "--db".into(),
            db.display().to_string(),
            "--port".into(),
            dir.path().join("links/modem*").display().to_string(),
        ],
        log: dir.path().join("gsmgw.log"),
        api,
    };
    let http = http();
    daemon.spawn();
    daemon.wait_up(&http).await;

    let outcomes = Arc::new(Mutex::new(vec![Outcome::NotYet; p.messages]));
    let every = Duration::from_secs(1) / p.rate;
    let t_post = Instant::now();
    let producers: Vec<_> = (0..4)
        .map(|k| {
            let range = (k, 4, p.messages);
            tokio::spawn(produce(api, range, (t_post, every), outcomes.clone()))
        })
        .collect();

    let mut rng = XorShift::new(p.seed);
    let mut kills = Vec::new();
    for _ in 0..p.kills {
        tokio::time::sleep(Duration::from_millis(rng.range(p.gap_ms.0, p.gap_ms.1))).await;
        daemon.kill();
        let at = t_start.elapsed();
        let rows = db_rows(&db);
        let sending = rows.iter().filter(|r| r.status == "sending").count();
        let done = rows.iter().filter(|r| is_final(&r.status)).count();
        let posted = outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| **o != Outcome::NotYet)
            .count();
        kills.push((at, posted, done, sending));
        // Down for a moment, as a supervisor's restart delay.
        tokio::time::sleep(Duration::from_millis(rng.range(0, 300))).await;
        daemon.spawn();
        daemon.wait_up(&http).await;
    }
    for p in producers {
        p.await.unwrap();
    }
    let produced = t_start.elapsed();

    // Drain: every stored message final.
    let deadline = t_start + p.deadline;
    let rows = loop {
        let rows = db_rows(&db);
        if rows.iter().all(|r| is_final(&r.status)) {
            break rows;
        }
        let left = rows.iter().filter(|r| !is_final(&r.status)).count();
        assert!(
            Instant::now() < deadline,
            "{left} messages still not final:\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let drained = t_start.elapsed();

    // What left the bank, against what the producer was told.
    let sink = sink_by_text(&bank);
    let mut by_body: HashMap<&str, &Row> = HashMap::new();
    for r in &rows {
        assert!(
            by_body.insert(r.body.as_str(), r).is_none(),
            "{} stored twice",
            r.body
        );
    }
    let outcomes = outcomes.lock().unwrap().clone();
    let (mut accepted, mut unknown_stored, mut unknown_absent) = (0, 0, 0);
    let mut lost = Vec::new();
    let mut unflagged = Vec::new();
    let mut duplicates = Vec::new();
    for (n, o) in outcomes.iter().enumerate() {
        let text = text_of(n);
        let copies = sink.get(&text).map_or(0, Vec::len);
        let row = by_body.get(text.as_str());
        match (o, row) {
            (Outcome::Accepted(id), Some(r)) => {
                assert_eq!(*id, r.id, "{text}: the 202 named another id");
                accepted += 1;
            }
            (Outcome::Accepted(id), None) => panic!("{text}: 202 with id {id} but not stored"),
            (Outcome::Unknown, Some(_)) => unknown_stored += 1,
            (Outcome::Unknown, None) => {
                // Not committed: it must not have been sent either.
                assert_eq!(copies, 0, "{text} was never stored but was sent");
                unknown_absent += 1;
                continue;
            }
            (Outcome::NotYet, _) => panic!("{text} was never posted"),
        }
        let r = row.unwrap();
        assert!(
            matches!(r.status.as_str(), "sent" | "delivered"),
            "{text} (id {}) ended {}",
            r.id,
            r.status
        );
        if copies == 0 {
            lost.push(r.id);
        } else if copies > 1 {
            duplicates.push((r.id, copies));
            if !r.possible_duplicate {
                unflagged.push(r.id);
            }
        }
    }
    let expected: std::collections::HashSet<String> = (0..p.messages).map(text_of).collect();
    let strangers: Vec<&String> = sink.keys().filter(|t| !expected.contains(*t)).collect();
    let flagged = rows.iter().filter(|r| r.possible_duplicate).count();
    // The API says the same as the database about the duplicates.
    for (id, _) in &duplicates {
        let m = get_message(&http, api, *id).await;
        assert_eq!(m["possible_duplicate"], true, "{m}");
    }
    let delivered = rows.iter().filter(|r| r.status == "delivered").count();
    let sink_total: usize = sink.values().map(Vec::len).sum();
    daemon.kill();

    eprintln!(
        "kill -9 run (seed {}): {} messages posted at {}/s, {} modems, {} kills",
        p.seed, p.messages, p.rate, p.modems, p.kills
    );
    eprintln!(
        "  202 accepted {accepted}; cut requests: {unknown_stored} stored anyway, {unknown_absent} not stored"
    );
    for (i, (at, posted, done, sending)) in kills.iter().enumerate() {
        eprintln!(
            "  kill {:>2} at {:>6} ms: {posted} posted, {done} final, {sending} in AT+CMGS",
            i + 1,
            at.as_millis()
        );
    }
    eprintln!(
        "  sink: {sink_total} copies of {} texts; {} sent more than once (all flagged: {}), {flagged} flagged possible_duplicate in all, {delivered} delivered (status report)",
        sink.len(),
        duplicates.len(),
        unflagged.is_empty()
    );
    eprintln!(
        "  lost {}; produced in {} ms, drained in {} ms",
        lost.len(),
        produced.as_millis(),
        drained.as_millis()
    );
    assert!(lost.is_empty(), "lost (never reached the sink): {lost:?}");
    assert!(
        unflagged.is_empty(),
        "sent more than once without possible_duplicate: {unflagged:?} of {duplicates:?}"
    );
    assert!(
        strangers.is_empty(),
        "unexpected texts in the sink: {strangers:?}"
    );
    bank.shutdown().await;
}

/// The issue's size: 2,000 messages posted at 100/s, ten kills (~20 s, debug or release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_ten_times_during_2000_messages() {
    kill_run(KillRun {
        messages: 2000,
        kills: 10,
        modems: 8,
        seed: 2024,
        rate: 100,
        gap_ms: (500, 3000),
        deadline: Duration::from_secs(240),
    })
    .await;
}

/// More of the same: three more seeds, a faster producer (a deeper queue) and shorter
/// gaps between kills (~35 s in release).
/// `cargo test --release --test reliability -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stress (3 x 2,000 messages, 10 kills each): run with -- --ignored"]
async fn kill_9_stress_more_seeds() {
    for seed in [1, 2, 3] {
        kill_run(KillRun {
            messages: 2000,
            kills: 10,
            modems: 8,
            seed,
            rate: 250,
            gap_ms: (200, 1500),
            deadline: Duration::from_secs(240),
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------------
// The daemon in-process, on the PTYs of a bank the test owns (so the test chooses the
// bank's latency and faults).

/// The daemon on every link of the test's bank.
async fn start_daemon(config: Config, links: &Path, db: PathBuf) -> Daemon {
    Daemon::start(Start {
        config,
        db: Some(db),
        ports: vec![links.join("modem*").display().to_string()],
        tokens: vec![TOKEN.into()],
        ..Start::default()
    })
    .await
}

/// The bank index of the modem the daemon names `name` (its port path).
fn index_of(bank: &BankHandle, name: &str) -> usize {
    bank.modems()
        .iter()
        .find(|m| m.path.display().to_string() == name)
        .unwrap_or_else(|| panic!("no modem at {name}"))
        .index
}

// ---------------------------------------------------------------------------------------
// Unplug mid-send

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplugged_modem_fails_over_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let bank = start_bank(dir.path(), 3, (10, 10), 7).await;
    // Every modem slow at first, so whichever gets the message is mid-AT+CMGS for 1.5 s.
    let slow = Fault::Latency {
        min_ms: 1500,
        max_ms: 1500,
    };
    for i in 0..3 {
        bank.set_fault(i, slow.clone()).unwrap();
    }
    let mut config = Config::default();
    config.modems.command_timeout_ms = 1000;
    config.modems.send_timeout_ms = 5000;
    config.dispatch.retry_base_ms = 100;
    config.dispatch.retry_max_ms = 1000;
    let d = start_daemon(
        config,
        &dir.path().join("links"),
        dir.path().join("gsmgw.db"),
    )
    .await;
    d.wait_ready(3).await;

    let text = "unplug me";
    let id = d.send("+491701112223", text).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let sending_on = loop {
        let m = d.get(id).await;
        if m["status"] == "sending"
            && let Some(modem) = m["modem"].as_str()
        {
            break index_of(&bank, modem);
        }
        assert!(Instant::now() < deadline, "never sending: {m}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The others are fast now.
    for i in (0..3).filter(|i| *i != sending_on) {
        bank.set_fault(
            i,
            Fault::Latency {
                min_ms: 10,
                max_ms: 10,
            },
        )
        .unwrap();
    }
    // Wait until the PDU is in: the modem is now sitting on it (1.5 s latency).
    let deadline = Instant::now() + Duration::from_secs(10);
    // (A payload read but not yet answered: `+CMGS` is pending.)
    let holds_pdu = |c: &hw_sim::modem::Metrics| c.sms_payloads > c.sms_submitted + c.sms_failed;
    while !holds_pdu(&bank.metrics().modems[sending_on].counts) {
        assert!(Instant::now() < deadline, "the PDU never reached the modem");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        bank.messages().is_empty(),
        "sent before the unplug: {:?}",
        bank.messages()
    );
    let unplugged = Instant::now();
    bank.set_fault(sending_on, Fault::Unplug { down_ms: 3000 })
        .unwrap();
    let deadline = unplugged + Duration::from_secs(10);
    let (failover, other) = loop {
        let sink = sink_by_text(&bank);
        if let Some(&m) = sink
            .get(text)
            .and_then(|ms| ms.iter().find(|m| **m != sending_on))
        {
            break (unplugged.elapsed(), m);
        }
        assert!(
            Instant::now() < deadline,
            "not sent elsewhere within 10 s of the unplug: {}",
            d.get(id).await
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = d.get(id).await;
        if is_final(m["status"].as_str().unwrap()) {
            break m;
        }
        assert!(Instant::now() < deadline, "not final: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let copies = sink_by_text(&bank).get(text).map_or(0, Vec::len);
    eprintln!(
        "unplug: modem{sending_on} unplugged mid-AT+CMGS; out on modem{other} {} ms later; {copies} cop(ies) in the sink; status {}, possible_duplicate {}, attempts {}",
        failover.as_millis(),
        m["status"],
        m["possible_duplicate"],
        m["attempts"]
    );
    assert!(
        failover < Duration::from_secs(1),
        "failover took {failover:?}"
    );
    assert!(
        matches!(m["status"].as_str(), Some("sent" | "delivered")),
        "{m}"
    );
    assert_eq!(
        m["possible_duplicate"], true,
        "the PDU was out when the port went: {m}"
    );
    assert!(copies >= 1);

    // While it is away, the others carry the traffic; after the replug it is back.
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(d.send("+491701112224", &format!("while away {n}")).await);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for id in ids {
        loop {
            let m = d.get(id).await;
            if matches!(m["status"].as_str(), Some("sent" | "delivered")) {
                break;
            }
            assert!(Instant::now() < deadline, "not sent: {m}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let modems = d.modems().await;
        let back = modems
            .iter()
            .filter(|m| m["state"]["state"] == "ready")
            .count();
        if back == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replugged modem is not back: {modems:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.stop().await;
    bank.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Every fault

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_drains_despite_every_fault() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Arc::new(start_bank(dir.path(), 14, (10, 30), 11).await);
    let faults: Vec<(usize, &str, Vec<Fault>)> = vec![
        (0, "hang p=0.3", vec![Fault::Hang { probability: 0.3 }]),
        (
            1,
            "garbage p=0.5, garbage_now, hang_now at 1.5 s",
            vec![Fault::Garbage {
                probability: 0.5,
                len: 16,
            }],
        ),
        (
            2,
            "CMS 42 (congestion) p=0.5",
            vec![Fault::CmsError {
                code: 42,
                probability: 0.5,
            }],
        ),
        (3, "unplug (700 ms) every 2 s", vec![]),
        (
            4,
            "SIM PIN, none configured",
            vec![Fault::SimPin {
                pin: "1234".into(),
                puk: "12345678".into(),
            }],
        ),
        (
            5,
            "SIM PUK",
            vec![Fault::SimPuk {
                puk: "12345678".into(),
            }],
        ),
        (6, "SIM busy 3 s", vec![Fault::SimBusy { secs: 3.0 }]),
        (
            7,
            "registration denied",
            vec![Fault::Registration {
                state: RegState::Denied,
            }],
        ),
        (
            8,
            "OK on failure + CMS 38 p=0.5",
            vec![
                Fault::OkOnFailure,
                Fault::CmsError {
                    code: 38,
                    probability: 0.5,
                },
            ],
        ),
        (
            9,
            "signal rssi 1 (-111 dBm) + storage full",
            vec![Fault::Signal { rssi: 1, ber: 99 }, Fault::StorageFull],
        ),
        (
            10,
            "no SMSC + URC noise p=0.5",
            vec![Fault::NoSmsc, Fault::UrcNoise { probability: 0.5 }],
        ),
        (11, "reboot (500 ms) every 3 s", vec![]),
    ];
    for (i, _, fs) in &faults {
        for f in fs {
            bank.set_fault(*i, f.clone()).unwrap();
        }
    }
    // The actions, on a timeline while the queue drains.
    let timeline = {
        let bank = bank.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let mut tick = 0u64;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                tick += 1;
                if tick.is_multiple_of(4) {
                    let _ = bank.set_fault(3, Fault::Unplug { down_ms: 700 });
                }
                if tick.is_multiple_of(6) {
                    let _ = bank.set_fault(11, Fault::Reboot { down_ms: 500 });
                }
                if tick.is_multiple_of(2) {
                    let _ = bank.set_fault(1, Fault::GarbageNow { len: 32 });
                }
                if tick == 3 {
                    let _ = bank.set_fault(1, Fault::HangNow);
                }
                if t0.elapsed() > Duration::from_secs(300) {
                    break;
                }
            }
        })
    };
    let mut config = Config::default();
    config.modems.command_timeout_ms = 1000;
    config.modems.send_timeout_ms = 2000;
    config.modems.health_interval_secs = 2;
    config.dispatch.max_attempts = 50;
    config.dispatch.retry_base_ms = 100;
    config.dispatch.retry_max_ms = 1000;
    let started = Instant::now();
    let d = start_daemon(
        config,
        &dir.path().join("links"),
        dir.path().join("gsmgw.db"),
    )
    .await;

    let total = 100;
    let mut ids = Vec::new();
    for n in 0..total {
        ids.push((
            n,
            d.send(&format!("+49172{n:07}"), &format!("fault-{n}"))
                .await,
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut finals: Vec<Value> = Vec::new();
    for &(n, id) in &ids {
        loop {
            let m = d.get(id).await;
            if is_final(m["status"].as_str().unwrap()) {
                finals.push(m);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "fault-{n} not final after 120 s: {m}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let drained = started.elapsed();
    timeline.abort();
    let sink = sink_by_text(&bank);
    let mut per_modem: BTreeMap<usize, usize> = BTreeMap::new();
    for modems in sink.values() {
        for m in modems {
            *per_modem.entry(*m).or_default() += 1;
        }
    }
    let mut problems = Vec::new();
    let mut duplicates = 0;
    let mut flagged = 0;
    for (m, (n, _)) in finals.iter().zip(&ids) {
        let text = format!("fault-{n}");
        let copies = sink.get(&text).map_or(0, Vec::len);
        if m["possible_duplicate"] == true {
            flagged += 1;
        }
        if !matches!(m["status"].as_str(), Some("sent" | "delivered")) {
            problems.push(format!("{text} ended {}: {}", m["status"], m["error"]));
        }
        if copies == 0 {
            problems.push(format!("{text} never reached the sink: {m}"));
        }
        if copies > 1 {
            duplicates += 1;
            if m["possible_duplicate"] != true {
                problems.push(format!("{text} sent {copies} times, not flagged: {m}"));
            }
        }
    }
    let states: Vec<String> = d
        .modems()
        .await
        .iter()
        .map(|m| {
            let i = index_of(&bank, m["port"].as_str().unwrap());
            format!("modem{i}: {}", m["state"])
        })
        .collect();
    eprintln!(
        "every fault: {total} messages drained in {} ms; {duplicates} sent twice, {flagged} flagged possible_duplicate",
        drained.as_millis()
    );
    for (i, what, _) in &faults {
        eprintln!(
            "  modem{i:<2} {what:<45} sent {}",
            per_modem.get(i).copied().unwrap_or(0)
        );
    }
    for i in 12..14 {
        eprintln!(
            "  modem{i:<2} {:<45} sent {}",
            "healthy",
            per_modem.get(&i).copied().unwrap_or(0)
        );
    }
    let mut states = states;
    states.sort();
    eprintln!("  final states: {states:?}");
    assert!(problems.is_empty(), "{problems:#?}");
    // A locked SIM or a denied registration sends nothing.
    for i in [4, 5, 7] {
        assert_eq!(per_modem.get(&i), None, "modem{i} sent");
    }
    d.stop().await;
    if let Ok(bank) = Arc::try_unwrap(bank) {
        bank.shutdown().await;
    }
}
