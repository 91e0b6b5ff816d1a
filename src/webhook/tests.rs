#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::{Config, WebhookUrl};
use crate::store::NewMessage;
use std::path::Path;

#[test]
fn hmac_matches_rfc_4231() {
    // RFC 4231 test case 2.
    let mut mac = hmac_for(b"Jefe");
    mac.update(b"what do ya want for nothing?");
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn signature_covers_timestamp_and_body() {
    let body = br#"{"id":"evt_1","type":"message.sent"}"#;
    let sig = signature(b"s3cret", 1_700_000_000, body);
    assert!(sig.starts_with("v1="));
    assert_eq!(sig.len(), 3 + 64);
    let mut mac = hmac_for(b"s3cret");
    mac.update(b"1700000000.");
    mac.update(body);
    let expect: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sig, format!("v1={expect}"));
    assert!(verify(b"s3cret", "1700000000", body, &sig));
    assert!(!verify(b"s3cret", "1700000001", body, &sig), "timestamp");
    assert!(!verify(b"other", "1700000000", body, &sig), "secret");
    assert!(!verify(b"s3cret", "1700000000", b"{}", &sig), "body");
    assert!(!verify(b"s3cret", "1700000000", body, &sig[3..]), "prefix");
    assert!(!verify(b"s3cret", "1700000000", body, "v1=zz"), "hex");
}

#[test]
fn backoff_doubles_and_caps() {
    let (base, max) = (Duration::from_secs(1), Duration::from_secs(3600));
    assert_eq!(backoff(base, max, 1), Duration::from_secs(1));
    assert_eq!(backoff(base, max, 2), Duration::from_secs(2));
    assert_eq!(backoff(base, max, 5), Duration::from_secs(16));
    assert_eq!(backoff(base, max, 13), Duration::from_secs(3600));
    assert_eq!(backoff(base, max, u32::MAX), Duration::from_secs(3600));
}

#[test]
fn routes_filter_by_kind() {
    let cfg = WebhooksConfig {
        urls: vec![
            WebhookUrl::All("http://all/".into()),
            WebhookUrl::Filtered {
                url: "http://msg/".into(),
                events: vec!["message.*".into()],
            },
            WebhookUrl::Filtered {
                url: "http://in/".into(),
                events: vec!["inbound.received".into()],
            },
        ],
        ..WebhooksConfig::default()
    };
    let w = Webhooks::from_config(&cfg, Some("topsecret".into()));
    assert_eq!(
        w.urls_for(EventKind::MessageDelivered, Some("http://cb/")),
        ["http://all/", "http://msg/", "http://cb/"]
    );
    assert_eq!(
        w.urls_for(EventKind::InboundReceived, Some("http://cb/")),
        ["http://all/", "http://in/"]
    );
    assert_eq!(w.urls_for(EventKind::ModemState, None), ["http://all/"]);
    assert!(!format!("{w:?}").contains("topsecret"));
    let none = Webhooks::default();
    assert!(!none.wants(EventKind::ModemState));
    assert_eq!(
        none.urls_for(EventKind::MessageSent, Some("http://cb/")),
        ["http://cb/"]
    );
}

#[test]
fn logs_never_show_credentials_or_queries() {
    assert_eq!(redact("http://u:p@host:9/a/b?token=x"), "http://host:9/a/b");
    assert_eq!(redact("http://host"), "http://host");
    assert_eq!(redact("http://host/x#frag"), "http://host/x");
}

#[tokio::test]
async fn message_events_carry_no_body() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("w.db")).unwrap();
    let cfg = Config::parse(
        "[webhooks]\nurls = [\"http://127.0.0.1:1/hook\"]\n",
        Path::new("t.toml"),
    )
    .unwrap();
    let hooks = Arc::new(Webhooks::from_config(&cfg.webhooks, None));
    let m = NewMessage {
        to: "+491701234567".into(),
        body: "Your code is 482913".into(),
        encoding: "gsm7".into(),
        parts_total: 1,
        priority: 300,
        send_at: None,
        expires_at: None,
        status_report: true,
        flash: false,
        validity_secs: None,
        pinned_sim: None,
        tags: vec!["otp".into()],
        callback_url: Some("http://127.0.0.1:2/cb".into()),
        concat_ref: 1,
        masked: true,
    };
    let h = hooks.clone();
    let event = store
        .write(move |c| {
            let id = store::insert_message(c, &m, 1_000)?;
            store::set_status(c, id, MessageStatus::Expired, Some("expired"), None, 2_000)?;
            h.status_event(c, id, MessageStatus::Expired, 2_000)
        })
        .await
        .unwrap()
        .unwrap();
    let rows = store
        .read(|c| store::due_events(c, 5_000, 10))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "config URL and callback_url");
    for r in &rows {
        assert!(!r.payload.contains("482913"), "{}", r.payload);
        let v: Value = serde_json::from_str(&r.payload).unwrap();
        assert_eq!(v["id"], event.as_str());
        assert_eq!(v["type"], "message.expired");
        assert_eq!(v["data"]["status"], "expired");
        assert_eq!(v["data"]["tags"][0], "otp");
        assert_eq!(v["data"]["to"], "+491701234567");
    }
    // Intermediate states announce nothing.
    let h = hooks.clone();
    let none = store
        .write(move |c| h.status_event(c, 1, MessageStatus::Queued, 3_000))
        .await
        .unwrap();
    assert_eq!(none, None);
}

#[tokio::test]
async fn https_urls_go_through_tls() {
    // A server that is not TLS: an https attempt must fail in the TLS handshake (so the
    // TLS client really runs), as a retryable error, not "unsupported URL".
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in listener.incoming().flatten().take(1) {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nnot tls");
        }
    });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let row = crate::store::EventRow {
        id: 1,
        created_at: 0,
        kind: "message.sent".into(),
        payload: r#"{"id":"evt_1"}"#.into(),
        url: format!("https://127.0.0.1:{port}/hook"),
        attempts: 0,
        next_attempt_at: 0,
        delivered_at: None,
        last_error: None,
    };
    match attempt(&client, &row, Some("s"), Duration::from_secs(5)).await {
        Outcome::Retry(e) => assert!(!e.contains("supported"), "{e}"),
        Outcome::Permanent(e) => panic!("https refused: {e}"),
        Outcome::Delivered => panic!("a plain-text server cannot complete a TLS handshake"),
    }
    let mut ftp = row.clone();
    ftp.url = "ftp://127.0.0.1/x".into();
    assert!(matches!(
        attempt(&client, &ftp, None, Duration::from_secs(1)).await,
        Outcome::Permanent(_)
    ));
}
