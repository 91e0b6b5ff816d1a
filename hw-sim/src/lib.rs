//! hw-sim: a simulated GSM modem bank on real pseudo-terminals.
//!
//! It shares no code with the `gsmgw` crate on purpose: an end-to-end test between the
//! two proves interoperability, not self-consistency. Everything here (PDUs, the AT
//! parser) is written from 3GPP TS 23.040, 23.038, 27.005 and 27.007.
//!
//! # In-process use
//!
//! ```no_run
//! # async fn demo() -> Result<(), hw_sim::BankError> {
//! use hw_sim::{Bank, BankConfig, Fault};
//! let bank = Bank::start(BankConfig {
//!     modems: 2,
//!     link_dir: "/tmp/sim".into(),
//!     control: Some("127.0.0.1:0".parse().expect("addr")),
//!     ..BankConfig::default()
//! })
//! .await?;
//! for m in bank.modems() {
//!     println!("{} {} {}", m.index, m.path.display(), m.msisdn);
//! }
//! bank.inject_inbound(0, "+491701234567", "hello")?;
//! bank.set_fault(1, Fault::CmsError { code: 500, probability: 1.0 })?;
//! let sent = bank.messages(); // what left the bank for outside numbers
//! # let _ = sent;
//! bank.shutdown().await; // closes the PTYs and removes the links
//! # Ok(()) }
//! ```
//!
//! Modules: [`pdu`] (TPDUs and alphabets), [`at`] (V.250 line syntax), [`modem`] (one
//! modem as a sans-IO state machine), [`network`] (routing, status reports, redelivery,
//! the outside sink), [`bank`] (PTYs, links, TCP, IO tasks, [`BankHandle`]), [`control`]
//! (HTTP API), [`fault`] (faults and scenario files), [`profile`] (firmware families,
//! identities), [`zoo`] (real models: quirks as data, USB port layouts).

pub mod at;
pub mod bank;
pub mod control;
pub mod fault;
pub mod modem;
pub mod network;
pub mod pdu;
pub mod profile;
pub mod zoo;

pub use bank::{Bank, BankConfig, BankError, BankHandle, BankMetrics, ModemInfo, PortInfo};
pub use fault::{Fault, NetworkSettings, RegState, Scenario};
pub use modem::{CallOutcome, CallRecord, RingSpec};
pub use network::OutsideMessage;
pub use profile::ProfileName;
pub use zoo::{PortRole, PortSpec};
