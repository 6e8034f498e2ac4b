//! How a zone is written in the server's config (`[[zones]]`): its origin, file, inline
//! records, geo names, status name and probe subzone. The types live with the compiler that
//! reads them, so everything that compiles a zone (the server, the presenter's checks) takes
//! the same description.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// One authoritative zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// The zone apex, e.g. `example.com`.
    pub origin: String,
    /// Optional RFC 1035 zone file with the zone's static records.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Extra records in zone-file syntax, relative to the origin, e.g. `"www 300 IN A 192.0.2.1"`.
    #[serde(default)]
    pub records: Vec<String>,
    /// Names answered from the map: relative name (or `@`) -> settings.
    #[serde(default)]
    pub geo: BTreeMap<String, GeoName>,
    /// Owner name (relative) of the status TXT record; empty disables it. Default `_status`.
    #[serde(default = "default_status_name")]
    pub status_name: String,
    /// The probe subzone: `<probe-id>.<pop>.<label>.<origin>` answers that PoP's probe
    /// addresses and is logged when `probe_log` is set.
    #[serde(default)]
    pub probe: Option<ProbeZone>,
}

/// The probe subzone of a zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeZone {
    /// The subzone's label(s) under the origin. Default `probe`.
    #[serde(default = "default_probe_label")]
    pub label: String,
    /// TTL of probe answers, seconds. Default 5 (each name is fetched once).
    #[serde(default = "default_probe_ttl")]
    pub ttl: u32,
}

/// A name answered with the VIPs of the best PoP for the client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoName {
    /// TTL of the answers, seconds. Default 60.
    #[serde(default = "default_geo_ttl")]
    pub ttl: u32,
}

fn default_status_name() -> String {
    "_status".to_owned()
}
fn default_geo_ttl() -> u32 {
    60
}
fn default_probe_label() -> String {
    "probe".to_owned()
}
fn default_probe_ttl() -> u32 {
    5
}
