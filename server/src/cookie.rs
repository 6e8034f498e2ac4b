//! DNS cookies (RFC 7873), with server cookies made the way RFC 9018 makes them
//! interoperable: several servers that share a secret accept each other's cookies, and a
//! client that returns a server cookie proves it receives packets at its address. Such a
//! client is not rate limited ([`crate::rrl`]): a spoofed flood cannot carry a valid cookie.
//!
//! A server cookie is 16 bytes: version 1, three reserved bytes, the time it was made (Unix
//! seconds, 32 bits), and SipHash-2-4, keyed with the secret, of the client cookie, those eight
//! bytes and the client's address. It is valid for an hour (and five minutes ahead, for
//! clocks), under the current secret or the previous one (a rotation). Cookies are not
//! required: a query without one, or with a stale one, is answered as any other, with a fresh
//! cookie.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher24;

use crate::config;
use crate::wire::Cookie;

/// How long a server cookie is accepted after it was made, seconds (RFC 9018: one hour).
const LIFETIME: u32 = 3600;
/// How far ahead of this server's clock a cookie may be, seconds (RFC 9018: five minutes).
const AHEAD: u32 = 300;

/// The secrets server cookies are made and checked with.
#[derive(Clone, Debug, PartialEq)]
pub struct Secrets {
    current: [u8; 16],
    previous: Option<[u8; 16]>,
}

impl Secrets {
    /// The configured secrets, or a random one for this process (cookies then hold for this
    /// server alone, until it restarts).
    pub fn new(cfg: &config::Cookies) -> Secrets {
        match &cfg.secret {
            Some(s) => Secrets {
                current: config::parse_cookie_secret(s).expect("checked with the config"),
                previous: cfg
                    .previous_secret
                    .as_deref()
                    .map(|p| config::parse_cookie_secret(p).expect("checked with the config")),
            },
            None => {
                // One random secret for the process, so a reload keeps clients' cookies valid.
                static RANDOM: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
                let current = *RANDOM.get_or_init(|| {
                    use std::hash::{BuildHasher, RandomState};
                    let mut s = [0u8; 16];
                    s[..8].copy_from_slice(&RandomState::new().hash_one(1u8).to_le_bytes());
                    s[8..].copy_from_slice(&RandomState::new().hash_one(2u8).to_le_bytes());
                    s
                });
                Secrets {
                    current,
                    previous: None,
                }
            }
        }
    }

    /// The server cookie for `client` (the client cookie) from `addr` at Unix time `now`.
    pub fn make(&self, client: &[u8; 8], addr: IpAddr, now: u32) -> [u8; 16] {
        make(&self.current, client, addr, now)
    }

    /// Whether `cookie`'s server part is one this server (or one sharing its secret) made for
    /// this client and address, within its lifetime at `now`.
    pub fn valid(&self, cookie: &Cookie, addr: IpAddr, now: u32) -> bool {
        let server = cookie.server();
        if server.len() != 16 || server[0] != 1 {
            return false;
        }
        let made = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
        if now.wrapping_sub(made) > LIFETIME && made.wrapping_sub(now) > AHEAD {
            return false;
        }
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .any(|secret| make(secret, &cookie.client, addr, made)[..] == server[..16])
    }
}

fn make(secret: &[u8; 16], client: &[u8; 8], addr: IpAddr, now: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[0] = 1;
    out[4..8].copy_from_slice(&now.to_be_bytes());
    let mut h = SipHasher24::new_with_key(secret);
    h.write(client);
    h.write(&out[..8]);
    match addr {
        IpAddr::V4(a) => h.write(&a.octets()),
        IpAddr::V6(a) => h.write(&a.octets()),
    }
    out[8..].copy_from_slice(&h.finish().to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 9018, appendix A.1: a server cookie made for a client, byte for byte.
    #[test]
    fn the_rfc_9018_test_vector() {
        let secret: [u8; 16] =
            config::parse_cookie_secret("e5e973e5a6b2a43f48e7dc849e37bfcf").unwrap();
        let client: [u8; 8] = hex("2464c4abcf10c957").try_into().unwrap();
        let server = make(
            &secret,
            &client,
            "198.51.100.100".parse().unwrap(),
            1559731985,
        );
        assert_eq!(server.to_vec(), hex("010000005cf79f111f8130c3eee29480"));
    }

    #[test]
    fn a_cookie_is_valid_for_its_client_address_and_lifetime_under_either_secret() {
        let cfg = |s: &str, p: Option<&str>| config::Cookies {
            secret: Some(s.into()),
            previous_secret: p.map(Into::into),
        };
        let old = Secrets::new(&cfg("000102030405060708090a0b0c0d0e0f", None));
        let new = Secrets::new(&cfg(
            "ffeeddccbbaa99887766554433221100",
            Some("000102030405060708090a0b0c0d0e0f"),
        ));
        let addr: IpAddr = "192.0.2.7".parse().unwrap();
        let client = *b"abcdefgh";
        let made = old.make(&client, addr, 1_000_000);
        let mut cookie = Cookie {
            client,
            server: [0; 32],
            server_len: 16,
        };
        cookie.server[..16].copy_from_slice(&made);
        assert!(old.valid(&cookie, addr, 1_000_100));
        assert!(
            new.valid(&cookie, addr, 1_000_100),
            "the previous secret still holds"
        );
        assert!(!old.valid(&cookie, "192.0.2.8".parse().unwrap(), 1_000_100));
        assert!(
            !old.valid(&cookie, addr, 1_000_000 + LIFETIME + 1),
            "expired"
        );
        assert!(
            old.valid(&cookie, addr, 1_000_000 - AHEAD),
            "a little ahead"
        );
        cookie.server[12] ^= 1;
        assert!(!old.valid(&cookie, addr, 1_000_100));
    }
}
