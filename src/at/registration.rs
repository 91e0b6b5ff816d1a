//! Network registration (27.007 `+CREG`/`+CGREG`/`+CEREG` `<stat>`): the one type the
//! driver, the pool and the API share.

use super::response::info_params;
use serde::{Deserialize, Serialize};

/// Network registration, as 27.007 `+CREG`/`+CEREG` `<stat>` reports it. Not knowing it
/// yet is `Option::None` wherever it is held, not a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Registered, home network.
    Home,
    /// Registered, roaming.
    Roaming,
    /// Not registered, searching.
    Searching,
    /// Registration denied.
    Denied,
    /// Not registered and not searching (or unknown).
    Unregistered,
}

impl Registration {
    /// From a 27.007 `<stat>` (including the "SMS only" and "CSFB not preferred" values).
    pub fn from_stat(stat: u8) -> Registration {
        match stat {
            1 | 6 | 9 => Registration::Home,
            5 | 7 | 10 => Registration::Roaming,
            2 => Registration::Searching,
            3 => Registration::Denied,
            _ => Registration::Unregistered,
        }
    }

    /// Whether SMS can go out.
    pub fn is_registered(self) -> bool {
        matches!(self, Registration::Home | Registration::Roaming)
    }

    /// Parses the answer to `AT+CREG?`/`AT+CEREG?`: `<prefix> <n>,<stat>[,...]`.
    pub fn parse_query(line: &str, prefix: &str) -> Option<Registration> {
        let p = info_params(line, prefix)?;
        let stat: u8 = p.get(1)?.parse().ok()?;
        Some(Registration::from_stat(stat))
    }
}

impl Registration {
    /// Every variant, for publishing one gauge per state.
    pub const ALL: [Registration; 5] = [
        Registration::Home,
        Registration::Roaming,
        Registration::Searching,
        Registration::Denied,
        Registration::Unregistered,
    ];

    /// The lowercase name used in JSON, metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Registration::Home => "home",
            Registration::Roaming => "roaming",
            Registration::Searching => "searching",
            Registration::Denied => "denied",
            Registration::Unregistered => "unregistered",
        }
    }
}

impl std::fmt::Display for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
