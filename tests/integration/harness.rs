//! Test harness: runs the real `geodns` binary on ephemeral ports in a temp dir with a copy of
//! the example data, and queries it with real clients (`dig`, `kdig`, hickory-proto messages
//! over sockets). The server is killed on drop; its log is printed if the test failed.

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};

/// The repository's data directory.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// The geodns binary under test.
pub fn geodns() -> Command {
    Command::new(env!("CARGO_BIN_EXE_geodns"))
}

/// The geodns binary, run inside a network namespace when one is given.
pub fn geodns_in(netns: Option<&str>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_geodns")]);
            c
        }
        None => geodns(),
    }
}

pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    pub dns: SocketAddr,
    pub metrics: SocketAddr,
    log: PathBuf,
}

/// The example config, rewritten to listen on ephemeral ports, with `extra` appended to the
/// top-level keys (before the first table) and `zone_extra` to the zone.
pub fn example_config(top_extra: &str, tables_extra: &str) -> String {
    let base = std::fs::read_to_string(data_dir().join("geodns.toml")).unwrap();
    let base = base
        .replace("dns = [\"127.0.0.1:5353\"]", "dns = [\"127.0.0.1:0\"]")
        .replace("metrics = \"127.0.0.1:9153\"", "metrics = \"127.0.0.1:0\"")
        .replace(
            "default_order =",
            &format!("watch_interval_ms = 100\n{top_extra}\ndefault_order ="),
        );
    format!("{base}\n{tables_extra}\n")
}

impl Server {
    /// Starts the server on the example data with `config` as its config file.
    pub fn start(config: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        for f in ["example.com.zone", "example-map.arrow", "example-nets.csv"] {
            std::fs::copy(data_dir().join(f), dir.path().join(f)).unwrap();
        }
        Server::start_in(dir, config)
    }

    /// Starts the server on the example data with a given `RUST_LOG`.
    pub fn start_logging(config: &str, rust_log: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        for f in ["example.com.zone", "example-map.arrow"] {
            std::fs::copy(data_dir().join(f), dir.path().join(f)).unwrap();
        }
        Server::start_with(dir, config, rust_log)
    }

    /// Starts the server in a prepared directory.
    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Server {
        Server::start_with(dir, config, "info")
    }

    fn start_with(dir: tempfile::TempDir, config: &str, rust_log: &str) -> Server {
        Server::start_netns(dir, config, rust_log, None)
    }

    /// Starts the server in a prepared directory, inside a network namespace if given.
    pub fn start_netns(
        dir: tempfile::TempDir,
        config: &str,
        rust_log: &str,
        netns: Option<&str>,
    ) -> Server {
        let cfg = dir.path().join("geodns.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.path().join("server.log");
        let child = geodns_in(netns)
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            dir,
            dns: "0.0.0.0:0".parse().unwrap(),
            metrics: "0.0.0.0:0".parse().unwrap(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = server.log_text();
            let (dns, metrics) = (
                bound(&text, "listening udp"),
                bound(&text, "listening metrics"),
            );
            if let (Some(d), Some(m)) = (dns, metrics) {
                server.dns = d;
                server.metrics = m;
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("server exited with {status} before listening; log:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "server did not start; log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and starts it again in the same directory with the same
    /// config: what it serves at once comes from its files (a restart while ZooKeeper is down).
    pub fn restart(mut self) -> Server {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let config = std::fs::read_to_string(dir.path().join("geodns.toml")).unwrap();
        drop(self);
        Server::start_in(dir, &config)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits until the log contains `needle` `count` times.
    pub fn wait_log(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.log_text().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {count}x {needle:?} in log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs dig against the server with the given arguments.
    pub fn dig(&self, args: &[&str]) -> String {
        run_tool(
            "dig",
            &self.client_args(&[&["+time=2", "+tries=1"], args].concat()),
        )
    }

    /// Runs kdig against the server.
    pub fn kdig(&self, args: &[&str]) -> String {
        run_tool(
            "kdig",
            &self.client_args(&[&["+time=2", "+retry=0"], args].concat()),
        )
    }

    fn client_args(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            format!("@{}", self.dns.ip()),
            "-p".into(),
            self.dns.port().to_string(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// Sends a raw packet over UDP; returns the response bytes, or None on timeout.
    pub fn udp_raw(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        sock.send_to(packet, self.dns).unwrap();
        let mut buf = [0u8; 65535];
        sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    }

    /// Sends a hickory-built query over UDP and parses the response.
    pub fn query(&self, msg: &Message) -> Message {
        let resp = self.udp_raw(&msg.to_vec().unwrap()).expect("no response");
        Message::from_vec(&resp).expect("response parses")
    }

    /// Fetches the Prometheus metrics text.
    pub fn metrics(&self) -> String {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(self.metrics).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// A counter's value from the metrics page.
    pub fn metric(&self, line_prefix: &str) -> u64 {
        let m = self.metrics();
        m.lines()
            .find_map(|l| {
                l.strip_prefix(line_prefix)
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no metric {line_prefix:?} in:\n{m}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- server log ----\n{}\n--------------------",
                self.log_text()
            );
        }
    }
}

pub fn bound(log: &str, what: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains(what))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("bound="))
        .and_then(|a| a.parse().ok())
}

/// Runs a client tool; a missing tool fails the test (CI must install it, never skip).
pub fn run_tool(tool: &str, args: &[String]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}); scripts/test.sh installs it"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A query message, optionally with EDNS and ECS.
pub fn message(name: &str, rtype: RecordType, ecs: Option<&str>) -> Message {
    let mut m = Message::query();
    m.metadata.id = rand_id();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(subnet) = ecs {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.options_mut()
            .insert(EdnsOption::Subnet(subnet.parse::<ClientSubnet>().unwrap()));
        m.set_edns(e);
    }
    m
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        & 0xffff) as u16
}

/// The A/AAAA addresses in a response's answer section, sorted.
pub fn addresses(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::A(a) => Some(a.to_string()),
            hickory_proto::rr::RData::AAAA(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// The ECS scope in a response, if it carried the option.
pub fn ecs_scope(m: &Message) -> Option<u8> {
    m.edns.as_ref().and_then(|e| {
        match e
            .options()
            .get(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
        {
            Some(EdnsOption::Subnet(s)) => Some(s.scope_prefix()),
            _ => None,
        }
    })
}

/// The example config plus a `big.example.com` TXT RRset (40 records of 100 bytes) that does
/// not fit in any UDP response.
pub fn config_with_big_txt() -> String {
    let big: Vec<String> = (0..40)
        .map(|i| format!("\"big 300 IN TXT \\\"{i:02}{}\\\"\"", "x".repeat(98)))
        .collect();
    example_config("", "").replace(
        "records = [\"txt 300 IN TXT \\\"inline record\\\"\"]",
        &format!(
            "records = [\"txt 300 IN TXT \\\"inline record\\\"\", {}]",
            big.join(", ")
        ),
    )
}

/// A running collector (`geodns beacon`).
pub struct Collector {
    child: Child,
    pub dir: PathBuf,
    pub http: SocketAddr,
    log: PathBuf,
}

/// A collector config for tests: ephemeral port, logs in `dir/logs`, the example PoPs,
/// 127.0.0.2 as a trusted proxy; `extra` is appended to the top-level keys.
pub fn collector_config(extra: &str, log_extra: &str) -> String {
    format!(
        "collector_id = \"c1\"\nlisten = \"127.0.0.1:0\"\npops = [\"ams\", \"iad\", \"sin\"]\n\
         probe_zone = \"probe.example.com\"\ntrusted_proxies = [\"127.0.0.2/32\"]\n{extra}\n\
         [log]\ndir = \"logs\"\n{log_extra}\n"
    )
}

impl Collector {
    /// Starts a collector in `dir` (which it does not own: tests restart collectors on the
    /// same directory).
    pub fn start(dir: &Path, config: &str) -> Collector {
        Collector::start_netns(dir, config, None)
    }

    /// Starts a collector, inside a network namespace if given.
    pub fn start_netns(dir: &Path, config: &str, netns: Option<&str>) -> Collector {
        let cfg = dir.join("beacon.toml");
        std::fs::write(&cfg, config).unwrap();
        let n = std::fs::read_dir(dir).unwrap().count();
        let log = dir.join(format!("collector-{n}.log"));
        let child = geodns_in(netns)
            .args(["beacon", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut c = Collector {
            child,
            dir: dir.to_path_buf(),
            http: "0.0.0.0:0".parse().unwrap(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = c.log_text();
            if let Some(a) = bound(&text, "listening http") {
                c.http = a;
                return c;
            }
            if let Ok(Some(status)) = c.child.try_wait() {
                panic!("collector exited with {status}; log:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "collector did not start; log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills with SIGKILL and reaps.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit (after a signal sent by the test).
    pub fn wait_exit(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "collector did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// POSTs a report from 127.0.0.1.
    pub fn post(&self, body: &str) -> (u16, String) {
        http(
            self.http,
            "127.0.0.1",
            "POST",
            "/v1/report",
            &[],
            body.as_bytes(),
        )
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- collector log ----\n{}\n-----------------------",
                self.log_text()
            );
        }
    }
}

/// One HTTP/1.1 request from a chosen loopback source address; returns status and body.
pub fn http(
    addr: SocketAddr,
    from: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use std::io::Write;
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(from.parse().unwrap(), 0).into())
        .unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: collector\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A port free for both UDP and TCP on 127.0.0.1 (whoever needs it binds it right after).
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Writes `nets` (gdnsd-style `prefix,pop,...` lines) as a map at `out` with `geodns map
/// import-nets`, through the real binary.
pub fn import_nets(dir: &Path, nets: &str, out: &Path, generation: &str) {
    let nets_path = dir.join(format!("{generation}.csv"));
    std::fs::write(&nets_path, nets).unwrap();
    let o = geodns()
        .args(["map", "import-nets"])
        .arg(&nets_path)
        .arg(out)
        .args(["--generation", generation])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A directory holding the example zone and map and the example config (ephemeral ports), for
/// tests that start `geodns serve` themselves; returns it and the config's path.
pub fn example_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for f in ["example.com.zone", "example-map.arrow"] {
        std::fs::copy(data_dir().join(f), dir.path().join(f)).unwrap();
    }
    let cfg = dir.path().join("geodns.toml");
    std::fs::write(&cfg, example_config("", "")).unwrap();
    (dir, cfg)
}
