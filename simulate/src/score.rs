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
use ipnet::IpNet;

use crate::world::World;
use crate::SimulateError;

/// One client subnet of the ground truth.
#[derive(Debug, Clone)]
pub struct Truth {
    /// The client /24 (/48).
    pub subnet: IpNet,
    /// The network it belongs to.
    pub network: String,
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
            network: f[1].to_owned(),
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

/// One share of a client subnet's users: those whose queries leave from one of its resolver's
/// egress addresses (a resolver with many egress addresses spreads them evenly).
struct Share<'a> {
    truth: &'a Truth,
    /// The address the server sees when the resolver sends no ECS.
    egress: Ipv4Addr,
    users: f64,
    ecs: bool,
    measured: bool,
}

impl Share<'_> {
    fn best(&self) -> f64 {
        self.truth.rtt.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

/// As served: the client's decision where its resolver sends ECS, else the resolver's.
fn served<'a>(
    client: &'a dyn Fn(&Share) -> usize,
    resolver: &'a dyn Fn(&Share) -> usize,
) -> impl Fn(&Share) -> usize + 'a {
    move |s: &Share| if s.ecs { client(s) } else { resolver(s) }
}

fn rate(decision: &'static str, shares: &[&Share], choose: &dyn Fn(&Share) -> usize) -> Score {
    let mut regrets: Vec<(f64, f64)> = shares
        .iter()
        .map(|s| (s.truth.rtt[choose(s)] - s.best(), s.users))
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
/// as gdnsd's or PowerDNS's pickclosest do, here with the world's GeoIP database, perfect
/// unless the world says otherwise), in pairs that see the same information: as served (the client's subnet where its resolver sends ECS,
/// else the resolver's address), as if every resolver sent ECS, and as if none did; the
/// never-measured networks alone; and the bounds no map that sees only the resolver can
/// beat: one PoP per resolver address, and one per resolver /24, each the best for the users
/// behind it (knowing the truth).
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
    // Where the map has no row the server falls back to GeoIP: the world's database, which
    // knows where every network and resolver is unless the world says it is wrong.
    let by_map = |space: KeySpace, addr: IpAddr, at: (f64, f64)| -> usize {
        let hit = table.lookup(space, addr);
        hit.pops
            .and_then(|p| p.first())
            .map_or_else(|| nearest(at.0, at.1), |&p| pop_in_world[usize::from(p)])
    };
    let resolvers: HashMap<Ipv4Addr, &crate::world::Resolver> =
        world.resolvers.iter().map(|r| (r.address, r)).collect();
    let beacon: HashMap<&str, bool> = world
        .networks
        .iter()
        .map(|n| (n.name.as_str(), n.beacon))
        .collect();
    let geoip: HashMap<&str, (f64, f64)> = world
        .networks
        .iter()
        .map(|n| (n.name.as_str(), World::geoip_location(n)))
        .collect();
    let located = |t: &Truth| {
        geoip
            .get(t.network.as_str())
            .copied()
            .unwrap_or((t.lat, t.lon))
    };
    let mut shares = Vec::new();
    for t in truth {
        let r = resolvers.get(&t.resolver);
        let egress: Vec<Ipv4Addr> = match r {
            Some(r) => World::egress(r).collect(),
            None => vec![t.resolver],
        };
        for &e in &egress {
            shares.push(Share {
                truth: t,
                egress: e,
                users: t.users / egress.len() as f64,
                ecs: r.is_some_and(|r| r.ecs),
                measured: beacon.get(t.network.as_str()).copied().unwrap_or(true),
            });
        }
    }
    let all: Vec<&Share> = shares.iter().collect();
    let never: Vec<&Share> = shares.iter().filter(|s| !s.measured).collect();
    let beacon_users: Vec<&Share> = shares.iter().filter(|s| s.measured).collect();
    let resolver_loc = |s: &Share| {
        resolvers
            .get(&s.truth.resolver)
            .map_or((s.truth.lat, s.truth.lon), |r| (r.lat, r.lon))
    };
    let by_client =
        |s: &Share| by_map(KeySpace::Client, s.truth.subnet.network(), located(s.truth));
    let by_resolver = |s: &Share| by_map(KeySpace::Resolver, IpAddr::V4(s.egress), resolver_loc(s));
    let resolver_at = |s: &Share| {
        let (lat, lon) = resolver_loc(s);
        nearest(lat, lon)
    };
    // GeoIP's nearest PoP: where the database places the network.
    let client_at = |s: &Share| {
        let (lat, lon) = located(s.truth);
        nearest(lat, lon)
    };
    let own_best = |s: &Share| {
        (0..s.truth.rtt.len())
            .min_by(|&a, &b| s.truth.rtt[a].total_cmp(&s.truth.rtt[b]))
            .unwrap_or(0)
    };
    let per_address = oracle(&all, &|s| u32::from(s.egress));
    let per_24 = oracle(&all, &|s| u32::from(s.egress) >> 8);
    let mut scores = vec![
        rate(
            "measured map, as served (ECS where the resolver sends it)",
            &all,
            &served(&by_client, &by_resolver),
        ),
        rate(
            "nearest PoP, as served (the client where ECS, else the resolver)",
            &all,
            &served(&client_at, &resolver_at),
        ),
        rate(
            "bound, as served: best PoP per resolver address (knows the truth)",
            &all,
            &served(&own_best, &|s| per_address[&u32::from(s.egress)]),
        ),
        rate(
            "bound, as served: best PoP per resolver /24 (knows the truth)",
            &all,
            &served(&own_best, &|s| per_24[&(u32::from(s.egress) >> 8)]),
        ),
        rate(
            "measured map, client key space (as if every resolver sent ECS)",
            &all,
            &by_client,
        ),
        rate(
            "nearest PoP to the client (GeoIP, as if every resolver sent ECS)",
            &all,
            &client_at,
        ),
        rate(
            "measured map, resolver key space (as if no resolver sent ECS)",
            &all,
            &by_resolver,
        ),
        rate(
            "nearest PoP to the resolver (as if no resolver sent ECS)",
            &all,
            &resolver_at,
        ),
        rate(
            "bound, resolver key space: best PoP per resolver address (no ECS)",
            &all,
            &|s| per_address[&u32::from(s.egress)],
        ),
    ];
    // What a holdout can see: the users of networks that run the beacon.
    scores.push(rate(
        "measured networks: measured map, client key space",
        &beacon_users,
        &by_client,
    ));
    if !never.is_empty() {
        scores.extend([
            rate(
                "never-measured networks: measured map, client key space",
                &never,
                &by_client,
            ),
            rate(
                "never-measured networks: nearest PoP to the client (GeoIP)",
                &never,
                &client_at,
            ),
        ]);
    }
    scores
}

/// For each group of shares (by `key`), the PoP with the least regret summed over its users:
/// the best one answer can do for them.
fn oracle(shares: &[&Share], key: &dyn Fn(&Share) -> u32) -> HashMap<u32, usize> {
    let mut regret: HashMap<u32, Vec<f64>> = HashMap::new();
    for s in shares {
        let best = s.best();
        let r = regret
            .entry(key(s))
            .or_insert_with(|| vec![0.0; s.truth.rtt.len()]);
        for (p, rtt) in s.truth.rtt.iter().enumerate() {
            r[p] += (rtt - best) * s.users;
        }
    }
    regret
        .into_iter()
        .map(|(k, r)| {
            let best = (0..r.len())
                .min_by(|&a, &b| r[a].total_cmp(&r[b]))
                .unwrap_or(0);
            (k, best)
        })
        .collect()
}

/// The scores as a Markdown table.
pub fn table(scores: &[Score]) -> String {
    let mut s = String::from("| decision | users within 5 ms of their best | mean regret | p95 regret |\n|---|---:|---:|---:|\n");
    for r in scores {
        s.push_str(&format!(
            "| {} | {:.1} % | {:.2} ms | {:.1} ms |\n",
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
            network: "n".into(),
            resolver: Ipv4Addr::LOCALHOST,
            lat: 0.0,
            lon: 0.0,
            users,
            rtt: rtt.to_vec(),
        }
    }

    fn share(t: &Truth, egress: Ipv4Addr) -> Share<'_> {
        Share {
            truth: t,
            egress,
            users: t.users,
            ecs: false,
            measured: true,
        }
    }

    #[test]
    fn regret_is_weighted_by_users() {
        // 90 users lose nothing, 10 users lose 40 ms by always picking PoP 0.
        let truth = [t(90.0, [10.0, 50.0]), t(10.0, [50.0, 10.0])];
        let shares: Vec<Share> = truth.iter().map(|t| share(t, t.resolver)).collect();
        let all: Vec<&Share> = shares.iter().collect();
        let s = rate("pop 0", &all, &|_| 0);
        assert_eq!(s.within_5ms, 0.9);
        assert_eq!(s.mean_regret, 4.0);
        assert_eq!(s.p95_regret, 40.0);
        let s = rate("oracle", &all, &|s| {
            usize::from(s.truth.rtt[0] > s.truth.rtt[1])
        });
        assert_eq!((s.within_5ms, s.mean_regret, s.p95_regret), (1.0, 0.0, 0.0));
        // Both subnets behind one resolver: the bound picks the PoP best for most users.
        let key = |s: &Share| u32::from(s.egress);
        assert_eq!(oracle(&all, &key)[&key(all[0])], 0);
        let minority = [t(10.0, [10.0, 50.0]), t(90.0, [50.0, 10.0])];
        let shares: Vec<Share> = minority.iter().map(|t| share(t, t.resolver)).collect();
        let all: Vec<&Share> = shares.iter().collect();
        assert_eq!(oracle(&all, &key)[&key(all[0])], 1);
        // Two addresses of one /24 with different populations: per address both are served
        // best, per /24 one answer must do for both.
        let split = [t(50.0, [10.0, 50.0]), t(40.0, [50.0, 10.0])];
        let a = Ipv4Addr::new(127, 0, 0, 3);
        let b = Ipv4Addr::new(127, 0, 0, 4);
        let shares = [share(&split[0], a), share(&split[1], b)];
        let all: Vec<&Share> = shares.iter().collect();
        let per_address = oracle(&all, &key);
        assert_eq!(
            (per_address[&key(all[0])], per_address[&key(all[1])]),
            (0, 1)
        );
        let per_24 = oracle(&all, &|s| key(s) >> 8);
        assert_eq!(per_24[&(key(all[0]) >> 8)], 0);
    }
}
