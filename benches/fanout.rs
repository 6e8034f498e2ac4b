//! Internal-zone snapshots at scale, against a running ZooKeeper (see docs/perf.md):
//!
//! - `fanout CONNECT N [JITTER_MS]`: N followers (the server's own `Follower`, each with its
//!   own session, in this one process) watch the pointer; one new version is published; prints
//!   how long until the first, the median and the last follower had it, and the ensemble's
//!   `mntr` figures (connections, watches, latency).
//! - `publish CONNECT RECORDS`: publishes one snapshot of RECORDS A records (one zone,
//!   `internal.example`), for timing a server's load of it.
//!
//! Run: `cargo bench --bench fanout -- fanout 127.0.0.1:2181 500`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use geodns_snapshot::format::FORMAT;
use geodns_snapshot::{store, Follower, FollowerConfig, Layout, Snapshot, ZoneText};
use zookeeper_client as zk;

fn snapshot(version: u64, records: usize) -> Snapshot {
    let mut text = format!(
        "$ORIGIN internal.example.\ninternal.example. 60 IN SOA ns1.internal.example. h.internal.example. {} 3600 600 604800 30\ninternal.example. 60 IN NS ns1.internal.example.\n",
        version as u32
    );
    for i in 0..records {
        text.push_str(&format!(
            "host{i}.r{}.internal.example. 60 IN A 10.{}.{}.{}\n",
            i % 100,
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255
        ));
    }
    Snapshot {
        format: FORMAT,
        version,
        created_at: "2026-11-26T00:00:00Z".into(),
        zones: vec![ZoneText {
            origin: "internal.example".into(),
            text,
        }],
    }
}

async fn publish_next(connect: &str, layout: &Layout, records: usize) -> u64 {
    let client = zk::Client::connect(connect).await.expect("connect");
    let (version, expected) = match store::read_pointer(&client, layout).await.unwrap() {
        Some((p, v)) => (p.version + 1, Some(v)),
        None => (1, None),
    };
    let p = store::publish(
        &client,
        layout,
        &snapshot(version, records),
        expected,
        None,
        None,
        false,
    )
    .await
    .expect("publish");
    eprintln!(
        "published version {version}: {} bytes in {} chunk(s)",
        p.size, p.chunks
    );
    version
}

fn mntr(connect: &str) -> String {
    use std::io::{Read, Write};
    let addr = connect.split(',').next().unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"mntr").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines()
        .filter(|l| {
            [
                "zk_num_alive_connections",
                "zk_watch_count",
                "zk_avg_latency",
                "zk_max_latency",
                "zk_outstanding_requests",
                "zk_packets_received",
                "zk_packets_sent",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn fanout(connect: String, n: usize, jitter_ms: u64) {
    let layout = Layout::new("/geodns-bench").unwrap();
    let first = publish_next(&connect, &layout, 100).await;
    let dir = std::env::temp_dir().join(format!("geodns-fanout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seen: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    for i in 0..n {
        let seen = seen.clone();
        let cfg = FollowerConfig {
            zk: geodns_snapshot::ZkSettings {
                connect: connect.clone(),
                root: layout.root().to_owned(),
                session_timeout_ms: 10_000,
                password_file: None,
                user: None,
            },
            cache: dir.join(format!("{i}.json")),
            jitter: Duration::from_millis(jitter_ms),
            recheck: Duration::from_secs(30),
            trust: Default::default(),
        };
        let apply: geodns_snapshot::Apply = Arc::new(move |s: &Snapshot| {
            seen.lock().unwrap().push((s.version, Instant::now()));
            Ok(())
        });
        tokio::spawn(Follower::new(cfg, apply).run(None));
    }
    let count = |v: u64| seen.lock().unwrap().iter().filter(|(x, _)| *x == v).count();
    while count(first) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "{n} followers connected and on version {first} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    eprintln!("before: {}", mntr(&connect));
    let t0 = Instant::now();
    let next = publish_next(&connect, &layout, 100).await;
    while count(next) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut times: Vec<f64> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(v, _)| *v == next)
        .map(|(_, t)| t.duration_since(t0).as_secs_f64() * 1000.0)
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "fanout n={n} jitter_ms={jitter_ms}: first {:.0} ms, median {:.0} ms, p99 {:.0} ms, all {:.0} ms",
        times[0],
        times[n / 2],
        times[(n * 99 / 100).min(n - 1)],
        times[n - 1]
    );
    println!("after: {}", mntr(&connect));
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["fanout", connect, n] => rt.block_on(fanout(connect.into(), n.parse().unwrap(), 500)),
        ["fanout", connect, n, j] => rt.block_on(fanout(
            connect.into(),
            n.parse().unwrap(),
            j.parse().unwrap(),
        )),
        ["publish", connect, records] => {
            let layout = Layout::new("/geodns").unwrap();
            rt.block_on(publish_next(connect, &layout, records.parse().unwrap()));
        }
        _ => eprintln!(
            "usage: fanout CONNECT N [JITTER_MS] | publish CONNECT RECORDS (see the source)"
        ),
    }
}
