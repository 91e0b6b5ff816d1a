//! The device zoo over real PTYs: each real-model profile's identity and quirks,
//! multi-port sticks (one SIM and radio behind several ttys) and incoming calls.
//! Every wait is on an event (a line arriving, a link appearing, a counter moving).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Port, Sim, http};
use hw_sim::pdu::{self, Address};
use hw_sim::profile::{CcidStyle, Profile};
use hw_sim::{CallOutcome, Fault, ProfileName, RingSpec};
use std::path::Path;
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(3);

fn one(profile: ProfileName) -> Sim {
    Sim::start(|c| {
        c.profile = profile;
        c.seed = 7;
        c.control = Some("127.0.0.1:0".parse().unwrap());
    })
}

/// A PDU to an outside number: (TPDU length, hex with the `00` SMSC prefix).
fn pdu_to(to: &str, text: &str) -> (usize, String) {
    let (dcs, parts) = pdu::encode_text_parts(text, 1);
    let tpdu = pdu::encode_submit(&Address::parse(to), dcs, false, &parts[0], 0);
    (tpdu.len(), format!("00{}", pdu::to_hex(&tpdu)))
}

fn send(p: &mut Port, to: &str, text: &str) -> String {
    let (len, hex) = pdu_to(to, text);
    let r = p.cmd(&format!("AT+CMGS={len}"));
    if !r.contains('>') {
        return r;
    }
    p.send(hex.as_bytes());
    p.send(&[0x1A]);
    String::from_utf8_lossy(&p.read_until(S, common::final_seen)).into_owned()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(5), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn unswap(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .flat_map(|c| [c[1] as char, c[0] as char])
        .filter(|c| *c != 'F')
        .collect()
}

/// Opens the primary port and waits for the model's boot lines, so that what follows
/// is answered on a quiet line.
fn open_booted(sim: &Sim, i: usize, p: &Profile) -> Port {
    let mut port = sim.open(i);
    if let Some((_, last)) = p.quirks.boot_urcs.last() {
        port.expect(last, S);
    }
    port
}

#[test]
fn every_zoo_profile_identifies_itself() {
    let sim = Sim::start(|c| {
        c.profile = ProfileName::Zoo;
        c.modems = hw_sim::profile::ZOO.len();
        c.seed = 3;
    });
    let infos = sim.bank().modems();
    for (i, name) in hw_sim::profile::ZOO.iter().enumerate() {
        let prof = Profile::get(*name);
        let info = &infos[i];
        assert_eq!(info.profile, name.as_str());
        assert_eq!(info.nominal_baud, prof.quirks.nominal_baud);
        assert_eq!(info.ports.len(), prof.quirks.ports.len(), "{name:?}");
        let mut p = open_booted(&sim, i, &prof);
        let cgmi = p.cmd("AT+CGMI");
        assert!(
            cgmi.contains(&format!("\r\n{}\r\n", prof.manufacturer)),
            "{name:?} {cgmi:?}"
        );
        let cgmm = p.cmd("AT+CGMM");
        assert!(
            cgmm.contains(&format!("\r\n{}\r\n", prof.model)),
            "{name:?} {cgmm:?}"
        );
        assert!(p.cmd("AT+CGSN").contains(&info.imei), "{name:?}");
        assert!(p.cmd("AT+CIMI").contains(&info.imsi), "{name:?}");
        // However the model tells its ICCID, it is this SIM's.
        let ccid = p.cmd("AT+CCID");
        match prof.quirks.ccid {
            CcidStyle::Prefixed => {
                assert!(ccid.contains(&format!("+CCID: {}", info.iccid)), "{name:?}")
            }
            CcidStyle::Bare => assert!(ccid.contains(&info.iccid), "{name:?}"),
            CcidStyle::Unsupported => assert!(
                ccid.ends_with(&format!("\r\n{}\r\n", prof.quirks.unsupported_word)),
                "{name:?} {ccid:?}"
            ),
        }
        if let Some(v) = prof.quirks.vendor_iccid {
            let form = if v.read_form { "?" } else { "" };
            let r = p.cmd(&format!("AT{}{form}", v.cmd));
            let line = r.lines().find(|l| l.starts_with(v.prefix.trim())).unwrap();
            let got = line[v.prefix.len()..].trim();
            let got = if v.swapped {
                unswap(got)
            } else {
                got.to_string()
            };
            assert_eq!(got, info.iccid, "{name:?}");
        }
        if prof.quirks.crsm {
            let r = p.cmd("AT+CRSM=176,12258,0,0,10");
            let hex = r.split('"').nth(1).unwrap();
            assert!(r.contains("+CRSM: 144,0,"), "{name:?} {r:?}");
            assert_eq!(unswap(hex), info.iccid, "{name:?}");
        }
    }
    sim.shutdown();
}

#[test]
fn huawei_e1752_error_words_clac_ussdmode_and_iccid() {
    let sim = one(ProfileName::HuaweiE1752);
    let info = sim.bank().modems()[0].clone();
    let mut p = sim.open(0);
    p.cmd("ATE0");
    for probe in ["AT+WIND?", "AT+ZPAS?", "AT+CCID", "AT+BOGUS"] {
        assert_eq!(p.cmd(probe), "\r\nCOMMAND NOT SUPPORT\r\n", "{probe}");
    }
    // CME errors stay CME errors.
    assert_eq!(p.cmd("AT+CMEE=1;+CMGF=7"), "\r\n+CME ERROR: 50\r\n");
    let clac = p.cmd("AT+CLAC");
    assert!(clac.starts_with("\r\n&C\r\r\n&D\r\r\n&F\r\r\n"), "{clac:?}");
    assert!(clac.ends_with("^BOOT\r\r\n\r\nOK\r\n"), "{clac:?}");
    let iccid = p.cmd("AT^ICCID?");
    assert!(iccid.contains(&format!(
        "^ICCID: {}",
        hw_sim::zoo::swap_nibbles(&info.iccid)
    )));
    // Text USSD is refused until ^USSDMODE=0.
    assert_eq!(p.cmd("AT^USSDMODE?"), "\r\n^USSDMODE: 1\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CUSD=1,\"*100#\",15"), "\r\nERROR\r\n");
    assert_eq!(p.cmd("AT^USSDMODE=0"), "\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CUSD=1,\"*100#\",15"), "\r\nOK\r\n");
    p.expect("+CUSD: 0,\"Your balance", S);
    sim.shutdown();
}

#[test]
fn huawei_k3715_has_no_ccid_but_crsm() {
    let sim = one(ProfileName::HuaweiK3715);
    let mut p = sim.open(0);
    p.cmd("ATE0");
    assert_eq!(p.cmd("AT+CCID"), "\r\nERROR\r\n");
    assert_eq!(p.cmd("AT^ICCID?"), "\r\nERROR\r\n");
    assert!(p.cmd("AT+CLAC").starts_with("\r\n+CLAC:&C,&D,"));
    assert_eq!(
        p.cmd("AT+CPMS=?"),
        "\r\n+CPMS: (\"ME\",\"MT\",\"SM\",\"SR\"),(\"ME\",\"MT\",\"SM\",\"SR\"),(\"ME\",\"MT\",\"SM\",\"SR\")\r\n\r\nOK\r\n"
    );
    // Another file than EF_ICCID: 6A82.
    assert_eq!(
        p.cmd("AT+CRSM=176,28423,0,0,9"),
        "\r\n+CRSM: 106,130\r\n\r\nOK\r\n"
    );
    sim.shutdown();
}

#[test]
fn zte_and_qualcomm_lose_the_smsc_and_answer_oddly() {
    let sim = one(ProfileName::ZteK3565z);
    let mut p = sim.open(0);
    p.cmd("ATE0");
    assert_eq!(
        p.cmd("AT+CFUN?"),
        "\r\n+CFUN: (0-1,4-7),(0-1)\r\n\r\nOK\r\n"
    );
    assert_eq!(
        p.cmd("AT+ZPAS?"),
        "\r\n+BEARTYPE: \"UMTS\",\"CS_PS\"\r\n\r\nOK\r\n"
    );
    assert_eq!(p.cmd("AT+CVHU=0"), "\r\n+CVHU: (0-1)\r\n\r\nOK\r\n");
    assert!(p.cmd("AT+CSCA?").contains("+4915559999999"));
    assert_eq!(p.cmd("AT+CSMP=17,167,0,0"), "\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CSCA?"), "\r\n+CSCA: \"\",129\r\n\r\nOK\r\n");
    assert!(send(&mut p, "+491701234567", "x").ends_with("+CMS ERROR: 330\r\n"));
    assert_eq!(p.cmd("AT+CSCA=\"+4915559999999\""), "\r\nOK\r\n");
    assert!(send(&mut p, "+491701234567", "x").contains("+CMGS: "));
    sim.shutdown();

    let sim = one(ProfileName::QualcommM6280);
    let mut p = sim.open(0);
    p.cmd("ATE0");
    // SIM busy on +CSCA? right after boot (twice), then the number.
    assert_eq!(p.cmd("AT+CSCA?"), "\r\n+CME ERROR: 14\r\n");
    assert_eq!(p.cmd("AT+CSCA?"), "\r\n+CME ERROR: 14\r\n");
    assert!(p.cmd("AT+CSCA?").contains("+4915559999999"));
    assert_eq!(p.cmd("AT+CSMP=17,167,0,0"), "\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CSCA?"), "\r\n+CSCA: \"\",129\r\n\r\nOK\r\n");
    // Reboot: SIM busy again.
    sim.bank()
        .set_fault(0, Fault::Reboot { down_ms: 50 })
        .unwrap();
    wait_until("replug", || {
        sim.bank().metrics().modems[0].counts.replugs == 1
    });
    wait_until("link back", || std::fs::read_link(sim.link(0)).is_ok());
    let mut p = sim.open(0);
    p.cmd("ATE0");
    assert_eq!(p.cmd("AT+CSCA?"), "\r\n+CME ERROR: 14\r\n");
    sim.shutdown();
}

#[test]
fn wavecom_leading_spaces_missing_ok_and_busy_after_cfun() {
    let sim = one(ProfileName::WavecomFastrack);
    assert_eq!(sim.bank().modems()[0].nominal_baud, 9600);
    let mut p = sim.open(0);
    p.cmd("ATE0");
    assert_eq!(p.cmd("AT+CGMI"), "\r\n WAVECOM MODEM\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CGMM"), "\r\n MULTIBAND  900E  1800\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CGMR"), "\r\nERROR\r\n");
    // +CPIN? gives its line and no final result: the next command's OK is the only one.
    p.send(b"AT+CPIN?\r");
    let r = String::from_utf8_lossy(&p.read_until(S, |b| b.ends_with(b"READY\r\n"))).into_owned();
    assert_eq!(r, "\r\n+CPIN: READY\r\n");
    assert_eq!(p.cmd("AT"), "\r\nOK\r\n");
    assert_eq!(
        p.cmd("AT+CPMS=?"),
        "\r\n+CPMS: ((\"SM\",\"BM\",\"SR\"),(\"SM\"))\r\n\r\nOK\r\n"
    );
    assert_eq!(p.cmd("AT+CPMS=\"SM\",\"SM\",\"SR\""), "\r\nERROR\r\n");
    assert_eq!(
        p.cmd("AT+CPMS=\"SM\",\"SM\""),
        "\r\n+CPMS: 0,50,0,50\r\n\r\nOK\r\n"
    );
    // Device busy for two commands after AT+CFUN=1.
    assert_eq!(p.cmd("AT+CFUN=1"), "\r\nOK\r\n");
    assert_eq!(p.cmd("AT"), "\r\n+CME ERROR: 515\r\n");
    assert_eq!(p.cmd("AT+CSQ"), "\r\n+CME ERROR: 515\r\n");
    assert_eq!(p.cmd("AT"), "\r\nOK\r\n");
    assert_eq!(p.cmd("AT+WIND?"), "\r\n+WIND: 0\r\n\r\nOK\r\n");
    sim.shutdown();
}

#[test]
fn nokia_n79_sends_without_cnmi_or_storage() {
    let sim = one(ProfileName::NokiaN79);
    let mut p = sim.open(0);
    p.cmd("ATE0");
    let cgmr = p.cmd("AT+CGMR");
    assert_eq!(
        cgmr,
        "\r\nV ICPR72_08w44.1\r\n24-11-08\r\nRM-348\r\n(c) Nokia\r\n11.049\r\n\r\nOK\r\n"
    );
    assert_eq!(p.cmd("AT+CNMI=2,1,0,2"), "\r\nERROR\r\n");
    assert_eq!(p.cmd("AT+CPMS=?"), "\r\n+CPMS: (),(),()\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CPMS?"), "\r\n+CPMS: ,,,,,,,,\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CPMS=\"SM\",\"SM\""), "\r\nERROR\r\n");
    assert_eq!(p.cmd("AT+CMGL=4"), "\r\nERROR\r\n");
    assert_eq!(p.cmd("AT+CSMP?"), "\r\n+CSMP: 49,167,0,0\r\n\r\nOK\r\n");
    assert!(send(&mut p, "+491701234567", "from a phone").contains("+CMGS: 1"));
    assert_eq!(sim.bank().messages()[0].text, "from a phone");
    sim.shutdown();
}

#[test]
fn tc35_baud_a7672_sticky_echo_telit_qss() {
    let sim = one(ProfileName::SiemensTc35);
    assert_eq!(sim.bank().modems()[0].nominal_baud, 19_200);
    let mut p = sim.open(0);
    p.cmd("ATE0");
    // Kannel's TC35 init string.
    assert_eq!(p.cmd("AT+CNMI=1,2,0,1,1"), "\r\nOK\r\n");
    sim.shutdown();

    let sim = one(ProfileName::SimcomA7672);
    let mut p = sim.open(0);
    assert_eq!(p.cmd("ATE0"), "ATE0\r\r\nOK\r\n");
    assert_eq!(p.cmd("AT"), "AT\r\r\nOK\r\n");
    sim.shutdown();

    let sim = one(ProfileName::TelitLe910c1);
    let mut p = sim.open(0);
    p.cmd("ATE0");
    assert_eq!(p.cmd("AT#QSS?"), "\r\n#QSS: 0,3\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT#QSS=1;#QSS?"), "\r\n#QSS: 1,3\r\n\r\nOK\r\n");
    sim.shutdown();
}

#[test]
fn boot_lines_come_after_every_boot() {
    for (profile, lines) in [
        (
            ProfileName::QuectelEc25,
            &[
                "RDY",
                "+CFUN: 1",
                "+CPIN: READY",
                "+QIND: SMS DONE",
                "+QIND: PB DONE",
            ][..],
        ),
        (ProfileName::UbloxSaraU2, &["+PBREADY"][..]),
        (ProfileName::CinterionPls8, &["^SYSSTART"][..]),
    ] {
        let sim = one(profile);
        let mut p = sim.open(0);
        let last = lines[lines.len() - 1];
        let got = p.expect(last, S);
        let mut at = 0;
        for l in lines {
            let pos = got[at..]
                .find(&format!("\r\n{l}\r\n"))
                .unwrap_or_else(|| panic!("{profile:?}: {l} in {got:?}"));
            at += pos + l.len();
        }
        // Again after AT+CFUN=1,1.
        p.cmd("AT+CFUN=1,1");
        wait_until("reboot", || {
            sim.bank().metrics().modems[0].counts.replugs == 1
                && std::fs::read_link(sim.link(0)).is_ok()
        });
        let mut p = sim.open(0);
        p.expect(last, S);
        sim.shutdown();
    }
}

fn link_named(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join("links").join(name)
}

#[test]
fn quectel_ec25_is_four_ttys_on_one_sim() {
    let sim = Sim::start(|c| {
        c.profile = ProfileName::QuectelEc25;
        c.modems = 2;
        c.seed = 9;
    });
    let info = sim.bank().modems()[0].clone();
    let names: Vec<&str> = info.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["modem0-if00", "modem0-if01", "modem0-if02", "modem0-if03"]
    );
    let roles: Vec<&str> = info.ports.iter().map(|p| p.role).collect();
    assert_eq!(roles, ["qcdm", "nmea", "at_primary", "at_secondary"]);
    assert_eq!(
        info.ports.iter().map(|p| p.urcs).collect::<Vec<_>>(),
        [false, false, true, false]
    );
    // modem0 is the primary AT port (if02).
    assert_eq!(
        std::fs::read_link(&info.path).unwrap(),
        std::fs::read_link(&info.ports[2].path).unwrap()
    );
    assert_eq!(info.pty, info.ports[2].pty);
    let dir = sim.dir.path();
    let mut prim = Port::open(&link_named(dir, "modem0-if02"));
    let mut sec = Port::open(&link_named(dir, "modem0-if03"));
    let mut qcdm = Port::open(&link_named(dir, "modem0-if00"));
    let mut nmea = Port::open(&link_named(dir, "modem0-if01"));
    // Boot lines only on the primary.
    prim.expect("+QIND: PB DONE", S);
    prim.cmd("ATE0");
    let s0 = sec.cmd("ATE0");
    assert_eq!(s0, "ATE0\r\r\nOK\r\n", "no boot lines on the secondary");
    // Same IMEI on both AT ports; per-port V.250 state.
    assert!(prim.cmd("AT+CGSN").contains(&info.imei));
    assert!(sec.cmd("AT+CGSN").contains(&info.imei));
    assert_eq!(sec.cmd("AT+CMGF=1"), "\r\nOK\r\n");
    assert_eq!(prim.cmd("AT+CMGF?"), "\r\n+CMGF: 0\r\n\r\nOK\r\n");
    assert_eq!(sec.cmd("AT+CMGF=0"), "\r\nOK\r\n");
    // The QCDM and NMEA ports never answer AT: once the modem has consumed the bytes
    // and a later round trip on the primary has completed, nothing came back.
    let before = sim.bank().metrics().modems[0].counts.bytes_in;
    qcdm.send(b"AT\r");
    nmea.send(b"AT\r");
    wait_until("consumed", || {
        sim.bank().metrics().modems[0].counts.bytes_in >= before + 6
    });
    assert_eq!(prim.cmd("AT"), "\r\nOK\r\n");
    assert!(qcdm.read_now().is_empty());
    assert!(nmea.read_now().is_empty());
    // GPS on: NMEA sentences on if01.
    assert_eq!(prim.cmd("AT+QGPS=1"), "\r\nOK\r\n");
    let g = nmea.expect("$GPGGA,", S);
    assert!(!g.contains("OK"));
    assert_eq!(prim.cmd("AT+QGPSEND"), "\r\nOK\r\n");
    // Inbound: +CMTI on the primary only, stored once in the shared SIM storage.
    sim.bank().inject_inbound(0, "+4930123456", "one").unwrap();
    prim.expect("+CMTI: \"SM\",0", S);
    let l = sec.cmd("AT+CMGL=4");
    assert!(!l.contains("+CMTI"), "{l:?}");
    assert!(l.contains("+CMGL: 0,0,"), "{l:?}");
    assert!(prim.cmd("AT+CPMS?").contains("\"SM\",1,40"));
    // Either port sends through the one radio: the MRs run on.
    assert!(send(&mut prim, "+491701234567", "via primary").contains("+CMGS: 1"));
    assert!(send(&mut sec, "+491701234567", "via secondary").contains("+CMGS: 2"));
    let msgs = sim.bank().messages();
    assert_eq!(msgs.len(), 2);
    assert!(msgs.iter().all(|m| m.modem == 0));
    // URCs can be moved to the modem port (AT+QURCCFG): the other way round.
    assert_eq!(
        prim.cmd("AT+QURCCFG=\"urcport\",\"usbmodem\""),
        "\r\nOK\r\n"
    );
    assert_eq!(
        sec.cmd("AT+QURCCFG=\"urcport\""),
        "\r\n+QURCCFG: \"urcport\",\"usbmodem\"\r\n\r\nOK\r\n"
    );
    sim.bank().inject_inbound(0, "+4930123456", "two").unwrap();
    sec.expect("+CMTI: \"SM\",1", S);
    let pr = prim.cmd("AT");
    assert_eq!(pr, "\r\nOK\r\n");
    // Modem 1 is another device with its own ports.
    let info1 = &sim.bank().modems()[1];
    assert_eq!(info1.ports[3].name, "modem1-if03");
    assert_ne!(info1.imei, info.imei);
    // Unplug takes every tty at once; replug brings them all back.
    let old: Vec<_> = info.ports.iter().map(|p| p.pty.clone()).collect();
    sim.bank()
        .set_fault(0, Fault::Unplug { down_ms: 200 })
        .unwrap();
    wait_until("all links gone", || {
        info.ports
            .iter()
            .all(|p| std::fs::symlink_metadata(&p.path).is_err())
            && std::fs::symlink_metadata(&info.path).is_err()
    });
    assert!(
        sim.bank().modems()[0].ports.iter().all(|p| p.pty.is_none()),
        "unplugged"
    );
    assert_eq!(sim.bank().modems()[0].state, "unplugged");
    wait_until("all links back", || {
        info.ports
            .iter()
            .all(|p| std::fs::read_link(&p.path).is_ok())
            && std::fs::read_link(&info.path).is_ok()
    });
    let now: Vec<_> = sim.bank().modems()[0]
        .ports
        .iter()
        .map(|p| p.pty.clone())
        .collect();
    assert!(now.iter().all(|p| p.is_some()));
    assert_ne!(now, old);
    let mut prim = Port::open(&link_named(dir, "modem0-if02"));
    prim.expect("+QIND: PB DONE", S);
    let mut sec = Port::open(&link_named(dir, "modem0-if03"));
    assert!(sec.cmd("AT+CGSN").contains(&info.imei));
    sim.shutdown();
}

#[test]
fn single_port_scenario_collapses_sticks() {
    let sim = Sim::start(|c| {
        c.profile = ProfileName::QuectelEc25;
        c.scenario = Some(hw_sim::Scenario {
            single_port: true,
            ..Default::default()
        });
    });
    let info = sim.bank().modems()[0].clone();
    assert_eq!(info.ports.len(), 1);
    assert_eq!(info.ports[0].name, "modem0");
    assert!(std::fs::symlink_metadata(sim.dir.path().join("links/modem0-if02")).is_err());
    let mut p = sim.open(0);
    p.expect("RDY", S);
    sim.shutdown();
}

#[test]
fn huawei_e1752_ports_ring_on_pcui_and_hang_up_on_modem_port() {
    let sim = one(ProfileName::HuaweiE1752);
    let info = sim.bank().modems()[0].clone();
    let roles: Vec<(u8, &str)> = info.ports.iter().map(|p| (p.iface, p.role)).collect();
    assert_eq!(
        roles,
        [(0, "at_secondary"), (1, "audio"), (2, "at_primary")]
    );
    let dir = sim.dir.path();
    let mut pcui = Port::open(&link_named(dir, "modem0-if02"));
    let mut mdm = Port::open(&link_named(dir, "modem0-if00"));
    pcui.cmd("ATE0");
    mdm.cmd("ATE0");
    assert!(mdm.cmd("AT+CGSN").contains(&info.imei));
    assert_eq!(pcui.cmd("AT+CLIP=1;+CRC=1"), "\r\nOK\r\n");
    sim.bank()
        .ring(
            0,
            RingSpec {
                from: "+4930123456".into(),
                count: 20,
                interval_ms: 100,
                cms_error: None,
            },
        )
        .unwrap();
    pcui.expect(
        "+CRING: VOICE\r\n\r\n+CLIP: \"+4930123456\",145,,,,0\r\n",
        S,
    );
    // Hang up on the modem port: it has seen no RING, yet ATH works there.
    let h = mdm.cmd("ATH");
    assert_eq!(h, "\r\nOK\r\n");
    pcui.expect("^CEND:1,0,29,16", S);
    let calls = sim.bank().calls(0).unwrap();
    assert_eq!(calls[0].outcome, CallOutcome::HungUp);
    assert_eq!(calls[0].ended_by.as_deref(), Some("ATH"));
    assert_eq!(calls[0].ended_on_port, Some(1));
    sim.shutdown();
}

#[test]
fn ringing_until_hangup_or_give_up() {
    let sim = one(ProfileName::Generic);
    let addr = sim.bank().control_addr().unwrap();
    let mut p = sim.open(0);
    p.cmd("ATE0");
    // Plain RING without +CRC/+CLIP; the caller gives up after two rings.
    let (st, body) = http(
        addr,
        "POST",
        "/modems/0/ring",
        Some(r#"{"from":"+4930123456","count":2,"interval_ms":50}"#),
    );
    assert_eq!(st, 202, "{body}");
    let two = p.read_until(S, |b| {
        String::from_utf8_lossy(b).matches("RING").count() >= 2
    });
    assert_eq!(
        String::from_utf8_lossy(&two)
            .matches("\r\nRING\r\n")
            .count(),
        2
    );
    wait_until("missed", || {
        sim.bank().calls(0).unwrap()[0].outcome == CallOutcome::Missed
    });
    let c = &sim.bank().calls(0).unwrap()[0];
    assert_eq!(c.rings, 2);
    assert!(c.ended_by.is_none());
    // With +CLIP/+CRC; a send while it rings still works; ATH ends it.
    assert_eq!(
        p.cmd("AT+CLIP=1;+CRC=1;+CLIP?"),
        "\r\n+CLIP: 1,1\r\n\r\nOK\r\n"
    );
    let id = sim
        .bank()
        .ring(
            0,
            RingSpec {
                from: "+4930999".into(),
                count: 50,
                interval_ms: 2000,
                cms_error: None,
            },
        )
        .unwrap();
    p.expect("+CLIP: \"+4930999\",145,,,,0\r\n", S);
    assert!(
        p.cmd("AT+CLCC")
            .contains("+CLCC: 1,1,4,0,0,\"+4930999\",145")
    );
    let r = send(&mut p, "+491701234567", "during a call");
    assert!(r.contains("+CMGS: "), "{r:?}");
    assert!(p.cmd("AT+CHUP").ends_with("\r\nOK\r\n"));
    let calls = sim.bank().calls(0).unwrap();
    let c = calls.iter().find(|c| c.id == id).unwrap();
    assert_eq!(c.outcome, CallOutcome::HungUp);
    assert_eq!(c.ended_by.as_deref(), Some("AT+CHUP"));
    // The control API shows calls and counters.
    let (st, body) = http(addr, "GET", "/modems/0/calls", None);
    assert_eq!(st, 200);
    assert!(body.contains("\"outcome\":\"hung_up\""), "{body}");
    assert!(body.contains("\"outcome\":\"missed\""), "{body}");
    let (_, m) = http(addr, "GET", "/metrics", None);
    assert!(m.contains("\"calls_hung_up\":1"), "{m}");
    assert!(m.contains("\"calls_missed\":1"), "{m}");
    // Bad requests.
    let (st, _) = http(
        addr,
        "POST",
        "/modems/0/ring",
        Some(r#"{"from":"+49","count":0}"#),
    );
    assert_eq!(st, 400);
    let (st, _) = http(addr, "POST", "/modems/0/ring", Some(r#"{"count":1}"#));
    assert_eq!(st, 400);
    let (st, _) = http(addr, "POST", "/modems/9/ring", Some(r#"{"from":"+49"}"#));
    assert_eq!(st, 404);
    sim.shutdown();
}

#[test]
fn a_ringing_call_can_block_sms_and_answering_stops_rings() {
    let sim = one(ProfileName::Generic);
    let mut p = sim.open(0);
    p.cmd("ATE0");
    sim.bank()
        .ring(
            0,
            RingSpec {
                from: "+4930123456".into(),
                count: 50,
                interval_ms: 2000,
                cms_error: Some(500),
            },
        )
        .unwrap();
    p.expect("RING", S);
    assert_eq!(p.cmd("AT+CMGS=10"), "\r\n+CMS ERROR: 500\r\n");
    assert_eq!(p.cmd("AT+CMGL=4"), "\r\n+CMS ERROR: 500\r\n");
    // Answer: no more rings, SMS works again, ATH ends it.
    assert_eq!(p.cmd("ATA"), "\r\nOK\r\n");
    assert!(p.cmd("AT+CLCC").contains("+CLCC: 1,1,0,0,0,"));
    assert!(send(&mut p, "+491701234567", "after answering").contains("+CMGS: "));
    assert_eq!(p.cmd("ATH"), "\r\nOK\r\n");
    let c = &sim.bank().calls(0).unwrap()[0];
    assert!(c.answered);
    assert_eq!(c.outcome, CallOutcome::HungUp);
    // ATA with no call: ERROR.
    assert_eq!(p.cmd("ATA"), "\r\nERROR\r\n");
    sim.shutdown();
}

#[test]
fn wavecom_call_lines_and_ring_from_a_scenario_timeline() {
    let sim = Sim::start(|c| {
        c.profile = ProfileName::WavecomFastrack;
        c.scenario = Some(
            hw_sim::Scenario::from_toml(
                r#"
[[timeline]]
at_ms = 1000
modem = 0
fault = { type = "ring", from = "+4930123456", count = 3, interval_ms = 2000 }
"#,
            )
            .unwrap(),
        );
    });
    let mut p = sim.open(0);
    p.cmd("ATE0");
    assert_eq!(p.cmd("AT+WIND=50;+CLIP=1"), "\r\nOK\r\n");
    p.expect(
        "+WIND: 5,1\r\n\r\nRING\r\n\r\n+CLIP: \"+4930123456\",145\r\n",
        S,
    );
    // The hang-up's +WIND comes after the OK of ATH.
    let mut r = p.cmd("ATH");
    if !r.contains("+WIND: 6,1") {
        r += &p.expect("+WIND: 6,1", S);
    }
    assert_eq!(r, "\r\nOK\r\n\r\n+WIND: 6,1\r\n");
    sim.shutdown();
}

#[test]
fn sierra_and_sim7600_layouts() {
    let sim = one(ProfileName::SierraEm7455);
    let info = sim.bank().modems()[0].clone();
    let ports: Vec<(u8, &str)> = info.ports.iter().map(|p| (p.iface, p.role)).collect();
    assert_eq!(ports, [(0, "qcdm"), (2, "nmea"), (3, "at_primary")]);
    assert_eq!(info.ports[2].name, "modem0-if03");
    sim.shutdown();

    let sim = one(ProfileName::SimcomSim7600);
    let info = sim.bank().modems()[0].clone();
    let ports: Vec<(u8, &str)> = info.ports.iter().map(|p| (p.iface, p.role)).collect();
    assert_eq!(
        ports,
        [
            (0, "qcdm"),
            (1, "nmea"),
            (2, "at_primary"),
            (3, "at_secondary"),
            (4, "audio")
        ]
    );
    let mut p = sim.open(0);
    p.cmd("ATE0");
    let mut nmea = Port::open(&info.ports[1].path);
    assert_eq!(p.cmd("AT+CGPS=1"), "\r\nOK\r\n");
    nmea.expect("$GPGGA,", S);
    assert_eq!(p.cmd("AT+CGPS?"), "\r\n+CGPS: 1,1\r\n\r\nOK\r\n");
    sim.shutdown();
}
