//! Sending: the planned parts of one message over `AT+CMGS` (each MR reported as it is
//! accepted; the SMSC is made sure of first, see bring-up), and USSD requests.

use super::{Modem, Smsc, UssdReply};
use crate::at::{CmsError, Command, FinalResult, Urc, info_params};
use crate::dispatch::PartSent;
use crate::modem::error::ModemError;
use crate::pdu::plan::OutPart;
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

impl Modem {
    /// Sends the parts of one message, planned and encoded by the caller
    /// ([`crate::pdu::plan::plan_parts`]), in order (`AT+CMMS=2` keeps the link up
    /// between them). Each part's MR goes to `progress` the moment the SMSC accepts it,
    /// so it is stored even if a later part fails; the MRs are also returned in order.
    pub async fn send(
        &mut self,
        parts: &[OutPart],
        progress: &UnboundedSender<PartSent>,
    ) -> Result<Vec<u8>, ModemError> {
        self.ready_to_send().await?;
        let total = parts.len();
        if total > 1 {
            // Best-effort: without it the modem may drop the link between parts, which is
            // slower, not wrong.
            self.query(self.short(Command::new("AT+CMMS=2"))).await?;
        }
        let mut mrs = Vec::with_capacity(total);
        for part in parts {
            match self.send_part(part.pdu.tpdu_len, &part.pdu.hex()).await {
                Ok(mr) => {
                    let _ = progress.send(PartSent { seq: part.seq, mr });
                    mrs.push(mr);
                }
                Err(e) if mrs.is_empty() => return Err(e),
                Err(e) => {
                    return Err(ModemError::PartialSend {
                        mrs,
                        total,
                        source: Box::new(e),
                    });
                }
            }
        }
        Ok(mrs)
    }

    /// What must hold before a message goes out: a SIM that finished initialising and
    /// a known SMSC.
    async fn ready_to_send(&mut self) -> Result<(), ModemError> {
        if self.sim_busy {
            return Err(ModemError::Sim(
                "SIM busy (still initialising): not sending yet".into(),
            ));
        }
        self.ensure_smsc().await
    }

    /// One `AT+CMGS`. Refused with "SMSC address unknown" (the modem forgot it), the
    /// SMSC is read and set again and the part goes once more: nothing was sent.
    async fn send_part(&mut self, tpdu_len: usize, hex: &str) -> Result<u8, ModemError> {
        let mut again = true;
        let reply = loop {
            let cmd =
                Command::cmgs(tpdu_len, self.outgoing_pdu(hex)).timeout(self.cfg.timeouts.send);
            let reply = self.exec(cmd).await?;
            let smsc_lost = matches!(&reply.result, FinalResult::CmsError(e)
                if e.code() == Some(CmsError::SMSC_ADDRESS_UNKNOWN));
            if smsc_lost && std::mem::take(&mut again) {
                warn!(modem = %self.name(), "the modem lost its SMSC; setting it again");
                self.smsc = Smsc::Unknown;
                self.ensure_smsc().await?;
                continue;
            }
            break reply;
        };
        if !reply.result.is_ok() {
            return Err(ModemError::from_result("AT+CMGS", reply.result));
        }
        let mr = reply
            .lines
            .iter()
            .find_map(|l| info_params(l, "+CMGS:"))
            .and_then(|p| p.first().and_then(|m| m.parse::<u16>().ok()));
        match mr {
            // Some firmware counts MRs past 255; the TPDU field is one octet.
            Some(mr) => Ok((mr & 0xFF) as u8),
            None => Err(ModemError::NoMessageReference),
        }
    }

    // USSD: a request the network answers, served like a send.
    /// Sends a USSD request and waits for the network's `+CUSD` answer.
    pub async fn ussd(&mut self, code: &str) -> Result<UssdReply, ModemError> {
        if code.is_empty()
            || !code
                .chars()
                .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
        {
            return Err(ModemError::Protocol {
                command: "AT+CUSD".into(),
                detail: "a USSD code holds digits, * and # only".into(),
            });
        }
        let cmd = Command::cusd(code).timeout(self.cfg.timeouts.command);
        self.ok(cmd).await?;
        let deadline = self.now() + self.cfg.timeouts.ussd;
        let conn = self.conn()?;
        let found = conn
            .wait_urc(deadline, |u| matches!(u, Urc::Cusd { .. }))
            .await?;
        let mut reply = None;
        let mut rest = Vec::new();
        for u in conn.take_urcs() {
            match u {
                Urc::Cusd { m, text, dcs } if reply.is_none() => {
                    reply = Some(UssdReply {
                        status: m,
                        text,
                        dcs,
                    });
                }
                other => rest.push(other),
            }
        }
        conn.requeue_urcs(rest);
        match reply {
            Some(r) if found => Ok(r),
            _ => Err(ModemError::Protocol {
                command: "AT+CUSD".into(),
                detail: format!("no +CUSD answer within {:?}", self.cfg.timeouts.ussd),
            }),
        }
    }
}
