//! `geodns`: one binary, subcommands for each job. Parsing and dispatch only; the work lives
//! in the workspace's crates (ARCHITECTURE.md has the map): `geodns-server` (`serve`,
//! `check`), `geodns-beacon` (`beacon`, `logs`), `geodns-simulate`, `geodns-mapgen`, `geomap`
//! (`map`), `geodns-register`, `geodns-presenter` (`presenter`, `publish`) and
//! `geodns-announce`.

mod internal_cmd;
mod logs_cmd;
mod manual;
mod map_cmd;
mod mapgen_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// GeoDNS load balancing: an authoritative server that answers with the PoP measured fastest
/// for each client, and the tools that build and inspect its map.
#[derive(Parser)]
#[command(name = "geodns", version, about)]
struct Cli {
    /// Log as JSON, one object per line (for log shippers); default: plain text. The level
    /// and targets come from `RUST_LOG` (default `info`; e.g. `RUST_LOG=info,geodns::query=debug`
    /// logs every query).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DNS (UDP and TCP) from a config file until SIGTERM.
    Serve {
        /// The config file. Default: `data/geodns.toml` in a checkout of the repository (where
        /// the example lives), else `/etc/geodns/geodns.toml`.
        #[arg(short, long, default_value_os_t = default_config("geodns.toml"))]
        config: PathBuf,
    },
    /// Load config, zones, map and health exactly as `serve` would, then exit: 0 if it would
    /// serve, 1 with the reason if not. With `--presenter` and `--internal ORIGIN=FILE`, check
    /// human internal-zone files instead, as every server will compile them.
    Check {
        /// The config file (default as for `serve`).
        #[arg(short, long, default_value_os_t = default_config("geodns.toml"))]
        config: PathBuf,
        /// The presenter's config, for checking human internal-zone files.
        #[arg(long, requires = "internal")]
        presenter: Option<PathBuf>,
        /// A human internal-zone file to check, as ORIGIN=FILE (repeat for several).
        #[arg(long, requires = "presenter")]
        internal: Vec<String>,
    },
    /// Run the beacon collector: serve the page snippet and write clients' reports as Parquet.
    Beacon {
        /// The collector's config file. Default: `data/beacon.toml` in a checkout of the
        /// repository, else `/etc/geodns/beacon.toml`.
        #[arg(short, long, default_value_os_t = default_config("beacon.toml"))]
        config: PathBuf,
    },
    /// Simulate users: resolvers query probe names from their own loopback addresses, clients
    /// post latency reports through a trusted proxy; writes the ground truth to --out.
    Simulate {
        /// The world file.
        #[arg(long, default_value = "data/world.toml")]
        world: PathBuf,
        /// The DNS server serving the probe zone.
        #[arg(long, default_value = "127.0.0.1:5353")]
        dns: std::net::SocketAddr,
        /// The beacon collector.
        #[arg(long, default_value = "127.0.0.1:8053")]
        collector: std::net::SocketAddr,
        /// Local address reports are sent from (a trusted proxy of the collector).
        #[arg(long, default_value = "127.0.0.2")]
        proxy: std::net::IpAddr,
        /// Number of users.
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Users in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Seed for every random choice.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write ground_truth.csv and resolvers.csv.
        #[arg(long, default_value = "data/sim")]
        out: PathBuf,
        /// Write both logs straight into this log root instead of driving the server and
        /// collector (for large inputs: millions of users in seconds).
        #[arg(long)]
        logs_only: Option<PathBuf>,
    },
    /// Build a map from beacon logs: pair reports with probe queries, rank PoPs per client
    /// subnet and resolver by measured latency, fall back where data is thin, compact, write.
    Mapgen(Box<mapgen_cmd::MapgenArgs>),
    /// Beacon logs: merge closed days' small files (`compact`).
    Logs {
        #[command(subcommand)]
        command: logs_cmd::LogsCommand,
    },
    /// Inspect and build map files.
    Map {
        #[command(subcommand)]
        command: map_cmd::MapCommand,
    },
    /// Register this host (addresses, services) in ZooKeeper until SIGTERM; its records go
    /// when it stops or loses its session.
    Register(internal_cmd::RegisterArgs),
    /// Check a human zone file as the servers will compile it, and publish it to ZooKeeper.
    Publish(internal_cmd::PublishArgs),
    /// Reconcile registrations and human zones into internal-zone snapshots and publish them
    /// (one presenter publishes at a time).
    Presenter(internal_cmd::PresenterArgs),
    /// Make a presenter's signing key: the private key (mode 0600, for the presenter's
    /// `signing_key`) and its public half in `FILE.pub` (for servers' `[zookeeper]
    /// trusted_keys`), printed too
    Keygen(internal_cmd::KeygenArgs),
    /// ZooKeeper set-up: `init` creates geodns's tree with one identity per role (SASL users
    /// geodns-presenter, -server, -robot, -human, -announce) and its ACLs, as geodns-admin
    Zk {
        #[command(subcommand)]
        command: internal_cmd::ZkCommand,
    },
    /// Run as an ExaBGP API process: health-check each VIP's service, announce, drain and
    /// withdraw its route, and publish the PoP's health for the DNS (docs/bgp.md).
    Announce {
        /// The announce config.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print a shell completion script, generated from this command line's definition
    /// (e.g. `geodns completions bash > /etc/bash_completion.d/geodns`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from this command line's definition (e.g.
    /// `geodns manpage > /usr/share/man/man1/geodns.1`), or with `--dir` write every page:
    /// one per command (section 1) and one per config file (section 5).
    Manpage {
        /// Write every page into this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // Output piped into `head` and closed: stop quietly, as Unix tools do.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// `data/<name>` when run from a checkout of the repository (the bundled example), else the
/// installed location, `/etc/geodns/<name>`.
pub fn default_config(name: &str) -> PathBuf {
    let local = std::path::Path::new("data").join(name);
    if local.exists() {
        local
    } else {
        std::path::Path::new("/etc/geodns").join(name)
    }
}

/// The async runtime every long-running command uses, with `workers` threads.
pub fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, each said once: a cause whose text the message already holds
/// (many errors print their source themselves) is not repeated.
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Register(a) => internal_cmd::register(a),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "geodns", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpage { dir } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match dir {
                Some(dir) => {
                    let pages = manual::write_all(cmd, &dir)
                        .with_context(|| format!("writing man pages to {}", dir.display()))?;
                    println!("{} pages in {}", pages.len(), dir.display());
                }
                None => manual::write_top(cmd, &mut std::io::stdout())?,
            }
            Ok(())
        }
        Command::Announce { config } => {
            let cfg = geodns_announce::config::Config::load(&config)?;
            let rt = runtime(1)?;
            rt.block_on(geodns_announce::run(cfg));
            Ok(())
        }
        Command::Publish(a) => internal_cmd::publish(a),
        Command::Presenter(a) => internal_cmd::presenter(a),
        Command::Keygen(a) => internal_cmd::keygen(a),
        Command::Zk { command } => internal_cmd::zk(command),
        Command::Serve { config } => {
            let rt = runtime(1)?;
            rt.block_on(geodns_server::server::run(&config))?;
            Ok(())
        }
        Command::Check {
            presenter: Some(presenter),
            internal,
            ..
        } => internal_cmd::check_internal(&presenter, &internal),
        Command::Check { config, .. } => {
            let metrics = geodns_server::metrics::Metrics::default();
            let data = geodns_server::dataset::Dataset::load(&config, &metrics)?;
            let down = geodns_server::reload::load_health(&data)?;
            println!(
                "{}: ok: {} zone(s), {} PoP(s), map generation {} with {} rows ({} ranked lists), {} PoP(s) down",
                config.display(),
                data.zones.len(),
                data.pops.len(),
                data.map_meta.generation,
                data.map_rows,
                data.table.list_count(),
                down.len()
            );
            if let Some(zk) = &data.config.zookeeper {
                if !zk.zk.secure() {
                    eprintln!(
                        "{}: warning: [zookeeper] has no password_file: this server does not authenticate to ZooKeeper, so the tree it reads cannot be closed to others (geodns zk init, docs/security.md)",
                        config.display()
                    );
                }
                if !zk.trust().checks() {
                    eprintln!(
                        "{}: warning: [zookeeper] trusted_keys is empty: internal-zone snapshots are taken unsigned, so whoever can write to ZooKeeper can change this server's internal zones (docs/security.md)",
                        config.display()
                    );
                }
            }
            Ok(())
        }
        Command::Beacon { config } => {
            let cfg = geodns_beacon::collector::CollectorConfig::read(&config)?;
            let rt = runtime(2)?;
            rt.block_on(geodns_beacon::collector::run(cfg))?;
            Ok(())
        }
        Command::Simulate {
            world,
            dns,
            collector,
            proxy,
            users,
            concurrency,
            seed,
            out,
            logs_only,
        } => {
            use geodns_simulate as simulate;
            let world = simulate::World::read(&world)?;
            let opts = simulate::SimulateOptions {
                dns,
                collector,
                proxy,
                users,
                concurrency,
                seed,
                out: out.clone(),
            };
            if let Some(root) = logs_only {
                let t0 = std::time::Instant::now();
                let rows = simulate::write_logs(&world, &opts, &root)?;
                println!(
                    "wrote {rows} rows per table for {users} users to {} in {:.1} s; truth in {}",
                    root.display(),
                    t0.elapsed().as_secs_f64(),
                    out.display()
                );
                return Ok(());
            }
            let rt = runtime(2)?;
            let s = rt.block_on(simulate::run(world, opts))?;
            let g = |v: &std::sync::atomic::AtomicU64| v.load(std::sync::atomic::Ordering::Relaxed);
            println!(
                "simulated {} users: dns {} answered, {} failed; reports {} acknowledged, {} failed; truth in {}",
                g(&s.users),
                g(&s.dns_ok),
                g(&s.dns_failed),
                g(&s.reports_ok),
                g(&s.reports_failed),
                out.display()
            );
            if g(&s.dns_failed) + g(&s.reports_failed) > 0 {
                anyhow::bail!("some probes or reports failed (see above)");
            }
            Ok(())
        }
        Command::Mapgen(args) => mapgen_cmd::run(*args),
        Command::Map { command } => map_cmd::run(command),
        Command::Logs { command } => logs_cmd::run(command),
    }
}
