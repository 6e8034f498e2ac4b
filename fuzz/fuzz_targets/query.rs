//! Fuzzes the whole query path: any packet, from any source, over UDP or TCP, against the
//! example dataset. The responder must never panic, and every response it writes must be a
//! well-formed DNS header that echoes the query id and fits the transport.
//!
//! Run: `cd fuzz && cargo fuzz run query` (see docs/testing.md).
#![no_main]

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use geodns_server::dataset::Dataset;
use geodns_server::served::Served;
use geodns_server::metrics::Metrics;
use geodns_server::responder::{respond, Transport};
use libfuzzer_sys::fuzz_target;

fn snapshot() -> &'static Served {
    static SNAP: OnceLock<Served> = OnceLock::new();
    SNAP.get_or_init(|| {
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/geodns.toml");
        let data = Dataset::load(&config, &Metrics::default()).expect("example dataset loads");
        Served::new(Arc::new(data), &Default::default(), None, Default::default())
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, packet)) = input.split_first() else { return };
    let transport = if selector & 1 == 0 { Transport::Udp } else { Transport::Tcp };
    let src: IpAddr = if selector & 2 == 0 { "127.0.0.1".parse().unwrap() } else { "2001:db8::7".parse().unwrap() };
    let mut out = Vec::new();
    respond(snapshot(), packet, src, transport, &mut out);
    if out.is_empty() {
        return;
    }
    assert!(out.len() >= 12, "response shorter than a header");
    assert_eq!(&out[..2], &packet[..2], "id not echoed");
    assert_eq!(out[2] & 0x80, 0x80, "QR not set");
    let limit = if transport == Transport::Udp { 1232 } else { 65535 };
    assert!(out.len() <= limit, "{} bytes over {:?}", out.len(), transport);
});
