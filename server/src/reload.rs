//! Hot reload: on SIGHUP, or when a watched file changes, build a new dataset beside the live
//! one and swap it in whole; health-file changes swap only the health state.
//!
//! A file is "changed" when its (mtime, size, inode) differs from the last attempt, so a bad
//! file is reported once and retried only when it changes again. A failed load leaves the
//! serving snapshot untouched: the old data keeps answering.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::dataset::{file_stamp, Dataset, FileStamp};
use crate::metrics::Metrics;
use crate::served::State;
use geodns_snapshot::health_file::{self, DownSet};

/// Reads the dataset's health file, if it has one. A missing file means every PoP is up.
pub fn load_health(data: &Dataset) -> Result<DownSet, geodns_snapshot::health_file::HealthError> {
    let Some(path) = &data.config.health_file else {
        return Ok(DownSet::new());
    };
    if !path.exists() {
        return Ok(DownSet::new());
    }
    health_file::read(path, &|p| data.config.pops.contains_key(p))
}

/// Runs blocking file work off the async workers. `None` if it panicked (logged).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "reload task failed; the previous data keeps serving");
            None
        }
    }
}

/// Watches for changes and SIGHUP until the process ends. `health_stamp` is the health file's
/// stamp taken before the serving health state was read.
///
/// What is watched: the serving dataset's files, and after a refused reload also every file the
/// new config names, so creating the file that was missing retries without a SIGHUP. Settings
/// that need a restart (sockets, workers, the probe log) stay as the process started; a reload
/// that changes them applies the rest and says which wait (log, metric, status record).
pub async fn watch(
    config_path: PathBuf,
    state: Arc<State>,
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
    let mut data = state.load().data.clone();
    let running = data.config.clone();
    let mut watched: Vec<(PathBuf, FileStamp)> = data.watched.clone();
    let mut health_stamp = health_stamp;
    loop {
        let interval = data.config.watch_interval_ms;
        let forced = tokio::select! {
            Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            _ = tokio::time::sleep(Duration::from_millis(if interval == 0 { 3_600_000 } else { interval })) => false,
        };
        let paths: Vec<PathBuf> = watched.iter().map(|(p, _)| p.clone()).collect();
        let health_path = data.config.health_file.clone();
        let Some((now, health_now)) = blocking(move || {
            let now: Vec<FileStamp> = paths.iter().map(|p| file_stamp(p)).collect();
            (now, health_path.as_deref().and_then(file_stamp))
        })
        .await
        else {
            continue;
        };
        let changed = now.iter().ne(watched.iter().map(|(_, s)| s));
        if forced || (interval > 0 && changed) {
            let path = config_path.clone();
            let m = metrics.clone();
            let old: Vec<PathBuf> = watched.iter().map(|(p, _)| p.clone()).collect();
            let started = std::time::Instant::now();
            let attempt = blocking(move || {
                // Stamps taken before the load: a change made during it is seen next round.
                let mut files = old;
                for p in Dataset::sources(&path) {
                    if !files.contains(&p) {
                        files.push(p);
                    }
                }
                let stamped = files
                    .into_iter()
                    .map(|p| {
                        let s = file_stamp(&p);
                        (p, s)
                    })
                    .collect::<Vec<_>>();
                (stamped, Dataset::load(&path, &m))
            })
            .await;
            match attempt {
                Some((_, Ok(new))) => {
                    let new = Arc::new(new.keep_running(&running));
                    let loaded = new.clone();
                    let health = blocking(move || {
                        let stamp = loaded.config.health_file.as_deref().and_then(file_stamp);
                        (stamp, load_health(&loaded))
                    })
                    .await;
                    let (new_health_stamp, down) = match health {
                        Some((stamp, Ok(d))) => (stamp, d),
                        Some((stamp, Err(e))) => {
                            tracing::error!(error = %e, "health file refused; keeping the current health state");
                            metrics.health_failure();
                            (stamp, state.load().down_set())
                        }
                        None => (None, state.load().down_set()),
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
                    metrics.set_restart_pending(new.restart_needed.len());
                    if !new.restart_needed.is_empty() {
                        tracing::warn!(
                            settings = ?new.restart_needed,
                            config = %new.config_version,
                            "config changes that take effect only at a restart; the rest is in force"
                        );
                    }
                    if let Some(t) = new.map_created_unix() {
                        metrics.set_map_created(t);
                    }
                    state.swap_data(new.clone(), &down);
                    watched = new.watched.clone();
                    data = new;
                    health_stamp = new_health_stamp;
                }
                Some((stamped, Err(e))) => {
                    tracing::error!(error = %e, "reload refused; the previous data keeps serving");
                    metrics.reload(false);
                    watched = stamped;
                }
                None => {
                    metrics.reload(false);
                    watched = watched.into_iter().map(|(p, _)| p).zip(now).collect();
                }
            }
            continue;
        }
        if interval > 0 && health_now != health_stamp {
            health_stamp = health_now;
            let current = data.clone();
            match blocking(move || load_health(&current)).await {
                Some(Ok(down)) => {
                    let ids: Vec<String> = down.iter().map(|p| p.to_string()).collect();
                    tracing::info!(down = ?ids, "health changed");
                    state.swap_health_file(&down);
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "health file refused; keeping the current health state");
                    metrics.health_failure();
                }
                None => {}
            }
        }
    }
}
