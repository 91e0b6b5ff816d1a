//! Prometheus metrics (`GET /metrics`): one recorder per process, and the few helpers
//! the daemon calls where things happen — parts sent, failures and receptions per SIM,
//! signal and registration per modem, recoveries and quarantines, the send latency,
//! and the queue depth by priority (read from the store at scrape time).

use crate::at::Registration;
use crate::modem::ModemState;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder once; later calls return the same handle.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("gsmgw_send_latency_seconds".into()),
                &[0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (an embedding program): then our
        // handle renders nothing, which is harmless.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The text exposition format.
pub fn render() -> String {
    handle().render()
}

pub fn sent_parts(iccid: &str, modem: &str, parts: usize) {
    counter!("gsmgw_sent_parts_total", "iccid" => iccid.to_owned(), "modem" => modem.to_owned())
        .increment(parts as u64);
}

pub fn failed(iccid: Option<&str>, kind: &str) {
    counter!("gsmgw_failed_total", "iccid" => iccid.unwrap_or("").to_owned(), "kind" => kind.to_owned())
        .increment(1);
}

pub fn received(iccid: Option<&str>) {
    counter!("gsmgw_received_total", "iccid" => iccid.unwrap_or("").to_owned()).increment(1);
}

/// Seconds from the hand-over to the modem to the last part accepted by the SMSC.
pub fn send_latency(seconds: f64) {
    histogram!("gsmgw_send_latency_seconds").record(seconds);
}

pub fn queue_depth(by_priority: &[(i32, i64)]) {
    for p in [
        crate::dispatch::priority::OTP,
        crate::dispatch::priority::HIGH,
        crate::dispatch::priority::NORMAL,
        crate::dispatch::priority::BULK,
    ] {
        let n = by_priority.iter().find(|(q, _)| *q == p).map_or(0, |x| x.1);
        gauge!("gsmgw_queue_depth", "priority" => crate::dispatch::priority::name(p)).set(n as f64);
    }
    let other: i64 = by_priority
        .iter()
        .filter(|(q, _)| !matches!(*q, 0 | 100 | 200 | 300))
        .map(|x| x.1)
        .sum();
    gauge!("gsmgw_queue_depth", "priority" => "other").set(other as f64);
}

/// A modem's published state: signal, registration, readiness, and counts of
/// recoveries and quarantines (on entering those states).
pub fn modem_status(
    modem: &str,
    iccid: Option<&str>,
    signal_dbm: Option<i32>,
    registration: Option<Registration>,
    state: &ModemState,
    previous: Option<&ModemState>,
) {
    let m = modem.to_owned();
    let sim = iccid.unwrap_or("").to_owned();
    match signal_dbm {
        Some(dbm) => gauge!("gsmgw_signal_dbm", "modem" => m.clone(), "iccid" => sim.clone())
            .set(f64::from(dbm)),
        None => {
            gauge!("gsmgw_signal_dbm", "modem" => m.clone(), "iccid" => sim.clone()).set(f64::NAN)
        }
    }
    for r in Registration::ALL.map(Some).into_iter().chain([None]) {
        let name = r.map_or("unknown", Registration::name);
        gauge!("gsmgw_registration", "modem" => m.clone(), "state" => name)
            .set(if r == registration { 1.0 } else { 0.0 });
    }
    gauge!("gsmgw_modem_ready", "modem" => m.clone()).set(if state.is_usable() {
        1.0
    } else {
        0.0
    });
    let entered = |f: fn(&ModemState) -> bool| f(state) && !previous.is_some_and(f);
    if entered(|s| matches!(s, ModemState::Recovering(_))) {
        counter!("gsmgw_recoveries_total", "modem" => m.clone()).increment(1);
    }
    if entered(|s| matches!(s, ModemState::Quarantined(_))) {
        counter!("gsmgw_quarantines_total", "modem" => m).increment(1);
    }
}
