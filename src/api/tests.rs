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
    fn modems(&self) -> Vec<ModemView> {
        Vec::new()
    }
    fn ready_count(&self) -> usize {
        0
    }
}

/// Tokens: `s3cret` (every scope, the plain kind), `sender` (send), `sender2` (send,
/// read), `admin` (admin), `reader` (read), `slow` (send, 2 requests then 429).
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
            scoped("sender2", vec![Scope::Send, Scope::Read]),
            scoped("admin", vec![Scope::Admin]),
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
    app_with(settings()).await
}

async fn app_with(settings: ApiSettings) -> (tempfile::TempDir, Store, Router) {
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
        settings: SharedSettings::new(settings),
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

async fn post(app: &Router, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
    call(app, "POST", uri, Some(token), Some(body.to_string())).await
}

/// The table: each bad request, its status and code (and field), and that no
/// row was stored for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_table() {
    let (_d, store, app) = app().await;
    // A suppressed number and a known OTP for the verify rows.
    store
        .write(|c| crate::store::suppress(c, "+491709876543", "admin", None, None, 1))
        .await
        .unwrap();
    let ok = |extra: Value| {
        let mut m = json!({"to": "+491701234567", "text": "hi"});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let tpl = |vars: Value| json!({"to": "+491701234567", "template": "order_confirmation", "vars": vars});
    let long = "x".repeat(153 * 10 + 1);
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"to": "+491701234567", "text": "x"}))
        .collect();
    type Row = (
        &'static str,
        &'static str,
        Value,
        u16,
        &'static str,
        Option<&'static str>,
    );
    let rows: Vec<Row> = vec![
        (
            "POST",
            "/v1/messages",
            json!({"text": "hi"}),
            400,
            "missing",
            Some("to"),
        ),
        (
            "POST",
            "/v1/messages",
            json!({"to": "+491701234567"}),
            400,
            "missing",
            Some("text"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"to": "0170 1234567"})),
            400,
            "invalid_number",
            Some("to"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"to": "+49"})),
            400,
            "invalid_number",
            Some("to"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"to": "+4912"})),
            400,
            "invalid_number",
            Some("to"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"to": "call me"})),
            400,
            "invalid_number",
            Some("to"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"to": "+4930123456"})),
            400,
            "not_mobile",
            Some("to"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"to": "+498001234567"})),
            400,
            "not_mobile",
            Some("to"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"to": 491701234567u64})),
            400,
            "invalid_type",
            Some("to"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"to": ""})),
            400,
            "missing",
            Some("to"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"text": "   "})),
            400,
            "empty",
            Some("text"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"text": long})),
            400,
            "too_long",
            Some("text"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"text": 5})),
            400,
            "invalid_type",
            Some("text"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"priority": "urgent"})),
            400,
            "invalid_priority",
            Some("priority"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"priority": 5000})),
            400,
            "invalid_priority",
            Some("priority"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"send_at": "2001-01-01T00:00:00Z"})),
            400,
            "in_the_past",
            Some("send_at"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"send_at": "tomorrow"})),
            400,
            "invalid_time",
            Some("send_at"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"ttl": "soon"})),
            400,
            "invalid_duration",
            Some("ttl"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"ttl": 60, "expires_at": 99999999999999i64})),
            400,
            "conflict",
            Some("ttl"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"expires_at": 1000})),
            400,
            "in_the_past",
            Some("expires_at"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"validity": 10})),
            400,
            "too_short",
            Some("validity"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"flash": "yes"})),
            400,
            "invalid_type",
            Some("flash"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"status_report": 1})),
            400,
            "invalid_type",
            Some("status_report"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"tags": "a"})),
            400,
            "invalid_type",
            Some("tags"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"tags": [1]})),
            400,
            "invalid_type",
            Some("tags"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"callback_url": "ftp://x"})),
            400,
            "invalid_url",
            Some("callback_url"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"colour": "red"})),
            400,
            "unknown_field",
            None,
        ),
        (
            "POST",
            "/v1/messages",
            json!(["not", "an", "object"]),
            400,
            "invalid_json",
            None,
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"sim": "8949000000000000000"})),
            400,
            "unknown_sim",
            Some("sim"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"to": "+491709876543"})),
            400,
            "suppressed",
            Some("to"),
        ),
        (
            "POST",
            "/v1/messages",
            json!({"to": "+491701234567", "template": "nope", "vars": {}}),
            400,
            "unknown_template",
            Some("template"),
        ),
        (
            "POST",
            "/v1/messages",
            tpl(json!({"order": "1"})),
            400,
            "missing_variable",
            Some("vars"),
        ),
        (
            "POST",
            "/v1/messages",
            tpl(json!("x")),
            400,
            "invalid_type",
            Some("vars"),
        ),
        (
            "POST",
            "/v1/messages",
            tpl(json!({"order": [1]})),
            400,
            "invalid_type",
            Some("vars"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"template": "order_confirmation"})),
            400,
            "conflict",
            Some("template"),
        ),
        (
            "POST",
            "/v1/messages",
            ok(json!({"vars": {"a": "b"}})),
            400,
            "unexpected",
            Some("vars"),
        ),
        (
            "POST",
            "/v1/messages",
            json!({"to": "+491701234567", "template": "appointment_confirmation", "vars": {"name": "A", "when": "B"}, "remind_before": "24h"}),
            400,
            "missing",
            Some("appointment_at"),
        ),
        (
            "POST",
            "/v1/messages",
            json!({"to": "+491701234567", "template": "appointment_confirmation", "vars": {"name": "A", "when": "B"}, "appointment_at": "2001-01-01T00:00:00Z", "remind_before": "24h"}),
            400,
            "in_the_past",
            Some("appointment_at"),
        ),
        (
            "POST",
            "/v1/messages",
            json!({"to": "+491701234567", "template": "appointment_confirmation", "vars": {"name": "A", "when": "B"}, "appointment_at": now_plus_hours(2), "remind_before": "24h"}),
            400,
            "in_the_past",
            Some("remind_before"),
        ),
        (
            "POST",
            "/v1/messages",
            json!({"to": "+491701234567", "template": "appointment_confirmation", "vars": {"name": "A", "when": "B"}, "appointment_at": now_plus_hours(48), "remind_before": "soon"}),
            400,
            "invalid_duration",
            Some("remind_before"),
        ),
        (
            "POST",
            "/v1/messages/batch",
            json!({}),
            400,
            "missing",
            Some("messages"),
        ),
        (
            "POST",
            "/v1/messages/batch",
            json!({"messages": []}),
            400,
            "empty",
            Some("messages"),
        ),
        (
            "POST",
            "/v1/messages/batch",
            json!({"messages": {}}),
            400,
            "invalid_type",
            Some("messages"),
        ),
        (
            "POST",
            "/v1/messages/batch",
            json!({"messages": many}),
            400,
            "too_many",
            Some("messages"),
        ),
        (
            "POST",
            "/v1/messages/batch",
            json!({"messages": [{"to": "+491701234567", "text": "ok"}, {"to": "x", "text": "bad"}]}),
            400,
            "invalid_number",
            Some("messages[1].to"),
        ),
        ("POST", "/v1/otp", json!({}), 400, "missing", Some("to")),
        (
            "POST",
            "/v1/otp",
            json!({"to": "+491701234567", "length": 3}),
            400,
            "invalid_length",
            Some("length"),
        ),
        (
            "POST",
            "/v1/otp",
            json!({"to": "+491701234567", "length": 11}),
            400,
            "invalid_length",
            Some("length"),
        ),
        (
            "POST",
            "/v1/otp",
            json!({"to": "+491701234567", "ttl": "1s"}),
            400,
            "invalid_duration",
            Some("ttl"),
        ),
        (
            "POST",
            "/v1/otp",
            json!({"to": "+491701234567", "template": "nope"}),
            400,
            "unknown_template",
            Some("template"),
        ),
        (
            "POST",
            "/v1/otp",
            json!({"to": "+491701234567", "template": "shipping_update"}),
            400,
            "invalid_template",
            Some("template"),
        ),
        (
            "POST",
            "/v1/otp",
            json!({"to": "+491701234567", "vars": {"code": "1234"}}),
            400,
            "reserved_variable",
            Some("vars"),
        ),
        (
            "POST",
            "/v1/otp",
            json!({"to": "+4930123456"}),
            400,
            "not_mobile",
            Some("to"),
        ),
        (
            "POST",
            "/v1/otp/1/verify",
            json!({"code": "12ab"}),
            400,
            "invalid_code",
            Some("code"),
        ),
        (
            "POST",
            "/v1/otp/1/verify",
            json!({}),
            400,
            "missing",
            Some("code"),
        ),
        (
            "POST",
            "/v1/otp/999/verify",
            json!({"code": "1234"}),
            404,
            "not_found",
            None,
        ),
        (
            "POST",
            "/v1/estimate",
            json!({}),
            400,
            "missing",
            Some("text"),
        ),
        (
            "POST",
            "/v1/estimate",
            json!({"template": "nope"}),
            400,
            "unknown_template",
            Some("template"),
        ),
        (
            "POST",
            "/v1/templates",
            json!({"name": "Bad Name", "body": "x"}),
            400,
            "invalid_name",
            Some("name"),
        ),
        (
            "POST",
            "/v1/templates",
            json!({"name": "ok", "body": ""}),
            400,
            "empty",
            Some("body"),
        ),
        (
            "POST",
            "/v1/templates",
            json!({"name": "ok", "body": "hi {{oops"}),
            400,
            "invalid_template",
            Some("body"),
        ),
        (
            "POST",
            "/v1/templates",
            json!({"name": "order_confirmation", "body": "x"}),
            409,
            "exists",
            None,
        ),
        (
            "PUT",
            "/v1/templates/nope",
            json!({"body": "x"}),
            404,
            "not_found",
            None,
        ),
        (
            "POST",
            "/v1/sims/8949/ussd",
            json!({"code": "rm -rf"}),
            400,
            "invalid_ussd",
            Some("code"),
        ),
        (
            "POST",
            "/v1/sims/8949/ussd",
            json!({"code": "*100#"}),
            400,
            "unknown_sim",
            Some("iccid"),
        ),
        (
            "GET",
            "/v1/messages?limit=0",
            Value::Null,
            400,
            "invalid_limit",
            Some("limit"),
        ),
        (
            "GET",
            "/v1/messages?status=lost",
            Value::Null,
            400,
            "invalid_status",
            Some("status"),
        ),
        (
            "GET",
            "/v1/messages?cursor=abc",
            Value::Null,
            400,
            "invalid_cursor",
            Some("cursor"),
        ),
        (
            "GET",
            "/v1/messages?since=yesterday",
            Value::Null,
            400,
            "invalid_time",
            Some("since"),
        ),
        (
            "GET",
            "/v1/inbox?limit=5000",
            Value::Null,
            400,
            "invalid_limit",
            Some("limit"),
        ),
        (
            "DELETE",
            "/v1/messages/12345",
            Value::Null,
            404,
            "not_found",
            None,
        ),
        (
            "GET",
            "/v1/nothing-here",
            Value::Null,
            404,
            "not_found",
            None,
        ),
    ];
    assert!(rows.len() >= 40, "{} rows", rows.len());
    let before = rows_all(&store);
    for (method, uri, body, status, code, field) in &rows {
        let body = (!body.is_null()).then(|| body.to_string());
        let (s, v) = call(&app, method, uri, Some("s3cret"), body).await;
        assert_eq!(s.as_u16(), *status, "{method} {uri} → {v}");
        assert_eq!(v["error"]["code"], *code, "{method} {uri} → {v}");
        assert_eq!(v["error"]["field"].as_str(), *field, "{method} {uri} → {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert_eq!(rows_all(&store), before, "{method} {uri} stored something");
    }
    // Transport-level rejections: malformed JSON, wrong type, oversized, bad tokens.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/messages",
        Some("s3cret"),
        Some("{\"to\": ".into()),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let big = json!({"to": "+491701234567", "text": "x".repeat(70_000)}).to_string();
    let (s, v) = call(&app, "POST", "/v1/messages", Some("s3cret"), Some(big)).await;
    assert_eq!(
        (s.as_u16(), v["error"]["code"].as_str()),
        (413, Some("too_large"))
    );
    let (s, v) = call(
        &app,
        "POST",
        "/v1/messages",
        Some("reader"),
        Some(ok(json!({})).to_string()),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (s, _) = call(
        &app,
        "POST",
        "/v1/messages",
        None,
        Some(ok(json!({})).to_string()),
    )
    .await;
    assert_eq!(s.as_u16(), 401);
    assert_eq!(rows_all(&store), before, "nothing stored on any rejection");
}

fn now_plus_hours(h: i64) -> String {
    super::messages::rfc3339(crate::store::now_ms() + h * 3_600_000)
}

/// Every row of every table the API writes.
fn rows_all(store: &Store) -> i64 {
    store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT (SELECT COUNT(*) FROM messages) + (SELECT COUNT(*) FROM parts) \
                 + (SELECT COUNT(*) FROM otps) + (SELECT COUNT(*) FROM idempotency) \
                 + (SELECT COUNT(*) FROM suppressions) + (SELECT COUNT(*) FROM templates) \
                 + (SELECT COUNT(*) FROM events)",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_and_rate_limits() {
    let (_d, _store, app) = app().await;
    let msg = json!({"to": "+491701234567", "text": "hi"});
    let (s, v) = post(&app, "/v1/messages", "sender", msg.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (s, v) = call(&app, "GET", "/v1/messages", Some("sender"), None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (s, v) = call(&app, "GET", "/v1/messages", Some("reader"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (s, _) = post(
        &app,
        "/v1/templates",
        "sender",
        json!({"name": "x", "body": "y"}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // `slow`: a burst of 2, then 429 with Retry-After.
    for _ in 0..2 {
        let (s, _) = post(&app, "/v1/estimate", "slow", json!({"text": "hi"})).await;
        assert_eq!(s, StatusCode::OK);
    }
    let req = Request::builder()
        .method("POST")
        .uri("/v1/estimate")
        .header("authorization", "Bearer slow")
        .header("content-type", "application/json")
        .body(Body::from(json!({"text": "hi"}).to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_appointments_and_listing() {
    let (_d, _store, app) = app().await;
    let (s, v) = call(&app, "GET", "/v1/templates", Some("s3cret"), None).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for n in [
        "appointment_confirmation",
        "appointment_reminder",
        "order_confirmation",
        "security_code",
        "shipping_update",
    ] {
        assert!(names.contains(&n), "{names:?}");
    }
    let (s, v) = post(
        &app,
        "/v1/templates",
        "s3cret",
        json!({"name": "hello", "body": "Hi {{ name }}!"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["variables"], json!(["name"]));
    let (s, _) = call(
        &app,
        "PUT",
        "/v1/templates/hello",
        Some("s3cret"),
        Some(json!({"body": "Hello {{name}}"}).to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = post(
        &app,
        "/v1/messages",
        "s3cret",
        json!({"to": "+491701234567", "template": "hello", "vars": {"name": "Ann"}}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["text"], "Hello Ann");
    assert_eq!(v["template"], "hello");
    let (s, _) = call(&app, "DELETE", "/v1/templates/hello", Some("s3cret"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&app, "GET", "/v1/templates/hello", Some("s3cret"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // An appointment with a reminder: two messages, one group, one DELETE.
    let (s, v) = post(&app, "/v1/messages", "s3cret", json!({
        "to": "+491701234567", "template": "appointment_confirmation",
        "vars": {"name": "Ann", "when": "Fri 10:00"},
        "appointment_at": now_plus_hours(48), "remind_before": "24h", "send_at": now_plus_hours(1)
    })).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let rid = v["reminder"]["id"].as_i64().unwrap();
    assert_eq!(v["group_id"], id);
    assert_eq!(v["reminder"]["group_id"], id);
    assert!(
        v["reminder"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Reminder")
    );
    let (s, c) = call(
        &app,
        "DELETE",
        &format!("/v1/messages/{id}"),
        Some("s3cret"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["cancelled"], json!([id, rid]));
    let (_, r) = call(
        &app,
        "GET",
        &format!("/v1/messages/{rid}"),
        Some("s3cret"),
        None,
    )
    .await;
    assert_eq!(r["status"], "cancelled");

    // Listing: filters and a cursor.
    for i in 0..5 {
        let (s, _) = post(
            &app,
            "/v1/messages",
            "s3cret",
            json!({"to": "+491709999999", "text": format!("m{i}")}),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    let (_, p1) = call(
        &app,
        "GET",
        "/v1/messages?to=%2B491709999999&limit=3",
        Some("s3cret"),
        None,
    )
    .await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 3);
    let cursor = p1["next_cursor"].as_str().unwrap().to_owned();
    let (_, p2) = call(
        &app,
        "GET",
        &format!("/v1/messages?to=%2B491709999999&limit=3&cursor={cursor}"),
        Some("s3cret"),
        None,
    )
    .await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 2);
    assert!(p2["next_cursor"].is_null());
    let (_, c) = call(
        &app,
        "GET",
        "/v1/messages?status=cancelled",
        Some("s3cret"),
        None,
    )
    .await;
    assert_eq!(c["items"].as_array().unwrap().len(), 2);
    let (s, e) = post(&app, "/v1/estimate", "s3cret", json!({"text": "Grüße 👋"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (e["parts"].as_u64(), e["encoding"].as_str()),
        (Some(1), Some("ucs2"))
    );
    let (s, i) = call(&app, "GET", "/v1/inbox", Some("reader"), None).await;
    assert_eq!(
        (s, i["items"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    let (s, _) = call(&app, "GET", "/v1/sims", Some("reader"), None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otp_idempotency_and_opt_out() {
    let (_d, store, app) = app().await;
    let (s, v) = post(
        &app,
        "/v1/otp",
        "s3cret",
        json!({"to": "+491701234567", "length": 6, "ttl": "5m"}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let mid = v["message_id"].as_i64().unwrap();
    // The code is in the message body only; the API masks it.
    let (_, m) = call(
        &app,
        "GET",
        &format!("/v1/messages/{mid}"),
        Some("s3cret"),
        None,
    )
    .await;
    assert!(m["text"].is_null() && m["masked"] == true, "{m}");
    assert_eq!(m["priority"], "otp");
    let body: String = store
        .read_blocking(move |c| {
            Ok(
                c.query_row("SELECT body FROM messages WHERE id = ?1", [mid], |r| {
                    r.get(0)
                })?,
            )
        })
        .unwrap();
    let code: String = body.chars().filter(char::is_ascii_digit).take(6).collect();
    let stored: String = store
        .read_blocking(move |c| {
            Ok(
                c.query_row("SELECT code_hash FROM otps WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?,
            )
        })
        .unwrap();
    assert!(!stored.contains(&code));
    // Cooldown.
    let (s, v) = post(&app, "/v1/otp", "s3cret", json!({"to": "+491701234567"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("cooldown"))
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (_, r) = post(
        &app,
        &format!("/v1/otp/{id}/verify"),
        "s3cret",
        json!({"code": wrong}),
    )
    .await;
    assert_eq!(r["result"], "invalid");
    let (_, r) = post(
        &app,
        &format!("/v1/otp/{id}/verify"),
        "s3cret",
        json!({"code": code}),
    )
    .await;
    assert_eq!(r["result"], "verified", "{r}");
    let (_, r) = post(
        &app,
        &format!("/v1/otp/{id}/verify"),
        "s3cret",
        json!({"code": code}),
    )
    .await;
    assert_eq!(r["result"], "invalid", "a code verifies once");
    // Attempt limit.
    let (_, v) = post(&app, "/v1/otp", "s3cret", json!({"to": "+491709999999"})).await;
    let id2 = v["id"].as_i64().unwrap();
    for _ in 0..5 {
        let (_, r) = post(
            &app,
            &format!("/v1/otp/{id2}/verify"),
            "s3cret",
            json!({"code": "0000000"}),
        )
        .await;
        assert_eq!(r["result"], "invalid");
    }
    let (_, r) = post(
        &app,
        &format!("/v1/otp/{id2}/verify"),
        "s3cret",
        json!({"code": "0000000"}),
    )
    .await;
    assert_eq!(r["result"], "too_many_attempts");

    // Idempotency-Key: same body → the first response; another body → 409.
    let send = |key: &'static str, text: &'static str| {
        let app = app.clone();
        async move {
            let req = Request::builder()
                .method("POST")
                .uri("/v1/messages")
                .header("authorization", "Bearer s3cret")
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(Body::from(
                    json!({"to": "+491701234567", "text": text}).to_string(),
                ))
                .unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let s = resp.status();
            let b = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (s, serde_json::from_slice::<Value>(&b).unwrap())
        }
    };
    let (s1, a) = send("k1", "hello").await;
    let (s2, b) = send("k1", "hello").await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(a, b);
    let (s3, c) = send("k1", "other").await;
    assert_eq!(
        (s3, c["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("idempotency_conflict"))
    );

    // Opt-out: an inbound STOP suppresses, START releases; admin routes edit the list.
    let kw = crate::store::OptOutKeywords {
        stop: vec!["STOP".into()],
        start: vec!["START".into()],
    };
    let inbound = |text: &'static str, kw: crate::store::OptOutKeywords| {
        store.write(move |c| {
            c.execute(
                "INSERT INTO inbox (received_at, sender, body, parts_total, parts_received, \
                 complete, pdus) VALUES (1, '+491705550000', ?1, 1, 1, 1, '[]')",
                [text],
            )?;
            crate::store::apply_opt_out(c, c.last_insert_rowid(), &kw, 1)
        })
    };
    assert!(inbound(" stop! ", kw.clone()).await.unwrap().is_some());
    let (s, v) = post(
        &app,
        "/v1/messages",
        "s3cret",
        json!({"to": "+491705550000", "text": "promo"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("suppressed"))
    );
    let (_, l) = call(&app, "GET", "/v1/suppressions", Some("s3cret"), None).await;
    assert_eq!(l["items"][0]["number"], "+491705550000");
    assert_eq!(l["items"][0]["keyword"], "STOP");
    assert!(inbound("Start", kw.clone()).await.unwrap().is_some());
    let (s, _) = post(
        &app,
        "/v1/messages",
        "s3cret",
        json!({"to": "+491705550000", "text": "promo"}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = call(
        &app,
        "PUT",
        "/v1/suppressions/+491705550001",
        Some("s3cret"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &app,
        "PUT",
        "/v1/suppressions/+491705550001",
        Some("sender"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &app,
        "DELETE",
        "/v1/suppressions/+491705550001",
        Some("s3cret"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

/// `GET /openapi.json`: parses, is OpenAPI 3.1, documents exactly the routes the router
/// serves (`ROUTES`), every `$ref` resolves; and `openapi-spec-validator` (PyPI), when
/// installed, accepts it (required when `GSMGW_REQUIRE_OPENAPI_VALIDATOR=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_valid_and_complete() {
    let (_d, _store, app) = app().await;
    let (s, doc) = call(&app, "GET", "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (p, ops) in paths {
        for m in ops.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&m.as_str()) {
                documented.push((m.to_uppercase(), p.clone()));
            }
        }
    }
    for (m, p, access) in ROUTES {
        assert!(
            documented.contains(&(m.to_string(), p.to_string())),
            "{m} {p} is not in the document"
        );
        // The route is really served (not 404/405 for a missing route).
        let uri = p
            .replace("{id}/{action}", "x/enable")
            .replace("{id}", "1")
            .replace("{name}", "nope")
            .replace("{iccid}", "1")
            .replace("{number}", "%2B491700000000");
        let (s, _) = call(&app, m, &uri, None, None).await;
        if *access != Access::Public {
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {uri}");
        }
    }
    assert_eq!(documented.len(), ROUTES.len(), "{documented:?}");
    // Every $ref points at a component.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {name}"
        );
    }
    // The external validator.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output();
    let required = std::env::var("GSMGW_REQUIRE_OPENAPI_VALIDATOR").is_ok_and(|v| v == "1");
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named") && !required => {
            eprintln!("openapi-spec-validator not installed: structural checks only");
        }
        Ok(o) => panic!(
            "openapi-spec-validator rejected the document: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) if !required => eprintln!("no python3 ({e}): structural checks only"),
        Err(e) => panic!("python3: {e}"),
    }
}

// ---- Issue #10: the audit's findings, one regression test each (see also store,
// server, webhook, AT and dispatcher tests). ----

/// Writes one row through the store, as any later request would: the writer lives.
async fn store_takes_a_write(store: &Store) -> bool {
    store
        .write(|c| {
            c.execute_batch("CREATE TABLE IF NOT EXISTS probe (x); INSERT INTO probe VALUES (1)")?;
            Ok(())
        })
        .await
        .is_ok()
}

/// Finding 1: times past the documented bound (`http.max_ahead_days`) are refused naming the
/// field, nothing is stored, and the store goes on taking writes. On the old code the
/// first of these stopped the store's writer for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_future_times_are_refused_and_the_store_keeps_writing() {
    let (_d, store, app) = app().await;
    let base = || json!({"to": "+491701234567", "text": "hi"});
    let with = |k: &str, v: Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    let cases = [
        (
            with("send_at", json!(253_402_300_800_000i64)),
            "send_at",
            "too_far_ahead",
        ),
        (with("send_at", json!(i64::MAX)), "send_at", "too_far_ahead"),
        (
            with("send_at", json!("9999-12-31T23:59:59Z")),
            "send_at",
            "too_far_ahead",
        ),
        (
            with("expires_at", json!(253_402_300_800_000i64)),
            "expires_at",
            "too_far_ahead",
        ),
        (with("expires_at", json!(-1)), "expires_at", "invalid_time"),
        (with("ttl", json!("9000000y")), "ttl", "too_long"),
        (with("ttl", json!(u64::MAX)), "ttl", "too_long"),
        (with("validity", json!("500y")), "validity", "too_long"),
        (
            json!({"to": "+491701234567", "template": "appointment_confirmation",
                   "vars": {"name": "A", "when": "B"},
                   "appointment_at": 253_402_300_800_000i64, "remind_before": "24h"}),
            "appointment_at",
            "too_far_ahead",
        ),
        (
            json!({"to": "+491701234567", "template": "appointment_confirmation",
                   "vars": {"name": "A", "when": "B"},
                   "appointment_at": now_plus_hours(48), "remind_before": "9000000y"}),
            "remind_before",
            "too_long",
        ),
    ];
    for (body, field, code) in cases {
        let (s, v) = post(&app, "/v1/messages", "sender", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {v}");
        assert_eq!(v["error"]["field"], field, "{body} → {v}");
        assert_eq!(v["error"]["code"], code, "{body} → {v}");
        assert!(store_takes_a_write(&store).await, "after {body}");
    }
    // One bad item in a batch: the whole batch is refused, naming the item.
    let (s, v) = post(
        &app,
        "/v1/messages/batch",
        "sender",
        json!({"messages": [base(), with("send_at", json!(253_402_300_800_000i64))]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "messages[1].send_at");
    assert_eq!(rows(&store), 0, "nothing stored for refused requests");
    // Within the bound is fine, and the response formats it.
    let (s, v) = post(
        &app,
        "/v1/messages",
        "sender",
        with("send_at", json!("2099-12-04T09:00:00Z")),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert!(store_takes_a_write(&store).await);
    let (s, _) = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
}

/// Finding 1: a stopped writer shows on /healthz (until the daemon exits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_when_the_store_writer_stopped() {
    let (_d, store, app) = app().await;
    let resp = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    store.crash_writer_for_tests();
    tokio::time::timeout(std::time::Duration::from_secs(10), store.writer_stopped())
        .await
        .unwrap();
    let resp = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("store writer stopped"));
    let (s, v) = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["store"], false);
    assert!(
        v["store_error"]
            .as_str()
            .unwrap()
            .contains("writer stopped"),
        "{v}"
    );
}

/// Finding 8: a send token cancels and verifies only what it created; another send
/// token gets 404 (and spends none of the code's attempts); admin acts on all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_creating_token_acts_on_its_messages_and_codes() {
    let (_d, store, app) = app().await;
    let body = json!({"to": "+491701234567", "text": "hi", "send_at": now_plus_hours(1)});
    let (s, v) = post(&app, "/v1/messages", "sender", body.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (s, v) = call(
        &app,
        "DELETE",
        &format!("/v1/messages/{id}"),
        Some("sender2"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another token's message: {v}");
    let (s, v) = call(
        &app,
        "DELETE",
        &format!("/v1/messages/{id}"),
        Some("sender"),
        None,
    )
    .await;
    assert_eq!(
        (s, v["status"].clone()),
        (StatusCode::OK, json!("cancelled"))
    );
    let (s, v) = post(&app, "/v1/messages", "sender", body).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let id = v["id"].as_i64().unwrap();
    let (s, _) = call(
        &app,
        "DELETE",
        &format!("/v1/messages/{id}"),
        Some("admin"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "admin acts on all");

    let (s, v) = post(&app, "/v1/otp", "sender", json!({"to": "+491701234569"})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let otp = v["id"].as_i64().unwrap();
    for _ in 0..5 {
        let (s, _) = post(
            &app,
            &format!("/v1/otp/{otp}/verify"),
            "sender2",
            json!({"code": "000000"}),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let attempts: i64 = store
        .read(move |c| {
            Ok(
                c.query_row("SELECT attempts FROM otps WHERE id = ?1", [otp], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
        .unwrap();
    assert_eq!(attempts, 0, "another token spent none of the attempts");
    let (s, v) = post(
        &app,
        &format!("/v1/otp/{otp}/verify"),
        "sender",
        json!({"code": "000000"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_ne!(v["result"], "too_many_attempts");
}

/// Finding 10: a template cannot render past a bound, however many placeholders it
/// has; the request is refused before any planning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_output_is_bounded() {
    let (_d, _store, app) = app().await;
    let body = "{{v}}".repeat(5000);
    let (s, v) = post(
        &app,
        "/v1/templates",
        "s3cret",
        json!({"name": "bomb", "body": body}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let big = "x".repeat(20_000);
    let (s, v) = post(
        &app,
        "/v1/estimate",
        "reader",
        json!({"template": "bomb", "vars": {"v": big}}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "too_long");
    assert_eq!(v["error"]["field"], "vars");
    let (s, v) = post(
        &app,
        "/v1/messages",
        "sender",
        json!({"to": "+491701234567", "template": "bomb", "vars": {"v": big}}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "too_long");
}

/// Finding 11: HEAD needs what GET needs (it was treated as an unlisted method, so
/// admin only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_needs_what_get_needs() {
    let (_d, _store, app) = app().await;
    for uri in ["/v1/messages", "/v1/inbox", "/v1/templates"] {
        let resp = app
            .clone()
            .oneshot(
                Request::head(uri)
                    .header("authorization", "Bearer reader")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "HEAD {uri}");
    }
    let resp = app
        .clone()
        .oneshot(
            Request::head("/v1/messages")
                .header("authorization", "Bearer sender")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "send scope cannot read"
    );
}

/// Finding 11: /readyz does not write; it answers at once while another process holds
/// the write lock, and says so when the last commit failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reads_and_answers_while_the_database_is_locked() {
    let (_d, store, app) = app().await;
    let other = rusqlite::Connection::open(store.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (s, v) = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        call(&app, "GET", "/readyz", None, None),
    )
    .await
    .expect("readyz answers while the write lock is held (it used to wait 10 s and more)");
    // No modems here, so 503; the store itself reads fine.
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["store"], true, "{v}");
    assert_eq!(v["modems_ready"], 0);
    other.execute_batch("COMMIT").unwrap();
}

/// Finding 3: one token's undelivered callbacks are capped; past the cap its new
/// messages with a callback_url get 429, others' are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_callbacks_are_capped_per_token() {
    let (_d, store, app) = app_with(ApiSettings {
        max_pending_callbacks: 2,
        ..settings()
    })
    .await;
    let url = "https://hooks.example.com/sms";
    let body = json!({"to": "+491701234567", "text": "hi", "callback_url": url});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (s, v) = post(&app, "/v1/messages", "sender", body.clone()).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        ids.push(v["id"].as_i64().unwrap());
    }
    // Their events wait (the destination does not answer).
    store
        .write(move |c| {
            for id in ids {
                crate::store::enqueue_event(
                    c,
                    "message.sent",
                    &json!({"id": id}),
                    &[url.to_owned(), "https://operator.example/hook".to_owned()],
                    1000,
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let (s, v) = post(&app, "/v1/messages", "sender", body.clone()).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "too_many_pending_callbacks");
    let (s, _) = post(
        &app,
        "/v1/messages",
        "sender",
        json!({"to": "+491701234567", "text": "no callback"}),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::ACCEPTED,
        "messages without a callback still go"
    );
    let (s, _) = post(&app, "/v1/messages", "sender2", body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "another token is not affected");
}

/// Values that have broken or could break a field: extremes of every numeric kind,
/// times past year 9999, durations of millennia, odd strings, nested shapes.
fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let now = crate::store::now_ms();
    let ints = prop_oneof![
        Just(json!(253_402_300_800_000i64)),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(now)),
        Just(json!(now + 3_600_000)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u32>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
    ];
    let strings = prop_oneof![
        Just(json!("9000000y")),
        Just(json!("99999-01-01T00:00:00Z")),
        Just(json!("9999-12-31T23:59:59Z")),
        Just(json!("+491701234567")),
        Just(json!("order_confirmation")),
        Just(json!("appointment_reminder")),
        Just(json!("http://")),
        Just(json!("http://127.0.0.1:1/")),
        Just(json!("24h")),
        Just(json!("{{code}}{{code}}")),
        Just(json!("")),
        "\\PC{0,40}".prop_map(|s| json!(s)),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        ints,
        strings
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Times and durations at and past every edge, for the fields that hold them.
fn time_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let now = crate::store::now_ms();
    prop_oneof![
        Just(json!(253_402_300_800_000i64)),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!("9000000y")),
        Just(json!("9999-12-31T23:59:59Z")),
        Just(json!(now + 366 * 86_400_000)),
        (0i64..i64::MAX).prop_map(|n| json!(n)),
        (0u64..u64::MAX).prop_map(|n| json!(n)),
    ]
}

/// A field's value: for time and duration fields half the time an edge time.
fn field_json(name: &str) -> proptest::strategy::BoxedStrategy<Value> {
    use proptest::prelude::*;
    let timeish =
        name.ends_with("_at") || matches!(name, "ttl" | "validity" | "remind_before" | "since");
    if timeish {
        prop_oneof![time_json(), any_json()].boxed()
    } else {
        any_json().boxed()
    }
}

/// Every route with a body, with the fields it knows (plus one it does not).
const BODY_ROUTES: &[(&str, &str, &[&str])] = &[
    ("POST", "/v1/messages", super::messages::KNOWN),
    ("POST", "/v1/messages/batch", &["messages"]),
    ("POST", "/v1/estimate", &["text", "template", "vars"]),
    ("POST", "/v1/templates", &["name", "body", "description"]),
    ("PUT", "/v1/templates/t{}", &["body", "description"]),
    (
        "POST",
        "/v1/otp",
        &["to", "length", "ttl", "template", "vars", "sim"],
    ),
    ("POST", "/v1/otp/{}/verify", &["code"]),
    ("PUT", "/v1/suppressions/{}", &["note"]),
    ("POST", "/v1/sims/{}/ussd", &["code"]),
    ("POST", "/v1/modems/{}/reset", &[]),
    ("DELETE", "/v1/messages/{}", &[]),
    ("GET", "/v1/messages?since={}", &[]),
    ("GET", "/v1/messages/{}", &[]),
];

/// The audit's property, over the real router in-process: arbitrary JSON in every field
/// of every route (and a valid message with one field replaced, so values reach deep
/// checks) never yields a 5xx, and the store takes a write after every case. On the
/// code before #10 it finds the far-future `send_at` that stopped the store's writer.
#[test]
fn arbitrary_json_in_every_field_never_breaks_the_store() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_d, store, app) = rt.block_on(app());
    // Half the cases are a valid message with one field replaced, so each value
    // reaches the checks (and the write) behind the others.
    let route = prop_oneof![Just(0usize), 0..BODY_ROUTES.len()];
    let strategy = (route, 0usize..32, any::<bool>(), any_json()).prop_flat_map(
        |(r, i, from_valid, path_value)| {
            let known = BODY_ROUTES[r].2;
            let name = known.get(i % known.len().max(1)).copied().unwrap_or("x");
            (
                Just((r, name, from_valid, path_value)),
                field_json(name),
                proptest::collection::vec((0usize..32, any_json()), 0..3),
            )
        },
    );
    let mut runner = TestRunner::new(Config {
        cases: 600,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(
        &strategy,
        |((r, name, from_valid, path_value), value, extra)| {
            let (method, path, known) = BODY_ROUTES[r];
            let mut body = if from_valid && path == "/v1/messages" {
                json!({"to": "+491701234567", "text": "hi"})
            } else {
                json!({})
            };
            if !known.is_empty() {
                body[name] = value;
            }
            if !from_valid {
                for (i, v) in extra {
                    let name = known.get(i).copied().unwrap_or("unknown_field");
                    body[name] = v;
                }
            }
            if path == "/v1/messages/batch" && from_valid {
                body = json!({"messages": [{"to": "+491701234567", "text": "x"}, body.clone()]});
            }
            let seg = match &path_value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let seg: String = seg
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            let uri = path.replace("{}", &seg);
            let (status, v) = rt.block_on(call(
                &app,
                method,
                &uri,
                Some("s3cret"),
                (!matches!(method, "GET" | "DELETE")).then(|| body.to_string()),
            ));
            let writes = rt.block_on(store_takes_a_write(&store));
            prop_assert!(
                writes,
                "the store stopped taking writes after {method} {uri} {body}"
            );
            prop_assert!(
                !status.is_server_error()
                    || (status == StatusCode::BAD_GATEWAY && uri.starts_with("/v1/modems")),
                "{method} {uri} {body} → {status} {v}"
            );
            // The typed structs take whatever passed the shape checks: a refusal is
            // always one of the field codes, never the deserializer's.
            prop_assert!(
                !v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("the body: ")),
                "{method} {uri} {body} → {status} {v}"
            );
            Ok::<(), TestCaseError>(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(store.writer_failure().is_none());
}

/// Findings 2 and 11: callback URLs that would reach the gateway's own host, the
/// simulator, a private network or cloud metadata are refused at accept time, as are
/// `http://` without a host and URLs with credentials; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_urls_to_non_public_destinations_are_refused() {
    let (_d, store, app) = app().await;
    for (url, code) in [
        ("http://", "invalid_url"),
        ("https://", "invalid_url"),
        ("ftp://hooks.example.com/", "invalid_url"),
        ("http://127.0.0.1:8080/v1/messages", "invalid_callback_url"),
        ("http://localhost/", "invalid_callback_url"),
        ("http://2130706433/", "invalid_callback_url"),
        ("http://0x7f.1/", "invalid_callback_url"),
        ("http://[::ffff:127.0.0.1]/", "invalid_callback_url"),
        ("http://[::1]:9000/", "invalid_callback_url"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "invalid_callback_url",
        ),
        ("http://10.0.0.5/hook", "invalid_callback_url"),
        ("http://192.168.1.10/hook", "invalid_callback_url"),
        ("http://0.0.0.0/", "invalid_callback_url"),
        ("https://user:pw@hooks.example.com/", "invalid_callback_url"),
    ] {
        let (s, v) = post(
            &app,
            "/v1/messages",
            "sender",
            json!({"to": "+491701234567", "text": "hi", "callback_url": url}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url} → {v}");
        assert_eq!(v["error"]["field"], "callback_url", "{url}");
        assert_eq!(v["error"]["code"], code, "{url} → {v}");
    }
    assert_eq!(rows(&store), 0);
    let (s, v) = post(
        &app,
        "/v1/messages",
        "sender",
        json!({"to": "+491701234567", "text": "hi", "callback_url": "https://Hooks.Example.com/sms"}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v["callback_url"], "https://hooks.example.com/sms",
        "stored normalised"
    );
}

// ---- Issue #12: typed API, modem ids, lists, Location, the metrics scope. ----

/// Every schema reachable from `s`, `$ref`s resolved through `doc`; calls `bad` with a
/// path for each untyped object (type object without properties, `$ref` or an
/// `additionalProperties` schema) and each missing or empty schema.
fn untyped_schemas(
    doc: &Value,
    s: &Value,
    at: &str,
    seen: &mut Vec<String>,
    bad: &mut Vec<String>,
) {
    let Some(o) = s.as_object() else {
        bad.push(format!("{at}: no schema"));
        return;
    };
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/").to_owned();
        let target = &doc["components"]["schemas"][&name];
        if target.is_null() {
            bad.push(format!("{at}: dangling $ref {r}"));
        } else if !seen.contains(&name) {
            seen.push(name.clone());
            untyped_schemas(doc, target, &format!("{at}→{name}"), seen, bad);
        }
        return;
    }
    let is_object = match o.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => false,
    };
    let composed = ["oneOf", "anyOf", "allOf"]
        .iter()
        .any(|k| o.get(*k).is_some_and(Value::is_array));
    let props = o.get("properties").and_then(Value::as_object);
    let extra = o.get("additionalProperties").filter(|a| a.is_object());
    if is_object && props.is_none() && extra.is_none() && !composed {
        bad.push(format!("{at}: untyped object {s}"));
    }
    if o.get("type").is_none() && !composed && !o.contains_key("const") && !o.contains_key("enum") {
        bad.push(format!("{at}: schema without a type {s}"));
    }
    for (k, p) in props.into_iter().flatten() {
        untyped_schemas(doc, p, &format!("{at}.{k}"), seen, bad);
    }
    // A free-form map's values (`{}`) are allowed: the map itself is typed.
    if let Some(e) = extra.filter(|e| e.as_object().is_some_and(|o| !o.is_empty())) {
        untyped_schemas(doc, e, &format!("{at}.*"), seen, bad);
    }
    if let Some(i) = o.get("items") {
        untyped_schemas(doc, i, &format!("{at}[]"), seen, bad);
    }
    for k in ["oneOf", "anyOf", "allOf"] {
        for (n, x) in o
            .get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            untyped_schemas(doc, x, &format!("{at}.{k}[{n}]"), seen, bad);
        }
    }
}

/// Item 3's check: no route answers (2xx or error) with an untyped object or without a
/// schema. Fails the build (`cargo test`) the day someone documents `body = Value`.
#[test]
fn openapi_responses_are_all_typed() {
    let doc = openapi::document();
    let mut bad = Vec::new();
    let mut responses = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let Some(rs) = op["responses"].as_object() else {
                bad.push(format!("{method} {path}: no responses"));
                continue;
            };
            assert!(
                rs.keys().any(|k| k.starts_with('2')),
                "{method} {path}: no 2xx"
            );
            for (status, r) in rs {
                responses += 1;
                let at = format!("{method} {path} {status}");
                let Some(content) = r["content"].as_object().filter(|c| !c.is_empty()) else {
                    bad.push(format!("{at}: no content"));
                    continue;
                };
                for (media, c) in content {
                    let s = &c["schema"];
                    if s.as_object().is_none_or(|o| o.is_empty()) {
                        bad.push(format!("{at} {media}: no schema"));
                        continue;
                    }
                    if !status.starts_with('2') && !["/healthz", "/readyz"].contains(&path.as_str())
                    {
                        assert_eq!(
                            s["$ref"], "#/components/schemas/ErrorBody",
                            "{at}: an error answers with ErrorBody"
                        );
                    }
                    untyped_schemas(&doc, s, &at, &mut Vec::new(), &mut bad);
                }
            }
        }
    }
    assert!(responses > 60, "{responses}");
    assert!(
        bad.is_empty(),
        "untyped or missing response schemas:\n{}",
        bad.join("\n")
    );
    // The checker itself catches a bare object and an empty schema.
    let mut caught = Vec::new();
    untyped_schemas(
        &doc,
        &json!({"type": "object"}),
        "x",
        &mut Vec::new(),
        &mut caught,
    );
    untyped_schemas(&doc, &json!({}), "y", &mut Vec::new(), &mut caught);
    assert_eq!(caught.len(), 2, "{caught:?}");
}

/// Structure: OpenAPI 3.1 JSON, every `$ref` resolves, every operation has an id, its
/// path parameters are declared, request bodies are typed, and every schema named in
/// components is itself typed.
#[test]
fn openapi_document_is_structurally_valid() {
    let doc = openapi::document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"").skip(1) {
        let r = &r[..r.find('"').unwrap()];
        let mut node = &doc;
        assert!(r.starts_with("#/"), "external $ref {r}");
        for part in r[2..].split('/') {
            node = &node[part];
        }
        assert!(node.is_object(), "dangling $ref {r}");
    }
    let mut bad = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            assert!(op["operationId"].is_string(), "{method} {path}");
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                assert!(
                    declared.contains(&name),
                    "{method} {path}: {name} undeclared"
                );
            }
            if let Some(content) = op["requestBody"]["content"].as_object() {
                for (media, c) in content {
                    untyped_schemas(
                        &doc,
                        &c["schema"],
                        &format!("{method} {path} request {media}"),
                        &mut Vec::new(),
                        &mut bad,
                    );
                }
            }
        }
    }
    for (name, s) in doc["components"]["schemas"].as_object().unwrap() {
        untyped_schemas(&doc, s, name, &mut Vec::new(), &mut bad);
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn modem_slugs_need_no_escaping() {
    for (port, slug) in [
        ("/dev/gsmgw/sim7600-a", "sim7600-a"),
        ("/dev/gsmgw/Modem_0", "modem-0"),
        ("/dev/ttyUSB0", "ttyusb0"),
        (
            "/dev/serial/by-id/usb-HUAWEI_E3372-if00-port0",
            "serial-by-id-usb-huawei-e3372-if00-port0",
        ),
        ("tcp://10.0.0.5:7000", "tcp-10-0-0-5-7000"),
        ("/tmp/bank/modem1", "tmp-bank-modem1"),
        ("/dev/gsmgw/--", "modem"),
    ] {
        let s = modem_slug(port);
        assert_eq!(s, slug, "{port}");
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
    }
}

/// Two modems; records the actions it is asked for.
#[derive(Default)]
struct TwoModems {
    actions: std::sync::Mutex<Vec<(String, String)>>,
}

impl ModemsView for TwoModems {
    fn modems(&self) -> Vec<ModemView> {
        ["/dev/gsmgw/left", "/dev/ttyUSB3"]
            .iter()
            .map(|p| ModemView {
                id: modem_slug(p),
                port: (*p).into(),
                spare_ports: vec![],
                calls_rejected: 2,
                enabled: true,
                state: ModemStateView {
                    state: "ready".into(),
                    reason: None,
                },
                manufacturer: Some("SIMCOM".into()),
                model: None,
                imei: Some("351234567890123".into()),
                iccid: Some("89490200001234567890".into()),
                imsi: None,
                operator: Some("Telekom".into()),
                signal: Some(SignalView {
                    rssi_dbm: Some(-71),
                    ber: Some(0),
                    bars: 4,
                }),
                registration: Some("home".into()),
                storage: Some(StorageView { used: 1, total: 30 }),
            })
            .collect()
    }
    fn ready_count(&self) -> usize {
        2
    }
    fn action<'a>(
        &'a self,
        port: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Option<Result<(), String>>> {
        self.actions
            .lock()
            .unwrap()
            .push((port.to_owned(), action.to_owned()));
        Box::pin(async { Some(Ok(())) })
    }
}

async fn app_with_modems(modems: Arc<TwoModems>) -> (tempfile::TempDir, Router) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("api.db")).unwrap();
    let (dispatcher, _task) = Dispatcher::start(
        store.clone(),
        Pool::new(PoolConfig::default()).unwrap(),
        Settings::default(),
    )
    .await
    .unwrap();
    let mut settings = settings();
    settings.tokens.push(ApiToken {
        name: "scraper".into(),
        sha256: sha256(b"scraper"),
        scopes: vec![Scope::Metrics],
        rate_limit: None,
    });
    let state = AppState {
        store,
        dispatcher,
        settings: SharedSettings::new(settings),
        modems: modems as Arc<dyn ModemsView>,
        limiter: Arc::default(),
    };
    (dir, router(state))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modems_are_a_list_with_slugs_and_the_old_forms_still_work() {
    let modems = Arc::new(TwoModems::default());
    let (_d, app) = app_with_modems(modems.clone()).await;
    let (s, v) = call(&app, "GET", "/v1/modems", Some("reader"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let m = &items[0];
    assert_eq!(m["id"], "left");
    assert_eq!(m["port"], "/dev/gsmgw/left");
    assert_eq!(items[1]["id"], "ttyusb3");
    // Every documented field, with its documented shape.
    assert_eq!(m["state"], json!({"state": "ready", "reason": null}));
    assert_eq!(m["signal"]["bars"], 4);
    assert_eq!(m["registration"], "home");
    assert_eq!(m["storage"], json!({"used": 1, "total": 30}));
    assert_eq!(m["spare_ports"], json!([]));
    assert_eq!(m["calls_rejected"], 2);
    for k in [
        "enabled",
        "manufacturer",
        "model",
        "imei",
        "iccid",
        "imsi",
        "operator",
    ] {
        assert!(m.get(k).is_some(), "{k} missing: {m}");
    }
    // The deprecated bare array, as in earlier releases: `id` is the device path.
    let (s, v) = call(&app, "GET", "/v1/modems?format=array", Some("reader"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["id"], "/dev/gsmgw/left");
    assert!(v[0].get("port").is_none());
    // Actions by slug, and by the old (escaped) device path.
    let (s, v) = post(&app, "/v1/modems/left/disable", "admin", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"id": "left", "port": "/dev/gsmgw/left", "enabled": false})
    );
    let (s, v) = call(
        &app,
        "POST",
        "/v1/modems/%2Fdev%2FttyUSB3/reset",
        Some("admin"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["reset"], true);
    assert_eq!(v["id"], "ttyusb3");
    let (s, _) = call(&app, "POST", "/v1/modems/nope/enable", Some("admin"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        *modems.actions.lock().unwrap(),
        vec![
            ("/dev/gsmgw/left".to_owned(), "disable".to_owned()),
            ("/dev/ttyUSB3".to_owned(), "reset".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_scope_reads_metrics_and_nothing_else() {
    let (_d, app) = app_with_modems(Arc::default()).await;
    let status = |token: &'static str, method: &'static str, uri: &'static str| {
        let app = app.clone();
        async move {
            let body = (method == "POST").then(|| json!({"text": "hi"}).to_string());
            call(&app, method, uri, Some(token), body).await.0
        }
    };
    assert_eq!(status("scraper", "GET", "/metrics").await, StatusCode::OK);
    assert_eq!(status("admin", "GET", "/metrics").await, StatusCode::OK);
    assert_eq!(status("s3cret", "GET", "/metrics").await, StatusCode::OK);
    // `read` and `send` no longer read /metrics.
    assert_eq!(
        status("reader", "GET", "/metrics").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status("sender", "GET", "/metrics").await,
        StatusCode::FORBIDDEN
    );
    for (m, uri) in [
        ("GET", "/v1/messages"),
        ("GET", "/v1/messages/1"),
        ("GET", "/v1/inbox"),
        ("GET", "/v1/modems"),
        ("GET", "/v1/sims"),
        ("GET", "/v1/templates"),
        ("POST", "/v1/estimate"),
        ("POST", "/v1/messages"),
    ] {
        assert_eq!(
            status("scraper", m, uri).await,
            StatusCode::FORBIDDEN,
            "{m} {uri}"
        );
    }
}

async fn call_headers(
    app: &Router,
    uri: &str,
    token: &str,
    body: Value,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("idempotency-key", "loc-1")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_answer_with_a_location() {
    let (_d, _store, app) = app().await;
    let msg = json!({"to": "+491701234567", "text": "hi"});
    for replay in [false, true] {
        let (s, h, v) = call_headers(&app, "/v1/messages", "s3cret", msg.clone()).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(
            h["location"].to_str().unwrap(),
            format!("/v1/messages/{}", v["id"]),
            "replay: {replay}"
        );
        assert_eq!(h.contains_key("idempotent-replayed"), replay);
    }
    let (s, h, v) = call_headers(
        &app,
        "/v1/messages/batch",
        "s3cret",
        json!({"messages": [msg.clone(), msg]}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        h["location"].to_str().unwrap(),
        format!("/v1/messages/{}", v["messages"][0]["id"])
    );
    let (s, h, v) = call_headers(&app, "/v1/otp", "s3cret", json!({"to": "+491701234568"})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        h["location"].to_str().unwrap(),
        format!("/v1/messages/{}", v["message_id"])
    );
    let (s, h, v) = call_headers(
        &app,
        "/v1/templates",
        "admin",
        json!({"name": "hello-1", "body": "Hi {{name}}"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(h["location"].to_str().unwrap(), "/v1/templates/hello-1");
}

/// Every typed response deserializes back into its type: the documented schema is what
/// the handlers send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_their_documented_types() {
    use super::types::*;
    let (_d, _store, app) = app().await;
    let (_, v) = post(
        &app,
        "/v1/messages",
        "s3cret",
        json!({"to": "+491701234567", "template": "appointment_confirmation",
               "vars": {"name": "Ann", "when": "Fri", "n": 3},
               "appointment_at": now_plus_hours(48), "remind_before": "24h", "priority": 7}),
    )
    .await;
    let m: MessageView = serde_json::from_value(v.clone()).unwrap();
    assert!(m.reminder.is_some(), "{v}");
    assert_eq!(m.priority, "7");
    let (_, v) = call(&app, "GET", "/v1/messages", Some("s3cret"), None).await;
    serde_json::from_value::<MessageList>(v).unwrap();
    let (_, v) = call(
        &app,
        "DELETE",
        &format!("/v1/messages/{}", m.id),
        Some("s3cret"),
        None,
    )
    .await;
    serde_json::from_value::<CancelResponse>(v).unwrap();
    let (_, v) = post(&app, "/v1/estimate", "s3cret", json!({"text": "hi"})).await;
    serde_json::from_value::<EstimateResponse>(v).unwrap();
    let (_, v) = call(&app, "GET", "/v1/templates", Some("s3cret"), None).await;
    serde_json::from_value::<TemplateList>(v).unwrap();
    let (_, v) = call(&app, "GET", "/v1/inbox", Some("s3cret"), None).await;
    serde_json::from_value::<InboxList>(v).unwrap();
    let (_, v) = call(&app, "GET", "/v1/sims", Some("s3cret"), None).await;
    serde_json::from_value::<SimList>(v).unwrap();
    let (_, v) = call(&app, "GET", "/v1/modems", Some("s3cret"), None).await;
    serde_json::from_value::<ModemList>(v).unwrap();
    let (_, v) = call(&app, "GET", "/v1/suppressions", Some("s3cret"), None).await;
    serde_json::from_value::<SuppressionList>(v).unwrap();
    let (_, v) = post(&app, "/v1/otp", "s3cret", json!({"to": "+491701234569"})).await;
    let o: OtpCreated = serde_json::from_value(v).unwrap();
    let (_, v) = post(
        &app,
        &format!("/v1/otp/{}/verify", o.id),
        "s3cret",
        json!({"code": "0000"}),
    )
    .await;
    serde_json::from_value::<VerifyResponse>(v).unwrap();
    let (_, v) = call(&app, "GET", "/readyz", None, None).await;
    serde_json::from_value::<Readiness>(v).unwrap();
    let (_, v) = call(&app, "GET", "/openapi.json", None, None).await;
    serde_json::from_value::<OpenApiDocument>(v).unwrap();
    let (_, v) = call(&app, "GET", "/v1/messages/999999", Some("s3cret"), None).await;
    serde_json::from_value::<ErrorBody>(v).unwrap();
}
