//! The MMDB export loads unchanged in the other GeoDNS servers operators run: gdnsd
//! (`auto_dc_coords`), Knot DNS (`mod-geoip`, `geodb` mode) and PowerDNS (the geoip backend),
//! each the real Debian package started on loopback on the exported file. Their answers and ECS
//! scopes must be what `geodns map lookup` says of the same map (docs/export.md).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use geomap::{Derivation, KeySpace, Map, MapMeta, MapRow, PopInfo, PopTable};

use crate::harness::{free_port, geodns};

const POPS: [(&str, f64, f64, &str); 3] = [
    ("ams", 52.37, 4.90, "192.0.2.1"),
    ("iad", 38.95, -77.45, "192.0.2.2"),
    ("sin", 1.35, 103.99, "192.0.2.3"),
];

/// A map with nested exceptions of several lengths, written through geomap's writer.
fn map(path: &Path) {
    let pops = PopTable::new(
        POPS.iter()
            .map(|(id, lat, lon, _)| PopInfo {
                id: id.parse().unwrap(),
                lat: Some(*lat),
                lon: Some(*lon),
            })
            .collect(),
    )
    .unwrap();
    let rows = [
        ("198.18.0.0/15", [0, 1, 2]),
        ("198.18.4.0/22", [1, 0, 2]),
        ("198.18.5.0/24", [2, 1, 0]),
        ("198.19.128.0/17", [2, 0, 1]),
        ("100.64.0.0/16", [1, 2, 0]),
        ("100.64.77.0/24", [0, 2, 1]),
        ("203.0.113.0/24", [2, 1, 0]),
    ]
    .map(|(p, order)| MapRow {
        key_space: KeySpace::Client,
        prefix: p.parse().unwrap(),
        pops: order.to_vec(),
        rtt_ms: vec![Some(10.0), Some(20.0), Some(30.0)],
        samples: 10,
        derivation: Derivation::Measured,
        own_share: Vec::new(),
    });
    let m = Map {
        meta: MapMeta {
            generation: "export-test".into(),
            created_at: "2026-11-26T00:00:00Z".into(),
            source_from: None,
            source_until: None,
            pops,
        },
        rows: rows.to_vec(),
    };
    geomap::write_map(path, &m).unwrap();
}

struct Daemon(Child, String);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- {} ----\n{}",
                self.1,
                std::fs::read_to_string(&self.1).unwrap_or_default()
            );
        }
    }
}

fn start(cmd: &mut Command, log: &Path, port: u16) -> Daemon {
    let child = cmd
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    let d = Daemon(child, log.with_extension("err").display().to_string());
    // Ready when it answers the zone's SOA.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = Command::new("dig")
            .args(["+short", "+time=1", "+tries=1", "@127.0.0.1", "-p"])
            .arg(port.to_string())
            .args(["example.com", "SOA"])
            .output()
            .unwrap();
        if !o.stdout.is_empty() {
            return d;
        }
        assert!(Instant::now() < deadline, "{} never answered", d.1);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The A answer and ECS scope for a query with ECS `subnet`.
fn ask(port: u16, subnet: &str) -> (String, String) {
    let o = Command::new("dig")
        .args(["+time=2", "+tries=2", "@127.0.0.1", "-p"])
        .arg(port.to_string())
        .arg(format!("+subnet={subnet}"))
        .args(["www.example.com", "A"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let a = text
        .lines()
        .find(|l| l.starts_with("www.example.com.") && l.contains("\tA\t"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("no A in {text}"))
        .to_owned();
    let scope = text
        .lines()
        .find_map(|l| l.strip_prefix("; CLIENT-SUBNET: "))
        .and_then(|s| s.rsplit('/').next())
        .unwrap_or_else(|| panic!("no ECS in {text}"))
        .to_owned();
    (a, scope)
}

const ZONE: &str = "@ 3600 IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ 3600 IN NS ns1\nns1 3600 IN A 192.0.2.53\n";

#[test]
fn gdnsd_knot_and_powerdns_answer_like_the_map_from_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p);
    map(&d("map.arrow"));
    let o = geodns()
        .args(["map", "export-mmdb"])
        .arg(d("map.arrow"))
        .arg(d("map.mmdb"))
        .args(["--fill", "ams"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let mmdb = d("map.mmdb").display().to_string();

    // gdnsd 3: nearest datacenter by the database's coordinates.
    let gdnsd_port = free_port();
    for sub in ["gdnsd/zones", "gdnsd/run", "gdnsd/state"] {
        std::fs::create_dir_all(d(sub)).unwrap();
    }
    let ids: Vec<&str> = POPS.iter().map(|p| p.0).collect();
    std::fs::write(
        d("gdnsd/config"),
        format!(
            "options => {{\n  listen => [ 127.0.0.1:{gdnsd_port} ]\n  edns_client_subnet = true\n  run_dir = {run}\n  state_dir = {state}\n}}\n\
             plugins => {{ geoip => {{\n  maps => {{ m => {{\n    geoip2_db => {mmdb}\n    datacenters => [{dcs}]\n    auto_dc_coords => {{ {coords} }}\n    auto_dc_limit => 1\n  }} }}\n\
             resources => {{ www => {{ map => m\n    dcmap => {{ {dcmap} }} }} }}\n}} }}\n",
            run = d("gdnsd/run").display(),
            state = d("gdnsd/state").display(),
            dcs = ids.join(", "),
            coords = POPS
                .iter()
                .map(|(id, lat, lon, _)| format!("{id} => [ {lat}, {lon} ]"))
                .collect::<Vec<_>>()
                .join(", "),
            dcmap = POPS
                .iter()
                .map(|(id, _, _, ip)| format!("{id} => {ip}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    )
    .unwrap();
    std::fs::write(
        d("gdnsd/zones/example.com"),
        format!("{ZONE}www 60 DYNA geoip!www\n"),
    )
    .unwrap();
    let gdnsd = start(
        Command::new("gdnsd")
            .arg("-c")
            .arg(d("gdnsd"))
            .args(["-D", "-f", "start"])
            .stdin(Stdio::null()),
        &d("gdnsd.log"),
        gdnsd_port,
    );

    // Knot 3.2: mod-geoip in geodb mode, keyed on the city name (the PoP id).
    let knot_port = free_port();
    std::fs::create_dir_all(d("knot/db")).unwrap();
    std::fs::create_dir_all(d("knot/run")).unwrap();
    std::fs::write(
        d("knot/geo.conf"),
        format!(
            "www.example.com:\n{}",
            POPS.iter()
                .map(|(id, _, _, ip)| format!("  - geo: \"{id}\"\n    A: {ip}\n"))
                .collect::<String>()
        ),
    )
    .unwrap();
    std::fs::write(
        d("knot/example.com.zone"),
        format!("$ORIGIN example.com.\n{ZONE}"),
    )
    .unwrap();
    std::fs::write(
        d("knot/knot.conf"),
        format!(
            "server:\n  listen: 127.0.0.1@{knot_port}\n  rundir: {run}\n  edns-client-subnet: on\n\
             log:\n  - target: stderr\n    any: info\ndatabase:\n  storage: {db}\n\
             mod-geoip:\n  - id: geo\n    config-file: {conf}\n    ttl: 60\n    mode: geodb\n    geodb-file: {mmdb}\n    geodb-key: [ city/names/en ]\n\
             zone:\n  - domain: example.com\n    file: {zone}\n    module: mod-geoip/geo\n",
            run = d("knot/run").display(),
            db = d("knot/db").display(),
            conf = d("knot/geo.conf").display(),
            zone = d("knot/example.com.zone").display(),
        ),
    )
    .unwrap();
    let knot = start(
        Command::new("knotd").arg("-c").arg(d("knot/knot.conf")),
        &d("knot.log"),
        knot_port,
    );

    // PowerDNS 4.7: the geoip backend, each PoP's name from the city (%ci).
    let pdns_port = free_port();
    std::fs::create_dir_all(d("pdns/run")).unwrap();
    let mut zones = String::from(
        "domains:\n- domain: example.com\n  ttl: 60\n  records:\n    example.com:\n      - soa: ns1.example.com hostmaster.example.com 1 3600 600 86400 60\n      - ns: ns1.example.com\n    ns1.example.com:\n      - a: 192.0.2.53\n",
    );
    for (id, _, _, ip) in POPS {
        zones.push_str(&format!("    {id}.pops.example.com:\n      - a: {ip}\n"));
    }
    zones.push_str("  services:\n    www.example.com: '%ci.pops.example.com'\n");
    std::fs::write(d("pdns/zones.yaml"), zones).unwrap();
    std::fs::write(
        d("pdns/pdns.conf"),
        format!(
            "launch=geoip\ngeoip-zones-file={zones}\ngeoip-database-files=mmdb:{mmdb}\nedns-subnet-processing=yes\n\
             local-address=127.0.0.1\nlocal-port={pdns_port}\nsocket-dir={run}\nguardian=no\ndaemon=no\ndisable-syslog=yes\n\
             webserver=no\napi=no\nsecurity-poll-suffix=\n",
            zones = d("pdns/zones.yaml").display(),
            run = d("pdns/run").display(),
        ),
    )
    .unwrap();
    let pdns = start(
        Command::new("pdns_server").arg(format!("--config-dir={}", d("pdns").display())),
        &d("pdns.log"),
        pdns_port,
    );

    // Addresses in every row, in the exceptions' neighbours, and in space no row covers.
    let addrs = [
        "198.18.0.9",
        "198.18.4.9",
        "198.18.5.9",
        "198.18.6.9",
        "198.18.200.9",
        "198.19.0.9",
        "198.19.128.9",
        "198.19.255.9",
        "100.64.0.9",
        "100.64.77.9",
        "100.64.78.9",
        "203.0.113.9",
        "192.0.2.9",
        "8.8.8.9",
        "100.65.0.9",
    ];
    let mut lookup = geodns()
        .args(["map", "lookup"])
        .arg(d("map.arrow"))
        .args(["-", "--ecs"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = lookup.stdin.take().unwrap();
        writeln!(stdin, "{}", addrs.join("\n")).unwrap();
    }
    let out = String::from_utf8(lookup.wait_with_output().unwrap().stdout).unwrap();
    let vip = |id: &str| POPS.iter().find(|p| p.0 == id).map(|p| p.3).unwrap();
    let mut checked = 0;
    for line in out.lines() {
        // address, key space, prefix, ranked PoPs, scope, derivation
        let f: Vec<&str> = line.split('\t').collect();
        let (addr, pops, scope) = (f[0], f[3], f[4]);
        // Uncovered space was filled with ams in the export.
        let want = if pops == "-" {
            vip("ams")
        } else {
            vip(pops.split(',').next().unwrap())
        };
        let subnet = format!("{addr}/32");
        for (name, port) in [
            ("gdnsd", gdnsd_port),
            ("knot", knot_port),
            ("powerdns", pdns_port),
        ] {
            let (a, got_scope) = ask(port, &subnet);
            assert_eq!(a, want, "{name} for {addr}: map says {line}");
            // The scope is the database network's length: the map's own where it has a row.
            if pops != "-" {
                assert_eq!(got_scope, scope, "{name} scope for {addr}: map says {line}");
            } else {
                assert_ne!(
                    got_scope, "0",
                    "{name} for uncovered {addr}: a scope of /0 would be cached for everyone"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, addrs.len() * 3);
    drop((gdnsd, knot, pdns));
}
