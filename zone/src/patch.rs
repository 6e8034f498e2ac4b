//! A compiled zone changed by a few records, in time proportional to the change (issue 24).
//!
//! A presenter publishes each change to its internal zones as the records added and removed;
//! recompiling a 100,000-record zone for one of them costs most of a second of a server's CPU.
//! [`Zone::patched`] instead recompiles only the owners whose records changed: each one's node
//! is built again from the zone's other records at that name (the *head*: the zone compiled
//! without the changeable lines) and every changeable line at that name, by the same parser and
//! the same per-node rules as a full compile, and the empty non-terminals above it are added
//! or dropped by the count of names each has below it. The result is a copy of the zone that
//! shares every other node ([`imbl::HashMap`]), so the server still swaps whole zones and a
//! query never sees half a change.
//!
//! It applies only where it gives exactly what compiling the whole text would; anywhere else it
//! says so (`Ok(None)`) and the caller compiles the whole text. Changeable lines are written
//! as the presenter writes robot records ([`patch_line_owner`]); lines of a type with rules
//! across names (SOA, NS, CNAME, DNAME) and owners whose head has the same type fall back.

use std::collections::HashSet;

use hickory_proto::rr::{Name, RecordType};

use crate::compile::{answer_bytes, encode_rdata, parse_zone_text, MAX_ANSWER_BYTES};
use crate::text::refuse_includes;
use crate::{parent, rtype, text_name, wire_name, Node, Rrset, Zone, ZoneError};

/// Every changeable line at one owner after a change, in the order the zone text has them.
#[derive(Clone, Debug)]
pub struct OwnerLines<'a> {
    /// The owner as the lines spell it ([`patch_line_owner`]).
    pub owner: &'a str,
    /// The lines (none: the owner has no changeable records any more).
    pub lines: Vec<&'a str>,
}

/// The owner of a line [`Zone::patched`] can apply, or `None`: `<owner>. <ttl> IN <TYPE>
/// <rdata>`, the owner absolute and in lowercase letters, digits, `-`, `_` and `.`, the TTL
/// explicit. One spelling per name, so the lines at an owner are found by their first field.
pub fn patch_line_owner(line: &str) -> Option<&str> {
    let mut fields = line.split(' ');
    let owner = fields.next()?;
    let ttl = fields.next()?;
    let class = fields.next()?;
    let rtype = fields.next()?;
    fields.next()?;
    let owner_ok = owner.len() > 1
        && owner.ends_with('.')
        && !owner.contains("..")
        && owner
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    let ttl_ok = !ttl.is_empty() && ttl.bytes().all(|b| b.is_ascii_digit());
    let fixed = ["SOA", "NS", "CNAME", "DNAME"].contains(&rtype);
    let type_ok = !rtype.is_empty()
        && rtype
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    (owner_ok
        && ttl_ok
        && class == "IN"
        && type_ok
        && !fixed
        && !line.contains(['\n', '\r', '(', ';', '$']))
    .then_some(owner)
}

impl Zone {
    /// This zone with every changeable line at `owners` replaced by the lines given, and its
    /// SOA serial set to `serial`. `head` is the zone compiled from its text without any
    /// changeable line; `source` names the change in errors.
    ///
    /// `Err`: the change makes the zone one a full compile refuses too (a record outside the
    /// zone, a CNAME beside other data, an RRset no answer can carry). `Ok(None)`: not a change
    /// this can apply exactly ([`patch_line_owner`], an owner whose head has a record of the
    /// same type, two lines with the same data, a name answered from the map); compile the
    /// whole text instead.
    pub fn patched(
        &self,
        head: &Zone,
        owners: &[OwnerLines<'_>],
        serial: u32,
        source: &str,
    ) -> Result<Option<Zone>, ZoneError> {
        let err = |problem: String| ZoneError {
            zone: self.origin_text.clone(),
            location: format!("{source}: "),
            problem,
        };
        let origin = Name::from_ascii(&self.origin_text)
            .map_err(|e| err(e.to_string()))?
            .to_lowercase();
        let mut next = self.clone();
        let mut seen = HashSet::new();
        for o in owners {
            if !seen.insert(o.owner) || o.lines.iter().any(|l| patch_line_owner(l) != Some(o.owner))
            {
                return Ok(None);
            }
            let name = Name::from_ascii(o.owner).map_err(|e| err(format!("{}: {e}", o.owner)))?;
            if !origin.zone_of(&name) {
                return Err(err(format!("{name} is outside the zone")));
            }
            let wire = wire_name(&name);
            let mut rrsets: Vec<Rrset> = match head.nodes.get(&wire) {
                Some(h) if h.geo_ttl.is_some() || h.status => return Ok(None),
                Some(h) => h.rrsets.clone(),
                None => Vec::new(),
            };
            if self.probe.is_some()
                || self
                    .nodes
                    .get(&wire)
                    .is_some_and(|n| n.geo_ttl.is_some() || n.status)
            {
                return Ok(None);
            }
            if !o.lines.is_empty() {
                let mut text = format!("$ORIGIN {}\n", self.origin_text);
                for l in &o.lines {
                    text.push_str(l);
                    text.push('\n');
                }
                refuse_includes(&text).map_err(|(_, p)| err(p))?;
                let sets = parse_zone_text(&text, None, &origin).map_err(|(line, p)| {
                    // Line 1 is the `$ORIGIN`.
                    let at = line.saturating_sub(2).min(o.lines.len() - 1);
                    err(format!("{:?}: {p}", o.lines[at]))
                })?;
                let mut records = 0;
                for set in sets.values() {
                    if set.name() != &name {
                        return Ok(None);
                    }
                    let t = u16::from(set.record_type());
                    if rrsets.iter().any(|r| r.rtype == t) {
                        return Ok(None);
                    }
                    let recs: Vec<_> = set.records_without_rrsigs().collect();
                    records += recs.len();
                    if recs.is_empty() {
                        continue;
                    }
                    let rdata = recs
                        .iter()
                        .map(|r| encode_rdata(&r.data))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| err(format!("{name} {}: {e}", set.record_type())))?;
                    rrsets.push(Rrset {
                        rtype: t,
                        ttl: recs.iter().map(|r| r.ttl).min().unwrap_or(0),
                        rdata,
                    });
                }
                if records != o.lines.len() {
                    return Ok(None);
                }
            }
            // In the order a full compile gives: by type, as its map of RRsets is ordered.
            rrsets.sort_by_key(|r| RecordType::from(r.rtype));
            next.replace_node(wire, rrsets).map_err(err)?;
        }
        next.set_serial(serial);
        Ok(Some(next))
    }

    /// This zone with its SOA serial set to `serial`, nothing else changed: O(1) copy.
    pub fn with_serial(&self, serial: u32) -> Zone {
        let mut next = self.clone();
        next.set_serial(serial);
        next
    }

    /// Puts `rrsets` at `wire` (none: the name keeps only what it has below it), keeping the
    /// empty non-terminals above it and the counts of names below each exact.
    fn replace_node(&mut self, wire: Box<[u8]>, rrsets: Vec<Rrset>) -> Result<(), String> {
        if rrsets.iter().any(|r| r.rtype == rtype::CNAME) && rrsets.len() > 1 {
            return Err(format!(
                "{} has a CNAME and other data (RFC 1034 3.6.2)",
                text_name(&wire)
            ));
        }
        for r in &rrsets {
            let bytes = answer_bytes(wire.len(), &r.rdata);
            if bytes > MAX_ANSWER_BYTES {
                return Err(format!(
                    "{} {}: {} records need {bytes} bytes, more than one answer over TCP holds ({MAX_ANSWER_BYTES})",
                    text_name(&wire),
                    RecordType::from(r.rtype),
                    r.rdata.len()
                ));
            }
        }
        let was_listed = self.nodes.get(&wire).is_some_and(|n| !n.is_empty());
        let listed = !rrsets.is_empty();
        match self.nodes.get_mut(&wire) {
            Some(n) => {
                n.rrsets = rrsets;
                if !listed && n.below == 0 {
                    self.nodes.remove(&wire);
                }
            }
            None if listed => {
                self.nodes.insert(
                    wire.clone(),
                    Node {
                        rrsets,
                        ..Node::default()
                    },
                );
            }
            None => {}
        }
        if was_listed == listed {
            return Ok(());
        }
        // The names above, up to the apex, count one name more or less below them.
        let mut cur: &[u8] = &wire;
        while let Some(p) = parent(cur) {
            if p.len() < self.origin.len() {
                break;
            }
            if listed {
                self.nodes.entry(p.into()).or_default().below += 1;
            } else {
                let gone = match self.nodes.get_mut(p) {
                    Some(n) => {
                        n.below -= 1;
                        n.below == 0 && n.is_empty()
                    }
                    None => false,
                };
                if gone {
                    self.nodes.remove(p);
                }
            }
            cur = p;
        }
        Ok(())
    }

    /// Sets the SOA serial, in the apex's SOA record and in the negative answers' copy.
    fn set_serial(&mut self, serial: u32) {
        let n = self.soa_rdata.len();
        let mut soa = self.soa_rdata.to_vec();
        soa[n - 20..n - 16].copy_from_slice(&serial.to_be_bytes());
        let soa: Box<[u8]> = soa.into();
        if let Some(apex) = self.nodes.get_mut(&self.origin) {
            for r in apex.rrsets.iter_mut().filter(|r| r.rtype == rtype::SOA) {
                r.rdata = vec![soa.clone()];
            }
        }
        self.soa_rdata = soa;
        self.serial = serial;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const ORIGIN: &str = "int.example";

    /// The zone text as the presenter lays it out: SOA and apex, robot lines sorted, then the
    /// human text (a TXT beside robot addresses, a CNAME, a delegation with robots below it).
    fn text(serial: u32, robots: &BTreeSet<String>) -> String {
        let mut t = format!(
            "$ORIGIN {ORIGIN}.\n{ORIGIN}. 60 IN SOA ns1.{ORIGIN}. h.{ORIGIN}. {serial} 3600 600 604800 30\n{ORIGIN}. 60 IN NS ns1.{ORIGIN}.\n"
        );
        for l in robots {
            t.push_str(l);
            t.push('\n');
        }
        t.push_str(&format!(
            "$ORIGIN {ORIGIN}.\n$TTL 60\nns1 IN A 10.9.9.9\nh1.a IN TXT \"human\"\nalias IN CNAME h1.a\nsub IN NS ns1\n"
        ));
        t
    }

    fn head(robots_free: &str) -> Zone {
        Zone::from_text(ORIGIN, robots_free, "head").unwrap()
    }

    fn same(a: &Zone, b: &Zone) {
        assert_eq!(a.nodes.len(), b.nodes.len());
        for (k, v) in &b.nodes {
            assert_eq!(a.nodes.get(k), Some(v), "{}", text_name(k));
        }
        assert_eq!(a.nodes, b.nodes);
        assert_eq!(
            (&a.soa_rdata, a.serial, a.negative_ttl),
            (&b.soa_rdata, b.serial, b.negative_ttl)
        );
        assert_eq!(a.cuts, b.cuts);
    }

    fn owners<'a>(
        robots: &'a BTreeSet<String>,
        changed: &'a BTreeSet<String>,
    ) -> Vec<OwnerLines<'a>> {
        changed
            .iter()
            .map(|o| OwnerLines {
                owner: o,
                lines: robots
                    .range(format!("{o} ")..)
                    .take_while(|l| l.starts_with(&format!("{o} ")))
                    .map(String::as_str)
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn random_changes_give_what_a_full_compile_gives() {
        let names = [
            "h1.a",
            "h2.a",
            "x.h1.a",
            "y.x.h1.a",
            "b",
            "h3.b",
            "deep.er.c",
            "er.c",
            "h1.sub",
            "alias2",
            "@",
        ];
        for seed in 0..10u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut robots: BTreeSet<String> = BTreeSet::new();
            let mut zone = Zone::from_text(ORIGIN, &text(1, &robots), "full").unwrap();
            let h = head(&text(1, &BTreeSet::new()));
            for serial in 2..80u32 {
                let mut changed = BTreeSet::new();
                for _ in 0..rng.random_range(1..6) {
                    let n = names[rng.random_range(0..names.len())];
                    let owner = if n == "@" {
                        format!("{ORIGIN}.")
                    } else {
                        format!("{n}.{ORIGIN}.")
                    };
                    let i: u8 = rng.random_range(0..4);
                    let line = match rng.random_range(0..3) {
                        0 => format!("{owner} 60 IN A 10.0.0.{i}"),
                        1 => format!("{owner} 60 IN AAAA 2001:db8::{i}"),
                        _ => format!("{owner} 60 IN SRV 0 0 {} h1.a.{ORIGIN}.", 80 + u16::from(i)),
                    };
                    if !robots.remove(&line) {
                        robots.insert(line);
                    }
                    changed.insert(owner);
                }
                let full = Zone::from_text(ORIGIN, &text(serial, &robots), "full");
                let patched = zone.patched(&h, &owners(&robots, &changed), serial, "delta");
                match (full, patched) {
                    (Ok(f), Ok(Some(p))) => {
                        same(&p, &f);
                        zone = p;
                    }
                    (Err(_), Err(_)) => {
                        // Both refuse (a robot address beside the human CNAME): undo it.
                        robots.retain(|l| !l.starts_with("alias"));
                        zone = Zone::from_text(ORIGIN, &text(serial, &robots), "full").unwrap();
                    }
                    (f, p) => panic!(
                        "seed {seed} serial {serial}: full {:?} patched {:?}",
                        f.map(|_| ()),
                        p.map(|p| p.is_some())
                    ),
                }
            }
            assert!(robots.len() > 3, "seed {seed}: {robots:?}");
        }
    }

    #[test]
    fn what_it_cannot_apply_exactly_it_leaves_to_a_full_compile() {
        let robots = BTreeSet::new();
        let zone = Zone::from_text(ORIGIN, &text(1, &robots), "full").unwrap();
        let h = head(&text(1, &robots));
        let o = |owner: &'static str, line: &'static str| {
            vec![OwnerLines {
                owner,
                lines: vec![line],
            }]
        };
        for (owner, line) in [
            // The head has a TXT at h1.a.
            ("h1.a.int.example.", "h1.a.int.example. 60 IN TXT \"robot\""),
            // Types with rules across names.
            ("r.int.example.", "r.int.example. 60 IN NS ns1.int.example."),
            (
                "r.int.example.",
                "r.int.example. 60 IN CNAME h1.a.int.example.",
            ),
            // Not the presenter's spelling.
            ("r.int.example.", "R.int.example. 60 IN A 10.0.0.1"),
            ("r.int.example.", "r.int.example. IN A 10.0.0.1"),
            ("r.int.example.", "r 60 IN A 10.0.0.1"),
            // A line at another owner than it is listed under.
            ("r.int.example.", "s.int.example. 60 IN A 10.0.0.1"),
        ] {
            assert!(
                zone.patched(&h, &o(owner, line), 2, "d").unwrap().is_none(),
                "{line}"
            );
        }
        // What a full compile refuses, this refuses.
        let e = zone
            .patched(
                &h,
                &o("alias.int.example.", "alias.int.example. 60 IN A 10.0.0.1"),
                2,
                "d",
            )
            .unwrap_err();
        assert!(e.to_string().contains("CNAME and other data"), "{e}");
        let e = zone
            .patched(&h, &o("x.other.", "x.other. 60 IN A 10.0.0.1"), 2, "d")
            .unwrap_err();
        assert!(e.to_string().contains("outside the zone"), "{e}");
    }
}
