//! `gsmgw serve` and `gsmgw check-config`.

use crate::config::{Config, DEFAULT_PATH};
use crate::daemon::{Running, ServeOptions, serve_until, shutdown_signal};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Configuration file (default /etc/gsmgw/gsmgw.toml, built-in defaults if missing).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address for the HTTP API (overrides http.listen).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// SQLite database (overrides store.path; with --sim the default is ./gsmgw-sim.db).
    #[arg(long)]
    db: Option<PathBuf>,
    /// A modem port, glob or tcp://host:port (repeatable; overrides modems.ports).
    #[arg(long = "port")]
    ports: Vec<String>,
    /// Start an in-process hw-sim bank of N simulated modems on PTYs and use them.
    #[arg(long)]
    sim: Option<usize>,
    /// The simulated modems' AT+CMGS latency: MS or MIN-MAX (default 200).
    #[arg(long, value_parser = parse_latency, requires = "sim")]
    sim_latency: Option<(u64, u64)>,
}

fn parse_latency(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{s:?}: expected MS or MIN-MAX");
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if a > b {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => s.parse().map(|v| (v, v)).map_err(|_| bad()),
    }
}

#[derive(Args, Debug)]
pub(crate) struct CheckConfigArgs {
    /// Configuration file (default /etc/gsmgw/gsmgw.toml).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub(super) fn load(
    path: Option<&Path>,
    optional: bool,
) -> Result<Config, Box<dyn std::error::Error>> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None if optional && !Path::new(DEFAULT_PATH).exists() => Ok(Config::default()),
        None => Ok(Config::load(Path::new(DEFAULT_PATH))?),
    }
}

/// Logs go to the journal (structured fields: `MODEM`, `ICCID`, `MESSAGE_ID`, …, with
/// PRIORITY from the level) when started by systemd or when configured, else to stderr
/// in a readable format. tracing-journald rather than systemd-journal-logger: the
/// latter is a `log` backend that receives nothing once a tracing subscriber is
/// installed and flattens fields into the text.
fn init_logging(level: &str, journald: Option<bool>) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The filter can be swapped by a reload (`[log] level`); RUST_LOG, when set, wins.
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    crate::daemon::reload::set_log_level_hook(Box::new(move |level: &str| {
        if std::env::var_os("RUST_LOG").is_some() {
            return Ok(());
        }
        let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    }));
    let want_journal = journald.unwrap_or_else(|| std::env::var_os("JOURNAL_STREAM").is_some());
    let journal = if want_journal {
        match tracing_journald::layer() {
            Ok(layer) => Some(
                layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("gsmgw".into()),
            ),
            Err(e) => {
                eprintln!("journald unavailable ({e}); logging to stderr");
                None
            }
        }
    } else {
        None
    };
    use std::io::IsTerminal;
    let stderr = journal.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journal)
        .with(stderr)
        .try_init();
}

pub(crate) fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    // An explicitly named file must exist; the default one may be missing (defaults).
    let config = load(args.config.as_deref(), true)?;
    init_logging(&config.log.level, config.log.journald);
    if args.config.is_none() && !Path::new(DEFAULT_PATH).exists() {
        tracing::warn!("{DEFAULT_PATH} not found: running on built-in defaults");
    }
    let mut tokens: Vec<String> = config.http.token.iter().cloned().collect();
    if let Ok(t) = std::env::var("GSMGW_API_TOKEN")
        && !t.trim().is_empty()
    {
        tokens.push(t.trim().to_owned());
    }
    // Scoped tokens ([[http.tokens]]) stand alone: a plain token is needed only when
    // there are none.
    if tokens.is_empty() && config.http.tokens.is_empty() {
        if args.sim.is_none() {
            return Err(Box::new(crate::config::ConfigError::Invalid {
                path: args
                    .config
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH)),
                key: "http.tokens".into(),
                message: "no API token: set GSMGW_API_TOKEN, http.token or [[http.tokens]]".into(),
            }));
        }
        let t = random_token()?;
        println!("no API token configured; this run accepts: {t}");
        tokens.push(t);
    }
    let db = args
        .db
        .or_else(|| args.sim.map(|_| PathBuf::from("gsmgw-sim.db")));
    let opts = ServeOptions {
        config,
        listen: args.listen,
        db,
        ports: args.ports,
        sim: args.sim,
        sim_latency: args.sim_latency,
        tokens,
        config_path: args.config.clone().or_else(|| {
            Path::new(DEFAULT_PATH)
                .exists()
                .then(|| PathBuf::from(DEFAULT_PATH))
        }),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve_until(opts, shutdown_signal(), notify_systemd))
}

/// Tells systemd we are ready (store and API up), keeps its watchdog fed from the
/// dispatcher's own heartbeat, and keeps `STATUS=` current. Without systemd
/// (`NOTIFY_SOCKET` unset) every call is a no-op.
fn notify_systemd(r: Running) {
    use sd_notify::NotifyState;
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled();
    tokio::spawn(async move {
        // Feed the watchdog at half its period, but only while the dispatcher loop turns.
        let period = watchdog.map_or(Duration::from_secs(10), |w| {
            (w / 2).min(Duration::from_secs(10))
        });
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let age = crate::store::now_ms() - r.dispatcher.last_beat();
            let alive = age
                < i64::try_from(period.as_millis()).unwrap_or(i64::MAX)
                    + crate::dispatch::LIVENESS_TICK_MS;
            if watchdog.is_some() && alive {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            } else if watchdog.is_some() {
                tracing::error!(
                    age_ms = age,
                    "dispatcher loop stalled: not feeding the watchdog"
                );
            }
            let depth: i64 = r
                .store
                .read(crate::store::queue_depth)
                .await
                .map(|d| d.iter().map(|(_, n)| n).sum())
                .unwrap_or(-1);
            let status = format!(
                "{} modem(s) ready, {} message(s) queued",
                r.modems.ready_count(),
                depth
            );
            let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
        }
    });
}

fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(crate::pdu::hex::encode(&b).to_lowercase())
}

pub(crate) fn check(args: CheckConfigArgs) -> Result<(), Box<dyn std::error::Error>> {
    let path = args.config.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let c = Config::load(&path)?;
    println!(
        "{}",
        serde_json::json!({
            "config": path.display().to_string(),
            "ok": true,
            "listen": c.http.listen.to_string(),
            "store": c.store.path.display().to_string(),
            "ports": c.modems.ports,
        })
    );
    Ok(())
}
