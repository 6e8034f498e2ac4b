//! The probe zone: answers, validation, and the dns_probe log it writes (read back with the
//! parquet crate, as mapgen will).

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt16Type;
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::harness::{example_config, Server};

/// One dns_probe row: (probe_id, pop, resolver_ip, ecs_subnet, qtype, server).
pub type ProbeRow = (String, Option<String>, String, Option<String>, u16, String);

/// Every row of every dns_probe file under `root`.
pub fn probe_rows(root: &Path) -> Vec<ProbeRow> {
    let mut out = Vec::new();
    let dir = root.join("dns_probe");
    let Ok(parts) = std::fs::read_dir(&dir) else {
        return out;
    };
    for part in parts {
        for f in std::fs::read_dir(part.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
                    .unwrap()
                    .build()
                    .unwrap();
            for batch in reader {
                let b = batch.unwrap();
                let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
                let (id, pop, ip, ecs, server) = (
                    s("probe_id"),
                    s("pop"),
                    s("resolver_ip"),
                    s("ecs_subnet"),
                    s("server"),
                );
                let qtype = b
                    .column_by_name("qtype")
                    .unwrap()
                    .as_primitive::<UInt16Type>()
                    .clone();
                for i in 0..b.num_rows() {
                    out.push((
                        id.value(i).to_owned(),
                        pop.is_valid(i).then(|| pop.value(i).to_owned()),
                        ip.value(i).to_owned(),
                        ecs.is_valid(i).then(|| ecs.value(i).to_owned()),
                        qtype.value(i),
                        server.value(i).to_owned(),
                    ));
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn probe_names_answer_the_pop_and_are_logged() {
    let cfg = example_config("", "").replace("max_age_ms = 10000", "max_age_ms = 200");
    let s = Server::start(&cfg);
    let short = |args: &[&str]| s.dig(&[args, &["+short"]].concat()).trim().to_owned();
    assert_eq!(
        short(&[
            "abcdef0123.ams.probe.example.com",
            "A",
            "+subnet=198.51.100.0/24"
        ]),
        "192.0.2.10"
    );
    assert_eq!(
        short(&["abcdef0123.sin.probe.example.com", "AAAA"]),
        "2001:db8:c::30"
    );
    // 0x20 case randomisation by resolvers must not break ids.
    assert_eq!(
        short(&["ABCDEF0456.IAD.probe.example.com", "A"]),
        "192.0.2.20"
    );
    // No PoP named: the first PoP of the default order answers; the row has a null pop.
    assert_eq!(short(&["abcdef0789.probe.example.com", "A"]), "192.0.2.10");
    let out = s.dig(&["abcdef0123.ams.probe.example.com", "A", "+noall", "+answer"]);
    assert_eq!(out.split_whitespace().nth(1), Some("5"), "probe TTL: {out}");

    for bad in [
        "short.ams.probe.example.com",
        "abcdef0123.fra.probe.example.com",
        "x.abcdef0123.ams.probe.example.com",
        "abc_def0123.ams.probe.example.com",
    ] {
        let out = s.dig(&[bad, "A"]);
        assert!(out.contains("status: NXDOMAIN"), "{bad}: {out}");
    }
    // The probe apex itself exists (NODATA), it is not a probe.
    assert!(s
        .dig(&["probe.example.com", "A"])
        .contains("status: NOERROR"));

    s.wait_log("log file written", 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let rows = loop {
        let rows = probe_rows(&s.path("beacon-logs"));
        if rows.len() >= 5 || std::time::Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let r = |id: &str, pop: Option<&str>, ecs: Option<&str>, qtype: u16| {
        (
            id.to_owned(),
            pop.map(str::to_owned),
            "127.0.0.1".to_owned(),
            ecs.map(str::to_owned),
            qtype,
            "example".to_owned(),
        )
    };
    assert_eq!(
        rows,
        [
            r("abcdef0123", Some("ams"), None, 1),
            r("abcdef0123", Some("ams"), Some("198.51.100.0/24"), 1),
            r("abcdef0123", Some("sin"), None, 28),
            r("abcdef0456", Some("iad"), None, 1),
            r("abcdef0789", None, None, 1),
        ]
    );
    assert_eq!(s.metric("geodns_probe_invalid_queries_total"), 4);
    assert_eq!(s.metric("geodns_probe_log_rows_written_total"), 5);
}

#[test]
fn sigterm_flushes_the_probe_log() {
    // A long roll age: only the shutdown flush can write these rows.
    let s = Server::start(&example_config("", ""));
    for i in 0..20 {
        s.dig(&[
            &format!("sigterm{i:04}.iad.probe.example.com"),
            "A",
            "+short",
        ]);
    }
    assert!(probe_rows(&s.path("beacon-logs")).is_empty());
    std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    s.wait_log("probe log flushed", 1);
    assert_eq!(probe_rows(&s.path("beacon-logs")).len(), 20);
}
