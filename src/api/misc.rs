//! The read-only and admin routes beside messages: the inbox, SIMs, the estimate (parts
//! and encoding of a text, nothing sent) and the opt-out (suppression) list.

use super::body::JsonBody;
use super::messages::{page, rfc3339};
use super::types::{
    EstimateRequest, EstimateResponse, InboxItem, InboxList, SimList, SimView, SuppressRequest,
    SuppressResult, SuppressionList, SuppressionView, vars_text,
};
use super::{ApiError, AppState, number, templates};
use crate::pdu::{self, PlanOptions};
use crate::store::{self, now_ms};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

pub(super) async fn inbox(
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let (limit, before) = page(q.limit.as_deref(), q.cursor.as_deref())?;
    let rows = state
        .store
        .read(move |c| store::list_inbox(c, before, limit))
        .await?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let items = rows
        .iter()
        .map(|m| InboxItem {
            id: m.id,
            from: m.sender.clone(),
            text: m.text.clone(),
            received_at: rfc3339(m.received_at),
            sent_at: m.sent_at.clone(),
            sim: m.sim.clone(),
            modem: m.modem.clone(),
            parts: m.parts_total,
            parts_received: m.parts_received,
            complete: m.complete,
        })
        .collect();
    Ok(Json(InboxList {
        items,
        next_cursor: next,
    })
    .into_response())
}

pub(super) async fn sims(State(state): State<AppState>) -> Result<Response, ApiError> {
    let rows = state.store.read(store::list_sims).await?;
    let configured = state.settings.get().known_sims.clone();
    let mut items: Vec<SimView> = rows
        .iter()
        .map(|s| SimView {
            iccid: s.iccid.clone(),
            imsi: s.imsi.clone(),
            operator: s.operator.clone(),
            modem: s.last_modem.clone(),
            first_seen: Some(rfc3339(s.first_seen)),
            last_seen: Some(rfc3339(s.last_seen)),
            sent_parts: Some(s.sent_parts),
            failed: Some(s.failed),
            received: Some(s.received),
            usage: serde_json::from_str::<Value>(&s.usage).ok(),
            configured: configured.contains(&s.iccid),
            seen: true,
        })
        .collect();
    for iccid in configured
        .iter()
        .filter(|i| !rows.iter().any(|r| &&r.iccid == i))
    {
        items.push(SimView {
            iccid: iccid.clone(),
            imsi: None,
            operator: None,
            modem: None,
            first_seen: None,
            last_seen: None,
            sent_parts: None,
            failed: None,
            received: None,
            usage: None,
            configured: true,
            seen: false,
        });
    }
    Ok(Json(SimList { items }).into_response())
}

pub(super) async fn estimate(
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let req = EstimateRequest::from_json(&body.value)?;
    let text = match req.validate()? {
        Ok(t) => t.to_owned(),
        Err(name) => {
            let vars = vars_text(req.vars.as_ref());
            let n = name.to_owned();
            let tpl = state
                .store
                .read(move |c| store::get_template(c, &n))
                .await?
                .ok_or_else(|| {
                    ApiError::field(
                        "template",
                        "unknown_template",
                        format!("no template named {name:?}"),
                    )
                })?;
            templates::render(&tpl.body, &vars)?
        }
    };
    if text.trim().is_empty() {
        return Err(ApiError::field("text", "empty", "text is empty"));
    }
    let plan = pdu::plan(&text, &PlanOptions::default());
    let max = state.settings.get().max_parts;
    Ok(Json(EstimateResponse {
        parts: plan.parts.len(),
        encoding: plan.encoding.name().to_owned(),
        units: plan.units,
        remaining_in_last_part: plan.remaining_in_last_part(),
        max_parts: max,
        too_long: plan.parts.len() > max as usize,
    })
    .into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct SuppressionQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

pub(super) async fn suppressions(
    State(state): State<AppState>,
    Query(q): Query<SuppressionQuery>,
) -> Result<Response, ApiError> {
    let (limit, _) = page(q.limit.as_deref(), None)?;
    let after = q.cursor.filter(|c| !c.is_empty());
    let rows = state
        .store
        .read(move |c| store::list_suppressions(c, after.as_deref(), limit))
        .await?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.number.clone()))
        .flatten();
    let items = rows
        .iter()
        .map(|s| SuppressionView {
            number: s.number.clone(),
            created_at: rfc3339(s.created_at),
            source: s.source.clone(),
            keyword: s.keyword.clone(),
            note: s.note.clone(),
        })
        .collect();
    Ok(Json(SuppressionList {
        items,
        next_cursor: next,
    })
    .into_response())
}

/// The number in a path, normalised like a recipient (but not judged mobile).
fn path_number(raw: &str, state: &AppState) -> Result<String, ApiError> {
    number::normalise_lenient(raw, &state.settings.get()).map_err(|mut e| {
        e.field = Some("number".into());
        e
    })
}

pub(super) async fn suppress(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let number = path_number(&raw, &state)?;
    let bytes = body.map_err(|e| ApiError::new(e.status(), "invalid_body", e.body_text()))?;
    // The body is optional: `{"note": "…"}` or nothing.
    let note = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad("invalid_json", format!("the body is not JSON: {e}")))?;
        SuppressRequest::from_json(&v)?.note
    };
    let n = number.clone();
    state
        .store
        .write(move |c| store::suppress(c, &n, "admin", None, note.as_deref(), now_ms()))
        .await?;
    Ok(Json(SuppressResult {
        number,
        suppressed: true,
    })
    .into_response())
}

pub(super) async fn unsuppress(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let number = path_number(&raw, &state)?;
    let n = number.clone();
    if !state.store.write(move |c| store::unsuppress(c, &n)).await? {
        return Err(ApiError::not_found("suppressed number"));
    }
    Ok(Json(SuppressResult {
        number,
        suppressed: false,
    })
    .into_response())
}
