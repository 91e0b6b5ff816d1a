//! Time fields: TP-SCTS/TP-DT (semi-octet timestamps with a quarter-hour time zone,
//! negative zones included) and TP-VP in its relative, absolute and enhanced formats.

use super::error::{PduError, Result};
use std::fmt;
use std::time::Duration;

/// A service-centre timestamp as the network sent it, in local time plus its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Full year (the PDU carries two digits; see [`Timestamp::decode`]).
    pub year: u16,
    /// 1–12.
    pub month: u8,
    /// 1–31.
    pub day: u8,
    /// 0–23, local to `tz_quarters`.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
    /// 0–59.
    pub second: u8,
    /// Offset from UTC in quarter hours, −79..=79.
    pub tz_quarters: i8,
}

impl Timestamp {
    /// Decodes 7 semi-octet-swapped octets; `offset` is the first one's position.
    pub fn decode(b: [u8; 7], offset: usize) -> Result<Timestamp> {
        let mut v = [0u8; 6];
        for (i, slot) in v.iter_mut().enumerate() {
            let (lo, hi) = (b[i] & 0x0F, b[i] >> 4);
            if lo > 9 || hi > 9 {
                return Err(PduError::Invalid {
                    offset: offset + i,
                    field: "timestamp",
                    reason: format!("0x{:02X} is not two decimal digits", b[i]),
                });
            }
            *slot = lo * 10 + hi;
        }
        let tz = b[6];
        let (lo, hi) = (tz & 0x0F, tz >> 4);
        if hi > 9 {
            return Err(PduError::Invalid {
                offset: offset + 6,
                field: "time zone",
                reason: format!("0x{tz:02X} is not a quarter-hour offset"),
            });
        }
        let q = ((lo & 7) * 10 + hi) as i8;
        let t = Timestamp {
            // Two-digit years: 70–99 are 1970–1999, 00–69 are 2000–2069.
            year: if v[0] >= 70 {
                1900 + u16::from(v[0])
            } else {
                2000 + u16::from(v[0])
            },
            month: v[1],
            day: v[2],
            hour: v[3],
            minute: v[4],
            second: v[5],
            tz_quarters: if lo & 8 != 0 { -q } else { q },
        };
        let field_bad = |i: usize, what: &str| PduError::Invalid {
            offset: offset + i,
            field: "timestamp",
            reason: format!("{what} out of range"),
        };
        if !(1..=12).contains(&t.month) {
            return Err(field_bad(1, "month"));
        }
        if !(1..=31).contains(&t.day) {
            return Err(field_bad(2, "day"));
        }
        if t.hour > 23 {
            return Err(field_bad(3, "hour"));
        }
        if t.minute > 59 {
            return Err(field_bad(4, "minute"));
        }
        if t.second > 59 {
            return Err(field_bad(5, "second"));
        }
        Ok(t)
    }

    /// The 7 semi-octet-swapped octets; the year loses its century and the offset is
    /// clamped to ±79 quarter hours.
    pub fn encode(&self) -> [u8; 7] {
        let sw = |v: u8| ((v % 10) << 4) | ((v / 10) % 10);
        let q = self.tz_quarters.unsigned_abs().min(79);
        let mut tz = sw(q);
        if self.tz_quarters < 0 {
            tz |= 0x08;
        }
        [
            sw((self.year % 100) as u8),
            sw(self.month),
            sw(self.day),
            sw(self.hour),
            sw(self.minute),
            sw(self.second),
            tz,
        ]
    }
}

/// RFC 3339, e.g. `2026-11-27T22:56:16-03:30`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.tz_quarters < 0 { '-' } else { '+' };
        let minutes = u32::from(self.tz_quarters.unsigned_abs()) * 15;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{:02}:{:02}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            sign,
            minutes / 60,
            minutes % 60
        )
    }
}

/// TP-VP in one of the three formats of TS 23.040 §9.2.3.12.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// The relative one-octet code.
    Relative(u8),
    /// Until this time (TP-VPF 11).
    Absolute(Timestamp),
    /// The enhanced format, kept raw with a decoded view in [`Validity::duration`].
    Enhanced([u8; 7]),
}

impl Validity {
    /// The smallest relative code that keeps the message at least `d` (capped at the
    /// longest, 63 weeks): an SMSC must not drop a code before the caller's deadline.
    pub fn relative_at_least(d: Duration) -> Validity {
        let mins = d.as_secs().div_ceil(60);
        let code = if mins <= 12 * 60 {
            mins.div_ceil(5).max(1) - 1
        } else if mins <= 24 * 60 {
            143 + (mins - 12 * 60).div_ceil(30)
        } else if mins <= 30 * 24 * 60 {
            166 + mins.div_ceil(24 * 60)
        } else {
            (192 + mins.div_ceil(7 * 24 * 60)).min(255)
        };
        Validity::Relative(code.min(255) as u8)
    }

    /// How long the SMSC keeps the message, where the format says so.
    pub fn duration(&self) -> Option<Duration> {
        match *self {
            Validity::Relative(code) => Some(relative_duration(code)),
            Validity::Absolute(_) => None,
            Validity::Enhanced(b) => match b[0] & 7 {
                1 => Some(relative_duration(b[1])),
                2 => Some(Duration::from_secs(u64::from(b[1]))),
                3 => {
                    let d = |x: u8| u64::from((x & 0x0F) * 10 + (x >> 4));
                    Some(Duration::from_secs(d(b[1]) * 3600 + d(b[2]) * 60 + d(b[3])))
                }
                _ => None,
            },
        }
    }

    /// The VPF bits (TP-VPF) announcing this format in the first octet.
    pub(crate) fn vpf(&self) -> u8 {
        match self {
            Validity::Relative(_) => 0b10,
            Validity::Enhanced(_) => 0b01,
            Validity::Absolute(_) => 0b11,
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Validity::Relative(c) => out.push(*c),
            Validity::Absolute(t) => out.extend_from_slice(&t.encode()),
            Validity::Enhanced(b) => out.extend_from_slice(b),
        }
    }
}

fn relative_duration(code: u8) -> Duration {
    let c = u64::from(code);
    let mins = match code {
        0..=143 => (c + 1) * 5,
        144..=167 => 12 * 60 + (c - 143) * 30,
        168..=196 => (c - 166) * 24 * 60,
        _ => (c - 192) * 7 * 24 * 60,
    };
    Duration::from_secs(mins * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_with_negative_zone() {
        // 2026-11-27 22:56:16, UTC−03:30 (14 quarters, sign bit set).
        let b = [0x62, 0x11, 0x72, 0x22, 0x65, 0x61, 0x49];
        let t = Timestamp::decode(b, 0).unwrap();
        assert_eq!(t.to_string(), "2026-11-27T22:56:16-03:30");
        assert_eq!(t.encode(), b);
        let plus = Timestamp::decode([0x62, 0x11, 0x72, 0x22, 0x65, 0x61, 0x40], 0).unwrap();
        assert_eq!(plus.to_string(), "2026-11-27T22:56:16+01:00");
    }

    #[test]
    fn timestamp_rejects_bad_digits_with_offset() {
        let e = Timestamp::decode([0x62, 0x1F, 0x72, 0x22, 0x65, 0x61, 0x40], 20).unwrap_err();
        assert!(matches!(e, PduError::Invalid { offset: 21, .. }), "{e}");
        let e = Timestamp::decode([0x62, 0x31, 0x72, 0x22, 0x65, 0x61, 0x40], 0).unwrap_err();
        assert!(e.to_string().contains("month"), "{e}");
    }

    #[test]
    fn relative_validity_codes() {
        let h = |s: u64| Duration::from_secs(s);
        assert_eq!(Validity::relative_at_least(h(300)), Validity::Relative(0));
        assert_eq!(Validity::relative_at_least(h(3600)), Validity::Relative(11));
        assert_eq!(
            Validity::relative_at_least(h(12 * 3600)),
            Validity::Relative(143)
        );
        assert_eq!(
            Validity::relative_at_least(h(24 * 3600)),
            Validity::Relative(167)
        );
        assert_eq!(
            Validity::relative_at_least(h(2 * 86400)),
            Validity::Relative(168)
        );
        assert_eq!(
            Validity::relative_at_least(h(30 * 86400)),
            Validity::Relative(196)
        );
        assert_eq!(
            Validity::relative_at_least(h(5 * 7 * 86400)),
            Validity::Relative(197)
        );
        assert_eq!(
            Validity::relative_at_least(h(1000 * 86400)),
            Validity::Relative(255)
        );
        for code in 0..=255u8 {
            let d = Validity::Relative(code).duration().unwrap();
            assert_eq!(
                Validity::relative_at_least(d),
                Validity::Relative(code),
                "{code}"
            );
        }
    }
}
