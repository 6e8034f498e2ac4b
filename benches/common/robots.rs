//! The internal zone the delta and fleet benches share: RECORDS robot A records at
//! `host<i>.r<i % 100>.internal.example`, in the presenter's layout.

use geodns_snapshot::zone_text::{Soa, ZoneBody};

/// The zone's origin.
pub const ORIGIN: &str = "internal.example";

/// Robot record `i`, spelled as the presenter writes it.
pub fn robot_line(i: u32) -> String {
    format!(
        "host{i}.r{}.{ORIGIN}. 60 IN A 10.{}.{}.{}",
        i % 100,
        i >> 16 & 255,
        i >> 8 & 255,
        i & 255
    )
}

/// The zone with robot records `0..records` and a little human text beside them.
pub fn body(records: u32) -> ZoneBody {
    ZoneBody {
        origin: ORIGIN.into(),
        soa: Soa {
            ttl: 60,
            primary: format!("ns1.{ORIGIN}"),
            hostmaster: format!("hostmaster.{ORIGIN}"),
            negative_ttl: 30,
        },
        apex: vec![format!("{ORIGIN}. 60 IN NS ns1.{ORIGIN}.")],
        robot_lines: (0..records).map(robot_line).collect(),
        human: "ns1 IN A 192.0.2.53\nwiki IN CNAME web\nweb IN A 10.1.1.1\n".into(),
    }
}

/// The change that makes each of `hosts` leave, or come back if it is in `gone` (which it
/// keeps up to date): what a publication of a churning fleet holds.
pub fn toggle(
    gone: &mut std::collections::BTreeSet<u32>,
    hosts: impl IntoIterator<Item = u32>,
) -> geodns_snapshot::delta::ZoneChange {
    let mut change = geodns_snapshot::delta::ZoneChange {
        origin: ORIGIN.into(),
        soa: None,
        apex: None,
        human: None,
        removed: Vec::new(),
        added: Vec::new(),
    };
    for host in hosts {
        if gone.remove(&host) {
            change.added.push(robot_line(host));
        } else {
            gone.insert(host);
            change.removed.push(robot_line(host));
        }
    }
    change
}
