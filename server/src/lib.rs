//! The geodns authoritative server.
//!
//! Modules in dataflow order:
//! - [`config`]: the TOML config, typed and validated;
//! - zones are compiled by `geodns_zone` (shared with the presenter);
//! - [`dataset`]: config + zones + map + GeoIP loaded as one verified unit, and the snapshot
//!   (dataset + health) that queries read;
//! - [`health`]: which PoPs are drained;
//! - [`internal`]: internal zones, followed from the snapshot published in ZooKeeper;
//! - [`wire`]: strict query parsing and response framing;
//! - [`responder`]: the query path; [`spill`]: where a drained or full PoP's users go;
//! - [`udp`], [`tcp`]: transports, and [`server`], which starts them;
//! - [`reload`]: watching files and swapping snapshots;
//! - [`metrics`]: counters and their Prometheus rendering.

pub mod config;
pub mod dataset;
pub mod internal;
pub mod metrics;
pub mod reload;
pub mod responder;
pub mod served;
pub mod server;
pub mod spill;
pub mod tcp;
pub mod udp;
pub mod wire;
pub mod zookeeper;
