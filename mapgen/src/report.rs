//! What a mapgen run read, refused, measured and decided: JSON for machines, a summary for
//! people.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Bad rows of one table and reason, with a few samples to look at.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// How the client subnets' median RTTs to one PoP are distributed (client /24 or /48 level,
/// where the PoP is well measured: `--min-samples` samples, under half of them failures).
#[derive(Debug, Clone, Serialize)]
pub struct LatencyDistribution {
    /// The PoP id, or `best` for each subnet's fastest well-measured PoP.
    pub pop: String,
    /// Client subnets behind it.
    pub subnets: u64,
    /// Quantiles of the subnets' medians at 0, 5, 10, ..., 100 %, ms.
    pub quantiles_ms: Vec<f64>,
}

impl LatencyDistribution {
    /// The distribution of `values` (sorted here).
    pub fn of(pop: &str, mut values: Vec<f64>) -> LatencyDistribution {
        values.sort_by(f64::total_cmp);
        let quantiles_ms = if values.is_empty() {
            Vec::new()
        } else {
            (0..=20)
                .map(|i| values[((values.len() - 1) * i) / 20])
                .collect()
        };
        LatencyDistribution {
            pop: pop.into(),
            subnets: values.len() as u64,
            quantiles_ms,
        }
    }
}

/// What hierarchical pooling estimated from the data (`mapgen::pooling`): how noisy one
/// sample is, and how much client subnets of one group truly differ per PoP. Their ratio is
/// how many samples a subnet needs before its own data outweighs its neighbours'.
#[derive(Debug, Clone, Serialize)]
pub struct Pooling {
    /// Variance of one sample's log RTT around its subnet's typical one (pooling works in
    /// ratios: 0.04 is about 20 % of the RTT).
    pub noise_log_var: f64,
    /// Variance of subnets' true log RTT around their prior (model and neighbours), per PoP
    /// (map order).
    pub subnet_spread_log_var: Vec<f64>,
    /// Measured client subnets whose measurements contradict their GeoIP location so much that
    /// the model placed them at a PoP's location instead (GeoIP wrong about them).
    pub relocated_subnets: u64,
}

/// How many left-out map rows the report names.
pub const MAX_LEFT_OUT_SAMPLES: usize = 20;

/// How many client networks the catchment picture holds at most.
pub const MAX_CATCHMENT: usize = 20_000;

/// One client network in the catchment picture.
#[derive(Debug, Clone, Serialize)]
pub struct CatchmentPoint {
    /// Where GeoIP places it.
    pub lat: f64,
    /// Where GeoIP places it.
    pub lon: f64,
    /// Its first PoP.
    pub pop: String,
    /// Samples behind its row (0 for modeled rows).
    pub samples: u64,
}

/// The run's report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// dns_probe rows in the window.
    pub dns_rows: u64,
    /// rtt_report rows in the window.
    pub rtt_rows: u64,
    /// Log files left out (--skip-bad-files), with why.
    pub skipped_files: Vec<String>,
    /// Log files left out because they are byte-for-byte copies of another (`copy = original`).
    pub copied_files: Vec<String>,
    /// Spill files of runs that did not finish, removed at the start of this one (bytes).
    pub stale_spill_bytes_removed: u64,
    /// Refused rows by table and reason.
    pub bad: Vec<BadRows>,
    /// Valid rows outside the window asked for (`before_window`, `after_window`): not used,
    /// and not refused either.
    pub outside_window: Vec<BadRows>,
    /// Report rows paired with a probe query (each pairing counts).
    pub measurements: u64,
    /// Client subnets (finest level) with measurements.
    pub client_subnets: u64,
    /// Resolvers with measurements.
    pub resolvers: u64,
    /// Fixed client aggregates (/20, /16) left out because the subnets measured inside them
    /// disagree with their ranking (their thin subnets fall to GeoIP instead).
    pub incoherent_aggregates: u64,
    /// The oldest and newest report used (RFC 3339): the data window the map stands on.
    pub window: Option<(String, String)>,
    /// The spreads the pooling estimated from the data.
    pub pooling: Option<Pooling>,
    /// Where the map sends client networks: each located by GeoIP, with its first PoP (the
    /// catchment picture; at most [`MAX_CATCHMENT`] networks, the most sampled first).
    pub catchment: Vec<CatchmentPoint>,
    /// Each PoP's id and coordinates (for the picture).
    pub pops: Vec<(String, Option<f64>, Option<f64>)>,
    /// Each PoP's share of measured traffic (client subnets by samples) as first choice in
    /// this map: the catchment legend, the same figures as the gate's "after" column.
    pub traffic_share: Vec<(String, f64)>,
    /// Why the catchment picture is empty, when it is.
    pub catchment_missing: Option<String>,
    /// Rows before compaction, by key space and derivation.
    pub rows_before_compaction: u64,
    /// Rows mapgen made that break the map reader's rules ([`geomap::MapRow::problems`]):
    /// left out of the map, like invalid input rows.
    pub left_out_rows: u64,
    /// The first [`MAX_LEFT_OUT_SAMPLES`] of them: prefix, key space, column and problem.
    pub left_out_samples: Vec<String>,
    /// Rows in the map written, by derivation.
    pub rows_by_derivation: Vec<(String, u64)>,
    /// Rows in the map, by key space.
    pub rows_by_key_space: Vec<(String, u64)>,
    /// Map rows whose first-ranked PoP is each PoP.
    pub first_choice: Vec<(String, u64)>,
    /// Median RTT per client subnet: the fastest PoP's (`best`), then each PoP's.
    pub latency: Vec<LatencyDistribution>,
    /// The map judged on held-out sessions (`--holdout`).
    pub holdout: Option<crate::holdout::HoldoutReport>,
    /// Comparison with the previous map, if one was given.
    pub gate: Option<crate::gate::GateReport>,
    /// Safety-gate objections overridden with --force.
    pub forced: Vec<String>,
    /// Safety-gate objections that refused the map (no map was written).
    pub refused: Vec<String>,
}

impl Report {
    /// Bad rows of all reasons in one table.
    pub fn bad_total(&self, table: &str) -> u64 {
        self.bad
            .iter()
            .filter(|b| b.table == table)
            .map(|b| b.rows)
            .sum()
    }

    /// A summary for people.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "input       {} dns_probe rows, {} rtt_report rows",
            self.dns_rows, self.rtt_rows
        );
        let _ = writeln!(
            s,
            "refused     {} dns_probe rows, {} rtt_report rows",
            self.bad_total("dns_probe"),
            self.bad_total("rtt_report")
        );
        if !self.skipped_files.is_empty() {
            let _ = writeln!(
                s,
                "skipped     {} log files that do not follow the contract",
                self.skipped_files.len()
            );
            for f in self.skipped_files.iter().take(5) {
                let _ = writeln!(s, "  {f}");
            }
        }
        if !self.copied_files.is_empty() {
            let _ = writeln!(
                s,
                "copies      {} log files repeat another byte for byte; each read once",
                self.copied_files.len()
            );
            for f in self.copied_files.iter().take(5) {
                let _ = writeln!(s, "  {f}");
            }
        }
        if self.stale_spill_bytes_removed > 0 {
            let _ = writeln!(
                s,
                "cleaned     {} bytes of spill files left by a run that did not finish",
                self.stale_spill_bytes_removed
            );
        }
        for b in &self.bad {
            let _ = writeln!(
                s,
                "  {:<10} {:<16} {:>8}  e.g. {}",
                b.table,
                b.reason,
                b.rows,
                b.samples.first().map_or("", |x| x)
            );
        }
        if !self.outside_window.is_empty() {
            let n = |t: &str| -> u64 {
                self.outside_window
                    .iter()
                    .filter(|b| b.table == t)
                    .map(|b| b.rows)
                    .sum()
            };
            let _ = writeln!(
                s,
                "outside     {} dns_probe rows, {} rtt_report rows outside the window (valid, not used)",
                n("dns_probe"),
                n("rtt_report")
            );
            for b in &self.outside_window {
                let _ = writeln!(s, "  {:<10} {:<16} {:>8}", b.table, b.reason, b.rows);
            }
        }
        if let Some((a, b)) = &self.window {
            let _ = writeln!(s, "window      reports from {a} to {b}");
        }
        let _ = writeln!(
            s,
            "measured    {} pairings; {} client subnets, {} resolvers",
            self.measurements, self.client_subnets, self.resolvers
        );
        if let Some(p) = &self.pooling {
            let mut spread = p.subnet_spread_log_var.clone();
            spread.sort_by(f64::total_cmp);
            let mid = spread.get(spread.len() / 2).copied().unwrap_or(0.0);
            let _ = writeln!(
                s,
                "pooling     one sample's noise {:.0} % (sd of log RTT); subnets spread {:.0} % (median PoP): a subnet's own data weighs half at {:.2} samples",
                p.noise_log_var.sqrt() * 100.0,
                mid.sqrt() * 100.0,
                p.noise_log_var / mid.max(f64::MIN_POSITIVE)
            );
            if p.relocated_subnets > 0 {
                let _ = writeln!(
                    s,
                    "relocated   {} client subnets whose measurements refute their GeoIP location",
                    p.relocated_subnets
                );
            }
        }
        if self.left_out_rows > 0 {
            let _ = writeln!(
                s,
                "left out    {} map rows that break the map's rules (first {} below)",
                self.left_out_rows,
                self.left_out_samples.len()
            );
            for r in &self.left_out_samples {
                let _ = writeln!(s, "  {r}");
            }
        }
        let _ = writeln!(
            s,
            "rows        {} before compaction; {} fixed aggregates left out (their subnets disagree)",
            self.rows_before_compaction, self.incoherent_aggregates
        );
        for (k, n) in &self.rows_by_key_space {
            let _ = writeln!(s, "  {k:<10} {n}");
        }
        for (d, n) in &self.rows_by_derivation {
            let _ = writeln!(s, "  {d:<10} {n}");
        }
        let first: Vec<String> = self
            .first_choice
            .iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect();
        let _ = writeln!(s, "first PoP   {}", first.join(", "));
        if let Some(best) = self.latency.first().filter(|l| l.quantiles_ms.len() == 21) {
            let q = &best.quantiles_ms;
            let _ = writeln!(s, "best PoP    median RTT per client subnet: p10 {:.1}, p50 {:.1}, p90 {:.1} ms ({} subnets)", q[2], q[10], q[18], best.subnets);
        }
        if let Some(h) = &self.holdout {
            let _ = writeln!(
                s,
                "holdout     {:.0} % of sessions ({}) held out; the map's first PoP against each session's measured fastest:",
                h.share * 100.0,
                h.sessions
            );
            for x in &h.scores {
                let _ = writeln!(
                    s,
                    "  {:<9} {:<16} {:>7} judged: fastest {:.1} %, within 5 ms {:.1} %, mean regret {:.2} ms ({} did not measure it)",
                    x.key_space,
                    x.derivation,
                    x.judged,
                    x.first_is_best * 100.0,
                    x.within_5ms * 100.0,
                    x.mean_regret_ms,
                    x.not_judged
                );
            }
        }
        if let Some(g) = &self.gate {
            let _ = writeln!(
                s,
                "previous    {} (generation {})",
                g.previous, g.previous_generation
            );
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
            if g.gained_total > 0 {
                let _ = writeln!(
                    s,
                    "  gained    {} prefixes newly covered (e.g. {})",
                    g.gained_total,
                    g.gained.first().map_or("", |x| x)
                );
            }
            let shares: Vec<String> = g
                .pop_share
                .iter()
                .filter(|(_, a, b)| *a > 0.0 || *b > 0.0)
                .map(|(p, a, b)| format!("{p} {:.1} -> {:.1} %", a * 100.0, b * 100.0))
                .collect();
            let _ = writeln!(s, "  share     {}", shares.join(", "));
            if g.moves.is_empty() {
                let _ = writeln!(
                    s,
                    "  moves     none: every measured client subnet keeps its first PoP"
                );
            }
            for m in g.moves.iter().take(5) {
                let ms = |v: Option<f32>| v.map_or("-".to_owned(), |v| format!("{v:.1} ms"));
                let _ = writeln!(
                    s,
                    "  moves     {} {} -> {} ({} samples; now estimated {} vs {})",
                    m.prefix,
                    m.from,
                    m.to,
                    m.samples,
                    ms(m.from_ms),
                    ms(m.to_ms)
                );
            }
        }
        for f in &self.refused {
            let _ = writeln!(s, "REFUSED     {f}");
        }
        for f in &self.forced {
            let _ = writeln!(s, "FORCED      {f}");
        }
        s
    }
}
