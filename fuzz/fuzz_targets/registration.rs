//! Fuzzes a registration node's data as the presenter reads it: any bytes. It must return a
//! valid registration (within its limits) or an error, never panic, and refuse anything over
//! 16 KiB before parsing.
//!
//! Run: `cd fuzz && cargo fuzz run registration` (see docs/testing.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(r) = geodns_register::Registration::parse(input) {
        assert!(input.len() <= geodns_register::MAX_REGISTRATION_BYTES);
        assert!(r.validate().is_ok());
        assert!(r.addresses.len() <= geodns_register::MAX_ADDRESSES);
    }
});
