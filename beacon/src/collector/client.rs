//! The client's address: the socket peer, or, when the peer is a trusted proxy, the nearest
//! address in `X-Forwarded-For` that is not itself a trusted proxy.

use std::net::IpAddr;

use ipnet::IpNet;

/// Resolves the client address. `forwarded_for` is the raw header value, if any. Walking the
/// list from the right (the hop nearest us) and skipping trusted proxies means a client cannot
/// forge its address by sending its own `X-Forwarded-For`: only what trusted proxies appended
/// is believed.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else { return peer };
    let mut last = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                let ip = ip.to_canonical();
                if !is_trusted(&ip) {
                    return ip;
                }
                last = ip;
            }
            // Garbage in the chain: stop believing it here.
            Err(_) => return last,
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusts_only_configured_proxies() {
        let trusted: Vec<IpNet> = vec!["127.0.0.2/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Untrusted peer: its header is ignored.
        assert_eq!(client_ip(ip("203.0.113.5"), Some("198.51.100.1"), &trusted), ip("203.0.113.5"));
        // Trusted peer: the rightmost untrusted hop.
        assert_eq!(client_ip(ip("127.0.0.2"), Some("198.51.100.1"), &trusted), ip("198.51.100.1"));
        assert_eq!(client_ip(ip("127.0.0.2"), Some("6.6.6.6, 198.51.100.1, 10.1.2.3"), &trusted), ip("198.51.100.1"));
        // A forged leftmost entry does not win over what the proxy saw.
        assert_eq!(client_ip(ip("127.0.0.2"), Some("1.1.1.1, 198.51.100.1"), &trusted), ip("198.51.100.1"));
        assert_eq!(client_ip(ip("127.0.0.2"), Some("junk"), &trusted), ip("127.0.0.2"));
        assert_eq!(client_ip(ip("127.0.0.2"), None, &trusted), ip("127.0.0.2"));
        assert_eq!(client_ip(ip("::ffff:198.51.100.7"), None, &trusted), ip("198.51.100.7"));
    }
}
