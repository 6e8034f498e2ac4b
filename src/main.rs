//! `geodns`: one binary, subcommands for each job. Parsing and dispatch only; the work lives
//! in the `geodns-server` and `geomap` crates.

mod map_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// GeoDNS load balancing: an authoritative server that answers with the PoP measured fastest
/// for each client, and the tools that build and inspect its map.
#[derive(Parser)]
#[command(name = "geodns", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DNS (UDP and TCP) from a config file until SIGTERM.
    Serve {
        /// The config file.
        #[arg(short, long, default_value = "data/geodns.toml")]
        config: PathBuf,
    },
    /// Load config, zones, map and health exactly as `serve` would, then exit: 0 if it would
    /// serve, 1 with the reason if not.
    Check {
        /// The config file.
        #[arg(short, long, default_value = "data/geodns.toml")]
        config: PathBuf,
    },
    /// Run the beacon collector: serve the page snippet and write clients' reports as Parquet.
    Beacon {
        /// The collector's config file.
        #[arg(short, long, default_value = "data/beacon.toml")]
        config: PathBuf,
    },
    /// Inspect and build map files.
    Map {
        #[command(subcommand)]
        command: map_cmd::MapCommand,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(geodns_server::server::run(&config))?;
            Ok(())
        }
        Command::Check { config } => {
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
            Ok(())
        }
        Command::Beacon { config } => {
            let cfg = geodns_beacon::collector::CollectorConfig::read(&config)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(geodns_beacon::collector::run(cfg))?;
            Ok(())
        }
        Command::Map { command } => map_cmd::run(command),
    }
}
