//! The beacon collector: reports in, rtt_report Parquet out; junk refused with reasons; client
//! addresses through trusted proxies; rate limits; and nothing lost or corrupt after kill -9.

use std::path::Path;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::harness::{collector_config, http, Collector};

/// (probe_id, pop, client_ip, rtt_ms, ok) of every row in every complete rtt_report file.
pub fn report_rows(root: &Path) -> Vec<(String, String, String, Option<f64>, bool)> {
    let mut out = Vec::new();
    let Ok(parts) = std::fs::read_dir(root.join("rtt_report")) else {
        return out;
    };
    for part in parts {
        for f in std::fs::read_dir(part.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            if path.file_name().unwrap().to_string_lossy().starts_with('.') {
                continue;
            }
            let file = std::fs::File::open(&path).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap_or_else(|e| panic!("{} unreadable: {e}", path.display()))
                .build()
                .unwrap();
            for batch in reader {
                let b = batch.unwrap_or_else(|e| panic!("{}: bad batch: {e}", path.display()));
                let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
                let (id, pop, ip) = (s("probe_id"), s("pop"), s("client_ip"));
                let rtt = b
                    .column_by_name("rtt_ms")
                    .unwrap()
                    .as_primitive::<Float64Type>()
                    .clone();
                let ok = b.column_by_name("ok").unwrap().as_boolean().clone();
                for i in 0..b.num_rows() {
                    out.push((
                        id.value(i).into(),
                        pop.value(i).into(),
                        ip.value(i).into(),
                        rtt.is_valid(i).then(|| rtt.value(i)),
                        ok.value(i),
                    ));
                }
            }
        }
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

fn wait_rows(root: &Path, n: usize) -> Vec<(String, String, String, Option<f64>, bool)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = report_rows(root);
        if rows.len() >= n || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reports_become_rows_with_the_right_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &collector_config("", "max_age_ms = 200"));
    let (status, body) = c.post(r#"{"probe_id":"abcdef0001","results":[{"pop":"ams","rtt_ms":12.5,"ok":true},{"pop":"sin","ok":false}]}"#);
    assert_eq!(status, 204, "{body}");
    // Through the trusted proxy 127.0.0.2: the client is the address it forwarded.
    let body = r#"{"probe_id":"abcdef0002","results":[{"pop":"iad","rtt_ms":80,"ok":true}]}"#;
    let (status, _) = http(
        c.http,
        "127.0.0.2",
        "POST",
        "/v1/report",
        &[("X-Forwarded-For", "198.51.100.77")],
        body.as_bytes(),
    );
    assert_eq!(status, 204);
    // An untrusted peer cannot claim another address.
    let body = r#"{"probe_id":"abcdef0003","results":[{"pop":"iad","rtt_ms":81,"ok":true}]}"#;
    let (status, _) = http(
        c.http,
        "127.0.0.3",
        "POST",
        "/v1/report",
        &[("X-Forwarded-For", "198.51.100.78")],
        body.as_bytes(),
    );
    assert_eq!(status, 204);
    let rows = wait_rows(&c.dir.join("logs"), 4);
    assert_eq!(
        rows,
        [
            (
                "abcdef0001".into(),
                "ams".into(),
                "127.0.0.1".into(),
                Some(12.5),
                true
            ),
            (
                "abcdef0001".into(),
                "sin".into(),
                "127.0.0.1".into(),
                None,
                false
            ),
            (
                "abcdef0002".into(),
                "iad".into(),
                "198.51.100.77".into(),
                Some(80.0),
                true
            ),
            (
                "abcdef0003".into(),
                "iad".into(),
                "127.0.0.3".into(),
                Some(81.0),
                true
            ),
        ]
    );
    let (status, js) = http(c.http, "127.0.0.1", "GET", "/beacon.js", &[], b"");
    assert_eq!(status, 200);
    assert!(
        js.contains(r#""probeZone":"probe.example.com""#)
            && js.contains("performance.getEntriesByName"),
        "{js}"
    );
    let (status, _) = http(c.http, "127.0.0.1", "GET", "/healthz", &[], b"");
    assert_eq!(status, 200);
}

#[test]
fn junk_is_refused_with_a_reason_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(
        dir.path(),
        &collector_config(
            "max_body_bytes = 2048\nrate_burst = 1000\nrate_per_second = 1000",
            "max_age_ms = 200",
        ),
    );
    let cases: &[(&str, u16, &str)] = &[
        ("{not json", 400, "malformed_json"),
        (
            r#"{"probe_id":"abcdef0001","results":[{"pop":"fra","rtt_ms":1,"ok":true}]}"#,
            400,
            "unknown_pop",
        ),
        (
            r#"{"probe_id":"short","results":[{"pop":"ams","rtt_ms":1,"ok":true}]}"#,
            400,
            "bad_probe_id",
        ),
        (
            r#"{"probe_id":"abcdef0001","results":[{"pop":"ams","rtt_ms":-5,"ok":true}]}"#,
            400,
            "bad_rtt",
        ),
        (
            r#"{"probe_id":"abcdef0001","results":[{"pop":"ams","rtt_ms":1e9,"ok":true}]}"#,
            400,
            "bad_rtt",
        ),
    ];
    for (body, status, reason) in cases {
        let (got, text) = c.post(body);
        assert_eq!(got, *status, "{body}: {text}");
        assert!(
            text.contains(&format!("\"reason\":\"{reason}\"")),
            "{body}: {text}"
        );
    }
    let many: Vec<String> = (0..65)
        .map(|_| r#"{"pop":"ams","rtt_ms":1,"ok":true}"#.to_string())
        .collect();
    let (got, text) = c.post(&format!(
        r#"{{"probe_id":"abcdef0001","results":[{}]}}"#,
        many.join(",")
    ));
    assert_eq!(got, 413, "{text}");
    assert!(text.contains("body_too_large"), "{text}");
    // Nothing refused reached a file.
    let (ok, _) =
        c.post(r#"{"probe_id":"abcdef0009","results":[{"pop":"ams","rtt_ms":3,"ok":true}]}"#);
    assert_eq!(ok, 204);
    let rows = wait_rows(&c.dir.join("logs"), 1);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(report_rows(&c.dir.join("logs")).len(), 1, "{rows:?}");
    let (_, metrics) = http(c.http, "127.0.0.1", "GET", "/metrics", &[], b"");
    assert!(
        metrics.contains("geodns_beacon_requests_rejected_total{reason=\"bad_rtt\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("geodns_beacon_requests_rejected_total{reason=\"body_too_large\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("geodns_beacon_log_queued_rows ")
            && metrics.contains("geodns_beacon_requests_accepted_total ")
            && !metrics.contains("geodns_beacon_queue_rows")
            && !metrics.contains("geodns_beacon_reports_"),
        "{metrics}"
    );
}

#[test]
fn clients_are_rate_limited_separately() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(
        dir.path(),
        &collector_config("rate_per_second = 1\nrate_burst = 3", ""),
    );
    let body = r#"{"probe_id":"abcdef0001","results":[{"pop":"ams","rtt_ms":1,"ok":true}]}"#;
    let statuses: Vec<u16> = (0..5).map(|_| c.post(body).0).collect();
    assert_eq!(statuses, [204, 204, 204, 429, 429]);
    // Another client (through the proxy) has its own budget.
    let (status, _) = http(
        c.http,
        "127.0.0.2",
        "POST",
        "/v1/report",
        &[("X-Forwarded-For", "203.0.113.1")],
        body.as_bytes(),
    );
    assert_eq!(status, 204);
}

#[test]
fn kill_9_leaves_only_complete_files_and_loses_only_the_unflushed_window() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = collector_config(
        "rate_per_second = 100000\nrate_burst = 100000",
        "max_age_ms = 50\nmax_rows = 40",
    );
    let mut c = Collector::start(dir.path(), &cfg);
    let mut acked = 0;
    let started = Instant::now();
    // Stream reports until several files have rolled, then kill -9 mid-stream.
    while started.elapsed() < Duration::from_millis(1500) {
        let body = format!(
            r#"{{"probe_id":"kill{acked:08}","results":[{{"pop":"ams","rtt_ms":5,"ok":true}},{{"pop":"iad","rtt_ms":6,"ok":true}}]}}"#
        );
        if c.post(&body).0 == 204 {
            acked += 1;
        }
    }
    c.kill9();
    let log = c.log_text();
    let flushed: usize = log
        .lines()
        .filter(|l| l.contains("log file written"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("rows=")))
        .map(|n| n.parse::<usize>().unwrap())
        .sum();
    assert!(
        flushed > 0 && acked > 20,
        "acked {acked}, flushed {flushed}"
    );
    // Every visible file is complete and readable (report_rows panics otherwise). The files hold
    // at least what the writer logged as written; the kill may land between a file's rename and
    // its log line, so at most one more file (max_rows = 40 rows) than logged.
    let rows = report_rows(&dir.path().join("logs"));
    assert!(
        rows.len() >= flushed && rows.len() <= flushed + 40,
        "{} rows in files, {flushed} logged",
        rows.len()
    );
    assert_eq!(
        rows.len() % 2,
        0,
        "reports are never split across a crash: {}",
        rows.len()
    );
    // Only acknowledged reports, each whole.
    assert!(rows.len() <= 2 * acked);
    let files = rows.len();
    // A restart removes any temporary file the crash left, continues the sequence, and the
    // collector serves again.
    let c2 = Collector::start(dir.path(), &cfg);
    let tmp_left = walk(&dir.path().join("logs"))
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(".tmp"))
        .count();
    assert_eq!(tmp_left, 0);
    assert_eq!(
        c2.post(r#"{"probe_id":"after0001","results":[{"pop":"sin","rtt_ms":7,"ok":true}]}"#)
            .0,
        204
    );
    let after = wait_rows(&dir.path().join("logs"), files + 1);
    assert_eq!(after.len(), files + 1);
}

#[test]
fn sigterm_flushes_acknowledged_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(dir.path(), &collector_config("", "max_age_ms = 600000"));
    for i in 0..5 {
        assert_eq!(
            c.post(&format!(
                r#"{{"probe_id":"term{i:06}","results":[{{"pop":"ams","rtt_ms":9,"ok":true}}]}}"#
            ))
            .0,
            204
        );
    }
    assert!(report_rows(&dir.path().join("logs")).is_empty());
    std::process::Command::new("kill")
        .args(["-TERM", &c.pid().to_string()])
        .status()
        .unwrap();
    c.wait_exit();
    assert_eq!(report_rows(&dir.path().join("logs")).len(), 5);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
