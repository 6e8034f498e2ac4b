//! One mapgen run, in order: the options checked, the logs read ([`crate::input`]), reports
//! paired with probe queries, aggregated per key and PoP, pooled into rows
//! ([`crate::rows`]), compacted, judged on held-out sessions, gated against the previous map;
//! the report filled in at each step.

use std::time::{Duration, SystemTime};

use geomap::geoip::GeoIp;
use geomap::{Derivation, KeySpace, Map, MapMeta, MapRow, PopIndex, PopTable};
use ipnet::IpNet;
use polars::prelude::*;

use crate::aggregate::{Aggregates, LevelStats};
use crate::input;
use crate::options::{check_share, MapgenError, Options};
use crate::pairing::{self, Measurement};
use crate::partition::{Partitions, Scratch};
use crate::report::{BadRows, LatencyDistribution, Report};
use crate::routes::Routes;
use crate::rows::{fallback_order, pooled_rows};

/// Progress through `n` partitions: the first, then about every tenth.
fn step(progress: &(dyn Fn(&str) + Sync), what: &str, p: usize, n: usize) {
    if n == 1 {
        progress(what);
    } else if p == 0 || (p + 1) % n.div_ceil(10) == 0 || p + 1 == n {
        progress(&format!("{what}, partition {}/{n}", p + 1));
    }
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

/// The client networks the map places (measured, aggregated, routed and modeled rows), located
/// by GeoIP, with their first PoP: the most sampled first, at most
/// [`crate::report::MAX_CATCHMENT`].
fn catchment(rows: &[MapRow], pops: &PopTable, g: &GeoIp) -> Vec<crate::report::CatchmentPoint> {
    let mut placed: Vec<&MapRow> = rows
        .iter()
        .filter(|r| r.key_space == KeySpace::Client)
        .filter(|r| {
            matches!(
                r.derivation,
                Derivation::Measured
                    | Derivation::Aggregated
                    | Derivation::Routed
                    | Derivation::Modeled
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

/// The first stage: the logs read and checked, reports paired with probe queries (the
/// held-out sessions set aside), and the statistics per client subnet and PoP and per
/// resolver ([`crate::aggregates`] is its output on disk). Fills the report's input figures.
fn first_stage(
    opts: &Options,
    progress: &(dyn Fn(&str) + Sync),
    report: &mut Report,
) -> Result<(crate::aggregate::Stats, Vec<DataFrame>), MapgenError> {
    let pop_ids: Vec<String> = opts.pops.iter().map(|p| p.id.to_string()).collect();
    let (scratch, stale) = Scratch::new(&opts.tmp_dir)
        .map_err(|e| MapgenError::Refused(format!("--tmp-dir {}: {e}", opts.tmp_dir.display())))?;
    if stale > 0 {
        progress(&format!(
            "removed {stale} bytes of spill files left by a run that did not finish"
        ));
    }
    report.stale_spill_bytes_removed = stale;
    let (n, (reports, rtt_v), (probes, dns_v)) =
        input::read(opts, &pop_ids, &scratch, progress, report)?;
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
    for (table, v) in [("rtt_report", &rtt_v), ("dns_probe", &dns_v)] {
        let (bad, outside) = input::bad_rows(table, v);
        report.bad.extend(bad);
        report.outside_window.extend(outside);
    }
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
    Ok((aggregates.finish()?, held))
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
    let mut report = Report::default();

    // The first stage (most of the cost): from the logs, or from its saved output.
    let (stats, held, (since, until)) = match &opts.aggregates {
        Some(dir) => {
            progress(&format!("reading the aggregates in {}", dir.display()));
            crate::aggregates::read(dir, opts, &mut report)?
        }
        None => {
            let (stats, held) = first_stage(opts, progress, &mut report)?;
            (stats, held, (opts.since, opts.until))
        }
    };
    if let Some(dir) = &opts.save_aggregates {
        crate::aggregates::write(dir, opts, &stats, &held, &report)?;
    }
    let routes = match &opts.routes {
        Some(path) => Routes::read(path)?,
        None => Routes::default(),
    };
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
    match geoip.as_ref() {
        Some(g) => {
            report.catchment = catchment(&rows, &opts.pops, g);
            if report.catchment.is_empty() {
                report.catchment_missing =
                    Some("GeoIP locates none of the client networks the map places".to_owned());
            }
        }
        None => {
            report.catchment_missing = Some(
                "no GeoIP database (the config's geoip or --geoip) to place client networks"
                    .to_owned(),
            )
        }
    }
    let fmt = |t: Option<SystemTime>| t.map(|t| humantime::format_rfc3339_seconds(t).to_string());
    let new_map = Map {
        meta: MapMeta {
            generation: opts.generation.clone(),
            created_at: opts.created_at.clone(),
            source_from: fmt(since),
            source_until: fmt(until),
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
    let weights: Vec<(IpNet, u64)> = stats
        .client
        .iter()
        .map(|(k, s)| (*k, s.iter().map(|x| x.samples).sum()))
        .collect();
    let table = geomap::AnswerTable::build(&new_map, Some(&opts.default_order));
    report.traffic_share = crate::gate::traffic_share(&new_map, &table, &weights);
    if let Some(prev) = &opts.previous {
        progress("comparing with the previous map");
        let old = geomap::read_map(prev)
            .map_err(|e| MapgenError::Refused(format!("previous map {}: {e}", prev.display())))?;
        let mut gate = crate::gate::compare(&old, &new_map, &weights, &opts.default_order);
        gate.previous = prev.display().to_string();
        gate.previous_generation = old.meta.generation.clone();
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
