//! Every rule of the query path as a row: (query, ECS, transport) -> (rcode, AA, TC, answer,
//! authority, additional, ECS scope), run through the responder on a loaded dataset in this
//! process, beside the black-box tests that drive the binary (tests/integration/conformance.rs).
//!
//! RFC 1034 4.3.2 (the algorithm: exact match, referral at a cut, CNAME chains, wildcards at the
//! closest encloser), RFC 2308 (negative answers carry the SOA), RFC 4592 (wildcards, empty
//! non-terminals), RFC 4035 3.1.4.1 (DS answered by the parent side of a cut), RFC 1035 /
//! RFC 6891 (TC when the UDP payload is exceeded), RFC 7871 (ECS scope).

use std::net::IpAddr;
use std::sync::Arc;

use geodns_server::dataset::Dataset;
use geodns_server::metrics::Metrics;
use geodns_server::responder::{respond, Transport};
use geodns_server::served::Served;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, Record, RecordType};

const ZONE: &[&str] = &[
    "@ 300 IN SOA ns1 hostmaster 7 3600 600 86400 300",
    "@ 300 IN NS ns1",
    "ns1 300 IN A 192.0.2.53",
    "a 300 IN A 192.0.2.1",
    "a 300 IN AAAA 2001:db8::1",
    // `ent` exists only as the parent of x.ent: an empty non-terminal.
    "x.ent 300 IN A 192.0.2.2",
    "*.wild 300 IN A 192.0.2.99",
    // sub.wild exists, so it is the closest encloser of y.sub.wild: no wildcard there.
    "sub.wild 300 IN TXT \"explicit\"",
    "c1 300 IN CNAME c2",
    "c2 300 IN CNAME a",
    "out 300 IN CNAME www.elsewhere.example.",
    "loop1 300 IN CNAME loop2",
    "loop2 300 IN CNAME loop1",
    "tow 300 IN CNAME q.wild",
    "togeo 300 IN CNAME www",
    // A delegation with in-zone glue and a DS, and one with out-of-zone servers and no DS.
    "child 300 IN NS ns.child",
    "ns.child 300 IN A 192.0.2.77",
    "child 300 IN DS 12345 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "nods 300 IN NS ns.elsewhere.example.",
];

/// One map row per family: 198.51.100.0/24 ranks ams, its upper /25 iad; 2001:db8:1::/48 sin;
/// everything else the default order (ams first).
const NETS: &str =
    "198.51.100.0/24,ams,iad,sin\n198.51.100.128/25,iad,ams,sin\n2001:db8:1::/48,sin,ams,iad\n";

fn snapshot() -> (tempfile::TempDir, Served) {
    let dir = tempfile::tempdir().unwrap();
    let nets = dir.path().join("nets.csv");
    std::fs::write(&nets, NETS).unwrap();
    let table = geomap::PopTable::from_ids(&["ams", "iad", "sin"]).unwrap();
    let map = geomap::nets::import_nets(
        &nets,
        Some(&table),
        &[geomap::KeySpace::Client, geomap::KeySpace::Resolver],
        "rules".into(),
        "2026-11-26T00:00:00Z".into(),
    )
    .unwrap();
    geomap::write_map(&dir.path().join("map.arrow"), &map).unwrap();
    let mut records: Vec<String> = ZONE.iter().map(|r| format!("{r:?}")).collect();
    // 40 TXT records of 100 bytes: too big for any UDP answer.
    records.extend((0..40).map(|i| format!("\"big 300 IN TXT \\\"{i:02}{}\\\"\"", "x".repeat(98))));
    let config = format!(
        "server_id = \"rules\"\nmap = \"map.arrow\"\ndefault_order = [\"ams\", \"iad\", \"sin\"]\n\
         [listen]\ndns = [\"127.0.0.1:0\"]\n\
         [pops.ams]\nvip4 = [\"192.0.2.10\"]\nvip6 = [\"2001:db8:a::10\"]\n\
         [pops.iad]\nvip4 = [\"192.0.2.20\"]\nvip6 = [\"2001:db8:b::20\"]\n\
         [pops.sin]\nvip4 = [\"192.0.2.30\"]\n\
         [[zones]]\norigin = \"rules.test\"\nrecords = [{}]\n[zones.geo]\nwww = {{ ttl = 60 }}\n",
        records.join(", ")
    );
    let path = dir.path().join("geodns.toml");
    std::fs::write(&path, config).unwrap();
    let data = Dataset::load(&path, &Metrics::default()).unwrap();
    (
        dir,
        Served::new(
            Arc::new(data),
            &Default::default(),
            None,
            Default::default(),
        ),
    )
}

/// What a row expects. Sections are `owner TYPE rdata` in order; `None` skips a check.
struct Row {
    q: &'static str,
    qtype: RecordType,
    ecs: Option<&'static str>,
    tcp: bool,
    rcode: ResponseCode,
    aa: bool,
    tc: bool,
    answer: &'static [&'static str],
    /// Types in the authority section, in order.
    authority: &'static [RecordType],
    additional: &'static [&'static str],
    scope: Option<u8>,
}

const fn row(q: &'static str, qtype: RecordType) -> Row {
    Row {
        q,
        qtype,
        ecs: None,
        tcp: false,
        rcode: ResponseCode::NoError,
        aa: true,
        tc: false,
        answer: &[],
        authority: &[],
        additional: &[],
        scope: None,
    }
}

use RecordType::{A, AAAA, CNAME, DS, MX, NS, SOA, TXT};

const NX: ResponseCode = ResponseCode::NXDomain;

fn rows() -> Vec<Row> {
    vec![
        // Exact match; the query name's case is kept.
        Row {
            answer: &["a.rules.test. A 192.0.2.1"],
            ..row("a.rules.test.", A)
        },
        Row {
            answer: &["A.Rules.Test. A 192.0.2.1"],
            ..row("A.Rules.Test.", A)
        },
        // NODATA and NXDOMAIN carry the SOA.
        Row {
            authority: &[SOA],
            ..row("a.rules.test.", MX)
        },
        Row {
            rcode: NX,
            authority: &[SOA],
            ..row("nope.rules.test.", A)
        },
        // An empty non-terminal exists: NODATA, not NXDOMAIN.
        Row {
            authority: &[SOA],
            ..row("ent.rules.test.", A)
        },
        Row {
            rcode: NX,
            authority: &[SOA],
            ..row("y.ent.rules.test.", A)
        },
        // Wildcards: synthesized under the query's name, NODATA for other types, not below an
        // existing closest encloser, not for the existing name itself.
        Row {
            answer: &["q.wild.rules.test. A 192.0.2.99"],
            ..row("q.wild.rules.test.", A)
        },
        Row {
            answer: &["deep.er.wild.rules.test. A 192.0.2.99"],
            ..row("deep.er.wild.rules.test.", A)
        },
        Row {
            authority: &[SOA],
            ..row("q.wild.rules.test.", MX)
        },
        Row {
            rcode: NX,
            authority: &[SOA],
            ..row("y.sub.wild.rules.test.", A)
        },
        Row {
            authority: &[SOA],
            ..row("sub.wild.rules.test.", A)
        },
        // CNAME chains: followed in zone, into a wildcard, into a geo name; left to the resolver
        // out of zone; a loop gives each record once; CNAME asked for itself.
        Row {
            answer: &[
                "c1.rules.test. CNAME c2.rules.test.",
                "c2.rules.test. CNAME a.rules.test.",
                "a.rules.test. A 192.0.2.1",
            ],
            ..row("c1.rules.test.", A)
        },
        Row {
            answer: &[
                "c1.rules.test. CNAME c2.rules.test.",
                "c2.rules.test. CNAME a.rules.test.",
            ],
            authority: &[SOA],
            ..row("c1.rules.test.", MX)
        },
        Row {
            answer: &["c1.rules.test. CNAME c2.rules.test."],
            ..row("c1.rules.test.", CNAME)
        },
        Row {
            answer: &[
                "tow.rules.test. CNAME q.wild.rules.test.",
                "q.wild.rules.test. A 192.0.2.99",
            ],
            ..row("tow.rules.test.", A)
        },
        Row {
            answer: &[
                "togeo.rules.test. CNAME www.rules.test.",
                "www.rules.test. A 192.0.2.20",
            ],
            ecs: Some("198.51.100.200/32"),
            scope: Some(25),
            ..row("togeo.rules.test.", A)
        },
        Row {
            answer: &["out.rules.test. CNAME www.elsewhere.example."],
            ..row("out.rules.test.", A)
        },
        Row {
            answer: &[
                "loop1.rules.test. CNAME loop2.rules.test.",
                "loop2.rules.test. CNAME loop1.rules.test.",
            ],
            ..row("loop1.rules.test.", A)
        },
        // Referrals: not authoritative, NS in authority, in-zone glue in additional; the same
        // for any name below the cut. DS at the cut is the parent's: answered, or NODATA.
        Row {
            aa: false,
            authority: &[NS],
            additional: &["ns.child.rules.test. A 192.0.2.77"],
            ..row("child.rules.test.", A)
        },
        Row {
            aa: false,
            authority: &[NS],
            additional: &["ns.child.rules.test. A 192.0.2.77"],
            ..row("deep.child.rules.test.", AAAA)
        },
        Row {
            answer: &["child.rules.test. DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"],
            ..row("child.rules.test.", DS)
        },
        Row {
            authority: &[SOA],
            ..row("nods.rules.test.", DS)
        },
        Row {
            aa: false,
            authority: &[NS],
            ..row("x.nods.rules.test.", A)
        },
        // Outside every zone: REFUSED, not authoritative.
        Row {
            rcode: ResponseCode::Refused,
            aa: false,
            ..row("example.org.", A)
        },
        // TC over UDP when the answer does not fit; whole over TCP.
        Row {
            tc: true,
            ..row("big.rules.test.", TXT)
        },
        // Geo answers and ECS scopes in both families; /0 and non-geo names get scope 0.
        Row {
            answer: &["www.rules.test. A 192.0.2.10"],
            ecs: Some("198.51.100.7/32"),
            scope: Some(25),
            ..row("www.rules.test.", A)
        },
        Row {
            answer: &["www.rules.test. A 192.0.2.20"],
            ecs: Some("198.51.100.128/25"),
            scope: Some(25),
            ..row("www.rules.test.", A)
        },
        Row {
            answer: &["www.rules.test. AAAA 2001:db8:a::10"],
            ecs: Some("2001:db8:2::/56"),
            ..row("www.rules.test.", AAAA)
        },
        Row {
            answer: &["www.rules.test. A 192.0.2.30"],
            ecs: Some("2001:db8:1:5::/64"),
            scope: Some(48),
            ..row("www.rules.test.", A)
        },
        Row {
            answer: &["www.rules.test. A 192.0.2.10"],
            ecs: Some("0.0.0.0/0"),
            scope: Some(0),
            ..row("www.rules.test.", A)
        },
        Row {
            answer: &["a.rules.test. A 192.0.2.1"],
            ecs: Some("198.51.100.7/32"),
            scope: Some(0),
            ..row("a.rules.test.", A)
        },
    ]
}

fn show(r: &Record) -> String {
    format!("{} {} {}", r.name, r.record_type(), r.data)
}

fn ask(snap: &Served, row: &Row) -> Message {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(row.q).unwrap(), row.qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some(ecs) = row.ecs {
        let net: ipnet::IpNet = ecs.parse().unwrap();
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(
                net.addr(),
                net.prefix_len(),
                0,
            )));
    }
    m.set_edns(edns);
    let packet = m.to_vec().unwrap();
    let mut out = Vec::new();
    let transport = if row.tcp {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    respond(snap, &packet, src, transport, &mut out);
    Message::from_vec(&out)
        .unwrap_or_else(|e| panic!("{} {}: unparsable answer: {e}", row.q, row.qtype))
}

fn scope(m: &Message) -> Option<u8> {
    m.edns.as_ref().and_then(
        |e| match e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet) {
            Some(EdnsOption::Subnet(s)) => Some(s.scope_prefix()),
            _ => None,
        },
    )
}

#[test]
fn every_rule_of_the_query_path() {
    let (_dir, snap) = snapshot();
    let mut failures = Vec::new();
    for row in rows() {
        let r = ask(&snap, &row);
        let what = format!(
            "{} {}{}",
            row.q,
            row.qtype,
            row.ecs.map(|e| format!(" ecs {e}")).unwrap_or_default()
        );
        let mut check = |ok: bool, msg: String| {
            if !ok {
                failures.push(format!("{what}: {msg}"));
            }
        };
        check(
            r.metadata.response_code == row.rcode,
            format!("rcode {:?}", r.metadata.response_code),
        );
        check(
            r.metadata.authoritative == row.aa,
            format!("AA {}", r.metadata.authoritative),
        );
        check(
            r.metadata.truncation == row.tc,
            format!("TC {}", r.metadata.truncation),
        );
        if !row.tc {
            let answer: Vec<String> = r.answers.iter().map(show).collect();
            check(answer == row.answer, format!("answer {answer:?}"));
            let auth: Vec<RecordType> = r.authorities.iter().map(|a| a.record_type()).collect();
            check(auth == row.authority, format!("authority {auth:?}"));
            let add: Vec<String> = r.additionals.iter().map(show).collect();
            check(add == row.additional, format!("additional {add:?}"));
        }
        if let Some(want) = row.scope {
            check(scope(&r) == Some(want), format!("scope {:?}", scope(&r)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rule(s) broken:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_truncated_answer_is_whole_over_tcp() {
    let (_dir, snap) = snapshot();
    let r = ask(
        &snap,
        &Row {
            tcp: true,
            ..row("big.rules.test.", TXT)
        },
    );
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 40);
}
