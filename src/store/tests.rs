//! Store tests on a real SQLite file in a temporary directory.

use super::*;

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("db/gsmgw.db")).unwrap();
    (dir, store)
}

pub(super) fn msg(to: &str, parts: u32) -> NewMessage {
    NewMessage {
        to: to.into(),
        body: "hello".into(),
        encoding: "gsm7".into(),
        parts_total: parts,
        priority: 0,
        send_at: None,
        expires_at: None,
        status_report: true,
        flash: false,
        validity_secs: None,
        pinned_sim: None,
        tags: vec!["t".into()],
        callback_url: None,
        masked: false,
    }
}

#[test]
fn insert_get_and_reopen() {
    let (dir, store) = temp_store();
    let m = msg("+491701234567", 3);
    let id = store
        .write_blocking(move |c| insert_message(c, &m, 1000))
        .unwrap();
    let got = store
        .read_blocking(|c| get_message(c, id))
        .unwrap()
        .unwrap();
    assert_eq!(got.status, MessageStatus::Queued);
    assert_eq!(got.parts.len(), 3);
    assert_eq!(got.tags, vec!["t".to_string()]);
    store.close();
    // Durable: a new handle on the same file sees it.
    let again = Store::open(dir.path().join("db/gsmgw.db")).unwrap();
    assert!(
        again
            .read_blocking(|c| get_message(c, id))
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_failing_write_does_not_undo_its_group() {
    let (_dir, store) = temp_store();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let results = rt.block_on(async {
        let mut handles = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.write(move |c| {
                    let id = insert_message(c, &msg("+4915550000001", 1), i)?;
                    if i % 10 == 0 {
                        return Err(StoreError::Conflict("rejected on purpose".into()));
                    }
                    Ok(id)
                })
                .await
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 180);
    let stored: i64 = store
        .read_blocking(|c| Ok(c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(
        stored, 180,
        "rejected writes left nothing behind, the rest all committed"
    );
}

#[test]
fn attempt_lifecycle_and_reconcile_after_crash() {
    let (_dir, store) = temp_store();
    let sim = "8949000000000000001";
    let id = store
        .write_blocking(move |c| {
            upsert_sim(c, sim, Some("262011234567890"), "modem0", None, 1)?;
            insert_message(c, &msg("+491701234567", 3), 1)
        })
        .unwrap();
    store
        .write_blocking(move |c| {
            begin_attempt(c, id, sim, "modem0", 2)?;
            part_sent(c, id, 1, 250, sim, "modem0", 3)
        })
        .unwrap();
    // The daemon dies here: part 1 has an MR, parts 2 and 3 were (maybe) in flight.
    let r = store
        .write_blocking(|c| reconcile(c, InFlightPolicy::AtLeastOnce, 10))
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].uncertain_parts, vec![2, 3]);
    assert!(r[0].requeued);
    let m = store
        .read_blocking(|c| get_message(c, id))
        .unwrap()
        .unwrap();
    assert_eq!(m.status, MessageStatus::Queued);
    assert!(m.possible_duplicate);
    assert_eq!(
        m.parts[0].status, "sent",
        "a part with an MR is never sent again"
    );
    assert_eq!(m.parts[0].mr, Some(250));
    assert_eq!(m.parts[1].status, "pending");
    // At-most-once fails it instead.
    store
        .write_blocking(move |c| begin_attempt(c, id, sim, "modem1", 11).map(|_| ()))
        .unwrap();
    store
        .write_blocking(|c| reconcile(c, InFlightPolicy::AtMostOnce, 12))
        .unwrap();
    let m = store
        .read_blocking(|c| get_message(c, id))
        .unwrap()
        .unwrap();
    assert_eq!(m.status, MessageStatus::Failed);
    let sims = store.read_blocking(list_sims).unwrap();
    assert_eq!(sims[0].sent_parts, 1);
}

#[test]
fn status_reports_match_sim_mr_recipient_and_window_across_wrap() {
    let (_dir, store) = temp_store();
    let sim = "8949000000000000002";
    let to = "+491701234567";
    // Two messages to the same number whose parts got MR 5: one long ago (before the
    // MR counter wrapped) and one now. The report belongs to the recent one.
    let (old, new) = store
        .write_blocking(move |c| {
            upsert_sim(c, sim, None, "modem0", None, 0)?;
            let old = insert_message(c, &msg(to, 1), 0)?;
            begin_attempt(c, old, sim, "modem0", 0)?;
            part_sent(c, old, 1, 5, sim, "modem0", 1_000)?;
            let new = insert_message(c, &msg(to, 2), 0)?;
            begin_attempt(c, new, sim, "modem0", 0)?;
            part_sent(c, new, 1, 4, sim, "modem0", 5_000_000)?;
            part_sent(c, new, 2, 5, sim, "modem0", 5_000_001)?;
            set_status(c, new, MessageStatus::Sent, None, None, 5_000_002)?;
            Ok((old, new))
        })
        .unwrap();
    let report = |mr: u8, recipient: &str, category: &str, code: u8| ReportIn {
        sim: Some(sim.into()),
        modem: Some("modem0".into()),
        mr,
        recipient: recipient.into(),
        status_code: code,
        category: category.into(),
        scts: None,
        discharge: None,
        pdu: "00".into(),
    };
    let window = 3_600_000;
    let r = store
        .write_blocking(move |c| {
            record_status_report(
                c,
                &report(5, "491701234567", "delivered", 0),
                window,
                5_000_100,
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!((r.message_id, r.part_seq, r.new_status), (new, 2, None));
    let r = store
        .write_blocking(move |c| {
            record_status_report(c, &report(4, to, "delivered", 0), window, 5_000_200)
        })
        .unwrap()
        .unwrap();
    assert_eq!(r.new_status, Some(MessageStatus::Delivered));
    // Wrong recipient or outside the window: kept, unmatched.
    let none = store
        .write_blocking(move |c| {
            record_status_report(c, &report(5, "+4900000", "delivered", 0), window, 5_000_300)
        })
        .unwrap();
    assert!(none.is_none());
    let m = store
        .read_blocking(move |c| get_message(c, old))
        .unwrap()
        .unwrap();
    assert_eq!(m.parts[0].status, "sent", "the old message was not touched");
    let kept: i64 = store
        .read_blocking(
            |c| Ok(c.query_row("SELECT COUNT(*) FROM status_reports", [], |r| r.get(0))?),
        )
        .unwrap();
    assert_eq!(kept, 3);
}

#[test]
fn cancel_only_while_queued() {
    let (_dir, store) = temp_store();
    let id = store
        .write_blocking(|c| insert_message(c, &msg("+491701234567", 1), 0))
        .unwrap();
    assert!(store.write_blocking(move |c| cancel(c, id, 1)).unwrap());
    assert!(!store.write_blocking(move |c| cancel(c, id, 2)).unwrap());
    let m = store
        .read_blocking(move |c| get_message(c, id))
        .unwrap()
        .unwrap();
    assert_eq!(m.status, MessageStatus::Cancelled);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    assert!(matches!(
        Store::open(&path),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

/// A hex DELIVER PDU with its (reference, total, seq).
type TestPart = (String, Option<crate::pdu::inbound::PartOf>);

/// DELIVER PDUs for `text` as a sender's handset would split it.
fn deliver_parts(text: &str, reference: u16) -> Vec<TestPart> {
    use crate::pdu::*;
    let mut opts = SubmitOptions::new(Address::parse("+491701234567").unwrap());
    opts.concat_ref = reference;
    let (_, pdus) = encode_submit(text, &opts).unwrap();
    pdus.iter()
        .map(|p| {
            let Tpdu::Submit(s) = decode(&p.bytes, true).unwrap().tpdu else {
                panic!()
            };
            let d = Pdu {
                smsc: Some(Address::parse("+491710760000").unwrap()),
                tpdu: Tpdu::Deliver(Deliver {
                    more_messages: false,
                    loop_prevention: false,
                    status_report_indication: false,
                    reply_path: false,
                    originator: Address::parse("+491701234567").unwrap(),
                    pid: 0,
                    dcs: s.dcs,
                    timestamp: Timestamp {
                        year: 2026,
                        month: 11,
                        day: 27,
                        hour: 12,
                        minute: 0,
                        second: 0,
                        tz_quarters: 4,
                    },
                    user_data: s.user_data,
                }),
            };
            let hex = d.encode().unwrap().hex();
            // The part's place as the sink sees it: classified by the pure module.
            let inbound::Received::Part(facts) = inbound::classify(&Ok(d)) else {
                panic!("not a part")
            };
            (hex, facts.concat)
        })
        .collect()
}

fn part(pdu: &TestPart, at: i64) -> InboundPart {
    InboundPart {
        sim: Some("8949000000000000009".into()),
        modem: "modem3".into(),
        sender: "+491701234567".into(),
        pdu: pdu.0.clone(),
        concat: pdu.1,
        sent_at: None,
        received_at: at,
    }
}

#[test]
fn multipart_reassembly_any_order_with_duplicates() {
    let (_dir, store) = temp_store();
    let text = format!("{} 👋🏽 the end", "Ünïcødé and emoji ".repeat(12));
    let parts = deliver_parts(&text, 300);
    assert!(parts.len() >= 3);
    let mut order: Vec<usize> = (0..parts.len()).rev().collect();
    order.insert(1, order[0]); // a duplicate of the last part, early
    let mut done = Vec::new();
    for (n, i) in order.into_iter().enumerate() {
        let p = part(&parts[i], n as i64);
        if let Some(id) = store
            .write_blocking(move |c| insert_inbound(c, &p))
            .unwrap()
        {
            done.push(id);
        }
    }
    assert_eq!(done.len(), 1, "one message, however the parts came");
    let m = store
        .read_blocking(move |c| get_inbox(c, done[0]))
        .unwrap()
        .unwrap();
    assert_eq!(m.text.as_deref(), Some(text.as_str()));
    assert!(m.complete);
    assert_eq!(m.parts_received as usize, parts.len());
    assert_eq!(m.sent_at.as_deref(), Some("2026-11-27T12:00:00+01:00"));
}

#[test]
fn incomplete_sets_are_delivered_after_the_timeout() {
    let (_dir, store) = temp_store();
    let parts = deliver_parts(&"x".repeat(400), 9);
    let first = part(&parts[0], 1_000);
    assert_eq!(
        store
            .write_blocking(move |c| insert_inbound(c, &first))
            .unwrap(),
        None
    );
    let nothing = store
        .write_blocking(|c| expire_reassembly(c, 500, 2_000))
        .unwrap();
    assert!(nothing.is_empty());
    let ids = store
        .write_blocking(|c| expire_reassembly(c, 1_001, 2_000))
        .unwrap();
    assert_eq!(ids.len(), 1);
    let id = ids[0];
    let m = store
        .read_blocking(move |c| get_inbox(c, id))
        .unwrap()
        .unwrap();
    assert!(!m.complete);
    assert_eq!((m.parts_received, m.parts_total), (1, 3));
    assert_eq!(m.text.as_deref(), Some("x".repeat(153).as_str()));
    assert_eq!(store.read_blocking(oldest_reassembly).unwrap(), None);
}

/// Issue #10, finding 1: a write that panics fails alone; the writer goes on.
#[test]
fn a_panicking_write_fails_alone_and_the_writer_goes_on() {
    let (_d, store) = temp_store();
    let m = msg("+491701234567", 1);
    let r = store.write_blocking(move |c| -> Result<()> {
        insert_message(c, &m, 1000)?;
        panic!("boom inside a write");
    });
    assert!(
        matches!(r, Err(StoreError::Panicked(ref w)) if w.contains("boom")),
        "{r:?}"
    );
    // Rolled back, and the next write commits.
    let m = msg("+491701234567", 1);
    let id = store
        .write_blocking(move |c| insert_message(c, &m, 1000))
        .unwrap();
    let n: i64 = store
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!((id, n), (1, 1), "the panicking write left nothing behind");
    assert!(store.writer_failure().is_none());
}

/// Issue #10, finding 1: if the writer thread stops all the same, the store says why
/// and wakes whoever waits for it (the daemon, which then exits).
#[tokio::test]
async fn a_stopped_writer_is_reported() {
    let (_d, store) = temp_store();
    assert!(store.writer_failure().is_none());
    store.crash_writer_for_tests();
    let why = tokio::time::timeout(std::time::Duration::from_secs(10), store.writer_stopped())
        .await
        .expect("writer_stopped resolves");
    assert!(why.contains("on purpose"), "{why}");
    assert!(store.writer_failure().is_some());
    assert!(matches!(
        store.write(|_| Ok(())).await,
        Err(StoreError::WriterGone)
    ));
}

/// Issue #10, finding 11: while another process holds the write lock, the writes
/// queued behind the first one fail together after one busy timeout, not one each.
#[test]
fn queued_writes_share_one_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let busy = std::time::Duration::from_millis(300);
    let store = Store::open_with(&path, busy).unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = std::time::Instant::now();
    let waiting: Vec<_> = (0..20).map(|_| store.submit(|_| Ok(())).unwrap()).collect();
    let mut failed = 0;
    for rx in waiting {
        if let Ok(Err(StoreError::Unavailable(_))) = rx.blocking_recv() {
            failed += 1;
        }
    }
    let took = started.elapsed();
    assert_eq!(failed, 20, "all fail as unavailable while locked");
    // One wait each would be 20 × 300 ms = 6 s.
    assert!(took < busy * 10, "took {took:?}");
    assert!(store.last_write_error().is_some());
    other.execute_batch("COMMIT").unwrap();
    // Closed, not just committed: nothing of the other process stays behind (once, under
    // CI load, the next write still found the database locked).
    drop(other);
    store.write_blocking(|_| Ok(())).unwrap();
    assert!(
        store.last_write_error().is_none(),
        "a good commit clears it"
    );
}

/// Issue #10, finding 6: the database and its WAL/SHM files are private (0600), and
/// an older file with a looser mode is tightened.
#[test]
fn database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = Store::open(&path).unwrap();
    let m = msg("+491701234567", 1);
    store
        .write_blocking(move |c| insert_message(c, &m, 1000))
        .unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let f = format!("{}{suffix}", path.display());
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} is {mode:o}");
    }
}

/// Issue #10, finding 6: a one-time code's text is gone from the row once the message
/// can no longer be sent again; an ordinary message keeps its text.
#[test]
fn masked_bodies_are_redacted_once_sent() {
    let (_d, store) = temp_store();
    let secret = NewMessage {
        body: "Your security code is 482913".into(),
        masked: true,
        ..msg("+491701234567", 1)
    };
    let plain = msg("+491701234568", 1);
    let (a, b) = store
        .write_blocking(move |c| {
            let a = insert_message(c, &secret, 1000)?;
            let b = insert_message(c, &plain, 1000)?;
            for id in [a, b] {
                c.execute("UPDATE messages SET status = 'sending' WHERE id = ?1", [id])?;
            }
            Ok((a, b))
        })
        .unwrap();
    let body = |id: i64| {
        store
            .read_blocking(move |c| Ok(get_message(c, id)?.unwrap().body))
            .unwrap()
    };
    assert_eq!(
        body(a),
        "Your security code is 482913",
        "kept while it may be sent"
    );
    store
        .write_blocking(move |c| {
            mark_sent(c, a, 2000)?;
            mark_sent(c, b, 2000)
        })
        .unwrap();
    assert_eq!(body(a), "", "redacted once handed to the modem");
    assert_eq!(body(b), "hello");
    // Not left behind in the file either (secure_delete), once the WAL is folded in.
    let other = rusqlite::Connection::open(store.path()).unwrap();
    other
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let bytes = std::fs::read(store.path()).unwrap();
    assert!(
        !bytes.windows(6).any(|w| w == b"482913"),
        "the code is still in the database file"
    );
}
