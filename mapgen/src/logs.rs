//! Reading the beacon logs (`docs/beacon-schema.md`): polars streams the hive-partitioned
//! Parquet files of the window in batches; each row is validated, counted by reason if bad, and
//! otherwise compacted to integers (pairing hash, timestamp, address key, PoP index) and routed
//! to a partition by its pairing hash. Nothing here aborts on bad data; only unreadable files do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use geodns_beacon::schema::{valid_probe_id, MIN_RTT_MS, SCHEMA_KEY, SCHEMA_VERSION};
use geodns_beacon::{DnsProbeRow, RttReportRow, Table};
use polars::prelude::*;

use crate::key;
use crate::partition::{Partitions, Record};

/// Prefix lengths of the client aggregation levels: (IPv4, IPv6), finest first.
pub const LEVELS: [(u8, u8); 3] = [(24, 48), (20, 40), (16, 32)];

/// Prefix lengths of the resolver levels: the resolver itself (an IPv6 resolver is its /64, see
/// [`key`]) and its /24 or /48.
pub const RESOLVER_LEVELS: [(u8, u8); 2] = [(32, 64), (24, 48)];

/// The largest gap between a DNS probe and the report it pairs with (the contract's 10 min).
pub const MAX_PAIR_GAP_MICROS: i64 = 600_000_000;

/// Bad rows of one table, by reason, with up to three samples each.
#[derive(Debug, Default)]
pub struct Validation {
    /// Rows in the window, good and bad, and rows with no or a future timestamp.
    pub rows: u64,
    /// Reason -> (rows, samples): invalid rows.
    pub bad: BTreeMap<&'static str, (u64, Vec<String>)>,
    /// Reason -> (rows, samples): valid rows outside the window asked for.
    pub outside: BTreeMap<&'static str, (u64, Vec<String>)>,
    /// The oldest and newest timestamp of the valid rows used (µs): the data window.
    pub span: Option<(i64, i64)>,
}

impl Validation {
    fn seen(&mut self, ts: i64) {
        self.span = Some(match self.span {
            Some((a, b)) => (a.min(ts), b.max(ts)),
            None => (ts, ts),
        });
    }

    fn refuse(&mut self, reason: &'static str, sample: impl FnOnce() -> String) {
        let e = self.bad.entry(reason).or_default();
        e.0 += 1;
        if e.1.len() < 3 {
            e.1.push(sample());
        }
    }

    /// Records rows the window left out: invalid ones (no timestamp, from the future) count
    /// as read and bad; the others only as outside the window.
    pub fn outside(&mut self, reason: &'static str, rows: u64, sample: String, invalid: bool) {
        if invalid {
            self.rows += rows;
            self.bad.insert(reason, (rows, vec![sample]));
        } else {
            self.outside.insert(reason, (rows, vec![sample]));
        }
    }

    /// Bad rows of all reasons.
    pub fn bad_rows(&self) -> u64 {
        self.bad.values().map(|(n, _)| n).sum()
    }
}

/// A valid `rtt_report` row, compacted.
pub struct ReportRecord {
    /// [`pair_hash`] of its probe id and PoP.
    pub pair: u64,
    /// Microseconds since the epoch.
    pub ts: i64,
    /// The client's address ([`key`]: IPv6 to its /64): sessions are told apart by it;
    /// pairing cuts it to the client /24 or /48.
    pub client: u64,
    /// PoP index.
    pub pop: u16,
    /// RTT in ms; `None` for a failed fetch.
    pub rtt: Option<f32>,
}

impl Record for ReportRecord {
    fn frame(rows: &[Self]) -> PolarsResult<DataFrame> {
        DataFrame::new(
            rows.len(),
            vec![
                UInt64Chunked::from_vec("pair".into(), rows.iter().map(|r| r.pair).collect())
                    .into_column(),
                Int64Chunked::from_vec("ts_r".into(), rows.iter().map(|r| r.ts).collect())
                    .into_column(),
                UInt64Chunked::from_vec("client".into(), rows.iter().map(|r| r.client).collect())
                    .into_column(),
                UInt16Chunked::from_vec("pop".into(), rows.iter().map(|r| r.pop).collect())
                    .into_column(),
                Float32Chunked::from_iter_options("rtt".into(), rows.iter().map(|r| r.rtt))
                    .into_column(),
            ],
        )
    }
}

/// A valid `dns_probe` row, compacted.
pub struct ProbeRecord {
    /// [`pair_hash`] of its probe id and PoP.
    pub pair: u64,
    /// Microseconds since the epoch.
    pub ts: i64,
    /// The resolver's key (/32, or /64 for IPv6).
    pub resolver: u64,
}

impl Record for ProbeRecord {
    fn frame(rows: &[Self]) -> PolarsResult<DataFrame> {
        DataFrame::new(
            rows.len(),
            vec![
                UInt64Chunked::from_vec("pair".into(), rows.iter().map(|r| r.pair).collect())
                    .into_column(),
                Int64Chunked::from_vec("ts_d".into(), rows.iter().map(|r| r.ts).collect())
                    .into_column(),
                UInt64Chunked::from_vec(
                    "resolver".into(),
                    rows.iter().map(|r| r.resolver).collect(),
                )
                .into_column(),
            ],
        )
    }
}

/// What reports and probe queries pair on: their probe id and PoP, hashed to 64 bits. Two
/// different ids collide with odds of about n²/2⁶⁵ for n ids, and a collision matters only
/// for the same PoP within 10 minutes: negligible against the noise of real measurements.
pub fn pair_hash(probe_id: &str, pop: u16) -> u64 {
    (xxhash_rust::xxh3::xxh3_64(probe_id.as_bytes()) >> 16) | (u64::from(pop) << 48)
}

/// How long one beacon session is taken to last: reports from one client address within one
/// such window of time are one session.
pub const SESSION_WINDOW_MICROS: i64 = 600_000_000;

/// The session a report belongs to (docs/beacon-schema.md, "Sessions"), as 48 bits of hash:
/// its client's address and the 10-minute window of its report time. The contract lets a
/// browser use one probe id for every PoP of a page view or a fresh one per PoP, so the id
/// cannot say which reports belong together; the client address and the time can, in both
/// styles. Users behind one address in one window count as one session (they share the
/// client network and mostly the resolver, which is what the holdout judges), and a page view
/// across a window's edge counts as two.
///
/// The hash is Apache Spark's `xxhash64(client, window)` (XXH64 of each value's eight
/// little-endian bytes, seeded with 42, then with the previous value's hash), so a first stage
/// run on Spark holds out exactly the sessions this one does (docs/mapgen.md).
pub fn session_of(client: u64, ts_micros: i64) -> u64 {
    use xxhash_rust::xxh64::xxh64;
    let window = ts_micros.div_euclid(SESSION_WINDOW_MICROS);
    xxh64(&window.to_le_bytes(), xxh64(&client.to_le_bytes(), 42)) >> 16
}

/// A log file that cannot be read as the contract says.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct BadFile {
    /// The file.
    pub file: String,
    /// What is wrong: not Parquet, or which column has which wrong type.
    pub problem: String,
}

/// The files of one table, checked against the contract before any row is read, so an
/// unreadable file, another schema version or a column of the wrong type is named, with the
/// file, up front.
pub struct Files {
    /// The `.parquet` files, in name order, except those named `.*` or `_*` (the contract's
    /// temporary and hidden names, in any directory) and copies of an earlier file.
    pub paths: Vec<PathBuf>,
    /// Rows in them (from the footers): an upper bound for the window.
    pub rows: u64,
    /// Files left out because they do not follow the contract.
    pub bad: Vec<BadFile>,
    /// Files left out because their bytes are those of an earlier file (a copy under a second
    /// name would count every sample twice): (the copy, the file it repeats).
    pub copies: Vec<(PathBuf, PathBuf)>,
}

/// A hash of a file's whole content, to find copies.
fn content_hash(path: &Path) -> std::io::Result<u128> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.digest128());
        }
        h.update(&buf[..n]);
    }
}

/// Checks one file against the contract: readable Parquet, this schema version, the columns
/// with their types. Returns its rows.
fn check(path: &Path, columns: &[ColumnCheck]) -> Result<u64, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut r = ParquetReader::new(f);
    let meta = r
        .get_metadata()
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let version = meta
        .key_value_metadata()
        .as_ref()
        .and_then(|kv| kv.iter().find(|k| k.key == SCHEMA_KEY))
        .map(|k| k.value.clone());
    match version {
        None => return Err(format!("no {SCHEMA_KEY} key in the file's metadata: not a beacon log (want version {SCHEMA_VERSION})")),
        Some(v) if v.as_deref() != Some(SCHEMA_VERSION) => {
            return Err(format!("{SCHEMA_KEY} = {}: this mapgen reads version {SCHEMA_VERSION}", v.as_deref().unwrap_or("(no value)")))
        }
        Some(_) => {}
    }
    let schema = r
        .schema()
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    for (name, ok, want) in columns {
        let found = schema
            .iter_values()
            .find(|f| f.name.as_str() == *name)
            .map(|f| Field::from(f).dtype().clone());
        match found {
            None => return Err(format!("column {name}: missing")),
            Some(t) if !ok(&t) => return Err(format!("column {name}: want {want}, found {t}")),
            Some(_) => {}
        }
    }
    r.num_rows()
        .map(|n| n as u64)
        .map_err(|e| format!("not a readable Parquet file: {e}"))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        if e.file_type()?.is_dir() {
            walk(&e.path(), out)?;
        } else if name.ends_with(".parquet") {
            out.push(e.path());
        }
    }
    Ok(())
}

/// Lists and checks the files of `table` under `root`; bad files are left out of `paths` and
/// listed in `bad`. Only a directory that cannot be listed is an error.
pub fn files(root: &Path, table: &str) -> Result<Files, BadFile> {
    let columns = if table == RttReportRow::NAME {
        contract_columns::<RttReportRow>(REPORT_COLUMNS)
    } else {
        contract_columns::<DnsProbeRow>(PROBE_COLUMNS)
    };
    let dir = root.join(table);
    let mut paths = Vec::new();
    if dir.exists() {
        walk(&dir, &mut paths).map_err(|e| BadFile {
            file: dir.display().to_string(),
            problem: e.to_string(),
        })?;
    }
    let mut rows = 0u64;
    let mut bad = Vec::new();
    let mut good = Vec::new();
    let mut copies = Vec::new();
    let mut seen: std::collections::HashMap<u128, PathBuf> = std::collections::HashMap::new();
    for path in paths {
        let file = path.display().to_string();
        let hash = match content_hash(&path) {
            Ok(h) => h,
            Err(e) => {
                bad.push(BadFile {
                    file,
                    problem: e.to_string(),
                });
                continue;
            }
        };
        if let Some(first) = seen.get(&hash) {
            copies.push((path, first.clone()));
            continue;
        }
        match check(&path, &columns) {
            Ok(n) => {
                rows += n;
                seen.insert(hash, path.clone());
                good.push(path);
            }
            Err(problem) => bad.push(BadFile { file, problem }),
        }
    }
    Ok(Files {
        paths: good,
        rows,
        bad,
        copies,
    })
}

/// The `rtt_report` columns mapgen reads; their types are the contract's
/// ([`geodns_beacon::RttReportRow`]'s schema).
pub const REPORT_COLUMNS: &[&str] = &["ts", "probe_id", "pop", "client_ip", "rtt_ms", "ok"];
/// The `dns_probe` columns mapgen reads; their types are the contract's
/// ([`geodns_beacon::DnsProbeRow`]'s schema).
pub const PROBE_COLUMNS: &[&str] = &["ts", "probe_id", "pop", "resolver_ip"];

/// A column mapgen reads: its name, whether a file's polars type is the contract's, and the
/// contract's type as named in errors.
type ColumnCheck = (&'static str, fn(&DataType) -> bool, &'static str);

/// The checks of the columns `names` of table `T`, each type taken from the contract's own
/// schema, so the writer and mapgen cannot disagree on a column.
fn contract_columns<T: Table>(names: &[&'static str]) -> Vec<ColumnCheck> {
    use arrow_schema::{DataType as A, TimeUnit as U};
    let schema = T::schema();
    names
        .iter()
        .map(|&name| {
            let field = schema
                .field_with_name(name)
                .unwrap_or_else(|_| panic!("{} has no column {name}", T::NAME));
            let (fits, shown): (fn(&DataType) -> bool, &'static str) = match field.data_type() {
                A::Timestamp(U::Microsecond, Some(tz)) if tz.as_ref() == "UTC" => (
                    |t| matches!(t, DataType::Datetime(TimeUnit::Microseconds, Some(tz)) if tz.as_str() == "UTC"),
                    "Timestamp(Microsecond, UTC)",
                ),
                A::Utf8 => (|t| matches!(t, DataType::String), "Utf8"),
                A::Float64 => (|t| matches!(t, DataType::Float64), "Float64"),
                A::Boolean => (|t| matches!(t, DataType::Boolean), "Boolean"),
                other => panic!("{}.{name}: mapgen reads no {other} column", T::NAME),
            };
            (name, fits, shown)
        })
        .collect()
}

/// Decodes every value of `columns` in `files` and throws them away: finds corrupt data
/// pages, which a file's footer does not reveal.
pub fn decode_all(files: &Files, columns: &[&str]) -> PolarsResult<()> {
    let lf = scan(files)?.select(columns.iter().map(|c| col(*c)).collect::<Vec<_>>());
    stream(lf, (), |_, _| Ok(()))
}

fn scan(files: &Files) -> PolarsResult<LazyFrame> {
    let paths: Vec<PlRefPath> = files
        .paths
        .iter()
        .map(|p| PlRefPath::new(p.display().to_string()))
        .collect();
    // The `date=` directories are not read as a column: rows carry their own ts.
    let args = ScanArgsParquet {
        hive_options: HiveOptions::new_disabled(),
        ..Default::default()
    };
    LazyFrame::scan_parquet_files(paths.into_iter().collect(), args)
}

/// The rows a run reads, by timestamp (µs since the epoch).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Oldest row to read.
    pub since: Option<i64>,
    /// Newest row to read (exclusive); at most `future`.
    pub until: i64,
    /// Rows stamped after this are from the future: a collector's clock is wrong.
    pub future: i64,
}

impl Window {
    /// The window widened by `gap` on both sides (probes pair with reports up to `gap` apart).
    pub fn widened(self, gap: i64) -> Window {
        Window {
            since: self.since.map(|s| s - gap),
            until: self.until.saturating_add(gap).min(self.future),
            future: self.future,
        }
    }

    fn contains(&self) -> Expr {
        let ts = col("ts").cast(DataType::Int64);
        let mut e = col("ts").is_not_null().and(ts.clone().lt(lit(self.until)));
        if let Some(s) = self.since {
            e = e.and(ts.gt_eq(lit(s)));
        }
        e
    }
}

/// Rows left out by the window, by reason: (reason, rows, a sample saying which timestamps,
/// whether they are invalid rather than merely outside the window asked for).
pub type OutsideWindow = Vec<(&'static str, u64, String, bool)>;

/// Counts the rows of `files` the window leaves out, and why: no timestamp, before `since`,
/// at or after `until`, or stamped in the future. Reads only the `ts` column.
pub fn outside_window(files: &Files, w: Window) -> PolarsResult<OutsideWindow> {
    if files.paths.is_empty() {
        return Ok(Vec::new());
    }
    let ts = || col("ts").cast(DataType::Int64);
    let mut reasons: Vec<(&'static str, Expr, bool)> =
        vec![("future_ts", ts().gt_eq(lit(w.future)), true)];
    if let Some(s) = w.since {
        reasons.push(("before_window", ts().lt(lit(s)), false));
    }
    if w.until < w.future {
        reasons.push((
            "after_window",
            ts().gt_eq(lit(w.until)).and(ts().lt(lit(w.future))),
            false,
        ));
    }
    let mut exprs = vec![col("ts")
        .is_null()
        .sum()
        .cast(DataType::UInt64)
        .alias("null_ts")];
    for (name, cond, _) in &reasons {
        exprs.push(cond.clone().sum().cast(DataType::UInt64).alias(*name));
        exprs.push(ts().filter(cond.clone()).min().alias(format!("{name}_min")));
        exprs.push(ts().filter(cond.clone()).max().alias(format!("{name}_max")));
    }
    let df = scan(files)?.select(exprs).collect()?;
    let u = |name: &str| -> PolarsResult<u64> { Ok(df.column(name)?.u64()?.get(0).unwrap_or(0)) };
    let i = |name: String| -> PolarsResult<Option<i64>> { Ok(df.column(&name)?.i64()?.get(0)) };
    let mut out = Vec::new();
    let nulls = u("null_ts")?;
    if nulls > 0 {
        out.push(("null_ts", nulls, "ts is null".to_owned(), true));
    }
    for (name, _, invalid) in reasons {
        let n = u(name)?;
        if n > 0 {
            let (lo, hi) = (i(format!("{name}_min"))?, i(format!("{name}_max"))?);
            let sample = format!("ts from {} to {}", show_ts(lo), show_ts(hi));
            out.push((name, n, sample, invalid));
        }
    }
    Ok(out)
}

fn show_ts(t: Option<i64>) -> String {
    t.map_or_else(
        || "?".into(),
        |t| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_micros(t.max(0) as u64),
            )
            .to_string()
        },
    )
}

/// Streams the window of one table through `f`, batch by batch, in file order.
fn stream<S: Send + 'static>(
    lf: LazyFrame,
    state: S,
    f: impl Fn(&mut S, &DataFrame) -> PolarsResult<()> + Send + Sync + 'static,
) -> PolarsResult<S> {
    let shared = Arc::new(Mutex::new(Some(state)));
    let inner = Arc::clone(&shared);
    let cb = PlanCallback::new(move |df: DataFrame| {
        let mut guard = inner.lock().expect("not poisoned");
        f(guard.as_mut().expect("present until the end"), &df)?;
        Ok(false)
    });
    lf.sink_batches(cb, true, None)?
        .collect_with_engine(Engine::Streaming)?;
    let state = shared
        .lock()
        .expect("not poisoned")
        .take()
        .expect("present");
    Ok(state)
}

/// Reads the `rtt_report` rows of the window into `parts`, adding each batch's rows to `seen`
/// (for progress).
pub fn read_reports(
    files: &Files,
    pops: &[String],
    max_rtt_ms: f64,
    window: Window,
    parts: Partitions<ReportRecord>,
    seen: Arc<AtomicU64>,
) -> PolarsResult<(Partitions<ReportRecord>, Validation)> {
    let lf = scan(files)?.filter(window.contains()).select([
        col("ts").cast(DataType::Int64),
        col("probe_id"),
        col("pop"),
        col("client_ip"),
        col("rtt_ms").cast(DataType::Float64),
        col("ok"),
    ]);
    let pops = pops.to_vec();
    stream(lf, (parts, Validation::default()), move |(parts, v), df| {
        let ts = df.column("ts")?.i64()?;
        let ids = df.column("probe_id")?.str()?;
        let pop_col = df.column("pop")?.str()?;
        let ips = df.column("client_ip")?.str()?;
        let rtts = df.column("rtt_ms")?.f64()?;
        let oks = df.column("ok")?.bool()?;
        v.rows += df.height() as u64;
        seen.fetch_add(df.height() as u64, Ordering::Relaxed);
        let rows = ts
            .iter()
            .zip(ids.iter())
            .zip(pop_col.iter())
            .zip(ips.iter())
            .zip(rtts.iter())
            .zip(oks.iter());
        for (((((ts, id), pop), ip), rtt), ok) in rows {
            let sample = || {
                format!(
                    "probe_id={} pop={} client_ip={} rtt_ms={} ok={}",
                    show(id),
                    show(pop),
                    show(ip),
                    show(rtt),
                    show(ok)
                )
            };
            let Some(id) = id.filter(|id| valid_probe_id(id)) else {
                v.refuse("bad_probe_id", sample);
                continue;
            };
            let Some(pop) = pop.and_then(|p| pops.iter().position(|x| x == p)) else {
                v.refuse("unknown_pop", sample);
                continue;
            };
            let Some(client) = ip.and_then(key::parse) else {
                v.refuse("bad_client_ip", sample);
                continue;
            };
            let Some(ok) = ok else {
                v.refuse("null_ok", sample);
                continue;
            };
            let rtt = match rtt {
                Some(r) if ok && (MIN_RTT_MS..=max_rtt_ms).contains(&r) => Some(r as f32),
                _ if ok => {
                    v.refuse("bad_rtt", sample);
                    continue;
                }
                _ => None,
            };
            let pop = pop as u16;
            let pair = pair_hash(id, pop);
            let part = parts.of(pair);
            let ts = ts.expect("the window filter drops null timestamps");
            v.seen(ts);
            parts.push(
                part,
                ReportRecord {
                    pair,
                    ts,
                    client,
                    pop,
                    rtt,
                },
            )?;
        }
        Ok(())
    })
}

/// Reads the `dns_probe` rows of `window` into `parts`; the caller widens it by the pairing
/// gap on both sides, so reports near the window's edges still find their probes.
pub fn read_probes(
    files: &Files,
    pops: &[String],
    window: Window,
    parts: Partitions<ProbeRecord>,
    seen: Arc<AtomicU64>,
) -> PolarsResult<(Partitions<ProbeRecord>, Validation)> {
    let lf = scan(files)?.filter(window.contains()).select([
        col("ts").cast(DataType::Int64),
        col("probe_id"),
        col("pop"),
        col("resolver_ip"),
    ]);
    let pops = pops.to_vec();
    let (rv4, rv6) = RESOLVER_LEVELS[0];
    stream(lf, (parts, Validation::default()), move |(parts, v), df| {
        let ts = df.column("ts")?.i64()?;
        let ids = df.column("probe_id")?.str()?;
        let pop_col = df.column("pop")?.str()?;
        let ips = df.column("resolver_ip")?.str()?;
        v.rows += df.height() as u64;
        seen.fetch_add(df.height() as u64, Ordering::Relaxed);
        for (((ts, id), pop), ip) in ts
            .iter()
            .zip(ids.iter())
            .zip(pop_col.iter())
            .zip(ips.iter())
        {
            let sample = || {
                format!(
                    "probe_id={} pop={} resolver_ip={}",
                    show(id),
                    show(pop),
                    show(ip)
                )
            };
            let Some(id) = id.filter(|id| valid_probe_id(id)) else {
                v.refuse("bad_probe_id", sample);
                continue;
            };
            let Some(resolver) = ip.and_then(key::parse) else {
                v.refuse("bad_resolver_ip", sample);
                continue;
            };
            let Some(pop) = pop else {
                v.refuse("no_pop", sample);
                continue;
            };
            let Some(pop) = pops.iter().position(|x| x == pop) else {
                v.refuse("unknown_pop", sample);
                continue;
            };
            let pair = pair_hash(id, pop as u16);
            let part = parts.of(pair);
            let ts = ts.expect("the window filter drops null timestamps");
            parts.push(
                part,
                ProbeRecord {
                    pair,
                    ts,
                    resolver: key::truncate(resolver, rv4, rv6),
                },
            )?;
        }
        Ok(())
    })
}

fn show<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_hash_separates_pops() {
        assert_ne!(pair_hash("abcdef0123", 0), pair_hash("abcdef0123", 1));
    }

    #[test]
    fn a_session_is_one_client_address_in_one_window() {
        let a = key::parse("192.0.2.7").unwrap();
        let b = key::parse("192.0.2.8").unwrap();
        let t = 1_800_000_000_000_000i64;
        assert_eq!(session_of(a, t), session_of(a, t + 5_000_000));
        assert_ne!(session_of(a, t), session_of(b, t));
        assert_ne!(session_of(a, t), session_of(a, t + SESSION_WINDOW_MICROS));
        assert!(session_of(a, t) < 1 << 48);
    }
}
