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
    /// Prefixes (`space prefix`) the new map places by measurement that the old one did not
    /// cover at all: how many, and the first [`MAX_MOVES`].
    pub gained_total: u64,
    /// See `gained_total`.
    pub gained: Vec<String>,
    /// Each PoP's share of measured traffic (client subnets by samples) as first choice:
    /// `(PoP, before, after)`.
    pub pop_share: Vec<(String, f64, f64)>,
    /// The previous map's path, as given.
    pub previous: String,
    /// The previous map's generation.
    pub previous_generation: String,
    /// The client subnets that change first PoP, the heaviest first (at most [`MAX_MOVES`]).
    pub moves: Vec<Move>,
}

/// How many of the heaviest moves the report lists.
pub const MAX_MOVES: usize = 25;

/// One client subnet whose first PoP changes.
#[derive(Debug, Clone, Serialize)]
pub struct Move {
    /// The client subnet.
    pub prefix: String,
    /// First PoP in the previous map (`-` where it had none).
    pub from: String,
    /// First PoP in the new map.
    pub to: String,
    /// Its samples (the traffic it stands for).
    pub samples: u64,
    /// The new map's estimate for the old PoP and the new one, ms, where known.
    pub from_ms: Option<f32>,
    /// See `from_ms`.
    pub to_ms: Option<f32>,
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

/// Each PoP's share of measured traffic as first choice in `map`: `weights` are the measured
/// client subnets and their samples, answered as the server would (the default order where no
/// row covers them). One home for the figure the catchment legend and the gate both show.
/// `table` is `map`'s answer table, built with the default order (`AnswerTable::build`).
pub fn traffic_share(
    map: &Map,
    table: &AnswerTable,
    weights: &[(IpNet, u64)],
) -> Vec<(String, f64)> {
    let mut share: Vec<(String, u64)> = map
        .meta
        .pops
        .iter()
        .map(|p| (p.id.to_string(), 0))
        .collect();
    let mut total = 0;
    for (net, w) in weights {
        total += w;
        if let Some(p) = table
            .lookup(KeySpace::Client, net.addr())
            .pops
            .and_then(|p| p.first())
        {
            share[usize::from(*p)].1 += w;
        }
    }
    let total = total.max(1) as f64;
    share
        .into_iter()
        .map(|(p, w)| (p, w as f64 / total))
        .collect()
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
    let new_rows = RowIndex::build(new);
    for (net, w) in weights {
        g.total_weight += w;
        let a = first_pop(old, &old_table, KeySpace::Client, net.addr());
        let b = first_pop(new, &new_table, KeySpace::Client, net.addr());
        if a != b {
            g.moved_weight += w;
            // The new map's estimates of both PoPs for this subnet: the medians behind the move.
            let row = new_rows
                .find(KeySpace::Client, net.addr())
                .map(|i| &new.rows[i]);
            let ms = |id: &Option<String>| {
                let row = row?;
                let p = new.meta.pops.index(id.as_deref()?)?;
                let i = row.pops.iter().position(|&x| x == p)?;
                row.rtt_ms.get(i).copied().flatten()
            };
            g.moves.push(Move {
                prefix: net.to_string(),
                from_ms: ms(&a),
                to_ms: ms(&b),
                from: a.unwrap_or_else(|| "-".into()),
                to: b.unwrap_or_else(|| "-".into()),
                samples: *w,
            });
        }
    }
    g.moves
        .sort_by(|x, y| y.samples.cmp(&x.samples).then(x.prefix.cmp(&y.prefix)));
    g.moves.truncate(MAX_MOVES);
    // Before and after by the one rule, [`traffic_share`]: every PoP of the new map, then any
    // only the old one had.
    let before = traffic_share(old, &old_table, weights);
    let after = traffic_share(new, &new_table, weights);
    g.pop_share = after
        .iter()
        .map(|(p, b)| {
            let a = before.iter().find(|(q, _)| q == p).map_or(0.0, |x| x.1);
            (p.clone(), a, *b)
        })
        .chain(
            before
                .iter()
                .filter(|(p, _)| !after.iter().any(|(q, _)| q == p))
                .map(|(p, a)| (p.clone(), *a, 0.0)),
        )
        .collect();
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
    let old_index = RowIndex::build(old);
    for r in new.rows.iter().filter(|r| placed(r.derivation)) {
        if old_index.find(r.key_space, r.prefix.addr()).is_none() {
            g.gained_total += 1;
            if g.gained.len() < MAX_MOVES {
                g.gained.push(format!("{} {}", r.key_space, r.prefix));
            }
        }
    }
    g
}
