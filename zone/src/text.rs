//! Zone text as it is written, checked before any parser sees it: no `$INCLUDE`, no fields
//! beyond what a record's type takes, no RRset larger than any answer can carry. Text that
//! comes through ZooKeeper (snapshots, human zones) is checked here, with lines numbered in the
//! text itself.

use std::collections::HashMap;

/// What is checked in zone text before any parser sees it, with lines numbered in `text`
/// itself: no `$INCLUDE` ([`refuse_includes`]) and no fields beyond what a record's type takes.
/// Readers of zone text that comes through ZooKeeper call this first (the presenter reads a
/// human zone before wrapping it in its apex records, so the line numbers are the human's).
/// `origin` is the zone's, for counting RRsets however their owners are spelled.
pub fn check_text(text: &str, origin: &str) -> Result<(), (usize, String)> {
    refuse_includes(text)?;
    refuse_trailing(text, origin)
}

/// Zone text that comes through ZooKeeper (snapshots, human zones) must never make a reader
/// read a file: `Err((line, problem))` for the first `$INCLUDE` control entry, in any case and
/// indentation. Every parser of such text calls this first ([`crate::Zone::from_text`], and the
/// presenter's reading of human zones).
pub fn refuse_includes(text: &str) -> Result<(), (usize, String)> {
    match include_line(text) {
        Some(line) => Err((line, INCLUDE_REFUSED.to_owned())),
        None => Ok(()),
    }
}

const INCLUDE_REFUSED: &str = "$INCLUDE is refused in zone text that comes through ZooKeeper (it would make every server read a file of its own)";

/// The first line (1-based) that is an `$INCLUDE` control entry, in any case and indentation.
fn include_line(text: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.len() >= 8 && l.as_bytes()[..8].eq_ignore_ascii_case(b"$INCLUDE")
        })
        .map(|i| i + 1)
}

/// RDATA fields of the types whose RDATA has a fixed number of fields.
const FIXED_FIELDS: &[(&str, usize)] = &[
    ("A", 1),
    ("AAAA", 1),
    ("CNAME", 1),
    ("NS", 1),
    ("PTR", 1),
    ("MX", 2),
    ("SRV", 4),
    ("CAA", 3),
];

/// The tokens of one logical record (parentheses joined, comments dropped, quoted strings one
/// token), with the line it starts on and whether it has an owner field.
fn records(text: &str) -> Vec<(usize, bool, Vec<String>)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, bool, Vec<String>)> = None;
    let mut depth = 0usize;
    for (i, line) in text.lines().enumerate() {
        if depth == 0 {
            if let Some(r) = current.take() {
                out.push(r);
            }
            let owner = !line.starts_with([' ', '\t']);
            current = Some((i + 1, owner, Vec::new()));
        }
        let Some((_, _, tokens)) = current.as_mut() else {
            continue;
        };
        let mut chars = line.chars().peekable();
        let mut token = String::new();
        let flush = |t: &mut String, tokens: &mut Vec<String>| {
            if !t.is_empty() {
                tokens.push(std::mem::take(t));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                ';' => break,
                '"' => {
                    token.push('"');
                    while let Some(q) = chars.next() {
                        token.push(q);
                        if q == '\\' {
                            if let Some(e) = chars.next() {
                                token.push(e);
                            }
                        } else if q == '"' {
                            break;
                        }
                    }
                    flush(&mut token, tokens);
                }
                '(' => {
                    flush(&mut token, tokens);
                    depth += 1;
                }
                ')' => {
                    flush(&mut token, tokens);
                    depth = depth.saturating_sub(1);
                }
                c if c.is_whitespace() => flush(&mut token, tokens),
                c => token.push(c),
            }
        }
        flush(&mut token, tokens);
    }
    out.extend(current);
    out
}

/// Refuses a record of a fixed-field type with more fields than its type takes: the parser
/// would drop the rest (`www IN A 10.0.0.1 trailing garbage` was served as plain A), so what
/// was written is not what is served.
pub(crate) fn refuse_trailing(text: &str, origin: &str) -> Result<(), (usize, String)> {
    let is_class = |t: &str| {
        ["IN", "CH", "HS", "CS"]
            .iter()
            .any(|c| t.eq_ignore_ascii_case(c))
    };
    let is_ttl = |t: &str| t.chars().next().is_some_and(|c| c.is_ascii_digit());
    // Records per (owner, type), counted before any parser runs: the parser's RRset insert
    // is quadratic, so an RRset no answer can carry is refused here, in linear time.
    let mut counts: HashMap<(String, String), usize> = HashMap::new();
    let mut origin = origin.trim_end_matches('.').to_ascii_lowercase() + ".";
    let mut last_owner = String::new();
    for (line, owner, tokens) in records(text) {
        if let Some(first) = tokens.first().filter(|t| t.starts_with('$')) {
            if first.eq_ignore_ascii_case("$ORIGIN") {
                if let Some(o) = tokens.get(1) {
                    origin = absolute(o, &origin);
                }
            }
            continue;
        }
        if owner {
            if let Some(o) = tokens.first() {
                last_owner = absolute(o, &origin);
            }
        }
        let mut rest = tokens.iter().skip(usize::from(owner));
        let Some(rtype) = rest.find(|t| !is_class(t) && !is_ttl(t)) else {
            continue;
        };
        let n = counts
            .entry((last_owner.clone(), rtype.to_ascii_uppercase()))
            .or_default();
        *n += 1;
        if *n > MAX_RRSET_RECORDS {
            return Err((
                line,
                format!(
                    "{} {}: more than {MAX_RRSET_RECORDS} records in one RRset (one answer over TCP holds about 4,000 A records)",
                    last_owner,
                    rtype.to_ascii_uppercase()
                ),
            ));
        }
        let Some(&(name, fields)) = FIXED_FIELDS
            .iter()
            .find(|(n, _)| rtype.eq_ignore_ascii_case(n))
        else {
            continue;
        };
        let rdata: Vec<&String> = rest.collect();
        if rdata.len() > fields {
            return Err((
                line,
                format!(
                    "{name} takes {fields} field{}, the record has {} (trailing {:?})",
                    if fields == 1 { "" } else { "s" },
                    rdata.len(),
                    rdata[fields..]
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ));
        }
    }
    Ok(())
}

/// Most records a text may hold in one RRset: more than any answer over TCP carries.
const MAX_RRSET_RECORDS: usize = 4096;

/// `name` made absolute against `origin`, lowercased: one spelling per owner for counting.
fn absolute(name: &str, origin: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n == "@" {
        origin.to_owned()
    } else if n.ends_with('.') {
        n
    } else {
        format!("{n}.{origin}")
    }
}
