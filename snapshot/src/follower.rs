//! The task every server runs to follow the published snapshot.
//!
//! At start the owner loads the last good snapshot from disk ([`load_cache`]), so a server that
//! starts while ZooKeeper is down serves at once. Then [`Follower::run`]: connect (backoff on
//! failure), read the pointer with a watch, and when it names a version other than the one in
//! force, wait a random jitter (so a thousand servers do not fetch in the same millisecond),
//! fetch the chunks, verify them, and hand the snapshot to the owner's `apply`. A snapshot the
//! owner refuses is reported and not retried until the pointer moves; one it accepts is saved
//! to disk. The pointer is also re-read on every reconnect and every `recheck` interval, so a
//! watch lost with a connection never leaves a server behind. ZooKeeper down, partitioned or an
//! expired session never empty anything: the owner keeps serving what it has.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use zookeeper_client as zk;

use crate::backoff::{jitter, Backoff};
use crate::format::{Pointer, Snapshot};
use crate::layout::{Layout, ZkSettings};
use crate::signature::Trust;
use crate::store;

/// Where and how to follow.
#[derive(Clone, Debug)]
pub struct FollowerConfig {
    /// How to reach ZooKeeper (as the server role), and the root the snapshots are under.
    pub zk: ZkSettings,
    /// The last good snapshot on disk.
    pub cache: PathBuf,
    /// Longest random wait before fetching a new version.
    pub jitter: Duration,
    /// Re-read the pointer at least this often, whatever the watches say.
    pub recheck: Duration,
    /// The keys snapshots must be signed by (empty: signatures are not checked).
    pub trust: Trust,
}

/// Applies a verified snapshot; `Err` refuses it (the owner keeps what it has).
pub type Apply = Arc<dyn Fn(&Snapshot) -> Result<(), String> + Send + Sync>;

/// Called after each failed save of the disk cache (for a metric).
pub type SaveFailed = Arc<dyn Fn() + Send + Sync>;

/// Called with the reason each time a snapshot is refused (for a metric): `signature` (not
/// signed by a trusted key), `version` (not newer than the one in force, or beyond the SOA
/// serial), `damaged` (size, checksum or document wrong), `zones` (the owner's `Apply` refused
/// it: a zone that does not compile or is out of scope).
pub type Refused = Arc<dyn Fn(&'static str) + Send + Sync>;

/// The follower of one ZooKeeper ensemble.
pub struct Follower {
    cfg: FollowerConfig,
    layout: Layout,
    apply: Apply,
    save_failed: Option<SaveFailed>,
    refused: Option<Refused>,
    /// A snapshot in force that could not be saved yet (a full disk): saved again every
    /// [`SAVE_RETRY`] until it is, so a restart without ZooKeeper serves it, not an older one.
    unsaved: Arc<std::sync::Mutex<Option<(Pointer, Snapshot)>>>,
}

/// How often a failed save of the disk cache is tried again.
const SAVE_RETRY: Duration = Duration::from_secs(5);

/// Reads the last good snapshot saved by a follower: `Ok(None)` when there is none yet.
/// The file is the pointer on one line, then the document, and is verified like a fetch.
pub fn load_cache(path: &Path, trust: &Trust) -> Result<Option<Snapshot>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| format!("{}: no pointer line", path.display()))?;
    let pointer = Pointer::parse(&bytes[..nl]).map_err(|e| format!("{}: {e}", path.display()))?;
    let document = &bytes[nl + 1..];
    let snap =
        Snapshot::decode(&pointer, document).map_err(|e| format!("{}: {e}", path.display()))?;
    // The disk is no more trusted than ZooKeeper: the cache keeps the signature and is checked.
    trust
        .check(&pointer, document)
        .and_then(|()| pointer.check_version(None))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(snap))
}

/// Reads the snapshot on disk, saying whether it is known to be older than one this server
/// served before: `(snapshot, Some(newer))` when a save of version `newer` failed after it
/// (the cache was then renamed `<cache>.older-than-<newer>`), so a restart without ZooKeeper
/// can say it serves an older snapshot instead of doing so silently.
pub fn load_cache_marked(
    path: &Path,
    trust: &Trust,
) -> Result<Option<(Snapshot, Option<u64>)>, String> {
    if let Some(snap) = load_cache(path, trust)? {
        return Ok(Some((snap, None)));
    }
    let Some((stale, newer)) = stale_cache(path) else {
        return Ok(None);
    };
    Ok(load_cache(&stale, trust)?.map(|snap| (snap, Some(newer))))
}

/// The cache renamed after a failed save, and the version that could not be saved.
fn stale_cache(path: &Path) -> Option<(PathBuf, u64)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!("{}.older-than-", path.file_name()?.to_string_lossy());
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let v = name.strip_prefix(&prefix)?.parse::<u64>().ok()?;
            Some((e.path(), v))
        })
        .max_by_key(|(_, v)| *v)
}

/// After a failed save of version `newer`: the cache on disk is older than what is served, and
/// its name says so (a rename needs no free space).
fn mark_stale(path: &Path, newer: u64) {
    let marked = PathBuf::from(format!("{}.older-than-{newer}", path.display()));
    let from = if path.exists() {
        Some(path.to_path_buf())
    } else {
        stale_cache(path).map(|(p, _)| p)
    };
    if let Some(from) = from.filter(|f| *f != marked) {
        let _ = std::fs::rename(from, &marked);
    }
}

fn save_cache(path: &Path, pointer: &Pointer, snap: &Snapshot) -> std::io::Result<()> {
    // The document re-encodes to the bytes the pointer (and its signature) names.
    let (bytes, _) = snap.encode();
    let saved = geomap::atomic_file::write(path, |f| {
        use std::io::Write;
        f.write_all(&pointer.to_bytes())?;
        f.write_all(b"\n")?;
        f.write_all(&bytes)
    });
    match &saved {
        Ok(()) => {
            while let Some((stale, _)) = stale_cache(path) {
                if std::fs::remove_file(stale).is_err() {
                    break;
                }
            }
        }
        Err(_) => mark_stale(path, snap.version),
    }
    saved
}

/// A random duration in `[0, max)`. `RandomState` keys are random per process and distinct per
/// call, which is all jitter needs (no RNG dependency).
enum Next {
    /// The pointer may have moved: read it again.
    Reread,
    /// The session is gone: connect anew.
    Reconnect,
}

impl Follower {
    /// A follower that hands verified snapshots to `apply`.
    pub fn new(cfg: FollowerConfig, apply: Apply) -> Follower {
        Follower {
            layout: cfg.zk.layout().expect("a checked ZooKeeper root"),
            cfg,
            apply,
            save_failed: None,
            refused: None,
            unsaved: Arc::default(),
        }
    }

    /// Calls `f` after each failed save of the disk cache.
    pub fn on_save_failed(mut self, f: SaveFailed) -> Follower {
        self.save_failed = Some(f);
        self
    }

    /// Calls `f` with the reason of each refused snapshot.
    pub fn on_refused(mut self, f: Refused) -> Follower {
        self.refused = Some(f);
        self
    }

    fn refuse(&self, reason: &'static str) {
        if let Some(f) = &self.refused {
            f(reason);
        }
    }

    /// Saves the snapshot waiting for disk space, if any.
    async fn retry_save(&self) {
        let (cache, unsaved, failed) = (
            self.cfg.cache.clone(),
            self.unsaved.clone(),
            self.save_failed.clone(),
        );
        let _ = tokio::task::spawn_blocking(move || {
            let mut pending = unsaved.lock().expect("not poisoned");
            let Some((pointer, snap)) = pending.as_ref() else {
                return;
            };
            match save_cache(&cache, pointer, snap) {
                Ok(()) => {
                    tracing::info!(file = %cache.display(), version = snap.version, "snapshot saved to disk after earlier failures");
                    *pending = None;
                }
                Err(e) => {
                    tracing::warn!(file = %cache.display(), error = %e, "still cannot save the snapshot to disk; retrying");
                    if let Some(f) = &failed {
                        f();
                    }
                }
            }
        })
        .await;
    }

    /// Follows until the process ends. `have` is the version in force (from the cache).
    pub async fn run(self, mut have: Option<u64>) {
        let mut backoff = Backoff::new(Duration::from_millis(100));
        loop {
            let client = crate::backoff::connect(
                &self.cfg.zk,
                crate::access::Role::Server,
                &mut backoff,
                "serving the snapshot in force",
            )
            .await;
            backoff.reset();
            tracing::info!(session = %client.session_id(), "following internal-zone snapshots");
            self.session(&client, &mut have).await;
            tracing::warn!("ZooKeeper session ended; reconnecting");
        }
    }

    /// One session: read the pointer, fetch when it moved, wait for the next change.
    async fn session(&self, client: &zk::Client, have: &mut Option<u64>) {
        let mut state = client.state_watcher();
        // The pointer last refused (version and checksum): not fetched again until it moves. A
        // genuine snapshot may take the number of a refused forgery.
        let mut refused: Option<(u64, String)> = None;
        let mut retry = Backoff::new(Duration::from_millis(200));
        loop {
            let path = self.layout.pointer();
            let watched = match client.get_and_watch_data(&path).await {
                Ok((data, _, watcher)) => Some((data, watcher)),
                Err(zk::Error::NoNode) => None,
                Err(zk::Error::SessionExpired | zk::Error::ClientClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the snapshot pointer failed; retrying");
                    let d = retry.next_delay();
                    tokio::time::sleep(d + jitter(d)).await;
                    continue;
                }
            };
            let mut wait_for: Option<zk::OneshotWatcher> = None;
            match watched {
                Some((data, watcher)) => {
                    wait_for = Some(watcher);
                    match Pointer::parse(&data) {
                        Ok(p)
                            if Some(p.version) != *have
                                && refused.as_ref() != Some(&(p.version, p.checksum.clone())) =>
                        {
                            if let Err(e) = p.check_version(*have) {
                                tracing::error!(error = %e, "snapshot refused; the one in force keeps serving");
                                self.refuse("version");
                                refused = Some((p.version, p.checksum.clone()));
                                match self.wait(wait_for, &mut state).await {
                                    Next::Reread => continue,
                                    Next::Reconnect => return,
                                }
                            }
                            tokio::time::sleep(jitter(self.cfg.jitter)).await;
                            match self.fetch_apply(client, &p).await {
                                Ok(()) => {
                                    *have = Some(p.version);
                                    retry.reset();
                                }
                                Err(FetchFailed::Refused(reason, e)) => {
                                    tracing::error!(version = p.version, reason, error = %e, "snapshot refused; the one in force keeps serving");
                                    self.refuse(reason);
                                    refused = Some((p.version, p.checksum.clone()));
                                }
                                Err(FetchFailed::Transient(e)) => {
                                    tracing::warn!(version = p.version, error = %e, "fetching the snapshot failed; retrying");
                                    let d = retry.next_delay();
                                    tokio::time::sleep(d + jitter(d)).await;
                                    continue;
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "the snapshot pointer is unreadable; the snapshot in force keeps serving");
                        }
                    }
                }
                None => {
                    // No pointer yet: wait for its creation.
                    match client.check_and_watch_stat(&path).await {
                        Ok((Some(_), _)) => continue,
                        Ok((None, w)) => wait_for = Some(w),
                        Err(zk::Error::SessionExpired | zk::Error::ClientClosed) => return,
                        Err(_) => {}
                    }
                }
            }
            match self.wait(wait_for, &mut state).await {
                Next::Reread => {}
                Next::Reconnect => return,
            }
        }
    }

    /// Waits for the watch, a reconnection (watches may have been lost with the connection),
    /// or the recheck interval.
    async fn wait(
        &self,
        watcher: Option<zk::OneshotWatcher>,
        state: &mut zk::StateWatcher,
    ) -> Next {
        let watch = async {
            match watcher {
                Some(w) => {
                    let ev = w.changed().await;
                    ev.session_state
                }
                None => std::future::pending().await,
            }
        };
        let deadline = tokio::time::sleep(self.cfg.recheck);
        tokio::pin!(watch, deadline);
        loop {
            let pending = self.unsaved.lock().expect("not poisoned").is_some();
            tokio::select! {
                _ = tokio::time::sleep(SAVE_RETRY), if pending => {
                    self.retry_save().await;
                }
                s = &mut watch => {
                    return if s.is_terminated() { Next::Reconnect } else { Next::Reread };
                }
                s = state.changed() => {
                    if s.is_terminated() {
                        return Next::Reconnect;
                    }
                    if s == zk::SessionState::SyncConnected {
                        return Next::Reread;
                    }
                }
                _ = &mut deadline => return Next::Reread,
            }
        }
    }

    async fn fetch_apply(&self, client: &zk::Client, p: &Pointer) -> Result<(), FetchFailed> {
        let started = std::time::Instant::now();
        let snap = match store::fetch(client, &self.layout, p, &self.cfg.trust).await {
            Ok(s) => s,
            Err(store::StoreError::Snapshot(e)) => {
                let reason = match e {
                    crate::SnapshotError::Signature { .. } => "signature",
                    crate::SnapshotError::Version { .. } => "version",
                    _ => "damaged",
                };
                return Err(FetchFailed::Refused(reason, e.to_string()));
            }
            Err(e) => return Err(FetchFailed::Transient(e.to_string())),
        };
        tracing::info!(
            version = p.version,
            bytes = p.size,
            chunks = p.chunks,
            ms = started.elapsed().as_millis() as u64,
            "snapshot fetched and verified"
        );
        let apply = self.apply.clone();
        let cache = self.cfg.cache.clone();
        let (unsaved, failed) = (self.unsaved.clone(), self.save_failed.clone());
        let pointer = p.clone();
        tokio::task::spawn_blocking(move || {
            apply(&snap).map_err(|e| FetchFailed::Refused("zones", e))?;
            let mut pending = unsaved.lock().expect("not poisoned");
            match save_cache(&cache, &pointer, &snap) {
                Ok(()) => *pending = None,
                Err(e) => {
                    // Serving goes on; it is saved again every few seconds until it is, so a
                    // restart without ZooKeeper never serves an older one.
                    tracing::error!(file = %cache.display(), error = %e, "cannot save the snapshot to disk; retrying every 5 s");
                    if let Some(f) = &failed {
                        f();
                    }
                    *pending = Some((pointer, snap));
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| FetchFailed::Refused("zones", format!("applying panicked: {e}")))?
    }
}

enum FetchFailed {
    /// The data is wrong: do not retry the same version. With the reason's name.
    Refused(&'static str, String),
    /// ZooKeeper trouble: retry.
    Transient(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ZoneText, FORMAT};

    #[test]
    fn the_cache_round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        let none = Trust::default();
        assert!(load_cache(&path, &none).unwrap().is_none());
        let snap = Snapshot {
            format: FORMAT,
            version: 3,
            created_at: "2026-11-26T00:00:00Z".into(),
            zones: vec![ZoneText {
                origin: "internal.example".into(),
                text: "h 60 IN A 10.0.0.1\n".into(),
            }],
        };
        let (_, key) = crate::SigningKey::generate().unwrap();
        let (bytes, mut pointer) = snap.encode();
        key.sign(&bytes, &mut pointer);
        save_cache(&path, &pointer, &snap).unwrap();
        assert_eq!(load_cache(&path, &none).unwrap(), Some(snap.clone()));
        // The signature is kept on disk: a server that trusts the key takes the cache, one
        // that trusts another key does not.
        let trusted = Trust::new(vec![key.public()]);
        assert_eq!(load_cache(&path, &trusted).unwrap(), Some(snap));
        let (_, other) = crate::SigningKey::generate().unwrap();
        let e = load_cache(&path, &Trust::new(vec![other.public()])).unwrap_err();
        assert!(e.contains("does not trust"), "{e}");
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 5] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        assert!(load_cache(&path, &none).is_err());
    }

    #[test]
    fn a_cache_older_than_what_was_served_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        let snap = |version: u64| Snapshot {
            format: FORMAT,
            version,
            created_at: "2026-12-06T00:00:00Z".into(),
            zones: Vec::new(),
        };
        let none = Trust::default();
        let save = |v: u64| save_cache(&path, &snap(v).encode().1, &snap(v));
        save(3).unwrap();
        assert_eq!(
            load_cache_marked(&path, &none).unwrap(),
            Some((snap(3), None))
        );
        // Version 5, then 6, could not be saved: the cache holds 3 and says so.
        mark_stale(&path, 5);
        mark_stale(&path, 6);
        assert!(!path.exists());
        assert_eq!(
            load_cache_marked(&path, &none).unwrap(),
            Some((snap(3), Some(6)))
        );
        // Saved at last: no mark left.
        save(7).unwrap();
        assert_eq!(
            load_cache_marked(&path, &none).unwrap(),
            Some((snap(7), None))
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
