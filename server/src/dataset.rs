//! The dataset: everything the query path reads, loaded and verified as one unit.
//!
//! [`Dataset::load`] is the single loader behind `geodns check` and `geodns serve` (and every
//! reload): config, zones, map and GeoIP database are read and cross-checked, and the lookup
//! table is built, all before anything serves from it. A [`Snapshot`] pairs a dataset with the
//! health state; the server swaps whole snapshots atomically, so a query sees one consistent
//! version of everything.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use geodns_beacon::{DnsProbeRow, LogWriter};
use geomap::geoip::GeoIp;
use geomap::{AnswerTable, MapMeta, PopIndex, PopTable};
use sha2::{Digest, Sha256};

use crate::config::{Config, ConfigError};
use crate::health::DownSet;
use crate::internal::Internal;
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
}

/// Where probe-zone queries are logged: the writer lives as long as the process, across
/// reloads.
pub type ProbeLogger = Arc<LogWriter<DnsProbeRow>>;

/// The share of a PoP's answers to shed at a reported load: none below the low watermark,
/// growing linearly to all at the high one (docs/spill.md).
pub fn shed(load: Option<f64>) -> f64 {
    const LOW: f64 = crate::spill::LOW_WATERMARK;
    const HIGH: f64 = crate::spill::HIGH_WATERMARK;
    load.map_or(0.0, |l| ((l - LOW) / (HIGH - LOW)).clamp(0.0, 1.0))
}

/// A dataset with the health state and internal zones in force: what one query reads.
pub struct Snapshot {
    /// The data.
    pub data: Arc<Dataset>,
    /// `down[i]`: PoP `i` is drained (by the health file or by the PoP's published health).
    pub down: Box<[bool]>,
    /// PoPs the health file drains.
    pub file_down: DownSet,
    /// PoP health published in ZooKeeper by `geodns announce`: id -> state and load.
    pub published: Arc<geodns_snapshot::pophealth::HealthMap>,
    /// The probe query log, if configured.
    pub probe_log: Option<ProbeLogger>,
    /// Internal zones from the published snapshot (empty without `[zookeeper]`).
    pub internal: Arc<Internal>,
    /// The status TXT RDATA: the dataset's fields and the internal snapshot's.
    pub status_txt: Vec<u8>,
    /// Where drained or full PoPs' users go (empty without capacities).
    pub spill: crate::spill::Plan,
    /// Per PoP, the addresses still answered where some of its VIPs are out (withdrawn or
    /// draining while others are up, as `geodns announce` published); `None`: all of them.
    pub live: Box<[Option<LiveAddrs>]>,
}

/// A PoP's addresses left once the VIPs whose routes are out are taken away.
#[derive(Debug, Clone, Default)]
pub struct LiveAddrs {
    /// IPv4 VIPs still announced.
    pub a: Vec<[u8; 4]>,
    /// IPv6 VIPs still announced.
    pub aaaa: Vec<[u8; 16]>,
    /// The VIP prefixes out, for the status record and the metrics.
    pub out: Vec<ipnet::IpNet>,
}

/// The addresses of `pop` not inside any of the prefixes `out`; `None` if none is inside.
fn live_addrs(pop: &PopAnswer, out: &[ipnet::IpNet]) -> Option<LiveAddrs> {
    let v4 = |a: &[u8; 4]| std::net::IpAddr::from(*a);
    let v6 = |a: &[u8; 16]| std::net::IpAddr::from(*a);
    let gone = |ip: std::net::IpAddr| out.iter().any(|n| n.contains(&ip));
    let hit: Vec<ipnet::IpNet> = out
        .iter()
        .copied()
        .filter(|n| {
            pop.a.iter().any(|a| n.contains(&v4(a))) || pop.aaaa.iter().any(|a| n.contains(&v6(a)))
        })
        .collect();
    if hit.is_empty() {
        return None;
    }
    Some(LiveAddrs {
        a: pop.a.iter().filter(|a| !gone(v4(a))).copied().collect(),
        aaaa: pop.aaaa.iter().filter(|a| !gone(v6(a))).copied().collect(),
        out: hit,
    })
}

impl Snapshot {
    /// The addresses answered for PoP `p`: its VIPs less those whose routes are out.
    #[inline]
    pub fn addresses(&self, p: usize) -> (&[[u8; 4]], &[[u8; 16]]) {
        match &self.live[p] {
            Some(l) => (&l.a, &l.aaaa),
            None => (&self.data.pops[p].a, &self.data.pops[p].aaaa),
        }
    }

    /// Pairs a dataset with a set of down PoPs (ids the dataset does not know are ignored), the
    /// probe log and the internal zones.
    pub fn new(
        data: Arc<Dataset>,
        down: &DownSet,
        probe_log: Option<ProbeLogger>,
        internal: Arc<Internal>,
    ) -> Snapshot {
        Snapshot::with_sources(data, down, Default::default(), probe_log, internal)
    }

    fn with_sources(
        data: Arc<Dataset>,
        file_down: &DownSet,
        published: Arc<geodns_snapshot::pophealth::HealthMap>,
        probe_log: Option<ProbeLogger>,
        internal: Arc<Internal>,
    ) -> Snapshot {
        // VIPs out, per PoP: their addresses leave the answers; a PoP with none left drains.
        let live: Box<[Option<LiveAddrs>]> = data
            .pops
            .iter()
            .map(|p| {
                let out: Vec<ipnet::IpNet> = published
                    .get(p.id.as_str())
                    .map(|st| st.vips_out.iter().filter_map(|v| v.parse().ok()).collect())
                    .unwrap_or_default();
                live_addrs(p, &out)
            })
            .collect();
        let why = |i: usize, id: &geomap::PopId| -> Option<String> {
            if file_down.contains(id) {
                return Some("file".into());
            }
            let st = published.get(id.as_str())?;
            if st.state != "up" {
                return Some(format!("bgp-{}", st.state));
            }
            if live[i]
                .as_ref()
                .is_some_and(|l| l.a.is_empty() && l.aaaa.is_empty())
            {
                return Some("vips-down".to_owned());
            }
            // Above the high watermark a PoP gets no answers at all.
            (shed(st.load) >= 1.0).then(|| "load".to_owned())
        };
        let down: Box<[bool]> = data
            .pops
            .iter()
            .enumerate()
            .map(|(i, p)| why(i, &p.id).is_some())
            .collect();
        let shed_of =
            |id: &geomap::PopId| published.get(id.as_str()).map_or(0.0, |st| shed(st.load));
        let sheds: Vec<f64> = data.pops.iter().map(|p| shed_of(&p.id)).collect();
        let capacity: Vec<Option<f64>> = data.config.pops.values().map(|p| p.capacity).collect();
        let shedding = sheds.iter().any(|s| *s > 0.0 && *s < 1.0);
        let spill = if capacity.iter().any(Option::is_some) || shedding {
            let lists: Vec<&[geomap::PopIndex]> = (0..data.table.list_count())
                .map(|i| data.table.list(i as geomap::ListId))
                .collect();
            crate::spill::plan_with_shed(
                &lists,
                data.table.list_stats(),
                &capacity,
                &down,
                &sheds,
                true,
            )
        } else {
            crate::spill::Plan::default()
        };
        let drained: Vec<String> = data
            .pops
            .iter()
            .enumerate()
            .filter_map(|(i, p)| why(i, &p.id).map(|w| format!("{}:{w}", p.id)))
            .collect();
        let vips_out: Vec<String> = data
            .pops
            .iter()
            .zip(live.iter())
            .filter_map(|(p, l)| Some((p, l.as_ref()?)))
            .flat_map(|(p, l)| l.out.iter().map(move |n| format!("{}:{n}", p.id)))
            .collect();
        let mut status_txt = data.status_txt.clone();
        let mut fields = internal.status_fields();
        if spill.guard {
            fields.push("spill=guard".to_owned());
        } else if spill.lists.iter().any(Option::is_some) {
            fields.push("spill=spread".to_owned());
        }
        fields.push(format!(
            "down={}",
            if drained.is_empty() {
                "none".to_owned()
            } else {
                drained.join(",")
            }
        ));
        if !vips_out.is_empty() {
            fields.push(format!("vips-out={}", vips_out.join(",")));
        }
        for f in fields {
            let b = &f.as_bytes()[..f.len().min(255)];
            status_txt.push(b.len() as u8);
            status_txt.extend_from_slice(b);
        }
        Snapshot {
            data,
            down,
            file_down: file_down.clone(),
            published,
            probe_log,
            internal,
            status_txt,
            spill,
            live,
        }
    }

    /// The PoPs the health file drains, by id (the published health is kept apart).
    pub fn down_set(&self) -> DownSet {
        self.file_down.clone()
    }

    /// The same data, log, internal zones and published health with another health file.
    pub fn with_health(&self, down: &DownSet) -> Snapshot {
        Snapshot::with_sources(
            self.data.clone(),
            down,
            self.published.clone(),
            self.probe_log.clone(),
            self.internal.clone(),
        )
    }

    /// The same with another published PoP health (from ZooKeeper).
    pub fn with_published(
        &self,
        published: Arc<geodns_snapshot::pophealth::HealthMap>,
    ) -> Snapshot {
        Snapshot::with_sources(
            self.data.clone(),
            &self.file_down,
            published,
            self.probe_log.clone(),
            self.internal.clone(),
        )
    }

    /// Another dataset (a reload), with this snapshot's log, internal zones and published health.
    pub fn with_data(&self, data: Arc<Dataset>, down: &DownSet) -> Snapshot {
        Snapshot::with_sources(
            data,
            down,
            self.published.clone(),
            self.probe_log.clone(),
            self.internal.clone(),
        )
    }

    /// The same data and health with other internal zones.
    pub fn with_internal(&self, internal: Arc<Internal>) -> Snapshot {
        Snapshot::with_sources(
            self.data.clone(),
            &self.file_down,
            self.published.clone(),
            self.probe_log.clone(),
            internal,
        )
    }

    /// Prometheus lines for the PoPs' state in this snapshot: `geodns_pop_up{pop, reason}`.
    pub fn health_metrics(&self) -> String {
        let mut s = format!(
            "# HELP geodns_build_info The running build and the data it serves (always 1).\n# TYPE geodns_build_info gauge\ngeodns_build_info{{version=\"{}\",map_generation=\"{}\",config=\"{}\",internal_snapshot=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION"),
            self.data.map_meta.generation.replace(['"', '\\', '\n'], "_"),
            self.data.config_version,
            self.internal.version.map_or("none".to_owned(), |v| v.to_string()),
        );
        s.push_str("# HELP geodns_pop_up 1 if the PoP is answered, 0 if drained (reason: file, bgp-draining, bgp-down, load).\n");
        s.push_str("# TYPE geodns_pop_up gauge\n");
        for (p, down) in self.data.pops.iter().zip(self.down.iter()) {
            let reason = if self.file_down.contains(&p.id) {
                "file".to_owned()
            } else {
                match self.published.get(p.id.as_str()) {
                    Some(st) if st.state != "up" => format!("bgp-{}", st.state),
                    _ if *down => "vips-down".to_owned(),
                    Some(st) if shed(st.load) >= 1.0 => "load".to_owned(),
                    _ => "none".to_owned(),
                }
            };
            s.push_str(&format!(
                "geodns_pop_up{{pop=\"{}\",reason=\"{reason}\"}} {}\n",
                p.id,
                u8::from(!*down)
            ));
        }
        // Each VIP whose route is out, by PoP (VIPs in the answers are not listed: a series per
        // VIP of every PoP would say nothing the PoP's own does not).
        let out: Vec<String> = self
            .data
            .pops
            .iter()
            .zip(self.live.iter())
            .filter_map(|(p, l)| Some((p, l.as_ref()?)))
            .flat_map(|(p, l)| {
                l.out
                    .iter()
                    .map(move |n| format!("geodns_vip_out{{pop=\"{}\",vip=\"{n}\"}} 1\n", p.id))
            })
            .collect();
        s.push_str("# HELP geodns_vip_out 1 for each VIP whose route is out (withdrawn, or draining while the PoP's others are up): its address is left out of the PoP's answers.\n");
        s.push_str("# TYPE geodns_vip_out gauge\n");
        for l in out {
            s.push_str(&l);
        }
        s
    }

    /// The zone that holds `qname` (lowercase wire form): the one with the longest origin among
    /// the configured and the internal zones; a configured zone wins a tie.
    pub fn zone_for(&self, qname: &[u8]) -> Option<&Zone> {
        let configured = self.data.zones.iter().find(|z| z.contains(qname));
        let internal = self.internal.zones.iter().find(|z| z.contains(qname));
        match (configured, internal) {
            (Some(c), Some(i)) if i.origin.len() > c.origin.len() => Some(i),
            (Some(c), _) => Some(c),
            (None, i) => i,
        }
    }
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
