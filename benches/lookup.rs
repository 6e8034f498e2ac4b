//! Map lookup and end-to-end query answering, in memory.
//!
//! - `lookup/1m`: `AnswerTable::lookup` on a table built from 1M synthetic prefixes (IPv4 and
//!   IPv6, nested), random addresses.
//! - `respond/geo_ecs` and `respond/geo_noecs`: `responder::respond` on a geo query (with an ECS
//!   /24, and without EDNS), from a dataset loaded through the real loader; the same work a UDP
//!   worker does per packet, minus the syscalls.
//!
//! Run: `cargo bench --bench lookup`. Figures go to docs/perf.md.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use geodns_server::dataset::Dataset;
use geodns_server::metrics::Metrics;
use geodns_server::responder::{respond, Transport};
use geodns_server::served::Served;
use geomap::{AnswerTable, Derivation, KeySpace, Map, MapMeta, MapRow, PopTable};

/// xorshift64: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn synthetic_map(n: usize) -> Map {
    let ids = ["ams", "iad", "sin", "fra", "lax", "gru", "nrt", "syd"];
    let pops = PopTable::from_ids(&ids).unwrap();
    let mut rng = Rng(0x5eed);
    let mut seen = std::collections::HashSet::new();
    let mut rows = Vec::with_capacity(n);
    while rows.len() < n {
        let r = rng.next();
        let prefix: ipnet::IpNet = if r % 100 < 85 {
            let len = [12u8, 16, 18, 20, 22, 24, 24, 24, 24, 24][(r >> 8) as usize % 10];
            ipnet::Ipv4Net::new(Ipv4Addr::from((rng.next() >> 32) as u32), len)
                .unwrap()
                .trunc()
                .into()
        } else {
            let len = [32u8, 40, 44, 48, 48][(r >> 8) as usize % 5];
            let bits = (0x2000u128 << 112) | ((rng.next() as u128) << 61);
            ipnet::Ipv6Net::new(Ipv6Addr::from(bits), len)
                .unwrap()
                .trunc()
                .into()
        };
        if !seen.insert(prefix) {
            continue;
        }
        let a = (r >> 16) as u16 % 8;
        let b = (a + 1 + (r >> 24) as u16 % 7) % 8;
        rows.push(MapRow {
            key_space: KeySpace::Client,
            prefix,
            pops: vec![a, b],
            rtt_ms: vec![Some(10.0), Some(20.0)],
            samples: 10,
            derivation: Derivation::Measured,
            own_share: Vec::new(),
        });
    }
    Map {
        meta: MapMeta {
            generation: "bench".into(),
            created_at: "2026-11-26T00:00:00Z".into(),
            source_from: None,
            source_until: None,
            pops,
        },
        rows,
    }
}

fn lookup(c: &mut Criterion) {
    let map = synthetic_map(1_000_000);
    let t0 = std::time::Instant::now();
    let table = AnswerTable::build(&map, Some(&[0, 1]));
    eprintln!(
        "built 1M-prefix table in {:.2?}: {} leaves, {} lists",
        t0.elapsed(),
        table.leaf_count(KeySpace::Client),
        table.list_count()
    );
    let mut rng = Rng(42);
    let addrs: Vec<IpAddr> = (0..4096)
        .map(|i| {
            if i % 8 == 0 {
                IpAddr::V6(Ipv6Addr::from(
                    (0x2000u128 << 112) | ((rng.next() as u128) << 61),
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from((rng.next() >> 32) as u32))
            }
        })
        .collect();
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(addrs.len() as u64));
    g.bench_function("1m", |b| {
        b.iter(|| {
            let mut scope_sum = 0u32;
            for a in &addrs {
                scope_sum += table.lookup(KeySpace::Client, black_box(*a)).scope as u32;
            }
            scope_sum
        })
    });
    g.finish();
}

fn query(name: &str, ecs: Option<[u8; 3]>) -> Vec<u8> {
    let mut q = vec![
        0x12,
        0x34,
        0x01,
        0x00,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        ecs.is_some() as u8,
    ];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    if let Some(a) = ecs {
        q.extend_from_slice(&[
            0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, 24, 0,
        ]);
        q.extend_from_slice(&a);
    }
    q
}

fn respond_bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    for f in ["example.com.zone", "geodns.toml"] {
        std::fs::copy(data.join(f), dir.path().join(f)).unwrap();
    }
    // The example config, with the 1M-prefix map (PoP ids re-used from the example).
    let mut map = synthetic_map(1_000_000);
    let ids = ["ams", "iad", "sin"];
    map.meta.pops = PopTable::from_ids(&ids).unwrap();
    for r in &mut map.rows {
        r.pops = vec![r.pops[0] % 3, (r.pops[0] % 3 + 1) % 3];
    }
    geomap::write_map(&dir.path().join("example-map.arrow"), &map).unwrap();
    let metrics = Metrics::default();
    let t0 = std::time::Instant::now();
    let ds = Arc::new(Dataset::load(&dir.path().join("geodns.toml"), &metrics).unwrap());
    eprintln!("loaded dataset with a 1M-row map in {:.2?}", t0.elapsed());
    let snap = Served::new(ds, &Default::default(), None, Default::default());
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    let mut out = Vec::with_capacity(4096);
    let mut rng = Rng(7);
    let ecs_queries: Vec<Vec<u8>> = (0..1024)
        .map(|_| {
            let r = rng.next();
            query(
                "www.example.com",
                Some([(r >> 8) as u8 | 1, (r >> 16) as u8, (r >> 24) as u8]),
            )
        })
        .collect();
    let plain = query("www.example.com", None);
    let mut g = c.benchmark_group("respond");
    g.throughput(Throughput::Elements(ecs_queries.len() as u64));
    g.bench_function("geo_ecs", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for q in &ecs_queries {
                respond(&snap, black_box(q), src, Transport::Udp, &mut out);
                n += out.len();
            }
            n
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("geo_noecs", |b| {
        b.iter(|| {
            respond(&snap, black_box(&plain), src, Transport::Udp, &mut out);
            out.len()
        })
    });
    // The same answer through response rate limiting, from 1024 client prefixes, none over
    // the rate: what RRL adds to a query when nobody is limited.
    let limiter = geodns_server::rrl::Limiter::new(&geodns_server::config::Rrl {
        responses_per_second: 10_000,
        ..Default::default()
    })
    .unwrap();
    let clients: Vec<IpAddr> = (0..1024u32)
        .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8))))
        .collect();
    let mut second = 0u64;
    g.throughput(Throughput::Elements(clients.len() as u64));
    g.bench_function("geo_noecs_rrl_x1024", |b| {
        b.iter(|| {
            second += 1;
            let mut sent = 0usize;
            for c in &clients {
                respond(&snap, black_box(&plain), *c, Transport::Udp, &mut out);
                if limiter.check(*c, &out, second) == geodns_server::rrl::Verdict::Send {
                    sent += out.len();
                }
            }
            sent
        })
    });
    g.bench_function("geo_noecs_x1024", |b| {
        b.iter(|| {
            let mut sent = 0usize;
            for c in &clients {
                respond(&snap, black_box(&plain), *c, Transport::Udp, &mut out);
                sent += out.len();
            }
            sent
        })
    });
    g.finish();
}

criterion_group!(benches, lookup, respond_bench);
criterion_main!(benches);
