//! Internal-zone snapshots: what the presenter publishes and every server serves.
//!
//! Internal names (hosts, services) come from robots (hosts registering themselves) and humans
//! (reviewed zone files), meet in ZooKeeper, and are reconciled by the presenter into one
//! *snapshot*: every internal zone as zone-file text, with a version. Servers never read the
//! registration tree; they watch one pointer znode and fetch the snapshot it names, so a
//! thousand servers cost a thousand watches.
//!
//! - [`format`](mod@format): the snapshot document and the pointer (version, checksum, size, chunks);
//!   [`zone_text`]: one zone's text in the presenter's layout, rendered and parsed in one place;
//! - [`delta`]: a publication as the change from the one before, applied in time proportional
//!   to the change, with a state digest that proves the result equals a full load;
//!   [`compiled`]: how a delta's changes to a zone become a change of its compiled form (the
//!   servers' zones, the presenter's check);
//! - [`layout`]: where everything lives under the ZooKeeper root, and how to reach it
//!   ([`ZkSettings`]); [`access`]: who may write what (one identity per role, every node's
//!   ACL);
//! - [`signature`]: who may publish: Ed25519 signatures over the document, the keys servers
//!   trust;
//! - [`store`]: publishing a snapshot whole (chunks first, then the pointer) and fetching and
//!   verifying one;
//! - [`pophealth`]: PoP health published by `geodns announce`, followed by every server, one
//!   typed [`pophealth::PopHealth`] for writer and reader; [`health_file`]: the same health as
//!   the file a server reads, its format written and parsed in one place;
//! - [`follower`]: the task a server runs: last good snapshot from disk at start, then watch,
//!   take each version as deltas or whole, verify, hand over, save; reconnect with backoff;
//!   [`peers`]: whole snapshots served to and fetched from other servers, by content hash.

pub mod access;
pub mod backoff;
pub mod compiled;
pub mod delta;
pub mod follower;
pub mod format;
pub mod health_file;
pub mod layout;
pub mod peers;
pub mod pophealth;
pub mod secret_file;
pub mod signature;
pub mod store;
pub mod zone_text;

pub use follower::{
    load_cache, load_cache_marked, Apply, Follower, FollowerConfig, Refused, SaveFailed, Taken,
    Update,
};
pub use format::{Pointer, Snapshot, SnapshotError, ZoneText};
pub use layout::{Layout, ZkSettings};
pub use signature::{PublicKey, SigningKey, Trust};
