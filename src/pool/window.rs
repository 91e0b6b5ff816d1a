//! Quota windows and the per-ICCID usage counters.
//!
//! Windows are calendar-aligned in UTC (minute, hour, day, month): a `per_day` limit of
//! 100 means "at most 100 parts between 00:00:00Z and 24:00:00Z", which is what operators
//! print on prepaid tariffs and what an operator can check against a log. A counter
//! remembers the start of the window it counts for; a send in a later window starts it
//! afresh, so no timer is needed to reset anything.
//!
//! If the clock steps backwards, counters of the "future" window keep counting until that
//! window has ended: over-restricting for a while is better than letting a SIM burst.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One quota window kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// A UTC minute.
    Minute,
    /// A UTC hour.
    Hour,
    /// A UTC day.
    Day,
    /// A UTC calendar month (28 to 31 days).
    Month,
}

impl Window {
    /// All windows, shortest first.
    pub const ALL: [Window; 4] = [Window::Minute, Window::Hour, Window::Day, Window::Month];

    /// The config key of the limit for this window (`per_day`, …).
    pub fn key(self) -> &'static str {
        match self {
            Window::Minute => "per_minute",
            Window::Hour => "per_hour",
            Window::Day => "per_day",
            Window::Month => "per_month",
        }
    }

    /// Start (Unix seconds) of the window containing `unix`.
    pub fn start(self, unix: i64) -> i64 {
        match self {
            Window::Minute => unix - unix.rem_euclid(60),
            Window::Hour => unix - unix.rem_euclid(3600),
            Window::Day => unix - unix.rem_euclid(86_400),
            Window::Month => {
                let (y, m, _) = civil_from_days(unix.div_euclid(86_400));
                days_from_civil(y, m, 1) * 86_400
            }
        }
    }

    /// End (exclusive, Unix seconds) of the window containing `unix`: the next start.
    pub fn end(self, unix: i64) -> i64 {
        match self {
            Window::Minute => self.start(unix) + 60,
            Window::Hour => self.start(unix) + 3600,
            Window::Day => self.start(unix) + 86_400,
            Window::Month => {
                let (y, m, _) = civil_from_days(unix.div_euclid(86_400));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * 86_400
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// How many parts were sent in one window, and which window that was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCount {
    /// Start of the window (Unix seconds, UTC) the count belongs to.
    pub start_unix: i64,
    /// Parts sent in that window.
    pub count: u32,
}

/// Everything the pool remembers about one SIM's sending, for the store to persist by
/// ICCID across restarts (and across the SIM moving to another port).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UsageSnapshot {
    /// The current (or last used) minute window.
    pub minute: WindowCount,
    /// The current (or last used) hour window.
    pub hour: WindowCount,
    /// The current (or last used) day window.
    pub day: WindowCount,
    /// The current (or last used) month window.
    pub month: WindowCount,
    /// Last send start, Unix milliseconds rounded up (so the minimum interval is never
    /// shortened by a restore).
    pub last_send_unix_ms: Option<i64>,
}

impl UsageSnapshot {
    /// The counter of one window.
    pub fn window(&self, w: Window) -> WindowCount {
        match w {
            Window::Minute => self.minute,
            Window::Hour => self.hour,
            Window::Day => self.day,
            Window::Month => self.month,
        }
    }

    /// Parts counted against `w` at time `now` (0 once that window is over).
    pub fn used(&self, w: Window, now: SystemTime) -> u32 {
        Usage::from(*self).used(w, unix_secs(now))
    }
}

/// In-memory usage of one ICCID; keeps the last send at full precision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    counts: [WindowCount; 4],
    pub(crate) last_send: Option<SystemTime>,
}

impl Usage {
    /// Parts counted against `w` at `now_unix`.
    pub(crate) fn used(&self, w: Window, now_unix: i64) -> u32 {
        let c = self.counts[w.index()];
        if w.start(now_unix) <= c.start_unix {
            c.count
        } else {
            0
        }
    }

    /// When the counted window of `w` ends (Unix seconds): from then on it counts 0.
    pub(crate) fn frees_at(&self, w: Window) -> i64 {
        w.end(self.counts[w.index()].start_unix)
    }

    pub(crate) fn record(&mut self, parts: u32, now: SystemTime) {
        let now_unix = unix_secs(now);
        for w in Window::ALL {
            let c = &mut self.counts[w.index()];
            let start = w.start(now_unix);
            if start > c.start_unix {
                *c = WindowCount {
                    start_unix: start,
                    count: parts,
                };
            } else {
                c.count = c.count.saturating_add(parts);
            }
        }
        if self.last_send.is_none_or(|last| now > last) {
            self.last_send = Some(now);
        }
    }

    /// Takes back parts recorded at `at`, from the windows that still count them.
    pub(crate) fn refund(&mut self, parts: u32, at: SystemTime) {
        let at_unix = unix_secs(at);
        for w in Window::ALL {
            let c = &mut self.counts[w.index()];
            if w.start(at_unix) == c.start_unix {
                c.count = c.count.saturating_sub(parts);
            }
        }
    }
}

impl From<UsageSnapshot> for Usage {
    fn from(s: UsageSnapshot) -> Usage {
        Usage {
            counts: [s.minute, s.hour, s.day, s.month],
            last_send: s.last_send_unix_ms.map(from_unix_ms),
        }
    }
}

impl From<&Usage> for UsageSnapshot {
    fn from(u: &Usage) -> UsageSnapshot {
        UsageSnapshot {
            minute: u.counts[0],
            hour: u.counts[1],
            day: u.counts[2],
            month: u.counts[3],
            last_send_unix_ms: u.last_send.map(unix_ms_ceil),
        }
    }
}

/// Bound on |Unix seconds| so calendar arithmetic cannot overflow (±142 million years).
const LIMIT_SECS: i64 = 1 << 52;

/// Unix seconds of `t`, rounded down (also before 1970), clamped to ±2^52.
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs())
            .unwrap_or(LIMIT_SECS)
            .min(LIMIT_SECS),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs())
                .unwrap_or(LIMIT_SECS)
                .min(LIMIT_SECS);
            if d.subsec_nanos() > 0 { -s - 1 } else { -s }
        }
    }
}

/// The instant at Unix second `s`.
pub(crate) fn from_unix_secs(s: i64) -> SystemTime {
    let d = Duration::from_secs(s.unsigned_abs());
    let t = if s >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(UNIX_EPOCH)
}

/// Unix milliseconds of `t`, rounded up.
pub(crate) fn unix_ms_ceil(t: SystemTime) -> i64 {
    let nanos: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let ms = nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) != 0);
    i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
}

fn from_unix_ms(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    let t = if ms >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(UNIX_EPOCH)
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (proleptic Gregorian;
/// H. Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
