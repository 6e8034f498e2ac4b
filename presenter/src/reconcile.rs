//! Reconciling robots and humans into zone texts, by one documented conflict policy:
//!
//! - **A human record wins.** A robot record with the same owner and type as a human one, or at
//!   an owner where a human put a CNAME, is left out (`human_overrides`, `cname_beside_data`).
//! - **Names outside the internal zones** are left out (`outside_zones`).
//! - **Duplicate registrations** of one host name: the live one with the lowest sequence number
//!   (the oldest) is used, the others are left out (`duplicate_registration`).
//!
//! Every record left out is reported as a [`Conflict`]; nothing is dropped silently. The SOA
//! and apex NS are the presenter's (from its config), with the snapshot version as the serial.
//! This module is pure: the same inputs give the same output, byte for byte.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use geodns_register::Registration;
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::txt::Parser;
use serde::Serialize;

use geodns_snapshot::delta::{Delta, ZoneChange, Zones};
use geodns_snapshot::zone_text::{Soa, ZoneBody};

use crate::config::{norm, within, Rule, ZoneConfig};

/// A registration as the presenter holds it.
#[derive(Clone, Debug)]
pub struct Robot {
    /// Its node: `<name>-<seq>` under `hosts`, `<user>/<name>-<seq>` under `robots`.
    pub node: Arc<str>,
    /// Its creation order (the node's creation zxid: comparable across directories).
    pub seq: u64,
    /// What the host registered (shared with the registry: a reconciliation of 100k hosts
    /// copies none of them).
    pub reg: Arc<Registration>,
    /// Still registered (false: vanished, kept for the grace period).
    pub live: bool,
    /// For a robot identity of its own, the names it may register (each with the names below
    /// it) as the admin set them; `None` for the shared robot user.
    pub names: Option<Arc<[String]>>,
}

/// A record left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Conflict {
    /// `human_overrides`, `cname_beside_data`, `outside_zones`, `duplicate_registration`,
    /// `unauthorized_name`, `rrset_too_large`, `invalid_registration`.
    pub kind: &'static str,
    /// The owner name concerned.
    pub name: String,
    /// What was left out, and what won.
    pub detail: String,
}

/// The reconciled whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconciled {
    /// Zones in config order.
    pub zones: Vec<ZoneBody>,
    /// Everything left out.
    pub conflicts: Vec<Conflict>,
}

impl Reconciled {
    /// Robot record lines across all zones (the guard's measure).
    pub fn robot_records(&self) -> BTreeSet<&str> {
        self.zones
            .iter()
            .flat_map(|z| z.robot_lines.iter().map(String::as_str))
            .collect()
    }
}

/// The (owner, type) pairs of a human zone text, by the same parser the server uses.
pub fn human_owners(
    origin: &str,
    text: &str,
) -> Result<HashMap<String, HashSet<RecordType>>, String> {
    let origin_name = Name::from_ascii(format!("{}.", norm(origin))).map_err(|e| e.to_string())?;
    geodns_zone::check_text(text, &norm(origin))
        .map_err(|(line, problem)| format!("human zone {origin}: line {line}: {problem}"))?;
    let full = format!("$TTL 3600\n{text}\n");
    let (_, sets) = Parser::new(&full, None, Some(origin_name))
        .parse()
        .map_err(|e| e.to_string())?;
    let mut out: HashMap<String, HashSet<RecordType>> = HashMap::new();
    for (key, _) in sets {
        out.entry(norm(&key.name().to_ascii()))
            .or_default()
            .insert(key.record_type);
    }
    Ok(out)
}

/// The default of `guard.max_rrset_records`: most robot records one RRset takes (a service
/// name behind which every host of a role runs). Past it the rest are left out and reported
/// (`rrset_too_large`), so one growing service cannot make a name whose answer exceeds what
/// TCP carries and hold every snapshot back. 512 SRV records with their targets fill most of
/// a 64 KiB answer.
pub const MAX_ROBOT_RRSET: usize = 512;

/// [`norm`] without a copy when the name is already normalised (a registration's usually is).
fn norm_cow(name: &str) -> Cow<'_, str> {
    if name.ends_with('.') || name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(norm(name))
    } else {
        Cow::Borrowed(name)
    }
}

/// A rule's SRV name: its own, or `_<role>._tcp.<name>`.
fn srv_name(rule: &Rule) -> String {
    rule.srv
        .as_deref()
        .map(norm)
        .unwrap_or_else(|| format!("_{}._tcp.{}", rule.role, norm(&rule.name)))
}

/// Reconciles from nothing: a [`Reconciler`] given every registration at once. `humans` maps
/// a zone origin (normalised) to its published text; `max_rrset` caps robot records per name
/// and type; `robot_names`, when not empty, are the names (and the names below them) robots may
/// register.
pub fn reconcile(
    zones: &[ZoneConfig],
    rules: &[Rule],
    robots: &[Robot],
    humans: &BTreeMap<String, String>,
    max_rrset: usize,
    robot_names: &[String],
) -> Reconciled {
    let mut r = Reconciler::new(zones, rules, humans.clone(), max_rrset, robot_names);
    r.update(
        robots
            .iter()
            .map(|robot| (robot.node.clone(), Some(robot.clone()))),
    );
    Reconciled {
        zones: r.bodies().to_vec(),
        conflicts: r.conflicts(),
    }
}

/// The rules a reconciliation follows while a presenter leads: its zones, service rules and
/// caps, and the human zones as last read.
struct Policy {
    zones: Vec<ZoneConfig>,
    origins: Vec<String>,
    /// Each rule with its service name and SRV name, normalised.
    rules: Vec<(Rule, String, String)>,
    max_rrset: usize,
    robot_names: Vec<String>,
    humans: BTreeMap<String, String>,
    /// Per zone, the types of the human records at each owner.
    human_types: Vec<HashMap<String, HashSet<RecordType>>>,
}

/// The robot records wanted at one owner before the cap and the human records are applied.
#[derive(Default)]
struct Wanted {
    /// Each record (type, rdata) with how many hosts want it (hosts of a service may share an
    /// address).
    records: BTreeMap<(RecordType, String), usize>,
    /// How many distinct records of each type.
    per_type: BTreeMap<RecordType, usize>,
}

impl Wanted {
    fn add(&mut self, rtype: RecordType, rdata: String) {
        let n = self.records.entry((rtype, rdata)).or_default();
        *n += 1;
        if *n == 1 {
            *self.per_type.entry(rtype).or_default() += 1;
        }
    }

    fn remove(&mut self, rtype: RecordType, rdata: String) {
        let key = (rtype, rdata);
        let Some(n) = self.records.get_mut(&key) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.records.remove(&key);
            let t = self
                .per_type
                .get_mut(&rtype)
                .expect("counted with its records");
            *t -= 1;
            if *t == 0 {
                self.per_type.remove(&rtype);
            }
        }
    }
}

impl Policy {
    fn human_types(
        origins: &[String],
        humans: &BTreeMap<String, String>,
    ) -> Vec<HashMap<String, HashSet<RecordType>>> {
        origins
            .iter()
            .map(|o| {
                humans
                    .get(o)
                    .map(|t| human_owners(o, t).unwrap_or_default())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The longest origin that holds a name.
    fn zone_of(&self, name: &str) -> Option<usize> {
        self.origins
            .iter()
            .enumerate()
            .filter(|(_, o)| within(name, o))
            .max_by_key(|(_, o)| o.len())
            .map(|(i, _)| i)
    }

    /// Which of the registrations of `name` is used, if any; the others are reported to
    /// `conflicts`. Live before vanished, then the oldest.
    fn settle<'r>(
        &self,
        name: &str,
        mut regs: Vec<&'r Robot>,
        conflicts: &mut Vec<Conflict>,
    ) -> Option<&'r Robot> {
        // A registration by an identity of its own outside the names the admin gave it is
        // left out before duplicates are settled, so it cannot squat a name another may hold.
        regs.retain(|r| {
            let Some(names) = r
                .names
                .as_ref()
                .filter(|n| !n.iter().any(|allowed| within(name, allowed)))
            else {
                return true;
            };
            conflicts.push(Conflict {
                kind: "unauthorized_name",
                name: name.to_owned(),
                detail: format!(
                    "{} registers a name not under its identity's names {names:?}; left out",
                    r.node
                ),
            });
            false
        });
        if regs.is_empty() {
            return None;
        }
        regs.sort_by_key(|r| (!r.live, r.seq));
        for loser in &regs[1..] {
            conflicts.push(Conflict {
                kind: "duplicate_registration",
                name: name.to_owned(),
                detail: format!("{} left out; {} is used", loser.node, regs[0].node),
            });
        }
        if self.zone_of(name).is_none() {
            conflicts.push(Conflict {
                kind: "outside_zones",
                name: name.to_owned(),
                detail: format!("{} registers a name in no internal zone", regs[0].node),
            });
            return None;
        }
        // A host names itself, never a zone's apex or a rule's service name (registering
        // `web.prn1` would join the pool), and only under the names robots are given.
        let service = self
            .rules
            .iter()
            .any(|(_, rule_name, srv)| name == rule_name || name == srv);
        let why = if self.origins.iter().any(|o| o == name) {
            Some("a zone's apex".to_owned())
        } else if service {
            Some("a rule's service name".to_owned())
        } else if !self.robot_names.is_empty()
            && !self
                .robot_names
                .iter()
                .any(|allowed| within(name, &norm(allowed)))
        {
            Some(format!("not under robot_names {:?}", self.robot_names))
        } else {
            None
        };
        if let Some(why) = why {
            conflicts.push(Conflict {
                kind: "unauthorized_name",
                name: name.to_owned(),
                detail: format!("{} registers {why}; left out", regs[0].node),
            });
            return None;
        }
        Some(regs[0])
    }

    /// The robot records a host in use wants: its addresses at its name, and for each rule
    /// its services match, its addresses at the rule's name and an SRV record at the rule's
    /// SRV name. Only owners inside a zone.
    fn records_of(&self, host: &Robot, out: &mut Vec<(String, RecordType, String)>) {
        let addr_record = |a: &std::net::IpAddr| match a {
            std::net::IpAddr::V4(v4) => (RecordType::A, v4.to_string()),
            std::net::IpAddr::V6(v6) => (RecordType::AAAA, v6.to_string()),
        };
        let name = norm(&host.reg.name);
        let mut add = |owner: &str, rtype: RecordType, rdata: String| {
            if self.zone_of(owner).is_some() {
                out.push((owner.to_owned(), rtype, rdata));
            }
        };
        for a in &host.reg.addresses {
            let (t, rd) = addr_record(a);
            add(&name, t, rd);
        }
        for (rule, rule_name, srv) in &self.rules {
            for s in &host.reg.services {
                if s.role == rule.role && s.cluster == rule.cluster {
                    for a in &host.reg.addresses {
                        let (t, rd) = addr_record(a);
                        add(rule_name, t, rd);
                    }
                    add(srv, RecordType::SRV, format!("0 0 {} {name}.", s.port));
                }
            }
        }
    }

    /// The lines published at `owner` in zone `z` from the records wanted there: per type the
    /// first `max_rrset` in order (the rest reported), less those a human record overrides.
    fn emit(&self, z: usize, owner: &str, wanted: &Wanted) -> (Vec<String>, Vec<Conflict>) {
        let (mut lines, mut conflicts) = (Vec::new(), Vec::new());
        let human = self.human_types[z].get(owner);
        let ttl = self.zones[z].ttl;
        for (&rtype, &distinct) in &wanted.per_type {
            let first = wanted
                .records
                .range((rtype, String::new())..)
                .take_while(|((t, _), _)| *t == rtype)
                .take(self.max_rrset);
            for ((_, rdata), _) in first {
                if let Some(types) = human {
                    if types.contains(&rtype) {
                        conflicts.push(Conflict {
                            kind: "human_overrides",
                            name: owner.to_owned(),
                            detail: format!(
                                "robot {rtype} {rdata} left out; a human {rtype} record is used"
                            ),
                        });
                        continue;
                    }
                    if types.contains(&RecordType::CNAME) {
                        conflicts.push(Conflict {
                            kind: "cname_beside_data",
                            name: owner.to_owned(),
                            detail: format!(
                                "robot {rtype} {rdata} left out; a human CNAME is at this name"
                            ),
                        });
                        continue;
                    }
                }
                lines.push(format!("{owner}. {ttl} IN {rtype} {rdata}"));
            }
            if distinct > self.max_rrset {
                conflicts.push(Conflict {
                    kind: "rrset_too_large",
                    name: owner.to_owned(),
                    detail: format!(
                        "{} robot {rtype} records left out: at most {} per name and type (guard.max_rrset_records; the first in order are kept)",
                        distinct - self.max_rrset,
                        self.max_rrset
                    ),
                });
            }
        }
        (lines, conflicts)
    }
}

/// The reconciliation kept up to date as registrations come and go: each change costs time in
/// proportion to the names it touches, not to the number of hosts (with 100k hosts, rebuilding
/// every record for each publication was most of the presenter's CPU). The policy is the one
/// [`reconcile`] applies; a reconciler fed changes one at a time ends where one fed everything
/// at once does.
pub struct Reconciler {
    policy: Policy,
    /// Every registration, by node key.
    nodes: HashMap<Arc<str>, Robot>,
    /// The node keys registering each (normalised) name.
    by_name: HashMap<String, Vec<Arc<str>>>,
    /// The registration used for each name.
    used: HashMap<String, Robot>,
    /// The conflicts of settling each name.
    name_conflicts: HashMap<String, Vec<Conflict>>,
    /// The records wanted at each owner, with its zone.
    wanted: HashMap<String, (usize, Wanted)>,
    /// The lines published at each owner, and its conflicts.
    emitted: HashMap<String, (Vec<String>, Vec<Conflict>)>,
    /// The reconciled zones.
    bodies: Vec<ZoneBody>,
    /// The robot lines changed since [`Reconciler::mark`], per zone; `None` when a change other
    /// than robot lines (human zones) happened since, or nothing was marked.
    touched: Option<Vec<HashSet<String>>>,
    /// The version marked.
    base: Option<Arc<Zones>>,
}

impl Reconciler {
    /// A reconciler with no registrations.
    pub fn new(
        zones: &[ZoneConfig],
        rules: &[Rule],
        humans: BTreeMap<String, String>,
        max_rrset: usize,
        robot_names: &[String],
    ) -> Reconciler {
        let origins: Vec<String> = zones.iter().map(|z| norm(&z.origin)).collect();
        let bodies = zones
            .iter()
            .zip(&origins)
            .map(|(cfg, origin)| ZoneBody {
                soa: soa_of(cfg),
                human: humans.get(origin).cloned().unwrap_or_default(),
                apex: cfg
                    .ns
                    .iter()
                    .map(|ns| format!("{origin}. {} IN NS {}.", cfg.ttl, norm(ns)))
                    .collect(),
                robot_lines: BTreeSet::new(),
                origin: origin.clone(),
            })
            .collect();
        let policy = Policy {
            human_types: Policy::human_types(&origins, &humans),
            zones: zones.to_vec(),
            rules: rules
                .iter()
                .map(|r| (r.clone(), norm(&r.name), srv_name(r)))
                .collect(),
            origins,
            max_rrset,
            robot_names: robot_names.to_vec(),
            humans,
        };
        Reconciler {
            policy,
            nodes: HashMap::new(),
            by_name: HashMap::new(),
            used: HashMap::new(),
            name_conflicts: HashMap::new(),
            wanted: HashMap::new(),
            emitted: HashMap::new(),
            bodies,
            touched: None,
            base: None,
        }
    }

    /// The reconciled zones, in config order.
    pub fn bodies(&self) -> &[ZoneBody] {
        &self.bodies
    }

    /// Everything left out, sorted.
    pub fn conflicts(&self) -> Vec<Conflict> {
        let mut all: Vec<Conflict> = self
            .name_conflicts
            .values()
            .chain(self.emitted.values().map(|(_, c)| c))
            .flatten()
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Takes registrations that appeared, changed or went (`None`), by node key.
    pub fn update(&mut self, changed: impl IntoIterator<Item = (Arc<str>, Option<Robot>)>) {
        let mut names: HashSet<String> = HashSet::new();
        for (key, robot) in changed {
            if let Some(old) = self.nodes.remove(&key) {
                let name = norm(&old.reg.name);
                if let Some(keys) = self.by_name.get_mut(&name) {
                    keys.retain(|k| *k != key);
                    if keys.is_empty() {
                        self.by_name.remove(&name);
                    }
                }
                names.insert(name);
            }
            if let Some(robot) = robot {
                let name = norm_cow(&robot.reg.name).into_owned();
                self.by_name
                    .entry(name.clone())
                    .or_default()
                    .push(key.clone());
                self.nodes.insert(key, robot);
                names.insert(name);
            }
        }
        let mut owners: HashSet<String> = HashSet::new();
        let mut records = Vec::new();
        for name in names {
            let regs: Vec<&Robot> = self
                .by_name
                .get(&name)
                .map(|keys| keys.iter().map(|k| &self.nodes[k]).collect())
                .unwrap_or_default();
            let mut conflicts = Vec::new();
            let now = self.policy.settle(&name, regs, &mut conflicts).cloned();
            if conflicts.is_empty() {
                self.name_conflicts.remove(&name);
            } else {
                self.name_conflicts.insert(name.clone(), conflicts);
            }
            let before = match &now {
                Some(r) => self.used.insert(name, r.clone()),
                None => self.used.remove(&name),
            };
            let same = match (&before, &now) {
                (Some(a), Some(b)) => a.node == b.node && Arc::ptr_eq(&a.reg, &b.reg),
                (None, None) => true,
                _ => false,
            };
            if same {
                continue;
            }
            if let Some(before) = &before {
                records.clear();
                self.policy.records_of(before, &mut records);
                for (owner, rtype, rdata) in records.drain(..) {
                    if let Some((_, w)) = self.wanted.get_mut(&owner) {
                        w.remove(rtype, rdata);
                    }
                    owners.insert(owner);
                }
            }
            if let Some(now) = &now {
                self.policy.records_of(now, &mut records);
                for (owner, rtype, rdata) in records.drain(..) {
                    if !self.wanted.contains_key(&owner) {
                        let z = self.policy.zone_of(&owner).expect("records_of: in a zone");
                        self.wanted.insert(owner.clone(), (z, Wanted::default()));
                    }
                    self.wanted
                        .get_mut(&owner)
                        .expect("just made")
                        .1
                        .add(rtype, rdata);
                    owners.insert(owner);
                }
            }
        }
        for owner in owners {
            self.refresh_owner(&owner);
        }
    }

    /// Takes the human zones as last read; a change publishes every owner again.
    pub fn set_humans(&mut self, humans: &BTreeMap<String, String>) {
        if *humans == self.policy.humans {
            return;
        }
        self.policy.human_types = Policy::human_types(&self.policy.origins, humans);
        for (body, origin) in self.bodies.iter_mut().zip(&self.policy.origins) {
            body.human = humans.get(origin).cloned().unwrap_or_default();
        }
        self.policy.humans = humans.clone();
        self.touched = None;
        let owners: Vec<String> = self.wanted.keys().cloned().collect();
        for owner in owners {
            self.refresh_owner(&owner);
        }
    }

    /// Publishes again the lines at `owner` from the records wanted there.
    fn refresh_owner(&mut self, owner: &str) {
        let (lines, conflicts, z) = match self.wanted.get(owner) {
            Some((z, w)) if !w.records.is_empty() => {
                let (lines, conflicts) = self.policy.emit(*z, owner, w);
                (lines, conflicts, *z)
            }
            Some((z, _)) => {
                let z = *z;
                self.wanted.remove(owner);
                (Vec::new(), Vec::new(), z)
            }
            None => return,
        };
        let (old, _) = self.emitted.remove(owner).unwrap_or_default();
        let body = &mut self.bodies[z].robot_lines;
        let kept: HashSet<&str> = lines.iter().map(String::as_str).collect();
        for l in old.iter().filter(|l| !kept.contains(l.as_str())) {
            body.remove(l);
            if let Some(t) = &mut self.touched {
                t[z].insert(l.clone());
            }
        }
        let had: HashSet<&str> = old.iter().map(String::as_str).collect();
        for l in lines.iter().filter(|l| !had.contains(l.as_str())) {
            body.insert(l.clone());
            if let Some(t) = &mut self.touched {
                t[z].insert(l.clone());
            }
        }
        if !lines.is_empty() || !conflicts.is_empty() {
            self.emitted.insert(owner.to_owned(), (lines, conflicts));
        }
    }

    /// Remembers `published` as made from the zones as they are now: the next change from it
    /// is then found from the lines touched since, not by comparing every record.
    pub fn mark(&mut self, published: Arc<Zones>) {
        self.base = Some(published);
        self.touched = Some(vec![HashSet::new(); self.bodies.len()]);
    }

    /// The robot records changed from `last` to the reconciled zones, when `last` is the
    /// version marked and only robot records changed since; `None` otherwise (compare whole).
    fn robot_changes(&self, last: &Arc<Zones>) -> Option<Vec<ZoneChange>> {
        let base = self.base.as_ref().filter(|b| Arc::ptr_eq(b, last))?;
        let touched = self.touched.as_ref()?;
        let mut changes = Vec::new();
        for ((body, was), lines) in self.bodies.iter().zip(base.bodies()).zip(touched) {
            let mut sorted: Vec<&String> = lines.iter().collect();
            sorted.sort();
            let (mut removed, mut added) = (Vec::new(), Vec::new());
            for l in sorted {
                match (was.robot_lines.contains(l), body.robot_lines.contains(l)) {
                    (true, false) => removed.push(l.clone()),
                    (false, true) => added.push(l.clone()),
                    _ => {}
                }
            }
            if !removed.is_empty() || !added.is_empty() {
                changes.push(ZoneChange {
                    origin: body.origin.clone(),
                    soa: None,
                    apex: None,
                    human: None,
                    removed,
                    added,
                });
            }
        }
        Some(changes)
    }

    /// Whether the reconciled zones differ from `last`: from the lines touched when `last`
    /// is the version marked, else by comparing every record.
    pub fn differs_from(&self, last: &Arc<Zones>) -> bool {
        match self.robot_changes(last) {
            Some(changes) => !changes.is_empty(),
            None => !self.bodies.iter().eq(last.bodies()),
        }
    }

    /// The next version from `last` and the delta to it: in time proportional to the change
    /// when `last` is the version marked and only robot records changed since, else by comparing
    /// every record.
    pub fn next(&self, last: &Arc<Zones>, version: u64, created_at: String) -> (Zones, Delta) {
        if let Some(changes) = self.robot_changes(last) {
            let zones = self.bodies.iter().map(|b| b.origin.clone()).collect();
            let made = last
                .delta(version, created_at.clone(), zones, changes)
                .and_then(|delta| {
                    let mut next = (**last).clone();
                    next.apply(&delta).map(|()| (next, delta))
                });
            match made {
                Ok(made) => return made,
                // A bug, not an input: the comparison of every record below is still right.
                Err(e) => {
                    tracing::error!(error = %e, "the change reconciled does not fit the last version; comparing every record")
                }
            }
        }
        let next = Zones::new(version, created_at, self.bodies.clone());
        let delta = last.delta_to(&next);
        (next, delta)
    }
}

/// The SOA fields of a configured zone (the serial is the version).
pub fn soa_of(cfg: &ZoneConfig) -> Soa {
    Soa {
        ttl: cfg.ttl,
        primary: norm(&cfg.primary),
        hostmaster: norm(&cfg.hostmaster),
        negative_ttl: cfg.negative_ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geodns_register::Service;

    fn zone() -> ZoneConfig {
        ZoneConfig {
            origin: "internal.example".into(),
            primary: "ns1.internal.example".into(),
            hostmaster: "hostmaster.internal.example".into(),
            ns: vec!["ns1.internal.example".into()],
            ttl: 60,
            negative_ttl: 30,
        }
    }

    fn robot(node: &str, seq: u64, name: &str, addr: &str, live: bool) -> Robot {
        Robot {
            node: node.into(),
            seq,
            reg: Arc::new(Registration {
                name: name.into(),
                addresses: vec![addr.parse().unwrap()],
                services: vec![Service {
                    role: "web".into(),
                    cluster: "prn1".into(),
                    port: 8080,
                }],
            }),
            live,
            names: None,
        }
    }

    #[test]
    fn a_service_with_more_hosts_than_an_answer_holds_is_capped_and_reported() {
        let rules = [Rule {
            role: "web".into(),
            cluster: "prn1".into(),
            name: "web.prn1.internal.example".into(),
            srv: None,
        }];
        let n = MAX_ROBOT_RRSET + 88;
        let robots: Vec<Robot> = (0..n)
            .map(|i| {
                let name = format!("h{i}.prn1.internal.example");
                let addr = format!("10.1.{}.{}", i / 250, i % 250 + 1);
                robot(&format!("{name}-{i:010}"), i as u64, &name, &addr, true)
            })
            .collect();
        let r = reconcile(
            &[zone()],
            &rules,
            &robots,
            &BTreeMap::new(),
            MAX_ROBOT_RRSET,
            &[],
        );
        let count = |owner: &str, t: &str| {
            r.zones[0]
                .robot_lines
                .iter()
                .filter(|l| l.starts_with(owner) && l.contains(&format!(" IN {t} ")))
                .count()
        };
        assert_eq!(count("web.prn1.internal.example. ", "A"), MAX_ROBOT_RRSET);
        assert_eq!(
            count("_web._tcp.web.prn1.internal.example. ", "SRV"),
            MAX_ROBOT_RRSET
        );
        let too_large: Vec<&Conflict> = r
            .conflicts
            .iter()
            .filter(|c| c.kind == "rrset_too_large")
            .collect();
        assert_eq!(too_large.len(), 2, "{too_large:?}");
        assert!(too_large[0].detail.starts_with("88 robot"), "{too_large:?}");
        // Each host keeps its own name.
        assert_eq!(count("h599.prn1.internal.example. ", "A"), 1);
        // And the result compiles, as every server will.
        let text = r.zones[0].render(1);
        geodns_zone::Zone::from_text("internal.example", &text, "test").unwrap();
    }

    #[test]
    fn the_policy_as_rows() {
        let rules = [Rule {
            role: "web".into(),
            cluster: "prn1".into(),
            name: "web.prn1.internal.example".into(),
            srv: None,
        }];
        let robots = [
            robot(
                "h1.prn1.internal.example-0000000001",
                1,
                "h1.prn1.internal.example",
                "10.0.0.1",
                true,
            ),
            robot(
                "h1.prn1.internal.example-0000000003",
                3,
                "h1.prn1.internal.example",
                "10.0.0.9",
                true,
            ),
            robot(
                "h2.prn1.internal.example-0000000002",
                2,
                "h2.prn1.internal.example",
                "10.0.0.2",
                true,
            ),
            robot(
                "h3.elsewhere.test-0000000004",
                4,
                "h3.elsewhere.test",
                "10.0.0.3",
                true,
            ),
            robot(
                "alias.internal.example-0000000005",
                5,
                "alias.internal.example",
                "10.0.0.5",
                true,
            ),
        ];
        let humans: BTreeMap<String, String> = [(
            "internal.example".to_owned(),
            "h2.prn1 IN A 10.9.9.9\nalias IN CNAME h1.prn1\n".to_owned(),
        )]
        .into();
        let r = reconcile(&[zone()], &rules, &robots, &humans, MAX_ROBOT_RRSET, &[]);
        let kinds: Vec<(&str, &str)> = r
            .conflicts
            .iter()
            .map(|c| (c.kind, c.name.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("cname_beside_data", "alias.internal.example"),
                ("duplicate_registration", "h1.prn1.internal.example"),
                ("human_overrides", "h2.prn1.internal.example"),
                ("outside_zones", "h3.elsewhere.test"),
            ]
        );
        let lines = &r.zones[0].robot_lines;
        assert!(lines.contains(&"h1.prn1.internal.example. 60 IN A 10.0.0.1".to_owned()));
        assert!(!lines.iter().any(|l| l.contains("10.0.0.9")), "{lines:?}");
        assert!(lines.contains(&"web.prn1.internal.example. 60 IN A 10.0.0.2".to_owned()));
        assert!(lines.contains(
            &"_web._tcp.web.prn1.internal.example. 60 IN SRV 0 0 8080 h1.prn1.internal.example."
                .to_owned()
        ));
        // The rendered text compiles with the server's own loader.
        let text = r.zones[0].render(7);
        let z = geodns_zone::Zone::from_text("internal.example", &text, "test").unwrap();
        assert_eq!(z.serial, 7);
        let parsed = ZoneBody::parse("internal.example", &text).unwrap();
        assert_eq!(parsed.robot_lines, *lines);
        assert_eq!(parsed.apex, r.zones[0].apex);
        assert_eq!(parsed.human, humans["internal.example"]);
        // Same inputs, same output.
        assert_eq!(
            reconcile(&[zone()], &rules, &robots, &humans, MAX_ROBOT_RRSET, &[]),
            r
        );
    }

    #[test]
    fn a_vanished_registration_yields_to_a_live_one() {
        let robots = [
            robot(
                "h1.internal.example-0000000001",
                1,
                "h1.internal.example",
                "10.0.0.1",
                false,
            ),
            robot(
                "h1.internal.example-0000000007",
                7,
                "h1.internal.example",
                "10.0.0.7",
                true,
            ),
        ];
        let r = reconcile(
            &[zone()],
            &[],
            &robots,
            &BTreeMap::new(),
            MAX_ROBOT_RRSET,
            &[],
        );
        assert!(r.zones[0]
            .robot_lines
            .iter()
            .any(|l| l.ends_with("10.0.0.7")));
        assert!(!r.zones[0]
            .robot_lines
            .iter()
            .any(|l| l.ends_with("10.0.0.1")));
    }

    #[test]
    fn a_robot_never_takes_an_apex_or_a_service_name_and_stays_under_its_names() {
        let rules = vec![Rule {
            role: "web".into(),
            cluster: "prn1".into(),
            name: "web.prn1.internal.example".into(),
            srv: None,
        }];
        let robots = vec![
            robot("a-1", 1, "internal.example", "10.0.0.1", true),
            robot("b-2", 2, "web.prn1.internal.example", "10.0.0.2", true),
            robot("c-3", 3, "h1.prn1.internal.example", "10.0.0.3", true),
            robot("d-4", 4, "h1.ams1.internal.example", "10.0.0.4", true),
        ];
        let allowed = ["prn1.internal.example".to_owned()];
        let r = reconcile(
            &[zone()],
            &rules,
            &robots,
            &BTreeMap::new(),
            MAX_ROBOT_RRSET,
            &allowed,
        );
        let refused: Vec<&str> = r
            .conflicts
            .iter()
            .filter(|c| c.kind == "unauthorized_name")
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            refused,
            [
                "h1.ams1.internal.example",
                "internal.example",
                "web.prn1.internal.example"
            ]
        );
        let text = r.zones[0].render(1);
        assert!(text.contains("10.0.0.3"), "{text}");
        for gone in ["10.0.0.1", "10.0.0.2", "10.0.0.4"] {
            assert!(!text.contains(gone), "{gone} in\n{text}");
        }
    }

    #[test]
    fn an_identity_registers_only_its_names_and_cannot_squat_another_s() {
        // web1's identity may register under prn1 only; an older registration of h1.prn1 by
        // the ams identity is left out, so web1's later one is used.
        // A registration by an identity of its own (`<user>/<node>`), with its names.
        let by = |node: &str, seq: u64, name: &str, addr: &str, names: &[&str]| Robot {
            names: Some(names.iter().map(|n| (*n).to_owned()).collect()),
            ..robot(node, seq, name, addr, true)
        };
        let squat = by(
            "ams/h1.prn1.internal.example-1",
            1,
            "h1.prn1.internal.example",
            "6.6.6.6",
            &["ams1.internal.example"],
        );
        let own = by(
            "web1/h1.prn1.internal.example-7",
            7,
            "h1.prn1.internal.example",
            "10.0.0.1",
            &["prn1.internal.example"],
        );
        let nothing = by(
            "empty/h2.prn1.internal.example-2",
            2,
            "h2.prn1.internal.example",
            "10.0.0.2",
            &[],
        );
        let r = reconcile(
            &[zone()],
            &[],
            &[squat, own, nothing],
            &BTreeMap::new(),
            MAX_ROBOT_RRSET,
            &[],
        );
        let kinds: Vec<(&str, &str)> = r
            .conflicts
            .iter()
            .map(|c| (c.kind, c.name.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("unauthorized_name", "h1.prn1.internal.example"),
                ("unauthorized_name", "h2.prn1.internal.example"),
            ]
        );
        assert!(r.conflicts[0].detail.contains("ams/"), "{:?}", r.conflicts);
        let text = r.zones[0].render(1);
        assert!(text.contains("10.0.0.1"), "{text}");
        assert!(
            !text.contains("6.6.6.6") && !text.contains("10.0.0.2"),
            "{text}"
        );
    }

    /// A small deterministic generator (xorshift), so a failing seed can be replayed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn a_reconciler_fed_changes_ends_where_one_fed_everything_does() {
        // Two zones (one inside the other), two rules (one SRV name of its own), a cap small
        // enough to reach, human records that override and a CNAME, identities with names:
        // every rule of the policy is crossed by random arrivals, departures, vanishings and
        // duplicates.
        let zones = [
            zone(),
            ZoneConfig {
                origin: "prn1.internal.example".into(),
                ..zone()
            },
        ];
        let rules = [
            Rule {
                role: "web".into(),
                cluster: "prn1".into(),
                name: "web.prn1.internal.example".into(),
                srv: None,
            },
            Rule {
                role: "db".into(),
                cluster: "ams1".into(),
                name: "db.ams1.internal.example".into(),
                srv: Some("_db.internal.example".into()),
            },
        ];
        let humans_a: BTreeMap<String, String> = [(
            "internal.example".to_owned(),
            "h3.ams1 IN A 10.9.9.9\nh4.ams1 IN CNAME h1.ams1\n".to_owned(),
        )]
        .into();
        let humans_b: BTreeMap<String, String> = [(
            "prn1.internal.example".to_owned(),
            "web IN TXT \"pool\"\nh2 IN A 10.8.8.8\n".to_owned(),
        )]
        .into();
        let names = [
            "h1.prn1.internal.example",
            "h2.prn1.internal.example",
            "h3.prn1.internal.example",
            "h1.ams1.internal.example",
            "h3.ams1.internal.example",
            "h4.ams1.internal.example",
            "web.prn1.internal.example",
            "internal.example",
            "h1.elsewhere.test",
            "H5.Prn1.Internal.Example.",
        ];
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut humans = humans_a.clone();
            let mut live: BTreeMap<Arc<str>, Robot> = BTreeMap::new();
            let mut inc = Reconciler::new(&zones, &rules, humans.clone(), 3, &[]);
            let mut last = Arc::new(Zones::new(0, String::new(), inc.bodies().to_vec()));
            inc.mark(last.clone());
            let mut seq = 0;
            for step in 0..150u64 {
                let mut changed = Vec::new();
                for _ in 0..=rng.below(3) {
                    let roll = rng.below(10);
                    if roll < 5 || live.is_empty() {
                        let name = names[rng.below(names.len() as u64) as usize];
                        let addr = format!("10.0.{}.{}", rng.below(3), rng.below(6) + 1);
                        // Sequence numbers are unique, as creation zxids are.
                        seq += 1;
                        let mut r = robot(&format!("{name}-{seq}"), seq, name, &addr, true);
                        let reg = Arc::make_mut(&mut r.reg);
                        reg.services[0].role = ["web", "db"][rng.below(2) as usize].into();
                        reg.services[0].cluster = ["prn1", "ams1"][rng.below(2) as usize].into();
                        if rng.below(4) == 0 {
                            reg.addresses.push("fd00::1".parse().unwrap());
                        }
                        if rng.below(5) == 0 {
                            let node = format!("ops/{}", r.node);
                            r.node = node.into();
                            r.names = Some(Arc::from(vec!["prn1.internal.example".to_owned()]));
                        }
                        changed.push((r.node.clone(), Some(r.clone())));
                        live.insert(r.node.clone(), r);
                    } else {
                        let k = rng.below(live.len() as u64) as usize;
                        let key = live.keys().nth(k).unwrap().clone();
                        if roll < 8 {
                            live.remove(&key);
                            changed.push((key, None));
                        } else {
                            let r = live.get_mut(&key).unwrap();
                            r.live = !r.live;
                            changed.push((key, Some(r.clone())));
                        }
                    }
                }
                inc.update(changed);
                if rng.below(25) == 0 {
                    humans = if humans == humans_a {
                        humans_b.clone()
                    } else {
                        humans_a.clone()
                    };
                    inc.set_humans(&humans);
                }
                let all: Vec<Robot> = live.values().cloned().collect();
                let fresh = reconcile(&zones, &rules, &all, &humans, 3, &[]);
                assert_eq!(inc.bodies(), fresh.zones, "seed {seed} step {step}");
                assert_eq!(inc.conflicts(), fresh.conflicts, "seed {seed} step {step}");
                // The next version from the lines touched is the one every record compared
                // gives, delta included.
                let (next, delta) = inc.next(&last, step + 1, format!("t{step}"));
                let whole = Zones::new(step + 1, format!("t{step}"), fresh.zones.clone());
                assert_eq!(delta, last.delta_to(&whole), "seed {seed} step {step}");
                assert_eq!(next.state(), whole.state());
                assert!(next.bodies().eq(whole.bodies()));
                if rng.below(3) > 0 {
                    // Published (sometimes not: a held version keeps the base).
                    last = Arc::new(next);
                    inc.mark(last.clone());
                }
            }
        }
    }
}
