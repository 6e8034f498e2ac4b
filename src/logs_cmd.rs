//! `geodns logs`: work on the beacon log tree that analysts and mapgen read.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use clap::Subcommand;
use geodns_beacon::compact;

#[derive(Subcommand)]
pub enum LogsCommand {
    /// Merge each closed day's small files into a few large ones, atomically: readers see the
    /// old files or the new ones (an interrupted run is finished by the next). A day is closed
    /// an hour after it ends (UTC).
    Compact {
        /// The log root (`dns_probe/`, `rtt_report/` below it).
        #[arg(long)]
        root: PathBuf,
        /// Only this table (`dns_probe` or `rtt_report`). Default: both.
        #[arg(long)]
        table: Option<String>,
        /// Only this date (YYYY-MM-DD). Default: every closed date with more than one file.
        #[arg(long)]
        date: Option<String>,
        /// Rows per merged file (at least 100: fewer makes a file per handful of rows).
        #[arg(long, default_value_t = 10_000_000,
              value_parser = clap::value_parser!(u64).range(100..))]
        rows_per_file: u64,
    },
}

pub fn run(command: LogsCommand) -> anyhow::Result<()> {
    match command {
        LogsCommand::Compact {
            root,
            table,
            date,
            rows_per_file,
        } => {
            if !root.is_dir() {
                anyhow::bail!("log root {}: no such directory", root.display());
            }
            let tables: Vec<compact::TableSpec> = compact::tables()
                .into_iter()
                .filter(|t| table.as_deref().is_none_or(|n| n == t.name))
                .collect();
            if tables.is_empty() {
                anyhow::bail!(
                    "--table {:?}: want dns_probe or rtt_report",
                    table.unwrap_or_default()
                );
            }
            let now = SystemTime::now();
            let progress = |line: &str| eprintln!("logs compact: {line}");
            for t in &tables {
                let dates = match &date {
                    Some(d) => vec![d.clone()],
                    None => compact::dates(&root, t.name)?
                        .into_iter()
                        .filter(|d| compact::closed(d, now).unwrap_or(false))
                        .collect(),
                };
                for d in dates {
                    let done = compact::compact_day(&root, t, &d, rows_per_file, now, &progress)
                        .with_context(|| format!("compacting {} {d}", t.name))?;
                    if done.inputs > 0 {
                        println!(
                            "{} {d}: {} files merged into {} ({} rows)",
                            t.name, done.inputs, done.outputs, done.rows
                        );
                    }
                }
            }
            Ok(())
        }
    }
}
