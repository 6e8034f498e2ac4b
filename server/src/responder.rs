//! The query path: one packet in, one response out, from a [`Served`].
//!
//! In order: parse (FORMERR on malformed input, BADVERS on EDNS version > 0) -> find the zone
//! (REFUSED if none) -> find the name (exact node, else wildcard, else NXDOMAIN) -> for a geo
//! name, look up the ECS subnet or the source address in the map, skip drained PoPs and answer
//! the first PoP's VIPs with the map entry's ECS scope -> frame the response (TC if too big).
//! Nothing here allocates on the common path; the caller owns and reuses the output buffer.

use std::net::IpAddr;

use geomap::{KeySpace, PopIndex};

use crate::dataset::Dataset;
use crate::metrics::QueryOutcome;
use crate::served::Served;
use crate::wire::{
    parse_query, rcode, rtype, Owner, Query, Reject, ResponseEdns, ResponseWriter, Section,
    MAX_UDP_PAYLOAD,
};
use geodns_zone::{parent, Node, Zone};

/// How the query arrived, which bounds the response size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: 512 bytes, or the EDNS payload (up to [`MAX_UDP_PAYLOAD`]).
    Udp,
    /// TCP: 65535 bytes.
    Tcp,
}

const MAX_CNAME_CHAIN: usize = 8;

/// The CHAOS class, where servers answer who they are.
const CLASS_CH: u16 = 3;

/// `id.server.` (RFC 4892) or `hostname.bind.`, lowercase wire form.
fn is_identity_name(name: &[u8]) -> bool {
    name == b"\x02id\x06server\x00" || name == b"\x08hostname\x04bind\x00"
}

/// Answers one packet into `out`. Returns what happened; `out` is empty when the packet is to
/// be dropped.
pub fn respond(
    snap: &Served,
    packet: &[u8],
    src: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> QueryOutcome {
    let mut outcome = QueryOutcome::default();
    let q = match parse_query(packet) {
        Ok(q) => q,
        Err(Reject::Drop) => {
            out.clear();
            return outcome;
        }
        Err(Reject::Error { id, flags, rcode }) => {
            ResponseWriter::error(out, id, flags, rcode);
            outcome.rcode = Some(rcode as u16);
            return outcome;
        }
    };
    outcome.qtype = Some(q.qtype);
    outcome.ecs = q.edns.is_some_and(|e| e.ecs.is_some());
    let max_len = match (transport, q.edns) {
        (Transport::Tcp, _) => 65535,
        (Transport::Udp, Some(e)) => e.payload.clamp(512, MAX_UDP_PAYLOAD) as usize,
        (Transport::Udp, None) => 512,
    };
    // DNS cookies (RFC 7873): a fresh server cookie for every client cookie; a returned one
    // that this server (or one sharing its secret) made proves the client's address.
    let cookie = q.edns.and_then(|e| e.cookie).map(|c| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let secrets = &snap.data.cookies;
        outcome.valid_cookie = secrets.valid(&c, src, now);
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&c.client);
        out[8..].copy_from_slice(&secrets.make(&c.client, src, now));
        out
    });
    let mut edns = q.edns.map(|e| ResponseEdns {
        dnssec_ok: e.dnssec_ok,
        ecs: e.ecs.map(|s| (s, 0)),
        cookie,
    });

    if let Some(e) = q.edns.filter(|e| e.version > 0) {
        let w = ResponseWriter::new(out, &q, false, 0);
        let ext = (rcode::BADVERS >> 4) as u8;
        w.finish(
            Some(ResponseEdns {
                dnssec_ok: e.dnssec_ok,
                ecs: None,
                cookie,
            }),
            None,
            ext,
            max_len,
        );
        outcome.rcode = Some(rcode::BADVERS);
        return outcome;
    }
    let data = &*snap.data;
    // The server's NSID (RFC 5001), when asked for and configured.
    let nsid =
        (data.config.nsid && q.edns.is_some_and(|e| e.nsid)).then(|| data.server_id.as_bytes());
    if q.qclass == CLASS_CH && data.config.chaos_id && is_identity_name(q.name()) {
        let mut w = ResponseWriter::new(out, &q, true, rcode::NOERROR);
        if matches!(q.qtype, rtype::TXT | rtype::ANY) {
            let id = &data.server_id.as_bytes()[..data.server_id.len().min(255)];
            let mut rdata = Vec::with_capacity(id.len() + 1);
            rdata.push(id.len() as u8);
            rdata.extend_from_slice(id);
            w.record_in(
                Section::Answer,
                Owner::Qname,
                rtype::TXT,
                CLASS_CH,
                0,
                &rdata,
            );
        }
        outcome.truncated = w.finish(edns, nsid, 0, max_len);
        outcome.rcode = Some(rcode::NOERROR as u16);
        return outcome;
    }
    let zone = if q.qclass == 1 {
        snap.zone_for(q.name())
    } else {
        None
    };
    let Some(zone) = zone.filter(|_| !matches!(q.qtype, rtype::AXFR | rtype::IXFR)) else {
        let w = ResponseWriter::new(out, &q, false, rcode::REFUSED);
        outcome.truncated = w.finish(edns, nsid, 0, max_len);
        outcome.rcode = Some(rcode::REFUSED as u16);
        return outcome;
    };

    let mut cx = Answer {
        snap,
        data,
        q: &q,
        src,
        w: ResponseWriter::new(out, &q, true, rcode::NOERROR),
        rc: rcode::NOERROR,
        outcome,
    };
    // NODATA after a CNAME chain: the answer has the CNAMEs, and still needs the SOA.
    let mut negative = false;
    let apex_offset = q.qname_len - zone.origin.len();
    let probe = zone
        .probe
        .as_ref()
        .and_then(|(apex, ttl)| Some((probe_labels(q.name(), apex)?, *ttl)));
    // A DS query at a cut is answered by the parent side (here), like any other name.
    let below_cut = || {
        zone.delegation(q.name())
            .filter(|c| !(c.len() == q.name().len() && q.qtype == rtype::DS))
    };
    if let Some((labels, ttl)) = probe {
        cx.probe(labels, ttl);
    } else if let Some(cut) = below_cut() {
        refer(zone, cut, &q, &mut cx.w);
        let mut outcome = cx.outcome;
        outcome.truncated = cx.w.finish(edns, nsid, 0, max_len);
        outcome.rcode = Some(rcode::NOERROR as u16);
        return outcome;
    } else if let Some(node) = find_node(zone, q.name()) {
        let (scope, end) = cx.node(zone, node);
        if let (Some(e), Some(scope)) = (edns.as_mut(), scope) {
            if let Some(ecs) = e.ecs.as_mut() {
                ecs.1 = scope;
            }
        }
        negative = end == ChainEnd::NoData;
    } else {
        cx.rc = rcode::NXDOMAIN;
    }
    let Answer {
        mut w,
        rc,
        mut outcome,
        ..
    } = cx;
    if rc != rcode::NOERROR || negative || w.answer_count() == 0 {
        // Negative answer (NXDOMAIN or NODATA): the SOA in authority, TTL per RFC 2308.
        w.record(
            Section::Authority,
            Owner::QnameSuffix(apex_offset),
            rtype::SOA,
            zone.negative_ttl,
            &zone.soa_rdata,
        );
    }
    w.set_rcode(rc);
    outcome.truncated = w.finish(edns, nsid, 0, max_len);
    outcome.rcode = Some(rc as u16);
    outcome
}

/// One query being answered: what every step reads (the snapshot, the parsed query, the
/// source address) and what they fill (the response, its rcode, the outcome for metrics),
/// passed as one, as gdnsd passes its per-query context.
struct Answer<'a, 'b> {
    snap: &'a Served,
    data: &'a Dataset,
    q: &'a Query<'a>,
    src: IpAddr,
    w: ResponseWriter<'b>,
    rc: u8,
    outcome: QueryOutcome,
}

/// A referral to the delegation at `cut` (a suffix of the query name): not authoritative, the
/// cut's NS records in authority, and the addresses of those name servers that the zone holds
/// (glue below the cut, and in-zone siblings) in additional (RFC 1034 4.3.2, RFC 9471).
fn refer(zone: &Zone, cut: &[u8], q: &Query<'_>, w: &mut ResponseWriter<'_>) {
    w.clear_aa();
    let Some(ns) = zone.nodes.get(cut).and_then(|n| n.rrset(rtype::NS)) else {
        return;
    };
    let owner = Owner::QnameSuffix(q.qname_len - cut.len());
    for target in &ns.rdata {
        w.record(Section::Authority, owner, rtype::NS, ns.ttl, target);
    }
    for target in &ns.rdata {
        let lower = target.to_ascii_lowercase();
        let Some(node) = zone
            .contains(&lower)
            .then(|| zone.nodes.get(lower.as_slice()))
            .flatten()
        else {
            continue;
        };
        for t in [rtype::A, rtype::AAAA] {
            if let Some(glue) = node.rrset(t) {
                for a in &glue.rdata {
                    w.record(Section::Additional, Owner::Name(target), t, glue.ttl, a);
                }
            }
        }
    }
}

/// Logs one query at debug level under the target `geodns::query`: off unless asked for
/// (`RUST_LOG=info,geodns::query=debug`), and then one line per query. The check is a cached
/// callsite test, so the query path pays nothing while it is off.
pub fn log_query(
    packet: &[u8],
    src: std::net::SocketAddr,
    transport: Transport,
    outcome: &QueryOutcome,
) {
    if !tracing::enabled!(target: "geodns::query", tracing::Level::DEBUG) {
        return;
    }
    let name = parse_query(packet)
        .map(|q| geodns_zone::text_name(q.name()))
        .unwrap_or_else(|_| "-".into());
    tracing::debug!(
        target: "geodns::query",
        %src,
        ?transport,
        qname = %name,
        qtype = outcome.qtype.unwrap_or(0),
        rcode = outcome.rcode.map_or(-1, i32::from),
        pop_slot = outcome.pop_slot.map_or(-1, |p| p as i64),
        fallback = outcome.fallback,
        "query"
    );
}

/// The labels of `qname` in front of the probe apex, if `qname` is strictly below it.
fn probe_labels<'a>(qname: &'a [u8], apex: &[u8]) -> Option<&'a [u8]> {
    if qname.len() <= apex.len() || !qname.ends_with(apex) {
        return None;
    }
    let start = qname.len() - apex.len();
    let mut at = 0;
    while at < start {
        at += 1 + qname[at] as usize;
    }
    (at == start).then(|| &qname[..start])
}

impl Answer<'_, '_> {
    /// Answers `<probe-id>[.<pop>].<probe apex>`: the PoP's probe addresses (the default order's
    /// first PoP when the name names none), and logs a `dns_probe` row without ever waiting for
    /// the writer. Invalid ids and unknown PoPs get NXDOMAIN and are counted, not logged.
    fn probe(&mut self, labels: &[u8], ttl: u32) {
        let Answer {
            snap, data, q, src, ..
        } = *self;
        let (w, rc, outcome) = (&mut self.w, &mut self.rc, &mut self.outcome);
        let id_len = labels[0] as usize;
        let id = &labels[1..1 + id_len];
        let rest = &labels[1 + id_len..];
        let pop_label = (!rest.is_empty()).then(|| &rest[1..1 + rest[0] as usize]);
        let extra_labels = rest.len() > pop_label.map_or(0, |p| p.len() + 1);
        let probe_id = geodns_beacon::ProbeId::new(id);
        let pop = match pop_label {
            Some(l) => data.pops.iter().position(|p| p.id.as_str().as_bytes() == l),
            None => data.default_order.first().map(|&p| p as usize),
        };
        let (Some(probe_id), Some(pop), false) = (probe_id, pop, extra_labels) else {
            *rc = rcode::NXDOMAIN;
            outcome.probe = Some(false);
            return;
        };
        outcome.probe = Some(true);
        let answer = &data.pops[pop];
        match q.qtype {
            rtype::A | rtype::ANY => {
                for a in &answer.probe_a {
                    w.record(Section::Answer, Owner::Qname, rtype::A, ttl, a);
                }
            }
            rtype::AAAA => {
                for a in &answer.probe_aaaa {
                    w.record(Section::Answer, Owner::Qname, rtype::AAAA, ttl, a);
                }
            }
            _ => {}
        }
        if let Some(log) = &snap.probe_log {
            let row = geodns_beacon::DnsProbeRow {
                ts: geodns_beacon::writer::now_micros(),
                probe_id,
                pop: pop_label.map(|_| answer.id_shared.clone()),
                resolver_ip: src.to_canonical(),
                ecs_subnet: q
                    .edns
                    .and_then(|e| e.ecs)
                    .map(|e| (e.addr, e.source_prefix)),
                qtype: q.qtype,
                server: data.server_id.clone(),
            };
            // A full queue drops the row (counted by the writer); the query never waits.
            let _ = log.try_log_one(row);
        }
    }
}

/// The node for `name`: exact, else the wildcard at its closest encloser (RFC 4592).
fn find_node<'z>(zone: &'z Zone, name: &[u8]) -> Option<&'z Node> {
    if let Some(n) = zone.nodes.get(name) {
        return Some(n);
    }
    let mut cur = name;
    let mut wild = [0u8; 255];
    while let Some(p) = parent(cur) {
        if p.len() < zone.origin.len() {
            break;
        }
        if zone.nodes.contains_key(p) {
            // p is the closest encloser; its wildcard child, if any, answers.
            if p.len() + 2 > 255 {
                return None;
            }
            wild[0] = 1;
            wild[1] = b'*';
            wild[2..2 + p.len()].copy_from_slice(p);
            return zone.nodes.get(&wild[..2 + p.len()]);
        }
        cur = p;
    }
    None
}

/// How an answer ended, which decides its authority section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChainEnd {
    /// Data of the type was answered, or the resolver follows a CNAME out of the zone.
    Answered,
    /// The last name in the zone has no data of the type: NODATA (SOA in authority).
    NoData,
}

impl Answer<'_, '_> {
    /// Fills the answer section for a node, following CNAMEs inside the zone (RFC 1034 4.3.2):
    /// a target is found as any query name is, exact or through a wildcard at its closest
    /// encloser (RFC 4592); its absence is NXDOMAIN (RFC 6604); a target outside the zone or below
    /// a delegation is left to the resolver; a name met twice (a loop) ends the chain with each
    /// CNAME given once. Returns the ECS scope when the answer depended on the client's address
    /// (geo names), `None` otherwise (scope 0), and how the chain ended.
    fn node<'z>(&mut self, zone: &'z Zone, mut node: &'z Node) -> (Option<u8>, ChainEnd) {
        let qtype = self.q.qtype;
        let mut owner: Owner<'z> = Owner::Qname;
        let mut visited: [*const Node; MAX_CNAME_CHAIN + 1] =
            [std::ptr::null(); MAX_CNAME_CHAIN + 1];
        for hop in 0..=MAX_CNAME_CHAIN {
            visited[hop] = node;
            if node.status && matches!(qtype, rtype::TXT | rtype::ANY) {
                self.w
                    .record(Section::Answer, owner, rtype::TXT, 0, &self.snap.status_txt);
                return (None, ChainEnd::Answered);
            }
            if let Some(ttl) = node.geo_ttl {
                let want = match qtype {
                    rtype::A | rtype::ANY => Some(false),
                    rtype::AAAA => Some(true),
                    _ => None,
                };
                if let Some(v6) = want {
                    let before = self.w.answer_count();
                    let scope = self.geo(v6, ttl, owner);
                    let end = if self.w.answer_count() > before {
                        ChainEnd::Answered
                    } else {
                        ChainEnd::NoData
                    };
                    return (Some(scope), end);
                }
            }
            if let Some(cname) = node.rrset(rtype::CNAME).filter(|_| qtype != rtype::CNAME) {
                self.w.record(
                    Section::Answer,
                    owner,
                    rtype::CNAME,
                    cname.ttl,
                    &cname.rdata[0],
                );
                let target: &[u8] = &cname.rdata[0];
                let mut lower = [0u8; 255];
                let n = target.len().min(255);
                for (d, s) in lower[..n].iter_mut().zip(target) {
                    *d = s.to_ascii_lowercase();
                }
                // Outside the zone, or delegated away: the resolver follows the CNAME itself.
                if !zone.contains(&lower[..n]) || zone.delegation(&lower[..n]).is_some() {
                    return (None, ChainEnd::Answered);
                }
                match find_node(zone, &lower[..n]) {
                    Some(next) if visited[..=hop].contains(&(next as *const Node)) => {
                        // A loop: every CNAME in it is in the answer once; stop.
                        return (None, ChainEnd::Answered);
                    }
                    Some(next) => {
                        node = next;
                        owner = Owner::Name(target);
                        continue;
                    }
                    None => {
                        self.rc = rcode::NXDOMAIN;
                        return (None, ChainEnd::Answered);
                    }
                }
            }
            let set = if qtype == rtype::ANY {
                // RFC 8482: answer ANY with one RRset rather than everything.
                node.rrsets.first()
            } else {
                node.rrset(qtype)
            };
            return match set {
                Some(set) => {
                    for rd in &set.rdata {
                        self.w
                            .record(Section::Answer, owner, set.rtype, set.ttl, rd);
                    }
                    (None, ChainEnd::Answered)
                }
                None => (None, ChainEnd::NoData),
            };
        }
        (None, ChainEnd::Answered)
    }

    /// Answers a geo name: the VIPs of the best healthy PoP for the client. Returns the ECS scope.
    fn geo(&mut self, v6: bool, ttl: u32, owner: Owner<'_>) -> u8 {
        let Answer {
            snap, data, q, src, ..
        } = *self;
        let (w, outcome) = (&mut self.w, &mut self.outcome);
        let (key, space) = match q.edns.and_then(|e| e.ecs) {
            Some(s) if s.source_prefix > 0 => (s.addr, KeySpace::Client),
            // ECS /0 means "do not use my address": decide on the resolver, and say scope 0.
            Some(_) => (src, KeySpace::Resolver),
            None => (src, KeySpace::Resolver),
        };
        let source_zero = matches!(q.edns.and_then(|e| e.ecs), Some(s) if s.source_prefix == 0);
        let hit = data.table.lookup(space, key);
        let geo_ranked;
        let (ranked, scope): (&[PopIndex], u8) = match hit.pops {
            Some(p) => (p, hit.scope),
            None => {
                outcome.fallback = true;
                match data.geoip.as_ref().map(|g| g.locate(key)) {
                    Some(Ok(loc)) => {
                        geo_ranked =
                            geomap::geoip::rank_by_distance(&data.pop_table, loc.lat, loc.lon);
                        (&geo_ranked[..], hit.scope.max(loc.prefix_len))
                    }
                    Some(Err(len)) => (&data.default_order[..], hit.scope.max(len)),
                    None => (&data.default_order[..], hit.scope),
                }
            }
        };
        // A PoP counts for a family if it has VIPs of it whose routes are in; when every
        // candidate is out, health is ignored and all its VIPs count (fail open).
        let has_family = |p: PopIndex, live: bool| {
            let (a, aaaa) = if live {
                snap.addresses(p as usize)
            } else {
                (
                    &data.pops[p as usize].a[..],
                    &data.pops[p as usize].aaaa[..],
                )
            };
            if v6 {
                !aaaa.is_empty()
            } else {
                !a.is_empty()
            }
        };
        let healthy = |p: &&PopIndex| !snap.down[**p as usize] && has_family(**p, true);
        // A list the spill plan divides: this client's share by its sub-block.
        let mut scope = scope;
        let spilled = hit
            .list
            .and_then(|id| snap.spill.lists.get(id as usize))
            .and_then(Option::as_deref)
            .map(|choices| crate::spill::pick(choices, key, scope))
            .filter(|(p, _)| healthy(&p));
        if let Some((_, s)) = spilled {
            scope = s;
        }
        let chosen = spilled
            .map(|(p, _)| p)
            .or_else(|| ranked.iter().find(healthy).copied())
            .or_else(|| data.default_order.iter().find(healthy).copied());
        let chosen = match chosen {
            Some(p) => Some(p),
            None => {
                // Every candidate is drained: answering something beats an empty answer, so ignore
                // health (the same fail-open rule gdnsd applies).
                outcome.all_down = true;
                ranked
                    .iter()
                    .chain(&data.default_order)
                    .copied()
                    .find(|&p| has_family(p, false))
            }
        };
        if let Some(p) = chosen {
            let pop = &data.pops[p as usize];
            outcome.pop_slot = Some(pop.metric_slot);
            // A healthy choice has live addresses of the family; only the fail-open choice
            // answers with all of the PoP's.
            let (a, aaaa) = if outcome.all_down {
                (&pop.a[..], &pop.aaaa[..])
            } else {
                snap.addresses(p as usize)
            };
            if v6 {
                for a in aaaa {
                    w.record(Section::Answer, owner, rtype::AAAA, ttl, a);
                }
            } else {
                for a in a {
                    w.record(Section::Answer, owner, rtype::A, ttl, a);
                }
            }
        }
        if source_zero {
            0
        } else {
            scope
        }
    }
}
