//! Where inbound messages go. The driver deletes a message from the modem only after the
//! sink said it is committed (durably stored): a crash, a full disk or a dead sink leaves
//! the message on the SIM, to be read again.

use std::time::SystemTime;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::link::BoxFuture;
use crate::pdu::Pdu;

/// How a message reached the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Stored by the modem (`+CMTI`/`+CDSI`, or found by the sweep); deleted once committed.
    Stored {
        /// Storage (`SM`, `ME`, `SR`).
        mem: String,
        /// Index in that storage.
        index: u32,
    },
    /// Delivered directly (`+CMT`/`+CDS`); acknowledged with `+CNMA` once committed.
    Direct,
}

/// One inbound PDU (a message part or a status report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The modem's name (its port, unless configured otherwise).
    pub modem: String,
    /// The SIM it arrived on, when known.
    pub iccid: Option<String>,
    /// The hex PDU as the modem printed it (SMSC field included).
    pub pdu: String,
    /// The decoded PDU, or why it could not be decoded (the raw PDU is still handed
    /// over: nothing is dropped silently).
    pub decoded: Result<Pdu, String>,
    /// Where it came from.
    pub origin: Origin,
    /// When the driver read it.
    pub received: SystemTime,
}

/// The sink refused or failed to commit a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("sink: {0}")]
pub struct SinkError(pub String);

/// Takes inbound messages. `commit` returns only once the message is durably stored.
pub trait InboundSink: Send + Sync + 'static {
    /// Stores a message. `Ok` means: safe to delete it from the modem.
    fn commit(&self, message: Inbound) -> BoxFuture<'_, Result<(), SinkError>>;
}

/// One message handed to a [`ChannelSink`]'s receiver, waiting for its verdict.
#[derive(Debug)]
pub struct Delivery {
    /// The message.
    pub message: Inbound,
    ack: oneshot::Sender<Result<(), SinkError>>,
}

impl Delivery {
    /// The message is stored: the driver may delete it from the modem.
    pub fn commit(self) {
        let _ = self.ack.send(Ok(()));
    }

    /// The message could not be stored: the driver keeps it on the modem.
    pub fn reject(self, reason: impl Into<String>) {
        let _ = self.ack.send(Err(SinkError(reason.into())));
    }
}

/// A sink that hands each message to a channel and waits for [`Delivery::commit`]. A
/// dropped [`Delivery`] (its consumer died) counts as a failure.
#[derive(Debug, Clone)]
pub struct ChannelSink {
    tx: mpsc::Sender<Delivery>,
}

impl ChannelSink {
    /// A sink and the receiver its deliveries arrive on.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, rx)
    }
}

impl InboundSink for ChannelSink {
    fn commit(&self, message: Inbound) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let (ack, verdict) = oneshot::channel();
            self.tx
                .send(Delivery { message, ack })
                .await
                .map_err(|_| SinkError("sink closed".into()))?;
            verdict
                .await
                .map_err(|_| SinkError("sink dropped the message without a verdict".into()))?
        })
    }
}
