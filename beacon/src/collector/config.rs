//! The collector's configuration: one TOML file, typed, validated, every key documented in
//! `docs/beacon.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use geodns_daemon::config_file;
use ipnet::IpNet;
use serde::Deserialize;

/// Why a collector config cannot be used (the one error type of every geodns config file).
pub use geodns_daemon::ConfigError;

/// The collector's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Written into every row's `collector` column and used as the log file prefix.
    pub collector_id: String,
    /// HTTP listen address. Port 0 picks one (logged as `listening http bound=...`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The PoP ids clients may report on.
    pub pops: Vec<geomap::PopId>,
    /// Probe subzone the snippet fetches from: `<probe-id>.<pop>.<probe_zone>`.
    pub probe_zone: String,
    /// URL scheme the snippet uses for probe fetches. Default `https`.
    #[serde(default = "default_scheme")]
    pub probe_scheme: String,
    /// Peers whose `X-Forwarded-For` is believed (load balancers in front of the collector).
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Largest request body accepted, bytes. Default 16384.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Most results in one request (over all reports in a batch). Default 64.
    #[serde(default = "default_max_results")]
    pub max_results: usize,
    /// Largest believable RTT, ms; larger ones are refused. Default 30000.
    #[serde(default = "default_max_rtt")]
    pub max_rtt_ms: f64,
    /// Sustained requests per second allowed per client address. Default 2.
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
    /// Burst of requests allowed per client address. Default 20.
    #[serde(default = "default_burst")]
    pub rate_burst: u32,
    /// Connections served at once; one more gets a 503 and is closed. Keep it below the
    /// process's file-descriptor limit so `/healthz` and the log files always have one.
    /// Default 1024.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time for a request's headers to arrive, ms, counted from when the server starts waiting
    /// for them, so it also closes idle kept-alive connections. Default 10000.
    #[serde(default = "default_timeout")]
    pub header_timeout_ms: u64,
    /// Time for a report's body to arrive once its headers have, ms. Default 10000.
    #[serde(default = "default_timeout")]
    pub body_timeout_ms: u64,
    /// The log writer.
    pub log: LogSettings,
}

/// Where and how `rtt_report` rows are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Log root (`<dir>/rtt_report/date=.../<collector_id>-<seq>.parquet`).
    pub dir: PathBuf,
    /// Roll a file after this many rows. Default 100000.
    #[serde(default = "default_rows")]
    pub max_rows: usize,
    /// Roll a file this long after its first row, ms: the most a crash can lose. Default 10000.
    #[serde(default = "default_age")]
    pub max_age_ms: u64,
    /// Rows that may wait for the writer; beyond it reports get 503. Default 100000.
    #[serde(default = "default_rows")]
    pub queue_rows: usize,
    /// Bytes kept in reserve on the log's file system, freed to write accepted rows when the
    /// disk fills (0: none). Default: 16 MiB, or an eighth of the file system if smaller.
    #[serde(default)]
    pub reserve_bytes: Option<u64>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8053))
}
fn default_scheme() -> String {
    "https".into()
}
fn default_max_body() -> usize {
    16 * 1024
}
fn default_max_results() -> usize {
    64
}
fn default_max_rtt() -> f64 {
    30_000.0
}
fn default_rate() -> u32 {
    2
}
fn default_burst() -> u32 {
    20
}
fn default_max_connections() -> usize {
    1024
}
fn default_timeout() -> u64 {
    10_000
}
fn default_rows() -> usize {
    100_000
}
fn default_age() -> u64 {
    10_000
}

impl CollectorConfig {
    /// Parses and validates config text; `base` resolves relative paths.
    pub fn from_str(file: &str, text: &str, base: &Path) -> Result<CollectorConfig, ConfigError> {
        let mut c: CollectorConfig = config_file::parse(file, text)?;
        let invalid = |key: &str, problem: String| ConfigError::invalid(file, key, problem);
        c.log.dir = base.join(&c.log.dir);
        if c.pops.is_empty() {
            return Err(invalid("pops", "no PoP listed".into()));
        }
        // Each id is checked as it is parsed (geomap::PopId, the one rule for PoP ids).
        for (i, p) in c.pops.iter().enumerate() {
            if c.pops[..i].contains(p) {
                return Err(invalid(
                    &format!("pops[{i}]"),
                    format!("'{p}' is listed twice"),
                ));
            }
        }
        if !matches!(c.probe_scheme.as_str(), "http" | "https") {
            return Err(invalid(
                "probe_scheme",
                format!("{:?}: want http or https", c.probe_scheme),
            ));
        }
        if !(c.max_rtt_ms > 0.0 && c.max_rtt_ms.is_finite()) {
            return Err(invalid(
                "max_rtt_ms",
                format!("{} is not a positive time", c.max_rtt_ms),
            ));
        }
        for (key, v) in [
            ("max_body_bytes", c.max_body_bytes),
            ("max_results", c.max_results),
            ("max_connections", c.max_connections),
            ("header_timeout_ms", c.header_timeout_ms as usize),
            ("body_timeout_ms", c.body_timeout_ms as usize),
            ("log.max_rows", c.log.max_rows),
            ("log.queue_rows", c.log.queue_rows),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be positive".into()));
            }
        }
        if c.rate_per_second == 0 || c.rate_burst == 0 {
            return Err(invalid(
                "rate_per_second",
                "rate_per_second and rate_burst must be positive".into(),
            ));
        }
        Ok(c)
    }

    /// Reads and validates a config file.
    pub fn read(path: &Path) -> Result<CollectorConfig, ConfigError> {
        let (file, text) = config_file::read(path)?;
        CollectorConfig::from_str(&file, &text, path.parent().unwrap_or(Path::new("")))
    }
}
