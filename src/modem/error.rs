//! Errors of the modem driver.
//!
//! Kept apart on purpose, as in the AT layer: *the device said no* ([`ModemError::Cme`],
//! [`ModemError::Cms`], [`ModemError::Rejected`], [`ModemError::NoMessageReference`]): the
//! link works and a retry elsewhere or later may help; and *the link broke*
//! ([`ModemError::Timeout`], [`ModemError::NoAnswer`], [`ModemError::PortGone`],
//! [`ModemError::Io`], [`ModemError::Open`]): the driver runs its recovery ladder.
//! [`ModemError::is_link`] tells them apart, [`ModemError::classification`] says what a
//! caller should do with the message.

use std::io;

use thiserror::Error;

use crate::at::{AtError, Classification, CmeError, CmsError, FinalResult};
use crate::pdu::PduError;

/// Everything the modem driver can fail with.
#[derive(Debug, Error)]
pub enum ModemError {
    /// The ME refused a command (`+CME ERROR`).
    #[error("{command}: {error}")]
    Cme {
        /// The command line.
        command: String,
        /// The typed refusal.
        error: CmeError,
    },
    /// The ME or the network refused an SMS command (`+CMS ERROR`).
    #[error("{command}: {error}")]
    Cms {
        /// The command line.
        command: String,
        /// The typed refusal.
        error: CmsError,
    },
    /// Any other non-OK final result (`ERROR`, `COMMAND NOT SUPPORT`, ...).
    #[error("{command}: modem answered {result:?}")]
    Rejected {
        /// The command line.
        command: String,
        /// The final result.
        result: FinalResult,
    },
    /// `AT+CMGS` answered `OK` without a `+CMGS: <mr>` line: firmware that reports a failed
    /// send as success (Siemens MC55 and kin). Treated as a failure.
    #[error("AT+CMGS answered OK without a message reference (OK-on-failure firmware): not sent")]
    NoMessageReference,
    /// The SIM blocks the modem: locked, missing, failed. Needs configuration or a human.
    #[error("SIM: {0}")]
    Sim(String),
    /// A command got no final result in time. `payload_sent` on `AT+CMGS` means the
    /// message may have gone out: resending risks a duplicate. `resynced` says whether the
    /// modem answered the `AT` sent afterwards.
    #[error("{command} timed out{}{}", if *payload_sent { " after the PDU went out (it may have been sent)" } else { "" }, if *resynced { "" } else { "; modem silent since" })]
    Timeout {
        /// The command line.
        command: String,
        /// Whether the payload after the prompt was transmitted.
        payload_sent: bool,
        /// Whether the session's re-sync got an answer.
        resynced: bool,
    },
    /// The modem answers nothing, not even a plain `AT`.
    #[error("modem does not answer AT")]
    NoAnswer,
    /// The port went away (USB unplug, PTY closed, TCP peer closed).
    #[error("port gone")]
    PortGone,
    /// The port went away after the payload (`AT+CMGS`'s PDU) went out and before the
    /// answer: the message may have been sent.
    #[error("{command}: port gone after the PDU went out (it may have been sent)")]
    PortGoneAfterPayload {
        /// The command line.
        command: String,
    },
    /// The port cannot be opened.
    #[error("cannot open {port}: {reason}")]
    Open {
        /// The port as given.
        port: String,
        /// Why.
        reason: String,
    },
    /// Another IO failure on an open port.
    #[error("port IO: {0}")]
    Io(#[from] io::Error),
    /// An answer we cannot make sense of.
    #[error("unexpected answer to {command}: {detail}")]
    Protocol {
        /// The command line.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// The message cannot be encoded (bad number, too long).
    #[error("message: {0}")]
    Pdu(#[from] PduError),
    /// A command that cannot be framed.
    #[error(transparent)]
    At(#[from] AtError),
    /// Some parts of a multipart message went out, then one failed.
    #[error("part {} of {total} failed after {} sent (MRs {mrs:?}): {source}", mrs.len() + 1, mrs.len())]
    PartialSend {
        /// The MRs of the parts that went out, in order.
        mrs: Vec<u8>,
        /// Parts in the message.
        total: usize,
        /// Why the next part failed.
        source: Box<ModemError>,
    },
    /// The modem is taken out of rotation; the reason says why.
    #[error("modem quarantined: {0}")]
    Quarantined(String),
    /// The modem cannot take the request in its current state.
    #[error("modem not ready: {0}")]
    NotReady(String),
    /// The modem task has ended.
    #[error("modem task stopped")]
    Stopped,
}

impl ModemError {
    /// Builds the error for a non-OK final result of `command`.
    pub fn from_result(command: &str, result: FinalResult) -> Self {
        let command = command.to_owned();
        match result {
            FinalResult::CmeError(error) => Self::Cme { command, error },
            FinalResult::CmsError(error) => Self::Cms { command, error },
            result => Self::Rejected { command, result },
        }
    }

    /// Whether the link (not the device's judgement) failed: the driver must recover.
    pub fn is_link(&self) -> bool {
        match self {
            Self::Timeout { .. }
            | Self::NoAnswer
            | Self::PortGone
            | Self::PortGoneAfterPayload { .. }
            | Self::Io(_) => true,
            Self::PartialSend { source, .. } => source.is_link(),
            _ => false,
        }
    }

    /// Whether a message may have reached the network although the send reported failure.
    pub fn may_have_been_sent(&self) -> bool {
        match self {
            Self::Timeout { payload_sent, .. } => *payload_sent,
            Self::PortGoneAfterPayload { .. } => true,
            Self::PartialSend { source, .. } => source.may_have_been_sent(),
            _ => false,
        }
    }

    /// What the caller should do with the message (and the modem).
    pub fn classification(&self) -> Classification {
        match self {
            Self::Cme { error, .. } => error.classification(),
            Self::Cms { error, .. } => error.classification(),
            Self::Pdu(_) | Self::At(_) => Classification::PermanentForMessage,
            Self::Sim(_) => Classification::Sim,
            Self::PartialSend { source, .. } => source.classification(),
            Self::NoMessageReference | Self::NotReady(_) => Classification::Temporary,
            Self::Rejected { .. }
            | Self::Timeout { .. }
            | Self::NoAnswer
            | Self::PortGone
            | Self::PortGoneAfterPayload { .. }
            | Self::Open { .. }
            | Self::Io(_)
            | Self::Protocol { .. }
            | Self::Quarantined(_)
            | Self::Stopped => Classification::Modem,
        }
    }
}

/// Maps a read/write error: EIO/ENXIO and closed pipes mean the device went away.
pub(crate) fn io_error(e: io::Error) -> ModemError {
    const EIO: i32 = 5;
    const ENXIO: i32 = 6;
    const ENODEV: i32 = 19;
    let gone = matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    ) || matches!(e.raw_os_error(), Some(EIO | ENXIO | ENODEV));
    if gone {
        ModemError::PortGone
    } else {
        ModemError::Io(e)
    }
}
