//! `SIGHUP` (`systemctl reload gsmgw`): re-reads the configuration file and hands each
//! part what it can take while running — API tokens and request limits, the pool's
//! routes, quotas and SIMs, webhook URLs, retention periods and the log level — without
//! touching queued or in-flight work. A file that does not load is logged and the
//! running configuration stays. What needs a restart (listen address, database, ports,
//! timeouts, webhook secrets and concurrency) is logged when it changed.

use crate::api::{ApiSettings, SharedSettings};
use crate::config::{Config, RetentionConfig};
use crate::dispatch::Dispatcher;
use crate::webhook::Webhooks;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;
use tracing::{info, warn};

/// Sets the log filter at run time (installed by `gsmgw serve` with its subscriber).
pub type LogLevelHook = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static LOG_LEVEL: OnceLock<LogLevelHook> = OnceLock::new();

/// Installs the hook a reload uses for `[log] level` (once per process).
pub fn set_log_level_hook(hook: LogLevelHook) {
    let _ = LOG_LEVEL.set(hook);
}

/// What a reload reaches.
pub(crate) struct Reloader {
    /// The file `serve` was started with; `None` (built-in defaults) has nothing to
    /// re-read.
    pub(crate) path: Option<PathBuf>,
    /// Tokens from the environment (`GSMGW_API_TOKEN`): they stay across reloads.
    pub(crate) plain_tokens: Vec<String>,
    pub(crate) api: SharedSettings,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) webhooks: Arc<Webhooks>,
    pub(crate) retention: watch::Sender<RetentionConfig>,
    /// The configuration running now.
    pub(crate) current: Config,
    /// Reloads tried (taken or refused): tests wait on it.
    pub(crate) done: watch::Sender<Reloads>,
}

/// How many reloads were taken and refused since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reloads {
    /// Files that loaded and were applied.
    pub applied: u64,
    /// Files that did not load (the running configuration stayed).
    pub refused: u64,
}

impl Reloader {
    /// Re-reads the file and applies it, or logs why not.
    pub(crate) fn reload(&mut self) {
        let Some(path) = self.path.clone() else {
            warn!("reload: serve was started without --config; nothing to re-read");
            self.done.send_modify(|r| r.refused += 1);
            return;
        };
        let new = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "reload refused; the running configuration stays");
                self.done.send_modify(|r| r.refused += 1);
                return;
            }
        };
        let mut tokens = self.plain_tokens.clone();
        tokens.extend(new.http.token.iter().cloned());
        self.api.replace(ApiSettings::from_config(&new, &tokens));
        self.dispatcher.reconfigure(new.pool.clone());
        self.webhooks.reload_routes(&new.webhooks);
        self.retention.send_replace(new.retention);
        if new.log.level != self.current.log.level
            && let Some(Err(e)) = LOG_LEVEL.get().map(|f| f(&new.log.level))
        {
            warn!(error = %e, "reload: log level kept");
        }
        let old = &self.current;
        let restart = [
            ("http.listen", old.http.listen != new.http.listen),
            ("store", old.store.path != new.store.path),
            ("modems", old.modems.ports != new.modems.ports),
            ("timeouts", old.timeouts() != new.timeouts()),
        ];
        for (what, changed) in restart {
            if changed {
                warn!("reload: {what} changed; it takes effect at the next restart");
            }
        }
        info!(path = %path.display(), "configuration reloaded");
        self.current = new;
        self.done.send_modify(|r| r.applied += 1);
    }
}
