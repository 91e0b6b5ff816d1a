//! The HTTP API (axum): JSON under `/v1`, bearer tokens with scopes and rate limits, one
//! error shape, and the OpenAPI document describing it (`GET /openapi.json`). It owns
//! request validation — nothing is stored for a rejected request — and answers 202
//! only once a message is committed to the store.

mod auth;
mod body;
mod error;
mod messages;
mod misc;
mod number;
pub mod openapi;
mod otp;
pub mod server;
mod templates;
pub mod time;
pub mod types;

pub use auth::{ApiToken, RateLimiter, Scope, ct_eq, sha256};
pub use error::ApiError;
pub use types::{
    ModemActionResult, ModemList, ModemStateView, ModemView, SignalView, StorageView, UssdView,
    modem_slug,
};

use crate::config::{OptOutConfig, OtpConfig, RateLimitConfig};
use crate::dispatch::Dispatcher;
use crate::store::Store;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Told of each message queued or cancelled, so that the send loop acts at once.
    pub dispatcher: Dispatcher,
    /// What the handlers check requests against; replaced whole on a reload.
    pub settings: SharedSettings,
    /// Modem states for `/readyz` and `/v1/modems`, and modem actions.
    pub modems: Arc<dyn ModemsView>,
    /// Per-token request budgets.
    pub limiter: Arc<RateLimiter>,
}

/// The crate's boxed future, for the async methods of the object-safe [`ModemsView`].
pub use crate::modem::BoxFuture;

/// The daemon's modems, as the API shows and steers them.
pub trait ModemsView: Send + Sync + 'static {
    /// Every modem, as `GET /v1/modems` shows it.
    fn modems(&self) -> Vec<ModemView>;
    /// How many can send now.
    fn ready_count(&self) -> usize;
    /// `enable`, `disable` or `reset` the modem at `port` (its [`ModemView::port`]);
    /// `None` if there is no such modem.
    fn action<'a>(
        &'a self,
        _port: &'a str,
        _action: &'a str,
    ) -> BoxFuture<'a, Option<Result<(), String>>> {
        Box::pin(async { None })
    }
    /// Runs a USSD code on the modem holding `iccid`; `None` if no modem holds it.
    fn ussd<'a>(
        &'a self,
        _iccid: &'a str,
        _code: &'a str,
    ) -> BoxFuture<'a, Option<Result<UssdView, String>>> {
        Box::pin(async { None })
    }
}

/// [`ApiSettings`] that a reload (SIGHUP) can replace while requests run: each request
/// reads one consistent snapshot with [`SharedSettings::get`].
#[derive(Clone, Default)]
pub struct SharedSettings(Arc<std::sync::RwLock<Arc<ApiSettings>>>);

impl SharedSettings {
    /// Settings to share.
    pub fn new(settings: ApiSettings) -> SharedSettings {
        SharedSettings(Arc::new(std::sync::RwLock::new(Arc::new(settings))))
    }

    /// The current settings.
    pub fn get(&self) -> Arc<ApiSettings> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces them; requests already running keep the snapshot they took.
    pub fn replace(&self, settings: ApiSettings) {
        let new = Arc::new(settings);
        match self.0.write() {
            Ok(mut g) => *g = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

/// What requests are checked against, from the config (`[http]`, `[otp]`, `[optout]`,
/// `pool.sims`, `dispatch.max_parts`).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Accepted bearer tokens.
    pub tokens: Vec<ApiToken>,
    /// Most parts a message may take (`dispatch.max_parts`).
    pub max_parts: u32,
    /// Tolerance for a `send_at` slightly in the past (clock skew).
    pub send_at_tolerance_ms: i64,
    /// Region for national numbers (`http.default_region`).
    pub default_region: Option<phonenumber::country::Id>,
    /// Refuse numbers that cannot take SMS (`http.require_mobile`).
    pub require_mobile: bool,
    /// Per-token default (`http.rate_limit`).
    pub rate_limit: RateLimitConfig,
    /// ICCIDs named in the config (`pool.sims`); with the SIMs seen in modems, the only
    /// ones a message may be pinned to.
    pub known_sims: Vec<String>,
    /// Security code defaults and limits (`[otp]`).
    pub otp: OtpConfig,
    /// The opt-out keywords and exemptions (`[optout]`).
    pub optout: OptOutConfig,
    /// Most undelivered `callback_url` events per token (`http.max_pending_callbacks`).
    pub max_pending_callbacks: u64,
    /// Where a message's `callback_url` may point (`webhooks.callback_hosts`).
    pub callback_policy: crate::webhook::CallbackPolicy,
    /// How far ahead times and durations may reach (`http.max_ahead_days`), in ms.
    pub max_ahead_ms: i64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            tokens: Vec::new(),
            max_parts: 10,
            send_at_tolerance_ms: 60_000,
            default_region: None,
            require_mobile: true,
            rate_limit: RateLimitConfig::default(),
            known_sims: Vec::new(),
            otp: OtpConfig::default(),
            optout: OptOutConfig::default(),
            max_pending_callbacks: 1000,
            callback_policy: crate::webhook::CallbackPolicy::default(),
            max_ahead_ms: time::days_ms(time::DEFAULT_MAX_AHEAD_DAYS),
        }
    }
}

impl ApiSettings {
    /// The API's settings from the config file, plus plain tokens (`GSMGW_API_TOKEN`,
    /// `http.token`), which get every scope.
    pub fn from_config(cfg: &crate::config::Config, plain_tokens: &[String]) -> ApiSettings {
        let mut tokens: Vec<ApiToken> = plain_tokens
            .iter()
            .enumerate()
            .map(|(i, t)| ApiToken::plain(&format!("plain-{i}"), t))
            .collect();
        tokens.extend(cfg.http.tokens.iter().filter_map(ApiToken::from_config));
        ApiSettings {
            tokens,
            max_parts: cfg.dispatch.max_parts,
            send_at_tolerance_ms: i64::try_from(
                cfg.http.send_at_tolerance_secs.saturating_mul(1000),
            )
            .unwrap_or(i64::MAX),
            default_region: cfg
                .http
                .default_region
                .as_deref()
                .and_then(|r| r.parse().ok()),
            require_mobile: cfg.http.require_mobile,
            rate_limit: cfg.http.rate_limit,
            known_sims: cfg.pool.sims.iter().map(|s| s.iccid.clone()).collect(),
            otp: cfg.otp.clone(),
            optout: cfg.optout.clone(),
            max_pending_callbacks: cfg.http.max_pending_callbacks,
            callback_policy: crate::webhook::CallbackPolicy::from_config(&cfg.webhooks),
            max_ahead_ms: time::days_ms(cfg.http.max_ahead_days.max(1)),
        }
    }
}

/// Who is calling (set by the auth layer for every `/v1` route).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name: scopes idempotency keys and rate limits, and owns what the
    /// token creates.
    pub token: String,
    /// An admin token acts on everything; others only on what they created.
    pub admin: bool,
}

impl Caller {
    /// May this caller act on (cancel, verify) something `owner` created? Rows from
    /// before owners were recorded (`None`) belong to admins only.
    pub fn owns(&self, owner: Option<&str>) -> bool {
        self.admin || owner == Some(self.token.as_str())
    }
}

/// Every route: method, path, the scope it needs (`None`: any valid token; the public
/// routes are listed with `public`). The OpenAPI test checks each is documented.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Public),
    ("GET", "/readyz", Access::Public),
    ("GET", "/openapi.json", Access::Public),
    ("POST", "/v1/messages", Access::Scope(Scope::Send)),
    ("GET", "/v1/messages", Access::Scope(Scope::Read)),
    ("POST", "/v1/messages/batch", Access::Scope(Scope::Send)),
    ("GET", "/v1/messages/{id}", Access::Scope(Scope::Read)),
    ("DELETE", "/v1/messages/{id}", Access::Scope(Scope::Send)),
    ("GET", "/v1/inbox", Access::Scope(Scope::Read)),
    ("GET", "/v1/modems", Access::Scope(Scope::Read)),
    (
        "POST",
        "/v1/modems/{id}/{action}",
        Access::Scope(Scope::Admin),
    ),
    ("GET", "/metrics", Access::Scope(Scope::Metrics)),
    ("GET", "/v1/sims", Access::Scope(Scope::Read)),
    ("POST", "/v1/sims/{iccid}/ussd", Access::Scope(Scope::Admin)),
    ("POST", "/v1/estimate", Access::AnyToken),
    ("GET", "/v1/templates", Access::Scope(Scope::Read)),
    ("POST", "/v1/templates", Access::Scope(Scope::Admin)),
    ("GET", "/v1/templates/{name}", Access::Scope(Scope::Read)),
    ("PUT", "/v1/templates/{name}", Access::Scope(Scope::Admin)),
    (
        "DELETE",
        "/v1/templates/{name}",
        Access::Scope(Scope::Admin),
    ),
    ("POST", "/v1/otp", Access::Scope(Scope::Send)),
    ("POST", "/v1/otp/{id}/verify", Access::Scope(Scope::Send)),
    ("GET", "/v1/suppressions", Access::Scope(Scope::Admin)),
    (
        "PUT",
        "/v1/suppressions/{number}",
        Access::Scope(Scope::Admin),
    ),
    (
        "DELETE",
        "/v1/suppressions/{number}",
        Access::Scope(Scope::Admin),
    ),
];

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token (`/healthz`, `/readyz`, `/openapi.json`).
    Public,
    /// Any token with a scope besides `metrics` (a metrics-only token reads `/metrics`
    /// and nothing else).
    AnyToken,
    /// A token with this scope (or admin).
    Scope(Scope),
}

/// The access a request needs. HEAD is a GET without the body, so it needs what GET
/// needs; a method no route lists needs admin (axum answers it 405 after auth).
fn access_of(method: &str, path: &str) -> Access {
    let method = if method == "HEAD" { "GET" } else { method };
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map_or(Access::Scope(Scope::Admin), |r| r.2)
}

/// The router; tests drive it with `tower::ServiceExt::oneshot`, the daemon serves it.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/messages", post(messages::create).get(messages::list))
        .route("/v1/messages/batch", post(messages::batch))
        .route(
            "/v1/messages/{id}",
            get(messages::get_one).delete(messages::cancel),
        )
        .route("/v1/inbox", get(misc::inbox))
        .route("/v1/modems", get(modems))
        .route("/v1/modems/{id}/{action}", post(modem_action))
        .route("/v1/sims", get(misc::sims))
        .route("/metrics", get(metrics))
        .route("/v1/sims/{iccid}/ussd", post(ussd))
        .route("/v1/estimate", post(misc::estimate))
        .route(
            "/v1/templates",
            get(templates::list).post(templates::create),
        )
        .route(
            "/v1/templates/{name}",
            get(templates::get_one)
                .put(templates::update)
                .delete(templates::delete),
        )
        .route("/v1/otp", post(otp::create))
        .route("/v1/otp/{id}/verify", post(otp::verify))
        .route("/v1/suppressions", get(misc::suppressions))
        .route(
            "/v1/suppressions/{number}",
            axum::routing::put(misc::suppress).delete(misc::unsuppress),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .merge(v1)
        .fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn openapi_json() -> Response {
    axum::Json(openapi::document()).into_response()
}

/// Authenticates the bearer token, checks the route's scope, then the token's rate.
async fn auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let settings = state.settings.get();
    let Some(token) = presented.and_then(|p| auth::authenticate(&settings.tokens, p)) else {
        return ApiError::unauthorized().into_response();
    };
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    match access_of(req.method().as_str(), &path) {
        Access::Scope(s) if !token.allows(s) => {
            return ApiError::forbidden(s.as_str()).into_response();
        }
        Access::AnyToken if token.metrics_only() => {
            return ApiError::forbidden("send, read or admin").into_response();
        }
        _ => {}
    }
    let limit = token.rate_limit.unwrap_or(settings.rate_limit);
    if let Err(wait) = state.limiter.check(&token.name, limit) {
        return auth::rate_limited(wait).into_response();
    }
    req.extensions_mut().insert(Caller {
        token: token.name.clone(),
        admin: token.allows(Scope::Admin),
    });
    next.run(req).await
}

/// Liveness: the process serves and its store writer runs. A stopped writer makes the
/// daemon exit (systemd restarts it); until then this says so.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.writer_failure() {
        None => "ok".into_response(),
        Some(why) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("store writer stopped: {why}\n"),
        )
            .into_response(),
    }
}

/// How long `/readyz` waits for the store to answer a read.
const READY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Readiness: the store answers a read within a second, its writer runs and its last
/// commit succeeded (a full disk or a read-only file shows here, with the reason), and
/// at least one modem can send. Never writes, so a locked database cannot hold it up.
async fn readyz(State(state): State<AppState>) -> Response {
    let read = tokio::time::timeout(
        READY_READ_TIMEOUT,
        state.store.read(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        }),
    )
    .await;
    let mut reason = match read {
        Err(_) => Some(format!(
            "the store did not answer a read within {READY_READ_TIMEOUT:?}"
        )),
        Ok(Err(e)) => Some(e.to_string()),
        Ok(Ok(())) => None,
    };
    if let Some(why) = state.store.writer_failure() {
        reason = Some(format!("store writer stopped: {why}"));
    } else if let Some(e) = state.store.last_write_error() {
        reason.get_or_insert_with(|| format!("the last write failed: {e}"));
    }
    let store_ok = reason.is_none();
    let ready = state.modems.ready_count();
    let body = types::Readiness {
        store: store_ok,
        store_error: reason,
        modems_ready: ready,
    };
    if store_ok && ready > 0 {
        axum::Json(body).into_response()
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(body),
        )
            .into_response()
    }
}

/// Prometheus metrics; the queue depth is read from the store now.
async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(depth) = state.store.read(crate::store::queue_depth).await {
        crate::telemetry::queue_depth(&depth);
    }
    for m in state.modems.modems() {
        metrics::counter!(crate::telemetry::CALLS_REJECTED, "modem" => m.port)
            .absolute(m.calls_rejected);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render(),
    )
        .into_response()
}

/// `GET /v1/modems` query: `format=array` asks for the earlier bare array
/// (deprecated; removed in the next release).
#[derive(Debug, serde::Deserialize)]
struct ModemsQuery {
    format: Option<String>,
}

async fn modems(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<ModemsQuery>,
) -> Response {
    let items = state.modems.modems();
    if q.format.as_deref() == Some("array") {
        let legacy: Vec<serde_json::Value> = items.iter().map(ModemView::legacy).collect();
        let mut resp = axum::Json(legacy).into_response();
        resp.headers_mut()
            .insert("deprecation", axum::http::HeaderValue::from_static("true"));
        return resp;
    }
    axum::Json(ModemList { items }).into_response()
}

/// The modem a path's `{id}` names: its slug, or (as in earlier releases) its device path.
fn find_modem(state: &AppState, id: &str) -> Option<ModemView> {
    let all = state.modems.modems();
    all.iter()
        .find(|m| m.id == id)
        .or_else(|| all.iter().find(|m| m.port == id))
        .cloned()
}

async fn modem_action(
    State(state): State<AppState>,
    axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !matches!(action.as_str(), "enable" | "disable" | "reset") {
        return Err(ApiError::not_found("modem action (enable, disable, reset)"));
    }
    let m = find_modem(&state, &id).ok_or_else(|| ApiError::not_found("modem"))?;
    match state.modems.action(&m.port, &action).await {
        None => Err(ApiError::not_found("modem")),
        Some(Ok(())) => Ok(axum::Json(ModemActionResult {
            id: m.id,
            port: m.port,
            enabled: (action != "reset").then_some(action == "enable"),
            reset: (action == "reset").then_some(true),
        })
        .into_response()),
        Some(Err(e)) => Err(ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "modem_error",
            e,
        )),
    }
}

async fn ussd(
    State(state): State<AppState>,
    axum::extract::Path(iccid): axum::extract::Path<String>,
    body: body::JsonBody,
) -> Result<Response, ApiError> {
    let code = types::UssdRequest::from_json(&body.value)?.validate()?;
    match state.modems.ussd(&iccid, &code).await {
        None => Err(ApiError::field(
            "iccid",
            "unknown_sim",
            "no modem holds a SIM with this ICCID",
        )),
        Some(Ok(v)) => Ok(axum::Json(v).into_response()),
        Some(Err(e)) => Err(ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "modem_error",
            e,
        )),
    }
}

#[cfg(test)]
mod tests;
