//! The codec's error type: every decoding failure says what is wrong and at which
//! octet, so an operator can point at the byte in a modem trace.

use thiserror::Error;

/// Everything that can go wrong encoding or decoding a PDU.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PduError {
    /// The input is not hexadecimal (position counts characters from 0).
    #[error("invalid hex: {reason} at character {position}")]
    Hex {
        /// Character index of the bad digit (the end, for an odd count).
        position: usize,
        /// `not a hex digit` or `odd number of digits`.
        reason: &'static str,
    },

    /// The PDU ends before a field it announces.
    #[error("PDU ends early at octet {offset}: {field} needs {needed} more octet(s)")]
    Truncated {
        /// Octet where the field starts, counted from the start of the PDU (SMSC
        /// field included).
        offset: usize,
        /// The field being read, as the spec names it.
        field: &'static str,
        /// Octets missing.
        needed: usize,
    },

    /// A field holds a value the spec does not allow.
    #[error("invalid {field} at octet {offset}: {reason}")]
    Invalid {
        /// Octet of the field, counted from the start of the PDU.
        offset: usize,
        /// The field, as the spec names it.
        field: &'static str,
        /// What is wrong with the value.
        reason: String,
    },

    /// Octets left over after a complete TPDU.
    #[error("{count} unexpected octet(s) after the end of the TPDU at octet {offset}")]
    Trailing {
        /// Octet where the extra data starts.
        offset: usize,
        /// How many octets are left over.
        count: usize,
    },

    /// TS 23.042 compression is not implemented by any handset we target, so it is
    /// refused rather than shown as garbage.
    #[error("compressed user data (TS 23.042) is not supported: DCS 0x{dcs:02X} at octet {offset}")]
    Compressed {
        /// Octet of the TP-DCS.
        offset: usize,
        /// The TP-DCS value.
        dcs: u8,
    },

    /// A character has no place in the chosen GSM 7-bit tables.
    #[error("character {ch:?} cannot be encoded in the GSM 7-bit alphabet")]
    Unencodable {
        /// The first character that does not fit.
        ch: char,
    },

    /// An address given for encoding is not a phone number or alphanumeric sender.
    #[error("invalid address {value:?}: {reason}")]
    Address {
        /// The address as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// User data longer than one TPDU can carry.
    #[error("user data too long: {len} {unit} where at most {max} fit")]
    TooLong {
        /// The length asked for, in `unit`s.
        len: usize,
        /// The most that fits, in `unit`s.
        max: usize,
        /// `septets`, `octets` or `parts`.
        unit: &'static str,
    },
}

/// Shorthand for codec results.
pub type Result<T> = std::result::Result<T, PduError>;
