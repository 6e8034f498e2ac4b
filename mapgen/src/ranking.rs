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

/// Ranks one key's PoPs, or `None` if no PoP is well measured.
pub fn rank(stats: &[PopStat], min_samples: u64, fallback: &[PopIndex]) -> Option<(Vec<PopIndex>, Vec<Option<f32>>)> {
    let by_median = |a: &&PopStat, b: &&PopStat| {
        a.median.unwrap_or(f64::INFINITY).total_cmp(&b.median.unwrap_or(f64::INFINITY)).then(a.pop.cmp(&b.pop))
    };
    // A PoP that mostly fails is not well measured, however many attempts it has.
    let good = |s: &PopStat| s.median.is_some() && s.samples >= min_samples && s.fail_rate < 0.5;
    let mut well: Vec<&PopStat> = stats.iter().filter(|s| good(s)).collect();
    if well.is_empty() {
        return None;
    }
    well.sort_by(by_median);
    let mut thin: Vec<&PopStat> = stats.iter().filter(|s| !good(s) && s.median.is_some()).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pop: PopIndex, samples: u64, median: f64) -> PopStat {
        PopStat { pop, samples, median: Some(median), p90: None, fail_rate: 0.0 }
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
}
