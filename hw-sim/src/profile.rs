//! Modem profiles (the quirks of real firmware families) and modem identities.
//!
//! Owns: what distinguishes a Huawei from a SIMCom to a host — identification strings,
//! prompt bytes, URCs, storage size and index base, supported CNMI values — and the
//! deterministic MSISDN/IMSI/ICCID/IMEI of each modem.

use serde::{Deserialize, Serialize};

/// A firmware family. `Mixed` is only a bank setting: modem i gets the i-th of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProfileName {
    #[default]
    Generic,
    Huawei,
    Simcom,
    Quectel,
    /// Siemens-MC55-like: answers `OK` to a `+CMGS` that failed.
    Okfail,
    Mixed,
}

impl std::str::FromStr for ProfileName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "generic" => ProfileName::Generic,
            "huawei" => ProfileName::Huawei,
            "simcom" => ProfileName::Simcom,
            "quectel" => ProfileName::Quectel,
            "okfail" | "ok-on-failure" | "siemens" => ProfileName::Okfail,
            "mixed" => ProfileName::Mixed,
            _ => {
                return Err(format!(
                    "unknown profile {s:?} (generic, huawei, simcom, quectel, okfail, mixed)"
                ));
            }
        })
    }
}

impl ProfileName {
    /// Resolves `Mixed` for one modem index.
    pub fn for_index(self, index: usize) -> ProfileName {
        const CYCLE: [ProfileName; 5] = [
            ProfileName::Generic,
            ProfileName::Huawei,
            ProfileName::Simcom,
            ProfileName::Quectel,
            ProfileName::Okfail,
        ];
        match self {
            ProfileName::Mixed => CYCLE[index % CYCLE.len()],
            p => p,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProfileName::Generic => "generic",
            ProfileName::Huawei => "huawei",
            ProfileName::Simcom => "simcom",
            ProfileName::Quectel => "quectel",
            ProfileName::Okfail => "okfail",
            ProfileName::Mixed => "mixed",
        }
    }
}

/// The behaviour a profile fixes.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: ProfileName,
    pub manufacturer: &'static str,
    pub model: &'static str,
    pub revision: &'static str,
    /// Bytes sent after `+CMGS=`/`+CMGW=` to ask for the PDU.
    pub prompt: &'static [u8],
    /// Answer `OK` (no `+CMGS:`) when a send fails, as the Siemens MC55 default does.
    pub ok_on_failure: bool,
    /// Huawei `^RSSI`/`^MODE`/`^BOOT` URCs and `AT^ICCID?`.
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
}

impl Profile {
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
        };
        match name {
            ProfileName::Generic | ProfileName::Mixed => generic,
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
        }
    }
}

/// Who a modem is on the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub msisdn: String,
    pub imsi: String,
    pub iccid: String,
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
    }
}
