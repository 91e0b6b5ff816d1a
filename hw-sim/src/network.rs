//! The simulated GSM network between the modems of a bank and the outside world.
//!
//! Owns: routing submitted messages by MSISDN (as SMS-DELIVER to another modem, or to
//! the outside sink, reassembled), status reports after a delay, redelivery of messages
//! that were not acknowledged or could not be delivered, inbound messages injected from
//! outside (split into parts, duplicated or reordered per fault), and the per-modem
//! cells the IO tasks and the control API share. Locks are never held across an await
//! and never two modem locks at once.

use crate::fault::NetworkSettings;
use crate::modem::{Event, Inbound, InboundKind, Modem, Submission};
use crate::pdu::{self, Address, DeliverSpec, Payload};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc};

/// Requests to a modem's IO task that the state machine cannot carry out itself.
#[derive(Debug)]
pub enum IoCmd {
    /// Close every port of the device, remove its links, and bring them back after a
    /// pause (unplug, `AT+CFUN=1,1`).
    Replug {
        /// How long the device stays away, ms.
        down_ms: u64,
    },
}

/// Where a modem's ports are right now.
#[derive(Debug, Clone, Default)]
pub struct IoState {
    /// The ports are open and linked; while false, deliveries to the modem wait for
    /// redelivery and the control API shows it as unplugged.
    pub online: bool,
    /// The primary AT port's `/dev/pts/N`.
    pub pty: Option<PathBuf>,
    /// Every port's `/dev/pts/N`, in layout order.
    pub ports: Vec<Option<PathBuf>>,
}

/// One tty of a device and the symlinks that name it.
#[derive(Debug, Clone)]
pub struct PortLinks {
    /// The tty's interface number, role and URC flag.
    pub spec: crate::zoo::PortSpec,
    /// `DIR/modem<i>-if<NN>`, and first `DIR/modem<i>` for the primary AT port.
    pub links: Vec<PathBuf>,
}

/// One modem as the network, its IO task and the control API share it.
pub struct ModemCell {
    /// The state machine; lock with [`lock`], never across an await.
    pub modem: Mutex<Modem>,
    /// Wakes the IO task when someone else changed the modem (delivery, fault).
    pub notify: Notify,
    /// Where the ports are now, kept by the IO task.
    pub io: Mutex<IoState>,
    /// Requests to the modem's IO task.
    pub ctl: mpsc::UnboundedSender<IoCmd>,
    /// `DIR/modem<i>`: the primary AT port.
    pub link: PathBuf,
    /// The device's ttys in layout order (one for a serial modem).
    pub ports: Vec<PortLinks>,
    /// Index in `ports` of the primary AT port.
    pub primary: usize,
}

/// Poison-tolerant lock: a panicking test thread must not wedge the whole bank.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A message that left the bank for a number outside it, reassembled.
#[derive(Debug, Clone, Serialize)]
pub struct OutsideMessage {
    /// Unique within the bank, increasing in arrival order.
    pub id: u64,
    /// Index of the modem that sent it.
    pub modem: usize,
    /// The sending modem's MSISDN.
    pub from: String,
    /// TP-DA as the modem sent it.
    pub to: String,
    /// The user data of all parts joined, headers removed.
    pub text: String,
    /// How many SMS-SUBMITs it took (1 for a single message).
    pub parts: usize,
    /// TP-SRR was set on at least one part.
    pub status_report_requested: bool,
    /// RFC 3339 UTC time the last part arrived.
    pub at: String,
    /// Each part's TPDU (SMS-SUBMIT as the modem sent it, MR filled in), hex.
    pub pdus: Vec<String>,
    /// Each part's TP-MR, for matching status reports.
    pub mrs: Vec<u8>,
}

struct PendingParts {
    parts: Vec<Option<(Payload, String, u8)>>,
    srr: bool,
}

#[derive(Default)]
struct NetState {
    outside: Vec<OutsideMessage>,
    pending: HashMap<(usize, String, u16, u8), PendingParts>,
    next_ref: u8,
}

/// Counters for `GET /metrics`.
#[derive(Debug, Default, Serialize, Clone)]
pub struct NetMetrics {
    /// SMS-SUBMITs addressed outside the bank.
    pub outside_parts: u64,
    /// Outside messages complete after reassembly (what [`Network::outside`] lists).
    pub outside_messages: u64,
    /// SMS-SUBMITs addressed to another modem of the bank.
    pub bank_parts: u64,
    /// Status reports generated (whether or not delivered yet).
    pub status_reports: u64,
    /// Deliveries put back for a later try (not acknowledged, modem unreachable,
    /// storage full).
    pub redeliveries: u64,
    /// Messages injected from outside (`POST /inbound`), counted once however many
    /// parts.
    pub inbound_injected: u64,
}

/// The network of one bank: routes, delays and redelivers messages between its modems
/// and the outside sink.
pub struct Network {
    /// Delays and status-report defaults, fixed at start.
    pub settings: NetworkSettings,
    /// The bank's modems, by index.
    pub cells: Vec<Arc<ModemCell>>,
    by_msisdn: HashMap<String, usize>,
    state: Mutex<NetState>,
    rng: Mutex<StdRng>,
    next_id: AtomicU64,
    /// Set at shutdown: deliveries still pending are dropped.
    pub closed: AtomicBool,
    runtime: tokio::runtime::Handle,
    metrics: Mutex<NetMetrics>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 for a Unix time, UTC.
pub fn rfc3339(unix: u64) -> String {
    let t = pdu::scts_text(unix); // yy/MM/dd,hh:mm:ss+00
    let (date, time) = t.split_once(',').unwrap_or(("00/01/01", "00:00:00+00"));
    format!(
        "20{}T{}Z",
        date.replace('/', "-"),
        time.get(..8).unwrap_or("00:00:00")
    )
}

/// Digits of a number, for matching `+4915…`, `004915…` and `4915…` alike.
fn norm(n: &str) -> String {
    let d = n.strip_prefix('+').unwrap_or(n);
    let d = d.strip_prefix("00").unwrap_or(d);
    d.to_string()
}

impl Network {
    /// A network over `cells`; `seed` drives the duplicate/reorder faults. Must be
    /// called inside a tokio runtime, which runs the delayed deliveries.
    pub fn new(settings: NetworkSettings, cells: Vec<Arc<ModemCell>>, seed: u64) -> Network {
        let by_msisdn = cells
            .iter()
            .enumerate()
            .map(|(i, c)| (norm(&lock(&c.modem).identity.msisdn), i))
            .collect();
        Network {
            settings,
            cells,
            by_msisdn,
            state: Mutex::new(NetState::default()),
            rng: Mutex::new(StdRng::seed_from_u64(seed.wrapping_add(0x5EED))),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            runtime: tokio::runtime::Handle::current(),
            metrics: Mutex::new(NetMetrics::default()),
        }
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> NetMetrics {
        lock(&self.metrics).clone()
    }

    /// Every message that left the bank so far, oldest first.
    pub fn outside(&self) -> Vec<OutsideMessage> {
        lock(&self.state).outside.clone()
    }

    /// Forgets the outside messages (parts still awaiting reassembly are kept).
    pub fn clear_outside(&self) {
        lock(&self.state).outside.clear();
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Handles what a modem's state machine asked for (called by its IO task with no
    /// lock held).
    pub fn on_event(self: &Arc<Self>, from: usize, ev: Event) {
        match ev {
            Event::Submitted(s) => self.submitted(s),
            Event::NotAcked(inb) => {
                lock(&self.metrics).redeliveries += 1;
                self.deliver_later(from, inb, self.settings.redeliver_ms);
            }
            Event::Replug { down_ms } => {
                if let Some(c) = self.cells.get(from) {
                    let _ = c.ctl.send(IoCmd::Replug { down_ms });
                }
            }
        }
    }

    fn submitted(self: &Arc<Self>, s: Submission) {
        let now = unix_now();
        let from_msisdn = self
            .cells
            .get(s.from)
            .map(|c| lock(&c.modem).identity.msisdn.clone())
            .unwrap_or_default();
        let to = s.submit.da.number.clone();
        if let Some(&target) = self.by_msisdn.get(&norm(&to)) {
            lock(&self.metrics).bank_parts += 1;
            let spec = DeliverSpec {
                oa: Address::parse(&from_msisdn),
                pid: s.submit.pid,
                dcs: s.submit.dcs,
                scts: pdu::scts(now),
                udhi: s.submit.udhi(),
                sri: false,
                udl: s.submit.udl,
                ud: s.submit.ud.clone(),
            };
            let inb = Inbound {
                id: self.id(),
                kind: InboundKind::Sms,
                tpdu: pdu::encode_deliver(&spec),
                addr: from_msisdn.clone(),
                scts_unix: now,
                text: s.submit.payload.text(),
                report: None,
            };
            self.deliver_later(target, inb, self.settings.delivery_delay_ms);
        } else {
            lock(&self.metrics).outside_parts += 1;
            self.sink(&s, &from_msisdn, now);
        }
        if s.submit.srr() {
            let (st, delay) = match s.status_override {
                Some((st, d)) => (st, d.unwrap_or(self.settings.status_report_delay_ms)),
                None => (
                    self.settings.status_report_status,
                    self.settings.status_report_delay_ms,
                ),
            };
            let ra = s.submit.da.clone();
            let tpdu = pdu::encode_status_report(
                s.mr,
                &ra,
                pdu::scts(now),
                pdu::scts(now + delay / 1000),
                st,
            );
            let inb = Inbound {
                id: self.id(),
                kind: InboundKind::StatusReport,
                tpdu,
                addr: ra.number.clone(),
                scts_unix: now,
                text: String::new(),
                report: Some((s.mr, st)),
            };
            lock(&self.metrics).status_reports += 1;
            self.deliver_later(s.from, inb, delay);
        }
    }

    fn sink(&self, s: &Submission, from: &str, now: u64) {
        let hex = pdu::to_hex(&s.tpdu);
        let mut st = lock(&self.state);
        let msg = match s.submit.concat {
            Some(c) if c.total > 1 && c.seq >= 1 && c.seq <= c.total => {
                let key = (s.from, norm(&s.submit.da.number), c.reference, c.total);
                let e = st
                    .pending
                    .entry(key.clone())
                    .or_insert_with(|| PendingParts {
                        parts: vec![None; usize::from(c.total)],
                        srr: false,
                    });
                e.srr |= s.submit.srr();
                let slot = &mut e.parts[usize::from(c.seq - 1)];
                if slot.is_none() {
                    *slot = Some((s.submit.payload.clone(), hex, s.mr));
                }
                if e.parts.iter().all(|p| p.is_some()) {
                    let done = st.pending.remove(&key);
                    done.map(|d| {
                        let parts: Vec<(Payload, String, u8)> =
                            d.parts.into_iter().flatten().collect();
                        let payloads: Vec<&Payload> = parts.iter().map(|p| &p.0).collect();
                        (
                            Payload::join_text(&payloads),
                            parts.iter().map(|p| p.1.clone()).collect::<Vec<_>>(),
                            parts.iter().map(|p| p.2).collect::<Vec<_>>(),
                            d.srr,
                        )
                    })
                } else {
                    None
                }
            }
            _ => Some((
                s.submit.payload.text(),
                vec![hex],
                vec![s.mr],
                s.submit.srr(),
            )),
        };
        if let Some((text, pdus, mrs, srr)) = msg {
            let id = self.id();
            st.outside.push(OutsideMessage {
                id,
                modem: s.from,
                from: from.to_string(),
                to: s.submit.da.number.clone(),
                text,
                parts: pdus.len(),
                status_report_requested: srr,
                at: rfc3339(now),
                pdus,
                mrs,
            });
            drop(st);
            lock(&self.metrics).outside_messages += 1;
        }
    }

    fn deliver_later(self: &Arc<Self>, target: usize, inb: Inbound, delay_ms: u64) {
        let me = Arc::clone(self);
        self.runtime.spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            me.deliver_now(target, inb);
        });
    }

    /// Delivers now, or retries after `redeliver_ms` while the modem cannot take it.
    pub fn deliver_now(self: &Arc<Self>, target: usize, inb: Inbound) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let Some(cell) = self.cells.get(target) else {
            return;
        };
        let online = lock(&cell.io).online;
        let r = if online {
            lock(&cell.modem).deliver(inb.clone(), Instant::now())
        } else {
            Err(crate::modem::DeliverError::Unreachable)
        };
        cell.notify.notify_one();
        if r.is_err() {
            lock(&self.metrics).redeliveries += 1;
            self.deliver_later(target, inb, self.settings.redeliver_ms);
        }
    }

    /// An SMS from outside (`from` may be a number or an alphanumeric sender) to a
    /// modem, split into parts as needed. Returns the number of parts.
    pub fn inject(
        self: &Arc<Self>,
        target: usize,
        from: &str,
        text: &str,
    ) -> Result<usize, String> {
        let cell = self
            .cells
            .get(target)
            .ok_or_else(|| format!("no modem {target}"))?;
        if from.is_empty() {
            return Err("empty sender".into());
        }
        let oa = Address::parse(from);
        let reference = {
            let mut st = lock(&self.state);
            st.next_ref = st.next_ref.wrapping_add(1);
            st.next_ref
        };
        let (dcs, parts) = pdu::encode_text_parts(text, reference);
        if parts.len() > 255 {
            return Err("text too long".into());
        }
        let now = unix_now();
        let mut inbound: Vec<Inbound> = parts
            .iter()
            .map(|(udl, ud, udhi)| {
                let tpdu = pdu::encode_deliver(&DeliverSpec {
                    oa: oa.clone(),
                    pid: 0,
                    dcs,
                    scts: pdu::scts(now),
                    udhi: *udhi,
                    sri: false,
                    udl: *udl,
                    ud: ud.clone(),
                });
                let part_text = pdu::decode_deliver_text(&tpdu).unwrap_or_default();
                Inbound {
                    id: self.id(),
                    kind: InboundKind::Sms,
                    tpdu,
                    addr: oa.number.clone(),
                    scts_unix: now,
                    text: part_text,
                    report: None,
                }
            })
            .collect();
        let (dup, reorder, _) = lock(&cell.modem).inbound_faults();
        {
            let mut rng = lock(&self.rng);
            if reorder {
                inbound.shuffle(&mut *rng);
            }
            if dup > 0.0 {
                let mut out = Vec::new();
                for i in inbound {
                    if rng.random_bool(dup) {
                        out.push(i.clone());
                    }
                    out.push(i);
                }
                inbound = out;
            }
        }
        {
            let mut m = lock(&self.metrics);
            m.inbound_injected += 1;
        }
        let n = parts.len();
        for inb in inbound {
            self.deliver_now(target, inb);
        }
        Ok(n)
    }
}
