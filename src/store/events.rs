//! The webhook outbox: one `events` row per (event, destination URL). Rows are written
//! by the same store write that makes the state change they announce, so a committed
//! change always has its event and a rolled-back one never does; the webhook worker
//! reads due rows, posts them and records the outcome here (delivered, or the attempt
//! count, error and next try), so retries survive restarts.
//!
//! No schema change: the event id lives in the payload JSON (the same for every URL an
//! event goes to, stable across retries), and a row that was given up on keeps
//! `delivered_at` NULL with `next_attempt_at` = [`GAVE_UP`].

use super::{Result, StoreError};
use rusqlite::{Connection, OptionalExtension, params};

/// `next_attempt_at` of a row the worker gave up on: never due again, still listed.
pub const GAVE_UP: i64 = i64::MAX;

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// The row id (one per destination); the event id is inside the payload.
    pub id: i64,
    /// When the event happened, ms since the Unix epoch.
    pub created_at: i64,
    /// The event type, e.g. `message.delivered`, `inbound.received`.
    pub kind: String,
    /// The exact JSON body to post (signed as is).
    pub payload: String,
    /// The destination it is posted to.
    pub url: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the worker may try next, ms since the Unix epoch; [`GAVE_UP`] when it never
    /// will.
    pub next_attempt_at: i64,
    /// When the destination accepted it, ms since the Unix epoch; `None` while not yet.
    pub delivered_at: Option<i64>,
    /// Why the last attempt failed (`HTTP 500`, a connection error); `None` before the
    /// first failure and after delivery.
    pub last_error: Option<String>,
}

/// Writes one event for every URL in `urls` (duplicates dropped); returns the event id,
/// or `None` when there was no destination (nothing written).
///
/// The payload is `{"id", "type", "created_at", "data"}`. The event id is derived from
/// the first row's id and the creation time, so it is unique without a random source
/// and identical in every row (and every retry) of the event: receivers dedupe on it.
pub fn enqueue_event(
    conn: &Connection,
    kind: &str,
    data: &serde_json::Value,
    urls: &[String],
    now: i64,
) -> Result<Option<String>> {
    let mut unique: Vec<&str> = Vec::with_capacity(urls.len());
    for u in urls {
        if !unique.contains(&u.as_str()) {
            unique.push(u);
        }
    }
    let Some((first, rest)) = unique.split_first() else {
        return Ok(None);
    };
    let mut insert = conn.prepare_cached(
        "INSERT INTO events (created_at, kind, payload, url, next_attempt_at) \
         VALUES (?1, ?2, ?3, ?4, ?1)",
    )?;
    insert.execute(params![now, kind, "", first])?;
    let first_row = conn.last_insert_rowid();
    let event_id = format!("evt_{now:x}_{first_row}");
    let payload = serde_json::json!({
        "id": event_id,
        "type": kind,
        "created_at": super::rfc3339(now),
        "data": data,
    })
    .to_string();
    conn.prepare_cached("UPDATE events SET payload = ?2 WHERE id = ?1")?
        .execute(params![first_row, payload])?;
    for url in rest {
        insert.execute(params![now, kind, payload, url])?;
    }
    // A message's own callback_url is the app's (token's) destination: mark its row
    // with the token, so the API can cap the callbacks one token has pending.
    if kind.starts_with("message.")
        && let Some(id) = data.get("id").and_then(serde_json::Value::as_i64)
    {
        conn.prepare_cached(
            "UPDATE events SET owner = m.owner FROM messages m \
             WHERE events.id >= ?1 AND m.id = ?2 AND m.owner IS NOT NULL \
             AND events.url = m.callback_url",
        )?
        .execute(params![first_row, id])?;
    }
    Ok(Some(event_id))
}

const EVENT_COLUMNS: &str = "id, created_at, kind, payload, url, attempts, next_attempt_at, \
    delivered_at, last_error";

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: r.get(0)?,
        created_at: r.get(1)?,
        kind: r.get(2)?,
        payload: r.get(3)?,
        url: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
        attempts: r.get(5)?,
        next_attempt_at: r.get(6)?,
        delivered_at: r.get(7)?,
        last_error: r.get(8)?,
    })
}

/// Undelivered rows due by `now`, most overdue first (uses the `events_due` index).
pub fn due_events(conn: &Connection, now: i64, limit: u32) -> Result<Vec<EventRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE delivered_at IS NULL \
             AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2"
        ))?
        .query_map(params![now, limit], event_from_row)?
        .collect::<rusqlite::Result<_>>()?)
}

/// The earliest retry time after `now` among undelivered rows, for the worker's timer.
pub fn next_event_due(conn: &Connection, now: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT MIN(next_attempt_at) FROM events WHERE delivered_at IS NULL \
             AND next_attempt_at > ?1 AND next_attempt_at < ?2",
        )?
        .query_row(params![now, GAVE_UP], |r| r.get::<_, Option<i64>>(0))
        .optional()?
        .flatten())
}

/// Records a successful delivery (a 2xx): the row is never posted again.
pub fn mark_delivered(conn: &Connection, id: i64, now: i64) -> Result<()> {
    let n = conn
        .prepare_cached(
            "UPDATE events SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL \
             WHERE id = ?1 AND delivered_at IS NULL",
        )?
        .execute(params![id, now])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("undelivered event row {id}")));
    }
    Ok(())
}

/// Records a failed attempt and when to try again ([`GAVE_UP`] for never).
pub fn schedule_event_retry(conn: &Connection, id: i64, next_at: i64, error: &str) -> Result<()> {
    let n = conn
        .prepare_cached(
            "UPDATE events SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 \
             WHERE id = ?1 AND delivered_at IS NULL",
        )?
        .execute(params![id, next_at, error])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("undelivered event row {id}")));
    }
    Ok(())
}

/// Every row of one kind, oldest first (for tests and diagnostics).
pub fn list_events(conn: &Connection, kind: Option<&str>, limit: u32) -> Result<Vec<EventRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE (?1 IS NULL OR kind = ?1) \
             ORDER BY id LIMIT ?2"
        ))?
        .query_map(params![kind, limit], event_from_row)?
        .collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn one_row_per_url_same_event_id_and_retry_bookkeeping() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("ev.db")).unwrap();
        let urls = vec![
            "http://a/hook".to_string(),
            "http://b/hook".to_string(),
            "http://a/hook".to_string(),
        ];
        let id = store
            .write(move |c| {
                enqueue_event(
                    c,
                    "message.sent",
                    &serde_json::json!({"id": 7}),
                    &urls,
                    1_000,
                )
            })
            .await
            .unwrap()
            .unwrap();
        let none = store
            .write(|c| enqueue_event(c, "message.sent", &serde_json::json!({}), &[], 1_000))
            .await
            .unwrap();
        assert_eq!(none, None);
        let rows = store.read(|c| due_events(c, 1_000, 10)).await.unwrap();
        assert_eq!(rows.len(), 2, "duplicate URL dropped");
        for r in &rows {
            let v: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
            assert_eq!(v["id"], id.as_str());
            assert_eq!(v["type"], "message.sent");
            assert_eq!(v["data"]["id"], 7);
            assert_eq!(v["created_at"], "1970-01-01T00:00:01.000Z");
        }
        assert_eq!(rows[0].payload, rows[1].payload);
        let (a, b) = (rows[0].id, rows[1].id);
        store
            .write(move |c| {
                mark_delivered(c, a, 1_100)?;
                schedule_event_retry(c, b, 3_000, "HTTP 500")
            })
            .await
            .unwrap();
        assert!(
            store
                .read(|c| due_events(c, 2_000, 10))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.read(|c| next_event_due(c, 2_000)).await.unwrap(),
            Some(3_000)
        );
        let again = store.read(|c| due_events(c, 3_000, 10)).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].last_error.as_deref(), Some("HTTP 500"));
        store
            .write(move |c| schedule_event_retry(c, b, GAVE_UP, "gave up"))
            .await
            .unwrap();
        assert_eq!(
            store.read(|c| next_event_due(c, 3_000)).await.unwrap(),
            None
        );
        let err = store.write(move |c| mark_delivered(c, a, 5_000)).await;
        assert!(err.is_err(), "delivered rows are final");
    }
}
