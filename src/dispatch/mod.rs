//! The dispatcher: one task that decides which message goes out next, on which modem,
//! and what happens when a send fails. Event-driven — a new message, a modem that
//! frees up, a changed modem state or a due timer wakes it; nothing polls.
//!
//! It owns the in-memory view of the queue (priority, `send_at`, retry times, expiry),
//! asks the [`Pool`] for a SIM, records each step in the store *before* acting on it
//! (a message is `sending` before its first `AT+CMGS`; each part's MR is stored as soon
//! as the SMSC accepts it), and classifies failures: permanent errors fail the message,
//! temporary and link errors retry — at once on another SIM, then with exponential
//! backoff — up to a maximum; an expired message is never sent late.

pub mod outbound;

pub use outbound::{FailureKind, OutPart, Outbound, PartSent, SendFailure, SendJob};

use crate::clock::Clock;
use crate::config::Timeouts;
use crate::pdu::{self, Address, SubmitOptions, Validity};
use crate::pool::{ModemId, ModemStatus, Pool, SelectRequest, Selection, UsageSnapshot};
use crate::store::{self, InFlightPolicy, MessageRecord, MessageStatus, Store};
use crate::webhook::{Announce, EventKind, Webhooks};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Named priorities; any integer works, higher goes first.
pub mod priority {
    /// One-time codes: ahead of everything, an OTP never waits behind bulk.
    pub const OTP: i32 = 300;
    /// Time-critical notices.
    pub const HIGH: i32 = 200;
    /// The default.
    pub const NORMAL: i32 = 100;
    /// Marketing and bulk: whenever nothing else waits.
    pub const BULK: i32 = 0;

    /// `otp`, `high`, `normal`, `bulk`.
    pub fn parse(name: &str) -> Option<i32> {
        Some(match name {
            "otp" => OTP,
            "high" => HIGH,
            "normal" => NORMAL,
            "bulk" => BULK,
            _ => return None,
        })
    }

    /// The name of a named priority, else the number (what the API shows).
    pub fn name(p: i32) -> String {
        match p {
            OTP => "otp".into(),
            HIGH => "high".into(),
            NORMAL => "normal".into(),
            BULK => "bulk".into(),
            n => n.to_string(),
        }
    }
}

/// Retry and crash policy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Attempts before a message fails for good (`[store] max_attempts`, 5).
    pub max_attempts: u32,
    /// The retry back-off (`retry_base`, `retry_max`) among the others, defined once.
    pub timeouts: Timeouts,
    /// What start-up does with a part whose `AT+CMGS` was in flight at a crash.
    pub in_flight: InFlightPolicy,
    /// Most queued messages kept in memory; the rest wait in the store and are paged in
    /// as the window drains, so a million queued messages cost no more RAM than this.
    pub window: usize,
    /// Where status changes are announced: their events are written in the same store
    /// write as the change (outbox), and the worker is poked after the commit.
    pub webhooks: Arc<Webhooks>,
    /// Where the dispatcher reads the time (due times, expiry, retries, quota windows):
    /// the system clock in the daemon, [`Clock::paused`] in tests that drive time.
    pub clock: Clock,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_attempts: 5,
            timeouts: Timeouts::default(),
            in_flight: InFlightPolicy::AtLeastOnce,
            window: 10_000,
            webhooks: Arc::new(Webhooks::default()),
            clock: Clock::system(),
        }
    }
}

/// A message waiting to go out, as the dispatcher tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The message id (store and API).
    pub id: i64,
    /// Higher goes first (see [`priority`]).
    pub priority: i32,
    /// Not before (unix ms): `send_at` or the next retry.
    pub due: i64,
    /// Not sent by then (unix ms): expired instead.
    pub expires_at: Option<i64>,
    /// The recipient, E.164.
    pub to: String,
    /// The text to encode.
    pub body: String,
    /// Parts the planner made of it at accept time.
    pub parts_total: u32,
    /// Only this SIM (ICCID) may send it.
    pub pinned_sim: Option<String>,
    /// Ask for a delivery report (TP-SRR).
    pub status_report: bool,
    /// Class 0: shown, not stored, by the handset.
    pub flash: bool,
    /// TP-VP in seconds, when the API gave one.
    pub validity_secs: Option<u32>,
    /// The concatenation reference the store allocated (same for every attempt).
    pub concat_ref: u16,
    /// Attempts made so far.
    pub attempts: u32,
    /// Parts the SMSC already accepted: never sent again.
    pub sent_seqs: Vec<u32>,
    /// The SIM those parts went out on: the rest must follow on the same SIM, or the
    /// handset could not reassemble them (it groups parts by sender).
    pub sent_sim: Option<String>,
    /// SIMs that failed this message (tried last).
    pub avoid: Vec<String>,
    /// Failed store writes in a row when starting an attempt (the message never reached
    /// a modem; not an attempt): the retry backs off on it.
    pub store_failures: u32,
}

impl Queued {
    /// The dispatcher's view of a stored message (parts already accepted included).
    pub fn from_record(m: &MessageRecord) -> Queued {
        let sent: Vec<&store::PartRecord> = m.parts.iter().filter(|p| p.mr.is_some()).collect();
        Queued {
            id: m.id,
            priority: m.priority,
            due: m.due,
            expires_at: m.expires_at,
            to: m.to.clone(),
            body: m.body.clone(),
            parts_total: m.parts_total,
            pinned_sim: m.pinned_sim.clone(),
            status_report: m.status_report,
            flash: m.flash,
            validity_secs: m.validity_secs,
            concat_ref: m.concat_ref,
            attempts: m.attempts,
            sent_seqs: sent.iter().map(|p| p.seq).collect(),
            sent_sim: sent.first().and_then(|p| p.sim.clone()),
            avoid: Vec::new(),
            store_failures: 0,
        }
    }

    /// The TPDUs still to send, encoded exactly as when the message was accepted (same
    /// plan, same concatenation reference), so resent parts match the ones out there.
    pub fn parts_to_send(&self) -> Result<Vec<OutPart>, pdu::PduError> {
        let mut opts = SubmitOptions::new(Address::parse(&self.to)?);
        opts.status_report = self.status_report;
        opts.flash = self.flash;
        opts.validity = self
            .validity_secs
            .map(|s| Validity::relative_at_least(Duration::from_secs(u64::from(s))));
        opts.concat_ref = self.concat_ref;
        let (_, parts) = pdu::plan::plan_parts(&self.body, &opts)?;
        Ok(parts
            .into_iter()
            .filter(|p| !self.sent_seqs.contains(&p.seq))
            .collect())
    }
}

/// A message changed status (for webhooks, metrics and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The message.
    pub id: i64,
    /// Its new status.
    pub status: MessageStatus,
    /// The SIM (ICCID) it went out on, when it went out.
    pub sim: Option<String>,
    /// The modem it went out on, when it went out.
    pub modem: Option<String>,
    /// Why it failed or is retried.
    pub error: Option<String>,
}

enum Input {
    Enqueued(Box<Queued>),
    Cancelled(i64),
    ModemAdded(ModemId, Arc<dyn Outbound>),
    ModemStatus(ModemStatus),
    ModemRemoved(ModemId),
    Reconfigure(Box<crate::pool::PoolConfig>),
    Shutdown,
    /// Test-only fault injection: the next `n` writes that start an attempt fail.
    #[cfg(test)]
    FailBeginAttempts(u32),
}

/// A write that records what already happened (a part went out, a send ended, a
/// message expired). When the store cannot take it (disk full, read-only, I/O error) it
/// is kept in memory and retried in order until it lands; meanwhile no new send starts,
/// so nothing more happens that would have to be remembered.
type Outcome = Arc<dyn Fn(&rusqlite::Connection, &Announce<'_>) -> store::Result<()> + Send + Sync>;

/// An [`Outcome`] waiting for the store.
struct Unwritten {
    id: i64,
    what: &'static str,
    write: Outcome,
}

struct Done {
    id: i64,
    modem: ModemId,
    iccid: String,
    attempt: i64,
    sent: Vec<PartSent>,
    /// Accepted parts whose MR the store could not take when they went out.
    unrecorded: Vec<PartSent>,
    result: Result<(), SendFailure>,
    /// When the message was handed to the modem (for the send-latency histogram).
    started: Instant,
}

/// Hands a send's [`Done`] back to the loop exactly once: when the send finishes, or,
/// should an [`Outbound`] panic, as a link failure when the unwinding drops the guard,
/// so the modem's in-flight slot and the message are never lost.
struct DoneGuard {
    tx: mpsc::UnboundedSender<Done>,
    done: Option<Done>,
}

impl DoneGuard {
    /// Stores an accepted part's MR (before anything else happens to the message).
    async fn part_sent(&mut self, store: &Store, clock: Clock, p: PartSent) {
        let Some(d) = self.done.as_mut() else { return };
        let (id, sim, mdm) = (d.id, d.iccid.clone(), d.modem.clone());
        let r = store
            .write(move |c| store::part_sent(c, id, p.seq, p.mr, &sim, &mdm, clock.now_ms()))
            .await;
        if let Err(e) = r {
            warn!(message_id = id, seq = p.seq, error = %e, "could not record a sent part: kept and retried");
            d.unrecorded.push(p);
        }
        d.sent.push(p);
    }

    fn finish(mut self, result: Result<(), SendFailure>) {
        if let Some(mut d) = self.done.take() {
            d.result = result;
            let _ = self.tx.send(d);
        }
    }
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        if let Some(mut d) = self.done.take() {
            d.result = Err(SendFailure {
                kind: FailureKind::Link,
                code: "panic".into(),
                message: "the send task failed".into(),
            });
            let _ = self.tx.send(d);
        }
    }
}

/// Talks to the dispatcher task; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::UnboundedSender<Input>,
    events: broadcast::Sender<StatusChange>,
    /// Unix ms of the loop's last turn (the systemd watchdog keep-alive reads it).
    beat: Arc<AtomicI64>,
}

/// The task; await `join` after `shutdown`.
pub struct DispatcherTask {
    /// Ends once the loop has stopped and every send in flight has ended.
    pub join: JoinHandle<()>,
}

impl Dispatcher {
    /// Reconciles what a crash left behind, loads the queue and starts the task.
    pub async fn start(
        store: Store,
        mut pool: Pool,
        settings: Settings,
    ) -> Result<(Dispatcher, DispatcherTask), store::StoreError> {
        let policy = settings.in_flight;
        let clock = settings.clock;
        let reconciled = settings
            .webhooks
            .record(&store, move |c, announce| {
                let now = clock.now_ms();
                let done = store::reconcile(c, policy, now)?;
                for r in done.iter().filter(|r| !r.requeued) {
                    if let Some(m) = store::get_message(c, r.id)? {
                        announce.status(r.id, m.status, now)?;
                    }
                }
                Ok(done)
            })
            .await?;
        for r in &reconciled {
            if !r.uncertain_parts.is_empty() {
                warn!(
                    message_id = r.id,
                    parts = ?r.uncertain_parts,
                    requeued = r.requeued,
                    "message was being sent when the daemon stopped: possible duplicate"
                );
            }
        }
        for sim in store.read(store::list_sims).await? {
            if let Ok(u) = serde_json::from_str::<UsageSnapshot>(&sim.usage) {
                pool.restore_usage(&sim.iccid, u);
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(4096);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut state = State {
            store,
            pool,
            settings,
            modems: HashMap::new(),
            messages: HashMap::new(),
            ready: BTreeSet::new(),
            later: BTreeSet::new(),
            expiries: BTreeSet::new(),
            wait_until: None,
            done_tx,
            events: events.clone(),
            beat: Arc::new(AtomicI64::new(clock.now_ms())),
            store_has_more: true,
            store_watermark: None,
            unwritten: VecDeque::new(),
            #[cfg(test)]
            fail_begin: 0,
        };
        state.refill(clock.now_ms()).await;
        info!(
            queued = state.messages.len(),
            more_in_store = state.store_has_more,
            "dispatcher starting"
        );
        let beat = state.beat.clone();
        let join = tokio::spawn(state.run(rx, done_rx));
        Ok((Dispatcher { tx, events, beat }, DispatcherTask { join }))
    }

    /// A message was committed: consider it now.
    pub fn enqueued(&self, q: Queued) {
        let _ = self.tx.send(Input::Enqueued(Box::new(q)));
    }

    /// A message was cancelled in the store: forget it.
    pub fn cancelled(&self, id: i64) {
        let _ = self.tx.send(Input::Cancelled(id));
    }

    /// A modem to send through (its status follows with [`Dispatcher::modem_status`]).
    pub fn modem_added(&self, id: ModemId, outbound: Arc<dyn Outbound>) {
        let _ = self.tx.send(Input::ModemAdded(id, outbound));
    }

    /// A modem's current readiness, SIM and signal, for the pool.
    pub fn modem_status(&self, status: ModemStatus) {
        let _ = self.tx.send(Input::ModemStatus(status));
    }

    /// A reloaded pool configuration (routes, quotas, SIM weights and limits): taken for
    /// the next choices; usage counted so far and messages in flight are kept.
    pub fn reconfigure(&self, config: crate::pool::PoolConfig) {
        let _ = self.tx.send(Input::Reconfigure(Box::new(config)));
    }

    /// A modem is gone: nothing more is sent through it.
    pub fn modem_removed(&self, id: ModemId) {
        let _ = self.tx.send(Input::ModemRemoved(id));
    }

    /// When the dispatcher loop last turned (unix ms).
    pub fn last_beat(&self) -> i64 {
        self.beat.load(Ordering::Relaxed)
    }

    /// Every status change the dispatcher makes, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StatusChange> {
        self.events.subscribe()
    }

    /// Stops taking new work; sends in flight finish on their own.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Input::Shutdown);
    }

    /// Test-only: makes the next `n` store writes that start a send attempt fail, as a
    /// full disk or a locked database would.
    #[cfg(test)]
    pub(crate) fn fail_begin_attempts(&self, n: u32) {
        let _ = self.tx.send(Input::FailBeginAttempts(n));
    }
}

struct ModemSlot {
    outbound: Arc<dyn Outbound>,
    status: Option<ModemStatus>,
    in_flight: u32,
}

/// Ready messages order: priority (highest first), then due time, then id.
type ReadyKey = (std::cmp::Reverse<i32>, i64, i64);

/// What [`Pool::select`] reserved for one message: a SIM's quota and a modem's
/// in-flight slot, at a time.
#[derive(Debug, Clone)]
struct Reserved {
    modem: ModemId,
    iccid: String,
    parts: u32,
    at: SystemTime,
}

struct State {
    store: Store,
    pool: Pool,
    settings: Settings,
    modems: HashMap<ModemId, ModemSlot>,
    messages: HashMap<i64, Queued>,
    ready: BTreeSet<ReadyKey>,
    later: BTreeSet<(i64, i64)>,
    expiries: BTreeSet<(i64, i64)>,
    /// The pool said a SIM frees up then (quota, min interval).
    wait_until: Option<SystemTime>,
    done_tx: mpsc::UnboundedSender<Done>,
    events: broadcast::Sender<StatusChange>,
    /// Stamped on every loop turn: the systemd watchdog keep-alive is sent only while
    /// this loop really turns, so a wedged dispatcher gets the service restarted.
    beat: Arc<AtomicI64>,
    /// Queued messages exist in the store that are not in memory.
    store_has_more: bool,
    /// Load more from the store at this time (the first not-loaded future message).
    store_watermark: Option<i64>,
    /// Outcomes the store could not take yet, oldest first.
    unwritten: VecDeque<Unwritten>,
    /// Test-only: how many more attempt-starting writes fail.
    #[cfg(test)]
    fail_begin: u32,
}

/// How often outcomes the store could not take are tried again.
const UNWRITTEN_RETRY_MS: i64 = 1_000;

/// The loop turns at least this often even when idle, so its heartbeat proves it alive.
pub const LIVENESS_TICK_MS: i64 = 2_000;

/// How many ready messages one pass looks at when the first ones cannot go out
/// (pinned to a busy SIM, say): bounds the work per wake-up on a huge queue.
const SCAN_LIMIT: usize = 256;

impl State {
    /// Wall-clock now (unix ms), from the configured clock.
    fn now_ms(&self) -> i64 {
        self.settings.clock.now_ms()
    }

    /// Keeps a message in the in-memory window, evicting the least urgent one when the
    /// window is full (it stays in the store and comes back with a later refill).
    fn add(&mut self, q: Queued, now: i64) {
        if self.messages.contains_key(&q.id) {
            return;
        }
        if self.messages.len() >= self.settings.window.max(1) {
            self.store_has_more = true;
            let evict = if q.due <= now {
                let key = (std::cmp::Reverse(q.priority), q.due, q.id);
                self.ready
                    .last()
                    .copied()
                    .filter(|worst| key < *worst)
                    .map(|k| k.2)
            } else {
                self.later
                    .last()
                    .copied()
                    .filter(|worst| (q.due, q.id) < *worst)
                    .map(|k| k.1)
            };
            match evict {
                Some(victim) => {
                    self.forget(victim);
                }
                None => {
                    if q.due > now {
                        self.store_watermark =
                            Some(self.store_watermark.map_or(q.due, |w| w.min(q.due)));
                    }
                    return;
                }
            }
        }
        self.insert(q, now);
    }

    fn insert(&mut self, q: Queued, now: i64) {
        let (id, due, prio) = (q.id, q.due, q.priority);
        if let Some(e) = q.expires_at {
            self.expiries.insert((e, id));
        }
        self.messages.insert(id, q);
        if due <= now {
            self.ready.insert((std::cmp::Reverse(prio), due, id));
        } else {
            self.later.insert((due, id));
        }
    }

    fn forget(&mut self, id: i64) -> Option<Queued> {
        let q = self.messages.remove(&id)?;
        self.ready
            .remove(&(std::cmp::Reverse(q.priority), q.due, id));
        self.later.remove(&(q.due, id));
        if let Some(e) = q.expires_at {
            self.expiries.remove(&(e, id));
        }
        Some(q)
    }

    fn notify(
        &self,
        id: i64,
        status: MessageStatus,
        sim: Option<&str>,
        modem: Option<&str>,
        error: Option<&str>,
    ) {
        let _ = self.events.send(StatusChange {
            id,
            status,
            sim: sim.map(str::to_owned),
            modem: modem.map(str::to_owned),
            error: error.map(str::to_owned),
        });
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Input>,
        mut done_rx: mpsc::UnboundedReceiver<Done>,
    ) {
        let mut accepting = true;
        loop {
            let now = self.now_ms();
            self.beat.store(now, Ordering::Relaxed);
            let watermark_passed = self.store_watermark.is_some_and(|w| w <= now);
            if self.store_has_more
                && (watermark_passed || self.ready.len() < self.settings.window.max(4) / 4)
            {
                self.refill(now).await;
            }
            self.promote(now);
            self.flush_unwritten().await;
            self.expire(now).await;
            // While outcomes wait for the store, start nothing new.
            if accepting && self.unwritten.is_empty() {
                self.assign().await;
            }
            let wake = self.next_wake();
            tokio::select! {
                input = rx.recv(), if accepting => match input {
                    Some(Input::Shutdown) | None => accepting = false,
                    Some(i) => self.on_input(i),
                },
                Some(done) = done_rx.recv() => self.on_done(done).await,
                _ = sleep_until_ms(&self.settings.clock, wake), if wake.is_some() => {}
                else => break,
            }
            if !accepting && self.modems.values().all(|m| m.in_flight == 0) {
                break;
            }
        }
        debug!("dispatcher stopped");
    }

    /// Pages queued messages from the store into the window: the most urgent due ones
    /// and the soonest future ones. Cheap on a huge queue (indexed, limited).
    async fn refill(&mut self, now: i64) {
        let room = self
            .settings
            .window
            .max(1)
            .saturating_sub(self.messages.len());
        if room == 0 {
            return;
        }
        let ready_limit = u32::try_from(room).unwrap_or(u32::MAX);
        let upcoming_limit = u32::try_from((room / 4).clamp(1, 1024)).unwrap_or(1024);
        let page = self
            .store
            .read(move |c| store::queue_window(c, now, ready_limit, upcoming_limit))
            .await;
        let (ready, upcoming) = match page {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "could not read the queue from the store");
                return;
            }
        };
        let full_ready = ready.len() as u32 >= ready_limit;
        let full_upcoming = upcoming.len() as u32 >= upcoming_limit;
        self.store_watermark = if full_upcoming {
            upcoming.last().map(|m| m.due)
        } else {
            None
        };
        for m in ready.iter().chain(upcoming.iter()) {
            if !self.messages.contains_key(&m.id)
                && self.messages.len() < self.settings.window.max(1)
            {
                self.insert(Queued::from_record(m), now);
            }
        }
        self.store_has_more = full_ready || full_upcoming;
    }

    fn next_wake(&self) -> Option<i64> {
        [
            // A liveness turn at least this often, for the watchdog.
            Some(self.now_ms() + LIVENESS_TICK_MS),
            self.store_watermark,
            self.later.first().map(|x| x.0),
            self.expiries.first().map(|x| x.0),
            self.wait_until.map(store::to_ms),
            // Try the store again for what it could not take.
            (!self.unwritten.is_empty()).then(|| self.now_ms() + UNWRITTEN_RETRY_MS),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn promote(&mut self, now: i64) {
        while let Some(&(due, id)) = self.later.first() {
            if due > now {
                break;
            }
            self.later.remove(&(due, id));
            if let Some(q) = self.messages.get(&id) {
                self.ready.insert((std::cmp::Reverse(q.priority), due, id));
            }
        }
    }

    /// Expires queued messages whose deadline passed (one being sent finishes first).
    async fn expire(&mut self, now: i64) {
        let due: Vec<(i64, i64)> = self
            .expiries
            .iter()
            .take_while(|(e, _)| *e <= now)
            .copied()
            .collect();
        for (e, id) in due {
            let queued =
                self.ready.iter().any(|k| k.2 == id) || self.later.iter().any(|k| k.1 == id);
            if !queued {
                // Being sent: leave it; `on_done` decides.
                self.expiries.remove(&(e, id));
                continue;
            }
            self.forget(id);
            self.record(
                id,
                "an expiry",
                Arc::new(move |c, announce| {
                    store::set_status(
                        c,
                        id,
                        MessageStatus::Expired,
                        Some("expired"),
                        Some("not sent before it expired"),
                        now,
                    )?;
                    announce.message(id, EventKind::MessageExpired, now)?;
                    Ok(())
                }),
            )
            .await;
            info!(message_id = id, "expired before it could be sent");
            self.notify(id, MessageStatus::Expired, None, None, Some("expired"));
        }
    }

    fn idle_modems(&self) -> usize {
        self.modems
            .values()
            .filter(|m| m.status.is_some() && m.in_flight == 0)
            .count()
    }

    async fn assign(&mut self) {
        self.wait_until = None;
        let mut idle = self.idle_modems();
        if idle == 0 || self.ready.is_empty() {
            return;
        }
        let keys: Vec<ReadyKey> = self.ready.iter().take(SCAN_LIMIT).copied().collect();
        for key in keys {
            if idle == 0 {
                break;
            }
            let Some(q) = self.messages.get(&key.2) else {
                self.ready.remove(&key);
                continue;
            };
            let remaining = q
                .parts_total
                .saturating_sub(q.sent_seqs.len() as u32)
                .max(1);
            let pinned = q.sent_sim.as_deref().or(q.pinned_sim.as_deref());
            let req = SelectRequest {
                to: &q.to,
                parts: remaining,
                pinned_sim: pinned,
                avoid: &q.avoid,
            };
            let selected_at = self.settings.clock.now();
            match self.pool.select(&req, selected_at) {
                Selection::Chosen(c) => {
                    self.ready.remove(&key);
                    let reserved = Reserved {
                        modem: c.modem,
                        iccid: c.iccid,
                        parts: remaining,
                        at: selected_at,
                    };
                    if self.start_send(key.2, reserved).await {
                        idle -= 1;
                    }
                }
                Selection::WaitUntil(t) => {
                    self.wait_until = Some(self.wait_until.map_or(t, |w| w.min(t)));
                }
                Selection::Unavailable(why) => {
                    debug!(message_id = key.2, reason = %why, "no SIM for now");
                }
            }
        }
    }

    /// Hands a selected message to its modem. Every way out before the modem has it
    /// gives back what the selection reserved ([`State::release`]); returns whether the
    /// send started.
    async fn start_send(&mut self, id: i64, reserved: Reserved) -> bool {
        let now = self.now_ms();
        let Some(mut q) = self.messages.get(&id).cloned() else {
            self.release(&reserved);
            return false;
        };
        let Some(outbound) = self.modems.get(&reserved.modem).map(|s| s.outbound.clone()) else {
            // Not reached (the pool forgets a modem together with its slot); never leak.
            self.release(&reserved);
            self.requeue(q, now, now);
            return false;
        };
        let Reserved { modem, iccid, .. } = reserved.clone();
        let attempt = match self.begin_attempt(id, &iccid, &modem, now).await {
            Ok(a) => a,
            Err(store::StoreError::Conflict(why)) => {
                // Cancelled (or otherwise changed) between enqueue and now.
                debug!(message_id = id, reason = %why, "not sending");
                self.release(&reserved);
                self.forget(id);
                return false;
            }
            Err(e) => {
                // The store could not record the attempt: nothing was sent. The message
                // stays queued (in the store as in memory) and is tried again, backing
                // off while the store keeps failing.
                self.release(&reserved);
                q.store_failures += 1;
                let delay = self.backoff(q.store_failures);
                warn!(
                    message_id = id, modem = %modem, error = %e, retry_in = ?delay,
                    "could not record the send attempt; the message stays queued"
                );
                let due =
                    now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2));
                self.requeue(q, due, now);
                return false;
            }
        };
        if let Some(m) = self.messages.get_mut(&id) {
            m.store_failures = 0;
        }
        self.persist_usage(&iccid).await;
        let parts_out = match q.parts_to_send() {
            Ok(p) => p,
            Err(e) => {
                // Cannot happen for a message the API accepted; fail it loudly.
                self.release(&reserved);
                self.fail(id, &iccid, &modem, attempt, "encode", &e.to_string())
                    .await;
                return false;
            }
        };
        if let Some(slot) = self.modems.get_mut(&modem) {
            slot.in_flight += 1;
        }
        self.push_status(&modem);
        self.notify(id, MessageStatus::Sending, Some(&iccid), Some(&modem), None);
        debug!(message_id = id, modem = %modem, iccid = %iccid, parts = parts_out.len(), "sending");
        let store = self.store.clone();
        let clock = self.settings.clock;
        let mut done = DoneGuard {
            tx: self.done_tx.clone(),
            done: Some(Done {
                id,
                modem,
                iccid,
                attempt,
                sent: Vec::new(),
                unrecorded: Vec::new(),
                result: Ok(()),
                started: clock.instant(),
            }),
        };
        tokio::spawn(async move {
            let (progress, mut accepted) = mpsc::unbounded_channel();
            let job = SendJob {
                message_id: id,
                parts: parts_out,
                progress,
            };
            // One task: the outbound reports each accepted part to `progress` as the
            // SMSC accepts it, and its MR is stored here at once, while the send goes on.
            let send = outbound.send(job);
            tokio::pin!(send);
            let result = loop {
                tokio::select! {
                    // Parts first: each MR is stored before the outcome is looked at.
                    biased;
                    Some(p) = accepted.recv() => done.part_sent(&store, clock, p).await,
                    r = &mut send => break r,
                }
            };
            // Parts accepted just before the send returned.
            while let Ok(p) = accepted.try_recv() {
                done.part_sent(&store, clock, p).await;
            }
            done.finish(result);
        });
        true
    }

    /// Gives back what [`Pool::select`] reserved for a send that never reached the
    /// modem: the quota it charged, and the in-flight slot it counted (the pool's count
    /// is put back to the dispatcher's, which was not raised).
    fn release(&mut self, r: &Reserved) {
        self.pool.refund(&r.iccid, r.parts, r.at);
        self.push_status(&r.modem);
    }

    /// Puts a message back in the window, due at `due`.
    fn requeue(&mut self, mut q: Queued, due: i64, now: i64) {
        self.forget(q.id);
        q.due = due;
        self.add(q, now);
    }

    /// Records in the store that the message is being sent (`sending`, a new attempt).
    async fn begin_attempt(
        &mut self,
        id: i64,
        iccid: &str,
        modem: &str,
        now: i64,
    ) -> Result<i64, store::StoreError> {
        #[cfg(test)]
        if self.fail_begin > 0 {
            self.fail_begin -= 1;
            return Err(store::StoreError::Sqlite(
                "injected fault: database or disk is full".into(),
            ));
        }
        let (sim, mdm) = (iccid.to_owned(), modem.to_owned());
        self.store
            .write(move |c| store::begin_attempt(c, id, &sim, &mdm, now))
            .await
    }

    async fn persist_usage(&mut self, iccid: &str) {
        let usage = self.pool.usage(iccid);
        if let Ok(json) = serde_json::to_string(&usage) {
            let sim = iccid.to_owned();
            if let Err(e) = self
                .store
                .write(move |c| store::save_sim_usage(c, &sim, &json))
                .await
            {
                warn!(iccid, error = %e, "could not persist quota usage");
            }
        }
    }

    fn push_status(&mut self, modem: &str) {
        if let Some(slot) = self.modems.get(modem)
            && let Some(s) = &slot.status
        {
            let mut s = s.clone();
            s.in_flight = slot.in_flight;
            self.pool.update_modem(s);
        }
    }

    async fn fail(
        &mut self,
        id: i64,
        iccid: &str,
        modem: &str,
        attempt: i64,
        code: &str,
        message: &str,
    ) {
        self.forget(id);
        let (code_s, msg_s) = (code.to_owned(), message.to_owned());
        let now = self.now_ms();
        self.record(
            id,
            "a failure",
            Arc::new(move |c, announce| {
                store::finish_attempt(c, attempt, "permanent", Some(&code_s), Some(&msg_s), now)?;
                store::set_status(
                    c,
                    id,
                    MessageStatus::Failed,
                    Some(&code_s),
                    Some(&msg_s),
                    now,
                )?;
                announce.message(id, EventKind::MessageFailed, now)?;
                Ok(())
            }),
        )
        .await;
        info!(message_id = id, code, "failed: {message}");
        self.notify(
            id,
            MessageStatus::Failed,
            Some(iccid),
            Some(modem),
            Some(message),
        );
    }

    /// Writes an outcome with its events, or keeps it for [`State::flush_unwritten`]
    /// when the store cannot take it now (or older outcomes still wait: order matters).
    async fn record(&mut self, id: i64, what: &'static str, write: Outcome) {
        if self.unwritten.is_empty() {
            let w = write.clone();
            match self
                .settings
                .webhooks
                .record(&self.store, move |c, announce| w(c, announce))
                .await
            {
                Ok(()) => return,
                Err(e) => warn!(
                    message_id = id,
                    error = %e,
                    "could not record {what}: kept in memory and retried; no new sends until the store takes it"
                ),
            }
        }
        self.unwritten.push_back(Unwritten { id, what, write });
    }

    /// Retries the outcomes the store could not take, oldest first, until one fails.
    async fn flush_unwritten(&mut self) {
        while let Some(u) = self.unwritten.front() {
            let (id, what, w) = (u.id, u.what, u.write.clone());
            match self
                .settings
                .webhooks
                .record(&self.store, move |c, announce| w(c, announce))
                .await
            {
                Ok(()) => {
                    info!(
                        message_id = id,
                        "recorded {what} now that the store takes writes again"
                    );
                    self.unwritten.pop_front();
                }
                Err(_) => return,
            }
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(20);
        let t = &self.settings.timeouts;
        t.retry_base.saturating_mul(1u32 << exp).min(t.retry_max)
    }

    async fn on_done(&mut self, d: Done) {
        if let Some(slot) = self.modems.get_mut(&d.modem) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
        }
        self.push_status(&d.modem);
        let Some(mut q) = self.messages.get(&d.id).cloned() else {
            return;
        };
        q.attempts += 1;
        for p in &d.unrecorded {
            let (id, seq, mr, sim, mdm) = (d.id, p.seq, p.mr, d.iccid.clone(), d.modem.clone());
            let now = self.now_ms();
            self.record(
                id,
                "a sent part's MR",
                Arc::new(move |c, _| store::part_sent(c, id, seq, mr, &sim, &mdm, now)),
            )
            .await;
        }
        for p in &d.sent {
            if !q.sent_seqs.contains(&p.seq) {
                q.sent_seqs.push(p.seq);
            }
        }
        if !d.sent.is_empty() {
            q.sent_sim = Some(d.iccid.clone());
            crate::telemetry::sent_parts(&d.iccid, &d.modem, d.sent.len());
        }
        let now = self.now_ms();
        match d.result {
            Ok(()) if q.sent_seqs.len() as u32 >= q.parts_total => {
                crate::telemetry::send_latency(d.started.elapsed().as_secs_f64());
                self.forget(d.id);
                let (id, attempt) = (d.id, d.attempt);
                self.record(
                    id,
                    "a send",
                    Arc::new(move |c, announce| {
                        store::finish_attempt(c, attempt, "sent", None, None, now)?;
                        store::mark_sent(c, id, now)?;
                        // Even if a status report already made it `delivered`: it was sent.
                        announce.message(id, EventKind::MessageSent, now)?;
                        Ok(())
                    }),
                )
                .await;
                info!(message_id = d.id, modem = %d.modem, "sent");
                self.notify(
                    d.id,
                    MessageStatus::Sent,
                    Some(&d.iccid),
                    Some(&d.modem),
                    None,
                );
            }
            Ok(()) => {
                // The modem said done but parts are missing: treat as a link failure.
                let f = SendFailure {
                    kind: FailureKind::Link,
                    code: "incomplete".into(),
                    message: "the modem finished without sending every part".into(),
                };
                self.after_failure(q, &d.modem, &d.iccid, d.attempt, f, now)
                    .await;
            }
            Err(f) => {
                self.after_failure(q, &d.modem, &d.iccid, d.attempt, f, now)
                    .await
            }
        }
    }

    async fn after_failure(
        &mut self,
        mut q: Queued,
        modem: &str,
        iccid: &str,
        attempt: i64,
        f: SendFailure,
        now: i64,
    ) {
        let id = q.id;
        warn!(message_id = id, modem, code = %f.code, kind = ?f.kind, "send failed: {}", f.message);
        let expired = q.expires_at.is_some_and(|e| e <= now);
        let permanent = f.kind == FailureKind::Permanent;
        let possibly_sent = f.kind == FailureKind::PossiblySent;
        if permanent
            || q.attempts >= self.settings.max_attempts
            || expired
            || (possibly_sent && self.settings.in_flight == InFlightPolicy::AtMostOnce)
        {
            let status = if expired && !permanent {
                MessageStatus::Expired
            } else {
                MessageStatus::Failed
            };
            crate::telemetry::failed(Some(iccid), status.as_str());
            self.forget(id);
            let (code, msg) = (f.code.clone(), f.message.clone());
            self.record(
                id,
                "a failure",
                Arc::new(move |c, announce| {
                    let outcome = if permanent { "permanent" } else { "temporary" };
                    store::finish_attempt(c, attempt, outcome, Some(&code), Some(&msg), now)?;
                    store::set_status(c, id, status, Some(&code), Some(&msg), now)?;
                    announce.status(id, status, now)?;
                    Ok(())
                }),
            )
            .await;
            self.notify(id, status, Some(iccid), Some(modem), Some(&f.message));
            return;
        }
        if !q.avoid.iter().any(|a| a == iccid) {
            q.avoid.push(iccid.to_owned());
        }
        // Fail over at once while other SIMs remain untried; back off after that.
        let untried = self
            .modems
            .values()
            .filter_map(|m| m.status.as_ref()?.iccid.as_deref())
            .any(|i| !q.avoid.iter().any(|a| a == i));
        let delay = if untried && q.sent_sim.is_none() {
            Duration::ZERO
        } else {
            self.backoff(q.attempts)
        };
        let next = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
        let (code, msg) = (f.code.clone(), f.message.clone());
        self.record(
            id,
            "a retry",
            Arc::new(move |c, _| {
                store::finish_attempt(c, attempt, "temporary", Some(&code), Some(&msg), now)?;
                if possibly_sent {
                    store::flag_possible_duplicate(c, id)?;
                }
                store::schedule_retry(c, id, next, Some(&code), Some(&msg), now)
            }),
        )
        .await;
        if possibly_sent {
            warn!(
                message_id = id,
                "resending a part that may have gone out: possible duplicate"
            );
        }
        self.forget(id);
        q.due = next;
        self.add(q, now);
        self.notify(
            id,
            MessageStatus::Queued,
            Some(iccid),
            Some(modem),
            Some(&f.message),
        );
    }

    fn on_input(&mut self, input: Input) {
        let now = self.now_ms();
        match input {
            Input::Enqueued(q) => self.add(*q, now),
            Input::Cancelled(id) => {
                self.forget(id);
            }
            Input::ModemAdded(id, outbound) => {
                self.modems.insert(
                    id,
                    ModemSlot {
                        outbound,
                        status: None,
                        in_flight: 0,
                    },
                );
            }
            Input::ModemStatus(s) => {
                let id = s.modem.clone();
                if let Some(slot) = self.modems.get_mut(&id) {
                    slot.status = Some(s);
                    self.push_status(&id);
                }
            }
            Input::ModemRemoved(id) => {
                self.modems.remove(&id);
                self.pool.remove_modem(&id);
            }
            Input::Reconfigure(cfg) => match self.pool.set_config(*cfg) {
                Ok(()) => info!("pool configuration reloaded (routes, quotas, SIMs)"),
                Err(e) => warn!(error = %e, "pool configuration refused; the old one stays"),
            },
            Input::Shutdown => {}
            #[cfg(test)]
            Input::FailBeginAttempts(n) => self.fail_begin = n,
        }
    }
}

/// Sleeps until the wall time `at` (unix ms) of `clock`; at once when it passed.
async fn sleep_until_ms(clock: &Clock, at: Option<i64>) {
    let now = clock.now_ms();
    let wait = at.map_or(0, |t| t.saturating_sub(now).max(0));
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
}

#[cfg(test)]
mod tests;
