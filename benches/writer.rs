//! The beacon log writer: rows/s from `try_log_one` to fsynced Parquet files.
//!
//! Each iteration queues 200k dns_probe rows (as the DNS server does) and flushes them; the
//! time covers queueing, Arrow batch building, Parquet encoding (snappy), fsync and rename.
//! Run: `cargo bench --bench writer`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use geodns_beacon::{DnsProbeRow, LogWriter, ProbeId, WriterConfig};

const ROWS: usize = 200_000;

fn writer(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let w = LogWriter::<DnsProbeRow>::start(WriterConfig {
        root: dir.path().into(),
        writer_id: "bench".into(),
        max_rows: 1_000_000,
        max_age: Duration::from_secs(3600),
        queue_rows: ROWS * 2,
        reserve_bytes: None,
    })
    .unwrap();
    let pops: [Arc<str>; 3] = ["ams".into(), "iad".into(), "sin".into()];
    let server: Arc<str> = "bench".into();
    let ids: Vec<ProbeId> = (0..ROWS)
        .map(|i| ProbeId::new(format!("{:016x}", i * 7919).as_bytes()).unwrap())
        .collect();
    let mut g = c.benchmark_group("writer");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("dns_probe_200k", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                for (i, id) in ids.iter().enumerate() {
                    let row = DnsProbeRow {
                        ts: geodns_beacon::writer::now_micros(),
                        probe_id: *id,
                        pop: Some(pops[i % 3].clone()),
                        resolver_ip: std::net::IpAddr::from([127, 10, 0, (i % 5) as u8 + 1]),
                        ecs_subnet: (i % 4 == 0)
                            .then(|| (std::net::IpAddr::from([198, 18, (i % 64) as u8, 0]), 24)),
                        qtype: 1,
                        server: server.clone(),
                    };
                    while w.try_log_one(row.clone()).is_err() {
                        std::thread::yield_now();
                    }
                }
                w.flush();
            }
            t0.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, writer);
criterion_main!(benches);
