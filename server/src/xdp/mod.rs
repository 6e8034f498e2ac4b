//! The AF_XDP path (docs/xdp.md): UDP queries to geodns's addresses on the interfaces in
//! `[listen] xdp` are taken off the network card before the kernel's UDP stack, answered by the
//! same [`Answerer`] as the socket path, and sent back on the queue they came in on.
//!
//! - [`program`]: the XDP program, which takes only UDP to a listen address and port and passes
//!   everything else (TCP, ICMP, ARP and neighbour discovery, other ports) to the kernel;
//! - [`socket`]: one AF_XDP socket per receive queue, its memory and rings;
//! - [`frame`]: the query in a frame, and the reply written over it.
//!
//! Nothing here is needed to serve: where the program cannot be loaded or attached, or a socket
//! cannot be opened (no privilege, an old kernel, a build without clang), one error line says
//! why and the kernel's sockets answer, as without XDP.

pub mod frame;
pub mod program;
pub mod socket;

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};

use xdpilone::xdp::XdpDesc;

use crate::metrics::{Metrics, XDP_DROP_REASONS};
use crate::rrl::Limiter;
use crate::served::State;
use crate::udp::{Answerer, BATCH};
use program::Program;
use socket::XdpSocket;

/// What keeps the AF_XDP path running: the programs attached (detached when dropped).
pub struct Running {
    _programs: Vec<Program>,
}

/// Starts the AF_XDP path on each of `ifaces` for UDP to `targets` (the bound DNS addresses).
/// An interface where it cannot start is logged and left to the sockets.
pub fn start(
    ifaces: &[String],
    targets: &[SocketAddr],
    state: &Arc<State>,
    metrics: &Arc<Metrics>,
    rrl: &Option<Arc<Limiter>>,
) -> Running {
    let mut programs = Vec::new();
    for iface in ifaces {
        match start_on(iface, targets, state, metrics, rrl) {
            Ok((program, mode, zero_copy, queues)) => {
                tracing::info!(
                    iface = %iface,
                    xdp_mode = mode,
                    copy = if zero_copy { "zero-copy" } else { "copy" },
                    queues,
                    "answering UDP through AF_XDP"
                );
                programs.push(program);
            }
            Err(e) => tracing::error!(
                iface = %iface,
                error = %e,
                "AF_XDP unavailable here; answering UDP on the kernel's sockets"
            ),
        }
    }
    Running {
        _programs: programs,
    }
}

/// The smallest MTU the AF_XDP path takes: the largest reply (1,232 bytes of DNS, UDP, IPv6)
/// fits without fragmenting, which this path does not do.
const MIN_MTU: u32 = 1300;

/// Refuses an interface whose MTU a reply might not fit.
fn check_mtu(iface: &str) -> Result<(), String> {
    let file = format!("/sys/class/net/{iface}/mtu");
    let mtu: u32 = std::fs::read_to_string(&file)
        .map_err(|e| format!("{file}: {e} (no such interface?)"))?
        .trim()
        .parse()
        .map_err(|e| format!("{file}: {e}"))?;
    if mtu < MIN_MTU {
        return Err(format!(
            "MTU {mtu} is below {MIN_MTU}: a reply might need fragmenting, which the AF_XDP path does not do"
        ));
    }
    Ok(())
}

/// The receive queues of `iface`.
fn queues(iface: &str) -> Result<u32, String> {
    let dir = format!("/sys/class/net/{iface}/queues");
    let n = std::fs::read_dir(&dir)
        .map_err(|e| format!("{dir}: {e} (no such interface?)"))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    u32::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{dir}: no receive queue"))
}

/// Loads the program, opens a socket per queue (each on the thread that will serve it), and
/// attaches; the workers start only once everything is in place, and end if anything fails.
fn start_on(
    iface: &str,
    targets: &[SocketAddr],
    state: &Arc<State>,
    metrics: &Arc<Metrics>,
    rrl: &Option<Arc<Limiter>>,
) -> Result<(Program, &'static str, bool, u32), String> {
    check_mtu(iface)?;
    let queues = queues(iface)?;
    let mut program = Program::load(iface, targets)?;
    let mut workers = Vec::new();
    for queue in 0..queues {
        let (opened_tx, opened) = mpsc::channel();
        let (go, go_rx) = mpsc::channel::<()>();
        let (iface, state, metrics) = (iface.to_owned(), state.clone(), metrics.clone());
        let answerer = Answerer::new(metrics.clone(), rrl.clone());
        std::thread::Builder::new()
            .name(format!("xdp-{iface}-{queue}"))
            .spawn(move || {
                let sock = match XdpSocket::open(&iface, queue) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                let _ = opened_tx.send(Ok((sock.fd(), sock.zero_copy)));
                // Dropped without a word: something else failed; the socket closes.
                if go_rx.recv().is_ok() {
                    metrics.xdp_socket_started();
                    serve(sock, &state, answerer, &metrics);
                }
            })
            .map_err(|e| format!("starting a worker: {e}"))?;
        workers.push((queue, opened, go));
    }
    let mut zero_copy = true;
    let mut gos = Vec::new();
    for (queue, opened, go) in workers {
        let (fd, zc) = opened
            .recv()
            .map_err(|_| format!("queue {queue}: the worker ended"))??;
        program.add_socket(queue, fd)?;
        zero_copy &= zc;
        gos.push(go);
    }
    let mode = program.attach()?;
    for go in gos {
        let _ = go.send(());
    }
    Ok((program, mode, zero_copy, queues))
}

/// Serves one socket for ever.
fn serve(mut sock: XdpSocket, state: &State, mut answerer: Answerer, metrics: &Metrics) {
    let mut cache = state.cache();
    let mut out = Vec::with_capacity(1500);
    let mut replies: Vec<XdpDesc> = Vec::with_capacity(BATCH);
    // The drop counts last added to the metrics (the kernel's are totals since the socket
    // opened), read once a second.
    let mut counted = [0u64; XDP_DROP_REASONS.len()];
    let mut read_at = std::time::Instant::now();
    loop {
        let snap = cache.load();
        let n = sock.turn(
            BATCH as u32,
            1000,
            |frame, len| {
                let q = frame::parse(&frame[..len])?;
                if !answerer.answer(snap, &frame[q.payload.clone()], q.src, &mut out) {
                    return None;
                }
                frame::reply(frame, &q, &out)
            },
            &mut replies,
        );
        metrics.xdp_frames(u64::from(n));
        if read_at.elapsed() >= std::time::Duration::from_secs(1) {
            read_at = std::time::Instant::now();
            let kernel = sock.kernel_drops().unwrap_or([0; 3]);
            let now = [kernel[0], kernel[1], kernel[2], sock.tx_ring_full];
            for (i, (now, before)) in now.iter().zip(&mut counted).enumerate() {
                if *now > *before {
                    metrics.xdp_dropped(i, *now - *before);
                    *before = *now;
                }
            }
        }
    }
}
