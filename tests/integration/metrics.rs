//! Every metric each process exposes follows Prometheus's rules: promtool's lint passes, each
//! family is in the list in docs/operations.md (and the list has nothing that is not exposed),
//! counters end in `_total` and only counters do, no name says `_by_<label>`, and the set of
//! series does not change when a PoP drains, a reload happens or requests arrive: only values
//! do.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::harness::{bound, collector_config, data_dir, example_config, http, Collector, Server};
use crate::internal::{presenter, presenter_config};
use crate::zk::ZooKeeper;

/// The families in docs/operations.md's "Every metric" section, by the process heading them
/// (`geodns serve`, `geodns beacon`, `geodns presenter`, and `every process`).
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(data_dir().join("../docs/operations.md")).unwrap();
    let section = doc
        .split("\n### Every metric\n")
        .nth(1)
        .expect("docs/operations.md has an \"Every metric\" section");
    let section = section.split("\n### ").next().unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut process = String::new();
    for line in section.lines() {
        if let Some(h) = line.strip_prefix("#### ") {
            process = h.trim().trim_matches('`').to_owned();
        } else if let Some(rest) = line.strip_prefix("| `") {
            let name = rest.split('`').next().unwrap().to_owned();
            out.entry(process.clone()).or_default().insert(name);
        }
    }
    out
}

/// Family name -> type, and every series (name and labels, without the value).
fn parse(text: &str) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut families = BTreeMap::new();
    let mut series = BTreeSet::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').unwrap();
            families.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (s, _) = line.rsplit_once(' ').unwrap();
            series.insert(s.to_owned());
        }
    }
    (families, series)
}

/// promtool's lint and our own rules on one exposition; returns its families.
fn check(process: &str, text: &str, docs: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus; scripts/test.sh installs it)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{process}: promtool check metrics:\n{said}"
    );
    let (families, series) = parse(text);
    for (name, kind) in &families {
        assert!(
            name.starts_with("geodns_") || name.starts_with("process_"),
            "{name}"
        );
        assert_eq!(
            name.ends_with("_total"),
            kind == "counter",
            "{process}: {name} is a {kind}: counters, and only counters, end in _total"
        );
        assert!(!name.contains("_by_"), "{process}: {name} names a label");
        if kind == "histogram" {
            assert!(name.ends_with("_seconds"), "{process}: {name}: a unit");
        }
    }
    // Labels: never one whose name is also a word of the family's, bar the thing it is about.
    for s in &series {
        if let Some((name, labels)) = s.split_once('{') {
            for label in labels.split(',').filter_map(|l| l.split_once('=')) {
                let word = format!("_{}_", label.0);
                assert!(
                    !format!("{name}_").contains(&format!("_by{word}")),
                    "{process}: {s}"
                );
            }
        }
    }
    let mut want: BTreeSet<String> = docs.get(process).cloned().unwrap_or_default();
    want.extend(docs.get("every process").cloned().unwrap_or_default());
    let have: BTreeSet<String> = families.keys().cloned().collect();
    assert_eq!(
        have.difference(&want).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "{process}: exposed but not in docs/operations.md"
    );
    assert_eq!(
        want.difference(&have).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "{process}: in docs/operations.md but not exposed"
    );
    have
}

fn series(text: &str) -> BTreeSet<String> {
    parse(text).1
}

#[test]
fn every_metric_follows_the_rules_and_no_series_comes_or_goes_with_a_state() {
    let docs = documented();
    assert!(docs.len() >= 4, "{docs:?}");

    // The server: a PoP drains and comes back, the config reloads: the same series.
    let s = Server::start(&example_config("", ""));
    s.dig(&["www.example.com", "A"]);
    let page = |s: &Server| {
        let m = s.metrics();
        m.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap()
    };
    let before = page(&s);
    let before = before.as_str();
    check("geodns serve", before, &docs);
    std::fs::write(s.path("health.txt"), "iad down\n").unwrap();
    s.wait_log("health changed", 1);
    let drained = page(&s);
    assert!(
        drained.contains("geodns_pop_up{pop=\"iad\"} 0"),
        "{drained}"
    );
    assert!(drained.contains("geodns_pop_drained{pop=\"iad\",reason=\"file\"} 1"));
    assert_eq!(
        series(before),
        series(&drained),
        "a drain changed the series"
    );
    std::process::Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .unwrap();
    s.wait_log("forced=true", 1);
    let reloaded = page(&s);
    assert_eq!(
        series(before),
        series(&reloaded),
        "a reload changed the series"
    );

    // The collector: requests of every kind change values, not series.
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &collector_config("", ""));
    let (_, before) = http(c.http, "127.0.0.1", "GET", "/metrics", &[], b"");
    check("geodns beacon", &before, &docs);
    for path in ["/", "/beacon.js", "/nowhere", "/healthz"] {
        http(c.http, "127.0.0.1", "GET", path, &[], b"");
    }
    let (_, after) = http(c.http, "127.0.0.1", "GET", "/metrics", &[], b"");
    assert_eq!(series(&before), series(&after));
    assert!(
        after.contains("geodns_beacon_request_duration_seconds_count{route=\"other\"} 1"),
        "{after}"
    );

    // The presenter.
    let zk = ZooKeeper::standalone();
    let pdir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "metrics = \"127.0.0.1:0\"\n{}",
        presenter_config(&zk, "", "")
    );
    let p = presenter(pdir.path(), &cfg, &[]);
    p.wait_log("listening metrics", 1, Duration::from_secs(20));
    let addr = bound(&p.log_text(), "listening metrics").unwrap();
    p.wait_log("published", 1, Duration::from_secs(20));
    let (_, text) = http(addr, "127.0.0.1", "GET", "/metrics", &[], b"");
    check("geodns presenter", &text, &docs);
}
