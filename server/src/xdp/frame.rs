//! Ethernet frames on the AF_XDP path: the DNS query a frame carries, and the reply written
//! over it in place (the frame goes back out on the same queue).
//!
//! The reply keeps the request's link layer (VLAN tags included) with the MAC addresses
//! swapped, and gets fresh IP and UDP headers with the addresses and ports swapped, lengths and
//! checksums computed (etherparse): IPv4's header checksum, and the UDP checksum both families
//! carry (IPv6 requires it). What the XDP program should never hand over (IPv4 options,
//! fragments, IPv6 extension headers, anything but UDP) is refused here too, so the worker
//! never answers what it cannot answer right.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use etherparse::{
    IpFragOffset, IpNumber, Ipv4Header, Ipv6Header, NetSlice, SlicedPacket, TransportSlice,
    UdpHeader,
};

/// Hop limit of replies (the kernel's default for IPv4 and IPv6).
const TTL: u8 = 64;

/// The network layer of a query, for its reply.
#[derive(Clone, Debug)]
enum Network {
    V4(Ipv4Header),
    V6(Ipv6Header),
}

/// A DNS query found in a frame.
#[derive(Clone, Debug)]
pub struct Query {
    /// Who sent it.
    pub src: SocketAddr,
    /// Where the DNS message lies in the frame.
    pub payload: Range<usize>,
    /// Where the IP header starts.
    ip_at: usize,
    network: Network,
    udp: UdpHeader,
}

/// Offset of `part` in `whole` (a sub-slice of it).
fn offset(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// The UDP query in `frame`, if it is one the AF_XDP path answers: Ethernet (up to two VLAN
/// tags), IPv4 without options or fragmentation or IPv6 without extension headers, then UDP.
pub fn parse(frame: &[u8]) -> Option<Query> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let (network, ip_at, src_ip) = match p.net.as_ref()? {
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            if h.ihl() != 5 || ip.is_payload_fragmented() {
                return None;
            }
            let at = offset(frame, h.slice());
            (Network::V4(h.to_header()), at, IpAddr::from(h.source()))
        }
        NetSlice::Ipv6(ip) => {
            let h = ip.header();
            if h.next_header() != IpNumber::UDP {
                return None;
            }
            let at = offset(frame, h.slice());
            (Network::V6(h.to_header()), at, IpAddr::from(h.source()))
        }
        _ => return None,
    };
    let TransportSlice::Udp(udp) = p.transport.as_ref()? else {
        return None;
    };
    let payload = udp.payload();
    let start = offset(frame, payload);
    Some(Query {
        src: SocketAddr::new(src_ip, udp.source_port()),
        payload: start..start + payload.len(),
        ip_at,
        network,
        udp: udp.to_header(),
    })
}

/// Writes the reply carrying `answer` over `frame` (the frame `q` was found in, with its whole
/// buffer: `frame.len()` is the room there is) and returns the reply's length, or `None` if it
/// does not fit.
pub fn reply(frame: &mut [u8], q: &Query, answer: &[u8]) -> Option<usize> {
    let udp_at = q.payload.start - UdpHeader::LEN;
    let end = q.payload.start + answer.len();
    if end > frame.len() || q.ip_at < 12 {
        return None;
    }
    frame[q.payload.start..end].copy_from_slice(answer);
    let udp_len = UdpHeader::LEN + answer.len();
    // The IP header, written where the query's was (the same length: no options either way).
    let mut ip_bytes = [0u8; Ipv6Header::LEN];
    let (ip_len, udp): (usize, UdpHeader) = match &q.network {
        Network::V4(h) => {
            let mut ip = Ipv4Header {
                source: h.destination,
                destination: h.source,
                time_to_live: TTL,
                identification: 0,
                dont_fragment: true,
                more_fragments: false,
                fragment_offset: IpFragOffset::ZERO,
                dscp: Default::default(),
                ecn: Default::default(),
                ..h.clone()
            };
            ip.set_payload_len(udp_len).ok()?;
            ip.header_checksum = ip.calc_header_checksum();
            let udp = UdpHeader::with_ipv4_checksum(
                q.udp.destination_port,
                q.udp.source_port,
                &ip,
                answer,
            )
            .ok()?;
            let bytes = ip.to_bytes();
            ip_bytes[..bytes.len()].copy_from_slice(&bytes);
            (bytes.len(), udp)
        }
        Network::V6(h) => {
            let mut ip = Ipv6Header {
                source: h.destination,
                destination: h.source,
                hop_limit: TTL,
                traffic_class: 0,
                flow_label: Default::default(),
                ..h.clone()
            };
            ip.set_payload_length(udp_len).ok()?;
            let udp = UdpHeader::with_ipv6_checksum(
                q.udp.destination_port,
                q.udp.source_port,
                &ip,
                answer,
            )
            .ok()?;
            ip_bytes = ip.to_bytes();
            (Ipv6Header::LEN, udp)
        }
    };
    if q.ip_at + ip_len != udp_at {
        return None;
    }
    frame[q.ip_at..udp_at].copy_from_slice(&ip_bytes[..ip_len]);
    frame[udp_at..q.payload.start].copy_from_slice(&udp.to_bytes());
    // The link layer: destination and source MAC swapped, VLAN tags and type kept.
    let (dst, src) = frame[..12].split_at_mut(6);
    dst.swap_with_slice(src);
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn v4_frame(payload: &[u8], vlan: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC);
        let mut out = Vec::new();
        if vlan {
            b.single_vlan(etherparse::VlanId::try_new(42).unwrap())
                .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 61)
                .udp(40000, 53)
                .write(&mut out, payload)
                .unwrap();
        } else {
            b.ipv4([10, 0, 0, 2], [10, 0, 0, 1], 61)
                .udp(40000, 53)
                .write(&mut out, payload)
                .unwrap();
        }
        out
    }

    fn v6_frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .ipv6([0xfd; 16], [0xfe; 16], 61)
            .udp(40000, 53)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    /// The reply, parsed back as a frame from the server, with its checksums verified.
    fn check_reply(frame: &[u8], answer: &[u8]) {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!("no ethernet")
        };
        assert_eq!(eth.destination(), CLIENT_MAC);
        assert_eq!(eth.source(), SERVER_MAC);
        let Some(TransportSlice::Udp(udp)) = &p.transport else {
            panic!("no udp")
        };
        assert_eq!((udp.source_port(), udp.destination_port()), (53, 40000));
        assert_eq!(udp.payload(), answer);
        let h = udp.to_header();
        match p.net.as_ref().unwrap() {
            NetSlice::Ipv4(ip) => {
                let ip = ip.header().to_header();
                assert_eq!((ip.source, ip.destination), ([10, 0, 0, 1], [10, 0, 0, 2]));
                assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                assert_ne!(h.checksum, 0);
                assert_eq!(h.checksum, h.calc_checksum_ipv4(&ip, answer).unwrap());
            }
            NetSlice::Ipv6(ip) => {
                let ip = ip.header().to_header();
                assert_eq!((ip.source, ip.destination), ([0xfe; 16], [0xfd; 16]));
                assert_eq!(h.checksum, h.calc_checksum_ipv6(&ip, answer).unwrap());
            }
            _ => panic!("no ip"),
        }
    }

    #[test]
    fn a_reply_swaps_addresses_and_carries_right_lengths_and_checksums() {
        let query = b"a query of some length";
        let answer = b"an answer that is longer than the query it answers";
        for mut frame in [
            v4_frame(query, false),
            v4_frame(query, true),
            v6_frame(query),
        ] {
            let q = parse(&frame).unwrap();
            assert_eq!(&frame[q.payload.clone()], query);
            assert_eq!(q.src.port(), 40000);
            let len = frame.len();
            frame.resize(2048, 0);
            let n = reply(&mut frame, &q, answer).unwrap();
            assert_eq!(n, len - query.len() + answer.len());
            check_reply(&frame[..n], answer);
        }
    }

    #[test]
    fn what_the_kernel_must_handle_is_not_parsed_and_a_reply_that_does_not_fit_is_refused() {
        // An IPv4 fragment.
        let mut frag = v4_frame(b"x", false);
        frag[14 + 6] |= 0x20; // more fragments
        assert!(parse(&frag).is_none());
        // IPv4 with options (IHL 6).
        let mut out = Vec::new();
        let mut ip = Ipv4Header::new(9, 64, IpNumber::UDP, [10, 0, 0, 2], [10, 0, 0, 1]).unwrap();
        ip.options = [1, 1, 1, 1][..].try_into().unwrap();
        PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .udp(40000, 53)
            .write(&mut out, b"x")
            .unwrap();
        assert!(parse(&out).is_none());
        // TCP.
        let mut tcp = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 61)
            .tcp(40000, 53, 1, 1000)
            .write(&mut tcp, b"x")
            .unwrap();
        assert!(parse(&tcp).is_none());
        // Truncated garbage.
        assert!(parse(&[0u8; 20]).is_none());
        // No room for the answer.
        let mut frame = v4_frame(b"q", false);
        let q = parse(&frame).unwrap();
        assert!(reply(&mut frame, &q, &[0u8; 100]).is_none());
    }
}
