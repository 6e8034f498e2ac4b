//! Counters for Prometheus: queries by transport, type and rcode, answers per PoP, reloads.
//!
//! Plain relaxed atomics shared by every worker: no locks on the query path. PoP counters are
//! keyed by a registry of PoP ids that only grows, so a PoP keeps its counter across reloads.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use geodns_daemon::prometheus::{Histogram, Kind, Text};

/// Why an internal-zone snapshot is refused (`geodns_snapshot::Refused`'s reasons).
pub const REFUSED_REASONS: [&str; 5] = ["signature", "version", "damaged", "zones", "peer"];

/// Why a frame on the AF_XDP path was dropped: the kernel's counts (`rx_dropped`: the
/// socket's receive queue could not take it; `rx_ring_full`; `fill_ring_empty`: no frame to
/// receive into) and the server's (`tx_ring_full`: a reply found the transmit ring full).
pub const XDP_DROP_REASONS: [&str; 4] = [
    "rx_dropped",
    "rx_ring_full",
    "fill_ring_empty",
    "tx_ring_full",
];

/// How a version of the internal zones is taken (the follower's words,
/// [`geodns_snapshot::Taken`]).
const TAKEN_HOW: [&str; 3] = ["whole", "peer", "deltas"];

/// Query types counted by name; others are counted as `other`.
const QTYPES: [(u16, &str); 12] = [
    (1, "A"),
    (28, "AAAA"),
    (5, "CNAME"),
    (15, "MX"),
    (2, "NS"),
    (6, "SOA"),
    (33, "SRV"),
    (16, "TXT"),
    (257, "CAA"),
    (12, "PTR"),
    (65, "HTTPS"),
    (255, "ANY"),
];
const RCODES: [&str; 17] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE", "RCODE11", "RCODE12", "RCODE13", "RCODE14", "RCODE15",
    "BADVERS",
];
const MAX_POPS: usize = 1024;

/// The server's counters.
pub struct Metrics {
    udp: AtomicU64,
    tcp: AtomicU64,
    dropped: AtomicU64,
    truncated: AtomicU64,
    qtype: [AtomicU64; QTYPES.len() + 1],
    rcode: [AtomicU64; RCODES.len()],
    pop_answers: Box<[AtomicU64]>,
    pop_names: Mutex<Vec<String>>,
    fallback_answers: AtomicU64,
    all_down_answers: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    health_failures: AtomicU64,
    map_created_unix: AtomicU64,
    restart_pending: AtomicU64,
    ecs_queries: AtomicU64,
    processing: Histogram,
    internal_version: AtomicU64,
    internal_created_unix: AtomicU64,
    internal_refused: [AtomicU64; REFUSED_REASONS.len()],
    rrl_dropped: AtomicU64,
    rrl_slipped: AtomicU64,
    internal_save_failures: AtomicU64,
    /// Versions taken whole and as deltas, the deltas taken, and the bytes each way fetched.
    internal_taken: [AtomicU64; TAKEN_HOW.len()],
    internal_taken_bytes: [AtomicU64; TAKEN_HOW.len()],
    internal_deltas: AtomicU64,
    internal_chain: AtomicU64,
    tcp_refused: AtomicU64,
    probe_queries: AtomicU64,
    probe_invalid: AtomicU64,
    probe_log: std::sync::OnceLock<std::sync::Arc<geodns_beacon::WriterStats>>,
    xdp_sockets: AtomicU64,
    xdp_frames: AtomicU64,
    xdp_dropped: [AtomicU64; XDP_DROP_REASONS.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            udp: AtomicU64::new(0),
            tcp: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            qtype: Default::default(),
            rcode: Default::default(),
            pop_answers: (0..MAX_POPS).map(|_| AtomicU64::new(0)).collect(),
            pop_names: Mutex::new(Vec::new()),
            fallback_answers: AtomicU64::new(0),
            all_down_answers: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            health_failures: AtomicU64::new(0),
            map_created_unix: AtomicU64::new(0),
            restart_pending: AtomicU64::new(0),
            ecs_queries: AtomicU64::new(0),
            processing: Histogram::new(&PROCESSING_BOUNDS_NS),
            internal_version: AtomicU64::new(0),
            internal_created_unix: AtomicU64::new(0),
            internal_refused: Default::default(),
            rrl_dropped: AtomicU64::new(0),
            rrl_slipped: AtomicU64::new(0),
            internal_save_failures: AtomicU64::new(0),
            internal_taken: Default::default(),
            internal_taken_bytes: Default::default(),
            internal_deltas: AtomicU64::new(0),
            internal_chain: AtomicU64::new(0),
            tcp_refused: AtomicU64::new(0),
            probe_queries: AtomicU64::new(0),
            probe_invalid: AtomicU64::new(0),
            probe_log: std::sync::OnceLock::new(),
            xdp_sockets: AtomicU64::new(0),
            xdp_frames: AtomicU64::new(0),
            xdp_dropped: Default::default(),
        }
    }
}

/// What happened to one query, as the responder reports it.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueryOutcome {
    /// QTYPE, if the question parsed.
    pub qtype: Option<u16>,
    /// Response code (extended), or `None` if dropped.
    pub rcode: Option<u16>,
    /// Whether the response was truncated.
    pub truncated: bool,
    /// Metric slot of the PoP answered, for geo answers.
    pub pop_slot: Option<usize>,
    /// The answer came from GeoIP or the default order, not the map.
    pub fallback: bool,
    /// Every ranked PoP was down; health was ignored to avoid an empty answer.
    pub all_down: bool,
    /// A probe-zone query: `Some(true)` answered (and logged), `Some(false)` invalid.
    pub probe: Option<bool>,
    /// The query carried an ECS option.
    pub ecs: bool,
    /// The query returned a valid server cookie: its source address is proven, and response
    /// rate limiting leaves it alone.
    pub valid_cookie: bool,
}

/// Upper bounds of the processing-time histogram's buckets, ns: from the microsecond of a
/// cached answer to the second a query might wait behind a stalled worker, so a slow tail
/// shows as where it is rather than as `+Inf`.
const PROCESSING_BOUNDS_NS: [u64; 16] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    10_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
    1_000_000_000,
];

impl Metrics {
    /// Stable counter slot for a PoP id (registers it on first sight). Past `MAX_POPS` ids
    /// (far more than any deployment has), further ones share an `other` slot.
    pub fn pop_slot(&self, id: &str) -> usize {
        let mut names = self.pop_names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = names.iter().position(|n| n == id) {
            return i;
        }
        if names.len() < MAX_POPS - 1 {
            names.push(id.to_owned());
            return names.len() - 1;
        }
        MAX_POPS - 1
    }

    /// Counts one query.
    pub fn record(&self, tcp: bool, o: &QueryOutcome) {
        if tcp { &self.tcp } else { &self.udp }.fetch_add(1, Relaxed);
        let Some(rcode) = o.rcode else {
            self.dropped.fetch_add(1, Relaxed);
            return;
        };
        if let Some(t) = o.qtype {
            let i = QTYPES
                .iter()
                .position(|(c, _)| *c == t)
                .unwrap_or(QTYPES.len());
            self.qtype[i].fetch_add(1, Relaxed);
        }
        self.rcode[(rcode as usize).min(RCODES.len() - 1)].fetch_add(1, Relaxed);
        if o.truncated {
            self.truncated.fetch_add(1, Relaxed);
        }
        if o.ecs {
            self.ecs_queries.fetch_add(1, Relaxed);
        }
        if let Some(p) = o.pop_slot {
            self.pop_answers[p.min(MAX_POPS - 1)].fetch_add(1, Relaxed);
        }
        if o.fallback {
            self.fallback_answers.fetch_add(1, Relaxed);
        }
        if o.all_down {
            self.all_down_answers.fetch_add(1, Relaxed);
        }
        match o.probe {
            Some(true) => {
                self.probe_queries.fetch_add(1, Relaxed);
            }
            Some(false) => {
                self.probe_invalid.fetch_add(1, Relaxed);
            }
            None => {}
        }
    }

    /// Exposes the probe log writer's counters.
    pub fn set_probe_log(&self, stats: std::sync::Arc<geodns_beacon::WriterStats>) {
        let _ = self.probe_log.set(stats);
    }

    /// Counts a reload attempt.
    pub fn reload(&self, ok: bool) {
        if ok {
            &self.reloads
        } else {
            &self.reload_failures
        }
        .fetch_add(1, Relaxed);
    }

    /// Counts a refused health file.
    pub fn health_failure(&self) {
        self.health_failures.fetch_add(1, Relaxed);
    }

    /// Counts a TCP connection closed at accept because the limit was reached.
    pub fn tcp_refused(&self) {
        self.tcp_refused.fetch_add(1, Relaxed);
    }

    /// Records the creation time of the map now serving.
    pub fn set_map_created(&self, unix: u64) {
        self.map_created_unix.store(unix, Relaxed);
    }

    /// Records how long the responder took for one query (parse to framed response).
    #[inline]
    pub fn observe_processing(&self, took: std::time::Duration) {
        self.processing.observe(took);
    }

    /// Records how many settings of the config file wait for a restart (0: all in force).
    pub fn set_restart_pending(&self, settings: usize) {
        self.restart_pending.store(settings as u64, Relaxed);
    }

    /// Records the internal-zone snapshot now in force.
    pub fn set_internal_snapshot(&self, version: u64, created_unix: u64) {
        self.internal_version.store(version, Relaxed);
        self.internal_created_unix.store(created_unix, Relaxed);
    }

    /// Counts an internal-zone snapshot refused, by reason (one of [`REFUSED_REASONS`]).
    pub fn internal_snapshot_refused(&self, reason: &'static str) {
        let i = REFUSED_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(REFUSED_REASONS.len() - 1);
        self.internal_refused[i].fetch_add(1, Relaxed);
    }

    /// Counts a version of the internal zones taken, `whole` or as `deltas` (how many), and the
    /// bytes fetched for it.
    pub fn internal_snapshot_taken(&self, how: &'static str, deltas: u64, bytes: u64) {
        let i = TAKEN_HOW.iter().position(|h| *h == how).unwrap_or(0);
        self.internal_taken[i].fetch_add(1, Relaxed);
        self.internal_taken_bytes[i].fetch_add(bytes, Relaxed);
        self.internal_deltas.fetch_add(deltas, Relaxed);
    }

    /// Sets how many deltas the internal zones in force took since the last whole snapshot.
    pub fn set_internal_chain(&self, chain: u64) {
        self.internal_chain.store(chain, Relaxed);
    }

    /// Counts a failed save of the internal-zone snapshot to its disk cache.
    pub fn internal_snapshot_save_failed(&self) {
        self.internal_save_failures.fetch_add(1, Relaxed);
    }

    /// Counts an AF_XDP socket that started answering.
    pub fn xdp_socket_started(&self) {
        self.xdp_sockets.fetch_add(1, Relaxed);
    }

    /// Counts frames taken from AF_XDP sockets.
    pub fn xdp_frames(&self, n: u64) {
        self.xdp_frames.fetch_add(n, Relaxed);
    }

    /// Counts frames the AF_XDP path dropped, by reason (an index into [`XDP_DROP_REASONS`]).
    pub fn xdp_dropped(&self, reason: usize, n: u64) {
        self.xdp_dropped[reason].fetch_add(n, Relaxed);
    }

    /// Counts a response rate limiting dropped.
    pub fn rrl_dropped(&self) {
        self.rrl_dropped.fetch_add(1, Relaxed);
    }

    /// Counts a response rate limiting sent truncated.
    pub fn rrl_slipped(&self) {
        self.rrl_slipped.fetch_add(1, Relaxed);
    }

    /// Total queries counted (both transports).
    pub fn total_queries(&self) -> u64 {
        self.udp.load(Relaxed) + self.tcp.load(Relaxed)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut t = Text::new();
        self.render_counters(&mut t);
        let h = "geodns_query_processing_seconds";
        t.family(
            h,
            Kind::Histogram,
            "Time from a query's parse to its framed response, in the server.",
        );
        self.processing.samples(&mut t, h, &[]);
        t.finish()
    }

    fn render_counters(&self, t: &mut Text) {
        let g = |v: &AtomicU64| v.load(Relaxed);
        let q = "geodns_queries_total";
        t.family(q, Kind::Counter, "DNS queries received.")
            .sample(q, &[("transport", "udp")], g(&self.udp))
            .sample(q, &[("transport", "tcp")], g(&self.tcp));
        let a = "geodns_answers_total";
        t.family(a, Kind::Counter, "Queries answered, by QTYPE (geodns_queries_total counts every query received, by transport).");
        for (i, (_, name)) in QTYPES.iter().enumerate() {
            t.sample(a, &[("qtype", name)], g(&self.qtype[i]));
        }
        t.sample(a, &[("qtype", "other")], g(&self.qtype[QTYPES.len()]));
        let r = "geodns_responses_total";
        t.family(r, Kind::Counter, "Responses by rcode.");
        // Every rcode, always: a rare one must not make a new series when it first happens.
        for (i, name) in RCODES.iter().enumerate() {
            t.sample(r, &[("rcode", name)], g(&self.rcode[i]));
        }
        let simple: [(&str, Kind, &str, &AtomicU64); 20] = [
            (
                "geodns_probe_queries_total",
                Kind::Counter,
                "Valid probe-zone queries answered.",
                &self.probe_queries,
            ),
            (
                "geodns_probe_invalid_queries_total",
                Kind::Counter,
                "Probe-zone queries with a bad id or unknown PoP (NXDOMAIN, not logged).",
                &self.probe_invalid,
            ),
            (
                "geodns_packets_dropped_total",
                Kind::Counter,
                "Packets received and not answered (not a DNS query, or a response).",
                &self.dropped,
            ),
            (
                "geodns_responses_truncated_total",
                Kind::Counter,
                "UDP responses sent truncated (TC set), for the client to retry over TCP.",
                &self.truncated,
            ),
            (
                "geodns_fallback_answers_total",
                Kind::Counter,
                "Geo answers from GeoIP or the default order.",
                &self.fallback_answers,
            ),
            (
                "geodns_all_down_answers_total",
                Kind::Counter,
                "Geo answers given with every ranked PoP down.",
                &self.all_down_answers,
            ),
            (
                "geodns_reloads_total",
                Kind::Counter,
                "Successful reloads of config, zones and map.",
                &self.reloads,
            ),
            (
                "geodns_reload_failures_total",
                Kind::Counter,
                "Refused reloads (the old data kept serving).",
                &self.reload_failures,
            ),
            (
                "geodns_health_files_refused_total",
                Kind::Counter,
                "Refused health files.",
                &self.health_failures,
            ),
            (
                "geodns_tcp_connections_refused_total",
                Kind::Counter,
                "TCP connections closed at the connection limit.",
                &self.tcp_refused,
            ),
            (
                "geodns_map_created_timestamp_seconds",
                Kind::Gauge,
                "Creation time of the serving map.",
                &self.map_created_unix,
            ),
            (
                "geodns_config_restart_pending",
                Kind::Gauge,
                "Settings in the config file that are not in force until a restart (listen, tcp, probe_log, zookeeper).",
                &self.restart_pending,
            ),
            (
                "geodns_rrl_dropped_total",
                Kind::Counter,
                "UDP responses response rate limiting dropped ([rrl]).",
                &self.rrl_dropped,
            ),
            (
                "geodns_rrl_slipped_total",
                Kind::Counter,
                "UDP responses response rate limiting sent truncated, for the client to retry over TCP ([rrl] slip).",
                &self.rrl_slipped,
            ),
            (
                "geodns_queries_with_ecs_total",
                Kind::Counter,
                "Queries that carried an EDNS Client Subnet option (the rest of geodns_queries_total did not).",
                &self.ecs_queries,
            ),
            (
                "geodns_internal_snapshot_version",
                Kind::Gauge,
                "Version of the internal-zone snapshot in force (0: none).",
                &self.internal_version,
            ),
            (
                "geodns_internal_snapshot_created_timestamp_seconds",
                Kind::Gauge,
                "Creation time of the internal-zone snapshot in force; its age is now minus this.",
                &self.internal_created_unix,
            ),
            (
                "geodns_internal_snapshot_save_failures_total",
                Kind::Counter,
                "Failed saves of the internal-zone snapshot in force to its disk cache (a full disk); retried every 5 s until one succeeds.",
                &self.internal_save_failures,
            ),
            (
                "geodns_internal_snapshot_deltas_total",
                Kind::Counter,
                "Deltas applied to the internal zones (each the change from one version to the next).",
                &self.internal_deltas,
            ),
            (
                "geodns_internal_snapshot_chain",
                Kind::Gauge,
                "Deltas the internal zones in force took since the last snapshot loaded whole.",
                &self.internal_chain,
            ),
        ];
        for (name, kind, help, v) in simple {
            t.single(name, kind, help, g(v));
        }
        let r = "geodns_internal_snapshots_refused_total";
        t.family(r, Kind::Counter, "Internal-zone snapshots refused, by reason: signature (not signed by a trusted key), version (not newer than the one in force), damaged (size, checksum or document), zones (does not compile, or a zone out of scope), peer (a peer served bytes that are not the snapshot; another peer or ZooKeeper is asked).");
        for (reason, v) in REFUSED_REASONS.iter().zip(&self.internal_refused) {
            t.sample(r, &[("reason", reason)], g(v));
        }
        t.single(
            "geodns_xdp_sockets",
            Kind::Gauge,
            "AF_XDP sockets answering UDP ([listen] xdp; 0: the kernel's sockets answer all).",
            g(&self.xdp_sockets),
        );
        t.single(
            "geodns_xdp_frames_total",
            Kind::Counter,
            "Frames taken from AF_XDP sockets (UDP queries that bypassed the kernel; also counted in geodns_queries_total).",
            g(&self.xdp_frames),
        );
        let x = "geodns_xdp_dropped_total";
        t.family(x, Kind::Counter, "Frames the AF_XDP path dropped, by reason: rx_dropped (the kernel could not queue it to the socket), rx_ring_full, fill_ring_empty (no frame to receive into), tx_ring_full (a reply found the transmit ring full).");
        for (reason, v) in XDP_DROP_REASONS.iter().zip(&self.xdp_dropped) {
            t.sample(x, &[("reason", reason)], g(v));
        }
        let u = "geodns_internal_snapshot_updates_total";
        t.family(u, Kind::Counter, "Versions of the internal zones taken, by how: whole (a whole snapshot from ZooKeeper: the first, after a restart, or when deltas could not be used), peer (the same, from another server) or deltas.");
        for (how, v) in TAKEN_HOW.iter().zip(&self.internal_taken) {
            t.sample(u, &[("how", how)], g(v));
        }
        let b = "geodns_internal_snapshot_fetched_bytes_total";
        t.family(
            b,
            Kind::Counter,
            "Bytes fetched for the internal zones, by how they were taken.",
        );
        for (how, v) in TAKEN_HOW.iter().zip(&self.internal_taken_bytes) {
            t.sample(b, &[("how", how)], g(v));
        }
        if let Some(w) = self.probe_log.get() {
            for (suffix, counter, help, v) in w.families() {
                let kind = if counter { Kind::Counter } else { Kind::Gauge };
                t.single(&format!("geodns_probe_log_{suffix}"), kind, help, v);
            }
        }
        let p = "geodns_geo_answers_total";
        t.family(p, Kind::Counter, "Geo answers by PoP.");
        let names = self
            .pop_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (i, n) in names.iter().enumerate() {
            t.sample(p, &[("pop", n)], g(&self.pop_answers[i]));
        }
        let overflow = g(&self.pop_answers[MAX_POPS - 1]);
        if overflow > 0 {
            t.sample(p, &[("pop", "other")], overflow);
        }
    }
}
