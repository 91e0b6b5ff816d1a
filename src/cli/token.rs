//! `gsmgw token new --scopes send,read [--name NAME]`: makes an API token from the OS
//! CSPRNG and prints it once, with the `[[http.tokens]]` lines for the config, which
//! hold only its SHA-256 (a leaked config file gives no token away).

use clap::{Args, Subcommand};
use rand::TryRngCore;

#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Make a new token; prints the token and the config lines that accept it.
    New(NewArgs),
}

#[derive(Args, Debug)]
pub(crate) struct NewArgs {
    /// Comma-separated: send, read, admin.
    #[arg(long, value_delimiter = ',', required = true)]
    scopes: Vec<String>,
    /// The token's name in logs, rate limits and idempotency keys.
    #[arg(long, default_value = "app")]
    name: String,
}

pub(crate) fn run(cmd: TokenCommand) -> Result<(), Box<dyn std::error::Error>> {
    let TokenCommand::New(args) = cmd;
    let mut scopes: Vec<String> = Vec::new();
    for s in &args.scopes {
        let s = s.trim().to_lowercase();
        if !crate::config::SCOPES.contains(&s.as_str()) {
            return Err(format!("unknown scope {s:?} (send, read, admin, metrics)").into());
        }
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    if args.name.trim().is_empty() || args.name.contains(['"', '\\', '\n']) {
        return Err("--name must be non-empty plain text".into());
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| format!("the OS random source failed: {e}"))?;
    let token = format!("gsk_{}", crate::pdu::hex::encode(&bytes).to_lowercase());
    let hash = crate::pdu::hex::encode(&crate::api::sha256(token.as_bytes())).to_lowercase();
    let list = scopes
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!("token: {token}");
    println!();
    println!("# add to the config file (only the hash is kept there):");
    println!("[[http.tokens]]");
    println!("name = {:?}", args.name);
    println!("sha256 = \"{hash}\"");
    println!("scopes = [{list}]");
    Ok(())
}
