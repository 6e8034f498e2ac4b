//! The map's rows from the pooled estimates: measured keys, routed prefixes and coherent
//! aggregates between them, modeled rows for GeoIP networks nobody measured, each checked with
//! the map reader's own rule where it is made; and the order the server falls back to where
//! the map has no row.

use std::collections::BTreeMap;

use geomap::geoip::{rank_by_distance, GeoIp};
use geomap::{Derivation, KeySpace, MapRow, PopIndex, PopTable};
use ipnet::IpNet;

use crate::aggregate::{LevelStats, Stats};
use crate::key;
use crate::logs::{LEVELS, RESOLVER_LEVELS};
use crate::options::Options;
use crate::pooling::{self, Estimate, Placement};
use crate::ranking::{coherent, PopStat};
use crate::report::Report;
use crate::routes::Routes;

/// The order where nothing was measured, as the server falls back: nearest PoPs by GeoIP,
/// then the default order; the default order alone where GeoIP cannot place `net`.
pub(crate) fn fallback_order(opts: &Options, geoip: Option<&GeoIp>, net: IpNet) -> Vec<PopIndex> {
    match geoip.map(|g| g.locate(net.addr())) {
        Some(Ok(loc)) => {
            let mut order = rank_by_distance(&opts.pops, loc.lat, loc.lon);
            order.extend(
                opts.default_order
                    .iter()
                    .filter(|p| !order.contains(p))
                    .collect::<Vec<_>>(),
            );
            order
        }
        _ => opts.default_order.clone(),
    }
}

/// The prefix of `net`'s address at `v4`/`v6` bits.
fn at_len(net: IpNet, v4: u8, v6: u8) -> IpNet {
    let len = if matches!(net, IpNet::V4(_)) { v4 } else { v6 };
    IpNet::new(net.addr(), len.min(net.prefix_len())).map_or(net, |n| n.trunc())
}

/// The finest-level statistics of the subnets inside `net`.
fn children(finest: &LevelStats, net: IpNet) -> impl Iterator<Item = &[PopStat]> {
    let (v4, v6) = LEVELS[0];
    let len = if matches!(net, IpNet::V4(_)) { v4 } else { v6 };
    let first = IpNet::new(net.network(), len).map(|n| n.trunc());
    let last = IpNet::new(net.broadcast(), len).map(|n| n.trunc());
    let range = match (first, last) {
        (Ok(a), Ok(b)) => Some(finest.range(a..=b)),
        _ => None,
    };
    range.into_iter().flatten().map(|(_, s)| s.as_slice())
}

/// The map rows from pooled estimates (see [`pooling`]): a row for every measured client key
/// and resolver, routed prefixes and coherent fixed aggregates for the space between, and a
/// modeled row for each GeoIP network inside a measured group that nobody measured.
pub(crate) fn pooled_rows(
    opts: &Options,
    stats: &Stats,
    routes: &Routes,
    geoip: Option<&GeoIp>,
    report: &mut Report,
) -> Vec<MapRow> {
    let pops: Vec<Option<(f64, f64)>> = opts.pops.iter().map(|p| p.lat.zip(p.lon)).collect();
    let fallback = |net: IpNet| fallback_order(opts, geoip, net);
    let locate = |net: IpNet| -> Option<(f64, f64)> {
        let loc = geoip?.locate(net.addr()).ok()?;
        (loc.lat.is_finite() && loc.lon.is_finite()).then_some((loc.lat, loc.lon))
    };
    // Neighbours share the routed prefix (one network) where routes cover the key, else the
    // fixed coarse aggregate; fixed aggregate rows also use the middle level.
    let (coarse, middle) = (LEVELS[LEVELS.len() - 1], LEVELS[1]);
    let routed = |net: IpNet| -> Option<IpNet> {
        key::of_ip(net.addr())
            .and_then(|k| routes.covering(k))
            .map(|id| routes.net(id))
            .filter(|r| r.prefix_len() <= net.prefix_len())
    };
    let units = |net: IpNet| -> Vec<IpNet> {
        match routed(net) {
            Some(r) => vec![r],
            None => {
                let mut u = vec![at_len(net, coarse.0, coarse.1)];
                let mid = if matches!(net, IpNet::V4(_)) {
                    middle.0
                } else {
                    middle.1
                };
                if net.prefix_len() >= mid {
                    u.push(at_len(net, middle.0, middle.1));
                }
                u
            }
        }
    };
    let place = |net: IpNet| Placement {
        at: locate(net),
        within: units(net).first().copied(),
    };
    let clients = pooling::clients(&stats.client, &pops, &place);
    report.pooling = Some(crate::report::Pooling {
        noise_log_var: clients.sigma2,
        subnet_spread_log_var: clients.tau2.clone(),
        relocated_subnets: clients.relocated as u64,
    });
    let mut rows: Vec<MapRow> = Vec::new();
    let mut checked = RowCheck::default();
    let mut keep = |rows: &mut Vec<MapRow>, r: MapRow| checked.keep(rows, r, &opts.pops);
    let row = |space: KeySpace, prefix: IpNet, e: &Estimate, derivation: Derivation| {
        let (pops, rtt_ms) = e.ranking(&fallback(prefix));
        let own_share = pops
            .iter()
            .map(|&p| {
                let p = usize::from(p);
                e.rtt[p].map(|_| e.own[p] as f32)
            })
            .collect();
        MapRow {
            key_space: space,
            prefix,
            pops,
            rtt_ms,
            samples: e.samples,
            derivation,
            own_share,
        }
    };
    for (net, e) in &clients.keys {
        if e.samples >= opts.min_samples {
            keep(
                &mut rows,
                row(KeySpace::Client, *net, e, Derivation::Measured),
            );
        }
    }
    // Group rows: the sample-weighted mean of the measured keys inside, for space inside the
    // group that GeoIP cannot place. A fixed aggregate only where the subnets measured inside
    // agree with it (a fixed /16 can mix cities); a routed prefix is one network.
    let mut members: BTreeMap<IpNet, Vec<&Estimate>> = BTreeMap::new();
    let mut routed_units = std::collections::HashSet::new();
    for (net, e) in &clients.keys {
        routed_units.extend(routed(*net));
        for u in units(*net) {
            members.entry(u).or_default().push(e);
        }
    }
    for (unit, inside) in &members {
        let e = mean_estimate(inside, pops.len());
        let routed = routed_units.contains(unit);
        let r = row(
            KeySpace::Client,
            *unit,
            &e,
            if routed {
                Derivation::Routed
            } else {
                Derivation::Aggregated
            },
        );
        if routed || coherent(r.pops[0], children(&stats.client, *unit), opts.min_samples) {
            keep(&mut rows, r);
        } else {
            report.incoherent_aggregates += 1;
        }
    }
    // Modeled rows: every network GeoIP knows inside a measured group's coarse unit.
    if let Some(g) = geoip {
        let measured: std::collections::HashSet<IpNet> = clients.keys.keys().copied().collect();
        let coarse_units: std::collections::BTreeSet<IpNet> = clients
            .keys
            .keys()
            .filter_map(|k| units(*k).first().copied())
            .collect();
        for unit in coarse_units {
            for net in geoip_networks(g, unit) {
                if measured.contains(&net) {
                    continue;
                }
                let e = clients.predict(&pops, net, place(net));
                if e.rtt.iter().any(Option::is_some) {
                    keep(
                        &mut rows,
                        row(KeySpace::Client, net, &e, Derivation::Modeled),
                    );
                }
            }
        }
    }
    // Resolvers, from the clients behind them.
    let (addresses, groups) = pooling::resolvers(
        &stats.populations,
        &clients,
        pops.len(),
        stats.pairings_per_session,
        &|a| at_len(a, RESOLVER_LEVELS[1].0, RESOLVER_LEVELS[1].1),
    );
    for (net, e) in &groups {
        if e.samples >= opts.min_samples {
            keep(
                &mut rows,
                row(KeySpace::Resolver, *net, e, Derivation::Aggregated),
            );
        }
    }
    for (net, e) in &addresses {
        if e.samples >= opts.min_samples {
            keep(
                &mut rows,
                row(KeySpace::Resolver, *net, e, Derivation::Measured),
            );
        }
    }
    report.left_out_rows = checked.left_out;
    report.left_out_samples = checked.samples;
    rows
}

/// The rows mapgen left out because they break the map reader's rules.
#[derive(Default)]
struct RowCheck {
    left_out: u64,
    samples: Vec<String>,
}

impl RowCheck {
    /// Keeps `r` in `rows` if the reader would accept it ([`MapRow::problems`]): every row is
    /// checked where it is made, with the reader's own rule, so one that breaks it is left out
    /// and named, never written for the writer (or a server) to refuse, and never the reason
    /// a finished run writes nothing.
    fn keep(&mut self, rows: &mut Vec<MapRow>, r: MapRow, pops: &PopTable) {
        let problems = r.problems(pops);
        let Some((field, problem)) = problems.first() else {
            rows.push(r);
            return;
        };
        self.left_out += 1;
        if self.samples.len() < crate::report::MAX_LEFT_OUT_SAMPLES {
            self.samples.push(format!(
                "{} {} ({}): {field}: {problem}",
                r.key_space, r.prefix, r.derivation
            ));
        }
    }
}

/// The sample-weighted mean of several keys' estimates, and of how much of each came from
/// the keys' own samples (an aggregate's data is its measured keys').
fn mean_estimate(inside: &[&Estimate], npops: usize) -> Estimate {
    let mut e = Estimate {
        rtt: vec![None; npops],
        own: vec![0.0; npops],
        failing: vec![false; npops],
        samples: inside.iter().map(|e| e.samples).sum(),
    };
    for p in 0..npops {
        let (mut s, mut own, mut w) = (0.0, 0.0, 0.0);
        for k in inside {
            if let Some(r) = k.rtt[p] {
                let weight = k.samples.max(1) as f64;
                s += weight * r;
                own += weight * k.own[p];
                w += weight;
            }
        }
        if w > 0.0 {
            e.rtt[p] = Some(s / w);
            e.own[p] = own / w;
        }
    }
    e
}

/// The networks a GeoIP database has inside `unit`, clipped to it, each at most as specific as
/// a client key (/24, /48).
fn geoip_networks(g: &GeoIp, unit: IpNet) -> Vec<IpNet> {
    let (v4, v6) = LEVELS[0];
    let finest = if matches!(unit, IpNet::V4(_)) { v4 } else { v6 };
    let mut out = Vec::new();
    let mut next = Some(unit.network());
    while let Some(addr) = next.filter(|a| unit.contains(a)) {
        let (len, located) = match g.locate(addr) {
            Ok(loc) => (loc.prefix_len, true),
            Err(len) => (len, false),
        };
        let len = len.clamp(unit.prefix_len(), finest);
        let Ok(net) = IpNet::new(addr, len).map(|n| n.trunc()) else {
            break;
        };
        if located {
            out.push(net);
        }
        next = next_address(net.broadcast());
    }
    out
}

fn next_address(a: std::net::IpAddr) -> Option<std::net::IpAddr> {
    match a {
        std::net::IpAddr::V4(a) => u32::from(a)
            .checked_add(1)
            .map(|n| std::net::Ipv4Addr::from(n).into()),
        std::net::IpAddr::V6(a) => u128::from(a)
            .checked_add(1)
            .map(|n| std::net::Ipv6Addr::from(n).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_the_reader_would_refuse_is_left_out_and_named() {
        let pops = PopTable::from_ids(&["ams", "iad"]).unwrap();
        let row = |prefix: &str, rtt: f32| MapRow {
            key_space: KeySpace::Client,
            prefix: prefix.parse().unwrap(),
            pops: vec![0, 1],
            rtt_ms: vec![Some(rtt), Some(80.0)],
            samples: 3,
            derivation: Derivation::Measured,
            own_share: vec![Some(1.0), Some(0.5)],
        };
        let mut check = RowCheck::default();
        let mut rows = Vec::new();
        check.keep(&mut rows, row("10.0.0.0/24", 12.0), &pops);
        for i in 1..=30 {
            check.keep(&mut rows, row(&format!("10.0.{i}.0/24"), -4.8), &pops);
        }
        check.keep(&mut rows, row("10.1.0.0/24", 0.0), &pops);
        assert_eq!(rows.len(), 1);
        assert_eq!(check.left_out, 31);
        assert_eq!(check.samples.len(), crate::report::MAX_LEFT_OUT_SAMPLES);
        assert_eq!(
            check.samples[0],
            "client 10.0.1.0/24 (measured): rtt_ms: -4.8 is not a latency"
        );
    }
}
