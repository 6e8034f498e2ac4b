//! The durable log writer: rows in through a bounded queue, Parquet files out, hive-partitioned
//! by UTC date, each file visible only once complete.
//!
//! One writer thread per table and process. Producers never wait: [`LogWriter::try_log`] either
//! queues all the rows it is given or none (queue full: the caller counts a drop or refuses the
//! report). The thread rolls a file every `max_rows` rows or `max_age` after the first buffered
//! row, whichever comes first, and on close. Each file is written under a temporary name
//! starting with `.` (which readers ignore), fsynced, renamed into place, and the directory
//! fsynced, so a crash (even `kill -9`) leaves only complete files under final names. What a
//! crash can lose is what was queued or buffered and not yet rolled: at most `max_age` (or
//! `max_rows`) of rows.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::schema::{Table, SCHEMA_KEY, SCHEMA_VERSION};

/// How a writer rolls files and bounds its queue.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// The log root; files go to `root/<table>/date=YYYY-MM-DD/`.
    pub root: PathBuf,
    /// This writer's id, the prefix of its file names (unique per process writing to `root`).
    pub writer_id: String,
    /// Roll a file after this many rows.
    pub max_rows: usize,
    /// Roll a file this long after its first row arrived.
    pub max_age: Duration,
    /// Rows that may wait in the queue; beyond it `try_log` refuses.
    pub queue_rows: usize,
}

/// Why a writer cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The writer id cannot be a file name prefix.
    #[error("writer id {0:?}: want 1-64 of [A-Za-z0-9_-], not starting with '_' or '-'")]
    BadId(String),
    /// The log directory cannot be used.
    #[error("{path}: {source}")]
    Io {
        /// The directory or file.
        path: String,
        /// The OS error.
        source: io::Error,
    },
}

/// The queue had no room for the rows; nothing was queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("log queue full")]
pub struct QueueFull;

/// Counters a writer keeps, for metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Rows waiting in the queue now.
    pub queued: AtomicU64,
    /// Rows in files renamed into place.
    pub rows_written: AtomicU64,
    /// Files renamed into place.
    pub files_written: AtomicU64,
    /// Bytes of those files.
    pub bytes_written: AtomicU64,
    /// Rows refused because the queue was full.
    pub rows_dropped: AtomicU64,
    /// Failed file writes (the rows are kept and retried).
    pub write_errors: AtomicU64,
}

/// A running writer for one table.
pub struct LogWriter<R: Table> {
    tx: Option<SyncSender<Msg<R>>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<WriterStats>,
    queue_rows: u64,
}

enum Msg<R> {
    Row(R),
    Rows(Vec<R>),
    /// Write everything received so far, then signal.
    Flush(SyncSender<()>),
}

fn valid_writer_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with(['_', '-'])
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl<R: Table> LogWriter<R> {
    /// Starts the writer thread: creates the table directory, removes this writer's temporary
    /// files left by a crash, and continues the file sequence after the highest one present.
    pub fn start(cfg: WriterConfig) -> Result<LogWriter<R>, WriterError> {
        if !valid_writer_id(&cfg.writer_id) {
            return Err(WriterError::BadId(cfg.writer_id));
        }
        let table_dir = cfg.root.join(R::NAME);
        let io_err = |path: &Path| {
            let path = path.display().to_string();
            move |source| WriterError::Io { path, source }
        };
        std::fs::create_dir_all(&table_dir).map_err(io_err(&table_dir))?;
        let next_seq = recover(&table_dir, &cfg.writer_id).map_err(io_err(&table_dir))?;
        let stats = Arc::new(WriterStats::default());
        let (tx, rx) = sync_channel::<Msg<R>>(cfg.queue_rows.max(1));
        let thread_stats = stats.clone();
        let queue_rows = cfg.queue_rows as u64;
        let thread = std::thread::Builder::new()
            .name(format!("log-{}", R::NAME))
            .spawn(move || run(cfg, table_dir, next_seq, rx, thread_stats))
            .map_err(io_err(Path::new("writer thread")))?;
        Ok(LogWriter { tx: Some(tx), thread: Some(thread), stats, queue_rows })
    }

    /// Queues all of `rows`, or none if the queue has no room. Never blocks.
    pub fn try_log(&self, rows: Vec<R>) -> Result<(), QueueFull> {
        let n = rows.len() as u64;
        let Some(tx) = &self.tx else { return Err(QueueFull) };
        if self.stats.queued.fetch_add(n, Relaxed) + n > self.queue_rows {
            self.stats.queued.fetch_sub(n, Relaxed);
            self.stats.rows_dropped.fetch_add(n, Relaxed);
            return Err(QueueFull);
        }
        match tx.try_send(Msg::Rows(rows)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.queued.fetch_sub(n, Relaxed);
                self.stats.rows_dropped.fetch_add(n, Relaxed);
                Err(QueueFull)
            }
        }
    }

    /// Queues one row, or refuses it if the queue is full. Never blocks, never allocates: the
    /// form for the DNS query path.
    pub fn try_log_one(&self, row: R) -> Result<(), QueueFull> {
        let Some(tx) = &self.tx else { return Err(QueueFull) };
        if self.stats.queued.fetch_add(1, Relaxed) >= self.queue_rows {
            self.stats.queued.fetch_sub(1, Relaxed);
            self.stats.rows_dropped.fetch_add(1, Relaxed);
            return Err(QueueFull);
        }
        tx.try_send(Msg::Row(row)).map_err(|_| {
            self.stats.queued.fetch_sub(1, Relaxed);
            self.stats.rows_dropped.fetch_add(1, Relaxed);
            QueueFull
        })
    }

    /// Writes everything queued before this call into files, and returns when they are in
    /// place (for shutdown: the process may then exit without losing rows). Blocks; not for
    /// the query path.
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack_tx, ack_rx) = sync_channel(1);
        if tx.send(Msg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Writes everything queued and buffered, then stops the thread.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<R: Table> Drop for LogWriter<R> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Removes this writer's leftover temporary files and returns the next sequence number.
fn recover(table_dir: &Path, writer_id: &str) -> io::Result<u64> {
    let mut next = 0;
    let prefix = format!("{writer_id}-");
    let tmp_prefix = format!(".{writer_id}-");
    for part in std::fs::read_dir(table_dir)? {
        let part = part?.path();
        if !part.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&part)? {
            let f = f?;
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with(&tmp_prefix) && name.ends_with(".tmp") {
                tracing::warn!(file = %f.path().display(), "removing an incomplete log file left by a crash");
                std::fs::remove_file(f.path())?;
            } else if let Some(seq) = name
                .strip_prefix(&prefix)
                .and_then(|s| s.strip_suffix(".parquet"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                next = next.max(seq + 1);
            }
        }
    }
    Ok(next)
}

/// How often the writer thread looks at its queue. It polls rather than blocking on the
/// channel because a blocked receiver must be woken by every send: a futex wake and a context
/// switch per logged row, which on a busy DNS server costs more than the row itself.
const POLL: Duration = Duration::from_millis(20);

fn run<R: Table>(cfg: WriterConfig, table_dir: PathBuf, mut seq: u64, rx: std::sync::mpsc::Receiver<Msg<R>>, stats: Arc<WriterStats>) {
    let mut buf: Vec<R> = Vec::new();
    let mut first_at: Option<Instant> = None;
    let mut write = |buf: &mut Vec<R>, first_at: &mut Option<Instant>, closing: bool| {
        if buf.is_empty() {
            return;
        }
        match write_files(&table_dir, &cfg.writer_id, &mut seq, buf, &stats) {
            Ok(()) => {
                buf.clear();
                *first_at = None;
            }
            Err(e) => {
                stats.write_errors.fetch_add(1, Relaxed);
                tracing::error!(table = R::NAME, error = %e, rows = buf.len(), "log write failed; keeping the rows and retrying");
                *first_at = Some(Instant::now());
                if closing {
                    tracing::error!(table = R::NAME, rows = buf.len(), "rows lost at shutdown");
                }
            }
        }
    };
    loop {
        loop {
            match rx.try_recv() {
                Ok(Msg::Row(row)) => {
                    stats.queued.fetch_sub(1, Relaxed);
                    first_at.get_or_insert_with(Instant::now);
                    buf.push(row);
                    if buf.len() >= cfg.max_rows {
                        write(&mut buf, &mut first_at, false);
                    }
                }
                Ok(Msg::Rows(rows)) => {
                    stats.queued.fetch_sub(rows.len() as u64, Relaxed);
                    first_at.get_or_insert_with(Instant::now);
                    buf.extend(rows);
                    if buf.len() >= cfg.max_rows {
                        write(&mut buf, &mut first_at, false);
                    }
                }
                Ok(Msg::Flush(done)) => {
                    write(&mut buf, &mut first_at, false);
                    let _ = done.send(());
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    write(&mut buf, &mut first_at, true);
                    return;
                }
            }
        }
        if first_at.is_some_and(|t| t.elapsed() >= cfg.max_age) {
            write(&mut buf, &mut first_at, false);
        }
        std::thread::sleep(POLL);
    }
}

/// UTC date (YYYY-MM-DD) of a timestamp in µs.
fn date_of(ts_micros: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(ts_micros.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_owned()
}

fn write_files<R: Table>(table_dir: &Path, writer_id: &str, seq: &mut u64, rows: &[R], stats: &WriterStats) -> io::Result<()> {
    // Rows from around midnight go to the partition of their own date.
    const DAY_MICROS: i64 = 86_400_000_000;
    let mut by_day: BTreeMap<i64, Vec<&R>> = BTreeMap::new();
    for r in rows {
        by_day.entry(r.ts_micros().max(0) / DAY_MICROS).or_default().push(r);
    }
    for (day, part) in by_day {
        let date = date_of(day * DAY_MICROS);
        let dir = table_dir.join(format!("date={date}"));
        std::fs::create_dir_all(&dir)?;
        let name = format!("{writer_id}-{:010}.parquet", *seq);
        let tmp = dir.join(format!(".{name}.tmp"));
        let dest = dir.join(&name);
        let bytes = write_parquet::<R>(&tmp, &part).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        std::fs::rename(&tmp, &dest)?;
        File::open(&dir)?.sync_all()?;
        *seq += 1;
        stats.rows_written.fetch_add(part.len() as u64, Relaxed);
        stats.files_written.fetch_add(1, Relaxed);
        stats.bytes_written.fetch_add(bytes, Relaxed);
        tracing::info!(table = R::NAME, file = %dest.display(), rows = part.len(), bytes, "log file written");
    }
    Ok(())
}

fn write_parquet<R: Table>(path: &Path, rows: &[&R]) -> io::Result<u64> {
    let to_io = |e: parquet::errors::ParquetError| io::Error::other(e.to_string());
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new(SCHEMA_KEY.to_owned(), SCHEMA_VERSION.to_owned())]));
    for c in R::UNIQUE_COLUMNS {
        props = props.set_column_dictionary_enabled(parquet::schema::types::ColumnPath::from(*c), false);
    }
    let props = props.build();
    let file = File::create(path)?;
    let mut w = ArrowWriter::try_new(file.try_clone()?, R::schema(), Some(props)).map_err(to_io)?;
    for chunk in rows.chunks(65_536) {
        let batch = R::to_batch(chunk).map_err(|e| io::Error::other(e.to_string()))?;
        w.write(&batch).map_err(to_io)?;
    }
    w.close().map_err(to_io)?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

/// Microseconds since the epoch now, for callers that stamp rows.
pub fn now_micros() -> i64 {
    crate::schema::micros(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::DnsProbeRow;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn row(i: usize, ts: i64) -> DnsProbeRow {
        DnsProbeRow {
            ts,
            probe_id: crate::schema::ProbeId::new(format!("probe{i:05}").as_bytes()).unwrap(),
            pop: (i % 2 == 0).then(|| "ams".into()),
            resolver_ip: "192.0.2.1".parse().unwrap(),
            ecs_subnet: None,
            qtype: 1,
            server: "t".into(),
        }
    }

    fn files(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for part in std::fs::read_dir(root.join("dns_probe")).unwrap() {
            for f in std::fs::read_dir(part.unwrap().path()).unwrap() {
                out.push(f.unwrap().path());
            }
        }
        out.sort();
        out
    }

    fn count_rows(path: &Path) -> i64 {
        let r = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        let kv = r.metadata().file_metadata().key_value_metadata().unwrap();
        assert!(kv.iter().any(|k| k.key == SCHEMA_KEY && k.value.as_deref() == Some(SCHEMA_VERSION)));
        r.metadata().file_metadata().num_rows()
    }

    fn cfg(root: &Path, max_rows: usize, queue_rows: usize) -> WriterConfig {
        WriterConfig { root: root.into(), writer_id: "w1".into(), max_rows, max_age: Duration::from_secs(60), queue_rows }
    }

    #[test]
    fn rolls_by_rows_partitions_by_date_and_flushes_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let w = LogWriter::<DnsProbeRow>::start(cfg(dir.path(), 100, 10_000)).unwrap();
        let day1 = 1_764_115_200_000_000; // 2025-11-26T00:00:00Z
        for i in 0..250 {
            w.try_log_one(row(i, day1 - 500_000 + i as i64 * 10_000)).unwrap();
        }
        w.close();
        let f = files(dir.path());
        let names: Vec<String> = f.iter().map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        // 100 rows per roll; the first roll straddles midnight (50 rows each side), so it
        // becomes two files, one per date partition.
        assert_eq!(
            names,
            [
                "dns_probe/date=2025-11-25/w1-0000000000.parquet",
                "dns_probe/date=2025-11-26/w1-0000000001.parquet",
                "dns_probe/date=2025-11-26/w1-0000000002.parquet",
                "dns_probe/date=2025-11-26/w1-0000000003.parquet",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
        );
        assert_eq!(f.iter().map(|p| count_rows(p)).collect::<Vec<_>>(), [50, 50, 100, 50]);
    }

    #[test]
    fn restart_continues_the_sequence_and_removes_crash_debris() {
        let dir = tempfile::tempdir().unwrap();
        let w = LogWriter::<DnsProbeRow>::start(cfg(dir.path(), 10, 100)).unwrap();
        w.try_log((0..10).map(|i| row(i, now_micros())).collect()).unwrap();
        w.close();
        let before = files(dir.path());
        assert_eq!(before.len(), 1);
        let debris = before[0].parent().unwrap().join(".w1-0000000001.parquet.tmp");
        std::fs::write(&debris, b"half a file").unwrap();
        let w = LogWriter::<DnsProbeRow>::start(cfg(dir.path(), 10, 100)).unwrap();
        assert!(!debris.exists());
        w.try_log((0..10).map(|i| row(i, now_micros())).collect()).unwrap();
        w.close();
        let after = files(dir.path());
        assert_eq!(after.len(), 2);
        assert!(after[1].ends_with("w1-0000000001.parquet"), "{after:?}");
    }

    #[test]
    fn flush_writes_everything_queued() {
        let dir = tempfile::tempdir().unwrap();
        let w = LogWriter::<DnsProbeRow>::start(cfg(dir.path(), 1_000_000, 1000)).unwrap();
        w.try_log((0..7).map(|i| row(i, now_micros())).collect()).unwrap();
        w.flush();
        let f = files(dir.path());
        assert_eq!(f.len(), 1);
        assert_eq!(count_rows(&f[0]), 7);
        assert_eq!(w.stats().rows_written.load(Relaxed), 7);
    }

    #[test]
    fn full_queue_refuses_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        let w = LogWriter::<DnsProbeRow>::start(cfg(dir.path(), 1_000_000, 5)).unwrap();
        assert_eq!(w.try_log((0..6).map(|i| row(i, 0)).collect()), Err(QueueFull));
        assert_eq!(w.stats().rows_dropped.load(Relaxed), 6);
        assert!(w.try_log((0..5).map(|i| row(i, 0)).collect()).is_ok());
        w.close();
    }

    #[test]
    fn bad_writer_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["", ".hidden", "_x", "a/b", "a b"] {
            let mut c = cfg(dir.path(), 1, 1);
            c.writer_id = id.into();
            assert!(matches!(LogWriter::<DnsProbeRow>::start(c), Err(WriterError::BadId(_))), "{id:?}");
        }
    }
}
