//! Every command, profile and fault, driven over a real PTY as a host would.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Port, Sim, http};
use hw_sim::pdu::{self, Address};
use hw_sim::{Fault, ProfileName, RegState, Scenario};
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(3);

fn submit_pdu(to: &str, text: &str, srr: bool) -> Vec<(usize, String)> {
    let (dcs, parts) = pdu::encode_text_parts(text, 42);
    parts
        .iter()
        .map(|p| {
            let tpdu = pdu::encode_submit(&Address::parse(to), dcs, srr, p, 0);
            (tpdu.len(), format!("00{}", pdu::to_hex(&tpdu)))
        })
        .collect()
}

fn send_pdu(port: &mut Port, len: usize, hex: &str) -> String {
    let p = port.cmd(&format!("AT+CMGS={len}"));
    assert!(p.ends_with("\r\n> "), "prompt: {p:?}");
    port.send(hex.as_bytes());
    port.send(&[0x1A]);
    String::from_utf8_lossy(&port.read_until(S, common::final_seen)).into_owned()
}

#[test]
fn echo_identification_and_settings() {
    let sim = Sim::start(|c| c.seed = 5);
    let info = sim.bank().modems()[0].clone();
    let mut p = sim.open(0);
    assert_eq!(p.cmd("AT"), "AT\r\r\nOK\r\n");
    assert_eq!(p.cmd("ATE0"), "ATE0\r\r\nOK\r\n");
    assert_eq!(p.cmd("AT"), "\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CGMI"), "\r\nhw-sim\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CGMM"), "\r\nGSM Modem\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CGMR"), "\r\nhw-sim 0.1.0\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CGSN"), format!("\r\n{}\r\n\r\nOK\r\n", info.imei));
    assert_eq!(p.cmd("AT+CIMI"), format!("\r\n{}\r\n\r\nOK\r\n", info.imsi));
    assert_eq!(
        p.cmd("AT+CCID"),
        format!("\r\n+CCID: {}\r\n\r\nOK\r\n", info.iccid)
    );
    assert!(p.cmd("ATI").contains(&format!("IMEI: {}", info.imei)));
    assert_eq!(p.cmd("AT+CMEE?"), "\r\n+CMEE: 0\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CMEE=1;+CREG=2"), "\r\nOK\r\n");
    assert_eq!(
        p.cmd("AT+CMEE?;+CREG?"),
        "\r\n+CMEE: 1\r\n\r\n+CREG: 2,1,\"00A1\",\"1000\"\r\n\r\nOK\r\n"
    );
    assert_eq!(p.cmd("AT+CEREG=0;+CEREG?"), "\r\n+CEREG: 0,1\r\n\r\nOK\r\n");
    assert_eq!(
        p.cmd("AT+COPS?"),
        "\r\n+COPS: 0,0,\"HW-SIM\",2\r\n\r\nOK\r\n"
    );
    assert_eq!(
        p.cmd("AT+COPS=3,2;+COPS?"),
        "\r\n+COPS: 0,2,\"00101\",2\r\n\r\nOK\r\n"
    );
    assert!(p.cmd("AT+CSQ").starts_with("\r\n+CSQ: "));
    assert_eq!(p.cmd("AT+CMGF=1;+CMGF?"), "\r\n+CMGF: 1\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CMGF=2"), "\r\n+CME ERROR: 50\r\n");
    assert_eq!(
        p.cmd("AT+CSCS=\"UCS2\";+CSCS?"),
        "\r\n+CSCS: \"UCS2\"\r\n\r\nOK\r\n"
    );
    assert_eq!(p.cmd("AT+CSCS=\"GSM\""), "\r\nOK\r\n");
    assert_eq!(
        p.cmd("AT+CSCA?"),
        "\r\n+CSCA: \"+4915559999999\",145\r\n\r\nOK\r\n"
    );
    assert_eq!(
        p.cmd("AT+CSCA=\"+491710760000\",145;+CSCA?"),
        "\r\n+CSCA: \"+491710760000\",145\r\n\r\nOK\r\n"
    );
    assert_eq!(p.cmd("AT+CSMS=1"), "\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CSMS?"), "\r\n+CSMS: 1,1,1,1\r\n\r\nOK\r\n");
    assert_eq!(
        p.cmd("AT+CPMS?"),
        "\r\n+CPMS: \"SM\",0,30,\"SM\",0,30,\"SM\",0,30\r\n\r\nOK\r\n"
    );
    assert_eq!(
        p.cmd("AT+CPMS=\"ME\",\"ME\",\"ME\""),
        "\r\n+CPMS: 0,100,0,100,0,100\r\n\r\nOK\r\n"
    );
    assert_eq!(p.cmd("AT+CPMS=\"XX\""), "\r\n+CMS ERROR: 302\r\n");
    assert_eq!(
        p.cmd("AT+CNMI=?"),
        "\r\n+CNMI: (0-2),(0-3),(0,2),(0,1,2),(0,1)\r\n\r\nOK\r\n"
    );
    assert_eq!(
        p.cmd("AT+CNMI=2,1,2,1,0;+CNMI?"),
        "\r\n+CNMI: 2,1,2,1,0\r\n\r\nOK\r\n"
    );
    assert_eq!(p.cmd("AT+CMMS=2;+CMMS?"), "\r\n+CMMS: 2\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CNMA"), "\r\n+CMS ERROR: 340\r\n");
    // Vendor probes gammu sends must get a prompt ERROR.
    for probe in [
        "AT+MODE=2",
        "AT+SYNCML=?",
        "AT$TSSPCSW=?",
        "AT+CHUP=?",
        "AT+BOGUS",
    ] {
        assert_eq!(p.cmd(probe), "\r\nERROR\r\n", "{probe}");
    }
    // An error stops the line: the second command is not run.
    assert_eq!(p.cmd("AT+BOGUS;+CMGF=0"), "\r\nERROR\r\n");
    assert_eq!(p.cmd("AT+CMGF?"), "\r\n+CMGF: 1\r\n\r\nOK\r\n");
    // ATZ restores echo.
    assert_eq!(p.cmd("ATZ"), "\r\nOK\r\n");
    assert_eq!(p.cmd("AT"), "AT\r\r\nOK\r\n");
    assert_eq!(p.cmd("AT&F"), "AT&F\r\r\nOK\r\n");
    sim.shutdown();
}

#[test]
fn ussd_cfun_and_radio() {
    let sim = Sim::start(|_| {});
    let mut p = sim.open(0);
    p.cmd("ATE0");
    assert_eq!(p.cmd("AT+CUSD=1,\"*100#\",15"), "\r\nOK\r\n");
    let u = p.expect("+CUSD: 0,", S);
    assert!(u.contains("Your balance is 5.00 EUR"), "{u:?}");
    assert_eq!(p.cmd("AT+CFUN?"), "\r\n+CFUN: 1\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CREG=1"), "\r\nOK\r\n");
    let off = p.cmd("AT+CFUN=0");
    assert_eq!(off, "\r\nOK\r\n\r\n+CREG: 0\r\n");
    assert_eq!(p.cmd("AT+CSQ"), "\r\n+CSQ: 99,99\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CREG?"), "\r\n+CREG: 1,0\r\n\r\nOK\r\n");
    let (len, hex) = submit_pdu("+491701234567", "x", false).remove(0);
    assert!(send_pdu(&mut p, len, &hex).ends_with("+CMS ERROR: 331\r\n"));
    assert_eq!(p.cmd("AT+CFUN=1"), "\r\nOK\r\n\r\n+CREG: 1\r\n");
    // CFUN=1,1: OK, then the port goes away and comes back with echo on again.
    let old = std::fs::read_link(sim.link(0)).unwrap();
    assert_eq!(p.cmd("AT+CFUN=1,1"), "\r\nOK\r\n");
    let t0 = Instant::now();
    let mut gone = false;
    while t0.elapsed() < S {
        if std::fs::read_link(sim.link(0)).is_err() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(gone, "link should disappear during reset");
    let mut back = false;
    while t0.elapsed() < Duration::from_secs(5) {
        if std::fs::read_link(sim.link(0)).is_ok() {
            back = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(back, "link should come back");
    let _ = old;
    // The old fd is dead: reads give 0 (EOF).
    drop(p);
    let mut p = sim.open(0);
    assert_eq!(p.cmd("AT"), "AT\r\r\nOK\r\n");
    sim.shutdown();
}

#[test]
fn pdu_send_to_outside_with_status_report_and_abort() {
    let sim = Sim::start(|c| {
        c.scenario = Some(Scenario::from_toml("[network]\nstatus_report_delay_ms = 50\n").unwrap());
    });
    let mut p = sim.open(0);
    p.cmd("ATE0");
    assert_eq!(p.cmd("AT+CNMI=2,1,0,1,0"), "\r\nOK\r\n");
    let (len, hex) = submit_pdu("+491701234567", "Hello outside", true).remove(0);
    assert_eq!(send_pdu(&mut p, len, &hex), "\r\n+CMGS: 1\r\n\r\nOK\r\n");
    let cds = p.expect("\r\n", S);
    let cds = format!(
        "{cds}{}",
        String::from_utf8_lossy(&p.drain(Duration::from_millis(300)))
    );
    assert!(cds.starts_with("\r\n+CDS: "), "{cds:?}");
    let hexline = cds.lines().nth(2).unwrap();
    let raw = pdu::from_hex(hexline).unwrap();
    let (_, tpdu) = pdu::split_smsc(&raw).unwrap();
    assert_eq!(tpdu[0] & 0x03, 0x02, "status report MTI");
    assert_eq!(tpdu[1], 1, "MR");
    assert_eq!(*tpdu.last().unwrap(), 0, "delivered");
    let msgs = sim.bank().messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].text, "Hello outside");
    assert_eq!(msgs[0].to, "+491701234567");
    assert!(msgs[0].status_report_requested);
    // Wrong length → 304; bad hex → 304; ESC aborts with OK and nothing sent.
    assert!(send_pdu(&mut p, len + 1, &hex).ends_with("+CMS ERROR: 304\r\n"));
    assert!(send_pdu(&mut p, len, "ZZ").ends_with("+CMS ERROR: 304\r\n"));
    assert!(p.cmd(&format!("AT+CMGS={len}")).ends_with("> "));
    p.send(b"0011");
    p.send(&[0x1B]);
    assert_eq!(
        String::from_utf8_lossy(&p.read_until(S, common::final_seen)),
        "\r\nOK\r\n"
    );
    assert_eq!(sim.bank().messages().len(), 1);
    // MR keeps counting per SIM.
    let (len, hex) = submit_pdu("+491701234567", "again", false).remove(0);
    assert_eq!(send_pdu(&mut p, len, &hex), "\r\n+CMGS: 2\r\n\r\nOK\r\n");
    // No SMSC: a PDU with 00 gets 330.
    sim.bank().set_fault(0, Fault::NoSmsc).unwrap();
    assert!(send_pdu(&mut p, len, &hex).ends_with("+CMS ERROR: 330\r\n"));
    sim.shutdown();
}

#[test]
fn bank_to_bank_multipart_via_cmti_and_cmgr() {
    let sim = Sim::start(|c| c.modems = 2);
    let to = sim.bank().modems()[1].msisdn.clone();
    let from = sim.bank().modems()[0].msisdn.clone();
    let mut a = sim.open(0);
    let mut b = sim.open(1);
    a.cmd("ATE0");
    b.cmd("ATE0");
    let text = "Ä long message between two modems of the bank. ".repeat(5);
    for (len, hex) in submit_pdu(&to, &text, false) {
        assert!(send_pdu(&mut a, len, &hex).ends_with("OK\r\n"));
    }
    let got = b.expect("+CMTI: \"SM\",2", S);
    assert!(got.contains("+CMTI: \"SM\",1"), "{got:?}");
    let mut parts = Vec::new();
    for i in 1..=2 {
        let r = b.cmd(&format!("AT+CMGR={i}"));
        assert!(r.starts_with("\r\n+CMGR: 0,,"), "{r:?}");
        let raw = pdu::from_hex(r.lines().nth(2).unwrap()).unwrap();
        let (_, tpdu) = pdu::split_smsc(&raw).unwrap();
        let d = pdu::decode_deliver(tpdu).unwrap();
        assert_eq!(d.oa.number, from);
        parts.push(d);
    }
    parts.sort_by_key(|d| d.concat.unwrap().seq);
    let payloads: Vec<&pdu::Payload> = parts.iter().map(|d| &d.payload).collect();
    assert_eq!(pdu::Payload::join_text(&payloads), text);
    // Read now: CMGL=0 (unread) is empty, CMGL=4 lists both.
    assert_eq!(b.cmd("AT+CMGL=0"), "\r\nOK\r\n");
    assert_eq!(b.cmd("AT+CMGL=4").matches("+CMGL: ").count(), 2);
    assert_eq!(b.cmd("AT+CMGD=1"), "\r\nOK\r\n");
    assert_eq!(b.cmd("AT+CMGR=1"), "\r\n+CMS ERROR: 321\r\n");
    assert_eq!(b.cmd("AT+CMGD=1,4"), "\r\nOK\r\n");
    assert_eq!(
        b.cmd("AT+CPMS?"),
        "\r\n+CPMS: \"SM\",0,30,\"SM\",0,30,\"SM\",0,30\r\n\r\nOK\r\n"
    );
    assert!(
        sim.bank().messages().is_empty(),
        "bank traffic is not outside traffic"
    );
    sim.shutdown();
}

#[test]
fn direct_cmt_needs_cnma_or_is_redelivered() {
    let sim = Sim::start(|c| {
        c.scenario = Some(
            Scenario::from_toml("[network]\ncnma_timeout_ms = 300\nredeliver_ms = 300\n").unwrap(),
        );
    });
    let mut p = sim.open(0);
    p.cmd("ATE0");
    assert_eq!(
        p.cmd("AT+CSMS=1;+CNMI=2,2,0,0,0"),
        "\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n"
    );
    sim.bank()
        .inject_inbound(0, "+4930123456", "ack me")
        .unwrap();
    let first = p.expect("+CMT: ,", S);
    // Not acknowledged: it comes again after cnma timeout + redelivery delay.
    let again = p.expect("+CMT: ,", S);
    assert!(again.contains("+CMT"), "{first:?} / {again:?}");
    p.drain(Duration::from_millis(50));
    assert_eq!(p.cmd("AT+CNMA"), "\r\nOK\r\n");
    let quiet = p.drain(Duration::from_millis(900));
    assert!(
        !String::from_utf8_lossy(&quiet).contains("+CMT"),
        "acked, yet redelivered: {quiet:?}"
    );
    assert!(sim.bank().metrics().modems[0].counts.not_acked >= 1);
    sim.shutdown();
}

#[test]
fn text_mode_send_and_list() {
    let sim = Sim::start(|_| {});
    let mut p = sim.open(0);
    p.cmd("ATE0");
    p.cmd("AT+CMGF=1");
    let pr = p.cmd("AT+CMGS=\"+441234567890\"");
    assert_eq!(pr, "\r\n> ");
    p.send(b"Text mode works");
    p.send(&[0x1A]);
    assert_eq!(
        String::from_utf8_lossy(&p.read_until(S, common::final_seen)),
        "\r\n+CMGS: 1\r\n\r\nOK\r\n"
    );
    let m = sim.bank().messages();
    assert_eq!(
        (m[0].text.as_str(), m[0].to.as_str()),
        ("Text mode works", "+441234567890")
    );
    sim.bank().inject_inbound(0, "ACME", "Hi there").unwrap();
    p.expect("+CMTI: \"SM\",1", S);
    let l = p.cmd("AT+CMGL=\"ALL\"");
    assert!(
        l.starts_with("\r\n+CMGL: 1,\"REC UNREAD\",\"ACME\",,\""),
        "{l:?}"
    );
    assert!(l.contains("\r\nHi there\r\n"), "{l:?}");
    assert!(
        p.cmd("AT+CMGR=1")
            .starts_with("\r\n+CMGR: \"REC READ\",\"ACME\"")
    );
    sim.shutdown();
}

#[test]
fn unicode_inbound_and_ucs2_charset() {
    let sim = Sim::start(|_| {});
    let mut p = sim.open(0);
    p.cmd("ATE0");
    sim.bank()
        .inject_inbound(0, "+33612345678", "Привет 😀")
        .unwrap();
    p.expect("+CMTI", S);
    let r = p.cmd("AT+CMGR=1");
    let raw = pdu::from_hex(r.lines().nth(2).unwrap()).unwrap();
    let d = pdu::decode_deliver(pdu::split_smsc(&raw).unwrap().1).unwrap();
    assert_eq!(d.dcs, 0x08);
    assert_eq!(d.payload.text(), "Привет 😀");
    p.cmd("AT+CMGF=1;+CSCS=\"UCS2\"");
    let r = p.cmd("AT+CMGR=1");
    assert!(r.contains("041F044004380432043504420020D83DDE00"), "{r:?}");
    sim.shutdown();
}

#[test]
fn huawei_profile_quirks() {
    let sim = Sim::start(|c| c.profile = ProfileName::Huawei);
    let info = sim.bank().modems()[0].clone();
    let mut p = sim.open(0);
    p.cmd("ATE0");
    assert_eq!(p.cmd("AT+CGMI"), "\r\nhuawei\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CGMM"), "\r\nE3372\r\n\r\nOK\r\n");
    let r = p.cmd("AT^ICCID?");
    let swapped: String = format!("{}F", info.iccid)
        .as_bytes()
        .chunks(2)
        .flat_map(|c| [c[1] as char, c[0] as char])
        .collect();
    assert_eq!(r, format!("\r\n^ICCID: {swapped}\r\n\r\nOK\r\n"));
    sim.bank()
        .set_fault(0, Fault::Signal { rssi: 7, ber: 0 })
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&p.read_until(S, |b| b.ends_with(b"\r\n") && b.len() > 4)),
        "\r\n^RSSI:7\r\n"
    );
    assert_eq!(p.cmd("AT+CSQ"), "\r\n+CSQ: 7,0\r\n\r\nOK\r\n");
    sim.bank()
        .set_fault(
            0,
            Fault::Registration {
                state: RegState::Searching,
            },
        )
        .unwrap();
    p.expect("^MODE:0,0", S);
    // Storage is 0-based on Huawei, and USSD is packed GSM 7-bit hex.
    sim.bank()
        .set_fault(
            0,
            Fault::Registration {
                state: RegState::Home,
            },
        )
        .unwrap();
    sim.bank().inject_inbound(0, "+4911", "x").unwrap();
    p.expect("+CMTI: \"SM\",0", S);
    assert_eq!(p.cmd("AT+CUSD=1,\"AA180C3602\",15"), "\r\nOK\r\n");
    let u = p.expect("+CUSD: 0,\"", S);
    let hex = u.split('"').nth(1).unwrap();
    let sept = pdu::unpack_septets(&pdu::from_hex(hex).unwrap(), 0, hex.len() * 4 / 7);
    assert!(pdu::gsm7_decode(&sept).starts_with("Your balance is"));
    sim.shutdown();
}

#[test]
fn simcom_quectel_and_okfail_profiles() {
    let sim = Sim::start(|c| {
        c.modems = 5;
        c.profile = ProfileName::Mixed;
    });
    let ms = sim.bank().modems();
    let profiles: Vec<&str> = ms.iter().map(|m| m.profile).collect();
    assert_eq!(
        profiles,
        ["generic", "huawei", "simcom", "quectel", "okfail"]
    );
    // SIMCom: prompt with a line ending, plain ICCID.
    let mut s = sim.open(2);
    s.cmd("ATE0");
    assert_eq!(s.cmd("AT+CGMM"), "\r\nSIMCOM_SIM800L\r\n\r\nOK\r\n");
    assert_eq!(
        s.cmd("AT+CCID"),
        format!("\r\n{}\r\n\r\nOK\r\n", ms[2].iccid)
    );
    let (len, hex) = submit_pdu("+491", "simcom", false).remove(0);
    assert_eq!(s.cmd(&format!("AT+CMGS={len}")), "\r\n>\r\n");
    s.send(hex.as_bytes());
    s.send(&[0x1A]);
    assert_eq!(
        String::from_utf8_lossy(&s.read_until(S, common::final_seen)),
        "\r\n+CMGS: 1\r\n\r\nOK\r\n"
    );
    // Quectel: refuses CNMI ds=1 (Qualcomm), accepts ds=2; ModemManager's fallback works.
    let mut q = sim.open(3);
    q.cmd("ATE0");
    assert_eq!(q.cmd("AT+CNMI=2,1,2,1,0"), "\r\n+CMS ERROR: 303\r\n");
    assert_eq!(q.cmd("AT+CNMI=2,1,2,2,0"), "\r\nOK\r\n");
    assert_eq!(
        q.cmd("AT+QCCID"),
        format!("\r\n+QCCID: {}\r\n\r\nOK\r\n", ms[3].iccid)
    );
    // OK-on-failure: a failed send answers plain OK and nothing leaves.
    let mut o = sim.open(4);
    o.cmd("ATE0");
    sim.bank()
        .set_fault(
            4,
            Fault::CmsError {
                code: 38,
                probability: 1.0,
            },
        )
        .unwrap();
    assert_eq!(send_pdu(&mut o, len, &hex), "\r\nOK\r\n");
    assert_eq!(sim.bank().messages().len(), 1, "only the simcom one left");
    // And generic with the same fault says so.
    let mut g = sim.open(0);
    g.cmd("ATE0");
    sim.bank()
        .set_fault(
            0,
            Fault::CmsError {
                code: 38,
                probability: 1.0,
            },
        )
        .unwrap();
    assert_eq!(send_pdu(&mut g, len, &hex), "\r\n+CMS ERROR: 38\r\n");
    sim.shutdown();
}

#[test]
fn storage_fills_and_network_waits() {
    let sim = Sim::start(|c| {
        c.scenario = Some(
            Scenario::from_toml(
                "[network]\nredeliver_ms = 200\n[[modem]]\nindex = 0\nfaults = [{ type = \"storage_capacity\", capacity = 2 }]\n",
            )
            .unwrap(),
        );
    });
    let mut p = sim.open(0);
    p.cmd("ATE0");
    for i in 0..3 {
        sim.bank()
            .inject_inbound(0, "+49301", &format!("m{i}"))
            .unwrap();
    }
    let got = p.drain(Duration::from_millis(500));
    let got = String::from_utf8_lossy(&got);
    assert_eq!(got.matches("+CMTI").count(), 2, "{got:?}");
    assert_eq!(
        p.cmd("AT+CPMS?"),
        "\r\n+CPMS: \"SM\",2,2,\"SM\",2,2,\"SM\",2,2\r\n\r\nOK\r\n"
    );
    assert_eq!(p.cmd("AT+CMGD=1"), "\r\nOK\r\n");
    p.expect("+CMTI: \"SM\",1", S);
    // storage_full fault: nothing is stored even with room.
    p.cmd("AT+CMGD=1,4");
    sim.bank().set_fault(0, Fault::StorageFull).unwrap();
    sim.bank().inject_inbound(0, "+49301", "waits").unwrap();
    assert!(!String::from_utf8_lossy(&p.drain(Duration::from_millis(500))).contains("+CMTI"));
    sim.bank().clear_faults(0).unwrap();
    p.expect("+CMTI", S);
    sim.shutdown();
}

#[test]
fn sim_pin_puk_busy_and_registration_faults() {
    let sim = Sim::start(|c| {
        c.modems = 3;
        c.scenario = Some(
            Scenario::from_json(
                r#"{"modem":[{"index":0,"faults":[{"type":"sim_pin","pin":"1234"}]},
                              {"index":1,"faults":[{"type":"sim_puk","puk":"87654321"}]},
                              {"index":2,"faults":[{"type":"sim_busy","secs":0.6}]}]}"#,
            )
            .unwrap(),
        );
    });
    let mut p = sim.open(0);
    p.cmd("ATE0;+CMEE=1");
    assert_eq!(p.cmd("AT+CPIN?"), "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CIMI"), "\r\n+CME ERROR: 11\r\n");
    assert_eq!(p.cmd("AT+CPMS?"), "\r\n+CMS ERROR: 311\r\n");
    assert_eq!(p.cmd("AT+CREG?"), "\r\n+CREG: 0,0\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CPIN=\"0000\""), "\r\n+CME ERROR: 16\r\n");
    assert_eq!(p.cmd("AT+CPIN=\"1234\""), "\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CPIN?"), "\r\n+CPIN: READY\r\n\r\nOK\r\n");
    assert_eq!(p.cmd("AT+CREG?"), "\r\n+CREG: 0,1\r\n\r\nOK\r\n");
    assert_eq!(
        p.cmd("AT+CMEE=2;+CPIN=\"1\""),
        "\r\n+CME ERROR: operation not allowed\r\n"
    );
    let mut k = sim.open(1);
    k.cmd("ATE0;+CMEE=1");
    assert_eq!(k.cmd("AT+CPIN?"), "\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n");
    assert_eq!(k.cmd("AT+CPIN=\"87654321\",\"4321\""), "\r\nOK\r\n");
    assert_eq!(sim.bank().modems()[1].state, "ready");
    let mut b = sim.open(2);
    b.cmd("ATE0;+CMEE=1");
    assert_eq!(b.cmd("AT+CPIN?"), "\r\n+CME ERROR: 14\r\n");
    assert_eq!(sim.bank().modems()[2].state, "sim_busy");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(b.cmd("AT+CPIN?"), "\r\n+CPIN: READY\r\n\r\nOK\r\n");
    // Roaming still sends; denied does not.
    b.cmd("AT+CREG=1");
    sim.bank()
        .set_fault(
            2,
            Fault::Registration {
                state: RegState::Roaming,
            },
        )
        .unwrap();
    b.expect("+CREG: 5", S);
    let (len, hex) = submit_pdu("+491", "r", false).remove(0);
    assert!(send_pdu(&mut b, len, &hex).contains("+CMGS: "));
    sim.bank()
        .set_fault(
            2,
            Fault::Registration {
                state: RegState::Denied,
            },
        )
        .unwrap();
    b.expect("+CREG: 3", S);
    assert!(send_pdu(&mut b, len, &hex).ends_with("+CMS ERROR: 331\r\n"));
    assert_eq!(sim.bank().modems()[2].state, "denied");
    sim.shutdown();
}

#[test]
fn latency_hang_garbage_and_urc_noise() {
    let sim = Sim::start(|c| c.latency = (0, 0));
    let mut p = sim.open(0);
    p.cmd("ATE0");
    let (len, hex) = submit_pdu("+491", "slow", false).remove(0);
    sim.bank()
        .set_fault(
            0,
            Fault::Latency {
                min_ms: 400,
                max_ms: 500,
            },
        )
        .unwrap();
    let t = Instant::now();
    assert!(send_pdu(&mut p, len, &hex).contains("+CMGS: 1"));
    let el = t.elapsed();
    assert!(
        el >= Duration::from_millis(400) && el < Duration::from_millis(1500),
        "{el:?}"
    );
    sim.bank().clear_faults(0).unwrap();
    // Hang: CMGS never answered, AT neither; AT+CFUN=1 brings it back.
    sim.bank()
        .set_fault(0, Fault::Hang { probability: 1.0 })
        .unwrap();
    assert_eq!(send_pdu(&mut p, len, &hex), "");
    assert_eq!(sim.bank().modems()[0].state, "hung");
    p.send(b"\x1bAT\r");
    assert!(p.drain(Duration::from_millis(300)).is_empty());
    assert_eq!(p.cmd("AT+CFUN=1"), "\r\nOK\r\n");
    sim.bank().clear_faults(0).unwrap();
    // Garbage now: exactly that many bytes.
    sim.bank()
        .set_fault(0, Fault::GarbageNow { len: 17 })
        .unwrap();
    assert_eq!(p.read_until(S, |b| b.len() >= 17).len(), 17);
    // URC noise inside a response (probability 1): a +CREG between info and OK.
    sim.bank()
        .set_fault(0, Fault::UrcNoise { probability: 1.0 })
        .unwrap();
    assert_eq!(
        p.cmd("AT+CSMS?"),
        "\r\n+CSMS: 0,1,1,1\r\n\r\n+CREG: 1\r\n\r\nOK\r\n"
    );
    sim.shutdown();
}

#[test]
fn unplug_and_replug() {
    let sim = Sim::start(|_| {});
    let before = sim.bank().modems()[0].pty.clone().unwrap();
    let mut p = sim.open(0);
    sim.bank()
        .set_fault(0, Fault::Unplug { down_ms: 400 })
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        std::fs::symlink_metadata(sim.link(0)).is_err(),
        "link removed while unplugged"
    );
    assert_eq!(sim.bank().modems()[0].state, "unplugged");
    // The host sees EOF.
    assert!(p.drain(Duration::from_millis(50)).is_empty());
    // Messages sent while unplugged wait in the network.
    sim.bank().inject_inbound(0, "+4940", "while away").unwrap();
    let t = Instant::now();
    while std::fs::symlink_metadata(sim.link(0)).is_err() && t.elapsed() < S {
        std::thread::sleep(Duration::from_millis(10));
    }
    let info = sim.bank().modems()[0].clone();
    assert_eq!(info.state, "ready");
    assert!(info.pty.is_some());
    let _ = before;
    let mut p = sim.open(0);
    assert_eq!(p.cmd("AT"), "AT\r\r\nOK\r\n");
    assert_eq!(sim.bank().metrics().modems[0].counts.replugs, 1);
    sim.shutdown();
}

#[test]
fn inbound_duplicates_and_reorder_are_deterministic() {
    let run = |seed: u64| -> Vec<u8> {
        let sim = Sim::start(|c| {
            c.seed = seed;
            c.scenario = Some(
                Scenario::from_toml(
                    "[[modem]]\nindex = 0\nfaults = [{ type = \"inbound_reorder\" }, { type = \"inbound_duplicate\", probability = 0.5 }]\n",
                )
                .unwrap(),
            );
        });
        let mut p = sim.open(0);
        p.cmd("ATE0");
        let n = sim
            .bank()
            .inject_inbound(0, "+4940", &"z".repeat(153 * 5))
            .unwrap();
        assert_eq!(n, 5);
        std::thread::sleep(Duration::from_millis(300));
        let l = p.cmd("AT+CMGL=4");
        let mut seqs = Vec::new();
        for line in l.lines().filter(|x| !x.starts_with('+') && x.len() > 20) {
            let raw = pdu::from_hex(line).unwrap();
            let d = pdu::decode_deliver(pdu::split_smsc(&raw).unwrap().1).unwrap();
            seqs.push(d.concat.unwrap().seq);
        }
        sim.shutdown();
        seqs
    };
    let a = run(1);
    assert_eq!(a, run(1), "same seed, same order");
    assert!(a.len() >= 5);
    let mut uniq = a.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq, vec![1, 2, 3, 4, 5], "{a:?}");
    let differs = (2..8).any(|s| run(s) != a);
    assert!(differs, "other seeds should give another order");
}

#[test]
fn control_api_contract() {
    let sim = Sim::start(|c| {
        c.modems = 2;
        c.control = Some("127.0.0.1:0".parse().unwrap());
    });
    let addr = sim.bank().control_addr().unwrap();
    let (st, body) = http(addr, "GET", "/modems", None);
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    for k in ["index", "path", "msisdn", "imsi", "iccid", "state"] {
        assert!(v[1].get(k).is_some(), "missing {k}");
    }
    assert_eq!(v[1]["state"], "ready");
    let mut p = sim.open(1);
    p.cmd("ATE0");
    let (st, body) = http(
        addr,
        "POST",
        "/inbound",
        Some(r#"{"modem":1,"from":"+4930","text":"via http"}"#),
    );
    assert_eq!((st, body.as_str()), (202, r#"{"modem":1,"parts":1}"#));
    p.expect("+CMTI", S);
    let (len, hex) = submit_pdu("+15551234", "to the sink", true).remove(0);
    assert!(send_pdu(&mut p, len, &hex).contains("+CMGS"));
    let (st, body) = http(addr, "GET", "/messages", None);
    assert_eq!(st, 200);
    let m: serde_json::Value = serde_json::from_str(&body).unwrap();
    let m = &m[0];
    assert_eq!(m["modem"], 1);
    assert_eq!(m["to"], "+15551234");
    assert_eq!(m["text"], "to the sink");
    assert_eq!(m["parts"], 1);
    assert_eq!(m["status_report_requested"], true);
    assert!(m["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(m["pdus"].as_array().unwrap().len(), 1);
    let (st, body) = http(
        addr,
        "POST",
        "/modems/1/faults",
        Some(
            r#"[{"type":"cms_error","code":500,"probability":1.0},{"type":"latency","min_ms":1,"max_ms":2}]"#,
        ),
    );
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("cms_error") && body.contains("latency"));
    assert!(send_pdu(&mut p, len, &hex).ends_with("+CMS ERROR: 500\r\n"));
    assert_eq!(http(addr, "DELETE", "/modems/1/faults", None).0, 200);
    let f: serde_json::Value =
        serde_json::from_str(&http(addr, "GET", "/modems/1/faults", None).1).unwrap();
    assert_eq!(f, serde_json::json!({"index": 1, "faults": []}));
    assert_eq!(
        http(
            addr,
            "POST",
            "/modems/9/faults",
            Some(r#"{"type":"hang_now"}"#)
        )
        .0,
        404
    );
    assert_eq!(
        http(addr, "POST", "/modems/0/faults", Some(r#"{"type":"nope"}"#)).0,
        400
    );
    assert_eq!(
        http(
            addr,
            "POST",
            "/modems/0/faults",
            Some(r#"{"type":"hang","probability":7}"#)
        )
        .0,
        400
    );
    assert_eq!(
        http(
            addr,
            "POST",
            "/inbound",
            Some(r#"{"modem":5,"from":"x","text":"y"}"#)
        )
        .0,
        404
    );
    assert_eq!(http(addr, "POST", "/inbound", Some("not json")).0, 400);
    let (st, body) = http(addr, "GET", "/metrics", None);
    assert_eq!(st, 200);
    let mt: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(mt["modems"][1]["sms_submitted"], 1);
    assert_eq!(mt["modems"][1]["sms_failed"], 1);
    assert_eq!(mt["network"]["outside_messages"], 1);
    assert_eq!(http(addr, "DELETE", "/messages", None).0, 204);
    assert_eq!(http(addr, "GET", "/messages", None).1, "[]");
    sim.shutdown();
}

#[test]
fn tcp_port_serves_the_same_modem() {
    use std::io::{Read, Write};
    // A port range unlikely to clash; the test owns its bank.
    let base = 20000 + (std::process::id() % 20000) as u16;
    let sim = Sim::start(|c| c.tcp_base = Some(base));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", base)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(b"ATE0\r").unwrap();
    let mut got = Vec::new();
    let t = Instant::now();
    while !got.ends_with(b"OK\r\n") && t.elapsed() < S {
        let mut b = [0u8; 256];
        if let Ok(n) = s.read(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
    }
    assert_eq!(got, b"ATE0\r\r\nOK\r\n");
    sim.shutdown();
}

#[test]
fn shutdown_removes_links_and_binary_contract() {
    let sim = Sim::start(|c| c.modems = 3);
    let links: Vec<_> = (0..3).map(|i| sim.link(i)).collect();
    assert!(links.iter().all(|l| std::fs::read_link(l).is_ok()));
    sim.shutdown();
    assert!(links.iter().all(|l| std::fs::symlink_metadata(l).is_err()));

    // The binary: one line per modem, then SIGTERM removes the links.
    let dir = tempfile::tempdir().unwrap();
    let scen = dir.path().join("s.toml");
    std::fs::write(&scen, "[[modem]]\nindex = 1\nprofile = \"huawei\"\n").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hw-sim"))
        .args(["--modems", "2", "--link-dir"])
        .arg(dir.path().join("l"))
        .args(["--latency", "5-10", "--seed", "3", "--scenario"])
        .arg(&scen)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut l = String::new();
        std::io::BufRead::read_line(&mut out, &mut l).unwrap();
        lines.push(l);
    }
    let l0 = dir.path().join("l").join("modem0");
    assert_eq!(
        lines[0],
        format!("modem0 {} +4915550000000\n", l0.display())
    );
    assert!(lines[1].starts_with("modem1 "));
    let mut p = Port::open(&dir.path().join("l").join("modem1"));
    p.cmd("ATE0");
    assert_eq!(p.cmd("AT+CGMI"), "\r\nhuawei\r\n\r\nOK\r\n");
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let t = Instant::now();
    let code = loop {
        if let Some(c) = child.try_wait().unwrap() {
            break c;
        }
        assert!(t.elapsed() < S, "hw-sim did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success());
    assert!(
        std::fs::symlink_metadata(&l0).is_err(),
        "links removed on exit"
    );
    // Bad arguments fail.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_hw-sim"))
        .args(["--modems", "1", "--link-dir", "/tmp/x", "--latency", "9-1"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

fn vm_rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn bank_of_256_fits_in_100mb() {
    let sim = Sim::start(|c| {
        c.modems = 256;
        c.profile = ProfileName::Mixed;
    });
    assert!((0..256).all(|i| std::fs::read_link(sim.link(i)).is_ok()));
    for i in 0..256 {
        sim.bank()
            .inject_inbound(i, "+4930", &format!("hello {i}"))
            .unwrap();
    }
    let t = Instant::now();
    while sim
        .bank()
        .metrics()
        .modems
        .iter()
        .map(|m| m.counts.inbound_delivered)
        .sum::<u64>()
        < 256
    {
        assert!(t.elapsed() < S, "not all delivered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut p = sim.open(255);
    assert!(p.cmd("AT").ends_with("OK\r\n"));
    let rss = vm_rss_kb();
    eprintln!("VmRSS with 256 modems (test process, debug build): {rss} kB");
    assert!(rss < 100 * 1024, "RSS {rss} kB");
    sim.shutdown();
}
