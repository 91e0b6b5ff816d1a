//! The device zoo: real modem models as data.
//!
//! Owns: the quirks a real model shows a host (canned answers, error words, missing
//! final results, busy windows, lost SMSC, ICCID commands, boot URCs, call URCs, echo)
//! and its USB port layout (which tty speaks AT, which gets URCs, which is QCDM/NMEA).
//! Every value here comes from a public record of that model; docs/hw-sim.md ("Device
//! zoo") names the record for each. The modem state machine reads these fields; it
//! never asks which model it is.

use crate::profile::{Profile, ProfileName};
use serde::Serialize;

/// What one tty of a device is for (ModemManager's `ID_MM_PORT_TYPE_*` hints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PortRole {
    /// The AT port a host should use (`modem<i>` points at it).
    AtPrimary,
    /// Another AT port on the same SIM and radio (PCUI/modem/PPP port).
    AtSecondary,
    /// Qualcomm diagnostics: binary, never answers AT.
    Qcdm,
    /// GPS NMEA sentences, never answers AT.
    Nmea,
    /// PCM voice, never answers AT.
    Audio,
    /// Vendor logs, GNSS tunnelling, SIM access profile…: never answers AT.
    Diag,
}

impl PortRole {
    /// Whether this tty answers AT commands (primary or secondary).
    pub fn is_at(self) -> bool {
        matches!(self, PortRole::AtPrimary | PortRole::AtSecondary)
    }

    /// The snake_case name used in the control API's port list.
    pub fn as_str(self) -> &'static str {
        match self {
            PortRole::AtPrimary => "at_primary",
            PortRole::AtSecondary => "at_secondary",
            PortRole::Qcdm => "qcdm",
            PortRole::Nmea => "nmea",
            PortRole::Audio => "audio",
            PortRole::Diag => "diag",
        }
    }
}

/// One tty of a device: its USB interface number, role, and whether URCs come out here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    /// USB interface number (`bInterfaceNumber`); names the `modem<i>-if<NN>` link.
    pub iface: u8,
    /// What the tty is for.
    pub role: PortRole,
    /// Unsolicited result codes (`+CMTI`, `RING`, …) come out on this tty; exactly
    /// one port per layout has it.
    pub urcs: bool,
}

const fn port(iface: u8, role: PortRole, urcs: bool) -> PortSpec {
    PortSpec { iface, role, urcs }
}

/// One tty that is the primary AT port and gets every URC: what a serial modem is.
pub const SINGLE: &[PortSpec] = &[port(0, PortRole::AtPrimary, true)];

/// How `AT+CCID` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CcidStyle {
    /// `+CCID: <iccid>` (27.007-style).
    Prefixed,
    /// The bare number (SIMCom SIM800).
    Bare,
    /// Not implemented: the unknown-command answer.
    Unsupported,
}

/// A vendor command that reads the ICCID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorIccid {
    /// Command name with prefix, e.g. `^ICCID`.
    pub cmd: &'static str,
    /// Read form (`AT^ICCID?`) or action form (`AT+QCCID`).
    pub read_form: bool,
    /// Answer prefix, e.g. `^ICCID: `.
    pub prefix: &'static str,
    /// The digits come nibble-swapped as stored on the SIM (EF_ICCID).
    pub swapped: bool,
}

/// Huawei `AT^ICCID?`: `^ICCID: ` and the nibble-swapped digits.
pub const HUAWEI_ICCID: VendorIccid = VendorIccid {
    cmd: "^ICCID",
    read_form: true,
    prefix: "^ICCID: ",
    swapped: true,
};
/// Quectel `AT+QCCID`: `+QCCID: ` and the digits as printed on the card.
pub const QUECTEL_ICCID: VendorIccid = VendorIccid {
    cmd: "+QCCID",
    read_form: false,
    prefix: "+QCCID: ",
    swapped: false,
};
/// Sierra Wireless `AT!ICCID?`: `!ICCID: ` and the digits as printed on the card.
pub const SIERRA_ICCID: VendorIccid = VendorIccid {
    cmd: "!ICCID",
    read_form: true,
    prefix: "!ICCID: ",
    swapped: false,
};

/// How a canned answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `OK`.
    Ok,
    /// `ERROR`.
    Error,
    /// The profile's unknown-command word.
    Unsupported,
    /// No final result at all.
    Nothing,
}

/// A fixed answer to one exact command (`+CPMS=?`, `+ZPAS?`); a key ending in `*`
/// matches any arguments (`+CNMI=*`).
#[derive(Debug, Clone, Copy)]
pub struct Canned {
    /// An extended command with its form, name upper-case (`+CPMS=?`, `+ZPAS?`); a
    /// trailing `*` matches any arguments.
    pub cmd: &'static str,
    /// Information lines, in order, without line endings.
    pub lines: &'static [&'static str],
    /// The final result after them.
    pub end: End,
    /// Line ending of the information lines (`\r\r\n` on the Huawei E1752's `+CLAC`).
    pub eol: &'static str,
}

const fn canned(cmd: &'static str, lines: &'static [&'static str], end: End) -> Canned {
    Canned {
        cmd,
        lines,
        end,
        eol: "\r\n",
    }
}

/// What a model says around an incoming call besides `RING`/`+CLIP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallUrcs {
    /// Nothing more.
    Plain,
    /// `^CEND:1,<secs>,29,16` when the call ends.
    Huawei,
    /// `+WIND: 5,1` when a call starts and `+WIND: 6,1` when it ends (if `AT+WIND`
    /// enabled them).
    Wavecom,
}

/// Which vendor command starts the GPS (and so the NMEA port's sentences).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gps {
    /// No GPS commands (also for devices whose GPS is not modelled).
    None,
    /// `AT+QGPS=1` / `AT+QGPSEND`.
    Quectel,
    /// `AT+CGPS=1` / `AT+CGPS=0`.
    Simcom,
}

/// Everything a real model does differently from plain 27.007/27.005.
#[derive(Debug, Clone)]
pub struct Quirks {
    /// Final result for a command the firmware does not know (`ERROR`, or Huawei
    /// E1752's `COMMAND NOT SUPPORT`).
    pub unsupported_word: &'static str,
    /// Fixed answers, checked before anything else.
    pub canned: &'static [Canned],
    /// `AT+CPIN?` gives its information line and no final result.
    pub cpin_no_final: bool,
    /// After `AT+CFUN=1` this many command lines get `+CME ERROR: 515`.
    pub busy_after_cfun: u8,
    /// After every boot the first this-many `AT+CSCA?` get `+CME ERROR: 14`.
    pub csca_busy_after_boot: u8,
    /// `AT+CSMP=…` forgets the SMSC.
    pub csmp_clears_smsc: bool,
    /// `AT+CPMS=<m1>,<m2>` answers as many used/total pairs as memories given.
    pub cpms_pairs_as_given: bool,
    /// `+CNMI` after boot and `ATZ`.
    pub cnmi_default: [u8; 5],
    /// How `AT+CCID` answers.
    pub ccid: CcidStyle,
    /// The vendor's own ICCID command, if it has one.
    pub vendor_iccid: Option<VendorIccid>,
    /// `AT+CRSM=176,12258,0,0,10` reads EF_ICCID (nibble-swapped).
    pub crsm: bool,
    /// `ATE0` answers `OK` but echo stays on.
    pub sticky_echo: bool,
    /// Lines the modem says on its own after boot: (ms after boot, line).
    pub boot_urcs: &'static [(u64, &'static str)],
    /// What follows `+CLIP: "<number>",<type>` (`,,,,0` on Huawei/Qualcomm/ZTE).
    pub clip_tail: &'static str,
    /// Vendor URCs around an incoming call.
    pub call_urcs: CallUrcs,
    /// `AT+CUSD=1,…` is refused until `AT^USSDMODE=0` (Huawei E1752).
    pub ussdmode_gate: bool,
    /// Line speed the real device runs at (a PTY has none; this is data for hosts
    /// and docs).
    pub nominal_baud: u32,
    /// The device's ttys.
    pub ports: &'static [PortSpec],
    /// Which vendor command starts the GPS.
    pub gps: Gps,
    /// `AT+QURCCFG="urcport",…` moves URCs between ports.
    pub quectel_urcport: bool,
    /// `AT#QSS` SIM status.
    pub telit_qss: bool,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            unsupported_word: "ERROR",
            canned: &[],
            cpin_no_final: false,
            busy_after_cfun: 0,
            csca_busy_after_boot: 0,
            csmp_clears_smsc: false,
            cpms_pairs_as_given: false,
            cnmi_default: [1, 1, 0, 0, 0],
            ccid: CcidStyle::Prefixed,
            vendor_iccid: None,
            crsm: false,
            sticky_echo: false,
            boot_urcs: &[],
            clip_tail: ",,,,0",
            call_urcs: CallUrcs::Plain,
            ussdmode_gate: false,
            nominal_baud: 115_200,
            ports: SINGLE,
            gps: Gps::None,
            quectel_urcport: false,
            telit_qss: false,
        }
    }
}

// ----- recorded answers (python-gsmmodem test/fakemodems.py unless noted) -----

const CPMS_ME_MT_SM_SR: Canned = canned(
    "+CPMS=?",
    &[
        "+CPMS: (\"ME\",\"MT\",\"SM\",\"SR\"),(\"ME\",\"MT\",\"SM\",\"SR\"),(\"ME\",\"MT\",\"SM\",\"SR\")",
    ],
    End::Ok,
);
const BEARTYPE: Canned = canned("+ZPAS?", &["+BEARTYPE: \"UMTS\",\"CS_PS\""], End::Ok);
const CVHU_TEST_AS_SET: Canned = canned("+CVHU=0", &["+CVHU: (0-1)"], End::Ok);

/// The E1752's `+CLAC`: one command per line, each line ended `\r\r\n` (abridged).
const E1752_CLAC: Canned = Canned {
    cmd: "+CLAC",
    lines: &[
        "&C",
        "&D",
        "&F",
        "&V",
        "E",
        "I",
        "L",
        "M",
        "Q",
        "V",
        "X",
        "Z",
        "+CGMI",
        "+CGMM",
        "+CGMR",
        "+CGSN",
        "+CIMI",
        "+CMGF",
        "+CSCA",
        "+CSMP",
        "+CPMS",
        "+CNMI",
        "+CMGL",
        "+CMGR",
        "+CMGS",
        "+CMGD",
        "+CNMA",
        "+CRSM",
        "+CUSD",
        "+CLIP",
        "+CRC",
        "+CHUP",
        "^ICCID",
        "^USSDMODE",
        "^CURC",
        "^BOOT",
    ],
    end: End::Ok,
    eol: "\r\r\n",
};

/// The K3715's `+CLAC`: one `+CLAC:` line (abridged; no `+CCID`, no `^ICCID`).
const K3715_CLAC: Canned = canned(
    "+CLAC",
    &[
        "+CLAC:&C,&D,&E,&F,&S,&V,&W,E,I,L,M,Q,V,X,Z,T,P,D,A,H,O,+CGMI,+CGMM,+CGMR,+CGSN,+CIMI,+CSMS,+CMGF,+CSCA,+CSMP,+CSDH,+CPMS,+CNMI,+CMGL,+CMGR,+CMGS,+CMGD,+CNMA,+CMMS,+CHUP,+CUSD,+CRSM,+CLIP,+CRC,^CURC,^BOOT,",
    ],
    End::Ok,
);

/// The K3565-Z's `+CLAC`: bare names, one per line (abridged; no `+CCID`).
const K3565Z_CLAC: Canned = canned(
    "+CLAC",
    &[
        "&C", "&D", "&E", "&F", "E", "I", "Q", "V", "Z", "+CGMI", "+CGMM", "+CGMR", "+CGSN",
        "+CIMI", "+CSMS", "+CMGF", "+CSCA", "+CSMP", "+CPMS", "+CNMI", "+CMGL", "+CMGR", "+CMGS",
        "+CMGD", "+CNMA", "+CUSD", "+CRSM", "+CLIP", "+CRC", "+ZUSIM",
    ],
    End::Ok,
);

const ZTE_CANNED: &[Canned] = &[
    canned("+CFUN?", &["+CFUN: (0-1,4-7),(0-1)"], End::Ok),
    BEARTYPE,
    CVHU_TEST_AS_SET,
    CPMS_ME_MT_SM_SR,
    K3565Z_CLAC,
];

const WAVECOM_CANNED: &[Canned] = &[
    canned("+CGMR", &[], End::Error),
    canned(
        "+CPMS=?",
        &["+CPMS: ((\"SM\",\"BM\",\"SR\"),(\"SM\"))"],
        End::Ok,
    ),
    canned("+CPMS=\"SM\",\"SM\",\"SR\"", &[], End::Error),
    canned("+CVHU=0", &[], End::Error),
];

const NOKIA_CANNED: &[Canned] = &[
    canned(
        "+CGMR",
        &[
            "V ICPR72_08w44.1",
            "24-11-08",
            "RM-348",
            "(c) Nokia",
            "11.049",
        ],
        End::Ok,
    ),
    canned("+CNMI=*", &[], End::Error),
    canned("+CNMI?", &[], End::Error),
    canned("+CNMI=?", &[], End::Error),
    canned("+CPMS=?", &["+CPMS: (),(),()"], End::Ok),
    canned("+CPMS?", &["+CPMS: ,,,,,,,,"], End::Ok),
    canned("+CPMS=*", &[], End::Error),
    canned("+CMGL", &[], End::Error),
    canned("+CMGL=*", &[], End::Error),
    canned("+CMGR=*", &[], End::Error),
    canned("+CSMP?", &["+CSMP: 49,167,0,0"], End::Ok),
    canned("+GCAP", &["+GCAP: +CGSM,+DS,+W"], End::Ok),
    canned("+CVHU=0", &[], End::Ok),
];

const HUAWEI_E1752_PORTS: &[PortSpec] = &[
    // "modem" port: AT and PPP, no unsolicited output.
    port(0, PortRole::AtSecondary, false),
    // voice (chan_dongle's "audio" port).
    port(1, PortRole::Audio, false),
    // PCUI: AT and every URC (chan_dongle's "data" port, ModemManager's primary).
    port(2, PortRole::AtPrimary, true),
];

const SIM7600_PORTS: &[PortSpec] = &[
    port(0, PortRole::Qcdm, false),
    port(1, PortRole::Nmea, false),
    port(2, PortRole::AtPrimary, true),
    port(3, PortRole::AtSecondary, false),
    port(4, PortRole::Audio, false),
];

const EC25_PORTS: &[PortSpec] = &[
    port(0, PortRole::Qcdm, false),
    port(1, PortRole::Nmea, false),
    port(2, PortRole::AtPrimary, true),
    port(3, PortRole::AtSecondary, false),
];

const EM7455_PORTS: &[PortSpec] = &[
    port(0, PortRole::Qcdm, false),
    port(2, PortRole::Nmea, false),
    port(3, PortRole::AtPrimary, true),
];

const SARA_U2_PORTS: &[PortSpec] = &[
    port(0, PortRole::AtPrimary, true),
    port(2, PortRole::AtSecondary, false),
    port(4, PortRole::AtSecondary, false),
    port(6, PortRole::Diag, false),
    port(8, PortRole::Diag, false),
    port(10, PortRole::Diag, false),
    port(12, PortRole::Diag, false),
];

const PLS8_PORTS: &[PortSpec] = &[
    port(0, PortRole::AtSecondary, false),
    port(2, PortRole::AtPrimary, true),
    port(4, PortRole::Nmea, false),
    port(6, PortRole::Diag, false),
    port(8, PortRole::Diag, false),
];

const LE910C1_PORTS: &[PortSpec] = &[
    port(0, PortRole::Qcdm, false),
    port(3, PortRole::Nmea, false),
    port(4, PortRole::AtPrimary, true),
    port(5, PortRole::AtSecondary, false),
    port(6, PortRole::Diag, false),
];

/// The profile of a real model, built on `generic`.
pub fn profile(name: ProfileName, generic: Profile) -> Profile {
    let q = Quirks::default();
    match name {
        ProfileName::HuaweiE1752 => Profile {
            name,
            manufacturer: "huawei",
            model: "E1752",
            revision: "11.126.13.00.00",
            huawei_urcs: true,
            boot_urc_secs: 30,
            storage: 50,
            first_index: 0,
            act: 2,
            quirks: Quirks {
                unsupported_word: "COMMAND NOT SUPPORT",
                canned: &[CPMS_ME_MT_SM_SR, E1752_CLAC],
                ccid: CcidStyle::Unsupported,
                vendor_iccid: Some(HUAWEI_ICCID),
                crsm: true,
                call_urcs: CallUrcs::Huawei,
                ussdmode_gate: true,
                ports: HUAWEI_E1752_PORTS,
                ..q
            },
            ..generic
        },
        ProfileName::HuaweiK3715 => Profile {
            name,
            manufacturer: "huawei",
            model: "K3715",
            revision: "11.104.05.00.00",
            huawei_urcs: true,
            boot_urc_secs: 30,
            storage: 50,
            first_index: 0,
            act: 2,
            quirks: Quirks {
                canned: &[CPMS_ME_MT_SM_SR, K3715_CLAC],
                ccid: CcidStyle::Unsupported,
                crsm: true,
                call_urcs: CallUrcs::Huawei,
                ..q
            },
            ..generic
        },
        ProfileName::ZteK3565z => Profile {
            name,
            manufacturer: "ZTE INCORPORATED",
            model: "K3565-Z",
            revision: "BD_P673A2V1.0.0B09",
            act: 2,
            quirks: Quirks {
                canned: ZTE_CANNED,
                csmp_clears_smsc: true,
                ccid: CcidStyle::Unsupported,
                crsm: true,
                ..q
            },
            ..generic
        },
        ProfileName::QualcommM6280 => Profile {
            name,
            manufacturer: "QUALCOMM INCORPORATED",
            model: "M6280",
            revision: "M6280_V1.0.0 M6280_V1.0.0 1 [Sep 4 2008 12:00:00]",
            act: 2,
            quirks: Quirks {
                canned: &[BEARTYPE, CVHU_TEST_AS_SET, CPMS_ME_MT_SM_SR],
                csca_busy_after_boot: 2,
                csmp_clears_smsc: true,
                ..q
            },
            ..generic
        },
        ProfileName::WavecomFastrack => Profile {
            name,
            // Both with the leading space the firmware sends.
            manufacturer: " WAVECOM MODEM",
            model: " MULTIBAND  900E  1800",
            revision: "",
            storage: 50,
            act: 0,
            quirks: Quirks {
                canned: WAVECOM_CANNED,
                cpin_no_final: true,
                busy_after_cfun: 2,
                cpms_pairs_as_given: true,
                clip_tail: "",
                call_urcs: CallUrcs::Wavecom,
                nominal_baud: 9600,
                ..q
            },
            ..generic
        },
        ProfileName::NokiaN79 => Profile {
            name,
            manufacturer: "Nokia",
            model: "Nokia N79",
            revision: "V ICPR72_08w44.1",
            act: 2,
            quirks: Quirks {
                canned: NOKIA_CANNED,
                // No message indications: the phone keeps what arrives to itself.
                cnmi_default: [0, 0, 0, 0, 0],
                ..q
            },
            ..generic
        },
        ProfileName::SiemensTc35 => Profile {
            name,
            manufacturer: "SIEMENS",
            model: "TC35",
            revision: "REVISION 04.00",
            storage: 25,
            act: 0,
            quirks: Quirks {
                nominal_baud: 19_200,
                ..q
            },
            ..generic
        },
        ProfileName::SimcomSim7600 => Profile {
            name,
            manufacturer: "SIMCOM INCORPORATED",
            model: "SIMCOM_SIM7600E-H",
            revision: "SIM7600M22_V2.0",
            act: 7,
            quirks: Quirks {
                crsm: true,
                ports: SIM7600_PORTS,
                gps: Gps::Simcom,
                ..q
            },
            ..generic
        },
        ProfileName::SimcomA7672 => Profile {
            name,
            manufacturer: "SIMCOM INCORPORATED",
            model: "A7672E-LASE",
            revision: "A7672M7_V1.11",
            act: 7,
            quirks: Quirks {
                sticky_echo: true,
                crsm: true,
                ..q
            },
            ..generic
        },
        ProfileName::QuectelEc25 => Profile {
            name,
            manufacturer: "Quectel",
            model: "EC25",
            revision: "EC25ECGAR06A04M1G",
            storage: 40,
            first_index: 0,
            cnmi_ds: &[0, 2],
            act: 7,
            quirks: Quirks {
                vendor_iccid: Some(QUECTEL_ICCID),
                crsm: true,
                boot_urcs: &[
                    (100, "RDY"),
                    (150, "+CFUN: 1"),
                    (200, "+CPIN: READY"),
                    (300, "+QIND: SMS DONE"),
                    (400, "+QIND: PB DONE"),
                ],
                ports: EC25_PORTS,
                gps: Gps::Quectel,
                quectel_urcport: true,
                ..q
            },
            ..generic
        },
        ProfileName::SierraEm7455 => Profile {
            name,
            manufacturer: "Sierra Wireless, Incorporated",
            model: "EM7455",
            revision: "SWI9X30C_02.24.05.06",
            act: 7,
            quirks: Quirks {
                vendor_iccid: Some(SIERRA_ICCID),
                crsm: true,
                ports: EM7455_PORTS,
                ..q
            },
            ..generic
        },
        ProfileName::UbloxSaraU2 => Profile {
            name,
            manufacturer: "u-blox",
            model: "SARA-U260",
            revision: "23.41",
            act: 2,
            quirks: Quirks {
                crsm: true,
                boot_urcs: &[(300, "+PBREADY")],
                ports: SARA_U2_PORTS,
                ..q
            },
            ..generic
        },
        ProfileName::CinterionPls8 => Profile {
            name,
            manufacturer: "Cinterion",
            model: "PLS8-E",
            revision: "REVISION 03.017",
            act: 7,
            quirks: Quirks {
                crsm: true,
                boot_urcs: &[(100, "^SYSSTART")],
                ports: PLS8_PORTS,
                ..q
            },
            ..generic
        },
        ProfileName::TelitLe910c1 => Profile {
            name,
            manufacturer: "Telit",
            model: "LE910C1-EUX",
            revision: "25.21.660",
            act: 7,
            quirks: Quirks {
                crsm: true,
                ports: LE910C1_PORTS,
                telit_qss: true,
                ..q
            },
            ..generic
        },
        _ => generic,
    }
}

/// The ICCID as EF_ICCID stores it: BCD with the nibbles of each byte swapped, padded
/// with `F` (ModemManager's `mm_3gpp_parse_iccid` undoes this).
pub fn swap_nibbles(iccid: &str) -> String {
    let mut d = iccid.to_string();
    if d.len() % 2 == 1 {
        d.push('F');
    }
    d.as_bytes()
        .chunks(2)
        .flat_map(|c| [c[1] as char, c[0] as char])
        .collect()
}

/// A `$GPGGA` sentence with a valid checksum for a fixed position (Berlin).
pub fn gpgga(secs_of_day: u64) -> String {
    let (h, m, s) = (
        secs_of_day / 3600 % 24,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
    );
    let body =
        format!("GPGGA,{h:02}{m:02}{s:02}.00,5231.0000,N,01324.0000,E,1,08,1.0,34.0,M,0.0,M,,");
    let sum = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{sum:02X}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn swapped_iccid_matches_modemmanager_example() {
        // src/tests/test-modem-helpers.c: "984402003576012594F9" -> 8944200053671052499
        assert_eq!(swap_nibbles("8944200053671052499"), "984402003576012594F9");
    }

    #[test]
    fn nmea_checksum() {
        let s = gpgga(3661);
        assert!(s.starts_with("$GPGGA,010101.00,"));
        let (body, sum) = s[1..].split_once('*').unwrap();
        let x = body.bytes().fold(0u8, |a, b| a ^ b);
        assert_eq!(format!("{x:02X}"), sum);
    }

    #[test]
    fn every_layout_has_one_primary_that_gets_urcs() {
        for p in crate::profile::ALL {
            let prof = Profile::get(p);
            let ports = prof.quirks.ports;
            let prim: Vec<_> = ports
                .iter()
                .filter(|s| s.role == PortRole::AtPrimary)
                .collect();
            assert_eq!(prim.len(), 1, "{p:?}");
            assert_eq!(ports.iter().filter(|s| s.urcs).count(), 1, "{p:?}");
            assert!(prim[0].urcs, "{p:?}");
        }
    }
}
