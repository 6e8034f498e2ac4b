//! The HTTP collector (`geodns beacon`): serves the page snippet and takes clients' reports.
//!
//! `POST /v1/report` takes a report (or a batch), resolves the client address (socket peer, or
//! `X-Forwarded-For` from a trusted proxy), rate-limits per client, validates everything, and
//! answers 204 only once every row is in the writer's queue: an acknowledged report is durable
//! up to the writer's roll window. Refusals are 4xx with a JSON `{"error": ...}` naming the
//! field at fault (503 when the queue is full or log writes are failing), and each is counted
//! by reason; so are unknown paths (404) and methods (405).
//! `GET /beacon.js` serves the snippet with this collector's PoPs and probe zone filled in,
//! `GET /demo` a page that runs it, and `GET /` the empty probe object (so a collector can be
//! the probe target too); `GET /healthz` (503 while log writes fail) and `GET /metrics` serve
//! operators.

pub mod client;
pub mod config;
pub mod connections;
pub mod report;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use geodns_daemon::prometheus::{self, Histogram, Kind, Text};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::schema::RttReportRow;
use crate::writer::{now_micros, LogRefused, LogWriter, WriterConfig, WriterError};
pub use config::{CollectorConfig, ConfigError};
use connections::ConnectionStats;

/// Refusal reasons, as counted in `geodns_beacon_requests_rejected_total{reason=...}`.
const REASONS: [&str; 15] = [
    "malformed_json",
    "bad_forwarded_for",
    "body_timeout",
    "not_found",
    "method_not_allowed",
    "log_write_failing",
    "bad_probe_id",
    "unknown_pop",
    "bad_rtt",
    "empty",
    "duplicate_pop",
    "too_many_results",
    "body_too_large",
    "rate_limited",
    "queue_full",
];

struct App {
    cfg: CollectorConfig,
    writer: LogWriter<RttReportRow>,
    limiter: DefaultKeyedRateLimiter<std::net::IpAddr>,
    accepted: AtomicU64,
    rows_accepted: AtomicU64,
    rejected: [AtomicU64; REASONS.len()],
    connections: Arc<ConnectionStats>,
    snippet: String,
    /// Request latency, by the routes in [`ROUTES`].
    latency: Vec<Histogram>,
}

/// The routes request latency is counted by (`route` label); `other` is anything else (404s).
const ROUTES: [(&str, &str); 7] = [
    ("/v1/report", "report"),
    ("/", "probe"),
    ("/beacon.js", "snippet"),
    ("/demo", "demo"),
    ("/healthz", "healthz"),
    ("/metrics", "metrics"),
    ("", "other"),
];

/// Request latency buckets, ns: 100 µs to 10 s (a report's body arrives over the client's
/// connection, so the slow end is the client's, and worth seeing).
const LATENCY_BOUNDS_NS: [u64; 15] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// Times each request, from its head to its response, by route.
async fn timed(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let route = ROUTES
        .iter()
        .position(|(p, _)| *p == path)
        .unwrap_or(ROUTES.len() - 1);
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    app.latency[route].observe(started.elapsed());
    resp
}

impl App {
    fn reject(&self, status: StatusCode, reason: &'static str, message: String) -> Response {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Relaxed);
        }
        let body = serde_json::json!({ "error": message, "reason": reason }).to_string();
        let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The log writer could not start.
    #[error("log: {0}")]
    Writer(#[from] WriterError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

const SNIPPET: &str = include_str!("../../js/beacon.js");

/// Runs the collector until SIGTERM or SIGINT, then flushes the log.
pub async fn run(cfg: CollectorConfig) -> Result<(), CollectorError> {
    let writer = LogWriter::<RttReportRow>::start(WriterConfig {
        root: cfg.log.dir.clone(),
        writer_id: cfg.collector_id.clone(),
        max_rows: cfg.log.max_rows,
        max_age: Duration::from_millis(cfg.log.max_age_ms),
        queue_rows: cfg.log.queue_rows,
        reserve_bytes: cfg.log.reserve_bytes,
    })?;
    let quota = Quota::per_second(NonZeroU32::new(cfg.rate_per_second).expect("validated"))
        .allow_burst(NonZeroU32::new(cfg.rate_burst).expect("validated"));
    let prelude = serde_json::json!({
        "pops": cfg.pops,
        "probeZone": cfg.probe_zone,
        "scheme": cfg.probe_scheme,
        "report": "/v1/report",
    });
    let snippet = format!("window.GEODNS_BEACON = window.GEODNS_BEACON || {prelude};\n{SNIPPET}");
    let listen = cfg.listen;
    let limits = connections::Limits {
        max_connections: cfg.max_connections,
        header_timeout: Duration::from_millis(cfg.header_timeout_ms),
    };
    let app = Arc::new(App {
        cfg,
        writer,
        limiter: RateLimiter::keyed(quota),
        accepted: AtomicU64::new(0),
        rows_accepted: AtomicU64::new(0),
        rejected: Default::default(),
        connections: Arc::new(ConnectionStats::default()),
        snippet,
        latency: ROUTES
            .iter()
            .map(|_| Histogram::new(&LATENCY_BOUNDS_NS))
            .collect(),
    });
    let router = Router::new()
        .route("/v1/report", post(report).options(preflight))
        .route("/", get(probe_object))
        .route("/demo", get(demo_page))
        .route("/beacon.js", get(snippet_js))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(app.clone(), timed))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| CollectorError::Bind {
            addr: listen,
            source,
        })?;
    let bound = listener
        .local_addr()
        .map_err(|source| CollectorError::Bind {
            addr: listen,
            source,
        })?;
    tracing::info!(%bound, "listening http");

    let sweeper = {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                app.limiter.retain_recent();
            }
        })
    };
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
    };
    connections::serve(
        listener,
        router,
        limits,
        app.connections.clone(),
        shutdown,
        Duration::from_secs(5),
    )
    .await;
    sweeper.abort();
    // The final flush fsyncs: off the async workers.
    let flushing = app.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.writer.flush()).await;
    tracing::info!(
        rows = app.writer.stats().rows_written.load(Relaxed),
        "log flushed"
    );
    Ok(())
}

async fn report(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Every X-Forwarded-For line, in order, is one list (RFC 9110 5.3): a client cannot hide
    // the proxy's line behind one of its own.
    let mut forwarded = String::new();
    for v in headers.get_all("x-forwarded-for") {
        if !forwarded.is_empty() {
            forwarded.push(',');
        }
        forwarded.push_str(v.to_str().unwrap_or("\u{fffd}"));
    }
    let forwarded = (!forwarded.is_empty()).then_some(forwarded.as_str());
    let client = match client::client_ip(peer.ip(), forwarded, &app.cfg.trusted_proxies) {
        Ok(ip) => ip,
        Err(why) => return app.reject(StatusCode::BAD_REQUEST, "bad_forwarded_for", why),
    };
    if app.limiter.check_key(&client).is_err() {
        return app.reject(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many reports from {client}; slow down"),
        );
    }
    let limit = app.cfg.max_body_bytes;
    let body = match tokio::time::timeout(
        Duration::from_millis(app.cfg.body_timeout_ms),
        axum::body::to_bytes(body, limit),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return app.reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("body larger than {limit} bytes (or cut short)"),
            )
        }
        Err(_) => {
            let ms = app.cfg.body_timeout_ms;
            return app.reject(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("body not received within {ms} ms"),
            );
        }
    };
    let limits = report::Limits {
        pops: &app.cfg.pops,
        max_results: app.cfg.max_results,
        max_rtt_ms: app.cfg.max_rtt_ms,
    };
    let rows = match report::parse_report(
        &body,
        &limits,
        now_micros(),
        &client.to_string(),
        &app.cfg.collector_id,
    ) {
        Ok(rows) => rows,
        Err(r) => return app.reject(StatusCode::BAD_REQUEST, r.reason, r.message),
    };
    let n = rows.len() as u64;
    match app.writer.try_log(rows) {
        Ok(()) => {}
        Err(e @ LogRefused::QueueFull) => {
            return app.reject(
                StatusCode::SERVICE_UNAVAILABLE,
                e.reason(),
                "collector busy; retry later".into(),
            )
        }
        Err(e @ LogRefused::Failing(_)) => {
            return app.reject(
                StatusCode::SERVICE_UNAVAILABLE,
                e.reason(),
                "collector cannot store reports now; retry later".into(),
            )
        }
    }
    app.accepted.fetch_add(1, Relaxed);
    app.rows_accepted.fetch_add(n, Relaxed);
    (
        StatusCode::NO_CONTENT,
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
    )
        .into_response()
}

/// `ok` while log writes work; 503 with the reason while they fail (the collector then
/// refuses reports, so a load balancer should send them elsewhere).
async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.writer.stats().failure() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(f) => {
            let since = humantime::format_rfc3339_seconds(f.since);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("log writes failing since {since}: {}\n", f.error),
            )
                .into_response()
        }
    }
}

async fn not_found(State(app): State<Arc<App>>, uri: axum::http::Uri) -> Response {
    app.reject(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such path: {}", uri.path()),
    )
}

async fn method_not_allowed(
    State(app): State<Arc<App>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    app.reject(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// CORS preflight for pages on other origins that post with `fetch` and a JSON content type.
async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "POST"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type"),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

/// The object the snippet fetches from each probe name: empty, never cached, and with
/// `Timing-Allow-Origin` so the page may read its detailed timings. A collector can thus also
/// be the probe target at a PoP.
async fn probe_object() -> Response {
    (
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("timing-allow-origin"), "*"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        "",
    )
        .into_response()
}

/// A page that runs the snippet once, for trying a deployment in a browser.
async fn demo_page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
        "<!doctype html><meta charset=utf-8><title>geodns beacon</title>\n<p id=status>measuring...</p>\n\
         <script src=\"/beacon.js\"></script>\n\
         <script>addEventListener('geodns-beacon', function (e) { document.getElementById('status').textContent = JSON.stringify(e.detail); });</script>\n",
    )
        .into_response()
}

async fn snippet_js(State(app): State<Arc<App>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        app.snippet.clone(),
    )
        .into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut t = Text::new();
    let g = |v: &AtomicU64| v.load(Relaxed);
    let c = &app.connections;
    let simple: [(&str, Kind, &str, &AtomicU64); 7] = [
        (
            "geodns_beacon_requests_accepted_total",
            Kind::Counter,
            "Report requests (POST /v1/report) acknowledged with 204; their rows are queued (geodns_beacon_rows_accepted_total).",
            &app.accepted,
        ),
        (
            "geodns_beacon_rows_accepted_total",
            Kind::Counter,
            "Rows queued from acknowledged requests.",
            &app.rows_accepted,
        ),
        (
            "geodns_beacon_connections_open",
            Kind::Gauge,
            "HTTP connections open.",
            &c.open,
        ),
        (
            "geodns_beacon_connections_accepted_total",
            Kind::Counter,
            "HTTP connections accepted.",
            &c.accepted,
        ),
        (
            "geodns_beacon_connections_refused_total",
            Kind::Counter,
            "Connections refused with 503 at max_connections.",
            &c.refused,
        ),
        (
            "geodns_beacon_connections_timed_out_total",
            Kind::Counter,
            "Connections closed: request headers not received in time (idle or slow).",
            &c.header_timeouts,
        ),
        (
            "geodns_beacon_accept_errors_total",
            Kind::Counter,
            "Failed accept calls (e.g. at the file-descriptor limit).",
            &c.accept_errors,
        ),
    ];
    for (name, kind, help, v) in simple {
        t.single(name, kind, help, g(v));
    }
    for (suffix, counter, help, v) in app.writer.stats().families() {
        let kind = if counter { Kind::Counter } else { Kind::Gauge };
        t.single(&format!("geodns_beacon_log_{suffix}"), kind, help, v);
    }
    let h = "geodns_beacon_request_duration_seconds";
    t.family(
        h,
        Kind::Histogram,
        "Time from a request's head to its response, by route.",
    );
    for ((_, route), hist) in ROUTES.iter().zip(&app.latency) {
        hist.samples(&mut t, h, &[("route", route)]);
    }
    let r = "geodns_beacon_requests_rejected_total";
    t.family(r, Kind::Counter, "Requests refused, by reason.");
    for (i, reason) in REASONS.iter().enumerate() {
        t.sample(r, &[("reason", reason)], g(&app.rejected[i]));
    }
    prometheus::standard(&mut t);
    (
        [(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)],
        t.finish(),
    )
        .into_response()
}
