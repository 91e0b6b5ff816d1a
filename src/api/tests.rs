//! Handler tests without a socket (`tower::ServiceExt::oneshot`).

use super::*;
use crate::dispatch::Settings;
use crate::pool::{Pool, PoolConfig};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

struct NoModems;
impl ModemsView for NoModems {
    fn modems(&self) -> Vec<Value> {
        Vec::new()
    }
    fn ready_count(&self) -> usize {
        0
    }
}

/// Tokens: `s3cret` (every scope, the plain kind), `sender` (send), `reader` (read),
/// `slow` (send, 2 requests then 429).
fn settings() -> ApiSettings {
    let scoped = |name: &str, scopes: Vec<Scope>| ApiToken {
        name: name.into(),
        sha256: sha256(name.as_bytes()),
        scopes,
        rate_limit: None,
    };
    ApiSettings {
        tokens: vec![
            ApiToken::plain("plain", "s3cret"),
            scoped("sender", vec![Scope::Send]),
            scoped("reader", vec![Scope::Read]),
            ApiToken {
                rate_limit: Some(crate::config::RateLimitConfig {
                    per_second: 0.01,
                    burst: 2,
                }),
                ..scoped("slow", vec![Scope::Send])
            },
        ],
        known_sims: vec!["89490200001234567890".into()],
        ..ApiSettings::default()
    }
}

async fn app() -> (tempfile::TempDir, Store, Router) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("api.db")).unwrap();
    let (dispatcher, _task) = Dispatcher::start(
        store.clone(),
        Pool::new(PoolConfig::default()).unwrap(),
        Settings::default(),
    )
    .await
    .unwrap();
    let state = AppState {
        store: store.clone(),
        dispatcher,
        settings: Arc::new(settings()),
        modems: Arc::new(NoModems),
        limiter: Arc::default(),
    };
    (dir, store, router(state))
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let resp = app
        .clone()
        .oneshot(req.body(body.map_or(Body::empty(), Body::from)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn rows(store: &Store) -> i64 {
    store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT (SELECT COUNT(*) FROM messages) + (SELECT COUNT(*) FROM parts) \
                 + (SELECT COUNT(*) FROM otps) + (SELECT COUNT(*) FROM idempotency) \
                 + (SELECT COUNT(*) FROM suppressions)",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_then_read_back() {
    let (_d, store, app) = app().await;
    let (s, v) = call(
        &app,
        "POST",
        "/v1/messages",
        Some("s3cret"),
        Some(json!({"to": "+491701234567", "text": "Your code is 482913"}).to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "queued");
    assert_eq!(v["parts"], 1);
    assert_eq!(v["encoding"], "gsm7");
    let id = v["id"].as_i64().unwrap();
    assert_eq!(rows(&store), 2);
    let (s, g) = call(
        &app,
        "GET",
        &format!("/v1/messages/{id}"),
        Some("s3cret"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(g["id"], id);
    assert_eq!(g["to"], "+491701234567");
    let (s, _) = call(&app, "GET", "/v1/messages/999999", Some("s3cret"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, c) = call(
        &app,
        "DELETE",
        &format!("/v1/messages/{id}"),
        Some("s3cret"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let (s, c) = call(
        &app,
        "DELETE",
        &format!("/v1/messages/{id}"),
        Some("s3cret"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required() {
    let (_d, store, app) = app().await;
    let body = json!({"to": "+491701234567", "text": "hi"}).to_string();
    for token in [None, Some("wrong"), Some("s3cre"), Some("s3cret2")] {
        let (s, v) = call(&app, "POST", "/v1/messages", token, Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(v["error"]["code"], "unauthorized");
    }
    assert_eq!(rows(&store), 0);
    let (s, _) = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "no modem is ready: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_rejected_naming_the_field_and_store_nothing() {
    let (_d, store, app) = app().await;
    let long = "x".repeat(153 * 10 + 1);
    let cases: Vec<(Value, StatusCode, &str, Option<&str>)> = vec![
        (
            json!({"text": "hi"}),
            StatusCode::BAD_REQUEST,
            "missing",
            Some("to"),
        ),
        (
            json!({"to": "+491701234567"}),
            StatusCode::BAD_REQUEST,
            "missing",
            Some("text"),
        ),
        (
            json!({"to": "0170 1234567", "text": "hi"}),
            StatusCode::BAD_REQUEST,
            "invalid_number",
            Some("to"),
        ),
        (
            json!({"to": "+49", "text": "hi"}),
            StatusCode::BAD_REQUEST,
            "invalid_number",
            Some("to"),
        ),
        (
            json!({"to": 491701234567u64, "text": "hi"}),
            StatusCode::BAD_REQUEST,
            "invalid_type",
            Some("to"),
        ),
        (
            json!({"to": "+491701234567", "text": "   "}),
            StatusCode::BAD_REQUEST,
            "empty",
            Some("text"),
        ),
        (
            json!({"to": "+491701234567", "text": long}),
            StatusCode::BAD_REQUEST,
            "too_long",
            Some("text"),
        ),
        (
            json!({"to": "+491701234567", "text": "hi", "priority": "urgent"}),
            StatusCode::BAD_REQUEST,
            "invalid_priority",
            Some("priority"),
        ),
        (
            json!({"to": "+491701234567", "text": "hi", "priority": 5000}),
            StatusCode::BAD_REQUEST,
            "invalid_priority",
            Some("priority"),
        ),
        (
            json!({"to": "+491701234567", "text": "hi", "send_at": "2001-01-01T00:00:00Z"}),
            StatusCode::BAD_REQUEST,
            "in_the_past",
            Some("send_at"),
        ),
        (
            json!({"to": "+491701234567", "text": "hi", "send_at": "tomorrow"}),
            StatusCode::BAD_REQUEST,
            "invalid_time",
            Some("send_at"),
        ),
        (
            json!({"to": "+491701234567", "text": "hi", "ttl": "soon"}),
            StatusCode::BAD_REQUEST,
            "invalid_duration",
            Some("ttl"),
        ),
        (
            json!({"to": "+491701234567", "text": "hi", "ttl": 60, "expires_at": 99999999999999i64}),
            StatusCode::BAD_REQUEST,
            "conflict",
            Some("ttl"),
        ),
        (
            json!({"to": "+491701234567", "text": "hi", "validity": 10}),
            StatusCode::BAD_REQUEST,
            "too_short",
            Some("validity"),
        ),
        (
            json!({"to": "+491701234567", "text": "hi", "flash": "yes"}),
            StatusCode::BAD_REQUEST,
            "invalid_type",
            Some("flash"),
        ),
        (
            json!({"to": "+491701234567", "text": "hi", "tags": "a"}),
            StatusCode::BAD_REQUEST,
            "invalid_type",
            Some("tags"),
        ),
        (
            json!({"to": "+491701234567", "text": "hi", "callback_url": "ftp://x"}),
            StatusCode::BAD_REQUEST,
            "invalid_url",
            Some("callback_url"),
        ),
        (
            json!({"to": "+491701234567", "text": "hi", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
            None,
        ),
        (
            json!(["not", "an", "object"]),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            None,
        ),
    ];
    for (body, status, code, field) in cases {
        let (s, v) = call(
            &app,
            "POST",
            "/v1/messages",
            Some("s3cret"),
            Some(body.to_string()),
        )
        .await;
        assert_eq!(s, status, "{body} → {v}");
        assert_eq!(v["error"]["code"], code, "{body} → {v}");
        assert_eq!(v["error"]["field"].as_str(), field, "{body} → {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Malformed JSON and an oversized body.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/messages",
        Some("s3cret"),
        Some("{\"to\": ".into()),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    let big = json!({"to": "+491701234567", "text": "x".repeat(70_000)}).to_string();
    let (s, v) = call(&app, "POST", "/v1/messages", Some("s3cret"), Some(big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(rows(&store), 0, "nothing stored on any rejection");
}
