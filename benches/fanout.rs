//! Internal-zone snapshots at scale, against a running ZooKeeper (see docs/perf.md):
//!
//! - `fanout CONNECT N [JITTER_MS]`: N followers (the server's own `Follower`, each with its
//!   own session, in this one process) watch the pointer; one new version is published; prints
//!   how long until the first, the median and the last follower had it, and the ensemble's
//!   `mntr` figures (connections, watches, latency).
//! - `publish CONNECT RECORDS`: publishes one snapshot of RECORDS A records (one zone,
//!   `internal.example`), for timing a server's load of it.
//! - `churn CONNECT FOLLOWERS RECORDS CHANGES_PER_MIN PUBLISH_EVERY_MS SECONDS`: the fleet on
//!   today's whole-snapshot design (issue 24's baseline). FOLLOWERS followers (each its own
//!   session, through an in-process proxy that counts the bytes ZooKeeper sends them) follow a
//!   RECORDS-record zone while a publisher changes CHANGES_PER_MIN records a minute and
//!   publishes every PUBLISH_EVERY_MS (the presenter's `store::publish`, not the presenter
//!   process). Prints ZooKeeper's egress per publication and per minute, the time from each
//!   publication to every follower holding it or a later version (median, p99, max), the
//!   follower CPU per minute (this process's, per follower, plus compiling each version a
//!   follower takes, measured once), then the same for a cold start of 200 followers.
//!
//! - `fleet CONNECT GEODNS_BIN FOLLOWERS HOSTS CHANGES_PER_MIN SECONDS`: issue 24's fleet
//!   simulation with the real `geodns presenter` process: HOSTS registrations in ZooKeeper,
//!   FOLLOWERS followers (deltas, peers), CHANGES_PER_MIN registrations leaving and coming
//!   back; the time from each registration's write to every follower holding its record,
//!   ZooKeeper's egress, the peers' share, follower and presenter CPU, and a cold start of
//!   200 (benches/internal/fleet.sh).
//!
//! Run: `cargo bench --bench fanout -- fanout 127.0.0.1:2181 500`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use geodns_server::internal::Internal;
use geodns_snapshot::delta::{Delta, Zones};
use geodns_snapshot::format::FORMAT;
use geodns_snapshot::peers::PeersConfig;
use geodns_snapshot::store::Publication;

#[path = "common/robots.rs"]
mod robots;
use geodns_snapshot::Pointer;
use geodns_snapshot::{store, Follower, FollowerConfig, Layout, Snapshot, Update, ZoneText};
use robots::{body, toggle, ORIGIN};
use zookeeper_client as zk;

fn snapshot(version: u64, records: usize) -> Snapshot {
    snapshot_with(version, records, 0)
}

/// RECORDS A records; `changed` of them (the first ones) carry an address that differs with
/// the version, as hosts that came and went would.
fn snapshot_with(version: u64, records: usize, changed: usize) -> Snapshot {
    let mut text = format!(
        "$ORIGIN internal.example.\ninternal.example. 60 IN SOA ns1.internal.example. h.internal.example. {} 3600 600 604800 30\ninternal.example. 60 IN NS ns1.internal.example.\n",
        version as u32
    );
    for i in 0..records {
        let last = if i < changed {
            (version % 250) as usize + 1
        } else {
            i & 255
        };
        text.push_str(&format!(
            "host{i}.r{}.internal.example. 60 IN A 10.{}.{}.{}\n",
            i % 100,
            i >> 16 & 255,
            i >> 8 & 255,
            last
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
        &Publication::whole(&snapshot(version, records)),
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
    let dir = bench_dir("fanout");
    std::fs::create_dir_all(&dir).unwrap();
    let started = Instant::now();
    let (seen, _) = start_followers(&connect, &layout, n, &dir, "f", jitter_ms, false).await;
    let count = |v: u64| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(_, x, _)| *x == v)
            .count()
    };
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
        .filter(|(_, v, _)| *v == next)
        .map(|(_, _, t)| t.duration_since(t0).as_secs_f64() * 1000.0)
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

/// Bytes through the counting proxy: ZooKeeper to the followers (`down`) and back (`up`).
#[derive(Default)]
struct Counted {
    down: std::sync::atomic::AtomicU64,
    up: std::sync::atomic::AtomicU64,
}

/// A TCP proxy to `upstream` on an ephemeral loopback port that counts what passes.
async fn counting_proxy(upstream: String, counts: Arc<Counted>) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let c1 = counts.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    c1.down.fetch_add(n as u64, Relaxed);
                }
            });
            let c2 = counts.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    c2.up.fetch_add(n as u64, Relaxed);
                }
            });
        }
    });
    addr
}

/// Where the followers keep their disk caches: `BENCH_DIR` (e.g. /dev/shm, so that thousands
/// of simulated servers sharing one disk do not measure its fsyncs), else the temp directory.
fn bench_dir(tag: &str) -> std::path::PathBuf {
    std::env::var_os("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("geodns-{tag}-{}", std::process::id()))
}

/// This process's CPU time (user and system).
fn cpu_time() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

/// What followers applied: (follower, version, when).
type Seen = Arc<Mutex<Vec<(usize, u64, Instant)>>>;

/// Bytes the followers fetched, by how they took a version (the follower's `Taken` words).
#[derive(Default)]
struct Fetched {
    whole: std::sync::atomic::AtomicU64,
    peer: std::sync::atomic::AtomicU64,
    deltas: std::sync::atomic::AtomicU64,
    peer_versions: std::sync::atomic::AtomicU64,
}

/// Starts `n` followers through `via`, each waiting up to `jitter_ms` before a whole fetch;
/// with `peers`, each serves what it holds on a loopback port of its own and asks three peers
/// before ZooKeeper's chunks.
async fn start_followers(
    via: &str,
    layout: &Layout,
    n: usize,
    dir: &std::path::Path,
    tag: &str,
    jitter_ms: u64,
    peers: bool,
) -> (Seen, Arc<Fetched>) {
    let fleet = Fleet {
        via,
        layout,
        dir,
        jitter_ms,
        peers,
        hook: None,
    };
    fleet.start(n, tag).await
}

/// What a follower was handed, for a bench that looks inside (follower index, update).
type Hook = Arc<dyn Fn(usize, &Update<'_>) + Send + Sync>;

/// How a bench's followers are started.
struct Fleet<'a> {
    via: &'a str,
    layout: &'a Layout,
    dir: &'a std::path::Path,
    jitter_ms: u64,
    peers: bool,
    /// Called with every update each follower takes.
    hook: Option<Hook>,
}

impl Fleet<'_> {
    async fn start(&self, n: usize, tag: &str) -> (Seen, Arc<Fetched>) {
        let Fleet {
            via,
            layout,
            dir,
            jitter_ms,
            peers,
            ref hook,
        } = *self;
        use std::sync::atomic::Ordering::Relaxed;
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let fetched = Arc::new(Fetched::default());
        for i in 0..n {
            let seen = seen.clone();
            let cfg = FollowerConfig {
                zk: geodns_snapshot::ZkSettings {
                    connect: via.to_owned(),
                    root: layout.root().to_owned(),
                    session_timeout_ms: 30_000,
                    password_file: None,
                    user: None,
                },
                cache: dir.join(format!("{tag}{i}.json")),
                jitter: Duration::from_millis(jitter_ms),
                recheck: Duration::from_secs(30),
                trust: Default::default(),
                peers: PeersConfig {
                    listen: peers.then(|| "127.0.0.1:0".parse().unwrap()),
                    advertise: None,
                    fetch_from: if peers { 3 } else { 0 },
                },
            };
            let hook = hook.clone();
            let apply: geodns_snapshot::Apply = Arc::new(move |u: Update<'_>| {
                seen.lock().unwrap().push((i, u.version(), Instant::now()));
                if let Some(h) = &hook {
                    h(i, &u);
                }
                Ok(())
            });
            let f = fetched.clone();
            let taken: geodns_snapshot::Taken = Arc::new(move |how, _, bytes| {
                let counter = match how {
                    "peer" => {
                        f.peer_versions.fetch_add(1, Relaxed);
                        &f.peer
                    }
                    "deltas" => &f.deltas,
                    _ => &f.whole,
                };
                counter.fetch_add(bytes, Relaxed);
            });
            let follower = Follower::new(cfg, apply)
                .on_taken(taken)
                .serve_peers()
                .await
                .expect("a loopback port");
            tokio::spawn(follower.run(None));
        }
        (seen, fetched)
    }
}

/// The time from `at` until every one of `n` followers held `version` or a later one.
fn time_to_all(
    seen: &[(usize, u64, Instant)],
    n: usize,
    version: u64,
    at: Instant,
) -> Option<Duration> {
    let mut first: Vec<Option<Instant>> = vec![None; n];
    for (i, v, t) in seen {
        if *v >= version && first[*i].is_none_or(|f| *t < f) {
            first[*i] = Some(*t);
        }
    }
    first
        .into_iter()
        .map(|t| t.map(|t| t.saturating_duration_since(at)))
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max())
}

fn pct(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// How versions reach the followers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Design {
    /// Before issue 24: every publication whole, every follower fetching it from ZooKeeper.
    Whole,
    /// Deltas beside a whole snapshot every 100 publications, whole snapshots from peers.
    Deltas,
}

/// The publisher: the zone as the presenter holds it (parts), `per_pub` hosts leaving or
/// coming back with each publication, published with the presenter's `store::publish`.
struct Publisher {
    client: zk::Client,
    layout: Layout,
    design: Design,
    zones: Zones,
    pointer: Option<Pointer>,
    gone: std::collections::BTreeSet<u32>,
    records: u32,
    cursor: u64,
}

impl Publisher {
    fn new(
        client: zk::Client,
        layout: Layout,
        design: Design,
        records: u32,
        version: u64,
    ) -> Publisher {
        Publisher {
            client,
            layout,
            design,
            zones: Zones::new(version, now(), vec![body(records)]),
            pointer: None,
            gone: Default::default(),
            records,
            cursor: 0,
        }
    }

    /// The next `changes` hosts leave (or come back), and the version is published.
    async fn publish(&mut self, changes: usize) -> (Pointer, Delta) {
        let records = u64::from(self.records);
        let start = self.cursor;
        self.cursor += changes as u64;
        let change = toggle(
            &mut self.gone,
            (start + 1..=self.cursor).map(|c| (c * 7919 % records) as u32),
        );
        let v = self.zones.version() + 1;
        let d = self
            .zones
            .delta(v, now(), vec![ORIGIN.into()], vec![change])
            .unwrap();
        self.zones.apply(&d).unwrap();
        let snap = self.zones.to_snapshot();
        let state = self.zones.state();
        let publication = match self.design {
            Design::Whole => Publication::whole(&snap),
            Design::Deltas => Publication {
                snap: &snap,
                state: Some(&state),
                delta: Some(&d),
                previous: self.pointer.as_ref(),
                full_every: 100,
            },
        };
        let expected = store::read_pointer(&self.client, &self.layout)
            .await
            .unwrap()
            .map(|(_, s)| s);
        let p = store::publish(
            &self.client,
            &self.layout,
            &publication,
            expected,
            None,
            None,
            false,
        )
        .await
        .expect("publish");
        self.pointer = Some(p.clone());
        (p, d)
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// This process's resident memory, MB.
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn churn(
    connect: String,
    n: usize,
    records: usize,
    changes_per_min: usize,
    every: Duration,
    seconds: u64,
    design: Design,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let layout = Layout::new("/geodns-churn").unwrap();
    let upstream = connect.split(',').next().unwrap().to_owned();
    let counts = Arc::new(Counted::default());
    let via = counting_proxy(upstream, counts.clone()).await;
    let client = zk::Client::connect(&connect).await.expect("connect");
    let start_version = match store::read_pointer(&client, &layout).await.unwrap() {
        Some((p, _)) => p.version,
        None => 0,
    };
    let mut publisher = Publisher::new(
        client,
        layout.clone(),
        design,
        records as u32,
        start_version,
    );
    let peers = design == Design::Deltas;
    let (p, _) = publisher.publish(0).await;
    let mut version = p.version;
    let snapshot_bytes = p.size;
    // What a server spends on each version it takes, measured once here (the followers
    // below hand versions to a closure that only records them): compiling the zone whole,
    // or patching it by a delta of one publication's changes.
    let allowed = vec![ORIGIN.to_owned()];
    let snap = publisher.zones.to_snapshot();
    let t = Instant::now();
    let served = Internal::whole(&snap, Some(&publisher.zones), &[], &allowed).unwrap();
    let compile = t.elapsed();
    let per_pub = (changes_per_min as f64 * every.as_secs_f64() / 60.0).ceil() as usize;
    let patch = {
        let mut parts = publisher.zones.clone();
        let mut served = served;
        let mut gone = std::collections::BTreeSet::new();
        let rounds = 20u32;
        let mut spent = Duration::ZERO;
        for r in 0..rounds {
            let change = toggle(
                &mut gone,
                (0..per_pub)
                    .map(|k| ((u64::from(r) * 104_729 + k as u64 * 7919) % records as u64) as u32),
            );
            let d = parts
                .delta(
                    parts.version() + 1,
                    now(),
                    vec![ORIGIN.into()],
                    vec![change],
                )
                .unwrap();
            let t = Instant::now();
            parts.apply(&d).unwrap();
            served = served
                .patched(std::slice::from_ref(&d), &parts, &[], &allowed)
                .unwrap();
            spent += t.elapsed();
        }
        spent / rounds
    };
    let per_version = match design {
        Design::Whole => compile,
        Design::Deltas => patch,
    };
    let dir = bench_dir("churn");
    std::fs::create_dir_all(&dir).unwrap();
    let (seen, fetched) = start_followers(&via, &layout, n, &dir, "f", 500, peers).await;
    let t0 = Instant::now();
    loop {
        let s = seen.lock().unwrap().clone();
        if time_to_all(&s, n, version, t0).is_some() {
            break;
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{n} followers on version {version} ({snapshot_bytes} bytes) in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // The run: a publication every `every`, each changing what the churn rate gives.
    let (down0, cpu0, start) = (counts.down.load(Relaxed), cpu_time(), Instant::now());
    let (peer0, whole0, deltas0) = (
        fetched.peer.load(Relaxed),
        fetched.whole.load(Relaxed),
        fetched.deltas.load(Relaxed),
    );
    let mut pubs: Vec<(u64, Instant)> = Vec::new();
    let mut delta_bytes = 0u64;
    let mut wholes = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        let t = Instant::now();
        let (p, d) = publisher.publish(per_pub).await;
        version = p.version;
        delta_bytes += d.sealed(None).len() as u64;
        wholes += usize::from(p.full.is_none());
        pubs.push((version, t));
        tokio::time::sleep(every.saturating_sub(t.elapsed())).await;
    }
    // Let the last publication reach everyone (or give up after a minute).
    let last = version;
    let wait = Instant::now();
    while wait.elapsed() < Duration::from_secs(60) {
        let s = seen.lock().unwrap().clone();
        if time_to_all(&s, n, last, t0).is_some() {
            break;
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (down, cpu) = (counts.down.load(Relaxed) - down0, cpu_time() - cpu0);
    let peer_bytes = fetched.peer.load(Relaxed) - peer0;
    let s = seen.lock().unwrap().clone();
    let mut to_all: Vec<f64> = pubs
        .iter()
        .filter_map(|(v, at)| time_to_all(&s, n, *v, *at))
        .map(|d| d.as_secs_f64())
        .collect();
    to_all.sort_by(f64::total_cmp);
    let applies = s.iter().filter(|(_, v, _)| *v > pubs[0].0 - 1).count();
    let minutes = elapsed / 60.0;
    let npub = pubs.len() as f64;
    println!(
        "churn design={design:?} followers={n} records={records} snapshot={snapshot_bytes} B changes/min={changes_per_min} ({per_pub} a publication, delta {:.0} B) publish every {} ms, {} publications ({wholes} whole in ZooKeeper) in {elapsed:.0} s",
        delta_bytes as f64 / npub,
        every.as_millis(),
        pubs.len()
    );
    Egress {
        down,
        publications: npub,
        minutes,
        snapshot_bytes,
        followers: n,
        whole: fetched.whole.load(Relaxed) - whole0,
        peer: peer_bytes,
        deltas: fetched.deltas.load(Relaxed) - deltas0,
    }
    .print();
    if !to_all.is_empty() {
        println!(
            "  publication to every follower (or a later version): median {:.2} s, p99 {:.2} s, max {:.2} s ({} of {} publications reached everyone)",
            pct(&to_all, 50),
            pct(&to_all, 99),
            to_all[to_all.len() - 1],
            to_all.len(),
            pubs.len()
        );
    }
    println!(
        "  follower CPU per minute: {:.1} ms fetching, checking and applying to the parts (this process / followers) + {:.1} ms in the server's zones ({:.1} versions taken per follower a minute x {:.3} ms each: {})",
        cpu.as_secs_f64() * 1000.0 / n as f64 / minutes,
        applies as f64 / n as f64 / minutes * per_version.as_secs_f64() * 1000.0,
        applies as f64 / n as f64 / minutes,
        per_version.as_secs_f64() * 1000.0,
        match design {
            Design::Whole => "a whole compile",
            Design::Deltas => "a patch",
        }
    );
    println!("  this process: {:.0} MB resident", rss_mb());
    let fleet = Fleet {
        via: &via,
        layout: &layout,
        dir: &dir,
        jitter_ms: 500,
        peers,
        hook: None,
    };
    cold_start(&fleet, &counts, version).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// What went to the followers during a run: ZooKeeper's egress through the proxy, and the
/// bytes they took whole from ZooKeeper, whole from peers, and as deltas.
struct Egress {
    down: u64,
    publications: f64,
    minutes: f64,
    snapshot_bytes: u64,
    followers: usize,
    whole: u64,
    peer: u64,
    deltas: u64,
}

impl Egress {
    fn print(&self) {
        let (down, pubs) = (self.down as f64, self.publications);
        println!(
            "  zookeeper egress to followers: {:.2} MB per publication, {:.1} MB per minute ({:.3}x one snapshot per publication; {:.0} B per follower per publication)",
            down / pubs / 1e6,
            down / self.minutes / 1e6,
            down / pubs / self.snapshot_bytes as f64,
            down / pubs / self.followers as f64
        );
        println!(
            "  followers took {:.1} MB whole from ZooKeeper, {:.1} MB whole from peers ({:.0} % of all bytes to followers), {:.1} MB of deltas",
            self.whole as f64 / 1e6,
            self.peer as f64 / 1e6,
            100.0 * self.peer as f64 / (self.peer + self.down).max(1) as f64,
            self.deltas as f64 / 1e6
        );
    }
}

/// A cold start: 200 new followers at once, each timed until it holds `version` or a later
/// one; prints the times and the bytes from ZooKeeper and from peers.
async fn cold_start(fleet: &Fleet<'_>, counts: &Counted, version: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let cold = 200;
    let down0 = counts.down.load(Relaxed);
    let t0 = Instant::now();
    let (seen, fetched) = fleet.start(cold, "cold").await;
    loop {
        let s = seen.lock().unwrap().clone();
        if let Some(all) = time_to_all(&s, cold, version, t0) {
            let mut each: Vec<f64> = (0..cold)
                .filter_map(|i| {
                    s.iter()
                        .filter(|(j, v, _)| *j == i && *v >= version)
                        .map(|(_, _, t)| t.duration_since(t0).as_secs_f64())
                        .reduce(f64::min)
                })
                .collect();
            each.sort_by(f64::total_cmp);
            println!(
                "  cold start of {cold}: median {:.2} s, p99 {:.2} s, all {:.2} s; {:.1} MB from zookeeper, {:.1} MB from peers ({} of {cold} whole from a peer)",
                pct(&each, 50),
                pct(&each, 99),
                all.as_secs_f64(),
                (counts.down.load(Relaxed) - down0) as f64 / 1e6,
                fetched.peer.load(Relaxed) as f64 / 1e6,
                fetched.peer_versions.load(Relaxed)
            );
            return;
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Registrations the fleet bench made, and when each follower first held each one.
#[derive(Default)]
struct Arrivals {
    index: std::collections::HashMap<String, usize>,
    at: Vec<Instant>,
    /// Per arrival: a bit per follower that holds it, how many do, and when the last did.
    held_by: Vec<Vec<u64>>,
    count: Vec<usize>,
    last: Vec<Option<Instant>>,
}

impl Arrivals {
    fn add(&mut self, line: String, n: usize) {
        self.index.insert(line, self.at.len());
        self.at.push(Instant::now());
        self.held_by.push(vec![0; n.div_ceil(64)]);
        self.count.push(0);
        self.last.push(None);
    }

    fn held(&mut self, follower: usize, line: &str) {
        let Some(&a) = self.index.get(line) else {
            return;
        };
        let (word, bit) = (follower / 64, 1u64 << (follower % 64));
        if self.held_by[a][word] & bit == 0 {
            self.held_by[a][word] |= bit;
            self.count[a] += 1;
            self.last[a] = Some(Instant::now());
        }
    }

    fn update(&mut self, follower: usize, u: &Update<'_>) {
        match u {
            Update::Deltas(deltas, _) => {
                for line in deltas
                    .iter()
                    .flat_map(|d| &d.changes)
                    .flat_map(|c| &c.added)
                {
                    self.held(follower, line);
                }
            }
            Update::Whole(_, Some(zones)) => {
                let lines: Vec<String> = self.index.keys().cloned().collect();
                for line in lines {
                    if zones.bodies().any(|b| b.robot_lines.contains(&line)) {
                        self.held(follower, &line);
                    }
                }
            }
            Update::Whole(_, None) => {}
        }
    }
}

/// A registration as a robot writes it: the node name and its data.
fn registration(i: usize, seq: u64) -> (String, String, String) {
    let name = format!("host{i}.r{}.{ORIGIN}", i % 100);
    let addr = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
    let data = format!(r#"{{"name":"{name}","addresses":["{addr}"],"services":[]}}"#);
    let line = format!("{name}. 60 IN A {addr}");
    (format!("{name}-{seq:010}"), data, line)
}

/// CPU seconds a process used so far (user and system, from /proc).
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, r)| r.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (11 and 12 after the command).
    (ticks(11) + ticks(12)) / 100.0
}

/// The fleet with a real presenter: HOSTS registrations in ZooKeeper, the `geodns presenter`
/// process publishing (deltas, a whole snapshot every 100), N followers serving each other
/// whole snapshots, and CHANGES_PER_MIN registrations a minute leaving and coming back. The
/// latency is from a registration's write to every follower holding its record.
async fn fleet(
    connect: String,
    geodns: String,
    n: usize,
    hosts: usize,
    changes_per_min: usize,
    seconds: u64,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let root = "/geodns-fleet";
    let layout = Layout::new(root).unwrap();
    let upstream = connect.split(',').next().unwrap().to_owned();
    let counts = Arc::new(Counted::default());
    let via = counting_proxy(upstream, counts.clone()).await;
    let client = zk::Client::connect(&connect).await.expect("connect");
    store::ensure_path(
        &client,
        &layout.hosts(),
        geodns_snapshot::access::Node::Hosts,
        false,
    )
    .await
    .unwrap();
    // The registrations, written many at a time.
    let t = Instant::now();
    let mut seq = 0u64;
    let mut live: Vec<Option<String>> = vec![None; hosts];
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    for batch in (0..hosts).collect::<Vec<_>>().chunks(2000) {
        let mut writes = Vec::new();
        for &i in batch {
            seq += 1;
            let (node, data, _) = registration(i, seq);
            let path = format!("{}/{node}", layout.hosts());
            live[i] = Some(path.clone());
            let c = client.clone();
            let opts = opts.clone();
            writes.push(tokio::spawn(async move {
                c.create(&path, data.as_bytes(), &opts).await.map(|_| ())
            }));
        }
        for w in writes {
            w.await.unwrap().expect("create a registration");
        }
    }
    eprintln!(
        "{hosts} registrations in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // The presenter.
    let dir = bench_dir("fleet");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = format!(
        "[zookeeper]\nconnect = \"{connect}\"\nroot = \"{root}\"\n\
         [[zones]]\norigin = \"{ORIGIN}\"\nprimary = \"ns1.{ORIGIN}\"\nhostmaster = \"hostmaster.{ORIGIN}\"\nns = [\"ns1.{ORIGIN}\"]\n\
         [guard]\ngrace_ms = 0\n"
    );
    std::fs::write(dir.join("presenter.toml"), cfg).unwrap();
    let log = std::fs::File::create(dir.join("presenter.log")).unwrap();
    let mut presenter = std::process::Command::new(&geodns)
        .args(["presenter", "-c"])
        .arg(dir.join("presenter.toml"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("geodns presenter");
    // Wait for the presenter to publish every registration.
    let t = Instant::now();
    let first = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some((p, _)) = store::read_pointer(&client, &layout).await.unwrap() {
            if p.size as usize > hosts * 40 {
                break p;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "the presenter published nothing"
        );
    };
    let snapshot_bytes = first.size;
    eprintln!(
        "presenter published {hosts} records (version {}, {snapshot_bytes} bytes) {:.1} s after it started",
        first.version,
        t.elapsed().as_secs_f64()
    );
    // Followers, tracking which registrations each holds.
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let a = arrivals.clone();
    let hook: Hook = Arc::new(move |i, u| a.lock().unwrap().update(i, u));
    let fleet = Fleet {
        via: &via,
        layout: &layout,
        dir: &dir,
        jitter_ms: 500,
        peers: true,
        hook: Some(hook),
    };
    let t = Instant::now();
    let (seen, fetched) = fleet.start(n, "f").await;
    loop {
        let s = seen.lock().unwrap().clone();
        let v = store::read_pointer(&client, &layout)
            .await
            .unwrap()
            .unwrap()
            .0
            .version;
        if time_to_all(&s, n, v, t).is_some() {
            break;
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{n} followers in step after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // The churn: every 200 ms, a share of the rate: registrations leave (deleted) and come
    // back (a new node), alternately.
    let tick = Duration::from_millis(200);
    let per_tick = changes_per_min as f64 * tick.as_secs_f64() / 60.0;
    let v0 = store::read_pointer(&client, &layout)
        .await
        .unwrap()
        .unwrap()
        .0
        .version;
    let (down0, peer0, deltas0, whole0) = (
        counts.down.load(Relaxed),
        fetched.peer.load(Relaxed),
        fetched.deltas.load(Relaxed),
        fetched.whole.load(Relaxed),
    );
    let (cpu0, pcpu0, start) = (cpu_time(), process_cpu(presenter.id()), Instant::now());
    let mut owed = 0.0;
    let mut cursor = 0usize;
    let mut gone = std::collections::VecDeque::new();
    let mut left_once = vec![false; hosts];
    let mut arrived = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        let t = Instant::now();
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            let due = gone
                .front()
                .is_some_and(|(_, t): &(usize, Instant)| t.elapsed() > Duration::from_secs(5));
            if due && cursor % 2 == 1 {
                // One comes back, 5 s after it left at least (so its departure was published:
                // one that left and came back within one publication would never arrive).
                let (i, _) = gone.pop_front().expect("due");
                seq += 1;
                let (node, data, line) = registration(i, seq);
                let path = format!("{}/{node}", layout.hosts());
                arrivals.lock().unwrap().add(line, n);
                client
                    .create(&path, data.as_bytes(), &opts)
                    .await
                    .expect("register");
                live[i] = Some(path);
                arrived += 1;
            } else {
                // One leaves (each host at most once: one that came back and left again
                // before the presenter's next publication would never be seen arriving).
                let i = (cursor * 7919) % hosts;
                if !left_once[i] {
                    if let Some(path) = live[i].take() {
                        client.delete(&path, None).await.expect("deregister");
                        gone.push_back((i, Instant::now()));
                        left_once[i] = true;
                    }
                }
            }
            cursor += 1;
        }
        tokio::time::sleep(tick.saturating_sub(t.elapsed())).await;
    }
    // Let the last registrations reach everyone (or give up after a minute).
    let wait = Instant::now();
    while wait.elapsed() < Duration::from_secs(60) {
        if arrivals.lock().unwrap().count.iter().all(|c| *c == n) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let minutes = elapsed / 60.0;
    let (cpu, pcpu) = (cpu_time() - cpu0, process_cpu(presenter.id()) - pcpu0);
    let v1 = store::read_pointer(&client, &layout)
        .await
        .unwrap()
        .unwrap()
        .0
        .version;
    let pubs = (v1 - v0).max(1) as f64;
    let down = counts.down.load(Relaxed) - down0;
    let peer_bytes = fetched.peer.load(Relaxed) - peer0;
    let (mut to_all, mut missing) = (Vec::new(), 0);
    {
        let a = arrivals.lock().unwrap();
        for k in 0..a.at.len() {
            match a.last[k].filter(|_| a.count[k] == n) {
                Some(last) => to_all.push(last.duration_since(a.at[k]).as_secs_f64()),
                None => missing += 1,
            }
        }
    }
    to_all.sort_by(f64::total_cmp);
    println!(
        "fleet followers={n} hosts={hosts} snapshot={snapshot_bytes} B changes/min={changes_per_min}: {} publications by the presenter in {elapsed:.0} s ({arrived} registrations, as many departures)",
        v1 - v0
    );
    Egress {
        down,
        publications: pubs,
        minutes,
        snapshot_bytes,
        followers: n,
        whole: fetched.whole.load(Relaxed) - whole0,
        peer: peer_bytes,
        deltas: fetched.deltas.load(Relaxed) - deltas0,
    }
    .print();
    if !to_all.is_empty() {
        println!(
            "  registration to every follower holding it: median {:.2} s, p99 {:.2} s, max {:.2} s ({} of {} registrations reached everyone)",
            pct(&to_all, 50),
            pct(&to_all, 99),
            to_all[to_all.len() - 1],
            to_all.len(),
            to_all.len() + missing
        );
    }
    println!(
        "  follower CPU per minute: {:.1} ms (this process / followers: fetching, checking, applying to the parts); presenter CPU {:.1} s per minute",
        cpu.as_secs_f64() * 1000.0 / n as f64 / minutes,
        pcpu / minutes
    );
    println!("  this process: {:.0} MB resident", rss_mb());
    let fleet = Fleet {
        hook: None,
        ..fleet
    };
    cold_start(&fleet, &counts, v1).await;
    let _ = presenter.kill();
    let _ = presenter.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // The followers' own log lines (RUST_LOG, e.g. geodns_snapshot=warn), on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
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
        ["churn", connect, n, records, changes, every_ms, seconds, design] => {
            let design = match design {
                "whole" => Design::Whole,
                "deltas" => Design::Deltas,
                _ => panic!("DESIGN is whole or deltas"),
            };
            rt.block_on(churn(
                connect.into(),
                n.parse().unwrap(),
                records.parse().unwrap(),
                changes.parse().unwrap(),
                Duration::from_millis(every_ms.parse().unwrap()),
                seconds.parse().unwrap(),
                design,
            ))
        }
        ["fleet", connect, geodns, n, hosts, changes, seconds] => rt.block_on(fleet(
            connect.into(),
            geodns.into(),
            n.parse().unwrap(),
            hosts.parse().unwrap(),
            changes.parse().unwrap(),
            seconds.parse().unwrap(),
        )),
        ["publish", connect, records] => {
            let layout = Layout::new("/geodns").unwrap();
            rt.block_on(publish_next(connect, &layout, records.parse().unwrap()));
        }
        _ => eprintln!(
            "usage: fanout CONNECT N [JITTER_MS] | publish CONNECT RECORDS | churn CONNECT FOLLOWERS RECORDS CHANGES_PER_MIN PUBLISH_EVERY_MS SECONDS whole|deltas | fleet CONNECT GEODNS_BIN FOLLOWERS HOSTS CHANGES_PER_MIN SECONDS (see the source)"
        ),
    }
}
