//! TP-DCS, the data coding scheme of TS 23.038 §4: alphabet, message class (class 0 is
//! "flash"), the compressed flag and the message-waiting indication groups.

/// The alphabet the user data is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alphabet {
    /// The GSM 7-bit default alphabet, with national language tables if the UDH
    /// names them; 160 septets per TPDU.
    Gsm7,
    /// 8-bit data (binary, WAP push, ports): not text; 140 octets per TPDU.
    Eight,
    /// UCS-2, read as UTF-16 so emoji survive; 70 characters per TPDU.
    Ucs2,
}

impl Alphabet {
    /// `gsm7`, `8bit` or `ucs2`, as the CLI and the API report the encoding.
    pub fn name(self) -> &'static str {
        match self {
            Alphabet::Gsm7 => "gsm7",
            Alphabet::Eight => "8bit",
            Alphabet::Ucs2 => "ucs2",
        }
    }
}

/// What a message-waiting DCS group announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitingKind {
    /// Voicemail message waiting.
    Voicemail,
    /// Fax message waiting.
    Fax,
    /// Electronic mail message waiting.
    Email,
    /// Other message waiting.
    Other,
}

/// Message waiting indication (coding groups 1100–1110).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageWaiting {
    /// Indication set active (true) or inactive.
    pub active: bool,
    /// Which indicator it sets.
    pub kind: WaitingKind,
    /// Group 1100 asks the handset to discard the message after updating the indicator.
    pub discard: bool,
}

/// A decoded data coding scheme. `raw` is kept so the exact octet can be re-encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dcs {
    /// How the user data is encoded.
    pub alphabet: Alphabet,
    /// Message class 0–3; class 0 is displayed immediately and not stored ("flash").
    pub class: Option<u8>,
    /// TS 23.042 compression; decoding refuses such user data.
    pub compressed: bool,
    /// Coding group 01xx: the handset deletes the message after reading.
    pub auto_delete: bool,
    /// Set for the message-waiting groups (1100–1110); `None` otherwise.
    pub waiting: Option<MessageWaiting>,
    /// The octet as sent or received, re-encoded unchanged.
    pub raw: u8,
}

impl Dcs {
    /// A plain DCS from the general data coding group.
    pub fn new(alphabet: Alphabet, class: Option<u8>) -> Dcs {
        let a = match alphabet {
            Alphabet::Gsm7 => 0,
            Alphabet::Eight => 1,
            Alphabet::Ucs2 => 2,
        };
        let raw = match class {
            Some(c) => 0x10 | a << 2 | (c & 3),
            None => a << 2,
        };
        Dcs::decode(raw)
    }

    /// Decodes any octet; reserved groups are read as the GSM 7-bit default alphabet,
    /// as §4 of TS 23.038 instructs.
    pub fn decode(raw: u8) -> Dcs {
        let mut d = Dcs {
            alphabet: Alphabet::Gsm7,
            class: None,
            compressed: false,
            auto_delete: false,
            waiting: None,
            raw,
        };
        match raw >> 4 {
            0x0..=0x7 => {
                d.auto_delete = raw & 0x40 != 0;
                d.compressed = raw & 0x20 != 0;
                if raw & 0x10 != 0 {
                    d.class = Some(raw & 3);
                }
                d.alphabet = match (raw >> 2) & 3 {
                    1 => Alphabet::Eight,
                    2 => Alphabet::Ucs2,
                    _ => Alphabet::Gsm7,
                };
            }
            0xC..=0xE => {
                if raw >> 4 == 0xE {
                    d.alphabet = Alphabet::Ucs2;
                }
                d.waiting = Some(MessageWaiting {
                    active: raw & 0x08 != 0,
                    kind: match raw & 3 {
                        0 => WaitingKind::Voicemail,
                        1 => WaitingKind::Fax,
                        2 => WaitingKind::Email,
                        _ => WaitingKind::Other,
                    },
                    discard: raw >> 4 == 0xC,
                });
            }
            0xF => {
                d.class = Some(raw & 3);
                if raw & 0x04 != 0 {
                    d.alphabet = Alphabet::Eight;
                }
            }
            _ => {}
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups() {
        assert_eq!(Dcs::decode(0x00).alphabet, Alphabet::Gsm7);
        assert_eq!(Dcs::decode(0x08).alphabet, Alphabet::Ucs2);
        assert_eq!(Dcs::decode(0x04).alphabet, Alphabet::Eight);
        assert_eq!(Dcs::decode(0x10).class, Some(0));
        assert_eq!(Dcs::decode(0x18).class, Some(0));
        assert_eq!(Dcs::decode(0x18).alphabet, Alphabet::Ucs2);
        assert!(Dcs::decode(0x20).compressed);
        assert!(Dcs::decode(0x48).auto_delete);
        assert_eq!(Dcs::decode(0xF1).class, Some(1));
        assert_eq!(Dcs::decode(0xF6).alphabet, Alphabet::Eight);
        assert_eq!(Dcs::decode(0x8C).alphabet, Alphabet::Gsm7);
        let w = Dcs::decode(0xC8).waiting.unwrap();
        assert!(w.active && w.discard && w.kind == WaitingKind::Voicemail);
        let w = Dcs::decode(0xE2);
        assert_eq!(w.alphabet, Alphabet::Ucs2);
        assert_eq!(w.waiting.unwrap().kind, WaitingKind::Email);
        assert!(!w.waiting.unwrap().active);
        assert_eq!(Dcs::new(Alphabet::Ucs2, Some(0)).raw, 0x18);
        assert_eq!(Dcs::new(Alphabet::Gsm7, None).raw, 0x00);
    }
}
