//! `geodns announce`'s config (TOML), parsed once into typed structs (docs/bgp.md).

use geodns_daemon::config_file;
pub use geodns_daemon::ConfigError;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use geomap::PopId;
use ipnet::IpNet;
use serde::Deserialize;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The PoP this process announces for.
    pub pop: PopId,
    /// Our AS number (used to prepend when draining by AS-path).
    #[serde(default)]
    pub local_as: Option<u32>,
    /// The VIPs.
    pub vips: Vec<Vip>,
    /// How a drain makes routes less preferred before withdrawing them.
    #[serde(default)]
    pub drain: Drain,
    /// Flap damping.
    #[serde(default)]
    pub damping: Damping,
    /// Where the PoP's health goes.
    #[serde(default)]
    pub publish: Publish,
    /// A file holding the PoP's current load as one number (utilisation: 1.0 is full), read
    /// every 100 ms and published with the health; servers shed a growing share of the PoP's
    /// answers between two watermarks of it (docs/spill.md). Written by whatever measures the
    /// load balancers.
    #[serde(default)]
    pub load_file: Option<PathBuf>,
    /// A proxy for the HTTP checks (`http://host:port`). Default none: a check asks the VIP's
    /// service directly, whatever `http_proxy`/`https_proxy` the host's environment sets (a
    /// proxy variable meant for something else would fail every healthy HTTP check and
    /// withdraw every HTTP-checked VIP).
    #[serde(default)]
    pub http_proxy: Option<String>,
}

/// One VIP and its check.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    /// The route: a /32 or /128.
    pub prefix: IpNet,
    /// Next hop: an address, or `self`. Default `self`.
    #[serde(default = "default_next_hop")]
    pub next_hop: String,
    /// MED while healthy. Default 100.
    #[serde(default = "default_med")]
    pub med: u32,
    /// Communities while healthy, `asn:value`.
    #[serde(default)]
    pub communities: Vec<String>,
    /// The health check.
    pub check: Check,
    /// Between checks, ms. Default 1000.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// A check slower than this fails, ms. Default 1000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive successes to go up. Default 3.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures to go down. Default 2.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

/// What is checked.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Check {
    /// A DNS query; healthy when answered NOERROR with at least one answer record.
    Dns {
        /// The server.
        server: SocketAddr,
        /// The name.
        name: String,
        /// The type. Default A.
        #[serde(default = "default_qtype")]
        qtype: String,
    },
    /// An HTTP GET; healthy when the status is `status`.
    Http {
        /// The URL (http://).
        url: String,
        /// Expected status. Default 200.
        #[serde(default = "default_status")]
        status: u16,
    },
    /// A TCP connect; healthy when it completes.
    Tcp {
        /// The address.
        addr: SocketAddr,
    },
}

/// Drain settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drain {
    /// How the route is made less preferred: `med`, `prepend` or `graceful-shutdown`
    /// (the GRACEFUL_SHUTDOWN community 65535:0, RFC 8326). Default `graceful-shutdown`.
    #[serde(default = "default_drain_method")]
    pub method: DrainMethod,
    /// MED during a drain by `med`. Default 4294967295 (the worst).
    #[serde(default = "default_drain_med")]
    pub med: u32,
    /// Extra copies of `local_as` during a drain by `prepend`, 1 to 32. Default 3.
    #[serde(default = "default_prepend")]
    pub prepend: u32,
    /// How long a route stays less preferred before it is withdrawn, ms. Default 30000.
    #[serde(default = "default_grace_ms")]
    pub grace_ms: u64,
    /// While this file exists the PoP is in maintenance: drained, then withdrawn.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// How a drain lowers preference.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DrainMethod {
    /// A worse MED.
    Med,
    /// A longer AS path.
    Prepend,
    /// The GRACEFUL_SHUTDOWN community (RFC 8326), which receivers map to LOCAL_PREF 0.
    GracefulShutdown,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            method: default_drain_method(),
            med: default_drain_med(),
            prepend: default_prepend(),
            grace_ms: default_grace_ms(),
            file: None,
        }
    }
}

/// Flap damping (RFC 2439's scheme, per VIP): each up/down change adds 1000 to a penalty that
/// halves every `half_life_ms`; above `suppress` the route stays withdrawn until the penalty
/// falls below `reuse`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Damping {
    /// Default 60000.
    #[serde(default = "default_half_life_ms")]
    pub half_life_ms: u64,
    /// Default 3000 (a fourth change within a half-life suppresses).
    #[serde(default = "default_suppress")]
    pub suppress: f64,
    /// Default 750.
    #[serde(default = "default_reuse")]
    pub reuse: f64,
}

impl Default for Damping {
    fn default() -> Self {
        Damping {
            half_life_ms: default_half_life_ms(),
            suppress: default_suppress(),
            reuse: default_reuse(),
        }
    }
}

/// Where the PoP's health is published.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// ZooKeeper: one node per PoP under `<root>/health/` that the DNS servers follow.
    #[serde(default)]
    pub zookeeper: Option<geodns_snapshot::ZkSettings>,
    /// Else (or also) a health file in the server's format (`<pop> up|down`), for a server on
    /// this host.
    #[serde(default)]
    pub health_file: Option<PathBuf>,
}

fn default_next_hop() -> String {
    "self".into()
}
fn default_med() -> u32 {
    100
}
fn default_interval_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_rise() -> u32 {
    3
}
fn default_fall() -> u32 {
    2
}
fn default_qtype() -> String {
    "A".into()
}
fn default_status() -> u16 {
    200
}
fn default_drain_method() -> DrainMethod {
    DrainMethod::GracefulShutdown
}
fn default_drain_med() -> u32 {
    u32::MAX
}
fn default_prepend() -> u32 {
    3
}
fn default_grace_ms() -> u64 {
    30_000
}
fn default_half_life_ms() -> u64 {
    60_000
}
fn default_suppress() -> f64 {
    3000.0
}
fn default_reuse() -> f64 {
    750.0
}

impl Config {
    /// Reads and checks the file; errors name the file and key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (file, mut cfg): (String, Config) = config_file::load(path)?;
        let bad = |key: String, problem: String| ConfigError::invalid(&file, key, problem);
        if cfg.vips.is_empty() {
            return Err(bad("vips".into(), "no VIP".into()));
        }
        for (i, v) in cfg.vips.iter().enumerate() {
            let host_len = if v.prefix.addr().is_ipv4() { 32 } else { 128 };
            if v.prefix.prefix_len() != host_len {
                return Err(bad(
                    format!("vips[{i}].prefix"),
                    format!("{} is not a /32 or /128", v.prefix),
                ));
            }
            if v.next_hop != "self" && v.next_hop.parse::<IpAddr>().is_err() {
                return Err(bad(
                    format!("vips[{i}].next_hop"),
                    format!("{:?} is neither an address nor self", v.next_hop),
                ));
            }
            for c in &v.communities {
                if parse_community(c).is_none() {
                    return Err(bad(
                        format!("vips[{i}].communities"),
                        format!("{c:?} is not asn:value"),
                    ));
                }
            }
            if v.rise == 0 || v.fall == 0 || v.interval_ms == 0 || v.timeout_ms == 0 {
                return Err(bad(
                    format!("vips[{i}]"),
                    "rise, fall, interval_ms and timeout_ms must be positive".into(),
                ));
            }
            for (key, ms) in [("interval_ms", v.interval_ms), ("timeout_ms", v.timeout_ms)] {
                if ms > MAX_CHECK_MS {
                    return Err(bad(
                        format!("vips[{i}].{key}"),
                        format!("{ms} is more than an hour ({MAX_CHECK_MS})"),
                    ));
                }
            }
            check_check(&v.check)
                .map_err(|(key, problem)| bad(format!("vips[{i}].check.{key}"), problem))?;
        }
        if let Some(p) = &cfg.http_proxy {
            reqwest::Proxy::all(p.as_str())
                .map_err(|e| bad("http_proxy".into(), format!("{p:?}: {e}")))?;
        }
        if !(1..=MAX_PREPEND).contains(&cfg.drain.prepend) {
            return Err(bad(
                "drain.prepend".into(),
                format!("{} is not from 1 to {MAX_PREPEND}", cfg.drain.prepend),
            ));
        }
        if cfg.drain.grace_ms > MAX_GRACE_MS {
            return Err(bad(
                "drain.grace_ms".into(),
                format!("{} is more than a day ({MAX_GRACE_MS})", cfg.drain.grace_ms),
            ));
        }
        let d = &cfg.damping;
        if d.half_life_ms == 0
            || !(d.suppress.is_finite() && d.reuse.is_finite())
            || d.reuse <= 0.0
            || d.reuse >= d.suppress
        {
            return Err(bad(
                "damping".into(),
                format!(
                    "want half_life_ms > 0 and finite 0 < reuse < suppress (half_life_ms {}, suppress {}, reuse {})",
                    d.half_life_ms, d.suppress, d.reuse
                ),
            ));
        }
        if cfg.drain.method == DrainMethod::Prepend && cfg.local_as.is_none() {
            return Err(bad("drain.method".into(), "prepend needs local_as".into()));
        }
        if let Some(zk) = &mut cfg.publish.zookeeper {
            zk.resolve(path.parent().unwrap_or(Path::new("")));
            zk.check(geodns_snapshot::access::Role::Announce)
                .map_err(|(key, e)| bad(format!("publish.zookeeper.{key}"), e))?;
        }
        Ok(cfg)
    }
}

/// Longest check interval or timeout, ms: an hour (a longer one is a typo, and a check that
/// never runs keeps a VIP as it is).
const MAX_CHECK_MS: u64 = 3_600_000;

/// Most copies of `local_as` a drain prepends (more only makes the path absurd; a huge number
/// once made a 103 GB allocation).
const MAX_PREPEND: u32 = 32;

/// Longest drain grace, ms: a day.
const MAX_GRACE_MS: u64 = 86_400_000;

/// A check that cannot work is refused at load, not found failing forever at run time: an
/// HTTP URL with an http or https scheme and a host, a DNS name and a record type that parse.
fn check_check(check: &Check) -> Result<(), (&'static str, String)> {
    match check {
        Check::Http { url, .. } => {
            let u = reqwest::Url::parse(url).map_err(|e| ("url", format!("{url:?}: {e}")))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err((
                    "url",
                    format!("{url:?}: want http:// or https:// with a host"),
                ));
            }
        }
        Check::Dns { name, qtype, .. } => {
            hickory_proto::rr::Name::from_ascii(name)
                .map_err(|e| ("name", format!("{name:?}: {e}")))?;
            qtype
                .parse::<hickory_proto::rr::RecordType>()
                .ok()
                .filter(|t| !matches!(t, hickory_proto::rr::RecordType::Unknown(_)))
                .ok_or(("qtype", format!("{qtype:?} is not a record type")))?;
        }
        Check::Tcp { .. } => {}
    }
    Ok(())
}

/// `asn:value` with both parts 16-bit.
pub fn parse_community(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per hostile or careless value: refused at load, naming the key (issue 20).
    #[test]
    fn nonsense_is_refused_at_load_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let load = |vip_extra: &str, check: &str, rest: &str| {
            let path = dir.path().join("announce.toml");
            std::fs::write(
                &path,
                format!(
                    "pop = \"ams\"\nlocal_as = 65001\n[[vips]]\nprefix = \"192.0.2.10/32\"\n{vip_extra}\ncheck = {check}\n{rest}"
                ),
            )
            .unwrap();
            Config::load(&path)
        };
        let tcp = r#"{ kind = "tcp", addr = "127.0.0.1:1" }"#;
        assert!(load("", tcp, "").is_ok());
        for (vip_extra, check, rest, key) in [
            (
                "",
                r#"{ kind = "http", url = "ftp://x/" }"#,
                "",
                "vips[0].check.url",
            ),
            (
                "",
                r#"{ kind = "http", url = "not a url" }"#,
                "",
                "vips[0].check.url",
            ),
            (
                "",
                r#"{ kind = "http", url = "http://" }"#,
                "",
                "vips[0].check.url",
            ),
            (
                "",
                r#"{ kind = "dns", server = "127.0.0.1:53", name = "a.example", qtype = "BOGUS" }"#,
                "",
                "vips[0].check.qtype",
            ),
            (
                "",
                r#"{ kind = "dns", server = "127.0.0.1:53", name = "a..b" }"#,
                "",
                "vips[0].check.name",
            ),
            ("timeout_ms = 99999999999", tcp, "", "vips[0].timeout_ms"),
            ("", tcp, "[damping]\nsuppress = nan\n", "damping"),
            ("", tcp, "[damping]\nreuse = inf\n", "damping"),
            ("", tcp, "[damping]\nreuse = 5000\n", "damping"),
            ("", tcp, "[drain]\nprepend = 4294967295\n", "drain.prepend"),
            (
                "",
                tcp,
                "[drain]\ngrace_ms = 999999999999\n",
                "drain.grace_ms",
            ),
        ] {
            let e = load(vip_extra, check, rest).expect_err(key).to_string();
            assert!(e.contains(&format!("announce.toml: {key}: ")), "{key}: {e}");
        }
        let path = dir.path().join("proxy.toml");
        std::fs::write(
            &path,
            format!("pop = \"ams\"\nhttp_proxy = \"::nope\"\n[[vips]]\nprefix = \"192.0.2.10/32\"\ncheck = {tcp}\n"),
        )
        .unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("proxy.toml: http_proxy: "), "{e}");
    }

    /// A PoP's own identity: its user needs a password file and is never a role's shared user
    /// (docs/bgp.md shows it inside `publish.zookeeper`).
    #[test]
    fn an_announce_identity_is_checked_at_load() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("zk.password");
        std::fs::write(&password, "secret\n").unwrap();
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
        let load = |zk: &str| {
            let path = dir.path().join("announce.toml");
            std::fs::write(
                &path,
                format!(
                    "pop = \"ams\"\n[[vips]]\nprefix = \"192.0.2.10/32\"\ncheck = {{ kind = \"tcp\", addr = \"127.0.0.1:1\" }}\n[publish]\nzookeeper = {{ connect = \"127.0.0.1:2181\", {zk} }}\n"
                ),
            )
            .unwrap();
            Config::load(&path).map_err(|e| e.to_string())
        };
        let file = format!("password_file = \"{}\"", password.display());
        assert!(load(&format!("{file}, user = \"announce-ams\"")).is_ok());
        for (zk, why) in [
            (
                "user = \"announce-ams\"".to_owned(),
                "needs a password_file",
            ),
            (
                format!("{file}, user = \"geodns-presenter\""),
                "shared user",
            ),
            (format!("{file}, user = \"a/b\""), "not a user name"),
        ] {
            let e = load(&zk).expect_err(&zk);
            assert!(
                e.contains("publish.zookeeper.user: ") && e.contains(why),
                "{zk}: {e}"
            );
        }
    }
}
