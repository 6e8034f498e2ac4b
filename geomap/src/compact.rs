//! Compaction: the fewest rows that give every address the same ranking, without hiding what
//! was measured.
//!
//! Two rules, applied per key space until nothing changes:
//!
//! - A row whose nearest covering row ranks the same PoPs is dropped into it, when that tells
//!   no lie: a row with no samples of its own (it inherited its ranking) always; a measured
//!   row into a measured cover (halves merged), which then carries its samples and, weighted
//!   by them, its estimates; a measured or aggregate row into an aggregate (aggregated or
//!   routed), which is the sample-weighted mean of the measurements under it and so carries
//!   them already. A measured network is never dropped into a modeled, GeoIP, default or
//!   static row: `map explain` and the report would call it never measured and show the
//!   model's latency instead of what was measured, and the spill would lose its demand.
//! - Two sibling rows (the halves of one prefix) that rank the same and were derived the same
//!   way are replaced by one row for the parent prefix, when the parent has no row of its own;
//!   it carries both halves' samples and sample-weighted estimates.
//!
//! The result answers every address exactly as the input did, with fewer rows and so wider ECS
//! scopes.

use std::collections::BTreeMap;

use ipnet::IpNet;

use crate::map::{KeySpace, MapRow};

/// Compacts rows; the output is sorted (key space, family, address, length).
pub fn compact(rows: Vec<MapRow>) -> Vec<MapRow> {
    let mut by_space: BTreeMap<KeySpace, BTreeMap<(bool, IpNet), MapRow>> = BTreeMap::new();
    for r in rows {
        by_space
            .entry(r.key_space)
            .or_default()
            .insert((r.prefix.addr().is_ipv6(), r.prefix), r);
    }
    let mut out = Vec::new();
    for (_, mut rows) in by_space {
        loop {
            let dropped = drop_redundant(&mut rows);
            let merged = merge_siblings(&mut rows);
            if !dropped && !merged {
                break;
            }
        }
        out.extend(rows.into_values());
    }
    crate::format::sort_rows(&mut out);
    out
}

/// The nearest strictly covering prefix present in `rows`.
fn covering(rows: &BTreeMap<(bool, IpNet), MapRow>, net: IpNet) -> Option<&MapRow> {
    let mut len = net.prefix_len();
    while len > 0 {
        len -= 1;
        let parent = IpNet::new(net.addr(), len)
            .expect("shorter length is valid")
            .trunc();
        if let Some(r) = rows.get(&(parent.addr().is_ipv6(), parent)) {
            return Some(r);
        }
    }
    None
}

/// What dropping `row` into `cover` (which ranks the same) does with its samples, if it may
/// be dropped at all.
#[derive(PartialEq)]
enum Fold {
    /// Nothing to carry: the row inherited its ranking (no samples of its own), or the cover
    /// is an aggregate of the measurements under it, this row's among them.
    Nothing,
    /// The cover is a measured row (halves merged): it takes the row's samples and estimates.
    Samples,
}

fn fold(row: &MapRow, cover: &MapRow) -> Option<Fold> {
    use crate::map::Derivation as D;
    if cover.pops != row.pops {
        return None;
    }
    if row.samples == 0 {
        return Some(Fold::Nothing);
    }
    match (cover.derivation, row.derivation) {
        (D::Measured, D::Measured) => Some(Fold::Samples),
        (D::Aggregated | D::Routed, D::Measured | D::Aggregated | D::Routed) => Some(Fold::Nothing),
        // Never into a modeled, GeoIP, default or static row: that would hide a measurement.
        _ => None,
    }
}

fn drop_redundant(rows: &mut BTreeMap<(bool, IpNet), MapRow>) -> bool {
    // Most specific first, so a row that takes its children's samples is judged (and perhaps
    // dropped into its own cover) with them.
    let mut candidates: Vec<(bool, IpNet)> = rows
        .iter()
        .filter(|(_, r)| covering(rows, r.prefix).is_some_and(|c| fold(r, c).is_some()))
        .map(|(k, _)| *k)
        .collect();
    candidates.sort_by_key(|(_, net)| std::cmp::Reverse(net.prefix_len()));
    let mut dropped = false;
    for k in candidates {
        let Some(cover) = covering(rows, k.1).map(|c| (c.prefix.addr().is_ipv6(), c.prefix)) else {
            continue;
        };
        let Some(how) = fold(&rows[&k], &rows[&cover]) else {
            continue;
        };
        let row = rows.remove(&k).expect("present");
        if how == Fold::Samples {
            let c = rows.get_mut(&cover).expect("present");
            c.rtt_ms = weighted(&c.rtt_ms, c.samples, &row.rtt_ms, row.samples);
            c.samples += row.samples;
        }
        dropped = true;
    }
    dropped
}

fn merge_siblings(rows: &mut BTreeMap<(bool, IpNet), MapRow>) -> bool {
    let mut merges = Vec::new();
    for (k, r) in rows.iter() {
        let len = r.prefix.prefix_len();
        if len == 0 {
            continue;
        }
        let parent = IpNet::new(r.prefix.addr(), len - 1).expect("valid").trunc();
        // Visit each pair once, from its lower half.
        if parent.addr() != r.prefix.addr() || rows.contains_key(&(k.0, parent)) {
            continue;
        }
        let upper = parent
            .subnets(len)
            .expect("valid")
            .nth(1)
            .expect("two halves");
        if let Some(u) = rows.get(&(k.0, upper)) {
            if u.pops == r.pops && u.derivation == r.derivation {
                merges.push((parent, *k, (k.0, upper)));
            }
        }
    }
    for (parent, lo, hi) in &merges {
        let (a, b) = (
            rows.remove(lo).expect("present"),
            rows.remove(hi).expect("present"),
        );
        let samples = a.samples + b.samples;
        let rtt_ms = weighted(&a.rtt_ms, a.samples, &b.rtt_ms, b.samples);
        let own_share = if a.own_share.is_empty() || b.own_share.is_empty() {
            Vec::new()
        } else {
            // Over address space, not samples: a measured half and a modeled half are half
            // the prefix's own data.
            weighted(&a.own_share, 1, &b.own_share, 1)
        };
        let derivation = a.derivation;
        rows.insert(
            (lo.0, *parent),
            MapRow {
                key_space: a.key_space,
                prefix: *parent,
                pops: a.pops,
                rtt_ms,
                samples,
                derivation,
                own_share,
            },
        );
    }
    !merges.is_empty()
}

/// Two halves' per-PoP values merged: the sample-weighted mean where both have one.
fn weighted(a: &[Option<f32>], na: u64, b: &[Option<f32>], nb: u64) -> Vec<Option<f32>> {
    let samples = na + nb;
    a.iter()
        .zip(b)
        .map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if samples > 0 => {
                Some(((*x as f64 * na as f64 + *y as f64 * nb as f64) / samples as f64) as f32)
            }
            (Some(x), Some(y)) => Some((x + y) / 2.0),
            (x, None) => *x,
            (None, y) => *y,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::Derivation;

    fn row(p: &str, pops: &[u16]) -> MapRow {
        MapRow {
            key_space: KeySpace::Client,
            prefix: p.parse().unwrap(),
            pops: pops.to_vec(),
            rtt_ms: vec![Some(10.0); pops.len()],
            samples: 5,
            derivation: Derivation::Measured,
            own_share: Vec::new(),
        }
    }

    fn prefixes(rows: &[MapRow]) -> Vec<String> {
        rows.iter()
            .map(|r| format!("{}={:?}", r.prefix, r.pops))
            .collect()
    }

    #[test]
    fn drops_nested_duplicates_and_merges_siblings() {
        let rows = vec![
            row("10.0.0.0/16", &[0, 1]),
            row("10.0.1.0/24", &[0, 1]), // same as its cover: dropped
            row("10.0.2.0/24", &[1, 0]), // an exception: kept
            row("10.1.0.0/24", &[2]),
            row("10.1.1.0/24", &[2]), // sibling of 10.1.0.0/24: merged into 10.1.0.0/23
            row("10.1.2.0/23", &[2]), // then sibling of 10.1.0.0/23: merged into 10.1.0.0/22
        ];
        let out = compact(rows);
        assert_eq!(
            prefixes(&out),
            [
                "10.0.0.0/16=[0, 1]",
                "10.0.2.0/24=[1, 0]",
                "10.1.0.0/22=[2]"
            ]
        );
        assert_eq!(out[2].samples, 15);
    }

    #[test]
    fn a_parent_with_its_own_row_is_not_overwritten() {
        let rows = vec![
            row("10.0.0.0/23", &[1]),
            row("10.0.0.0/24", &[2]),
            row("10.0.1.0/24", &[2]),
        ];
        assert_eq!(
            prefixes(&compact(rows)),
            ["10.0.0.0/23=[1]", "10.0.0.0/24=[2]", "10.0.1.0/24=[2]"]
        );
    }

    #[test]
    fn a_measured_network_is_never_hidden_behind_a_modeled_row() {
        let mut modeled = row("10.0.0.0/16", &[0, 1]);
        modeled.derivation = Derivation::Modeled;
        modeled.samples = 0;
        modeled.rtt_ms = vec![Some(68.0), Some(80.0)];
        let mut measured = row("10.0.4.0/22", &[0, 1]);
        measured.samples = 1140;
        measured.rtt_ms = vec![Some(26.0), Some(40.0)];
        let mut inherited = row("10.0.8.0/24", &[0, 1]);
        inherited.derivation = Derivation::Geoip;
        inherited.samples = 0;
        let out = compact(vec![modeled, measured, inherited]);
        assert_eq!(
            prefixes(&out),
            ["10.0.0.0/16=[0, 1]", "10.0.4.0/22=[0, 1]"],
            "the measured /22 stays, the inherited /24 goes"
        );
        assert_eq!(out[1].samples, 1140);
        assert_eq!(out[1].rtt_ms[0], Some(26.0));
        assert_eq!(out[1].derivation, Derivation::Measured);
    }

    #[test]
    fn a_measured_row_dropped_into_a_measured_cover_gives_it_its_samples() {
        let mut cover = row("10.0.0.0/16", &[0, 1]);
        cover.samples = 100;
        cover.rtt_ms = vec![Some(10.0), Some(20.0)];
        let mut child = row("10.0.1.0/24", &[0, 1]);
        child.samples = 300;
        child.rtt_ms = vec![Some(30.0), Some(40.0)];
        let mut grandchild = row("10.0.1.0/26", &[0, 1]);
        grandchild.samples = 100;
        grandchild.rtt_ms = vec![Some(30.0), Some(40.0)];
        let out = compact(vec![cover, child, grandchild]);
        assert_eq!(prefixes(&out), ["10.0.0.0/16=[0, 1]"]);
        assert_eq!(out[0].samples, 500, "every sample kept");
        assert_eq!(out[0].rtt_ms[0], Some(26.0), "weighted by samples");
    }

    #[test]
    fn halves_derived_differently_are_not_merged() {
        let mut modeled = row("10.0.1.0/24", &[2]);
        modeled.derivation = Derivation::Modeled;
        modeled.samples = 0;
        let rows = vec![row("10.0.0.0/24", &[2]), modeled];
        assert_eq!(
            prefixes(&compact(rows)),
            ["10.0.0.0/24=[2]", "10.0.1.0/24=[2]"]
        );
    }

    #[test]
    fn an_aggregate_already_carries_the_measurements_under_it() {
        let mut aggregate = row("10.0.0.0/16", &[0, 1]);
        aggregate.derivation = Derivation::Aggregated;
        aggregate.samples = 400;
        let mut measured = row("10.0.1.0/24", &[0, 1]);
        measured.samples = 300;
        let out = compact(vec![aggregate, measured]);
        assert_eq!(prefixes(&out), ["10.0.0.0/16=[0, 1]"]);
        assert_eq!(out[0].samples, 400, "counted once, in the aggregate");
    }
}
