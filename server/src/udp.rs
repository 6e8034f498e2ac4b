//! UDP transport: per listen address, N sockets (SO_REUSEPORT when N > 1), each served by its own
//! OS thread in a blocking loop that receives and sends in batches (`recvmmsg`/`sendmmsg`).
//!
//! The kernel spreads packets across the sockets. Each worker owns its buffers and a cached
//! pointer to the current snapshot, so the steady state has no locks and no allocation, and
//! under load one pair of syscalls serves up to [`BATCH`] queries: the syscalls, not the
//! lookup, are most of the cost of a query (see docs/perf.md).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

use crate::metrics::Metrics;
use crate::responder::{log_query, respond, Transport};
use crate::rrl::{truncate, Limiter, Verdict};
use crate::served::State;

/// Queries received (and answered) per syscall pair at most.
pub const BATCH: usize = 32;
/// Receive buffer per query; larger queries are dropped (no valid query comes near this).
const MAX_QUERY: usize = 4096;

/// Binds `count` sockets to `addr` (all on the same port, also when `addr` has port 0).
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        // Only a group of sockets shares the port: a lone socket with SO_REUSEPORT lets any
        // other socket of the same user with it join (dig sets it on its client sockets; one
        // that drew the server's port as its own source port got its own query back, and a
        // test failed once on "query response not set").
        if count > 1 {
            s.set_reuse_port(true)?;
        }
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

fn to_socket_addr(sa: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match sa.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET; sockaddr_storage is large and
            // aligned enough for it.
            let v4 = unsafe { &*(sa as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))),
                u16::from_be(v4.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe { &*(sa as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)),
                u16::from_be(v6.sin6_port),
            ))
        }
        _ => None,
    }
}

/// One worker's buffers. Boxed so the raw pointers in the headers stay valid.
struct Buffers {
    packets: Vec<[u8; MAX_QUERY]>,
    addrs: Vec<libc::sockaddr_storage>,
    iov_in: Vec<libc::iovec>,
    hdr_in: Vec<libc::mmsghdr>,
    outs: Vec<Vec<u8>>,
    iov_out: Vec<libc::iovec>,
    hdr_out: Vec<libc::mmsghdr>,
}

impl Buffers {
    fn new() -> Box<Buffers> {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero is a
        // valid value; the pointers are filled in below and before each use.
        let mut b = Box::new(Buffers {
            packets: vec![[0u8; MAX_QUERY]; BATCH],
            addrs: vec![unsafe { zeroed() }; BATCH],
            iov_in: vec![unsafe { zeroed() }; BATCH],
            hdr_in: vec![unsafe { zeroed() }; BATCH],
            outs: (0..BATCH).map(|_| Vec::with_capacity(1500)).collect(),
            iov_out: vec![unsafe { zeroed() }; BATCH],
            hdr_out: vec![unsafe { zeroed() }; BATCH],
        });
        for i in 0..BATCH {
            b.iov_in[i] = libc::iovec {
                iov_base: b.packets[i].as_mut_ptr().cast(),
                iov_len: MAX_QUERY,
            };
        }
        b
    }

    /// Resets the receive headers (the kernel overwrites name lengths and flags).
    fn arm_receive(&mut self) {
        for i in 0..BATCH {
            let h = &mut self.hdr_in[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iov_in[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdr_in[i].msg_len = 0;
        }
    }
}

/// What a UDP datagram gets, whichever path brought it (kernel sockets here, AF_XDP in
/// [`crate::xdp`]): the answer, the metrics, the probe log, and response rate limiting. One
/// per worker thread.
pub struct Answerer {
    metrics: Arc<Metrics>,
    rrl: Option<Arc<Limiter>>,
    started: std::time::Instant,
    /// When rate limiting was last logged: at most once every 10 s per worker (a flood must
    /// not become a flood of log lines).
    rrl_logged: Option<u64>,
}

impl Answerer {
    /// An answerer counting into `metrics`, limiting with `rrl` if set.
    pub fn new(metrics: Arc<Metrics>, rrl: Option<Arc<Limiter>>) -> Answerer {
        Answerer {
            metrics,
            rrl,
            started: std::time::Instant::now(),
            rrl_logged: None,
        }
    }

    /// Answers `packet` from `src` into `out`; `false` when nothing is to be sent (a query
    /// dropped, or a response the rate limiter drops). A datagram from port 0 is never
    /// answered: no real client sends from it, and answering only helps reflection attacks.
    pub fn answer(
        &mut self,
        snap: &crate::served::Served,
        packet: &[u8],
        src: SocketAddr,
        out: &mut Vec<u8>,
    ) -> bool {
        if src.port() == 0 {
            out.clear();
            return false;
        }
        let started = std::time::Instant::now();
        let outcome = respond(snap, packet, src.ip(), Transport::Udp, out);
        self.metrics.observe_processing(started.elapsed());
        self.metrics.record(false, &outcome);
        log_query(packet, src, Transport::Udp, &outcome);
        if out.is_empty() {
            return false;
        }
        if let Some(l) = self.rrl.as_ref().filter(|_| !outcome.valid_cookie) {
            let second = self.started.elapsed().as_secs();
            let verdict = l.check(src.ip(), out, second);
            if verdict != Verdict::Send && self.rrl_logged.is_none_or(|t| second >= t + 10) {
                self.rrl_logged = Some(second);
                tracing::warn!(client = %src.ip(), "response rate limiting: responses over the rate to this client's prefix are dropped or sent truncated (geodns_rrl_*; logged once in 10 s)");
            }
            match verdict {
                Verdict::Send => {}
                Verdict::Slip => {
                    truncate(out);
                    self.metrics.rrl_slipped();
                }
                Verdict::Drop => {
                    self.metrics.rrl_dropped();
                    return false;
                }
            }
        }
        true
    }
}

/// Serves one socket forever.
pub fn serve(sock: UdpSocket, state: Arc<State>, metrics: Arc<Metrics>, rrl: Option<Arc<Limiter>>) {
    let fd = sock.as_raw_fd();
    let mut answerer = Answerer::new(metrics, rrl);
    let mut cache = state.cache();
    let mut b = Buffers::new();
    loop {
        b.arm_receive();
        // SAFETY: hdr_in holds BATCH headers whose buffers (packets, addrs, iov_in) live in `b`
        // and outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                b.hdr_in.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::warn!(error = %e, "udp receive failed");
            }
            continue;
        }
        let snap = cache.load();
        let mut replies = 0;
        for i in 0..n as usize {
            let len = b.hdr_in[i].msg_len as usize;
            let truncated = b.hdr_in[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let Some(src) = to_socket_addr(&b.addrs[i]).filter(|_| !truncated) else {
                continue;
            };
            if !answerer.answer(snap, &b.packets[i][..len], src, &mut b.outs[i]) {
                continue;
            }
            b.iov_out[replies] = libc::iovec {
                iov_base: b.outs[i].as_mut_ptr().cast(),
                iov_len: b.outs[i].len(),
            };
            let h = &mut b.hdr_out[replies].msg_hdr;
            h.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = b.hdr_in[i].msg_hdr.msg_namelen;
            h.msg_iov = &mut b.iov_out[replies];
            h.msg_iovlen = 1;
            replies += 1;
        }
        let mut sent = 0;
        while sent < replies {
            // SAFETY: hdr_out[sent..replies] point at buffers in `b` filled above.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    b.hdr_out[sent..].as_mut_ptr(),
                    (replies - sent) as u32,
                    0,
                )
            };
            if r <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // A reply that cannot be sent (e.g. EAGAIN, unreachable) is skipped, not retried.
                tracing::debug!(error = %e, "udp send failed");
                sent += 1;
                continue;
            }
            sent += r as usize;
        }
    }
}
