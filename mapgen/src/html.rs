//! The report as one self-contained HTML page for analysts: what was read and refused, what
//! the map decided, and the latency distributions as a plot (inline SVG, no scripts, no
//! network), so a run can be judged and shared as a single file.

use std::fmt::Write as _;

use crate::report::{LatencyDistribution, Report};

/// Sasha Trubetskoy's 20 distinct colours, ordered so that the pale ones come last: any two of
/// the first 16 differ by at least 28 (CIE76 ΔE; Kelly's list, used before, had two purples
/// 15 apart among its first 12), and each stands out from the picture's background. Beyond
/// 20 PoPs they repeat.
const COLOURS: [&str; 20] = [
    "#e6194B", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
    "#469990", "#9A6324", "#800000", "#808000", "#000075", "#a9a9a9", "#ffe119", "#fabed4",
    "#dcbeff", "#aaffc3", "#ffd8b1", "#fffac8",
];

/// A PoP's colour: by its place in the PoP table, the same in every picture.
fn colour(pops: &[String], pop: &str) -> &'static str {
    let i = pops.iter().position(|p| p == pop).unwrap_or(0);
    COLOURS[i % COLOURS.len()]
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The cumulative distributions of per-subnet median RTT, one line per PoP and a thick one for
/// each subnet's fastest PoP, on a log scale from 1 ms to 1 s.
fn cdf_svg(latency: &[LatencyDistribution], pops: &[String]) -> String {
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
            (colour(pops, &d.pop), 1)
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

/// The catchment picture: client networks by GeoIP location, coloured by first PoP, on a
/// longitude/latitude grid, with the PoPs and a legend of each PoP's share of the networks.
fn catchment_svg(report: &Report, pops: &[String]) -> String {
    let (w, h, left, top, right) = (720.0, 360.0, 30.0, 10.0, 130.0);
    let (pw, ph) = (w - left - right, h - 2.0 * top - 20.0);
    let x = |lon: f64| left + (lon.clamp(-180.0, 180.0) + 180.0) / 360.0 * pw;
    let y = |lat: f64| top + (90.0 - lat.clamp(-90.0, 90.0)) / 180.0 * ph;
    let mut s = format!(
        r#"<svg id="catchment" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#f4f8fb" stroke="#bbb"/>"##
    );
    for lon in (-150..=150).step_by(30) {
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{top}" y2="{1:.1}" stroke="#dde"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{lon}</text>"##,
            x(f64::from(lon)),
            top + ph,
            top + ph + 14.0
        );
    }
    for lat in (-60..=60).step_by(30) {
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{0:.1}" y1="{1:.1}" y2="{1:.1}" stroke="#dde"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{lat}</text>"##,
            left + pw,
            y(f64::from(lat)),
            left - 3.0,
            y(f64::from(lat)) + 4.0
        );
    }
    // Unmeasured networks first, so the measured ones (larger) are drawn over them.
    for measured in [false, true] {
        for p in report
            .catchment
            .iter()
            .filter(|p| (p.samples > 0) == measured)
        {
            let _ = write!(
                s,
                r##"<circle class="net" cx="{:.1}" cy="{:.1}" r="{}" fill="{}" fill-opacity="0.8" stroke="#333" stroke-width="0.4"/>"##,
                x(p.lon),
                y(p.lat),
                if measured { 4 } else { 3 },
                colour(pops, &p.pop)
            );
        }
    }
    for (id, lat, lon) in &report.pops {
        if let (Some(lat), Some(lon)) = (lat, lon) {
            let (cx, cy) = (x(*lon), y(*lat));
            let _ = write!(
                s,
                r##"<path class="pop" d="M{:.1},{:.1} l5,9 l-10,0 z" fill="{}" stroke="#000"/><text x="{:.1}" y="{:.1}">{}</text>"##,
                cx,
                cy - 6.0,
                colour(pops, id),
                cx + 6.0,
                cy - 6.0,
                esc(id)
            );
        }
    }
    // The legend: each PoP's share of measured traffic, the figure the traffic table gives.
    for (i, id) in pops.iter().enumerate() {
        let share = report
            .traffic_share
            .iter()
            .find(|(p, _)| p == id)
            .map_or(0.0, |x| x.1);
        let _ = write!(
            s,
            r#"<rect class="legend" x="{:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}">{} {:.1} %</text>"#,
            left + pw + 10.0,
            top + 14.0 * i as f64,
            colour(pops, id),
            left + pw + 24.0,
            top + 9.0 + 14.0 * i as f64,
            esc(id),
            share * 100.0
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
    let pops: Vec<String> = report.pops.iter().map(|p| p.0.clone()).collect();
    s.push_str(&cdf_svg(&report.latency, &pops));
    s.push_str("<h2>Catchment</h2>");
    if let Some(why) = &report.catchment_missing {
        let _ = write!(
            s,
            "<p class=\"missing\">No client network could be placed: {}.</p>",
            esc(why)
        );
    } else {
        let _ = write!(
            s,
            "<p>{} client networks placed by GeoIP (measured, aggregated, routed and modeled rows), each coloured by the PoP the map sends it to first; the larger dots were measured. Triangles: the PoPs. The legend gives each PoP's share of measured traffic, as the traffic table does. Longitude and latitude, equirectangular; no coastlines (no well-kept data crate provides them).</p>",
            report.catchment.len()
        );
        s.push_str(&catchment_svg(report, &pops));
    }
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
            "<h2>What would move</h2><p>Against the previous map, {} (generation {}): {:.1} % of measured traffic changes first PoP; {} prefixes it placed are no longer covered; {} are newly covered.</p>",
            esc(&g.previous),
            esc(&g.previous_generation),
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
        if g.moves.is_empty() {
            s.push_str("<p class=\"no-moves\">Nothing moves: every measured client subnet keeps its first PoP.</p>");
        } else {
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
    if !report.outside_window.is_empty() {
        s.push_str("<h2>Rows outside the window</h2><p>Valid rows from before or after the window asked for: not used, and not refused.</p>");
        table(
            &mut s,
            &["table", "reason", "rows"],
            report
                .outside_window
                .iter()
                .map(|b| vec![b.table.clone(), b.reason.clone(), b.rows.to_string()]),
        );
    }
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

    /// CIE76 colour difference, from sRGB hex through CIELAB (D65).
    fn delta_e(a: &str, b: &str) -> f64 {
        let lab = |h: &str| {
            let c = |i: usize| {
                let v = f64::from(u8::from_str_radix(&h[i..i + 2], 16).unwrap()) / 255.0;
                if v > 0.04045 {
                    ((v + 0.055) / 1.055).powf(2.4)
                } else {
                    v / 12.92
                }
            };
            let (r, g, b) = (c(1), c(3), c(5));
            let x = (r * 0.4124 + g * 0.3576 + b * 0.1805) / 0.95047;
            let y = r * 0.2126 + g * 0.7152 + b * 0.0722;
            let z = (r * 0.0193 + g * 0.1192 + b * 0.9505) / 1.08883;
            let f = |t: f64| {
                if t > 0.008856 {
                    t.cbrt()
                } else {
                    7.787 * t + 16.0 / 116.0
                }
            };
            (
                116.0 * f(y) - 16.0,
                500.0 * (f(x) - f(y)),
                200.0 * (f(y) - f(z)),
            )
        };
        let (p, q) = (lab(a), lab(b));
        ((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2) + (p.2 - q.2).powi(2)).sqrt()
    }

    #[test]
    fn the_first_sixteen_pop_colours_are_far_apart_and_off_the_background() {
        for (i, a) in COLOURS[..16].iter().enumerate() {
            assert!(delta_e(a, "#f4f8fb") > 25.0, "{a} on the background");
            for b in &COLOURS[i + 1..16] {
                assert!(delta_e(a, b) > 25.0, "{a} and {b}: {:.1}", delta_e(a, b));
            }
        }
        // Kelly's colours, used before, failed it.
        assert!(delta_e("#875692", "#604E97") < 25.0);
    }
}
