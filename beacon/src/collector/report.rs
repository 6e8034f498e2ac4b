//! Client reports: the JSON a page posts, validated into `rtt_report` rows.
//!
//! A request body is one report `{probe_id, results: [{pop, rtt_ms, ok}]}` or an array of them.
//! Validation is all-or-nothing: one bad value refuses the whole request with a reason that
//! names it, so a client cannot half-write a report, and nothing a client sends reaches a file
//! unless every field passed.

use serde::Deserialize;

use crate::schema::{valid_probe_id, RttReportRow, MIN_RTT_MS};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    probe_id: String,
    results: Vec<Measurement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Measurement {
    pop: String,
    #[serde(default)]
    rtt_ms: Option<f64>,
    ok: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Body {
    One(Report),
    Many(Vec<Report>),
}

/// Why a request was refused; the `reason` label is what metrics count by.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    /// Short, fixed label for metrics (`malformed_json`, `bad_probe_id`, ...).
    pub reason: &'static str,
    /// The message for the client, naming the field and value.
    pub message: String,
}

fn refuse(reason: &'static str, message: String) -> Refusal {
    Refusal { reason, message }
}

/// What a report may contain.
pub struct Limits<'a> {
    /// Known PoP ids.
    pub pops: &'a [geomap::PopId],
    /// Most results per request.
    pub max_results: usize,
    /// Largest believable RTT.
    pub max_rtt_ms: f64,
}

/// Parses and validates a request body into rows (stamped with `ts`, `client_ip`, `collector`).
pub fn parse_report(
    body: &[u8],
    limits: &Limits<'_>,
    ts: i64,
    client_ip: &str,
    collector: &str,
) -> Result<Vec<RttReportRow>, Refusal> {
    let parsed: Body = serde_json::from_slice(body).map_err(|e| {
        // An untagged enum hides serde's message; re-parse as one report for a precise one.
        let detail = serde_json::from_slice::<Report>(body).err().unwrap_or(e);
        refuse("malformed_json", format!("malformed report: {detail}"))
    })?;
    let reports = match parsed {
        Body::One(r) => vec![r],
        Body::Many(v) => v,
    };
    if reports.is_empty() {
        return Err(refuse("empty", "no report in the request".into()));
    }
    let total: usize = reports.iter().map(|r| r.results.len()).sum();
    if total > limits.max_results {
        return Err(refuse(
            "too_many_results",
            format!(
                "{total} results; at most {} per request",
                limits.max_results
            ),
        ));
    }
    let mut rows = Vec::with_capacity(total);
    for (ri, r) in reports.into_iter().enumerate() {
        let at = |field: &str| {
            if ri == 0 && rows.is_empty() {
                field.to_owned()
            } else {
                format!("reports[{ri}].{field}")
            }
        };
        if !valid_probe_id(&r.probe_id) {
            return Err(refuse(
                "bad_probe_id",
                format!(
                    "{}: {:?} is not lowercase [a-z0-9]{{8,64}}",
                    at("probe_id"),
                    r.probe_id
                ),
            ));
        }
        if r.results.is_empty() {
            return Err(refuse("empty", format!("{}: no results", at("results"))));
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, m) in r.results.iter().enumerate() {
            let field = |f: &str| format!("reports[{ri}].results[{i}].{f}");
            if !limits.pops.iter().any(|p| p.as_str() == m.pop) {
                return Err(refuse(
                    "unknown_pop",
                    format!("{}: unknown PoP {:?}", field("pop"), m.pop),
                ));
            }
            if seen.contains(&m.pop.as_str()) {
                return Err(refuse(
                    "duplicate_pop",
                    format!(
                        "{}: PoP '{}' reported twice for one probe id",
                        field("pop"),
                        m.pop
                    ),
                ));
            }
            seen.push(&m.pop);
            let rtt = match (m.ok, m.rtt_ms) {
                (true, Some(v)) if (MIN_RTT_MS..=limits.max_rtt_ms).contains(&v) => Some(v),
                (true, Some(v)) => {
                    let (field, max) = (field("rtt_ms"), limits.max_rtt_ms);
                    return Err(refuse(
                        "bad_rtt",
                        format!(
                            "{field}: {v} is not a round-trip time in [{MIN_RTT_MS}, {max}] ms"
                        ),
                    ));
                }
                (true, None) => {
                    return Err(refuse(
                        "bad_rtt",
                        format!("{}: missing for a successful fetch", field("rtt_ms")),
                    ))
                }
                // A failed fetch has no time; whatever the client sent is not one.
                (false, _) => None,
            };
            rows.push(RttReportRow {
                ts,
                probe_id: r.probe_id.clone(),
                pop: m.pop.clone(),
                client_ip: client_ip.to_owned(),
                rtt_ms: rtt,
                ok: m.ok,
                collector: collector.to_owned(),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Vec<RttReportRow>, Refusal> {
        let pops: [geomap::PopId; 2] = ["ams".parse().unwrap(), "iad".parse().unwrap()];
        parse_report(
            body.as_bytes(),
            &Limits {
                pops: &pops,
                max_results: 4,
                max_rtt_ms: 30_000.0,
            },
            7,
            "192.0.2.9",
            "c1",
        )
    }

    #[test]
    fn good_reports_and_batches() {
        let rows = parse(r#"{"probe_id":"abcdef12","results":[{"pop":"ams","rtt_ms":12.5,"ok":true},{"pop":"iad","ok":false}]}"#).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].rtt_ms, rows[1].rtt_ms, rows[1].ok),
            (Some(12.5), None, false)
        );
        assert_eq!(rows[0].client_ip, "192.0.2.9");
        let rows = parse(r#"[{"probe_id":"abcdef12","results":[{"pop":"ams","rtt_ms":1,"ok":true}]},{"probe_id":"abcdef34","results":[{"pop":"ams","rtt_ms":2,"ok":true}]}]"#).unwrap();
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn every_kind_of_junk_is_refused_with_a_reason() {
        let reason = |b: &str| parse(b).unwrap_err().reason;
        assert_eq!(reason("{"), "malformed_json");
        assert_eq!(
            reason(r#"{"probe_id":"abcdef12","results":[],"extra":1}"#),
            "malformed_json"
        );
        assert_eq!(
            reason(r#"{"probe_id":"ABC","results":[{"pop":"ams","rtt_ms":1,"ok":true}]}"#),
            "bad_probe_id"
        );
        assert_eq!(
            reason(r#"{"probe_id":"abcdef12","results":[{"pop":"fra","rtt_ms":1,"ok":true}]}"#),
            "unknown_pop"
        );
        assert_eq!(
            reason(r#"{"probe_id":"abcdef12","results":[{"pop":"ams","rtt_ms":-1,"ok":true}]}"#),
            "bad_rtt"
        );
        assert_eq!(
            reason(r#"{"probe_id":"abcdef12","results":[{"pop":"ams","rtt_ms":0,"ok":true}]}"#),
            "bad_rtt"
        );
        assert_eq!(
            reason(
                r#"{"probe_id":"abcdef12","results":[{"pop":"ams","rtt_ms":1e-300,"ok":true}]}"#
            ),
            "bad_rtt"
        );
        assert_eq!(
            reason(
                r#"{"probe_id":"abcdef12","results":[{"pop":"ams","rtt_ms":0.0009,"ok":true}]}"#
            ),
            "bad_rtt"
        );
        assert!(parse(
            r#"{"probe_id":"abcdef12","results":[{"pop":"ams","rtt_ms":0.001,"ok":true}]}"#
        )
        .is_ok());
        assert_eq!(
            reason(r#"{"probe_id":"abcdef12","results":[{"pop":"ams","rtt_ms":90000,"ok":true}]}"#),
            "bad_rtt"
        );
        assert_eq!(
            reason(r#"{"probe_id":"abcdef12","results":[{"pop":"ams","ok":true}]}"#),
            "bad_rtt"
        );
        assert_eq!(reason(r#"{"probe_id":"abcdef12","results":[]}"#), "empty");
        assert_eq!(reason(r#"[]"#), "empty");
        assert_eq!(
            reason(
                r#"{"probe_id":"abcdef12","results":[{"pop":"ams","rtt_ms":1,"ok":true},{"pop":"ams","rtt_ms":2,"ok":true}]}"#
            ),
            "duplicate_pop"
        );
        let five = r#"{"pop":"ams","rtt_ms":1,"ok":true}"#;
        assert_eq!(
            reason(&format!(
                r#"{{"probe_id":"abcdef12","results":[{five},{five},{five},{five},{five}]}}"#
            )),
            "too_many_results"
        );
        let msg = parse(r#"{"probe_id":"abcdef12","results":[{"pop":"ams","rtt_ms":1,"ok":true},{"pop":"iad","rtt_ms":-3,"ok":true}]}"#).unwrap_err().message;
        assert_eq!(
            msg,
            "reports[0].results[1].rtt_ms: -3 is not a round-trip time in [0.001, 30000] ms"
        );
    }
}
