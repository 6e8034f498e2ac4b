//! Export a map as a MaxMind DB, so operators of other GeoDNS servers can use our maps.
//!
//! The database is City-shaped, so servers that read GeoIP2/GeoLite2 City databases load it
//! unchanged (docs/export.md has each server's configuration). Each prefix of one key space
//! becomes a network whose record has
//! - `location.latitude/longitude`: the first-ranked PoP's coordinates, so servers that pick
//!   the nearest datacenter from a City database (gdnsd's `auto_dc_coords`, PowerDNS's
//!   `pickclosest`) choose our PoP; `location.accuracy_radius` (1 km), which PowerDNS's geoip
//!   backend requires of a location;
//! - `city.names.en`: the first-ranked PoP's id, for servers that map a City field to an answer
//!   (Knot's `mod-geoip` `geodb` mode on `city/names/en`, PowerDNS's `%ci`);
//! - `geodns`: `{pops: [...], rtt_ms: [...], derivation, samples}`, the whole ranking.
//!
//! The database type is `GeoDNS-Map-City`: gdnsd refuses a database whose type does not
//! contain `City`.
//!
//! Nested prefixes are written least specific first, so each more specific network overrides
//! its part of the covering one, which is longest-prefix match in MMDB form.

use std::path::Path;

use mmdb_writer::{Value, Writer};

use crate::map::{KeySpace, Map, MapRow};
use crate::pop::PopIndex;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The writer refused a network or could not serialize.
    #[error("MaxMind DB writer: {0}")]
    Writer(#[from] mmdb_writer::Error),
    /// The file could not be written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The database type written: it must contain `City` for gdnsd.
pub const DATABASE_TYPE: &str = "GeoDNS-Map-City";

/// Writes the rows of `space` to `out`; returns how many networks were written. With `fill`
/// (a PoP index), the space no row covers is given that PoP (as a least specific network per
/// family): a server then answers it from the database, with the scope of the uncovered
/// block, instead of a default answer with ECS scope /0 that resolvers cache for everyone.
pub fn export(
    map: &Map,
    space: KeySpace,
    fill: Option<PopIndex>,
    out: &Path,
) -> Result<usize, ExportError> {
    let mut w = Writer::new(DATABASE_TYPE);
    let mut rows: Vec<MapRow> = map
        .rows
        .iter()
        .filter(|r| r.key_space == space)
        .cloned()
        .collect();
    if let Some(p) = fill {
        for all in ["0.0.0.0/0", "::/0"] {
            let prefix: ipnet::IpNet = all.parse().expect("valid");
            if !rows.iter().any(|r| r.prefix == prefix) {
                rows.push(MapRow {
                    key_space: space,
                    prefix,
                    pops: vec![p],
                    rtt_ms: vec![None],
                    samples: 0,
                    derivation: crate::map::Derivation::Default,
                    own_share: Vec::new(),
                });
            }
        }
    }
    rows.sort_by_key(|r| (r.prefix.prefix_len(), r.prefix.addr()));
    for r in &rows {
        let ids: Vec<Value> = r
            .pops
            .iter()
            .map(|&p| Value::from(map.meta.pops.get(p).id.as_str()))
            .collect();
        let rtts: Vec<Value> = r
            .rtt_ms
            .iter()
            .map(|v| Value::from(v.map_or(-1.0, f64::from)))
            .collect();
        let mut fields = vec![(
            "geodns",
            Value::map([
                ("pops", Value::array(ids)),
                ("rtt_ms", Value::array(rtts)),
                ("derivation", Value::from(r.derivation.as_str())),
                ("samples", Value::from(r.samples)),
            ]),
        )];
        let first = map.meta.pops.get(r.pops[0]);
        fields.push((
            "city",
            Value::map([(
                "names",
                Value::map([("en", Value::from(first.id.as_str()))]),
            )]),
        ));
        if let (Some(lat), Some(lon)) = (first.lat, first.lon) {
            fields.push((
                "location",
                Value::map([
                    ("latitude", Value::from(lat)),
                    ("longitude", Value::from(lon)),
                    ("accuracy_radius", Value::from(1u64)),
                ]),
            ));
        }
        w.insert_value(r.prefix, Value::map(fields))?;
    }
    write(w, out)?;
    Ok(rows.len())
}

/// Writes a City-style database holding only `location` per network: what a test world or a
/// simulation knows about where its networks are. Nested networks go least specific first.
pub fn write_locations(
    networks: &[(ipnet::IpNet, f64, f64)],
    out: &Path,
) -> Result<(), ExportError> {
    let mut w = Writer::new("GeoDNS-Locations");
    let mut sorted: Vec<_> = networks.iter().collect();
    sorted.sort_by_key(|(n, _, _)| (n.prefix_len(), n.addr()));
    for (net, lat, lon) in sorted {
        w.insert_value(
            *net,
            Value::map([(
                "location",
                Value::map([
                    ("latitude", Value::from(*lat)),
                    ("longitude", Value::from(*lon)),
                ]),
            )]),
        )?;
    }
    write(w, out)
}

fn write(w: Writer, out: &Path) -> Result<(), ExportError> {
    let bytes = w.to_bytes()?;
    crate::atomic_file::write(out, |f| std::io::Write::write_all(f, &bytes))?;
    Ok(())
}
