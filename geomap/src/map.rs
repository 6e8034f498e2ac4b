//! The map as data: rows keyed by prefix in two key spaces, plus file-level metadata.
//!
//! This is the in-memory form of what mapgen writes and the server reads (see
//! `docs/map-format.md`). It is a plain list of rows; [`crate::AnswerTable`] turns it into
//! the frozen lookup structure the query path uses.
//!
//! Invariants, checked by [`Map::validate`] and so by every reader:
//! - every prefix has its host bits clear;
//! - no `(key_space, prefix)` appears twice;
//! - every row ranks at least one PoP, each PoP at most once, each known to the PoP table;
//! - `rtt_ms` has one entry per ranked PoP, each a positive, finite latency or null;
//! - `own_share`, if present, has one entry per ranked PoP, each a share from 0 to 1 or null.
//!
//! [`MapRow::problems`] is the per-row half of these rules, which mapgen applies to each row
//! where it makes it.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;

use crate::pop::{PopIndex, PopTable};

/// Which address a row is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeySpace {
    /// Client subnets: used when the query carries EDNS Client Subnet.
    Client,
    /// Recursive resolvers: used otherwise, keyed by the query's source address.
    Resolver,
}

impl KeySpace {
    /// Both key spaces, in file order.
    pub const ALL: [KeySpace; 2] = [KeySpace::Client, KeySpace::Resolver];

    /// The name used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySpace::Client => "client",
            KeySpace::Resolver => "resolver",
        }
    }
}

impl fmt::Display for KeySpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeySpace {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "client" => Ok(KeySpace::Client),
            "resolver" => Ok(KeySpace::Resolver),
            _ => Err(format!("unknown key space {s:?}: want client or resolver")),
        }
    }
}

/// How a row's ranking was decided; mapgen's fallback levels plus operator overrides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Derivation {
    /// Enough measurements for this very prefix.
    Measured,
    /// Borrowed from a covering aggregate (a coarser prefix) because this one was thin.
    Aggregated,
    /// Aggregated over a routed prefix (from a routing-table prefix list): one network, so
    /// its thin parts borrow from measurements of the same network.
    Routed,
    /// Never measured: the latency model fitted from the measurements, at the network's GeoIP
    /// location, shifted by what its measured neighbours (same routed prefix or aggregate)
    /// saw.
    Modeled,
    /// Nearest PoPs by GeoIP distance.
    Geoip,
    /// The configured default order.
    Default,
    /// Written by hand (an operator's nets file).
    Static,
}

impl Derivation {
    /// All derivations, in the order reports list them.
    pub const ALL: [Derivation; 7] = [
        Derivation::Measured,
        Derivation::Routed,
        Derivation::Aggregated,
        Derivation::Modeled,
        Derivation::Geoip,
        Derivation::Default,
        Derivation::Static,
    ];

    /// The name used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Derivation::Measured => "measured",
            Derivation::Aggregated => "aggregated",
            Derivation::Routed => "routed",
            Derivation::Modeled => "modeled",
            Derivation::Geoip => "geoip",
            Derivation::Default => "default",
            Derivation::Static => "static",
        }
    }
}

impl fmt::Display for Derivation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Derivation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Derivation::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| format!("unknown derivation {s:?}: want one of measured, routed, aggregated, modeled, geoip, default, static"))
    }
}

/// One map row: a prefix and the PoPs ranked best first for the addresses in it.
#[derive(Clone, Debug, PartialEq)]
pub struct MapRow {
    /// Which address the prefix is matched against.
    pub key_space: KeySpace,
    /// The prefix, host bits clear.
    pub prefix: IpNet,
    /// PoPs, best first, as indices into the map's PoP table.
    pub pops: Vec<PopIndex>,
    /// Estimated round-trip time to each ranked PoP in ms, where known (same length as `pops`).
    pub rtt_ms: Vec<Option<f32>>,
    /// How many measurements decided the row (0 for derived rows).
    pub samples: u64,
    /// How the ranking was decided.
    pub derivation: Derivation,
    /// For each ranked PoP, the share (0 to 1) of its estimate that came from this prefix's
    /// own samples rather than from its neighbours and the latency model (mapgen's pooling);
    /// null where the PoP is not estimated. Empty where unknown (nets files, older maps).
    /// Informational: it explains a row, it never changes an answer.
    pub own_share: Vec<Option<f32>>,
}

/// File-level facts about a map, carried in the Arrow schema metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct MapMeta {
    /// Identifies one mapgen run; the server publishes it so monitoring can compare servers.
    pub generation: String,
    /// When the map was made (RFC 3339, UTC).
    pub created_at: String,
    /// Oldest measurement that went into the map (RFC 3339), if it came from measurements.
    pub source_from: Option<String>,
    /// Newest measurement that went into the map (RFC 3339).
    pub source_until: Option<String>,
    /// The PoPs the rows refer to.
    pub pops: PopTable,
}

/// A whole map: metadata and rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Map {
    /// File-level facts.
    pub meta: MapMeta,
    /// The rows, in any order (writers sort them).
    pub rows: Vec<MapRow>,
}

/// One thing wrong with a map row.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[error("row {row}: {field}: {problem}")]
pub struct RowError {
    /// 0-based row number in the file.
    pub row: usize,
    /// The column at fault.
    pub field: &'static str,
    /// What is wrong, with the offending value.
    pub problem: String,
}

impl MapRow {
    /// What is wrong with this row on its own, as (column, problem): the one definition of a
    /// valid row, used by every reader and by mapgen where it makes each row, so a row the
    /// reader would refuse is never written. `pops` is the map's PoP table. Whether a prefix
    /// appears twice is a property of the whole map ([`Map::validate`]).
    pub fn problems(&self, pops: &PopTable) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let npops = pops.len();
        if self.prefix.trunc() != self.prefix {
            out.push((
                "prefix",
                format!(
                    "{} has host bits set (did you mean {}?)",
                    self.prefix,
                    self.prefix.trunc()
                ),
            ));
        }
        if self.pops.is_empty() {
            out.push(("pops", "no PoP ranked".into()));
        }
        let mut pops_seen = HashSet::new();
        for &p in &self.pops {
            if p as usize >= npops {
                out.push((
                    "pops",
                    format!("PoP index {p} beyond the PoP table ({npops} PoPs)"),
                ));
            } else if !pops_seen.insert(p) {
                out.push(("pops", format!("PoP '{}' ranked twice", pops.get(p).id)));
            }
        }
        if self.rtt_ms.len() != self.pops.len() {
            out.push((
                "rtt_ms",
                format!("{} values for {} PoPs", self.rtt_ms.len(), self.pops.len()),
            ));
        }
        // A latency is positive and finite; zero is no measurement of anything real.
        if let Some(bad) = self
            .rtt_ms
            .iter()
            .flatten()
            .find(|v| !v.is_finite() || **v <= 0.0)
        {
            out.push(("rtt_ms", format!("{bad} is not a latency")));
        }
        if !self.own_share.is_empty() && self.own_share.len() != self.pops.len() {
            out.push((
                "own_share",
                format!(
                    "{} values for {} PoPs",
                    self.own_share.len(),
                    self.pops.len()
                ),
            ));
        }
        if let Some(bad) = self
            .own_share
            .iter()
            .flatten()
            .find(|v| !(0.0..=1.0).contains(*v))
        {
            out.push(("own_share", format!("{bad} is not a share from 0 to 1")));
        }
        out
    }
}

impl Map {
    /// Checks the invariants listed in the module docs ([`MapRow::problems`] for each row,
    /// and no prefix twice in a key space) and returns every violation found (capped at
    /// `limit`), so an operator fixes a broken file in one pass.
    pub fn validate(&self, limit: usize) -> Vec<RowError> {
        let mut errors = Vec::new();
        let mut seen = HashSet::with_capacity(self.rows.len());
        for (i, r) in self.rows.iter().enumerate() {
            if errors.len() >= limit {
                break;
            }
            let mut problems = r.problems(&self.meta.pops);
            if r.prefix.trunc() == r.prefix && !seen.insert((r.key_space, r.prefix)) {
                problems.insert(
                    0,
                    (
                        "prefix",
                        format!("{} appears twice in key space {}", r.prefix, r.key_space),
                    ),
                );
            }
            errors.extend(problems.into_iter().map(|(field, problem)| RowError {
                row: i,
                field,
                problem,
            }));
        }
        errors.truncate(limit);
        errors
    }

    /// PoP ids of a row, for display.
    pub fn pop_ids<'a>(&'a self, row: &'a MapRow) -> impl Iterator<Item = &'a str> + 'a {
        row.pops.iter().map(|&p| self.meta.pops.get(p).id.as_str())
    }
}
