//! Publishing and fetching snapshots in ZooKeeper.
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

/// Publishes `snap` (whose version must be the current pointer's + 1): chunks, then the
/// pointer, conditional on the pointer's znode version `expected` (`None`: no pointer yet).
/// With `fence` (the leader's lock), the pointer moves only while the lock is held, so a
/// presenter that lost leadership mid-publication cannot move it. Then removes versions beyond
/// [`KEEP_VERSIONS`] and any left by an interrupted publication.
pub async fn publish(
    client: &zk::Client,
    layout: &Layout,
    snap: &Snapshot,
    expected: Option<i32>,
    fence: Option<&zk::LockClient<'_>>,
    signer: Option<&SigningKey>,
    secure: bool,
) -> Result<Pointer, StoreError> {
    let persistent = || access::persistent(Node::Snapshots, secure);
    let (bytes, mut pointer) = snap.encode();
    if let Some(key) = signer {
        key.sign(&bytes, &mut pointer);
    }
    ensure_path(client, &layout.snapshots(), Node::Snapshots, secure).await?;
    let dir = layout.version(snap.version);
    // A node of this version can only be from an interrupted publication: start it afresh.
    remove_tree(client, &dir).await?;
    client
        .create(&dir, b"", &persistent())
        .await
        .map_err(zk_err("create", &dir))?;
    for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
        let path = layout.chunk(snap.version, i as u32);
        client
            .create(&path, chunk, &persistent())
            .await
            .map_err(zk_err("create", &path))?;
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
            return Err(StoreError::Raced(now));
        }
        Err(e) => return Err(zk_err("set", &ptr_path)(e)),
    }
    collect_garbage(client, layout, snap.version).await?;
    Ok(pointer)
}

/// Removes every version node except `current` and the [`KEEP_VERSIONS`] before it.
async fn collect_garbage(
    client: &zk::Client,
    layout: &Layout,
    current: u64,
) -> Result<(), StoreError> {
    let parent = layout.snapshots();
    let mut versions: Vec<u64> = client
        .list_children(&parent)
        .await
        .map_err(zk_err("list", &parent))?
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    versions.sort_unstable();
    for v in versions {
        let keep = v <= current && current - v <= KEEP_VERSIONS as u64;
        if !keep {
            remove_tree(client, &layout.version(v)).await?;
        }
    }
    Ok(())
}

/// Deletes a node and its children (one level: version nodes hold chunks only).
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
