//! The presenter (`geodns presenter`): watches the robots' registrations and the humans'
//! published zones in ZooKeeper, reconciles them ([`reconcile`](mod@reconcile)), validates the result with the
//! server's own zone loader, and publishes a versioned snapshot that every server follows.
//!
//! Several presenters run for availability; one publishes at a time: each takes ZooKeeper's lock
//! recipe under `<root>/presenters`, and the pointer moves only through the lock (a fenced
//! write), so a presenter that lost its session cannot move it. A publication interrupted at any
//! point leaves the pointer where it was (`geodns_snapshot::store`).
//!
//! Guards: a registration that vanishes stays for `guard.grace_ms` before its records leave;
//! a snapshot that would drop more than `guard.max_drop_share` of the robot records at once is
//! held back and reported (`<root>/held`, a metric, a log line) until `--force`; a read that
//! fails is never taken for an empty tree: nothing is published from a partial view.

pub mod config;
pub mod reconcile;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use geodns_daemon::prometheus::{Kind, Text};
use geodns_register::{node_name, Registration};
use geodns_snapshot::format::FORMAT;
use geodns_snapshot::{store, Layout, Snapshot, ZoneText};
use zookeeper_client as zk;

use crate::config::{norm, Config};
use crate::reconcile::{reconcile, render, Conflict, Robot, ZoneBody};

/// How long after a reconnection the presenter reads every registration once more.
const REREAD_AFTER_RECONNECT: Duration = Duration::from_secs(1);

/// The presenter's counters, rendered for Prometheus.
#[derive(Default)]
pub struct Metrics {
    leader: AtomicU64,
    version: AtomicU64,
    conflicts: AtomicU64,
    held: AtomicU64,
    robot_records: AtomicU64,
    publications: AtomicU64,
    registrations: AtomicU64,
    squatters: AtomicU64,
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let rows: [(&str, Kind, &str, &AtomicU64); 8] = [
            (
                "geodns_presenter_leader",
                Kind::Gauge,
                "1 while this presenter is the one publishing.",
                &self.leader,
            ),
            (
                "geodns_presenter_published_version",
                Kind::Gauge,
                "Version of the last snapshot this presenter published or found.",
                &self.version,
            ),
            (
                "geodns_presenter_conflicts",
                Kind::Gauge,
                "Records left out by the conflict policy in the last reconciliation.",
                &self.conflicts,
            ),
            (
                "geodns_presenter_held",
                Kind::Gauge,
                "1 while a snapshot is held back by the drop guard or because it does not compile.",
                &self.held,
            ),
            (
                "geodns_presenter_robot_records",
                Kind::Gauge,
                "Robot records in the last published snapshot.",
                &self.robot_records,
            ),
            (
                "geodns_presenter_publications_total",
                Kind::Counter,
                "Snapshots published by this presenter.",
                &self.publications,
            ),
            (
                "geodns_presenter_registrations",
                Kind::Gauge,
                "Registrations seen (live and in their grace period).",
                &self.registrations,
            ),
            (
                "geodns_presenter_lock_squatters",
                Kind::Gauge,
                "Nodes in the presenters' lock directory no presenter session owns (persistent ones): they keep every presenter waiting until removed (geodns presenter --remove-squatters).",
                &self.squatters,
            ),
        ];
        let mut t = Text::new();
        for (name, kind, help, v) in rows {
            t.single(name, kind, help, v.load(Relaxed));
        }
        t.finish()
    }
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// The registrations seen, with the time each vanished.
#[derive(Default)]
struct Registry {
    known: BTreeMap<String, (u64, Registration)>,
    vanished: HashMap<String, Instant>,
    invalid: BTreeMap<String, String>,
}

impl Registry {
    /// Reads the hosts tree: new nodes' data, vanished nodes stamped. A failed read returns the
    /// error and changes nothing.
    async fn refresh(&mut self, client: &zk::Client, layout: &Layout) -> Result<(), zk::Error> {
        let children: BTreeSet<String> = client
            .list_children(&layout.hosts())
            .await?
            .into_iter()
            .collect();
        let now = Instant::now();
        for node in &children {
            if self.known.contains_key(node) || self.invalid.contains_key(node) {
                self.vanished.remove(node);
                continue;
            }
            let Some((_, seq)) = node_name(node) else {
                self.invalid
                    .insert(node.clone(), "not <name>-<sequence>".into());
                continue;
            };
            match client.get_data(&format!("{}/{node}", layout.hosts())).await {
                Ok((data, _)) => match Registration::parse(&data) {
                    Ok(reg) => {
                        self.known.insert(node.clone(), (seq, reg));
                    }
                    Err(e) => {
                        self.invalid.insert(node.clone(), e.to_string());
                    }
                },
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        for node in self.known.keys() {
            if !children.contains(node) {
                self.vanished.entry(node.clone()).or_insert(now);
            }
        }
        self.invalid.retain(|n, _| children.contains(n));
        Ok(())
    }

    /// Forgets registrations that vanished longer than `grace` ago, and with them those that
    /// vanished within the last quarter of a grace period of them: hosts that go together leave
    /// the snapshot together, so the drop guard judges a mass deregistration as one. Returns
    /// when the next one will be due.
    fn expire(&mut self, grace: Duration) -> Option<Instant> {
        let now = Instant::now();
        let due = self
            .vanished
            .values()
            .any(|t| now.duration_since(*t) >= grace);
        if due {
            let cutoff = grace - grace / 4;
            let gone: Vec<String> = self
                .vanished
                .iter()
                .filter(|(_, t)| now.duration_since(**t) >= cutoff)
                .map(|(n, _)| n.clone())
                .collect();
            for n in gone {
                self.vanished.remove(&n);
                self.known.remove(&n);
            }
        }
        self.vanished.values().map(|t| *t + grace).min()
    }

    fn robots(&self) -> Vec<Robot> {
        self.known
            .iter()
            .map(|(node, (seq, reg))| Robot {
                node: node.clone(),
                seq: *seq,
                reg: reg.clone(),
                live: !self.vanished.contains_key(node),
            })
            .collect()
    }
}

/// Reads the human zones: origin (normalised) -> text. Nodes for origins that are not internal
/// zones are returned apart, to be reported.
async fn read_humans(
    client: &zk::Client,
    layout: &Layout,
    cfg: &Config,
) -> Result<(BTreeMap<String, String>, Vec<String>), zk::Error> {
    let mut out = BTreeMap::new();
    let mut stray = Vec::new();
    for child in client.list_children(&layout.human()).await? {
        let origin = norm(&child);
        if !cfg.zones.iter().any(|z| norm(&z.origin) == origin) {
            stray.push(origin);
            continue;
        }
        match client.get_data(&layout.human_zone(&origin)).await {
            Ok((data, _)) => {
                out.insert(origin, String::from_utf8_lossy(&data).into_owned());
            }
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((out, stray))
}

/// Checks a human zone text as the servers will compile it: the origin is an internal zone,
/// the SOA and apex NS are left to the presenter, and the text passes the server's loader with
/// the presenter's apex records around it. What this refuses, `geodns publish` refuses.
pub fn check_human(cfg: &Config, origin: &str, text: &str) -> Result<(), String> {
    let origin = norm(origin);
    let zone = cfg
        .zones
        .iter()
        .find(|z| norm(&z.origin) == origin)
        .ok_or_else(|| format!("{origin} is not an internal zone of this presenter's config"))?;
    let owners = reconcile::human_owners(&origin, text)?;
    if let Some(types) = owners.get(&origin) {
        for t in [
            hickory_proto::rr::RecordType::SOA,
            hickory_proto::rr::RecordType::NS,
        ] {
            if types.contains(&t) {
                return Err(format!(
                    "{origin}: {t} at the apex is the presenter's (set it in its config)"
                ));
            }
        }
    }
    let body = reconcile(
        std::slice::from_ref(zone),
        &[],
        &[],
        &[(origin.clone(), text.to_owned())].into(),
        cfg.guard.max_rrset_records,
    );
    let full = render(zone, &body.zones[0], 1);
    geodns_zone::Zone::from_text(&origin, &full, &format!("human zone {origin}"))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Publishes a checked human zone text to ZooKeeper (`geodns publish`).
pub async fn publish_human(cfg: &Config, origin: &str, text: &str) -> Result<(), String> {
    check_human(cfg, origin, text)?;
    if text.len() > geodns_snapshot::format::CHUNK_BYTES {
        return Err(format!(
            "{} bytes: a human zone must fit one ZooKeeper node ({} bytes)",
            text.len(),
            geodns_snapshot::format::CHUNK_BYTES
        ));
    }
    let layout = cfg.zookeeper.layout()?;
    let client = connect(cfg).await?;
    store::ensure_path(&client, &layout.human())
        .await
        .map_err(|e| e.to_string())?;
    let path = layout.human_zone(origin);
    match client.set_data(&path, text.as_bytes(), None).await {
        Ok(_) => Ok(()),
        Err(zk::Error::NoNode) => client
            .create(&path, text.as_bytes(), &persistent())
            .await
            .map(|_| ())
            .map_err(|e| format!("{path}: {e}")),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

/// Runs the presenter until the process ends: connect, wait for leadership, reconcile and
/// publish on every change. `force` lets the next held snapshot through the drop guard.
pub async fn run(cfg: Config, force: bool, metrics: Arc<Metrics>) {
    let layout = cfg.zookeeper.layout().expect("validated with the config");
    let mut force = force;
    let mut backoff = geodns_snapshot::backoff::Backoff::new(Duration::from_millis(100));
    loop {
        let client = geodns_snapshot::backoff::connect(
            &cfg.zookeeper.connect,
            Duration::from_millis(cfg.zookeeper.session_timeout_ms),
            &mut backoff,
            "nothing is published meanwhile",
        )
        .await;
        backoff.reset();
        if let Err(e) = lead(&client, &cfg, &layout, &mut force, &metrics).await {
            tracing::warn!(error = %e, "presenter session ended");
            tokio::time::sleep(backoff.peek()).await;
        }
        metrics.leader.store(0, Relaxed);
    }
}

/// Conflicts logged one per line after each change; the rest are counted.
const MAX_CONFLICT_LOG_LINES: usize = 20;

/// Largest conflict report, bytes: well under ZooKeeper's 1 MB node limit (6,000 junk
/// registrations once made a report the ensemble refused, and the presenter restarted in a
/// loop).
const MAX_CONFLICT_REPORT_BYTES: usize = 256 * 1024;

/// The conflict report written to `<root>/conflicts`: the total, the count per kind, and the
/// conflicts themselves, as many as fit [`MAX_CONFLICT_REPORT_BYTES`] (`listed` says how many).
fn conflict_report(conflicts: &[Conflict]) -> Vec<u8> {
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for c in conflicts {
        *by_kind.entry(c.kind).or_default() += 1;
    }
    let mut listed = Vec::new();
    let mut bytes = 200 + by_kind.len() * 64;
    for c in conflicts {
        let one = serde_json::to_vec(c).expect("a conflict serialises");
        if bytes + one.len() + 8 > MAX_CONFLICT_REPORT_BYTES {
            break;
        }
        bytes += one.len() + 8;
        listed.push(c);
    }
    let report = serde_json::json!({
        "total": conflicts.len(),
        "by_kind": by_kind,
        "listed": listed.len(),
        "conflicts": listed,
    });
    serde_json::to_vec(&report).expect("the report serialises")
}

/// How often a presenter waiting for the lock looks for squatters.
const SQUATTER_CHECK: Duration = Duration::from_secs(2);

/// The nodes under the presenters' lock directory that no session owns (persistent nodes):
/// the lock recipe's nodes are ephemeral, so these can only block it.
async fn squatters(client: &zk::Client, dir: &str) -> Result<Vec<String>, zk::Error> {
    let mut out = Vec::new();
    for child in client.list_children(dir).await? {
        let path = format!("{dir}/{child}");
        if let Some(stat) = client.check_stat(&path).await? {
            if stat.ephemeral_owner == 0 {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// A one-off session for a command (`publish`, `--remove-squatters`).
async fn connect(cfg: &Config) -> Result<zk::Client, String> {
    geodns_snapshot::backoff::connect_once(
        &cfg.zookeeper.connect,
        Duration::from_millis(cfg.zookeeper.session_timeout_ms),
    )
    .await
    .map_err(|e| format!("ZooKeeper {}: {e}", cfg.zookeeper.connect))
}

/// Removes the nodes that squat the presenters' lock (`geodns presenter --remove-squatters`),
/// returning them. Only persistent nodes go: a live presenter's ephemeral node is never
/// touched.
pub async fn remove_squatters(cfg: &Config) -> Result<Vec<String>, String> {
    let layout = cfg.zookeeper.layout()?;
    let client = connect(cfg).await?;
    let dir = layout.presenters();
    let found = match squatters(&client, &dir).await {
        Ok(f) => f,
        Err(zk::Error::NoNode) => Vec::new(),
        Err(e) => return Err(format!("{dir}: {e}")),
    };
    for path in &found {
        match client.delete(path, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(format!("{path}: {e}")),
        }
    }
    Ok(found)
}

/// What the presenter last published (or found published when it became leader).
struct Published {
    version: u64,
    /// The pointer znode's version, for the conditional move.
    znode_version: Option<i32>,
    bodies: Vec<ZoneBody>,
    robot: BTreeSet<String>,
}

async fn last_published(
    client: &zk::Client,
    layout: &Layout,
    cfg: &Config,
) -> Result<Published, String> {
    let Some((pointer, znode_version)) = store::read_pointer(client, layout)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Published {
            version: 0,
            znode_version: None,
            bodies: Vec::new(),
            robot: BTreeSet::new(),
        });
    };
    let snap = match store::fetch(client, layout, &pointer).await {
        Ok(s) => s,
        Err(store::StoreError::Snapshot(e)) => {
            // A damaged current snapshot: servers refuse it and keep theirs; publish the next
            // version afresh (nothing to compare against, so the drop guard cannot apply).
            tracing::error!(version = pointer.version, error = %e, "the published snapshot is damaged; the next one replaces it");
            return Ok(Published {
                version: pointer.version,
                znode_version: Some(znode_version),
                bodies: Vec::new(),
                robot: BTreeSet::new(),
            });
        }
        Err(e) => return Err(e.to_string()),
    };
    let bodies: Vec<ZoneBody> = cfg
        .zones
        .iter()
        .filter_map(|z| {
            let origin = norm(&z.origin);
            snap.zones
                .iter()
                .find(|t| norm(&t.origin) == origin)
                .map(|t| ZoneBody {
                    origin,
                    apex: reconcile::apex_of(&t.text),
                    robot_lines: reconcile::robot_lines_of(&t.text),
                    human: reconcile::human_of(&t.text),
                })
        })
        .collect();
    let robot = bodies
        .iter()
        .flat_map(|b| b.robot_lines.iter().cloned())
        .collect();
    Ok(Published {
        version: pointer.version,
        znode_version: Some(znode_version),
        bodies,
        robot,
    })
}

async fn write_node(client: &zk::Client, path: &str, data: &[u8]) -> Result<(), zk::Error> {
    match client.set_data(path, data, None).await {
        Ok(_) => Ok(()),
        Err(zk::Error::NoNode) => client.create(path, data, &persistent()).await.map(|_| ()),
        Err(e) => Err(e),
    }
}

async fn lead(
    client: &zk::Client,
    cfg: &Config,
    layout: &Layout,
    force: &mut bool,
    metrics: &Metrics,
) -> Result<(), String> {
    let zerr = |what: &str| {
        let what = what.to_owned();
        move |e: zk::Error| format!("{what}: {e}")
    };
    for p in [
        layout.hosts(),
        layout.human(),
        layout.presenters(),
        layout.snapshots(),
    ] {
        store::ensure_path(client, &p)
            .await
            .map_err(|e| e.to_string())?;
    }
    let presenters = layout.presenters();
    let prefix = zk::LockPrefix::new_curator(&presenters, "presenter-").map_err(zerr("lock"))?;
    let options = zk::LockOptions::new(zk::Acls::anyone_all());
    tracing::info!("waiting for leadership");
    // The lock recipe waits behind every lower node; one no live session owns (a persistent
    // node, written by hand or by a hostile client) would keep every presenter waiting for
    // ever. Look for such nodes while waiting, and say so.
    let lock = {
        let waiting = client.lock(prefix, b"", options);
        tokio::pin!(waiting);
        loop {
            tokio::select! {
                l = &mut waiting => break l.map_err(zerr("lock"))?,
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
    };
    metrics.squatters.store(0, Relaxed);
    metrics.leader.store(1, Relaxed);
    tracing::info!(lock = lock.lock_path(), "leader: publishing");

    // Watches first, then the first read: no change can fall between them.
    let mut hosts_w = client
        .watch(&layout.hosts(), zk::AddWatchMode::PersistentRecursive)
        .await
        .map_err(zerr("watch hosts"))?;
    let mut human_w = client
        .watch(&layout.human(), zk::AddWatchMode::PersistentRecursive)
        .await
        .map_err(zerr("watch human"))?;
    let mut state = client.state_watcher();
    let mut last = last_published(client, layout, cfg).await?;
    metrics.version.store(last.version, Relaxed);
    let mut registry = Registry::default();
    let mut reported: Option<Vec<Conflict>> = None;
    // A hold reported by an earlier leader stays reported until a publication clears it.
    let mut held_reason: Option<String> = match client.get_data(&layout.held()).await {
        Ok((d, _)) if !d.is_empty() => Some(String::from_utf8_lossy(&d).into_owned()),
        Ok(_) | Err(zk::Error::NoNode) => None,
        Err(e) => return Err(format!("reading held: {e}")),
    };
    let grace = Duration::from_millis(cfg.guard.grace_ms);
    let mut reread_at: Option<Instant> = None;
    loop {
        registry
            .refresh(client, layout)
            .await
            .map_err(zerr("reading registrations"))?;
        let (humans, stray) = read_humans(client, layout, cfg)
            .await
            .map_err(zerr("reading human zones"))?;
        let next_expiry = registry.expire(grace);
        metrics
            .registrations
            .store(registry.known.len() as u64, Relaxed);
        let mut rec = reconcile(
            &cfg.zones,
            &cfg.rules,
            &registry.robots(),
            &humans,
            cfg.guard.max_rrset_records,
        );
        rec.conflicts.extend(stray.into_iter().map(|o| Conflict {
            kind: "outside_zones",
            name: o.clone(),
            detail: format!("human zone {o} is not an internal zone of the presenter's config"),
        }));
        rec.conflicts
            .extend(registry.invalid.iter().map(|(node, e)| Conflict {
                kind: "invalid_registration",
                name: node.clone(),
                detail: e.clone(),
            }));
        rec.conflicts.sort();
        if reported.as_ref() != Some(&rec.conflicts) {
            for c in rec.conflicts.iter().take(MAX_CONFLICT_LOG_LINES) {
                tracing::warn!(kind = c.kind, name = %c.name, detail = %c.detail, "conflict");
            }
            if rec.conflicts.len() > MAX_CONFLICT_LOG_LINES {
                tracing::warn!(
                    more = rec.conflicts.len() - MAX_CONFLICT_LOG_LINES,
                    "further conflicts not logged (see <root>/conflicts and the metric)"
                );
            }
            let json = conflict_report(&rec.conflicts);
            write_node(client, &layout.conflicts(), &json)
                .await
                .map_err(zerr("writing conflicts"))?;
            metrics.conflicts.store(rec.conflicts.len() as u64, Relaxed);
            reported = Some(rec.conflicts.clone());
        }

        if rec.zones != last.bodies {
            let new_robot: BTreeSet<String> =
                rec.robot_records().into_iter().map(str::to_owned).collect();
            let dropped = last.robot.difference(&new_robot).count();
            let share = cfg.guard.max_drop_share;
            let over = dropped >= cfg.guard.min_dropped
                && dropped as f64 > share * last.robot.len() as f64;
            let version = last.version + 1;
            let texts: Vec<ZoneText> = cfg
                .zones
                .iter()
                .zip(&rec.zones)
                .map(|(z, b)| ZoneText {
                    origin: b.origin.clone(),
                    text: render(z, b, version),
                })
                .collect();
            let compiles = texts.iter().try_for_each(|t| {
                geodns_zone::Zone::from_text(&t.origin, &t.text, "reconciled zone")
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            let hold = match (&compiles, over && !*force) {
                (Err(e), _) => Some(format!("version {version} does not compile: {e}")),
                (Ok(()), true) => Some(format!(
                    "version {version} would drop {dropped} of {} robot records (more than {:.0} %); held back until --force",
                    last.robot.len(),
                    share * 100.0
                )),
                _ => None,
            };
            if let Some(reason) = hold {
                if held_reason.as_deref() != Some(reason.as_str()) {
                    tracing::error!(%reason, "snapshot held back");
                    write_node(client, &layout.held(), reason.as_bytes())
                        .await
                        .map_err(zerr("writing held"))?;
                    metrics.held.store(1, Relaxed);
                    held_reason = Some(reason);
                }
            } else {
                let snap = Snapshot {
                    format: FORMAT,
                    version,
                    created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                        .to_string(),
                    zones: texts,
                };
                match store::publish(client, layout, &snap, last.znode_version, Some(&lock)).await {
                    Ok(pointer) => {
                        tracing::info!(
                            version,
                            bytes = pointer.size,
                            chunks = pointer.chunks,
                            robot_records = new_robot.len(),
                            conflicts = rec.conflicts.len(),
                            "published"
                        );
                        metrics.publications.fetch_add(1, Relaxed);
                        metrics.version.store(version, Relaxed);
                        metrics.robot_records.store(new_robot.len() as u64, Relaxed);
                        last = Published {
                            version,
                            znode_version: Some(last.znode_version.map_or(0, |v| v + 1)),
                            bodies: rec.zones,
                            robot: new_robot,
                        };
                        *force = false;
                        if held_reason.take().is_some() {
                            write_node(client, &layout.held(), b"")
                                .await
                                .map_err(zerr("clearing held"))?;
                            metrics.held.store(0, Relaxed);
                        }
                    }
                    Err(store::StoreError::Raced(now)) => {
                        tracing::warn!(now, "the pointer moved under this presenter; re-reading");
                        last = last_published(client, layout, cfg).await?;
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
            _ = hosts_w.changed() => {}
            _ = human_w.changed() => {}
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
                    hosts_w = rewatch(client, &layout.hosts(), hosts_w).await;
                    human_w = rewatch(client, &layout.human(), human_w).await;
                }
            }
            _ = tokio::time::sleep(until) => {}
        }
        if reread_at.is_some_and(|t| t <= Instant::now()) {
            reread_at = None;
        }
        // Let a burst of changes settle into one snapshot.
        tokio::time::sleep(Duration::from_millis(50)).await;
        loop {
            let drain = async {
                tokio::select! {
                    _ = hosts_w.changed() => {}
                    _ = human_w.changed() => {}
                }
            };
            if tokio::time::timeout(Duration::ZERO, drain).await.is_err() {
                break;
            }
        }
    }
}
/// Adds a persistent recursive watch on `path` again after a reconnection and returns it, or
/// keeps `old` if that fails (the periodic re-read still covers the gap). The new watch is in
/// place before the old one is dropped, so the server never lacks one.
async fn rewatch(
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

#[cfg(test)]
mod report_tests {
    use super::*;

    #[test]
    fn a_conflict_report_always_fits_a_node() {
        let many: Vec<Conflict> = (0..50_000)
            .map(|i| Conflict {
                kind: if i % 2 == 0 {
                    "invalid_registration"
                } else {
                    "outside_zones"
                },
                name: format!("junk{i}.example.{}", "x".repeat(40)),
                detail: "y".repeat(60),
            })
            .collect();
        let r = conflict_report(&many);
        assert!(r.len() <= MAX_CONFLICT_REPORT_BYTES, "{}", r.len());
        let v: serde_json::Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v["total"], 50_000);
        assert_eq!(v["by_kind"]["invalid_registration"], 25_000);
        let listed = v["listed"].as_u64().unwrap();
        assert!(listed > 100 && listed < 50_000, "{listed}");
        assert_eq!(v["conflicts"].as_array().unwrap().len() as u64, listed);
    }
}
