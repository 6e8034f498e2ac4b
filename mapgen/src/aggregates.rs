//! The first stage's output as files: what mapgen computes from the logs before it pools,
//! ranks and compacts (the statistics per client subnet and PoP, each resolver's population,
//! the held-out sessions, and what the stage read and refused), in a documented layout
//! (docs/mapgen.md, "The aggregates") that `geodns mapgen --aggregates DIR` starts from and
//! `--save-aggregates DIR` writes. The first stage is most of mapgen's cost and its output is
//! small, so it is the stage another engine can run where the logs are.
//!
//! A directory holds `client_stats.parquet`, `populations.parquet`, `held.parquet` (with
//! `--holdout`) and `meta.json`, which carries the schema version and the options the stage
//! ran with; starting from aggregates made with other PoPs or another holdout share is
//! refused, since the map would not be the one the logs give.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use geomap::PopIndex;
use ipnet::IpNet;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::aggregate::Stats;
use crate::options::{MapgenError, Options};
use crate::ranking::PopStat;
use crate::report::{BadRows, Report};

/// The layout version this code writes and reads (`meta.json`'s `schema`).
pub const SCHEMA: u32 = 2;

/// `meta.json`: the layout's version, what the stage ran with, and what it read and refused.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The PoP ids, in the order the stage indexed them.
    pub pops: Vec<String>,
    /// The share of sessions held out (`--holdout`).
    pub holdout: f64,
    /// RTTs above this were refused (`--max-rtt-ms`).
    pub max_rtt_ms: f64,
    /// The window asked for, RFC 3339 (`--since`, `--until`), if bounded.
    pub since: Option<String>,
    /// See `since`.
    pub until: Option<String>,
    /// Pairings per beacon session (how many PoPs a session measured, on average).
    pub pairings_per_session: f64,
    /// What the stage read and refused, for the report.
    pub input: Input,
}

/// The first stage's part of the report.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// dns_probe rows read in the window.
    pub dns_rows: u64,
    /// rtt_report rows read in the window.
    pub rtt_rows: u64,
    /// Log files left out (`--skip-bad-files`), with why.
    pub skipped_files: Vec<String>,
    /// Log files that repeat another byte for byte.
    pub copied_files: Vec<String>,
    /// Refused rows by table and reason.
    pub bad: Vec<BadRows>,
    /// Valid rows outside the window.
    pub outside_window: Vec<BadRows>,
    /// Pairings made.
    pub measurements: u64,
    /// The oldest and newest report used.
    pub window: Option<(String, String)>,
}

impl Input {
    /// The first stage's figures from a report.
    pub fn of(r: &Report) -> Input {
        Input {
            dns_rows: r.dns_rows,
            rtt_rows: r.rtt_rows,
            skipped_files: r.skipped_files.clone(),
            copied_files: r.copied_files.clone(),
            bad: r.bad.clone(),
            outside_window: r.outside_window.clone(),
            measurements: r.measurements,
            window: r.window.clone(),
        }
    }

    /// Puts them into a report.
    pub fn into_report(self, r: &mut Report) {
        r.dns_rows = self.dns_rows;
        r.rtt_rows = self.rtt_rows;
        r.skipped_files = self.skipped_files;
        r.copied_files = self.copied_files;
        r.bad = self.bad;
        r.outside_window = self.outside_window;
        r.measurements = self.measurements;
        r.window = self.window;
    }
}

fn rfc3339(t: Option<std::time::SystemTime>) -> Option<String> {
    t.map(|t| humantime::format_rfc3339_micros(t).to_string())
}

/// Writes the first stage's output into `dir` (created if missing; files replaced whole).
pub fn write(
    dir: &Path,
    opts: &Options,
    stats: &Stats,
    held: &[DataFrame],
    report: &Report,
) -> Result<(), MapgenError> {
    let io = |what: &str, e: std::io::Error| {
        MapgenError::Refused(format!("--save-aggregates {}: {what}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| io("creating it", e))?;
    // meta.json goes first and comes back last: a run that dies half way leaves tables
    // without it, which `--aggregates` refuses, never new tables under an old meta.json.
    match std::fs::remove_file(dir.join("meta.json")) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("meta.json", e)),
    }
    let id = |p: PopIndex| opts.pops.get(p).id.to_string();

    let mut keys = Vec::new();
    let mut pops = Vec::new();
    let (mut samples, mut median, mut p90, mut fail, mut log_var) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (net, list) in &stats.client {
        for s in list {
            keys.push(net.to_string());
            pops.push(id(s.pop));
            samples.push(s.samples as i64);
            median.push(s.median);
            p90.push(s.p90);
            fail.push(s.fail_rate);
            log_var.push(s.log_var);
        }
    }
    let mut client = DataFrame::new(
        keys.len(),
        vec![
            Column::new("client".into(), keys),
            Column::new("pop".into(), pops),
            Column::new("samples".into(), samples),
            Column::new("median_ms".into(), median),
            Column::new("p90_ms".into(), p90),
            Column::new("fail_rate".into(), fail),
            Column::new("log_var".into(), log_var),
        ],
    )?;
    parquet(dir, "client_stats.parquet", &mut client)?;

    let (mut resolvers, mut clients, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for (resolver, population) in &stats.populations {
        for (c, n) in population {
            resolvers.push(resolver.to_string());
            clients.push(c.to_string());
            counts.push(*n);
        }
    }
    let mut populations = DataFrame::new(
        resolvers.len(),
        vec![
            Column::new("resolver".into(), resolvers),
            Column::new("client".into(), clients),
            Column::new("samples".into(), counts),
        ],
    )?;
    parquet(dir, "populations.parquet", &mut populations)?;

    let held_path = dir.join("held.parquet");
    if held.is_empty() {
        match std::fs::remove_file(&held_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("held.parquet", e)),
        }
    } else {
        let lfs: Vec<LazyFrame> = held.iter().cloned().map(DataFrame::lazy).collect();
        let all = concat(lfs, UnionArgs::default())?.collect()?;
        let signed = |name: &str| -> PolarsResult<Column> {
            let bits = all.column(name)?.u64()?.iter().map(|v| v.map(|v| v as i64));
            Ok(Int64Chunked::from_iter_options(name.into(), bits).into_column())
        };
        let mut all = DataFrame::new(
            all.height(),
            vec![
                signed("client")?,
                signed("resolver")?,
                all.column("pop")?.cast(&DataType::Int16)?,
                all.column("rtt")?.clone(),
                signed("session")?,
            ],
        )?;
        parquet(dir, "held.parquet", &mut all)?;
    }

    let meta = Meta {
        schema: SCHEMA,
        pops: opts.pops.iter().map(|p| p.id.to_string()).collect(),
        holdout: opts.holdout,
        max_rtt_ms: opts.max_rtt_ms,
        since: rfc3339(opts.since),
        until: rfc3339(opts.until),
        pairings_per_session: stats.pairings_per_session,
        input: Input::of(report),
    };
    let text = serde_json::to_vec_pretty(&meta).expect("meta always serialises");
    geomap::atomic_file::write(&dir.join("meta.json"), |f| {
        std::io::Write::write_all(f, &text)
    })
    .map_err(|e| io("meta.json", e))
}

fn parquet(dir: &Path, name: &str, df: &mut DataFrame) -> Result<(), MapgenError> {
    let path = dir.join(name);
    geomap::atomic_file::write(&path, |f| {
        ParquetWriter::new(f)
            .finish(df)
            .map(|_| ())
            .map_err(std::io::Error::other)
    })
    .map_err(|e| MapgenError::Refused(format!("{}: {e}", path.display())))
}

/// The window a first stage read (since, until), as the map records it.
pub type Window = (Option<SystemTime>, Option<SystemTime>);

/// Reads the first stage's output from `dir`, checked against `opts`: the statistics, the
/// held-out sessions' measurements, the window the stage read (which the map records, as if
/// it had been asked for), and what the stage read (into `report`).
pub fn read(
    dir: &Path,
    opts: &Options,
    report: &mut Report,
) -> Result<(Stats, Vec<DataFrame>, Window), MapgenError> {
    let bad = |file: &str, problem: String| {
        MapgenError::Refused(format!("{}: {problem}", dir.join(file).display()))
    };
    let text = std::fs::read(dir.join("meta.json")).map_err(|e| bad("meta.json", e.to_string()))?;
    let meta: Meta = serde_json::from_slice(&text).map_err(|e| bad("meta.json", e.to_string()))?;
    if meta.schema != SCHEMA {
        return Err(bad(
            "meta.json",
            format!("schema {}; this mapgen reads schema {SCHEMA}", meta.schema),
        ));
    }
    let ours: Vec<String> = opts.pops.iter().map(|p| p.id.to_string()).collect();
    if meta.pops != ours {
        return Err(bad(
            "meta.json",
            format!("made for the PoPs {:?}; the config has {ours:?}", meta.pops),
        ));
    }
    for (flag, made, asked) in [
        ("max-rtt-ms", meta.max_rtt_ms, opts.max_rtt_ms),
        ("holdout", meta.holdout, opts.holdout),
    ] {
        if made != asked {
            return Err(bad(
                "meta.json",
                format!("made with --{flag} {made}; this run asks for {asked}"),
            ));
        }
    }
    for (flag, made, asked) in [
        ("since", &meta.since, rfc3339(opts.since)),
        ("until", &meta.until, rfc3339(opts.until)),
    ] {
        if asked.is_some() && made != &asked {
            return Err(bad(
                "meta.json",
                format!("made for --{flag} {made:?}; this run asks for {asked:?}"),
            ));
        }
    }

    let read_parquet = |name: &str| read_table(&dir.join(name)).map_err(|e| bad(name, e));
    let pop_index = |id: &str, file: &str| -> Result<PopIndex, MapgenError> {
        opts.pops
            .index(id)
            .ok_or_else(|| bad(file, format!("PoP {id:?} is not in meta.json's pops")))
    };

    let f = "client_stats.parquet";
    let df = read_parquet(f)?;
    let col = |name: &str| df.column(name).map_err(|e| bad(f, e.to_string()));
    let (client, pop) = (
        col("client")?.str().map_err(|e| bad(f, e.to_string()))?,
        col("pop")?.str().map_err(|e| bad(f, e.to_string()))?,
    );
    let samples = col("samples")?.i64().map_err(|e| bad(f, e.to_string()))?;
    let floats = |name: &str| -> Result<Vec<Option<f64>>, MapgenError> {
        Ok(col(name)?
            .f64()
            .map_err(|e| bad(f, format!("column {name}: {e}")))?
            .iter()
            .collect())
    };
    let (median, p90, fail, log_var) = (
        floats("median_ms")?,
        floats("p90_ms")?,
        floats("fail_rate")?,
        floats("log_var")?,
    );
    let mut stats_client: BTreeMap<IpNet, Vec<PopStat>> = BTreeMap::new();
    for i in 0..df.height() {
        let (Some(c), Some(p), Some(n), Some(fail_rate)) =
            (client.get(i), pop.get(i), samples.get(i), fail[i])
        else {
            return Err(bad(f, format!("row {i}: a required value is null")));
        };
        let net: IpNet = c
            .parse()
            .map_err(|_| bad(f, format!("row {i}: client {c:?} is not a prefix")))?;
        let samples =
            u64::try_from(n).map_err(|_| bad(f, format!("row {i}: samples {n} is negative")))?;
        stats_client.entry(net).or_default().push(PopStat {
            pop: pop_index(p, f)?,
            samples,
            median: median[i],
            p90: p90[i],
            fail_rate,
            log_var: log_var[i],
        });
    }

    let f = "populations.parquet";
    let df = read_parquet(f)?;
    let col = |name: &str| df.column(name).map_err(|e| bad(f, e.to_string()));
    let resolver = col("resolver")?.str().map_err(|e| bad(f, e.to_string()))?;
    let client = col("client")?.str().map_err(|e| bad(f, e.to_string()))?;
    let counts = col("samples")?.f64().map_err(|e| bad(f, e.to_string()))?;
    let mut populations: BTreeMap<IpNet, crate::pooling::Population> = BTreeMap::new();
    for i in 0..df.height() {
        let (Some(r), Some(c), Some(n)) = (resolver.get(i), client.get(i), counts.get(i)) else {
            return Err(bad(f, format!("row {i}: a required value is null")));
        };
        let parse = |s: &str| -> Result<IpNet, MapgenError> {
            s.parse()
                .map_err(|_| bad(f, format!("row {i}: {s:?} is not a prefix")))
        };
        populations
            .entry(parse(r)?)
            .or_default()
            .push((parse(c)?, n));
    }

    // Rows may come in any order (another engine writes part files in parallel): the
    // statistics are kept in PoP order, as the logs give them.
    for list in stats_client.values_mut() {
        list.sort_by_key(|s| s.pop);
    }
    for list in populations.values_mut() {
        list.sort_by_key(|p| p.0);
    }
    let held = if opts.holdout > 0.0 {
        let f = "held.parquet";
        let df = read_parquet(f)?;
        let unsigned = |name: &str| -> Result<Column, MapgenError> {
            Ok(df
                .column(name)
                .and_then(|c| {
                    let bits = c.i64()?.iter().map(|v| v.map(|v| v as u64));
                    Ok(UInt64Chunked::from_iter_options(name.into(), bits).into_column())
                })
                .map_err(|e| bad(f, format!("column {name}: {e}")))?
                .with_name(name.into()))
        };
        let pop = df
            .column("pop")
            .and_then(|c| c.i16().cloned())
            .map_err(|e| bad(f, format!("column pop: {e}")))?;
        if let Some(p) = pop
            .iter()
            .flatten()
            .find(|&p| p < 0 || p as usize >= opts.pops.len())
        {
            return Err(bad(f, format!("PoP index {p} is not in meta.json's pops")));
        }
        let rtt = df
            .column("rtt")
            .and_then(|c| c.f32().map(|c| c.clone().into_column()))
            .map_err(|e| bad(f, format!("column rtt: {e}")))?;
        vec![DataFrame::new(
            df.height(),
            vec![
                unsigned("client")?,
                unsigned("resolver")?,
                pop.cast(&DataType::UInt16)?.into_column(),
                rtt,
                unsigned("session")?,
            ],
        )?]
    } else {
        Vec::new()
    };
    let time = |t: &Option<String>| -> Result<Option<SystemTime>, MapgenError> {
        t.as_deref()
            .map(|t| {
                humantime::parse_rfc3339_weak(t)
                    .map_err(|e| bad("meta.json", format!("time {t:?}: {e}")))
            })
            .transpose()
    };
    let window = (time(&meta.since)?, time(&meta.until)?);
    meta.input.into_report(report);
    Ok((
        Stats {
            client: stats_client,
            populations,
            pairings_per_session: meta.pairings_per_session,
        },
        held,
        window,
    ))
}

/// Reads one table of the layout: a Parquet file, or a directory of Parquet part files (as
/// Spark writes a table; names starting with `_` or `.` are not data), concatenated.
fn read_table(path: &Path) -> Result<DataFrame, String> {
    let one = |p: &Path| -> Result<DataFrame, String> {
        let f = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
        ParquetReader::new(f)
            .finish()
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    if !path.is_dir() {
        return one(path).map_err(|e| e.replacen(&format!("{}: ", path.display()), "", 1));
    }
    let mut parts: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| e.to_string())?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    parts.retain(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        name.ends_with(".parquet") && !name.starts_with('_') && !name.starts_with('.')
    });
    parts.sort();
    let frames = parts
        .iter()
        .map(|p| one(p))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = frames.first() else {
        return Err("a directory with no .parquet part file".into());
    };
    let mut all = first.clone();
    for f in &frames[1..] {
        all.vstack_mut(f).map_err(|e| e.to_string())?;
    }
    Ok(all)
}
