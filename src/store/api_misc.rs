//! The API's bookkeeping beside messages: message groups (an appointment and its
//! reminder, cancelled together), the template a message came from, and idempotency
//! keys (the first response to a key, replayed for a retry with the same body).

use super::Result;
use rusqlite::{Connection, OptionalExtension, params};

/// Puts a message in a group (the group id is the first message's id) and notes the
/// template it was rendered from.
pub fn set_message_meta(
    conn: &Connection,
    id: i64,
    group_id: Option<i64>,
    template: Option<&str>,
) -> Result<()> {
    conn.prepare_cached("UPDATE messages SET group_id = ?2, template = ?3 WHERE id = ?1")?
        .execute(params![id, group_id, template])?;
    Ok(())
}

/// Records the API token that created a message.
pub fn set_owner(conn: &Connection, id: i64, owner: &str) -> Result<()> {
    conn.prepare_cached("UPDATE messages SET owner = ?2 WHERE id = ?1")?
        .execute(params![id, owner])?;
    Ok(())
}

/// The token that created a message: `None` if there is no such message, `Some(None)`
/// for a message from before owners were recorded.
pub fn message_owner(conn: &Connection, id: i64) -> Result<Option<Option<String>>> {
    Ok(conn
        .prepare_cached("SELECT owner FROM messages WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// How many of `owner`'s callback events are still waiting to be delivered (given-up
/// ones do not count).
pub fn pending_callbacks(conn: &Connection, owner: &str) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM events WHERE owner = ?1 AND delivered_at IS NULL \
             AND next_attempt_at < ?2",
        )?
        .query_row(params![owner, super::GAVE_UP], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A message's group and template.
pub fn message_meta(conn: &Connection, id: i64) -> Result<Option<(Option<i64>, Option<String>)>> {
    Ok(conn
        .prepare_cached("SELECT group_id, template FROM messages WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// The ids in a group, in order.
pub fn group_members(conn: &Connection, group_id: i64) -> Result<Vec<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM messages WHERE group_id = ?1 ORDER BY id")?
        .query_map([group_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// A stored response to an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentResponse {
    /// SHA-256 of the first request body, lower-case hex: a retry with another body
    /// is a conflict, not a replay.
    pub body_hash: String,
    /// The HTTP status first answered.
    pub status: u16,
    /// The JSON first answered, or what the API needs to render it again.
    pub response: String,
}

/// The response recorded for an idempotency key (the API scopes keys by token and
/// route), if any.
pub fn get_idempotency(conn: &Connection, key: &str) -> Result<Option<IdempotentResponse>> {
    Ok(conn
        .prepare_cached("SELECT body_hash, status, response FROM idempotency WHERE key = ?1")?
        .query_row([key], |r| {
            Ok(IdempotentResponse {
                body_hash: r.get(0)?,
                status: r.get(1)?,
                response: r.get(2)?,
            })
        })
        .optional()?)
}

/// Records the response to a key; fails if the key already has one.
pub fn put_idempotency(
    conn: &Connection,
    key: &str,
    r: &IdempotentResponse,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO idempotency (key, body_hash, status, response, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![key, r.body_hash, r.status, r.response, now])?;
    Ok(())
}
