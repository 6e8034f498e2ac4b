//! Fuzzes the loader of zone text that comes through ZooKeeper (snapshots, human zones): any
//! text, compiled as every server compiles a snapshot. It must return a zone or an error,
//! never panic, never read a file (`$INCLUDE` is refused before parsing), and never take
//! quadratic time in one RRset (refused past 4,096 records by the pre-scan); run with
//! `-timeout=2` so a slow input is reported.
//!
//! Run: `cd fuzz && cargo fuzz run zone_text -- -timeout=2` (see docs/testing.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let _ = geodns_zone::Zone::from_text("internal.example", text, "fuzz");
});
