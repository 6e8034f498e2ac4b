//! The geodns authoritative server.
//!
//! Modules in dataflow order (an import only ever points up this list):
//! - [`config`]: the TOML config, typed and validated (zones are `geodns_zone`'s, shared with
//!   the presenter; the ZooKeeper settings `geodns_snapshot`'s);
//! - [`metrics`]: counters, rendered with `geodns_daemon`'s Prometheus writer;
//! - [`wire`]: strict query parsing and response framing;
//! - [`cookie`]: DNS cookies' server cookies;
//! - [`dataset`]: config + zones + map + GeoIP loaded as one verified unit;
//! - [`internal`]: internal zones compiled from a published snapshot;
//! - [`spill`]: where a drained or full PoP's users go;
//! - [`served`]: what one query reads (dataset, health, internal zones, probe log) and the one
//!   place it changes ([`served::State`]: every swap, and the memory released after it);
//! - [`responder`]: the query path;
//! - [`rrl`]: response rate limiting of UDP responses;
//! - [`udp`], [`tcp`]: transports; [`xdp`]: UDP through AF_XDP, answered as [`udp`] answers;
//! - [`reload`]: watching files, swapping datasets and health files in; [`zookeeper`]:
//!   following the internal snapshot and the PoP health published in ZooKeeper;
//! - [`server`]: starts them all.

pub mod config;
pub mod cookie;
pub mod dataset;
pub mod internal;
pub mod metrics;
pub mod reload;
pub mod responder;
pub mod rrl;
pub mod served;
pub mod server;
pub mod spill;
pub mod tcp;
pub mod udp;
pub mod wire;
pub mod xdp;
pub mod zookeeper;
