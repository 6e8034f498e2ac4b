//! The presenter (`geodns presenter`): watches the robots' registrations and the humans'
//! published zones in ZooKeeper, reconciles them ([`reconcile`](mod@reconcile)), validates the result with the
//! servers' own zone compiler (`geodns_zone`), and publishes a versioned snapshot that every server follows.
//!
//! Several presenters run for availability; one publishes at a time: each takes ZooKeeper's lock
//! recipe under `<root>/presenters`, and the pointer moves only through the lock (a fenced
//! write), so a presenter that lost its session cannot move it. A publication interrupted at any
//! point leaves the pointer where it was (`geodns_snapshot::store`).
//!
//! Guards: a registration that vanishes stays for `guard.grace_ms` before its records leave;
//! a snapshot that would drop more than `guard.max_drop_share` of the robot records at once is
//! held back and reported (`<root>/held`, a metric, a log line) until `--force`; a read that
//! fails is never taken for an empty tree: nothing is published from a partial view.
//!
//! - [`leader`]: the lock, then reconcile and publish on every change ([`run`]);
//! - [`registry`]: the robots' registrations seen, with grace for the vanished;
//! - [`human`]: human zones, checked as servers compile them ([`check_human`],
//!   [`publish_human`]);
//! - [`reconcile`](mod@reconcile): robots and humans into zone text, by one conflict policy;
//! - [`publication`]: writing to ZooKeeper, the conflict report;
//! - [`squatters`]: nodes that squat the lock ([`remove_squatters`]);
//! - [`metrics`]: the presenter's counters;
//! - [`config`]: the presenter's config.

pub mod config;
pub mod human;
pub mod leader;
pub mod metrics;
pub mod publication;
pub mod reconcile;
pub mod registry;
pub mod squatters;

pub use human::{check_human, publish_human};
pub use leader::run;
pub use metrics::Metrics;
pub use squatters::remove_squatters;
