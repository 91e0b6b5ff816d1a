//! The glue between modem tasks and the rest: the [`Outbound`] the dispatcher sends
//! through, the [`InboundSink`] that commits received messages and status reports to
//! the store, and the watcher that turns modem state into pool status.

use crate::at::Classification;
use crate::dispatch::outbound::BoxFuture as DispatchFuture;
use crate::dispatch::{Dispatcher, FailureKind, Outbound, PartSent, SendFailure, SendJob};
use crate::modem::{
    BoxFuture, Inbound, InboundSink, ModemError, ModemHandle, ModemState, PduPart, SinkError,
};
use crate::pdu::Tpdu;
use crate::pool::{ModemStatus, Registration};
use crate::store::{self, InboundPart, ReportIn, Store, now_ms, to_ms};
use crate::webhook::Webhooks;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// A modem task as the dispatcher's [`Outbound`].
pub struct ModemOutbound(pub Arc<ModemHandle>);

impl Outbound for ModemOutbound {
    fn send(&self, job: SendJob) -> DispatchFuture<'_, Result<(), SendFailure>> {
        Box::pin(async move {
            let parts: Vec<PduPart> = job
                .parts
                .iter()
                .map(|p| PduPart {
                    seq: p.seq,
                    hex: p.pdu_hex.clone(),
                    tpdu_len: p.tpdu_len,
                })
                .collect();
            let (tx, mut rx) = mpsc::unbounded_channel::<(u32, u8)>();
            let progress = job.progress.clone();
            let forward = tokio::spawn(async move {
                while let Some((seq, mr)) = rx.recv().await {
                    let _ = progress.send(PartSent { seq, mr });
                }
            });
            let result = self.0.send_pdus(parts, tx).await;
            let _ = forward.await;
            result.map(|_| ()).map_err(|e| failure(&e))
        })
    }
}

/// Maps a driver error to what the dispatcher does with the message.
pub fn failure(e: &ModemError) -> SendFailure {
    let kind = if e.may_have_been_sent() {
        FailureKind::PossiblySent
    } else if e.is_link() {
        FailureKind::Link
    } else {
        match e.classification() {
            Classification::PermanentForMessage => FailureKind::Permanent,
            Classification::Temporary => FailureKind::Temporary,
            Classification::Sim => FailureKind::Sim,
            Classification::Modem => FailureKind::Link,
        }
    };
    let code = match error_source(e) {
        ModemError::Cms { error, .. } => error.code().map_or("cms".into(), |c| format!("cms:{c}")),
        ModemError::Cme { error, .. } => error.code().map_or("cme".into(), |c| format!("cme:{c}")),
        ModemError::Timeout { .. } => "timeout".into(),
        ModemError::NoMessageReference => "no_message_reference".into(),
        ModemError::PortGone | ModemError::PortGoneAfterPayload { .. } => "port_gone".into(),
        ModemError::Sim(_) => "sim".into(),
        _ => "modem".into(),
    };
    SendFailure {
        kind,
        code,
        message: e.to_string(),
    }
}

fn error_source(e: &ModemError) -> &ModemError {
    match e {
        ModemError::PartialSend { source, .. } => error_source(source),
        other => other,
    }
}

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

/// The pool's view of a modem, from its state and latest report.
pub fn pool_status(name: &str, h: &ModemHandle, enabled: bool) -> ModemStatus {
    let state = h.state();
    let report = h.report();
    use crate::modem::Registration as R;
    ModemStatus {
        modem: name.to_owned(),
        // The ICCID, else the IMSI for modems that cannot read it (docs/hardware.md).
        iccid: report.sim_key().map(str::to_owned),
        sim_ready: state.is_usable()
            && matches!(report.sim, Some(crate::modem::SimState::Ready) | None),
        registration: match report.registration {
            Some(R::Home) => Registration::Home,
            Some(R::Roaming) => Registration::Roaming,
            Some(R::Searching) => Registration::Searching,
            Some(R::Denied) => Registration::Denied,
            Some(R::Unregistered) => Registration::Unregistered,
            None => Registration::Unknown,
        },
        signal_dbm: report.signal.and_then(|s| s.rssi_dbm),
        operator: report.operator.clone(),
        quarantined: match &state {
            ModemState::Quarantined(r) => Some(r.clone()),
            _ => None,
        },
        enabled: enabled && state.is_usable(),
        in_flight: 0,
    }
}

/// Follows a modem's state, tells the dispatcher, records its SIM (by ICCID) in the
/// store when it appears, and announces state changes (`modem.state`). Ends when the
/// modem task stops.
pub async fn watch_modem(
    name: String,
    h: Arc<ModemHandle>,
    mut enabled: tokio::sync::watch::Receiver<bool>,
    dispatcher: Dispatcher,
    store: Store,
    webhooks: Arc<Webhooks>,
) {
    let mut state = h.watch_state();
    let mut report = h.watch_report();
    let mut last_iccid: Option<String> = None;
    let mut last_status: Option<ModemStatus> = None;
    let mut last_state: Option<ModemState> = None;
    loop {
        let current = h.state();
        if last_state.as_ref() != Some(&current)
            && webhooks.wants(crate::webhook::EventKind::ModemState)
        {
            let (hooks, modem, st) = (webhooks.clone(), name.clone(), current.clone());
            match store
                .write(move |c| hooks.modem_state_event(c, &modem, &st, now_ms()))
                .await
            {
                Ok(_) => webhooks.poke(),
                Err(e) => warn!(modem = %name, error = %e, "could not record a modem.state event"),
            }
        }
        let s = pool_status(&name, &h, *enabled.borrow());
        crate::telemetry::modem_status(
            &name,
            s.iccid.as_deref(),
            s.signal_dbm,
            s.registration,
            &current,
            last_state.as_ref(),
        );
        last_state = Some(current);
        if s.iccid.is_some() && s.iccid != last_iccid {
            let report = h.report();
            let (iccid, imsi, op, modem) = (
                s.iccid.clone().unwrap_or_default(),
                report.imsi.clone(),
                report.operator.clone(),
                name.clone(),
            );
            if let Err(e) = store
                .write(move |c| {
                    store::upsert_sim(c, &iccid, imsi.as_deref(), &modem, op.as_deref(), now_ms())
                })
                .await
            {
                warn!(modem = %name, error = %e, "could not record the SIM");
            }
            last_iccid = s.iccid.clone();
        }
        if last_status.as_ref() != Some(&s) {
            info!(modem = %name, state = ?h.state(), "modem state");
            dispatcher.modem_status(s.clone());
            last_status = Some(s);
        }
        let changed = tokio::select! {
            r = state.changed() => r.is_ok(),
            r = report.changed() => r.is_ok(),
            r = enabled.changed() => r.is_ok(),
        };
        if !changed {
            break;
        }
        if matches!(*state.borrow(), ModemState::Stopped) {
            break;
        }
    }
    dispatcher.modem_removed(name);
}
