//! Hand-written nets files: `prefix,pop[,pop...]` per line, like gdnsd's `nets`.
//!
//! Operators use them for overrides, and benchmarks use them to serve exactly the map the peer
//! servers serve. Blank lines and `#` comments are allowed. Every bad line is reported, not
//! only the first, each with its line number, so a long file is fixed in one pass.

use std::collections::HashMap;
use std::path::Path;

use ipnet::IpNet;

use crate::map::{Derivation, KeySpace, Map, MapMeta, MapRow};
use crate::pop::{PopId, PopIndex, PopInfo, PopTable};

/// One bad line of a nets file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {problem}")]
pub struct NetsError {
    /// The file, as given.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, naming the field and value.
    pub problem: String,
}

/// Parses nets text into map rows. PoPs are taken from `pops` when given (ids not in it are
/// errors); otherwise the table is made of the ids in order of first appearance. Each line is
/// added to every key space in `spaces`.
pub fn parse_nets(
    file: &str,
    text: &str,
    pops: Option<&PopTable>,
    spaces: &[KeySpace],
) -> Result<(PopTable, Vec<MapRow>), Vec<NetsError>> {
    let mut errors = Vec::new();
    let mut table: Vec<PopInfo> = pops
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    let mut index: HashMap<String, PopIndex> = table
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.to_string(), i as PopIndex))
        .collect();
    let mut seen: HashMap<IpNet, usize> = HashMap::new();
    let mut rows = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let mut err = |problem: String| {
            errors.push(NetsError {
                file: file.to_owned(),
                line: line_no,
                problem,
            })
        };
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split(',').map(str::trim);
        let prefix_text = fields.next().unwrap_or("");
        let prefix: IpNet = match prefix_text.parse() {
            Ok(p) => p,
            Err(_) => {
                err(format!("prefix '{prefix_text}': not a CIDR prefix"));
                continue;
            }
        };
        if prefix.trunc() != prefix {
            err(format!(
                "prefix '{prefix_text}': host bits set (did you mean {}?)",
                prefix.trunc()
            ));
            continue;
        }
        let mut ranked: Vec<PopIndex> = Vec::new();
        let mut ok = true;
        for id in fields {
            let pop: PopId = match id.parse() {
                Ok(p) => p,
                Err(e) => {
                    err(format!("pop: {e}"));
                    ok = false;
                    break;
                }
            };
            let idx = match index.get(pop.as_str()) {
                Some(&i) => i,
                None if pops.is_none() => {
                    let i = table.len() as PopIndex;
                    index.insert(pop.to_string(), i);
                    table.push(PopInfo {
                        id: pop.clone(),
                        lat: None,
                        lon: None,
                    });
                    i
                }
                None => {
                    err(format!("pop '{pop}': not a configured PoP"));
                    ok = false;
                    break;
                }
            };
            if ranked.contains(&idx) {
                err(format!("pop '{pop}': listed twice"));
                ok = false;
                break;
            }
            ranked.push(idx);
        }
        if !ok {
            continue;
        }
        if ranked.is_empty() {
            err(format!("prefix '{prefix_text}': no PoP given"));
            continue;
        }
        if let Some(first) = seen.insert(prefix, line_no) {
            err(format!(
                "prefix '{prefix_text}': already given on line {first}"
            ));
            continue;
        }
        for &space in spaces {
            rows.push(MapRow {
                key_space: space,
                prefix,
                rtt_ms: vec![None; ranked.len()],
                pops: ranked.clone(),
                samples: 0,
                derivation: Derivation::Static,
                own_share: Vec::new(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let table = PopTable::new(table).map_err(|e| {
        vec![NetsError {
            file: file.to_owned(),
            line: 0,
            problem: e.to_string(),
        }]
    })?;
    Ok((table, rows))
}

/// Reads a nets file into a whole map with the given generation id and creation time.
pub fn import_nets(
    path: &Path,
    pops: Option<&PopTable>,
    spaces: &[KeySpace],
    generation: String,
    created_at: String,
) -> Result<Map, Vec<NetsError>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![NetsError {
            file: name.clone(),
            line: 0,
            problem: e.to_string(),
        }]
    })?;
    let (pops, rows) = parse_nets(&name, &text, pops, spaces)?;
    Ok(Map {
        meta: MapMeta {
            generation,
            created_at,
            source_from: None,
            source_until: None,
            pops,
        },
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_every_bad_line() {
        let text = "# comment\n10.0.0.0/8,ams,iad\n\n10.1.0.0/16 , sin # east\n";
        let (pops, rows) = parse_nets("n.csv", text, None, &[KeySpace::Client]).unwrap();
        assert_eq!(
            pops.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["ams", "iad", "sin"]
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].pops, [0, 1]);
        assert_eq!(rows[1].pops, [2]);

        let bad = "10.0.0.300/8,ams\n10.0.0.1/8,ams\n10.0.0.0/8\n10.0.0.0/8,AMS\n1.0.0.0/8,ams,ams\n2.0.0.0/8,iad\n2.0.0.0/8,sin\n";
        let errs = parse_nets("n.csv", bad, None, &[KeySpace::Client]).unwrap_err();
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "n.csv:1: prefix '10.0.0.300/8': not a CIDR prefix",
                "n.csv:2: prefix '10.0.0.1/8': host bits set (did you mean 10.0.0.0/8?)",
                "n.csv:3: prefix '10.0.0.0/8': no PoP given",
                "n.csv:4: pop: invalid PoP id \"AMS\": want 1-32 of [a-z0-9-], starting with a letter",
                "n.csv:5: pop 'ams': listed twice",
                "n.csv:7: prefix '2.0.0.0/8': already given on line 6",
            ]
        );
    }
}
