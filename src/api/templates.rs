//! `/v1/templates`: named bodies with `{{variable}}` placeholders, and their rendering
//! for `POST /v1/messages` (`template` + `vars`) and `POST /v1/otp`. A missing variable
//! is a 400 naming `vars`, never a text sent with a hole in it.

use super::body::JsonBody;
use super::types::{TemplateCreate, TemplateDeleted, TemplateList, TemplateUpdate, TemplateView};
use super::{ApiError, AppState};
use crate::store::{self, TemplateRecord, now_ms};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `vars` as name → text (strings, numbers and booleans are accepted).
pub(crate) fn vars_of(obj: &Map<String, Value>) -> Result<BTreeMap<String, String>, ApiError> {
    let bad = || {
        ApiError::field(
            "vars",
            "invalid_type",
            "vars is an object of strings or numbers",
        )
    };
    match obj.get("vars") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(bad()),
                };
                Ok((k.clone(), s))
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// A body's placeholders in order of appearance; an unclosed or empty one is an error.
pub(crate) fn placeholders(body: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a {{ has no closing }}".to_string())?;
        let name = after[..end].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{{{{{name}}}}} is not a variable name (letters, digits, _)"
            ));
        }
        out.push(name.to_owned());
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// Fills in every placeholder; 400 `missing_variable` naming the first one not given.
/// The longest text a template may render to: as much as a request body may carry.
/// Far beyond what any message's part limit lets through, and it stops a small
/// template with thousands of placeholders from growing without bound.
pub(crate) const MAX_RENDERED: usize = super::BODY_LIMIT;

pub(crate) fn render(body: &str, vars: &BTreeMap<String, String>) -> Result<String, ApiError> {
    let mut out = String::with_capacity(body.len().min(MAX_RENDERED));
    let mut rest = body;
    let too_long = || {
        ApiError::field(
            "vars",
            "too_long",
            format!("the template renders to more than {MAX_RENDERED} bytes"),
        )
    };
    while let Some(start) = rest.find("{{") {
        if out.len() + start > MAX_RENDERED {
            return Err(too_long());
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = after[..end].trim();
        let value = vars.get(name).ok_or_else(|| {
            ApiError::field(
                "vars",
                "missing_variable",
                format!("the template needs the variable {name:?}"),
            )
        })?;
        if out.len() + value.len() > MAX_RENDERED {
            return Err(too_long());
        }
        out.push_str(value);
        rest = &after[end + 2..];
    }
    if out.len() + rest.len() > MAX_RENDERED {
        return Err(too_long());
    }
    out.push_str(rest);
    Ok(out)
}

fn template_view(t: &TemplateRecord) -> TemplateView {
    let mut vars = placeholders(&t.body).unwrap_or_default();
    vars.dedup();
    TemplateView {
        name: t.name.clone(),
        body: t.body.clone(),
        description: t.description.clone(),
        variables: vars,
        created_at: super::time::rfc3339(t.created_at),
        updated_at: super::time::rfc3339(t.updated_at),
    }
}

pub(super) fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(ApiError::field(
            "name",
            "invalid_name",
            "a template name is 1–64 of a-z, 0-9, _ and -",
        ));
    }
    Ok(())
}

pub(super) fn check_body(body: &str) -> Result<(), ApiError> {
    if body.trim().is_empty() {
        return Err(ApiError::field("body", "empty", "body is empty"));
    }
    placeholders(body).map_err(|m| ApiError::field("body", "invalid_template", m))?;
    Ok(())
}

pub(super) async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let all = state.store.read(store::list_templates).await?;
    Ok(Json(TemplateList {
        items: all.iter().map(template_view).collect(),
    })
    .into_response())
}

pub(super) async fn get_one(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let t = state
        .store
        .read(move |c| store::get_template(c, &name))
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    Ok(Json(template_view(&t)).into_response())
}

pub(super) async fn create(
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let req = TemplateCreate::from_json(&body.value)?;
    req.validate()?;
    let TemplateCreate {
        name,
        body: text,
        description: desc,
    } = req;
    let now = now_ms();
    let t = state
        .store
        .write(move |c| {
            if !store::insert_template(c, &name, &text, desc.as_deref(), now)? {
                return Ok(None);
            }
            store::get_template(c, &name)
        })
        .await?
        .ok_or_else(|| ApiError::conflict("exists", "a template with this name exists"))?;
    // Names are a-z, 0-9, `_` and `-`: nothing to escape.
    let location = format!("/v1/templates/{}", t.name);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        Json(template_view(&t)),
    )
        .into_response())
}

pub(super) async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let req = TemplateUpdate::from_json(&body.value)?;
    req.validate()?;
    let TemplateUpdate {
        body: text,
        description: desc,
    } = req;
    let now = now_ms();
    let t = state
        .store
        .write(move |c| {
            if !store::update_template(c, &name, &text, desc.as_deref(), now)? {
                return Ok(None);
            }
            store::get_template(c, &name)
        })
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    Ok(Json(template_view(&t)).into_response())
}

pub(super) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let n = name.clone();
    if !state
        .store
        .write(move |c| store::delete_template(c, &n))
        .await?
    {
        return Err(ApiError::not_found("template"));
    }
    Ok(Json(TemplateDeleted {
        name,
        deleted: true,
    })
    .into_response())
}
