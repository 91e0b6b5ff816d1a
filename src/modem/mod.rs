//! The modem driver (issue #4, part 2): one tokio task per modem over any byte stream.
//!
//! This module owns everything between "a port name" and "a modem the pool can use":
//! opening serial, TCP and test links ([`link`]); driving the sans-IO AT session with real
//! IO and time ([`conn`]); bring-up (sync, identity, SIM and PIN, PDU mode, SMSC,
//! storage, `+CNMI` negotiation, sweep), sending with `+CMMS=2`, receiving with
//! sink-before-delete, health polling, USSD, rejecting incoming calls and the recovery
//! ladder ([`driver`]); the
//! task and its handle ([`task`]); the sink contract ([`sink`]); what the driver learns
//! and how it is parsed ([`info`]); and its errors ([`error`]).
//!
//! Invariants: an inbound message is deleted from the modem (or acknowledged with
//! `+CNMA`) only after the sink committed it; a PIN the SIM rejected is never sent
//! again automatically; a `+CMGS` answered `OK` without an MR is a failure; a `+CMGS`
//! timeout after the PDU went out is reported as possibly sent.
//!
//! Real modems deviate (issue #11): the driver follows general rules rather than
//! per-model switches. Busy answers during bring-up are asked again with backoff; the
//! SMSC is checked before a send and set again when lost; a modem without `+CNMI` or
//! storage still sends and says what it cannot do ([`Capabilities`]); the ICCID comes
//! from whichever command the modem has, else the IMSI keys the SIM
//! ([`Report::sim_key`]); incoming calls are hung up between commands and counted.

pub mod conn;
pub mod driver;
pub mod error;
pub mod info;
pub mod link;
pub mod sink;
pub mod task;

#[cfg(test)]
mod tests;

pub use conn::{AtConn, Reply};
pub use driver::{Modem, ModemConfig, ModemState, PersistPin, RejectedPins, UssdReply};
pub use error::ModemError;
pub use info::{Capabilities, Cnmi, Registration, Report, Signal, SimState, Storage};
pub use link::{BoxFuture, Endpoint, EndpointOpener, Link, Opener, SerialSettings, open_endpoint};
pub use sink::{ChannelSink, Delivery, Inbound, InboundSink, Origin, SinkError};
pub use task::ModemHandle;
