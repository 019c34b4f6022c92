//! Feeds arbitrary bytes to the line-protocol parser: it must never panic,
//! and every line it accepts must have a measurement and at least one field.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for line in pond_lineproto::parse_lines(data) {
        if let Ok(l) = line.parsed {
            assert!(!l.measurement.is_empty());
            assert!(!l.fields.is_empty());
            if let Some(ts) = l.timestamp {
                for p in ["ns", "us", "ms", "s", "m", "h", "auto"] {
                    let _ = pond_lineproto::Precision::parse(p).map(|p| p.to_nanos(ts));
                }
            }
        }
    }
});
