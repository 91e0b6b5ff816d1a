//! From a text to the SMS-SUBMIT PDUs of all its parts: plan, then one TPDU per part
//! with the concatenation and shift-table headers the plan asks for.

use super::address::Address;
use super::dcs::{Alphabet, Dcs};
use super::error::{PduError, Result};
use super::plan::{Plan, PlanOptions, TextEncoding, plan};
use super::time::Validity;
use super::tpdu::{EncodedPdu, Pdu, Submit, Tpdu};
use super::udh::{Concat, Udh};
use super::userdata::{Payload, UserData};

/// How to send a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitOptions {
    /// TP-DA, the recipient.
    pub destination: Address,
    /// `None` uses the SMSC stored on the SIM (the PDU starts with `00`).
    pub smsc: Option<Address>,
    /// TP-SRR: ask for a status report on every part.
    pub status_report: bool,
    /// Class 0: shown at once, not stored.
    pub flash: bool,
    /// TP-VP; `None` leaves it out and the SMSC applies its default.
    pub validity: Option<Validity>,
    /// TP-RD: the SMSC rejects a part with the same TP-MR and TP-DA as one it still
    /// holds.
    pub reject_duplicates: bool,
    /// The concatenation reference shared by all parts (only the low 8 bits are sent
    /// unless `plan.concat16`).
    pub concat_ref: u16,
    /// How the text is split and which alphabets it may use.
    pub plan: PlanOptions,
}

impl SubmitOptions {
    /// Plain options for `destination`: SIM's SMSC, no report, no validity, reference 0.
    pub fn new(destination: Address) -> Self {
        SubmitOptions {
            destination,
            smsc: None,
            status_report: false,
            flash: false,
            validity: None,
            reject_duplicates: false,
            concat_ref: 0,
            plan: PlanOptions::default(),
        }
    }
}

/// Most parts a concatenation header can number.
pub const MAX_PARTS: usize = 255;

/// Plans and encodes `text`.
pub fn encode_submit(text: &str, opts: &SubmitOptions) -> Result<(Plan, Vec<EncodedPdu>)> {
    let p = plan(text, &opts.plan);
    let pdus = encode_plan(text, &p, opts)?;
    Ok((p, pdus))
}

/// Encodes a plan made earlier for `text` (the API plans once to answer the caller,
/// then encodes at send time).
pub fn encode_plan(text: &str, plan: &Plan, opts: &SubmitOptions) -> Result<Vec<EncodedPdu>> {
    let total = plan.parts.len();
    if total > MAX_PARTS {
        return Err(PduError::TooLong {
            len: total,
            max: MAX_PARTS,
            unit: "parts",
        });
    }
    let class = opts.flash.then_some(0);
    let (alphabet, tables) = match plan.encoding {
        TextEncoding::Gsm7(t) => (Alphabet::Gsm7, t),
        TextEncoding::Ucs2 => (Alphabet::Ucs2, Default::default()),
    };
    let dcs = Dcs::new(alphabet, class);
    let mut out = Vec::with_capacity(total);
    for (i, part) in plan.parts.iter().enumerate() {
        let chunk = text.get(part.range.clone()).ok_or(PduError::Address {
            value: String::new(),
            reason: "plan does not belong to this text",
        })?;
        let concat = (total > 1).then_some(Concat {
            reference: if plan.concat16 {
                opts.concat_ref
            } else {
                opts.concat_ref & 0xFF
            },
            total: total as u8,
            seq: (i + 1) as u8,
            wide: plan.concat16,
        });
        let header = Udh::for_part(concat, tables);
        let payload = match plan.encoding {
            TextEncoding::Gsm7(t) => {
                let mut septets = Vec::with_capacity(part.units);
                t.encode_str(chunk, &mut septets)
                    .map_err(|ch| PduError::Unencodable { ch })?;
                Payload::Gsm7(septets)
            }
            TextEncoding::Ucs2 => Payload::Ucs2(chunk.encode_utf16().collect()),
        };
        let submit = Submit {
            reject_duplicates: opts.reject_duplicates,
            validity: opts.validity,
            status_report_request: opts.status_report,
            reply_path: false,
            message_ref: 0,
            destination: opts.destination.clone(),
            pid: 0,
            dcs,
            user_data: UserData {
                header: (!header.elements.is_empty()).then_some(header),
                payload,
            },
        };
        out.push(
            Pdu {
                smsc: opts.smsc.clone(),
                tpdu: Tpdu::Submit(submit),
            }
            .encode()?,
        );
    }
    Ok(out)
}
