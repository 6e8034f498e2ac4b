//! mapgen's first stage on a real Apache Spark cluster (issue 25): a standalone master and two
//! workers on loopback run `spark/first_stage.py`, and `geodns mapgen --aggregates` on what it
//! wrote must give the map of the local run byte for byte, with the same counts of what was
//! read and refused. Spark comes from the pyspark package `scripts/test.sh` installs; a missing
//! `spark-submit` fails the test.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use geodns_beacon::{LogWriter, RttReportRow, WriterConfig};

use crate::harness::{data_dir, free_port, geodns};
use crate::mapgen::{simulate_logs, small_long_tail};
use crate::mapgen_faults::{files, first_batch, write_parquet};

/// A Spark tool from the pyspark installation on PATH.
fn spark_tool(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not on PATH: scripts/test.sh installs pyspark (see docs/testing.md)")
        })
}

/// A standalone master and two one-core workers on 127.0.0.1, stopped on drop.
struct Cluster {
    url: String,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let props = dir.path().join("spark.properties");
        // No REST submission server (it would take the fixed port 6066).
        std::fs::write(&props, "spark.master.rest.enabled false\n").unwrap();
        let port = free_port();
        let url = format!("spark://127.0.0.1:{port}");
        let mut cluster = Cluster {
            url: url.clone(),
            children: Vec::new(),
            dir,
        };
        let master_log = cluster.dir.path().join("master.log");
        let master: Vec<String> = vec![
            "org.apache.spark.deploy.master.Master".into(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--webui-port".into(),
            free_port().to_string(),
            "--properties-file".into(),
            props.display().to_string(),
        ];
        cluster.spawn(&master, &master_log);
        for i in 0..2 {
            let work = cluster.dir.path().join(format!("worker{i}"));
            let worker: Vec<String> = vec![
                "org.apache.spark.deploy.worker.Worker".into(),
                "--host".into(),
                "127.0.0.1".into(),
                "--webui-port".into(),
                free_port().to_string(),
                "--cores".into(),
                "1".into(),
                "--memory".into(),
                "1536m".into(),
                "--work-dir".into(),
                work.display().to_string(),
                url.clone(),
            ];
            cluster.spawn(&worker, &cluster.dir.path().join(format!("worker{i}.log")));
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let log = std::fs::read_to_string(&master_log).unwrap_or_default();
            if log.matches("Registering worker 127.0.0.1:").count() >= 2 {
                return cluster;
            }
            assert!(
                Instant::now() < deadline,
                "two workers did not register within 90 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn env(&self, c: &mut Command) {
        // Everything on loopback, scratch space in the test's directory.
        c.env("SPARK_LOCAL_IP", "127.0.0.1")
            .env("SPARK_LOCAL_DIRS", self.dir.path())
            .env("SPARK_LOG_DIR", self.dir.path());
    }

    fn spawn(&mut self, args: &[String], log: &Path) {
        let out = std::fs::File::create(log).unwrap();
        let mut c = Command::new(spark_tool("spark-class"));
        c.args(args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null());
        self.env(&mut c);
        self.children.push(c.spawn().unwrap());
    }

    /// Runs a PySpark script on the cluster.
    fn submit(&self, script: &Path, args: &[&OsStr]) -> Output {
        let mut c = Command::new(spark_tool("spark-submit"));
        c.args(["--master", &self.url])
            .args(["--conf", "spark.driver.host=127.0.0.1"])
            .args(["--conf", "spark.driver.bindAddress=127.0.0.1"])
            .args(["--conf", "spark.ui.enabled=false"])
            .args(["--executor-memory", "1g", "--total-executor-cores", "2"])
            .arg(script)
            .args(args);
        self.env(&mut c);
        c.output().unwrap()
    }

    /// `spark/first_stage.py` with `args`; (exit status, stderr).
    fn first_stage(&self, args: &[&OsStr]) -> (bool, String) {
        let o = self.submit(&data_dir().join("../spark/first_stage.py"), args);
        (
            o.status.success(),
            format!(
                "{}\n{}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGTERM first: a worker stops its executors on the way out.
        for c in &self.children {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for c in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A batch's column `name` as the array type `T`.
fn column<T: Clone + 'static>(batch: &RecordBatch, name: &str) -> T {
    batch
        .column(batch.schema().index_of(name).unwrap())
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
        .clone()
}

/// Addresses in the forms a log may hold, valid and not; which are valid is Rust's
/// `IpAddr` grammar (with multicast IPv6 refused), and Spark must agree on every one.
const ODD_ADDRESSES: &[&str] = &[
    "2001:DB8:77::1",
    "2001:0db8:0077:0000:0000:0000:0000:0001",
    "::ffff:198.51.100.7",
    "::FFFF:c633:6408",
    "2001:db8:78::198.51.100.9",
    "1:2:3:4:5:6:7::",
    "1::2:3:4:5:6:7",
    "::",
    "::1.2.3.4",
    "1:2:3:4:5:6:1.2.3.4",
    "203.0.113.255",
    "0.0.0.0",
    "2001:db8::77::1",
    "198.051.100.7",
    "ff02::1",
    "fe80::1%eth0",
    "256.1.1.1",
    "1.2.3",
    " 198.51.100.7",
    "198.51.100.7\n",
    "2001:db8:1:2:3:4:5:6:7",
    "::1.2.3.4.5",
    "1:2:3:4:5:6:7:1.2.3.4",
    "12345::1",
    "1:2:3:4:5:6:7:8::",
    "::ffff:1.2.3",
    "[2001:db8::1]",
    "",
];

/// Adds to a simulated log: reports from clients at [`ODD_ADDRESSES`] that pair with real
/// probe queries, a copy of the probe file with its resolvers written in those forms, junk of
/// every reason, a repeated row, rows outside the window and from the future, and a copied
/// file. Returns how many of the odd addresses mapgen's parser refuses, and how many of the
/// probe rows it refuses for them.
fn salt(logs: &Path) -> (usize, usize) {
    let probe_file = files(&logs.join("dns_probe"))[0].clone();
    let batch = first_batch(&probe_file);
    let ids = column::<StringArray>(&batch, "probe_id");
    let pops = column::<StringArray>(&batch, "pop");
    let ts = column::<TimestampMicrosecondArray>(&batch, "ts");

    // The probe file again, its resolvers in odd forms and a microsecond later (so no row
    // repeats another: which of two repeats is kept is not specified).
    let resolvers: StringArray = (0..batch.num_rows())
        .map(|i| Some(ODD_ADDRESSES[i % ODD_ADDRESSES.len()]))
        .collect();
    let later: TimestampMicrosecondArray = ts
        .iter()
        .map(|t| t.map(|t| t + 1))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[batch.schema().index_of("resolver_ip").unwrap()] = std::sync::Arc::new(resolvers);
    columns[batch.schema().index_of("ts").unwrap()] = std::sync::Arc::new(later);
    let odd = RecordBatch::try_new(batch.schema(), columns).unwrap();
    write_parquet(
        &probe_file.with_file_name("odd-resolvers.parquet"),
        &odd,
        Some("1"),
    );

    let w = LogWriter::<RttReportRow>::start(WriterConfig {
        root: logs.to_owned(),
        writer_id: "salt".into(),
        max_rows: 100_000,
        max_age: Duration::from_secs(60),
        queue_rows: 100_000,
        reserve_bytes: None,
    })
    .unwrap();
    let row = |ts: i64, id: &str, pop: &str, ip: &str, rtt: Option<f64>, ok: bool| RttReportRow {
        ts,
        probe_id: id.into(),
        pop: pop.into(),
        client_ip: ip.into(),
        rtt_ms: rtt,
        ok,
        collector: "salt".into(),
    };
    let mut rows = Vec::new();
    for (i, ip) in ODD_ADDRESSES.iter().enumerate() {
        let j = (i * 7) % batch.num_rows();
        let (id, pop, t) = (ids.value(j), pops.value(j), ts.value(j) + 1_000_000);
        rows.push(row(t, id, pop, ip, Some(20.0 + i as f64 * 0.37), true));
        rows.push(row(t + 1, id, pop, ip, None, false));
    }
    let now = geodns_beacon::writer::now_micros();
    let (id, pop, t) = (ids.value(0), pops.value(0), ts.value(0));
    rows.extend([
        row(t + 7, id, pop, "198.18.0.9", Some(-4.0), true),
        row(t + 8, id, pop, "198.18.0.9", Some(1e7), true),
        row(t + 9, id, pop, "198.18.0.9", Some(f64::NAN), true),
        row(t + 10, id, pop, "198.18.0.9", None, true),
        row(t + 11, id, "nowhere", "198.18.0.9", Some(10.0), true),
        row(t + 12, "NOT-AN-ID", pop, "198.18.0.9", Some(10.0), true),
        row(t + 13, "abcdefg\n", pop, "198.18.0.9", Some(10.0), true),
        // A repeated row: used once.
        row(t + 14, id, pop, "198.18.0.10", Some(12.5), true),
        row(t + 14, id, pop, "198.18.0.10", Some(12.5), true),
        // Three days old (before the window), and from a wrong clock an hour ahead.
        row(
            now - 3 * 86_400_000_000,
            id,
            pop,
            "198.18.0.9",
            Some(10.0),
            true,
        ),
        row(now + 3_600_000_000, id, pop, "198.18.0.9", Some(10.0), true),
    ]);
    w.try_log(rows).unwrap();
    w.close();

    // A report file copied under a second name.
    let report_file = files(&logs.join("rtt_report"))[0].clone();
    std::fs::copy(&report_file, report_file.with_file_name("copy.parquet")).unwrap();
    let refused = |a: &str| geodns_mapgen::key::parse(a).is_none();
    (
        ODD_ADDRESSES.iter().filter(|a| refused(a)).count(),
        (0..batch.num_rows())
            .filter(|i| refused(ODD_ADDRESSES[i % ODD_ADDRESSES.len()]))
            .count(),
    )
}

/// A mapgen report with what differs by engine and not by outcome taken out: the sample
/// rows (any three of a reason) and the file names (Spark names files by URI).
fn comparable(report: &Path) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("samples");
                for key in ["skipped_files", "copied_files"] {
                    if let Some(list) = m.get(key).and_then(|l| l.as_array()) {
                        let n = list.len();
                        m.insert(key.into(), n.into());
                    }
                }
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    strip(&mut v);
    v
}

/// Runs `geodns mapgen` with fixed creation metadata; (exit status, stderr).
fn mapgen(config: &Path, geoip: &Path, args: &[&OsStr]) -> (bool, String) {
    let o = geodns()
        .args(["mapgen".as_ref(), "--config".as_ref(), config.as_os_str()])
        .args(["--geoip".as_ref(), geoip.as_os_str()])
        .args(["--created-at", "2026-12-06T00:00:00Z", "--generation", "t"])
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs the first stage locally and on the cluster with `opts`, then the rest locally from
/// each, and checks the maps are byte-identical and the reports agree. Returns the report.
fn same_map(c: &Cluster, dir: &Path, name: &str, opts: &[&str]) -> serde_json::Value {
    let d = |p: &str| dir.join(format!("{name}-{p}"));
    let (config, geoip, logs) = (
        dir.join("w/geodns.toml"),
        dir.join("sim/geoip.mmdb"),
        dir.join("logs"),
    );
    let opts: Vec<&OsStr> = opts.iter().map(OsStr::new).collect();
    let mut local: Vec<&OsStr> = vec!["--logs".as_ref(), logs.as_os_str()];
    let (a_map, a_report) = (d("local.arrow"), d("local.json"));
    local.extend(["--out".as_ref(), a_map.as_os_str()]);
    local.extend(["--report".as_ref(), a_report.as_os_str()]);
    local.extend(&opts);
    let a_agg = d("local-agg");
    local.extend(["--save-aggregates".as_ref(), a_agg.as_os_str()]);
    let (ok, err) = mapgen(&config, &geoip, &local);
    assert!(ok, "local mapgen: {err}");

    let agg = d("spark-agg");
    let mut spark: Vec<&OsStr> = vec!["--config".as_ref(), config.as_os_str()];
    spark.extend(["--logs".as_ref(), logs.as_os_str()]);
    spark.extend(["--out".as_ref(), agg.as_os_str()]);
    spark.extend(&opts);
    let (ok, err) = c.first_stage(&spark);
    assert!(ok, "the first stage on Spark: {err}");

    let holdout: Vec<&OsStr> = opts
        .windows(2)
        .filter(|w| w[0] == "--holdout")
        .flat_map(|w| w.iter().copied())
        .collect();
    let (b_map, b_report) = (d("spark.arrow"), d("spark.json"));
    let mut rest: Vec<&OsStr> = vec!["--aggregates".as_ref(), agg.as_os_str()];
    rest.extend(["--out".as_ref(), b_map.as_os_str()]);
    rest.extend(["--report".as_ref(), b_report.as_os_str()]);
    rest.extend(&holdout);
    let (ok, err) = mapgen(&config, &geoip, &rest);
    assert!(ok, "mapgen --aggregates (Spark's): {err}");
    assert!(
        std::fs::read(&a_map).unwrap() == std::fs::read(&b_map).unwrap(),
        "{name}: the map from Spark's first stage differs from the local one"
    );
    let (a, b) = (comparable(&a_report), comparable(&b_report));
    assert_eq!(a, b, "{name}: the reports differ");
    a
}

/// The count of refused rows of `table` for `reason` in a report.
fn refused(report: &serde_json::Value, table: &str, reason: &str) -> u64 {
    report["bad"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["table"] == table && b["reason"] == reason)
        .map_or(0, |b| b["rows"].as_u64().unwrap())
}

/// Spark's `ln` and `xxhash64` against mapgen's `strict_math::log` and `session_of`, bit for
/// bit, on a million RTTs and session keys.
fn check_arithmetic(c: &Cluster, dir: &Path) {
    let script = dir.join("arith.py");
    std::fs::write(
        &script,
        r#"import sys
from pyspark.sql import SparkSession, functions as F
s = SparkSession.builder.config("spark.sql.ansi.enabled", "false").getOrCreate()
df = s.range(1000000).select(
    # RTTs from 0.001 ms to 60 s, log-spaced, as f32; keys spread over 64 bits; windows.
    F.exp(F.lit(-6.9) + F.col("id") * F.lit(17.9 / 1000000)).cast("float").alias("rtt"),
    F.xxhash64("id").alias("key"), (F.col("id") * 7919 + 2900000).alias("window"))
df.select(
    F.expr("cast(rtt as double)").alias("rtt"), "key", "window",
    F.ln(F.col("rtt").cast("double")).alias("ln"),
    F.shiftrightunsigned(F.xxhash64("key", "window"), 16).alias("session"),
).coalesce(1).write.parquet(sys.argv[1])
"#,
    )
    .unwrap();
    let out = dir.join("arith");
    let o = c.submit(&script, &[out.as_os_str()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let part = files(&out)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(part).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let (mut rows, mut ln_differ, mut hash_differ) = (0, 0, 0);
    for batch in reader {
        let batch = batch.unwrap();
        let f64s = |name: &str| column::<arrow_array::Float64Array>(&batch, name);
        let i64s = |name: &str| column::<arrow_array::Int64Array>(&batch, name);
        let (rtt, ln) = (f64s("rtt"), f64s("ln"));
        let (key, window, session) = (i64s("key"), i64s("window"), i64s("session"));
        for i in 0..batch.num_rows() {
            rows += 1;
            if geodns_mapgen::strict_math::log(rtt.value(i)).to_bits() != ln.value(i).to_bits() {
                ln_differ += 1;
            }
            let ts = window.value(i) * geodns_mapgen::logs::SESSION_WINDOW_MICROS + 12_345;
            if geodns_mapgen::logs::session_of(key.value(i) as u64, ts) != session.value(i) as u64 {
                hash_differ += 1;
            }
        }
    }
    assert_eq!(rows, 1_000_000);
    assert_eq!((ln_differ, hash_differ), (0, 0), "of {rows}");
}

#[test]
fn the_first_stage_on_a_spark_cluster_gives_the_local_map() {
    let c = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p);
    check_arithmetic(&c, dir.path());

    // A long-tail world (scripts/gen-world.py --internet), salted with odd addresses, junk of
    // every reason, a repeat, rows out of the window and a copied file; held-out sessions.
    small_long_tail(dir.path());
    let (odd_refused, odd_resolvers_refused) = salt(&d("logs"));
    // One window for both engines (`--days` would count from each one's own clock).
    let since = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() - Duration::from_secs(86_400),
    )
    .to_string();
    let r = same_map(
        &c,
        dir.path(),
        "long-tail",
        &["--holdout", "0.1", "--since", &since],
    );
    // The salt is seen, and counted alike.
    assert_eq!(
        refused(&r, "rtt_report", "bad_client_ip"),
        2 * odd_refused as u64,
        "{r:#}"
    );
    assert_eq!(
        refused(&r, "dns_probe", "bad_resolver_ip"),
        odd_resolvers_refused as u64,
        "{r:#}"
    );
    for (table, reason) in [
        ("rtt_report", "bad_rtt"),
        ("rtt_report", "unknown_pop"),
        ("rtt_report", "bad_probe_id"),
        ("rtt_report", "duplicate_row"),
        ("rtt_report", "future_ts"),
    ] {
        assert!(refused(&r, table, reason) > 0, "{table} {reason}: {r:#}");
    }
    assert_eq!(r["copied_files"], 1, "{r:#}");
    assert!(r["holdout"]["sessions"].as_u64().unwrap() > 0, "{r:#}");

    // Refused alike: a file of another contract version, named; left out with
    // --skip-bad-files, and the maps agree again.
    let probe = files(&d("logs/dns_probe"))[0].clone();
    let v2 = probe.with_file_name("v2.parquet");
    write_parquet(&v2, &first_batch(&probe), Some("2"));
    let (config, logs, out) = (d("w/geodns.toml"), d("logs"), d("refused-agg"));
    let (ok, err) = c.first_stage(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--logs".as_ref(),
        logs.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(
        !ok && err.contains("v2.parquet: geodns.beacon.schema = 2: this mapgen reads version 1"),
        "{err}"
    );
    assert!(!out.join("meta.json").exists());
    let (ok, err) = mapgen(
        &config,
        &d("sim/geoip.mmdb"),
        &[
            "--logs".as_ref(),
            logs.as_os_str(),
            "--out".as_ref(),
            d("x.arrow").as_os_str(),
        ],
    );
    assert!(
        !ok && err.contains("v2.parquet: geodns.beacon.schema = 2"),
        "{err}"
    );
    let r = same_map(&c, dir.path(), "skipped", &["--skip-bad-files"]);
    assert_eq!(r["skipped_files"], 1, "{r:#}");
    std::fs::remove_file(&v2).unwrap();

    // The bundled world through `geodns simulate`, no holdout.
    let world = tempfile::tempdir().unwrap();
    let w = |p: &str| world.path().join(p);
    std::fs::create_dir_all(w("w")).unwrap();
    std::fs::copy(data_dir().join("world.toml"), w("w/world.toml")).unwrap();
    simulate_logs(world.path(), "2000", "9");
    std::fs::copy(data_dir().join("geodns.toml"), w("w/geodns.toml")).unwrap();
    let r = same_map(&c, world.path(), "bundled", &[]);
    assert!(r["measurements"].as_u64().unwrap() > 1000, "{r:#}");
}
