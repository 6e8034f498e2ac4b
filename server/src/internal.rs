//! Internal zones: a snapshot the presenter published, compiled with the same loader as
//! configured zones ([`Zone::from_text`]). A snapshot that does not compile is refused whole;
//! [`crate::zookeeper`] follows the snapshots and swaps each good one in.
//!
//! A version taken as deltas ([`Internal::patched`]) recompiles only the names whose robot
//! records changed ([`Zone::patched`]), and a zone whose SOA, apex or human text changed
//! whole; every other zone is the same compiled zone with the new serial. The result is a new
//! `Internal`, swapped in whole like any other.

use std::collections::BTreeSet;
use std::sync::Arc;

use geodns_snapshot::delta::{Delta, Zones};
use geodns_snapshot::zone_text::ZoneBody;
use geodns_snapshot::Snapshot as Published;
use geodns_zone::{patch_line_owner, OwnerLines, Zone};

/// The internal zones in force.
#[derive(Default)]
pub struct Internal {
    /// The snapshot's version (`None`: no snapshot yet).
    pub version: Option<u64>,
    /// When the snapshot was made, RFC 3339.
    pub created_at: Option<String>,
    /// The zones, longest origin first.
    pub zones: Vec<Zone>,
    /// Deltas taken since the last whole snapshot (the status record's chain).
    pub chain: u64,
    /// Per zone (in `zones`' order): what patching it needs.
    patch: Vec<PatchBase>,
}

/// What [`Zone::patched`] needs of one zone besides the zone.
#[derive(Clone, Default)]
struct PatchBase {
    /// Every robot line is spelled as [`patch_line_owner`] takes it, so the lines at a name
    /// are found by their first field; otherwise the zone is compiled whole on each change.
    lines_ok: bool,
    /// The zone compiled without its robot records, once a delta needs it.
    head: Option<Arc<Zone>>,
}

impl Internal {
    /// Compiles a published snapshot. Every zone must compile and be one of `allowed` (the
    /// config's `[zookeeper] zones`, lowercase, no trailing dot); none may be at, above or below
    /// a configured zone (a forged snapshot with `www.example.com` must not take over a public
    /// name), nor appear twice.
    pub fn build(
        snap: &Published,
        configured: &[Zone],
        allowed: &[String],
    ) -> Result<Internal, String> {
        let mut zones = Vec::with_capacity(snap.zones.len());
        for z in &snap.zones {
            let origin = z.origin.trim_end_matches('.').to_ascii_lowercase();
            if !allowed.contains(&origin) {
                return Err(format!(
                    "snapshot {}: zone {origin} is not one of this server's internal zones ([zookeeper] zones = {allowed:?})",
                    snap.version
                ));
            }
            let source = format!("snapshot {} zone {}", snap.version, z.origin);
            let zone = Zone::from_text(&z.origin, &z.text, &source).map_err(|e| e.to_string())?;
            if let Some(c) = configured
                .iter()
                .find(|c| c.contains(&zone.origin) || zone.contains(&c.origin))
            {
                return Err(format!(
                    "snapshot {}: zone {} overlaps the configured zone {}",
                    snap.version, zone.origin_text, c.origin_text
                ));
            }
            zones.push(zone);
        }
        zones.sort_by(|a, b| {
            b.origin
                .len()
                .cmp(&a.origin.len())
                .then_with(|| a.origin.cmp(&b.origin))
        });
        if let Some(w) = zones.windows(2).find(|w| w[0].origin == w[1].origin) {
            return Err(format!(
                "snapshot {}: zone {} appears twice",
                snap.version, w[0].origin_text
            ));
        }
        Ok(Internal {
            version: Some(snap.version),
            created_at: Some(snap.created_at.clone()),
            patch: vec![PatchBase::default(); zones.len()],
            zones,
            chain: 0,
        })
    }

    /// [`Internal::build`], and with the snapshot's parts (when it is in the presenter's
    /// layout) ready for the deltas after it.
    pub fn whole(
        snap: &Published,
        parts: Option<&Zones>,
        configured: &[Zone],
        allowed: &[String],
    ) -> Result<Internal, String> {
        let mut internal = Internal::build(snap, configured, allowed)?;
        if let Some(parts) = parts {
            for (zone, base) in internal.zones.iter().zip(&mut internal.patch) {
                base.lines_ok = body_of(parts, zone).is_some_and(lines_ok);
            }
        }
        Ok(internal)
    }

    /// The internal zones after `deltas`, which lead from this version to `parts` (already
    /// applied and checked by the follower): each zone patched, or compiled whole where a
    /// patch cannot be exact. Costs time in proportion to the deltas for zones whose robot
    /// records alone changed.
    pub fn patched(
        &self,
        deltas: &[Delta],
        parts: &Zones,
        configured: &[Zone],
        allowed: &[String],
    ) -> Result<Internal, String> {
        let version = parts.version();
        let same_zones = parts.bodies().count() == self.zones.len()
            && self.zones.iter().all(|z| body_of(parts, z).is_some());
        if !same_zones {
            // Zones added or removed: every scope check again, on the whole snapshot.
            let mut whole =
                Internal::whole(&parts.to_snapshot(), Some(parts), configured, allowed)?;
            whole.chain = self.chain + deltas.len() as u64;
            return Ok(whole);
        }
        let serial = version as u32;
        let mut zones = Vec::with_capacity(self.zones.len());
        let mut patch = Vec::with_capacity(self.zones.len());
        for (zone, base) in self.zones.iter().zip(&self.patch) {
            let body = body_of(parts, zone).expect("checked above");
            let changes: Vec<_> = deltas
                .iter()
                .flat_map(|d| &d.changes)
                .filter(|c| c.origin == body.origin)
                .collect();
            let head_changed = changes
                .iter()
                .any(|c| c.soa.is_some() || c.apex.is_some() || c.human.is_some());
            let lines: BTreeSet<&str> = changes
                .iter()
                .flat_map(|c| c.removed.iter().chain(&c.added))
                .map(String::as_str)
                .collect();
            let owners: Option<BTreeSet<&str>> =
                lines.iter().map(|l| patch_line_owner(l)).collect();
            let source = format!("snapshot {version} zone {}", body.origin);
            let mut next_base = base.clone();
            let patched = match owners {
                Some(owners) if owners.is_empty() && !head_changed => {
                    Some(zone.with_serial(serial))
                }
                Some(owners) if base.lines_ok && !head_changed => {
                    let head = match &base.head {
                        Some(h) => h.clone(),
                        None => Arc::new(head_of(body, version)?),
                    };
                    next_base.head = Some(head.clone());
                    let owner_lines: Vec<OwnerLines> = owners
                        .iter()
                        .map(|o| OwnerLines {
                            owner: o,
                            lines: lines_at(body, o),
                        })
                        .collect();
                    zone.patched(&head, &owner_lines, serial, &source)
                        .map_err(|e| e.to_string())?
                }
                _ => None,
            };
            let next = match patched {
                Some(z) => z,
                None => {
                    next_base = PatchBase {
                        lines_ok: lines_ok(body),
                        head: None,
                    };
                    Zone::from_text(&body.origin, &body.render(version), &source)
                        .map_err(|e| e.to_string())?
                }
            };
            zones.push(next);
            patch.push(next_base);
        }
        Ok(Internal {
            version: Some(version),
            created_at: Some(parts.created_at().to_owned()),
            zones,
            chain: self.chain + deltas.len() as u64,
            patch,
        })
    }

    /// Fields for the status record: which snapshot this server has, and how many deltas it
    /// took since it last loaded one whole.
    pub fn status_fields(&self) -> Vec<String> {
        match (&self.version, &self.created_at) {
            (Some(v), Some(t)) => vec![
                format!("internal-snapshot={v}"),
                format!("internal-created={t}"),
                format!("internal-deltas={}", self.chain),
            ],
            _ => Vec::new(),
        }
    }
}

/// The parts of `zone` in `parts`.
fn body_of<'a>(parts: &'a Zones, zone: &Zone) -> Option<&'a ZoneBody> {
    let origin = zone.origin_text.trim_end_matches('.');
    parts
        .bodies()
        .find(|b| b.origin.eq_ignore_ascii_case(origin))
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
fn head_of(body: &ZoneBody, version: u64) -> Result<Zone, String> {
    let head = ZoneBody {
        origin: body.origin.clone(),
        soa: body.soa.clone(),
        apex: body.apex.clone(),
        robot_lines: BTreeSet::new(),
        human: body.human.clone(),
    };
    Zone::from_text(&body.origin, &head.render(version), "head").map_err(|e| e.to_string())
}
