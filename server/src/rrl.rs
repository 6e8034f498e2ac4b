//! Response rate limiting (RRL) over UDP, with the semantics operators know from BIND and
//! Knot: a server that answers anyone is a reflector for whoever spoofs a victim's address, so
//! identical responses to one client prefix are limited to a rate, and the excess is dropped,
//! except every `slip`-th limited response, which goes out truncated (TC, no records) so that
//! a real client behind that prefix retries over TCP, which cannot be spoofed.
//!
//! Responses are accounted by client prefix (`/24` and `/56` by default), answer class
//! (answer, referral, no data, NXDOMAIN, error) and, for answers, referrals and no-data, the
//! query name; NXDOMAIN and errors of one prefix share an account (random names must not
//! escape the limit). The rate is counted in whole seconds in a fixed table of lock-free
//! counters shared by every UDP worker: a collision resets an account rather than blocking,
//! which only ever lets a response more through. TCP is never limited.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::config;
use crate::wire::{flag, rcode};

/// Accounts in the table (a power of two).
const TABLE: usize = 1 << 16;

/// What to do with a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: send it.
    Send,
    /// Over the rate, but its turn to slip: send it truncated.
    Slip,
    /// Over the rate: send nothing.
    Drop,
}

/// The limiter every UDP worker shares.
pub struct Limiter {
    rate: u64,
    slip: u64,
    v4_prefix: u8,
    v6_prefix: u8,
    accounts: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
}

/// The answer classes responses are accounted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Answer,
    Referral,
    NoData,
    NxDomain,
    Error,
}

impl Limiter {
    /// A limiter for `cfg`, or `None` when it limits nothing (a rate of 0).
    pub fn new(cfg: &config::Rrl) -> Option<Limiter> {
        (cfg.responses_per_second > 0).then(|| Limiter {
            rate: u64::from(cfg.responses_per_second),
            slip: u64::from(cfg.slip),
            v4_prefix: cfg.ipv4_prefix,
            v6_prefix: cfg.ipv6_prefix,
            accounts: (0..TABLE).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
        })
    }

    /// The verdict on `response` (as it would be sent) to `client`, at `second` (any clock
    /// that counts whole seconds).
    pub fn check(&self, client: IpAddr, response: &[u8], second: u64) -> Verdict {
        let Some((class, name)) = classify(response) else {
            return Verdict::Send;
        };
        let mut h = self.hasher.build_hasher();
        match client {
            IpAddr::V4(a) => {
                let bits = u32::from(a) & prefix_mask_v4(self.v4_prefix);
                h.write_u8(4);
                h.write_u32(bits);
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a) & prefix_mask_v6(self.v6_prefix);
                h.write_u8(6);
                h.write_u128(bits);
            }
        }
        h.write_u8(class as u8);
        for b in name {
            h.write_u8(b.to_ascii_lowercase());
        }
        let hash = h.finish();
        let slot = &self.accounts[(hash as usize) & (TABLE - 1)];
        // An account: the key's tag (32 bits), the second (16 bits), the count (16 bits).
        let tag = hash >> 32;
        let now = second & 0xffff;
        let mut count = 0;
        let _ = slot.fetch_update(Relaxed, Relaxed, |old| {
            count = if old >> 32 == tag && (old >> 16) & 0xffff == now {
                (old & 0xffff).saturating_add(1).min(0xffff)
            } else {
                1
            };
            Some(tag << 32 | now << 16 | count)
        });
        if count <= self.rate {
            Verdict::Send
        } else if self.slip > 0 && (count - self.rate) % self.slip == 0 {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

fn prefix_mask_v4(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn prefix_mask_v6(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

/// The answer class of a response and the name it is accounted under (the question's name
/// for answers, referrals and no-data; nothing for NXDOMAIN and errors). `None` for what is
/// not a response with one question.
fn classify(r: &[u8]) -> Option<(Class, &[u8])> {
    if r.len() < 12 || u16::from_be_bytes([r[4], r[5]]) != 1 {
        return None;
    }
    let flags = u16::from_be_bytes([r[2], r[3]]);
    let an = u16::from_be_bytes([r[6], r[7]]);
    let ns = u16::from_be_bytes([r[8], r[9]]);
    let mut at = 12;
    while *r.get(at)? != 0 {
        at += 1 + usize::from(r[at]);
    }
    let name = r.get(12..at)?;
    let class = match (flags & flag::RCODE) as u8 {
        rcode::NXDOMAIN => return Some((Class::NxDomain, &[])),
        rcode::NOERROR if an > 0 => Class::Answer,
        rcode::NOERROR if ns > 0 && flags & flag::AA == 0 => Class::Referral,
        rcode::NOERROR => Class::NoData,
        _ => return Some((Class::Error, &[])),
    };
    Some((class, name))
}

/// Turns a response into its slipped form: the header and the question, TC set, no records.
pub fn truncate(out: &mut Vec<u8>) {
    if out.len() < 12 {
        return;
    }
    let mut at = 12;
    while at < out.len() && out[at] != 0 {
        at += 1 + usize::from(out[at]);
    }
    let end = (at + 1 + 4).min(out.len());
    out.truncate(end);
    let flags = u16::from_be_bytes([out[2], out[3]]) | flag::TC;
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    out[6..12].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(name: &[u8], rc: u8, an: u16) -> Vec<u8> {
        let mut r = vec![0x12, 0x34, 0x84, rc, 0, 1];
        r.extend_from_slice(&an.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 1]);
        r.extend_from_slice(name);
        r.extend_from_slice(&[0, 1, 0, 1]);
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
        r
    }

    fn limiter(rate: u32, slip: u32) -> Limiter {
        Limiter::new(&config::Rrl {
            responses_per_second: rate,
            slip,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        })
        .unwrap()
    }

    #[test]
    fn the_rate_holds_per_prefix_and_name_and_every_slip_th_goes_out_truncated() {
        let l = limiter(5, 2);
        let www = response(b"\x03www\x07example\x03com\x00", 0, 1);
        let mail = response(b"\x04mail\x07example\x03com\x00", 0, 1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let same_24: IpAddr = "192.0.2.200".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..11)
            .map(|i| l.check(if i % 2 == 0 { a } else { same_24 }, &www, 100))
            .collect();
        assert_eq!(&verdicts[..5], &[Verdict::Send; 5]);
        assert_eq!(
            &verdicts[5..],
            &[
                Verdict::Drop,
                Verdict::Slip,
                Verdict::Drop,
                Verdict::Slip,
                Verdict::Drop,
                Verdict::Slip
            ]
        );
        // Another name, another prefix, the next second: their own accounts.
        assert_eq!(l.check(a, &mail, 100), Verdict::Send);
        assert_eq!(l.check(other, &www, 100), Verdict::Send);
        assert_eq!(l.check(a, &www, 101), Verdict::Send);
        // Random names under NXDOMAIN share one account.
        let nx = |n: &[u8]| response(n, rcode::NXDOMAIN, 0);
        let l = limiter(2, 0);
        let v: Vec<Verdict> = [&b"\x01a\x00"[..], b"\x01b\x00", b"\x01c\x00"]
            .iter()
            .map(|n| l.check(a, &nx(n), 7))
            .collect();
        assert_eq!(v, [Verdict::Send, Verdict::Send, Verdict::Drop]);
    }

    #[test]
    fn a_slipped_response_is_header_and_question_with_tc() {
        let mut r = response(b"\x03www\x07example\x03com\x00", 0, 1);
        truncate(&mut r);
        assert_eq!(r.len(), 12 + 17 + 4);
        assert_eq!(u16::from_be_bytes([r[2], r[3]]) & flag::TC, flag::TC);
        assert_eq!(&r[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
    }
}
