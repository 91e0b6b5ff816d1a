//! `gsmgw pdu encode|decode`: the codec on the command line, with the JSON shapes other
//! tools rely on (documented in docs/cli.md).

use crate::pdu::{
    self, Address, Alphabet, Deliver, Element, Gsm7Tables, Language, Payload, PlanOptions,
    StatusReport, Submit, SubmitOptions, TextEncoding, Tpdu, UserData, Validity,
};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub(crate) enum PduCommand {
    /// Encode a text as SMS-SUBMIT PDUs, one per part, ready for AT+CMGS.
    Encode(EncodeArgs),
    /// Decode a PDU (SMS-DELIVER, SMS-SUBMIT or SMS-STATUS-REPORT) given in hex.
    Decode(DecodeArgs),
}

#[derive(Args, Debug)]
pub(crate) struct EncodeArgs {
    /// Recipient: +E.164, national digits, or an alphanumeric name.
    #[arg(long)]
    to: String,
    /// SMSC number to put in the PDU; without it the SIM's SMSC is used (`00`).
    #[arg(long)]
    smsc: Option<String>,
    /// Request a status report (TP-SRR).
    #[arg(long)]
    status_report: bool,
    /// Send as a class 0 ("flash") message.
    #[arg(long)]
    flash: bool,
    /// Validity period, e.g. `30m`, `12h`, `2days`, rounded up to the next code.
    #[arg(long, value_parser = humantime::parse_duration)]
    validity: Option<std::time::Duration>,
    /// Concatenation reference for multipart messages (0–255, or 0–65535 with --ref16);
    /// random when not given.
    #[arg(long = "ref")]
    reference: Option<u16>,
    /// Use 16-bit concatenation references.
    #[arg(long)]
    ref16: bool,
    /// Never use national language shift tables.
    #[arg(long)]
    no_national: bool,
    /// Always encode as UCS-2.
    #[arg(long)]
    ucs2: bool,
    /// The text to send.
    text: String,
}

#[derive(Args, Debug)]
pub(crate) struct DecodeArgs {
    /// The PDU has no leading SMSC field (as with `AT+CMGS` input or a bare TPDU).
    #[arg(long)]
    no_smsc: bool,
    /// The PDU in hex.
    hex: String,
}

pub(crate) fn run(cmd: PduCommand) -> Result<(), Box<dyn std::error::Error>> {
    let out = match cmd {
        PduCommand::Encode(a) => encode(a)?,
        PduCommand::Decode(a) => decode_json(&pdu::decode_hex(&a.hex, !a.no_smsc)?),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn encode(a: EncodeArgs) -> Result<Value, Box<dyn std::error::Error>> {
    let mut opts = SubmitOptions::new(Address::parse(&a.to)?);
    opts.smsc = a.smsc.as_deref().map(Address::parse).transpose()?;
    opts.status_report = a.status_report;
    opts.flash = a.flash;
    opts.validity = a.validity.map(Validity::relative_at_least);
    if !a.ref16 && a.reference.is_some_and(|r| r > 255) {
        return Err("--ref must be 0–255 without --ref16".into());
    }
    opts.concat_ref = a.reference.unwrap_or_else(random_reference);
    opts.plan = PlanOptions {
        languages: if a.no_national {
            Vec::new()
        } else {
            Language::national().to_vec()
        },
        concat16: a.ref16,
        force_ucs2: a.ucs2,
    };
    let (plan, pdus) = pdu::encode_submit(&a.text, &opts)?;
    let parts: Vec<Value> = pdus
        .iter()
        .zip(&plan.parts)
        .map(|(p, planned)| {
            json!({
                "pdu": p.hex(),
                "tpdu_len": p.tpdu_len,
                "units": planned.units,
            })
        })
        .collect();
    Ok(json!({
        "encoding": plan.encoding.name(),
        "national": match plan.encoding {
            TextEncoding::Gsm7(t) => national_json(t),
            TextEncoding::Ucs2 => Value::Null,
        },
        "units": plan.units,
        "parts": parts,
    }))
}

/// A reference that differs between invocations, so two messages encoded (or sent, by
/// `gsmgw modem send`) by separate runs don't collide in the recipient's reassembly.
pub(crate) fn random_reference() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos >> 8) as u16 & 0xFF
}

fn national_json(t: Gsm7Tables) -> Value {
    if t == Gsm7Tables::DEFAULT {
        Value::Null
    } else {
        json!({"locking": t.locking.name(), "single": t.single.name()})
    }
}

/// The JSON view of a decoded PDU; field names are a contract (docs/cli.md).
pub(crate) fn decode_json(p: &pdu::Pdu) -> Value {
    let mut v = match &p.tpdu {
        Tpdu::Deliver(d) => deliver_json(d),
        Tpdu::Submit(s) => submit_json(s),
        Tpdu::StatusReport(s) => status_report_json(s),
    };
    v["smsc"] = p
        .smsc
        .as_ref()
        .map_or(Value::Null, |a| json!(a.to_string()));
    v
}

fn deliver_json(d: &Deliver) -> Value {
    let mut v = json!({
        "type": "deliver",
        "from": d.originator.to_string(),
        "from_type": d.originator.ton.name(),
        "timestamp": d.timestamp.to_string(),
        "pid": d.pid,
        "dcs": d.dcs.raw,
        "class": d.dcs.class,
        "more_messages": d.more_messages,
        "status_report_indication": d.status_report_indication,
        "reply_path": d.reply_path,
    });
    user_data_json(&mut v, &d.user_data, d.dcs);
    v
}

fn submit_json(s: &Submit) -> Value {
    let mut v = json!({
        "type": "submit",
        "to": s.destination.to_string(),
        "to_type": s.destination.ton.name(),
        "message_ref": s.message_ref,
        "pid": s.pid,
        "dcs": s.dcs.raw,
        "class": s.dcs.class,
        "status_report_request": s.status_report_request,
        "reject_duplicates": s.reject_duplicates,
        "reply_path": s.reply_path,
        "validity": s.validity.map(|val| validity_json(&val)),
    });
    user_data_json(&mut v, &s.user_data, s.dcs);
    v
}

fn status_report_json(s: &StatusReport) -> Value {
    let mut v = json!({
        "type": "status-report",
        "recipient": s.recipient.to_string(),
        "recipient_type": s.recipient.ton.name(),
        "message_ref": s.message_ref,
        "timestamp": s.timestamp.to_string(),
        "discharge_time": s.discharge_time.to_string(),
        "status": {
            "code": s.status.0,
            "category": s.status.category().name(),
            "description": s.status.description(),
        },
        "class": Value::Null,
        "concat": Value::Null,
        "text": Value::Null,
        "encoding": Value::Null,
        "udh": [],
    });
    if let (Some(ud), Some(dcs)) = (&s.user_data, s.dcs) {
        user_data_json(&mut v, ud, dcs);
    }
    v
}

fn validity_json(val: &Validity) -> Value {
    match val {
        Validity::Relative(code) => json!({
            "format": "relative",
            "code": code,
            "seconds": val.duration().map(|d| d.as_secs()),
        }),
        Validity::Absolute(t) => json!({"format": "absolute", "until": t.to_string()}),
        Validity::Enhanced(raw) => json!({
            "format": "enhanced",
            "raw": pdu::hex::encode(raw),
            "seconds": val.duration().map(|d| d.as_secs()),
        }),
    }
}

fn user_data_json(v: &mut Value, ud: &UserData, dcs: pdu::Dcs) {
    v["encoding"] = json!(ud.alphabet().name());
    v["text"] = ud.text().map_or(Value::Null, Value::String);
    if let Payload::Eight(bytes) = &ud.payload {
        v["data"] = json!(pdu::hex::encode(bytes));
    }
    let concat = ud.header.as_ref().and_then(|h| h.concat());
    v["concat"] = concat.map_or(Value::Null, |c| {
        json!({"ref": c.reference, "total": c.total, "seq": c.seq, "bits": if c.wide { 16 } else { 8 }})
    });
    if ud.alphabet() == Alphabet::Gsm7 {
        v["national"] = national_json(ud.tables());
    }
    if let Some(ports) = ud.header.as_ref().and_then(|h| h.ports()) {
        v["ports"] = json!({"destination": ports.0, "source": ports.1});
    }
    if let Some(w) = dcs.waiting {
        v["message_waiting"] = json!({
            "active": w.active,
            "kind": format!("{:?}", w.kind).to_lowercase(),
            "discard": w.discard,
        });
    }
    v["udh"] = ud
        .header
        .as_ref()
        .map_or(Vec::new(), |h| {
            h.elements.iter().map(element_json).collect()
        })
        .into();
}

fn element_json(e: &Element) -> Value {
    let mut v = match *e {
        Element::Concat8 {
            reference,
            total,
            seq,
        } => json!({"type": "concat", "ref": reference, "total": total, "seq": seq}),
        Element::Concat16 {
            reference,
            total,
            seq,
        } => json!({"type": "concat16", "ref": reference, "total": total, "seq": seq}),
        Element::Port8 { dst, src } => json!({"type": "port8", "destination": dst, "source": src}),
        Element::Port16 { dst, src } => {
            json!({"type": "port16", "destination": dst, "source": src})
        }
        Element::SingleShift(l) => json!({"type": "single-shift", "language": lang_name(l)}),
        Element::LockingShift(l) => json!({"type": "locking-shift", "language": lang_name(l)}),
        Element::Other { .. } => json!({"type": "unknown"}),
    };
    v["iei"] = json!(e.iei());
    v["data"] = json!(pdu::hex::encode(&e.data()));
    v
}

fn lang_name(code: u8) -> Value {
    Language::from_code(code).map_or(json!(code), |l| json!(l.name()))
}
