//! `gsmgw webhook callback-key`: prints the key that signs events to a message's own
//! `callback_url`, to hand to the apps that verify them (docs/webhooks.md).

use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(crate) enum WebhookCommand {
    /// Print the callback key: `[webhooks] callback_secret`, else the one derived from
    /// the operator's secret (`GSMGW_WEBHOOK_SECRET` or `[webhooks] secret`).
    CallbackKey {
        /// Configuration file (default /etc/gsmgw/gsmgw.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub(crate) fn run(cmd: WebhookCommand) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        WebhookCommand::CallbackKey { config } => {
            let cfg = super::serve::load(config.as_deref(), true)?;
            let secret = std::env::var("GSMGW_WEBHOOK_SECRET")
                .ok()
                .filter(|s| !s.is_empty())
                .or_else(|| cfg.webhooks.secret.clone());
            match crate::webhook::callback_secret_for(&cfg.webhooks, secret.as_deref()) {
                Some(key) => {
                    println!("{key}");
                    Ok(())
                }
                None => Err("no webhook secret configured: callbacks go out unsigned \
                     (set [webhooks] secret, GSMGW_WEBHOOK_SECRET or [webhooks] callback_secret)"
                    .into()),
            }
        }
    }
}
