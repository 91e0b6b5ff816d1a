//! The one clock the daemon's shells read: wall time (what the store and webhooks
//! stamp, what quiet hours and quota windows are measured in) and monotonic time (what
//! timeouts and back-offs count). The dispatcher, webhook worker, modem driver and pool
//! windows take a [`Clock`] instead of reading `SystemTime`/`Instant` themselves, so a
//! test can hand them [`Clock::paused`] and drive time with `tokio::time::pause` and
//! `advance` rather than sleeping and hoping.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Wall and monotonic time from one source. Cheap to clone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    /// `None`: the system clock. `Some`: wall time follows tokio's clock from an anchor.
    anchor: Option<(SystemTime, Instant)>,
}

impl Clock {
    /// The system's clocks: what the daemon runs on.
    pub fn system() -> Clock {
        Clock { anchor: None }
    }

    /// Wall time that moves only as tokio's clock moves: under `tokio::time::pause` it
    /// advances exactly as far as the test's timers and `advance` calls take it. It
    /// starts at the real wall time of the call.
    pub fn paused() -> Clock {
        Clock {
            anchor: Some((SystemTime::now(), Instant::now())),
        }
    }

    /// Like [`Clock::paused`], starting at a given wall time (e.g. inside quiet hours).
    pub fn paused_at(wall: SystemTime) -> Clock {
        Clock {
            anchor: Some((wall, Instant::now())),
        }
    }

    /// Monotonic now. Always tokio's: in production it is the system's monotonic clock,
    /// under a paused test runtime it is the test's.
    pub fn instant(&self) -> Instant {
        Instant::now()
    }

    /// Wall-clock now.
    pub fn now(&self) -> SystemTime {
        match self.anchor {
            None => SystemTime::now(),
            Some((wall, at)) => wall + Instant::now().saturating_duration_since(at),
        }
    }

    /// Wall-clock now in milliseconds since the Unix epoch (the store's timestamps).
    pub fn now_ms(&self) -> i64 {
        to_ms(self.now())
    }
}

/// Milliseconds since the Unix epoch (0 before it, saturating far after).
pub fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The wall time of a store timestamp (negative counts as the epoch).
pub fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_moves_with_tokio_time_only() {
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = Clock::paused_at(start);
        assert_eq!(clock.now(), start);
        let t0 = clock.instant();
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), start + Duration::from_secs(90));
        assert_eq!(clock.instant() - t0, Duration::from_secs(90));
        assert_eq!(clock.now_ms(), 1_800_000_090_000);
    }

    #[test]
    fn store_timestamps_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(from_ms(to_ms(t)), t);
        assert_eq!(from_ms(-5), UNIX_EPOCH);
    }
}
