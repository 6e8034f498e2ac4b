//! `geodns mapgen`: options, loading the PoPs from the server config, progress, and output.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Args;
use geomap::PopIndex;

#[derive(Args)]
pub struct MapgenArgs {
    /// Server config: the PoPs (with coordinates), default order and GeoIP database come from it.
    #[arg(short, long, default_value_os_t = crate::default_config("geodns.toml"))]
    config: PathBuf,
    /// Log root with dns_probe/ and rtt_report/.
    #[arg(long, default_value = "data/beacon-logs")]
    logs: PathBuf,
    /// The map to write.
    #[arg(long, default_value = "data/measured-map.arrow")]
    out: PathBuf,
    /// Use reports from this time on (RFC 3339, e.g. 2026-11-25T00:00:00Z).
    #[arg(long, conflicts_with = "days")]
    since: Option<String>,
    /// Use reports before this time (RFC 3339). Default: now.
    #[arg(long)]
    until: Option<String>,
    /// Use the last N days of reports.
    #[arg(long)]
    days: Option<u64>,
    /// GeoIP (MaxMind City) database; default: the config's `geoip`.
    #[arg(long)]
    geoip: Option<PathBuf>,
    /// Samples a client subnet or resolver needs for a row of its own. Below it, the key is
    /// answered by its neighbours and the latency model. Every sample counts anyway: a key's
    /// own data is weighed against its neighbours' by how many samples it has (pooling).
    #[arg(long, default_value_t = 1)]
    min_samples: u64,
    /// Hold this share of beacon sessions (0 to 1) out of the map and report how the map does
    /// on them: how often its first PoP is the session's measured fastest, or within 5 ms, and
    /// the mean regret, per key space and derivation. The map is built from the rest.
    #[arg(long, default_value_t = 0.0, value_parser = geodns_mapgen::parse_share)]
    holdout: f64,
    /// RTTs above this (ms) are refused as absurd.
    #[arg(long, default_value_t = 30_000.0)]
    max_rtt_ms: f64,
    /// Refuse input in which more than this share of rows is invalid (0 to 1), and a map when
    /// more than this share of the rows mapgen made break the map's rules (such rows are left
    /// out and named in the summary and report either way; a refused run still writes its
    /// report).
    #[arg(long, default_value_t = 0.5, value_parser = geodns_mapgen::parse_share)]
    max_invalid_share: f64,
    /// The map now serving: refuse a new one that moves too much traffic or loses coverage.
    #[arg(long)]
    previous: Option<PathBuf>,
    /// With --previous: the largest share of measured traffic (by samples) allowed to change
    /// PoP (0 to 1).
    #[arg(long, default_value_t = 0.2, value_parser = geodns_mapgen::parse_share)]
    max_moved_share: f64,
    /// Write the map even if the --previous gate objects (the report says which).
    #[arg(long, requires = "previous")]
    force: bool,
    /// Rows per table in one partition: larger logs are split into partitions that spill to
    /// --tmp-dir (at most 256), and each step holds one at a time, so memory grows with this,
    /// not with the logs. Small partitions are also faster (they fit the caches).
    #[arg(long, default_value_t = 2_000_000)]
    partition_rows: u64,
    /// A routing-table prefix list (one prefix per line): thin client subnets borrow from
    /// their routed prefix, which is one network, before the fixed /20 and /16 levels.
    #[arg(long)]
    routes: Option<PathBuf>,
    /// Where partitions spill (default: the system's temporary directory).
    #[arg(long)]
    tmp_dir: Option<PathBuf>,
    /// Leave out log files that are not readable Parquet with the contract's columns (they are
    /// listed in the summary and report) instead of refusing the run.
    #[arg(long)]
    skip_bad_files: bool,
    /// Write the report as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the report as an HTML page (with a plot of the latency distributions) here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Start from the first stage's output saved in DIR (by `--save-aggregates`, or another
    /// engine writing the same layout, docs/mapgen.md) instead of the logs: pooling, ranking,
    /// compaction, the holdout judgement and the gate run here as usual.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["since", "days", "skip_bad_files"])]
    aggregates: Option<PathBuf>,
    /// Also save the first stage's output in DIR (the statistics per client subnet and PoP, the
    /// resolvers' populations, the held-out sessions, what was read and refused).
    #[arg(long, value_name = "DIR")]
    save_aggregates: Option<PathBuf>,
    /// Generation id to record (default: derived from the creation time).
    #[arg(long)]
    generation: Option<String>,
    /// Creation time to record (RFC 3339; default now). Fixed, it makes the map byte-identical
    /// for the same input.
    #[arg(long)]
    created_at: Option<String>,
}

fn time(flag: &str, v: &str) -> anyhow::Result<SystemTime> {
    humantime::parse_rfc3339_weak(v)
        .with_context(|| format!("--{flag} {v:?}: want RFC 3339, e.g. 2026-11-25T00:00:00Z"))
}

pub fn run(a: MapgenArgs) -> anyhow::Result<()> {
    let cfg = geodns_server::config::Config::read(&a.config)?;
    let pops = cfg.pop_table();
    let default_order: Vec<PopIndex> = cfg
        .default_order
        .iter()
        .filter_map(|p| pops.index(p.as_str()))
        .collect();
    let now = SystemTime::now();
    let until = a.until.as_deref().map(|v| time("until", v)).transpose()?;
    let since = match (&a.since, a.days) {
        (Some(v), _) => Some(time("since", v)?),
        (None, Some(d)) => Some(until.unwrap_or(now) - Duration::from_secs(d * 86_400)),
        (None, None) => None,
    };
    let created_at = match &a.created_at {
        Some(t) => {
            time("created-at", t)?;
            t.clone()
        }
        None => humantime::format_rfc3339_seconds(now).to_string(),
    };
    let opts = geodns_mapgen::Options {
        logs: a.logs.clone(),
        since,
        until,
        pops,
        default_order,
        geoip: a.geoip.or(cfg.geoip),
        min_samples: a.min_samples,
        holdout: a.holdout,
        max_rtt_ms: a.max_rtt_ms,
        max_invalid_share: a.max_invalid_share,
        previous: a.previous.clone(),
        max_moved_share: a.max_moved_share,
        force: a.force,
        skip_bad_files: a.skip_bad_files,
        partition_rows: a.partition_rows,
        routes: a.routes.clone(),
        aggregates: a.aggregates.clone(),
        save_aggregates: a.save_aggregates.clone(),
        tmp_dir: a.tmp_dir.clone().unwrap_or_else(std::env::temp_dir),
        // Unique per run: the creation time to the second, and a random part (two runs in one
        // second once got one id, and a server's status said the same map for both).
        generation: a.generation.clone().unwrap_or_else(|| {
            use std::hash::{BuildHasher, Hasher};
            let nonce = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish() as u32;
            format!("mapgen-{}-{nonce:08x}", created_at.replace([':', '-'], ""))
        }),
        created_at,
    };
    let outputs = (a.report.clone(), a.html.clone());
    let started = Instant::now();
    let progress =
        |stage: &str| eprintln!("mapgen: {stage} ({:.1} s)", started.elapsed().as_secs_f64());
    let (map, report) = match geodns_mapgen::run(&opts, &progress) {
        Ok(done) => done,
        Err(
            geodns_mapgen::MapgenError::Gate { problems, report }
            | geodns_mapgen::MapgenError::Unfit { problems, report },
        ) => {
            // No map, but the report: what someone deciding on --force (or looking into the
            // rows left out) needs to see.
            let title = format!(
                "mapgen: map REFUSED, {} not written (it would have been generation {})",
                a.out.display(),
                opts.generation
            );
            write_reports(&outputs, &report, &title)?;
            print!("{}", report.summary());
            anyhow::bail!(
                "mapgen on {}: refusing the map: {problems}{}",
                a.logs.display(),
                if outputs.0.is_some() || outputs.1.is_some() {
                    " (the report says why)"
                } else {
                    ""
                }
            );
        }
        Err(e) => return Err(e).with_context(|| format!("mapgen on {}", a.logs.display())),
    };
    geomap::write_map(&a.out, &map).with_context(|| format!("writing {}", a.out.display()))?;
    let title = format!(
        "mapgen: {} (generation {})",
        a.out.display(),
        map.meta.generation
    );
    write_reports(&outputs, &report, &title)?;
    print!("{}", report.summary());
    println!(
        "map         {} ({} rows, generation {}) in {:.1} s",
        a.out.display(),
        map.rows.len(),
        map.meta.generation,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes the JSON report (`--report`) and the HTML page (`--html`), each whole or not at all.
fn write_reports(
    outputs: &(Option<PathBuf>, Option<PathBuf>),
    report: &geodns_mapgen::Report,
    title: &str,
) -> anyhow::Result<()> {
    if let Some(path) = &outputs.0 {
        let json = serde_json::to_string_pretty(report)?;
        geomap::atomic_file::write(path, |f| f.write_all(json.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &outputs.1 {
        let html = geodns_mapgen::html::render(report, title);
        geomap::atomic_file::write(path, |f| f.write_all(html.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
