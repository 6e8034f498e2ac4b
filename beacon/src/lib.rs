//! Beacon collection: how we learn which PoP is fastest for whom.
//!
//! - [`schema`]: the log contract (`docs/beacon-schema.md`): tables, Arrow schemas, row types;
//! - [`writer`]: the durable Parquet writer shared by the DNS server (probe queries) and the
//!   collector (client reports);
//! - [`collector`] (feature `collector`): the HTTP collector and the page snippet;
//! - [`simulate`] (feature `simulate`): simulated users driving the real server and collector,
//!   with the ground truth to score maps against.

#[cfg(feature = "collector")]
pub mod collector;
pub mod schema;
#[cfg(feature = "simulate")]
pub mod simulate;
pub mod writer;

pub use schema::{valid_probe_id, DnsProbeRow, ProbeId, RttReportRow, Table};
pub use writer::{LogRefused, LogWriter, WriterConfig, WriterStats};
