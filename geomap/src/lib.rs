//! The geodns map: what mapgen writes, what the server answers from, and the tools between.
//!
//! [`atomic_file`] is the one way any geodns tool writes a file another process reads.
//!
//! In dataflow order:
//! - [`pop`]: PoP ids and the PoP table;
//! - [`map`]: rows keyed by prefix in two key spaces (client subnets, resolvers);
//! - [`format`](mod@format): the Arrow IPC file, verified on read (`ipc`: the container, bounds-checked);
//! - [`nets`]: hand-written nets files imported as maps;
//! - [`compact`]: the fewest rows that answer the same;
//! - [`table`]: the frozen longest-prefix-match table that returns an answer with its ECS scope;
//! - [`geoip`]: nearest-PoP fallback from a MaxMind database;
//! - [`mmdb`]: the map exported as a MaxMind database for other servers.

pub mod atomic_file;
pub mod compact;
pub mod format;
pub mod geoip;
mod ipc;
pub mod map;
pub mod mmdb;
pub mod nets;
pub mod pop;
pub mod table;

pub use format::{decode_map, read_map, write_map, FormatError};
pub use map::{Derivation, KeySpace, Map, MapMeta, MapRow};
pub use pop::{PopId, PopIndex, PopInfo, PopTable};
pub use table::{AnswerTable, Hit, ListId, ListStats, RowIndex};
