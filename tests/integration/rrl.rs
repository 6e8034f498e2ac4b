//! Not an amplifier: response rate limiting over UDP. A flood from one source gets the
//! configured rate of answers, every `slip`-th of the rest truncated and the rest dropped;
//! another source sees no loss meanwhile, and TCP is never limited.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::{example_config, message, Server};

/// What came back to one socket: (full answers, truncated, nothing), for `n` queries sent as
/// fast as the socket takes them, and the seconds the sending spanned.
fn flood(s: &Server, from: &str, n: usize) -> (usize, usize, usize, u64) {
    let sock = UdpSocket::bind(format!("{from}:0")).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut q = message("www.example.com", RecordType::A, None)
        .to_vec()
        .unwrap();
    let (mut full, mut tc) = (0, 0);
    let mut buf = [0u8; 4096];
    let mut receive = |full: &mut usize, tc: &mut usize| {
        while let Ok(len) = sock.recv(&mut buf) {
            let r = &buf[..len];
            if r[2] & 0x02 != 0 {
                *tc += 1;
            } else if u16::from_be_bytes([r[6], r[7]]) > 0 {
                *full += 1;
            }
        }
    };
    let started = Instant::now();
    for i in 0..n {
        q[0..2].copy_from_slice(&(i as u16).to_be_bytes());
        sock.send_to(&q, s.dns).unwrap();
        if i % 50 == 49 {
            receive(&mut full, &mut tc);
        }
    }
    let spanned = started.elapsed().as_secs() + 1;
    std::thread::sleep(Duration::from_millis(300));
    receive(&mut full, &mut tc);
    (full, tc, n - full - tc, spanned)
}

#[test]
fn a_flood_from_one_prefix_is_limited_with_slip_and_others_see_no_loss() {
    let s = Server::start(&example_config(
        "",
        "[rrl]\nresponses_per_second = 40\nslip = 3\n",
    ));
    assert!(
        s.log_text().contains("response rate limiting on"),
        "{}",
        s.log_text()
    );
    let n = 900;
    let (full, tc, dropped, spanned) = flood(&s, "127.0.0.1", n);
    eprintln!(
        "rrl: {n} sent, {full} answered, {tc} truncated, {dropped} dropped, within {spanned} s"
    );
    // At most the rate in each second the flood spanned; every third of the rest truncated.
    assert!(
        full >= 40 && full as u64 <= 40 * spanned,
        "{full} answers in {spanned} s"
    );
    let limited = n - full;
    let slipped_bound = (limited / 3) as i64;
    assert!(
        (tc as i64 - slipped_bound).abs() <= 2 * spanned as i64,
        "{tc} truncated of {limited} limited"
    );
    assert!(dropped > tc, "{dropped} dropped, {tc} truncated");
    // The server's counters say the same.
    assert_eq!(s.metric("geodns_rrl_slipped_total ") as usize, tc);
    assert_eq!(s.metric("geodns_rrl_dropped_total ") as usize, dropped);
    assert!(s
        .log_text()
        .contains("response rate limiting: responses over the rate"));

    // Another prefix (127.0.1.0/24) during a second flood: nothing lost, nothing truncated.
    let flooder = std::thread::spawn({
        let dns = s.dns;
        move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let q = message("www.example.com", RecordType::A, None)
                .to_vec()
                .unwrap();
            for _ in 0..2000 {
                let _ = sock.send_to(&q, dns);
            }
        }
    });
    let other = UdpSocket::bind("127.0.1.1:0").unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 4096];
    for i in 0..20u16 {
        let mut q = message("www.example.com", RecordType::A, None)
            .to_vec()
            .unwrap();
        q[0..2].copy_from_slice(&i.to_be_bytes());
        other.send_to(&q, s.dns).unwrap();
        other.recv(&mut buf).expect("an answer to the other prefix");
        assert_eq!(buf[2] & 0x02, 0, "not truncated");
        assert!(u16::from_be_bytes([buf[6], buf[7]]) > 0, "answered");
    }
    flooder.join().unwrap();
    // TCP from the flooding address is never limited.
    let tcp = s.dig(&["www.example.com", "A", "+tcp", "+short"]);
    assert!(!tcp.trim().is_empty(), "{tcp}");
}
