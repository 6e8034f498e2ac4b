//! PoP health: which PoPs are drained from answers.
//!
//! One source is a health file (lines `<pop> up|down`, `#` comments; a PoP not listed is up),
//! written by whatever runs the health checks (`geodns announce` can). The other is the PoP
//! health `geodns announce` publishes in ZooKeeper (`crate::internal::follow_health`); the
//! snapshot drains a PoP if either says so. An unknown PoP id in the file is an error, so a typo does not silently
//! leave a broken PoP in service.

use std::collections::BTreeSet;
use std::path::Path;

use geomap::PopId;

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

/// Parses health text; `known` lists the configured PoPs.
pub fn parse_health(
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
pub fn read_health(path: &Path, known: &dyn Fn(&PopId) -> bool) -> Result<DownSet, HealthError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| HealthError {
        file: file.clone(),
        line: 0,
        problem: e.to_string(),
    })?;
    parse_health(&file, &text, known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_states_and_rejects_unknown_pops() {
        let known = |p: &PopId| ["ams", "iad"].contains(&p.as_str());
        let d = parse_health("h", "# drained for maintenance\nams down\niad up\n", &known).unwrap();
        assert_eq!(d.iter().map(|p| p.as_str()).collect::<Vec<_>>(), ["ams"]);
        assert_eq!(
            parse_health("h", "sin down", &known)
                .unwrap_err()
                .to_string(),
            "h:1: pop 'sin' is not configured"
        );
        assert_eq!(
            parse_health("h", "\nams sideways", &known)
                .unwrap_err()
                .to_string(),
            "h:2: state \"sideways\": want up or down"
        );
    }
}
