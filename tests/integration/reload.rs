//! Hot reload: new maps and configs swap in whole, bad ones are refused, and no query is lost
//! while reloading under load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{addresses, example_config, geodns, import_nets, message, Server};

fn status(s: &Server) -> String {
    s.dig(&["_status.example.com", "TXT", "+short"])
}

/// Writes a map from nets text into the server dir, atomically (the tool renames into place).
fn write_map(s: &Server, nets: &str, generation: &str) {
    import_nets(s.dir.path(), nets, &s.path("example-map.arrow"), generation);
}

#[test]
fn new_map_swaps_in_and_bad_map_is_refused() {
    let s = Server::start(&example_config("", ""));
    assert!(status(&s).contains("map-generation=example-1"));
    write_map(&s, "0.0.0.0/0,iad\n127.0.0.0/8,ams\n", "second");
    s.wait_log("reloaded", 1);
    assert!(
        status(&s).contains("map-generation=second"),
        "{}",
        status(&s)
    );
    assert_eq!(
        addresses(&s.query(&message("www.example.com.", RecordType::A, None))),
        ["192.0.2.10"]
    );

    // Corrupt map: refused, the old one keeps serving, the failure is counted.
    std::fs::write(s.path("example-map.arrow"), b"ARROW1\0\0 not really").unwrap();
    s.wait_log("reload refused", 1);
    assert!(status(&s).contains("map-generation=second"));
    assert_eq!(
        addresses(&s.query(&message("www.example.com.", RecordType::A, None))),
        ["192.0.2.10"]
    );
    assert_eq!(s.metric("geodns_reload_failures_total"), 1);

    // A map that ranks a PoP the config does not know is refused too.
    write_map(&s, "0.0.0.0/0,fra\n", "third");
    s.wait_log("reload refused", 2);
    assert!(s
        .log_text()
        .contains("map ranks PoP(s) fra that the config does not define"));
    assert!(status(&s).contains("map-generation=second"));
}

/// Peak resident memory of a process, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_damaged_map_is_refused_without_a_large_allocation() {
    let s = Server::start(&example_config("", ""));
    let good = std::fs::read(s.path("example-map.arrow")).unwrap();
    let www = || addresses(&s.query(&message("www.example.com.", RecordType::A, None)));
    let answer = www();
    let before = peak_rss_kib(s.pid());
    // The footer length's top bits: the file now claims a footer of about 1 GiB.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 7] ^= 0x40;
    std::fs::write(s.path("example-map.arrow"), &bad).unwrap();
    s.wait_log("reload refused", 1);
    assert!(s
        .log_text()
        .contains("damaged Arrow IPC file: footer length"));
    let after = peak_rss_kib(s.pid());
    assert!(
        after < before + 32 * 1024,
        "peak RSS went from {before} KiB to {after} KiB on a {n}-byte map"
    );
    assert_eq!(www(), answer);
    assert!(status(&s).contains("map-generation=example-1"));

    // The tools say the same, exit 1, and print no panic.
    for args in [&["map", "stats"][..], &["map", "lookup"][..]] {
        let mut cmd = geodns();
        cmd.args(args).arg(s.path("example-map.arrow"));
        if args[1] == "lookup" {
            cmd.arg("192.0.2.1");
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("damaged Arrow IPC file") && !err.contains("panicked"),
            "{err}"
        );
    }
}

#[test]
fn a_missing_file_is_picked_up_when_it_appears() {
    let s = Server::start(&example_config("", ""));
    let cfg = s.path("geodns.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    // A new zone whose file does not exist yet: refused, the old data keeps serving.
    let zone = "[[zones]]\norigin = \"other.test\"\nfile = \"other.test.zone\"\n\n";
    std::fs::write(
        &cfg,
        good.replacen("[[zones]]\n", &format!("{zone}[[zones]]\n"), 1),
    )
    .unwrap();
    let cfg_text = std::fs::read_to_string(&cfg).unwrap();
    assert!(cfg_text.contains("other.test.zone"), "{cfg_text}");
    s.wait_log("reload refused", 1);
    assert!(s.log_text().contains("other.test.zone"), "{}", s.log_text());
    assert!(s.dig(&["www.other.test", "A"]).contains("REFUSED"));

    // Creating it is enough: no SIGHUP, no touch of the config.
    std::fs::write(
        s.path("other.test.zone"),
        "$ORIGIN other.test.\n$TTL 300\n@ SOA ns1 host 1 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.53\nwww A 192.0.2.99\n",
    )
    .unwrap();
    s.wait_log("reloaded", 1);
    assert_eq!(
        s.dig(&["www.other.test", "A", "+short"]).trim(),
        "192.0.2.99"
    );

    // The map moved away and back: the same.
    std::fs::rename(s.path("example-map.arrow"), s.path("map.away")).unwrap();
    s.wait_log("reload refused", 2);
    std::fs::rename(s.path("map.away"), s.path("example-map.arrow")).unwrap();
    s.wait_log("reloaded", 2);
    assert!(!s.log_text().contains("forced=true"));
}

#[test]
fn settings_that_need_a_restart_are_reported_and_not_claimed() {
    let s = Server::start(&example_config("", ""));
    let status0 = status(&s);
    assert!(
        status0.contains("config=") && !status0.contains("restart-needed"),
        "{status0}"
    );
    assert_eq!(s.metric("geodns_config_restart_pending"), 0);
    let cfg = s.path("geodns.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    // A new listen address and a new VIP in one edit: the VIP is reloaded, the socket is not.
    let edited = good
        .replace("dns = [\"127.0.0.1:0\"]", "dns = [\"127.0.0.1:1\"]")
        .replace("192.0.2.20", "192.0.2.21");
    std::fs::write(&cfg, edited).unwrap();
    s.wait_log("reloaded", 1);
    // Logged just after "reloaded" (a CI run once read the log between the two lines).
    s.wait_log("take effect only at a restart", 1);
    let r = s.query(&message(
        "www.example.com.",
        RecordType::A,
        Some("198.51.100.0/25"),
    ));
    assert_eq!(
        addresses(&r),
        ["192.0.2.21"],
        "the rest of the change is in force"
    );
    let st = status(&s);
    assert!(
        st.contains("restart-needed=listen.dns")
            && st.contains("config-file=")
            && !st.contains("\"config="),
        "{st}"
    );
    assert_eq!(s.metric("geodns_config_restart_pending"), 1);

    // Back to the running address: nothing is pending, the version is claimed again.
    std::fs::write(&cfg, good.replace("192.0.2.20", "192.0.2.22")).unwrap();
    s.wait_log("reloaded", 2);
    let st = status(&s);
    assert!(
        st.contains("\"config=") && !st.contains("restart-needed"),
        "{st}"
    );
    assert_eq!(s.metric("geodns_config_restart_pending"), 0);
}

#[test]
fn bad_config_is_refused_and_sighup_reloads() {
    let s = Server::start(&example_config("", ""));
    let cfg = s.path("geodns.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        good.replace("vip4 = [\"192.0.2.20\"]", "vip4 = [\"192.0.2.300\"]"),
    )
    .unwrap();
    s.wait_log("reload refused", 1);
    assert!(
        s.log_text()
            .contains("geodns.toml: TOML parse error at line"),
        "{}",
        s.log_text()
    );
    let r = s.query(&message(
        "www.example.com.",
        RecordType::A,
        Some("198.51.100.0/25"),
    ));
    assert_eq!(addresses(&r), ["192.0.2.20"], "old config still serving");

    std::fs::write(&cfg, good.replace("192.0.2.20", "192.0.2.21")).unwrap();
    s.wait_log("reloaded", 1);
    let r = s.query(&message(
        "www.example.com.",
        RecordType::A,
        Some("198.51.100.0/25"),
    ));
    assert_eq!(addresses(&r), ["192.0.2.21"]);

    let pid = s.pid();
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    s.wait_log("forced=true", 1);
}

#[test]
fn reload_under_query_load_loses_nothing() {
    let s = Server::start(&example_config("", ""));
    let stop = Arc::new(AtomicBool::new(false));
    let dns = s.dns;
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let (mut sent, mut bad) = (0u32, Vec::new());
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) || sent < 500 {
                let mut m = message("www.example.com.", RecordType::A, Some("198.51.100.0/25"));
                m.metadata.id = sent as u16;
                sock.send_to(&m.to_vec().unwrap(), dns).unwrap();
                sent += 1;
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let r = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
                        let a = addresses(&r);
                        let ok = r.metadata.id == m.metadata.id
                            && r.metadata.response_code == ResponseCode::NoError
                            && (a == ["192.0.2.20"] || a == ["192.0.2.30", "192.0.2.31"]);
                        if !ok {
                            bad.push(format!(
                                "query {sent}: {:?} {a:?}",
                                r.metadata.response_code
                            ));
                        }
                    }
                    Err(e) => bad.push(format!("query {sent}: lost ({e})")),
                }
            }
            (sent, bad)
        })
    };
    // Alternate two maps while the load runs: iad or sin for the client's subnet.
    for i in 0..12 {
        let pop = if i % 2 == 0 { "sin" } else { "iad" };
        write_map(
            &s,
            &format!("198.51.100.0/24,{pop}\n127.0.0.0/8,sin\n"),
            &format!("g{i}"),
        );
        s.wait_log("reloaded", i + 1);
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, bad) = load.join().unwrap();
    assert!(sent >= 500, "only {sent} queries sent");
    assert!(
        bad.is_empty(),
        "{} of {sent} queries failed: {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
}
