//! PoP identifiers and the PoP table a map carries.
//!
//! A PoP id is what operators type in configs and what analysts see in reports, so it is kept
//! short and plain: lowercase ASCII letters, digits and `-`, 1 to 32 characters, starting with a
//! letter. Maps refer to PoPs by their position in the map's PoP table ([`PopIndex`]) so that
//! the hot path compares small integers, never strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A validated PoP id such as `ams` or `us-east-1`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PopId(String);

/// Why a string is not a PoP id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid PoP id {0:?}: want 1-32 of [a-z0-9-], starting with a letter")]
pub struct InvalidPopId(pub String);

impl PopId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PopId {
    type Err = InvalidPopId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=32).contains(&s.len())
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(PopId(s.to_owned()))
        } else {
            Err(InvalidPopId(s.to_owned()))
        }
    }
}

impl TryFrom<String> for PopId {
    type Error = InvalidPopId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PopId> for String {
    fn from(p: PopId) -> String {
        p.0
    }
}

impl fmt::Display for PopId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Position of a PoP in a [`PopTable`]. Valid only together with the table it came from.
pub type PopIndex = u16;

/// One PoP as a map knows it: its id and where it is (for GeoIP distance fallback).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopInfo {
    /// The PoP id.
    pub id: PopId,
    /// Latitude in degrees, if known; PoPs without coordinates never win a GeoIP fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    /// Longitude in degrees, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
}

/// The ordered set of PoPs a map (or a server config) knows. Ids are unique.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PopTable {
    pops: Vec<PopInfo>,
}

/// Why a list of PoPs cannot form a table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PopTableError {
    /// The same id appears twice.
    #[error("PoP '{0}' is listed twice")]
    Duplicate(PopId),
    /// More PoPs than a [`PopIndex`] can count.
    #[error("too many PoPs ({0}); at most 65535")]
    TooMany(usize),
    /// An id is not a PoP id.
    #[error(transparent)]
    Invalid(#[from] InvalidPopId),
}

impl PopTable {
    /// Builds a table, refusing duplicate ids.
    pub fn new(pops: Vec<PopInfo>) -> Result<Self, PopTableError> {
        if pops.len() > PopIndex::MAX as usize {
            return Err(PopTableError::TooMany(pops.len()));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &pops {
            if !seen.insert(&p.id) {
                return Err(PopTableError::Duplicate(p.id.clone()));
            }
        }
        Ok(PopTable { pops })
    }

    /// A table of PoPs without coordinates, from their ids in order.
    pub fn from_ids(ids: &[&str]) -> Result<Self, PopTableError> {
        let mut pops = Vec::with_capacity(ids.len());
        for id in ids {
            let id: PopId = id.parse()?;
            pops.push(PopInfo {
                id,
                lat: None,
                lon: None,
            });
        }
        PopTable::new(pops)
    }

    /// Index of a PoP id, if the table has it.
    pub fn index(&self, id: &str) -> Option<PopIndex> {
        self.pops
            .iter()
            .position(|p| p.id.as_str() == id)
            .map(|i| i as PopIndex)
    }

    /// The PoP at an index. Panics on an index from another table that is out of range.
    pub fn get(&self, idx: PopIndex) -> &PopInfo {
        &self.pops[idx as usize]
    }

    /// All PoPs in table order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &PopInfo> {
        self.pops.iter()
    }

    /// Number of PoPs.
    pub fn len(&self) -> usize {
        self.pops.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.pops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pop_ids() {
        assert!("ams".parse::<PopId>().is_ok());
        assert!("us-east-1".parse::<PopId>().is_ok());
        for bad in ["", "AMS", "1ams", "a b", "ams.", &"a".repeat(33)] {
            assert!(bad.parse::<PopId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn duplicate_pops_refused() {
        let p = |id: &str| PopInfo {
            id: id.parse().unwrap(),
            lat: None,
            lon: None,
        };
        assert_eq!(
            PopTable::new(vec![p("ams"), p("iad"), p("ams")]),
            Err(PopTableError::Duplicate("ams".parse().unwrap()))
        );
        let t = PopTable::new(vec![p("ams"), p("iad")]).unwrap();
        assert_eq!(t.index("iad"), Some(1));
        assert_eq!(t.index("sin"), None);
    }
}
