//! Deltas: a publication as the change from the one before it, so that a fleet fetches and
//! applies what changed (a few records) instead of every record of every zone (issue 24).
//!
//! A server holds the published zones as parts ([`Zones`]: each zone's SOA fields, apex, robot
//! records as a set, human text). A [`Delta`] from version `v` to `w` names the zones of `w` in
//! order and, for each zone that changed, the robot records removed and added and the parts
//! replaced; it is applied only to version `v` exactly, so a missing or reordered delta is
//! refused and the server loads a full snapshot instead.
//!
//! Every version has a *state* digest that covers what a full load of it gives: per zone, a
//! hash of its SOA fields, apex and human text, and the sum (modulo 2^256) of the SHA-256 of
//! each robot record. A sum changes by the records a delta adds and removes, so keeping the
//! digest costs time in proportion to the delta, not to the zone, and a server that applied
//! deltas proves it holds what a fresh full load would (the delta carries the state it must
//! reach; the pointer, which the presenter signs, carries it too).
//!
//! The sum catches corruption and bugs, not forgery: whoever chooses many records can make
//! sums collide (a generalised birthday attack needs about 2^31 work at 256 bits). A delta is
//! therefore only as trusted as its bytes: the signed pointer names each delta's checksum
//! (wired with the publication, not here), as it names the full document's.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::format::{checksum, Snapshot, SnapshotError, ZoneText, FORMAT as SNAPSHOT_FORMAT};
use crate::signature::{SigningKey, Trust};
use crate::zone_text::{Soa, ZoneBody};

/// The delta document format this code writes and reads.
pub const FORMAT: u32 = 1;

/// What changed in one zone; a zone new in this version has every part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneChange {
    /// The zone.
    pub origin: String,
    /// The SOA fields, if they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soa: Option<Soa>,
    /// The apex lines, if they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apex: Option<Vec<String>>,
    /// The human text, if it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human: Option<String>,
    /// Robot records no longer published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Robot records new in this version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
}

/// The change from version `from` to `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// [`FORMAT`].
    pub format: u32,
    /// The version this delta applies to, and only to.
    pub from: u64,
    /// The version it makes.
    pub version: u64,
    /// RFC 3339 UTC: when `version` was made.
    pub created_at: String,
    /// The zones of `version`, in order.
    pub zones: Vec<String>,
    /// The zones that changed.
    pub changes: Vec<ZoneChange>,
    /// [`Zones::state`] of `version`.
    pub state: String,
}

/// A 256-bit sum of SHA-256 digests, modulo 2^256 (little-endian 64-bit limbs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sum([u64; 4]);

impl Sum {
    fn limbs(line: &str) -> [u64; 4] {
        let d = Sha256::digest(line.as_bytes());
        std::array::from_fn(|i| u64::from_le_bytes(d[i * 8..i * 8 + 8].try_into().expect("8")))
    }

    fn add(&mut self, line: &str) {
        let x = Self::limbs(line);
        let mut carry = false;
        for (a, b) in self.0.iter_mut().zip(x) {
            let (s, c1) = a.overflowing_add(b);
            let (s, c2) = s.overflowing_add(u64::from(carry));
            *a = s;
            carry = c1 || c2;
        }
    }

    fn sub(&mut self, line: &str) {
        let x = Self::limbs(line);
        let mut borrow = false;
        for (a, b) in self.0.iter_mut().zip(x) {
            let (s, b1) = a.overflowing_sub(b);
            let (s, b2) = s.overflowing_sub(u64::from(borrow));
            *a = s;
            borrow = b1 || b2;
        }
    }

    fn bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, l) in self.0.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&l.to_le_bytes());
        }
        out
    }
}

/// The hash of a zone's parts other than its robot records.
fn head_hash(b: &ZoneBody) -> [u8; 32] {
    let head = (&b.origin, &b.soa, &b.apex, &b.human);
    Sha256::digest(serde_json::to_vec(&head).expect("serialises")).into()
}

/// One zone's share of the state digest: its head hash and robot sum.
type Part = ([u8; 32], Sum);

/// One zone with what its share of the state digest needs.
#[derive(Clone, Debug)]
struct Held {
    body: ZoneBody,
    head: [u8; 32],
    robots: Sum,
}

impl Held {
    fn new(body: ZoneBody) -> Held {
        let mut robots = Sum::default();
        body.robot_lines.iter().for_each(|l| robots.add(l));
        Held {
            head: head_hash(&body),
            robots,
            body,
        }
    }
}

/// The zones of one version, as parts, with their state digest kept up to date.
#[derive(Clone, Debug)]
pub struct Zones {
    version: u64,
    created_at: String,
    zones: Vec<Held>,
}

/// A delta refused, and why; the server then loads a full snapshot.
fn refused(d: &Delta, problem: impl Into<String>) -> SnapshotError {
    SnapshotError::Mismatch {
        version: d.version,
        problem: format!("delta from {}: {}", d.from, problem.into()),
    }
}

impl Zones {
    /// The zones of `version`.
    pub fn new(version: u64, created_at: String, bodies: Vec<ZoneBody>) -> Zones {
        Zones {
            version,
            created_at,
            zones: bodies.into_iter().map(Held::new).collect(),
        }
    }

    /// The parts of a full snapshot, each zone text parsed back ([`ZoneBody::parse`]).
    pub fn from_snapshot(s: &Snapshot) -> Result<Zones, SnapshotError> {
        let bodies = s
            .zones
            .iter()
            .map(|z| {
                ZoneBody::parse(&z.origin, &z.text).ok_or_else(|| {
                    SnapshotError::Document(format!(
                        "zone {}: not in the presenter's layout",
                        z.origin
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Zones::new(s.version, s.created_at.clone(), bodies))
    }

    /// The full snapshot of these zones.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT,
            version: self.version,
            created_at: self.created_at.clone(),
            zones: self
                .zones
                .iter()
                .map(|z| ZoneText {
                    origin: z.body.origin.clone(),
                    text: z.body.render(self.version),
                })
                .collect(),
        }
    }

    /// The version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// How many robot records the zones hold.
    pub fn robot_records(&self) -> usize {
        self.zones.iter().map(|z| z.body.robot_lines.len()).sum()
    }

    /// When the version was made, RFC 3339.
    pub fn created_at(&self) -> &str {
        &self.created_at
    }

    /// The zones' parts, in order.
    pub fn bodies(&self) -> impl Iterator<Item = &ZoneBody> {
        self.zones.iter().map(|z| &z.body)
    }

    /// The state digest (`state:<hex>`): the version and, per zone in order, its origin, the
    /// hash of its other parts and the sum of its robot records' hashes.
    pub fn state(&self) -> String {
        state_of(
            self.version,
            self.zones
                .iter()
                .map(|z| (z.body.origin.as_str(), &z.head, &z.robots)),
        )
    }

    /// The delta that turns `self` into `next`.
    pub fn delta_to(&self, next: &Zones) -> Delta {
        let mut changes = Vec::new();
        for n in &next.zones {
            let old = self.zones.iter().find(|z| z.body.origin == n.body.origin);
            let (o, b) = (old.map(|z| &z.body), &n.body);
            let changed = |same: bool| !same || o.is_none();
            let empty = BTreeSet::new();
            let old_robots = o.map_or(&empty, |o| &o.robot_lines);
            let change = ZoneChange {
                origin: b.origin.clone(),
                soa: changed(o.is_some_and(|o| o.soa == b.soa)).then(|| b.soa.clone()),
                apex: changed(o.is_some_and(|o| o.apex == b.apex)).then(|| b.apex.clone()),
                human: changed(o.is_some_and(|o| o.human == b.human)).then(|| b.human.clone()),
                removed: old_robots.difference(&b.robot_lines).cloned().collect(),
                added: b.robot_lines.difference(old_robots).cloned().collect(),
            };
            let nothing = change.soa.is_none()
                && change.apex.is_none()
                && change.human.is_none()
                && change.removed.is_empty()
                && change.added.is_empty();
            if !nothing {
                changes.push(change);
            }
        }
        Delta {
            format: FORMAT,
            from: self.version,
            version: next.version,
            created_at: next.created_at.clone(),
            zones: next.zones.iter().map(|z| z.body.origin.clone()).collect(),
            changes,
            state: next.state(),
        }
    }

    /// A delta from this version to `version` made of `changes` (the zones of `version` in
    /// order, `zones`), with the state it reaches computed in time proportional to the
    /// changes; refused like [`Zones::apply`] refuses one that does not fit this version.
    pub fn delta(
        &self,
        version: u64,
        created_at: String,
        zones: Vec<String>,
        changes: Vec<ZoneChange>,
    ) -> Result<Delta, SnapshotError> {
        let mut d = Delta {
            format: FORMAT,
            from: self.version,
            version,
            created_at,
            zones,
            changes,
            state: String::new(),
        };
        d.state = self.reach(&d)?.1;
        Ok(d)
    }

    /// Checks `d` against this version and computes, from the heads and sums alone, each
    /// zone's part of the state it leads to and that state.
    fn reach(&self, d: &Delta) -> Result<(Vec<Part>, String), SnapshotError> {
        if d.format != FORMAT {
            return Err(refused(
                d,
                format!("format {} (this build reads {FORMAT})", d.format),
            ));
        }
        if d.from != self.version || d.version <= d.from {
            return Err(refused(
                d,
                format!("this server holds version {}", self.version),
            ));
        }
        let held = |o: &str| self.zones.iter().find(|z| z.body.origin == o);
        let change = |o: &str| d.changes.iter().find(|c| c.origin == o);
        let distinct: BTreeSet<&String> = d.zones.iter().collect();
        if distinct.len() != d.zones.len() {
            return Err(refused(d, "a zone named twice"));
        }
        for c in &d.changes {
            if !distinct.contains(&c.origin)
                || d.changes.iter().filter(|x| x.origin == c.origin).count() > 1
            {
                return Err(refused(
                    d,
                    format!("zone {}: a change not in its zones, or twice", c.origin),
                ));
            }
            let z = held(&c.origin);
            if z.is_none() && (c.soa.is_none() || c.apex.is_none() || c.human.is_none()) {
                return Err(refused(
                    d,
                    format!("zone {} is new but not whole", c.origin),
                ));
            }
            let empty = BTreeSet::new();
            let robots = z.map_or(&empty, |z| &z.body.robot_lines);
            if let Some(l) = c.removed.iter().find(|l| !robots.contains(*l)) {
                return Err(refused(
                    d,
                    format!("zone {}: {l:?} is not there to remove", c.origin),
                ));
            }
            let added: BTreeSet<&String> = c.added.iter().collect();
            if added.len() != c.added.len() || c.added.iter().any(|l| robots.contains(l)) {
                return Err(refused(
                    d,
                    format!("zone {}: a record added twice", c.origin),
                ));
            }
        }
        // The state it would reach, from the heads and sums alone.
        let mut parts = Vec::with_capacity(d.zones.len());
        for o in &d.zones {
            let z = held(o);
            let part = match (z, change(o)) {
                (Some(z), None) => (z.head, z.robots),
                (None, None) => {
                    return Err(refused(d, format!("zone {o} is new but not in the delta")))
                }
                (z, Some(c)) => {
                    let base = z.map(|z| &z.body);
                    let pick =
                        |new: Option<&Soa>| new.or(base.map(|b| &b.soa)).expect("checked").clone();
                    let body = ZoneBody {
                        origin: o.clone(),
                        soa: pick(c.soa.as_ref()),
                        apex: c
                            .apex
                            .clone()
                            .or_else(|| base.map(|b| b.apex.clone()))
                            .unwrap_or_default(),
                        robot_lines: BTreeSet::new(),
                        human: c
                            .human
                            .clone()
                            .or_else(|| base.map(|b| b.human.clone()))
                            .unwrap_or_default(),
                    };
                    let mut sum = z.map_or(Sum::default(), |z| z.robots);
                    c.removed.iter().for_each(|l| sum.sub(l));
                    c.added.iter().for_each(|l| sum.add(l));
                    (head_hash(&body), sum)
                }
            };
            parts.push(part);
        }
        let state = state_of(
            d.version,
            d.zones
                .iter()
                .zip(&parts)
                .map(|(o, p)| (o.as_str(), &p.0, &p.1)),
        );
        Ok((parts, state))
    }

    /// Applies `d`, in time proportional to the delta (and the human texts it replaces).
    /// Refused, leaving `self` as it was, if `d` is not the delta from this version, names a
    /// record it cannot remove or add, or does not reach the state it says: the state it
    /// would reach is computed first, from the sums, and only then is anything changed.
    pub fn apply(&mut self, d: &Delta) -> Result<(), SnapshotError> {
        let (parts, state) = self.reach(d)?;
        if state != d.state {
            return Err(refused(
                d,
                format!("gives {state}, the delta says {}", d.state),
            ));
        }
        let change = |o: &str| d.changes.iter().find(|c| c.origin == o);
        // Now nothing can fail.
        let mut old = std::mem::take(&mut self.zones);
        for (o, (head, robots)) in d.zones.iter().zip(parts) {
            let mut z = match old.iter().position(|z| &z.body.origin == o) {
                Some(i) => old.swap_remove(i),
                None => Held::new(ZoneBody {
                    origin: o.clone(),
                    soa: change(o).and_then(|c| c.soa.clone()).expect("checked"),
                    apex: Vec::new(),
                    robot_lines: BTreeSet::new(),
                    human: String::new(),
                }),
            };
            if let Some(c) = change(o) {
                for l in &c.removed {
                    z.body.robot_lines.remove(l);
                }
                z.body.robot_lines.extend(c.added.iter().cloned());
                if let Some(s) = &c.soa {
                    z.body.soa = s.clone();
                }
                if let Some(a) = &c.apex {
                    z.body.apex = a.clone();
                }
                if let Some(h) = &c.human {
                    z.body.human = h.clone();
                }
            }
            (z.head, z.robots) = (head, robots);
            self.zones.push(z);
        }
        self.version = d.version;
        self.created_at = d.created_at.clone();
        Ok(())
    }
}

/// The state digest of a version from each zone's origin, head hash and robot sum.
fn state_of<'a>(
    version: u64,
    zones: impl Iterator<Item = (&'a str, &'a [u8; 32], &'a Sum)>,
) -> String {
    let mut h = Sha256::new();
    h.update(version.to_le_bytes());
    for (origin, head, robots) in zones {
        h.update((origin.len() as u64).to_le_bytes());
        h.update(origin.as_bytes());
        h.update(head);
        h.update(robots.bytes());
    }
    format!("state:{}", hex::encode(h.finalize()))
}

/// What a delta node holds on its first line: the delta's version, checksum and size, and the
/// presenter's signature over its bytes. Each delta carries its own signature because the
/// signed pointer names only the latest version's document, and a sum-based state digest
/// alone does not stop forged deltas (the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// The version the delta makes.
    pub version: u64,
    /// `sha256:<hex>` of the delta's bytes.
    pub checksum: String,
    /// The delta's bytes.
    pub size: u64,
    /// The key that signed it (`ed25519:<hex>`), if signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// The signature over the delta's bytes (hex), if signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Delta {
    /// The delta document's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a delta always serialises")
    }

    /// A delta node's bytes (also a record of a server's journal on disk): the [`Seal`] on one
    /// line, then the delta (JSON has no raw newline).
    pub fn sealed(&self, signer: Option<&SigningKey>) -> Vec<u8> {
        let bytes = self.encode();
        let (signed_by, signature) = match signer.map(|k| k.sign_bytes(&bytes)) {
            Some((by, sig)) => (Some(by), Some(sig)),
            None => (None, None),
        };
        let seal = Seal {
            version: self.version,
            checksum: checksum(&bytes),
            size: bytes.len() as u64,
            signed_by,
            signature,
        };
        let mut out = serde_json::to_vec(&seal).expect("a seal always serialises");
        out.push(b'\n');
        out.extend_from_slice(&bytes);
        out
    }

    /// Checks sealed bytes ([`Delta::sealed`]) that should make `version`: size, checksum,
    /// signature, and that the delta is from the version just before.
    pub fn unseal(version: u64, bytes: &[u8], trust: &Trust) -> Result<Delta, SnapshotError> {
        let damaged = |problem: String| SnapshotError::Mismatch {
            version,
            problem: format!("delta: {problem}"),
        };
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| damaged("no seal line".into()))?;
        let seal: Seal =
            serde_json::from_slice(&bytes[..nl]).map_err(|e| damaged(format!("seal: {e}")))?;
        let body = &bytes[nl + 1..];
        if seal.version != version {
            return Err(damaged(format!("sealed as version {}", seal.version)));
        }
        if body.len() as u64 != seal.size || checksum(body) != seal.checksum {
            return Err(damaged(format!(
                "{} bytes hashing to {}, the seal says {} bytes, {}",
                body.len(),
                checksum(body),
                seal.size,
                seal.checksum
            )));
        }
        trust.check_bytes(
            version,
            seal.signed_by.as_deref(),
            seal.signature.as_deref(),
            body,
        )?;
        let d = Delta::decode(body)?;
        if d.version != version || d.from + 1 != version {
            return Err(damaged(format!(
                "from {} to {}, not to {version} from the one before",
                d.from, d.version
            )));
        }
        Ok(d)
    }

    /// Parses a delta document.
    pub fn decode(bytes: &[u8]) -> Result<Delta, SnapshotError> {
        serde_json::from_slice(bytes).map_err(|e| SnapshotError::Document(format!("delta: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Seeded, so every run checks the same sequences.
    struct Rng(ChaCha8Rng);

    impl Rng {
        fn new(seed: u64) -> Rng {
            Rng(ChaCha8Rng::seed_from_u64(seed))
        }

        fn below(&mut self, n: u64) -> u64 {
            self.0.random_range(0..n)
        }
    }

    fn zone(origin: &str, hosts: impl Iterator<Item = u64>) -> ZoneBody {
        ZoneBody {
            origin: origin.into(),
            soa: Soa {
                ttl: 60,
                primary: format!("ns1.{origin}"),
                hostmaster: "hostmaster.example".into(),
                negative_ttl: 30,
            },
            apex: vec![format!("{origin}. 60 IN NS ns1.{origin}.")],
            robot_lines: hosts.map(host).collect(),
            human: "www 300 IN CNAME host1\n".into(),
        }
    }

    fn host(i: u64) -> String {
        format!(
            "host{i} 60 IN A 10.{}.{}.{}",
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255
        )
    }

    /// The next version: hosts come and go, and now and then a head changes or a zone comes or
    /// goes.
    fn step(r: &mut Rng, z: &Zones) -> Zones {
        let mut bodies: Vec<ZoneBody> = z.bodies().cloned().collect();
        for b in &mut bodies {
            for _ in 0..r.below(4) {
                let h = host(r.below(400));
                if !b.robot_lines.remove(&h) {
                    b.robot_lines.insert(h);
                }
            }
            match r.below(20) {
                0 => b.human = format!("www 300 IN CNAME host{}\n", r.below(9)),
                1 => b.soa.negative_ttl = 30 + r.below(3) as u32,
                2 => b.apex.push(format!(
                    "{}. 60 IN NS ns{}.{}.",
                    b.origin,
                    r.below(9),
                    b.origin
                )),
                _ => {}
            }
        }
        match r.below(15) {
            0 if bodies.len() > 1 => {
                bodies.remove(r.below(bodies.len() as u64) as usize);
            }
            1 => bodies.push(zone(&format!("z{}.example", r.below(1000)), 0..r.below(30))),
            2 => bodies.reverse(),
            _ => {}
        }
        bodies.dedup_by(|a, b| a.origin == b.origin);
        Zones::new(z.version() + 1, format!("t{}", z.version() + 1), bodies)
    }

    #[test]
    fn deltas_give_what_full_loads_give_on_random_change_sequences() {
        for seed in 1..=20u64 {
            let mut r = Rng::new(seed);
            let start = Zones::new(
                1,
                "t1".into(),
                vec![zone("a.example", 0..200), zone("b.example", 100..150)],
            );
            let (mut published, mut follower) = (start.clone(), start);
            let mut changes = 0;
            for _ in 0..60 {
                let next = step(&mut r, &published);
                let delta = Delta::decode(&published.delta_to(&next).encode()).unwrap();
                changes += delta.changes.len();
                // The same delta made from its changes alone reaches the same state.
                let made = follower
                    .delta(
                        delta.version,
                        delta.created_at.clone(),
                        delta.zones.clone(),
                        delta.changes.clone(),
                    )
                    .unwrap();
                assert_eq!(made, delta, "seed {seed}");
                follower.apply(&delta).unwrap();
                let full = Zones::from_snapshot(&next.to_snapshot()).unwrap();
                assert_eq!(follower.to_snapshot(), next.to_snapshot(), "seed {seed}");
                assert_eq!(follower.state(), full.state(), "seed {seed}");
                published = next;
            }
            assert!(changes >= 30, "seed {seed}: only {changes} zone changes");
        }
    }

    #[test]
    fn a_missing_reordered_or_corrupt_delta_is_refused_and_changes_nothing() {
        let v = |n: u64| Zones::new(n, format!("t{n}"), vec![zone("a.example", n..n + 100)]);
        let (v1, v2, v3) = (v(1), v(2), v(3));
        let (d12, d23) = (v1.delta_to(&v2), v2.delta_to(&v3));
        let mut f = v1.clone();
        let before = f.to_snapshot();
        // Missing (v2 to v3 on v1), reordered, replayed.
        assert!(f.apply(&d23).is_err());
        f.apply(&d12).unwrap();
        assert!(f.apply(&d12).is_err());
        assert_eq!(f.to_snapshot(), v2.to_snapshot());
        let mut f = v1.clone();
        // Corrupt: a record changed in flight, a removal of what is not there, a wrong state.
        let mut bad = d12.clone();
        bad.changes[0].added.push("evil 60 IN A 192.0.2.66".into());
        bad.changes[0].added.sort();
        assert!(f.apply(&bad).is_err());
        let mut bad = d12.clone();
        bad.changes[0]
            .removed
            .push("nothere 60 IN A 192.0.2.1".into());
        assert!(f.apply(&bad).is_err());
        let mut bad = d12.clone();
        bad.state = v1.state();
        assert!(f.apply(&bad).is_err());
        let mut bad = d12.clone();
        bad.changes[0].human = Some("www 300 IN A 192.0.2.9\n".into());
        assert!(f.apply(&bad).is_err());
        assert_eq!(f.to_snapshot(), before, "a refused delta changed nothing");
        assert_eq!(f.state(), v1.state());
        assert!(Delta::decode(b"{\"format\":1}").is_err());
    }

    #[test]
    fn the_state_is_the_sum_whatever_the_order_records_came_in() {
        let a = Zones::new(5, "t".into(), vec![zone("a.example", 0..300)]);
        let b = Zones::new(5, "t".into(), vec![zone("a.example", (0..300).rev())]);
        assert_eq!(a.state(), b.state());
        let c = Zones::new(5, "t".into(), vec![zone("a.example", 0..299)]);
        assert_ne!(a.state(), c.state());
        let d = Zones::new(6, "t".into(), vec![zone("a.example", 0..300)]);
        assert_ne!(a.state(), d.state());
    }
}
