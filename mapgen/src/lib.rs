//! mapgen: turns beacon logs into the map the server answers from.
//!
//! In dataflow order (each a module; [`job`] runs them in this order):
//! - [`options`]: what a run is asked to do, and why it can end without a map;
//! - [`input`]: the log files checked against the contract, then read by [`logs`] (polars
//!   streams the window's Parquet, each row validated and counted by reason if bad, compacted
//!   to integers by [`key`]) into [`partition`]s, so each later step holds one;
//! - [`pairing`]: reports paired with probe queries, one partition at a time; with
//!   `--holdout`, the held-out sessions set aside;
//! - [`aggregate`]: statistics per client subnet and PoP (the finest level, with the routed
//!   prefixes of [`routes`]) and each resolver's population of client subnets;
//! - [`aggregates`]: the first stage's output (everything above) as files: `--save-aggregates`
//!   writes them, `--aggregates` starts from them instead of the logs;
//! - [`pooling`]: each key's per-PoP estimate, in log RTT, its own samples blended with the
//!   latency [`model`] and its measured neighbours, resolvers from the clients behind them;
//! - [`rows`]: the map's rows from the estimates, [`ranking`]'s coherence rule for aggregates,
//!   each row checked with the reader's rule;
//! - [`job`]: the run: the steps above, then compaction, the [`holdout`] judgement and the
//!   safety [`gate`] against the previous map;
//! - [`strict_math`]: the logarithm the statistics use, bit for bit the one Spark uses;
//! - [`report`]: what the run read, refused and decided; [`html`] renders it as a page.

pub mod aggregate;
pub mod aggregates;
pub mod gate;
pub mod holdout;
pub mod html;
pub mod input;
pub mod job;
pub mod key;
pub mod logs;
pub mod model;
pub mod options;
pub mod pairing;
pub mod partition;
pub mod pooling;
pub mod ranking;
pub mod report;
pub mod routes;
pub mod rows;
pub mod strict_math;

pub use job::run;
pub use options::{parse_share, MapgenError, Options};
pub use report::Report;
