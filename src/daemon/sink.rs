//! The [`InboundSink`] that commits what modems receive (messages and status reports)
//! to the store, with their webhook events in the same write.

use crate::modem::{BoxFuture, Inbound, InboundSink, SinkError};
use crate::pdu::inbound::{self, Received};
use crate::store::{self, InboundPart, ReportIn, Store, to_ms};
use crate::webhook::Webhooks;
use std::sync::Arc;
use tracing::{info, warn};

/// Commits inbound messages and status reports; the driver deletes them from the SIM
/// only after this returns `Ok`.
pub struct StoreSink {
    /// Where inbox rows, reports and their events are written.
    pub store: Store,
    /// How long after sending a status report may still match a part, ms
    /// (`dispatch.report_window_secs`).
    pub report_window_ms: i64,
    /// `message.delivered`/`message.failed` and `inbound.received` are written in the
    /// same store write as the report or the inbox row.
    pub webhooks: Arc<Webhooks>,
    /// Opt-out keywords, applied in the inbound message's own write.
    pub optout: Option<Arc<store::OptOutKeywords>>,
    /// The daemon's clock (what stamps reports and inbox rows).
    pub clock: crate::clock::Clock,
}

impl InboundSink for StoreSink {
    fn commit(&self, m: Inbound) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let received_at = to_ms(m.received);
            let window = self.report_window_ms;
            let (hooks, store, clock) = (&self.webhooks, &self.store, self.clock);
            let optout = self.optout.clone();
            let result = match inbound::classify(&m.decoded) {
                Received::Report(f) => {
                    let r = ReportIn {
                        sim: m.iccid.clone(),
                        modem: Some(m.modem.clone()),
                        mr: f.mr,
                        recipient: f.recipient,
                        status_code: f.status_code,
                        category: f.category.to_owned(),
                        scts: Some(f.scts),
                        discharge: Some(f.discharge),
                        pdu: m.pdu.clone(),
                    };
                    hooks
                        .record(store, move |c, announce| {
                            let now = clock.now_ms();
                            let matched = store::record_status_report(c, &r, window, now)?;
                            if let Some(s) = matched.as_ref().and_then(|mt| mt.new_status) {
                                let id = matched.as_ref().map_or(0, |mt| mt.message_id);
                                announce.status(id, s, now)?;
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
                Received::Part(f) => {
                    let p = InboundPart {
                        sim: m.iccid.clone(),
                        modem: m.modem.clone(),
                        sender: f.sender,
                        pdu: m.pdu.clone(),
                        concat: f.concat,
                        sent_at: Some(f.sent_at),
                        received_at,
                    };
                    hooks
                        .record(store, move |c, announce| {
                            let id = store::insert_inbound(c, &p)?;
                            if let Some(id) = id {
                                announce.inbound(id, clock.now_ms())?;
                                if let Some(k) = &optout {
                                    store::apply_opt_out(c, id, k, clock.now_ms())?;
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
                Received::Ignored => Ok(()),
                Received::Undecodable(why) => {
                    // Kept raw in the inbox rather than lost.
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
                    hooks
                        .record(store, move |c, announce| {
                            if let Some(id) = store::insert_inbound(c, &p)? {
                                announce.inbound(id, clock.now_ms())?;
                            }
                            Ok(())
                        })
                        .await
                }
            };
            result.map_err(|e| SinkError(e.to_string()))
        })
    }
}
