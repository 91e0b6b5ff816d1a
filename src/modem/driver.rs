//! The driver proper: bring-up, send, receive, health and the recovery ladder, as async
//! methods on [`Modem`], which owns one link. [`super::ModemHandle`] runs a `Modem` in its
//! own task; the CLI uses a `Modem` directly for one-shot commands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::watch;
use tracing::warn;

use super::conn::{AtConn, Reply};
use super::error::ModemError;
use super::info::{
    Cnmi, Registration, Report, Signal, SimState, Storage, first_value, is_storage_name,
    looks_like_iccid, unswap_iccid,
};
use super::link::Opener;
use super::sink::{Inbound, InboundSink, Origin};
use crate::at::{CmeError, Command, FinalResult, SessionConfig, Urc, info_params, records};
use crate::pdu::{Address, SubmitOptions, TextEncoding, Validity, decode_hex, encode_submit};

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
    /// How long a busy or initialising SIM is waited for.
    pub sim_wait: Duration,
    /// PINs by ICCID; the key `*` applies to any SIM without its own entry.
    pub pins: HashMap<String, String>,
    /// Rejected PINs, shared across modems.
    pub rejected_pins: RejectedPins,
    /// SMSC to set when the SIM has none.
    pub smsc: Option<String>,
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
            sim_wait: Duration::from_secs(20),
            pins: HashMap::new(),
            rejected_pins: RejectedPins::default(),
            smsc: None,
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

/// A modem on one port.
pub struct Modem {
    cfg: ModemConfig,
    opener: Arc<dyn Opener>,
    sink: Option<Arc<dyn InboundSink>>,
    conn: Option<AtConn>,
    report: Report,
    /// The `+CPMS` memory messages are read and deleted in.
    mem: String,
    /// `AT+CSMS=1` accepted: direct deliveries need our `+CNMA`.
    csms1: bool,
    /// Stored messages wait for a retry (a sink failure, or no `+CNMI`).
    needs_sweep: bool,
    /// The modem rebooted behind our back: its settings are gone.
    needs_bring_up: bool,
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
            csms1: false,
            needs_sweep: false,
            needs_bring_up: false,
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

    /// Sends a command, with the configured timeout for its kind unless it has its own.
    pub async fn exec(&mut self, cmd: Command) -> Result<Reply, ModemError> {
        let r = self.conn()?.exec(cmd).await;
        if matches!(
            r,
            Err(ModemError::PortGone | ModemError::PortGoneAfterPayload { .. })
        ) {
            self.conn = None;
        }
        r
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
    /// [`ModemError::Sim`] (state `SimLocked`) when the SIM cannot be unlocked.
    pub async fn bring_up(&mut self) -> Result<(), ModemError> {
        // Cleared first: a bring-up that fails is retried by recovery or reopen, never
        // by spinning on the flag.
        self.needs_bring_up = false;
        self.sync().await?;
        self.query(self.short(Command::new("ATE0"))).await?;
        self.query(self.short(Command::new("AT+CMEE=1"))).await?;
        self.identify().await?;
        if let Err(e) = self.unlock_sim().await {
            if let ModemError::Sim(reason) = &e {
                self.set_state(ModemState::SimLocked(reason.clone()));
            }
            self.publish();
            return Err(e);
        }
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
        self.query(self.short(Command::new("AT+CREG=2"))).await?;
        self.query(self.short(Command::new("AT+CEREG=2"))).await?;
        self.refresh().await?;
        if self.cfg.sweep {
            self.sweep().await?;
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
        let ask = |t: &str, p: &'static str| Command::new(t).expect(p).expect_raw();
        self.report.manufacturer = self
            .query(self.short(Command::cgmi()))
            .await?
            .and_then(|l| first_value(&l, &["+CGMI:"]));
        self.report.model = self
            .query(self.short(Command::cgmm()))
            .await?
            .and_then(|l| first_value(&l, &["+CGMM:"]));
        self.report.revision = self
            .query(self.short(ask("AT+CGMR", "+CGMR:")))
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

    /// The ICCID (keys the PIN configuration): `+CCID` and the vendor spellings, waiting
    /// out a busy SIM.
    async fn read_iccid(&mut self) -> Result<Option<String>, ModemError> {
        const ASKS: [(&str, &str); 4] = [
            ("AT+CCID", "+CCID:"),
            ("AT^ICCID?", "^ICCID:"),
            ("AT+QCCID", "+QCCID:"),
            ("AT+ICCID", "+ICCID:"),
        ];
        let deadline = Instant::now() + self.cfg.sim_wait;
        for (text, prefix) in ASKS {
            loop {
                let cmd = self.short(Command::new(text).expect(prefix).expect_raw());
                let reply = self.exec(cmd).await?;
                match reply.result {
                    FinalResult::Ok => {
                        let v = first_value(&reply.lines, &[prefix]).map(|v| {
                            if prefix == "^ICCID:" {
                                unswap_iccid(&v)
                            } else {
                                v
                            }
                        });
                        if let Some(v) = v.filter(|v| looks_like_iccid(v)) {
                            return Ok(Some(v.trim_end_matches(['F', 'f']).to_owned()));
                        }
                        break;
                    }
                    FinalResult::CmeError(e)
                        if e.code() == Some(CmeError::SIM_BUSY) && Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    _ => break,
                }
            }
        }
        Ok(None)
    }

    /// `AT+CPIN?`, waiting out a busy or initialising SIM.
    async fn sim_state(&mut self) -> Result<SimState, ModemError> {
        let deadline = Instant::now() + self.cfg.sim_wait;
        loop {
            let reply = self.exec(self.short(Command::cpin_query())).await?;
            let st = match reply.result {
                FinalResult::Ok => reply
                    .lines
                    .iter()
                    .find_map(|l| info_params(l, "+CPIN:"))
                    .and_then(|p| p.first().cloned())
                    .map_or(SimState::Other("no +CPIN line".into()), |c| {
                        SimState::from_cpin(&c)
                    }),
                FinalResult::CmeError(e) => e
                    .code()
                    .and_then(SimState::from_cme)
                    .unwrap_or_else(|| SimState::Other(e.to_string())),
                other => SimState::Other(format!("{other:?}")),
            };
            if st == SimState::Busy && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            return Ok(st);
        }
    }

    /// Enters the configured PIN, at most once per SIM and process lifetime if rejected.
    async fn unlock_sim(&mut self) -> Result<(), ModemError> {
        let st = self.sim_state().await?;
        self.report.sim = Some(st.clone());
        match st {
            SimState::Ready => return Ok(()),
            SimState::Pin => {}
            other => {
                return Err(sim_error(format!("SIM {}: needs a human", other.as_str())));
            }
        }
        let Some(iccid) = self.report.iccid.clone() else {
            return Err(sim_error(
                "SIM PIN required but the ICCID is unknown".into(),
            ));
        };
        let Some(pin) = self
            .cfg
            .pins
            .get(&iccid)
            .or_else(|| self.cfg.pins.get("*"))
            .cloned()
        else {
            return Err(sim_error(format!(
                "SIM PIN required; no PIN configured for ICCID {iccid}"
            )));
        };
        if self.cfg.rejected_pins.blocks(&iccid, &pin) {
            return Err(sim_error(format!(
                "SIM PIN required; the configured PIN for ICCID {iccid} was rejected before and \
                 is not retried automatically (a PUK lock is one wrong try away)"
            )));
        }
        if !(4..=8).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(sim_error(format!(
                "the PIN configured for ICCID {iccid} is not 4-8 digits; not sent"
            )));
        }
        let deadline = Instant::now() + self.cfg.sim_wait;
        loop {
            let cmd = self.short(Command::new(format!("AT+CPIN=\"{pin}\"")));
            match self.exec(cmd).await {
                Ok(r) if r.result.is_ok() => break,
                // Busy: the PIN was not checked, so this try did not count.
                Ok(Reply {
                    result: FinalResult::CmeError(e),
                    ..
                }) if e.code() == Some(CmeError::SIM_BUSY) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(r) => {
                    self.cfg.rejected_pins.insert(&iccid, &pin);
                    return Err(sim_error(format!(
                        "the configured PIN for ICCID {iccid} was rejected ({}); it will not be \
                         tried again automatically",
                        describe_result(&r.result)
                    )));
                }
                Err(e) => {
                    // No answer: the SIM may have counted the try. Do not risk another.
                    self.cfg.rejected_pins.insert(&iccid, &pin);
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
        }
        let st = self.sim_state().await?;
        self.report.sim = Some(st.clone());
        if st == SimState::Ready {
            Ok(())
        } else {
            Err(sim_error(format!(
                "SIM {} after the PIN was accepted",
                st.as_str()
            )))
        }
    }

    async fn check_smsc(&mut self) -> Result<(), ModemError> {
        let lines = self.query(self.short(Command::csca_query())).await?;
        let smsc = lines
            .iter()
            .flatten()
            .find_map(|l| info_params(l, "+CSCA:"))
            .and_then(|p| p.first().cloned())
            .filter(|s| !s.is_empty());
        self.report.smsc = match (smsc, self.cfg.smsc.clone()) {
            (Some(s), _) => Some(s),
            (None, Some(cfg)) if Address::parse(&cfg).is_ok() && !cfg.contains('"') => {
                let toa = if cfg.starts_with('+') { 145 } else { 129 };
                self.query(self.short(Command::new(format!("AT+CSCA=\"{cfg}\",{toa}"))))
                    .await?
                    .map(|_| cfg)
            }
            (None, _) => None,
        };
        Ok(())
    }

    async fn choose_storage(&mut self) -> Result<(), ModemError> {
        for mem in self.cfg.storages.clone() {
            if !is_storage_name(&mem) {
                warn!(modem = %self.name(), storage = ?mem, "not a storage name (two capitals, e.g. SM): skipped");
                continue;
            }
            let cmd =
                Command::new(format!("AT+CPMS=\"{mem}\",\"{mem}\",\"{mem}\"")).expect("+CPMS:");
            if let Some(lines) = self.query(self.storage_cmd(cmd)).await? {
                self.mem = mem;
                self.report.storage = lines.iter().find_map(|l| Storage::parse(l));
                return Ok(());
            }
        }
        Ok(())
    }

    async fn negotiate_cnmi(&mut self) -> Result<(), ModemError> {
        self.report.cnmi = None;
        for c in self.cfg.cnmi.clone() {
            let cmd = self.short(Command::new(format!("AT+CNMI={}", c.to_param())));
            if self.query(cmd).await?.is_some() {
                self.report.cnmi = Some(c);
                return Ok(());
            }
        }
        // No indications at all: the health poll sweeps instead.
        self.needs_sweep = true;
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
        let cpms = self.storage_cmd(Command::new("AT+CPMS?").expect("+CPMS:"));
        if let Some(lines) = self.query(cpms).await? {
            self.report.storage = lines.iter().find_map(|l| Storage::parse(l));
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
        if self.report.smsc.is_none() {
            reasons.push("no SMSC".into());
        }
        if self.report.cnmi.is_none() {
            reasons.push("no new-message indications (+CNMI refused): polling".into());
        }
        self.set_state(if reasons.is_empty() {
            ModemState::Ready
        } else {
            ModemState::Degraded(reasons.join("; "))
        });
    }

    /// The periodic work: health poll, and a sweep when messages wait for a retry.
    pub async fn periodic(&mut self) -> Result<(), ModemError> {
        if self.needs_bring_up {
            return self.bring_up().await;
        }
        self.refresh().await?;
        if self.needs_sweep || self.report.cnmi.is_none() {
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
        let total = parts.len();
        if total > 1 {
            // Best-effort: without it the modem may drop the link between parts, which is
            // slower, not wrong.
            self.query(self.short(Command::new("AT+CMMS=2"))).await?;
        }
        let mut mrs = Vec::with_capacity(total);
        for part in &parts {
            let cmd = Command::cmgs(part.tpdu_len, part.hex()).timeout(self.cfg.send_timeout);
            match self.send_part(cmd).await {
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
        let total = parts.len();
        if total > 1 {
            self.query(self.short(Command::new("AT+CMMS=2"))).await?;
        }
        let mut mrs = Vec::with_capacity(total);
        for part in parts {
            let cmd = Command::cmgs(part.tpdu_len, part.hex.clone()).timeout(self.cfg.send_timeout);
            match self.send_part(cmd).await {
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

    async fn send_part(&mut self, cmd: Command) -> Result<u8, ModemError> {
        let reply = self.exec(cmd).await?;
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
            Urc::Rdy => self.needs_bring_up = true,
            Urc::Cpin(code) if SimState::from_cpin(&code) != SimState::Ready => {
                self.needs_bring_up = true;
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
