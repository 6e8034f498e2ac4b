//! What a server follows in ZooKeeper: the internal-zone snapshot the presenter publishes
//! (`geodns_snapshot::Follower`: disk cache, jitter, verify) and the PoP health `geodns
//! announce` publishes. Each good change is swapped into the served state like a map reload; a
//! snapshot that is not signed by a trusted key, not newer than the one in force, does not
//! compile or holds a zone out of scope is refused and the one in force keeps serving, as does
//! the last good snapshot on disk while ZooKeeper is unreachable.

use std::sync::Arc;
use std::time::Duration;

use geodns_snapshot::{Follower, FollowerConfig, Update};
use geodns_zone::Zone;

use crate::config;
use crate::internal::Internal;
use crate::metrics::Metrics;
use crate::served::State;

fn follower_config(zk: &config::ZooKeeper) -> FollowerConfig {
    FollowerConfig {
        zk: zk.zk.clone(),
        cache: zk.cache.clone(),
        jitter: Duration::from_millis(zk.jitter_ms),
        recheck: Duration::from_millis(zk.recheck_ms.max(100)),
        trust: zk.trust(),
        peers: zk.peers(),
    }
}

/// The internal zones to start with: the last good snapshot on disk, if it compiles.
pub fn from_cache(zk: &config::ZooKeeper, configured: &[Zone], metrics: &Metrics) -> Internal {
    match geodns_snapshot::load_cache_marked(&zk.cache, &zk.trust()) {
        Ok(Some((snap, newer))) => match Internal::build(&snap, configured, &zk.zones) {
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
            tracing::error!(error = %e, "the snapshot on disk is damaged or not trusted; starting without internal zones");
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

/// The task that follows the published snapshot until the process ends, swapping each good
/// one in, once `[zookeeper] peers_listen` (if set) is bound: a port that cannot be bound is
/// an error at start.
pub async fn follow(
    zk: config::ZooKeeper,
    state: Arc<State>,
    metrics: Arc<Metrics>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let have = state.load().internal.version;
    let apply_state = state.clone();
    let apply_metrics = metrics.clone();
    let allowed = zk.zones.clone();
    let apply: geodns_snapshot::Apply = Arc::new(move |update: Update<'_>| {
        let started = std::time::Instant::now();
        let current = apply_state.load();
        let configured = &current.data.zones;
        let internal = match update {
            Update::Whole(snap, parts) => Internal::whole(snap, parts, configured, &allowed)?,
            Update::Deltas(deltas, parts) => {
                let from = deltas.first().map(|d| d.from);
                if current.internal.version != from {
                    return Err(format!(
                        "deltas from version {from:?}, this server holds {:?}",
                        current.internal.version
                    ));
                }
                current
                    .internal
                    .patched(deltas, parts, configured, &allowed)?
            }
        };
        let internal = Arc::new(internal);
        // The zones in force are freed by the swap once no query holds them: not here.
        drop(current);
        apply_state.swap_internal(internal.clone());
        let version = internal.version.unwrap_or_default();
        let created = internal.created_at.as_deref().map_or(0, unix);
        apply_metrics.set_internal_snapshot(version, created);
        apply_metrics.set_internal_chain(internal.chain);
        tracing::info!(
            version,
            zones = internal.zones.len(),
            deltas = internal.chain,
            us = started.elapsed().as_micros() as u64,
            "internal snapshot in force"
        );
        Ok(())
    });
    let (save_metrics, refused_metrics, taken_metrics) =
        (metrics.clone(), metrics.clone(), metrics.clone());
    if !zk.trust().checks() {
        tracing::warn!("[zookeeper] trusted_keys is empty: snapshots are taken unsigned, so whoever can write to ZooKeeper can change this server's internal zones (docs/security.md)");
    }
    let follower = Follower::new(follower_config(&zk), apply)
        .on_save_failed(Arc::new(move || {
            save_metrics.internal_snapshot_save_failed()
        }))
        .on_refused(Arc::new(move |reason| {
            refused_metrics.internal_snapshot_refused(reason)
        }))
        .on_taken(Arc::new(move |how, deltas, bytes| {
            taken_metrics.internal_snapshot_taken(how, deltas, bytes)
        }))
        .serve_peers()
        .await?;
    Ok(follower.run(have))
}

/// Follows the PoP health `geodns announce` publishes, draining PoPs that are not up.
pub async fn follow_health(zk: config::ZooKeeper, state: Arc<State>) {
    let apply: geodns_snapshot::pophealth::ApplyHealth = Arc::new(move |map| {
        let not_up: Vec<String> = map
            .iter()
            .filter(|(_, s)| !s.is_up())
            .map(|(p, s)| format!("{p}:{}", s.label()))
            .collect();
        tracing::info!(not_up = ?not_up, "published PoP health changed");
        state.swap_published_health(Arc::new(map));
    });
    geodns_snapshot::pophealth::follow(zk.zk, Duration::from_millis(zk.recheck_ms.max(100)), apply)
        .await;
}
