//! The control plane under real faults (issue 19): a three-node ZooKeeper ensemble, two
//! presenters, a server following with its periodic re-reads at their defaults (30 s), and
//! robots. For each fault, the time until the DNS is right again is measured for four changes,
//! against deadlines well below every periodic re-read, so no timer can mask a lost push:
//!
//! - a new registration is answered within [`REGISTER_S`] of starting `geodns register`;
//! - a SIGKILLed robot leaves within its session + grace + [`SETTLE_S`];
//! - a human publish is answered within [`PUBLISH_S`];
//! - a PoP drain written to `<root>/health` reaches the answers within [`DRAIN_S`].
//!
//! Faults, on loopback: the leader killed, a follower killed, the whole ensemble restarted, and
//! sessions expired by a frozen process (SIGSTOP past the session timeout) for a robot, the
//! leading presenter (the other takes over; the old one, fenced, moves nothing) and the server;
//! the server's cache disk full (it keeps following, and says why it cannot save).
//! Through a small network of the test's own (a bridge, and network namespaces for the server
//! and one presenter): the server partitioned from ZooKeeper by an nftables drop and healed,
//! the leading presenter partitioned while it holds the lock, and the server's link to the
//! ensemble slowed by 200 ms each way (a relay: this kernel has no `netem`). The figures go to stderr (`--nocapture`) and docs/perf.md.

use std::time::{Duration, Instant};

use std::process::Command;

use crate::browser::Netns;
use crate::harness::{example_config, run_tool, Server};
use crate::internal::{presenter_config, publish, ZONE};
use crate::zk::{register, Proc, ZooKeeper};

/// A registration answered within this of starting the robot process, s.
const REGISTER_S: f64 = 2.5;
/// A human publish answered within this, s.
const PUBLISH_S: f64 = 2.0;
/// A PoP drain in the answers within this, s.
const DRAIN_S: f64 = 1.0;
/// Beyond session + grace, a dead robot leaves within this, s.
const SETTLE_S: f64 = 2.0;
/// Robots' and presenters' session timeout, ms (the ensemble allows 0.4 to 4 s).
const SESSION_MS: u64 = 2000;
/// The presenter's grace for vanished registrations, ms.
const GRACE_MS: u64 = 200;

struct Plant {
    zk: ZooKeeper,
    dir: tempfile::TempDir,
    presenters: Vec<Proc>,
    server: Server,
    /// The server's network namespace, if it has one (queries then come from inside it).
    server_ns: Option<String>,
    robots: Vec<(Proc, String)>,
    n: usize,
    /// Added to every deadline (a slowed link).
    slack: f64,
    /// With a network: the relays the server reaches the ensemble through.
    link: Option<SlowLink>,
    /// The small file system the server's snapshot cache is on.
    cache_fs: crate::collector_faults::Tmpfs,
    rows: Vec<String>,
}

/// Runs `cmd` and fails the test if it fails.
pub fn sh(cmd: &[&str]) {
    let o = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A small network of the test's own: a bridge in this namespace with `.1` of a /24, and a
/// network namespace per name on it with `.10`, `.11`... Removed on drop.
struct Net {
    bridge: String,
    prefix: String,
    spaces: Vec<(Netns, String)>,
}

impl Net {
    fn new(n: usize) -> Net {
        let id = std::process::id() % 200 + 20;
        let (bridge, prefix) = (format!("gzbr{id}"), format!("10.250.{id}"));
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{prefix}.1/24"),
            "dev",
            &bridge,
        ]);
        sh(&["ip", "link", "set", &bridge, "up"]);
        let mut spaces = Vec::new();
        for i in 0..n {
            let ns = Netns::new();
            let (host, peer) = (format!("gzv{id}h{i}"), format!("gzv{id}p{i}"));
            sh(&[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", &peer,
            ]);
            sh(&["ip", "link", "set", &peer, "netns", &ns.0]);
            sh(&["ip", "link", "set", &host, "master", &bridge]);
            sh(&["ip", "link", "set", &host, "up"]);
            let addr = format!("{prefix}.{}/24", 10 + i);
            sh(&["ip", "-n", &ns.0, "addr", "add", &addr, "dev", &peer]);
            sh(&["ip", "-n", &ns.0, "link", "set", &peer, "up"]);
            spaces.push((ns, peer));
        }
        Net {
            bridge,
            prefix,
            spaces,
        }
    }

    fn host(&self) -> String {
        format!("{}.1", self.prefix)
    }

    fn ns(&self, i: usize) -> &str {
        &self.spaces[i].0 .0
    }

    /// Drops every packet between namespace `i` and the bridge's address (a partition).
    fn partition(&self, i: usize) {
        let ns = self.ns(i);
        let host = self.host();
        sh(&[
            "ip", "netns", "exec", ns, "nft", "add", "table", "inet", "fault",
        ]);
        for (chain, hook, dir) in [("out", "output", "daddr"), ("in", "input", "saddr")] {
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "nft",
                "add",
                "chain",
                "inet",
                "fault",
                chain,
                &format!("{{ type filter hook {hook} priority 0 ; }}"),
            ]);
            sh(&[
                "ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "fault", chain, "ip", dir,
                &host, "drop",
            ]);
        }
    }

    fn heal(&self, i: usize) {
        sh(&[
            "ip",
            "netns",
            "exec",
            self.ns(i),
            "nft",
            "delete",
            "table",
            "inet",
            "fault",
        ]);
    }
}

/// A TCP relay in front of each ensemble member that holds every chunk for a set delay each way:
/// a slow link to the ensemble. (The kernel here has no `netem`: CONFIG_NET_SCH_NETEM is off;
/// the relay delays the bytes, not the packets, which is what the client sees either way.)
struct SlowLink {
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// `host:port` of each relay, in member order.
    addrs: Vec<String>,
}

impl SlowLink {
    fn new(host: &str, members: &[String]) -> SlowLink {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        use std::sync::Arc;
        let delay_ms = Arc::new(AtomicU64::new(0));
        let mut addrs = Vec::new();
        for member in members {
            let listener = std::net::TcpListener::bind((host, 0)).unwrap();
            addrs.push(format!("{host}:{}", listener.local_addr().unwrap().port()));
            let (member, delay) = (member.clone(), delay_ms.clone());
            std::thread::spawn(move || {
                for client in listener.incoming().map_while(Result::ok) {
                    let Ok(upstream) = std::net::TcpStream::connect(&member) else {
                        continue;
                    };
                    for (from, to) in [
                        (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                        (upstream, client),
                    ] {
                        let delay = delay.clone();
                        let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
                        let mut from = from;
                        let mut to = to;
                        std::thread::spawn(move || {
                            use std::io::Read;
                            let mut buf = vec![0u8; 65536];
                            while let Ok(n) = from.read(&mut buf) {
                                if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                                    break;
                                }
                            }
                            let _ = from.shutdown(std::net::Shutdown::Both);
                        });
                        std::thread::spawn(move || {
                            use std::io::Write;
                            for (at, bytes) in rx {
                                let due = at + Duration::from_millis(delay.load(Relaxed));
                                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                                if to.write_all(&bytes).is_err() {
                                    break;
                                }
                            }
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
            });
        }
        SlowLink { delay_ms, addrs }
    }

    fn set(&self, ms: u64) {
        self.delay_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (i, _) in self.spaces.iter().enumerate() {
            let host = format!("gzv{}h{i}", self.bridge.trim_start_matches("gzbr"));
            let _ = Command::new("ip").args(["link", "del", &host]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

fn wait<T: PartialEq + std::fmt::Debug>(
    what: &str,
    within: f64,
    get: impl Fn() -> T,
    want: T,
) -> f64 {
    let t0 = Instant::now();
    loop {
        let now = get();
        if now == want {
            return t0.elapsed().as_secs_f64();
        }
        assert!(
            t0.elapsed().as_secs_f64() < within,
            "{what}: {now:?} after {within} s, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Plant {
    /// On loopback, or with `net`: the ensemble on its bridge, the first presenter (which
    /// takes the lock) in its namespace 1 and the server in its namespace 0.
    fn start(net: Option<&Net>) -> Plant {
        let zk = match net {
            Some(n) => ZooKeeper::ensemble_at(3, &n.host()),
            None => ZooKeeper::ensemble(3),
        };
        let dir = tempfile::tempdir().unwrap();
        let cfg = presenter_config(&zk, &format!("grace_ms = {GRACE_MS}"), "").replace(
            "session_timeout_ms = 2000",
            &format!("session_timeout_ms = {SESSION_MS}"),
        );
        let path = dir.path().join("presenter.toml");
        std::fs::write(&path, &cfg).unwrap();
        let args = ["presenter", "-c", path.to_str().unwrap()];
        let first = Proc::spawn_in(
            net.map(|n| n.ns(1)),
            &args,
            &dir.path().join("presenter-0.log"),
        );
        first.wait_log("leader: publishing", 1, Duration::from_secs(30));
        let second = Proc::spawn(&args, &dir.path().join("presenter-1.log"));
        // The server's periodic re-read stays at its default (30 s): only pushes can pass.
        // In a network, it reaches the ensemble through relays that can slow the link.
        let server_ns = net.map(|n| n.ns(0).to_owned());
        let link = net.map(|n| {
            let members: Vec<String> = zk.connect().split(',').map(str::to_owned).collect();
            SlowLink::new(&n.host(), &members)
        });
        let server_connect = link
            .as_ref()
            .map_or_else(|| zk.connect(), |l| l.addrs.join(","));
        // Its snapshot cache on a small file system the test can fill.
        let cache_fs = crate::collector_faults::Tmpfs::mount(&dir.path().join("cache"), "1m");
        let cache = dir.path().join("cache/internal-snapshot.json");
        let server = Server::start_netns(
            tempdir_with_example_data(),
            &example_config(
                "",
                &format!(
                    "[zookeeper]\nconnect = \"{server_connect}\"\njitter_ms = 50\nsession_timeout_ms = {SESSION_MS}\ncache = \"{}\"\nzones = [\"internal.example\"]\n",
                    cache.display()
                ),
            ),
            "info",
            server_ns.as_deref(),
        );
        let mut p = Plant {
            zk,
            dir,
            presenters: vec![first, second],
            server,
            server_ns,
            robots: Vec::new(),
            n: 0,
            slack: 0.0,
            link,
            cache_fs,
            rows: Vec::new(),
        };
        p.add_robot(30.0);
        p
    }

    /// dig at the server, from inside its namespace if it has one.
    fn dig(&self, args: &[&str]) -> Vec<String> {
        let mut a = vec![
            format!("@{}", self.server.dns.ip()),
            "-p".into(),
            self.server.dns.port().to_string(),
            "+time=1".into(),
            "+tries=1".into(),
            "+short".into(),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        let out = match &self.server_ns {
            Some(ns) => {
                let mut full = vec!["netns".to_owned(), "exec".into(), ns.clone(), "dig".into()];
                full.extend(a);
                run_tool("ip", &full)
            }
            None => run_tool("dig", &a),
        };
        let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
        v.sort();
        v
    }

    fn a(&self, name: &str) -> Vec<String> {
        self.dig(&[name, "A"])
    }

    /// The ECS client of ams in the example map (198.51.100.128/25 ranks ams, then iad).
    fn www(&self) -> Vec<String> {
        self.dig(&["www.example.com", "A", "+subnet=198.51.100.200/32"])
    }

    fn name(&self, i: usize) -> String {
        format!("f{i}.prn1.{ZONE}")
    }

    /// Registers one more robot; the seconds until the server answers it.
    /// Starts a robot for `name` at `addr` with the plant's session, returning once it has
    /// registered (whether or not the server sees it yet).
    fn robot(&self, name: &str, addr: &str) -> Proc {
        register(
            &self.zk,
            self.dir.path(),
            name,
            addr,
            &["--session-timeout-ms", &SESSION_MS.to_string()],
        )
    }

    fn add_robot(&mut self, within: f64) -> f64 {
        self.n += 1;
        let (name, addr) = (
            self.name(self.n),
            format!("10.1.{}.{}", self.n / 200, self.n % 200 + 1),
        );
        let t0 = Instant::now();
        let robot = self.robot(&name, &addr);
        wait(
            &name,
            within + self.slack,
            || self.a(&name),
            vec![addr.clone()],
        );
        self.robots.push((robot, name));
        t0.elapsed().as_secs_f64()
    }

    /// SIGKILLs the oldest robot; the seconds until the server stops answering it.
    fn kill_robot(&mut self) -> f64 {
        let (robot, name) = self.robots.remove(0);
        robot.signal("KILL");
        let within = (SESSION_MS + GRACE_MS) as f64 / 1000.0 + SETTLE_S + self.slack;
        wait(&name, within, || self.a(&name), Vec::<String>::new())
    }

    /// Publishes a new human record; the seconds until it is answered.
    fn human(&mut self) -> f64 {
        self.n += 1;
        let addr = format!("10.2.0.{}", self.n % 250 + 1);
        let t0 = Instant::now();
        publish(self.dir.path(), ZONE, &format!("human IN A {addr}\n"));
        let name = format!("human.{ZONE}");
        wait(
            &name,
            PUBLISH_S + self.slack,
            || self.a(&name),
            vec![addr.clone()],
        );
        t0.elapsed().as_secs_f64()
    }

    /// Drains ams through `<root>/health` and brings it back; the seconds until the answer
    /// moved to iad.
    fn drain(&mut self) -> f64 {
        let node = "/geodns/health/ams";
        self.zk
            .set(node, br#"{"pop":"ams","state":"down","vips":[]}"#);
        let within = DRAIN_S + self.slack;
        let t = wait(
            "drained www",
            within,
            || self.www(),
            vec!["192.0.2.20".to_owned()],
        );
        self.zk
            .set(node, br#"{"pop":"ams","state":"up","vips":[]}"#);
        wait(
            "undrained www",
            within,
            || self.www(),
            vec!["192.0.2.10".to_owned()],
        );
        t
    }

    /// All four changes; one row of the table.
    fn probe(&mut self, fault: &str, when: &str) {
        let reg = self.add_robot(REGISTER_S);
        let gone = self.kill_robot();
        let human = self.human();
        let drain = self.drain();
        let row = format!(
            "| {fault} | {when} | {reg:.2} s | {gone:.2} s | {human:.2} s | {drain:.2} s |"
        );
        eprintln!("{row}");
        self.rows.push(row);
    }

    fn leader(&self) -> usize {
        self.zk
            .nodes
            .iter()
            .position(|n| n.mode().as_deref() == Some("leader"))
            .expect("a leader")
    }

    /// The presenter holding the lock: the one whose log says so last.
    fn leading_presenter(&self) -> usize {
        (0..self.presenters.len())
            .find(|&i| self.presenters[i].log_text().contains("leader: publishing"))
            .expect("a leading presenter")
    }
}

#[test]
fn the_dns_follows_every_change_through_every_fault() {
    let mut p = Plant::start(None);
    // Each probe needs robots to kill: keep a few spare.
    for _ in 0..3 {
        p.add_robot(REGISTER_S);
    }
    p.probe("none", "-");

    // The leader killed: the others elect one; the killed member comes back.
    let l = p.leader();
    p.zk.nodes[l].kill();
    p.probe("leader killed", "during");
    p.zk.nodes[l].restart();
    p.zk.wait_serving();
    p.probe("leader killed", "after restart");

    // A follower killed and restarted.
    let f = (p.leader() + 1) % 3;
    p.zk.nodes[f].kill();
    p.probe("follower killed", "during");
    p.zk.nodes[f].restart();
    p.zk.wait_serving();
    p.probe("follower killed", "after restart");

    // The whole ensemble restarted (every client reconnects; sessions survive on disk).
    for n in &mut p.zk.nodes {
        n.kill();
    }
    for n in &mut p.zk.nodes {
        n.restart();
    }
    p.zk.wait_serving();
    // Every client is reconnecting to members that were all down: the client library paces
    // its attempts about a second apart, which a first change after the restart waits for.
    p.slack = 1.0;
    p.probe("whole ensemble restarted", "after restart");
    p.slack = 0.0;

    // A robot frozen past its session: it leaves, then registers again when it wakes.
    let (robot, name) = p.robots.remove(0);
    let addr = p.a(&name);
    robot.signal("STOP");
    let gone = wait(
        "frozen robot",
        (SESSION_MS + GRACE_MS) as f64 / 1000.0 + SETTLE_S,
        || p.a(&name),
        Vec::<String>::new(),
    );
    robot.signal("CONT");
    let back = wait("woken robot", REGISTER_S, || p.a(&name), addr);
    let row = format!("| robot session expired (SIGSTOP) | leaves / back after SIGCONT | - | {gone:.2} s | - | back in {back:.2} s |");
    eprintln!("{row}");
    p.rows.push(row);
    p.robots.push((robot, name));
    p.probe("robot session expired", "after");

    // The leading presenter frozen past its session: the other takes over; the old one,
    // woken, is fenced and moves nothing.
    let old = p.leading_presenter();
    p.presenters[old].signal("STOP");
    std::thread::sleep(Duration::from_millis(SESSION_MS + 500));
    p.probe("leading presenter frozen", "during");
    // Woken, the old leader holds state it never published; its session is gone, so the
    // fenced pointer move must fail and the pointer stay where the new leader put it.
    let pointer = p.zk.get("/geodns/snapshot").unwrap();
    p.presenters[old].signal("CONT");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        p.zk.get("/geodns/snapshot").unwrap(),
        pointer,
        "the fenced presenter moved the pointer\n{}",
        p.presenters[old].log_text()
    );
    p.probe("leading presenter frozen", "after SIGCONT");

    // The server frozen past its session: changes made meanwhile reach it when it wakes.
    let kill = |sig: &str, pid: u32| {
        Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap()
    };
    kill("STOP", p.server.pid());
    std::thread::sleep(Duration::from_millis(SESSION_MS + 500));
    p.n += 1;
    let (name, addr) = (p.name(p.n), "10.3.0.1".to_owned());
    let robot = p.robot(&name, &addr);
    std::thread::sleep(Duration::from_millis(500));
    kill("CONT", p.server.pid());
    let caught = wait(
        "server after its session expired",
        PUBLISH_S,
        || p.a(&name),
        vec![addr],
    );
    let row = format!("| server session expired (SIGSTOP) | a host registered meanwhile, after SIGCONT | {caught:.2} s | - | - | - |");
    eprintln!("{row}");
    p.rows.push(row);
    p.robots.push((robot, name));
    p.probe("server session expired", "after SIGCONT");

    // The server's cache disk full: it keeps following and serving, and says why it cannot
    // save.
    p.cache_fs.fill();
    p.probe("server's cache disk full", "during");
    let log = p.server.log_text();
    assert!(
        log.contains("cannot save the snapshot to disk"),
        "the server says why it cannot save"
    );
    // The cache on disk is older than what is served, and its name says so: a restart
    // without ZooKeeper would say it serves an older snapshot.
    let cache_dir = p.dir.path().join("cache");
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&cache_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("internal-snapshot.json"))
            .collect();
        v.sort();
        v
    };
    assert!(
        names()
            .iter()
            .any(|n| n.starts_with("internal-snapshot.json.older-than-")),
        "{:?}",
        names()
    );
    let metrics = p.server.metrics();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("geodns_internal_snapshot_save_failures_total ")
                && !l.ends_with(" 0")
        ),
        "failed saves are counted"
    );
    // Space frees: the snapshot in force is saved within the retry period, so a restart
    // without ZooKeeper serves it and not an older one.
    p.cache_fs.unfill();
    p.server
        .wait_log("snapshot saved to disk after earlier failures", 1);
    assert_eq!(names(), ["internal-snapshot.json"]);
    p.probe("server's cache disk full", "after space frees");

    p.table();
}

impl Plant {
    fn table(&self) {
        eprintln!(
            "| fault | measured | registration | SIGKILLed robot gone | human publish | PoP drain |\n|---|---|---:|---:|---:|---:|\n{}",
            self.rows.join("\n")
        );
    }
}

/// A copy of the example data in a fresh directory, for a server.
fn tempdir_with_example_data() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["example.com.zone", "example-map.arrow", "example-nets.csv"] {
        std::fs::copy(crate::harness::data_dir().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

#[test]
fn the_dns_follows_through_partitions_and_a_slow_link() {
    let net = Net::new(2);
    let mut p = Plant::start(Some(&net));
    for _ in 0..3 {
        p.add_robot(REGISTER_S);
    }
    p.probe("none (server and a presenter in namespaces)", "-");

    // The server partitioned from the ensemble past its session: it keeps answering what it
    // had; what changed meanwhile reaches it once the link is back.
    let kept = p.robots[0].1.clone();
    let kept_addr = p.a(&kept);
    net.partition(0);
    let t0 = Instant::now();
    p.n += 1;
    let (name, addr) = (p.name(p.n), "10.4.0.1".to_owned());
    let robot = p.robot(&name, &addr);
    while t0.elapsed() < Duration::from_millis(SESSION_MS + 1000) {
        assert_eq!(p.a(&kept), kept_addr, "answers while partitioned");
        assert_eq!(p.www(), ["192.0.2.10"], "answers while partitioned");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(p.a(&name).is_empty(), "the partitioned server saw a change");
    net.heal(0);
    let healed = wait("the healed server", 3.0, || p.a(&name), vec![addr]);
    let row = format!("| server partitioned (nftables drop, {:.1} s) | a host registered meanwhile, after the heal | {healed:.2} s | - | - | - |", t0.elapsed().as_secs_f64() - healed);
    eprintln!("{row}");
    p.rows.push(row);
    p.robots.push((robot, name));
    p.probe("server partitioned", "after the heal");

    // The leading presenter (in namespace 1) partitioned while it holds the lock: the other
    // takes over once its session is gone; healed, it is fenced and moves nothing.
    assert!(p.presenters[0].log_text().contains("leader: publishing"));
    net.partition(1);
    std::thread::sleep(Duration::from_millis(SESSION_MS + 500));
    p.probe("leading presenter partitioned", "during");
    assert!(
        p.presenters[1].log_text().contains("leader: publishing"),
        "the other presenter took over"
    );
    let pointer = p.zk.get("/geodns/snapshot").unwrap();
    net.heal(1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        p.zk.get("/geodns/snapshot").unwrap(),
        pointer,
        "the fenced presenter moved the pointer\n{}",
        p.presenters[0].log_text()
    );
    p.probe("leading presenter partitioned", "after the heal");

    // A slow link between the server and the ensemble (200 ms each way): every change still
    // arrives, each ZooKeeper round trip 400 ms longer.
    p.link.as_ref().unwrap().set(200);
    p.slack = 2.0;
    p.probe("slow link to the ensemble (200 ms each way)", "during");
    p.link.as_ref().unwrap().set(0);
    p.slack = 0.0;
    p.probe("slow link", "after");
    p.table();
}
