//! Webhooks: which events go where, what they say, how they are signed, and the worker
//! that delivers them.
//!
//! It owns the event kinds (`message.sent`, `message.delivered`, `message.failed`,
//! `message.expired`, `inbound.received`, `modem.state`), the routing (configured URLs,
//! optionally filtered by kind, plus a message's own `callback_url` for its `message.*`
//! events), the payloads (never a message body: message events carry metadata only, so
//! neither a masked body nor an OTP code can leak), the HMAC-SHA256 signature, and the
//! delivery worker.
//!
//! Events are written by the callers *inside* the store write that makes the change
//! ([`Webhooks::message_event`] and friends take the transaction's connection), so the
//! outbox (`events` table, [`crate::store::enqueue_event`]) never disagrees with the
//! state. After the commit the caller calls [`Webhooks::poke`], which wakes the worker;
//! otherwise the worker sleeps until the next persisted retry time — it never polls.
//! Delivery is at-least-once: a crash between a 2xx and recording it resends, so
//! receivers dedupe on the event id (`X-Gsmgw-Event-Id`, also `id` in the body).
//!
//! Configured URLs are the operator's and trusted: posted with the normal client and
//! signed with the operator's secret. A message's `callback_url` is an app's choice:
//! checked by [`check_callback_url`] (at accept time and before every attempt), posted
//! through a client whose resolver refuses non-public addresses ([`guard`]), and signed
//! with a separate callback key ([`callback_secret_for`]), so the operator's secret
//! never signs a request to an app-chosen URL. The worker limits deliveries per
//! destination and lets unreachable ones rest ([`sched`]), so one slow or dead
//! destination holds up no other. The worker reads time only from the
//! [`Clock`] it is started with ([`Webhooks::start_with_clock`]; [`Webhooks::start`]:
//! the system's), so its tests run on paused tokio time. docs/webhooks.md has the whole
//! story.

mod guard;
mod outbox;
mod sched;

pub use guard::{
    CallbackPolicy, CallbackUrlError, HostPatternError, MAX_CALLBACK_URL_LEN, check_callback_url,
    is_refused_address,
};

use crate::clock::Clock;
use crate::config::WebhooksConfig;
use crate::modem::ModemState;
use crate::store::{self, EventRow, GAVE_UP, MessageRecord, MessageStatus, Store};
use guard::Lookup;
use hmac::{Hmac, KeyInit, Mac};
use rusqlite::Connection;
use sched::{Health, Limits, Scheduler};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

/// The webhook layer's errors.
#[derive(Debug, Error)]
pub enum WebhookError {
    /// The HTTP client could not be built; reqwest's reason.
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

/// What happened; the `type` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `message.sent`: every part was accepted by the SMSC.
    MessageSent,
    /// `message.delivered`: every part's status report says delivered.
    MessageDelivered,
    /// `message.failed`: a permanent error, attempts exhausted, or a failed status report.
    MessageFailed,
    /// `message.expired`: not sent before its `ttl` or `expires_at`.
    MessageExpired,
    /// `inbound.received`: an SMS landed in the inbox.
    InboundReceived,
    /// `modem.state`: a modem changed state.
    ModemState,
}

impl EventKind {
    /// The event's `type` on the wire (`message.sent`, …), as `[[webhooks.urls]] events` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageSent => "message.sent",
            Self::MessageDelivered => "message.delivered",
            Self::MessageFailed => "message.failed",
            Self::MessageExpired => "message.expired",
            Self::InboundReceived => "inbound.received",
            Self::ModemState => "modem.state",
        }
    }

    /// The event a message status change announces (intermediate states announce none).
    pub fn for_status(s: MessageStatus) -> Option<EventKind> {
        match s {
            MessageStatus::Sent => Some(Self::MessageSent),
            MessageStatus::Delivered => Some(Self::MessageDelivered),
            MessageStatus::Failed => Some(Self::MessageFailed),
            MessageStatus::Expired => Some(Self::MessageExpired),
            _ => None,
        }
    }

    fn is_message(self) -> bool {
        self.as_str().starts_with("message.")
    }
}

/// A configured endpoint and the kinds it wants (`None`: all).
#[derive(Debug, Clone)]
struct Route {
    url: String,
    events: Option<Vec<String>>,
}

impl Route {
    fn wants(&self, kind: EventKind) -> bool {
        self.events.as_ref().is_none_or(|list| {
            list.iter()
                .any(|e| e == kind.as_str() || (e == "message.*" && kind.is_message()))
        })
    }
}

/// Delivery policy (from `[webhooks]`).
#[derive(Clone)]
pub struct Delivery {
    /// Signs events to configured URLs.
    pub secret: Option<String>,
    /// Signs events to `callback_url`s ([`callback_secret_for`]).
    pub callback_secret: Option<String>,
    /// One attempt, start to response headers (`timeout_ms`).
    pub timeout: Duration,
    /// Connecting, within an attempt (`connect_timeout_secs`).
    pub connect_timeout: Duration,
    /// The first retry's delay, doubling per attempt (`retry_base_ms`).
    pub retry_base: Duration,
    /// The longest delay between attempts (`retry_max_ms`).
    pub retry_max: Duration,
    /// Attempts before an event is given up (`max_attempts`).
    pub max_attempts: u32,
    /// In flight at once, in all.
    pub concurrency: usize,
    /// In flight at once to one destination (scheme, host, port).
    pub destination_concurrency: usize,
    /// In flight at once to callback URLs, all together.
    pub callback_concurrency: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        let c = WebhooksConfig::default();
        Delivery {
            secret: None,
            callback_secret: None,
            timeout: Duration::from_millis(c.timeout_ms),
            connect_timeout: Duration::from_secs(c.connect_timeout_secs),
            retry_base: Duration::from_millis(c.retry_base_ms),
            retry_max: Duration::from_millis(c.retry_max_ms),
            max_attempts: c.max_attempts,
            concurrency: c.concurrency,
            destination_concurrency: c.destination_concurrency,
            callback_concurrency: c.effective_callback_concurrency(),
        }
    }
}

/// Routing plus the worker's wake-up; shared (in an `Arc`) by everything that emits.
#[derive(Default)]
pub struct Webhooks {
    /// The configured URLs and their event filters; a reload replaces them.
    routes: std::sync::RwLock<Arc<Vec<Route>>>,
    delivery: Delivery,
    policy: Arc<CallbackPolicy>,
    wake: Notify,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("Webhooks")
            .field("routes", &self.routes())
            .field("signed", &self.delivery.secret.is_some())
            .field("callbacks_signed", &self.delivery.callback_secret.is_some())
            .field("callback_policy", &self.policy)
            .finish()
    }
}

fn routes_of(cfg: &WebhooksConfig) -> Vec<Route> {
    cfg.urls
        .iter()
        .map(|u| Route {
            url: u.url().to_owned(),
            events: u.events().map(<[String]>::to_vec),
        })
        .collect()
}

/// The key that signs events to `callback_url`s, derived from the operator's secret:
/// the lowercase hex of HMAC-SHA256(secret, `"gsmgw callback v1"`) (64 characters; its
/// ASCII bytes are the HMAC key, as the operator's secret string is). Apps verify with
/// it; it cannot be turned back into the operator's secret.
pub fn derive_callback_secret(secret: &str) -> String {
    let mut mac = hmac_for(secret.as_bytes());
    mac.update(b"gsmgw callback v1");
    hex(&mac.finalize().into_bytes())
}

/// The callback signing key in effect: `[webhooks] callback_secret` if set, else
/// [`derive_callback_secret`] of the operator's effective `secret` (environment or
/// file), else none (callbacks go out unsigned, as everything does without a secret).
/// For a CLI that prints it, too.
pub fn callback_secret_for(cfg: &WebhooksConfig, secret: Option<&str>) -> Option<String> {
    match cfg.callback_secret.as_deref().filter(|s| !s.is_empty()) {
        Some(own) => Some(own.to_owned()),
        None => secret.filter(|s| !s.is_empty()).map(derive_callback_secret),
    }
}

impl Webhooks {
    /// From the config; `secret` is the effective one (environment or file).
    pub fn from_config(cfg: &WebhooksConfig, secret: Option<String>) -> Webhooks {
        let secret = secret.filter(|s| !s.is_empty());
        let callback_secret = callback_secret_for(cfg, secret.as_deref());
        Webhooks {
            routes: std::sync::RwLock::new(Arc::new(routes_of(cfg))),
            delivery: Delivery {
                secret,
                callback_secret,
                timeout: Duration::from_millis(cfg.timeout_ms),
                connect_timeout: Duration::from_secs(cfg.connect_timeout_secs.max(1)),
                retry_base: Duration::from_millis(cfg.retry_base_ms),
                retry_max: Duration::from_millis(cfg.retry_max_ms),
                max_attempts: cfg.max_attempts,
                concurrency: cfg.concurrency.max(1),
                destination_concurrency: cfg.destination_concurrency.max(1),
                callback_concurrency: cfg.effective_callback_concurrency(),
            },
            policy: Arc::new(CallbackPolicy::from_config(cfg)),
            wake: Notify::new(),
        }
    }

    /// Where `callback_url`s may point; the API checks each one with
    /// [`check_callback_url`]`(url, hooks.callback_policy())`.
    pub fn callback_policy(&self) -> &CallbackPolicy {
        &self.policy
    }

    /// The configured URLs now.
    fn routes(&self) -> Arc<Vec<Route>> {
        match self.routes.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Takes the URLs and event filters of a reloaded configuration: events enqueued
    /// from now on go to them (rows already in the outbox keep their destination). The
    /// secrets, timeouts, concurrency and callback hosts need a restart.
    pub fn reload_routes(&self, cfg: &WebhooksConfig) {
        let new = Arc::new(routes_of(cfg));
        match self.routes.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
        self.poke();
    }

    /// The key that signs events to `callback_url`s ([`callback_secret_for`]).
    pub fn callback_secret(&self) -> Option<&str> {
        self.delivery.callback_secret.as_deref()
    }

    /// Whether any configured URL wants `kind` (callers skip a store write otherwise).
    pub fn wants(&self, kind: EventKind) -> bool {
        self.routes().iter().any(|r| r.wants(kind))
    }

    /// Whether events to configured URLs carry a signature (a secret is set).
    pub fn is_signed(&self) -> bool {
        self.delivery.secret.is_some()
    }

    /// Whether any URL is configured.
    pub fn has_routes(&self) -> bool {
        !self.routes().is_empty()
    }

    fn urls_for(&self, kind: EventKind, callback: Option<&str>) -> Vec<String> {
        let routes = self.routes();
        let mut urls: Vec<String> = routes
            .iter()
            .filter(|r| r.wants(kind))
            .map(|r| r.url.clone())
            .collect();
        // A callback_url that is a configured URL gets what that URL's filter gives it
        // (and its rows are the operator's: trusted, signed with the operator's secret).
        if kind.is_message()
            && let Some(cb) = callback.filter(|c| !c.is_empty())
            && !routes.iter().any(|r| r.url == cb)
        {
            urls.push(cb.to_owned());
        }
        urls
    }

    /// Wakes the worker: call after the commit of a write that may have enqueued events.
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// The one way to write "a change and the events that announce it": `change` runs in
    /// one store write with an [`Announce`] whose events commit (or roll back) with it,
    /// and the worker is woken once the write has committed.
    pub async fn record<T: Send + 'static>(
        self: &Arc<Self>,
        store: &Store,
        change: impl FnOnce(&Connection, &Announce<'_>) -> store::Result<T> + Send + 'static,
    ) -> store::Result<T> {
        let hooks = self.clone();
        let result = store
            .write(move |conn| {
                change(
                    conn,
                    &Announce {
                        hooks: &hooks,
                        conn,
                    },
                )
            })
            .await;
        if result.is_ok() {
            self.poke();
        }
        result
    }

    /// Enqueues `kind` for message `id` as it now is in this transaction; `None` when the
    /// message is gone or nobody listens.
    pub fn message_event(
        &self,
        conn: &Connection,
        id: i64,
        kind: EventKind,
        now: i64,
    ) -> store::Result<Option<String>> {
        let Some(m) = store::get_message(conn, id)? else {
            return Ok(None);
        };
        let urls = self.urls_for(kind, m.callback_url.as_deref());
        if urls.is_empty() {
            return Ok(None);
        }
        store::enqueue_event(conn, kind.as_str(), &message_data(&m), &urls, now)
    }

    /// [`Webhooks::message_event`] for a status change (no event for intermediate ones).
    pub fn status_event(
        &self,
        conn: &Connection,
        id: i64,
        status: MessageStatus,
        now: i64,
    ) -> store::Result<Option<String>> {
        match EventKind::for_status(status) {
            Some(kind) => self.message_event(conn, id, kind, now),
            None => Ok(None),
        }
    }

    /// Enqueues `inbound.received` for an inbox row created in this transaction.
    pub fn inbound_event(
        &self,
        conn: &Connection,
        inbox_id: i64,
        now: i64,
    ) -> store::Result<Option<String>> {
        let urls = self.urls_for(EventKind::InboundReceived, None);
        if urls.is_empty() {
            return Ok(None);
        }
        let Some(m) = store::get_inbox(conn, inbox_id)? else {
            return Ok(None);
        };
        let data = json!({
            "id": m.id,
            "from": m.sender,
            "text": m.text,
            "sim": m.sim,
            "modem": m.modem,
            "received_at": rfc3339(m.received_at),
            "sent_at": m.sent_at,
            "parts": m.parts_total,
            "parts_received": m.parts_received,
            "complete": m.complete,
        });
        store::enqueue_event(conn, EventKind::InboundReceived.as_str(), &data, &urls, now)
    }

    /// Enqueues `modem.state`.
    pub fn modem_state_event(
        &self,
        conn: &Connection,
        modem: &str,
        state: &ModemState,
        now: i64,
    ) -> store::Result<Option<String>> {
        let urls = self.urls_for(EventKind::ModemState, None);
        if urls.is_empty() {
            return Ok(None);
        }
        let (name, reason) = modem_state_parts(state);
        let data = json!({"modem": modem, "state": name, "reason": reason});
        store::enqueue_event(conn, EventKind::ModemState.as_str(), &data, &urls, now)
    }

    /// Starts the delivery worker on the system clock; stop it with
    /// [`WebhookTask::shutdown`].
    pub fn start(self: &Arc<Self>, store: Store) -> Result<WebhookTask, WebhookError> {
        self.start_with_clock(store, Clock::system())
    }

    /// [`Webhooks::start`] on a given clock: the worker reads the time (what is due,
    /// when to wake, how long a destination rests, the `X-Gsmgw-Timestamp` it signs)
    /// from `clock` only, so a test on [`Clock::paused`] drives its retries with tokio's
    /// paused time.
    pub fn start_with_clock(
        self: &Arc<Self>,
        store: Store,
        clock: Clock,
    ) -> Result<WebhookTask, WebhookError> {
        self.start_with_lookup(store, guard::system_lookup(), clock)
    }

    /// [`Webhooks::start_with_clock`] with the callback client's name lookup given
    /// (tests).
    fn start_with_lookup(
        self: &Arc<Self>,
        store: Store,
        lookup: Lookup,
        clock: Clock,
    ) -> Result<WebhookTask, WebhookError> {
        let d = &self.delivery;
        let trusted = reqwest::Client::builder()
            .user_agent(concat!("gsmgw/", env!("CARGO_PKG_VERSION")))
            // A redirect is not a delivery: the receiver must answer 2xx itself.
            .redirect(reqwest::redirect::Policy::none())
            // Receivers are local apps; a system proxy would only get in the way.
            .no_proxy()
            .connect_timeout(d.connect_timeout)
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let callbacks = guard::callback_client(self.policy.clone(), lookup, d.connect_timeout)
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let stop = Arc::new(Notify::new());
        let (recorded, recorded_rx) = watch::channel(0);
        let worker = Worker {
            hooks: self.clone(),
            store,
            sender: Arc::new(Sender {
                trusted,
                callbacks,
                policy: self.policy.clone(),
                secret: d.secret.clone(),
                callback_secret: d.callback_secret.clone(),
                timeout: d.timeout,
                clock,
            }),
            stop: stop.clone(),
            clock,
            recorded,
        };
        Ok(WebhookTask {
            join: tokio::spawn(worker.run()),
            stop,
            recorded: recorded_rx,
        })
    }
}

/// The running worker.
pub struct WebhookTask {
    join: JoinHandle<()>,
    stop: Arc<Notify>,
    recorded: watch::Receiver<u64>,
}

impl WebhookTask {
    /// How many attempts the worker has recorded in the store so far (delivered,
    /// scheduled for a retry, or given up), changing after each record is committed:
    /// what a test waits on instead of polling the outbox.
    pub fn recorded(&self) -> watch::Receiver<u64> {
        self.recorded.clone()
    }

    /// Starts no new attempt, lets those in flight finish (each bounded by the
    /// timeout) and records them; rows not yet delivered go out after the next start.
    pub async fn shutdown(self) {
        self.stop.notify_one();
        let _ = self.join.await;
    }
}

/// A message event's `data`: metadata only, never the body.
fn message_data(m: &MessageRecord) -> Value {
    json!({
        "id": m.id,
        "status": m.status.as_str(),
        "to": m.to,
        "tags": m.tags,
        "parts": m.parts_total,
        "error": m.error,
        "error_code": m.error_code,
        "sim": m.sim,
        "modem": m.modem,
        "attempts": m.attempts,
        "possible_duplicate": m.possible_duplicate,
        "created_at": rfc3339(m.created_at),
        "updated_at": rfc3339(m.updated_at),
    })
}

fn modem_state_parts(s: &ModemState) -> (&'static str, Option<&str>) {
    match s {
        ModemState::Starting => ("starting", None),
        ModemState::Ready => ("ready", None),
        ModemState::Degraded(r) => ("degraded", Some(r)),
        ModemState::SimLocked(r) => ("sim_locked", Some(r)),
        ModemState::Recovering(r) => ("recovering", Some(r)),
        ModemState::Offline(r) => ("offline", Some(r)),
        ModemState::Quarantined(r) => ("quarantined", Some(r)),
        ModemState::Stopped => ("stopped", None),
    }
}

/// Total over every `i64` (these run inside store writes).
fn rfc3339(ms: i64) -> String {
    store::rfc3339(ms)
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, the `X-Gsmgw-Signature` value.
/// The timestamp is signed with the body so a captured request cannot be replayed later
/// under a fresh timestamp.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = hmac_for(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Checks an `X-Gsmgw-Signature` value in constant time (for receivers written in Rust,
/// and the tests).
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("v1=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    let mut mac = hmac_for(secret);
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

fn hmac_for(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail; the
    // fallback only satisfies the type.
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The delay before the next try after `attempts` failed ones: `base · 2^(attempts−1)`,
/// capped at `max`.
pub fn backoff(base: Duration, max: Duration, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    base.saturating_mul(1u32 << exp).min(max)
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// The receiver answered, but not 2xx: worth trying again.
    Rejected(String),
    /// No answer (connection refused or reset, timeout...): worth trying again, and the
    /// destination rests meanwhile.
    Unreachable(String),
    /// Will never work (a URL this build cannot post to, or a refused callback URL).
    Permanent(String),
}

impl Outcome {
    fn health(&self) -> Health {
        match self {
            Outcome::Delivered | Outcome::Rejected(_) => Health::Up,
            Outcome::Unreachable(_) => Health::Down,
            Outcome::Permanent(_) => Health::Unknown,
        }
    }
}

/// Posts rows: configured URLs with the normal client and the operator's secret,
/// callback URLs (checked again first) with the guarded client and the callback key.
struct Sender {
    trusted: reqwest::Client,
    callbacks: reqwest::Client,
    policy: Arc<CallbackPolicy>,
    secret: Option<String>,
    callback_secret: Option<String>,
    timeout: Duration,
    /// Stamps `X-Gsmgw-Timestamp`.
    clock: Clock,
}

impl Sender {
    async fn deliver(&self, row: &EventRow, configured: bool) -> Outcome {
        if configured {
            return attempt(
                &self.trusted,
                row,
                self.secret.as_deref(),
                self.timeout,
                self.clock.now_ms(),
            )
            .await;
        }
        // Rows written before this check existed, or under a wider allow-list, too.
        if let Err(e) = check_callback_url(&row.url, &self.policy) {
            return Outcome::Permanent(format!("refused: {e}"));
        }
        attempt(
            &self.callbacks,
            row,
            self.callback_secret.as_deref(),
            self.timeout,
            self.clock.now_ms(),
        )
        .await
    }
}

struct Worker {
    hooks: Arc<Webhooks>,
    store: Store,
    sender: Arc<Sender>,
    stop: Arc<Notify>,
    /// The only time the worker reads.
    clock: Clock,
    /// Attempts recorded ([`WebhookTask::recorded`]).
    recorded: watch::Sender<u64>,
}

/// A row being posted: its id, destination and class.
struct InFlight {
    row: i64,
    dest: String,
    configured: bool,
}

impl Worker {
    async fn run(self) {
        let d = self.hooks.delivery.clone();
        let mut sched = Scheduler::new(Limits {
            total: d.concurrency,
            callbacks: d.callback_concurrency,
            per_destination: d.destination_concurrency,
            rest_base: d.retry_base,
            rest_max: d.retry_max,
        });

        // Rows being posted, by the task posting them.
        let mut in_flight: HashMap<tokio::task::Id, InFlight> = HashMap::new();
        let mut tasks: JoinSet<(EventRow, Outcome)> = JoinSet::new();
        let mut stopping = false;
        info!(
            urls = self.hooks.routes().len(),
            signed = d.secret.is_some(),
            callbacks_signed = d.callback_secret.is_some(),
            callback_hosts_restricted = self.hooks.policy.is_restricted(),
            "webhook worker started"
        );
        loop {
            let mut wake_at = None;
            if !stopping && sched.has_room() {
                let now = self.clock.now_ms();
                sched.prune(now);
                // The pick runs on a blocking thread with a copy of the scheduler and
                // hands it back with the picked rows started.
                let mut plan = sched.clone();
                let busy: HashSet<i64> = in_flight.values().map(|f| f.row).collect();
                // The configured URLs now (a reload may have changed them).
                let cfg: HashSet<String> =
                    self.hooks.routes().iter().map(|r| r.url.clone()).collect();
                let picked = self
                    .store
                    .read(move |c| {
                        let p = outbox::pick_due(c, now, &mut plan, &busy, &cfg)?;
                        Ok((p, plan))
                    })
                    .await;
                match picked {
                    Ok((picked, plan)) => {
                        sched = plan;
                        wake_at = picked.resting_until;
                        for p in picked.rows {
                            let sender = self.sender.clone();
                            let configured = p.configured;
                            let row_id = p.row.id;
                            let row = p.row;
                            let handle = tasks.spawn(async move {
                                let o = sender.deliver(&row, configured).await;
                                (row, o)
                            });
                            in_flight.insert(
                                handle.id(),
                                InFlight {
                                    row: row_id,
                                    dest: p.dest,
                                    configured,
                                },
                            );
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot read the webhook outbox"),
                }
                if sched.has_room() {
                    let next_due = self
                        .store
                        .read(move |c| store::next_event_due(c, now))
                        .await
                        .unwrap_or_else(|e| {
                            warn!(error = %e, "cannot read the webhook outbox");
                            // Try again in a while rather than never.
                            Some(now + 5_000)
                        });
                    wake_at = match (wake_at, next_due) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                } else {
                    // Full: a finishing attempt wakes the loop.
                    wake_at = None;
                }
            }
            if stopping && tasks.is_empty() {
                break;
            }
            tokio::select! {
                Some(done) = tasks.join_next_with_id() => {
                    match done {
                        Ok((task, (row, outcome))) => {
                            if let Some(f) = in_flight.remove(&task) {
                                sched.finish(&f.dest, f.configured, outcome.health(), self.clock.now_ms());
                            }
                            self.record(&d, row, outcome).await;
                        }
                        Err(e) => {
                            // Only on a panic; the row stays due and is picked up again.
                            warn!(error = %e, "webhook attempt task failed");
                            if let Some(f) = in_flight.remove(&e.id()) {
                                sched.finish(&f.dest, f.configured, Health::Unknown, self.clock.now_ms());
                            }
                        }
                    }
                }
                _ = self.hooks.wake.notified(), if !stopping => {}
                _ = self.stop.notified(), if !stopping => stopping = true,
                _ = sleep_until_ms(&self.clock, wake_at), if wake_at.is_some() && !stopping => {}
            }
        }
        debug!("webhook worker stopped");
    }

    async fn record(&self, d: &Delivery, row: EventRow, outcome: Outcome) {
        let now = self.clock.now_ms();
        let id = row.id;
        let attempts = row.attempts + 1;
        let url = redact(&row.url);
        let r = match outcome {
            Outcome::Delivered => {
                debug!(row = id, kind = %row.kind, url = %url, attempts, "webhook delivered");
                self.store
                    .write(move |c| store::mark_delivered(c, id, now))
                    .await
            }
            Outcome::Rejected(error) | Outcome::Unreachable(error) if attempts < d.max_attempts => {
                let delay = backoff(d.retry_base, d.retry_max, attempts);
                let next = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                info!(row = id, kind = %row.kind, url = %url, attempts, retry_in_ms = delay.as_millis() as u64, error = %error, "webhook attempt failed");
                self.store
                    .write(move |c| store::schedule_event_retry(c, id, next, &error))
                    .await
            }
            Outcome::Rejected(error) | Outcome::Unreachable(error) | Outcome::Permanent(error) => {
                warn!(row = id, kind = %row.kind, url = %url, attempts, error = %error, "webhook given up");
                self.store
                    .write(move |c| store::schedule_event_retry(c, id, GAVE_UP, &error))
                    .await
            }
        };
        if let Err(e) = r {
            warn!(row = id, error = %e, "cannot record a webhook attempt");
        }
        self.recorded.send_modify(|n| *n += 1);
    }
}

/// One POST of one row; `now_ms` is the wall time it is stamped (and signed) with.
async fn attempt(
    client: &reqwest::Client,
    row: &EventRow,
    secret: Option<&str>,
    timeout: Duration,
    now_ms: i64,
) -> Outcome {
    if !(row.url.starts_with("http://") || row.url.starts_with("https://")) {
        return Outcome::Permanent("only http:// and https:// URLs are supported".into());
    }
    let event_id = serde_json::from_str::<Value>(&row.payload)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let ts = now_ms / 1000;
    let mut req = client
        .post(&row.url)
        .timeout(timeout)
        .header("Content-Type", "application/json")
        .header("X-Gsmgw-Event-Id", event_id)
        .header("X-Gsmgw-Event-Type", row.kind.as_str())
        .header("X-Gsmgw-Timestamp", ts.to_string());
    if let Some(s) = secret {
        req = req.header(
            "X-Gsmgw-Signature",
            signature(s.as_bytes(), ts, row.payload.as_bytes()),
        );
    }
    match req.body(row.payload.clone()).send().await {
        Ok(resp) if resp.status().is_success() => Outcome::Delivered,
        Ok(resp) => Outcome::Rejected(format!("HTTP {}", resp.status().as_u16())),
        Err(e) if e.is_builder() => Outcome::Permanent(e.without_url().to_string()),
        Err(e) => {
            let e = e.without_url();
            if let Some(blocked) = guard::blocked_in(&e) {
                Outcome::Permanent(format!("refused: {blocked}"))
            } else if e.is_connect() && e.is_timeout() {
                Outcome::Unreachable("could not connect in time".into())
            } else if e.is_timeout() {
                Outcome::Unreachable(format!("timed out after {} ms", timeout.as_millis()))
            } else {
                Outcome::Unreachable(error_chain(&e))
            }
        }
    }
}

/// reqwest's top-level message is generic ("error sending request"); the cause says
/// what happened (connection refused, reset...).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// A URL for logs: no query string or credentials (callback URLs may carry tokens).
fn redact(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = no_query.split_once("://") else {
        return no_query.to_owned();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if path.is_empty() && !rest.contains('/') {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}/{path}")
    }
}

/// Sleeps until the wall time `at` (ms) of `clock`: on a paused clock, until tokio's
/// paused time gets there.
async fn sleep_until_ms(clock: &Clock, at: Option<i64>) {
    let wait = at.map_or(0, |t| t.saturating_sub(clock.now_ms()).max(0));
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
}

/// Enqueues events inside a [`Webhooks::record`] write, in that write's transaction.
pub struct Announce<'a> {
    hooks: &'a Webhooks,
    conn: &'a Connection,
}

impl Announce<'_> {
    /// `kind` for message `id` as it is now in this write.
    pub fn message(&self, id: i64, kind: EventKind, now: i64) -> store::Result<Option<String>> {
        self.hooks.message_event(self.conn, id, kind, now)
    }

    /// The event for a status change of message `id` (none for intermediate statuses).
    pub fn status(
        &self,
        id: i64,
        status: MessageStatus,
        now: i64,
    ) -> store::Result<Option<String>> {
        self.hooks.status_event(self.conn, id, status, now)
    }

    /// `inbound.received` for an inbox row created in this write.
    pub fn inbound(&self, inbox_id: i64, now: i64) -> store::Result<Option<String>> {
        self.hooks.inbound_event(self.conn, inbox_id, now)
    }

    /// `modem.state`.
    pub fn modem_state(
        &self,
        modem: &str,
        state: &ModemState,
        now: i64,
    ) -> store::Result<Option<String>> {
        self.hooks.modem_state_event(self.conn, modem, state, now)
    }
}

#[cfg(test)]
mod tests;
