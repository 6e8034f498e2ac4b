//! Safety gates: compare a new map with the one serving before it is written.
//!
//! Two questions: how much measured traffic (client subnets weighted by their samples) would
//! be answered by a different first PoP, and which prefixes the old map placed by measurement
//! (measured, aggregated or geoip rows) the new map no longer covers at all. A large move or any
//! lost coverage usually means broken input (a collector down, a PoP missing from the logs),
//! not a better map, so mapgen refuses unless told `--force`.

use std::net::IpAddr;

use geomap::{AnswerTable, Derivation, KeySpace, Map, PopIndex, RowIndex};
use ipnet::IpNet;
use serde::Serialize;

/// What changed against the previous map.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GateReport {
    /// Samples of client subnets whose first PoP changes.
    pub moved_weight: u64,
    /// Samples of all measured client subnets.
    pub total_weight: u64,
    /// `moved_weight / total_weight`.
    pub moved_share: f64,
    /// Prefixes (`space prefix`) the old map placed by measurement and the new one does not cover.
    pub lost: Vec<String>,
}

impl GateReport {
    /// The objections at this threshold (empty: the map may be written).
    pub fn problems(&self, max_moved_share: f64) -> Vec<String> {
        let mut p = Vec::new();
        if self.moved_share > max_moved_share {
            p.push(format!(
                "{:.1} % of measured traffic would change PoP (limit {:.1} %)",
                self.moved_share * 100.0,
                max_moved_share * 100.0
            ));
        }
        if !self.lost.is_empty() {
            p.push(format!("{} prefixes the previous map placed by measurement are no longer covered (e.g. {})", self.lost.len(), self.lost[0]));
        }
        p
    }
}

fn first_pop(map: &Map, table: &AnswerTable, space: KeySpace, addr: IpAddr) -> Option<String> {
    table
        .lookup(space, addr)
        .pops
        .and_then(|p| p.first())
        .map(|&p| map.meta.pops.get(p).id.to_string())
}

/// Compares `new` with `old`; `weights` are the measured client subnets and their samples.
pub fn compare(
    old: &Map,
    new: &Map,
    weights: &[(IpNet, u64)],
    default_order: &[PopIndex],
) -> GateReport {
    let old_default: Vec<PopIndex> = default_order
        .iter()
        .filter_map(|&p| old.meta.pops.index(new.meta.pops.get(p).id.as_str()))
        .collect();
    let old_table = AnswerTable::build(old, Some(&old_default));
    let new_table = AnswerTable::build(new, Some(default_order));
    let mut g = GateReport::default();
    for (net, w) in weights {
        g.total_weight += w;
        let a = first_pop(old, &old_table, KeySpace::Client, net.addr());
        let b = first_pop(new, &new_table, KeySpace::Client, net.addr());
        if a != b {
            g.moved_weight += w;
        }
    }
    g.moved_share = if g.total_weight == 0 {
        0.0
    } else {
        g.moved_weight as f64 / g.total_weight as f64
    };
    let placed = |d: Derivation| {
        matches!(
            d,
            Derivation::Measured
                | Derivation::Routed
                | Derivation::Aggregated
                | Derivation::Modeled
                | Derivation::Geoip
        )
    };
    let new_placed = Map {
        meta: new.meta.clone(),
        rows: new
            .rows
            .iter()
            .filter(|r| placed(r.derivation))
            .cloned()
            .collect(),
    };
    let new_index = RowIndex::build(&new_placed);
    for r in old.rows.iter().filter(|r| placed(r.derivation)) {
        if new_index.find(r.key_space, r.prefix.addr()).is_none() {
            g.lost.push(format!("{} {}", r.key_space, r.prefix));
        }
    }
    g
}
