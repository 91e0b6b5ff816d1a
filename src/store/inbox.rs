//! Inbound messages, persisted as [`crate::pdu::inbound`] decides: single parts go
//! straight to the inbox; parts of a concatenated message are kept in `inbox_parts`
//! until all have arrived (any order, duplicates dropped), then joined into one inbox
//! row. A set that stays incomplete is delivered after a timeout, marked incomplete.

use super::{Result, StoreError};
use crate::pdu::inbound::{self, PartOf};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// One inbound SMS-DELIVER part, as the driver read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundPart {
    /// The SIM (ICCID) it arrived on; reassembly is per SIM.
    pub sim: Option<String>,
    /// The modem's name (its port, unless configured otherwise).
    pub modem: String,
    /// TP-OA as text (`+` for international numbers); empty for an undecodable PDU.
    pub sender: String,
    /// Hex PDU with the SMSC field.
    pub pdu: String,
    /// Its place in a concatenated message, when it is one of several.
    pub concat: Option<PartOf>,
    /// The SMSC timestamp, RFC 3339.
    pub sent_at: Option<String>,
    /// When the modem handed it over, ms since the Unix epoch.
    pub received_at: i64,
}

/// A message in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboxRecord {
    /// The inbox id the API and the `inbound.received` event use.
    pub id: i64,
    /// When the message was complete (or its set given up on), ms since the Unix
    /// epoch.
    pub received_at: i64,
    /// ICCID of the SIM it arrived on; `None` when the modem could not read it.
    pub sim: Option<String>,
    /// The modem's name; for a concatenated message, the modem of its last part.
    pub modem: Option<String>,
    /// TP-OA as text; empty for an undecodable PDU.
    pub sender: String,
    /// The joined text; `None` for 8-bit data or an undecodable PDU (the raw PDUs are
    /// kept).
    pub text: Option<String>,
    /// Parts the message announced (1 for a single SMS).
    pub parts_total: u32,
    /// Parts that arrived; below `parts_total` only when `complete` is false.
    pub parts_received: u32,
    /// Every part arrived; false for a set delivered after the reassembly timeout.
    pub complete: bool,
    /// TP-SCTS of the first part, RFC 3339; `None` when it did not decode.
    pub sent_at: Option<String>,
}

fn sim_key(p: &InboundPart) -> String {
    p.sim
        .clone()
        .unwrap_or_else(|| format!("modem:{}", p.modem))
}

#[allow(clippy::too_many_arguments)]
fn insert_inbox(
    conn: &Connection,
    received_at: i64,
    sim: Option<&str>,
    modem: &str,
    sender: &str,
    text: Option<&str>,
    total: u32,
    received: u32,
    sent_at: Option<&str>,
    pdus: &[String],
) -> Result<i64> {
    let pdus = serde_json::to_string(pdus).map_err(|e| StoreError::Sqlite(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO inbox (received_at, sim, modem, sender, body, parts_total, parts_received, \
         complete, sent_at, pdus) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        received_at,
        sim,
        modem,
        sender,
        text,
        total,
        received,
        received == total,
        sent_at,
        pdus
    ])?;
    let id = conn.last_insert_rowid();
    if let Some(sim) = sim {
        conn.prepare_cached("UPDATE sims SET received = received + 1 WHERE iccid = ?1")?
            .execute([sim])?;
    }
    Ok(id)
}

/// Whether this single-part message is already in the inbox: a network that missed the
/// acknowledgement delivers the same SMS again, with the same sender, SMSC timestamp
/// and PDU. (Parts of a long message are de-duplicated by their reassembly key.)
fn redelivered(conn: &Connection, p: &InboundPart) -> Result<bool> {
    let Some(sent_at) = p.sent_at.as_deref() else {
        return Ok(false); // undecodable: no timestamp to tell a redelivery by
    };
    let pdus = serde_json::to_string(std::slice::from_ref(&p.pdu))
        .map_err(|e| StoreError::Sqlite(e.to_string()))?;
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM inbox WHERE sender = ?1 AND sent_at = ?2 AND pdus = ?3 \
             AND sim IS ?4 LIMIT 1",
        )?
        .query_row(params![p.sender, sent_at, pdus, p.sim], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Stores one part; returns the inbox id when this completed a message (or was a
/// single-part one), `None` while parts are missing or when it was a duplicate.
pub fn insert_inbound(conn: &Connection, p: &InboundPart) -> Result<Option<i64>> {
    let Some(of) = p.concat else {
        if redelivered(conn, p)? {
            return Ok(None); // the network delivered it again: stored once
        }
        let text = inbound::join(std::slice::from_ref(&p.pdu)).text;
        return insert_inbox(
            conn,
            p.received_at,
            p.sim.as_deref(),
            &p.modem,
            &p.sender,
            text.as_deref(),
            1,
            1,
            p.sent_at.as_deref(),
            std::slice::from_ref(&p.pdu),
        )
        .map(Some);
    };
    let key = sim_key(p);
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO inbox_parts (sim, sender, ref, total, seq, received_at, modem, pdu) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![key, p.sender, of.reference, of.total, of.seq, p.received_at, p.modem, p.pdu])?;
    if inserted == 0 {
        return Ok(None); // a duplicate part (network redelivery): dropped
    }
    let have: u32 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM inbox_parts WHERE sim = ?1 AND sender = ?2 AND ref = ?3 AND total = ?4",
        )?
        .query_row(params![key, p.sender, of.reference, of.total], |r| r.get(0))?;
    if !of.is_complete(have) {
        return Ok(None);
    }
    assemble(conn, &key, &p.sender, of.reference, of.total, p.received_at).map(Some)
}

/// Joins whatever parts of a set are stored into one inbox row and removes them.
fn assemble(
    conn: &Connection,
    key: &str,
    sender: &str,
    reference: u16,
    total: u8,
    now: i64,
) -> Result<i64> {
    let rows: Vec<(String, Option<String>)> = conn
        .prepare_cached(
            "SELECT pdu, modem FROM inbox_parts WHERE sim = ?1 AND sender = ?2 AND ref = ?3 \
             AND total = ?4 ORDER BY seq",
        )?
        .query_map(params![key, sender, reference, total], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let pdus: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let modem = rows.last().and_then(|r| r.1.clone()).unwrap_or_default();
    let joined = inbound::join(&pdus);
    let sim = (!key.starts_with("modem:")).then_some(key);
    let id = insert_inbox(
        conn,
        now,
        sim,
        &modem,
        sender,
        joined.text.as_deref(),
        u32::from(total),
        pdus.len() as u32,
        joined.sent_at.as_deref(),
        &pdus,
    )?;
    conn.prepare_cached(
        "DELETE FROM inbox_parts WHERE sim = ?1 AND sender = ?2 AND ref = ?3 AND total = ?4",
    )?
    .execute(params![key, sender, reference, total])?;
    Ok(id)
}

/// Delivers sets whose first part arrived before `cutoff` as incomplete messages.
pub fn expire_reassembly(conn: &Connection, cutoff: i64, now: i64) -> Result<Vec<i64>> {
    let sets: Vec<(String, String, u16, u8)> = conn
        .prepare(
            "SELECT sim, sender, ref, total FROM inbox_parts GROUP BY sim, sender, ref, total \
             HAVING MIN(received_at) < ?1",
        )?
        .query_map([cutoff], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for (key, sender, reference, total) in sets {
        out.push(assemble(conn, &key, &sender, reference, total, now)?);
    }
    Ok(out)
}

/// The oldest waiting part's arrival time, to schedule the next expiry check.
pub fn oldest_reassembly(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn
        .query_row("SELECT MIN(received_at) FROM inbox_parts", [], |r| r.get(0))
        .optional()?
        .flatten())
}

/// One inbox message by id.
pub fn get_inbox(conn: &Connection, id: i64) -> Result<Option<InboxRecord>> {
    Ok(conn
        .prepare_cached(&format!("{INBOX_SELECT} WHERE id = ?1"))?
        .query_row([id], inbox_from_row)
        .optional()?)
}

/// Inbox, newest first, ids below `before_id` (keyset pagination).
pub fn list_inbox(
    conn: &Connection,
    before_id: Option<i64>,
    limit: u32,
) -> Result<Vec<InboxRecord>> {
    Ok(conn
        .prepare_cached(&format!(
            "{INBOX_SELECT} WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2"
        ))?
        .query_map(params![before_id, limit.clamp(1, 1000)], inbox_from_row)?
        .collect::<rusqlite::Result<_>>()?)
}

const INBOX_SELECT: &str = "SELECT id, received_at, sim, modem, sender, body, parts_total, \
    parts_received, complete, sent_at FROM inbox";

fn inbox_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InboxRecord> {
    Ok(InboxRecord {
        id: r.get(0)?,
        received_at: r.get(1)?,
        sim: r.get(2)?,
        modem: r.get(3)?,
        sender: r.get(4)?,
        text: r.get(5)?,
        parts_total: r.get(6)?,
        parts_received: r.get(7)?,
        complete: r.get(8)?,
        sent_at: r.get(9)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::Store;

    const PDU_HELLO: &str =
        "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07";
    /// An SMS-DELIVER of no text at all (TP-UDL 0).
    const PDU_EMPTY: &str = "07911326040000F0040B911346610089F600002080629173140800";

    fn part(pdu: &str) -> InboundPart {
        InboundPart {
            sim: Some("8949000000000000001".into()),
            modem: "A".into(),
            sender: String::new(),
            pdu: pdu.into(),
            concat: None,
            sent_at: None,
            received_at: 1,
        }
    }

    fn stored(store: &Store, pdu: &str) -> (Option<String>, String) {
        let p = part(pdu);
        store
            .write_blocking(move |c| {
                let id = insert_inbound(c, &p)?.unwrap();
                let text = get_inbox(c, id)?.unwrap().text;
                let pdus: String =
                    c.query_row("SELECT pdus FROM inbox WHERE id = ?1", [id], |r| r.get(0))?;
                Ok((text, pdus))
            })
            .unwrap()
    }

    /// Found by the soak: a network that redelivers a single-part SMS (it missed the
    /// acknowledgement) had it stored twice.
    #[test]
    fn a_redelivered_single_part_message_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("t.db")).unwrap();
        let delivered = InboundPart {
            sender: "+31641600986".into(),
            sent_at: Some("2026-08-26T19:37:41+02:00".into()),
            ..part(PDU_HELLO)
        };
        let (a, b) = (delivered.clone(), delivered.clone());
        let first = store
            .write_blocking(move |c| insert_inbound(c, &a))
            .unwrap();
        let again = store
            .write_blocking(move |c| insert_inbound(c, &b))
            .unwrap();
        assert!(first.is_some());
        assert_eq!(again, None, "the redelivery is not a second message");
        // The same text sent again later (another SMSC timestamp) is a new message.
        let later = InboundPart {
            sent_at: Some("2026-08-26T19:38:02+02:00".into()),
            ..delivered
        };
        assert!(
            store
                .write_blocking(move |c| insert_inbound(c, &later))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn undecodable_text_is_null_with_the_raw_pdu_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("t.db")).unwrap();
        // Audit #10, finding 11: an undecodable PDU was stored with the text "".
        for raw in ["00FF", "07911326040000F0040B91", "not hex"] {
            let (text, pdus) = stored(&store, raw);
            assert_eq!(text, None, "{raw}");
            assert_eq!(pdus, serde_json::to_string(&[raw]).unwrap());
        }
        // A message that decodes keeps its text, an empty one included.
        assert_eq!(stored(&store, PDU_HELLO).0.as_deref(), Some("How are you?"));
        assert_eq!(stored(&store, PDU_EMPTY).0.as_deref(), Some(""));
    }
}
