//! The report as one self-contained HTML page for analysts: what was read and refused, what
//! the map decided, and the latency distributions as a plot (inline SVG, no scripts, no
//! network), so a run can be judged and shared as a single file.

use std::fmt::Write as _;

use crate::report::{LatencyDistribution, Report};

const COLOURS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The cumulative distributions of per-subnet median RTT, one line per PoP and a thick one for
/// each subnet's fastest PoP, on a log scale from 1 ms to 1 s.
fn cdf_svg(latency: &[LatencyDistribution]) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 360.0, 50.0, 40.0, 10.0, 120.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let x = |ms: f64| left + (ms.clamp(1.0, 1000.0).log10() / 3.0) * pw;
    let y = |share: f64| top + (1.0 - share) * ph;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    for ms in [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0] {
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{top}" y2="{1:.1}" stroke="#ddd"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{ms}</text>"##,
            x(ms),
            top + ph,
            top + ph + 14.0
        );
    }
    for share in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{0:.1}" y1="{1:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4:.0} %</text>"##,
            left + pw,
            y(share),
            left - 4.0,
            y(share) + 4.0,
            share * 100.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">median RTT per client subnet, ms (log scale)</text>"#,
        left + pw / 2.0,
        h - 6.0
    );
    for (i, d) in latency
        .iter()
        .filter(|d| d.quantiles_ms.len() == 21)
        .enumerate()
    {
        let (colour, width) = if d.pop == "best" {
            ("#000", 3)
        } else {
            (COLOURS[(i - 1) % COLOURS.len()], 1)
        };
        let points: Vec<String> = d
            .quantiles_ms
            .iter()
            .enumerate()
            .map(|(j, &ms)| format!("{:.1},{:.1}", x(ms), y(j as f64 / 20.0)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="{width}" points="{}"/>"#,
            points.join(" ")
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{colour}">{} ({})</text>"#,
            left + pw + 8.0,
            top + 12.0 + 14.0 * i as f64,
            esc(&d.pop),
            d.subnets
        );
    }
    s.push_str("</svg>");
    s
}

fn table(s: &mut String, head: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    s.push_str("<table><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(&c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
}

/// The page. `title` names the run (the map file and generation).
pub fn render(report: &Report, title: &str) -> String {
    let mut s = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title><style>\
         body{{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}\
         pre{{background:#f6f6f6;padding:1em;white-space:pre-wrap}}</style></head><body><h1>{0}</h1>",
        esc(title)
    );
    let _ = write!(s, "<h2>Summary</h2><pre>{}</pre>", esc(&report.summary()));
    s.push_str("<h2>Latency</h2><p>For each client subnet with enough samples: the median RTT to each PoP, and (black) to its fastest PoP. A line further left is a faster PoP for more subnets.</p>");
    s.push_str(&cdf_svg(&report.latency));
    let q = |d: &LatencyDistribution, i: usize| {
        d.quantiles_ms
            .get(i)
            .map_or("-".into(), |v| format!("{v:.1}"))
    };
    table(
        &mut s,
        &["PoP", "client subnets", "p10 ms", "p50 ms", "p90 ms"],
        report.latency.iter().map(|d| {
            vec![
                d.pop.clone(),
                d.subnets.to_string(),
                q(d, 2),
                q(d, 10),
                q(d, 18),
            ]
        }),
    );
    if let Some(g) = &report.gate {
        let _ = write!(
            s,
            "<h2>What would move</h2><p>Against the previous map: {:.1} % of measured traffic changes first PoP; {} prefixes it placed are no longer covered; {} are newly covered.</p>",
            g.moved_share * 100.0,
            g.lost.len(),
            g.gained_total
        );
        table(
            &mut s,
            &["PoP", "share of measured traffic before", "after"],
            g.pop_share.iter().map(|(p, a, b)| {
                vec![
                    p.clone(),
                    format!("{:.1} %", a * 100.0),
                    format!("{:.1} %", b * 100.0),
                ]
            }),
        );
        let ms = |v: Option<f32>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        table(
            &mut s,
            &[
                "client subnet",
                "from",
                "to",
                "samples",
                "from ms (new estimate)",
                "to ms",
            ],
            g.moves.iter().map(|m| {
                vec![
                    m.prefix.clone(),
                    m.from.clone(),
                    m.to.clone(),
                    m.samples.to_string(),
                    ms(m.from_ms),
                    ms(m.to_ms),
                ]
            }),
        );
    }
    s.push_str("<h2>Refused rows</h2>");
    table(
        &mut s,
        &["table", "reason", "rows", "samples"],
        report.bad.iter().map(|b| {
            vec![
                b.table.clone(),
                b.reason.clone(),
                b.rows.to_string(),
                b.samples.join(" | "),
            ]
        }),
    );
    s.push_str("<h2>Map</h2>");
    table(
        &mut s,
        &["derivation", "rows"],
        report
            .rows_by_derivation
            .iter()
            .map(|(d, n)| vec![d.clone(), n.to_string()]),
    );
    table(
        &mut s,
        &["first-ranked PoP", "rows"],
        report
            .first_choice
            .iter()
            .map(|(p, n)| vec![p.clone(), n.to_string()]),
    );
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_plots_every_pop_and_escapes_text() {
        let latency = vec![
            LatencyDistribution::of("best", vec![5.0, 10.0]),
            LatencyDistribution::of("ams", (1..=100).map(f64::from).collect()),
        ];
        let mut r = Report {
            latency,
            ..Default::default()
        };
        r.bad.push(crate::report::BadRows {
            table: "rtt_report".into(),
            reason: "bad_probe_id".into(),
            rows: 1,
            samples: vec!["probe_id=<script>".into()],
        });
        let page = render(&r, "map.arrow");
        assert_eq!(page.matches("<polyline").count(), 2);
        assert!(
            page.contains("ams (100)")
                && page.contains("probe_id=&lt;script&gt;")
                && !page.contains("<script>")
        );
        assert_eq!(r.latency[1].quantiles_ms[10], 50.0);
    }
}
