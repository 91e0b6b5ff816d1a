//! `POST /v1/otp` and `POST /v1/otp/{id}/verify`: security codes. The code comes from a
//! CSPRNG, goes out at `otp` priority and expires with the code; only a salted SHA-256
//! is stored, the message is masked (its text never shown by `GET /v1/messages`), and
//! the code is never logged. Verification compares hashes in constant time, counts
//! attempts and refuses after the limit; a resend cooldown stops code flooding.

use super::body::{JsonBody, ms};
use super::messages::{body_hash, created, idempotency_key, plan_text, replay};
use super::types::{OtpCreated, OtpRequest, ValidOtp, VerifyRequest, VerifyResponse};
use super::{ApiError, AppState, Caller, templates};
use crate::dispatch::{Queued, priority};
use crate::store::{self, IdempotentResponse, NewMessage, NewOtp, now_ms};
use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::Value;

fn hash_code(salt: &str, code: &str) -> String {
    let mut b = Vec::with_capacity(salt.len() + code.len());
    b.extend_from_slice(salt.as_bytes());
    b.extend_from_slice(code.as_bytes());
    crate::pdu::hex::encode(&super::auth::sha256(&b)).to_lowercase()
}

/// `length` random digits and a random salt, from the thread-local CSPRNG (ChaCha,
/// seeded from the OS).
fn generate(length: u32) -> (String, String) {
    let mut rng = rand::rng();
    let code: String = (0..length)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    let salt: [u8; 16] = rng.random();
    (code, crate::pdu::hex::encode(&salt).to_lowercase())
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, &caller, "otp")?;
    let hash = body_hash(&body.bytes);
    if let Some(r) = replay(&state, &key, &hash, None).await? {
        return Ok(r);
    }
    let settings = state.settings.get();
    let cfg = &settings.otp;
    let ValidOtp {
        to,
        length,
        ttl,
        template,
        mut vars,
        sim,
    } = OtpRequest::from_json(&body.value)?.validate(&state.settings.get())?;
    let now = now_ms();
    let (tname, to2, sim2) = (template.clone(), to.clone(), sim.clone());
    let known = state.settings.get().known_sims.clone();
    let (body_tpl, suppressed, last, sim_known) = state
        .store
        .read(move |c| {
            let t = store::get_template(c, &tname)?.map(|t| t.body);
            let sim_known = match &sim2 {
                None => true,
                Some(s) => known.contains(s) || store::list_sims(c)?.iter().any(|r| &r.iccid == s),
            };
            Ok((
                t,
                store::is_suppressed(c, &to2)?,
                store::last_otp_at(c, &to2)?,
                sim_known,
            ))
        })
        .await?;
    let body_tpl = body_tpl.ok_or_else(|| {
        ApiError::field(
            "template",
            "unknown_template",
            format!("no template named {template:?}"),
        )
    })?;
    if !templates::placeholders(&body_tpl)
        .unwrap_or_default()
        .iter()
        .any(|p| p == "code")
    {
        return Err(ApiError::field(
            "template",
            "invalid_template",
            "a security-code template must use {{code}}",
        ));
    }
    if !sim_known {
        return Err(ApiError::field(
            "sim",
            "unknown_sim",
            "no SIM with this ICCID is configured or has been seen",
        ));
    }
    if suppressed && !state.settings.get().optout.exempt_otp {
        return Err(ApiError::field(
            "to",
            "suppressed",
            format!("{to} opted out (it is on the suppression list)"),
        ));
    }
    let cooldown = i64::try_from(cfg.cooldown_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    if let Some(last) = last
        && now < last.saturating_add(cooldown)
    {
        let wait = (last + cooldown - now + 999) / 1000;
        return Err(ApiError::too_many(
            "cooldown",
            format!(
                "a code was sent to this number {} s ago; wait {wait} s",
                (now - last) / 1000
            ),
            u64::try_from(wait).unwrap_or(1),
        ));
    }
    let (code, salt) = generate(length);
    vars.insert("code".into(), code.clone());
    vars.entry("minutes".into())
        .or_insert_with(|| ttl.as_secs().div_ceil(60).to_string());
    let text = templates::render(&body_tpl, &vars)?;
    let plan = plan_text(&text, state.settings.get().max_parts, "template")?;
    let expires_at = now.saturating_add(ms(ttl));
    let message = NewMessage {
        to: to.clone(),
        body: text,
        encoding: plan.encoding.name().to_owned(),
        parts_total: plan.parts.len() as u32,
        priority: priority::OTP,
        send_at: None,
        expires_at: Some(expires_at),
        status_report: true,
        flash: false,
        validity_secs: u32::try_from(ttl.as_secs()).ok().filter(|s| *s >= 300),
        pinned_sim: sim,
        tags: vec!["otp".into()],
        callback_url: None,
        masked: true,
    };
    let max_attempts = cfg.max_attempts;
    let code_hash = hash_code(&salt, &code);
    drop(code);
    let idem = key.map(|k| (k, hash));
    let owner = caller.token.clone();
    let expires_text = super::time::rfc3339(expires_at);
    let out = state
        .store
        .write(move |c| {
            if let Some((k, _)) = &idem
                && let Some(r) = store::get_idempotency(c, k)?
            {
                return Ok(Err(r));
            }
            let mid = store::insert_message(c, &message, now)?;
            store::set_message_meta(c, mid, None, Some(&template))?;
            store::set_owner(c, mid, &owner)?;
            let id = store::insert_otp(
                c,
                &NewOtp {
                    message_id: mid,
                    to: message.to.clone(),
                    salt,
                    code_hash,
                    expires_at,
                    max_attempts,
                },
                now,
            )?;
            let rec = store::get_message(c, mid)?
                .ok_or_else(|| store::StoreError::NotFound(format!("message {mid}")))?;
            let body = serde_json::to_value(OtpCreated {
                id,
                message_id: mid,
                to: message.to.clone(),
                status: "queued".into(),
                expires_at: expires_text,
                max_attempts,
            })
            .unwrap_or(Value::Null);
            if let Some((k, h)) = &idem {
                store::put_idempotency(
                    c,
                    k,
                    &IdempotentResponse {
                        body_hash: h.clone(),
                        status: 202,
                        response: body.to_string(),
                    },
                    now,
                )?;
            }
            Ok(Ok((rec, body)))
        })
        .await?;
    match out {
        Ok((rec, body)) => {
            state.dispatcher.enqueued(Queued::from_record(&rec));
            Ok(created(StatusCode::ACCEPTED, body))
        }
        Err(r) => {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
            let v: Value = serde_json::from_str(&r.response).unwrap_or(Value::Null);
            Ok(created(status, v))
        }
    }
}

pub(super) async fn verify(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = super::messages::parse_id(&id, "code")?;
    let code = VerifyRequest::from_json(&body.value)?.validate()?;
    let now = now_ms();
    let out = state
        .store
        .write(move |c| {
            let Some(o) = store::get_otp(c, id)? else {
                return Ok(None);
            };
            // Another token's code is as good as absent: its attempts are not spent.
            let owner = store::message_owner(c, o.message_id)?.flatten();
            if !caller.owns(owner.as_deref()) {
                return Ok(None);
            }
            let left = |a: u32| o.max_attempts.saturating_sub(a);
            if o.verified_at.is_some() {
                // A code verifies once; a replay is as good as a wrong code.
                return Ok(Some(("invalid", left(o.attempts))));
            }
            if now >= o.expires_at {
                return Ok(Some(("expired", 0)));
            }
            if o.attempts >= o.max_attempts {
                return Ok(Some(("too_many_attempts", 0)));
            }
            store::otp_attempted(c, id)?;
            let presented = hash_code(&o.salt, &code);
            if super::auth::ct_eq(presented.as_bytes(), o.code_hash.as_bytes()) {
                store::otp_verified(c, id, now)?;
                Ok(Some(("verified", 0)))
            } else {
                Ok(Some(("invalid", left(o.attempts + 1))))
            }
        })
        .await?;
    let (result, attempts_left) = out.ok_or_else(|| ApiError::not_found("code"))?;
    Ok(Json(VerifyResponse {
        id,
        result: result.into(),
        attempts_left,
    })
    .into_response())
}
