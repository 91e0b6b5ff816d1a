//! The glue between modem tasks and the rest: the [`Outbound`] the dispatcher sends
//! through (what modems receive is committed by [`super::sink`]), and the watcher that turns modem state into pool status.

use crate::at::Classification;
use crate::dispatch::{Dispatcher, FailureKind, Outbound, SendFailure, SendJob};
use crate::modem::{BoxFuture, ModemError, ModemHandle, ModemState};
use crate::pool::ModemStatus;
use crate::store::{self, Store};
use crate::webhook::Webhooks;
use std::sync::Arc;
use tracing::{info, warn};

/// A modem task as the dispatcher's [`Outbound`].
pub struct ModemOutbound(pub Arc<ModemHandle>);

impl Outbound for ModemOutbound {
    /// The job goes to the modem task as it is: the task reports each accepted part to
    /// the dispatcher's progress sender itself.
    fn send(&self, job: SendJob) -> BoxFuture<'_, Result<(), SendFailure>> {
        Box::pin(async move { self.0.send(job).await.map_err(|e| failure(&e)) })
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

/// The pool's view of a modem, from its state and latest report.
pub fn pool_status(name: &str, h: &ModemHandle, enabled: bool) -> ModemStatus {
    let state = h.state();
    let report = h.report();
    ModemStatus {
        modem: name.to_owned(),
        // The ICCID, else the IMSI for modems that cannot read it (docs/hardware.md).
        iccid: report.sim_key().map(str::to_owned),
        sim_ready: state.is_usable()
            && matches!(report.sim, Some(crate::modem::SimState::Ready) | None),
        registration: report.registration,
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
            let (modem, st) = (name.clone(), current.clone());
            let now = h.clock().now_ms();
            match webhooks
                .record(&store, move |_, announce| {
                    announce.modem_state(&modem, &st, now)
                })
                .await
            {
                Ok(_) => {}
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
            let now = h.clock().now_ms();
            if let Err(e) = store
                .write(move |c| {
                    store::upsert_sim(c, &iccid, imsi.as_deref(), &modem, op.as_deref(), now)
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
