//! The driver proper: bring-up, send, receive, health and the recovery ladder, as async
//! methods on [`Modem`], which owns one link. This file holds the types and command
//! execution; each concern has its own file. [`super::ModemHandle`] runs a `Modem` in its
//! own task; the CLI uses a `Modem` directly for one-shot commands.

mod bringup;
mod health;
mod receive;
mod recovery;
mod send;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tracing::debug;

use super::conn::{AtConn, Reply};
use super::error::ModemError;
use super::info::{Cnmi, Report};
use super::link::Opener;
use super::sink::InboundSink;
use crate::at::{Command, FinalResult, SessionConfig};
use crate::clock::Clock;
use crate::config::Timeouts;

/// First pause before asking a busy SIM or device again; it doubles up to
/// [`BUSY_MAX_DELAY`], within [`Timeouts::sim_wait`] in all.
const BUSY_FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest pause between two tries while the SIM or device is busy.
const BUSY_MAX_DELAY: Duration = Duration::from_secs(4);

/// What the pool sees of a modem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum ModemState {
    /// Opening the port and bringing the modem up.
    Starting,
    /// Usable, nothing wrong.
    Ready,
    /// Usable, but something is off (not registered, storage full, no SMSC...).
    Degraded(String),
    /// The SIM needs a PIN/PUK nobody may enter automatically, or is missing.
    SimLocked(String),
    /// Running the recovery ladder after a failure.
    Recovering(String),
    /// The port is gone; reopening with backoff.
    Offline(String),
    /// Out of rotation after repeated failure, until someone acts.
    Quarantined(String),
    /// The task ended.
    Stopped,
}

impl ModemState {
    /// Whether messages may be sent through the modem.
    pub fn is_usable(&self) -> bool {
        matches!(self, ModemState::Ready | ModemState::Degraded(_))
    }
}

/// The PINs a SIM rejected, by ICCID. Shared (clone it) between every modem of a process,
/// so a SIM moved to another port is not tried again either, and persisted by the daemon
/// (see [`RejectedPins::with_persistence`]) so a restart does not try again: a rejected
/// PIN is never retried automatically, three tries would PUK-lock the SIM. Only a
/// fingerprint (SHA-256) of the PIN is kept; a *different* PIN configured later for
/// that ICCID (the operator fixed it) may be tried once.
#[derive(Clone, Default)]
pub struct RejectedPins {
    set: Arc<Mutex<HashMap<String, String>>>,
    persist: Option<PersistPin>,
}

/// Called with (ICCID, fingerprint) for each new rejection; returns once it is durable.
pub type PersistPin = Arc<dyn Fn(&str, &str) + Send + Sync>;

impl std::fmt::Debug for RejectedPins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RejectedPins")
            .field("iccids", &self.set.lock().map(|s| s.len()).unwrap_or(0))
            .finish()
    }
}

/// The fingerprint kept for a rejected PIN.
pub fn pin_fingerprint(iccid: &str, pin: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("gsmgw-pin:{iccid}:{pin}").as_bytes());
    crate::pdu::hex::encode(&digest)
}

impl RejectedPins {
    /// Starts from rejections recorded earlier (ICCID → fingerprint) and calls `persist`
    /// with each new one before the driver reports it.
    pub fn with_persistence(initial: HashMap<String, String>, persist: PersistPin) -> Self {
        Self {
            set: Arc::new(Mutex::new(initial)),
            persist: Some(persist),
        }
    }

    /// Whether any PIN for this ICCID was rejected.
    pub fn contains(&self, iccid: &str) -> bool {
        self.set.lock().is_ok_and(|s| s.contains_key(iccid))
    }

    /// Whether this PIN for this ICCID was rejected (and so must not be sent).
    pub fn blocks(&self, iccid: &str, pin: &str) -> bool {
        let fp = pin_fingerprint(iccid, pin);
        self.set
            .lock()
            .map(|s| s.get(iccid).is_some_and(|f| f == &fp))
            // A poisoned lock: refuse rather than risk a PUK lock.
            .unwrap_or(true)
    }

    /// Records a rejection.
    pub fn insert(&self, iccid: &str, pin: &str) {
        let fp = pin_fingerprint(iccid, pin);
        if let Some(p) = &self.persist {
            p(iccid, &fp);
        }
        if let Ok(mut s) = self.set.lock() {
            s.insert(iccid.to_owned(), fp);
        }
    }

    /// Forgets a rejection (an operator fixed the configuration).
    pub fn remove(&self, iccid: &str) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(iccid);
        }
    }
}

/// How the driver behaves. `Default` suits real modems; tests shorten the timings.
#[derive(Debug, Clone)]
pub struct ModemConfig {
    /// Name in messages and states; the port when `None`.
    pub name: Option<String>,
    /// The AT session's own recovery timings (ESC, drain, re-sync `AT`).
    pub session: SessionConfig,
    /// Every timeout, interval and back-off of the driver and its task (defaults in
    /// [`Timeouts::default`], the one place they are defined).
    pub timeouts: Timeouts,
    /// Plain `AT` attempts before the modem counts as silent.
    pub sync_attempts: u32,
    /// PINs by ICCID; the key `*` applies to any SIM without its own entry.
    pub pins: HashMap<String, String>,
    /// Rejected PINs, shared across modems.
    pub rejected_pins: RejectedPins,
    /// SMSC to set when the SIM has none (as `smsc_overrides["*"]`, which wins).
    pub smsc: Option<String>,
    /// SMSCs to set when the SIM has none or forgot it, by ICCID (or IMSI when the modem
    /// gives no ICCID); the key `*` applies to any SIM without its own entry. Without
    /// one, the last SMSC the modem reported is set again.
    pub smsc_overrides: HashMap<String, String>,
    /// Message storages to try, in order (all three `+CPMS` memories get the same).
    pub storages: Vec<String>,
    /// `+CNMI` settings to try, in order. Stored delivery (`mt=1`) first: a message
    /// stays on the SIM until the sink committed it.
    pub cnmi: Vec<Cnmi>,
    /// Read and hand over the messages already stored at bring-up (needs a sink).
    pub sweep: bool,
    /// Reopen attempts before giving up (then: quarantine).
    pub reopen_attempts: u32,
    /// This many recoveries within [`Timeouts::quarantine_window`] quarantine the modem.
    pub quarantine_after: u32,
    /// Extra AT commands from the operator (`[[modems.port]] init`), run in order at
    /// the end of every bring-up; one the modem refuses is logged, not fatal.
    pub init: Vec<String>,
    /// Where the driver, its task and its AT session read the time: the system clock in
    /// the daemon, [`Clock::paused`] in tests that drive time themselves.
    pub clock: Clock,
}

impl Default for ModemConfig {
    fn default() -> Self {
        let c = |s: &str| {
            Cnmi::parse_param(s).unwrap_or(Cnmi {
                mode: 1,
                mt: 1,
                bm: 0,
                ds: 0,
                bfr: 0,
            })
        };
        Self {
            name: None,
            session: SessionConfig::default(),
            timeouts: Timeouts::default(),
            sync_attempts: 3,
            pins: HashMap::new(),
            rejected_pins: RejectedPins::default(),
            smsc: None,
            smsc_overrides: HashMap::new(),
            storages: vec!["SM".into(), "ME".into()],
            cnmi: [
                "2,1,0,2,0",
                "2,1,0,1,0",
                "1,1,0,2,0",
                "1,1,0,1,0",
                "2,1,0,0,0",
                "1,1,0,0,0",
            ]
            .iter()
            .map(|s| c(s))
            .collect(),
            sweep: true,
            reopen_attempts: 12,
            quarantine_after: 5,
            init: Vec::new(),
            clock: Clock::system(),
        }
    }
}

/// A USSD answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UssdReply {
    /// 0 done, 1 the network wants an answer, 2 terminated by the network, ...
    pub status: u8,
    /// The text as the modem gave it (Huawei firmware may give packed GSM hex).
    pub text: Option<String>,
    /// Its data coding scheme.
    pub dcs: Option<u8>,
}

/// What the driver knows of the SMSC the modem sends through.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Smsc {
    /// Not read since bring-up, or something may have made the modem forget it (a
    /// restart, `+CFUN`, a send refused with `+CMS ERROR: 330`): read before the next send.
    Unknown,
    /// The modem has this one.
    Set(String),
    /// The modem has none and refused to store ours: each PDU carries it instead.
    InPdu(String),
    /// The modem cannot say (`AT+CSCA?` refused) and none is configured: sends go out
    /// and the modem decides.
    Unreadable,
    /// The modem has none and none is known: a send cannot succeed.
    Missing,
}

/// A modem on one port.
pub struct Modem {
    cfg: ModemConfig,
    opener: Arc<dyn Opener>,
    sink: Option<Arc<dyn InboundSink>>,
    conn: Option<AtConn>,
    report: Report,
    /// The `+CPMS` memory messages are read and deleted in.
    mem: String,
    /// `+CPMS` accepted a storage.
    storage_ok: bool,
    /// `AT+CSMS=1` accepted: direct deliveries need our `+CNMA`.
    csms1: bool,
    /// Stored messages wait for a retry (a sink failure, or no `+CNMI`).
    needs_sweep: bool,
    /// The modem rebooted behind our back: its settings are gone.
    needs_bring_up: bool,
    /// During bring-up: until when busy answers are waited out.
    busy_until: Option<Instant>,
    /// The SIM was still busy when the wait ran out: held as `SimLocked` with the
    /// reason, brought up again at the next health poll.
    sim_busy: bool,
    smsc: Smsc,
    /// The last SMSC the modem reported (or accepted), to set again if it forgets it.
    smsc_known: Option<String>,
    /// An incoming call to reject, with the caller when `+CLIP` named one.
    ringing: Option<Option<String>>,
    calls_rejected: Arc<AtomicU64>,
    state: watch::Sender<ModemState>,
    published: watch::Sender<Report>,
}

fn sim_error(reason: String) -> ModemError {
    ModemError::Sim(reason)
}

impl Modem {
    /// A modem that is not open yet. `sink: None` leaves inbound messages on the modem.
    pub fn new(
        opener: Arc<dyn Opener>,
        cfg: ModemConfig,
        sink: Option<Arc<dyn InboundSink>>,
    ) -> Self {
        let report = Report {
            port: opener.describe(),
            ..Report::default()
        };
        Self {
            cfg,
            opener,
            sink,
            conn: None,
            report: report.clone(),
            mem: "SM".into(),
            storage_ok: false,
            csms1: false,
            needs_sweep: false,
            needs_bring_up: false,
            busy_until: None,
            sim_busy: false,
            smsc: Smsc::Unknown,
            smsc_known: None,
            ringing: None,
            calls_rejected: Arc::new(AtomicU64::new(0)),
            state: watch::channel(ModemState::Starting).0,
            published: watch::channel(report).0,
        }
    }

    /// The modem's name.
    pub fn name(&self) -> String {
        self.cfg
            .name
            .clone()
            .unwrap_or_else(|| self.opener.describe())
    }

    /// The configuration.
    pub fn config(&self) -> &ModemConfig {
        &self.cfg
    }

    /// Monotonic now from the configured clock, as the AT session counts time.
    pub fn now(&self) -> Instant {
        self.cfg.clock.instant().into_std()
    }

    /// What the driver knows now.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Incoming calls rejected (hung up) since the modem was created.
    pub fn calls_rejected(&self) -> u64 {
        self.calls_rejected.load(Ordering::Relaxed)
    }

    /// The counter behind [`Modem::calls_rejected`], for a handle to read while the
    /// modem runs in its task.
    pub fn calls_rejected_counter(&self) -> Arc<AtomicU64> {
        self.calls_rejected.clone()
    }

    /// The state as published.
    pub fn state(&self) -> ModemState {
        self.state.borrow().clone()
    }

    /// Follows state changes.
    pub fn watch_state(&self) -> watch::Receiver<ModemState> {
        self.state.subscribe()
    }

    /// Follows the report.
    pub fn watch_report(&self) -> watch::Receiver<Report> {
        self.published.subscribe()
    }

    /// Publishes a state (only a change wakes the watchers).
    pub fn set_state(&self, s: ModemState) {
        self.state.send_if_modified(|cur| {
            if *cur == s {
                false
            } else {
                *cur = s;
                true
            }
        });
    }

    fn publish(&self) {
        let r = self.report.clone();
        self.published.send_if_modified(|cur| {
            if *cur == r {
                false
            } else {
                *cur = r;
                true
            }
        });
    }

    /// Whether URCs wait to be handled (or a reboot was noticed).
    pub fn has_work(&self) -> bool {
        self.needs_bring_up || self.conn.as_ref().is_some_and(AtConn::has_urcs)
    }

    /// Opens the port and leaves any prompt a previous process left (ESC, drain, `AT`).
    pub async fn open(&mut self) -> Result<(), ModemError> {
        self.conn = None;
        let link = self.opener.open().await?;
        let mut conn = AtConn::new(link, self.cfg.session.clone(), self.cfg.clock);
        conn.resync().await?;
        self.conn = Some(conn);
        Ok(())
    }

    /// Drops the link (closing the port).
    pub fn close(&mut self) {
        self.conn = None;
    }

    fn conn(&mut self) -> Result<&mut AtConn, ModemError> {
        self.conn.as_mut().ok_or(ModemError::PortGone)
    }

    /// Sends a command and waits for its answer. During bring-up a busy answer (SIM or
    /// device busy: the command was not carried out) is waited out with backoff.
    pub async fn exec(&mut self, cmd: Command) -> Result<Reply, ModemError> {
        let mut delay = BUSY_FIRST_DELAY;
        loop {
            let reply = self.exec_once(cmd.clone()).await?;
            if reply.result.is_busy() && self.busy_backoff(&mut delay).await {
                debug!(modem = %self.name(), command = cmd.text(), result = ?reply.result, "busy; asking again");
                continue;
            }
            return Ok(reply);
        }
    }

    async fn exec_once(&mut self, cmd: Command) -> Result<Reply, ModemError> {
        let r = self.conn()?.exec(cmd).await;
        if matches!(
            r,
            Err(ModemError::PortGone | ModemError::PortGoneAfterPayload { .. })
        ) {
            self.conn = None;
        }
        r
    }

    /// Pauses before the next try while bring-up's busy wait lasts (doubling `delay`);
    /// `false` when there is no wait left.
    async fn busy_backoff(&mut self, delay: &mut Duration) -> bool {
        let Some(until) = self.busy_until else {
            return false;
        };
        let now = self.now();
        if now >= until {
            return false;
        }
        tokio::time::sleep((*delay).min(until - now)).await;
        *delay = (*delay * 2).min(BUSY_MAX_DELAY);
        true
    }

    /// A command that must answer `OK` (busy answers asked again, as [`Modem::exec`]);
    /// its information lines.
    async fn ok(&mut self, cmd: Command) -> Result<Vec<String>, ModemError> {
        let text = cmd.text().to_owned();
        self.exec(cmd).await?.into_ok(&text)
    }

    /// A command whose refusal is not fatal: `Ok(None)` when the device said no, `Err`
    /// only when the link broke.
    async fn query(&mut self, cmd: Command) -> Result<Option<Vec<String>>, ModemError> {
        match self.ok(cmd).await {
            Ok(lines) => Ok(Some(lines)),
            Err(e) if e.is_link() => Err(e),
            Err(_) => Ok(None),
        }
    }

    fn short(&self, cmd: Command) -> Command {
        cmd.timeout(self.cfg.timeouts.command)
    }

    fn storage_cmd(&self, cmd: Command) -> Command {
        cmd.timeout(self.cfg.timeouts.storage)
    }
}

fn describe_result(r: &FinalResult) -> String {
    match r {
        FinalResult::CmeError(e) => e.to_string(),
        FinalResult::CmsError(e) => e.to_string(),
        other => format!("{other:?}"),
    }
}
