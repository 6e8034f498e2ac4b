//! A real ZooKeeper for tests (Debian's `zookeeper` package): standalone or a loopback
//! ensemble, on free ports, with a temporary data dir; and the geodns processes around it
//! (presenter, registered hosts).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{free_port, geodns_in};

/// ZooKeeper's tick in tests: sessions may last 2-20 ticks, so 0.4 to 4 s.
pub const TICK_MS: u64 = 200;

/// One ZooKeeper server process.
pub struct ZkNode {
    child: Option<Child>,
    dir: PathBuf,
    /// JVM options (SASL's JAAS file and super user).
    jvm: Vec<String>,
    /// The address clients connect to (127.0.0.1, or a bridge's for clients in namespaces).
    pub host: String,
    pub client_port: u16,
}

/// A standalone server or an ensemble; every process is killed on drop.
pub struct ZooKeeper {
    pub nodes: Vec<ZkNode>,
    _dir: tempfile::TempDir,
}

fn java(jvm: &[String]) -> Command {
    let mut c = Command::new("java");
    c.arg("-Xmx256m")
        .arg("-Dzookeeper.root.logger=WARN,CONSOLE")
        .args(jvm)
        .args(["-cp", "/usr/share/java/*:/etc/zookeeper/conf"])
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain");
    c
}

impl ZkNode {
    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("zk.log")).unwrap();
        let child = java(&self.jvm)
            .arg(self.dir.join("zoo.cfg"))
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("java and Debian's zookeeper package (scripts/test.sh installs them)");
        self.child = Some(child);
    }

    /// Stops the process (SIGKILL); its data dir stays for a restart.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Whether it answers `srvr` as a serving member (leader, follower or standalone).
    pub fn mode(&self) -> Option<String> {
        let out = four_letter(&self.host, self.client_port, "srvr")?;
        out.lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .map(str::to_owned)
    }
}

impl Drop for ZkNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a four-letter command, returns the answer.
fn four_letter(host: &str, port: u16, cmd: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr: std::net::IpAddr = host.parse().ok()?;
    let mut s =
        std::net::TcpStream::connect_timeout(&(addr, port).into(), Duration::from_millis(500))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(cmd.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

impl ZooKeeper {
    /// A standalone server.
    pub fn standalone() -> ZooKeeper {
        ZooKeeper::start(1)
    }

    /// An ensemble of `n` servers on loopback (distinct client, peer and election ports).
    pub fn ensemble(n: usize) -> ZooKeeper {
        ZooKeeper::start(n)
    }

    /// An ensemble whose members take clients on `host` (an address of this namespace, such
    /// as a bridge's that test namespaces reach); members talk to each other on loopback.
    pub fn ensemble_at(n: usize, host: &str) -> ZooKeeper {
        ZooKeeper::start_at(n, host)
    }

    fn start(n: usize) -> ZooKeeper {
        ZooKeeper::start_at(n, "127.0.0.1")
    }

    fn start_at(n: usize, host: &str) -> ZooKeeper {
        ZooKeeper::start_with(n, host, false)
    }

    /// A standalone server that authenticates clients with SASL (DIGEST-MD5): every geodns
    /// role's user ([`sasl_password`] is its password) and `geodns-admin`, the super user.
    pub fn standalone_sasl() -> ZooKeeper {
        ZooKeeper::start_with(1, "127.0.0.1", true)
    }

    fn start_with(n: usize, host: &str, sasl: bool) -> ZooKeeper {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let mut nodes = Vec::new();
        for (i, (client, peer, election)) in ports.iter().enumerate() {
            let node_dir = dir.path().join(format!("zk{}", i + 1));
            std::fs::create_dir_all(node_dir.join("data")).unwrap();
            let mut cfg = format!(
                "tickTime={TICK_MS}\ninitLimit=20\nsyncLimit=10\ndataDir={}\nclientPort={client}\n\
                 clientPortAddress={host}\nadmin.enableServer=false\nmaxClientCnxns=0\n\
                 4lw.commands.whitelist=*\nminSessionTimeout={}\nmaxSessionTimeout={}\n",
                node_dir.join("data").display(),
                2 * TICK_MS,
                20 * TICK_MS,
            );
            if n > 1 {
                std::fs::write(node_dir.join("data/myid"), format!("{}\n", i + 1)).unwrap();
                for (j, (_, p, e)) in ports.iter().enumerate() {
                    cfg.push_str(&format!("server.{}=127.0.0.1:{p}:{e}\n", j + 1));
                }
            }
            let _ = (peer, election);
            let mut jvm = Vec::new();
            if sasl {
                cfg.push_str(
                    "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n",
                );
                let users: String = SASL_USERS
                    .iter()
                    .map(|u| format!("  user_{u}=\"{}\"\n", sasl_password(u)))
                    .collect();
                let jaas = node_dir.join("jaas.conf");
                std::fs::write(
                    &jaas,
                    format!(
                        "Server {{\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n{}}};\n",
                        users.trim_end().to_owned() + ";\n"
                    ),
                )
                .unwrap();
                jvm.push(format!(
                    "-Djava.security.auth.login.config={}",
                    jaas.display()
                ));
                jvm.push("-Dzookeeper.superUser=geodns-admin".into());
            }
            std::fs::write(node_dir.join("zoo.cfg"), cfg).unwrap();
            let mut node = ZkNode {
                child: None,
                jvm,
                dir: node_dir,
                host: host.to_owned(),
                client_port: *client,
            };
            node.spawn();
            nodes.push(node);
        }
        let zk = ZooKeeper { nodes, _dir: dir };
        zk.wait_serving();
        zk
    }

    /// Waits until every running member serves (a quorum formed).
    pub fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .all(|n| n.mode().is_some());
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ZooKeeper did not start: {}",
                self.nodes
                    .iter()
                    .map(|n| std::fs::read_to_string(n.dir.join("zk.log")).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The connect string of every member.
    pub fn connect(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}:{}", n.host, n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads a node's data with a short-lived client (None: no such node).
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        let connect = self.connect();
        let path = path.to_owned();
        runtime().block_on(async move {
            let c = zookeeper_client::Client::connect(&connect).await.unwrap();
            match c.get_data(&path).await {
                Ok((d, _)) => Some(d),
                Err(zookeeper_client::Error::NoNode) => None,
                Err(e) => panic!("get {path}: {e}"),
            }
        })
    }

    /// Writes a node's data (creating it and its parents).
    pub fn set(&self, path: &str, data: &[u8]) {
        let connect = self.connect();
        let (path, data) = (path.to_owned(), data.to_vec());
        runtime().block_on(async move {
            let c = zookeeper_client::Client::connect(&connect).await.unwrap();
            let opts = zookeeper_client::CreateMode::Persistent
                .with_acls(zookeeper_client::Acls::anyone_all());
            if let Some((parent, _)) = path.rsplit_once('/') {
                if !parent.is_empty() {
                    let _ = c.mkdir(parent, &opts).await;
                }
            }
            match c.set_data(&path, &data, None).await {
                Ok(_) => {}
                Err(zookeeper_client::Error::NoNode) => {
                    c.create(&path, &data, &opts).await.unwrap();
                }
                Err(e) => panic!("set {path}: {e}"),
            }
        })
    }
}

impl ZooKeeper {
    /// Deletes a node and everything below it (as anyone who can write there could), again
    /// while something re-creates nodes inside it, until the node itself is gone.
    pub fn delete_tree(&self, path: &str) {
        let connect = self.connect();
        let path = path.to_owned();
        runtime().block_on(async move {
            let c = zookeeper_client::Client::connect(&connect).await.unwrap();
            for _ in 0..100 {
                let mut stack = vec![path.clone()];
                let mut order = Vec::new();
                while let Some(p) = stack.pop() {
                    if let Ok(children) = c.list_children(&p).await {
                        stack.extend(children.into_iter().map(|k| format!("{p}/{k}")));
                    }
                    order.push(p);
                }
                for p in order.into_iter().rev() {
                    match c.delete(&p, None).await {
                        Ok(())
                        | Err(zookeeper_client::Error::NoNode)
                        | Err(zookeeper_client::Error::NotEmpty) => {}
                        Err(e) => panic!("delete {p}: {e}"),
                    }
                }
                if matches!(c.check_stat(&path).await, Ok(None)) {
                    return;
                }
            }
            panic!("{path} keeps coming back");
        })
    }
}

/// The SASL users of a [`ZooKeeper::standalone_sasl`] ensemble.
pub const SASL_USERS: [&str; 10] = [
    "geodns-admin",
    "geodns-presenter",
    "geodns-server",
    "geodns-robot",
    "geodns-human",
    "geodns-announce",
    // Identities of their own (`geodns zk init --robot/--announce`).
    "robot-web1",
    "robot-ams",
    "announce-ams",
    "announce-iad",
];

/// The password of a SASL user in tests.
pub fn sasl_password(user: &str) -> String {
    format!("{user}-secret")
}

/// Writes `user`'s password to a file in `dir`, mode 0600, and returns its path.
pub fn password_file(dir: &Path, user: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("{user}.password"));
    std::fs::write(&path, sasl_password(user)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A geodns child process (presenter or registered host) with its log; killed on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(args: &[&str], log: &Path) -> Proc {
        Proc::spawn_in(None, args, log)
    }

    /// Spawns in a network namespace, if given (`ip netns exec` execs the binary: the child's
    /// pid is geodns's, so signals reach it).
    pub fn spawn_in(netns: Option<&str>, args: &[&str], log: &Path) -> Proc {
        let child = geodns_in(netns)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Proc {
            child,
            log: log.to_owned(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle` `count` times.
    pub fn wait_log(&self, needle: &str, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.log_text().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {count}x {needle:?} in:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "did not stop: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} ----\n{}", self.log.display(), self.log_text());
        }
    }
}

/// Registers a host until the returned process is stopped.
pub fn register(zk: &ZooKeeper, dir: &Path, name: &str, addr: &str, extra: &[&str]) -> Proc {
    let connect = zk.connect();
    let mut args = vec![
        "register",
        "--zookeeper",
        &connect,
        "--name",
        name,
        "--address",
        addr,
    ];
    args.extend_from_slice(extra);
    let p = Proc::spawn(&args, &dir.join(format!("register-{name}-{addr}.log")));
    p.wait_log("registered", 1, Duration::from_secs(20));
    p
}

/// Issue 19, the root cause: `zookeeper-client` 0.11.2 resent watches after a reconnect with
/// `SetWatches`, which carries no persistent watches (`index.max(index)` where `index.max(i)`
/// was meant, `vendor/zookeeper-client/src/session/watch.rs`), so every persistent watch was
/// silently gone after any ZooKeeper hiccup. With the patched copy (`[patch.crates-io]`), a
/// persistent recursive watch fires after the client reconnects to a restarted server, well
/// inside any periodic re-read.
#[test]
fn a_persistent_watch_fires_after_a_reconnect() {
    use zookeeper_client::{AddWatchMode, Client, CreateMode, SessionState};
    let mut zk = ZooKeeper::standalone();
    let connect = zk.connect();
    let rt = runtime();
    let opts = CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    let (client, mut watcher, mut state) = rt.block_on(async {
        let c = Client::connector()
            .with_session_timeout(Duration::from_millis(20 * TICK_MS))
            .connect(&connect)
            .await
            .unwrap();
        c.create("/w", b"", &opts).await.unwrap();
        let w = c
            .watch("/w", AddWatchMode::PersistentRecursive)
            .await
            .unwrap();
        let s = c.state_watcher();
        (c, w, s)
    });
    let other = |path: &'static str| {
        let connect = connect.clone();
        let opts = opts.clone();
        runtime().block_on(async move {
            let c = Client::connect(&connect).await.unwrap();
            c.create(path, b"", &opts).await.unwrap();
        })
    };
    // The next node event (a persistent watcher also delivers session events: skipped).
    let next_event = |w: &mut zookeeper_client::PersistentWatcher, within: Duration| {
        rt.block_on(async {
            tokio::time::timeout(within, async {
                loop {
                    let e = w.changed().await;
                    if !e.path.is_empty() {
                        return e;
                    }
                }
            })
            .await
            .ok()
        })
    };
    other("/w/before");
    let e = next_event(&mut watcher, Duration::from_secs(2)).expect("the watch works");
    assert_eq!(e.path, "/w/before");

    // The server restarts (standalone ZooKeeper keeps sessions across a restart): the client
    // loses its connection and reconnects within its session.
    zk.nodes[0].restart();
    zk.wait_serving();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen_disconnect = false;
        loop {
            let s = tokio::time::timeout(Duration::from_millis(200), state.changed()).await;
            match s {
                Ok(SessionState::Disconnected) => seen_disconnect = true,
                Ok(SessionState::SyncConnected) if seen_disconnect => break,
                Ok(
                    s @ (SessionState::Expired | SessionState::Closed | SessionState::AuthFailed),
                ) => {
                    panic!("session ended: {s:?}")
                }
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "no reconnect (disconnected: {seen_disconnect})"
            );
        }
        // The client's own session still works.
        client.get_data("/w").await.unwrap();
    });
    let t = Instant::now();
    other("/w/after");
    let e = next_event(&mut watcher, Duration::from_secs(2))
        .expect("the persistent watch survives the reconnect (fails without the patched client)");
    assert_eq!(e.path, "/w/after");
    eprintln!("event after the reconnect in {:?}", t.elapsed());
}
