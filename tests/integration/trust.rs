//! Who may write what (issue 22): the attacks found against the control plane, replayed
//! against a real ZooKeeper, a presenter that signs and servers that trust its key. An
//! attacker here is anyone who can write to ZooKeeper: a forged, rolled-back or out-of-scope
//! snapshot is never served, the presenter publishes over a pointer it did not write, and a
//! deleted tree empties nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use geodns_snapshot::{Pointer, Snapshot, ZoneText};

use crate::harness::{example_config, Server};
use crate::internal::{a, presenter, presenter_config, ZONE};
use crate::mapgen::run_ok;
use crate::zk::{register, ZooKeeper};

/// `geodns keygen` into `dir`: the private key's path and the public key.
pub(crate) fn keygen(dir: &Path) -> (String, String) {
    let path = dir.join("presenter.key");
    let public = run_ok(&["keygen".as_ref(), "--out".as_ref(), path.as_os_str()])
        .trim()
        .to_owned();
    assert_eq!(
        std::fs::read_to_string(dir.join("presenter.key.pub"))
            .unwrap()
            .trim(),
        public
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is its owner's only");
    (path.display().to_string(), public)
}

fn server(zk: &ZooKeeper, keys: &[&str]) -> Server {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    Server::start(&example_config(
        "",
        &format!(
            "[zookeeper]\nconnect = \"{}\"\njitter_ms = 20\nrecheck_ms = 1000\nsession_timeout_ms = 2000\n\
             zones = [\"{ZONE}\"]\ntrusted_keys = [{}]\n",
            zk.connect(),
            keys.join(", ")
        ),
    ))
}

/// Writes a snapshot straight into ZooKeeper, as anyone who can write there could: its chunk
/// and a pointer with the right checksum, unsigned.
fn forge(zk: &ZooKeeper, version: u64, zones: &[(&str, &str)]) {
    let head = "$TTL 60\n@ IN SOA ns1 h 1 2 3 4 5\n@ IN NS ns1\nns1 IN A 10.0.0.53\n";
    let snap = Snapshot {
        format: 1,
        version,
        created_at: "2026-12-06T00:00:00Z".into(),
        zones: zones
            .iter()
            .map(|(origin, body)| ZoneText {
                origin: (*origin).into(),
                text: format!("{head}{body}"),
            })
            .collect(),
    };
    let (bytes, pointer) = snap.encode();
    zk.set(&format!("/geodns/snapshots/{version:020}/00000"), &bytes);
    zk.set("/geodns/snapshot", &pointer.to_bytes());
}

fn pointer(zk: &ZooKeeper) -> Pointer {
    Pointer::parse(&zk.get("/geodns/snapshot").expect("a pointer")).unwrap()
}

fn wait(what: &str, within: Duration, mut ok: impl FnMut() -> bool, log: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn refused(s: &Server, reason: &str) -> u64 {
    s.metric(&format!(
        "geodns_internal_snapshots_refused_total{{reason=\"{reason}\"}}"
    ))
}

#[test]
fn forged_rolled_back_and_out_of_scope_snapshots_are_refused_and_published_over() {
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let cfg = format!(
        "signing_key = \"{key}\"\n{}",
        presenter_config(&zk, "grace_ms = 200", "")
    );
    let p = presenter(dir.path(), &cfg, &[]);
    let trusting = server(&zk, &[&public]);
    // A server that trusts no key takes unsigned snapshots, and says so at start.
    let open = server(&zk, &[]);
    open.wait_log("trusted_keys is empty", 1);
    let name = format!("h1.prn1.{ZONE}");
    let _h1 = register(&zk, dir.path(), &name, "10.0.0.1", &[]);
    for s in [&trusting, &open] {
        wait(
            &format!("{name} served"),
            Duration::from_secs(15),
            || a(s, &name) == ["10.0.0.1"],
            || s.log_text(),
        );
    }
    let genuine = pointer(&zk);
    assert_eq!(genuine.signed_by.as_deref(), Some(public.as_str()));
    let genuine_bytes = zk.get("/geodns/snapshot").unwrap();

    // 1. Forged and unsigned, at the next version: the trusting server refuses it; the
    //    presenter sees a pointer it did not write and publishes over it, signed.
    forge(
        &zk,
        genuine.version + 1,
        &[(ZONE, "h1.prn1 IN A 6.6.6.6\n")],
    );
    wait(
        "the forgery refused",
        Duration::from_secs(10),
        || refused(&trusting, "signature") >= 1,
        || trusting.log_text(),
    );
    assert!(
        trusting.log_text().contains("not signed"),
        "{}",
        trusting.log_text()
    );
    wait(
        "the presenter publishes over the forgery",
        Duration::from_secs(10),
        || {
            let now = pointer(&zk);
            now.signed_by.as_deref() == Some(public.as_str()) && now.version > genuine.version
        },
        || p.log_text(),
    );
    assert_eq!(
        a(&trusting, &name),
        ["10.0.0.1"],
        "never served the forgery"
    );
    let republished = pointer(&zk);
    wait(
        "the trusting server takes the genuine one",
        Duration::from_secs(10),
        || trusting.metric("geodns_internal_snapshot_version ") == republished.version,
        || trusting.log_text(),
    );

    // 2. Replayed: the genuine, signed pointer of an older version. Refused as a rollback,
    //    and published over again.
    zk.set("/geodns/snapshot", &genuine_bytes);
    wait(
        "the replay refused",
        Duration::from_secs(10),
        || refused(&trusting, "version") >= 1,
        || trusting.log_text(),
    );
    assert!(
        trusting.log_text().contains("not newer than"),
        "{}",
        trusting.log_text()
    );
    wait(
        "the presenter publishes over the replay",
        Duration::from_secs(10),
        || pointer(&zk).version > republished.version,
        || p.log_text(),
    );
    let now = pointer(&zk).version;
    for s in [&trusting, &open] {
        wait(
            "both servers take it",
            Duration::from_secs(10),
            || s.metric("geodns_internal_snapshot_version ") == now,
            || s.log_text(),
        );
        assert_eq!(a(s, &name), ["10.0.0.1"]);
    }

    // 3. Out of scope: a zone below the public zone example.com, which would take over its
    //    geo name. Even the server that takes unsigned snapshots refuses it.
    let www = open.dig(&["www.example.com", "A", "+short"]);
    forge(
        &zk,
        pointer(&zk).version + 1,
        &[
            (ZONE, "h1.prn1 IN A 10.0.0.1\n"),
            ("www.example.com", "@ IN A 6.6.6.6\n"),
        ],
    );
    wait(
        "the out-of-scope snapshot refused",
        Duration::from_secs(10),
        || refused(&open, "zones") >= 1,
        || open.log_text(),
    );
    assert!(
        open.log_text()
            .contains("zone www.example.com is not one of this server's internal zones"),
        "{}",
        open.log_text()
    );
    assert_eq!(open.dig(&["www.example.com", "A", "+short"]), www);

    // 4. A version past the 32-bit SOA serial (the presenter once wrapped to 0 after one).
    forge(&zk, u64::MAX, &[(ZONE, "h1.prn1 IN A 6.6.6.6\n")]);
    wait(
        "the huge version refused",
        Duration::from_secs(10),
        || refused(&open, "version") >= 1,
        || open.log_text(),
    );
    assert_eq!(a(&open, &name), ["10.0.0.1"]);
    wait(
        "the presenter publishes over it, in range",
        Duration::from_secs(10),
        || {
            let now = pointer(&zk);
            now.signed_by.as_deref() == Some(public.as_str()) && now.version <= u64::from(u32::MAX)
        },
        || p.log_text(),
    );
}

#[test]
fn a_deleted_tree_empties_nothing_and_hosts_register_again() {
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let cfg = format!(
        "signing_key = \"{key}\"\n{}",
        presenter_config(&zk, "grace_ms = 1000", "")
    );
    let p = presenter(dir.path(), &cfg, &[]);
    let s = server(&zk, &[&public]);
    let names: Vec<String> = (1..=6).map(|i| format!("h{i}.prn1.{ZONE}")).collect();
    let _hosts: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| register(&zk, dir.path(), n, &format!("10.0.0.{}", i + 1), &[]))
        .collect();
    for (i, n) in names.iter().enumerate() {
        let want = format!("10.0.0.{}", i + 1);
        wait(
            n,
            Duration::from_secs(15),
            || a(&s, n) == [want.clone()],
            || s.log_text(),
        );
    }
    let before = pointer(&zk).version;
    zk.delete_tree("/geodns");
    // Every name keeps answering while the tree comes back.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        for (i, n) in names.iter().enumerate() {
            assert_eq!(
                a(&s, n),
                [format!("10.0.0.{}", i + 1)],
                "{n} after the tree was deleted\n{}",
                p.log_text()
            );
        }
    }
    // The hosts registered again, and the presenter published again, newer and signed.
    wait(
        "hosts registered again",
        Duration::from_secs(10),
        || {
            crate::zk::runtime().block_on(async {
                let c = zookeeper_client::Client::connect(&zk.connect())
                    .await
                    .unwrap();
                c.list_children("/geodns/hosts")
                    .await
                    .map(|v| v.len())
                    .unwrap_or(0)
                    == 6
            })
        },
        || p.log_text(),
    );
    wait(
        "published again",
        Duration::from_secs(10),
        || {
            zk.get("/geodns/snapshot")
                .and_then(|b| Pointer::parse(&b).ok())
                .is_some_and(|now| {
                    now.version > before && now.signed_by.as_deref() == Some(public.as_str())
                })
        },
        || p.log_text(),
    );
    assert!(
        p.log_text().contains("the snapshot pointer is gone"),
        "{}",
        p.log_text()
    );
    for (i, n) in names.iter().enumerate() {
        assert_eq!(a(&s, n), [format!("10.0.0.{}", i + 1)]);
    }
}

/// ISC's `opcodeflg`: an unknown opcode is answered NOTIMP echoing the opcode, not RD or CD.
#[test]
fn an_unknown_opcode_echoes_no_flags() {
    let s = Server::start(&example_config("", ""));
    let out = s.dig(&["example.com", "SOA", "+opcode=15", "+cd", "+rec", "+noedns"]);
    assert!(out.contains("status: NOTIMP"), "{out}");
    assert!(
        out.contains("opcode: RESERVED15") || out.contains("opcode: 15"),
        "{out}"
    );
    assert!(out.contains(";; flags: qr;"), "{out}");
}

/// A robot may not take a zone's apex or a rule's service name (it would have joined the
/// `web.prn1` pool), nor a name outside `robot_names`: left out and reported.
#[test]
fn a_robot_cannot_register_an_apex_a_service_name_or_outside_its_names() {
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "robot_names = [\"prn1.{ZONE}\"]\n{}",
        presenter_config(&zk, "grace_ms = 200", "")
    );
    let p = presenter(dir.path(), &cfg, &[]);
    let s = server(&zk, &[]);
    let web = format!("web.prn1.{ZONE}");
    let _h1 = register(
        &zk,
        dir.path(),
        &format!("h1.prn1.{ZONE}"),
        "10.0.0.1",
        &["--service", "web:prn1:80"],
    );
    let _squat = register(
        &zk,
        dir.path(),
        &web,
        "6.6.6.6",
        &["--service", "web:prn1:80"],
    );
    let _apex = register(&zk, dir.path(), ZONE, "6.6.6.7", &[]);
    let _outside = register(&zk, dir.path(), &format!("h1.ams1.{ZONE}"), "6.6.6.8", &[]);
    wait(
        "three unauthorized names reported",
        Duration::from_secs(15),
        || {
            zk.get("/geodns/conflicts")
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .matches("unauthorized_name")
                        .count()
                        >= 4
                })
                .unwrap_or(false)
        },
        || p.log_text(),
    );
    wait(
        "the pool served",
        Duration::from_secs(15),
        || a(&s, &web) == ["10.0.0.1"],
        || s.log_text(),
    );
    assert_eq!(a(&s, ZONE), Vec::<String>::new());
    assert_eq!(a(&s, &format!("h1.ams1.{ZONE}")), Vec::<String>::new());
}
