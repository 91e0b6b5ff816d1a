//! The SMS PDU codec (3GPP TS 23.040 and 23.038), sans-IO: no IO, no clock, no global
//! mutable state. It owns the GSM 7-bit alphabet with every national language shift
//! table, UCS-2/UTF-16, addresses, the three TPDUs a gateway meets, user data headers,
//! status categories and the splitting planner.
//!
//! It is ours rather than a crate's because existing crates cut GSM-7 escape pairs and
//! emoji across parts and have no national language tables.

pub mod address;
pub mod dcs;
pub mod error;
pub mod gsm7;
pub mod hex;
pub mod inbound;
pub mod message;
pub mod plan;
mod reader;
pub mod status;
mod tables;
pub mod time;
pub mod tpdu;
pub mod udh;
pub mod userdata;

pub use address::{Address, TypeOfNumber};
pub use dcs::{Alphabet, Dcs, MessageWaiting, WaitingKind};
pub use error::PduError;
pub use gsm7::{Gsm7Tables, Language};
pub use message::{MAX_PARTS, SubmitOptions, encode_plan, encode_submit};
pub use plan::{OutPart, Plan, PlanOptions, PlannedPart, TextEncoding, plan, plan_parts};
pub use status::{Status, StatusCategory};
pub use time::{Timestamp, Validity};
pub use tpdu::{Deliver, EncodedPdu, Pdu, StatusReport, Submit, Tpdu, decode, decode_hex};
pub use udh::{Concat, Element, Udh};
pub use userdata::{Payload, UserData, join_text};

#[cfg(test)]
mod tests;
