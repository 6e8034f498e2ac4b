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
    assert!(retried.contains("Truncated, retrying in TCP mode"), "{retried}");
    assert!(retried.contains("ANSWER: 40"), "{retried}");
    let tcp = s.kdig(&["+tcp", "big.example.com", "TXT"]);
    assert_eq!(tcp.matches("\tTXT\t").count(), 40, "{tcp}");
}

#[test]
fn pipelined_tcp_queries_are_answered_in_order() {
    let s = Server::start(&example_config("", ""));
    let mut stream = TcpStream::connect(s.dns).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let names = ["www.example.com.", "static.example.com.", "nope.example.com.", "mail.example.com."];
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
    let cfg = example_config("", "").replace("[listen]", "[tcp]\nmax_connections = 2\nidle_timeout_ms = 300\n\n[listen]");
    let s = Server::start(&cfg);
    let t0 = Instant::now();
    let mut idle = TcpStream::connect(s.dns).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(idle.read(&mut b).unwrap_or(0), 0, "server closed the idle connection");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(3), "closed after {waited:?}");

    // Two slow clients hold both slots; a third connection is closed at once, and once a slot
    // frees a new client is served.
    let a = TcpStream::connect(s.dns).unwrap();
    let b2 = TcpStream::connect(s.dns).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut third = TcpStream::connect(s.dns).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = third.write_all(&framed(&message("www.example.com.", RecordType::A, None)));
    assert!(tcp_exchange(&mut third).is_none(), "third connection must not be served");
    assert!(s.metric("geodns_tcp_refused_total") >= 1);
    drop((a, b2));
    std::thread::sleep(Duration::from_millis(100));
    let mut fresh = TcpStream::connect(s.dns).unwrap();
    fresh.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    fresh.write_all(&framed(&message("www.example.com.", RecordType::A, None))).unwrap();
    assert!(tcp_exchange(&mut fresh).is_some());
}
