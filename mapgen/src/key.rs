//! Addresses and prefixes as one `u64`, so the pairing and the group-bys run on integers rather
//! than text.
//!
//! An IPv4 address `a` is `0xFFFF_FFFF_0000_0000 | a`; an IPv6 address is its upper 64 bits.
//! The two never meet: an IPv6 address starting `ffff:ffff` is multicast (`ff00::/8`), which is
//! never a client or resolver source and is refused. A prefix is its first address's key, so
//! truncating is masking the low bits, and the length is implied by the aggregation level.
//!
//! IPv6 keys hold at most /64. That covers every client level (/48 and coarser) and makes an
//! IPv6 *resolver* a /64: a resolver farm answers from addresses of one /64, and /64 is the
//! smallest block IPv6 assigns to a network, so its addresses share one location.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

const V4_TAG: u64 = 0xFFFF_FFFF_0000_0000;

/// The key of an address, or `None` for a multicast IPv6 address (never a real source).
/// IPv4-mapped IPv6 addresses count as IPv4.
pub fn of_ip(ip: IpAddr) -> Option<u64> {
    match ip.to_canonical() {
        IpAddr::V4(a) => Some(V4_TAG | u64::from(u32::from(a))),
        IpAddr::V6(a) if a.is_multicast() => None,
        IpAddr::V6(a) => Some((u128::from(a) >> 64) as u64),
    }
}

/// The key of an address given as text, or `None` if it is not an address.
pub fn parse(text: &str) -> Option<u64> {
    of_ip(text.parse().ok()?)
}

/// Whether the key is an IPv4 one.
pub fn is_v4(key: u64) -> bool {
    key & V4_TAG == V4_TAG
}

/// The key truncated to `/v4` or `/v6` (at most 64), whichever family it is.
pub fn truncate(key: u64, v4: u8, v6: u8) -> u64 {
    if is_v4(key) {
        V4_TAG | (key & u64::from(u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0)))
    } else {
        key & u64::MAX
            .checked_shl(64 - u32::from(v6.min(64)))
            .unwrap_or(0)
    }
}

/// The prefix of the key at `/v4` or `/v6`.
pub fn to_net(key: u64, v4: u8, v6: u8) -> IpNet {
    let key = truncate(key, v4, v6);
    if is_v4(key) {
        IpNet::V4(Ipv4Net::new(Ipv4Addr::from(key as u32), v4).expect("prefix length <= 32"))
    } else {
        IpNet::V6(
            Ipv6Net::new(Ipv6Addr::from(u128::from(key) << 64), v6.min(64))
                .expect("prefix length <= 64"),
        )
    }
}

/// A client key (at /48 or coarser for IPv6) and a PoP index packed into one `u64`, so the
/// group-bys hash one integer instead of two columns. The packing orders keys by family, then
/// PoP, then address, so sorting by the packed finest level also sorts every coarser level
/// (which lets polars group them as slices). IPv4: the tag bits 32..48 hold the PoP
/// (complemented); IPv6: the top 16 bits hold the PoP and the low 48 bits the /48 (never
/// `0xFFFF` on top: there are at most 65535 PoPs, so indices stop at 65534).
pub fn with_pop(key: u64, pop: u16) -> u64 {
    if is_v4(key) {
        key ^ (u64::from(pop) << 32)
    } else {
        debug_assert_eq!(key & 0xFFFF, 0, "IPv6 key longer than /48");
        (u64::from(pop) << 48) | (key >> 16)
    }
}

/// Undoes [`with_pop`].
pub fn without_pop(packed: u64) -> (u64, u16) {
    if packed >> 48 == 0xFFFF {
        (packed | 0xFFFF_0000_0000, ((packed >> 32) as u16) ^ 0xFFFF)
    } else {
        (packed << 16, (packed >> 48) as u16)
    }
}

/// A packed (key, PoP) truncated to a coarser level, still packed: monotone, so a column
/// sorted at the finer level stays sorted.
pub fn coarser(packed: u64, v4: u8, v6: u8) -> u64 {
    let (key, pop) = without_pop(packed);
    with_pop(truncate(key, v4, v6), pop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_round_trip_and_families_stay_apart() {
        let k = parse("198.51.100.77").unwrap();
        assert!(is_v4(k));
        assert_eq!(to_net(k, 24, 48).to_string(), "198.51.100.0/24");
        assert_eq!(to_net(k, 20, 40).to_string(), "198.51.96.0/20");
        assert_eq!(to_net(k, 32, 64).to_string(), "198.51.100.77/32");
        assert_eq!(to_net(k, 0, 0).to_string(), "0.0.0.0/0");
        assert_eq!(parse("::ffff:198.51.100.77"), Some(k));
        let k6 = parse("2001:db8:abcd:12::1").unwrap();
        assert!(!is_v4(k6));
        assert_eq!(to_net(k6, 24, 48).to_string(), "2001:db8:abcd::/48");
        assert_eq!(to_net(k6, 32, 64).to_string(), "2001:db8:abcd:12::/64");
        assert_eq!(to_net(k6, 32, 128).to_string(), "2001:db8:abcd:12::/64");
        assert!(!is_v4(parse("feff:ffff::1").unwrap()));
        assert_eq!(parse("ffff:ffff::1"), None);
        assert_eq!(parse("ff02::1"), None);
        assert_eq!(parse("not-an-ip"), None);
        assert_ne!(truncate(k, 24, 48), truncate(k6, 24, 48));
        for (key, pop) in [
            (truncate(k, 24, 48), 0),
            (truncate(k, 16, 32), 65535),
            (truncate(k6, 24, 48), 7),
            (truncate(k6, 16, 32), 65534),
        ] {
            let packed = with_pop(key, pop);
            assert_eq!(without_pop(packed), (key, pop));
            assert_eq!(is_v4(key), packed >> 48 == 0xFFFF);
        }
        // Sorted at /24 (/48) means sorted at every coarser level.
        let mut packed: Vec<u64> = [
            "10.1.2.0",
            "10.1.3.0",
            "10.200.0.0",
            "2001:db8:1::",
            "2001:db8:2::",
            "2002::",
        ]
        .iter()
        .flat_map(|a| [0u16, 1, 300].map(|p| with_pop(truncate(parse(a).unwrap(), 24, 48), p)))
        .collect();
        packed.sort();
        for (v4, v6) in [(20, 40), (16, 32), (8, 16)] {
            let c: Vec<u64> = packed.iter().map(|&p| coarser(p, v4, v6)).collect();
            assert!(c.windows(2).all(|w| w[0] <= w[1]), "/{v4} /{v6}");
        }
    }
}
