//! `[retention]`: how long each kind of row is kept before the daemon prunes it. The
//! defaults keep a small box healthy for years at thousands of messages a day; `0`
//! keeps that kind forever.

use crate::store::Cutoffs;
use serde::Deserialize;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// Retention periods. Queued and sending messages, SIMs, templates and suppressions
/// (the opt-out audit) are never pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Finished messages (sent, delivered, failed, expired, cancelled), counted from
    /// their last change, with their parts, attempts and status reports (90).
    pub messages_days: u32,
    /// Inbox messages (90).
    pub inbox_days: u32,
    /// Webhook events delivered or given up on (7). Pending ones are always kept.
    pub events_days: u32,
    /// Idempotency keys: a retry with the same key within this replays the first
    /// answer (24).
    pub idempotency_hours: u32,
    /// One-time-code rows, the salted hashes `verify` checks (7).
    pub otp_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            messages_days: 90,
            inbox_days: 90,
            events_days: 7,
            idempotency_hours: 24,
            otp_days: 7,
        }
    }
}

impl RetentionConfig {
    /// What is older than this at `now` (unix ms) goes.
    pub fn cutoffs(&self, now: i64) -> Cutoffs {
        let before = |n: u32, unit: i64| (n > 0).then(|| now.saturating_sub(i64::from(n) * unit));
        Cutoffs {
            messages: before(self.messages_days, DAY_MS),
            inbox: before(self.inbox_days, DAY_MS),
            events: before(self.events_days, DAY_MS),
            idempotency: before(self.idempotency_hours, HOUR_MS),
            otps: before(self.otp_days, DAY_MS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_keeps_forever_and_the_rest_counts_back_from_now() {
        let c = RetentionConfig {
            inbox_days: 0,
            ..RetentionConfig::default()
        }
        .cutoffs(100 * DAY_MS);
        assert_eq!(c.messages, Some(10 * DAY_MS));
        assert_eq!(c.inbox, None);
        assert_eq!(c.idempotency, Some(100 * DAY_MS - 24 * HOUR_MS));
    }
}
