//! Publishing and fetching snapshots in ZooKeeper: each version's delta (one node), a whole
//! snapshot in chunks every `full_every` publications or when the deltas since the last one
//! outweigh it, then the pointer; a reader takes the deltas, or a whole snapshot and the
//! deltas after it ([`fetch_version`]).
//!
//! Publication is whole or nothing for every reader: the chunks of version N are written under
//! their own node first, and only then does the pointer move to N (a conditional set on the
//! pointer's znode version, so two publishers cannot both move it from the same state). A
//! publisher killed half-way leaves chunks that no pointer names; the next publication removes
//! them. Readers fetch the chunks the pointer names and verify size and checksum, so a chunk
//! removed or changed under them makes the fetch fail, not a half snapshot.

use crate::access::{self, Node};
use crate::signature::{SigningKey, Trust};
use zookeeper_client as zk;

use crate::delta::{Delta, Zones};
use crate::format::{Pointer, Snapshot, SnapshotError, CHUNK_BYTES};
use crate::layout::Layout;

/// How many published versions are kept besides the current one (readers still fetching an
/// older pointer finish on it).
pub const KEEP_VERSIONS: usize = 3;

/// Why a publication or fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// ZooKeeper said no, or is unreachable.
    #[error("ZooKeeper {op} {path}: {source}")]
    Zk {
        /// The operation.
        op: &'static str,
        /// The path.
        path: String,
        /// The client's error.
        source: zk::Error,
    },
    /// The data is not a valid snapshot.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Another publisher moved the pointer since this one read it.
    #[error("the pointer moved to version {0} meanwhile; not published")]
    Raced(u64),
}

fn zk_err<'p>(op: &'static str, path: &'p str) -> impl FnOnce(zk::Error) -> StoreError + 'p {
    move |source| StoreError::Zk {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Creates `path` and its missing ancestors (persistent, empty), with the ACL of `node`
/// ([`access`]; open to anyone unless `secure`).
pub async fn ensure_path(
    client: &zk::Client,
    path: &str,
    node: Node,
    secure: bool,
) -> Result<(), StoreError> {
    // Looked at first: with ACLs a component may not create in the parent (only `geodns zk
    // init` does), and ZooKeeper checks that before it sees the node exists.
    if client
        .check_stat(path)
        .await
        .map_err(zk_err("stat", path))?
        .is_some()
    {
        return Ok(());
    }
    match client.mkdir(path, &access::persistent(node, secure)).await {
        Ok(()) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(zk_err("mkdir", path)(e)),
    }
}

/// The current pointer and its znode version, if one was ever published.
pub async fn read_pointer(
    client: &zk::Client,
    layout: &Layout,
) -> Result<Option<(Pointer, i32)>, StoreError> {
    let path = layout.pointer();
    match client.get_data(&path).await {
        Ok((data, stat)) => Ok(Some((Pointer::parse(&data)?, stat.version))),
        Err(zk::Error::NoNode) => Ok(None),
        Err(e) => Err(zk_err("get", &path)(e)),
    }
}

/// One publication: the whole snapshot, and what lets servers take it as a change.
#[derive(Clone, Copy, Debug)]
pub struct Publication<'a> {
    /// The snapshot (its version the current pointer's + 1).
    pub snap: &'a Snapshot,
    /// Its state digest ([`crate::delta::Zones::state`]), for the pointer.
    pub state: Option<&'a str>,
    /// The change from the version before, published beside it when it fits one node.
    pub delta: Option<&'a Delta>,
    /// The pointer this publication replaces: how long the chain of deltas since the last
    /// whole snapshot already is.
    pub previous: Option<&'a Pointer>,
    /// A whole snapshot at least every this many publications (and whenever the deltas since
    /// the last one outweigh it).
    pub full_every: u64,
}

impl<'a> Publication<'a> {
    /// A whole snapshot and nothing else (as before deltas).
    pub fn whole(snap: &'a Snapshot) -> Publication<'a> {
        Publication {
            snap,
            state: None,
            delta: None,
            previous: None,
            full_every: 1,
        }
    }
}

/// Publishes `publication` (whose version must be the current pointer's + 1): its delta, if it
/// has one and it fits a node; its chunks, when the chain of deltas since the last whole
/// snapshot is long or heavy enough ([`Publication::full_every`]) or there is no delta; then
/// the pointer, conditional on the pointer's znode version `expected` (`None`: no pointer
/// yet). With `fence` (the leader's lock), the pointer moves only while the lock is held, so a
/// presenter that lost leadership mid-publication cannot move it. Then removes what no server
/// needs any more (the whole snapshots and deltas no server can still want).
pub async fn publish(
    client: &zk::Client,
    layout: &Layout,
    publication: &Publication<'_>,
    expected: Option<i32>,
    fence: Option<&zk::LockClient<'_>>,
    signer: Option<&SigningKey>,
    secure: bool,
) -> Result<Pointer, StoreError> {
    let snap = publication.snap;
    let persistent = || access::persistent(Node::Snapshots, secure);
    let (bytes, mut pointer) = snap.encode();
    if let Some(key) = signer {
        key.sign(&bytes, &mut pointer);
    }
    pointer.state = publication.state.map(str::to_owned);
    let sealed = publication
        .delta
        .filter(|d| {
            d.version == snap.version && publication.previous.is_some_and(|p| p.version == d.from)
        })
        .map(|d| d.sealed(signer))
        .filter(|s| s.len() <= CHUNK_BYTES);
    let chain = match (&sealed, publication.previous) {
        (Some(s), Some(prev)) if prev.state.is_some() => {
            let since = snap.version - prev.full_version();
            let weight = prev.delta_bytes + s.len() as u64;
            (since < publication.full_every.max(1) && weight <= pointer.size)
                .then_some((prev.full_version(), weight))
        }
        _ => None,
    };
    if let Some((full, weight)) = chain {
        pointer.full = Some(full);
        pointer.delta_bytes = weight;
    }
    ensure_path(client, &layout.snapshots(), Node::Snapshots, secure).await?;
    let dir = layout.version(snap.version);
    let delta_path = layout.delta(snap.version);
    // Nodes of this version can only be from an interrupted publication: start them afresh.
    remove_tree(client, &dir).await?;
    remove_tree(client, &delta_path).await?;
    if let Some(s) = &sealed {
        ensure_path(client, &layout.deltas(), Node::Snapshots, secure).await?;
        client
            .create(&delta_path, s, &persistent())
            .await
            .map_err(zk_err("create", &delta_path))?;
    }
    if chain.is_none() {
        // The version's node holds its pointer, so a server that finds a later pointer can
        // still fetch and verify this whole snapshot and apply the deltas after it.
        client
            .create(&dir, &pointer.to_bytes(), &persistent())
            .await
            .map_err(zk_err("create", &dir))?;
        for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
            let path = layout.chunk(snap.version, i as u32);
            client
                .create(&path, chunk, &persistent())
                .await
                .map_err(zk_err("create", &path))?;
        }
    }
    let ptr_path = layout.pointer();
    let data = pointer.to_bytes();
    let opts = persistent();
    let moved = match (expected, fence) {
        (Some(v), Some(f)) => f.set_data(&ptr_path, &data, Some(v)).await.map(|_| ()),
        (Some(v), None) => client.set_data(&ptr_path, &data, Some(v)).await.map(|_| ()),
        (None, Some(f)) => f.create(&ptr_path, &data, &opts).await.map(|_| ()),
        (None, None) => client.create(&ptr_path, &data, &opts).await.map(|_| ()),
    };
    match moved {
        Ok(()) => {}
        Err(zk::Error::BadVersion | zk::Error::NodeExists) => {
            let now = read_pointer(client, layout)
                .await?
                .map_or(0, |(p, _)| p.version);
            remove_tree(client, &dir).await?;
            remove_tree(client, &delta_path).await?;
            return Err(StoreError::Raced(now));
        }
        Err(e) => return Err(zk_err("set", &ptr_path)(e)),
    }
    collect_garbage(client, layout, &pointer).await?;
    Ok(pointer)
}

/// Whole snapshots kept: the current one, the one before it, and any of the
/// [`KEEP_VERSIONS`] versions before the pointer's (readers still fetching an older pointer
/// finish on it).
const KEEP_WHOLE: usize = 2;

/// Removes what no server needs: whole snapshots other than the last [`KEEP_WHOLE`] and those
/// of the last [`KEEP_VERSIONS`] versions, deltas older than the oldest whole snapshot kept
/// (a server that far behind loads a whole one), and anything beyond the pointer (left by an
/// interrupted publication).
async fn collect_garbage(
    client: &zk::Client,
    layout: &Layout,
    pointer: &Pointer,
) -> Result<(), StoreError> {
    let current = pointer.version;
    let parent = layout.snapshots();
    let mut versions: Vec<u64> = client
        .list_children(&parent)
        .await
        .map_err(zk_err("list", &parent))?
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    versions.sort_unstable();
    let whole: Vec<u64> = versions.iter().copied().filter(|&v| v <= current).collect();
    let oldest_whole = whole
        .len()
        .checked_sub(KEEP_WHOLE)
        .map_or(whole.first(), |i| whole.get(i))
        .copied()
        .unwrap_or(current);
    for v in versions {
        let keep = v <= current && (v >= oldest_whole || current - v <= KEEP_VERSIONS as u64);
        if !keep {
            remove_tree(client, &layout.version(v)).await?;
        }
    }
    let deltas = layout.deltas();
    let names = match client.list_children(&deltas).await {
        Ok(n) => n,
        Err(zk::Error::NoNode) => return Ok(()),
        Err(e) => return Err(zk_err("list", &deltas)(e)),
    };
    for v in names.iter().filter_map(|c| c.parse::<u64>().ok()) {
        if v <= oldest_whole || v > current {
            remove_tree(client, &layout.delta(v)).await?;
        }
    }
    Ok(())
}

/// Deletes a node and its children (one level: version nodes hold chunks only; a delta node
/// has none).
async fn remove_tree(client: &zk::Client, path: &str) -> Result<(), StoreError> {
    let children = match client.list_children(path).await {
        Ok(c) => c,
        Err(zk::Error::NoNode) => return Ok(()),
        Err(e) => return Err(zk_err("list", path)(e)),
    };
    for c in children {
        let child = format!("{path}/{c}");
        match client.delete(&child, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(zk_err("delete", &child)(e)),
        }
    }
    match client.delete(path, None).await {
        Ok(()) | Err(zk::Error::NoNode) => Ok(()),
        Err(e) => Err(zk_err("delete", path)(e)),
    }
}

/// Fetches the chunks `pointer` names and verifies them into a snapshot.
pub async fn fetch(
    client: &zk::Client,
    layout: &Layout,
    pointer: &Pointer,
    trust: &Trust,
) -> Result<Snapshot, StoreError> {
    let mut bytes = Vec::with_capacity(pointer.size.min(64 << 20) as usize);
    for i in 0..pointer.chunks {
        let path = layout.chunk(pointer.version, i);
        let data = match client.get_data(&path).await {
            Ok((data, _)) => data,
            // A chunk the pointer names is missing: this snapshot is damaged, not late.
            Err(zk::Error::NoNode) => {
                return Err(SnapshotError::Mismatch {
                    version: pointer.version,
                    problem: format!("chunk {i} of {} is missing", pointer.chunks),
                }
                .into())
            }
            Err(e) => return Err(zk_err("get", &path)(e)),
        };
        bytes.extend_from_slice(&data);
        if bytes.len() as u64 > pointer.size {
            break;
        }
    }
    let snap = Snapshot::decode(pointer, &bytes)?;
    trust.check(pointer, &bytes)?;
    Ok(snap)
}

/// The delta that makes `version`, checked ([`Delta::unseal`]), with the node's bytes (for a
/// journal); `None` when it is not there (never published, or collected: the reader loads a
/// whole snapshot instead).
pub async fn fetch_delta(
    client: &zk::Client,
    layout: &Layout,
    version: u64,
    trust: &Trust,
) -> Result<Option<(Delta, Vec<u8>)>, StoreError> {
    let path = layout.delta(version);
    match client.get_data(&path).await {
        Ok((data, _)) => Ok(Some((Delta::unseal(version, &data, trust)?, data))),
        Err(zk::Error::NoNode) => Ok(None),
        Err(e) => Err(zk_err("get", &path)(e)),
    }
}

/// The pointer of the whole snapshot `pointer` builds on ([`Pointer::full`]), as its version's
/// node holds it.
pub async fn full_pointer(
    client: &zk::Client,
    layout: &Layout,
    pointer: &Pointer,
) -> Result<Pointer, StoreError> {
    let full = pointer.full_version();
    if full == pointer.version {
        return Ok(pointer.clone());
    }
    let path = layout.version(full);
    let missing = |problem: String| {
        StoreError::Snapshot(SnapshotError::Mismatch {
            version: pointer.version,
            problem,
        })
    };
    let data = match client.get_data(&path).await {
        Ok((data, _)) => data,
        Err(zk::Error::NoNode) => return Err(missing(format!("whole snapshot {full} is missing"))),
        Err(e) => return Err(zk_err("get", &path)(e)),
    };
    let p = Pointer::parse(&data)?;
    if p.version != full {
        return Err(missing(format!(
            "the node of version {full} names version {}",
            p.version
        )));
    }
    Ok(p)
}

/// Fetches version `pointer` names whole, whether it was published whole or as deltas: the
/// whole snapshot it builds on, then each delta after it, and the result checked against the
/// pointer as a fetched document would be (size, checksum, signature). Costs the whole
/// snapshot's bytes: for a server without the version before, or a presenter reading back.
pub async fn fetch_version(
    client: &zk::Client,
    layout: &Layout,
    pointer: &Pointer,
    trust: &Trust,
) -> Result<(Snapshot, Option<Zones>), StoreError> {
    let base = full_pointer(client, layout, pointer).await?;
    let snap = fetch(client, layout, &base, trust).await?;
    if base.version == pointer.version {
        // A snapshot not in the presenter's layout (written by hand or by an older tool) is
        // served as it is; no delta can follow it.
        let zones = Zones::from_snapshot(&snap).ok();
        return Ok((snap, zones));
    }
    let mut zones = Zones::from_snapshot(&snap)?;
    for v in base.version + 1..=pointer.version {
        let (d, _) = fetch_delta(client, layout, v, trust)
            .await?
            .ok_or_else(|| {
                StoreError::Snapshot(SnapshotError::Mismatch {
                    version: pointer.version,
                    problem: format!("delta {v} is missing"),
                })
            })?;
        zones.apply(&d)?;
    }
    let snap = zones.to_snapshot();
    let (bytes, _) = snap.encode();
    let snap = Snapshot::decode(pointer, &bytes)?;
    trust.check(pointer, &bytes)?;
    Ok((snap, Some(zones)))
}
