//! What a simulation is asked to do, and why it can fail.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// What to run.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// The DNS server (probe zone).
    pub dns: SocketAddr,
    /// The collector (`http://addr/v1/report`).
    pub collector: SocketAddr,
    /// Local address reports are sent from: a trusted proxy of the collector.
    pub proxy: IpAddr,
    /// How many users.
    pub users: usize,
    /// Users in flight at once.
    pub concurrency: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Where the ground truth goes.
    pub out: PathBuf,
}

/// Why a simulation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// Output could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}
