//! The server's configuration: one TOML file, parsed once into typed structs and validated.
//!
//! Every field is documented here and in `docs/config.md`; unknown keys are rejected so a typo is
//! an error, not a silently ignored setting. Relative paths are relative to the config file's
//! directory, so a config and its data can move together. [`Config::read`] is the only loader:
//! `geodns check` and `geodns serve` both call it (through [`crate::dataset::Dataset::load`]), so they cannot
//! disagree about what is valid.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use geomap::PopId;
use serde::Deserialize;

pub use geodns_zone::config::{GeoName, ProbeZone, Zone};

use geodns_daemon::config_file;

/// Why a config cannot be used (the one error type of every geodns config file).
pub use geodns_daemon::ConfigError;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of this server in the status TXT record and logs. Default: the host name.
    #[serde(default = "default_server_id")]
    pub server_id: String,
    /// Where to listen.
    #[serde(default)]
    pub listen: Listen,
    /// TCP limits.
    #[serde(default)]
    pub tcp: Tcp,
    /// The map file (Arrow IPC, see `docs/map-format.md`).
    pub map: PathBuf,
    /// Optional MaxMind City database for addresses the map does not cover.
    #[serde(default)]
    pub geoip: Option<PathBuf>,
    /// Optional health file: lines `<pop> up|down`; a PoP not listed is up.
    #[serde(default)]
    pub health_file: Option<PathBuf>,
    /// PoP order for addresses neither the map nor GeoIP place, and for when every ranked PoP
    /// is down. Default: the PoPs in config order.
    #[serde(default)]
    pub default_order: Vec<PopId>,
    /// How often to check the map, config, zone and health files for changes, in ms (0: only
    /// on SIGHUP). Default 1000.
    #[serde(default = "default_watch_interval_ms")]
    pub watch_interval_ms: u64,
    /// Logging of probe-zone queries to Parquet (the beacon's DNS side), if set. Read at start
    /// only: a change needs a restart.
    #[serde(default)]
    pub probe_log: Option<ProbeLog>,
    /// The PoPs, by id.
    pub pops: BTreeMap<PopId, Pop>,
    /// The zones served.
    pub zones: Vec<Zone>,
    /// Answer the NSID EDNS option (RFC 5001) with `server_id`, for telling servers of a
    /// fleet apart behind one address. Default false.
    #[serde(default)]
    pub nsid: bool,
    /// Answer `id.server.` and `hostname.bind.` CH TXT with `server_id` (RFC 4892).
    /// Default false (CH queries are refused).
    #[serde(default)]
    pub chaos_id: bool,
    /// Internal zones from the snapshot the presenter publishes in ZooKeeper, if set. Read at
    /// start only: a change needs a restart.
    #[serde(default)]
    pub zookeeper: Option<ZooKeeper>,
    /// Response rate limiting over UDP (docs/config.md); off without it. Read at start only.
    #[serde(default)]
    pub rrl: Rrl,
    /// DNS cookies' secrets (docs/config.md); a random one per process without it.
    #[serde(default)]
    pub cookies: Cookies,
}

/// The secrets of DNS cookies (RFC 7873, RFC 9018): servers that share `secret` accept each
/// other's cookies; during a rotation the old secret is `previous_secret` for an hour.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cookies {
    /// 32 hex digits (16 bytes). Unset: a random secret for this process.
    #[serde(default)]
    pub secret: Option<String>,
    /// The secret before the current one, still accepted (32 hex digits).
    #[serde(default)]
    pub previous_secret: Option<String>,
}

/// Response rate limiting: identical UDP responses to one client prefix are limited to
/// `responses_per_second`; of the excess, every `slip`-th goes out truncated (so a real client
/// retries over TCP) and the rest is dropped.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rrl {
    /// Responses per second per client prefix, answer class and name. 0 (the default): off.
    #[serde(default)]
    pub responses_per_second: u32,
    /// Every `slip`-th limited response is sent truncated; 0 drops them all. Default 2, as
    /// BIND's.
    #[serde(default = "default_slip")]
    pub slip: u32,
    /// IPv4 client prefix length accounted together. Default 24.
    #[serde(default = "default_rrl_v4")]
    pub ipv4_prefix: u8,
    /// IPv6 client prefix length accounted together. Default 56.
    #[serde(default = "default_rrl_v6")]
    pub ipv6_prefix: u8,
}

impl Default for Rrl {
    fn default() -> Rrl {
        Rrl {
            responses_per_second: 0,
            slip: default_slip(),
            ipv4_prefix: default_rrl_v4(),
            ipv6_prefix: default_rrl_v6(),
        }
    }
}

fn default_slip() -> u32 {
    2
}
fn default_rrl_v4() -> u8 {
    24
}
fn default_rrl_v6() -> u8 {
    56
}

/// Where the internal-zone snapshot is followed (docs/internal-zones.md).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZooKeeper {
    /// How to reach ZooKeeper (`connect`, `root`, `session_timeout_ms`): the same keys,
    /// defaults and checks as every geodns tool's. (Flattened; a key neither this section nor
    /// `ZkSettings` knows is still refused, by the parser, with its line.)
    #[serde(flatten)]
    pub zk: geodns_snapshot::ZkSettings,
    /// The last good snapshot on disk, served at start before ZooKeeper answers. Default
    /// `internal-snapshot.json` beside the config.
    #[serde(default = "default_zk_cache")]
    pub cache: PathBuf,
    /// Longest random wait before fetching a new version, ms. Default 500.
    #[serde(default = "default_zk_jitter_ms")]
    pub jitter_ms: u64,
    /// Re-read the pointer at least this often whatever the watches say, ms. Default 30000.
    #[serde(default = "default_zk_recheck_ms")]
    pub recheck_ms: u64,
    /// The internal zones this server takes from snapshots (required; empty: none, for a server
    /// that follows only the PoP health). A snapshot with any other zone is refused, and none
    /// of these may be at, above or below a zone configured in `[[zones]]`, so an internal zone
    /// can never shadow a public name.
    pub zones: Vec<String>,
    /// Public keys (`ed25519:<hex>`, from `geodns keygen`) a snapshot must be signed by; two
    /// during a rotation. Empty: signatures are not checked (`geodns check` warns).
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Where this server serves the snapshots it holds to other servers over HTTP
    /// (`host:port`; read only, by content hash; docs/internal-zones.md). Unset: it serves
    /// none and is not announced.
    #[serde(default)]
    pub peers_listen: Option<std::net::SocketAddr>,
    /// The `host:port` other servers reach `peers_listen` at. Default: `peers_listen`, which
    /// must then not be a wildcard address.
    #[serde(default)]
    pub peers_advertise: Option<String>,
    /// How many peers, chosen at random among those announced, a server asks for a whole
    /// snapshot before it reads ZooKeeper's chunks. 0: never ask peers. Default 3.
    #[serde(default = "default_zk_peers_fetch")]
    pub peers_fetch: usize,
}

impl ZooKeeper {
    /// How this server shares snapshots with its peers.
    pub fn peers(&self) -> geodns_snapshot::peers::PeersConfig {
        geodns_snapshot::peers::PeersConfig {
            listen: self.peers_listen,
            advertise: self.peers_advertise.clone(),
            fetch_from: self.peers_fetch,
        }
    }

    /// The keys snapshots must be signed by.
    pub fn trust(&self) -> geodns_snapshot::Trust {
        geodns_snapshot::Trust::new(
            self.trusted_keys
                .iter()
                .map(|k| k.parse().expect("checked with the config"))
                .collect(),
        )
    }
}

/// A DNS cookie secret as configured: 32 hex digits (16 bytes).
pub fn parse_cookie_secret(s: &str) -> Result<[u8; 16], String> {
    let s = s.trim();
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("want 32 hex digits (16 bytes)".into());
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Whether dotted name `a` is at or below `b` (both lowercase, no trailing dot).
fn at_or_below(a: &str, b: &str) -> bool {
    a == b || a.ends_with(&format!(".{b}"))
}

fn default_zk_cache() -> PathBuf {
    "internal-snapshot.json".into()
}
fn default_zk_peers_fetch() -> usize {
    3
}
fn default_zk_jitter_ms() -> u64 {
    500
}
fn default_zk_recheck_ms() -> u64 {
    30_000
}

/// Listening sockets.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// DNS addresses, each served over UDP and TCP. Port 0 picks a free port (logged).
    #[serde(default = "default_dns_listen")]
    pub dns: Vec<SocketAddr>,
    /// UDP sockets (and worker threads) per address, sharing it with SO_REUSEPORT when more than
    /// one. Default 1.
    #[serde(default = "default_udp_workers")]
    pub udp_workers: usize,
    /// Prometheus metrics over HTTP (`/metrics`), if set.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Network interfaces on which UDP to the `dns` addresses is answered through AF_XDP,
    /// bypassing the kernel's UDP stack (docs/xdp.md). Everything else on them (TCP, other
    /// ports, ICMP, ARP) still goes to the kernel; where XDP cannot be set up the sockets
    /// answer, as without it. Empty (the default): sockets only.
    #[serde(default)]
    pub xdp: Vec<String>,
}

/// TCP limits, so slow or idle clients cannot starve the rest.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tcp {
    /// Connections open at once; further ones are closed at accept. Default 256.
    #[serde(default = "default_tcp_max")]
    pub max_connections: usize,
    /// Close a connection idle (no complete query) this long, in ms. Default 10000.
    #[serde(default = "default_tcp_idle_ms")]
    pub idle_timeout_ms: u64,
}

/// Where and how probe queries are logged (`docs/beacon-schema.md`, table `dns_probe`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbeLog {
    /// The log root; files go to `<dir>/dns_probe/date=YYYY-MM-DD/<writer_id>-<seq>.parquet`.
    pub dir: PathBuf,
    /// File name prefix, unique per process writing to `dir`. Default: `server_id`.
    #[serde(default)]
    pub writer_id: Option<String>,
    /// Roll a file after this many rows. Default 100000.
    #[serde(default = "default_log_rows")]
    pub max_rows: usize,
    /// Roll a file this long after its first row, in ms: the most a crash can lose. Default 60000.
    #[serde(default = "default_log_age_ms")]
    pub max_age_ms: u64,
    /// Rows that may wait for the writer; beyond it rows are dropped and counted, so logging
    /// never slows queries. Default 100000.
    #[serde(default = "default_log_rows")]
    pub queue_rows: usize,
    /// Bytes kept in reserve on the log's file system, freed to write accepted rows when the
    /// disk fills (0: none). Default: 16 MiB, or an eighth of the file system if smaller.
    #[serde(default)]
    pub reserve_bytes: Option<u64>,
}

/// One PoP: the addresses answered when it is chosen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pop {
    /// IPv4 VIPs (A answers).
    #[serde(default)]
    pub vip4: Vec<Ipv4Addr>,
    /// IPv6 VIPs (AAAA answers).
    #[serde(default)]
    pub vip6: Vec<Ipv6Addr>,
    /// Latitude, for GeoIP distance fallback.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude, for GeoIP distance fallback.
    #[serde(default)]
    pub lon: Option<f64>,
    /// IPv4 addresses answered for this PoP's probe names. Default: `vip4`.
    #[serde(default)]
    pub probe4: Option<Vec<Ipv4Addr>>,
    /// IPv6 addresses answered for this PoP's probe names. Default: `vip6`.
    #[serde(default)]
    pub probe6: Option<Vec<Ipv6Addr>>,
    /// The share of the map's total demand (0-1) this PoP can serve; unset: unlimited. With
    /// capacities, a drained PoP's users are spread over their next PoPs so that none goes over
    /// its own (docs/spill.md).
    #[serde(default)]
    pub capacity: Option<f64>,
}

fn default_server_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "geodns".to_owned())
}
fn default_dns_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 5353))]
}
fn default_udp_workers() -> usize {
    1
}
fn default_tcp_max() -> usize {
    256
}
fn default_tcp_idle_ms() -> u64 {
    10_000
}
fn default_watch_interval_ms() -> u64 {
    1000
}
fn default_log_rows() -> usize {
    100_000
}
fn default_log_age_ms() -> u64 {
    60_000
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            dns: default_dns_listen(),
            udp_workers: default_udp_workers(),
            metrics: None,
            xdp: Vec::new(),
        }
    }
}

impl Default for Tcp {
    fn default() -> Self {
        Tcp {
            max_connections: default_tcp_max(),
            idle_timeout_ms: default_tcp_idle_ms(),
        }
    }
}

impl Config {
    /// The configured PoPs as a map's PoP table (ids and coordinates, in config order), the one
    /// the server answers from and mapgen ranks.
    pub fn pop_table(&self) -> geomap::PopTable {
        geomap::PopTable::new(
            self.pops
                .iter()
                .map(|(id, p)| geomap::PopInfo {
                    id: id.clone(),
                    lat: p.lat,
                    lon: p.lon,
                })
                .collect(),
        )
        .expect("config PoP ids are unique map keys")
    }

    /// The settings a reload cannot apply, by key, that differ between `self` (a new file) and
    /// `running` (what the process started with). Sockets, workers and the probe log writer
    /// are made once at start-up; everything else (zones, map, PoPs, health, GeoIP) reloads.
    pub fn restart_only_changes(&self, running: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |key, differs: bool| {
            if differs {
                changed.push(key)
            }
        };
        check("listen.dns", self.listen.dns != running.listen.dns);
        check(
            "listen.udp_workers",
            self.listen.udp_workers != running.listen.udp_workers,
        );
        check(
            "listen.metrics",
            self.listen.metrics != running.listen.metrics,
        );
        check("listen.xdp", self.listen.xdp != running.listen.xdp);
        check("tcp", self.tcp != running.tcp);
        check("probe_log", self.probe_log != running.probe_log);
        check("zookeeper", self.zookeeper != running.zookeeper);
        check("rrl", self.rrl != running.rrl);
        changed
    }

    /// Parses and validates config text. `file` names it in errors; `base` resolves relative
    /// paths.
    pub fn from_str(file: &str, text: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = config_file::parse(file, text)?;
        let invalid = |key: String, problem: String| ConfigError::invalid(file, key, problem);
        for p in [
            Some(&mut cfg.map),
            cfg.geoip.as_mut(),
            cfg.health_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            *p = base.join(&*p);
        }
        for z in &mut cfg.zones {
            if let Some(f) = &mut z.file {
                *f = base.join(&*f);
            }
        }
        for (id, p) in &cfg.pops {
            if let Some(c) = p.capacity {
                if !(c > 0.0 && c <= 1.0) {
                    return Err(invalid(
                        format!("pops.{id}.capacity"),
                        format!("{c} is not a share in (0, 1]"),
                    ));
                }
            }
        }
        for (key, secret) in [
            ("cookies.secret", &cfg.cookies.secret),
            ("cookies.previous_secret", &cfg.cookies.previous_secret),
        ] {
            if let Some(Err(problem)) = secret.as_deref().map(parse_cookie_secret) {
                return Err(invalid(key.into(), problem));
            }
        }
        if cfg.cookies.previous_secret.is_some() && cfg.cookies.secret.is_none() {
            return Err(invalid(
                "cookies.previous_secret".into(),
                "needs cookies.secret".into(),
            ));
        }
        let rrl = &cfg.rrl;
        for (key, ok) in [
            (
                "rrl.responses_per_second",
                rrl.responses_per_second <= 10_000,
            ),
            ("rrl.slip", rrl.slip <= 10),
            ("rrl.ipv4_prefix", (8..=32).contains(&rrl.ipv4_prefix)),
            ("rrl.ipv6_prefix", (16..=128).contains(&rrl.ipv6_prefix)),
        ] {
            if !ok {
                return Err(invalid(
                    key.into(),
                    "out of range (responses_per_second 0-10000, slip 0-10, ipv4_prefix 8-32, ipv6_prefix 16-128)".into(),
                ));
            }
        }
        if let Some(zk) = &mut cfg.zookeeper {
            zk.cache = base.join(&zk.cache);
            zk.zk.resolve(base);
            if let Err((key, problem)) = zk.zk.check(geodns_snapshot::access::Role::Server) {
                return Err(invalid(format!("zookeeper.{key}"), problem));
            }
            match (&zk.peers_listen, &zk.peers_advertise) {
                (Some(l), None) if l.ip().is_unspecified() => {
                    return Err(invalid(
                        "zookeeper.peers_advertise".into(),
                        format!("needed: peers_listen {l} is a wildcard address, which peers cannot reach"),
                    ));
                }
                (_, Some(a))
                    if geodns_snapshot::layout::check_connect(a).is_err()
                        || a.contains(',')
                        || a.contains('/') =>
                {
                    return Err(invalid(
                        "zookeeper.peers_advertise".into(),
                        format!("{a:?} is not host:port"),
                    ));
                }
                _ => {}
            }
            if zk.peers_fetch > 16 {
                return Err(invalid(
                    "zookeeper.peers_fetch".into(),
                    format!("{} is more than 16 peers", zk.peers_fetch),
                ));
            }
            for (i, k) in zk.trusted_keys.iter().enumerate() {
                if let Err(problem) = k.parse::<geodns_snapshot::PublicKey>() {
                    return Err(invalid(format!("zookeeper.trusted_keys[{i}]"), problem));
                }
            }
            for (i, z) in zk.zones.iter_mut().enumerate() {
                *z = z.trim_end_matches('.').to_ascii_lowercase();
                let key = format!("zookeeper.zones[{i}]");
                if let Err(problem) = hickory_proto::rr::Name::from_ascii(&*z) {
                    return Err(invalid(key, format!("{z:?}: {problem}")));
                }
                let public = cfg
                    .zones
                    .iter()
                    .map(|c| c.origin.trim_end_matches('.').to_ascii_lowercase());
                for p in public {
                    if at_or_below(z, &p) || at_or_below(&p, z) {
                        return Err(invalid(
                            key,
                            format!("internal zone {z} overlaps the configured zone {p}: an internal zone may be neither at, above nor below a zone this server serves from its own files"),
                        ));
                    }
                }
            }
        }
        if let Some(log) = &mut cfg.probe_log {
            log.dir = base.join(&log.dir);
            if log.writer_id.is_none() {
                log.writer_id = Some(cfg.server_id.clone());
            }
            if log.max_rows == 0 || log.queue_rows == 0 || log.max_age_ms == 0 {
                return Err(invalid(
                    "probe_log".into(),
                    "max_rows, max_age_ms and queue_rows must be positive".into(),
                ));
            }
        }
        if cfg.listen.dns.is_empty() {
            return Err(invalid(
                "listen.dns".into(),
                "no address to listen on".into(),
            ));
        }
        if let Some(bad) = cfg
            .listen
            .xdp
            .iter()
            .find(|i| i.is_empty() || i.len() >= libc::IFNAMSIZ || i.contains(['/', ' ', '\0']))
        {
            return Err(invalid(
                "listen.xdp".into(),
                format!("{bad:?} is not a network interface name"),
            ));
        }
        if !(1..=64).contains(&cfg.listen.udp_workers) {
            return Err(invalid(
                "listen.udp_workers".into(),
                format!("{} is not in 1..=64", cfg.listen.udp_workers),
            ));
        }
        if cfg.tcp.max_connections == 0 {
            return Err(invalid(
                "tcp.max_connections".into(),
                "must be at least 1".into(),
            ));
        }
        if cfg.pops.is_empty() {
            return Err(invalid("pops".into(), "no PoP configured".into()));
        }
        for (id, p) in &cfg.pops {
            if p.vip4.is_empty() && p.vip6.is_empty() {
                return Err(invalid(
                    format!("pops.{id}"),
                    "has neither vip4 nor vip6".into(),
                ));
            }
            match (p.lat, p.lon) {
                (Some(lat), _) if !(-90.0..=90.0).contains(&lat) => {
                    return Err(invalid(
                        format!("pops.{id}.lat"),
                        format!("{lat} is not a latitude"),
                    ))
                }
                (_, Some(lon)) if !(-180.0..=180.0).contains(&lon) => {
                    return Err(invalid(
                        format!("pops.{id}.lon"),
                        format!("{lon} is not a longitude"),
                    ))
                }
                (Some(_), None) | (None, Some(_)) => {
                    return Err(invalid(
                        format!("pops.{id}"),
                        "lat and lon go together".into(),
                    ))
                }
                _ => {}
            }
        }
        if cfg.default_order.is_empty() {
            cfg.default_order = cfg.pops.keys().cloned().collect();
        }
        for (i, id) in cfg.default_order.iter().enumerate() {
            if !cfg.pops.contains_key(id) {
                return Err(invalid(
                    format!("default_order[{i}]"),
                    format!("'{id}' is not a configured PoP"),
                ));
            }
            if cfg.default_order[..i].contains(id) {
                return Err(invalid(
                    format!("default_order[{i}]"),
                    format!("'{id}' is listed twice"),
                ));
            }
        }
        if cfg.zones.is_empty() {
            return Err(invalid("zones".into(), "no zone configured".into()));
        }
        for (i, z) in cfg.zones.iter().enumerate() {
            for (name, g) in &z.geo {
                if g.ttl > 86_400 {
                    return Err(invalid(
                        format!("zones[{i}].geo.{name}.ttl"),
                        format!("{} s is longer than a day", g.ttl),
                    ));
                }
            }
        }
        Ok(cfg)
    }

    /// Reads and validates a config file.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let (file, text) = config_file::read(path)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::from_str(&file, &text, &base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
map = "map.arrow"
[pops.ams]
vip4 = ["192.0.2.1"]
[[zones]]
origin = "example.com"
geo.www = { ttl = 30 }
"#;

    fn err(text: &str) -> String {
        Config::from_str("g.toml", text, Path::new("/etc/geodns"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = Config::from_str("g.toml", GOOD, Path::new("/etc/geodns")).unwrap();
        assert_eq!(c.map, Path::new("/etc/geodns/map.arrow"));
        assert_eq!(c.listen.dns, [SocketAddr::from(([127, 0, 0, 1], 5353))]);
        assert_eq!(c.default_order, ["ams".parse::<PopId>().unwrap()]);
        assert_eq!(c.zones[0].geo["www"].ttl, 30);
        assert_eq!(c.zones[0].status_name, "_status");
    }

    #[test]
    fn errors_name_file_key_and_value() {
        let e = err(&GOOD.replace("192.0.2.1", "10.0.0.300"));
        assert!(e.starts_with("g.toml: TOML parse error at line 4"), "{e}");
        assert!(e.contains("vip4"), "{e}");
        let e = err(&format!("{GOOD}\nbogus = 1\n"));
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = err(&GOOD.replace(
            "map = \"map.arrow\"",
            "map = \"map.arrow\"\ndefault_order = [\"ams\", \"sin\"]",
        ));
        assert_eq!(e, "g.toml: default_order[1]: 'sin' is not a configured PoP");
        let e = err(&GOOD.replace(
            "vip4 = [\"192.0.2.1\"]",
            "lat = 95.0\nlon = 1.0\nvip4 = [\"192.0.2.1\"]",
        ));
        assert_eq!(e, "g.toml: pops.ams.lat: 95 is not a latitude");
        let e = err(&GOOD
            .replace("[pops.AMS]", "")
            .replace("[pops.ams]", "[pops.AMS]"));
        assert!(e.contains("invalid PoP id \"AMS\""), "{e}");
    }

    #[test]
    fn the_zookeeper_section_takes_the_shared_settings_and_refuses_unknown_keys() {
        let c = Config::from_str(
            "g.toml",
            &format!("{GOOD}\n[zookeeper]\nconnect = \"zk1:2181\"\nzones = [\"internal.example\"]\njitter_ms = 7\n"),
            Path::new("/etc/geodns"),
        )
        .unwrap();
        let zk = c.zookeeper.unwrap();
        assert_eq!(zk.zk.connect, "zk1:2181");
        assert_eq!(zk.zk.root, "/geodns");
        assert_eq!(zk.zk.session_timeout_ms, 10_000);
        assert_eq!(zk.jitter_ms, 7);
        assert_eq!(zk.cache, Path::new("/etc/geodns/internal-snapshot.json"));
        let e = err(&format!(
            "{GOOD}\n[zookeeper]\nconnect = \"zk1:2181\"\nzones = [\"internal.example\"]\nrechek_ms = 5\n"
        ));
        assert!(e.starts_with("g.toml: TOML parse error at line 9"), "{e}");
        assert!(e.contains("unknown field `rechek_ms`"), "{e}");
        let e = err(&format!(
            "{GOOD}\n[zookeeper]\nconnect = \"zk1:2181\"\nzones = [\"internal.example\"]\nsession_timeout_ms = 0\n"
        ));
        assert!(
            e.starts_with("g.toml: zookeeper.session_timeout_ms: "),
            "{e}"
        );
        let e = err(&format!("{GOOD}\n[zookeeper]\nroot = \"/x\"\nzones = []\n"));
        assert!(e.contains("connect"), "{e}");
        // Which internal zones a server takes is said, and none may touch a public zone.
        let e = err(&format!("{GOOD}\n[zookeeper]\nconnect = \"zk1:2181\"\n"));
        assert!(e.contains("zones"), "{e}");
        for overlapping in ["www.example.com", "Example.COM.", "com"] {
            let e = err(&format!(
                "{GOOD}\n[zookeeper]\nconnect = \"zk1:2181\"\nzones = [\"{overlapping}\"]\n"
            ));
            assert!(
                e.starts_with("g.toml: zookeeper.zones[0]: internal zone"),
                "{overlapping}: {e}"
            );
        }
        let e = err(&format!(
            "{GOOD}\n[zookeeper]\nconnect = \"zk1:2181\"\nzones = []\ntrusted_keys = [\"ed25519:00\"]\n"
        ));
        assert!(e.starts_with("g.toml: zookeeper.trusted_keys[0]: "), "{e}");
    }
}
