//! The health file: which PoPs are drained from a server's answers, written by whatever runs
//! the health checks (`geodns announce` writes it with [`render`]) and read by the server
//! ([`read`]). The format, in one place: lines `<pop> up|down`, `#` comments; a PoP not listed
//! is up. An unknown PoP id is an error, so a typo does not silently leave a broken PoP in
//! service.
//!
//! The server drains a PoP if this file or the PoP health published in ZooKeeper
//! ([`crate::pophealth`]) says so.

use std::collections::BTreeSet;
use std::path::Path;

use geomap::PopId;

use crate::pophealth::PopState;

/// The PoPs that are down, by id (independent of any dataset's indices, so health survives a
/// config reload).
pub type DownSet = BTreeSet<PopId>;

/// Why a health file cannot be used; the last good health state stays in force.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {problem}")]
pub struct HealthError {
    /// The file.
    pub file: String,
    /// 1-based line (0: the whole file).
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// The file `geodns announce` writes for PoP `pop` in state `state`: draining and down both
/// drain the PoP from DNS answers.
pub fn render(pop: &str, state: PopState) -> String {
    let word = if state == PopState::Up { "up" } else { "down" };
    format!(
        "# written by geodns announce: {}\n{pop} {word}\n",
        state.as_str()
    )
}

/// Parses health text; `known` lists the configured PoPs.
pub fn parse(
    file: &str,
    text: &str,
    known: &dyn Fn(&PopId) -> bool,
) -> Result<DownSet, HealthError> {
    let mut down = DownSet::new();
    for (i, raw) in text.lines().enumerate() {
        let err = |problem: String| HealthError {
            file: file.to_owned(),
            line: i + 1,
            problem,
        };
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(id), Some(state), None) = (words.next(), words.next(), words.next()) else {
            return Err(err(format!("{line:?}: want '<pop> up' or '<pop> down'")));
        };
        let pop: PopId = id.parse().map_err(|e| err(format!("{e}")))?;
        if !known(&pop) {
            return Err(err(format!("pop '{pop}' is not configured")));
        }
        match state {
            "down" => {
                down.insert(pop);
            }
            "up" => {
                down.remove(&pop);
            }
            other => return Err(err(format!("state {other:?}: want up or down"))),
        }
    }
    Ok(down)
}

/// Reads a health file.
pub fn read(path: &Path, known: &dyn Fn(&PopId) -> bool) -> Result<DownSet, HealthError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| HealthError {
        file: file.clone(),
        line: 0,
        problem: e.to_string(),
    })?;
    parse(&file, &text, known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_announce_writes_is_what_a_server_reads() {
        let known = |p: &PopId| p.as_str() == "ams";
        for (state, drained) in [
            (PopState::Up, false),
            (PopState::Draining, true),
            (PopState::Down, true),
        ] {
            let d = parse("h", &render("ams", state), &known).unwrap();
            assert_eq!(
                d.contains(&"ams".parse::<PopId>().unwrap()),
                drained,
                "{state:?}"
            );
        }
    }

    #[test]
    fn parses_states_and_rejects_unknown_pops() {
        let known = |p: &PopId| ["ams", "iad"].contains(&p.as_str());
        let d = parse("h", "# drained for maintenance\nams down\niad up\n", &known).unwrap();
        assert_eq!(d.iter().map(|p| p.as_str()).collect::<Vec<_>>(), ["ams"]);
        assert_eq!(
            parse("h", "sin down", &known).unwrap_err().to_string(),
            "h:1: pop 'sin' is not configured"
        );
        assert_eq!(
            parse("h", "\nams sideways", &known)
                .unwrap_err()
                .to_string(),
            "h:2: state \"sideways\": want up or down"
        );
    }
}
