//! The `gsmgw` command line: argument parsing (clap) and dispatch to one module per
//! command family. Each command prints JSON on stdout where another tool may read it,
//! and exactly one `error: …` line on stderr with a non-zero exit when it fails.

mod backup;
mod client;
mod doctor;
mod modem;
mod pdu;
mod probe;
mod serve;
mod token;
mod webhook;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The parsed command line: one command and its arguments.
#[derive(Parser, Debug)]
#[command(name = "gsmgw", version, about = "SMS gateway for banks of GSM modems")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Encode and decode SMS PDUs (no modem needed).
    #[command(subcommand)]
    Pdu(pdu::PduCommand),
    /// Identify a modem (or find the AT ports among many) and print it as JSON.
    Probe(probe::ProbeArgs),
    /// Talk to one modem through the driver alone.
    #[command(subcommand)]
    Modem(modem::ModemCommand),
    /// Run the gateway daemon (`--sim N` runs it on N simulated modems).
    Serve(serve::ServeArgs),
    /// Validate a configuration file and say what is wrong, with file, line and key.
    CheckConfig(serve::CheckConfigArgs),
    /// Make API tokens (`token new --scopes send,read`).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Send a message (or a CSV file of them) through a running daemon.
    Send(client::SendArgs),
    /// Modems with signal bars, queue depth by priority, today's counts per SIM.
    Status(client::StatusArgs),
    /// List recent messages.
    Messages(client::MessagesArgs),
    /// Check the host and each modem port; print what is wrong and how to fix it.
    Doctor(doctor::DoctorArgs),
    /// An online, verified copy of the database (the daemon keeps serving).
    Backup(backup::BackupArgs),
    /// The message history as NDJSON or CSV (`--since 7d --format csv`).
    Export(backup::ExportArgs),
    /// Webhook helpers (`webhook callback-key`: the key that signs callbacks).
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
}

/// sysexits.h's EX_CONFIG: the configuration is wrong.
pub const EX_CONFIG: u8 = 78;

/// Runs the command line and maps failures to one stderr line and exit code 1 (78 for
/// a configuration error or a damaged database).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pdu(cmd) => pdu::run(cmd),
        Command::Probe(args) => probe::run(args),
        Command::Modem(cmd) => modem::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::CheckConfig(args) => serve::check(args),
        Command::Token(cmd) => token::run(cmd),
        Command::Send(a) => client::send(a),
        Command::Status(a) => client::status(a),
        Command::Messages(a) => client::messages(a),
        Command::Webhook(cmd) => webhook::run(cmd),
        Command::Doctor(a) => doctor::run(a),
        Command::Backup(a) => backup::backup(a),
        Command::Export(a) => backup::export(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // EX_CONFIG: the unit's RestartPreventExitStatus=78 stops systemd from
            // restarting a daemon whose configuration is wrong in a loop.
            // A damaged database is the same kind of stop: restarting cannot fix it.
            let corrupt = matches!(
                e.downcast_ref::<crate::store::StoreError>(),
                Some(crate::store::StoreError::Corrupt { .. })
            );
            if corrupt || e.downcast_ref::<crate::config::ConfigError>().is_some() {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
