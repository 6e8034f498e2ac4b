//! One mapgen run: scan and validate the logs, pair reports with probe queries, aggregate per
//! key and PoP at each level, rank, fall back, compact, and return the map with its report.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use geomap::geoip::{rank_by_distance, GeoIp};
use geomap::{Derivation, KeySpace, Map, MapMeta, MapRow, PopIndex, PopTable};
use ipnet::IpNet;
use polars::prelude::*;

use crate::aggregate::{Aggregates, LevelStats};
use crate::logs::{self, ProbeRecord, ReportRecord, Validation, LEVELS};
use crate::pairing::{self, Measurement};
use crate::ranking::{coherent, rows_for_level, PopStat};
use crate::report::{BadRows, LatencyDistribution, Report};
use crate::routes::Routes;
use crate::spill::Partitions;

/// What to run on.
pub struct Options {
    /// The log root (`dns_probe/`, `rtt_report/` below it).
    pub logs: PathBuf,
    /// Oldest report to use.
    pub since: Option<SystemTime>,
    /// Newest report to use (exclusive).
    pub until: Option<SystemTime>,
    /// The PoPs (with coordinates for GeoIP fallback); reports on other PoPs are refused.
    pub pops: PopTable,
    /// Order for keys nothing else places.
    pub default_order: Vec<PopIndex>,
    /// GeoIP database for fallback rows and for ordering unmeasured PoPs.
    pub geoip: Option<PathBuf>,
    /// Successful samples a PoP needs for a key before it can win there.
    pub min_samples: u64,
    /// Larger RTTs are refused as absurd.
    pub max_rtt_ms: f64,
    /// Refuse the input when more than this share of rows is invalid.
    pub max_invalid_share: f64,
    /// The map now serving, to compare with: how much traffic would change PoP, and what
    /// coverage would be lost.
    pub previous: Option<PathBuf>,
    /// Refuse a map that moves more than this share of measured traffic (by samples).
    pub max_moved_share: f64,
    /// Write the map even when a safety gate says no (the report still says why).
    pub force: bool,
    /// Leave out log files that do not follow the contract (listed in the report) instead of
    /// refusing the run.
    pub skip_bad_files: bool,
    /// Rows per table each step holds at a time: larger inputs are split into partitions
    /// spilled to `tmp_dir`, which bounds memory.
    pub partition_rows: u64,
    /// Where partitions spill.
    pub tmp_dir: PathBuf,
    /// A routing-table prefix list: thin client subnets borrow from their routed prefix
    /// (one network) before the fixed coarser levels.
    pub routes: Option<PathBuf>,
    /// Generation id to record.
    pub generation: String,
    /// Creation time to record (RFC 3339).
    pub created_at: String,
}

/// Why a run produced no map.
#[derive(Debug, thiserror::Error)]
pub enum MapgenError {
    /// polars could not read or compute.
    #[error("{0}")]
    Polars(#[from] PolarsError),
    /// The GeoIP database.
    #[error("{0}")]
    GeoIp(#[from] geomap::geoip::GeoIpError),
    /// The routing-table prefix list.
    #[error("{0}")]
    Routes(#[from] crate::routes::RoutesError),
    /// Input that cannot make a trustworthy map.
    #[error("refusing the input: {0}")]
    Refused(String),
}

fn micros(t: Option<SystemTime>) -> Option<i64> {
    t.map(|t| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64))
}

fn bad_rows(table: &str, v: &Validation) -> Vec<BadRows> {
    v.bad.iter().map(|(reason, (rows, samples))| BadRows { table: table.into(), reason: (*reason).into(), rows: *rows, samples: samples.clone() }).collect()
}

/// The distributions of per-subnet medians: each subnet's fastest well-measured PoP, then each
/// PoP.
fn latency(stats: &LevelStats, pops: &PopTable, min_samples: u64) -> Vec<LatencyDistribution> {
    let mut best = Vec::new();
    let mut per_pop: Vec<Vec<f64>> = vec![Vec::new(); pops.len()];
    for s in stats.values() {
        let well = s.iter().filter(|p| p.well_measured(min_samples)).filter_map(|p| Some((p.pop, p.median?)));
        let mut fastest = f64::INFINITY;
        for (pop, median) in well {
            per_pop[usize::from(pop)].push(median);
            fastest = fastest.min(median);
        }
        if fastest.is_finite() {
            best.push(fastest);
        }
    }
    let mut out = vec![LatencyDistribution::of("best", best)];
    out.extend(pops.iter().zip(per_pop).map(|(p, v)| LatencyDistribution::of(p.id.as_str(), v)));
    out
}

/// The finest-level statistics of the subnets inside `net`.
fn children(finest: &LevelStats, net: IpNet) -> impl Iterator<Item = &[PopStat]> {
    let (v4, v6) = LEVELS[0];
    let len = if matches!(net, IpNet::V4(_)) { v4 } else { v6 };
    let first = IpNet::new(net.network(), len).map(|n| n.trunc());
    let last = IpNet::new(net.broadcast(), len).map(|n| n.trunc());
    let range = match (first, last) {
        (Ok(a), Ok(b)) => Some(finest.range(a..=b)),
        _ => None,
    };
    range.into_iter().flatten().map(|(_, s)| s.as_slice())
}

/// Progress through `n` partitions: the first, then about every tenth.
fn step(progress: &(dyn Fn(&str) + Sync), what: &str, p: usize, n: usize) {
    if n == 1 {
        progress(what);
    } else if p == 0 || (p + 1) % n.div_ceil(10) == 0 || p + 1 == n {
        progress(&format!("{what}, partition {}/{n}", p + 1));
    }
}

/// One table read: its valid rows, partitioned, and its bad rows by reason.
type Table<R> = (Partitions<R>, Validation);

/// Checks the log files, then reads both tables at once into `n` partitions each: each read
/// is one thread validating behind polars' decoding, and a third prints progress.
fn read(
    opts: &Options,
    pop_ids: &[String],
    progress: &(dyn Fn(&str) + Sync),
    report: &mut Report,
) -> Result<(usize, Table<ReportRecord>, Table<ProbeRecord>), MapgenError> {
    let mut checked = |table: &str| -> Result<logs::Files, MapgenError> {
        let files = logs::files(&opts.logs, table).map_err(|e| MapgenError::Refused(e.to_string()))?;
        if !files.bad.is_empty() && !opts.skip_bad_files {
            let list: Vec<String> = files.bad.iter().take(10).map(ToString::to_string).collect();
            let more = files.bad.len().saturating_sub(10);
            return Err(MapgenError::Refused(format!(
                "{} {table} files do not follow the log contract (move them aside, or rerun with --skip-bad-files):\n  {}{}",
                files.bad.len(),
                list.join("\n  "),
                if more > 0 { format!("\n  and {more} more") } else { String::new() }
            )));
        }
        report.skipped_files.extend(files.bad.iter().map(ToString::to_string));
        Ok(files)
    };
    let report_files = checked("rtt_report")?;
    let probe_files = checked("dns_probe")?;
    let (since, until) = (micros(opts.since), micros(opts.until));
    // Partitions sized from the footers, so each step holds about `partition_rows` rows.
    let most = report_files.rows.max(probe_files.rows);
    let n = (most.div_ceil(opts.partition_rows.max(1)) as usize).clamp(1, crate::spill::MAX_PARTITIONS);
    progress(&format!("reading logs (at most {most} rows per table, {n} partition{})", if n == 1 { "" } else { "s" }));
    // Both tables at once: each read is one thread validating behind polars' decoding.
    let report_parts = Partitions::new(n, &opts.tmp_dir, "reports")?;
    let probe_parts = Partitions::new(n, &opts.tmp_dir, "probes")?;
    let seen = Arc::new(AtomicU64::new(0));
    let (done, ticks) = mpsc::channel::<()>();
    let (reports, probes) = std::thread::scope(|s| {
        let (counter, total) = (seen.clone(), report_files.rows + probe_files.rows);
        s.spawn(move || {
            // Reading is the longest step on large inputs: a line every 10 s.
            while let Err(RecvTimeoutError::Timeout) = ticks.recv_timeout(Duration::from_secs(10)) {
                progress(&format!("read {} of at most {total} rows", counter.load(Ordering::Relaxed)));
            }
        });
        let probes = s.spawn(|| logs::read_probes(&probe_files, pop_ids, since, until, probe_parts, seen.clone()));
        let reports = logs::read_reports(&report_files, pop_ids, opts.max_rtt_ms, since, until, report_parts, seen.clone());
        let probes = probes.join().expect("the probe reader does not panic");
        drop(done);
        (reports, probes)
    });
    Ok((n, reports?, probes?))
}

/// Runs mapgen. `progress` is called with a line at each stage.
pub fn run(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<(Map, Report), MapgenError> {
    let pop_ids: Vec<String> = opts.pops.iter().map(|p| p.id.to_string()).collect();
    let mut report = Report::default();

    let (n, (reports, rtt_v), (probes, dns_v)) = read(opts, &pop_ids, progress, &mut report)?;
    progress(&format!("read {} rtt_report and {} dns_probe rows", rtt_v.rows, dns_v.rows));
    report.rtt_rows = rtt_v.rows;
    report.dns_rows = dns_v.rows;
    report.bad.extend(bad_rows("rtt_report", &rtt_v));
    report.bad.extend(bad_rows("dns_probe", &dns_v));
    if report.rtt_rows == 0 || report.dns_rows == 0 {
        return Err(MapgenError::Refused(format!(
            "the window holds {} rtt_report and {} dns_probe rows; both are needed",
            report.rtt_rows, report.dns_rows
        )));
    }
    for (table, total, bad) in [("rtt_report", rtt_v.rows, rtt_v.bad_rows()), ("dns_probe", dns_v.rows, dns_v.bad_rows())] {
        if bad as f64 > opts.max_invalid_share * total as f64 {
            return Err(MapgenError::Refused(format!(
                "{bad} of {total} {table} rows are invalid (more than {:.0} %); see the reasons with --report",
                opts.max_invalid_share * 100.0
            )));
        }
    }

    let (mut reports, mut probes) = (reports.finish()?, probes.finish()?);
    let mut measurements = Partitions::<Measurement>::new(n, &opts.tmp_dir, "measurements")?;
    for p in 0..n {
        step(progress, "pairing reports with probe queries", p, n);
        pairing::route(pairing::pair(reports.take(p)?, probes.take(p)?)?, &mut measurements)?;
    }
    drop((reports, probes));
    let mut measurements = measurements.finish()?;
    let routes = match &opts.routes {
        Some(path) => Routes::read(path)?,
        None => Routes::default(),
    };
    let mut aggregates = Aggregates::new(routes);
    for p in 0..measurements.len() {
        step(progress, "aggregating", p, n);
        aggregates.add(measurements.take(p)?)?;
    }
    report.measurements = aggregates.measurements;
    if report.measurements == 0 {
        return Err(MapgenError::Refused("no report pairs with a probe query (same probe id and PoP within 10 minutes)".into()));
    }
    let (client_levels, routed, resolver_levels) = aggregates.finish()?;
    report.client_subnets = client_levels[0].len() as u64;
    report.latency = latency(&client_levels[0], &opts.pops, opts.min_samples);
    report.resolvers = resolver_levels[0].len() as u64;

    progress("ranking");
    let geoip = opts.geoip.as_deref().map(GeoIp::open).transpose()?;
    let fallback = |net: IpNet| -> Vec<PopIndex> {
        match geoip.as_ref().map(|g| g.locate(net.addr())) {
            Some(Ok(loc)) => {
                let mut order = rank_by_distance(&opts.pops, loc.lat, loc.lon);
                order.extend(opts.default_order.iter().filter(|p| !order.contains(p)).collect::<Vec<_>>());
                order
            }
            _ => opts.default_order.clone(),
        }
    };
    let mut rows: Vec<MapRow> = Vec::new();
    let mut thin_clients = Vec::new();
    for (i, stats) in client_levels.iter().enumerate() {
        let derivation = if i == 0 { Derivation::Measured } else { Derivation::Aggregated };
        let (r, thin) = rows_for_level(KeySpace::Client, derivation, stats, opts.min_samples, &fallback);
        if i == 0 {
            thin_clients = thin;
            rows.extend(r);
        } else {
            // A fixed aggregate only where the subnets measured inside it agree with it.
            let before = r.len();
            let kept: Vec<MapRow> = r.into_iter().filter(|row| coherent(row.pops[0], children(&client_levels[0], row.prefix), opts.min_samples)).collect();
            report.incoherent_aggregates += (before - kept.len()) as u64;
            rows.extend(kept);
        }
    }
    rows.extend(rows_for_level(KeySpace::Client, Derivation::Routed, &routed, opts.min_samples, &fallback).0);
    for (i, stats) in resolver_levels.iter().enumerate() {
        let derivation = if i == 0 { Derivation::Measured } else { Derivation::Aggregated };
        rows.extend(rows_for_level(KeySpace::Resolver, derivation, stats, opts.min_samples, &fallback).0);
    }
    // Thin client subnets that no aggregate covers: nearest PoPs by GeoIP, if we can locate them.
    if let Some(g) = &geoip {
        let client_rows: std::collections::HashSet<IpNet> = rows.iter().filter(|r| r.key_space == KeySpace::Client).map(|r| r.prefix).collect();
        let covered = |net: &IpNet| (0..=net.prefix_len()).any(|len| IpNet::new(net.addr(), len).is_ok_and(|s| client_rows.contains(&s.trunc())));
        let geo_rows: Vec<MapRow> = thin_clients
            .iter()
            .filter(|n| !covered(n))
            .filter_map(|n| {
                let loc = g.locate(n.addr()).ok()?;
                let pops = fallback(*n);
                Some(MapRow { key_space: KeySpace::Client, prefix: *n, rtt_ms: vec![None; pops.len()], pops, samples: 0, derivation: Derivation::Geoip })
                    .filter(|_| loc.lat.is_finite())
            })
            .collect();
        rows.extend(geo_rows);
    }
    report.rows_before_compaction = rows.len() as u64;

    progress("compacting");
    let rows = geomap::compact::compact(rows);
    for d in Derivation::ALL {
        let n = rows.iter().filter(|r| r.derivation == d).count() as u64;
        if n > 0 {
            report.rows_by_derivation.push((d.to_string(), n));
        }
    }
    for s in KeySpace::ALL {
        report.rows_by_key_space.push((s.to_string(), rows.iter().filter(|r| r.key_space == s).count() as u64));
    }
    for (i, p) in opts.pops.iter().enumerate() {
        report.first_choice.push((p.id.to_string(), rows.iter().filter(|r| r.pops.first() == Some(&(i as PopIndex))).count() as u64));
    }
    let fmt = |t: Option<SystemTime>| t.map(|t| humantime::format_rfc3339_seconds(t).to_string());
    let new_map = Map {
        meta: MapMeta {
            generation: opts.generation.clone(),
            created_at: opts.created_at.clone(),
            source_from: fmt(opts.since),
            source_until: fmt(opts.until),
            pops: opts.pops.clone(),
        },
        rows,
    };
    if let Some(prev) = &opts.previous {
        progress("comparing with the previous map");
        let old = geomap::read_map(prev).map_err(|e| MapgenError::Refused(format!("previous map {}: {e}", prev.display())))?;
        let weights: Vec<(IpNet, u64)> = client_levels[0].iter().map(|(k, s)| (*k, s.iter().map(|x| x.samples).sum())).collect();
        let gate = crate::gate::compare(&old, &new_map, &weights, &opts.default_order);
        let problems = gate.problems(opts.max_moved_share);
        report.gate = Some(gate);
        if !problems.is_empty() {
            if opts.force {
                report.forced = problems.clone();
            } else {
                return Err(MapgenError::Refused(format!("{}; rerun with --force to write it anyway", problems.join("; "))));
            }
        }
    }
    Ok((new_map, report))
}
