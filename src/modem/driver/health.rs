//! Health: the periodic poll (signal, registration, operator, storage) and the state
//! the pool sees, derived from what the poll found.

use super::{Modem, ModemState, Smsc};
use crate::at::{Command, info_params};
use crate::modem::error::ModemError;
use crate::modem::info::{Registration, Signal, Storage};

impl Modem {
    /// Polls signal, registration, operator and storage; updates the state.
    pub async fn refresh(&mut self) -> Result<(), ModemError> {
        if let Some(lines) = self.query(self.short(Command::csq())).await? {
            self.report.signal = lines.iter().find_map(|l| Signal::parse(l));
        }
        let mut reg = self
            .query(self.short(Command::creg_query()))
            .await?
            .and_then(|l| {
                l.iter()
                    .find_map(|l| Registration::parse_query(l, "+CREG:"))
            });
        if !reg.is_some_and(Registration::is_registered) {
            // LTE-only firmware registers in EPS only and may say "searching" for CS.
            let eps = self
                .query(self.short(Command::new("AT+CEREG?").with_info("+CEREG:")))
                .await?
                .and_then(|l| {
                    l.iter()
                        .find_map(|l| Registration::parse_query(l, "+CEREG:"))
                });
            if eps.is_some_and(Registration::is_registered) || reg.is_none() {
                reg = eps.or(reg);
            }
        }
        self.report.registration = reg;
        if let Some(lines) = self.query(self.short(Command::cops_query())).await? {
            self.report.operator = lines
                .iter()
                .find_map(|l| info_params(l, "+COPS:"))
                .and_then(|p| p.get(2).cloned())
                .filter(|s| !s.is_empty());
        }
        if self.storage_ok {
            let cpms = self.storage_cmd(Command::new("AT+CPMS?").with_info("+CPMS:").lenient());
            if let Some(lines) = self.query(cpms).await? {
                self.report.storage = lines.iter().find_map(|l| Storage::parse(l));
            }
        }
        self.publish();
        self.update_state();
        Ok(())
    }

    /// Ready or degraded, from what the last poll saw; other states are left alone.
    pub fn update_state(&self) {
        let cur = self.state();
        if !matches!(
            cur,
            ModemState::Starting
                | ModemState::Ready
                | ModemState::Degraded(_)
                | ModemState::Recovering(_)
                | ModemState::Offline(_)
        ) {
            return;
        }
        let mut reasons = Vec::new();
        match self.report.registration {
            Some(r) if r.is_registered() => {}
            Some(r) => reasons.push(format!(
                "not registered ({})",
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )),
            None => reasons.push("registration unknown".into()),
        }
        if self.report.storage.is_some_and(|s| s.is_full()) {
            reasons.push("message storage full".into());
        }
        if self.smsc == Smsc::Missing {
            reasons.push("no SMSC".into());
        }
        match self.report.capabilities {
            Some(c) if !c.receive => {
                reasons.push("cannot receive (no +CNMI and no message storage)".into());
            }
            Some(_) if self.report.cnmi.is_none() => {
                reasons.push("no new-message indications (+CNMI refused): polling".into());
            }
            _ => {}
        }
        self.set_state(if reasons.is_empty() {
            ModemState::Ready
        } else {
            ModemState::Degraded(reasons.join("; "))
        });
    }

    /// The periodic work: health poll, and a sweep when messages wait for a retry; a
    /// bring-up when the modem restarted or its SIM was still busy.
    pub async fn periodic(&mut self) -> Result<(), ModemError> {
        if self.needs_bring_up || self.sim_busy {
            return self.bring_up().await;
        }
        self.refresh().await?;
        if self.storage_ok && (self.needs_sweep || self.report.cnmi.is_none()) {
            self.sweep().await?;
        }
        Ok(())
    }
}
