//! Internal zones: served from the snapshot the presenter publishes in ZooKeeper.
//!
//! The server follows the snapshot (`geodns_snapshot::Follower`), compiles each zone with the
//! same loader as configured zones ([`Zone::from_text`]), and swaps the result into the serving
//! state with the same atomic swap as a map reload. A snapshot that does not compile is refused
//! and the one in force keeps serving; so does the last good snapshot on disk while ZooKeeper is
//! unreachable.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use geodns_snapshot::{Follower, FollowerConfig, Layout, Snapshot as Published};

use crate::config;
use crate::dataset::Snapshot;
use crate::metrics::Metrics;
use geodns_zone::Zone;

/// The internal zones in force.
#[derive(Default)]
pub struct Internal {
    /// The snapshot's version (`None`: no snapshot yet).
    pub version: Option<u64>,
    /// When the snapshot was made, RFC 3339.
    pub created_at: Option<String>,
    /// The zones, longest origin first.
    pub zones: Vec<Zone>,
}

impl Internal {
    /// Compiles a published snapshot. Every zone must compile, and none may have the origin of
    /// a configured zone or of another internal zone.
    pub fn build(snap: &Published, configured: &[Zone]) -> Result<Internal, String> {
        let mut zones = Vec::with_capacity(snap.zones.len());
        for z in &snap.zones {
            let source = format!("snapshot {} zone {}", snap.version, z.origin);
            let zone = Zone::from_text(&z.origin, &z.text, &source).map_err(|e| e.to_string())?;
            if configured.iter().any(|c| c.origin == zone.origin) {
                return Err(format!(
                    "snapshot {}: zone {} is also configured locally",
                    snap.version, zone.origin_text
                ));
            }
            zones.push(zone);
        }
        zones.sort_by(|a, b| {
            b.origin
                .len()
                .cmp(&a.origin.len())
                .then_with(|| a.origin.cmp(&b.origin))
        });
        if let Some(w) = zones.windows(2).find(|w| w[0].origin == w[1].origin) {
            return Err(format!(
                "snapshot {}: zone {} appears twice",
                snap.version, w[0].origin_text
            ));
        }
        Ok(Internal {
            version: Some(snap.version),
            created_at: Some(snap.created_at.clone()),
            zones,
        })
    }

    /// Fields for the status record: which snapshot this server has.
    pub fn status_fields(&self) -> Vec<String> {
        match (&self.version, &self.created_at) {
            (Some(v), Some(t)) => vec![
                format!("internal-snapshot={v}"),
                format!("internal-created={t}"),
            ],
            _ => Vec::new(),
        }
    }
}

fn follower_config(zk: &config::ZooKeeper) -> FollowerConfig {
    FollowerConfig {
        connect: zk.connect.clone(),
        layout: Layout::new(&zk.root).expect("validated with the config"),
        cache: zk.cache.clone(),
        jitter: Duration::from_millis(zk.jitter_ms),
        session_timeout: Duration::from_millis(zk.session_timeout_ms),
        recheck: Duration::from_millis(zk.recheck_ms.max(100)),
    }
}

/// The internal zones to start with: the last good snapshot on disk, if it compiles.
pub fn from_cache(zk: &config::ZooKeeper, configured: &[Zone], metrics: &Metrics) -> Internal {
    match geodns_snapshot::load_cache_marked(&zk.cache) {
        Ok(Some((snap, newer))) => match Internal::build(&snap, configured) {
            Ok(internal) => {
                match newer {
                    None => {
                        tracing::info!(version = snap.version, file = %zk.cache.display(), "internal zones from the last good snapshot on disk")
                    }
                    Some(newer) => tracing::error!(
                        version = snap.version,
                        served_before = newer,
                        file = %zk.cache.display(),
                        "internal zones from an OLDER snapshot on disk than this server served before (version {newer} could not be saved: a full disk?); ZooKeeper brings the current one when it answers"
                    ),
                }
                metrics.set_internal_snapshot(snap.version, unix(&snap.created_at));
                internal
            }
            Err(e) => {
                tracing::error!(error = %e, file = %zk.cache.display(), "the snapshot on disk does not compile; starting without internal zones");
                Internal::default()
            }
        },
        Ok(None) => Internal::default(),
        Err(e) => {
            tracing::error!(error = %e, "the snapshot on disk is damaged; starting without internal zones");
            Internal::default()
        }
    }
}

fn unix(rfc3339: &str) -> u64 {
    humantime::parse_rfc3339(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Follows the published snapshot until the process ends, swapping each good one in.
pub async fn follow(zk: config::ZooKeeper, state: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>) {
    let have = state.load().internal.version;
    let apply_state = state.clone();
    let apply_metrics = metrics.clone();
    let apply: geodns_snapshot::Apply = Arc::new(move |snap: &Published| {
        let started = std::time::Instant::now();
        let current = apply_state.load();
        let internal = match Internal::build(snap, &current.data.zones) {
            Ok(i) => Arc::new(i),
            Err(e) => {
                apply_metrics.internal_snapshot_refused();
                return Err(e);
            }
        };
        // rcu: a reload or health change racing with this swap is never lost.
        let old = apply_state.rcu(|cur| cur.with_internal(internal.clone()));
        // The previous zones are freed once the last query holding them finishes; hand the
        // freed pages back to the OS, or every load leaves the process a snapshot bigger.
        drop(old);
        drop(current);
        crate::server::release_free_memory();
        apply_metrics.set_internal_snapshot(snap.version, unix(&snap.created_at));
        tracing::info!(
            version = snap.version,
            zones = internal.zones.len(),
            ms = started.elapsed().as_millis() as u64,
            "internal snapshot in force"
        );
        Ok(())
    });
    let save_metrics = metrics.clone();
    Follower::new(follower_config(&zk), apply)
        .on_save_failed(Arc::new(move || {
            save_metrics.internal_snapshot_save_failed()
        }))
        .run(have)
        .await;
}

/// Follows the PoP health `geodns announce` publishes, draining PoPs that are not up.
pub async fn follow_health(zk: config::ZooKeeper, state: Arc<ArcSwap<Snapshot>>) {
    let layout = Layout::new(&zk.root).expect("validated with the config");
    let apply: geodns_snapshot::pophealth::ApplyHealth = Arc::new(move |map| {
        let not_up: Vec<String> = map
            .iter()
            .filter(|(_, s)| s.state != "up")
            .map(|(p, s)| format!("{p}:{}", s.state))
            .collect();
        tracing::info!(not_up = ?not_up, "published PoP health changed");
        let map = Arc::new(map);
        state.rcu(|cur| cur.with_published(map.clone()));
    });
    geodns_snapshot::pophealth::follow(
        zk.connect,
        layout,
        Duration::from_millis(zk.session_timeout_ms),
        Duration::from_millis(zk.recheck_ms.max(100)),
        apply,
    )
    .await;
}
