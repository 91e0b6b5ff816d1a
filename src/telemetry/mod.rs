//! Prometheus metrics (`GET /metrics`): one recorder per process, and the few helpers
//! the daemon calls where things happen — parts sent, failures and receptions per SIM,
//! signal and registration per modem, recoveries and quarantines, the send latency,
//! and the queue depth by priority (read from the store at scrape time).
//!
//! Names follow Prometheus' conventions: counters end in `_total`, a unit is part of
//! the name (`_seconds`, `_dbm`), and no sample is ever NaN. The per-modem gauges
//! (`gsmgw_signal_dbm`, `gsmgw_registration`, `gsmgw_modem_ready`) are not kept in the
//! `metrics` registry, which can set a series but never remove one: they are rendered
//! at scrape time from each modem's last published status ([`modem_status`]), so a
//! signal the modem does not know is absent rather than NaN, a SIM swap leaves no
//! series behind under the old ICCID, and a removed modem ([`modem_gone`]) disappears.
//! (The exporter's idle timeout would not do: a gauge set once and steady since would
//! vanish while still true, and an unknown value would linger until the timeout.)

use crate::at::Registration;
use crate::modem::ModemState;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock, PoisonError};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Parts accepted by the SMSC, by SIM and modem.
pub const SENT_PARTS: &str = "gsmgw_sent_parts_total";
/// Messages that ended unsent, by SIM and kind (was `gsmgw_failed_total`).
pub const MESSAGES_FAILED: &str = "gsmgw_messages_failed_total";
/// Inbound messages committed, by SIM (was `gsmgw_received_total`).
pub const INBOUND_MESSAGES: &str = "gsmgw_inbound_messages_total";
/// Hand-over to the modem → last part accepted (histogram).
pub const SEND_LATENCY: &str = "gsmgw_send_latency_seconds";
/// Queued and sending messages, by priority.
pub const QUEUE_DEPTH: &str = "gsmgw_queue_depth";
/// Recovery ladder runs, by modem.
pub const RECOVERIES: &str = "gsmgw_recoveries_total";
/// Quarantines, by modem.
pub const QUARANTINES: &str = "gsmgw_quarantines_total";
/// Incoming calls rejected, by modem (recorded by the API at scrape time).
pub const CALLS_REJECTED: &str = "gsmgw_calls_rejected_total";
/// Signal in dBm, by modem and SIM; absent while unknown (rendered at scrape time).
pub const SIGNAL_DBM: &str = "gsmgw_signal_dbm";
/// 1 for the current registration state, by modem (rendered at scrape time).
pub const REGISTRATION: &str = "gsmgw_registration";
/// 1 while the modem can send, by modem (rendered at scrape time).
pub const MODEM_READY: &str = "gsmgw_modem_ready";

/// The names metrics had before they followed the conventions, and their names now
/// (docs/api.md lists them too).
pub const RENAMED: [(&str, &str); 2] = [
    ("gsmgw_failed_total", MESSAGES_FAILED),
    ("gsmgw_received_total", INBOUND_MESSAGES),
];

/// A modem's gauges as last published ([`modem_status`]).
#[derive(Debug, Clone, PartialEq)]
struct ModemGauges {
    iccid: String,
    signal_dbm: Option<i32>,
    registration: Option<Registration>,
    ready: bool,
}

/// Every modem's gauges, by modem id (sorted: a stable exposition).
static MODEMS: Mutex<BTreeMap<String, ModemGauges>> = Mutex::new(BTreeMap::new());

/// Installs the recorder once; later calls return the same handle.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(SEND_LATENCY.into()),
                &[0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (an embedding program): then our
        // handle renders nothing, which is harmless.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// `# HELP` lines for the families in the registry.
fn describe() {
    describe_counter!(SENT_PARTS, "Parts accepted by the SMSC.");
    describe_counter!(
        MESSAGES_FAILED,
        "Messages that ended unsent (kind: failed, expired)."
    );
    describe_counter!(INBOUND_MESSAGES, "Inbound messages committed.");
    describe_histogram!(
        SEND_LATENCY,
        "Seconds from the hand-over to the modem to the last part accepted by the SMSC."
    );
    describe_gauge!(QUEUE_DEPTH, "Queued and sending messages.");
    describe_counter!(RECOVERIES, "Recovery ladder runs.");
    describe_counter!(QUARANTINES, "Modems quarantined.");
    describe_counter!(CALLS_REJECTED, "Incoming calls rejected.");
}

/// The text exposition format: the registry's families, then the per-modem gauges as
/// the modems last published them.
pub fn render() -> String {
    let mut out = handle().render();
    let modems = MODEMS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let gauges = modem_gauges(&modems);
    if !gauges.is_empty() && !out.is_empty() && !out.ends_with("\n\n") {
        out.push('\n');
    }
    out.push_str(&gauges);
    if !gauges.is_empty() {
        out.push('\n');
    }
    out
}

/// Forgets a removed modem: its gauges leave the exposition (its counters stay, as
/// counters do until the daemon restarts).
pub fn modem_gone(modem: &str) {
    MODEMS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(modem);
}

/// The per-modem gauge families in the text format; a family with no sample is left
/// out entirely, and so is a modem's signal while it is unknown.
fn modem_gauges(modems: &BTreeMap<String, ModemGauges>) -> String {
    let mut out = String::new();
    let signal: Vec<_> = modems
        .iter()
        .filter_map(|(m, g)| Some((m, &g.iccid, g.signal_dbm?)))
        .collect();
    if !signal.is_empty() {
        family(
            &mut out,
            SIGNAL_DBM,
            "Received signal strength in dBm; absent while the modem does not know it.",
        );
        for (m, iccid, dbm) in signal {
            let _ = writeln!(
                out,
                "{SIGNAL_DBM}{{modem=\"{}\",iccid=\"{}\"}} {dbm}",
                escape(m),
                escape(iccid)
            );
        }
    }
    if modems.is_empty() {
        return out;
    }
    family(
        &mut out,
        REGISTRATION,
        "1 for the modem's current registration state (unknown: the modem has not said).",
    );
    for (m, g) in modems {
        for r in Registration::ALL.map(Some).into_iter().chain([None]) {
            let name = r.map_or("unknown", Registration::name);
            let v = u8::from(r == g.registration);
            let _ = writeln!(
                out,
                "{REGISTRATION}{{modem=\"{}\",state=\"{name}\"}} {v}",
                escape(m)
            );
        }
    }
    family(&mut out, MODEM_READY, "1 while the modem can send.");
    for (m, g) in modems {
        let _ = writeln!(
            out,
            "{MODEM_READY}{{modem=\"{}\"}} {}",
            escape(m),
            u8::from(g.ready)
        );
    }
    out
}

/// Starts a family (after a blank line ending the one before, as the exporter's are).
fn family(out: &mut String, name: &str, help: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

/// A label value in the text format: backslash, double quote and line feed escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Counts `parts` accepted by the SMSC from `iccid` in `modem` ([`SENT_PARTS`]).
pub fn sent_parts(iccid: &str, modem: &str, parts: usize) {
    counter!(SENT_PARTS, "iccid" => iccid.to_owned(), "modem" => modem.to_owned())
        .increment(parts as u64);
}

/// Counts a message that ended failed or expired (`kind`), on `iccid` if it had one
/// ([`MESSAGES_FAILED`]).
pub fn failed(iccid: Option<&str>, kind: &str) {
    counter!(MESSAGES_FAILED, "iccid" => iccid.unwrap_or("").to_owned(), "kind" => kind.to_owned())
        .increment(1);
}

/// Counts an inbox message that arrived on `iccid`, if known ([`INBOUND_MESSAGES`]).
pub fn received(iccid: Option<&str>) {
    counter!(INBOUND_MESSAGES, "iccid" => iccid.unwrap_or("").to_owned()).increment(1);
}

/// Seconds from the hand-over to the modem to the last part accepted by the SMSC.
pub fn send_latency(seconds: f64) {
    histogram!(SEND_LATENCY).record(seconds);
}

/// Sets [`QUEUE_DEPTH`] per named priority (0 for one with nothing queued), and the
/// rest under `other`, from `(priority, count)` pairs.
pub fn queue_depth(by_priority: &[(i32, i64)]) {
    for p in [
        crate::dispatch::priority::OTP,
        crate::dispatch::priority::HIGH,
        crate::dispatch::priority::NORMAL,
        crate::dispatch::priority::BULK,
    ] {
        let n = by_priority.iter().find(|(q, _)| *q == p).map_or(0, |x| x.1);
        gauge!(QUEUE_DEPTH, "priority" => crate::dispatch::priority::name(p)).set(n as f64);
    }
    let other: i64 = by_priority
        .iter()
        .filter(|(q, _)| !matches!(*q, 0 | 100 | 200 | 300))
        .map(|x| x.1)
        .sum();
    gauge!(QUEUE_DEPTH, "priority" => "other").set(other as f64);
}

/// A modem's published state: signal (absent from `/metrics` while unknown),
/// registration, readiness, and counts of recoveries and quarantines (on entering
/// those states).
pub fn modem_status(
    modem: &str,
    iccid: Option<&str>,
    signal_dbm: Option<i32>,
    registration: Option<Registration>,
    state: &ModemState,
    previous: Option<&ModemState>,
) {
    MODEMS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(
            modem.to_owned(),
            ModemGauges {
                iccid: iccid.unwrap_or("").to_owned(),
                signal_dbm,
                registration,
                ready: state.is_usable(),
            },
        );
    let entered = |f: fn(&ModemState) -> bool| f(state) && !previous.is_some_and(f);
    if entered(|s| matches!(s, ModemState::Recovering(_))) {
        counter!(RECOVERIES, "modem" => modem.to_owned()).increment(1);
    }
    if entered(|s| matches!(s, ModemState::Quarantined(_))) {
        counter!(QUARANTINES, "modem" => modem.to_owned()).increment(1);
    }
}

#[cfg(test)]
mod tests;
