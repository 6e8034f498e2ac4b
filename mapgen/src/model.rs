//! The latency model: RTT against great-circle distance, fitted per PoP from every
//! measurement whose client GeoIP can place. It is the root of the pooling hierarchy
//! ([`crate::pooling`]): what a key with no data of its own, and no measured neighbours,
//! is expected to see. Unlike ranking by distance alone it knows that one PoP is slower at
//! the same distance than another (a PoP behind a congested transit has a higher intercept),
//! and measured neighbours then correct it for their networks.
//!
//! A PoP few sessions measure has too few distances for a slope of its own (one near network
//! would make a flat line that calls the PoP near for everyone): such a PoP takes the slope
//! the well-measured PoPs share (light in fibre and path stretch are the same for all PoPs;
//! what differs is the intercept, the PoP's own latency), with its own intercept. A PoP no
//! session measured at all is taken to be a typical one: the shared slope and the median
//! intercept, so it is ranked by its distance, as GeoIP would, rather than after every
//! measured PoP whatever the distance (where no measurement could ever bring it forward).
//!
//! A line through bin medians can cross zero near the PoP (a steep far range, a few very near
//! networks), and a latency is positive: the line never predicts less than its *floor*, the
//! fastest median of the PoP's bins within 500 km (what a typical network near it was measured
//! to see), or, for a PoP nobody near measured, the fastest median of any PoP's bins. Everything above the
//! model ([`crate::pooling`]) works in ratios of it, so a positive model gives positive
//! estimates.

/// One PoP's line: `intercept + slope * km`, fitted robustly, never below `floor`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Line {
    /// RTT at distance zero, ms (may be below `floor`, even negative: the line is fitted).
    pub intercept: f64,
    /// ms per great-circle km.
    pub slope: f64,
    /// The smallest RTT the model predicts, ms (positive): the fastest median of the PoP's
    /// bins within [`NEAR_KM`], else the fastest of any PoP's.
    pub floor: f64,
}

impl Line {
    /// The expected RTT at `km`: positive and finite for a finite `km`.
    pub fn at(&self, km: f64) -> f64 {
        (self.intercept + self.slope * km).max(self.floor)
    }
}

/// One observation: a key's median RTT to a PoP, the distance between them, and its weight.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    /// Great-circle km from the key's GeoIP location to the PoP.
    pub km: f64,
    /// The key's median RTT to the PoP, ms.
    pub rtt: f64,
    /// How much it counts (its successful samples).
    pub weight: f64,
}

/// Weights are capped so a few loud keys do not decide a bin's median.
const MAX_WEIGHT: f64 = 10.0;

/// Width of the distance bins whose medians the line is fitted through, km.
const BIN_KM: f64 = 250.0;

/// The slope a PoP takes when no PoP has enough distances for one: light in fibre, there and
/// back (about 100 km per ms of RTT), ms per km.
pub const FIBRE_SLOPE: f64 = 0.01;

/// Bins this near a PoP say how fast it can be: the floor of its line.
pub const NEAR_KM: f64 = 500.0;

/// A PoP fits its own slope from at least this many distance bins...
const MIN_BINS: usize = 3;

/// ...spanning at least this many km.
const MIN_SPAN_KM: f64 = 1000.0;

/// Fits every PoP's line (`points` per PoP). Each PoP's points are put in distance bins, and
/// a line is fitted by weighted least squares through each bin's weighted median RTT
/// (weighted by the bin's weight), so badly peered networks and outliers, a minority at any
/// distance, do not pull it: the line is what a typical network sees. A PoP whose bins are
/// too few or too close together for a slope takes the weighted median slope of those that
/// have one ([`FIBRE_SLOPE`] if none does), and the intercept through its own bins. A PoP
/// without points (with a positive, finite RTT) is a typical PoP: the shared slope, the
/// weighted median intercept and the fastest floor; `None` when no PoP has points.
pub fn fit_all(points: &[Vec<Point>]) -> Vec<Option<Line>> {
    let binned: Vec<Vec<Point>> = points.iter().map(|p| bin_medians(p)).collect();
    let fastest = binned
        .iter()
        .flatten()
        .map(|p| p.rtt)
        .min_by(f64::total_cmp);
    let Some(fastest) = fastest else {
        return vec![None; points.len()];
    };
    let floors: Vec<f64> = binned
        .iter()
        .map(|m| near_floor(m).unwrap_or(fastest))
        .collect();
    let own: Vec<Option<Line>> = binned
        .iter()
        .zip(&floors)
        .map(|(m, &floor)| {
            let (lo, hi) = m
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                    (lo.min(p.km), hi.max(p.km))
                });
            (m.len() >= MIN_BINS && hi - lo >= MIN_SPAN_KM)
                .then(|| least_squares(m, floor))
                .flatten()
        })
        .collect();
    let mut slopes: Vec<(f64, f64)> = own
        .iter()
        .zip(&binned)
        .filter_map(|(l, m)| Some((l.as_ref()?.slope, m.iter().map(|p| p.weight).sum())))
        .collect();
    let common = weighted_median(&mut slopes).unwrap_or(FIBRE_SLOPE);
    // The typical PoP: the shared slope and the weighted median intercept of the PoPs measured
    // widely enough for a line of their own (of all, if none is).
    let weight = |m: &Vec<Point>| m.iter().map(|p| p.weight).sum::<f64>();
    let mut intercepts: Vec<(f64, f64)> = own
        .iter()
        .zip(&binned)
        .filter_map(|(l, m)| Some((l.as_ref()?.intercept, weight(m))))
        .collect();
    if intercepts.is_empty() {
        intercepts = binned
            .iter()
            .zip(&floors)
            .filter_map(|(m, &f)| Some((through(m, common, f)?.intercept, weight(m))))
            .collect();
    }
    let typical_intercept = weighted_median(&mut intercepts);
    let typical = typical_intercept.map(|intercept| Line {
        intercept,
        slope: common,
        floor: fastest,
    });
    own.into_iter()
        .zip(binned.iter().zip(&floors))
        .map(|(line, (m, &floor))| {
            line.or_else(|| {
                // A PoP measured at too few distances: its own intercept, through its bins,
                // counts by how much it stands on (credibility), the rest is the typical
                // PoP's. One network's heavy-tailed sample must not make it fast for everyone.
                let mut l = through(m, common, floor)?;
                if let Some(t) = typical_intercept {
                    let w = weight(m);
                    l.intercept = t + w / (w + OWN_INTERCEPT_HALF) * (l.intercept - t);
                }
                Some(l)
            })
            .or(typical)
        })
        .collect()
}

/// A PoP measured at too few distances for a slope of its own has its own intercept count
/// half at this much sample weight (successful samples, at most 10 per network).
const OWN_INTERCEPT_HALF: f64 = 20.0;

/// Fits one PoP's line alone (as [`fit_all`] does for a PoP with enough distances; with too
/// few, a flat line at the median): the tests check the fitting rules on it.
#[cfg(test)]
fn fit(points: &[Point]) -> Option<Line> {
    let m = bin_medians(points);
    let floor = near_floor(&m).or_else(|| m.iter().map(|p| p.rtt).min_by(f64::total_cmp))?;
    least_squares(&m, floor)
}

/// The points in 250 km bins: each bin's mean distance, weighted median RTT and total weight.
fn bin_medians(points: &[Point]) -> Vec<Point> {
    let mut bins: std::collections::BTreeMap<i64, Vec<&Point>> = std::collections::BTreeMap::new();
    for p in points
        .iter()
        .filter(|p| p.km.is_finite() && p.rtt.is_finite() && p.rtt > 0.0)
    {
        bins.entry((p.km / BIN_KM).floor() as i64)
            .or_default()
            .push(p);
    }
    bins.into_values()
        .map(|mut bin| {
            bin.sort_by(|a, b| a.rtt.total_cmp(&b.rtt));
            let total: f64 = bin.iter().map(|p| p.weight.min(MAX_WEIGHT)).sum();
            let mut seen = 0.0;
            let median = bin
                .iter()
                .find(|p| {
                    seen += p.weight.min(MAX_WEIGHT);
                    seen >= total / 2.0
                })
                .map_or(bin[0].rtt, |p| p.rtt);
            let km = bin.iter().map(|p| p.km).sum::<f64>() / bin.len() as f64;
            Point {
                km,
                rtt: median,
                weight: total,
            }
        })
        .collect()
}

/// The fastest median of the bins within [`NEAR_KM`] of the PoP.
fn near_floor(bins: &[Point]) -> Option<f64> {
    bins.iter()
        .filter(|p| p.km < NEAR_KM)
        .map(|p| p.rtt)
        .min_by(f64::total_cmp)
}

/// The line of slope `slope` through the bins: its intercept the weighted median of what each
/// bin says.
fn through(bins: &[Point], slope: f64, floor: f64) -> Option<Line> {
    let mut intercepts: Vec<(f64, f64)> = bins
        .iter()
        .map(|p| (p.rtt - slope * p.km, p.weight))
        .collect();
    Some(Line {
        intercept: weighted_median(&mut intercepts)?,
        slope,
        floor,
    })
}

/// The weighted median of (value, weight) pairs.
fn weighted_median(values: &mut [(f64, f64)]) -> Option<f64> {
    values.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = values.iter().map(|v| v.1).sum();
    let mut seen = 0.0;
    values
        .iter()
        .find(|v| {
            seen += v.1;
            seen >= total / 2.0
        })
        .map(|v| v.0)
}

fn least_squares(points: &[Point], floor: f64) -> Option<Line> {
    let (mut sw, mut sx, mut sy) = (0.0, 0.0, 0.0);
    let mut n = 0usize;
    for p in points {
        let w = p.weight;
        sw += w;
        sx += w * p.km;
        sy += w * p.rtt;
        n += 1;
    }
    if n == 0 || sw <= 0.0 {
        return None;
    }
    let (mx, my) = (sx / sw, sy / sw);
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for p in points {
        let w = p.weight;
        sxx += w * (p.km - mx) * (p.km - mx);
        sxy += w * (p.km - mx) * (p.rtt - my);
    }
    if n < 2 || sxx <= 1e-9 {
        // No spread in distance: a flat line at the mean.
        return Some(Line {
            intercept: my,
            slope: 0.0,
            floor,
        });
    }
    // RTT never shrinks with distance; a negative slope is noise in a narrow range.
    let slope = (sxy / sxx).max(0.0);
    Some(Line {
        intercept: my - slope * mx,
        slope,
        floor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_the_line_and_ignores_badly_peered_points() {
        let mut points: Vec<Point> = (0..200)
            .map(|i| {
                let km = i as f64 * 50.0;
                Point {
                    km,
                    rtt: 5.0 + 0.015 * km,
                    weight: 1.0,
                }
            })
            .collect();
        // Three badly peered networks, +100 ms.
        for km in [100.0, 900.0, 4000.0] {
            points.push(Point {
                km,
                rtt: 105.0 + 0.015 * km,
                weight: 5.0,
            });
        }
        let line = fit(&points).unwrap();
        assert!((line.intercept - 5.0).abs() < 1.0, "{line:?}");
        assert!((line.slope - 0.015).abs() < 0.001, "{line:?}");
        assert_eq!(fit(&[]), None);
        let flat = fit(&[Point {
            km: 10.0,
            rtt: 30.0,
            weight: 1.0,
        }])
        .unwrap();
        assert_eq!(flat.at(5000.0), 30.0);
    }

    #[test]
    fn a_pop_few_measure_takes_the_shared_slope_and_borrows_its_intercept() {
        // Two well-measured PoPs at 0.02 ms/km (intercepts 5 and 25).
        let line = |intercept: f64| -> Vec<Point> {
            (0..60)
                .map(|i| {
                    let km = f64::from(i) * 150.0;
                    Point {
                        km,
                        rtt: intercept + 0.02 * km,
                        weight: 2.0,
                    }
                })
                .collect()
        };
        let one = |km: f64, rtt: f64, weight: f64| vec![Point { km, rtt, weight }];
        let lines = fit_all(&[
            line(5.0),
            line(25.0),
            // Measured once, 3,000 km away, by a low outlier (a typical PoP: 65 ms there).
            one(3000.0, 20.0, 1.0),
            // Measured by forty networks, but at one distance: its own intercept mostly stands.
            (0..40)
                .map(|_| Point {
                    km: 3000.0,
                    rtt: 120.0,
                    weight: 10.0,
                })
                .collect(),
            Vec::new(),
        ]);
        for l in &lines[..2] {
            assert!((l.unwrap().slope - 0.02).abs() < 1e-3, "{lines:?}");
        }
        let outlier = lines[2].unwrap();
        assert!((outlier.slope - 0.02).abs() < 1e-3, "{outlier:?}");
        assert!(
            outlier.at(3000.0) > 55.0,
            "one sample is not the PoP: {outlier:?}"
        );
        let slow = lines[3].unwrap();
        assert!((slow.at(3000.0) - 120.0).abs() < 6.0, "{slow:?}");
        // Nobody measured the last: a typical PoP.
        let typical = lines[4].unwrap();
        assert!(
            (typical.slope - 0.02).abs() < 1e-3 && typical.intercept <= 25.0,
            "{typical:?}"
        );
        assert_eq!(fit_all(&[Vec::new(), Vec::new()]), vec![None, None]);
        // With no PoP measured widely, light in fibre.
        assert_eq!(
            fit_all(&[one(10.0, 3.0, 1.0)])[0].unwrap().slope,
            FIBRE_SLOPE
        );
    }

    #[test]
    fn never_predicts_below_the_fastest_bin() {
        // Networks 1-2 ms from the PoP, and a steep far range: the fitted line crosses zero
        // near the PoP, the model does not.
        let mut points = vec![
            Point {
                km: 5.0,
                rtt: 1.2,
                weight: 3.0,
            },
            Point {
                km: 20.0,
                rtt: 2.0,
                weight: 3.0,
            },
        ];
        points.extend((1..40).map(|i| Point {
            km: 1000.0 + f64::from(i) * 200.0,
            rtt: 0.05 * (1000.0 + f64::from(i) * 200.0) - 30.0,
            weight: 10.0,
        }));
        let line = fit(&points).unwrap();
        assert!(line.intercept < 0.0, "{line:?}");
        for km in [0.0, 5.0, 50.0, 300.0] {
            assert!(line.at(km) >= 1.2, "{km}: {}", line.at(km));
        }
        assert_eq!(
            fit(&[Point {
                km: 1.0,
                rtt: 0.0,
                weight: 1.0
            }]),
            None
        );
    }
}
