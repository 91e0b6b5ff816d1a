//! Balancer tests: every rule on its own with a fixed clock, the calendar against a naive
//! one, and proptests over random banks and send sequences checked by an independent
//! oracle (its own send log and calendar).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::window::{civil_from_days, days_from_civil, from_unix_secs, unix_secs};
use super::*;
use crate::at::Registration;

// ---- helpers ----

const JAN_2024: u64 = 1_704_067_200; // 2024-01-01T00:00:00Z
const FEB_2024: u64 = 1_706_745_600;
const FEB_29_2024: u64 = 1_709_164_800;
const MAR_2024: u64 = 1_709_251_200;
const APR_2024: u64 = 1_711_929_600;
const MAY_2024: u64 = 1_714_521_600;
const DEC_2024: u64 = 1_733_011_200;
const JAN_2025: u64 = 1_735_689_600;
const FEB_2023: u64 = 1_675_209_600;
const MAR_2023: u64 = 1_677_628_800;
/// 2024-02-29T12:00:00Z, a Thursday in a leap February.
const T0: u64 = FEB_29_2024 + 12 * 3600;

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn modem(id: &str, iccid: &str) -> ModemStatus {
    ModemStatus {
        modem: id.to_owned(),
        iccid: Some(iccid.to_owned()),
        sim_ready: true,
        registration: Some(Registration::Home),
        signal_dbm: Some(-70),
        operator: None,
        quarantined: None,
        enabled: true,
        in_flight: 0,
    }
}

/// A pool without the in-flight limit: these tests select repeatedly without reporting
/// sends as finished (see `in_flight_limit_makes_a_busy_modem_wait` for the limit).
fn pool_with(config: PoolConfig, modems: Vec<ModemStatus>) -> Pool {
    let config = PoolConfig {
        max_in_flight: 0,
        ..config
    };
    let mut p = Pool::new(config).expect("valid config");
    for m in modems {
        p.update_modem(m);
    }
    p
}

/// Three healthy modems A/B/C with SIMs 111/222/333.
fn abc(config: PoolConfig) -> Pool {
    pool_with(
        config,
        vec![modem("A", "111"), modem("B", "222"), modem("C", "333")],
    )
}

fn chosen(s: Selection) -> Chosen {
    match s {
        Selection::Chosen(c) => c,
        other => panic!("expected Chosen, got {other:?}"),
    }
}

fn pick(p: &mut Pool, to: &str, now: SystemTime) -> String {
    chosen(p.select(&SelectRequest::new(to, 1), now)).iccid
}

fn wait_until(s: Selection) -> SystemTime {
    match s {
        Selection::WaitUntil(t) => t,
        other => panic!("expected WaitUntil, got {other:?}"),
    }
}

fn unavailable(s: Selection) -> NoCandidate {
    match s {
        Selection::Unavailable(r) => r,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

fn quota(per_minute: Option<u32>, per_hour: Option<u32>, per_day: Option<u32>) -> QuotaLimits {
    QuotaLimits {
        per_minute,
        per_hour,
        per_day,
        per_month: None,
    }
}

fn counts(picks: &[String]) -> HashMap<&str, usize> {
    let mut c = HashMap::new();
    for p in picks {
        *c.entry(p.as_str()).or_default() += 1;
    }
    c
}

fn reason_of(p: &Pool, modem: &str, now: SystemTime) -> String {
    let v = p.candidates_summary(now);
    let v = v
        .iter()
        .find(|v| v.modem == modem)
        .expect("modem in summary");
    match &v.availability {
        Availability::Eligible => "eligible".to_owned(),
        Availability::Waiting { reason, .. } => reason.to_string(),
        Availability::Ineligible(r) => r.to_string(),
    }
}

// ---- calendar ----

fn naive_month_days(y: i64, m: u32) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

#[test]
fn calendar_matches_a_naive_day_walk_1970_to_2400() {
    let mut day = 0i64;
    for y in 1970..2400 {
        for m in 1..=12 {
            for d in 1..=naive_month_days(y, m) {
                assert_eq!(civil_from_days(day), (y, m, d as u32), "day {day}");
                assert_eq!(days_from_civil(y, m, d as u32), day);
                day += 1;
            }
        }
    }
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    assert_eq!(days_from_civil(1969, 12, 31), -1);
}

#[test]
fn minute_hour_day_windows_are_utc_aligned() {
    let t = (T0 + 3 * 3600 + 25 * 60 + 17) as i64; // 15:25:17
    assert_eq!(Window::Minute.start(t), t - 17);
    assert_eq!(Window::Minute.end(t), t - 17 + 60);
    assert_eq!(Window::Hour.start(t), t - 25 * 60 - 17);
    assert_eq!(Window::Hour.end(t), (T0 + 4 * 3600) as i64);
    assert_eq!(Window::Day.start(t), FEB_29_2024 as i64);
    assert_eq!(Window::Day.end(t), MAR_2024 as i64);
    // A boundary belongs to the window it starts.
    assert_eq!(Window::Day.start(MAR_2024 as i64), MAR_2024 as i64);
    assert_eq!(Window::Day.start(MAR_2024 as i64 - 1), FEB_29_2024 as i64);
}

#[test]
fn month_windows_have_the_right_lengths() {
    let cases = [
        (JAN_2024, FEB_2024),                         // 31 days
        (FEB_2024, MAR_2024),                         // leap February, 29
        (FEB_2023, MAR_2023),                         // 28
        (APR_2024, MAY_2024),                         // 30
        (DEC_2024, JAN_2025),                         // year rollover
        (951_782_400 - 28 * 86_400, 951_868_800),     // Feb 2000: leap (divisible by 400)
        (4_107_456_000 - 27 * 86_400, 4_107_542_400), // Feb 2100: not leap
    ];
    for (start, end) in cases {
        for t in [start, start + 1, (start + end) / 2, end - 1] {
            assert_eq!(Window::Month.start(t as i64), start as i64, "start of {t}");
            assert_eq!(Window::Month.end(t as i64), end as i64, "end of {t}");
        }
        assert_eq!(Window::Month.start(end as i64), end as i64);
    }
}

#[test]
fn times_before_1970_round_down() {
    let t = UNIX_EPOCH - ms(1500);
    assert_eq!(unix_secs(t), -2);
    assert_eq!(unix_secs(UNIX_EPOCH - ms(1000)), -1);
    assert_eq!(from_unix_secs(-2), UNIX_EPOCH - ms(2000));
    assert_eq!(Window::Month.start(-1), -31 * 86_400);
}

// ---- health filters ----

#[test]
fn unhealthy_modems_are_never_chosen_and_say_why() {
    let cfg = PoolConfig {
        allow_roaming: false,
        sims: vec![SimConfig {
            enabled: false,
            ..SimConfig::new("999")
        }],
        ..PoolConfig::default()
    };
    let now = at(T0);
    let mut bad = Vec::new();
    let mut m = modem("a-disabled", "1");
    m.enabled = false;
    bad.push((m, "modem disabled"));
    let mut m = modem("b-quarantined", "2");
    m.quarantined = Some("hang".into());
    bad.push((m, "quarantined: hang"));
    let mut m = modem("c-nosim", "3");
    m.sim_ready = false;
    bad.push((m, "SIM not ready"));
    let mut m = modem("d-noiccid", "4");
    m.iccid = None;
    bad.push((m, "ICCID unknown"));
    let mut m = modem("e-searching", "5");
    m.registration = Some(Registration::Searching);
    bad.push((m, "not registered (searching)"));
    let mut m = modem("f-denied", "6");
    m.registration = Some(Registration::Denied);
    bad.push((m, "not registered (denied)"));
    let mut m = modem("g-unknown", "7");
    m.registration = None;
    bad.push((m, "not registered (unknown)"));
    let mut m = modem("h-roaming", "8");
    m.registration = Some(Registration::Roaming);
    bad.push((m, "roaming not allowed"));
    let mut m = modem("i-weak", "9");
    m.signal_dbm = Some(-113);
    bad.push((m, "signal -113 dBm below -107"));
    bad.push((modem("j-simoff", "999"), "SIM disabled in config"));

    let mut p = pool_with(cfg, bad.iter().map(|(m, _)| m.clone()).collect());
    for (m, why) in &bad {
        assert_eq!(reason_of(&p, &m.modem, now), *why);
    }
    match unavailable(p.select(&SelectRequest::new("+1555", 1), now)) {
        NoCandidate::AllIneligible(r) => assert_eq!(r.len(), bad.len()),
        other => panic!("{other:?}"),
    }
    // One healthy modem among them takes everything.
    p.update_modem(modem("z-good", "42"));
    for _ in 0..5 {
        assert_eq!(pick(&mut p, "+1555", now), "42");
    }
}

#[test]
fn signal_at_threshold_and_unknown_are_acceptable_roaming_by_default() {
    let mut edge = modem("A", "1");
    edge.signal_dbm = Some(-107);
    let mut unknown = modem("B", "2");
    unknown.signal_dbm = None;
    let mut roaming = modem("C", "3");
    roaming.registration = Some(Registration::Roaming);
    let p = pool_with(PoolConfig::default(), vec![edge, unknown, roaming]);
    for m in ["A", "B", "C"] {
        assert_eq!(reason_of(&p, m, at(T0)), "eligible");
    }
}

#[test]
fn unknown_signal_ranks_below_known_signal() {
    let mut unknown = modem("A", "111");
    unknown.signal_dbm = None;
    let mut weak = modem("B", "222");
    weak.signal_dbm = Some(-105);
    let mut p = pool_with(PoolConfig::default(), vec![unknown.clone(), weak.clone()]);
    // Reset in-flight before each pick so only signal decides.
    for _ in 0..3 {
        assert_eq!(pick(&mut p, "+1", at(T0)), "222");
        p.update_modem(unknown.clone());
        p.update_modem(weak.clone());
        p.restore_usage("222", UsageSnapshot::default());
    }
}

#[test]
fn no_modems_and_all_quarantined_messages() {
    let mut p = Pool::default();
    assert_eq!(
        unavailable(p.select(&SelectRequest::new("+1", 1), at(T0))),
        NoCandidate::NoModems
    );
    for id in ["A", "B", "C"] {
        let mut m = modem(id, id);
        m.quarantined = Some("hang".into());
        p.update_modem(m);
    }
    let r = unavailable(p.select(&SelectRequest::new("+1", 1), at(T0)));
    assert_eq!(r.to_string(), "no eligible modem: all 3 quarantined");
    p.remove_modem("A");
    p.remove_modem("B");
    p.remove_modem("C");
    assert_eq!(
        unavailable(p.select(&SelectRequest::new("+1", 1), at(T0))),
        NoCandidate::NoModems
    );
}

// ---- strategies ----

#[test]
fn least_loaded_prefers_fewest_in_flight() {
    let mut p = abc(PoolConfig::default());
    let mut a = modem("A", "111");
    a.in_flight = 2;
    let mut b = modem("B", "222");
    b.in_flight = 0;
    let mut c = modem("C", "333");
    c.in_flight = 1;
    p.update_modem(a);
    p.update_modem(b);
    p.update_modem(c);
    assert_eq!(pick(&mut p, "+1", at(T0)), "222");
    // Optimistic in-flight: B now has 1 like C; C wins on "less used today".
    assert_eq!(pick(&mut p, "+1", at(T0)), "333");
}

#[test]
fn least_loaded_spreads_a_burst_evenly() {
    let mut p = abc(PoolConfig::default());
    let picks: Vec<String> = (0..300).map(|_| pick(&mut p, "+1", at(T0))).collect();
    let c = counts(&picks);
    assert_eq!((c["111"], c["222"], c["333"]), (100, 100, 100));
    // Without in-flight differences (dispatcher reports 0), today's usage balances.
    for m in ["A", "B", "C"] {
        let mut s = p.modem(m).unwrap().clone();
        s.in_flight = 0;
        p.update_modem(s);
    }
    p.record_send("111", 5, at(T0));
    p.record_send("333", 2, at(T0));
    assert_eq!(pick(&mut p, "+1", at(T0)), "222");
}

#[test]
fn least_loaded_then_signal_then_iccid() {
    let mut a = modem("A", "111");
    a.signal_dbm = Some(-90);
    let mut b = modem("B", "222");
    b.signal_dbm = Some(-60);
    let c = modem("C", "000");
    let mut p = pool_with(PoolConfig::default(), vec![a, b.clone()]);
    assert_eq!(pick(&mut p, "+1", at(T0)), "222");
    let mut p = pool_with(PoolConfig::default(), vec![c, modem("D", "999")]);
    assert_eq!(pick(&mut p, "+1", at(T0)), "000");
}

#[test]
fn round_robin_rotates_in_iccid_order_and_skips_ineligible() {
    let cfg = PoolConfig {
        strategy: Strategy::RoundRobin,
        ..PoolConfig::default()
    };
    let mut p = abc(cfg);
    let picks: Vec<String> = (0..6).map(|_| pick(&mut p, "+1", at(T0))).collect();
    assert_eq!(picks, ["111", "222", "333", "111", "222", "333"]);
    let mut b = modem("B", "222");
    b.quarantined = Some("x".into());
    p.update_modem(b);
    let picks: Vec<String> = (0..4).map(|_| pick(&mut p, "+1", at(T0))).collect();
    assert_eq!(picks, ["111", "333", "111", "333"]);
    p.update_modem(modem("B", "222"));
    let picks: Vec<String> = (0..300).map(|_| pick(&mut p, "+1", at(T0))).collect();
    let c = counts(&picks);
    assert_eq!((c["111"], c["222"], c["333"]), (100, 100, 100));
}

#[test]
fn weighted_is_smooth_and_proportional() {
    let cfg = PoolConfig {
        strategy: Strategy::Weighted,
        sims: vec![
            SimConfig {
                weight: 3,
                ..SimConfig::new("111")
            },
            SimConfig::new("222"),
        ],
        ..PoolConfig::default()
    };
    let mut p = pool_with(cfg, vec![modem("A", "111"), modem("B", "222")]);
    let picks: Vec<String> = (0..4).map(|_| pick(&mut p, "+1", at(T0))).collect();
    assert_eq!(picks, ["111", "111", "222", "111"]);
    let picks: Vec<String> = (0..400).map(|_| pick(&mut p, "+1", at(T0))).collect();
    let c = counts(&picks);
    assert_eq!((c["111"], c["222"]), (300, 100));
}

#[test]
fn weighted_five_two_one_distribution() {
    let cfg = PoolConfig {
        strategy: Strategy::Weighted,
        sims: vec![
            SimConfig {
                weight: 5,
                ..SimConfig::new("111")
            },
            SimConfig {
                weight: 2,
                ..SimConfig::new("222")
            },
            // 333 has no entry: weight 1.
        ],
        ..PoolConfig::default()
    };
    let mut p = abc(cfg);
    let picks: Vec<String> = (0..800).map(|_| pick(&mut p, "+1", at(T0))).collect();
    let c = counts(&picks);
    assert_eq!((c["111"], c["222"], c["333"]), (500, 200, 100));
    // Smooth: the heavy SIM never sends more than 3 times in a row (nginx: a a b a c a b a).
    let runs = picks
        .chunk_by(|a, b| a == b)
        .map(|r| r.len())
        .max()
        .unwrap();
    assert!(runs <= 3, "longest run {runs}");
}

#[test]
fn weight_zero_is_a_backup() {
    let cfg = PoolConfig {
        strategy: Strategy::Weighted,
        sims: vec![SimConfig {
            weight: 0,
            ..SimConfig::new("222")
        }],
        ..PoolConfig::default()
    };
    let mut p = pool_with(cfg, vec![modem("A", "111"), modem("B", "222")]);
    for _ in 0..10 {
        assert_eq!(pick(&mut p, "+1", at(T0)), "111");
    }
    let mut a = modem("A", "111");
    a.quarantined = Some("x".into());
    p.update_modem(a);
    assert_eq!(pick(&mut p, "+1", at(T0)), "222");
}

// ---- quotas ----

#[test]
fn per_minute_quota_waits_for_the_next_minute_exactly() {
    let cfg = PoolConfig {
        quota: quota(Some(2), None, None),
        ..PoolConfig::default()
    };
    let mut p = pool_with(cfg, vec![modem("A", "111")]);
    let now = at(T0 + 10) + ms(250); // 12:00:10.250
    pick(&mut p, "+1", now);
    pick(&mut p, "+1", now);
    assert_eq!(reason_of(&p, "A", now), "quota per_minute 2/2");
    let t = wait_until(p.select(&SelectRequest::new("+1", 1), now));
    assert_eq!(t, at(T0 + 60));
    assert!(matches!(
        p.clone()
            .select(&SelectRequest::new("+1", 1), t - Duration::from_nanos(1)),
        Selection::WaitUntil(x) if x == t
    ));
    pick(&mut p, "+1", t);
}

#[test]
fn quota_counts_parts() {
    let cfg = PoolConfig {
        quota: quota(Some(5), None, None),
        ..PoolConfig::default()
    };
    let mut p = pool_with(cfg, vec![modem("A", "111")]);
    let now = at(T0);
    chosen(p.select(&SelectRequest::new("+1", 3), now));
    // 3 + 3 > 5: wait; 3 + 2 fits.
    wait_until(p.select(&SelectRequest::new("+1", 3), now));
    chosen(p.select(&SelectRequest::new("+1", 2), now));
    assert_eq!(p.usage("111").minute.count, 5);
    wait_until(p.select(&SelectRequest::new("+1", 1), now));
    // A message bigger than the window itself can never go: no waiting.
    let r = unavailable(p.select(&SelectRequest::new("+1", 6), now));
    assert_eq!(
        r.to_string(),
        "no eligible modem: A: 6-part message exceeds quota per_minute 5"
    );
}

#[test]
fn hour_and_day_quotas_roll_over() {
    let cfg = PoolConfig {
        quota: quota(None, Some(3), Some(4)),
        ..PoolConfig::default()
    };
    let mut p = pool_with(cfg, vec![modem("A", "111")]);
    let t = at(FEB_29_2024 + 22 * 3600 + 59 * 60); // 2024-02-29 22:59
    for _ in 0..3 {
        pick(&mut p, "+1", t);
    }
    assert_eq!(
        wait_until(p.select(&SelectRequest::new("+1", 1), t)),
        at(FEB_29_2024 + 23 * 3600)
    );
    pick(&mut p, "+1", at(FEB_29_2024 + 23 * 3600)); // day now 4/4
    assert_eq!(
        reason_of(&p, "A", at(FEB_29_2024 + 23 * 3600)),
        "quota per_day 4/4"
    );
    // The day ends at midnight, which is also March 1st.
    assert_eq!(
        wait_until(p.select(&SelectRequest::new("+1", 1), at(FEB_29_2024 + 23 * 3600))),
        at(MAR_2024)
    );
    pick(&mut p, "+1", at(MAR_2024));
    assert_eq!(p.usage("111").day.count, 1);
    assert_eq!(p.usage("111").day.start_unix, MAR_2024 as i64);
}

#[test]
fn month_quota_rolls_over_on_months_of_every_length() {
    let cfg = PoolConfig {
        quota: QuotaLimits {
            per_month: Some(2),
            ..QuotaLimits::default()
        },
        ..PoolConfig::default()
    };
    for (start, next) in [
        (JAN_2024, FEB_2024),
        (FEB_2024, MAR_2024),
        (FEB_2023, MAR_2023),
        (APR_2024, MAY_2024),
        (DEC_2024, JAN_2025),
    ] {
        let mut p = pool_with(cfg.clone(), vec![modem("A", "111")]);
        pick(&mut p, "+1", at(start));
        let last = at(next - 1);
        pick(&mut p, "+1", last);
        assert_eq!(
            wait_until(p.select(&SelectRequest::new("+1", 1), last)),
            at(next),
            "month starting {start}"
        );
        pick(&mut p, "+1", at(next));
        assert_eq!(p.usage("111").month.count, 1);
    }
}

#[test]
fn the_latest_binding_constraint_decides_the_wait() {
    let cfg = PoolConfig {
        quota: quota(Some(1), Some(1), None),
        min_interval_ms: 90_000,
        ..PoolConfig::default()
    };
    let mut p = pool_with(cfg, vec![modem("A", "111")]);
    let now = at(T0 + 5);
    pick(&mut p, "+1", now);
    // Minute ends at +60 s, interval at +90 s, hour at +3600 s: the hour binds.
    assert_eq!(
        wait_until(p.select(&SelectRequest::new("+1", 1), now)),
        at(T0 + 3600)
    );
}

#[test]
fn sim_quota_overrides_merge_per_window() {
    let cfg = PoolConfig {
        quota: quota(Some(1), None, Some(100)),
        sims: vec![SimConfig {
            quota: quota(None, None, Some(2)),
            ..SimConfig::new("111")
        }],
        ..PoolConfig::default()
    };
    let mut p = pool_with(cfg, vec![modem("A", "111")]);
    let v = &p.candidates_summary(at(T0))[0];
    assert_eq!(v.limits, quota(Some(1), None, Some(2)));
    pick(&mut p, "+1", at(T0));
    pick(&mut p, "+1", at(T0 + 60));
    assert_eq!(
        wait_until(p.select(&SelectRequest::new("+1", 1), at(T0 + 120))),
        at(MAR_2024)
    );
}

#[test]
fn counters_follow_the_iccid_across_ports_and_restarts() {
    let cfg = PoolConfig {
        quota: quota(None, None, Some(2)),
        ..PoolConfig::default()
    };
    let mut p = pool_with(cfg.clone(), vec![modem("ttyUSB0", "111")]);
    pick(&mut p, "+1", at(T0));
    pick(&mut p, "+1", at(T0));
    p.remove_modem("ttyUSB0");
    p.update_modem(modem("ttyUSB7", "111"));
    wait_until(p.select(&SelectRequest::new("+1", 1), at(T0)));

    // Persist through JSON and restore into a fresh pool.
    let json = serde_json::to_string(&p.usage("111")).unwrap();
    let snap: UsageSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(p.usages().count(), 1);
    let mut q = pool_with(cfg, vec![modem("ttyUSB1", "111")]);
    q.restore_usage("111", snap);
    assert_eq!(
        wait_until(q.select(&SelectRequest::new("+1", 1), at(T0 + 60))),
        at(MAR_2024)
    );
    assert_eq!(snap.used(Window::Day, at(T0)), 2);
    assert_eq!(snap.used(Window::Day, at(MAR_2024)), 0);
}

#[test]
fn snapshot_rounds_last_send_up_to_the_millisecond() {
    let mut p = Pool::default();
    let t = at(T0) + Duration::from_nanos(1_000_001);
    p.record_send("111", 1, t);
    let s = p.usage("111");
    assert_eq!(s.last_send_unix_ms, Some(T0 as i64 * 1000 + 2));
    assert_eq!(Pool::default().usage("nope"), UsageSnapshot::default());
}

#[test]
fn record_send_and_refund() {
    let cfg = PoolConfig {
        quota: quota(Some(3), None, None),
        ..PoolConfig::default()
    };
    let mut p = pool_with(cfg, vec![modem("A", "111")]);
    let now = at(T0);
    p.record_send("111", 3, now); // a send the pool did not choose
    wait_until(p.select(&SelectRequest::new("+1", 1), now));
    p.refund("111", 2, now);
    chosen(p.select(&SelectRequest::new("+1", 2), now));
    assert_eq!(p.usage("111").minute.count, 3);
    // A refund for an earlier window does not touch the current one.
    p.refund("111", 3, at(T0 - 60));
    assert_eq!(p.usage("111").minute.count, 3);
    assert_eq!(p.usage("111").hour.count, 3);
}

#[test]
fn a_clock_stepping_back_keeps_counting() {
    let cfg = PoolConfig {
        quota: quota(None, None, Some(1)),
        ..PoolConfig::default()
    };
    let mut p = pool_with(cfg, vec![modem("A", "111")]);
    pick(&mut p, "+1", at(MAR_2024 + 10));
    // Back to February: the March count still binds until March's day is over.
    assert_eq!(
        wait_until(p.select(&SelectRequest::new("+1", 1), at(MAR_2024 - 10))),
        at(MAR_2024 + 86_400)
    );
}

// ---- minimum interval ----

#[test]
fn min_interval_wait_is_exact_and_other_sims_fill_in() {
    let cfg = PoolConfig {
        min_interval_ms: 1500,
        sims: vec![SimConfig {
            min_interval_ms: Some(4000),
            ..SimConfig::new("222")
        }],
        ..PoolConfig::default()
    };
    let mut p = pool_with(cfg, vec![modem("A", "111"), modem("B", "222")]);
    let t0 = at(T0) + Duration::from_nanos(123_456_789);
    assert_eq!(pick(&mut p, "+1", t0), "111");
    assert_eq!(pick(&mut p, "+1", t0), "222");
    let t = wait_until(p.select(&SelectRequest::new("+1", 1), t0));
    assert_eq!(t, t0 + ms(1500));
    assert_eq!(reason_of(&p, "A", t0), "min interval 1500 ms");
    assert!(matches!(
        p.clone().select(&SelectRequest::new("+1", 1), t - Duration::from_nanos(1)),
        Selection::WaitUntil(x) if x == t
    ));
    assert_eq!(pick(&mut p, "+1", t), "111");
    // B's own interval is 4 s.
    let t2 = wait_until(p.select(&SelectRequest::new("+1", 1), t));
    assert_eq!(t2, t + ms(1500));
    let mut a = modem("A", "111");
    a.quarantined = Some("x".into());
    p.update_modem(a);
    assert_eq!(
        wait_until(p.select(&SelectRequest::new("+1", 1), t)),
        t0 + ms(4000)
    );
}

// ---- routes ----

fn routed(fallback: bool) -> PoolConfig {
    PoolConfig {
        routes: vec![
            RouteConfig {
                prefix: "+49".into(),
                sims: vec!["111".into()],
                operators: vec![],
                fallback,
            },
            RouteConfig {
                prefix: "+4917".into(),
                sims: vec![],
                operators: vec!["Telekom.de".into()],
                fallback,
            },
        ],
        ..PoolConfig::default()
    }
}

fn routed_pool(fallback: bool) -> Pool {
    let mut b = modem("B", "222");
    b.operator = Some("TELEKOM.DE ".into());
    pool_with(
        routed(fallback),
        vec![modem("A", "111"), b, modem("C", "333")],
    )
}

#[test]
fn longest_prefix_wins_and_operators_match_case_insensitively() {
    let mut p = routed_pool(true);
    for _ in 0..5 {
        assert_eq!(pick(&mut p, "+491701234567", at(T0)), "222");
        assert_eq!(pick(&mut p, "+493012345", at(T0)), "111");
        assert_eq!(pick(&mut p, "4917 no plus", at(T0)), "222");
    }
    // No route: the strategy over everyone.
    let picks: Vec<String> = (0..3).map(|_| pick(&mut p, "+33123", at(T0))).collect();
    assert!(picks.contains(&"333".to_owned()));
}

#[test]
fn configured_sim_operator_matches_routes() {
    let mut cfg = routed(false);
    cfg.sims.push(SimConfig {
        operator: Some("telekom.de".into()),
        ..SimConfig::new("333")
    });
    let mut p = pool_with(cfg, vec![modem("A", "111"), modem("C", "333")]);
    assert_eq!(pick(&mut p, "+4917000", at(T0)), "333");
}

#[test]
fn route_falls_back_when_its_sims_cannot_send_now() {
    let mut p = routed_pool(true);
    let mut b = p.modem("B").unwrap().clone();
    b.quarantined = Some("x".into());
    p.update_modem(b.clone());
    let c = chosen(p.select(&SelectRequest::new("+4917123", 1), at(T0)));
    assert!(c.route_fallback);
    assert_ne!(c.iccid, "222");
    // Busy (not broken) route SIM: fallback too, rather than waiting.
    b.quarantined = None;
    p.update_modem(b);
    let mut q = p.clone();
    q.set_config(PoolConfig {
        min_interval_ms: 10_000,
        ..routed(true)
    })
    .unwrap();
    let first = chosen(q.select(&SelectRequest::new("+4917123", 1), at(T0)));
    assert_eq!((first.iccid.as_str(), first.route_fallback), ("222", false));
    let second = chosen(q.select(&SelectRequest::new("+4917123", 1), at(T0)));
    assert!(second.route_fallback);
}

#[test]
fn route_without_fallback_waits_or_fails() {
    let mut cfg = routed(false);
    cfg.min_interval_ms = 10_000;
    let mut b = modem("B", "222");
    b.operator = Some("telekom.de".into());
    let mut p = pool_with(cfg, vec![modem("A", "111"), b.clone(), modem("C", "333")]);
    assert_eq!(pick(&mut p, "+4917123", at(T0)), "222");
    assert_eq!(
        wait_until(p.select(&SelectRequest::new("+4917123", 1), at(T0))),
        at(T0 + 10)
    );
    b.quarantined = Some("x".into());
    p.update_modem(b);
    let r = unavailable(p.select(&SelectRequest::new("+4917123", 1), at(T0 + 20)));
    assert_eq!(
        r,
        NoCandidate::RouteWithoutSim {
            prefix: "+4917".into()
        }
    );
    assert_eq!(
        r.to_string(),
        "route +4917 has no usable SIM and no fallback"
    );
}

// ---- sticky ----

#[test]
fn sticky_recipient_keeps_its_sim_within_the_window() {
    let cfg = PoolConfig {
        strategy: Strategy::RoundRobin,
        sticky_window_secs: 60,
        ..PoolConfig::default()
    };
    let mut p = abc(cfg);
    let first = pick(&mut p, "+4915", at(T0));
    let again = chosen(p.select(&SelectRequest::new("+4915", 1), at(T0 + 59)));
    assert_eq!(
        (again.iccid.as_str(), again.via),
        (first.as_str(), Via::Sticky)
    );
    // Every sticky send renews the window.
    let again = chosen(p.select(&SelectRequest::new("4915", 1), at(T0 + 118)));
    assert_eq!(again.via, Via::Sticky);
    // Expired: round robin resumes, and it moves on from the last SIM it picked.
    let later = chosen(p.select(&SelectRequest::new("+4915", 1), at(T0 + 178)));
    assert_eq!(later.via, Via::Strategy);
    assert_ne!(later.iccid, first);
}

#[test]
fn sticky_sim_that_cannot_send_is_skipped() {
    let cfg = PoolConfig {
        sticky_window_secs: 600,
        ..PoolConfig::default()
    };
    let mut p = abc(cfg);
    let first = pick(&mut p, "+4915", at(T0));
    assert_eq!(first, "111");
    let mut a = modem("A", "111");
    a.quarantined = Some("x".into());
    p.update_modem(a);
    let c = chosen(p.select(&SelectRequest::new("+4915", 1), at(T0 + 1)));
    assert_eq!(c.via, Via::Strategy);
    // And the recipient now sticks to the new SIM.
    p.update_modem(modem("A", "111"));
    let d = chosen(p.select(&SelectRequest::new("+4915", 1), at(T0 + 2)));
    assert_eq!((d.iccid, d.via), (c.iccid, Via::Sticky));
}

#[test]
fn sticky_is_off_by_default() {
    let cfg = PoolConfig {
        strategy: Strategy::RoundRobin,
        ..PoolConfig::default()
    };
    let mut p = abc(cfg);
    let a = pick(&mut p, "+4915", at(T0));
    let b = pick(&mut p, "+4915", at(T0));
    assert_ne!(a, b);
}

// ---- pinned ----

#[test]
fn pinned_sim_is_used_exclusively() {
    let cfg = PoolConfig {
        min_interval_ms: 2000,
        routes: routed(false).routes,
        ..PoolConfig::default()
    };
    let mut p = abc(cfg);
    let req = SelectRequest {
        pinned_sim: Some("333"),
        ..SelectRequest::new("+4917", 1)
    };
    let c = chosen(p.select(&req, at(T0)));
    assert_eq!(
        (c.iccid.as_str(), c.modem.as_str(), c.via),
        ("333", "C", Via::Pinned)
    );
    // Busy: wait for it even though others are free.
    assert_eq!(wait_until(p.select(&req, at(T0))), at(T0 + 2));
    // Broken: say so.
    let mut m = modem("C", "333");
    m.signal_dbm = Some(-111);
    p.update_modem(m);
    assert_eq!(
        unavailable(p.select(&req, at(T0 + 5))).to_string(),
        "pinned SIM 333: signal -111 dBm below -107"
    );
    // Unknown.
    let req = SelectRequest {
        pinned_sim: Some("404"),
        ..SelectRequest::new("+1", 1)
    };
    assert_eq!(
        unavailable(p.select(&req, at(T0))),
        NoCandidate::PinnedUnknown {
            iccid: "404".into()
        }
    );
}

// ---- avoid ----

#[test]
fn avoided_sims_are_a_last_resort() {
    let mut p = abc(PoolConfig::default());
    let avoid = vec!["111".to_owned(), "222".to_owned()];
    let req = SelectRequest {
        avoid: &avoid,
        ..SelectRequest::new("+1", 1)
    };
    for _ in 0..5 {
        let c = chosen(p.select(&req, at(T0)));
        assert_eq!((c.iccid.as_str(), c.reused_avoided), ("333", false));
    }
    let mut m = modem("C", "333");
    m.quarantined = Some("x".into());
    p.update_modem(m);
    let c = chosen(p.select(&req, at(T0)));
    assert!(c.reused_avoided);
    assert!(avoid.contains(&c.iccid));
}

#[test]
fn an_avoided_sim_that_can_send_now_beats_waiting() {
    let cfg = PoolConfig {
        min_interval_ms: 5000,
        ..PoolConfig::default()
    };
    let mut p = pool_with(cfg, vec![modem("A", "111"), modem("B", "222")]);
    assert_eq!(pick(&mut p, "+1", at(T0)), "111");
    let avoid = vec!["222".to_owned()];
    let req = SelectRequest {
        avoid: &avoid,
        ..SelectRequest::new("+1", 1)
    };
    let c = chosen(p.select(&req, at(T0 + 1)));
    assert_eq!((c.iccid.as_str(), c.reused_avoided), ("222", true));
    // Both busy: the earliest of all, avoided or not.
    assert_eq!(wait_until(p.select(&req, at(T0 + 1))), at(T0 + 5));
}

// ---- config ----

#[test]
fn config_defaults_and_names() {
    let c: PoolConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c, PoolConfig::default());
    assert_eq!(c.strategy, Strategy::LeastLoaded);
    assert_eq!(c.min_signal_dbm, Some(-107));
    assert!(c.allow_roaming);
    let c: PoolConfig = serde_json::from_value(serde_json::json!({
        "strategy": "round-robin",
        "quota": {"per_day": 100},
        "sims": [{"iccid": "8949"}],
        "routes": [{"prefix": "+4917", "operators": ["Telekom.de"]}],
    }))
    .unwrap();
    assert_eq!(c.strategy, Strategy::RoundRobin);
    assert_eq!(c.quota.per_day, Some(100));
    assert_eq!(c.sims[0], SimConfig::new("8949"));
    assert!(c.routes[0].fallback);
    let w: PoolConfig = serde_json::from_str(r#"{"strategy":"weighted"}"#).unwrap();
    assert_eq!(w.strategy, Strategy::Weighted);
    assert!(serde_json::from_str::<PoolConfig>(r#"{"stratgy":"weighted"}"#).is_err());
    assert!(serde_json::from_str::<PoolConfig>(r#"{"quota":{"per_week":1}}"#).is_err());
    assert!(serde_json::from_str::<PoolConfig>(r#"{"strategy":"random"}"#).is_err());
    assert!(serde_json::from_str::<PoolConfig>(r#"{"sims":[{"weight":2}]}"#).is_err());
}

#[test]
fn config_validation() {
    let route = |prefix: &str| RouteConfig {
        prefix: prefix.into(),
        sims: vec!["1".into()],
        operators: vec![],
        fallback: true,
    };
    let bad = [
        (
            PoolConfig {
                sims: vec![SimConfig::new(" ")],
                ..PoolConfig::default()
            },
            PoolConfigError::EmptyIccid,
        ),
        (
            PoolConfig {
                sims: vec![SimConfig::new("1"), SimConfig::new("1")],
                ..PoolConfig::default()
            },
            PoolConfigError::DuplicateSim("1".into()),
        ),
        (
            PoolConfig {
                routes: vec![route("+49x")],
                ..PoolConfig::default()
            },
            PoolConfigError::BadPrefix("+49x".into()),
        ),
        (
            PoolConfig {
                routes: vec![route("+")],
                ..PoolConfig::default()
            },
            PoolConfigError::BadPrefix("+".into()),
        ),
        (
            PoolConfig {
                routes: vec![route("+49"), route("49")],
                ..PoolConfig::default()
            },
            PoolConfigError::DuplicateRoute("49".into()),
        ),
        (
            PoolConfig {
                routes: vec![RouteConfig {
                    sims: vec![],
                    ..route("+1")
                }],
                ..PoolConfig::default()
            },
            PoolConfigError::EmptyRoute("+1".into()),
        ),
    ];
    for (cfg, err) in bad {
        assert_eq!(Pool::new(cfg.clone()).unwrap_err(), err);
        assert_eq!(Pool::default().set_config(cfg).unwrap_err(), err);
    }
}

#[test]
fn reload_keeps_usage() {
    let mut p = pool_with(PoolConfig::default(), vec![modem("A", "111")]);
    pick(&mut p, "+1", at(T0));
    p.set_config(PoolConfig {
        quota: quota(Some(1), None, None),
        max_in_flight: 0,
        ..PoolConfig::default()
    })
    .unwrap();
    wait_until(p.select(&SelectRequest::new("+1", 1), at(T0)));
}

#[test]
fn summary_shows_usage_limits_and_waits() {
    let cfg = PoolConfig {
        quota: quota(None, None, Some(100)),
        sims: vec![SimConfig {
            weight: 4,
            ..SimConfig::new("111")
        }],
        ..PoolConfig::default()
    };
    let mut p = pool_with(cfg, vec![modem("A", "111"), modem("B", "222")]);
    p.record_send("111", 100, at(T0));
    let v = p.candidates_summary(at(T0));
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].weight, 4);
    assert_eq!(v[0].usage.day, 100);
    assert_eq!(v[0].usage.month, 100);
    assert_eq!(
        v[0].availability,
        Availability::Waiting {
            until: at(MAR_2024),
            reason: Busy::Quota {
                window: Window::Day,
                used: 100,
                limit: 100
            }
        }
    );
    assert_eq!(reason_of(&p, "A", at(T0)), "quota per_day 100/100");
    assert_eq!(v[1].availability, Availability::Eligible);
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(
        json[0]["availability"],
        serde_json::json!({
            "state": "waiting",
            "reason": "quota per_day 100/100",
            "until_unix_ms": MAR_2024 * 1000,
        })
    );
    assert_eq!(json[0]["limits"]["per_day"], 100);
    assert_eq!(json[0]["usage"]["day"], 100);
    assert_eq!(
        json[1]["availability"],
        serde_json::json!({"state": "eligible"})
    );
}

#[test]
fn parts_zero_counts_as_one() {
    let mut p = pool_with(PoolConfig::default(), vec![modem("A", "111")]);
    chosen(p.select(&SelectRequest::new("+1", 0), at(T0)));
    assert_eq!(p.usage("111").day.count, 1);
}

// ---- proptests ----

mod props {
    use super::*;
    use proptest::prelude::{
        Just, ProptestConfig, any, prop_assert, prop_assert_eq, prop_oneof, proptest,
    };
    use proptest::strategy::Strategy as _;

    const ICCIDS: [&str; 4] = ["I0", "I1", "I2", "I3"];
    const TOS: [&str; 4] = ["+4917111", "+4930222", "+33333", "+4917444"];

    fn arb_limit(max: u32) -> impl proptest::strategy::Strategy<Value = Option<u32>> {
        prop_oneof![Just(None), (1..=max).prop_map(Some)]
    }

    fn arb_quota() -> impl proptest::strategy::Strategy<Value = QuotaLimits> {
        (arb_limit(6), arb_limit(20), arb_limit(40), arb_limit(120)).prop_map(
            |(per_minute, per_hour, per_day, per_month)| QuotaLimits {
                per_minute,
                per_hour,
                per_day,
                per_month,
            },
        )
    }

    fn arb_config() -> impl proptest::strategy::Strategy<Value = PoolConfig> {
        let strategy = prop_oneof![
            Just(Strategy::LeastLoaded),
            Just(Strategy::RoundRobin),
            Just(Strategy::Weighted)
        ];
        let sim = (
            0..ICCIDS.len(),
            0u32..4,
            arb_quota(),
            proptest::option::of(0u64..5000),
            any::<bool>(),
            proptest::option::of(Just("telekom.de".to_owned())),
        )
            .prop_map(
                |(i, weight, quota, min_interval_ms, off, operator)| SimConfig {
                    iccid: ICCIDS[i].to_owned(),
                    weight,
                    quota,
                    min_interval_ms,
                    operator,
                    enabled: !off || i != 0,
                },
            );
        let route = (
            prop_oneof![Just("+49"), Just("+4917"), Just("4930")],
            proptest::collection::vec(0..ICCIDS.len(), 0..3),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(prefix, sims, by_operator, fallback)| RouteConfig {
                prefix: prefix.to_owned(),
                sims: sims.into_iter().map(|i| ICCIDS[i].to_owned()).collect(),
                operators: if by_operator {
                    vec!["Telekom.DE".to_owned()]
                } else {
                    vec!["nobody".to_owned()]
                },
                fallback,
            });
        (
            strategy,
            any::<bool>(),
            prop_oneof![Just(0u64), 0u64..3000],
            arb_quota(),
            prop_oneof![Just(0u64), Just(30), Just(3600)],
            proptest::collection::vec(sim, 0..4),
            proptest::collection::vec(route, 0..3),
        )
            .prop_map(
                |(strategy, allow_roaming, min_interval_ms, quota, sticky, sims, routes)| {
                    let mut seen = std::collections::HashSet::new();
                    let sims = sims
                        .into_iter()
                        .filter(|s| seen.insert(s.iccid.clone()))
                        .collect();
                    let mut seen = std::collections::HashSet::new();
                    let routes = routes
                        .into_iter()
                        .filter(|r| seen.insert(r.prefix.trim_start_matches('+').to_owned()))
                        .collect();
                    PoolConfig {
                        strategy,
                        min_signal_dbm: Some(-107),
                        allow_roaming,
                        min_interval_ms,
                        quota,
                        sticky_window_secs: sticky,
                        sims,
                        routes,
                        // The independent model below knows nothing of in-flight limits.
                        max_in_flight: 0,
                    }
                },
            )
    }

    fn arb_modem(id: usize) -> impl proptest::strategy::Strategy<Value = ModemStatus> {
        let reg = prop_oneof![
            6 => Just(Some(Registration::Home)),
            2 => Just(Some(Registration::Roaming)),
            1 => Just(Some(Registration::Searching)),
            1 => Just(Some(Registration::Denied)),
            1 => Just(Some(Registration::Unregistered)),
            1 => Just(None),
        ];
        (
            proptest::option::weighted(0.9, 0..ICCIDS.len()),
            proptest::bool::weighted(0.9),
            reg,
            proptest::option::weighted(0.8, -120i32..-50),
            proptest::option::of(Just("Telekom.de".to_owned())),
            proptest::option::weighted(0.15, Just("hang".to_owned())),
            proptest::bool::weighted(0.9),
            0u32..3,
        )
            .prop_map(
                move |(
                    iccid,
                    sim_ready,
                    registration,
                    signal_dbm,
                    operator,
                    quarantined,
                    enabled,
                    in_flight,
                )| {
                    ModemStatus {
                        modem: format!("m{id}"),
                        iccid: iccid.map(|i| ICCIDS[i].to_owned()),
                        sim_ready,
                        registration,
                        signal_dbm,
                        operator,
                        quarantined,
                        enabled,
                        in_flight,
                    }
                },
            )
    }

    fn arb_modems() -> impl proptest::strategy::Strategy<Value = Vec<ModemStatus>> {
        (1usize..6).prop_flat_map(|n| (0..n).map(arb_modem).collect::<Vec<_>>())
    }

    #[derive(Debug, Clone)]
    enum Op {
        Select {
            advance_ms: u64,
            parts: u32,
            to: usize,
            pinned: Option<usize>,
            avoid: Vec<usize>,
        },
        Replace(ModemStatus),
    }

    fn arb_ops() -> impl proptest::strategy::Strategy<Value = Vec<Op>> {
        let advance = prop_oneof![
            4 => 0u64..2_000,
            3 => 0u64..120_000,
            2 => 0u64..7_200_000,
            1 => 0u64..4 * 86_400_000,
        ];
        let select = (
            advance,
            1u32..5,
            0..TOS.len(),
            proptest::option::weighted(0.1, 0..ICCIDS.len()),
            proptest::collection::vec(0..ICCIDS.len(), 0..2),
        )
            .prop_map(|(advance_ms, parts, to, pinned, avoid)| Op::Select {
                advance_ms,
                parts,
                to,
                pinned,
                avoid,
            });
        let op = prop_oneof![
            9 => select,
            1 => (0usize..5).prop_flat_map(arb_modem).prop_map(Op::Replace),
        ];
        proptest::collection::vec(op, 1..60)
    }

    /// Start times spread over 2023-2025 so month ends of every length come up.
    fn arb_start() -> impl proptest::strategy::Strategy<Value = SystemTime> {
        (FEB_2023..JAN_2025, 0u64..1000).prop_map(|(s, m)| at(s) + ms(m))
    }

    // ---- the oracle: its own send log and a naive calendar ----

    fn naive_month(unix: u64) -> (i64, u32) {
        let mut days = (unix / 86_400) as i64;
        let mut y = 1970;
        loop {
            let len = if naive_month_days(y, 2) == 29 {
                366
            } else {
                365
            };
            if days < len {
                break;
            }
            days -= len;
            y += 1;
        }
        let mut m = 1;
        while days >= naive_month_days(y, m) {
            days -= naive_month_days(y, m);
            m += 1;
        }
        (y, m)
    }

    fn same_window(w: Window, a: SystemTime, b: SystemTime) -> bool {
        let (a, b) = (unix_secs(a) as u64, unix_secs(b) as u64);
        match w {
            Window::Minute => a / 60 == b / 60,
            Window::Hour => a / 3600 == b / 3600,
            Window::Day => a / 86_400 == b / 86_400,
            Window::Month => naive_month(a) == naive_month(b),
        }
    }

    #[derive(Default)]
    struct Oracle {
        sends: Vec<(String, SystemTime, u32)>,
    }

    impl Oracle {
        fn limits(cfg: &PoolConfig, iccid: &str) -> QuotaLimits {
            cfg.sims
                .iter()
                .find(|s| s.iccid == iccid)
                .map_or(cfg.quota, |s| s.quota.or(cfg.quota))
        }

        fn healthy(cfg: &PoolConfig, m: &ModemStatus) -> bool {
            let sim_on = m.iccid.as_deref().is_none_or(|i| {
                cfg.sims
                    .iter()
                    .find(|s| s.iccid == i)
                    .is_none_or(|s| s.enabled)
            });
            m.enabled
                && m.quarantined.is_none()
                && m.sim_ready
                && m.iccid.is_some()
                && sim_on
                && (m.registration == Some(Registration::Home)
                    || (m.registration == Some(Registration::Roaming) && cfg.allow_roaming))
                && m.signal_dbm.is_none_or(|d| d >= -107)
        }

        fn can_send(&self, cfg: &PoolConfig, iccid: &str, parts: u32, now: SystemTime) -> bool {
            let limits = Self::limits(cfg, iccid);
            let mine = || self.sends.iter().filter(|s| s.0 == iccid);
            for w in Window::ALL {
                if let Some(limit) = limits.get(w) {
                    let used: u32 = mine()
                        .filter(|s| same_window(w, s.1, now))
                        .map(|s| s.2)
                        .sum();
                    if used + parts > limit {
                        return false;
                    }
                }
            }
            let interval = cfg
                .sims
                .iter()
                .find(|s| s.iccid == iccid)
                .and_then(|s| s.min_interval_ms)
                .unwrap_or(cfg.min_interval_ms);
            mine().all(|s| s.1 + ms(interval) <= now)
        }

        fn check_log(&self, cfg: &PoolConfig) -> Result<(), String> {
            for (i, (iccid, t, _)) in self.sends.iter().enumerate() {
                let limits = Self::limits(cfg, iccid);
                for w in Window::ALL {
                    if let Some(limit) = limits.get(w) {
                        let used: u32 = self.sends[..=i]
                            .iter()
                            .filter(|s| &s.0 == iccid && same_window(w, s.1, *t))
                            .map(|s| s.2)
                            .sum();
                        if used > limit {
                            return Err(format!("{iccid} {w}: {used} > {limit} at {t:?}"));
                        }
                    }
                }
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every chosen modem is healthy and, per the oracle's own log, within its quotas
        /// and minimum interval; a pinned request gets only its SIM; over the whole run no
        /// SIM exceeds a quota in any calendar window.
        #[test]
        fn select_never_picks_an_ineligible_modem_nor_exceeds_quotas(
            cfg in arb_config(),
            modems in arb_modems(),
            start in arb_start(),
            ops in arb_ops(),
        ) {
            let mut p = pool_with(cfg.clone(), modems);
            let mut oracle = Oracle::default();
            let mut now = start;
            for op in ops {
                match op {
                    Op::Replace(m) => p.update_modem(m),
                    Op::Select { advance_ms, parts, to, pinned, avoid } => {
                        now += ms(advance_ms);
                        let avoid: Vec<String> = avoid.iter().map(|&i| ICCIDS[i].to_owned()).collect();
                        let req = SelectRequest {
                            to: TOS[to],
                            parts,
                            pinned_sim: pinned.map(|i| ICCIDS[i]),
                            avoid: &avoid,
                        };
                        let before = p.clone();
                        match p.select(&req, now) {
                            Selection::Chosen(c) => {
                                let m = before.modem(&c.modem).expect("chosen modem exists");
                                prop_assert_eq!(m.iccid.as_deref(), Some(c.iccid.as_str()));
                                prop_assert!(Oracle::healthy(&cfg, m), "unhealthy {:?}", m);
                                prop_assert!(oracle.can_send(&cfg, &c.iccid, parts, now),
                                    "{} over quota or interval at {:?}", c.iccid, now);
                                if let Some(pin) = req.pinned_sim {
                                    prop_assert_eq!(c.iccid.as_str(), pin);
                                }
                                if c.reused_avoided {
                                    prop_assert!(avoid.contains(&c.iccid));
                                } else {
                                    prop_assert!(req.pinned_sim.is_some() || !avoid.contains(&c.iccid));
                                }
                                oracle.sends.push((c.iccid, now, parts));
                            }
                            Selection::WaitUntil(t) => prop_assert!(t > now),
                            Selection::Unavailable(_) => {}
                        }
                    }
                }
            }
            if let Err(e) = oracle.check_log(&cfg) {
                prop_assert!(false, "{}", e);
            }
        }

        /// WaitUntil(t) is in the future, nothing is free an instant before t, and at t
        /// (with no other change) a SIM really is free and is chosen.
        #[test]
        fn wait_until_is_exact(
            cfg in arb_config(),
            modems in arb_modems(),
            start in arb_start(),
            ops in arb_ops(),
        ) {
            let mut p = pool_with(cfg, modems);
            let mut now = start;
            let mut waits = 0;
            for op in ops {
                match op {
                    Op::Replace(m) => p.update_modem(m),
                    Op::Select { advance_ms, parts, to, pinned, avoid } => {
                        now += ms(advance_ms);
                        let avoid: Vec<String> = avoid.iter().map(|&i| ICCIDS[i].to_owned()).collect();
                        let req = SelectRequest {
                            to: TOS[to],
                            parts,
                            pinned_sim: pinned.map(|i| ICCIDS[i]),
                            avoid: &avoid,
                        };
                        if let Selection::WaitUntil(t) = p.select(&req, now) {
                            waits += 1;
                            prop_assert!(t > now);
                            let just_before = t - Duration::from_nanos(1);
                            if just_before > now {
                                let early = p.clone().select(&req, just_before);
                                prop_assert_eq!(early, Selection::WaitUntil(t));
                            }
                            let mut q = p.clone();
                            let at_t = q.select(&req, t);
                            prop_assert!(matches!(at_t, Selection::Chosen(_)), "at {:?}: {:?}", t, at_t);
                        }
                    }
                }
            }
            let _ = waits;
        }
    }
}

#[test]
fn in_flight_limit_makes_a_busy_modem_wait() {
    let mut p = Pool::new(PoolConfig::default()).expect("valid config");
    p.update_modem(modem("A", "111"));
    p.update_modem(modem("B", "222"));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let first = p.select(&SelectRequest::new("+491701", 1), now);
    let second = p.select(&SelectRequest::new("+491702", 1), now);
    let (Selection::Chosen(a), Selection::Chosen(b)) = (first, second) else {
        panic!("two idle modems take two messages")
    };
    assert_ne!(a.modem, b.modem);
    match p.select(&SelectRequest::new("+491703", 1), now) {
        Selection::Unavailable(NoCandidate::AllIneligible(r)) => {
            assert!(
                r.iter()
                    .all(|(_, why)| matches!(why, Ineligible::Sending { .. })),
                "{r:?}"
            );
        }
        other => panic!("both modems are sending: {other:?}"),
    }
    // The first send finishes: its modem takes the next message.
    p.update_modem(modem(&a.modem, &a.iccid));
    match p.select(
        &SelectRequest::new("+491703", 1),
        now + Duration::from_secs(1),
    ) {
        Selection::Chosen(c) => assert_eq!(c.modem, a.modem),
        other => panic!("{other:?}"),
    }
}
