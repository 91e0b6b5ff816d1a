//! gsmgw: a reliable SMS gateway for banks of USB/serial GSM modems.
//!
//! The crate is layered so that the protocol cores can be tested byte by byte without
//! any IO: [`pdu`] (SMS TPDU codec and splitting planner) and `at` (the AT session) do
//! no IO and take time as an argument; the shells around them (serial, SQLite, HTTP)
//! stay thin.

pub mod api;
pub mod at;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dispatch;
pub mod modem;
pub mod pdu;
pub mod pool;
pub mod store;
pub mod telemetry;
pub mod webhook;
