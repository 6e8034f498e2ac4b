//! Internal zones: a snapshot the presenter published, compiled with the same loader as
//! configured zones ([`Zone::from_text`]). A snapshot that does not compile is refused whole;
//! [`crate::zookeeper`] follows the snapshots and swaps each good one in.
//!
//! A version taken as deltas ([`Internal::patched`]) changes each compiled zone in proportion
//! to the change ([`geodns_snapshot::compiled`], as the presenter's check does). The result is
//! a new `Internal`, swapped in whole like any other.

use geodns_snapshot::compiled::Patchable;
use geodns_snapshot::delta::{Delta, Zones};
use geodns_snapshot::zone_text::ZoneBody;
use geodns_snapshot::Snapshot as Published;
use geodns_zone::Zone;

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
    patch: Vec<Patchable>,
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
            patch: vec![Patchable::default(); zones.len()],
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
                *base = Patchable::new(body_of(parts, zone));
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
        let mut zones = Vec::with_capacity(self.zones.len());
        let mut patch = Vec::with_capacity(self.zones.len());
        for (zone, base) in self.zones.iter().zip(&self.patch) {
            let body = body_of(parts, zone).expect("checked above");
            let changes: Vec<_> = deltas
                .iter()
                .flat_map(|d| &d.changes)
                .filter(|c| c.origin == body.origin)
                .collect();
            let source = format!("snapshot {version} zone {}", body.origin);
            let (next, next_base) = base
                .apply(zone, &changes, body, version, &source)
                .map_err(|e| e.to_string())?;
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
