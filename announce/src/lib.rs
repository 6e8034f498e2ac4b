//! `geodns announce`: an ExaBGP API process (ExaBGP runs it and reads its stdout). For each VIP
//! it runs the configured health check, keeps the route's state ([`state`]), and writes ExaBGP
//! text-API commands (`announce route ...`, `withdraw route ...`) when the desired route
//! changes; ExaBGP acknowledges each on our stdin (`done` / `error`). The PoP's health (up,
//! draining, down, per VIP and overall) is published where the DNS servers read it: a node per
//! PoP in ZooKeeper, and/or the server's health file.
//!
//! - Start-up announces nothing until a VIP's checks pass `rise` times.
//! - SIGTERM withdraws every route, then exits; ExaBGP closing our stdin does the same.
//! - SIGUSR1 runs every check at once.
//! - While the drain file exists, healthy routes are announced less preferred for the grace
//!   period, then withdrawn; removing it announces them normally again.
//!
//! - [`process`]: the loop ([`run`]); [`check`]: the health checks; [`state`]: each VIP's
//!   route from its checks, damping and maintenance;
//! - [`exabgp`]: ExaBGP's text API ([`command`]);
//! - [`publish`]: the PoP's health in ZooKeeper and in the health file;
//! - [`config`]: the config.

pub mod check;
pub mod config;
pub mod exabgp;
pub mod process;
pub mod publish;
pub mod state;

pub use exabgp::command;
pub use process::run;
