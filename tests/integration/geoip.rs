//! GeoIP fallback: addresses the map does not cover get the PoPs nearest to where a MaxMind
//! database places them, with an ECS scope no wider than the database's network.

use hickory_proto::rr::RecordType;
use mmdb_writer::{Value, Writer};

use crate::harness::{addresses, data_dir, ecs_scope, example_config, message, Server};

fn city_db(path: &std::path::Path) {
    let mut w = Writer::new("GeoIP2-City");
    let place = |lat: f64, lon: f64| {
        Value::map([(
            "location",
            Value::map([
                ("latitude", Value::from(lat)),
                ("longitude", Value::from(lon)),
            ]),
        )])
    };
    // Amsterdam, Washington, Singapore: each nearest to one example PoP.
    w.insert_value(
        "81.0.0.0/16".parse::<ipnet::IpNet>().unwrap(),
        place(52.3, 4.9),
    )
    .unwrap();
    w.insert_value(
        "24.0.0.0/12".parse::<ipnet::IpNet>().unwrap(),
        place(38.9, -77.0),
    )
    .unwrap();
    w.insert_value(
        "1.0.0.0/14".parse::<ipnet::IpNet>().unwrap(),
        place(1.3, 103.8),
    )
    .unwrap();
    std::fs::write(path, w.to_bytes().unwrap()).unwrap();
}

#[test]
fn unmapped_addresses_go_to_the_nearest_pop() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["example.com.zone", "example-map.arrow"] {
        std::fs::copy(data_dir().join(f), dir.path().join(f)).unwrap();
    }
    city_db(&dir.path().join("city.mmdb"));
    let s = Server::start_in(dir, &example_config("geoip = \"city.mmdb\"", ""));
    // (ECS subnet, expected answer, expected scope): the GeoIP network bounds the scope.
    let cases: &[(&str, &[&str], u8)] = &[
        ("81.0.5.0/24", &["192.0.2.10"], 16),
        ("24.1.0.0/24", &["192.0.2.20"], 12),
        ("1.2.3.0/24", &["192.0.2.30", "192.0.2.31"], 14),
        // Mapped addresses still follow the map, not GeoIP.
        ("198.51.100.7/32", &["192.0.2.20"], 25),
    ];
    for &(subnet, want, scope) in cases {
        let r = s.query(&message("www.example.com.", RecordType::A, Some(subnet)));
        assert_eq!(addresses(&r), want, "{subnet}");
        assert_eq!(ecs_scope(&r), Some(scope), "{subnet}");
    }
    // Not in the map, not in the database: the default order (ams), with a non-zero scope.
    let r = s.query(&message(
        "www.example.com.",
        RecordType::A,
        Some("5.5.5.0/24"),
    ));
    assert_eq!(addresses(&r), ["192.0.2.10"]);
    assert!(ecs_scope(&r).unwrap() > 0, "{:?}", ecs_scope(&r));
    assert!(s.metric("geodns_fallback_answers_total") >= 4);
}
