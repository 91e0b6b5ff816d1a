//! Sans-IO AT session (issue #4, part 1).
//!
//! This module owns everything between the modem's raw bytes and typed events: framing
//! ([`lexer`]), the meaning of single lines ([`response`]: final results, URCs), the
//! commands and how to recognise their answers ([`command`]), the device's refusals and
//! their classification ([`error`]), and the one-command-at-a-time state machine with
//! timeouts and re-sync ([`session`]).
//!
//! It does no IO, reads no clock and spawns nothing: the driver moves bytes and passes
//! `Instant`s in, so every behaviour is testable byte by byte with a fake clock.
//!
//! Assumptions the driver must honour: SMS commands run in PDU mode (`AT+CMGF=0`); a
//! `+CMGS` answered `OK` without a `+CMGS:` line is the driver's to treat as a failure;
//! a `+CUSD:` answer arrives as a URC, not in the `AT+CUSD` response.

pub mod command;
pub mod error;
pub mod lexer;
pub mod registration;
pub mod response;
pub mod session;

#[cfg(test)]
mod tests;

pub use command::Command;
pub use error::{AtError, Classification, CmeError, CmsError};
pub use registration::Registration;
pub use response::{FinalResult, RegistrationKind, Urc, info_params, records};
pub use session::{CommandId, Event, Session, SessionConfig};
