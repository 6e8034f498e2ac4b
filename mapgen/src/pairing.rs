//! Pairing: each report with the probe queries of the same probe id and PoP within 10
//! minutes (each pairing counts, as the contract says). One pairing is one *measurement*: a
//! client subnet, the resolver that asked, the PoP and the RTT (none if the fetch failed).
//!
//! Reports and probes arrive partitioned by their pairing hash, so each partition pairs on its
//! own; the measurements are then re-partitioned by the client's coarsest aggregation prefix,
//! so every group the aggregation forms lies inside one partition.

use polars::prelude::*;

use crate::key;
use crate::logs::{LEVELS, MAX_PAIR_GAP_MICROS};
use crate::partition::{Partitions, Record};

/// One measurement (see the module doc). Measurements move as frames; the type gives their
/// schema.
pub struct Measurement {
    /// The client's /24 or /48 key.
    pub client: u64,
    /// The resolver's key.
    pub resolver: u64,
    /// PoP index.
    pub pop: u16,
    /// RTT in ms; `None` for a failed fetch.
    pub rtt: Option<f32>,
}

impl Record for Measurement {
    fn frame(rows: &[Self]) -> PolarsResult<DataFrame> {
        DataFrame::new(
            rows.len(),
            vec![
                UInt64Chunked::from_vec("client".into(), rows.iter().map(|r| r.client).collect())
                    .into_column(),
                UInt64Chunked::from_vec(
                    "resolver".into(),
                    rows.iter().map(|r| r.resolver).collect(),
                )
                .into_column(),
                UInt16Chunked::from_vec("pop".into(), rows.iter().map(|r| r.pop).collect())
                    .into_column(),
                Float32Chunked::from_iter_options("rtt".into(), rows.iter().map(|r| r.rtt))
                    .into_column(),
            ],
        )
    }
}

/// Rows dropped from one partition as repeats of another row.
#[derive(Debug, Default, Clone, Copy)]
pub struct Duplicates {
    /// `rtt_report` rows with the probe id, PoP and timestamp of an earlier one.
    pub reports: u64,
    /// `dns_probe` rows with the probe id, PoP and timestamp of an earlier one.
    pub probes: u64,
}

/// Pairs one partition of reports (`ReportRecord` frames) with the same partition of probe
/// queries (`ProbeRecord` frames) and returns the measurements. A row that repeats another's
/// probe id, PoP and timestamp (a log replayed, or a file copied under a new name) is the same
/// event logged twice and is used once: evidence counted twice would lift a thin subnet over
/// `--min-samples` on nothing. Every partition holds all rows of its pairing hashes, so
/// removing repeats here removes them all.
///
/// The reports carry the client's address; the measurements its /24 or /48. With `holdout`
/// above 0, the measurements of that share of sessions ([`crate::logs::session_of`]: client
/// address and report time, whatever the probe ids; [`crate::holdout::held_out`]) are
/// returned apart, with a `session` column, and left out of the rest; without it, nothing is
/// added to the measurements the map is built from.
pub fn pair(
    reports: DataFrame,
    probes: DataFrame,
    holdout: f64,
) -> PolarsResult<(DataFrame, Option<DataFrame>, Duplicates)> {
    let (r0, p0) = (reports.height(), probes.height());
    let reports = reports
        .lazy()
        .unique_generic(
            Some(vec![col("pair"), col("ts_r")]),
            UniqueKeepStrategy::Any,
        )
        .collect()?;
    let probes = probes
        .lazy()
        .unique_generic(
            Some(vec![col("pair"), col("ts_d")]),
            UniqueKeepStrategy::Any,
        )
        .collect()?;
    let dups = Duplicates {
        reports: (r0 - reports.height()) as u64,
        probes: (p0 - probes.height()) as u64,
    };
    let m = reports
        .lazy()
        .join(
            probes.lazy(),
            [col("pair")],
            [col("pair")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(
            (col("ts_r") - col("ts_d"))
                .abs()
                .lt_eq(lit(MAX_PAIR_GAP_MICROS)),
        )
        .select(if holdout > 0.0 {
            vec![
                col("client"),
                col("resolver"),
                col("pop"),
                col("rtt"),
                col("ts_r"),
            ]
        } else {
            vec![col("client"), col("resolver"), col("pop"), col("rtt")]
        })
        .collect()?;
    let (v4, v6) = LEVELS[0];
    let address = m.column("client")?.u64()?.clone();
    let mut m = m;
    m.with_column(
        address
            .apply_values(|a| key::truncate(a, v4, v6))
            .into_column(),
    )?;
    if holdout <= 0.0 {
        return Ok((m, None, dups));
    }
    let session: UInt64Chunked = address
        .iter()
        .zip(m.column("ts_r")?.i64()?.iter())
        .map(|(a, t)| Some(crate::logs::session_of(a?, t?)))
        .collect();
    let out: BooleanChunked = session
        .iter()
        .map(|s| s.is_some_and(|s| crate::holdout::held_out(s, holdout)))
        .collect();
    m.drop_in_place("ts_r")?;
    m.with_column(session.with_name("session".into()).into_column())?;
    let held = m.filter(&out)?;
    let mut kept = m.filter(&!&out)?;
    kept.drop_in_place("session")?;
    Ok((kept, Some(held), dups))
}

/// Routes measurements to `parts` by the client's coarsest aggregation prefix.
pub fn route(m: DataFrame, parts: &mut Partitions<Measurement>) -> PolarsResult<()> {
    if parts.len() == 1 {
        return parts.push_frame(0, m);
    }
    let (v4, v6) = LEVELS[LEVELS.len() - 1];
    let n = parts.len() as u64;
    let part = m
        .column("client")?
        .u64()?
        .apply_values(|k| xxhash_rust::xxh3::xxh3_64(&key::truncate(k, v4, v6).to_le_bytes()) % n)
        .with_name("part".into());
    let mut m = m;
    m.with_column(part.into_column())?;
    for mut df in m.partition_by(["part"], true)? {
        let p = df
            .column("part")?
            .u64()?
            .get(0)
            .expect("partitions are not empty") as usize;
        df.drop_in_place("part")?;
        parts.push_frame(p, df)?;
    }
    Ok(())
}
