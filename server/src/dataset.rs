//! The dataset: everything the query path reads, loaded and verified as one unit.
//!
//! [`Dataset::load`] is the single loader behind `geodns check` and `geodns serve` (and every
//! reload): config, zones, map and GeoIP database are read and cross-checked, and the lookup
//! table is built, all before anything serves from it. [`crate::served`] pairs a dataset with
//! the health state and the internal zones.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use geomap::geoip::GeoIp;
use geomap::{AnswerTable, MapMeta, PopIndex, PopTable};
use sha2::{Digest, Sha256};

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use geodns_zone::{Zone, ZoneError};

/// Why a dataset cannot be loaded. Each variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The config file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A zone.
    #[error(transparent)]
    Zone(#[from] ZoneError),
    /// The map file.
    #[error("{file}: {source}")]
    Map {
        /// The map file.
        file: String,
        /// What is wrong with it.
        source: geomap::FormatError,
    },
    /// The map does not fit the config.
    #[error("{file}: {problem}")]
    MapMismatch {
        /// The map file.
        file: String,
        /// What does not fit.
        problem: String,
    },
    /// The GeoIP database.
    #[error("{file}: {source}")]
    GeoIp {
        /// The database file.
        file: String,
        /// What is wrong with it.
        source: geomap::geoip::GeoIpError,
    },
}

/// What identifies a version of a file: modification time, size, inode (`None`: missing).
pub type FileStamp = Option<(SystemTime, u64, u64)>;

/// The current stamp of a file.
pub fn file_stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// A PoP as the query path needs it.
#[derive(Debug)]
pub struct PopAnswer {
    /// The id.
    pub id: geomap::PopId,
    /// A RDATA of each IPv4 VIP.
    pub a: Vec<[u8; 4]>,
    /// AAAA RDATA of each IPv6 VIP.
    pub aaaa: Vec<[u8; 16]>,
    /// A RDATA for this PoP's probe names.
    pub probe_a: Vec<[u8; 4]>,
    /// AAAA RDATA for this PoP's probe names.
    pub probe_aaaa: Vec<[u8; 16]>,
    /// Stable metrics slot.
    pub metric_slot: usize,
    /// The id, shared with probe log rows (no allocation per row).
    pub id_shared: Arc<str>,
}

/// Everything loaded from config, zones, map and GeoIP.
pub struct Dataset {
    /// The validated config.
    pub config: Config,
    /// Zones, longest origin first (so the most specific zone matches first).
    pub zones: Vec<Zone>,
    /// PoPs in config order; map rows refer to these indices.
    pub pops: Vec<PopAnswer>,
    /// The same PoPs as a geomap table (with coordinates), for GeoIP ranking.
    pub pop_table: PopTable,
    /// The lookup table.
    pub table: AnswerTable,
    /// GeoIP database, if configured.
    pub geoip: Option<GeoIp>,
    /// Default order, as PoP indices.
    pub default_order: Vec<PopIndex>,
    /// The map's metadata.
    pub map_meta: MapMeta,
    /// Map rows loaded.
    pub map_rows: usize,
    /// First 12 hex digits of the config file's SHA-256.
    pub config_version: String,
    /// Settings of the config file that this running process cannot apply without a restart
    /// (see [`Config::restart_only_changes`]); while any are listed, the file's version is not
    /// the one in force and the status record says so instead of claiming it.
    pub restart_needed: Vec<&'static str>,
    /// When this dataset was loaded.
    pub loaded_at: SystemTime,
    /// Files whose change triggers a reload, each with its stamp taken *before* it was read, so
    /// a change made while (or right after) loading is never mistaken for the loaded version.
    pub watched: Vec<(PathBuf, FileStamp)>,
    /// The status TXT RDATA, rendered once per load.
    pub status_txt: Vec<u8>,
    /// `server_id`, shared with probe log rows.
    pub server_id: Arc<str>,
    /// The secrets DNS cookies are made and checked with (`[cookies]`).
    pub cookies: crate::cookie::Secrets,
}

/// The files a config names: map, zone files, GeoIP database.
fn config_sources(config: &Config) -> impl Iterator<Item = &PathBuf> {
    std::iter::once(&config.map)
        .chain(config.zones.iter().filter_map(|z| z.file.as_ref()))
        .chain(config.geoip.as_ref())
}

impl Dataset {
    /// Loads and cross-checks config, zones, map and GeoIP; builds the lookup table.
    pub fn load(config_path: &Path, metrics: &Metrics) -> Result<Dataset, LoadError> {
        // Read once: the version hash and the parsed config come from the same bytes.
        let config_stamp = file_stamp(config_path);
        let file = config_path.display().to_string();
        let text = std::fs::read_to_string(config_path).map_err(|source| {
            LoadError::Config(ConfigError::Io {
                file: file.clone(),
                source,
            })
        })?;
        let base = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let config = Config::from_str(&file, &text, &base)?;
        let mut watched = vec![(config_path.to_path_buf(), config_stamp)];
        for path in config_sources(&config) {
            watched.push((path.clone(), file_stamp(path)));
        }
        let config_version: String = Sha256::digest(text.as_bytes())
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();

        let mut zones = config
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| Zone::build(z, i))
            .collect::<Result<Vec<_>, _>>()?;
        // Longest origin first; equal origins side by side (whatever lies between them in the
        // config), so a zone configured twice is always found.
        zones.sort_by(|a, b| {
            b.origin
                .len()
                .cmp(&a.origin.len())
                .then_with(|| a.origin.cmp(&b.origin))
        });
        for w in zones.windows(2) {
            if w[0].origin == w[1].origin {
                return Err(LoadError::Config(ConfigError::Invalid {
                    file: config_path.display().to_string(),
                    key: "zones".into(),
                    problem: format!("zone '{}' is configured twice", w[0].origin_text),
                }));
            }
        }

        let pops: Vec<PopAnswer> = config
            .pops
            .iter()
            .map(|(id, p)| PopAnswer {
                id: id.clone(),
                a: p.vip4.iter().map(|v| v.octets()).collect(),
                aaaa: p.vip6.iter().map(|v| v.octets()).collect(),
                probe_a: p
                    .probe4
                    .as_ref()
                    .unwrap_or(&p.vip4)
                    .iter()
                    .map(|v| v.octets())
                    .collect(),
                probe_aaaa: p
                    .probe6
                    .as_ref()
                    .unwrap_or(&p.vip6)
                    .iter()
                    .map(|v| v.octets())
                    .collect(),
                metric_slot: metrics.pop_slot(id.as_str()),
                id_shared: id.as_str().into(),
            })
            .collect();
        let pop_table = config.pop_table();
        let index_of = |id: &str| pop_table.index(id).expect("validated against config");
        let default_order: Vec<PopIndex> = config
            .default_order
            .iter()
            .map(|p| index_of(p.as_str()))
            .collect();

        let map_file = config.map.display().to_string();
        let mut map = geomap::read_map(&config.map).map_err(|source| LoadError::Map {
            file: map_file.clone(),
            source,
        })?;
        // Re-index the map's PoPs into config order; a PoP the config does not define cannot be
        // answered, so such a map is refused rather than half-served.
        let mut remap = Vec::with_capacity(map.meta.pops.len());
        let mut unknown = Vec::new();
        for p in map.meta.pops.iter() {
            match pop_table.index(p.id.as_str()) {
                Some(i) => remap.push(i),
                None => {
                    unknown.push(p.id.to_string());
                    remap.push(0);
                }
            }
        }
        if !unknown.is_empty() {
            return Err(LoadError::MapMismatch {
                file: map_file,
                problem: format!(
                    "map ranks PoP(s) {} that the config does not define",
                    unknown.join(", ")
                ),
            });
        }
        for row in &mut map.rows {
            for p in &mut row.pops {
                *p = remap[*p as usize];
            }
        }
        let geoip = match &config.geoip {
            Some(path) => Some(GeoIp::open(path).map_err(|source| LoadError::GeoIp {
                file: path.display().to_string(),
                source,
            })?),
            None => None,
        };
        // Without GeoIP, space the map does not cover answers the default order, folded into the
        // table so it merges with equal rows (wider scopes). With GeoIP it stays unmapped.
        let fill = geoip.is_none().then_some(&default_order[..]);
        let table = AnswerTable::build(&map, fill);

        let map_rows = map.rows.len();
        let map_meta = MapMeta {
            pops: PopTable::default(),
            ..map.meta
        };
        let server_id: Arc<str> = config.server_id.as_str().into();
        let cookies = crate::cookie::Secrets::new(&config.cookies);
        let mut data = Dataset {
            config,
            zones,
            pops,
            pop_table,
            table,
            geoip,
            default_order,
            map_meta,
            map_rows,
            config_version,
            restart_needed: Vec::new(),
            loaded_at: SystemTime::now(),
            watched,
            status_txt: Vec::new(),
            server_id,
            cookies,
        };
        data.status_txt = data.status_rdata();
        Ok(data)
    }

    /// The status TXT RDATA: character-strings `key=value` that monitoring compares across
    /// servers (map generation and age, config version, zone serials, server id).
    fn status_rdata(&self) -> Vec<u8> {
        let mut fields = vec![
            format!("server={}", self.config.server_id),
            format!("map-generation={}", self.map_meta.generation),
            format!("map-created={}", self.map_meta.created_at),
            format!(
                "loaded={}",
                humantime::format_rfc3339_seconds(self.loaded_at)
            ),
        ];
        if self.restart_needed.is_empty() {
            fields.push(format!("config={}", self.config_version));
        } else {
            fields.push(format!("config-file={}", self.config_version));
            fields.push(format!("restart-needed={}", self.restart_needed.join(",")));
        }
        fields.extend(self.zones.iter().map(|z| {
            format!(
                "serial:{}={}",
                z.origin_text.trim_end_matches('.'),
                z.serial
            )
        }));
        let mut out = Vec::new();
        for f in fields {
            let b = f.as_bytes();
            let b = &b[..b.len().min(255)];
            out.push(b.len() as u8);
            out.extend_from_slice(b);
        }
        out
    }

    /// Makes a reloaded dataset describe what is in force: the running process's restart-only
    /// settings replace the file's, and the ones that differ are listed in `restart_needed`.
    pub fn keep_running(mut self, running: &Config) -> Dataset {
        self.restart_needed = self.config.restart_only_changes(running);
        self.config.listen = running.listen.clone();
        self.config.tcp = running.tcp.clone();
        self.config.probe_log = running.probe_log.clone();
        self.status_txt = self.status_rdata();
        self
    }

    /// The files a dataset is loaded from, by the config at `config_path`: the config itself,
    /// then the map, zone files and GeoIP database it names (when it parses). A reload that
    /// fails watches these too, so creating a missing file retries it.
    pub fn sources(config_path: &Path) -> Vec<PathBuf> {
        let mut out = vec![config_path.to_path_buf()];
        let base = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let file = config_path.display().to_string();
        if let Ok(text) = std::fs::read_to_string(config_path) {
            if let Ok(config) = Config::from_str(&file, &text, &base) {
                out.extend(config_sources(&config).cloned());
            }
        }
        out
    }

    /// Unix time the map was created, if its metadata says.
    pub fn map_created_unix(&self) -> Option<u64> {
        humantime::parse_rfc3339(&self.map_meta.created_at)
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    }
}
