//! The AF_XDP path (issue 26): a server with `[listen] xdp` on one end of a veth pair between
//! two network namespaces of the test's own, queried from the other end.
//!
//! What is compared: the same queries, from the same client address, to a server answering
//! through AF_XDP and to one answering on the kernel's sockets (same data, same namespace),
//! byte for byte; the kernel's UDP counters show which path answered. TCP and other UDP ports
//! on the XDP interface still reach the kernel. Frames with one and two VLAN tags, sent raw,
//! are answered with their tags. A server that cannot attach says so and answers on its
//! sockets.

use std::io::Write;
use std::process::{Command, Stdio};

use hickory_proto::op::{Edns, Message, MessageType};
use hickory_proto::rr::RecordType;

use crate::browser::Netns;
use crate::faults::sh;
use crate::harness::{config_with_big_txt, data_dir, message, Server};

/// Two namespaces joined by a veth pair: the server's end 10.77.N.1 / fd77:N::1, the client's
/// .2 / ::2.
struct Pair {
    server: Netns,
    client: Netns,
    iface: String,
    /// The client's end of the veth.
    peer: String,
    v4: String,
    v6: String,
    client4: String,
    client6: String,
}

impl Pair {
    fn new() -> Pair {
        Pair::with_queues(1)
    }

    /// A pair whose ends have `queues` receive and transmit queues each.
    fn with_queues(queues: u32) -> Pair {
        let (server, client) = (Netns::new(), Netns::new());
        // Unique per test, in this process and beside another run's.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let next = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = (std::process::id() % 60) * 4 + next % 4;
        let iface = format!("gx{n}s");
        let peer = format!("gx{n}c");
        let _ = Command::new("ip").args(["link", "del", &iface]).output();
        let q = queues.to_string();
        sh(&[
            "ip",
            "link",
            "add",
            &iface,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ]);
        sh(&["ip", "link", "set", &iface, "netns", &server.0]);
        sh(&["ip", "link", "set", &peer, "netns", &client.0]);
        let (v4, v6) = (format!("10.77.{n}"), format!("fd77:{n:x}:"));
        for (ns, dev, host) in [(&server, &iface, 1), (&client, &peer, 2)] {
            let a4 = format!("{v4}.{host}/24");
            let a6 = format!("{v6}:{host}/64");
            sh(&["ip", "-n", &ns.0, "addr", "add", &a4, "dev", dev]);
            sh(&["ip", "-n", &ns.0, "addr", "add", &a6, "dev", dev, "nodad"]);
            sh(&["ip", "-n", &ns.0, "link", "set", dev, "up"]);
        }
        Pair {
            server,
            client,
            iface,
            peer,
            client4: format!("{v4}.2"),
            client6: format!("{v6}:2"),
            v4: format!("{v4}.1"),
            v6: format!("{v6}:1"),
        }
    }

    /// `cmd` run in the client's namespace, its standard output.
    fn client_run(&self, cmd: &[&str], stdin: &str) -> String {
        let mut c = Command::new("ip")
            .args(["netns", "exec", &self.client.0])
            .args(cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A 2 s dnsperf run from the client's namespace to the server's IPv4 address, port 5300:
    /// `clients` sockets with `outstanding` queries each, from `queries`. Returns the queries
    /// lost and completed, and dnsperf's report.
    fn dnsperf(
        &self,
        queries: &std::path::Path,
        clients: u32,
        outstanding: u32,
    ) -> (u64, u64, String) {
        let (c, q) = (clients.to_string(), outstanding.to_string());
        let report = self.client_run(
            &[
                "dnsperf",
                "-s",
                &self.v4,
                "-p",
                "5300",
                "-d",
                queries.to_str().unwrap(),
                "-l",
                "2",
                "-c",
                &c,
                "-q",
                &q,
                "-t",
                "1",
            ],
            "",
        );
        let field = |name: &str| -> u64 {
            report
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {report}"))
        };
        (field("Queries lost:"), field("Queries completed:"), report)
    }

    /// The MAC address of `dev` in `ns`.
    fn mac(ns: &Netns, dev: &str) -> String {
        let o = Command::new("ip")
            .args(["netns", "exec", &ns.0, "cat"])
            .arg(format!("/sys/class/net/{dev}/address"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    /// Sets the server end's MTU.
    fn set_mtu(&self, mtu: u32) {
        let mtu = mtu.to_string();
        sh(&[
            "ip",
            "-n",
            &self.server.0,
            "link",
            "set",
            &self.iface,
            "mtu",
            &mtu,
        ]);
    }

    /// A metric of a server running in the server's namespace (its metrics listen there).
    fn metric(&self, server: &Server, line_prefix: &str) -> u64 {
        let script = format!(
            "import urllib.request\nprint(urllib.request.urlopen('http://{}/metrics').read().decode())",
            server.metrics
        );
        let o = Command::new("ip")
            .args(["netns", "exec", &self.server.0, "python3", "-c", &script])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(line_prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {line_prefix} in {text}")) as u64
    }

    /// The server namespace's kernel UDP datagrams received, IPv4 and IPv6.
    fn kernel_udp_in(&self) -> u64 {
        let read = |file: &str| {
            let o = Command::new("ip")
                .args(["netns", "exec", &self.server.0, "cat", file])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let snmp = read("/proc/net/snmp");
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
        let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
        let i = names
            .split_whitespace()
            .position(|n| n == "InDatagrams")
            .unwrap();
        let v4: u64 = values.split_whitespace().nth(i).unwrap().parse().unwrap();
        let v6: u64 = read("/proc/net/snmp6")
            .lines()
            .find_map(|l| l.strip_prefix("Udp6InDatagrams"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        v4 + v6
    }
}

/// Sends each (address, port, message bytes) over UDP from the client's namespace, one at a
/// time, and returns each reply's bytes (empty: none within a second).
const SEND: &str = r#"
import socket, sys
for line in sys.stdin:
    addr, port, hex = line.split()
    fam = socket.AF_INET6 if ':' in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.sendto(bytes.fromhex(hex), (addr, int(port)))
    try:
        print(s.recv(65535).hex())
    except socket.timeout:
        print('-')
    s.close()
"#;

fn send_all(pair: &Pair, to: &[(String, u16)], packets: &[Vec<u8>]) -> Vec<String> {
    let mut input = String::new();
    for (addr, port) in to {
        for p in packets {
            input.push_str(&format!("{addr} {port} {}\n", hex(p)));
        }
    }
    pair.client_run(&["python3", "-c", SEND], &input)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The queries: the conformance rows that apply over UDP.
fn queries() -> Vec<Vec<u8>> {
    let with_id = |mut m: Message, id: u16| {
        m.metadata.id = id;
        m.to_vec().unwrap()
    };
    let edns = |payload: u16, version: u8| {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        e.set_version(version);
        e
    };
    let mut out = vec![
        // Geo answers: by the resolver's address, by ECS of each family and length.
        with_id(message("www.example.com.", RecordType::A, None), 1),
        with_id(
            message("www.example.com.", RecordType::A, Some("198.51.100.0/24")),
            2,
        ),
        with_id(
            message("www.example.com.", RecordType::A, Some("203.0.113.0/20")),
            3,
        ),
        with_id(
            message(
                "www.example.com.",
                RecordType::AAAA,
                Some("2001:db8:1::/48"),
            ),
            4,
        ),
        with_id(
            message("www.example.com.", RecordType::A, Some("0.0.0.0/0")),
            5,
        ),
        // Static records, a CNAME chain, a wildcard, NODATA, NXDOMAIN, out of zone.
        with_id(message("static.example.com.", RecordType::A, None), 6),
        with_id(message("app.example.com.", RecordType::A, None), 7),
        with_id(message("x.wild.example.com.", RecordType::TXT, None), 8),
        with_id(message("static.example.com.", RecordType::AAAA, None), 9),
        with_id(message("nope.example.com.", RecordType::A, None), 10),
        with_id(message("example.org.", RecordType::A, None), 11),
        with_id(message("example.com.", RecordType::NS, None), 12),
        // Truncation: 4 KB of TXT, without EDNS and with EDNS's largest UDP payload.
        with_id(message("big.example.com.", RecordType::TXT, None), 13),
        // Probe names: answered for their PoP and logged with the client's address.
        with_id(
            message("abcdef0123.ams.probe.example.com.", RecordType::A, None),
            15,
        ),
        with_id(
            message(
                "abcdef0456.sin.probe.example.com.",
                RecordType::AAAA,
                Some("198.51.100.0/24"),
            ),
            16,
        ),
        with_id(
            message("short.ams.probe.example.com.", RecordType::A, None),
            17,
        ),
    ];
    let mut big = message("big.example.com.", RecordType::TXT, None);
    big.set_edns(edns(4096, 0));
    out.push(with_id(big, 14));
    // EDNS: an unknown version (BADVERS), a small payload.
    let mut v1 = message("www.example.com.", RecordType::A, None);
    v1.set_edns(edns(1232, 1));
    out.push(with_id(v1, 18));
    let mut small = message("example.com.", RecordType::TXT, None);
    small.set_edns(edns(512, 0));
    out.push(with_id(small, 19));
    // Not a query: a response, and junk (neither is answered).
    let mut resp = message("www.example.com.", RecordType::A, None);
    resp.metadata.message_type = MessageType::Response;
    out.push(with_id(resp, 20));
    out.push(vec![0x12, 0x34, 0x01]);
    out
}

/// A server in the pair's server namespace, on `port` of both addresses, with `xdp` lines.
fn server(pair: &Pair, port: u16, xdp: &str, log_age: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    for f in ["example.com.zone", "example-map.arrow", "example-nets.csv"] {
        std::fs::copy(data_dir().join(f), dir.path().join(f)).unwrap();
    }
    let mut cfg = config_with_big_txt().replace(
        "dns = [\"127.0.0.1:0\"]",
        &format!(
            "dns = [\"127.0.0.1:0\", \"{}:{port}\", \"[{}]:{port}\"]\n{xdp}",
            pair.v4, pair.v6
        ),
    );
    if log_age {
        cfg = cfg.replace("max_age_ms = 10000", "max_age_ms = 200");
    }
    Server::start_netns(dir, &cfg, "info", Some(&pair.server.0))
}

#[test]
fn answers_over_af_xdp_are_the_socket_path_s_and_the_kernel_keeps_the_rest() {
    let pair = Pair::new();
    let xdp = server(&pair, 5300, &format!("xdp = [\"{}\"]", pair.iface), true);
    xdp.wait_log("answering UDP through AF_XDP", 1);
    let log = xdp.log_text();
    assert!(
        log.contains(&format!("iface={}", pair.iface)) && log.contains("copy="),
        "the log says where and in which copy mode: {log}"
    );
    // The same data on the kernel's sockets, in the same namespace, for the comparison.
    let _sockets = server(&pair, 5301, "", false);
    let packets = queries();

    let before = pair.kernel_udp_in();
    let over_xdp = send_all(
        &pair,
        &[(pair.v4.clone(), 5300), (pair.v6.clone(), 5300)],
        &packets,
    );
    let after_xdp = pair.kernel_udp_in();
    let over_sockets = send_all(
        &pair,
        &[(pair.v4.clone(), 5301), (pair.v6.clone(), 5301)],
        &packets,
    );
    let after_sockets = pair.kernel_udp_in();
    assert_eq!(
        after_xdp, before,
        "the kernel received none of the queries sent to the AF_XDP server"
    );
    assert!(
        after_sockets >= before + 2 * packets.len() as u64,
        "the kernel's counters count the socket path ({before} -> {after_sockets})"
    );

    assert_eq!(over_xdp.len(), over_sockets.len());
    for (i, (x, s)) in over_xdp.iter().zip(&over_sockets).enumerate() {
        assert_eq!(
            x,
            s,
            "query {i} ({}): AF_XDP and sockets differ",
            i % packets.len()
        );
    }
    // The rows answered are answers (not all silence), and the not-queries got none.
    let answered = over_xdp.iter().filter(|r| *r != "-").count();
    assert_eq!(answered, 2 * (packets.len() - 2), "{over_xdp:?}");
    // big.example.com (id 13, no EDNS; id 14 with a 4096-byte payload) comes truncated.
    let tc = |hex: &str| u8::from_str_radix(&hex[4..6], 16).unwrap() & 0x02 != 0;
    for id in [13u8, 14] {
        let i = packets.iter().position(|p| p[..2] == [0, id]).unwrap();
        assert!(tc(&over_xdp[i]), "id {id} truncated: {}", over_xdp[i]);
    }

    // The probe log has the client's address for the queries that came over AF_XDP.
    xdp.wait_log("log file written", 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let rows = loop {
        let rows = crate::probe::probe_rows(&xdp.path("beacon-logs"));
        if rows.len() >= 4 || std::time::Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let clients: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.2.as_str())).collect();
    for want in [
        ("abcdef0123", pair.client4.as_str()),
        ("abcdef0123", pair.client6.as_str()),
        ("abcdef0456", pair.client4.as_str()),
        ("abcdef0456", pair.client6.as_str()),
    ] {
        assert!(clients.contains(&want), "{want:?} not in {rows:?}");
    }

    // Under load (dnsperf: 20 outstanding on each of 8 sockets for 2 s), every query is
    // answered: frames go round the rings many times over.
    let queries_file = xdp.path("queries.txt");
    std::fs::write(
        &queries_file,
        "www.example.com A\nstatic.example.com A\nnope.example.com AAAA\n",
    )
    .unwrap();
    let (lost, completed, load) = pair.dnsperf(&queries_file, 8, 20);
    assert_eq!(lost, 0, "{load}");
    assert!(completed > 5_000, "{load}");
    assert_eq!(
        pair.kernel_udp_in(),
        after_sockets,
        "the load went through AF_XDP"
    );
    assert_eq!(pair.metric(&xdp, "geodns_xdp_sockets "), 1);
    assert!(
        pair.metric(&xdp, "geodns_xdp_frames_total ") >= completed,
        "every frame counted"
    );

    // TCP to the same address and port still reaches the kernel and the server.
    for addr in [&pair.v4, &pair.v6] {
        let out = pair.client_run(
            &[
                "dig",
                "+tcp",
                "+time=2",
                "+tries=1",
                "-p",
                "5300",
                &format!("@{addr}"),
                "static.example.com",
                "A",
                "+short",
            ],
            "",
        );
        assert_eq!(out.trim(), "192.0.2.100", "TCP to {addr}");
    }
    // Another UDP port on the same address still reaches its own socket.
    let echo = Command::new("ip")
        .args(["netns", "exec", &pair.server.0, "python3", "-c"])
        .arg(format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{}',7777))\nd,a=s.recvfrom(100)\ns.sendto(b'echo:'+d,a)",
            pair.v4
        ))
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let reply = pair.client_run(
        &["python3", "-c", &format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(b'hi',('{}',7777))\nprint(s.recv(100).decode())",
            pair.v4
        )],
        "",
    );
    assert_eq!(reply.trim(), "echo:hi");
    let _ = echo.wait_with_output();
}

/// Sends Ethernet frames raw from the client's end of the veth (an AF_PACKET socket): UDP
/// queries with the VLAN tags asked for, built here with their checksums. Prints each reply
/// frame from the server's MAC to the query's port, with the tag the kernel took off on receive
/// put back (PACKET_AUXDATA), and whether its checksums are right; `-` for none within a second.
/// Input: a first line `IFACE CLIENT_MAC SERVER_MAC`, then a line per query:
/// `TAGS FAMILY SRC DST SPORT DPORT PAYLOAD_HEX`, TAGS `-` or `TPID:VID,...` outermost first.
const RAW: &str = r#"
import select, socket, struct, sys, time

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def l3(fam, src, dst, sport, dport, payload):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if fam == "4":
        a, b = socket.inet_aton(src), socket.inet_aton(dst)
        c = csum(a + b + struct.pack("!BBH", 0, 17, len(udp)) + udp) or 0xFFFF
        udp = udp[:6] + struct.pack("!H", c) + udp[8:]
        h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0x1234, 0x4000, 64, 17, 0, a, b)
        return 0x0800, h[:10] + struct.pack("!H", csum(h)) + h[12:] + udp
    a, b = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    c = csum(a + b + struct.pack("!I", len(udp)) + b"\0\0\0\x11" + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    return 0x86DD, struct.pack("!IHBB16s16s", 0x60000000, len(udp), 17, 64, a, b) + udp

def type_at(frame):
    """Where the frame's EtherType lies, after its VLAN tags."""
    i = 12
    while struct.unpack("!H", frame[i:i + 2])[0] in (0x8100, 0x88A8):
        i += 4
    return i

def checksums_ok(frame):
    """The reply's IPv4 header checksum and UDP checksum, checked after its tags."""
    i = type_at(frame)
    et, ip = struct.unpack("!H", frame[i:i + 2])[0], frame[i + 2:]
    if et == 0x0800:
        hl = (ip[0] & 15) * 4
        udp = ip[hl:struct.unpack("!H", ip[2:4])[0]]
        ph = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp))
        return csum(ip[:hl]) == 0 and (udp[6:8] == b"\0\0" or csum(ph + udp) == 0)
    plen = struct.unpack("!H", ip[4:6])[0]
    udp = ip[40:40 + plen]
    ph = ip[8:40] + struct.pack("!I", len(udp)) + b"\0\0\0\x11"
    return udp[6:8] != b"\0\0" and csum(ph + udp) == 0

ifname, mine, theirs = sys.stdin.readline().split()
mine, theirs = bytes.fromhex(mine.replace(":", "")), bytes.fromhex(theirs.replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifname, 0))
s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA: the tag the kernel took off
for line in sys.stdin:
    tags, fam, src, dst, sport, dport, hexp = line.split()
    et, body = l3(fam, src, dst, int(sport), int(dport), bytes.fromhex(hexp))
    tagbytes = b""
    if tags != "-":
        for t in tags.split(","):
            tpid, vid = t.split(":")
            tagbytes += struct.pack("!HH", int(tpid, 16), int(vid))
    s.send(theirs + mine + tagbytes + struct.pack("!H", et) + body)
    reply, deadline = None, time.time() + 1
    while reply is None and time.time() < deadline:
        if not select.select([s], [], [], max(0, deadline - time.time()))[0]:
            break
        data, anc, _, addr = s.recvmsg(65535, socket.CMSG_SPACE(20))
        if addr[2] == socket.PACKET_OUTGOING or data[6:12] != theirs:
            continue
        for level, kind, aux in anc:
            if (level, kind) == (263, 8):
                status, _, _, _, _, tci, tpid = struct.unpack("IIIHHHH", aux[:20])
                if status & (1 << 4):  # TP_STATUS_VLAN_VALID
                    tpid = tpid if status & (1 << 6) else 0x8100
                    data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
        # Ours if it comes from the port the query went to, to the port it came from.
        i = type_at(data)
        hl = 20 if data[i:i + 2] == b"\x08\x00" else 40
        ports = data[i + 2 + hl:i + 2 + hl + 4]
        if ports == struct.pack("!HH", int(dport), int(sport)):
            reply = data
    if reply is None:
        print("-")
    else:
        print(reply.hex(), "ok" if checksums_ok(reply) else "bad-checksum")
"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// VLAN tags on frames, one (802.1Q) and two (802.1ad outside 802.1Q), over IPv4 and IPv6.
/// This kernel has no 802.1Q module, so no VLAN device can send them: they are sent raw. A
/// tagged frame the program did not take would reach the kernel, which would drop it for want
/// of a VLAN device; so every reply here came through AF_XDP.
#[test]
fn tagged_frames_are_answered_through_af_xdp_with_their_tags() {
    let pair = Pair::new();
    let xdp = server(&pair, 5300, &format!("xdp = [\"{}\"]", pair.iface), false);
    xdp.wait_log("answering UDP through AF_XDP", 1);
    let _sockets = server(&pair, 5301, "", false);
    let all = queries();
    // Geo by ECS of each family, and by the client's address (a probe name, answered and
    // logged by it).
    let qs: Vec<Vec<u8>> = [2u8, 4, 15]
        .iter()
        .map(|id| all.iter().find(|p| p[..2] == [0, *id]).unwrap().clone())
        .collect();
    // What the socket path says to the same queries from the same addresses.
    let expected = send_all(
        &pair,
        &[(pair.v4.clone(), 5301), (pair.v6.clone(), 5301)],
        &qs,
    );
    let (client_mac, server_mac) = (
        Pair::mac(&pair.client, &pair.peer),
        Pair::mac(&pair.server, &pair.iface),
    );
    let mut input = format!("{} {client_mac} {server_mac}\n", pair.peer);
    let tag_sets: [&[(u16, u16)]; 3] = [&[], &[(0x8100, 100)], &[(0x88a8, 200), (0x8100, 100)]];
    let families = [
        ("4", &pair.client4, &pair.v4),
        ("6", &pair.client6, &pair.v6),
    ];
    let mut cases = Vec::new();
    for tags in tag_sets {
        for (f, (family, src, dst)) in families.iter().enumerate() {
            for (q, query) in qs.iter().enumerate() {
                let tag_text = if tags.is_empty() {
                    "-".to_owned()
                } else {
                    let t: Vec<String> = tags.iter().map(|(p, v)| format!("{p:x}:{v}")).collect();
                    t.join(",")
                };
                // The same port for a query whatever its tags, for the comparison below.
                let sport = 40000 + f * qs.len() + q;
                input.push_str(&format!(
                    "{tag_text} {family} {src} {dst} {sport} 5300 {}\n",
                    hex(query)
                ));
                cases.push((tags, f, q));
            }
        }
    }
    let out = pair.client_run(&["python3", "-c", RAW], &input);
    let replies: Vec<&str> = out.lines().collect();
    assert_eq!(replies.len(), cases.len(), "{out}");
    let mac = |m: &str| unhex(&m.replace(':', ""));
    let mut untagged = std::collections::HashMap::new();
    for ((tags, f, q), line) in cases.iter().zip(&replies) {
        let what = format!("tags {tags:x?}, IPv{}, query {q}", families[*f].0);
        let (reply, checks) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("{what}: no reply"));
        assert_eq!(checks, "ok", "{what}: {reply}");
        let frame = unhex(reply);
        assert_eq!(frame[..6], mac(&client_mac)[..], "{what}: to the client");
        assert_eq!(
            frame[6..12],
            mac(&server_mac)[..],
            "{what}: from the server"
        );
        for (i, (tpid, vid)) in tags.iter().enumerate() {
            let at = 12 + 4 * i;
            assert_eq!(
                (
                    u16::from_be_bytes([frame[at], frame[at + 1]]),
                    u16::from_be_bytes([frame[at + 2], frame[at + 3]]) & 0x0fff
                ),
                (*tpid, *vid),
                "{what}: tag {i} kept"
            );
        }
        let l3 = 14 + 4 * tags.len();
        let (src, dst, dns) = if *f == 0 {
            (&frame[l3 + 16..l3 + 20], &frame[l3 + 12..l3 + 16], l3 + 28)
        } else {
            (&frame[l3 + 24..l3 + 40], &frame[l3 + 8..l3 + 24], l3 + 48)
        };
        let ip = |a: &str| match a.parse::<std::net::IpAddr>().unwrap() {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        };
        assert_eq!(
            src,
            &ip(families[*f].1)[..],
            "{what}: to the client's address"
        );
        assert_eq!(dst, &ip(families[*f].2)[..], "{what}: from the server's");
        assert_eq!(
            hex(&frame[dns..]),
            expected[*f * qs.len() + *q],
            "{what}: the socket path's answer"
        );
        // With its tags taken out, the frame is the untagged one's, byte for byte.
        let mut bare = frame[..12].to_vec();
        bare.extend_from_slice(&frame[l3 - 2..]);
        match untagged.get(&(*f, *q)) {
            None => {
                assert!(tags.is_empty());
                untagged.insert((*f, *q), bare);
            }
            Some(first) => assert_eq!(first, &bare, "{what}: as the untagged reply"),
        }
    }
}

/// A veth with four queues: a socket on each, and each queue's frames answered through its own
/// (the kernel counts per queue what its XDP program redirected; a queue without a socket would
/// pass its frames to the kernel's UDP stack, whose counters stay still).
#[test]
fn every_receive_queue_has_a_socket_of_its_own() {
    let pair = Pair::with_queues(4);
    let xdp = server(&pair, 5300, &format!("xdp = [\"{}\"]", pair.iface), false);
    xdp.wait_log("answering UDP through AF_XDP", 1);
    assert!(xdp.log_text().contains("queues=4"), "{}", xdp.log_text());
    assert_eq!(pair.metric(&xdp, "geodns_xdp_sockets "), 4);
    let queries_file = xdp.path("queries.txt");
    std::fs::write(&queries_file, "www.example.com A\nstatic.example.com A\n").unwrap();
    let before = pair.kernel_udp_in();
    // 32 client sockets: the client's end picks a transmit queue per socket (by its hash), and
    // the server's end receives on the queue of the same number.
    let (lost, completed, load) = pair.dnsperf(&queries_file, 32, 64);
    assert_eq!(lost, 0, "{load}");
    assert!(completed > 5_000, "{load}");
    assert_eq!(pair.kernel_udp_in(), before, "all of it through AF_XDP");
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.server.0,
            "ethtool",
            "-S",
            &pair.iface,
        ])
        .output()
        .unwrap();
    let stats = String::from_utf8_lossy(&o.stdout).into_owned();
    let redirected: Vec<u64> = (0..4)
        .map(|q| {
            let name = format!("rx_queue_{q}_xdp_redirect:");
            stats
                .lines()
                .find_map(|l| l.trim().strip_prefix(name.as_str()))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {stats}"))
        })
        .collect();
    assert!(
        redirected.iter().filter(|n| **n > 0).count() >= 2,
        "the load came in on several queues: {redirected:?}"
    );
    assert!(
        redirected.iter().sum::<u64>() >= completed,
        "{redirected:?} against {completed} answered"
    );
    assert!(pair.metric(&xdp, "geodns_xdp_frames_total ") >= completed);
}

#[test]
fn a_server_that_cannot_use_af_xdp_says_why_and_answers_on_its_sockets() {
    let pair = Pair::new();
    // No such interface.
    let s = server(&pair, 5302, "xdp = [\"nosuch0\"]", false);
    s.wait_log("AF_XDP unavailable here", 1);
    assert!(s.log_text().contains("nosuch0"), "{}", s.log_text());
    assert_eq!(pair.metric(&s, "geodns_xdp_sockets "), 0);
    let before = pair.kernel_udp_in();
    let got = send_all(&pair, &[(pair.v4.clone(), 5302)], &queries()[..1]);
    assert_ne!(got[0], "-", "answered on the sockets");
    assert!(pair.kernel_udp_in() > before);
    drop(s);

    // An MTU a reply might not fit.
    pair.set_mtu(1280);
    let s = server(&pair, 5302, &format!("xdp = [\"{}\"]", pair.iface), false);
    s.wait_log("AF_XDP unavailable here", 1);
    assert!(s.log_text().contains("MTU 1280"), "{}", s.log_text());
    let got = send_all(&pair, &[(pair.v4.clone(), 5302)], &queries()[..1]);
    assert_ne!(got[0], "-", "answered on the sockets");
    drop(s);
    pair.set_mtu(1500);

    // No privilege: the same server as an unprivileged user cannot load the program.
    let dir = tempfile::tempdir().unwrap();
    for f in ["example.com.zone", "example-map.arrow", "example-nets.csv"] {
        std::fs::copy(data_dir().join(f), dir.path().join(f)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let cfg = config_with_big_txt().replace(
        "dns = [\"127.0.0.1:0\"]",
        &format!(
            "dns = [\"127.0.0.1:0\", \"{}:5303\"]\nxdp = [\"{}\"]",
            pair.v4, pair.iface
        ),
    );
    let cfg_path = dir.path().join("geodns.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log_path = dir.path().join("server.log");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &pair.server.0])
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .arg(env!("CARGO_BIN_EXE_geodns"))
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("listening metrics") || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let got = send_all(&pair, &[(pair.v4.clone(), 5303)], &queries()[..1]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        log.contains("AF_XDP unavailable here")
            && log.contains(&pair.iface)
            && log.contains("Operation not permitted")
            && log.contains("CAP_BPF"),
        "the log says what is missing: {log}"
    );
    assert_ne!(got[0], "-", "answered on the sockets: {log}");
}
