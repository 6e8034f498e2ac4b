//! Draining PoPs through the health file.

use hickory_proto::rr::RecordType;

use crate::harness::{addresses, example_config, message, Server};

fn answer(s: &Server, subnet: &str) -> Vec<String> {
    addresses(&s.query(&message("www.example.com.", RecordType::A, Some(subnet))))
}

#[test]
fn down_pops_are_skipped_and_all_down_still_answers() {
    let s = Server::start(&example_config("", ""));
    // 198.51.100.0/25 ranks iad, ams, sin.
    assert_eq!(answer(&s, "198.51.100.0/25"), ["192.0.2.20"]);
    std::fs::write(s.path("health.txt"), "iad down\n").unwrap();
    s.wait_log("health changed", 1);
    assert_eq!(
        answer(&s, "198.51.100.0/25"),
        ["192.0.2.10"],
        "iad drained: next ranked (ams)"
    );
    std::fs::write(s.path("health.txt"), "iad down\nams down\n").unwrap();
    s.wait_log("health changed", 2);
    assert_eq!(answer(&s, "198.51.100.0/25"), ["192.0.2.30", "192.0.2.31"]);
    std::fs::write(s.path("health.txt"), "iad down\nams down\nsin down\n").unwrap();
    s.wait_log("health changed", 3);
    // Everything down: never an empty answer; the first ranked PoP answers.
    assert_eq!(answer(&s, "198.51.100.0/25"), ["192.0.2.20"]);
    assert!(s.metric("geodns_all_down_answers_total") >= 1);

    // A bad health file is refused and the last good state stays.
    std::fs::write(s.path("health.txt"), "iad down\nnowhere down\n").unwrap();
    s.wait_log("health file refused", 1);
    assert_eq!(answer(&s, "198.51.100.0/25"), ["192.0.2.20"]);
    assert!(s.log_text().contains("pop 'nowhere' is not configured"));
    std::fs::write(s.path("health.txt"), "# all up\n").unwrap();
    s.wait_log("health changed", 4);
    assert_eq!(answer(&s, "198.51.100.0/25"), ["192.0.2.20"]);
}
