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
use crate::zoo::{CallUrcs, CcidStyle, Gps};
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
    /// The port must disappear and come back after a pause (reboot or unplug).
    Replug {
        /// How long the port stays away, ms.
        down_ms: u64,
    },
    /// A direct `+CMT`/`+CDS` was not acknowledged (or was nacked): the network takes
    /// it back and redelivers later.
    NotAcked(Inbound),
}

/// One SMS-SUBMIT the modem accepted.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Index of the sending modem.
    pub from: usize,
    /// TP-MR the modem assigned (and answered in `+CMGS: <mr>`).
    pub mr: u8,
    /// The SMS-SUBMIT TPDU without SMSC address, MR filled in (in text mode, the one
    /// the modem built).
    pub tpdu: Vec<u8>,
    /// The same TPDU, decoded.
    pub submit: pdu::Submit,
    /// TP-ST the network should report (from this modem's status_report fault).
    pub status_override: Option<(u8, Option<u64>)>,
}

/// What arrives from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundKind {
    /// An SMS-DELIVER (`+CMTI`/`+CMT`).
    Sms,
    /// An SMS-STATUS-REPORT (`+CDSI`/`+CDS`).
    StatusReport,
}

/// One TPDU on its way to this modem, with what text mode needs to show it.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// Unique within the bank; a duplicate made by a fault keeps the original's id.
    pub id: u64,
    /// Message or status report.
    pub kind: InboundKind,
    /// The TPDU the host will read, without SMSC address.
    pub tpdu: Vec<u8>,
    /// Originator (SMS) or recipient (status report).
    pub addr: String,
    /// TP-SCTS, seconds since the Unix epoch (text mode shows it).
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
    /// The profile's word for a command it does not know.
    Unsupported,
    /// A result line exactly as a recorded firmware prints it, whatever `+CMEE` says.
    Raw(&'static str),
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
    /// Bytes from the host, every port.
    pub bytes_in: u64,
    /// Bytes to the host, every port.
    pub bytes_out: u64,
    /// `AT` command lines parsed (line noise without `AT` not counted).
    pub command_lines: u64,
    /// Error final results sent (`ERROR`, `+CME ERROR`, `+CMS ERROR`, …).
    pub errors: u64,
    /// Sends accepted (`+CMGS: <mr>`); one per part.
    pub sms_submitted: u64,
    /// `AT+CMGS` payloads read to their Ctrl-Z, counted as soon as the PDU is in (before
    /// the network answers after the send latency): a test can wait for "the modem
    /// holds the PDU" instead of sleeping.
    pub sms_payloads: u64,
    /// Sends refused by a `cms_error` fault (answered `+CMS ERROR`, or `OK` with
    /// `ok_on_failure`).
    pub sms_failed: u64,
    /// Times the modem stopped answering (`hang` or `hang_now`).
    pub hangs: u64,
    /// Messages and status reports the modem took (stored or routed directly).
    pub inbound_delivered: u64,
    /// Deliveries it refused (unreachable, storage full); the network retries them.
    pub inbound_refused: u64,
    /// Status reports delivered to it.
    pub status_reports: u64,
    /// Direct deliveries not acknowledged in time or nacked with `AT+CNMA=2`.
    pub not_acked: u64,
    /// Times the ports came back after an unplug or reboot.
    pub replugs: u64,
    /// Resets asked for with `AT+CFUN=<fun>,1`.
    pub reboots: u64,
    /// `RING`/`+CRING` lines sent.
    pub rings: u64,
    /// Incoming calls started.
    pub calls: u64,
    /// Calls the host ended (`ATH`, `AT+CHUP`).
    pub calls_hung_up: u64,
    /// Calls the caller gave up on, or replaced by a newer call.
    pub calls_missed: u64,
}

/// What V.250 keeps per AT port: echo, result format, character set, the line being
/// typed, a send in progress and the bytes waiting for the host.
#[derive(Debug)]
struct Session {
    echo: bool,
    verbose: bool,
    quiet: bool,
    cmee: u8,
    cmgf: u8,
    cscs: String,
    csdh: u8,
    cops_format: u8,
    input: Input,
    deferred_input: Vec<u8>,
    pending_send: Option<PendingSend>,
    out: Vec<u8>,
}

impl Session {
    fn new() -> Session {
        Session {
            echo: true,
            verbose: true,
            quiet: false,
            cmee: 0,
            cmgf: 0,
            cscs: "IRA".into(),
            csdh: 0,
            cops_format: 0,
            input: Input::Line(Vec::new()),
            deferred_input: Vec::new(),
            pending_send: None,
            out: Vec::new(),
        }
    }
}

/// An incoming voice call, as [`Modem::ring`] starts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingSpec {
    /// Caller number (`+49…`) shown in `+CLIP`.
    pub from: String,
    /// Rings before the caller gives up (default 5).
    #[serde(default = "default_ring_count")]
    pub count: u32,
    /// Time between rings (default 3000 ms).
    #[serde(default = "default_ring_interval")]
    pub interval_ms: u64,
    /// While it rings, `+CMGS`/`+CMGR`/`+CMGL` fail with `+CMS ERROR: <code>` (as the
    /// modem in reivaxy/aquaMonitor#17 did); `None`: SMS commands work as usual.
    #[serde(default)]
    pub cms_error: Option<u16>,
}

fn default_ring_count() -> u32 {
    5
}

fn default_ring_interval() -> u64 {
    3000
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Still ringing.
    Ringing,
    /// Answered with `ATA` and not yet hung up.
    Active,
    /// Ended by the host (`ATH`, `AT+CHUP`).
    HungUp,
    /// The caller gave up after `count` rings.
    Missed,
    /// The modem rebooted or was unplugged.
    Dropped,
}

/// One call, as `GET /modems/{i}/calls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// Per modem, increasing; what [`Modem::ring`] returned.
    pub id: u64,
    /// The caller's number, as `+CLIP` shows it.
    pub from: String,
    /// `RING`/`+CRING` sent so far.
    pub rings: u32,
    /// The host took it with `ATA`.
    pub answered: bool,
    /// Where the call stands, or how it ended.
    pub outcome: CallOutcome,
    /// The command that ended it (`ATH`, `AT+CHUP`).
    pub ended_by: Option<String>,
    /// AT port (session 0 = primary) the ending command came on.
    pub ended_on_port: Option<usize>,
}

#[derive(Debug, Clone)]
struct Call {
    id: u64,
    spec: RingSpec,
    rings: u32,
    answered: bool,
    next: Instant,
}

/// Construction parameters of one modem.
#[derive(Debug, Clone)]
pub struct ModemConfig {
    /// Position in the bank, from 0; mixed into the seed.
    pub index: usize,
    /// Who the modem is on the network.
    pub identity: Identity,
    /// The firmware family it behaves as.
    pub profile: Profile,
    /// The bank's seed; with `index`, fixes every random decision of this modem.
    pub seed: u64,
    /// Default CMGS latency range (ms) when no latency fault is set.
    pub latency: (u64, u64),
    /// The network's timings the modem applies itself (`+CNMA` wait, reset time).
    pub network: NetworkSettings,
    /// Faults in force from the start, applied in order.
    pub faults: Vec<Fault>,
}

/// The default SMSC on every SIM; a `no_smsc` fault removes it.
pub const DEFAULT_SMSC: &str = "+4915559999999";

/// One simulated modem.
pub struct Modem {
    /// Position in the bank, from 0.
    pub index: usize,
    /// Who the modem is on the network.
    pub identity: Identity,
    /// The firmware family it behaves as.
    pub profile: Profile,
    network: NetworkSettings,
    default_latency: (u64, u64),
    rng: StdRng,
    faults: BTreeMap<&'static str, Fault>,
    // The AT session of the port being served; the others are parked. V.250 settings
    // live per port, everything else (SIM, radio, storage) is the device's.
    s: Session,
    parked: Vec<Session>,
    cur: usize,
    /// Session whose port gets URCs (`usize::MAX`: a port the host cannot see).
    urc_port: usize,
    /// Layout index of each AT session, and of the NMEA port.
    at_ports: Vec<usize>,
    nmea_port: Option<usize>,
    nmea_out: Vec<u8>,
    nmea_next: Option<Instant>,
    // 27.007 settings of the device, reset on boot.
    csca: Option<(String, u8)>,
    csms: u8,
    cmms: u8,
    cnmi: [u8; 5],
    csmp: [u8; 4],
    creg_n: u8,
    cereg_n: u8,
    cgreg_n: u8,
    cfun: u8,
    cpms: [usize; 3],
    crc: u8,
    clip: u8,
    wind: u32,
    qss: u8,
    ussdmode: u8,
    // Quirk counters.
    device_busy: u8,
    csca_busy: u8,
    boot_queue: VecDeque<(Instant, &'static str)>,
    // Calls.
    call: Option<Call>,
    calls: Vec<CallRecord>,
    /// URCs caused by a command, said after its final result.
    after_final: Vec<&'static str>,
    next_call_id: u64,
    // SIM and radio.
    sim: Sim,
    sim_busy_until: Option<Instant>,
    signal: (u8, u8),
    last_stat: u8,
    mr: u8,
    stores: [Vec<Option<Stored>>; 2],
    // Timers.
    pending_acks: VecDeque<PendingAck>,
    ussd_due: Option<(Instant, String)>,
    next_boot_urc: Option<Instant>,
    hung: bool,
    boot_count: u64,
    events: Vec<Event>,
    /// Counters for `GET /metrics`.
    pub metrics: Metrics,
}

const MEMS: [&str; 2] = ["SM", "ME"];

impl Modem {
    /// A modem just powered on at `now`: SIM and radio per its faults, boot URCs
    /// scheduled.
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
            s: Session::new(),
            parked: Vec::new(),
            cur: 0,
            urc_port: 0,
            at_ports: Vec::new(),
            nmea_port: None,
            nmea_out: Vec::new(),
            nmea_next: None,
            csca: Some((DEFAULT_SMSC.into(), 145)),
            csms: 0,
            cmms: 0,
            cnmi: [1, 1, 0, 0, 0],
            csmp: [17, 167, 0, 0],
            creg_n: 0,
            cereg_n: 0,
            cgreg_n: 0,
            cfun: 1,
            cpms: [0, 0, 0],
            crc: 0,
            clip: 0,
            wind: 0,
            qss: 0,
            ussdmode: 1,
            device_busy: 0,
            csca_busy: 0,
            boot_queue: VecDeque::new(),
            call: None,
            calls: Vec::new(),
            after_final: Vec::new(),
            next_call_id: 1,
            sim: Sim::Ready,
            sim_busy_until: None,
            signal,
            last_stat: 0,
            mr: 0,
            stores: [vec![None; storage], vec![None; 100]],
            pending_acks: VecDeque::new(),
            ussd_due: None,
            next_boot_urc: None,
            hung: false,
            boot_count: 0,
            events: Vec::new(),
            metrics: Metrics::default(),
        };
        m.at_ports = m.profile.at_ports();
        m.nmea_port = (0..m.profile.quirks.ports.len())
            .find(|&i| m.profile.quirks.ports[i].role == crate::zoo::PortRole::Nmea);
        m.parked = (0..m.at_ports.len()).map(|_| Session::new()).collect();
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
        self.s = Session::new();
        for p in self.parked.iter_mut() {
            *p = Session::new();
        }
        // Session 0 is the primary port, the one that gets URCs.
        self.urc_port = 0;
        self.csca = if self.faults.contains_key("no_smsc") {
            None
        } else {
            Some((DEFAULT_SMSC.into(), 145))
        };
        self.csms = 0;
        self.cmms = 0;
        self.cnmi = self.profile.quirks.cnmi_default;
        self.csmp = [17, 167, 0, 0];
        self.creg_n = 0;
        self.cereg_n = 0;
        self.cgreg_n = 0;
        self.cfun = 1;
        self.cpms = [0, 0, 0];
        self.crc = 0;
        self.clip = 0;
        self.wind = 0;
        self.qss = 0;
        self.ussdmode = 1;
        self.device_busy = 0;
        self.csca_busy = self.profile.quirks.csca_busy_after_boot;
        self.boot_queue = self
            .profile
            .quirks
            .boot_urcs
            .iter()
            .map(|(ms, l)| (now + Duration::from_millis(*ms), *l))
            .collect();
        self.nmea_next = None;
        if let Some(c) = self.call.take() {
            self.end_call(c, CallOutcome::Dropped, None, false);
        }
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

    /// Bytes for the host on the primary AT port, drained.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.take_session_output(0)
    }

    /// The device's ports (one for a serial modem).
    pub fn ports(&self) -> &'static [crate::zoo::PortSpec] {
        self.profile.quirks.ports
    }

    /// Bytes for the host on port `port` of [`Modem::ports`], drained.
    pub fn take_port_output(&mut self, port: usize) -> Vec<u8> {
        if let Some(sess) = self.at_ports.iter().position(|&p| p == port) {
            self.take_session_output(sess)
        } else if Some(port) == self.nmea_port {
            self.metrics.bytes_out += self.nmea_out.len() as u64;
            std::mem::take(&mut self.nmea_out)
        } else {
            Vec::new()
        }
    }

    fn take_session_output(&mut self, sess: usize) -> Vec<u8> {
        let o = if sess == self.cur {
            std::mem::take(&mut self.s.out)
        } else {
            match self.parked.get_mut(sess) {
                Some(p) => std::mem::take(&mut p.out),
                None => Vec::new(),
            }
        };
        self.metrics.bytes_out += o.len() as u64;
        o
    }

    /// Makes session `sess` the active one.
    fn switch(&mut self, sess: usize) {
        if sess == self.cur || sess >= self.parked.len() {
            return;
        }
        std::mem::swap(&mut self.s, &mut self.parked[self.cur]);
        std::mem::swap(&mut self.s, &mut self.parked[sess]);
        self.cur = sess;
    }

    /// The output buffer of the port that gets URCs (`None`: a port nobody sees).
    fn urc_out(&mut self) -> Option<&mut Vec<u8>> {
        if self.urc_port == self.cur {
            Some(&mut self.s.out)
        } else {
            self.parked.get_mut(self.urc_port).map(|p| &mut p.out)
        }
    }

    /// What the modem asked of the network and the bank since the last call; the IO
    /// task passes them to [`Network::on_event`](crate::network::Network::on_event).
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
        add(self.s.pending_send.as_ref().map(|p| p.at));
        for p in &self.parked {
            add(p.pending_send.as_ref().map(|p| p.at));
        }
        add(self.pending_acks.front().map(|a| a.deadline));
        add(self.ussd_due.as_ref().map(|u| u.0));
        add(self.sim_busy_until);
        add(self.next_boot_urc);
        add(self.boot_queue.front().map(|b| b.0));
        add(self.call.as_ref().filter(|c| !c.answered).map(|c| c.next));
        add(self.nmea_next);
        t
    }

    /// Does whatever is due at `now`: finishes delayed sends, gives up on unacknowledged
    /// deliveries, says boot/USSD/call URCs and NMEA sentences.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(b) = self.sim_busy_until
            && b <= now
        {
            self.sim_busy_until = None;
            self.check_reg_change(now);
        }
        for sess in 0..self.parked.len() {
            let due = if sess == self.cur {
                self.s.pending_send.as_ref().is_some_and(|p| p.at <= now)
            } else {
                self.parked[sess]
                    .pending_send
                    .as_ref()
                    .is_some_and(|p| p.at <= now)
            };
            if due {
                self.switch(sess);
                if let Some(p) = self.s.pending_send.take() {
                    self.finish_send(p.result, now);
                }
            }
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
        while self.boot_queue.front().is_some_and(|b| b.0 <= now) {
            if let Some((_, line)) = self.boot_queue.pop_front()
                && !self.hung
            {
                self.urc(line);
            }
        }
        self.ring_tick(now);
        if let Some(t) = self.nmea_next
            && t <= now
        {
            self.nmea_next = Some(now + Duration::from_secs(1));
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let line = crate::zoo::gpgga(secs);
            self.nmea_out.extend_from_slice(line.as_bytes());
            self.nmea_out.extend_from_slice(b"\r\n");
            if self.nmea_out.len() > 16 * 1024 {
                let cut = self.nmea_out.len() - 16 * 1024;
                self.nmea_out.drain(..cut);
            }
        }
    }

    fn raw(&mut self, b: &[u8]) {
        self.s.out.extend_from_slice(b);
    }

    /// Unsolicited bytes, on the URC port only.
    fn urc_raw(&mut self, b: &[u8]) {
        if let Some(o) = self.urc_out() {
            o.extend_from_slice(b);
        }
    }

    fn urc(&mut self, line: &str) {
        if let Some(o) = self.urc_out() {
            o.extend_from_slice(b"\r\n");
            o.extend_from_slice(line.as_bytes());
            o.extend_from_slice(b"\r\n");
        }
    }

    fn final_result(&mut self, f: Result<(), Final>) {
        if self.s.quiet {
            return;
        }
        if f.is_err() {
            self.metrics.errors += 1;
        }
        let text = match f {
            Ok(()) => "OK".to_string(),
            Err(Final::Error) => "ERROR".to_string(),
            Err(Final::Cme(n)) => match self.s.cmee {
                0 => "ERROR".to_string(),
                1 => format!("+CME ERROR: {n}"),
                _ => format!("+CME ERROR: {}", cme_text(n)),
            },
            Err(Final::Cms(n)) => format!("+CMS ERROR: {n}"),
            Err(Final::Unsupported) => self.profile.quirks.unsupported_word.to_string(),
            Err(Final::Raw(t)) => t.to_string(),
        };
        if self.s.verbose {
            self.raw(b"\r\n");
            self.raw(text.as_bytes());
            self.raw(b"\r\n");
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
        self.s.out.extend_from_slice(s.as_bytes());
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
        self.s.out.extend_from_slice(&g);
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

    /// The standing faults, one per kind.
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
            Fault::Ring {
                from,
                count,
                interval_ms,
                cms_error,
            } => {
                self.ring(
                    RingSpec {
                        from: from.clone(),
                        count: *count,
                        interval_ms: *interval_ms,
                        cms_error: *cms_error,
                    },
                    now,
                );
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
        let (head, body) = match (inbound.kind, self.s.cmgf) {
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
        if inbound.kind == InboundKind::StatusReport && self.s.cmgf == 1 {
            self.urc(&head);
        } else if self.s.cmgf == 0 && self.take_garbled_pdu() {
            self.urc(&head);
            let noise: Vec<u8> = body
                .bytes()
                .enumerate()
                .map(|(i, b)| if i % 5 == 2 { 0xFF } else { b })
                .collect();
            self.urc_raw(&noise);
            self.urc_raw(b"\r\n");
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
        if self.s.cscs == "UCS2" {
            let u: Vec<u16> = s.encode_utf16().collect();
            u.iter().map(|x| format!("{x:04X}")).collect()
        } else if self.s.cscs == "HEX" {
            pdu::to_hex(s.as_bytes())
        } else {
            s.chars()
                .map(|c| {
                    if c.is_ascii() || self.s.cscs != "IRA" {
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
        if self.s.cscs == "UCS2" {
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

    /// Bytes from the host on the primary AT port.
    pub fn input(&mut self, bytes: &[u8], now: Instant) {
        self.metrics.bytes_in += bytes.len() as u64;
        self.switch(0);
        self.feed(bytes, now);
    }

    /// Bytes from the host on port `port` of [`Modem::ports`]; ports that do not speak
    /// AT swallow them.
    pub fn input_port(&mut self, port: usize, bytes: &[u8], now: Instant) {
        self.metrics.bytes_in += bytes.len() as u64;
        if let Some(sess) = self.at_ports.iter().position(|&p| p == port) {
            self.switch(sess);
            self.feed(bytes, now);
        }
    }

    /// Bytes for the active session.
    fn feed(&mut self, bytes: &[u8], now: Instant) {
        if self.s.pending_send.is_some() {
            // Busy sending: a real modem reads these only after it answered.
            self.s.deferred_input.extend_from_slice(bytes);
            return;
        }
        for (i, &b) in bytes.iter().enumerate() {
            self.input_byte(b, now);
            for l in std::mem::take(&mut self.after_final) {
                self.urc(l);
            }
            if self.s.pending_send.is_some() {
                self.s.deferred_input.extend_from_slice(&bytes[i + 1..]);
                return;
            }
        }
    }

    fn input_byte(&mut self, b: u8, now: Instant) {
        let echo = self.s.echo && !self.hung;
        match &mut self.s.input {
            Input::Line(buf) => {
                match b {
                    b'\r' => {
                        let line = std::mem::take(buf);
                        if echo {
                            self.s.out.push(b);
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
                    self.s.out.push(b);
                }
            }
            Input::Body { buf, target } => match b {
                CTRL_Z => {
                    let body = std::mem::take(buf);
                    let target = target.clone();
                    self.s.input = Input::Line(Vec::new());
                    if echo {
                        self.s.out.push(b);
                    }
                    self.body(body, target, now);
                }
                ESC => {
                    self.s.input = Input::Line(Vec::new());
                    self.final_result(Ok(()));
                }
                _ => {
                    if buf.len() < 4096 {
                        buf.push(b);
                    }
                    if echo {
                        self.s.out.push(b);
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
        if self.device_busy > 0 {
            // Still recovering from AT+CFUN=1 (Wavecom): every line is refused.
            self.device_busy -= 1;
            self.final_result(Err(Final::Raw("+CME ERROR: 515")));
            return;
        }
        for c in cmds {
            match self.command(&c, now) {
                Ok(Reply::Lines(l)) => self.info(&l),
                Ok(Reply::Prompt(target)) => {
                    let p = self.profile.prompt;
                    self.raw(p);
                    self.maybe_urc_noise();
                    self.s.input = Input::Body {
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
            Command::Ext { name, form } => {
                if let Some(r) = self.canned(name, form) {
                    return r;
                }
                self.ext(name, form, now)
            }
        }
    }

    /// A recorded fixed answer of this model, if it has one for this command.
    fn canned(&mut self, name: &str, form: &Form) -> Option<Result<Reply, Final>> {
        let table = self.profile.quirks.canned;
        if table.is_empty() {
            return None;
        }
        let key = match form {
            Form::Action => name.to_string(),
            Form::Test => format!("{name}=?"),
            Form::Read => format!("{name}?"),
            Form::Set(a) => format!("{name}={a}"),
        };
        let c = table.iter().find(|c| match c.cmd.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix) && !key.ends_with("=?"),
            None => c.cmd == key,
        })?;
        if !c.lines.is_empty() {
            if c.eol == "\r\n" {
                let l: Vec<String> = c.lines.iter().map(|x| x.to_string()).collect();
                self.info(&l);
            } else {
                self.raw(b"\r\n");
                for l in c.lines {
                    self.raw(l.as_bytes());
                    self.raw(c.eol.as_bytes());
                }
            }
        }
        Some(match c.end {
            crate::zoo::End::Ok => Ok(Reply::Lines(vec![])),
            crate::zoo::End::Error => Err(Final::Error),
            crate::zoo::End::Unsupported => Err(Final::Unsupported),
            crate::zoo::End::Nothing => Ok(Reply::Deferred),
        })
    }

    fn basic(&mut self, name: &str, arg: &str) -> Result<Reply, Final> {
        let n: u32 = arg.parse().unwrap_or(0);
        match name {
            "E" => match n {
                // Some firmware (SIMCom A7672) says OK and keeps echoing.
                0 => self.s.echo = self.profile.quirks.sticky_echo,
                1 => self.s.echo = true,
                _ => return Err(Final::Error),
            },
            "V" => self.s.verbose = n == 1,
            "Q" => self.s.quiet = n == 1,
            "Z" | "&F" => {
                self.s.echo = true;
                self.s.verbose = true;
                self.s.quiet = false;
                self.s.cmee = 0;
                self.s.cmgf = 0;
                self.s.cscs = "IRA".into();
                self.cnmi = self.profile.quirks.cnmi_default;
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
            "H" => self.hang_up("ATH"),
            "A" => match self.call.as_mut() {
                Some(c) if !c.answered => c.answered = true,
                _ => return Err(Final::Error),
            },
            "X" | "&C" | "&D" | "&W" | "&K" | "L" | "M" => {}
            "D" => return Err(Final::Error),
            s if s.starts_with('S') => {
                if arg == "?" {
                    return Ok(Reply::Lines(vec!["000".into()]));
                }
            }
            _ => return Err(Final::Unsupported),
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
                match p.quirks.ccid {
                    CcidStyle::Bare => lines(vec![self.identity.iccid.clone()]),
                    CcidStyle::Prefixed => lines(vec![format!("+CCID: {}", self.identity.iccid)]),
                    CcidStyle::Unsupported => Err(Final::Unsupported),
                }
            }
            (n, f)
                if p.quirks.vendor_iccid.is_some_and(|v| {
                    v.cmd == n
                        && (if v.read_form {
                            *f == Form::Read
                        } else {
                            *f == Form::Action
                        })
                }) =>
            {
                self.sim_cme(now)?;
                let Some(v) = p.quirks.vendor_iccid else {
                    return Err(Final::Unsupported);
                };
                // Some firmware reports the ICCID as stored on the SIM: nibble-swapped BCD.
                let id = if v.swapped {
                    crate::zoo::swap_nibbles(&self.identity.iccid)
                } else {
                    self.identity.iccid.clone()
                };
                lines(vec![format!("{}{id}", v.prefix)])
            }
            ("+CRSM", Form::Set(_)) if p.quirks.crsm => {
                self.sim_cme(now)?;
                let ps = set(form)?;
                let v: Vec<Option<i64>> = ps.iter().map(|x| x.num()).collect();
                if v.first() == Some(&Some(176)) && v.get(1) == Some(&Some(12258)) {
                    // READ BINARY of EF_ICCID (2FE2): the raw bytes, nibble-swapped.
                    let hex = crate::zoo::swap_nibbles(&self.identity.iccid);
                    lines(vec![format!("+CRSM: 144,0,\"{hex}\"")])
                } else {
                    // 6A82: file not found.
                    lines(vec!["+CRSM: 106,130".into()])
                }
            }
            ("+CRSM", Form::Test) if p.quirks.crsm => none(),
            ("^USSDMODE", Form::Set(_)) if p.quirks.ussdmode_gate => {
                self.ussdmode = num_in(&set(form)?, 0, 0..=1, 1)? as u8;
                none()
            }
            ("^USSDMODE", Form::Read) if p.quirks.ussdmode_gate => {
                lines(vec![format!("^USSDMODE: {}", self.ussdmode)])
            }
            ("+WIND", Form::Set(_)) if p.quirks.call_urcs == CallUrcs::Wavecom => {
                let ps = set(form)?;
                self.wind = ps
                    .first()
                    .and_then(|x| x.num())
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or(Final::Error)?;
                none()
            }
            ("+WIND", Form::Read) if p.quirks.call_urcs == CallUrcs::Wavecom => {
                lines(vec![format!("+WIND: {}", self.wind)])
            }
            ("#QSS", Form::Set(_)) if p.quirks.telit_qss => {
                self.qss = num_in(&set(form)?, 0, 0..=2, 0)? as u8;
                none()
            }
            ("#QSS", Form::Read) if p.quirks.telit_qss => {
                let status = match self.sim {
                    Sim::Ready if !self.sim_busy(now) => 3,
                    Sim::Ready => 1,
                    Sim::Pin { .. } | Sim::Puk { .. } => 1,
                    Sim::Blocked => 0,
                };
                lines(vec![format!("#QSS: {},{status}", self.qss)])
            }
            ("#QSS", Form::Test) if p.quirks.telit_qss => lines(vec!["#QSS: (0-2)".into()]),
            ("+QURCCFG", Form::Set(_)) if p.quirks.quectel_urcport => {
                let ps = set(form)?;
                let what = ps.first().and_then(|x| x.text()).unwrap_or("");
                if !what.eq_ignore_ascii_case("urcport") {
                    return Err(Final::Cme(50));
                }
                match ps
                    .get(1)
                    .and_then(|x| x.text())
                    .map(str::to_ascii_lowercase)
                {
                    None => {
                        let name = match self.urc_port {
                            0 => "usbat",
                            usize::MAX => "uart1",
                            _ => "usbmodem",
                        };
                        lines(vec![format!("+QURCCFG: \"urcport\",\"{name}\"")])
                    }
                    Some(v) => {
                        self.urc_port = match v.as_str() {
                            "usbat" => 0,
                            "usbmodem" => 1.min(self.parked.len().saturating_sub(1)),
                            "uart1" => usize::MAX,
                            _ => return Err(Final::Cme(50)),
                        };
                        none()
                    }
                }
            }
            ("+QGPS", Form::Set(_)) if p.quirks.gps == Gps::Quectel => {
                let on = num_in(&set(form)?, 0, 1..=1, 1)?;
                self.gps(on == 1, now);
                none()
            }
            ("+QGPS", Form::Read) if p.quirks.gps == Gps::Quectel => lines(vec![format!(
                "+QGPS: {}",
                u8::from(self.nmea_next.is_some())
            )]),
            ("+QGPSEND", Form::Action) if p.quirks.gps == Gps::Quectel => {
                self.gps(false, now);
                none()
            }
            ("+CGPS", Form::Set(_)) if p.quirks.gps == Gps::Simcom => {
                let on = num_in(&set(form)?, 0, 0..=1, 1)?;
                self.gps(on == 1, now);
                none()
            }
            ("+CGPS", Form::Read) if p.quirks.gps == Gps::Simcom => lines(vec![format!(
                "+CGPS: {},1",
                u8::from(self.nmea_next.is_some())
            )]),
            ("+CHUP", Form::Action) => {
                self.hang_up("AT+CHUP");
                none()
            }
            ("+CLIP", Form::Set(_)) => {
                self.clip = num_in(&set(form)?, 0, 0..=1, 0)? as u8;
                none()
            }
            ("+CLIP", Form::Read) => lines(vec![format!("+CLIP: {},1", self.clip)]),
            ("+CRC", Form::Set(_)) => {
                self.crc = num_in(&set(form)?, 0, 0..=1, 0)? as u8;
                none()
            }
            ("+CRC", Form::Read) => lines(vec![format!("+CRC: {}", self.crc)]),
            ("+CLCC", Form::Action) => {
                let l = match &self.call {
                    Some(c) => {
                        let toa = if c.spec.from.starts_with('+') {
                            145
                        } else {
                            129
                        };
                        let stat = if c.answered { 0 } else { 4 };
                        vec![format!("+CLCC: 1,1,{stat},0,0,\"{}\",{toa}", c.spec.from)]
                    }
                    None => vec![],
                };
                lines(l)
            }
            ("+CMEE", Form::Read) => lines(vec![format!("+CMEE: {}", self.s.cmee)]),
            ("+CMEE", Form::Test) => lines(vec!["+CMEE: (0-2)".into()]),
            ("+CMEE", Form::Set(_)) => {
                let v = num_in(&set(form)?, 0, 0..=2, 0)?;
                self.s.cmee = v as u8;
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
                if p.quirks.cpin_no_final {
                    // Recorded Wavecom behaviour: the information line and no OK.
                    self.info(&[format!("+CPIN: {s}")]);
                    return Ok(Reply::Deferred);
                }
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
                    let oper = match self.s.cops_format {
                        2 => "00101",
                        1 => "HWSIM",
                        _ => "HW-SIM",
                    };
                    lines(vec![format!(
                        "+COPS: 0,{},\"{oper}\",{}",
                        self.s.cops_format, p.act
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
                let fmt = num_in(&ps, 1, 0..=2, i64::from(self.s.cops_format))?;
                if mode == 3 || ps.len() > 1 {
                    self.s.cops_format = fmt as u8;
                }
                none()
            }
            ("+CMGF", Form::Read) => lines(vec![format!("+CMGF: {}", self.s.cmgf)]),
            ("+CMGF", Form::Test) => lines(vec!["+CMGF: (0,1)".into()]),
            ("+CMGF", Form::Set(_)) => {
                self.s.cmgf = num_in(&set(form)?, 0, 0..=1, 0)? as u8;
                none()
            }
            ("+CSCS", Form::Read) => lines(vec![format!("+CSCS: \"{}\"", self.s.cscs)]),
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
                self.s.cscs = cs;
                none()
            }
            ("+CSCA", Form::Read) => {
                self.sim_cms(now)?;
                if self.csca_busy > 0 {
                    self.csca_busy -= 1;
                    return Err(Final::Raw("+CME ERROR: 14"));
                }
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
                let n = if p.quirks.cpms_pairs_as_given {
                    ps.len()
                } else {
                    3
                };
                lines(vec![format!("+CPMS: {}", v[..n].join(","))])
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
                if p.quirks.csmp_clears_smsc {
                    // Recorded on Qualcomm/ZTE firmware: setting +CSMP loses the SMSC.
                    self.csca = None;
                }
                for (i, prm) in ps.iter().enumerate().take(4) {
                    if let Some(v) = prm.num() {
                        self.csmp[i] = u8::try_from(v).map_err(|_| Final::Cms(303))?;
                    }
                }
                none()
            }
            ("+CSDH", Form::Read) => lines(vec![format!("+CSDH: {}", self.s.csdh)]),
            ("+CSDH", Form::Test) => lines(vec!["+CSDH: (0,1)".into()]),
            ("+CSDH", Form::Set(_)) => {
                self.s.csdh = num_in(&set(form)?, 0, 0..=1, 0)? as u8;
                none()
            }
            ("+CMGS", Form::Test) => none(),
            ("+CMGS", Form::Set(_)) => {
                self.sim_cms(now)?;
                self.call_blocks_sms()?;
                let ps = set(form)?;
                if self.s.cmgf == 0 {
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
                if self.s.cmgf == 0 {
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
                self.call_blocks_sms()?;
                let ps = set(form)?;
                let stat = match (self.s.cmgf, ps.first()) {
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
                    if !body.is_empty() || self.s.cmgf == 1 {
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
                self.call_blocks_sms()?;
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
                    if p.quirks.ussdmode_gate && self.ussdmode == 1 {
                        // Huawei E1752: text USSD is refused until AT^USSDMODE=0.
                        return Err(Final::Error);
                    }
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
                if fun == 1 {
                    self.device_busy = p.quirks.busy_after_cfun;
                }
                none()
            }
            ("+CPAS", Form::Action) => lines(vec!["+CPAS: 0".into()]),
            ("+CVHU" | "+CMER" | "+CLCC" | "+CSSN", Form::Set(_)) => none(),
            ("^CURC", Form::Set(_)) if p.huawei_urcs => none(),
            _ => Err(Final::Unsupported),
        }
    }

    // ----- calls -----

    /// An incoming call: `RING` (or `+CRING: VOICE` after `AT+CRC=1`) and `+CLIP`
    /// (after `AT+CLIP=1`) on the URC port now and every `interval_ms`, until the host
    /// hangs up (`ATH`, `AT+CHUP`) or the caller gives up after `count` rings. Returns
    /// the call id. A call already in progress is replaced (recorded as missed).
    pub fn ring(&mut self, spec: RingSpec, now: Instant) -> u64 {
        if let Some(c) = self.call.take() {
            self.end_call(c, CallOutcome::Missed, None, true);
        }
        let id = self.next_call_id;
        self.next_call_id += 1;
        self.metrics.calls += 1;
        self.calls.push(CallRecord {
            id,
            from: spec.from.clone(),
            rings: 0,
            answered: false,
            outcome: CallOutcome::Ringing,
            ended_by: None,
            ended_on_port: None,
        });
        if self.calls.len() > 1000 {
            self.calls.remove(0);
        }
        if self.profile.quirks.call_urcs == CallUrcs::Wavecom && self.wind != 0 && !self.hung {
            self.urc("+WIND: 5,1");
        }
        self.call = Some(Call {
            id,
            spec,
            rings: 0,
            answered: false,
            next: now,
        });
        self.ring_tick(now);
        id
    }

    /// Every call this modem saw (the latest 1000), oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls.clone()
    }

    fn ring_tick(&mut self, now: Instant) {
        let Some(c) = self.call.as_mut() else {
            return;
        };
        if c.answered || c.next > now {
            return;
        }
        if c.rings >= c.spec.count {
            if let Some(c) = self.call.take() {
                self.end_call(c, CallOutcome::Missed, None, true);
            }
            return;
        }
        c.rings += 1;
        c.next = now + Duration::from_millis(c.spec.interval_ms.max(1));
        let (id, rings, from) = (c.id, c.rings, c.spec.from.clone());
        if let Some(r) = self.calls.iter_mut().rev().find(|r| r.id == id) {
            r.rings = rings;
        }
        if self.hung {
            return;
        }
        self.metrics.rings += 1;
        let ring = if self.crc == 1 {
            "+CRING: VOICE"
        } else {
            "RING"
        };
        self.urc(ring);
        if self.clip == 1 {
            let toa = if from.starts_with('+') { 145 } else { 129 };
            let tail = self.profile.quirks.clip_tail;
            self.urc(&format!("+CLIP: \"{from}\",{toa}{tail}"));
        }
    }

    /// `ATH`/`AT+CHUP`: ends a call if there is one (always `OK`).
    fn hang_up(&mut self, by: &str) {
        if let Some(c) = self.call.take() {
            self.end_call(c, CallOutcome::HungUp, Some(by), true);
        }
    }

    fn end_call(&mut self, c: Call, outcome: CallOutcome, by: Option<&str>, urcs: bool) {
        match outcome {
            CallOutcome::HungUp => self.metrics.calls_hung_up += 1,
            CallOutcome::Missed => self.metrics.calls_missed += 1,
            _ => {}
        }
        let port = by.map(|_| self.cur);
        if let Some(r) = self.calls.iter_mut().rev().find(|r| r.id == c.id) {
            r.rings = c.rings;
            r.answered = c.answered;
            r.outcome = outcome;
            r.ended_by = by.map(str::to_string);
            r.ended_on_port = port;
        }
        if !urcs || self.hung {
            return;
        }
        let line = match self.profile.quirks.call_urcs {
            CallUrcs::Huawei => "^CEND:1,0,29,16",
            CallUrcs::Wavecom if self.wind != 0 => "+WIND: 6,1",
            _ => return,
        };
        if by.is_some() {
            self.after_final.push(line);
        } else {
            self.urc(line);
        }
    }

    /// While a call rings, some firmware refuses SMS commands (per the ring request).
    fn call_blocks_sms(&self) -> Result<(), Final> {
        match &self.call {
            Some(c) if !c.answered => match c.spec.cms_error {
                Some(code) => Err(Final::Cms(code)),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn gps(&mut self, on: bool, now: Instant) {
        self.nmea_next = if on && self.nmea_port.is_some() {
            Some(now)
        } else {
            None
        };
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
        if self.s.cmgf == 0 {
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
                let extra = if self.s.csdh == 1 {
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
        self.metrics.sms_payloads += 1;
        self.s.pending_send = Some(PendingSend {
            at: now + Duration::from_millis(latency),
            result,
        });
        if latency == 0
            && let Some(p) = self.s.pending_send.take()
        {
            self.finish_send(p.result, now);
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
        let rest = std::mem::take(&mut self.s.deferred_input);
        if !rest.is_empty() {
            self.metrics.bytes_in -= rest.len() as u64;
            self.feed(&rest, now);
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
