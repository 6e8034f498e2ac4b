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
//!
//! When a write fails (a full or read-only disk), the writer stops accepting rows at once:
//! [`LogWriter::try_log`] refuses with [`LogRefused::Failing`] and the reason, so a caller never
//! acknowledges a row it cannot keep. What it had already accepted stays in memory (bounded: at
//! most one file's worth plus the queue) and is retried with exponential backoff, never on
//! every arriving row; the first write that succeeds makes the writer accept rows again. A
//! batch that spans midnight is one file per date, and each file is written once: a date
//! already in place is not rewritten when another date's file fails.
//!
//! A full disk is the common failure, and the rows accepted just before it would be lost by a
//! crash while the disk stays full. So each writer keeps a *reserve*: a file of real, allocated
//! bytes (`.reserve-<table>-<writer_id>` in the log root; readers ignore names starting with `.`).
//! When a write fails for lack of space, the writer deletes the reserve and writes what it had
//! accepted into the room that frees; it takes rows again only once the reserve is back.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::mpsc::{sync_channel, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
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
    /// Bytes kept in reserve on the log's file system for writing accepted rows when the disk
    /// fills (0: none). `None`: [`DEFAULT_RESERVE`], or an eighth of the file system if smaller.
    pub reserve_bytes: Option<u64>,
}

/// The reserve a writer keeps unless told otherwise: room for about 400,000 rows of either
/// table (about 40 bytes a row, compressed), more than one file plus a full queue at the
/// default settings.
pub const DEFAULT_RESERVE: u64 = 16 << 20;

/// Space held back on the log's file system, released to write accepted rows on a full disk.
struct Reserve {
    path: PathBuf,
    bytes: u64,
    held: bool,
}

impl Reserve {
    /// Creates (or re-creates) the reserve file with its bytes allocated.
    fn take(&mut self) -> io::Result<()> {
        if self.held || self.bytes == 0 {
            return Ok(());
        }
        let result = File::create(&self.path).and_then(|f| {
            fs4::FileExt::allocate(&f, self.bytes)?;
            f.sync_all()
        });
        match result {
            Ok(()) => {
                self.held = true;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                Err(e)
            }
        }
    }

    /// Deletes the reserve; true if there was one to free.
    fn release(&mut self) -> bool {
        if !self.held {
            return false;
        }
        self.held = false;
        std::fs::remove_file(&self.path).is_ok()
    }

    /// Whether the writer may take rows: the reserve is in place (or none is kept).
    fn ready(&self) -> bool {
        self.held || self.bytes == 0
    }
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

/// Why rows were not accepted; nothing was queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogRefused {
    /// The queue had no room for the rows (the writer is behind).
    #[error("log queue full")]
    QueueFull,
    /// Writing files fails (the reason, e.g. a full disk): rows that cannot be kept are not
    /// taken until a retry succeeds.
    #[error("log writes are failing: {0}")]
    Failing(String),
}

impl LogRefused {
    /// The label metrics and refusals count this by.
    pub fn reason(&self) -> &'static str {
        match self {
            LogRefused::QueueFull => "queue_full",
            LogRefused::Failing(_) => "log_write_failing",
        }
    }
}

/// Counters a writer keeps, for metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Rows waiting in the queue now.
    pub queued: AtomicU64,
    /// Rows taken from the queue and waiting in memory for their file.
    pub buffered: AtomicU64,
    /// Rows in files renamed into place.
    pub rows_written: AtomicU64,
    /// Files renamed into place.
    pub files_written: AtomicU64,
    /// Bytes of those files.
    pub bytes_written: AtomicU64,
    /// Rows refused because the queue was full.
    pub rows_dropped: AtomicU64,
    /// Rows refused because writes were failing.
    pub rows_refused_failing: AtomicU64,
    /// Failed file writes (the rows are kept and retried).
    pub write_errors: AtomicU64,
    /// 1 while writes are failing, else 0.
    pub failing: AtomicU64,
    /// Why writes are failing, and since when; `None` when they are not.
    failure: Mutex<Option<Failure>>,
}

impl WriterStats {
    /// The writer's metric families, one home for both log writers' names (the collector's
    /// under `geodns_beacon_log_`, the server's probe log under `geodns_probe_log_`): the
    /// name's suffix, whether it is a counter (else a gauge), its help and its value now.
    pub fn families(&self) -> [(&'static str, bool, &'static str, u64); 9] {
        let g = |v: &AtomicU64| v.load(Relaxed);
        [
            (
                "queued_rows",
                false,
                "Rows waiting for the writer.",
                g(&self.queued),
            ),
            (
                "buffered_rows",
                false,
                "Acknowledged rows in memory waiting for their file.",
                g(&self.buffered),
            ),
            (
                "write_failing",
                false,
                "1 while log writes fail (new rows are refused), else 0.",
                g(&self.failing),
            ),
            (
                "rows_refused_failing_total",
                true,
                "Rows refused because log writes were failing.",
                g(&self.rows_refused_failing),
            ),
            (
                "rows_written_total",
                true,
                "Rows in files renamed into place.",
                g(&self.rows_written),
            ),
            (
                "files_written_total",
                true,
                "Log files renamed into place.",
                g(&self.files_written),
            ),
            (
                "bytes_written_total",
                true,
                "Bytes of log files renamed into place.",
                g(&self.bytes_written),
            ),
            (
                "rows_dropped_total",
                true,
                "Rows refused because the queue was full.",
                g(&self.rows_dropped),
            ),
            (
                "write_errors_total",
                true,
                "Failed file writes (the rows are kept and retried).",
                g(&self.write_errors),
            ),
        ]
    }
}

/// A failing writer's state, for health checks.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The last write error.
    pub error: String,
    /// When writes began failing.
    pub since: SystemTime,
}

impl WriterStats {
    /// Why writes are failing, or `None` when they work.
    pub fn failure(&self) -> Option<Failure> {
        self.failure.lock().expect("not poisoned").clone()
    }

    fn set_failure(&self, error: Option<String>) {
        let mut f = self.failure.lock().expect("not poisoned");
        match error {
            Some(error) => {
                let since = f.as_ref().map_or_else(SystemTime::now, |f| f.since);
                *f = Some(Failure { error, since });
                self.failing.store(1, SeqCst);
            }
            None => {
                *f = None;
                self.failing.store(0, Relaxed);
            }
        }
    }

    fn refuse_if_failing(&self, n: u64) -> Result<(), LogRefused> {
        if self.failing.load(SeqCst) == 0 {
            return Ok(());
        }
        self.rows_refused_failing.fetch_add(n, Relaxed);
        let error = self
            .failure()
            .map_or_else(|| "unknown error".to_owned(), |f| f.error);
        Err(LogRefused::Failing(error))
    }
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
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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
        let bytes = cfg.reserve_bytes.unwrap_or_else(|| {
            fs4::total_space(&table_dir)
                .map_or(DEFAULT_RESERVE, |total| DEFAULT_RESERVE.min(total / 8))
        });
        // In the log root, beside the table directories: a table directory holds only partitions.
        let mut reserve = Reserve {
            path: cfg
                .root
                .join(format!(".reserve-{}-{}", R::NAME, cfg.writer_id)),
            bytes,
            held: false,
        };
        let stats = Arc::new(WriterStats::default());
        // A disk already full (or read-only) does not stop the process: the writer starts
        // refusing rows, as it would had the disk failed later, and recovers the same way.
        let failing = reserve.take().err().map(|e| {
            let e = format!("cannot reserve {bytes} bytes in {}: {e}", table_dir.display());
            tracing::error!(table = R::NAME, error = %e, "log writes cannot start; refusing rows until they can");
            stats.set_failure(Some(e));
        });
        let (tx, rx) = sync_channel::<Msg<R>>(cfg.queue_rows.max(1));
        let thread_stats = stats.clone();
        let queue_rows = cfg.queue_rows as u64;
        let thread = std::thread::Builder::new()
            .name(format!("log-{}", R::NAME))
            .spawn(move || {
                run(
                    cfg,
                    table_dir,
                    next_seq,
                    reserve,
                    failing.is_some(),
                    rx,
                    thread_stats,
                )
            })
            .map_err(io_err(Path::new("writer thread")))?;
        Ok(LogWriter {
            tx: Some(tx),
            thread: Some(thread),
            stats,
            queue_rows,
        })
    }

    /// Queues all of `rows`, or none if the queue has no room or writes are failing. Never
    /// blocks. `Ok` means the rows will be in a file within `max_age` unless the process dies
    /// or the disk fails first.
    pub fn try_log(&self, rows: Vec<R>) -> Result<(), LogRefused> {
        let n = rows.len() as u64;
        let Some(tx) = &self.tx else {
            return Err(LogRefused::QueueFull);
        };
        // Count in first, then look at the flag (both SeqCst): the writer raises the flag and
        // then waits for the count to drain, so no row slips past a failure unwritten.
        if self.stats.queued.fetch_add(n, SeqCst) + n > self.queue_rows {
            self.stats.queued.fetch_sub(n, SeqCst);
            self.stats.rows_dropped.fetch_add(n, Relaxed);
            return Err(LogRefused::QueueFull);
        }
        if let Err(e) = self.stats.refuse_if_failing(n) {
            self.stats.queued.fetch_sub(n, SeqCst);
            return Err(e);
        }
        match tx.try_send(Msg::Rows(rows)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.queued.fetch_sub(n, Relaxed);
                self.stats.rows_dropped.fetch_add(n, Relaxed);
                Err(LogRefused::QueueFull)
            }
        }
    }

    /// Queues one row, or refuses it if the queue is full or writes are failing. Never blocks,
    /// and allocates only to say why writes fail: the form for the DNS query path.
    pub fn try_log_one(&self, row: R) -> Result<(), LogRefused> {
        let Some(tx) = &self.tx else {
            return Err(LogRefused::QueueFull);
        };
        if self.stats.queued.fetch_add(1, SeqCst) >= self.queue_rows {
            self.stats.queued.fetch_sub(1, SeqCst);
            self.stats.rows_dropped.fetch_add(1, Relaxed);
            return Err(LogRefused::QueueFull);
        }
        if let Err(e) = self.stats.refuse_if_failing(1) {
            self.stats.queued.fetch_sub(1, SeqCst);
            return Err(e);
        }
        tx.try_send(Msg::Row(row)).map_err(|_| {
            self.stats.queued.fetch_sub(1, Relaxed);
            self.stats.rows_dropped.fetch_add(1, Relaxed);
            LogRefused::QueueFull
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

/// Removes this writer's leftover temporary files (in the staging directory, and beside the
/// files where older versions wrote them) and returns the next sequence number.
fn recover(table_dir: &Path, writer_id: &str) -> io::Result<u64> {
    let mut next = 0;
    let prefix = format!("{writer_id}-");
    let tmp_prefix = format!(".{writer_id}-");
    let mut dirs = vec![staging_dir(table_dir)];
    for part in std::fs::read_dir(table_dir)? {
        let part = part?.path();
        if part.is_dir() {
            dirs.push(part);
        }
    }
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        for f in std::fs::read_dir(dir)? {
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

/// The first retry after a failed write, doubled after each further failure up to
/// [`MAX_BACKOFF`]: a full disk costs a few writes a second at first, then one every few
/// seconds, never one per arriving row.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The writer thread's buffer and its write schedule.
struct Buffer<R: Table> {
    cfg: WriterConfig,
    table_dir: PathBuf,
    seq: u64,
    stats: Arc<WriterStats>,
    rows: Vec<R>,
    rx: std::sync::mpsc::Receiver<Msg<R>>,
    /// Flushes to acknowledge once the rows before them are written.
    flushes: Vec<SyncSender<()>>,
    reserve: Reserve,
    /// When the oldest buffered row arrived (the roll deadline counts from it).
    first_at: Option<Instant>,
    /// While failing: when to try next, and the delay after that.
    retry: Option<(Instant, Duration)>,
}

impl<R: Table> Buffer<R> {
    fn add(&mut self, rows: impl IntoIterator<Item = R>, n: usize) {
        self.stats.queued.fetch_sub(n as u64, SeqCst);
        self.stats.buffered.fetch_add(n as u64, Relaxed);
        self.first_at.get_or_insert_with(Instant::now);
        self.rows.extend(rows);
    }

    /// Whether a write is due now: the buffer is full or old enough, or a retry is due.
    fn due(&self) -> bool {
        match self.retry {
            Some((at, _)) => Instant::now() >= at,
            None => {
                self.rows.len() >= self.cfg.max_rows
                    || self
                        .first_at
                        .is_some_and(|t| t.elapsed() >= self.cfg.max_age)
            }
        }
    }

    /// Takes into the buffer every row a producer counted in before the failing flag rose:
    /// producers count themselves in before they look at the flag, so once the count is zero
    /// with the flag up, no accepted row is still on its way.
    fn drain_accepted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            while let Ok(msg) = self.rx.try_recv() {
                match msg {
                    Msg::Row(row) => self.add([row], 1),
                    Msg::Rows(rows) => {
                        let n = rows.len();
                        self.add(rows, n);
                    }
                    Msg::Flush(done) => self.flushes.push(done),
                }
            }
            if self.stats.queued.load(SeqCst) == 0 || Instant::now() > deadline {
                return;
            }
            std::thread::yield_now();
        }
    }

    fn write_rows(&mut self) -> io::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let before = self.rows.len();
        let result = write_files(
            &self.table_dir,
            &self.cfg.writer_id,
            &mut self.seq,
            &mut self.rows,
            &self.stats,
        );
        self.stats
            .buffered
            .fetch_sub((before - self.rows.len()) as u64, Relaxed);
        if result.is_ok() {
            self.first_at = None;
        }
        result
    }

    /// Writes the buffer (on a full disk, into the room the reserve frees) and restores the
    /// reserve if it was used; on failure keeps what was not written, refuses new rows, and
    /// schedules a retry.
    fn write(&mut self) {
        if self.rows.is_empty() && self.retry.is_none() {
            for done in self.flushes.drain(..) {
                let _ = done.send(());
            }
            return;
        }
        let mut result = self.write_rows();
        if let Err(e) = &result {
            if e.kind() == io::ErrorKind::StorageFull && self.reserve.held {
                // Refuse from now on, take every row accepted before that, then write them all
                // into the room the reserve frees.
                self.stats.set_failure(Some(e.to_string()));
                self.drain_accepted();
                self.reserve.release();
                tracing::warn!(
                    table = R::NAME,
                    bytes = self.reserve.bytes,
                    rows = self.rows.len(),
                    "disk full: writing accepted rows into the reserve"
                );
                result = self.write_rows();
            }
        }
        let result = result.and_then(|()| {
            self.reserve.take().map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot restore the {}-byte reserve: {e}",
                        self.reserve.bytes
                    ),
                )
            })
        });
        match result {
            Ok(()) => {
                if self.retry.take().is_some() {
                    tracing::info!(table = R::NAME, "log writes work again; accepting rows");
                }
                self.stats.set_failure(None);
            }
            Err(e) => {
                self.stats.write_errors.fetch_add(1, Relaxed);
                let delay = self
                    .retry
                    .map_or(FIRST_BACKOFF, |(_, d)| (d * 2).min(MAX_BACKOFF));
                if self.retry.is_none() {
                    tracing::error!(table = R::NAME, error = %e, rows = self.rows.len(), "log write failed; refusing new rows, keeping these and retrying");
                } else {
                    tracing::warn!(table = R::NAME, error = %e, rows = self.rows.len(), retry_in_ms = delay.as_millis() as u64, "log write failed again");
                }
                self.stats.set_failure(Some(e.to_string()));
                self.retry = Some((Instant::now() + delay, delay));
            }
        }
        debug_assert!(self.retry.is_some() || self.reserve.ready());
        for done in self.flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

fn run<R: Table>(
    cfg: WriterConfig,
    table_dir: PathBuf,
    seq: u64,
    reserve: Reserve,
    failing: bool,
    rx: std::sync::mpsc::Receiver<Msg<R>>,
    stats: Arc<WriterStats>,
) {
    let retry = failing.then(|| (Instant::now() + FIRST_BACKOFF, FIRST_BACKOFF));
    let mut b = Buffer {
        cfg,
        table_dir,
        seq,
        stats,
        rows: Vec::new(),
        rx,
        flushes: Vec::new(),
        reserve,
        first_at: None,
        retry,
    };
    loop {
        loop {
            match b.rx.try_recv() {
                Ok(Msg::Row(row)) => b.add([row], 1),
                Ok(Msg::Rows(rows)) => {
                    let n = rows.len();
                    b.add(rows, n);
                }
                Ok(Msg::Flush(done)) => {
                    b.flushes.push(done);
                    b.write();
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    b.write();
                    if !b.rows.is_empty() {
                        tracing::error!(
                            table = R::NAME,
                            rows = b.rows.len(),
                            "log writes failing at shutdown: these rows are lost"
                        );
                    }
                    // The reserve is for a running writer; a crash leaves it for the next start.
                    b.reserve.release();
                    return;
                }
            }
            // A full buffer is written at once (unless a retry is pending), not after the queue drains.
            if b.retry.is_none() && b.rows.len() >= b.cfg.max_rows {
                b.write();
            }
        }
        if b.due() {
            b.write();
        }
        std::thread::sleep(POLL);
    }
}

/// UTC date (YYYY-MM-DD) of a timestamp in µs.
fn date_of(ts_micros: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(ts_micros.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_owned()
}

/// Writes `rows` as one file per UTC date and removes from `rows` those now in a file, so a
/// failure part-way leaves only the unwritten dates to retry (never a second copy of a date).
fn write_files<R: Table>(
    table_dir: &Path,
    writer_id: &str,
    seq: &mut u64,
    rows: &mut Vec<R>,
    stats: &WriterStats,
) -> io::Result<()> {
    // Rows from around midnight go to the partition of their own date.
    const DAY_MICROS: i64 = 86_400_000_000;
    let day = |r: &R| r.ts_micros().max(0) / DAY_MICROS;
    let mut by_day: BTreeMap<i64, Vec<&R>> = BTreeMap::new();
    for r in rows.iter() {
        by_day.entry(day(r)).or_default().push(r);
    }
    let mut written = Vec::new();
    let mut result = Ok(());
    for (d, part) in by_day {
        match write_day(table_dir, writer_id, *seq, d * DAY_MICROS, &part) {
            Ok((dest, bytes)) => {
                *seq += 1;
                stats.rows_written.fetch_add(part.len() as u64, Relaxed);
                stats.files_written.fetch_add(1, Relaxed);
                stats.bytes_written.fetch_add(bytes, Relaxed);
                tracing::info!(table = R::NAME, file = %dest.display(), rows = part.len(), bytes, "log file written");
                written.push(d);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        rows.clear();
    } else if !written.is_empty() {
        rows.retain(|r| !written.contains(&day(r)));
    }
    result
}

/// Where files are written before they are renamed into their table: `<root>/.incoming/`,
/// outside every table's directory, so a reader scanning a table (polars, DuckDB, pandas)
/// never meets a file being written.
pub(crate) fn staging_dir(table_dir: &Path) -> PathBuf {
    table_dir
        .parent()
        .unwrap_or(Path::new("."))
        .join(".incoming")
}

/// Writes one date's file, whole or not at all (`geomap::atomic_file`: temporary file in the
/// staging directory, fsync, rename, directory fsync).
fn write_day<R: Table>(
    table_dir: &Path,
    writer_id: &str,
    seq: u64,
    day_start: i64,
    part: &[&R],
) -> io::Result<(PathBuf, u64)> {
    let dir = table_dir.join(format!("date={}", date_of(day_start)));
    std::fs::create_dir_all(&dir)?;
    let dest = dir.join(format!("{writer_id}-{seq:010}.parquet"));
    let staging = staging_dir(table_dir);
    std::fs::create_dir_all(&staging)?;
    let bytes =
        geomap::atomic_file::write_staged(&dest, &staging, |file| write_parquet::<R>(file, part))?;
    Ok((dest, bytes))
}

/// How every log file is written (the writer's and `logs compact`'s): Snappy, the contract's
/// schema version in the file metadata, no dictionary for the (nearly) unique columns.
pub(crate) fn properties(unique_columns: &[&str]) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            SCHEMA_KEY.to_owned(),
            SCHEMA_VERSION.to_owned(),
        )]));
    for c in unique_columns {
        props = props
            .set_column_dictionary_enabled(parquet::schema::types::ColumnPath::from(*c), false);
    }
    props.build()
}

/// A Parquet error as an I/O error; the OS error inside keeps its kind (a full disk must read as
/// one: the reserve depends on it).
pub(crate) fn to_io(e: parquet::errors::ParquetError) -> io::Error {
    match e {
        parquet::errors::ParquetError::External(inner) => match inner.downcast::<io::Error>() {
            Ok(io) => *io,
            Err(other) => io::Error::other(other),
        },
        e => io::Error::other(e),
    }
}

fn write_parquet<R: Table>(file: &mut File, rows: &[&R]) -> io::Result<u64> {
    let props = properties(R::UNIQUE_COLUMNS);
    let mut w = ArrowWriter::try_new(file.try_clone()?, R::schema(), Some(props)).map_err(to_io)?;
    for chunk in rows.chunks(65_536) {
        let batch = R::to_batch(chunk).map_err(|e| io::Error::other(e.to_string()))?;
        w.write(&batch).map_err(to_io)?;
    }
    w.close().map_err(to_io)?;
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
        assert!(kv
            .iter()
            .any(|k| k.key == SCHEMA_KEY && k.value.as_deref() == Some(SCHEMA_VERSION)));
        r.metadata().file_metadata().num_rows()
    }

    fn cfg(root: &Path, max_rows: usize, queue_rows: usize) -> WriterConfig {
        WriterConfig {
            root: root.into(),
            writer_id: "w1".into(),
            max_rows,
            max_age: Duration::from_secs(60),
            queue_rows,
            reserve_bytes: Some(0),
        }
    }

    #[test]
    fn rolls_by_rows_partitions_by_date_and_flushes_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let w = LogWriter::<DnsProbeRow>::start(cfg(dir.path(), 100, 10_000)).unwrap();
        let day1 = 1_764_115_200_000_000; // 2025-11-26T00:00:00Z
        for i in 0..250 {
            w.try_log_one(row(i, day1 - 500_000 + i as i64 * 10_000))
                .unwrap();
        }
        w.close();
        let f = files(dir.path());
        let names: Vec<String> = f
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
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
        assert_eq!(
            f.iter().map(|p| count_rows(p)).collect::<Vec<_>>(),
            [50, 50, 100, 50]
        );
    }

    #[test]
    fn restart_continues_the_sequence_and_removes_crash_debris() {
        let dir = tempfile::tempdir().unwrap();
        let w = LogWriter::<DnsProbeRow>::start(cfg(dir.path(), 10, 100)).unwrap();
        w.try_log((0..10).map(|i| row(i, now_micros())).collect())
            .unwrap();
        w.close();
        let before = files(dir.path());
        assert_eq!(before.len(), 1);
        // Debris where this version stages files, and where older ones did.
        let debris = dir
            .path()
            .join(".incoming/.w1-0000000001.parquet.x1y2z3.tmp");
        let old_debris = before[0]
            .parent()
            .unwrap()
            .join(".w1-0000000001.parquet.tmp");
        std::fs::write(&debris, b"half a file").unwrap();
        std::fs::write(&old_debris, b"half a file").unwrap();
        let w = LogWriter::<DnsProbeRow>::start(cfg(dir.path(), 10, 100)).unwrap();
        assert!(!debris.exists() && !old_debris.exists());
        w.try_log((0..10).map(|i| row(i, now_micros())).collect())
            .unwrap();
        w.close();
        let after = files(dir.path());
        assert_eq!(after.len(), 2);
        assert!(after[1].ends_with("w1-0000000001.parquet"), "{after:?}");
    }

    #[test]
    fn flush_writes_everything_queued() {
        let dir = tempfile::tempdir().unwrap();
        let w = LogWriter::<DnsProbeRow>::start(cfg(dir.path(), 1_000_000, 1000)).unwrap();
        w.try_log((0..7).map(|i| row(i, now_micros())).collect())
            .unwrap();
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
        assert_eq!(
            w.try_log((0..6).map(|i| row(i, 0)).collect()),
            Err(LogRefused::QueueFull)
        );
        assert_eq!(w.stats().rows_dropped.load(Relaxed), 6);
        assert!(w.try_log((0..5).map(|i| row(i, 0)).collect()).is_ok());
        w.close();
    }

    /// Blocks writes to one date partition by putting a plain file where its directory goes.
    fn block_date(root: &Path, date: &str) -> PathBuf {
        let p = root.join("dns_probe").join(format!("date={date}"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"not a directory").unwrap();
        p
    }

    fn wait_for(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// 2025-11-26T00:00:00Z in µs.
    const MIDNIGHT: i64 = 1_764_115_200_000_000;

    /// A writer rolling every 20 ms whose 2025-11-26 partition cannot be written.
    fn writer_with_2025_11_26_blocked() -> (tempfile::TempDir, LogWriter<DnsProbeRow>, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path(), 1_000_000, 1000);
        c.max_age = Duration::from_millis(20);
        let w = LogWriter::<DnsProbeRow>::start(c).unwrap();
        let blocker = block_date(dir.path(), "2025-11-26");
        (dir, w, blocker)
    }

    #[test]
    fn failing_writes_refuse_new_rows_keep_the_old_retry_with_backoff_and_recover() {
        let (dir, w, blocker) = writer_with_2025_11_26_blocked();
        let day = MIDNIGHT;
        w.try_log((0..5).map(|i| row(i, day + i as i64)).collect())
            .unwrap();
        wait_for("the first failure", || w.stats().failure().is_some());
        // Refused, with the reason, and counted; the accepted rows are kept in memory.
        let refused = w.try_log_one(row(9, day)).unwrap_err();
        assert!(
            matches!(&refused, LogRefused::Failing(e) if !e.is_empty()),
            "{refused:?}"
        );
        assert_eq!(w.stats().rows_refused_failing.load(Relaxed), 1);
        assert_eq!(w.stats().buffered.load(Relaxed), 5);
        // Backoff: over 600 ms, a handful of retries (100, 200, 400 ms), not one per poll.
        std::thread::sleep(Duration::from_millis(600));
        let errors = w.stats().write_errors.load(Relaxed);
        assert!(
            (2..=5).contains(&errors),
            "{errors} write attempts in 600 ms"
        );
        // The disk comes back: the kept rows are written by the next retry, and rows are taken again.
        std::fs::remove_file(&blocker).unwrap();
        wait_for("recovery", || w.stats().failure().is_none());
        assert_eq!(w.stats().rows_written.load(Relaxed), 5);
        w.try_log_one(row(10, day + 10)).unwrap();
        w.close();
        let f = files(dir.path());
        assert_eq!(f.iter().map(|p| count_rows(p)).sum::<i64>(), 6);
    }

    #[test]
    fn a_batch_across_midnight_writes_each_date_once_when_one_date_fails() {
        let (dir, w, blocker) = writer_with_2025_11_26_blocked();
        let midnight = MIDNIGHT;
        // Six rows before midnight, six after: the second date's file cannot be written.
        w.try_log((0..12).map(|i| row(i, midnight - 6 + i as i64)).collect())
            .unwrap();
        wait_for("two failed retries", || {
            w.stats().write_errors.load(Relaxed) >= 2
        });
        std::fs::remove_file(&blocker).unwrap();
        wait_for("recovery", || w.stats().failure().is_none());
        w.close();
        let f = files(dir.path());
        let rows: Vec<i64> = f.iter().map(|p| count_rows(p)).collect();
        assert_eq!(rows, [6, 6], "{f:?}");
    }

    #[test]
    fn the_reserve_is_allocated_at_start_and_ignored_by_readers() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path(), 10, 100);
        c.reserve_bytes = Some(1 << 20);
        let w = LogWriter::<DnsProbeRow>::start(c).unwrap();
        let reserve = dir.path().join(".reserve-dns_probe-w1");
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), 1 << 20);
        assert!(w.stats().failure().is_none());
        w.close();
    }

    #[test]
    fn bad_writer_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["", ".hidden", "_x", "a/b", "a b"] {
            let mut c = cfg(dir.path(), 1, 1);
            c.writer_id = id.into();
            assert!(
                matches!(
                    LogWriter::<DnsProbeRow>::start(c),
                    Err(WriterError::BadId(_))
                ),
                "{id:?}"
            );
        }
    }
}
