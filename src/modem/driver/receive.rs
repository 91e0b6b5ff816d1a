//! Receiving: waiting for input between requests, URCs (new messages, status reports,
//! calls, restarts), handing inbound messages to the sink before deleting them, and the
//! sweep of stored messages.

use super::{Modem, Smsc};
use crate::at::{Command, Urc, info_params, records};
use crate::modem::error::ModemError;
use crate::modem::info::{Registration, Signal, SimState, is_storage_name};
use crate::modem::sink::{Inbound, Origin};
use crate::pdu::decode_hex;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tracing::{info, warn};

impl Modem {
    /// Waits for input until `deadline` (the caller's next timer).
    pub async fn wait_input(&mut self, deadline: Instant) -> Result<(), ModemError> {
        match self.conn.as_mut() {
            Some(c) => {
                let r = c.read_some(Some(deadline)).await;
                if matches!(r, Err(ModemError::PortGone)) {
                    self.conn = None;
                }
                r.map(|_| ())
            }
            None => {
                tokio::time::sleep_until(deadline.into()).await;
                Err(ModemError::PortGone)
            }
        }
    }

    /// Acts on the URCs received so far: new messages, status reports, registration,
    /// reboots.
    pub async fn handle_urcs(&mut self) -> Result<(), ModemError> {
        if self.needs_bring_up {
            self.bring_up().await?;
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let mut urcs = conn.take_urcs().into_iter();
        while let Some(u) = urcs.next() {
            if let Err(e) = self.handle_urc(u).await {
                if let Some(c) = self.conn.as_mut() {
                    c.requeue_urcs(urcs.collect());
                }
                return Err(e);
            }
        }
        if let Some(caller) = self.ringing.take() {
            self.reject_call(caller).await?;
        }
        Ok(())
    }

    /// Hangs up an incoming call (`ATH`, or `AT+CHUP` where `ATH` is refused): a gateway
    /// answers no calls, and a ringing modem may hold back its SMS. Runs between
    /// commands only, never inside an `AT+CMGS` exchange. The rings of the same call
    /// that arrived meanwhile are dropped.
    async fn reject_call(&mut self, caller: Option<String>) -> Result<(), ModemError> {
        let mut done = self.query(self.short(Command::new("ATH"))).await?.is_some();
        if !done {
            done = self
                .query(self.short(Command::new("AT+CHUP")))
                .await?
                .is_some();
        }
        let who = caller.as_deref().unwrap_or("withheld");
        if done {
            self.calls_rejected.fetch_add(1, Ordering::Relaxed);
            info!(modem = %self.name(), caller = %who, "incoming call rejected");
        } else {
            warn!(modem = %self.name(), caller = %who, "incoming call: ATH and AT+CHUP refused");
        }
        if let Some(c) = self.conn.as_mut() {
            let rest: Vec<Urc> = c.take_urcs().into_iter().filter(|u| !u.is_call()).collect();
            c.requeue_urcs(rest);
        }
        Ok(())
    }

    async fn handle_urc(&mut self, urc: Urc) -> Result<(), ModemError> {
        if let Urc::Unreadable { header } = &urc {
            warn!(modem = %self.name(), header = %header, "a delivery arrived unreadable (garbled or cut short)");
            if self.csms1 && urc.needs_ack() {
                // Refused, so the network delivers it again: never acknowledge what was
                // not read.
                self.query(self.short(Command::new("AT+CNMA=2"))).await?;
            }
            return Ok(());
        }
        match urc {
            Urc::Cmti { mem, index } | Urc::Cdsi { mem, index } => {
                self.read_stored(&mem, index).await?;
            }
            Urc::Cmt { pdu, .. } | Urc::Cds { pdu, .. } => self.take_direct(pdu).await?,
            Urc::Registration { kind, stat, .. } => {
                let r = Registration::from_stat(stat);
                // A CS "searching" on an LTE-registered modem is no news.
                if kind == crate::at::RegistrationKind::Cs || r.is_registered() {
                    self.report.registration = Some(r);
                    self.publish();
                    self.update_state();
                }
            }
            Urc::Rssi(rssi) => {
                self.report.signal = Some(Signal::from_csq(rssi, 99));
                self.publish();
            }
            // The modem restarted on its own: every setting is gone.
            Urc::Rdy | Urc::SysStart => self.needs_bring_up = true,
            Urc::Cpin(code) if SimState::from_cpin(&code) != SimState::Ready => {
                self.needs_bring_up = true;
            }
            // The radio was switched (by a reset, or another program): some firmware
            // forgets the SMSC with it.
            Urc::Cfun(_) => self.smsc = Smsc::Unknown,
            Urc::Clip { number, .. } => {
                self.ringing = Some(Some(number).filter(|n| !n.is_empty()));
            }
            u if u.is_call() => {
                self.ringing.get_or_insert(None);
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn inbound(&self, pdu: String, origin: Origin) -> Inbound {
        Inbound {
            modem: self.name(),
            iccid: self.report.iccid.clone(),
            decoded: decode_hex(&pdu, true).map_err(|e| e.to_string()),
            pdu,
            origin,
            received: self.cfg.clock.now(),
        }
    }

    /// Hands a message to the sink; `true` only when it committed in time. (Takes no
    /// `&self` across the await: the link is `Send` but not `Sync`.)
    fn commit(&self, msg: Inbound) -> impl std::future::Future<Output = bool> + Send + 'static {
        let sink = self.sink.clone();
        let limit = self.cfg.timeouts.sink;
        async move {
            let Some(sink) = sink else {
                return false;
            };
            matches!(
                tokio::time::timeout(limit, sink.commit(msg)).await,
                Ok(Ok(()))
            )
        }
    }

    /// `+CMGR`, hand to the sink, and only then `+CMGD`.
    async fn read_stored(&mut self, mem: &str, index: u32) -> Result<(), ModemError> {
        if self.sink.is_none() {
            // Nobody to take it: it stays on the modem for the daemon.
            return Ok(());
        }
        if !is_storage_name(mem) {
            // The name would go into `AT+CPMS="<mem>"`: only the two-capital names of
            // 27.005. The message, if real, is found by the next sweep.
            warn!(modem = %self.name(), storage = ?mem, index, "ignoring a new-message indication with an invalid storage name");
            return Ok(());
        }
        let other_mem = mem != self.mem;
        if other_mem {
            let cmd = Command::new(format!("AT+CPMS=\"{mem}\"")).with_info("+CPMS:");
            if self.query(self.storage_cmd(cmd)).await?.is_none() {
                return Ok(());
            }
        }
        let r = self.read_commit_delete(mem, index).await;
        if other_mem {
            let back = Command::new(format!("AT+CPMS=\"{}\"", self.mem)).with_info("+CPMS:");
            self.query(self.storage_cmd(back)).await?;
        }
        r
    }

    async fn read_commit_delete(&mut self, mem: &str, index: u32) -> Result<(), ModemError> {
        // A refused read: already deleted (the sweep got it), or an empty slot.
        let Some(lines) = self.query(self.storage_cmd(Command::cmgr(index))).await? else {
            return Ok(());
        };
        let Some((_, pdu)) = records(&lines)
            .into_iter()
            .next()
            .filter(|(_, p)| !p.is_empty())
        else {
            return Ok(());
        };
        let msg = self.inbound(
            pdu,
            Origin::Stored {
                mem: mem.to_owned(),
                index,
            },
        );
        if self.commit(msg).await {
            self.query(self.storage_cmd(Command::cmgd(index))).await?;
        } else {
            self.needs_sweep = true;
        }
        Ok(())
    }

    /// A direct `+CMT`/`+CDS`: hand it to the sink, then acknowledge (`+CNMA`), or
    /// refuse it (`+CNMA=2`) so the network delivers it again. Only a PDU that decoded
    /// and committed is acknowledged. When the modem wants no acknowledgement (no
    /// `AT+CSMS=1`: it acknowledged on its own), an undecodable PDU is still handed over,
    /// raw, since the network will not deliver it again.
    async fn take_direct(&mut self, pdu: String) -> Result<(), ModemError> {
        let msg = self.inbound(pdu, Origin::Direct);
        let refused = match &msg.decoded {
            Err(why) if self.csms1 => Some(why.clone()),
            _ => None,
        };
        let ok = match refused {
            Some(why) => {
                warn!(modem = %self.name(), octets = msg.pdu.len() / 2, "undecodable direct delivery refused (+CNMA=2) for redelivery: {why}");
                false
            }
            None => self.commit(msg).await,
        };
        if self.csms1 {
            let cmd = if ok { "AT+CNMA" } else { "AT+CNMA=2" };
            self.query(self.short(Command::new(cmd))).await?;
        }
        Ok(())
    }

    /// Reads every stored message and hands each to the sink; deletes the committed ones.
    /// Returns how many were committed.
    pub async fn sweep(&mut self) -> Result<usize, ModemError> {
        if self.sink.is_none() {
            return Ok(0);
        }
        self.needs_sweep = false;
        let Some(lines) = self.query(self.storage_cmd(Command::cmgl(4))).await? else {
            self.needs_sweep = true;
            return Ok(0);
        };
        let mut committed = 0;
        for (header, pdu) in records(&lines) {
            let Some(p) = info_params(&header, "+CMGL:") else {
                continue;
            };
            let (Some(index), stat) = (
                p.first().and_then(|s| s.parse::<u32>().ok()),
                p.get(1).and_then(|s| s.parse::<u8>().ok()),
            ) else {
                continue;
            };
            // 2/3: our own stored outgoing messages, not inbound.
            if matches!(stat, Some(2 | 3)) || pdu.is_empty() {
                continue;
            }
            let mem = self.mem.clone();
            let msg = self.inbound(pdu, Origin::Stored { mem, index });
            if self.commit(msg).await {
                committed += 1;
                self.query(self.storage_cmd(Command::cmgd(index))).await?;
            } else {
                // The sink is failing: stop here, the rest waits on the SIM.
                self.needs_sweep = true;
                break;
            }
        }
        Ok(committed)
    }
}
