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

/// 20 queries from another prefix (127.0.1.0/24), `pause` apart: each answered in full, none
/// truncated.
fn other_prefix_answered_in_full(s: &Server, pause: Duration) {
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
        std::thread::sleep(pause);
    }
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
    // The server's own counts (a busy machine may lose packets on loopback, so what came back
    // is bounded by them rather than equal): at most the rate answered in each second the flood
    // spanned, and every third of the rest truncated.
    let processed = s.metric("geodns_queries_total{transport=\"udp\"} ");
    let (slipped, dropped_by_rrl) = (
        s.metric("geodns_rrl_slipped_total "),
        s.metric("geodns_rrl_dropped_total "),
    );
    let answered = processed - slipped - dropped_by_rrl;
    assert!(
        answered >= 40 && answered <= 40 * spanned,
        "{answered} answered in {spanned} s"
    );
    let limited = (slipped + dropped_by_rrl) as i64;
    assert!(
        (slipped as i64 - limited / 3).abs() <= 2 * spanned as i64,
        "{slipped} truncated of {limited} limited"
    );
    assert!(full as u64 <= answered && tc as u64 <= slipped && dropped > tc);
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
    other_prefix_answered_in_full(&s, Duration::ZERO);
    flooder.join().unwrap();
    // TCP from the flooding address is never limited.
    let tcp = s.dig(&["www.example.com", "A", "+tcp", "+short"]);
    assert!(!tcp.trim().is_empty(), "{tcp}");
}

/// The same with a real load generator: dnsperf floods from one address at a fixed rate, the
/// server answers the configured rate and slips every `slip`-th of the rest, and dnsperf's own
/// count of responses agrees with the server's; another prefix loses nothing meanwhile.
#[test]
fn a_dnsperf_flood_is_answered_at_the_rate_with_the_slip() {
    let rate = 50;
    let s = Server::start(&example_config(
        "",
        &format!("[rrl]\nresponses_per_second = {rate}\nslip = 2\n"),
    ));
    let dir = tempfile::tempdir().unwrap();
    let queries = dir.path().join("queries");
    std::fs::write(&queries, "www.example.com A\n").unwrap();
    let port = s.dns.port().to_string();
    let seconds = 3;
    let dnsperf = std::process::Command::new("dnsperf")
        .args([
            "-s",
            "127.0.0.1",
            "-a",
            "127.0.0.1",
            "-c",
            "1",
            "-t",
            "1",
            "-p",
        ])
        .arg(&port)
        .args(["-Q", "400", "-q", "2000", "-l", &seconds.to_string(), "-d"])
        .arg(&queries)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dnsperf (Debian's dnsperf; scripts/test.sh installs it)");
    // Meanwhile another prefix: every query answered in full.
    std::thread::sleep(Duration::from_millis(500));
    other_prefix_answered_in_full(&s, Duration::from_millis(50));
    let out = dnsperf.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name:?} in\n{text}"))
    };
    let (sent, completed) = (field("Queries sent:"), field("Queries completed:"));
    let processed = s.metric("geodns_queries_total{transport=\"udp\"} ") - 20;
    let slipped = s.metric("geodns_rrl_slipped_total ");
    let dropped = s.metric("geodns_rrl_dropped_total ");
    let answered = processed - slipped - dropped;
    eprintln!(
        "dnsperf: {sent} sent, {completed} completed; server: {answered} answered, {slipped} slipped, {dropped} dropped"
    );
    // The rate: whole seconds of the limiter, so the flood's seconds plus the one it began in.
    let most = rate * (seconds + 1);
    assert!(
        answered >= rate * (seconds - 1) && answered <= most,
        "{answered} answered, want {}..={most}",
        rate * (seconds - 1)
    );
    // Every second limited response slips (one per second may round either way).
    let limited = slipped + dropped;
    assert!(
        slipped.abs_diff(limited / 2) <= seconds + 1,
        "{slipped} slipped of {limited} limited"
    );
    assert!(sent >= 900, "a flood at 400 per second: {sent} sent");
    // What dnsperf got back is what the server sent (a busy loopback may lose a few).
    assert!(
        completed <= answered + slipped && completed * 10 >= (answered + slipped) * 9,
        "{completed} completed, {answered} answered + {slipped} slipped"
    );
}

/// DNS cookies: every answer to a query with a client cookie carries a fresh server cookie;
/// a client that returns it has proven its address and is not rate limited. dig says the
/// cookie it got back is good.
#[test]
fn a_client_with_a_valid_server_cookie_is_not_limited() {
    let s = Server::start(&example_config(
        "",
        "[rrl]\nresponses_per_second = 10\nslip = 0\n",
    ));
    // A client cookie alone: the answer carries it back with a 16-byte server cookie.
    let client = *b"geodns!!";
    let with_cookie = |cookie: &[u8], id: u16| {
        let mut q = message("www.example.com", RecordType::A, None)
            .to_vec()
            .unwrap();
        q[0..2].copy_from_slice(&id.to_be_bytes());
        // ARCOUNT 1 and an OPT record with the COOKIE option (code 10).
        q[11] = 1;
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        q.extend_from_slice(&((4 + cookie.len()) as u16).to_be_bytes());
        q.extend_from_slice(&[0, 10]);
        q.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
        q.extend_from_slice(cookie);
        q
    };
    let r = s.udp_raw(&with_cookie(&client, 1)).expect("an answer");
    let at = r
        .windows(4)
        .position(|w| w == [0, 10, 0, 24])
        .expect("a COOKIE option of 8 + 16 bytes");
    assert_eq!(&r[at + 4..at + 12], &client);
    let full_cookie = r[at + 4..at + 28].to_vec();
    assert_eq!(full_cookie[8], 1, "server cookie version 1");

    // 300 queries with the cookie, in bursts of 20 (a burst is well over the rate; bursts keep
    // the loopback queues from overflowing on a busy machine): every one answered, none
    // limited. Then the same with a forged server cookie: limited.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let burst = |cookie: &[u8]| {
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        let mut answered = 0;
        for b in 0..15u16 {
            for i in 0..20u16 {
                sock.send_to(&with_cookie(cookie, b * 20 + i), s.dns)
                    .unwrap();
            }
            let mut got = 0;
            while got < 20 {
                let Ok(len) = sock.recv(&mut buf) else {
                    break;
                };
                got += 1;
                if buf[2] & 0x02 == 0 && u16::from_be_bytes([buf[6], buf[7]]) > 0 && len > 12 {
                    answered += 1;
                }
            }
        }
        (answered, started.elapsed().as_secs() + 1)
    };
    let (answered, _) = burst(&full_cookie);
    assert_eq!(answered, 300);
    assert_eq!(s.metric("geodns_rrl_dropped_total "), 0);
    let mut forged = full_cookie.clone();
    forged[20] ^= 1;
    let (answered, seconds) = burst(&forged);
    assert!(
        answered as u64 <= 10 * seconds,
        "{answered} answered with a forged cookie in {seconds} s"
    );
    assert!(s.metric("geodns_rrl_dropped_total ") > 0);
    // dig, sending the server cookie back, finds it good.
    let out = s.dig(&[
        "www.example.com",
        "A",
        &format!(
            "+cookie={}",
            full_cookie
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
    ]);
    assert!(out.contains("(good)"), "{out}");
}
