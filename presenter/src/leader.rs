//! Leadership: connect, take the presenters' lock, and while holding it reconcile and
//! publish on every change; give it up when the session ends.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use geodns_snapshot::access::{Node, Role};
use geodns_snapshot::compiled::Patchable;
use geodns_snapshot::delta::{Delta, ZoneChange, Zones};
use geodns_snapshot::format::FORMAT;
use geodns_snapshot::store::Publication;
use geodns_snapshot::{store, Layout, Snapshot, ZoneText};
use geodns_zone::Zone;
use zookeeper_client as zk;

use crate::config::Config;
use crate::human::read_humans;
use crate::metrics::Metrics;
use crate::publication::{
    conflict_report, last_published, write_node, Published, MAX_CONFLICT_LOG_LINES,
};
use crate::reconcile::{Conflict, Reconciler};
use crate::registry::Registry;
use crate::squatters::{squatters, SQUATTER_CHECK};

/// How often the presenter reads every registration, whatever the watches said.
const FULL_REREAD: Duration = Duration::from_secs(30);

/// How long after a reconnection the presenter reads every registration once more.
pub(crate) const REREAD_AFTER_RECONNECT: Duration = Duration::from_secs(1);

/// Runs the presenter until the process ends: connect, wait for leadership, reconcile and
/// publish on every change. `force` lets the next held snapshot through the drop guard.
pub async fn run(cfg: Config, force: bool, metrics: Arc<Metrics>) {
    let layout = cfg.zookeeper.layout().expect("validated with the config");
    let mut force = force;
    // The last snapshot this presenter published, kept across sessions: what a deleted tree or
    // a foreign pointer is compared with and numbered after.
    let mut memory = Memory::default();
    let mut backoff = geodns_snapshot::backoff::Backoff::new(Duration::from_millis(100));
    loop {
        let client = geodns_snapshot::backoff::connect(
            &cfg.zookeeper,
            Role::Presenter,
            &mut backoff,
            "nothing is published meanwhile",
        )
        .await;
        backoff.reset();
        if let Err(e) = lead(&client, &cfg, &layout, &mut force, &mut memory, &metrics).await {
            tracing::warn!(error = %e, "presenter session ended");
            tokio::time::sleep(backoff.peek()).await;
        }
        metrics.leader.store(0, Relaxed);
    }
}

/// What a presenter keeps across its sessions, so that what it finds in ZooKeeper is
/// compared with what it knew rather than taken as the truth: a deleted tree or a foreign
/// pointer must not empty the fleet's DNS.
#[derive(Default)]
pub(crate) struct Memory {
    /// The last snapshot this presenter published: what a deleted tree or a foreign pointer
    /// is compared with and numbered after.
    baseline: Option<Published>,
    /// The registrations seen, with their grace periods.
    registry: Registry,
    /// The human zones last read, kept while `human/` is missing.
    humans: Option<std::collections::BTreeMap<String, String>>,
}

pub(crate) async fn lead(
    client: &zk::Client,
    cfg: &Config,
    layout: &Layout,
    force: &mut bool,
    memory: &mut Memory,
    metrics: &Metrics,
) -> Result<(), String> {
    let Memory {
        baseline,
        registry,
        humans: humans_seen,
    } = memory;
    let signer = cfg.signing_key()?;
    // What the presenter trusts as its own publication: its key's signatures (nothing is
    // checked without a key).
    let trust = geodns_snapshot::Trust::new(signer.iter().map(|k| k.public()).collect());
    let zerr = |what: &str| {
        let what = what.to_owned();
        move |e: zk::Error| format!("{what}: {e}")
    };
    let secure = cfg.zookeeper.secure();
    // With credentials the tree is `geodns zk init`'s: the presenter may not create the
    // robots' or the humans' directories, only its own.
    for (p, node) in [
        (layout.hosts(), Node::Hosts),
        (layout.human(), Node::Human),
        (layout.presenters(), Node::Presenters),
        (layout.snapshots(), Node::Snapshots),
    ] {
        match store::ensure_path(client, &p, node, secure).await {
            Ok(()) => {}
            Err(store::StoreError::Zk {
                source: zk::Error::NoAuth,
                ..
            }) if secure => {
                return Err(format!(
                    "{p} is missing and not this presenter's to create: run geodns zk init"
                ))
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let lock = wait_for_lock(client, layout, secure, metrics).await?;
    metrics.squatters.store(0, Relaxed);
    metrics.leader.store(1, Relaxed);
    tracing::info!(lock = lock.lock_path(), "leader: publishing");

    // Watches first, then the first read: no change can fall between them.
    let mut hosts_w = client
        .watch(&layout.hosts(), zk::AddWatchMode::PersistentRecursive)
        .await
        .map_err(zerr("watch hosts"))?;
    let mut robots_w = client
        .watch(&layout.robots(), zk::AddWatchMode::PersistentRecursive)
        .await
        .map_err(zerr("watch robots"))?;
    let mut human_w = client
        .watch(&layout.human(), zk::AddWatchMode::PersistentRecursive)
        .await
        .map_err(zerr("watch human"))?;
    // The pointer too: anything this presenter did not write is published over at once.
    let mut pointer_w = client
        .watch(&layout.pointer(), zk::AddWatchMode::PersistentRecursive)
        .await
        .map_err(zerr("watch pointer"))?;
    let mut state = client.state_watcher();
    let mut last = last_published(client, layout, cfg, &trust, baseline.as_ref()).await?;
    // What this presenter wrote last: (version, checksum) of its pointer.
    let mut written: Option<(u64, String)> = None;
    let mut pointer_moved = false;
    metrics.version.store(last.version, Relaxed);
    let mut reported: Option<Vec<Conflict>> = None;
    // A hold reported by an earlier leader stays reported until a publication clears it.
    let mut held_reason: Option<String> = match client.get_data(&layout.held()).await {
        Ok((d, _)) if !d.is_empty() => Some(String::from_utf8_lossy(&d).into_owned()),
        Ok(_) | Err(zk::Error::NoNode) => None,
        Err(e) => return Err(format!("reading held: {e}")),
    };
    let grace = Duration::from_millis(cfg.guard.grace_ms);
    let mut reread_at: Option<Instant> = None;
    // When this presenter last published: the next publication waits until
    // `publish_interval_ms` after it, so a fleet is not asked to take a version per change.
    let mut published_at: Option<Instant> = None;
    // Node events on the registration trees not applied yet, and when they were last all read.
    let mut pending: Vec<zk::WatchedEvent> = Vec::new();
    let mut full_read = true;
    let mut last_full = Instant::now();
    // The reconciliation, made from every registration on the first pass.
    let mut reconciler = new_reconciler(cfg);
    let mut fresh = true;
    let interval = Duration::from_millis(cfg.publish_interval_ms);
    loop {
        if std::mem::take(&mut pointer_moved) {
            let now = store::read_pointer(client, layout)
                .await
                .map_err(|e| e.to_string())?;
            let mine = match (&now, &written) {
                (Some((p, _)), Some((v, sum))) => p.version == *v && p.checksum == *sum,
                _ => false,
            };
            if !mine {
                tracing::warn!(
                    version = now.as_ref().map(|(p, _)| p.version),
                    "the snapshot pointer changed under this presenter; checking it"
                );
                last = last_published(client, layout, cfg, &trust, baseline.as_ref()).await?;
                // Without a key of its own the presenter cannot tell a foreign pointer from a
                // genuine one by its signature: any pointer it did not write is foreign.
                if written.is_some() && signer.is_none() {
                    last.ours = false;
                }
            }
        }
        // The registrations: from the watches' node events since the last read (only the new
        // nodes are read), or all of them at start, after a reconnection and every
        // FULL_REREAD (with 100k hosts, listing them all for every change cost ZooKeeper and
        // the presenter more than the change itself).
        let events = std::mem::take(&mut pending);
        let full = std::mem::take(&mut full_read) || last_full.elapsed() >= FULL_REREAD;
        let applied = !full
            && registry
                .apply(client, layout, &events)
                .await
                .map_err(zerr("reading registrations"))?;
        if !applied {
            registry
                .refresh(client, layout)
                .await
                .map_err(zerr("reading registrations"))?;
            last_full = Instant::now();
        }
        let (humans, stray) = match read_humans(client, layout, cfg).await {
            Ok((humans, stray)) => {
                *humans_seen = Some(humans.clone());
                (humans, stray)
            }
            Err(zk::Error::NoNode) => {
                tracing::error!("the human zones are gone (a deleted tree?); keeping the last ones read until they are published again");
                // Not ours to create with credentials: `geodns zk init` is.
                if !secure {
                    store::ensure_path(client, &layout.human(), Node::Human, false)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                (humans_seen.clone().unwrap_or_default(), Vec::new())
            }
            Err(e) => return Err(format!("reading human zones: {e}")),
        };
        let next_expiry = registry.expire(grace);
        metrics
            .registrations
            .store(registry.known.len() as u64, Relaxed);
        // The reconciliation follows the registrations that changed: in time proportional
        // to them, not to the fleet (all of them at a session's start, or after an identity's
        // names changed).
        match registry.take_changed().filter(|_| !fresh) {
            Some(changed) => reconciler.update(changed),
            None => {
                reconciler = new_reconciler(cfg);
                let all = registry.robots().into_iter();
                reconciler.update(all.map(|r| (r.node.clone(), Some(r))));
            }
        }
        fresh = false;
        reconciler.set_humans(&humans);
        let mut conflicts = reconciler.conflicts();
        conflicts.extend(stray.into_iter().map(|o| Conflict {
            kind: "outside_zones",
            name: o.clone(),
            detail: format!("human zone {o} is not an internal zone of the presenter's config"),
        }));
        conflicts.extend(registry.invalid.iter().map(|(node, e)| Conflict {
            kind: "invalid_registration",
            name: node.clone(),
            detail: e.clone(),
        }));
        conflicts.sort();
        if reported.as_ref() != Some(&conflicts) {
            report_conflicts(client, layout, secure, metrics, &conflicts).await?;
            reported = Some(conflicts.clone());
        }

        if reconciler.differs_from(&last.zones) || !last.ours {
            let version = last.version + 1;
            let created_at =
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            let conflicts = conflicts.len();
            // The next version as parts, and the change from the last: what servers take, and
            // what the drop guard and the compile check look at.
            let (next, change) = reconciler.next(&last.zones, version, created_at.clone());
            let robots = last.zones.robot_records();
            let dropped = dropped(&last.zones, &change);
            let share = cfg.guard.max_drop_share;
            let over = dropped >= cfg.guard.min_dropped && dropped as f64 > share * robots as f64;
            let (texts, compiled, hold) = candidate(
                cfg,
                &next,
                &last.compiled,
                &change,
                dropped,
                robots,
                over && !*force,
            );
            if let Some(reason) = hold {
                if held_reason.as_deref() != Some(reason.as_str()) {
                    // Recorded first, so whoever reads the log line finds the node written.
                    write_node(client, &layout.held(), reason.as_bytes(), secure)
                        .await
                        .map_err(zerr("writing held"))?;
                    tracing::error!(%reason, "snapshot held back");
                    metrics.held.store(1, Relaxed);
                    held_reason = Some(reason);
                }
            } else {
                let snap = Snapshot {
                    format: FORMAT,
                    version,
                    created_at,
                    zones: texts,
                };
                // The delta, when servers hold exactly the last publication; the state lets
                // them prove they hold this one.
                let state = next.state();
                let delta = last.pointer.as_ref().filter(|_| last.ours).map(|_| &change);
                let publication = Publication {
                    snap: &snap,
                    state: Some(&state),
                    delta,
                    previous: last.pointer.as_ref(),
                    full_every: cfg.full_every,
                };
                match store::publish(
                    client,
                    layout,
                    &publication,
                    last.znode_version,
                    Some(&lock),
                    signer.as_ref(),
                    secure,
                )
                .await
                {
                    Ok(pointer) => {
                        let records = next.robot_records();
                        tracing::info!(
                            version,
                            bytes = pointer.size,
                            chunks = pointer.chunks,
                            whole = pointer.full.is_none(),
                            changes = delta.map(|d| d.changes.len()),
                            robot_records = records,
                            conflicts,
                            "published"
                        );
                        metrics.publications.fetch_add(1, Relaxed);
                        published_at = Some(Instant::now());
                        metrics.version.store(version, Relaxed);
                        metrics.robot_records.store(records as u64, Relaxed);
                        written = Some((version, pointer.checksum.clone()));
                        let next = Arc::new(next);
                        reconciler.mark(next.clone());
                        last = Published {
                            version,
                            znode_version: Some(last.znode_version.map_or(0, |v| v + 1)),
                            pointer: Some(pointer),
                            zones: next,
                            compiled: Arc::new(compiled),
                            ours: true,
                        };
                        *baseline = Some(last.clone());
                        *force = false;
                        if held_reason.take().is_some() {
                            write_node(client, &layout.held(), b"", secure)
                                .await
                                .map_err(zerr("clearing held"))?;
                            metrics.held.store(0, Relaxed);
                        }
                    }
                    Err(store::StoreError::Raced(now)) => {
                        tracing::warn!(now, "the pointer moved under this presenter; re-reading");
                        last =
                            last_published(client, layout, cfg, &trust, baseline.as_ref()).await?;
                        continue;
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
        }

        // Wait for a change, the next grace expiry, a re-read after a reconnection, or a
        // periodic full re-read.
        let mut until = next_expiry
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(30))
            .min(Duration::from_secs(30));
        if let Some(t) = reread_at {
            until = until.min(t.saturating_duration_since(Instant::now()));
        }
        tokio::select! {
            e = hosts_w.changed() => pending.push(e),
            e = robots_w.changed() => pending.push(e),
            _ = human_w.changed() => {}
            _ = pointer_w.changed() => pointer_moved = true,
            s = state.changed() => {
                if s.is_terminated() {
                    return Err(format!("session {s:?}"));
                }
                // Changes made while this session was reconnecting may fire no watch (a
                // persistent watch is not replayed): read everything again now, and once more
                // a moment later for anything that landed during the reconnection itself.
                // The watches are also added again: the client library is meant to resend
                // them, and once did not (issue 19); a watch added twice is one watch.
                if s == zk::SessionState::SyncConnected {
                    reread_at = Some(Instant::now() + REREAD_AFTER_RECONNECT);
                    full_read = true;
                    hosts_w = rewatch(client, &layout.hosts(), hosts_w).await;
                    robots_w = rewatch(client, &layout.robots(), robots_w).await;
                    human_w = rewatch(client, &layout.human(), human_w).await;
                    pointer_w = rewatch(client, &layout.pointer(), pointer_w).await;
                    pointer_moved = true;
                }
            }
            _ = tokio::time::sleep(until) => {}
        }
        if reread_at.is_some_and(|t| t <= Instant::now()) {
            reread_at = None;
            full_read = true;
        }
        // Let a burst of changes settle into one snapshot, and publish no more often than
        // every `publish_interval_ms`: a change after a quiet spell goes out at once, a
        // stream of changes in one version per interval.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(next) = published_at.map(|t| t + interval) {
            tokio::time::sleep_until(next.into()).await;
        }
        loop {
            let drain = async {
                tokio::select! {
                    e = hosts_w.changed() => Some(e),
                    e = robots_w.changed() => Some(e),
                    _ = human_w.changed() => None,
                }
            };
            match tokio::time::timeout(Duration::ZERO, drain).await {
                Ok(Some(e)) => pending.push(e),
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
}

/// A reconciliation by `cfg`'s policy, with no registrations and no human zones yet.
fn new_reconciler(cfg: &Config) -> Reconciler {
    Reconciler::new(
        &cfg.zones,
        &cfg.rules,
        std::collections::BTreeMap::new(),
        cfg.guard.max_rrset_records,
        &cfg.robot_names,
    )
}

/// Takes the presenters' lock, waiting behind any other presenter. The lock recipe waits
/// behind every lower node; one no live session owns (a persistent node, written by hand or by
/// a hostile client) would keep every presenter waiting for ever, so such nodes are looked for
/// while waiting, counted and named.
async fn wait_for_lock<'c>(
    client: &'c zk::Client,
    layout: &Layout,
    secure: bool,
    metrics: &Metrics,
) -> Result<zk::LockClient<'c>, String> {
    let presenters = layout.presenters();
    let prefix =
        zk::LockPrefix::new_curator(&presenters, "presenter-").map_err(|e| format!("lock: {e}"))?;
    let acls = geodns_snapshot::access::acls(Node::Presenters, secure);
    let options = zk::LockOptions::new(zk::Acls::new(&acls));
    tracing::info!("waiting for leadership");
    let waiting = client.lock(prefix, b"", options);
    tokio::pin!(waiting);
    loop {
        tokio::select! {
            l = &mut waiting => return l.map_err(|e| format!("lock: {e}")),
            _ = tokio::time::sleep(SQUATTER_CHECK) => {
                let found = squatters(client, &presenters).await.unwrap_or_default();
                metrics.squatters.store(found.len() as u64, Relaxed);
                if !found.is_empty() {
                    tracing::error!(
                        nodes = ?found,
                        "the presenters' lock is squatted by nodes no session owns; every presenter waits until they are removed (geodns presenter -c CONFIG --remove-squatters)"
                    );
                }
            }
        }
    }
}

/// Logs the first conflicts, writes them all to `<root>/conflicts` and counts them.
async fn report_conflicts(
    client: &zk::Client,
    layout: &Layout,
    secure: bool,
    metrics: &Metrics,
    conflicts: &[Conflict],
) -> Result<(), String> {
    for c in conflicts.iter().take(MAX_CONFLICT_LOG_LINES) {
        tracing::warn!(kind = c.kind, name = %c.name, detail = %c.detail, "conflict");
    }
    if conflicts.len() > MAX_CONFLICT_LOG_LINES {
        tracing::warn!(
            more = conflicts.len() - MAX_CONFLICT_LOG_LINES,
            "further conflicts not logged (see <root>/conflicts and the metric)"
        );
    }
    let json = conflict_report(conflicts);
    write_node(client, &layout.conflicts(), &json, secure)
        .await
        .map_err(|e| format!("writing conflicts: {e}"))?;
    metrics.conflicts.store(conflicts.len() as u64, Relaxed);
    Ok(())
}

/// The zone texts of `version`, and why it must be held back, if it must: it does not compile
/// with the servers' own compiler, or it drops `dropped` of `robots` robot records at once
/// (`over_guard`, the drop guard not overridden).
fn candidate(
    cfg: &Config,
    next: &Zones,
    compiled: &[(Zone, Patchable)],
    change: &Delta,
    dropped: usize,
    robots: usize,
    over_guard: bool,
) -> (Vec<ZoneText>, Vec<(Zone, Patchable)>, Option<String>) {
    let version = next.version();
    let texts: Vec<ZoneText> = next
        .bodies()
        .map(|b| ZoneText {
            origin: b.origin.clone(),
            text: b.render(version),
        })
        .collect();
    // Every zone compiled as servers will: changed by the delta where it was compiled before
    // (in proportion to the change, exactly as a whole compile), whole otherwise.
    let compiles: Result<Vec<(Zone, Patchable)>, String> = next
        .bodies()
        .zip(&texts)
        .map(|(body, text)| {
            let source = "reconciled zone";
            let before = compiled
                .iter()
                .find(|(z, _)| z.origin_text.trim_end_matches('.') == body.origin);
            let result = match before {
                Some((zone, base)) => {
                    let changes: Vec<&ZoneChange> = change
                        .changes
                        .iter()
                        .filter(|c| c.origin == body.origin)
                        .collect();
                    base.apply(zone, &changes, body, version, source)
                }
                None => geodns_zone::Zone::from_text(&text.origin, &text.text, source)
                    .map(|z| (z, Patchable::new(Some(body)))),
            };
            result.map_err(|e| e.to_string())
        })
        .collect();
    let hold = match (&compiles, over_guard) {
        (Err(e), _) => Some(format!("version {version} does not compile: {e}")),
        (Ok(_), true) => Some(format!(
            "version {version} would drop {dropped} of {robots} robot records (more than {:.0} %); held back until --force",
            cfg.guard.max_drop_share * 100.0
        )),
        _ => None,
    };
    (texts, compiles.unwrap_or_default(), hold)
}

/// Robot records in `last` that `change` leaves out: those it removes, and every one of the
/// zones it drops.
fn dropped(last: &Zones, change: &Delta) -> usize {
    let removed: usize = change.changes.iter().map(|c| c.removed.len()).sum();
    let gone: usize = last
        .bodies()
        .filter(|b| !change.zones.contains(&b.origin))
        .map(|b| b.robot_lines.len())
        .sum();
    removed + gone
}

/// Adds a persistent recursive watch on `path` again after a reconnection and returns it, or
/// keeps `old` if that fails (the periodic re-read still covers the gap). The new watch is in
/// place before the old one is dropped, so the server never lacks one.
pub(crate) async fn rewatch(
    client: &zk::Client,
    path: &str,
    old: zk::PersistentWatcher,
) -> zk::PersistentWatcher {
    match client
        .watch(path, zk::AddWatchMode::PersistentRecursive)
        .await
    {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, path, "cannot watch again after a reconnection");
            old
        }
    }
}
