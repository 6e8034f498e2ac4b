//! From per-key, per-PoP statistics to ranked map rows, and the fallback hierarchy.
//!
//! A PoP is *well measured* for a key when it has at least `min_samples` successful samples.
//! Well-measured PoPs are ranked by median RTT; thinly measured ones follow (by median), so a
//! PoP seen twice cannot win over one seen fifty times on noise; unmeasured PoPs come last, in
//! the fallback order (nearest first when the key can be located, else the default order), so
//! every row ranks every PoP and failover always has somewhere to go. A key with no
//! well-measured PoP gets no row of its own: the covering aggregate answers for it.

use std::collections::BTreeMap;

use geomap::{Derivation, KeySpace, MapRow, PopIndex};
use ipnet::IpNet;

/// What was measured for one key and PoP.
#[derive(Clone, Debug, PartialEq)]
pub struct PopStat {
    /// PoP index in the map's PoP table.
    pub pop: PopIndex,
    /// Samples (pairings) behind it, successful or not.
    pub samples: u64,
    /// Median RTT of the successful samples, ms.
    pub median: Option<f64>,
    /// 90th percentile RTT, ms.
    pub p90: Option<f64>,
    /// Share of failed fetches.
    pub fail_rate: f64,
}

impl PopStat {
    /// Whether the PoP is well measured for its key: enough samples, and not mostly failing
    /// (a PoP that mostly fails is not well measured, however many attempts it has).
    pub fn well_measured(&self, min_samples: u64) -> bool {
        self.median.is_some() && self.samples >= min_samples && self.fail_rate < 0.5
    }
}

/// Ranks one key's PoPs, or `None` if no PoP is well measured.
pub fn rank(
    stats: &[PopStat],
    min_samples: u64,
    fallback: &[PopIndex],
) -> Option<(Vec<PopIndex>, Vec<Option<f32>>)> {
    let by_median = |a: &&PopStat, b: &&PopStat| {
        a.median
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.median.unwrap_or(f64::INFINITY))
            .then(a.pop.cmp(&b.pop))
    };
    let good = |s: &PopStat| s.well_measured(min_samples);
    let mut well: Vec<&PopStat> = stats.iter().filter(|s| good(s)).collect();
    if well.is_empty() {
        return None;
    }
    well.sort_by(by_median);
    let mut thin: Vec<&PopStat> = stats
        .iter()
        .filter(|s| !good(s) && s.median.is_some())
        .collect();
    thin.sort_by(by_median);
    let mut pops: Vec<PopIndex> = Vec::new();
    let mut rtts: Vec<Option<f32>> = Vec::new();
    for s in well.iter().chain(&thin) {
        pops.push(s.pop);
        rtts.push(s.median.map(|m| m as f32));
    }
    for &p in fallback {
        if !pops.contains(&p) {
            pops.push(p);
            rtts.push(None);
        }
    }
    Some((pops, rtts))
}

/// Builds rows for one aggregation level of one key space: a row for each key with a
/// well-measured PoP. Returns the rows and the keys that had data but were too thin.
pub fn rows_for_level(
    space: KeySpace,
    derivation: Derivation,
    stats: &BTreeMap<IpNet, Vec<PopStat>>,
    min_samples: u64,
    fallback: &dyn Fn(IpNet) -> Vec<PopIndex>,
) -> (Vec<MapRow>, Vec<IpNet>) {
    let mut rows = Vec::new();
    let mut thin = Vec::new();
    for (key, s) in stats {
        match rank(s, min_samples, &fallback(*key)) {
            Some((pops, rtt_ms)) => rows.push(MapRow {
                key_space: space,
                prefix: *key,
                pops,
                rtt_ms,
                samples: s.iter().map(|x| x.samples).sum(),
                derivation,
            }),
            None => thin.push(*key),
        }
    }
    (rows, thin)
}

/// How close (ms) a subnet's RTT to an aggregate's first PoP must be to its own best for the
/// subnet to agree with the aggregate: the tolerance of the quality metric.
pub const AGREE_MS: f64 = 5.0;

/// The share of traffic (samples) inside an aggregate that must agree with it.
pub const AGREE_SHARE: f64 = 0.8;

/// Whether an aggregate's first PoP serves the well-measured subnets inside it: at least
/// [`AGREE_SHARE`] of their samples are in subnets whose own median to that PoP is within
/// [`AGREE_MS`] of their own best. A fixed /20 or /16 can mix networks of different cities and
/// ISPs; thin subnets borrowing from such an aggregate would be sent wrong, and do better with
/// GeoIP. Without well-measured subnets inside, there is no evidence against it.
pub fn coherent<'a>(
    first: PopIndex,
    children: impl Iterator<Item = &'a [PopStat]>,
    min_samples: u64,
) -> bool {
    let (mut agree, mut total) = (0u64, 0u64);
    for stats in children {
        let well = |s: &&PopStat| s.well_measured(min_samples);
        let Some(best) = stats
            .iter()
            .filter(well)
            .filter_map(|s| s.median)
            .min_by(f64::total_cmp)
        else {
            continue;
        };
        let Some(theirs) = stats
            .iter()
            .filter(well)
            .find(|s| s.pop == first)
            .and_then(|s| s.median)
        else {
            continue;
        };
        let weight: u64 = stats.iter().map(|s| s.samples).sum();
        total += weight;
        if theirs - best <= AGREE_MS {
            agree += weight;
        }
    }
    total == 0 || agree as f64 >= AGREE_SHARE * total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pop: PopIndex, samples: u64, median: f64) -> PopStat {
        PopStat {
            pop,
            samples,
            median: Some(median),
            p90: None,
            fail_rate: 0.0,
        }
    }

    #[test]
    fn thin_pops_never_beat_well_measured_ones() {
        // PoP 2 looks fastest but has 2 samples; PoP 1 has 50 at 30 ms; PoP 0 is unmeasured.
        let (pops, rtts) = rank(&[s(2, 2, 5.0), s(1, 50, 30.0)], 5, &[0, 1, 2]).unwrap();
        assert_eq!(pops, [1, 2, 0]);
        assert_eq!(rtts, [Some(30.0), Some(5.0), None]);
    }

    #[test]
    fn medians_rank_and_failures_disqualify() {
        let mut flaky = s(0, 100, 1.0);
        flaky.fail_rate = 0.7;
        let (pops, _) = rank(&[flaky, s(1, 20, 40.0), s(2, 20, 25.0)], 5, &[0, 1, 2]).unwrap();
        assert_eq!(pops, [2, 1, 0]);
        assert_eq!(rank(&[s(0, 3, 10.0)], 5, &[0]), None);
    }

    #[test]
    fn aggregates_must_serve_the_subnets_inside() {
        let near_0 = vec![s(0, 50, 10.0), s(1, 50, 60.0)];
        let near_1 = vec![s(0, 50, 70.0), s(1, 50, 12.0)];
        let slightly = vec![s(0, 50, 14.0), s(1, 50, 10.0)];
        assert!(
            coherent(0, [near_0.as_slice(), slightly.as_slice()].into_iter(), 5),
            "within 5 ms agrees"
        );
        assert!(
            !coherent(0, [near_0.as_slice(), near_1.as_slice()].into_iter(), 5),
            "half the traffic disagrees"
        );
        assert!(coherent(1, std::iter::empty(), 5), "no evidence against");
    }
}
