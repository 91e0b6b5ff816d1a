//! What to send, and how to recognise its answer.
//!
//! A [`Command`] carries everything the session needs to attribute the modem's lines to it:
//! the response prefixes it expects (anything else is a URC), whether it answers with bare
//! text lines, its timeout, and for `AT+CMGS`/`AT+CMGW` the PDU sent after the prompt.

use std::time::Duration;

use super::error::AtError;

/// Default timeout of a command: most answer in milliseconds, a few (SIM access right after
/// boot) take a couple of seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// `AT+CMGS` waits for the network (submit + SC acknowledgement): tens of seconds is normal
/// on a congested cell.
pub const CMGS_TIMEOUT: Duration = Duration::from_secs(60);
/// Listing or reading storage can take long on a full SIM.
pub const STORAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// A network scan (`AT+COPS=?`) or a USSD request may take minutes.
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(180);

/// One AT command line (possibly compound, `AT+CMEE=1;+CREG=2`: one final result answers
/// the whole line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    text: String,
    info_prefixes: Vec<String>,
    raw: bool,
    lenient: bool,
    timeout: Duration,
    payload: Option<Vec<u8>>,
}

impl Command {
    /// A command line, without its trailing CR. Expects no information line until told.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            info_prefixes: Vec::new(),
            raw: false,
            lenient: false,
            timeout: DEFAULT_TIMEOUT,
            payload: None,
        }
    }

    /// Adds an information-line prefix (e.g. `"+CSQ:"`): lines starting with it belong
    /// to this command; other lines are URCs.
    pub fn with_info(mut self, prefix: impl Into<String>) -> Self {
        self.info_prefixes.push(prefix.into());
        self
    }

    /// The command answers with bare text lines (`AT+CGSN`, `AT+CIMI`, `ATI`): every line
    /// that is not a recognised URC belongs to it — except a line that starts like a
    /// vendor result (`+`, `^`, `#`, `!`, `$`, `%`, `*`) under another name than the
    /// command's own or an expected prefix (`+QIND: ...` is never an IMEI).
    pub fn with_raw_info(mut self) -> Self {
        self.raw = true;
        self
    }

    /// The answer line alone suffices: when firmware sends it but no final result (old
    /// Wavecom answers `AT+CPIN?` with `+CPIN: READY` and nothing more), the command
    /// completes with [`FinalResult::Implied`](super::FinalResult::Implied) once the line
    /// has been quiet for [`SessionConfig::implied_final_after`](super::SessionConfig).
    /// Only for queries whose answer line carries everything: never for a command whose
    /// final result is the point (`AT+CMGS`, `AT+CPIN=<pin>`, `AT+CMGD`, any setting),
    /// nor one whose answer is a list of unknown length (`AT+CMGL`). A command with a
    /// payload cannot be lenient.
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }

    /// Overrides the timeout (from sending the line to the final result; for a command with
    /// a payload, re-armed when the prompt arrives).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Data sent after the `>` prompt, followed by Ctrl-Z (the hex PDU of `AT+CMGS`).
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = Some(payload.into());
        self
    }

    /// `AT+CMGS=<tpdu_len>` then `<hex>` Ctrl-Z. `tpdu_len` is the TPDU length in octets
    /// *excluding* the SMSC part that `hex` starts with (27.005 §3.5.1).
    pub fn cmgs(tpdu_len: usize, hex: impl Into<String>) -> Self {
        Self::new(format!("AT+CMGS={tpdu_len}"))
            .with_info("+CMGS:")
            .timeout(CMGS_TIMEOUT)
            .payload(hex.into().into_bytes())
    }

    /// `AT+CMGR=<index>`: one `+CMGR:` header plus its PDU line.
    pub fn cmgr(index: u32) -> Self {
        Self::new(format!("AT+CMGR={index}"))
            .with_info("+CMGR:")
            .timeout(STORAGE_TIMEOUT)
    }

    /// `AT+CMGL=<stat>` (PDU mode: 0 unread, 1 read, 2 unsent, 3 sent, 4 all): one
    /// `+CMGL:` header plus PDU line per record.
    pub fn cmgl(stat: u8) -> Self {
        Self::new(format!("AT+CMGL={stat}"))
            .with_info("+CMGL:")
            .timeout(STORAGE_TIMEOUT)
    }

    /// `AT+CMGD=<index>`.
    pub fn cmgd(index: u32) -> Self {
        Self::new(format!("AT+CMGD={index}")).timeout(STORAGE_TIMEOUT)
    }

    /// `AT+CSQ`.
    pub fn csq() -> Self {
        Self::new("AT+CSQ").with_info("+CSQ:").lenient()
    }

    /// `AT+CREG?`.
    pub fn creg_query() -> Self {
        Self::new("AT+CREG?").with_info("+CREG:").lenient()
    }

    /// `AT+CPIN?` (the query; entering a PIN is never lenient).
    pub fn cpin_query() -> Self {
        Self::new("AT+CPIN?").with_info("+CPIN:").lenient()
    }

    /// `AT+COPS?`.
    pub fn cops_query() -> Self {
        Self::new("AT+COPS?").with_info("+COPS:").lenient()
    }

    /// `AT+CSCA?` (SMSC address).
    pub fn csca_query() -> Self {
        Self::new("AT+CSCA?").with_info("+CSCA:").lenient()
    }

    /// `AT+CGSN` (IMEI, bare line).
    pub fn cgsn() -> Self {
        Self::new("AT+CGSN").with_raw_info().lenient()
    }

    /// `AT+CIMI` (IMSI, bare line).
    pub fn cimi() -> Self {
        Self::new("AT+CIMI").with_raw_info().lenient()
    }

    /// `AT+CGMI` (manufacturer, bare line).
    pub fn cgmi() -> Self {
        Self::new("AT+CGMI").with_raw_info().lenient()
    }

    /// `AT+CGMM` (model, bare line).
    pub fn cgmm() -> Self {
        Self::new("AT+CGMM").with_raw_info().lenient()
    }

    /// `ATI` (identification, bare lines; some firmware adds `+GCAP: ...`).
    pub fn ati() -> Self {
        Self::new("ATI")
            .with_info("+GCAP:")
            .with_raw_info()
            .lenient()
    }

    /// `AT+CRSM=176,12258,0,0,10`: READ BINARY of EF_ICCID (2FE2), the SIM's ICCID as
    /// stored (nibble-swapped BCD), for modems without a `+CCID`-like command. Readable
    /// without the PIN.
    pub fn crsm_iccid() -> Self {
        Self::new("AT+CRSM=176,12258,0,0,10")
            .with_info("+CRSM:")
            .lenient()
    }

    /// `AT+CUSD=1,"<req>",15`. The network's answer comes as a `+CUSD:` URC, usually
    /// *after* the OK, so it is not expected here: the driver correlates the URC.
    pub fn cusd(request: &str) -> Self {
        Self::new(format!("AT+CUSD=1,\"{request}\",15")).timeout(NETWORK_TIMEOUT)
    }

    /// The command line, without its CR.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The response prefixes.
    pub fn expected(&self) -> &[String] {
        &self.info_prefixes
    }

    /// Whether bare text lines belong to this command.
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// Whether the answer line alone may complete it (see [`Command::lenient`]).
    pub fn is_lenient(&self) -> bool {
        self.lenient
    }

    /// The timeout.
    pub fn timeout_duration(&self) -> Duration {
        self.timeout
    }

    /// The data sent after the prompt, if any.
    pub fn payload_bytes(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    /// Whether `line` is a response line of this command by prefix.
    pub(crate) fn matches_prefix(&self, line: &str) -> bool {
        self.info_prefixes
            .iter()
            .any(|p| starts_with_ignore_case(line, p))
    }

    /// The command's own result name, from its text: `+CGMI` for `AT+CGMI`, `^ICCID`
    /// for `AT^ICCID?`; `None` for basic commands (`ATI`).
    pub(crate) fn own_name(&self) -> Option<&str> {
        let rest = self
            .text
            .get(2..)
            .filter(|_| starts_with_ignore_case(&self.text, "AT"))?;
        let b = rest.as_bytes();
        if !matches!(b.first(), Some(c) if VENDOR_MARKS.contains(c)) {
            return None;
        }
        let len = 1 + b
            .iter()
            .skip(1)
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        (len > 1).then(|| rest.get(..len)).flatten()
    }

    /// Whether a bare-line answer of a raw command may be `line`: anything but a line
    /// that starts like a vendor result under a name not its own (`+QIND: ...`,
    /// `+PACSP1`, `^SRVST:1` during `AT+CGSN`).
    pub(crate) fn may_be_raw_answer(&self, line: &str) -> bool {
        if !matches!(line.as_bytes().first(), Some(c) if VENDOR_MARKS.contains(c)) {
            return true;
        }
        self.matches_prefix(line)
            || self.own_name().is_some_and(|name| {
                starts_with_ignore_case(line, name)
                    && matches!(line.as_bytes().get(name.len()), None | Some(b':' | b' '))
            })
    }

    /// Whether `line` is the modem echoing our command line (ATE1, or after a reset).
    pub(crate) fn is_echo(&self, line: &str) -> bool {
        line.eq_ignore_ascii_case(&self.text)
    }

    /// Whether `line` is the modem echoing the payload typed after the prompt.
    pub(crate) fn is_payload_echo(&self, line: &str) -> bool {
        self.payload
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(line.as_bytes()))
    }

    /// Refuses what cannot be framed: the line end, Ctrl-Z and ESC are ours.
    pub(crate) fn validate(&self) -> Result<(), AtError> {
        let bad = |reason| {
            Err(AtError::InvalidCommand {
                text: self.text.clone(),
                reason,
            })
        };
        if self.text.trim().is_empty() {
            return bad("empty command line");
        }
        if self.text.bytes().any(|b| b.is_ascii_control()) {
            return bad("control character in command line");
        }
        if let Some(p) = &self.payload
            && p.iter().any(|&b| b == 0x1A || b == 0x1B)
        {
            return bad("Ctrl-Z or ESC inside the payload");
        }
        if self.lenient && self.payload.is_some() {
            return bad("a command with a payload needs its final result");
        }
        Ok(())
    }
}

/// The characters that start an extended or vendor result name (V.250 `+`, Huawei `^`,
/// Telit `#`, Sierra `!`, Qualcomm `$`, `%`, Sony Ericsson `*`).
const VENDOR_MARKS: &[u8] = b"+^#!$%*";

pub(crate) fn starts_with_ignore_case(line: &str, prefix: &str) -> bool {
    line.len() >= prefix.len()
        && line
            .as_bytes()
            .iter()
            .zip(prefix.as_bytes())
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders() {
        let c = Command::cmgs(23, "0011");
        assert_eq!(c.text(), "AT+CMGS=23");
        assert_eq!(c.expected(), ["+CMGS:".to_owned()]);
        assert_eq!(c.timeout_duration(), CMGS_TIMEOUT);
        assert_eq!(c.payload_bytes(), Some(&b"0011"[..]));
        assert!(c.matches_prefix("+CMGS: 5"));
        assert!(c.matches_prefix("+cmgs: 5"));
        assert!(!c.matches_prefix("+CMTI: \"SM\",1"));
        assert!(!c.matches_prefix("+CMG"));
        assert!(c.is_echo("at+cmgs=23"));
        assert!(c.is_payload_echo("0011"));
        assert!(Command::cgsn().is_raw());
        assert!(!Command::csq().is_raw());
    }

    #[test]
    fn validation() {
        assert!(Command::csq().validate().is_ok());
        assert!(Command::new("").validate().is_err());
        assert!(Command::new("AT\r").validate().is_err());
        assert!(Command::new("AT\nAT").validate().is_err());
        assert!(Command::cmgs(1, "00\x1a").validate().is_err());
        assert!(Command::new("AT").payload(vec![0x1B]).validate().is_err());
    }
}
