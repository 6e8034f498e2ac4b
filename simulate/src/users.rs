//! The simulated users, every random choice drawn from one seeded generator before any I/O,
//! so the same seed gives the same users, ids and RTTs whatever the timing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::options::SimulateOptions;
use crate::world::World;

pub(crate) struct User {
    pub(crate) client: IpAddr,
    pub(crate) subnet: IpNet,
    pub(crate) resolver: Ipv4Addr,
    pub(crate) ecs: bool,
    pub(crate) probe_id: String,
    /// The PoPs the session measured (indices in the world's order) and the RTT of each, NaN
    /// for a failed fetch: compact, as large runs plan millions of users.
    pub(crate) results: Vec<(u16, f32)>,
}

pub(crate) fn plan(world: &World, opts: &SimulateOptions) -> Vec<User> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    // Cumulative weights: a user's network is drawn by binary search, so worlds with
    // thousands of networks plan millions of users quickly.
    // Only networks that run the beacon have sessions. Cumulative weights: a user's network is
    // drawn by binary search, so worlds with thousands of networks plan millions of users
    // quickly.
    let beacon: Vec<usize> = (0..world.networks.len())
        .filter(|&i| world.networks[i].beacon)
        .collect();
    let cumulative: Vec<f64> = beacon
        .iter()
        .scan(0.0, |acc, &i| {
            *acc += world.networks[i].weight;
            Some(*acc)
        })
        .collect();
    let total = cumulative.last().copied().unwrap_or(0.0);
    let subnets: Vec<Vec<IpNet>> = world.networks.iter().map(|n| world.subnets(n)).collect();
    let l = &world.latency;
    (0..opts.users)
        .map(|_| {
            let pick = rng.random::<f64>() * total;
            let ni = beacon[cumulative
                .partition_point(|&c| c <= pick)
                .min(beacon.len() - 1)];
            let n = &world.networks[ni];
            let subnet = subnets[ni][rng.random_range(0..subnets[ni].len())];
            let client = match subnet.network() {
                IpAddr::V4(a) => {
                    IpAddr::V4(Ipv4Addr::from(u32::from(a) | rng.random_range(1..255u32)))
                }
                IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(
                    u128::from(a) | u128::from(rng.random::<u64>() | 1),
                )),
            };
            let r = world.resolver_of(n);
            let resolver = Ipv4Addr::from(u32::from(r.address) + rng.random_range(0..r.egress));
            let probe_id: String = (0..16)
                .map(|_| char::from_digit(rng.random_range(0..16u32), 16).expect("hex digit"))
                .collect();
            let mut measured = world.session_pops(n, &mut |k| rng.random_range(0..k));
            // Draw only for PoPs that few sessions measure, so older worlds keep their users.
            measured.retain(|&i| {
                world.pops[i].measured_share >= 1.0 || world.measures(i, rng.random::<f64>())
            });
            let results = measured
                .into_iter()
                .map(|i| {
                    let truth = world.true_rtt(n, subnet, &world.pops[i]);
                    let lost = rng.random::<f64>() < l.loss;
                    // Noise: a half-normal on top (queues only add delay), a log-normal factor
                    // where the world asks for one, and now and then a large outlier, as real
                    // measurements have.
                    let g: f64 = (0..6).map(|_| rng.random::<f64>()).sum::<f64>() - 3.0;
                    let mut rtt = truth + (g * l.jitter_ms).abs();
                    if l.lognormal_sigma > 0.0 {
                        let z: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
                        rtt *= (z * l.lognormal_sigma).exp();
                    }
                    if rng.random::<f64>() < l.outlier_share {
                        rtt *= l.outlier_factor;
                    }
                    let rtt = if lost {
                        f32::NAN
                    } else {
                        ((rtt * 1000.0).round() / 1000.0) as f32
                    };
                    (i as u16, rtt)
                })
                .collect();
            User {
                client,
                subnet,
                resolver,
                ecs: r.ecs,
                probe_id,
                results,
            }
        })
        .collect()
}
