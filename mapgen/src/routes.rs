//! A routing-table prefix list: the aggregation level that follows networks rather than
//! arbitrary bit boundaries. A /20 or /16 can mix networks of different ISPs and cities; a
//! routed prefix is one network, so a thin /24 borrowing from it borrows from its neighbours in
//! the same network. Where a client is covered by a routed prefix, the routed prefix replaces
//! the fixed /20 and /16 levels for it.

use std::collections::HashMap;
use std::path::Path;

use ipnet::IpNet;

use crate::key;
use crate::logs::LEVELS;

/// Why a prefix list cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct RoutesError {
    /// The file.
    pub file: String,
    /// What is wrong (line and token, or the I/O error).
    pub problem: String,
}

/// Routed prefixes, with a lookup from client keys to the longest one covering them.
#[derive(Debug, Default)]
pub struct Routes {
    nets: Vec<IpNet>,
    by_len: HashMap<(bool, u8, u64), u32>,
}

impl Routes {
    /// Reads a prefix list: one prefix per line as its first field (so `birdc show route` or
    /// RIB dumps cut to their first column work), `#` comments and blank lines ignored.
    /// Prefixes more specific than the finest client level (/24, /48) cannot aggregate client
    /// subnets and are skipped.
    pub fn read(path: &Path) -> Result<Routes, RoutesError> {
        let err = |problem: String| RoutesError {
            file: path.display().to_string(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut nets = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let Some(token) = line
                .split('#')
                .next()
                .and_then(|l| l.split_whitespace().next())
            else {
                continue;
            };
            let net: IpNet = token.parse().map_err(|_| {
                err(format!(
                    "line {}: {token:?} is not a prefix (want e.g. 198.51.100.0/22)",
                    i + 1
                ))
            })?;
            nets.push(net.trunc());
        }
        Ok(Routes::new(nets))
    }

    /// The list from prefixes.
    pub fn new(mut nets: Vec<IpNet>) -> Routes {
        let (v4, v6) = LEVELS[0];
        nets.retain(|n| n.prefix_len() <= if matches!(n, IpNet::V4(_)) { v4 } else { v6 });
        nets.sort();
        nets.dedup();
        let mut by_len = HashMap::new();
        for (i, n) in nets.iter().enumerate() {
            let Some(k) = key::of_ip(n.addr()) else {
                continue;
            };
            let v4 = key::is_v4(k);
            let len = n.prefix_len();
            by_len.insert((v4, len, key::truncate(k, len, len)), i as u32);
        }
        Routes { nets, by_len }
    }

    /// How many prefixes.
    pub fn len(&self) -> usize {
        self.nets.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The prefix with this id.
    pub fn net(&self, id: u32) -> IpNet {
        self.nets[id as usize]
    }

    /// The id of the longest routed prefix covering a client key (at the finest level).
    pub fn covering(&self, client: u64) -> Option<u32> {
        let v4 = key::is_v4(client);
        let finest = if v4 { LEVELS[0].0 } else { LEVELS[0].1 };
        (0..=finest).rev().find_map(|len| {
            self.by_len
                .get(&(v4, len, key::truncate(client, len, len)))
                .copied()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_covering_prefix_wins_and_junk_names_the_line() {
        let r = Routes::new(
            ["10.0.0.0/8", "10.1.0.0/20", "10.1.2.0/25", "2001:db8::/32"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
        );
        assert_eq!(r.len(), 3, "the /25 cannot aggregate /24s");
        let id = |ip: &str| {
            r.covering(key::truncate(key::parse(ip).unwrap(), 24, 48))
                .map(|i| r.net(i).to_string())
        };
        assert_eq!(id("10.1.2.9").as_deref(), Some("10.1.0.0/20"));
        assert_eq!(id("10.200.0.1").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(id("192.0.2.1"), None);
        assert_eq!(id("2001:db8:5::1").as_deref(), Some("2001:db8::/32"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.txt");
        std::fs::write(&path, "# routes\n10.0.0.0/8 AS64500\n\nnot-a-prefix\n").unwrap();
        let e = Routes::read(&path).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "routes.txt: line 4: \"not-a-prefix\" is not a prefix (want e.g. 198.51.100.0/22)"
            ),
            "{e}"
        );
    }
}
