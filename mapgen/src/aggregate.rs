//! Statistics per key and PoP at each aggregation level (polars group-bys on integer keys):
//! samples, median and p90 RTT, failure rate.
//!
//! Client key space: the client's /24 (/48) and the coarser levels of [`LEVELS`]. Resolver key
//! space: each resolver and its /24 (/48), weighted by client: first a median per (resolver,
//! client subnet, PoP), then the median of those over the resolver's (or the /24's resolvers')
//! client subnets, so each client population counts once however loud it is.
//!
//! Measurements come one client partition at a time. The client levels are complete within a
//! partition; the resolver levels keep the small per-(resolver, client subnet) frames and
//! finish once every partition has been seen.

use std::collections::{BTreeMap, HashMap};

use geomap::PopIndex;
use ipnet::IpNet;
use polars::prelude::*;
use polars::series::IsSorted;

use crate::key;
use crate::logs::{LEVELS, RESOLVER_LEVELS};
use crate::pooling::Population;
use crate::ranking::PopStat;
use crate::routes::Routes;

/// Per-key statistics of one level.
pub type LevelStats = BTreeMap<IpNet, Vec<PopStat>>;

/// Statistics being gathered over the partitions.
#[derive(Default)]
pub struct Aggregates {
    client: Vec<LevelStats>,
    routes: Routes,
    routed: LevelStats,
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

/// The statistics of one group; `var` (for the pooling's noise estimate) only where asked,
/// at the finest level: it costs a pass over every level's groups otherwise.
fn stat_exprs(var: bool) -> Vec<Expr> {
    let mut e = vec![
        len().cast(DataType::UInt64).alias("samples"),
        col("rtt").median().alias("median"),
        col("rtt")
            .quantile(lit(0.9), QuantileMethod::Linear)
            .alias("p90"),
        fail_rate().alias("fail_rate"),
    ];
    if var {
        e.push(col("rtt").var(1).alias("var"));
    }
    e
}

/// Reads (key, pop, samples, median, p90, fail_rate) frames into per-key stats, `net` giving
/// each key's prefix; without a `pop` column, `name` holds client keys packed with their PoP.
fn to_stats(
    df: &DataFrame,
    name: &str,
    net: &dyn Fn(u64) -> IpNet,
    into: &mut LevelStats,
) -> PolarsResult<()> {
    let (keys, pop) = match df.column("pop") {
        Ok(pop) => (df.column(name)?.u64()?.clone(), pop.u16()?.clone()),
        Err(_) => unpack(df.column(name)?.u64()?),
    };
    let samples = df.column("samples")?.cast(&DataType::UInt64)?;
    let median = df.column("median")?.cast(&DataType::Float64)?;
    let p90 = df.column("p90")?.cast(&DataType::Float64)?;
    let fail = df.column("fail_rate")?.cast(&DataType::Float64)?;
    let var = match df.column("var") {
        Ok(v) => v.cast(&DataType::Float64)?,
        Err(_) => Column::full_null("var".into(), df.height(), &DataType::Float64),
    };
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
            var,
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
    /// Gathers statistics; `routes` adds the routed-prefix level (may be empty).
    pub fn new(routes: Routes) -> Aggregates {
        Aggregates {
            routes,
            ..Default::default()
        }
    }

    /// Adds one client partition of measurements (`pairing::Measurement` frames).
    pub fn add(&mut self, m: DataFrame) -> PolarsResult<()> {
        if self.client.is_empty() {
            self.client = LEVELS.iter().map(|_| LevelStats::new()).collect();
        }
        self.measurements += m.height() as u64;
        if m.height() == 0 {
            return Ok(());
        }
        let client = m.column("client")?.u64()?.clone();
        let pop = m.column("pop")?.u16()?.clone();
        let mut values = m.select(["rtt", "resolver"])?;
        values.with_column(client_pop(&client, &pop, "client_pop_l0"))?;
        drop(m);
        // Sorted by the finest packed key, every level's groups are contiguous: polars groups
        // sorted keys as slices instead of hashing and gathering.
        let mut values = values.sort(["client_pop_l0"], SortMultipleOptions::default())?;
        let l0 = values.column("client_pop_l0")?.u64()?.clone();
        for (i, &(v4, v6)) in LEVELS.iter().enumerate().skip(1) {
            let mut level = l0.apply_values(|p| key::coarser(p, v4, v6));
            level.set_sorted_flag(IsSorted::Ascending);
            values.with_column(
                level
                    .with_name(format!("client_pop_l{i}").into())
                    .into_column(),
            )?;
        }
        // Clients inside a routed prefix aggregate over it instead of the fixed coarser levels.
        let routed = if self.routes.is_empty() {
            lit(false)
        } else {
            self.add_routed(&mut values, &l0)?
        };
        for (i, (&(v4, v6), stats)) in LEVELS.iter().zip(&mut self.client).enumerate() {
            let name = format!("client_pop_l{i}");
            let lf = values.clone().lazy();
            let lf = if i == 0 {
                lf
            } else {
                lf.filter(routed.clone().not())
            };
            let df = lf
                .group_by([col(&name)])
                .agg(stat_exprs(i == 0))
                .collect()?;
            to_stats(&df, &name, &|k| key::to_net(k, v4, v6), stats)?;
        }
        let per_subnet = values
            .lazy()
            .group_by([col("resolver"), col("client_pop_l0").alias("client_pop")])
            .agg([
                col("rtt").median().alias("client_median"),
                len().cast(DataType::UInt64).alias("n"),
                fail_rate().alias("client_fail"),
            ])
            .collect()?;
        self.per_client_subnet.push(per_subnet);
        Ok(())
    }

    /// Adds the routed-prefix level for the rows of `values` (with their packed client and PoP
    /// keys `l0`) whose client a routed prefix covers; returns the expression selecting them.
    fn add_routed(&mut self, values: &mut DataFrame, l0: &UInt64Chunked) -> PolarsResult<Expr> {
        let mut memo: HashMap<u64, Option<u32>> = HashMap::new();
        let route_pop: UInt64Chunked = l0
            .iter()
            .map(|packed| {
                let (client, pop) = key::without_pop(packed?);
                let id = (*memo
                    .entry(client)
                    .or_insert_with(|| self.routes.covering(client)))?;
                Some((u64::from(id) << 16) | u64::from(pop))
            })
            .collect();
        values.with_column(route_pop.with_name("route_pop".into()).into_column())?;
        let routed = col("route_pop").is_not_null();
        let mut df = values
            .clone()
            .lazy()
            .filter(routed.clone())
            .group_by([col("route_pop")])
            .agg(stat_exprs(false))
            .collect()?;
        let packed = df.column("route_pop")?.u64()?.clone();
        df.with_column(
            packed
                .apply_values(|k| k >> 16)
                .with_name("route".into())
                .into_column(),
        )?;
        let pops: UInt16Chunked = packed.iter().map(|k| k.map(|k| k as u16)).collect();
        df.with_column(pops.with_name("pop".into()).into_column())?;
        let routes = &self.routes;
        to_stats(&df, "route", &|id| routes.net(id as u32), &mut self.routed)?;
        Ok(routed)
    }

    /// The statistics: client levels (finest first), the routed prefixes, the resolver
    /// levels (finest first), and each resolver's population of clients.
    pub fn finish(mut self) -> PolarsResult<Stats> {
        let pairings_per_session = pairings_per_session(self.client.first());
        let mut resolver: Vec<LevelStats> =
            RESOLVER_LEVELS.iter().map(|_| LevelStats::new()).collect();
        let mut populations: BTreeMap<IpNet, Population> = BTreeMap::new();
        let frames = std::mem::take(&mut self.per_client_subnet);
        if !frames.is_empty() {
            Self::finish_resolvers(frames, &mut resolver, &mut populations)?;
        }
        Ok(Stats {
            client: self.client,
            routed: self.routed,
            resolver,
            populations,
            routes: self.routes,
            pairings_per_session,
        })
    }

    /// The resolver levels and populations, from the per-(resolver, client subnet) frames.
    fn finish_resolvers(
        frames: Vec<DataFrame>,
        resolver: &mut [LevelStats],
        populations: &mut BTreeMap<IpNet, Population>,
    ) -> PolarsResult<()> {
        let lfs: Vec<LazyFrame> = frames.into_iter().map(DataFrame::lazy).collect();
        let mut per_subnet = concat(lfs, UnionArgs::default())?.collect()?;
        let (clients, pop) = unpack(per_subnet.column("client_pop")?.u64()?);
        per_subnet.with_column(pop.into_column())?;
        let resolvers = per_subnet.column("resolver")?.u64()?.clone();
        {
            // How often each client /24 asked through each resolver, over all PoPs.
            let (rv4, rv6) = RESOLVER_LEVELS[0];
            let (cv4, cv6) = LEVELS[0];
            let n = per_subnet.column("n")?.u64()?;
            let mut counts: HashMap<(u64, u64), f64> = HashMap::new();
            for ((r, c), n) in resolvers.iter().zip(clients.iter()).zip(n.iter()) {
                if let (Some(r), Some(c), Some(n)) = (r, c, n) {
                    *counts.entry((r, c)).or_default() += n as f64;
                }
            }
            for ((r, c), n) in counts {
                populations
                    .entry(key::to_net(r, rv4, rv6))
                    .or_default()
                    .push((key::to_net(c, cv4, cv6), n));
            }
            for p in populations.values_mut() {
                p.sort_by_key(|a| a.0);
            }
        }
        for (i, stats) in resolver.iter_mut().enumerate() {
            let name = format!("resolver_l{i}");
            let (v4, v6) = RESOLVER_LEVELS[i];
            let level = resolvers.apply_values(|k| key::truncate(k, v4, v6));
            per_subnet.with_column(level.with_name(name.as_str().into()).into_column())?;
            let df = per_subnet
                .clone()
                .lazy()
                .group_by([col(&name), col("pop")])
                .agg([
                    col("n").sum().alias("samples"),
                    col("client_median").median().alias("median"),
                    col("client_median")
                        .quantile(lit(0.9), QuantileMethod::Linear)
                        .alias("p90"),
                    col("client_fail").mean().alias("fail_rate"),
                ])
                .collect()?;
            to_stats(&df, &name, &|k| key::to_net(k, v4, v6), stats)?;
        }
        Ok(())
    }
}

/// Pairings per beacon session, estimated from the client subnets: a subnet saw at least as
/// many sessions as its most measured PoP has samples (exactly as many when sessions always
/// measure the nearest PoPs), so this overestimates a little when sessions pick PoPs at random,
/// which only makes resolver addresses pool more with their /24.
fn pairings_per_session(finest: Option<&LevelStats>) -> f64 {
    let (mut pairings, mut sessions) = (0u64, 0u64);
    for stats in finest.into_iter().flat_map(|l| l.values()) {
        pairings += stats.iter().map(|s| s.samples).sum::<u64>();
        sessions += stats.iter().map(|s| s.samples).max().unwrap_or(0);
    }
    pairings as f64 / sessions.max(1) as f64
}

/// Everything aggregation found.
pub struct Stats {
    /// Client levels, finest (/24, /48) first.
    pub client: Vec<LevelStats>,
    /// Routed prefixes.
    pub routed: LevelStats,
    /// Resolver levels, the address first.
    pub resolver: Vec<LevelStats>,
    /// Each resolver address's clients (/24 or /48) and how many samples each gave.
    pub populations: BTreeMap<IpNet, Population>,
    /// The routing table aggregation used (may be empty).
    pub routes: Routes,
    /// Pairings per beacon session (how many PoPs a session measured, on average).
    pub pairings_per_session: f64,
}
