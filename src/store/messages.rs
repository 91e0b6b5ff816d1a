//! Outbound messages and their parts: accept, queue, attempts, retries, cancellation,
//! start-up reconciliation and concatenation references. Like every query module here,
//! each function takes a `&Connection`, so several compose inside one
//! [`super::Store::write`] (one savepoint, one group commit).

use super::{Result, StoreError};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

/// A message's lifecycle: `queued → sending → sent → delivered | failed | expired |
/// cancelled` (a retry goes back from `sending` to `queued`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Waiting for its time, a modem, or a retry.
    Queued,
    /// An attempt is open: parts are going out on a modem.
    Sending,
    /// Every part reached the SMSC; no final status report yet (or none asked for).
    Sent,
    /// Every part's status report says delivered.
    Delivered,
    /// Refused for good, out of attempts, or a status report says a part failed.
    Failed,
    /// `expires_at` passed before it could go out.
    Expired,
    /// Cancelled through the API while still queued.
    Cancelled,
}

impl MessageStatus {
    /// The lower-case name stored in the database and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// The inverse of [`as_str`](Self::as_str); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            "expired" => Self::Expired,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// No further change will happen.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Delivered | Self::Failed | Self::Expired | Self::Cancelled
        )
    }
}

/// A message as the API accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The recipient, E.164 with `+`.
    pub to: String,
    /// The text to send.
    pub body: String,
    /// What the planner chose: `gsm7` or `ucs2`.
    pub encoding: String,
    /// Parts the plan needs; a long message (more than 1) gets a concatenation
    /// reference.
    pub parts_total: u32,
    /// 0–1000, higher first (`otp` 300, `high` 200, `normal` 100, `bulk` 0).
    pub priority: i32,
    /// Not before this, ms since the Unix epoch; `None`: at once.
    pub send_at: Option<i64>,
    /// Expire instead of sending after this, ms since the Unix epoch; `None`: never.
    pub expires_at: Option<i64>,
    /// Ask for status reports (TP-SRR).
    pub status_report: bool,
    /// Class 0: shown at once, not stored by the handset.
    pub flash: bool,
    /// TP-VP in seconds; `None`: the SMSC's default.
    pub validity_secs: Option<u32>,
    /// Send only from this SIM (ICCID); `None`: any SIM the pool picks.
    pub pinned_sim: Option<String>,
    /// The caller's labels, returned as given.
    pub tags: Vec<String>,
    /// Where this message's webhook events also go; `None`: only the configured hooks.
    pub callback_url: Option<String>,
    /// The body is a secret (a one-time code): never shown by the API or logs.
    pub masked: bool,
}

/// One part's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartRecord {
    /// The part's number, from 1.
    pub seq: u32,
    /// `pending`, `sending`, `sent`, `delivered` or `failed`.
    pub status: String,
    /// TP-MR the modem answered; `None` until the SMSC accepted the part (and then it
    /// is never sent again).
    pub mr: Option<u8>,
    /// ICCID of the SIM it went out on (or is going out on).
    pub sim: Option<String>,
    /// The modem's name it went out on.
    pub modem: Option<String>,
    /// When the SMSC accepted it, ms since the Unix epoch.
    pub sent_at: Option<i64>,
    /// When the last status report for it arrived, ms since the Unix epoch.
    pub report_at: Option<i64>,
    /// TP-ST of the last status report.
    pub report_status: Option<u8>,
}

/// A stored message with its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Not before this (unix ms): the later of creation, `send_at` and the next retry.
    pub due: i64,
    /// The message id the API uses.
    pub id: i64,
    /// When it was accepted, ms since the Unix epoch.
    pub created_at: i64,
    /// Its last change, ms since the Unix epoch.
    pub updated_at: i64,
    /// The recipient, E.164 with `+`.
    pub to: String,
    /// The text (a one-time code when `masked`).
    pub body: String,
    /// `gsm7` or `ucs2`, as planned.
    pub encoding: String,
    /// Parts the message is sent as.
    pub parts_total: u32,
    /// 0–1000, higher first.
    pub priority: i32,
    /// Not before this, ms since the Unix epoch; `None`: at once.
    pub send_at: Option<i64>,
    /// Expire instead of sending after this, ms since the Unix epoch; `None`: never.
    pub expires_at: Option<i64>,
    /// Where the message is in its lifecycle.
    pub status: MessageStatus,
    /// Status reports were asked for.
    pub status_report: bool,
    /// Sent as class 0.
    pub flash: bool,
    /// TP-VP in seconds; `None`: the SMSC's default.
    pub validity_secs: Option<u32>,
    /// The only SIM (ICCID) it may go out on; `None`: any.
    pub pinned_sim: Option<String>,
    /// The caller's labels.
    pub tags: Vec<String>,
    /// Where this message's webhook events also go.
    pub callback_url: Option<String>,
    /// The concatenation reference of its parts (1–255); 0 for a single-part message.
    pub concat_ref: u16,
    /// Attempts started so far.
    pub attempts: u32,
    /// When a retry is due, ms since the Unix epoch; `None` unless one is scheduled.
    pub next_attempt_at: Option<i64>,
    /// ICCID of the SIM of the latest attempt; `None` before the first.
    pub sim: Option<String>,
    /// The modem's name of the latest attempt; `None` before the first.
    pub modem: Option<String>,
    /// The latest failure's code (e.g. `expired`, `interrupted`); `None` if nothing
    /// failed.
    pub error_code: Option<String>,
    /// The latest failure in words.
    pub error: Option<String>,
    /// A part may have reached the SMSC before a failure or a crash; if it was sent
    /// again, the recipient may have it twice.
    pub possible_duplicate: bool,
    /// The body is a secret (a one-time code): never shown by the API or logs.
    pub masked: bool,
    /// Every part's state, in order; empty where a query does not load them.
    pub parts: Vec<PartRecord>,
}

pub(super) const MESSAGE_COLUMNS: &str = "id, created_at, updated_at, to_number, body, encoding, \
    parts_total, priority, send_at, expires_at, status, status_report, flash, validity_secs, \
    pinned_sim, tags, callback_url, concat_ref, attempts, next_attempt_at, sim, modem, \
    error_code, error, possible_duplicate, masked, due";

pub(super) fn message_from_row(r: &Row<'_>) -> rusqlite::Result<MessageRecord> {
    let status: String = r.get(10)?;
    let tags: String = r.get(15)?;
    Ok(MessageRecord {
        id: r.get(0)?,
        created_at: r.get(1)?,
        updated_at: r.get(2)?,
        to: r.get(3)?,
        body: r.get(4)?,
        encoding: r.get(5)?,
        parts_total: r.get(6)?,
        priority: r.get(7)?,
        send_at: r.get(8)?,
        expires_at: r.get(9)?,
        status: MessageStatus::parse(&status).unwrap_or(MessageStatus::Failed),
        status_report: r.get(11)?,
        flash: r.get(12)?,
        validity_secs: r.get(13)?,
        pinned_sim: r.get(14)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        callback_url: r.get(16)?,
        concat_ref: r.get(17)?,
        attempts: r.get(18)?,
        next_attempt_at: r.get(19)?,
        sim: r.get(20)?,
        modem: r.get(21)?,
        error_code: r.get(22)?,
        error: r.get(23)?,
        possible_duplicate: r.get(24)?,
        masked: r.get(25)?,
        due: r.get(26)?,
        parts: Vec::new(),
    })
}

fn parts_of(conn: &Connection, id: i64) -> Result<Vec<PartRecord>> {
    let mut st = conn.prepare_cached(
        "SELECT seq, status, mr, sim, modem, sent_at, report_at, report_status \
         FROM parts WHERE message_id = ?1 ORDER BY seq",
    )?;
    let rows = st.query_map([id], |r| {
        Ok(PartRecord {
            seq: r.get(0)?,
            status: r.get(1)?,
            mr: r.get(2)?,
            sim: r.get(3)?,
            modem: r.get(4)?,
            sent_at: r.get(5)?,
            report_at: r.get(6)?,
            report_status: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How long after its last change a long message's reference stays reserved for its
/// recipient: a handset may hold an incomplete set (a part lost or late) this long, and
/// a second message under the same reference would be spliced into it.
pub const CONCAT_REF_HOLD_MS: i64 = 24 * 3600 * 1000;

/// The concatenation reference for the next long message to `to` (1–255, the 8-bit
/// form every handset reads). Per recipient, round robin, skipping references of that
/// recipient's messages still queued or sending or changed within
/// [`CONCAT_REF_HOLD_MS`] — so two long messages to one handset never share one while
/// either may still be reassembled. If all 255 are held (more than 255 long messages
/// to one number in a day), the one held longest is reused and a warning logged.
pub fn allocate_concat_ref(conn: &Connection, to: &str, now: i64) -> Result<u16> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT last_ref FROM concat_refs WHERE to_number = ?1")?
        .query_row([to], |r| r.get(0))
        .optional()?;
    let start = last.unwrap_or(0).rem_euclid(255);
    let mut held = conn.prepare_cached(
        "SELECT max(updated_at) FROM messages WHERE to_number = ?1 AND concat_ref = ?2 \
         AND parts_total > 1 AND (status IN ('queued', 'sending') OR updated_at > ?3)",
    )?;
    let mut oldest: Option<(i64, i64)> = None;
    let mut chosen = None;
    for step in 1..=255 {
        let candidate = (start + step - 1).rem_euclid(255) + 1;
        let busy: Option<i64> = held
            .query_row(params![to, candidate, now - CONCAT_REF_HOLD_MS], |r| {
                r.get(0)
            })?;
        match busy {
            None => {
                chosen = Some(candidate);
                break;
            }
            Some(at) if oldest.is_none_or(|(t, _)| at < t) => oldest = Some((at, candidate)),
            Some(_) => {}
        }
    }
    let r = match (chosen, oldest) {
        (Some(c), _) => c,
        (None, Some((_, c))) => {
            tracing::warn!(
                to,
                reference = c,
                "every concatenation reference to this number is in use; reusing the one held longest"
            );
            c
        }
        (None, None) => 1,
    };
    conn.prepare_cached(
        "INSERT INTO concat_refs (to_number, last_ref) VALUES (?1, ?2) \
         ON CONFLICT (to_number) DO UPDATE SET last_ref = excluded.last_ref",
    )?
    .execute(params![to, r])?;
    Ok(u16::try_from(r).unwrap_or(1))
}

/// Inserts a message and its pending parts; returns its id. A long message gets its
/// concatenation reference here, from [`allocate_concat_ref`].
pub fn insert_message(conn: &Connection, m: &NewMessage, now: i64) -> Result<i64> {
    let concat_ref = if m.parts_total > 1 {
        allocate_concat_ref(conn, &m.to, now)?
    } else {
        0
    };
    let tags = serde_json::to_string(&m.tags).map_err(|e| StoreError::Sqlite(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO messages (created_at, updated_at, to_number, body, encoding, parts_total, \
         priority, send_at, expires_at, status, status_report, flash, validity_secs, pinned_sim, \
         tags, callback_url, concat_ref, masked, due) \
         VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
         MAX(?1, COALESCE(?7, 0)))",
    )?
    .execute(params![
        now,
        m.to,
        m.body,
        m.encoding,
        m.parts_total,
        m.priority,
        m.send_at,
        m.expires_at,
        m.status_report,
        m.flash,
        m.validity_secs,
        m.pinned_sim,
        tags,
        m.callback_url,
        concat_ref,
        m.masked
    ])?;
    let id = conn.last_insert_rowid();
    let mut st = conn
        .prepare_cached("INSERT INTO parts (message_id, seq, status) VALUES (?1, ?2, 'pending')")?;
    for seq in 1..=m.parts_total {
        st.execute(params![id, seq])?;
    }
    Ok(id)
}

/// A message with its parts, if it exists.
pub fn get_message(conn: &Connection, id: i64) -> Result<Option<MessageRecord>> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1");
    let m = conn
        .prepare_cached(&sql)?
        .query_row([id], message_from_row)
        .optional()?;
    match m {
        Some(mut m) => {
            m.parts = parts_of(conn, id)?;
            Ok(Some(m))
        }
        None => Ok(None),
    }
}

/// A page of the queue for the dispatcher's in-memory window: up to `ready_limit`
/// messages due by `now` in send order (priority, then due time, then id), and up to
/// `upcoming_limit` due later, soonest first. Parts are not loaded (the dispatcher reads
/// a message whole when it sends it).
pub fn queue_window(
    conn: &Connection,
    now: i64,
    ready_limit: u32,
    upcoming_limit: u32,
) -> Result<(Vec<MessageRecord>, Vec<MessageRecord>)> {
    let ready = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = 'queued' AND due <= ?1 \
             ORDER BY priority DESC, due, id LIMIT ?2"
        ))?
        .query_map(params![now, ready_limit], message_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let upcoming = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = 'queued' AND due > ?1 \
             ORDER BY due, id LIMIT ?2"
        ))?
        .query_map(params![now, upcoming_limit], message_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (mut ready, mut upcoming) = (ready, upcoming);
    for m in ready.iter_mut().chain(upcoming.iter_mut()) {
        if m.attempts > 0 {
            // A retry may have parts out already: the dispatcher must not resend them.
            m.parts = parts_of(conn, m.id)?;
        }
    }
    Ok((ready, upcoming))
}

/// A filter for listing messages (newest first, keyset pagination on id).
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Only messages in this status.
    pub status: Option<MessageStatus>,
    /// Only messages to this number (E.164, exact).
    pub to: Option<String>,
    /// Only messages created at or after this, ms since the Unix epoch.
    pub since: Option<i64>,
    /// Return ids below this one (the previous page's last id).
    pub before_id: Option<i64>,
    /// Page size, clamped to 1–1000.
    pub limit: u32,
}

/// One page of messages with their parts, newest first.
pub fn list_messages(conn: &Connection, f: &MessageFilter) -> Result<Vec<MessageRecord>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE (?1 IS NULL OR status = ?1) \
         AND (?2 IS NULL OR to_number = ?2) AND (?3 IS NULL OR created_at >= ?3) \
         AND (?4 IS NULL OR id < ?4) ORDER BY id DESC LIMIT ?5"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let mut out: Vec<MessageRecord> = st
        .query_map(
            params![
                f.status.map(MessageStatus::as_str),
                f.to,
                f.since,
                f.before_id,
                f.limit.clamp(1, 1000)
            ],
            message_from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    for m in &mut out {
        m.parts = parts_of(conn, m.id)?;
    }
    Ok(out)
}

/// Counts of queued messages per priority (for metrics and `status`).
pub fn queue_depth(conn: &Connection) -> Result<Vec<(i32, i64)>> {
    let mut st = conn.prepare_cached(
        "SELECT priority, COUNT(*) FROM messages WHERE status IN ('queued', 'sending') \
         GROUP BY priority ORDER BY priority DESC",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Marks a message as going out on `sim`/`modem` and opens an attempt; the unsent
/// parts become `sending`. Must commit before the first `AT+CMGS` is written, so that
/// a crash is recognised as "in flight" at start-up.
pub fn begin_attempt(conn: &Connection, id: i64, sim: &str, modem: &str, now: i64) -> Result<i64> {
    let n = conn
        .prepare_cached(
            "UPDATE messages SET status = 'sending', attempts = attempts + 1, sim = ?2, \
             modem = ?3, updated_at = ?4, next_attempt_at = NULL \
             WHERE id = ?1 AND status = 'queued'",
        )?
        .execute(params![id, sim, modem, now])?;
    if n == 0 {
        return Err(StoreError::Conflict(format!("message {id} is not queued")));
    }
    conn.prepare_cached(
        "UPDATE parts SET status = 'sending', sim = ?2, modem = ?3 \
         WHERE message_id = ?1 AND status = 'pending'",
    )?
    .execute(params![id, sim, modem])?;
    conn.prepare_cached(
        "INSERT INTO attempts (message_id, sim, modem, started_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, sim, modem, now])?;
    Ok(conn.last_insert_rowid())
}

/// Records a part the SMSC accepted, with its message reference. A part with a recorded
/// MR is never sent again.
pub fn part_sent(
    conn: &Connection,
    id: i64,
    seq: u32,
    mr: u8,
    sim: &str,
    modem: &str,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE parts SET status = 'sent', mr = ?3, sim = ?4, modem = ?5, sent_at = ?6 \
         WHERE message_id = ?1 AND seq = ?2",
    )?
    .execute(params![id, seq, mr, sim, modem, now])?;
    conn.prepare_cached(
        "UPDATE sims SET sent_parts = sent_parts + 1, last_seen = ?2 WHERE iccid = ?1",
    )?
    .execute(params![sim, now])?;
    Ok(())
}

/// Closes an attempt with its outcome (`sent`, `temporary`, `permanent`).
pub fn finish_attempt(
    conn: &Connection,
    attempt: i64,
    outcome: &str,
    error_code: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE attempts SET finished_at = ?2, outcome = ?3, error_code = ?4, error = ?5 \
         WHERE id = ?1",
    )?
    .execute(params![attempt, now, outcome, error_code, error])?;
    Ok(())
}

/// Moves a message to a final or intermediate status, with an error where one applies.
pub fn set_status(
    conn: &Connection,
    id: i64,
    status: MessageStatus,
    error_code: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE messages SET status = ?2, error_code = COALESCE(?3, error_code), \
         error = COALESCE(?4, error), updated_at = ?5 WHERE id = ?1",
    )?
    .execute(params![id, status.as_str(), error_code, error, now])?;
    if matches!(status, MessageStatus::Failed | MessageStatus::Expired) {
        conn.prepare_cached(
            "UPDATE parts SET status = 'failed' WHERE message_id = ?1 \
             AND status IN ('pending', 'sending')",
        )?
        .execute([id])?;
        if let Some(sim) = conn
            .prepare_cached("SELECT sim FROM messages WHERE id = ?1")?
            .query_row([id], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten()
        {
            conn.prepare_cached("UPDATE sims SET failed = failed + 1 WHERE iccid = ?1")?
                .execute([sim])?;
        }
    }
    Ok(())
}

/// Marks a message sent once every part has gone out. Only from `sending`: a status
/// report may already have made it `delivered`.
pub fn mark_sent(conn: &Connection, id: i64, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE messages SET status = 'sent', updated_at = ?2 WHERE id = ?1 AND status = 'sending'",
    )?
    .execute(params![id, now])?;
    Ok(())
}

/// Flags a message whose part may have reached the SMSC before a failure or crash.
pub fn flag_possible_duplicate(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("UPDATE messages SET possible_duplicate = 1 WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Puts a message back in the queue for another try at `next_at` (unsent parts only).
pub fn schedule_retry(
    conn: &Connection,
    id: i64,
    next_at: i64,
    error_code: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE messages SET status = 'queued', next_attempt_at = ?2, error_code = ?3, \
         error = ?4, updated_at = ?5, due = MAX(due, ?2) WHERE id = ?1",
    )?
    .execute(params![id, next_at, error_code, error, now])?;
    conn.prepare_cached(
        "UPDATE parts SET status = 'pending' WHERE message_id = ?1 AND status = 'sending'",
    )?
    .execute([id])?;
    Ok(())
}

/// Cancels a message that has not started going out; returns false otherwise.
pub fn cancel(conn: &Connection, id: i64, now: i64) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE messages SET status = 'cancelled', updated_at = ?2 \
             WHERE id = ?1 AND status = 'queued'",
        )?
        .execute(params![id, now])?;
    if n > 0 {
        conn.prepare_cached("UPDATE parts SET status = 'failed' WHERE message_id = ?1")?
            .execute([id])?;
    }
    Ok(n > 0)
}

/// What to do at start-up with a part whose `AT+CMGS` was in flight at a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InFlightPolicy {
    /// Send it again: the recipient may get it twice, never zero times.
    #[default]
    AtLeastOnce,
    /// Fail it: the recipient gets it at most once.
    AtMostOnce,
}

/// One message the reconciliation touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// The message's id.
    pub id: i64,
    /// Parts that may have reached the SMSC before the crash.
    pub uncertain_parts: Vec<u32>,
    /// Put back in the queue; false when it was marked sent (all parts had an MR) or
    /// failed (at-most-once).
    pub requeued: bool,
}

/// Start-up reconciliation after a crash: messages left in `sending` keep the parts with
/// a recorded MR (never sent again); parts without one were possibly in flight, and
/// are resent or failed per `policy`, the message flagged as a possible duplicate.
pub fn reconcile(conn: &Connection, policy: InFlightPolicy, now: i64) -> Result<Vec<Reconciled>> {
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM messages WHERE status = 'sending'")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for id in ids {
        let uncertain: Vec<u32> = conn
            .prepare_cached(
                "SELECT seq FROM parts WHERE message_id = ?1 AND status = 'sending' ORDER BY seq",
            )?
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        conn.prepare_cached(
            "UPDATE attempts SET finished_at = ?2, outcome = 'crashed' \
             WHERE message_id = ?1 AND finished_at IS NULL",
        )?
        .execute(params![id, now])?;
        let all_sent: bool = conn
            .prepare_cached(
                "SELECT COUNT(*) = 0 FROM parts WHERE message_id = ?1 AND status IN ('pending', 'sending')",
            )?
            .query_row([id], |r| r.get(0))?;
        let requeued = if all_sent {
            set_status(conn, id, MessageStatus::Sent, None, None, now)?;
            false
        } else if policy == InFlightPolicy::AtMostOnce && !uncertain.is_empty() {
            set_status(
                conn,
                id,
                MessageStatus::Failed,
                Some("interrupted"),
                Some("the daemon stopped while this message was being sent (at-most-once policy)"),
                now,
            )?;
            false
        } else {
            schedule_retry(conn, id, now, None, None, now)?;
            true
        };
        if !uncertain.is_empty() {
            conn.prepare_cached("UPDATE messages SET possible_duplicate = 1 WHERE id = ?1")?
                .execute([id])?;
        }
        out.push(Reconciled {
            id,
            uncertain_parts: uncertain,
            requeued,
        });
    }
    Ok(out)
}
