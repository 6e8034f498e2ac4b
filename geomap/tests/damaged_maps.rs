//! Every single-bit flip and every truncation of a real map file is refused with a message, and
//! none makes the reader allocate more than a small multiple of the file's size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Counts live and peak heap bytes, so the test sees what a damaged length would make the
/// reader allocate.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn example() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/example-map.arrow");
    std::fs::read(path).expect("data/example-map.arrow")
}

/// Reads `bytes` and returns the error message and the peak heap growth during the read.
fn read(bytes: Vec<u8>) -> (Result<geomap::Map, String>, usize) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let out = geomap::decode_map(bytes).map_err(|e| e.to_string());
    (out, PEAK.load(Relaxed) - base)
}

/// One test, not several: the allocation counters are global and tests run in parallel.
#[test]
fn every_single_bit_flip_and_truncation_is_refused_without_a_large_allocation() {
    let good = example();
    let len = good.len();
    let (ok, good_peak) = read(good.clone());
    let original = ok.expect("the example map reads");
    // Reading the good file costs its fixed overheads (PoP table, checksum, rows); a damaged
    // file may cost that and a few copies of itself, never what a length inside it claims.
    let bound = 2 * good_peak + 16 * len;
    let footer_len = i32::from_le_bytes(good[len - 10..len - 6].try_into().unwrap()) as usize;
    let footer_start = len - 10 - footer_len;
    let mut accepted = Vec::new();
    let mut worst = (0, 0, 0);
    for i in 0..len {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[i] ^= 1 << bit;
            let (out, peak) = read(bad);
            if peak > worst.0 {
                worst = (peak, i, bit);
            }
            match out {
                Err(msg) => assert!(!msg.is_empty()),
                Ok(map) => accepted.push((i, bit, map == original)),
            }
        }
    }
    assert!(
        worst.0 <= bound,
        "flipping bit {} of byte {} made the reader allocate {} bytes (a good read: {good_peak})",
        worst.2,
        worst.1,
        worst.0
    );
    // Every byte before the footer is covered by the stream digest, and every field of the
    // footer that a reader uses is checked against that stream; what is left are footer bytes
    // no reader reads (flatbuffer padding, struct padding), which cannot change the map.
    let in_stream: Vec<_> = accepted.iter().filter(|a| a.0 < footer_start).collect();
    assert!(
        in_stream.is_empty(),
        "flips before the footer were accepted (byte, bit, same rows): {in_stream:?}"
    );
    let changed: Vec<_> = accepted.iter().filter(|a| !a.2).collect();
    assert!(
        changed.is_empty(),
        "flips changed the map's rows and were accepted: {changed:?}"
    );
    assert!(
        accepted.len() * 20 < len * 8,
        "{} of {} flips accepted: more than the footer's unread bytes",
        accepted.len(),
        len * 8
    );
    eprintln!(
        "{} of {} single-bit flips accepted, all in the footer's unread bytes, all the same map",
        accepted.len(),
        len * 8
    );
    for n in 0..len {
        let (out, peak) = read(good[..n].to_vec());
        assert!(out.is_err(), "the first {n} bytes were accepted as a map");
        assert!(
            peak <= bound,
            "a truncation to {n} bytes allocated {peak} bytes"
        );
    }
}
