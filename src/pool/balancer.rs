//! The pool state and the selection algorithm.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::at::Registration;

use super::config::{PoolConfig, PoolConfigError, QuotaLimits, SimConfig, Strategy, prefix_digits};
use super::window::{Usage, UsageSnapshot, Window, from_unix_secs, unix_ms_ceil, unix_secs};

/// A modem's id: its port-ish name (`ttyUSB3`, `usb-1.4`), unique in the daemon.
pub type ModemId = String;

/// What a modem looks like now; the dispatcher sends a fresh one on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemStatus {
    /// The modem.
    pub modem: ModemId,
    /// ICCID of the SIM in it, once read.
    pub iccid: Option<String>,
    /// SIM present and unlocked.
    pub sim_ready: bool,
    /// Network registration.
    pub registration: Option<Registration>,
    /// Signal strength, `None` when unknown (CSQ 99).
    pub signal_dbm: Option<i32>,
    /// Operator name as reported (`+COPS`).
    pub operator: Option<String>,
    /// Why the modem is quarantined, if it is.
    pub quarantined: Option<String>,
    /// Enabled by the operator (not administratively off).
    pub enabled: bool,
    /// Messages handed to it and not finished.
    pub in_flight: u32,
}

/// Why a modem cannot take messages, whatever the wait.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ineligible {
    /// Administratively disabled.
    #[error("modem disabled")]
    ModemDisabled,
    /// Its SIM is disabled in `pool.sims`.
    #[error("SIM disabled in config")]
    SimDisabled,
    /// Quarantined by the dispatcher.
    #[error("quarantined: {0}")]
    Quarantined(String),
    /// No SIM, PIN needed, …
    #[error("SIM not ready")]
    SimNotReady,
    /// Quotas are kept by ICCID; a SIM that has none cannot be held to them.
    #[error("ICCID unknown")]
    NoIccid,
    /// Not on a network.
    #[error("not registered ({})", .0.map_or("unknown", Registration::name))]
    NotRegistered(Option<Registration>),
    /// Roaming while `allow_roaming = false`.
    #[error("roaming not allowed")]
    Roaming,
    /// Signal below `min_signal_dbm`.
    #[error("signal {dbm} dBm below {min}")]
    WeakSignal {
        /// Reported signal.
        dbm: i32,
        /// The threshold.
        min: i32,
    },
    /// The message has more parts than a window allows at all: waiting cannot help.
    #[error("{parts}-part message exceeds quota {window} {limit}")]
    TooManyParts {
        /// The window.
        window: Window,
        /// Its limit.
        limit: u32,
        /// The message's parts.
        parts: u32,
    },
    /// The modem has as many messages in flight as `pool.max_in_flight` allows. Not a
    /// timed wait: the dispatcher selects again when a send finishes.
    #[error("sending ({in_flight} in flight, at most {max})")]
    Sending {
        /// Messages in flight.
        in_flight: u32,
        /// The limit.
        max: u32,
    },
}

/// Why a healthy SIM cannot send right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// A quota window is used up (for a message of the parts asked about).
    Quota {
        /// The window.
        window: Window,
        /// Parts already sent in it.
        used: u32,
        /// Its limit.
        limit: u32,
    },
    /// The last send was less than the minimum interval ago.
    MinInterval {
        /// The interval.
        interval_ms: u64,
    },
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::Quota {
                window,
                used,
                limit,
            } => write!(f, "quota {window} {used}/{limit}"),
            Busy::MinInterval { interval_ms } => write!(f, "min interval {interval_ms} ms"),
        }
    }
}

/// Why no SIM was chosen and waiting will not help (until something changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoCandidate {
    /// No modem is known.
    #[error("no modems")]
    NoModems,
    /// The pinned ICCID is in no modem.
    #[error("pinned SIM {iccid} is not in any modem")]
    PinnedUnknown {
        /// The pinned ICCID.
        iccid: String,
    },
    /// The pinned SIM is there but cannot send.
    #[error("pinned SIM {iccid}: {reason}")]
    PinnedIneligible {
        /// The pinned ICCID.
        iccid: String,
        /// Why.
        reason: Ineligible,
    },
    /// A route without fallback matched and none of its SIMs is healthy.
    #[error("route {prefix} has no usable SIM and no fallback")]
    RouteWithoutSim {
        /// The route's prefix as configured.
        prefix: String,
    },
    /// Every modem is ineligible; one reason per modem.
    #[error("no eligible modem: {}", summarize(.0))]
    AllIneligible(Vec<(ModemId, Ineligible)>),
}

fn summarize(reasons: &[(ModemId, Ineligible)]) -> String {
    if reasons.len() > 1
        && reasons
            .iter()
            .all(|(_, r)| matches!(r, Ineligible::Quarantined(_)))
    {
        return format!("all {} quarantined", reasons.len());
    }
    let list: Vec<String> = reasons.iter().map(|(m, r)| format!("{m}: {r}")).collect();
    list.join("; ")
}

/// One message to place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectRequest<'a> {
    /// Recipient, E.164 (`+4917…`).
    pub to: &'a str,
    /// SMS parts; quotas are charged this many units (0 counts as 1).
    pub parts: u32,
    /// ICCID the request insists on: no other SIM is used.
    pub pinned_sim: Option<&'a str>,
    /// ICCIDs that already failed this message: used only when no other SIM can send now
    /// (ignored for a pinned SIM).
    pub avoid: &'a [String],
}

impl<'a> SelectRequest<'a> {
    /// A request to `to` of `parts` parts, neither pinned nor avoiding anything.
    pub fn new(to: &'a str, parts: u32) -> SelectRequest<'a> {
        SelectRequest {
            to,
            parts,
            pinned_sim: None,
            avoid: &[],
        }
    }
}

/// How a chosen SIM was found, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The request pinned it.
    Pinned,
    /// The recipient's sticky SIM.
    Sticky,
    /// The strategy picked it.
    Strategy,
}

/// A SIM that takes the message now. Quota and minimum interval are already charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The modem to send on.
    pub modem: ModemId,
    /// Its SIM.
    pub iccid: String,
    /// How it was found.
    pub via: Via,
    /// A route matched but none of its SIMs could send, so another was used.
    pub route_fallback: bool,
    /// Only SIMs in `avoid` could send now, so one of them was used again.
    pub reused_avoided: bool,
}

/// The answer to [`Pool::select`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Send on this SIM now.
    Chosen(Chosen),
    /// Nothing can send now only because of quotas or minimum intervals; at this instant
    /// a SIM will be free if nothing else changes (set a timer, don't poll).
    WaitUntil(SystemTime),
    /// Nothing can send and time alone will not change that.
    Unavailable(NoCandidate),
}

/// A modem's state for status views (`GET /v1/modems`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Can take a (1-part) message now.
    Eligible,
    /// Healthy but busy until `until`.
    Waiting {
        /// When it frees up.
        until: SystemTime,
        /// The binding reason (the latest of the constraints).
        reason: Busy,
    },
    /// Cannot send.
    Ineligible(Ineligible),
}

/// JSON shape: `{"state": "eligible" | "waiting" | "ineligible", "reason": "quota per_day
/// 100/100", "until_unix_ms": 1709251200000}` (absent fields omitted).
impl Serialize for Availability {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View {
            state: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            until_unix_ms: Option<i64>,
        }
        let view = match self {
            Availability::Eligible => View {
                state: "eligible",
                reason: None,
                until_unix_ms: None,
            },
            Availability::Waiting { until, reason } => View {
                state: "waiting",
                reason: Some(reason.to_string()),
                until_unix_ms: Some(unix_ms_ceil(*until)),
            },
            Availability::Ineligible(r) => View {
                state: "ineligible",
                reason: Some(r.to_string()),
                until_unix_ms: None,
            },
        };
        view.serialize(serializer)
    }
}

/// Current counts per window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WindowUsage {
    /// This minute.
    pub minute: u32,
    /// This hour.
    pub hour: u32,
    /// Today.
    pub day: u32,
    /// This month.
    pub month: u32,
}

/// One modem in [`Pool::candidates_summary`]; serializes for the HTTP status view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModemView {
    /// The modem.
    pub modem: ModemId,
    /// Its SIM.
    pub iccid: Option<String>,
    /// Operator as reported.
    pub operator: Option<String>,
    /// Messages in flight.
    pub in_flight: u32,
    /// Weight for the `weighted` strategy.
    pub weight: u32,
    /// The SIM's usage now (zeros without an ICCID).
    pub usage: WindowUsage,
    /// The SIM's effective limits.
    pub limits: QuotaLimits,
    /// Eligible, or why not.
    pub availability: Availability,
}

#[derive(Debug, Clone)]
struct Route {
    prefix: String,
    digits: String,
    sims: Vec<String>,
    operators: Vec<String>,
    fallback: bool,
}

/// Per-modem verdict for one request.
#[derive(Debug, Clone)]
enum Eval {
    Ready,
    Wait(SystemTime, Busy),
    Out(Ineligible),
}

/// The SIM-aware balancer. Pure state: every method takes the time as an argument.
#[derive(Debug, Clone)]
pub struct Pool {
    config: PoolConfig,
    sim_index: HashMap<String, usize>,
    /// Longest prefix first.
    routes: Vec<Route>,
    modems: BTreeMap<ModemId, ModemStatus>,
    usage: HashMap<String, Usage>,
    /// Recipient (digits) → (ICCID, last send).
    sticky: HashMap<String, (String, SystemTime)>,
    sticky_prune_at: usize,
    /// (ICCID, modem) chosen last by round robin.
    rr_last: Option<(String, ModemId)>,
    /// Smooth weighted round robin: current weight per ICCID.
    wrr_current: HashMap<String, i64>,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool::with_valid_config(PoolConfig::default())
    }
}

const STICKY_PRUNE_MIN: usize = 1024;

impl Pool {
    /// A pool with `config`, no modems and no usage.
    pub fn new(config: PoolConfig) -> Result<Pool, PoolConfigError> {
        config.validate()?;
        Ok(Pool::with_valid_config(config))
    }

    fn with_valid_config(config: PoolConfig) -> Pool {
        let mut pool = Pool {
            config: PoolConfig::default(),
            sim_index: HashMap::new(),
            routes: Vec::new(),
            modems: BTreeMap::new(),
            usage: HashMap::new(),
            sticky: HashMap::new(),
            sticky_prune_at: STICKY_PRUNE_MIN,
            rr_last: None,
            wrr_current: HashMap::new(),
        };
        pool.install(config);
        pool
    }

    /// Replaces the configuration (reload), keeping modems, usage and sticky entries.
    pub fn set_config(&mut self, config: PoolConfig) -> Result<(), PoolConfigError> {
        config.validate()?;
        self.install(config);
        Ok(())
    }

    fn install(&mut self, config: PoolConfig) {
        self.sim_index = config
            .sims
            .iter()
            .enumerate()
            .map(|(i, s)| (s.iccid.clone(), i))
            .collect();
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .filter_map(|r| {
                Some(Route {
                    prefix: r.prefix.clone(),
                    digits: prefix_digits(&r.prefix)?.to_owned(),
                    sims: r.sims.clone(),
                    operators: r
                        .operators
                        .iter()
                        .map(|o| o.trim().to_lowercase())
                        .collect(),
                    fallback: r.fallback,
                })
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.digits.len()));
        self.routes = routes;
        self.config = config;
    }

    /// The configuration in force.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Adds or replaces a modem's status.
    ///
    /// The status's `in_flight` replaces the optimistic count [`Pool::select`] keeps.
    pub fn update_modem(&mut self, status: ModemStatus) {
        self.modems.insert(status.modem.clone(), status);
    }

    /// Forgets a modem (unplugged). Its SIM's usage stays, by ICCID.
    pub fn remove_modem(&mut self, modem: &str) -> Option<ModemStatus> {
        self.modems.remove(modem)
    }

    /// A modem's last status.
    pub fn modem(&self, modem: &str) -> Option<&ModemStatus> {
        self.modems.get(modem)
    }

    /// Charges `parts` to `iccid`'s quotas and starts its minimum interval at `now`.
    ///
    /// [`Pool::select`] already does this for the SIM it chooses; call this only for
    /// sends the pool did not choose (e.g. a modem-level test send), or they would count
    /// twice.
    pub fn record_send(&mut self, iccid: &str, parts: u32, now: SystemTime) {
        self.usage
            .entry(iccid.to_owned())
            .or_default()
            .record(parts.max(1), now);
    }

    /// Gives back the quota charged by a selection at `selected_at` whose message never
    /// reached the modem (e.g. the modem vanished before the write). The minimum
    /// interval stays started: it is cheap and errs on the safe side.
    pub fn refund(&mut self, iccid: &str, parts: u32, selected_at: SystemTime) {
        if let Some(u) = self.usage.get_mut(iccid) {
            u.refund(parts.max(1), selected_at);
        }
    }

    /// The SIM's counters, for the store to persist (zeros for an unknown ICCID).
    pub fn usage(&self, iccid: &str) -> UsageSnapshot {
        self.usage
            .get(iccid)
            .map(UsageSnapshot::from)
            .unwrap_or_default()
    }

    /// All SIMs with counters, for a periodic flush.
    pub fn usages(&self) -> impl Iterator<Item = (&str, UsageSnapshot)> + '_ {
        self.usage
            .iter()
            .map(|(k, u)| (k.as_str(), UsageSnapshot::from(u)))
    }

    /// Restores persisted counters (at startup), replacing what the pool has.
    pub fn restore_usage(&mut self, iccid: &str, snapshot: UsageSnapshot) {
        self.usage.insert(iccid.to_owned(), Usage::from(snapshot));
    }

    fn sim(&self, iccid: &str) -> Option<&SimConfig> {
        self.sim_index
            .get(iccid)
            .and_then(|&i| self.config.sims.get(i))
    }

    fn limits(&self, iccid: &str) -> QuotaLimits {
        match self.sim(iccid) {
            Some(s) => s.quota.or(self.config.quota),
            None => self.config.quota,
        }
    }

    fn weight(&self, iccid: Option<&str>) -> u32 {
        iccid.and_then(|i| self.sim(i)).map_or(1, |s| s.weight)
    }

    /// Health checks that do not depend on time or the message.
    fn health<'m>(&self, m: &'m ModemStatus) -> Result<&'m str, Ineligible> {
        if !m.enabled {
            return Err(Ineligible::ModemDisabled);
        }
        if let Some(reason) = &m.quarantined {
            return Err(Ineligible::Quarantined(reason.clone()));
        }
        if !m.sim_ready {
            return Err(Ineligible::SimNotReady);
        }
        let iccid = m.iccid.as_deref().ok_or(Ineligible::NoIccid)?;
        if self.sim(iccid).is_some_and(|s| !s.enabled) {
            return Err(Ineligible::SimDisabled);
        }
        match m.registration {
            Some(Registration::Home) => {}
            Some(Registration::Roaming) if self.config.allow_roaming => {}
            Some(Registration::Roaming) => return Err(Ineligible::Roaming),
            other => return Err(Ineligible::NotRegistered(other)),
        }
        if let (Some(dbm), Some(min)) = (m.signal_dbm, self.config.min_signal_dbm)
            && dbm < min
        {
            return Err(Ineligible::WeakSignal { dbm, min });
        }
        let max = self.config.max_in_flight;
        if max > 0 && m.in_flight >= max {
            return Err(Ineligible::Sending {
                in_flight: m.in_flight,
                max,
            });
        }
        Ok(iccid)
    }

    fn eval(&self, m: &ModemStatus, parts: u32, now: SystemTime) -> Eval {
        let iccid = match self.health(m) {
            Ok(i) => i,
            Err(e) => return Eval::Out(e),
        };
        let limits = self.limits(iccid);
        let usage = self.usage.get(iccid);
        let now_unix = unix_secs(now);
        let mut wait: Option<(SystemTime, Busy)> = None;
        let mut later = |t: SystemTime, why: Busy| {
            if wait.is_none_or(|(w, _)| t > w) {
                wait = Some((t, why));
            }
        };
        for window in Window::ALL {
            let Some(limit) = limits.get(window) else {
                continue;
            };
            if parts > limit {
                return Eval::Out(Ineligible::TooManyParts {
                    window,
                    limit,
                    parts,
                });
            }
            let Some(u) = usage else { continue };
            let used = u.used(window, now_unix);
            if used.saturating_add(parts) > limit {
                later(
                    from_unix_secs(u.frees_at(window)),
                    Busy::Quota {
                        window,
                        used,
                        limit,
                    },
                );
            }
        }
        let interval_ms = self
            .sim(iccid)
            .and_then(|s| s.min_interval_ms)
            .unwrap_or(self.config.min_interval_ms);
        if let Some(last) = usage.and_then(|u| u.last_send)
            && interval_ms > 0
        {
            let ready = last
                .checked_add(Duration::from_millis(interval_ms))
                .unwrap_or(last);
            if ready > now {
                later(ready, Busy::MinInterval { interval_ms });
            }
        }
        match wait {
            Some((t, why)) => Eval::Wait(t, why),
            None => Eval::Ready,
        }
    }

    fn route_for(&self, to: &str) -> Option<&Route> {
        let digits = recipient_key(to);
        self.routes.iter().find(|r| digits.starts_with(&r.digits))
    }

    fn in_route(&self, route: &Route, m: &ModemStatus) -> bool {
        let Some(iccid) = m.iccid.as_deref() else {
            return false;
        };
        if route.sims.iter().any(|s| s == iccid) {
            return true;
        }
        let configured = self.sim(iccid).and_then(|s| s.operator.as_deref());
        [m.operator.as_deref(), configured]
            .into_iter()
            .flatten()
            .map(|o| o.trim().to_lowercase())
            .any(|o| route.operators.contains(&o))
    }

    /// Picks a SIM for `req` at `now`, or says when one will be free, or why none will.
    ///
    /// On [`Selection::Chosen`] the pool charges the quota (`req.parts`), starts the
    /// SIM's minimum interval, adds one to the modem's in-flight count until the next
    /// [`Pool::update_modem`], and remembers the recipient for the sticky window. The
    /// caller does not call [`Pool::record_send`] for it; if the message then never
    /// reaches the modem, [`Pool::refund`] gives the quota back.
    ///
    /// Order of preference: the pinned SIM (exclusively); otherwise SIMs of the longest
    /// matching route not in `avoid`, other SIMs not in `avoid` (if the route falls
    /// back), then the same two groups among `avoid`. The first group with a SIM that can
    /// send now wins; in it the recipient's sticky SIM, else the strategy's pick. So an
    /// avoided SIM is reused only when no other SIM can send *now*: for a temporary
    /// error, retrying at once beats waiting for a busy SIM, and the dispatcher decides
    /// how often to retry.
    pub fn select(&mut self, req: &SelectRequest<'_>, now: SystemTime) -> Selection {
        if self.modems.is_empty() {
            return Selection::Unavailable(NoCandidate::NoModems);
        }
        let parts = req.parts.max(1);
        let evals: Vec<(&ModemStatus, Eval)> = self
            .modems
            .values()
            .map(|m| (m, self.eval(m, parts, now)))
            .collect();

        if let Some(pin) = req.pinned_sim {
            let mine: Vec<&(&ModemStatus, Eval)> = evals
                .iter()
                .filter(|(m, _)| m.iccid.as_deref() == Some(pin))
                .collect();
            if mine.is_empty() {
                return Selection::Unavailable(NoCandidate::PinnedUnknown {
                    iccid: pin.to_owned(),
                });
            }
            if let Some((m, _)) = mine.iter().find(|(_, e)| matches!(e, Eval::Ready)) {
                let modem = m.modem.clone();
                return self.commit(modem, pin.to_owned(), parts, req.to, now, Via::Pinned);
            }
            if let Some(t) = earliest_wait(mine.iter().map(|x| &x.1)) {
                return Selection::WaitUntil(t);
            }
            let reason = mine
                .iter()
                .find_map(|(_, e)| match e {
                    Eval::Out(r) => Some(r.clone()),
                    _ => None,
                })
                .unwrap_or(Ineligible::SimNotReady);
            return Selection::Unavailable(NoCandidate::PinnedIneligible {
                iccid: pin.to_owned(),
                reason,
            });
        }

        let route = self.route_for(req.to);
        // Group 0: route & not avoided, 1: other & not avoided, 2: route & avoided,
        // 3: other & avoided. Without a route everything is "route".
        let mut groups: [Vec<(&ModemStatus, &Eval)>; 4] = Default::default();
        let mut route_has_healthy = false;
        for (m, e) in &evals {
            let routed = route.is_none_or(|r| self.in_route(r, m));
            if !routed && route.is_some_and(|r| !r.fallback) {
                continue;
            }
            if routed && !matches!(e, Eval::Out(_)) {
                route_has_healthy = true;
            }
            let avoided = m
                .iccid
                .as_deref()
                .is_some_and(|i| req.avoid.iter().any(|a| a == i));
            let g = usize::from(!routed) + 2 * usize::from(avoided);
            groups[g].push((m, e));
        }
        if let Some(r) = route
            && !r.fallback
            && !route_has_healthy
        {
            return Selection::Unavailable(NoCandidate::RouteWithoutSim {
                prefix: r.prefix.clone(),
            });
        }

        for (g, group) in groups.iter().enumerate() {
            let ready: Vec<(ModemId, String, Option<i32>, u32)> = group
                .iter()
                .filter(|(_, e)| matches!(e, Eval::Ready))
                .filter_map(|(m, _)| {
                    Some((m.modem.clone(), m.iccid.clone()?, m.signal_dbm, m.in_flight))
                })
                .collect();
            if ready.is_empty() {
                continue;
            }
            let route_fallback = route.is_some() && g % 2 == 1;
            let reused_avoided = g >= 2;
            let (modem, iccid, via) = self.pick(req.to, ready, now);
            return match self.commit(modem, iccid, parts, req.to, now, via) {
                Selection::Chosen(c) => Selection::Chosen(Chosen {
                    route_fallback,
                    reused_avoided,
                    ..c
                }),
                other => other,
            };
        }

        if let Some(t) = earliest_wait(groups.iter().flatten().map(|(_, e)| *e)) {
            return Selection::WaitUntil(t);
        }
        let reasons = evals
            .iter()
            .filter_map(|(m, e)| match e {
                Eval::Out(r) => Some((m.modem.clone(), r.clone())),
                _ => None,
            })
            .collect();
        Selection::Unavailable(NoCandidate::AllIneligible(reasons))
    }

    /// Chooses among SIMs that can all send now: sticky first, then the strategy.
    fn pick(
        &mut self,
        to: &str,
        mut ready: Vec<(ModemId, String, Option<i32>, u32)>,
        now: SystemTime,
    ) -> (ModemId, String, Via) {
        ready.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        if let Some(iccid) = self.sticky_sim(to, now)
            && let Some(r) = ready.iter().find(|r| r.1 == iccid)
        {
            return (r.0.clone(), r.1.clone(), Via::Sticky);
        }
        let i = match self.config.strategy {
            Strategy::LeastLoaded => {
                let now_unix = unix_secs(now);
                let day_used = |iccid: &str| {
                    self.usage
                        .get(iccid)
                        .map_or(0, |u| u.used(Window::Day, now_unix))
                };
                ready
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, r)| (r.3, day_used(&r.1), std::cmp::Reverse(r.2)))
                    .map_or(0, |(i, _)| i)
            }
            Strategy::RoundRobin => {
                let after = self
                    .rr_last
                    .as_ref()
                    .and_then(|(li, lm)| ready.iter().position(|r| (&r.1, &r.0) > (li, lm)));
                let i = after.unwrap_or(0);
                self.rr_last = ready.get(i).map(|r| (r.1.clone(), r.0.clone()));
                i
            }
            Strategy::Weighted => self.weighted_pick(&ready),
        };
        let r = ready.swap_remove(i.min(ready.len() - 1));
        (r.0, r.1, Via::Strategy)
    }

    /// nginx's smooth weighted round robin over the SIMs able to send now; weight-0 SIMs
    /// join (at weight 1) only when no weighted SIM can send.
    fn weighted_pick(&mut self, ready: &[(ModemId, String, Option<i32>, u32)]) -> usize {
        let weights: Vec<u32> = ready.iter().map(|r| self.weight(Some(&r.1))).collect();
        let any_positive = weights.iter().any(|&w| w > 0);
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (i, r) in ready.iter().enumerate() {
            let w = match (weights[i], any_positive) {
                (0, true) => continue,
                (0, false) => 1,
                (w, _) => i64::from(w),
            };
            // Two modems may report one ICCID (a SIM mid-move): count the SIM once.
            if ready[..i].iter().any(|p| p.1 == r.1) {
                continue;
            }
            let cur = self.wrr_current.entry(r.1.clone()).or_insert(0);
            *cur += w;
            total += w;
            if best.is_none_or(|(_, b)| *cur > b) {
                best = Some((i, *cur));
            }
        }
        let Some((i, _)) = best else { return 0 };
        if let Some(cur) = self.wrr_current.get_mut(&ready[i].1) {
            *cur -= total;
        }
        i
    }

    fn sticky_sim(&self, to: &str, now: SystemTime) -> Option<String> {
        let window = Duration::from_secs(self.config.sticky_window_secs);
        if window.is_zero() {
            return None;
        }
        let (iccid, at) = self.sticky.get(recipient_key(to))?;
        // A send "in the future" (clock stepped back) still counts as recent.
        let recent = now.duration_since(*at).map_or(true, |age| age < window);
        recent.then(|| iccid.clone())
    }

    fn commit(
        &mut self,
        modem: ModemId,
        iccid: String,
        parts: u32,
        to: &str,
        now: SystemTime,
        via: Via,
    ) -> Selection {
        self.record_send(&iccid, parts, now);
        if let Some(m) = self.modems.get_mut(&modem) {
            m.in_flight = m.in_flight.saturating_add(1);
        }
        if self.config.sticky_window_secs > 0 {
            self.sticky
                .insert(recipient_key(to).to_owned(), (iccid.clone(), now));
            if self.sticky.len() >= self.sticky_prune_at {
                let window = Duration::from_secs(self.config.sticky_window_secs);
                self.sticky
                    .retain(|_, (_, at)| now.duration_since(*at).map_or(true, |a| a < window));
                self.sticky_prune_at = (2 * self.sticky.len()).max(STICKY_PRUNE_MIN);
            }
        }
        Selection::Chosen(Chosen {
            modem,
            iccid,
            via,
            route_fallback: false,
            reused_avoided: false,
        })
    }

    /// Every modem with its SIM's usage and whether it could take a 1-part message now,
    /// or why not; ordered by modem id.
    pub fn candidates_summary(&self, now: SystemTime) -> Vec<ModemView> {
        let now_unix = unix_secs(now);
        self.modems
            .values()
            .map(|m| {
                let iccid = m.iccid.as_deref();
                let u = iccid.and_then(|i| self.usage.get(i));
                let used = |w| u.map_or(0, |u| u.used(w, now_unix));
                ModemView {
                    modem: m.modem.clone(),
                    iccid: m.iccid.clone(),
                    operator: m.operator.clone(),
                    in_flight: m.in_flight,
                    weight: self.weight(iccid),
                    usage: WindowUsage {
                        minute: used(Window::Minute),
                        hour: used(Window::Hour),
                        day: used(Window::Day),
                        month: used(Window::Month),
                    },
                    limits: iccid.map_or(self.config.quota, |i| self.limits(i)),
                    availability: match self.eval(m, 1, now) {
                        Eval::Ready => Availability::Eligible,
                        Eval::Wait(until, reason) => Availability::Waiting { until, reason },
                        Eval::Out(r) => Availability::Ineligible(r),
                    },
                }
            })
            .collect()
    }
}

fn earliest_wait<'e>(evals: impl Iterator<Item = &'e Eval>) -> Option<SystemTime> {
    evals
        .filter_map(|e| match e {
            Eval::Wait(t, _) => Some(*t),
            _ => None,
        })
        .min()
}

/// The recipient's digits: routes and sticky entries ignore a leading `+`.
fn recipient_key(to: &str) -> &str {
    let t = to.trim();
    t.strip_prefix('+').unwrap_or(t)
}
