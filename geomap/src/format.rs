//! The map file: Arrow IPC, one row per prefix, metadata and a checksum in the schema.
//!
//! Arrow IPC because mapgen (polars), analysts (pyarrow, polars, DuckDB) and the server (arrow-rs)
//! all read it natively, and it loads without a parse step per value. The layout is documented
//! in `docs/map-format.md`; [`write_map`] and [`read_map`] are its only writer and reader here.
//!
//! The checksum covers the map's *content*, not its bytes: a SHA-256 over a canonical text
//! rendering (see [`checksum`]). Any writer, in any language, that produces the same rows and
//! metadata produces the same checksum, and a reader detects any change to either.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder, UInt64Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{ArrowError, DataType, Field, Schema};
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::map::{Map, MapMeta, MapRow, RowError};
use crate::pop::{PopInfo, PopTable};

/// The map format version this code writes and reads.
pub const FORMAT_VERSION: &str = "1";

/// Metadata keys (Arrow schema metadata).
pub mod keys {
    /// Format version, `"1"`.
    pub const VERSION: &str = "geodns.map.version";
    /// Generation id of the mapgen run.
    pub const GENERATION: &str = "geodns.map.generation";
    /// Creation time, RFC 3339.
    pub const CREATED_AT: &str = "geodns.map.created_at";
    /// Oldest measurement used, RFC 3339 (optional).
    pub const SOURCE_FROM: &str = "geodns.map.source_from";
    /// Newest measurement used, RFC 3339 (optional).
    pub const SOURCE_UNTIL: &str = "geodns.map.source_until";
    /// The PoP table as a JSON array of `{id, lat?, lon?}`.
    pub const POPS: &str = "geodns.map.pops";
    /// `sha256:<hex>` of the canonical content.
    pub const CHECKSUM: &str = "geodns.map.checksum";
    /// In the *footer's* custom metadata: SHA-256 hex of the file's bytes from the start to the
    /// end-of-stream marker (magic, schema message, batches, all padding). Optional for other
    /// writers; when present the reader verifies it, so no flipped byte passes, not even in
    /// padding the content checksum cannot see.
    pub const STREAM_SHA256: &str = "geodns.map.stream_sha256";
}

const ROWS_PER_BATCH: usize = 65_536;
const MAX_ROW_ERRORS: usize = 20;

/// Why a map file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file could not be opened, read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The container's lengths, offsets or structure are damaged (bit flips, truncation).
    #[error("damaged Arrow IPC file: {0}")]
    Damaged(String),
    /// A metadata key is missing.
    #[error("metadata key '{0}' is missing")]
    MissingMeta(&'static str),
    /// A metadata value is wrong.
    #[error("metadata key '{key}': {problem}")]
    BadMeta {
        /// The key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A column is missing or of the wrong type.
    #[error("column '{name}': {problem}")]
    Column {
        /// The column.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The content does not match its checksum: the file was altered or truncated.
    #[error("checksum mismatch: metadata says {expected}, content hashes to {actual}")]
    Checksum {
        /// From the metadata.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// Rows break the map's invariants.
    #[error("{}:\n  {}", count_rows(.0.len()), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "))]
    Rows(Vec<RowError>),
}

/// "N bad row(s)", or "at least N" when reading stopped at the cap.
fn count_rows(n: usize) -> String {
    if n >= MAX_ROW_ERRORS {
        format!("{n} bad rows or more (reading stops at {MAX_ROW_ERRORS})")
    } else {
        format!("{n} bad row(s)")
    }
}

/// The columns every map has.
fn required_fields() -> Vec<Field> {
    vec![
        Field::new("key_space", DataType::Utf8, false),
        Field::new("prefix", DataType::Utf8, false),
        Field::new(
            "pops",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, false))),
            false,
        ),
        Field::new(
            "rtt_ms",
            DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            false,
        ),
        Field::new("samples", DataType::UInt64, false),
        Field::new("derivation", DataType::Utf8, false),
    ]
}

/// The optional `own_share` column: informational, so maps written before it still load, and
/// left out of the content checksum, so servers that predate it still load maps that have it
/// (the stream digest covers its bytes).
fn own_share_field() -> Field {
    Field::new(
        "own_share",
        DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
        false,
    )
}

/// The columns this build writes.
fn schema_fields() -> Vec<Field> {
    let mut f = required_fields();
    f.push(own_share_field());
    f
}

/// Sorts rows into the canonical file order: key space, IPv4 before IPv6, address, length.
pub fn sort_rows(rows: &mut [MapRow]) {
    rows.sort_by(|a, b| {
        (
            a.key_space,
            a.prefix.addr().is_ipv6(),
            a.prefix.addr(),
            a.prefix.prefix_len(),
        )
            .cmp(&(
                b.key_space,
                b.prefix.addr().is_ipv6(),
                b.prefix.addr(),
                b.prefix.prefix_len(),
            ))
    });
}

/// SHA-256 over the canonical text of a map, as `sha256:<hex>`.
///
/// The text is: each metadata entry except the checksum as `key\tvalue\n`, sorted by key;
/// then each row, in file order, as
/// `key_space\tprefix\tpop,pop,...\trtt,rtt,...\tsamples\tderivation\n`, where each rtt is the
/// big-endian IEEE-754 bits of the f32 in lowercase hex (8 digits) or `-` for null.
pub fn checksum(meta: &[(String, String)], rows: &[MapRow], pops: &PopTable) -> String {
    let mut h = Sha256::new();
    let mut sorted: Vec<_> = meta.iter().filter(|(k, _)| k != keys::CHECKSUM).collect();
    sorted.sort();
    for (k, v) in sorted {
        h.update(format!("{k}\t{v}\n"));
    }
    let mut line = String::with_capacity(128);
    for r in rows {
        use std::fmt::Write as _;
        line.clear();
        let pop_ids: Vec<&str> = r.pops.iter().map(|&p| pops.get(p).id.as_str()).collect();
        let rtts: Vec<String> = r
            .rtt_ms
            .iter()
            .map(|v| v.map_or_else(|| "-".to_owned(), |v| format!("{:08x}", v.to_bits())))
            .collect();
        let _ = writeln!(
            line,
            "{}\t{}\t{}\t{}\t{}\t{}",
            r.key_space,
            r.prefix,
            pop_ids.join(","),
            rtts.join(","),
            r.samples,
            r.derivation
        );
        h.update(line.as_bytes());
    }
    let digest = h.finalize();
    let mut hex = String::with_capacity(64 + 7);
    hex.push_str("sha256:");
    for b in digest {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

fn meta_entries(meta: &MapMeta) -> Vec<(String, String)> {
    let pops: Vec<&PopInfo> = meta.pops.iter().collect();
    let mut m = vec![
        (keys::VERSION.to_owned(), FORMAT_VERSION.to_owned()),
        (keys::GENERATION.to_owned(), meta.generation.clone()),
        (keys::CREATED_AT.to_owned(), meta.created_at.clone()),
        (
            keys::POPS.to_owned(),
            serde_json::to_string(&pops).expect("PoP table serializes"),
        ),
    ];
    if let Some(v) = &meta.source_from {
        m.push((keys::SOURCE_FROM.to_owned(), v.clone()));
    }
    if let Some(v) = &meta.source_until {
        m.push((keys::SOURCE_UNTIL.to_owned(), v.clone()));
    }
    m
}

/// Writes a map: validates it, sorts rows canonically, and writes to a temporary file that is
/// fsynced and renamed over `path`, so a reader (a server hot-reloading) never sees half a file.
pub fn write_map(path: &Path, map: &Map) -> Result<(), FormatError> {
    let errors = map.validate(MAX_ROW_ERRORS);
    if !errors.is_empty() {
        return Err(FormatError::Rows(errors));
    }
    let mut rows = map.rows.clone();
    sort_rows(&mut rows);
    let mut meta = meta_entries(&map.meta);
    let sum = checksum(&meta, &rows, &map.meta.pops);
    meta.push((keys::CHECKSUM.to_owned(), sum));
    write_file(path, &rows, meta, &map.meta.pops)
}

fn write_file(
    path: &Path,
    rows: &[MapRow],
    meta: Vec<(String, String)>,
    pops: &PopTable,
) -> Result<(), FormatError> {
    let schema = Arc::new(Schema::new_with_metadata(
        schema_fields(),
        meta.into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
    ));

    crate::atomic_file::write(path, |file| {
        let out = Hashing {
            inner: BufWriter::new(file),
            hasher: Sha256::new(),
        };
        let mut writer = FileWriter::try_new(out, &schema).map_err(std::io::Error::other)?;
        for chunk in rows.chunks(ROWS_PER_BATCH) {
            let batch = to_batch(&schema, chunk, pops).map_err(std::io::Error::other)?;
            writer.write(&batch).map_err(std::io::Error::other)?;
        }
        let digest = writer.get_ref().hasher.clone().finalize();
        writer.write_metadata(keys::STREAM_SHA256, hex(&digest));
        writer.finish().map_err(std::io::Error::other)?;
        let mut buf = writer.into_inner().map_err(std::io::Error::other)?.inner;
        buf.flush()
    })?;
    Ok(())
}

/// Hashes what passes through, so the writer knows the digest of the stream before the footer.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn to_batch(
    schema: &Arc<Schema>,
    rows: &[MapRow],
    pops: &PopTable,
) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut key_space = StringBuilder::with_capacity(n, n * 8);
    let mut prefix = StringBuilder::with_capacity(n, n * 18);
    let mut pop_col = ListBuilder::new(StringBuilder::new()).with_field(Field::new(
        "item",
        DataType::Utf8,
        false,
    ));
    let mut rtt_col = ListBuilder::new(Float32Builder::new()).with_field(Field::new(
        "item",
        DataType::Float32,
        true,
    ));
    let mut samples = UInt64Builder::with_capacity(n);
    let mut derivation = StringBuilder::with_capacity(n, n * 8);
    let mut own_col = ListBuilder::new(Float32Builder::new()).with_field(Field::new(
        "item",
        DataType::Float32,
        true,
    ));
    for r in rows {
        key_space.append_value(r.key_space.as_str());
        prefix.append_value(r.prefix.to_string());
        for &p in &r.pops {
            pop_col.values().append_value(pops.get(p).id.as_str());
        }
        pop_col.append(true);
        for &v in &r.rtt_ms {
            rtt_col.values().append_option(v);
        }
        rtt_col.append(true);
        samples.append_value(r.samples);
        derivation.append_value(r.derivation.as_str());
        for &v in &r.own_share {
            own_col.values().append_option(v);
        }
        own_col.append(true);
    }
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(key_space.finish()),
            Arc::new(prefix.finish()),
            Arc::new(pop_col.finish()),
            Arc::new(rtt_col.finish()),
            Arc::new(samples.finish()),
            Arc::new(derivation.finish()),
            Arc::new(own_col.finish()),
        ],
    )
}

/// Reads and fully verifies a map: format version, metadata, column types, every row's values
/// and invariants, and the checksum. A map that passes is safe to serve.
pub fn read_map(path: &Path) -> Result<Map, FormatError> {
    decode_map(std::fs::read(path)?)
}

/// [`read_map`] on bytes already in memory (the fuzz target's entry). Memory use is bounded by
/// a small multiple of `bytes.len()` whatever the bytes say: no length in the file is trusted
/// before it is checked against the file's size.
pub fn decode_map(bytes: Vec<u8>) -> Result<Map, FormatError> {
    let file = crate::ipc::decode(bytes, check_columns)?;
    if let Some(want) = file.footer_metadata.get(keys::STREAM_SHA256) {
        let got = hex(&Sha256::digest(file.stream.as_slice()));
        if *want != got {
            return Err(FormatError::Damaged(format!(
                "the file's bytes hash to {got}, its footer says {want}: the file was altered"
            )));
        }
    }
    let md = file.schema.metadata().clone();
    let get = |key: &'static str| md.get(key).cloned().ok_or(FormatError::MissingMeta(key));
    let version = get(keys::VERSION)?;
    if version != FORMAT_VERSION {
        return Err(FormatError::BadMeta {
            key: keys::VERSION,
            problem: format!(
                "version {version:?} is not supported (this build reads {FORMAT_VERSION})"
            ),
        });
    }
    let pops_json = get(keys::POPS)?;
    let pop_list: Vec<PopInfo> =
        serde_json::from_str(&pops_json).map_err(|e| FormatError::BadMeta {
            key: keys::POPS,
            problem: e.to_string(),
        })?;
    let pops = PopTable::new(pop_list).map_err(|e| FormatError::BadMeta {
        key: keys::POPS,
        problem: e.to_string(),
    })?;
    let created_at = get(keys::CREATED_AT)?;
    humantime::parse_rfc3339(&created_at).map_err(|e| FormatError::BadMeta {
        key: keys::CREATED_AT,
        problem: format!("{created_at:?}: {e}"),
    })?;
    let meta = MapMeta {
        generation: get(keys::GENERATION)?,
        created_at,
        source_from: md.get(keys::SOURCE_FROM).cloned(),
        source_until: md.get(keys::SOURCE_UNTIL).cloned(),
        pops,
    };
    let expected_sum = get(keys::CHECKSUM)?;

    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for batch in &file.batches {
        decode_batch(batch, &meta.pops, &mut rows, &mut errors)?;
        if errors.len() >= MAX_ROW_ERRORS {
            break;
        }
    }
    if !errors.is_empty() {
        return Err(FormatError::Rows(errors));
    }
    let map = Map { meta, rows };
    let errors = map.validate(MAX_ROW_ERRORS);
    if !errors.is_empty() {
        return Err(FormatError::Rows(errors));
    }
    let actual = checksum(
        &md.into_iter().collect::<Vec<_>>(),
        &map.rows,
        &map.meta.pops,
    );
    if actual != expected_sum {
        return Err(FormatError::Checksum {
            expected: expected_sum,
            actual,
        });
    }
    Ok(map)
}

impl From<crate::ipc::Damaged> for FormatError {
    fn from(e: crate::ipc::Damaged) -> Self {
        FormatError::Damaged(e.0)
    }
}

/// The columns and their types, checked before any batch is decoded.
fn check_columns(schema: &Schema) -> Result<(), FormatError> {
    if let Ok(f) = schema.field_with_name("own_share") {
        let want = own_share_field();
        if !f.data_type().equals_datatype(want.data_type()) {
            return Err(FormatError::Column {
                name: "own_share",
                problem: format!("type {} (want {})", f.data_type(), want.data_type()),
            });
        }
    }
    for want in required_fields() {
        match schema.field_with_name(want.name()) {
            Ok(f) if f.data_type().equals_datatype(want.data_type()) => {}
            Ok(f) => {
                return Err(FormatError::Column {
                    name: leak_name(want.name()),
                    problem: format!("type {} (want {})", f.data_type(), want.data_type()),
                })
            }
            Err(_) => {
                return Err(FormatError::Column {
                    name: leak_name(want.name()),
                    problem: "missing".into(),
                })
            }
        }
    }
    Ok(())
}

fn leak_name(name: &str) -> &'static str {
    // Column names are the fixed set from schema_fields(); map back to static strings.
    [
        "key_space",
        "prefix",
        "pops",
        "rtt_ms",
        "samples",
        "derivation",
    ]
    .into_iter()
    .find(|n| *n == name)
    .unwrap_or("?")
}

fn decode_batch(
    batch: &RecordBatch,
    pops: &PopTable,
    rows: &mut Vec<MapRow>,
    errors: &mut Vec<RowError>,
) -> Result<(), FormatError> {
    let col = |name: &'static str| {
        batch.column_by_name(name).ok_or(FormatError::Column {
            name,
            problem: "missing".into(),
        })
    };
    let key_space = col("key_space")?.as_string::<i32>();
    let prefix = col("prefix")?.as_string::<i32>();
    let pop_col = col("pops")?.as_list::<i32>();
    let rtt_col = col("rtt_ms")?.as_list::<i32>();
    let samples = col("samples")?.as_primitive::<UInt64Type>();
    let derivation = col("derivation")?.as_string::<i32>();
    let own_col = batch
        .column_by_name("own_share")
        .map(|c| c.as_list::<i32>());
    for i in 0..batch.num_rows() {
        if errors.len() >= MAX_ROW_ERRORS {
            break;
        }
        let row = rows.len() + errors.len();
        let mut bad = |field: &'static str, problem: String| {
            errors.push(RowError {
                row,
                field,
                problem,
            })
        };
        let nulls = [
            ("key_space", key_space.is_null(i)),
            ("prefix", prefix.is_null(i)),
            ("pops", pop_col.is_null(i)),
            ("rtt_ms", rtt_col.is_null(i)),
            ("samples", samples.is_null(i)),
            ("derivation", derivation.is_null(i)),
        ];
        if let Some((field, _)) = nulls.iter().find(|(_, n)| *n) {
            bad(field, "null".into());
            continue;
        }
        let ks = match key_space.value(i).parse() {
            Ok(v) => v,
            Err(e) => {
                bad("key_space", e);
                continue;
            }
        };
        let net: IpNet = match prefix.value(i).parse() {
            Ok(v) => v,
            Err(_) => {
                bad(
                    "prefix",
                    format!("{:?} is not a CIDR prefix", prefix.value(i)),
                );
                continue;
            }
        };
        let der = match derivation.value(i).parse() {
            Ok(v) => v,
            Err(e) => {
                bad("derivation", e);
                continue;
            }
        };
        let ids = pop_col.value(i);
        let ids = ids.as_string::<i32>();
        let mut idx = Vec::with_capacity(ids.len());
        let mut unknown = None;
        for j in 0..ids.len() {
            match ids.is_valid(j).then(|| pops.index(ids.value(j))).flatten() {
                Some(p) => idx.push(p),
                None => {
                    unknown = Some(if ids.is_valid(j) {
                        ids.value(j).to_owned()
                    } else {
                        "null".into()
                    });
                    break;
                }
            }
        }
        if let Some(u) = unknown {
            bad("pops", format!("PoP '{u}' is not in the map's PoP table"));
            continue;
        }
        let rtts = rtt_col.value(i);
        let rtts = rtts.as_primitive::<Float32Type>();
        let rtt_ms = (0..rtts.len())
            .map(|j| rtts.is_valid(j).then(|| rtts.value(j)))
            .collect();
        let own_share = match own_col {
            Some(c) if c.is_valid(i) => {
                let v = c.value(i);
                let v = v.as_primitive::<Float32Type>();
                (0..v.len())
                    .map(|j| v.is_valid(j).then(|| v.value(j)))
                    .collect()
            }
            _ => Vec::new(),
        };
        rows.push(MapRow {
            key_space: ks,
            prefix: net,
            pops: idx,
            rtt_ms,
            samples: samples.value(i),
            derivation: der,
            own_share,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::{Derivation, KeySpace};

    fn sample() -> Map {
        let (pops, rows) = crate::nets::parse_nets(
            "t",
            "10.0.0.0/8,ams,iad\n2001:db8::/32,iad\n192.0.2.0/24,sin,ams\n",
            None,
            &KeySpace::ALL,
        )
        .unwrap();
        let mut m = Map {
            meta: MapMeta {
                generation: "g1".into(),
                created_at: "2026-11-26T00:00:00Z".into(),
                source_from: Some("2026-11-25T00:00:00Z".into()),
                source_until: None,
                pops,
            },
            rows,
        };
        m.rows[0].rtt_ms = vec![Some(12.5), None];
        m.rows[0].samples = 42;
        m.rows[0].derivation = Derivation::Measured;
        m.rows[0].own_share = vec![Some(0.75), None];
        m
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("geomap-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("map.arrow")
    }

    #[test]
    fn round_trip_is_exact_and_canonical() {
        let path = tmp("rt");
        let m = sample();
        write_map(&path, &m).unwrap();
        let back = read_map(&path).unwrap();
        let mut want = m.clone();
        sort_rows(&mut want.rows);
        assert_eq!(back, want);
        // Same content, other input order: byte-identical file.
        let first = std::fs::read(&path).unwrap();
        let mut shuffled = m;
        shuffled.rows.reverse();
        write_map(&path, &shuffled).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first);
    }

    #[test]
    fn altered_content_fails_the_checksum() {
        let path = tmp("sum");
        let m = sample();
        write_map(&path, &m).unwrap();
        let good = read_map(&path).unwrap();
        let mut meta = meta_entries(&m.meta);
        meta.push((
            keys::CHECKSUM.to_owned(),
            checksum(&meta, &good.rows, &m.meta.pops),
        ));
        let mut rows = good.rows.clone();
        rows[1].pops.reverse();
        write_file(&path, &rows, meta, &m.meta.pops).unwrap();
        match read_map(&path) {
            Err(FormatError::Checksum { .. }) => {}
            other => panic!("altered map accepted or wrong error: {other:?}"),
        }
    }

    #[test]
    fn truncated_file_is_refused() {
        let path = tmp("trunc");
        write_map(&path, &sample()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(read_map(&path), Err(FormatError::Damaged(_))));
    }

    #[test]
    fn invalid_rows_are_refused_on_write() {
        let mut m = sample();
        let first = m.rows[0].pops[0];
        m.rows[0].pops.push(first);
        m.rows[0].rtt_ms.push(None);
        let err = write_map(&tmp("bad"), &m).unwrap_err().to_string();
        assert!(err.contains("row 0: pops: PoP 'ams' ranked twice"), "{err}");
    }
}
