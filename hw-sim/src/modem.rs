//! One simulated modem as a sans-IO state machine.
//!
//! Owns: the AT command set (27.005/27.007 responses), echo, the `>` prompt and PDU/text
//! input until Ctrl-Z/ESC, SIM and registration state, SIM storage, CNMI routing of
//! inbound messages, `+CNMA` bookkeeping, and the per-modem faults. It never touches a
//! file descriptor or a clock: the bank feeds it bytes and `now`, and takes out bytes
//! and [`Event`]s, so every behaviour is unit-testable byte for byte.

use crate::at::{self, Command, Form, Param};
use crate::fault::{Fault, NetworkSettings, RegState};
use crate::pdu::{self, Address};
use crate::profile::{Identity, Profile};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

const CTRL_Z: u8 = 0x1A;
const ESC: u8 = 0x1B;
const MAX_LINE: usize = 2048;

/// What the modem asks of the bank.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message part left this modem towards the network.
    Submitted(Submission),
    /// The port must disappear and come back after `down_ms` (reboot or unplug).
    Replug { down_ms: u64 },
    /// A direct `+CMT`/`+CDS` was not acknowledged (or was nacked): the network takes
    /// it back and redelivers later.
    NotAcked(Inbound),
}

/// One SMS-SUBMIT the modem accepted.
#[derive(Debug, Clone)]
pub struct Submission {
    pub from: usize,
    pub mr: u8,
    pub tpdu: Vec<u8>,
    pub submit: pdu::Submit,
    /// TP-ST the network should report (from this modem's status_report fault).
    pub status_override: Option<(u8, Option<u64>)>,
}

/// What arrives from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundKind {
    Sms,
    StatusReport,
}

/// One TPDU on its way to this modem, with what text mode needs to show it.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub id: u64,
    pub kind: InboundKind,
    pub tpdu: Vec<u8>,
    /// Originator (SMS) or recipient (status report).
    pub addr: String,
    pub scts_unix: u64,
    /// This part's text (SMS) for text mode.
    pub text: String,
    /// For status reports: (MR, TP-ST).
    pub report: Option<(u8, u8)>,
}

/// Why the network could not hand a message to the modem now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverError {
    /// Radio off, no SIM access or not registered.
    Unreachable,
    /// Storage full.
    MemoryFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Final {
    Error,
    Cme(u16),
    Cms(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sim {
    Ready,
    Pin { attempts: u8 },
    Puk { attempts: u8 },
    Blocked,
}

#[derive(Debug, Clone)]
struct Stored {
    stat: u8,
    inbound: Inbound,
}

#[derive(Debug)]
enum Input {
    Line(Vec<u8>),
    /// After the prompt: what the collected bytes are for.
    Body {
        buf: Vec<u8>,
        target: BodyTarget,
    },
}

#[derive(Debug, Clone)]
enum BodyTarget {
    PduSend { len: usize },
    TextSend { da: String, toda: Option<u8> },
}

#[derive(Debug)]
enum SendResult {
    Ok(Box<Submission>),
    Fail(u16),
    Hang,
}

#[derive(Debug)]
struct PendingSend {
    at: Instant,
    result: SendResult,
}

#[derive(Debug)]
struct PendingAck {
    deadline: Instant,
    inbound: Inbound,
}

/// Counters the control API reports per modem.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Metrics {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub command_lines: u64,
    pub errors: u64,
    pub sms_submitted: u64,
    pub sms_failed: u64,
    pub hangs: u64,
    pub inbound_delivered: u64,
    pub inbound_refused: u64,
    pub status_reports: u64,
    pub not_acked: u64,
    pub replugs: u64,
    pub reboots: u64,
}

/// Construction parameters of one modem.
#[derive(Debug, Clone)]
pub struct ModemConfig {
    pub index: usize,
    pub identity: Identity,
    pub profile: Profile,
    pub seed: u64,
    /// Default CMGS latency range (ms) when no latency fault is set.
    pub latency: (u64, u64),
    pub network: NetworkSettings,
    pub faults: Vec<Fault>,
}

/// The default SMSC on every SIM; a `no_smsc` fault removes it.
pub const DEFAULT_SMSC: &str = "+4915559999999";

/// One simulated modem.
pub struct Modem {
    pub index: usize,
    pub identity: Identity,
    pub profile: Profile,
    network: NetworkSettings,
    default_latency: (u64, u64),
    rng: StdRng,
    faults: BTreeMap<&'static str, Fault>,
    // V.250 / 27.007 settings, reset on boot.
    echo: bool,
    verbose: bool,
    quiet: bool,
    cmee: u8,
    cmgf: u8,
    cscs: String,
    csca: Option<(String, u8)>,
    csms: u8,
    cmms: u8,
    cnmi: [u8; 5],
    csmp: [u8; 4],
    csdh: u8,
    creg_n: u8,
    cereg_n: u8,
    cgreg_n: u8,
    cfun: u8,
    cops_format: u8,
    cpms: [usize; 3],
    // SIM and radio.
    sim: Sim,
    sim_busy_until: Option<Instant>,
    signal: (u8, u8),
    last_stat: u8,
    mr: u8,
    stores: [Vec<Option<Stored>>; 2],
    // Input and timers.
    input: Input,
    deferred_input: Vec<u8>,
    pending_send: Option<PendingSend>,
    pending_acks: VecDeque<PendingAck>,
    ussd_due: Option<(Instant, String)>,
    next_boot_urc: Option<Instant>,
    hung: bool,
    boot_count: u64,
    out: Vec<u8>,
    events: Vec<Event>,
    pub metrics: Metrics,
}

const MEMS: [&str; 2] = ["SM", "ME"];

impl Modem {
    pub fn new(cfg: ModemConfig, now: Instant) -> Modem {
        let mut rng = StdRng::seed_from_u64(
            cfg.seed ^ (cfg.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let signal = (rng.random_range(12..=28), 99);
        let storage = cfg.profile.storage;
        let mut m = Modem {
            index: cfg.index,
            identity: cfg.identity,
            profile: cfg.profile,
            network: cfg.network,
            default_latency: cfg.latency,
            rng,
            faults: BTreeMap::new(),
            echo: true,
            verbose: true,
            quiet: false,
            cmee: 0,
            cmgf: 0,
            cscs: "IRA".into(),
            csca: Some((DEFAULT_SMSC.into(), 145)),
            csms: 0,
            cmms: 0,
            cnmi: [1, 1, 0, 0, 0],
            csmp: [17, 167, 0, 0],
            csdh: 0,
            creg_n: 0,
            cereg_n: 0,
            cgreg_n: 0,
            cfun: 1,
            cops_format: 0,
            cpms: [0, 0, 0],
            sim: Sim::Ready,
            sim_busy_until: None,
            signal,
            last_stat: 0,
            mr: 0,
            stores: [vec![None; storage], vec![None; 100]],
            input: Input::Line(Vec::new()),
            deferred_input: Vec::new(),
            pending_send: None,
            pending_acks: VecDeque::new(),
            ussd_due: None,
            next_boot_urc: None,
            hung: false,
            boot_count: 0,
            out: Vec::new(),
            events: Vec::new(),
            metrics: Metrics::default(),
        };
        for f in cfg.faults {
            m.apply_standing(f, now);
        }
        m.boot(now);
        m
    }

    /// Power-on: settings back to defaults, SIM locked/busy per faults. Storage and the
    /// MR counter live on the SIM and survive.
    pub fn boot(&mut self, now: Instant) {
        for a in self.pending_acks.drain(..) {
            self.events.push(Event::NotAcked(a.inbound));
        }
        self.boot_count += 1;
        self.echo = true;
        self.verbose = true;
        self.quiet = false;
        self.cmee = 0;
        self.cmgf = 0;
        self.cscs = "IRA".into();
        self.csca = if self.faults.contains_key("no_smsc") {
            None
        } else {
            Some((DEFAULT_SMSC.into(), 145))
        };
        self.csms = 0;
        self.cmms = 0;
        self.cnmi = [1, 1, 0, 0, 0];
        self.csmp = [17, 167, 0, 0];
        self.csdh = 0;
        self.creg_n = 0;
        self.cereg_n = 0;
        self.cgreg_n = 0;
        self.cfun = 1;
        self.cops_format = 0;
        self.cpms = [0, 0, 0];
        self.input = Input::Line(Vec::new());
        self.deferred_input.clear();
        self.pending_send = None;
        self.ussd_due = None;
        self.hung = false;
        self.sim = match self.faults.get("sim_lock") {
            Some(Fault::SimPin { .. }) => Sim::Pin { attempts: 3 },
            Some(Fault::SimPuk { .. }) => Sim::Puk { attempts: 10 },
            _ => Sim::Ready,
        };
        self.sim_busy_until = match self.faults.get("sim_busy") {
            Some(Fault::SimBusy { secs }) => Some(now + Duration::from_secs_f64(*secs)),
            _ => None,
        };
        self.next_boot_urc = (self.profile.boot_urc_secs > 0)
            .then(|| now + Duration::from_secs(self.profile.boot_urc_secs));
        self.last_stat = self.reg_stat(now);
    }

    // ----- outputs -----

    /// Bytes for the host, drained.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.metrics.bytes_out += self.out.len() as u64;
        std::mem::take(&mut self.out)
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The next instant at which [`Modem::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut add = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        add(self.pending_send.as_ref().map(|p| p.at));
        add(self.pending_acks.front().map(|a| a.deadline));
        add(self.ussd_due.as_ref().map(|u| u.0));
        add(self.sim_busy_until);
        add(self.next_boot_urc);
        t
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(b) = self.sim_busy_until
            && b <= now
        {
            self.sim_busy_until = None;
            self.check_reg_change(now);
        }
        if self.pending_send.as_ref().is_some_and(|p| p.at <= now)
            && let Some(p) = self.pending_send.take()
        {
            self.finish_send(p.result, now);
        }
        while self.pending_acks.front().is_some_and(|a| a.deadline <= now) {
            if let Some(a) = self.pending_acks.pop_front() {
                self.metrics.not_acked += 1;
                self.events.push(Event::NotAcked(a.inbound));
            }
        }
        if self.ussd_due.as_ref().is_some_and(|u| u.0 <= now)
            && let Some((_, line)) = self.ussd_due.take()
            && !self.hung
        {
            self.urc(&line);
        }
        if let Some(b) = self.next_boot_urc
            && b <= now
        {
            self.next_boot_urc = Some(now + Duration::from_secs(self.profile.boot_urc_secs.max(1)));
            if !self.hung {
                self.urc(&format!("^BOOT:{},0,0,0,72", 20_952_548 + self.index));
            }
        }
    }

    fn raw(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    fn urc(&mut self, line: &str) {
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn final_result(&mut self, f: Result<(), Final>) {
        if self.quiet {
            return;
        }
        if f.is_err() {
            self.metrics.errors += 1;
        }
        let text = match f {
            Ok(()) => "OK".to_string(),
            Err(Final::Error) => "ERROR".to_string(),
            Err(Final::Cme(n)) => match self.cmee {
                0 => "ERROR".to_string(),
                1 => format!("+CME ERROR: {n}"),
                _ => format!("+CME ERROR: {}", cme_text(n)),
            },
            Err(Final::Cms(n)) => format!("+CMS ERROR: {n}"),
        };
        if self.verbose {
            self.urc(&text);
        } else {
            let code = match f {
                Ok(()) => "0",
                _ => "4",
            };
            self.raw(code.as_bytes());
            self.raw(b"\r");
        }
    }

    fn info(&mut self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        self.maybe_garbage();
        let mut s = String::from("\r\n");
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                s.push_str("\r\n");
            }
            s.push_str(l);
        }
        s.push_str("\r\n");
        self.out.extend_from_slice(s.as_bytes());
        self.maybe_urc_noise();
    }

    fn maybe_garbage(&mut self) {
        if let Some(Fault::Garbage { probability, len }) = self.faults.get("garbage").cloned()
            && self.rng.random_bool(probability)
        {
            self.garbage(len);
        }
    }

    fn garbage(&mut self, len: usize) {
        let g: Vec<u8> = (0..len).map(|_| self.rng.random::<u8>()).collect();
        self.out.extend_from_slice(&g);
    }

    fn maybe_urc_noise(&mut self) {
        if let Some(Fault::UrcNoise { probability }) = self.faults.get("urc_noise").cloned()
            && self.rng.random_bool(probability)
        {
            let line = if self.profile.huawei_urcs {
                format!("^RSSI:{}", self.signal_now().0)
            } else {
                format!("+CREG: {}", self.last_stat)
            };
            self.urc(&line);
        }
    }

    // ----- state queries -----

    fn sim_busy(&self, now: Instant) -> bool {
        self.sim_busy_until.is_some_and(|b| b > now)
    }

    fn sim_ready(&self, now: Instant) -> bool {
        self.sim == Sim::Ready && !self.sim_busy(now)
    }

    fn reg_cfg(&self) -> RegState {
        match self.faults.get("registration") {
            Some(Fault::Registration { state }) => *state,
            _ => RegState::Home,
        }
    }

    fn reg_stat(&self, now: Instant) -> u8 {
        if self.cfun != 1 || !self.sim_ready(now) {
            0
        } else {
            self.reg_cfg().stat()
        }
    }

    fn registered(&self, now: Instant) -> bool {
        matches!(self.reg_stat(now), 1 | 5)
    }

    fn signal_now(&self) -> (u8, u8) {
        if self.cfun != 1 {
            (99, 99)
        } else {
            match self.faults.get("signal") {
                Some(Fault::Signal { rssi, ber }) => (*rssi, *ber),
                _ => self.signal,
            }
        }
    }

    /// A short word for `GET /modems`.
    pub fn state(&self, now: Instant) -> &'static str {
        if self.hung {
            return "hung";
        }
        if self.cfun != 1 {
            return "radio_off";
        }
        if self.sim_busy(now) {
            return "sim_busy";
        }
        match self.sim {
            Sim::Pin { .. } => return "sim_pin",
            Sim::Puk { .. } => return "sim_puk",
            Sim::Blocked => return "sim_blocked",
            Sim::Ready => {}
        }
        match self.reg_cfg() {
            RegState::Home => "ready",
            RegState::Roaming => "roaming",
            RegState::Searching => "searching",
            RegState::Denied => "denied",
            RegState::NotRegistered => "not_registered",
        }
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.faults.values().cloned().collect()
    }

    /// The status-report TP-ST and delay override of this modem, if set.
    pub fn status_override(&self) -> Option<(u8, Option<u64>)> {
        match self.faults.get("status_report") {
            Some(Fault::StatusReport { status, delay_ms }) => Some((*status, *delay_ms)),
            _ => None,
        }
    }

    /// Inbound faults (duplicate probability, reorder) consulted by the network.
    pub fn inbound_faults(&mut self) -> (f64, bool, u64) {
        let dup = match self.faults.get("inbound_duplicate") {
            Some(Fault::InboundDuplicate { probability }) => *probability,
            _ => 0.0,
        };
        (
            dup,
            self.faults.contains_key("inbound_reorder"),
            self.rng.random(),
        )
    }

    fn check_reg_change(&mut self, now: Instant) {
        let stat = self.reg_stat(now);
        if stat == self.last_stat {
            return;
        }
        self.last_stat = stat;
        if self.hung {
            return;
        }
        match self.creg_n {
            1 => self.urc(&format!("+CREG: {stat}")),
            2 if matches!(stat, 1 | 5) => self.urc(&format!(
                "+CREG: {stat},\"00A1\",\"{:04X}\"",
                0x1000 + self.index
            )),
            2 => self.urc(&format!("+CREG: {stat}")),
            _ => {}
        }
        match self.cereg_n {
            1 => self.urc(&format!("+CEREG: {stat}")),
            2 if matches!(stat, 1 | 5) => self.urc(&format!(
                "+CEREG: {stat},\"00A1\",\"{:07X}\",7",
                0x10_0000 + self.index
            )),
            2 => self.urc(&format!("+CEREG: {stat}")),
            _ => {}
        }
        if self.profile.huawei_urcs {
            let m = if matches!(stat, 1 | 5) {
                "^MODE:5,4"
            } else {
                "^MODE:0,0"
            };
            self.urc(m);
        }
    }

    // ----- faults -----

    fn apply_standing(&mut self, f: Fault, now: Instant) {
        if let Some(k) = f.standing_key() {
            match &f {
                Fault::SimPin { .. } => self.sim = Sim::Pin { attempts: 3 },
                Fault::SimPuk { .. } => self.sim = Sim::Puk { attempts: 10 },
                Fault::SimBusy { secs } => {
                    self.sim_busy_until = Some(now + Duration::from_secs_f64(*secs))
                }
                Fault::StorageCapacity { capacity } => {
                    self.stores[0].resize(*capacity, None);
                }
                Fault::NoSmsc => self.csca = None,
                _ => {}
            }
            self.faults.insert(k, f);
        }
    }

    /// Applies a fault now. Standing faults replace one of their kind; actions run once.
    pub fn apply_fault(&mut self, f: Fault, now: Instant) {
        match &f {
            Fault::HangNow => {
                self.hung = true;
                self.metrics.hangs += 1;
            }
            Fault::GarbageNow { len } => self.garbage(*len),
            Fault::Unplug { down_ms } | Fault::Reboot { down_ms } => {
                self.events.push(Event::Replug { down_ms: *down_ms });
            }
            Fault::Signal { rssi, .. } => {
                let r = *rssi;
                self.apply_standing(f, now);
                if self.profile.huawei_urcs && !self.hung {
                    self.urc(&format!("^RSSI:{r}"));
                }
            }
            _ => self.apply_standing(f, now),
        }
        self.check_reg_change(now);
    }

    /// Removes every standing fault: SIM unlocked and ready, home network, default signal.
    pub fn clear_faults(&mut self, now: Instant) {
        self.faults.clear();
        self.sim = Sim::Ready;
        self.sim_busy_until = None;
        self.hung = false;
        if self.csca.is_none() {
            self.csca = Some((DEFAULT_SMSC.into(), 145));
        }
        let cap = self.profile.storage;
        self.stores[0].resize(cap, None);
        self.check_reg_change(now);
    }

    /// Called by the bank when the port came back after an unplug/reboot.
    pub fn replugged(&mut self, now: Instant) {
        self.metrics.replugs += 1;
        self.boot(now);
    }

    // ----- inbound from the network -----

    /// Whether the network can reach this modem at all right now.
    pub fn reachable(&self, now: Instant) -> bool {
        self.registered(now)
    }

    fn store_free(&self, mem: usize) -> Option<usize> {
        if mem == 0 && self.faults.contains_key("storage_full") {
            return None;
        }
        self.stores[mem].iter().position(|s| s.is_none())
    }

    fn store(&mut self, inbound: Inbound) -> Result<usize, DeliverError> {
        let mem = self.cpms[2];
        let slot = self.store_free(mem).ok_or(DeliverError::MemoryFull)?;
        self.stores[mem][slot] = Some(Stored { stat: 0, inbound });
        Ok(slot)
    }

    /// Hands a message or status report to the modem, which routes it per `+CNMI`.
    pub fn deliver(&mut self, inbound: Inbound, now: Instant) -> Result<(), DeliverError> {
        if !self.reachable(now) {
            self.metrics.inbound_refused += 1;
            return Err(DeliverError::Unreachable);
        }
        let [mode, mt, _bm, ds, _bfr] = self.cnmi;
        let show = mode != 0 && !self.hung;
        let r = match inbound.kind {
            InboundKind::Sms => {
                if mt == 2 && show {
                    self.direct(inbound, now);
                    Ok(())
                } else {
                    let slot = self.store(inbound)?;
                    if (mt == 1 || mt == 3) && show {
                        let mem = MEMS[self.cpms[2]];
                        self.urc(&format!(
                            "+CMTI: \"{mem}\",{}",
                            slot + self.profile.first_index
                        ));
                    }
                    Ok(())
                }
            }
            InboundKind::StatusReport => {
                self.metrics.status_reports += 1;
                match ds {
                    1 if show => {
                        self.direct(inbound, now);
                        Ok(())
                    }
                    2 => {
                        let slot = self.store(inbound)?;
                        if show {
                            let mem = MEMS[self.cpms[2]];
                            self.urc(&format!(
                                "+CDSI: \"{mem}\",{}",
                                slot + self.profile.first_index
                            ));
                        }
                        Ok(())
                    }
                    // Not routed to the host: the report is dropped, as a modem does.
                    _ => Ok(()),
                }
            }
        };
        match r {
            Ok(()) => self.metrics.inbound_delivered += 1,
            Err(_) => self.metrics.inbound_refused += 1,
        }
        r
    }

    /// `+CMT`/`+CDS` straight to the host; with `+CSMS=1` it must be acknowledged.
    fn direct(&mut self, inbound: Inbound, now: Instant) {
        let (head, body) = match (inbound.kind, self.cmgf) {
            (InboundKind::Sms, 0) => (
                format!("+CMT: ,{}", inbound.tpdu.len()),
                self.pdu_with_smsc(&inbound.tpdu),
            ),
            (InboundKind::Sms, _) => (
                format!(
                    "+CMT: \"{}\",,\"{}\"",
                    self.cs_out(&inbound.addr),
                    pdu::scts_text(inbound.scts_unix)
                ),
                self.cs_out(&inbound.text),
            ),
            (InboundKind::StatusReport, 0) => (
                format!("+CDS: {}", inbound.tpdu.len()),
                self.pdu_with_smsc(&inbound.tpdu),
            ),
            (InboundKind::StatusReport, _) => {
                let (mr, st) = inbound.report.unwrap_or((0, 0));
                let ts = pdu::scts_text(inbound.scts_unix);
                (
                    format!(
                        "+CDS: 6,{mr},\"{}\",145,\"{ts}\",\"{ts}\",{st}",
                        inbound.addr
                    ),
                    String::new(),
                )
            }
        };
        if inbound.kind == InboundKind::StatusReport && self.cmgf == 1 {
            self.urc(&head);
        } else if self.cmgf == 0 && self.take_garbled_pdu() {
            self.urc(&head);
            let noise: Vec<u8> = body
                .bytes()
                .enumerate()
                .map(|(i, b)| if i % 5 == 2 { 0xFF } else { b })
                .collect();
            self.out.extend_from_slice(&noise);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.urc(&format!("{head}\r\n{body}"));
        }
        if self.csms == 1 {
            let ms = match self.faults.get("cnma_timeout") {
                Some(Fault::CnmaTimeout { ms }) => *ms,
                _ => self.network.cnma_timeout_ms,
            };
            self.pending_acks.push_back(PendingAck {
                deadline: now + Duration::from_millis(ms),
                inbound,
            });
        }
    }

    /// Whether the `garbled_pdu` fault garbles this delivery (and counts it).
    fn take_garbled_pdu(&mut self) -> bool {
        let Some(Fault::GarbledPdu { count }) = self.faults.get_mut("garbled_pdu") else {
            return false;
        };
        let garble = *count > 0;
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.faults.remove("garbled_pdu");
        }
        garble
    }

    fn pdu_with_smsc(&self, tpdu: &[u8]) -> String {
        let sc = match &self.csca {
            Some((n, toa)) => Address {
                number: n.clone(),
                toa: *toa,
            }
            .encode_smsc(),
            None => vec![0],
        };
        format!("{}{}", pdu::to_hex(&sc), pdu::to_hex(tpdu))
    }

    /// Text for the host in the current `+CSCS` character set.
    fn cs_out(&self, s: &str) -> String {
        if self.cscs == "UCS2" {
            let u: Vec<u16> = s.encode_utf16().collect();
            u.iter().map(|x| format!("{x:04X}")).collect()
        } else if self.cscs == "HEX" {
            pdu::to_hex(s.as_bytes())
        } else {
            s.chars()
                .map(|c| {
                    if c.is_ascii() || self.cscs != "IRA" {
                        c
                    } else {
                        '?'
                    }
                })
                .collect()
        }
    }

    /// Text from the host in the current `+CSCS` character set.
    fn cs_in(&self, s: &str) -> Option<String> {
        if self.cscs == "UCS2" {
            let s = s.trim();
            if !s.len().is_multiple_of(4) {
                return None;
            }
            let units: Option<Vec<u16>> = (0..s.len())
                .step_by(4)
                .map(|i| {
                    s.get(i..i + 4)
                        .and_then(|h| u16::from_str_radix(h, 16).ok())
                })
                .collect();
            Some(String::from_utf16_lossy(&units?))
        } else {
            Some(s.to_string())
        }
    }

    // ----- input from the host -----

    /// Bytes from the host.
    pub fn input(&mut self, bytes: &[u8], now: Instant) {
        self.metrics.bytes_in += bytes.len() as u64;
        if self.pending_send.is_some() {
            // Busy sending: a real modem reads these only after it answered.
            self.deferred_input.extend_from_slice(bytes);
            return;
        }
        for (i, &b) in bytes.iter().enumerate() {
            self.input_byte(b, now);
            if self.pending_send.is_some() {
                self.deferred_input.extend_from_slice(&bytes[i + 1..]);
                return;
            }
        }
    }

    fn input_byte(&mut self, b: u8, now: Instant) {
        let echo = self.echo && !self.hung;
        match &mut self.input {
            Input::Line(buf) => {
                match b {
                    b'\r' => {
                        let line = std::mem::take(buf);
                        if echo {
                            self.out.push(b);
                        }
                        self.line(&line, now);
                        return;
                    }
                    b'\n' | 0 | CTRL_Z | ESC => {}
                    0x08 | 0x7F => {
                        buf.pop();
                    }
                    _ => {
                        if buf.len() < MAX_LINE {
                            buf.push(b);
                        }
                    }
                }
                if echo {
                    self.out.push(b);
                }
            }
            Input::Body { buf, target } => match b {
                CTRL_Z => {
                    let body = std::mem::take(buf);
                    let target = target.clone();
                    self.input = Input::Line(Vec::new());
                    if echo {
                        self.out.push(b);
                    }
                    self.body(body, target, now);
                }
                ESC => {
                    self.input = Input::Line(Vec::new());
                    self.final_result(Ok(()));
                }
                _ => {
                    if buf.len() < 4096 {
                        buf.push(b);
                    }
                    if echo {
                        self.out.push(b);
                    }
                }
            },
        }
    }

    /// One complete command line.
    fn line(&mut self, raw: &[u8], now: Instant) {
        let text = String::from_utf8_lossy(raw);
        let t = text.trim();
        let upper = t.to_ascii_uppercase();
        let Some(pos) = upper.find("AT") else {
            return; // line noise: real modems ignore it
        };
        let body = &t[pos + 2..];
        self.metrics.command_lines += 1;
        let cmds = match at::parse_line(body) {
            Ok(c) => c,
            Err(_) => {
                if !self.hung {
                    self.final_result(Err(Final::Error));
                }
                return;
            }
        };
        if self.hung {
            // A hung modem only reacts to a radio reset.
            if !cmds
                .iter()
                .any(|c| matches!(c, Command::Ext { name, .. } if name == "+CFUN"))
            {
                return;
            }
            self.hung = false;
        }
        for c in cmds {
            match self.command(&c, now) {
                Ok(Reply::Lines(l)) => self.info(&l),
                Ok(Reply::Prompt(target)) => {
                    let p = self.profile.prompt;
                    self.raw(p);
                    self.maybe_urc_noise();
                    self.input = Input::Body {
                        buf: Vec::new(),
                        target,
                    };
                    return;
                }
                Ok(Reply::Deferred) => return,
                Err(f) => {
                    self.final_result(Err(f));
                    return;
                }
            }
        }
        self.final_result(Ok(()));
        self.check_reg_change(now);
    }

    fn command(&mut self, c: &Command, now: Instant) -> Result<Reply, Final> {
        match c {
            Command::Basic { name, arg } => self.basic(name, arg),
            Command::Ext { name, form } => self.ext(name, form, now),
        }
    }

    fn basic(&mut self, name: &str, arg: &str) -> Result<Reply, Final> {
        let n: u32 = arg.parse().unwrap_or(0);
        match name {
            "E" => match n {
                0 => self.echo = false,
                1 => self.echo = true,
                _ => return Err(Final::Error),
            },
            "V" => self.verbose = n == 1,
            "Q" => self.quiet = n == 1,
            "Z" | "&F" => {
                self.echo = true;
                self.verbose = true;
                self.quiet = false;
                self.cmee = 0;
                self.cmgf = 0;
                self.cscs = "IRA".into();
                self.cnmi = [1, 1, 0, 0, 0];
                self.creg_n = 0;
                self.cereg_n = 0;
            }
            "I" => {
                let p = &self.profile;
                return Ok(Reply::Lines(vec![
                    format!("Manufacturer: {}", p.manufacturer),
                    format!("Model: {}", p.model),
                    format!("Revision: {}", p.revision),
                    format!("IMEI: {}", self.identity.imei),
                    "+GCAP: +CGSM,+DS,+ES".into(),
                ]));
            }
            "X" | "&C" | "&D" | "&W" | "&K" | "H" | "L" | "M" => {}
            "D" | "A" => return Err(Final::Error),
            s if s.starts_with('S') => {
                if arg == "?" {
                    return Ok(Reply::Lines(vec!["000".into()]));
                }
            }
            _ => return Err(Final::Error),
        }
        Ok(Reply::Lines(vec![]))
    }

    fn sim_cme(&self, now: Instant) -> Result<(), Final> {
        if self.sim_busy(now) {
            return Err(Final::Cme(14));
        }
        match self.sim {
            Sim::Ready => Ok(()),
            Sim::Pin { .. } => Err(Final::Cme(11)),
            Sim::Puk { .. } => Err(Final::Cme(12)),
            Sim::Blocked => Err(Final::Cme(13)),
        }
    }

    fn sim_cms(&self, now: Instant) -> Result<(), Final> {
        if self.sim_busy(now) {
            return Err(Final::Cms(314));
        }
        match self.sim {
            Sim::Ready => Ok(()),
            Sim::Pin { .. } => Err(Final::Cms(311)),
            Sim::Puk { .. } => Err(Final::Cms(316)),
            Sim::Blocked => Err(Final::Cms(310)),
        }
    }

    fn ext(&mut self, name: &str, form: &Form, now: Instant) -> Result<Reply, Final> {
        let set = |f: &Form| -> Result<Vec<Param>, Final> {
            match f {
                Form::Set(a) => at::params(a).map_err(|_| Final::Error),
                _ => Ok(vec![]),
            }
        };
        let lines = |v: Vec<String>| Ok(Reply::Lines(v));
        let none = || Ok(Reply::Lines(vec![]));
        let p = self.profile.clone();
        match (name, form) {
            ("+CGMI" | "+GMI", Form::Action) => lines(vec![p.manufacturer.into()]),
            ("+CGMM" | "+GMM", Form::Action) => lines(vec![p.model.into()]),
            ("+CGMR" | "+GMR", Form::Action) => lines(vec![p.revision.into()]),
            ("+CGSN" | "+GSN", Form::Action) => lines(vec![self.identity.imei.clone()]),
            (
                "+CGMI" | "+CGMM" | "+CGMR" | "+CGSN" | "+GMI" | "+GMM" | "+GMR" | "+GSN",
                Form::Test,
            ) => none(),
            ("+GCAP", Form::Action) => lines(vec!["+GCAP: +CGSM,+DS,+ES".into()]),
            ("+CIMI", Form::Action) => {
                self.sim_cme(now)?;
                lines(vec![self.identity.imsi.clone()])
            }
            ("+CCID" | "+ICCID", Form::Action | Form::Read) => {
                if self.sim_busy(now) {
                    return Err(Final::Cme(14));
                }
                if p.name == crate::profile::ProfileName::Simcom {
                    lines(vec![self.identity.iccid.clone()])
                } else {
                    lines(vec![format!("+CCID: {}", self.identity.iccid)])
                }
            }
            ("+QCCID", Form::Action) if p.name == crate::profile::ProfileName::Quectel => {
                lines(vec![format!("+QCCID: {}", self.identity.iccid)])
            }
            ("^ICCID", Form::Read) if p.huawei_urcs => {
                // Huawei reports the ICCID as stored on the SIM: nibble-swapped BCD.
                let mut d = self.identity.iccid.clone();
                if d.len() % 2 == 1 {
                    d.push('F');
                }
                let sw: String = d
                    .as_bytes()
                    .chunks(2)
                    .flat_map(|c| [c[1] as char, c[0] as char])
                    .collect();
                lines(vec![format!("^ICCID: {sw}")])
            }
            ("+CMEE", Form::Read) => lines(vec![format!("+CMEE: {}", self.cmee)]),
            ("+CMEE", Form::Test) => lines(vec!["+CMEE: (0-2)".into()]),
            ("+CMEE", Form::Set(_)) => {
                let v = num_in(&set(form)?, 0, 0..=2, 0)?;
                self.cmee = v as u8;
                none()
            }
            ("+CPIN", Form::Read) => {
                if self.sim_busy(now) {
                    return Err(Final::Cme(14));
                }
                let s = match self.sim {
                    Sim::Ready => "READY",
                    Sim::Pin { .. } => "SIM PIN",
                    Sim::Puk { .. } => "SIM PUK",
                    Sim::Blocked => return Err(Final::Cme(13)),
                };
                lines(vec![format!("+CPIN: {s}")])
            }
            ("+CPIN", Form::Test) => none(),
            ("+CPIN", Form::Set(_)) => {
                if self.sim_busy(now) {
                    return Err(Final::Cme(14));
                }
                let ps = set(form)?;
                let first = ps.first().and_then(|p| p.text()).unwrap_or("").to_string();
                let (pin, puk) = match self.faults.get("sim_lock") {
                    Some(Fault::SimPin { pin, puk }) => (pin.clone(), puk.clone()),
                    Some(Fault::SimPuk { puk }) => ("0000".to_string(), puk.clone()),
                    _ => (String::new(), String::new()),
                };
                match self.sim {
                    Sim::Ready => Err(Final::Cme(3)),
                    Sim::Pin { attempts } => {
                        if first == pin {
                            self.sim = Sim::Ready;
                            none()
                        } else if attempts <= 1 {
                            self.sim = Sim::Puk { attempts: 10 };
                            Err(Final::Cme(16))
                        } else {
                            self.sim = Sim::Pin {
                                attempts: attempts - 1,
                            };
                            Err(Final::Cme(16))
                        }
                    }
                    Sim::Puk { attempts } => {
                        let newpin = ps.get(1).and_then(|p| p.text()).map(str::to_string);
                        match newpin {
                            Some(np) if first == puk => {
                                self.faults
                                    .insert("sim_lock", Fault::SimPin { pin: np, puk });
                                self.sim = Sim::Ready;
                                none()
                            }
                            _ if attempts <= 1 => {
                                self.sim = Sim::Blocked;
                                Err(Final::Cme(16))
                            }
                            _ => {
                                self.sim = Sim::Puk {
                                    attempts: attempts - 1,
                                };
                                Err(Final::Cme(16))
                            }
                        }
                    }
                    Sim::Blocked => Err(Final::Cme(13)),
                }
            }
            ("+CSQ", Form::Action) => {
                let (r, b) = self.signal_now();
                lines(vec![format!("+CSQ: {r},{b}")])
            }
            ("+CSQ", Form::Test) => lines(vec!["+CSQ: (0-31,99),(0-7,99)".into()]),
            ("+CREG" | "+CEREG" | "+CGREG", Form::Test) => lines(vec![format!("{name}: (0-2)")]),
            ("+CREG" | "+CEREG" | "+CGREG", Form::Set(_)) => {
                let v = num_in(&set(form)?, 0, 0..=2, 0)? as u8;
                match name {
                    "+CREG" => self.creg_n = v,
                    "+CEREG" => self.cereg_n = v,
                    _ => self.cgreg_n = v,
                }
                none()
            }
            ("+CREG" | "+CEREG" | "+CGREG", Form::Read) => {
                let n = match name {
                    "+CREG" => self.creg_n,
                    "+CEREG" => self.cereg_n,
                    _ => self.cgreg_n,
                };
                let stat = self.reg_stat(now);
                let reg = matches!(stat, 1 | 5);
                let l = match (name, n) {
                    ("+CEREG", 2) if reg => {
                        format!(
                            "+CEREG: 2,{stat},\"00A1\",\"{:07X}\",7",
                            0x10_0000 + self.index
                        )
                    }
                    (_, 2) if reg => {
                        format!("{name}: 2,{stat},\"00A1\",\"{:04X}\"", 0x1000 + self.index)
                    }
                    _ => format!("{name}: {n},{stat}"),
                };
                lines(vec![l])
            }
            ("+CGATT", Form::Read) => {
                lines(vec![format!("+CGATT: {}", u8::from(self.registered(now)))])
            }
            ("+CGATT", Form::Test) => lines(vec!["+CGATT: (0,1)".into()]),
            ("+CGATT", Form::Set(_)) => {
                num_in(&set(form)?, 0, 0..=1, 1)?;
                none()
            }
            ("+COPS", Form::Read) => {
                if self.registered(now) {
                    let oper = match self.cops_format {
                        2 => "00101",
                        1 => "HWSIM",
                        _ => "HW-SIM",
                    };
                    lines(vec![format!(
                        "+COPS: 0,{},\"{oper}\",{}",
                        self.cops_format, p.act
                    )])
                } else {
                    lines(vec!["+COPS: 0".into()])
                }
            }
            ("+COPS", Form::Test) => lines(vec![format!(
                "+COPS: (2,\"HW-SIM\",\"HWSIM\",\"00101\",{}),,(0-4),(0-2)",
                p.act
            )]),
            ("+COPS", Form::Set(_)) => {
                let ps = set(form)?;
                let mode = num_in(&ps, 0, 0..=4, 0)?;
                let fmt = num_in(&ps, 1, 0..=2, i64::from(self.cops_format))?;
                if mode == 3 || ps.len() > 1 {
                    self.cops_format = fmt as u8;
                }
                none()
            }
            ("+CMGF", Form::Read) => lines(vec![format!("+CMGF: {}", self.cmgf)]),
            ("+CMGF", Form::Test) => lines(vec!["+CMGF: (0,1)".into()]),
            ("+CMGF", Form::Set(_)) => {
                self.cmgf = num_in(&set(form)?, 0, 0..=1, 0)? as u8;
                none()
            }
            ("+CSCS", Form::Read) => lines(vec![format!("+CSCS: \"{}\"", self.cscs)]),
            ("+CSCS", Form::Test) => lines(vec![
                "+CSCS: (\"IRA\",\"GSM\",\"UCS2\",\"HEX\",\"8859-1\")".into(),
            ]),
            ("+CSCS", Form::Set(_)) => {
                let ps = set(form)?;
                let cs = ps
                    .first()
                    .and_then(|p| p.text())
                    .unwrap_or("")
                    .to_ascii_uppercase();
                if !["IRA", "GSM", "UCS2", "HEX", "8859-1"].contains(&cs.as_str()) {
                    return Err(Final::Cme(4));
                }
                self.cscs = cs;
                none()
            }
            ("+CSCA", Form::Read) => {
                self.sim_cms(now)?;
                match &self.csca {
                    Some((n, t)) => lines(vec![format!("+CSCA: \"{}\",{t}", self.cs_out(n))]),
                    None => lines(vec!["+CSCA: \"\",129".into()]),
                }
            }
            ("+CSCA", Form::Test) => none(),
            ("+CSCA", Form::Set(_)) => {
                self.sim_cms(now)?;
                let ps = set(form)?;
                let n = ps
                    .first()
                    .and_then(|p| p.text())
                    .and_then(|t| self.cs_in(t))
                    .ok_or(Final::Cms(304))?;
                if n.is_empty() {
                    self.csca = None;
                } else {
                    let toa = ps
                        .get(1)
                        .and_then(|p| p.num())
                        .unwrap_or(if n.starts_with('+') { 145 } else { 129 });
                    self.csca = Some((n, toa as u8));
                }
                none()
            }
            ("+CSMS", Form::Read) => lines(vec![format!("+CSMS: {},1,1,1", self.csms)]),
            ("+CSMS", Form::Test) => lines(vec!["+CSMS: (0,1)".into()]),
            ("+CSMS", Form::Set(_)) => {
                self.csms = num_in(&set(form)?, 0, 0..=1, 0)? as u8;
                lines(vec!["+CSMS: 1,1,1".into()])
            }
            ("+CMMS", Form::Read) => lines(vec![format!("+CMMS: {}", self.cmms)]),
            ("+CMMS", Form::Test) => lines(vec!["+CMMS: (0-2)".into()]),
            ("+CMMS", Form::Set(_)) => {
                self.cmms = num_in(&set(form)?, 0, 0..=2, 0)? as u8;
                none()
            }
            ("+CPMS", Form::Test) => lines(vec![
                "+CPMS: (\"SM\",\"ME\"),(\"SM\",\"ME\"),(\"SM\",\"ME\")".into(),
            ]),
            ("+CPMS", Form::Read) => {
                self.sim_cms(now)?;
                let parts: Vec<String> = self
                    .cpms
                    .iter()
                    .map(|&m| format!("\"{}\",{},{}", MEMS[m], self.used(m), self.stores[m].len()))
                    .collect();
                lines(vec![format!("+CPMS: {}", parts.join(","))])
            }
            ("+CPMS", Form::Set(_)) => {
                self.sim_cms(now)?;
                let ps = set(form)?;
                if ps.is_empty() || ps.len() > 3 {
                    return Err(Final::Cms(302));
                }
                let mut new = self.cpms;
                for (i, p) in ps.iter().enumerate() {
                    if let Some(t) = p.text() {
                        new[i] = match t.to_ascii_uppercase().as_str() {
                            "SM" => 0,
                            "ME" | "MT" => 1,
                            _ => return Err(Final::Cms(302)),
                        };
                    }
                }
                self.cpms = new;
                let v: Vec<String> = self
                    .cpms
                    .iter()
                    .map(|&m| format!("{},{}", self.used(m), self.stores[m].len()))
                    .collect();
                lines(vec![format!("+CPMS: {}", v.join(","))])
            }
            ("+CNMI", Form::Test) => {
                let ds: Vec<String> = p.cnmi_ds.iter().map(|d| d.to_string()).collect();
                lines(vec![format!(
                    "+CNMI: (0-2),(0-3),(0,2),({}),(0,1)",
                    ds.join(",")
                )])
            }
            ("+CNMI", Form::Read) => {
                let c = self.cnmi;
                lines(vec![format!(
                    "+CNMI: {},{},{},{},{}",
                    c[0], c[1], c[2], c[3], c[4]
                )])
            }
            ("+CNMI", Form::Set(_)) => {
                let ps = set(form)?;
                let mut c = self.cnmi;
                let ranges: [&[u8]; 5] = [&[0, 1, 2], &[0, 1, 2, 3], &[0, 2], p.cnmi_ds, &[0, 1]];
                if ps.len() > 5 {
                    return Err(Final::Cms(303));
                }
                for (i, prm) in ps.iter().enumerate() {
                    if let Some(v) = prm.num() {
                        if !ranges[i].iter().any(|&r| i64::from(r) == v) {
                            return Err(Final::Cms(303));
                        }
                        c[i] = v as u8;
                    } else if *prm != Param::Empty {
                        return Err(Final::Cms(303));
                    }
                }
                self.cnmi = c;
                none()
            }
            ("+CNMA", Form::Test) => lines(vec!["+CNMA: (0-2)".into()]),
            ("+CNMA", Form::Action | Form::Set(_)) => {
                let n = num_in(&set(form)?, 0, 0..=2, 0)?;
                if self.csms != 1 {
                    return Err(Final::Cms(340));
                }
                let Some(a) = self.pending_acks.pop_front() else {
                    return Err(Final::Cms(340));
                };
                if n == 2 {
                    self.metrics.not_acked += 1;
                    self.events.push(Event::NotAcked(a.inbound));
                }
                none()
            }
            ("+CSMP", Form::Read) => {
                let c = self.csmp;
                lines(vec![format!("+CSMP: {},{},{},{}", c[0], c[1], c[2], c[3])])
            }
            ("+CSMP", Form::Test) => none(),
            ("+CSMP", Form::Set(_)) => {
                let ps = set(form)?;
                for (i, prm) in ps.iter().enumerate().take(4) {
                    if let Some(v) = prm.num() {
                        self.csmp[i] = u8::try_from(v).map_err(|_| Final::Cms(303))?;
                    }
                }
                none()
            }
            ("+CSDH", Form::Read) => lines(vec![format!("+CSDH: {}", self.csdh)]),
            ("+CSDH", Form::Test) => lines(vec!["+CSDH: (0,1)".into()]),
            ("+CSDH", Form::Set(_)) => {
                self.csdh = num_in(&set(form)?, 0, 0..=1, 0)? as u8;
                none()
            }
            ("+CMGS", Form::Test) => none(),
            ("+CMGS", Form::Set(_)) => {
                self.sim_cms(now)?;
                let ps = set(form)?;
                if self.cmgf == 0 {
                    let n = ps.first().and_then(|p| p.num()).ok_or(Final::Cms(304))?;
                    if !(1..=180).contains(&n) {
                        return Err(Final::Cms(304));
                    }
                    Ok(Reply::Prompt(BodyTarget::PduSend { len: n as usize }))
                } else {
                    let da = ps
                        .first()
                        .and_then(|p| p.text())
                        .and_then(|t| self.cs_in(t))
                        .ok_or(Final::Cms(304))?;
                    if da.is_empty() {
                        return Err(Final::Cms(304));
                    }
                    let toda = ps.get(1).and_then(|p| p.num()).map(|v| v as u8);
                    Ok(Reply::Prompt(BodyTarget::TextSend { da, toda }))
                }
            }
            ("+CMGL", Form::Test) => {
                if self.cmgf == 0 {
                    lines(vec!["+CMGL: (0-4)".into()])
                } else {
                    lines(vec![
                        "+CMGL: (\"REC UNREAD\",\"REC READ\",\"STO UNSENT\",\"STO SENT\",\"ALL\")"
                            .into(),
                    ])
                }
            }
            ("+CMGL", Form::Action | Form::Set(_)) => {
                self.sim_cms(now)?;
                let ps = set(form)?;
                let stat = match (self.cmgf, ps.first()) {
                    (_, None | Some(Param::Empty)) => 0,
                    (0, Some(p)) => {
                        let v = p.num().ok_or(Final::Cms(302))?;
                        if !(0..=4).contains(&v) {
                            return Err(Final::Cms(302));
                        }
                        v as u8
                    }
                    (_, Some(p)) => {
                        let t = p.text().unwrap_or("").to_ascii_uppercase();
                        STAT_TEXT
                            .iter()
                            .position(|s| *s == t)
                            .ok_or(Final::Cms(302))? as u8
                    }
                };
                let mem = self.cpms[0];
                let mut out = Vec::new();
                for slot in 0..self.stores[mem].len() {
                    let Some(st) = self.stores[mem][slot].clone() else {
                        continue;
                    };
                    if stat != 4 && st.stat != stat {
                        continue;
                    }
                    let idx = slot + p.first_index;
                    let (head, body) = self.render(&st, idx, true);
                    out.push(head);
                    if !body.is_empty() || self.cmgf == 1 {
                        out.push(body);
                    }
                    if let Some(Some(s)) = self.stores[mem].get_mut(slot)
                        && s.stat == 0
                    {
                        s.stat = 1;
                    }
                }
                lines(out)
            }
            ("+CMGR", Form::Test) => none(),
            ("+CMGR", Form::Set(_)) => {
                self.sim_cms(now)?;
                let slot = self.slot_arg(&set(form)?)?;
                let mem = self.cpms[0];
                let Some(st) = self.stores[mem][slot].clone() else {
                    return Err(Final::Cms(321));
                };
                let (head, body) = self.render(&st, slot + p.first_index, false);
                if let Some(Some(s)) = self.stores[mem].get_mut(slot)
                    && s.stat == 0
                {
                    s.stat = 1;
                }
                lines(vec![head, body])
            }
            ("+CMGD", Form::Test) => {
                let mem = self.cpms[0];
                let used: Vec<String> = (0..self.stores[mem].len())
                    .filter(|&i| self.stores[mem][i].is_some())
                    .map(|i| (i + p.first_index).to_string())
                    .collect();
                lines(vec![format!("+CMGD: ({}),(0-4)", used.join(","))])
            }
            ("+CMGD", Form::Set(_)) => {
                self.sim_cms(now)?;
                let ps = set(form)?;
                let flag = num_in(&ps, 1, 0..=4, 0)?;
                let mem = self.cpms[0];
                if flag == 0 {
                    let slot = self.slot_arg(&ps)?;
                    self.stores[mem][slot] = None;
                } else {
                    for s in self.stores[mem].iter_mut() {
                        let del = match s {
                            Some(st) => match flag {
                                1 => st.stat == 1,
                                2 => matches!(st.stat, 1 | 3),
                                3 => matches!(st.stat, 1..=3),
                                _ => true,
                            },
                            None => false,
                        };
                        if del {
                            *s = None;
                        }
                    }
                }
                none()
            }
            ("+CUSD", Form::Test) => lines(vec!["+CUSD: (0-2)".into()]),
            ("+CUSD", Form::Read) => lines(vec!["+CUSD: 1".into()]),
            ("+CUSD", Form::Set(_)) => {
                let ps = set(form)?;
                let n = num_in(&ps, 0, 0..=2, 0)?;
                if n == 2 {
                    self.ussd_due = None;
                    return none();
                }
                if let Some(code) = ps.get(1).and_then(|p| p.text()) {
                    if !self.registered(now) {
                        return Err(Final::Cme(30));
                    }
                    let packed = p.ussd_packed_hex && code.chars().all(|c| c.is_ascii_hexdigit());
                    let cents = 500 + (self.index * 137) % 5000;
                    let msg = format!("Your balance is {}.{:02} EUR", cents / 100, cents % 100);
                    let body = if packed {
                        let s = pdu::gsm7_encode(&msg).unwrap_or_default();
                        pdu::to_hex(&pdu::pack_septets(&s, 0))
                    } else {
                        msg
                    };
                    self.ussd_due = Some((
                        now + Duration::from_millis(300),
                        format!("+CUSD: 0,\"{body}\",15"),
                    ));
                }
                none()
            }
            ("+CFUN", Form::Read) => lines(vec![format!("+CFUN: {}", self.cfun)]),
            ("+CFUN", Form::Test) => lines(vec!["+CFUN: (0,1,4),(0-1)".into()]),
            ("+CFUN", Form::Set(_)) => {
                let ps = set(form)?;
                let fun = num_in(&ps, 0, 0..=4, 1)?;
                let rst = num_in(&ps, 1, 0..=1, 0)?;
                if fun == 2 || fun == 3 {
                    return Err(Final::Cme(4));
                }
                self.hung = false;
                if rst == 1 {
                    self.metrics.reboots += 1;
                    self.final_result(Ok(()));
                    self.events.push(Event::Replug {
                        down_ms: self.network.reset_ms,
                    });
                    return Ok(Reply::Deferred);
                }
                self.cfun = if fun == 1 { 1 } else { 0 };
                none()
            }
            ("+CPAS", Form::Action) => lines(vec!["+CPAS: 0".into()]),
            ("+CLIP" | "+CRC" | "+CVHU" | "+CMER" | "+CLCC" | "+CSSN", Form::Set(_)) => none(),
            ("^CURC", Form::Set(_)) if p.huawei_urcs => none(),
            _ => Err(Final::Error),
        }
    }

    fn used(&self, mem: usize) -> usize {
        self.stores[mem].iter().filter(|s| s.is_some()).count()
    }

    fn slot_arg(&self, ps: &[Param]) -> Result<usize, Final> {
        let idx = ps.first().and_then(|p| p.num()).ok_or(Final::Cms(321))?;
        let slot = usize::try_from(idx)
            .ok()
            .and_then(|i| i.checked_sub(self.profile.first_index))
            .ok_or(Final::Cms(321))?;
        if slot >= self.stores[self.cpms[0]].len() {
            return Err(Final::Cms(321));
        }
        Ok(slot)
    }

    /// `+CMGL`/`+CMGR` header and body for a stored message.
    fn render(&self, st: &Stored, idx: usize, list: bool) -> (String, String) {
        let i = &st.inbound;
        if self.cmgf == 0 {
            let head = if list {
                format!("+CMGL: {idx},{},,{}", st.stat, i.tpdu.len())
            } else {
                format!("+CMGR: {},,{}", st.stat, i.tpdu.len())
            };
            return (head, self.pdu_with_smsc(&i.tpdu));
        }
        let stat = STAT_TEXT[usize::from(st.stat.min(3))];
        let ts = pdu::scts_text(i.scts_unix);
        match i.kind {
            InboundKind::Sms => {
                let extra = if self.csdh == 1 {
                    let toa = if i.addr.starts_with('+') { 145 } else { 129 };
                    format!(",{toa},{}", i.text.chars().count())
                } else {
                    String::new()
                };
                let head = if list {
                    format!(
                        "+CMGL: {idx},\"{stat}\",\"{}\",,\"{ts}\"{extra}",
                        self.cs_out(&i.addr)
                    )
                } else {
                    format!(
                        "+CMGR: \"{stat}\",\"{}\",,\"{ts}\"{extra}",
                        self.cs_out(&i.addr)
                    )
                };
                (head, self.cs_out(&i.text))
            }
            InboundKind::StatusReport => {
                let (mr, tpst) = i.report.unwrap_or((0, 0));
                let head = if list {
                    format!(
                        "+CMGL: {idx},\"{stat}\",6,{mr},\"{}\",145,\"{ts}\",\"{ts}\",{tpst}",
                        i.addr
                    )
                } else {
                    format!(
                        "+CMGR: \"{stat}\",6,{mr},\"{}\",145,\"{ts}\",\"{ts}\",{tpst}",
                        i.addr
                    )
                };
                (head, String::new())
            }
        }
    }

    /// What follows the prompt, ended by Ctrl-Z.
    fn body(&mut self, body: Vec<u8>, target: BodyTarget, now: Instant) {
        let text: String = String::from_utf8_lossy(&body)
            .chars()
            .filter(|c| *c != '\r' && *c != '\n')
            .collect();
        let r = match target {
            BodyTarget::PduSend { len } => self.pdu_send(&text, len, now),
            BodyTarget::TextSend { da, toda } => self.text_send(&text, &da, toda, now),
        };
        if let Err(f) = r {
            self.final_result(Err(f));
        }
    }

    fn pdu_send(&mut self, hex: &str, len: usize, now: Instant) -> Result<(), Final> {
        let bytes = pdu::from_hex(hex).map_err(|_| Final::Cms(304))?;
        let (smsc, tpdu) = pdu::split_smsc(&bytes).map_err(|_| Final::Cms(304))?;
        if tpdu.len() != len {
            return Err(Final::Cms(304));
        }
        let submit = pdu::decode_submit(tpdu).map_err(|_| Final::Cms(304))?;
        if smsc.is_none() && self.csca.is_none() {
            return Err(Final::Cms(330));
        }
        self.submit(tpdu.to_vec(), submit, now)
    }

    fn text_send(
        &mut self,
        text: &str,
        da: &str,
        toda: Option<u8>,
        now: Instant,
    ) -> Result<(), Final> {
        if self.csca.is_none() {
            return Err(Final::Cms(330));
        }
        let text = self.cs_in(text).ok_or(Final::Cms(304))?;
        let mut addr = Address::parse(da);
        if let Some(t) = toda {
            addr.toa = t;
            if t == 145 && !addr.number.starts_with('+') {
                addr.number = format!("+{}", addr.number);
            }
        }
        if addr.toa == 0xD0 {
            return Err(Final::Cms(304));
        }
        let [fo, _vp, pid, dcs] = self.csmp;
        let alphabet = pdu::dcs_alphabet(dcs);
        let (udl, ud) = match alphabet {
            pdu::Alphabet::Ucs2 => {
                let b: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
                (b.len(), b)
            }
            pdu::Alphabet::Eight => (text.len(), text.as_bytes().to_vec()),
            pdu::Alphabet::Gsm7 => {
                let s: Vec<u8> = text
                    .chars()
                    .flat_map(|c| pdu::gsm7_char(c).unwrap_or_else(|| vec![0x3F]))
                    .collect();
                (s.len(), pdu::pack_septets(&s, 0))
            }
        };
        let limit = if alphabet == pdu::Alphabet::Gsm7 {
            160
        } else {
            140
        };
        if udl > limit {
            return Err(Final::Cms(305));
        }
        let srr = fo & 0x20 != 0;
        let tpdu = pdu::encode_submit(&addr, dcs, srr, &(udl as u8, ud, false), 0);
        let mut tpdu = tpdu;
        tpdu[0] = (fo & !0x40) | 0x01;
        let _ = pid;
        let submit = pdu::decode_submit(&tpdu).map_err(|_| Final::Cms(304))?;
        self.submit(tpdu, submit, now)
    }

    /// Decides the outcome of a send now (so `--seed` fixes it) and answers after the
    /// latency.
    fn submit(&mut self, tpdu: Vec<u8>, submit: pdu::Submit, now: Instant) -> Result<(), Final> {
        if self.cfun != 1 || !self.registered(now) {
            return Err(Final::Cms(331));
        }
        let (lo, hi) = match self.faults.get("latency") {
            Some(Fault::Latency { min_ms, max_ms }) => (*min_ms, *max_ms),
            _ => self.default_latency,
        };
        let latency = if hi > lo {
            self.rng.random_range(lo..=hi)
        } else {
            lo
        };
        let hang = matches!(self.faults.get("hang"), Some(Fault::Hang { probability }) if self.rng.random_bool(*probability));
        let fail = match self.faults.get("cms_error") {
            Some(Fault::CmsError { code, probability }) if self.rng.random_bool(*probability) => {
                Some(*code)
            }
            _ => None,
        };
        let result = if hang {
            SendResult::Hang
        } else if let Some(code) = fail {
            SendResult::Fail(code)
        } else {
            self.mr = self.mr.wrapping_add(1);
            let mut tpdu = tpdu;
            tpdu[1] = self.mr;
            let mut submit = submit;
            submit.mr = self.mr;
            SendResult::Ok(Box::new(Submission {
                from: self.index,
                mr: self.mr,
                tpdu,
                submit,
                status_override: self.status_override(),
            }))
        };
        self.pending_send = Some(PendingSend {
            at: now + Duration::from_millis(latency),
            result,
        });
        if latency == 0 {
            self.handle_timeout(now);
        }
        Ok(())
    }

    fn finish_send(&mut self, result: SendResult, now: Instant) {
        match result {
            SendResult::Ok(s) => {
                self.metrics.sms_submitted += 1;
                let mr = s.mr;
                self.events.push(Event::Submitted(*s));
                self.info(&[format!("+CMGS: {mr}")]);
                self.final_result(Ok(()));
            }
            SendResult::Fail(code) => {
                self.metrics.sms_failed += 1;
                let ok = self.profile.ok_on_failure || self.faults.contains_key("ok_on_failure");
                self.maybe_garbage();
                self.final_result(if ok { Ok(()) } else { Err(Final::Cms(code)) });
            }
            SendResult::Hang => {
                self.metrics.hangs += 1;
                self.hung = true;
            }
        }
        let rest = std::mem::take(&mut self.deferred_input);
        if !rest.is_empty() {
            self.metrics.bytes_in -= rest.len() as u64;
            self.input(&rest, now);
        }
    }
}

const STAT_TEXT: [&str; 5] = ["REC UNREAD", "REC READ", "STO UNSENT", "STO SENT", "ALL"];

enum Reply {
    Lines(Vec<String>),
    Prompt(BodyTarget),
    Deferred,
}

/// Parameter `i` as a number within `range`, `default` when absent.
fn num_in(
    ps: &[Param],
    i: usize,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> Result<i64, Final> {
    match ps.get(i) {
        None | Some(Param::Empty) => Ok(default),
        Some(p) => {
            let v = p.num().ok_or(Final::Cme(50))?;
            if range.contains(&v) {
                Ok(v)
            } else {
                Err(Final::Cme(50))
            }
        }
    }
}

fn cme_text(n: u16) -> &'static str {
    match n {
        3 => "operation not allowed",
        4 => "operation not supported",
        10 => "SIM not inserted",
        11 => "SIM PIN required",
        12 => "SIM PUK required",
        13 => "SIM failure",
        14 => "SIM busy",
        16 => "incorrect password",
        30 => "no network service",
        50 => "Incorrect parameters",
        _ => "unknown",
    }
}
