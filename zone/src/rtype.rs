//! Record type codes, the one list the compiler and the query path share.

/// IPv4 address.
pub const A: u16 = 1;
/// Name server.
pub const NS: u16 = 2;
/// Canonical name.
pub const CNAME: u16 = 5;
/// Start of authority.
pub const SOA: u16 = 6;
/// Text.
pub const TXT: u16 = 16;
/// IPv6 address.
pub const AAAA: u16 = 28;
/// EDNS pseudo-record.
pub const OPT: u16 = 41;
/// Delegation signer: answered by the parent side of a cut.
pub const DS: u16 = 43;
/// Incremental zone transfer.
pub const IXFR: u16 = 251;
/// Zone transfer.
pub const AXFR: u16 = 252;
/// Any type.
pub const ANY: u16 = 255;
