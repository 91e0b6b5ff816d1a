//! `gsmgw probe PORT` and `gsmgw probe --scan GLOB`: bring a modem up through the driver
//! (no sweep, nothing deleted, no sink) and print what it is, as JSON (docs/cli.md).

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Timeouts;

use clap::Args;
use serde_json::{Value, json};

use crate::at::SessionConfig;
use crate::modem::{Endpoint, EndpointOpener, Modem, ModemConfig, ModemError, Opener, Report};

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["port", "scan"]))]
pub(crate) struct ProbeArgs {
    /// A device path (`/dev/ttyUSB2`) or `tcp://host:port`.
    port: Option<String>,
    /// Probe every path matching this glob (`/dev/ttyUSB*`) and say which speak AT.
    #[arg(long, value_name = "GLOB")]
    scan: Option<String>,
    /// PIN to enter if the SIM asks for one (never retried if rejected).
    #[arg(long)]
    pin: Option<String>,
    /// Timeout of each AT command.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    timeout: Duration,
    /// Open the port without TIOCEXCL/flock (another process may use it meanwhile).
    #[arg(long)]
    shared: bool,
    /// Baud rate (serial ports).
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
}

/// The driver configuration of a one-shot command: short timings, no sweep, the PIN
/// (if any) for whatever SIM is inserted.
pub(crate) fn oneshot_config(timeout: Duration, pin: Option<&str>) -> ModemConfig {
    let mut cfg = ModemConfig {
        timeouts: Timeouts {
            command: timeout,
            storage: timeout.max(Duration::from_secs(10)),
            cfun: timeout,
            sim_wait: Duration::from_secs(10),
            ..Timeouts::default()
        },
        sync_attempts: 2,
        sweep: false,
        session: SessionConfig {
            drain_quiet: Duration::from_millis(200),
            drain_max: Duration::from_secs(2),
            resync_timeout: timeout.min(Duration::from_secs(1)),
            resync_attempts: 2,
            ..SessionConfig::default()
        },
        ..ModemConfig::default()
    };
    if let Some(p) = pin {
        cfg.pins.insert("*".into(), p.to_owned());
    }
    cfg
}

pub(crate) fn opener(port: &str, shared: bool, baud: u32) -> Result<Arc<dyn Opener>, ModemError> {
    let mut o = EndpointOpener::new(port.parse::<Endpoint>()?);
    o.settings.exclusive = !shared;
    o.settings.baud = baud;
    Ok(Arc::new(o))
}

/// Opens and brings up a modem for a one-shot command. A locked SIM is not an error
/// here: the caller decides (probe reports it, send fails on it).
pub(crate) async fn bring_up(
    opener: Arc<dyn Opener>,
    cfg: ModemConfig,
) -> Result<(Modem, Option<ModemError>), ModemError> {
    let mut m = Modem::new(opener, cfg, None);
    m.open().await?;
    match m.bring_up().await {
        Ok(()) => Ok((m, None)),
        Err(e @ ModemError::Sim(_)) => {
            // Signal and registration are readable without a SIM: report them anyway.
            let _ = m.refresh().await;
            Ok((m, Some(e)))
        }
        Err(e) => Err(e),
    }
}

async fn probe_one(port: String, a: Arc<ProbeArgs>) -> Result<Report, ModemError> {
    let o = opener(&port, a.shared, a.baud)?;
    let (m, _sim) = bring_up(o, oneshot_config(a.timeout, a.pin.as_deref())).await?;
    Ok(m.report().clone())
}

pub(crate) fn run(a: ProbeArgs) -> Result<(), Box<dyn Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let a = Arc::new(a);
    let out: Value = rt.block_on(async {
        if let Some(pattern) = a.scan.clone() {
            scan(&pattern, a).await
        } else {
            let port = a.port.clone().unwrap_or_default();
            Ok(serde_json::to_value(probe_one(port, a).await?)?)
        }
    })?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn scan(pattern: &str, a: Arc<ProbeArgs>) -> Result<Value, Box<dyn Error>> {
    let mut paths: Vec<PathBuf> = glob::glob(pattern)?.filter_map(Result::ok).collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("no port matches {pattern}").into());
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, p) in paths.iter().enumerate() {
        let port = p.to_string_lossy().into_owned();
        let a = a.clone();
        set.spawn(async move { (i, port.clone(), probe_one(port, a).await) });
    }
    let mut rows: Vec<(usize, Value)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (i, port, r) = joined?;
        let row = match r {
            Ok(report) => json!({"port": port, "at": true, "error": null, "probe": report}),
            Err(e) => json!({"port": port, "at": false, "error": e.to_string(), "probe": null}),
        };
        rows.push((i, row));
    }
    rows.sort_by_key(|(i, _)| *i);
    let rows: Vec<Value> = rows.into_iter().map(|(_, v)| v).collect();
    Ok(json!({"ports": rows, "devices": devices(&rows)}))
}

/// The AT ports grouped by device (the IMEI they answer with): the one the daemon
/// drives first (the first by path; it moves to another AT port of the device if the
/// modem's URCs turn out to arrive there) and the spares it never drives.
fn devices(rows: &[Value]) -> Vec<Value> {
    let mut by_imei: Vec<(String, Vec<String>)> = Vec::new();
    for r in rows.iter().filter(|r| r["at"] == true) {
        let port = r["port"].as_str().unwrap_or_default().to_owned();
        let imei = r["probe"]["imei"]
            .as_str()
            .map_or_else(|| format!("unknown ({port})"), str::to_owned);
        match by_imei.iter_mut().find(|(i, _)| *i == imei) {
            Some((_, ports)) => ports.push(port),
            None => by_imei.push((imei, vec![port])),
        }
    }
    by_imei
        .into_iter()
        .map(|(imei, mut ports)| {
            ports.sort();
            let spares = ports.split_off(1);
            json!({"imei": imei, "use": ports.first(), "spares": spares})
        })
        .collect()
}
