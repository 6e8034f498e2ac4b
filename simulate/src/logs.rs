//! Users straight into logs, without DNS or HTTP: large inputs, fast.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::options::{SimulateError, SimulateOptions};
use crate::truth::write_truth;
use crate::users::plan;
use crate::world::World;

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
