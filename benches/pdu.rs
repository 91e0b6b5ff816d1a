//! PDU codec benchmarks (placeholder body filled below).
fn main() {}
