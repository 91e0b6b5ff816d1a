//! Fuzz the PDU decoder: arbitrary octets must give `Ok` or `Err`, never a panic, and
//! whatever decodes and re-encodes must decode again.
#![no_main]

use gsmgw::pdu;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if let Ok(p) = pdu::decode(rest, flags & 1 == 1) {
        if let pdu::Tpdu::Deliver(d) = &p.tpdu {
            let _ = d.user_data.text();
        }
        if let Ok(again) = p.encode() {
            assert!(pdu::decode(&again.bytes, true).is_ok(), "re-encoded PDU does not decode");
        }
    }
    if let Ok(s) = std::str::from_utf8(rest) {
        let _ = pdu::decode_hex(s, flags & 2 == 2);
        let _ = pdu::plan(s, &pdu::PlanOptions::default());
    }
});
