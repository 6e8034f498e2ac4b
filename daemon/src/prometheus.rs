//! The Prometheus text exposition format (version 0.0.4), written one way for every geodns
//! process: a family's `# HELP` and `# TYPE` lines, then its samples, label values escaped by
//! the format's rules; the families every process exposes ([`standard`]: `geodns_build_info`
//! and the `process_*` metrics Prometheus's client libraries define); a lock-free
//! [`Histogram`]; and the minimal HTTP endpoint that serves it all.
//!
//! The naming rules every family follows (checked by `tests/integration/metrics.rs` with
//! promtool and against the list in docs/operations.md): `geodns_<what>_<unit>`, counters end
//! in `_total` and are named for what they count, no label's name in a family's name, and
//! one series per thing whose value changes, never a series that appears or vanishes when a
//! state changes.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// What a family measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (restarts at 0 with the process).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// An exposition being written: families, each followed by its samples.
#[derive(Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// An empty exposition.
    pub fn new() -> Text {
        Text {
            out: String::with_capacity(4096),
        }
    }

    /// Begins a family: its `# HELP` and `# TYPE` lines. Its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Text {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} {}",
            kind.as_str()
        );
        self
    }

    /// One sample of the family begun last: `name` (the family's, or with a histogram's
    /// `_bucket`, `_sum` or `_count`), its labels, its value.
    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Text {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) -> &mut Text {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// The exposition so far.
    pub fn finish(self) -> String {
        self.out
    }
}

/// The families every geodns process exposes: `geodns_build_info{version} 1` (what changes on a
/// reload, such as the map's generation, has gauges of its own, so a reload makes no new
/// series) and the standard `process_*` metrics (CPU, memory, file descriptors, start time),
/// read from `/proc/self` as Prometheus's own client libraries do on Linux.
pub fn standard(t: &mut Text) {
    let b = "geodns_build_info";
    t.family(b, Kind::Gauge, "The running build (always 1).")
        .sample(b, &[("version", env!("CARGO_PKG_VERSION"))], 1);
    let Ok(me) = procfs::process::Process::myself() else {
        return;
    };
    let tps = procfs::ticks_per_second() as f64;
    if let Ok(stat) = me.stat() {
        t.single(
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
            (stat.utime + stat.stime) as f64 / tps,
        );
        t.single(
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
            stat.vsize,
        );
        t.single(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            stat.rss * procfs::page_size(),
        );
        if let Ok(boot) = procfs::boot_time_secs() {
            t.single(
                "process_start_time_seconds",
                Kind::Gauge,
                "Start time of the process since unix epoch in seconds.",
                boot as f64 + stat.starttime as f64 / tps,
            );
        }
    }
    if let Ok(n) = me.fd_count() {
        t.single(
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            n,
        );
    }
    if let Ok(limits) = me.limits() {
        if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
            t.single(
                "process_max_fds",
                Kind::Gauge,
                "Maximum number of open file descriptors.",
                max,
            );
        }
    }
}

/// A histogram of durations over fixed bucket bounds, lock-free (one relaxed add per bucket
/// found and one for the sum): safe on a query path shared by every worker.
pub struct Histogram {
    bounds_ns: &'static [u64],
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// A histogram whose buckets end at `bounds_ns` (nanoseconds, ascending), plus `+Inf`.
    pub fn new(bounds_ns: &'static [u64]) -> Histogram {
        Histogram {
            bounds_ns,
            buckets: (0..=bounds_ns.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Counts one duration of `ns` nanoseconds.
    pub fn observe_ns(&self, ns: u64) {
        let i = self.bounds_ns.partition_point(|b| *b < ns);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Counts one duration.
    pub fn observe(&self, d: Duration) {
        self.observe_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Writes the histogram's samples (in seconds) with `labels`, under a family begun by the
    /// caller (several label sets may share one family).
    pub fn samples(&self, t: &mut Text, name: &str, labels: &[(&str, &str)]) {
        let mut cum = 0;
        let bucket = format!("{name}_bucket");
        for (i, b) in self.bounds_ns.iter().enumerate() {
            cum += self.buckets[i].load(Relaxed);
            let le = (*b as f64 / 1e9).to_string();
            let mut l = labels.to_vec();
            l.push(("le", &le));
            t.sample(&bucket, &l, cum);
        }
        cum += self.buckets[self.bounds_ns.len()].load(Relaxed);
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        t.sample(&bucket, &l, cum);
        t.sample(
            &format!("{name}_sum"),
            labels,
            self.sum_ns.load(Relaxed) as f64 / 1e9,
        );
        t.sample(&format!("{name}_count"), labels, cum);
    }
}

/// A minimal HTTP/1.1 responder for `GET /metrics` (the server's and the presenter's; the
/// collector serves its own through its HTTP stack): one request per connection, which is all
/// a Prometheus scraper needs. `render` makes the body, followed by the [`standard`] families.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) {
    loop {
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // At the file-descriptor limit accept fails at once, again and again: pause
                // rather than spin a core.
                tracing::warn!(error = %e, "metrics accept failed; pausing");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut req = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    let n = stream.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    req.extend_from_slice(&chunk[..n]);
                }
                Some(())
            })
            .await;
            if !matches!(read, Ok(Some(()))) {
                return;
            }
            let (status, body) =
                if req.starts_with(b"GET /metrics ") || req.starts_with(b"GET /metrics?") {
                    ("200 OK", {
                        let mut t = Text::new();
                        standard(&mut t);
                        render() + &t.finish()
                    })
                } else {
                    ("404 Not Found", "not found; try /metrics\n".to_owned())
                };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_in_the_text_format() {
        let mut t = Text::new();
        t.single("a_total", Kind::Counter, "As.", 3)
            .family("b", Kind::Gauge, "Bs, by \\ and\nline.")
            .sample("b", &[("pop", "ams"), ("odd", "q\"\\\n")], 0.5);
        assert_eq!(
            t.finish(),
            "# HELP a_total As.\n# TYPE a_total counter\na_total 3\n\
             # HELP b Bs, by \\\\ and\\nline.\n# TYPE b gauge\n\
             b{pop=\"ams\",odd=\"q\\\"\\\\\\n\"} 0.5\n"
        );
    }

    #[test]
    fn a_histogram_counts_into_cumulative_buckets() {
        static BOUNDS: [u64; 2] = [1_000, 1_000_000];
        let h = Histogram::new(&BOUNDS);
        for ns in [500, 1_000, 1_001, 2_000_000] {
            h.observe_ns(ns);
        }
        let mut t = Text::new();
        t.family("x_seconds", Kind::Histogram, "X.");
        h.samples(&mut t, "x_seconds", &[("route", "r")]);
        let text = t.finish();
        for line in [
            "x_seconds_bucket{route=\"r\",le=\"0.000001\"} 2",
            "x_seconds_bucket{route=\"r\",le=\"0.001\"} 3",
            "x_seconds_bucket{route=\"r\",le=\"+Inf\"} 4",
            "x_seconds_count{route=\"r\"} 4",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn every_process_says_its_build_and_its_resources() {
        let mut t = Text::new();
        standard(&mut t);
        let text = t.finish();
        for name in [
            "geodns_build_info{version=",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "{name} in\n{text}");
        }
    }
}
