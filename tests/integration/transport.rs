//! TCP and truncation: TC over UDP then the same answer over TCP, pipelining, idle timeout and
//! the connection cap.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::harness::{config_with_big_txt, example_config, message, Server};

fn tcp_exchange(stream: &mut TcpStream) -> Option<Message> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).ok()?;
    Some(Message::from_vec(&buf).unwrap())
}

fn framed(m: &Message) -> Vec<u8> {
    let b = m.to_vec().unwrap();
    let mut out = (b.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&b);
    out
}

#[test]
fn truncated_over_udp_then_complete_over_tcp() {
    let s = Server::start(&config_with_big_txt());
    let udp = s.dig(&["big.example.com", "TXT", "+noedns", "+ignore"]);
    assert!(udp.contains(";; flags: qr aa tc"), "{udp}");
    assert!(udp.contains("ANSWER: 0"), "{udp}");
    // dig retries over TCP on TC by default, and gets all 40 records.
    let retried = s.dig(&["big.example.com", "TXT", "+noedns"]);
    assert!(
        retried.contains("Truncated, retrying in TCP mode"),
        "{retried}"
    );
    assert!(retried.contains("ANSWER: 40"), "{retried}");
    let tcp = s.kdig(&["+tcp", "big.example.com", "TXT"]);
    assert_eq!(tcp.matches("\tTXT\t").count(), 40, "{tcp}");
}

#[test]
fn pipelined_tcp_queries_are_answered_in_order() {
    let s = Server::start(&example_config("", ""));
    let mut stream = TcpStream::connect(s.dns).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let names = [
        "www.example.com.",
        "static.example.com.",
        "nope.example.com.",
        "mail.example.com.",
    ];
    let mut batch = Vec::new();
    let mut ids = Vec::new();
    for (i, n) in names.iter().cycle().take(20).enumerate() {
        let mut m = message(n, RecordType::A, None);
        m.metadata.id = 1000 + i as u16;
        ids.push(m.metadata.id);
        batch.extend(framed(&m));
    }
    stream.write_all(&batch).unwrap();
    for id in ids {
        let r = tcp_exchange(&mut stream).expect("response");
        assert_eq!(r.metadata.id, id);
    }
}

#[test]
fn idle_tcp_connections_are_closed_and_connections_capped() {
    let cfg = example_config("", "").replace(
        "[listen]",
        "[tcp]\nmax_connections = 2\nidle_timeout_ms = 300\n\n[listen]",
    );
    let s = Server::start(&cfg);
    let t0 = Instant::now();
    let mut idle = TcpStream::connect(s.dns).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(
        idle.read(&mut b).unwrap_or(0),
        0,
        "server closed the idle connection"
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );

    // Two slow clients hold both slots; a third connection is closed at once, and once a slot
    // frees a new client is served.
    let a = TcpStream::connect(s.dns).unwrap();
    let b2 = TcpStream::connect(s.dns).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut third = TcpStream::connect(s.dns).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = third.write_all(&framed(&message("www.example.com.", RecordType::A, None)));
    assert!(
        tcp_exchange(&mut third).is_none(),
        "third connection must not be served"
    );
    assert!(s.metric("geodns_tcp_connections_refused_total") >= 1);
    drop((a, b2));
    std::thread::sleep(Duration::from_millis(100));
    let mut fresh = TcpStream::connect(s.dns).unwrap();
    fresh
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    fresh
        .write_all(&framed(&message("www.example.com.", RecordType::A, None)))
        .unwrap();
    assert!(tcp_exchange(&mut fresh).is_some());
}

#[test]
fn ipv6_listener_and_resolver_key_space() {
    let cfg = example_config("", "").replace(
        "dns = [\"127.0.0.1:0\"]",
        "dns = [\"127.0.0.1:0\", \"[::1]:0\"]",
    );
    let s = Server::start(&cfg);
    let log = s.log_text();
    let v6: std::net::SocketAddr = log
        .lines()
        .filter(|l| l.contains("listening udp"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("bound=")))
        .find(|a| a.starts_with('['))
        .expect("an IPv6 listener in the log")
        .parse()
        .unwrap();
    // From ::1 without ECS: the resolver key space has ::1/128 -> iad.
    let out = crate::harness::run_tool(
        "dig",
        &[
            "@::1".into(),
            "-p".into(),
            v6.port().to_string(),
            "www.example.com".into(),
            "AAAA".into(),
            "+short".into(),
        ],
    );
    assert_eq!(out.trim(), "2001:db8:b::20");
    let tcp = crate::harness::run_tool(
        "dig",
        &[
            "@::1".into(),
            "-p".into(),
            v6.port().to_string(),
            "+tcp".into(),
            "static.example.com".into(),
            "+short".into(),
        ],
    );
    assert_eq!(tcp.trim(), "192.0.2.100");
}

#[test]
fn query_log_only_when_asked() {
    let quiet = Server::start(&example_config("", ""));
    quiet.dig(&["www.example.com", "+short"]);
    assert!(
        !quiet.log_text().contains("query"),
        "no per-query log by default"
    );
    let loud = Server::start_logging(&example_config("", ""), "info,geodns::query=debug");
    loud.dig(&["www.example.com", "+short", "+subnet=10.20.30.0/24"]);
    loud.wait_log("qname=www.example.com.", 1);
    assert!(loud.log_text().contains("rcode=0"), "{}", loud.log_text());
}

#[test]
fn no_other_socket_can_join_a_lone_udp_socket_s_port() {
    // dig sets SO_REUSEPORT on its client sockets: had the server's lone socket set it too, a
    // dig whose source port drew the server's port joined it and got its own query back.
    let s = Server::start(&example_config("", ""));
    let join = |port: u16| {
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEPORT,1)\ntry:\n    s.bind(('127.0.0.1',{port}))\n    print('joined')\nexcept OSError as e:\n    print('refused', e.errno)"
        );
        crate::harness::run_tool("python3", &["-c".into(), script])
    };
    assert_eq!(join(s.dns.port()).trim(), "refused 98");
    // With several workers the sockets share the port, as they must.
    let cfg = example_config("", "").replace("[listen]", "[listen]\nudp_workers = 2");
    let two = Server::start(&cfg);
    assert_eq!(join(two.dns.port()).trim(), "joined");
}
