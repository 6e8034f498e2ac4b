//! mapgen on hostile and broken input: copied files and replayed rows count once, rows from a
//! skewed clock are counted, safety gates cannot be switched off, files of another contract
//! version or with corrupt pages are named (and skipped when asked), a missing log root is
//! said in words, and a run killed mid-spill leaves nothing the next run keeps.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, Float32Array, RecordBatch};
use geodns_beacon::{DnsProbeRow, LogWriter, ProbeId, RttReportRow, WriterConfig};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use crate::harness::{data_dir, geodns};
use crate::mapgen::mapgen;

const POPS: [&str; 3] = ["ams", "iad", "sin"];

/// Writes `samples` measurements of client subnet 198.18.`net`.0/24 (behind resolver
/// 10.53.`net`.1) to every PoP, fastest to `best`, through the real log writer.
fn measure(
    root: &Path,
    writer: &str,
    net: u8,
    best: usize,
    samples: std::ops::Range<usize>,
    ts: i64,
) {
    let start = |id: &str| WriterConfig {
        root: root.into(),
        writer_id: id.into(),
        max_rows: 100_000,
        max_age: Duration::from_secs(60),
        queue_rows: 100_000,
        reserve_bytes: None,
    };
    let dns = LogWriter::<DnsProbeRow>::start(start(writer)).unwrap();
    let rtt = LogWriter::<RttReportRow>::start(start(writer)).unwrap();
    for j in samples {
        let id = format!("n{net:03}w{writer}s{j:05}")
            .to_lowercase()
            .replace(['-', '_'], "");
        for (p, pop) in POPS.iter().enumerate() {
            let t = ts + j as i64 * 1_000_000 + p as i64;
            dns.try_log_one(DnsProbeRow {
                ts: t,
                probe_id: ProbeId::new(id.as_bytes()).unwrap(),
                pop: Some((*pop).into()),
                resolver_ip: format!("10.53.{net}.1").parse().unwrap(),
                ecs_subnet: None,
                qtype: 1,
                server: "t".into(),
            })
            .unwrap();
            let ms = if p == best {
                10.0
            } else {
                60.0 + 20.0 * p as f64
            };
            rtt.try_log(vec![RttReportRow {
                ts: t + 500_000,
                probe_id: id.clone(),
                pop: (*pop).into(),
                client_ip: format!("198.18.{net}.7"),
                rtt_ms: Some(ms + (j % 3) as f64),
                ok: true,
                collector: "t".into(),
            }])
            .unwrap();
        }
    }
    dns.close();
    rtt.close();
}

/// A log root: twelve well-measured subnets (fastest ams, iad, sin in turn) and subnet 200,
/// measured three times (under --min-samples 5), fastest to sin.
fn base_logs(root: &Path, ts: i64) {
    for net in 0..12u8 {
        measure(
            root,
            &format!("base{net}"),
            net,
            usize::from(net) % 3,
            0..8,
            ts,
        );
    }
    measure(root, "thin", 200, 2, 0..3, ts);
}

fn an_hour_ago() -> i64 {
    geodns_beacon::writer::now_micros() - 3_600_000_000
}

pub(crate) fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with('.') {
            continue; // the contract's hidden names (a writer's reserve, temporary files)
        }
        if e.path().is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

fn report_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn bad_rows(report: &serde_json::Value, table: &str, reason: &str) -> u64 {
    report["bad"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["table"] == table && b["reason"] == reason)
        .map(|b| b["rows"].as_u64().unwrap())
        .sum()
}

#[test]
fn copied_files_and_replayed_rows_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    base_logs(&logs, an_hour_ago());
    let (ok, out) = mapgen(&logs, &dir.path().join("base.arrow"), &[]);
    assert!(ok, "{out}");
    let base = std::fs::read(dir.path().join("base.arrow")).unwrap();

    // Every log file copied under a second name: the same map, and the copies are listed.
    let originals = files(&logs);
    for f in &originals {
        let name = f.file_name().unwrap().to_string_lossy();
        std::fs::copy(f, f.with_file_name(format!("copy-{name}"))).unwrap();
    }
    let report = dir.path().join("r.json");
    let (ok, out) = mapgen(
        &logs,
        &dir.path().join("copied.arrow"),
        &["--report", report.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "copies      {} log files repeat another byte for byte",
            originals.len()
        )),
        "{out}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("copied.arrow")).unwrap(),
        base,
        "copies changed the map"
    );
    for f in &originals {
        let name = f.file_name().unwrap().to_string_lossy();
        std::fs::remove_file(f.with_file_name(format!("copy-{name}"))).unwrap();
    }

    // The thin subnet's rows replayed by another writer (new files, same events): counted as
    // duplicates and used once, so the thin subnet stays thin and the map is the same.
    let thin: Vec<PathBuf> = originals
        .iter()
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("thin-")
        })
        .cloned()
        .collect();
    assert_eq!(thin.len(), 2);
    for f in &thin {
        let rows = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = rows.map(Result::unwrap).collect();
        // Written in two files of their own, half each: not byte copies of the original.
        for (k, b) in batches
            .iter()
            .flat_map(|b| [b.slice(0, 4), b.slice(4, b.num_rows() - 4)])
            .enumerate()
        {
            let out = f.with_file_name(format!(
                "replay{k}-{}",
                f.file_name().unwrap().to_string_lossy()
            ));
            write_parquet(&out, &b, Some("1"));
        }
    }
    let (ok, out) = mapgen(
        &logs,
        &dir.path().join("replayed.arrow"),
        &["--report", report.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let r = report_json(&report);
    assert_eq!(bad_rows(&r, "rtt_report", "duplicate_row"), 9, "{out}");
    assert_eq!(bad_rows(&r, "dns_probe", "duplicate_row"), 9, "{out}");
    assert_eq!(
        std::fs::read(dir.path().join("replayed.arrow")).unwrap(),
        base,
        "replayed rows changed the map"
    );

    // The check can fail: three more real samples of the thin subnet do change the map.
    measure(&logs, "more", 200, 2, 3..6, an_hour_ago());
    let (ok, out) = mapgen(&logs, &dir.path().join("more.arrow"), &[]);
    assert!(ok, "{out}");
    assert_ne!(std::fs::read(dir.path().join("more.arrow")).unwrap(), base);
}

#[test]
fn rows_from_a_skewed_clock_and_outside_the_window_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let now = an_hour_ago() + 3_600_000_000;
    base_logs(&logs, now - 3_600_000_000);
    // A collector whose clock is a day ahead: its rows are counted, not silently dropped.
    measure(&logs, "skewed", 30, 0, 0..4, now + 86_400_000_000);
    // And rows from last week.
    measure(&logs, "old", 31, 0, 0..2, now - 7 * 86_400_000_000);
    let report = dir.path().join("r.json");
    let (ok, out) = mapgen(
        &logs,
        &dir.path().join("m.arrow"),
        &["--days", "1", "--report", report.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let r = report_json(&report);
    assert_eq!(bad_rows(&r, "rtt_report", "future_ts"), 12, "{out}");
    assert_eq!(bad_rows(&r, "dns_probe", "future_ts"), 12, "{out}");
    // Rows from last week are valid, only outside the window: counted apart, not refused.
    assert_eq!(bad_rows(&r, "rtt_report", "before_window"), 0, "{out}");
    let outside: u64 = r["outside_window"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["table"] == "rtt_report" && b["reason"] == "before_window")
        .map(|b| b["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(outside, 6, "{out}");
    assert!(
        out.contains("future_ts")
            && out.contains("before_window")
            && out.contains("refused     12 dns_probe rows, 12 rtt_report rows")
            && out.contains("rtt_report rows outside the window"),
        "{out}"
    );
}

#[test]
fn safety_gates_cannot_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    base_logs(&logs, an_hour_ago());
    let out_map = dir.path().join("m.arrow");
    for (flag, value) in [
        ("--max-moved-share", "NaN"),
        ("--max-invalid-share", "NaN"),
        ("--max-moved-share", "5"),
        ("--max-invalid-share", "inf"),
        ("--max-moved-share", "-0.1"),
    ] {
        let (ok, out) = mapgen(&logs, &out_map, &[&format!("{flag}={value}")]);
        assert!(
            !ok && out.contains(flag) && out.contains("share from 0 to 1"),
            "{flag} {value}: {out}"
        );
    }
    let (ok, out) = mapgen(&logs, &out_map, &["--force"]);
    assert!(!ok && out.contains("--previous"), "{out}");
    assert!(!out_map.exists());
}

/// Writes one batch as a Parquet file with the given contract version (none: no key).
pub(crate) fn write_parquet(path: &Path, batch: &RecordBatch, version: Option<&str>) {
    let kv = version.map(|v| {
        vec![parquet::file::metadata::KeyValue::new(
            "geodns.beacon.schema".into(),
            v.to_owned(),
        )]
    });
    let props = parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(kv)
        .build();
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

pub(crate) fn first_batch(path: &Path) -> RecordBatch {
    ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

#[test]
fn files_of_another_contract_or_with_corrupt_pages_are_named_and_skippable() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    base_logs(&logs, an_hour_ago());
    let good_map = dir.path().join("good.arrow");
    assert!(mapgen(&logs, &good_map, &[]).0);
    let reports: Vec<PathBuf> = files(&logs.join("rtt_report"));
    let day = reports[0].parent().unwrap().to_owned();
    let batch = first_batch(&reports[0]);
    // Version 2, no version key, Float32 RTTs: each refused with its reason.
    let v2 = day.join("v2.parquet");
    write_parquet(&v2, &batch, Some("2"));
    let out_map = dir.path().join("m.arrow");
    let (ok, out) = mapgen(&logs, &out_map, &[]);
    assert!(
        !ok && out.contains("v2.parquet: geodns.beacon.schema = 2: this mapgen reads version 1"),
        "{out}"
    );
    std::fs::remove_file(&v2).unwrap();
    let nokey = day.join("nokey.parquet");
    write_parquet(&nokey, &batch, None);
    let (ok, out) = mapgen(&logs, &out_map, &[]);
    assert!(
        !ok && out.contains("nokey.parquet: no geodns.beacon.schema key"),
        "{out}"
    );
    std::fs::remove_file(&nokey).unwrap();
    let f32 = day.join("f32.parquet");
    let i = batch.schema().index_of("rtt_ms").unwrap();
    let rtt = batch
        .column(i)
        .as_any()
        .downcast_ref::<arrow_array::Float64Array>()
        .unwrap();
    let narrowed: Float32Array = rtt.iter().map(|v| v.map(|v| v as f32)).collect();
    let mut fields: Vec<arrow_schema::Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[i] = arrow_schema::Field::new("rtt_ms", arrow_schema::DataType::Float32, true);
    let mut columns = batch.columns().to_vec();
    columns[i] = Arc::new(narrowed);
    let narrow =
        RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).unwrap();
    write_parquet(&f32, &narrow, Some("1"));
    let (ok, out) = mapgen(&logs, &out_map, &[]);
    assert!(
        !ok && out.contains("f32.parquet: column rtt_ms: want Float64, found f32"),
        "{out}"
    );
    std::fs::remove_file(&f32).unwrap();

    // A corrupt data page (the footer intact): the file is named; --skip-bad-files leaves it out.
    let victim = day.join("zz-corrupt.parquet");
    std::fs::copy(&reports[0], &victim).unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let footer =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize;
    let data_end = bytes.len() - 8 - footer;
    for b in &mut bytes[4..data_end] {
        *b = 0xff;
    }
    std::fs::write(&victim, &bytes).unwrap();
    let (ok, out) = mapgen(&logs, &out_map, &[]);
    assert!(
        !ok && out.contains("zz-corrupt.parquet: data cannot be decoded"),
        "{out}"
    );
    let (ok, out) = mapgen(&logs, &out_map, &["--skip-bad-files"]);
    assert!(ok && out.contains("zz-corrupt.parquet"), "{out}");
    assert_eq!(
        std::fs::read(&out_map).unwrap(),
        std::fs::read(&good_map).unwrap()
    );

    // A missing or empty log root is said in words.
    let (ok, out) = mapgen(&dir.path().join("nowhere"), &out_map, &[]);
    assert!(
        !ok && out.contains("nowhere: no such directory") && !out.contains("polars"),
        "{out}"
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, out) = mapgen(&empty, &out_map, &[]);
    assert!(
        !ok && out.contains("rtt_report: no such directory"),
        "{out}"
    );
}

#[test]
fn a_run_killed_while_spilling_leaves_nothing_the_next_run_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    base_logs(&logs, an_hour_ago());
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let scratch = || {
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    // Small partitions, so the run spills; killed as soon as its files appear.
    let mut child = geodns()
        .args(["mapgen", "--config"])
        .arg(data_dir().join("geodns.toml"))
        .arg("--logs")
        .arg(&logs)
        .arg("--out")
        .arg(dir.path().join("killed.arrow"))
        .args(["--partition-rows", "20", "--tmp-dir"])
        .arg(&tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !scratch().iter().any(|d| {
        files(d)
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "arrow"))
    }) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "mapgen finished before it could be killed"
        );
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = scratch();
    assert_eq!(left.len(), 1, "{left:?}");
    // The next run removes them (and says so), and leaves no files of its own.
    let (ok, out) = mapgen(
        &logs,
        &dir.path().join("m.arrow"),
        &["--partition-rows", "20", "--tmp-dir", tmp.to_str().unwrap()],
    );
    assert!(
        ok && out.contains("spill files left by a run that did not finish"),
        "{out}"
    );
    assert!(scratch().is_empty(), "{:?}", scratch());
}

/// Two runs in the same second get two generation ids (a server's status once named one map
/// for both), and a report whose networks cannot be placed says so instead of leaving the
/// catchment out without a word.
#[test]
fn two_runs_get_two_generations_and_an_unplaced_catchment_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    base_logs(&logs, an_hour_ago());
    let run = |out: &str| {
        let o = geodns()
            .args(["mapgen", "--config"])
            .arg(data_dir().join("geodns.toml"))
            .arg("--logs")
            .arg(&logs)
            .arg("--out")
            .arg(dir.path().join(out))
            .arg("--html")
            .arg(dir.path().join(format!("{out}.html")))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        geomap::read_map(&dir.path().join(out)).unwrap().meta
    };
    let (a, b) = (run("a.arrow"), run("b.arrow"));
    assert_ne!(a.generation, b.generation, "{a:?} {b:?}");
    assert!(a.generation.starts_with("mapgen-"), "{}", a.generation);
    let html = std::fs::read_to_string(dir.path().join("a.arrow.html")).unwrap();
    assert!(
        html.contains("No client network could be placed: no GeoIP database"),
        "{html}"
    );
}
