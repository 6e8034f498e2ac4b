//! The collector's connections: accepting them, capping how many are open, and closing the
//! ones that stall, so that slow or idle clients cannot hold the file descriptors the others
//! (and `/healthz`) need.
//!
//! - At most `max_connections` are served at once. One more is answered with a canned 503
//!   (`{"reason":"connection_limit"}`) and closed, counted and logged (at most once a
//!   minute), rather than left waiting in the backlog where nobody sees it.
//! - A request's headers must arrive within `header_timeout`, counted from when the server
//!   starts waiting for them: this also closes idle kept-alive connections and byte-a-second
//!   senders. The body has `body_timeout` (enforced where it is read, in the report handler).
//! - A failing `accept` (the process's file-descriptor limit, say) is logged, counted, and
//!   retried after a pause instead of spinning.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time for a request's headers, including the wait for them on a kept-alive connection.
    pub header_timeout: Duration,
}

/// Connection counters, for metrics.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted in all.
    pub accepted: AtomicU64,
    /// Connections answered 503 because `max_connections` were open.
    pub refused: AtomicU64,
    /// Connections closed because headers did not arrive in time (idle or too slow).
    pub header_timeouts: AtomicU64,
    /// Failed `accept` calls (e.g. at the file-descriptor limit).
    pub accept_errors: AtomicU64,
}

const LIMIT_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 74\r\n\r\n{\"error\":\"too many connections open; retry later\",\"reason\":\"connection_limit\"}";

/// Rate-limits a repeated warning to one a minute.
struct Throttle(Mutex<Option<Instant>>);

impl Throttle {
    fn ready(&self) -> bool {
        let mut last = self.0.lock().expect("not poisoned");
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open requests finish
/// (up to `drain`) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (limit_warning, accept_warning) = (Throttle(Mutex::new(None)), Throttle(Mutex::new(None)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    stats.accept_errors.fetch_add(1, Relaxed);
                    if accept_warning.ready() {
                        tracing::error!(error = %e, open = stats.open.load(Relaxed), "accept failed (file-descriptor limit?); pausing");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        stats.accepted.fetch_add(1, Relaxed);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.refused.fetch_add(1, Relaxed);
            if limit_warning.ready() {
                tracing::warn!(max_connections = limits.max_connections, %peer, "connection limit reached; refusing new connections with 503");
            }
            tokio::spawn(async move {
                let mut stream = stream;
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), stream.write_all(LIMIT_RESPONSE))
                        .await;
            });
            continue;
        };
        stats.open.fetch_add(1, Relaxed);
        let service = TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
        );
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let stats = stats.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    stats.header_timeouts.fetch_add(1, Relaxed);
                    tracing::debug!(%peer, "connection closed: headers not received in time");
                } else {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            stats.open.fetch_sub(1, Relaxed);
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain,
            "connections still open after the drain period; closing them"
        );
    }
}
