//! The `[pool]` configuration section and its validation.

use serde::{Deserialize, Serialize};

use super::window::Window;

/// How the pool picks among SIMs that can all take a message now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Fewest messages in flight, then least used today, then best signal. Spreads load
    /// and wear, and keeps a slow modem from piling up a queue.
    #[default]
    #[serde(rename = "least-loaded")]
    LeastLoaded,
    /// Each SIM in turn (stable ICCID order).
    #[serde(rename = "round-robin")]
    RoundRobin,
    /// Smooth weighted round robin (as nginx): SIM weights set the shares, interleaved.
    #[serde(rename = "weighted")]
    Weighted,
}

/// Per-SIM send limits, counted in SMS parts (operators count parts, not messages).
/// `None` means no limit for that window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaLimits {
    /// Parts per UTC minute.
    pub per_minute: Option<u32>,
    /// Parts per UTC hour.
    pub per_hour: Option<u32>,
    /// Parts per UTC day.
    pub per_day: Option<u32>,
    /// Parts per UTC calendar month.
    pub per_month: Option<u32>,
}

impl QuotaLimits {
    /// The limit for one window.
    pub fn get(&self, w: Window) -> Option<u32> {
        match w {
            Window::Minute => self.per_minute,
            Window::Hour => self.per_hour,
            Window::Day => self.per_day,
            Window::Month => self.per_month,
        }
    }

    /// Each limit set here, else the one in `defaults` (per window, so a SIM override
    /// of `per_day` keeps the pool-wide `per_minute`).
    pub fn or(self, defaults: QuotaLimits) -> QuotaLimits {
        QuotaLimits {
            per_minute: self.per_minute.or(defaults.per_minute),
            per_hour: self.per_hour.or(defaults.per_hour),
            per_day: self.per_day.or(defaults.per_day),
            per_month: self.per_month.or(defaults.per_month),
        }
    }
}

/// Settings for one SIM, found by ICCID wherever it is plugged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// The SIM's ICCID, as the modem reports it.
    pub iccid: String,
    /// Share for the `weighted` strategy; 0 makes the SIM a backup used only when no
    /// SIM with a positive weight can send.
    #[serde(default = "one")]
    pub weight: u32,
    /// Limits overriding the pool-wide `quota`, window by window.
    #[serde(default)]
    pub quota: QuotaLimits,
    /// Overrides the pool-wide `min_interval_ms`.
    #[serde(default)]
    pub min_interval_ms: Option<u64>,
    /// Operator name for `routes.operators`, for SIMs whose modem reports none or an
    /// unhelpful one.
    #[serde(default)]
    pub operator: Option<String>,
    /// `false` keeps the SIM out of the pool (e.g. a SIM kept for receiving only).
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl SimConfig {
    /// A SIM entry with the defaults.
    pub fn new(iccid: impl Into<String>) -> SimConfig {
        SimConfig {
            iccid: iccid.into(),
            weight: 1,
            quota: QuotaLimits::default(),
            min_interval_ms: None,
            operator: None,
            enabled: true,
        }
    }
}

/// Recipients starting with `prefix` go to the SIMs listed (by ICCID or operator),
/// because on-net messages are cheaper or deliver better.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// E.164 prefix such as `+4917` (the `+` is optional; digits only otherwise).
    pub prefix: String,
    /// ICCIDs of SIMs for this prefix.
    #[serde(default)]
    pub sims: Vec<String>,
    /// Operator names (as the modem reports them, or `sims.operator`), case-insensitive.
    #[serde(default)]
    pub operators: Vec<String>,
    /// When none of the route's SIMs can send now, use any other SIM (`true`), or wait
    /// for / fail on the route's SIMs only (`false`).
    #[serde(default = "yes")]
    pub fallback: bool,
}

/// The balancer's configuration (`[pool]`). Every key is optional:
///
/// ```toml
/// [pool]
/// strategy = "least-loaded"      # or "round-robin", "weighted"
/// min_signal_dbm = -107
/// allow_roaming = true
/// min_interval_ms = 0
/// sticky_window_secs = 0
/// quota = { per_minute = 6, per_day = 500 }   # parts; per_hour, per_month too
///
/// [[pool.sims]]
/// iccid = "89490200001234567890"
/// weight = 2                     # default 1; 0 = backup
/// quota = { per_day = 100 }      # overrides window by window
/// min_interval_ms = 3000
/// operator = "Telekom.de"
/// enabled = true
///
/// [[pool.routes]]
/// prefix = "+4917"
/// operators = ["Telekom.de"]     # and/or sims = ["8949…"]
/// fallback = true
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Default `least-loaded`.
    pub strategy: Strategy,
    /// Weakest acceptable signal; default -107 dBm (CSQ 3). Unknown signal (CSQ 99) is
    /// acceptable but ranks below any known signal. `None` (code only) disables it.
    pub min_signal_dbm: Option<i32>,
    /// Whether a roaming SIM may send (default `true`).
    pub allow_roaming: bool,
    /// Minimum time between two sends from one SIM (default 0); operators block bursts.
    pub min_interval_ms: u64,
    /// Default limits for every SIM.
    pub quota: QuotaLimits,
    /// A recipient who got a message from a SIM within this many seconds gets the next
    /// one from it too, so replies thread on the handset (default 0 = off).
    pub sticky_window_secs: u64,
    /// Per-SIM overrides.
    pub sims: Vec<SimConfig>,
    /// Prefix routes; the longest matching prefix wins.
    pub routes: Vec<RouteConfig>,
    /// Messages one modem may have in flight (default 1; 0 = no limit). A modem sends
    /// one at a time, so handing it a second only makes that one wait behind the first
    /// instead of going out on the next free modem.
    pub max_in_flight: u32,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            strategy: Strategy::LeastLoaded,
            min_signal_dbm: Some(-107),
            allow_roaming: true,
            min_interval_ms: 0,
            quota: QuotaLimits::default(),
            sticky_window_secs: 0,
            sims: Vec::new(),
            routes: Vec::new(),
            max_in_flight: 1,
        }
    }
}

/// A `[pool]` section that cannot work as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolConfigError {
    /// `sims` entry without an ICCID.
    #[error("pool.sims: an entry has an empty iccid")]
    EmptyIccid,
    /// Two `sims` entries for one ICCID.
    #[error("pool.sims: ICCID {0} is listed twice")]
    DuplicateSim(String),
    /// A prefix that is not `+` and digits.
    #[error("pool.routes: prefix {0:?} must be digits, optionally after '+'")]
    BadPrefix(String),
    /// Two routes with the same prefix.
    #[error("pool.routes: prefix {0} is listed twice")]
    DuplicateRoute(String),
    /// A route naming no SIM and no operator.
    #[error("pool.routes: prefix {0} lists neither sims nor operators")]
    EmptyRoute(String),
}

impl PoolConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), PoolConfigError> {
        let mut seen = std::collections::HashSet::new();
        for s in &self.sims {
            if s.iccid.trim().is_empty() {
                return Err(PoolConfigError::EmptyIccid);
            }
            if !seen.insert(s.iccid.as_str()) {
                return Err(PoolConfigError::DuplicateSim(s.iccid.clone()));
            }
        }
        let mut prefixes = std::collections::HashSet::new();
        for r in &self.routes {
            let digits = prefix_digits(&r.prefix)
                .ok_or_else(|| PoolConfigError::BadPrefix(r.prefix.clone()))?;
            if !prefixes.insert(digits) {
                return Err(PoolConfigError::DuplicateRoute(r.prefix.clone()));
            }
            if r.sims.is_empty() && r.operators.is_empty() {
                return Err(PoolConfigError::EmptyRoute(r.prefix.clone()));
            }
        }
        Ok(())
    }
}

/// The digits of a route prefix (`+4917` → `4917`), `None` if it is not a prefix.
pub(crate) fn prefix_digits(prefix: &str) -> Option<&str> {
    let p = prefix.trim();
    let p = p.strip_prefix('+').unwrap_or(p);
    (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then_some(p)
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}
