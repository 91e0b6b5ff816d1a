//! The HTTP/JSON control API (a contract other tools rely on).
//!
//! Owns: the routes over [`BankCore`]: `GET /modems`, `GET /modems/{i}`,
//! `GET|DELETE /messages`, `POST /inbound`, `GET|POST|DELETE /modems/{i}/faults`,
//! `POST /modems/{i}/ring`, `GET /modems/{i}/calls`, `GET /metrics`. Errors are `{"error": "..."}` with 400/404.

use crate::bank::{BankCore, BankError};
use crate::fault::Fault;
use crate::modem::RingSpec;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

type S = State<Arc<BankCore>>;

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<BankError> for ApiError {
    fn from(e: BankError) -> Self {
        let code = match e {
            BankError::NoModem(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(code, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError(StatusCode::BAD_REQUEST, e.body_text())
    }
}

/// The control API over one bank; the bank serves it on [`BankConfig::control`](crate::BankConfig::control).
pub fn router(core: Arc<BankCore>) -> Router {
    Router::new()
        .route("/modems", get(modems))
        .route("/modems/{index}", get(modem))
        .route(
            "/modems/{index}/faults",
            get(get_faults).post(post_faults).delete(clear_faults),
        )
        .route("/modems/{index}/ring", post(ring))
        .route("/modems/{index}/calls", get(calls))
        .route("/messages", get(messages).delete(clear_messages))
        .route("/inbound", post(inbound))
        .route("/metrics", get(metrics))
        .with_state(core)
}

async fn modems(State(c): S) -> impl IntoResponse {
    Json(c.modems())
}

async fn modem(State(c): S, Path(i): Path<usize>) -> Result<impl IntoResponse, ApiError> {
    c.modems()
        .into_iter()
        .find(|m| m.index == i)
        .map(Json)
        .ok_or(ApiError(StatusCode::NOT_FOUND, format!("no modem {i}")))
}

#[derive(Deserialize)]
struct MsgQuery {
    modem: Option<usize>,
    to: Option<String>,
}

async fn messages(State(c): S, Query(q): Query<MsgQuery>) -> impl IntoResponse {
    let v: Vec<_> = c
        .network
        .outside()
        .into_iter()
        .filter(|m| q.modem.is_none_or(|i| m.modem == i))
        .filter(|m| q.to.as_ref().is_none_or(|t| &m.to == t))
        .collect();
    Json(v)
}

async fn clear_messages(State(c): S) -> impl IntoResponse {
    c.network.clear_outside();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundReq {
    modem: usize,
    from: String,
    text: String,
}

async fn inbound(
    State(c): S,
    body: Result<Json<InboundReq>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(r) = body?;
    let parts = c.inject_inbound(r.modem, &r.from, &r.text)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "modem": r.modem, "parts": parts })),
    ))
}

/// One fault or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum FaultBody {
    One(Fault),
    Many(Vec<Fault>),
}

async fn post_faults(
    State(c): S,
    Path(i): Path<usize>,
    body: Result<Json<FaultBody>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(b) = body?;
    let list = match b {
        FaultBody::One(f) => vec![f],
        FaultBody::Many(v) => v,
    };
    for f in &list {
        f.validate()
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    }
    let mut faults = c.faults(i)?;
    for f in list {
        faults = c.set_fault(i, f)?;
    }
    Ok(Json(json!({ "index": i, "faults": faults })))
}

async fn get_faults(State(c): S, Path(i): Path<usize>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(json!({ "index": i, "faults": c.faults(i)? })))
}

async fn clear_faults(State(c): S, Path(i): Path<usize>) -> Result<impl IntoResponse, ApiError> {
    c.clear_faults(i)?;
    Ok(Json(json!({ "index": i, "faults": [] })))
}

async fn ring(
    State(c): S,
    Path(i): Path<usize>,
    body: Result<Json<RingSpec>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(spec) = body?;
    let id = c.ring(i, spec)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "index": i, "call": id })),
    ))
}

async fn calls(State(c): S, Path(i): Path<usize>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(json!({ "index": i, "calls": c.calls(i)? })))
}

async fn metrics(State(c): S) -> impl IntoResponse {
    Json(c.metrics())
}
