//! `gsmgw serve`: assembles the daemon — store, dispatcher, pool, one task per modem,
//! the HTTP API — and, with `--sim N`, an in-process hw-sim bank on real PTYs in front
//! of the real daemon. It owns start-up order and graceful shutdown.

pub mod bridge;
pub mod fleet;
pub mod hotplug;
pub mod housekeeping;
pub mod reload;
pub mod sim;
pub mod sink;

use crate::api::{self, ApiSettings, AppState, ModemsView, SharedSettings};
use crate::config::Config;
use crate::dispatch::{Dispatcher, Settings};
use crate::modem::RejectedPins;
use crate::pool::Pool;
use crate::store::{self, Store, now_ms};
use crate::webhook::Webhooks;
use fleet::Fleet;
use sim::SimBank;
use sink::StoreSink;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// What `serve` was asked for on the command line (overrides the config file).
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// The configuration file's settings (defaults when there is none).
    pub config: Config,
    /// `--listen`: the API's address instead of `http.listen`.
    pub listen: Option<SocketAddr>,
    /// `--db`: the database file instead of `store.path`.
    pub db: Option<PathBuf>,
    /// `--port`: modem ports instead of `modems.ports` (empty: the config's).
    pub ports: Vec<String>,
    /// Start an in-process hw-sim bank of this many modems and use only those.
    pub sim: Option<usize>,
    /// The simulated modems' `AT+CMGS` latency in ms (min, max); default 200.
    pub sim_latency: Option<(u64, u64)>,
    /// Bearer tokens (from `GSMGW_API_TOKEN` and the config).
    pub tokens: Vec<String>,
    /// The file `config` came from: what a reload (`SIGHUP`) re-reads.
    pub config_path: Option<PathBuf>,
}

/// Where a running daemon can be reached (for tests and `--sim` users).
#[derive(Clone)]
pub struct Running {
    /// The address the API is bound to (the real port when `:0` was asked for).
    pub api: SocketAddr,
    /// hw-sim's control API, with `--sim`.
    pub sim_control: Option<SocketAddr>,
    /// The daemon's database.
    pub store: Store,
    /// The daemon's send loop.
    pub dispatcher: Dispatcher,
    /// The modems, for status lines.
    pub modems: Arc<dyn ModemsView>,
    /// Housekeeping passes finished (retention, WAL checkpoint): tests wait on it.
    pub housekeeping_passes: tokio::sync::watch::Receiver<u64>,
    /// Asks for a reload, as `SIGHUP` does.
    pub reload: tokio::sync::mpsc::UnboundedSender<()>,
    /// Reloads applied and refused so far: tests wait on it.
    pub reloads: tokio::sync::watch::Receiver<reload::Reloads>,
}

/// A daemon running as a task of the current runtime (tests, benchmarks, programs that
/// embed gsmgw): where it listens, how to stop it, and the task to await.
pub struct Spawned {
    /// Where it listens and what it runs.
    pub running: Running,
    /// Send (or drop) to shut the daemon down gracefully.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// Resolves when the daemon has stopped, with its error if it failed.
    pub task: tokio::task::JoinHandle<Result<(), String>>,
}

/// Starts [`serve_until`] in a task and waits, up to `ready_within`, until the store and
/// the API are up; a daemon that fails first gives its error.
pub async fn spawn(opts: ServeOptions, ready_within: Duration) -> Result<Spawned, String> {
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx.await;
        };
        serve_until(opts, shutdown, move |r| {
            let _ = ready_tx.send(r);
        })
        .await
        .map_err(|e| e.to_string())
    });
    let ready = tokio::time::timeout(ready_within, async {
        tokio::select! {
            r = ready_rx => r.map_err(|_| "the daemon stopped before it was ready".to_string()),
            done = &mut task => Err(match done {
                Ok(Err(e)) => format!("daemon failed: {e}"),
                Ok(Ok(())) => "the daemon stopped before it was ready".into(),
                Err(e) => format!("daemon task failed: {e}"),
            }),
        }
    })
    .await
    .map_err(|_| format!("the daemon was not ready within {ready_within:?}"))??;
    Ok(Spawned {
        running: ready,
        stop,
        task,
    })
}

/// Runs the daemon until SIGINT/SIGTERM.
pub async fn serve(opts: ServeOptions) -> Result<(), Box<dyn std::error::Error>> {
    serve_until(opts, shutdown_signal(), |_| {}).await
}

/// Runs the daemon until `shutdown` resolves; `on_ready` is told where it listens once
/// the store and the API are up.
pub async fn serve_until(
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(Running),
) -> Result<(), Box<dyn std::error::Error>> {
    crate::telemetry::handle();
    // The one clock every component reads (tests hand theirs to the parts they drive).
    let clock = crate::clock::Clock::system();
    let cfg = &opts.config;
    // Every timeout the daemon's parts use, read once from the file's keys.
    let timeouts = cfg.timeouts();
    let db = opts.db.clone().unwrap_or_else(|| cfg.store.path.clone());
    let store = Store::open(&db)?;
    info!(path = %db.display(), "store open");

    // The simulated bank comes first: its PTYs are the ports.
    let mut bank = None;
    let mut ports = if opts.ports.is_empty() {
        cfg.modems.ports.clone()
    } else {
        opts.ports.clone()
    };
    if let Some(n) = opts.sim {
        let (sim, sim_ports) = SimBank::start(n, opts.sim_latency.unwrap_or((200, 200))).await?;
        ports = sim_ports;
        bank = Some(sim);
    }

    // Webhooks: the worker delivers what earlier runs left in the outbox, too.
    let secret = std::env::var("GSMGW_WEBHOOK_SECRET")
        .ok()
        .or_else(|| cfg.webhooks.secret.clone());
    let webhooks = Arc::new(Webhooks::from_config(&cfg.webhooks, secret));
    if webhooks.has_routes() && !webhooks.is_signed() {
        warn!(
            "webhooks have no secret ([webhooks] secret or GSMGW_WEBHOOK_SECRET): events go out unsigned"
        );
    }
    let webhook_task = webhooks.start_with_clock(store.clone(), clock)?;

    let pool = Pool::new(cfg.pool.clone())?;
    let settings = Settings {
        max_attempts: cfg.dispatch.max_attempts,
        timeouts,
        in_flight: cfg.store.in_flight,
        window: cfg.dispatch.queue_window,
        webhooks: webhooks.clone(),
        clock,
    };
    let (dispatcher, dispatch_task) = Dispatcher::start(store.clone(), pool, settings).await?;

    let sink = Arc::new(StoreSink {
        store: store.clone(),
        report_window_ms: i64::try_from(timeouts.report_window.as_millis()).unwrap_or(i64::MAX),
        webhooks: webhooks.clone(),
        optout: cfg.optout.enabled.then(|| {
            Arc::new(store::OptOutKeywords {
                stop: cfg.optout.stop_keywords.clone(),
                start: cfg.optout.start_keywords.clone(),
            })
        }),
        clock,
    });
    let rejected = {
        let initial = store.read(store::load_rejected_pins).await?;
        if !initial.is_empty() {
            warn!(
                iccids = ?initial.keys().collect::<Vec<_>>(),
                "SIMs whose configured PIN was rejected before: that PIN will not be tried again"
            );
        }
        let store = store.clone();
        let persist: crate::modem::PersistPin = Arc::new(move |iccid, fp| {
            let (i, f, s) = (iccid.to_owned(), fp.to_owned(), store.clone());
            // Durable before the driver goes on: a restart must never retry this PIN.
            // A plain thread may block on the store even inside the async runtime.
            let r = std::thread::scope(|scope| {
                scope
                    .spawn(move || {
                        s.write_blocking(move |c| store::save_rejected_pin(c, &i, &f, now_ms()))
                    })
                    .join()
            });
            if !matches!(r, Ok(Ok(()))) {
                error!(iccid, "could not persist a PIN rejection");
            }
        });
        RejectedPins::with_persistence(initial, persist)
    };
    let fleet = Arc::new(Fleet::new(
        cfg.clone(),
        rejected,
        sink.clone(),
        dispatcher.clone(),
        store.clone(),
        webhooks.clone(),
    ));
    // Ports present now are probed exactly like hot-plugged ones (AT or not, which
    // device), all at once, and placed in a fixed order.
    let initial = hotplug::scan(&ports);
    fleet
        .admit_all(&initial.iter().cloned().collect::<Vec<_>>())
        .await;
    // Hotplug: ports that appear later are probed and brought up; ports that stay gone
    // are removed (their in-flight work fails over to other modems).
    let (port_tx, port_rx) = tokio::sync::mpsc::unbounded_channel();
    let hotplug_task = hotplug::spawn(
        ports.clone(),
        initial,
        timeouts.rescan.max(Duration::from_secs(1)),
        port_tx,
    );
    let follow_task = tokio::spawn(fleet.clone().follow(port_rx, timeouts.remove_after));
    if fleet.is_empty() {
        warn!("no modem ports found; messages will queue until modems appear");
    }

    // Incomplete inbound multipart messages are delivered after the timeout.
    let reassembly = {
        let store = store.clone();
        let webhooks = webhooks.clone();
        let timeout_ms = i64::try_from(timeouts.reassembly.as_millis()).unwrap_or(i64::MAX);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                let now = clock.now_ms();
                let r = webhooks
                    .record(&store, move |c, announce| {
                        let ids = store::expire_reassembly(c, now - timeout_ms, now)?;
                        for id in &ids {
                            announce.inbound(*id, now)?;
                        }
                        Ok(ids)
                    })
                    .await;
                match r {
                    Ok(ids) if !ids.is_empty() => {
                        info!(?ids, "incomplete inbound messages delivered")
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "reassembly sweep failed"),
                }
            }
        })
    };

    // Retention pruning and WAL checkpoints; the periods can change on reload.
    let (retention_tx, retention_rx) = tokio::sync::watch::channel(cfg.retention);
    let (passes_tx, housekeeping_passes) = tokio::sync::watch::channel(0u64);
    let housekeeping_task = tokio::spawn(housekeeping::run(
        store.clone(),
        retention_rx,
        clock,
        passes_tx,
    ));

    let api_settings = SharedSettings::new(ApiSettings::from_config(cfg, &opts.tokens));
    // Reloads: SIGHUP, or `Running::reload` in tests and embedders.
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (reloads_tx, reloads) = tokio::sync::watch::channel(reload::Reloads::default());
    let mut reloader = reload::Reloader {
        path: opts.config_path.clone(),
        // The environment's (or --sim's) tokens stay; the file's `http.token` is re-read.
        plain_tokens: opts
            .tokens
            .iter()
            .filter(|t| cfg.http.token.as_deref() != Some(t.as_str()))
            .cloned()
            .collect(),
        api: api_settings.clone(),
        dispatcher: dispatcher.clone(),
        webhooks: webhooks.clone(),
        retention: retention_tx,
        current: cfg.clone(),
        done: reloads_tx,
    };
    let reload_task = tokio::spawn(async move {
        while reload_rx.recv().await.is_some() {
            reloader.reload();
        }
    });
    let hangup_task = {
        let tx = reload_tx.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::hangup()) {
                Ok(mut hup) => {
                    while hup.recv().await.is_some() {
                        info!("SIGHUP: reloading the configuration");
                        let _ = tx.send(());
                    }
                }
                Err(e) => warn!(error = %e, "no SIGHUP handler: reload needs a restart"),
            }
        })
    };

    let state = AppState {
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        settings: api_settings,
        modems: fleet.clone(),
        limiter: Arc::default(),
    };
    let listen = opts.listen.unwrap_or(cfg.http.listen);
    if !listen.ip().is_loopback() {
        warn!(
            %listen,
            "the API listens beyond loopback: put TLS in front of it (a reverse proxy) and keep tokens secret"
        );
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    println!("gsmgw API: http://{local}");
    info!(%local, modems = fleet.len(), "gsmgw ready");
    on_ready(Running {
        api: local,
        sim_control: bank.as_ref().and_then(|b| b.control_addr()),
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        modems: fleet.clone(),
        housekeeping_passes,
        reload: reload_tx,
        reloads,
    });
    // The store's writer stopping (it should not: a panicking write fails alone) ends
    // the daemon with an error, so systemd restarts it instead of leaving a process
    // that accepts nothing.
    let writer_failed = Arc::new(std::sync::Mutex::new(None::<String>));
    let stop_or_writer = {
        let store = store.clone();
        let failed = writer_failed.clone();
        async move {
            tokio::select! {
                () = shutdown => {}
                why = store.writer_stopped() => {
                    error!(error = %why, "the store writer stopped; exiting so the service restarts");
                    if let Ok(mut f) = failed.lock() {
                        *f = Some(why);
                    }
                }
            }
        }
    };
    let limits = api::server::Limits {
        header_timeout: Duration::from_secs(cfg.http.header_timeout_secs.max(1)),
        max_connections: cfg.http.max_connections,
        ..api::server::Limits::default()
    };
    api::server::serve(listener, api::router(state), limits, stop_or_writer).await?;

    // Everything accepted is already in the store, so shutdown never waits long on
    // anything: whatever is cut short (a send in flight, a webhook attempt) is
    // reconciled or retried after the next start. The whole of it stays within
    // SHUTDOWN_BUDGET, whatever the modems are doing (unplugged, hung, mid-burst).
    info!("shutting down");
    let deadline = tokio::time::Instant::now() + SHUTDOWN_BUDGET;
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    dispatcher.shutdown();
    let _ = tokio::time::timeout(left().min(Duration::from_millis(400)), dispatch_task.join).await;
    reassembly.abort();
    reload_task.abort();
    hangup_task.abort();
    housekeeping_task.abort();
    hotplug_task.abort();
    follow_task.abort();
    let _ = tokio::time::timeout(left(), fleet.remove_all()).await;
    if let Some(b) = bank {
        let _ = tokio::time::timeout(left(), b.shutdown()).await;
    }
    if tokio::time::timeout(left(), webhook_task.shutdown())
        .await
        .is_err()
    {
        warn!(
            "webhook worker did not stop in time; undelivered events go out after the next start"
        );
    }
    store.close();
    let failed = writer_failed.lock().ok().and_then(|mut f| f.take());
    match failed {
        Some(why) => Err(format!("the store writer stopped: {why}").into()),
        None => Ok(()),
    }
}

/// How long shutdown may take, all steps together (systemd's stop, a test's SIGTERM).
pub const SHUTDOWN_BUDGET: Duration = Duration::from_millis(1200);

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
