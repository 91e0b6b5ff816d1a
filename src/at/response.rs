//! Meaning of single lines: final result codes and unsolicited result codes (URCs).
//!
//! These parsers are total: any line yields a value (an unknown URC is
//! [`Urc::Other`]), so a modem's surprise can never jam the session.

use super::command::starts_with_ignore_case;
use super::error::{CmeError, CmsError};

/// How the modem finished a command. Device refusals are values here, not errors: the link
/// worked and the modem answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalResult {
    /// `OK`.
    Ok,
    /// Plain `ERROR` (`AT+CMEE=0`, or a syntax error).
    Error,
    /// `+CME ERROR: <err>`.
    CmeError(CmeError),
    /// `+CMS ERROR: <err>`.
    CmsError(CmsError),
    /// `NO CARRIER`.
    NoCarrier,
    /// `BUSY`.
    Busy,
    /// `NO ANSWER`.
    NoAnswer,
    /// `NO DIALTONE` / `NO DIAL TONE`.
    NoDialtone,
    /// `CONNECT [<text>]`: the modem left command mode.
    Connect(String),
    /// `COMMAND NOT SUPPORT` (Huawei's final result for an unknown command) and its
    /// spellings `NOT SUPPORT`, `COMMAND NOT SUPPORTED`, `NOT SUPPORTED`.
    NotSupported,
    /// Any other non-standard refusal, the line as sent: `TOO MANY PARAMETERS`,
    /// `ERROR: <text>`, `ERROR <n>`, `MODEM ERROR: <n>` (Motorola), `+EXT ERROR: <n>`
    /// (V.250 extended errors). The device said no; the link is fine.
    Rejected(String),
    /// No final result came, but the command was [lenient](super::Command::lenient) and
    /// its answer line arrived, followed by a quiet period: firmware that omits the `OK`
    /// after an identification or status line (old Wavecom `+CPIN: READY`). Counts as
    /// success.
    Implied,
}

impl FinalResult {
    /// Whether the command succeeded (`OK`, or an [implied](FinalResult::Implied) one).
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok | Self::Implied)
    }

    /// Whether this is a "busy, try again" refusal: SIM busy (`+CME ERROR: 14`,
    /// `+CMS ERROR: 314`) or the vendor "please wait, device busy" (`+CME ERROR: 515`).
    /// The command was not carried out, so sending it again is safe.
    pub fn is_busy(&self) -> bool {
        match self {
            Self::CmeError(e) => e.is_busy(),
            Self::CmsError(e) => e.is_busy(),
            _ => false,
        }
    }
}

/// Refusals that firmware sends instead of `ERROR`, as whole lines (compared without
/// case). Sources: gammu `libgammu/protocol/at/at.c` (`COMMAND NOT SUPPORT`, Huawei;
/// `MODEM ERROR:`, Motorola A1200), ModemManager `src/mm-serial-parsers.c`
/// (`COMMAND NOT SUPPORT`, `MODEM ERROR:`), lua-gsmmodem's AT stream (`TOO MANY
/// PARAMETERS`), python-gsmmodem `test/fakemodems.py` (Huawei E1752), ofono gatchat and
/// the Android reference RIL (`+EXT ERROR:`).
const NOT_SUPPORTED_WORDS: &[&str] = &[
    "COMMAND NOT SUPPORT",
    "COMMAND NOT SUPPORTED",
    "NOT SUPPORT",
    "NOT SUPPORTED",
];
const REJECTION_WORDS: &[&str] = &[
    "TOO MANY PARAMETERS",
    "TOO FEW PARAMETERS",
    "INVALID COMMAND",
    "INVALID PARAMETER",
    "INVALID PARAMETERS",
    "UNKNOWN COMMAND",
];
const REJECTION_PREFIXES: &[&str] = &["MODEM ERROR", "+EXT ERROR"];

/// Parses a final result code, `None` for any other line.
pub fn parse_final(line: &str) -> Option<FinalResult> {
    let l = line.trim();
    let eq = |s: &str| l.eq_ignore_ascii_case(s);
    if eq("OK") {
        return Some(FinalResult::Ok);
    }
    if eq("ERROR") {
        return Some(FinalResult::Error);
    }
    if let Some(p) = strip_prefix_ignore_case(l, "+CME ERROR") {
        return Some(FinalResult::CmeError(CmeError::parse(strip_colon(p))));
    }
    if let Some(p) = strip_prefix_ignore_case(l, "+CMS ERROR") {
        return Some(FinalResult::CmsError(CmsError::parse(strip_colon(p))));
    }
    if eq("NO CARRIER") {
        return Some(FinalResult::NoCarrier);
    }
    if eq("BUSY") {
        return Some(FinalResult::Busy);
    }
    if eq("NO ANSWER") {
        return Some(FinalResult::NoAnswer);
    }
    if eq("NO DIALTONE") || eq("NO DIAL TONE") {
        return Some(FinalResult::NoDialtone);
    }
    if NOT_SUPPORTED_WORDS.iter().any(|w| eq(w)) {
        return Some(FinalResult::NotSupported);
    }
    if REJECTION_WORDS.iter().any(|w| eq(w)) {
        return Some(FinalResult::Rejected(l.to_owned()));
    }
    if let Some(rest) = strip_prefix_ignore_case(l, "ERROR")
        && rest.starts_with([':', ' ', ','])
    {
        // `ERROR: <text>`, `ERROR 4`: an error with a detail that is no CME/CMS code.
        return Some(FinalResult::Rejected(l.to_owned()));
    }
    if REJECTION_PREFIXES.iter().any(|p| {
        strip_prefix_ignore_case(l, p).is_some_and(|r| r.is_empty() || r.starts_with([':', ' ']))
    }) {
        return Some(FinalResult::Rejected(l.to_owned()));
    }
    if let Some(rest) = strip_prefix_ignore_case(l, "CONNECT")
        && (rest.is_empty() || rest.starts_with(' '))
    {
        return Some(FinalResult::Connect(rest.trim().to_owned()));
    }
    None
}

fn strip_colon(p: &str) -> &str {
    p.trim_start().strip_prefix(':').unwrap_or(p).trim()
}

pub(crate) fn strip_prefix_ignore_case<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    if starts_with_ignore_case(line, prefix) {
        line.get(prefix.len()..)
    } else {
        None
    }
}

/// Which registration a `+CREG`/`+CGREG`/`+CEREG` URC is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationKind {
    /// `+CREG` (circuit switched: what SMS over the CS domain needs).
    Cs,
    /// `+CGREG` (GPRS).
    Gprs,
    /// `+CEREG` (LTE).
    Eps,
}

/// An unsolicited result code, parsed for the ones the driver acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urc {
    /// `+CMTI: <mem>,<index>`: a message was stored.
    Cmti {
        /// Storage, e.g. `SM` or `ME`.
        mem: String,
        /// Index in that storage.
        index: u32,
    },
    /// `+CMT: [<alpha>],<length>` + PDU line: a message delivered directly (PDU mode).
    Cmt {
        /// Phone-book name of the sender, when the modem adds one.
        alpha: Option<String>,
        /// TPDU length in octets (SMSC part excluded).
        length: usize,
        /// The hex PDU line, SMSC part included.
        pdu: String,
    },
    /// `+CDS: <length>` + PDU line: a status report delivered directly (PDU mode).
    Cds {
        /// TPDU length in octets.
        length: usize,
        /// The hex PDU line.
        pdu: String,
    },
    /// `+CDSI: <mem>,<index>`: a status report was stored.
    Cdsi {
        /// Storage, e.g. `SR`.
        mem: String,
        /// Index in that storage.
        index: u32,
    },
    /// `+CREG: <stat>[,<lac>,<ci>[,<AcT>]]` and the GPRS/EPS variants.
    Registration {
        /// Which registration.
        kind: RegistrationKind,
        /// 0 not searching, 1 home, 2 searching, 3 denied, 4 unknown, 5 roaming, ...
        stat: u8,
        /// Location/tracking area code, as sent (hex).
        lac: Option<String>,
        /// Cell id, as sent (hex).
        ci: Option<String>,
        /// Access technology.
        act: Option<u8>,
    },
    /// `+CUSD: <m>[,<str>[,<dcs>]]`: a USSD answer (often after the command's OK).
    Cusd {
        /// 0 no further action, 1 further action required, 2 terminated by network, ...
        m: u8,
        /// The text as sent (GSM text or UCS2 hex, per `dcs`).
        text: Option<String>,
        /// Data coding scheme.
        dcs: Option<u8>,
    },
    /// `RING`.
    Ring,
    /// `^RSSI: <n>` (Huawei).
    Rssi(u8),
    /// `^BOOT:...` (Huawei), parameters as sent.
    Boot(String),
    /// `^MODE:...` (Huawei), parameters as sent.
    Mode(String),
    /// `^SIMST: <n>[,...]` (Huawei SIM state), parameters as sent.
    Simst(String),
    /// `+CPIN: <code>` sent spontaneously (`READY`, `NOT READY`, `SIM PIN`...).
    Cpin(String),
    /// `RDY`: the modem (re)booted.
    Rdy,
    /// `+CFUN: <n>`: functionality level changed (typically after boot).
    Cfun(u8),
    /// `SMS Ready`.
    SmsReady,
    /// `Call Ready`.
    CallReady,
    /// `^SYSSTART` (Cinterion): the modem (re)booted.
    SysStart,
    /// `+CRING: <type>`: an incoming call and its type (`VOICE`, `FAX`...), the extended
    /// form of `RING` (`AT+CRC=1`).
    Cring(String),
    /// `+CLIP: <number>,<type>[,...]`: who is calling (`AT+CLIP=1`); the number is empty
    /// when the caller withholds it.
    Clip {
        /// The caller's number as sent.
        number: String,
        /// Its type of address (145 international, 129 national...).
        toa: Option<u8>,
    },
    /// A vendor status line recognised as unsolicited but not acted on, as sent: boot and
    /// SIM progress (`PB DONE`, `SMS DONE`, `+QIND:`, `+QUSIM:`, `+PACSP1`, `^SRVST:`),
    /// power warnings, indications (`+WIND:`, `+CIEV:`, `^DSFLOWRPT:`), Huawei call
    /// progress (`^ORIG:`, `^CONF:`, `^CONN:`, `^CEND:`). Recognising them keeps them out
    /// of bare-line answers (an IMEI is never `PB DONE`).
    Status(String),
    /// A two-line URC (`+CMT:`, `+CDS:`, `+CBM:`) whose data line never arrived intact: it
    /// was garbled on the wire, did not have the announced length, or another header, a
    /// final result or a timeout came in its place. The message was not read, so it must
    /// not be acknowledged: a driver that acknowledges deliveries (`AT+CSMS=1`) refuses it
    /// with `AT+CNMA=2` and the network delivers it again (see [`Urc::needs_ack`]).
    Unreadable {
        /// The header line, as received.
        header: String,
    },
    /// Any other line: logged by the driver, never fatal. A two-line URC whose header is not
    /// in PDU mode comes as `header + "\n" + data`.
    Other(String),
}

impl Urc {
    /// Whether this URC was recognised (not [`Urc::Other`]).
    pub fn is_known(&self) -> bool {
        !matches!(self, Urc::Other(_))
    }

    /// Whether this announces an incoming call (`RING`, `+CRING`, `+CLIP`).
    pub fn is_call(&self) -> bool {
        matches!(self, Urc::Ring | Urc::Cring(_) | Urc::Clip { .. })
    }

    /// Whether this says the modem (re)started (`RDY`, `^SYSSTART`): its settings are gone.
    pub fn is_restart(&self) -> bool {
        matches!(self, Urc::Rdy | Urc::SysStart)
    }

    /// Whether this is a direct delivery (`+CMT`/`+CDS`, read or [`Urc::Unreadable`]) that
    /// the modem, after `AT+CSMS=1`, wants answered with `AT+CNMA` (or `AT+CNMA=2`).
    pub fn needs_ack(&self) -> bool {
        match self {
            Urc::Cmt { .. } | Urc::Cds { .. } => true,
            Urc::Unreadable { header } => {
                starts_with_ignore_case(header, "+CMT:") || starts_with_ignore_case(header, "+CDS:")
            }
            _ => false,
        }
    }
}

/// One parameter of an AT response line: quoted or bare, as sent.
fn split_params(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_owned()),
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_owned());
    out
}

fn opt(params: &[String], i: usize) -> Option<String> {
    params.get(i).filter(|p| !p.is_empty()).cloned()
}

fn num<T: std::str::FromStr>(params: &[String], i: usize) -> Option<T> {
    params.get(i).and_then(|p| p.parse().ok())
}

/// The parameters of an information line with the given prefix (`"+CSQ:"` on
/// `"+CSQ: 20,99"` gives `["20", "99"]`), quotes removed; `None` if the prefix differs.
pub fn info_params(line: &str, prefix: &str) -> Option<Vec<String>> {
    strip_prefix_ignore_case(line.trim(), prefix).map(split_params)
}

/// Pairs the lines of a `+CMGL`/`+CMGR` response into `(header, data)` records. A header
/// with no data line (empty slot) gets an empty data string; stray data lines are skipped.
pub fn records(lines: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut open = false;
    for line in lines {
        if response_has_data_line(line) {
            out.push((line.clone(), String::new()));
            open = true;
        } else if open {
            if let Some(last) = out.last_mut() {
                last.1 = line.clone();
            }
            open = false;
        }
    }
    out
}

/// Whether a URC header is followed by a data line (the PDU, or in text mode the text).
///
/// `+CMT` always is; `+CDS`/`+CBM` only in PDU mode, where their only parameter is the
/// length (their text-mode forms are single lines).
pub(crate) fn urc_has_data_line(line: &str) -> bool {
    if starts_with_ignore_case(line, "+CMT:") {
        return true;
    }
    ["+CDS:", "+CBM:"].iter().any(|p| {
        strip_prefix_ignore_case(line, p).is_some_and(|rest| {
            split_params(rest).len() == 1 && rest.trim().parse::<usize>().is_ok()
        })
    })
}

/// Whether a response header is followed by a data line: `+CMGR:`/`+CMGL:` records.
pub(crate) fn response_has_data_line(line: &str) -> bool {
    starts_with_ignore_case(line, "+CMGR:") || starts_with_ignore_case(line, "+CMGL:")
}

/// Whether a line looks like an information or URC header, `+NAME:` or `^NAME:` (never
/// the hex data line of a PDU).
pub(crate) fn looks_like_header(line: &str) -> bool {
    let b = line.as_bytes();
    if !matches!(b.first(), Some(b'+' | b'^')) {
        return false;
    }
    let name = b
        .iter()
        .skip(1)
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    name > 0 && b.get(1 + name) == Some(&b':')
}

/// In PDU mode, what the data line announced by a two-line URC header holds: the TPDU
/// length in octets and whether an SMSC field precedes the TPDU. `None` for a text-mode
/// header (no length to check).
fn announced_pdu(header: &str) -> Option<(usize, bool)> {
    if let Some(rest) = strip_prefix_ignore_case(header, "+CMT:") {
        let p = split_params(rest);
        // PDU mode: `[<alpha>],<length>`; the text-mode form has more parameters.
        return match (p.len(), num::<usize>(&p, 1)) {
            (2, Some(length)) => Some((length, true)),
            _ => None,
        };
    }
    if let Some(rest) = strip_prefix_ignore_case(header, "+CDS:") {
        return rest.trim().parse().ok().map(|length| (length, true));
    }
    if let Some(rest) = strip_prefix_ignore_case(header, "+CBM:") {
        // A cell broadcast page has no SMSC field.
        return rest.trim().parse().ok().map(|length| (length, false));
    }
    None
}

/// Whether `data` is hex of exactly `tpdu_len` octets after the SMSC field (whose first
/// octet gives its own length) when `smsc`, or of exactly `tpdu_len` octets otherwise.
pub(crate) fn hex_pdu_fits(data: &str, tpdu_len: usize, smsc: bool) -> bool {
    let b = data.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(2) || !b.iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    let smsc_octets = if smsc {
        match b
            .get(..2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            Some(n) => 1 + usize::from(n),
            None => return false,
        }
    } else {
        0
    };
    smsc_octets.checked_add(tpdu_len) == Some(b.len() / 2)
}

/// Whether `data` may be the data line announced by a two-line URC `header`. In PDU mode
/// only hex of exactly the announced length is; in text mode (no length to check)
/// anything but a final result, a `+XXX:` header or a known URC.
pub(crate) fn urc_data_fits(header: &str, data: &str) -> bool {
    match announced_pdu(header) {
        Some((length, smsc)) => hex_pdu_fits(data, length, smsc),
        None => {
            parse_final(data).is_none() && !looks_like_header(data) && !parse_urc(data).is_known()
        }
    }
}

/// Parses a two-line URC from its header and data line.
pub fn parse_urc_with_data(header: &str, data: &str) -> Urc {
    let other = || Urc::Other(format!("{header}\n{data}"));
    if let Some(rest) = strip_prefix_ignore_case(header, "+CMT:") {
        let p = split_params(rest);
        // PDU mode: `[<alpha>],<length>`: exactly two parameters, the last a number.
        return match (p.len(), num::<usize>(&p, 1)) {
            (2, Some(length)) => Urc::Cmt {
                alpha: opt(&p, 0),
                length,
                pdu: data.to_owned(),
            },
            _ => other(),
        };
    }
    if let Some(rest) = strip_prefix_ignore_case(header, "+CDS:") {
        return match rest.trim().parse::<usize>() {
            Ok(length) => Urc::Cds {
                length,
                pdu: data.to_owned(),
            },
            Err(_) => other(),
        };
    }
    other()
}

/// Parses a single-line URC; [`Urc::Other`] when unknown or malformed.
pub fn parse_urc(line: &str) -> Urc {
    let l = line.trim();
    let other = || Urc::Other(l.to_owned());
    let eq = |s: &str| l.eq_ignore_ascii_case(s);
    if eq("RING") {
        return Urc::Ring;
    }
    if eq("RDY") {
        return Urc::Rdy;
    }
    if eq("SMS Ready") {
        return Urc::SmsReady;
    }
    if eq("Call Ready") {
        return Urc::CallReady;
    }
    if eq("^SYSSTART") {
        return Urc::SysStart;
    }
    if STATUS_LINES.iter().any(|w| eq(w)) {
        return Urc::Status(l.to_owned());
    }
    let Some((name, rest)) = l.split_once(':') else {
        return other();
    };
    let name = name.trim().to_ascii_uppercase();
    let rest = rest.trim();
    let p = split_params(rest);
    match name.as_str() {
        "+CMTI" | "+CDSI" => match (opt(&p, 0), num::<u32>(&p, 1), p.len()) {
            (Some(mem), Some(index), 2) if name == "+CMTI" => Urc::Cmti { mem, index },
            (Some(mem), Some(index), 2) => Urc::Cdsi { mem, index },
            _ => other(),
        },
        "+CREG" | "+CGREG" | "+CEREG" => {
            let kind = match name.as_str() {
                "+CREG" => RegistrationKind::Cs,
                "+CGREG" => RegistrationKind::Gprs,
                _ => RegistrationKind::Eps,
            };
            match num::<u8>(&p, 0) {
                Some(stat) => Urc::Registration {
                    kind,
                    stat,
                    lac: opt(&p, 1),
                    ci: opt(&p, 2),
                    act: num(&p, 3),
                },
                None => other(),
            }
        }
        "+CUSD" => match num::<u8>(&p, 0) {
            Some(m) => Urc::Cusd {
                m,
                text: params_text(rest, 1),
                dcs: num(&p, 2),
            },
            None => other(),
        },
        "^RSSI" => rest.parse().map_or_else(|_| other(), Urc::Rssi),
        "^BOOT" => Urc::Boot(rest.to_owned()),
        "^MODE" => Urc::Mode(rest.to_owned()),
        "^SIMST" => Urc::Simst(rest.to_owned()),
        "+CPIN" if !rest.is_empty() => Urc::Cpin(rest.to_owned()),
        "+CFUN" => rest.parse().map_or_else(|_| other(), Urc::Cfun),
        "+CRING" if !rest.is_empty() => Urc::Cring(rest.to_owned()),
        "+CLIP" => match (p.first(), p.get(1).map(|t| t.parse::<u8>())) {
            (Some(number), Some(Ok(toa))) => Urc::Clip {
                number: number.clone(),
                toa: Some(toa),
            },
            _ => other(),
        },
        n if STATUS_NAMES.contains(&n) => Urc::Status(l.to_owned()),
        _ => other(),
    }
}

/// Vendor status lines without parameters, sent unsolicited (compared without case).
/// Sources: SIMCom and Quectel hardware manuals' power-on/power-down URCs (`PB DONE`,
/// `SMS DONE`, `NORMAL POWER DOWN`, `UNDER-VOLTAGE WARNNING` sic), Cinterion
/// (`^SHUTDOWN`), Quectel (`POWERED DOWN`, `+PACSP1`).
const STATUS_LINES: &[&str] = &[
    "PB DONE",
    "SMS DONE",
    "NORMAL POWER DOWN",
    "POWERED DOWN",
    "UNDER-VOLTAGE WARNNING",
    "OVER-VOLTAGE WARNNING",
    "UNDER-VOLTAGE POWER DOWN",
    "OVER-VOLTAGE POWER DOWN",
    "^SHUTDOWN",
    "+PACSP0",
    "+PACSP1",
];

/// Names (upper case, with their prefix character) of vendor status URCs with
/// parameters. Sources: gammu `libgammu/protocol/at/at.c` (`^DSFLOWRPT`, `^SCN`),
/// python-gsmmodem `test/fakemodems.py` (`+WIND`, Huawei `^ORIG`/`^CONF`/`^CONN`/`^CEND`),
/// ModemManager's Huawei and Quectel plugins (`^SRVST`, `^SIMST`, `+QIND`, `+QUSIM`),
/// 27.007 (`+CIEV`, `+CGEV`).
const STATUS_NAMES: &[&str] = &[
    "+QIND",
    "+QUSIM",
    "+WIND",
    "+CIEV",
    "+CGEV",
    "+STIN",
    "^SRVST",
    "^DSFLOWRPT",
    "^SMMEMFULL",
    "^STIN",
    "^SCN",
    "^ORIG",
    "^CONF",
    "^CONN",
    "^CEND",
];

/// The `i`-th parameter of the raw text, quotes removed but content untouched (a USSD text
/// may contain commas inside its quotes and spaces that must survive).
fn params_text(rest: &str, i: usize) -> Option<String> {
    let mut idx = 0;
    let mut cur = String::new();
    let mut quoted = false;
    for c in rest.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                if idx == i {
                    break;
                }
                idx += 1;
                cur.clear();
            }
            _ if idx == i => cur.push(c),
            _ => {}
        }
    }
    if idx == i && !cur.is_empty() {
        Some(cur)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finals() {
        assert_eq!(parse_final("OK"), Some(FinalResult::Ok));
        assert_eq!(parse_final("ERROR"), Some(FinalResult::Error));
        assert_eq!(
            parse_final("+CME ERROR: 14"),
            Some(FinalResult::CmeError(CmeError::from_code(14)))
        );
        assert_eq!(
            parse_final("+CMS ERROR: 500"),
            Some(FinalResult::CmsError(CmsError::from_code(500)))
        );
        match parse_final("+CMS ERROR: SIM busy") {
            Some(FinalResult::CmsError(e)) => {
                assert_eq!(e.code(), Some(314));
                assert_eq!(e.text(), Some("SIM busy"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_final("NO CARRIER"), Some(FinalResult::NoCarrier));
        assert_eq!(parse_final("BUSY"), Some(FinalResult::Busy));
        assert_eq!(parse_final("NO ANSWER"), Some(FinalResult::NoAnswer));
        assert_eq!(parse_final("NO DIALTONE"), Some(FinalResult::NoDialtone));
        assert_eq!(
            parse_final("CONNECT 9600"),
            Some(FinalResult::Connect("9600".into()))
        );
        assert_eq!(parse_final("CONNECTED"), None);
        assert_eq!(parse_final("OKAY"), None);
        assert_eq!(parse_final("+CMGS: 5"), None);
        assert_eq!(
            parse_final("+CME ERROR"),
            Some(FinalResult::CmeError(CmeError::parse("")))
        );
        // Non-standard refusals (sources in REJECTION_WORDS' comment).
        for w in [
            "COMMAND NOT SUPPORT",
            "command not supported",
            "NOT SUPPORT",
            "NOT SUPPORTED",
        ] {
            assert_eq!(parse_final(w), Some(FinalResult::NotSupported), "{w}");
        }
        for w in [
            "TOO MANY PARAMETERS",
            "ERROR: 4",
            "ERROR: invalid input value",
            "ERROR 3",
            "MODEM ERROR: 2",
            "+EXT ERROR: 1",
            "+ext error:0",
        ] {
            assert_eq!(
                parse_final(w),
                Some(FinalResult::Rejected(w.to_owned())),
                "{w}"
            );
        }
        for not in ["ERRORS", "ERRORED", "MODEM ERRORS", "SUPPORT", "+CMGS: 3"] {
            assert_eq!(parse_final(not), None, "{not}");
        }
        // Busy refusals: the command was not carried out.
        for busy in [
            "+CME ERROR: 14",
            "+CME ERROR: 515",
            "+CMS ERROR: 314",
            "+CME ERROR: SIM busy",
        ] {
            assert!(parse_final(busy).is_some_and(|r| r.is_busy()), "{busy}");
        }
        assert!(!parse_final("+CME ERROR: 10").is_some_and(|r| r.is_busy()));
        assert!(FinalResult::Implied.is_ok());
    }

    #[test]
    fn urcs() {
        assert_eq!(
            parse_urc("+CMTI: \"SM\",3"),
            Urc::Cmti {
                mem: "SM".into(),
                index: 3
            }
        );
        assert_eq!(
            parse_urc("+CDSI: \"SR\",5"),
            Urc::Cdsi {
                mem: "SR".into(),
                index: 5
            }
        );
        assert_eq!(
            parse_urc("+CREG: 1,\"00C3\",\"0000B8A3\",7"),
            Urc::Registration {
                kind: RegistrationKind::Cs,
                stat: 1,
                lac: Some("00C3".into()),
                ci: Some("0000B8A3".into()),
                act: Some(7)
            }
        );
        assert_eq!(
            parse_urc("+CEREG: 5"),
            Urc::Registration {
                kind: RegistrationKind::Eps,
                stat: 5,
                lac: None,
                ci: None,
                act: None
            }
        );
        assert_eq!(
            parse_urc("+CUSD: 0,\"Balance: 1,50 EUR\",15"),
            Urc::Cusd {
                m: 0,
                text: Some("Balance: 1,50 EUR".into()),
                dcs: Some(15)
            }
        );
        assert_eq!(
            parse_urc("+CUSD: 2"),
            Urc::Cusd {
                m: 2,
                text: None,
                dcs: None
            }
        );
        assert_eq!(parse_urc("RING"), Urc::Ring);
        assert_eq!(parse_urc("  RING "), Urc::Ring);
        assert_eq!(parse_urc("^RSSI: 17"), Urc::Rssi(17));
        assert_eq!(
            parse_urc("^BOOT:1234,0,0,0,72"),
            Urc::Boot("1234,0,0,0,72".into())
        );
        assert_eq!(parse_urc("^MODE:5,4"), Urc::Mode("5,4".into()));
        assert_eq!(parse_urc("^SIMST: 1"), Urc::Simst("1".into()));
        assert_eq!(parse_urc("+CPIN: READY"), Urc::Cpin("READY".into()));
        assert_eq!(parse_urc("RDY"), Urc::Rdy);
        assert_eq!(parse_urc("+CFUN: 1"), Urc::Cfun(1));
        assert_eq!(parse_urc("SMS Ready"), Urc::SmsReady);
        assert_eq!(parse_urc("Call Ready"), Urc::CallReady);
        assert_eq!(parse_urc("^SYSSTART"), Urc::SysStart);
        assert_eq!(parse_urc("+CRING: VOICE"), Urc::Cring("VOICE".into()));
        assert_eq!(
            parse_urc("+CLIP: \"+4917012345678\",145,,,,0"),
            Urc::Clip {
                number: "+4917012345678".into(),
                toa: Some(145)
            }
        );
        for status in [
            "PB DONE",
            "+QIND: PB DONE",
            "+WIND: 4",
            "+PACSP1",
            "^SRVST:2",
        ] {
            assert_eq!(parse_urc(status), Urc::Status(status.into()), "{status}");
        }
        for junk in [
            "+CMTI: \"SM\"",
            "+CMTI:",
            "^RSSI: x",
            "+CFUN: 999",
            "PB DONE!",
            "+CLIP: 1",
            ":",
            "",
        ] {
            assert!(!parse_urc(junk).is_known(), "{junk}");
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(
            info_params("+CSQ: 20,99", "+CSQ:"),
            Some(vec!["20".to_owned(), "99".to_owned()])
        );
        assert_eq!(
            info_params("+COPS: 0,0,\"Op, Inc\",7", "+COPS:"),
            Some(vec!["0".into(), "0".into(), "Op, Inc".into(), "7".into()])
        );
        assert_eq!(info_params("+CSQ: 1", "+CREG:"), None);
        let lines: Vec<String> = [
            "+CMGL: 1,1,,3",
            "AA",
            "+CMGL: 2,1,,0",
            "+CMGL: 3,0,,3",
            "BB",
            "CC",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(
            records(&lines),
            vec![
                ("+CMGL: 1,1,,3".to_owned(), "AA".to_owned()),
                ("+CMGL: 2,1,,0".to_owned(), String::new()),
                ("+CMGL: 3,0,,3".to_owned(), "BB".to_owned()),
            ]
        );
    }

    #[test]
    fn data_lines_must_fit_their_header() {
        const PDU: &str = "07911326040000F0040B911346610089F60000208062917314080BC8329BFD06";
        assert!(hex_pdu_fits(PDU, 24, true));
        assert!(hex_pdu_fits(&PDU.to_ascii_lowercase(), 24, true));
        assert!(
            !hex_pdu_fits(PDU, 32, true),
            "the SMSC field is not counted"
        );
        assert!(hex_pdu_fits(&PDU[16..], 24, false));
        assert!(hex_pdu_fits("0006", 1, true), "an empty SMSC field");
        assert!(!hex_pdu_fits(&PDU[1..], 24, true));
        assert!(!hex_pdu_fits("", 0, false));
        assert!(!hex_pdu_fits("+CMT: ,24", 24, true));
        assert!(!hex_pdu_fits("FF", usize::MAX, true));
        assert!(urc_data_fits("+CMT: ,24", PDU));
        assert!(urc_data_fits("+CMT: \"Bob\",24", PDU));
        assert!(!urc_data_fits("+CMT: ,24", "+CMT: ,24"));
        assert!(!urc_data_fits("+CMT: ,23", PDU));
        assert!(urc_data_fits("+CDS: 24", PDU));
        // Text mode: no length to check, but never a header, a final result or a URC.
        let text = "+CMT: \"+4915\",,\"24/01/01,10:00:00+04\"";
        assert!(urc_data_fits(text, "hello"));
        assert!(!urc_data_fits(text, "+CMT: ,24"));
        assert!(!urc_data_fits(text, "OK"));
        assert!(!urc_data_fits(text, "RING"));
        assert!(looks_like_header("+CMT: ,24"));
        assert!(looks_like_header("^RSSI:12"));
        assert!(!looks_like_header("+CME ERROR: 10"));
        assert!(!looks_like_header("+:"));
        assert!(!looks_like_header(PDU));
    }

    #[test]
    fn two_line_urcs() {
        assert!(urc_has_data_line("+CMT: ,24"));
        assert!(urc_has_data_line(
            "+CMT: \"+4912345\",,\"24/01/01,10:00:00+04\""
        ));
        assert!(urc_has_data_line("+CDS: 25"));
        assert!(!urc_has_data_line(
            "+CDS: 6,12,\"+49123\",145,\"t\",\"t\",0"
        ));
        assert!(!urc_has_data_line("+CDSI: \"SR\",1"));
        assert!(!urc_has_data_line("+CMTI: \"SM\",1"));
        assert_eq!(
            parse_urc_with_data("+CMT: ,24", "07911326040000F0"),
            Urc::Cmt {
                alpha: None,
                length: 24,
                pdu: "07911326040000F0".into()
            }
        );
        assert_eq!(
            parse_urc_with_data("+CMT: \"Bob\",24", "00"),
            Urc::Cmt {
                alpha: Some("Bob".into()),
                length: 24,
                pdu: "00".into()
            }
        );
        assert_eq!(
            parse_urc_with_data("+CDS: 25", "0006"),
            Urc::Cds {
                length: 25,
                pdu: "0006".into()
            }
        );
        assert_eq!(
            parse_urc_with_data("+CMT: \"+49\",,\"x\"", "hello"),
            Urc::Other("+CMT: \"+49\",,\"x\"\nhello".into())
        );
    }
}
