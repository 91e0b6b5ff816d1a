//! Status reports: filed as they arrive and matched to the part they answer.

use super::Result;
use super::messages::MessageStatus;
use rusqlite::{Connection, OptionalExtension, params};

/// A status report to file against the part it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportIn {
    /// ICCID of the SIM it arrived on: only that SIM's parts match; `None` when the
    /// modem could not read it (then any SIM's part may match).
    pub sim: Option<String>,
    /// The modem's name it arrived on.
    pub modem: Option<String>,
    /// TP-MR of the part it answers.
    pub mr: u8,
    /// TP-RA, the part's recipient, as the SMSC wrote it (normalised for matching).
    pub recipient: String,
    /// TP-ST.
    pub status_code: u8,
    /// `delivered`, `pending` or `failed`.
    pub category: String,
    /// TP-SCTS (when the SMSC took the part), RFC 3339.
    pub scts: Option<String>,
    /// TP-DT (when the status was reached), RFC 3339.
    pub discharge: Option<String>,
    /// The hex PDU with the SMSC field, filed as received.
    pub pdu: String,
}

/// What a status report changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportMatch {
    /// The message of the matched part.
    pub message_id: i64,
    /// The matched part's number, from 1.
    pub part_seq: u32,
    /// The message's status after this report, when it changed.
    pub new_status: Option<MessageStatus>,
}

/// Files a report and matches it to a part: same SIM, same MR, same recipient, sent
/// within `window_ms` before now, the most recent such part (MRs wrap at 255, so older
/// ones with the same MR are older messages). Unmatched reports are kept too.
pub fn record_status_report(
    conn: &Connection,
    r: &ReportIn,
    window_ms: i64,
    now: i64,
) -> Result<Option<ReportMatch>> {
    // Two statements rather than `(?2 IS NULL OR p.sim = ?2)`, which would keep SQLite
    // from using the (sim, mr, sent_at) index and scan every message to the recipient.
    let sql = if r.sim.is_some() {
        "SELECT p.message_id, p.seq FROM parts p INDEXED BY parts_mr \
         JOIN messages m ON m.id = p.message_id \
         WHERE p.sim = ?2 AND p.mr = ?1 AND p.sent_at >= ?4 AND p.mr IS NOT NULL \
         AND m.to_number = ?3 AND p.status IN ('sent', 'delivered', 'failed') \
         ORDER BY p.sent_at DESC LIMIT 1"
    } else {
        "SELECT p.message_id, p.seq FROM parts p JOIN messages m ON m.id = p.message_id \
         WHERE ?2 IS NULL AND p.mr = ?1 AND p.sent_at >= ?4 AND m.to_number = ?3 \
         AND p.status IN ('sent', 'delivered', 'failed') ORDER BY p.sent_at DESC LIMIT 1"
    };
    let found: Option<(i64, u32)> = conn
        .prepare_cached(sql)?
        .query_row(
            params![
                r.mr,
                r.sim,
                normalise_recipient(&r.recipient),
                now - window_ms
            ],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    conn.prepare_cached(
        "INSERT INTO status_reports (received_at, sim, modem, mr, recipient, status_code, \
         category, scts, discharge, pdu, message_id, part_seq) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        now,
        r.sim,
        r.modem,
        r.mr,
        r.recipient,
        r.status_code,
        r.category,
        r.scts,
        r.discharge,
        r.pdu,
        found.map(|f| f.0),
        found.map(|f| f.1)
    ])?;
    let Some((message_id, part_seq)) = found else {
        return Ok(None);
    };
    if r.category == "pending" {
        // The SMSC is still trying: note it, the final report will follow.
        conn.prepare_cached(
            "UPDATE parts SET report_at = ?3, report_status = ?4 WHERE message_id = ?1 AND seq = ?2",
        )?
        .execute(params![message_id, part_seq, now, r.status_code])?;
        return Ok(Some(ReportMatch {
            message_id,
            part_seq,
            new_status: None,
        }));
    }
    let part_status = if r.category == "delivered" {
        "delivered"
    } else {
        "failed"
    };
    conn.prepare_cached(
        "UPDATE parts SET status = ?3, report_at = ?4, report_status = ?5 \
         WHERE message_id = ?1 AND seq = ?2",
    )?
    .execute(params![
        message_id,
        part_seq,
        part_status,
        now,
        r.status_code
    ])?;
    let (total, delivered, failed, status): (u32, u32, u32, String) = conn
        .prepare_cached(
            "SELECT m.parts_total, \
             (SELECT COUNT(*) FROM parts WHERE message_id = m.id AND status = 'delivered'), \
             (SELECT COUNT(*) FROM parts WHERE message_id = m.id AND status = 'failed'), \
             m.status FROM messages m WHERE m.id = ?1",
        )?
        .query_row([message_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
    let current = MessageStatus::parse(&status);
    let new_status = if failed > 0 && current != Some(MessageStatus::Failed) {
        Some(MessageStatus::Failed)
    } else if delivered == total && current != Some(MessageStatus::Delivered) {
        Some(MessageStatus::Delivered)
    } else {
        None
    };
    if let Some(s) = new_status {
        let err =
            (s == MessageStatus::Failed).then(|| format!("status report 0x{:02X}", r.status_code));
        conn.prepare_cached(
            "UPDATE messages SET status = ?2, updated_at = ?3, \
             error_code = COALESCE(?4, error_code), error = COALESCE(?5, error) WHERE id = ?1",
        )?
        .execute(params![
            message_id,
            s.as_str(),
            now,
            err.as_ref().map(|_| "status_report"),
            err
        ])?;
    }
    Ok(Some(ReportMatch {
        message_id,
        part_seq,
        new_status,
    }))
}

fn normalise_recipient(r: &str) -> String {
    if r.starts_with('+') || r.is_empty() {
        r.to_string()
    } else {
        // Reports often carry the number without '+', sometimes as international.
        format!("+{r}")
    }
}
