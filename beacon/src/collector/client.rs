//! The client's address: the socket peer, or, when the peer is a trusted proxy, the nearest
//! address in `X-Forwarded-For` that is not itself a trusted proxy. A trusted proxy that
//! forwards no usable address gets its request refused: logging the proxy's own address would
//! put every such client in one subnet, the proxy's.

use std::net::IpAddr;

use ipnet::IpNet;

/// Resolves the client address. `forwarded_for` is the whole header, every line joined with
/// commas in order, if any. Walking the list from the right (the hop nearest us) and skipping
/// trusted proxies means a client cannot forge its address by sending its own
/// `X-Forwarded-For`: only what trusted proxies appended is believed. The error says why a
/// trusted proxy's request names no client.
pub fn client_ip(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> Result<IpAddr, String> {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Ok(peer);
    }
    let Some(header) = forwarded_for else {
        return Err(format!(
            "request from the trusted proxy {peer} has no X-Forwarded-For"
        ));
    };
    let mut last = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                let ip = ip.to_canonical();
                if !is_trusted(&ip) {
                    return Ok(ip);
                }
                last = ip;
            }
            // Garbage where a trusted proxy's entry should be: the chain cannot be believed.
            Err(_) => {
                return Err(format!(
                    "X-Forwarded-For from the trusted proxy {peer}: {:?} is not an address",
                    hop.trim()
                ))
            }
        }
    }
    // Every hop is a trusted proxy: the request started at one of them.
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusts_only_configured_proxies() {
        let trusted: Vec<IpNet> = vec![
            "127.0.0.2/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let client = |peer: &str, h: Option<&str>| client_ip(ip(peer), h, &trusted);
        // Untrusted peer: its header is ignored.
        assert_eq!(
            client("203.0.113.5", Some("198.51.100.1")),
            Ok(ip("203.0.113.5"))
        );
        assert_eq!(client("203.0.113.5", Some("junk")), Ok(ip("203.0.113.5")));
        // Trusted peer: the rightmost untrusted hop.
        assert_eq!(
            client("127.0.0.2", Some("198.51.100.1")),
            Ok(ip("198.51.100.1"))
        );
        assert_eq!(
            client("127.0.0.2", Some("6.6.6.6, 198.51.100.1, 10.1.2.3")),
            Ok(ip("198.51.100.1"))
        );
        // A forged leftmost entry does not win over what the proxy saw, nor does a forged
        // first header line (the lines arrive joined in order).
        assert_eq!(
            client("127.0.0.2", Some("1.1.1.1, 198.51.100.1")),
            Ok(ip("198.51.100.1"))
        );
        assert_eq!(
            client("127.0.0.2", Some("1.1.1.1,198.51.100.1")),
            Ok(ip("198.51.100.1"))
        );
        // Nothing usable from a trusted proxy: refused, not logged as the proxy.
        assert!(client("127.0.0.2", Some("junk"))
            .unwrap_err()
            .contains("\"junk\" is not an address"));
        assert!(client("127.0.0.2", Some("1.1.1.1, junk, 10.1.2.3")).is_err());
        assert!(client("127.0.0.2", Some("")).is_err());
        assert!(client("127.0.0.2", None)
            .unwrap_err()
            .contains("no X-Forwarded-For"));
        // A chain of trusted proxies only: the request began at the first of them.
        assert_eq!(
            client("127.0.0.2", Some("10.9.9.9, 10.1.2.3")),
            Ok(ip("10.9.9.9"))
        );
        assert_eq!(client("::ffff:198.51.100.7", None), Ok(ip("198.51.100.7")));
    }
}
