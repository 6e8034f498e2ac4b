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
    let admin = password_file(dir, "geodns-admin");
    let connect = zk.connect();
    run_ok(&[
        "zk".as_ref(),
        "init".as_ref(),
        "--zookeeper".as_ref(),
        connect.as_ref(),
        "--password-file".as_ref(),
        admin.as_os_str(),
    ])
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
    let (key, public) = crate::trust::keygen(d);
    let cfg = presenter_config(&zk, "grace_ms = 200", "").replacen(
        "session_timeout_ms = 2000\n",
        &format!(
            "session_timeout_ms = 2000\npassword_file = \"{}\"\n",
            password_file(d, "geodns-presenter").display()
        ),
        1,
    );
    let cfg = format!("signing_key = \"{key}\"\n{cfg}");
    let p = presenter(d, &cfg, &[]);
    let server_cfg = format!(
        "[zookeeper]\nconnect = \"{}\"\njitter_ms = 20\nrecheck_ms = 1000\nsession_timeout_ms = 2000\n\
         zones = [\"{ZONE}\"]\ntrusted_keys = [\"{public}\"]\npassword_file = \"{}\"\n",
        zk.connect(),
        password_file(d, "geodns-server").display()
    );
    let s = Server::start(&example_config("", &server_cfg));
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
