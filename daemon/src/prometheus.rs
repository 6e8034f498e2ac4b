//! The Prometheus text exposition format (version 0.0.4), written one way for every geodns
//! process: a family's `# HELP` and `# TYPE` lines, then its samples, label values escaped by
//! the format's rules; and the minimal HTTP endpoint that serves it.

use std::fmt::{Display, Write as _};
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

/// A minimal HTTP/1.1 responder for `GET /metrics` (the server's and the presenter's; the
/// collector serves its own through its HTTP stack): one request per connection, which is all
/// a Prometheus scraper needs. `render` makes the body.
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
                    ("200 OK", render())
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
}
