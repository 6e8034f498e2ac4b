//! Integration tests: the real `geodns` binary, real DNS clients. See `harness.rs`.

mod harness;

mod answers;
mod cli;
mod edns;
mod geoip;
mod health;
mod probe;
mod reload;
mod transport;
