//! Answers from the example zone and map, checked with dig, kdig and hickory-built queries.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{addresses, data_dir, ecs_scope, example_config, geodns, message, Server};

/// (ECS subnet, expected A answer, expected scope). The map (data/example-nets.csv) has
/// 198.51.100.0/24 -> iad with 198.51.100.128/25 -> ams nested in it, 10/8 -> ams with
/// 10.20/16 -> iad and 10.20.30/24 -> sin nested, and no entry for 192.0.2.0/24.
const GEO_CASES: &[(&str, &[&str], u8)] = &[
    ("198.51.100.7/32", &["192.0.2.20"], 25),
    ("198.51.100.0/24", &["192.0.2.20"], 25),
    ("198.51.100.200/32", &["192.0.2.10"], 25),
    ("203.0.113.0/24", &["192.0.2.30", "192.0.2.31"], 24),
    ("10.1.0.0/16", &["192.0.2.10"], 12),
    ("10.20.30.0/24", &["192.0.2.30", "192.0.2.31"], 24),
    ("10.20.31.0/24", &["192.0.2.20"], 24),
    ("10.20.128.0/24", &["192.0.2.20"], 17),
    // Unmapped: default order (ams); the scope is the widest block around it with no entry,
    // merged with neighbours that also answer ams (192.0.0.0/6 here; never 0, never a fixed /24).
    ("192.0.2.0/24", &["192.0.2.10"], 6),
    ("2001:db8:1::/48", &["192.0.2.30", "192.0.2.31"], 48),
    // Inside 2001:db8::/32 (ams) beside the 2001:db8:1::/48 exception: 2001:db8:2::/47.
    ("2001:db8:2::/48", &["192.0.2.10"], 47),
    ("2001:db8:8000::/48", &["192.0.2.10"], 33),
];

#[test]
fn geo_answers_and_ecs_scope_per_subnet() {
    let s = Server::start(&example_config("", ""));
    for &(subnet, want, scope) in GEO_CASES {
        let r = s.query(&message("www.example.com.", RecordType::A, Some(subnet)));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{subnet}");
        assert!(r.metadata.authoritative, "{subnet}: AA");
        assert!(!r.metadata.recursion_available, "{subnet}: RA");
        assert_eq!(addresses(&r), want, "{subnet}: answer");
        assert_eq!(ecs_scope(&r), Some(scope), "{subnet}: scope");
        assert!(
            r.answers.iter().all(|a| a.ttl == 60),
            "{subnet}: geo TTL from config"
        );
    }
}

#[test]
fn dig_and_kdig_agree_on_ecs() {
    let s = Server::start(&example_config("", ""));
    let out = s.dig(&["www.example.com", "A", "+subnet=198.51.100.200/32"]);
    assert!(out.contains("CLIENT-SUBNET: 198.51.100.200/32/25"), "{out}");
    assert!(
        out.contains("www.example.com.\t60\tIN\tA\t192.0.2.10"),
        "{out}"
    );
    let out = s.kdig(&["www.example.com", "AAAA", "+subnet=203.0.113.9/32"]);
    assert!(out.contains("203.0.113.9/32/24"), "{out}");
    assert!(out.contains("2001:db8:c::30"), "{out}");
}

#[test]
fn without_ecs_the_resolver_address_decides() {
    let s = Server::start(&example_config("", ""));
    // 127.0.0.0/8 -> sin in the resolver key space; no ECS in the response.
    let r = s.query(&message("www.example.com.", RecordType::A, None));
    assert_eq!(addresses(&r), ["192.0.2.30", "192.0.2.31"]);
    assert!(r.edns.is_none());
    let out = s.dig(&["www.example.com", "AAAA", "+short"]);
    assert_eq!(out.trim(), "2001:db8:c::30");
    // ECS source /0: "don't use my address": resolver decides, scope 0.
    let r = s.query(&message(
        "www.example.com.",
        RecordType::A,
        Some("0.0.0.0/0"),
    ));
    assert_eq!(addresses(&r), ["192.0.2.30", "192.0.2.31"]);
    assert_eq!(ecs_scope(&r), Some(0));
}

#[test]
fn negative_answers_carry_the_soa() {
    let s = Server::start(&example_config("", ""));
    let nx = s.query(&message("nope.example.com.", RecordType::A, None));
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert!(nx.answers.is_empty());
    assert_eq!(nx.authorities.len(), 1);
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(
        nx.authorities[0].ttl, 300,
        "negative TTL = min(SOA TTL, MINIMUM)"
    );

    let nodata = s.query(&message("static.example.com.", RecordType::AAAA, None));
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);

    // An empty non-terminal (_udp.example.com exists only as a parent of _sip._udp) is NODATA.
    let ent = s.query(&message("_udp.example.com.", RecordType::A, None));
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);

    let refused = s.query(&message("www.example.org.", RecordType::A, None));
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(!refused.metadata.authoritative);
}

#[test]
fn static_records_wildcards_cnames_and_case() {
    let s = Server::start(&example_config("", ""));
    let short = |args: &[&str]| s.dig(&[args, &["+short"]].concat()).trim().to_owned();
    assert_eq!(short(&["example.com", "MX"]), "10 mail.example.com.");
    assert_eq!(
        short(&["_sip._udp.example.com", "SRV"]),
        "10 60 5060 sip.example.com."
    );
    assert_eq!(
        short(&["example.com", "CAA"]),
        "0 issue \"letsencrypt.org\""
    );
    assert_eq!(short(&["txt.example.com", "TXT"]), "\"inline record\"");
    assert_eq!(short(&["a.b.wild.example.com", "A"]), "192.0.2.99");
    assert_eq!(short(&["x.wild.example.com", "TXT"]), "\"wildcard\"");
    assert_eq!(
        short(&["alias.example.com", "A"]),
        "static.example.com.\n192.0.2.100"
    );
    // A CNAME to a geo name is chased, and the geo answer's ECS scope is returned.
    let out = s.dig(&["app.example.com", "A", "+subnet=10.20.30.0/24"]);
    assert!(out.contains("CLIENT-SUBNET: 10.20.30.0/24/24"), "{out}");
    assert!(
        out.contains("www.example.com.\t60\tIN\tA\t192.0.2.30"),
        "{out}"
    );
    // The question's case is preserved in the answer.
    let out = s.dig(&[
        "WwW.ExAmPlE.cOm",
        "A",
        "+noall",
        "+answer",
        "+subnet=203.0.113.0/24",
    ]);
    assert!(out.starts_with("WwW.ExAmPlE.cOm."), "{out}");
    // ANY is answered minimally (RFC 8482): one RRset, not the whole node.
    let any = s.query(&message("example.com.", RecordType::ANY, None));
    let types: std::collections::BTreeSet<_> =
        any.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types.len(), 1, "{types:?}");
}

#[test]
fn status_txt_reports_map_and_config() {
    let s = Server::start(&example_config("", ""));
    let out = s.dig(&["_status.example.com", "TXT", "+short"]);
    assert!(out.contains("\"map-generation=example-1\""), "{out}");
    assert!(
        out.contains("\"map-created=2026-11-26T00:00:00Z\""),
        "{out}"
    );
    assert!(out.contains("\"server=example\""), "{out}");
    assert!(out.contains("\"serial:example.com=2026112601\""), "{out}");
    assert!(out.contains("\"config="), "{out}");
}

/// Whether dig's header line says AA (the flags line only: a cookie's hex may hold "aa").
fn aa(dig: &str) -> bool {
    dig.lines()
        .find(|l| l.starts_with(";; flags:"))
        .is_some_and(|l| {
            l.split(';')
                .nth(2)
                .is_some_and(|f| f.split_whitespace().any(|w| w == "aa"))
        })
}

#[test]
fn delegations_get_referrals_with_glue() {
    let records = r#"records = ["txt 300 IN TXT \"inline record\"", "sub 3600 IN NS ns1.sub.example.com.", "sub 3600 IN NS ns.example.net.", "ns1.sub 3600 IN A 192.0.2.201", "ns1.sub 3600 IN AAAA 2001:db8::201", "tosub 3600 IN CNAME ns1.sub.example.com."]"#;
    let cfg = example_config("", "")
        .replace(r#"records = ["txt 300 IN TXT \"inline record\""]"#, records);
    assert!(
        cfg.contains("ns1.sub"),
        "the example config's records line changed"
    );
    let s = Server::start(&cfg);
    // Below the cut: not authoritative, the cut's NS in authority, glue in additional.
    for (name, qtype) in [
        ("www.sub.example.com", "A"),
        ("sub.example.com", "NS"),
        ("a.b.sub.example.com", "TXT"),
    ] {
        let out = s.dig(&[name, qtype, "+norec"]);
        assert!(
            out.contains("status: NOERROR")
                && !aa(&out)
                && out.contains("ANSWER: 0, AUTHORITY: 2, ADDITIONAL: 3"),
            "{name} {qtype}: {out}"
        );
        assert!(
            out.contains("sub.example.com.\t3600\tIN\tNS\tns1.sub.example.com."),
            "{out}"
        );
        assert!(
            out.contains("sub.example.com.\t3600\tIN\tNS\tns.example.net."),
            "{out}"
        );
        assert!(
            out.contains("ns1.sub.example.com.\t3600\tIN\tA\t192.0.2.201"),
            "{out}"
        );
        assert!(
            out.contains("ns1.sub.example.com.\t3600\tIN\tAAAA\t2001:db8::201"),
            "{out}"
        );
    }
    // DS at the cut belongs to the parent: an authoritative NODATA with the SOA.
    let out = s.dig(&["sub.example.com", "DS", "+norec"]);
    assert!(
        out.contains("status: NOERROR") && aa(&out) && out.contains("ANSWER: 0, AUTHORITY: 1"),
        "{out}"
    );
    // A CNAME into the delegated part is not chased: its target's data there is only glue.
    let out = s.dig(&["tosub.example.com", "A", "+norec"]);
    assert!(
        aa(&out) && out.contains("ANSWER: 1,") && out.contains("CNAME\tns1.sub.example.com."),
        "{out}"
    );
    // Names beside the cut are still ours.
    assert_eq!(
        s.dig(&["static.example.com", "A", "+short"]).trim(),
        "192.0.2.100"
    );
    // kdig reads the same referral.
    let out = s.kdig(&["www.sub.example.com", "A", "+norec"]);
    assert!(
        out.contains("NOERROR") && out.contains("AUTHORITY: 2"),
        "{out}"
    );

    // A geo name below a delegation would never be answered: refused at load.
    let bad = cfg.replace(
        "www = { ttl = 60 }",
        "www = { ttl = 60 }\n\"x.sub\" = { ttl = 60 }",
    );
    let dir = tempfile::tempdir().unwrap();
    for f in ["example.com.zone", "example-map.arrow"] {
        std::fs::copy(data_dir().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("bad.toml"), bad).unwrap();
    let o = geodns()
        .arg("check")
        .arg("--config")
        .arg(dir.path().join("bad.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("x.sub.example.com. is at or below the delegation sub.example.com."),
        "{err}"
    );
}
