//! Rules of the query path as rows: (query, ECS, expected rcode, answer records, whether the
//! SOA is in authority), against the real server with extra records in the example zone.
//! RFC 1034 4.3.2 (CNAME chains), RFC 2308 (NODATA carries the SOA), RFC 4592 (wildcards),
//! RFC 7871 (ECS scope in the option's own family).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{ecs_scope, example_config, geodns, message, Server};

const RECORDS: &[&str] = &[
    "alias 300 IN CNAME foo.wild",
    "*.wild 300 IN A 192.0.2.99",
    "c1 300 IN CNAME c2",
    "c2 300 IN CNAME target",
    "target 300 IN A 192.0.2.98",
    "loop1 300 IN CNAME loop2",
    "loop2 300 IN CNAME loop1",
    "self 300 IN CNAME self",
    "gone 300 IN CNAME nothing-here",
];

struct Row {
    name: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    /// The answer section as `owner type rdata`, in order.
    answer: &'static [&'static str],
    soa: bool,
}

const ROWS: &[Row] = &[
    // A CNAME whose target exists only through a wildcard: the target is synthesized.
    Row {
        name: "alias.example.com.",
        qtype: RecordType::A,
        rcode: ResponseCode::NoError,
        answer: &[
            "alias.example.com. CNAME foo.wild.example.com.",
            "foo.wild.example.com. A 192.0.2.99",
        ],
        soa: false,
    },
    // NODATA at the end of a chain: the CNAMEs, and the SOA so resolvers can cache it.
    Row {
        name: "c1.example.com.",
        qtype: RecordType::TXT,
        rcode: ResponseCode::NoError,
        answer: &[
            "c1.example.com. CNAME c2.example.com.",
            "c2.example.com. CNAME target.example.com.",
        ],
        soa: true,
    },
    Row {
        name: "c1.example.com.",
        qtype: RecordType::A,
        rcode: ResponseCode::NoError,
        answer: &[
            "c1.example.com. CNAME c2.example.com.",
            "c2.example.com. CNAME target.example.com.",
            "target.example.com. A 192.0.2.98",
        ],
        soa: false,
    },
    // A loop: each CNAME once, then stop.
    Row {
        name: "loop1.example.com.",
        qtype: RecordType::A,
        rcode: ResponseCode::NoError,
        answer: &[
            "loop1.example.com. CNAME loop2.example.com.",
            "loop2.example.com. CNAME loop1.example.com.",
        ],
        soa: false,
    },
    Row {
        name: "self.example.com.",
        qtype: RecordType::A,
        rcode: ResponseCode::NoError,
        answer: &["self.example.com. CNAME self.example.com."],
        soa: false,
    },
    // A chain into a name that does not exist: NXDOMAIN with the CNAME and the SOA (RFC 6604).
    Row {
        name: "gone.example.com.",
        qtype: RecordType::A,
        rcode: ResponseCode::NXDomain,
        answer: &["gone.example.com. CNAME nothing-here.example.com."],
        soa: true,
    },
    // The wildcard itself, and NODATA through it.
    Row {
        name: "x.wild.example.com.",
        qtype: RecordType::A,
        rcode: ResponseCode::NoError,
        answer: &["x.wild.example.com. A 192.0.2.99"],
        soa: false,
    },
    Row {
        name: "x.wild.example.com.",
        qtype: RecordType::MX,
        rcode: ResponseCode::NoError,
        answer: &[],
        soa: true,
    },
];

fn show(r: &hickory_proto::rr::Record) -> String {
    format!("{} {} {}", r.name, r.record_type(), r.data)
}

#[test]
fn query_path_rules_as_rows() {
    let records: Vec<String> = RECORDS.iter().map(|r| format!("{r:?}")).collect();
    let cfg = example_config("", "").replace(
        "records = [\"txt 300 IN TXT \\\"inline record\\\"\"]",
        &format!(
            "records = [\"txt 300 IN TXT \\\"inline record\\\"\", {}]",
            records.join(", ")
        ),
    );
    assert!(
        cfg.contains("loop1"),
        "the example config's records line moved:\n{cfg}"
    );
    let s = Server::start(&cfg);
    for row in ROWS {
        let r = s.query(&message(row.name, row.qtype, None));
        let what = format!("{} {}", row.name, row.qtype);
        assert_eq!(r.metadata.response_code, row.rcode, "{what}");
        assert!(r.metadata.authoritative, "{what}: AA");
        assert_eq!(
            r.answers.iter().map(show).collect::<Vec<_>>(),
            row.answer,
            "{what}: answer"
        );
        let soa = r
            .authorities
            .iter()
            .any(|a| a.record_type() == RecordType::SOA);
        assert_eq!(
            soa, row.soa,
            "{what}: SOA in authority: {:?}",
            r.authorities
        );
    }
}

#[test]
fn ecs_with_an_ipv4_mapped_address_has_a_scope_in_its_own_family() {
    let s = Server::start(&example_config("", ""));
    // 198.51.100.0/25 is iad (scope /25 for IPv4): mapped, the scope is 96 + 25 = 121, and
    // every address inside that /121 gets the same answer.
    for ecs in [
        "::ffff:198.51.100.7/128",
        "::ffff:198.51.100.100/128",
        "::ffff:198.51.100.0/121",
    ] {
        let r = s.query(&message("www.example.com.", RecordType::A, Some(ecs)));
        assert_eq!(crate::harness::addresses(&r), ["192.0.2.20"], "{ecs}");
        assert_eq!(ecs_scope(&r), Some(121), "{ecs}");
    }
    // 198.51.100.128/25 is ams: outside the /121 above.
    let r = s.query(&message(
        "www.example.com.",
        RecordType::A,
        Some("::ffff:198.51.100.200/128"),
    ));
    assert_eq!(crate::harness::addresses(&r), ["192.0.2.10"]);
    // Unmapped IPv4 space through a mapped address: the default order, scope still >= 96.
    let r = s.query(&message(
        "www.example.com.",
        RecordType::A,
        Some("::ffff:192.0.2.1/128"),
    ));
    assert!(ecs_scope(&r).unwrap() >= 96, "{:?}", ecs_scope(&r));
}

#[test]
fn a_zone_configured_twice_is_refused_whatever_lies_between() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["example-map.arrow", "example.com.zone"] {
        std::fs::copy(crate::harness::data_dir().join(f), dir.path().join(f)).unwrap();
    }
    // example.com, then example.net (a zone of the same length), then example.com again.
    let other = "[[zones]]\norigin = \"example.net\"\nrecords = [\"@ 300 IN SOA ns1 hostmaster 1 3600 600 86400 300\", \"@ 300 IN NS ns1\", \"ns1 300 IN A 192.0.2.1\"]\n";
    let again = "[[zones]]\norigin = \"example.com\"\nfile = \"example.com.zone\"\n";
    // (Listed before the example's own zone: the toml crate refuses `[[zones]]` after a
    // `[zones.probe]` sub-table with "duplicate key".)
    let cfg =
        example_config("", "").replacen("[[zones]]", &format!("{again}\n{other}\n[[zones]]"), 1);
    let path = dir.path().join("geodns.toml");
    std::fs::write(&path, &cfg).unwrap();
    let o = geodns().args(["check", "-c"]).arg(&path).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !o.status.success() && text.contains("zone 'example.com.' is configured twice"),
        "{text}\n{cfg}"
    );
    // Without the second example.com, the same config passes: the refusal is about the repeat.
    std::fs::write(&path, cfg.replacen(again, "", 1)).unwrap();
    let o = geodns().args(["check", "-c"]).arg(&path).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
