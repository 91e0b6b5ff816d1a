//! Dispatcher tests with fake modems: routing, priorities, failover, permanent errors,
//! expiry and part bookkeeping, against a real store.

use super::*;
use crate::at::Registration;
use crate::clock::Clock;
use crate::pool::PoolConfig;
use crate::store::NewMessage;
use std::sync::Mutex;

/// A modem that records what it was asked to send and answers from a script.
struct FakeModem {
    name: String,
    sent: Mutex<Vec<(i64, Vec<u32>)>>,
    /// Failures to return, in order; then success.
    failures: Mutex<Vec<SendFailure>>,
    delay: Duration,
    next_mr: Mutex<u8>,
    log: Arc<Mutex<Vec<(String, i64)>>>,
}

impl FakeModem {
    fn new(name: &str, log: &Arc<Mutex<Vec<(String, i64)>>>) -> Arc<FakeModem> {
        Arc::new(FakeModem {
            name: name.into(),
            sent: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            delay: Duration::from_millis(30),
            next_mr: Mutex::new(0),
            log: log.clone(),
        })
    }
}

impl Outbound for FakeModem {
    fn send(&self, job: SendJob) -> outbound::BoxFuture<'_, Result<(), SendFailure>> {
        Box::pin(async move {
            self.log
                .lock()
                .unwrap()
                .push((self.name.clone(), job.message_id));
            tokio::time::sleep(self.delay).await;
            let failure = {
                let mut f = self.failures.lock().unwrap();
                (!f.is_empty()).then(|| f.remove(0))
            };
            if let Some(f) = failure {
                return Err(f);
            }
            for p in &job.parts {
                let mr = {
                    let mut m = self.next_mr.lock().unwrap();
                    *m = m.wrapping_add(1);
                    *m
                };
                let _ = job.progress.send(PartSent { seq: p.seq, mr });
            }
            self.sent
                .lock()
                .unwrap()
                .push((job.message_id, job.parts.iter().map(|p| p.seq).collect()));
            Ok(())
        })
    }
}

fn status(modem: &str, iccid: &str) -> ModemStatus {
    ModemStatus {
        modem: modem.into(),
        iccid: Some(iccid.into()),
        sim_ready: true,
        registration: Some(Registration::Home),
        signal_dbm: Some(-70),
        operator: None,
        quarantined: None,
        enabled: true,
        in_flight: 0,
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    store: Store,
    d: Dispatcher,
    events: broadcast::Receiver<StatusChange>,
    log: Arc<Mutex<Vec<(String, i64)>>>,
    /// The dispatcher's clock: messages are stamped with it.
    clock: Clock,
}

async fn rig(settings: Settings) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("t.db")).unwrap();
    let clock = settings.clock;
    let (d, _task) = Dispatcher::start(
        store.clone(),
        Pool::new(PoolConfig::default()).unwrap(),
        settings,
    )
    .await
    .unwrap();
    let events = d.subscribe();
    Rig {
        _dir: dir,
        store,
        d,
        events,
        log: Arc::new(Mutex::new(Vec::new())),
        clock,
    }
}

impl Rig {
    fn modem(&self, name: &str, iccid: &str) -> Arc<FakeModem> {
        let m = FakeModem::new(name, &self.log);
        self.d.modem_added(name.into(), m.clone());
        self.d.modem_status(status(name, iccid));
        m
    }

    async fn enqueue(&self, to: &str, text: &str, prio: i32, expires_at: Option<i64>) -> i64 {
        let plan = pdu::plan(text, &pdu::PlanOptions::default());
        let m = NewMessage {
            to: to.into(),
            body: text.into(),
            encoding: plan.encoding.name().into(),
            parts_total: plan.parts.len() as u32,
            priority: prio,
            send_at: None,
            expires_at,
            status_report: true,
            flash: false,
            validity_secs: None,
            pinned_sim: None,
            tags: vec![],
            callback_url: None,
            masked: false,
        };
        let now = self.clock.now_ms();
        let rec = self
            .store
            .write(move |c| {
                let id = store::insert_message(c, &m, now)?;
                Ok(store::get_message(c, id)?.expect("just inserted"))
            })
            .await
            .unwrap();
        self.d.enqueued(Queued::from_record(&rec));
        rec.id
    }

    /// Waits for a message to reach a status.
    async fn wait_for(&mut self, id: i64, want: MessageStatus) -> StatusChange {
        loop {
            let ev = self
                .next_event(&format!("message {id} never became {want:?}"))
                .await;
            if ev.id == id && ev.status == want {
                return ev;
            }
        }
    }

    /// The next status change, within 10 s of real time. The bound is real time, not
    /// tokio's: under paused time tokio's clock jumps whenever the runtime idles (while
    /// the store's writer thread works, say), so a tokio deadline would mean nothing.
    async fn next_event(&mut self, what: &str) -> StatusChange {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout(Duration::from_millis(100), self.events.recv()).await {
                Ok(ev) => return ev.unwrap(),
                Err(_) => assert!(std::time::Instant::now() < deadline, "{what}"),
            }
        }
    }

    async fn record(&self, id: i64) -> MessageRecord {
        self.store
            .read(move |c| store::get_message(c, id))
            .await
            .unwrap()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_goes_out_and_its_mrs_are_stored() {
    let mut r = rig(Settings::default()).await;
    let _a = r.modem("A", "8949000000000000001");
    let text = "x".repeat(300);
    let id = r
        .enqueue("+491701234567", &text, priority::NORMAL, None)
        .await;
    let ev = r.wait_for(id, MessageStatus::Sent).await;
    assert_eq!(ev.modem.as_deref(), Some("A"));
    let m = r.record(id).await;
    assert_eq!(m.status, MessageStatus::Sent);
    assert_eq!(m.parts.len(), 2);
    assert!(m.parts.iter().all(|p| p.mr.is_some() && p.status == "sent"));
    assert_eq!(m.attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otp_overtakes_a_bulk_backlog() {
    let mut r = rig(Settings::default()).await;
    // No modem yet: a bulk backlog builds up, then an OTP arrives.
    let mut bulk = Vec::new();
    for i in 0..5 {
        bulk.push(
            r.enqueue("+491700000000", &format!("bulk {i}"), priority::BULK, None)
                .await,
        );
    }
    let otp = r
        .enqueue("+491700000001", "Your code is 123456", priority::OTP, None)
        .await;
    // No pause needed: the dispatcher takes its inputs in order, so every message is
    // queued before it hears of the modem.
    let _a = r.modem("A", "8949000000000000001");
    r.wait_for(*bulk.last().unwrap(), MessageStatus::Sent).await;
    let order: Vec<i64> = r.log.lock().unwrap().iter().map(|x| x.1).collect();
    assert_eq!(order[0], otp, "the OTP went first: {order:?}");
    assert_eq!(&order[1..], &bulk[..], "then the backlog in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_failure_fails_over_to_another_sim_at_once() {
    let mut r = rig(Settings::default()).await;
    let a = r.modem("A", "8949000000000000001");
    a.failures.lock().unwrap().push(SendFailure {
        kind: FailureKind::Temporary,
        code: "cms:42".into(),
        message: "congestion".into(),
    });
    let id = r
        .enqueue("+491701234567", "hello", priority::NORMAL, None)
        .await;
    r.wait_for(id, MessageStatus::Queued).await;
    let _b = r.modem("B", "8949000000000000002");
    let ev = r.wait_for(id, MessageStatus::Sent).await;
    assert_eq!(ev.modem.as_deref(), Some("B"));
    let m = r.record(id).await;
    assert_eq!(m.attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_not_retried() {
    let mut r = rig(Settings::default()).await;
    let a = r.modem("A", "8949000000000000001");
    a.failures.lock().unwrap().push(SendFailure {
        kind: FailureKind::Permanent,
        code: "cms:1".into(),
        message: "unassigned number".into(),
    });
    let _b = r.modem("B", "8949000000000000002");
    let id = r
        .enqueue("+491701234567", "hello", priority::NORMAL, None)
        .await;
    let ev = r.wait_for(id, MessageStatus::Failed).await;
    assert_eq!(ev.error.as_deref(), Some("unassigned number"));
    assert_eq!(r.log.lock().unwrap().len(), 1, "tried once");
    assert_eq!(r.record(id).await.error_code.as_deref(), Some("cms:1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_the_maximum() {
    let settings = Settings {
        max_attempts: 3,
        timeouts: Timeouts {
            retry_base: Duration::from_millis(10),
            ..Timeouts::default()
        },
        ..Settings::default()
    };
    let mut r = rig(settings).await;
    let a = r.modem("A", "8949000000000000001");
    for _ in 0..5 {
        a.failures.lock().unwrap().push(SendFailure {
            kind: FailureKind::Temporary,
            code: "cms:41".into(),
            message: "temporary failure".into(),
        });
    }
    let id = r
        .enqueue("+491701234567", "hello", priority::NORMAL, None)
        .await;
    r.wait_for(id, MessageStatus::Failed).await;
    assert_eq!(r.record(id).await.attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn a_code_that_cannot_go_out_in_time_expires() {
    let clock = Clock::paused();
    let mut r = rig(Settings {
        clock,
        ..Settings::default()
    })
    .await;
    let expires_at = clock.now_ms() + 150;
    let id = r
        .enqueue(
            "+491701234567",
            "Your code is 1",
            priority::OTP,
            Some(expires_at),
        )
        .await;
    r.wait_for(id, MessageStatus::Expired).await;
    assert!(clock.now_ms() >= expires_at, "expired before its deadline");
    // A modem appearing later does not send it: a later, less urgent message goes out
    // on it, and it alone (the code, had it still been queued, would have gone first).
    let _a = r.modem("A", "8949000000000000001");
    let later = r
        .enqueue("+491701234567", "later", priority::NORMAL, None)
        .await;
    r.wait_for(later, MessageStatus::Sent).await;
    assert_eq!(*r.log.lock().unwrap(), [("A".to_string(), later)]);
    assert_eq!(r.record(id).await.status, MessageStatus::Expired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_sent_message_resumes_on_the_same_sim_with_only_the_rest() {
    let mut r = rig(Settings::default()).await;
    let sim = "8949000000000000001";
    let text = "y".repeat(400); // 3 parts
    let id = r
        .enqueue("+491701234567", &text, priority::NORMAL, None)
        .await;
    // Simulate an earlier attempt that got part 1 out.
    r.store
        .write(move |c| {
            store::begin_attempt(c, id, sim, "A", 1)?;
            store::part_sent(c, id, 1, 77, sim, "A", 2)?;
            store::schedule_retry(c, id, 0, Some("timeout"), None, 3)
        })
        .await
        .unwrap();
    let rec = r.record(id).await;
    r.d.cancelled(id);
    r.d.enqueued(Queued::from_record(&rec));
    let b = r.modem("B", "8949000000000000002");
    let a = r.modem("A", sim);
    r.wait_for(id, MessageStatus::Sent).await;
    assert!(
        b.sent.lock().unwrap().is_empty(),
        "other SIMs may not finish it"
    );
    assert_eq!(a.sent.lock().unwrap()[0], (id, vec![2, 3]));
    assert_eq!(r.record(id).await.parts[0].mr, Some(77));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_window_pages_a_long_queue_and_urgent_messages_still_go_first() {
    let settings = Settings {
        window: 8,
        ..Settings::default()
    };
    let mut r = rig(settings).await;
    let mut bulk = Vec::new();
    for i in 0..40 {
        bulk.push(
            r.enqueue("+491700000000", &format!("bulk {i}"), priority::BULK, None)
                .await,
        );
    }
    let otp = r
        .enqueue("+491700000001", "Your code is 123456", priority::OTP, None)
        .await;
    // Inputs are taken in order: all 41 are queued (or paged out) before the modem.
    let a = r.modem("A", "8949000000000000001");
    let mut sent = std::collections::HashSet::new();
    while sent.len() < 41 {
        let ev = r.next_event("the queue did not drain").await;
        if ev.status == MessageStatus::Sent {
            sent.insert(ev.id);
        }
    }
    assert_eq!(a.sent.lock().unwrap().len(), 41);
    let order: Vec<i64> = r.log.lock().unwrap().iter().map(|x| x.1).collect();
    assert_eq!(order[0], otp, "the OTP went first: {order:?}");
    assert_eq!(
        &order[1..],
        &bulk[..],
        "then the backlog, in order, paged from the store"
    );
    for id in bulk {
        assert_eq!(r.record(id).await.status, MessageStatus::Sent);
    }
    let _ = r.events.try_recv();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_write_their_webhook_events_with_the_change() {
    let cfg = crate::config::Config::parse(
        "[webhooks]\nurls = [\"http://127.0.0.1:9/hook\"]\n",
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let settings = Settings {
        webhooks: Arc::new(crate::webhook::Webhooks::from_config(&cfg.webhooks, None)),
        ..Settings::default()
    };
    let mut r = rig(settings).await;
    let a = r.modem("A", "8949000000000000001");
    a.failures.lock().unwrap().push(SendFailure {
        kind: FailureKind::Permanent,
        code: "cms:1".into(),
        message: "unassigned number".into(),
    });
    let failed = r
        .enqueue("+491701234567", "hello", priority::NORMAL, None)
        .await;
    r.wait_for(failed, MessageStatus::Failed).await;
    let sent = r
        .enqueue("+491701234567", "hello", priority::NORMAL, None)
        .await;
    r.wait_for(sent, MessageStatus::Sent).await;
    let expired = r
        .enqueue(
            "+491701234567",
            "late",
            priority::NORMAL,
            Some(r.clock.now_ms() - 1),
        )
        .await;
    r.wait_for(expired, MessageStatus::Expired).await;
    // The broadcast comes after the commit, so the events are there already.
    let rows = r
        .store
        .read(|c| store::list_events(c, None, 100))
        .await
        .unwrap();
    let kinds: Vec<(String, i64)> = rows
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
            (e.kind.clone(), v["data"]["id"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("message.failed".to_string(), failed),
            ("message.sent".to_string(), sent),
            ("message.expired".to_string(), expired),
        ]
    );
    assert!(rows.iter().all(|e| e.url == "http://127.0.0.1:9/hook"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_write_requeues_the_message_and_frees_the_modem() {
    // Audit #10, finding 4: with max_in_flight = 1, a failed `begin_attempt` write left
    // the modem busy forever and dropped the message from memory.
    let settings = Settings {
        timeouts: Timeouts {
            retry_base: Duration::from_millis(20),
            ..Timeouts::default()
        },
        ..Settings::default()
    };
    let mut r = rig(settings).await;
    // Twice in a row: the retry backs off and tries again.
    r.d.fail_begin_attempts(2);
    let a = r.modem("A", "8949000000000000001");
    let first = r
        .enqueue("+491701234567", "hello", priority::NORMAL, None)
        .await;
    let ev = r.wait_for(first, MessageStatus::Sent).await;
    assert_eq!(ev.modem.as_deref(), Some("A"));
    let m = r.record(first).await;
    assert_eq!(m.attempts, 1, "the failed writes left no attempt behind");
    // The modem is used again.
    let second = r
        .enqueue("+491701234567", "again", priority::NORMAL, None)
        .await;
    r.wait_for(second, MessageStatus::Sent).await;
    let sent: Vec<i64> = a.sent.lock().unwrap().iter().map(|s| s.0).collect();
    assert_eq!(sent, vec![first, second]);
}

/// An outbound that panics mid-send, as a bug in a driver would.
struct PanickingModem;

impl Outbound for PanickingModem {
    fn send(&self, _job: SendJob) -> outbound::BoxFuture<'_, Result<(), SendFailure>> {
        Box::pin(async { panic!("driver bug") })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_panics_frees_its_modem_and_the_message_goes_elsewhere() {
    let mut r = rig(Settings::default()).await;
    r.d.modem_added("A".into(), Arc::new(PanickingModem));
    r.d.modem_status(status("A", "8949000000000000001"));
    let id = r
        .enqueue("+491701234567", "hello", priority::NORMAL, None)
        .await;
    // The panic comes back as a link failure: queued again, not stuck in `sending`.
    r.wait_for(id, MessageStatus::Queued).await;
    let _b = r.modem("B", "8949000000000000002");
    let ev = r.wait_for(id, MessageStatus::Sent).await;
    assert_eq!(ev.modem.as_deref(), Some("B"));
}
