//! The API's request and response bodies as Rust types: serde for the wire, utoipa's
//! `ToSchema` for the OpenAPI document (which is generated from these, never written
//! by hand), and each request's `from_json` + `validate()`.
//!
//! A request is read in two steps so that every refusal keeps its code and `field`:
//! `from_json` first checks the body's shape the way the API always has (unknown
//! fields, each field's JSON type, with the codes of [`super::body::Fields`]), then
//! deserializes it into the typed struct (which cannot fail after those checks; if it
//! did, it is 400 `invalid_json`). `validate()` then checks values (numbers, bounds,
//! combinations) and returns what the handler acts on.

use super::ApiError;
use super::body::{Fields, object};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

/// Deserializes a body whose shape was checked already.
fn typed<T: for<'de> Deserialize<'de>>(v: &Value) -> Result<T, ApiError> {
    T::deserialize(v).map_err(|e| ApiError::bad("invalid_json", format!("the body: {e}")))
}

// ---- Value types shared by requests ----

/// A duration: whole seconds, or text such as `"10m"`, `"24h"`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum DurationSpec {
    /// Seconds.
    Seconds(u64),
    /// humantime text (`"90s"`, `"10m"`, `"1h 30m"`).
    Text(String),
}

impl DurationSpec {
    /// The duration, or 400 `invalid_duration` naming `field`.
    pub fn get(&self, field: &str) -> Result<Duration, ApiError> {
        match self {
            DurationSpec::Seconds(s) => Ok(Duration::from_secs(*s)),
            DurationSpec::Text(t) => humantime::parse_duration(t).map_err(|_| {
                ApiError::field(
                    field,
                    "invalid_duration",
                    format!("{field} must be seconds or a duration such as \"10m\""),
                )
            }),
        }
    }
}

/// A point in time: RFC 3339 in UTC (`2026-11-27T10:00:00Z`) or unix milliseconds.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum TimeSpec {
    /// Unix milliseconds.
    UnixMs(i64),
    /// RFC 3339, UTC.
    Rfc3339(String),
}

impl TimeSpec {
    /// Unix milliseconds, or 400 `invalid_time` naming `field`.
    pub fn get(&self, field: &str) -> Result<i64, ApiError> {
        match self {
            TimeSpec::UnixMs(ms) => Ok(*ms),
            TimeSpec::Rfc3339(s) => super::body::time_str(s).ok_or_else(|| {
                ApiError::field(
                    field,
                    "invalid_time",
                    format!(
                        "{field} must be RFC 3339 in UTC (2026-11-27T10:00:00Z) or unix milliseconds"
                    ),
                )
            }),
        }
    }
}

/// A priority: `otp` > `high` > `normal` (default) > `bulk`, or a number 0–1000.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PrioritySpec {
    /// 0–1000.
    Level(i64),
    /// `otp`, `high`, `normal`, `bulk`.
    Name(String),
}

impl PrioritySpec {
    /// The numeric priority, or 400 `invalid_priority`.
    pub fn get(spec: Option<&PrioritySpec>) -> Result<i32, ApiError> {
        use crate::dispatch::priority;
        let bad = |m: &str| ApiError::field("priority", "invalid_priority", m);
        match spec {
            None => Ok(priority::NORMAL),
            Some(PrioritySpec::Name(s)) => priority::parse(s)
                .ok_or_else(|| bad("priority is otp, high, normal, bulk or 0–1000")),
            Some(PrioritySpec::Level(n)) => i32::try_from(*n)
                .ok()
                .filter(|n| (0..=1000).contains(n))
                .ok_or_else(|| bad("a numeric priority is 0–1000")),
        }
    }

    /// Today's check of the JSON value (shape step).
    fn check(obj: &Map<String, Value>) -> Result<(), ApiError> {
        let bad = |m: &str| ApiError::field("priority", "invalid_priority", m);
        match obj.get("priority") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(s)) => {
                let _ = Self::get(Some(&PrioritySpec::Name(s.clone())))?;
                Ok(())
            }
            Some(Value::Number(n)) => n
                .as_i64()
                .filter(|n| (0..=1000).contains(n))
                .map(|_| ())
                .ok_or_else(|| bad("a numeric priority is 0–1000")),
            Some(_) => Err(bad(
                "priority is otp, high, normal, bulk or a number 0–1000",
            )),
        }
    }
}

/// A template variable's value: a string, a number or a boolean (used as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarValue(pub String);

impl<'de> Deserialize<'de> for VarValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(VarValue(s)),
            Value::Number(n) => Ok(VarValue(n.to_string())),
            Value::Bool(b) => Ok(VarValue(b.to_string())),
            _ => Err(serde::de::Error::custom(
                "a variable is a string, a number or a boolean",
            )),
        }
    }
}

impl Serialize for VarValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl utoipa::PartialSchema for VarValue {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .description(Some("A string, a number or a boolean, used as text"))
            .into()
    }
}

impl ToSchema for VarValue {}

/// A template's variables: name → value.
pub type Vars = BTreeMap<String, VarValue>;

/// `vars` as name → text.
pub fn vars_text(vars: Option<&Vars>) -> BTreeMap<String, String> {
    vars.map(|v| v.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default()
}

// ---- Requests ----

/// `POST /v1/messages` (and each item of a batch). Give `text`, or `template` + `vars`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// E.164 (`+491701234567`), `00…`, or national with `http.default_region`.
    pub to: String,
    /// The text; not blank.
    #[serde(default)]
    pub text: Option<String>,
    /// A template name (`GET /v1/templates`).
    #[serde(default)]
    pub template: Option<String>,
    /// The template's variables.
    #[serde(default)]
    pub vars: Option<BTreeMap<String, VarValue>>,
    /// `otp`, `high`, `normal` (default), `bulk`, or 0–1000.
    #[serde(default)]
    pub priority: Option<PrioritySpec>,
    /// When to send; at most `http.send_at_tolerance_secs` in the past.
    #[serde(default)]
    pub send_at: Option<TimeSpec>,
    /// Expire instead of arriving late; or `expires_at` (not both).
    #[serde(default)]
    pub ttl: Option<DurationSpec>,
    /// When to give up (RFC 3339 in UTC or unix milliseconds); or `ttl` (not both).
    #[serde(default)]
    pub expires_at: Option<TimeSpec>,
    /// Default true.
    #[serde(default)]
    pub status_report: Option<bool>,
    /// Class 0.
    #[serde(default)]
    pub flash: Option<bool>,
    /// TP-VP, at least 5 minutes.
    #[serde(default)]
    pub validity: Option<DurationSpec>,
    /// Pin to an ICCID.
    #[serde(default)]
    pub sim: Option<String>,
    /// Free-form labels, stored with the message and shown in its webhook events.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// http(s) URL for this message's webhook events.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// With `remind_before`: schedules a reminder (`reminder_template`, default
    /// `appointment_reminder`) at `appointment_at - remind_before`, expiring at the
    /// appointment; both messages share a `group_id`.
    #[serde(default)]
    pub appointment_at: Option<TimeSpec>,
    /// How long before `appointment_at` the reminder goes out (seconds or `"24h"`).
    #[serde(default)]
    pub remind_before: Option<DurationSpec>,
    /// The reminder's template (default `appointment_reminder`).
    #[serde(default)]
    pub reminder_template: Option<String>,
}

/// The fields a message request may have.
pub const MESSAGE_FIELDS: &[&str] = &[
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

/// Today's `vars` check: an object of strings, numbers or booleans.
fn check_vars(obj: &Map<String, Value>) -> Result<(), ApiError> {
    super::templates::vars_of(obj).map(|_| ())
}

fn check_tags(obj: &Map<String, Value>) -> Result<(), ApiError> {
    let bad = || ApiError::field("tags", "invalid_type", "tags is a list of strings");
    match obj.get("tags") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(bad()),
    }
}

/// What a message request asks for, its values checked (the store lookups — templates,
/// SIMs, the opt-out list — come after, in the handler).
#[derive(Debug, Clone)]
pub struct ValidMessage {
    /// E.164.
    pub to: String,
    /// The text, when no template is given.
    pub text: Option<String>,
    /// The template's name, rendered by the handler with `vars`.
    pub template: Option<String>,
    /// The template's variables, as text.
    pub vars: BTreeMap<String, String>,
    /// 0–1000 (`otp` > `high` > `normal` > `bulk`).
    pub priority: i32,
    /// When to send, unix milliseconds; `None` is now.
    pub send_at: Option<i64>,
    /// When to give up, unix milliseconds (from `ttl` or `expires_at`); `None` never.
    pub expires_at: Option<i64>,
    /// TP-VP: how long the SMSC keeps trying; `None` is the SMSC's default.
    pub validity: Option<Duration>,
    /// Free-form labels.
    pub tags: Vec<String>,
    /// Normalised, as the delivery worker will see it.
    pub callback_url: Option<String>,
    /// Ask the SMSC for status reports.
    pub status_report: bool,
    /// Send as class 0 (shown, not stored, by the handset).
    pub flash: bool,
    /// The ICCID the message is pinned to; `None` lets the pool choose.
    pub sim: Option<String>,
    /// (appointment, reminder due, reminder template).
    pub reminder: Option<(i64, i64, String)>,
}

/// What `validate()` needs besides the body.
pub struct Limits<'a> {
    /// The `http`, `otp` and `optout` settings values are checked against.
    pub settings: &'a super::ApiSettings,
    /// The time of the request, unix milliseconds (for `send_at` and the bounds).
    pub now: i64,
}

impl MessageRequest {
    /// Checks the body's shape (today's codes and fields), then deserializes it.
    pub fn from_json(v: &Value) -> Result<MessageRequest, ApiError> {
        let obj = object(v, MESSAGE_FIELDS)?;
        let f = Fields(obj);
        f.required_str("to")?;
        f.str("text")?;
        f.str("template")?;
        check_vars(obj)?;
        PrioritySpec::check(obj)?;
        f.time("send_at")?;
        // Which of the two is given decides before their types do.
        if obj.get("ttl").is_some_and(|v| !v.is_null())
            && obj.get("expires_at").is_some_and(|v| !v.is_null())
        {
            return Err(ApiError::field(
                "ttl",
                "conflict",
                "give ttl or expires_at, not both",
            ));
        }
        f.duration("ttl")?;
        f.time("expires_at")?;
        f.duration("validity")?;
        check_tags(obj)?;
        f.str("callback_url")?;
        f.bool("status_report")?;
        f.bool("flash")?;
        f.str("sim")?;
        f.time("appointment_at")?;
        f.duration("remind_before")?;
        f.str("reminder_template")?;
        typed(v)
    }

    /// Checks every value that needs no store: the number, text or template, times and
    /// durations and their bounds, the callback URL, the reminder.
    pub fn validate(&self, l: &Limits<'_>) -> Result<ValidMessage, ApiError> {
        use super::time::{bounded_duration, bounded_time};
        let settings = l.settings;
        let now = l.now;
        let to = super::number::normalise(&self.to, settings)?;
        let vars = vars_text(self.vars.as_ref());
        match (&self.text, &self.template) {
            (Some(_), Some(_)) => {
                return Err(ApiError::field(
                    "template",
                    "conflict",
                    "give text or template, not both",
                ));
            }
            (None, None) => {
                return Err(ApiError::field(
                    "text",
                    "missing",
                    "text (or template and vars) is required",
                ));
            }
            (Some(t), None) if t.trim().is_empty() => {
                return Err(ApiError::field("text", "empty", "text is empty"));
            }
            (Some(_), None) if !vars.is_empty() => {
                return Err(ApiError::field(
                    "vars",
                    "unexpected",
                    "vars go with a template, not with text",
                ));
            }
            _ => {}
        }
        let priority = PrioritySpec::get(self.priority.as_ref())?;
        let time = |name: &'static str, t: &Option<TimeSpec>| -> Result<Option<i64>, ApiError> {
            t.as_ref()
                .map(|t| bounded_time(name, t.get(name)?, now, settings.max_ahead_ms))
                .transpose()
        };
        let duration =
            |name: &'static str, d: &Option<DurationSpec>| -> Result<Option<Duration>, ApiError> {
                d.as_ref()
                    .map(|d| bounded_duration(name, d.get(name)?, settings.max_ahead_ms))
                    .transpose()
            };
        let send_at = time("send_at", &self.send_at)?;
        if let Some(t) = send_at
            && t < now - settings.send_at_tolerance_ms
        {
            return Err(ApiError::field(
                "send_at",
                "in_the_past",
                "send_at is in the past",
            ));
        }
        let ttl = duration("ttl", &self.ttl)?;
        let expires_at = match (time("expires_at", &self.expires_at)?, ttl) {
            (Some(_), Some(_)) => {
                return Err(ApiError::field(
                    "ttl",
                    "conflict",
                    "give ttl or expires_at, not both",
                ));
            }
            (Some(e), None) => Some(e),
            (None, Some(d)) => Some(send_at.unwrap_or(now).saturating_add(super::body::ms(d))),
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
        let validity = duration("validity", &self.validity)?;
        if validity.is_some_and(|v| v < Duration::from_secs(300)) {
            return Err(ApiError::field(
                "validity",
                "too_short",
                "validity is at least 5 minutes",
            ));
        }
        let tags = self.tags.clone().unwrap_or_default();
        // Not an http(s) URL: `invalid_url`; a destination the gateway will not call
        // (loopback, private, link-local, userinfo, off the operator's allow-list):
        // `invalid_callback_url`. Kept normalised, as the delivery worker will see it.
        let callback_url = match &self.callback_url {
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
                        return Err(ApiError::field("callback_url", code, e.to_string()));
                    }
                }
            }
        };
        // The reminder: appointment_at - remind_before, expiring at the appointment.
        let appointment_at = time("appointment_at", &self.appointment_at)?;
        let remind_before = duration("remind_before", &self.remind_before)?;
        let reminder = match (appointment_at, remind_before) {
            (None, None) if self.reminder_template.is_none() => None,
            (Some(_), None) | (None, None) => {
                return Err(ApiError::field(
                    "remind_before",
                    "missing",
                    "remind_before (e.g. \"24h\") goes with appointment_at",
                ));
            }
            (None, Some(_)) => {
                return Err(ApiError::field(
                    "appointment_at",
                    "missing",
                    "appointment_at is required with remind_before",
                ));
            }
            (Some(appt), Some(before)) => {
                if appt <= now {
                    return Err(ApiError::field(
                        "appointment_at",
                        "in_the_past",
                        "the appointment is in the past",
                    ));
                }
                let remind_at = appt - super::body::ms(before);
                if remind_at <= now {
                    return Err(ApiError::field(
                        "remind_before",
                        "in_the_past",
                        "the reminder would be due already",
                    ));
                }
                if self.template.is_none() && self.reminder_template.is_none() {
                    return Err(ApiError::field(
                        "reminder_template",
                        "missing",
                        "a reminder needs a template (template or reminder_template)",
                    ));
                }
                Some((
                    appt,
                    remind_at,
                    self.reminder_template
                        .clone()
                        .unwrap_or_else(|| "appointment_reminder".into()),
                ))
            }
        };
        Ok(ValidMessage {
            to,
            text: self.text.clone(),
            template: self.template.clone(),
            vars,
            priority,
            send_at,
            expires_at,
            validity,
            tags,
            callback_url,
            status_report: self.status_report.unwrap_or(true),
            flash: self.flash.unwrap_or(false),
            sim: self.sim.clone(),
            reminder,
        })
    }
}

/// `POST /v1/messages/batch`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1–1000 messages; one invalid item rejects the batch (nothing stored).
    pub messages: Vec<MessageRequest>,
}

impl BatchRequest {
    /// The list's shape; each item is read with [`MessageRequest::from_json`] (its
    /// errors prefixed `messages[i].`).
    pub fn items(v: &Value) -> Result<&Vec<Value>, ApiError> {
        let obj = object(v, &["messages"])?;
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
        if items.len() > super::messages::MAX_BATCH {
            return Err(ApiError::field(
                "messages",
                "too_many",
                format!("at most {} messages per batch", super::messages::MAX_BATCH),
            ));
        }
        Ok(items)
    }
}

/// `POST /v1/estimate`: `text`, or `template` + `vars`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateRequest {
    /// The text to estimate; or `template` (not both).
    #[serde(default)]
    pub text: Option<String>,
    /// A template name, rendered with `vars` before estimating.
    #[serde(default)]
    pub template: Option<String>,
    /// The template's variables (a missing one is 400 `missing_variable`).
    #[serde(default)]
    pub vars: Option<BTreeMap<String, VarValue>>,
}

impl EstimateRequest {
    /// Checks the body's shape (today's codes and fields), then deserializes it.
    pub fn from_json(v: &Value) -> Result<EstimateRequest, ApiError> {
        let obj = object(v, &["text", "template", "vars"])?;
        let f = Fields(obj);
        let (text, template) = (f.str("text")?, f.str("template")?);
        if text.is_none() && template.is_some() {
            check_vars(obj)?;
            return typed(v);
        }
        // `vars` are read only for a template alone (as before): not checked here.
        let mut without = obj.clone();
        without.remove("vars");
        typed(&Value::Object(without))
    }

    /// `Ok(Ok(text))` or `Ok(Err(template name))`.
    pub fn validate(&self) -> Result<Result<&str, &str>, ApiError> {
        match (&self.text, &self.template) {
            (Some(_), Some(_)) => Err(ApiError::field(
                "template",
                "conflict",
                "give text or template, not both",
            )),
            (Some(t), None) => Ok(Ok(t)),
            (None, Some(n)) => Ok(Err(n)),
            (None, None) => Err(ApiError::field("text", "missing", "text is required")),
        }
    }
}

/// `POST /v1/templates`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateCreate {
    /// 1–64 of a-z, 0-9, `_`, `-`.
    pub name: String,
    /// Text with `{{variable}}` placeholders.
    pub body: String,
    /// Free text for people; null for none.
    #[serde(default)]
    pub description: Option<String>,
}

impl TemplateCreate {
    /// Checks the body's shape (today's codes and fields), then deserializes it.
    pub fn from_json(v: &Value) -> Result<TemplateCreate, ApiError> {
        let f = Fields(object(v, &["name", "body", "description"])?);
        f.required_str("name")?;
        f.required_str("body")?;
        f.str("description")?;
        typed(v)
    }

    /// 400 unless the name and the body's placeholders are well formed.
    pub fn validate(&self) -> Result<(), ApiError> {
        super::templates::check_name(&self.name)?;
        super::templates::check_body(&self.body)
    }
}

/// `PUT /v1/templates/{name}`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateUpdate {
    /// Text with `{{variable}}` placeholders.
    pub body: String,
    /// Free text for people; null or absent keeps the current one.
    #[serde(default)]
    pub description: Option<String>,
}

impl TemplateUpdate {
    /// Checks the body's shape (today's codes and fields), then deserializes it.
    pub fn from_json(v: &Value) -> Result<TemplateUpdate, ApiError> {
        let f = Fields(object(v, &["body", "description"])?);
        f.required_str("body")?;
        f.str("description")?;
        typed(v)
    }

    /// 400 unless the body's placeholders are well formed.
    pub fn validate(&self) -> Result<(), ApiError> {
        super::templates::check_body(&self.body)
    }
}

/// `POST /v1/otp`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtpRequest {
    /// E.164 (`+491701234567`), `00…`, or national with `http.default_region`.
    pub to: String,
    /// 4–10 digits (default `otp.length`).
    #[serde(default)]
    pub length: Option<u64>,
    /// 30 s – 24 h (default `otp.ttl_secs`).
    #[serde(default)]
    pub ttl: Option<DurationSpec>,
    /// Must use `{{code}}` (default `otp.template`, `security_code`).
    #[serde(default)]
    pub template: Option<String>,
    /// More variables; not `code` (generated).
    #[serde(default)]
    pub vars: Option<BTreeMap<String, VarValue>>,
    /// Pin to an ICCID; absent lets the pool choose.
    #[serde(default)]
    pub sim: Option<String>,
}

/// A checked `POST /v1/otp`.
pub struct ValidOtp {
    /// E.164.
    pub to: String,
    /// Digits in the code, 4–10.
    pub length: u32,
    /// How long the code is valid (and the message may wait), 30 s – 24 h.
    pub ttl: Duration,
    /// The template carrying `{{code}}`.
    pub template: String,
    /// The other variables, as text.
    pub vars: BTreeMap<String, String>,
    /// The ICCID the message is pinned to; `None` lets the pool choose.
    pub sim: Option<String>,
}

impl OtpRequest {
    /// Checks the body's shape (today's codes and fields), then deserializes it.
    pub fn from_json(v: &Value) -> Result<OtpRequest, ApiError> {
        let obj = object(v, &["to", "length", "ttl", "template", "vars", "sim"])?;
        let f = Fields(obj);
        f.required_str("to")?;
        f.u64("length")?;
        f.duration("ttl")?;
        f.str("template")?;
        check_vars(obj)?;
        f.str("sim")?;
        typed(v)
    }

    /// Checks the number, length, ttl and variables, filling in the `otp` defaults.
    pub fn validate(&self, settings: &super::ApiSettings) -> Result<ValidOtp, ApiError> {
        let cfg = &settings.otp;
        let to = super::number::normalise(&self.to, settings)?;
        let length = self.length.unwrap_or(u64::from(cfg.length));
        if !(4..=10).contains(&length) {
            return Err(ApiError::field(
                "length",
                "invalid_length",
                "length is 4–10 digits",
            ));
        }
        let ttl = match &self.ttl {
            Some(d) => d.get("ttl")?,
            None => Duration::from_secs(cfg.ttl_secs),
        };
        if !(30..=86_400).contains(&ttl.as_secs()) {
            return Err(ApiError::field(
                "ttl",
                "invalid_duration",
                "ttl is 30 s to 24 h",
            ));
        }
        let vars = vars_text(self.vars.as_ref());
        if vars.contains_key("code") {
            return Err(ApiError::field(
                "vars",
                "reserved_variable",
                "code is generated by gsmgw; do not pass it",
            ));
        }
        Ok(ValidOtp {
            to,
            length: length as u32,
            ttl,
            template: self
                .template
                .clone()
                .unwrap_or_else(|| cfg.template.clone()),
            vars,
            sim: self.sim.clone(),
        })
    }
}

/// `POST /v1/otp/{id}/verify`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The 4–10 digits the user received.
    pub code: String,
}

impl VerifyRequest {
    /// Checks the body's shape (today's codes and fields), then deserializes it.
    pub fn from_json(v: &Value) -> Result<VerifyRequest, ApiError> {
        Fields(object(v, &["code"])?).required_str("code")?;
        typed(v)
    }

    /// The code, trimmed; 400 `invalid_code` unless 1–10 digits.
    pub fn validate(&self) -> Result<String, ApiError> {
        let code = self.code.trim().to_owned();
        if code.is_empty() || code.len() > 10 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::field(
                "code",
                "invalid_code",
                "code is the 4–10 digits the user received",
            ));
        }
        Ok(code)
    }
}

/// `POST /v1/sims/{iccid}/ussd`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UssdRequest {
    /// Digits, `*` and `#`, e.g. `*100#`.
    pub code: String,
}

impl UssdRequest {
    /// Checks the body's shape (today's codes and fields), then deserializes it.
    pub fn from_json(v: &Value) -> Result<UssdRequest, ApiError> {
        Fields(object(v, &["code"])?).required_str("code")?;
        typed(v)
    }

    /// The code, trimmed; 400 `invalid_ussd` unless 1–32 of digits, `*` and `#`.
    pub fn validate(&self) -> Result<String, ApiError> {
        let code = self.code.trim().to_owned();
        if code.is_empty()
            || code.len() > 32
            || !code
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
        {
            return Err(ApiError::field(
                "code",
                "invalid_ussd",
                "a USSD code is digits, * and # (e.g. *100#)",
            ));
        }
        Ok(code)
    }
}

/// `PUT /v1/suppressions/{number}` (the body is optional).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressRequest {
    /// Why the number is listed, for people; null for none.
    #[serde(default)]
    pub note: Option<String>,
}

impl SuppressRequest {
    /// Checks the body's shape (an empty object is fine), then deserializes it.
    pub fn from_json(v: &Value) -> Result<SuppressRequest, ApiError> {
        Fields(object(v, &["note"])?).str("note")?;
        typed(v)
    }
}

// ---- Responses ----

/// Every 4xx/5xx body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error itself: a code to match on, words for people, the input to blame.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable (`invalid_number`, `missing_variable`, `rate_limited`, …).
    pub code: String,
    /// For people; may change between releases (match on `code`).
    pub message: String,
    /// The input to blame (`to`, `vars`, `messages[3].to`), or null.
    pub field: Option<String>,
}

/// Why a message failed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageErrorView {
    /// Machine-readable (`expired`, `interrupted`, `cms:…`, …).
    pub code: String,
    /// The failure in words, when there is more to say.
    pub message: Option<String>,
}

/// One part of a message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PartStateView {
    /// The part's number, from 1.
    pub seq: u32,
    /// `pending`, `sending`, `sent`, `delivered` or `failed`.
    pub status: String,
    /// The SMSC's message reference.
    pub mr: Option<u8>,
    /// ICCID of the SIM that sent it; null before it was sent.
    pub sim: Option<String>,
    /// When the SMSC accepted it, RFC 3339 (UTC); null before.
    pub sent_at: Option<String>,
    /// When its status report arrived, RFC 3339 (UTC); null until one does.
    pub report_at: Option<String>,
    /// TP-ST of the status report.
    pub report_status: Option<u8>,
}

/// A message as the API shows it; a security code's `text` is null (`masked`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// The message's id (`/v1/messages/{id}`).
    pub id: i64,
    /// `queued`, `sending`, `sent`, `delivered`, `failed`, `expired`, `cancelled`.
    pub status: String,
    /// The recipient, E.164.
    pub to: String,
    /// The text; null when `masked`.
    pub text: Option<String>,
    /// The text is a security code and is never shown.
    pub masked: bool,
    /// The template it was rendered from; null for plain text.
    pub template: Option<String>,
    /// Shared with the other messages of its group (an appointment's confirmation and reminder); null when alone.
    pub group_id: Option<i64>,
    /// `gsm7` or `ucs2`.
    pub encoding: String,
    /// SMS parts it takes.
    pub parts: u32,
    /// `otp`, `high`, `normal`, `bulk`, or the number.
    pub priority: String,
    /// RFC 3339 (UTC).
    pub created_at: String,
    /// The last change of status, RFC 3339 (UTC).
    pub updated_at: String,
    /// When it is scheduled, RFC 3339 (UTC); null to send at once.
    pub send_at: Option<String>,
    /// When it expires unless sent, RFC 3339 (UTC); null never.
    pub expires_at: Option<String>,
    /// Status reports were requested.
    pub status_report: bool,
    /// Sent as class 0 (shown, not stored, by the handset).
    pub flash: bool,
    /// Seconds.
    pub validity: Option<u32>,
    /// The ICCID the request pinned it to; null when the pool chooses.
    pub pinned_sim: Option<String>,
    /// ICCID of the SIM of the latest attempt; null before the first.
    pub sim: Option<String>,
    /// The device path of the latest attempt's modem; null before the first.
    pub modem: Option<String>,
    /// Send attempts so far.
    pub attempts: u32,
    /// The latest failure; null if nothing failed.
    pub error: Option<MessageErrorView>,
    /// A part may have reached the SMSC before a failure or a crash and was sent again: the recipient may have it twice.
    pub possible_duplicate: bool,
    /// As given in the request.
    pub tags: Vec<String>,
    /// Where this message's webhook events also go; null for none.
    pub callback_url: Option<String>,
    /// Each part, in order; empty until the message is planned.
    pub part_states: Vec<PartStateView>,
    /// An appointment's reminder (only in the answer to the request that made it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub reminder: Option<Box<MessageView>>,
}

/// `GET /v1/messages`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    /// Newest first.
    pub items: Vec<MessageView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `POST /v1/messages/batch`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// In the order of the request.
    pub messages: Vec<MessageView>,
}

/// `DELETE /v1/messages/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CancelResponse {
    /// The message asked for.
    pub id: i64,
    /// `cancelled`, or `not_cancellable` when only others of its group were.
    pub status: String,
    /// Its group; null when it has none.
    pub group_id: Option<i64>,
    /// The ids cancelled (the whole group).
    pub cancelled: Vec<i64>,
}

/// `POST /v1/estimate`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EstimateResponse {
    /// SMS parts the text takes.
    pub parts: usize,
    /// `gsm7` or `ucs2`.
    pub encoding: String,
    /// Septets (GSM 7-bit) or UTF-16 units.
    pub units: usize,
    /// Units still free in the last part.
    pub remaining_in_last_part: usize,
    /// The most parts a message may have (`dispatch.max_parts`).
    pub max_parts: u32,
    /// More than `max_parts`: a send would be 400 `too_long`.
    pub too_long: bool,
}

/// A template.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateView {
    /// Its name: a-z, 0-9, `_`, `-`.
    pub name: String,
    /// Text with `{{variable}}` placeholders.
    pub body: String,
    /// Free text for people; null for none.
    pub description: Option<String>,
    /// Its placeholders, in order.
    pub variables: Vec<String>,
    /// RFC 3339 (UTC).
    pub created_at: String,
    /// RFC 3339 (UTC).
    pub updated_at: String,
}

/// `GET /v1/templates`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateList {
    /// Every template, by name.
    pub items: Vec<TemplateView>,
}

/// `DELETE /v1/templates/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateDeleted {
    /// The template deleted.
    pub name: String,
    /// Always true.
    pub deleted: bool,
}

/// `POST /v1/otp` (never the code).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OtpCreated {
    /// The code's id, for `POST /v1/otp/{id}/verify`.
    pub id: i64,
    /// The masked message carrying the code.
    pub message_id: i64,
    /// The recipient, E.164.
    pub to: String,
    /// The message's status: `queued`.
    pub status: String,
    /// When the code stops verifying, RFC 3339 (UTC).
    pub expires_at: String,
    /// Wrong codes allowed before `too_many_attempts` (`otp.max_attempts`).
    pub max_attempts: u32,
}

/// `POST /v1/otp/{id}/verify`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    /// The code's id.
    pub id: i64,
    /// `verified`, `invalid`, `expired` or `too_many_attempts`.
    pub result: String,
    /// Wrong codes still allowed.
    pub attempts_left: u32,
}

/// An inbound message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InboxItem {
    /// The inbox id.
    pub id: i64,
    /// The sender as the network gave it (E.164 for an international number).
    pub from: String,
    /// Null when it could not be decoded.
    pub text: Option<String>,
    /// When it arrived, RFC 3339 (UTC).
    pub received_at: String,
    /// The SMSC's time stamp.
    pub sent_at: Option<String>,
    /// ICCID of the SIM it arrived on; null when unknown.
    pub sim: Option<String>,
    /// The device path of the modem it arrived on; null when unknown.
    pub modem: Option<String>,
    /// Parts the message has.
    pub parts: u32,
    /// Parts that arrived; fewer than `parts` when `complete` is false.
    pub parts_received: u32,
    /// Every part arrived (false after the reassembly timeout with parts missing).
    pub complete: bool,
}

/// `GET /v1/inbox`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InboxList {
    /// Newest first.
    pub items: Vec<InboxItem>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A SIM seen in a modem or configured (`pool.sims`); a configured one never seen has
/// only `iccid`, `configured` and `seen` (the rest null).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SimView {
    /// The SIM's ICCID, its id.
    pub iccid: String,
    /// Null until a modem read it.
    pub imsi: Option<String>,
    /// The network operator's name; null until a modem reported it.
    pub operator: Option<String>,
    /// The modem it was last seen in.
    pub modem: Option<String>,
    /// When a modem first reported it, RFC 3339 (UTC).
    pub first_seen: Option<String>,
    /// When it was last reported or last sent a part, RFC 3339 (UTC).
    pub last_seen: Option<String>,
    /// Parts the SMSC accepted from it.
    pub sent_parts: Option<i64>,
    /// Messages that failed or expired with it as their last SIM.
    pub failed: Option<i64>,
    /// Inbox messages that arrived on it.
    pub received: Option<i64>,
    /// Parts counted per quota window (restored across restarts).
    #[schema(value_type = Option<UsageView>)]
    pub usage: Option<Value>,
    /// Listed in `pool.sims`.
    pub configured: bool,
    /// A modem has reported it (else every field but `iccid` and `configured` is null).
    pub seen: bool,
}

/// A SIM's quota usage, as the pool persists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    /// The current UTC minute.
    pub minute: WindowCountView,
    /// The current UTC hour.
    pub hour: WindowCountView,
    /// The current UTC day.
    pub day: WindowCountView,
    /// The current UTC calendar month.
    pub month: WindowCountView,
    /// Last send start, unix milliseconds.
    pub last_send_unix_ms: Option<i64>,
}

/// Parts sent in one window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WindowCountView {
    /// Start of the window, unix seconds (UTC).
    pub start_unix: i64,
    /// Parts sent in it.
    pub count: u32,
}

/// `GET /v1/sims`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SimList {
    /// Every SIM seen or configured.
    pub items: Vec<SimView>,
}

/// A number on the opt-out list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SuppressionView {
    /// The listed number, E.164.
    pub number: String,
    /// When it was listed, RFC 3339 (UTC).
    pub created_at: String,
    /// `inbound` or `admin`.
    pub source: String,
    /// The inbound keyword that listed it (`STOP`, …); null when an admin did.
    pub keyword: Option<String>,
    /// An admin's note; null for none.
    pub note: Option<String>,
}

/// `GET /v1/suppressions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SuppressionList {
    /// Listed numbers.
    pub items: Vec<SuppressionView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `PUT`/`DELETE /v1/suppressions/{number}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SuppressResult {
    /// The number, E.164.
    pub number: String,
    /// Whether it is now listed.
    pub suppressed: bool,
}

/// A modem's state: `{"state": "ready" | "degraded" | …, "reason"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModemStateView {
    /// `starting`, `ready`, `degraded`, `sim_locked`, `recovering`, `offline`,
    /// `quarantined`, `stopped`.
    pub state: String,
    /// Why it is in that state, for people; null when there is none.
    pub reason: Option<String>,
}

impl From<&crate::modem::ModemState> for ModemStateView {
    fn from(s: &crate::modem::ModemState) -> Self {
        use crate::modem::ModemState as S;
        let (state, reason) = match s {
            S::Starting => ("starting", None),
            S::Ready => ("ready", None),
            S::Degraded(r) => ("degraded", Some(r)),
            S::SimLocked(r) => ("sim_locked", Some(r)),
            S::Recovering(r) => ("recovering", Some(r)),
            S::Offline(r) => ("offline", Some(r)),
            S::Quarantined(r) => ("quarantined", Some(r)),
            S::Stopped => ("stopped", None),
        };
        ModemStateView {
            state: state.into(),
            reason: reason.cloned(),
        }
    }
}

/// Signal quality (`AT+CSQ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignalView {
    /// dBm, null when the modem does not know.
    pub rssi_dbm: Option<i32>,
    /// Bit error rate class 0–7.
    pub ber: Option<u8>,
    /// 0–5.
    pub bars: u8,
}

impl From<crate::modem::info::Signal> for SignalView {
    fn from(s: crate::modem::info::Signal) -> Self {
        SignalView {
            rssi_dbm: s.rssi_dbm,
            ber: s.ber,
            bars: s.bars,
        }
    }
}

/// Message storage (`AT+CPMS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StorageView {
    /// Messages stored on the SIM or modem.
    pub used: u32,
    /// Room for messages.
    pub total: u32,
}

impl From<crate::modem::info::Storage> for StorageView {
    fn from(s: crate::modem::info::Storage) -> Self {
        StorageView {
            used: s.used,
            total: s.total,
        }
    }
}

/// A modem as `GET /v1/modems` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModemView {
    /// A stable slug that needs no URL escaping ([`modem_slug`] of `port`): use it in
    /// `/v1/modems/{id}/…`.
    pub id: String,
    /// The device path (or `tcp://` address) as configured: the id in earlier
    /// releases (still accepted as `{id}`), and the `modem` of messages, inbox items and
    /// webhook events.
    pub port: String,
    /// The device's other AT ports (never driven).
    pub spare_ports: Vec<String>,
    /// Incoming calls hung up.
    pub calls_rejected: u64,
    /// In rotation (`POST /v1/modems/{id}/enable|disable`).
    pub enabled: bool,
    /// What the driver is doing with it.
    pub state: ModemStateView,
    /// As the modem reports it (`AT+CGMI`); null until known.
    pub manufacturer: Option<String>,
    /// As the modem reports it (`AT+CGMM`); null until known.
    pub model: Option<String>,
    /// Null until known.
    pub imei: Option<String>,
    /// The SIM's ICCID; null without a SIM or until read.
    pub iccid: Option<String>,
    /// The SIM's IMSI; null until read.
    pub imsi: Option<String>,
    /// The network operator's name; null until registered.
    pub operator: Option<String>,
    /// Null until measured.
    pub signal: Option<SignalView>,
    /// `home`, `roaming`, `searching`, `denied`, `unregistered`; null until known.
    pub registration: Option<String>,
    /// Null until read.
    pub storage: Option<StorageView>,
}

impl ModemView {
    /// The element of the earlier bare array: `id` is the device path, no `port`.
    pub fn legacy(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.insert("id".into(), Value::String(self.port.clone()));
            o.remove("port");
        }
        v
    }
}

/// The slug of a modem's port: lowercase `[a-z0-9-]`, stable for the port. A
/// `/dev/gsmgw/<name>` link gives `<name>`; another `/dev/…` path its rest
/// (`/dev/ttyUSB0` → `ttyusb0`, `/dev/serial/by-id/usb-X-if00` →
/// `serial-by-id-usb-x-if00`); anything else all of it (`tcp://10.0.0.5:7000` →
/// `tcp-10-0-0-5-7000`).
pub fn modem_slug(port: &str) -> String {
    let rest = port
        .strip_prefix("/dev/gsmgw/")
        .or_else(|| port.strip_prefix("/dev/"))
        .unwrap_or(port);
    let mut out = String::with_capacity(rest.len());
    for c in rest.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("modem");
    }
    out
}

/// `GET /v1/modems`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModemList {
    /// Every modem the daemon knows, one per driven port.
    pub items: Vec<ModemView>,
}

/// `POST /v1/modems/{id}/enable|disable|reset`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModemActionResult {
    /// The modem's slug.
    pub id: String,
    /// Its device path.
    pub port: String,
    /// After `enable`/`disable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// After `reset`: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<bool>,
}

/// The network's answer to a USSD code, as a modem reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UssdView {
    /// The SIM asked.
    pub iccid: String,
    /// The device path of the modem holding the SIM.
    pub modem: String,
    /// 0 done, 1 the network wants an answer, 2 terminated by the network, …
    pub status: u8,
    /// The answer's text; null when the network sent none.
    pub text: Option<String>,
    /// Its data coding scheme.
    pub dcs: Option<u8>,
}

/// `GET /readyz` (200 and 503 alike).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// The store answered a read, its writer is alive and its last commit succeeded.
    pub store: bool,
    /// Why the store is not ready, or null.
    pub store_error: Option<String>,
    /// Modems in the `ready` state (at least one for 200).
    pub modems_ready: usize,
}

/// The document's `info`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenApiInfo {
    /// `gsmgw`.
    pub title: String,
    /// The gsmgw release.
    pub version: String,
    /// What the API is; may be absent.
    #[serde(default)]
    pub description: Option<String>,
}

/// `GET /openapi.json`: an OpenAPI 3.1 document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenApiDocument {
    /// `3.1.0`.
    pub openapi: String,
    /// Title, version and description.
    pub info: OpenApiInfo,
    /// Path → method → operation.
    pub paths: HashMap<String, HashMap<String, Value>>,
    /// Schemas and security schemes, by name.
    #[serde(default)]
    pub components: Option<HashMap<String, Value>>,
}
