//! The HTTP API (axum): JSON under `/v1`, bearer-token auth, one error shape. It owns
//! request validation — nothing is stored for a rejected request — and answers 202
//! only once a message is committed to the store.

mod error;
mod messages;

pub use error::ApiError;

use crate::dispatch::Dispatcher;
use crate::store::Store;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub dispatcher: Dispatcher,
    pub settings: Arc<ApiSettings>,
    /// Modem states for `/readyz` and `/v1/modems`.
    pub modems: Arc<dyn ModemsView>,
}

/// The daemon's modems, as the API shows them.
pub trait ModemsView: Send + Sync + 'static {
    /// One JSON object per modem.
    fn modems(&self) -> Vec<serde_json::Value>;
    /// How many can send now.
    fn ready_count(&self) -> usize;
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Accepted bearer tokens (any scope).
    pub tokens: Vec<String>,
    pub max_parts: u32,
    /// Tolerance for a `send_at` slightly in the past (clock skew).
    pub send_at_tolerance_ms: i64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            tokens: Vec::new(),
            max_parts: 10,
            send_at_tolerance_ms: 60_000,
        }
    }
}

/// The router; tests drive it with `tower::ServiceExt::oneshot`, the daemon serves it.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/messages", axum::routing::post(messages::create))
        .route(
            "/v1/messages/{id}",
            get(messages::get_one).delete(messages::cancel),
        )
        .route("/v1/modems", get(modems))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(v1)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Constant-time comparison, so response timing does not leak a token's prefix.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = presented.is_some_and(|p| {
        state
            .settings
            .tokens
            .iter()
            .fold(false, |acc, t| acc | ct_eq(p.as_bytes(), t.as_bytes()))
    });
    if !ok {
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

async fn readyz(State(state): State<AppState>) -> Response {
    let store_ok = state
        .store
        .write(|c| {
            c.execute_batch("SELECT 1")?;
            Ok(())
        })
        .await
        .is_ok();
    let ready = state.modems.ready_count();
    let body = serde_json::json!({"store": store_ok, "modems_ready": ready});
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

async fn modems(State(state): State<AppState>) -> Response {
    axum::Json(state.modems.modems()).into_response()
}

#[cfg(test)]
mod tests;
