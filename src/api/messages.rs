//! `/v1/messages`: accept (validate, render a template, plan, commit, hand to the
//! dispatcher), accept in batches, list with filters and a cursor, read and cancel
//! messages (an appointment's confirmation and reminder are cancelled together).
//!
//! Every check — number, text, template and variables, SIM, opt-out list, parts — runs
//! before the one write, so nothing is stored for a rejected request; the write also
//! records the idempotency key's response, so a retry sees exactly the first answer.

use super::body::JsonBody;
use super::types::{
    BatchRequest, BatchResponse, CancelResponse, Limits, MessageErrorView, MessageList,
    MessageRequest, MessageView, PartStateView, ValidMessage,
};
use super::{ApiError, AppState, Caller, number, templates};
use crate::dispatch::{Queued, priority};
use crate::pdu::{self, PlanOptions};
use crate::store::{self, IdempotentResponse, MessageRecord, NewMessage, now_ms};
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Most messages in one batch.
pub(crate) const MAX_BATCH: usize = 1000;

#[cfg(test)]
pub(super) const KNOWN: &[&str] = super::types::MESSAGE_FIELDS;

/// One message ready to insert.
pub(super) struct Planned {
    pub message: NewMessage,
    pub template: Option<String>,
}

/// What one request will insert: one message, or a group (an appointment and its
/// reminder) sharing a group id.
pub(super) struct Prepared {
    pub messages: Vec<Planned>,
}

/// What the checks need from the store, read before the write.
struct Lookups {
    templates: HashMap<String, String>,
    sim_known: bool,
    suppressed: bool,
}

/// Reads the templates, SIM and opt-out state a request refers to.
async fn lookups(
    state: &AppState,
    to: &str,
    templates: Vec<String>,
    sim: Option<String>,
) -> Result<Lookups, ApiError> {
    let to = to.to_owned();
    let configured = sim
        .as_ref()
        .is_some_and(|s| state.settings.get().known_sims.iter().any(|k| k == s));
    Ok(state
        .store
        .read(move |c| {
            let mut found = HashMap::new();
            for name in templates {
                if let Some(t) = store::get_template(c, &name)? {
                    found.insert(name, t.body);
                }
            }
            let sim_known = match &sim {
                None => true,
                Some(_) if configured => true,
                Some(s) => store::list_sims(c)?.iter().any(|r| &r.iccid == s),
            };
            Ok(Lookups {
                templates: found,
                sim_known,
                suppressed: store::is_suppressed(c, &to)?,
            })
        })
        .await?)
}

/// Plans a text and refuses one over the part limit.
pub(super) fn plan_text(text: &str, max_parts: u32, field: &str) -> Result<pdu::Plan, ApiError> {
    let plan = pdu::plan(text, &PlanOptions::default());
    if plan.parts.len() > max_parts as usize {
        return Err(ApiError::field(
            field,
            "too_long",
            format!(
                "the text needs {} parts ({}), at most {} are allowed",
                plan.parts.len(),
                plan.encoding.name(),
                max_parts
            ),
        ));
    }
    Ok(plan)
}

/// Validates one message request (a POST body or a batch item) completely; `prefix`
/// goes before field names (`messages[3].`).
pub(super) async fn prepare(
    state: &AppState,
    value: &Value,
    now: i64,
    prefix: &str,
) -> Result<Prepared, ApiError> {
    let req = MessageRequest::from_json(value).map_err(|e| prefixed(e, prefix))?;
    prepare_typed(state, &req, now, prefix).await
}

/// [`prepare`] for a request already read.
async fn prepare_typed(
    state: &AppState,
    req: &MessageRequest,
    now: i64,
    prefix: &str,
) -> Result<Prepared, ApiError> {
    let at = |e: ApiError| prefixed(e, prefix);
    let settings = &*state.settings.get();
    let v = req.validate(&Limits { settings, now }).map_err(at)?;
    let ValidMessage {
        to,
        text,
        template,
        vars,
        priority: prio,
        send_at,
        expires_at,
        validity,
        tags,
        callback_url,
        status_report,
        flash,
        sim,
        reminder,
    } = v;
    let (text, template) = (text.as_deref(), template.as_deref());
    let reminder = reminder.as_ref().map(|(a, r, t)| (*a, *r, t.as_str()));
    let mut wanted: Vec<String> = template.iter().map(|s| s.to_string()).collect();
    if let Some((_, _, rt)) = reminder {
        wanted.push(rt.to_owned());
    }
    let found = lookups(state, &to, wanted, sim.clone()).await?;
    if !found.sim_known {
        return Err(at(ApiError::field(
            "sim",
            "unknown_sim",
            format!(
                "no SIM with ICCID {:?} is configured or has been seen",
                sim.unwrap_or_default()
            ),
        )));
    }
    if found.suppressed {
        return Err(at(ApiError::field(
            "to",
            "suppressed",
            format!("{to} opted out (it is on the suppression list); nothing is sent to it"),
        )));
    }
    let render = |name: &str, field: &'static str| -> Result<String, ApiError> {
        let body = found.templates.get(name).ok_or_else(|| {
            ApiError::field(
                field,
                "unknown_template",
                format!("no template named {name:?}"),
            )
        })?;
        templates::render(body, &vars)
    };
    let body = match (text, template) {
        (Some(t), _) => t.to_owned(),
        (None, Some(name)) => render(name, "template").map_err(at)?,
        (None, None) => unreachable_text()?,
    };
    let plan = plan_text(&body, settings.max_parts, "text").map_err(at)?;
    let base = NewMessage {
        to,
        body,
        encoding: plan.encoding.name().to_owned(),
        parts_total: plan.parts.len() as u32,
        priority: prio,
        send_at,
        expires_at,
        status_report,
        flash,
        validity_secs: validity.map(|v| u32::try_from(v.as_secs()).unwrap_or(u32::MAX)),
        pinned_sim: sim,
        tags,
        callback_url,
        masked: false,
    };
    let mut messages = Vec::new();
    if let Some((appt, remind_at, rt)) = reminder {
        let rbody = render(rt, "reminder_template").map_err(at)?;
        let rplan = plan_text(&rbody, settings.max_parts, "reminder_template").map_err(at)?;
        let r = NewMessage {
            body: rbody,
            encoding: rplan.encoding.name().to_owned(),
            parts_total: rplan.parts.len() as u32,
            send_at: Some(remind_at),
            expires_at: Some(appt),
            ..base.clone()
        };
        messages.push(Planned {
            message: base,
            template: template.map(str::to_owned),
        });
        messages.push(Planned {
            message: r,
            template: Some(rt.to_owned()),
        });
    } else {
        messages.push(Planned {
            message: base,
            template: template.map(str::to_owned),
        });
    }
    Ok(Prepared { messages })
}

/// `text` and `template` were both checked absent above; kept as an error, not a panic.
fn unreachable_text() -> Result<String, ApiError> {
    Err(ApiError::field("text", "missing", "text is required"))
}

fn prefixed(mut e: ApiError, prefix: &str) -> ApiError {
    if !prefix.is_empty() {
        e.field = Some(match e.field {
            Some(f) => format!("{prefix}{f}"),
            None => prefix.trim_end_matches('.').to_owned(),
        });
    }
    e
}

/// The `Idempotency-Key` header, scoped to the caller's token.
pub(super) fn idempotency_key(
    headers: &HeaderMap,
    caller: &Caller,
    route: &str,
) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::field(
                "Idempotency-Key",
                "invalid_idempotency_key",
                "Idempotency-Key is 1–255 visible ASCII characters",
            )
        })?;
    Ok(Some(format!("{}\n{route}\n{key}", caller.token)))
}

/// Builds a response body from the committed messages of each request.
pub(super) type Respond = fn(&[Vec<Stored>]) -> Value;

/// The answer to a repeated key, if the same body was sent before; 409 if another body
/// was. `respond` renders the messages the first request created (as they are now)
/// when the key recorded their ids rather than a whole response.
pub(super) async fn replay(
    state: &AppState,
    key: &Option<String>,
    body_hash: &str,
    respond: Option<Respond>,
) -> Result<Option<Response>, ApiError> {
    let Some(k) = key.clone() else {
        return Ok(None);
    };
    let found = state
        .store
        .read(move |c| store::get_idempotency(c, &k))
        .await?;
    match found {
        None => Ok(None),
        Some(r) => stored_response(state, r, body_hash, respond)
            .await
            .map(Some),
    }
}

/// Marks an idempotency record that holds the ids of the messages a request created
/// (one list per request of a batch) instead of a rendered response.
const REPLAY_IDS: &str = "gsmgw_replay_ids";

/// What an idempotency record keeps for a messages request: the ids it created, so the
/// response is rendered outside the store's writer (and a replay shows them as they
/// are now, under the same ids).
fn replay_record(all: &[Vec<Stored>]) -> String {
    let ids: Vec<Vec<i64>> = all
        .iter()
        .map(|r| r.iter().map(|(m, _, _)| m.id).collect())
        .collect();
    json!({ REPLAY_IDS: ids }).to_string()
}

async fn stored_response(
    state: &AppState,
    r: IdempotentResponse,
    body_hash: &str,
    respond: Option<Respond>,
) -> Result<Response, ApiError> {
    if r.body_hash != body_hash {
        return Err(ApiError::conflict(
            "idempotency_conflict",
            "this Idempotency-Key was used with another body",
        ));
    }
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut body: Value = serde_json::from_str(&r.response).unwrap_or(Value::Null);
    let ids: Option<Vec<Vec<i64>>> = body
        .get(REPLAY_IDS)
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    if let (Some(ids), Some(respond)) = (ids, respond) {
        let all = state
            .store
            .read(move |c| {
                let mut all = Vec::with_capacity(ids.len());
                for group in ids {
                    let mut recs = Vec::with_capacity(group.len());
                    for id in group {
                        let Some(m) = store::get_message(c, id)? else {
                            continue;
                        };
                        let (g, t) = store::message_meta(c, id)?.unwrap_or_default();
                        recs.push((m, g, t));
                    }
                    all.push(recs);
                }
                Ok(all)
            })
            .await?;
        body = respond(&all);
    }
    let mut resp = created(status, body);
    resp.headers_mut().insert(
        "idempotent-replayed",
        axum::http::HeaderValue::from_static("true"),
    );
    Ok(resp)
}

pub(super) fn body_hash(bytes: &[u8]) -> String {
    crate::pdu::hex::encode(&super::auth::sha256(bytes)).to_lowercase()
}

/// A committed message with its group id and template.
pub(super) type Stored = (MessageRecord, Option<i64>, Option<String>);

/// The outcome of a committed write that may have lost an idempotency race.
pub(super) enum Committed<T> {
    Done(T),
    Replayed(IdempotentResponse),
}

/// Inserts prepared requests in one write (with the idempotency record and the
/// creating token), then tells the dispatcher and renders the response with `respond`
/// outside the write. Refuses (429) when the token's pending callbacks would pass
/// `http.max_pending_callbacks`.
pub(super) async fn commit(
    state: &AppState,
    caller: &Caller,
    prepared: Vec<Prepared>,
    idem: Option<(String, String)>,
    status: StatusCode,
    respond: Respond,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let callbacks = prepared
        .iter()
        .flat_map(|p| &p.messages)
        .filter(|m| m.message.callback_url.is_some())
        .count() as u64;
    if callbacks > 0 {
        let cap = state.settings.get().max_pending_callbacks;
        let owner = caller.token.clone();
        let pending = state
            .store
            .read(move |c| store::pending_callbacks(c, &owner))
            .await?;
        if pending.saturating_add(callbacks) > cap {
            return Err(ApiError::too_many(
                "too_many_pending_callbacks",
                format!(
                    "this token has {pending} callbacks waiting to be delivered (at most {cap}); \
                     retry when its callback_url answers again"
                ),
                60,
            ));
        }
    }
    let owner = caller.token.clone();
    let idem_hash = idem.as_ref().map(|i| i.1.clone());
    let out = state
        .store
        .write(move |c| {
            if let Some((key, _)) = &idem
                && let Some(r) = store::get_idempotency(c, key)?
            {
                return Ok(Committed::Replayed(r));
            }
            let mut all = Vec::new();
            for p in &prepared {
                let mut group = None;
                let mut recs = Vec::new();
                for (i, m) in p.messages.iter().enumerate() {
                    let id = store::insert_message(c, &m.message, now)?;
                    if p.messages.len() > 1 && i == 0 {
                        group = Some(id);
                    }
                    store::set_message_meta(c, id, group, m.template.as_deref())?;
                    store::set_owner(c, id, &owner)?;
                    let rec = store::get_message(c, id)?
                        .ok_or_else(|| store::StoreError::NotFound(format!("message {id}")))?;
                    recs.push((rec, group, m.template.clone()));
                }
                all.push(recs);
            }
            if let Some((key, hash)) = &idem {
                store::put_idempotency(
                    c,
                    key,
                    &IdempotentResponse {
                        body_hash: hash.clone(),
                        status: status.as_u16(),
                        response: replay_record(&all),
                    },
                    now,
                )?;
            }
            Ok(Committed::Done(all))
        })
        .await?;
    match out {
        Committed::Replayed(r) => {
            stored_response(state, r, idem_hash.as_deref().unwrap_or(""), Some(respond)).await
        }
        Committed::Done(all) => {
            for (rec, _, _) in all.iter().flatten() {
                state.dispatcher.enqueued(Queued::from_record(rec));
            }
            // Rendered here, off the store's writer thread.
            Ok(created(status, respond(&all)))
        }
    }
}

/// One request's response: the first message, with its group and reminder.
fn single_view(recs: &[Stored]) -> Option<MessageView> {
    let mut it = recs.iter();
    let (first, group, template) = it.next()?;
    let mut v = message_view(first, *group, template.as_deref());
    if let Some((r, g, t)) = it.next() {
        v.reminder = Some(Box::new(message_view(r, *g, t.as_deref())));
    }
    Some(v)
}

fn single_json(recs: &[Stored]) -> Value {
    single_view(recs).map_or(Value::Null, |v| to_json(&v))
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, &caller, "messages")?;
    let hash = body_hash(&body.bytes);
    let respond: Respond = |all| all.first().map_or(Value::Null, |r| single_json(r));
    if let Some(r) = replay(&state, &key, &hash, Some(respond)).await? {
        return Ok(r);
    }
    let prepared = prepare(&state, &body.value, now_ms(), "").await?;
    commit(
        &state,
        &caller,
        vec![prepared],
        key.map(|k| (k, hash)),
        StatusCode::ACCEPTED,
        respond,
    )
    .await
}

pub(super) async fn batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, &caller, "messages/batch")?;
    let hash = body_hash(&body.bytes);
    let respond: Respond = |all| {
        to_json(&BatchResponse {
            messages: all.iter().filter_map(|r| single_view(r)).collect(),
        })
    };
    if let Some(r) = replay(&state, &key, &hash, Some(respond)).await? {
        return Ok(r);
    }
    let items = BatchRequest::items(&body.value)?;
    let now = now_ms();
    let mut prepared = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        prepared.push(prepare(&state, item, now, &format!("messages[{i}].")).await?);
    }
    commit(
        &state,
        &caller,
        prepared,
        key.map(|k| (k, hash)),
        StatusCode::ACCEPTED,
        respond,
    )
    .await
}

pub(super) fn parse_id(id: &str, what: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| ApiError::not_found(what))
}

pub(super) async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "message")?;
    let (m, meta) = state
        .store
        .read(move |c| Ok((store::get_message(c, id)?, store::message_meta(c, id)?)))
        .await?;
    let m = m.ok_or_else(|| ApiError::not_found("message"))?;
    let (group, template) = meta.unwrap_or_default();
    Ok(Json(message_view(&m, group, template.as_deref())).into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
    to: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// `limit` (1–1000, default 100) and `cursor` (an id from `next_cursor`).
pub(super) fn page(
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<(u32, Option<i64>), ApiError> {
    let limit = match limit {
        None => 100,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::field("limit", "invalid_limit", "limit is 1–1000"))?,
    };
    let cursor = match cursor {
        None | Some("") => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ApiError::field(
                "cursor",
                "invalid_cursor",
                "cursor is a next_cursor from a previous page",
            )
        })?),
    };
    Ok((limit, cursor))
}

pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(store::MessageStatus::parse(s).ok_or_else(|| {
            ApiError::field(
                "status",
                "invalid_status",
                "status is queued, sending, sent, delivered, failed, expired or cancelled",
            )
        })?),
    };
    let to = match q.to.as_deref() {
        None | Some("") => None,
        Some(t) => Some(number::normalise_lenient(t, &state.settings.get())?),
    };
    let since = match q.since.as_deref() {
        None | Some("") => None,
        Some(s) => Some(super::body::time_str(s).ok_or_else(|| {
            ApiError::field(
                "since",
                "invalid_time",
                "since is RFC 3339 (UTC) or unix milliseconds",
            )
        })?),
    };
    let (limit, before_id) = page(q.limit.as_deref(), q.cursor.as_deref())?;
    let filter = store::MessageFilter {
        status,
        to,
        since,
        before_id,
        limit,
    };
    let rows = state
        .store
        .read(move |c| {
            let ms = store::list_messages(c, &filter)?;
            let mut out = Vec::with_capacity(ms.len());
            for m in ms {
                let meta = store::message_meta(c, m.id)?.unwrap_or_default();
                out.push((m, meta));
            }
            Ok(out)
        })
        .await?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.0.id.to_string()))
        .flatten();
    let items = rows
        .iter()
        .map(|(m, (g, t))| message_view(m, *g, t.as_deref()))
        .collect();
    Ok(Json(MessageList {
        items,
        next_cursor: next,
    })
    .into_response())
}

/// Cancels a message and the rest of its group (an appointment's confirmation and
/// reminder): whatever of them is still queued or scheduled.
pub(super) async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "message")?;
    let now = now_ms();
    let out = state
        .store
        .write(move |c| {
            let Some((group, _)) = store::message_meta(c, id)? else {
                return Ok(None);
            };
            // Another token's message is as good as absent (no probing of ids).
            let owner = store::message_owner(c, id)?.flatten();
            if !caller.owns(owner.as_deref()) {
                return Ok(None);
            }
            let members = match group {
                Some(g) => store::group_members(c, g)?,
                None => vec![id],
            };
            let mut cancelled = Vec::new();
            for m in members {
                if store::cancel(c, m, now)? {
                    cancelled.push(m);
                }
            }
            Ok(Some((group, cancelled)))
        })
        .await?;
    let Some((group, cancelled)) = out else {
        return Err(ApiError::not_found("message"));
    };
    if cancelled.is_empty() {
        return Err(ApiError::conflict(
            "not_cancellable",
            "only a queued or scheduled message can be cancelled",
        ));
    }
    for m in &cancelled {
        state.dispatcher.cancelled(*m);
    }
    let status = if cancelled.contains(&id) {
        "cancelled"
    } else {
        "not_cancellable"
    };
    Ok(Json(CancelResponse {
        id,
        status: status.into(),
        group_id: group,
        cancelled,
    })
    .into_response())
}

pub(super) use super::time::rfc3339;

/// The message as the API shows it; the body of a masked message (a one-time code) is
/// never shown.
pub(super) fn message_view(
    m: &MessageRecord,
    group: Option<i64>,
    template: Option<&str>,
) -> MessageView {
    MessageView {
        id: m.id,
        status: m.status.as_str().to_owned(),
        to: m.to.clone(),
        text: (!m.masked).then(|| m.body.clone()),
        masked: m.masked,
        template: template.map(str::to_owned),
        group_id: group,
        encoding: m.encoding.clone(),
        parts: m.parts_total,
        priority: priority::name(m.priority),
        created_at: rfc3339(m.created_at),
        updated_at: rfc3339(m.updated_at),
        send_at: m.send_at.map(rfc3339),
        expires_at: m.expires_at.map(rfc3339),
        status_report: m.status_report,
        flash: m.flash,
        validity: m.validity_secs,
        pinned_sim: m.pinned_sim.clone(),
        sim: m.sim.clone(),
        modem: m.modem.clone(),
        attempts: m.attempts,
        error: m.error_code.as_ref().map(|c| MessageErrorView {
            code: c.clone(),
            message: m.error.clone(),
        }),
        possible_duplicate: m.possible_duplicate,
        tags: m.tags.clone(),
        callback_url: m.callback_url.clone(),
        part_states: m
            .parts
            .iter()
            .map(|p| PartStateView {
                seq: p.seq,
                status: p.status.clone(),
                mr: p.mr,
                sim: p.sim.clone(),
                sent_at: p.sent_at.map(rfc3339),
                report_at: p.report_at.map(rfc3339),
                report_status: p.report_status,
            })
            .collect(),
        reminder: None,
    }
}

/// A 201/202 answer with a `Location` header naming what was created: the message
/// (`id`), the first of a batch (`messages[0].id`), or a security code's message
/// (`message_id`). Other statuses are answered as they are.
pub(super) fn created(status: StatusCode, body: Value) -> Response {
    let id = body["message_id"]
        .as_i64()
        .or_else(|| body["id"].as_i64())
        .or_else(|| body["messages"][0]["id"].as_i64());
    let location = matches!(status, StatusCode::CREATED | StatusCode::ACCEPTED)
        .then_some(id)
        .flatten()
        .and_then(|id| axum::http::HeaderValue::try_from(format!("/v1/messages/{id}")).ok());
    let mut resp = (status, Json(body)).into_response();
    if let Some(l) = location {
        resp.headers_mut().insert(axum::http::header::LOCATION, l);
    }
    resp
}

/// A response type as JSON (infallible for these types).
pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
