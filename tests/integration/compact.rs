//! `geodns logs compact` on real log files: a closed day's many small files become a few
//! large ones with the same rows (mapgen makes the byte-identical map from either), and a day
//! that may still get files is refused.

use std::path::Path;
use std::time::Duration;

use geodns_beacon::{DnsProbeRow, LogWriter, ProbeId, RttReportRow, WriterConfig};

use crate::harness::{data_dir, geodns};

fn writer<R: geodns_beacon::Table>(root: &Path, id: &str) -> LogWriter<R> {
    LogWriter::<R>::start(WriterConfig {
        root: root.to_path_buf(),
        writer_id: id.into(),
        max_rows: 50,
        max_age: Duration::from_secs(60),
        queue_rows: 100_000,
        reserve_bytes: None,
    })
    .unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_closed_day_is_merged_with_the_same_rows_and_an_open_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    // 400 sessions two days ago, each measuring the 3 PoPs, written 50 rows a file.
    let day = geodns_beacon::writer::now_micros() - 2 * 86_400_000_000;
    let dns = writer::<DnsProbeRow>(&logs, "dns");
    let rtt = writer::<RttReportRow>(&logs, "http");
    for i in 0..400u32 {
        let id = format!("{i:016x}");
        let ts = day + i64::from(i) * 1_000_000;
        for (j, pop) in ["ams", "iad", "sin"].into_iter().enumerate() {
            dns.try_log(vec![DnsProbeRow {
                ts,
                probe_id: ProbeId::new(id.as_bytes()).unwrap(),
                pop: Some(pop.into()),
                resolver_ip: format!("127.10.0.{}", 1 + i % 3).parse().unwrap(),
                ecs_subnet: None,
                qtype: 1,
                server: "t".into(),
            }])
            .unwrap();
            rtt.try_log(vec![RttReportRow {
                ts: ts + 50_000,
                probe_id: id.clone(),
                pop: pop.into(),
                client_ip: format!("198.18.{}.9", i % 8),
                rtt_ms: Some(10.0 + f64::from((i * 7 + j as u32 * 13) % 40)),
                ok: true,
                collector: "t".into(),
            }])
            .unwrap();
        }
    }
    dns.close();
    rtt.close();
    let date = {
        let t = std::time::UNIX_EPOCH + Duration::from_micros(day as u64);
        humantime::format_rfc3339_seconds(t).to_string()[..10].to_owned()
    };
    let day_dir = |root: &Path, table: &str| root.join(table).join(format!("date={date}"));
    assert_eq!(files(&day_dir(&logs, "rtt_report")).len(), 24);
    let copy = dir.path().join("copy");
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&logs)
        .arg(&copy)
        .status()
        .unwrap()
        .success());

    let o = geodns()
        .args(["logs", "compact", "--root"])
        .arg(&copy)
        .args(["--rows-per-file", "500"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(
        out.contains(&format!(
            "rtt_report {date}: 24 files merged into 3 (1200 rows)"
        )) && out.contains(&format!(
            "dns_probe {date}: 24 files merged into 3 (1200 rows)"
        )),
        "{out}"
    );
    for table in ["dns_probe", "rtt_report"] {
        let names = files(&day_dir(&copy, table));
        assert!(
            names.len() == 3 && names.iter().all(|n| n.starts_with("compact-")),
            "{names:?}"
        );
    }
    assert!(
        files(&copy.join(".incoming")).is_empty(),
        "no journal or staged file left"
    );
    // Nothing left to do on a second run.
    let o = geodns()
        .args(["logs", "compact", "--root"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(o.status.success() && o.stdout.is_empty(), "{o:?}");

    // The same rows: mapgen makes the byte-identical map from the originals and the merge.
    let map = |root: &Path, out: &str| {
        let o = geodns()
            .args(["mapgen", "--config"])
            .arg(data_dir().join("geodns.toml"))
            .arg("--logs")
            .arg(root)
            .arg("--out")
            .arg(dir.path().join(out))
            .args(["--created-at", "2026-11-26T00:00:00Z", "--generation", "g"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        std::fs::read(dir.path().join(out)).unwrap()
    };
    assert_eq!(map(&logs, "a.arrow"), map(&copy, "b.arrow"));

    // Today may still get files: refused, naming why.
    let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()[..10]
        .to_owned();
    let o = geodns()
        .args(["logs", "compact", "--root"])
        .arg(&copy)
        .args(["--date", &today])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("is not closed"),
        "{err}"
    );
}
