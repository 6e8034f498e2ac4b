//! The snapshot document and the pointer that names it.
//!
//! The document is JSON: a version, when it was made, and each internal zone as zone-file text
//! (the form the server's own loader reads, so what `geodns check` accepts is what a server
//! serves). It is stored in chunks of at most [`CHUNK_BYTES`] (ZooKeeper refuses a node over
//! about 1 MB); the pointer carries the version, the SHA-256 and size of the whole document and
//! the number of chunks. A reader that assembles the chunks checks size and checksum before it
//! parses anything, so a partial, stale or corrupt snapshot is refused, never served.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The largest chunk written to one znode: under ZooKeeper's default 1 MB `jute.maxbuffer`,
/// with room for the request's own framing.
pub const CHUNK_BYTES: usize = 900 * 1024;

/// The document format this code writes and reads.
pub const FORMAT: u32 = 1;

/// One internal zone: its origin and its records as zone-file text (relative to the origin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneText {
    /// Apex, e.g. `internal.example`.
    pub origin: String,
    /// Zone-file text, SOA first.
    pub text: String,
}

/// A published set of internal zones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Document format, [`FORMAT`].
    pub format: u32,
    /// Increases by one with every publication; also the zones' SOA serial.
    pub version: u64,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The zones.
    pub zones: Vec<ZoneText>,
}

/// What servers watch: which snapshot is current and how to check it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// The snapshot's version.
    pub version: u64,
    /// `sha256:<hex>` of the whole document.
    pub checksum: String,
    /// Bytes in the whole document.
    pub size: u64,
    /// Number of chunks under the version's node.
    pub chunks: u32,
    /// RFC 3339 UTC, from the snapshot.
    pub created_at: String,
    /// The public key that signed the document (`ed25519:<hex>`), if signed
    /// ([`crate::signature`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// The signature over the document's bytes (hex), if signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The version's state digest ([`crate::delta::Zones::state`]), which a server that
    /// applied deltas reaches; absent from a presenter that publishes whole snapshots only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The latest version whose whole document is in ZooKeeper's chunks, at or before this one
    /// (`None`: this one). The versions after it were published as deltas too
    /// ([`crate::store`]). Not signed, and needs not be: whatever it leads a server to is
    /// verified on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<u64>,
    /// Bytes of the deltas published since `full`: once they outweigh the document, the next
    /// publication is whole again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delta_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why a snapshot or pointer is refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The pointer is not a pointer.
    #[error("pointer: {0}")]
    Pointer(String),
    /// The assembled bytes do not match the pointer.
    #[error("snapshot {version}: {problem}")]
    Mismatch {
        /// The version the pointer names.
        version: u64,
        /// What differs.
        problem: String,
    },
    /// The document does not parse.
    #[error("snapshot document: {0}")]
    Document(String),
    /// The signature is missing, by a key not trusted, or wrong ([`crate::signature`]).
    #[error("snapshot {version}: {problem}")]
    Signature {
        /// The version the pointer names.
        version: u64,
        /// What is wrong.
        problem: String,
    },
    /// The version is not one a server may take: not newer than the one in force (a rollback
    /// or a replay), or beyond the 32-bit SOA serial it becomes.
    #[error("snapshot {version}: {problem}")]
    Version {
        /// The version the pointer names.
        version: u64,
        /// What is wrong.
        problem: String,
    },
}

/// `sha256:<hex>` of `bytes`.
pub fn checksum(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl Snapshot {
    /// The document's bytes and the pointer that names them.
    pub fn encode(&self) -> (Vec<u8>, Pointer) {
        let bytes = serde_json::to_vec(self).expect("a snapshot always serialises");
        let pointer = Pointer {
            version: self.version,
            checksum: checksum(&bytes),
            size: bytes.len() as u64,
            chunks: bytes.len().div_ceil(CHUNK_BYTES).max(1) as u32,
            created_at: self.created_at.clone(),
            signed_by: None,
            signature: None,
            state: None,
            full: None,
            delta_bytes: 0,
        };
        (bytes, pointer)
    }

    /// Checks `bytes` against `pointer` (size, checksum), then parses them; the document's own
    /// version must be the pointer's.
    pub fn decode(pointer: &Pointer, bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let mismatch = |problem: String| SnapshotError::Mismatch {
            version: pointer.version,
            problem,
        };
        if bytes.len() as u64 != pointer.size {
            return Err(mismatch(format!(
                "{} bytes, the pointer says {}",
                bytes.len(),
                pointer.size
            )));
        }
        let sum = checksum(bytes);
        if sum != pointer.checksum {
            return Err(mismatch(format!(
                "content hashes to {sum}, the pointer says {}",
                pointer.checksum
            )));
        }
        let snap: Snapshot =
            serde_json::from_slice(bytes).map_err(|e| SnapshotError::Document(e.to_string()))?;
        if snap.format != FORMAT {
            return Err(SnapshotError::Document(format!(
                "format {} (this build reads {FORMAT})",
                snap.format
            )));
        }
        if snap.version != pointer.version {
            return Err(mismatch(format!(
                "the document says version {}",
                snap.version
            )));
        }
        Ok(snap)
    }
}

/// The largest version: it is also the zones' SOA serial, a 32-bit number.
pub const MAX_VERSION: u64 = u32::MAX as u64;

impl Pointer {
    /// Whether a server holding `in_force` may take this version: a newer one (a replayed or
    /// rolled-back snapshot is refused, whatever its signature), within the SOA serial's range.
    pub fn check_version(&self, in_force: Option<u64>) -> Result<(), SnapshotError> {
        let refuse = |problem: String| SnapshotError::Version {
            version: self.version,
            problem,
        };
        if self.version > MAX_VERSION {
            return Err(refuse(format!(
                "beyond {MAX_VERSION}, the largest SOA serial"
            )));
        }
        match in_force {
            Some(have) if self.version <= have => Err(refuse(format!(
                "not newer than version {have} in force (a rollback or a replay)"
            ))),
            _ => Ok(()),
        }
    }

    /// Parses a pointer znode's data.
    pub fn parse(bytes: &[u8]) -> Result<Pointer, SnapshotError> {
        let p: Pointer =
            serde_json::from_slice(bytes).map_err(|e| SnapshotError::Pointer(e.to_string()))?;
        let max_chunks = p.size.div_ceil(CHUNK_BYTES as u64).max(1);
        if p.chunks == 0 || u64::from(p.chunks) > max_chunks {
            return Err(SnapshotError::Pointer(format!(
                "{} chunks for {} bytes",
                p.chunks, p.size
            )));
        }
        Ok(p)
    }

    /// The version whose whole document is in ZooKeeper's chunks.
    pub fn full_version(&self) -> u64 {
        self.full.unwrap_or(self.version)
    }

    /// The pointer's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a pointer always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Snapshot {
        let text: String = (0..n)
            .map(|i| format!("host{i}.prn1 60 IN A 10.0.{}.{}\n", i / 256 % 256, i % 256))
            .collect();
        Snapshot {
            format: FORMAT,
            version: 7,
            created_at: "2026-11-26T00:00:00Z".into(),
            zones: vec![ZoneText {
                origin: "internal.example".into(),
                text,
            }],
        }
    }

    #[test]
    fn round_trip_and_every_damage_is_refused() {
        let snap = sample(50_000);
        let (bytes, pointer) = snap.encode();
        assert!(pointer.chunks > 1, "{} bytes in one chunk", bytes.len());
        assert_eq!(Snapshot::decode(&pointer, &bytes).unwrap(), snap);
        let p = Pointer::parse(&pointer.to_bytes()).unwrap();
        assert_eq!(p, pointer);

        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 1;
        assert!(Snapshot::decode(&pointer, &flipped).is_err());
        assert!(Snapshot::decode(&pointer, &bytes[..bytes.len() - 1]).is_err());
        let other = Pointer {
            version: 8,
            ..pointer.clone()
        };
        assert!(Snapshot::decode(&other, &bytes).is_err());
        assert!(Pointer::parse(b"{}").is_err());
        let too_many = Pointer {
            chunks: 1000,
            ..pointer
        };
        assert!(Pointer::parse(&too_many.to_bytes()).is_err());
    }
}
