//! The beacon log contract, version 1 (`docs/beacon-schema.md`): the two tables, their Arrow
//! schemas, and the row types writers fill.
//!
//! The schema is public and stable: analysts and mapgen read these files. A change makes a
//! version 2; version 1 stays readable.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, StringBuilder, TimestampMicrosecondBuilder, UInt16Builder,
};
use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

/// Value of the `geodns.beacon.schema` key in every file's metadata.
pub const SCHEMA_VERSION: &str = "1";
/// The metadata key naming the schema version.
pub const SCHEMA_KEY: &str = "geodns.beacon.schema";

/// The smallest believable round-trip time, ms (1 µs). Browsers time fetches to 5-100 µs, and
/// no fetch crosses a network faster; anything below is a client's arithmetic, not a
/// measurement (and 1e-300 would turn to 0 in any 32-bit reader).
pub const MIN_RTT_MS: f64 = 0.001;

/// Whether `id` is a valid probe id: lowercase `[a-z0-9]{8,64}`.
pub fn valid_probe_id(id: &str) -> bool {
    (8..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A validated probe id stored inline, so logging one from the DNS query path allocates
/// nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ProbeId {
    len: u8,
    bytes: [u8; 64],
}

impl ProbeId {
    /// The id, if `id` is a valid probe id.
    pub fn new(id: &[u8]) -> Option<ProbeId> {
        let text = std::str::from_utf8(id).ok()?;
        if !valid_probe_id(text) {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..id.len()].copy_from_slice(id);
        Some(ProbeId {
            len: id.len() as u8,
            bytes,
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("validated ASCII")
    }
}

impl std::fmt::Debug for ProbeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Microseconds since the Unix epoch.
pub fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A table of the contract: its directory name, schema, and how rows become a batch.
pub trait Table: Send + 'static {
    /// Directory under the log root (`dns_probe`, `rtt_report`).
    const NAME: &'static str;
    /// The Arrow schema.
    fn schema() -> SchemaRef;
    /// When the row was logged, µs since the epoch (decides its date partition).
    fn ts_micros(&self) -> i64;
    /// Columns whose values are (nearly) all distinct, written without dictionary encoding
    /// (a dictionary of unique values only costs time and space).
    const UNIQUE_COLUMNS: &'static [&'static str] = &["ts", "probe_id"];

    /// Builds one batch from rows.
    fn to_batch(rows: &[&Self]) -> Result<RecordBatch, ArrowError>
    where
        Self: Sized;
}

fn ts_field() -> Field {
    Field::new(
        "ts",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

/// One query for a unique probe name, as the authoritative server saw it. Compact and
/// allocation-free to build (text is rendered by the writer thread), because rows are made on
/// the DNS query path.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsProbeRow {
    /// When the query arrived, µs since the epoch.
    pub ts: i64,
    /// The probe id label.
    pub probe_id: ProbeId,
    /// The PoP named in the query, if any.
    pub pop: Option<Arc<str>>,
    /// The query's source address.
    pub resolver_ip: IpAddr,
    /// The ECS subnet as sent (address, source prefix length).
    pub ecs_subnet: Option<(IpAddr, u8)>,
    /// QTYPE.
    pub qtype: u16,
    /// The server that logged it.
    pub server: Arc<str>,
}

impl Table for DnsProbeRow {
    const NAME: &'static str = "dns_probe";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            ts_field(),
            Field::new("probe_id", DataType::Utf8, false),
            Field::new("pop", DataType::Utf8, true),
            Field::new("resolver_ip", DataType::Utf8, false),
            Field::new("ecs_subnet", DataType::Utf8, true),
            Field::new("qtype", DataType::UInt16, false),
            Field::new("server", DataType::Utf8, false),
        ]))
    }

    fn ts_micros(&self) -> i64 {
        self.ts
    }

    fn to_batch(rows: &[&Self]) -> Result<RecordBatch, ArrowError> {
        let mut ts = TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
        let (mut id, mut pop, mut ip, mut ecs, mut server) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut qtype = UInt16Builder::with_capacity(rows.len());
        for r in rows {
            ts.append_value(r.ts);
            id.append_value(r.probe_id.as_str());
            pop.append_option(r.pop.as_deref());
            let _ = write!(ip, "{}", r.resolver_ip);
            ip.append_value("");
            match r.ecs_subnet {
                Some((addr, len)) => {
                    let _ = write!(ecs, "{addr}/{len}");
                    ecs.append_value("");
                }
                None => ecs.append_null(),
            }
            qtype.append_value(r.qtype);
            server.append_value(&*r.server);
        }
        RecordBatch::try_new(
            Self::schema(),
            vec![
                Arc::new(ts.finish()),
                Arc::new(id.finish()),
                Arc::new(pop.finish()),
                Arc::new(ip.finish()),
                Arc::new(ecs.finish()),
                Arc::new(qtype.finish()),
                Arc::new(server.finish()),
            ],
        )
    }
}

/// One measurement a client reported to the collector.
#[derive(Clone, Debug, PartialEq)]
pub struct RttReportRow {
    /// When the collector received the report, µs since the epoch.
    pub ts: i64,
    /// The probe id the client used for this PoP.
    pub probe_id: String,
    /// The PoP measured.
    pub pop: String,
    /// The client's address as seen by the collector (after trusted proxies).
    pub client_ip: String,
    /// Round-trip time in ms; `None` when the fetch failed.
    pub rtt_ms: Option<f64>,
    /// Whether the fetch succeeded.
    pub ok: bool,
    /// The collector that logged it.
    pub collector: String,
}

impl Table for RttReportRow {
    const NAME: &'static str = "rtt_report";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            ts_field(),
            Field::new("probe_id", DataType::Utf8, false),
            Field::new("pop", DataType::Utf8, false),
            Field::new("client_ip", DataType::Utf8, false),
            Field::new("rtt_ms", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, false),
            Field::new("collector", DataType::Utf8, false),
        ]))
    }

    fn ts_micros(&self) -> i64 {
        self.ts
    }

    fn to_batch(rows: &[&Self]) -> Result<RecordBatch, ArrowError> {
        let mut ts = TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
        let (mut id, mut pop, mut ip, mut collector) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut rtt = Float64Builder::with_capacity(rows.len());
        let mut ok = BooleanBuilder::with_capacity(rows.len());
        for r in rows {
            ts.append_value(r.ts);
            id.append_value(&r.probe_id);
            pop.append_value(&r.pop);
            ip.append_value(&r.client_ip);
            rtt.append_option(r.rtt_ms);
            ok.append_value(r.ok);
            collector.append_value(&r.collector);
        }
        RecordBatch::try_new(
            Self::schema(),
            vec![
                Arc::new(ts.finish()),
                Arc::new(id.finish()),
                Arc::new(pop.finish()),
                Arc::new(ip.finish()),
                Arc::new(rtt.finish()),
                Arc::new(ok.finish()),
                Arc::new(collector.finish()),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_ids() {
        assert!(valid_probe_id("abcdef12"));
        assert!(valid_probe_id(&"a".repeat(64)));
        for bad in ["abc", "ABCDEFGH", "abcdefg-", &"a".repeat(65), "abcdefgé"] {
            assert!(!valid_probe_id(bad), "{bad:?}");
        }
    }
}
