//! Bearer-token authentication, scopes and per-token rate limits. Tokens are known only
//! by their SHA-256 (the config holds hashes), a presented token is hashed and compared
//! with every known hash in constant time, and each route names the scope it needs.

use super::ApiError;
use crate::config::RateLimitConfig;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// What a token may do. `Admin` may do everything; `Metrics` reads `/metrics` and
/// nothing else (no message text, no numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Send messages and security codes, estimate, verify codes.
    Send,
    /// Read messages, the inbox, templates, modems and SIMs.
    Read,
    /// Everything, including modem actions, USSD and the opt-out list.
    Admin,
    /// `/metrics` only.
    Metrics,
}

impl Scope {
    /// The scope named `send`, `read`, `admin` or `metrics`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "send" => Scope::Send,
            "read" => Scope::Read,
            "admin" => Scope::Admin,
            "metrics" => Scope::Metrics,
            _ => return None,
        })
    }

    /// Its name, as the config and the 403 message spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Read => "read",
            Scope::Admin => "admin",
            Scope::Metrics => "metrics",
        }
    }
}

/// A token the API accepts.
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// The token's name (`[[http.tokens]] name`): the key of its rate limit, and what logs show instead of the secret.
    pub name: String,
    /// SHA-256 of the secret; the secret itself is never kept.
    pub sha256: [u8; 32],
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Its own budget; `None` takes `http.rate_limit`.
    pub rate_limit: Option<RateLimitConfig>,
}

impl ApiToken {
    /// A plain token (`http.token`, `GSMGW_API_TOKEN`): every scope, for compatibility.
    pub fn plain(name: &str, secret: &str) -> ApiToken {
        ApiToken {
            name: name.to_owned(),
            sha256: sha256(secret.as_bytes()),
            scopes: vec![Scope::Send, Scope::Read, Scope::Admin],
            rate_limit: None,
        }
    }

    /// From the config (`[[http.tokens]]`, already validated).
    pub fn from_config(t: &crate::config::TokenConfig) -> Option<ApiToken> {
        let mut sha = [0u8; 32];
        let bytes = crate::pdu::hex::decode(&t.sha256).ok()?;
        if bytes.len() != 32 {
            return None;
        }
        sha.copy_from_slice(&bytes);
        Some(ApiToken {
            name: t.name.clone(),
            sha256: sha,
            scopes: t.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            rate_limit: t.rate_limit,
        })
    }

    /// Whether it may use a route that needs `scope` (admin may use any).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// Whether the token can do nothing but read `/metrics`.
    pub fn metrics_only(&self) -> bool {
        self.scopes.iter().all(|s| *s == Scope::Metrics)
    }
}

/// SHA-256 of `b`: how tokens are known and compared.
pub fn sha256(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(b));
    out
}

/// Constant-time comparison, so response timing does not leak how much of a secret
/// matched.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token whose hash matches; every hash is compared (no early exit).
pub(crate) fn authenticate<'a>(tokens: &'a [ApiToken], presented: &str) -> Option<&'a ApiToken> {
    let h = sha256(presented.as_bytes());
    let mut found = None;
    for t in tokens {
        if ct_eq(&h, &t.sha256) && found.is_none() {
            found = Some(t);
        }
    }
    found
}

/// Per-token token buckets.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one request from `name`'s bucket, or says how many seconds until one is
    /// there.
    pub fn check(&self, name: &str, limit: RateLimitConfig) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut b) = self.buckets.lock() else {
            return Ok(());
        };
        let burst = f64::from(limit.burst);
        let (tokens, at) = b.entry(name.to_owned()).or_insert((burst, now));
        let refilled =
            (*tokens + now.duration_since(*at).as_secs_f64() * limit.per_second).min(burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(((1.0 - refilled) / limit.per_second).ceil() as u64)
        }
    }
}

/// 429 for a token over its limit.
pub(crate) fn rate_limited(retry_after: u64) -> ApiError {
    ApiError::too_many(
        "rate_limited",
        format!("too many requests for this token; retry in {retry_after} s"),
        retry_after,
    )
}
