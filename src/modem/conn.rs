//! One open link plus its AT session: turns "send this command" into an awaited answer.
//!
//! The sans-IO [`Session`] does framing, attribution, timeouts and re-sync; this type
//! only moves bytes and time into it, and keeps the URCs that arrive meanwhile for the
//! driver to act on between commands.

use std::collections::VecDeque;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::{ModemError, io_error};
use super::link::Link;
use crate::at::{Command, Event, FinalResult, Session, SessionConfig, Urc};
use crate::clock::Clock;

/// A command's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Information lines, prefixes included.
    pub lines: Vec<String>,
    /// How it ended.
    pub result: FinalResult,
}

impl Reply {
    /// The information lines of an answer that must be `OK`; any other final result is
    /// the typed error of `command`.
    pub fn into_ok(self, command: &str) -> Result<Vec<String>, ModemError> {
        if self.result.is_ok() {
            Ok(self.lines)
        } else {
            Err(ModemError::from_result(command, self.result))
        }
    }
}

/// An open link with its session.
pub struct AtConn {
    link: Box<dyn Link>,
    session: Session,
    urcs: VecDeque<Urc>,
    buf: Vec<u8>,
    /// Where the session's time comes from (paused in tests).
    clock: Clock,
}

impl AtConn {
    /// Wraps a freshly opened link; the session's deadlines count on `clock`.
    pub fn new(link: Box<dyn Link>, config: SessionConfig, clock: Clock) -> Self {
        Self {
            link,
            session: Session::with_config(config),
            urcs: VecDeque::new(),
            buf: vec![0; 4096],
            clock,
        }
    }

    /// Now, as the sans-IO session counts time (std `Instant`, from the clock).
    fn now(&self) -> Instant {
        self.clock.instant().into_std()
    }

    /// The URCs received so far, oldest first.
    pub fn take_urcs(&mut self) -> Vec<Urc> {
        self.urcs.drain(..).collect()
    }

    /// Whether URCs wait to be handled.
    pub fn has_urcs(&self) -> bool {
        !self.urcs.is_empty()
    }

    /// Puts back URCs the driver could not handle yet (they stay first in line).
    pub fn requeue_urcs(&mut self, urcs: Vec<Urc>) {
        for u in urcs.into_iter().rev() {
            self.urcs.push_front(u);
        }
    }

    async fn flush(&mut self) -> Result<(), ModemError> {
        let mut wrote = false;
        while let Some(bytes) = self.session.poll_transmit() {
            self.link.write_all(&bytes).await.map_err(io_error)?;
            wrote = true;
        }
        if wrote {
            self.link.flush().await.map_err(io_error)?;
        }
        Ok(())
    }

    /// Reads once while no command waits, until `deadline` at the latest; keeps the URCs.
    /// `Ok(false)` when the deadline passed. Cancel-safe: a cancelled read consumed nothing.
    pub async fn read_some(&mut self, deadline: Option<Instant>) -> Result<bool, ModemError> {
        let r = self.read_input(deadline).await;
        self.drain_idle_events();
        r
    }

    /// Reads once into the session, leaving its events for the caller.
    async fn read_input(&mut self, deadline: Option<Instant>) -> Result<bool, ModemError> {
        let read = self.link.read(&mut self.buf);
        let n = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), read).await {
                Ok(r) => r,
                Err(_) => return Ok(false),
            },
            None => read.await,
        };
        match n {
            // A PTY whose master closed, a TCP peer gone: the modem is unplugged.
            Ok(0) => Err(ModemError::PortGone),
            Ok(n) => {
                let now = self.now();
                let data = self.buf.get(..n).unwrap_or_default().to_vec();
                self.session.handle_input(&data, now);
                Ok(true)
            }
            Err(e) => Err(io_error(e)),
        }
    }

    /// Events while no command of ours waits: keep URCs.
    fn drain_idle_events(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            self.note(ev);
        }
    }

    fn note(&mut self, ev: Event) {
        match ev {
            Event::Urc(u) => self.urcs.push_back(u),
            // Skipped line noise (the session counts nothing we report), answers of
            // commands nobody awaits any more, and recovery outcomes outside a command:
            // nothing to do.
            Event::GarbageSkipped { .. }
            | Event::Response { .. }
            | Event::Timeout { .. }
            | Event::Resynced
            | Event::ResyncFailed => {}
        }
    }

    /// Sends a command and waits for its answer. A timeout is reported only once the
    /// session's re-sync finished, so the link is quiet again when this returns. The port
    /// going away after the payload went out is [`ModemError::PortGoneAfterPayload`].
    pub async fn exec(&mut self, cmd: Command) -> Result<Reply, ModemError> {
        let command = cmd.text().to_owned();
        match self.exec_inner(cmd).await {
            Err(ModemError::PortGone) if self.session.payload_sent() => {
                Err(ModemError::PortGoneAfterPayload { command })
            }
            other => other,
        }
    }

    async fn exec_inner(&mut self, cmd: Command) -> Result<Reply, ModemError> {
        let id = self.session.send(cmd, self.now())?;
        let mut timed_out: Option<(String, bool)> = None;
        loop {
            self.flush().await?;
            while let Some(ev) = self.session.poll_event() {
                match ev {
                    Event::Response {
                        id: rid,
                        lines,
                        result,
                        ..
                    } if rid == id => {
                        self.drain_idle_events();
                        return Ok(Reply { lines, result });
                    }
                    Event::Timeout {
                        id: tid,
                        command,
                        payload_sent,
                    } if tid == id => timed_out = Some((command.text().to_owned(), payload_sent)),
                    Event::Resynced | Event::ResyncFailed if timed_out.is_some() => {
                        let (command, payload_sent) = timed_out.take().unwrap_or_default();
                        // The re-sync may have queued nothing, but flush what it did.
                        self.flush().await?;
                        return Err(ModemError::Timeout {
                            command,
                            payload_sent,
                            resynced: matches!(ev, Event::Resynced),
                        });
                    }
                    other => self.note(other),
                }
            }
            self.step().await?;
        }
    }

    /// Waits for input or the session's next deadline, whichever comes first.
    async fn step(&mut self) -> Result<(), ModemError> {
        let deadline = self.session.poll_timeout();
        if deadline.is_some_and(|d| d <= self.now()) {
            self.session.handle_timeout(self.now());
            return Ok(());
        }
        if !self.read_input(deadline).await? {
            self.session.handle_timeout(self.now());
        }
        Ok(())
    }

    /// Sends a command that must answer `OK`; returns its information lines.
    pub async fn ok(&mut self, cmd: Command) -> Result<Vec<String>, ModemError> {
        let text = cmd.text().to_owned();
        self.exec(cmd).await?.into_ok(&text)
    }

    /// ESC, drain, `AT`: brings the modem back to a command line (after opening a port
    /// that a previous process may have left at a `>` prompt). `Ok(true)` if it answered.
    pub async fn resync(&mut self) -> Result<bool, ModemError> {
        if !self.session.resync(self.now()) {
            return Ok(false);
        }
        loop {
            self.flush().await?;
            while let Some(ev) = self.session.poll_event() {
                match ev {
                    Event::Resynced => return Ok(true),
                    Event::ResyncFailed => return Ok(false),
                    other => self.note(other),
                }
            }
            self.step().await?;
        }
    }

    /// Reads until `deadline` or until `done` says a URC it was waiting for arrived
    /// (URCs stay queued either way). Returns whether `done` was satisfied.
    pub async fn wait_urc(
        &mut self,
        deadline: Instant,
        done: impl Fn(&Urc) -> bool,
    ) -> Result<bool, ModemError> {
        loop {
            if self.urcs.iter().any(&done) {
                return Ok(true);
            }
            if self.now() >= deadline {
                return Ok(false);
            }
            self.flush().await?;
            let d = self
                .session
                .poll_timeout()
                .map_or(deadline, |s| s.min(deadline));
            if !self.read_some(Some(d)).await? {
                let now = self.now();
                self.session.handle_timeout(now);
                self.drain_idle_events();
            }
        }
    }
}
