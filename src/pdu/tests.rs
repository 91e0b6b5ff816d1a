//! Codec tests across modules: published vectors, part boundaries, every shift table,
//! malformed input, and properties over arbitrary text and bytes.
#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn submit(text: &str) -> (Plan, Vec<EncodedPdu>) {
    let opts = SubmitOptions::new(Address::parse("+491701234567").unwrap());
    encode_submit(text, &opts).unwrap()
}

fn user_data(pdu: &EncodedPdu) -> UserData {
    match decode(&pdu.bytes, true).unwrap().tpdu {
        Tpdu::Submit(s) => s.user_data,
        other => panic!("not a submit: {other:?}"),
    }
}

/// Decodes every part and joins them, as a receiving handset would.
fn round_trip(text: &str, pdus: &[EncodedPdu]) -> String {
    let parts: Vec<UserData> = pdus.iter().map(user_data).collect();
    if parts.len() > 1 {
        for (i, p) in parts.iter().enumerate() {
            let c = p.header.as_ref().unwrap().concat().unwrap();
            assert_eq!(
                (c.seq as usize, c.total as usize),
                (i + 1, parts.len()),
                "{text:?}"
            );
        }
    }
    join_text(&parts).unwrap()
}

#[test]
fn deliver_vector_from_the_classic_pdu_tutorial() {
    // The SMS-DELIVER used by most PDU guides (and python-gammu's tests): SMSC
    // +27381000015, sender 27838890001 (subscriber/national), "hellohello".
    let p = decode_hex(
        "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37",
        true,
    )
    .unwrap();
    assert_eq!(p.smsc.unwrap().to_string(), "+27381000015");
    let Tpdu::Deliver(d) = p.tpdu else { panic!() };
    assert_eq!(d.originator.digits, "27838890001");
    assert_eq!(d.originator.ton, TypeOfNumber::Subscriber);
    assert_eq!(d.timestamp.to_string(), "1999-03-29T15:16:59+02:00");
    assert_eq!(d.user_data.text().unwrap(), "hellohello");
    assert!(!d.more_messages);
}

#[test]
fn submit_vector_with_relative_validity() {
    let p = decode_hex("0011000B916407281553F80000AA0AE8329BFD4697D9EC37", true).unwrap();
    assert_eq!(p.smsc, None);
    let Tpdu::Submit(s) = p.tpdu else { panic!() };
    assert_eq!(s.destination.to_string(), "+46708251358");
    assert_eq!(s.validity, Some(Validity::Relative(0xAA)));
    assert_eq!(
        s.validity.unwrap().duration(),
        Some(std::time::Duration::from_secs(4 * 86400))
    );
    assert_eq!(s.user_data.text().unwrap(), "hellohello");
    // And we encode the same octets for the same message.
    let mut opts = SubmitOptions::new(Address::parse("+46708251358").unwrap());
    opts.validity = Some(Validity::Relative(0xAA));
    let (_, pdus) = encode_submit("hellohello", &opts).unwrap();
    assert_eq!(
        pdus[0].hex(),
        "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"
    );
    assert_eq!(pdus[0].tpdu_len, 23);
}

#[test]
fn short_code_message_is_one_part() {
    let (p, pdus) = submit("Your code is 482913");
    assert_eq!(p.parts.len(), 1);
    assert_eq!(p.encoding.name(), "gsm7");
    // python3-gammu decodes these exact octets to the same number and text.
    assert_eq!(
        pdus[0].hex(),
        "0001000C91947110325476000013D9775D0E1ABFC965507A0EA2E164B9D80C"
    );
    assert_eq!(pdus[0].tpdu_len, pdus[0].bytes.len() - 1);
}

#[test]
fn part_size_boundaries_end_to_end() {
    for (text, want) in [
        ("a".repeat(160), 1),
        ("a".repeat(161), 2),
        ("a".repeat(306), 2),
        ("a".repeat(307), 3),
        ("ж".repeat(70), 1),
        ("ж".repeat(71), 2),
        ("ж".repeat(134), 2),
        ("ж".repeat(135), 3),
    ] {
        let (p, pdus) = submit(&text);
        assert_eq!(
            pdus.len(),
            want,
            "{} chars of {:?}",
            text.chars().count(),
            &text[..2]
        );
        assert_eq!(p.parts.len(), want);
        assert_eq!(round_trip(&text, &pdus), text);
        for pdu in &pdus {
            assert!(pdu.tpdu_len <= 140 + 14, "TPDU too long: {}", pdu.tpdu_len);
        }
    }
}

#[test]
fn at_sign_last_in_a_part_survives() {
    // '@' is septet 0: a decoder that counts septets from octets instead of UDL would
    // turn trailing zero bits into '@' or lose a real one.
    let single = format!("{}@", "x".repeat(159));
    let (_, pdus) = submit(&single);
    assert_eq!(round_trip(&single, &pdus), single);
    let multi = format!("{}@{}", "x".repeat(152), "y".repeat(20));
    let (p, pdus) = submit(&multi);
    assert_eq!(p.parts[0].units, 153);
    assert!(user_data(&pdus[0]).text().unwrap().ends_with('@'));
    assert_eq!(round_trip(&multi, &pdus), multi);
}

#[test]
fn seven_fill_bits_at_the_end_are_not_a_character() {
    // 7 septets fill 49 bits: the 7 spare bits of the last octet must not decode as '@'.
    let (_, pdus) = submit("1234567");
    let ud = user_data(&pdus[0]);
    assert_eq!(ud.text().unwrap(), "1234567");
    let Payload::Gsm7(s) = &ud.payload else {
        panic!()
    };
    assert_eq!(s.len(), 7);
    // With a concatenation header, 15 septets after 7 header septets = 22 septets = 154
    // bits: 20 octets hold 160 bits, 6 of them spare.
    let text = format!("{}{}", "z".repeat(306), "1234567");
    let (_, pdus) = submit(&text);
    assert_eq!(pdus.len(), 3);
    assert_eq!(user_data(&pdus[2]).text().unwrap(), "1234567");
}

#[test]
fn every_shift_table_round_trips_through_a_pdu() {
    for &lang in Language::national() {
        let locking = if lang.has_locking_table() {
            lang
        } else {
            Language::Default
        };
        let tables = Gsm7Tables {
            locking,
            single: lang,
        };
        // Every character of both tables (the locking table's, then the single's).
        let mut text = String::new();
        for code in 0..128u8 {
            let mut s = String::new();
            tables.decode(&[code], &mut s);
            if s != "\u{FFFD}" && code != 0x1B {
                text.push_str(&s);
            }
        }
        for code in 0..128u8 {
            if let Some(c) = (0..1).find_map(|_| {
                let mut s = String::new();
                tables.decode(&[0x1B, code], &mut s);
                let c = s.chars().next()?;
                (lang.single_code(c) == Some(code)).then_some(c)
            }) {
                text.push(c);
            }
        }
        let mut septets = Vec::new();
        tables.encode_str(&text, &mut septets).unwrap();
        let ud = UserData {
            header: Some(Udh::for_part(None, tables)),
            payload: Payload::Gsm7(septets[..septets.len().min(150)].to_vec()),
        };
        let pdu = Pdu {
            smsc: None,
            tpdu: Tpdu::Submit(Submit {
                reject_duplicates: false,
                validity: None,
                status_report_request: false,
                reply_path: false,
                message_ref: 0,
                destination: Address::parse("+15550001").unwrap(),
                pid: 0,
                dcs: Dcs::new(Alphabet::Gsm7, None),
                user_data: ud.clone(),
            }),
        }
        .encode()
        .unwrap();
        let back = user_data(&pdu);
        assert_eq!(back.tables(), tables, "{lang:?}");
        assert_eq!(back.text(), ud.text(), "{lang:?}");
        // And the planner picks a national table for a long text in that language
        // when it saves parts over UCS-2.
        let native: String = text.chars().filter(|c| !c.is_ascii()).collect();
        let long = native.repeat(400 / native.chars().count().max(1) + 1);
        let (p, pdus) = submit(&long);
        assert_eq!(round_trip(&long, &pdus), long, "{lang:?}");
        let ucs2 = plan(&long, &PlanOptions::without_national());
        assert!(p.parts.len() <= ucs2.parts.len(), "{lang:?}");
    }
}

#[test]
fn status_report_round_trip_and_categories() {
    let ts = Timestamp {
        year: 2026,
        month: 11,
        day: 27,
        hour: 23,
        minute: 5,
        second: 9,
        tz_quarters: -20,
    };
    for (code, cat) in [
        (0x00, StatusCategory::Delivered),
        (0x21, StatusCategory::Pending),
        (0x46, StatusCategory::Failed),
    ] {
        let sr = StatusReport {
            more_messages: false,
            loop_prevention: false,
            qualifier_command: false,
            message_ref: 0xFE,
            recipient: Address::parse("+491701234567").unwrap(),
            timestamp: ts,
            discharge_time: ts,
            status: Status(code),
            pid: None,
            dcs: None,
            user_data: None,
        };
        let pdu = Pdu {
            smsc: Some(Address::parse("+491710760000").unwrap()),
            tpdu: Tpdu::StatusReport(sr.clone()),
        }
        .encode()
        .unwrap();
        let back = decode(&pdu.bytes, true).unwrap();
        let Tpdu::StatusReport(b) = back.tpdu else {
            panic!()
        };
        assert_eq!(b, sr);
        assert_eq!(b.status.category(), cat);
        assert_eq!(b.timestamp.to_string(), "2026-11-27T23:05:09-05:00");
    }
}

#[test]
fn status_report_with_parameter_indicator() {
    // TP-PI announcing PID, DCS and user data, as some SMSCs send: hand-assembled.
    let hex = concat!(
        "00",
        "06",
        "FE",
        "0C91947110325476",
        "62112132059040",
        "62112132059040",
        "00",
        "07",
        "00",
        "00",
        "03",
        "C82211"
    );
    let Tpdu::StatusReport(s) = decode_hex(hex, true).unwrap().tpdu else {
        panic!()
    };
    assert_eq!(s.pid, Some(0));
    assert_eq!(s.dcs.map(|d| d.alphabet), Some(Alphabet::Gsm7));
    assert_eq!(s.user_data.as_ref().unwrap().text().unwrap(), "HED");
    assert_eq!(s.discharge_time.to_string(), "2026-11-12T23:50:09+01:00");
    let again = Pdu {
        smsc: None,
        tpdu: Tpdu::StatusReport(s),
    }
    .encode()
    .unwrap();
    assert_eq!(again.hex(), hex);
}

#[test]
fn flash_and_status_report_flags() {
    let mut opts = SubmitOptions::new(Address::parse("+491701234567").unwrap());
    opts.flash = true;
    opts.status_report = true;
    opts.validity = Some(Validity::relative_at_least(std::time::Duration::from_secs(
        600,
    )));
    let (_, pdus) = encode_submit("Flash!", &opts).unwrap();
    let Tpdu::Submit(s) = decode(&pdus[0].bytes, true).unwrap().tpdu else {
        panic!()
    };
    assert!(s.status_report_request);
    assert_eq!(s.dcs.class, Some(0));
    assert_eq!(s.validity, Some(Validity::Relative(1)));
}

#[test]
fn compressed_and_malformed_input_give_clear_errors() {
    let e = decode_hex("0001000C9194711032547600200141", true).unwrap_err();
    assert!(
        matches!(
            e,
            PduError::Compressed {
                offset: 12,
                dcs: 0x20
            }
        ),
        "{e}"
    );
    let e = decode_hex("0001000C91947110", true).unwrap_err();
    assert!(matches!(e, PduError::Truncated { offset: 5, .. }), "{e}");
    let e = decode_hex("000300", true).unwrap_err();
    assert!(e.to_string().contains("reserved"), "{e}");
    let e = decode_hex("0001000C919471103254760000059CE7", true).unwrap_err();
    assert!(e.to_string().contains("user data length"), "{e}");
    let e = decode_hex("0001000C91947110325476000001310000", true).unwrap_err();
    assert!(matches!(e, PduError::Trailing { count: 2, .. }), "{e}");
    assert!(decode_hex("", true).is_err());
    assert!(decode_hex("zz", true).is_err());
}

#[test]
fn split_escape_and_surrogates_from_other_senders_join_right() {
    // A sender that cut "€" (ESC + 0x65) and "😀" across parts: joining raw units first
    // gives the right text; decoding parts one by one would not.
    let a = UserData {
        header: None,
        payload: Payload::Gsm7(vec![0x41, 0x1B]),
    };
    let b = UserData {
        header: None,
        payload: Payload::Gsm7(vec![0x65, 0x42]),
    };
    assert_eq!(join_text(&[a, b]).unwrap(), "A€B");
    let units: Vec<u16> = "😀".encode_utf16().collect();
    let a = UserData {
        header: None,
        payload: Payload::Ucs2(vec![units[0]]),
    };
    let b = UserData {
        header: None,
        payload: Payload::Ucs2(vec![units[1]]),
    };
    assert_eq!(a.text().unwrap(), "\u{FFFD}");
    assert_eq!(join_text(&[a, b]).unwrap(), "😀");
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 @£$€{}\\[\\]~|^\\\\.,!?]{0,400}",
        any::<String>().prop_map(|s| s.chars().take(300).collect()),
        "[a-zçğışöüÇĞİŞÖÜ ]{0,400}",
        "[\\p{Devanagari} a-z]{0,300}",
        proptest::collection::vec(
            prop_oneof![
                Just("👍🏽".to_string()),
                Just("🇩🇪".to_string()),
                Just("👨\u{200D}👩\u{200D}👧".to_string()),
                Just("e\u{301}".to_string()),
                Just("€".to_string()),
                "[a-z ]{1,5}",
            ],
            0..80
        )
        .prop_map(|v| v.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn encode_then_decode_gives_the_text_back(text in any_text()) {
        let (p, pdus) = submit(&text);
        prop_assume!(p.parts.len() <= MAX_PARTS);
        prop_assert_eq!(round_trip(&text, &pdus), text);
    }

    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), smsc: bool) {
        let _ = decode(&bytes, smsc);
    }

    #[test]
    fn decoder_never_panics_on_mutated_valid_pdus(text in any_text(), pos: usize, val: u8) {
        let (_, pdus) = submit(&text);
        let mut bytes = pdus[0].bytes.clone();
        let i = pos % bytes.len();
        bytes[i] = val;
        let _ = decode(&bytes, true);
        bytes.truncate(i);
        let _ = decode(&bytes, true);
    }

    #[test]
    fn planner_parts_are_full_and_within_capacity(text in any_text()) {
        // Greedy packing of indivisible graphemes is optimal when every part but the
        // last is full up to the next grapheme: that is what we check, independently
        // of how the planner got there.
        use unicode_segmentation::UnicodeSegmentation;
        let p = plan(&text, &PlanOptions::default());
        let multi = p.parts.len() > 1;
        let cap = p.encoding.capacity(multi, false);
        let mut joined = String::new();
        for (i, part) in p.parts.iter().enumerate() {
            let chunk = &text[part.range.clone()];
            joined.push_str(chunk);
            let units: usize = chunk.chars().map(|c| p.encoding.cost(c)).sum();
            prop_assert_eq!(units, part.units);
            prop_assert!(units <= cap);
            if i + 1 < p.parts.len() {
                let next = &text[p.parts[i + 1].range.clone()];
                let g = next.graphemes(true).next().unwrap_or("");
                let g_units: usize = g.chars().map(|c| p.encoding.cost(c)).sum();
                let first_char = next.chars().next().map_or(0, |c| p.encoding.cost(c));
                // Either the next grapheme did not fit, or it was larger than a part and
                // was cut between characters, of which the next did not fit.
                prop_assert!(units + g_units > cap && (g_units <= cap || units + first_char > cap),
                    "part {} ({} units) could have taken {:?}", i, units, g);
            }
        }
        prop_assert_eq!(joined, text.clone());
        // Never more parts than UCS-2 would need, and GSM 7-bit whenever it fits.
        let ucs2 = plan(&text, &PlanOptions { force_ucs2: true, ..PlanOptions::default() });
        prop_assert!(p.parts.len() <= ucs2.parts.len());
        if text.chars().all(|c| Gsm7Tables::DEFAULT.cost(c) > 0) {
            prop_assert!(matches!(p.encoding, TextEncoding::Gsm7(_)));
        }
    }
}
