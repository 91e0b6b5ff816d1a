//! TP-UDL and TP-UD: the header and the payload in its alphabet. The payload keeps its
//! raw units (septets, UTF-16 code units, octets) so parts of a concatenated message
//! can be joined *before* decoding: senders do split escape sequences and surrogate
//! pairs across parts, and decoding each part alone would garble them.

use super::dcs::Alphabet;
use super::error::{PduError, Result};
use super::gsm7::{self, Gsm7Tables};
use super::reader::Reader;
use super::udh::Udh;

/// The payload in its raw units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Unpacked septets (escapes included).
    Gsm7(Vec<u8>),
    /// UTF-16 code units, possibly with a surrogate half at either end.
    Ucs2(Vec<u16>),
    /// 8-bit data octets, which have no text.
    Eight(Vec<u8>),
}

/// User data: an optional header and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData {
    /// The UDH, present when TP-UDHI is set.
    pub header: Option<Udh>,
    /// What follows the header (fill bits removed).
    pub payload: Payload,
}

/// Most septets one TPDU carries.
pub const MAX_SEPTETS: usize = 160;
/// Most octets one TPDU carries.
pub const MAX_OCTETS: usize = 140;

impl UserData {
    /// The alphabet of the payload (which the DCS chose when it was decoded).
    pub fn alphabet(&self) -> Alphabet {
        match self.payload {
            Payload::Gsm7(_) => Alphabet::Gsm7,
            Payload::Ucs2(_) => Alphabet::Ucs2,
            Payload::Eight(_) => Alphabet::Eight,
        }
    }

    /// The GSM 7-bit tables this part's header selects.
    pub fn tables(&self) -> Gsm7Tables {
        self.header.as_ref().map(Udh::tables).unwrap_or_default()
    }

    /// The text, or `None` for 8-bit data.
    pub fn text(&self) -> Option<String> {
        join_text(std::slice::from_ref(self))
    }

    fn header_len(&self) -> usize {
        self.header.as_ref().map_or(0, Udh::encoded_len)
    }

    /// Appends TP-UDL and TP-UD.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let hl = self.header_len();
        let udl_at = out.len();
        out.push(0);
        let start = out.len();
        let udl = match &self.payload {
            Payload::Gsm7(septets) => {
                let udl = gsm7::pack_into(hl, septets, out);
                if udl > MAX_SEPTETS {
                    return Err(PduError::TooLong {
                        len: udl,
                        max: MAX_SEPTETS,
                        unit: "septets",
                    });
                }
                udl
            }
            Payload::Ucs2(units) => {
                out.resize(start + hl, 0);
                out.extend(units.iter().flat_map(|u| u.to_be_bytes()));
                out.len() - start
            }
            Payload::Eight(bytes) => {
                out.resize(start + hl, 0);
                out.extend_from_slice(bytes);
                out.len() - start
            }
        };
        if out.len() - start > MAX_OCTETS {
            return Err(PduError::TooLong {
                len: out.len() - start,
                max: MAX_OCTETS,
                unit: "octets",
            });
        }
        if let Some(h) = &self.header {
            h.encode(&mut out[start..start + hl]);
        }
        out[udl_at] = udl as u8;
        Ok(())
    }

    /// Reads TP-UDL and TP-UD to the end of the TPDU's user data.
    pub(crate) fn decode(r: &mut Reader<'_>, alphabet: Alphabet, udhi: bool) -> Result<UserData> {
        let udl_offset = r.offset();
        let udl = usize::from(r.u8("user data length")?);
        let octets = match alphabet {
            Alphabet::Gsm7 => (udl * 7).div_ceil(8),
            _ => udl,
        };
        let ud_offset = r.offset();
        if r.remaining() < octets {
            return Err(PduError::Invalid {
                offset: udl_offset,
                field: "user data length",
                reason: format!(
                    "{udl} {} need {octets} octets but {} remain",
                    if alphabet == Alphabet::Gsm7 {
                        "septets"
                    } else {
                        "octets"
                    },
                    r.remaining()
                ),
            });
        }
        let ud = r.take(octets, "user data")?;
        let (header, hl) = if udhi && !ud.is_empty() {
            let (h, len) = Udh::decode(ud, ud_offset)?;
            (Some(h), len)
        } else if udhi {
            return Err(PduError::Invalid {
                offset: udl_offset,
                field: "user data",
                reason: "header indicated but user data is empty".into(),
            });
        } else {
            (None, 0)
        };
        let payload = match alphabet {
            Alphabet::Gsm7 => {
                let skip = (hl * 8).div_ceil(7);
                if skip > udl {
                    return Err(PduError::Invalid {
                        offset: udl_offset,
                        field: "user data length",
                        reason: format!("{udl} septets cannot hold a {hl}-octet header"),
                    });
                }
                Payload::Gsm7(gsm7::unpack(ud, skip, udl))
            }
            Alphabet::Ucs2 => {
                let body = &ud[hl..];
                if !body.len().is_multiple_of(2) {
                    return Err(PduError::Invalid {
                        offset: ud_offset + ud.len() - 1,
                        field: "user data",
                        reason: "UCS-2 text has an odd number of octets".into(),
                    });
                }
                Payload::Ucs2(
                    body.chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect(),
                )
            }
            Alphabet::Eight => Payload::Eight(ud[hl..].to_vec()),
        };
        Ok(UserData { header, payload })
    }
}

/// Joins the parts of a concatenated message (in order) and decodes the text once, so
/// an escape or a surrogate pair split by the sender comes out whole. Mixed alphabets
/// are decoded part by part. `None` if any part is 8-bit data.
pub fn join_text(parts: &[UserData]) -> Option<String> {
    let mut text = String::new();
    let mut i = 0;
    while i < parts.len() {
        // Gather the run of parts that share an alphabet and tables.
        let first = &parts[i];
        let mut j = i + 1;
        while j < parts.len()
            && parts[j].alphabet() == first.alphabet()
            && parts[j].tables() == first.tables()
        {
            j += 1;
        }
        match &first.payload {
            Payload::Gsm7(septets) if j == i + 1 => {
                text.reserve(septets.len());
                first.tables().decode(septets, &mut text);
            }
            Payload::Gsm7(_) => {
                let septets: Vec<u8> = parts[i..j]
                    .iter()
                    .flat_map(|p| match &p.payload {
                        Payload::Gsm7(s) => s.as_slice(),
                        _ => &[],
                    })
                    .copied()
                    .collect();
                first.tables().decode(&septets, &mut text);
            }
            Payload::Ucs2(_) => {
                let units = parts[i..j].iter().flat_map(|p| match &p.payload {
                    Payload::Ucs2(u) => u.as_slice(),
                    _ => &[],
                });
                text.extend(
                    char::decode_utf16(units.copied())
                        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)),
                );
            }
            Payload::Eight(_) => return None,
        }
        i = j;
    }
    Some(text)
}
