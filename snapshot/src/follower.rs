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
use crate::delta::{Delta, Zones};
use crate::format::{Pointer, Snapshot};
use crate::layout::{Layout, ZkSettings};
use crate::peers::{PeersConfig, Shelf};
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
    /// Whole snapshots served to and fetched from other servers.
    pub peers: PeersConfig,
}

/// What the owner is handed: a new version, whole or as the changes since the one in force.
pub enum Update<'a> {
    /// A whole snapshot: the first one, one after a restart, or when deltas could not be used.
    /// With its parts when it is in the presenter's layout, for the deltas after it.
    Whole(&'a Snapshot, Option<&'a Zones>),
    /// The deltas after the version in force, in order, and the parts they lead to (already
    /// applied, their state checked against the pointer's).
    Deltas(&'a [Delta], &'a Zones),
}

impl Update<'_> {
    /// The version this update makes.
    pub fn version(&self) -> u64 {
        match self {
            Update::Whole(s, _) => s.version,
            Update::Deltas(_, z) => z.version(),
        }
    }
}

/// Applies a verified update; `Err` refuses it (the owner keeps what it has).
pub type Apply = Arc<dyn Fn(Update<'_>) -> Result<(), String> + Send + Sync>;

/// Called with each version taken: how it came (`whole` from ZooKeeper, `peer` whole from a
/// peer, or `deltas`), the number of deltas, and the bytes fetched (for metrics).
pub type Taken = Arc<dyn Fn(&'static str, u64, u64) + Send + Sync>;

/// The most deltas fetched to catch up at once; further behind, a whole snapshot is cheaper.
pub const MAX_CATCH_UP: u64 = 1000;

/// Called after each failed save of the disk cache (for a metric).
pub type SaveFailed = Arc<dyn Fn() + Send + Sync>;

/// Called with the reason each time a snapshot is refused (for a metric): `signature` (not
/// signed by a trusted key), `version` (not newer than the one in force, or beyond the SOA
/// serial), `damaged` (size, checksum or document wrong), `zones` (the owner's `Apply` refused
/// it: a zone that does not compile or is out of scope), `peer` (a peer served bytes that are
/// not the document: the next peer, or ZooKeeper, is asked instead).
pub type Refused = Arc<dyn Fn(&'static str) + Send + Sync>;

/// The follower of one ZooKeeper ensemble.
pub struct Follower {
    cfg: FollowerConfig,
    layout: Layout,
    apply: Apply,
    save_failed: Option<SaveFailed>,
    refused: Option<Refused>,
    taken: Option<Taken>,
    /// A snapshot in force that could not be saved yet (a full disk): saved again every
    /// [`SAVE_RETRY`] until it is, so a restart without ZooKeeper serves it, not an older one.
    unsaved: Arc<std::sync::Mutex<Option<(Pointer, Snapshot)>>>,
    /// The parts of the version in force, when known: what deltas apply to.
    held: Arc<std::sync::Mutex<Held>>,
    /// What this server serves its peers, and the name it is announced under.
    shelf: Arc<Shelf>,
    me: Option<String>,
    http: reqwest::Client,
}

/// The version in force as parts, and the journal of deltas on disk since the last whole save.
#[derive(Default)]
struct Held {
    zones: Option<Zones>,
    /// Bytes in the journal: once they outweigh the snapshot, it is saved whole again.
    journal_bytes: u64,
}

/// How often a failed save of the disk cache is tried again.
const SAVE_RETRY: Duration = Duration::from_secs(5);

/// Reads the last good snapshot saved by a follower: `Ok(None)` when there is none yet.
/// The file is the pointer on one line, then the document, and is verified like a fetch;
/// the deltas taken since it was saved (its journal, `<file>.deltas`) then bring it forward.
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
    Ok(Some(replay_journal(path, snap, trust)))
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
        let _ = std::fs::rename(&from, &marked);
        let _ = std::fs::rename(journal_path(&from), journal_path(&marked));
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
            // The whole snapshot now holds every delta taken.
            let _ = std::fs::remove_file(journal_path(path));
            while let Some((stale, _)) = stale_cache(path) {
                let _ = std::fs::remove_file(journal_path(&stale));
                if std::fs::remove_file(stale).is_err() {
                    break;
                }
            }
        }
        Err(_) => mark_stale(path, snap.version),
    }
    saved
}

/// Saves a version whole to the disk cache: true when saved. When it cannot be, serving goes
/// on and the version waits in `pending`, saved again every few seconds until it is, so a
/// restart without ZooKeeper never serves an older one.
fn save_whole(
    cache: &Path,
    pointer: Pointer,
    snap: Snapshot,
    pending: &mut Option<(Pointer, Snapshot)>,
    failed: Option<&SaveFailed>,
) -> bool {
    match save_cache(cache, &pointer, &snap) {
        Ok(()) => {
            *pending = None;
            true
        }
        Err(e) => {
            tracing::error!(file = %cache.display(), error = %e, "cannot save the snapshot to disk; retrying every 5 s");
            if let Some(f) = failed {
                f();
            }
            *pending = Some((pointer, snap));
            false
        }
    }
}

/// The journal beside a cache file: the deltas taken since the cache was saved whole.
fn journal_path(cache: &Path) -> PathBuf {
    PathBuf::from(format!("{}.deltas", cache.display()))
}

/// One journal line: a delta node's bytes as they came ([`Delta::sealed`]), so its signature
/// is checked again when the journal is read back.
#[derive(serde::Serialize, serde::Deserialize)]
struct JournalRecord {
    sealed: String,
}

/// Appends sealed deltas to the journal, one line each, and syncs it: a line torn by a crash
/// is skipped when it is read back.
fn append_journal(cache: &Path, sealed: &[Vec<u8>]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = Vec::new();
    for s in sealed {
        let record = JournalRecord {
            sealed: String::from_utf8_lossy(s).into_owned(),
        };
        serde_json::to_writer(&mut out, &record).expect("a record serialises");
        out.push(b'\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal_path(cache))?;
    f.write_all(&out)?;
    f.sync_data()
}

/// The snapshot on disk brought forward by its journal: each delta after it, in order,
/// checked like a fetched one; the replay stops at the first gap or damaged line. A snapshot
/// not in the presenter's layout has no journal.
fn replay_journal(cache: &Path, snap: Snapshot, trust: &Trust) -> Snapshot {
    let Ok(text) = std::fs::read_to_string(journal_path(cache)) else {
        return snap;
    };
    let Ok(mut zones) = Zones::from_snapshot(&snap) else {
        return snap;
    };
    let mut replayed = 0;
    for line in text.lines() {
        let Ok(record) = serde_json::from_str::<JournalRecord>(line) else {
            tracing::warn!(file = %journal_path(cache).display(), "a damaged line in the journal of deltas; the replay stops there");
            break;
        };
        let seal = record.sealed.split('\n').next().unwrap_or_default();
        let Ok(seal) = serde_json::from_str::<crate::delta::Seal>(seal) else {
            break;
        };
        if seal.version <= zones.version() {
            continue;
        }
        let next = zones.version() + 1;
        match Delta::unseal(next, record.sealed.as_bytes(), trust).and_then(|d| zones.apply(&d)) {
            Ok(()) => replayed += 1,
            Err(e) => {
                tracing::warn!(file = %journal_path(cache).display(), error = %e, "the journal of deltas stops here");
                break;
            }
        }
    }
    if replayed == 0 {
        return snap;
    }
    zones.to_snapshot()
}

/// What the follower's loop does next.
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
            taken: None,
            unsaved: Arc::default(),
            held: Arc::default(),
            shelf: Arc::default(),
            me: None,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(20))
                .build()
                .expect("an HTTP client without TLS builds"),
        }
    }

    /// Serves the snapshots this server holds to its peers on `[peers] listen`, if set, and
    /// announces it in ZooKeeper with each session. Fails when the address cannot be bound.
    pub async fn serve_peers(mut self) -> std::io::Result<Follower> {
        let Some(listen) = self.cfg.peers.listen else {
            return Ok(self);
        };
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let bound = listener.local_addr()?;
        self.me = Some(
            self.cfg
                .peers
                .advertise
                .clone()
                .unwrap_or_else(|| bound.to_string()),
        );
        tracing::info!(listen = %bound, announced = self.me.as_deref(), "serving snapshots to peers");
        tokio::spawn(crate::peers::serve(listener, self.shelf.clone()));
        Ok(self)
    }

    /// Announces this server to its peers once it has something to serve them (a server that
    /// announced before holding a version would only answer "not held"); true once done or
    /// when it does not serve peers.
    async fn announce(&self, client: &zk::Client) -> bool {
        let Some(me) = &self.me else { return true };
        if self.shelf.is_empty() {
            return false;
        }
        let secure = self.cfg.zk.secure();
        if let Err(e) = crate::peers::announce(client, &self.layout, me, secure).await {
            tracing::warn!(error = %e, "cannot announce this server to its peers; they fetch from ZooKeeper instead");
        }
        true
    }

    /// Calls `f` with each version taken.
    pub fn on_taken(mut self, f: Taken) -> Follower {
        self.taken = Some(f);
        self
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
        let mut announced = false;
        // The pointer last refused (version and checksum): not fetched again until it moves. A
        // genuine snapshot may take the number of a refused forgery.
        let mut refused: Option<(u64, String)> = None;
        let mut retry = Backoff::new(Duration::from_millis(200));
        loop {
            if !announced {
                announced = self.announce(client).await;
            }
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
                            match self.fetch_apply(client, &p, *have).await {
                                Ok(()) => {
                                    *have = Some(p.version);
                                    retry.reset();
                                    if !announced {
                                        announced = self.announce(client).await;
                                    }
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

    /// Takes the version `p` names: by the deltas after the version in force when the parts
    /// of that version are held and every delta is there, otherwise whole.
    async fn fetch_apply(
        &self,
        client: &zk::Client,
        p: &Pointer,
        have: Option<u64>,
    ) -> Result<(), FetchFailed> {
        match self.fetch_deltas(client, p, have).await {
            Ok(Some(())) => return Ok(()),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(version = p.version, error = %e, "the deltas cannot be used; fetching the snapshot whole");
                self.held.lock().expect("not poisoned").zones = None;
            }
        }
        tokio::time::sleep(jitter(self.cfg.jitter)).await;
        self.fetch_whole(client, p).await
    }

    /// `Ok(None)`: deltas do not apply here (no parts held, too far behind, none published);
    /// `Err`: they should have, and did not (missing, damaged, refused): load whole.
    async fn fetch_deltas(
        &self,
        client: &zk::Client,
        p: &Pointer,
        have: Option<u64>,
    ) -> Result<Option<()>, String> {
        let Some(v) = have else { return Ok(None) };
        let usable = p.state.is_some()
            && p.version > v
            && p.version - v <= MAX_CATCH_UP
            && self
                .held
                .lock()
                .expect("not poisoned")
                .zones
                .as_ref()
                .is_some_and(|z| z.version() == v);
        if !usable {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let mut deltas = Vec::new();
        let mut raw = Vec::new();
        for w in v + 1..=p.version {
            match store::fetch_delta(client, &self.layout, w, &self.cfg.trust).await {
                Ok(Some((d, bytes))) => {
                    deltas.push(d);
                    raw.push(bytes);
                }
                Ok(None) => return Err(format!("delta {w} is not published")),
                Err(e) => return Err(e.to_string()),
            }
        }
        let bytes: u64 = raw.iter().map(|r| r.len() as u64).sum();
        let (apply, held, cache, pointer) = (
            self.apply.clone(),
            self.held.clone(),
            self.cfg.cache.clone(),
            p.clone(),
        );
        let (unsaved, failed) = (self.unsaved.clone(), self.save_failed.clone());
        let applied = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let mut held = held.lock().expect("not poisoned");
            let zones = held.zones.as_mut().ok_or("no parts held")?;
            for d in &deltas {
                zones.apply(d).map_err(|e| e.to_string())?;
            }
            if pointer.state.as_deref() != Some(zones.state().as_str()) {
                return Err(format!("the deltas give {}, the pointer says {:?}", zones.state(), pointer.state));
            }
            apply(Update::Deltas(&deltas, zones))?;
            // On disk: the deltas appended to the journal, or the whole snapshot once they
            // outweigh it or cannot be appended.
            let mut pending = unsaved.lock().expect("not poisoned");
            let appended = if pending.is_none() && held.journal_bytes + bytes <= pointer.size {
                append_journal(&cache, &raw).map_err(|e| tracing::warn!(file = %cache.display(), error = %e, "cannot append to the journal of deltas; saving the snapshot whole"))
            } else {
                Err(())
            };
            match appended {
                Ok(()) => held.journal_bytes += bytes,
                Err(()) => {
                    let snap = held.zones.as_ref().expect("held").to_snapshot();
                    if save_whole(&cache, pointer, snap, &mut pending, failed.as_ref()) {
                        held.journal_bytes = 0;
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| format!("applying panicked: {e}"))?;
        applied?;
        tracing::info!(
            version = p.version,
            deltas = p.version - v,
            bytes,
            ms = started.elapsed().as_millis() as u64,
            "deltas applied"
        );
        let (held, w) = (self.held.clone(), p.version);
        // Only a server that serves its peers keeps anything on its shelf.
        if self.me.is_some() {
            self.shelf.promise(
                p.checksum.clone(),
                Box::new(move || {
                    let held = held.lock().expect("not poisoned");
                    let zones = held.zones.as_ref().filter(|z| z.version() == w)?;
                    Some(zones.to_snapshot().encode().0)
                }),
            );
        }
        if let Some(f) = &self.taken {
            f("deltas", p.version - v, bytes);
        }
        Ok(Some(()))
    }

    async fn fetch_whole(&self, client: &zk::Client, p: &Pointer) -> Result<(), FetchFailed> {
        let started = std::time::Instant::now();
        if self.cfg.peers.fetch_from > 0 {
            let me = self.me.as_deref();
            let n = self.cfg.peers.fetch_from;
            let trust = &self.cfg.trust;
            match crate::peers::fetch(client, &self.layout, p, trust, me, n, &self.http).await {
                Ok((snap, bytes)) => {
                    tracing::info!(
                        version = p.version,
                        bytes = p.size,
                        ms = started.elapsed().as_millis() as u64,
                        "snapshot fetched from a peer and verified"
                    );
                    let zones = Zones::from_snapshot(&snap).ok();
                    return self.take_whole(p, snap, zones, bytes, "peer").await;
                }
                Err(failed) => {
                    for _ in 0..failed.refused {
                        self.refuse("peer");
                    }
                    tracing::info!(version = p.version, tried = ?failed.tried, "no peer served the snapshot; reading ZooKeeper's chunks");
                }
            }
        }
        let (snap, zones) =
            match store::fetch_version(client, &self.layout, p, &self.cfg.trust).await {
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
        let bytes = snap.encode().0;
        self.take_whole(p, snap, zones, bytes, "whole").await
    }

    /// Hands a whole, verified snapshot to the owner, saves it, and serves it to peers.
    async fn take_whole(
        &self,
        p: &Pointer,
        snap: Snapshot,
        zones: Option<Zones>,
        bytes: Vec<u8>,
        how: &'static str,
    ) -> Result<(), FetchFailed> {
        let fetched = if how == "whole" {
            p.size + p.delta_bytes
        } else {
            bytes.len() as u64
        };
        let apply = self.apply.clone();
        let cache = self.cfg.cache.clone();
        let (unsaved, failed, held) = (
            self.unsaved.clone(),
            self.save_failed.clone(),
            self.held.clone(),
        );
        let pointer = p.clone();
        tokio::task::spawn_blocking(move || {
            let mut held = held.lock().expect("not poisoned");
            held.zones = None;
            apply(Update::Whole(&snap, zones.as_ref()))
                .map_err(|e| FetchFailed::Refused("zones", e))?;
            held.zones = zones;
            held.journal_bytes = 0;
            let mut pending = unsaved.lock().expect("not poisoned");
            save_whole(&cache, pointer, snap, &mut pending, failed.as_ref());
            Ok(())
        })
        .await
        .map_err(|e| FetchFailed::Refused("zones", format!("applying panicked: {e}")))??;
        if self.me.is_some() {
            self.shelf.put(p.checksum.clone(), bytes);
        }
        if let Some(f) = &self.taken {
            f(how, 0, fetched);
        }
        Ok(())
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

    #[test]
    fn the_journal_brings_the_cache_forward_and_stops_at_a_gap_or_a_bad_line() {
        use crate::zone_text::{Soa, ZoneBody};
        let body = |hosts: std::ops::Range<u32>| ZoneBody {
            origin: "internal.example".into(),
            soa: Soa {
                ttl: 60,
                primary: "ns1.internal.example".into(),
                hostmaster: "h.internal.example".into(),
                negative_ttl: 30,
            },
            apex: vec!["internal.example. 60 IN NS ns1.internal.example.".into()],
            robot_lines: hosts
                .map(|i| format!("h{i}.internal.example. 60 IN A 10.0.0.{i}"))
                .collect(),
            human: String::new(),
        };
        let v = |n: u32| Zones::new(u64::from(n), format!("t{n}"), vec![body(0..n)]);
        let (_, key) = crate::SigningKey::generate().unwrap();
        let trust = Trust::new(vec![key.public()]);
        let sealed = |a: u32, b: u32| v(a).delta_to(&v(b)).sealed(Some(&key));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        let start = |dir: &Path| {
            let _ = std::fs::remove_file(journal_path(&path));
            let snap = v(1).to_snapshot();
            let (bytes, mut pointer) = snap.encode();
            key.sign(&bytes, &mut pointer);
            save_cache(&path, &pointer, &snap).unwrap();
            assert!(dir.join("snap").exists());
        };
        start(dir.path());
        append_journal(&path, &[sealed(1, 2), sealed(2, 3)]).unwrap();
        assert_eq!(load_cache(&path, &trust).unwrap(), Some(v(3).to_snapshot()));
        // A torn line at the end (a crash mid-append) is skipped; a line already applied
        // (a journal left from before a whole save) too.
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(journal_path(&path))
                .unwrap();
            f.write_all(b"{\"sealed\":\"{\\\"vers").unwrap();
        }
        assert_eq!(load_cache(&path, &trust).unwrap(), Some(v(3).to_snapshot()));
        // A gap stops the replay where it is.
        start(dir.path());
        append_journal(&path, &[sealed(1, 2), sealed(3, 4)]).unwrap();
        assert_eq!(load_cache(&path, &trust).unwrap(), Some(v(2).to_snapshot()));
        // A delta signed by another key ends it too.
        start(dir.path());
        let (_, other) = crate::SigningKey::generate().unwrap();
        let forged = v(1).delta_to(&v(2)).sealed(Some(&other));
        append_journal(&path, &[forged, sealed(2, 3)]).unwrap();
        assert_eq!(load_cache(&path, &trust).unwrap(), Some(v(1).to_snapshot()));
        // A whole save supersedes the journal.
        start(dir.path());
        assert!(!journal_path(&path).exists());
    }
}
