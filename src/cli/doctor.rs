//! `gsmgw doctor [--port …]`: checks the host and each modem port and prints, per
//! finding, what is wrong and the command that fixes it (docs/cli.md). Exits 1 when a
//! finding blocks sending.
//!
//! The checks are the ones a new user's first hour trips over: ModemManager or another
//! process holding a port, a stale UUCP lock file, the service user outside `dialout`,
//! a port that does not answer AT (a stick's diagnostics or GPS port), a SIM asking
//! for its PIN or PUK, no SMSC, registration denied, weak signal, and sticks in HiLink
//! (router) mode that show a network interface and no tty at all.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::modem::{ModemError, Registration, Report, SimState};

#[derive(Args, Debug)]
pub(crate) struct DoctorArgs {
    /// A port to check (repeatable); default: `[modems] ports` from the config, else
    /// `/dev/gsmgw/*`, `/dev/ttyUSB*` and `/dev/ttyACM*`.
    #[arg(long = "port", value_name = "PORT")]
    ports: Vec<String>,
    /// Configuration file (default /etc/gsmgw/gsmgw.toml; PINs and ports come from it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Timeout of each AT command.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    timeout: Duration,
    /// Baud rate (serial ports).
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// The account the service runs as (its `dialout` membership is checked).
    #[arg(long, default_value = "gsmgw")]
    user: String,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    /// Nothing is sent through this port (or at all) until it is fixed.
    Blocking,
    /// Sending works, but worse or not for long.
    Warning,
}

/// One thing that is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Finding {
    /// A stable name: `port_busy`, `stale_lock`, `no_at`, `sim_pin`, `sim_puk`,
    /// `sim_absent`, `sim_failure`, `no_smsc`, `registration_denied`,
    /// `not_registered`, `weak_signal`, `port_permission`, `port_open`,
    /// `modemmanager`, `dialout`, `hilink`.
    pub check: &'static str,
    pub severity: Severity,
    /// The port, or `null` for a host-wide finding.
    pub port: Option<String>,
    pub problem: String,
    pub fix: String,
}

impl Finding {
    fn new(
        check: &'static str,
        severity: Severity,
        port: Option<&str>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            severity,
            port: port.map(str::to_owned),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// What opening and bringing up one port gave: its report (and a SIM that stopped
/// bring-up short), or why it could not be opened or brought up.
type Outcome = Result<(Report, Option<ModemError>), ModemError>;

/// A process with a file open: its pid and name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    pid: u32,
    comm: String,
}

/// Processes other than this one that have `path` open (by its resolved device path).
fn holders(path: &Path) -> Vec<Holder> {
    let Ok(target) = std::fs::canonicalize(path) else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target))
        {
            let comm = std::fs::read_to_string(p.path().join("comm"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            out.push(Holder { pid, comm });
        }
    }
    out
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn describe(h: &[Holder]) -> String {
    h.iter()
        .map(|h| format!("pid {} ({})", h.pid, h.comm))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pid in a UUCP lock file: ASCII (`"      1234\n"`) or a binary `int`.
fn lock_pid(bytes: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(p) = text.trim().parse::<u32>() {
        return Some(p);
    }
    let b: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_ne_bytes(b)).filter(|p| *p > 0)
}

/// Lock-file findings for a port (`/var/lock/LCK..ttyUSB0`, `/run/lock/…`).
fn lock_findings(port: &str, lock_dirs: &[PathBuf]) -> Vec<Finding> {
    let Some(name) = Path::new(port).file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    // /dev/gsmgw/<id> links name the real tty in the lock file.
    let real = std::fs::canonicalize(port).ok();
    let mut names = vec![name.to_owned()];
    if let Some(r) = real
        .as_ref()
        .and_then(|r| r.file_name()?.to_str().map(str::to_owned))
        && !names.contains(&r)
    {
        names.push(r);
    }
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for dir in lock_dirs {
        for n in &names {
            let f = dir.join(format!("LCK..{n}"));
            let Ok(canon) = std::fs::canonicalize(&f) else {
                continue;
            };
            if seen.contains(&canon) {
                continue;
            }
            seen.push(canon);
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            match lock_pid(&bytes) {
                Some(pid) if pid_alive(pid) => {
                    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .map(|s| s.trim().to_owned())
                        .unwrap_or_default();
                    out.push(Finding::new(
                        "port_busy",
                        Severity::Blocking,
                        Some(port),
                        format!("{} is locked by pid {pid} ({comm})", f.display()),
                        format!("stop that program (kill {pid}), or give gsmgw another port"),
                    ));
                }
                _ => out.push(Finding::new(
                    "stale_lock",
                    Severity::Warning,
                    Some(port),
                    format!(
                        "stale lock file {} (its process is gone): programs that honour UUCP locks (minicom, smstools3, gammu) refuse the port",
                        f.display()
                    ),
                    format!("sudo rm {}", f.display()),
                )),
            }
        }
    }
    out
}

/// The findings of one port's open and bring-up.
fn port_findings(port: &str, outcome: &Outcome) -> Vec<Finding> {
    let p = Some(port);
    let mut out = Vec::new();
    let (report, sim_error) = match outcome {
        Ok((r, e)) => (r, e),
        Err(ModemError::Open { reason, .. }) => {
            let busy =
                reason.contains("in use") || reason.contains("busy") || reason.contains("Busy");
            let denied = reason.contains("ermission denied");
            let held = holders(Path::new(port));
            let mm = held.iter().find(|h| h.comm == "ModemManager");
            if busy || mm.is_some() {
                let fix = if mm.is_some() {
                    "keep ModemManager off gsmgw's ports: install gsmgw's udev rules (the .deb ships /usr/lib/udev/rules.d/70-gsmgw.rules; then `sudo udevadm control --reload-rules && sudo udevadm trigger`), or `sudo systemctl disable --now ModemManager` if nothing else needs it".to_owned()
                } else if held.is_empty() {
                    "stop the program using it (`sudo fuser -v PORT` names it)"
                        .replace("PORT", port)
                } else {
                    format!(
                        "stop {} (`kill {}`), or give gsmgw another port",
                        held.iter()
                            .map(|h| h.comm.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        held.iter()
                            .map(|h| h.pid.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                };
                out.push(Finding::new(
                    "port_busy",
                    Severity::Blocking,
                    p,
                    if held.is_empty() {
                        format!("{port} is held by another process ({reason})")
                    } else {
                        format!("{port} is held by {}", describe(&held))
                    },
                    fix,
                ));
            } else if denied {
                out.push(Finding::new(
                    "port_permission",
                    Severity::Blocking,
                    p,
                    format!("cannot open {port}: permission denied"),
                    "run gsmgw as a member of the port's group (`ls -l PORT`; usually dialout: `sudo usermod -aG dialout $USER`, then log in again); the shipped unit does this with SupplementaryGroups=dialout".replace("PORT", port),
                ));
            } else {
                out.push(Finding::new(
                    "port_open",
                    Severity::Blocking,
                    p,
                    format!("cannot open {port}: {reason}"),
                    "check the path (`ls -l /dev/ttyUSB* /dev/ttyACM* /dev/gsmgw/`) and `dmesg | tail` after plugging the modem in",
                ));
            }
            return out;
        }
        Err(ModemError::NoAnswer | ModemError::Timeout { .. }) => {
            out.push(Finding::new(
                "no_at",
                Severity::Blocking,
                p,
                format!("{port} does not answer AT: not the modem's AT port (a stick's diagnostics or GPS/NMEA port), or another baud rate"),
                "find the AT port among the stick's ports with `gsmgw probe --scan '/dev/ttyUSB*'`; for a UART board try `--baud 9600` or `--baud 57600`",
            ));
            return out;
        }
        Err(e) => {
            out.push(Finding::new(
                "port_open",
                Severity::Blocking,
                p,
                format!("{port}: {e}"),
                "`gsmgw probe PORT` shows the modem's answers; see docs/hardware.md"
                    .replace("PORT", port),
            ));
            return out;
        }
    };
    match &report.sim {
        Some(SimState::Pin) => out.push(Finding::new(
            "sim_pin",
            Severity::Blocking,
            p,
            "the SIM is locked and asks for its PIN",
            "put the PIN in the config: `[modems] pins = { \"*\" = \"1234\" }` (or keyed by ICCID); gsmgw tries a PIN once and never repeats a rejected one. Or remove the PIN lock in a phone",
        )),
        Some(SimState::Puk) => out.push(Finding::new(
            "sim_puk",
            Severity::Blocking,
            p,
            "the SIM is blocked (wrong PIN too often) and asks for its PUK",
            "unblock it in a phone with the PUK from the SIM's card (`AT+CPIN=\"<PUK>\",\"<new PIN>\"`), then set the new PIN in `[modems] pins`",
        )),
        Some(SimState::Absent) => out.push(Finding::new(
            "sim_absent",
            Severity::Blocking,
            p,
            "no SIM inserted (or not seated)",
            "power the modem off, insert the SIM (contacts down, notch as marked), power on",
        )),
        Some(SimState::Failure) => out.push(Finding::new(
            "sim_failure",
            Severity::Blocking,
            p,
            "the SIM failed (`+CME ERROR: 13/15`)",
            "reseat the SIM; if it persists the SIM is dead: ask the operator for a new one",
        )),
        _ => {}
    }
    if let Some(e) = sim_error
        && report.sim.as_ref().is_none_or(|s| *s == SimState::Ready)
    {
        out.push(Finding::new(
            "sim_failure",
            Severity::Blocking,
            p,
            format!("the SIM is not usable: {e}"),
            "`gsmgw probe PORT` shows the SIM state; see docs/hardware.md".replace("PORT", port),
        ));
    }
    let sim_ready = report.sim.as_ref() == Some(&SimState::Ready);
    if sim_ready && report.smsc.as_deref().is_none_or(|s| s.trim().is_empty()) {
        out.push(Finding::new(
            "no_smsc",
            Severity::Blocking,
            p,
            "the SIM has no SMSC (service centre) number: every send fails (`+CMS ERROR: 330`)",
            "store the operator's SMSC on the SIM from a terminal on the port (`picocom -b 115200 PORT`): `AT+CSCA=\"+<SMSC number>\",145` then `AT+CSAS`; the number is on the operator's support pages".replace("PORT", port),
        ));
    }
    match report.registration {
        Some(Registration::Denied) => out.push(Finding::new(
            "registration_denied",
            Severity::Blocking,
            p,
            "the network refuses the SIM (registration denied)",
            "check with the operator that the SIM is activated, paid up and allowed on this network (roaming); an IMEI on the operator's block list is refused too",
        )),
        Some(Registration::Searching | Registration::Unregistered) if sim_ready => {
            out.push(Finding::new(
                "not_registered",
                Severity::Warning,
                p,
                "not registered on a network (still searching, or no coverage)",
                "wait a minute after power-up; check the antenna and that the operator's band is supported by the modem",
            ))
        }
        _ => {}
    }
    if sim_ready && let Some(s) = report.signal {
        match s.rssi_dbm {
            None => out.push(Finding::new(
                "weak_signal",
                Severity::Warning,
                p,
                "no signal (`+CSQ: 99`)",
                "connect an antenna (or a better one) and move the modem away from metal and other modems",
            )),
            Some(dbm) if dbm < -101 => out.push(Finding::new(
                "weak_signal",
                Severity::Warning,
                p,
                format!("weak signal: {dbm} dBm ({} bars); sends will fail and retry", s.bars),
                "use an external antenna or a USB extension cable to move the stick; ≥ -95 dBm is comfortable",
            )),
            _ => {}
        }
    }
    out
}

/// Whether a process named `ModemManager` runs, and whether gsmgw's udev rules (which
/// tell it to keep off the modems gsmgw drives) are installed.
fn modemmanager_finding(rules_dirs: &[PathBuf]) -> Option<Finding> {
    let running = std::fs::read_dir("/proc").ok()?.flatten().any(|p| {
        std::fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.trim() == "ModemManager")
    });
    let rules = rules_dirs.iter().any(|d| d.join("70-gsmgw.rules").exists());
    (running && !rules).then(|| {
        Finding::new(
            "modemmanager",
            Severity::Warning,
            None,
            "ModemManager runs and gsmgw's udev rules are not installed: it probes new modems and may hold their ports",
            "install gsmgw's udev rules (`sudo apt install ./gsmgw_*.deb` ships /usr/lib/udev/rules.d/70-gsmgw.rules; then `sudo udevadm control --reload-rules && sudo udevadm trigger`), or `sudo systemctl disable --now ModemManager` if the host needs no mobile uplink",
        )
    })
}

/// The service user outside `dialout` (it matters when gsmgw runs outside the shipped
/// unit, which adds the group itself). No finding when the user does not exist.
fn dialout_finding(user: &str, passwd: &str, group: &str) -> Option<Finding> {
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user))?;
    let primary = entry.get(3).copied().unwrap_or("");
    let dialout = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"dialout"))?;
    let gid = dialout.get(2).copied().unwrap_or("");
    let members = dialout.get(3).copied().unwrap_or("");
    let member = primary == gid || members.split(',').any(|m| m.trim() == user);
    (!member).then(|| {
        Finding::new(
            "dialout",
            Severity::Warning,
            None,
            format!("the service user {user} is not in the dialout group: run outside the shipped unit, it cannot open serial ports"),
            format!("sudo usermod -aG dialout {user}"),
        )
    })
}

/// Sticks in HiLink (router) mode: a USB network interface of a modem vendor with no
/// tty on the same USB device.
fn hilink_findings(sys_net: &Path) -> Vec<Finding> {
    // Huawei, ZTE, Alcatel/TCL: the vendors whose sticks ship in HiLink/router mode.
    const VENDORS: &[(&str, &str)] = &[("12d1", "Huawei"), ("19d2", "ZTE"), ("1bbb", "Alcatel")];
    let mut out = Vec::new();
    let Ok(ifaces) = std::fs::read_dir(sys_net) else {
        return out;
    };
    for iface in ifaces.flatten() {
        let Ok(dev) = std::fs::canonicalize(iface.path().join("device")) else {
            continue;
        };
        // The interface's device is a USB interface; its parent is the USB device.
        let Some(usb) = dev.parent().filter(|d| d.join("idVendor").exists()) else {
            continue;
        };
        let vendor = std::fs::read_to_string(usb.join("idVendor")).unwrap_or_default();
        let Some((_, name)) = VENDORS.iter().find(|(v, _)| vendor.trim() == *v) else {
            continue;
        };
        if has_tty(usb, 4) {
            continue;
        }
        let product = std::fs::read_to_string(usb.join("idProduct")).unwrap_or_default();
        let ifname = iface.file_name().to_string_lossy().into_owned();
        out.push(Finding::new(
            "hilink",
            Severity::Warning,
            None,
            format!(
                "{name} stick {}:{} is in HiLink (router) mode: network interface {ifname}, no AT port",
                vendor.trim(),
                product.trim()
            ),
            "switch it to stick (modem) mode with usb_modeswitch — for Huawei: `sudo usb_modeswitch -v 12d1 -p <product> -X` (or `-J`), then re-plug; some firmware needs the stick-mode firmware flashed. See docs/hardware.md",
        ));
    }
    out
}

fn has_tty(dir: &Path, depth: u32) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name == "tty" || name.starts_with("ttyUSB") || name.starts_with("ttyACM") {
            return true;
        }
        if depth > 0
            && e.file_type().is_ok_and(|t| t.is_dir())
            && !e.path().is_symlink()
            && has_tty(&e.path(), depth - 1)
        {
            return true;
        }
    }
    false
}

fn default_ports(cfg_ports: &[String]) -> Vec<String> {
    let patterns: Vec<String> = if cfg_ports.is_empty() {
        vec![
            "/dev/gsmgw/*".into(),
            "/dev/ttyUSB*".into(),
            "/dev/ttyACM*".into(),
        ]
    } else {
        cfg_ports.to_vec()
    };
    let mut out = Vec::new();
    for p in patterns {
        match glob::glob(&p) {
            Ok(paths) => {
                for path in paths.flatten() {
                    let s = path.to_string_lossy().into_owned();
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
            Err(_) => out.push(p),
        }
    }
    out
}

pub(crate) fn run(a: DoctorArgs) -> Result<(), Box<dyn Error>> {
    let cfg = super::serve::load(a.config.as_deref(), true)?;
    let ports = if a.ports.is_empty() {
        default_ports(&cfg.modems.ports)
    } else {
        a.ports.clone()
    };
    let mut findings = Vec::new();
    findings.extend(modemmanager_finding(&[
        PathBuf::from("/etc/udev/rules.d"),
        PathBuf::from("/usr/lib/udev/rules.d"),
        PathBuf::from("/lib/udev/rules.d"),
    ]));
    findings.extend(dialout_finding(
        &a.user,
        &std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
        &std::fs::read_to_string("/etc/group").unwrap_or_default(),
    ));
    findings.extend(hilink_findings(Path::new("/sys/class/net")));
    let lock_dirs = [PathBuf::from("/var/lock"), PathBuf::from("/run/lock")];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut modem_cfg = super::probe::oneshot_config(a.timeout, None);
    modem_cfg.pins = cfg.modems.pins.clone().into_iter().collect();
    let modem_cfg = Arc::new(modem_cfg);
    let outcomes: Vec<(String, Outcome)> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, port) in ports.iter().enumerate() {
            let (port, cfg, baud) = (port.clone(), modem_cfg.clone(), a.baud);
            set.spawn(async move {
                let r = async {
                    let o = super::probe::opener(&port, false, baud)?;
                    let (m, e) = super::probe::bring_up(o, (*cfg).clone()).await?;
                    Ok((m.report().clone(), e))
                }
                .await;
                (i, port, r)
            });
        }
        let mut rows = Vec::new();
        while let Some(Ok(row)) = set.join_next().await {
            rows.push(row);
        }
        rows.sort_by_key(|(i, _, _)| *i);
        rows.into_iter().map(|(_, p, r)| (p, r)).collect()
    });
    let mut reports = Vec::new();
    for (port, outcome) in &outcomes {
        findings.extend(lock_findings(port, &lock_dirs));
        findings.extend(port_findings(port, outcome));
        reports.push(json!({
            "port": port,
            "probe": outcome.as_ref().ok().map(|(r, _)| r),
            "error": outcome.as_ref().err().map(|e| e.to_string()),
        }));
    }
    let blocking = findings
        .iter()
        .filter(|f| f.severity == Severity::Blocking)
        .count();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "findings": findings,
                "ports": reports,
                "blocking": blocking,
            }))?
        );
    } else {
        if ports.is_empty() {
            println!(
                "no modem ports found (looked for /dev/gsmgw/*, /dev/ttyUSB*, /dev/ttyACM*; name ports with --port)"
            );
        }
        for (port, outcome) in &outcomes {
            match outcome {
                Ok((r, _)) => println!(
                    "{port}: {} {} IMEI {} SIM {}",
                    r.manufacturer.as_deref().unwrap_or("?"),
                    r.model.as_deref().unwrap_or("?"),
                    r.imei.as_deref().unwrap_or("?"),
                    r.sim.as_ref().map_or("?".into(), SimState::as_str)
                ),
                Err(e) => println!("{port}: {e}"),
            }
        }
        for f in &findings {
            let mark = match f.severity {
                Severity::Blocking => "✗",
                Severity::Warning => "!",
            };
            match &f.port {
                Some(p) => println!("{mark} {p}: {}", f.problem),
                None => println!("{mark} {}", f.problem),
            }
            println!("    fix: {}", f.fix);
        }
        println!("{} finding(s), {blocking} blocking sending", findings.len());
    }
    if blocking > 0 {
        return Err(format!("{blocking} finding(s) block sending").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_pids_in_both_forms() {
        assert_eq!(lock_pid(b"      1234\n"), Some(1234));
        assert_eq!(lock_pid(&4321u32.to_ne_bytes()), Some(4321));
        assert_eq!(lock_pid(b""), None);
    }

    #[test]
    fn dialout_membership() {
        let passwd =
            "root:x:0:0::/root:/bin/sh\ngsmgw:x:998:998::/var/lib/gsmgw:/usr/sbin/nologin\n";
        assert!(dialout_finding("gsmgw", passwd, "dialout:x:20:gsmgw,pi\n").is_none());
        assert!(dialout_finding("gsmgw", passwd, "dialout:x:20:pi\n").is_some());
        assert!(dialout_finding("nobody-here", passwd, "dialout:x:20:\n").is_none());
    }

    #[test]
    fn a_stale_lock_file_is_found_with_its_fix() {
        let dir = tempfile::tempdir().unwrap();
        // A pid that cannot exist (above pid_max).
        std::fs::write(dir.path().join("LCK..ttyUSB7"), "  99999999\n").unwrap();
        let f = lock_findings("/dev/ttyUSB7", &[dir.path().to_path_buf()]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].check, "stale_lock");
        assert!(f[0].fix.starts_with("sudo rm "), "{}", f[0].fix);
        std::fs::write(
            dir.path().join("LCK..ttyUSB7"),
            format!("{:>10}\n", std::process::id()),
        )
        .unwrap();
        let f = lock_findings("/dev/ttyUSB7", &[dir.path().to_path_buf()]);
        assert_eq!((f.len(), f[0].check), (1, "port_busy"));
    }

    #[test]
    fn hilink_sticks_are_found_from_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let usb = dir.path().join("devices/usb1/1-1");
        let intf = usb.join("1-1:1.0");
        std::fs::create_dir_all(&intf).unwrap();
        std::fs::write(usb.join("idVendor"), "12d1\n").unwrap();
        std::fs::write(usb.join("idProduct"), "14db\n").unwrap();
        let net = dir.path().join("class/net/eth1");
        std::fs::create_dir_all(&net).unwrap();
        std::os::unix::fs::symlink(&intf, net.join("device")).unwrap();
        let f = hilink_findings(&dir.path().join("class/net"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].problem.contains("12d1:14db"), "{}", f[0].problem);
        // The same stick in stick mode has a tty: no finding.
        std::fs::create_dir_all(usb.join("1-1:1.2/ttyUSB0")).unwrap();
        assert!(hilink_findings(&dir.path().join("class/net")).is_empty());
    }
}
