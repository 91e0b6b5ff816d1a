//! The API's configuration: bearer tokens with scopes (stored as SHA-256 hashes), rate
//! limits, number normalisation (`[http]`), one-time codes (`[otp]`) and opt-out
//! keywords (`[optout]`). Documented in docs/config.md.

use serde::Deserialize;

/// One API token: only its SHA-256 is kept, so the config file gives no token away.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Shown in logs and scoping idempotency keys and rate limits.
    pub name: String,
    /// Hex SHA-256 of the token (`gsmgw token new` prints it).
    pub sha256: String,
    /// `send`, `read`, `admin` (admin may do everything).
    pub scopes: Vec<String>,
    /// Overrides `http.rate_limit` for this token.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second the bucket refills at (default 1000); must be above 0.
    pub per_second: f64,
    /// Requests allowed at once, the bucket's size (default 2000); at least 1.
    pub burst: u32,
}

/// The default only stops a runaway client: a bulk sender or a benchmark posting as
/// fast as it can stays under it. Tighten it per token for untrusted apps.
impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_second: 1000.0,
            burst: 2000,
        }
    }
}

/// `POST /v1/otp` defaults and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtpConfig {
    /// Digits when the request gives no `length` (4–10).
    pub length: u32,
    /// Lifetime when the request gives no `ttl`.
    pub ttl_secs: u64,
    /// Wrong guesses before a code is dead (`too_many_attempts`).
    pub max_attempts: u32,
    /// A new code to the same number is refused (429) within this many seconds.
    pub cooldown_secs: u64,
    /// The template when the request names none; it must use `{{code}}`.
    pub template: String,
}

impl Default for OtpConfig {
    fn default() -> Self {
        OtpConfig {
            length: 6,
            ttl_secs: 300,
            max_attempts: 5,
            cooldown_secs: 30,
            template: "security_code".into(),
        }
    }
}

/// Inbound keywords that put a sender on the suppression list or take them off.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptOutConfig {
    /// Act on the keywords at all (default true); off, inbound messages never change
    /// the suppression list.
    pub enabled: bool,
    /// Whole-message keywords, any case.
    pub stop_keywords: Vec<String>,
    /// Whole-message keywords, any case, that take the sender off the suppression
    /// list again (default `START`, `UNSTOP`, `SUBSCRIBE`).
    pub start_keywords: Vec<String>,
    /// Security codes (`/v1/otp`) still go to suppressed numbers: the user asked for
    /// them.
    pub exempt_otp: bool,
}

impl Default for OptOutConfig {
    fn default() -> Self {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        OptOutConfig {
            enabled: true,
            stop_keywords: v(&[
                "STOP",
                "STOPALL",
                "UNSUBSCRIBE",
                "CANCEL",
                "END",
                "QUIT",
                "OPTOUT",
            ]),
            start_keywords: v(&["START", "UNSTOP", "SUBSCRIBE"]),
            exempt_otp: true,
        }
    }
}

/// API token scopes: `send` (and act on one's own messages and codes), `read`, `admin`
/// (everything), `metrics` (`/metrics` only, which holds no message text).
pub const SCOPES: &[&str] = &["send", "read", "admin", "metrics"];

/// Checks the API's keys; returns (key, message) for the first problem.
pub(crate) fn validate(http: &super::HttpConfig, otp: &OtpConfig) -> Result<(), (String, String)> {
    let bad = |k: String, m: &str| Err((k, m.to_string()));
    for (i, t) in http.tokens.iter().enumerate() {
        let key = |f: &str| format!("http.tokens[{i}].{f}");
        if t.name.trim().is_empty() {
            return bad(key("name"), "must not be empty");
        }
        if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(
                key("sha256"),
                "must be 64 hex digits (gsmgw token new prints it)",
            );
        }
        if t.scopes.is_empty() {
            return bad(
                key("scopes"),
                "give at least one of send, read, admin, metrics",
            );
        }
        if let Some(s) = t.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
            return Err((
                key("scopes"),
                format!("unknown scope {s:?} (send, read, admin, metrics)"),
            ));
        }
        if let Some(r) = &t.rate_limit {
            check_rate(r).map_err(|m| (key("rate_limit"), m))?;
        }
    }
    check_rate(&http.rate_limit).map_err(|m| ("http.rate_limit".to_string(), m))?;
    if let Some(r) = &http.default_region
        && r.parse::<phonenumber::country::Id>().is_err()
    {
        return Err((
            "http.default_region".into(),
            format!("{r:?} is not a region code (ISO 3166 alpha-2, e.g. \"DE\")"),
        ));
    }
    if !(4..=10).contains(&otp.length) {
        return bad("otp.length".into(), "must be 4–10");
    }
    if otp.max_attempts == 0 {
        return bad("otp.max_attempts".into(), "must be at least 1");
    }
    if otp.ttl_secs < 30 {
        return bad("otp.ttl_secs".into(), "must be at least 30");
    }
    Ok(())
}

fn check_rate(r: &RateLimitConfig) -> Result<(), String> {
    if !(r.per_second.is_finite() && r.per_second > 0.0) || r.burst == 0 {
        return Err("per_second must be above 0 and burst at least 1".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn token_lines_parse_and_errors_name_the_key() {
        let ok = r#"
[http]
default_region = "DE"
[[http.tokens]]
name = "shop"
sha256 = "143c40662a9d832ff8ad626cd9803c6238360c2e47e2f032279defe2391ad588"
scopes = ["send", "read"]
[otp]
length = 8
[optout]
stop_keywords = ["HALT"]
"#;
        let c = Config::parse(ok, Path::new("g.toml")).unwrap();
        assert_eq!(c.http.tokens[0].scopes, ["send", "read"]);
        assert_eq!(c.otp.length, 8);
        let bad = ok.replace("\"read\"", "\"write\"");
        let e = Config::parse(&bad, Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.tokens[0].scopes"), "{e}");
        let bad = ok.replace("\"DE\"", "\"Germany\"");
        let e = Config::parse(&bad, Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.default_region"), "{e}");
        let bad = ok.replace("length = 8", "length = 12");
        let e = Config::parse(&bad, Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("otp.length"), "{e}");
    }
}
