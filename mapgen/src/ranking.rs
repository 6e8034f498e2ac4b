//! What was measured per key and PoP ([`PopStat`]), and the rule that keeps a fixed aggregate
//! only where the subnets measured inside it agree with it ([`coherent`]). Ranking itself is
//! on pooled estimates ([`crate::pooling`]).

use geomap::PopIndex;

/// What was measured for one key and PoP.
#[derive(Clone, Debug, PartialEq)]
pub struct PopStat {
    /// PoP index in the map's PoP table.
    pub pop: PopIndex,
    /// Samples (pairings) behind it, successful or not.
    pub samples: u64,
    /// Lower median RTT of the successful samples (of an even number, the lower middle one:
    /// noise only adds delay), ms.
    pub median: Option<f64>,
    /// 90th percentile RTT, ms.
    pub p90: Option<f64>,
    /// Share of failed fetches.
    pub fail_rate: f64,
    /// Variance of the successful RTTs' natural log (with at least two): sample noise as a
    /// ratio.
    pub log_var: Option<f64>,
}

impl PopStat {
    /// A PoP measured `samples` times, none failed, at `median` ms (for tests).
    #[cfg(test)]
    pub fn measured(pop: PopIndex, samples: u64, median: f64) -> PopStat {
        PopStat {
            pop,
            samples,
            median: Some(median),
            p90: None,
            fail_rate: 0.0,
            log_var: None,
        }
    }

    /// Whether the PoP is well measured for its key: enough samples, and not mostly failing
    /// (a PoP that mostly fails is not well measured, however many attempts it has).
    pub fn well_measured(&self, min_samples: u64) -> bool {
        self.median.is_some() && self.samples >= min_samples && self.fail_rate < 0.5
    }
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
        PopStat::measured(pop, samples, median)
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
