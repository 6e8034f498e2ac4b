//! The frozen lookup structure: address -> ranked PoP list plus the ECS scope that answer holds for.
//!
//! Built from a [`Map`] in three steps, like gdnsd's pipeline:
//! 1. intern the ranked PoP lists, so each distinct ranking is stored once and named by a
//!    [`ListId`];
//! 2. *flatten* each key space and family into a partition of the whole address space into
//!    non-overlapping prefixes, each carrying one list (or "unmapped"), merging sibling prefixes
//!    with the same list as far up as they go;
//! 3. load the partition into a tree bitmap for longest-prefix match.
//!
//! Because the partition is non-overlapping and maximally merged, the matched leaf's length *is*
//! the right ECS scope: the widest prefix around the client in which every address gets the same
//! answer. A nested exception (a /24 inside a /16 with another answer) narrows the scope of its
//! neighbours instead of being hidden by a /16 scope, and unmapped space gets the widest block that
//! holds no mapped entry, never 0 and never a fixed /24.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ip_network_table_deps_treebitmap::IpLookupTable;
use ipnet::IpNet;

use crate::map::{KeySpace, Map};
use crate::pop::PopIndex;

/// Names one interned ranked PoP list within an [`AnswerTable`].
pub type ListId = u32;

/// Leaf value for space no map row covers (and no default was folded in at build time).
const UNMAPPED: ListId = ListId::MAX;

/// The result of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit<'a> {
    /// PoPs best first, or `None` where the map has no entry (fall back to GeoIP or default).
    pub pops: Option<&'a [PopIndex]>,
    /// Which interned list, for callers that cache per list.
    pub list: Option<ListId>,
    /// ECS scope prefix length: how far around the address this answer holds.
    pub scope: u8,
}

struct FamilyTables {
    v4: IpLookupTable<Ipv4Addr, ListId>,
    v6: IpLookupTable<Ipv6Addr, ListId>,
    leaves: usize,
}

/// Ranked lists and per-key-space LPM tables; immutable once built, shared by all query threads.
pub struct AnswerTable {
    lists: Vec<Box<[PopIndex]>>,
    stats: Vec<ListStats>,
    spaces: [FamilyTables; 2],
}

/// What the map says about the users behind one ranked list, for spilling load by capacity:
/// their demand (the samples of every row with this list, mapgen's estimate of how many users
/// it stands for) and the demand-weighted mean RTT to each ranked PoP.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListStats {
    /// Sum of the rows' samples.
    pub demand: u64,
    /// Mean estimated RTT (ms) to each PoP of the list, in list order; `None` where unknown.
    pub rtt_ms: Vec<Option<f32>>,
}

// Shared by every query thread: the tree bitmap declares Send and Sync itself, so the table is
// both without any unsafe code here (checked at compile time below).
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<AnswerTable>()
};

/// A leaf of a flattened partition: (network bits left-aligned in the family width, length, list).
type Leaf = (u128, u8, ListId);

impl AnswerTable {
    /// Builds the table. With `default = Some(order)`, space no row covers answers `order` (and
    /// merges with rows that rank the same); with `None` it stays unmapped, for GeoIP fallback.
    pub fn build(map: &Map, default: Option<&[PopIndex]>) -> AnswerTable {
        let mut lists: Vec<Box<[PopIndex]>> = Vec::new();
        let mut ids: HashMap<Box<[PopIndex]>, ListId> = HashMap::new();
        let mut intern = |pops: &[PopIndex]| -> ListId {
            if let Some(&id) = ids.get(pops) {
                return id;
            }
            let id = lists.len() as ListId;
            lists.push(pops.into());
            ids.insert(pops.into(), id);
            id
        };
        let fill = default.map_or(UNMAPPED, &mut intern);
        let mut entries: [[Vec<Leaf>; 2]; 2] = Default::default();
        // Per list: demand, and RTT sums and weights per position.
        let mut acc: Vec<(u64, Vec<(f64, f64)>)> = Vec::new();
        for r in &map.rows {
            let id = intern(&r.pops);
            if acc.len() <= id as usize {
                acc.resize(id as usize + 1, (0, Vec::new()));
            }
            let a = &mut acc[id as usize];
            a.0 += r.samples;
            a.1.resize(r.pops.len(), (0.0, 0.0));
            let w = r.samples.max(1) as f64;
            for (k, rtt) in r.rtt_ms.iter().enumerate() {
                if let Some(v) = rtt.filter(|v| v.is_finite()) {
                    a.1[k].0 += v as f64 * w;
                    a.1[k].1 += w;
                }
            }
            let space = r.key_space as usize;
            match r.prefix {
                IpNet::V4(n) => entries[space][0].push((
                    (u32::from(n.network()) as u128) << 96,
                    n.prefix_len(),
                    id,
                )),
                IpNet::V6(n) => {
                    entries[space][1].push((u128::from(n.network()), n.prefix_len(), id))
                }
            }
        }
        let spaces = entries.map(|[mut e4, mut e6]| {
            let leaves4 = flatten(&mut e4, 32, fill);
            let leaves6 = flatten(&mut e6, 128, fill);
            let mut v4 = IpLookupTable::with_capacity(leaves4.len());
            for &(bits, len, id) in &leaves4 {
                v4.insert(Ipv4Addr::from((bits >> 96) as u32), len as u32, id);
            }
            let mut v6 = IpLookupTable::with_capacity(leaves6.len());
            for &(bits, len, id) in &leaves6 {
                v6.insert(Ipv6Addr::from(bits), len as u32, id);
            }
            FamilyTables {
                v4,
                v6,
                leaves: leaves4.len() + leaves6.len(),
            }
        });
        acc.resize(lists.len(), (0, Vec::new()));
        let stats = acc
            .into_iter()
            .zip(&lists)
            .map(|((demand, sums), list)| ListStats {
                demand,
                rtt_ms: (0..list.len())
                    .map(|k| {
                        sums.get(k)
                            .filter(|(_, w)| *w > 0.0)
                            .map(|(s, w)| (s / w) as f32)
                    })
                    .collect(),
            })
            .collect();
        AnswerTable {
            lists,
            stats,
            spaces,
        }
    }

    /// Demand and mean RTTs behind each list, by [`ListId`].
    pub fn list_stats(&self) -> &[ListStats] {
        &self.stats
    }

    /// Longest-prefix match of `addr` in `space`. IPv4-mapped IPv6 addresses are looked up as
    /// IPv4. Scopes are relative to the address family of the lookup.
    #[inline]
    pub fn lookup(&self, space: KeySpace, addr: IpAddr) -> Hit<'_> {
        let t = &self.spaces[space as usize];
        let found = match addr {
            IpAddr::V4(a) => t.v4.longest_match(a).map(|(_, len, &id)| (len, id)),
            // An IPv4-mapped address (::ffff:a.b.c.d) is answered from the IPv4 map, but its
            // scope is a length in its own family: 96 + the IPv4 one (RFC 7871 7.1.1).
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a4) => {
                    t.v4.longest_match(a4)
                        .map(|(_, len, &id)| (len + 96, id))
                        .or(Some((96, UNMAPPED)))
                }
                None => t.v6.longest_match(a).map(|(_, len, &id)| (len, id)),
            },
        };
        // The partition covers the whole space, so a miss only happens for an empty table.
        let (len, id) = found.unwrap_or((0, UNMAPPED));
        if id == UNMAPPED {
            Hit {
                pops: None,
                list: None,
                scope: len as u8,
            }
        } else {
            Hit {
                pops: Some(&self.lists[id as usize]),
                list: Some(id),
                scope: len as u8,
            }
        }
    }

    /// The list behind an id.
    pub fn list(&self, id: ListId) -> &[PopIndex] {
        &self.lists[id as usize]
    }

    /// Number of distinct ranked lists.
    pub fn list_count(&self) -> usize {
        self.lists.len()
    }

    /// Number of leaves (flattened prefixes) in a key space, both families.
    pub fn leaf_count(&self, space: KeySpace) -> usize {
        self.spaces[space as usize].leaves
    }
}

/// Flattens possibly nested entries into a minimal partition of the `width`-bit space.
/// Entries must be unique per (bits, len); they are sorted here.
fn flatten(entries: &mut [Leaf], width: u8, fill: ListId) -> Vec<Leaf> {
    entries.sort_unstable_by_key(|&(bits, len, _)| (bits, len));
    let mut out = Vec::with_capacity(entries.len() * 2 + 1);
    walk(0, 0, width, fill, entries, &mut out);
    out
}

/// Emits the partition of prefix `bits/len` given the value inherited from covering entries and
/// the (sorted) entries inside it, merging the two halves when both come back as one equal leaf.
fn walk(
    bits: u128,
    len: u8,
    width: u8,
    inherited: ListId,
    mut inside: &[Leaf],
    out: &mut Vec<Leaf>,
) {
    let mut value = inherited;
    // Entries are sorted by (bits, len), so an entry for exactly this prefix comes first.
    while let Some(&(b, l, id)) = inside.first() {
        if b == bits && l == len {
            value = id;
            inside = &inside[1..];
        } else {
            break;
        }
    }
    if inside.is_empty() || len == width {
        out.push((bits, len, value));
        return;
    }
    let mid = bits | (1u128 << (127 - len as u32));
    let split = inside.partition_point(|&(b, _, _)| b < mid);
    let start = out.len();
    walk(bits, len + 1, width, value, &inside[..split], out);
    walk(mid, len + 1, width, value, &inside[split..], out);
    if out.len() == start + 2 && out[start].2 == out[start + 1].2 {
        let v = out[start].2;
        out.truncate(start);
        out.push((bits, len, v));
    }
}

/// Plain longest-prefix match over the map's own rows, for diagnostics (`map lookup`): which row
/// matched, with its latencies and derivation. Not used on the query path.
pub struct RowIndex {
    v4: [IpLookupTable<Ipv4Addr, usize>; 2],
    v6: [IpLookupTable<Ipv6Addr, usize>; 2],
}

impl RowIndex {
    /// Indexes every row of `map`.
    pub fn build(map: &Map) -> RowIndex {
        let mut idx = RowIndex {
            v4: [IpLookupTable::new(), IpLookupTable::new()],
            v6: [IpLookupTable::new(), IpLookupTable::new()],
        };
        for (i, r) in map.rows.iter().enumerate() {
            let s = r.key_space as usize;
            match r.prefix {
                IpNet::V4(n) => {
                    idx.v4[s].insert(n.network(), n.prefix_len() as u32, i);
                }
                IpNet::V6(n) => {
                    idx.v6[s].insert(n.network(), n.prefix_len() as u32, i);
                }
            }
        }
        idx
    }

    /// Index of the most specific row covering `addr` in `space`.
    pub fn find(&self, space: KeySpace, addr: IpAddr) -> Option<usize> {
        let s = space as usize;
        match addr {
            IpAddr::V4(a) => self.v4[s].longest_match(a).map(|(_, _, &i)| i),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a4) => self.v4[s].longest_match(a4).map(|(_, _, &i)| i),
                None => self.v6[s].longest_match(a).map(|(_, _, &i)| i),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::{Derivation, MapMeta, MapRow};
    use crate::pop::{PopInfo, PopTable};

    fn map(rows: &[(&str, &[PopIndex])]) -> Map {
        let pops = ["ams", "iad", "sin"]
            .iter()
            .map(|id| PopInfo {
                id: id.parse().unwrap(),
                lat: None,
                lon: None,
            })
            .collect();
        Map {
            meta: MapMeta {
                generation: "t".into(),
                created_at: "2026-11-26T00:00:00Z".into(),
                source_from: None,
                source_until: None,
                pops: PopTable::new(pops).unwrap(),
            },
            rows: rows
                .iter()
                .map(|(p, pops)| MapRow {
                    key_space: KeySpace::Client,
                    prefix: p.parse().unwrap(),
                    pops: pops.to_vec(),
                    rtt_ms: vec![None; pops.len()],
                    samples: 0,
                    derivation: Derivation::Static,
                    own_share: Vec::new(),
                })
                .collect(),
        }
    }

    /// Table rows: (address, expected first PoP or None for unmapped, expected scope).
    fn check(t: &AnswerTable, cases: &[(&str, Option<PopIndex>, u8)]) {
        for &(addr, pop, scope) in cases {
            let hit = t.lookup(KeySpace::Client, addr.parse().unwrap());
            assert_eq!(
                (hit.pops.map(|p| p[0]), hit.scope),
                (pop, scope),
                "lookup {addr}"
            );
        }
    }

    #[test]
    fn nested_exception_narrows_the_covering_scope() {
        let m = map(&[("10.0.0.0/16", &[0]), ("10.0.5.0/24", &[1])]);
        let t = AnswerTable::build(&m, None);
        check(
            &t,
            &[
                ("10.0.5.1", Some(1), 24),
                // 10.0.4.0/24 is the sibling of the exception: same answer as the /16, but only /24 wide.
                ("10.0.4.9", Some(0), 24),
                ("10.0.6.1", Some(0), 23),
                ("10.0.0.1", Some(0), 22),
                ("10.0.128.1", Some(0), 17),
                // Unmapped: the widest block holding no entry (10.1.0.0/16, then /15, ...).
                ("10.1.0.1", None, 16),
                ("11.0.0.1", None, 8),
                ("200.0.0.1", None, 1),
                ("2001:db8::1", None, 0),
            ],
        );
    }

    #[test]
    fn default_fill_merges_with_equal_rows() {
        let m = map(&[("10.0.0.0/9", &[0]), ("10.128.0.0/9", &[1])]);
        let with_default = AnswerTable::build(&m, Some(&[0]));
        // 10.0/9 ranks like the default but its sibling 10.128/9 does not, so it stays a /9.
        check(
            &with_default,
            &[
                ("10.1.2.3", Some(0), 9),
                ("10.200.0.1", Some(1), 9),
                ("11.0.0.1", Some(0), 8),
            ],
        );
        let m = map(&[("10.0.0.0/8", &[0])]);
        let t = AnswerTable::build(&m, Some(&[0]));
        check(&t, &[("10.1.2.3", Some(0), 0), ("192.0.2.1", Some(0), 0)]);
    }

    #[test]
    fn adjacent_equal_rows_merge() {
        let m = map(&[
            ("10.0.0.0/24", &[2, 0]),
            ("10.0.1.0/24", &[2, 0]),
            ("10.0.2.0/24", &[2, 1]),
        ]);
        let t = AnswerTable::build(&m, None);
        check(
            &t,
            &[
                ("10.0.0.7", Some(2), 23),
                ("10.0.1.7", Some(2), 23),
                ("10.0.2.7", Some(2), 24),
            ],
        );
        assert_eq!(t.list_count(), 2);
    }

    #[test]
    fn ipv6_and_mapped_ipv4() {
        let m = map(&[("2001:db8::/32", &[1]), ("192.0.2.0/24", &[2])]);
        let t = AnswerTable::build(&m, None);
        check(
            &t,
            &[
                ("2001:db8:1::1", Some(1), 32),
                ("2001:db9::1", None, 32),
                ("::ffff:192.0.2.9", Some(2), 120),
            ],
        );
    }

    #[test]
    fn host_routes() {
        let m = map(&[("192.0.2.1/32", &[1]), ("2001:db8::1/128", &[2])]);
        let t = AnswerTable::build(&m, None);
        check(
            &t,
            &[
                ("192.0.2.1", Some(1), 32),
                ("192.0.2.0", None, 32),
                ("2001:db8::1", Some(2), 128),
            ],
        );
    }
}
