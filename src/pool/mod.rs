//! The SIM-aware balancer (issue #5): which modem sends the next message.
//!
//! It owns the health filters (SIM ready, registered, signal, quarantine, enabled), the
//! per-SIM quotas and minimum interval (kept by ICCID, so a SIM keeps its counters when
//! it moves to another port, and persisted by the store through [`UsageSnapshot`]),
//! prefix routing, the sticky recipient → SIM window, pinned SIMs, the avoid list for
//! failover, and the strategies (least-loaded, round-robin, weighted).
//!
//! It does no IO and reads no clock: the dispatcher feeds it [`ModemStatus`]es and the
//! time. When nothing can send only because of quotas or intervals, [`Pool::select`]
//! says when something will ([`Selection::WaitUntil`]), so the dispatcher sets one timer
//! instead of polling, and a new message still reaches an idle modem at once.
//!
//! Contract with the dispatcher:
//! - feed every modem change with [`Pool::update_modem`] / [`Pool::remove_modem`];
//! - [`Pool::select`] *reserves*: on `Chosen` it has already charged the quota and
//!   started the minimum interval, so the caller must not also call
//!   [`Pool::record_send`] (that is for sends the pool did not choose); a message that
//!   never reached the modem must be given back: its quota with [`Pool::refund`], its
//!   in-flight slot by feeding the modem's status again ([`Pool::update_modem`] with the
//!   caller's own in-flight count), or the modem looks busy until its next update;
//! - after a change (send done, modem update, new message) select again; on
//!   `WaitUntil(t)` set a timer for `t`;
//! - persist [`Pool::usage`] after sends and [`Pool::restore_usage`] at startup.
//!
//! Quota windows are calendar-aligned in UTC; see [`window`].

mod balancer;
pub mod config;
pub mod window;

#[cfg(test)]
mod tests;

pub use balancer::{
    Availability, Busy, Chosen, Ineligible, ModemId, ModemStatus, ModemView, NoCandidate, Pool,
    SelectRequest, Selection, Via, WindowUsage,
};
pub use config::{PoolConfig, PoolConfigError, QuotaLimits, RouteConfig, SimConfig, Strategy};
pub use window::{UsageSnapshot, Window, WindowCount};
