//! Arbitrary text as a tracefs format file: an error or a format, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(format) = rsttrace::tracefs::parse_format(&text) {
        let _ = format.record_size();
        let fields = rsttrace::decode::RecordFields::from_format(&format);
        let _ = fields.kernel_layout();
    }
});
