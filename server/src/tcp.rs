//! TCP transport: length-prefixed messages (RFC 1035 4.2.2, RFC 7766), pipelined queries
//! answered in order, an idle timeout, and a cap on open connections so slow or idle clients
//! cannot starve the rest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use crate::metrics::Metrics;
use crate::responder::{log_query, respond, Transport};
use crate::served::State;

/// Binds a listener (SO_REUSEADDR, so a restart does not wait for TIME_WAIT).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Accepts and serves connections forever.
pub async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    metrics: Arc<Metrics>,
    max_connections: usize,
    idle: Duration,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "tcp listener unusable");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.tcp_refused();
            drop(stream);
            continue;
        };
        let (state, metrics) = (state.clone(), metrics.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = connection(stream, peer, &state, &metrics, idle).await;
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: &State,
    metrics: &Metrics,
    idle: Duration,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut msg = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(4096);
    loop {
        let mut len = [0u8; 2];
        match timeout(idle, rd.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let n = u16::from_be_bytes(len) as usize;
        msg.resize(n, 0);
        match timeout(idle, rd.read_exact(&mut msg)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let started = std::time::Instant::now();
        let outcome = {
            let snap = state.load();
            respond(&snap, &msg, peer.ip(), Transport::Tcp, &mut out)
        };
        metrics.observe_processing(started.elapsed());
        metrics.record(true, &outcome);
        log_query(&msg, peer, Transport::Tcp, &outcome);
        if out.is_empty() {
            continue;
        }
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        match timeout(idle, wr.write_all(&framed)).await {
            Ok(Ok(())) => {}
            _ => return Ok(()),
        }
    }
}
