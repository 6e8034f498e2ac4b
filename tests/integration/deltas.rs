//! Internal zones taken as deltas (issue 24), with a real ZooKeeper, presenter and servers: a
//! server that follows a random sequence of registrations and departures by deltas answers
//! byte for byte what a server that loads the same version whole answers; a damaged, missing
//! or swapped delta leads to a whole load, never to a wrong answer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::harness::{example_config, message, Server};
use crate::internal::{presenter, presenter_config, publish, ZONE};
use crate::zk::ZooKeeper;

fn server(zk: &ZooKeeper) -> Server {
    Server::start(&example_config(
        "",
        &format!(
            "[zookeeper]\nconnect = \"{}\"\njitter_ms = 20\nrecheck_ms = 1000\nsession_timeout_ms = 4000\nzones = [\"{ZONE}\"]\n",
            zk.connect()
        ),
    ))
}

fn signal(s: &Server, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &s.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

/// The published pointer's version (0: none yet).
fn pointer_version(zk: &ZooKeeper) -> u64 {
    zk.get("/geodns/snapshot").map_or(0, |d| {
        let v: serde_json::Value = serde_json::from_slice(&d).unwrap();
        v["version"].as_u64().unwrap()
    })
}

/// Waits until the presenter published past `after` (or, for changes that cancel out, 2 s
/// went by), then until `servers` hold the version published.
fn settle(zk: &ZooKeeper, after: u64, servers: &[&Server]) -> u64 {
    let quiet = Instant::now() + Duration::from_secs(2);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut v = pointer_version(zk);
    while v <= after && Instant::now() < quiet {
        std::thread::sleep(Duration::from_millis(20));
        v = pointer_version(zk);
    }
    // Let a burst settle into its last publication.
    std::thread::sleep(Duration::from_millis(150));
    let v = pointer_version(zk);
    for s in servers {
        while s.metric("geodns_internal_snapshot_version") != v {
            assert!(
                Instant::now() < deadline,
                "server at {} of {v}\n{}",
                s.metric("geodns_internal_snapshot_version"),
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    v
}

/// The registrations in force: node name -> (host name, address, runs web in prn1).
type Hosts = BTreeMap<String, (String, String, bool)>;

/// Registers `name` (after its earlier registration leaves, as a host that comes back does).
fn register(zk: &ZooKeeper, hosts: &mut Hosts, seq: &mut u32, name: &str, addr: &str, web: bool) {
    let old: Vec<String> = hosts
        .iter()
        .filter(|(_, h)| h.0 == name)
        .map(|(n, _)| n.clone())
        .collect();
    for node in old {
        leave(zk, hosts, &node);
    }
    *seq += 1;
    let node = format!("{name}-{seq:010}");
    let services = if web {
        r#"[{"role":"web","cluster":"prn1","port":8080}]"#
    } else {
        "[]"
    };
    let data = format!(r#"{{"name":"{name}","addresses":["{addr}"],"services":{services}}}"#);
    zk.set(&format!("/geodns/hosts/{node}"), data.as_bytes());
    hosts.insert(node, (name.to_owned(), addr.to_owned(), web));
}

fn leave(zk: &ZooKeeper, hosts: &mut Hosts, node: &str) {
    zk.delete_tree(&format!("/geodns/hosts/{node}"));
    hosts.remove(node);
}

/// Every name the sequence can touch, the names between them and the apex, and names that
/// never exist.
fn names() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "prn1.",
        "prn2.",
        "x.h1.prn1.",
        "nothere.",
        "a.b.nothere.prn2.",
        "web.prn1.",
        "_tcp.web.prn1.",
        "_web._tcp.web.prn1.",
        "alias.",
    ]
    .iter()
    .map(|p| format!("{p}{ZONE}."))
    .collect();
    for i in 0..8 {
        for c in ["prn1", "prn2"] {
            v.push(format!("h{i}.{c}.{ZONE}."));
            v.push(format!("y.h{i}.{c}.{ZONE}."));
        }
    }
    v
}

/// Both servers' answers to every name and type, compared byte for byte.
fn same_answers(a: &Server, b: &Server, when: &str) {
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::SRV,
        RecordType::TXT,
        RecordType::SOA,
        RecordType::NS,
    ];
    for name in names() {
        for t in types {
            let packet = message(&name, t, None).to_vec().unwrap();
            let (ra, rb) = (a.udp_raw(&packet), b.udp_raw(&packet));
            assert!(ra.is_some(), "{when}: no answer to {name} {t}");
            assert_eq!(ra, rb, "{when}: {name} {t} differs");
        }
    }
}

#[test]
fn deltas_give_what_a_whole_snapshot_gives_and_damage_leads_to_a_whole_load() {
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "full_every = 3\n{}",
        presenter_config(&zk, "grace_ms = 0\nmin_dropped = 1000", "")
    );
    std::fs::write(dir.path().join("presenter.toml"), &cfg).unwrap();
    // A human TXT at a host's name, a CNAME, and records the robots never touch.
    publish(
        dir.path(),
        ZONE,
        "ns1 IN A 192.0.2.53\nh1.prn1 IN TXT \"human\"\nalias IN CNAME h2.prn1\n",
    );
    let _presenter = presenter(dir.path(), &cfg, &[]);
    let follower = server(&zk);
    let mut hosts = Hosts::new();
    let mut seq = 0;
    register(
        &zk,
        &mut hosts,
        &mut seq,
        &format!("h0.prn1.{ZONE}"),
        "10.0.0.1",
        true,
    );
    let mut v = settle(&zk, 0, &[&follower]);

    // A random sequence of arrivals and departures, hosts at several depths (so empty
    // non-terminals come and go), the web rule's names and SRV records following them.
    let mut rng = ChaCha8Rng::seed_from_u64(24);
    for step in 0..30 {
        for _ in 0..rng.random_range(1..4) {
            if !hosts.is_empty() && rng.random_range(0..3) == 0 {
                let node = hosts
                    .keys()
                    .nth(rng.random_range(0..hosts.len()))
                    .unwrap()
                    .clone();
                leave(&zk, &mut hosts, &node);
            } else {
                let i = rng.random_range(0..8);
                let cluster = ["prn1", "prn2"][rng.random_range(0..2)];
                let deep = if rng.random_range(0..4) == 0 {
                    "y."
                } else {
                    ""
                };
                let name = format!("{deep}h{i}.{cluster}.{ZONE}");
                let addr = format!("10.0.{}.{}", rng.random_range(0..3), rng.random_range(1..4));
                let web = rng.random_range(0..3) == 0;
                register(&zk, &mut hosts, &mut seq, &name, &addr, web);
            }
        }
        v = settle(&zk, v, &[&follower]);
        if step == 14 {
            let fresh = server(&zk);
            settle(&zk, v - 1, &[&fresh]);
            same_answers(&follower, &fresh, &format!("version {v}"));
        }
    }
    let took = |s: &Server, how: &str| {
        s.metric(&format!(
            "geodns_internal_snapshot_updates_total{{how=\"{how}\"}}"
        ))
    };
    assert!(took(&follower, "deltas") >= 20, "{}", follower.metrics());
    assert_eq!(took(&follower, "whole"), 1, "{}", follower.log_text());
    let status = follower.dig(&["_status.example.com", "TXT", "+short"]);
    assert!(status.contains("internal-deltas="), "{status}");
    assert!(!status.contains("internal-deltas=0 "), "{status}");
    let fresh = server(&zk);
    settle(&zk, v - 1, &[&fresh]);
    assert_eq!(took(&fresh, "whole"), 1);
    same_answers(&follower, &fresh, &format!("version {v}"));
    drop(fresh);

    // Damage: while the follower is stopped, the next deltas are corrupted, deleted or swapped.
    let delta = |v: u64| format!("/geodns/snapshots/deltas/{v:020}");
    for damage in ["corrupt", "missing", "swapped"] {
        let wholes = took(&follower, "whole");
        signal(&follower, "STOP");
        let before = v;
        register(
            &zk,
            &mut hosts,
            &mut seq,
            &format!("h7.prn2.{ZONE}"),
            &format!("10.7.{}.1", before % 200),
            false,
        );
        v = settle(&zk, before, &[]);
        register(
            &zk,
            &mut hosts,
            &mut seq,
            &format!("h6.prn2.{ZONE}"),
            &format!("10.6.{}.1", before % 200),
            false,
        );
        v = settle(&zk, v, &[]);
        let first = delta(before + 1);
        match damage {
            "corrupt" => {
                let mut d = zk.get(&first).unwrap();
                let n = d.len();
                d[n - 10] ^= 1;
                zk.set(&first, &d);
            }
            "missing" => zk.delete_tree(&first),
            _ => {
                let (a, b) = (zk.get(&first).unwrap(), zk.get(&delta(before + 2)).unwrap());
                zk.set(&first, &b);
                zk.set(&delta(before + 2), &a);
            }
        }
        // The follower falls back to a whole snapshot: at once if one was published after the
        // damage, else once the presenter writes the next (every `full_every` publications).
        signal(&follower, "CONT");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let at = |s: &Server| s.metric("geodns_internal_snapshot_version");
            let wait = Instant::now() + Duration::from_secs(2);
            while at(&follower) != v && Instant::now() < wait {
                std::thread::sleep(Duration::from_millis(20));
            }
            if at(&follower) == v {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{damage}: stuck at {}\n{}",
                at(&follower),
                follower.log_text()
            );
            // Never a wrong answer meanwhile: the version before the damage until a whole
            // snapshot taken since moves the follower on (it may be on its way to the newest).
            // That snapshot's count follows the version in force, once the snapshot is saved.
            let now = at(&follower);
            if now != before {
                let until = Instant::now() + Duration::from_secs(5);
                while took(&follower, "whole") <= wholes && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
                assert!(
                    took(&follower, "whole") > wholes,
                    "{damage}: at {now}, past {before}, with no whole snapshot taken since"
                );
            }
            register(
                &zk,
                &mut hosts,
                &mut seq,
                &format!("h5.prn2.{ZONE}"),
                &format!("10.5.{}.1", v % 200),
                false,
            );
            v = settle(&zk, v, &[]);
        }
        assert!(
            took(&follower, "whole") > wholes,
            "{damage}: {}",
            follower.log_text()
        );
        assert!(
            follower.log_text().contains("the deltas cannot be used"),
            "{damage}"
        );
        let fresh = server(&zk);
        settle(&zk, v - 1, &[&fresh]);
        same_answers(&follower, &fresh, &format!("{damage}, version {v}"));
    }
}

/// A peer that answers every request with `body`.
fn lying_peer(body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    addr
}

fn peer_server(zk: &ZooKeeper, extra: &str) -> Server {
    Server::start(&example_config(
        "",
        &format!(
            "[zookeeper]\nconnect = \"{}\"\njitter_ms = 20\nrecheck_ms = 1000\nsession_timeout_ms = 4000\nzones = [\"{ZONE}\"]\n{extra}",
            zk.connect()
        ),
    ))
}

#[test]
fn a_cold_server_takes_the_snapshot_from_a_peer_and_refuses_wrong_bytes() {
    let zk = ZooKeeper::standalone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!("full_every = 1000\n{}", presenter_config(&zk, "", ""));
    std::fs::write(dir.path().join("presenter.toml"), &cfg).unwrap();
    let _presenter = presenter(dir.path(), &cfg, &[]);
    let mut hosts = Hosts::new();
    let mut seq = 0;
    let mut v = 0;
    for i in 0..20 {
        register(
            &zk,
            &mut hosts,
            &mut seq,
            &format!("h{i}.prn1.{ZONE}"),
            &format!("10.0.0.{}", i + 1),
            i % 3 == 0,
        );
        v = settle(&zk, v, &[]);
    }
    let pointer: serde_json::Value =
        serde_json::from_slice(&zk.get("/geodns/snapshot").unwrap()).unwrap();
    let size = pointer["size"].as_u64().unwrap() as usize;
    assert!(pointer["full"].as_u64().unwrap() < v, "{pointer}");
    let took = |s: &Server, how: &str| {
        s.metric(&format!(
            "geodns_internal_snapshot_updates_total{{how=\"{how}\"}}"
        ))
    };

    // The only peers announced serve bytes of the right size but not the snapshot, or too
    // many: both refused, and the server reads ZooKeeper's chunks and the deltas after them.
    for body in [vec![b'x'; size], vec![b'y'; size + 1000]] {
        let liar = lying_peer(body);
        zk.set(&format!("/geodns/peers/{liar}"), b"");
    }
    let cold = peer_server(&zk, "peers_fetch = 3\n");
    settle(&zk, v - 1, &[&cold]);
    assert_eq!(took(&cold, "whole"), 1, "{}", cold.log_text());
    assert_eq!(took(&cold, "peer"), 0);
    assert_eq!(
        cold.metric("geodns_internal_snapshots_refused_total{reason=\"peer\"}"),
        2,
        "{}",
        cold.log_text()
    );
    zk.delete_tree("/geodns/peers");

    // A server that took its version by deltas serves it whole (rendered on the first
    // request); a cold server takes it from that peer, and answers alike.
    let sharer = peer_server(&zk, "peers_listen = \"127.0.0.1:0\"\n");
    register(
        &zk,
        &mut hosts,
        &mut seq,
        &format!("h30.prn2.{ZONE}"),
        "10.3.0.1",
        false,
    );
    v = settle(&zk, v, &[&sharer]);
    register(
        &zk,
        &mut hosts,
        &mut seq,
        &format!("h31.prn2.{ZONE}"),
        "10.3.0.2",
        false,
    );
    v = settle(&zk, v, &[&sharer]);
    assert!(took(&sharer, "deltas") >= 1, "{}", sharer.log_text());
    let warm = peer_server(&zk, "peers_fetch = 3\n");
    settle(&zk, v - 1, &[&warm, &cold]);
    assert_eq!(took(&warm, "peer"), 1, "{}", warm.log_text());
    assert_eq!(took(&warm, "whole"), 0);
    same_answers(&warm, &sharer, "from a peer");
    same_answers(&warm, &cold, "from a peer and from ZooKeeper");
}
