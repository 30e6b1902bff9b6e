//! Arbitrary bytes as ring-buffer items, decoded with the layouts of Linux 6.1 and 6.18:
//! an error, an event or a socket's release, never a panic.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rsttrace::{
    decode::{Decoder, RecordFields},
    tracefs::parse_format,
};
use rsttrace_common::EventKind;

macro_rules! formats {
    ($kernel:literal) => {
        [
            include_str!(concat!("../../testdata/kernels/", $kernel, "/tcp/tcp_send_reset.format")),
            include_str!(concat!("../../testdata/kernels/", $kernel, "/tcp/tcp_receive_reset.format")),
            include_str!(concat!("../../testdata/kernels/", $kernel, "/sock/inet_sock_set_state.format")),
            include_str!(concat!("../../testdata/kernels/", $kernel, "/sock/inet_sk_error_report.format")),
        ]
    };
}

fn decoder(texts: [&str; EventKind::COUNT]) -> Decoder {
    Decoder::new(texts.map(|t| Some(RecordFields::from_format(&parse_format(t).unwrap()))))
}

fn decoders() -> &'static [Decoder; 2] {
    static DECODERS: OnceLock<[Decoder; 2]> = OnceLock::new();
    DECODERS.get_or_init(|| [decoder(formats!("6.1.176-debian-cloud")), decoder(formats!("6.18.44-host"))])
}

fuzz_target!(|data: &[u8]| {
    for decoder in decoders() {
        let _ = decoder.decode_item(data);
    }
});
