//! What the driver knows about a modem, and the parsers that learn it from AT answers.
//!
//! The serialised form of [`Report`] is the `gsmgw probe` JSON contract (docs/cli.md):
//! field names and value spellings here are relied upon by other tools.

use serde::{Serialize, Serializer};

pub use crate::at::Registration;
use crate::at::info_params;

/// SIM state from `AT+CPIN?` (or the CME error it answered with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimState {
    /// Unlocked and usable.
    Ready,
    /// Waiting for the PIN.
    Pin,
    /// Waiting for the PUK (three wrong PINs).
    Puk,
    /// Still initialising (`+CME ERROR: 14`, `+CPIN: NOT READY`).
    Busy,
    /// No SIM.
    Absent,
    /// SIM failure or blocked for good.
    Failure,
    /// Anything else (`PH-SIM PIN`, `SIM PIN2`, ...), as the modem said it.
    Other(String),
}

impl SimState {
    /// The contract spelling: `ready`, `pin`, `puk`, `busy`, `absent`, `failure`, or the
    /// modem's own words lower-cased.
    pub fn as_str(&self) -> String {
        match self {
            SimState::Ready => "ready".into(),
            SimState::Pin => "pin".into(),
            SimState::Puk => "puk".into(),
            SimState::Busy => "busy".into(),
            SimState::Absent => "absent".into(),
            SimState::Failure => "failure".into(),
            SimState::Other(s) => s.to_ascii_lowercase(),
        }
    }

    /// Parses the code of a `+CPIN: <code>` line.
    pub fn from_cpin(code: &str) -> SimState {
        match code.trim().to_ascii_uppercase().as_str() {
            "READY" => SimState::Ready,
            "SIM PIN" => SimState::Pin,
            "SIM PUK" => SimState::Puk,
            "NOT READY" => SimState::Busy,
            "NOT INSERTED" => SimState::Absent,
            _ => SimState::Other(code.trim().to_owned()),
        }
    }

    /// The state a `+CME ERROR` code to `AT+CPIN?` implies, if it is about the SIM.
    pub fn from_cme(code: u16) -> Option<SimState> {
        Some(match code {
            10 => SimState::Absent,
            11 => SimState::Pin,
            12 => SimState::Puk,
            13 | 15 => SimState::Failure,
            14 => SimState::Busy,
            _ => return None,
        })
    }
}

impl Serialize for SimState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
    }
}

/// Signal quality from `AT+CSQ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Signal {
    /// Received power in dBm (`-113 + 2·rssi`), `null` when the modem does not know.
    pub rssi_dbm: Option<i32>,
    /// Bit error rate class 0–7, `null` when unknown.
    pub ber: Option<u8>,
    /// 0–5, for humans and dashboards.
    pub bars: u8,
}

impl Signal {
    /// Parses `+CSQ: <rssi>,<ber>`.
    pub fn parse(line: &str) -> Option<Signal> {
        let p = info_params(line, "+CSQ:")?;
        let rssi: u8 = p.first()?.parse().ok()?;
        let ber: u8 = p.get(1)?.parse().ok()?;
        Some(Signal::from_csq(rssi, ber))
    }

    /// From the raw `+CSQ` values (99 means unknown).
    pub fn from_csq(rssi: u8, ber: u8) -> Signal {
        let known = rssi <= 31;
        let bars = match rssi {
            0..=1 | 32.. => 0,
            2..=9 => 1,
            10..=14 => 2,
            15..=19 => 3,
            20..=24 => 4,
            25..=31 => 5,
        };
        Signal {
            rssi_dbm: known.then(|| -113 + 2 * i32::from(rssi)),
            ber: (ber <= 7).then_some(ber),
            bars,
        }
    }
}

/// Whether `name` is a message storage name as 27.005 spells them (`SM`, `ME`, `MT`,
/// `SR`, `BM`): exactly two ASCII capitals. A name the modem supplies (`+CMTI: "SM",3`)
/// goes into an AT command, so anything else is refused rather than quoted.
pub fn is_storage_name(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| b.is_ascii_uppercase())
}

/// Message storage use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Storage {
    /// Messages stored.
    pub used: u32,
    /// Capacity.
    pub total: u32,
}

impl Storage {
    /// Parses `+CPMS:` of the query (`"SM",u,t,...`) or of the set (`u,t,...`) form: the
    /// first used/total pair.
    pub fn parse(line: &str) -> Option<Storage> {
        let p = info_params(line, "+CPMS:")?;
        let nums: Vec<u32> = p.iter().filter_map(|s| s.parse().ok()).collect();
        Some(Storage {
            used: *nums.first()?,
            total: *nums.get(1)?,
        })
    }

    /// Whether no new message fits.
    pub fn is_full(&self) -> bool {
        self.total > 0 && self.used >= self.total
    }
}

/// The `+CNMI` setting in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cnmi {
    /// `<mode>`: 1 discard URCs while the link is busy, 2 buffer them.
    pub mode: u8,
    /// `<mt>`: 1 store and say `+CMTI`, 2 deliver with `+CMT`.
    pub mt: u8,
    /// `<bm>`: cell broadcast.
    pub bm: u8,
    /// `<ds>`: 1 status reports as `+CDS`, 2 stored with `+CDSI`.
    pub ds: u8,
    /// `<bfr>`: buffer flush on mode change.
    pub bfr: u8,
}

impl Cnmi {
    /// The parameter list for `AT+CNMI=`.
    pub fn to_param(&self) -> String {
        format!(
            "{},{},{},{},{}",
            self.mode, self.mt, self.bm, self.ds, self.bfr
        )
    }

    /// Parses `m,mt,bm,ds,bfr` (missing trailing values are 0).
    pub fn parse_param(s: &str) -> Option<Cnmi> {
        let v: Vec<u8> = s
            .split(',')
            .map(|x| x.trim().parse().ok())
            .collect::<Option<Vec<u8>>>()?;
        if v.is_empty() || v.len() > 5 {
            return None;
        }
        let g = |i: usize| v.get(i).copied().unwrap_or(0);
        Some(Cnmi {
            mode: g(0),
            mt: g(1),
            bm: g(2),
            ds: g(3),
            bfr: g(4),
        })
    }
}

/// Everything `gsmgw probe` prints, and the driver's current view of its modem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The port as given.
    pub port: String,
    /// `AT+CGMI`.
    pub manufacturer: Option<String>,
    /// `AT+CGMM`.
    pub model: Option<String>,
    /// `AT+CGMR`.
    pub revision: Option<String>,
    /// `AT+CGSN`.
    pub imei: Option<String>,
    /// `AT+CIMI` (needs an unlocked SIM).
    pub imsi: Option<String>,
    /// `AT+CCID` and vendor variants.
    pub iccid: Option<String>,
    /// `AT+CPIN?`.
    pub sim: Option<SimState>,
    /// `AT+CSQ`.
    pub signal: Option<Signal>,
    /// `AT+CREG?` (or `AT+CEREG?` on LTE-only modems).
    pub registration: Option<Registration>,
    /// `AT+COPS?`.
    pub operator: Option<String>,
    /// `AT+CSCA?`.
    pub smsc: Option<String>,
    /// `AT+CPMS`.
    pub storage: Option<Storage>,
    /// The negotiated `AT+CNMI`.
    pub cnmi: Option<Cnmi>,
    /// What the modem can do besides sending, once brought up (`null` before).
    pub capabilities: Option<Capabilities>,
}

impl Report {
    /// The key that identifies the SIM: its ICCID, or its IMSI when no command of the
    /// modem gives the ICCID.
    pub fn sim_key(&self) -> Option<&str> {
        self.iccid.as_deref().or(self.imsi.as_deref())
    }
}

/// What a modem can do besides sending (it always can send once brought up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Inbound messages reach the driver: indicated (`+CNMI`, stored or direct), or
    /// found by polling the storage.
    pub receive: bool,
    /// A message storage could be selected (`+CPMS`): messages are read from it and
    /// deleted once committed.
    pub storage: bool,
    /// Status reports reach the driver (`+CNMI` `<ds>` set, stored ones needing storage).
    pub status_reports: bool,
}

impl Capabilities {
    /// What follows from the storage and the `+CNMI` setting the modem accepted.
    pub fn from_setup(storage: bool, cnmi: Option<Cnmi>) -> Capabilities {
        let direct = cnmi.is_some_and(|c| matches!(c.mt, 2 | 3));
        Capabilities {
            // Stored messages are read whether indicated or found by the health poll's
            // sweep; without storage only direct delivery brings them.
            receive: storage || direct,
            storage,
            status_reports: cnmi.is_some_and(|c| c.ds == 1 || (c.ds == 2 && storage)),
        }
    }
}

/// The first bare line of an identification answer, without a `+CGMI: `-style prefix
/// some firmware adds.
pub fn first_value(lines: &[String], prefixes: &[&str]) -> Option<String> {
    let line = lines.iter().map(|l| l.trim()).find(|l| !l.is_empty())?;
    for p in prefixes {
        if let Some(v) = info_params(line, p) {
            return v.first().filter(|s| !s.is_empty()).cloned();
        }
    }
    Some(line.trim_matches('"').to_owned())
}

/// The ICCID in an answer line of any identity command: `+CCID: 89...`, `^ICCID: 98...`,
/// `#CCID:`, `^SCID:`, `!ICCID:`, `+QCCID:`, a bare line, or the data of
/// `+CRSM: <sw1>,<sw2>,"<hex>"` (a successful EF_ICCID read). See [`normalize_iccid`].
pub fn parse_iccid_line(line: &str) -> Option<String> {
    let line = line.trim();
    if let Some(p) = info_params(line, "+CRSM:") {
        // 27.007 §8.18: sw1 0x90 (sw2 0), 0x91, 0x92 or 0x9F is a normal ending.
        let sw1: u8 = p.first()?.parse().ok()?;
        let sw2: u8 = p.get(1)?.parse().ok()?;
        let ok = matches!((sw1, sw2), (0x90, 0) | (0x91 | 0x92 | 0x9F, _));
        return ok
            .then(|| p.get(2).and_then(|d| normalize_iccid(d)))
            .flatten();
    }
    let value = match line.as_bytes().first() {
        Some(b'+' | b'^' | b'#' | b'!' | b'$' | b'%' | b'*') => line.split_once(':')?.1,
        _ => line,
    };
    normalize_iccid(value)
}

/// An ICCID as the SIM stores it or as a modem prints it, made canonical: quotes and
/// spaces dropped; nibble-swapped BCD (it then starts `98`: every ICCID starts with the
/// telecom industry identifier `89`, ITU-T E.118) swapped back; the `F` filler of a
/// 19-digit ICCID dropped. `None` unless 18–22 digits remain. The same rule as
/// ModemManager's `mm_3gpp_parse_iccid`, so no vendor switch decides about swapping.
pub fn normalize_iccid(raw: &str) -> Option<String> {
    let s: String = raw
        .trim()
        .trim_matches('"')
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'F' || b == b'f')
    {
        return None;
    }
    let s = if s.starts_with("98") && s.len().is_multiple_of(2) {
        unswap_iccid(&s)
    } else {
        s
    };
    let s = s.trim_end_matches(['F', 'f']).to_owned();
    (s.starts_with("89") && looks_like_iccid(&s)).then_some(s)
}

/// The SMSC of a `+CSCA: "<number>",<type>` line, `None` when it is empty. A number the
/// modem prints in UCS2 hex (`AT+CSCS="UCS2"`: `"002B003400390031..."`) is decoded.
pub fn parse_csca(line: &str) -> Option<String> {
    let p = info_params(line, "+CSCA:")?;
    let raw = p.first()?.trim();
    let is_number = |s: &str| {
        !s.is_empty()
            && s.trim_start_matches('+')
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
            && s.bytes().any(|b| b.is_ascii_digit())
    };
    if is_number(raw) {
        return Some(raw.to_owned());
    }
    if raw.len() >= 8 && raw.len().is_multiple_of(4) && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        let units: Vec<u16> = raw
            .as_bytes()
            .chunks(4)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .filter_map(|c| u16::from_str_radix(c, 16).ok())
            .collect();
        let decoded = String::from_utf16(&units).ok()?;
        return is_number(&decoded).then_some(decoded);
    }
    None
}

/// Huawei's `^ICCID` is the SIM's nibble-swapped BCD: swap back, drop the `F` filler.
pub fn unswap_iccid(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(b.len());
    for pair in b.chunks(2) {
        if let [a, c] = pair {
            out.push(char::from(*c));
            out.push(char::from(*a));
        } else {
            out.push(char::from(pair[0]));
        }
    }
    out.trim_end_matches(['F', 'f']).to_owned()
}

/// Whether a string looks like an ICCID (18–22 digits, maybe ending in `F`).
pub fn looks_like_iccid(s: &str) -> bool {
    let d = s.trim_end_matches(['F', 'f']);
    (18..=22).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal() {
        let s = Signal::parse("+CSQ: 20,99").expect("csq");
        assert_eq!(s.rssi_dbm, Some(-73));
        assert_eq!(s.ber, None);
        assert_eq!(s.bars, 4);
        let u = Signal::parse("+CSQ: 99,99").expect("csq");
        assert_eq!((u.rssi_dbm, u.bars), (None, 0));
        assert_eq!(Signal::from_csq(31, 0).bars, 5);
        assert_eq!(Signal::from_csq(2, 0).bars, 1);
        assert!(Signal::parse("+CSQ: x").is_none());
    }

    #[test]
    fn registration() {
        assert_eq!(
            Registration::parse_query("+CREG: 2,5,\"00A1\",\"1234\"", "+CREG:"),
            Some(Registration::Roaming)
        );
        assert_eq!(
            Registration::parse_query("+CEREG: 0,2", "+CEREG:"),
            Some(Registration::Searching)
        );
        assert_eq!(Registration::from_stat(4), Registration::Unregistered);
        assert_eq!(Registration::from_stat(3), Registration::Denied);
        assert!(Registration::parse_query("+CREG: 1", "+CREG:").is_none());
    }

    #[test]
    fn storage_and_cnmi() {
        let s = Storage::parse("+CPMS: \"SM\",3,30,\"SM\",3,30,\"SM\",3,30").expect("cpms");
        assert_eq!((s.used, s.total), (3, 30));
        assert_eq!(
            Storage::parse("+CPMS: 0,25,0,25,0,25"),
            Some(Storage { used: 0, total: 25 })
        );
        assert!(
            Storage {
                used: 25,
                total: 25
            }
            .is_full()
        );
        let c = Cnmi::parse_param("2,1,0,2,0").expect("cnmi");
        assert_eq!((c.mode, c.mt, c.ds), (2, 1, 2));
        assert_eq!(c.to_param(), "2,1,0,2,0");
        assert_eq!(Cnmi::parse_param("1,1").map(|c| c.ds), Some(0));
        assert!(Cnmi::parse_param("a").is_none());
    }

    #[test]
    fn identity_helpers() {
        assert_eq!(
            first_value(&["+CCID: 8949".into()], &["+CCID:"]),
            Some("8949".into())
        );
        assert_eq!(
            first_value(&["SIMCOM_Ltd".into()], &["+CGMI:"]),
            Some("SIMCOM_Ltd".into())
        );
        assert_eq!(first_value(&[], &[]), None);
        assert_eq!(unswap_iccid("9814"), "8941");
        assert_eq!(unswap_iccid("98F1"), "891");
        assert!(looks_like_iccid("8900101123456000012"));
        assert!(!looks_like_iccid("OK"));
        assert_eq!(SimState::from_cpin("SIM PIN"), SimState::Pin);
        assert_eq!(SimState::from_cme(14), Some(SimState::Busy));
        assert_eq!(SimState::Other("PH-SIM PIN".into()).as_str(), "ph-sim pin");
    }
}
