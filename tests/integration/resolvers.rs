//! The whole path through real recursive resolvers on loopback, as users reach us: unbound with
//! its subnet cache and the PowerDNS Recursor with ECS for our zone. Clients are distinct source
//! addresses on 127/8. Clients in different mapped subnets get their own PoPs through one
//! resolver; a second client inside the scope we returned is answered from the resolver's cache,
//! one outside it is not; a resolver that sends no ECS gets the answer for its own address; and
//! an answer too big for UDP goes TC, then TCP, through the resolver.
//!
//! The resolvers never leave loopback: their root hints name 127.0.0.9, and only our stub or
//! forward zone is ever asked.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{config_with_big_txt, data_dir, free_port, import_nets, Server};

/// The map behind these tests: loopback at large ranks sin first, two /24s of client sources
/// rank ams and iad, and 127.0.2.1 (the ECS-less resolver's source) sits in the iad /24.
const NETS: &str = "127.0.0.0/8,sin,ams,iad\n127.0.1.0/24,ams,iad,sin\n127.0.2.0/24,iad,ams,sin\n";
const AMS: &str = "192.0.2.10";
const IAD: &str = "192.0.2.20";
const SIN: [&str; 2] = ["192.0.2.30", "192.0.2.31"];

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        data_dir().join("example.com.zone"),
        dir.path().join("example.com.zone"),
    )
    .unwrap();
    import_nets(
        dir.path(),
        NETS,
        &dir.path().join("example-map.arrow"),
        "resolvers",
    );
    Server::start_in(dir, &config_with_big_txt())
}

/// A recursive resolver process, killed on drop.
pub struct Resolver {
    child: Child,
    pub port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn root_hints(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("root.hints");
    std::fs::write(
        &path,
        ".\t3600\tIN\tNS\tlocalroot.\nlocalroot.\t3600\tIN\tA\t127.0.0.9\n",
    )
    .unwrap();
    path
}

impl Resolver {
    /// unbound with a stub zone for example.com at our server. With `ecs`, the subnet cache
    /// module sends ECS (/24) to our server; without, queries leave from `source` with none.
    fn unbound(s: &Server, ecs: bool, source: &str) -> Resolver {
        Resolver::unbound_for(s, &["example.com"], ecs, source)
    }

    /// unbound with stub zones for `zones`, all at our server (a host's local cache).
    pub fn unbound_for(s: &Server, zones: &[&str], ecs: bool, source: &str) -> Resolver {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let modules = if ecs {
            "subnetcache iterator"
        } else {
            "iterator"
        };
        let ecs_lines = if ecs {
            "  send-client-subnet: 127.0.0.1\n  max-client-subnet-ipv4: 24\n"
        } else {
            ""
        };
        let conf = format!(
            "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-daemonize: no\n  username: \"\"\n  \
             chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n  \
             verbosity: 1\n  num-threads: 1\n  do-ip6: no\n  access-control: 127.0.0.0/8 allow\n  \
             do-not-query-localhost: no\n  outgoing-interface: {source}\n  module-config: \"{modules}\"\n\
             {ecs_lines}  qname-minimisation: no\n  root-hints: \"{hints}\"\n  \
             trust-anchor-signaling: no\n{stubs}",
            dir = dir.path().display(),
            hints = root_hints(dir.path()).display(),
            stubs = zones
                .iter()
                .map(|z| format!(
                    "stub-zone:\n  name: \"{z}\"\n  stub-addr: {}@{}\n",
                    s.dns.ip(),
                    s.dns.port()
                ))
                .collect::<String>(),
        );
        let conf_path = dir.path().join("unbound.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = dir.path().join("unbound.log");
        let child = Command::new("unbound")
            .args(["-d", "-c"])
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("unbound is installed (Debian package unbound; scripts/test.sh installs it)");
        Resolver::ready(child, port, log, dir)
    }

    /// The PowerDNS Recursor forwarding example.com to our server, adding ECS (/24) for every
    /// client and sending it to that zone.
    fn pdns(s: &Server) -> Resolver {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = format!(
            "local-address=127.0.0.1\nlocal-port={port}\nsocket-dir={dir}\ndaemon=no\nwrite-pid=no\n\
             threads=1\nallow-from=127.0.0.0/8\ndont-query=0.0.0.0/0, ::/0, !{addr}\n\
             forward-zones=example.com={addr}:{sport}\nedns-subnet-allow-list=example.com\n\
             ecs-add-for=0.0.0.0/0, ::/0\necs-ipv4-bits=24\ndnssec=off\nsecurity-poll-suffix=\n\
             hint-file={hints}\nquiet=yes\n",
            dir = dir.path().display(),
            hints = root_hints(dir.path()).display(),
            addr = s.dns.ip(),
            sport = s.dns.port(),
        );
        std::fs::write(dir.path().join("recursor.conf"), conf).unwrap();
        let log = dir.path().join("recursor.log");
        let child = Command::new("pdns_recursor")
            .arg(format!("--config-dir={}", dir.path().display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect(
                "pdns_recursor is installed (Debian package pdns-recursor; scripts/test.sh installs it)",
            );
        Resolver::ready(child, port, log, dir)
    }

    fn ready(
        mut child: Child,
        port: u16,
        log: std::path::PathBuf,
        dir: tempfile::TempDir,
    ) -> Resolver {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "resolver exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            // Any answer, even SERVFAIL, means it is listening; ask for a name outside our zone
            // that it answers locally (localhost is built in to both).
            let out = dig(
                port,
                "127.0.0.1",
                &["localhost.", "A", "+tries=1", "+time=1"],
            );
            if out.contains("status:") {
                return Resolver {
                    child,
                    port,
                    log,
                    _dir: dir,
                };
            }
            assert!(
                Instant::now() < deadline,
                "resolver did not answer: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A's for www.example.com asked from `client`, sorted.
    fn www(&self, client: &str) -> Vec<String> {
        let out = dig(self.port, client, &["www.example.com.", "A", "+short"]);
        let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
        v.sort();
        v
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub fn dig(port: u16, source: &str, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "-b", source])
        .args(args)
        .output()
        .expect("dig is installed (bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn upstream(s: &Server, transport: &str) -> u64 {
    s.metric(&format!(
        "geodns_queries_total{{transport=\"{transport}\"}}"
    ))
}

/// The behaviour every ECS-sending resolver must show in front of us.
fn clients_get_their_own_pops_and_the_scope_is_cached(s: &Server, r: &Resolver) {
    assert_eq!(r.www("127.0.1.5"), [AMS], "{}", r.log_text());
    assert_eq!(r.www("127.0.2.5"), [IAD]);
    // Inside the /24 scope we returned for 127.0.1.5: from the resolver's cache.
    let before = upstream(s, "udp");
    assert_eq!(r.www("127.0.1.9"), [AMS]);
    assert_eq!(
        upstream(s, "udp"),
        before,
        "a client inside the scope was not served from cache"
    );
    // Outside every scope returned so far: a new query, with this client's own subnet.
    assert_eq!(r.www("127.0.3.5"), SIN);
    assert_eq!(upstream(s, "udp"), before + 1);

    // Too big for UDP: we set TC, the resolver retries over TCP, the client gets it all.
    let tcp = upstream(s, "tcp");
    let out = dig(r.port, "127.0.1.5", &["big.example.com.", "TXT", "+short"]);
    assert_eq!(out.lines().count(), 40, "{out}");
    assert!(
        upstream(s, "tcp") > tcp,
        "the resolver did not retry over TCP"
    );
}

#[test]
fn unbound_with_its_subnet_cache() {
    let s = server();
    let r = Resolver::unbound(&s, true, "127.0.0.1");
    clients_get_their_own_pops_and_the_scope_is_cached(&s, &r);
}

#[test]
fn powerdns_recursor_with_ecs() {
    let s = server();
    let r = Resolver::pdns(&s);
    clients_get_their_own_pops_and_the_scope_is_cached(&s, &r);
}

#[test]
fn a_resolver_without_ecs_gets_the_answer_for_its_own_address() {
    let s = server();
    // Its queries leave from 127.0.2.1 (the iad /24 in the resolver key space); the client's
    // own subnet (127.0.1.0/24, ams) is never seen by us.
    let r = Resolver::unbound(&s, false, "127.0.2.1");
    assert_eq!(r.www("127.0.1.5"), [IAD], "{}", r.log_text());
    assert_eq!(r.www("127.0.3.5"), [IAD]);
}
