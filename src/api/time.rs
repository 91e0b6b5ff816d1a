//! Times at the API's edge: the bounds every accepted time and duration must keep (a
//! year past 9999 once panicked while formatting inside a store write and stopped the
//! writer for good), and the total RFC 3339 formatting the responses use.

use super::ApiError;
use std::time::Duration;

/// How far ahead, by default, a message may be scheduled or stay valid
/// (`http.max_ahead_days`): `send_at`, `expires_at`, `appointment_at`, and the
/// durations `ttl`, `remind_before` and `validity`. A century: far enough for any
/// booking (README's appointment program books one in 2099 so that it stays valid),
/// and far short of year 9999, past which times were once unformattable.
pub const DEFAULT_MAX_AHEAD_DAYS: u64 = 36_525;

/// Days as milliseconds, saturating.
pub fn days_ms(days: u64) -> i64 {
    i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX)
}

/// A point in time a client gave: not before 1970 and at most `max_ms` from `now`.
pub fn bounded_time(field: &str, t: i64, now: i64, max_ms: i64) -> Result<i64, ApiError> {
    if t < 0 {
        return Err(ApiError::field(
            field,
            "invalid_time",
            format!("{field} is before 1970"),
        ));
    }
    if t > now.saturating_add(max_ms) {
        return Err(ApiError::field(
            field,
            "too_far_ahead",
            format!(
                "{field} is at most {} days from now (http.max_ahead_days)",
                max_ms / 86_400_000
            ),
        ));
    }
    Ok(t)
}

/// A duration a client gave: at most `max_ms`.
pub fn bounded_duration(field: &str, d: Duration, max_ms: i64) -> Result<Duration, ApiError> {
    if i64::try_from(d.as_millis()).map_or(true, |m| m > max_ms) {
        return Err(ApiError::field(
            field,
            "too_long",
            format!(
                "{field} is at most {} days (http.max_ahead_days)",
                max_ms / 86_400_000
            ),
        ));
    }
    Ok(d)
}

pub use crate::store::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_humantime_in_its_range() {
        for ms in [
            0i64,
            1,
            999,
            86_399_999,
            951_782_400_000,   // 2000-02-29
            1_764_236_800_123, // 2025-11-27
            4_102_444_800_000, // 2100-01-01
            253_402_300_799_999,
        ] {
            let expected = humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + Duration::from_millis(ms as u64),
            )
            .to_string();
            assert_eq!(rfc3339(ms), expected, "{ms}");
        }
    }

    /// The audit's request: `send_at` 253402300800000 is 10000-01-01, which panicked.
    #[test]
    fn total_for_every_i64() {
        assert_eq!(rfc3339(253_402_300_800_000), "+10000-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(-62_167_219_200_001), "-0001-12-31T23:59:59.999Z");
        for ms in [i64::MIN, i64::MIN + 1, -1, i64::MAX - 1, i64::MAX] {
            let s = rfc3339(ms);
            assert!(s.ends_with('Z'), "{s}");
        }
    }

    #[test]
    fn bounds_name_the_field() {
        let now = 1_764_236_800_000;
        let max = days_ms(DEFAULT_MAX_AHEAD_DAYS);
        assert!(bounded_time("send_at", now + max, now, max).is_ok());
        let e = bounded_time("send_at", now + max + 1, now, max).unwrap_err();
        assert_eq!(
            (e.field.as_deref(), e.code),
            (Some("send_at"), "too_far_ahead")
        );
        // Year 10000 is always past the bound.
        assert!(bounded_time("send_at", 253_402_300_800_000, now, max).is_err());
        let e = bounded_time("expires_at", -5, now, max).unwrap_err();
        assert_eq!(e.code, "invalid_time");
        assert!(bounded_time("x", i64::MAX, i64::MAX, max).is_ok());
        assert!(bounded_duration("ttl", Duration::from_secs(3600), days_ms(1)).is_ok());
        let e = bounded_duration("ttl", Duration::from_secs(u64::MAX), max).unwrap_err();
        assert_eq!((e.field.as_deref(), e.code), (Some("ttl"), "too_long"));
    }
}
