//! `geodns simulate`: users that behave like real ones, driving the real DNS server and the
//! real collector, with the ground truth written beside the logs so a map can be scored.
//!
//! For each simulated user: pick a network by weight and one of its client /24s, a client
//! address in it, and a random probe id; the network's resolver queries
//! `<id>.<pop>.<probe zone>` for every PoP from the resolver's own loopback address (with ECS
//! for the client's /24 if that resolver sends ECS); then the client "fetches" each PoP, its
//! RTT drawn from the latency model, and posts one report through a trusted-proxy address that
//! passes the client's world address in `X-Forwarded-For`. Everything random comes from one
//! seeded generator, drawn before any I/O, so the same seed gives the same users, ids and
//! RTTs whatever the timing.
//!
//! - [`world`]: the world file; [`users`]: the users drawn from it;
//! - [`live`]: users against the real server and collector ([`run`]);
//! - [`logs`]: users straight into logs ([`write_logs`]);
//! - [`truth`]: the ground truth; [`score`]: a map rated against it;
//! - [`options`]: what to run.

pub mod live;
pub mod logs;
pub mod options;
pub mod score;
pub mod truth;
pub mod users;
pub mod world;

pub use live::{run, Summary};
pub use logs::write_logs;
pub use options::{SimulateError, SimulateOptions};
pub use world::{World, WorldError};
