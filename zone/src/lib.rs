//! Zones, compiled once into pre-encoded wire data: what a server serves and what the
//! presenter checks before it publishes are the same compiler, so what `geodns publish`
//! accepts is what every server serves. No transport, no server state: the presenter depends
//! on this crate, never on the server.
//!
//! - [`config`]: a zone as written in the server's config (`[[zones]]`).
//! - [`Zone`] (`compile`): the compiled zone, its nodes and RRsets, the names in wire form.
//! - [`Zone::patched`] (`patch`): a compiled zone changed by a few records, in time
//!   proportional to the change, exactly as a full compile would give it.
//! - [`check_text`] (`text`): zone text refused before any parser sees it (`$INCLUDE`,
//!   trailing fields, huge RRsets), for text that comes through ZooKeeper.
//! - [`rtype`]: record type codes.

pub mod config;
pub mod rtype;

mod compile;
mod patch;
mod text;

pub use compile::{parent, text_name, wire_name, Node, Rrset, Zone, ZoneError};
pub use patch::{patch_line_owner, OwnerLines};
pub use text::{check_text, refuse_includes};
