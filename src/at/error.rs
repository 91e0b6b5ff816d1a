//! Errors of the AT layer.
//!
//! Two different things are kept apart on purpose:
//! - [`CmeError`] / [`CmsError`]: *the device said no*. They are values inside a command's
//!   [`FinalResult`](super::FinalResult): the link is fine, the modem answered.
//! - [`AtError`]: *this layer could not do its job* (a command that cannot be sent, a link
//!   that stopped answering). Timeouts themselves are reported as session events, since a
//!   sans-IO session has no call to return them from; `AtError` gives the driver a
//!   ready-made error to wrap them in.
//!
//! [`Classification`] is what the driver acts on: it decides whether a message is failed,
//! retried, or the modem is taken out of rotation.

use thiserror::Error;

/// What a device error means for the driver.
///
/// Ordered by how the driver reacts, not by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Classification {
    /// This request (typically this SMS: its PDU, its destination) is at fault: sending it
    /// again unchanged fails again, but the modem is fine. Fail the message, keep the modem.
    PermanentForMessage,
    /// A transient condition (network, congestion, SIM busy, unknown): retry later, possibly
    /// on another modem. Unknown codes land here too, so the driver's retry limit bounds the
    /// cost of not knowing.
    Temporary,
    /// The SIM (or its subscription/configuration) is the problem: every message through this
    /// modem will fail until someone acts. Take the modem out of rotation and alert.
    Sim,
    /// The modem or its state is the problem (ME failure, storage full, command not allowed
    /// in this state): re-initialise or reset the modem, retry the message elsewhere.
    Modem,
}

/// Errors of the AT layer itself ("the link broke", "cannot send this"), as opposed to the
/// device's own refusals which are [`CmeError`]/[`CmsError`] values.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AtError {
    /// The command cannot be put on the wire (embedded CR/LF, Ctrl-Z, ESC, empty text...).
    #[error("invalid AT command {text:?}: {reason}")]
    InvalidCommand {
        /// The offending command text.
        text: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The modem did not finish the command in time; the session aborts and re-syncs.
    #[error("AT command {command:?} timed out")]
    Timeout {
        /// The command text that timed out.
        command: String,
    },
    /// The modem did not answer a plain `AT` after a timeout: the link is considered broken.
    #[error("modem does not answer: re-sync failed")]
    ResyncFailed,
}

/// One row of an error table: the code, its standard name, how the driver should react, and
/// extra verbose spellings seen on real modems (`AT+CMEE=2`).
struct Entry {
    code: u16,
    name: &'static str,
    class: Classification,
    aliases: &'static [&'static str],
}

const fn e(code: u16, name: &'static str, class: Classification) -> Entry {
    Entry {
        code,
        name,
        class,
        aliases: &[],
    }
}

const fn ea(
    code: u16,
    name: &'static str,
    class: Classification,
    aliases: &'static [&'static str],
) -> Entry {
    Entry {
        code,
        name,
        class,
        aliases,
    }
}

use Classification::{Modem, PermanentForMessage as Perm, Sim, Temporary as Temp};

/// +CME ERROR codes, 3GPP TS 27.007 §9.2.
///
/// Reasoning: SIM lock states and SIM failures are `Sim`; "SIM busy" and network
/// availability are `Temporary` (they clear by themselves, typically right after boot);
/// bad arguments of *this* request (index, string too long) are `PermanentForMessage`;
/// the rest means the ME is in a state we did not expect: `Modem`.
static CME_TABLE: &[Entry] = &[
    e(0, "phone failure", Modem),
    e(1, "no connection to phone", Modem),
    e(2, "phone-adaptor link reserved", Modem),
    e(3, "operation not allowed", Modem),
    e(4, "operation not supported", Modem),
    e(5, "PH-SIM PIN required", Sim),
    e(6, "PH-FSIM PIN required", Sim),
    e(7, "PH-FSIM PUK required", Sim),
    ea(10, "SIM not inserted", Sim, &["no sim", "sim not present"]),
    e(11, "SIM PIN required", Sim),
    e(12, "SIM PUK required", Sim),
    e(13, "SIM failure", Sim),
    // "SIM not ready": MediaTek-based firmware's verbose text for the same state.
    ea(14, "SIM busy", Temp, &["sim not ready"]),
    e(15, "SIM wrong", Sim),
    e(16, "incorrect password", Sim),
    e(17, "SIM PIN2 required", Sim),
    e(18, "SIM PUK2 required", Sim),
    e(20, "memory full", Modem),
    e(21, "invalid index", Perm),
    e(22, "not found", Perm),
    e(23, "memory failure", Modem),
    e(24, "text string too long", Perm),
    e(25, "invalid characters in text string", Perm),
    e(26, "dial string too long", Perm),
    e(27, "invalid characters in dial string", Perm),
    e(30, "no network service", Temp),
    e(31, "network timeout", Temp),
    ea(
        32,
        "network not allowed - emergency calls only",
        Temp,
        &["network not allowed emergency calls only"],
    ),
    e(40, "network personalization PIN required", Sim),
    e(41, "network personalization PUK required", Sim),
    e(42, "network subset personalization PIN required", Sim),
    e(43, "network subset personalization PUK required", Sim),
    e(44, "service provider personalization PIN required", Sim),
    e(45, "service provider personalization PUK required", Sim),
    e(46, "corporate personalization PIN required", Sim),
    e(47, "corporate personalization PUK required", Sim),
    e(50, "incorrect parameters", Perm),
    ea(100, "unknown", Temp, &["unknown error"]),
    // GPRS-related (27.007 §9.2.2): subscription refusals are the SIM's problem.
    e(103, "illegal MS", Sim),
    e(106, "illegal ME", Sim),
    e(107, "GPRS services not allowed", Sim),
    e(111, "PLMN not allowed", Sim),
    e(112, "location area not allowed", Sim),
    e(113, "roaming not allowed in this location area", Sim),
    e(148, "unspecified GPRS error", Temp),
    // Vendor (Wavecom/Sierra): the command came while the ME was still starting or busy
    // with another; it was not carried out (python-gsmmodem test/fakemodems.py: after
    // AT+CFUN=1 a Wavecom answers this to the next commands).
    ea(
        515,
        "please wait, init or command processing in progress",
        Temp,
        &["please wait", "device busy"],
    ),
];

/// +CMS ERROR codes: 3GPP TS 27.005 §3.2.5 (300..=511), RP-causes of TS 24.011 Annex E
/// (0..=127) and TP-Failure-Causes of TS 23.040 §9.2.3.22 (128..=255).
///
/// Reasoning for the network causes:
/// - Destination-specific refusals (unassigned number, unknown/unidentified subscriber,
///   barred destination, invalid address, facility rejected) are `PermanentForMessage`.
/// - Operator-determined barring (8) and call barred (10) *may* mean the sending SIM is
///   barred (no credit), but they may just as well be about this destination. They are
///   classified `PermanentForMessage` on purpose: one bad destination must never take every
///   modem of the bank out of rotation. A driver seeing a run of them on one modem should
///   suspect the SIM.
/// - Network trouble (out of order, congestion, temporary failure, resources, SC busy or
///   system failure, destination out of service) is `Temporary`.
/// - "No SC subscription" (0xC1) and "SMSC address unknown" (330) are properties of the
///   sending SIM: `Sim`.
/// - TPDU format faults (PID/DCS/VP unsupported, invalid PDU mode parameter) are
///   `PermanentForMessage`: the same PDU fails again.
/// - "unknown error" (500) is, in practice, mostly transient: `Temporary`.
static CMS_TABLE: &[Entry] = &[
    ea(
        1,
        "unassigned (unallocated) number",
        Perm,
        &["unassigned number", "unallocated number"],
    ),
    e(8, "operator determined barring", Perm),
    e(10, "call barred", Perm),
    e(17, "network failure", Temp),
    e(21, "short message transfer rejected", Perm),
    e(22, "memory capacity exceeded", Temp),
    ea(
        27,
        "destination out of service",
        Temp,
        &["destination out of order"],
    ),
    e(28, "unidentified subscriber", Perm),
    e(29, "facility rejected", Perm),
    e(30, "unknown subscriber", Perm),
    e(38, "network out of order", Temp),
    e(41, "temporary failure", Temp),
    e(42, "congestion", Temp),
    ea(
        47,
        "resources unavailable, unspecified",
        Temp,
        &["resources unavailable"],
    ),
    e(50, "requested facility not subscribed", Perm),
    e(69, "requested facility not implemented", Perm),
    e(81, "invalid short message transfer reference value", Temp),
    ea(
        95,
        "invalid message, unspecified",
        Perm,
        &["invalid message"],
    ),
    e(96, "invalid mandatory information", Perm),
    e(97, "message type non-existent or not implemented", Perm),
    e(
        98,
        "message not compatible with short message protocol state",
        Temp,
    ),
    e(
        99,
        "information element non-existent or not implemented",
        Perm,
    ),
    ea(
        111,
        "protocol error, unspecified",
        Temp,
        &["protocol error"],
    ),
    ea(127, "interworking, unspecified", Temp, &["interworking"]),
    e(0x80, "telematic interworking not supported", Perm),
    e(0x81, "short message Type 0 not supported", Perm),
    e(0x82, "cannot replace short message", Perm),
    e(0x8F, "unspecified TP-PID error", Perm),
    e(0x90, "data coding scheme (alphabet) not supported", Perm),
    e(0x91, "message class not supported", Perm),
    e(0x9F, "unspecified TP-DCS error", Perm),
    e(0xA0, "command cannot be actioned", Perm),
    e(0xA1, "command unsupported", Perm),
    e(0xAF, "unspecified TP-Command error", Perm),
    e(0xB0, "TPDU not supported", Perm),
    e(0xC0, "SC busy", Temp),
    e(0xC1, "no SC subscription", Sim),
    e(0xC2, "SC system failure", Temp),
    e(0xC3, "invalid SME address", Perm),
    e(0xC4, "destination SME barred", Perm),
    // The SC already holds a message with this reference: resending cannot help.
    e(0xC5, "SM rejected-duplicate SM", Perm),
    e(0xC6, "TP-VPF not supported", Perm),
    e(0xC7, "TP-VP not supported", Perm),
    e(0xD0, "(U)SIM SMS storage full", Sim),
    e(0xD1, "no SMS storage capability in (U)SIM", Sim),
    e(0xD2, "error in MS", Modem),
    e(0xD3, "memory capacity exceeded", Temp),
    e(0xD4, "(U)SIM application toolkit busy", Temp),
    e(0xD5, "(U)SIM data download error", Sim),
    e(0xFF, "unspecified error cause", Temp),
    e(300, "ME failure", Modem),
    e(301, "SMS service of ME reserved", Temp),
    e(302, "operation not allowed", Modem),
    e(303, "operation not supported", Modem),
    ea(
        304,
        "invalid PDU mode parameter",
        Perm,
        &["invalid pdu mode", "invalid pdu parameter"],
    ),
    e(305, "invalid text mode parameter", Perm),
    ea(310, "SIM not inserted", Sim, &["no sim", "sim not present"]),
    e(311, "SIM PIN required", Sim),
    e(312, "PH-SIM PIN required", Sim),
    e(313, "SIM failure", Sim),
    e(314, "SIM busy", Temp),
    e(315, "SIM wrong", Sim),
    e(316, "SIM PUK required", Sim),
    e(317, "SIM PIN2 required", Sim),
    e(318, "SIM PUK2 required", Sim),
    e(320, "memory failure", Modem),
    e(321, "invalid memory index", Perm),
    e(322, "memory full", Modem),
    ea(330, "SMSC address unknown", Sim, &["sc address unknown"]),
    e(331, "no network service", Temp),
    e(332, "network timeout", Temp),
    e(340, "no +CNMA acknowledgement expected", Modem),
    ea(500, "unknown error", Temp, &["unknown"]),
];

/// Lower-cases and reduces every run of non-alphanumerics to one space, so that vendor
/// spellings ("SIM PIN required", "Sim pin required.", "network not allowed - emergency")
/// compare equal.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '+')
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_ascii_lowercase());
    }
    out
}

fn by_code(table: &'static [Entry], code: u16) -> Option<&'static Entry> {
    table.iter().find(|e| e.code == code)
}

fn by_text(table: &'static [Entry], text: &str) -> Option<&'static Entry> {
    let wanted = normalize(text);
    if wanted.is_empty() {
        return None;
    }
    table
        .iter()
        .find(|e| normalize(e.name) == wanted || e.aliases.iter().any(|a| normalize(a) == wanted))
}

/// Splits the parameter of `+CME ERROR: <x>` / `+CMS ERROR: <x>` into a numeric code or a
/// verbose text (modems in `AT+CMEE=2` mode), mapping known verbose texts back to codes so
/// the driver only ever has to look at codes.
fn parse_param(table: &'static [Entry], param: &str) -> (Option<u16>, Option<String>) {
    let p = param.trim().trim_matches('"').trim();
    if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
        // Out-of-range numbers are kept as text rather than truncated.
        return match p.parse::<u16>() {
            Ok(code) => (Some(code), None),
            Err(_) => (None, Some(p.to_owned())),
        };
    }
    let text = if p.is_empty() {
        None
    } else {
        Some(p.to_owned())
    };
    (by_text(table, p).map(|e| e.code), text)
}

fn describe(code: Option<u16>, text: Option<&str>, name: Option<&str>) -> String {
    match (code, text, name) {
        (Some(c), Some(t), _) => format!("{c} ({t})"),
        (Some(c), None, Some(n)) => format!("{c} ({n})"),
        (Some(c), None, None) => c.to_string(),
        (None, Some(t), _) => t.to_owned(),
        (None, None, _) => "(no code)".to_owned(),
    }
}

macro_rules! device_error {
    ($(#[$doc:meta])* $ty:ident, $table:ident, $prefix:literal, $default:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Error)]
        #[error("{} {}", $prefix, describe(self.code, self.text.as_deref(), self.name()))]
        pub struct $ty {
            code: Option<u16>,
            text: Option<String>,
        }

        impl $ty {
            /// Builds the error for a numeric code (as sent with `AT+CMEE=1`).
            pub fn from_code(code: u16) -> Self {
                Self { code: Some(code), text: None }
            }

            /// Parses the parameter after the colon, numeric or verbose. Never fails: an
            /// unknown verbose text is kept with no code.
            pub fn parse(param: &str) -> Self {
                let (code, text) = parse_param($table, param);
                Self { code, text }
            }

            /// The numeric code, when the modem sent one or the verbose text is known.
            pub fn code(&self) -> Option<u16> {
                self.code
            }

            /// The verbose text exactly as the modem sent it (`AT+CMEE=2`), if any.
            pub fn text(&self) -> Option<&str> {
                self.text.as_deref()
            }

            /// The standard name of the code, if it is a known one.
            pub fn name(&self) -> Option<&'static str> {
                self.code.and_then(|c| by_code($table, c)).map(|e| e.name)
            }

            /// How the driver should react; see the table's comment for the reasoning.
            pub fn classification(&self) -> Classification {
                match self.code {
                    Some(c) => by_code($table, c).map_or_else(|| $default(c), |e| e.class),
                    None => Classification::Temporary,
                }
            }
        }
    };
}

/// Classification of CME codes missing from the table: unknown means retry (see
/// [`Classification::Temporary`]).
fn cme_default(_code: u16) -> Classification {
    Classification::Temporary
}

/// Classification of CMS codes missing from the table: TP-Failure-Causes (128..=255) are
/// about the TPDU itself, anything else unknown is retried.
fn cms_default(code: u16) -> Classification {
    if (128..=255).contains(&code) {
        Classification::PermanentForMessage
    } else {
        Classification::Temporary
    }
}

device_error!(
    /// A `+CME ERROR` (3GPP TS 27.007 §9.2): the ME refused a general command.
    CmeError,
    CME_TABLE,
    "+CME ERROR:",
    cme_default
);

device_error!(
    /// A `+CMS ERROR` (3GPP TS 27.005 §3.2.5): the ME or the network refused an SMS command.
    CmsError,
    CMS_TABLE,
    "+CMS ERROR:",
    cms_default
);

impl CmeError {
    /// 3: the command is not allowed in the ME's current state.
    pub const OPERATION_NOT_ALLOWED: u16 = 3;
    /// 4: the ME does not implement the command.
    pub const OPERATION_NOT_SUPPORTED: u16 = 4;
    /// 10: no SIM card.
    pub const SIM_NOT_INSERTED: u16 = 10;
    /// 11: the SIM waits for its PIN.
    pub const SIM_PIN_REQUIRED: u16 = 11;
    /// 12: the SIM waits for its PUK.
    pub const SIM_PUK_REQUIRED: u16 = 12;
    /// 13: the SIM is broken.
    pub const SIM_FAILURE: u16 = 13;
    /// 14: the SIM is busy (typically right after boot); transient.
    pub const SIM_BUSY: u16 = 14;
    /// 20: the message storage is full.
    pub const MEMORY_FULL: u16 = 20;
    /// 21: no such storage index.
    pub const INVALID_INDEX: u16 = 21;
    /// 30: not registered.
    pub const NO_NETWORK_SERVICE: u16 = 30;
    /// 100: unknown error.
    pub const UNKNOWN: u16 = 100;
    /// 515 (vendor): please wait, init or command processing in progress.
    pub const DEVICE_BUSY: u16 = 515;

    /// Whether the SIM or the device was busy (14, 515): the command was not carried
    /// out and may be sent again.
    pub fn is_busy(&self) -> bool {
        matches!(self.code, Some(Self::SIM_BUSY | Self::DEVICE_BUSY))
    }
}

impl CmsError {
    /// 38: network out of order.
    pub const NETWORK_OUT_OF_ORDER: u16 = 38;
    /// 42: congestion.
    pub const CONGESTION: u16 = 42;
    /// 300: ME failure.
    pub const ME_FAILURE: u16 = 300;
    /// 302: operation not allowed.
    pub const OPERATION_NOT_ALLOWED: u16 = 302;
    /// 304: invalid PDU mode parameter (malformed PDU).
    pub const INVALID_PDU_MODE_PARAMETER: u16 = 304;
    /// 310: SIM not inserted.
    pub const SIM_NOT_INSERTED: u16 = 310;
    /// 311: SIM PIN required.
    pub const SIM_PIN_REQUIRED: u16 = 311;
    /// 314: SIM busy.
    pub const SIM_BUSY: u16 = 314;
    /// 321: invalid memory index.
    pub const INVALID_MEMORY_INDEX: u16 = 321;
    /// 322: memory full.
    pub const MEMORY_FULL: u16 = 322;
    /// 330: SMSC address unknown.
    pub const SMSC_ADDRESS_UNKNOWN: u16 = 330;
    /// 331: no network service.
    pub const NO_NETWORK_SERVICE: u16 = 331;
    /// 332: network timeout.
    pub const NETWORK_TIMEOUT: u16 = 332;
    /// 500: unknown error.
    pub const UNKNOWN_ERROR: u16 = 500;

    /// Whether the SIM was busy (314): the command was not carried out and may be sent
    /// again.
    pub fn is_busy(&self) -> bool {
        self.code == Some(Self::SIM_BUSY)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn numeric_cms() {
        let e = CmsError::parse(" 500");
        assert_eq!(e.code(), Some(500));
        assert_eq!(e.text(), None);
        assert_eq!(e.name(), Some("unknown error"));
        assert_eq!(e.classification(), Classification::Temporary);
        assert_eq!(e.to_string(), "+CMS ERROR: 500 (unknown error)");
    }

    #[test]
    fn verbose_maps_to_codes() {
        let cases: &[(&str, u16)] = &[
            ("SIM busy", 314),
            ("SIM PIN required", 311),
            ("operation not allowed", 302),
            ("invalid PDU mode parameter", 304),
            ("Invalid PDU mode parameter.", 304),
            ("unknown error", 500),
            ("SMSC address unknown", 330),
            ("Unassigned (unallocated) number", 1),
            ("Destination out of order", 27),
        ];
        for (text, code) in cases {
            let e = CmsError::parse(text);
            assert_eq!(e.code(), Some(*code), "{text}");
            assert_eq!(e.text(), Some(*text));
        }
        assert_eq!(CmeError::parse("SIM busy").code(), Some(14));
        assert_eq!(CmeError::parse("SIM PIN required").code(), Some(11));
        assert_eq!(CmeError::parse("operation not allowed").code(), Some(3));
        assert_eq!(CmeError::parse("unknown").code(), Some(100));
        assert_eq!(CmeError::parse("unknown error").code(), Some(100));
        assert_eq!(
            CmeError::parse("network not allowed - emergency calls only").code(),
            Some(32)
        );
    }

    #[test]
    fn unknown_verbose_is_kept() {
        let e = CmeError::parse("frobnicator jammed");
        assert_eq!(e.code(), None);
        assert_eq!(e.text(), Some("frobnicator jammed"));
        assert_eq!(e.classification(), Classification::Temporary);
        assert_eq!(e.to_string(), "+CME ERROR: frobnicator jammed");
    }

    #[test]
    fn weird_params_do_not_panic() {
        for p in [
            "",
            "   ",
            "\"\"",
            "99999999999999",
            "-1",
            "1.5",
            "\u{1F600}",
        ] {
            let _ = CmeError::parse(p).to_string();
            let _ = CmsError::parse(p).classification();
        }
        assert_eq!(CmsError::parse("99999999").code(), None);
    }

    #[test]
    fn cms_classification() {
        use Classification::*;
        let cases: &[(u16, Classification)] = &[
            (1, PermanentForMessage),
            (8, PermanentForMessage),
            (10, PermanentForMessage),
            (21, PermanentForMessage),
            (27, Temporary),
            (28, PermanentForMessage),
            (29, PermanentForMessage),
            (30, PermanentForMessage),
            (38, Temporary),
            (41, Temporary),
            (42, Temporary),
            (47, Temporary),
            (0xC0, Temporary),
            (0xC1, Sim),
            (0xC3, PermanentForMessage),
            (0x85, PermanentForMessage), // reserved TP cause: TPDU fault by range
            (300, Modem),
            (302, Modem),
            (304, PermanentForMessage),
            (305, PermanentForMessage),
            (310, Sim),
            (311, Sim),
            (312, Sim),
            (313, Sim),
            (314, Temporary),
            (315, Sim),
            (316, Sim),
            (317, Sim),
            (318, Sim),
            (320, Modem),
            (321, PermanentForMessage),
            (322, Modem),
            (330, Sim),
            (331, Temporary),
            (332, Temporary),
            (500, Temporary),
            (512, Temporary),
            (600, Temporary),
        ];
        for (code, class) in cases {
            assert_eq!(
                CmsError::from_code(*code).classification(),
                *class,
                "CMS {code}"
            );
        }
    }

    #[test]
    fn cme_classification() {
        use Classification::*;
        let cases: &[(u16, Classification)] = &[
            (3, Modem),
            (4, Modem),
            (10, Sim),
            (11, Sim),
            (12, Sim),
            (13, Sim),
            (14, Temporary),
            (15, Sim),
            (16, Sim),
            (17, Sim),
            (18, Sim),
            (20, Modem),
            (21, PermanentForMessage),
            (22, PermanentForMessage),
            (30, Temporary),
            (31, Temporary),
            (100, Temporary),
            (9999, Temporary),
        ];
        for (code, class) in cases {
            assert_eq!(
                CmeError::from_code(*code).classification(),
                *class,
                "CME {code}"
            );
        }
    }

    #[test]
    fn every_table_name_parses_back_to_its_code() {
        for entry in CME_TABLE {
            assert_eq!(CmeError::parse(entry.name).code(), Some(entry.code));
        }
        for entry in CMS_TABLE {
            // Some names are shared between ranges (e.g. "memory capacity exceeded" is both
            // RP-cause 22 and TP-cause 0xD3): the first one wins, which is fine for driving.
            let parsed = CmsError::parse(entry.name).code().unwrap();
            assert_eq!(
                by_code(CMS_TABLE, parsed).map(|e| normalize(e.name)),
                Some(normalize(entry.name))
            );
        }
    }
}
