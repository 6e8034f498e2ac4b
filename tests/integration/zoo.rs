//! mapgen on the zoo (issue 18): 50 small seeded worlds from `scripts/gen-world.py --zoo`,
//! each breaking some of mapgen's assumptions (networks a few km from a PoP, PoPs with their
//! own latency, RTT not linear in distance, heavy-tailed noise, partial sessions, a PoP
//! nobody measures, IPv6-only ISPs, one public resolver for everyone with and without ECS,
//! one /16, skewed and duplicated logs, GeoIP wrong for a fifth of networks; one probe id per
//! session or one per PoP). On every world mapgen must write a map `geodns check` loads, with no
//! row left out; the map must stay within the stated distance of the best any answer per
//! resolver address can do; and the holdout must agree with the truth within its stated error.
//! docs/map-quality.md ("The zoo") has the figures; `benches/mapgen/zoo.py` prints them.

use std::path::Path;

use geodns_simulate::{score, World};

use crate::harness::{data_dir, geodns};
use crate::mapgen::run_ok as run;

/// Worlds in the zoo.
const WORLDS: u64 = 50;

/// Stated distance of the map's served mean regret to the per-address bound, per world, ms.
/// Worlds that break several assumptions at once (GeoIP wrong, heavy tails, a PoP nobody
/// measures) reach about 5 ms (docs/map-quality.md, "The zoo"); the median is stated apart.
const MAX_DISTANCE_MS: f64 = 10.0;

/// Stated median, over the zoo, of the distance to the per-address bound, ms.
const MAX_MEDIAN_DISTANCE_MS: f64 = 1.5;

/// Beacon sessions per measured client subnet: sparse, as the long tail is.
const SESSIONS: usize = 3;

struct Outcome {
    traits: String,
    id_per_pop: bool,
    distance: f64,
}

fn one_world(root: &Path, seed: u64) -> Outcome {
    let d = root.join(format!("zoo{seed}"));
    let p = |x: &str| d.join(x);
    let o = std::process::Command::new("python3")
        .arg(data_dir().join("../scripts/gen-world.py"))
        .arg(&d)
        .args(["--zoo", "--seed", &seed.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let traits = String::from_utf8_lossy(&o.stdout)
        .split(": ")
        .nth(1)
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .to_owned();
    let world = World::read(&p("world.toml")).unwrap();
    let measured: usize = world
        .networks
        .iter()
        .filter(|n| n.beacon)
        .map(|n| world.subnets(n).len())
        .sum();
    let users = (measured * SESSIONS).to_string();
    let seed_arg = seed.to_string();
    run(&[
        "simulate".as_ref(),
        "--world".as_ref(),
        p("world.toml").as_os_str(),
        "--users".as_ref(),
        users.as_ref(),
        "--seed".as_ref(),
        seed_arg.as_ref(),
        "--logs-only".as_ref(),
        p("logs").as_os_str(),
        "--out".as_ref(),
        p("sim").as_os_str(),
    ]);
    // The map goes where the generated config expects it, so `check` loads it as `serve` would.
    run(&[
        "mapgen".as_ref(),
        "--config".as_ref(),
        p("geodns.toml").as_os_str(),
        "--geoip".as_ref(),
        p("sim/geoip.mmdb").as_os_str(),
        "--logs".as_ref(),
        p("logs").as_os_str(),
        "--out".as_ref(),
        p("map.arrow").as_os_str(),
        "--holdout".as_ref(),
        "0.2".as_ref(),
        "--report".as_ref(),
        p("report.json").as_os_str(),
    ]);
    let checked = run(&[
        "check".as_ref(),
        "-c".as_ref(),
        p("geodns.toml").as_os_str(),
    ]);
    assert!(checked.contains(": ok:"), "seed {seed}: {checked}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p("report.json")).unwrap()).unwrap();
    assert_eq!(
        report["left_out_rows"], 0,
        "seed {seed} ({traits}): every row mapgen makes is valid: {}",
        report["left_out_samples"]
    );
    let map = geomap::read_map(&p("map.arrow")).unwrap();
    for r in &map.rows {
        for v in r.rtt_ms.iter().flatten() {
            assert!(v.is_finite() && *v > 0.0, "seed {seed}: {r:?}");
        }
    }
    let truth = score::read_truth(&p("sim/ground_truth.csv")).unwrap();
    let scores = score::score(&world, &truth, &map);
    let get = |name: &str| {
        scores
            .iter()
            .find(|s| s.decision.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {scores:?}"))
            .clone()
    };
    let served = get("measured map, as served");
    let bound = get("bound, as served: best PoP per resolver address");
    let distance = served.mean_regret - bound.mean_regret;
    assert!(
        distance <= MAX_DISTANCE_MS,
        "seed {seed} ({traits}): the map is {distance:.2} ms from the per-address bound\n{}",
        score::table(&scores)
    );
    // The holdout judges sessions of networks that run the beacon, in the client key space,
    // against each session's own (noisy) fastest: its within-5-ms share agrees with the truth's
    // for those networks within three standard errors of a share from that many sessions, plus
    // five points for sample noise, where one sample's noise is under 10 %. Heavier noise
    // makes single sessions poor judges (docs/map-quality.md); the report prints the noise.
    // The standard error is the larger of the truth's and the holdout's own: at a truth of
    // 100 % the truth's is zero, yet a few noisy sessions still miss (which sessions are held
    // out moves with the wall clock: the simulated logs end now).
    let holdout = report["holdout"]["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key_space"] == "client" && s["derivation"] == "all")
        .unwrap();
    let judged = holdout["judged"].as_u64().unwrap();
    assert!(judged >= 10, "seed {seed} ({traits}): {holdout}");
    let noise = report["pooling"]["noise_log_var"].as_f64().unwrap().sqrt();
    if noise < 0.10 {
        let truth_share = get("measured networks: measured map, client key space").within_5ms;
        let share = holdout["within_5ms"].as_f64().unwrap();
        let variance = (truth_share * (1.0 - truth_share)).max(share * (1.0 - share));
        let error = 3.0 * (variance / judged as f64).sqrt().max(0.01) + 0.05;
        assert!(
            (share - truth_share).abs() <= error,
            "seed {seed} ({traits}): holdout {share:.3} against the truth {truth_share:.3} (error {error:.3}, {judged} sessions)"
        );
    }
    Outcome {
        traits,
        id_per_pop: world.logs.id_per_pop,
        distance,
    }
}

#[test]
fn mapgen_writes_a_sound_map_on_every_world_of_the_zoo() {
    let dir = tempfile::tempdir().unwrap();
    let mut outcomes: Vec<(u64, Outcome)> = (0..WORLDS)
        .map(|seed| (seed, one_world(dir.path(), seed)))
        .collect();
    // Both probe-id styles and every trait are in the zoo.
    let per_pop = outcomes.iter().filter(|o| o.1.id_per_pop).count();
    assert!(per_pop >= 10 && outcomes.len() - per_pop >= 10, "{per_pop}");
    for t in [
        "near",
        "pop_base",
        "nonlinear",
        "heavy_tail",
        "partial_sessions",
        "rare_pop",
        "ipv6",
        "one_public_ecs",
        "one_public_noecs",
        "one_16",
        "skew_dups",
        "geoip_wrong",
    ] {
        assert!(
            outcomes.iter().filter(|o| o.1.traits.contains(t)).count() >= 3,
            "{t}"
        );
    }
    outcomes.sort_by(|a, b| a.1.distance.total_cmp(&b.1.distance));
    let median = outcomes[outcomes.len() / 2].1.distance;
    let (worst_seed, worst) = outcomes.last().map(|o| (o.0, &o.1)).unwrap();
    eprintln!(
        "zoo: distance to the per-address bound: median {median:.2} ms, worst {:.2} ms (seed {worst_seed}: {})",
        worst.distance, worst.traits
    );
    assert!(median <= MAX_MEDIAN_DISTANCE_MS, "median {median:.2} ms");
}

/// A holdout that can judge nothing (every session measured one PoP) says so and exits
/// non-zero, with its report, instead of printing 0.0 % as if that were a result; the same
/// logs without `--holdout` make a map.
#[test]
fn a_holdout_that_can_judge_nothing_fails_with_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let p = |x: &str| dir.path().join(x);
    let o = std::process::Command::new("python3")
        .arg(data_dir().join("../scripts/gen-world.py"))
        .arg(dir.path())
        .args(["--zoo", "--seed", "12"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(p("world.toml")).unwrap();
    let one_pop = one_pop_sessions(&text);
    std::fs::write(p("world.toml"), one_pop).unwrap();
    run(&[
        "simulate".as_ref(),
        "--world".as_ref(),
        p("world.toml").as_os_str(),
        "--users".as_ref(),
        "600".as_ref(),
        "--logs-only".as_ref(),
        p("logs").as_os_str(),
        "--out".as_ref(),
        p("sim").as_os_str(),
    ]);
    let mapgen = |holdout: &str| {
        geodns()
            .args(["mapgen", "--config"])
            .arg(p("geodns.toml"))
            .arg("--logs")
            .arg(p("logs"))
            .arg("--out")
            .arg(p("map.arrow"))
            .args(["--holdout", holdout, "--report"])
            .arg(p("report.json"))
            .output()
            .unwrap()
    };
    let o = mapgen("0.3");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("none of the") && err.contains("held-out sessions can judge the map"),
        "{err}"
    );
    assert!(!p("map.arrow").exists());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p("report.json")).unwrap()).unwrap();
    assert!(
        report["holdout"]["sessions"].as_u64().unwrap() > 50,
        "{report}"
    );
    let o = mapgen("0");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(p("map.arrow").exists());
}

/// The world with every session measuring one PoP.
fn one_pop_sessions(world: &str) -> String {
    let start = world.find("[sessions]").expect("zoo worlds set sessions");
    let end = start + world[start..].find("\n\n").expect("a blank line ends it");
    format!(
        "{}[sessions]\nnearest = 1\nrandom = 0{}",
        &world[..start],
        &world[end..]
    )
}
