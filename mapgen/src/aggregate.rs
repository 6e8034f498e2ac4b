//! Statistics per key and PoP at each aggregation level (polars group-bys on integer keys):
//! samples, median and p90 RTT, failure rate, and the variance of log RTT (pooling's noise).
//!
//! Client key space: the client's /24 (/48); [`crate::pooling`] builds everything coarser
//! (neighbours, aggregates, the latency model) from those. Resolvers: each resolver's
//! population, the client subnets that asked through it and how often; pooling decides
//! resolvers from their clients' estimates.
//!
//! Measurements come one client partition at a time. The client levels are complete within a
//! partition; the populations keep small per-(resolver, client subnet) count frames and finish
//! once every partition has been seen.

use std::collections::{BTreeMap, HashMap};

use geomap::PopIndex;
use ipnet::IpNet;
use polars::prelude::*;

use crate::key;
use crate::logs::{LEVELS, RESOLVER_LEVELS};
use crate::pooling::Population;
use crate::ranking::PopStat;

/// Per-key statistics of one level.
pub type LevelStats = BTreeMap<IpNet, Vec<PopStat>>;

/// Statistics being gathered over the partitions.
#[derive(Default)]
pub struct Aggregates {
    client: LevelStats,
    per_client_subnet: Vec<DataFrame>,
    /// Measurements seen.
    pub measurements: u64,
}

/// The client column packed with the PoP ([`key::with_pop`]).
fn client_pop(client: &UInt64Chunked, pop: &UInt16Chunked, name: &str) -> Column {
    let packed: UInt64Chunked = client
        .iter()
        .zip(pop.iter())
        .map(|(c, p)| Some(key::with_pop(c?, p?)))
        .collect();
    packed.with_name(name.into()).into_column()
}

/// A failed fetch is a sample without an RTT.
fn fail_rate() -> Expr {
    lit(1.0) - col("rtt").count().cast(DataType::Float64) / len().cast(DataType::Float64)
}

/// The statistics of one (client subnet, PoP) group; the variance of log RTT (`log_rtt`) is
/// for the pooling's noise estimate, which works in ratios. The median is the *lower* median:
/// latency noise only adds (queues, retransmits, a busy client), so where two middle samples
/// disagree the lower is the likelier typical one: of two samples, one a 3x outlier, the
/// plain median would report their mean, twice the truth.
fn stat_exprs() -> Vec<Expr> {
    vec![
        len().cast(DataType::UInt64).alias("samples"),
        col("rtt")
            .quantile(lit(0.5), QuantileMethod::Lower)
            .alias("median"),
        col("rtt")
            .quantile(lit(0.9), QuantileMethod::Linear)
            .alias("p90"),
        fail_rate().alias("fail_rate"),
        col("log_rtt").var(1).alias("log_var"),
    ]
}

/// Reads (packed client and PoP `name`, samples, median, p90, fail_rate, log_var) frames into
/// per-key stats, `net` giving each key's prefix.
fn to_stats(
    df: &DataFrame,
    name: &str,
    net: &dyn Fn(u64) -> IpNet,
    into: &mut LevelStats,
) -> PolarsResult<()> {
    let (keys, pop) = unpack(df.column(name)?.u64()?);
    let samples = df.column("samples")?.cast(&DataType::UInt64)?;
    let median = df.column("median")?.cast(&DataType::Float64)?;
    let p90 = df.column("p90")?.cast(&DataType::Float64)?;
    let fail = df.column("fail_rate")?.cast(&DataType::Float64)?;
    let var = df.column("log_var")?.cast(&DataType::Float64)?;
    let rows = keys
        .iter()
        .zip(pop.iter())
        .zip(samples.u64()?.iter())
        .zip(median.f64()?.iter())
        .zip(p90.f64()?.iter())
        .zip(fail.f64()?.iter())
        .zip(var.f64()?.iter());
    for ((((((k, p), samples), median), p90), fail), var) in rows {
        let (Some(k), Some(p)) = (k, p) else { continue };
        into.entry(net(k)).or_default().push(PopStat {
            pop: PopIndex::from(p),
            samples: samples.unwrap_or(0),
            median,
            p90,
            fail_rate: fail.unwrap_or(0.0),
            log_var: var,
        });
    }
    Ok(())
}

/// Splits a packed (key, PoP) column into a key and a PoP column.
fn unpack(packed: &UInt64Chunked) -> (UInt64Chunked, UInt16Chunked) {
    let (keys, pops): (Vec<u64>, Vec<u16>) = packed
        .iter()
        .map(|p| key::without_pop(p.unwrap_or(0)))
        .unzip();
    (
        UInt64Chunked::from_vec("key".into(), keys),
        UInt16Chunked::from_vec("pop".into(), pops),
    )
}

impl Aggregates {
    /// Adds one client partition of measurements (`pairing::Measurement` frames).
    pub fn add(&mut self, m: DataFrame) -> PolarsResult<()> {
        self.measurements += m.height() as u64;
        if m.height() == 0 {
            return Ok(());
        }
        let client = m.column("client")?.u64()?.clone();
        let pop = m.column("pop")?.u16()?.clone();
        let mut values = m.select(["rtt", "resolver"])?;
        // The reader keeps RTTs at or above the contract's minimum (positive): finite logs.
        let log_rtt = values
            .column("rtt")?
            .f32()?
            .apply_values(f32::ln)
            .with_name("log_rtt".into());
        values.with_column(log_rtt.into_column())?;
        values.with_column(client_pop(&client, &pop, "client_pop"))?;
        drop(m);
        let (v4, v6) = LEVELS[0];
        let df = values
            .clone()
            .lazy()
            .group_by([col("client_pop")])
            .agg(stat_exprs())
            .collect()?;
        to_stats(
            &df,
            "client_pop",
            &|k| key::to_net(k, v4, v6),
            &mut self.client,
        )?;
        let per_subnet = values
            .lazy()
            .group_by([col("resolver"), col("client_pop")])
            .agg([len().cast(DataType::UInt64).alias("n")])
            .collect()?;
        self.per_client_subnet.push(per_subnet);
        Ok(())
    }

    /// The statistics: the client subnets, and each resolver's population of clients.
    pub fn finish(mut self) -> PolarsResult<Stats> {
        let pairings_per_session = pairings_per_session(&self.client);
        let frames = std::mem::take(&mut self.per_client_subnet);
        let populations = if frames.is_empty() {
            BTreeMap::new()
        } else {
            populations(frames)?
        };
        Ok(Stats {
            client: self.client,
            populations,
            pairings_per_session,
        })
    }
}

/// Each resolver's clients (/24 or /48) and how many samples each gave through it, over all
/// PoPs, from the per-(resolver, client subnet and PoP) count frames.
fn populations(frames: Vec<DataFrame>) -> PolarsResult<BTreeMap<IpNet, Population>> {
    let lfs: Vec<LazyFrame> = frames.into_iter().map(DataFrame::lazy).collect();
    let per_subnet = concat(lfs, UnionArgs::default())?.collect()?;
    let clients = unpack(per_subnet.column("client_pop")?.u64()?).0;
    let resolvers = per_subnet.column("resolver")?.u64()?;
    let n = per_subnet.column("n")?.u64()?;
    let mut counts: HashMap<(u64, u64), f64> = HashMap::new();
    for ((r, c), n) in resolvers.iter().zip(clients.iter()).zip(n.iter()) {
        if let (Some(r), Some(c), Some(n)) = (r, c, n) {
            *counts.entry((r, c)).or_default() += n as f64;
        }
    }
    let (rv4, rv6) = RESOLVER_LEVELS[0];
    let (cv4, cv6) = LEVELS[0];
    let mut populations: BTreeMap<IpNet, Population> = BTreeMap::new();
    for ((r, c), n) in counts {
        populations
            .entry(key::to_net(r, rv4, rv6))
            .or_default()
            .push((key::to_net(c, cv4, cv6), n));
    }
    for p in populations.values_mut() {
        p.sort_by_key(|a| a.0);
    }
    Ok(populations)
}

/// Pairings per beacon session, estimated from the client subnets: a subnet saw at least as
/// many sessions as its most measured PoP has samples (exactly as many when sessions always
/// measure the nearest PoPs), so this overestimates a little when sessions pick PoPs at random,
/// which only makes resolver addresses pool more with their /24.
fn pairings_per_session(finest: &LevelStats) -> f64 {
    let (mut pairings, mut sessions) = (0u64, 0u64);
    for stats in finest.values() {
        pairings += stats.iter().map(|s| s.samples).sum::<u64>();
        sessions += stats.iter().map(|s| s.samples).max().unwrap_or(0);
    }
    pairings as f64 / sessions.max(1) as f64
}

/// Everything aggregation found.
pub struct Stats {
    /// The client subnets (/24, /48).
    pub client: LevelStats,
    /// Each resolver address's clients (/24 or /48) and how many samples each gave.
    pub populations: BTreeMap<IpNet, Population>,
    /// Pairings per beacon session (how many PoPs a session measured, on average).
    pub pairings_per_session: f64,
}
