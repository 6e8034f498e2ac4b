//! The first step of a run: the log files checked against the contract, then both tables
//! read at once, validated and partitioned (`read`), bad files and rows named for the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::logs::{self, ProbeRecord, ReportRecord, Validation};
use crate::options::{MapgenError, Options};
use crate::partition::{Partitions, Scratch};
use crate::report::{BadRows, Report};

pub(crate) fn micros(t: Option<SystemTime>) -> Option<i64> {
    t.map(|t| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
    })
}

/// The refused (invalid) rows of one table for the report, and apart from them the valid rows
/// outside the window asked for, which were not used but are not wrong.
pub(crate) fn bad_rows(table: &str, v: &Validation) -> (Vec<BadRows>, Vec<BadRows>) {
    let rows = |m: &std::collections::BTreeMap<&'static str, (u64, Vec<String>)>| {
        m.iter()
            .map(|(reason, (rows, samples))| BadRows {
                table: table.into(),
                reason: (*reason).into(),
                rows: *rows,
                samples: samples.clone(),
            })
            .collect()
    };
    (rows(&v.bad), rows(&v.outside))
}

/// One table read: its valid rows, partitioned, and its bad rows by reason.
pub(crate) type Table<R> = (Partitions<R>, Validation);

/// Rows stamped this far past the run's start are from the future (a wrong clock), not late.
const CLOCK_SKEW_MICROS: i64 = 300_000_000;

/// Lists and checks the files of one table: refuses the run over a bad file unless told to
/// skip bad files, and records what was left out.
fn checked_files(
    opts: &Options,
    table: &str,
    report: &mut Report,
) -> Result<logs::Files, MapgenError> {
    let files = logs::files(&opts.logs, table).map_err(|e| MapgenError::Refused(e.to_string()))?;
    if !files.bad.is_empty() && !opts.skip_bad_files {
        return Err(bad_files_error(table, &files.bad));
    }
    report
        .skipped_files
        .extend(files.bad.iter().map(ToString::to_string));
    report.copied_files.extend(
        files
            .copies
            .iter()
            .map(|(copy, first)| format!("{} = {}", copy.display(), first.display())),
    );
    if files.paths.is_empty() {
        let dir = opts.logs.join(table);
        let why = if !dir.is_dir() {
            "no such directory".to_owned()
        } else {
            "no usable .parquet file in it".to_owned()
        };
        return Err(MapgenError::Refused(format!(
            "{}: {why}; mapgen needs both dns_probe and rtt_report logs",
            dir.display()
        )));
    }
    Ok(files)
}

fn bad_files_error(table: &str, bad: &[logs::BadFile]) -> MapgenError {
    let list: Vec<String> = bad.iter().take(10).map(ToString::to_string).collect();
    let more = bad.len().saturating_sub(10);
    MapgenError::Refused(format!(
        "{} {table} files do not follow the log contract (move them aside, or rerun with --skip-bad-files):\n  {}{}",
        bad.len(),
        list.join("\n  "),
        if more > 0 { format!("\n  and {more} more") } else { String::new() }
    ))
}

/// Files among `files` whose data cannot be decoded (a corrupt page: the footer read fine),
/// found by reading each alone. Only called after a read of them all failed, so the error
/// can name the file.
fn undecodable(files: &logs::Files, columns: &[&str]) -> Vec<logs::BadFile> {
    files
        .paths
        .iter()
        .filter_map(|path| {
            let one = logs::Files {
                paths: vec![path.clone()],
                rows: 0,
                bad: Vec::new(),
                copies: Vec::new(),
            };
            logs::decode_all(&one, columns)
                .err()
                .map(|e| logs::BadFile {
                    file: path.display().to_string(),
                    problem: format!("data cannot be decoded: {e}"),
                })
        })
        .collect()
}

/// Checks the log files, then reads both tables at once into `n` partitions each: each read
/// is one thread validating behind polars' decoding, and a third prints progress. A file whose
/// data turns out corrupt is named, and left out with `--skip-bad-files` (the read restarts).
pub(crate) fn read(
    opts: &Options,
    pop_ids: &[String],
    scratch: &Scratch,
    progress: &(dyn Fn(&str) + Sync),
    report: &mut Report,
) -> Result<(usize, Table<ReportRecord>, Table<ProbeRecord>), MapgenError> {
    if !opts.logs.is_dir() {
        return Err(MapgenError::Refused(format!(
            "log root {}: no such directory",
            opts.logs.display()
        )));
    }
    let mut report_files = checked_files(opts, "rtt_report", report)?;
    let mut probe_files = checked_files(opts, "dns_probe", report)?;
    let now = micros(Some(SystemTime::now())).expect("some");
    let future = now + CLOCK_SKEW_MICROS;
    let window = logs::Window {
        since: micros(opts.since),
        until: micros(opts.until).map_or(future, |u| u.min(future)),
        future,
    };
    let probe_window = window.widened(logs::MAX_PAIR_GAP_MICROS);
    loop {
        // Partitions sized from the footers, so each step holds about `partition_rows` rows.
        let most = report_files.rows.max(probe_files.rows);
        let n = (most.div_ceil(opts.partition_rows.max(1)) as usize)
            .clamp(1, crate::partition::MAX_PARTITIONS);
        progress(&format!(
            "reading logs (at most {most} rows per table, {n} partition{})",
            if n == 1 { "" } else { "s" }
        ));
        let report_parts = Partitions::new(n, scratch, "reports")?;
        let probe_parts = Partitions::new(n, scratch, "probes")?;
        let seen = Arc::new(AtomicU64::new(0));
        let (done, ticks) = mpsc::channel::<()>();
        let (reports, probes) = std::thread::scope(|s| {
            let (counter, total) = (seen.clone(), report_files.rows + probe_files.rows);
            s.spawn(move || {
                // Reading is the longest step on large inputs: a line every 10 s.
                while let Err(RecvTimeoutError::Timeout) =
                    ticks.recv_timeout(Duration::from_secs(10))
                {
                    progress(&format!(
                        "read {} of at most {total} rows",
                        counter.load(Ordering::Relaxed)
                    ));
                }
            });
            let probes = s.spawn(|| {
                logs::read_probes(
                    &probe_files,
                    pop_ids,
                    probe_window,
                    probe_parts,
                    seen.clone(),
                )
            });
            let reports = logs::read_reports(
                &report_files,
                pop_ids,
                opts.max_rtt_ms,
                window,
                report_parts,
                seen.clone(),
            );
            let probes = probes.join().expect("the probe reader does not panic");
            drop(done);
            (reports, probes)
        });
        let (mut reports, mut probes) = match (reports, probes) {
            (Ok(r), Ok(p)) => (r, p),
            (r, p) => {
                // Which file? Decode each alone; polars' error names none.
                let error = r.err().or(p.err()).expect("one failed");
                progress("a log file failed to decode; checking each file");
                let bad_reports = undecodable(&report_files, logs::REPORT_COLUMNS);
                let bad_probes = undecodable(&probe_files, logs::PROBE_COLUMNS);
                if bad_reports.is_empty() && bad_probes.is_empty() {
                    return Err(error.into());
                }
                for (table, bad, files) in [
                    ("rtt_report", &bad_reports, &mut report_files),
                    ("dns_probe", &bad_probes, &mut probe_files),
                ] {
                    if bad.is_empty() {
                        continue;
                    }
                    if !opts.skip_bad_files {
                        return Err(bad_files_error(table, bad));
                    }
                    files
                        .paths
                        .retain(|p| !bad.iter().any(|b| b.file == p.display().to_string()));
                    report
                        .skipped_files
                        .extend(bad.iter().map(ToString::to_string));
                    if files.paths.is_empty() {
                        return Err(MapgenError::Refused(format!(
                            "{}: every {table} file is corrupt",
                            opts.logs.join(table).display()
                        )));
                    }
                }
                continue;
            }
        };
        for (files, w, v) in [
            (&report_files, window, &mut reports.1),
            (&probe_files, probe_window, &mut probes.1),
        ] {
            for (reason, rows, sample, invalid) in logs::outside_window(files, w)? {
                v.outside(reason, rows, sample, invalid);
            }
        }
        return Ok((n, reports, probes));
    }
}
