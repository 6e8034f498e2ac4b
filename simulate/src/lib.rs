//! `geodns simulate`: users that behave like real ones, driving the real DNS server and the
//! real collector, with the ground truth written beside the logs so a map can be scored.
//!
//! For each simulated user: pick a network by weight and one of its client /24s, a client
//! address in it, and a random probe id; the network's resolver queries
//! `<id>.<pop>.<probe zone>` for every PoP from the resolver's own loopback address (with ECS
//! for the client's /24 if that resolver sends ECS); then the client "fetches" each PoP, its
//! RTT drawn from the latency model, and posts one report through a trusted-proxy address that
//! passes the client's world address in `X-Forwarded-For`. Everything random comes from one
//! seeded generator, drawn before any I/O, so the same seed gives the same users, ids and
//! RTTs whatever the timing.

pub mod score;
pub mod world;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use ipnet::{IpNet, Ipv4Net};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use world::{World, WorldError};

/// What to run.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// The DNS server (probe zone).
    pub dns: SocketAddr,
    /// The collector (`http://addr/v1/report`).
    pub collector: SocketAddr,
    /// Local address reports are sent from: a trusted proxy of the collector.
    pub proxy: IpAddr,
    /// How many users.
    pub users: usize,
    /// Users in flight at once.
    pub concurrency: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Where the ground truth goes.
    pub out: PathBuf,
}

/// Why a simulation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// Output could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Counts of what happened.
#[derive(Debug, Default)]
pub struct Summary {
    /// Users simulated.
    pub users: AtomicU64,
    /// DNS probe queries answered.
    pub dns_ok: AtomicU64,
    /// DNS probe queries that timed out or failed.
    pub dns_failed: AtomicU64,
    /// Reports acknowledged.
    pub reports_ok: AtomicU64,
    /// Reports refused or failed after retries.
    pub reports_failed: AtomicU64,
}

struct User {
    client: IpAddr,
    subnet: IpNet,
    resolver: Ipv4Addr,
    ecs: bool,
    probe_id: String,
    /// The PoPs the session measured (indices in the world's order) and the RTT of each, NaN
    /// for a failed fetch: compact, as large runs plan millions of users.
    results: Vec<(u16, f32)>,
}

fn plan(world: &World, opts: &SimulateOptions) -> Vec<User> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    // Cumulative weights: a user's network is drawn by binary search, so worlds with
    // thousands of networks plan millions of users quickly.
    // Only networks that run the beacon have sessions. Cumulative weights: a user's network is
    // drawn by binary search, so worlds with thousands of networks plan millions of users
    // quickly.
    let beacon: Vec<usize> = (0..world.networks.len())
        .filter(|&i| world.networks[i].beacon)
        .collect();
    let cumulative: Vec<f64> = beacon
        .iter()
        .scan(0.0, |acc, &i| {
            *acc += world.networks[i].weight;
            Some(*acc)
        })
        .collect();
    let total = cumulative.last().copied().unwrap_or(0.0);
    let subnets: Vec<Vec<IpNet>> = world.networks.iter().map(|n| world.subnets(n)).collect();
    let l = &world.latency;
    (0..opts.users)
        .map(|_| {
            let pick = rng.random::<f64>() * total;
            let ni = beacon[cumulative
                .partition_point(|&c| c <= pick)
                .min(beacon.len() - 1)];
            let n = &world.networks[ni];
            let subnet = subnets[ni][rng.random_range(0..subnets[ni].len())];
            let client = match subnet.network() {
                IpAddr::V4(a) => {
                    IpAddr::V4(Ipv4Addr::from(u32::from(a) | rng.random_range(1..255u32)))
                }
                IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(
                    u128::from(a) | u128::from(rng.random::<u64>() | 1),
                )),
            };
            let r = world.resolver_of(n);
            let resolver = Ipv4Addr::from(u32::from(r.address) + rng.random_range(0..r.egress));
            let probe_id: String = (0..16)
                .map(|_| char::from_digit(rng.random_range(0..16u32), 16).expect("hex digit"))
                .collect();
            let mut measured = world.session_pops(n, &mut |k| rng.random_range(0..k));
            // Draw only for PoPs that few sessions measure, so older worlds keep their users.
            measured.retain(|&i| {
                world.pops[i].measured_share >= 1.0 || world.measures(i, rng.random::<f64>())
            });
            let results = measured
                .into_iter()
                .map(|i| {
                    let truth = world.true_rtt(n, subnet, &world.pops[i]);
                    let lost = rng.random::<f64>() < l.loss;
                    // Noise: a half-normal on top (queues only add delay), a log-normal factor
                    // where the world asks for one, and now and then a large outlier, as real
                    // measurements have.
                    let g: f64 = (0..6).map(|_| rng.random::<f64>()).sum::<f64>() - 3.0;
                    let mut rtt = truth + (g * l.jitter_ms).abs();
                    if l.lognormal_sigma > 0.0 {
                        let z: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
                        rtt *= (z * l.lognormal_sigma).exp();
                    }
                    if rng.random::<f64>() < l.outlier_share {
                        rtt *= l.outlier_factor;
                    }
                    let rtt = if lost {
                        f32::NAN
                    } else {
                        ((rtt * 1000.0).round() / 1000.0) as f32
                    };
                    (i as u16, rtt)
                })
                .collect();
            User {
                client,
                subnet,
                resolver,
                ecs: r.ecs,
                probe_id,
                results,
            }
        })
        .collect()
}

/// Runs the simulation; progress on stderr every second.
pub async fn run(world: World, opts: SimulateOptions) -> Result<Arc<Summary>, SimulateError> {
    let users = plan(&world, &opts);
    write_truth(&world, &users, &opts.out)?;
    let http = reqwest::Client::builder()
        .local_address(opts.proxy)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("http://{}/v1/report", opts.collector);
    let zone = format!("{}.{}", world.probe_label, world.zone.trim_end_matches('.'));
    let summary = Arc::new(Summary::default());
    let started = Instant::now();
    let progress = {
        let s = summary.clone();
        let total = users.len();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!(
                    "simulate: {}/{total} users, dns {} ok {} failed, reports {} ok {} failed, {:.0} s",
                    s.users.load(Relaxed),
                    s.dns_ok.load(Relaxed),
                    s.dns_failed.load(Relaxed),
                    s.reports_ok.load(Relaxed),
                    s.reports_failed.load(Relaxed),
                    started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let users = Arc::new(users);
    let pop_ids: Arc<Vec<String>> = Arc::new(world.pops.iter().map(|p| p.id.clone()).collect());
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (users, next, summary, http, url, zone) = (
            users.clone(),
            next.clone(),
            summary.clone(),
            http.clone(),
            url.clone(),
            zone.clone(),
        );
        let pops = pop_ids.clone();
        let dns = opts.dns;
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed) as usize;
                let Some(u) = users.get(i) else { break };
                simulate_user(u, &pops, dns, &zone, &http, &url, &summary).await;
                summary.users.fetch_add(1, Relaxed);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    progress.abort();
    Ok(summary)
}

async fn simulate_user(
    u: &User,
    pops: &[String],
    dns: SocketAddr,
    zone: &str,
    http: &reqwest::Client,
    url: &str,
    s: &Summary,
) {
    // The resolver asks for every PoP's probe name, from its own address.
    match tokio::net::UdpSocket::bind((u.resolver, 0)).await {
        Ok(sock) => {
            for pop in u.results.iter().map(|&(i, _)| &pops[usize::from(i)]) {
                let ok = resolve(
                    &sock,
                    dns,
                    &format!("{}.{pop}.{zone}.", u.probe_id),
                    u.ecs.then_some(u.subnet),
                )
                .await;
                if ok { &s.dns_ok } else { &s.dns_failed }.fetch_add(1, Relaxed);
            }
        }
        Err(_) => {
            s.dns_failed.fetch_add(u.results.len() as u64, Relaxed);
        }
    }
    let results: Vec<String> = u
        .results
        .iter()
        .map(|&(i, rtt)| (rtt, &pops[usize::from(i)]))
        .map(|(rtt, pop)| match rtt {
            v if v.is_nan() => format!(r#"{{"pop":"{pop}","ok":false}}"#),
            v => format!(r#"{{"pop":"{pop}","rtt_ms":{v},"ok":true}}"#),
        })
        .collect();
    let body = format!(
        r#"{{"probe_id":"{}","results":[{}]}}"#,
        u.probe_id,
        results.join(",")
    );
    for attempt in 0..5u32 {
        let sent = http
            .post(url)
            .header("X-Forwarded-For", u.client.to_string())
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match sent.map(|r| r.status().as_u16()) {
            Ok(204) => {
                s.reports_ok.fetch_add(1, Relaxed);
                return;
            }
            // Busy or rate limited: back off and retry; anything else is final.
            Ok(429 | 503) | Err(_) => {
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await
            }
            Ok(_) => break,
        }
    }
    s.reports_failed.fetch_add(1, Relaxed);
}

async fn resolve(
    sock: &tokio::net::UdpSocket,
    dns: SocketAddr,
    name: &str,
    ecs: Option<IpNet>,
) -> bool {
    let Ok(qname) = Name::from_ascii(name) else {
        return false;
    };
    let mut m = Message::query();
    m.metadata.id = rand::rng().random();
    m.add_query(Query::query(qname, RecordType::A));
    if let Some(subnet) = ecs {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::from(subnet)));
        m.set_edns(e);
    }
    let Ok(bytes) = m.to_vec() else { return false };
    for _ in 0..3 {
        if sock.send_to(&bytes, dns).await.is_err() {
            return false;
        }
        let mut buf = [0u8; 1500];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await
        {
            return Message::from_vec(&buf[..n])
                .is_ok_and(|r| r.metadata.id == m.metadata.id && !r.answers.is_empty());
        }
    }
    false
}

/// Writes the users' logs straight into `root` (both tables, through the same writer the
/// server and collector use), without DNS or HTTP: for generating large inputs fast, e.g. to
/// measure mapgen on tens of millions of rows. Returns the rows written per table.
pub fn write_logs(
    world: &World,
    opts: &SimulateOptions,
    root: &Path,
) -> Result<u64, SimulateError> {
    use geodns_beacon::schema::{DnsProbeRow, ProbeId, RttReportRow};
    use geodns_beacon::writer::{LogWriter, WriterConfig};
    let users = plan(world, opts);
    write_truth(world, &users, &opts.out)?;
    let cfg = |id: &str| WriterConfig {
        root: root.to_path_buf(),
        writer_id: id.into(),
        max_rows: 1_000_000,
        max_age: Duration::from_secs(3600),
        queue_rows: 4_000_000,
        reserve_bytes: None,
    };
    let err = |e: geodns_beacon::writer::WriterError| SimulateError::Io {
        path: root.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let dns = LogWriter::<DnsProbeRow>::start(cfg("sim-dns")).map_err(err)?;
    let rtt = LogWriter::<RttReportRow>::start(cfg("sim-http")).map_err(err)?;
    let server: Arc<str> = "simulated".into();
    let pops: Vec<Arc<str>> = world
        .pops
        .iter()
        .map(|p| Arc::from(p.id.as_str()))
        .collect();
    // One user per millisecond, ending now: every row is in the past, so mapgen's window
    // (which refuses rows from the future) takes them all, however many users there are.
    let t0 = geodns_beacon::writer::now_micros() - users.len() as i64 * 1000 - 1_000_000;
    let style = world.logs;
    // Duplicates and clock skew come from their own generator, so the users (and the truth)
    // are the same whatever the log style.
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x05EE_D106);
    let mut rows = 0u64;
    for (i, u) in users.iter().enumerate() {
        let ts = t0 + i as i64 * 1000;
        let skew = if style.skew_ms > 0.0 {
            ((rng.random::<f64>() * 2.0 - 1.0) * style.skew_ms * 1000.0) as i64
        } else {
            0
        };
        for (k, &(j, rtt_ms)) in u.results.iter().enumerate() {
            let j = usize::from(j);
            // One id for the session, or a fresh one per PoP (both follow the contract).
            let probe_id = if style.id_per_pop {
                format!("{}{k:02x}", u.probe_id)
            } else {
                u.probe_id.clone()
            };
            let id = ProbeId::new(probe_id.as_bytes()).expect("simulated ids are valid");
            let rtt_ms = (!rtt_ms.is_nan()).then_some(f64::from(rtt_ms));
            let row = DnsProbeRow {
                ts,
                probe_id: id,
                pop: Some(pops[j].clone()),
                resolver_ip: IpAddr::V4(u.resolver),
                ecs_subnet: u.ecs.then_some((u.subnet.network(), u.subnet.prefix_len())),
                qtype: 1,
                server: server.clone(),
            };
            let report = vec![RttReportRow {
                ts: ts + 50_000 + skew,
                probe_id,
                pop: world.pops[j].id.clone(),
                client_ip: u.client.to_string(),
                rtt_ms,
                ok: rtt_ms.is_some(),
                collector: "simulated".into(),
            }];
            let times = if rng.random::<f64>() < style.duplicate_share {
                2
            } else {
                1
            };
            for _ in 0..times {
                while dns.try_log_one(row.clone()).is_err() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                while rtt.try_log(report.clone()).is_err() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            rows += 1;
        }
        if i % 1_000_000 == 999_999 {
            eprintln!("simulate: {} users written", i + 1);
        }
    }
    dns.close();
    rtt.close();
    Ok(rows)
}

/// Writes `ground_truth.csv` (subnet, network, resolver, lat, lon, users, then the true RTT to
/// each PoP), `resolvers.csv` (address, name, ecs, lat, lon), `routes.txt` (the networks'
/// prefixes, as a routing table would list them) and `geoip.mmdb` (where every network and
/// resolver is).
fn write_truth(world: &World, users: &[User], out: &Path) -> Result<(), SimulateError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SimulateError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    // Each subnet's expected users: its share of its network's weight, at the rate of the
    // networks that run the beacon, so never-measured networks count as much as measured ones
    // of their size, and a sparse run's truth is not its sampling noise.
    let beacon_weight: f64 = world
        .networks
        .iter()
        .filter(|n| n.beacon)
        .map(|n| n.weight)
        .sum();
    let per_weight = users.len() as f64 / beacon_weight;
    let mut t = String::from("subnet,network,resolver,lat,lon,users");
    for p in &world.pops {
        let _ = write!(t, ",rtt_{}", p.id);
    }
    t.push('\n');
    for n in &world.networks {
        let r = world.resolver_of(n);
        let subnets = world.subnets(n);
        let users = n.weight * per_weight / subnets.len() as f64;
        for subnet in subnets {
            let _ = write!(
                t,
                "{subnet},{},{},{},{},{users:.4}",
                n.name, r.address, n.lat, n.lon
            );
            for p in &world.pops {
                let _ = write!(t, ",{:.3}", world.true_rtt(n, subnet, p));
            }
            t.push('\n');
        }
    }
    let path = out.join("ground_truth.csv");
    std::fs::write(&path, t).map_err(io(&path))?;
    let mut r = String::from("address,name,ecs,lat,lon,egress\n");
    for res in &world.resolvers {
        let _ = writeln!(
            r,
            "{},{},{},{},{},{}",
            res.address, res.name, res.ecs, res.lat, res.lon, res.egress
        );
    }
    let path = out.join("resolvers.csv");
    std::fs::write(&path, r).map_err(io(&path))?;
    // The routing table: each network is announced as its own prefix.
    let routes: String = world
        .networks
        .iter()
        .map(|n| format!("{}\n", n.prefix))
        .collect();
    let path = out.join("routes.txt");
    std::fs::write(&path, routes).map_err(io(&path))?;
    // The world's GeoIP database, so maps and baselines fall back on the same knowledge of
    // where networks and resolvers are: perfect, except where a network's `geoip_lat` says
    // GeoIP is wrong about it.
    let mut located: Vec<(IpNet, f64, f64)> = world
        .networks
        .iter()
        .map(|n| {
            let (lat, lon) = World::geoip_location(n);
            (n.prefix, lat, lon)
        })
        .collect();
    located.extend(
        world
            .resolvers
            .iter()
            .flat_map(|r| World::egress(r).map(|a| (IpNet::V4(Ipv4Net::from(a)), r.lat, r.lon))),
    );
    let path = out.join("geoip.mmdb");
    geomap::mmdb::write_locations(&located, &path).map_err(|e| SimulateError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    Ok(())
}
