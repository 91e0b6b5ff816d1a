#![allow(clippy::unwrap_used)]

use super::*;

/// The samples of `family` in `text` whose labels contain `label` (e.g. `modem="m1"`).
fn samples<'a>(text: &'a str, family: &str, label: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && l.contains(label)
        })
        .collect()
}

#[test]
fn an_unknown_signal_is_absent_not_nan_and_returns_when_known() {
    // The global exposition: modem names of their own (other tests share it).
    let m = "telemetry-test-signal";
    let ready = ModemState::Ready;
    modem_status(m, Some("8949001"), None, None, &ready, None);
    let text = render();
    assert!(samples(&text, SIGNAL_DBM, m).is_empty(), "{text}");
    assert!(!text.contains("NaN"), "{text}");
    assert_eq!(
        samples(&text, REGISTRATION, m)
            .iter()
            .filter(|l| l.ends_with(" 1"))
            .collect::<Vec<_>>(),
        [&format!(
            "{REGISTRATION}{{modem=\"{m}\",state=\"unknown\"}} 1"
        )]
    );
    assert_eq!(
        samples(&text, MODEM_READY, m),
        [format!("{MODEM_READY}{{modem=\"{m}\"}} 1")]
    );

    modem_status(
        m,
        Some("8949001"),
        Some(-71),
        Some(Registration::Home),
        &ready,
        Some(&ready),
    );
    let text = render();
    assert_eq!(
        samples(&text, SIGNAL_DBM, m),
        [format!(
            "{SIGNAL_DBM}{{modem=\"{m}\",iccid=\"8949001\"}} -71"
        )]
    );
    assert!(
        samples(&text, REGISTRATION, m)
            .contains(&format!("{REGISTRATION}{{modem=\"{m}\",state=\"home\"}} 1").as_str())
    );

    // Unknown again (e.g. the modem stopped answering AT+CSQ): gone again, where a
    // gauge in the registry could only have been set to NaN. A new SIM leaves no
    // series behind under the old ICCID.
    modem_status(m, Some("8949002"), None, None, &ready, Some(&ready));
    let text = render();
    assert!(samples(&text, SIGNAL_DBM, m).is_empty(), "{text}");
    assert!(!text.contains("8949001"), "{text}");
    modem_status(m, Some("8949002"), Some(-90), None, &ready, Some(&ready));
    assert_eq!(
        samples(&render(), SIGNAL_DBM, m),
        [format!(
            "{SIGNAL_DBM}{{modem=\"{m}\",iccid=\"8949002\"}} -90"
        )]
    );

    // A removed modem's gauges leave with it.
    modem_gone(m);
    let text = render();
    for family in [SIGNAL_DBM, REGISTRATION, MODEM_READY] {
        assert!(samples(&text, family, m).is_empty(), "{family}: {text}");
    }
}

#[test]
fn modem_gauges_render_in_the_text_format() {
    let mut modems = BTreeMap::new();
    assert_eq!(modem_gauges(&modems), "", "no modem, no family");
    modems.insert(
        "/dev/gsmgw/\"odd\"\\name\n".to_owned(),
        ModemGauges {
            iccid: String::new(),
            signal_dbm: None,
            registration: Some(Registration::Roaming),
            ready: false,
        },
    );
    let text = modem_gauges(&modems);
    assert!(
        !text.contains(SIGNAL_DBM),
        "no known signal, no family:\n{text}"
    );
    let m = r#"modem="/dev/gsmgw/\"odd\"\\name\n""#;
    assert!(text.contains(&format!("# TYPE {REGISTRATION} gauge\n")));
    assert!(text.contains(&format!("{REGISTRATION}{{{m},state=\"roaming\"}} 1\n")));
    assert!(text.contains(&format!("{REGISTRATION}{{{m},state=\"home\"}} 0\n")));
    assert!(text.contains(&format!("{MODEM_READY}{{{m}}} 0\n")));
    assert_eq!(text.lines().count(), 2 + 6 + 1 + 2 + 1, "{text}");
    modems.insert(
        "m2".to_owned(),
        ModemGauges {
            iccid: "8949".into(),
            signal_dbm: Some(-113),
            registration: None,
            ready: true,
        },
    );
    let text = modem_gauges(&modems);
    assert!(text.starts_with(&format!(
        "# HELP {SIGNAL_DBM} Received signal strength in dBm; absent while the modem does \
         not know it.\n# TYPE {SIGNAL_DBM} gauge\n{SIGNAL_DBM}{{modem=\"m2\",iccid=\"8949\"}} -113\n\n"
    )));
}

#[test]
fn names_follow_the_prometheus_conventions() {
    // The recorder first (the daemon installs it at start), then something in every
    // family the registry holds.
    handle();
    sent_parts("telemetry-test-sim", "telemetry-test-names", 2);
    failed(Some("telemetry-test-sim"), "failed");
    received(Some("telemetry-test-sim"));
    send_latency(1.5);
    queue_depth(&[(0, 1)]);
    let down = ModemState::Recovering("test".into());
    modem_status(
        "telemetry-test-names",
        None,
        Some(-80),
        None,
        &down,
        Some(&ModemState::Ready),
    );
    modem_status(
        "telemetry-test-names",
        None,
        Some(-80),
        None,
        &ModemState::Quarantined("test".into()),
        Some(&down),
    );
    let text = render();
    let types: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .collect();
    for expected in [
        SENT_PARTS,
        MESSAGES_FAILED,
        INBOUND_MESSAGES,
        SEND_LATENCY,
        QUEUE_DEPTH,
        RECOVERIES,
        QUARANTINES,
        SIGNAL_DBM,
        REGISTRATION,
        MODEM_READY,
    ] {
        assert!(
            types.iter().any(|(n, _)| *n == expected),
            "{expected} missing:\n{text}"
        );
    }
    for (name, kind) in &types {
        assert!(name.starts_with("gsmgw_"), "{name}");
        match *kind {
            "counter" => assert!(name.ends_with("_total"), "counter {name}"),
            _ => assert!(!name.ends_with("_total"), "{kind} {name}"),
        }
        assert_eq!(
            types.iter().filter(|(n, _)| n == name).count(),
            1,
            "{name}: one family, declared once"
        );
    }
    for (old, new) in RENAMED {
        assert!(!text.contains(&format!("{old}{{")), "{old} is {new} now");
        assert!(text.contains(&format!("{new}{{")), "{new}:\n{text}");
    }
    assert!(
        text.contains(&format!("# HELP {MESSAGES_FAILED} ")),
        "{text}"
    );
    // No sample is NaN (or infinite).
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let v = l.rsplit(' ').next().unwrap();
        let v: f64 = v.parse().unwrap_or_else(|_| panic!("{l}"));
        assert!(v.is_finite(), "{l}");
    }
}
