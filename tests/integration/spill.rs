//! Capacity-aware spill in the real server: a drained PoP's users are spread over their next
//! PoPs within capacity, each share by client sub-block with that sub-block as the ECS scope.

use hickory_proto::rr::RecordType;

use crate::harness::{addresses, data_dir, ecs_scope, example_config, message, Server};

const AMS: &str = "192.0.2.10";
const IAD: &str = "192.0.2.20";

fn map_with_demand(path: &std::path::Path) {
    use geomap::{Derivation, KeySpace, Map, MapMeta, MapRow, PopTable};
    let pops = PopTable::from_ids(&["ams", "iad", "sin"]).unwrap();
    // (prefix, ranking, samples, rtts): 60 % of the demand prefers ams, then iad.
    let rows = [
        ("10.1.0.0/16", [0u16, 1, 2], 600u64, [10.0f32, 20.0, 80.0]),
        ("10.2.0.0/16", [1, 0, 2], 300, [10.0, 20.0, 60.0]),
        ("10.3.0.0/16", [2, 1, 0], 100, [10.0, 50.0, 70.0]),
    ];
    let map = Map {
        meta: MapMeta {
            generation: "spill".into(),
            created_at: "2026-11-26T00:00:00Z".into(),
            source_from: None,
            source_until: None,
            pops,
        },
        rows: rows
            .iter()
            .map(|(p, pops, samples, rtt)| MapRow {
                key_space: KeySpace::Client,
                prefix: p.parse().unwrap(),
                pops: pops.to_vec(),
                rtt_ms: rtt.iter().map(|&r| Some(r)).collect(),
                samples: *samples,
                derivation: Derivation::Measured,
                own_share: Vec::new(),
            })
            .collect(),
    };
    geomap::write_map(path, &map).unwrap();
}

fn ask(s: &Server, ecs: &str) -> (Vec<String>, Option<u8>) {
    let r = s.query(&message("www.example.com.", RecordType::A, Some(ecs)));
    (addresses(&r), ecs_scope(&r))
}

#[test]
fn a_drained_pops_users_spread_within_capacity_by_sub_block() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        data_dir().join("example.com.zone"),
        dir.path().join("example.com.zone"),
    )
    .unwrap();
    map_with_demand(&dir.path().join("example-map.arrow"));
    let cfg = example_config("", "")
        .replace("[pops.ams]\n", "[pops.ams]\ncapacity = 0.7\n")
        .replace("[pops.iad]\n", "[pops.iad]\ncapacity = 0.5\n")
        .replace("[pops.sin]\n", "[pops.sin]\ncapacity = 0.5\n");
    assert_eq!(cfg.matches("capacity").count(), 3, "{cfg}");
    let s = Server::start_in(dir, &cfg);
    // Without GeoIP, unmapped space answers the default order (ams, iad, sin), the same list as
    // 10.1/16, so the block merges with 10.0/16: scope /15.
    assert_eq!(ask(&s, "10.1.7.1/32"), (vec![AMS.to_owned()], Some(15)));

    // Drain ams: "next PoP takes all" would put 90 % of the demand on iad (capacity 50 %).
    // The plan moves all of 10.2/16 (its detour to sin is cheapest) and a sixth of 10.1/16.
    std::fs::write(s.path("health.txt"), "ams down\n").unwrap();
    s.wait_log("health changed", 1);
    let status = s.dig(&["_status.example.com", "TXT", "+short"]);
    assert!(
        status.contains("spill=spread") && status.contains("down=ams:file"),
        "{status}"
    );
    let mut to_iad = 0;
    let mut to_sin = 0;
    for i in 0..240u32 {
        let (a, scope) = ask(&s, &format!("10.1.{i}.9/32"));
        assert_eq!(
            scope,
            Some(23),
            "each share is cached for its sub-block (/15 + 8) only"
        );
        // The same sub-block always gets the same PoP.
        assert_eq!(ask(&s, &format!("10.1.{i}.200/32")).0, a);
        match a.as_slice() {
            [x] if x == IAD => to_iad += 1,
            [x, ..] if x.starts_with("192.0.2.3") => to_sin += 1,
            other => panic!("10.1.{i}.9: {other:?}"),
        }
    }
    // A sixth of 10.1/16's demand, but the /15 block also holds the default-filled space, so
    // the share is of the whole list: between a tenth and a third here.
    assert!(
        (15..=90).contains(&to_sin),
        "to sin {to_sin}, to iad {to_iad}"
    );
    let (a, scope) = ask(&s, "10.2.3.4/32");
    assert!(a[0].starts_with("192.0.2.3"), "10.2/16 moves to sin: {a:?}");
    assert_eq!(scope, Some(24), "/16 + 8");

    // ams back: everything as before, no spill.
    std::fs::write(s.path("health.txt"), "ams up\n").unwrap();
    s.wait_log("health changed", 2);
    assert_eq!(ask(&s, "10.1.7.1/32"), (vec![AMS.to_owned()], Some(15)));
    assert!(!s
        .dig(&["_status.example.com", "TXT", "+short"])
        .contains("spill="));
}
