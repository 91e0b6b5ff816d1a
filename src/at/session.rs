//! The AT session state machine: one command in flight, the rest queued.
//!
//! Sans-IO: the caller writes what [`Session::poll_transmit`] returns to the port, feeds what
//! it reads to [`Session::handle_input`], calls [`Session::handle_timeout`] when the instant
//! from [`Session::poll_timeout`] has passed, and drains [`Session::poll_event`].
//!
//! Line attribution (the heart of it): while a command is in flight a line belongs to it
//! when it starts with one of its expected prefixes, or when the command answers with bare
//! lines and the line is neither a recognised URC nor a vendor result under another name
//! (`+QIND: ...` during `AT+CGSN`); the echo of the command (or of its payload) is dropped,
//! and lines that came before the echo were unsolicited (the modem had not read the
//! command yet); a final result code finishes it (see [`parse_final`] for the
//! non-standard refusals it knows); anything else is a URC. A [lenient](Command::lenient)
//! query whose answer line came without a final result completes
//! ([`FinalResult::Implied`]) after a quiet period; if the modem echoes, a final result
//! that then arrives before the next command's echo is recognised as the late one and
//! dropped. A header announcing
//! a data line (`+CMGR:`/`+CMGL:` for responses, `+CMT:`/`+CDS:` for URCs) takes the next
//! line with it — but only a line that can be that data: a URC's PDU must be hex of the
//! length its header announced. A garbled line, another header or a final result in its
//! place means the data is lost: the URC is reported as [`Urc::Unreadable`] (so the driver
//! refuses it rather than acknowledge what it never read) and the line is handled on its
//! own (a new header starts a new wait). A URC between a response record's header and its
//! data is reported and the wait goes on; a garbled line ends it (the record has no data).
//!
//! After a timeout the session sends ESC (leaves the PDU prompt, aborts a running command),
//! drains until the line has been quiet for a moment, and sends a plain `AT`: an answer
//! (any final result) means the modem is back ([`Event::Resynced`]); silence after a few
//! attempts gives [`Event::ResyncFailed`]. Either way the next queued command then goes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::command::Command;
use super::error::AtError;
use super::lexer::{Lexer, Token};
use super::response::{
    FinalResult, Urc, looks_like_header, parse_final, parse_urc, parse_urc_with_data,
    response_has_data_line, urc_data_fits, urc_has_data_line,
};

const CTRL_Z: u8 = 0x1A;
const ESC: u8 = 0x1B;

/// `now + d` without the overflow panic of `Instant + Duration` (a caller may pass
/// `Duration::MAX` to mean "forever"): saturates at about a century.
fn after(now: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d.min(CENTURY))
        .or_else(|| now.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(now)
}

/// Identifies a command given to [`Session::send`]; increasing, never reused by a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandId(pub u64);

/// Timings of the session's own recovery; command timeouts live on each [`Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long to wait for the `>` prompt (bounded by the command's own timeout): the
    /// prompt comes at once, only the network part of `AT+CMGS` is slow.
    pub prompt_timeout: Duration,
    /// After ESC, the line must be quiet this long before re-syncing, so late answers of
    /// the aborted command are not taken for the answer to the re-sync `AT`.
    pub drain_quiet: Duration,
    /// Upper bound of the drain, so a chattering modem cannot hold the session forever.
    pub drain_max: Duration,
    /// How long to wait for the answer to the re-sync `AT`.
    pub resync_timeout: Duration,
    /// Re-sync attempts (ESC, drain, `AT`) before reporting [`Event::ResyncFailed`].
    pub resync_attempts: u32,
    /// A [lenient](Command::lenient) command whose answer line came without a final
    /// result completes ([`FinalResult::Implied`]) once the line has been quiet this long.
    /// Long enough that a slow `OK` is not left over for the next command.
    pub implied_final_after: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            prompt_timeout: Duration::from_secs(10),
            drain_quiet: Duration::from_millis(500),
            drain_max: Duration::from_secs(5),
            resync_timeout: Duration::from_secs(2),
            resync_attempts: 3,
            implied_final_after: Duration::from_secs(1),
        }
    }
}

/// What the session reports to the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A command finished: the modem answered, successfully or not.
    Response {
        /// The id [`Session::send`] returned.
        id: CommandId,
        /// The command itself.
        command: Command,
        /// Its information lines in order, prefixes included (`+CSQ: 20,99`), with the data
        /// line following each `+CMGR:`/`+CMGL:` header.
        lines: Vec<String>,
        /// How it ended.
        result: FinalResult,
    },
    /// An unsolicited result code.
    Urc(Urc),
    /// The command got no final result in time. The link is suspect: the session now
    /// aborts and re-syncs (and reports how that went) before the next command.
    Timeout {
        /// The id [`Session::send`] returned.
        id: CommandId,
        /// The command that timed out.
        command: Command,
        /// Whether the payload had been transmitted (the prompt came): for `AT+CMGS` the
        /// message may then have reached the network, so resending risks a duplicate.
        payload_sent: bool,
    },
    /// The modem answered the re-sync `AT`: the link works again.
    Resynced,
    /// The modem stayed silent through every re-sync attempt: the link or the modem is
    /// broken (reset it, reopen the port). Queued commands still go on.
    ResyncFailed,
    /// A line of garbage was skipped (see [`Session::garbage_count`] for the total).
    GarbageSkipped {
        /// Bytes skipped.
        bytes: usize,
    },
}

impl Event {
    /// The layer error matching a link-level event, for drivers that want a `Result`.
    pub fn link_error(&self) -> Option<AtError> {
        match self {
            Event::Timeout { command, .. } => Some(AtError::Timeout {
                command: command.text().to_owned(),
            }),
            Event::ResyncFailed => Some(AtError::ResyncFailed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Line sent, waiting for the `>` prompt.
    AwaitPrompt,
    /// Waiting for the final result.
    AwaitFinal,
}

#[derive(Debug)]
struct InFlight {
    id: CommandId,
    cmd: Command,
    lines: Vec<String>,
    deadline: Instant,
    phase: Phase,
    /// A lenient command's answer arrived: it completes at this instant unless a final
    /// result (or another answer line) comes first.
    implied_at: Option<Instant>,
    /// The modem echoed the command line.
    echoed: bool,
}

#[derive(Debug)]
enum State {
    Idle,
    Running(InFlight),
    /// ESC sent; waiting for the line to go quiet.
    Draining {
        quiet_until: Instant,
        attempt: u32,
        hard_until: Instant,
    },
    /// Re-sync `AT` sent.
    Resyncing {
        deadline: Instant,
        attempt: u32,
    },
}

/// The next line is data announced by a header.
#[derive(Debug)]
enum Pending {
    None,
    /// Belongs to the in-flight command's lines.
    ResponseData,
    /// Completes a two-line URC whose header is kept here.
    UrcData(String),
}

/// A sans-IO AT session over one modem port.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    queue: VecDeque<(CommandId, Command)>,
    next_id: u64,
    lexer: Lexer,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    pending: Pending,
    garbage: u64,
    /// The previous command completed without a final result while the modem echoed:
    /// a final result that comes before this command's echo is that command's late one.
    late_final_possible: bool,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A session with the default recovery timings.
    pub fn new() -> Self {
        Self::with_config(SessionConfig::default())
    }

    /// A session with explicit recovery timings.
    pub fn with_config(config: SessionConfig) -> Self {
        Self {
            config,
            state: State::Idle,
            queue: VecDeque::new(),
            next_id: 0,
            lexer: Lexer::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            pending: Pending::None,
            garbage: 0,
            late_final_possible: false,
        }
    }

    /// Queues a command; it is transmitted at once if nothing is in flight. `now` starts
    /// its timeout in that case.
    pub fn send(&mut self, cmd: Command, now: Instant) -> Result<CommandId, AtError> {
        cmd.validate()?;
        let id = CommandId(self.next_id);
        self.next_id += 1;
        self.queue.push_back((id, cmd));
        self.start_next(now);
        Ok(id)
    }

    /// Feeds bytes read from the port.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if let State::Draining {
            quiet_until,
            hard_until,
            ..
        } = &mut self.state
            && !bytes.is_empty()
        {
            *quiet_until = after(now, self.config.drain_quiet).min(*hard_until);
        }
        self.lexer.push(bytes);
        while let Some(token) = self.lexer.next_token() {
            match token {
                Token::Garbage(bytes) => {
                    self.garbage += bytes as u64;
                    self.events.push_back(Event::GarbageSkipped { bytes });
                    self.on_garbage();
                }
                Token::Prompt => self.on_prompt(now),
                Token::Line(line) => self.on_line(line, now),
            }
        }
    }

    /// Acts on whatever deadline has passed at `now`; harmless to call early or often.
    pub fn handle_timeout(&mut self, now: Instant) {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Running(f) if f.implied_at.is_some_and(|t| now >= t) => {
                if matches!(self.pending, Pending::ResponseData) {
                    self.pending = Pending::None;
                }
                self.state = State::Running(f);
                self.finish(FinalResult::Implied, now);
            }
            State::Running(f) if now >= f.deadline => {
                self.flush_pending();
                let payload_sent = f.cmd.payload_bytes().is_some() && f.phase == Phase::AwaitFinal;
                self.events.push_back(Event::Timeout {
                    id: f.id,
                    command: f.cmd,
                    payload_sent,
                });
                self.begin_drain(now, 0);
            }
            State::Draining {
                quiet_until,
                attempt,
                ..
            } if now >= quiet_until => {
                self.flush_pending();
                self.transmit.push_back(b"AT\r".to_vec());
                self.state = State::Resyncing {
                    deadline: after(now, self.config.resync_timeout),
                    attempt,
                };
            }
            State::Resyncing { deadline, attempt } if now >= deadline => {
                if attempt + 1 < self.config.resync_attempts {
                    self.begin_drain(now, attempt + 1);
                } else {
                    self.events.push_back(Event::ResyncFailed);
                    self.start_next(now);
                }
            }
            other => self.state = other,
        }
    }

    /// The next bytes to write to the port.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] must be called next, if anything is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Idle => None,
            State::Running(f) => Some(f.implied_at.map_or(f.deadline, |t| t.min(f.deadline))),
            State::Draining { quiet_until, .. } => Some(*quiet_until),
            State::Resyncing { deadline, .. } => Some(*deadline),
        }
    }

    /// Starts the ESC/drain/`AT` sequence by hand, e.g. right after opening the port, when
    /// the modem may still sit at a prompt left by a previous process. Only when idle;
    /// returns whether it started.
    pub fn resync(&mut self, now: Instant) -> bool {
        if matches!(self.state, State::Idle) {
            self.begin_drain(now, 0);
            true
        } else {
            false
        }
    }

    /// Forgets all state (the port was reopened, the modem reset) and hands back the
    /// in-flight and queued commands, in order, for the driver to decide about.
    pub fn reset(&mut self) -> Vec<(CommandId, Command)> {
        let mut out = Vec::new();
        if let State::Running(f) = std::mem::replace(&mut self.state, State::Idle) {
            out.push((f.id, f.cmd));
        }
        out.extend(self.queue.drain(..));
        self.lexer.clear();
        self.transmit.clear();
        self.pending = Pending::None;
        self.late_final_possible = false;
        out
    }

    /// Total bytes of garbage skipped since the session was created.
    pub fn garbage_count(&self) -> u64 {
        self.garbage
    }

    /// Whether the command in flight has had its payload handed out after the prompt
    /// (for `AT+CMGS`: the message may be on its way to the network).
    pub fn payload_sent(&self) -> bool {
        matches!(&self.state, State::Running(f)
            if f.cmd.payload_bytes().is_some() && f.phase == Phase::AwaitFinal)
    }

    /// Whether no command is in flight and no recovery is running.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Number of commands waiting behind the one in flight.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn start_next(&mut self, now: Instant) {
        if !matches!(self.state, State::Idle) {
            return;
        }
        let Some((id, cmd)) = self.queue.pop_front() else {
            return;
        };
        let mut line = cmd.text().as_bytes().to_vec();
        line.push(b'\r');
        self.transmit.push_back(line);
        let has_payload = cmd.payload_bytes().is_some();
        let (phase, wait) = if has_payload {
            (
                Phase::AwaitPrompt,
                cmd.timeout_duration().min(self.config.prompt_timeout),
            )
        } else {
            (Phase::AwaitFinal, cmd.timeout_duration())
        };
        if has_payload {
            self.lexer.drop_stale_prompt();
        }
        self.lexer.set_prompt_pending(has_payload);
        self.state = State::Running(InFlight {
            id,
            cmd,
            lines: Vec::new(),
            deadline: after(now, wait),
            phase,
            implied_at: None,
            echoed: false,
        });
    }

    fn begin_drain(&mut self, now: Instant, attempt: u32) {
        // The drain swallows whatever the previous command still had to say.
        self.late_final_possible = false;
        self.transmit.push_back(vec![ESC]);
        self.lexer.set_prompt_pending(false);
        self.state = State::Draining {
            quiet_until: after(now, self.config.drain_quiet),
            attempt,
            hard_until: after(now, self.config.drain_max),
        };
    }

    fn on_prompt(&mut self, now: Instant) {
        match &mut self.state {
            State::Running(f) if f.phase == Phase::AwaitPrompt => {
                let mut data = f.cmd.payload_bytes().unwrap_or_default().to_vec();
                data.push(CTRL_Z);
                self.transmit.push_back(data);
                f.phase = Phase::AwaitFinal;
                // From here on, the wait is the network's: the command's full timeout.
                f.deadline = after(now, f.cmd.timeout_duration());
                self.lexer.set_prompt_pending(false);
            }
            // A prompt nobody asked for means the modem waits for text we will never send:
            // cancel it right away rather than let it swallow the next command line.
            State::Running(_) | State::Idle | State::Resyncing { .. } => {
                self.transmit.push_back(vec![ESC]);
            }
            // Already escaping.
            State::Draining { .. } => {}
        }
    }

    fn on_line(&mut self, line: String, now: Instant) {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => {}
            Pending::ResponseData => {
                // A final result or a new header instead of the data line means the record
                // had none (an empty slot, a text-mode status report): handle it normally.
                // So does the command's echo (a header that came before it was no answer).
                let echo = matches!(&self.state, State::Running(f) if f.cmd.is_echo(&line));
                if parse_final(&line).is_none() && !response_has_data_line(&line) && !echo {
                    if looks_like_header(&line) || is_urc_line(&line) {
                        // A URC between the record's header and its data: not the data.
                        self.pending = Pending::ResponseData;
                        self.on_urc_line(line, false);
                        return;
                    }
                    if let State::Running(f) = &mut self.state {
                        f.lines.push(line);
                    }
                    return;
                }
            }
            Pending::UrcData(header) => {
                if urc_data_fits(&header, &line) {
                    self.emit_urc(parse_urc_with_data(&header, &line), false);
                    return;
                }
                // Not the announced data (another header, a final result, a line of the
                // wrong length): the message is lost. Report it, then handle this line on
                // its own; a new header starts a new wait.
                self.emit_urc(Urc::Unreadable { header }, false);
            }
        }

        match &mut self.state {
            State::Idle => self.on_urc_line(line, false),
            State::Running(f) => {
                if f.cmd.is_echo(&line) {
                    // The modem read the command only now: whatever came before its echo
                    // was unsolicited, not the answer (a `+CPIN: READY` URC just before
                    // the echo of `AT+CPIN?`).
                    f.echoed = true;
                    f.implied_at = None;
                    self.late_final_possible = false;
                    let early = std::mem::take(&mut f.lines);
                    for l in early {
                        self.emit_urc(parse_urc(&l), false);
                    }
                    return;
                }
                if f.phase == Phase::AwaitFinal && f.cmd.is_payload_echo(&line) {
                    return;
                }
                if let Some(result) = parse_final(&line) {
                    if std::mem::take(&mut self.late_final_possible) && !f.echoed {
                        // The late final result of the previous command, which completed
                        // without one: this command's answer comes after its echo.
                        self.emit_urc(Urc::Other(line), false);
                        return;
                    }
                    self.finish(result, now);
                    return;
                }
                let lenient = f.cmd.is_lenient();
                let quiet = self.config.implied_final_after;
                if f.cmd.matches_prefix(&line) {
                    let has_data = response_has_data_line(&line);
                    f.lines.push(line);
                    if has_data {
                        self.pending = Pending::ResponseData;
                    } else if lenient {
                        f.implied_at = Some(after(now, quiet));
                    }
                    return;
                }
                if f.cmd.is_raw() && !is_urc_line(&line) && f.cmd.may_be_raw_answer(&line) {
                    f.lines.push(line);
                    if lenient {
                        f.implied_at = Some(after(now, quiet));
                    }
                    return;
                }
                self.on_urc_line(line, false);
            }
            // Late answers of the aborted command are dropped; real URCs still get out.
            State::Draining { .. } => self.on_urc_line(line, true),
            State::Resyncing { .. } => {
                if line.eq_ignore_ascii_case("AT") {
                    return;
                }
                if parse_final(&line).is_some() {
                    // Any final result, even ERROR (a half-received command line glued to
                    // our AT), proves the modem is listening.
                    self.state = State::Idle;
                    self.events.push_back(Event::Resynced);
                    self.start_next(now);
                    return;
                }
                self.on_urc_line(line, false);
            }
        }
    }

    fn on_urc_line(&mut self, line: String, known_only: bool) {
        if urc_has_data_line(&line) {
            self.pending = Pending::UrcData(line);
        } else {
            self.emit_urc(parse_urc(&line), known_only);
        }
    }

    fn emit_urc(&mut self, urc: Urc, known_only: bool) {
        if !known_only || urc.is_known() {
            self.events.push_back(Event::Urc(urc));
        }
    }

    /// A two-line URC cut short by a timeout is still reported, as unreadable; a response
    /// record's wait ends with its command.
    fn flush_pending(&mut self) {
        if let Pending::UrcData(header) = std::mem::replace(&mut self.pending, Pending::None) {
            self.emit_urc(Urc::Unreadable { header }, false);
        }
    }

    /// A garbled line where a data line was announced: that data is lost. A URC is
    /// reported as unreadable; a response record keeps its header without data.
    fn on_garbage(&mut self) {
        if let Pending::UrcData(header) = std::mem::replace(&mut self.pending, Pending::None) {
            self.emit_urc(Urc::Unreadable { header }, false);
        }
    }

    fn finish(&mut self, result: FinalResult, now: Instant) {
        if let State::Running(f) = std::mem::replace(&mut self.state, State::Idle) {
            self.late_final_possible = result == FinalResult::Implied && f.echoed;
            self.lexer.set_prompt_pending(false);
            self.events.push_back(Event::Response {
                id: f.id,
                command: f.cmd,
                lines: f.lines,
                result,
            });
        }
        self.start_next(now);
    }
}

/// Whether a line is a URC we recognise (so a raw-answer command does not swallow it).
fn is_urc_line(line: &str) -> bool {
    urc_has_data_line(line) || parse_urc(line).is_known()
}
