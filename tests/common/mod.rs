//! The harness every integration test binary shares: the real daemon in-process (on
//! `--sim N`, or on the PTYs of a bank the test owns), its HTTP API, and waiting for a
//! condition with a deadline (tests wait on what the daemon shows, never on a sleep
//! followed by "nothing happened").
#![allow(dead_code)] // each test binary uses its own part of it

use gsmgw::config::Config;
use gsmgw::daemon::{Running, ServeOptions};
use serde_json::{Value, json};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;

/// The bearer token the harness configures unless a test names another.
pub(crate) const TOKEN: &str = "test-token";

/// Defaults with the modem timeouts shortened to what hw-sim needs, so a test that goes
/// wrong fails in seconds rather than minutes.
pub(crate) fn test_config() -> Config {
    let mut config = Config::default();
    config.modems.command_timeout_ms = 2_000;
    config.modems.send_timeout_ms = 10_000;
    config
}

/// Polls `check` until it returns `Some`, failing with `what` and the last value seen
/// after `within`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what} (after {within:?}): {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A simulated bank of `n` modems of `profile` with links in `dir/bank` and a fixed
/// `AT+CMGS` latency.
pub(crate) async fn sim_bank(
    dir: &Path,
    n: usize,
    profile: hw_sim::ProfileName,
    latency_ms: u64,
    seed: u64,
) -> hw_sim::BankHandle {
    hw_sim::Bank::start(hw_sim::BankConfig {
        modems: n,
        link_dir: dir.join("bank"),
        profile,
        latency: (latency_ms, latency_ms),
        seed,
        scenario: None,
        tcp_base: None,
        control: None,
    })
    .await
    .unwrap()
}

/// The daemon running as a task of the test's runtime.
pub(crate) struct Daemon {
    /// Where it listens, its store and dispatcher.
    pub(crate) running: Running,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
    /// A client for its API.
    pub(crate) http: reqwest::Client,
    /// The token requests carry.
    pub(crate) token: String,
    _dir: Option<tempfile::TempDir>,
}

/// What to start: [`Daemon::start`] fills in the listener (a free loopback port).
pub(crate) struct Start {
    /// The configuration ([`test_config`] by default).
    pub(crate) config: Config,
    /// The database file (a fresh temporary one by default).
    pub(crate) db: Option<PathBuf>,
    /// Ports, globs or `tcp://` addresses; empty with `sim`.
    pub(crate) ports: Vec<String>,
    /// An in-process bank of this many modems (`serve --sim N`).
    pub(crate) sim: Option<usize>,
    /// API tokens ([`TOKEN`] by default); the first one is used for requests.
    pub(crate) tokens: Vec<String>,
    /// The configuration file a reload re-reads.
    pub(crate) config_path: Option<PathBuf>,
}

impl Default for Start {
    fn default() -> Self {
        Start {
            config: test_config(),
            db: None,
            ports: Vec::new(),
            sim: None,
            tokens: vec![TOKEN.into()],
            config_path: None,
        }
    }
}

impl Daemon {
    /// Starts the daemon and waits until it listens.
    pub(crate) async fn start(s: Start) -> Daemon {
        let (db, dir) = match s.db {
            Some(db) => (db, None),
            None => {
                let dir = tempfile::tempdir().unwrap();
                (dir.path().join("gsmgw.db"), Some(dir))
            }
        };
        let token = s.tokens.first().cloned().unwrap_or_default();
        let opts = ServeOptions {
            config: s.config,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            db: Some(db),
            ports: s.ports,
            sim: s.sim,
            sim_latency: None,
            tokens: s.tokens,
            config_path: s.config_path,
        };
        let spawned = gsmgw::daemon::spawn(opts, Duration::from_secs(30))
            .await
            .expect("daemon ready in time");
        Daemon {
            running: spawned.running,
            stop: Some(spawned.stop),
            task: spawned.task,
            http: reqwest::Client::new(),
            token,
            _dir: dir,
        }
    }

    /// `serve --sim N` with the test configuration and a temporary database.
    pub(crate) async fn sim(modems: usize) -> Daemon {
        Daemon::start(Start {
            sim: Some(modems),
            ..Start::default()
        })
        .await
    }

    /// The daemon on `ports` with its database in `dir` (kept across restarts).
    pub(crate) async fn on_ports(ports: Vec<String>, dir: &Path) -> Daemon {
        Daemon::start(Start {
            ports,
            db: Some(dir.join("gsmgw.db")),
            ..Start::default()
        })
        .await
    }

    /// The API URL of `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.api)
    }

    /// The in-process bank's control URL of `path` (with `sim` only).
    pub(crate) fn sim_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.running.sim_control.expect("started with sim")
        )
    }

    /// Any request with the token: status and JSON body (`null` when there is none).
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let url = self.url(path);
        let mut req = match method {
            "POST" => self.http.post(url),
            "PUT" => self.http.put(url),
            "PATCH" => self.http.patch(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.get(url),
        }
        .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// GET with the token; the JSON body whatever the status.
    pub(crate) async fn get_json(&self, path: &str) -> Value {
        self.call("GET", path, None).await.1
    }

    /// POST /v1/messages.
    pub(crate) async fn post(&self, body: Value) -> (u16, Value) {
        self.call("POST", "/v1/messages", Some(&body)).await
    }

    /// POST /v1/messages `{to, text}`, asserting 202; the message id.
    pub(crate) async fn send(&self, to: &str, text: &str) -> i64 {
        let (s, v) = self.post(json!({"to": to, "text": text})).await;
        assert_eq!(s, 202, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// GET /v1/messages/{id}.
    pub(crate) async fn get(&self, id: i64) -> Value {
        self.get_json(&format!("/v1/messages/{id}")).await
    }

    /// Waits until the message has one of `statuses`.
    pub(crate) async fn wait_status_in(&self, id: i64, statuses: &[&str]) -> Value {
        eventually(
            &format!("message {id} never reached {statuses:?}"),
            Duration::from_secs(30),
            || async {
                let m = self.get(id).await;
                match m["status"].as_str() {
                    Some(s) if statuses.contains(&s) => Ok(m),
                    _ => Err(m.to_string()),
                }
            },
        )
        .await
    }

    /// Waits until the message reaches `status`.
    pub(crate) async fn wait_status(&self, id: i64, status: &str) -> Value {
        self.wait_status_in(id, &[status]).await
    }

    /// Waits until the message has left: `sent`, or already `delivered` when its status
    /// report came quickly.
    pub(crate) async fn wait_out(&self, id: i64) -> Value {
        self.wait_status_in(id, &["sent", "delivered"]).await
    }

    /// GET /v1/modems: the items.
    pub(crate) async fn modems(&self) -> Vec<Value> {
        let v = self.get_json("/v1/modems").await;
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the modem list satisfies `pred`.
    pub(crate) async fn wait_modems(
        &self,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        eventually(what, Duration::from_secs(15), || async {
            let m = self.modems().await;
            if pred(&m) {
                Ok(m)
            } else {
                Err(format!("{m:?}"))
            }
        })
        .await
    }

    /// Waits until `/readyz` counts `n` modems that can send.
    pub(crate) async fn wait_ready(&self, n: u64) {
        eventually(
            &format!("{n} modems ready"),
            Duration::from_secs(30),
            || async {
                let v: Value = self
                    .http
                    .get(self.url("/readyz"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap_or(Value::Null);
                if v["modems_ready"].as_u64().unwrap_or(0) >= n {
                    Ok(())
                } else {
                    Err(v.to_string())
                }
            },
        )
        .await
    }

    /// The inbox items, once `done` says they are all there.
    pub(crate) async fn wait_inbox(
        &self,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        eventually(what, Duration::from_secs(60), || async {
            let inbox = self.get_json("/v1/inbox").await;
            let items = inbox["items"].as_array().cloned().unwrap_or_default();
            if done(&items) {
                Ok(items)
            } else {
                Err(inbox.to_string())
            }
        })
        .await
    }

    /// What the in-process bank's network received (with `sim` only).
    pub(crate) async fn sink(&self) -> Vec<Value> {
        self.http
            .get(self.sim_url("/messages"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits for the daemon to end by itself (not asked to stop) and returns how it
    /// ended.
    pub(crate) async fn ended(mut self, within: Duration) -> Result<(), String> {
        let _keep_running = self.stop.take();
        tokio::time::timeout(within, &mut self.task)
            .await
            .expect("the daemon stops by itself")
            .unwrap()
    }

    /// Stops it gracefully and checks that it ran without error.
    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("daemon stops in time")
            .unwrap()
            .expect("the daemon ran without error");
    }
}

/// A `gsmgw serve` process from `cmd` (its stdout is taken here): waits for the line
/// with the API address, and hw-sim's control address when `--sim` prints one, then
/// keeps reading stdout so the daemon never blocks on a full pipe.
pub(crate) fn serve_child(
    mut cmd: std::process::Command,
) -> (std::process::Child, String, Option<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut api, mut control) = (None, None);
    while api.is_none() {
        let line = lines.next().expect("serve printed its addresses").unwrap();
        if let Some(a) = line.strip_prefix("hw-sim control API: http://") {
            control = a.split_whitespace().next().map(str::to_owned);
        }
        if let Some(a) = line.strip_prefix("gsmgw API: http://") {
            api = Some(a.trim().to_owned());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, api.unwrap_or_default(), control)
}
