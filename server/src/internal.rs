//! Internal zones: a snapshot the presenter published, compiled with the same loader as
//! configured zones ([`Zone::from_text`]). A snapshot that does not compile is refused whole;
//! [`crate::zookeeper`] follows the snapshots and swaps each good one in.

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
            zones,
        })
    }

    /// Fields for the status record: which snapshot this server has.
    pub fn status_fields(&self) -> Vec<String> {
        match (&self.version, &self.created_at) {
            (Some(v), Some(t)) => vec![
                format!("internal-snapshot={v}"),
                format!("internal-created={t}"),
            ],
            _ => Vec::new(),
        }
    }
}
