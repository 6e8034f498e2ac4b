//! Integration tests: the real `geodns` binary (DNS server and beacon collector) with real
//! clients. See `harness.rs`.

mod harness;

mod access;
mod answers;
mod bgp;
mod browser;
mod cli;
mod collector;
mod collector_faults;
mod compact;
mod conformance;
mod deltas;
mod edns;
mod export;
mod faults;
mod geoip;
mod health;
mod hostile;
mod internal;
mod mapgen;
mod mapgen_faults;
mod metrics;
mod probe;
mod reload;
mod resolvers;
mod rrl;
mod simulate;
mod spark;
mod spill;
mod transport;
mod trust;
mod xdp;
mod zk;
mod zoo;
