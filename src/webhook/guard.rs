//! Where a message's `callback_url` may point (security audit #10, finding 2: SSRF).
//!
//! A `callback_url` is chosen by an API client, not by the operator, yet gsmgw posts to
//! it from inside the host. So it is checked twice:
//!
//! 1. When the message is accepted (and again before every attempt),
//!    [`check_callback_url`]: a WHATWG-parsed http(s) URL with a host and no
//!    credentials, whose host, if it is an IP literal (in any spelling the parser
//!    normalises: `2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]` …), is not a loopback,
//!    private, link-local or otherwise non-public address ([`is_refused_address`]), and
//!    is not `localhost`.
//! 2. When connecting: callbacks go through a client whose DNS resolver
//!    ([`GuardedResolver`]) drops refused addresses from the answer (and fails when none
//!    is left), so the address connected to is one that was checked — a name that
//!    resolves (or re-binds) to 127.0.0.1 gets nowhere. That client follows no redirects.
//!
//! The operator may name the hosts callbacks may go to (`[webhooks] callback_hosts`,
//! exact hosts or `*.domain` wildcards): then every other host is refused, and the
//! listed ones are exempt from the address checks (a listed `10.0.0.5` or a listed name
//! resolving to a private address is the operator's explicit choice).

use crate::config::WebhooksConfig;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The longest `callback_url` accepted.
pub const MAX_CALLBACK_URL_LEN: usize = 2048;

/// Why a `callback_url` is refused. The `Display` text is a sentence for the API's 400
/// answer (code `invalid_callback_url`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallbackUrlError {
    /// Longer than [`MAX_CALLBACK_URL_LEN`].
    #[error("callback_url is longer than {MAX_CALLBACK_URL_LEN} characters")]
    TooLong,
    /// Not an absolute URL; the parser's complaint.
    #[error("callback_url is not a valid absolute URL ({0})")]
    Invalid(String),
    /// Neither `http` nor `https`; the scheme given.
    #[error("callback_url must be an http:// or https:// URL, not {0}:")]
    Scheme(String),
    /// Has a user name or password.
    #[error("callback_url must not contain a user name or password")]
    Userinfo,
    /// Has no host.
    #[error("callback_url has no host")]
    NoHost,
    /// Its host is a loopback, private, link-local or otherwise non-public address (or
    /// a local name); the host.
    #[error(
        "callback_url points to {0}, which is a loopback, private, link-local or otherwise \
         non-public address; callbacks go to public hosts only (or to the hosts the \
         gateway's operator allows)"
    )]
    RefusedHost(String),
    /// Not on the operator's `callback_hosts`; the host.
    #[error("callback_url's host {0} is not one of the callback hosts this gateway allows")]
    NotAllowed(String),
}

/// Where callbacks may go: anywhere public (the default), or only to the operator's
/// `[webhooks] callback_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackPolicy {
    /// Whether an allow-list was configured (even one whose entries were all invalid:
    /// a broken allow-list must not turn into "any host").
    restricted: bool,
    /// Normalised hosts (`hooks.example.com`, `10.0.0.5`, `[::1]`).
    exact: Vec<String>,
    /// `*.internal.example` as `.internal.example`.
    suffixes: Vec<String>,
}

/// An unusable `callback_hosts` entry: its index and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{entry:?}: {reason}")]
pub struct HostPatternError {
    /// Its position in `callback_hosts`, from 0.
    pub index: usize,
    /// The entry as written.
    pub entry: String,
    /// Why it cannot be used.
    pub reason: &'static str,
}

impl CallbackPolicy {
    /// From `[webhooks] callback_hosts`; an empty list allows every public host.
    pub fn new(hosts: &[String]) -> Result<CallbackPolicy, HostPatternError> {
        let mut policy = CallbackPolicy {
            restricted: !hosts.is_empty(),
            ..CallbackPolicy::default()
        };
        for (index, entry) in hosts.iter().enumerate() {
            let bad = |reason| HostPatternError {
                index,
                entry: entry.clone(),
                reason,
            };
            match parse_host_pattern(entry).map_err(bad)? {
                HostPattern::Exact(h) => policy.exact.push(h),
                HostPattern::Suffix(s) => policy.suffixes.push(s),
            }
        }
        Ok(policy)
    }

    /// From the config. The config's validation refuses bad entries; should one get
    /// here anyway, it is dropped but the policy stays restricted (fails closed).
    pub fn from_config(cfg: &WebhooksConfig) -> CallbackPolicy {
        let mut policy = CallbackPolicy {
            restricted: !cfg.callback_hosts.is_empty(),
            ..CallbackPolicy::default()
        };
        for entry in &cfg.callback_hosts {
            match parse_host_pattern(entry) {
                Ok(HostPattern::Exact(h)) => policy.exact.push(h),
                Ok(HostPattern::Suffix(s)) => policy.suffixes.push(s),
                Err(_) => {}
            }
        }
        policy
    }

    /// Whether an allow-list is configured (then only listed hosts are allowed).
    pub fn is_restricted(&self) -> bool {
        self.restricted
    }

    /// Whether `host` (as [`reqwest::Url::host_str`] gives it, or as the resolver
    /// gets it) is on the allow-list.
    pub fn lists(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host);
        if self.exact.iter().any(|h| h == host) {
            return true;
        }
        !host_is_ip(host) && self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }
}

enum HostPattern {
    Exact(String),
    Suffix(String),
}

/// Normalises an allow-list entry the way URLs' hosts are normalised (the same parser),
/// so `HOOKS.example.com`, `167772165` or `::1` match what a URL's host turns into.
fn parse_host_pattern(entry: &str) -> Result<HostPattern, &'static str> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err("empty; give a host name, an IP address or *.domain");
    }
    let (wildcard, rest) = match entry.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, entry),
    };
    if rest.contains("://") || rest.contains(['/', '?', '#', '@', '\\', '*', ' ']) {
        return Err("give a host name, an IP address or *.domain, not a URL");
    }
    // (The parser drops a default port, so look at the text.)
    let has_port = match rest.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => rest.contains(':') && rest.parse::<Ipv6Addr>().is_err(),
    };
    if has_port {
        return Err("give the host without a port (callbacks to any port of it are allowed)");
    }
    let bracketed = if rest.parse::<Ipv6Addr>().is_ok() {
        format!("[{rest}]")
    } else {
        rest.to_owned()
    };
    let url = reqwest::Url::parse(&format!("http://{bracketed}/"))
        .map_err(|_| "not a valid host name or IP address")?;
    if url.port().is_some() || url.path() != "/" || !url.username().is_empty() {
        return Err("give the host without a port (callbacks to any port of it are allowed)");
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("not a valid host name or IP address")?;
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err("not a valid host name or IP address");
    }
    if wildcard {
        if host_is_ip(host) {
            return Err("a wildcard needs a domain (*.example.com), not an IP address");
        }
        Ok(HostPattern::Suffix(format!(".{host}")))
    } else {
        Ok(HostPattern::Exact(host.to_owned()))
    }
}

/// The IP address a URL host string stands for (`[::1]` included), if it is one.
fn host_ip(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<IpAddr>().ok(),
    }
}

fn host_is_ip(host: &str) -> bool {
    host_ip(host).is_some()
}

/// `localhost` and `*.localhost` (RFC 6761: always this machine).
fn is_local_name(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    host == "localhost" || host.ends_with(".localhost")
}

/// Checks an app-chosen `callback_url` without any network access and returns it
/// parsed and normalised (store `url.as_str()`). Host names are checked again, after
/// DNS, when connecting ([`GuardedResolver`]).
pub fn check_callback_url(
    url: &str,
    policy: &CallbackPolicy,
) -> Result<reqwest::Url, CallbackUrlError> {
    if url.len() > MAX_CALLBACK_URL_LEN {
        return Err(CallbackUrlError::TooLong);
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| CallbackUrlError::Invalid(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(CallbackUrlError::Scheme(other.to_owned())),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(CallbackUrlError::Userinfo);
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or(CallbackUrlError::NoHost)?;
    if policy.is_restricted() {
        return if policy.lists(host) {
            Ok(parsed)
        } else {
            Err(CallbackUrlError::NotAllowed(host.to_owned()))
        };
    }
    let refused = match host_ip(host) {
        Some(ip) => is_refused_address(ip),
        None => is_local_name(host),
    };
    if refused {
        return Err(CallbackUrlError::RefusedHost(host.to_owned()));
    }
    Ok(parsed)
}

/// Whether an address is one callbacks must not reach unless the operator listed its
/// host: loopback, unspecified, private, CGNAT, link-local (cloud metadata at
/// 169.254.169.254), unique-local, multicast, broadcast, reserved, documentation and
/// benchmarking ranges — and the IPv6 forms that carry an IPv4 address (IPv4-mapped,
/// IPv4-compatible, IPv4-translated, NAT64 `64:ff9b::/96`, 6to4) when that one is
/// refused.
pub fn is_refused_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> bool {
    const NETS: &[(u32, u32)] = &[
        (0x0000_0000, 8),  // 0.0.0.0/8: "this network", 0.0.0.0
        (0x0A00_0000, 8),  // 10.0.0.0/8: private
        (0x6440_0000, 10), // 100.64.0.0/10: carrier-grade NAT
        (0x7F00_0000, 8),  // 127.0.0.0/8: loopback
        (0xA9FE_0000, 16), // 169.254.0.0/16: link-local, cloud metadata
        (0xAC10_0000, 12), // 172.16.0.0/12: private
        (0xC000_0000, 24), // 192.0.0.0/24: IETF protocol assignments
        (0xC000_0200, 24), // 192.0.2.0/24: documentation
        (0xC058_6300, 24), // 192.88.99.0/24: 6to4 relay anycast
        (0xC0A8_0000, 16), // 192.168.0.0/16: private
        (0xC612_0000, 15), // 198.18.0.0/15: benchmarking
        (0xC633_6400, 24), // 198.51.100.0/24: documentation
        (0xCB00_7100, 24), // 203.0.113.0/24: documentation
        (0xE000_0000, 4),  // 224.0.0.0/4: multicast
        (0xF000_0000, 4),  // 240.0.0.0/4: reserved, 255.255.255.255 broadcast
    ];
    let bits = u32::from(ip);
    NETS.iter()
        .any(|&(net, len)| bits & (u32::MAX << (32 - len)) == net)
}

fn refused_v6(ip: Ipv6Addr) -> bool {
    const NETS: &[(u128, u32)] = &[
        (0x0064_ff9b_0001 << 80, 48), // 64:ff9b:1::/48: local-use NAT64
        (0x0100 << 112, 64),          // 100::/64: discard-only
        (0x2001 << 112, 32),          // 2001::/32: Teredo
        (0x2001_0db8 << 96, 32),      // 2001:db8::/32: documentation
        (0x3fff << 112, 20),          // 3fff::/20: documentation
        (0xfc00 << 112, 7),           // fc00::/7: unique local
        (0xfe80 << 112, 10),          // fe80::/10: link-local
        (0xfec0 << 112, 10),          // fec0::/10: site-local (deprecated)
        (0xff00 << 112, 8),           // ff00::/8: multicast
    ];
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xFFFF_FFFF) as u32);
    match bits >> 32 {
        // ::/96: unspecified, loopback and the deprecated IPv4-compatible addresses.
        0 => return true,
        // ::ffff:0:0/96 (IPv4-mapped), ::ffff:0:0:0/96 (IPv4-translated),
        // 64:ff9b::/96 (NAT64): whatever IPv4 address they carry.
        0xFFFF | 0xFFFF_0000 | 0x0064_ff9b_0000_0000_0000_0000 => return refused_v4(low32),
        _ => {}
    }
    if bits >> 112 == 0x2002 {
        // 2002::/16 (6to4) carries an IPv4 address in bits 16..48.
        return refused_v4(Ipv4Addr::from(((bits >> 80) & 0xFFFF_FFFF) as u32));
    }
    NETS.iter()
        .any(|&(net, len)| bits & (u128::MAX << (128 - len)) == net)
}

/// The error of a connection the resolver refused: permanent (retrying cannot help
/// unless the operator changes `callback_hosts`).
#[derive(Debug, Error)]
#[error("{host} {reason}")]
pub(crate) struct Blocked {
    host: String,
    reason: &'static str,
}

type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// Name → addresses (the system resolver, or a fake in tests).
pub(crate) type Lookup = Arc<dyn Fn(&str) -> LookupFuture + Send + Sync>;

/// The system resolver (`getaddrinfo`, as reqwest's default).
pub(crate) fn system_lookup() -> Lookup {
    Arc::new(|name: &str| {
        let name = name.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((name.as_str(), 0)).await?.collect()) })
    })
}

/// The callback client's DNS resolver: resolves, then keeps only addresses callbacks
/// may reach (all of them for a host on the allow-list), so the connection goes to an
/// address that was checked, whatever the name resolved to when the message was
/// accepted (DNS rebinding). IP-literal hosts never get here (the connector uses them
/// as they are); [`check_callback_url`] before every attempt covers those.
pub(crate) struct GuardedResolver {
    policy: Arc<CallbackPolicy>,
    lookup: Lookup,
}

impl GuardedResolver {
    pub(crate) fn new(policy: Arc<CallbackPolicy>, lookup: Lookup) -> GuardedResolver {
        GuardedResolver { policy, lookup }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let (policy, lookup) = (self.policy.clone(), self.lookup.clone());
        Box::pin(async move {
            let blocked = |reason| -> Box<dyn std::error::Error + Send + Sync> {
                Box::new(Blocked {
                    host: host.clone(),
                    reason,
                })
            };
            let listed = policy.lists(&host);
            if !listed && policy.is_restricted() {
                return Err(blocked("is not on the callback allow-list"));
            }
            if !listed && is_local_name(&host) {
                return Err(blocked("is this machine"));
            }
            let addrs = lookup(&host).await?;
            let allowed: Vec<SocketAddr> = if listed {
                addrs
            } else {
                addrs
                    .into_iter()
                    .filter(|a| !is_refused_address(a.ip()))
                    .collect()
            };
            if allowed.is_empty() {
                return Err(blocked(
                    "resolves to no public address (only loopback, private, link-local \
                     or other refused ones)",
                ));
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether a request error came from the resolver refusing the host.
pub(crate) fn blocked_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<Blocked>() {
            return Some(b.to_string());
        }
        cur = err.source();
    }
    None
}

/// The HTTP client for app-chosen callback URLs: the guarded resolver, no redirects,
/// no proxy.
pub(crate) fn callback_client(
    policy: Arc<CallbackPolicy>,
    lookup: Lookup,
    connect_timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("gsmgw/", env!("CARGO_PKG_VERSION")))
        // A redirect to 127.0.0.1 would bypass every check above.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(connect_timeout)
        .dns_resolver(GuardedResolver::new(policy, lookup))
        .build()
}
