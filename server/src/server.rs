//! `geodns serve`: load, bind, and run the transports, the reload watcher and the metrics
//! endpoint until SIGTERM or SIGINT.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use geodns_beacon::{DnsProbeRow, LogWriter, WriterConfig};

use crate::dataset::{file_stamp, Dataset};
use crate::metrics::Metrics;
use crate::reload::{load_health, watch};
use crate::served::{Served, State};
use crate::{tcp, udp};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Loading failed.
    #[error(transparent)]
    Load(#[from] crate::dataset::LoadError),
    /// The health file is bad.
    #[error(transparent)]
    Health(#[from] geodns_snapshot::health_file::HealthError),
    /// The probe log cannot be written.
    #[error("probe_log: {0}")]
    ProbeLog(#[from] geodns_beacon::writer::WriterError),
    /// A socket could not be bound.
    #[error("cannot listen on {addr} ({transport}): {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// udp, tcp, http, or the peers' http.
        transport: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One DNS listen address's sockets.
struct DnsSockets {
    udp: Vec<std::net::UdpSocket>,
    udp_addr: std::net::SocketAddr,
    tcp: std::net::TcpListener,
    tcp_addr: std::net::SocketAddr,
}

/// Binds UDP (with its workers' sockets) and TCP on the same port. With port 0 the UDP port is
/// the kernel's pick, which TCP may have in use already: then both are dropped and another
/// port tried, so "any free port" means a port free for both.
fn bind_dns(addr: std::net::SocketAddr, workers: usize) -> Result<DnsSockets, StartError> {
    let err = |transport, source| StartError::Bind {
        addr,
        transport,
        source,
    };
    for attempt in 0.. {
        let socks = udp::bind(addr, workers).map_err(|e| err("udp", e))?;
        let bound = socks[0].local_addr().map_err(|e| err("udp", e))?;
        let tcp_addr = std::net::SocketAddr::new(addr.ip(), bound.port());
        match tcp::bind(tcp_addr) {
            Ok(listener) => {
                return Ok(DnsSockets {
                    udp: socks,
                    udp_addr: bound,
                    tcp: listener,
                    tcp_addr,
                })
            }
            Err(e)
                if addr.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < 64 => {}
            Err(e) => return Err(err("tcp", e)),
        }
    }
    unreachable!("the loop returns")
}

/// Loads everything and serves until a termination signal.
pub async fn run(config_path: &Path) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::default());
    let started = std::time::Instant::now();
    tracing::info!(
        version = %env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        config = %config_path.display(),
        "starting"
    );
    // Loading reads files and builds tables: off the async workers (block_in_place would panic
    // on a current-thread runtime).
    let data = {
        let path = config_path.to_path_buf();
        let m = metrics.clone();
        tokio::task::spawn_blocking(move || Dataset::load(&path, &m))
            .await
            .expect("the dataset loader does not panic")?
    };
    let data = Arc::new(data);
    let health_stamp = data.config.health_file.as_deref().and_then(file_stamp);
    let down = load_health(&data)?;
    tracing::info!(
        map_generation = %data.map_meta.generation,
        map_rows = data.map_rows,
        zones = data.zones.len(),
        pops = data.pops.len(),
        ms = started.elapsed().as_millis() as u64,
        "loaded"
    );
    if let Some(t) = data.map_created_unix() {
        metrics.set_map_created(t);
    }
    let cfg = data.config.clone();
    let probe_log = match &cfg.probe_log {
        Some(p) => {
            let writer = LogWriter::<DnsProbeRow>::start(WriterConfig {
                root: p.dir.clone(),
                writer_id: p.writer_id.clone().unwrap_or_else(|| cfg.server_id.clone()),
                max_rows: p.max_rows,
                max_age: Duration::from_millis(p.max_age_ms),
                queue_rows: p.queue_rows,
                reserve_bytes: p.reserve_bytes,
            })?;
            tracing::info!(dir = %p.dir.display(), "logging probe queries");
            metrics.set_probe_log(writer.stats().clone());
            Some(Arc::new(writer))
        }
        None => None,
    };
    let internal = match &cfg.zookeeper {
        Some(zk) => crate::zookeeper::from_cache(zk, &data.zones, &metrics),
        None => Default::default(),
    };
    let state = Arc::new(State::new(Served::new(
        data,
        &down,
        probe_log.clone(),
        Arc::new(internal),
    )));
    if let Some(zk) = cfg.zookeeper.clone() {
        tokio::spawn(crate::zookeeper::follow_health(zk.clone(), state.clone()));
        let peers = zk.peers_listen;
        let follow = crate::zookeeper::follow(zk, state.clone(), metrics.clone())
            .await
            .map_err(|source| StartError::Bind {
                addr: peers.expect("only binding peers_listen fails"),
                transport: "http, peers",
                source,
            })?;
        tokio::spawn(follow);
    }

    let rrl = crate::rrl::Limiter::new(&cfg.rrl).map(Arc::new);
    if rrl.is_some() {
        tracing::info!(
            responses_per_second = cfg.rrl.responses_per_second,
            slip = cfg.rrl.slip,
            "response rate limiting on (UDP)"
        );
    }
    let mut bound_udp = Vec::new();
    for &addr in &cfg.listen.dns {
        let DnsSockets {
            udp: socks,
            udp_addr: bound,
            tcp: listener,
            tcp_addr,
        } = bind_dns(addr, cfg.listen.udp_workers)?;
        tracing::info!(%bound, workers = socks.len(), "listening udp");
        bound_udp.push(bound);
        tracing::info!(bound = %tcp_addr, "listening tcp");
        for (i, sock) in socks.into_iter().enumerate() {
            let (state, metrics, rrl) = (state.clone(), metrics.clone(), rrl.clone());
            std::thread::Builder::new()
                .name(format!("udp-{bound}-{i}"))
                .spawn(move || udp::serve(sock, state, metrics, rrl))
                .expect("spawn udp worker");
        }
        tokio::spawn(tcp::serve(
            listener,
            state.clone(),
            metrics.clone(),
            cfg.tcp.max_connections,
            Duration::from_millis(cfg.tcp.idle_timeout_ms),
        ));
    }
    // Beside the sockets, which answer what the AF_XDP path does not take.
    let _xdp = crate::xdp::start(&cfg.listen.xdp, &bound_udp, &state, &metrics, &rrl);
    if let Some(addr) = cfg.listen.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                addr,
                transport: "http",
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind {
            addr,
            transport: "http",
            source,
        })?;
        tracing::info!(%bound, "listening metrics");
        let (m, st) = (metrics.clone(), state.clone());
        tokio::spawn(geodns_daemon::prometheus::serve(
            listener,
            Arc::new(move || m.render() + &st.load().health_metrics()),
        ));
    }
    tokio::spawn(watch(
        config_path.to_path_buf(),
        state.clone(),
        metrics.clone(),
        health_stamp,
    ));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    // Every socket is bound and the data is loaded: tell systemd (Type=notify) we serve.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot notify systemd of readiness");
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!(queries = metrics.total_queries(), "shutting down");
    if let Some(log) = probe_log {
        // The flush fsyncs files: off the async workers.
        let log = tokio::task::spawn_blocking(move || {
            log.flush();
            log
        })
        .await
        .expect("the flush does not panic");
        tracing::info!(
            rows = log
                .stats()
                .rows_written
                .load(std::sync::atomic::Ordering::Relaxed),
            "probe log flushed"
        );
    }
    Ok(())
}
