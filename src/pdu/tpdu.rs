//! The three TPDUs a gateway meets (TS 23.040 §9.2.2): SMS-SUBMIT, SMS-DELIVER and
//! SMS-STATUS-REPORT, each encoded and decoded, with the optional SMSC field in front
//! as `+CMGR`/`+CMT` show it and `+CMGS` takes it.

use super::address::Address;
use super::dcs::{Alphabet, Dcs};
use super::error::{PduError, Result};
use super::reader::Reader;
use super::status::Status;
use super::time::{Timestamp, Validity};
use super::userdata::UserData;

/// SMS-SUBMIT: a message from the modem to the SMSC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// TP-RD: the SMSC rejects a duplicate of a message still waiting (same MR and DA).
    pub reject_duplicates: bool,
    /// TP-VP; `None` leaves it out (TP-VPF 00) and the SMSC applies its default.
    pub validity: Option<Validity>,
    /// TP-SRR.
    pub status_report_request: bool,
    /// TP-RP.
    pub reply_path: bool,
    /// TP-MR; modems overwrite it with their own counter.
    pub message_ref: u8,
    /// TP-DA, the recipient.
    pub destination: Address,
    /// TP-PID; 0 for a plain text message.
    pub pid: u8,
    /// TP-DCS.
    pub dcs: Dcs,
    /// TP-UDL and TP-UD: the header and the text.
    pub user_data: UserData,
}

/// SMS-DELIVER: a message from the SMSC to the modem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    /// TP-MMS inverted: true when the SMSC has more messages waiting.
    pub more_messages: bool,
    /// TP-LP.
    pub loop_prevention: bool,
    /// TP-SRI: the sender asked for a status report.
    pub status_report_indication: bool,
    /// TP-RP: a reply may go through the sender's SMSC.
    pub reply_path: bool,
    /// TP-OA, the sender: a number or an alphanumeric name.
    pub originator: Address,
    /// TP-PID; 0 for a plain text message.
    pub pid: u8,
    /// TP-DCS.
    pub dcs: Dcs,
    /// TP-SCTS: when the SMSC received the message, in the SMSC's local time.
    pub timestamp: Timestamp,
    /// TP-UDL and TP-UD: the header and the text.
    pub user_data: UserData,
}

/// SMS-STATUS-REPORT: the SMSC's word on a message sent earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// TP-MMS inverted: true when the SMSC has more messages waiting.
    pub more_messages: bool,
    /// TP-LP.
    pub loop_prevention: bool,
    /// TP-SRQ: a report on an SMS-COMMAND rather than an SMS-SUBMIT.
    pub qualifier_command: bool,
    /// TP-MR of the message reported on: what `+CMGS` answered.
    pub message_ref: u8,
    /// TP-RA: the original message's recipient.
    pub recipient: Address,
    /// TP-SCTS: when the SMSC received the original message.
    pub timestamp: Timestamp,
    /// TP-DT: when the status was reached.
    pub discharge_time: Timestamp,
    /// TP-ST: delivered, still trying, or failed and why.
    pub status: Status,
    /// The optional trailer announced by TP-PI.
    pub pid: Option<u8>,
    /// TP-DCS of the trailer; `None` unless TP-PI announces it.
    pub dcs: Option<Dcs>,
    /// TP-UD of the trailer; `None` unless TP-PI announces it.
    pub user_data: Option<UserData>,
}

/// One decoded TPDU, by its TP-MTI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tpdu {
    /// TP-MTI 00 towards the modem: an incoming message.
    Deliver(Deliver),
    /// TP-MTI 01 from the modem: an outgoing message (as `+CMGS` takes and `+CMGR`
    /// shows a stored one).
    Submit(Submit),
    /// TP-MTI 10 towards the modem: a delivery report.
    StatusReport(StatusReport),
}

/// A TPDU with the SMSC field that precedes it on the AT interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// The SMSC field; `None` when it was `00` (the SIM's SMSC) or not present.
    pub smsc: Option<Address>,
    /// The TPDU itself.
    pub tpdu: Tpdu,
}

/// An encoded PDU ready for `AT+CMGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPdu {
    /// SMSC field (`00` when none) followed by the TPDU.
    pub bytes: Vec<u8>,
    /// The TPDU's length: what `AT+CMGS=<n>` wants (the SMSC field not counted).
    pub tpdu_len: usize,
}

impl EncodedPdu {
    /// Upper-case hex of `bytes`: the line to type after the `>` prompt.
    pub fn hex(&self) -> String {
        super::hex::encode(&self.bytes)
    }
}

/// Decodes a PDU; `with_smsc` says whether it starts with the SMSC field (as `+CMGR`
/// and `+CMT` in PDU mode print it).
pub fn decode(bytes: &[u8], with_smsc: bool) -> Result<Pdu> {
    let mut r = Reader::new(bytes, 0);
    let smsc = if with_smsc {
        Address::decode_smsc(&mut r)?
    } else {
        None
    };
    let first_offset = r.offset();
    let first = r.u8("first octet")?;
    let tpdu = match first & 0b11 {
        0b00 => Tpdu::Deliver(decode_deliver(first, &mut r)?),
        0b01 => Tpdu::Submit(decode_submit(first, &mut r)?),
        0b10 => Tpdu::StatusReport(decode_status_report(first, &mut r)?),
        _ => {
            return Err(PduError::Invalid {
                offset: first_offset,
                field: "message type indicator",
                reason: "0b11 is reserved".into(),
            });
        }
    };
    r.finish()?;
    Ok(Pdu { smsc, tpdu })
}

/// Decodes a hex PDU.
pub fn decode_hex(hex: &str, with_smsc: bool) -> Result<Pdu> {
    decode(&super::hex::decode(hex)?, with_smsc)
}

fn read_dcs(r: &mut Reader<'_>) -> Result<Dcs> {
    let offset = r.offset();
    let dcs = Dcs::decode(r.u8("data coding scheme")?);
    if dcs.compressed {
        return Err(PduError::Compressed {
            offset,
            dcs: dcs.raw,
        });
    }
    Ok(dcs)
}

fn read_timestamp(r: &mut Reader<'_>, field: &'static str) -> Result<Timestamp> {
    let offset = r.offset();
    Timestamp::decode(r.array7(field)?, offset)
}

fn decode_submit(first: u8, r: &mut Reader<'_>) -> Result<Submit> {
    let message_ref = r.u8("message reference")?;
    let destination = Address::decode_tp(r, "destination address")?;
    let pid = r.u8("protocol identifier")?;
    let dcs = read_dcs(r)?;
    let validity = match (first >> 3) & 0b11 {
        0b00 => None,
        0b10 => Some(Validity::Relative(r.u8("validity period")?)),
        0b11 => Some(Validity::Absolute(read_timestamp(r, "validity period")?)),
        _ => Some(Validity::Enhanced(r.array7("validity period")?)),
    };
    let user_data = UserData::decode(r, dcs.alphabet, first & 0x40 != 0)?;
    Ok(Submit {
        reject_duplicates: first & 0x04 != 0,
        validity,
        status_report_request: first & 0x20 != 0,
        reply_path: first & 0x80 != 0,
        message_ref,
        destination,
        pid,
        dcs,
        user_data,
    })
}

fn decode_deliver(first: u8, r: &mut Reader<'_>) -> Result<Deliver> {
    let originator = Address::decode_tp(r, "originating address")?;
    let pid = r.u8("protocol identifier")?;
    let dcs = read_dcs(r)?;
    let timestamp = read_timestamp(r, "service centre timestamp")?;
    let user_data = UserData::decode(r, dcs.alphabet, first & 0x40 != 0)?;
    Ok(Deliver {
        more_messages: first & 0x04 == 0,
        loop_prevention: first & 0x08 != 0,
        status_report_indication: first & 0x20 != 0,
        reply_path: first & 0x80 != 0,
        originator,
        pid,
        dcs,
        timestamp,
        user_data,
    })
}

fn decode_status_report(first: u8, r: &mut Reader<'_>) -> Result<StatusReport> {
    let message_ref = r.u8("message reference")?;
    let recipient = Address::decode_tp(r, "recipient address")?;
    let timestamp = read_timestamp(r, "service centre timestamp")?;
    let discharge_time = read_timestamp(r, "discharge time")?;
    let status = Status(r.u8("status")?);
    let mut report = StatusReport {
        more_messages: first & 0x04 == 0,
        loop_prevention: first & 0x08 != 0,
        qualifier_command: first & 0x20 != 0,
        message_ref,
        recipient,
        timestamp,
        discharge_time,
        status,
        pid: None,
        dcs: None,
        user_data: None,
    };
    if r.remaining() == 0 {
        return Ok(report);
    }
    // TP-PI: possibly several octets (bit 7 extends); bits 0–2 announce PID, DCS, UDL.
    let mut pi = r.u8("parameter indicator")?;
    let flags = pi;
    while pi & 0x80 != 0 && r.remaining() > 0 {
        pi = r.u8("parameter indicator")?;
    }
    if flags & 0x01 != 0 {
        report.pid = Some(r.u8("protocol identifier")?);
    }
    if flags & 0x02 != 0 {
        report.dcs = Some(read_dcs(r)?);
    }
    if flags & 0x04 != 0 {
        let alphabet = report.dcs.map_or(Alphabet::Gsm7, |d| d.alphabet);
        report.user_data = Some(UserData::decode(r, alphabet, first & 0x40 != 0)?);
    }
    Ok(report)
}

impl Pdu {
    /// Encodes the SMSC field (`00` when none) and the TPDU.
    pub fn encode(&self) -> Result<EncodedPdu> {
        let mut bytes = Vec::with_capacity(176);
        match &self.smsc {
            Some(a) => a.encode_smsc(&mut bytes),
            None => bytes.push(0),
        }
        let start = bytes.len();
        match &self.tpdu {
            Tpdu::Submit(s) => s.encode_into(&mut bytes)?,
            Tpdu::Deliver(d) => d.encode_into(&mut bytes)?,
            Tpdu::StatusReport(s) => s.encode_into(&mut bytes)?,
        }
        let tpdu_len = bytes.len() - start;
        Ok(EncodedPdu { bytes, tpdu_len })
    }
}

fn udhi(ud: &UserData) -> u8 {
    if ud.header.is_some() { 0x40 } else { 0 }
}

impl Submit {
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let first = 0x01
            | u8::from(self.reject_duplicates) << 2
            | self.validity.as_ref().map_or(0, Validity::vpf) << 3
            | u8::from(self.status_report_request) << 5
            | udhi(&self.user_data)
            | u8::from(self.reply_path) << 7;
        out.push(first);
        out.push(self.message_ref);
        self.destination.encode_tp(out)?;
        out.push(self.pid);
        out.push(self.dcs.raw);
        if let Some(v) = &self.validity {
            v.encode(out);
        }
        self.user_data.encode(out)
    }
}

impl Deliver {
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let first = u8::from(!self.more_messages) << 2
            | u8::from(self.loop_prevention) << 3
            | u8::from(self.status_report_indication) << 5
            | udhi(&self.user_data)
            | u8::from(self.reply_path) << 7;
        out.push(first);
        self.originator.encode_tp(out)?;
        out.push(self.pid);
        out.push(self.dcs.raw);
        out.extend_from_slice(&self.timestamp.encode());
        self.user_data.encode(out)
    }
}

impl StatusReport {
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let first = 0x02
            | u8::from(!self.more_messages) << 2
            | u8::from(self.loop_prevention) << 3
            | u8::from(self.qualifier_command) << 5
            | self.user_data.as_ref().map_or(0, udhi);
        out.push(first);
        out.push(self.message_ref);
        self.recipient.encode_tp(out)?;
        out.extend_from_slice(&self.timestamp.encode());
        out.extend_from_slice(&self.discharge_time.encode());
        out.push(self.status.0);
        let pi = u8::from(self.pid.is_some())
            | u8::from(self.dcs.is_some()) << 1
            | u8::from(self.user_data.is_some()) << 2;
        if pi != 0 {
            out.push(pi);
            if let Some(p) = self.pid {
                out.push(p);
            }
            if let Some(d) = self.dcs {
                out.push(d.raw);
            }
            if let Some(ud) = &self.user_data {
                ud.encode(out)?;
            }
        }
        Ok(())
    }
}
