//! The modems the daemon runs: spawning a task per port (at start and when hotplug
//! finds a new one that speaks AT), enable/disable/reset from the API, and removing a
//! modem whose port stayed gone. A SIM is known by its ICCID wherever it is plugged,
//! so counters and quotas follow it to another port or stick.

use super::bridge::{ModemOutbound, StoreSink, watch_modem};
use super::hotplug::PortEvent;
use crate::api::{self, ModemsView};
use crate::at::Command;
use crate::config::{Config, FlowControl};
use crate::dispatch::Dispatcher;
use crate::modem::{
    Endpoint, EndpointOpener, Modem, ModemConfig, ModemHandle, RejectedPins, SerialSettings,
};
use crate::store::Store;
use crate::webhook::Webhooks;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

struct Entry {
    handle: Arc<ModemHandle>,
    enabled: watch::Sender<bool>,
    watcher: tokio::task::JoinHandle<()>,
}

/// Everything needed to start a modem task.
pub struct Fleet {
    entries: Mutex<Vec<(String, Entry)>>,
    cfg: Config,
    rejected: RejectedPins,
    sink: Arc<StoreSink>,
    dispatcher: Dispatcher,
    store: Store,
    webhooks: Arc<Webhooks>,
}

impl Fleet {
    pub fn new(
        cfg: Config,
        rejected: RejectedPins,
        sink: Arc<StoreSink>,
        dispatcher: Dispatcher,
        store: Store,
        webhooks: Arc<Webhooks>,
    ) -> Fleet {
        Fleet {
            entries: Mutex::new(Vec::new()),
            cfg,
            rejected,
            sink,
            dispatcher,
            store,
            webhooks,
        }
    }

    fn opener(&self, port: &str) -> Option<Arc<EndpointOpener>> {
        match port.parse::<Endpoint>() {
            Ok(endpoint) => {
                let m = &self.cfg.modems;
                let pc = m.port_config(port);
                Some(Arc::new(EndpointOpener {
                    endpoint,
                    settings: SerialSettings {
                        exclusive: m.exclusive,
                        baud: pc.and_then(|p| p.baud).unwrap_or(m.baud),
                        rtscts: pc.is_some_and(|p| p.flow_control == FlowControl::Rtscts),
                        dtr: pc.and_then(|p| p.dtr).unwrap_or(true),
                        ..SerialSettings::default()
                    },
                }))
            }
            Err(e) => {
                warn!(port, error = %e, "skipping port");
                None
            }
        }
    }

    fn modem_config(&self, port: &str) -> ModemConfig {
        let m = &self.cfg.modems;
        ModemConfig {
            name: Some(port.to_owned()),
            command_timeout: Duration::from_millis(m.command_timeout_ms),
            send_timeout: Duration::from_millis(m.send_timeout_ms),
            pins: m.pins.clone().into_iter().collect(),
            rejected_pins: self.rejected.clone(),
            health_interval: Duration::from_secs(m.health_interval_secs),
            ..ModemConfig::default()
        }
    }

    pub fn contains(&self, port: &str) -> bool {
        self.entries
            .lock()
            .is_ok_and(|e| e.iter().any(|(p, _)| p == port))
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a modem task on `port` (unless one runs there already).
    pub fn add(&self, port: &str) {
        if self.contains(port) {
            return;
        }
        let Some(opener) = self.opener(port) else {
            return;
        };
        let h = Arc::new(ModemHandle::spawn(
            opener,
            self.modem_config(port),
            Some(self.sink.clone()),
        ));
        let (enabled, enabled_rx) = watch::channel(true);
        self.dispatcher
            .modem_added(port.to_owned(), Arc::new(ModemOutbound(h.clone())));
        let watcher = tokio::spawn(watch_modem(
            port.to_owned(),
            h.clone(),
            enabled_rx,
            self.dispatcher.clone(),
            self.store.clone(),
            self.webhooks.clone(),
        ));
        if let Ok(mut e) = self.entries.lock() {
            e.push((
                port.to_owned(),
                Entry {
                    handle: h,
                    enabled,
                    watcher,
                },
            ));
        }
        info!(port, "modem task started");
    }

    /// Stops the task on `port` and forgets it; its in-flight message fails over.
    pub async fn remove(&self, port: &str) {
        let entry = self.entries.lock().ok().and_then(|mut e| {
            let i = e.iter().position(|(p, _)| p == port)?;
            Some(e.remove(i).1)
        });
        if let Some(entry) = entry {
            entry.watcher.abort();
            let _ = entry.watcher.await;
            self.dispatcher.modem_removed(port.to_owned());
            if let Ok(h) = Arc::try_unwrap(entry.handle) {
                h.shutdown().await;
            }
            info!(port, "modem removed");
        }
    }

    /// Stops every task (shutdown).
    pub async fn remove_all(&self) {
        let ports: Vec<String> = self
            .entries
            .lock()
            .map(|e| e.iter().map(|(p, _)| p.clone()).collect())
            .unwrap_or_default();
        for p in ports {
            self.remove(&p).await;
        }
    }

    /// Whether a newly appeared port answers `AT` (a multi-port stick has one or two
    /// AT ports among several). Opened briefly and closed again.
    pub async fn speaks_at(&self, port: &str) -> bool {
        let Some(opener) = self.opener(port) else {
            return false;
        };
        let cfg = ModemConfig {
            command_timeout: Duration::from_millis(self.cfg.modems.command_timeout_ms.min(1_500)),
            sweep: false,
            ..self.modem_config(port)
        };
        let mut m = Modem::new(opener, cfg, None);
        if m.open().await.is_err() {
            return false;
        }
        let mut ok = false;
        for _ in 0..2 {
            if m.exec(Command::new("AT"))
                .await
                .is_ok_and(|r| r.result.is_ok())
            {
                ok = true;
                break;
            }
        }
        m.close();
        ok
    }

    /// Follows hotplug events: probes and starts new ports; removes a port's modem once
    /// it has stayed gone for `grace` (a replug within it just reopens the same task).
    pub async fn follow(
        self: Arc<Self>,
        mut events: mpsc::UnboundedReceiver<PortEvent>,
        grace: Duration,
    ) {
        let pending: Arc<Mutex<HashMap<String, tokio::task::JoinHandle<()>>>> = Arc::default();
        while let Some(ev) = events.recv().await {
            match ev {
                PortEvent::Added(port) => {
                    if let Some(t) = pending.lock().ok().and_then(|mut p| p.remove(&port)) {
                        t.abort();
                    }
                    if self.contains(&port) {
                        info!(port = %port, "port back");
                        continue;
                    }
                    if self.speaks_at(&port).await {
                        info!(port = %port, "new port speaks AT");
                        self.add(&port);
                    } else {
                        info!(port = %port, "new port does not speak AT; ignored");
                    }
                }
                PortEvent::Removed(port) => {
                    if !self.contains(&port) {
                        continue;
                    }
                    info!(port = %port, grace_secs = grace.as_secs(), "port gone");
                    let fleet = self.clone();
                    let p = port.clone();
                    let t = tokio::spawn(async move {
                        tokio::time::sleep(grace).await;
                        fleet.remove(&p).await;
                    });
                    if let Ok(mut m) = pending.lock() {
                        m.insert(port, t);
                    }
                }
            }
        }
    }

    fn find(&self, id: &str) -> Option<(Arc<ModemHandle>, watch::Sender<bool>)> {
        self.entries.lock().ok().and_then(|e| {
            e.iter()
                .find(|(p, _)| p == id)
                .map(|(_, en)| (en.handle.clone(), en.enabled.clone()))
        })
    }
}

impl ModemsView for Fleet {
    fn modems(&self) -> Vec<serde_json::Value> {
        let list: Vec<(String, Arc<ModemHandle>, bool)> = self
            .entries
            .lock()
            .map(|e| {
                e.iter()
                    .map(|(p, en)| (p.clone(), en.handle.clone(), *en.enabled.borrow()))
                    .collect()
            })
            .unwrap_or_default();
        list.iter()
            .map(|(name, h, enabled)| {
                let r = h.report();
                serde_json::json!({
                    "id": name,
                    "enabled": enabled,
                    "state": h.state(),
                    "manufacturer": r.manufacturer,
                    "model": r.model,
                    "imei": r.imei,
                    "iccid": r.iccid,
                    "imsi": r.imsi,
                    "operator": r.operator,
                    "signal": r.signal,
                    "registration": r.registration.map(|g| format!("{g:?}").to_lowercase()),
                    "storage": r.storage,
                })
            })
            .collect()
    }

    fn ready_count(&self) -> usize {
        self.entries.lock().map_or(0, |e| {
            e.iter()
                .filter(|(_, en)| *en.enabled.borrow() && en.handle.state().is_usable())
                .count()
        })
    }

    fn action<'a>(
        &'a self,
        id: &'a str,
        action: &'a str,
    ) -> api::BoxFuture<'a, Option<Result<serde_json::Value, String>>> {
        Box::pin(async move {
            let (h, enabled) = self.find(id)?;
            Some(match action {
                "enable" | "disable" => {
                    let on = action == "enable";
                    enabled.send_replace(on);
                    info!(modem = id, enabled = on, "modem {action}d by the API");
                    Ok(serde_json::json!({"id": id, "enabled": on}))
                }
                "reset" => {
                    // A full modem reset: the port goes away and comes back; the driver
                    // reopens it and brings the modem up again.
                    info!(modem = id, "modem reset by the API");
                    match h.command(Command::new("AT+CFUN=1,1")).await {
                        Ok(_) => Ok(serde_json::json!({"id": id, "reset": true})),
                        Err(e) if e.is_link() => Ok(serde_json::json!({"id": id, "reset": true})),
                        Err(e) => Err(e.to_string()),
                    }
                }
                other => Err(format!("unknown action {other}")),
            })
        })
    }

    fn ussd<'a>(
        &'a self,
        iccid: &'a str,
        code: &'a str,
    ) -> api::BoxFuture<'a, Option<Result<serde_json::Value, String>>> {
        Box::pin(async move {
            let found = self.entries.lock().ok().and_then(|e| {
                e.iter()
                    .find(|(_, en)| en.handle.report().iccid.as_deref() == Some(iccid))
                    .map(|(p, en)| (p.clone(), en.handle.clone()))
            })?;
            let (name, h) = found;
            Some(
                h.ussd(code)
                    .await
                    .map(|r| {
                        serde_json::json!({
                            "iccid": iccid, "modem": name, "status": r.status,
                            "text": r.text, "dcs": r.dcs,
                        })
                    })
                    .map_err(|e| e.to_string()),
            )
        })
    }
}
