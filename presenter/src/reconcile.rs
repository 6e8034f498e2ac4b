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

/// Reconciles. `humans` maps a zone origin (normalised) to its published text; `max_rrset` caps
/// robot records per name and type; `robot_names`, when not empty, are the names (and the
/// names below them) robots may register.
pub fn reconcile(
    zones: &[ZoneConfig],
    rules: &[Rule],
    robots: &[Robot],
    humans: &BTreeMap<String, String>,
    max_rrset: usize,
    robot_names: &[String],
) -> Reconciled {
    let mut conflicts = Vec::new();
    let origins: Vec<String> = zones.iter().map(|z| norm(&z.origin)).collect();
    // The longest origin that holds a name.
    let zone_of = |name: &str| {
        origins
            .iter()
            .enumerate()
            .filter(|(_, o)| within(name, o))
            .max_by_key(|(_, o)| o.len())
            .map(|(i, _)| i)
    };

    // One registration per host name: live before vanished, then the oldest. (A hash map:
    // records and conflicts are sorted later, and with 100k hosts every change comes here.)
    let mut by_name: HashMap<Cow<str>, Vec<&Robot>> = HashMap::with_capacity(robots.len());
    for r in robots {
        by_name.entry(norm_cow(&r.reg.name)).or_default().push(r);
    }
    let mut hosts: Vec<&Robot> = Vec::new();
    for (name, mut regs) in by_name {
        let name = name.as_ref();
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
            continue;
        }
        regs.sort_by_key(|r| (!r.live, r.seq));
        for loser in &regs[1..] {
            conflicts.push(Conflict {
                kind: "duplicate_registration",
                name: name.to_owned(),
                detail: format!("{} left out; {} is used", loser.node, regs[0].node),
            });
        }
        if zone_of(name).is_none() {
            conflicts.push(Conflict {
                kind: "outside_zones",
                name: name.to_owned(),
                detail: format!("{} registers a name in no internal zone", regs[0].node),
            });
            continue;
        }
        // A host names itself, never a zone's apex or a rule's service name (registering
        // `web.prn1` would join the pool), and only under the names robots are given.
        let service = rules
            .iter()
            .any(|r| name == norm(&r.name) || name == srv_name(r));
        let why = if origins.iter().any(|o| o == name) {
            Some("a zone's apex".to_owned())
        } else if service {
            Some("a rule's service name".to_owned())
        } else if !robot_names.is_empty()
            && !robot_names
                .iter()
                .any(|allowed| within(name, &norm(allowed)))
        {
            Some(format!("not under robot_names {robot_names:?}"))
        } else {
            None
        };
        if let Some(why) = why {
            conflicts.push(Conflict {
                kind: "unauthorized_name",
                name: name.to_owned(),
                detail: format!("{} registers {why}; left out", regs[0].node),
            });
            continue;
        }
        hosts.push(regs[0]);
    }

    // Robot records: (zone index, owner, type, rdata).
    let mut records: BTreeSet<(usize, String, RecordType, String)> = BTreeSet::new();
    let mut add = |owner: &str, rtype: RecordType, rdata: String| {
        if let Some(z) = zone_of(owner) {
            records.insert((z, owner.to_owned(), rtype, rdata));
        }
    };
    let addr_record = |a: &std::net::IpAddr| match a {
        std::net::IpAddr::V4(v4) => (RecordType::A, v4.to_string()),
        std::net::IpAddr::V6(v6) => (RecordType::AAAA, v6.to_string()),
    };
    for h in &hosts {
        let name = norm(&h.reg.name);
        for a in &h.reg.addresses {
            let (t, rd) = addr_record(a);
            add(&name, t, rd);
        }
    }
    for rule in rules {
        let name = norm(&rule.name);
        let srv = srv_name(rule);
        for h in &hosts {
            for s in &h.reg.services {
                if s.role == rule.role && s.cluster == rule.cluster {
                    for a in &h.reg.addresses {
                        let (t, rd) = addr_record(a);
                        add(&name, t, rd);
                    }
                    add(
                        &srv,
                        RecordType::SRV,
                        format!("0 0 {} {}.", s.port, norm(&h.reg.name)),
                    );
                }
            }
        }
    }

    // Human records win.
    let mut human_types: Vec<HashMap<String, HashSet<RecordType>>> = Vec::new();
    for o in &origins {
        let owners = humans
            .get(o)
            .map(|t| human_owners(o, t).unwrap_or_default())
            .unwrap_or_default();
        human_types.push(owners);
    }
    let mut lines: Vec<Vec<String>> = vec![Vec::new(); zones.len()];
    // Robot records per RRset, and those left out past the cap.
    let mut counts: HashMap<(usize, &str, RecordType), usize> =
        HashMap::with_capacity(records.len());
    let mut over: BTreeMap<(String, RecordType), usize> = BTreeMap::new();
    for (z, owner, rtype, rdata) in &records {
        let (z, rtype) = (*z, *rtype);
        let n = counts.entry((z, owner.as_str(), rtype)).or_default();
        if *n >= max_rrset {
            *over.entry((owner.clone(), rtype)).or_default() += 1;
            continue;
        }
        *n += 1;
        if let Some(types) = human_types[z].get(owner) {
            if types.contains(&rtype) {
                conflicts.push(Conflict {
                    kind: "human_overrides",
                    name: owner.clone(),
                    detail: format!(
                        "robot {rtype} {rdata} left out; a human {rtype} record is used"
                    ),
                });
                continue;
            }
            if types.contains(&RecordType::CNAME) {
                conflicts.push(Conflict {
                    kind: "cname_beside_data",
                    name: owner.clone(),
                    detail: format!(
                        "robot {rtype} {rdata} left out; a human CNAME is at this name"
                    ),
                });
                continue;
            }
        }
        let ttl = zones[z].ttl;
        lines[z].push(format!("{owner}. {ttl} IN {rtype} {rdata}"));
    }
    for ((owner, rtype), n) in over {
        conflicts.push(Conflict {
            kind: "rrset_too_large",
            name: owner,
            detail: format!(
                "{n} robot {rtype} records left out: at most {max_rrset} per name and type (guard.max_rrset_records; the first in order are kept)"
            ),
        });
    }
    conflicts.sort();
    conflicts.dedup();
    let zones = zones
        .iter()
        .zip(origins)
        .zip(lines)
        .map(|((cfg, origin), robot_lines)| ZoneBody {
            soa: soa_of(cfg),
            human: humans.get(&origin).cloned().unwrap_or_default(),
            apex: cfg
                .ns
                .iter()
                .map(|ns| format!("{origin}. {} IN NS {}.", cfg.ttl, norm(ns)))
                .collect(),
            robot_lines: robot_lines.into_iter().collect(),
            origin,
        })
        .collect();
    Reconciled { zones, conflicts }
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
}
