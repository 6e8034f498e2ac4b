//! The presenter's config (TOML), parsed once into typed structs. Every key is described in
//! docs/internal-zones.md.

use geodns_daemon::config_file;
pub use geodns_daemon::ConfigError;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the registrations, human zones and snapshots live.
    pub zookeeper: geodns_snapshot::ZkSettings,
    /// The internal zones the presenter owns (SOA and apex NS are its own).
    pub zones: Vec<ZoneConfig>,
    /// Names derived from registrations.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Guards against a flapping or failing source.
    #[serde(default)]
    pub guard: Guard,
    /// The names robots may register (each, and the names below it), e.g.
    /// `["prn1.internal.example"]`; empty: any name in an internal zone. Whatever this says, a
    /// robot never registers a zone's apex or a rule's service name (`unauthorized_name`).
    #[serde(default)]
    pub robot_names: Vec<String>,
    /// Prometheus metrics over HTTP, if set.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// The private key file (`geodns keygen`) every snapshot is signed with; servers list its
    /// public half in `[zookeeper] trusted_keys`. Unset: snapshots go out unsigned.
    #[serde(default)]
    pub signing_key: Option<std::path::PathBuf>,
    /// Every publication goes out as a delta against the one before (servers take the change,
    /// not every record); a whole snapshot is written to ZooKeeper at least every this many
    /// publications, and whenever the deltas since the last one outweigh it. 1: whole every
    /// time (no server can then take a delta). Default 100.
    #[serde(default = "default_full_every")]
    pub full_every: u64,
    /// The shortest time between two publications, ms: a change after a quiet spell is
    /// published at once (after 50 ms for a burst to settle), a stream of changes in one
    /// version per interval, so every server takes at most one version per interval however
    /// fast hosts come and go. 0 to 60000. Default 500.
    #[serde(default = "default_publish_interval_ms")]
    pub publish_interval_ms: u64,
}

fn default_publish_interval_ms() -> u64 {
    500
}

fn default_full_every() -> u64 {
    100
}

/// One internal zone.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Apex, e.g. `internal.example`.
    pub origin: String,
    /// SOA MNAME (primary server), absolute.
    pub primary: String,
    /// SOA RNAME (responsible mailbox as a name), absolute.
    pub hostmaster: String,
    /// Apex NS records, absolute names.
    pub ns: Vec<String>,
    /// TTL of robot records and of the SOA/NS. Default 60.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// SOA MINIMUM: the negative-caching TTL (RFC 2308). Default 30, so a deregistered host
    /// stops resolving within half a minute of leaving the snapshot.
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl: u32,
}

/// Every host that runs `role` in `cluster` is behind `name` (A/AAAA) and `srv` (SRV).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Service role, e.g. `web`.
    pub role: String,
    /// Cluster, e.g. `prn1`.
    pub cluster: String,
    /// The service name, absolute inside an internal zone, e.g. `web.prn1.internal.example`.
    pub name: String,
    /// The SRV owner. Default `_<role>._tcp.<name>`.
    #[serde(default)]
    pub srv: Option<String>,
}

/// Guards (docs/internal-zones.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// A robot record whose registration vanished stays this long, ms. Default 30000.
    #[serde(default = "default_grace_ms")]
    pub grace_ms: u64,
    /// A snapshot that would drop more than this share of the robot records at once is held
    /// back (`--force` publishes it). Default 0.3.
    #[serde(default = "default_max_drop_share")]
    pub max_drop_share: f64,
    /// ... and only when at least this many records would go (a share of a handful of hosts
    /// is noise). Default 5.
    #[serde(default = "default_min_dropped")]
    pub min_dropped: usize,
    /// Most robot records one name and type takes (a service name behind which every host of
    /// a role runs); the rest are left out and reported (`rrset_too_large`). 1 to 4096.
    /// Default 512 (512 SRV records with their targets fill most of a 64 KiB answer).
    #[serde(default = "default_max_rrset_records")]
    pub max_rrset_records: usize,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            grace_ms: default_grace_ms(),
            max_drop_share: default_max_drop_share(),
            min_dropped: default_min_dropped(),
            max_rrset_records: default_max_rrset_records(),
        }
    }
}

fn default_ttl() -> u32 {
    60
}
fn default_negative_ttl() -> u32 {
    30
}
fn default_grace_ms() -> u64 {
    30_000
}
fn default_max_drop_share() -> f64 {
    0.3
}
fn default_min_dropped() -> usize {
    5
}
fn default_max_rrset_records() -> usize {
    crate::reconcile::MAX_ROBOT_RRSET
}

/// Normalises a DNS name for comparison: lowercase, no final dot.
pub fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `name` is `origin` or below it (both normalised).
pub fn within(name: &str, origin: &str) -> bool {
    // Without building ".origin": the presenter asks this for every host of every change.
    name == origin
        || name
            .strip_suffix(origin)
            .is_some_and(|head| head.ends_with('.'))
}

/// The largest TTL on the wire (RFC 2181: 2^31 - 1).
const MAX_TTL: u32 = i32::MAX as u32;

/// A domain name, by the one rule of internal zones ([`geodns_register::check_name`]).
fn host_name(name: &str) -> Result<(), String> {
    geodns_register::check_name(name)
}

impl Config {
    /// Reads and checks the file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (file, mut cfg): (String, Config) = config_file::load(path)?;
        let bad = |key: String, problem: String| ConfigError::invalid(&file, key, problem);
        cfg.zookeeper
            .resolve(path.parent().unwrap_or(Path::new("")));
        cfg.zookeeper
            .check(geodns_snapshot::access::Role::Presenter)
            .map_err(|(key, e)| bad(format!("zookeeper.{key}"), e))?;
        if cfg.zones.is_empty() {
            return Err(bad("zones".into(), "no internal zone".into()));
        }
        for (i, z) in cfg.zones.iter().enumerate() {
            let names = [
                ("origin", &z.origin),
                ("primary", &z.primary),
                ("hostmaster", &z.hostmaster),
            ];
            for (key, name) in names.into_iter().chain(z.ns.iter().map(|n| ("ns", n))) {
                host_name(name).map_err(|e| bad(format!("zones[{i}].{key}"), e))?;
            }
            for (key, ttl) in [("ttl", z.ttl), ("negative_ttl", z.negative_ttl)] {
                if ttl > MAX_TTL {
                    return Err(bad(
                        format!("zones[{i}].{key}"),
                        format!("{ttl} is more than 2^31-1 (RFC 2181)"),
                    ));
                }
            }
            if z.ns.is_empty() {
                return Err(bad(format!("zones[{i}].ns"), "at least one NS".into()));
            }
            if cfg.zones[..i]
                .iter()
                .any(|o| norm(&o.origin) == norm(&z.origin))
            {
                return Err(bad(format!("zones[{i}].origin"), "listed twice".into()));
            }
        }
        for (i, r) in cfg.rules.iter().enumerate() {
            host_name(&r.name).map_err(|e| bad(format!("rules[{i}].name"), e))?;
            if let Some(srv) = &r.srv {
                host_name(srv).map_err(|e| bad(format!("rules[{i}].srv"), e))?;
            }
            let name = norm(&r.name);
            if !cfg.zones.iter().any(|z| within(&name, &norm(&z.origin))) {
                return Err(bad(
                    format!("rules[{i}].name"),
                    format!("{name} is in no internal zone"),
                ));
            }
        }
        for (i, n) in cfg.robot_names.iter().enumerate() {
            host_name(n).map_err(|e| bad(format!("robot_names[{i}]"), e))?;
            if !cfg.zones.iter().any(|z| within(&norm(n), &norm(&z.origin))) {
                return Err(bad(
                    format!("robot_names[{i}]"),
                    format!("{n} is in no internal zone"),
                ));
            }
        }
        if !(1..=4096).contains(&cfg.guard.max_rrset_records) {
            return Err(bad(
                "guard.max_rrset_records".into(),
                format!("{} is not from 1 to 4096", cfg.guard.max_rrset_records),
            ));
        }
        if !(1..=geodns_snapshot::follower::MAX_CATCH_UP).contains(&cfg.full_every) {
            return Err(bad(
                "full_every".into(),
                format!(
                    "{} is not from 1 to {} (the most deltas a server fetches to catch up)",
                    cfg.full_every,
                    geodns_snapshot::follower::MAX_CATCH_UP
                ),
            ));
        }
        if cfg.publish_interval_ms > 60_000 {
            return Err(bad(
                "publish_interval_ms".into(),
                format!("{} is more than 60000 ms", cfg.publish_interval_ms),
            ));
        }
        let share = cfg.guard.max_drop_share;
        if !(0.0..=1.0).contains(&share) {
            return Err(bad(
                "guard.max_drop_share".into(),
                format!("{share} is not a share in [0, 1]"),
            ));
        }
        // Only resolved here: `geodns publish` reads this config as a human, who must not be
        // able to read the presenter's key; `geodns presenter` reads it at start.
        if let Some(key) = &mut cfg.signing_key {
            if key.is_relative() {
                *key = path.parent().unwrap_or(Path::new("")).join(&*key);
            }
        }
        Ok(cfg)
    }

    /// The key snapshots are signed with, if one is configured (checked when the config was
    /// loaded).
    pub fn signing_key(&self) -> Result<Option<geodns_snapshot::SigningKey>, String> {
        self.signing_key
            .as_deref()
            .map(geodns_snapshot::SigningKey::read)
            .transpose()
    }
}
