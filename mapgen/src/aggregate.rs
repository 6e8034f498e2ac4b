//! Statistics per client subnet and PoP (each group's RTTs sorted, the arithmetic of
//! [`pop_stat`]): samples, median and p90 RTT, failure rate, and the variance of log RTT
//! (pooling's noise); and per resolver, its population (polars group-bys on integer keys).
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

/// The statistics of one (client subnet, PoP) group: `samples` pairings, of which `ok` are the
/// successful RTTs, sorted ascending. This arithmetic is the first stage's contract
/// (docs/mapgen.md, "The statistics"): another engine that computes it in the same order gets
/// the same bits.
///
/// The median is the *lower* median: latency noise only adds (queues, retransmits, a busy
/// client), so where two middle samples disagree the lower is the likelier typical one: of two
/// samples, one a 3x outlier, the plain median would report their mean, twice the truth. The
/// variance of log RTT is for the pooling's noise estimate, which works in ratios; its sums
/// run in ascending order, and its logarithm is fdlibm's ([`crate::strict_math`]).
pub fn pop_stat(pop: PopIndex, samples: u64, ok: &[f32]) -> PopStat {
    let k = ok.len();
    let (median, p90) = if k == 0 {
        (None, None)
    } else {
        let at = |i: usize| f64::from(ok[i]);
        let pos = (k - 1) as f64 * 0.9;
        let i = pos as usize;
        let p90 = if pos == i as f64 {
            at(i)
        } else {
            at(i) + (pos - i as f64) * (at(i + 1) - at(i))
        };
        (Some(at((k - 1) / 2)), Some(p90))
    };
    let log_var = (k >= 2).then(|| {
        let logs = ok.iter().map(|&r| crate::strict_math::log(f64::from(r)));
        let mean = logs.clone().fold(0.0, |a, l| a + l) / k as f64;
        logs.fold(0.0, |a, l| a + (l - mean) * (l - mean)) / (k - 1) as f64
    });
    PopStat {
        pop,
        samples,
        median,
        p90,
        fail_rate: 1.0 - k as f64 / samples as f64,
        log_var,
    }
}

/// Adds the statistics of every (client subnet, PoP) group of `client_pop` (packed keys) and
/// `rtt` (NaN for a failed fetch) to `into`.
fn add_stats(mut rows: Vec<(u64, f32)>, into: &mut LevelStats) {
    let (v4, v6) = LEVELS[0];
    // Failed fetches (NaN) sort after every RTT of their group.
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut ok = Vec::new();
    for group in rows.chunk_by(|a, b| a.0 == b.0) {
        let (k, p) = key::without_pop(group[0].0);
        ok.clear();
        ok.extend(group.iter().map(|r| r.1).take_while(|r| !r.is_nan()));
        into.entry(key::to_net(k, v4, v6))
            .or_default()
            .push(pop_stat(PopIndex::from(p), group.len() as u64, &ok));
    }
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
        let packed = client_pop(&client, &pop, "client_pop");
        let rows: Vec<(u64, f32)> = packed
            .u64()?
            .iter()
            .zip(m.column("rtt")?.f32()?.iter())
            .map(|(c, r)| (c.unwrap_or(0), r.unwrap_or(f32::NAN)))
            .collect();
        add_stats(rows, &mut self.client);
        let mut values = m.select(["resolver"])?;
        values.with_column(packed)?;
        drop(m);
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
        // Each subnet's PoPs in index order, whatever order the groups came in.
        for list in self.client.values_mut() {
            list.sort_by_key(|s| s.pop);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statistics_of_a_group() {
        let s = pop_stat(PopIndex::from(3u16), 6, &[10.0, 20.0, 40.0, 80.0]);
        assert_eq!(s.median, Some(20.0), "the lower median");
        // p90 at position 3 * 0.9 = 2.7: 40 + 0.7 * (80 - 40).
        assert!((s.p90.unwrap() - 68.0).abs() < 1e-9, "{:?}", s.p90);
        assert!((s.fail_rate - 2.0 / 6.0).abs() < 1e-15);
        // ln of 10, 20, 40, 80 is ln 10 + (0, 1, 2, 3) ln 2: variance 5/3 (ln 2)^2.
        let want = 5.0 / 3.0 * std::f64::consts::LN_2.powi(2);
        assert!((s.log_var.unwrap() - want).abs() < 1e-12, "{:?}", s.log_var);
        let one = pop_stat(PopIndex::from(0u16), 1, &[7.5]);
        assert_eq!(
            (one.median, one.p90, one.log_var),
            (Some(7.5), Some(7.5), None)
        );
        let failed = pop_stat(PopIndex::from(0u16), 2, &[]);
        assert_eq!((failed.median, failed.fail_rate), (None, 1.0));
    }

    #[test]
    fn groups_are_cut_by_key_and_pop_with_failures_apart() {
        let k = key::parse("192.0.2.0").unwrap();
        let mut into = LevelStats::new();
        let rows = vec![
            (key::with_pop(k, 1), 30.0),
            (key::with_pop(k, 0), f32::NAN),
            (key::with_pop(k, 1), 10.0),
            (key::with_pop(k, 1), f32::NAN),
            (key::with_pop(k, 0), 5.0),
        ];
        add_stats(rows, &mut into);
        into.values_mut().for_each(|l| l.sort_by_key(|s| s.pop));
        let stats = &into[&"192.0.2.0/24".parse::<IpNet>().unwrap()];
        let got: Vec<_> = stats
            .iter()
            .map(|s| (usize::from(s.pop), s.samples, s.median))
            .collect();
        assert_eq!(got, vec![(0, 2, Some(5.0)), (1, 3, Some(10.0))]);
    }
}
