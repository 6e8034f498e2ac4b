//! Fuzzes the map reader: any bytes, read as a map file. It must return a map or an error, never
//! panic, and never allocate from a length the file claims (run with `-malloc_limit_mb`, so a
//! large allocation is reported as a crash). A map it accepts must build a lookup table.
//!
//! Run: `cd fuzz && cargo fuzz run map corpus/map -- -malloc_limit_mb=64` (see docs/testing.md);
//! seed `corpus/map` with `data/example-map.arrow`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(map) = geomap::decode_map(input.to_vec()) {
        assert!(map.validate(1).is_empty());
        let _ = geomap::AnswerTable::build(&map, None);
    }
});
