//! The simulated world: PoPs, recursive resolvers, client networks, and the latency model that
//! gives each (client subnet, PoP) its true round-trip time.
//!
//! The model is deliberately one where geography can mislead: RTT grows with great-circle
//! distance times a path inflation, plus per-network peering penalties to chosen PoPs (a
//! network whose traffic to a nearby PoP detours), plus a fixed per-subnet offset. Clients use
//! the resolver their network is configured with, which may be far away and may or may not
//! send ECS.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;

/// Why a world file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct WorldError {
    /// The file.
    pub file: String,
    /// What is wrong (key and value).
    pub problem: String,
}

/// A world file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    /// Zone whose probe subzone the resolvers query: `<id>.<pop>.<probe_label>.<zone>`.
    pub zone: String,
    /// Label of the probe subzone. Default `probe`.
    #[serde(default = "default_probe_label")]
    pub probe_label: String,
    /// The latency model.
    pub latency: Latency,
    /// PoPs and where they are.
    pub pops: Vec<WorldPop>,
    /// Recursive resolvers.
    pub resolvers: Vec<Resolver>,
    /// Client networks.
    pub networks: Vec<Network>,
    /// Which PoPs one beacon session measures. Default: every PoP.
    #[serde(default)]
    pub sessions: Option<Sessions>,
}

/// Which PoPs one beacon session measures: real beacons fetch a few PoPs per page view, not
/// all of them, so most (client, PoP) pairs are measured rarely or never.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sessions {
    /// The PoPs nearest the client's network.
    pub nearest: usize,
    /// Then this many of the others, at random.
    pub random: usize,
}

/// Latency model parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Fixed part of every RTT (serialization, server time), ms.
    pub base_ms: f64,
    /// Great-circle kilometres per ms of RTT (light in fibre, there and back: about 100).
    pub km_per_ms: f64,
    /// Real paths are longer than great circles by this factor.
    pub inflation: f64,
    /// Spread of per-sample noise around the true RTT, ms (a half-normal added on top).
    pub jitter_ms: f64,
    /// Largest fixed per-subnet offset, ms (uniform in [0, this)).
    #[serde(default)]
    pub subnet_spread_ms: f64,
    /// Share of fetches that fail.
    pub loss: f64,
}

/// A PoP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldPop {
    /// PoP id.
    pub id: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
}

/// A recursive resolver that clients use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolver {
    /// Name, referred to by networks.
    pub name: String,
    /// The loopback address it sends queries from (127.0.0.0/8, never 127.0.0.1/2).
    pub address: Ipv4Addr,
    /// Whether it sends EDNS Client Subnet (the client's /24).
    pub ecs: bool,
    /// Addresses it sends queries from: `address` and the next `egress - 1` (a public
    /// resolver's site spreads its queries over many addresses in one /24). Default 1.
    #[serde(default = "one")]
    pub egress: u32,
    /// Where it is (for the "nearest to the resolver" baseline).
    pub lat: f64,
    /// Where it is.
    pub lon: f64,
}

/// A client network: a population of users in one place, behind one resolver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Name, for reports.
    pub name: String,
    /// World addresses of its clients; each /24 inside is one client subnet.
    pub prefix: Ipv4Net,
    /// How many of its /24s have users (the first N). Default: all, at most 64.
    #[serde(default)]
    pub subnets: Option<u32>,
    /// Where its users are.
    pub lat: f64,
    /// Where its users are.
    pub lon: f64,
    /// Relative share of users.
    pub weight: f64,
    /// The resolver its users use.
    pub resolver: String,
    /// Extra RTT to some PoPs (poor peering), ms by PoP id.
    #[serde(default)]
    pub penalty_ms: BTreeMap<String, f64>,
    /// Whether its users run the beacon. A network that does not is never measured, but its
    /// users still count in the ground truth: the map must place them by what it knows of
    /// their neighbours. Default true.
    #[serde(default = "yes")]
    pub beacon: bool,
}

fn default_probe_label() -> String {
    "probe".into()
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

impl World {
    /// Reads and validates a world file.
    pub fn read(path: &Path) -> Result<World, WorldError> {
        let file = path.display().to_string();
        let err = |problem: String| WorldError {
            file: file.clone(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let w: World =
            toml::from_str(&text).map_err(|e| err(e.to_string().trim_end().to_owned()))?;
        if w.pops.is_empty() || w.networks.is_empty() || w.resolvers.is_empty() {
            return Err(err("needs at least one pop, resolver and network".into()));
        }
        for (i, r) in w.resolvers.iter().enumerate() {
            let o = r.address.octets();
            if o[0] != 127
                || r.address == Ipv4Addr::new(127, 0, 0, 1)
                || r.address == Ipv4Addr::new(127, 0, 0, 2)
            {
                return Err(err(format!(
                    "resolvers[{i}].address: {} must be in 127.0.0.0/8, not 127.0.0.1 or .2",
                    r.address
                )));
            }
            if r.egress == 0 || u32::from(o[3]) + r.egress > 256 {
                return Err(err(format!(
                    "resolvers[{i}].egress: {} addresses from {} leave its /24",
                    r.egress, r.address
                )));
            }
        }
        for (i, n) in w.networks.iter().enumerate() {
            if !w.resolvers.iter().any(|r| r.name == n.resolver) {
                return Err(err(format!(
                    "networks[{i}].resolver: no resolver named {:?}",
                    n.resolver
                )));
            }
            if n.prefix.prefix_len() > 24 || n.weight <= 0.0 {
                return Err(err(format!(
                    "networks[{i}]: prefix must be /24 or wider and weight positive"
                )));
            }
            for p in n.penalty_ms.keys() {
                if !w.pops.iter().any(|q| &q.id == p) {
                    return Err(err(format!("networks[{i}].penalty_ms: unknown PoP {p:?}")));
                }
            }
        }
        if let Some(s) = w.sessions {
            if s.nearest + s.random == 0 {
                return Err(err("sessions: a session measures at least one PoP".into()));
            }
        }
        if !w.networks.iter().any(|n| n.beacon) {
            return Err(err("networks: at least one must run the beacon".into()));
        }
        let l = &w.latency;
        if !(l.km_per_ms > 0.0
            && l.inflation >= 1.0
            && (0.0..1.0).contains(&l.loss)
            && l.jitter_ms >= 0.0)
        {
            return Err(err(
                "latency: want km_per_ms > 0, inflation >= 1, 0 <= loss < 1, jitter_ms >= 0".into(),
            ));
        }
        Ok(w)
    }

    /// The client subnets (/24s) of a network.
    pub fn subnets(&self, n: &Network) -> Vec<Ipv4Net> {
        let all = n.prefix.subnets(24).expect("validated /24 or wider");
        all.take(n.subnets.unwrap_or(64) as usize).collect()
    }

    /// The true (noise-free, typical) RTT from a client subnet to a PoP, ms.
    pub fn true_rtt(&self, n: &Network, subnet: Ipv4Net, pop: &WorldPop) -> f64 {
        let l = &self.latency;
        let km = geomap::geoip::distance_km(n.lat, n.lon, pop.lat, pop.lon);
        l.base_ms
            + km * l.inflation / l.km_per_ms
            + n.penalty_ms.get(&pop.id).copied().unwrap_or(0.0)
            + subnet_offset(subnet, &pop.id, l.subnet_spread_ms)
    }

    /// The PoPs one session from network `n` measures, as indices into `pops`: the
    /// `sessions.nearest` nearest, then `sessions.random` of the rest drawn by `pick(k)` (a
    /// uniform index below `k`); every PoP without `[sessions]`.
    pub fn session_pops(&self, n: &Network, pick: &mut dyn FnMut(usize) -> usize) -> Vec<usize> {
        let Some(s) = self.sessions else {
            return (0..self.pops.len()).collect();
        };
        let mut order: Vec<usize> = (0..self.pops.len()).collect();
        let km =
            |i: usize| geomap::geoip::distance_km(n.lat, n.lon, self.pops[i].lat, self.pops[i].lon);
        order.sort_by(|&a, &b| km(a).total_cmp(&km(b)));
        let near = s.nearest.min(order.len());
        let mut rest = order.split_off(near);
        for _ in 0..s.random.min(rest.len()) {
            order.push(rest.swap_remove(pick(rest.len())));
        }
        order
    }

    /// The addresses a resolver sends queries from.
    pub fn egress(r: &Resolver) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(r.address);
        (first..first + r.egress).map(Ipv4Addr::from)
    }

    /// The resolver a network uses.
    pub fn resolver_of(&self, n: &Network) -> &Resolver {
        self.resolvers
            .iter()
            .find(|r| r.name == n.resolver)
            .expect("validated")
    }
}

/// A fixed offset in [0, spread) per (subnet, PoP), from a hash: the same every run.
fn subnet_offset(subnet: Ipv4Net, pop: &str, spread: f64) -> f64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in subnet.network().octets().iter().chain(pop.as_bytes()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % 10_000) as f64 / 10_000.0 * spread
}

/// The client subnet of an address as an `IpNet` (for output).
pub fn subnet_of(ip: Ipv4Addr) -> IpNet {
    IpNet::V4(Ipv4Net::new(ip, 24).expect("24 is valid").trunc())
}

/// An address as `IpAddr`.
pub fn v4(ip: Ipv4Addr) -> IpAddr {
    IpAddr::V4(ip)
}
