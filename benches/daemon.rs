//! Daemon benchmarks (issue #5), a plain program rather than criterion: each scenario
//! prints one line of figures. Run all or one:
//!
//! ```sh
//! cargo bench --bench daemon                 # all scenarios
//! cargo bench --bench daemon -- store        # store | latency | throughput | million
//! ```
//!
//! Results and the machine they ran on: docs/benchmarks.md.

use gsmgw::config::Config;
use gsmgw::daemon::{Running, ServeOptions};
use gsmgw::dispatch::priority;
use gsmgw::store::{self, MessageStatus, NewMessage, Store, now_ms};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

fn new_message(n: usize) -> NewMessage {
    NewMessage {
        to: "+491701234567".into(),
        body: format!("Your order {n} has shipped and arrives Tuesday."),
        encoding: "gsm7".into(),
        parts_total: 1,
        priority: priority::NORMAL,
        send_at: None,
        expires_at: None,
        status_report: true,
        flash: false,
        validity_secs: None,
        pinned_sim: None,
        tags: Vec::new(),
        callback_url: None,
        masked: false,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Durable enqueue with concurrent producers: each write returns after its group commit
/// reached the disk (WAL, synchronous=FULL).
async fn store_bench() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("bench.db")).expect("store");
    let producers = 64;
    let per = 1_000;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let m = new_message(p * per + i);
                let t = Instant::now();
                s.write(move |c| store::insert_message(c, &m, now_ms()))
                    .await
                    .expect("insert");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("producer"));
    }
    let total = start.elapsed();
    lat.sort();
    let n = producers * per;
    println!(
        "store: {n} durable enqueues by {producers} producers in {:.2} s = {:.0}/s; commit latency p50 {:.2} ms, p99 {:.2} ms",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
    );
    // One producer alone: the latency of a single message's commit.
    let mut single = Vec::new();
    for i in 0..500 {
        let m = new_message(i);
        let t = Instant::now();
        store
            .write(move |c| store::insert_message(c, &m, now_ms()))
            .await
            .expect("insert");
        single.push(t.elapsed());
    }
    single.sort();
    println!(
        "store: single producer commit latency p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&single, 0.5)),
        ms(percentile(&single, 0.99))
    );
}

struct Daemon {
    running: Running,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), String>>,
    _dir: tempfile::TempDir,
}

async fn daemon(modems: usize, latency: u64) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.modems.send_timeout_ms = 30_000;
    let opts = ServeOptions {
        config,
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        db: Some(dir.path().join("gsmgw.db")),
        ports: Vec::new(),
        sim: Some(modems),
        sim_latency: Some((latency, latency)),
        tokens: vec!["bench".into()],
        config_path: None,
    };
    let spawned = gsmgw::daemon::spawn(opts, Duration::from_secs(60))
        .await
        .expect("daemon ready");
    let (running, stop, task) = (spawned.running, spawned.stop, spawned.task);
    let http = reqwest::Client::new();
    // Wait until every modem is ready.
    loop {
        let r: serde_json::Value = http
            .get(format!("http://{}/readyz", running.api))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("json");
        if r["modems_ready"].as_u64() == Some(modems as u64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Daemon {
        running,
        stop,
        task,
        _dir: dir,
    }
}

impl Daemon {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn post(http: &reqwest::Client, api: std::net::SocketAddr, text: &str) -> i64 {
    let v: serde_json::Value = http
        .post(format!("http://{api}/v1/messages"))
        .bearer_auth("bench")
        .json(&serde_json::json!({"to": "+491701234567", "text": text}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    v["id"].as_i64().expect("id")
}

/// Idle bank: from the HTTP request leaving the client to the dispatcher handing the
/// message to the modem task, which writes `AT+CMGS` next (the `sending` event is sent
/// right before the hand-over).
async fn latency_bench() {
    let d = daemon(4, 50).await;
    let http = reqwest::Client::new();
    let mut events = d.running.dispatcher.subscribe();
    let mut lat = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        let id = post(&http, d.running.api, &format!("latency probe {i}")).await;
        loop {
            let ev = events.recv().await.expect("event");
            if ev.id == id && ev.status == MessageStatus::Sending {
                lat.push(t.elapsed());
                break;
            }
        }
        // Let the bank go idle again before the next probe.
        loop {
            let ev = events.recv().await.expect("event");
            if ev.id == id && ev.status == MessageStatus::Sent {
                break;
            }
        }
    }
    lat.sort();
    println!(
        "latency: idle bank, HTTP accept → AT+CMGS hand-over over {} messages: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(*lat.last().unwrap_or(&Duration::ZERO))
    );
    d.stop().await;
}

/// 8 modems, fixed 1 s CMGS latency, 400 messages: the bank's physical limit is 8/s.
async fn throughput_bench() {
    let modems = 8;
    let d = daemon(modems, 1_000).await;
    let http = reqwest::Client::new();
    let mut events = d.running.dispatcher.subscribe();
    let n = 400;
    let start = Instant::now();
    for i in 0..n {
        post(&http, d.running.api, &format!("throughput {i}")).await;
    }
    let mut sent = 0;
    while sent < n {
        let ev = events.recv().await.expect("event");
        if ev.status == MessageStatus::Sent {
            sent += 1;
        }
    }
    let total = start.elapsed().as_secs_f64();
    let rate = n as f64 / total;
    println!(
        "throughput: {n} messages on {modems} modems with 1 s CMGS latency in {total:.2} s = {rate:.2}/s = {:.1} % of the bank's {modems}/s",
        100.0 * rate / modems as f64
    );
    d.stop().await;
}

/// A million queued messages: enqueue rate per 100,000 and the dispatcher's memory with
/// the queue paged from the store, then the dispatch rate at the head of the queue.
async fn million_bench() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("million.db");
    let store = Store::open(&db).expect("store");
    let total = 1_000_000;
    let chunk = 100_000;
    let batch = 1_000;
    let rss0 = rss_mb();
    let mut line = String::new();
    let mut done = 0;
    while done < total {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for b in 0..chunk / batch {
            let s = store.clone();
            let base = done + b * batch;
            tasks.push(tokio::spawn(async move {
                s.write(move |c| {
                    for i in 0..batch {
                        store::insert_message(c, &new_message(base + i), now_ms())?;
                    }
                    Ok(())
                })
                .await
                .expect("insert batch")
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        done += chunk;
        line.push_str(&format!(" {:.0}", chunk as f64 / t.elapsed().as_secs_f64()));
    }
    println!(
        "million: enqueue rate per 100k (msgs/s):{line}; RSS {rss0:.0} → {:.0} MB",
        rss_mb()
    );
    store.close();
    drop(store);
    // The daemon on that queue: 8 simulated modems with 5 ms latency.
    let opts = ServeOptions {
        config: Config::default(),
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        db: Some(db.clone()),
        ports: Vec::new(),
        sim: Some(8),
        sim_latency: Some((5, 5)),
        tokens: vec!["bench".into()],
        config_path: None,
    };
    let rss_before = rss_mb();
    let spawned = gsmgw::daemon::spawn(opts, Duration::from_secs(120))
        .await
        .expect("ready");
    let (running, stop, task) = (spawned.running, spawned.stop, spawned.task);
    let mut events = running.dispatcher.subscribe();
    let rss_started = rss_mb();
    let mut sent = 0;
    let t = Instant::now();
    let mut rates = String::new();
    let mut last = Instant::now();
    while sent < 20_000 {
        match events.recv().await {
            Ok(ev) if ev.status == MessageStatus::Sent => {
                sent += 1;
                if sent % 5_000 == 0 {
                    rates.push_str(&format!(" {:.0}", 5_000.0 / last.elapsed().as_secs_f64()));
                    last = Instant::now();
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    println!(
        "million: daemon on 1,000,000 queued: RSS {rss_before:.0} MB before start, {rss_started:.0} MB after start, {:.0} MB after {sent} sent in {:.1} s; dispatch rate per 5k (msgs/s):{rates}",
        rss_mb(),
        t.elapsed().as_secs_f64()
    );
    let _ = stop.send(());
    let _ = task.await;
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if want("store") {
            store_bench().await;
        }
        if want("latency") {
            latency_bench().await;
        }
        if want("throughput") {
            throughput_bench().await;
        }
        if want("million") {
            million_bench().await;
        }
    });
}
