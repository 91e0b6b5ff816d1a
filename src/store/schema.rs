//! The database schema as numbered migrations embedded in the binary. `PRAGMA
//! user_version` records how many have run; each runs in its own transaction, so a
//! crash mid-migration leaves the previous version intact.

use rusqlite::Connection;

/// Every migration in order; never edit one that has shipped, append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        created_at      INTEGER NOT NULL,          -- unix ms
        updated_at      INTEGER NOT NULL,
        to_number       TEXT NOT NULL,             -- E.164
        body            TEXT NOT NULL,
        encoding        TEXT NOT NULL,             -- gsm7 | ucs2
        parts_total     INTEGER NOT NULL,
        priority        INTEGER NOT NULL,          -- higher goes first
        send_at         INTEGER,                   -- not before (unix ms)
        expires_at      INTEGER,                   -- give up after (unix ms)
        status          TEXT NOT NULL,             -- queued|sending|sent|delivered|failed|expired|cancelled
        status_report   INTEGER NOT NULL,
        flash           INTEGER NOT NULL,
        validity_secs   INTEGER,
        pinned_sim      TEXT,
        tags            TEXT NOT NULL DEFAULT '[]',
        callback_url    TEXT,
        concat_ref      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        sim             TEXT,
        modem           TEXT,
        error_code      TEXT,
        error           TEXT,
        possible_duplicate INTEGER NOT NULL DEFAULT 0,
        masked          INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX messages_pending ON messages(status) WHERE status IN ('queued', 'sending');
    CREATE INDEX messages_to ON messages(to_number, id);

    CREATE TABLE parts (
        message_id   INTEGER NOT NULL REFERENCES messages(id),
        seq          INTEGER NOT NULL,             -- 1-based
        status       TEXT NOT NULL,                -- pending|sending|sent|delivered|failed
        mr           INTEGER,
        sim          TEXT,
        modem        TEXT,
        sent_at      INTEGER,
        report_at    INTEGER,
        report_status INTEGER,
        PRIMARY KEY (message_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX parts_mr ON parts(sim, mr, sent_at) WHERE mr IS NOT NULL;

    CREATE TABLE attempts (
        id          INTEGER PRIMARY KEY,
        message_id  INTEGER NOT NULL REFERENCES messages(id),
        sim         TEXT,
        modem       TEXT,
        started_at  INTEGER NOT NULL,
        finished_at INTEGER,
        outcome     TEXT,                          -- sent|temporary|permanent|crashed
        error_code  TEXT,
        error       TEXT
    );
    CREATE INDEX attempts_message ON attempts(message_id);

    CREATE TABLE status_reports (
        id           INTEGER PRIMARY KEY,
        received_at  INTEGER NOT NULL,
        sim          TEXT,
        modem        TEXT,
        mr           INTEGER NOT NULL,
        recipient    TEXT NOT NULL,
        status_code  INTEGER NOT NULL,
        category     TEXT NOT NULL,
        scts         TEXT,
        discharge    TEXT,
        pdu          TEXT NOT NULL,
        message_id   INTEGER,
        part_seq     INTEGER
    );

    CREATE TABLE inbox (
        id           INTEGER PRIMARY KEY,
        received_at  INTEGER NOT NULL,
        sim          TEXT,
        modem        TEXT,
        sender       TEXT NOT NULL,
        body         TEXT,
        parts_total  INTEGER NOT NULL,
        parts_received INTEGER NOT NULL,
        complete     INTEGER NOT NULL,
        sent_at      TEXT,                         -- the SMSC timestamp, RFC 3339
        pdus         TEXT NOT NULL                 -- JSON list of hex PDUs
    );

    CREATE TABLE inbox_parts (
        sim          TEXT NOT NULL,
        sender       TEXT NOT NULL,
        ref          INTEGER NOT NULL,
        total        INTEGER NOT NULL,
        seq          INTEGER NOT NULL,
        received_at  INTEGER NOT NULL,
        modem        TEXT,
        pdu          TEXT NOT NULL,
        PRIMARY KEY (sim, sender, ref, total, seq)
    ) WITHOUT ROWID;

    CREATE TABLE sims (
        iccid          TEXT PRIMARY KEY,
        imsi           TEXT,
        first_seen     INTEGER NOT NULL,
        last_seen      INTEGER NOT NULL,
        last_modem     TEXT,
        operator       TEXT,
        sent_parts     INTEGER NOT NULL DEFAULT 0,
        failed         INTEGER NOT NULL DEFAULT 0,
        received       INTEGER NOT NULL DEFAULT 0,
        usage          TEXT NOT NULL DEFAULT '{}'  -- quota windows, JSON
    ) WITHOUT ROWID;

    CREATE TABLE events (
        id              INTEGER PRIMARY KEY,
        created_at      INTEGER NOT NULL,
        kind            TEXT NOT NULL,
        payload         TEXT NOT NULL,
        url             TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        delivered_at    INTEGER,
        last_error      TEXT
    );
    CREATE INDEX events_due ON events(next_attempt_at) WHERE delivered_at IS NULL;

    CREATE TABLE idempotency (
        key          TEXT PRIMARY KEY,
        body_hash    TEXT NOT NULL,
        status       INTEGER NOT NULL,
        response     TEXT NOT NULL,
        created_at   INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 2: PINs a SIM rejected, so no restart ever retries them (PUK protection).
    r#"
    CREATE TABLE rejected_pins (
        iccid        TEXT PRIMARY KEY,
        fingerprint  TEXT NOT NULL,                -- SHA-256 of the PIN, never the PIN
        rejected_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 3: the queue order as a column with indexes, so the dispatcher can keep only a
    // window of a huge queue in memory and page the rest in.
    r#"
    ALTER TABLE messages ADD COLUMN due INTEGER NOT NULL DEFAULT 0;
    UPDATE messages SET due = MAX(created_at, COALESCE(send_at, 0), COALESCE(next_attempt_at, 0));
    CREATE INDEX messages_ready ON messages(priority DESC, due, id) WHERE status = 'queued';
    CREATE INDEX messages_upcoming ON messages(due, id) WHERE status = 'queued';
    "#,
    // 4: the API's tables — message groups (an appointment and its reminder) and the
    // template a message came from, templates with the shipped defaults, one-time codes
    // (hashes only), and the opt-out (suppression) list.
    r#"
    ALTER TABLE messages ADD COLUMN group_id INTEGER;
    ALTER TABLE messages ADD COLUMN template TEXT;
    CREATE INDEX messages_group ON messages(group_id) WHERE group_id IS NOT NULL;

    CREATE TABLE templates (
        name         TEXT PRIMARY KEY,
        body         TEXT NOT NULL,                -- {{variable}} placeholders
        description  TEXT,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO templates (name, body, description, created_at, updated_at) VALUES
        ('order_confirmation',
         'Thanks for your order {{order}}: {{items}}, total {{total}}. We will text you when it ships.',
         'Order confirmation (vars: order, items, total)', 0, 0),
        ('shipping_update',
         'Your order {{order}} is on its way. Track it: {{tracking_url}}',
         'Shipping update (vars: order, tracking_url)', 0, 0),
        ('appointment_confirmation',
         'Hi {{name}}, your appointment on {{when}} is confirmed.',
         'Appointment confirmation (vars: name, when)', 0, 0),
        ('appointment_reminder',
         'Reminder: {{name}}, your appointment is on {{when}}.',
         'Appointment reminder, sent remind_before the appointment (vars: name, when)', 0, 0),
        ('security_code',
         'Your security code is {{code}}. It expires in {{minutes}} minutes. Do not share it.',
         'One-time code for POST /v1/otp (vars: code, minutes)', 0, 0);

    CREATE TABLE otps (
        id           INTEGER PRIMARY KEY,
        message_id   INTEGER NOT NULL REFERENCES messages(id),
        to_number    TEXT NOT NULL,
        salt         TEXT NOT NULL,                -- random, per code
        code_hash    TEXT NOT NULL,                -- SHA-256(salt || code), never the code
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        verified_at  INTEGER
    );
    CREATE INDEX otps_to ON otps(to_number, created_at);

    CREATE TABLE suppressions (
        number       TEXT PRIMARY KEY,             -- E.164
        created_at   INTEGER NOT NULL,
        source       TEXT NOT NULL,                -- inbound | admin
        keyword      TEXT,                         -- the inbound keyword that added it
        note         TEXT
    ) WITHOUT ROWID;
    "#,
    // 5: who created a message (the API token's name: a send token acts only on its
    // own messages and codes), whose callback an event is (a cap on the callbacks one
    // token may have pending), and one-time codes redacted once they can no longer be
    // sent again (the salted hash in `otps` is all verification needs).
    r#"
    ALTER TABLE messages ADD COLUMN owner TEXT;
    ALTER TABLE events ADD COLUMN owner TEXT;
    CREATE INDEX events_owner_pending ON events(owner)
        WHERE owner IS NOT NULL AND delivered_at IS NULL;
    CREATE TRIGGER messages_redact_masked AFTER UPDATE OF status ON messages
    WHEN NEW.masked <> 0 AND NEW.body <> ''
         AND NEW.status IN ('sent', 'delivered', 'failed', 'expired', 'cancelled')
    BEGIN
        UPDATE messages SET body = '' WHERE id = NEW.id;
    END;
    UPDATE messages SET body = ''
        WHERE masked <> 0 AND status IN ('sent', 'delivered', 'failed', 'expired', 'cancelled');
    "#,
    // 6: concatenation references from one allocator, per recipient: the last one
    // handed out, and an index to see which are still in use for a number.
    r#"
    CREATE TABLE concat_refs (
        to_number    TEXT PRIMARY KEY,
        last_ref     INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX messages_to_ref ON messages(to_number, concat_ref, updated_at)
        WHERE parts_total > 1;
    "#,
    // 7: retention (store/retention.rs): what each pruning batch walks, oldest first,
    // instead of scanning a table that has grown for months.
    r#"
    CREATE INDEX messages_finished ON messages(updated_at)
        WHERE status IN ('sent', 'delivered', 'failed', 'expired', 'cancelled');
    CREATE INDEX status_reports_message ON status_reports(message_id)
        WHERE message_id IS NOT NULL;
    CREATE INDEX status_reports_unmatched ON status_reports(received_at)
        WHERE message_id IS NULL;
    CREATE INDEX inbox_received ON inbox(received_at);
    -- A network's redelivery of a single-part SMS is found by sender and SMSC timestamp.
    CREATE INDEX inbox_redelivery ON inbox(sender, sent_at);
    CREATE INDEX events_finished ON events(created_at)
        WHERE delivered_at IS NOT NULL OR next_attempt_at = 9223372036854775807;
    CREATE INDEX idempotency_created ON idempotency(created_at);
    CREATE INDEX otps_message ON otps(message_id);
    CREATE INDEX otps_created ON otps(created_at);
    "#,
];

/// Brings the schema up to date; returns the version it ended at.
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<usize> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let current = usize::try_from(current).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(MIGRATIONS.len())
}

/// The version this binary knows; a database from a newer binary is refused.
pub(crate) const VERSION: usize = MIGRATIONS.len();
