//! The page snippet in a real browser: headless Chromium (Debian's) loads the collector's demo
//! page inside a private network namespace whose resolv.conf points at our DNS server, so every
//! probe name is really resolved by `geodns serve` and really fetched over HTTP, and the report
//! is really posted by the snippet. Both logs must then hold the same probe id for every PoP.
//! Nothing leaves the namespace (it has only a loopback interface).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::collector::report_rows;
use crate::harness::{collector_config, data_dir, example_config, Collector, Server};
use crate::probe::probe_rows;

/// A network namespace with only loopback (up), removed on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new() -> Netns {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "geodns-t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "cannot create network namespace {name}: the browser test needs root and iproute2 (scripts/test.sh installs it)");
        let ns = Netns(name);
        assert!(Command::new("ip")
            .args(["-n", &ns.0, "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success());
        // `ip netns exec` bind-mounts this over /etc/resolv.conf inside the namespace.
        let etc = format!("/etc/netns/{}", ns.0);
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            format!("{etc}/resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:2 attempts:2\n",
        )
        .unwrap();
        ns
    }
}

/// Headless Chromium in `ns`, with a fresh profile and no background traffic of its own; the
/// caller adds flags and the URL.
pub fn headless_chromium(ns: &Netns, profile: &std::path::Path) -> Command {
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        &ns.0,
        "chromium",
        "--headless",
        "--no-sandbox",
    ])
    .args([
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
    ])
    .args([
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.0));
    }
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn snippet_in_chromium_measures_every_pop_and_both_logs_join() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    for f in ["example.com.zone", "example-map.arrow"] {
        std::fs::copy(data_dir().join(f), dir.path().join(f)).unwrap();
    }
    // Probe names resolve to loopback addresses where the collector (on :80) serves the probe
    // object; `collector.example.com` is the page's host.
    let cfg = example_config("", "")
        .replace("dns = [\"127.0.0.1:0\"]", "dns = [\"127.0.0.1:53\"]")
        .replace("max_age_ms = 10000", "max_age_ms = 200")
        .replace(
            "vip4 = [\"192.0.2.10\"]",
            "vip4 = [\"192.0.2.10\"]\nprobe4 = [\"127.0.1.1\"]\nprobe6 = []",
        )
        .replace(
            "vip4 = [\"192.0.2.20\"]",
            "vip4 = [\"192.0.2.20\"]\nprobe4 = [\"127.0.1.2\"]\nprobe6 = []",
        )
        .replace(
            "vip4 = [\"192.0.2.30\", \"192.0.2.31\"]",
            "vip4 = [\"192.0.2.30\", \"192.0.2.31\"]\nprobe4 = [\"127.0.1.3\"]\nprobe6 = []",
        )
        .replace(
            "records = [",
            "records = [\"collector 300 IN A 127.0.0.1\", ",
        );
    let server = Server::start_netns(dir, &cfg, "info", Some(&ns.0));
    let cdir = tempfile::tempdir().unwrap();
    let collector = Collector::start_netns(
        cdir.path(),
        &collector_config("probe_scheme = \"http\"", "max_age_ms = 200")
            .replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:80\""),
        Some(&ns.0),
    );

    let profile = tempfile::tempdir().unwrap();
    let chromium = headless_chromium(&ns, profile.path())
        .arg("http://collector.example.com/demo")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run chromium (scripts/test.sh installs it)");
    let _chromium = Killed(chromium);

    let deadline = Instant::now() + Duration::from_secs(60);
    let reports = loop {
        let rows = report_rows(&collector.dir.join("logs"));
        if rows.len() >= 3 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "no report from the browser; collector log:\n{}\nserver log:\n{}",
            collector.log_text(),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // One page view: one probe id, one result per PoP, each a successful timed fetch.
    let id = reports[0].0.clone();
    assert!(
        id.len() == 20 && reports.iter().all(|r| r.0 == id),
        "{reports:?}"
    );
    let mut pops: Vec<&str> = reports.iter().map(|r| r.1.as_str()).collect();
    pops.sort();
    assert_eq!(pops, ["ams", "iad", "sin"]);
    for r in &reports {
        assert!(
            r.4 && r.3.is_some_and(|ms| ms > 0.0 && ms < 10_000.0),
            "{r:?}"
        );
        assert_eq!(r.2, "127.0.0.1", "client address");
    }
    // The DNS side logged the same probe id for every PoP: the join mapgen will do.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probes = probe_rows(&server.path("beacon-logs"));
        let mut seen: Vec<String> = probes
            .iter()
            .filter(|p| p.0 == id && p.4 == 1)
            .filter_map(|p| p.1.clone())
            .collect();
        seen.sort();
        seen.dedup();
        if seen == ["ams", "iad", "sin"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dns_probe rows for {id}: {probes:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
