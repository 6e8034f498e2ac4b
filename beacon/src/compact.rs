//! `geodns logs compact`: merges a closed day's many small log files (a writer closes one every
//! few seconds or so many rows) into a few large ones, which every reader opens faster.
//!
//! Readers must never lose rows, and should not see them twice. The merged files are written in
//! the staging directory (`<root>/.incoming/`) and made durable; a journal there lists them
//! and the files they replace; then the merged files are renamed into the day's directory and
//! the originals removed, and the journal last. A crash at any point is finished by the next
//! run from the journal. Between the renames and the removals (milliseconds) a reader may see
//! a row twice; mapgen counts such repeats (`duplicate_row`) and uses each once.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use crate::writer::{properties, staging_dir, to_io};

/// How long after midnight UTC a day counts as closed: writers flush a day's last rows within
/// seconds (`max_age`), a clock may be off by some; an hour leaves room for both.
pub const GRACE: Duration = Duration::from_secs(3600);

/// One table, as compaction needs it.
pub struct TableSpec {
    /// Directory under the root.
    pub name: &'static str,
    /// The contract's schema: every input must have it.
    pub schema: SchemaRef,
    /// Columns written without dictionary, as the writer does.
    pub unique_columns: &'static [&'static str],
}

/// The contract's tables.
pub fn tables() -> Vec<TableSpec> {
    use crate::schema::{DnsProbeRow, RttReportRow, Table};
    vec![
        TableSpec {
            name: DnsProbeRow::NAME,
            schema: DnsProbeRow::schema(),
            unique_columns: DnsProbeRow::UNIQUE_COLUMNS,
        },
        TableSpec {
            name: RttReportRow::NAME,
            schema: RttReportRow::schema(),
            unique_columns: RttReportRow::UNIQUE_COLUMNS,
        },
    ]
}

/// What compacting one day did.
#[derive(Debug, Default, PartialEq)]
pub struct Compacted {
    /// Files merged.
    pub inputs: usize,
    /// Files written.
    pub outputs: usize,
    /// Rows in them.
    pub rows: u64,
}

/// Why a day was not compacted.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// The day may still get files.
    #[error("{0}")]
    NotClosed(String),
    /// A file does not follow the contract.
    #[error("{path}: {problem}; move it aside and rerun")]
    Bad {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CompactError + '_ {
    move |source| CompactError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The dates (`YYYY-MM-DD`) a table has partitions for.
pub fn dates(root: &Path, table: &str) -> Result<Vec<String>, CompactError> {
    let dir = root.join(table);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .map_err(io_at(&dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("date=")
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Whether `date` (YYYY-MM-DD) ended more than [`GRACE`] before `now`.
pub fn closed(date: &str, now: SystemTime) -> Result<bool, CompactError> {
    let start = humantime::parse_rfc3339(&format!("{date}T00:00:00Z")).map_err(|_| {
        CompactError::NotClosed(format!("{date:?} is not a date (want YYYY-MM-DD)"))
    })?;
    Ok(start + Duration::from_secs(86_400) + GRACE <= now)
}

/// Compacts one table's day into files of at most `rows_per_file` rows. `progress` gets a line
/// per file read.
pub fn compact_day(
    root: &Path,
    table: &TableSpec,
    date: &str,
    rows_per_file: u64,
    now: SystemTime,
    progress: &dyn Fn(&str),
) -> Result<Compacted, CompactError> {
    let table_dir = root.join(table.name);
    let staging = staging_dir(&table_dir);
    let journal = staging.join(format!("compact-{}-{date}.journal", table.name));
    if journal.exists() {
        progress(&format!(
            "finishing an interrupted compaction ({})",
            journal.display()
        ));
        finish(&journal)?;
    }
    // Staged files no journal names are debris of a run that was killed or refused before it
    // wrote its journal: nothing refers to them.
    remove_debris(&staging, table.name, date);
    if !closed(date, now)? {
        return Err(CompactError::NotClosed(format!(
            "{} {date} is not closed: writers may add files until an hour after its end (UTC)",
            table.name
        )));
    }
    let day = table_dir.join(format!("date={date}"));
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&day)
        .map_err(io_at(&day))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "parquet")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    inputs.sort();
    let merged = |p: &PathBuf| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("compact-"))
    };
    if inputs.len() <= 1 || inputs.iter().all(merged) {
        return Ok(Compacted::default());
    }
    std::fs::create_dir_all(&staging).map_err(io_at(&staging))?;
    let run = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let rows_per_file = rows_per_file.max(1);
    let mut done = Compacted {
        inputs: inputs.len(),
        ..Default::default()
    };
    let mut outputs: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut writer: Option<(ArrowWriter<File>, PathBuf, u64)> = None;
    let close = |w: (ArrowWriter<File>, PathBuf, u64)| -> Result<(), CompactError> {
        let (w, path, _) = w;
        let file = w.into_inner().map_err(|e| io_at(&path)(to_io(e)))?;
        file.sync_all().map_err(io_at(&path))
    };
    // The merge; a refused run (a bad input file, a full disk) leaves nothing behind.
    let merged = (|| -> Result<(), CompactError> {
        for (i, input) in inputs.iter().enumerate() {
            let file = File::open(input).map_err(io_at(input))?;
            let bad = |problem: String| CompactError::Bad {
                path: input.display().to_string(),
                problem,
            };
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| bad(format!("not a Parquet file: {e}")))?;
            let fields = reader.schema().fields();
            let want = table.schema.fields();
            if fields.len() != want.len()
                || fields
                    .iter()
                    .zip(want.iter())
                    .any(|(a, b)| a.name() != b.name() || a.data_type() != b.data_type())
            {
                return Err(bad(format!(
                    "columns {:?} are not the {} table's",
                    fields.iter().map(|f| f.name()).collect::<Vec<_>>(),
                    table.name
                )));
            }
            let reader = reader
                .build()
                .map_err(|e| bad(format!("cannot be read: {e}")))?;
            for batch in reader {
                let batch = batch.map_err(|e| bad(format!("cannot be decoded: {e}")))?;
                let batch = batch
                    .with_schema(table.schema.clone())
                    .map_err(|e| bad(e.to_string()))?;
                let mut offset = 0;
                while offset < batch.num_rows() {
                    if writer.as_ref().is_none_or(|w| w.2 >= rows_per_file) {
                        if let Some(w) = writer.take() {
                            close(w)?;
                        }
                        let name = format!("compact-{run}-{:04}.parquet", outputs.len());
                        let staged = staging.join(format!("{}-{date}-{name}", table.name));
                        let f = File::create(&staged).map_err(io_at(&staged))?;
                        let w = ArrowWriter::try_new(
                            f,
                            table.schema.clone(),
                            Some(properties(table.unique_columns)),
                        )
                        .map_err(|e| io_at(&staged)(to_io(e)))?;
                        outputs.push((staged.clone(), day.join(name)));
                        writer = Some((w, staged, 0));
                    }
                    let w = writer.as_mut().expect("opened above");
                    let take = ((rows_per_file - w.2) as usize).min(batch.num_rows() - offset);
                    w.0.write(&batch.slice(offset, take))
                        .map_err(|e| io_at(&w.1)(to_io(e)))?;
                    w.2 += take as u64;
                    done.rows += take as u64;
                    offset += take;
                }
            }
            progress(&format!(
                "{} {date}: read {} of {} files, {} rows",
                table.name,
                i + 1,
                inputs.len(),
                done.rows
            ));
        }
        if let Some(w) = writer.take() {
            close(w)?;
        }
        Ok(())
    })();
    if let Err(e) = merged {
        remove_debris(&staging, table.name, date);
        return Err(e);
    }
    done.outputs = outputs.len();
    let mut text = String::new();
    for (staged, fin) in &outputs {
        text.push_str(&format!("out\t{}\t{}\n", staged.display(), fin.display()));
    }
    for input in &inputs {
        text.push_str(&format!("in\t{}\n", input.display()));
    }
    geomap::atomic_file::write(&journal, |f| io::Write::write_all(f, text.as_bytes()))
        .map_err(io_at(&journal))?;
    finish(&journal)?;
    Ok(done)
}

/// Removes the staged files of `table` and `date` (`<table>-<date>-compact-*`): called where no
/// journal names them, so they belong to no run that can still finish.
fn remove_debris(staging: &Path, table: &str, date: &str) {
    let prefix = format!("{table}-{date}-compact-");
    let Ok(entries) = std::fs::read_dir(staging) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Carries out a journal: moves the merged files into place, removes the originals, then the
/// journal. Each step can be repeated, so an interrupted run is finished by the next.
fn finish(journal: &Path) -> Result<(), CompactError> {
    let text = std::fs::read_to_string(journal).map_err(io_at(journal))?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut sync = |p: &Path| {
        if let Some(d) = p.parent() {
            if !dirs.iter().any(|x| x == d) {
                dirs.push(d.to_path_buf());
            }
        }
    };
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    for l in &lines {
        if let ["out", staged, fin] = l.as_slice() {
            let (staged, fin) = (Path::new(staged), Path::new(fin));
            if staged.exists() {
                std::fs::rename(staged, fin).map_err(io_at(fin))?;
            }
            sync(fin);
        }
    }
    for d in &dirs {
        geomap::atomic_file::sync_dir(d).map_err(io_at(d))?;
    }
    for l in &lines {
        if let ["in", input] = l.as_slice() {
            let input = Path::new(input);
            match std::fs::remove_file(input) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_at(input)(e)),
                _ => {}
            }
        }
    }
    for d in &dirs {
        geomap::atomic_file::sync_dir(d).map_err(io_at(d))?;
    }
    std::fs::remove_file(journal).map_err(io_at(journal))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_closes_an_hour_after_midnight_utc() {
        let at = |s: &str| humantime::parse_rfc3339(s).unwrap();
        assert!(!closed("2026-11-25", at("2026-11-26T00:30:00Z")).unwrap());
        assert!(closed("2026-11-25", at("2026-11-26T01:00:00Z")).unwrap());
        assert!(!closed("2026-11-26", at("2026-11-26T23:00:00Z")).unwrap());
        assert!(closed("25-11-2026", SystemTime::now()).is_err());
    }

    #[test]
    fn only_a_runs_own_debris_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join(".incoming");
        std::fs::create_dir_all(&staging).unwrap();
        let debris = staging.join("rtt_report-2026-01-01-compact-17-0000.parquet");
        let other_day = staging.join("rtt_report-2026-01-02-compact-17-0000.parquet");
        let writer = staging.join(".w1-000042.parquet.abc.tmp");
        for f in [&debris, &other_day, &writer] {
            std::fs::write(f, "x").unwrap();
        }
        remove_debris(&staging, "rtt_report", "2026-01-01");
        assert!(!debris.exists());
        assert!(other_day.exists() && writer.exists());
    }

    #[test]
    fn an_interrupted_journal_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let (day, staging) = (dir.path().join("day"), dir.path().join(".incoming"));
        std::fs::create_dir_all(&day).unwrap();
        std::fs::create_dir_all(&staging).unwrap();
        let (a, b) = (day.join("w1-0.parquet"), day.join("w1-1.parquet"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let staged = staging.join("merged");
        std::fs::write(&staged, b"ab").unwrap();
        // The crash came after the merged file was moved and one original removed.
        let fin = day.join("compact-1-0000.parquet");
        std::fs::rename(&staged, &fin).unwrap();
        std::fs::remove_file(&a).unwrap();
        let journal = staging.join("compact-t-d.journal");
        std::fs::write(
            &journal,
            format!(
                "out\t{}\t{}\nin\t{}\nin\t{}\n",
                staged.display(),
                fin.display(),
                a.display(),
                b.display()
            ),
        )
        .unwrap();
        finish(&journal).unwrap();
        let names: Vec<_> = std::fs::read_dir(&day)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["compact-1-0000.parquet"]);
        assert!(!journal.exists());
        assert_eq!(std::fs::read(&fin).unwrap(), b"ab");
    }
}
