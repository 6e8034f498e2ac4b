//! The simulated world: PoPs, recursive resolvers, client networks, and the latency model that
//! gives each (client subnet, PoP) its true round-trip time.
//!
//! The model is deliberately one where geography can mislead: RTT grows with great-circle
//! distance times a path inflation (optionally not linearly, and with a step across the
//! Atlantic or Pacific), plus a PoP's own base latency, per-network peering penalties to chosen
//! PoPs (a network whose traffic to a nearby PoP detours), plus a fixed per-subnet offset.
//! Clients use the resolver their network is configured with, which may be far away and may or
//! may not send ECS. GeoIP may place a network elsewhere than its users are (`geoip_lat`).
//! Every knob that varies one of mapgen's assumptions has a default that keeps older worlds
//! as they were; `scripts/gen-world.py --zoo` varies them all.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::IpNet;
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
    /// How the logs are written (`--logs-only`): probe-id style, duplicates, clock skew.
    #[serde(default)]
    pub logs: LogStyle,
}

/// How `--logs-only` writes the logs: the ways real beacons and collectors differ within the
/// log contract.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogStyle {
    /// A fresh probe id for each PoP of a session (the contract allows both); default one id
    /// for the whole session.
    #[serde(default)]
    pub id_per_pop: bool,
    /// Share of rows (of both tables) written twice, as a replayed log would.
    #[serde(default)]
    pub duplicate_share: f64,
    /// The collectors' clocks are off from the DNS servers' by up to this much (uniform, either
    /// way, per session), ms.
    #[serde(default)]
    pub skew_ms: f64,
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
    /// Distance enters as `(km / 1000)^exponent * 1000`: 1 is linear; below 1 long paths are
    /// relatively cheaper (backbones), above 1 dearer. Default 1.
    #[serde(default = "unit")]
    pub exponent: f64,
    /// Extra RTT when users and PoP are on different sides of an ocean (the Americas against
    /// the rest, by longitude -30), ms: a step no line in distance fits. Default 0.
    #[serde(default)]
    pub ocean_ms: f64,
    /// Multiplicative noise: each sample is multiplied by `exp(N(0, this))` (heavy-tailed,
    /// log-normal). Default 0 (none).
    #[serde(default)]
    pub lognormal_sigma: f64,
    /// Share of samples that are outliers, multiplied by `outlier_factor`. Default 0.02.
    #[serde(default = "default_outlier_share")]
    pub outlier_share: f64,
    /// How much an outlier is multiplied. Default 3.
    #[serde(default = "default_outlier_factor")]
    pub outlier_factor: f64,
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
    /// The PoP's own extra latency (a slow site, a congested transit), ms. Default 0.
    #[serde(default)]
    pub base_ms: f64,
    /// Chance that a session which would measure this PoP does: below 1, a PoP few sessions
    /// measure. Default 1.
    #[serde(default = "unit")]
    pub measured_share: f64,
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
    /// World addresses of its clients; each /24 (IPv6: /48) inside is one client subnet.
    pub prefix: IpNet,
    /// How many of its /24s (/48s) have users (the first N). Default: all, at most 64.
    #[serde(default)]
    pub subnets: Option<u32>,
    /// Where its users are.
    pub lat: f64,
    /// Where its users are.
    pub lon: f64,
    /// Where GeoIP places it, when that is wrong. Default: where its users are.
    #[serde(default)]
    pub geoip_lat: Option<f64>,
    /// Where GeoIP places it (with `geoip_lat`).
    #[serde(default)]
    pub geoip_lon: Option<f64>,
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

fn unit() -> f64 {
    1.0
}

fn default_outlier_share() -> f64 {
    0.02
}

fn default_outlier_factor() -> f64 {
    3.0
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
            if n.prefix.prefix_len() > subnet_len(&n.prefix) || n.weight.is_nan() || n.weight <= 0.0
            {
                return Err(err(format!(
                    "networks[{i}]: prefix must be /24 (IPv6 /48) or wider and weight positive"
                )));
            }
            if n.geoip_lat.is_some() != n.geoip_lon.is_some() {
                return Err(err(format!(
                    "networks[{i}]: geoip_lat and geoip_lon go together"
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
            && l.jitter_ms >= 0.0
            && l.base_ms > 0.0
            && (0.1..=3.0).contains(&l.exponent)
            && l.ocean_ms >= 0.0
            && l.lognormal_sigma >= 0.0
            && (0.0..1.0).contains(&l.outlier_share)
            && l.outlier_factor >= 1.0)
        {
            return Err(err(
                "latency: want base_ms > 0, km_per_ms > 0, inflation >= 1, 0 <= loss < 1, jitter_ms >= 0, 0.1 <= exponent <= 3, ocean_ms >= 0, lognormal_sigma >= 0, 0 <= outlier_share < 1, outlier_factor >= 1".into(),
            ));
        }
        for (i, p) in w.pops.iter().enumerate() {
            if !(p.base_ms >= 0.0 && p.measured_share > 0.0 && p.measured_share <= 1.0) {
                return Err(err(format!(
                    "pops[{i}]: want base_ms >= 0 and 0 < measured_share <= 1"
                )));
            }
        }
        let s = &w.logs;
        if !((0.0..1.0).contains(&s.duplicate_share) && s.skew_ms >= 0.0 && s.skew_ms < 300_000.0) {
            return Err(err(
                "logs: want 0 <= duplicate_share < 1 and 0 <= skew_ms < 300000".into(),
            ));
        }
        Ok(w)
    }

    /// The client subnets (/24s, IPv6 /48s) of a network.
    pub fn subnets(&self, n: &Network) -> Vec<IpNet> {
        let all = n
            .prefix
            .subnets(subnet_len(&n.prefix))
            .expect("validated /24 (/48) or wider");
        all.take(n.subnets.unwrap_or(64) as usize).collect()
    }

    /// The true (noise-free, typical) RTT from a client subnet to a PoP, ms: always positive
    /// (`base_ms` is).
    pub fn true_rtt(&self, n: &Network, subnet: IpNet, pop: &WorldPop) -> f64 {
        let l = &self.latency;
        let km = geomap::geoip::distance_km(n.lat, n.lon, pop.lat, pop.lon);
        let path = (km / 1000.0).powf(l.exponent) * 1000.0;
        let ocean = if (n.lon < -30.0) != (pop.lon < -30.0) {
            l.ocean_ms
        } else {
            0.0
        };
        l.base_ms
            + pop.base_ms
            + path * l.inflation / l.km_per_ms
            + ocean
            + n.penalty_ms.get(&pop.id).copied().unwrap_or(0.0)
            + subnet_offset(subnet, &pop.id, l.subnet_spread_ms)
    }

    /// Where GeoIP places a network.
    pub fn geoip_location(n: &Network) -> (f64, f64) {
        (n.geoip_lat.unwrap_or(n.lat), n.geoip_lon.unwrap_or(n.lon))
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

    /// Whether a session that would measure PoP `i` does (its `measured_share`), from a
    /// uniform draw in [0, 1).
    pub fn measures(&self, i: usize, draw: f64) -> bool {
        draw < self.pops[i].measured_share
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

/// The prefix length of one client subnet: /24, or /48 for IPv6.
pub fn subnet_len(net: &IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 24,
        IpNet::V6(_) => 48,
    }
}

/// A fixed offset in [0, spread) per (subnet, PoP), from a hash: the same every run.
fn subnet_offset(subnet: IpNet, pop: &str, spread: f64) -> f64 {
    let mut h: u64 = 0xcbf29ce484222325;
    let octets: Vec<u8> = match subnet.network() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    for b in octets.iter().chain(pop.as_bytes()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % 10_000) as f64 / 10_000.0 * spread
}

/// The client subnet of an address (/24, IPv6 /48), for output.
pub fn subnet_of(ip: IpAddr) -> IpNet {
    let len = match ip {
        IpAddr::V4(_) => 24,
        IpAddr::V6(_) => 48,
    };
    IpNet::new(ip, len).expect("24 and 48 are valid").trunc()
}
