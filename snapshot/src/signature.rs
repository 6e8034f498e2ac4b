//! Who may publish: snapshots signed with Ed25519. The presenter signs each document with its
//! private key; every server trusts a short list of public keys (two at once, for a rotation)
//! and refuses a snapshot that is not signed by one of them, from ZooKeeper or from its own disk
//! cache. Whoever can write to ZooKeeper, or to a server's disk, can then delete or delay
//! snapshots, but never make a server serve records of their own.
//!
//! Keys are text: a public key is `ed25519:<64 hex digits>` (what a server's config lists); a
//! private key file holds `ed25519-private:<64 hex digits>` (the 32-byte seed), mode 0600.
//! The signature covers the document's bytes, so the version, the zones and the creation time
//! are all under it; the pointer carries it with the key that made it.

use std::path::Path;

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::format::{Pointer, SnapshotError};

const PUBLIC_PREFIX: &str = "ed25519:";
const PRIVATE_PREFIX: &str = "ed25519-private:";

/// A public key a server trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl std::str::FromStr for PublicKey {
    type Err = String;

    fn from_str(s: &str) -> Result<PublicKey, String> {
        let hex_part = s
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or_else(|| format!("{s:?}: want {PUBLIC_PREFIX}<64 hex digits>"))?;
        let bytes = hex::decode(hex_part).map_err(|e| format!("{s:?}: {e}"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("{s:?}: an Ed25519 public key is 32 bytes"))?;
        Ok(PublicKey(key))
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", hex::encode(self.0))
    }
}

impl PublicKey {
    /// Whether `signature` (hex) is this key's over `message`.
    fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Ok(sig) = hex::decode(signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, &sig)
            .is_ok()
    }
}

/// The presenter's private key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A new key from the system's random source: the private key file's text and the key.
    pub fn generate() -> Result<(String, SigningKey), String> {
        use ring::rand::SecureRandom;
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| "the system's random source failed".to_owned())?;
        let key = SigningKey::from_seed(&seed)?;
        Ok((format!("{PRIVATE_PREFIX}{}\n", hex::encode(seed)), key))
    }

    fn from_seed(seed: &[u8]) -> Result<SigningKey, String> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(|pair| SigningKey { pair })
            .map_err(|_| "not an Ed25519 seed".to_owned())
    }

    /// Reads a private key file. Refuses one that others may read: a key anyone on the host
    /// can copy signs for anyone.
    pub fn read(path: &Path) -> Result<SigningKey, String> {
        let name = path.display();
        let text = crate::secret_file::read(path, "a private key")?;
        let seed = text
            .trim()
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or_else(|| format!("{name}: not a geodns private key ({PRIVATE_PREFIX}...)"))
            .and_then(|h| hex::decode(h).map_err(|e| format!("{name}: {e}")))?;
        if seed.len() != 32 {
            return Err(format!("{name}: an Ed25519 seed is 32 bytes"));
        }
        SigningKey::from_seed(&seed).map_err(|e| format!("{name}: {e}"))
    }

    /// The public half, as servers list it.
    pub fn public(&self) -> PublicKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(key)
    }

    /// Signs a document: sets the pointer's `signed_by` and `signature`.
    pub fn sign(&self, bytes: &[u8], pointer: &mut Pointer) {
        let (by, sig) = self.sign_bytes(bytes);
        pointer.signed_by = Some(by);
        pointer.signature = Some(sig);
    }

    /// The signature over `bytes` (hex) and the key that made it, as text: for what carries
    /// its own signature (a delta, [`crate::delta::Seal`]).
    pub fn sign_bytes(&self, bytes: &[u8]) -> (String, String) {
        (
            self.public().to_string(),
            hex::encode(self.pair.sign(bytes).as_ref()),
        )
    }
}

/// The keys a server accepts snapshots from. Empty: any snapshot whose checksum holds (no
/// signatures checked; `geodns check` and the log at start warn).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trust {
    keys: Vec<PublicKey>,
}

impl Trust {
    /// Trusts `keys`.
    pub fn new(keys: Vec<PublicKey>) -> Trust {
        Trust { keys }
    }

    /// Whether signatures are checked at all.
    pub fn checks(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks that `bytes` (the document `pointer` names) is signed by a trusted key.
    pub fn check(&self, pointer: &Pointer, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.check_bytes(
            pointer.version,
            pointer.signed_by.as_deref(),
            pointer.signature.as_deref(),
            bytes,
        )
    }

    /// Checks that `signature` by `signed_by` is a trusted key's over `bytes` (of `version`,
    /// for the error).
    pub fn check_bytes(
        &self,
        version: u64,
        signed_by: Option<&str>,
        signature: Option<&str>,
        bytes: &[u8],
    ) -> Result<(), SnapshotError> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let refuse = |problem: String| SnapshotError::Signature { version, problem };
        let (Some(by), Some(sig)) = (signed_by, signature) else {
            return Err(refuse("not signed".into()));
        };
        let key: PublicKey = by.parse().map_err(refuse)?;
        if !self.keys.contains(&key) {
            return Err(refuse(format!(
                "signed by {key}, which this server does not trust"
            )));
        }
        if !key.verifies(bytes, sig) {
            return Err(refuse(format!(
                "the signature by {key} does not match the document"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Snapshot, ZoneText, FORMAT};

    fn snap(version: u64, text: &str) -> Snapshot {
        Snapshot {
            format: FORMAT,
            version,
            created_at: "2026-12-06T00:00:00Z".into(),
            zones: vec![ZoneText {
                origin: "internal.example".into(),
                text: text.into(),
            }],
        }
    }

    #[test]
    fn a_signed_snapshot_verifies_and_every_forgery_is_refused() {
        let (_, key) = SigningKey::generate().unwrap();
        let (_, other) = SigningKey::generate().unwrap();
        let trust = Trust::new(vec![key.public()]);
        let (bytes, mut pointer) = snap(3, "www 60 IN A 10.0.0.1\n").encode();
        key.sign(&bytes, &mut pointer);
        trust.check(&pointer, &bytes).unwrap();

        // Unsigned, signed by an untrusted key, another document under the same signature.
        let (forged, mut unsigned) = snap(3, "www 60 IN A 6.6.6.6\n").encode();
        assert!(trust.check(&unsigned, &forged).is_err());
        other.sign(&forged, &mut unsigned);
        let e = trust.check(&unsigned, &forged).unwrap_err().to_string();
        assert!(e.contains("does not trust"), "{e}");
        let mut replayed = unsigned.clone();
        replayed.signed_by = pointer.signed_by.clone();
        replayed.signature = pointer.signature.clone();
        let e = trust.check(&replayed, &forged).unwrap_err().to_string();
        assert!(e.contains("does not match"), "{e}");
        // A server that trusts nobody checks nothing.
        Trust::default().check(&unsigned, &forged).unwrap();
    }

    #[test]
    fn keys_round_trip_as_text_and_a_readable_private_key_is_refused() {
        let (text, key) = SigningKey::generate().unwrap();
        let public = key.public();
        assert_eq!(public.to_string().parse::<PublicKey>().unwrap(), public);
        assert!("ed25519:abcd".parse::<PublicKey>().is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("presenter.key");
        std::fs::write(&path, &text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SigningKey::read(&path).err().unwrap();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(SigningKey::read(&path).unwrap().public(), public);
    }
}
