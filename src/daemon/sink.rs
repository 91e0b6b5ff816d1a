//! The [`InboundSink`] that commits what modems receive (messages and status reports)
//! to the store, with their webhook events in the same write.

use crate::modem::{BoxFuture, Inbound, InboundSink, SinkError};
use crate::pdu::Tpdu;
use crate::store::{self, InboundPart, ReportIn, Store, now_ms, to_ms};
use crate::webhook::Webhooks;
use std::sync::Arc;
use tracing::{info, warn};

/// Commits inbound messages and status reports; the driver deletes them from the SIM
/// only after this returns `Ok`.
pub struct StoreSink {
    pub store: Store,
    pub report_window_ms: i64,
    /// `message.delivered`/`message.failed` and `inbound.received` are written in the
    /// same store write as the report or the inbox row.
    pub webhooks: Arc<Webhooks>,
    /// Opt-out keywords, applied in the inbound message's own write.
    pub optout: Option<Arc<store::OptOutKeywords>>,
}

impl InboundSink for StoreSink {
    fn commit(&self, m: Inbound) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let received_at = to_ms(m.received);
            let window = self.report_window_ms;
            let hooks = self.webhooks.clone();
            let optout = self.optout.clone();
            let result = match &m.decoded {
                Ok(pdu) => match &pdu.tpdu {
                    Tpdu::StatusReport(sr) => {
                        let r = ReportIn {
                            sim: m.iccid.clone(),
                            modem: Some(m.modem.clone()),
                            mr: sr.message_ref,
                            recipient: sr.recipient.to_string(),
                            status_code: sr.status.0,
                            category: sr.status.category().name().to_owned(),
                            scts: Some(sr.timestamp.to_string()),
                            discharge: Some(sr.discharge_time.to_string()),
                            pdu: m.pdu.clone(),
                        };
                        self.store
                            .write(move |c| {
                                let now = now_ms();
                                let matched = store::record_status_report(c, &r, window, now)?;
                                if let Some(s) = matched.as_ref().and_then(|mt| mt.new_status) {
                                    let id = matched.as_ref().map_or(0, |mt| mt.message_id);
                                    hooks.status_event(c, id, s, now)?;
                                }
                                Ok(matched)
                            })
                            .await
                            .map(|matched| {
                                if let Some(mt) = matched {
                                    info!(message_id = mt.message_id, part = mt.part_seq, status = ?mt.new_status, "status report");
                                }
                            })
                    }
                    Tpdu::Deliver(d) => {
                        let concat = d
                            .user_data
                            .header
                            .as_ref()
                            .and_then(|h| h.concat())
                            .map(|c| (c.reference, c.total, c.seq));
                        let p = InboundPart {
                            sim: m.iccid.clone(),
                            modem: m.modem.clone(),
                            sender: d.originator.to_string(),
                            pdu: m.pdu.clone(),
                            concat,
                            sent_at: Some(d.timestamp.to_string()),
                            received_at,
                        };
                        self.store
                            .write(move |c| {
                                let id = store::insert_inbound(c, &p)?;
                                if let Some(id) = id {
                                    hooks.inbound_event(c, id, now_ms())?;
                                    if let Some(k) = &optout {
                                        store::apply_opt_out(c, id, k, now_ms())?;
                                    }
                                }
                                Ok(id)
                            })
                            .await
                            .map(|id| {
                                if let Some(id) = id {
                                    info!(inbox_id = id, "inbound message");
                                    crate::telemetry::received(m.iccid.as_deref());
                                }
                            })
                    }
                    Tpdu::Submit(_) => Ok(()),
                },
                Err(why) => {
                    // Undecodable: keep the raw PDU in the inbox rather than lose it.
                    warn!(modem = %m.modem, "undecodable inbound PDU kept raw: {why}");
                    let p = InboundPart {
                        sim: m.iccid.clone(),
                        modem: m.modem.clone(),
                        sender: String::new(),
                        pdu: m.pdu.clone(),
                        concat: None,
                        sent_at: None,
                        received_at,
                    };
                    self.store
                        .write(move |c| {
                            if let Some(id) = store::insert_inbound(c, &p)? {
                                hooks.inbound_event(c, id, now_ms())?;
                            }
                            Ok(())
                        })
                        .await
                }
            };
            self.webhooks.poke();
            result.map_err(|e| SinkError(e.to_string()))
        })
    }
}
