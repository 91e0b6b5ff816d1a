//! The modems the daemon runs: spawning a task per port (at start and when hotplug
//! finds a new one that speaks AT), enable/disable/reset from the API, and removing a
//! modem whose port stayed gone. A SIM is known by its ICCID wherever it is plugged,
//! so counters and quotas follow it to another port or stick.
//!
//! One modem per device: a USB stick shows several ttys, often two that speak AT and
//! share one SIM and one radio. Ports are grouped by the IMEI they answer `AT+CGSN`
//! with; one port of a device is driven (the primary) and the others are kept as
//! spares — never driven, so no SIM is ever driven through two ports — and one is
//! promoted if the primary's port goes away for good. Real sticks send URCs (`+CMTI`,
//! `+CDS`, `RING`) on one AT port only, and which one differs by model and firmware:
//! a spare is listened to (read, never written), and the first message or call URC
//! seen on it makes it the primary, once per device. Ports present at start-up are
//! probed exactly like hot-plugged ones; a port that does not answer AT is probed
//! again later with backoff (a modem still booting, or hung when the daemon started).

use super::bridge::{ModemOutbound, watch_modem};
use super::hotplug::PortEvent;
use super::sink::StoreSink;
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

/// The AT ports of one device (one IMEI).
#[derive(Debug, Clone, Default)]
struct Device {
    primary: String,
    spares: Vec<String>,
    /// The primary was chosen by where URCs arrive: no more swaps.
    settled: bool,
}

/// URCs that real multi-port sticks send on one AT port only: where they arrive is
/// the port to drive.
const ROUTED_URCS: &[&str] = &[
    "+CMTI:", "+CMT:", "+CDS:", "+CDSI:", "RING", "+CRING:", "+CLIP:", "+CBM:",
];

/// Whether a line from a spare port is one of [`ROUTED_URCS`].
fn is_routed_urc(line: &str) -> bool {
    let l = line.trim();
    ROUTED_URCS
        .iter()
        .any(|p| l.starts_with(p) && (p.ends_with(':') || l.len() == p.len()))
}

/// What probing a port found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probed {
    /// It does not answer `AT`.
    NoAt,
    /// It speaks AT; the IMEI if the modem told it.
    At(Option<String>),
}

/// What [`Fleet::admit`] did with a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// A modem task drives it.
    Primary,
    /// Another port of the same device is driven; this one is kept in reserve.
    Spare {
        /// The port that is driven.
        primary: String,
    },
    /// It does not answer AT (probed again later).
    Ignored,
    /// Already known.
    Known,
}

/// Awaits every future (a tiny `join_all`: tokio has none for borrowed futures).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: Vec<F>) {
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    std::future::poll_fn(move |cx| {
        futs.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futs.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// The IMEI in an `AT+CGSN` answer (bare or `+CGSN: "…"`), if it looks like one.
fn imei_of(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|l| {
        let v = l
            .trim()
            .trim_start_matches("+CGSN:")
            .trim()
            .trim_matches('"');
        ((14..=17).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.to_owned())
    })
}

/// Everything needed to start a modem task.
pub struct Fleet {
    entries: Mutex<Vec<(String, Entry)>>,
    /// Devices by IMEI: which port is driven, which are spares.
    devices: Mutex<HashMap<String, Device>>,
    /// Ports that did not answer AT, with their re-probe task.
    ignored: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Spare ports' listeners (read-only, for routed URCs).
    listeners: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    cfg: Config,
    rejected: RejectedPins,
    sink: Arc<StoreSink>,
    dispatcher: Dispatcher,
    store: Store,
    webhooks: Arc<Webhooks>,
}

impl Fleet {
    /// A fleet with no modems yet; [`Fleet::add`] and [`Fleet::admit`] bring them up.
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
            devices: Mutex::default(),
            ignored: Mutex::default(),
            listeners: Mutex::default(),
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
            timeouts: self.cfg.timeouts(),
            pins: m.pins.clone().into_iter().collect(),
            rejected_pins: self.rejected.clone(),
            smsc_overrides: m.smsc.clone().into_iter().collect(),
            init: m
                .port_config(port)
                .map(|p| p.init.clone())
                .unwrap_or_default(),
            ..ModemConfig::default()
        }
    }

    /// Whether a modem task drives `port`.
    pub fn contains(&self, port: &str) -> bool {
        self.entries
            .lock()
            .is_ok_and(|e| e.iter().any(|(p, _)| p == port))
    }

    /// How many modem tasks run.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// Whether no modem task runs.
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
            crate::telemetry::modem_gone(port);
            self.dispatcher.modem_removed(port.to_owned());
            // The dispatcher drops its handle a moment later: then the task is shut
            // down in order. A task still shared after that is aborted — it must stop
            // either way: its port may stay (a swap to another AT port of the same
            // device), and two tasks must never read one SIM.
            let mut h = entry.handle;
            for _ in 0..50 {
                match Arc::try_unwrap(h) {
                    Ok(owned) => {
                        owned.shutdown().await;
                        info!(port, "modem removed");
                        return;
                    }
                    Err(shared) => h = shared,
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            h.abort();
            info!(port, "modem removed (task aborted)");
        }
    }

    /// Stops every task (shutdown), all at once: each gets at most the modem task's
    /// shutdown grace, so a bank of hung modems stops as fast as one.
    pub async fn remove_all(&self) {
        for tasks in [&self.ignored, &self.listeners] {
            if let Ok(mut m) = tasks.lock() {
                for (_, t) in m.drain() {
                    t.abort();
                }
            }
        }
        let ports: Vec<String> = self
            .entries
            .lock()
            .map(|e| e.iter().map(|(p, _)| p.clone()).collect())
            .unwrap_or_default();
        let mut all = Vec::with_capacity(ports.len());
        for p in &ports {
            all.push(self.remove(p));
        }
        futures_join_all(all).await;
    }

    /// Opens a port briefly: does it answer `AT`, and which device (IMEI) is it?
    pub async fn probe(&self, port: &str) -> Probed {
        // Bounded: a port that never answers (a stick's voice or GPS port) must not
        // hold up the others or the daemon's start.
        tokio::time::timeout(Duration::from_secs(8), self.probe_inner(port))
            .await
            .unwrap_or(Probed::NoAt)
    }

    async fn probe_inner(&self, port: &str) -> Probed {
        let Some(opener) = self.opener(port) else {
            return Probed::NoAt;
        };
        let timeout = Duration::from_millis(self.cfg.modems.command_timeout_ms.min(1_500));
        let base = self.modem_config(port);
        let cfg = ModemConfig {
            timeouts: crate::config::Timeouts {
                command: timeout,
                ..base.timeouts
            },
            sweep: false,
            session: crate::at::SessionConfig {
                drain_quiet: Duration::from_millis(200),
                drain_max: Duration::from_secs(1),
                resync_timeout: timeout.min(Duration::from_secs(1)),
                resync_attempts: 1,
                ..base.session.clone()
            },
            ..base
        };
        let mut m = Modem::new(opener, cfg, None);
        if m.open().await.is_err() {
            return Probed::NoAt;
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
        if !ok {
            m.close();
            return Probed::NoAt;
        }
        let imei = match m.exec(Command::cgsn()).await {
            Ok(r) if r.result.is_ok() => imei_of(&r.lines),
            _ => None,
        };
        m.close();
        Probed::At(imei)
    }

    /// Probes a port and starts driving it, or keeps it as a spare of a device already
    /// driven through another port, or ignores it (and probes it again later) if it
    /// does not answer AT.
    pub async fn admit(self: &Arc<Self>, port: &str) -> Admitted {
        if self.contains(port) || self.spare_of(port).is_some() {
            return Admitted::Known;
        }
        let probed = self.probe(port).await;
        self.place(port, probed)
    }

    /// Admits ports found together (at start-up) in a deterministic order: all probed
    /// at once, then placed by path, so a device's primary does not depend on which
    /// of its ports answered first.
    pub async fn admit_all(self: &Arc<Self>, ports: &[String]) {
        let mut set = tokio::task::JoinSet::new();
        for (i, p) in ports.iter().enumerate() {
            let (fleet, p) = (self.clone(), p.clone());
            set.spawn(async move { (i, p.clone(), fleet.probe(&p).await) });
        }
        let mut found = Vec::new();
        while let Some(Ok(r)) = set.join_next().await {
            found.push(r);
        }
        found.sort_by_key(|(i, _, _)| *i);
        for (_, p, probed) in found {
            self.place(&p, probed);
        }
    }

    fn place(self: &Arc<Self>, port: &str, probed: Probed) -> Admitted {
        match probed {
            Probed::NoAt => {
                info!(
                    port,
                    "port does not answer AT; ignored (probed again later)"
                );
                self.reprobe_later(port);
                Admitted::Ignored
            }
            Probed::At(imei) => {
                if let Some(t) = self.ignored.lock().ok().and_then(|mut m| m.remove(port)) {
                    t.abort();
                }
                if let Some(imei) = imei {
                    let mut devices = match self.devices.lock() {
                        Ok(d) => d,
                        Err(_) => return Admitted::Ignored,
                    };
                    if let Some(d) = devices.get_mut(&imei) {
                        if d.primary != port && !d.spares.iter().any(|s| s == port) {
                            d.spares.push(port.to_owned());
                        }
                        let primary = d.primary.clone();
                        let settled = d.settled;
                        drop(devices);
                        if !settled {
                            self.listen(port);
                        }
                        info!(
                            port,
                            primary = %primary,
                            imei = %imei,
                            "another AT port of a device already driven: kept as a spare"
                        );
                        return Admitted::Spare { primary };
                    }
                    devices.insert(
                        imei,
                        Device {
                            primary: port.to_owned(),
                            ..Device::default()
                        },
                    );
                }
                self.add(port);
                Admitted::Primary
            }
        }
    }

    /// The primary of the device `port` is a spare of.
    fn spare_of(&self, port: &str) -> Option<String> {
        self.devices.lock().ok().and_then(|d| {
            d.values()
                .find(|d| d.spares.iter().any(|s| s == port))
                .map(|d| d.primary.clone())
        })
    }

    /// Probes a port that did not answer AT again, with backoff (2 s doubling to
    /// 10 min), while it exists: a modem that was rebooting or hung at the first probe
    /// is taken soon after; a GPS or diagnostics port costs one `AT` every 10 min.
    fn reprobe_later(self: &Arc<Self>, port: &str) {
        let fleet = Arc::downgrade(self);
        let p = port.to_owned();
        let task = tokio::spawn(async move {
            let mut wait = Duration::from_secs(2);
            loop {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(600));
                let Some(fleet) = fleet.upgrade() else {
                    return;
                };
                if !p.starts_with("tcp://") && !std::path::Path::new(&p).exists() {
                    return;
                }
                let probed = fleet.probe(&p).await;
                if probed != Probed::NoAt {
                    if let Ok(mut m) = fleet.ignored.lock() {
                        m.remove(&p);
                    }
                    info!(port = %p, "port answers AT now");
                    fleet.place(&p, probed);
                    return;
                }
            }
        });
        if let Ok(mut m) = self.ignored.lock()
            && let Some(old) = m.insert(port.to_owned(), task)
        {
            old.abort();
        }
    }

    /// Reads a spare port (never writes it) until a routed URC arrives there, then
    /// makes it its device's primary.
    fn listen(self: &Arc<Self>, port: &str) {
        let Some(opener) = self.opener(port) else {
            return;
        };
        let fleet = Arc::downgrade(self);
        let p = port.to_owned();
        let task = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let Ok(mut link) = crate::modem::Opener::open(opener.as_ref()).await else {
                return;
            };
            let mut buf = [0u8; 512];
            let mut line = Vec::new();
            loop {
                let n = match link.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                for &b in &buf[..n] {
                    if b == b'\r' || b == b'\n' {
                        if is_routed_urc(&String::from_utf8_lossy(&line)) {
                            drop(link);
                            if let Some(f) = fleet.upgrade() {
                                f.swap_to(&p).await;
                            }
                            return;
                        }
                        line.clear();
                    } else if line.len() < 256 {
                        line.push(b);
                    }
                }
            }
        });
        if let Ok(mut m) = self.listeners.lock()
            && let Some(old) = m.insert(port.to_owned(), task)
        {
            old.abort();
        }
    }

    fn stop_listening(&self, port: &str) {
        if let Some(t) = self.listeners.lock().ok().and_then(|mut m| m.remove(port)) {
            t.abort();
        }
    }

    /// A routed URC arrived on spare `port`: drive it instead of its device's primary
    /// (whose work fails over), once per device.
    async fn swap_to(self: &Arc<Self>, port: &str) {
        let old = self.devices.lock().ok().and_then(|mut d| {
            let dev = d
                .values_mut()
                .find(|d| !d.settled && d.spares.iter().any(|s| s == port))?;
            let old = std::mem::replace(&mut dev.primary, port.to_owned());
            dev.spares.retain(|s| s != port);
            dev.spares.push(old.clone());
            dev.settled = true;
            Some(old)
        });
        let Some(old) = old else {
            return;
        };
        if let Ok(mut m) = self.listeners.lock() {
            m.remove(port);
        }
        info!(
            port,
            was = %old,
            "URCs arrive on this port of the device: driving it instead"
        );
        self.remove(&old).await;
        self.add(port);
    }

    /// A port went away: a spare is forgotten at once, an ignored port's re-probe
    /// stops. (A driven port is removed after the grace period by [`Fleet::follow`].)
    fn port_gone(&self, port: &str) {
        self.stop_listening(port);
        if let Ok(mut d) = self.devices.lock() {
            for dev in d.values_mut() {
                dev.spares.retain(|s| s != port);
            }
        }
        if let Some(t) = self.ignored.lock().ok().and_then(|mut m| m.remove(port)) {
            t.abort();
        }
    }

    /// After a driven port was removed for good: its device's first spare that still
    /// exists becomes the primary.
    fn promote_spare(self: &Arc<Self>, removed: &str) {
        let next = self.devices.lock().ok().and_then(|mut d| {
            let imei = d
                .iter()
                .find(|(_, dev)| dev.primary == removed)
                .map(|(k, _)| k.clone())?;
            let dev = d.get_mut(&imei)?;
            dev.spares
                .retain(|s| s.starts_with("tcp://") || std::path::Path::new(s).exists());
            if dev.spares.is_empty() {
                d.remove(&imei);
                return None;
            }
            let next = dev.spares.remove(0);
            dev.primary = next.clone();
            Some(next)
        });
        if let Some(p) = next {
            info!(port = %p, was = removed, "spare AT port promoted to primary");
            self.stop_listening(&p);
            self.add(&p);
        }
    }

    /// The ports of the device driven through `port`, beside it: its spares.
    fn spares(&self, port: &str) -> Vec<String> {
        self.devices.lock().map_or(Vec::new(), |d| {
            d.values()
                .find(|d| d.primary == port)
                .map(|d| d.spares.clone())
                .unwrap_or_default()
        })
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
                    match self.admit(&port).await {
                        Admitted::Primary => info!(port = %port, "new port speaks AT"),
                        Admitted::Spare { .. } | Admitted::Ignored | Admitted::Known => {}
                    }
                }
                PortEvent::Removed(port) => {
                    if !self.contains(&port) {
                        self.port_gone(&port);
                        continue;
                    }
                    info!(port = %port, grace_secs = grace.as_secs(), "port gone");
                    let fleet = self.clone();
                    let p = port.clone();
                    let t = tokio::spawn(async move {
                        tokio::time::sleep(grace).await;
                        fleet.remove(&p).await;
                        fleet.promote_spare(&p);
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
    fn modems(&self) -> Vec<api::ModemView> {
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
                api::ModemView {
                    id: api::modem_slug(name),
                    port: name.clone(),
                    spare_ports: self.spares(name),
                    calls_rejected: h.calls_rejected(),
                    enabled: *enabled,
                    state: api::ModemStateView::from(&h.state()),
                    manufacturer: r.manufacturer,
                    model: r.model,
                    imei: r.imei,
                    iccid: r.iccid,
                    imsi: r.imsi,
                    operator: r.operator,
                    signal: r.signal.map(api::SignalView::from),
                    registration: r.registration.map(|g| g.name().to_string()),
                    storage: r.storage.map(api::StorageView::from),
                }
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
    ) -> api::BoxFuture<'a, Option<Result<(), String>>> {
        Box::pin(async move {
            let (h, enabled) = self.find(id)?;
            Some(match action {
                "enable" | "disable" => {
                    let on = action == "enable";
                    enabled.send_replace(on);
                    info!(modem = id, enabled = on, "modem {action}d by the API");
                    Ok(())
                }
                "reset" => {
                    // A full modem reset: the port goes away and comes back; the driver
                    // reopens it and brings the modem up again.
                    info!(modem = id, "modem reset by the API");
                    match h.command(Command::new("AT+CFUN=1,1")).await {
                        Ok(_) => Ok(()),
                        Err(e) if e.is_link() => Ok(()),
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
    ) -> api::BoxFuture<'a, Option<Result<api::UssdView, String>>> {
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
                    .map(|r| api::UssdView {
                        iccid: iccid.to_owned(),
                        modem: name,
                        status: r.status,
                        text: r.text,
                        dcs: r.dcs,
                    })
                    .map_err(|e| e.to_string()),
            )
        })
    }
}
