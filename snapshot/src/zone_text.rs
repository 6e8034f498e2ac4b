//! One internal zone's text as the presenter publishes it, written and read in one place: the
//! presenter renders it, and a server that applies a delta ([`crate::delta`]) renders it
//! again, so the two must give the same bytes from the same parts.
//!
//! The layout: `$ORIGIN`, the SOA (its serial the snapshot version modulo 2^32), the
//! presenter's apex lines, [`ROBOTS_MARK`], one line per robot record (sorted), [`HUMANS_MARK`],
//! `$ORIGIN` and `$TTL` again, then the human zone text as published.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Marks the start of the robot records in a zone text (the guard counts them).
pub const ROBOTS_MARK: &str = "; geodns:robots";
/// Marks the start of the human records.
pub const HUMANS_MARK: &str = "; geodns:humans";

/// The presenter's SOA fields other than the serial (names normalised: lowercase, no final
/// dot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Soa {
    /// TTL of the SOA, the apex NS, robot records, and the human text's `$TTL`.
    pub ttl: u32,
    /// SOA MNAME.
    pub primary: String,
    /// SOA RNAME.
    pub hostmaster: String,
    /// SOA MINIMUM: the negative-caching TTL.
    pub negative_ttl: u32,
}

/// One zone's content, everything but the serial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneBody {
    /// Apex, normalised.
    pub origin: String,
    /// The SOA's fields.
    pub soa: Soa,
    /// The presenter's apex records (NS), one line each.
    pub apex: Vec<String>,
    /// The robot records, one line each.
    pub robot_lines: BTreeSet<String>,
    /// The human zone text, as published (it reads back ending in a newline, or empty).
    pub human: String,
}

impl ZoneBody {
    /// The zone text at `version` (the SOA serial, modulo 2^32).
    pub fn render(&self, version: u64) -> String {
        let origin = &self.origin;
        let soa = &self.soa;
        let robots: usize = self.robot_lines.iter().map(|l| l.len() + 1).sum();
        let mut text = String::with_capacity(256 + robots + self.human.len());
        text.push_str(&format!(
            "$ORIGIN {origin}.\n{origin}. {ttl} IN SOA {primary}. {hostmaster}. {serial} 3600 600 604800 {neg}\n",
            ttl = soa.ttl,
            primary = soa.primary,
            hostmaster = soa.hostmaster,
            serial = version as u32,
            neg = soa.negative_ttl,
        ));
        for l in &self.apex {
            text.push_str(l);
            text.push('\n');
        }
        text.push_str(ROBOTS_MARK);
        text.push('\n');
        for l in &self.robot_lines {
            text.push_str(l);
            text.push('\n');
        }
        text.push_str(HUMANS_MARK);
        text.push('\n');
        text.push_str(&format!("$ORIGIN {origin}.\n$TTL {}\n", soa.ttl));
        text.push_str(&self.human);
        if !self.human.is_empty() && !self.human.ends_with('\n') {
            text.push('\n');
        }
        text
    }

    /// The parts of a zone text [`ZoneBody::render`] wrote, or `None` if `text` is not in
    /// that layout.
    pub fn parse(origin: &str, text: &str) -> Option<ZoneBody> {
        let mut lines = text.lines();
        if lines.next()? != format!("$ORIGIN {origin}.") {
            return None;
        }
        let soa: Vec<&str> = lines.next()?.split_whitespace().collect();
        let [owner, ttl, "IN", "SOA", primary, hostmaster, _serial, "3600", "600", "604800", neg] =
            soa[..]
        else {
            return None;
        };
        if owner != format!("{origin}.") {
            return None;
        }
        let soa = Soa {
            ttl: ttl.parse().ok()?,
            primary: primary.strip_suffix('.')?.to_owned(),
            hostmaster: hostmaster.strip_suffix('.')?.to_owned(),
            negative_ttl: neg.parse().ok()?,
        };
        let apex: Vec<String> = lines
            .by_ref()
            .take_while(|l| *l != ROBOTS_MARK)
            .map(str::to_owned)
            .collect();
        let robot_lines = lines
            .by_ref()
            .take_while(|l| *l != HUMANS_MARK)
            .map(str::to_owned)
            .collect();
        lines.next()?;
        lines.next()?;
        let mut human = String::new();
        for l in lines {
            human.push_str(l);
            human.push('\n');
        }
        Some(ZoneBody {
            origin: origin.to_owned(),
            soa,
            apex,
            robot_lines,
            human,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_zone_parses_back_to_its_parts() {
        let body = ZoneBody {
            origin: "internal.example".into(),
            soa: Soa {
                ttl: 60,
                primary: "ns1.internal.example".into(),
                hostmaster: "hostmaster.example".into(),
                negative_ttl: 30,
            },
            apex: vec!["internal.example. 60 IN NS ns1.internal.example.".into()],
            robot_lines: ["a.prn1 60 IN A 10.0.0.1", "b.prn1 60 IN A 10.0.0.2"]
                .map(String::from)
                .into(),
            human: "www 300 IN CNAME a.prn1\n".into(),
        };
        let text = body.render(7);
        assert!(text.contains(" 7 3600 600 604800 30\n"), "{text}");
        assert_eq!(
            ZoneBody::parse("internal.example", &text),
            Some(body.clone())
        );
        assert_eq!(ZoneBody::parse("other.example", &text), None);
        let no_human = ZoneBody {
            human: String::new(),
            ..body
        };
        let text = no_human.render(u64::from(u32::MAX) + 2);
        assert!(text.contains(" 1 3600 "), "{text}");
        assert_eq!(ZoneBody::parse("internal.example", &text), Some(no_human));
        assert_eq!(ZoneBody::parse("internal.example", "junk"), None);
    }
}
