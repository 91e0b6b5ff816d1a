//! SMS transfer-layer PDUs (3GPP TS 23.040) and the alphabets they carry (TS 23.038).
//!
//! Owns: the GSM 7-bit default alphabet and extension table, septet packing with UDH
//! fill bits, UCS-2 (UTF-16, surrogate pairs), addresses (international, national,
//! alphanumeric), SMS-SUBMIT decode/encode, SMS-DELIVER and SMS-STATUS-REPORT encode,
//! and splitting a text into concatenated parts. Written from the specifications, not
//! shared with gsmgw, so that interoperating proves both sides read the standard alike.

use std::fmt::Write as _;

/// Why a PDU could not be understood; the modem turns this into `+CMS ERROR: 304`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// The PDU ends before the named field.
    #[error("PDU too short at {0}")]
    Short(&'static str),
    /// Odd length or a non-hex digit.
    #[error("not hex")]
    NotHex,
    /// TP-MTI is not the message type expected.
    #[error("unsupported message type {0}")]
    Mti(u8),
    /// The named field has an impossible value.
    #[error("bad field: {0}")]
    Bad(&'static str),
}

/// GSM 03.38 default alphabet; index = septet value. 0x1B is the escape to the
/// extension table and never decodes by itself.
const GSM7: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{a0}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The default extension table (TS 23.038 §6.2.1.1): septet after 0x1B → char.
const GSM7_EXT: [(u8, char); 10] = [
    (0x0A, '\u{0c}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

const ESC: u8 = 0x1B;

/// Septets for one char, or `None` when the char is not in the default alphabet.
pub fn gsm7_char(c: char) -> Option<Vec<u8>> {
    if c != '\u{a0}'
        && let Some(i) = GSM7.iter().position(|&g| g == c)
    {
        return Some(vec![i as u8]);
    }
    GSM7_EXT
        .iter()
        .find(|(_, e)| *e == c)
        .map(|(s, _)| vec![ESC, *s])
}

/// Text → septets; `None` if any char needs UCS-2.
pub fn gsm7_encode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        out.extend(gsm7_char(c)?);
    }
    Some(out)
}

/// Septets → text. An unknown escape pair decodes as the base char, as TS 23.038 asks.
pub fn gsm7_decode(septets: &[u8]) -> String {
    let mut s = String::with_capacity(septets.len());
    let mut i = 0;
    while i < septets.len() {
        let b = septets[i] & 0x7F;
        if b == ESC {
            if let Some(&n) = septets.get(i + 1) {
                let n = n & 0x7F;
                match GSM7_EXT.iter().find(|(k, _)| *k == n) {
                    Some((_, c)) => s.push(*c),
                    None => s.push(GSM7[n as usize]),
                }
                i += 2;
                continue;
            }
            s.push(' ');
            i += 1;
            continue;
        }
        s.push(GSM7[b as usize]);
        i += 1;
    }
    s
}

/// Packs septets LSB-first starting `fill` bits in, as the UD after a UDH needs.
pub fn pack_septets(septets: &[u8], fill: usize) -> Vec<u8> {
    let total = fill + septets.len() * 7;
    let mut out = vec![0u8; total.div_ceil(8)];
    for (i, &s) in septets.iter().enumerate() {
        let bit = fill + i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let v = u16::from(s & 0x7F) << shift;
        out[byte] |= (v & 0xFF) as u8;
        if shift > 1 {
            out[byte + 1] |= (v >> 8) as u8;
        }
    }
    out
}

/// Inverse of [`pack_septets`]; stops early if the data runs out.
pub fn unpack_septets(data: &[u8], fill: usize, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let bit = fill + i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let Some(&lo) = data.get(byte) else { break };
        let hi = data.get(byte + 1).copied().unwrap_or(0);
        let v = (u16::from(hi) << 8 | u16::from(lo)) >> shift;
        out.push((v & 0x7F) as u8);
    }
    out
}

/// Upper-case hex, as modems print PDUs.
pub fn to_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02X}");
    }
    s
}

/// Parses hex of either case; surrounding whitespace is ignored.
pub fn from_hex(s: &str) -> Result<Vec<u8>, PduError> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return Err(PduError::NotHex);
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(PduError::NotHex)
        })
        .collect()
}

/// A TP address. `number` is `+digits` for international numbers, the digits as given
/// otherwise, or the text of an alphanumeric sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// `+digits`, plain digits, or the alphanumeric text (see above).
    pub number: String,
    /// Type-of-address octet (0x91 international, 0x81 unknown, 0xA1 national, 0xD0 alphanumeric).
    pub toa: u8,
}

impl Address {
    /// Classifies a user-facing string: `+…` international, digits national/unknown,
    /// anything else alphanumeric (which only a network sender may use).
    pub fn parse(s: &str) -> Address {
        if let Some(d) = s.strip_prefix('+')
            && !d.is_empty()
            && d.chars().all(|c| c.is_ascii_digit())
        {
            return Address {
                number: s.to_string(),
                toa: 0x91,
            };
        }
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || "*#".contains(c)) {
            return Address {
                number: s.to_string(),
                toa: 0x81,
            };
        }
        Address {
            number: s.to_string(),
            toa: 0xD0,
        }
    }

    fn ton(&self) -> u8 {
        (self.toa >> 4) & 0x07
    }

    /// Digits as they go into BCD, without the '+'.
    fn digits(&self) -> &str {
        self.number.strip_prefix('+').unwrap_or(&self.number)
    }

    /// TP-address encoding: length in semi-octets, TOA, swapped BCD (or packed GSM 7-bit).
    pub fn encode_tp(&self) -> Vec<u8> {
        if self.ton() == 5 {
            let sept = gsm7_encode(&self.number).unwrap_or_default();
            let sept: Vec<u8> = sept.into_iter().take(11).collect();
            let packed = pack_septets(&sept, 0);
            let semi = (sept.len() * 7).div_ceil(4);
            let mut v = vec![semi as u8, self.toa];
            v.extend(packed);
            return v;
        }
        let d = self.digits();
        let mut v = vec![d.len() as u8, self.toa];
        v.extend(bcd_swapped(d));
        v
    }

    /// SMSC (RP) address encoding: length in octets including the TOA octet.
    pub fn encode_smsc(&self) -> Vec<u8> {
        let bcd = bcd_swapped(self.digits());
        let mut v = vec![(bcd.len() + 1) as u8, self.toa];
        v.extend(bcd);
        v
    }

    /// Decodes a TP address at `pos`, advancing it.
    pub fn decode_tp(b: &[u8], pos: &mut usize) -> Result<Address, PduError> {
        let len = *b.get(*pos).ok_or(PduError::Short("address length"))? as usize;
        let toa = *b.get(*pos + 1).ok_or(PduError::Short("address type"))?;
        let octets = len.div_ceil(2);
        let body = b
            .get(*pos + 2..*pos + 2 + octets)
            .ok_or(PduError::Short("address"))?;
        *pos += 2 + octets;
        let number = if (toa >> 4) & 0x07 == 5 {
            let sept = unpack_septets(body, 0, len * 4 / 7);
            gsm7_decode(&sept)
        } else {
            let d = bcd_decode(body, len);
            if (toa >> 4) & 0x07 == 1 {
                format!("+{d}")
            } else {
                d
            }
        };
        Ok(Address { number, toa })
    }
}

fn bcd_swapped(d: &str) -> Vec<u8> {
    let nib = |c: char| match c {
        '0'..='9' => c as u8 - b'0',
        '*' => 0xA,
        '#' => 0xB,
        'a' | 'A' => 0xC,
        'b' | 'B' => 0xD,
        'c' | 'C' => 0xE,
        _ => 0xF,
    };
    let ch: Vec<u8> = d.chars().map(nib).collect();
    ch.chunks(2)
        .map(|p| p[0] | (p.get(1).copied().unwrap_or(0xF) << 4))
        .collect()
}

fn bcd_decode(b: &[u8], digits: usize) -> String {
    let mut s = String::new();
    for x in b {
        for n in [x & 0x0F, x >> 4] {
            if s.len() >= digits {
                break;
            }
            s.push(match n {
                0..=9 => (b'0' + n) as char,
                0xA => '*',
                0xB => '#',
                0xC => 'a',
                0xD => 'b',
                0xE => 'c',
                _ => continue,
            });
        }
    }
    s
}

/// Character set of the user data, from the DCS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// GSM 7-bit default alphabet, septets packed.
    Gsm7,
    /// 8-bit data, passed through as octets.
    Eight,
    /// UCS-2 (read as UTF-16), big-endian.
    Ucs2,
}

/// TS 23.038 §4: the alphabet a DCS octet selects.
pub fn dcs_alphabet(dcs: u8) -> Alphabet {
    match dcs >> 4 {
        0x0..=0x7 => match (dcs >> 2) & 0x03 {
            1 => Alphabet::Eight,
            2 => Alphabet::Ucs2,
            _ => Alphabet::Gsm7,
        },
        0xC | 0xD => Alphabet::Gsm7,
        0xE => Alphabet::Ucs2,
        0xF => {
            if dcs & 0x04 != 0 {
                Alphabet::Eight
            } else {
                Alphabet::Gsm7
            }
        }
        _ => Alphabet::Eight,
    }
}

/// Concatenation info from a UDH (IEI 0x00 8-bit or 0x08 16-bit reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    /// The reference shared by every part of one message (8 or 16 bits).
    pub reference: u16,
    /// Number of parts.
    pub total: u8,
    /// This part's number, from 1.
    pub seq: u8,
}

/// The payload of one part, kept in code units so that a surrogate pair or an escape
/// split across parts (which a careless sender may do) is rejoined before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// GSM 7-bit septet values, unpacked, escapes not yet resolved.
    Septets(Vec<u8>),
    /// UTF-16 code units, surrogates not yet paired.
    Ucs2(Vec<u16>),
    /// 8-bit data.
    Octets(Vec<u8>),
}

impl Payload {
    /// This part decoded on its own; 8-bit data that is not UTF-8 comes out as hex.
    pub fn text(&self) -> String {
        match self {
            Payload::Septets(s) => gsm7_decode(s),
            Payload::Ucs2(u) => String::from_utf16_lossy(u),
            Payload::Octets(o) => String::from_utf8(o.clone()).unwrap_or_else(|_| to_hex(o)),
        }
    }

    /// Joins parts in order, then decodes once.
    pub fn join_text(parts: &[&Payload]) -> String {
        match parts.first() {
            Some(Payload::Septets(_)) => {
                let mut all = Vec::new();
                for p in parts {
                    if let Payload::Septets(s) = p {
                        all.extend_from_slice(s);
                    }
                }
                gsm7_decode(&all)
            }
            Some(Payload::Ucs2(_)) => {
                let mut all = Vec::new();
                for p in parts {
                    if let Payload::Ucs2(s) = p {
                        all.extend_from_slice(s);
                    }
                }
                String::from_utf16_lossy(&all)
            }
            _ => parts.iter().map(|p| p.text()).collect(),
        }
    }
}

/// Splits a user-data field into (UDH bytes, payload) per UDHI, UDL and the alphabet.
fn decode_ud(
    udhi: bool,
    alphabet: Alphabet,
    udl: usize,
    ud: &[u8],
) -> Result<(Vec<u8>, Payload), PduError> {
    let (udh, hdr_octets) = if udhi {
        let l = *ud.first().ok_or(PduError::Short("UDHL"))? as usize;
        let h = ud.get(1..1 + l).ok_or(PduError::Short("UDH"))?;
        (h.to_vec(), l + 1)
    } else {
        (Vec::new(), 0)
    };
    let payload = match alphabet {
        Alphabet::Gsm7 => {
            let hdr_bits = hdr_octets * 8;
            let hdr_septets = hdr_bits.div_ceil(7);
            let fill = hdr_septets * 7 - hdr_bits;
            let count = udl.saturating_sub(hdr_septets);
            let rest = ud.get(hdr_octets..).unwrap_or(&[]);
            if rest.len() * 8 < fill + count * 7 {
                return Err(PduError::Short("septets"));
            }
            Payload::Septets(unpack_septets(rest, fill, count))
        }
        Alphabet::Ucs2 | Alphabet::Eight => {
            let rest = ud
                .get(hdr_octets..udl.max(hdr_octets))
                .ok_or(PduError::Short("user data"))?;
            if alphabet == Alphabet::Ucs2 {
                Payload::Ucs2(
                    rest.chunks(2)
                        .map(|c| u16::from(c[0]) << 8 | u16::from(c.get(1).copied().unwrap_or(0)))
                        .collect(),
                )
            } else {
                Payload::Octets(rest.to_vec())
            }
        }
    };
    Ok((udh, payload))
}

/// Reads concatenation IEs out of a UDH.
pub fn udh_concat(udh: &[u8]) -> Option<Concat> {
    let mut i = 0;
    while i + 1 < udh.len() {
        let (iei, l) = (udh[i], udh[i + 1] as usize);
        let d = udh.get(i + 2..i + 2 + l)?;
        match (iei, l) {
            (0x00, 3) => {
                return Some(Concat {
                    reference: u16::from(d[0]),
                    total: d[1],
                    seq: d[2],
                });
            }
            (0x08, 4) => {
                return Some(Concat {
                    reference: u16::from(d[0]) << 8 | u16::from(d[1]),
                    total: d[2],
                    seq: d[3],
                });
            }
            _ => {}
        }
        i += 2 + l;
    }
    None
}

/// A decoded SMS-SUBMIT, with the raw UD kept so the network can forward it verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// TP-MTI, TP-RD, TP-VPF, TP-SRR, TP-UDHI and TP-RP as sent.
    pub first_octet: u8,
    /// TP-MR as sent (the modem overwrites it when it accepts the message).
    pub mr: u8,
    /// TP-DA, the recipient.
    pub da: Address,
    /// TP-PID.
    pub pid: u8,
    /// TP-DCS.
    pub dcs: u8,
    /// TP-VP octets as sent: none, one (relative) or seven, per TP-VPF.
    pub vp: Vec<u8>,
    /// TP-UDL: septets for GSM 7-bit, octets otherwise, header included.
    pub udl: u8,
    /// UD exactly as sent (UDH, fill bits and all).
    pub ud: Vec<u8>,
    /// The UDH without its length octet; empty without TP-UDHI.
    pub udh: Vec<u8>,
    /// The user data after the header.
    pub payload: Payload,
    /// The concatenation IE, if the UDH has one.
    pub concat: Option<Concat>,
}

impl Submit {
    /// TP-SRR: the sender wants a status report.
    pub fn srr(&self) -> bool {
        self.first_octet & 0x20 != 0
    }
    /// TP-UDHI: the user data starts with a header.
    pub fn udhi(&self) -> bool {
        self.first_octet & 0x40 != 0
    }
}

/// Decodes an SMS-SUBMIT TPDU (no SMSC prefix).
pub fn decode_submit(b: &[u8]) -> Result<Submit, PduError> {
    let fo = *b.first().ok_or(PduError::Short("first octet"))?;
    if fo & 0x03 != 0x01 {
        return Err(PduError::Mti(fo & 0x03));
    }
    let mr = *b.get(1).ok_or(PduError::Short("MR"))?;
    let mut pos = 2;
    let da = Address::decode_tp(b, &mut pos)?;
    let pid = *b.get(pos).ok_or(PduError::Short("PID"))?;
    let dcs = *b.get(pos + 1).ok_or(PduError::Short("DCS"))?;
    pos += 2;
    let vp_len = match (fo >> 3) & 0x03 {
        0 => 0,
        2 => 1,
        _ => 7,
    };
    let vp = b
        .get(pos..pos + vp_len)
        .ok_or(PduError::Short("VP"))?
        .to_vec();
    pos += vp_len;
    let udl = *b.get(pos).ok_or(PduError::Short("UDL"))?;
    let ud = b.get(pos + 1..).unwrap_or(&[]).to_vec();
    let alphabet = dcs_alphabet(dcs);
    let expect = match alphabet {
        Alphabet::Gsm7 => (usize::from(udl) * 7).div_ceil(8),
        _ => usize::from(udl),
    };
    if ud.len() < expect {
        return Err(PduError::Short("user data"));
    }
    if ud.len() > expect {
        return Err(PduError::Bad("trailing octets after user data"));
    }
    let udhi = fo & 0x40 != 0;
    let (udh, payload) = decode_ud(udhi, alphabet, usize::from(udl), &ud)?;
    let concat = if udhi { udh_concat(&udh) } else { None };
    Ok(Submit {
        first_octet: fo,
        mr,
        da,
        pid,
        dcs,
        vp,
        udl,
        ud,
        udh,
        payload,
        concat,
    })
}

/// Splits a full `+CMGS` PDU into the optional SMSC address and the TPDU.
pub fn split_smsc(b: &[u8]) -> Result<(Option<Address>, &[u8]), PduError> {
    let l = *b.first().ok_or(PduError::Short("SMSC length"))? as usize;
    if l == 0 {
        return Ok((None, &b[1..]));
    }
    let sc = b.get(1..1 + l).ok_or(PduError::Short("SMSC"))?;
    let toa = sc[0];
    let d = bcd_decode(&sc[1..], (l - 1) * 2);
    let number = if (toa >> 4) & 0x07 == 1 {
        format!("+{d}")
    } else {
        d
    };
    Ok((Some(Address { number, toa }), &b[1 + l..]))
}

/// A service-centre time stamp (UTC, no zone offset) from a Unix time.
pub fn scts(unix_secs: u64) -> [u8; 7] {
    let days = (unix_secs / 86400) as i64;
    let rem = unix_secs % 86400;
    let (y, m, d) = civil_from_days(days);
    let f = |v: u64| -> u8 {
        let v = (v % 100) as u8;
        (v % 10) << 4 | (v / 10)
    };
    [
        f(y as u64),
        f(u64::from(m)),
        f(u64::from(d)),
        f(rem / 3600),
        f(rem % 3600 / 60),
        f(rem % 60),
        0x00,
    ]
}

/// `yy/MM/dd,hh:mm:ss+zz` as text mode shows an SCTS.
pub fn scts_text(unix_secs: u64) -> String {
    let days = (unix_secs / 86400) as i64;
    let rem = unix_secs % 86400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{:02}/{:02}/{:02},{:02}:{:02}:{:02}+00",
        y % 100,
        m,
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil; avoids a date crate for one conversion.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Everything an SMS-DELIVER needs; UD is passed through as encoded.
#[derive(Debug, Clone)]
pub struct DeliverSpec {
    /// TP-OA, the sender.
    pub oa: Address,
    /// TP-PID.
    pub pid: u8,
    /// TP-DCS.
    pub dcs: u8,
    /// TP-SCTS, semi-octets as [`scts`] makes them.
    pub scts: [u8; 7],
    /// TP-UDHI: `ud` starts with a header.
    pub udhi: bool,
    /// TP-SRI: the sender asked for a status report.
    pub sri: bool,
    /// TP-UDL, in the unit the DCS implies.
    pub udl: u8,
    /// TP-UD, already encoded (header, fill bits and all).
    pub ud: Vec<u8>,
}

/// Encodes an SMS-DELIVER TPDU (no SMSC prefix). MMS is set: no more messages waiting.
pub fn encode_deliver(s: &DeliverSpec) -> Vec<u8> {
    let mut fo = 0x04u8;
    if s.udhi {
        fo |= 0x40;
    }
    if s.sri {
        fo |= 0x20;
    }
    let mut v = vec![fo];
    v.extend(s.oa.encode_tp());
    v.push(s.pid);
    v.push(s.dcs);
    v.extend(s.scts);
    v.push(s.udl);
    v.extend(&s.ud);
    v
}

/// Encodes an SMS-STATUS-REPORT TPDU for a submitted message.
pub fn encode_status_report(
    mr: u8,
    recipient: &Address,
    scts: [u8; 7],
    dt: [u8; 7],
    st: u8,
) -> Vec<u8> {
    let mut v = vec![0x06u8, mr];
    v.extend(recipient.encode_tp());
    v.extend(scts);
    v.extend(dt);
    v.push(st);
    v
}

/// One encoded part: (UDL, UD, UDHI).
pub type UdPart = (u8, Vec<u8>, bool);

/// Encodes text as one or more user-data fields, GSM 7-bit when every char fits and
/// UCS-2 otherwise, with 8-bit concatenation headers for long texts. Parts never split
/// an escape sequence or a surrogate pair. Returns (DCS, parts).
pub fn encode_text_parts(text: &str, reference: u8) -> (u8, Vec<UdPart>) {
    if let Some(sept) = gsm7_encode(text) {
        if sept.len() <= 160 {
            return (
                0x00,
                vec![(sept.len() as u8, pack_septets(&sept, 0), false)],
            );
        }
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut start = 0;
        while start < sept.len() {
            let mut end = (start + 153).min(sept.len());
            if end < sept.len() && sept[end - 1] == ESC && !escape_completed(&sept[start..end]) {
                end -= 1;
            }
            chunks.push(&sept[start..end]);
            start = end;
        }
        let total = chunks.len() as u8;
        let parts = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let udh = [0x05, 0x00, 0x03, reference, total, i as u8 + 1];
                let mut ud = udh.to_vec();
                ud.extend(pack_septets(c, 1));
                ((7 + c.len()) as u8, ud, true)
            })
            .collect();
        return (0x00, parts);
    }
    let units: Vec<u16> = text.encode_utf16().collect();
    let bytes = |u: &[u16]| -> Vec<u8> { u.iter().flat_map(|x| x.to_be_bytes()).collect() };
    if units.len() <= 70 {
        let b = bytes(&units);
        return (0x08, vec![(b.len() as u8, b, false)]);
    }
    let mut chunks: Vec<&[u16]> = Vec::new();
    let mut start = 0;
    while start < units.len() {
        let mut end = (start + 67).min(units.len());
        if end < units.len() && (0xD800..0xDC00).contains(&units[end - 1]) {
            end -= 1;
        }
        chunks.push(&units[start..end]);
        start = end;
    }
    let total = chunks.len() as u8;
    let parts = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut ud = vec![0x05, 0x00, 0x03, reference, total, i as u8 + 1];
            ud.extend(bytes(c));
            (ud.len() as u8, ud, true)
        })
        .collect();
    (0x08, parts)
}

/// True when the last septet of `chunk` is an escape that is itself the second septet
/// of an escape pair (ESC ESC), so the chunk can end there.
fn escape_completed(chunk: &[u8]) -> bool {
    let mut i = 0;
    let mut last_pair_end = false;
    while i < chunk.len() {
        if chunk[i] == ESC && i + 1 < chunk.len() {
            i += 2;
            last_pair_end = i == chunk.len();
        } else {
            last_pair_end = false;
            i += 1;
        }
    }
    last_pair_end
}

/// A decoded SMS-DELIVER (what a host would read); hw-sim uses it for text mode and
/// its tests use it to check what arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    /// TP-OA, the sender.
    pub oa: Address,
    /// TP-PID.
    pub pid: u8,
    /// TP-DCS.
    pub dcs: u8,
    /// TP-SCTS, semi-octets as sent.
    pub scts: [u8; 7],
    /// The UDH without its length octet; empty without TP-UDHI.
    pub udh: Vec<u8>,
    /// The user data after the header.
    pub payload: Payload,
    /// The concatenation IE, if the UDH has one.
    pub concat: Option<Concat>,
}

/// Decodes an SMS-DELIVER TPDU (no SMSC prefix).
pub fn decode_deliver(b: &[u8]) -> Result<Deliver, PduError> {
    let fo = *b.first().ok_or(PduError::Short("first octet"))?;
    if fo & 0x03 != 0x00 {
        return Err(PduError::Mti(fo & 0x03));
    }
    let mut pos = 1;
    let oa = Address::decode_tp(b, &mut pos)?;
    let pid = *b.get(pos).ok_or(PduError::Short("PID"))?;
    let dcs = *b.get(pos + 1).ok_or(PduError::Short("DCS"))?;
    let scts: [u8; 7] = b
        .get(pos + 2..pos + 9)
        .ok_or(PduError::Short("SCTS"))?
        .try_into()
        .map_err(|_| PduError::Short("SCTS"))?;
    pos += 9;
    let udl = *b.get(pos).ok_or(PduError::Short("UDL"))?;
    let ud = b.get(pos + 1..).unwrap_or(&[]);
    let udhi = fo & 0x40 != 0;
    let (udh, payload) = decode_ud(udhi, dcs_alphabet(dcs), usize::from(udl), ud)?;
    let concat = if udhi { udh_concat(&udh) } else { None };
    Ok(Deliver {
        oa,
        pid,
        dcs,
        scts,
        udh,
        payload,
        concat,
    })
}

/// The text of one SMS-DELIVER part.
pub fn decode_deliver_text(b: &[u8]) -> Result<String, PduError> {
    Ok(decode_deliver(b)?.payload.text())
}

/// Encodes an SMS-SUBMIT (no SMSC prefix); used by text-mode `+CMGS` and by tests.
pub fn encode_submit(da: &Address, dcs: u8, srr: bool, part: &UdPart, mr: u8) -> Vec<u8> {
    let (udl, ud, udhi) = part;
    let mut fo = 0x11u8; // SMS-SUBMIT, relative VP
    if srr {
        fo |= 0x20;
    }
    if *udhi {
        fo |= 0x40;
    }
    let mut v = vec![fo, mr];
    v.extend(da.encode_tp());
    v.extend([0x00, dcs, 0xA7, *udl]);
    v.extend(ud);
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn classic_hellohello_packing() {
        // The well-known example from the GSM 03.40 tutorials.
        let s = gsm7_encode("hellohello").unwrap();
        assert_eq!(to_hex(&pack_septets(&s, 0)), "E8329BFD4697D9EC37");
        assert_eq!(
            gsm7_decode(&unpack_septets(
                &from_hex("E8329BFD4697D9EC37").unwrap(),
                0,
                10
            )),
            "hellohello"
        );
    }

    #[test]
    fn decodes_known_submit() {
        let pdu = from_hex("0011000B916407281553F80000AA0AE8329BFD4697D9EC37").unwrap();
        let (sc, tpdu) = split_smsc(&pdu).unwrap();
        assert!(sc.is_none());
        let s = decode_submit(tpdu).unwrap();
        assert_eq!(s.da.number, "+46708251358");
        assert_eq!(s.da.toa, 0x91);
        assert_eq!(s.vp, vec![0xAA]);
        assert_eq!(s.payload.text(), "hellohello");
        assert!(!s.srr());
    }

    #[test]
    fn extension_chars_roundtrip() {
        let t = "a€[b]{c}~^|\\";
        let s = gsm7_encode(t).unwrap();
        assert_eq!(s.len(), t.chars().count() + 9);
        assert_eq!(gsm7_decode(&s), t);
        assert!(gsm7_encode("Ж").is_none());
    }

    #[test]
    fn fill_bits_with_udh() {
        let text = "x".repeat(200);
        let (dcs, parts) = encode_text_parts(&text, 7);
        assert_eq!(dcs, 0);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, 160);
        let da = Address::parse("+491701234567");
        let pdu = encode_submit(&da, dcs, true, &parts[0], 0);
        let s = decode_submit(&pdu).unwrap();
        assert!(s.srr());
        assert_eq!(
            s.concat,
            Some(Concat {
                reference: 7,
                total: 2,
                seq: 1
            })
        );
        assert_eq!(s.payload, Payload::Septets(vec![b'x'; 153]));
        let s2 = decode_submit(&encode_submit(&da, dcs, false, &parts[1], 0)).unwrap();
        assert_eq!(Payload::join_text(&[&s.payload, &s2.payload]), text);
    }

    #[test]
    fn escape_never_split() {
        let text = format!("{}€tail and more", "a".repeat(152));
        let (_, parts) = encode_text_parts(&text, 1);
        let da = Address::parse("123");
        let p: Vec<_> = parts
            .iter()
            .map(|p| {
                decode_submit(&encode_submit(&da, 0, false, p, 0))
                    .unwrap()
                    .payload
            })
            .collect();
        assert_eq!(p[0], Payload::Septets(vec![0x61; 152]));
        let refs: Vec<&Payload> = p.iter().collect();
        assert_eq!(Payload::join_text(&refs), text);
    }

    #[test]
    fn ucs2_surrogates_not_split() {
        let text = format!("{}😀😀😀", "ж".repeat(66));
        let (dcs, parts) = encode_text_parts(&text, 3);
        assert_eq!(dcs, 0x08);
        let da = Address::parse("+1");
        let p: Vec<_> = parts
            .iter()
            .map(|p| {
                decode_submit(&encode_submit(&da, dcs, false, p, 0))
                    .unwrap()
                    .payload
            })
            .collect();
        match &p[0] {
            Payload::Ucs2(u) => assert_eq!(u.len(), 66),
            other => panic!("{other:?}"),
        }
        let refs: Vec<&Payload> = p.iter().collect();
        assert_eq!(Payload::join_text(&refs), text);
    }

    #[test]
    fn sixteen_bit_concat() {
        // UDH: IEI 08, len 4, ref 0x1234, total 2, seq 2; UCS-2 "Hi".
        let pdu = from_hex("41000B919471111111F100080B0608041234020200480069").unwrap();
        let s = decode_submit(&pdu).unwrap();
        assert_eq!(
            s.concat,
            Some(Concat {
                reference: 0x1234,
                total: 2,
                seq: 2
            })
        );
        assert_eq!(s.payload.text(), "Hi");
    }

    #[test]
    fn alphanumeric_and_national_addresses() {
        let a = Address::parse("HWSIM");
        assert_eq!(a.toa, 0xD0);
        let enc = a.encode_tp();
        let mut pos = 0;
        assert_eq!(Address::decode_tp(&enc, &mut pos).unwrap().number, "HWSIM");
        let n = Address {
            number: "01701234567".into(),
            toa: 0xA1,
        };
        let enc = n.encode_tp();
        assert_eq!(enc[0], 11);
        let mut pos = 0;
        assert_eq!(Address::decode_tp(&enc, &mut pos).unwrap(), n);
    }

    #[test]
    fn deliver_and_status_report_layout() {
        let oa = Address::parse("+4915550000001");
        let ts = scts(1_700_000_000); // 2023-11-14 22:13:20 UTC
        assert_eq!(to_hex(&ts), "32114122310200");
        assert_eq!(scts_text(1_700_000_000), "23/11/14,22:13:20+00");
        let d = encode_deliver(&DeliverSpec {
            oa: oa.clone(),
            pid: 0,
            dcs: 0,
            scts: ts,
            udhi: false,
            sri: false,
            udl: 2,
            ud: pack_septets(&[0x48, 0x69], 0),
        });
        assert_eq!(to_hex(&d), "040D91945155000000F100003211412231020002C834");
        let sr = encode_status_report(42, &oa, ts, ts, 0);
        assert_eq!(sr[0], 0x06);
        assert_eq!(sr[1], 42);
        assert_eq!(*sr.last().unwrap(), 0);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(from_hex("0G"), Err(PduError::NotHex));
        assert!(decode_submit(&[0x00]).is_err());
        assert!(decode_submit(&from_hex("0100").unwrap()).is_err());
    }
}
