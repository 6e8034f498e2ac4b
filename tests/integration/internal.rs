//! Internal zones end to end with a real ZooKeeper: hosts register, humans publish, the
//! presenter reconciles and publishes, servers follow. Faults: session expiry, a corrupt
//! snapshot, a mass deregistration, ZooKeeper down at a server's restart, an interrupted
//! publication, the ensemble's leader killed, quorum lost.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{example_config, Server};
use crate::zk::{register, Proc, ZooKeeper};

pub(crate) const ZONE: &str = "internal.example";

pub(crate) fn presenter_config(zk: &ZooKeeper, guard: &str, zone_extra: &str) -> String {
    format!(
        "[zookeeper]\nconnect = \"{}\"\nsession_timeout_ms = 2000\n\
         [[zones]]\norigin = \"{ZONE}\"\nprimary = \"ns1.{ZONE}\"\nhostmaster = \"hostmaster.{ZONE}\"\n\
         ns = [\"ns1.{ZONE}\"]\n{zone_extra}\n\
         [[rules]]\nrole = \"web\"\ncluster = \"prn1\"\nname = \"web.prn1.{ZONE}\"\n\
         [guard]\n{guard}\n",
        zk.connect()
    )
}

/// Writes the presenter config and starts a presenter.
pub(crate) fn presenter(dir: &Path, cfg: &str, extra: &[&str]) -> Proc {
    let path = dir.join("presenter.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut args = vec!["presenter", "-c", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let n = std::fs::read_dir(dir).unwrap().count();
    Proc::spawn(&args, &dir.join(format!("presenter-{n}.log")))
}

#[test]
fn check_and_publish_refuse_what_servers_would_refuse() {
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("presenter.toml"),
        presenter_config(&zk, "", ""),
    )
    .unwrap();
    let check = |text: &str| {
        let file = dir.path().join("h.zone");
        std::fs::write(&file, text).unwrap();
        let out = crate::harness::geodns()
            .args(["check", "--presenter"])
            .arg(dir.path().join("presenter.toml"))
            .arg("--internal")
            .arg(format!("{ZONE}={}", file.display()))
            .output()
            .unwrap();
        let publish = crate::harness::geodns()
            .args(["publish", "-c"])
            .arg(dir.path().join("presenter.toml"))
            .args(["--zone", ZONE])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(
            out.status.success(),
            publish.status.success(),
            "check and publish agree"
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(check("a IN A 10.0.0.1\n").0);
    let (ok, err) = check("a IN A 10.0.0.1\na IN CNAME b\n");
    assert!(!ok && err.contains("CNAME and other data"), "{err}");
    let (ok, err) = check("@ IN SOA ns1 h 1 2 3 4 5\n");
    assert!(!ok && err.contains("presenter's"), "{err}");
    let (ok, err) = check("a IN A 10.0.0.300\n");
    assert!(!ok && err.contains("h.zone"), "{err}");
    // Nothing refused was published.
    let human = zk.get(&format!("/geodns/human/{ZONE}")).unwrap();
    assert_eq!(human, b"a IN A 10.0.0.1\n");
}

pub(crate) fn publish(dir: &Path, origin: &str, text: &str) {
    publish_with(dir, origin, text, &[]);
}

/// `geodns publish` of `text` to `origin`, with `extra` arguments (e.g. a password file).
pub(crate) fn publish_with(dir: &Path, origin: &str, text: &str, extra: &[&str]) {
    let file = dir.join(format!("{origin}.zone"));
    std::fs::write(&file, text).unwrap();
    let out = crate::harness::geodns()
        .args(["publish", "-c"])
        .arg(dir.join("presenter.toml"))
        .args(["--zone", origin])
        .args(extra)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn server(zk: &ZooKeeper) -> Server {
    server_for(zk, &[ZONE])
}

/// A server following `zk` that takes the internal zones `zones`.
fn server_for(zk: &ZooKeeper, zones: &[&str]) -> Server {
    let zones: Vec<String> = zones.iter().map(|z| format!("\"{z}\"")).collect();
    Server::start(&example_config(
        "",
        &format!(
            "[zookeeper]\nconnect = \"{}\"\njitter_ms = 50\nrecheck_ms = 1000\nsession_timeout_ms = 2000\nzones = [{}]\n",
            zk.connect(),
            zones.join(", ")
        ),
    ))
}

pub(crate) fn a(s: &Server, name: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .dig(&[name, "A", "+short"])
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// Waits until every server answers `name` A with `want` (empty: no address).
fn wait_a(servers: &[&Server], name: &str, want: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    for s in servers {
        while a(s, name) != want {
            assert!(
                Instant::now() < deadline,
                "{name}: {:?}, want {want:?}\n{}",
                a(s, name),
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The common start: a presenter (grace 200 ms), a server following, and h1.prn1 registered
/// with `register_extra` and answered.
struct World {
    dir: tempfile::TempDir,
    presenter: Proc,
    server: Server,
    h1: Proc,
    name: String,
}

fn world(zk: &ZooKeeper, register_extra: &[&str]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let presenter = presenter(dir.path(), &presenter_config(zk, "grace_ms = 200", ""), &[]);
    let server = server(zk);
    let name = format!("h1.prn1.{ZONE}");
    let h1 = register(zk, dir.path(), &name, "10.0.0.1", register_extra);
    wait_a(&[&server], &name, &["10.0.0.1"], Duration::from_secs(15));
    World {
        dir,
        presenter,
        server,
        h1,
        name,
    }
}

fn status(s: &Server) -> String {
    s.dig(&["_status.example.com", "TXT", "+short"])
}

#[test]
fn hosts_register_humans_override_and_every_server_serves_the_same() {
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = presenter_config(&zk, "grace_ms = 300", "");
    std::fs::write(dir.path().join("presenter.toml"), &cfg).unwrap();
    publish(
        dir.path(),
        ZONE,
        "ns1 IN A 192.0.2.53\nstatic IN A 10.1.1.1\nh2.prn1 IN A 10.9.9.9\n",
    );
    let p = presenter(dir.path(), &cfg, &[]);
    let (s1, s2) = (server(&zk), server(&zk));
    let h1 = register(
        &zk,
        dir.path(),
        &format!("h1.prn1.{ZONE}"),
        "10.0.0.1",
        &["--service", "web:prn1:8080"],
    );
    let _h2 = register(&zk, dir.path(), &format!("h2.prn1.{ZONE}"), "10.0.0.2", &[]);
    let both = [&s1, &s2];
    wait_a(
        &both,
        &format!("h1.prn1.{ZONE}"),
        &["10.0.0.1"],
        Duration::from_secs(10),
    );
    wait_a(
        &both,
        &format!("web.prn1.{ZONE}"),
        &["10.0.0.1"],
        Duration::from_secs(5),
    );
    wait_a(
        &both,
        &format!("static.{ZONE}"),
        &["10.1.1.1"],
        Duration::from_secs(5),
    );
    // The human record wins over the robot's, and the conflict is reported.
    wait_a(
        &both,
        &format!("h2.prn1.{ZONE}"),
        &["10.9.9.9"],
        Duration::from_secs(5),
    );
    let conflicts = String::from_utf8(zk.get("/geodns/conflicts").unwrap()).unwrap();
    assert!(
        conflicts.contains("human_overrides") && conflicts.contains(&format!("h2.prn1.{ZONE}")),
        "{conflicts}"
    );
    assert!(p.log_text().contains("conflict"), "{}", p.log_text());
    for s in both {
        let srv = s.dig(&[&format!("_web._tcp.web.prn1.{ZONE}"), "SRV", "+short"]);
        assert_eq!(srv.trim(), format!("0 0 8080 h1.prn1.{ZONE}."));
    }
    // Both servers hold the same version, the SOA serial follows it, and it is in the status.
    let soa = |s: &Server| s.dig(&[ZONE, "SOA", "+short"]);
    assert_eq!(soa(&s1), soa(&s2));
    let serial: u64 = soa(&s1).split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(
        status(&s1).contains(&format!("internal-snapshot={serial}")),
        "{}",
        status(&s1)
    );
    assert_eq!(s1.metric("geodns_internal_snapshot_version"), serial);

    // The host stops: its records go everywhere once the grace period is over.
    h1.stop();
    wait_a(
        &both,
        &format!("h1.prn1.{ZONE}"),
        &[],
        Duration::from_secs(10),
    );
    wait_a(
        &both,
        &format!("web.prn1.{ZONE}"),
        &[],
        Duration::from_secs(5),
    );
    assert!(s1
        .dig(&[&format!("h1.prn1.{ZONE}"), "A"])
        .contains("NXDOMAIN"));
}

#[test]
fn a_host_cut_off_longer_than_its_session_loses_its_records_and_comes_back() {
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    let _p = presenter(
        dir.path(),
        &presenter_config(&zk, "grace_ms = 200", ""),
        &[],
    );
    let s = server(&zk);
    let name = format!("h1.prn1.{ZONE}");
    let h = register(
        &zk,
        dir.path(),
        &name,
        "10.0.0.1",
        &["--session-timeout-ms", "1000"],
    );
    wait_a(&[&s], &name, &["10.0.0.1"], Duration::from_secs(10));
    // Frozen (no heartbeats): after the session timeout ZooKeeper removes its node.
    h.signal("STOP");
    let stopped = Instant::now();
    wait_a(&[&s], &name, &[], Duration::from_secs(10));
    assert!(
        stopped.elapsed() >= Duration::from_millis(900),
        "{:?}",
        stopped.elapsed()
    );
    // Thawed: it finds its session expired and registers in a new one.
    h.signal("CONT");
    h.wait_log("registered", 2, Duration::from_secs(10));
    wait_a(&[&s], &name, &["10.0.0.1"], Duration::from_secs(10));
}

#[test]
fn a_snapshot_over_one_megabyte_is_chunked_and_served_whole() {
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    let second = "big.example";
    let cfg = presenter_config(&zk, "", "").replace(
        "[[rules]]",
        &format!(
            "[[zones]]\norigin = \"{second}\"\nprimary = \"ns1.{second}\"\nhostmaster = \"h.{second}\"\nns = [\"ns1.{second}\"]\n\n[[rules]]"
        ),
    );
    std::fs::write(dir.path().join("presenter.toml"), &cfg).unwrap();
    // Two human zones of 22,000 records each: about 1.3 MB of snapshot.
    for origin in [ZONE, second] {
        let text: String = (0..22_000)
            .map(|i| {
                format!(
                    "host{i:05}.rack{} IN A 10.{}.{}.{}\n",
                    i % 50,
                    i / 65536,
                    i / 256 % 256,
                    i % 256
                )
            })
            .collect();
        publish(dir.path(), origin, &text);
    }
    let _p = presenter(dir.path(), &cfg, &[]);
    let s = server_for(&zk, &[ZONE, second]);
    wait_a(
        &[&s],
        &format!("host21999.rack49.{second}"),
        &["10.0.85.239"],
        Duration::from_secs(30),
    );
    wait_a(
        &[&s],
        &format!("host00000.rack0.{ZONE}"),
        &["10.0.0.0"],
        Duration::from_secs(5),
    );
    let pointer: serde_json::Value =
        serde_json::from_slice(&zk.get("/geodns/snapshot").unwrap()).unwrap();
    assert!(pointer["size"].as_u64().unwrap() > 1 << 20, "{pointer}");
    assert!(pointer["chunks"].as_u64().unwrap() >= 2, "{pointer}");
}

#[test]
fn a_corrupt_snapshot_is_refused_and_the_last_good_one_keeps_serving() {
    let zk = ZooKeeper::standalone();
    let World {
        dir,
        presenter: p,
        server: s,
        h1: _h1,
        name,
    } = world(&zk, &[]);
    let good = s.metric("geodns_internal_snapshot_version");
    // Version good+1 whose chunk does not match the pointer's checksum.
    let pointer: serde_json::Value =
        serde_json::from_slice(&zk.get("/geodns/snapshot").unwrap()).unwrap();
    let v = good + 1;
    let chunk = format!("/geodns/snapshots/{v:020}/00000");
    zk.set(
        &chunk,
        b"{\"format\":1,\"version\":999,\"created_at\":\"x\",\"zones\":[]}",
    );
    let mut bad = pointer.clone();
    bad["version"] = v.into();
    bad["size"] = 55.into();
    zk.set("/geodns/snapshot", &serde_json::to_vec(&bad).unwrap());
    s.wait_log("snapshot refused", 1);
    assert_eq!(a(&s, &name), ["10.0.0.1"]);
    // The presenter watches the pointer: it publishes over what it did not write at once,
    // under the refused one's number (servers refuse by version and checksum, so the genuine
    // one is taken), and the server takes that and the next change.
    p.wait_log(
        "the published snapshot is damaged or not this presenter's",
        1,
        Duration::from_secs(10),
    );
    let t = Instant::now();
    while s.metric("geodns_internal_snapshot_version") < v {
        assert!(t.elapsed() < Duration::from_secs(10), "{}", s.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(a(&s, &name), ["10.0.0.1"]);
    let _h2 = register(&zk, dir.path(), &format!("h2.prn1.{ZONE}"), "10.0.0.2", &[]);
    wait_a(
        &[&s],
        &format!("h2.prn1.{ZONE}"),
        &["10.0.0.2"],
        Duration::from_secs(20),
    );
    assert!(
        s.metric("geodns_internal_snapshot_version") > v,
        "{}",
        p.log_text()
    );
    assert_eq!(a(&s, &name), ["10.0.0.1"]);
}

#[test]
fn a_mass_deregistration_is_held_back_until_forced() {
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = presenter_config(
        &zk,
        "grace_ms = 1000\nmax_drop_share = 0.3\nmin_dropped = 3",
        "",
    );
    let p = presenter(dir.path(), &cfg, &[]);
    let s = server(&zk);
    let hosts: Vec<Proc> = (1..=8)
        .map(|i| {
            register(
                &zk,
                dir.path(),
                &format!("h{i}.{ZONE}"),
                &format!("10.0.0.{i}"),
                &[],
            )
        })
        .collect();
    wait_a(
        &[&s],
        &format!("h8.{ZONE}"),
        &["10.0.0.8"],
        Duration::from_secs(10),
    );
    wait_a(
        &[&s],
        &format!("h1.{ZONE}"),
        &["10.0.0.1"],
        Duration::from_secs(5),
    );
    // Six of eight go at once: held back, reported, and the servers keep answering them.
    let mut hosts = hosts.into_iter();
    let keep: Vec<Proc> = hosts.by_ref().take(2).collect();
    let going: Vec<Proc> = hosts.collect();
    for h in &going {
        h.signal("TERM");
    }
    drop(going);
    p.wait_log("snapshot held back", 1, Duration::from_secs(10));
    let held = String::from_utf8(zk.get("/geodns/held").unwrap()).unwrap();
    // Six went; how many of them the first held snapshot drops depends on when their nodes
    // vanished, but it is held against the 8 published.
    assert!(
        held.contains("would drop") && held.contains("of 8 robot records"),
        "{held}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a(&s, &format!("h5.{ZONE}")), ["10.0.0.5"]);
    // An operator who agrees restarts the presenter with --force.
    drop(p);
    let _forced = presenter(dir.path(), &cfg, &["--force"]);
    wait_a(&[&s], &format!("h5.{ZONE}"), &[], Duration::from_secs(15));
    wait_a(
        &[&s],
        &format!("h1.{ZONE}"),
        &["10.0.0.1"],
        Duration::from_secs(1),
    );
    assert!(zk.get("/geodns/held").unwrap().is_empty());
    drop(keep);
}

#[test]
fn a_server_restarted_while_zookeeper_is_down_serves_from_disk_and_catches_up() {
    let mut zk = ZooKeeper::standalone();
    let World {
        dir,
        presenter: _p,
        server: s,
        h1: _h1,
        name,
    } = world(&zk, &[]);
    zk.nodes[0].kill();
    let s = s.restart();
    assert_eq!(
        a(&s, &name),
        ["10.0.0.1"],
        "served from the snapshot on disk at once"
    );
    assert!(s.log_text().contains("last good snapshot on disk"));
    zk.nodes[0].restart();
    zk.wait_serving();
    let name2 = format!("h2.prn1.{ZONE}");
    let _h2 = register(&zk, dir.path(), &name2, "10.0.0.2", &[]);
    wait_a(&[&s], &name2, &["10.0.0.2"], Duration::from_secs(30));
    assert_eq!(a(&s, &name), ["10.0.0.1"]);
}

#[test]
fn an_interrupted_publication_is_never_served_and_the_next_one_cleans_up() {
    let zk = ZooKeeper::standalone();
    let World {
        dir,
        presenter: p,
        server: s,
        h1: _h1,
        name,
    } = world(&zk, &[]);
    let v = s.metric("geodns_internal_snapshot_version");
    // What a presenter killed between chunks leaves: half the chunks of v+1, pointer unmoved.
    drop(p);
    let orphan = format!("/geodns/snapshots/{:020}/00000", v + 1);
    zk.set(&orphan, b"{\"format\":1,\"version\":");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(s.metric("geodns_internal_snapshot_version"), v);
    assert_eq!(a(&s, &name), ["10.0.0.1"]);
    // The next presenter publishes v+1 whole over the orphan.
    let _p2 = presenter(
        dir.path(),
        &presenter_config(&zk, "grace_ms = 200", ""),
        &[],
    );
    let name2 = format!("h2.prn1.{ZONE}");
    let _h2 = register(&zk, dir.path(), &name2, "10.0.0.2", &[]);
    wait_a(&[&s], &name2, &["10.0.0.2"], Duration::from_secs(20));
    assert_eq!(s.metric("geodns_internal_snapshot_version"), v + 1);
    assert!(!s.log_text().contains("snapshot refused"));
}

/// Answers `name` at least every 100 ms for `span`, asserting the answer never changes.
fn keeps_answering(s: &Server, name: &str, want: &[&str], span: Duration) {
    let until = Instant::now() + span;
    while Instant::now() < until {
        assert_eq!(
            a(s, name),
            want,
            "{name} changed while ZooKeeper was in trouble"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_ensemble_loses_its_leader_and_servers_keep_serving_and_catch_up() {
    let mut zk = ZooKeeper::ensemble(3);
    let World {
        dir,
        presenter: _p,
        server: s,
        h1: _h1,
        name,
    } = world(&zk, &[]);
    let leader = zk
        .nodes
        .iter()
        .position(|n| n.mode().as_deref() == Some("leader"))
        .expect("a leader");
    zk.nodes[leader].kill();
    keeps_answering(&s, &name, &["10.0.0.1"], Duration::from_secs(2));
    // A change after the election reaches the server.
    let name2 = format!("h2.prn1.{ZONE}");
    let _h2 = register(&zk, dir.path(), &name2, "10.0.0.2", &[]);
    wait_a(&[&s], &name2, &["10.0.0.2"], Duration::from_secs(30));
    assert_eq!(a(&s, &name), ["10.0.0.1"]);
}

#[test]
fn an_ensemble_that_loses_quorum_deletes_nothing() {
    let mut zk = ZooKeeper::ensemble(3);
    let dir = tempfile::tempdir().unwrap();
    let _p = presenter(
        dir.path(),
        &presenter_config(&zk, "grace_ms = 200", ""),
        &[],
    );
    let s = server(&zk);
    let name = format!("h1.prn1.{ZONE}");
    // A session of 1 s: far shorter than the outage below.
    let h1 = register(
        &zk,
        dir.path(),
        &name,
        "10.0.0.1",
        &["--session-timeout-ms", "1000"],
    );
    wait_a(&[&s], &name, &["10.0.0.1"], Duration::from_secs(15));
    // Two of three members down: no quorum, so no session can expire.
    zk.nodes[0].kill();
    zk.nodes[1].kill();
    keeps_answering(&s, &name, &["10.0.0.1"], Duration::from_secs(4));
    zk.nodes[0].restart();
    zk.nodes[1].restart();
    zk.wait_serving();
    // The client gives its session up after a timeout without any member and registers in a
    // new one; the records never leave the DNS either way.
    keeps_answering(&s, &name, &["10.0.0.1"], Duration::from_secs(4));
    assert!(h1.log_text().contains("registered"));
    // And the ensemble works again.
    let name2 = format!("h2.prn1.{ZONE}");
    let _h2 = register(&zk, dir.path(), &name2, "10.0.0.2", &[]);
    wait_a(&[&s], &name2, &["10.0.0.2"], Duration::from_secs(30));
}

#[test]
fn a_hosts_local_unbound_resolves_a_new_host_and_forgets_it_after_the_negative_ttl() {
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    // Short TTLs so the cache's behaviour shows within the test: 2 s positive, 2 s negative.
    let cfg = presenter_config(&zk, "grace_ms = 200", "ttl = 2\nnegative_ttl = 2");
    let _p = presenter(dir.path(), &cfg, &[]);
    let s = server(&zk);
    let cache = crate::resolvers::Resolver::unbound_for(&s, &[ZONE], false, "127.0.0.1");
    let name = format!("h1.prn1.{ZONE}.");
    let ask = || {
        crate::resolvers::dig(cache.port, "127.0.0.1", &[&name, "A", "+short"])
            .trim()
            .to_owned()
    };
    // Not registered yet: the cache holds the NXDOMAIN for the negative TTL at most.
    assert_eq!(ask(), "");
    let h1 = register(&zk, dir.path(), &name[..name.len() - 1], "10.0.0.1", &[]);
    let registered = Instant::now();
    while ask() != "10.0.0.1" {
        assert!(
            registered.elapsed() < Duration::from_secs(10),
            "never resolved"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    h1.stop();
    wait_a(&[&s], &name, &[], Duration::from_secs(10));
    let gone = Instant::now();
    while !ask().is_empty() {
        // The cached A lives for its TTL (2 s), no longer.
        assert!(
            gone.elapsed() < Duration::from_secs(4),
            "still resolved from the cache"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_presenters_one_publishes_and_the_other_takes_over() {
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = presenter_config(&zk, "grace_ms = 200", "");
    let p1 = presenter(dir.path(), &cfg, &[]);
    p1.wait_log("leader: publishing", 1, Duration::from_secs(10));
    let p2 = presenter(dir.path(), &cfg, &[]);
    p2.wait_log("waiting for leadership", 1, Duration::from_secs(10));
    let s = server(&zk);
    let name = format!("h1.prn1.{ZONE}");
    let _h1 = register(&zk, dir.path(), &name, "10.0.0.1", &[]);
    wait_a(&[&s], &name, &["10.0.0.1"], Duration::from_secs(10));
    assert!(!p2.log_text().contains("published"), "{}", p2.log_text());
    // The leader dies without a goodbye: its lock goes with its session, the other leads.
    p1.signal("KILL");
    p2.wait_log("leader: publishing", 1, Duration::from_secs(15));
    let name2 = format!("h2.prn1.{ZONE}");
    let _h2 = register(&zk, dir.path(), &name2, "10.0.0.2", &[]);
    wait_a(&[&s], &name2, &["10.0.0.2"], Duration::from_secs(10));
    assert_eq!(a(&s, &name), ["10.0.0.1"]);
}

/// A persistent node with a low sequence number in the presenters' lock directory (issue 20)
/// is named in the log while every presenter waits, and `--remove-squatters` clears it; the
/// presenter then leads.
#[test]
fn a_squatted_presenter_lock_is_reported_and_removable() {
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    let squatter = "/geodns/presenters/_c_squatter-presenter-0000000000";
    zk.set(squatter, b"");
    let p = presenter(dir.path(), &presenter_config(&zk, "", ""), &[]);
    p.wait_log(
        "the presenters' lock is squatted",
        1,
        Duration::from_secs(15),
    );
    assert!(p.log_text().contains(squatter), "{}", p.log_text());
    assert!(!p.log_text().contains("leader: publishing"));
    let o = crate::harness::geodns()
        .args(["presenter", "-c"])
        .arg(dir.path().join("presenter.toml"))
        .arg("--remove-squatters")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains(&format!("removed {squatter}")),
        "{out}"
    );
    p.wait_log("leader: publishing", 1, Duration::from_secs(15));
    assert!(zk.get(squatter).is_none());
}
