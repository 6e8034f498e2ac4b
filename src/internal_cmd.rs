//! Internal zones: `geodns register` (robots), `geodns publish` (humans) and
//! `geodns presenter` (the reconciler). The work lives in `geodns-register` and
//! `geodns-presenter`; see docs/internal-zones.md.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use geodns_register::{Registration, Service};

/// `geodns register`.
#[derive(Args)]
pub struct RegisterArgs {
    /// ZooKeeper connect string (`host:port,host:port`).
    #[arg(long, value_parser = parse_connect)]
    zookeeper: String,
    /// Root of geodns's nodes.
    #[arg(long, default_value = "/geodns")]
    root: String,
    /// This host's fully qualified name.
    #[arg(long)]
    name: String,
    /// An address of this host (repeat for several; IPv4 and IPv6).
    #[arg(long = "address", required = true)]
    addresses: Vec<IpAddr>,
    /// A service this host runs, as ROLE:CLUSTER:PORT (repeat for several).
    #[arg(long = "service", value_parser = parse_service)]
    services: Vec<Service>,
    /// Session timeout asked of ZooKeeper, ms: how long this host may be unreachable before its
    /// records are withdrawn (ZooKeeper bounds it to 2-20 ticks).
    #[arg(long, default_value_t = geodns_register::DEFAULT_SESSION_TIMEOUT.as_millis() as u64,
          value_parser = parse_session_timeout)]
    session_timeout_ms: u64,
    /// A file holding the robot's ZooKeeper password (SASL user `geodns-robot`, or `--user`),
    /// readable by its owner only. Without it the host does not authenticate.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// This robot's own SASL user, set up with `geodns zk init --robot USER=NAMES`: it
    /// registers in its own directory, only the names given there.
    #[arg(long, requires = "password_file")]
    user: Option<String>,
}

fn parse_connect(s: &str) -> Result<String, String> {
    geodns_snapshot::layout::check_connect(s).map(|()| s.to_owned())
}

fn parse_session_timeout(s: &str) -> Result<u64, String> {
    let ms: u64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    geodns_snapshot::layout::check_session_timeout_ms(ms).map(|()| ms)
}

fn parse_service(s: &str) -> Result<Service, String> {
    let mut parts = s.split(':');
    let (Some(role), Some(cluster), Some(port), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("{s:?}: want ROLE:CLUSTER:PORT"));
    };
    Ok(Service {
        role: role.to_owned(),
        cluster: cluster.to_owned(),
        port: port.parse().map_err(|e| format!("{s:?}: port: {e}"))?,
    })
}

/// `geodns publish`.
#[derive(Args)]
pub struct PublishArgs {
    /// The presenter's config (ZooKeeper and the internal zones).
    #[arg(short, long)]
    config: PathBuf,
    /// The internal zone the file holds records for.
    #[arg(long)]
    zone: String,
    /// Zone-file text: the human records (no SOA or apex NS: those are the presenter's).
    file: PathBuf,
    /// Check only, as the servers will compile it; publish nothing.
    #[arg(long)]
    check: bool,
    /// A file holding the humans' ZooKeeper password (SASL user `geodns-human`), readable by
    /// its owner only; it replaces the config's `password_file` (the presenter's).
    #[arg(long)]
    password_file: Option<PathBuf>,
}

/// `geodns zk`.
#[derive(clap::Subcommand)]
pub enum ZkCommand {
    /// Create the tree under the root with its ACLs, and set the ACLs of what exists already
    /// (idempotent), authenticated as geodns-admin (the ensemble's `zookeeper.superUser`)
    Init(ZkInitArgs),
}

/// `geodns zk init`.
#[derive(Args)]
pub struct ZkInitArgs {
    /// ZooKeeper connect string (`host:port,host:port`).
    #[arg(long, value_parser = parse_connect)]
    zookeeper: String,
    /// Root of geodns's nodes.
    #[arg(long, default_value = "/geodns")]
    root: String,
    /// A file holding geodns-admin's password, readable by its owner only.
    #[arg(long)]
    password_file: PathBuf,
    /// A robot identity of its own, as USER=NAME[,NAME...]: the SASL user and the names (and
    /// the names below them) it may register. Repeat for several.
    #[arg(long = "robot", value_parser = parse_robot)]
    robots: Vec<geodns_snapshot::access::Identity>,
    /// An announce identity of its own, as USER=POP: the SASL user that alone writes the PoP's
    /// health. Repeat for several.
    #[arg(long = "announce", value_parser = parse_announce)]
    announcers: Vec<geodns_snapshot::access::Identity>,
}

fn parse_identity(s: &str, role: geodns_snapshot::access::Role) -> Result<(String, &str), String> {
    let (user, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: want USER=..."))?;
    geodns_snapshot::access::check_identity(role, user)?;
    Ok((user.to_owned(), rest))
}

fn parse_robot(s: &str) -> Result<geodns_snapshot::access::Identity, String> {
    let (user, names) = parse_identity(s, geodns_snapshot::access::Role::Robot)?;
    let names: Vec<String> = names
        .split(',')
        .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
        .collect();
    for n in &names {
        geodns_register::check_name(n)?;
    }
    Ok(geodns_snapshot::access::Identity::Robot { user, names })
}

fn parse_announce(s: &str) -> Result<geodns_snapshot::access::Identity, String> {
    let (user, pop) = parse_identity(s, geodns_snapshot::access::Role::Announce)?;
    let pop: geomap::PopId = pop.parse().map_err(|e| format!("{s:?}: PoP: {e}"))?;
    Ok(geodns_snapshot::access::Identity::Announce {
        user,
        pop: pop.to_string(),
    })
}

pub fn zk(c: ZkCommand) -> anyhow::Result<()> {
    let ZkCommand::Init(a) = c;
    let zk = geodns_snapshot::ZkSettings {
        connect: a.zookeeper,
        root: a.root,
        session_timeout_ms: 10_000,
        password_file: Some(a.password_file),
        user: None,
    };
    let identities: Vec<_> = a.robots.into_iter().chain(a.announcers).collect();
    let layout = zk
        .check(geodns_snapshot::access::Role::Admin)
        .map_err(|(key, e)| anyhow::anyhow!("--{}: {e}", key.replace('_', "-")))?;
    crate::runtime(1)?.block_on(async {
        let client =
            geodns_snapshot::backoff::connect_once(&zk, geodns_snapshot::access::Role::Admin)
                .await
                .with_context(|| format!("ZooKeeper {}", zk.connect))?;
        let changed = geodns_snapshot::access::init(&client, layout.root(), &identities)
            .await
            .with_context(|| format!("setting up {}", layout.root()))?;
        if changed.is_empty() {
            println!(
                "{}: every node and ACL already as it should be",
                layout.root()
            );
        }
        for c in changed {
            println!("{c}");
        }
        anyhow::Ok(())
    })
}

/// `geodns keygen`.
#[derive(Args)]
pub struct KeygenArgs {
    /// Where the private key goes (refused if it exists); the public key goes to FILE.pub.
    #[arg(long)]
    out: PathBuf,
}

/// Writes a new signing key pair: the private key created with mode 0600 (never readable by
/// others, even for an instant), the public key beside it, and the public key on stdout.
pub fn keygen(a: KeygenArgs) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (private, key) = geodns_snapshot::SigningKey::generate().map_err(anyhow::Error::msg)?;
    let public = key.public().to_string();
    let mut pub_path = a.out.clone().into_os_string();
    pub_path.push(".pub");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&a.out)
        .with_context(|| format!("{}", a.out.display()))?;
    f.write_all(private.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("{}", a.out.display()))?;
    std::fs::write(&pub_path, format!("{public}\n"))
        .with_context(|| format!("{}", PathBuf::from(&pub_path).display()))?;
    println!("{public}");
    Ok(())
}

/// `geodns presenter`.
#[derive(Args)]
pub struct PresenterArgs {
    /// The presenter's config.
    #[arg(short, long)]
    config: PathBuf,
    /// Publish the next snapshot even if the drop guard would hold it back.
    #[arg(long)]
    force: bool,
    /// Remove the nodes that squat the presenters' lock (persistent nodes under
    /// `<root>/presenters`, which no presenter session owns and which keep every presenter
    /// waiting), print them, and exit.
    #[arg(long)]
    remove_squatters: bool,
}

/// Resolves on SIGTERM or SIGINT.
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

pub fn register(a: RegisterArgs) -> anyhow::Result<()> {
    let zk = geodns_snapshot::ZkSettings {
        connect: a.zookeeper,
        root: a.root,
        session_timeout_ms: a.session_timeout_ms,
        password_file: a.password_file,
        user: a.user,
    };
    zk.check(geodns_snapshot::access::Role::Robot)
        .map_err(|(key, e)| anyhow::anyhow!("--{}: {e}", key.replace('_', "-")))?;
    let reg = Registration {
        name: a.name,
        addresses: a.addresses,
        services: a.services,
    };
    reg.validate()?;
    crate::runtime(1)?.block_on(geodns_register::keep_registered(&zk, &reg, terminated()))?;
    Ok(())
}

pub fn publish(a: PublishArgs) -> anyhow::Result<()> {
    let mut cfg = geodns_presenter::config::Config::load(&a.config)?;
    if let Some(p) = a.password_file {
        cfg.zookeeper.password_file = Some(p);
        cfg.zookeeper
            .check(geodns_snapshot::access::Role::Human)
            .map_err(|(key, e)| anyhow::anyhow!("--{}: {e}", key.replace('_', "-")))?;
    }
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let label = |e: String| anyhow::anyhow!("{}: {e}", a.file.display());
    if a.check {
        geodns_presenter::check_human(&cfg, &a.zone, &text).map_err(label)?;
        println!("{}: ok: zone {}", a.file.display(), a.zone);
        return Ok(());
    }
    crate::runtime(1)?
        .block_on(geodns_presenter::publish_human(&cfg, &a.zone, &text))
        .map_err(label)?;
    println!("{}: published to zone {}", a.file.display(), a.zone);
    Ok(())
}

pub fn presenter(a: PresenterArgs) -> anyhow::Result<()> {
    let cfg = geodns_presenter::config::Config::load(&a.config)?;
    cfg.signing_key()
        .map_err(|e| anyhow::anyhow!("{}: signing_key: {e}", a.config.display()))?;
    let rt = crate::runtime(1)?;
    if a.remove_squatters {
        let removed = rt
            .block_on(geodns_presenter::remove_squatters(&cfg))
            .map_err(anyhow::Error::msg)?;
        for p in &removed {
            println!("removed {p}");
        }
        println!("{} squatting node(s) removed", removed.len());
        return Ok(());
    }
    rt.block_on(async {
        let metrics = Arc::new(geodns_presenter::Metrics::default());
        if let Some(addr) = cfg.metrics {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics: cannot listen on {addr}"))?;
            tracing::info!(bound = %listener.local_addr()?, "listening metrics");
            let m = metrics.clone();
            tokio::spawn(geodns_daemon::prometheus::serve(
                listener,
                Arc::new(move || m.render()),
            ));
        }
        tokio::select! {
            _ = geodns_presenter::run(cfg, a.force, metrics) => {}
            _ = terminated() => tracing::info!("stopping"),
        }
        Ok(())
    })
}

/// `geodns check --presenter P --internal ORIGIN=FILE ...`: each file as the servers will
/// compile it (the same check `geodns publish` runs before it writes anything).
pub fn check_internal(presenter: &std::path::Path, files: &[String]) -> anyhow::Result<()> {
    let cfg = geodns_presenter::config::Config::load(presenter)?;
    for spec in files {
        let (origin, file) = spec
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--internal {spec:?}: want ORIGIN=FILE"))?;
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
        geodns_presenter::check_human(&cfg, origin, &text)
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        println!("{file}: ok: internal zone {origin}");
    }
    Ok(())
}
