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
//! - `soak_one_minute` (issue #14 item 6): a longer, richer kill run. A 16-modem bank with
//!   a fault timeline (a random modem gets a hw-sim fault every few seconds, cleared
//!   later), the four programs of README's "Programs" at ~27 messages/s, inbound SMS,
//!   `kill -9` at random moments and SIGHUP reloads. Checked at the end: every accepted
//!   message terminal and in the sink exactly once (more only when flagged
//!   `possible_duplicate`, and no more flagged than sends were in flight), a failure
//!   only for a permanent CMS error the timeline injected, every security code verified
//!   with what reached the handset, every inbound SMS in the inbox once. RSS, fds,
//!   database size and accept p99 are printed every 10 s. One minute in the suite;
//!   `scripts/soak --minutes 30` for the long run (`GSMGW_SOAK_MINUTES`, `_MODEMS`,
//!   `_SEED`).
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
    /// `gsmgw serve` on `config` and `db`, on the bank's links in `dir/links`, on a free
    /// loopback port, logging to `dir/gsmgw.log`; not started yet.
    fn new(dir: &Path, config: &Path, db: &Path) -> DaemonProc {
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        DaemonProc {
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
                dir.join("links/modem*").display().to_string(),
            ],
            log: dir.join("gsmgw.log"),
            api,
        }
    }

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
    let mut daemon = DaemonProc::new(dir.path(), &config, &db);
    let api = daemon.api;
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

// ---------------------------------------------------------------------------------------
// The soak (issue #14 item 6): a longer, richer kill_run.

/// The soak's configuration file. `generation` goes into the rate limit's burst, so
/// every SIGHUP re-reads a file that changed and stays valid.
fn soak_config(generation: u64) -> String {
    format!(
        r#"
[http]
rate_limit = {{ per_second = 100000.0, burst = {} }}

[modems]
exclusive = false
command_timeout_ms = 1000
send_timeout_ms = 3000
health_interval_secs = 5

[dispatch]
max_attempts = 100
retry_base_ms = 100
retry_max_ms = 1000

[log]
level = "info"
"#,
        100_000 + generation
    )
}

/// Writes `text` to `path` by rename, so a daemon (re)starting meanwhile never reads
/// half a file.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The error codes a fault of the soak's timeline makes a legitimate failure: CMS 21
/// (short message transfer rejected) is permanent for the message.
const SOAK_PERMANENT: &[&str] = &["cms:21"];

/// One of the four programs of README's "Programs".
#[derive(Debug, Clone, Copy)]
enum Program {
    /// `POST /v1/messages` with `order_confirmation`.
    Order,
    /// `POST /v1/messages/batch` of `shipping_update`s, five recipients.
    Shipping,
    /// `appointment_confirmation` with a reminder; some are cancelled.
    Appointment,
    /// `POST /v1/otp`, then verify with the code that reached the handset.
    Otp,
}

impl Program {
    const ALL: [Program; 4] = [
        Program::Order,
        Program::Shipping,
        Program::Appointment,
        Program::Otp,
    ];

    fn name(self) -> &'static str {
        match self {
            Program::Order => "order",
            Program::Shipping => "shipping",
            Program::Appointment => "appointment",
            Program::Otp => "otp",
        }
    }

    /// Time between requests: ~10 + 10 + 4 + 3 messages a second in all.
    fn every(self) -> Duration {
        Duration::from_millis(match self {
            Program::Order => 100,
            Program::Shipping => 500,
            Program::Appointment => 500,
            Program::Otp => 333,
        })
    }

    /// Recipients per request (each request has numbers of its own).
    fn numbers(self) -> u64 {
        match self {
            Program::Shipping => 5,
            _ => 1,
        }
    }
}

/// What the API answered.
enum Reply {
    /// Status and body.
    Answer(u16, Value),
    /// Cut after it was sent (the daemon died under it): done or not, nobody knows.
    Cut,
}

/// `method path body`, repeated while the daemon says "not now" (a refused
/// connection, 429, 503: nothing stored); the body is made anew for each try (times in
/// it stay ahead of now however long the daemon was down). The answer and how long the
/// answered request took.
async fn call_api(
    http: &reqwest::Client,
    api: SocketAddr,
    (method, path): (&str, &str),
    body: Option<&(dyn Fn() -> Value + Sync)>,
    give_up: Instant,
) -> (Reply, Duration) {
    loop {
        let url = format!("http://{api}{path}");
        let mut req = match method {
            "POST" => http.post(url),
            "DELETE" => http.delete(url),
            _ => http.get(url),
        }
        .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b());
        }
        let t = Instant::now();
        let r = req.send().await;
        let took = t.elapsed();
        match r {
            Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {}
            Ok(r) => {
                let s = r.status().as_u16();
                return match r.json::<Value>().await {
                    Ok(v) => (Reply::Answer(s, v), took),
                    Err(_) => (Reply::Cut, took),
                };
            }
            Err(e) if e.is_connect() => {}
            Err(_) => return (Reply::Cut, took),
        }
        assert!(
            Instant::now() < give_up,
            "{method} {path}: the daemon never took it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the workload knows, for the checks at the end.
#[derive(Default)]
struct Ledger {
    /// Requests answered 202, by program.
    accepted: BTreeMap<&'static str, usize>,
    /// Requests cut by a kill, by program.
    cut: BTreeMap<&'static str, usize>,
    /// Every message id a 202 named.
    ids: Vec<i64>,
    /// Recipients of cut requests: stored or not, nobody knows.
    unknown_numbers: std::collections::HashSet<String>,
    /// Ids a DELETE answered as cancelled.
    cancelled: std::collections::HashSet<i64>,
    /// Recipients whose DELETE was cut.
    cancel_cut: std::collections::HashSet<String>,
    /// (when, how long) of every 202.
    latencies: Vec<(Instant, Duration)>,
}

fn soak_number(n: u64) -> String {
    format!("+49171{n:07}")
}

fn rfc3339_in(d: Duration) -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now() + d).to_string()
}

/// One program's steady stream of requests until `until`.
async fn workload(
    p: Program,
    api: SocketAddr,
    until: Instant,
    (numbers, seed): (Arc<std::sync::atomic::AtomicU64>, u64),
    ledger: Arc<Mutex<Ledger>>,
    otps: tokio::sync::mpsc::UnboundedSender<(i64, String)>,
) {
    use std::sync::atomic::Ordering;
    let http = http();
    let mut rng = XorShift::new(seed);
    let give_up = until + Duration::from_secs(120);
    let mut next = Instant::now();
    while Instant::now() < until {
        next += p.every();
        // After an outage, catch up with a burst of at most a second's worth.
        next = next.max(Instant::now() - Duration::from_secs(1));
        tokio::time::sleep_until(next.into()).await;
        let n = numbers.fetch_add(p.numbers(), Ordering::Relaxed);
        let to = |k: u64| soak_number(n + k);
        let cancel = matches!(p, Program::Appointment) && rng.range(0, 3) == 0;
        let mut appointment_in = None;
        let (path, body) = match p {
            Program::Order => (
                "/v1/messages",
                json!({"to": to(0), "template": "order_confirmation",
                       "vars": {"order": format!("#S{n}"), "items": "1x Soak", "total": "EUR 1.00"}}),
            ),
            Program::Shipping => (
                "/v1/messages/batch",
                json!({"messages": (0..5).map(|k| json!({
                    "to": to(k), "template": "shipping_update",
                    "vars": {"order": format!("#S{}", n + k), "tracking_url": format!("https://track.example/{}", n + k)}
                })).collect::<Vec<_>>()}),
            ),
            Program::Appointment => {
                // The reminder goes out 5-15 s from now, or (cancelled) in an hour.
                let reminder = if cancel {
                    Duration::from_secs(3600)
                } else {
                    Duration::from_millis(rng.range(5000, 15000))
                };
                appointment_in = Some(reminder + Duration::from_secs(3600));
                (
                    "/v1/messages",
                    json!({"to": to(0), "template": "appointment_confirmation",
                           "vars": {"name": format!("Soak {n}"), "when": "today"},
                           "appointment_at": rfc3339_in(reminder + Duration::from_secs(3600)),
                           "remind_before": "1h"}),
                )
            }
            Program::Otp => ("/v1/otp", json!({"to": to(0), "length": 8, "ttl": "10m"})),
        };
        let make = || {
            let mut b = body.clone();
            if let Some(d) = appointment_in {
                b["appointment_at"] = json!(rfc3339_in(d));
            }
            b
        };
        let (reply, took) = call_api(&http, api, ("POST", path), Some(&make), give_up).await;
        let v = {
            let mut l = ledger.lock().unwrap();
            match reply {
                Reply::Cut => {
                    *l.cut.entry(p.name()).or_default() += 1;
                    for k in 0..p.numbers() {
                        l.unknown_numbers.insert(to(k));
                    }
                    continue;
                }
                Reply::Answer(202, v) => {
                    *l.accepted.entry(p.name()).or_default() += 1;
                    l.latencies.push((Instant::now(), took));
                    match p {
                        Program::Order => l.ids.push(v["id"].as_i64().unwrap()),
                        Program::Shipping => {
                            for m in v["messages"].as_array().unwrap() {
                                l.ids.push(m["id"].as_i64().unwrap());
                            }
                        }
                        Program::Appointment => {
                            l.ids.push(v["id"].as_i64().unwrap());
                            l.ids.push(v["reminder"]["id"].as_i64().unwrap());
                        }
                        Program::Otp => {
                            l.ids.push(v["message_id"].as_i64().unwrap());
                            otps.send((v["id"].as_i64().unwrap(), to(0))).unwrap();
                        }
                    }
                    v
                }
                Reply::Answer(s, v) => panic!("{} refused: {s} {v}", p.name()),
            }
        };
        if cancel {
            let path = format!("/v1/messages/{}", v["id"]);
            let (reply, _) = call_api(&http, api, ("DELETE", &path), None, give_up).await;
            let mut l = ledger.lock().unwrap();
            match reply {
                Reply::Answer(200, d) => {
                    for id in d["cancelled"].as_array().unwrap() {
                        l.cancelled.insert(id.as_i64().unwrap());
                    }
                }
                Reply::Answer(409, _) => {}
                Reply::Answer(s, d) => panic!("DELETE {path}: {s} {d}"),
                Reply::Cut => {
                    l.cancel_cut.insert(to(0));
                }
            }
        }
    }
}

/// How the security codes' checks went.
#[derive(Debug, Default)]
struct Verifies {
    verified: usize,
    /// The verify request was cut and the retry did not say `verified` (the first one
    /// may have used the code up).
    cut: usize,
    /// Never reached the handset (the message failed or expired).
    not_sent: usize,
    problems: Vec<String>,
}

/// Verifies each security code once its SMS reached hw-sim's sink, with the code in it;
/// after `done`, one last look and the rest count as not sent.
async fn verifier(
    api: SocketAddr,
    bank: Arc<BankHandle>,
    mut otps: tokio::sync::mpsc::UnboundedReceiver<(i64, String)>,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> Verifies {
    let http = http();
    let mut pending: Vec<(i64, String)> = Vec::new();
    let mut out = Verifies::default();
    loop {
        let last = done.load(std::sync::atomic::Ordering::SeqCst);
        while let Ok(o) = otps.try_recv() {
            pending.push(o);
        }
        if !pending.is_empty() {
            let mut codes: HashMap<String, String> = HashMap::new();
            for m in bank.messages() {
                if let Some(rest) = m.text.strip_prefix("Your security code is ") {
                    codes.insert(
                        m.to,
                        rest.chars().take_while(char::is_ascii_digit).collect(),
                    );
                }
            }
            let mut still = Vec::new();
            for (id, to) in pending.drain(..) {
                let Some(code) = codes.get(&to) else {
                    still.push((id, to));
                    continue;
                };
                let path = format!("/v1/otp/{id}/verify");
                let body = json!({ "code": code });
                let mut was_cut = false;
                let give_up = Instant::now() + Duration::from_secs(120);
                let result = loop {
                    match call_api(&http, api, ("POST", &path), Some(&|| body.clone()), give_up)
                        .await
                        .0
                    {
                        Reply::Answer(200, v) => {
                            break v["result"].as_str().unwrap_or("").to_owned();
                        }
                        Reply::Answer(s, v) => break format!("{s} {v}"),
                        Reply::Cut => was_cut = true,
                    }
                };
                if result == "verified" {
                    out.verified += 1;
                } else if was_cut {
                    out.cut += 1;
                } else {
                    out.problems.push(format!("otp {id} to {to}: {result}"));
                }
            }
            pending = still;
        }
        if last {
            out.not_sent = pending.len();
            return out;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A fault for the timeline, with its name for the report. `inbound_duplicates`: also
/// the network delivering an inbound part twice (on by default, see `soak`).
fn soak_fault(rng: &mut XorShift, inbound_duplicates: bool) -> (&'static str, Fault) {
    let mut k = rng.range(0, 14);
    while k == 11 && !inbound_duplicates {
        k = rng.range(0, 14);
    }
    match k {
        0 => ("hang p=0.3", Fault::Hang { probability: 0.3 }),
        1 => ("hang now", Fault::HangNow),
        2 => (
            "garbage p=0.3",
            Fault::Garbage {
                probability: 0.3,
                len: 16,
            },
        ),
        3 => ("garbage now", Fault::GarbageNow { len: 64 }),
        4 => (
            "unplug",
            Fault::Unplug {
                down_ms: rng.range(500, 3000),
            },
        ),
        5 => (
            "reboot",
            Fault::Reboot {
                down_ms: rng.range(500, 1500),
            },
        ),
        6 => (
            "CMS 42 p=0.5 (temporary)",
            Fault::CmsError {
                code: 42,
                probability: 0.5,
            },
        ),
        7 => (
            "CMS 21 p=0.1 (permanent)",
            Fault::CmsError {
                code: 21,
                probability: 0.1,
            },
        ),
        8 => (
            "SIM busy",
            Fault::SimBusy {
                secs: rng.range(2, 5) as f64,
            },
        ),
        9 => (
            "registration lost (searching)",
            Fault::Registration {
                state: RegState::Searching,
            },
        ),
        10 => (
            "registration lost (not registered)",
            Fault::Registration {
                state: RegState::NotRegistered,
            },
        ),
        11 => (
            "inbound duplicates p=0.5",
            Fault::InboundDuplicate { probability: 0.5 },
        ),
        12 => ("inbound reordering", Fault::InboundReorder),
        13 => ("URC noise p=0.3", Fault::UrcNoise { probability: 0.3 }),
        _ => ("SIM storage full", Fault::StorageFull),
    }
}

/// Every 1.5-4 s a random healthy modem gets a fault, cleared 3-10 s later; at most a
/// quarter of the bank is faulty at once. Everything is cleared at `until`.
async fn fault_timeline(
    bank: Arc<BankHandle>,
    until: Instant,
    seed: u64,
    inbound_duplicates: bool,
) -> BTreeMap<&'static str, usize> {
    let mut rng = XorShift::new(seed ^ 0xFA17);
    let n = bank.modems().len();
    let mut clear_at: Vec<Option<Instant>> = vec![None; n];
    let mut counts = BTreeMap::new();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.range(1500, 4000))).await;
        let now = Instant::now();
        for (i, at) in clear_at.iter_mut().enumerate() {
            if at.is_some_and(|t| t <= now) {
                bank.clear_faults(i).unwrap();
                *at = None;
            }
        }
        let faulty = clear_at.iter().filter(|c| c.is_some()).count();
        if faulty >= (n / 4).max(1) {
            continue;
        }
        let healthy: Vec<usize> = (0..n).filter(|i| clear_at[*i].is_none()).collect();
        let i = healthy[rng.range(0, healthy.len() as u64 - 1) as usize];
        let (name, f) = soak_fault(&mut rng, inbound_duplicates);
        bank.set_fault(i, f).unwrap();
        clear_at[i] = Some(now + Duration::from_millis(rng.range(3000, 10000)));
        *counts.entry(name).or_default() += 1;
    }
    for i in 0..n {
        bank.clear_faults(i).unwrap();
    }
    counts
}

/// Inbound SMS from outside every 0.4-1.2 s to a random modem, each from a sender of
/// its own with a unique text; every third one long enough for two parts. The texts
/// with the modem each went to.
async fn inbound_stream(bank: Arc<BankHandle>, until: Instant, seed: u64) -> Vec<(String, usize)> {
    let mut rng = XorShift::new(seed ^ 0x1B0);
    let modems = bank.modems().len() as u64;
    let mut texts = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.range(400, 1200))).await;
        let mut text = format!("soak inbound {seed}/{n}");
        if n.is_multiple_of(3) {
            text.push_str(&" and a long tail to need two parts".repeat(6));
        }
        let i = rng.range(0, modems - 1) as usize;
        bank.inject_inbound(i, &format!("+49160{n:07}"), &text)
            .unwrap();
        texts.push((text, i));
        n += 1;
    }
    texts
}

/// One sample of the daemon's footprint.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    /// VmRSS, KiB; `None` while the daemon was down.
    rss_kib: Option<u64>,
    fds: Option<usize>,
    /// The database file plus its `-wal`, bytes.
    db_bytes: u64,
    /// p99 of the 202s' latency since the previous sample.
    p99: Option<Duration>,
    accepted: usize,
}

fn sample(t0: Instant, pid: u32, db: &Path, ledger: &Mutex<Ledger>, since: Instant) -> Sample {
    let (rss_kib, fds) = if pid == 0 {
        (None, None)
    } else {
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            });
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(|d| d.count());
        (rss, fds)
    };
    let size = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    let db_bytes = size(db.to_path_buf()) + size(db.with_extension("db-wal"));
    let l = ledger.lock().unwrap();
    let mut lat: Vec<Duration> = l
        .latencies
        .iter()
        .filter(|(at, _)| *at > since)
        .map(|(_, d)| *d)
        .collect();
    lat.sort();
    let p99 = (!lat.is_empty()).then(|| lat[(lat.len() * 99).div_ceil(100) - 1]);
    Sample {
        at: t0.elapsed(),
        rss_kib,
        fds,
        db_bytes,
        p99,
        accepted: l.accepted.values().sum(),
    }
}

fn print_sample(s: &Sample) {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    eprintln!(
        "  sample {:>6.0} s: RSS {:>7} KiB, fds {:>4}, db {:>9} B, accept p99 {:>8}, {} accepted",
        s.at.as_secs_f64(),
        opt(s.rss_kib.map(|v| v.to_string())),
        opt(s.fds.map(|v| v.to_string())),
        s.db_bytes,
        opt(s.p99.map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))),
        s.accepted
    );
}

/// A message row with what the soak's checks need.
struct SoakRow {
    id: i64,
    to: String,
    body: String,
    status: String,
    possible_duplicate: bool,
    masked: bool,
    error_code: Option<String>,
}

fn soak_rows(db: &Path) -> (Vec<SoakRow>, usize) {
    use rusqlite::{Connection, OpenFlags};
    let c = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let rows = c
        .prepare(
            "SELECT id, to_number, body, status, possible_duplicate, masked, error_code \
             FROM messages ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok(SoakRow {
                id: r.get(0)?,
                to: r.get(1)?,
                body: r.get(2)?,
                status: r.get(3)?,
                possible_duplicate: r.get(4)?,
                masked: r.get(5)?,
                error_code: r.get(6)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // Retries after an attempt that may have put the PDU out (a timeout or a port gone
    // mid-send): the faults' share of possible duplicates, besides the kills'.
    let possibly_sent: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM attempts WHERE outcome = 'temporary' \
             AND error_code IN ('timeout', 'port_gone', 'modem')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (rows, usize::try_from(possibly_sent).unwrap())
}

/// The daemon's modems that are not `ready`: port and state (progress lines).
async fn modems_not_ready(http: &reqwest::Client, api: SocketAddr) -> Vec<String> {
    let give_up = Instant::now() + Duration::from_secs(30);
    match call_api(http, api, ("GET", "/v1/modems"), None, give_up)
        .await
        .0
    {
        Reply::Answer(200, v) => v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["state"]["state"] != "ready")
            .map(|m| format!("{} {}", m["port"], m["state"]))
            .collect(),
        _ => Vec::new(),
    }
}

/// Every inbox item's text (all pages).
async fn inbox_texts(http: &reqwest::Client, api: SocketAddr) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/inbox?limit=1000&cursor={c}"),
            None => "/v1/inbox?limit=1000".into(),
        };
        let give_up = Instant::now() + Duration::from_secs(60);
        let Reply::Answer(200, v) = call_api(http, api, ("GET", &path), None, give_up).await.0
        else {
            panic!("GET {path} failed");
        };
        for item in v["items"].as_array().unwrap() {
            out.push(item["text"].as_str().map(str::to_owned));
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// `minutes` of the four programs, inbound SMS, a fault timeline on a bank of
/// `modems`, `kill -9` at random moments and a SIGHUP now and then; then the checks of
/// issue #14 item 6 and a report on stderr.
async fn soak(minutes: f64, modems: usize, seed: u64) {
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs_f64(minutes * 60.0);
    // The network delivering an inbound part twice (hw-sim's inbound_duplicate) is on
    // unless GSMGW_SOAK_INBOUND_DUPLICATES=0. The soak found that a redelivered
    // single-part SMS used to be stored twice; the store now recognises a redelivery by
    // sender, SMSC timestamp and PDU (a duplicated part of a long one by reassembly).
    let inbound_duplicates =
        !std::env::var("GSMGW_SOAK_INBOUND_DUPLICATES").is_ok_and(|v| v == "0");
    eprintln!(
        "soak: {minutes} min, {modems} modems, seed {seed}, inbound duplicates {inbound_duplicates}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bank = Arc::new(start_bank(dir.path(), modems, (5, 30), seed).await);
    let db = dir.path().join("gsmgw.db");
    let config = dir.path().join("gsmgw.toml");
    let mut generation = 0;
    write_atomically(&config, &soak_config(generation));
    let mut daemon = DaemonProc::new(dir.path(), &config, &db);
    let api = daemon.api;
    let http = http();
    daemon.spawn();
    daemon.wait_up(&http).await;
    let pid = Arc::new(AtomicU32::new(daemon.child.as_ref().unwrap().id()));

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let numbers = Arc::new(AtomicU64::new(0));
    let (otp_tx, otp_rx) = tokio::sync::mpsc::unbounded_channel();
    let producers: Vec<_> = Program::ALL
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let shared = (numbers.clone(), seed + k as u64);
            tokio::spawn(workload(
                *p,
                api,
                until,
                shared,
                ledger.clone(),
                otp_tx.clone(),
            ))
        })
        .collect();
    drop(otp_tx);
    let verify_done = Arc::new(AtomicBool::new(false));
    let verify = tokio::spawn(verifier(api, bank.clone(), otp_rx, verify_done.clone()));
    let faults = tokio::spawn(fault_timeline(
        bank.clone(),
        until,
        seed,
        inbound_duplicates,
    ));
    let inbound = tokio::spawn(inbound_stream(bank.clone(), until, seed));
    let sampling_done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (pid, db, ledger, done) = (
            pid.clone(),
            db.clone(),
            ledger.clone(),
            sampling_done.clone(),
        );
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut since = Instant::now();
            // Every 10 s, and once more when told to stop (after the drain).
            let mut next = Instant::now() + Duration::from_secs(10);
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let last = done.load(Ordering::SeqCst);
                if last || Instant::now() >= next {
                    let s = sample(t0, pid.load(Ordering::SeqCst), &db, &ledger, since);
                    since = Instant::now();
                    next += Duration::from_secs(10);
                    print_sample(&s);
                    samples.push(s);
                }
                if last {
                    return samples;
                }
            }
        })
    };

    // kill -9 at random moments, SIGHUP now and then.
    let mut rng = XorShift::new(seed ^ 0x5EED);
    let mut kills = Vec::new();
    let mut hups = 0;
    loop {
        let gap = Duration::from_millis(rng.range(3000, 9000));
        if Instant::now() + gap >= until {
            break;
        }
        tokio::time::sleep(gap).await;
        if rng.range(0, 2) == 0 {
            generation += 1;
            write_atomically(&config, &soak_config(generation));
            let from = std::fs::metadata(&daemon.log).map_or(0, |m| m.len()) as usize;
            let p = pid.load(Ordering::SeqCst).to_string();
            assert!(
                Command::new("kill")
                    .args(["-HUP", &p])
                    .status()
                    .unwrap()
                    .success()
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let log = std::fs::read(&daemon.log).unwrap_or_default();
                let new = String::from_utf8_lossy(log.get(from..).unwrap_or_default());
                if new.contains("configuration reloaded") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "SIGHUP not taken in 10 s:\n{}",
                    daemon.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            hups += 1;
            continue;
        }
        daemon.kill();
        pid.store(0, Ordering::SeqCst);
        let at = t0.elapsed();
        let rows = db_rows(&db);
        let sending = rows.iter().filter(|r| r.status == "sending").count();
        let done = rows.iter().filter(|r| is_final(&r.status)).count();
        tokio::time::sleep(Duration::from_millis(rng.range(0, 300))).await;
        daemon.spawn();
        daemon.wait_up(&http).await;
        pid.store(daemon.child.as_ref().unwrap().id(), Ordering::SeqCst);
        kills.push((at, rows.len(), done, sending, t0.elapsed() - at));
    }
    for p in producers {
        p.await.unwrap();
    }
    let fault_counts = faults.await.unwrap();
    let injected_to = inbound.await.unwrap();
    let injected: Vec<String> = injected_to.iter().map(|(t, _)| t.clone()).collect();
    let produced = t0.elapsed();

    // Drain: every stored message final (reminders go out up to 15 s after the last
    // appointment).
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut report_left = Instant::now() + Duration::from_secs(20);
    let (rows, possibly_sent) = loop {
        let (rows, ps) = soak_rows(&db);
        if rows.iter().all(|r| is_final(&r.status)) {
            break (rows, ps);
        }
        let left = rows.iter().filter(|r| !is_final(&r.status)).count();
        if Instant::now() >= report_left {
            report_left += Duration::from_secs(10);
            let modems = modems_not_ready(&http, api).await;
            let some: Vec<(i64, &str)> = rows
                .iter()
                .filter(|r| !is_final(&r.status))
                .take(3)
                .map(|r| (r.id, r.status.as_str()))
                .collect();
            eprintln!(
                "  drain: {left} not final at {} s, e.g. {some:?}; modems not ready: {modems:?}",
                t0.elapsed().as_secs()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{left} messages still not final 300 s after the workload:\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let drained = t0.elapsed();
    verify_done.store(true, Ordering::SeqCst);
    let verifies = verify.await.unwrap();

    // Inbound: every injected text in the inbox. Redeliveries after faults take up to
    // hw-sim's redeliver_ms (10 s), and a modem the daemon is still recovering after a
    // hang holds its SMS until it is back (seen: ~40 s on a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut report_missing = Instant::now() + Duration::from_secs(10);
    let inbox = loop {
        let inbox = inbox_texts(&http, api).await;
        let have: std::collections::HashSet<&str> =
            inbox.iter().flatten().map(String::as_str).collect();
        let missing: Vec<&(String, usize)> = injected_to
            .iter()
            .filter(|(t, _)| !have.contains(t.as_str()))
            .collect();
        if missing.is_empty() {
            break inbox;
        }
        if Instant::now() >= report_missing {
            report_missing += Duration::from_secs(10);
            let modems = modems_not_ready(&http, api).await;
            eprintln!(
                "  inbound: {} still missing at {} s, e.g. {:?} (text, modem); modems not ready: {modems:?}",
                missing.len(),
                t0.elapsed().as_secs(),
                &missing[..missing.len().min(3)]
            );
        }
        let missing = missing.len();
        assert!(
            Instant::now() < deadline,
            "{missing} of {} inbound messages not in the inbox after 180 s",
            injected.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    sampling_done.store(true, Ordering::SeqCst);
    let samples = sampler.await.unwrap();

    // The checks.
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    let sink = bank.messages();
    let mut by_pair: HashMap<(&str, &str), usize> = HashMap::new();
    let mut by_to: HashMap<&str, usize> = HashMap::new();
    for m in &sink {
        *by_pair.entry((m.to.as_str(), m.text.as_str())).or_default() += 1;
        *by_to.entry(m.to.as_str()).or_default() += 1;
    }
    let accepted_ids: std::collections::HashSet<i64> = ledger.ids.iter().copied().collect();
    let stored: std::collections::HashSet<i64> = rows.iter().map(|r| r.id).collect();
    let mut problems = Vec::new();
    for id in &ledger.ids {
        if !stored.contains(id) {
            problems.push(format!("message {id}: 202 but not stored"));
        }
    }
    let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut lost, mut duplicates, mut flagged) = (Vec::new(), 0, 0);
    let mut known: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    let mut masked_to: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for r in &rows {
        *statuses.entry(r.status.as_str()).or_default() += 1;
        if !accepted_ids.contains(&r.id) && !ledger.unknown_numbers.contains(&r.to) {
            problems.push(format!(
                "message {} to {}: stored but never requested",
                r.id, r.to
            ));
        }
        let copies = if r.masked {
            masked_to.insert(r.to.as_str());
            by_to.get(r.to.as_str()).copied().unwrap_or(0)
        } else {
            known.insert((r.to.as_str(), r.body.as_str()));
            by_pair
                .get(&(r.to.as_str(), r.body.as_str()))
                .copied()
                .unwrap_or(0)
        };
        flagged += usize::from(r.possible_duplicate);
        if copies > 1 {
            duplicates += 1;
            if !r.possible_duplicate {
                problems.push(format!("message {} sent {copies} times, not flagged", r.id));
            }
        }
        let what = format!("message {} to {} ({:?})", r.id, r.to, r.body);
        match r.status.as_str() {
            "sent" | "delivered" if copies == 0 => lost.push(r.id),
            "sent" | "delivered" => {}
            "failed" => {
                if !r
                    .error_code
                    .as_deref()
                    .is_some_and(|c| SOAK_PERMANENT.contains(&c))
                {
                    problems.push(format!("{what} failed: {:?}", r.error_code));
                }
            }
            "cancelled" => {
                if !ledger.cancelled.contains(&r.id) && !ledger.cancel_cut.contains(&r.to) {
                    problems.push(format!("{what} cancelled but nobody asked"));
                }
                if copies > 0 && !r.possible_duplicate {
                    problems.push(format!("{what} cancelled but sent"));
                }
            }
            other => problems.push(format!("{what} ended {other}")),
        }
    }
    for m in &sink {
        if !known.contains(&(m.to.as_str(), m.text.as_str())) && !masked_to.contains(m.to.as_str())
        {
            problems.push(format!(
                "in the sink but never stored: {} {:?}",
                m.to, m.text
            ));
        }
    }
    problems.extend(verifies.problems.iter().cloned());
    let kill_bound: usize = kills.iter().map(|k| k.3).sum();
    let bound = kill_bound + possibly_sent;

    let mut inbox_count: HashMap<&str, usize> = HashMap::new();
    for t in inbox.iter().flatten() {
        *inbox_count.entry(t.as_str()).or_default() += 1;
    }
    let undecoded = inbox.iter().filter(|t| t.is_none()).count();
    let injected_set: std::collections::HashSet<&str> =
        injected.iter().map(String::as_str).collect();
    for (t, n) in &inbox_count {
        if *n > 1 {
            problems.push(format!("inbound stored {n} times: {t:?}"));
        }
        if !injected_set.contains(t) {
            problems.push(format!("inbound never injected (a partial?): {t:?}"));
        }
    }
    if undecoded > 0 {
        problems.push(format!("{undecoded} inbox items without text"));
    }

    // The report.
    let accepted: usize = ledger.accepted.values().sum();
    let cut: usize = ledger.cut.values().sum();
    let terminal = rows.iter().filter(|r| is_final(&r.status)).count();
    eprintln!("soak report (seed {seed}, {modems} modems, {minutes} min):");
    eprintln!(
        "  requests accepted {accepted} {:?}; cut by a kill {cut} {:?}",
        ledger.accepted, ledger.cut
    );
    eprintln!(
        "  messages: {} accepted (202), {} stored, {terminal} terminal {statuses:?}, lost {}",
        ledger.ids.len(),
        rows.len(),
        lost.len()
    );
    eprintln!(
        "  sink: {} messages; {duplicates} sent more than once; {flagged} flagged possible_duplicate; bound {bound} ({kill_bound} in AT+CMGS at the kills + {possibly_sent} retries after a possibly-sent attempt)",
        sink.len()
    );
    eprintln!(
        "  security codes: {} verified, {} verify cut by a kill, {} never sent",
        verifies.verified, verifies.cut, verifies.not_sent
    );
    eprintln!(
        "  inbound: {} injected, {} stored ({} distinct)",
        injected.len(),
        inbox.len(),
        inbox_count.len()
    );
    eprintln!("  {} kills, {hups} SIGHUPs:", kills.len());
    for (i, (at, stored, done, sending, down)) in kills.iter().enumerate() {
        eprintln!(
            "    kill {:>3} at {:>7} ms: {stored} stored, {done} final, {sending} in AT+CMGS; API back after {} ms",
            i + 1,
            at.as_millis(),
            down.as_millis()
        );
    }
    eprintln!("  faults: {fault_counts:?}");
    let with_rss: Vec<&Sample> = samples.iter().filter(|s| s.rss_kib.is_some()).collect();
    if let (Some(first), Some(last)) = (with_rss.first(), with_rss.last()) {
        eprintln!(
            "  RSS {} -> {} KiB, fds {} -> {}, db {} -> {} B (first vs last sample)",
            first.rss_kib.unwrap_or(0),
            last.rss_kib.unwrap_or(0),
            first.fds.unwrap_or(0),
            last.fds.unwrap_or(0),
            first.db_bytes,
            last.db_bytes
        );
    }
    eprintln!(
        "  produced in {} s, drained at {} s",
        produced.as_secs(),
        drained.as_secs()
    );
    assert!(lost.is_empty(), "lost (never reached the sink): {lost:?}");
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        flagged <= bound,
        "{flagged} flagged possible_duplicate, more than the {bound} sends in flight"
    );
    drop(daemon);
    if let Ok(bank) = Arc::try_unwrap(bank) {
        bank.shutdown().await;
    }
}

/// The soak, a minute of it by default (issue #14 item 6); `GSMGW_SOAK_MINUTES`,
/// `GSMGW_SOAK_MODEMS` and `GSMGW_SOAK_SEED` override (`scripts/soak`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_one_minute() {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let minutes: f64 =
        env("GSMGW_SOAK_MINUTES").map_or(1.0, |v| v.parse().expect("GSMGW_SOAK_MINUTES"));
    let modems: usize =
        env("GSMGW_SOAK_MODEMS").map_or(16, |v| v.parse().expect("GSMGW_SOAK_MODEMS"));
    let seed: u64 = env("GSMGW_SOAK_SEED").map_or(14, |v| v.parse().expect("GSMGW_SOAK_SEED"));
    soak(minutes, modems, seed).await;
}
