//! PDU codec benchmarks: single-part encode, plan + encode of a long emoji text, and
//! DELIVER decode. Targets and results: docs/benchmarks.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gsmgw::pdu::{self, Address, SubmitOptions};
use std::hint::black_box;

fn benches(c: &mut Criterion) {
    let opts = SubmitOptions::new(Address::parse("+491701234567").expect("valid number"));
    let sms160: String = "Your order 48213 has shipped and will arrive on Tuesday. Track it at example.com/t/48213 - reply STOP to opt out. Thank you for shopping with us!!!!"
        .chars()
        .cycle()
        .take(160)
        .collect();
    let mut g = c.benchmark_group("pdu");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_submit_gsm7_160", |b| {
        b.iter(|| pdu::encode_submit(black_box(&sms160), &opts).expect("encodes"))
    });

    let long: String = "Hi 👋🏽 your parcel 📦 is on its way 🚚🇩🇪 — see you soon! "
        .chars()
        .cycle()
        .take(1000)
        .collect();
    g.bench_function("plan_and_encode_1000_chars_emoji", |b| {
        b.iter(|| pdu::encode_submit(black_box(&long), &opts).expect("encodes"))
    });
    g.bench_function("plan_only_1000_chars_emoji", |b| {
        b.iter(|| pdu::plan(black_box(&long), &opts.plan))
    });

    let deliver = pdu::hex::decode(
        "07919471010670F0040C9194711032547600006211720100500099D9775D0E1ABFC965507A0EA2E164B9D80C",
    )
    .unwrap_or_default();
    let deliver = if pdu::decode(&deliver, true).is_ok() {
        deliver
    } else {
        // Fall back to the classic vector if the one above is ever edited wrongly.
        pdu::hex::decode("07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37")
            .expect("hex")
    };
    let deliver160 = {
        use pdu::*;
        let p = Pdu {
            smsc: Some(Address::parse("+491710760000").expect("valid")),
            tpdu: Tpdu::Deliver(Deliver {
                more_messages: false,
                loop_prevention: false,
                status_report_indication: false,
                reply_path: false,
                originator: Address::parse("+491701234567").expect("valid"),
                pid: 0,
                dcs: Dcs::new(Alphabet::Gsm7, None),
                timestamp: Timestamp {
                    year: 2026,
                    month: 11,
                    day: 27,
                    hour: 10,
                    minute: 0,
                    second: 5,
                    tz_quarters: 4,
                },
                user_data: UserData {
                    header: None,
                    payload: {
                        let mut s = Vec::new();
                        Gsm7Tables::DEFAULT
                            .encode_str(&sms160, &mut s)
                            .expect("gsm7");
                        Payload::Gsm7(s)
                    },
                },
            }),
        };
        p.encode().expect("encodes").bytes
    };
    g.bench_function("decode_deliver_short", |b| {
        b.iter(|| pdu::decode(black_box(&deliver), true).expect("decodes"))
    });
    g.bench_function("decode_deliver_gsm7_160_with_text", |b| {
        b.iter(|| {
            let p = pdu::decode(black_box(&deliver160), true).expect("decodes");
            match p.tpdu {
                pdu::Tpdu::Deliver(d) => d.user_data.text(),
                _ => None,
            }
        })
    });
    g.finish();
}

criterion_group!(pdu_benches, benches);
criterion_main!(pdu_benches);
