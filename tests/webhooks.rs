//! Webhooks end to end: the real daemon over an in-process hw-sim bank posts events to a
//! receiver in this test, which checks signatures, makes deliveries fail to see retries
//! with backoff, and goes away across a daemon restart to see the outbox survive it.
#![allow(clippy::unwrap_used)]

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use common::{Daemon, Start};
use gsmgw::config::{Config, WebhookUrl};
use gsmgw::store;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec-test";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
    answered: u16,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// How the receiver answers the next requests.
#[derive(Default)]
struct Plan {
    /// Answer this many requests with 500 first...
    fail_500: usize,
    /// ...then this many by not answering within the daemon's timeout.
    hang: usize,
}

#[derive(Clone, Default)]
struct Shared {
    hits: Arc<Mutex<Vec<Hit>>>,
    plan: Arc<Mutex<Plan>>,
}

struct Receiver {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

async fn record(State(s): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let (status, hang) = {
        let mut p = s.plan.lock().unwrap();
        if p.fail_500 > 0 {
            p.fail_500 -= 1;
            (StatusCode::INTERNAL_SERVER_ERROR, false)
        } else if p.hang > 0 {
            p.hang -= 1;
            (StatusCode::OK, true)
        } else {
            (StatusCode::OK, false)
        }
    };
    s.hits.lock().unwrap().push(Hit {
        path: uri.path().to_owned(),
        headers,
        body,
        at: Instant::now(),
        answered: if hang { 0 } else { status.as_u16() },
    });
    if hang {
        // Longer than the daemon's per-attempt timeout: this attempt must count as failed.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    status
}

impl Receiver {
    async fn start(addr: SocketAddr, plan: Plan) -> Receiver {
        let shared = Shared::default();
        *shared.plan.lock().unwrap() = plan;
        let app = Router::new()
            .route("/hook", post(record))
            .route("/cb", post(record))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, shared, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }

    /// Waits (bounded) until `pred` holds for the hits so far.
    async fn wait_for(&self, what: &str, pred: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let hits = self.hits();
            if pred(&hits) {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {:?}",
                hits.iter()
                    .map(|h| (h.path.clone(), h.json()["type"].clone(), h.answered))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(self) {
        self.task.abort();
    }
}

fn ok_of<'a>(hits: &'a [Hit], path: &str, kind: &str) -> Vec<&'a Hit> {
    hits.iter()
        .filter(|h| h.path == path && h.answered == 200 && h.json()["type"] == kind)
        .collect()
}

/// The receiver's side of the signature check, written independently of gsmgw.
fn expected_signature(timestamp: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v1={hex}")
}

/// Signed with the operator's secret (configured URLs).
fn assert_signed(h: &Hit) {
    assert_signed_with(h, SECRET);
    assert_eq!(
        h.header("x-gsmgw-signature"),
        expected_signature(h.header("x-gsmgw-timestamp"), &h.body)
    );
}

/// Signed with the callback key (a message's `callback_url`): derived from the
/// operator's secret, never the secret itself.
fn assert_signed_for_callback(h: &Hit) {
    let key = gsmgw::webhook::derive_callback_secret(SECRET);
    assert_signed_with(h, &key);
    assert_ne!(
        h.header("x-gsmgw-signature"),
        expected_signature(h.header("x-gsmgw-timestamp"), &h.body),
        "the operator's secret never signs a callback"
    );
}

fn assert_signed_with(h: &Hit, key: &str) {
    let ts = h.header("x-gsmgw-timestamp");
    let age = ts.parse::<i64>().unwrap() - store::now_ms() / 1000;
    assert!(age.abs() < 120, "fresh timestamp: {ts}");
    assert!(gsmgw::webhook::verify(
        key.as_bytes(),
        ts,
        &h.body,
        h.header("x-gsmgw-signature")
    ));
    assert_eq!(h.header("content-type"), "application/json");
    assert_eq!(
        h.header("x-gsmgw-event-id"),
        h.json()["id"].as_str().unwrap()
    );
}

fn config(urls: Vec<WebhookUrl>) -> Config {
    let mut config = Config::default();
    config.modems.command_timeout_ms = 2_000;
    config.modems.send_timeout_ms = 10_000;
    config.webhooks.urls = urls;
    config.webhooks.secret = Some(SECRET.into());
    config.webhooks.timeout_ms = 1_000;
    config.webhooks.retry_base_ms = 200;
    config.webhooks.retry_max_ms = 1_000;
    // The receivers here are on loopback, which callbacks may only reach when the
    // operator lists it.
    config.webhooks.callback_hosts = vec!["127.0.0.1".into()];
    config
}

async fn start(config: Config, db: &Path) -> Daemon {
    Daemon::start(Start {
        config,
        db: Some(PathBuf::from(db)),
        sim: Some(2),
        ..Start::default()
    })
    .await
}

/// POST /v1/messages, asserting 202; the id.
async fn send(d: &Daemon, body: Value) -> i64 {
    let (status, v) = d.post(body).await;
    assert_eq!(status, 202, "{v}");
    v["id"].as_i64().unwrap()
}

/// The outbox rows of `kind`.
async fn events(d: &Daemon, kind: &str) -> Vec<store::EventRow> {
    let kind = kind.to_owned();
    d.running
        .store
        .read(move |c| store::list_events(c, Some(&kind), 1000))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_and_delivered_reach_the_configured_url_and_the_callback_signed() {
    let rx = Receiver::start("127.0.0.1:0".parse().unwrap(), Plan::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(
        config(vec![WebhookUrl::All(rx.url("/hook"))]),
        &dir.path().join("gsmgw.db"),
    )
    .await;
    let id = send(
        &d,
        json!({
            "to": "+491701234567",
            "text": "Your code is 482913",
            "priority": "otp",
            "tags": ["login"],
            "callback_url": rx.url("/cb"),
        }),
    )
    .await;
    let hits = rx
        .wait_for("sent and delivered at both URLs", |h| {
            ["/hook", "/cb"].iter().all(|p| {
                !ok_of(h, p, "message.sent").is_empty()
                    && !ok_of(h, p, "message.delivered").is_empty()
            })
        })
        .await;
    for kind in ["message.sent", "message.delivered"] {
        let at_hook = ok_of(&hits, "/hook", kind)[0];
        let at_cb = ok_of(&hits, "/cb", kind)[0];
        assert_signed(at_hook);
        assert_signed_for_callback(at_cb);
        for h in [at_hook, at_cb] {
            let v = h.json();
            assert_eq!(v["type"], kind);
            assert_eq!(v["data"]["id"], id);
            assert_eq!(v["data"]["to"], "+491701234567");
            assert_eq!(v["data"]["tags"], json!(["login"]));
            assert_eq!(v["data"]["parts"], 1);
            assert!(v["data"]["sim"].is_string() && v["data"]["modem"].is_string());
            assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
            let raw = String::from_utf8_lossy(&h.body);
            assert!(!raw.contains("482913"), "no body, no code: {raw}");
        }
        assert_eq!(
            at_hook.json()["id"],
            at_cb.json()["id"],
            "one event id per event, whatever the URL"
        );
    }
    let delivered = ok_of(&hits, "/hook", "message.delivered")[0];
    assert_eq!(delivered.json()["data"]["status"], "delivered");
    // A receiver rejects what was not signed with the secret, or was changed.
    let ts = delivered.header("x-gsmgw-timestamp");
    let sig = delivered.header("x-gsmgw-signature");
    assert!(!gsmgw::webhook::verify(
        b"wrong-secret",
        ts,
        &delivered.body,
        sig
    ));
    let mut tampered = delivered.body.to_vec();
    tampered.extend_from_slice(b" ");
    assert!(!gsmgw::webhook::verify(
        SECRET.as_bytes(),
        ts,
        &tampered,
        sig
    ));
    assert_ne!(expected_signature(ts, &tampered), sig);
    // modem.state events went to the unfiltered URL too.
    assert!(
        rx.hits()
            .iter()
            .any(|h| h.json()["type"] == "modem.state" && h.json()["data"]["state"] == "ready")
    );
    d.stop().await;
    rx.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_with_backoff_until_2xx() {
    // Two 500s, then one attempt that outlasts the 1 s timeout, then 200.
    let rx = Receiver::start(
        "127.0.0.1:0".parse().unwrap(),
        Plan {
            fail_500: 2,
            hang: 1,
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(
        config(vec![WebhookUrl::Filtered {
            url: rx.url("/hook"),
            events: vec!["message.sent".into()],
        }]),
        &dir.path().join("gsmgw.db"),
    )
    .await;
    let id = send(&d, json!({"to": "+491701234567", "text": "retry me"})).await;
    let hits = rx
        .wait_for("message.sent answered 200", |h| {
            !ok_of(h, "/hook", "message.sent").is_empty()
        })
        .await;
    assert!(
        hits.iter().all(|h| h.json()["type"] == "message.sent"),
        "filter"
    );
    assert_eq!(hits.len(), 4, "500, 500, timeout, 200");
    let event_id = hits[0].json()["id"].clone();
    assert!(
        hits.iter().all(|h| h.json()["id"] == event_id),
        "same event id on every retry"
    );
    assert_eq!(hits[0].json()["data"]["id"], id);
    for h in &hits {
        assert_signed(h);
    }
    // Backoff 200, 400 ms after the 500s; 800 ms after the timed-out attempt (whose
    // 1 s timeout comes on top).
    let gap = |a: usize, b: usize| hits[b].at.duration_since(hits[a].at);
    assert!(gap(0, 1) >= Duration::from_millis(180), "{:?}", gap(0, 1));
    assert!(gap(1, 2) >= Duration::from_millis(380), "{:?}", gap(1, 2));
    assert!(gap(2, 3) >= Duration::from_millis(1_700), "{:?}", gap(2, 3));
    // The outcome is recorded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = events(&d, "message.sent").await;
        assert_eq!(rows.len(), 1);
        if rows[0].delivered_at.is_some() {
            assert_eq!(rows[0].attempts, 4);
            assert_eq!(rows[0].last_error, None);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delivery recorded: {:?}",
            rows[0]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.stop().await;
    rx.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_events_survive_a_restart() {
    // Reserve a port, then leave it closed: deliveries are refused while daemon 1 runs.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let hook = format!("http://{addr}/hook");
    let urls = vec![WebhookUrl::Filtered {
        url: hook.clone(),
        events: vec!["message.*".into()],
    }];
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gsmgw.db");
    let d = start(config(urls.clone()), &db).await;
    let id = send(
        &d,
        json!({"to": "+491701234567", "text": "survive a restart"}),
    )
    .await;
    // Both events were written and tried at least once (connection refused).
    let deadline = Instant::now() + Duration::from_secs(40);
    let pending = loop {
        let sent = events(&d, "message.sent").await;
        let delivered = events(&d, "message.delivered").await;
        if let (Some(s), Some(dl)) = (sent.first(), delivered.first())
            && s.attempts >= 1
            && dl.attempts >= 1
        {
            break vec![s.clone(), dl.clone()];
        }
        assert!(
            Instant::now() < deadline,
            "events tried: {sent:?} {delivered:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for row in &pending {
        assert_eq!(row.delivered_at, None);
        assert!(row.last_error.is_some());
        assert_eq!(row.url, hook);
    }
    d.stop().await;

    let rx = Receiver::start(addr, Plan::default()).await;
    let d = start(config(urls), &db).await;
    let ids: Vec<Value> = pending
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.payload).unwrap()["id"].clone())
        .collect();
    let hits = rx
        .wait_for("both events after the restart", |h| {
            ids.iter()
                .all(|id| h.iter().any(|x| x.answered == 200 && x.json()["id"] == *id))
        })
        .await;
    for h in &hits {
        assert_signed(h);
        assert_eq!(h.json()["data"]["id"], id);
    }
    // Recorded as delivered, with the attempts of both runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<store::EventRow> = [
            events(&d, "message.sent").await,
            events(&d, "message.delivered").await,
        ]
        .concat();
        assert_eq!(rows.len(), 2, "no new events for the old message");
        if rows.iter().all(|r| r.delivered_at.is_some()) {
            assert!(rows.iter().all(|r| r.attempts >= 2));
            break;
        }
        assert!(Instant::now() < deadline, "recorded: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.stop().await;
    rx.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_sms_is_announced() {
    let rx = Receiver::start("127.0.0.1:0".parse().unwrap(), Plan::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(
        config(vec![WebhookUrl::Filtered {
            url: rx.url("/hook"),
            events: vec!["inbound.received".into()],
        }]),
        &dir.path().join("gsmgw.db"),
    )
    .await;
    let text = "Hello gateway ✓ ".repeat(12);
    let r = d
        .http
        .post(format!("http://{}/inbound", d.running.sim_control.unwrap()))
        .json(&json!({"modem": 1, "from": "+4917612345678", "text": text}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let hits = rx
        .wait_for("inbound.received", |h| {
            !ok_of(h, "/hook", "inbound.received").is_empty()
        })
        .await;
    let h = ok_of(&hits, "/hook", "inbound.received")[0];
    assert_signed(h);
    let v = h.json();
    assert_eq!(v["data"]["from"], "+4917612345678");
    assert_eq!(v["data"]["text"], text.as_str());
    assert_eq!(v["data"]["complete"], true);
    assert!(v["data"]["id"].as_i64().unwrap() > 0);
    assert!(v["data"]["modem"].is_string());
    d.stop().await;
    rx.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_status_report_is_announced_as_message_failed() {
    let rx = Receiver::start("127.0.0.1:0".parse().unwrap(), Plan::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(
        config(vec![WebhookUrl::Filtered {
            url: rx.url("/hook"),
            events: vec!["message.*".into()],
        }]),
        &dir.path().join("gsmgw.db"),
    )
    .await;
    // Every modem's status reports say TP-ST 0x46 (expired in the SMSC): a failure.
    for i in 0..2 {
        let r = d
            .http
            .post(format!(
                "http://{}/modems/{i}/faults",
                d.running.sim_control.unwrap()
            ))
            .json(&json!({"type": "status_report", "status": 70, "delay_ms": 100}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let id = send(&d, json!({"to": "+491701234567", "text": "never arrives"})).await;
    let hits = rx
        .wait_for("message.failed", |h| {
            !ok_of(h, "/hook", "message.failed").is_empty()
        })
        .await;
    let v = ok_of(&hits, "/hook", "message.failed")[0].json();
    assert_eq!(v["data"]["id"], id);
    assert_eq!(v["data"]["status"], "failed");
    assert_eq!(v["data"]["error_code"], "status_report");
    assert!(ok_of(&hits, "/hook", "message.delivered").is_empty());
    d.stop().await;
    rx.stop();
}

// --- Audit #10, finding 3: one slow destination must not delay the others ---

/// A destination that accepts TCP connections and never answers; reports each
/// connection it took.
async fn black_hole() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
            let _ = tx.send(());
        }
    });
    (addr, rx)
}

/// A healthy receiver that hands each request's body to a channel.
async fn healthy() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Bytes>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

/// 40 events to a destination that never answers (a callback URL, or a configured
/// one), then one to a healthy configured URL: the healthy one arrives within 5 s.
/// Before the fix the 40 filled every worker slot and the outbox read, so the healthy
/// event waited for them to time out in rounds (40 / 4 slots × 5 s).
async fn a_hung_destination_does_not_delay_a_healthy_one(dead_is_callback: bool) {
    let (dead, mut accepted) = black_hole().await;
    let (ok, mut arrived) = healthy().await;
    let dead_url = format!("http://{dead}/cb");
    let ok_url = format!("http://{ok}/hook");
    let mut cfg = config(Vec::new()).webhooks;
    cfg.timeout_ms = 5_000;
    cfg.urls = vec![WebhookUrl::Filtered {
        url: ok_url.clone(),
        events: vec!["inbound.received".into()],
    }];
    if !dead_is_callback {
        cfg.urls.push(WebhookUrl::Filtered {
            url: dead_url.clone(),
            events: vec!["message.sent".into()],
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(dir.path().join("w.db")).unwrap();
    let hooks = Arc::new(gsmgw::webhook::Webhooks::from_config(
        &cfg,
        Some(SECRET.into()),
    ));
    let task = hooks.start(store.clone()).unwrap();
    let urls = vec![dead_url];
    store
        .write(move |c| {
            for i in 0..40 {
                store::enqueue_event(c, "message.sent", &json!({"id": i}), &urls, store::now_ms())?;
            }
            Ok(())
        })
        .await
        .unwrap();
    hooks.poke();
    // The worker is busy with the dead destination...
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), accepted.recv())
            .await
            .expect("the worker connects to the dead destination")
            .unwrap();
    }
    // ...when an event for the healthy URL comes.
    let urls = vec![ok_url];
    let event = store
        .write(move |c| {
            store::enqueue_event(
                c,
                "inbound.received",
                &json!({"id": 1}),
                &urls,
                store::now_ms(),
            )
        })
        .await
        .unwrap()
        .unwrap();
    hooks.poke();
    let started = Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(5), arrived.recv())
        .await
        .unwrap_or_else(|_| panic!("the healthy URL waited for the dead one (more than 5 s)"))
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["id"], event.as_str());
    eprintln!("healthy event delivered after {:?}", started.elapsed());
    // Not `shutdown`: that lets the attempts to the dead destination run out their 5 s
    // timeout, which proves nothing here; the runtime's end cancels them.
    drop(task);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_callback_destination_does_not_delay_a_configured_webhook() {
    a_hung_destination_does_not_delay_a_healthy_one(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_configured_destination_does_not_delay_another() {
    a_hung_destination_does_not_delay_a_healthy_one(false).await;
}
