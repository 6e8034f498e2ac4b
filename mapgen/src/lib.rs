//! mapgen: turns beacon logs into the map the server answers from.
//!
//! In dataflow order:
//! - [`logs`]: scan the hive-partitioned Parquet logs, keep the window, count bad rows by reason;
//! - [`job`]: pair reports with probe queries, aggregate per key and PoP at each prefix level
//!   (polars), then rank, fall back and compact;
//! - [`ranking`]: the ranking rule and the rows of one level;
//! - [`gate`]: the safety gates against the previous map;
//! - [`report`]: what the run read, refused and decided.

pub mod gate;
pub mod job;
pub mod logs;
pub mod ranking;
pub mod report;

pub use job::{run, MapgenError, Options};
pub use report::Report;
