//! Modem profiles (the quirks of real firmware families) and modem identities.
//!
//! Owns: what distinguishes a Huawei from a SIMCom to a host — identification strings,
//! prompt bytes, URCs, storage size and index base, supported CNMI values — and the
//! deterministic MSISDN/IMSI/ICCID/IMEI of each modem.

pub use crate::zoo::{CcidStyle, PortRole, PortSpec, Quirks};
use serde::{Deserialize, Serialize};

/// A firmware family. `Mixed` and `Zoo` are only bank settings: modem i gets the i-th
/// of the old five (`Mixed`) or of the real-model profiles (`Zoo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProfileName {
    /// A plain 3GPP modem with no vendor quirks (the default).
    #[default]
    Generic,
    /// Huawei E3372-like: `^` URCs, packed-hex USSD, storage indexed from 0.
    Huawei,
    /// SIMCom SIM800L-like: `>` prompt on its own line, bare `+CCID`, GSM only.
    Simcom,
    /// Quectel EC25-like: LTE, storage indexed from 0, refuses CNMI `<ds>` 1.
    Quectel,
    /// Siemens-MC55-like: answers `OK` to a `+CMGS` that failed.
    Okfail,
    /// Bank setting: cycles through the five above by modem index.
    Mixed,
    /// Huawei E1752 3G stick (three ttys: modem, voice, PCUI).
    #[serde(rename = "huawei-e1752")]
    HuaweiE1752,
    /// Huawei K3715 (Vodafone) stick.
    #[serde(rename = "huawei-k3715")]
    HuaweiK3715,
    /// ZTE K3565-Z (Vodafone) stick.
    #[serde(rename = "zte-k3565z")]
    ZteK3565z,
    /// Qualcomm M6280 (ZTE-built) stick.
    #[serde(rename = "qualcomm-m6280")]
    QualcommM6280,
    /// Wavecom Fastrack (M1306B), `+CGMM` "MULTIBAND 900E 1800".
    #[serde(rename = "wavecom-fastrack")]
    WavecomFastrack,
    /// Nokia N79, a Symbian S60 phone on USB.
    #[serde(rename = "nokia-n79")]
    NokiaN79,
    /// Siemens TC35 serial terminal (19200 baud).
    #[serde(rename = "siemens-tc35")]
    SiemensTc35,
    /// SIMCom SIM7600 (five ttys: QCDM, NMEA, AT, AT, audio).
    #[serde(rename = "simcom-sim7600")]
    SimcomSim7600,
    /// SIMCom A7672: `ATE0` is answered but echo stays on.
    #[serde(rename = "simcom-a7672")]
    SimcomA7672,
    /// Quectel EC25 (four ttys: QCDM, NMEA, AT primary, AT secondary).
    #[serde(rename = "quectel-ec25")]
    QuectelEc25,
    /// Sierra Wireless EM7455 (QCDM, NMEA, AT).
    #[serde(rename = "sierra-em7455")]
    SierraEm7455,
    /// u-blox SARA-U260 (three AT ports, GNSS tunnel, two diagnostic logs).
    #[serde(rename = "ublox-sara-u2")]
    UbloxSaraU2,
    /// Cinterion PLS8 (AT/PPP, AT primary, NMEA, two unknown ports).
    #[serde(rename = "cinterion-pls8")]
    CinterionPls8,
    /// Telit LE910C1 (QCDM, NMEA, AT primary, AT secondary, ignored port).
    #[serde(rename = "telit-le910c1")]
    TelitLe910c1,
    /// Cycles through the real-model profiles above.
    Zoo,
}

/// The old five, as `mixed` cycles them.
const MIXED: [ProfileName; 5] = [
    ProfileName::Generic,
    ProfileName::Huawei,
    ProfileName::Simcom,
    ProfileName::Quectel,
    ProfileName::Okfail,
];

/// Every real-model profile, as `zoo` cycles them.
pub const ZOO: [ProfileName; 14] = [
    ProfileName::HuaweiE1752,
    ProfileName::HuaweiK3715,
    ProfileName::ZteK3565z,
    ProfileName::QualcommM6280,
    ProfileName::WavecomFastrack,
    ProfileName::NokiaN79,
    ProfileName::SiemensTc35,
    ProfileName::SimcomSim7600,
    ProfileName::SimcomA7672,
    ProfileName::QuectelEc25,
    ProfileName::SierraEm7455,
    ProfileName::UbloxSaraU2,
    ProfileName::CinterionPls8,
    ProfileName::TelitLe910c1,
];

/// Every name `--profile` accepts.
pub const ALL: [ProfileName; 21] = [
    ProfileName::Generic,
    ProfileName::Huawei,
    ProfileName::Simcom,
    ProfileName::Quectel,
    ProfileName::Okfail,
    ProfileName::Mixed,
    ProfileName::HuaweiE1752,
    ProfileName::HuaweiK3715,
    ProfileName::ZteK3565z,
    ProfileName::QualcommM6280,
    ProfileName::WavecomFastrack,
    ProfileName::NokiaN79,
    ProfileName::SiemensTc35,
    ProfileName::SimcomSim7600,
    ProfileName::SimcomA7672,
    ProfileName::QuectelEc25,
    ProfileName::SierraEm7455,
    ProfileName::UbloxSaraU2,
    ProfileName::CinterionPls8,
    ProfileName::TelitLe910c1,
    ProfileName::Zoo,
];

impl std::str::FromStr for ProfileName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let l = s.to_ascii_lowercase().replace('_', "-");
        match l.as_str() {
            "okfail" | "ok-on-failure" | "siemens" => return Ok(ProfileName::Okfail),
            "wavecom" | "wavecom-m1306b" => return Ok(ProfileName::WavecomFastrack),
            "zte-k3565-z" => return Ok(ProfileName::ZteK3565z),
            _ => {}
        }
        ALL.iter()
            .copied()
            .find(|p| p.as_str() == l)
            .ok_or_else(|| {
                let names: Vec<&str> = ALL.iter().map(|p| p.as_str()).collect();
                format!("unknown profile {s:?} ({})", names.join(", "))
            })
    }
}

impl ProfileName {
    /// Resolves `Mixed`/`Zoo` for one modem index.
    pub fn for_index(self, index: usize) -> ProfileName {
        match self {
            ProfileName::Mixed => MIXED[index % MIXED.len()],
            ProfileName::Zoo => ZOO[index % ZOO.len()],
            p => p,
        }
    }

    /// The name as written on the command line, in scenario files and in the control API.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileName::Generic => "generic",
            ProfileName::Huawei => "huawei",
            ProfileName::Simcom => "simcom",
            ProfileName::Quectel => "quectel",
            ProfileName::Okfail => "okfail",
            ProfileName::Mixed => "mixed",
            ProfileName::HuaweiE1752 => "huawei-e1752",
            ProfileName::HuaweiK3715 => "huawei-k3715",
            ProfileName::ZteK3565z => "zte-k3565z",
            ProfileName::QualcommM6280 => "qualcomm-m6280",
            ProfileName::WavecomFastrack => "wavecom-fastrack",
            ProfileName::NokiaN79 => "nokia-n79",
            ProfileName::SiemensTc35 => "siemens-tc35",
            ProfileName::SimcomSim7600 => "simcom-sim7600",
            ProfileName::SimcomA7672 => "simcom-a7672",
            ProfileName::QuectelEc25 => "quectel-ec25",
            ProfileName::SierraEm7455 => "sierra-em7455",
            ProfileName::UbloxSaraU2 => "ublox-sara-u2",
            ProfileName::CinterionPls8 => "cinterion-pls8",
            ProfileName::TelitLe910c1 => "telit-le910c1",
            ProfileName::Zoo => "zoo",
        }
    }
}

/// The behaviour a profile fixes.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The family this is; `Generic` for the `Mixed`/`Zoo` placeholders.
    pub name: ProfileName,
    /// Answer to `+CGMI` and the `Manufacturer:` line of `ATI`.
    pub manufacturer: &'static str,
    /// Answer to `+CGMM` and the `Model:` line of `ATI`.
    pub model: &'static str,
    /// Answer to `+CGMR` and the `Revision:` line of `ATI`.
    pub revision: &'static str,
    /// Bytes sent after `+CMGS=`/`+CMGW=` to ask for the PDU.
    pub prompt: &'static [u8],
    /// Answer `OK` (no `+CMGS:`) when a send fails, as the Siemens MC55 default does.
    pub ok_on_failure: bool,
    /// Huawei `^RSSI`/`^MODE`/`^BOOT`/`^CEND` URCs and `AT^CURC`.
    pub huawei_urcs: bool,
    /// How often a Huawei says `^BOOT` on its own, in seconds (0 = never).
    pub boot_urc_secs: u64,
    /// SIM storage size (messages).
    pub storage: usize,
    /// First storage index (0 on Huawei/Quectel, 1 on SIMCom and 3GPP examples).
    pub first_index: usize,
    /// CNMI `<ds>` values the firmware accepts (Qualcomm-based ones refuse 1).
    pub cnmi_ds: &'static [u8],
    /// Access technology in `+COPS?` (0 GSM, 2 UTRAN, 7 E-UTRAN).
    pub act: u8,
    /// USSD strings travel as packed GSM 7-bit hex (Huawei) rather than text.
    pub ussd_packed_hex: bool,
    /// Everything else a real model does differently (see [`crate::zoo`]).
    pub quirks: Quirks,
}

impl Profile {
    /// The profile of a family; `Mixed` and `Zoo` give the generic one (resolve them
    /// per modem with [`ProfileName::for_index`] first).
    pub fn get(name: ProfileName) -> Profile {
        let generic = Profile {
            name: ProfileName::Generic,
            manufacturer: "hw-sim",
            model: "GSM Modem",
            revision: "hw-sim 0.1.0",
            prompt: b"\r\n> ",
            ok_on_failure: false,
            huawei_urcs: false,
            boot_urc_secs: 0,
            storage: 30,
            first_index: 1,
            cnmi_ds: &[0, 1, 2],
            act: 2,
            ussd_packed_hex: false,
            quirks: Quirks::default(),
        };
        match name {
            ProfileName::Generic | ProfileName::Mixed | ProfileName::Zoo => generic,
            ProfileName::Huawei => Profile {
                name,
                manufacturer: "huawei",
                model: "E3372",
                revision: "22.200.15.00.00",
                huawei_urcs: true,
                boot_urc_secs: 30,
                storage: 50,
                first_index: 0,
                act: 7,
                ussd_packed_hex: true,
                quirks: Quirks {
                    vendor_iccid: Some(crate::zoo::HUAWEI_ICCID),
                    ..Quirks::default()
                },
                ..generic
            },
            ProfileName::Simcom => Profile {
                name,
                manufacturer: "SIMCOM_Ltd",
                model: "SIMCOM_SIM800L",
                revision: "Revision:1418B05SIM800L24",
                prompt: b"\r\n>\r\n",
                storage: 30,
                first_index: 1,
                act: 0,
                quirks: Quirks {
                    ccid: CcidStyle::Bare,
                    ..Quirks::default()
                },
                ..generic
            },
            ProfileName::Quectel => Profile {
                name,
                manufacturer: "Quectel",
                model: "EC25",
                revision: "EC25EFAR06A06M4G",
                storage: 40,
                first_index: 0,
                cnmi_ds: &[0, 2],
                act: 7,
                quirks: Quirks {
                    vendor_iccid: Some(crate::zoo::QUECTEL_ICCID),
                    ..Quirks::default()
                },
                ..generic
            },
            ProfileName::Okfail => Profile {
                name,
                manufacturer: "SIEMENS",
                model: "MC55",
                revision: "REVISION 03.04",
                ok_on_failure: true,
                storage: 25,
                act: 0,
                ..generic
            },
            other => crate::zoo::profile(other, generic),
        }
    }

    /// The AT ports of this profile's layout, in session order (primary first).
    pub fn at_ports(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.quirks.ports.len())
            .filter(|&i| self.quirks.ports[i].role.is_at())
            .collect();
        v.sort_by_key(|&i| self.quirks.ports[i].role != PortRole::AtPrimary);
        v
    }
}

/// Who a modem is on the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The SIM's phone number, E.164 with `+` (`+4915550` and the index in 6 digits).
    pub msisdn: String,
    /// 15 digits on the ITU test network (MCC 001, MNC 01); `+CIMI`.
    pub imsi: String,
    /// 19 digits with a Luhn check digit; `+CCID` and the vendor variants.
    pub iccid: String,
    /// 15 digits with a Luhn check digit; `+CGSN`.
    pub imei: String,
}

/// SplitMix64: a tiny deterministic mixer so identities depend only on (seed, index).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Luhn check digit over a digit string (IMEI, ICCID).
pub fn luhn_digit(digits: &str) -> char {
    let mut sum = 0u32;
    for (i, c) in digits.chars().rev().enumerate() {
        let mut d = c.to_digit(10).unwrap_or(0);
        if i.is_multiple_of(2) {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    char::from_digit((10 - sum % 10) % 10, 10).unwrap_or('0')
}

impl Identity {
    /// The MSISDN depends on the index only (`+4915550` + 6 digits) so tests and
    /// scripts can predict it; IMSI, ICCID and IMEI also depend on the seed.
    pub fn new(seed: u64, index: usize) -> Identity {
        let h = mix(seed ^ mix(index as u64));
        let msisdn = format!("+4915550{index:06}");
        // MCC 001 / MNC 01 is the ITU test network.
        let imsi = format!("00101{:05}{:05}", h % 100_000, index % 100_000);
        let iccid_body = format!("8900101{:06}{:05}", (h >> 20) % 1_000_000, index % 100_000);
        let iccid = format!("{iccid_body}{}", luhn_digit(&iccid_body));
        let imei_body = format!("35{:06}{:06}", (h >> 40) % 1_000_000, index % 1_000_000);
        let imei = format!("{imei_body}{}", luhn_digit(&imei_body));
        Identity {
            msisdn,
            imsi,
            iccid,
            imei,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_value() {
        // 49015420323751 8 is the textbook IMEI example.
        assert_eq!(luhn_digit("49015420323751"), '8');
        assert_eq!(luhn_digit("7992739871"), '3');
    }

    #[test]
    fn identities_are_deterministic_and_distinct() {
        let a = Identity::new(7, 3);
        assert_eq!(a, Identity::new(7, 3));
        assert_ne!(a.imsi, Identity::new(8, 3).imsi);
        assert_ne!(a.iccid, Identity::new(7, 4).iccid);
        assert_eq!(a.imsi.len(), 15);
        assert_eq!(a.imei.len(), 15);
        assert_eq!(a.iccid.len(), 19);
        assert!(a.iccid.starts_with("89"));
        assert_eq!(a.msisdn, "+4915550000003");
        let body = &a.imei[..14];
        assert_eq!(a.imei.chars().last(), Some(luhn_digit(body)));
    }

    #[test]
    fn mixed_cycles() {
        assert_eq!(ProfileName::Mixed.for_index(1), ProfileName::Huawei);
        assert_eq!(ProfileName::Generic.for_index(1), ProfileName::Generic);
        assert_eq!("SIMCOM".parse::<ProfileName>(), Ok(ProfileName::Simcom));
        assert!("nokia".parse::<ProfileName>().is_err());
        for p in ALL {
            assert_eq!(p.as_str().parse::<ProfileName>(), Ok(p));
            let j = serde_json::to_string(&p).unwrap();
            assert_eq!(j, format!("\"{}\"", p.as_str()));
        }
        assert_eq!(ProfileName::Zoo.for_index(0), ProfileName::HuaweiE1752);
    }
}
