//! What a server spends taking one version of a 100,000-record internal zone as a delta
//! (issue 24's goal: under 5 ms of CPU for a one-record change), against compiling it whole:
//!
//! - `delta/one_record_100k`: a host leaves or comes back (one A record removed or added): the
//!   sealed delta checked (checksum and Ed25519 signature), applied to the parts (state
//!   checked), and the compiled zones patched ([`Internal::patched`]), as the follower and the
//!   server do for each version;
//! - `delta/ten_records_100k`: ten hosts at once;
//! - `delta/whole_100k`: the same version compiled whole, as before deltas.
//!
//! Single-threaded, so the time is the CPU time. Run: `cargo bench --bench delta`. Figures go
//! to docs/perf.md.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use geodns_server::internal::Internal;
use geodns_snapshot::delta::{Delta, Zones};
use geodns_snapshot::{SigningKey, Trust};

#[path = "common/robots.rs"]
mod robots;
use robots::{body, toggle, ORIGIN};

const RECORDS: u32 = 100_000;

/// `n` deltas after `zones`, each changing `width` hosts (leaving if there, back if not),
/// sealed and signed as the presenter publishes them.
fn chain(zones: &Zones, n: u64, width: u32, key: &SigningKey) -> Vec<Vec<u8>> {
    let mut scratch = zones.clone();
    let mut gone = BTreeSet::new();
    (0..n)
        .map(|i| {
            let change = toggle(
                &mut gone,
                (0..width)
                    .map(|k| ((i * 7919 + u64::from(k) * 104_729) % u64::from(RECORDS)) as u32),
            );
            let v = scratch.version() + 1;
            let d = scratch
                .delta(
                    v,
                    "2026-12-06T00:00:00Z".into(),
                    vec![ORIGIN.into()],
                    vec![change],
                )
                .unwrap();
            scratch.apply(&d).unwrap();
            d.sealed(Some(key))
        })
        .collect()
}

fn delta(c: &mut Criterion) {
    let (_, key) = SigningKey::generate().unwrap();
    let trust = Trust::new(vec![key.public()]);
    let zones = Zones::new(1, "2026-12-06T00:00:00Z".into(), vec![body(RECORDS)]);
    let snap = zones.to_snapshot();
    let allowed = vec![ORIGIN.to_owned()];
    let mut g = c.benchmark_group("delta");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for (name, width) in [("one_record_100k", 1), ("ten_records_100k", 10)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let sealed = chain(&zones, iters, width, &key);
                let mut parts = zones.clone();
                let mut served = Internal::whole(&snap, Some(&zones), &[], &allowed).unwrap();
                let t = Instant::now();
                for bytes in &sealed {
                    let v = parts.version() + 1;
                    let d = Delta::unseal(v, bytes, &trust).unwrap();
                    parts.apply(&d).unwrap();
                    served = served
                        .patched(std::slice::from_ref(&d), &parts, &[], &allowed)
                        .unwrap();
                }
                let spent = t.elapsed();
                black_box(served);
                spent
            })
        });
    }
    g.bench_function("whole_100k", |b| {
        b.iter(|| Internal::whole(black_box(&snap), Some(&zones), &[], &allowed).unwrap())
    });
    g.finish();
}

criterion_group!(benches, delta);
criterion_main!(benches);
