//! Writing to ZooKeeper: the last published snapshot read back, nodes written, the conflict
//! report, and the one-off session of a command.

use std::collections::BTreeMap;
use std::sync::Arc;

use geodns_snapshot::compiled::Patchable;
use geodns_snapshot::delta::Zones;
use geodns_zone::Zone;

use geodns_snapshot::access::{self, Node, Role};
use geodns_snapshot::format::MAX_VERSION;
use geodns_snapshot::zone_text::ZoneBody;
use geodns_snapshot::{store, Layout, Pointer, Trust};
use zookeeper_client as zk;

use crate::config::{norm, Config};
use crate::reconcile::Conflict;

/// What the presenter last published (or found published when it became leader): the
/// baseline the next publication is compared with (the drop guard) and numbered after.
#[derive(Clone)]
pub(crate) struct Published {
    pub(crate) version: u64,
    /// The pointer znode's version, for the conditional move.
    pub(crate) znode_version: Option<i32>,
    /// The pointer, when it is genuine: the next publication is a delta against it.
    pub(crate) pointer: Option<Pointer>,
    /// The zones as parts (shared: the baseline kept across sessions is this one).
    pub(crate) zones: Arc<Zones>,
    /// The zones compiled, with what patching each needs (empty: compiled whole next time).
    pub(crate) compiled: Arc<Vec<(Zone, Patchable)>>,
    /// Whether the pointer names what a presenter published (signed by this presenter's key,
    /// when it has one). A pointer that is not is published over at once.
    pub(crate) ours: bool,
}

/// A one-off session for a command, as `role` (`publish` as a human, `--remove-squatters` as
/// a presenter).
pub(crate) async fn connect(cfg: &Config, role: Role) -> Result<zk::Client, String> {
    geodns_snapshot::backoff::connect_once(&cfg.zookeeper, role)
        .await
        .map_err(|e| format!("ZooKeeper {}: {e}", cfg.zookeeper.connect))
}

/// Conflicts logged one per line after each change; the rest are counted.
pub(crate) const MAX_CONFLICT_LOG_LINES: usize = 20;

/// Largest conflict report, bytes: well under ZooKeeper's 1 MB node limit (6,000 junk
/// registrations once made a report the ensemble refused, and the presenter restarted in a
/// loop).
pub(crate) const MAX_CONFLICT_REPORT_BYTES: usize = 256 * 1024;

/// The conflict report written to `<root>/conflicts`: the total, the count per kind, and the
/// conflicts themselves, as many as fit [`MAX_CONFLICT_REPORT_BYTES`] (`listed` says how many).
pub(crate) fn conflict_report(conflicts: &[Conflict]) -> Vec<u8> {
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

pub(crate) async fn last_published(
    client: &zk::Client,
    layout: &Layout,
    cfg: &Config,
    trust: &Trust,
    baseline: Option<&Published>,
) -> Result<Published, String> {
    let Some((pointer, znode_version)) = store::read_pointer(client, layout)
        .await
        .map_err(|e| e.to_string())?
    else {
        // No pointer is not "no records": a deleted tree must not empty the fleet's DNS. The
        // last publication stays the baseline, so the drop guard holds what would vanish.
        if let Some(b) = baseline {
            tracing::error!(
                version = b.version,
                "the snapshot pointer is gone (a deleted tree?); publishing again from the last snapshot this presenter published"
            );
            return Ok(Published {
                znode_version: None,
                pointer: None,
                ours: false,
                ..b.clone()
            });
        }
        return Ok(Published {
            version: 0,
            znode_version: None,
            pointer: None,
            zones: Arc::new(Zones::new(0, String::new(), Vec::new())),
            compiled: Arc::default(),
            ours: true,
        });
    };
    let snap = match store::fetch_version(client, layout, &pointer, trust).await {
        Ok((s, _)) => s,
        Err(store::StoreError::Snapshot(e)) => {
            // A damaged or foreign snapshot: servers refuse it and keep theirs; publish over it
            // at once, numbered after the last one this presenter knows to be genuine.
            tracing::error!(version = pointer.version, error = %e, "the published snapshot is damaged or not this presenter's; the next one replaces it");
            if let Some(b) = baseline {
                return Ok(Published {
                    znode_version: Some(znode_version),
                    pointer: None,
                    ours: false,
                    ..b.clone()
                });
            }
            return Ok(Published {
                version: pointer.version.min(MAX_VERSION - 1),
                znode_version: Some(znode_version),
                pointer: None,
                zones: Arc::new(Zones::new(0, String::new(), Vec::new())),
                compiled: Arc::default(),
                ours: false,
            });
        }
        Err(e) => return Err(e.to_string()),
    };
    if let Some(b) = baseline.filter(|b| pointer.version < b.version) {
        // A genuine but older pointer put back (a replay): servers refuse it as a rollback;
        // publish over it, never numbering backwards.
        tracing::error!(
            version = pointer.version,
            published = b.version,
            "the snapshot pointer went back to an older version; the next one replaces it"
        );
        return Ok(Published {
            znode_version: Some(znode_version),
            pointer: None,
            ours: false,
            ..b.clone()
        });
    }
    let bodies: Vec<ZoneBody> = cfg
        .zones
        .iter()
        .filter_map(|z| {
            let origin = norm(&z.origin);
            snap.zones
                .iter()
                .find(|t| norm(&t.origin) == origin)
                .and_then(|t| ZoneBody::parse(&origin, &t.text))
        })
        .collect();
    Ok(Published {
        version: pointer.version,
        znode_version: Some(znode_version),
        zones: Arc::new(Zones::new(pointer.version, snap.created_at.clone(), bodies)),
        pointer: Some(pointer),
        compiled: Arc::default(),
        ours: true,
    })
}

/// Writes a report node (`conflicts`, `held`), creating it if missing.
pub(crate) async fn write_node(
    client: &zk::Client,
    path: &str,
    data: &[u8],
    secure: bool,
) -> Result<(), zk::Error> {
    match client.set_data(path, data, None).await {
        Ok(_) => Ok(()),
        Err(zk::Error::NoNode) => client
            .create(path, data, &access::persistent(Node::Reports, secure))
            .await
            .map(|_| ()),
        Err(e) => Err(e),
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
