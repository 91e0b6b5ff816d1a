//! The configuration file (TOML, default `/etc/gsmgw/gsmgw.toml`): its schema, defaults
//! and validation. Errors name the file, the line and the key, so an operator can fix
//! a typo without reading source code. Unknown keys are errors, not silently ignored.

mod api;
mod retention;
mod timeouts;

pub use api::{OptOutConfig, OtpConfig, RateLimitConfig, SCOPES, TokenConfig};
pub use retention::RetentionConfig;
pub use timeouts::Timeouts;

use crate::pool::PoolConfig;
use crate::store::InFlightPolicy;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use timeouts::{ms, secs};

/// Where the daemon looks without `--config`.
pub const DEFAULT_PATH: &str = "/etc/gsmgw/gsmgw.toml";

/// Why a configuration file was not loaded; every variant names the file.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        message: String,
    },
    /// `path:line:column: message` — the format editors and CI logs link to.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the TOML error.
        line: usize,
        /// 1-based column (in characters) of the TOML error.
        column: usize,
        /// The TOML parser's message (syntax, wrong type, unknown key).
        message: String,
    },
    /// The file parsed but a value is out of range or inconsistent.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted path of the offending key (`modems.port[0].baud`).
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

/// The whole file. Every section is optional; defaults make a working gateway on
/// loopback.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[http]`: the API's listener, tokens and request limits.
    pub http: HttpConfig,
    /// `[otp]`: `POST /v1/otp` defaults and limits.
    pub otp: OtpConfig,
    /// `[optout]`: STOP/START keywords in inbound messages.
    pub optout: OptOutConfig,
    /// `[store]`: the SQLite database.
    pub store: StoreConfig,
    /// `[modems]`: which ports are modems, and how they are driven.
    pub modems: ModemsConfig,
    /// `[dispatch]`: retries, status-report matching and multipart limits.
    pub dispatch: DispatchConfig,
    /// `[pool]`: SIM selection, quotas and routes.
    pub pool: PoolConfig,
    /// `[log]`: level, bodies, journald.
    pub log: LogConfig,
    /// `[webhooks]`: where events are posted and how they are retried.
    pub webhooks: WebhooksConfig,
    /// How long rows are kept before they are pruned.
    pub retention: RetentionConfig,
}

/// `[http]`: the HTTP API's listener, tokens, number rules and request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Loopback by default: the API is for local apps; put TLS in a reverse proxy.
    pub listen: SocketAddr,
    /// A bearer token accepted for every scope (also `GSMGW_API_TOKEN`).
    pub token: Option<String>,
    /// Scoped tokens, kept as SHA-256 hashes (`gsmgw token new`).
    pub tokens: Vec<TokenConfig>,
    /// Region (ISO 3166, `"DE"`) for national numbers such as `0170 1234567`; without
    /// it only international numbers (`+49…`) are accepted.
    pub default_region: Option<String>,
    /// Refuse numbers the metadata says cannot receive SMS (fixed-line only, toll-free,
    /// premium, shared-cost, short codes…). Where the metadata cannot tell fixed from
    /// mobile (e.g. the US) the number is accepted.
    pub require_mobile: bool,
    /// How far in the past `send_at` may be (clock skew) before 400 `in_the_past`.
    pub send_at_tolerance_secs: u64,
    /// Per token.
    pub rate_limit: RateLimitConfig,
    /// A connection must send a request's headers within this many seconds, and an
    /// idle keep-alive connection is closed after it (slow or idle clients cannot pile
    /// up).
    pub header_timeout_secs: u64,
    /// Most connections open at once; more are closed as they arrive (the unit's
    /// `LimitNOFILE` is far above this, so the daemon never runs out of descriptors).
    pub max_connections: usize,
    /// Most undelivered `callback_url` events one token may have pending; more
    /// messages with a `callback_url` get 429 `too_many_pending_callbacks`.
    pub max_pending_callbacks: u64,
    /// How far ahead `send_at`, `expires_at` and `appointment_at` may be, and how long
    /// `ttl`, `validity` and `remind_before` may last, in days.
    pub max_ahead_days: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            tokens: Vec::new(),
            default_region: None,
            require_mobile: true,
            send_at_tolerance_secs: 60,
            rate_limit: RateLimitConfig::default(),
            header_timeout_secs: 10,
            max_connections: 1024,
            max_pending_callbacks: 1000,
            max_ahead_days: crate::api::time::DEFAULT_MAX_AHEAD_DAYS,
        }
    }
}

/// `[store]`: the SQLite database that holds the queue, reports, inbox and events.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The database file, created if absent (default `/var/lib/gsmgw/gsmgw.db`).
    pub path: PathBuf,
    /// What to do with a part whose `AT+CMGS` was in flight at a crash.
    pub in_flight: InFlightPolicy,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("/var/lib/gsmgw/gsmgw.db"),
            in_flight: InFlightPolicy::AtLeastOnce,
        }
    }
}

/// `[modems]`: which ports are modems, their SIM PINs and SMSCs, serial settings and
/// the driver's timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModemsConfig {
    /// Device paths, globs (`/dev/gsmgw/*`) or `tcp://host:port`.
    pub ports: Vec<String>,
    /// Open serial ports exclusively (TIOCEXCL + flock).
    pub exclusive: bool,
    /// Timeout of ordinary AT commands.
    pub command_timeout_ms: u64,
    /// Timeout of `AT+CMGS` (networks can take tens of seconds).
    pub send_timeout_ms: u64,
    /// SIM PINs by ICCID. A PIN the SIM rejects is never tried again automatically.
    pub pins: BTreeMap<String, String>,
    /// Seconds between health polls (`+CSQ`, `+CREG`, `+COPS`, storage).
    pub health_interval_secs: u64,
    /// A modem whose port stays gone this long is removed (a replug within it simply
    /// reopens the same modem).
    pub remove_after_secs: u64,
    /// Safety-net rescan of the port globs (inotify catches changes at once).
    pub rescan_secs: u64,
    /// Baud rate of serial ports (USB modems ignore it; UARTs such as a Raspberry Pi's
    /// `serial0` do not).
    pub baud: u32,
    /// SMSC (service centre) numbers by ICCID, or `"*"` for every SIM: set on the
    /// modem when its SIM has none or lost it.
    pub smsc: BTreeMap<String, String>,
    /// Per-port serial settings (`[[modems.port]]`), first match wins.
    pub port: Vec<PortConfig>,
}

/// Serial settings of the ports matching `path` (a path or a glob).
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PortConfig {
    /// A device path or glob (`/dev/serial0`, `/dev/ttyUSB*`); required.
    pub path: String,
    /// Overrides `modems.baud`.
    pub baud: Option<u32>,
    /// `"none"` (default) or `"rtscts"`: hardware flow control, for UART boards wired
    /// with RTS/CTS.
    pub flow_control: FlowControl,
    /// Raise DTR when opening (default true: many modems stay silent without it; some
    /// boards wire DTR to sleep or reset and want it low).
    pub dtr: Option<bool>,
    /// Extra AT commands run after bring-up, in order (e.g. `"AT+CSCLK=0"` so a SIM800
    /// never sleeps).
    pub init: Vec<String>,
}

/// Serial flow control.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    /// `"none"` (default): no flow control.
    #[default]
    None,
    /// `"rtscts"`: hardware flow control on the RTS/CTS lines.
    Rtscts,
}

impl ModemsConfig {
    /// The `[[modems.port]]` entry for a port: the first whose path or glob matches.
    pub fn port_config(&self, port: &str) -> Option<&PortConfig> {
        self.port
            .iter()
            .find(|p| p.path == port || glob::Pattern::new(&p.path).is_ok_and(|g| g.matches(port)))
    }
}

/// Baud rates a serial port can be set to here.
const BAUDS: &[u32] = &[
    1200, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 921_600,
];

/// An SMSC number as `AT+CSCA` takes it: `+` and 3–20 digits, or 3–20 digits.
fn valid_smsc(s: &str) -> bool {
    let d = s.strip_prefix('+').unwrap_or(s);
    (3..=20).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())
}

/// An extra init command: one AT command line without line ends or control bytes.
fn valid_init(s: &str) -> bool {
    s.len() <= 200
        && s.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("AT"))
        && !s.bytes().any(|b| b.is_ascii_control())
}

impl Default for ModemsConfig {
    fn default() -> Self {
        let t = Timeouts::default();
        ModemsConfig {
            ports: vec!["/dev/gsmgw/*".into()],
            exclusive: true,
            command_timeout_ms: ms(t.command),
            send_timeout_ms: ms(t.send),
            pins: BTreeMap::new(),
            health_interval_secs: secs(t.health_interval),
            remove_after_secs: secs(t.remove_after),
            rescan_secs: secs(t.rescan),
            baud: 115_200,
            smsc: BTreeMap::new(),
            port: Vec::new(),
        }
    }
}

/// `[dispatch]`: retries of outbound messages, status-report matching and multipart
/// limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchConfig {
    /// Attempts before a message fails on temporary errors.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt up to `retry_max_ms`.
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds (default 300 000, 5 min); at least
    /// `retry_base_ms`.
    pub retry_max_ms: u64,
    /// How long after sending a status report may still match a part.
    pub report_window_secs: u64,
    /// Incomplete inbound multipart messages are delivered, marked incomplete, after
    /// this long.
    pub reassembly_timeout_secs: u64,
    /// Most parts one message may have.
    pub max_parts: u32,
    /// Queued messages the dispatcher keeps in memory; the rest are paged in from the
    /// store, so memory stays flat however long the queue.
    pub queue_window: usize,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        let t = Timeouts::default();
        DispatchConfig {
            max_attempts: 5,
            retry_base_ms: ms(t.retry_base),
            retry_max_ms: ms(t.retry_max),
            report_window_secs: secs(t.report_window),
            reassembly_timeout_secs: secs(t.reassembly),
            max_parts: 10,
            queue_window: 10_000,
        }
    }
}

/// `[log]`: what the daemon logs and where.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter; `RUST_LOG` wins.
    pub level: String,
    /// Message bodies and codes appear in logs only when this is on.
    pub log_bodies: bool,
    /// Log to the systemd journal with structured fields: `true`, `false`, or unset
    /// (default) for "when started by systemd" (`JOURNAL_STREAM` set).
    pub journald: Option<bool>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            log_bodies: false,
            journald: None,
        }
    }
}

/// Where events are posted (docs/config.md, `[webhooks]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Endpoints that get every event (or only the listed kinds).
    pub urls: Vec<WebhookUrl>,
    /// HMAC-SHA256 key for `X-Gsmgw-Signature` (`GSMGW_WEBHOOK_SECRET` wins). Without
    /// one, events go out unsigned (and the daemon warns).
    pub secret: Option<String>,
    /// One attempt's deadline (connect, send, response headers).
    pub timeout_ms: u64,
    /// How long connecting may take within an attempt (an unreachable host fails fast).
    pub connect_timeout_secs: u64,
    /// First retry delay; doubles per failed attempt up to `retry_max_ms`.
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds (default 3 600 000, 1 h).
    pub retry_max_ms: u64,
    /// Attempts before an event is given up (kept in the store with its last error).
    pub max_attempts: u32,
    /// Deliveries in flight at once (across all URLs).
    pub concurrency: usize,
    /// Deliveries in flight at once to one destination (scheme, host and port).
    pub destination_concurrency: usize,
    /// Deliveries in flight at once to `callback_url`s, all together; the rest of
    /// `concurrency` stays for `urls`. Unset: half of `concurrency`, rounded up.
    pub callback_concurrency: Option<usize>,
    /// Hosts a message's `callback_url` may point to (`hooks.example.com`,
    /// `10.0.0.5`, `*.internal.example`). Empty: any public host, never a loopback,
    /// private or link-local address. Listed hosts may be private.
    pub callback_hosts: Vec<String>,
    /// HMAC-SHA256 key for events to `callback_url`s. Unset: derived from `secret`
    /// (`crate::webhook::derive_callback_secret`), so the operator's secret never signs
    /// a request to an app-chosen URL.
    pub callback_secret: Option<String>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            urls: Vec::new(),
            secret: None,
            timeout_ms: 5_000,
            connect_timeout_secs: 3,
            retry_base_ms: 1_000,
            retry_max_ms: 3_600_000,
            max_attempts: 20,
            concurrency: 4,
            destination_concurrency: 2,
            callback_concurrency: None,
            callback_hosts: Vec::new(),
            callback_secret: None,
        }
    }
}

impl WebhooksConfig {
    /// `callback_concurrency`, or half of `concurrency` (rounded up), within
    /// 1..=`concurrency`.
    pub fn effective_callback_concurrency(&self) -> usize {
        let total = self.concurrency.max(1);
        self.callback_concurrency
            .unwrap_or_else(|| total.div_ceil(2))
            .clamp(1, total)
    }
}

/// A webhook endpoint: a plain URL string (every event) or `{ url, events }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum WebhookUrl {
    /// `"https://…"`: every event goes to this URL.
    All(String),
    /// `{ url = "https://…", events = [...] }`: only the listed kinds.
    Filtered {
        /// The endpoint (`http://` or `https://`).
        url: String,
        /// Event kinds (`message.sent`, …); `message.*` for every message event.
        events: Vec<String>,
    },
}

impl WebhookUrl {
    /// The endpoint, whichever form it was given in.
    pub fn url(&self) -> &str {
        match self {
            WebhookUrl::All(u) | WebhookUrl::Filtered { url: u, .. } => u,
        }
    }

    /// `None`: every kind.
    pub fn events(&self) -> Option<&[String]> {
        match self {
            WebhookUrl::All(_) => None,
            WebhookUrl::Filtered { events, .. } => Some(events),
        }
    }
}

/// The event kinds a `[webhooks] urls` filter may name.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "message.sent",
    "message.delivered",
    "message.failed",
    "message.expired",
    "inbound.received",
    "modem.state",
    "message.*",
];

impl Config {
    /// The timeouts this file sets, the rest at their defaults: what the daemon hands
    /// the modem driver and the dispatcher.
    pub fn timeouts(&self) -> Timeouts {
        let (m, d) = (&self.modems, &self.dispatch);
        Timeouts {
            command: Duration::from_millis(m.command_timeout_ms),
            send: Duration::from_millis(m.send_timeout_ms),
            health_interval: Duration::from_secs(m.health_interval_secs),
            remove_after: Duration::from_secs(m.remove_after_secs),
            rescan: Duration::from_secs(m.rescan_secs),
            retry_base: Duration::from_millis(d.retry_base_ms),
            retry_max: Duration::from_millis(d.retry_max_ms),
            report_window: Duration::from_secs(d.report_window_secs),
            reassembly: Duration::from_secs(d.reassembly_timeout_secs),
            ..Timeouts::default()
        }
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        if self.modems.command_timeout_ms == 0 {
            return Err(bad("modems.command_timeout_ms", "must be above 0".into()));
        }
        if self.modems.send_timeout_ms < self.modems.command_timeout_ms {
            return Err(bad(
                "modems.send_timeout_ms",
                "must be at least modems.command_timeout_ms".into(),
            ));
        }
        if self.dispatch.max_attempts == 0 {
            return Err(bad("dispatch.max_attempts", "must be at least 1".into()));
        }
        if !(1..=255).contains(&self.dispatch.max_parts) {
            return Err(bad("dispatch.max_parts", "must be 1–255".into()));
        }
        if self.dispatch.retry_max_ms < self.dispatch.retry_base_ms {
            return Err(bad(
                "dispatch.retry_max_ms",
                "must be at least dispatch.retry_base_ms".into(),
            ));
        }
        for (iccid, pin) in &self.modems.pins {
            if !(4..=8).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(
                    &format!("modems.pins.{iccid}"),
                    "a PIN is 4–8 digits".into(),
                ));
            }
        }
        if !BAUDS.contains(&self.modems.baud) {
            return Err(bad(
                "modems.baud",
                format!("{} is not a serial baud rate ({BAUDS:?})", self.modems.baud),
            ));
        }
        for (iccid, n) in &self.modems.smsc {
            if !valid_smsc(n) {
                return Err(bad(
                    &format!("modems.smsc.{iccid}"),
                    "an SMSC is +<digits> (e.g. \"+491722270333\")".into(),
                ));
            }
        }
        for (i, p) in self.modems.port.iter().enumerate() {
            let key = |k: &str| format!("modems.port[{i}].{k}");
            if p.path.is_empty() || glob::Pattern::new(&p.path).is_err() {
                return Err(bad(
                    &key("path"),
                    "a device path or glob is required".into(),
                ));
            }
            if let Some(b) = p.baud
                && !BAUDS.contains(&b)
            {
                return Err(bad(
                    &key("baud"),
                    format!("{b} is not a serial baud rate ({BAUDS:?})"),
                ));
            }
            for (j, c) in p.init.iter().enumerate() {
                if !valid_init(c) {
                    return Err(bad(
                        &format!("modems.port[{i}].init[{j}]"),
                        "one AT command (starting AT, no line ends)".into(),
                    ));
                }
            }
        }
        self.pool
            .validate()
            .map_err(|e| bad("pool", e.to_string()))?;
        api::validate(&self.http, &self.otp).map_err(|(k, m)| bad(&k, m))?;
        let w = &self.webhooks;
        for (i, u) in w.urls.iter().enumerate() {
            let url = u.url();
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(str::is_empty) {
                return Err(bad(
                    &format!("webhooks.urls[{i}]"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
            for e in u.events().unwrap_or_default() {
                if !WEBHOOK_EVENTS.contains(&e.as_str()) {
                    return Err(bad(
                        &format!("webhooks.urls[{i}].events"),
                        format!("unknown event {e:?} (known: {})", WEBHOOK_EVENTS.join(", ")),
                    ));
                }
            }
        }
        if w.timeout_ms == 0 {
            return Err(bad("webhooks.timeout_ms", "must be above 0".into()));
        }
        if w.max_attempts == 0 {
            return Err(bad("webhooks.max_attempts", "must be at least 1".into()));
        }
        if w.concurrency == 0 {
            return Err(bad("webhooks.concurrency", "must be at least 1".into()));
        }
        if w.connect_timeout_secs == 0 {
            return Err(bad(
                "webhooks.connect_timeout_secs",
                "must be above 0".into(),
            ));
        }
        if w.destination_concurrency == 0 {
            return Err(bad(
                "webhooks.destination_concurrency",
                "must be at least 1".into(),
            ));
        }
        if let Some(n) = w.callback_concurrency
            && !(1..=w.concurrency).contains(&n)
        {
            return Err(bad(
                "webhooks.callback_concurrency",
                "must be at least 1 and at most webhooks.concurrency".into(),
            ));
        }
        crate::webhook::CallbackPolicy::new(&w.callback_hosts).map_err(|e| {
            bad(
                &format!("webhooks.callback_hosts[{}]", e.index),
                e.to_string(),
            )
        })?;
        if w.callback_secret.as_deref() == Some("") {
            return Err(bad(
                "webhooks.callback_secret",
                "must not be empty (leave it out to derive it from webhooks.secret)".into(),
            ));
        }
        if w.retry_max_ms < w.retry_base_ms {
            return Err(bad(
                "webhooks.retry_max_ms",
                "must be at least webhooks.retry_base_ms".into(),
            ));
        }
        Ok(())
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("/etc/gsmgw/gsmgw.toml"))
    }

    #[test]
    fn defaults_and_the_documented_example() {
        let c = parse("").unwrap();
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        let c = parse(
            r#"
[http]
listen = "127.0.0.1:8080"
[store]
path = "/var/lib/gsmgw/gsmgw.db"
[modems]
ports = ["/dev/gsmgw/*"]
[modems.pins]
"8949020000000000001" = "1234"
"#,
        )
        .unwrap();
        assert_eq!(c.modems.ports, vec!["/dev/gsmgw/*"]);
        assert_eq!(c.modems.pins.len(), 1);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse("[http]\nlisten = \"127.0.0.1:8080\"\n\n[modems]\nportz = []\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("/etc/gsmgw/gsmgw.toml:5:"), "{s}");
        assert!(s.contains("portz"), "{s}");
        let e = parse("[http]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/gsmgw/gsmgw.toml:2:"), "{e}");
        let c = parse(
            "[modems]\nbaud = 9600\nsmsc = { \"*\" = \"+491722270333\" }\n\n[[modems.port]]\npath = \"/dev/serial0\"\nbaud = 57600\nflow_control = \"rtscts\"\ndtr = false\ninit = [\"AT+CSCLK=0\"]\n",
        )
        .unwrap();
        assert_eq!(c.modems.baud, 9600);
        let p = c.modems.port_config("/dev/serial0").unwrap();
        assert_eq!(
            (p.baud, p.flow_control, p.dtr),
            (Some(57600), FlowControl::Rtscts, Some(false))
        );
        assert!(c.modems.port_config("/dev/ttyUSB0").is_none());
        for (text, key) in [
            ("[modems]\nbaud = 1234\n", "modems.baud"),
            ("[modems.smsc]\n\"*\" = \"call me\"\n", "modems.smsc.*"),
            (
                "[[modems.port]]\npath = \"/dev/x\"\nbaud = 7\n",
                "modems.port[0].baud",
            ),
            (
                "[[modems.port]]\npath = \"/dev/x\"\ninit = [\"AT+X\\r\\nATZ\"]\n",
                "modems.port[0].init[0]",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        let e = parse("[modems.pins]\n\"894900\" = \"12\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("modems.pins.894900"), "{e}");
        let e = parse("[dispatch]\nmax_parts = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dispatch.max_parts"), "{e}");
    }

    #[test]
    fn webhooks_section() {
        let c = parse(
            r#"
[webhooks]
urls = ["http://127.0.0.1:9000/hook", { url = "http://127.0.0.1:9001/in", events = ["inbound.received"] }]
secret = "k"
timeout_ms = 2000
"#,
        )
        .unwrap();
        assert_eq!(c.webhooks.urls.len(), 2);
        assert_eq!(c.webhooks.urls[0].events(), None);
        assert_eq!(c.webhooks.urls[1].url(), "http://127.0.0.1:9001/in");
        assert_eq!(c.webhooks.timeout_ms, 2000);
        assert_eq!(c.webhooks.max_attempts, 20);
        let e = parse("[webhooks]\nurls = [{ url = \"http://x/\", events = [\"message.sen\"] }]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("webhooks.urls[0].events"), "{e}");
        let e = parse("[webhooks]\nurls = [\"ftp://x/\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("webhooks.urls[0]"), "{e}");
    }

    #[test]
    fn webhooks_callback_and_delivery_keys() {
        let c = parse("").unwrap();
        assert_eq!(c.webhooks.connect_timeout_secs, 3);
        assert_eq!(c.webhooks.destination_concurrency, 2);
        assert_eq!(c.webhooks.effective_callback_concurrency(), 2);
        assert!(c.webhooks.callback_hosts.is_empty());
        assert_eq!(c.webhooks.callback_secret, None);
        let c = parse(
            r#"
[webhooks]
callback_hosts = ["hooks.example.com", "10.0.0.5", "*.internal.example", "::1"]
callback_secret = "cb-key"
connect_timeout_secs = 5
concurrency = 8
destination_concurrency = 3
callback_concurrency = 6
"#,
        )
        .unwrap();
        assert_eq!(c.webhooks.callback_hosts.len(), 4);
        assert_eq!(c.webhooks.callback_secret.as_deref(), Some("cb-key"));
        assert_eq!(c.webhooks.connect_timeout_secs, 5);
        assert_eq!(c.webhooks.destination_concurrency, 3);
        assert_eq!(c.webhooks.effective_callback_concurrency(), 6);
        let c = parse("[webhooks]\nconcurrency = 1\n").unwrap();
        assert_eq!(c.webhooks.effective_callback_concurrency(), 1);
        for (toml, key) in [
            (
                "callback_hosts = [\"http://x/\"]",
                "webhooks.callback_hosts[0]",
            ),
            (
                "callback_hosts = [\"ok.example\", \"x:8080\"]",
                "webhooks.callback_hosts[1]",
            ),
            ("callback_hosts = [\"*\"]", "webhooks.callback_hosts[0]"),
            (
                "callback_hosts = [\"*.10.0.0.5\"]",
                "webhooks.callback_hosts[0]",
            ),
            ("callback_hosts = [\"\"]", "webhooks.callback_hosts[0]"),
            ("callback_secret = \"\"", "webhooks.callback_secret"),
            ("connect_timeout_secs = 0", "webhooks.connect_timeout_secs"),
            (
                "destination_concurrency = 0",
                "webhooks.destination_concurrency",
            ),
            ("callback_concurrency = 5", "webhooks.callback_concurrency"),
            ("callback_concurrency = 0", "webhooks.callback_concurrency"),
        ] {
            let e = parse(&format!("[webhooks]\n{toml}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }
}
