//! `gsmgw modem send`: one message through the driver alone (no daemon, no queue),
//! printing the MR of each part as JSON (docs/cli.md).

use std::error::Error;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use super::pdu::random_reference;
use super::probe::{bring_up, oneshot_config, opener};
use crate::modem::ModemError;
use crate::pdu::plan::plan_parts;
use crate::pdu::{Address, SubmitOptions};

#[derive(Subcommand, Debug)]
pub(crate) enum ModemCommand {
    /// Send a text through one modem and print the MR of each part.
    Send(SendArgs),
}

#[derive(Args, Debug)]
pub(crate) struct SendArgs {
    /// A device path or `tcp://host:port`.
    port: String,
    /// Recipient: +E.164 or national digits.
    #[arg(long)]
    to: String,
    /// Request status reports (TP-SRR).
    #[arg(long)]
    status_report: bool,
    /// PIN to enter if the SIM asks for one (never retried if rejected).
    #[arg(long)]
    pin: Option<String>,
    /// SMSC to set when the SIM has none.
    #[arg(long)]
    smsc: Option<String>,
    /// Timeout of each AT command other than the send itself.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    timeout: Duration,
    /// Timeout of each part's AT+CMGS (network round trip included).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    send_timeout: Duration,
    /// Open the port without TIOCEXCL/flock.
    #[arg(long)]
    shared: bool,
    /// Baud rate (serial ports).
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// The text.
    text: String,
}

pub(crate) fn run(cmd: ModemCommand) -> Result<(), Box<dyn Error>> {
    let ModemCommand::Send(a) = cmd;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(async {
        let mut cfg = oneshot_config(a.timeout, a.pin.as_deref());
        cfg.timeouts.send = a.send_timeout;
        cfg.smsc = a.smsc.clone();
        let (mut m, sim) = bring_up(opener(&a.port, a.shared, a.baud)?, cfg).await?;
        if let Some(e) = sim {
            return Err::<_, Box<dyn Error>>(e.into());
        }
        // Planned and encoded exactly as the daemon does (one planner, one part type).
        // A text that cannot be encoded fails as before: `error: message: …`.
        let planned = Address::parse(&a.to).and_then(|to| {
            let mut opts = SubmitOptions::new(to);
            opts.status_report = a.status_report;
            opts.concat_ref = random_reference();
            plan_parts(&a.text, &opts)
        });
        let (plan, parts) = planned.map_err(ModemError::from)?;
        // The MRs come back in order from `send`; nothing listens for progress here.
        let (progress, _) = tokio::sync::mpsc::unbounded_channel();
        let mrs = m.send(&parts, &progress).await?;
        let parts: Vec<_> = parts
            .iter()
            .zip(&mrs)
            .map(|(p, mr)| json!({"seq": p.seq, "mr": mr}))
            .collect();
        Ok(json!({"port": a.port, "to": a.to, "encoding": plan.encoding.name(), "parts": parts}))
    })?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
