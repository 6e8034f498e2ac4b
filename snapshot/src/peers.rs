//! Whole snapshots between servers, so that ZooKeeper carries pointers and deltas, not the
//! bulk bytes (issue 24; the FOSDEM 2016 design moved them with BitTorrent for the same
//! reason).
//!
//! Every server that has `peers_listen` serves the whole document of the versions it holds,
//! by content hash (`GET /snapshots/<sha256 hex>`, read only, over HTTP/1.1 with hyper), and
//! once it holds one, announces itself with an ephemeral node `<root>/peers/<host:port>` (so
//! a fleet starting at once does not ask servers that have nothing yet). A server that needs a
//! version whole (a cold start, or too far behind for deltas) asks a few announced peers
//! chosen at random for the pointer's checksum, reads at most the pointer's size, and checks
//! the bytes exactly as it checks ZooKeeper's chunks (size, checksum, signature); a peer that
//! does not have it, is unreachable or serves anything else is skipped, and when none serves
//! it the server reads ZooKeeper's chunks as before. Nothing a peer sends is trusted: a peer
//! can slow a fetch down, never change what is served.
//!
//! A server that took its version as deltas holds it as parts, not as a document: it renders
//! the document when a peer first asks for it, checks that it hashes to the pointer's
//! checksum, and keeps it for the next asker ([`Shelf`]).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use zookeeper_client as zk;

use crate::access::{self, Node};
use crate::format::{checksum, Pointer, Snapshot, SnapshotError};
use crate::layout::Layout;
use crate::signature::Trust;

/// How a server shares snapshots with its peers.
#[derive(Clone, Debug, Default)]
pub struct PeersConfig {
    /// Where it serves the snapshots it holds (`None`: it serves none, and is not announced).
    pub listen: Option<SocketAddr>,
    /// The `host:port` peers reach it at (default: `listen`).
    pub advertise: Option<String>,
    /// How many announced peers a whole fetch asks before it reads ZooKeeper's chunks (0:
    /// none).
    pub fetch_from: usize,
}

impl PeersConfig {
    /// The name this server is announced under, if it serves.
    pub fn announced(&self) -> Option<String> {
        let listen = self.listen?;
        Some(self.advertise.clone().unwrap_or_else(|| listen.to_string()))
    }
}

/// Renders the document of a version held as parts, or `None` when it is no longer held.
pub type Render = Box<dyn Fn() -> Option<Vec<u8>> + Send + Sync>;

/// The documents this server serves to its peers: the last two versions it held, each by its
/// checksum, rendered once on the first request when it came as deltas.
#[derive(Default)]
pub struct Shelf {
    docs: Mutex<VecDeque<(String, Doc)>>,
}

enum Doc {
    Bytes(Arc<Vec<u8>>),
    Render(Arc<Render>),
}

/// Documents kept: the version in force and the one before (a peer still on its way to the
/// older pointer finishes on it).
const SHELF: usize = 2;

impl Shelf {
    /// Serves `bytes` (a verified document) under `checksum`.
    pub fn put(&self, checksum: String, bytes: Vec<u8>) {
        self.push(checksum, Doc::Bytes(Arc::new(bytes)));
    }

    /// Serves under `checksum` what `render` makes, once a peer asks.
    pub fn promise(&self, checksum: String, render: Render) {
        self.push(checksum, Doc::Render(Arc::new(render)));
    }

    /// Whether there is nothing to serve yet.
    pub fn is_empty(&self) -> bool {
        self.docs.lock().expect("not poisoned").is_empty()
    }

    fn push(&self, checksum: String, doc: Doc) {
        let mut docs = self.docs.lock().expect("not poisoned");
        docs.retain(|(c, _)| *c != checksum);
        docs.push_back((checksum, doc));
        while docs.len() > SHELF {
            docs.pop_front();
        }
    }

    /// The document under `checksum`, rendered and checked if need be.
    fn get(&self, checksum: &str) -> Option<Arc<Vec<u8>>> {
        let render = {
            let docs = self.docs.lock().expect("not poisoned");
            match docs.iter().find(|(c, _)| c == checksum).map(|(_, d)| d) {
                Some(Doc::Bytes(b)) => return Some(b.clone()),
                Some(Doc::Render(r)) => r.clone(),
                None => return None,
            }
        };
        let bytes = render()?;
        if crate::format::checksum(&bytes) != checksum {
            tracing::error!(
                checksum,
                "the snapshot rendered from the deltas taken does not hash to the pointer's checksum; not served to peers"
            );
            return None;
        }
        let bytes = Arc::new(bytes);
        let mut docs = self.docs.lock().expect("not poisoned");
        if let Some(slot) = docs.iter_mut().find(|(c, _)| c == checksum) {
            slot.1 = Doc::Bytes(bytes.clone());
        }
        Some(bytes)
    }
}

/// Most peer requests served at once; more wait for a slot.
const MAX_CONNECTIONS: usize = 64;

/// Longest a peer connection may last: a peer that reads slower than this is cut off.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(60);

/// Serves `shelf` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, shelf: Arc<Shelf>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "peer accept failed; pausing");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let shelf = shelf.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shelf = shelf.clone();
                async move { Ok::<_, Infallible>(answer(&shelf, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
            drop(permit);
        });
    }
}

async fn answer(shelf: &Arc<Shelf>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r
    };
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "read only\n".into());
    }
    let Some(hex) = req
        .uri()
        .path()
        .strip_prefix("/snapshots/")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return reply(
            StatusCode::NOT_FOUND,
            "GET /snapshots/<sha256 hex>\n".into(),
        );
    };
    let sum = format!("sha256:{}", hex.to_ascii_lowercase());
    let shelf = shelf.clone();
    match tokio::task::spawn_blocking(move || shelf.get(&sum)).await {
        Ok(Some(bytes)) => reply(StatusCode::OK, Bytes::from(bytes.as_ref().clone())),
        _ => reply(StatusCode::NOT_FOUND, "not held\n".into()),
    }
}

/// Announces `name` under `<root>/peers` for this session (an ephemeral node: it goes with
/// the session). Creates the parent when the tree has none and this role may.
pub async fn announce(
    client: &zk::Client,
    layout: &Layout,
    name: &str,
    secure: bool,
) -> Result<(), String> {
    crate::store::ensure_path(client, &layout.peers(), Node::Peers, secure)
        .await
        .map_err(|e| e.to_string())?;
    let path = format!("{}/{name}", layout.peers());
    // One of an earlier session of this server, not yet expired: replaced by this session's.
    match client.delete(&path, None).await {
        Ok(()) | Err(zk::Error::NoNode) => {}
        Err(e) => return Err(format!("ZooKeeper delete {path}: {e}")),
    }
    client
        .create(&path, b"", &access::ephemeral(Node::Peers, secure))
        .await
        .map(|_| ())
        .map_err(|e| format!("ZooKeeper create {path}: {e}"))
}

/// Why no peer served a version.
#[derive(Debug)]
pub struct NotFromPeers {
    /// What each peer asked did, in order.
    pub tried: Vec<String>,
    /// How many served bytes that were refused (wrong size, checksum or signature).
    pub refused: usize,
}

/// Fetches the document `pointer` names from up to `n` announced peers (not `me`), chosen at
/// random, checked like ZooKeeper's chunks.
pub async fn fetch(
    client: &zk::Client,
    layout: &Layout,
    pointer: &Pointer,
    trust: &Trust,
    me: Option<&str>,
    n: usize,
    http: &reqwest::Client,
) -> Result<(Snapshot, Vec<u8>), NotFromPeers> {
    let mut failed = NotFromPeers {
        tried: Vec::new(),
        refused: 0,
    };
    let mut peers = match client.list_children(&layout.peers()).await {
        Ok(p) => p,
        Err(e) => {
            failed.tried.push(format!("listing peers: {e}"));
            return Err(failed);
        }
    };
    peers.retain(|p| Some(p.as_str()) != me);
    shuffle(&mut peers);
    let hex = pointer.checksum.trim_start_matches("sha256:");
    for peer in peers.iter().take(n) {
        match fetch_one(http, peer, hex, pointer, trust).await {
            Ok(got) => return Ok(got),
            Err((refused, why)) => {
                failed.refused += usize::from(refused);
                failed.tried.push(format!("{peer}: {why}"));
            }
        }
    }
    if peers.is_empty() {
        failed.tried.push("no peer announced".into());
    }
    Err(failed)
}

/// One peer: `Err((refused, why))`, `refused` when it served bytes that are not the document.
async fn fetch_one(
    http: &reqwest::Client,
    peer: &str,
    hex: &str,
    pointer: &Pointer,
    trust: &Trust,
) -> Result<(Snapshot, Vec<u8>), (bool, String)> {
    let url = format!("http://{peer}/snapshots/{hex}");
    let mut resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| (false, e.to_string()))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err((false, format!("HTTP {}", resp.status())));
    }
    let mut bytes = Vec::with_capacity(pointer.size.min(64 << 20) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(|e| (false, e.to_string()))? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > pointer.size {
            return Err((
                true,
                format!("more than the {} bytes the pointer says", pointer.size),
            ));
        }
    }
    let refuse = |e: SnapshotError| (true, e.to_string());
    let snap = Snapshot::decode(pointer, &bytes).map_err(refuse)?;
    trust.check(pointer, &bytes).map_err(refuse)?;
    debug_assert_eq!(checksum(&bytes), pointer.checksum);
    Ok((snap, bytes))
}

/// A random order (the hasher's random keys; no RNG dependency).
fn shuffle(v: &mut [String]) {
    use std::hash::BuildHasher;
    let keys = std::collections::hash_map::RandomState::new();
    v.sort_by_cached_key(|p| keys.hash_one(p));
}
