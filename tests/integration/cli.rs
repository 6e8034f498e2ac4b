//! The CLI: `check` runs the serving loader, `map` tools, and the committed example map.

use crate::harness::{data_dir, example_config, geodns};

fn run(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = geodns()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_example_and_names_what_is_wrong() {
    let cfg = data_dir().join("geodns.toml");
    let (ok, out, err) = run(&["check", "--config", cfg.to_str().unwrap()], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("ok: 1 zone(s), 3 PoP(s), map generation example-1 with 20 rows"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    for f in ["example.com.zone", "example-map.arrow"] {
        std::fs::copy(data_dir().join(f), dir.path().join(f)).unwrap();
    }
    let bad = dir.path().join("bad.toml");
    let write_and_check = |text: String| {
        std::fs::write(&bad, text).unwrap();
        let (ok, _, err) = run(&["check", "--config", bad.to_str().unwrap()], None);
        assert!(!ok);
        err
    };
    let err = write_and_check(example_config("", "").replace(
        "default_order = [\"ams\", \"iad\", \"sin\"]",
        "default_order = [\"ams\", \"fra\"]",
    ));
    assert!(
        err.contains("bad.toml: default_order[1]: 'fra' is not a configured PoP"),
        "{err}"
    );
    let err = write_and_check(
        example_config("", "")
            .replace("vip4 = [\"192.0.2.30\", \"192.0.2.31\"]", "")
            .replace("vip6 = [\"2001:db8:c::30\"]", ""),
    );
    assert!(
        err.contains("bad.toml: pops.sin: has neither vip4 nor vip6"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("example.com.zone"),
        "$TTL 60\n@ IN SOA ns1 h 1 2 3 4 5\n@ IN NS ns1\nns1 IN A 1.2.3\n",
    )
    .unwrap();
    let err = write_and_check(example_config("", ""));
    assert!(err.contains("example.com.zone: line 4:"), "{err}");
}

#[test]
fn import_nets_reports_every_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let nets = dir.path().join("nets.csv");
    std::fs::write(
        &nets,
        "10.0.0.0/8,ams\n10.0.0.1/8,ams\nbogus,iad\n10.0.0.0/8,iad\n",
    )
    .unwrap();
    let out = dir.path().join("m.arrow");
    let (ok, _, err) = run(
        &[
            "map",
            "import-nets",
            nets.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(!ok);
    assert!(err.contains("3 bad line(s)"), "{err}");
    assert!(
        err.contains("nets.csv:2: prefix '10.0.0.1/8': host bits set"),
        "{err}"
    );
    assert!(
        err.contains("nets.csv:3: prefix 'bogus': not a CIDR prefix"),
        "{err}"
    );
    assert!(
        err.contains("nets.csv:4: prefix '10.0.0.0/8': already given on line 1"),
        "{err}"
    );
    assert!(!out.exists(), "no map written on error");
}

#[test]
fn lookup_explains_and_reads_stdin() {
    let map = data_dir().join("example-map.arrow");
    let map = map.to_str().unwrap();
    let (ok, out, err) = run(&["map", "lookup", map, "198.51.100.7", "--ecs"], None);
    assert!(ok, "{err}");
    assert!(out.contains("prefix      198.51.100.0/24"), "{out}");
    assert!(out.contains("ranked      iad, ams, sin"), "{out}");
    assert!(out.contains("scope       /25"), "{out}");
    let (ok, out, _) = run(
        &["map", "lookup", map, "-"],
        Some("127.0.0.1\n192.0.2.1\n2001:db8:1::5\n"),
    );
    assert!(ok);
    assert_eq!(
        out,
        "127.0.0.1\tresolver\t127.0.0.0/8\tsin,ams,iad\t8\tstatic\n\
         192.0.2.1\tresolver\t-\t-\t6\tfallback\n\
         2001:db8:1::5\tresolver\t2001:db8:1::/48\tsin,ams,iad\t48\tstatic\n"
    );
    let (ok, _, err) = run(&["map", "lookup", map, "-"], Some("1.2.3.4\nnot-an-ip\n"));
    assert!(!ok);
    assert!(
        err.contains("stdin line 2: \"not-an-ip\" is not an IP address"),
        "{err}"
    );
}

#[test]
fn committed_example_map_is_what_the_script_makes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("example-map.arrow");
    let nets = data_dir().join("example-nets.csv");
    let (ok, _, err) = run(
        &[
            "map",
            "import-nets",
            nets.to_str().unwrap(),
            out.to_str().unwrap(),
            "--generation",
            "example-1",
            "--created-at",
            "2026-11-26T00:00:00Z",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(data_dir().join("example-map.arrow")).unwrap(),
        "data/example-map.arrow is stale: run scripts/make-example-map.sh"
    );
}

#[test]
fn errors_say_each_cause_once_and_a_closed_pipe_is_quiet() {
    // A missing config: the OS error once, not once per layer.
    let (ok, _, err) = run(&["check", "-c", "/nonexistent/geodns.toml"], None);
    assert!(!ok);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("/nonexistent/geodns.toml"), "{err}");

    // `map lookup MAP -` piped into something that stops reading after one line.
    use std::io::{BufRead, BufReader, Write};
    let mut child = crate::harness::geodns()
        .args(["map", "lookup"])
        .arg(crate::harness::data_dir().join("example-map.arrow"))
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 0..200_000u32 {
            if writeln!(stdin, "198.51.100.{}", i % 250).is_err() {
                break;
            }
        }
    });
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("198.51.100.0\t"), "{first}");
    // stdout is closed here, as `head -1` would.
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_server_says_who_it_is_at_start_and_in_metrics() {
    let s = crate::harness::Server::start(&crate::harness::example_config("", ""));
    let log = s.log_text();
    let start = log.lines().find(|l| l.contains("starting")).expect(&log);
    assert!(
        start.contains(&format!("version={}", env!("CARGO_PKG_VERSION")))
            && start.contains(&format!("pid={}", s.pid()))
            && start.contains("geodns.toml"),
        "{start}"
    );
    s.dig(&["www.example.com", "A"]);
    assert_eq!(s.metric("geodns_query_processing_seconds_count"), 1);
    assert_eq!(
        s.metric("geodns_query_processing_seconds_bucket{le=\"+Inf\"}"),
        1
    );
    let m = s.metrics();
    // The build alone: what a reload changes has gauges of its own, not labels here.
    assert!(
        m.contains(&format!(
            "geodns_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{m}"
    );
    // Names that say what they count (docs/operations.md, "Renamed metrics").
    assert_eq!(s.metric("geodns_answers_total{qtype=\"A\"}"), 1);
    for name in [
        "geodns_packets_dropped_total ",
        "geodns_responses_truncated_total ",
    ] {
        assert!(m.contains(name), "{name} missing: {m}");
    }
    for old in [
        "geodns_dropped_total",
        "geodns_truncated_total",
        "geodns_queries_by_type_total",
    ] {
        assert!(!m.contains(old), "{old} is still there: {m}");
    }
}

#[test]
fn outside_the_repository_the_default_config_is_under_etc() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::harness::geodns()
        .arg("check")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("/etc/geodns/geodns.toml"), "{err}");
    // In the repository, the bundled example.
    let out = crate::harness::geodns()
        .arg("check")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn logs_are_json_on_request() {
    use std::io::{BufRead, BufReader};
    let (_dir, cfg) = crate::harness::example_dir();
    let mut child = crate::harness::geodns()
        .args(["serve", "--log-json", "-c"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first: Vec<String> = lines.by_ref().take(3).map_while(Result::ok).collect();
    let _ = child.kill();
    let _ = child.wait();
    for line in &first {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["level"], "INFO", "{line}");
    }
    let v: serde_json::Value = serde_json::from_str(&first[0]).unwrap();
    assert_eq!(v["fields"]["message"], "starting", "{}", first[0]);
}

#[test]
fn systemd_hears_ready_once_serving_and_stopping_at_sigterm() {
    let (dir, cfg) = crate::harness::example_dir();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let log = dir.path().join("server.log");
    let mut child = crate::harness::geodns()
        .args(["serve", "-c"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 from the server");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), "READY=1\n");
    // Ready means serving: the sockets are bound by then.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("listening udp") && text.contains("listening tcp"),
        "{text}"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let n = sock.recv(&mut buf).expect("STOPPING=1 from the server");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), "STOPPING=1\n");
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/geodns.service"),
    )
    .unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(
        unit.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE") && unit.contains("User=geodns")
    );
    // systemd's own checker, with the binary this test built in place of /usr/bin/geodns.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geodns.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/geodns", env!("CARGO_BIN_EXE_geodns")),
    )
    .unwrap();
    // (The man pages it names are the package's: not installed where the tests run.)
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect(
            "systemd-analyze is installed (Debian package systemd; scripts/test.sh installs it)",
        );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    // Hardened: systemd's exposure score under 3.0 ("OK"), the unit as shipped.
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let score: f64 = said
        .lines()
        .find_map(|l| l.split("exposure level for geodns.service: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no score in\n{said}"));
    assert!(score < 3.0, "exposure {score}:\n{said}");
    // Still with what it needs: port 53, readiness, reload, its state directory.
    for needed in [
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "StateDirectory=geodns",
    ] {
        assert!(unit.contains(needed), "{needed}");
    }
}

#[test]
fn man_page_and_completions_come_from_the_command_line() {
    let (ok, man, _) = run(&["manpage"], None);
    assert!(ok);
    assert!(
        man.starts_with(".ie") || man.contains(".TH geodns"),
        "{}",
        &man[..man.len().min(200)]
    );
    for sub in ["serve", "mapgen", "presenter", "announce"] {
        assert!(man.contains(sub), "{sub} in the man page");
    }
    let (ok, bash, _) = run(&["completions", "bash"], None);
    assert!(
        ok && bash.contains("_geodns()") && bash.contains("presenter"),
        "{}",
        &bash[..bash.len().min(200)]
    );
    let (ok, zsh, _) = run(&["completions", "zsh"], None);
    assert!(ok && zsh.contains("#compdef geodns"));
}

#[test]
fn the_debian_package_holds_what_an_operator_needs() {
    // The package as scripts/package-deb.sh builds it (man pages and completions from the
    // command line, cargo-deb, md5sums), from the binary this test run built (scripts/test.sh
    // installs cargo-deb and lintian).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_geodns"));
    let target = bin.parent().unwrap().parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = std::process::Command::new("sh")
        .arg(root.join("scripts/package-deb.sh"))
        .arg(&out)
        .current_dir(root)
        .env("CARGO_TARGET_DIR", target)
        .envs([("PROFILE", "dev"), ("BUILD", "0"), ("FAST", "1")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let deb = out.join(format!("geodns_{}-1_amd64.deb", env!("CARGO_PKG_VERSION")));
    assert!(deb.exists(), "{}", String::from_utf8_lossy(&o.stdout));
    // The debug symbols in their own package; the binary itself stripped.
    assert!(out
        .join(format!(
            "geodns-dbgsym_{}-1_amd64.ddeb",
            env!("CARGO_PKG_VERSION")
        ))
        .exists());
    // lintian: no error and no warning.
    let o = std::process::Command::new("lintian")
        .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
        .arg(&deb)
        .output()
        .expect("lintian is installed (scripts/test.sh)");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success()
            && !said
                .lines()
                .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "lintian:\n{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let dpkg = |args: &[&str]| {
        let o = std::process::Command::new("dpkg-deb")
            .args(args)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    let files = dpkg(&["-c"]);
    for path in [
        "./usr/bin/geodns",
        "./usr/lib/systemd/system/geodns.service",
        "./etc/geodns/geodns.toml",
        "./usr/share/geodns/example-map.arrow",
        "./usr/share/geodns/example.com.zone",
        "./usr/share/man/man1/geodns.1.gz",
        "./usr/share/man/man1/geodns-serve.1.gz",
        "./usr/share/man/man1/geodns-map-explain.1.gz",
        "./usr/share/man/man5/geodns.toml.5.gz",
        "./usr/share/man/man5/geodns-announce.toml.5.gz",
        "./usr/share/doc/geodns/README.md",
        "./usr/share/doc/geodns/config.md",
        "./usr/share/doc/geodns/changelog.Debian.gz",
        "./usr/share/bash-completion/completions/geodns",
        "./usr/share/zsh/vendor-completions/_geodns",
        "./usr/share/fish/vendor_completions.d/geodns.fish",
        "./usr/share/doc/geodns/copyright",
    ] {
        assert!(
            files.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} missing from the package:\n{files}"
        );
    }
    assert!(
        files
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with(" ./usr/bin/geodns")),
        "{files}"
    );
    let fields = dpkg(&["-f"]);
    assert!(
        fields.contains("Package: geodns")
            && fields.contains("Section: net")
            && fields
                .lines()
                .any(|l| l.starts_with("Depends:") && l.contains("adduser") && l.contains("libc6")),
        "{fields}"
    );
    // Control files: the config is a conffile (an upgrade keeps the operator's edits), the
    // service user is created, the unit is registered.
    let ctl = dir.path().join("control");
    let o = std::process::Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(&ctl)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(ctl.join("conffiles"))
            .unwrap()
            .trim(),
        "/etc/geodns/geodns.toml"
    );
    let postinst = std::fs::read_to_string(ctl.join("postinst")).unwrap();
    assert!(
        postinst.contains("adduser --system --group")
            && !postinst.contains("--no-create-home")
            && postinst.contains("install -d -o geodns")
            && postinst.contains("geodns.service"),
        "{postinst}"
    );
    assert!(ctl.join("md5sums").exists(), "no md5sums");
    // What it installs works together: the packaged binary accepts the packaged config, with
    // /usr/share and /var/lib moved under the extraction root.
    let x = dir.path().join("root");
    let o = std::process::Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&x)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    std::fs::create_dir_all(x.join("var/lib/geodns")).unwrap();
    // The packaged README is for someone who installed the package, not a checkout.
    let readme = std::fs::read_to_string(x.join("usr/share/doc/geodns/README.md")).unwrap();
    assert!(
        !readme.contains("cargo ") && readme.contains("systemctl reload geodns"),
        "{readme}"
    );
    // Stripped: no debug sections left in the binary.
    let o = std::process::Command::new("readelf")
        .arg("-S")
        .arg(x.join("usr/bin/geodns"))
        .output()
        .unwrap();
    assert!(
        o.status.success() && !String::from_utf8_lossy(&o.stdout).contains(".debug_info"),
        "the packaged binary has debug info"
    );
    let config = std::fs::read_to_string(x.join("etc/geodns/geodns.toml"))
        .unwrap()
        .replace("/usr/share/", &format!("{}/usr/share/", x.display()))
        .replace("/var/lib/", &format!("{}/var/lib/", x.display()));
    std::fs::write(x.join("etc/geodns/geodns.toml"), config).unwrap();
    let o = std::process::Command::new(x.join("usr/bin/geodns"))
        .arg("check")
        .arg("-c")
        .arg(x.join("etc/geodns/geodns.toml"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A man page for every command and config file: every page `geodns(1)` and the others name
/// exists, each has the sections operators look for, man renders each without a warning, and
/// the config page holds every key docs/config.md lists.
#[test]
fn every_man_page_named_exists_and_renders_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let o = geodns()
        .args(["manpage", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(pages.len() >= 20, "{pages:?}");
    let render = |page: &str| {
        let o = std::process::Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8"])
            .arg(dir.path().join(page))
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("man (man-db; scripts/test.sh installs it)");
        let warnings = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            o.status.success() && warnings.trim().is_empty(),
            "{page}: {warnings}"
        );
        // Plain text: grotty's overstrikes (c BS c for bold, _ BS c for underline) undone, and
        // words hyphenated across lines joined.
        let mut plain = String::new();
        for c in String::from_utf8_lossy(&o.stdout).chars() {
            if c == '\u{8}' {
                plain.pop();
            } else {
                plain.push(c);
            }
        }
        plain
            .split('\u{2010}')
            .map(str::to_owned)
            .reduce(|a, b| a + b.trim_start_matches(['\n', ' ']))
            .unwrap_or_default()
    };
    for page in &pages {
        // The roff source, with its escaped hyphens plain.
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap()
            .replace("\\-", "-");
        let wanted: &[&str] = if page.ends_with(".1") {
            &[
                "NAME",
                "SYNOPSIS",
                "FILES",
                "ENVIRONMENT",
                "EXIT STATUS",
                "EXAMPLES",
                "SEE ALSO",
            ]
        } else {
            &["NAME", "DESCRIPTION", "FILES", "EXAMPLES", "SEE ALSO"]
        };
        for s in wanted {
            assert!(
                text.contains(&format!(".SH \"{s}\"")) || text.contains(&format!(".SH {s}")),
                "{page}: no {s}"
            );
        }
        // Every page it names, in the roff source: name(section).
        for (i, _) in text.match_indices("geodns") {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "-._".contains(c)))
                .unwrap_or(rest.len());
            let (name, after) = rest.split_at(end);
            if let Some(sec) = after
                .strip_prefix('(')
                .and_then(|a| a.split_once(')'))
                .map(|(s, _)| s)
                .filter(|s| *s == "1" || *s == "5")
            {
                let target = format!("{}.{sec}", name.trim_end_matches('.'));
                assert!(
                    pages.contains(&target),
                    "{page} names {target}, which does not exist"
                );
            }
        }
        render(page);
    }
    // The config page: every key of docs/config.md's tables.
    let config = render("geodns.toml.5");
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md"),
    )
    .unwrap();
    let keys: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert!(keys.len() > 20, "{keys:?}");
    let flat = config.split_whitespace().collect::<Vec<_>>().join(" ");
    for key in keys {
        assert!(flat.contains(key), "geodns.toml(5) lacks {key}");
    }
    // A subcommand's page is its own, with the synopsis as it is typed.
    let serve = render("geodns-serve.1");
    assert!(serve.contains("geodns serve [-c|--config]"), "{serve}");
}
