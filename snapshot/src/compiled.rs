//! An internal zone compiled, and kept compiled across deltas: the one place that decides how
//! a delta's changes to a zone become a change of its compiled form (issue 24). Servers use it
//! for the zones they serve, and the presenter for the check that every snapshot compiles
//! before it is published, so both spend time in proportion to the change, not to the zone.
//!
//! A zone whose robot records alone changed is patched ([`Zone::patched`]: only the names
//! whose records changed are compiled again, exactly as a full compile would give them); one
//! whose SOA, apex or human text changed, or whose robot lines are not all in the spelling a
//! patch takes, is compiled whole; one that did not change at all only takes the new serial.

use std::collections::BTreeSet;
use std::sync::Arc;

use geodns_zone::{patch_line_owner, OwnerLines, Zone, ZoneError};

use crate::delta::ZoneChange;
use crate::zone_text::ZoneBody;

/// What a compiled zone needs, besides itself, to take a change in proportion to it.
#[derive(Clone, Default)]
pub struct Patchable {
    /// Every robot line is spelled as [`patch_line_owner`] takes it, so the lines at a name
    /// are found by their first field; otherwise the zone is compiled whole on each change.
    lines_ok: bool,
    /// The zone compiled without its robot records, once a change needs it.
    head: Option<Arc<Zone>>,
}

impl Patchable {
    /// For a zone compiled from `body` (`None`: a zone not in the presenter's layout, always
    /// compiled whole).
    pub fn new(body: Option<&ZoneBody>) -> Patchable {
        Patchable {
            lines_ok: body.is_some_and(lines_ok),
            head: None,
        }
    }

    /// `zone` (compiled from the parts before `changes`) after them: `body` is the zone's
    /// parts at `version`, the changes' result. `source` names the version in errors.
    pub fn apply(
        &self,
        zone: &Zone,
        changes: &[&ZoneChange],
        body: &ZoneBody,
        version: u64,
        source: &str,
    ) -> Result<(Zone, Patchable), ZoneError> {
        let serial = version as u32;
        let head_changed = changes
            .iter()
            .any(|c| c.soa.is_some() || c.apex.is_some() || c.human.is_some());
        let lines: BTreeSet<&str> = changes
            .iter()
            .flat_map(|c| c.removed.iter().chain(&c.added))
            .map(String::as_str)
            .collect();
        let owners: Option<BTreeSet<&str>> = lines.iter().map(|l| patch_line_owner(l)).collect();
        let mut next = self.clone();
        let patched = match owners {
            Some(owners) if owners.is_empty() && !head_changed => Some(zone.with_serial(serial)),
            Some(owners) if self.lines_ok && !head_changed => {
                let head = match &self.head {
                    Some(h) => h.clone(),
                    None => Arc::new(head_of(body, version)?),
                };
                next.head = Some(head.clone());
                let owner_lines: Vec<OwnerLines> = owners
                    .iter()
                    .map(|o| OwnerLines {
                        owner: o,
                        lines: lines_at(body, o),
                    })
                    .collect();
                zone.patched(&head, &owner_lines, serial, source)?
            }
            _ => None,
        };
        match patched {
            Some(z) => Ok((z, next)),
            None => Ok((
                Zone::from_text(&body.origin, &body.render(version), source)?,
                Patchable::new(Some(body)),
            )),
        }
    }
}

/// Whether every robot line of `body` is one [`Zone::patched`] takes.
fn lines_ok(body: &ZoneBody) -> bool {
    body.robot_lines
        .iter()
        .all(|l| patch_line_owner(l).is_some())
}

/// The robot lines at `owner`: those whose first field it is ([`patch_line_owner`]).
fn lines_at<'a>(body: &'a ZoneBody, owner: &str) -> Vec<&'a str> {
    let prefix = format!("{owner} ");
    body.robot_lines
        .range(prefix.clone()..)
        .take_while(|l| l.starts_with(&prefix))
        .map(String::as_str)
        .collect()
}

/// The zone compiled without its robot records.
fn head_of(body: &ZoneBody, version: u64) -> Result<Zone, ZoneError> {
    let head = ZoneBody {
        origin: body.origin.clone(),
        soa: body.soa.clone(),
        apex: body.apex.clone(),
        robot_lines: BTreeSet::new(),
        human: body.human.clone(),
    };
    Zone::from_text(&body.origin, &head.render(version), "head")
}
