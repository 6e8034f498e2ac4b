//! One mapgen run: scan and validate the logs, pair reports with probe queries, aggregate per
//! key and PoP at each level, rank, fall back, compact, and return the map with its report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use geomap::geoip::{rank_by_distance, GeoIp};
use geomap::{Derivation, KeySpace, Map, MapMeta, MapRow, PopIndex, PopTable};
use ipnet::IpNet;
use polars::prelude::*;

use crate::logs::{self, LEVELS, MAX_PAIR_GAP_MICROS};
use crate::ranking::{rows_for_level, PopStat};
use crate::report::{BadRows, Report};

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
    /// Input that cannot make a trustworthy map.
    #[error("refusing the input: {0}")]
    Refused(String),
}

fn micros(t: Option<SystemTime>) -> Option<i64> {
    t.map(|t| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64))
}

/// Counts rows by reason in one pass: (total rows, bad rows with samples).
fn validate(table: &str, lf: &LazyFrame, sample_cols: &[&str]) -> PolarsResult<(u64, Vec<BadRows>)> {
    let counts = lf.clone().group_by([col("reason")]).agg([len().alias("rows")]).sort(["reason"], Default::default()).collect()?;
    let reasons = counts.column("reason")?.str()?.clone();
    let rows = counts.column("rows")?.u32()?.clone();
    let total = rows.iter().flatten().map(u64::from).sum();
    let bad = lf.clone().filter(col("reason").is_not_null());
    let mut out = Vec::new();
    for i in 0..counts.height() {
        let Some(reason) = reasons.get(i).map(str::to_owned) else { continue };
        let cols: Vec<Expr> = sample_cols.iter().map(|c| col(*c)).collect();
        let sample = bad.clone().filter(col("reason").eq(lit(reason.clone()))).select(cols).limit(3).collect()?;
        let samples = (0..sample.height())
            .map(|r| {
                sample_cols
                    .iter()
                    .map(|c| format!("{c}={}", sample.column(c).ok().and_then(|s| s.get(r).ok()).map_or("?".into(), |v| v.to_string())))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        out.push(BadRows { table: table.into(), reason, rows: rows.get(i).unwrap_or(0) as u64, samples });
    }
    Ok((total, out))
}

fn stat_exprs() -> Vec<Expr> {
    vec![
        len().cast(DataType::UInt64).alias("samples"),
        col("rtt_ms").median().alias("median"),
        col("rtt_ms").quantile(lit(0.9), QuantileMethod::Linear).alias("p90"),
        col("ok").not().cast(DataType::Float64).mean().alias("fail_rate"),
    ]
}

/// Reads (key, pop, samples, median, p90, fail_rate) frames into per-key stats.
fn to_stats(df: &DataFrame, key: &str, pops: &PopTable) -> PolarsResult<BTreeMap<IpNet, Vec<PopStat>>> {
    let keys = df.column(key)?.str()?.clone();
    let pop = df.column("pop")?.str()?.clone();
    let samples = df.column("samples")?.cast(&DataType::UInt64)?.u64()?.clone();
    let median = df.column("median")?.cast(&DataType::Float64)?.f64()?.clone();
    let p90 = df.column("p90")?.cast(&DataType::Float64)?.f64()?.clone();
    let fail = df.column("fail_rate")?.cast(&DataType::Float64)?.f64()?.clone();
    let mut out: BTreeMap<IpNet, Vec<PopStat>> = BTreeMap::new();
    for i in 0..df.height() {
        let (Some(k), Some(p)) = (keys.get(i), pop.get(i)) else { continue };
        let (Ok(net), Some(idx)) = (k.parse::<IpNet>(), pops.index(p)) else { continue };
        out.entry(net).or_default().push(PopStat {
            pop: idx,
            samples: samples.get(i).unwrap_or(0),
            median: median.get(i),
            p90: p90.get(i),
            fail_rate: fail.get(i).unwrap_or(0.0),
        });
    }
    Ok(out)
}

/// Runs mapgen. `progress` is called with a line at each stage.
pub fn run(opts: &Options, progress: &dyn Fn(&str)) -> Result<(Map, Report), MapgenError> {
    let pop_ids: Vec<String> = opts.pops.iter().map(|p| p.id.to_string()).collect();
    let (since, until) = (micros(opts.since), micros(opts.until));
    let mut report = Report::default();

    progress("scanning logs");
    let rtt = logs::rtt_reports(&opts.logs, &pop_ids, opts.max_rtt_ms, since, until)?;
    let dns = logs::dns_probes(&opts.logs, &pop_ids, since, until)?;
    progress("validating");
    let (rtt_rows, rtt_bad) = validate("rtt_report", &rtt, &["probe_id", "pop", "client_ip", "rtt_ms", "ok"])?;
    let (dns_rows, dns_bad) = validate("dns_probe", &dns, &["probe_id", "pop", "resolver_ip"])?;
    report.rtt_rows = rtt_rows;
    report.dns_rows = dns_rows;
    report.bad.extend(rtt_bad);
    report.bad.extend(dns_bad);
    if report.rtt_rows == 0 || report.dns_rows == 0 {
        return Err(MapgenError::Refused(format!(
            "the window holds {} rtt_report and {} dns_probe rows; both are needed",
            report.rtt_rows, report.dns_rows
        )));
    }
    for (table, total) in [("rtt_report", report.rtt_rows), ("dns_probe", report.dns_rows)] {
        let bad = report.bad_total(table);
        if bad as f64 > opts.max_invalid_share * total as f64 {
            return Err(MapgenError::Refused(format!(
                "{bad} of {total} {table} rows are invalid (more than {:.0} %); see the reasons with --report",
                opts.max_invalid_share * 100.0
            )));
        }
    }

    progress("pairing reports with probe queries");
    let mut rtt_cols = vec![col("ts").cast(DataType::Int64).alias("ts_r"), col("probe_id"), col("pop"), col("rtt_ms"), col("ok")];
    rtt_cols.extend((0..LEVELS.len()).map(|i| col(format!("client_l{i}"))));
    let reports = rtt.filter(col("reason").is_null()).select(rtt_cols);
    let probes = dns.filter(col("reason").is_null()).select([
        col("ts").cast(DataType::Int64).alias("ts_d"),
        col("probe_id"),
        col("pop"),
        col("resolver"),
        col("resolver_l0"),
    ]);
    let m = reports
        .join(probes, [col("probe_id"), col("pop")], [col("probe_id"), col("pop")], JoinArgs::new(JoinType::Inner))
        .filter((col("ts_r") - col("ts_d")).abs().lt_eq(lit(MAX_PAIR_GAP_MICROS)))
        // Only what the aggregations need: the probe id and timestamps have done their job.
        .select([col("pop"), col("rtt_ms"), col("ok"), col("client_l0"), col("client_l1"), col("client_l2"), col("resolver"), col("resolver_l0")])
        .collect()?;
    report.measurements = m.height() as u64;
    if m.height() == 0 {
        return Err(MapgenError::Refused("no report pairs with a probe query (same probe id and PoP within 10 minutes)".into()));
    }

    progress("aggregating");
    let mut client_levels = Vec::new();
    for i in 0..LEVELS.len() {
        let key = format!("client_l{i}");
        let df = m.clone().lazy().group_by([col(&key), col("pop")]).agg(stat_exprs()).collect()?;
        client_levels.push(to_stats(&df, &key, &opts.pops)?);
    }
    // Resolvers: first a median per (resolver, client subnet, PoP), then the median of those
    // over the resolver's client subnets, so each client population counts once however loud.
    let mut resolver_levels = Vec::new();
    for key in ["resolver", "resolver_l0"] {
        let df = m
            .clone()
            .lazy()
            .group_by([col(key), col("client_l0"), col("pop")])
            .agg([
                col("rtt_ms").median().alias("client_median"),
                len().cast(DataType::UInt64).alias("n"),
                col("ok").not().cast(DataType::Float64).mean().alias("client_fail"),
            ])
            .group_by([col(key), col("pop")])
            .agg([
                col("n").sum().alias("samples"),
                col("client_median").median().alias("median"),
                col("client_median").quantile(lit(0.9), QuantileMethod::Linear).alias("p90"),
                col("client_fail").mean().alias("fail_rate"),
            ])
            .collect()?;
        resolver_levels.push(to_stats(&df, key, &opts.pops)?);
    }
    report.client_subnets = client_levels[0].len() as u64;
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
        rows.extend(r);
        if i == 0 {
            thin_clients = thin;
        }
    }
    for (i, stats) in resolver_levels.iter().enumerate() {
        let derivation = if i == 0 { Derivation::Measured } else { Derivation::Aggregated };
        rows.extend(rows_for_level(KeySpace::Resolver, derivation, stats, opts.min_samples, &fallback).0);
    }
    // Thin client subnets that no aggregate covers: nearest PoPs by GeoIP, if we can locate them.
    if let Some(g) = &geoip {
        let covered = |net: &IpNet| rows.iter().any(|r| r.key_space == KeySpace::Client && r.prefix.contains(net));
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
