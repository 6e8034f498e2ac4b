//! The collector under faults and hostile clients: a full or read-only disk (a real tmpfs),
//! forged `X-Forwarded-For` lines, idle, slow and too many connections. The rule under test:
//! a report is acknowledged only if it can be kept, and every acknowledged report ends up in a
//! file once the disk works again.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::collector::report_rows;
use crate::harness::{collector_config, http, Collector};

/// A small tmpfs mounted for one test (needs root, as CI runs; never skipped), unmounted on drop.
pub(crate) struct Tmpfs(PathBuf);

impl Tmpfs {
    pub(crate) fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        sh(&format!(
            "mount -t tmpfs -o size={size} tmpfs {}",
            dir.display()
        ));
        Tmpfs(dir.to_owned())
    }

    /// Fills the file system: `dd` until ENOSPC.
    pub(crate) fn fill(&self) {
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}/fill", self.0.display()))
            .args(["bs=64k"])
            .output()
            .unwrap();
    }

    pub(crate) fn unfill(&self) {
        std::fs::remove_file(self.0.join("fill")).unwrap();
    }

    fn remount(&self, mode: &str) {
        sh(&format!("mount -o remount,{mode} {}", self.0.display()));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn sh(cmd: &str) {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn report(i: usize) -> String {
    format!(
        r#"{{"probe_id":"disk{i:08}","results":[{{"pop":"ams","rtt_ms":5,"ok":true}},{{"pop":"iad","rtt_ms":6,"ok":true}}]}}"#
    )
}

fn metric(c: &Collector, name: &str) -> u64 {
    let (_, m) = http(c.http, "127.0.0.1", "GET", "/metrics", &[], b"");
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{m}"))
}

/// Posts reports until one is refused; returns (acknowledged, the refusal's status and body).
fn post_until_refused(c: &Collector, next: &mut usize, acked: &mut Vec<usize>) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = c.post(&report(*next));
        *next += 1;
        if status == 204 {
            acked.push(*next - 1);
        } else {
            return (status, body);
        }
        assert!(
            Instant::now() < deadline,
            "still acknowledging after 20 s on a failing disk"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the collector takes reports again, posting one every 50 ms.
fn post_until_accepted(c: &Collector, next: &mut usize, acked: &mut Vec<usize>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = c.post(&report(*next));
        *next += 1;
        if status == 204 {
            acked.push(*next - 1);
            return;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            Instant::now() < deadline,
            "the collector did not recover: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ids_in_files(root: &Path) -> Vec<usize> {
    let mut ids: Vec<usize> = report_rows(root)
        .iter()
        .filter(|r| r.1 == "ams")
        .map(|r| r.0["disk".len()..].parse().unwrap())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_full_or_read_only_disk_is_refused_with_503_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("logs"), "5m");
    let cfg = collector_config(
        "rate_per_second = 100000\nrate_burst = 100000",
        "max_age_ms = 100",
    );
    let mut c = Collector::start(dir.path(), &cfg);
    let (mut next, mut acked) = (0, Vec::new());
    for _ in 0..20 {
        post_until_accepted(&c, &mut next, &mut acked);
    }
    // The disk fills: reports are acknowledged only until the first write fails, then refused
    // with a reason, and /healthz says so.
    fs.fill();
    let (status, body) = post_until_refused(&c, &mut next, &mut acked);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""reason":"log_write_failing""#), "{body}");
    let (status, health) = http(c.http, "127.0.0.1", "GET", "/healthz", &[], b"");
    assert_eq!(status, 503, "{health}");
    assert!(health.contains("No space left on device"), "{health}");
    assert_eq!(metric(&c, "geodns_beacon_log_write_failing"), 1);
    // What was acknowledged is already in files: the writer freed its reserve to write it. So
    // a kill -9 now loses nothing, and a restart on the full disk starts refusing, not failing.
    // (The flag rises just before that write lands: allow it a moment.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while ids_in_files(&dir.path().join("logs")) != acked && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        ids_in_files(&dir.path().join("logs")),
        acked,
        "acknowledged reports not on disk while it is full"
    );
    c.kill9();
    c = Collector::start(dir.path(), &cfg);
    let (status, body) = c.post(&report(next));
    next += 1;
    assert!(
        status == 503 && body.contains("log_write_failing"),
        "{status} {body}"
    );
    // While it fails, nothing more is acknowledged, the rows it holds stay bounded, and it
    // retries with backoff rather than on every request.
    let errors_before = metric(&c, "geodns_beacon_log_write_errors_total");
    for _ in 0..200 {
        let (status, _) = c.post(&report(next));
        next += 1;
        assert_eq!(status, 503);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let retries = metric(&c, "geodns_beacon_log_write_errors_total") - errors_before;
    assert!(
        retries <= 8,
        "{retries} write attempts in about 2 s while failing"
    );
    let buffered = metric(&c, "geodns_beacon_log_buffered_rows");
    assert!(
        buffered <= 2 * acked.len() as u64,
        "{buffered} rows held for {} acknowledged reports",
        acked.len()
    );
    // The disk comes back: the collector recovers by itself and writes what it had acknowledged.
    fs.unfill();
    post_until_accepted(&c, &mut next, &mut acked);
    let (status, _) = http(c.http, "127.0.0.1", "GET", "/healthz", &[], b"");
    assert_eq!(status, 200);
    // The same with a read-only file system.
    for _ in 0..5 {
        post_until_accepted(&c, &mut next, &mut acked);
    }
    fs.remount("ro");
    let (status, body) = post_until_refused(&c, &mut next, &mut acked);
    assert!(
        status == 503 && body.contains("log_write_failing"),
        "{status} {body}"
    );
    fs.remount("rw");
    post_until_accepted(&c, &mut next, &mut acked);
    // SIGTERM flushes; then every acknowledged report is in a file, each once, and no refused one.
    Command::new("kill")
        .args(["-TERM", &c.pid().to_string()])
        .status()
        .unwrap();
    c.wait_exit();
    assert_eq!(
        ids_in_files(&dir.path().join("logs")),
        acked,
        "files hold exactly the acknowledged reports"
    );
}

#[test]
fn every_x_forwarded_for_line_counts_and_a_proxy_without_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &collector_config("", "max_age_ms = 100"));
    let body = r#"{"probe_id":"xfflines01","results":[{"pop":"iad","rtt_ms":80,"ok":true}]}"#;
    // The client sent its own line first; the trusted proxy added the real address on a second.
    let (status, text) = http(
        c.http,
        "127.0.0.2",
        "POST",
        "/v1/report",
        &[
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-For", "198.51.100.9"),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 204, "{text}");
    for headers in [
        vec![],
        vec![("X-Forwarded-For", "unknown")],
        vec![
            ("X-Forwarded-For", "198.51.100.1"),
            ("X-Forwarded-For", "junk"),
        ],
    ] {
        let (status, text) = http(
            c.http,
            "127.0.0.2",
            "POST",
            "/v1/report",
            &headers,
            body.as_bytes(),
        );
        assert_eq!(status, 400, "{headers:?}: {text}");
        assert!(text.contains(r#""reason":"bad_forwarded_for""#), "{text}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while report_rows(&dir.path().join("logs")).is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let rows = report_rows(&dir.path().join("logs"));
    assert_eq!(
        rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        ["198.51.100.9"]
    );
    // Unknown paths and methods answer with a JSON reason like every other refusal.
    let (status, text) = http(c.http, "127.0.0.1", "GET", "/nope", &[], b"");
    assert!(
        status == 404 && text.contains(r#""reason":"not_found""#),
        "{status} {text}"
    );
    let (status, text) = http(c.http, "127.0.0.1", "GET", "/v1/report", &[], b"");
    assert!(
        status == 405 && text.contains(r#""reason":"method_not_allowed""#),
        "{status} {text}"
    );
}

/// Reads until EOF or error; returns how long that took and what arrived.
fn read_to_close(s: &mut TcpStream) -> (Duration, String) {
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    (t.elapsed(), String::from_utf8_lossy(&buf).into_owned())
}

#[test]
fn idle_slow_and_surplus_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(
        dir.path(),
        &collector_config(
            "max_connections = 4\nheader_timeout_ms = 600\nbody_timeout_ms = 600",
            "",
        ),
    );
    // Idle: closed after the header timeout, not held open.
    let mut idle = TcpStream::connect(c.http).unwrap();
    let (took, _) = read_to_close(&mut idle);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "idle connection held {took:?}"
    );
    // Headers a byte at a time: closed at the header timeout although bytes keep coming.
    let mut slow = TcpStream::connect(c.http).unwrap();
    let t = Instant::now();
    for b in b"POST /v1/report HTTP/1.1\r\nHost: x\r\n" {
        if slow.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, _) = read_to_close(&mut slow);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "byte-a-second headers held {:?}",
        t.elapsed()
    );
    // A body that never finishes: 408 with a reason.
    let mut body = TcpStream::connect(c.http).unwrap();
    body.write_all(b"POST /v1/report HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"probe")
        .unwrap();
    let (took, text) = read_to_close(&mut body);
    assert!(
        text.starts_with("HTTP/1.1 408") && text.contains("body_timeout"),
        "{text}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    // Four idle connections fill the limit: the fifth gets a 503 at once, counted and logged.
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(c.http).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut fifth = TcpStream::connect(c.http).unwrap();
    let (took, text) = read_to_close(&mut fifth);
    assert!(
        text.starts_with("HTTP/1.1 503") && text.contains("connection_limit"),
        "{text}"
    );
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert!(
        c.log_text().contains("connection limit reached"),
        "{}",
        c.log_text()
    );
    // Once the idle ones time out, the collector serves again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = http(c.http, "127.0.0.1", "GET", "/healthz", &[], b"");
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "healthz {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metric(&c, "geodns_beacon_connections_refused_total") >= 1);
    assert!(metric(&c, "geodns_beacon_connections_timed_out_total") >= 2);
}
