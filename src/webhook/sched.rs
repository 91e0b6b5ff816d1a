//! Which due outbox rows the worker may start now (security audit #10, finding 3: one
//! slow callback delayed every webhook).
//!
//! Deliveries are grouped by destination — scheme, host and port, and whether the URL is
//! a configured one or an app's `callback_url` (so callbacks to a configured receiver's
//! host cannot use up that receiver's share). Limits:
//!
//! - `concurrency` deliveries in flight in all;
//! - `callback_concurrency` of them at most to callback URLs, so configured URLs always
//!   keep slots of their own, whatever apps put in `callback_url`;
//! - `destination_concurrency` at most to one destination, so one slow or dead
//!   destination cannot take every slot;
//! - a destination that could not be reached (refused, reset, timed out) rests for a
//!   while (doubling per consecutive failure, up to a minute or `retry_max_ms`): its due
//!   rows stay due but are passed over, and the rows behind them go out meanwhile. Any
//!   HTTP answer, even a 500, shows it is up and ends the rest.

use std::collections::HashMap;
use std::time::Duration;

/// The limits, from `[webhooks]`.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub total: usize,
    pub callbacks: usize,
    pub per_destination: usize,
    pub rest_base: Duration,
    pub rest_max: Duration,
}

/// How an attempt went, as far as its destination's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// It answered (any status).
    Up,
    /// No answer: connection refused or reset, timeout.
    Down,
    /// The attempt says nothing about it (refused URL, TLS setup...).
    Unknown,
}

/// Whether a row of a destination may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Go,
    /// At a limit; a finishing attempt frees a slot.
    Busy,
    /// Resting until this time (ms).
    Resting(i64),
}

#[derive(Debug, Clone, Default)]
struct Dest {
    in_flight: usize,
    failures: u32,
    resting_until: i64,
}

/// The worker's view of destinations. Cloned (small: one entry per destination with
/// work in flight or resting) into the store read that picks rows.
#[derive(Debug, Clone)]
pub(crate) struct Scheduler {
    limits: Limits,
    dests: HashMap<String, Dest>,
    total: usize,
    callbacks: usize,
}

/// A destination's key: `cfg|https://host:443` or `cb|http://host:80`. A URL that does
/// not parse is its own destination (its attempt fails at once).
pub(crate) fn destination(url: &str, configured: bool) -> String {
    let class = if configured { "cfg" } else { "cb" };
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{class}|{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => format!("{class}|{url}"),
    }
}

impl Scheduler {
    pub(crate) fn new(limits: Limits) -> Scheduler {
        Scheduler {
            limits,
            dests: HashMap::new(),
            total: 0,
            callbacks: 0,
        }
    }

    /// Whether any slot is free at all.
    pub(crate) fn has_room(&self) -> bool {
        self.total < self.limits.total
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.total
    }

    pub(crate) fn verdict(&self, dest: &str, configured: bool, now: i64) -> Verdict {
        if !self.has_room() || (!configured && self.callbacks >= self.limits.callbacks) {
            return Verdict::Busy;
        }
        match self.dests.get(dest) {
            Some(d) if d.resting_until > now => Verdict::Resting(d.resting_until),
            Some(d) if d.in_flight >= self.limits.per_destination => Verdict::Busy,
            _ => Verdict::Go,
        }
    }

    pub(crate) fn start(&mut self, dest: &str, configured: bool) {
        self.total += 1;
        if !configured {
            self.callbacks += 1;
        }
        self.dests.entry(dest.to_owned()).or_default().in_flight += 1;
    }

    pub(crate) fn finish(&mut self, dest: &str, configured: bool, health: Health, now: i64) {
        self.total = self.total.saturating_sub(1);
        if !configured {
            self.callbacks = self.callbacks.saturating_sub(1);
        }
        let limits = &self.limits;
        let d = self.dests.entry(dest.to_owned()).or_default();
        d.in_flight = d.in_flight.saturating_sub(1);
        match health {
            Health::Up => {
                d.failures = 0;
                d.resting_until = 0;
            }
            Health::Down => {
                d.failures = d.failures.saturating_add(1);
                let cap = limits.rest_max.min(Duration::from_secs(60));
                let rest = super::backoff(limits.rest_base, cap, d.failures);
                let until = now.saturating_add(i64::try_from(rest.as_millis()).unwrap_or(i64::MAX));
                d.resting_until = d.resting_until.max(until);
            }
            Health::Unknown => {}
        }
    }

    /// Forgets idle destinations whose rest is long over (their failure count with it).
    pub(crate) fn prune(&mut self, now: i64) {
        let keep_ms = i64::try_from(
            self.limits
                .rest_max
                .min(Duration::from_secs(60))
                .as_millis(),
        )
        .unwrap_or(i64::MAX);
        self.dests.retain(|_, d| {
            d.in_flight > 0 || (d.failures > 0 && d.resting_until.saturating_add(keep_ms) > now)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched() -> Scheduler {
        Scheduler::new(Limits {
            total: 4,
            callbacks: 2,
            per_destination: 2,
            rest_base: Duration::from_millis(100),
            rest_max: Duration::from_secs(3600),
        })
    }

    #[test]
    fn destinations_are_scheme_host_port_and_class() {
        assert_eq!(
            destination("http://Hooks.example:80/a?b", true),
            "cfg|http://hooks.example:80"
        );
        assert_eq!(
            destination("http://hooks.example/other", true),
            destination("http://hooks.example:80/a", true)
        );
        assert_ne!(
            destination("http://hooks.example/a", true),
            destination("http://hooks.example/a", false)
        );
        assert_eq!(
            destination("https://h.example/", false),
            "cb|https://h.example:443"
        );
        assert_eq!(destination("not a url", false), "cb|not a url");
    }

    #[test]
    fn one_destination_cannot_take_every_slot() {
        let mut s = sched();
        let dead = destination("http://dead.example/", true);
        let ok = destination("http://ok.example/", true);
        assert_eq!(s.verdict(&dead, true, 0), Verdict::Go);
        s.start(&dead, true);
        s.start(&dead, true);
        assert_eq!(s.verdict(&dead, true, 0), Verdict::Busy, "per destination");
        assert_eq!(s.verdict(&ok, true, 0), Verdict::Go);
        s.start(&ok, true);
        s.start(&ok, true);
        assert!(!s.has_room());
        assert_eq!(s.in_flight(), 4);
        s.finish(&ok, true, Health::Up, 0);
        assert_eq!(s.verdict(&ok, true, 0), Verdict::Go);
    }

    #[test]
    fn callbacks_leave_slots_for_configured_urls() {
        let mut s = sched();
        let a = destination("http://a.example/", false);
        let b = destination("http://b.example/", false);
        let hook = destination("http://hook.example/", true);
        s.start(&a, false);
        s.start(&b, false);
        assert_eq!(
            s.verdict(&a, false, 0),
            Verdict::Busy,
            "callback share used up"
        );
        assert_eq!(
            s.verdict(&destination("http://c.example/", false), false, 0),
            Verdict::Busy
        );
        assert_eq!(s.verdict(&hook, true, 0), Verdict::Go);
        s.finish(&a, false, Health::Unknown, 0);
        assert_eq!(
            s.verdict(&destination("http://c.example/", false), false, 0),
            Verdict::Go
        );
    }

    #[test]
    fn an_unreachable_destination_rests_doubling_and_an_answer_ends_it() {
        let mut s = sched();
        let d = destination("http://dead.example/", true);
        s.start(&d, true);
        s.finish(&d, true, Health::Down, 1_000);
        assert_eq!(s.verdict(&d, true, 1_000), Verdict::Resting(1_100));
        assert_eq!(s.verdict(&d, true, 1_100), Verdict::Go);
        s.start(&d, true);
        s.finish(&d, true, Health::Down, 1_100);
        assert_eq!(s.verdict(&d, true, 1_100), Verdict::Resting(1_300));
        // Capped at a minute.
        for _ in 0..30 {
            s.start(&d, true);
            s.finish(&d, true, Health::Down, 10_000);
        }
        assert_eq!(s.verdict(&d, true, 10_000), Verdict::Resting(70_000));
        // Others are not affected.
        assert_eq!(
            s.verdict(&destination("http://ok.example/", true), true, 10_000),
            Verdict::Go
        );
        s.start(&d, true);
        s.finish(&d, true, Health::Up, 10_001);
        assert_eq!(s.verdict(&d, true, 10_001), Verdict::Go);
        s.prune(10_001);
        assert!(
            s.dests.is_empty(),
            "healthy idle destinations are forgotten"
        );
        s.start(&d, true);
        s.finish(&d, true, Health::Down, 20_000);
        s.prune(20_000);
        assert_eq!(s.dests.len(), 1, "a resting one is kept");
        s.prune(20_000 + 100 + 60_000);
        assert!(s.dests.is_empty());
    }
}
