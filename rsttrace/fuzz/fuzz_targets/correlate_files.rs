//! Arbitrary bytes as two ends' JSON Lines files (split at the first 0xff byte, which JSON text
//! never holds): an error or a correlation in both output forms, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (a, b) = match data.iter().position(|&byte| byte == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    for json in [false, true] {
        let mut out = Vec::new();
        let _ = rsttrace::correlate::correlate_bytes(&[("a.json", a), ("b.json", b)], json, &mut out);
    }
});
