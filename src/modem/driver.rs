//! The driver proper: bring-up, send, receive, health and the recovery ladder, as async
//! methods on [`Modem`], which owns one link. [`super::ModemHandle`] runs a `Modem` in its
//! own task; the CLI uses a `Modem` directly for one-shot commands.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::conn::{AtConn, Reply};
use super::error::ModemError;
use super::info::{
    Capabilities, Cnmi, Registration, Report, Signal, SimState, Storage, first_value,
    is_storage_name, parse_csca, parse_iccid_line,
};
use super::link::Opener;
use super::sink::{Inbound, InboundSink, Origin};
use crate::at::{
    CmeError, CmsError, Command, FinalResult, SessionConfig, Urc, info_params, records,
};
use crate::pdu::{
    Address, SubmitOptions, TextEncoding, TypeOfNumber, Validity, decode_hex, encode_submit,
};

/// First pause before asking a busy SIM or device again; it doubles up to
/// [`BUSY_MAX_DELAY`], within [`ModemConfig::sim_wait`] in all.
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
    /// Timeout of ordinary commands.
    pub command_timeout: Duration,
    /// Timeout of storage commands (`+CMGL`, `+CMGR`, `+CMGD`, `+CPMS`).
    pub storage_timeout: Duration,
    /// Timeout of one `AT+CMGS` (network round trip included).
    pub send_timeout: Duration,
    /// How long to wait for the `+CUSD` answer.
    pub ussd_timeout: Duration,
    /// Timeout of `AT+CFUN` (radio off/on takes seconds on real modems).
    pub cfun_timeout: Duration,
    /// Plain `AT` attempts before the modem counts as silent.
    pub sync_attempts: u32,
    /// How long a busy or initialising SIM or device is waited for during bring-up
    /// (`+CME ERROR: 14`/`515`, `+CMS ERROR: 314`, `+CPIN: NOT READY`), asking again
    /// with exponential backoff: once until the SIM is ready, again after a PIN was
    /// accepted, and again for the rest of the bring-up.
    /// A SIM still busy then is reported (`sim: busy`, state `SimLocked` with the reason)
    /// and checked again at the next health poll.
    pub sim_wait: Duration,
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
    /// How long the sink may take to commit one message.
    pub sink_timeout: Duration,
    /// Interval of the health poll (`+CSQ`, `+CREG?`, `+COPS?`, `+CPMS?`).
    pub health_interval: Duration,
    /// Reopen backoff: first delay, maximum delay.
    pub reopen_backoff: (Duration, Duration),
    /// Reopen attempts before giving up (then: quarantine).
    pub reopen_attempts: u32,
    /// Wait after `AT+CFUN=1,1` before reopening (the modem re-enumerates).
    pub reset_wait: Duration,
    /// This many recoveries within `quarantine_window` quarantine the modem.
    pub quarantine_after: u32,
    /// See `quarantine_after`.
    pub quarantine_window: Duration,
    /// Extra AT commands from the operator (`[[modems.port]] init`), run in order at
    /// the end of every bring-up; one the modem refuses is logged, not fatal.
    pub init: Vec<String>,
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
            command_timeout: Duration::from_secs(5),
            storage_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            ussd_timeout: Duration::from_secs(30),
            cfun_timeout: Duration::from_secs(20),
            sync_attempts: 3,
            sim_wait: Duration::from_secs(30),
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
            sink_timeout: Duration::from_secs(30),
            health_interval: Duration::from_secs(60),
            reopen_backoff: (Duration::from_millis(250), Duration::from_secs(10)),
            reopen_attempts: 12,
            reset_wait: Duration::from_secs(3),
            quarantine_after: 5,
            quarantine_window: Duration::from_secs(600),
            init: Vec::new(),
        }
    }
}

/// One text to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    /// Destination (`+E.164`, national digits, or a short code).
    pub to: String,
    /// The text; split into as many parts as needed.
    pub text: String,
    /// Ask for status reports (TP-SRR).
    pub status_report: bool,
    /// Validity period.
    pub validity: Option<Validity>,
}

impl SendRequest {
    /// A plain text to a number.
    pub fn new(to: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            to: to.into(),
            text: text.into(),
            status_report: false,
            validity: None,
        }
    }
}

/// One TPDU encoded by the caller, for [`Modem::send_pdus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PduPart {
    /// The part's number within its message (reported back with its MR).
    pub seq: u32,
    /// SMSC field + TPDU, hex.
    pub hex: String,
    /// TPDU octets, as `AT+CMGS=<n>` wants.
    pub tpdu_len: usize,
}

/// What a send produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SendReport {
    /// `gsm7` or `ucs2`.
    pub encoding: String,
    /// The message reference of each part, in order (status reports quote it).
    pub mrs: Vec<u8>,
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
    concat_ref: u16,
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
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
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
            concat_ref: (seed % 256) as u16,
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

    /// Whether the link is open.
    pub fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    /// Whether URCs wait to be handled (or a reboot was noticed).
    pub fn has_work(&self) -> bool {
        self.needs_bring_up || self.conn.as_ref().is_some_and(AtConn::has_urcs)
    }

    /// Opens the port and leaves any prompt a previous process left (ESC, drain, `AT`).
    pub async fn open(&mut self) -> Result<(), ModemError> {
        self.conn = None;
        let link = self.opener.open().await?;
        let mut conn = AtConn::new(link, self.cfg.session.clone());
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
        let now = Instant::now();
        if now >= until {
            return false;
        }
        tokio::time::sleep((*delay).min(until - now)).await;
        *delay = (*delay * 2).min(BUSY_MAX_DELAY);
        true
    }

    async fn ok(&mut self, cmd: Command) -> Result<Vec<String>, ModemError> {
        let text = cmd.text().to_owned();
        let reply = self.exec(cmd).await?;
        if reply.result.is_ok() {
            Ok(reply.lines)
        } else {
            Err(ModemError::from_result(&text, reply.result))
        }
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
        cmd.timeout(self.cfg.command_timeout)
    }

    fn storage_cmd(&self, cmd: Command) -> Command {
        cmd.timeout(self.cfg.storage_timeout)
    }

    // ----- bring-up -----

    /// Brings the modem from "port open" to "ready to send and receive". Fails with
    /// [`ModemError::Sim`] (state `SimLocked`) when the SIM cannot be unlocked. A SIM
    /// still busy after [`ModemConfig::sim_wait`] is not a failure: the modem is held
    /// (state `SimLocked` saying so, `sim: busy`) and brought up again at the next
    /// health poll.
    pub async fn bring_up(&mut self) -> Result<(), ModemError> {
        // Cleared first: a bring-up that fails is retried by recovery or reopen, never
        // by spinning on the flag.
        self.needs_bring_up = false;
        self.busy_until = Some(Instant::now() + self.cfg.sim_wait);
        let r = self.bring_up_steps().await;
        self.busy_until = None;
        r
    }

    async fn bring_up_steps(&mut self) -> Result<(), ModemError> {
        self.sync().await?;
        self.query(self.short(Command::new("ATE0"))).await?;
        self.query(self.short(Command::new("AT+CMEE=1"))).await?;
        self.identify().await?;
        match self.unlock_sim().await {
            Ok(true) => {}
            Ok(false) => {
                self.hold_busy_sim();
                return Ok(());
            }
            Err(e) => {
                if let ModemError::Sim(reason) = &e {
                    self.set_state(ModemState::SimLocked(reason.clone()));
                }
                self.publish();
                return Err(e);
            }
        }
        if std::mem::take(&mut self.sim_busy) {
            // Leaves the busy hold: the health poll below decides the state.
            self.set_state(ModemState::Starting);
        }
        // The SIM is ready; its SMS side may still be busy a moment (`+CMS ERROR: 314`):
        // a fresh wait for the rest of the bring-up.
        self.busy_until = Some(Instant::now() + self.cfg.sim_wait);
        self.forget_boot_urcs().await?;
        self.report.imsi = match self.query(self.short(Command::cimi())).await? {
            Some(lines) => first_value(&lines, &["+CIMI:"]),
            None => None,
        };
        self.ok(self.short(Command::new("AT+CMGF=0"))).await?;
        self.check_smsc().await?;
        self.csms1 = self
            .query(self.short(Command::new("AT+CSMS=1").expect("+CSMS:")))
            .await?
            .is_some();
        self.choose_storage().await?;
        self.negotiate_cnmi().await?;
        self.report.capabilities =
            Some(Capabilities::from_setup(self.storage_ok, self.report.cnmi));
        // Caller ids for the log when calls are rejected; firmware without it still
        // says RING.
        self.query(self.short(Command::new("AT+CLIP=1"))).await?;
        self.query(self.short(Command::new("AT+CREG=2"))).await?;
        self.query(self.short(Command::new("AT+CEREG=2"))).await?;
        for line in self.cfg.init.clone() {
            if self.query(self.short(Command::new(&line))).await?.is_none() {
                warn!(modem = %self.name(), command = %line, "the modem refused an init command");
            }
        }
        self.refresh().await?;
        if self.cfg.sweep && self.storage_ok {
            self.sweep().await?;
        }
        Ok(())
    }

    /// The SIM stayed busy through the whole wait: report it, keep the modem out of
    /// use, and try again at the next health poll.
    fn hold_busy_sim(&mut self) {
        self.sim_busy = true;
        self.report.sim = Some(SimState::Busy);
        self.report.capabilities = None;
        self.publish();
        let reason = format!(
            "SIM busy (still initialising after {:?}); checked again at the next health poll",
            self.cfg.sim_wait
        );
        warn!(modem = %self.name(), "{reason}");
        self.set_state(ModemState::SimLocked(reason));
    }

    /// Drops the boot and SIM-progress URCs that arrived while the SIM was being waited
    /// for (`RDY`, `+CFUN: 1`, `+CPIN: NOT READY`, `SMS Ready`, ...): they describe the
    /// start this bring-up already handles, and would otherwise start another one. If
    /// the modem restarted meanwhile, its error and echo settings are made again.
    async fn forget_boot_urcs(&mut self) -> Result<(), ModemError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let mut restarted = false;
        let keep: Vec<Urc> = conn
            .take_urcs()
            .into_iter()
            .filter(|u| {
                restarted |= u.is_restart();
                !matches!(
                    u,
                    Urc::Rdy
                        | Urc::SysStart
                        | Urc::Cfun(_)
                        | Urc::Cpin(_)
                        | Urc::Simst(_)
                        | Urc::SmsReady
                        | Urc::CallReady
                        | Urc::Status(_)
                )
            })
            .collect();
        conn.requeue_urcs(keep);
        if restarted {
            self.query(self.short(Command::new("ATE0"))).await?;
            self.query(self.short(Command::new("AT+CMEE=1"))).await?;
        }
        Ok(())
    }

    /// Plain `AT` until the modem answers anything.
    async fn sync(&mut self) -> Result<(), ModemError> {
        for _ in 0..self.cfg.sync_attempts.max(1) {
            match self.exec(self.short(Command::new("AT"))).await {
                // Any final result, even ERROR, proves it listens.
                Ok(_) => return Ok(()),
                Err(ModemError::Timeout { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ModemError::NoAnswer)
    }

    async fn identify(&mut self) -> Result<(), ModemError> {
        self.report.manufacturer = self
            .query(self.short(Command::cgmi()))
            .await?
            .and_then(|l| first_value(&l, &["+CGMI:"]));
        self.report.model = self
            .query(self.short(Command::cgmm()))
            .await?
            .and_then(|l| first_value(&l, &["+CGMM:"]));
        let cgmr = Command::new("AT+CGMR")
            .expect("+CGMR:")
            .expect_raw()
            .lenient();
        self.report.revision = self
            .query(self.short(cgmr))
            .await?
            .and_then(|l| first_value(&l, &["+CGMR:", "Revision:"]))
            .or(self.report.revision.take());
        self.report.imei = self
            .query(self.short(Command::cgsn()))
            .await?
            .and_then(|l| first_value(&l, &["+CGSN:"]));
        self.report.iccid = self.read_iccid().await?;
        self.publish();
        Ok(())
    }

    /// The ICCID (keys the PIN and SMSC configuration, and the SIM's quotas): `+CCID`,
    /// the standard EF_ICCID read (`+CRSM`), then the vendor spellings; each answer goes
    /// through [`parse_iccid_line`], which also undoes nibble-swapping wherever it occurs.
    /// `None` when no command gives one (the IMSI then identifies the SIM, see
    /// [`Report::sim_key`]). A busy SIM is waited out by [`Modem::exec`].
    async fn read_iccid(&mut self) -> Result<Option<String>, ModemError> {
        // Sources: ModemManager (src/mm-base-sim.c: +CRSM EF_ICCID read and its
        // parse_iccid; plugins: ublox +CCID, huawei ^ICCID, sierra !ICCID), the
        // Quectel (+QCCID), Telit (#CCID), Cinterion (^SCID) and SIMCom (+ICCID,
        // SIM7xxx/A76xx +CICCID answered with +ICCID:, +CICCID: or +CCID:) AT manuals as
        // quoted by public drivers.
        let asks = [
            Command::new("AT+CCID")
                .expect("+CCID:")
                .expect("+ICCID:")
                .expect_raw(),
            Command::crsm_iccid(),
            Command::new("AT^ICCID?").expect("^ICCID:"),
            Command::new("AT+QCCID").expect("+QCCID:").expect_raw(),
            Command::new("AT#CCID").expect("#CCID:").expect_raw(),
            Command::new("AT^SCID").expect("^SCID:").expect_raw(),
            Command::new("AT!ICCID?").expect("!ICCID:"),
            Command::new("AT+ICCID").expect("+ICCID:").expect_raw(),
            Command::new("AT+CICCID")
                .expect("+ICCID:")
                .expect("+CCID:")
                .expect_raw(),
        ];
        for cmd in asks {
            let reply = self.exec(self.short(cmd.lenient())).await?;
            if reply.result.is_ok() {
                if let Some(iccid) = reply.lines.iter().find_map(|l| parse_iccid_line(l)) {
                    return Ok(Some(iccid));
                }
                continue;
            }
            if let FinalResult::CmeError(e) = &reply.result
                && matches!(
                    e.code(),
                    Some(CmeError::SIM_NOT_INSERTED | CmeError::SIM_FAILURE)
                )
            {
                // No SIM to read: no other command will find one.
                break;
            }
        }
        Ok(None)
    }

    /// `AT+CPIN?`, waiting out a busy or initialising SIM (`+CPIN: NOT READY`; busy
    /// refusals are waited out by [`Modem::exec`]). When several `+CPIN:` lines came
    /// (a URC next to the answer), the newest wins, and if they disagree the SIM is
    /// changing state: it is asked again.
    async fn sim_state(&mut self) -> Result<SimState, ModemError> {
        let mut delay = BUSY_FIRST_DELAY;
        loop {
            let reply = self.exec(self.short(Command::cpin_query())).await?;
            let (st, changing) = match reply.result {
                r if r.is_ok() => {
                    let codes: Vec<SimState> = reply
                        .lines
                        .iter()
                        .filter_map(|l| info_params(l, "+CPIN:"))
                        .filter_map(|p| p.first().map(|c| SimState::from_cpin(c)))
                        .collect();
                    let st = codes
                        .last()
                        .cloned()
                        .unwrap_or(SimState::Other("no +CPIN line".into()));
                    let changing = codes.iter().any(|c| *c != st);
                    (st, changing)
                }
                FinalResult::CmeError(e) => (
                    e.code()
                        .and_then(SimState::from_cme)
                        .unwrap_or_else(|| SimState::Other(e.to_string())),
                    false,
                ),
                r if r.is_busy() => (SimState::Busy, false),
                other => (SimState::Other(format!("{other:?}")), false),
            };
            if (st == SimState::Busy || changing) && self.busy_backoff(&mut delay).await {
                continue;
            }
            return Ok(st);
        }
    }

    /// Enters the configured PIN, at most once per SIM and process lifetime if rejected.
    /// `Ok(true)` when the SIM is ready, `Ok(false)` when it stayed busy.
    async fn unlock_sim(&mut self) -> Result<bool, ModemError> {
        let st = self.sim_state().await?;
        self.report.sim = Some(st.clone());
        match st {
            SimState::Ready => return Ok(true),
            SimState::Busy => return Ok(false),
            SimState::Pin => {}
            other => {
                return Err(sim_error(format!("SIM {}: needs a human", other.as_str())));
            }
        }
        // The rejected-PIN record is keyed by ICCID. A modem that gives none still gets
        // the `*` PIN, recorded against the modem itself (its IMEI, else its port).
        let (key, label) = match &self.report.iccid {
            Some(iccid) => (iccid.clone(), format!("ICCID {iccid}")),
            None => {
                let modem = self.report.imei.clone().map_or_else(
                    || format!("port:{}", self.opener.describe()),
                    |i| format!("imei:{i}"),
                );
                (
                    modem.clone(),
                    format!("the SIM in {modem} (ICCID unreadable)"),
                )
            }
        };
        let Some(pin) = self
            .report
            .iccid
            .as_ref()
            .and_then(|i| self.cfg.pins.get(i))
            .or_else(|| self.cfg.pins.get("*"))
            .cloned()
        else {
            return Err(sim_error(format!(
                "SIM PIN required; no PIN configured for {label}"
            )));
        };
        if self.cfg.rejected_pins.blocks(&key, &pin) {
            return Err(sim_error(format!(
                "SIM PIN required; the configured PIN for {label} was rejected before and \
                 is not retried automatically (a PUK lock is one wrong try away)"
            )));
        }
        if !(4..=8).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(sim_error(format!(
                "the PIN configured for {label} is not 4-8 digits; not sent"
            )));
        }
        let cmd = self.short(Command::new(format!("AT+CPIN=\"{pin}\"")));
        match self.exec(cmd).await {
            Ok(r) if r.result.is_ok() => {}
            // Still busy after the wait: the PIN was not checked, this try did not count.
            Ok(r) if r.result.is_busy() => return Ok(false),
            Ok(r) => {
                self.cfg.rejected_pins.insert(&key, &pin);
                return Err(sim_error(format!(
                    "the configured PIN for {label} was rejected ({}); it will not be \
                     tried again automatically",
                    describe_result(&r.result)
                )));
            }
            Err(e) => {
                // No answer: the SIM may have counted the try. Do not risk another.
                self.cfg.rejected_pins.insert(&key, &pin);
                return Err(match e {
                    ModemError::Timeout {
                        payload_sent,
                        resynced,
                        ..
                    } => ModemError::Timeout {
                        command: "AT+CPIN=<pin>".into(),
                        payload_sent,
                        resynced,
                    },
                    e => e,
                });
            }
        }
        // After the PIN the SIM initialises again (`+CPIN: NOT READY`, SIM busy): a new
        // wait starts.
        self.busy_until = Some(Instant::now() + self.cfg.sim_wait);
        let st = self.sim_state().await?;
        self.report.sim = Some(st.clone());
        match st {
            SimState::Ready => Ok(true),
            SimState::Busy => Ok(false),
            st => Err(sim_error(format!(
                "SIM {} after the PIN was accepted",
                st.as_str()
            ))),
        }
    }

    /// The SMSC to give the modem when it has none: configured for this SIM, for any
    /// SIM, the single legacy setting, else the last one the modem reported.
    fn smsc_fallback(&self) -> Option<String> {
        let valid = |s: &&String| {
            !s.contains('"') && Address::parse(s).is_ok_and(|a| a.ton != TypeOfNumber::Alphanumeric)
        };
        let by_sim = [self.report.iccid.as_deref(), self.report.imsi.as_deref()]
            .into_iter()
            .flatten()
            .find_map(|k| self.cfg.smsc_overrides.get(k));
        by_sim
            .or_else(|| self.cfg.smsc_overrides.get("*"))
            .or(self.cfg.smsc.as_ref())
            .filter(valid)
            .cloned()
            .or_else(|| self.smsc_known.clone().filter(|s| valid(&s)))
    }

    /// Reads the SMSC (`AT+CSCA?`); when the modem has none (or forgot it), sets the
    /// fallback, or, if the modem refuses that, has each PDU carry it.
    async fn check_smsc(&mut self) -> Result<(), ModemError> {
        let read = self.query(self.short(Command::csca_query())).await?;
        let current = read
            .as_ref()
            .and_then(|lines| lines.iter().find_map(|l| parse_csca(l)));
        self.smsc = match (read, current) {
            (_, Some(s)) => {
                self.smsc_known = Some(s.clone());
                Smsc::Set(s)
            }
            (read, None) => match self.smsc_fallback() {
                Some(f) => {
                    let toa = if f.starts_with('+') { 145 } else { 129 };
                    let set = Command::new(format!("AT+CSCA=\"{f}\",{toa}"));
                    if read.is_some() && self.query(self.short(set)).await?.is_some() {
                        info!(modem = %self.name(), smsc = %f, "the modem had no SMSC: set");
                        self.smsc_known = Some(f.clone());
                        Smsc::Set(f)
                    } else {
                        info!(modem = %self.name(), smsc = %f, "the modem keeps no SMSC: each PDU carries it");
                        Smsc::InPdu(f)
                    }
                }
                None if read.is_some() => Smsc::Missing,
                None => Smsc::Unreadable,
            },
        };
        self.report.smsc = match &self.smsc {
            Smsc::Set(s) => Some(s.clone()),
            _ => None,
        };
        Ok(())
    }

    /// Before a send: the SMSC is known, read again if it may have been lost. With none
    /// at all, the send fails here with the modem's own words for it (`+CMS ERROR: 330`,
    /// SMSC address unknown), without a doomed `AT+CMGS`.
    async fn ensure_smsc(&mut self) -> Result<(), ModemError> {
        if self.smsc == Smsc::Unknown {
            self.check_smsc().await?;
            self.publish();
        }
        if self.smsc == Smsc::Missing {
            warn!(modem = %self.name(), "cannot send: the SIM has no SMSC and none is configured (modems.smsc)");
            return Err(ModemError::Cms {
                command: "AT+CMGS".into(),
                error: CmsError::from_code(CmsError::SMSC_ADDRESS_UNKNOWN),
            });
        }
        Ok(())
    }

    /// A PDU as it goes out: with the SMSC in its SMSC field when the modem keeps none.
    fn outgoing_pdu(&self, hex: &str) -> String {
        let Smsc::InPdu(smsc) = &self.smsc else {
            return hex.to_owned();
        };
        let (Some(len), Ok(addr)) = (
            hex.get(..2).and_then(|h| usize::from_str_radix(h, 16).ok()),
            Address::parse(smsc),
        ) else {
            return hex.to_owned();
        };
        let Some(tpdu) = hex.get(2 + 2 * len..) else {
            return hex.to_owned();
        };
        let mut field = Vec::new();
        addr.encode_smsc(&mut field);
        format!("{}{tpdu}", crate::pdu::hex::encode(&field))
    }

    /// Selects the message storage: each configured memory with three, two, then one
    /// `+CPMS` parameters (old Wavecom firmware refuses the three-memory form).
    async fn choose_storage(&mut self) -> Result<(), ModemError> {
        self.storage_ok = false;
        for mem in self.cfg.storages.clone() {
            if !is_storage_name(&mem) {
                warn!(modem = %self.name(), storage = ?mem, "not a storage name (two capitals, e.g. SM): skipped");
                continue;
            }
            for n in (1..=3).rev() {
                let params = vec![format!("\"{mem}\""); n].join(",");
                let cmd = Command::new(format!("AT+CPMS={params}")).expect("+CPMS:");
                if let Some(lines) = self.query(self.storage_cmd(cmd)).await? {
                    self.mem = mem;
                    self.storage_ok = true;
                    self.report.storage = lines.iter().find_map(|l| Storage::parse(l));
                    return Ok(());
                }
            }
        }
        self.report.storage = None;
        Ok(())
    }

    /// Negotiates `+CNMI`: the configured settings in order; without storage, the same
    /// settings asking for direct delivery come first (`+CMT`, status reports as
    /// `+CDS`), since stored messages could not be read.
    async fn negotiate_cnmi(&mut self) -> Result<(), ModemError> {
        self.report.cnmi = None;
        let mut candidates: Vec<Cnmi> = Vec::new();
        if !self.storage_ok {
            for c in &self.cfg.cnmi {
                let direct = Cnmi {
                    mt: 2,
                    ds: if c.ds == 2 { 1 } else { c.ds },
                    ..*c
                };
                if !candidates.contains(&direct) {
                    candidates.push(direct);
                }
            }
        }
        for c in &self.cfg.cnmi {
            if !candidates.contains(c) {
                candidates.push(*c);
            }
        }
        for c in candidates {
            let cmd = self.short(Command::new(format!("AT+CNMI={}", c.to_param())));
            if self.query(cmd).await?.is_some() {
                self.report.cnmi = Some(c);
                return Ok(());
            }
        }
        // No indications at all: the health poll sweeps instead (if there is storage).
        self.needs_sweep = self.storage_ok;
        Ok(())
    }

    // ----- health -----

    /// Polls signal, registration, operator and storage; updates the state.
    pub async fn refresh(&mut self) -> Result<(), ModemError> {
        if let Some(lines) = self.query(self.short(Command::csq())).await? {
            self.report.signal = lines.iter().find_map(|l| Signal::parse(l));
        }
        let mut reg = self
            .query(self.short(Command::creg_query()))
            .await?
            .and_then(|l| {
                l.iter()
                    .find_map(|l| Registration::parse_query(l, "+CREG:"))
            });
        if !reg.is_some_and(Registration::is_registered) {
            // LTE-only firmware registers in EPS only and may say "searching" for CS.
            let eps = self
                .query(self.short(Command::new("AT+CEREG?").expect("+CEREG:")))
                .await?
                .and_then(|l| {
                    l.iter()
                        .find_map(|l| Registration::parse_query(l, "+CEREG:"))
                });
            if eps.is_some_and(Registration::is_registered) || reg.is_none() {
                reg = eps.or(reg);
            }
        }
        self.report.registration = reg;
        if let Some(lines) = self.query(self.short(Command::cops_query())).await? {
            self.report.operator = lines
                .iter()
                .find_map(|l| info_params(l, "+COPS:"))
                .and_then(|p| p.get(2).cloned())
                .filter(|s| !s.is_empty());
        }
        if self.storage_ok {
            let cpms = self.storage_cmd(Command::new("AT+CPMS?").expect("+CPMS:").lenient());
            if let Some(lines) = self.query(cpms).await? {
                self.report.storage = lines.iter().find_map(|l| Storage::parse(l));
            }
        }
        self.publish();
        self.update_state();
        Ok(())
    }

    /// Ready or degraded, from what the last poll saw; other states are left alone.
    pub fn update_state(&self) {
        let cur = self.state();
        if !matches!(
            cur,
            ModemState::Starting
                | ModemState::Ready
                | ModemState::Degraded(_)
                | ModemState::Recovering(_)
                | ModemState::Offline(_)
        ) {
            return;
        }
        let mut reasons = Vec::new();
        match self.report.registration {
            Some(r) if r.is_registered() => {}
            Some(r) => reasons.push(format!(
                "not registered ({})",
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )),
            None => reasons.push("registration unknown".into()),
        }
        if self.report.storage.is_some_and(|s| s.is_full()) {
            reasons.push("message storage full".into());
        }
        if self.smsc == Smsc::Missing {
            reasons.push("no SMSC".into());
        }
        match self.report.capabilities {
            Some(c) if !c.receive => {
                reasons.push("cannot receive (no +CNMI and no message storage)".into());
            }
            Some(_) if self.report.cnmi.is_none() => {
                reasons.push("no new-message indications (+CNMI refused): polling".into());
            }
            _ => {}
        }
        self.set_state(if reasons.is_empty() {
            ModemState::Ready
        } else {
            ModemState::Degraded(reasons.join("; "))
        });
    }

    /// The periodic work: health poll, and a sweep when messages wait for a retry; a
    /// bring-up when the modem restarted or its SIM was still busy.
    pub async fn periodic(&mut self) -> Result<(), ModemError> {
        if self.needs_bring_up || self.sim_busy {
            return self.bring_up().await;
        }
        self.refresh().await?;
        if self.storage_ok && (self.needs_sweep || self.report.cnmi.is_none()) {
            self.sweep().await?;
        }
        Ok(())
    }

    // ----- send -----

    /// Sends a text, splitting it as needed (`AT+CMMS=2` keeps the link up between parts),
    /// and returns the MR of each part.
    pub async fn send(&mut self, req: &SendRequest) -> Result<SendReport, ModemError> {
        let mut opts = SubmitOptions::new(Address::parse(&req.to)?);
        opts.status_report = req.status_report;
        opts.validity = req.validity;
        self.concat_ref = self.concat_ref.wrapping_add(1) & 0xFF;
        opts.concat_ref = self.concat_ref;
        let (plan, parts) = encode_submit(&req.text, &opts)?;
        let encoding = match plan.encoding {
            TextEncoding::Gsm7(_) => "gsm7",
            TextEncoding::Ucs2 => "ucs2",
        };
        self.ready_to_send().await?;
        let total = parts.len();
        if total > 1 {
            // Best-effort: without it the modem may drop the link between parts, which is
            // slower, not wrong.
            self.query(self.short(Command::new("AT+CMMS=2"))).await?;
        }
        let mut mrs = Vec::with_capacity(total);
        for part in &parts {
            match self.send_part(part.tpdu_len, &part.hex()).await {
                Ok(mr) => mrs.push(mr),
                Err(e) if mrs.is_empty() => return Err(e),
                Err(e) => {
                    return Err(ModemError::PartialSend {
                        mrs,
                        total,
                        source: Box::new(e),
                    });
                }
            }
        }
        Ok(SendReport {
            encoding: encoding.into(),
            mrs,
        })
    }

    /// Sends PDUs encoded by the caller (the daemon encodes once, so a resumed message
    /// reuses its concatenation reference and skips parts already accepted), reporting
    /// each part's MR through `progress` the moment the SMSC accepts it.
    pub async fn send_pdus(
        &mut self,
        parts: &[PduPart],
        progress: &tokio::sync::mpsc::UnboundedSender<(u32, u8)>,
    ) -> Result<SendReport, ModemError> {
        self.ready_to_send().await?;
        let total = parts.len();
        if total > 1 {
            self.query(self.short(Command::new("AT+CMMS=2"))).await?;
        }
        let mut mrs = Vec::with_capacity(total);
        for part in parts {
            match self.send_part(part.tpdu_len, &part.hex).await {
                Ok(mr) => {
                    let _ = progress.send((part.seq, mr));
                    mrs.push(mr);
                }
                Err(e) if mrs.is_empty() => return Err(e),
                Err(e) => {
                    return Err(ModemError::PartialSend {
                        mrs,
                        total,
                        source: Box::new(e),
                    });
                }
            }
        }
        Ok(SendReport {
            encoding: String::new(),
            mrs,
        })
    }

    /// What must hold before a message goes out: a SIM that finished initialising and
    /// a known SMSC.
    async fn ready_to_send(&mut self) -> Result<(), ModemError> {
        if self.sim_busy {
            return Err(ModemError::Sim(
                "SIM busy (still initialising): not sending yet".into(),
            ));
        }
        self.ensure_smsc().await
    }

    /// One `AT+CMGS`. Refused with "SMSC address unknown" (the modem forgot it), the
    /// SMSC is read and set again and the part goes once more: nothing was sent.
    async fn send_part(&mut self, tpdu_len: usize, hex: &str) -> Result<u8, ModemError> {
        let mut again = true;
        let reply = loop {
            let cmd =
                Command::cmgs(tpdu_len, self.outgoing_pdu(hex)).timeout(self.cfg.send_timeout);
            let reply = self.exec(cmd).await?;
            let smsc_lost = matches!(&reply.result, FinalResult::CmsError(e)
                if e.code() == Some(CmsError::SMSC_ADDRESS_UNKNOWN));
            if smsc_lost && std::mem::take(&mut again) {
                warn!(modem = %self.name(), "the modem lost its SMSC; setting it again");
                self.smsc = Smsc::Unknown;
                self.ensure_smsc().await?;
                continue;
            }
            break reply;
        };
        if !reply.result.is_ok() {
            return Err(ModemError::from_result("AT+CMGS", reply.result));
        }
        let mr = reply
            .lines
            .iter()
            .find_map(|l| info_params(l, "+CMGS:"))
            .and_then(|p| p.first().and_then(|m| m.parse::<u16>().ok()));
        match mr {
            // Some firmware counts MRs past 255; the TPDU field is one octet.
            Some(mr) => Ok((mr & 0xFF) as u8),
            None => Err(ModemError::NoMessageReference),
        }
    }

    // ----- USSD -----

    /// Sends a USSD request and waits for the network's `+CUSD` answer.
    pub async fn ussd(&mut self, code: &str) -> Result<UssdReply, ModemError> {
        if code.is_empty()
            || !code
                .chars()
                .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
        {
            return Err(ModemError::Protocol {
                command: "AT+CUSD".into(),
                detail: "a USSD code holds digits, * and # only".into(),
            });
        }
        let cmd = Command::cusd(code).timeout(self.cfg.command_timeout);
        self.ok(cmd).await?;
        let deadline = Instant::now() + self.cfg.ussd_timeout;
        let conn = self.conn()?;
        let found = conn
            .wait_urc(deadline, |u| matches!(u, Urc::Cusd { .. }))
            .await?;
        let mut reply = None;
        let mut rest = Vec::new();
        for u in conn.take_urcs() {
            match u {
                Urc::Cusd { m, text, dcs } if reply.is_none() => {
                    reply = Some(UssdReply {
                        status: m,
                        text,
                        dcs,
                    });
                }
                other => rest.push(other),
            }
        }
        conn.requeue_urcs(rest);
        match reply {
            Some(r) if found => Ok(r),
            _ => Err(ModemError::Protocol {
                command: "AT+CUSD".into(),
                detail: format!("no +CUSD answer within {:?}", self.cfg.ussd_timeout),
            }),
        }
    }

    // ----- receive -----

    /// Waits for input until `deadline` (the caller's next timer).
    pub async fn wait_input(&mut self, deadline: Instant) -> Result<(), ModemError> {
        match self.conn.as_mut() {
            Some(c) => {
                let r = c.read_some(Some(deadline)).await;
                if matches!(r, Err(ModemError::PortGone)) {
                    self.conn = None;
                }
                r.map(|_| ())
            }
            None => {
                tokio::time::sleep_until(deadline.into()).await;
                Err(ModemError::PortGone)
            }
        }
    }

    /// Acts on the URCs received so far: new messages, status reports, registration,
    /// reboots.
    pub async fn handle_urcs(&mut self) -> Result<(), ModemError> {
        if self.needs_bring_up {
            self.bring_up().await?;
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let mut urcs = conn.take_urcs().into_iter();
        while let Some(u) = urcs.next() {
            if let Err(e) = self.handle_urc(u).await {
                if let Some(c) = self.conn.as_mut() {
                    c.requeue_urcs(urcs.collect());
                }
                return Err(e);
            }
        }
        if let Some(caller) = self.ringing.take() {
            self.reject_call(caller).await?;
        }
        Ok(())
    }

    /// Hangs up an incoming call (`ATH`, or `AT+CHUP` where `ATH` is refused): a gateway
    /// answers no calls, and a ringing modem may hold back its SMS. Runs between
    /// commands only, never inside an `AT+CMGS` exchange. The rings of the same call
    /// that arrived meanwhile are dropped.
    async fn reject_call(&mut self, caller: Option<String>) -> Result<(), ModemError> {
        let mut done = self.query(self.short(Command::new("ATH"))).await?.is_some();
        if !done {
            done = self
                .query(self.short(Command::new("AT+CHUP")))
                .await?
                .is_some();
        }
        let who = caller.as_deref().unwrap_or("withheld");
        if done {
            self.calls_rejected.fetch_add(1, Ordering::Relaxed);
            info!(modem = %self.name(), caller = %who, "incoming call rejected");
        } else {
            warn!(modem = %self.name(), caller = %who, "incoming call: ATH and AT+CHUP refused");
        }
        if let Some(c) = self.conn.as_mut() {
            let rest: Vec<Urc> = c.take_urcs().into_iter().filter(|u| !u.is_call()).collect();
            c.requeue_urcs(rest);
        }
        Ok(())
    }

    async fn handle_urc(&mut self, urc: Urc) -> Result<(), ModemError> {
        if let Urc::Unreadable { header } = &urc {
            warn!(modem = %self.name(), header = %header, "a delivery arrived unreadable (garbled or cut short)");
            if self.csms1 && urc.needs_ack() {
                // Refused, so the network delivers it again: never acknowledge what was
                // not read.
                self.query(self.short(Command::new("AT+CNMA=2"))).await?;
            }
            return Ok(());
        }
        match urc {
            Urc::Cmti { mem, index } | Urc::Cdsi { mem, index } => {
                self.read_stored(&mem, index).await?;
            }
            Urc::Cmt { pdu, .. } | Urc::Cds { pdu, .. } => self.take_direct(pdu).await?,
            Urc::Registration { kind, stat, .. } => {
                let r = Registration::from_stat(stat);
                // A CS "searching" on an LTE-registered modem is no news.
                if kind == crate::at::RegistrationKind::Cs || r.is_registered() {
                    self.report.registration = Some(r);
                    self.publish();
                    self.update_state();
                }
            }
            Urc::Rssi(rssi) => {
                self.report.signal = Some(Signal::from_csq(rssi, 99));
                self.publish();
            }
            // The modem restarted on its own: every setting is gone.
            Urc::Rdy | Urc::SysStart => self.needs_bring_up = true,
            Urc::Cpin(code) if SimState::from_cpin(&code) != SimState::Ready => {
                self.needs_bring_up = true;
            }
            // The radio was switched (by a reset, or another program): some firmware
            // forgets the SMSC with it.
            Urc::Cfun(_) => self.smsc = Smsc::Unknown,
            Urc::Clip { number, .. } => {
                self.ringing = Some(Some(number).filter(|n| !n.is_empty()));
            }
            u if u.is_call() => {
                self.ringing.get_or_insert(None);
            }
            _ => {}
        }
        Ok(())
    }

    fn inbound(&self, pdu: String, origin: Origin) -> Inbound {
        Inbound {
            modem: self.name(),
            iccid: self.report.iccid.clone(),
            decoded: decode_hex(&pdu, true).map_err(|e| e.to_string()),
            pdu,
            origin,
            received: SystemTime::now(),
        }
    }

    /// Hands a message to the sink; `true` only when it committed in time. (Takes no
    /// `&self` across the await: the link is `Send` but not `Sync`.)
    fn commit(&self, msg: Inbound) -> impl std::future::Future<Output = bool> + Send + 'static {
        let sink = self.sink.clone();
        let limit = self.cfg.sink_timeout;
        async move {
            let Some(sink) = sink else {
                return false;
            };
            matches!(
                tokio::time::timeout(limit, sink.commit(msg)).await,
                Ok(Ok(()))
            )
        }
    }

    /// `+CMGR`, hand to the sink, and only then `+CMGD`.
    async fn read_stored(&mut self, mem: &str, index: u32) -> Result<(), ModemError> {
        if self.sink.is_none() {
            // Nobody to take it: it stays on the modem for the daemon.
            return Ok(());
        }
        if !is_storage_name(mem) {
            // The name would go into `AT+CPMS="<mem>"`: only the two-capital names of
            // 27.005. The message, if real, is found by the next sweep.
            warn!(modem = %self.name(), storage = ?mem, index, "ignoring a new-message indication with an invalid storage name");
            return Ok(());
        }
        let other_mem = mem != self.mem;
        if other_mem {
            let cmd = Command::new(format!("AT+CPMS=\"{mem}\"")).expect("+CPMS:");
            if self.query(self.storage_cmd(cmd)).await?.is_none() {
                return Ok(());
            }
        }
        let r = self.read_commit_delete(mem, index).await;
        if other_mem {
            let back = Command::new(format!("AT+CPMS=\"{}\"", self.mem)).expect("+CPMS:");
            self.query(self.storage_cmd(back)).await?;
        }
        r
    }

    async fn read_commit_delete(&mut self, mem: &str, index: u32) -> Result<(), ModemError> {
        // A refused read: already deleted (the sweep got it), or an empty slot.
        let Some(lines) = self.query(self.storage_cmd(Command::cmgr(index))).await? else {
            return Ok(());
        };
        let Some((_, pdu)) = records(&lines)
            .into_iter()
            .next()
            .filter(|(_, p)| !p.is_empty())
        else {
            return Ok(());
        };
        let msg = self.inbound(
            pdu,
            Origin::Stored {
                mem: mem.to_owned(),
                index,
            },
        );
        if self.commit(msg).await {
            self.query(self.storage_cmd(Command::cmgd(index))).await?;
        } else {
            self.needs_sweep = true;
        }
        Ok(())
    }

    /// A direct `+CMT`/`+CDS`: hand it to the sink, then acknowledge (`+CNMA`), or
    /// refuse it (`+CNMA=2`) so the network delivers it again. Only a PDU that decoded
    /// and committed is acknowledged. When the modem wants no acknowledgement (no
    /// `AT+CSMS=1`: it acknowledged on its own), an undecodable PDU is still handed over,
    /// raw, since the network will not deliver it again.
    async fn take_direct(&mut self, pdu: String) -> Result<(), ModemError> {
        let msg = self.inbound(pdu, Origin::Direct);
        let refused = match &msg.decoded {
            Err(why) if self.csms1 => Some(why.clone()),
            _ => None,
        };
        let ok = match refused {
            Some(why) => {
                warn!(modem = %self.name(), octets = msg.pdu.len() / 2, "undecodable direct delivery refused (+CNMA=2) for redelivery: {why}");
                false
            }
            None => self.commit(msg).await,
        };
        if self.csms1 {
            let cmd = if ok { "AT+CNMA" } else { "AT+CNMA=2" };
            self.query(self.short(Command::new(cmd))).await?;
        }
        Ok(())
    }

    /// Reads every stored message and hands each to the sink; deletes the committed ones.
    /// Returns how many were committed.
    pub async fn sweep(&mut self) -> Result<usize, ModemError> {
        if self.sink.is_none() {
            return Ok(0);
        }
        self.needs_sweep = false;
        let Some(lines) = self.query(self.storage_cmd(Command::cmgl(4))).await? else {
            self.needs_sweep = true;
            return Ok(0);
        };
        let mut committed = 0;
        for (header, pdu) in records(&lines) {
            let Some(p) = info_params(&header, "+CMGL:") else {
                continue;
            };
            let (Some(index), stat) = (
                p.first().and_then(|s| s.parse::<u32>().ok()),
                p.get(1).and_then(|s| s.parse::<u8>().ok()),
            ) else {
                continue;
            };
            // 2/3: our own stored outgoing messages, not inbound.
            if matches!(stat, Some(2 | 3)) || pdu.is_empty() {
                continue;
            }
            let mem = self.mem.clone();
            let msg = self.inbound(pdu, Origin::Stored { mem, index });
            if self.commit(msg).await {
                committed += 1;
                self.query(self.storage_cmd(Command::cmgd(index))).await?;
            } else {
                // The sink is failing: stop here, the rest waits on the SIM.
                self.needs_sweep = true;
                break;
            }
        }
        Ok(committed)
    }

    // ----- recovery -----

    /// The recovery ladder after a link failure: (1) ESC, drain, `AT`; (2) `AT+CFUN=0`
    /// then `=1`; (3) `AT+CFUN=1,1`; (4) close and reopen the port with backoff. Each rung
    /// that gets the modem answering is followed by a full bring-up. `Err` means every
    /// rung failed (the caller quarantines) or the SIM is locked.
    pub async fn recover(&mut self, cause: &ModemError) -> Result<(), ModemError> {
        self.set_state(ModemState::Recovering(cause.to_string()));
        if self.conn.is_some()
            && !matches!(
                cause,
                ModemError::PortGone | ModemError::PortGoneAfterPayload { .. } | ModemError::Io(_)
            )
        {
            // Rung 1. After a timeout the session already did ESC/drain/AT.
            let answered = match cause {
                ModemError::Timeout { resynced, .. } => *resynced,
                _ => self.conn()?.resync().await.unwrap_or(false),
            };
            if answered {
                match self.bring_up().await {
                    Ok(()) => return Ok(()),
                    Err(e @ ModemError::Sim(_)) => return Err(e),
                    Err(_) => {}
                }
            }
            // Rung 2.
            if self.conn.is_some() {
                self.set_state(ModemState::Recovering(format!("{cause}; radio off/on")));
                let off = self
                    .ok(Command::new("AT+CFUN=0").timeout(self.cfg.cfun_timeout))
                    .await;
                if off.is_ok()
                    && self
                        .ok(Command::new("AT+CFUN=1").timeout(self.cfg.cfun_timeout))
                        .await
                        .is_ok()
                {
                    match self.bring_up().await {
                        Ok(()) => return Ok(()),
                        Err(e @ ModemError::Sim(_)) => return Err(e),
                        Err(_) => {}
                    }
                }
            }
            // Rung 3.
            if self.conn.is_some() {
                self.set_state(ModemState::Recovering(format!("{cause}; modem reset")));
                let reset = Command::new("AT+CFUN=1,1").timeout(self.cfg.cfun_timeout);
                if self.exec(reset).await.is_ok() {
                    self.conn = None;
                    tokio::time::sleep(self.cfg.reset_wait).await;
                }
            }
        }
        // Rung 4.
        self.conn = None;
        self.reopen().await
    }

    /// Opens the port and brings the modem up, with backoff between attempts.
    pub async fn reopen(&mut self) -> Result<(), ModemError> {
        let (mut delay, max) = self.cfg.reopen_backoff;
        let mut last = ModemError::PortGone;
        for attempt in 1..=self.cfg.reopen_attempts.max(1) {
            match self.open().await {
                Ok(()) => match self.bring_up().await {
                    Ok(()) => return Ok(()),
                    Err(e @ ModemError::Sim(_)) => return Err(e),
                    Err(e) => {
                        self.conn = None;
                        last = e;
                    }
                },
                Err(e) => last = e,
            }
            if attempt == self.cfg.reopen_attempts.max(1) {
                break;
            }
            self.set_state(ModemState::Offline(format!("{last}; retry in {delay:?}")));
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(max);
        }
        Err(last)
    }
}

fn describe_result(r: &FinalResult) -> String {
    match r {
        FinalResult::CmeError(e) => e.to_string(),
        FinalResult::CmsError(e) => e.to_string(),
        other => format!("{other:?}"),
    }
}
