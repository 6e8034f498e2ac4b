//! mapgen: turns beacon logs into the map the server answers from.
//!
//! In dataflow order:
//! - [`logs`]: stream the hive-partitioned Parquet logs of the window, count bad rows by
//!   reason, compact good ones to integers ([`key`]) and partition them ([`spill`]);
//! - [`pairing`]: pair reports with probe queries, one partition at a time;
//! - [`aggregate`]: statistics per key and PoP at each prefix level (polars group-bys), with
//!   the routed prefixes of [`routes`] as a level when given;
//! - [`ranking`]: the ranking rule and the rows of one level;
//! - [`job`]: the run: the steps above, then fallback, compaction and the gates;
//! - [`gate`]: the safety gates against the previous map;
//! - [`report`]: what the run read, refused and decided; [`html`] renders it as a page.

pub mod aggregate;
pub mod gate;
pub mod holdout;
pub mod html;
pub mod job;
pub mod key;
pub mod logs;
pub mod model;
pub mod pairing;
pub mod pooling;
pub mod ranking;
pub mod report;
pub mod routes;
pub mod spill;

pub use job::{parse_share, run, MapgenError, Options};
pub use report::Report;
