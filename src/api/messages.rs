//! `/v1/messages`: accept (validate, plan, commit, hand to the dispatcher), read and
//! cancel messages.

use super::{ApiError, AppState};
use crate::dispatch::{Queued, priority};
use crate::pdu::{self, PlanOptions};
use crate::store::{self, MessageRecord, NewMessage, now_ms};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// Reads typed fields out of a JSON object, blaming the field on a wrong type.
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn str(&self, name: &'static str) -> Result<Option<&'a str>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::field(
                name,
                "invalid_type",
                format!("{name} must be a string"),
            )),
        }
    }

    fn bool(&self, name: &'static str) -> Result<Option<bool>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::field(
                name,
                "invalid_type",
                format!("{name} must be true or false"),
            )),
        }
    }

    /// A duration as seconds (number) or text (`"10m"`, `"2h"`).
    fn duration(&self, name: &'static str) -> Result<Option<Duration>, ApiError> {
        let bad = || {
            ApiError::field(
                name,
                "invalid_duration",
                format!("{name} must be seconds or a duration such as \"10m\""),
            )
        };
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Duration::from_secs)
                .map(Some)
                .ok_or_else(bad),
            Some(Value::String(s)) => humantime::parse_duration(s).map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A point in time as RFC 3339 (UTC, `Z`) or unix milliseconds.
    fn time(&self, name: &'static str) -> Result<Option<i64>, ApiError> {
        let bad = || {
            ApiError::field(
                name,
                "invalid_time",
                format!(
                    "{name} must be RFC 3339 in UTC (2026-11-27T10:00:00Z) or unix milliseconds"
                ),
            )
        };
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) => humantime::parse_rfc3339(s)
                .map(|t| Some(store::to_ms(t)))
                .map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }
}

/// `+` and 7–15 digits (E.164).
fn valid_e164(to: &str) -> bool {
    to.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// A validated request, ready to store.
struct Accepted {
    message: NewMessage,
}

fn validate(body: &Value, settings: &super::ApiSettings, now: i64) -> Result<Accepted, ApiError> {
    let obj = body.as_object().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be a JSON object",
        )
    })?;
    const KNOWN: &[&str] = &[
        "to",
        "text",
        "priority",
        "send_at",
        "ttl",
        "expires_at",
        "status_report",
        "flash",
        "validity",
        "sim",
        "tags",
        "callback_url",
    ];
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_field",
            format!("unknown field {k:?}"),
        ));
    }
    let f = Fields(obj);
    let to = f
        .str("to")?
        .ok_or_else(|| ApiError::field("to", "missing", "to is required"))?
        .trim();
    if !valid_e164(to) {
        return Err(ApiError::field(
            "to",
            "invalid_number",
            format!("{to:?} is not an international number (+ and 7–15 digits)"),
        ));
    }
    let text = f
        .str("text")?
        .ok_or_else(|| ApiError::field("text", "missing", "text is required"))?;
    if text.trim().is_empty() {
        return Err(ApiError::field("text", "empty", "text is empty"));
    }
    let prio = match obj.get("priority") {
        None | Some(Value::Null) => priority::NORMAL,
        Some(Value::String(s)) => priority::parse(s).ok_or_else(|| {
            ApiError::field(
                "priority",
                "invalid_priority",
                "priority is otp, high, normal, bulk or a number 0–1000",
            )
        })?,
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|n| (0..=1000).contains(n))
            .map(|n| n as i32)
            .ok_or_else(|| {
                ApiError::field(
                    "priority",
                    "invalid_priority",
                    "a numeric priority is 0–1000",
                )
            })?,
        Some(_) => {
            return Err(ApiError::field(
                "priority",
                "invalid_priority",
                "priority is otp, high, normal, bulk or a number 0–1000",
            ));
        }
    };
    let send_at = f.time("send_at")?;
    if let Some(t) = send_at
        && t < now - settings.send_at_tolerance_ms
    {
        return Err(ApiError::field(
            "send_at",
            "in_the_past",
            "send_at is in the past",
        ));
    }
    let ttl = f.duration("ttl")?;
    let expires_at = match (f.time("expires_at")?, ttl) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "ttl",
                "conflict",
                "give ttl or expires_at, not both",
            ));
        }
        (Some(e), None) => Some(e),
        (None, Some(d)) => {
            Some(send_at.unwrap_or(now) + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4))
        }
        (None, None) => None,
    };
    if let Some(e) = expires_at
        && e <= send_at.unwrap_or(now)
    {
        return Err(ApiError::field(
            "expires_at",
            "in_the_past",
            "the message would expire before it is sent",
        ));
    }
    let validity = f.duration("validity")?;
    if validity.is_some_and(|v| v < Duration::from_secs(300)) {
        return Err(ApiError::field(
            "validity",
            "too_short",
            "validity is at least 5 minutes",
        ));
    }
    let tags = match obj.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::field("tags", "invalid_type", "tags is a list of strings"))?,
        Some(_) => {
            return Err(ApiError::field(
                "tags",
                "invalid_type",
                "tags is a list of strings",
            ));
        }
    };
    let callback_url = f.str("callback_url")?;
    if let Some(u) = callback_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(ApiError::field(
            "callback_url",
            "invalid_url",
            "callback_url must be an http(s) URL",
        ));
    }
    let plan = pdu::plan(text, &PlanOptions::default());
    if plan.parts.len() > settings.max_parts as usize {
        return Err(ApiError::field(
            "text",
            "too_long",
            format!(
                "text needs {} parts ({}), at most {} are allowed",
                plan.parts.len(),
                plan.encoding.name(),
                settings.max_parts
            ),
        ));
    }
    Ok(Accepted {
        message: NewMessage {
            to: to.to_owned(),
            body: text.to_owned(),
            encoding: plan.encoding.name().to_owned(),
            parts_total: plan.parts.len() as u32,
            priority: prio,
            send_at,
            expires_at,
            status_report: f.bool("status_report")?.unwrap_or(true),
            flash: f.bool("flash")?.unwrap_or(false),
            validity_secs: validity.map(|v| u32::try_from(v.as_secs()).unwrap_or(u32::MAX)),
            pinned_sim: f.str("sim")?.map(str::to_owned),
            tags,
            callback_url: callback_url.map(str::to_owned),
            concat_ref: concat_reference(now),
            masked: false,
        },
    })
}

/// Spreads concatenation references so consecutive messages to one handset differ.
fn concat_reference(now: i64) -> u16 {
    (now.rem_euclid(251) as u16 + 1) & 0xFF
}

pub(super) async fn create(
    State(state): State<AppState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(_) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body exceeds {} bytes", super::BODY_LIMIT),
        ),
        other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", other.body_text()),
    })?;
    let now = now_ms();
    let accepted = validate(&body, &state.settings, now)?;
    let msg = accepted.message;
    let record = state
        .store
        .write(move |c| {
            let id = store::insert_message(c, &msg, now)?;
            store::get_message(c, id)?
                .ok_or_else(|| store::StoreError::NotFound(format!("message {id}")))
        })
        .await?;
    state.dispatcher.enqueued(Queued::from_record(&record));
    Ok((StatusCode::ACCEPTED, Json(message_json(&record))).into_response())
}

pub(super) async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("message"))?;
    let m = state
        .store
        .read(move |c| store::get_message(c, id))
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(Json(message_json(&m)).into_response())
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("message"))?;
    let now = now_ms();
    let (found, cancelled) = state
        .store
        .write(move |c| {
            let found = store::get_message(c, id)?.is_some();
            Ok((found, found && store::cancel(c, id, now)?))
        })
        .await?;
    if !found {
        return Err(ApiError::not_found("message"));
    }
    if !cancelled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_cancellable",
            "only a queued or scheduled message can be cancelled",
        ));
    }
    state.dispatcher.cancelled(id);
    Ok(Json(json!({"id": id, "status": "cancelled"})).into_response())
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(store::from_ms(ms)).to_string()
}

/// The message as the API shows it; the body of a masked message (a one-time code) is
/// never shown.
pub(super) fn message_json(m: &MessageRecord) -> Value {
    json!({
        "id": m.id,
        "status": m.status.as_str(),
        "to": m.to,
        "text": if m.masked { Value::Null } else { Value::String(m.body.clone()) },
        "encoding": m.encoding,
        "parts": m.parts_total,
        "priority": priority::name(m.priority),
        "created_at": rfc3339(m.created_at),
        "updated_at": rfc3339(m.updated_at),
        "send_at": m.send_at.map(rfc3339),
        "expires_at": m.expires_at.map(rfc3339),
        "status_report": m.status_report,
        "flash": m.flash,
        "sim": m.sim,
        "modem": m.modem,
        "attempts": m.attempts,
        "error": m.error_code.as_ref().map(|c| json!({"code": c, "message": m.error})),
        "possible_duplicate": m.possible_duplicate,
        "tags": m.tags,
        "part_states": m.parts.iter().map(|p| json!({
            "seq": p.seq,
            "status": p.status,
            "mr": p.mr,
            "sim": p.sim,
            "sent_at": p.sent_at.map(rfc3339),
            "report_at": p.report_at.map(rfc3339),
            "report_status": p.report_status,
        })).collect::<Vec<_>>(),
    })
}
