//! What the dispatcher needs from a modem: send these parts, report each part's message
//! reference as it is accepted, and classify a failure. A modem task takes the
//! [`SendJob`] as it is and reports each [`PartSent`] straight to `progress` (see
//! `daemon::bridge`); tests implement [`Outbound`] with fakes.

use tokio::sync::mpsc;

pub use crate::modem::BoxFuture;
pub use crate::pdu::plan::OutPart;

/// A part the SMSC accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSent {
    /// 1-based part number within the message.
    pub seq: u32,
    /// TP-MR the SMSC gave it (`+CMGS: <mr>`): status reports quote it.
    pub mr: u8,
}

/// The parts of one message to send in order, keeping the link up between them.
#[derive(Debug)]
pub struct SendJob {
    /// The message the parts belong to (for logs).
    pub message_id: i64,
    /// The parts still to send, in order.
    pub parts: Vec<OutPart>,
    /// Each accepted part, as soon as it is accepted (so its MR is stored even if a
    /// later part fails or the daemon dies).
    pub progress: mpsc::UnboundedSender<PartSent>,
}

/// How a send failed, which decides what happens to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The network or SIM refuses this message (bad number, barred): fail it.
    Permanent,
    /// Congestion, no network for now: retry, preferably elsewhere.
    Temporary,
    /// The modem or its link broke before the PDU went out: retry elsewhere at once.
    Link,
    /// The SIM cannot send (no SMSC, locked): retry elsewhere.
    Sim,
    /// The link broke after the PDU went out: it may have been sent.
    PossiblySent,
}

/// A failed send, as the modem task reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// What the dispatcher does with the message.
    pub kind: FailureKind,
    /// A short code for the API (`cms:42`, `timeout`, …).
    pub code: String,
    /// For people: the device's words or what broke.
    pub message: String,
}

/// A modem as the dispatcher sees it.
pub trait Outbound: Send + Sync + 'static {
    /// Sends the job's parts in order, reporting each accepted one to `job.progress`.
    fn send(&self, job: SendJob) -> BoxFuture<'_, Result<(), SendFailure>>;
}
