#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::{Config, WebhookUrl};
use crate::store::NewMessage;
use std::net::{IpAddr, SocketAddr};
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
    match attempt(&client, &row, Some("s"), Duration::from_secs(5), 0).await {
        Outcome::Unreachable(e) => assert!(!e.contains("supported"), "{e}"),
        Outcome::Permanent(e) => panic!("https refused: {e}"),
        other => panic!("a plain-text server cannot complete a TLS handshake: {other:?}"),
    }
    let mut ftp = row.clone();
    ftp.url = "ftp://127.0.0.1/x".into();
    assert!(matches!(
        attempt(&client, &ftp, None, Duration::from_secs(1), 0).await,
        Outcome::Permanent(_)
    ));
}

// --- Audit #10, finding 2: callback URLs (SSRF) ---

fn open_policy() -> CallbackPolicy {
    CallbackPolicy::default()
}

fn policy(hosts: &[&str]) -> CallbackPolicy {
    CallbackPolicy::new(&hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()).unwrap()
}

#[test]
fn the_url_parser_normalises_every_spelling_of_loopback() {
    // What check_callback_url sees is what reqwest connects to: the WHATWG host
    // parser's canonical form.
    for (url, host) in [
        ("http://2130706433/", "127.0.0.1"),
        ("http://0x7f.1/", "127.0.0.1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://017700000001/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://127.0.0.1./", "127.0.0.1"),
        ("http://%31%32%37.0.0.1/", "127.0.0.1"),
        ("http://\u{ff11}\u{ff12}\u{ff17}.0.0.1/", "127.0.0.1"),
        ("http://0/", "0.0.0.0"),
        ("http://[::ffff:127.0.0.1]/", "[::ffff:7f00:1]"),
        ("http://[0:0:0:0:0:0:0:1]/", "[::1]"),
        ("http://LocalHost/", "localhost"),
    ] {
        let u = reqwest::Url::parse(url).unwrap();
        assert_eq!(u.host_str(), Some(host), "{url}");
    }
}

#[test]
fn callback_urls_to_non_public_hosts_are_refused() {
    let p = open_policy();
    for url in [
        // loopback, in every spelling
        "http://127.0.0.1/",
        "http://127.0.0.1:8080/v1/messages",
        "http://127.255.255.254/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://017700000001/",
        "http://127.1/",
        "http://%31%32%37.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[::127.0.0.1]/",
        "http://[::ffff:0:127.0.0.1]/",
        "http://[64:ff9b::127.0.0.1]/",
        "http://[2002:7f00:1::]/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://localhost:9000/cb",
        "http://gsmgw.localhost/",
        // unspecified
        "http://0.0.0.0/",
        "http://0/",
        "http://[::]/",
        // link-local, cloud metadata
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[fe80::1]/",
        // private, CGNAT, unique-local
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://172.31.255.255/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
        "http://[fc00::1]/",
        "https://[::ffff:10.0.0.1]/",
        // broadcast, multicast, reserved, documentation
        "http://255.255.255.255/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://[ff02::1]/",
        "http://192.0.2.1/",
        "http://198.51.100.7/",
        "http://203.0.113.9/",
        "http://[2001:db8::1]/",
    ] {
        match check_callback_url(url, &p) {
            Err(CallbackUrlError::RefusedHost(_)) => {}
            other => panic!("{url}: {other:?}"),
        }
    }
    // Not URLs gsmgw can post to at all.
    for (url, want) in [
        (
            "http://user:pw@hooks.example.com/",
            CallbackUrlError::Userinfo,
        ),
        (
            "https://user@hooks.example.com/",
            CallbackUrlError::Userinfo,
        ),
        ("http://:pw@hooks.example.com/", CallbackUrlError::Userinfo),
        (
            "ftp://hooks.example.com/x",
            CallbackUrlError::Scheme("ftp".into()),
        ),
        (
            "file:///etc/passwd",
            CallbackUrlError::Scheme("file".into()),
        ),
        (
            "gopher://127.0.0.1:25/",
            CallbackUrlError::Scheme("gopher".into()),
        ),
    ] {
        assert_eq!(check_callback_url(url, &p), Err(want), "{url}");
    }
    for url in [
        "http://",
        "https://",
        "hooks.example.com/x",
        "/relative",
        "",
        "http://[::1/",
    ] {
        assert!(
            matches!(
                check_callback_url(url, &p),
                Err(CallbackUrlError::Invalid(_) | CallbackUrlError::NoHost)
            ),
            "{url}: {:?}",
            check_callback_url(url, &p)
        );
    }
    let long = format!(
        "https://hooks.example.com/{}",
        "a".repeat(MAX_CALLBACK_URL_LEN)
    );
    assert_eq!(
        check_callback_url(&long, &p),
        Err(CallbackUrlError::TooLong)
    );
    // The messages are sentences an API client can act on.
    let msg = check_callback_url("http://127.0.0.1/", &p)
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("callback_url points to 127.0.0.1"), "{msg}");
    let msg = check_callback_url("ftp://x/", &p).unwrap_err().to_string();
    assert_eq!(
        msg,
        "callback_url must be an http:// or https:// URL, not ftp:"
    );
}

#[test]
fn callback_urls_to_public_hosts_are_accepted() {
    let p = open_policy();
    for (url, normalised) in [
        (
            "https://app.example/hooks/sms?token=abc",
            "https://app.example/hooks/sms?token=abc",
        ),
        ("HTTPS://Hooks.Example.COM/x", "https://hooks.example.com/x"),
        (
            "http://93.184.216.34:8080/cb",
            "http://93.184.216.34:8080/cb",
        ),
        ("http://1572395042/", "http://93.184.216.34/"),
        ("http://[2606:4700::1111]/", "http://[2606:4700::1111]/"),
        ("http://[64:ff9b::808:808]/", "http://[64:ff9b::808:808]/"),
        ("http://[::ffff:8.8.8.8]/", "http://[::ffff:808:808]/"),
        ("http://8.8.8.8/", "http://8.8.8.8/"),
        ("http://172.32.0.1/", "http://172.32.0.1/"),
        ("http://100.128.0.1/", "http://100.128.0.1/"),
        (
            "http://localhost.example.com/",
            "http://localhost.example.com/",
        ),
    ] {
        let u = check_callback_url(url, &p).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(u.as_str(), normalised);
    }
}

#[test]
fn an_allow_list_admits_only_its_hosts_private_ones_included() {
    let p = policy(&[
        "hooks.example.com",
        "10.0.0.5",
        "*.internal.example",
        "127.0.0.1",
        "::1",
        "Upper.Example.",
    ]);
    assert!(p.is_restricted());
    for url in [
        "http://hooks.example.com/x",
        "https://HOOKS.example.com:8443/x",
        "http://hooks.example.com./x",
        "http://10.0.0.5:8080/",
        "http://167772165/",
        "http://a.internal.example/",
        "http://a.b.internal.example/",
        "http://127.0.0.1:9000/cb",
        "http://[::1]:9000/cb",
        "http://upper.example/",
    ] {
        assert!(check_callback_url(url, &p).is_ok(), "{url}");
    }
    for url in [
        "http://other.example.com/",
        "http://internal.example/",
        "http://evilinternal.example/",
        "http://internal.example.evil.com/",
        "http://10.0.0.6/",
        "http://93.184.216.34/",
        "http://localhost/",
        "http://127.0.0.2/",
    ] {
        assert!(
            matches!(
                check_callback_url(url, &p),
                Err(CallbackUrlError::NotAllowed(_))
            ),
            "{url}: {:?}",
            check_callback_url(url, &p)
        );
    }
    // Listed or not, a URL must still be a plain http(s) URL.
    assert_eq!(
        check_callback_url("http://u:p@hooks.example.com/", &p),
        Err(CallbackUrlError::Userinfo)
    );
    assert!(check_callback_url("ftp://hooks.example.com/", &p).is_err());
    // Bad entries are refused; a policy built from them anyway stays closed.
    for bad in [
        "http://x/",
        "x:80",
        "x:8080",
        "[::1]:80",
        "*",
        "*.10.0.0.5",
        "",
        "a/b",
        "u@h",
    ] {
        assert!(CallbackPolicy::new(&[bad.to_string()]).is_err(), "{bad:?}");
    }
    let cfg = WebhooksConfig {
        callback_hosts: vec!["http://x/".into()],
        ..WebhooksConfig::default()
    };
    let closed = CallbackPolicy::from_config(&cfg);
    assert!(closed.is_restricted());
    assert!(check_callback_url("https://hooks.example.com/", &closed).is_err());
}

#[test]
fn refused_address_ranges() {
    let refused = |s: &str| is_refused_address(s.parse().unwrap());
    for a in [
        "0.0.0.0",
        "0.1.2.3",
        "127.0.0.1",
        "10.255.255.255",
        "100.64.0.0",
        "100.127.255.255",
        "169.254.0.1",
        "172.16.0.0",
        "192.168.0.1",
        "198.18.0.1",
        "224.0.0.251",
        "239.255.255.250",
        "255.255.255.255",
        "::",
        "::1",
        "::127.0.0.1",
        "::8.8.8.8",
        "::ffff:192.168.1.1",
        "::ffff:0:10.0.0.1",
        "64:ff9b::10.0.0.1",
        "64:ff9b:1::1",
        "2002:a00:1::",
        "2001::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "fc00::",
        "fdff:ffff::1",
        "ff00::",
        "100::1",
        "2001:db8::",
        "3fff::1",
    ] {
        assert!(refused(a), "{a}");
    }
    for a in [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.216.34",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.169.0.1",
        "223.255.255.255",
        "2606:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::8.8.8.8",
        "2002:808:808::1",
    ] {
        assert!(!refused(a), "{a}");
    }
}

#[test]
fn callbacks_are_signed_with_their_own_key() {
    let derived = derive_callback_secret("whsec");
    // What docs/webhooks.md's openssl and python3 one-liners print.
    assert_eq!(
        derived,
        "3dec259e4b310f847c25fa602c0cc69ca44f7881c2cff1525d9c10edf4742bc9"
    );
    let mut mac = hmac_for(b"whsec");
    mac.update(b"gsmgw callback v1");
    assert_eq!(derived, hex(&mac.finalize().into_bytes()));
    assert_ne!(derived, derive_callback_secret("whsec2"));
    let cfg = WebhooksConfig::default();
    assert_eq!(
        callback_secret_for(&cfg, Some("whsec")).as_deref(),
        Some(derived.as_str())
    );
    assert_eq!(callback_secret_for(&cfg, None), None);
    assert_eq!(callback_secret_for(&cfg, Some("")), None);
    let own = WebhooksConfig {
        callback_secret: Some("cb-key".into()),
        ..WebhooksConfig::default()
    };
    assert_eq!(
        callback_secret_for(&own, Some("whsec")).as_deref(),
        Some("cb-key")
    );
    let w = Webhooks::from_config(&own, Some("whsec".into()));
    assert_eq!(w.callback_secret(), Some("cb-key"));
    let dbg = format!("{w:?}");
    assert!(!dbg.contains("cb-key") && !dbg.contains("whsec"), "{dbg}");
}

#[test]
fn a_callback_equal_to_a_configured_url_gets_only_its_filter() {
    let cfg = WebhooksConfig {
        urls: vec![WebhookUrl::Filtered {
            url: "http://in/".into(),
            events: vec!["inbound.received".into()],
        }],
        ..WebhooksConfig::default()
    };
    let w = Webhooks::from_config(&cfg, None);
    assert!(
        w.urls_for(EventKind::MessageSent, Some("http://in/"))
            .is_empty()
    );
    assert_eq!(
        w.urls_for(EventKind::MessageSent, Some("http://cb/")),
        ["http://cb/"]
    );
}

/// A fake resolver: these names, these addresses; anything else does not exist.
fn fake_lookup(names: &[(&str, IpAddr)]) -> guard::Lookup {
    let map: HashMap<String, IpAddr> = names.iter().map(|(n, a)| (n.to_string(), *a)).collect();
    Arc::new(move |name: &str| {
        let found = map.get(name).map(|ip| vec![SocketAddr::new(*ip, 0)]);
        Box::pin(async move {
            found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
        })
    })
}

/// A loopback listener nobody accepts on: after an attempt was recorded, whether it
/// ever got a connection is certain (a connection completes into the accept queue
/// before the client can see it, let alone fail and record that).
struct Trap(std::net::TcpListener);

impl Trap {
    fn new() -> Trap {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Trap(l)
    }
    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }
    fn assert_untouched(&self) {
        match self.0.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("a connection reached the loopback listener from {peer}"),
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[tokio::test]
async fn the_resolver_drops_refused_addresses() {
    use reqwest::dns::Resolve;
    let resolver = guard::GuardedResolver::new(
        Arc::new(open_policy()),
        Arc::new(|name: &str| {
            let addrs: Vec<SocketAddr> = match name {
                "mixed.test" => vec![
                    "127.0.0.1:0".parse().unwrap(),
                    "93.184.216.34:0".parse().unwrap(),
                    "[::ffff:10.0.0.1]:0".parse().unwrap(),
                    "[2606:4700::1111]:0".parse().unwrap(),
                ],
                _ => vec!["169.254.169.254:0".parse().unwrap()],
            };
            Box::pin(async move { Ok(addrs) })
        }),
    );
    let got: Vec<IpAddr> = resolver
        .resolve("mixed.test".parse().unwrap())
        .await
        .unwrap()
        .map(|a| a.ip())
        .collect();
    assert_eq!(
        got,
        [
            "93.184.216.34".parse::<IpAddr>().unwrap(),
            "2606:4700::1111".parse().unwrap()
        ]
    );
    let Err(e) = resolver.resolve("metadata.test".parse().unwrap()).await else {
        panic!("only a refused address: no address at all");
    };
    assert!(guard::blocked_in(e.as_ref()).is_some(), "{e}");
    let Err(e) = resolver.resolve("localhost".parse().unwrap()).await else {
        panic!("localhost");
    };
    assert!(guard::blocked_in(e.as_ref()).is_some(), "{e}");
}

#[tokio::test]
async fn the_callback_client_never_connects_to_a_refused_address() {
    let trap = Trap::new();
    let client = guard::callback_client(
        Arc::new(open_policy()),
        fake_lookup(&[("rebind.test", IpAddr::from([127, 0, 0, 1]))]),
        Duration::from_secs(3),
    )
    .unwrap();
    // No static check here: the names pass it (or are not checked), the resolver
    // alone must stop them.
    for host in ["rebind.test", "localhost", "LocalHost."] {
        let row = crate::store::EventRow {
            id: 1,
            created_at: 0,
            kind: "message.sent".into(),
            payload: r#"{"id":"evt_1"}"#.into(),
            url: format!("http://{host}:{}/cb", trap.port()),
            attempts: 0,
            next_attempt_at: 0,
            delivered_at: None,
            last_error: None,
        };
        match attempt(&client, &row, Some("k"), Duration::from_secs(5), 0).await {
            Outcome::Permanent(e) => assert!(e.starts_with("refused: "), "{host}: {e}"),
            other => panic!("{host}: {other:?}"),
        }
    }
    trap.assert_untouched();
}

fn callback_hooks(callback_hosts: &[&str]) -> Arc<Webhooks> {
    let cfg = WebhooksConfig {
        callback_hosts: callback_hosts.iter().map(|h| h.to_string()).collect(),
        retry_base_ms: 50,
        retry_max_ms: 100,
        ..WebhooksConfig::default()
    };
    Arc::new(Webhooks::from_config(&cfg, Some("operator-secret".into())))
}

async fn enqueue(store: &Store, hooks: &Webhooks, url: String) {
    store
        .write(move |c| {
            store::enqueue_event(
                c,
                "message.sent",
                &json!({"id": 1}),
                &[url],
                store::now_ms(),
            )
        })
        .await
        .unwrap();
    hooks.poke();
}

/// The only outbox row, once the worker has recorded an attempt of it (waits on the
/// worker's record count, bounded, rather than polling the store).
async fn first_recorded(store: &Store, task: &WebhookTask) -> EventRow {
    let mut recorded = task.recorded();
    tokio::time::timeout(Duration::from_secs(20), recorded.wait_for(|n| *n >= 1))
        .await
        .expect("an attempt recorded in time")
        .expect("the worker runs");
    let rows = store
        .read(|c| store::list_events(c, None, 10))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].clone()
}

#[tokio::test]
async fn the_worker_gives_up_callbacks_to_loopback_without_connecting() {
    // `localhost` (refused by name) and a name that resolves to 127.0.0.1 only when
    // connecting (the accept-time check cannot see that): both are given up, recorded
    // in the store, and no connection reaches the listener.
    for host in ["localhost", "rebind.test"] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("w.db")).unwrap();
        let trap = Trap::new();
        let hooks = callback_hooks(&[]);
        let url = format!("http://{host}:{}/cb", trap.port());
        if host == "rebind.test" {
            assert!(check_callback_url(&url, hooks.callback_policy()).is_ok());
        }
        let task = hooks
            .start_with_lookup(
                store.clone(),
                fake_lookup(&[("rebind.test", IpAddr::from([127, 0, 0, 1]))]),
                Clock::system(),
            )
            .unwrap();
        enqueue(&store, &hooks, url).await;
        let row = first_recorded(&store, &task).await;
        assert_eq!(row.next_attempt_at, GAVE_UP, "{host}: {row:?}");
        assert_eq!(row.delivered_at, None);
        assert_eq!(row.attempts, 1);
        let err = row.last_error.unwrap_or_default();
        assert!(err.starts_with("refused: "), "{host}: {err}");
        trap.assert_untouched();
        task.shutdown().await;
    }
}

#[tokio::test]
async fn an_allow_listed_callback_host_is_delivered_signed_with_the_callback_key() {
    use axum::http::HeaderMap;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(HeaderMap, String)>();
    let app = axum::Router::new().route(
        "/cb",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("w.db")).unwrap();
    let hooks = callback_hooks(&["hooks.internal.test"]);
    let task = hooks
        .start_with_lookup(
            store.clone(),
            fake_lookup(&[("hooks.internal.test", IpAddr::from([127, 0, 0, 1]))]),
            Clock::system(),
        )
        .unwrap();
    enqueue(
        &store,
        &hooks,
        format!("http://hooks.internal.test:{port}/cb"),
    )
    .await;
    let (headers, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the listed host got the callback")
        .unwrap();
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (ts, sig) = (h("x-gsmgw-timestamp"), h("x-gsmgw-signature"));
    let key = derive_callback_secret("operator-secret");
    assert!(
        verify(key.as_bytes(), ts, body.as_bytes(), sig),
        "callback key"
    );
    assert!(
        !verify(b"operator-secret", ts, body.as_bytes(), sig),
        "never the operator's secret"
    );
    task.shutdown().await;
    server.abort();
}

/// Resolves after `secs` of real time, from a thread of its own: bounds a test on paused
/// tokio time without a tokio timer (auto-advance jumps to the earliest pending timer
/// whenever the runtime idles, e.g. while the store's writer thread commits, so a tokio
/// timeout there would fire at once).
fn real_deadline(secs: u64) -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        let _ = tx.send(());
    });
    rx
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_backoff_schedule_on_paused_time() {
    // A callback host the operator allows that does not resolve: each attempt fails at
    // once, without a socket (so tokio's paused time moves only through the worker's
    // timers), as unreachable. Retried after 1, 2, 4, 4 s (base 1 s, capped at 4 s),
    // given up at the 5th. The worker reads only the paused clock: on the system clock
    // it would find nothing due when its timer fires and every retry would come late.
    let clock = Clock::paused();
    let cfg = WebhooksConfig {
        callback_hosts: vec!["gone.test".into()],
        retry_base_ms: 1_000,
        retry_max_ms: 4_000,
        max_attempts: 5,
        ..WebhooksConfig::default()
    };
    let hooks = Arc::new(Webhooks::from_config(&cfg, Some("operator-secret".into())));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("w.db")).unwrap();
    let task = hooks
        .start_with_lookup(store.clone(), fake_lookup(&[]), clock)
        .unwrap();
    let mut recorded = task.recorded();
    let t0 = clock.now_ms();
    store
        .write(move |c| {
            let url = "http://gone.test/cb".to_owned();
            store::enqueue_event(c, "message.sent", &json!({"id": 1}), &[url], t0)
        })
        .await
        .unwrap();
    hooks.poke();
    let mut deadline = real_deadline(60);
    let mut due = t0;
    for attempt in 1..=5u32 {
        tokio::select! {
            r = recorded.wait_for(|n| *n >= u64::from(attempt)) => {
                r.expect("the worker runs");
            }
            _ = &mut deadline => panic!("attempt {attempt} not recorded within a minute"),
        }
        // Paused time has not moved since the worker recorded the attempt (nothing but
        // the worker's own timer is pending, and it is not armed while it records).
        let at = clock.now_ms();
        assert!(
            (due..due + 20).contains(&at),
            "attempt {attempt} at {} ms, due at {} ms",
            at - t0,
            due - t0
        );
        let rows = store
            .read(|c| store::list_events(c, None, 10))
            .await
            .unwrap();
        let row = &rows[0];
        assert_eq!(row.attempts, attempt, "{row:?}");
        assert_eq!(row.delivered_at, None);
        let err = row.last_error.clone().unwrap_or_default();
        assert!(!err.is_empty() && !err.starts_with("refused"), "{err}");
        if attempt < 5 {
            let delay = backoff(Duration::from_secs(1), Duration::from_secs(4), attempt);
            assert_eq!(
                row.next_attempt_at - at,
                i64::try_from(delay.as_millis()).unwrap(),
                "attempt {attempt}"
            );
            due = row.next_attempt_at;
        } else {
            assert_eq!(row.next_attempt_at, GAVE_UP, "{row:?}");
        }
    }
    let took = clock.now_ms() - t0;
    assert!(
        (11_000..11_100).contains(&took),
        "1 + 2 + 4 + 4 s of paused time, not {took} ms"
    );
    task.shutdown().await;
}
