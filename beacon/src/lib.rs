//! Beacon collection: how we learn which PoP is fastest for whom.
//!
//! - [`schema`]: the log contract (`docs/beacon-schema.md`): tables, Arrow schemas, row types;
//! - [`writer`]: the durable Parquet writer shared by the DNS server (probe queries) and the
//!   collector (client reports);
//! - [`collector`] (feature `collector`): the HTTP collector and the page snippet;
//! - [`compact`]: `geodns logs compact`, a closed day's small files merged into large ones.
//!
//! The user simulator that drives both is its own crate, `geodns-simulate`.

#[cfg(feature = "collector")]
pub mod collector;
pub mod compact;
pub mod schema;
pub mod writer;

pub use schema::{valid_probe_id, DnsProbeRow, ProbeId, RttReportRow, Table};
pub use writer::{LogRefused, LogWriter, WriterConfig, WriterStats};
