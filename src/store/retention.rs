//! Retention: what is old enough to delete, deleted in small batches so that each write
//! is short and the writer's group commit keeps interleaving the API's inserts with it
//! (ingest latency does not move while a backlog of months is pruned).
//!
//! Kept forever: queued and sending messages whatever their age, SIMs, rejected PINs,
//! templates and suppressions (the opt-out audit). Everything else has a cutoff.

use super::Result;
use rusqlite::{Connection, params};
use serde::Serialize;

/// Rows older than these (unix ms) go; `None` keeps that kind forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cutoffs {
    /// Finished messages (sent, delivered, failed, expired, cancelled) last changed
    /// before this, with their parts, attempts, status reports and one-time-code rows;
    /// and status reports that matched no message, received before this.
    pub messages: Option<i64>,
    /// Inbox messages received before this.
    pub inbox: Option<i64>,
    /// Webhook events delivered or given up on, created before this (pending ones are
    /// kept: they are still owed).
    pub events: Option<i64>,
    /// Idempotency keys recorded before this (a retry after that is a new request).
    pub idempotency: Option<i64>,
    /// One-time-code rows (salted hashes) created before this.
    pub otps: Option<i64>,
}

/// How many rows one batch deleted, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Messages (their parts, attempts, reports and code rows went with them).
    pub messages: usize,
    /// Status reports that matched no message.
    pub unmatched_reports: usize,
    /// Inbox rows.
    pub inbox: usize,
    /// Webhook outbox rows.
    pub events: usize,
    /// Idempotency keys.
    pub idempotency: usize,
    /// One-time-code rows.
    pub otps: usize,
}

impl Pruned {
    /// Rows deleted in all.
    pub fn total(&self) -> usize {
        self.messages
            + self.unmatched_reports
            + self.inbox
            + self.events
            + self.idempotency
            + self.otps
    }

    /// Adds another batch's counts.
    pub fn add(&mut self, o: Pruned) {
        self.messages += o.messages;
        self.unmatched_reports += o.unmatched_reports;
        self.inbox += o.inbox;
        self.events += o.events;
        self.idempotency += o.idempotency;
        self.otps += o.otps;
    }
}

/// Deletes up to `limit` rows of each kind past its cutoff, oldest first, using the
/// indexes of migration 7 (no table scans). Call again while [`Pruned::total`] says a
/// batch was full; each call is meant to be one short store write.
pub fn prune_batch(conn: &Connection, cut: &Cutoffs, limit: usize) -> Result<Pruned> {
    let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
    let mut p = Pruned::default();
    if let Some(before) = cut.messages {
        let ids: Vec<i64> = conn
            .prepare_cached(
                "SELECT id FROM messages WHERE status IN \
                 ('sent', 'delivered', 'failed', 'expired', 'cancelled') \
                 AND updated_at < ?1 ORDER BY updated_at LIMIT ?2",
            )?
            .query_map(params![before, limit], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in &ids {
            for sql in [
                "DELETE FROM parts WHERE message_id = ?1",
                "DELETE FROM attempts WHERE message_id = ?1",
                "DELETE FROM status_reports WHERE message_id = ?1",
                "DELETE FROM otps WHERE message_id = ?1",
                "DELETE FROM messages WHERE id = ?1",
            ] {
                conn.prepare_cached(sql)?.execute([id])?;
            }
        }
        p.messages = ids.len();
        p.unmatched_reports = conn
            .prepare_cached(
                "DELETE FROM status_reports WHERE id IN (SELECT id FROM status_reports \
                 WHERE message_id IS NULL AND received_at < ?1 ORDER BY received_at LIMIT ?2)",
            )?
            .execute(params![before, limit])?;
    }
    if let Some(before) = cut.inbox {
        p.inbox = conn
            .prepare_cached(
                "DELETE FROM inbox WHERE id IN (SELECT id FROM inbox WHERE received_at < ?1 \
                 ORDER BY received_at LIMIT ?2)",
            )?
            .execute(params![before, limit])?;
    }
    if let Some(before) = cut.events {
        p.events = conn
            .prepare_cached(
                "DELETE FROM events WHERE id IN (SELECT id FROM events \
                 WHERE (delivered_at IS NOT NULL OR next_attempt_at = 9223372036854775807) \
                 AND created_at < ?1 ORDER BY created_at LIMIT ?2)",
            )?
            .execute(params![before, limit])?;
    }
    if let Some(before) = cut.idempotency {
        p.idempotency = conn
            .prepare_cached(
                "DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency \
                 WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)",
            )?
            .execute(params![before, limit])?;
    }
    if let Some(before) = cut.otps {
        p.otps = conn
            .prepare_cached(
                "DELETE FROM otps WHERE id IN (SELECT id FROM otps WHERE created_at < ?1 \
                 ORDER BY created_at LIMIT ?2)",
            )?
            .execute(params![before, limit])?;
    }
    Ok(p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::tests::msg;
    use crate::store::{MessageStatus, Store, insert_message, set_status};

    const DAY: i64 = 86_400_000;

    fn count(store: &Store, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        store
            .read_blocking(move |c| Ok(c.query_row(&sql, [], |r| r.get(0))?))
            .unwrap()
    }

    /// Uses the migration's indexes, not a scan of the table.
    fn plan(store: &Store, sql: &'static str) -> String {
        store
            .read_blocking(move |c| {
                let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let args: Vec<i64> = (0..st.parameter_count() as i64).collect();
                let rows: Vec<String> = st
                    .query_map(rusqlite::params_from_iter(args), |r| r.get(3))?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(rows.join(" | "))
            })
            .unwrap()
    }

    #[test]
    fn old_finished_messages_go_with_their_rows_and_pending_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("r.db")).unwrap();
        let now = 100 * DAY;
        // Old and finished; old but still queued; finished recently.
        let (old_done, old_queued, new_done) = store
            .write_blocking(move |c| {
                let a = insert_message(c, &msg("+491710000001", 2), DAY)?;
                set_status(c, a, MessageStatus::Delivered, None, None, DAY)?;
                c.execute(
                    "INSERT INTO status_reports (received_at, mr, recipient, status_code, \
                     category, pdu, message_id, part_seq) VALUES (?1, 1, 'x', 0, 'delivered', '', ?2, 1)",
                    params![DAY, a],
                )?;
                let b = insert_message(c, &msg("+491710000002", 1), DAY)?;
                let n = insert_message(c, &msg("+491710000003", 1), now - DAY)?;
                set_status(c, n, MessageStatus::Failed, None, None, now - DAY)?;
                Ok((a, b, n))
            })
            .unwrap();
        assert_eq!(count(&store, "parts"), 4);
        let cut = Cutoffs {
            messages: Some(now - 30 * DAY),
            ..Cutoffs::default()
        };
        let p = store
            .write_blocking(move |c| prune_batch(c, &cut, 100))
            .unwrap();
        assert_eq!(p.messages, 1);
        let left: Vec<i64> = store
            .read_blocking(|c| {
                Ok(c.prepare("SELECT id FROM messages ORDER BY id")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .unwrap();
        assert_eq!(left, vec![old_queued, new_done]);
        assert!(!left.contains(&old_done));
        assert_eq!(
            count(&store, "parts"),
            2,
            "the deleted message's parts went too"
        );
        assert_eq!(count(&store, "status_reports"), 0);
        // Nothing more to do: a second batch deletes nothing.
        let p = store
            .write_blocking(move |c| prune_batch(c, &cut, 100))
            .unwrap();
        assert_eq!(p.total(), 0);
    }

    #[test]
    fn batches_are_bounded_and_keep_forever_means_forever() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("r.db")).unwrap();
        store
            .write_blocking(|c| {
                for i in 0..25 {
                    c.execute(
                        "INSERT INTO idempotency (key, body_hash, status, response, created_at) \
                         VALUES (?1, '', 202, '{}', ?2)",
                        params![format!("k{i}"), i],
                    )?;
                    c.execute(
                        "INSERT INTO inbox (received_at, sender, parts_total, parts_received, \
                         complete, pdus) VALUES (?1, 's', 1, 1, 1, '[]')",
                        [i],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        let cut = Cutoffs {
            idempotency: Some(20),
            ..Cutoffs::default()
        };
        let p = store
            .write_blocking(move |c| prune_batch(c, &cut, 8))
            .unwrap();
        assert_eq!((p.idempotency, p.inbox), (8, 0), "inbox: no cutoff, kept");
        let mut total = p;
        loop {
            let p = store
                .write_blocking(move |c| prune_batch(c, &cut, 8))
                .unwrap();
            if p.total() == 0 {
                break;
            }
            total.add(p);
        }
        assert_eq!(
            total.idempotency, 20,
            "the 20 older than the cutoff, oldest first"
        );
        assert_eq!(count(&store, "idempotency"), 5);
        assert_eq!(count(&store, "inbox"), 25);
    }

    #[test]
    fn the_given_up_marker_is_the_literal_the_partial_index_names() {
        // A partial index is used only when the query names its exact literal.
        assert_eq!(crate::store::GAVE_UP, 9223372036854775807);
    }

    #[test]
    fn every_batch_query_walks_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("r.db")).unwrap();
        for sql in [
            "SELECT id FROM messages WHERE status IN ('sent', 'delivered', 'failed', 'expired', 'cancelled') AND updated_at < ?1 ORDER BY updated_at LIMIT ?2",
            "SELECT id FROM status_reports WHERE message_id IS NULL AND received_at < ?1 ORDER BY received_at LIMIT ?2",
            "SELECT id FROM inbox WHERE received_at < ?1 ORDER BY received_at LIMIT ?2",
            "SELECT id FROM events WHERE (delivered_at IS NOT NULL OR next_attempt_at = 9223372036854775807) AND created_at < ?1 ORDER BY created_at LIMIT ?2",
            "SELECT key FROM idempotency WHERE created_at < ?1 ORDER BY created_at LIMIT ?2",
            "SELECT id FROM otps WHERE created_at < ?1 ORDER BY created_at LIMIT ?2",
            "SELECT 1 FROM status_reports WHERE message_id = ?1",
            "SELECT 1 FROM otps WHERE message_id = ?1",
        ] {
            let p = plan(&store, sql);
            assert!(p.contains("USING"), "{sql}: {p}");
            assert!(
                !p.contains("TEMP B-TREE"),
                "{sql}: sorts instead of walking: {p}"
            );
        }
    }
}
