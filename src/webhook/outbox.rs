//! The worker's pick of due outbox rows, destination by destination.
//!
//! [`crate::store::due_events`] returns the most overdue rows first, a fixed number of
//! them; when those all belong to a destination that is busy or resting, the rows
//! behind them would wait (audit #10, finding 3). This walks the due rows in the same
//! order (on the `events_due` index) and passes over those the [`Scheduler`] does not
//! let start, reading only `id` and `url` of the rows it passes over.
//!
//! It reads the store's `events` table directly (same columns as `store::events`);
//! it belongs next to `due_events` in `src/store/events.rs` once that file can change.

use super::sched::{Scheduler, Verdict, destination};
use crate::store::{self, EventRow};
use rusqlite::{Connection, params};
use std::collections::{HashMap, HashSet};

/// A row to post now.
pub(crate) struct Pick {
    pub row: EventRow,
    pub dest: String,
    pub configured: bool,
}

/// What [`pick_due`] found.
pub(crate) struct Picked {
    pub rows: Vec<Pick>,
    /// The end of the earliest rest that kept a due row back (wake up then).
    pub resting_until: Option<i64>,
}

/// Due rows (by `now`) that may start, in due order, registered in `sched` as started;
/// `in_flight` rows are skipped.
pub(crate) fn pick_due(
    conn: &Connection,
    now: i64,
    sched: &mut Scheduler,
    in_flight: &HashSet<i64>,
    configured: &HashSet<String>,
) -> store::Result<Picked> {
    let mut picked = Picked {
        rows: Vec::new(),
        resting_until: None,
    };
    if !sched.has_room() {
        return Ok(picked);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, url, created_at, kind, payload, attempts, next_attempt_at, \
         delivered_at, last_error FROM events WHERE delivered_at IS NULL \
         AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id",
    )?;
    let mut rows = stmt.query(params![now])?;
    // Destination of each URL seen in this pass (callback URLs repeat).
    let mut dests: HashMap<String, (String, bool)> = HashMap::new();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        if in_flight.contains(&id) {
            continue;
        }
        let url = r.get::<_, Option<String>>(1)?.unwrap_or_default();
        let (dest, is_configured) = dests
            .entry(url.clone())
            .or_insert_with(|| {
                let c = configured.contains(&url);
                (destination(&url, c), c)
            })
            .clone();
        match sched.verdict(&dest, is_configured, now) {
            Verdict::Go => {}
            Verdict::Busy => continue,
            Verdict::Resting(until) => {
                picked.resting_until = Some(picked.resting_until.map_or(until, |t| t.min(until)));
                continue;
            }
        }
        let row = EventRow {
            id,
            url,
            created_at: r.get(2)?,
            kind: r.get(3)?,
            payload: r.get(4)?,
            attempts: r.get(5)?,
            next_attempt_at: r.get(6)?,
            delivered_at: r.get(7)?,
            last_error: r.get(8)?,
        };
        sched.start(&dest, is_configured);
        picked.rows.push(Pick {
            row,
            dest,
            configured: is_configured,
        });
        if !sched.has_room() {
            break;
        }
    }
    Ok(picked)
}
