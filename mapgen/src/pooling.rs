//! Hierarchical pooling (empirical Bayes): each key's per-PoP RTT estimate blends its own
//! samples with its parent's estimate, by how many samples it has and how much samples and
//! keys spread, so one sample moves an estimate a little and fifty move it a lot. There is no
//! minimum-samples cliff: every measurement counts for what it is worth.
//!
//! Pooling works on log RTT: every shift is a ratio and every blend a weighted geometric
//! mean. Latency noise is multiplicative (queues and detours scale with the path), a network
//! 1 ms from a PoP and one 200 ms away differ by ratios, not by the same milliseconds, and an
//! estimate built from positive numbers by ratios is positive whatever the data: no network
//! close to a PoP can be estimated at or below zero, nor beyond what its own samples and its
//! prior span.
//!
//! Client key space, per PoP, from the root down:
//! 1. the latency model ([`crate::model`]) at the client's GeoIP location (positive);
//! 2. its measured neighbours in address order, inside its routed prefix or /16, multiply it
//!    by their own shrunk ratios to the model (so a network badly peered with a PoP pulls its
//!    unmeasured neighbours away from it too);
//! 3. the /24's own data: `log prior + B * (log median - log prior)` with
//!    `B = tau² / (tau² + sigma²/n)`.
//!
//! The spreads come from the data by the method of moments, in log units: `sigma²` from the
//! variance of log RTT over repeated samples of one key, `tau²` from how far keys' log
//! medians sit from their prior beyond what their noise explains.
//!
//! Resolver key space: a resolver is decided by the clients behind it. Pairing tells which
//! client /24s asked through it and how often; its estimate for a PoP is the mean of those
//! clients' estimates weighted by how often each appeared (the mean latency its users would
//! see), so a PoP measured by none of its clients is still placed by theirs. A resolver /24
//! (a public resolver's egress addresses) pools the populations of its addresses; an address
//! keeps its own estimate only as far as its population really differs from its /24's
//! (empirical Bayes again, across addresses). Means of positive estimates are positive.

use std::collections::BTreeMap;

use ipnet::IpNet;

use crate::model::{self, Line, Point};
use crate::ranking::PopStat;

/// A key's estimate for each PoP.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Estimate {
    /// Estimated RTT per PoP index, ms; `None` where nothing places the PoP.
    pub rtt: Vec<Option<f64>>,
    /// Share of each estimate that came from the key's own samples (0 to 1).
    pub own: Vec<f64>,
    /// PoPs that mostly fail for the key: ranked after the others whatever their RTT.
    pub failing: Vec<bool>,
    /// Samples (pairings) behind the key.
    pub samples: u64,
}

/// Checks a latency where it is made: a latency is positive and finite (lesson 19: a value
/// keeps its domain where it is made, not three steps later at the writer). Every estimate
/// goes through it; the rows are checked again with the map reader's own rule
/// ([`geomap::MapRow::problems`]) before they are kept.
pub fn latency(ms: f64) -> f64 {
    debug_assert!(ms.is_finite() && ms > 0.0, "{ms} is not a latency");
    ms
}

impl Estimate {
    fn empty(pops: usize) -> Estimate {
        Estimate {
            rtt: vec![None; pops],
            own: vec![0.0; pops],
            failing: vec![false; pops],
            samples: 0,
        }
    }

    /// The PoPs, fastest first: estimated ones by RTT (failing ones after them), then the
    /// rest in `fallback` order; with the RTT of each where estimated.
    pub fn ranking(
        &self,
        fallback: &[geomap::PopIndex],
    ) -> (Vec<geomap::PopIndex>, Vec<Option<f32>>) {
        let mut known: Vec<(bool, f64, geomap::PopIndex)> = self
            .rtt
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((self.failing[i], (*r)?, i as geomap::PopIndex)))
            .collect();
        known.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut pops: Vec<geomap::PopIndex> = known.iter().map(|k| k.2).collect();
        let mut rtts: Vec<Option<f32>> = known.iter().map(|k| Some(k.1 as f32)).collect();
        for &p in fallback {
            if !pops.contains(&p) {
                pops.push(p);
                rtts.push(None);
            }
        }
        (pops, rtts)
    }
}

/// The smallest spread a level is given (variance of log RTT, about 2 %): a level whose units
/// look identical still lets a key's own data count a little, and no weight divides by zero.
const MIN_TAU2: f64 = 4e-4;

/// The noise of one sample (variance of log RTT, about 20 %) when no key has repeated samples.
const DEFAULT_NOISE: f64 = 0.04;

/// How often a PoP must fail for a key, with at least this many attempts, to rank last there.
const FAILING_SHARE: f64 = 0.5;
const FAILING_ATTEMPTS: u64 = 2;

/// The client key space's pooled estimates, and what predicts keys that were never measured.
pub struct Clients {
    /// Every measured /24 (/48).
    pub keys: BTreeMap<IpNet, Estimate>,
    /// The latency model per PoP.
    pub lines: Vec<Option<Line>>,
    /// Measured keys placed by their measurements rather than GeoIP (see `locate`).
    pub relocated: usize,
    /// Each measured key's log ratio to the model for the PoPs it measured, shrunk: what its
    /// neighbours borrow.
    residuals: BTreeMap<IpNet, Vec<Option<f64>>>,
    /// Sample noise: variance of one sample's log RTT around its key's typical one.
    pub sigma2: f64,
    /// Spread of true /24 log RTTs around their prior (model and neighbours), per PoP.
    pub tau2: Vec<f64>,
}

/// Where a client key sits: its GeoIP location, and the prefix its neighbours must share
/// (its routed prefix, else its fixed coarse aggregate).
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    /// GeoIP location.
    pub at: Option<(f64, f64)>,
    /// Neighbours count only inside this prefix.
    pub within: Option<IpNet>,
}

/// One key's observation of one PoP.
#[derive(Clone, Copy)]
struct Obs {
    key: usize,
    /// Its median RTT, ms.
    median: f64,
    /// The log of it.
    log: f64,
    n: f64,
}

/// Estimates every measured client key. `pops` gives each PoP's coordinates; `place` says
/// where a key sits.
pub fn clients(
    finest: &BTreeMap<IpNet, Vec<PopStat>>,
    pops: &[Option<(f64, f64)>],
    place: &dyn Fn(IpNet) -> Placement,
) -> Clients {
    let npops = pops.len();
    let keys: Vec<IpNet> = finest.keys().copied().collect();
    let placed: Vec<Placement> = keys.iter().map(|k| place(*k)).collect();
    let mut est: Vec<Estimate> = finest
        .values()
        .map(|stats| {
            let mut e = Estimate::empty(npops);
            for s in stats {
                e.samples += s.samples;
                if let Some(f) = e.failing.get_mut(usize::from(s.pop)) {
                    *f = s.samples >= FAILING_ATTEMPTS && s.fail_rate >= FAILING_SHARE;
                }
            }
            e
        })
        .collect();
    // Observations per PoP: the key's median and its successful samples.
    let mut obs: Vec<Vec<Obs>> = vec![Vec::new(); npops];
    let mut variances: Vec<f64> = Vec::new();
    for (key, stats) in finest.values().enumerate() {
        for s in stats {
            // The reader refuses RTTs below the contract's minimum; a median is positive.
            let Some(median) = s.median.filter(|m| m.is_finite() && *m > 0.0) else {
                continue;
            };
            let n = (s.samples as f64 * (1.0 - s.fail_rate)).round().max(1.0);
            if let Some(o) = obs.get_mut(usize::from(s.pop)) {
                o.push(Obs {
                    key,
                    median,
                    log: median.ln(),
                    n,
                });
            }
            if n >= 2.0 {
                if let Some(v) = s.log_var.filter(|v| v.is_finite()) {
                    variances.push(v);
                }
            }
        }
    }
    let sigma2 = noise(&mut variances);
    let km = |key: usize, pop: usize| -> Option<f64> {
        let (lat, lon) = placed[key].at?;
        let (plat, plon) = pops[pop]?;
        Some(geomap::geoip::distance_km(lat, lon, plat, plon))
    };
    let points: Vec<Vec<Point>> = (0..npops)
        .map(|p| {
            obs[p]
                .iter()
                .filter_map(|o| {
                    Some(Point {
                        km: km(o.key, p)?,
                        rtt: o.median,
                        weight: o.n,
                    })
                })
                .collect()
        })
        .collect();
    let lines: Vec<Option<Line>> = model::fit_all(&points);
    // Where the model places each key: its GeoIP location, unless its own measurements say
    // GeoIP is wrong about it.
    let mut measured: Vec<Vec<(usize, f64)>> = vec![Vec::new(); keys.len()];
    for (p, o) in obs.iter().enumerate() {
        for o in o {
            measured[o.key].push((p, o.log));
        }
    }
    let at: Vec<Option<(f64, f64)>> = (0..keys.len())
        .map(|k| locate(placed[k].at, &measured[k], &lines, pops))
        .collect();
    let relocated = (0..keys.len()).filter(|&k| at[k] != placed[k].at).count();
    let km = |key: usize, pop: usize| -> Option<f64> {
        let (lat, lon) = at[key]?;
        let (plat, plon) = pops[pop]?;
        Some(geomap::geoip::distance_km(lat, lon, plat, plon))
    };
    // The model's prediction per key and PoP, as a log: the line at the key's location, else
    // the PoP's geometric mean over all keys.
    let root: Vec<Vec<Option<f64>>> = (0..npops)
        .map(|p| {
            let mean = weighted_mean(obs[p].iter().map(|o| (o.log, o.n)));
            (0..keys.len())
                .map(|k| match (lines[p], km(k, p)) {
                    (Some(line), Some(d)) => Some(latency(line.at(d)).ln()),
                    _ => mean,
                })
                .collect()
        })
        .collect();
    // What each key tells its neighbours: its log ratio to the model, shrunk.
    let mut residuals: Vec<Vec<Option<f64>>> = vec![vec![None; npops]; keys.len()];
    for p in 0..npops {
        let t = moments(
            obs[p]
                .iter()
                .filter_map(|o| Some(((o.log - root[p][o.key]?).powi(2), sigma2 / o.n))),
        );
        for o in &obs[p] {
            if let Some(m) = root[p][o.key] {
                residuals[o.key][p] = Some(t / (t + sigma2 / o.n) * (o.log - m));
            }
        }
    }
    let residuals: BTreeMap<IpNet, Vec<Option<f64>>> =
        keys.iter().copied().zip(residuals).collect();
    let mut clients = Clients {
        keys: BTreeMap::new(),
        relocated,
        lines,
        residuals,
        sigma2,
        tau2: vec![MIN_TAU2; npops],
    };
    for p in 0..npops {
        let prior: Vec<Option<f64>> = (0..keys.len())
            .map(|k| {
                let shift = clients.neighbours(keys[k], placed[k].within, p, true);
                root[p][k].map(|m| m + shift)
            })
            .collect();
        let t = moments(
            obs[p]
                .iter()
                .filter_map(|o| Some(((o.log - prior[o.key]?).powi(2), sigma2 / o.n))),
        );
        clients.tau2[p] = t;
        for (k, e) in est.iter_mut().enumerate() {
            e.rtt[p] = prior[k].map(|l| latency(l.exp()));
        }
        for o in &obs[p] {
            let e = &mut est[o.key];
            let b = t / (t + sigma2 / o.n);
            (e.rtt[p], e.own[p]) = match prior[o.key] {
                Some(pr) => (Some(latency((pr + b * (o.log - pr)).exp())), b),
                None => (Some(latency(o.median)), 1.0),
            };
        }
    }
    clients.keys = keys.into_iter().zip(est).collect();
    clients
}

impl Clients {
    /// What the measured neighbours of `net` in address order (the nearest on each side,
    /// inside `within`) say about PoP `p` beyond the model, as a log ratio: networks next to each other
    /// mostly belong to one operator and share its peering. Conservative: both sides must
    /// agree (the smaller shift is taken), one side alone counts half, disagreement counts
    /// nothing. `exclusive` leaves `net` itself out.
    fn neighbours(&self, net: IpNet, within: Option<IpNet>, p: usize, exclusive: bool) -> f64 {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let Some(within) = within else { return 0.0 };
        let inside = |(k, r): (&IpNet, &Vec<Option<f64>>)| within.contains(k).then_some(r[p]);
        let left = self
            .residuals
            .range(..net)
            .next_back()
            .and_then(inside)
            .flatten();
        let from = if exclusive {
            Excluded(net)
        } else {
            Included(net)
        };
        let right = self
            .residuals
            .range((from, Unbounded))
            .next()
            .and_then(inside)
            .flatten();
        match (left, right) {
            (Some(a), Some(b)) if a.signum() == b.signum() => a.signum() * a.abs().min(b.abs()),
            (Some(a), None) | (None, Some(a)) => a / 2.0,
            _ => 0.0,
        }
    }

    /// What the model and the measured neighbours predict for a client network nobody
    /// measured. `None` for a PoP where nothing places it.
    pub fn predict(&self, pops: &[Option<(f64, f64)>], net: IpNet, at: Placement) -> Estimate {
        let mut e = Estimate::empty(pops.len());
        let Some((lat, lon)) = at.at else { return e };
        for (p, coords) in pops.iter().enumerate() {
            let (Some(line), Some((plat, plon))) = (self.lines[p], coords) else {
                continue;
            };
            let rtt = line.at(geomap::geoip::distance_km(lat, lon, *plat, *plon));
            e.rtt[p] = Some(latency(
                rtt * self.neighbours(net, at.within, p, false).exp(),
            ));
        }
        e
    }
}

/// A key's measured PoPs must fit the model this badly at its GeoIP location (median squared
/// log ratio: a factor of 2.7 at the median) before its measurements may place it elsewhere.
const MISFIT: f64 = 1.0;

/// Measured PoPs a key needs before its measurements may place it: with fewer, a location
/// next to one of them fits anything.
const LOCATE_MIN_POPS: usize = 3;

/// Where the model should place a key: `geoip`, unless the key's own measurements (`measured`:
/// PoP and log median) contradict the model there and fit it far better at one of the PoPs'
/// locations. GeoIP databases are wrong for some networks (a block moved to another
/// continent, a head office's address): such a network measured 800 ms to the PoP GeoIP puts
/// next to it, and the model there would rank its unmeasured PoPs by a location its own data
/// refutes. Robust to a badly peered PoP or two: the fit is the median over its PoPs.
fn locate(
    geoip: Option<(f64, f64)>,
    measured: &[(usize, f64)],
    lines: &[Option<Line>],
    pops: &[Option<(f64, f64)>],
) -> Option<(f64, f64)> {
    if measured.len() < LOCATE_MIN_POPS {
        return geoip;
    }
    let misfit = |(lat, lon): (f64, f64)| -> Option<f64> {
        let mut sq: Vec<f64> = measured
            .iter()
            .filter_map(|&(p, log)| {
                let (plat, plon) = pops[p]?;
                let model = lines[p]?.at(geomap::geoip::distance_km(lat, lon, plat, plon));
                Some((log - latency(model).ln()).powi(2))
            })
            .collect();
        if sq.len() < LOCATE_MIN_POPS {
            return None;
        }
        sq.sort_by(f64::total_cmp);
        Some(sq[sq.len() / 2])
    };
    let here = geoip.and_then(misfit);
    if here.is_some_and(|m| m <= MISFIT) {
        return geoip;
    }
    let best = pops
        .iter()
        .flatten()
        .filter_map(|&c| Some((misfit(c)?, c)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    match (here, best) {
        (Some(h), Some((b, c))) if b * 4.0 < h => Some(c),
        (None, Some((b, c))) if geoip.is_none() && b <= MISFIT => Some(c),
        _ => geoip,
    }
}

/// The sample noise from the log-RTT variances of keys with repeated samples: their median,
/// scaled to the mean (a variance from two samples is skewed: its median is about 0.45 of the
/// true variance), so a few outliers do not make every key's own data count for nothing.
fn noise(variances: &mut [f64]) -> f64 {
    if variances.is_empty() {
        return DEFAULT_NOISE;
    }
    variances.sort_by(f64::total_cmp);
    (variances[variances.len() / 2] / 0.45).max(MIN_TAU2)
}

/// Method of moments: the mean squared deviation minus the mean noise variance, from
/// (squared deviation, noise variance) pairs.
fn moments(pairs: impl Iterator<Item = (f64, f64)>) -> f64 {
    let (mut sq, mut noise, mut n) = (0.0, 0.0, 0.0);
    for (d2, v) in pairs {
        sq += d2;
        noise += v;
        n += 1.0;
    }
    if n == 0.0 {
        return MIN_TAU2;
    }
    ((sq - noise) / n).max(MIN_TAU2)
}

fn weighted_mean(values: impl Iterator<Item = (f64, f64)>) -> Option<f64> {
    let (mut s, mut w) = (0.0, 0.0);
    for (v, weight) in values {
        s += v * weight;
        w += weight;
    }
    (w > 0.0).then(|| s / w)
}

/// A resolver's population: the client keys that asked through it, each with how often.
pub type Population = Vec<(IpNet, f64)>;

/// Estimates resolvers from the clients behind them. Returns the estimate of each resolver
/// address and of each resolver /24 (by `group`), the address ones already blended with their
/// /24's. `per_session` converts a population's weights (pairings) into sessions: how many
/// draws from its /24's population an address's own population stands on.
pub fn resolvers(
    populations: &BTreeMap<IpNet, Population>,
    clients: &Clients,
    npops: usize,
    per_session: f64,
    group: &dyn Fn(IpNet) -> IpNet,
) -> (BTreeMap<IpNet, Estimate>, BTreeMap<IpNet, Estimate>) {
    let mix = |pop: &[(IpNet, f64)]| -> (Estimate, f64) {
        let mut e = Estimate::empty(npops);
        let mut sums = vec![(0.0, 0.0, 0.0); npops];
        let mut w1 = 0.0;
        for (client, w) in pop {
            let Some(c) = clients.keys.get(client) else {
                continue;
            };
            w1 += w;
            for (p, sum) in sums.iter_mut().enumerate() {
                if let Some(r) = c.rtt[p] {
                    sum.0 += w * r;
                    sum.1 += w;
                    sum.2 += w * c.own[p];
                }
            }
        }
        // The resolver's own samples: how often its clients were measured through it.
        e.samples = w1.round() as u64;
        for (p, (s, w, own)) in sums.into_iter().enumerate() {
            if w > 0.0 {
                e.rtt[p] = Some(latency(s / w));
                e.own[p] = own / w;
            }
        }
        (e, w1 / per_session.max(1.0))
    };
    let mut by_group: BTreeMap<IpNet, Population> = BTreeMap::new();
    for (addr, pop) in populations {
        by_group
            .entry(group(*addr))
            .or_default()
            .extend(pop.iter().copied());
    }
    let groups: BTreeMap<IpNet, Estimate> =
        by_group.iter().map(|(g, pop)| (*g, mix(pop).0)).collect();
    // How a client's estimate spreads within each group's population, per PoP.
    let spread: BTreeMap<IpNet, Vec<f64>> = by_group
        .iter()
        .map(|(g, pop)| {
            let mean = &groups[g];
            let v = (0..npops)
                .map(|p| {
                    let Some(m) = mean.rtt[p] else { return 0.0 };
                    let (mut s, mut w) = (0.0, 0.0);
                    for (client, cw) in pop {
                        if let Some(r) = clients.keys.get(client).and_then(|c| c.rtt[p]) {
                            s += cw * (r - m).powi(2);
                            w += cw;
                        }
                    }
                    if w > 0.0 {
                        s / w
                    } else {
                        0.0
                    }
                })
                .collect();
            (*g, v)
        })
        .collect();
    let own: BTreeMap<IpNet, (Estimate, f64)> =
        populations.iter().map(|(a, pop)| (*a, mix(pop))).collect();
    // Per /24 and PoP: how much its addresses' populations really differ (method of moments
    // over its addresses; 0 for a lone address, which then is its /24).
    let mut tau: BTreeMap<IpNet, Vec<(f64, f64, f64)>> = BTreeMap::new();
    for (a, (e, n)) in &own {
        let g = group(*a);
        let t = tau.entry(g).or_insert_with(|| vec![(0.0, 0.0, 0.0); npops]);
        for (p, t) in t.iter_mut().enumerate() {
            if let (Some(mine), Some(theirs)) = (e.rtt[p], groups[&g].rtt[p]) {
                t.0 += (mine - theirs).powi(2);
                t.1 += spread[&g][p] / n.max(1.0);
                t.2 += 1.0;
            }
        }
    }
    let tau: BTreeMap<IpNet, Vec<f64>> = tau
        .into_iter()
        .map(|(g, t)| {
            let t = t
                .into_iter()
                .map(|(sq, noise, n)| {
                    if n > 1.0 {
                        ((sq - noise) / n).max(0.0)
                    } else {
                        0.0
                    }
                })
                .collect();
            (g, t)
        })
        .collect();
    let addresses = own
        .into_iter()
        .map(|(a, (mut e, n))| {
            let g = group(a);
            let (theirs_all, tau, spread) = (&groups[&g], &tau[&g], &spread[&g]);
            for p in 0..npops {
                if let (Some(mine), Some(theirs)) = (e.rtt[p], theirs_all.rtt[p]) {
                    let v = spread[p] / n.max(1.0);
                    let b = if tau[p] + v > 0.0 {
                        tau[p] / (tau[p] + v)
                    } else {
                        1.0
                    };
                    e.rtt[p] = Some(latency(theirs + b * (mine - theirs)));
                }
            }
            (a, e)
        })
        .collect();
    (addresses, groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// A stat whose samples spread by `var` ms² around `median` (stored as the log variance).
    fn stat(pop: u16, samples: u64, median: f64, var: Option<f64>) -> PopStat {
        PopStat {
            log_var: var.map(|v| v / (median * median)),
            ..PopStat::measured(pop, samples, median)
        }
    }

    /// 200 /24s spread along a line of longitudes, two PoPs at either end, RTT 5 + 0.015 ms/km
    /// with a few ms of per-subnet spread; then the keys under test.
    fn world(
        extra: &[(&str, Vec<PopStat>)],
    ) -> (crate::aggregate::LevelStats, Vec<Option<(f64, f64)>>) {
        let pops = vec![Some((0.0, 0.0)), Some((0.0, 40.0))];
        let mut finest = BTreeMap::new();
        for i in 0..200u32 {
            let lon = f64::from(i) * 0.2;
            let km0 = geomap::geoip::distance_km(0.0, lon, 0.0, 0.0);
            let km1 = geomap::geoip::distance_km(0.0, lon, 0.0, 40.0);
            let spread = f64::from(i % 5);
            finest.insert(
                net(&format!("10.{}.{}.0/24", i / 256, i % 256)),
                vec![
                    stat(0, 4, 5.0 + 0.015 * km0 + spread, Some(6.0)),
                    stat(1, 4, 5.0 + 0.015 * km1 + spread, Some(6.0)),
                ],
            );
        }
        for (k, s) in extra {
            finest.insert(net(k), s.clone());
        }
        (finest, pops)
    }

    fn place(net: IpNet) -> Placement {
        // 10.0.x.0/24 sits at longitude x * 0.2; 10.9.0.0/16 at longitude 1.
        let o = match net.addr() {
            std::net::IpAddr::V4(a) => a.octets(),
            _ => unreachable!(),
        };
        let lon = if o[1] == 9 {
            1.0
        } else {
            f64::from(o[2]) * 0.2
        };
        Placement {
            at: Some((0.0, lon)),
            within: IpNet::new(net.addr(), 16).ok().map(|n| n.trunc()),
        }
    }

    #[test]
    fn one_sample_moves_an_estimate_a_little_and_fifty_a_lot() {
        // Two subnets at longitude 1 (about 9 ms to PoP 0) measured 80 ms to PoP 0:
        // one with a single sample, one with fifty.
        let (finest, pops) = world(&[
            ("10.9.1.0/24", vec![stat(0, 1, 80.0, None)]),
            ("10.9.3.0/24", vec![stat(0, 50, 80.0, Some(6.0))]),
        ]);
        let c = clients(&finest, &pops, &place);
        let one = &c.keys[&net("10.9.1.0/24")];
        let fifty = &c.keys[&net("10.9.3.0/24")];
        // What the model alone says at longitude 1, with no measured neighbours.
        let alone = Placement {
            at: Some((0.0, 1.0)),
            within: None,
        };
        let prior = c.predict(&pops, net("10.8.0.0/24"), alone);
        let (p1, p50, base) = (
            one.rtt[0].unwrap(),
            fifty.rtt[0].unwrap(),
            prior.rtt[0].unwrap(),
        );
        assert!(base < 15.0, "the model predicts about 9 ms there: {base}");
        assert!(p1 > base && p1 < 80.0 && p50 > p1, "{base} {p1} {p50}");
        assert!(80.0 - p50 < 1.0, "fifty samples nearly decide alone: {p50}");
        assert!(one.own[0] < fifty.own[0] && fifty.own[0] > 0.95);
        // PoP 1 was not measured by either: the model places it, with nothing of their own.
        assert!(one.rtt[1].is_some() && one.own[1] == 0.0);
    }

    #[test]
    fn networks_next_to_a_pop_are_never_estimated_at_or_below_zero() {
        // The issue 18 world in small: a steep far range (the line through it crosses zero
        // near PoP 0), and networks a few km from PoP 0 measured at 1-3 ms, some of them only
        // once, beside neighbours measured far faster than the line predicts.
        let pops = vec![Some((0.0, 0.0)), Some((0.0, 40.0))];
        let mut finest = BTreeMap::new();
        for i in 0..150u32 {
            let lon = 5.0 + f64::from(i) * 0.2;
            let km0 = geomap::geoip::distance_km(0.0, lon, 0.0, 0.0);
            let km1 = geomap::geoip::distance_km(0.0, lon, 0.0, 40.0);
            finest.insert(
                net(&format!("10.1.{i}.0/24")),
                vec![
                    stat(0, 4, (0.04 * km0 - 20.0).max(1.0), Some(2.0)),
                    stat(1, 4, 5.0 + 0.015 * km1, Some(6.0)),
                ],
            );
        }
        for i in 0..40u32 {
            let rtt = 1.0 + f64::from(i % 3);
            let samples = if i % 2 == 0 { 1 } else { 5 };
            finest.insert(
                net(&format!("10.9.{i}.0/24")),
                vec![stat(0, samples, rtt, Some(0.1))],
            );
        }
        let place = |n: IpNet| {
            let o = match n.addr() {
                std::net::IpAddr::V4(a) => a.octets(),
                _ => unreachable!(),
            };
            let lon = if o[1] == 9 {
                f64::from(o[2]) * 0.001
            } else {
                5.0 + f64::from(o[2]) * 0.2
            };
            Placement {
                at: Some((0.0, lon)),
                within: IpNet::new(n.addr(), 16).ok().map(|n| n.trunc()),
            }
        };
        let c = clients(&finest, &pops, &place);
        for (k, e) in &c.keys {
            for r in e.rtt.iter().flatten() {
                assert!(r.is_finite() && *r > 0.0, "{k}: {e:?}");
            }
        }
        for i in 40..80u32 {
            let n = net(&format!("10.9.{i}.0/24"));
            let e = c.predict(&pops, n, place(n));
            let r0 = e.rtt[0].unwrap();
            assert!(r0 > 0.0 && r0 < 10.0, "{n}: {e:?}");
        }
    }

    #[test]
    fn neighbours_that_agree_move_an_unmeasured_network() {
        // Both neighbours of 10.9.2.0/24 are 60 ms slow to PoP 0: it is predicted slow too,
        // while 10.9.20.0/24, between a slow and a normal neighbour, is not moved.
        let slow = |n: &'static str| {
            (
                n,
                vec![stat(0, 20, 80.0, Some(6.0)), stat(1, 20, 600.0, Some(6.0))],
            )
        };
        let (finest, pops) = world(&[
            slow("10.9.1.0/24"),
            slow("10.9.3.0/24"),
            slow("10.9.19.0/24"),
            ("10.9.21.0/24", vec![stat(0, 20, 20.0, Some(6.0))]),
        ]);
        let c = clients(&finest, &pops, &place);
        let between = c.predict(&pops, net("10.9.2.0/24"), place(net("10.9.2.0/24")));
        let mixed = c.predict(&pops, net("10.9.20.0/24"), place(net("10.9.20.0/24")));
        assert!(between.rtt[0].unwrap() > 70.0, "{between:?}");
        assert!(mixed.rtt[0].unwrap() < 30.0, "{mixed:?}");
    }

    #[test]
    fn resolvers_are_decided_by_their_clients_and_egress_addresses_pool() {
        let (finest, pops) = world(&[]);
        let c = clients(&finest, &pops, &place);
        let near0 = net("10.0.5.0/24"); // longitude 1: near PoP 0
        let near1 = net("10.0.195.0/24"); // longitude 39: near PoP 1
        let mut populations: BTreeMap<IpNet, Population> = BTreeMap::new();
        // An ISP /24 with two resolvers for two different populations.
        populations.insert(net("127.10.1.1/32"), vec![(near0, 10.0)]);
        populations.insert(net("127.10.1.2/32"), vec![(near1, 10.0)]);
        // A public /24 of ten egress addresses sharing one population (3 to 1), each seen a
        // few times, one address by chance only from the minority.
        for i in 1..=10 {
            let pop = if i == 10 {
                vec![(near1, 2.0)]
            } else {
                vec![(near0, 3.0), (near1, 1.0)]
            };
            populations.insert(net(&format!("127.20.1.{i}/32")), pop);
        }
        let group = |a: IpNet| IpNet::new(a.addr(), 24).unwrap().trunc();
        let (addresses, groups) = resolvers(&populations, &c, 2, 1.0, &group);
        let first = |e: &Estimate| e.ranking(&[0, 1]).0[0];
        assert_eq!(first(&addresses[&net("127.10.1.1/32")]), 0);
        assert_eq!(first(&addresses[&net("127.10.1.2/32")]), 1);
        assert_eq!(
            first(&groups[&net("127.20.1.0/24")]),
            0,
            "the majority decides"
        );
        assert_eq!(
            first(&addresses[&net("127.20.1.10/32")]),
            0,
            "an egress address with no population of its own follows its /24"
        );
        let g = &groups[&net("127.20.1.0/24")];
        let (r0, a0, b0) = (
            c.keys[&near0].rtt[0].unwrap(),
            c.keys[&near1].rtt[0].unwrap(),
            g.rtt[0].unwrap(),
        );
        let expected = (27.0 * r0 + 11.0 * a0) / 38.0;
        assert!(
            (b0 - expected).abs() < 1e-9,
            "weighted by how often: {b0} vs {expected}"
        );
    }
}
