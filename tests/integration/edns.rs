//! EDNS(0) (RFC 6891) and ECS (RFC 7871) edge cases, and malformed packets.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{config_with_big_txt, example_config, message, Server};

#[test]
fn edns_version_1_gets_badvers() {
    let s = Server::start(&example_config("", ""));
    let out = s.dig(&["www.example.com", "+edns=1", "+noednsneg"]);
    assert!(out.contains("status: BADVERS"), "{out}");
    assert!(out.contains("EDNS: version: 0"), "{out}");
}

#[test]
fn unknown_edns_options_are_ignored() {
    let s = Server::start(&example_config("", ""));
    let out = s.dig(&[
        "www.example.com",
        "+ednsopt=65001:c0ffee",
        "+subnet=203.0.113.0/24",
    ]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("192.0.2.30"), "{out}");
}

#[test]
fn advertised_payload_is_honoured() {
    let s = Server::start(&config_with_big_txt());
    // 40 TXT records of ~100 bytes: ~4.4 KB, more than any UDP limit here.
    let out = s.dig(&["big.example.com", "TXT", "+bufsize=4096", "+ignore"]);
    assert!(
        out.contains(" tc"),
        "truncated even with a 4096 buffer (capped at 1232): {out}"
    );
    assert!(out.contains("udp: 1232"), "{out}");
}

fn raw_query_with_option(opt: &[u8]) -> Vec<u8> {
    let mut m = message("www.example.com.", RecordType::A, None)
        .to_vec()
        .unwrap();
    m[11] = 1; // ARCOUNT
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    m.extend_from_slice(&(opt.len() as u16).to_be_bytes());
    m.extend_from_slice(opt);
    m
}

fn rcode(resp: &[u8]) -> u8 {
    resp[3] & 0x0f
}

#[test]
fn malformed_ecs_is_formerr() {
    let s = Server::start(&example_config("", ""));
    let cases: &[(&str, &[u8])] = &[
        (
            "address bits beyond the source prefix",
            &[0, 8, 0, 7, 0, 1, 20, 0, 198, 51, 101],
        ),
        (
            "too few address octets",
            &[0, 8, 0, 6, 0, 1, 24, 0, 198, 51],
        ),
        (
            "source prefix longer than IPv4",
            &[0, 8, 0, 9, 0, 1, 33, 0, 1, 2, 3, 4, 5],
        ),
        ("unknown family", &[0, 8, 0, 4, 0, 9, 0, 0]),
        ("option longer than the record", &[0, 8, 0, 40, 0, 1]),
    ];
    for (what, opt) in cases {
        let resp = s
            .udp_raw(&raw_query_with_option(opt))
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(rcode(&resp), 1, "{what}: want FORMERR");
    }
    // The well-formed version of the first case is answered.
    let ok = s
        .udp_raw(&raw_query_with_option(&[
            0, 8, 0, 7, 0, 1, 20, 0, 198, 51, 96,
        ]))
        .unwrap();
    assert_eq!(rcode(&ok), 0);
}

#[test]
fn malformed_packets_never_crash_or_hang() {
    let s = Server::start(&example_config("", ""));
    let good = message("www.example.com.", RecordType::A, None)
        .to_vec()
        .unwrap();
    // Short garbage and responses are dropped (no answer); parseable headers with broken bodies
    // get FORMERR.
    assert_eq!(s.udp_raw(&[1, 2, 3]), None);
    let mut response = good.clone();
    response[2] |= 0x80;
    assert_eq!(s.udp_raw(&response), None);
    for cut in [13, 16, good.len() - 1] {
        let resp = s.udp_raw(&good[..cut]).expect("truncated query answered");
        assert_eq!(rcode(&resp), 1, "cut at {cut}");
        assert_eq!(&resp[..2], &good[..2], "id echoed");
    }
    let mut pointer_loop = good.clone();
    pointer_loop[12] = 0xc0;
    pointer_loop[13] = 12;
    assert_eq!(rcode(&s.udp_raw(&pointer_loop).unwrap()), 1);
    // A deterministic stream of random packets, then the server still answers correctly. They
    // go from one socket, kept open to the end: from sockets dropped at once, a late answer
    // could reach the final query's socket if it got one of their ports again.
    let flood = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..2000 {
        let len = (i % 300) + 1;
        let mut p = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            p.push(x as u8);
        }
        if i % 2 == 0 && p.len() > 12 {
            p[2] &= 0x7f; // mostly "queries", so they reach the parser
        }
        flood.send_to(&p, s.dns).unwrap();
    }
    let r = s.query(&message(
        "www.example.com.",
        RecordType::A,
        Some("203.0.113.0/24"),
    ));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(s.metric("geodns_responses_total{rcode=\"FORMERR\"}") > 0);
    drop(flood);
}

#[test]
fn nsid_and_the_chaos_identity_names_are_off_by_default_and_say_the_server_id() {
    let off = Server::start(&example_config("", ""));
    assert!(!off.dig(&["www.example.com", "+nsid"]).contains("NSID"));
    assert!(off.dig(&["id.server", "CH", "TXT"]).contains("REFUSED"));

    let on = Server::start(&example_config("nsid = true\nchaos_id = true", ""));
    let out = on.dig(&["www.example.com", "+nsid", "+subnet=198.51.100.7/32"]);
    assert!(
        out.contains("NSID") && out.contains("(\"example\")"),
        "{out}"
    );
    assert!(
        out.contains("CLIENT-SUBNET: 198.51.100.7/32/25"),
        "ECS kept beside NSID: {out}"
    );
    for name in ["id.server", "hostname.bind", "ID.SERVER"] {
        let txt = on.dig(&[name, "CH", "TXT", "+short"]);
        assert_eq!(txt.trim(), "\"example\"", "{name}");
    }
    assert!(on.dig(&["version.bind", "CH", "TXT"]).contains("REFUSED"));
    assert!(on.dig(&["www.example.com", "CH", "A"]).contains("REFUSED"));
}
