//! `geodns simulate` against the real server and collector: every simulated probe and report
//! lands in the logs, from the right resolver and client addresses, and the same seed gives
//! the same users, ids and RTTs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::collector::report_rows;
use crate::harness::{collector_config, data_dir, example_config, geodns, Collector, Server};
use crate::probe::probe_rows;

fn simulate(s: &Server, c: &Collector, out: &std::path::Path, users: usize) {
    let o = geodns()
        .args(["simulate", "--world"])
        .arg(data_dir().join("world.toml"))
        .args([
            "--dns",
            &s.dns.to_string(),
            "--collector",
            &c.http.to_string(),
            "--users",
            &users.to_string(),
            "--seed",
            "7",
            "--out",
        ])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn simulated_users_land_in_both_logs_deterministically() {
    let s =
        Server::start(&example_config("", "").replace("max_age_ms = 10000", "max_age_ms = 200"));
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(
        dir.path(),
        &collector_config(
            "rate_per_second = 1000\nrate_burst = 1000",
            "max_age_ms = 200",
        ),
    );
    let (out1, out2) = (dir.path().join("sim1"), dir.path().join("sim2"));
    simulate(&s, &c, &out1, 60);
    simulate(&s, &c, &out2, 60);

    let deadline = Instant::now() + Duration::from_secs(15);
    let (probes, reports) = loop {
        let (p, r) = (
            probe_rows(&s.path("beacon-logs")),
            report_rows(&dir.path().join("logs")),
        );
        if (p.len() >= 360 && r.len() >= 360) || Instant::now() > deadline {
            break (p, r);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // 2 runs x 60 users x 3 PoPs.
    assert_eq!((probes.len(), reports.len()), (360, 360));
    let world_resolvers = [
        "127.10.0.1",
        "127.10.0.2",
        "127.10.0.3",
        "127.10.0.4",
        "127.10.0.5",
    ];
    for (id, pop, resolver, ecs, _, _) in &probes {
        assert!(world_resolvers.contains(&resolver.as_str()), "{resolver}");
        assert!(pop.is_some() && id.len() == 16);
        // Only the public resolver sends ECS, and it sends the client's /24 in its networks.
        match ecs {
            Some(e) => {
                assert_eq!(resolver, "127.10.0.2");
                assert!(
                    e.starts_with("198.18.4.")
                        || e.starts_with("198.18.5.")
                        || e.starts_with("198.18.6.")
                        || e.starts_with("198.18.7.")
                        || e.starts_with("198.18.12.")
                        || e.starts_with("198.18.13."),
                    "{e}"
                );
                assert!(e.ends_with(".0/24"), "{e}");
            }
            None => assert_ne!(resolver, "127.10.0.2"),
        }
    }
    // Client addresses come through the trusted proxy from the world's networks.
    assert!(
        reports.iter().all(|r| r.2.starts_with("198.18.")),
        "{:?}",
        &reports[..3]
    );
    // Same seed: each report row (id, pop, client, rtt, ok) appears exactly twice.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in &reports {
        *seen.entry(format!("{r:?}")).or_default() += 1;
    }
    assert!(seen.values().all(|&n| n == 2), "runs differ");
    assert_eq!(
        std::fs::read(out1.join("ground_truth.csv")).unwrap(),
        std::fs::read(out2.join("ground_truth.csv")).unwrap()
    );
    // The truth covers every client subnet, with its expected users (its network's share of
    // the sessions) and an RTT per PoP.
    let truth = std::fs::read_to_string(out1.join("ground_truth.csv")).unwrap();
    assert!(truth.starts_with("subnet,network,resolver,lat,lon,users,rtt_ams,rtt_iad,rtt_sin\n"));
    let users: f64 = truth
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(5).unwrap().parse::<f64>().unwrap())
        .sum();
    assert!((users - 60.0).abs() < 0.01, "{users}");
}
