//! One identity per role on a ZooKeeper that authenticates clients (SASL DIGEST-MD5): the
//! tree `geodns zk init` sets up lets each role write what it must and nothing else, and lets
//! an unauthenticated client neither read nor write anything of geodns's. The whole chain
//! (robot, human, presenter, server) works with credentials.

use std::path::Path;
use std::time::{Duration, Instant};

use zookeeper_client as zk;

use crate::harness::{example_config, geodns, Server};
use crate::internal::{a, presenter, presenter_config, publish_with, ZONE};
use crate::mapgen::run_ok;
use crate::zk::{password_file, register, runtime, sasl_password, ZooKeeper};

/// A session as `user` (`None`: unauthenticated).
async fn client(connect: &str, user: Option<&str>) -> zk::Client {
    let mut c = zk::Client::connector().with_session_timeout(Duration::from_secs(4));
    if let Some(u) = user {
        c = c.with_sasl(zk::SaslOptions::digest_md5(u.to_owned(), sasl_password(u)));
    }
    c.connect(connect).await.unwrap()
}

/// What `user` may do, each operation with whether ZooKeeper allows it.
async fn check(connect: &str, user: Option<&str>, ops: &[(&str, &str, bool)]) {
    let c = client(connect, user).await;
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    for (op, path, allowed) in ops {
        let r = match *op {
            "read" => c.get_data(path).await.map(|_| ()),
            "list" => c.list_children(path).await.map(|_| ()),
            "write" => c.set_data(path, b"x", None).await.map(|_| ()),
            "create" => c.create(path, b"x", &open).await.map(|_| ()),
            "delete" => c.delete(path, None).await,
            other => panic!("{other}"),
        };
        match (allowed, &r) {
            (true, Ok(())) => {}
            (false, Err(zk::Error::NoAuth)) => {}
            _ => panic!(
                "{user:?} {op} {path}: {r:?}, want {}",
                if *allowed { "allowed" } else { "NoAuth" }
            ),
        }
    }
}

fn init(zk: &ZooKeeper, dir: &Path) -> String {
    init_with(zk, dir, &[])
}

fn init_with(zk: &ZooKeeper, dir: &Path, extra: &[&str]) -> String {
    let admin = password_file(dir, "geodns-admin");
    let connect = zk.connect();
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "zk".as_ref(),
        "init".as_ref(),
        "--zookeeper".as_ref(),
        connect.as_ref(),
        "--password-file".as_ref(),
        admin.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    run_ok(&args)
}

/// A presenter with a signing key and a server that trusts it, each authenticated as its role.
fn secure_chain(zk: &ZooKeeper, d: &Path) -> (crate::zk::Proc, Server) {
    let (key, public) = crate::trust::keygen(d);
    let cfg = presenter_config(zk, "grace_ms = 200", "").replacen(
        "session_timeout_ms = 2000\n",
        &format!(
            "session_timeout_ms = 2000\npassword_file = \"{}\"\n",
            password_file(d, "geodns-presenter").display()
        ),
        1,
    );
    let p = presenter(d, &format!("signing_key = \"{key}\"\n{cfg}"), &[]);
    let server_cfg = format!(
        "[zookeeper]\nconnect = \"{}\"\njitter_ms = 20\nrecheck_ms = 1000\nsession_timeout_ms = 2000\n\
         zones = [\"{ZONE}\"]\ntrusted_keys = [\"{public}\"]\npassword_file = \"{}\"\n",
        zk.connect(),
        password_file(d, "geodns-server").display()
    );
    let s = Server::start(&example_config("", &server_cfg));
    (p, s)
}

#[test]
fn each_role_writes_only_what_it_may_and_the_chain_works_with_credentials() {
    let zk = ZooKeeper::standalone_sasl();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = init(&zk, d);
    assert!(first.contains("/geodns/hosts: created"), "{first}");
    // Idempotent.
    assert!(init(&zk, d).contains("already as it should be"));

    // The chain, every part authenticated as its role.
    let (p, s) = secure_chain(&zk, d);
    let robot = password_file(d, "geodns-robot");
    let name = format!("h1.prn1.{ZONE}");
    let _h1 = register(
        &zk,
        d,
        &name,
        "10.0.0.1",
        &["--password-file", robot.to_str().unwrap()],
    );
    let human = password_file(d, "geodns-human");
    publish_with(
        d,
        ZONE,
        "static IN A 10.9.9.9\n",
        &["--password-file", human.to_str().unwrap()],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while a(&s, &name) != ["10.0.0.1"] || a(&s, &format!("static.{ZONE}")) != ["10.9.9.9"] {
        assert!(
            Instant::now() < deadline,
            "{}\n{}",
            s.log_text(),
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Who may do what, as ZooKeeper enforces it.
    let connect = zk.connect();
    let host = runtime().block_on(async {
        let c = client(&connect, Some("geodns-presenter")).await;
        let hosts = c.list_children("/geodns/hosts").await.unwrap();
        format!("/geodns/hosts/{}", hosts[0])
    });
    let human = format!("/geodns/human/{ZONE}");
    runtime().block_on(async {
        // Nobody: reads and writes nothing of geodns's.
        check(
            &connect,
            None,
            &[
                ("read", "/geodns/snapshot", false),
                ("list", "/geodns/hosts", false),
                ("read", &host, false),
                ("write", "/geodns/snapshot", false),
                ("create", "/geodns/hosts/evil-1", false),
                ("create", "/geodns/health/ams", false),
                ("write", &human, false),
                ("delete", &host, false),
                ("create", "/geodns/evil", false),
            ],
        )
        .await;
        // A server reads the pointer, the snapshots and the health; writes nothing.
        check(
            &connect,
            Some("geodns-server"),
            &[
                ("read", "/geodns/snapshot", true),
                ("list", "/geodns/snapshots", true),
                ("list", "/geodns/health", true),
                ("write", "/geodns/snapshot", false),
                ("create", "/geodns/health/ams", false),
                ("create", "/geodns/hosts/evil-1", false),
                ("list", "/geodns/hosts", false),
                ("write", &human, false),
            ],
        )
        .await;
        // A robot registers; it cannot touch the snapshot, human zones or health.
        check(
            &connect,
            Some("geodns-robot"),
            &[
                (
                    "create",
                    "/geodns/hosts/h9.prn1.internal.example-0000000099",
                    true,
                ),
                (
                    "delete",
                    "/geodns/hosts/h9.prn1.internal.example-0000000099",
                    true,
                ),
                ("write", "/geodns/snapshot", false),
                ("read", "/geodns/snapshot", false),
                ("write", &human, false),
                ("create", "/geodns/health/ams", false),
            ],
        )
        .await;
        // A human writes human zones only.
        check(
            &connect,
            Some("geodns-human"),
            &[
                ("write", &human, true),
                ("write", "/geodns/snapshot", false),
                ("create", "/geodns/hosts/evil-1", false),
                ("create", "/geodns/health/ams", false),
            ],
        )
        .await;
        // Announce writes PoP health only.
        check(
            &connect,
            Some("geodns-announce"),
            &[
                ("create", "/geodns/health/ams", true),
                ("write", "/geodns/health/ams", true),
                ("write", "/geodns/snapshot", false),
                ("create", "/geodns/hosts/evil-1", false),
                ("write", &human, false),
            ],
        )
        .await;
        // The presenter reads registrations and human zones and writes the snapshot; it
        // cannot forge registrations, human zones or health.
        check(
            &connect,
            Some("geodns-presenter"),
            &[
                ("read", &host, true),
                ("read", &human, true),
                ("read", "/geodns/snapshot", true),
                ("create", "/geodns/hosts/evil-1", false),
                ("write", &human, false),
                ("create", "/geodns/health/iad", false),
                ("delete", &host, false),
            ],
        )
        .await;
    });
}

/// Identities of their own: a robot registers only in its directory and only the names the
/// admin gave it, and cannot touch another robot's registrations; an announce process writes
/// its own PoP's health and no other's. ZooKeeper enforces the first half, the presenter the
/// names.
#[test]
fn a_robot_or_a_pop_with_its_own_identity_touches_only_its_own() {
    let zk = ZooKeeper::standalone_sasl();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ids = [
        "--robot",
        "robot-web1=prn1.internal.example",
        "--robot",
        "robot-ams=ams1.internal.example",
        "--announce",
        "announce-ams=ams",
        "--announce",
        "announce-iad=iad",
    ];
    let out = init_with(&zk, d, &ids);
    for made in ["robots/robot-web1: created", "health/ams: created"] {
        assert!(out.contains(made), "{out}");
    }
    assert!(init_with(&zk, d, &ids).contains("already as it should be"));

    let (p, s) = secure_chain(&zk, d);
    let as_user = |user: &str| {
        vec![
            "--password-file".to_owned(),
            password_file(d, user).display().to_string(),
            "--user".to_owned(),
            user.to_owned(),
        ]
    };
    let web1 = as_user("robot-web1");
    let web1: Vec<&str> = web1.iter().map(String::as_str).collect();
    let ams = as_user("robot-ams");
    let ams: Vec<&str> = ams.iter().map(String::as_str).collect();
    let own = format!("h1.prn1.{ZONE}");
    let foreign = format!("h5.prn1.{ZONE}");
    let _h1 = register(&zk, d, &own, "10.0.0.1", &web1);
    let _h5 = register(&zk, d, &foreign, "10.0.0.5", &ams);
    let deadline = Instant::now() + Duration::from_secs(20);
    while a(&s, &own) != ["10.0.0.1"] {
        assert!(
            Instant::now() < deadline,
            "{}\n{}",
            s.log_text(),
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // robot-ams's registration of a prn1 name is left out and reported.
    let connect = zk.connect();
    let (conflicts, web1_node, ams_node) = runtime().block_on(async {
        let c = client(&connect, Some("geodns-admin")).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let conflicts = loop {
            let (data, _) = c.get_data("/geodns/conflicts").await.unwrap();
            let text = String::from_utf8(data).unwrap();
            if text.contains("unauthorized_name") || Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let first = |dir: &'static str| {
            let c = c.clone();
            async move {
                let path = format!("/geodns/robots/{dir}");
                let kids = c.list_children(&path).await.unwrap();
                format!("{path}/{}", kids[0])
            }
        };
        (
            conflicts,
            first("robot-web1").await,
            first("robot-ams").await,
        )
    });
    assert!(
        conflicts.contains("unauthorized_name") && conflicts.contains(&foreign),
        "{conflicts}"
    );
    assert!(a(&s, &foreign).is_empty(), "{foreign} served");

    runtime().block_on(async {
        check(
            &connect,
            Some("robot-web1"),
            &[
                (
                    "create",
                    "/geodns/robots/robot-web1/h2.prn1.internal.example-0000000009",
                    true,
                ),
                (
                    "delete",
                    "/geodns/robots/robot-web1/h2.prn1.internal.example-0000000009",
                    true,
                ),
                // Not its own names, and not another's directory or registrations.
                ("write", "/geodns/robots/robot-web1", false),
                (
                    "create",
                    "/geodns/robots/robot-ams/h3.ams1.internal.example-0000000009",
                    false,
                ),
                ("delete", &ams_node, false),
                ("write", &ams_node, false),
                ("create", "/geodns/robots/robot-web9", false),
                (
                    "create",
                    "/geodns/hosts/h2.prn1.internal.example-0000000009",
                    false,
                ),
                ("write", "/geodns/health/ams", false),
            ],
        )
        .await;
        check(
            &connect,
            Some("robot-ams"),
            &[("delete", &web1_node, false), ("read", &web1_node, false)],
        )
        .await;
        // The shared robot user cannot touch the identities' registrations either.
        check(
            &connect,
            Some("geodns-robot"),
            &[
                ("delete", &web1_node, false),
                ("create", "/geodns/robots/robot-web1/x-1", false),
            ],
        )
        .await;
        check(
            &connect,
            Some("announce-ams"),
            &[
                ("write", "/geodns/health/ams", true),
                ("write", "/geodns/health/iad", false),
                ("delete", "/geodns/health/iad", false),
                ("delete", "/geodns/health/ams", false),
                ("create", "/geodns/health/fra", false),
            ],
        )
        .await;
    });
    // The node announce-ams wrote ("x", junk) drains ams; the empty one zk init made for iad
    // drains nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = s.metrics();
        if m.contains("geodns_pop_drained{pop=\"ams\",reason=\"bgp-unreadable\"} 1") {
            assert!(m.contains("geodns_pop_up{pop=\"iad\"} 1"), "{m}");
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The admin changes an identity's names: the registration left out is taken.
    let out = init_with(
        &zk,
        d,
        &[
            "--robot",
            "robot-ams=ams1.internal.example,h5.prn1.internal.example",
        ],
    );
    assert!(out.contains("robots/robot-ams: data set"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while a(&s, &foreign) != ["10.0.0.5"] {
        assert!(Instant::now() < deadline, "{}", p.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `geodns check` says when a server would read ZooKeeper unauthenticated and unsigned.
#[test]
fn check_warns_about_a_server_without_credentials_or_keys() {
    let (_dir, path) = crate::harness::example_dir();
    let text = std::fs::read_to_string(&path).unwrap()
        + "\n[zookeeper]\nconnect = \"127.0.0.1:2181\"\nzones = [\"internal.example\"]\n";
    std::fs::write(&path, text).unwrap();
    let out = geodns().args(["check", "-c"]).arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no password_file"), "{err}");
    assert!(err.contains("trusted_keys is empty"), "{err}");
}
