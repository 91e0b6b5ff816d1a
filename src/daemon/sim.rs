//! `serve --sim N`: an in-process hw-sim bank whose PTYs become the daemon's ports, so
//! the daemon's main job runs on a machine with no modem. Built with the cargo feature
//! `sim` (on by default); a build without it refuses `--sim` with a clear error.

use std::net::SocketAddr;

/// A running simulated bank and the directory holding its PTY links.
pub struct SimBank {
    #[cfg(feature = "sim")]
    handle: hw_sim::BankHandle,
    #[cfg(feature = "sim")]
    _dir: tempfile::TempDir,
}

/// Why `--sim` cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// This binary was built with `--no-default-features`.
    #[error(
        "this gsmgw was built without the `sim` feature; rebuild with default features to use --sim"
    )]
    NotBuiltIn,
    /// The bank did not start (PTYs, control listener).
    #[error("the simulated bank did not start: {0}")]
    Start(String),
}

impl SimBank {
    /// Starts `modems` generic simulated modems with this `AT+CMGS` latency (ms range);
    /// returns the bank and its ports, and prints where they are.
    #[cfg(feature = "sim")]
    pub async fn start(
        modems: usize,
        latency: (u64, u64),
    ) -> Result<(SimBank, Vec<String>), SimError> {
        let dir = tempfile::tempdir().map_err(|e| SimError::Start(e.to_string()))?;
        let handle = hw_sim::Bank::start(hw_sim::BankConfig {
            modems,
            link_dir: dir.path().to_path_buf(),
            profile: hw_sim::ProfileName::Generic,
            latency,
            seed: 1,
            scenario: None,
            tcp_base: None,
            control: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        })
        .await
        .map_err(|e| SimError::Start(e.to_string()))?;
        if let Some(addr) = handle.control_addr() {
            println!("hw-sim control API: http://{addr}  (GET /messages shows what left the bank)");
        }
        for m in handle.modems() {
            println!("hw-sim modem{} {} {}", m.index, m.path.display(), m.msisdn);
        }
        let ports = handle
            .modems()
            .iter()
            .map(|m| m.path.display().to_string())
            .collect();
        Ok((SimBank { handle, _dir: dir }, ports))
    }

    /// Without the `sim` feature: always [`SimError::NotBuiltIn`].
    #[cfg(not(feature = "sim"))]
    pub async fn start(
        _modems: usize,
        _latency: (u64, u64),
    ) -> Result<(SimBank, Vec<String>), SimError> {
        Err(SimError::NotBuiltIn)
    }

    /// The bank's control API (faults, the network's view of what was sent).
    pub fn control_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "sim")]
        return self.handle.control_addr();
        #[cfg(not(feature = "sim"))]
        None
    }

    /// Stops the simulated modems.
    pub async fn shutdown(self) {
        #[cfg(feature = "sim")]
        self.handle.shutdown().await;
    }
}
