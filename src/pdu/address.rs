//! Addresses (TS 23.040 §9.1.2.5): the TP-DA/TP-OA/TP-RA fields counted in semi-octets,
//! the SMSC field counted in octets, BCD digits with `*`, `#`, `a`–`c`, and
//! alphanumeric senders packed in GSM 7-bit.

use super::error::{PduError, Result};
use super::gsm7::{self, Gsm7Tables};
use super::reader::Reader;
use std::fmt;

/// Type of number, bits 6–4 of the type-of-address octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeOfNumber {
    /// 000: the network applies its own dialling rules (what we send for bare digits).
    Unknown,
    /// 001: a full E.164 number, shown with `+`.
    International,
    /// 010: a number within the country, without the trunk prefix.
    National,
    /// 011: a network-specific number (service numbers, operator short codes).
    NetworkSpecific,
    /// 100: a subscriber number (local, without area code).
    Subscriber,
    /// 101: a sender name in GSM 7-bit (only networks send these).
    Alphanumeric,
    /// 110: an abbreviated number.
    Abbreviated,
    /// 111: reserved for extension.
    Reserved,
}

impl TypeOfNumber {
    fn from_bits(b: u8) -> Self {
        match b & 7 {
            0 => Self::Unknown,
            1 => Self::International,
            2 => Self::National,
            3 => Self::NetworkSpecific,
            4 => Self::Subscriber,
            5 => Self::Alphanumeric,
            6 => Self::Abbreviated,
            _ => Self::Reserved,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::International => 1,
            Self::National => 2,
            Self::NetworkSpecific => 3,
            Self::Subscriber => 4,
            Self::Alphanumeric => 5,
            Self::Abbreviated => 6,
            Self::Reserved => 7,
        }
    }

    /// The lower-case name used in CLI and JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::International => "international",
            Self::National => "national",
            Self::NetworkSpecific => "network-specific",
            Self::Subscriber => "subscriber",
            Self::Alphanumeric => "alphanumeric",
            Self::Abbreviated => "abbreviated",
            Self::Reserved => "reserved",
        }
    }
}

/// ISDN/telephone numbering plan (E.164), the one every mobile number uses.
pub const NPI_ISDN: u8 = 1;

/// A phone number or alphanumeric sender. `digits` holds the number without `+` (the
/// type says it is international) or the sender's text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// Type of number; `International` means `digits` is shown with `+`.
    pub ton: TypeOfNumber,
    /// Numbering plan identification, bits 3–0 of the type-of-address octet.
    pub npi: u8,
    /// The number without `+`, or the sender's text when alphanumeric.
    pub digits: String,
}

/// Longest number an address field carries (10 octets of BCD).
const MAX_DIGITS: usize = 20;
/// Longest alphanumeric sender that fits 10 octets of packed septets.
const MAX_ALPHA: usize = 11;

impl Address {
    /// Parses what a user types: `+4917…` is international, digits (with `*`, `#`) are
    /// of unknown type (the network applies its own rules, as handsets do), anything
    /// else is an alphanumeric sender.
    pub fn parse(value: &str) -> Result<Address> {
        let bad = |reason| PduError::Address {
            value: value.to_string(),
            reason,
        };
        if let Some(rest) = value.strip_prefix('+') {
            if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("an international number is + followed by digits"));
            }
            return Self::number(TypeOfNumber::International, rest).map_err(|_| bad("too long"));
        }
        if !value.is_empty() && value.bytes().all(is_bcd_char) {
            return Self::number(TypeOfNumber::Unknown, value).map_err(|_| bad("too long"));
        }
        Self::alphanumeric(value)
    }

    /// A number of the given type; digits may contain `*`, `#`, `a`, `b`, `c`.
    pub fn number(ton: TypeOfNumber, digits: &str) -> Result<Address> {
        let bad = |reason| PduError::Address {
            value: digits.to_string(),
            reason,
        };
        if digits.is_empty() {
            return Err(bad("empty"));
        }
        if digits.len() > MAX_DIGITS {
            return Err(bad("more than 20 digits"));
        }
        if !digits.bytes().all(is_bcd_char) {
            return Err(bad("only digits, *, #, a, b and c are allowed"));
        }
        Ok(Address {
            ton,
            npi: NPI_ISDN,
            digits: digits.to_ascii_lowercase(),
        })
    }

    /// An alphanumeric sender (at most 11 GSM 7-bit characters).
    pub fn alphanumeric(text: &str) -> Result<Address> {
        let bad = |reason| PduError::Address {
            value: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(bad("empty"));
        }
        let mut septets = Vec::new();
        Gsm7Tables::DEFAULT
            .encode_str(text, &mut septets)
            .map_err(|_| bad("an alphanumeric sender must use the GSM 7-bit alphabet"))?;
        if septets.len() > MAX_ALPHA {
            return Err(bad("an alphanumeric sender has at most 11 characters"));
        }
        Ok(Address {
            ton: TypeOfNumber::Alphanumeric,
            npi: 0,
            digits: text.to_string(),
        })
    }

    fn toa(&self) -> u8 {
        0x80 | self.ton.bits() << 4 | (self.npi & 0x0F)
    }

    /// Encodes as TP-DA/TP-OA/TP-RA (length in semi-octets).
    pub fn encode_tp(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.ton == TypeOfNumber::Alphanumeric {
            let mut septets = Vec::new();
            Gsm7Tables::DEFAULT
                .encode_str(&self.digits, &mut septets)
                .map_err(|ch| PduError::Unencodable { ch })?;
            let packed = gsm7::pack(&septets);
            out.push((septets.len() * 7).div_ceil(4) as u8);
            out.push(self.toa());
            out.extend_from_slice(&packed);
        } else {
            out.push(self.digits.len() as u8);
            out.push(self.toa());
            push_bcd(&self.digits, out);
        }
        Ok(())
    }

    /// Encodes as the SMSC field (length in octets, type-of-address included).
    pub fn encode_smsc(&self, out: &mut Vec<u8>) {
        let len_at = out.len();
        out.push(0);
        out.push(self.toa());
        if self.ton == TypeOfNumber::Alphanumeric {
            // Not a real SMSC, but a decoded one must re-encode to the same thing.
            let mut septets = Vec::new();
            for c in self.digits.chars() {
                let mut one = Vec::new();
                if Gsm7Tables::DEFAULT
                    .encode_str(&c.to_string(), &mut one)
                    .is_ok()
                {
                    septets.extend(one);
                }
            }
            out.extend_from_slice(&gsm7::pack(&septets));
        } else {
            push_bcd(&self.digits, out);
        }
        out[len_at] = (out.len() - len_at - 1) as u8;
    }

    pub(crate) fn decode_tp(r: &mut Reader<'_>, field: &'static str) -> Result<Address> {
        let start = r.offset();
        let len = usize::from(r.u8(field)?);
        if len > MAX_DIGITS {
            return Err(PduError::Invalid {
                offset: start,
                field,
                reason: format!("length {len} exceeds 20 semi-octets"),
            });
        }
        let toa = r.u8(field)?;
        let body = r.take(len.div_ceil(2), field)?;
        Self::from_parts(toa, body, len, start + 2)
    }

    /// Decodes the SMSC field; `None` when its length is 0.
    pub(crate) fn decode_smsc(r: &mut Reader<'_>) -> Result<Option<Address>> {
        let start = r.offset();
        let len = usize::from(r.u8("SMSC length")?);
        if len == 0 {
            return Ok(None);
        }
        if len > 11 {
            return Err(PduError::Invalid {
                offset: start,
                field: "SMSC length",
                reason: format!("{len} octets, at most 11 are allowed"),
            });
        }
        let toa = r.u8("SMSC address")?;
        let body = r.take(len - 1, "SMSC address")?;
        if body.is_empty() {
            return Ok(None);
        }
        // The SMSC length counts octets, so the digit count follows from the 0xF filler
        // (alphanumeric: every semi-octet counts).
        let alpha = TypeOfNumber::from_bits(toa >> 4) == TypeOfNumber::Alphanumeric;
        let digits =
            body.len() * 2 - usize::from(!alpha && body.last().is_some_and(|b| b >> 4 == 0xF));
        Self::from_parts(toa, body, digits, start + 2).map(Some)
    }

    fn from_parts(toa: u8, body: &[u8], semi_octets: usize, offset: usize) -> Result<Address> {
        let ton = TypeOfNumber::from_bits(toa >> 4);
        let npi = toa & 0x0F;
        if ton == TypeOfNumber::Alphanumeric {
            let count = semi_octets * 4 / 7;
            let septets = gsm7::unpack(body, 0, count);
            let mut digits = String::new();
            Gsm7Tables::DEFAULT.decode(&septets, &mut digits);
            return Ok(Address { ton, npi, digits });
        }
        let mut digits = String::with_capacity(semi_octets);
        for i in 0..semi_octets {
            let b = body[i / 2];
            let n = if i.is_multiple_of(2) {
                b & 0x0F
            } else {
                b >> 4
            };
            match bcd_char(n) {
                Some(c) => digits.push(c),
                None => {
                    return Err(PduError::Invalid {
                        offset: offset + i / 2,
                        field: "address digit",
                        reason: format!("semi-octet 0x{n:X} is not a digit"),
                    });
                }
            }
        }
        Ok(Address { ton, npi, digits })
    }
}

/// `+` and the digits for international numbers, the text for alphanumeric senders,
/// the digits otherwise.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ton == TypeOfNumber::International {
            f.write_str("+")?;
        }
        f.write_str(&self.digits)
    }
}

fn is_bcd_char(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'*' | b'#' | b'a'..=b'c' | b'A'..=b'C')
}

fn bcd_char(n: u8) -> Option<char> {
    match n {
        0..=9 => Some(char::from(b'0' + n)),
        0xA => Some('*'),
        0xB => Some('#'),
        0xC => Some('a'),
        0xD => Some('b'),
        0xE => Some('c'),
        _ => None,
    }
}

fn bcd_value(c: u8) -> u8 {
    match c {
        b'*' => 0xA,
        b'#' => 0xB,
        b'a' | b'A' => 0xC,
        b'b' | b'B' => 0xD,
        b'c' | b'C' => 0xE,
        d => d.wrapping_sub(b'0') & 0x0F,
    }
}

fn push_bcd(digits: &str, out: &mut Vec<u8>) {
    for pair in digits.as_bytes().chunks(2) {
        let lo = bcd_value(pair[0]);
        let hi = pair.get(1).map_or(0xF, |&c| bcd_value(c));
        out.push(hi << 4 | lo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(a: &Address) -> String {
        let mut v = Vec::new();
        a.encode_tp(&mut v).unwrap();
        super::super::hex::encode(&v)
    }

    fn back(hex: &str) -> Address {
        let b = super::super::hex::decode(hex).unwrap();
        let mut r = Reader::new(&b, 0);
        let a = Address::decode_tp(&mut r, "address").unwrap();
        r.finish().unwrap();
        a
    }

    #[test]
    fn international_odd_digits() {
        let a = Address::parse("+491701234567").unwrap();
        assert_eq!(tp(&a), "0C91947110325476");
        assert_eq!(back("0C91947110325476").to_string(), "+491701234567");
        let a = Address::parse("+4917012345678").unwrap();
        assert_eq!(tp(&a), "0D91947110325476F8");
        assert_eq!(back("0D91947110325476F8"), a);
    }

    #[test]
    fn unknown_with_star_and_hash() {
        let a = Address::parse("*100#").unwrap();
        assert_eq!(a.ton, TypeOfNumber::Unknown);
        assert_eq!(tp(&a), "05811A00FB");
        assert_eq!(back("05811A00FB"), a);
    }

    #[test]
    fn alphanumeric_sender() {
        // "Shop" from TS 23.040 style: 4 septets = 28 bits = 7 semi-octets.
        let a = Address::parse("Shop").unwrap();
        assert_eq!(a.ton, TypeOfNumber::Alphanumeric);
        let h = tp(&a);
        assert!(h.starts_with("07D0"), "{h}");
        assert_eq!(back(&h), a);
        let a = Address::parse("ABCDEFGHIJK").unwrap();
        assert_eq!(back(&tp(&a)).digits, "ABCDEFGHIJK");
        assert!(Address::parse("ABCDEFGHIJKL").is_err());
        assert!(Address::parse("Ünïcødé✓").is_err());
    }

    #[test]
    fn smsc_field() {
        let mut v = Vec::new();
        Address::parse("+491710760000").unwrap().encode_smsc(&mut v);
        assert_eq!(super::super::hex::encode(&v), "0791947101670000");
    }

    #[test]
    fn alphanumeric_smsc_re_encodes() {
        // Found by the fuzzer: an SMSC field with the alphanumeric type must survive
        // decode → encode → decode.
        let b = super::super::hex::decode("0B5F0BFFFFFFFFFFFFFFFFAA").unwrap();
        let a = Address::decode_smsc(&mut Reader::new(&b, 0))
            .unwrap()
            .unwrap();
        let mut v = Vec::new();
        a.encode_smsc(&mut v);
        let again = Address::decode_smsc(&mut Reader::new(&v, 0))
            .unwrap()
            .unwrap();
        assert_eq!(again.ton, TypeOfNumber::Alphanumeric);
        assert_eq!(v.len(), b.len());
    }

    #[test]
    fn bad_digit_is_reported_with_offset() {
        let b = super::super::hex::decode("0491F1FF").unwrap();
        let mut r = Reader::new(&b, 10);
        let e = Address::decode_tp(&mut r, "address").unwrap_err();
        assert!(matches!(e, PduError::Invalid { offset: 12, .. }), "{e}");
    }
}
