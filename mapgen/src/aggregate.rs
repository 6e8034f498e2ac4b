//! Statistics per key and PoP at each aggregation level (polars group-bys on integer keys):
//! samples, median and p90 RTT, failure rate.
//!
//! Client key space: the client's /24 (/48) and the coarser levels of [`LEVELS`]. Resolver key
//! space: each resolver and its /24 (/48), weighted by client: first a median per (resolver,
//! client subnet, PoP), then the median of those over the resolver's client subnets, so each
//! client population counts once however loud it is.
//!
//! Measurements come one client partition at a time. The client levels are complete within a
//! partition; the resolver levels keep the small per-(resolver, client subnet) frames and
//! finish once every partition has been seen.

use std::collections::BTreeMap;

use geomap::PopIndex;
use ipnet::IpNet;
use polars::prelude::*;

use crate::key;
use crate::logs::{LEVELS, RESOLVER_LEVELS};
use crate::ranking::PopStat;

/// Per-key statistics of one level.
pub type LevelStats = BTreeMap<IpNet, Vec<PopStat>>;

/// Statistics being gathered over the partitions.
#[derive(Default)]
pub struct Aggregates {
    client: Vec<LevelStats>,
    per_client_subnet: Vec<Vec<DataFrame>>,
    /// Measurements seen.
    pub measurements: u64,
}

fn level_key(c: &Column, (v4, v6): (u8, u8), name: &str) -> PolarsResult<Column> {
    Ok(c.u64()?.apply_values(|k| key::truncate(k, v4, v6)).with_name(name.into()).into_column())
}

fn stat_exprs() -> Vec<Expr> {
    vec![
        len().cast(DataType::UInt64).alias("samples"),
        col("rtt").median().alias("median"),
        col("rtt").quantile(lit(0.9), QuantileMethod::Linear).alias("p90"),
        col("ok").not().cast(DataType::Float64).mean().alias("fail_rate"),
    ]
}

/// Reads (key, pop, samples, median, p90, fail_rate) frames into per-key stats.
fn to_stats(df: &DataFrame, name: &str, lengths: (u8, u8), into: &mut LevelStats) -> PolarsResult<()> {
    let keys = df.column(name)?.u64()?;
    let pop = df.column("pop")?.u16()?;
    let samples = df.column("samples")?.cast(&DataType::UInt64)?;
    let median = df.column("median")?.cast(&DataType::Float64)?;
    let p90 = df.column("p90")?.cast(&DataType::Float64)?;
    let fail = df.column("fail_rate")?.cast(&DataType::Float64)?;
    let rows = keys.iter().zip(pop.iter()).zip(samples.u64()?.iter()).zip(median.f64()?.iter()).zip(p90.f64()?.iter()).zip(fail.f64()?.iter());
    for (((((k, p), samples), median), p90), fail) in rows {
        let (Some(k), Some(p)) = (k, p) else { continue };
        into.entry(key::to_net(k, lengths.0, lengths.1)).or_default().push(PopStat {
            pop: PopIndex::from(p),
            samples: samples.unwrap_or(0),
            median,
            p90,
            fail_rate: fail.unwrap_or(0.0),
        });
    }
    Ok(())
}

impl Aggregates {
    /// Adds one client partition of measurements (`pairing::Measurement` frames).
    pub fn add(&mut self, mut m: DataFrame) -> PolarsResult<()> {
        if self.client.is_empty() {
            self.client = LEVELS.iter().map(|_| LevelStats::new()).collect();
            self.per_client_subnet = RESOLVER_LEVELS.iter().map(|_| Vec::new()).collect();
        }
        self.measurements += m.height() as u64;
        if m.height() == 0 {
            return Ok(());
        }
        let client = m.column("client")?.clone();
        let resolver = m.column("resolver")?.clone();
        let mut client_keys = vec!["client".to_owned()];
        for (i, lengths) in LEVELS.iter().enumerate().skip(1) {
            let name = format!("client_l{i}");
            m.with_column(level_key(&client, *lengths, &name)?)?;
            client_keys.push(name);
        }
        let mut resolver_keys = vec!["resolver".to_owned()];
        for (i, lengths) in RESOLVER_LEVELS.iter().enumerate().skip(1) {
            let name = format!("resolver_l{i}");
            m.with_column(level_key(&resolver, *lengths, &name)?)?;
            resolver_keys.push(name);
        }
        for (i, name) in client_keys.iter().enumerate() {
            let df = m.clone().lazy().group_by([col(name), col("pop")]).agg(stat_exprs()).collect()?;
            to_stats(&df, name, LEVELS[i], &mut self.client[i])?;
        }
        for (i, name) in resolver_keys.iter().enumerate() {
            let df = m
                .clone()
                .lazy()
                .group_by([col(name).alias("key"), col("client"), col("pop")])
                .agg([
                    col("rtt").median().alias("client_median"),
                    len().cast(DataType::UInt64).alias("n"),
                    col("ok").not().cast(DataType::Float64).mean().alias("client_fail"),
                ])
                .collect()?;
            self.per_client_subnet[i].push(df);
        }
        Ok(())
    }

    /// The statistics: client levels, then resolver levels, finest first.
    pub fn finish(self) -> PolarsResult<(Vec<LevelStats>, Vec<LevelStats>)> {
        let mut resolver = Vec::new();
        for (i, frames) in self.per_client_subnet.into_iter().enumerate() {
            let mut stats = LevelStats::new();
            if !frames.is_empty() {
                let lfs: Vec<LazyFrame> = frames.into_iter().map(DataFrame::lazy).collect();
                let df = concat(lfs, UnionArgs::default())?
                    .group_by([col("key"), col("pop")])
                    .agg([
                        col("n").sum().alias("samples"),
                        col("client_median").median().alias("median"),
                        col("client_median").quantile(lit(0.9), QuantileMethod::Linear).alias("p90"),
                        col("client_fail").mean().alias("fail_rate"),
                    ])
                    .collect()?;
                to_stats(&df, "key", RESOLVER_LEVELS[i], &mut stats)?;
            }
            resolver.push(stats);
        }
        Ok((self.client, resolver))
    }
}
