//! The presenter's counters, rendered for Prometheus.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use geodns_daemon::prometheus::{Kind, Text};

/// The presenter's counters, rendered for Prometheus.
#[derive(Default)]
pub struct Metrics {
    pub(crate) leader: AtomicU64,
    pub(crate) version: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    pub(crate) held: AtomicU64,
    pub(crate) robot_records: AtomicU64,
    pub(crate) publications: AtomicU64,
    pub(crate) registrations: AtomicU64,
    pub(crate) squatters: AtomicU64,
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let rows: [(&str, Kind, &str, &AtomicU64); 8] = [
            (
                "geodns_presenter_leader",
                Kind::Gauge,
                "1 while this presenter is the one publishing.",
                &self.leader,
            ),
            (
                "geodns_presenter_published_version",
                Kind::Gauge,
                "Version of the last snapshot this presenter published or found.",
                &self.version,
            ),
            (
                "geodns_presenter_conflicts",
                Kind::Gauge,
                "Records left out by the conflict policy in the last reconciliation.",
                &self.conflicts,
            ),
            (
                "geodns_presenter_held",
                Kind::Gauge,
                "1 while a snapshot is held back by the drop guard or because it does not compile.",
                &self.held,
            ),
            (
                "geodns_presenter_robot_records",
                Kind::Gauge,
                "Robot records in the last published snapshot.",
                &self.robot_records,
            ),
            (
                "geodns_presenter_publications_total",
                Kind::Counter,
                "Snapshots published by this presenter.",
                &self.publications,
            ),
            (
                "geodns_presenter_registrations",
                Kind::Gauge,
                "Registrations seen (live and in their grace period).",
                &self.registrations,
            ),
            (
                "geodns_presenter_lock_squatters",
                Kind::Gauge,
                "Nodes in the presenters' lock directory no presenter session owns (persistent ones): they keep every presenter waiting until removed (geodns presenter --remove-squatters).",
                &self.squatters,
            ),
        ];
        let mut t = Text::new();
        for (name, kind, help, v) in rows {
            t.single(name, kind, help, v.load(Relaxed));
        }
        t.finish()
    }
}
