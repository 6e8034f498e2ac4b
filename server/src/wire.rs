//! DNS wire format on the query path: a strict, allocation-free query parser and a response
//! writer that appends pre-encoded records to a reused buffer.
//!
//! Static record data is encoded once at load time by hickory-proto (see [`geodns_zone`]); this
//! module only frames it. Keeping the per-query work to slicing and copying is what lets the
//! server answer in a few microseconds; the strictness (RFC 6891 EDNS, RFC 7871 ECS validation)
//! is why the parser is ours rather than a general message decoder that accepts and normalises
//! what an authoritative server must reject.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record type codes (one list, with the zone compiler).
pub use geodns_zone::rtype;

/// Header flag bits (RFC 1035 4.1.1, RFC 4035 for CD), as a 16-bit word: the one place they
/// are spelled.
pub mod flag {
    /// Response.
    pub const QR: u16 = 0x8000;
    /// Opcode (4 bits).
    pub const OPCODE: u16 = 0x7800;
    /// Opcode's shift.
    pub const OPCODE_SHIFT: u16 = 11;
    /// Authoritative answer.
    pub const AA: u16 = 0x0400;
    /// Truncated.
    pub const TC: u16 = 0x0200;
    /// Recursion desired (echoed).
    pub const RD: u16 = 0x0100;
    /// Checking disabled (echoed).
    pub const CD: u16 = 0x0010;
    /// Response code (low 4 bits).
    pub const RCODE: u16 = 0x000f;
    /// What a response copies from the query: opcode, RD, CD.
    pub const ECHOED: u16 = OPCODE | RD | CD;
    /// DNSSEC OK, in the OPT record's TTL field (RFC 3225).
    pub const EDNS_DO: u32 = 0x8000;
}

/// Response codes.
pub mod rcode {
    /// No error.
    pub const NOERROR: u8 = 0;
    /// Format error.
    pub const FORMERR: u8 = 1;
    /// Server failure.
    pub const SERVFAIL: u8 = 2;
    /// Name does not exist.
    pub const NXDOMAIN: u8 = 3;
    /// Not implemented.
    pub const NOTIMP: u8 = 4;
    /// Refused.
    pub const REFUSED: u8 = 5;
    /// Bad EDNS version (extended: 16).
    pub const BADVERS: u16 = 16;
}

const EDNS_ECS: u16 = 8;
/// The COOKIE option (RFC 7873).
const EDNS_COOKIE: u16 = 10;
/// The NSID option (RFC 5001).
const EDNS_NSID: u16 = 3;
const HEADER_LEN: usize = 12;
/// The largest UDP payload we send, whatever the client advertises (the DNS flag day 2020 value,
/// which avoids IP fragmentation on nearly every path).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// An EDNS Client Subnet option from a query, validated per RFC 7871.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSubnet {
    /// The address with bits beyond the source prefix clear.
    pub addr: IpAddr,
    /// SOURCE PREFIX-LENGTH.
    pub source_prefix: u8,
}

/// A COOKIE option from a query (RFC 7873): the client cookie, and the server cookie it
/// returned, if any (8 to 32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cookie {
    /// The client cookie.
    pub client: [u8; 8],
    /// The server cookie, `server_len` bytes of it.
    pub server: [u8; 32],
    /// Bytes of `server` in use (0: the client has no server cookie yet).
    pub server_len: u8,
}

impl Cookie {
    /// The server cookie the client returned (empty if none).
    pub fn server(&self) -> &[u8] {
        &self.server[..usize::from(self.server_len)]
    }
}

/// The EDNS(0) part of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// Advertised UDP payload size.
    pub payload: u16,
    /// EDNS version.
    pub version: u8,
    /// DNSSEC OK bit (echoed).
    pub dnssec_ok: bool,
    /// Client subnet, if sent.
    pub ecs: Option<ClientSubnet>,
    /// The query asked for the server's NSID (RFC 5001).
    pub nsid: bool,
    /// The COOKIE option, if sent.
    pub cookie: Option<Cookie>,
}

/// A parsed query. Borrows the packet for the question bytes.
#[derive(Debug)]
pub struct Query<'a> {
    /// Message id.
    pub id: u16,
    /// Header flags as sent (opcode, RD, CD are echoed).
    pub flags: u16,
    /// The question section exactly as sent (name in original case, type, class).
    pub question: &'a [u8],
    /// The query name in wire form, lowercased; length `qname_len`.
    pub qname: [u8; 255],
    /// Length of the wire-form name in `qname`.
    pub qname_len: usize,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
    /// EDNS, if the query had an OPT record.
    pub edns: Option<Edns>,
}

impl Query<'_> {
    /// The lowercased wire-form query name.
    pub fn name(&self) -> &[u8] {
        &self.qname[..self.qname_len]
    }

    /// The opcode.
    pub fn opcode(&self) -> u8 {
        ((self.flags & flag::OPCODE) >> flag::OPCODE_SHIFT) as u8
    }
}

/// What to do with a packet that is not a well-formed query.
#[derive(Debug, PartialEq, Eq)]
pub enum Reject {
    /// Not worth an answer: too short to carry an id, or a response (QR set; answering those
    /// invites reflection loops).
    Drop,
    /// Answer with this rcode and no question (the question could not be parsed).
    Error {
        /// Message id.
        id: u16,
        /// Flags as sent.
        flags: u16,
        /// The response code.
        rcode: u8,
    },
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Skips a possibly compressed name starting at `at`; returns the offset after it.
fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *b.get(at)? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => at += 1 + len,
            0xc0 => return (at + 2 <= b.len()).then_some(at + 2),
            _ => return None,
        }
    }
}

/// Parses a query packet. Errors carry what the response should say.
pub fn parse_query(b: &[u8]) -> Result<Query<'_>, Reject> {
    if b.len() < HEADER_LEN {
        return Err(Reject::Drop);
    }
    let id = u16::from_be_bytes([b[0], b[1]]);
    let flags = u16::from_be_bytes([b[2], b[3]]);
    if flags & flag::QR != 0 {
        return Err(Reject::Drop);
    }
    let formerr = Reject::Error {
        id,
        flags,
        rcode: rcode::FORMERR,
    };
    let opcode = (flags & flag::OPCODE) >> flag::OPCODE_SHIFT;
    let (qd, an, ns, ar) = (
        be16(b, 4).unwrap(),
        be16(b, 6).unwrap(),
        be16(b, 8).unwrap(),
        be16(b, 10).unwrap(),
    );
    if opcode != 0 {
        // Nothing of a message with an unknown opcode is understood: echo the opcode only,
        // not RD or CD, whose meaning the opcode defines (ISC's `opcodeflg` check).
        return Err(Reject::Error {
            id,
            flags: flags & flag::OPCODE,
            rcode: rcode::NOTIMP,
        });
    }
    if qd != 1 || an != 0 || ns != 0 {
        return Err(formerr);
    }
    // Question name: no compression allowed (nothing precedes it to point at).
    let mut qname = [0u8; 255];
    let mut at = HEADER_LEN;
    let mut n = 0;
    loop {
        let Some(&len) = b.get(at) else {
            return Err(formerr);
        };
        if len & 0xc0 != 0 || n + 1 + len as usize > 255 {
            return Err(formerr);
        }
        let Some(label) = b.get(at + 1..at + 1 + len as usize) else {
            return Err(formerr);
        };
        qname[n] = len;
        for (d, s) in qname[n + 1..n + 1 + len as usize].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        n += 1 + len as usize;
        at += 1 + len as usize;
        if len == 0 {
            break;
        }
    }
    let (Some(qtype), Some(qclass)) = (be16(b, at), be16(b, at + 2)) else {
        return Err(formerr);
    };
    let question = &b[HEADER_LEN..at + 4];
    at += 4;

    let mut edns = None;
    for _ in 0..ar {
        let name_start = at;
        at = skip_name(b, at).ok_or(Reject::Error {
            id,
            flags,
            rcode: rcode::FORMERR,
        })?;
        let (Some(t), Some(class)) = (be16(b, at), be16(b, at + 2)) else {
            return Err(formerr);
        };
        let ttl = match b.get(at + 4..at + 8) {
            Some(t) => u32::from_be_bytes([t[0], t[1], t[2], t[3]]),
            None => return Err(formerr),
        };
        let Some(rdlen) = be16(b, at + 8) else {
            return Err(formerr);
        };
        let rdata_start = at + 10;
        let Some(rdata) = b.get(rdata_start..rdata_start + rdlen as usize) else {
            return Err(formerr);
        };
        at = rdata_start + rdlen as usize;
        if t != rtype::OPT {
            continue;
        }
        if edns.is_some() || at - rdlen as usize - 10 - name_start != 1 || b[name_start] != 0 {
            // A second OPT, or an OPT not owned by the root: RFC 6891 6.1.1.
            return Err(formerr);
        }
        edns = Some(parse_opt(class, ttl, rdata).ok_or(Reject::Error {
            id,
            flags,
            rcode: rcode::FORMERR,
        })?);
    }
    Ok(Query {
        id,
        flags,
        question,
        qname,
        qname_len: n,
        qtype,
        qclass,
        edns,
    })
}

fn parse_opt(payload: u16, ttl: u32, mut rdata: &[u8]) -> Option<Edns> {
    let mut e = Edns {
        payload,
        version: (ttl >> 16) as u8,
        dnssec_ok: ttl & flag::EDNS_DO != 0,
        ecs: None,
        nsid: false,
        cookie: None,
    };
    let mut seen_ecs = false;
    while !rdata.is_empty() {
        let code = be16(rdata, 0)?;
        let len = be16(rdata, 2)? as usize;
        let data = rdata.get(4..4 + len)?;
        rdata = &rdata[4 + len..];
        if code == EDNS_NSID {
            e.nsid = true;
        }
        if code == EDNS_COOKIE {
            // RFC 7873 5.2.2: a client cookie of 8 bytes, a server cookie of 8 to 32, one
            // option: anything else is malformed (FORMERR).
            if e.cookie.is_some() || !(len == 8 || (16..=40).contains(&len)) {
                return None;
            }
            let mut c = Cookie {
                client: [0; 8],
                server: [0; 32],
                server_len: (len - 8) as u8,
            };
            c.client.copy_from_slice(&data[..8]);
            c.server[..len - 8].copy_from_slice(&data[8..]);
            e.cookie = Some(c);
        }
        if code == EDNS_ECS && e.version == 0 {
            if seen_ecs {
                return None;
            }
            seen_ecs = true;
            e.ecs = Some(parse_ecs(data)?);
        }
    }
    Some(e)
}

/// RFC 7871 section 6: family 1 or 2, source prefix within the family, exactly
/// ceil(source/8) address octets, and no address bits set beyond the source prefix.
fn parse_ecs(d: &[u8]) -> Option<ClientSubnet> {
    let family = be16(d, 0)?;
    let source = *d.get(2)?;
    let _scope = *d.get(3)?;
    let addr = &d[4..];
    let width = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if source > width || addr.len() != (source as usize).div_ceil(8) {
        return None;
    }
    if source % 8 != 0 {
        let last = *addr.last()?;
        if last & (0xffu8 >> (source % 8)) != 0 {
            return None;
        }
    }
    let addr = if family == 1 {
        let mut o = [0u8; 4];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::V4(Ipv4Addr::from(o))
    } else {
        let mut o = [0u8; 16];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    Some(ClientSubnet {
        addr,
        source_prefix: source,
    })
}

/// Where a record's owner name comes from.
#[derive(Clone, Copy, Debug)]
pub enum Owner<'a> {
    /// The query name (a compression pointer to the question).
    Qname,
    /// The query name without its first `offset` bytes of wire form (a pointer into the
    /// question): used for the zone apex, whose name is a suffix of the query name.
    QnameSuffix(usize),
    /// An explicit uncompressed wire-form name.
    Name(&'a [u8]),
}

/// Which section a record goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Answer.
    Answer,
    /// Authority.
    Authority,
    /// Additional.
    Additional,
}

/// EDNS data for the response's OPT record.
#[derive(Clone, Copy, Debug)]
pub struct ResponseEdns {
    /// DNSSEC OK echoed.
    pub dnssec_ok: bool,
    /// The query's ECS with the scope to return.
    pub ecs: Option<(ClientSubnet, u8)>,
    /// The COOKIE option to return: the client cookie and a fresh server cookie.
    pub cookie: Option<[u8; 24]>,
}

/// Builds one response in a caller-owned buffer (reused across queries: no allocation once it
/// has grown to its working size).
pub struct ResponseWriter<'b> {
    buf: &'b mut Vec<u8>,
    counts: [u16; 3],
    question_end: usize,
}

impl<'b> ResponseWriter<'b> {
    /// Starts a response to `q`: header with QR and the given AA and rcode, and the question.
    pub fn new(buf: &'b mut Vec<u8>, q: &Query<'_>, aa: bool, rcode: u8) -> Self {
        buf.clear();
        let flags =
            flag::QR | (q.flags & flag::ECHOED) | if aa { flag::AA } else { 0 } | rcode as u16;
        buf.extend_from_slice(&q.id.to_be_bytes());
        buf.extend_from_slice(&flags.to_be_bytes());
        buf.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(q.question);
        let question_end = buf.len();
        ResponseWriter {
            buf,
            counts: [0; 3],
            question_end,
        }
    }

    /// A response with no question: for queries whose question could not be parsed.
    pub fn error(buf: &'b mut Vec<u8>, id: u16, flags: u16, rcode: u8) {
        buf.clear();
        let flags = flag::QR | (flags & flag::ECHOED) | rcode as u16;
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&flags.to_be_bytes());
        buf.extend_from_slice(&[0; 8]);
    }

    /// Sets the response code (low 4 bits in the header).
    pub fn set_rcode(&mut self, rcode: u8) {
        self.set_flags(|f| (f & !flag::RCODE) | (rcode as u16 & flag::RCODE));
    }

    fn set_flags(&mut self, f: impl FnOnce(u16) -> u16) {
        let now = u16::from_be_bytes([self.buf[2], self.buf[3]]);
        self.buf[2..4].copy_from_slice(&f(now).to_be_bytes());
    }

    /// Clears the AA bit (answers outside our authority).
    pub fn clear_aa(&mut self) {
        self.set_flags(|f| f & !flag::AA);
    }

    /// Records in the answer section so far.
    pub fn answer_count(&self) -> u16 {
        self.counts[0]
    }

    /// Appends a record (class IN) with pre-encoded RDATA.
    pub fn record(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rtype: u16,
        ttl: u32,
        rdata: &[u8],
    ) {
        self.record_in(section, owner, rtype, 1, ttl, rdata)
    }

    /// Appends a record of any class (CH for the server's identity names).
    pub fn record_in(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rtype: u16,
        class: u16,
        ttl: u32,
        rdata: &[u8],
    ) {
        match owner {
            Owner::Qname => self.buf.extend_from_slice(&[0xc0, HEADER_LEN as u8]),
            // The question starts at offset 12 and a name is at most 255 bytes, so the pointer
            // always fits in 14 bits.
            Owner::QnameSuffix(off) => self
                .buf
                .extend_from_slice(&(0xc000 | (HEADER_LEN + off) as u16).to_be_bytes()),
            Owner::Name(n) => self.buf.extend_from_slice(n),
        }
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        self.buf
            .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(rdata);
        self.counts[section as usize] += 1;
    }

    /// Finishes the message: OPT record if the query had EDNS, truncation to `max_len` (TC set,
    /// records dropped, OPT kept) and section counts. Returns whether it was truncated.
    /// `nsid` is the NSID to return when the query asked for it and one is configured.
    pub fn finish(
        mut self,
        edns: Option<ResponseEdns>,
        nsid: Option<&[u8]>,
        ext_rcode: u8,
        max_len: usize,
    ) -> bool {
        let nsid = nsid.filter(|_| edns.is_some());
        let nsid_len = nsid.map_or(0, |n| 4 + n.len());
        let ecs_len = edns
            .and_then(|e| e.ecs)
            .map_or(0, |(s, _)| 8 + (s.source_prefix as usize).div_ceil(8));
        let cookie_len = edns.and_then(|e| e.cookie).map_or(0, |c| 4 + c.len());
        let opt_len = edns.map_or(0, |_| 11 + ecs_len + nsid_len + cookie_len);
        let mut truncated = false;
        if self.buf.len() + opt_len > max_len {
            self.buf.truncate(self.question_end);
            self.set_flags(|f| f | flag::TC);
            truncated = true;
        } else {
            for (i, c) in self.counts.iter().enumerate() {
                self.buf[6 + 2 * i..8 + 2 * i].copy_from_slice(&c.to_be_bytes());
            }
        }
        if let Some(e) = edns {
            self.buf.push(0);
            self.buf.extend_from_slice(&rtype::OPT.to_be_bytes());
            self.buf.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
            let ttl = (ext_rcode as u32) << 24 | if e.dnssec_ok { flag::EDNS_DO } else { 0 };
            self.buf.extend_from_slice(&ttl.to_be_bytes());
            self.buf
                .extend_from_slice(&((ecs_len + nsid_len + cookie_len) as u16).to_be_bytes());
            match e.ecs {
                None => {}
                Some((s, scope)) => {
                    let n = (s.source_prefix as usize).div_ceil(8);
                    self.buf.extend_from_slice(&EDNS_ECS.to_be_bytes());
                    self.buf.extend_from_slice(&((4 + n) as u16).to_be_bytes());
                    let (family, octets): (u16, [u8; 16]) = match s.addr {
                        IpAddr::V4(a) => {
                            let mut o = [0; 16];
                            o[..4].copy_from_slice(&a.octets());
                            (1, o)
                        }
                        IpAddr::V6(a) => (2, a.octets()),
                    };
                    self.buf.extend_from_slice(&family.to_be_bytes());
                    self.buf.push(s.source_prefix);
                    self.buf.push(scope);
                    self.buf.extend_from_slice(&octets[..n]);
                }
            }
            if let Some(n) = nsid {
                self.buf.extend_from_slice(&EDNS_NSID.to_be_bytes());
                self.buf.extend_from_slice(&(n.len() as u16).to_be_bytes());
                self.buf.extend_from_slice(n);
            }
            if let Some(c) = e.cookie {
                self.buf.extend_from_slice(&EDNS_COOKIE.to_be_bytes());
                self.buf.extend_from_slice(&(c.len() as u16).to_be_bytes());
                self.buf.extend_from_slice(&c);
            }
            // The OPT record follows whatever additional records were kept.
            let additional = if truncated {
                1
            } else {
                self.counts[Section::Additional as usize] + 1
            };
            self.buf[10..12].copy_from_slice(&additional.to_be_bytes());
        }
        truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, opt: Option<&[u8]>) -> Vec<u8> {
        let mut b = vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            opt.is_some() as u8,
        ];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            b.push(l.len() as u8);
            b.extend_from_slice(l.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&[0, 1]);
        if let Some(o) = opt {
            b.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0]);
            b.extend_from_slice(&(o.len() as u16).to_be_bytes());
            b.extend_from_slice(o);
        }
        b
    }

    fn ecs(family: u16, source: u8, scope: u8, addr: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 8];
        o.extend_from_slice(&((4 + addr.len()) as u16).to_be_bytes());
        o.extend_from_slice(&family.to_be_bytes());
        o.extend_from_slice(&[source, scope]);
        o.extend_from_slice(addr);
        o
    }

    #[test]
    fn parses_name_lowercased_and_question_verbatim() {
        let p = query("WwW.Example.COM", 1, None);
        let q = parse_query(&p).unwrap();
        assert_eq!(q.name(), b"\x03www\x07example\x03com\x00");
        assert_eq!(&q.question[1..4], b"WwW");
        assert_eq!((q.qtype, q.qclass, q.edns), (1, 1, None));
    }

    #[test]
    fn ecs_validation() {
        let packet = query("a.b", 1, Some(&ecs(1, 20, 0, &[198, 51, 96])));
        let ok = parse_query(&packet).unwrap();
        assert_eq!(
            ok.edns.unwrap().ecs,
            Some(ClientSubnet {
                addr: "198.51.96.0".parse().unwrap(),
                source_prefix: 20
            })
        );
        let formerr = |o: Vec<u8>| parse_query(&query("a.b", 1, Some(&o))).unwrap_err();
        let want = Reject::Error {
            id: 0x1234,
            flags: 0x0100,
            rcode: rcode::FORMERR,
        };
        assert_eq!(
            formerr(ecs(1, 20, 0, &[198, 51, 97])),
            want,
            "bits beyond the prefix"
        );
        assert_eq!(formerr(ecs(1, 24, 0, &[198, 51])), want, "too few octets");
        assert_eq!(
            formerr(ecs(1, 16, 0, &[198, 51, 0])),
            want,
            "too many octets"
        );
        assert_eq!(
            formerr(ecs(1, 33, 0, &[1, 2, 3, 4, 5])),
            want,
            "prefix beyond family"
        );
        assert_eq!(formerr(ecs(3, 0, 0, &[])), want, "unknown family");
        let mut two = ecs(1, 0, 0, &[]);
        two.extend(ecs(1, 0, 0, &[]));
        assert_eq!(formerr(two), want, "two ECS options");
        // COOKIE (RFC 7873 5.2.2): 8 bytes, or 16 to 40; one option.
        let cookie = |len: usize| {
            let mut o = vec![0, 10];
            o.extend_from_slice(&(len as u16).to_be_bytes());
            o.extend(std::iter::repeat_n(7u8, len));
            o
        };
        for bad in [0, 5, 9, 15, 41] {
            assert_eq!(formerr(cookie(bad)), want, "a cookie of {bad} bytes");
        }
        let mut two = cookie(8);
        two.extend(cookie(8));
        assert_eq!(formerr(two), want, "two cookies");
        for good in [8, 16, 40] {
            let q = query("a.b", 1, Some(&cookie(good)));
            let c = parse_query(&q).unwrap().edns.unwrap().cookie.unwrap();
            assert_eq!(c.client, [7; 8]);
            assert_eq!(c.server().len(), good - 8);
        }
        assert_eq!(
            formerr(vec![0, 8, 0, 9]),
            want,
            "option runs past the record"
        );
        let packet = query("a.b", 1, Some(&ecs(2, 48, 0, &[0x20, 1, 0xd, 0xb8, 0, 1])));
        let v6 = parse_query(&packet).unwrap();
        assert_eq!(
            v6.edns.unwrap().ecs.unwrap().addr,
            "2001:db8:1::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn malformed_headers() {
        assert_eq!(parse_query(&[0; 5]).unwrap_err(), Reject::Drop);
        let mut resp = query("a.b", 1, None);
        resp[2] |= 0x80;
        assert_eq!(parse_query(&resp).unwrap_err(), Reject::Drop);
        let mut two = query("a.b", 1, None);
        two[5] = 2;
        assert!(matches!(
            parse_query(&two),
            Err(Reject::Error {
                rcode: rcode::FORMERR,
                ..
            })
        ));
        let mut pointer = query("a.b", 1, None);
        pointer[12] = 0xc0;
        assert!(matches!(
            parse_query(&pointer),
            Err(Reject::Error {
                rcode: rcode::FORMERR,
                ..
            })
        ));
        let truncated = &query("abc.example", 1, None)[..20];
        assert!(matches!(
            parse_query(truncated),
            Err(Reject::Error {
                rcode: rcode::FORMERR,
                ..
            })
        ));
        let mut notify = query("a.b", 1, None);
        // Opcode 15 with RD and CD set: NOTIMP, echoing the opcode and nothing else.
        notify[2] = 15 << 3 | 1;
        notify[3] = 0x10;
        assert!(matches!(
            parse_query(&notify),
            Err(Reject::Error {
                rcode: rcode::NOTIMP,
                flags,
                ..
            }) if flags == 15 << 11
        ));
    }

    #[test]
    fn truncation_keeps_opt_and_sets_tc() {
        let p = query("a.b", 1, Some(&[]));
        let q = parse_query(&p).unwrap();
        let mut buf = Vec::new();
        let mut w = ResponseWriter::new(&mut buf, &q, true, 0);
        for _ in 0..100 {
            w.record(Section::Answer, Owner::Qname, rtype::TXT, 60, &[10; 11]);
        }
        assert!(w.finish(
            Some(ResponseEdns {
                dnssec_ok: false,
                ecs: None,
                cookie: None,
            }),
            None,
            0,
            512
        ));
        assert!(buf.len() <= 512);
        assert_eq!(buf[2] & 0x02, 0x02, "TC");
        assert_eq!(&buf[6..12], &[0, 0, 0, 0, 0, 1]);
    }
}
