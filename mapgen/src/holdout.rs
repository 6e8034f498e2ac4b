//! The holdout check: how well a map does on beacon sessions it was not built from. Operators
//! have no ground truth; a share of sessions set aside and judged against the map is the figure
//! they (and mapgen's authors) tune the rules by.
//!
//! A session is held out by its hash ([`crate::logs::session_of`]: the client's address and
//! the report's 10-minute window, so it works whether a browser reuses one probe id across
//! PoPs or uses one per PoP), and all of its measurements go together. Each held-out session
//! is judged in each key space: the map's first PoP for the session's client /24 (as an ECS
//! query would be answered) and for its resolver (as a query without ECS) is compared with the
//! fastest PoP the session itself measured (the median, where it measured a PoP more than
//! once). A session that did not measure the map's first PoP cannot judge it and is counted
//! apart. Sessions are noisy (one sample per PoP), so the figure is below what the map truly
//! achieves; it is for comparing rules and runs on the same data, not an absolute.

use std::collections::BTreeMap;

use geomap::{KeySpace, Map, PopIndex, RowIndex};
use ipnet::IpNet;
use polars::prelude::*;
use serde::Serialize;

use crate::key;
use crate::logs::{LEVELS, RESOLVER_LEVELS};

/// Whether a session ([`crate::logs::session_of`], 48 bits of hash) is held out, for a share
/// from 0 to 1 (by its hash, so reruns agree).
pub fn held_out(session: u64, share: f64) -> bool {
    ((session >> 16) as f64) < share * f64::from(u32::MAX)
}

/// How the map did on the held-out sessions in one key space, for one derivation or all.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HoldoutScore {
    /// `client` or `resolver`.
    pub key_space: String,
    /// The derivation of the row that answered (`server fallback` where the map had none), or
    /// `all`.
    pub derivation: String,
    /// Sessions that measured the map's first PoP and at least one other.
    pub judged: u64,
    /// Sessions that did not measure the map's first PoP.
    pub not_judged: u64,
    /// Share of judged sessions whose measured fastest PoP is the map's first.
    pub first_is_best: f64,
    /// Share of judged sessions where the map's first PoP is within 5 ms of the fastest.
    pub within_5ms: f64,
    /// Mean ms lost against the measured fastest.
    pub mean_regret_ms: f64,
}

/// The holdout report.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HoldoutReport {
    /// The share of sessions held out.
    pub share: f64,
    /// Sessions held out.
    pub sessions: u64,
    /// Per key space: all derivations first, then each.
    pub scores: Vec<HoldoutScore>,
}

impl HoldoutReport {
    /// Judged sessions in all key spaces: none means the held-out sessions could judge
    /// nothing (each measured one PoP, or never the map's first), which is no result at all.
    pub fn judged(&self) -> u64 {
        self.scores
            .iter()
            .filter(|s| s.derivation == "all")
            .map(|s| s.judged)
            .sum()
    }
}

struct Session {
    client: u64,
    /// The resolver judged for the session: the one that asked most of its probes, the
    /// lowest on a tie (rows arrive in no fixed order, and a report must not change between
    /// two runs on the same logs).
    resolver: u64,
    resolvers: Vec<u64>,
    rtt: Vec<(PopIndex, f32)>,
}

#[derive(Default, Clone, Copy)]
struct Tally {
    judged: u64,
    not_judged: u64,
    best: u64,
    within: u64,
    regret: f64,
}

impl Tally {
    fn add(&mut self, regret: Option<f64>) {
        match regret {
            None => self.not_judged += 1,
            Some(r) => {
                self.judged += 1;
                self.best += u64::from(r <= 0.0);
                self.within += u64::from(r <= crate::ranking::AGREE_MS);
                self.regret += r;
            }
        }
    }

    fn score(&self, key_space: &str, derivation: &str) -> HoldoutScore {
        let n = self.judged.max(1) as f64;
        HoldoutScore {
            key_space: key_space.into(),
            derivation: derivation.into(),
            judged: self.judged,
            not_judged: self.not_judged,
            first_is_best: self.best as f64 / n,
            within_5ms: self.within as f64 / n,
            mean_regret_ms: self.regret / n,
        }
    }
}

/// Judges `map` on the held-out measurements (`pairing::Measurement` frames). `fallback`
/// gives the order the server falls back to where the map has no row (GeoIP, else default).
pub fn evaluate(
    map: &Map,
    frames: Vec<DataFrame>,
    share: f64,
    fallback: &dyn Fn(IpNet) -> Vec<PopIndex>,
) -> PolarsResult<HoldoutReport> {
    // Ordered, so tallies sum in the same order on every run.
    let mut sessions: BTreeMap<(u64, u64), Session> = BTreeMap::new();
    for df in frames {
        let session = df.column("session")?.u64()?;
        let client = df.column("client")?.u64()?;
        let resolver = df.column("resolver")?.u64()?;
        let pop = df.column("pop")?.u16()?;
        let rtt = df.column("rtt")?.f32()?;
        let rows = session
            .iter()
            .zip(client.iter())
            .zip(resolver.iter())
            .zip(pop.iter())
            .zip(rtt.iter());
        for ((((s, c), r), p), rtt) in rows {
            let (Some(s), Some(c), Some(r), Some(p)) = (s, c, r, p) else {
                continue;
            };
            let e = sessions.entry((s, c)).or_insert_with(|| Session {
                client: c,
                resolver: r,
                resolvers: Vec::new(),
                rtt: Vec::new(),
            });
            e.resolvers.push(r);
            if let Some(rtt) = rtt {
                e.rtt.push((p, rtt));
            }
        }
    }
    // One RTT per PoP: the median where a session measured a PoP more than once (retries,
    // several users behind one address in one window).
    for s in sessions.values_mut() {
        s.rtt
            .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut one: Vec<(PopIndex, f32)> = Vec::new();
        for chunk in s.rtt.chunk_by(|a, b| a.0 == b.0) {
            one.push(chunk[chunk.len() / 2]);
        }
        s.rtt = one;
        s.resolvers.sort_unstable();
        if let Some(most) = s
            .resolvers
            .chunk_by(|a, b| a == b)
            .max_by(|a, b| a.len().cmp(&b.len()).then(b[0].cmp(&a[0])))
        {
            s.resolver = most[0];
        }
        s.resolvers = Vec::new();
    }
    let rows = RowIndex::build(map);
    let mut report = HoldoutReport {
        share,
        sessions: sessions.len() as u64,
        scores: Vec::new(),
    };
    for (space, name, (v4, v6), of) in [
        (
            KeySpace::Client,
            "client",
            LEVELS[0],
            (|s: &Session| s.client) as fn(&Session) -> u64,
        ),
        (
            KeySpace::Resolver,
            "resolver",
            RESOLVER_LEVELS[0],
            |s: &Session| s.resolver,
        ),
    ] {
        let mut all = Tally::default();
        let mut by: Vec<(String, Tally)> = Vec::new();
        for s in sessions.values() {
            if s.rtt.len() < 2 {
                continue;
            }
            let net = key::to_net(of(s), v4, v6);
            let (first, how) = match rows.find(space, net.addr()).map(|i| &map.rows[i]) {
                Some(r) => (r.pops.first().copied(), r.derivation.to_string()),
                None => (fallback(net).first().copied(), "server fallback".to_owned()),
            };
            let best = s.rtt.iter().map(|x| x.1).fold(f32::INFINITY, f32::min);
            let regret = first
                .and_then(|f| s.rtt.iter().find(|x| x.0 == f))
                .map(|x| f64::from(x.1 - best));
            all.add(regret);
            match by.iter_mut().find(|(d, _)| *d == how) {
                Some((_, t)) => t.add(regret),
                None => {
                    let mut t = Tally::default();
                    t.add(regret);
                    by.push((how, t));
                }
            }
        }
        report.scores.push(all.score(name, "all"));
        by.sort_by(|a, b| b.1.judged.cmp(&a.1.judged).then_with(|| a.0.cmp(&b.0)));
        report
            .scores
            .extend(by.iter().map(|(d, t)| t.score(name, d)));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holding_out_takes_about_the_share_and_is_stable() {
        let t = 1_800_000_000_000_000i64;
        let n = (0..100_000u64)
            .filter(|&i| held_out(crate::logs::session_of(0xFFFF_FFFF_0000_0000 | i, t), 0.1))
            .count();
        assert!((9_000..11_000).contains(&n), "{n}");
        assert!(!held_out((1 << 48) - 1, 0.5) && held_out(0, 0.01));
        assert!(!held_out(0, 0.0));
    }
}
