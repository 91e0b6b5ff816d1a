//! The user data header (TS 23.040 §9.2.3.24): concatenation with 8- and 16-bit
//! references, application ports, the national language shift tables, and any other
//! element kept as it came.

use super::error::{PduError, Result};
use super::gsm7::{Gsm7Tables, Language};

/// One information element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// IEI 0x00: concatenation with an 8-bit reference.
    Concat8 {
        /// Shared by every part of one message from one sender.
        reference: u8,
        /// Number of parts.
        total: u8,
        /// This part's number, from 1.
        seq: u8,
    },
    /// IEI 0x08: concatenation with a 16-bit reference.
    Concat16 {
        /// Shared by every part of one message from one sender.
        reference: u16,
        /// Number of parts.
        total: u8,
        /// This part's number, from 1.
        seq: u8,
    },
    /// IEI 0x04: application port addressing, 8-bit ports.
    Port8 {
        /// Destination port.
        dst: u8,
        /// Originator port.
        src: u8,
    },
    /// IEI 0x05: application port addressing, 16-bit ports (e.g. 2948 for WAP push).
    Port16 {
        /// Destination port.
        dst: u16,
        /// Originator port.
        src: u16,
    },
    /// IEI 0x24, the language code of the single shift table.
    SingleShift(u8),
    /// IEI 0x25, the language code of the locking shift table.
    LockingShift(u8),
    /// Anything else, kept so it can be shown and re-encoded.
    Other {
        /// The information element identifier.
        iei: u8,
        /// Its data, without IEI and length.
        data: Vec<u8>,
    },
}

impl Element {
    /// The information element identifier this element is written with.
    pub fn iei(&self) -> u8 {
        match self {
            Element::Concat8 { .. } => 0x00,
            Element::Concat16 { .. } => 0x08,
            Element::Port8 { .. } => 0x04,
            Element::Port16 { .. } => 0x05,
            Element::SingleShift(_) => 0x24,
            Element::LockingShift(_) => 0x25,
            Element::Other { iei, .. } => *iei,
        }
    }

    /// The element's data octets (without IEI and length).
    pub fn data(&self) -> Vec<u8> {
        match self {
            Element::Concat8 {
                reference,
                total,
                seq,
            } => vec![*reference, *total, *seq],
            Element::Concat16 {
                reference,
                total,
                seq,
            } => {
                let r = reference.to_be_bytes();
                vec![r[0], r[1], *total, *seq]
            }
            Element::Port8 { dst, src } => vec![*dst, *src],
            Element::Port16 { dst, src } => {
                let (d, s) = (dst.to_be_bytes(), src.to_be_bytes());
                vec![d[0], d[1], s[0], s[1]]
            }
            Element::SingleShift(l) | Element::LockingShift(l) => vec![*l],
            Element::Other { data, .. } => data.clone(),
        }
    }

    fn encoded_len(&self) -> usize {
        2 + match self {
            Element::Concat8 { .. } => 3,
            Element::Concat16 { .. } => 4,
            Element::Port8 { .. } => 2,
            Element::Port16 { .. } => 4,
            Element::SingleShift(_) | Element::LockingShift(_) => 1,
            Element::Other { data, .. } => data.len(),
        }
    }

    /// Reads a known element from its data; a known IEI with the wrong length is kept
    /// as `Other` (TS 23.040 tells receivers to ignore such elements, not the message).
    fn parse(iei: u8, data: &[u8]) -> Element {
        match (iei, data) {
            (0x00, &[reference, total, seq]) => Element::Concat8 {
                reference,
                total,
                seq,
            },
            (0x08, &[r0, r1, total, seq]) => Element::Concat16 {
                reference: u16::from_be_bytes([r0, r1]),
                total,
                seq,
            },
            (0x04, &[dst, src]) => Element::Port8 { dst, src },
            (0x05, &[d0, d1, s0, s1]) => Element::Port16 {
                dst: u16::from_be_bytes([d0, d1]),
                src: u16::from_be_bytes([s0, s1]),
            },
            (0x24, &[l]) => Element::SingleShift(l),
            (0x25, &[l]) => Element::LockingShift(l),
            _ => Element::Other {
                iei,
                data: data.to_vec(),
            },
        }
    }
}

/// Where one part sits in a concatenated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    /// Shared by every part of one message; only the low 8 bits are sent unless `wide`.
    pub reference: u16,
    /// Number of parts.
    pub total: u8,
    /// This part's number, from 1.
    pub seq: u8,
    /// Whether the reference was 16-bit (IEI 0x08).
    pub wide: bool,
}

/// A whole header: its elements in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Udh {
    /// In the order they appear (or will be written).
    pub elements: Vec<Element>,
}

impl Udh {
    /// Octets the header takes in the user data, the UDHL octet included.
    pub fn encoded_len(&self) -> usize {
        1 + self
            .elements
            .iter()
            .map(Element::encoded_len)
            .sum::<usize>()
    }

    /// Writes UDHL and the elements into the first [`encoded_len`](Self::encoded_len)
    /// octets of `out`.
    pub fn encode(&self, out: &mut [u8]) {
        let mut i = 1;
        for e in &self.elements {
            let data = e.data();
            out[i] = e.iei();
            out[i + 1] = data.len() as u8;
            out[i + 2..i + 2 + data.len()].copy_from_slice(&data);
            i += 2 + data.len();
        }
        out[0] = (i - 1) as u8;
    }

    /// Decodes a header from the start of the user data; returns it and its length
    /// (UDHL included). `offset` is the UDHL octet's position, for errors.
    pub fn decode(ud: &[u8], offset: usize) -> Result<(Udh, usize)> {
        let Some(&udhl) = ud.first() else {
            return Err(PduError::Truncated {
                offset,
                field: "user data header length",
                needed: 1,
            });
        };
        let end = 1 + usize::from(udhl);
        if ud.len() < end {
            return Err(PduError::Invalid {
                offset,
                field: "user data header length",
                reason: format!(
                    "header of {udhl} octets but only {} octets of user data",
                    ud.len() - 1
                ),
            });
        }
        let mut elements = Vec::new();
        let mut i = 1;
        while i < end {
            if i + 2 > end {
                return Err(PduError::Invalid {
                    offset: offset + i,
                    field: "user data header",
                    reason: "information element cut off by the header length".into(),
                });
            }
            let (iei, len) = (ud[i], usize::from(ud[i + 1]));
            if i + 2 + len > end {
                return Err(PduError::Invalid {
                    offset: offset + i + 1,
                    field: "user data header",
                    reason: format!("element 0x{iei:02X} of {len} octets overruns the header"),
                });
            }
            elements.push(Element::parse(iei, &ud[i + 2..i + 2 + len]));
            i += 2 + len;
        }
        Ok((Udh { elements }, end))
    }

    /// The concatenation element, if it is a valid one (total ≥ 1, 1 ≤ seq ≤ total);
    /// invalid ones are ignored as TS 23.040 §9.2.3.24.1 says.
    pub fn concat(&self) -> Option<Concat> {
        self.elements.iter().find_map(|e| {
            let (reference, total, seq, wide) = match *e {
                Element::Concat8 {
                    reference,
                    total,
                    seq,
                } => (u16::from(reference), total, seq, false),
                Element::Concat16 {
                    reference,
                    total,
                    seq,
                } => (reference, total, seq, true),
                _ => return None,
            };
            (total >= 1 && seq >= 1 && seq <= total).then_some(Concat {
                reference,
                total,
                seq,
                wide,
            })
        })
    }

    /// The GSM 7-bit tables the header selects; unknown language codes fall back to the
    /// default table.
    pub fn tables(&self) -> Gsm7Tables {
        let mut t = Gsm7Tables::DEFAULT;
        for e in &self.elements {
            match *e {
                Element::SingleShift(l) => {
                    t.single = Language::from_code(l).unwrap_or_default();
                }
                Element::LockingShift(l) => {
                    t.locking = Language::from_code(l)
                        .filter(|l| l.has_locking_table())
                        .unwrap_or_default();
                }
                _ => {}
            }
        }
        t
    }

    /// Application port addressing (destination, source), if present.
    pub fn ports(&self) -> Option<(u16, u16)> {
        self.elements.iter().find_map(|e| match *e {
            Element::Port8 { dst, src } => Some((u16::from(dst), u16::from(src))),
            Element::Port16 { dst, src } => Some((dst, src)),
            _ => None,
        })
    }

    /// A header for one part of a message in the given tables.
    pub fn for_part(concat: Option<Concat>, tables: Gsm7Tables) -> Udh {
        let mut elements = Vec::new();
        if let Some(c) = concat {
            elements.push(if c.wide {
                Element::Concat16 {
                    reference: c.reference,
                    total: c.total,
                    seq: c.seq,
                }
            } else {
                Element::Concat8 {
                    reference: c.reference as u8,
                    total: c.total,
                    seq: c.seq,
                }
            });
        }
        if tables.locking != Language::Default {
            elements.push(Element::LockingShift(tables.locking.code()));
        }
        if tables.single != Language::Default {
            elements.push(Element::SingleShift(tables.single.code()));
        }
        Udh { elements }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_kinds() {
        let h = Udh {
            elements: vec![
                Element::Concat8 {
                    reference: 0xAB,
                    total: 3,
                    seq: 2,
                },
                Element::Concat16 {
                    reference: 0xBEEF,
                    total: 2,
                    seq: 1,
                },
                Element::Port16 {
                    dst: 2948,
                    src: 9200,
                },
                Element::Port8 { dst: 1, src: 2 },
                Element::SingleShift(1),
                Element::LockingShift(3),
                Element::Other {
                    iei: 0x70,
                    data: vec![1, 2, 3],
                },
            ],
        };
        let mut buf = vec![0; h.encoded_len()];
        h.encode(&mut buf);
        let (back, len) = Udh::decode(&buf, 0).unwrap();
        assert_eq!(len, buf.len());
        assert_eq!(back, h);
        assert_eq!(back.concat().unwrap().reference, 0xAB);
        assert_eq!(back.ports(), Some((2948, 9200)));
        assert_eq!(back.tables().single, Language::Turkish);
        assert_eq!(back.tables().locking, Language::Portuguese);
    }

    #[test]
    fn invalid_concat_is_ignored_and_overrun_is_an_error() {
        let (h, _) = Udh::decode(&[5, 0, 3, 9, 2, 4], 0).unwrap();
        assert_eq!(h.concat(), None);
        let e = Udh::decode(&[5, 0, 4, 9, 4, 2], 30).unwrap_err();
        assert!(matches!(e, PduError::Invalid { offset: 32, .. }), "{e}");
        assert!(Udh::decode(&[9, 0, 3], 0).is_err());
    }
}
