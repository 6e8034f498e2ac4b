//! The ground truth written beside the logs, so a map can be scored against it.

use std::fmt::Write as _;
use std::path::Path;

use ipnet::{IpNet, Ipv4Net};

use crate::options::SimulateError;
use crate::users::User;
use crate::world::World;

/// Writes `ground_truth.csv` (subnet, network, resolver, lat, lon, users, then the true RTT to
/// each PoP), `resolvers.csv` (address, name, ecs, lat, lon), `routes.txt` (the networks'
/// prefixes, as a routing table would list them) and `geoip.mmdb` (where every network and
/// resolver is).
pub(crate) fn write_truth(world: &World, users: &[User], out: &Path) -> Result<(), SimulateError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SimulateError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    // Each subnet's expected users: its share of its network's weight, at the rate of the
    // networks that run the beacon, so never-measured networks count as much as measured ones
    // of their size, and a sparse run's truth is not its sampling noise.
    let beacon_weight: f64 = world
        .networks
        .iter()
        .filter(|n| n.beacon)
        .map(|n| n.weight)
        .sum();
    let per_weight = users.len() as f64 / beacon_weight;
    let mut t = String::from("subnet,network,resolver,lat,lon,users");
    for p in &world.pops {
        let _ = write!(t, ",rtt_{}", p.id);
    }
    t.push('\n');
    for n in &world.networks {
        let r = world.resolver_of(n);
        let subnets = world.subnets(n);
        let users = n.weight * per_weight / subnets.len() as f64;
        for subnet in subnets {
            let _ = write!(
                t,
                "{subnet},{},{},{},{},{users:.4}",
                n.name, r.address, n.lat, n.lon
            );
            for p in &world.pops {
                let _ = write!(t, ",{:.3}", world.true_rtt(n, subnet, p));
            }
            t.push('\n');
        }
    }
    let path = out.join("ground_truth.csv");
    std::fs::write(&path, t).map_err(io(&path))?;
    let mut r = String::from("address,name,ecs,lat,lon,egress\n");
    for res in &world.resolvers {
        let _ = writeln!(
            r,
            "{},{},{},{},{},{}",
            res.address, res.name, res.ecs, res.lat, res.lon, res.egress
        );
    }
    let path = out.join("resolvers.csv");
    std::fs::write(&path, r).map_err(io(&path))?;
    // The routing table: each network is announced as its own prefix.
    let routes: String = world
        .networks
        .iter()
        .map(|n| format!("{}\n", n.prefix))
        .collect();
    let path = out.join("routes.txt");
    std::fs::write(&path, routes).map_err(io(&path))?;
    // The world's GeoIP database, so maps and baselines fall back on the same knowledge of
    // where networks and resolvers are: perfect, except where a network's `geoip_lat` says
    // GeoIP is wrong about it.
    let mut located: Vec<(IpNet, f64, f64)> = world
        .networks
        .iter()
        .map(|n| {
            let (lat, lon) = World::geoip_location(n);
            (n.prefix, lat, lon)
        })
        .collect();
    located.extend(
        world
            .resolvers
            .iter()
            .flat_map(|r| World::egress(r).map(|a| (IpNet::V4(Ipv4Net::from(a)), r.lat, r.lon))),
    );
    let path = out.join("geoip.mmdb");
    geomap::mmdb::write_locations(&located, &path).map_err(|e| SimulateError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    Ok(())
}
