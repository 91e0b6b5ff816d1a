//! The opt-out (suppression) list: numbers that texted a stop keyword, or that an admin
//! added. Sends to them are refused by the API; a start keyword takes a number off.

use super::Result;
use rusqlite::{Connection, OptionalExtension, params};

/// One number on the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// E.164 with `+`.
    pub number: String,
    /// When it was first added, ms since the Unix epoch.
    pub created_at: i64,
    /// `inbound` (a keyword) or `admin`.
    pub source: String,
    /// The stop keyword it sent, upper-case; `None` when an admin added it.
    pub keyword: Option<String>,
    /// The admin's note, if any.
    pub note: Option<String>,
}

/// Whether sends to `number` (E.164, exact) are refused.
pub fn is_suppressed(conn: &Connection, number: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM suppressions WHERE number = ?1")?
        .query_row([number], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Adds (or refreshes) a number.
pub fn suppress(
    conn: &Connection,
    number: &str,
    source: &str,
    keyword: Option<&str>,
    note: Option<&str>,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO suppressions (number, created_at, source, keyword, note) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(number) DO UPDATE SET \
         source = excluded.source, keyword = excluded.keyword, \
         note = COALESCE(excluded.note, note)",
    )?
    .execute(params![number, now, source, keyword, note])?;
    Ok(())
}

/// Takes a number off; `false` if it was not on the list.
pub fn unsuppress(conn: &Connection, number: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM suppressions WHERE number = ?1")?
        .execute([number])?
        == 1)
}

/// The list in number order, after `after` (keyset pagination).
pub fn list_suppressions(
    conn: &Connection,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Suppression>> {
    Ok(conn
        .prepare_cached(
            "SELECT number, created_at, source, keyword, note FROM suppressions \
             WHERE (?1 IS NULL OR number > ?1) ORDER BY number LIMIT ?2",
        )?
        .query_map(params![after, limit.clamp(1, 1000)], |r| {
            Ok(Suppression {
                number: r.get(0)?,
                created_at: r.get(1)?,
                source: r.get(2)?,
                keyword: r.get(3)?,
                note: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}

/// Opt-out keywords, matched against a whole inbound text in any case.
#[derive(Debug, Clone, Default)]
pub struct OptOutKeywords {
    /// Put the sender on the list (e.g. `STOP`).
    pub stop: Vec<String>,
    /// Take the sender off again (e.g. `START`).
    pub start: Vec<String>,
}

/// What an inbound message did to the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptOutChange {
    /// This number (E.164) was put on the list.
    Suppressed(String),
    /// This number (E.164) was taken off.
    Released(String),
}

/// Applies a committed inbox message's keyword, if its whole text (trimmed, any case,
/// trailing punctuation ignored) is one; runs in the inbound message's own write, so the
/// message and the list change commit together.
pub fn apply_opt_out(
    conn: &Connection,
    inbox_id: i64,
    keywords: &OptOutKeywords,
    now: i64,
) -> Result<Option<OptOutChange>> {
    let row: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT sender, body FROM inbox WHERE id = ?1")?
        .query_row([inbox_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((sender, Some(body))) = row else {
        return Ok(None);
    };
    if sender.is_empty() {
        return Ok(None);
    }
    let word = body
        .trim()
        .trim_end_matches(['.', '!', '?'])
        .trim()
        .to_uppercase();
    let is = |list: &[String]| list.iter().any(|k| k.trim().to_uppercase() == word);
    let sender = if sender.starts_with('+') {
        sender
    } else {
        format!("+{sender}")
    };
    if is(&keywords.stop) {
        suppress(conn, &sender, "inbound", Some(&word), None, now)?;
        Ok(Some(OptOutChange::Suppressed(sender)))
    } else if is(&keywords.start) {
        unsuppress(conn, &sender)?;
        Ok(Some(OptOutChange::Released(sender)))
    } else {
        Ok(None)
    }
}
