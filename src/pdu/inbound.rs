//! What a received PDU means to the gateway, decided without IO: a status report to
//! match against a sent part, one part of a message (with what reassembly keys on), or
//! something undecodable to keep raw; and how the stored parts of a message become one
//! text. The store persists what this module decides and decides nothing itself.

use super::{Pdu, Tpdu, UserData, decode_hex, join_text};

/// A received PDU, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An SMS-STATUS-REPORT: file it and match it to the part it answers.
    Report(ReportFacts),
    /// An SMS-DELIVER: a whole message or one part of a concatenated one.
    Part(PartFacts),
    /// Did not decode (the reason): kept raw in the inbox rather than lost.
    Undecodable(String),
    /// An SMS-SUBMIT: not something a network delivers to a modem; nothing to store.
    Ignored,
}

/// What a status report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFacts {
    /// TP-MR of the part it answers.
    pub mr: u8,
    /// TP-RA, the recipient the part went to.
    pub recipient: String,
    /// TP-ST.
    pub status_code: u8,
    /// The category of TP-ST: `delivered`, `pending` or `failed`.
    pub category: &'static str,
    /// TP-SCTS, RFC 3339.
    pub scts: String,
    /// TP-DT, RFC 3339.
    pub discharge: String,
}

/// What one SMS-DELIVER part says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartFacts {
    /// TP-OA.
    pub sender: String,
    /// TP-SCTS, RFC 3339.
    pub sent_at: String,
    /// Where the part belongs, when it is one of several.
    pub concat: Option<PartOf>,
}

/// A part's place in a concatenated message (8- or 16-bit reference alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartOf {
    /// The sender's reference: with the sender and the SIM, it keys the set.
    pub reference: u16,
    /// Parts in the set (2 or more).
    pub total: u8,
    /// This part's 1-based number.
    pub seq: u8,
}

impl PartOf {
    /// Whether `have` stored parts make the set whole.
    pub fn is_complete(self, have: u32) -> bool {
        have >= u32::from(self.total)
    }
}

/// Classifies a PDU as the driver decoded it (the error is the decoder's message).
pub fn classify(decoded: &Result<Pdu, String>) -> Received {
    let pdu = match decoded {
        Ok(p) => p,
        Err(why) => return Received::Undecodable(why.clone()),
    };
    match &pdu.tpdu {
        Tpdu::StatusReport(sr) => Received::Report(ReportFacts {
            mr: sr.message_ref,
            recipient: sr.recipient.to_string(),
            status_code: sr.status.0,
            category: sr.status.category().name(),
            scts: sr.timestamp.to_string(),
            discharge: sr.discharge_time.to_string(),
        }),
        Tpdu::Deliver(d) => Received::Part(PartFacts {
            sender: d.originator.to_string(),
            sent_at: d.timestamp.to_string(),
            // A "set" of one part is no set: the part is a message on its own rather than
            // waiting for parts that never come (`Udh::concat` already refuses part 0 or
            // part 3 of 2).
            concat: d
                .user_data
                .header
                .as_ref()
                .and_then(|h| h.concat())
                .filter(|c| c.total > 1)
                .map(|c| PartOf {
                    reference: c.reference,
                    total: c.total,
                    seq: c.seq,
                }),
        }),
        Tpdu::Submit(_) => Received::Ignored,
    }
}

/// The message that stored parts make, as far as they go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Joined {
    /// The text of the parts in order, GSM-7 escapes and surrogate pairs that straddle
    /// a part boundary joined first. `None` when there is no text to give: a part that
    /// is not a decodable SMS-DELIVER, or 8-bit data (the raw PDUs are kept). An empty
    /// text stays `Some("")`.
    pub text: Option<String>,
    /// The first part's TP-SCTS, RFC 3339.
    pub sent_at: Option<String>,
}

/// Joins hex PDUs (SMSC field included), given in part order.
pub fn join(pdus: &[String]) -> Joined {
    let decoded: Vec<Option<(UserData, String)>> = pdus
        .iter()
        .map(|h| match decode_hex(h, true).ok()?.tpdu {
            Tpdu::Deliver(d) => Some((d.user_data, d.timestamp.to_string())),
            _ => None,
        })
        .collect();
    let sent_at = decoded.first().cloned().flatten().map(|(_, t)| t);
    let parts: Option<Vec<UserData>> = decoded.into_iter().map(|p| p.map(|p| p.0)).collect();
    let text = parts.filter(|p| !p.is_empty()).and_then(|p| join_text(&p));
    Joined { text, sent_at }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// "How are you?" from +31641600986 (the 23.040-style example used across the tests).
    const HELLO: &str =
        "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07";

    fn decoded(hex: &str) -> Result<Pdu, String> {
        decode_hex(hex, true).map_err(|e| e.to_string())
    }

    #[test]
    fn a_single_deliver_is_a_part_of_no_set() {
        let Received::Part(p) = classify(&decoded(HELLO)) else {
            panic!("not a part")
        };
        assert_eq!(p.sender, "+31641600986");
        assert_eq!(p.concat, None);
        assert_eq!(join(&[HELLO.into()]).text.as_deref(), Some("How are you?"));
        assert_eq!(join(&[HELLO.into()]).sent_at, Some(p.sent_at));
    }

    #[test]
    fn undecodable_input_is_kept_not_dropped() {
        assert!(matches!(
            classify(&decoded("00FF")),
            Received::Undecodable(_)
        ));
        assert!(matches!(classify(&Err("x".into())), Received::Undecodable(w) if w == "x"));
        assert_eq!(join(&["not hex".into()]), Joined::default());
        assert_eq!(join(&[]), Joined::default());
    }

    #[test]
    fn completeness_counts_parts_against_the_total() {
        let of = PartOf {
            reference: 7,
            total: 3,
            seq: 1,
        };
        assert!(!of.is_complete(2));
        assert!(of.is_complete(3));
    }
}
