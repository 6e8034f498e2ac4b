//! Compiling zone text as every server compiles an internal-zone snapshot (`Zone::from_text`):
//!
//! - `zone/100k_names`: 100,000 A records at 100,000 names (robots, one address each);
//! - `zone/100k_one_rrset_refused`: 100,000 A records at one name, which no answer can carry:
//!   refused by the linear pre-scan before the parser's quadratic RRset insert runs (issue 20:
//!   40,000 records at one name once took 7 s);
//! - `zone/4000_one_rrset`: the largest A RRset an answer over TCP carries, compiled.
//!
//! Run: `cargo bench --bench zone`. Figures go to docs/perf.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use geodns_zone::Zone;

const HEAD: &str = "$TTL 60\n@ IN SOA ns1 h 1 2 3 4 5\n@ IN NS ns1\nns1 IN A 10.0.0.53\n";

fn text(n: u32, owner: impl Fn(u32) -> String) -> String {
    let mut t = HEAD.to_owned();
    for i in 0..n {
        t.push_str(&format!(
            "{} IN A 10.{}.{}.{}\n",
            owner(i),
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255
        ));
    }
    t
}

fn zone(c: &mut Criterion) {
    let mut g = c.benchmark_group("zone");
    g.sample_size(10);
    let names = text(100_000, |i| format!("h{i}"));
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("100k_names", |b| {
        b.iter(|| Zone::from_text("internal.example", black_box(&names), "bench").unwrap())
    });
    let one = text(100_000, |_| "web".to_owned());
    g.bench_function("100k_one_rrset_refused", |b| {
        b.iter(|| Zone::from_text("internal.example", black_box(&one), "bench").unwrap_err())
    });
    let largest = text(4000, |_| "web".to_owned());
    g.throughput(Throughput::Elements(4000));
    g.bench_function("4000_one_rrset", |b| {
        b.iter(|| Zone::from_text("internal.example", black_box(&largest), "bench").unwrap())
    });
    g.finish();
}

criterion_group!(benches, zone);
criterion_main!(benches);
