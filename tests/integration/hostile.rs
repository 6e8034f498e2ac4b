//! Hostile and careless input (issue 20), table-driven where it fits: each row gives the input,
//! where it enters, and the refusal expected. Covered so far: zone text that would read a file,
//! announce configs that cannot work or would abort the process, outputs that are an input or
//! not a regular file, and bytes on announce's stdin that are not text.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::time::{Duration, Instant};

use crate::harness::{data_dir, geodns};

/// A refusal: the command fails, and its stderr names `what`.
fn refused(args: &[&std::ffi::OsStr], what: &str) {
    let o = geodns().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded:\n{err}");
    assert!(err.contains(what), "{args:?}: want {what:?} in:\n{err}");
}

/// A FIFO named `fifo` in `dir` (nobody writes it: a read of it blocks for good).
fn mkfifo(dir: &std::path::Path) -> std::path::PathBuf {
    let fifo = dir.join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    fifo
}

#[test]
fn zone_text_from_zookeeper_can_never_read_a_file() {
    // Where it enters: a human zone file checked (and published) through the presenter's
    // loader, the one every server compiles snapshots with.
    let dir = tempfile::tempdir().unwrap();
    let presenter = dir.path().join("presenter.toml");
    std::fs::write(
        &presenter,
        "[zookeeper]\nconnect = \"127.0.0.1:1\"\n[[zones]]\norigin = \"internal.example\"\n\
         primary = \"ns1.internal.example\"\nhostmaster = \"hostmaster.internal.example\"\n\
         ns = [\"ns1.internal.example\"]\n",
    )
    .unwrap();
    let fifo = mkfifo(dir.path());
    // `geodns check` of a human zone file, through the presenter's loader.
    let check_refused = |file: &std::path::Path, what: &str| {
        refused(
            &[
                "check".as_ref(),
                "--presenter".as_ref(),
                presenter.as_os_str(),
                "--internal".as_ref(),
                format!("internal.example={}", file.display()).as_ref(),
            ],
            what,
        )
    };
    for (i, text) in [
        "$INCLUDE /dev/zero\n".to_owned(),
        format!("a IN A 10.0.0.1\n$INCLUDE {}\n", fifo.display()),
        "a IN A 10.0.0.1\n  $include /etc/hostname\n".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let file = dir.path().join(format!("h{i}.zone"));
        std::fs::write(&file, text).unwrap();
        let t = Instant::now();
        check_refused(&file, "$INCLUDE is refused");
        // Refused before anything is read: a FIFO nobody writes would block for good.
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
    // Fields beyond what a type takes were dropped and the rest served.
    let file = dir.path().join("trailing.zone");
    std::fs::write(&file, "www IN A 10.0.0.1 trailing garbage tokens\n").unwrap();
    check_refused(
        &file,
        "line 1: A takes 1 field, the record has 4 (trailing \"trailing garbage tokens\")",
    );
}

#[test]
fn announce_configs_that_cannot_work_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let tcp = r#"{ kind = "tcp", addr = "127.0.0.1:1" }"#;
    for (top, vip, check, rest, what) in [
        (
            "",
            "",
            r#"{ kind = "http", url = "ftp://x/" }"#,
            "",
            "vips[0].check.url",
        ),
        (
            "",
            "",
            r#"{ kind = "dns", server = "127.0.0.1:53", name = "a.example", qtype = "BOGUS" }"#,
            "",
            "vips[0].check.qtype",
        ),
        ("", "", tcp, "[damping]\nsuppress = nan\n", "damping"),
        (
            "",
            "",
            tcp,
            "[drain]\nprepend = 4294967295\n",
            "drain.prepend",
        ),
        (
            "",
            "timeout_ms = 99999999999\n",
            tcp,
            "",
            "vips[0].timeout_ms",
        ),
        ("http_proxy = \"::nope\"\n", "", tcp, "", "http_proxy"),
    ] {
        let path = dir.path().join("announce.toml");
        std::fs::write(
            &path,
            format!("pop = \"ams\"\nlocal_as = 65001\n{top}[[vips]]\nprefix = \"192.0.2.10/32\"\n{vip}check = {check}\n{rest}"),
        )
        .unwrap();
        refused(
            &["announce".as_ref(), "-c".as_ref(), path.as_os_str()],
            what,
        );
    }
}

#[test]
fn tools_never_destroy_their_input() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("map.arrow");
    std::fs::copy(data_dir().join("example-map.arrow"), &map).unwrap();
    let before = std::fs::read(&map).unwrap();
    // The output is the input, by another path too.
    let alias = dir.path().join("alias.arrow");
    std::os::unix::fs::symlink(&map, &alias).unwrap();
    let export = |out: &std::path::Path, what: &str| {
        refused(
            &[
                "map".as_ref(),
                "export-mmdb".as_ref(),
                map.as_os_str(),
                out.as_os_str(),
            ],
            what,
        )
    };
    for out in [&map, &alias] {
        export(out, "the output is the input");
    }
    // Outputs that are not regular files stay what they are.
    let fifo = mkfifo(dir.path());
    let other = dir.path().join("other");
    std::fs::write(&other, "keep").unwrap();
    let link = dir.path().join("link.mmdb");
    std::os::unix::fs::symlink(&other, &link).unwrap();
    for out in [&fifo, &link] {
        export(out, "not a regular file");
    }
    assert_eq!(std::fs::read(&map).unwrap(), before);
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep");
}

#[test]
fn bytes_that_are_not_text_on_announces_stdin_are_not_exabgp_leaving() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = dir.path().join("announce.toml");
    std::fs::write(
        &cfg,
        format!(
            "pop = \"ams\"\n[[vips]]\nprefix = \"192.0.2.40/32\"\ninterval_ms = 100\nrise = 1\n\
             check = {{ kind = \"tcp\", addr = \"{}\" }}\n",
            listener.local_addr().unwrap()
        ),
    )
    .unwrap();
    let mut child = crate::bgp::announce(&cfg, &dir.path().join("announce.log"));
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(first.starts_with("announce route 192.0.2.40/32"), "{first}");
    stdin
        .write_all(b"done\n\xff\xfe garbage \xc3\x28\n")
        .unwrap();
    stdin.flush().unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(800)).is_err(),
        "a line that is not UTF-8 withdrew the route"
    );
    assert!(child.try_wait().unwrap().is_none(), "announce exited");
    let log = std::fs::read_to_string(dir.path().join("announce.log")).unwrap();
    assert!(log.contains("not UTF-8"), "{log}");
    // ExaBGP really leaving (stdin closed) still withdraws.
    drop(stdin);
    let next = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(next, "withdraw route 192.0.2.40/32 next-hop self");
    assert!(child.wait().unwrap().success());
}

#[test]
fn presenter_configs_and_register_flags_are_checked_where_they_enter() {
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("h.zone");
    std::fs::write(&zone, "a IN A 10.0.0.1\n").unwrap();
    let good =
        "[zookeeper]\nconnect = \"127.0.0.1:2181\"\n[[zones]]\norigin = \"internal.example\"\n\
                primary = \"ns1.internal.example\"\nhostmaster = \"hostmaster.internal.example\"\n\
                ns = [\"ns1.internal.example\"]\n";
    for (from, to, what) in [
        ("", "", ""),
        (
            "ns = [\"ns1.internal.example\"]",
            "ns = [\"not a name!\"]",
            "zones[0].ns: \"not a name!\" is not a domain name",
        ),
        (
            "origin = \"internal.example\"",
            "origin = \"internal..example\"",
            "zones[0].origin",
        ),
        (
            "primary = \"ns1.internal.example\"",
            "primary = \"ns1.internal.example\"\nttl = 4294967295",
            "zones[0].ttl: 4294967295 is more than 2^31-1",
        ),
        ("127.0.0.1:2181", "", "zookeeper.connect"),
        ("127.0.0.1:2181", "zk1:2181,zk2", "zookeeper.connect"),
        (
            "connect = \"127.0.0.1:2181\"",
            "connect = \"127.0.0.1:2181\"\nsession_timeout_ms = 2147483648",
            "zookeeper.session_timeout_ms",
        ),
    ] {
        let cfg = dir.path().join("presenter.toml");
        std::fs::write(&cfg, good.replacen(from, to, 1)).unwrap();
        let internal = format!("internal.example={}", zone.display());
        let args: [&std::ffi::OsStr; 5] = [
            "check".as_ref(),
            "--presenter".as_ref(),
            cfg.as_os_str(),
            "--internal".as_ref(),
            internal.as_ref(),
        ];
        if what.is_empty() {
            let o = geodns().args(args).output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        } else {
            refused(&args, &format!("presenter.toml: {what}"));
        }
    }
    let register = |extra: &[&str], what: &str| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "register".as_ref(),
            "--name".as_ref(),
            "h1.prn1.internal.example".as_ref(),
            "--address".as_ref(),
            "10.0.0.1".as_ref(),
        ];
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        let t = Instant::now();
        refused(&args, what);
        assert!(t.elapsed() < Duration::from_secs(5), "refused at once");
    };
    register(&["--zookeeper", ""], "no server");
    register(&["--zookeeper", "not a connect string"], "is not host:port");
    register(
        &[
            "--zookeeper",
            "127.0.0.1:2181",
            "--session-timeout-ms",
            "2147483648",
        ],
        "is not from 1 to 3600000 ms",
    );
}

#[test]
fn tool_flags_that_make_no_sense_are_refused_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    refused(
        &[
            "logs".as_ref(),
            "compact".as_ref(),
            "--root".as_ref(),
            dir.path().as_os_str(),
            "--rows-per-file".as_ref(),
            "0".as_ref(),
        ],
        "--rows-per-file",
    );
    // `map spill` on the example map, which records no demand; and a PoP that does not exist,
    // named before any table is printed.
    let cfg = dir.path().join("geodns.toml");
    std::fs::write(&cfg, crate::harness::example_config("", "")).unwrap();
    for f in ["example.com.zone", "example-map.arrow", "example-nets.csv"] {
        std::fs::copy(data_dir().join(f), dir.path().join(f)).unwrap();
    }
    for (drain, what) in [
        ("ams", "records no demand"),
        ("nope", "--drain nope: no such PoP"),
    ] {
        let o = geodns()
            .args(["map", "spill", "-c"])
            .arg(&cfg)
            .args(["--drain", drain])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(what), "{drain}: {err}");
        assert!(
            o.stdout.is_empty(),
            "{drain}: printed {:?}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

/// Where it enters: a snapshot written straight into ZooKeeper (by anyone who can write
/// there), with the right checksum. A zone that includes `/dev/zero` is refused at once; the
/// server keeps serving the last good snapshot and takes the next good one.
#[test]
fn a_forged_snapshot_that_includes_a_file_is_refused_and_the_server_goes_on() {
    use geodns_snapshot::{Snapshot, ZoneText};
    let zk = crate::zk::ZooKeeper::standalone();
    let s = crate::harness::Server::start(&crate::harness::example_config(
        "",
        &format!(
            "[zookeeper]\nconnect = \"{}\"\njitter_ms = 10\nsession_timeout_ms = 2000\nzones = [\"internal.example\"]\n",
            zk.connect()
        ),
    ));
    let head = "$TTL 60\n@ IN SOA ns1 h 1 2 3 4 5\n@ IN NS ns1\nns1 IN A 10.0.0.53\n";
    let publish = |version: u64, body: &str| {
        let snap = Snapshot {
            format: 1,
            version,
            created_at: "2026-12-06T00:00:00Z".into(),
            zones: vec![ZoneText {
                origin: "internal.example".into(),
                text: format!("{head}{body}"),
            }],
        };
        let (bytes, pointer) = snap.encode();
        zk.set(&format!("/geodns/snapshots/{version:020}/00000"), &bytes);
        zk.set("/geodns/snapshot", &pointer.to_bytes());
    };
    let a = |name: &str| s.dig(&[name, "A", "+short"]).trim().to_owned();
    let wait = |name: &str, want: &str| {
        let t = Instant::now();
        while a(name) != want {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{name}: {}\n{}",
                a(name),
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    publish(1, "www IN A 10.0.0.1\n");
    wait("www.internal.example", "10.0.0.1");
    publish(2, "www IN A 10.0.0.2\n$INCLUDE /dev/zero\n");
    s.wait_log("snapshot refused", 1);
    assert!(
        s.log_text().contains("$INCLUDE is refused"),
        "{}",
        s.log_text()
    );
    assert_eq!(a("www.internal.example"), "10.0.0.1");
    publish(3, "www IN A 10.0.0.3\n");
    wait("www.internal.example", "10.0.0.3");
}
