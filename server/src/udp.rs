//! UDP transport: per listen address, N sockets bound with SO_REUSEPORT, each served by its own
//! OS thread in a blocking receive/answer/send loop.
//!
//! The kernel spreads packets across the sockets; each worker owns its buffers and a cached
//! pointer to the current snapshot, so the steady state has no locks and no allocation.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};
use socket2::{Domain, Protocol, Socket, Type};

use crate::dataset::Snapshot;
use crate::metrics::Metrics;
use crate::responder::{respond, Transport};

/// Binds `count` sockets to `addr` (all on the same port, also when `addr` has port 0).
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_port(true)?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        // Room for bursts while a worker is busy.
        let _ = s.set_recv_buffer_size(4 << 20);
        s.bind(&addr.into())?;
        let sock: UdpSocket = s.into();
        addr = sock.local_addr()?;
        out.push(sock);
    }
    Ok(out)
}

/// Serves one socket forever.
pub fn serve(sock: UdpSocket, state: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>) {
    let mut cache = Cache::new(state);
    let mut packet = [0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    loop {
        let (n, src) = match sock.recv_from(&mut packet) {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "udp receive failed");
                continue;
            }
        };
        // Port 0 cannot be a real client; answering it only helps reflection attacks.
        if src.port() == 0 {
            continue;
        }
        let snap = cache.load();
        let outcome = respond(snap, &packet[..n], src.ip(), Transport::Udp, &mut out);
        if !out.is_empty() {
            if let Err(e) = sock.send_to(&out, src) {
                tracing::debug!(error = %e, %src, "udp send failed");
            }
        }
        metrics.record(false, &outcome);
    }
}
