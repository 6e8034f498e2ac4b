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
//! Faults: the leader killed, a follower killed, the whole ensemble restarted, and sessions
//! expired by a frozen process (SIGSTOP past the session timeout) for a robot, the leading
//! presenter (the other takes over; the old one, fenced, moves nothing) and the server.
//! Partitions with packet drops in network namespaces and a slowed ensemble are not here yet.
//! The figures go to stderr (`--nocapture`) and docs/perf.md.

use std::time::{Duration, Instant};

use crate::harness::{example_config, Server};
use crate::internal::{a, presenter, presenter_config, publish, ZONE};
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
    robots: Vec<(Proc, String)>,
    n: usize,
    rows: Vec<String>,
}

/// The ECS client of ams in the example map (198.51.100.128/25 ranks ams, then iad).
fn www(s: &Server) -> Vec<String> {
    s.dig(&[
        "www.example.com",
        "A",
        "+short",
        "+subnet=198.51.100.200/32",
    ])
    .lines()
    .map(str::to_owned)
    .collect()
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
    fn start() -> Plant {
        let zk = ZooKeeper::ensemble(3);
        let dir = tempfile::tempdir().unwrap();
        let cfg = presenter_config(&zk, &format!("grace_ms = {GRACE_MS}"), "").replace(
            "session_timeout_ms = 2000",
            &format!("session_timeout_ms = {SESSION_MS}"),
        );
        let presenters = vec![
            presenter(dir.path(), &cfg, &[]),
            presenter(dir.path(), &cfg, &[]),
        ];
        // The server's periodic re-read stays at its default (30 s): only pushes can pass.
        let server = Server::start(&example_config(
            "",
            &format!(
                "[zookeeper]\nconnect = \"{}\"\njitter_ms = 50\nsession_timeout_ms = {SESSION_MS}\n",
                zk.connect()
            ),
        ));
        let mut p = Plant {
            zk,
            dir,
            presenters,
            server,
            robots: Vec::new(),
            n: 0,
            rows: Vec::new(),
        };
        p.add_robot(30.0);
        p
    }

    fn name(&self, i: usize) -> String {
        format!("f{i}.prn1.{ZONE}")
    }

    /// Registers one more robot; the seconds until the server answers it.
    fn add_robot(&mut self, within: f64) -> f64 {
        self.n += 1;
        let (name, addr) = (
            self.name(self.n),
            format!("10.1.{}.{}", self.n / 200, self.n % 200 + 1),
        );
        let t0 = Instant::now();
        let robot = register(
            &self.zk,
            self.dir.path(),
            &name,
            &addr,
            &["--session-timeout-ms", &SESSION_MS.to_string()],
        );
        let s = &self.server;
        wait(&name, within, || a(s, &name), vec![addr.clone()]);
        self.robots.push((robot, name));
        t0.elapsed().as_secs_f64()
    }

    /// SIGKILLs the oldest robot; the seconds until the server stops answering it.
    fn kill_robot(&mut self) -> f64 {
        let (robot, name) = self.robots.remove(0);
        robot.signal("KILL");
        let s = &self.server;
        let within = (SESSION_MS + GRACE_MS) as f64 / 1000.0 + SETTLE_S;
        wait(&name, within, || a(s, &name), Vec::<String>::new())
    }

    /// Publishes a new human record; the seconds until it is answered.
    fn human(&mut self) -> f64 {
        self.n += 1;
        let addr = format!("10.2.0.{}", self.n % 250 + 1);
        let t0 = Instant::now();
        publish(self.dir.path(), ZONE, &format!("human IN A {addr}\n"));
        let s = &self.server;
        let name = format!("human.{ZONE}");
        wait(&name, PUBLISH_S, || a(s, &name), vec![addr.clone()]);
        t0.elapsed().as_secs_f64()
    }

    /// Drains ams through `<root>/health` and brings it back; the seconds until the answer
    /// moved to iad.
    fn drain(&mut self) -> f64 {
        let node = "/geodns/health/ams";
        self.zk
            .set(node, br#"{"pop":"ams","state":"down","vips":[]}"#);
        let s = &self.server;
        let t = wait(
            "drained www",
            DRAIN_S,
            || www(s),
            vec!["192.0.2.20".to_owned()],
        );
        self.zk
            .set(node, br#"{"pop":"ams","state":"up","vips":[]}"#);
        wait(
            "undrained www",
            DRAIN_S,
            || www(s),
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
    let mut p = Plant::start();
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
    p.probe("whole ensemble restarted", "after restart");

    // A robot frozen past its session: it leaves, then registers again when it wakes.
    let (robot, name) = p.robots.remove(0);
    let addr = a(&p.server, &name);
    robot.signal("STOP");
    let s = &p.server;
    let gone = wait(
        "frozen robot",
        (SESSION_MS + GRACE_MS) as f64 / 1000.0 + SETTLE_S,
        || a(s, &name),
        Vec::<String>::new(),
    );
    robot.signal("CONT");
    let back = wait("woken robot", REGISTER_S, || a(s, &name), addr);
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
        std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap()
    };
    kill("STOP", p.server.pid());
    std::thread::sleep(Duration::from_millis(SESSION_MS + 500));
    p.n += 1;
    let (name, addr) = (p.name(p.n), "10.3.0.1".to_owned());
    let robot = register(&p.zk, p.dir.path(), &name, &addr, &[]);
    std::thread::sleep(Duration::from_millis(500));
    kill("CONT", p.server.pid());
    let s = &p.server;
    let caught = wait(
        "server after its session expired",
        PUBLISH_S,
        || a(s, &name),
        vec![addr],
    );
    let row = format!("| server session expired (SIGSTOP) | a host registered meanwhile, after SIGCONT | {caught:.2} s | - | - | - |");
    eprintln!("{row}");
    p.rows.push(row);
    p.robots.push((robot, name));
    p.probe("server session expired", "after SIGCONT");

    eprintln!(
        "| fault | measured | registration | SIGKILLed robot gone | human publish | PoP drain |\n|---|---|---:|---:|---:|---:|\n{}",
        p.rows.join("\n")
    );
}
