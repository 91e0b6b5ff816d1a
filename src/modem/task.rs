//! One tokio task per modem: it owns the [`Modem`], serves requests one at a time,
//! reacts to URCs between them, polls health on a timer, and runs the recovery ladder
//! (then quarantine) when the link fails. The pool talks to it through [`ModemHandle`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::conn::Reply;
use super::driver::{Modem, ModemConfig, ModemState, UssdReply};
use super::error::ModemError;
use super::info::Report;
use super::link::Opener;
use super::sink::InboundSink;
use crate::at::Command;
use crate::clock::Clock;
use crate::dispatch::SendJob;

enum Request {
    /// The job's parts go out in order; each MR goes to the job's own progress sender.
    Send(SendJob, oneshot::Sender<Result<(), ModemError>>),
    Ussd(String, oneshot::Sender<Result<UssdReply, ModemError>>),
    Refresh(oneshot::Sender<Result<Report, ModemError>>),
    Command(Command, oneshot::Sender<Result<Reply, ModemError>>),
}

/// The pool's side of a modem task.
pub struct ModemHandle {
    name: String,
    tx: mpsc::Sender<Request>,
    state: watch::Receiver<ModemState>,
    report: watch::Receiver<Report>,
    calls_rejected: Arc<AtomicU64>,
    /// How long [`ModemHandle::shutdown`] lets the task finish what it is doing.
    shutdown_grace: Duration,
    clock: Clock,
    task: JoinHandle<()>,
}

impl ModemHandle {
    /// Starts the task on the current runtime: it opens the port (with backoff), brings
    /// the modem up and serves until [`ModemHandle::shutdown`] or the handle is dropped.
    pub fn spawn(
        opener: Arc<dyn Opener>,
        cfg: ModemConfig,
        sink: Option<Arc<dyn InboundSink>>,
    ) -> Self {
        let (shutdown_grace, clock) = (cfg.timeouts.shutdown_grace, cfg.clock);
        let modem = Modem::new(opener, cfg, sink);
        let name = modem.name();
        let state = modem.watch_state();
        let report = modem.watch_report();
        let calls_rejected = modem.calls_rejected_counter();
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(run(modem, rx));
        Self {
            name,
            tx,
            state,
            report,
            calls_rejected,
            shutdown_grace,
            clock,
            task,
        }
    }

    /// Incoming voice calls the modem rejected (hung up) since the task started: a
    /// counter for metrics.
    pub fn calls_rejected(&self) -> u64 {
        self.calls_rejected.load(Ordering::Relaxed)
    }

    /// The clock the task runs on, for whoever stamps what it reports.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The modem's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current state.
    pub fn state(&self) -> ModemState {
        self.state.borrow().clone()
    }

    /// Follows state changes.
    pub fn watch_state(&self) -> watch::Receiver<ModemState> {
        self.state.clone()
    }

    /// Follows report changes (health polls update signal, registration, storage).
    pub fn watch_report(&self) -> watch::Receiver<Report> {
        self.report.clone()
    }

    /// The latest report (identity, signal, registration...).
    pub fn report(&self) -> Report {
        self.report.borrow().clone()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ModemError>>) -> Request,
    ) -> Result<T, ModemError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ModemError::Stopped)?;
        rx.await.map_err(|_| ModemError::Stopped)?
    }

    /// Sends one message's parts (planned by [`crate::pdu::plan::plan_parts`]); the
    /// task reports each accepted part to `job.progress` itself, as it is accepted.
    pub async fn send(&self, job: SendJob) -> Result<(), ModemError> {
        self.ask(|tx| Request::Send(job, tx)).await
    }

    /// A USSD request (`*100#`), answered by the network.
    pub async fn ussd(&self, code: &str) -> Result<UssdReply, ModemError> {
        self.ask(|tx| Request::Ussd(code.to_owned(), tx)).await
    }

    /// Polls health now and returns the report.
    pub async fn refresh(&self) -> Result<Report, ModemError> {
        self.ask(Request::Refresh).await
    }

    /// Runs one AT command (diagnostics).
    pub async fn command(&self, cmd: Command) -> Result<Reply, ModemError> {
        self.ask(|tx| Request::Command(cmd, tx)).await
    }

    /// Ends the task at once, from any clone of the handle (its port closes as it
    /// drops); for when [`ModemHandle::shutdown`] cannot take the handle.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Stops the task and waits for it (the port is closed when this returns). A task
    /// busy past its [`crate::config::Timeouts::shutdown_grace`] (a bring-up waiting out
    /// a busy SIM, a hung command) is aborted: shutdown never waits on a modem. A send
    /// cut short this way is recorded as in flight and reconciled at the next start.
    pub async fn shutdown(self) {
        let ModemHandle {
            tx,
            mut task,
            shutdown_grace,
            ..
        } = self;
        drop(tx);
        if tokio::time::timeout(shutdown_grace, &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Why the task does not serve requests.
fn refusal(state: &ModemState) -> Option<ModemError> {
    match state {
        ModemState::Quarantined(r) => Some(ModemError::Quarantined(r.clone())),
        ModemState::SimLocked(r) => Some(ModemError::Sim(r.clone())),
        ModemState::Ready | ModemState::Degraded(_) => None,
        other => Some(ModemError::NotReady(format!("{other:?}"))),
    }
}

enum Wake {
    Request(Request),
    Closed,
    Input(Result<(), ModemError>),
}

async fn run(mut m: Modem, mut rx: mpsc::Receiver<Request>) {
    m.set_state(ModemState::Starting);
    let mut recoveries: VecDeque<Instant> = VecDeque::new();
    let mut parked = match m.reopen().await {
        Ok(()) => false,
        Err(ModemError::Sim(_)) => true,
        Err(e) => {
            m.close();
            m.set_state(ModemState::Quarantined(format!(
                "cannot bring the modem up: {e}"
            )));
            true
        }
    };
    let interval = m.config().timeouts.health_interval;
    let mut next_health = m.now() + interval;
    loop {
        if parked {
            // SIM locked or quarantined: answer with the reason until shut down.
            let Some(req) = rx.recv().await else { break };
            let why = refusal(&m.state()).unwrap_or(ModemError::Stopped);
            refuse(req, why);
            continue;
        }
        let outcome = if m.has_work() {
            m.handle_urcs().await
        } else {
            let wake = tokio::select! {
                req = rx.recv() => req.map_or(Wake::Closed, Wake::Request),
                r = m.wait_input(next_health) => Wake::Input(r),
            };
            match wake {
                Wake::Closed => break,
                Wake::Request(req) => serve(&mut m, req).await,
                Wake::Input(r) => r,
            }
        };
        let outcome = match outcome {
            Ok(()) if m.now() >= next_health => {
                next_health = m.now() + interval;
                m.periodic().await
            }
            other => other,
        };
        let Err(cause) = outcome else { continue };
        if !cause.is_link() {
            if let ModemError::Sim(_) = cause {
                parked = true;
            }
            continue;
        }
        let now = m.now();
        let window = m.config().timeouts.quarantine_window;
        recoveries.retain(|t| now.duration_since(*t) < window);
        recoveries.push_back(now);
        if recoveries.len() > m.config().quarantine_after as usize {
            m.close();
            m.set_state(ModemState::Quarantined(format!(
                "{} recoveries within {window:?}; last cause: {cause}",
                recoveries.len()
            )));
            parked = true;
            continue;
        }
        match m.recover(&cause).await {
            Ok(()) => next_health = m.now() + interval,
            Err(ModemError::Sim(_)) => parked = true,
            Err(e) => {
                m.close();
                m.set_state(ModemState::Quarantined(format!(
                    "recovery failed after {cause}: {e}"
                )));
                parked = true;
            }
        }
    }
    m.close();
    m.set_state(ModemState::Stopped);
}

fn refuse(req: Request, why: ModemError) {
    match req {
        Request::Send(_, tx) => drop(tx.send(Err(why))),
        Request::Ussd(_, tx) => drop(tx.send(Err(why))),
        Request::Refresh(tx) => drop(tx.send(Err(why))),
        Request::Command(_, tx) => drop(tx.send(Err(why))),
    }
}

/// Serves one request; returns the link failure it ran into, for the recovery ladder.
/// The caller gets its own error (including an ambiguous CMGS timeout) first.
async fn serve(m: &mut Modem, req: Request) -> Result<(), ModemError> {
    if let Some(why) = refusal(&m.state()) {
        refuse(req, why);
        return Ok(());
    }
    fn split<T>(r: Result<T, ModemError>) -> (Result<T, ModemError>, Result<(), ModemError>) {
        match r {
            Err(e) if e.is_link() => {
                let cause = relink(&e);
                (Err(e), Err(cause))
            }
            other => (other, Ok(())),
        }
    }
    match req {
        Request::Send(job, tx) => {
            let (res, link) = split(m.send(&job.parts, &job.progress).await.map(drop));
            let _ = tx.send(res);
            link
        }
        Request::Ussd(code, tx) => {
            let (res, link) = split(m.ussd(&code).await);
            let _ = tx.send(res);
            link
        }
        Request::Refresh(tx) => {
            let (res, link) = split(m.refresh().await.map(|()| m.report().clone()));
            let _ = tx.send(res);
            link
        }
        Request::Command(cmd, tx) => {
            let (res, link) = split(m.exec(cmd).await);
            let _ = tx.send(res);
            link
        }
    }
}

/// A copy of a link error for the recovery ladder (the original goes to the caller).
fn relink(e: &ModemError) -> ModemError {
    match e {
        ModemError::Timeout {
            command,
            payload_sent,
            resynced,
        } => ModemError::Timeout {
            command: command.clone(),
            payload_sent: *payload_sent,
            resynced: *resynced,
        },
        ModemError::NoAnswer => ModemError::NoAnswer,
        ModemError::PartialSend { source, .. } => relink(source),
        ModemError::Io(io) => ModemError::Io(std::io::Error::new(io.kind(), io.to_string())),
        _ => ModemError::PortGone,
    }
}
