//! Compaction: the fewest rows that give every address the same ranking.
//!
//! Two rules, applied per key space until nothing changes: a row whose nearest covering row
//! ranks the same PoPs adds nothing and is dropped; two sibling rows (the halves of one prefix)
//! that rank the same are replaced by one row for the parent prefix, when the parent has no row
//! of its own. The result answers every address exactly as the input did, with fewer rows and
//! so wider ECS scopes.

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

fn drop_redundant(rows: &mut BTreeMap<(bool, IpNet), MapRow>) -> bool {
    let redundant: Vec<(bool, IpNet)> = rows
        .iter()
        .filter(|(_, r)| covering(rows, r.prefix).is_some_and(|p| p.pops == r.pops))
        .map(|(k, _)| *k)
        .collect();
    for k in &redundant {
        rows.remove(k);
    }
    !redundant.is_empty()
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
            if u.pops == r.pops {
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
        let derivation = a.derivation.max(b.derivation);
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
}
