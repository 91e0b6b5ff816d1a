//! Recovery: the ladder a link failure climbs (re-sync, radio off/on, reset, reopen) and
//! reopening a port that went away. Quarantine is decided by the task
//! (`super::super::task`) from how often this runs.

use super::{Modem, ModemState};
use crate::at::Command;
use crate::modem::error::ModemError;

impl Modem {
    /// The recovery ladder after a link failure: (1) ESC, drain, `AT`; (2) `AT+CFUN=0`
    /// then `=1`; (3) `AT+CFUN=1,1`; (4) close and reopen the port with backoff. Each rung
    /// that gets the modem answering is followed by a full bring-up. `Err` means every
    /// rung failed (the caller quarantines) or the SIM is locked.
    pub async fn recover(&mut self, cause: &ModemError) -> Result<(), ModemError> {
        self.set_state(ModemState::Recovering(cause.to_string()));
        if self.conn.is_some()
            && !matches!(
                cause,
                ModemError::PortGone | ModemError::PortGoneAfterPayload { .. } | ModemError::Io(_)
            )
        {
            // Rung 1. After a timeout the session already did ESC/drain/AT.
            let answered = match cause {
                ModemError::Timeout { resynced, .. } => *resynced,
                _ => self.conn()?.resync().await.unwrap_or(false),
            };
            if answered {
                match self.bring_up().await {
                    Ok(()) => return Ok(()),
                    Err(e @ ModemError::Sim(_)) => return Err(e),
                    Err(_) => {}
                }
            }
            // Rung 2.
            if self.conn.is_some() {
                self.set_state(ModemState::Recovering(format!("{cause}; radio off/on")));
                let off = self
                    .ok(Command::new("AT+CFUN=0").timeout(self.cfg.timeouts.cfun))
                    .await;
                if off.is_ok()
                    && self
                        .ok(Command::new("AT+CFUN=1").timeout(self.cfg.timeouts.cfun))
                        .await
                        .is_ok()
                {
                    match self.bring_up().await {
                        Ok(()) => return Ok(()),
                        Err(e @ ModemError::Sim(_)) => return Err(e),
                        Err(_) => {}
                    }
                }
            }
            // Rung 3.
            if self.conn.is_some() {
                self.set_state(ModemState::Recovering(format!("{cause}; modem reset")));
                let reset = Command::new("AT+CFUN=1,1").timeout(self.cfg.timeouts.cfun);
                if self.exec(reset).await.is_ok() {
                    self.conn = None;
                    tokio::time::sleep(self.cfg.timeouts.reset_wait).await;
                }
            }
        }
        // Rung 4.
        self.conn = None;
        self.reopen().await
    }

    /// Opens the port and brings the modem up, with backoff between attempts.
    pub async fn reopen(&mut self) -> Result<(), ModemError> {
        let (mut delay, max) = self.cfg.timeouts.reopen_backoff;
        let mut last = ModemError::PortGone;
        for attempt in 1..=self.cfg.reopen_attempts.max(1) {
            match self.open().await {
                Ok(()) => match self.bring_up().await {
                    Ok(()) => return Ok(()),
                    Err(e @ ModemError::Sim(_)) => return Err(e),
                    Err(e) => {
                        self.conn = None;
                        last = e;
                    }
                },
                Err(e) => last = e,
            }
            if attempt == self.cfg.reopen_attempts.max(1) {
                break;
            }
            self.set_state(ModemState::Offline(format!("{last}; retry in {delay:?}")));
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(max);
        }
        Err(last)
    }
}
