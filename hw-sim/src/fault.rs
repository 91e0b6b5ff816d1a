//! Faults and scenario files.
//!
//! Owns: the fault vocabulary shared by `--scenario`, the control API
//! (`POST /modems/{i}/faults`) and the Rust API, and the scenario file format (TOML or
//! JSON). A fault is either a standing condition (kept until replaced or cleared) or an
//! action done once (unplug, hang now, reboot, garbage now, signal change).

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Network registration as `+CREG` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RegState {
    /// Registered on the home network (`<stat>` 1); the default.
    #[default]
    Home,
    /// Registered, roaming (`<stat>` 5).
    Roaming,
    /// Not registered, looking for an operator (`<stat>` 2).
    Searching,
    /// Registration denied (`<stat>` 3).
    Denied,
    /// Not registered and not searching (`<stat>` 0).
    NotRegistered,
}

impl RegState {
    /// `<stat>` of 3GPP TS 27.007 §7.2.
    pub fn stat(self) -> u8 {
        match self {
            RegState::NotRegistered => 0,
            RegState::Home => 1,
            RegState::Searching => 2,
            RegState::Denied => 3,
            RegState::Roaming => 5,
        }
    }

    /// Whether SMS can be sent: home or roaming.
    pub fn registered(self) -> bool {
        matches!(self, RegState::Home | RegState::Roaming)
    }
}

/// One fault. JSON/TOML form: `{"type": "cms_error", "code": 500, "probability": 0.3}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// CMGS takes this long (uniform in [min_ms, max_ms]) before its answer.
    Latency {
        /// Shortest delay, ms.
        min_ms: u64,
        /// Longest delay, ms; at least `min_ms`.
        max_ms: u64,
    },
    /// A CMGS fails with `+CMS ERROR: code` with this probability.
    CmsError {
        /// The `<err>` of 3GPP TS 27.005 §3.2.5, e.g. 500 (unknown error).
        code: u16,
        /// Chance per CMGS, 0..=1.
        probability: f64,
    },
    /// A CMGS is never answered with this probability; the modem then stops answering
    /// anything until `AT+CFUN` or a replug.
    Hang {
        /// Chance per CMGS, 0..=1.
        probability: f64,
    },
    /// Stop answering right now (until CFUN or replug).
    HangNow,
    /// With this probability, `len` random bytes precede a response.
    Garbage {
        /// Chance per response, 0..=1.
        probability: f64,
        /// Bytes of noise, at most 65536.
        len: usize,
    },
    /// Send `len` random bytes right now.
    GarbageNow {
        /// Bytes of noise, at most 65536.
        len: usize,
    },
    /// The port goes away (PTY closed, link removed) and comes back after `down_ms`.
    Unplug {
        /// How long the port stays away, ms.
        down_ms: u64,
    },
    /// Power-cycle as `AT+CFUN=1,1` does (port gone for `down_ms`, state reset).
    Reboot {
        /// How long the port stays away, ms.
        down_ms: u64,
    },
    /// The SIM wants this PIN (then PUK after three wrong tries).
    SimPin {
        /// The PIN `AT+CPIN` must be given.
        pin: String,
        /// The PUK that unblocks it; `12345678` when left out.
        #[serde(default = "default_puk")]
        puk: String,
    },
    /// The SIM is PUK-locked.
    SimPuk {
        /// The PUK that unblocks it; `12345678` when left out.
        #[serde(default = "default_puk")]
        puk: String,
    },
    /// `+CME ERROR: 14` (SIM busy) for this long after every boot, and from now.
    SimBusy {
        /// Length of the busy window, seconds (0..=86400).
        secs: f64,
    },
    /// Registration state (home, roaming, searching, denied, not_registered).
    Registration {
        /// The state `+CREG?` reports from now on.
        state: RegState,
    },
    /// `+CSQ` values; Huawei profiles also say `^RSSI`.
    Signal {
        /// `<rssi>`: 0..=31, or 99 for unknown.
        rssi: u8,
        /// `<ber>`: 0..=7, or 99 for unknown.
        ber: u8,
    },
    /// SIM storage reports full: inbound messages wait in the network.
    StorageFull,
    /// SIM storage capacity.
    StorageCapacity {
        /// Messages the SIM holds, 1..=1000 (the profile sets the default).
        capacity: usize,
    },
    /// Each inbound part is delivered twice with this probability.
    InboundDuplicate {
        /// Chance per part, 0..=1.
        probability: f64,
    },
    /// The parts of an inbound multipart message arrive in a shuffled order.
    InboundReorder,
    /// Answer `OK` instead of `+CMS ERROR` when a send fails.
    OkOnFailure,
    /// No SMSC configured: `+CSCA?` is empty and a PDU without SMSC gets 330.
    NoSmsc,
    /// With this probability a URC (`+CREG`/`^RSSI`) interrupts a response or follows
    /// the `>` prompt.
    UrcNoise {
        /// Chance per response or prompt, 0..=1.
        probability: f64,
    },
    /// Status reports for this modem's messages: delivered (0x00) or the given TP-ST.
    StatusReport {
        /// TP-ST to report; 0 (delivered) when left out.
        #[serde(default)]
        status: u8,
        /// Delay before the report, ms; `None` keeps
        /// [`NetworkSettings::status_report_delay_ms`].
        #[serde(default)]
        delay_ms: Option<u64>,
    },
    /// Direct `+CMT`/`+CDS` not acknowledged with `+CNMA` within this time is taken
    /// back by the network (and redelivered later).
    CnmaTimeout {
        /// How long the network waits for `+CNMA`, ms.
        ms: u64,
    },
    /// The PDU line of the next `count` direct `+CMT`/`+CDS` deliveries (PDU mode) reaches
    /// the host as line noise (some bytes replaced by 0xFF, as a flaky USB-serial adapter
    /// does); each still waits for `+CNMA` like any direct delivery.
    GarbledPdu {
        /// How many deliveries to garble.
        count: u32,
    },
    /// Action: an incoming voice call from `from`: `RING` (`+CRING: VOICE` after
    /// `AT+CRC=1`) and `+CLIP` (after `AT+CLIP=1`) every `interval_ms` until `ATH` /
    /// `AT+CHUP` or `count` rings. With `cms_error`, SMS commands fail while it rings.
    Ring {
        /// The caller's number as `+CLIP` shows it (1..=32 characters).
        from: String,
        /// Rings before the caller gives up, 1..=1000; 5 when left out.
        #[serde(default = "default_ring_count")]
        count: u32,
        /// Time between rings, ms; 3000 when left out.
        #[serde(default = "default_ring_interval")]
        interval_ms: u64,
        /// The `+CMS ERROR` code SMS commands get while it rings; `None`: they work.
        #[serde(default)]
        cms_error: Option<u16>,
    },
}

fn default_ring_count() -> u32 {
    5
}

fn default_ring_interval() -> u64 {
    3000
}

fn default_puk() -> String {
    "12345678".to_string()
}

impl Fault {
    /// The key under which a standing fault replaces an earlier one of its kind;
    /// `None` for one-shot actions.
    pub fn standing_key(&self) -> Option<&'static str> {
        Some(match self {
            Fault::Latency { .. } => "latency",
            Fault::CmsError { .. } => "cms_error",
            Fault::Hang { .. } => "hang",
            Fault::Garbage { .. } => "garbage",
            Fault::SimBusy { .. } => "sim_busy",
            Fault::StorageFull => "storage_full",
            Fault::InboundDuplicate { .. } => "inbound_duplicate",
            Fault::InboundReorder => "inbound_reorder",
            Fault::OkOnFailure => "ok_on_failure",
            Fault::NoSmsc => "no_smsc",
            Fault::UrcNoise { .. } => "urc_noise",
            Fault::StatusReport { .. } => "status_report",
            Fault::CnmaTimeout { .. } => "cnma_timeout",
            Fault::GarbledPdu { .. } => "garbled_pdu",
            Fault::Registration { .. } => "registration",
            Fault::Signal { .. } => "signal",
            Fault::StorageCapacity { .. } => "storage_capacity",
            Fault::SimPin { .. } | Fault::SimPuk { .. } => "sim_lock",
            Fault::HangNow
            | Fault::GarbageNow { .. }
            | Fault::Unplug { .. }
            | Fault::Reboot { .. }
            | Fault::Ring { .. } => {
                return None;
            }
        })
    }

    /// Checks values a scenario or HTTP client may get wrong.
    pub fn validate(&self) -> Result<(), String> {
        let p = |x: f64| {
            if (0.0..=1.0).contains(&x) {
                Ok(())
            } else {
                Err(format!("probability {x} not in 0..=1"))
            }
        };
        match self {
            Fault::Latency { min_ms, max_ms } if min_ms > max_ms => {
                Err("latency min_ms > max_ms".into())
            }
            Fault::Garbage { probability, len } => {
                if *len > 65536 {
                    return Err("garbage len too large".into());
                }
                p(*probability)
            }
            Fault::CmsError { probability, .. }
            | Fault::Hang { probability }
            | Fault::InboundDuplicate { probability }
            | Fault::UrcNoise { probability } => p(*probability),
            Fault::Signal { rssi, ber }
                if (*rssi > 31 && *rssi != 99) || (*ber > 7 && *ber != 99) =>
            {
                Err("signal rssi 0..31|99, ber 0..7|99".into())
            }
            Fault::GarbageNow { len } if *len > 65536 => Err("garbage len too large".into()),
            Fault::StorageCapacity { capacity } if *capacity == 0 || *capacity > 1000 => {
                Err("capacity 1..=1000".into())
            }
            Fault::SimBusy { secs } if !(0.0..=86400.0).contains(secs) => {
                Err("secs 0..=86400".into())
            }
            Fault::Ring {
                from,
                count,
                interval_ms,
                ..
            } => {
                if from.is_empty() || from.len() > 32 {
                    Err("ring: from must be 1..=32 characters".into())
                } else if !(1..=1000).contains(count) {
                    Err("ring: count 1..=1000".into())
                } else if !(1..=600_000).contains(interval_ms) {
                    Err("ring: interval_ms 1..=600000".into())
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// Network-wide settings a scenario may change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSettings {
    /// TP-ST of status reports: 0 delivered; e.g. 0x41 (65) "incompatible destination",
    /// 0x46 (70) "SM validity period expired" for failures.
    pub status_report_status: u8,
    /// Delay before a status report reaches the sender.
    pub status_report_delay_ms: u64,
    /// How long a direct `+CMT`/`+CDS` waits for `+CNMA` (with `+CSMS=1`).
    pub cnma_timeout_ms: u64,
    /// How long the network waits before redelivering a message that was not
    /// acknowledged or could not be delivered (modem gone, storage full, no network).
    pub redeliver_ms: u64,
    /// Delay of an SMS between two modems of the bank.
    pub delivery_delay_ms: u64,
    /// How long the port is gone after `AT+CFUN=1,1`.
    pub reset_ms: u64,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            status_report_status: 0,
            status_report_delay_ms: 200,
            cnma_timeout_ms: 5000,
            redeliver_ms: 10_000,
            delivery_delay_ms: 50,
            reset_ms: 1000,
        }
    }
}

/// Faults for one modem in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModemScenario {
    /// Which modem, from 0; must be below the bank size.
    pub index: usize,
    /// Overrides the bank's profile for this modem; `None` keeps it.
    #[serde(default)]
    pub profile: Option<crate::profile::ProfileName>,
    /// Applied in order at start, as `POST /modems/{i}/faults` would.
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// A fault applied at a point in time after start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedFault {
    /// When, in ms after the bank started.
    pub at_ms: u64,
    /// Which modem, from 0; must be below the bank size.
    pub modem: usize,
    /// What to apply then.
    pub fault: Fault,
}

/// A scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Overrides [`BankConfig::seed`](crate::BankConfig::seed); `None` keeps it.
    pub seed: Option<u64>,
    /// Collapse multi-port devices (quectel-ec25, huawei-e1752…) to their primary AT
    /// port, as if the other ttys were not bound (`--single-port`).
    pub single_port: bool,
    /// Network-wide settings (`[network]`).
    pub network: NetworkSettings,
    /// Per-modem profiles and start-up faults (`[[modem]]`).
    pub modem: Vec<ModemScenario>,
    /// Faults applied later (`[[timeline]]`).
    pub timeline: Vec<TimedFault>,
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read (path, cause).
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    /// Not valid scenario TOML.
    #[error("TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// Not valid scenario JSON.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Parsed, but a value is out of range or a modem index is beyond the bank.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

impl Scenario {
    /// Reads TOML or JSON, chosen by the file extension (`.json` → JSON, else TOML).
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError::Io(path.display().to_string(), e))?;
        let s = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            Scenario::from_json(&text)?
        } else {
            Scenario::from_toml(&text)?
        };
        Ok(s)
    }

    /// Parses and validates a TOML scenario.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    /// Parses and validates a JSON scenario.
    pub fn from_json(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = serde_json::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        for m in &self.modem {
            for f in &m.faults {
                f.validate()
                    .map_err(|e| ScenarioError::Invalid(format!("modem {}: {e}", m.index)))?;
            }
        }
        for t in &self.timeline {
            t.fault
                .validate()
                .map_err(|e| ScenarioError::Invalid(format!("timeline: {e}")))?;
        }
        Ok(())
    }

    /// Checks indexes against the bank size.
    pub fn check_modems(&self, modems: usize) -> Result<(), ScenarioError> {
        for i in self
            .modem
            .iter()
            .map(|m| m.index)
            .chain(self.timeline.iter().map(|t| t.modem))
        {
            if i >= modems {
                return Err(ScenarioError::Invalid(format!(
                    "modem index {i} but the bank has {modems}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn toml_scenario() {
        let s = Scenario::from_toml(
            r#"
seed = 9
[network]
status_report_status = 70
status_report_delay_ms = 10

[[modem]]
index = 1
profile = "huawei"
faults = [
  { type = "latency", min_ms = 100, max_ms = 300 },
  { type = "cms_error", code = 500, probability = 0.5 },
  { type = "registration", state = "roaming" },
]

[[timeline]]
at_ms = 1000
modem = 0
fault = { type = "unplug", down_ms = 500 }
"#,
        )
        .unwrap();
        assert_eq!(s.seed, Some(9));
        assert_eq!(s.network.status_report_status, 70);
        assert_eq!(s.network.redeliver_ms, 10_000);
        assert_eq!(s.modem[0].faults.len(), 3);
        assert_eq!(
            s.modem[0].faults[2],
            Fault::Registration {
                state: RegState::Roaming
            }
        );
        assert_eq!(s.timeline[0].fault, Fault::Unplug { down_ms: 500 });
        assert!(s.check_modems(2).is_ok());
        assert!(s.check_modems(1).is_err());
    }

    #[test]
    fn json_and_validation() {
        let s = Scenario::from_json(
            r#"{"modem":[{"index":0,"faults":[{"type":"sim_pin","pin":"1111"}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            s.modem[0].faults[0],
            Fault::SimPin {
                pin: "1111".into(),
                puk: "12345678".into()
            }
        );
        assert!(
            Scenario::from_json(
                r#"{"modem":[{"index":0,"faults":[{"type":"hang","probability":2.0}]}]}"#
            )
            .is_err()
        );
        assert!(
            Scenario::from_json(r#"{"modem":[{"index":0,"faults":[{"type":"nonsense"}]}]}"#)
                .is_err()
        );
        assert!(Scenario::from_toml("bogus = 1").is_err());
    }
}
