//! The `hw-sim` binary: starts a bank, prints `modem<i> <path> <msisdn>` per modem,
//! and runs until SIGINT/SIGTERM, then removes its links.

use clap::Parser;
use hw_sim::{Bank, BankConfig, ProfileName, Scenario};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "hw-sim",
    version,
    about = "A simulated GSM modem bank on real pseudo-terminals"
)]
struct Args {
    /// Number of modems.
    #[arg(long, default_value_t = 1)]
    modems: usize,
    /// Directory for the modem<i> symlinks (created if missing).
    #[arg(long)]
    link_dir: PathBuf,
    /// HTTP control API address, e.g. 127.0.0.1:8025.
    #[arg(long)]
    control: Option<SocketAddr>,
    /// generic, huawei, simcom, quectel, okfail, mixed (cycles those five), a real
    /// model (huawei-e1752, quectel-ec25, … see docs/hw-sim.md), or zoo (cycles those).
    #[arg(long, default_value = "generic")]
    profile: ProfileName,
    /// Give multi-port devices only their primary AT port.
    #[arg(long)]
    single_port: bool,
    /// CMGS latency: MS or MIN-MAX.
    #[arg(long, value_parser = parse_latency)]
    latency: Option<(u64, u64)>,
    /// Seed for identities and every random decision.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Scenario file (TOML, or JSON if it ends in .json).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Also serve modem i on 127.0.0.1:PORT+i.
    #[arg(long)]
    tcp_base: Option<u16>,
}

fn parse_latency(s: &str) -> Result<(u64, u64), String> {
    let p = |x: &str| x.trim().parse::<u64>().map_err(|e| format!("{x:?}: {e}"));
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (p(a)?, p(b)?);
            if a > b {
                return Err("MIN > MAX".into());
            }
            Ok((a, b))
        }
        None => {
            let v = p(s)?;
            Ok((v, v))
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut scenario = match &args.scenario {
        Some(p) => match Scenario::load(p) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("hw-sim: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    if args.single_port {
        scenario.get_or_insert_with(Scenario::default).single_port = true;
    }
    let cfg = BankConfig {
        modems: args.modems,
        link_dir: args.link_dir,
        profile: args.profile,
        latency: args.latency.unwrap_or(BankConfig::default().latency),
        seed: args.seed,
        scenario,
        tcp_base: args.tcp_base,
        control: args.control,
    };
    let bank = match Bank::start(cfg).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("hw-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        for m in bank.modems() {
            let _ = writeln!(out, "modem{} {} {}", m.index, m.path.display(), m.msisdn);
        }
        let _ = out.flush();
    }
    if let Some(a) = bank.control_addr() {
        eprintln!("hw-sim: control API on http://{a}");
    }
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hw-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    bank.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_forms() {
        assert_eq!(parse_latency("250"), Ok((250, 250)));
        assert_eq!(parse_latency("100-900"), Ok((100, 900)));
        assert!(parse_latency("9-1").is_err());
        assert!(parse_latency("x").is_err());
    }
}
