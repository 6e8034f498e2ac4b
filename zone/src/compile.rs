//! The compiled zone: static records from RFC 1035 zone files and inline config lines,
//! compiled once into pre-encoded wire data, plus the names answered from the map (geo names)
//! and the status name.
//!
//! hickory-proto parses the zone text and encodes each RDATA (uncompressed, so it can be copied
//! into any response as is). The query path then never touches a record object: it finds a
//! node by its lowercased wire-form name and copies bytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use hickory_proto::rr::{Name, RData, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_proto::serialize::txt::Parser;

use crate::config;
use crate::rtype;
use crate::text::{refuse_includes, refuse_trailing};

/// Why a zone cannot be loaded. Displays with the zone and, where known, the file and line.
#[derive(Debug, thiserror::Error)]
#[error("zone '{zone}': {location}{problem}")]
pub struct ZoneError {
    /// The zone origin.
    pub zone: String,
    /// `file: line N: ` or `records[i]: `, or empty.
    pub location: String,
    /// What is wrong.
    pub problem: String,
}

/// The records of one type at one name, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rrset {
    /// Record type code.
    pub rtype: u16,
    /// TTL (the smallest of the records', per RFC 2181 5.2).
    pub ttl: u32,
    /// Each record's RDATA in wire form, names uncompressed.
    pub rdata: Vec<Box<[u8]>>,
}

/// Everything at one owner name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Static RRsets.
    pub rrsets: Vec<Rrset>,
    /// Answered from the map with this TTL (A and AAAA).
    pub geo_ttl: Option<u32>,
    /// Answers the status TXT record.
    pub status: bool,
    /// How many names with data (or the probe subzone's apex) are below this one: an empty
    /// non-terminal is kept exactly while this is not zero, so a change of a few records
    /// ([`Zone::patched`]) knows when to add or drop one without looking at the whole zone.
    pub(crate) below: u32,
}

impl Node {
    /// The RRset of a type, if any.
    pub fn rrset(&self, t: u16) -> Option<&Rrset> {
        self.rrsets.iter().find(|r| r.rtype == t)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rrsets.is_empty() && self.geo_ttl.is_none() && !self.status
    }
}

/// One compiled zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The origin in lowercased wire form.
    pub origin: Box<[u8]>,
    /// The origin as text, for logs.
    pub origin_text: String,
    /// All names with data, and empty non-terminals (present with no data, so they get
    /// NODATA rather than NXDOMAIN). A persistent map: a zone changed by a few records is a
    /// copy in O(1) that shares every other node ([`Zone::patched`]).
    pub nodes: imbl::HashMap<Box<[u8]>, Node>,
    /// The apex SOA RDATA, for negative answers.
    pub soa_rdata: Box<[u8]>,
    /// TTL of negative answers: min(SOA TTL, SOA MINIMUM) per RFC 2308.
    pub negative_ttl: u32,
    /// Serial from the SOA, for the status record.
    pub serial: u32,
    /// The probe subzone apex (lowercased wire form) and the TTL of probe answers.
    pub probe: Option<(Box<[u8]>, u32)>,
    /// Delegation points: names below the apex with NS records (lowercased wire form). At and
    /// below them the zone is not authoritative and answers with a referral.
    pub cuts: HashSet<Box<[u8]>>,
}

/// Lowercased, uncompressed wire form of a name.
pub fn wire_name(name: &Name) -> Box<[u8]> {
    let mut buf = Vec::with_capacity(64);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_name_encoding(NameEncoding::UncompressedLowercase);
    name.emit(&mut enc).expect("a parsed name encodes");
    buf.into_boxed_slice()
}

pub(crate) fn encode_rdata(data: &RData) -> Result<Box<[u8]>, String> {
    let mut buf = Vec::with_capacity(32);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    data.emit(&mut enc).map_err(|e| e.to_string())?;
    Ok(buf.into_boxed_slice())
}

/// The parent of a wire-form name (drop the first label); `None` for the root.
pub fn parent(wire: &[u8]) -> Option<&[u8]> {
    let len = *wire.first()? as usize;
    (len != 0).then(|| &wire[1 + len..])
}

impl Zone {
    /// Compiles a configured zone: its file (if any), its inline records, geo names and status.
    pub fn build(cfg: &config::Zone, index: usize) -> Result<Zone, ZoneError> {
        Zone::compile(cfg, index, None)
    }

    /// Compiles a zone from zone-file text alone, by the same rules as a configured zone: an
    /// internal zone from a snapshot, or a human zone file checked before it is published (so
    /// what `geodns publish` accepts is exactly what every server serves). `source` names the
    /// text in errors.
    ///
    /// Such text comes through ZooKeeper, written by whoever can write there: it may never
    /// make a server read a file. `$INCLUDE` is refused (an include of `/dev/zero` grew a
    /// server without bound; of a FIFO, it stalled the follower for good), whatever its case
    /// or indentation.
    pub fn from_text(origin: &str, text: &str, source: &str) -> Result<Zone, ZoneError> {
        if let Err((line, problem)) = refuse_includes(text) {
            return Err(ZoneError {
                zone: origin.to_owned(),
                location: format!("{source}: line {line}: "),
                problem,
            });
        }
        let cfg = config::Zone {
            origin: origin.to_owned(),
            file: None,
            records: Vec::new(),
            geo: Default::default(),
            status_name: String::new(),
            probe: None,
        };
        Zone::compile(&cfg, 0, Some((text, source)))
    }

    fn compile(
        cfg: &config::Zone,
        index: usize,
        text: Option<(&str, &str)>,
    ) -> Result<Zone, ZoneError> {
        let err = |location: String, problem: String| ZoneError {
            zone: cfg.origin.clone(),
            location,
            problem,
        };
        let origin = Name::from_ascii(&cfg.origin)
            .map(|mut n| {
                n.set_fqdn(true);
                n
            })
            .map_err(|e| err(format!("zones[{index}].origin: "), e.to_string()))?;
        let mut sets: BTreeMap<RrKey, RecordSet> = BTreeMap::new();
        if let Some(path) = &cfg.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| err(format!("{}: ", path.display()), e.to_string()))?;
            let parsed = parse_zone_text(&text, Some(path), &origin)
                .map_err(|(line, msg)| err(format!("{}: line {line}: ", path.display()), msg))?;
            sets.extend(parsed);
        }
        if let Some((text, source)) = text {
            let parsed = parse_zone_text(text, None, &origin)
                .map_err(|(line, msg)| err(format!("{source}: line {line}: "), msg))?;
            sets.extend(parsed);
        }
        for (i, line) in cfg.records.iter().enumerate() {
            let text = format!("$TTL 3600\n{line}\n");
            let parsed = parse_zone_text(&text, None, &origin).map_err(|(_, msg)| {
                err(
                    format!("zones[{index}].records[{i}]: "),
                    format!("{line:?}: {msg}"),
                )
            })?;
            for (k, v) in parsed {
                match sets.get_mut(&k) {
                    Some(existing) => {
                        for r in v.records_without_rrsigs() {
                            existing.insert(r.clone(), 0);
                        }
                    }
                    None => {
                        sets.insert(k, v);
                    }
                }
            }
        }

        let origin_wire = wire_name(&origin);
        let mut nodes: HashMap<Box<[u8]>, Node> = HashMap::new();
        for set in sets.values() {
            let name = set.name();
            if !origin.zone_of(name) {
                return Err(err(String::new(), format!("{name} is outside the zone")));
            }
            let records: Vec<_> = set.records_without_rrsigs().collect();
            if records.is_empty() {
                continue;
            }
            let ttl = records.iter().map(|r| r.ttl).min().unwrap_or(0);
            let rdata = records
                .iter()
                .map(|r| encode_rdata(&r.data))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(String::new(), format!("{name} {}: {e}", set.record_type())))?;
            nodes
                .entry(wire_name(name))
                .or_default()
                .rrsets
                .push(Rrset {
                    rtype: u16::from(set.record_type()),
                    ttl,
                    rdata,
                });
        }
        for (rel, g) in &cfg.geo {
            let name = relative_name(rel, &origin)
                .map_err(|e| err(format!("zones[{index}].geo.{rel}: "), e))?;
            let node = nodes.entry(wire_name(&name)).or_default();
            if let Some(t) = node
                .rrsets
                .iter()
                .find(|r| matches!(r.rtype, rtype::A | rtype::AAAA | rtype::CNAME))
            {
                return Err(err(
                    format!("zones[{index}].geo.{rel}: "),
                    format!(
                        "{name} also has static {} records",
                        RecordType::from(t.rtype)
                    ),
                ));
            }
            node.geo_ttl = Some(g.ttl);
        }
        if !cfg.status_name.is_empty() {
            let name = relative_name(&cfg.status_name, &origin)
                .map_err(|e| err(format!("zones[{index}].status_name: "), e))?;
            let node = nodes.entry(wire_name(&name)).or_default();
            if !node.rrsets.is_empty() || node.geo_ttl.is_some() {
                return Err(err(
                    format!("zones[{index}].status_name: "),
                    format!("{name} already has records"),
                ));
            }
            node.status = true;
        }

        let probe = match &cfg.probe {
            Some(p) => {
                let name = relative_name(&p.label, &origin)
                    .map_err(|e| err(format!("zones[{index}].probe.label: "), e))?;
                if name == origin {
                    return Err(err(
                        format!("zones[{index}].probe.label: "),
                        "the probe subzone cannot be the apex".into(),
                    ));
                }
                let wire = wire_name(&name);
                if nodes
                    .keys()
                    .any(|k| k.len() > wire.len() && k.ends_with(&wire))
                    || nodes.get(&wire).is_some_and(|n| !n.is_empty())
                {
                    return Err(err(
                        format!("zones[{index}].probe.label: "),
                        format!("{name} already has records"),
                    ));
                }
                nodes.entry(wire.clone()).or_default();
                Some((wire, p.ttl))
            }
            None => None,
        };

        // Checks that need the whole node.
        for (wire, node) in &nodes {
            if node.rrset(rtype::CNAME).is_some()
                && (node.rrsets.len() > 1 || node.geo_ttl.is_some())
            {
                return Err(err(
                    String::new(),
                    format!(
                        "{} has a CNAME and other data (RFC 1034 3.6.2)",
                        text_name(wire)
                    ),
                ));
            }
        }
        let apex = nodes.get(&origin_wire);
        let Some(soa) = apex.and_then(|n| n.rrset(rtype::SOA)) else {
            return Err(err(String::new(), "no SOA record at the apex".into()));
        };
        if soa.rdata.len() != 1 {
            return Err(err(String::new(), "more than one SOA record".into()));
        }
        if apex.and_then(|n| n.rrset(rtype::NS)).is_none() {
            return Err(err(String::new(), "no NS record at the apex".into()));
        }
        let soa_rdata = soa.rdata[0].clone();
        let soa_ttl = soa.ttl;
        // SOA RDATA ends with SERIAL REFRESH RETRY EXPIRE MINIMUM, 4 bytes each.
        let tail = &soa_rdata[soa_rdata.len() - 20..];
        let serial = u32::from_be_bytes(tail[0..4].try_into().unwrap());
        let minimum = u32::from_be_bytes(tail[16..20].try_into().unwrap());
        for r in nodes.values().flat_map(|n| n.rrsets.iter()) {
            if r.rtype == rtype::SOA && r.rdata[0] != soa_rdata {
                return Err(err(String::new(), "SOA record below the apex".into()));
            }
        }
        // An RRset must fit one answer over TCP (64 KiB): one that cannot would be answered
        // with TC set and no records even over TCP, so it is refused here, where it is
        // published, not served empty.
        for (wire, node) in &nodes {
            for r in &node.rrsets {
                let bytes = answer_bytes(wire.len(), &r.rdata);
                if bytes > MAX_ANSWER_BYTES {
                    return Err(err(
                        String::new(),
                        format!(
                            "{} {}: {} records need {bytes} bytes, more than one answer over TCP holds ({MAX_ANSWER_BYTES})",
                            text_name(wire),
                            hickory_proto::rr::RecordType::from(r.rtype),
                            r.rdata.len()
                        ),
                    ));
                }
            }
        }

        // Empty non-terminals between each name and the apex, and how many names each has
        // below it.
        let names: Vec<Box<[u8]>> = nodes.keys().cloned().collect();
        for name in names {
            let mut cur: &[u8] = &name;
            while let Some(p) = parent(cur) {
                if p.len() < origin_wire.len() {
                    break;
                }
                nodes.entry(p.into()).or_default().below += 1;
                cur = p;
            }
        }
        nodes.retain(|k, n| !n.is_empty() || k.len() >= origin_wire.len());

        let cuts: HashSet<Box<[u8]>> = nodes
            .iter()
            .filter(|(k, n)| **k != origin_wire && n.rrset(rtype::NS).is_some())
            .map(|(k, _)| k.clone())
            .collect();
        let zone = Zone {
            origin: origin_wire,
            origin_text: origin.to_ascii(),
            nodes: nodes.into_iter().collect(),
            soa_rdata,
            negative_ttl: soa_ttl.min(minimum),
            serial,
            probe,
            cuts,
        };
        // Names we answer from the map, the status record or the probe zone must not sit at or
        // below a delegation, or they would never be answered.
        for (wire, node) in &zone.nodes {
            if node.geo_ttl.is_some() || node.status {
                if let Some(cut) = zone.delegation(wire) {
                    let msg = format!(
                        "{} is at or below the delegation {}: it would never be answered",
                        text_name(wire),
                        text_name(cut)
                    );
                    return Err(err(String::new(), msg));
                }
            }
        }
        if let Some(cut) = zone
            .probe
            .as_ref()
            .and_then(|(wire, _)| zone.delegation(wire))
        {
            return Err(err(
                format!("zones[{index}].probe.label: "),
                format!(
                    "the probe subzone is at or below the delegation {}",
                    text_name(cut)
                ),
            ));
        }
        Ok(zone)
    }

    /// The delegation `qname` falls under, if any: the highest cut at or above it, as a suffix
    /// of `qname` (so the referral's owner is a pointer into the question).
    #[inline]
    pub fn delegation<'q>(&self, qname: &'q [u8]) -> Option<&'q [u8]> {
        if self.cuts.is_empty() {
            return None;
        }
        let mut found = None;
        let mut cur = Some(qname);
        while let Some(c) = cur.filter(|c| c.len() > self.origin.len()) {
            if self.cuts.contains(c) {
                found = Some(c);
            }
            cur = parent(c);
        }
        found
    }

    /// Whether `qname` (lowercased wire form) is at or below this zone's apex.
    #[inline]
    pub fn contains(&self, qname: &[u8]) -> bool {
        if qname.len() < self.origin.len() || !qname.ends_with(&self.origin) {
            return false;
        }
        // The suffix must start on a label boundary.
        let mut at = 0;
        let start = qname.len() - self.origin.len();
        while at < start {
            at += 1 + qname[at] as usize;
        }
        at == start
    }
}

fn relative_name(rel: &str, origin: &Name) -> Result<Name, String> {
    if rel == "@" {
        return Ok(origin.clone());
    }
    Name::parse(rel, Some(origin)).map_err(|e| format!("{rel:?}: {e}"))
}

/// Dotted text of a wire-form name, for messages.
pub fn text_name(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut at = 0;
    while at < wire.len() && wire[at] != 0 {
        let len = wire[at] as usize;
        out.push_str(&String::from_utf8_lossy(&wire[at + 1..at + 1 + len]));
        out.push('.');
        at += 1 + len;
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// The largest DNS message over TCP.
pub(crate) const MAX_ANSWER_BYTES: usize = 65_535;

/// The size of an answer that holds a whole RRset: the header, the question (`name_len` bytes
/// of name, type, class), an OPT record, and each record as a compressed owner, its fixed
/// fields and its RDATA.
pub(crate) fn answer_bytes(name_len: usize, rdata: &[Box<[u8]>]) -> usize {
    12 + name_len + 4 + 11 + rdata.iter().map(|r| 2 + 10 + r.len()).sum::<usize>()
}

/// Parses zone text; on error returns the first line at which parsing fails and the message.
/// hickory's parser does not report positions, so the line is found by parsing ever longer
/// prefixes of the text (only on the error path).
pub(crate) fn parse_zone_text(
    text: &str,
    path: Option<&Path>,
    origin: &Name,
) -> Result<BTreeMap<RrKey, RecordSet>, (usize, String)> {
    refuse_trailing(text, &origin.to_ascii())?;
    let parse = |t: &str| Parser::new(t, path.map(Path::to_path_buf), Some(origin.clone())).parse();
    match parse(text) {
        Ok((_, sets)) => Ok(sets),
        Err(e) => {
            let msg = e.to_string();
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            // Smallest prefix that fails with the same message.
            let (mut lo, mut hi) = (1, lines.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                match parse(&lines[..mid].concat()) {
                    Err(e2) if e2.to_string() == msg => hi = mid,
                    _ => lo = mid + 1,
                }
            }
            Err((hi, msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_rrset_is_refused_before_the_parser_sees_it() {
        let head = "$TTL 60\n@ IN SOA ns1 h 1 2 3 4 5\n@ IN NS ns1\nns1 IN A 10.0.0.53\n";
        // 100,000 addresses at one name, spelled three ways: refused in linear time, where the
        // parser's RRset insert would take seconds.
        let mut text = head.to_owned();
        for i in 0..100_000u32 {
            let owner = ["web", "WEB.example.com.", "Web"][i as usize % 3];
            text.push_str(&format!(
                "{owner} IN A 10.{}.{}.{}\n",
                i >> 16 & 255,
                i >> 8 & 255,
                i & 255
            ));
        }
        let t = std::time::Instant::now();
        let e = Zone::from_text("example.com", &text, "s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 4096 records in one RRset"), "{e}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
        // Many names with a few records each are fine.
        let mut many = head.to_owned();
        for i in 0..20_000u32 {
            many.push_str(&format!("h{i} IN A 10.1.{}.{}\n", i >> 8 & 255, i & 255));
        }
        assert!(Zone::from_text("example.com", &many, "s").is_ok());
    }

    #[test]
    fn an_rrset_that_cannot_fit_a_tcp_answer_is_refused() {
        let head = "$TTL 60\n@ IN SOA ns1 h 1 2 3 4 5\n@ IN NS ns1\nns1 IN A 10.0.0.53\n";
        let rrset = |n: u32| -> String {
            (0..n)
                .map(|i| format!("web IN AAAA 2001:db8::{:x}\n", i + 1))
                .collect()
        };
        // 28 bytes an AAAA record: 2,300 fit, 2,400 do not.
        assert!(Zone::from_text("example.com", &format!("{head}{}", rrset(2300)), "s").is_ok());
        let e = Zone::from_text("example.com", &format!("{head}{}", rrset(2400)), "s")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("web.example.com") && e.contains("2400 records need"),
            "{e}"
        );
    }

    #[test]
    fn fields_beyond_what_a_type_takes_are_refused() {
        for (text, line) in [
            ("www IN A 10.0.0.1 trailing garbage tokens\n", 1),
            (
                "a IN A 10.0.0.1\nb 60 IN MX 10 mail.example.com. extra ; comment\n",
                2,
            ),
            ("c IN CNAME d e\n", 1),
            ("s IN SRV ( 0 5 53\n  ns1 more )\n", 1),
        ] {
            let e = refuse_trailing(text, "example.com").unwrap_err();
            assert_eq!(e.0, line, "{text}: {e:?}");
        }
        for text in [
            "www IN A 10.0.0.1 ; a comment with words\n",
            "  IN A 10.0.0.2\n",
            "t IN TXT \"a b\" \"c\" d\n",
            "@ IN SOA ns1 h ( 1 2\n 3 4 5 )\n",
            "m 300 IN MX 10 mail\n",
            "q IN CAA 0 issue \"ca; example\"\n",
            "$TTL 60\n",
        ] {
            assert_eq!(refuse_trailing(text, "example.com"), Ok(()), "{text}");
        }
    }

    #[test]
    fn zone_text_from_zookeeper_never_reads_a_file() {
        for text in [
            "$INCLUDE /dev/zero\n",
            "a IN A 10.0.0.1\n  $include /etc/passwd example.com.\n",
            "a IN A 10.0.0.1\n\t$Include relative.zone\n",
        ] {
            let e = Zone::from_text("example.com", text, "snapshot").unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("$INCLUDE is refused"), "{msg}");
            let line = if text.starts_with('$') { 1 } else { 2 };
            assert!(msg.contains(&format!("snapshot: line {line}:")), "{msg}");
        }
        // Data that merely mentions it is data.
        let zone = "$TTL 60\n@ IN SOA ns1 h 1 2 3 4 5\n@ IN NS ns1\nns1 IN A 10.0.0.53\n";
        let text = format!("{zone}t IN TXT \"$INCLUDE x\"\n");
        if let Err(e) = Zone::from_text("example.com", &text, "snapshot") {
            panic!("{e}");
        }
    }

    fn zone(file_text: &str, records: &[&str]) -> Result<Zone, ZoneError> {
        let dir = std::env::temp_dir().join(format!(
            "geodns-zone-{}-{}",
            std::process::id(),
            file_text.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("z.zone");
        std::fs::write(&path, file_text).unwrap();
        let cfg = config::Zone {
            origin: "example.com".into(),
            file: Some(path),
            records: records.iter().map(|s| s.to_string()).collect(),
            geo: [("www".to_string(), config::GeoName { ttl: 30 })]
                .into_iter()
                .collect(),
            status_name: "_status".into(),
            probe: None,
        };
        Zone::build(&cfg, 0)
    }

    const BASE: &str =
        "$TTL 300\n@ IN SOA ns1 hostmaster 7 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n";

    #[test]
    fn compiles_nodes_and_empty_non_terminals() {
        let z = zone(
            &format!("{BASE}a.b.c IN TXT \"hi\"\n*.w IN A 192.0.2.9\n"),
            &["mx 60 IN MX 10 mail"],
        )
        .unwrap();
        let n = |s: &str| z.nodes.get(&wire_name(&Name::from_ascii(s).unwrap())[..]);
        assert!(n("a.b.c.example.com.").unwrap().rrset(rtype::TXT).is_some());
        assert!(
            n("b.c.example.com.").unwrap().rrsets.is_empty(),
            "empty non-terminal"
        );
        assert!(n("c.example.com.").is_some());
        assert_eq!(n("www.example.com.").unwrap().geo_ttl, Some(30));
        assert!(n("_status.example.com.").unwrap().status);
        assert_eq!(n("mx.example.com.").unwrap().rrset(15).unwrap().ttl, 60);
        assert_eq!((z.serial, z.negative_ttl), (7, 60));
        assert!(z.contains(&wire_name(&Name::from_ascii("x.example.com.").unwrap())));
        assert!(!z.contains(&wire_name(&Name::from_ascii("xexample.com.").unwrap())));
    }

    #[test]
    fn errors_name_the_place() {
        let e = zone(&format!("{BASE}bad IN A 192.0.2.300\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("z.zone: line 5: "), "{e}");
        let e = zone(BASE, &["x IN BOGUS 1"]).unwrap_err().to_string();
        assert!(
            e.starts_with("zone 'example.com': zones[0].records[0]: \"x IN BOGUS 1\""),
            "{e}"
        );
        let e = zone(&format!("{BASE}www IN A 192.0.2.1\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("also has static A records"), "{e}");
        let e = zone(&format!("{BASE}c IN CNAME x\nc IN TXT y\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("has a CNAME and other data"), "{e}");
        let e = zone("$TTL 300\nns1 IN A 192.0.2.53\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no SOA record at the apex"), "{e}");
    }
}
