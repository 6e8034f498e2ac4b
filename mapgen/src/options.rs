//! What a mapgen run is asked to do ([`Options`]) and why it can end without a map
//! ([`MapgenError`]).

use std::path::PathBuf;
use std::time::SystemTime;

use geomap::{PopIndex, PopTable};
use polars::prelude::*;

use crate::report::Report;

/// What to run on.
pub struct Options {
    /// The log root (`dns_probe/`, `rtt_report/` below it).
    pub logs: PathBuf,
    /// Oldest report to use.
    pub since: Option<SystemTime>,
    /// Newest report to use (exclusive).
    pub until: Option<SystemTime>,
    /// The PoPs (with coordinates for GeoIP fallback); reports on other PoPs are refused.
    pub pops: PopTable,
    /// Order for keys nothing else places.
    pub default_order: Vec<PopIndex>,
    /// GeoIP database for fallback rows and for ordering unmeasured PoPs.
    pub geoip: Option<PathBuf>,
    /// Successful samples a PoP needs for a key before it can win there.
    pub min_samples: u64,
    /// Larger RTTs are refused as absurd.
    pub max_rtt_ms: f64,
    /// Refuse the input when more than this share of rows is invalid.
    pub max_invalid_share: f64,
    /// The map now serving, to compare with: how much traffic would change PoP, and what
    /// coverage would be lost.
    pub previous: Option<PathBuf>,
    /// Refuse a map that moves more than this share of measured traffic (by samples).
    pub max_moved_share: f64,
    /// Write the map even when a safety gate says no (the report still says why).
    pub force: bool,
    /// Leave out log files that do not follow the contract (listed in the report) instead of
    /// refusing the run.
    pub skip_bad_files: bool,
    /// Rows per table each step holds at a time: larger inputs are split into partitions
    /// spilled to `tmp_dir`, which bounds memory.
    pub partition_rows: u64,
    /// Where partitions spill.
    pub tmp_dir: PathBuf,
    /// A routing-table prefix list: thin client subnets borrow from their routed prefix
    /// (one network) before the fixed coarser levels.
    pub routes: Option<PathBuf>,
    /// Share of beacon sessions (0 to 1) held out of the map and judged against it
    /// ([`crate::holdout`]); 0 uses every session.
    pub holdout: f64,
    /// Start from the first stage's saved output ([`crate::aggregates`]) instead of the logs.
    pub aggregates: Option<PathBuf>,
    /// Save the first stage's output here ([`crate::aggregates`]).
    pub save_aggregates: Option<PathBuf>,
    /// Generation id to record.
    pub generation: String,
    /// Creation time to record (RFC 3339).
    pub created_at: String,
}

/// Why a run produced no map.
#[derive(Debug, thiserror::Error)]
pub enum MapgenError {
    /// polars could not read or compute.
    #[error("{0}")]
    Polars(#[from] PolarsError),
    /// The GeoIP database.
    #[error("{0}")]
    GeoIp(#[from] geomap::geoip::GeoIpError),
    /// The routing-table prefix list.
    #[error("{0}")]
    Routes(#[from] crate::routes::RoutesError),
    /// Input that cannot make a trustworthy map.
    #[error("refusing the input: {0}")]
    Refused(String),
    /// A safety gate refused the new map against the previous one. The report says what would
    /// have moved: exactly what whoever decides on `--force` needs, so it is still written.
    #[error("refusing the map: {problems}")]
    Gate {
        /// Why.
        problems: String,
        /// The run's report, with the comparison.
        report: Box<Report>,
    },
    /// The run finished but its result is unfit: more than `--max-invalid-share` of the rows
    /// mapgen made break the map's rules, or a `--holdout` that could judge nothing. The report
    /// (naming the rows, or the sessions) is still written.
    #[error("refusing the map: {problems}")]
    Unfit {
        /// What is wrong, with counts.
        problems: String,
        /// The run's report.
        report: Box<Report>,
    },
}

/// Parses a share (a number from 0 to 1), the form of every `--max-*-share` option. NaN,
/// infinities and numbers outside [0, 1] would switch a safety gate off or make it refuse
/// everything, so they are refused.
pub fn parse_share(text: &str) -> Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    check_share(v)
}

pub(crate) fn check_share(v: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not a share from 0 to 1"))
    }
}
