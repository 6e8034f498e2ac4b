//! GeoIP fallback: rank PoPs by great-circle distance from where a MaxMind database places an
//! address. Used only where the map has no entry; its answer holds for the database's network
//! around the address, which bounds the ECS scope.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{path, Reader};

use crate::pop::{PopIndex, PopTable};

/// Why a GeoIP database cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("GeoIP database: {0}")]
pub struct GeoIpError(#[from] maxminddb::MaxMindDbError);

/// A located address: coordinates and the database network it holds for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Location {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Prefix length of the database network that holds this location.
    pub prefix_len: u8,
}

/// An open MaxMind City-style database (any database with `location.latitude/longitude`).
pub struct GeoIp {
    reader: Reader<Vec<u8>>,
}

impl GeoIp {
    /// Opens and checks a database file.
    pub fn open(path: &Path) -> Result<GeoIp, GeoIpError> {
        Ok(GeoIp {
            reader: Reader::open_readfile(path)?,
        })
    }

    /// The database type from its metadata (e.g. `GeoLite2-City`).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Where the database places `addr`, if it has coordinates for it. The prefix length is
    /// also returned for a miss (`Err(prefix_len)`), since "no data" holds for a network too.
    pub fn locate(&self, addr: IpAddr) -> Result<Location, u8> {
        // An IPv4-mapped address is looked up as IPv4, and its prefix length given back in
        // its own family (96 + the IPv4 one), like the map's scopes.
        let (addr, mapped) = match addr {
            IpAddr::V6(a) => a
                .to_ipv4_mapped()
                .map_or((addr, false), |a4| (IpAddr::V4(a4), true)),
            v4 => (v4, false),
        };
        let in_family = |len: u8| {
            if mapped {
                len.saturating_add(96).min(128)
            } else {
                len
            }
        };
        let Ok(found) = self.reader.lookup(addr) else {
            return Err(in_family(0));
        };
        let prefix_len = in_family(found.network().map(|n| n.prefix()).unwrap_or(0));
        let lat: Option<f64> = found
            .decode_path(&path!["location", "latitude"])
            .ok()
            .flatten();
        let lon: Option<f64> = found
            .decode_path(&path!["location", "longitude"])
            .ok()
            .flatten();
        match (lat, lon) {
            (Some(lat), Some(lon)) => Ok(Location {
                lat,
                lon,
                prefix_len,
            }),
            _ => Err(prefix_len),
        }
    }
}

/// Great-circle distance in km (haversine).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().asin()
}

/// PoPs with coordinates, nearest first (ties by table order). PoPs without coordinates are left
/// out: a PoP nobody placed cannot be "near".
pub fn rank_by_distance(pops: &PopTable, lat: f64, lon: f64) -> Vec<PopIndex> {
    let mut by_dist: Vec<(f64, PopIndex)> = pops
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((distance_km(lat, lon, p.lat?, p.lon?), i as PopIndex)))
        .collect();
    by_dist.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    by_dist.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pop::PopInfo;

    #[test]
    fn ranks_nearest_first() {
        let p = |id: &str, lat, lon| PopInfo {
            id: id.parse().unwrap(),
            lat: Some(lat),
            lon: Some(lon),
        };
        let pops = PopTable::new(vec![
            p("ams", 52.37, 4.90),
            p("iad", 38.95, -77.45),
            p("sin", 1.35, 103.99),
            PopInfo {
                id: "nowhere".parse().unwrap(),
                lat: None,
                lon: None,
            },
        ])
        .unwrap();
        // Frankfurt: ams, then iad, then sin.
        assert_eq!(rank_by_distance(&pops, 50.11, 8.68), [0, 1, 2]);
        // Tokyo: sin first.
        assert_eq!(rank_by_distance(&pops, 35.68, 139.69)[0], 2);
        let d = distance_km(52.37, 4.90, 38.95, -77.45);
        assert!((6100.0..6300.0).contains(&d), "ams-iad {d} km");
    }
}
