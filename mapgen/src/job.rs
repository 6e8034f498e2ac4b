//! One mapgen run: scan and validate the logs, pair reports with probe queries, aggregate per
//! key and PoP at each level, rank, fall back, compact, and return the map with its report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use geomap::geoip::{rank_by_distance, GeoIp};
use geomap::{Derivation, KeySpace, Map, MapMeta, MapRow, PopIndex, PopTable};
use ipnet::IpNet;
use polars::prelude::*;

use crate::aggregate::Stats;
use crate::aggregate::{Aggregates, LevelStats};
use crate::key;
use crate::logs::{self, ProbeRecord, ReportRecord, Validation, LEVELS, RESOLVER_LEVELS};
use crate::pairing::{self, Measurement};
use crate::pooling::{self, Estimate, Placement};
use crate::ranking::{coherent, PopStat};
use crate::report::{BadRows, LatencyDistribution, Report};
use crate::routes::Routes;
use crate::spill::{Partitions, Scratch};

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
    /// Share of beacon sessions (0 to 1) held out of the map and judged against it
    /// ([`crate::holdout`]); 0 uses every session.
    pub holdout: f64,
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
    /// A safety gate refused the new map against the previous one. The report says what would
    /// have moved: exactly what whoever decides on `--force` needs, so it is still written.
    #[error("refusing the map: {problems}")]
    Gate {
        /// Why.
        problems: String,
        /// The run's report, with the comparison.
        report: Box<Report>,
    },
    /// The run finished but its result is unfit: more than `--max-invalid-share` of the rows
    /// mapgen made break the map's rules, or a `--holdout` that could judge nothing. The report
    /// (naming the rows, or the sessions) is still written.
    #[error("refusing the map: {problems}")]
    Unfit {
        /// What is wrong, with counts.
        problems: String,
        /// The run's report.
        report: Box<Report>,
    },
}

fn micros(t: Option<SystemTime>) -> Option<i64> {
    t.map(|t| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
    })
}

/// The refused rows of one table for the report: invalid ones, then those outside the window.
fn bad_rows(table: &str, v: &Validation) -> Vec<BadRows> {
    v.bad
        .iter()
        .chain(&v.outside)
        .map(|(reason, (rows, samples))| BadRows {
            table: table.into(),
            reason: (*reason).into(),
            rows: *rows,
            samples: samples.clone(),
        })
        .collect()
}

/// The distributions of per-subnet medians: each subnet's fastest well-measured PoP, then each
/// PoP.
fn latency(stats: &LevelStats, pops: &PopTable, min_samples: u64) -> Vec<LatencyDistribution> {
    let mut best = Vec::new();
    let mut per_pop: Vec<Vec<f64>> = vec![Vec::new(); pops.len()];
    for s in stats.values() {
        let well = s
            .iter()
            .filter(|p| p.well_measured(min_samples))
            .filter_map(|p| Some((p.pop, p.median?)));
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
    out.extend(
        pops.iter()
            .zip(per_pop)
            .map(|(p, v)| LatencyDistribution::of(p.id.as_str(), v)),
    );
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

/// Rows stamped this far past the run's start are from the future (a wrong clock), not late.
const CLOCK_SKEW_MICROS: i64 = 300_000_000;

/// Lists and checks the files of one table: refuses the run over a bad file unless told to
/// skip bad files, and records what was left out.
fn checked_files(
    opts: &Options,
    table: &str,
    report: &mut Report,
) -> Result<logs::Files, MapgenError> {
    let files = logs::files(&opts.logs, table).map_err(|e| MapgenError::Refused(e.to_string()))?;
    if !files.bad.is_empty() && !opts.skip_bad_files {
        return Err(bad_files_error(table, &files.bad));
    }
    report
        .skipped_files
        .extend(files.bad.iter().map(ToString::to_string));
    report.copied_files.extend(
        files
            .copies
            .iter()
            .map(|(copy, first)| format!("{} = {}", copy.display(), first.display())),
    );
    if files.paths.is_empty() {
        let dir = opts.logs.join(table);
        let why = if !dir.is_dir() {
            "no such directory".to_owned()
        } else {
            "no usable .parquet file in it".to_owned()
        };
        return Err(MapgenError::Refused(format!(
            "{}: {why}; mapgen needs both dns_probe and rtt_report logs",
            dir.display()
        )));
    }
    Ok(files)
}

fn bad_files_error(table: &str, bad: &[logs::BadFile]) -> MapgenError {
    let list: Vec<String> = bad.iter().take(10).map(ToString::to_string).collect();
    let more = bad.len().saturating_sub(10);
    MapgenError::Refused(format!(
        "{} {table} files do not follow the log contract (move them aside, or rerun with --skip-bad-files):\n  {}{}",
        bad.len(),
        list.join("\n  "),
        if more > 0 { format!("\n  and {more} more") } else { String::new() }
    ))
}

/// Files among `files` whose data cannot be decoded (a corrupt page: the footer read fine),
/// found by reading each alone. Only called after a read of them all failed, so the error
/// can name the file.
fn undecodable(files: &logs::Files, columns: &[&str]) -> Vec<logs::BadFile> {
    files
        .paths
        .iter()
        .filter_map(|path| {
            let one = logs::Files {
                paths: vec![path.clone()],
                rows: 0,
                bad: Vec::new(),
                copies: Vec::new(),
            };
            logs::decode_all(&one, columns)
                .err()
                .map(|e| logs::BadFile {
                    file: path.display().to_string(),
                    problem: format!("data cannot be decoded: {e}"),
                })
        })
        .collect()
}

/// Checks the log files, then reads both tables at once into `n` partitions each: each read
/// is one thread validating behind polars' decoding, and a third prints progress. A file whose
/// data turns out corrupt is named, and left out with `--skip-bad-files` (the read restarts).
fn read(
    opts: &Options,
    pop_ids: &[String],
    scratch: &Scratch,
    progress: &(dyn Fn(&str) + Sync),
    report: &mut Report,
) -> Result<(usize, Table<ReportRecord>, Table<ProbeRecord>), MapgenError> {
    if !opts.logs.is_dir() {
        return Err(MapgenError::Refused(format!(
            "log root {}: no such directory",
            opts.logs.display()
        )));
    }
    let mut report_files = checked_files(opts, "rtt_report", report)?;
    let mut probe_files = checked_files(opts, "dns_probe", report)?;
    let now = micros(Some(SystemTime::now())).expect("some");
    let future = now + CLOCK_SKEW_MICROS;
    let window = logs::Window {
        since: micros(opts.since),
        until: micros(opts.until).map_or(future, |u| u.min(future)),
        future,
    };
    let probe_window = window.widened(logs::MAX_PAIR_GAP_MICROS);
    loop {
        // Partitions sized from the footers, so each step holds about `partition_rows` rows.
        let most = report_files.rows.max(probe_files.rows);
        let n = (most.div_ceil(opts.partition_rows.max(1)) as usize)
            .clamp(1, crate::spill::MAX_PARTITIONS);
        progress(&format!(
            "reading logs (at most {most} rows per table, {n} partition{})",
            if n == 1 { "" } else { "s" }
        ));
        let report_parts = Partitions::new(n, scratch, "reports")?;
        let probe_parts = Partitions::new(n, scratch, "probes")?;
        let seen = Arc::new(AtomicU64::new(0));
        let (done, ticks) = mpsc::channel::<()>();
        let (reports, probes) = std::thread::scope(|s| {
            let (counter, total) = (seen.clone(), report_files.rows + probe_files.rows);
            s.spawn(move || {
                // Reading is the longest step on large inputs: a line every 10 s.
                while let Err(RecvTimeoutError::Timeout) =
                    ticks.recv_timeout(Duration::from_secs(10))
                {
                    progress(&format!(
                        "read {} of at most {total} rows",
                        counter.load(Ordering::Relaxed)
                    ));
                }
            });
            let probes = s.spawn(|| {
                logs::read_probes(
                    &probe_files,
                    pop_ids,
                    probe_window,
                    probe_parts,
                    seen.clone(),
                )
            });
            let reports = logs::read_reports(
                &report_files,
                pop_ids,
                opts.max_rtt_ms,
                window,
                report_parts,
                seen.clone(),
            );
            let probes = probes.join().expect("the probe reader does not panic");
            drop(done);
            (reports, probes)
        });
        let (mut reports, mut probes) = match (reports, probes) {
            (Ok(r), Ok(p)) => (r, p),
            (r, p) => {
                // Which file? Decode each alone; polars' error names none.
                let error = r.err().or(p.err()).expect("one failed");
                progress("a log file failed to decode; checking each file");
                let bad_reports = undecodable(&report_files, logs::REPORT_COLUMNS);
                let bad_probes = undecodable(&probe_files, logs::PROBE_COLUMNS);
                if bad_reports.is_empty() && bad_probes.is_empty() {
                    return Err(error.into());
                }
                for (table, bad, files) in [
                    ("rtt_report", &bad_reports, &mut report_files),
                    ("dns_probe", &bad_probes, &mut probe_files),
                ] {
                    if bad.is_empty() {
                        continue;
                    }
                    if !opts.skip_bad_files {
                        return Err(bad_files_error(table, bad));
                    }
                    files
                        .paths
                        .retain(|p| !bad.iter().any(|b| b.file == p.display().to_string()));
                    report
                        .skipped_files
                        .extend(bad.iter().map(ToString::to_string));
                    if files.paths.is_empty() {
                        return Err(MapgenError::Refused(format!(
                            "{}: every {table} file is corrupt",
                            opts.logs.join(table).display()
                        )));
                    }
                }
                continue;
            }
        };
        for (files, w, v) in [
            (&report_files, window, &mut reports.1),
            (&probe_files, probe_window, &mut probes.1),
        ] {
            for (reason, rows, sample, invalid) in logs::outside_window(files, w)? {
                v.outside(reason, rows, sample, invalid);
            }
        }
        return Ok((n, reports, probes));
    }
}

/// Parses a share (a number from 0 to 1), the form of every `--max-*-share` option. NaN,
/// infinities and numbers outside [0, 1] would switch a safety gate off or make it refuse
/// everything, so they are refused.
pub fn parse_share(text: &str) -> Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    check_share(v)
}

fn check_share(v: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not a share from 0 to 1"))
    }
}

/// The client networks the map places, located by GeoIP, with their first PoP: the most
/// sampled first, at most [`crate::report::MAX_CATCHMENT`].
fn catchment(rows: &[MapRow], pops: &PopTable, g: &GeoIp) -> Vec<crate::report::CatchmentPoint> {
    let mut placed: Vec<&MapRow> = rows
        .iter()
        .filter(|r| r.key_space == KeySpace::Client)
        .filter(|r| {
            matches!(
                r.derivation,
                Derivation::Measured | Derivation::Modeled | Derivation::Routed
            )
        })
        .collect();
    placed.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.prefix.cmp(&b.prefix)));
    placed
        .into_iter()
        .filter_map(|r| {
            let loc = g.locate(r.prefix.addr()).ok()?;
            Some(crate::report::CatchmentPoint {
                lat: loc.lat,
                lon: loc.lon,
                pop: pops.get(*r.pops.first()?).id.to_string(),
                samples: r.samples,
            })
        })
        .take(crate::report::MAX_CATCHMENT)
        .collect()
}

/// The order where nothing was measured, as the server falls back: nearest PoPs by GeoIP,
/// then the default order; the default order alone where GeoIP cannot place `net`.
fn fallback_order(opts: &Options, geoip: Option<&GeoIp>, net: IpNet) -> Vec<PopIndex> {
    match geoip.map(|g| g.locate(net.addr())) {
        Some(Ok(loc)) => {
            let mut order = rank_by_distance(&opts.pops, loc.lat, loc.lon);
            order.extend(
                opts.default_order
                    .iter()
                    .filter(|p| !order.contains(p))
                    .collect::<Vec<_>>(),
            );
            order
        }
        _ => opts.default_order.clone(),
    }
}

/// The prefix of `net`'s address at `v4`/`v6` bits.
fn at_len(net: IpNet, v4: u8, v6: u8) -> IpNet {
    let len = if matches!(net, IpNet::V4(_)) { v4 } else { v6 };
    IpNet::new(net.addr(), len.min(net.prefix_len())).map_or(net, |n| n.trunc())
}

/// The map rows from pooled estimates (see [`pooling`]): a row for every measured client key
/// and resolver, routed prefixes and coherent fixed aggregates for the space between, and a
/// modeled row for each GeoIP network inside a measured group that nobody measured.
fn pooled_rows(
    opts: &Options,
    stats: &Stats,
    routes: &Routes,
    geoip: Option<&GeoIp>,
    report: &mut Report,
) -> Vec<MapRow> {
    let pops: Vec<Option<(f64, f64)>> = opts.pops.iter().map(|p| p.lat.zip(p.lon)).collect();
    let fallback = |net: IpNet| fallback_order(opts, geoip, net);
    let locate = |net: IpNet| -> Option<(f64, f64)> {
        let loc = geoip?.locate(net.addr()).ok()?;
        (loc.lat.is_finite() && loc.lon.is_finite()).then_some((loc.lat, loc.lon))
    };
    // Neighbours share the routed prefix (one network) where routes cover the key, else the
    // fixed coarse aggregate; fixed aggregate rows also use the middle level.
    let (coarse, middle) = (LEVELS[LEVELS.len() - 1], LEVELS[1]);
    let routed = |net: IpNet| -> Option<IpNet> {
        key::of_ip(net.addr())
            .and_then(|k| routes.covering(k))
            .map(|id| routes.net(id))
            .filter(|r| r.prefix_len() <= net.prefix_len())
    };
    let units = |net: IpNet| -> Vec<IpNet> {
        match routed(net) {
            Some(r) => vec![r],
            None => {
                let mut u = vec![at_len(net, coarse.0, coarse.1)];
                let mid = if matches!(net, IpNet::V4(_)) {
                    middle.0
                } else {
                    middle.1
                };
                if net.prefix_len() >= mid {
                    u.push(at_len(net, middle.0, middle.1));
                }
                u
            }
        }
    };
    let place = |net: IpNet| Placement {
        at: locate(net),
        within: units(net).first().copied(),
    };
    let clients = pooling::clients(&stats.client, &pops, &place);
    report.pooling = Some(crate::report::Pooling {
        noise_log_var: clients.sigma2,
        subnet_spread_log_var: clients.tau2.clone(),
        relocated_subnets: clients.relocated as u64,
    });
    let mut rows: Vec<MapRow> = Vec::new();
    let mut checked = RowCheck::default();
    let mut keep = |rows: &mut Vec<MapRow>, r: MapRow| checked.keep(rows, r, &opts.pops);
    let row = |space: KeySpace, prefix: IpNet, e: &Estimate, derivation: Derivation| {
        let (pops, rtt_ms) = e.ranking(&fallback(prefix));
        let own_share = pops
            .iter()
            .map(|&p| {
                let p = usize::from(p);
                e.rtt[p].map(|_| e.own[p] as f32)
            })
            .collect();
        MapRow {
            key_space: space,
            prefix,
            pops,
            rtt_ms,
            samples: e.samples,
            derivation,
            own_share,
        }
    };
    for (net, e) in &clients.keys {
        if e.samples >= opts.min_samples {
            keep(
                &mut rows,
                row(KeySpace::Client, *net, e, Derivation::Measured),
            );
        }
    }
    // Group rows: the sample-weighted mean of the measured keys inside, for space inside the
    // group that GeoIP cannot place. A fixed aggregate only where the subnets measured inside
    // agree with it (a fixed /16 can mix cities); a routed prefix is one network.
    let mut members: BTreeMap<IpNet, Vec<&Estimate>> = BTreeMap::new();
    let mut routed_units = std::collections::HashSet::new();
    for (net, e) in &clients.keys {
        routed_units.extend(routed(*net));
        for u in units(*net) {
            members.entry(u).or_default().push(e);
        }
    }
    for (unit, inside) in &members {
        let e = mean_estimate(inside, pops.len());
        let routed = routed_units.contains(unit);
        let r = row(
            KeySpace::Client,
            *unit,
            &e,
            if routed {
                Derivation::Routed
            } else {
                Derivation::Aggregated
            },
        );
        if routed || coherent(r.pops[0], children(&stats.client, *unit), opts.min_samples) {
            keep(&mut rows, r);
        } else {
            report.incoherent_aggregates += 1;
        }
    }
    // Modeled rows: every network GeoIP knows inside a measured group's coarse unit.
    if let Some(g) = geoip {
        let measured: std::collections::HashSet<IpNet> = clients.keys.keys().copied().collect();
        let coarse_units: std::collections::BTreeSet<IpNet> = clients
            .keys
            .keys()
            .filter_map(|k| units(*k).first().copied())
            .collect();
        for unit in coarse_units {
            for net in geoip_networks(g, unit) {
                if measured.contains(&net) {
                    continue;
                }
                let e = clients.predict(&pops, net, place(net));
                if e.rtt.iter().any(Option::is_some) {
                    keep(
                        &mut rows,
                        row(KeySpace::Client, net, &e, Derivation::Modeled),
                    );
                }
            }
        }
    }
    // Resolvers, from the clients behind them.
    let (addresses, groups) = pooling::resolvers(
        &stats.populations,
        &clients,
        pops.len(),
        stats.pairings_per_session,
        &|a| at_len(a, RESOLVER_LEVELS[1].0, RESOLVER_LEVELS[1].1),
    );
    for (net, e) in &groups {
        if e.samples >= opts.min_samples {
            keep(
                &mut rows,
                row(KeySpace::Resolver, *net, e, Derivation::Aggregated),
            );
        }
    }
    for (net, e) in &addresses {
        if e.samples >= opts.min_samples {
            keep(
                &mut rows,
                row(KeySpace::Resolver, *net, e, Derivation::Measured),
            );
        }
    }
    report.left_out_rows = checked.left_out;
    report.left_out_samples = checked.samples;
    rows
}

/// The rows mapgen left out because they break the map reader's rules.
#[derive(Default)]
struct RowCheck {
    left_out: u64,
    samples: Vec<String>,
}

impl RowCheck {
    /// Keeps `r` in `rows` if the reader would accept it ([`MapRow::problems`]): every row is
    /// checked where it is made, with the reader's own rule, so one that breaks it is left out
    /// and named, never written for the writer (or a server) to refuse, and never the reason
    /// a finished run writes nothing.
    fn keep(&mut self, rows: &mut Vec<MapRow>, r: MapRow, pops: &PopTable) {
        let problems = r.problems(pops);
        let Some((field, problem)) = problems.first() else {
            rows.push(r);
            return;
        };
        self.left_out += 1;
        if self.samples.len() < crate::report::MAX_LEFT_OUT_SAMPLES {
            self.samples.push(format!(
                "{} {} ({}): {field}: {problem}",
                r.key_space, r.prefix, r.derivation
            ));
        }
    }
}

/// The sample-weighted mean of several keys' estimates, and of how much of each came from
/// the keys' own samples (an aggregate's data is its measured keys').
fn mean_estimate(inside: &[&Estimate], npops: usize) -> Estimate {
    let mut e = Estimate {
        rtt: vec![None; npops],
        own: vec![0.0; npops],
        failing: vec![false; npops],
        samples: inside.iter().map(|e| e.samples).sum(),
    };
    for p in 0..npops {
        let (mut s, mut own, mut w) = (0.0, 0.0, 0.0);
        for k in inside {
            if let Some(r) = k.rtt[p] {
                let weight = k.samples.max(1) as f64;
                s += weight * r;
                own += weight * k.own[p];
                w += weight;
            }
        }
        if w > 0.0 {
            e.rtt[p] = Some(s / w);
            e.own[p] = own / w;
        }
    }
    e
}

/// The networks a GeoIP database has inside `unit`, clipped to it, each at most as specific as
/// a client key (/24, /48).
fn geoip_networks(g: &GeoIp, unit: IpNet) -> Vec<IpNet> {
    let (v4, v6) = LEVELS[0];
    let finest = if matches!(unit, IpNet::V4(_)) { v4 } else { v6 };
    let mut out = Vec::new();
    let mut next = Some(unit.network());
    while let Some(addr) = next.filter(|a| unit.contains(a)) {
        let (len, located) = match g.locate(addr) {
            Ok(loc) => (loc.prefix_len, true),
            Err(len) => (len, false),
        };
        let len = len.clamp(unit.prefix_len(), finest);
        let Ok(net) = IpNet::new(addr, len).map(|n| n.trunc()) else {
            break;
        };
        if located {
            out.push(net);
        }
        next = next_address(net.broadcast());
    }
    out
}

fn next_address(a: std::net::IpAddr) -> Option<std::net::IpAddr> {
    match a {
        std::net::IpAddr::V4(a) => u32::from(a)
            .checked_add(1)
            .map(|n| std::net::Ipv4Addr::from(n).into()),
        std::net::IpAddr::V6(a) => u128::from(a)
            .checked_add(1)
            .map(|n| std::net::Ipv6Addr::from(n).into()),
    }
}

/// Runs mapgen. `progress` is called with a line at each stage.
pub fn run(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<(Map, Report), MapgenError> {
    for (name, v) in [
        ("max_invalid_share", opts.max_invalid_share),
        ("max_moved_share", opts.max_moved_share),
        ("holdout", opts.holdout),
    ] {
        check_share(v).map_err(|e| MapgenError::Refused(format!("{name}: {e}")))?;
    }
    if opts.force && opts.previous.is_none() {
        return Err(MapgenError::Refused(
            "force without previous: there is no gate to override".into(),
        ));
    }
    let pop_ids: Vec<String> = opts.pops.iter().map(|p| p.id.to_string()).collect();
    let mut report = Report::default();

    let (scratch, stale) = Scratch::new(&opts.tmp_dir)
        .map_err(|e| MapgenError::Refused(format!("--tmp-dir {}: {e}", opts.tmp_dir.display())))?;
    if stale > 0 {
        progress(&format!(
            "removed {stale} bytes of spill files left by a run that did not finish"
        ));
    }
    report.stale_spill_bytes_removed = stale;
    let (n, (reports, rtt_v), (probes, dns_v)) =
        read(opts, &pop_ids, &scratch, progress, &mut report)?;
    progress(&format!(
        "read {} rtt_report and {} dns_probe rows",
        rtt_v.rows, dns_v.rows
    ));
    report.rtt_rows = rtt_v.rows;
    report.window = rtt_v.span.map(|(a, b)| {
        let t = |us: i64| {
            let t = std::time::UNIX_EPOCH + Duration::from_micros(us.max(0) as u64);
            humantime::format_rfc3339_seconds(t).to_string()
        };
        (t(a), t(b))
    });
    report.dns_rows = dns_v.rows;
    report.bad.extend(bad_rows("rtt_report", &rtt_v));
    report.bad.extend(bad_rows("dns_probe", &dns_v));
    if report.rtt_rows == 0 || report.dns_rows == 0 {
        return Err(MapgenError::Refused(format!(
            "the window holds {} rtt_report and {} dns_probe rows; both are needed",
            report.rtt_rows, report.dns_rows
        )));
    }
    for (table, total, bad) in [
        ("rtt_report", rtt_v.rows, rtt_v.bad_rows()),
        ("dns_probe", dns_v.rows, dns_v.bad_rows()),
    ] {
        if bad as f64 > opts.max_invalid_share * total as f64 {
            return Err(MapgenError::Refused(format!(
                "{bad} of {total} {table} rows are invalid (more than {:.0} %); see the reasons with --report",
                opts.max_invalid_share * 100.0
            )));
        }
    }

    let (mut reports, mut probes) = (reports.finish()?, probes.finish()?);
    let mut measurements = Partitions::<Measurement>::new(n, &scratch, "measurements")?;
    let mut dups = pairing::Duplicates::default();
    // The held-out sessions' measurements (`--holdout`), kept in memory to judge the map.
    let mut held: Vec<DataFrame> = Vec::new();
    for p in 0..n {
        step(progress, "pairing reports with probe queries", p, n);
        let (m, h, d) = pairing::pair(reports.take(p)?, probes.take(p)?, opts.holdout)?;
        held.extend(h);
        (dups.reports, dups.probes) = (dups.reports + d.reports, dups.probes + d.probes);
        pairing::route(m, &mut measurements)?;
    }
    for (table, rows) in [("rtt_report", dups.reports), ("dns_probe", dups.probes)] {
        if rows > 0 {
            let samples =
                vec!["the probe id, PoP and timestamp of another row; used once".to_owned()];
            report.bad.push(BadRows {
                table: table.into(),
                reason: "duplicate_row".into(),
                rows,
                samples,
            });
        }
    }
    drop((reports, probes));
    let mut measurements = measurements.finish()?;
    let routes = match &opts.routes {
        Some(path) => Routes::read(path)?,
        None => Routes::default(),
    };
    let mut aggregates = Aggregates::default();
    for p in 0..measurements.len() {
        step(progress, "aggregating", p, n);
        aggregates.add(measurements.take(p)?)?;
    }
    report.measurements = aggregates.measurements;
    if report.measurements == 0 {
        return Err(MapgenError::Refused(
            "no report pairs with a probe query (same probe id and PoP within 10 minutes)".into(),
        ));
    }
    let stats = aggregates.finish()?;
    report.client_subnets = stats.client.len() as u64;
    report.latency = latency(&stats.client, &opts.pops, opts.min_samples);
    report.resolvers = stats.populations.len() as u64;

    progress("pooling estimates");
    let geoip = opts.geoip.as_deref().map(GeoIp::open).transpose()?;
    let rows = pooled_rows(opts, &stats, &routes, geoip.as_ref(), &mut report);
    report.rows_before_compaction = rows.len() as u64;
    let made = rows.len() as u64 + report.left_out_rows;
    if report.left_out_rows as f64 > opts.max_invalid_share * made as f64 {
        return Err(MapgenError::Unfit {
            problems: format!(
                "{} of the {made} rows made break the map's rules (more than {:.0} %, --max-invalid-share); the report names the first {}",
                report.left_out_rows,
                opts.max_invalid_share * 100.0,
                report.left_out_samples.len()
            ),
            report: Box::new(report),
        });
    }

    progress("compacting");
    let rows = geomap::compact::compact(rows);
    for d in Derivation::ALL {
        let n = rows.iter().filter(|r| r.derivation == d).count() as u64;
        if n > 0 {
            report.rows_by_derivation.push((d.to_string(), n));
        }
    }
    for s in KeySpace::ALL {
        report.rows_by_key_space.push((
            s.to_string(),
            rows.iter().filter(|r| r.key_space == s).count() as u64,
        ));
    }
    for (i, p) in opts.pops.iter().enumerate() {
        report.first_choice.push((
            p.id.to_string(),
            rows.iter()
                .filter(|r| r.pops.first() == Some(&(i as PopIndex)))
                .count() as u64,
        ));
    }
    report.pops = opts
        .pops
        .iter()
        .map(|p| (p.id.to_string(), p.lat, p.lon))
        .collect();
    if let Some(g) = geoip.as_ref() {
        report.catchment = catchment(&rows, &opts.pops, g);
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
    if opts.holdout > 0.0 {
        progress("judging the map on the held-out sessions");
        let holdout = crate::holdout::evaluate(&new_map, held, opts.holdout, &|net| {
            fallback_order(opts, geoip.as_ref(), net)
        })?;
        let (sessions, judged) = (holdout.sessions, holdout.judged());
        report.holdout = Some(holdout);
        if judged == 0 {
            return Err(MapgenError::Unfit {
                problems: format!(
                    "--holdout {}: none of the {sessions} held-out sessions can judge the map (each must measure the map's first PoP and another); hold out a larger share, or check that the reports of one page view come from one client address",
                    opts.holdout
                ),
                report: Box::new(report),
            });
        }
    }
    if let Some(prev) = &opts.previous {
        progress("comparing with the previous map");
        let old = geomap::read_map(prev)
            .map_err(|e| MapgenError::Refused(format!("previous map {}: {e}", prev.display())))?;
        let weights: Vec<(IpNet, u64)> = stats
            .client
            .iter()
            .map(|(k, s)| (*k, s.iter().map(|x| x.samples).sum()))
            .collect();
        let gate = crate::gate::compare(&old, &new_map, &weights, &opts.default_order);
        let problems = gate.problems(opts.max_moved_share);
        report.gate = Some(gate);
        if !problems.is_empty() {
            if opts.force {
                report.forced = problems.clone();
            } else {
                report.refused = problems.clone();
                return Err(MapgenError::Gate {
                    problems: format!(
                        "{}; rerun with --force to write it anyway",
                        problems.join("; ")
                    ),
                    report: Box::new(report),
                });
            }
        }
    }
    Ok((new_map, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_the_reader_would_refuse_is_left_out_and_named() {
        let pops = PopTable::from_ids(&["ams", "iad"]).unwrap();
        let row = |prefix: &str, rtt: f32| MapRow {
            key_space: KeySpace::Client,
            prefix: prefix.parse().unwrap(),
            pops: vec![0, 1],
            rtt_ms: vec![Some(rtt), Some(80.0)],
            samples: 3,
            derivation: Derivation::Measured,
            own_share: vec![Some(1.0), Some(0.5)],
        };
        let mut check = RowCheck::default();
        let mut rows = Vec::new();
        check.keep(&mut rows, row("10.0.0.0/24", 12.0), &pops);
        for i in 1..=30 {
            check.keep(&mut rows, row(&format!("10.0.{i}.0/24"), -4.8), &pops);
        }
        check.keep(&mut rows, row("10.1.0.0/24", 0.0), &pops);
        assert_eq!(rows.len(), 1);
        assert_eq!(check.left_out, 31);
        assert_eq!(check.samples.len(), crate::report::MAX_LEFT_OUT_SAMPLES);
        assert_eq!(
            check.samples[0],
            "client 10.0.1.0/24 (measured): rtt_ms: -4.8 is not a latency"
        );
    }
}
