//! `/v1/messages`: accept (validate, render a template, plan, commit, hand to the
//! dispatcher), accept in batches, list with filters and a cursor, read and cancel
//! messages (an appointment's confirmation and reminder are cancelled together).
//!
//! Every check — number, text, template and variables, SIM, opt-out list, parts — runs
//! before the one write, so nothing is stored for a rejected request; the write also
//! records the idempotency key's response, so a retry sees exactly the first answer.

use super::body::{Fields, JsonBody, ms, object};
use super::time::{bounded_duration, bounded_time};
use super::{ApiError, AppState, Caller, number, templates};
use crate::dispatch::{Queued, priority};
use crate::pdu::{self, PlanOptions};
use crate::store::{self, IdempotentResponse, MessageRecord, NewMessage, now_ms};
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// Most messages in one batch.
pub const MAX_BATCH: usize = 1000;

pub(super) const KNOWN: &[&str] = &[
    "to",
    "text",
    "template",
    "vars",
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
    "appointment_at",
    "remind_before",
    "reminder_template",
];

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
        .is_some_and(|s| state.settings.known_sims.iter().any(|k| k == s));
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

fn priority_of(obj: &Map<String, Value>) -> Result<i32, ApiError> {
    let bad = |m: &str| ApiError::field("priority", "invalid_priority", m);
    match obj.get("priority") {
        None | Some(Value::Null) => Ok(priority::NORMAL),
        Some(Value::String(s)) => {
            priority::parse(s).ok_or_else(|| bad("priority is otp, high, normal, bulk or 0–1000"))
        }
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|n| (0..=1000).contains(n))
            .map(|n| n as i32)
            .ok_or_else(|| bad("a numeric priority is 0–1000")),
        Some(_) => Err(bad(
            "priority is otp, high, normal, bulk or a number 0–1000",
        )),
    }
}

fn tags_of(obj: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::field("tags", "invalid_type", "tags is a list of strings");
    match obj.get("tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad),
        Some(_) => Err(bad()),
    }
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
    let at = |e: ApiError| prefixed(e, prefix);
    let obj = object(value, KNOWN).map_err(at)?;
    let f = Fields(obj);
    let settings = &state.settings;
    let raw_to = f.required_str("to").map_err(at)?;
    let to = number::normalise(raw_to, settings).map_err(at)?;
    let text = f.str("text").map_err(at)?;
    let template = f.str("template").map_err(at)?;
    let vars = templates::vars_of(obj).map_err(at)?;
    match (text, template) {
        (Some(_), Some(_)) => {
            return Err(at(ApiError::field(
                "template",
                "conflict",
                "give text or template, not both",
            )));
        }
        (None, None) => {
            return Err(at(ApiError::field(
                "text",
                "missing",
                "text (or template and vars) is required",
            )));
        }
        (Some(t), None) if t.trim().is_empty() => {
            return Err(at(ApiError::field("text", "empty", "text is empty")));
        }
        (Some(_), None) if !vars.is_empty() => {
            return Err(at(ApiError::field(
                "vars",
                "unexpected",
                "vars go with a template, not with text",
            )));
        }
        _ => {}
    }
    let prio = priority_of(obj).map_err(at)?;
    let bound_time = |name: &'static str| -> Result<Option<i64>, ApiError> {
        f.time(name)?
            .map(|t| bounded_time(name, t, now, settings.max_ahead_ms))
            .transpose()
    };
    let bound_duration = |name: &'static str| -> Result<Option<Duration>, ApiError> {
        f.duration(name)?
            .map(|d| bounded_duration(name, d, settings.max_ahead_ms))
            .transpose()
    };
    let send_at = bound_time("send_at").map_err(at)?;
    if let Some(t) = send_at
        && t < now - settings.send_at_tolerance_ms
    {
        return Err(at(ApiError::field(
            "send_at",
            "in_the_past",
            "send_at is in the past",
        )));
    }
    // Which of the two is given decides before their bounds do.
    if f.0.get("ttl").is_some_and(|v| !v.is_null())
        && f.0.get("expires_at").is_some_and(|v| !v.is_null())
    {
        return Err(at(ApiError::field(
            "ttl",
            "conflict",
            "give ttl or expires_at, not both",
        )));
    }
    let ttl = bound_duration("ttl").map_err(at)?;
    let expires_at = match (bound_time("expires_at").map_err(at)?, ttl) {
        (Some(_), Some(_)) => {
            return Err(at(ApiError::field(
                "ttl",
                "conflict",
                "give ttl or expires_at, not both",
            )));
        }
        (Some(e), None) => Some(e),
        (None, Some(d)) => Some(send_at.unwrap_or(now).saturating_add(ms(d))),
        (None, None) => None,
    };
    if let Some(e) = expires_at
        && e <= send_at.unwrap_or(now)
    {
        return Err(at(ApiError::field(
            "expires_at",
            "in_the_past",
            "the message would expire before it is sent",
        )));
    }
    let validity = bound_duration("validity").map_err(at)?;
    if validity.is_some_and(|v| v < Duration::from_secs(300)) {
        return Err(at(ApiError::field(
            "validity",
            "too_short",
            "validity is at least 5 minutes",
        )));
    }
    let tags = tags_of(obj).map_err(at)?;
    // Not an http(s) URL: `invalid_url`; a destination the gateway will not call
    // (loopback, private, link-local, userinfo, off the operator's allow-list):
    // `invalid_callback_url`. Stored normalised, as the delivery worker will see it.
    let callback_url = match f.str("callback_url").map_err(at)? {
        None => None,
        Some(u) => {
            use crate::webhook::CallbackUrlError as E;
            match crate::webhook::check_callback_url(u, &settings.callback_policy) {
                Ok(url) => Some(url.to_string()),
                Err(e) => {
                    let code = match e {
                        E::TooLong | E::Invalid(_) | E::Scheme(_) | E::NoHost => "invalid_url",
                        E::Userinfo | E::RefusedHost(_) | E::NotAllowed(_) => {
                            "invalid_callback_url"
                        }
                    };
                    return Err(at(ApiError::field("callback_url", code, e.to_string())));
                }
            }
        }
    };
    let status_report = f.bool("status_report").map_err(at)?.unwrap_or(true);
    let flash = f.bool("flash").map_err(at)?.unwrap_or(false);
    let sim = f.str("sim").map_err(at)?.map(str::to_owned);
    // The reminder: appointment_at - remind_before, expiring at the appointment.
    let appointment_at = bound_time("appointment_at").map_err(at)?;
    let remind_before = bound_duration("remind_before").map_err(at)?;
    let reminder_template = f.str("reminder_template").map_err(at)?;
    let reminder = match (appointment_at, remind_before) {
        (None, None) if reminder_template.is_none() => None,
        (Some(_), None) | (None, None) => {
            return Err(at(ApiError::field(
                "remind_before",
                "missing",
                "remind_before (e.g. \"24h\") goes with appointment_at",
            )));
        }
        (None, Some(_)) => {
            return Err(at(ApiError::field(
                "appointment_at",
                "missing",
                "appointment_at is required with remind_before",
            )));
        }
        (Some(appt), Some(before)) => {
            if appt <= now {
                return Err(at(ApiError::field(
                    "appointment_at",
                    "in_the_past",
                    "the appointment is in the past",
                )));
            }
            let remind_at = appt - ms(before);
            if remind_at <= now {
                return Err(at(ApiError::field(
                    "remind_before",
                    "in_the_past",
                    "the reminder would be due already",
                )));
            }
            if template.is_none() && reminder_template.is_none() {
                return Err(at(ApiError::field(
                    "reminder_template",
                    "missing",
                    "a reminder needs a template (template or reminder_template)",
                )));
            }
            Some((
                appt,
                remind_at,
                reminder_template.unwrap_or("appointment_reminder"),
            ))
        }
    };

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
    let mut resp = (status, Json(body)).into_response();
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
        let cap = state.settings.max_pending_callbacks;
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
            Ok((status, Json(respond(&all))).into_response())
        }
    }
}

/// One request's response: the first message, with its group and reminder.
fn single_json(recs: &[Stored]) -> Value {
    let mut it = recs.iter();
    let Some((first, group, template)) = it.next() else {
        return Value::Null;
    };
    let mut v = message_json(first, *group, template.as_deref());
    if let Some((r, g, t)) = it.next()
        && let Some(o) = v.as_object_mut()
    {
        o.insert("reminder".into(), message_json(r, *g, t.as_deref()));
    }
    v
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
    let respond: Respond =
        |all| json!({"messages": all.iter().map(|r| single_json(r)).collect::<Vec<_>>()});
    if let Some(r) = replay(&state, &key, &hash, Some(respond)).await? {
        return Ok(r);
    }
    let obj = body.object(&["messages"])?;
    let items = match obj.get("messages") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => {
            return Err(ApiError::field(
                "messages",
                "missing",
                "messages (a list) is required",
            ));
        }
        Some(_) => {
            return Err(ApiError::field(
                "messages",
                "invalid_type",
                "messages is a list of message objects",
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::field("messages", "empty", "messages is empty"));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::field(
            "messages",
            "too_many",
            format!("at most {MAX_BATCH} messages per batch"),
        ));
    }
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
    Ok(Json(message_json(&m, group, template.as_deref())).into_response())
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
        Some(t) => Some(number::normalise_lenient(t, &state.settings)?),
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
    let items: Vec<Value> = rows
        .iter()
        .map(|(m, (g, t))| message_json(m, *g, t.as_deref()))
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": next})).into_response())
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
    Ok(
        Json(json!({"id": id, "status": status, "group_id": group, "cancelled": cancelled}))
            .into_response(),
    )
}

pub(super) use super::time::rfc3339;

/// The message as the API shows it; the body of a masked message (a one-time code) is
/// never shown.
pub(super) fn message_json(m: &MessageRecord, group: Option<i64>, template: Option<&str>) -> Value {
    json!({
        "id": m.id,
        "status": m.status.as_str(),
        "to": m.to,
        "text": if m.masked { Value::Null } else { Value::String(m.body.clone()) },
        "masked": m.masked,
        "template": template,
        "group_id": group,
        "encoding": m.encoding,
        "parts": m.parts_total,
        "priority": priority::name(m.priority),
        "created_at": rfc3339(m.created_at),
        "updated_at": rfc3339(m.updated_at),
        "send_at": m.send_at.map(rfc3339),
        "expires_at": m.expires_at.map(rfc3339),
        "status_report": m.status_report,
        "flash": m.flash,
        "validity": m.validity_secs,
        "pinned_sim": m.pinned_sim,
        "sim": m.sim,
        "modem": m.modem,
        "attempts": m.attempts,
        "error": m.error_code.as_ref().map(|c| json!({"code": c, "message": m.error})),
        "possible_duplicate": m.possible_duplicate,
        "tags": m.tags,
        "callback_url": m.callback_url,
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
