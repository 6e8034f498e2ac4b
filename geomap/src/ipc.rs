//! The Arrow IPC file container, read defensively from bytes already in memory.
//!
//! arrow-rs's `FileReader` trusts the lengths in a file: a flipped bit in a block's length made it
//! allocate gigabytes before reading, and a flipped buffer offset made it panic inside
//! `Buffer::slice`. A map is read by a server that must keep serving, so this reader checks
//! every length and offset against the bytes it holds before arrow sees them, and accounts for
//! every byte of the file: the leading magic, the schema message (which must agree with the
//! footer's copy), the record batch blocks back to back, the end-of-stream marker, the footer.
//! Nothing is allocated from a length in the file, only from the file itself, so memory is
//! bounded by a small multiple of the file's size whatever its content.
//!
//! The layout is Arrow's own (<https://arrow.apache.org/docs/format/Columnar.html#ipc-file-format>);
//! files written by arrow-rs, pyarrow or polars without dictionaries or compression pass.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_data::BufferSpec;
use arrow_ipc::convert::try_fb_to_schema;
use arrow_ipc::reader::FileDecoder;
use arrow_ipc::{Block, MessageHeader};
use arrow_schema::{DataType, Field, Schema};

const MAGIC: &[u8; 6] = b"ARROW1";
/// Leading magic padded to 8 bytes (the smallest alignment; arrow-rs pads to 64).
const LEADING: usize = 8;
/// The largest alignment a writer pads the leading magic to.
const MAX_ALIGN: usize = 64;
/// Footer length (i32) and trailing magic.
const TRAILER: usize = 10;
const CONTINUATION: [u8; 4] = [0xff; 4];
const EOS: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

/// What is wrong with the container, with the byte offset where it was found.
#[derive(Debug)]
pub(crate) struct Damaged(pub String);

fn damaged(msg: impl Into<String>) -> Damaged {
    Damaged(msg.into())
}

/// A decoded IPC file: the footer's schema (with the map's metadata) and its record batches.
pub(crate) struct IpcFile {
    pub schema: Arc<Schema>,
    pub batches: Vec<RecordBatch>,
    /// The footer's own key-value metadata (not the schema's).
    pub footer_metadata: HashMap<String, String>,
    /// The file's bytes from the start to the end-of-stream marker.
    pub stream: Buffer,
}

/// Decodes a whole Arrow IPC file. `check_schema` runs on the schema before any batch is
/// decoded, so a file whose columns are not the ones expected never reaches the array decoder.
pub(crate) fn decode<E: From<Damaged>>(
    bytes: Vec<u8>,
    check_schema: impl FnOnce(&Schema) -> Result<(), E>,
) -> Result<IpcFile, E> {
    let buffer = Buffer::from_vec(bytes);
    let bytes: &[u8] = &buffer;
    let len = bytes.len();
    if len < LEADING + 8 + TRAILER {
        return Err(damaged(format!("{len} bytes is too short for an Arrow IPC file")).into());
    }
    if &bytes[..6] != MAGIC {
        return Err(damaged("the file does not start with the ARROW1 magic").into());
    }
    // The magic is padded with zeros to the writer's alignment, where the first message starts.
    let first = (6..len.min(MAX_ALIGN + 1))
        .find(|&i| bytes[i] != 0)
        .filter(|&i| i % LEADING == 0)
        .ok_or_else(|| damaged("no message starts after the leading magic and its padding"))?;
    if &bytes[len - 6..] != MAGIC {
        return Err(damaged("the file does not end with the ARROW1 magic (truncated?)").into());
    }
    let footer_len = i32::from_le_bytes(bytes[len - TRAILER..len - 6].try_into().unwrap());
    let footer_end = len - TRAILER;
    let footer_start = usize::try_from(footer_len)
        .ok()
        .filter(|&n| n > 0 && n <= footer_end - LEADING)
        .map(|n| footer_end - n)
        .ok_or_else(|| {
            damaged(format!(
                "footer length {footer_len} does not fit a {len}-byte file"
            ))
        })?;
    let footer = arrow_ipc::root_as_footer(&bytes[footer_start..footer_end])
        .map_err(|e| damaged(format!("footer at byte {footer_start}: {e}")))?;
    let fb_schema = footer
        .schema()
        .ok_or_else(|| damaged("the footer has no schema"))?;
    if !fb_schema.endianness().equals_to_target_endianness() {
        return Err(damaged("the file's endianness is not this machine's").into());
    }
    let schema = try_fb_to_schema(fb_schema).map_err(|e| damaged(format!("footer schema: {e}")))?;
    if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Err(damaged("dictionary batches are not part of the map format").into());
    }
    check_schema(&schema)?;

    // The stream that precedes the footer: schema message, batches, end-of-stream marker.
    let (schema_msg_end, stream_schema) = schema_message(bytes, first, footer_start)?;
    if stream_schema != schema {
        return Err(damaged(
            "the schema message at the start and the footer's schema differ (one copy is damaged)",
        )
        .into());
    }
    let blocks = footer
        .recordBatches()
        .ok_or_else(|| damaged("the footer lists no record batches"))?;
    let widths = buffer_widths(&schema)?;
    let schema = Arc::new(schema);
    let decoder = FileDecoder::new(schema.clone(), footer.version());
    let mut at = schema_msg_end;
    let mut batches = Vec::with_capacity(blocks.len().min(footer_end / 64));
    for (i, block) in blocks.iter().enumerate() {
        let end = check_block(bytes, i, block, at, footer_start, &widths)?;
        let data = buffer.slice_with_length(at, end - at);
        // Every length and offset arrow reads has been checked above; this catches a panic from
        // anything those checks missed, so a damaged file is an error and never a crash.
        let decoded = catch_unwind(AssertUnwindSafe(|| decoder.read_record_batch(block, &data)))
            .map_err(|_| {
                damaged(format!(
                    "record batch {i} at byte {at}: the decoder panicked"
                ))
            })?
            .map_err(|e| damaged(format!("record batch {i} at byte {at}: {e}")))?
            .ok_or_else(|| damaged(format!("record batch {i} at byte {at} is empty")))?;
        batches.push(decoded);
        at = end;
    }
    if at + EOS.len() != footer_start || bytes[at..footer_start] != EOS {
        return Err(damaged(format!(
            "expected the end-of-stream marker at byte {at}, right before the footer at byte {footer_start}"
        ))
        .into());
    }
    let mut footer_metadata = HashMap::new();
    for kv in footer.custom_metadata().into_iter().flatten() {
        let (Some(k), Some(v)) = (kv.key(), kv.value()) else {
            return Err(damaged("footer metadata entry without a key or value").into());
        };
        footer_metadata.insert(k.to_owned(), v.to_owned());
    }
    Ok(IpcFile {
        schema,
        batches,
        footer_metadata,
        stream: buffer.slice_with_length(0, at),
    })
}

/// The value width of every buffer of a record batch, in IPC order (each field's validity
/// bitmap, then its layout's buffers, then its children's), 1 where any length is whole.
fn buffer_widths(schema: &Schema) -> Result<Vec<usize>, Damaged> {
    fn walk(field: &Field, out: &mut Vec<usize>) -> Result<(), Damaged> {
        let layout = arrow_data::layout(field.data_type());
        if layout.variadic || !layout.can_contain_null_mask {
            return Err(damaged(format!(
                "column '{}': type {} is not supported",
                field.name(),
                field.data_type()
            )));
        }
        out.push(1);
        for spec in &layout.buffers {
            out.push(match spec {
                BufferSpec::FixedWidth { byte_width, .. } => *byte_width,
                _ => 1,
            });
        }
        match field.data_type() {
            DataType::List(child) | DataType::LargeList(child) => walk(child, out),
            DataType::Struct(children) => children.iter().try_for_each(|c| walk(c, out)),
            t if t.is_nested() => Err(damaged(format!(
                "column '{}': type {t} is not supported",
                field.name()
            ))),
            _ => Ok(()),
        }
    }
    let mut out = Vec::new();
    for f in schema.fields() {
        walk(f, &mut out)?;
    }
    Ok(out)
}

/// Reads the encapsulated message prefix at `at`: continuation marker, metadata length, and
/// returns the flatbuffer's byte range.
fn message_at(bytes: &[u8], at: usize, limit: usize) -> Result<(usize, usize), Damaged> {
    if at + 8 > limit || bytes[at..at + 4] != CONTINUATION {
        return Err(damaged(format!("no message starts at byte {at}")));
    }
    let meta_len = i32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
    let start = at + 8;
    let end = usize::try_from(meta_len)
        .ok()
        .filter(|&n| n > 0 && n <= limit - start)
        .map(|n| start + n)
        .ok_or_else(|| {
            damaged(format!(
                "message at byte {at}: length {meta_len} does not fit"
            ))
        })?;
    Ok((start, end))
}

fn schema_message(bytes: &[u8], at: usize, limit: usize) -> Result<(usize, Schema), Damaged> {
    let (start, end) = message_at(bytes, at, limit)?;
    let msg = arrow_ipc::root_as_message(&bytes[start..end])
        .map_err(|e| damaged(format!("schema message at byte {at}: {e}")))?;
    let fb = msg
        .header_as_schema()
        .ok_or_else(|| damaged(format!("the message at byte {at} is not a schema")))?;
    if msg.bodyLength() != 0 {
        return Err(damaged(format!(
            "schema message at byte {at} claims a body"
        )));
    }
    let schema = try_fb_to_schema(fb).map_err(|e| damaged(format!("schema message: {e}")))?;
    Ok((end, schema))
}

/// Checks a record batch block against the bytes before arrow decodes it: it starts where the
/// previous one ended, its lengths fit before the footer, its message is a record batch whose
/// body is the block's, and each buffer and node lies inside that body. Returns the block's end.
fn check_block(
    bytes: &[u8],
    i: usize,
    block: &Block,
    at: usize,
    limit: usize,
    widths: &[usize],
) -> Result<usize, Damaged> {
    let here = |what: String| damaged(format!("record batch {i} at byte {at}: {what}"));
    if usize::try_from(block.offset()).ok() != Some(at) {
        return Err(here(format!(
            "the footer puts it at byte {}, but the previous message ends at byte {at}",
            block.offset()
        )));
    }
    let meta = usize::try_from(block.metaDataLength()).ok();
    let body = usize::try_from(block.bodyLength()).ok();
    let (meta, body) = meta
        .zip(body)
        .filter(|(m, b)| {
            *m >= 8 && *m % 8 == 0 && m.checked_add(*b).is_some_and(|n| n <= limit - at)
        })
        .ok_or_else(|| {
            here(format!(
                "lengths {} + {} do not fit before the footer",
                block.metaDataLength(),
                block.bodyLength()
            ))
        })?;
    let (start, end) = message_at(bytes, at, at + meta)?;
    // The flatbuffer is padded to the block's metadata length with zeros.
    if bytes[end..at + meta].iter().any(|&b| b != 0) {
        return Err(here("non-zero padding after the message".into()));
    }
    let msg = arrow_ipc::root_as_message(&bytes[start..end]).map_err(|e| here(e.to_string()))?;
    if msg.header_type() != MessageHeader::RecordBatch {
        return Err(here(format!("a {:?} message", msg.header_type())));
    }
    if usize::try_from(msg.bodyLength()).ok() != Some(body) {
        return Err(here(format!(
            "the message's body is {} bytes, the footer says {body}",
            msg.bodyLength()
        )));
    }
    let batch = msg
        .header_as_record_batch()
        .ok_or_else(|| here("no record batch header".into()))?;
    if batch.compression().is_some() {
        return Err(here(
            "compressed batches are not part of the map format".into(),
        ));
    }
    let rows = batch.length();
    if rows < 0 {
        return Err(here(format!("{rows} rows")));
    }
    let buffers = batch
        .buffers()
        .ok_or_else(|| here("no buffer list".into()))?;
    if buffers.len() != widths.len() {
        return Err(here(format!(
            "{} buffers, the schema has {}",
            buffers.len(),
            widths.len()
        )));
    }
    for (j, (buf, width)) in buffers.iter().zip(widths).enumerate() {
        // arrow asserts that a buffer holds whole values; check it here instead.
        if buf.length() % *width as i64 != 0 {
            return Err(here(format!(
                "buffer {j} is {} bytes, not a whole number of {width}-byte values",
                buf.length()
            )));
        }
        // The format aligns every buffer to 8 bytes; arrow asserts alignment, so check it here.
        if buf.offset() % 8 != 0 {
            return Err(here(format!(
                "buffer {j} at {} is not 8-byte aligned",
                buf.offset()
            )));
        }
        let fits = usize::try_from(buf.offset())
            .ok()
            .zip(usize::try_from(buf.length()).ok())
            .and_then(|(o, l)| o.checked_add(l))
            .is_some_and(|e| e <= body);
        if !fits {
            return Err(here(format!(
                "buffer {j} ({} bytes at {}) lies outside the {body}-byte body",
                buf.length(),
                buf.offset()
            )));
        }
    }
    for (j, node) in batch.nodes().into_iter().flatten().enumerate() {
        // Every value takes at least one bit of body, so no honest length exceeds the body's
        // bits; a larger one would only make arrow build or validate a huge empty array.
        let max = (body as i64).saturating_mul(8).max(rows);
        if node.length() < 0
            || node.length() > max
            || !(0..=node.length()).contains(&node.null_count())
        {
            return Err(here(format!(
                "field node {j}: length {} with {} nulls",
                node.length(),
                node.null_count()
            )));
        }
    }
    if rows > (body as i64).saturating_mul(8).max(1) {
        return Err(here(format!("{rows} rows in a {body}-byte body")));
    }
    Ok(at + meta + body)
}
