//! Every timeout and interval of the modem driver, the fleet and the dispatcher, with
//! its default, in one place. The configuration file's keys (`[modems]
//! command_timeout_ms`, `[dispatch] retry_base_ms`, …) take their defaults from
//! [`Timeouts::default`], [`super::Config::timeouts`] turns a loaded file into a
//! `Timeouts`, and the driver (`modem::ModemConfig::timeouts`) and the dispatcher
//! (`dispatch::Settings::timeouts`) read theirs from it. docs/config.md lists them all.

use std::time::Duration;

/// The timeouts, intervals and back-offs of the modem driver, the fleet and the
/// dispatcher. `Default` suits real modems; tests shorten what they wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// An ordinary AT command (`[modems] command_timeout_ms`, 5 s).
    pub command: Duration,
    /// A storage command: `+CMGL`, `+CMGR`, `+CMGD`, `+CPMS` (30 s).
    pub storage: Duration,
    /// One part's `AT+CMGS`, network round trip included (`[modems] send_timeout_ms`,
    /// 60 s).
    pub send: Duration,
    /// Waiting for the network's `+CUSD` answer to a USSD request (30 s).
    pub ussd: Duration,
    /// `AT+CFUN` (radio off/on takes seconds on real modems) (20 s).
    pub cfun: Duration,
    /// How long a busy or initialising SIM or device is waited for during bring-up,
    /// asking again with exponential backoff (30 s).
    pub sim_wait: Duration,
    /// How long the inbound sink may take to commit one received message (30 s).
    pub sink: Duration,
    /// Between two health polls: `+CSQ`, `+CREG?`, `+COPS?`, `+CPMS?`
    /// (`[modems] health_interval_secs`, 30 s).
    pub health_interval: Duration,
    /// Reopening a port that went away: first delay, then doubling up to the second
    /// (250 ms, 10 s).
    pub reopen_backoff: (Duration, Duration),
    /// After `AT+CFUN=1,1`, before reopening: the modem re-enumerates (3 s).
    pub reset_wait: Duration,
    /// Recoveries within this window count towards quarantine (10 min).
    pub quarantine_window: Duration,
    /// How long stopping a modem task lets it finish what it is doing before it is
    /// aborted (800 ms).
    pub shutdown_grace: Duration,
    /// A modem whose port stays gone this long is removed; a replug within it reopens
    /// the same modem (`[modems] remove_after_secs`, 60 s).
    pub remove_after: Duration,
    /// Safety-net rescan of the port globs; inotify catches changes at once
    /// (`[modems] rescan_secs`, 10 s).
    pub rescan: Duration,
    /// First retry delay of a message after a temporary failure; it doubles per
    /// attempt (`[dispatch] retry_base_ms`, 2 s).
    pub retry_base: Duration,
    /// Longest retry delay (`[dispatch] retry_max_ms`, 5 min).
    pub retry_max: Duration,
    /// How long after sending a status report may still match a part
    /// (`[dispatch] report_window_secs`, 3 days).
    pub report_window: Duration,
    /// An incomplete inbound multipart message is delivered, marked incomplete, after
    /// this long (`[dispatch] reassembly_timeout_secs`, 15 min).
    pub reassembly: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: Duration::from_secs(5),
            storage: Duration::from_secs(30),
            send: Duration::from_secs(60),
            ussd: Duration::from_secs(30),
            cfun: Duration::from_secs(20),
            sim_wait: Duration::from_secs(30),
            sink: Duration::from_secs(30),
            health_interval: Duration::from_secs(30),
            reopen_backoff: (Duration::from_millis(250), Duration::from_secs(10)),
            reset_wait: Duration::from_secs(3),
            quarantine_window: Duration::from_secs(600),
            shutdown_grace: Duration::from_millis(800),
            remove_after: Duration::from_secs(60),
            rescan: Duration::from_secs(10),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            report_window: Duration::from_secs(3 * 24 * 3600),
            reassembly: Duration::from_secs(15 * 60),
        }
    }
}

/// Whole milliseconds of a default, for a `_ms` key.
pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whole seconds of a default, for a `_secs` key.
pub(super) fn secs(d: Duration) -> u64 {
    d.as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_defaults_are_the_timeouts_defaults() {
        assert_eq!(
            super::super::Config::default().timeouts(),
            Timeouts::default()
        );
        assert_eq!(
            crate::modem::ModemConfig::default().timeouts,
            Timeouts::default()
        );
        assert_eq!(
            crate::dispatch::Settings::default().timeouts,
            Timeouts::default()
        );
    }
}
