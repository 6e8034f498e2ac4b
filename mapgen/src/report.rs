//! What a mapgen run read, refused, measured and decided: JSON for machines, a summary for
//! people.

use std::fmt::Write as _;

use serde::Serialize;

/// Bad rows of one table and reason, with a few samples to look at.
#[derive(Debug, Clone, Serialize)]
pub struct BadRows {
    /// `dns_probe` or `rtt_report`.
    pub table: String,
    /// Why they were refused.
    pub reason: String,
    /// How many.
    pub rows: u64,
    /// Up to three of them, as text.
    pub samples: Vec<String>,
}

/// The run's report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// dns_probe rows in the window.
    pub dns_rows: u64,
    /// rtt_report rows in the window.
    pub rtt_rows: u64,
    /// Refused rows by table and reason.
    pub bad: Vec<BadRows>,
    /// Report rows paired with a probe query (each pairing counts).
    pub measurements: u64,
    /// Client subnets (finest level) with measurements.
    pub client_subnets: u64,
    /// Resolvers with measurements.
    pub resolvers: u64,
    /// Rows before compaction, by key space and derivation.
    pub rows_before_compaction: u64,
    /// Rows in the map written, by derivation.
    pub rows_by_derivation: Vec<(String, u64)>,
    /// Rows in the map, by key space.
    pub rows_by_key_space: Vec<(String, u64)>,
    /// Map rows whose first-ranked PoP is each PoP.
    pub first_choice: Vec<(String, u64)>,
    /// Comparison with the previous map, if one was given.
    pub gate: Option<crate::gate::GateReport>,
    /// Safety-gate objections overridden with --force.
    pub forced: Vec<String>,
}

impl Report {
    /// Bad rows of all reasons in one table.
    pub fn bad_total(&self, table: &str) -> u64 {
        self.bad.iter().filter(|b| b.table == table).map(|b| b.rows).sum()
    }

    /// A summary for people.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "input       {} dns_probe rows, {} rtt_report rows", self.dns_rows, self.rtt_rows);
        let _ = writeln!(
            s,
            "refused     {} dns_probe rows, {} rtt_report rows",
            self.bad_total("dns_probe"),
            self.bad_total("rtt_report")
        );
        for b in &self.bad {
            let _ = writeln!(s, "  {:<10} {:<16} {:>8}  e.g. {}", b.table, b.reason, b.rows, b.samples.first().map_or("", |x| x));
        }
        let _ = writeln!(s, "measured    {} pairings; {} client subnets, {} resolvers", self.measurements, self.client_subnets, self.resolvers);
        let _ = writeln!(s, "rows        {} before compaction", self.rows_before_compaction);
        for (k, n) in &self.rows_by_key_space {
            let _ = writeln!(s, "  {k:<10} {n}");
        }
        for (d, n) in &self.rows_by_derivation {
            let _ = writeln!(s, "  {d:<10} {n}");
        }
        let first: Vec<String> = self.first_choice.iter().map(|(p, n)| format!("{p} {n}")).collect();
        let _ = writeln!(s, "first PoP   {}", first.join(", "));
        if let Some(g) = &self.gate {
            let _ = writeln!(
                s,
                "vs previous {:.1} % of measured traffic changes PoP ({} of {} samples); {} previously covered prefixes lost",
                g.moved_share * 100.0,
                g.moved_weight,
                g.total_weight,
                g.lost.len()
            );
            for l in g.lost.iter().take(5) {
                let _ = writeln!(s, "  lost      {l}");
            }
        }
        for f in &self.forced {
            let _ = writeln!(s, "FORCED      {f}");
        }
        s
    }
}
