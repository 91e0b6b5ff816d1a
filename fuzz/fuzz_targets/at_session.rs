//! Fuzz the sans-IO AT session: arbitrary modem bytes, split arbitrarily, interleaved
//! with commands, timeouts at arbitrary times, re-syncs and resets. Besides "no panic",
//! it checks the session's invariants:
//! - every command sent is reported exactly once, in the order sent, as a `Response` or
//!   a `Timeout` (or handed back by `reset`), and once the modem falls silent, driving
//!   the clock by `poll_timeout` alone reports every one of them in bounded steps;
//! - a session that is not idle always has a deadline, and an idle one has no queue;
//! - a `+CMT`/`+CDS` is only ever reported with hex of the length its header announced
//!   (after the SMSC field);
//! - the garbage count is the sum of the `GarbageSkipped` events;
//! - what it transmits is a command line (CR), a payload (Ctrl-Z), ESC, or the re-sync `AT`;
//! - feeding each input byte by byte instead (same instants) changes nothing.
#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use gsmgw::at::{Command, CommandId, Event, Session, Urc};
use libfuzzer_sys::fuzz_target;

const PDU_A: &str = "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07";
const PDU_B: &str = "07911326040000F0040B911346610089F60000208062917314080BC8329BFD06";
const REPORT: &str = "07911326040000F0062A0B911346610089F6208062917314082080629173150800";
const SUBMIT: &str = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37";

/// Modem-like fragments, so the fuzzer reaches deep states quickly.
const PIECES: &[&[u8]] = &[
    b"\r\n",
    b"\r",
    b"\n",
    b"OK",
    b"ERROR",
    b"> ",
    b">",
    b"+CMS ERROR: 500",
    b"+CME ERROR: 14",
    b"+CMT: ,24",
    b"+CMT: ,30",
    b"+CMT: \"Bob\",24",
    b"+CDS: 25",
    b"+CBM: 88",
    b"+CMGL: 1,1,,24",
    b"+CMGR: 0,,24",
    b"+CMGS: 7",
    b"+CMTI: \"SM\",3",
    b"+CSQ: 20,99",
    b"+CREG: 1",
    b"+CUSD: 1,\"a,b\",15",
    b"AT+CSQ",
    b"AT",
    b"RING",
    PDU_A.as_bytes(),
    PDU_B.as_bytes(),
    REPORT.as_bytes(),
    SUBMIT.as_bytes(),
    b"\x1a",
    b"\x1b",
    b"\xff",
    b"\x00",
];

fn command(i: u8) -> Command {
    match i % 9 {
        0 => Command::csq(),
        1 => Command::cmgs(23, SUBMIT),
        2 => Command::cmgl(4),
        3 => Command::cmgr(1),
        4 => Command::cgsn(),
        5 => Command::creg_query(),
        6 => Command::new("AT"),
        7 => Command::cusd("*100#"),
        _ => Command::ati(),
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

fn hex_pdu_fits(data: &str, tpdu_len: usize) -> bool {
    let b = data.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(2) || !b.iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    let Some(smsc) = data.get(..2).and_then(|h| u8::from_str_radix(h, 16).ok()) else {
        return false;
    };
    1 + usize::from(smsc) + tpdu_len == b.len() / 2
}

/// What one run produced, and the bookkeeping the invariants need.
#[derive(Default, PartialEq, Eq, Debug)]
struct Trace {
    events: Vec<Event>,
    tx: Vec<Vec<u8>>,
}

struct Checker {
    trace: Trace,
    /// Sent and not yet reported, in order.
    outstanding: VecDeque<CommandId>,
    garbage: u64,
}

impl Checker {
    fn drain(&mut self, s: &mut Session) {
        while let Some(t) = s.poll_transmit() {
            let ok = t == [0x1B] || t.last() == Some(&b'\r') || t.last() == Some(&0x1A);
            assert!(ok, "unexpected transmit {t:?}");
            self.trace.tx.push(t);
        }
        while let Some(e) = s.poll_event() {
            match &e {
                Event::Response { id, .. } | Event::Timeout { id, .. } => {
                    assert_eq!(
                        self.outstanding.pop_front(),
                        Some(*id),
                        "a command reported out of order, twice, or never sent"
                    );
                }
                Event::GarbageSkipped { bytes } => self.garbage += *bytes as u64,
                Event::Urc(Urc::Cmt { length, pdu, .. } | Urc::Cds { length, pdu }) => {
                    assert!(hex_pdu_fits(pdu, *length), "{e:?}: PDU does not fit");
                }
                _ => {}
            }
            self.trace.events.push(e);
        }
        assert_eq!(s.garbage_count(), self.garbage, "garbage count");
        if s.is_idle() {
            assert_eq!(s.queued(), 0, "idle with commands queued");
        } else {
            assert!(s.poll_timeout().is_some(), "busy without a deadline");
        }
    }
}

fn run(data: &[u8], t0: Instant, byte_by_byte: bool) -> Trace {
    let mut s = Session::new();
    let mut c = Checker {
        trace: Trace::default(),
        outstanding: VecDeque::new(),
        garbage: 0,
    };
    let mut now = t0;
    let mut cur = Cursor(data);
    let feed = |s: &mut Session, c: &mut Checker, bytes: &[u8], now: Instant| {
        // A port read gives at least one byte; an empty call would only re-run the
        // tokenizer (a lone '>' buffered while idle becomes the prompt once a command
        // waits for one), which the byte-by-byte run has no counterpart for.
        if bytes.is_empty() {
            return;
        }
        if byte_by_byte {
            for b in bytes {
                s.handle_input(std::slice::from_ref(b), now);
                c.drain(s);
            }
        } else {
            s.handle_input(bytes, now);
            c.drain(s);
        }
    };
    while let Some(op) = cur.byte() {
        match op % 8 {
            0..=2 => {
                let n = usize::from(cur.byte().unwrap_or(0) % 48) + 1;
                let bytes = cur.take(n);
                feed(&mut s, &mut c, bytes, now);
            }
            3 => {
                let i = usize::from(cur.byte().unwrap_or(0));
                let piece = PIECES[i % PIECES.len()];
                feed(&mut s, &mut c, piece, now);
            }
            4 => {
                let cmd = command(cur.byte().unwrap_or(0));
                let id = s.send(cmd, now).expect("a valid command is accepted");
                c.outstanding.push_back(id);
            }
            5 => {
                now += Duration::from_millis(u64::from(cur.byte().unwrap_or(0)) * 37);
                s.handle_timeout(now);
            }
            6 => {
                if let Some(t) = s.poll_timeout() {
                    now = now.max(t);
                }
                s.handle_timeout(now);
            }
            _ => match cur.byte().unwrap_or(0) % 3 {
                0 => {
                    let back: Vec<CommandId> = s.reset().into_iter().map(|(id, _)| id).collect();
                    assert_eq!(
                        back,
                        Vec::from(std::mem::take(&mut c.outstanding)),
                        "reset must hand back exactly the unreported commands, in order"
                    );
                }
                1 => {
                    let idle = s.is_idle();
                    assert_eq!(s.resync(now), idle, "resync starts only when idle");
                }
                _ => s.handle_timeout(now),
            },
        }
        c.drain(&mut s);
    }
    // The modem falls silent: the clock alone must get every command reported.
    let mut steps = 0;
    while !c.outstanding.is_empty() {
        let t = s
            .poll_timeout()
            .expect("commands outstanding but no deadline to wait for");
        now = now.max(t);
        s.handle_timeout(now);
        c.drain(&mut s);
        steps += 1;
        assert!(
            steps <= 16 * 64 + 16 * data.len(),
            "commands never reported"
        );
    }
    c.trace
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let normal = run(data, t0, false);
    let bytewise = run(data, t0, true);
    assert_eq!(normal, bytewise, "byte-by-byte input changed the outcome");
});
