//! Hot reload: on SIGHUP, or when a watched file changes, build a new dataset beside the live
//! one and swap it in whole; health-file changes swap only the health state.
//!
//! A file is "changed" when its (mtime, size, inode) differs from the last attempt, so a bad
//! file is reported once and retried only when it changes again. A failed load leaves the
//! serving snapshot untouched: the old data keeps answering.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::dataset::{file_stamp, Dataset, FileStamp, Snapshot};
use crate::health::{read_health, DownSet};
use crate::metrics::Metrics;

/// Reads the dataset's health file, if it has one. A missing file means every PoP is up.
pub fn load_health(data: &Dataset) -> Result<DownSet, crate::health::HealthError> {
    let Some(path) = &data.config.health_file else {
        return Ok(DownSet::new());
    };
    if !path.exists() {
        return Ok(DownSet::new());
    }
    read_health(path, &|p| data.config.pops.contains_key(p))
}

/// Watches for changes and SIGHUP until the process ends. `health_stamp` is the health file's
/// stamp taken before the serving health state was read.
pub async fn watch(
    config_path: PathBuf,
    state: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    health_stamp: FileStamp,
) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; file polling only");
            None
        }
    };
    let current = |data: &Dataset| -> Vec<FileStamp> {
        data.watched.iter().map(|(p, _)| file_stamp(p)).collect()
    };
    let stamps_at_load =
        |data: &Dataset| -> Vec<FileStamp> { data.watched.iter().map(|(_, s)| *s).collect() };
    let health_of = |data: &Dataset| data.config.health_file.as_deref().and_then(file_stamp);
    let mut data = state.load().data.clone();
    let mut stamps = stamps_at_load(&data);
    let mut health_stamp = health_stamp;
    loop {
        let interval = data.config.watch_interval_ms;
        let forced = tokio::select! {
            Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            _ = tokio::time::sleep(Duration::from_millis(if interval == 0 { 3_600_000 } else { interval })) => false,
        };
        let now = current(&data);
        if forced || (interval > 0 && now != stamps) {
            stamps = now;
            let path = config_path.clone();
            let m = metrics.clone();
            let started = std::time::Instant::now();
            let loaded = tokio::task::spawn_blocking(move || Dataset::load(&path, &m)).await;
            match loaded {
                Ok(Ok(new)) => {
                    let new = Arc::new(new);
                    let new_health_stamp = health_of(&new);
                    let down = match load_health(&new) {
                        Ok(d) => d,
                        Err(e) => {
                            tracing::error!(error = %e, "health file refused; keeping the current health state");
                            metrics.health_failure();
                            state.load().down_set()
                        }
                    };
                    tracing::info!(
                        map_generation = %new.map_meta.generation,
                        map_rows = new.map_rows,
                        config = %new.config_version,
                        forced,
                        ms = started.elapsed().as_millis() as u64,
                        "reloaded"
                    );
                    metrics.reload(true);
                    if let Some(t) = new.map_created_unix() {
                        metrics.set_map_created(t);
                    }
                    if new.config.probe_log != data.config.probe_log {
                        tracing::warn!(
                            "probe_log settings changed; they take effect at the next restart"
                        );
                    }
                    let log = state.load().probe_log.clone();
                    state.store(Arc::new(Snapshot::new(new.clone(), &down, log)));
                    data = new;
                    stamps = stamps_at_load(&data);
                    health_stamp = new_health_stamp;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reload refused; the previous data keeps serving");
                    metrics.reload(false);
                }
                Err(e) => {
                    tracing::error!(error = %e, "reload task failed; the previous data keeps serving");
                    metrics.reload(false);
                }
            }
            continue;
        }
        let h = health_of(&data);
        if interval > 0 && h != health_stamp {
            health_stamp = h;
            match load_health(&data) {
                Ok(down) => {
                    let ids: Vec<String> = down.iter().map(|p| p.to_string()).collect();
                    tracing::info!(down = ?ids, "health changed");
                    let next = state.load().with_health(&down);
                    state.store(Arc::new(next));
                }
                Err(e) => {
                    tracing::error!(error = %e, "health file refused; keeping the current health state");
                    metrics.health_failure();
                }
            }
        }
    }
}
