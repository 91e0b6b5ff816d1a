//! The bank: PTYs, links, TCP ports and one async IO task per modem.
//!
//! Owns: creating a raw-mode PTY per modem and its `DIR/modem<i>` symlink, moving bytes
//! between the PTY master (and the optional TCP client) and the modem state machine,
//! unplug/replug (PTY closed and link removed, later a new PTY), the timeline of a
//! scenario, and the [`BankHandle`] that the binary, the daemon's `--sim` mode and the
//! tests drive.

use crate::control;
use crate::fault::{Fault, Scenario, ScenarioError};
use crate::modem::{CallRecord, Metrics, Modem, ModemConfig, RingSpec};
use crate::network::{
    IoCmd, IoState, ModemCell, NetMetrics, Network, OutsideMessage, PortLinks, lock,
};
use crate::profile::{Identity, Profile, ProfileName};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use serde::Serialize;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How to build a bank. `BankConfig::default()` is one generic modem in `./hw-sim-links`.
#[derive(Debug, Clone)]
pub struct BankConfig {
    /// How many modems, 1..=4096.
    pub modems: usize,
    /// Directory for the `modem<i>` symlinks (created if missing).
    pub link_dir: PathBuf,
    /// Every modem's firmware family; `Mixed`/`Zoo` cycle by index. A scenario's
    /// `[[modem]]` entry may override it per modem.
    pub profile: ProfileName,
    /// CMGS latency range in ms (`--latency`), used where no latency fault is set.
    pub latency: (u64, u64),
    /// Seed for identities and every random decision (a scenario's `seed` wins).
    pub seed: u64,
    /// Faults, settings and timeline to start with; `None` is a healthy bank.
    pub scenario: Option<Scenario>,
    /// Serve modem i on 127.0.0.1:tcp_base+i too.
    pub tcp_base: Option<u16>,
    /// Bind the HTTP control API here (port 0 picks a free one).
    pub control: Option<SocketAddr>,
}

impl Default for BankConfig {
    fn default() -> Self {
        BankConfig {
            modems: 1,
            link_dir: PathBuf::from("hw-sim-links"),
            profile: ProfileName::Generic,
            latency: (20, 20),
            seed: 0,
            scenario: None,
            tcp_base: None,
            control: None,
        }
    }
}

/// Why a bank could not start or refused a request.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    /// Opening or configuring a PTY failed.
    #[error("PTY: {0}")]
    Pty(#[from] nix::Error),
    /// A file or socket operation failed (what, cause): link directory, links, TCP or
    /// control listener.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The scenario is invalid or names a modem beyond the bank.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A bad [`BankConfig`] value, or an inbound message that cannot be injected.
    #[error("bad config: {0}")]
    Config(String),
    /// No modem with that index (HTTP 404 in the control API).
    #[error("no such modem {0}")]
    NoModem(usize),
    /// A fault with values out of range ([`Fault::validate`]).
    #[error("invalid fault: {0}")]
    Fault(String),
}

/// One tty of a device, as `GET /modems` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PortInfo {
    /// `modem<i>-if<NN>` (`modem<i>` for a single-port modem).
    pub name: String,
    /// The stable symlink.
    pub path: PathBuf,
    /// The current `/dev/pts/N`, absent while unplugged.
    pub pty: Option<PathBuf>,
    /// USB interface number of the real device.
    pub iface: u8,
    /// `at_primary`, `at_secondary`, `qcdm`, `nmea`, `audio` or `diag`.
    pub role: &'static str,
    /// Answers AT commands.
    pub at: bool,
    /// Gets URCs (`+CMTI`, `RING`, `^RSSI`…) by default.
    pub urcs: bool,
}

/// What `GET /modems` shows of one modem.
#[derive(Debug, Clone, Serialize)]
pub struct ModemInfo {
    /// Position in the bank, from 0.
    pub index: usize,
    /// The stable symlink `DIR/modem<i>`.
    pub path: PathBuf,
    /// The current `/dev/pts/N`, absent while unplugged.
    pub pty: Option<PathBuf>,
    /// The SIM's number, E.164 with `+`; other modems and outside senders reach it here.
    pub msisdn: String,
    /// The SIM's IMSI (`+CIMI`).
    pub imsi: String,
    /// The SIM's ICCID (`+CCID`), 19 digits.
    pub iccid: String,
    /// The modem's IMEI (`+CGSN`), 15 digits.
    pub imei: String,
    /// The profile name (`huawei`, `quectel-ec25`, …), `Mixed`/`Zoo` resolved.
    pub profile: &'static str,
    /// `ready`, `roaming`, `searching`, `denied`, `not_registered`, `sim_pin`,
    /// `sim_puk`, `sim_blocked`, `sim_busy`, `radio_off`, `hung` or `unplugged`.
    pub state: String,
    /// The 127.0.0.1 port that also serves this modem; `None` without
    /// [`BankConfig::tcp_base`].
    pub tcp_port: Option<u16>,
    /// Line speed of the real device (data only: a PTY has no baud rate).
    pub nominal_baud: u32,
    /// Every tty of the device, primary AT port included, in interface order.
    pub ports: Vec<PortInfo>,
}

/// Per-modem counters of `GET /metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct ModemMetrics {
    /// Position in the bank, from 0.
    pub index: usize,
    /// The modem's counters (flattened into this object in JSON).
    #[serde(flatten)]
    pub counts: Metrics,
}

/// Everything `GET /metrics` reports: counters per modem and for the network.
#[derive(Debug, Clone, Serialize)]
pub struct BankMetrics {
    /// One entry per modem, by index.
    pub modems: Vec<ModemMetrics>,
    /// Routing, status-report and redelivery counters.
    pub network: NetMetrics,
}

/// The shared core behind a [`BankHandle`] and the control API.
pub struct BankCore {
    /// The modems and the network between them.
    pub network: Arc<Network>,
    /// [`BankConfig::tcp_base`], for [`ModemInfo::tcp_port`].
    pub tcp_base: Option<u16>,
}

impl BankCore {
    /// What `GET /modems` shows, by index.
    pub fn modems(&self) -> Vec<ModemInfo> {
        let now = Instant::now();
        self.network
            .cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let io = lock(&c.io).clone();
                let m = lock(&c.modem);
                ModemInfo {
                    index: i,
                    path: c.link.clone(),
                    pty: io.pty.clone(),
                    msisdn: m.identity.msisdn.clone(),
                    imsi: m.identity.imsi.clone(),
                    iccid: m.identity.iccid.clone(),
                    imei: m.identity.imei.clone(),
                    profile: m.profile.name.as_str(),
                    state: if io.online {
                        m.state(now).to_string()
                    } else {
                        "unplugged".to_string()
                    },
                    tcp_port: self.tcp_base.map(|b| b + i as u16),
                    nominal_baud: m.profile.quirks.nominal_baud,
                    ports: c
                        .ports
                        .iter()
                        .enumerate()
                        .map(|(k, p)| {
                            let path = p.links.last().cloned().unwrap_or_else(|| c.link.clone());
                            PortInfo {
                                name: path
                                    .file_name()
                                    .map(|n| n.to_string_lossy().into_owned())
                                    .unwrap_or_default(),
                                path,
                                pty: io.ports.get(k).cloned().flatten(),
                                iface: p.spec.iface,
                                role: p.spec.role.as_str(),
                                at: p.spec.role.is_at(),
                                urcs: p.spec.urcs,
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    fn cell(&self, i: usize) -> Result<&Arc<ModemCell>, BankError> {
        self.network.cells.get(i).ok_or(BankError::NoModem(i))
    }

    /// Validates and applies a fault to modem `i`; returns its standing faults
    /// afterwards.
    pub fn set_fault(&self, i: usize, f: Fault) -> Result<Vec<Fault>, BankError> {
        f.validate().map_err(BankError::Fault)?;
        let c = self.cell(i)?;
        let (events, faults) = {
            let mut m = lock(&c.modem);
            m.apply_fault(f, Instant::now());
            (m.take_events(), m.faults())
        };
        for e in events {
            self.network.on_event(i, e);
        }
        c.notify.notify_one();
        Ok(faults)
    }

    /// The standing faults of modem `i` (one-shot actions are not kept).
    pub fn faults(&self, i: usize) -> Result<Vec<Fault>, BankError> {
        Ok(lock(&self.cell(i)?.modem).faults())
    }

    /// Heals modem `i`: drops every standing fault, unlocks the SIM, ends a hang and
    /// restores the SMSC and the profile's storage size.
    pub fn clear_faults(&self, i: usize) -> Result<(), BankError> {
        let c = self.cell(i)?;
        lock(&c.modem).clear_faults(Instant::now());
        c.notify.notify_one();
        Ok(())
    }

    /// Starts an incoming call on modem `i`; returns the call id.
    pub fn ring(&self, i: usize, spec: RingSpec) -> Result<u64, BankError> {
        let f = Fault::Ring {
            from: spec.from.clone(),
            count: spec.count,
            interval_ms: spec.interval_ms,
            cms_error: spec.cms_error,
        };
        f.validate().map_err(BankError::Fault)?;
        let c = self.cell(i)?;
        let id = lock(&c.modem).ring(spec, Instant::now());
        c.notify.notify_one();
        Ok(id)
    }

    /// The calls modem `i` saw: who rang, how often, and how each ended.
    pub fn calls(&self, i: usize) -> Result<Vec<CallRecord>, BankError> {
        Ok(lock(&self.cell(i)?.modem).calls())
    }

    /// An SMS from outside (`from`: a number or an alphanumeric sender) to modem `i`;
    /// returns the number of parts.
    pub fn inject_inbound(&self, i: usize, from: &str, text: &str) -> Result<usize, BankError> {
        self.cell(i)?;
        self.network
            .inject(i, from, text)
            .map_err(BankError::Config)
    }

    /// A snapshot of every counter.
    pub fn metrics(&self) -> BankMetrics {
        BankMetrics {
            modems: self
                .network
                .cells
                .iter()
                .enumerate()
                .map(|(i, c)| ModemMetrics {
                    index: i,
                    counts: lock(&c.modem).metrics.clone(),
                })
                .collect(),
            network: self.network.metrics(),
        }
    }
}

/// A running bank. Dropping it stops the modems and removes the links too; `shutdown`
/// does so and waits.
pub struct BankHandle {
    core: Arc<BankCore>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    control_addr: Option<SocketAddr>,
    links: Vec<PathBuf>,
}

/// Entry point of the in-process API.
pub struct Bank;

impl Bank {
    /// Starts a bank on the current tokio runtime; when it returns, every link exists.
    pub async fn start(cfg: BankConfig) -> Result<BankHandle, BankError> {
        if cfg.modems == 0 || cfg.modems > 4096 {
            return Err(BankError::Config("modems must be 1..=4096".into()));
        }
        if cfg.latency.0 > cfg.latency.1 {
            return Err(BankError::Config("latency MIN > MAX".into()));
        }
        let scenario = cfg.scenario.clone().unwrap_or_default();
        scenario.check_modems(cfg.modems)?;
        let seed = scenario.seed.unwrap_or(cfg.seed);
        std::fs::create_dir_all(&cfg.link_dir)
            .map_err(|e| BankError::Io(cfg.link_dir.display().to_string(), e))?;
        let now = Instant::now();
        let mut cells = Vec::with_capacity(cfg.modems);
        let mut ctl_rxs = Vec::with_capacity(cfg.modems);
        let mut links = Vec::with_capacity(cfg.modems);
        for i in 0..cfg.modems {
            let ms = scenario.modem.iter().filter(|m| m.index == i);
            let mut profile = cfg.profile.for_index(i);
            let mut faults = Vec::new();
            for m in ms {
                if let Some(p) = m.profile {
                    profile = p.for_index(i);
                }
                faults.extend(m.faults.iter().cloned());
            }
            let mut profile = Profile::get(profile);
            if scenario.single_port {
                profile.quirks.ports = crate::zoo::SINGLE;
            }
            let link = cfg.link_dir.join(format!("modem{i}"));
            let multi = profile.quirks.ports.len() > 1;
            let mut primary = 0;
            let ports: Vec<PortLinks> = profile
                .quirks
                .ports
                .iter()
                .enumerate()
                .map(|(k, spec)| {
                    let mut l = Vec::new();
                    if spec.role == crate::zoo::PortRole::AtPrimary {
                        primary = k;
                        l.push(link.clone());
                    }
                    if multi {
                        l.push(cfg.link_dir.join(format!("modem{i}-if{:02}", spec.iface)));
                    }
                    PortLinks {
                        spec: *spec,
                        links: l,
                    }
                })
                .collect();
            for p in &ports {
                links.extend(p.links.iter().cloned());
            }
            let modem = Modem::new(
                ModemConfig {
                    index: i,
                    identity: Identity::new(seed, i),
                    profile,
                    seed,
                    latency: cfg.latency,
                    network: scenario.network.clone(),
                    faults,
                },
                now,
            );
            let (tx, rx) = mpsc::unbounded_channel();
            cells.push(Arc::new(ModemCell {
                modem: std::sync::Mutex::new(modem),
                notify: tokio::sync::Notify::new(),
                io: std::sync::Mutex::new(IoState::default()),
                ctl: tx,
                link,
                ports,
                primary,
            }));
            ctl_rxs.push(rx);
        }
        let network = Arc::new(Network::new(scenario.network.clone(), cells, seed));
        let core = Arc::new(BankCore {
            network: Arc::clone(&network),
            tcp_base: cfg.tcp_base,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // Open every PTY before returning so callers can use the links at once.
        let mut ptys = Vec::with_capacity(cfg.modems);
        for cell in &network.cells {
            let p = match open_ports(cell) {
                Ok(p) => p,
                Err(e) => {
                    for l in &links {
                        let _ = std::fs::remove_file(l);
                    }
                    return Err(e);
                }
            };
            ptys.push(p);
        }
        for (i, (pty, ctl_rx)) in ptys.into_iter().zip(ctl_rxs).enumerate() {
            let (tcp_tx, tcp_rx) = mpsc::channel(64);
            if let Some(base) = cfg.tcp_base {
                let port = base
                    .checked_add(i as u16)
                    .ok_or_else(|| BankError::Config("tcp port overflow".into()))?;
                let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .map_err(|e| BankError::Io(format!("bind 127.0.0.1:{port}"), e))?;
                tasks.push(tokio::spawn(tcp_accept(l, tcp_tx, shutdown_rx.clone())));
            }
            let net = Arc::clone(&network);
            tasks.push(tokio::spawn(run_modem(
                net,
                i,
                pty,
                ctl_rx,
                tcp_rx,
                shutdown_rx.clone(),
            )));
        }
        for t in &scenario.timeline {
            let core2 = Arc::clone(&core);
            let t = t.clone();
            let mut sd = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(t.at_ms)) => {
                        if let Err(e) = core2.set_fault(t.modem, t.fault) {
                            eprintln!("hw-sim: timeline: {e}");
                        }
                    }
                    _ = sd.changed() => {}
                }
            }));
        }
        let mut control_addr = None;
        if let Some(addr) = cfg.control {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| BankError::Io(format!("bind {addr}"), e))?;
            control_addr = l.local_addr().ok();
            let router = control::router(Arc::clone(&core));
            let mut sd = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                let r = axum::serve(l, router)
                    .with_graceful_shutdown(async move {
                        let _ = sd.changed().await;
                    })
                    .await;
                if let Err(e) = r {
                    eprintln!("hw-sim: control API: {e}");
                }
            }));
        }
        Ok(BankHandle {
            core,
            tasks,
            shutdown,
            control_addr,
            links,
        })
    }
}

impl BankHandle {
    /// Every modem's identity, links and state, by index.
    pub fn modems(&self) -> Vec<ModemInfo> {
        self.core.modems()
    }
    /// Messages that left the bank for outside numbers, reassembled.
    pub fn messages(&self) -> Vec<OutsideMessage> {
        self.core.network.outside()
    }
    /// Forgets the messages [`messages`](Self::messages) lists.
    pub fn clear_messages(&self) {
        self.core.network.clear_outside()
    }
    /// An SMS from `from` to modem `modem`; returns the number of parts.
    pub fn inject_inbound(&self, modem: usize, from: &str, text: &str) -> Result<usize, BankError> {
        self.core.inject_inbound(modem, from, text)
    }
    /// Applies a fault; returns the standing faults of that modem afterwards.
    pub fn set_fault(&self, modem: usize, f: Fault) -> Result<Vec<Fault>, BankError> {
        self.core.set_fault(modem, f)
    }
    /// The standing faults of `modem`.
    pub fn faults(&self, modem: usize) -> Result<Vec<Fault>, BankError> {
        self.core.faults(modem)
    }
    /// Heals `modem`: drops every standing fault, unlocks the SIM and ends a hang.
    pub fn clear_faults(&self, modem: usize) -> Result<(), BankError> {
        self.core.clear_faults(modem)
    }
    /// An incoming call to `modem` (`RING`/`+CLIP` until `ATH`/`AT+CHUP` or `count`
    /// rings); returns the call id.
    pub fn ring(&self, modem: usize, spec: RingSpec) -> Result<u64, BankError> {
        self.core.ring(modem, spec)
    }
    /// Every call `modem` saw, with how it ended (`hung_up` by `ATH`/`AT+CHUP`,
    /// `missed`…).
    pub fn calls(&self, modem: usize) -> Result<Vec<CallRecord>, BankError> {
        self.core.calls(modem)
    }
    /// Where the control API listens (the real port when 0 was asked for); `None`
    /// without [`BankConfig::control`].
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control_addr
    }
    /// A snapshot of every counter, as `GET /metrics` reports them.
    pub fn metrics(&self) -> BankMetrics {
        self.core.metrics()
    }
    /// Stops every modem, closes the PTYs and removes the links.
    pub async fn shutdown(mut self) {
        self.stop();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.remove_links();
    }

    fn stop(&self) {
        self.core.network.closed.store(true, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
    }

    fn remove_links(&self) {
        for l in &self.links {
            let _ = std::fs::remove_file(l);
        }
    }
}

impl Drop for BankHandle {
    fn drop(&mut self) {
        self.stop();
        for t in &self.tasks {
            t.abort();
        }
        self.remove_links();
    }
}

/// A PTY pair: the master split for async read/write, our own slave fd kept open (in
/// the guard) so the master never sees EIO when clients close and reopen the port.
struct Pty {
    reader: pipe::Receiver,
    writer: pipe::Sender,
    guard: PtyGuard,
}

/// Keeps the slave open and owns the links; dropping it removes the links that still
/// point at this PTY.
struct PtyGuard {
    _slave: OwnedFd,
    path: PathBuf,
    links: Vec<PathBuf>,
}

impl Pty {
    fn open(links: &[PathBuf]) -> Result<Pty, BankError> {
        let r = nix::pty::openpty(None, None)?;
        let mut t = tcgetattr(&r.slave)?;
        cfmakeraw(&mut t);
        tcsetattr(&r.slave, SetArg::TCSANOW, &t)?;
        let path = nix::unistd::ttyname(&r.slave)?;
        let fl = OFlag::from_bits_truncate(fcntl(&r.master, FcntlArg::F_GETFL)?);
        fcntl(&r.master, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
        let rd = r
            .master
            .try_clone()
            .map_err(|e| BankError::Io("dup master".into(), e))?;
        // Safe wrappers over the fd: tokio's pipe types only need a non-blocking fd
        // that epoll accepts, which a PTY master is.
        let reader = pipe::Receiver::from_owned_fd_unchecked(rd)
            .map_err(|e| BankError::Io("register".into(), e))?;
        let writer = pipe::Sender::from_owned_fd_unchecked(r.master)
            .map_err(|e| BankError::Io("register".into(), e))?;
        let guard = PtyGuard {
            _slave: r.slave,
            path,
            links: links.to_vec(),
        };
        for link in links {
            // Publish atomically: a client never sees a half-made link.
            let tmp = link.with_extension("tmp");
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&guard.path, &tmp)
                .map_err(|e| BankError::Io(tmp.display().to_string(), e))?;
            std::fs::rename(&tmp, link)
                .map_err(|e| BankError::Io(link.display().to_string(), e))?;
        }
        Ok(Pty {
            reader,
            writer,
            guard,
        })
    }
}

impl Drop for PtyGuard {
    fn drop(&mut self) {
        // Only remove a link if it still points at this PTY.
        for l in &self.links {
            if std::fs::read_link(l).is_ok_and(|p| p == self.path) {
                let _ = std::fs::remove_file(l);
            }
        }
    }
}

/// Opens every tty of a device and publishes their links; marks the device online.
fn open_ports(cell: &ModemCell) -> Result<Vec<Pty>, BankError> {
    let mut v = Vec::with_capacity(cell.ports.len());
    for p in &cell.ports {
        v.push(Pty::open(&p.links)?);
    }
    *lock(&cell.io) = IoState {
        online: true,
        pty: v.get(cell.primary).map(|p| p.guard.path.clone()),
        ports: v.iter().map(|p| Some(p.guard.path.clone())).collect(),
    };
    Ok(v)
}

enum TcpMsg {
    Connected(mpsc::Sender<Vec<u8>>),
    Data(Vec<u8>),
    Gone,
}

/// ser2net-like: one client at a time per port; a second one is refused.
async fn tcp_accept(
    l: tokio::net::TcpListener,
    to_modem: mpsc::Sender<TcpMsg>,
    mut sd: watch::Receiver<bool>,
) {
    let busy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        let (sock, _) = tokio::select! {
            r = l.accept() => match r { Ok(x) => x, Err(_) => { tokio::time::sleep(Duration::from_millis(100)).await; continue } },
            _ = sd.changed() => return,
        };
        if busy.swap(true, Ordering::SeqCst) {
            drop(sock);
            continue;
        }
        let (mut rd, mut wr) = sock.into_split();
        let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(256);
        if to_modem.send(TcpMsg::Connected(out_tx)).await.is_err() {
            return;
        }
        tokio::spawn(async move {
            while let Some(b) = out_rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
        });
        let tx = to_modem.clone();
        let busy2 = Arc::clone(&busy);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(TcpMsg::Data(buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send(TcpMsg::Gone).await;
            busy2.store(false, Ordering::SeqCst);
        });
    }
}

enum Exit {
    Shutdown,
    Replug(u64),
}

/// Output kept for a host that is not reading; beyond this the oldest bytes are lost,
/// as a real modem's UART buffer would overflow.
const MAX_PENDING: usize = 64 * 1024;

async fn run_modem(
    net: Arc<Network>,
    i: usize,
    first: Vec<Pty>,
    mut ctl: mpsc::UnboundedReceiver<IoCmd>,
    mut tcp: mpsc::Receiver<TcpMsg>,
    mut sd: watch::Receiver<bool>,
) {
    let Some(cell) = net.cells.get(i).cloned() else {
        return;
    };
    let mut ptys = Some(first);
    let mut tcp_out: Option<mpsc::Sender<Vec<u8>>> = None;
    loop {
        let Some(p) = ptys.take() else { return };
        let exit = serve(&net, &cell, i, p, &mut ctl, &mut tcp, &mut tcp_out, &mut sd).await;
        *lock(&cell.io) = IoState::default();
        tcp_out = None;
        match exit {
            Exit::Shutdown => return,
            Exit::Replug(down) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(down)) => {}
                    _ = sd.changed() => return,
                }
                loop {
                    match open_ports(&cell) {
                        Ok(np) => {
                            lock(&cell.modem).replugged(Instant::now());
                            ptys = Some(np);
                            break;
                        }
                        Err(e) => {
                            eprintln!("hw-sim: modem{i}: cannot recreate PTY: {e}");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                _ = sd.changed() => return,
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Reads one tty and hands what arrives to the device's IO task.
async fn port_reader(k: usize, mut r: pipe::Receiver, tx: mpsc::Sender<(usize, Vec<u8>)>) {
    let mut buf = [0u8; 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(n) if n > 0 => {
                if tx.send((k, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Writes what the device says on one tty, keeping up to [`MAX_PENDING`] bytes for a
/// host that does not read. When the channel closes it flushes for a moment (so the
/// `OK` of `AT+CFUN=1,1` reaches the host before the port goes) and hands the master
/// back, so that it closes only when the caller drops it.
async fn port_writer(
    mut w: pipe::Sender,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) -> Option<pipe::Sender> {
    let mut pending: Vec<u8> = Vec::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(b) => pending.extend_from_slice(&b),
                None => return Some(w),
            }
        } else {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(b) => pending.extend_from_slice(&b),
                    None => {
                        let _ = tokio::time::timeout(
                            Duration::from_millis(200),
                            w.write_all(&pending),
                        )
                        .await;
                        return Some(w);
                    }
                },
                r = w.writable() => {
                    if r.is_err() {
                        return None;
                    }
                }
            }
        }
        while !pending.is_empty() {
            match w.try_write(&pending) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    pending.drain(..n);
                }
            }
        }
        if pending.len() > MAX_PENDING {
            let cut = pending.len() - MAX_PENDING;
            pending.drain(..cut);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    net: &Arc<Network>,
    cell: &Arc<ModemCell>,
    i: usize,
    ptys: Vec<Pty>,
    ctl: &mut mpsc::UnboundedReceiver<IoCmd>,
    tcp: &mut mpsc::Receiver<TcpMsg>,
    tcp_out: &mut Option<mpsc::Sender<Vec<u8>>>,
    sd: &mut watch::Receiver<bool>,
) -> Exit {
    let n = ptys.len();
    let primary = cell.primary;
    let (in_tx, mut in_rx) = mpsc::channel::<(usize, Vec<u8>)>(64);
    let mut readers = Vec::with_capacity(n);
    let mut writers = Vec::with_capacity(n);
    let mut out_tx = Vec::with_capacity(n);
    let mut guards = Vec::with_capacity(n);
    for (k, p) in ptys.into_iter().enumerate() {
        readers.push(tokio::spawn(port_reader(k, p.reader, in_tx.clone())));
        let (tx, rx) = mpsc::unbounded_channel();
        writers.push(tokio::spawn(port_writer(p.writer, rx)));
        out_tx.push(tx);
        guards.push(p.guard);
    }
    drop(in_tx);
    let exit = loop {
        let deadline = lock(&cell.modem).poll_timeout();
        let mut input: Option<(usize, Vec<u8>)> = None;
        let mut timed_out = false;
        tokio::select! {
            m = in_rx.recv() => input = m,
            _ = cell.notify.notified() => {}
            _ = sleep_opt(deadline) => timed_out = true,
            c = ctl.recv() => {
                if let Some(IoCmd::Replug { down_ms }) = c {
                    break Exit::Replug(down_ms);
                }
            }
            // Without --tcp-base the sender is gone and recv() would return None at once.
            m = tcp.recv(), if !tcp.is_closed() || !tcp.is_empty() => match m {
                Some(TcpMsg::Connected(tx)) => *tcp_out = Some(tx),
                Some(TcpMsg::Data(d)) => input = Some((primary, d)),
                Some(TcpMsg::Gone) => *tcp_out = None,
                None => {}
            },
            _ = sd.changed() => break Exit::Shutdown,
        }
        let (outs, events) = {
            let mut m = lock(&cell.modem);
            let now = Instant::now();
            if timed_out {
                m.handle_timeout(now);
            }
            if let Some((k, d)) = &input {
                m.input_port(*k, d, now);
            }
            let outs: Vec<Vec<u8>> = (0..n).map(|k| m.take_port_output(k)).collect();
            (outs, m.take_events())
        };
        for (k, out) in outs.into_iter().enumerate() {
            if out.is_empty() {
                continue;
            }
            if k == primary
                && let Some(tx) = tcp_out.as_ref()
            {
                let _ = tx.try_send(out.clone());
            }
            if let Some(tx) = out_tx.get(k) {
                let _ = tx.send(out);
            }
        }
        let mut replug = None;
        for e in events {
            match e {
                crate::modem::Event::Replug { down_ms } => replug = Some(down_ms),
                e => net.on_event(i, e),
            }
        }
        if let Some(d) = replug {
            break Exit::Replug(d);
        }
    };
    for r in &readers {
        r.abort();
    }
    drop(out_tx);
    match exit {
        Exit::Shutdown => {
            for w in &writers {
                w.abort();
            }
        }
        Exit::Replug(_) => {
            // Let the final OK of AT+CFUN=1,1 reach the host before the port goes.
            let mut masters = Vec::with_capacity(writers.len());
            for w in writers {
                if let Ok(Ok(Some(m))) = tokio::time::timeout(Duration::from_millis(300), w).await {
                    masters.push(m);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(masters);
        }
    }
    *lock(&cell.io) = IoState::default();
    drop(guards);
    exit
}

async fn sleep_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
