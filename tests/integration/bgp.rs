//! Real BGP: Debian's `exabgp` runs `geodns announce` as its API process and peers with a real
//! BIRD 2 over 127.0.0.1 -> 127.0.0.2 (BIRD passive, multihop, on a free port). The service
//! behind the VIP is a TCP listener this test opens and closes. The announce process publishes
//! the PoP's health to a real ZooKeeper, which the DNS server follows.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::{addresses, example_config, free_port, message, Server};
use crate::zk::ZooKeeper;

const VIP: &str = "192.0.2.10/32";

struct Bird {
    child: Child,
    ctl: PathBuf,
}

impl Bird {
    fn start(dir: &Path, port: u16) -> Bird {
        let conf = dir.join("bird.conf");
        std::fs::write(
            &conf,
            format!(
                "router id 127.0.0.2;\nprotocol device {{}}\nprotocol bgp exa {{\n  local 127.0.0.2 port {port} as 65000;\n  \
                 neighbor 127.0.0.1 as 65001;\n  multihop;\n  passive on;\n  ipv4 {{ import all; export none; }};\n}}\n"
            ),
        )
        .unwrap();
        let ctl = dir.join("bird.ctl");
        let child = Command::new("bird")
            .args(["-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(&ctl)
            .arg("-P")
            .arg(dir.join("bird.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("bird.log")).unwrap())
            .spawn()
            .expect("bird is installed (Debian package bird2; scripts/test.sh installs it)");
        Bird { child, ctl }
    }

    fn routes(&self) -> String {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.ctl)
            .args(["show", "route", "all"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `pred` holds for BIRD's routes; returns how long it took.
    fn wait(&self, what: &str, within: Duration, pred: impl Fn(&str) -> bool) -> Duration {
        let t0 = Instant::now();
        loop {
            let r = self.routes();
            if pred(&r) {
                return t0.elapsed();
            }
            assert!(t0.elapsed() < within, "{what}: BIRD has\n{r}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct ExaBgp {
    child: Child,
    log: PathBuf,
}

impl ExaBgp {
    fn start(dir: &Path, port: u16, announce_cfg: &Path) -> ExaBgp {
        let conf = dir.join("exabgp.conf");
        std::fs::write(
            &conf,
            format!(
                "process announce {{\n  run {bin} announce -c {cfg};\n  encoder text;\n}}\n\
                 neighbor 127.0.0.2 {{\n  router-id 127.0.0.1;\n  local-address 127.0.0.1;\n  local-as 65001;\n  \
                 peer-as 65000;\n  api {{ processes [ announce ]; }}\n}}\n",
                bin = env!("CARGO_BIN_EXE_geodns"),
                cfg = announce_cfg.display()
            ),
        )
        .unwrap();
        let log = dir.join("exabgp.log");
        let child = Command::new("exabgp")
            .arg(&conf)
            .env("exabgp.tcp.port", port.to_string())
            .env("exabgp.daemon.user", "root")
            .env("exabgp.api.cli", "false")
            .env("exabgp.log.level", "INFO")
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("exabgp.err")).unwrap())
            .spawn()
            .expect("exabgp is installed (Debian package exabgp; scripts/test.sh installs it)");
        ExaBgp { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ExaBgp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- exabgp ----\n{}", self.log_text());
        }
    }
}

/// A ECS client of ams (198.51.100.128/25 ranks ams, then iad).
fn www(s: &Server) -> Vec<String> {
    addresses(&s.query(&message(
        "www.example.com.",
        RecordType::A,
        Some("198.51.100.200/32"),
    )))
}

fn wait_www(s: &Server, want: &str, within: Duration) -> Duration {
    let t0 = Instant::now();
    while www(s) != [want] {
        assert!(t0.elapsed() < within, "www: {:?}, want {want}", www(s));
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

#[test]
fn exabgp_announces_drains_and_withdraws_and_the_dns_follows() {
    let dir = tempfile::tempdir().unwrap();
    let zk = ZooKeeper::standalone();
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let service_addr = service.local_addr().unwrap();
    let maintenance = dir.path().join("maintenance");
    let load = dir.path().join("load");
    let cfg = dir.path().join("announce.toml");
    std::fs::write(
        &cfg,
        format!(
            "pop = \"ams\"\nlocal_as = 65001\nload_file = \"{}\"\n[[vips]]\nprefix = \"{VIP}\"\nnext_hop = \"127.0.0.1\"\n\
             interval_ms = 200\ntimeout_ms = 200\nrise = 3\nfall = 2\n\
             check = {{ kind = \"tcp\", addr = \"{service_addr}\" }}\n\
             [drain]\nfile = \"{}\"\ngrace_ms = 1500\n\
             [publish]\nzookeeper = {{ connect = \"{}\" }}\n",
            load.display(),
            maintenance.display(),
            zk.connect()
        ),
    )
    .unwrap();
    let s = Server::start(&example_config(
        "",
        &format!(
            "[zookeeper]\nconnect = \"{}\"\nrecheck_ms = 1000\nsession_timeout_ms = 2000\nzones = []\n",
            zk.connect()
        ),
    ));
    assert_eq!(www(&s), ["192.0.2.10"], "ams serves before any BGP");
    let port = free_port();
    let bird = Bird::start(dir.path(), port);
    let exa = ExaBgp::start(dir.path(), port, &cfg);

    // Healthy: the route appears after `rise` checks.
    bird.wait("announced", Duration::from_secs(20), |r| {
        r.contains("192.0.2.10/32") && r.contains("BGP.med: 100")
    });
    assert!(!bird.routes().contains("65535,0"));

    // Maintenance: less preferred first (GRACEFUL_SHUTDOWN), the DNS drains the PoP, then the
    // route goes.
    std::fs::write(&maintenance, "").unwrap();
    bird.wait("draining", Duration::from_secs(5), |r| {
        r.contains("(65535,0)")
    });
    wait_www(&s, "192.0.2.20", Duration::from_secs(5));
    assert!(s
        .dig(&["_status.example.com", "TXT", "+short"])
        .contains("down=ams:bgp-"));
    bird.wait(
        "withdrawn after the grace period",
        Duration::from_secs(5),
        |r| !r.contains("192.0.2.10/32"),
    );
    std::fs::remove_file(&maintenance).unwrap();
    bird.wait("back after maintenance", Duration::from_secs(5), |r| {
        r.contains("192.0.2.10/32") && !r.contains("65535,0")
    });
    wait_www(&s, "192.0.2.10", Duration::from_secs(5));

    // The service dies: withdrawn within the fall time (2 x 200 ms, plus a check's timeout).
    drop(service);
    let gone = bird.wait("withdrawn on failure", Duration::from_secs(5), |r| {
        !r.contains("192.0.2.10/32")
    });
    assert!(gone < Duration::from_millis(1500), "{gone:?}");
    wait_www(&s, "192.0.2.20", Duration::from_secs(5));
    let m = s.metrics();
    assert!(
        m.contains("geodns_pop_up{pop=\"ams\"} 0")
            && m.contains("geodns_pop_drained{pop=\"ams\",reason=\"bgp-down\"} 1"),
        "{m}"
    );

    // It comes back: announced again after `rise` successes, and the DNS returns to ams.
    let _service = TcpListener::bind(service_addr).unwrap();
    bird.wait("back after rise", Duration::from_secs(5), |r| {
        r.contains("192.0.2.10/32")
    });
    wait_www(&s, "192.0.2.10", Duration::from_secs(5));

    // Live load: above the high watermark the PoP gets no answers; back below the low one, all.
    std::fs::write(&load, "0.99\n").unwrap();
    wait_www(&s, "192.0.2.20", Duration::from_secs(5));
    assert!(s
        .dig(&["_status.example.com", "TXT", "+short"])
        .contains("down=ams:load"));
    std::fs::write(&load, "0.5\n").unwrap();
    wait_www(&s, "192.0.2.10", Duration::from_secs(5));

    // ExaBGP stopping ends the process, which withdraws first and publishes the PoP down.
    drop(exa);
    wait_www(&s, "192.0.2.20", Duration::from_secs(10));
}

/// `geodns announce` alone, as ExaBGP would run it (commands on its stdout, our stdin open):
/// DNS and HTTP checks against a real server, a check that never passes, and SIGTERM
/// withdrawing what it announced before it exits.
#[test]
fn announce_checks_dns_and_http_and_withdraws_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&example_config("", ""));
    let cfg = dir.path().join("announce.toml");
    std::fs::write(
        &cfg,
        format!(
            "pop = \"ams\"\n\
             [[vips]]\nprefix = \"192.0.2.11/32\"\ninterval_ms = 100\n\
             check = {{ kind = \"dns\", server = \"{dns}\", name = \"www.example.com\" }}\n\
             [[vips]]\nprefix = \"192.0.2.12/32\"\ninterval_ms = 100\n\
             check = {{ kind = \"http\", url = \"http://{m}/metrics\", status = 200 }}\n\
             [[vips]]\nprefix = \"192.0.2.13/32\"\ninterval_ms = 100\n\
             check = {{ kind = \"http\", url = \"http://{m}/nope\", status = 200 }}\n\
             [[vips]]\nprefix = \"192.0.2.14/32\"\ninterval_ms = 100\n\
             check = {{ kind = \"dns\", server = \"{dns}\", name = \"nothing.example.com\" }}\n",
            dns = s.dns,
            m = s.metrics
        ),
    )
    .unwrap();
    // A proxy in the environment (meant for something else, and dead) must not touch the
    // checks: they ask the service directly unless the config names a proxy (issue 19).
    let dead = "http://127.0.0.1:9";
    let mut child = announce_with(
        &cfg,
        &dir.path().join("announce.log"),
        &[
            ("http_proxy", dead),
            ("HTTP_PROXY", dead),
            ("all_proxy", dead),
        ],
    );
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(lines
        .iter()
        .any(|l: &String| l.starts_with("announce route 192.0.2.11/32"))
        && lines
            .iter()
            .any(|l| l.starts_with("announce route 192.0.2.12/32")))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => panic!(
                "not announced: {lines:?}\n{}",
                std::fs::read_to_string(dir.path().join("announce.log")).unwrap()
            ),
        }
    }
    // Let the failing checks run past their fall count too.
    std::thread::sleep(Duration::from_millis(700));
    while let Ok(l) = rx.try_recv() {
        lines.push(l);
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("192.0.2.13/32") || l.contains("192.0.2.14/32")),
        "a 404 and an NXDOMAIN are not healthy: {lines:?}"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
        lines.push(l);
    }
    assert!(status.success(), "{status:?}");
    for vip in ["192.0.2.11/32", "192.0.2.12/32"] {
        assert!(
            lines.contains(&format!("withdraw route {vip} next-hop self")),
            "{vip} withdrawn before exit: {lines:?}"
        );
    }
    assert!(!lines
        .iter()
        .any(|l| l.starts_with("withdraw route 192.0.2.13")));
}

/// ExaBGP 4.2 announces its shutdown on our stdin as `shutdown <pid> <ppid>`: routes are
/// withdrawn and the process exits at once, with stdin still open (issue 19).
#[test]
fn announce_ends_on_exabgp_42s_shutdown_line() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&example_config("", ""));
    let cfg = dir.path().join("announce.toml");
    std::fs::write(
        &cfg,
        format!(
            "pop = \"ams\"\n[[vips]]\nprefix = \"192.0.2.21/32\"\ninterval_ms = 100\n\
             check = {{ kind = \"dns\", server = \"{}\", name = \"www.example.com\" }}\n",
            s.dns
        ),
    )
    .unwrap();
    let mut child = announce(&cfg, &dir.path().join("announce.log"));
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = out.next().unwrap().unwrap();
    assert!(first.starts_with("announce route 192.0.2.21/32"), "{first}");
    let t = Instant::now();
    writeln!(stdin, "done").unwrap();
    writeln!(stdin, "shutdown 4242 1").unwrap();
    stdin.flush().unwrap();
    let next = out.next().unwrap().unwrap();
    assert_eq!(next, "withdraw route 192.0.2.21/32 next-hop self");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let log = std::fs::read_to_string(dir.path().join("announce.log")).unwrap();
    assert!(log.contains("ExaBGP shutdown"), "{log}");
    drop(stdin);
}

/// Health per VIP (issue 19): a PoP with two VIPs, one of them failing its check, keeps
/// being answered with the other only; the status record and the metrics name the VIP out.
/// With both out the PoP drains. `geodns announce` publishes through a real ZooKeeper, the
/// server follows it.
#[test]
fn a_failing_vip_leaves_the_answers_while_its_pop_stays() {
    use std::io::{BufRead, BufReader};
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&example_config(
        "",
        &format!(
            "[zookeeper]\nconnect = \"{}\"\njitter_ms = 50\nsession_timeout_ms = 2000\nzones = []\n",
            zk.connect()
        ),
    ));
    // No ECS from 127.0.0.1: sin (192.0.2.30 and 192.0.2.31).
    let www = || -> Vec<String> {
        let mut v: Vec<String> = s
            .dig(&["www.example.com", "A", "+short"])
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(www(), ["192.0.2.30", "192.0.2.31"]);
    let cfg = dir.path().join("announce.toml");
    // Each VIP checks a TCP listener the test opens and closes: its service.
    let l30 = TcpListener::bind("127.0.0.1:0").unwrap();
    let l31 = TcpListener::bind("127.0.0.1:0").unwrap();
    let (p30, p31) = (
        l30.local_addr().unwrap().port(),
        l31.local_addr().unwrap().port(),
    );
    std::fs::write(
        &cfg,
        format!(
            "pop = \"sin\"\n\
             [[vips]]\nprefix = \"192.0.2.30/32\"\ninterval_ms = 100\nrise = 1\nfall = 1\n\
             check = {{ kind = \"tcp\", addr = \"127.0.0.1:{p30}\" }}\n\
             [[vips]]\nprefix = \"192.0.2.31/32\"\ninterval_ms = 100\nrise = 1\nfall = 1\n\
             check = {{ kind = \"tcp\", addr = \"127.0.0.1:{p31}\" }}\n\
             [publish]\nzookeeper = {{ connect = \"{}\", root = \"/geodns\" }}\n",
            zk.connect()
        ),
    )
    .unwrap();
    let mut child = announce(&cfg, &dir.path().join("announce.log"));
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(out).lines() {});
    let wait = |want: &[&str], within: Duration| {
        let t0 = Instant::now();
        while www() != want {
            assert!(
                t0.elapsed() < within,
                "www {:?}, want {want:?}\n{}\n{}",
                www(),
                std::fs::read_to_string(dir.path().join("announce.log")).unwrap(),
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        t0.elapsed()
    };
    // Both up (published), then 192.0.2.30's service dies: only .31 is answered.
    std::thread::sleep(Duration::from_millis(500));
    drop(l30);
    let t = wait(&["192.0.2.31"], Duration::from_secs(3));
    eprintln!("a failed VIP left the answers in {t:?}");
    // Published once per change: a second of checks (ten per VIP) that change nothing writes
    // nothing.
    let version = || {
        let connect = zk.connect();
        crate::zk::runtime().block_on(async move {
            let c = zookeeper_client::Client::connect(&connect).await.unwrap();
            c.get_data("/geodns/health/sin").await.unwrap().1.version
        })
    };
    let v1 = version();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(version(), v1, "health published without a change");
    let status = s.dig(&["_status.example.com", "TXT", "+short"]);
    assert!(status.contains("vips-out=sin:192.0.2.30/32"), "{status}");
    assert!(status.contains("down=none"), "the PoP stays: {status}");
    let metrics = s.metrics();
    assert!(
        metrics.contains("geodns_vip_out{pop=\"sin\",vip=\"192.0.2.30\"} 1")
            && metrics.contains("geodns_vip_out{pop=\"sin\",vip=\"192.0.2.31\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("geodns_pop_up{pop=\"sin\"} 1"));
    // Both dead: the PoP is down and the next one answers.
    drop(l31);
    wait(&["192.0.2.10"], Duration::from_secs(3));
    // .30's service back: it alone is answered again.
    let _l30 = TcpListener::bind(("127.0.0.1", p30)).unwrap();
    wait(&["192.0.2.30"], Duration::from_secs(3));
    let _ = child.kill();
    let _ = child.wait();
}

/// `geodns announce -c cfg` as ExaBGP runs it: stdin and stdout piped, the log to `log`.
pub(crate) fn announce(cfg: &Path, log: &Path) -> Child {
    announce_with(cfg, log, &[])
}

/// [`announce`] with more environment variables.
fn announce_with(cfg: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    crate::harness::geodns()
        .args(["announce", "-c"])
        .arg(cfg)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}
