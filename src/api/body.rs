//! Request bodies: the raw bytes (for idempotency hashes) and the parsed JSON, with
//! every failure (wrong content type, over the limit, not JSON) in the API's error
//! shape; and typed field readers that blame the field on a wrong type.

use super::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use serde_json::{Map, Value};
use std::time::Duration;

/// A JSON body: the bytes as sent and the parsed value.
pub(crate) struct JsonBody {
    pub bytes: Bytes,
    pub value: Value,
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let m = v.split(';').next().unwrap_or("").trim();
                m.eq_ignore_ascii_case("application/json") || m.ends_with("+json")
            });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body exceeds {} bytes", super::BODY_LIMIT),
                )
            } else {
                ApiError::bad("invalid_body", e.body_text())
            }
        })?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad("invalid_json", format!("the body is not JSON: {e}")))?;
        Ok(JsonBody { bytes, value })
    }
}

pub(crate) fn object<'a>(v: &'a Value, known: &[&str]) -> Result<&'a Map<String, Value>, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad("invalid_json", "the body must be a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::bad(
            "unknown_field",
            format!("unknown field {k:?}"),
        ));
    }
    Ok(obj)
}

/// Reads typed fields out of a JSON object, blaming the field on a wrong type.
pub(crate) struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    pub(crate) fn str(&self, name: &'static str) -> Result<Option<&'a str>, ApiError> {
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

    pub(crate) fn required_str(&self, name: &'static str) -> Result<&'a str, ApiError> {
        self.str(name)?
            .ok_or_else(|| ApiError::field(name, "missing", format!("{name} is required")))
    }

    pub(crate) fn bool(&self, name: &'static str) -> Result<Option<bool>, ApiError> {
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

    pub(crate) fn u64(&self, name: &'static str) -> Result<Option<u64>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                ApiError::field(
                    name,
                    "invalid_type",
                    format!("{name} must be a whole number"),
                )
            }),
            Some(_) => Err(ApiError::field(
                name,
                "invalid_type",
                format!("{name} must be a number"),
            )),
        }
    }

    /// A duration as seconds (number) or text (`"10m"`, `"2h"`).
    pub(crate) fn duration(&self, name: &'static str) -> Result<Option<Duration>, ApiError> {
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
    pub(crate) fn time(&self, name: &'static str) -> Result<Option<i64>, ApiError> {
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
            Some(Value::String(s)) => time_str(s).ok_or_else(bad).map(Some),
            Some(_) => Err(bad()),
        }
    }
}

/// RFC 3339 (UTC) or unix milliseconds, as text (query strings).
pub(crate) fn time_str(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    humantime::parse_rfc3339(s).ok().map(crate::store::to_ms)
}

/// Saturating milliseconds of a duration.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}
