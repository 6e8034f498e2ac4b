//! Scoring a map against the simulator's ground truth: where each way of choosing a PoP sends
//! the simulated users, and what that costs them against the oracle (their truly fastest PoP).
//!
//! Every decision is scored on the same world and the same users, weighted by how many users
//! each client /24 had: the share sent to their fastest PoP or one within 5 ms of it, and the
//! mean and 95th-percentile regret (ms lost against the oracle).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use geomap::geoip::distance_km;
use geomap::{AnswerTable, KeySpace, Map};
use ipnet::Ipv4Net;

use crate::world::World;
use crate::SimulateError;

/// One client subnet of the ground truth.
#[derive(Debug, Clone)]
pub struct Truth {
    /// The client /24.
    pub subnet: Ipv4Net,
    /// The resolver its users use.
    pub resolver: Ipv4Addr,
    /// Where its users are.
    pub lat: f64,
    /// Where its users are.
    pub lon: f64,
    /// How many simulated users it had.
    pub users: f64,
    /// True RTT to each PoP, in the world's PoP order.
    pub rtt: Vec<f64>,
}

/// Reads `ground_truth.csv` as `geodns simulate` writes it.
pub fn read_truth(path: &Path) -> Result<Vec<Truth>, SimulateError> {
    let io = |source| SimulateError::Io {
        path: path.display().to_string(),
        source,
    };
    let bad =
        |line: usize, what: &str| io(std::io::Error::other(format!("line {line}: bad {what}")));
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        if f.len() < 7 {
            return Err(bad(
                i + 1,
                "row (want subnet,network,resolver,lat,lon,users,rtt...)",
            ));
        }
        let num = |j: usize, what: &str| f[j].parse::<f64>().map_err(|_| bad(i + 1, what));
        out.push(Truth {
            subnet: f[0].parse().map_err(|_| bad(i + 1, "subnet"))?,
            resolver: f[2].parse().map_err(|_| bad(i + 1, "resolver"))?,
            lat: num(3, "lat")?,
            lon: num(4, "lon")?,
            users: num(5, "users")?,
            rtt: (6..f.len())
                .map(|j| num(j, "rtt"))
                .collect::<Result<_, _>>()?,
        });
    }
    Ok(out)
}

/// How one way of choosing did.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// The decision scored.
    pub decision: &'static str,
    /// Share of users sent within 5 ms of their fastest PoP.
    pub within_5ms: f64,
    /// Mean regret, ms.
    pub mean_regret: f64,
    /// 95th-percentile regret, ms.
    pub p95_regret: f64,
}

fn rate(decision: &'static str, truth: &[Truth], choose: &dyn Fn(&Truth) -> usize) -> Score {
    let mut regrets: Vec<(f64, f64)> = truth
        .iter()
        .map(|t| {
            let best = t.rtt.iter().copied().fold(f64::INFINITY, f64::min);
            (t.rtt[choose(t)] - best, t.users)
        })
        .collect();
    let total: f64 = regrets.iter().map(|r| r.1).sum();
    let within: f64 = regrets.iter().filter(|r| r.0 <= 5.0).map(|r| r.1).sum();
    let mean = regrets.iter().map(|r| r.0 * r.1).sum::<f64>() / total;
    regrets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut seen = 0.0;
    let p95 = regrets
        .iter()
        .find(|r| {
            seen += r.1;
            seen >= 0.95 * total
        })
        .map_or(0.0, |r| r.0);
    Score {
        decision,
        within_5ms: within / total,
        mean_regret: mean,
        p95_regret: p95,
    }
}

/// Scores the map against the nearest-PoP baseline (what GeoIP nearest-datacenter modes such
/// as gdnsd's or PowerDNS's pickclosest do, here with a perfect GeoIP database), in pairs that
/// see the same information: as served (the client's subnet where its resolver sends ECS,
/// else the resolver's address), as if every resolver sent ECS, and as if none did; and the
/// best any decision seeing only the resolver could do (with ECS, the oracle scores 100 %).
pub fn score(world: &World, truth: &[Truth], map: &Map) -> Vec<Score> {
    let pop_in_world: Vec<usize> = map
        .meta
        .pops
        .iter()
        .map(|p| {
            world
                .pops
                .iter()
                .position(|w| w.id == p.id.as_str())
                .unwrap_or(0)
        })
        .collect();
    let table = AnswerTable::build(map, None);
    let nearest = |lat: f64, lon: f64| -> usize {
        (0..world.pops.len())
            .min_by(|&a, &b| {
                let d = |i: usize| distance_km(lat, lon, world.pops[i].lat, world.pops[i].lon);
                d(a).total_cmp(&d(b))
            })
            .unwrap_or(0)
    };
    // Where the map has no row the server falls back to GeoIP, which here knows exactly where
    // every network and resolver is (as the baselines do).
    let by_map = |space: KeySpace, addr: Ipv4Addr, at: (f64, f64)| -> usize {
        let hit = table.lookup(space, IpAddr::V4(addr));
        hit.pops
            .and_then(|p| p.first())
            .map_or_else(|| nearest(at.0, at.1), |&p| pop_in_world[usize::from(p)])
    };
    let resolvers: HashMap<Ipv4Addr, (bool, f64, f64)> = world
        .resolvers
        .iter()
        .map(|r| (r.address, (r.ecs, r.lat, r.lon)))
        .collect();
    let resolver_loc = |t: &Truth| {
        resolvers
            .get(&t.resolver)
            .map_or((t.lat, t.lon), |r| (r.1, r.2))
    };
    let by_client = |t: &Truth| by_map(KeySpace::Client, t.subnet.network(), (t.lat, t.lon));
    let by_resolver = |t: &Truth| by_map(KeySpace::Resolver, t.resolver, resolver_loc(t));
    let ecs = |t: &Truth| resolvers.get(&t.resolver).is_some_and(|r| r.0);
    let oracle = resolver_oracle(truth);
    let resolver_at = |t: &Truth| {
        let (lat, lon) = resolver_loc(t);
        nearest(lat, lon)
    };
    vec![
        rate(
            "measured map, as served (ECS where the resolver sends it)",
            truth,
            &|t| {
                if ecs(t) {
                    by_client(t)
                } else {
                    by_resolver(t)
                }
            },
        ),
        rate(
            "nearest PoP, as served (the client where ECS, else the resolver)",
            truth,
            &|t| {
                if ecs(t) {
                    nearest(t.lat, t.lon)
                } else {
                    resolver_at(t)
                }
            },
        ),
        rate(
            "measured map, client key space (as if every resolver sent ECS)",
            truth,
            &by_client,
        ),
        rate(
            "nearest PoP to the client (GeoIP, as if every resolver sent ECS)",
            truth,
            &|t| nearest(t.lat, t.lon),
        ),
        rate(
            "measured map, resolver key space (as if no resolver sent ECS)",
            truth,
            &by_resolver,
        ),
        rate(
            "nearest PoP to the resolver (as if no resolver sent ECS)",
            truth,
            &resolver_at,
        ),
        rate(
            "best possible with one answer per resolver (oracle, no ECS)",
            truth,
            &|t| oracle.get(&t.resolver).copied().unwrap_or(0),
        ),
    ]
}

/// For each resolver, the PoP that sends most of its users (weighted) within 5 ms of their
/// best, fewer regret breaking ties: the bound on any decision that sees only the resolver.
fn resolver_oracle(truth: &[Truth]) -> HashMap<Ipv4Addr, usize> {
    let mut by: HashMap<Ipv4Addr, Vec<&Truth>> = HashMap::new();
    for t in truth {
        by.entry(t.resolver).or_default().push(t);
    }
    by.into_iter()
        .map(|(r, ts)| {
            let pops = ts.first().map_or(0, |t| t.rtt.len());
            let score = |p: usize| {
                ts.iter().fold((0.0, 0.0), |(ok, regret), t| {
                    let best = t.rtt.iter().copied().fold(f64::INFINITY, f64::min);
                    let lost = t.rtt[p] - best;
                    (
                        ok + if lost <= 5.0 { t.users } else { 0.0 },
                        regret + lost * t.users,
                    )
                })
            };
            let best = (0..pops)
                .map(|p| (p, score(p)))
                .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(b.1 .1.total_cmp(&a.1 .1)))
                .map_or(0, |(p, _)| p);
            (r, best)
        })
        .collect()
}

/// The scores as a Markdown table.
pub fn table(scores: &[Score]) -> String {
    let mut s = String::from("| decision | users within 5 ms of their best | mean regret | p95 regret |\n|---|---:|---:|---:|\n");
    for r in scores {
        s.push_str(&format!(
            "| {} | {:.1} % | {:.1} ms | {:.1} ms |\n",
            r.decision,
            r.within_5ms * 100.0,
            r.mean_regret,
            r.p95_regret
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(users: f64, rtt: [f64; 2]) -> Truth {
        Truth {
            subnet: "198.18.0.0/24".parse().unwrap(),
            resolver: Ipv4Addr::LOCALHOST,
            lat: 0.0,
            lon: 0.0,
            users,
            rtt: rtt.to_vec(),
        }
    }

    #[test]
    fn regret_is_weighted_by_users() {
        // 90 users lose nothing, 10 users lose 40 ms by always picking PoP 0.
        let truth = [t(90.0, [10.0, 50.0]), t(10.0, [50.0, 10.0])];
        let s = rate("pop 0", &truth, &|_| 0);
        assert_eq!(s.within_5ms, 0.9);
        assert_eq!(s.mean_regret, 4.0);
        assert_eq!(s.p95_regret, 40.0);
        let s = rate("oracle", &truth, &|t| {
            if t.rtt[0] < t.rtt[1] {
                0
            } else {
                1
            }
        });
        assert_eq!((s.within_5ms, s.mean_regret, s.p95_regret), (1.0, 0.0, 0.0));
        // Both subnets behind one resolver: the oracle picks the PoP best for most users.
        assert_eq!(resolver_oracle(&truth)[&Ipv4Addr::LOCALHOST], 0);
        let minority = [t(10.0, [10.0, 50.0]), t(90.0, [50.0, 10.0])];
        assert_eq!(resolver_oracle(&minority)[&Ipv4Addr::LOCALHOST], 1);
    }
}
