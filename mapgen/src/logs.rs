//! The beacon logs as polars lazy frames: scanned from the hive layout of the contract
//! (`docs/beacon-schema.md`), limited to the time window, and split into valid rows and bad
//! rows counted by reason. Nothing here aborts on bad data; only unreadable files do.

use std::net::IpAddr;
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use polars::prelude::*;

/// Prefix lengths of the aggregation levels: (IPv4, IPv6), finest first.
pub const LEVELS: [(u8, u8); 3] = [(24, 48), (20, 40), (16, 32)];

/// The largest gap between a DNS probe and the report it pairs with (the contract's 10 min).
pub const MAX_PAIR_GAP_MICROS: i64 = 600_000_000;

/// The prefix (as CIDR text) of an address at the given lengths, or `None` if it is not an
/// address.
pub fn prefix_of(text: &str, v4: u8, v6: u8) -> Option<String> {
    let ip: IpAddr = text.parse().ok()?;
    let net: IpNet = match ip.to_canonical() {
        IpAddr::V4(a) => Ipv4Net::new(a, v4).ok()?.trunc().into(),
        IpAddr::V6(a) => Ipv6Net::new(a, v6).ok()?.trunc().into(),
    };
    Some(net.to_string())
}

/// An expression mapping an address column to its prefix text (null for junk). Each distinct
/// address in a batch is parsed once: logs repeat the same clients and resolvers many times.
pub fn prefix_expr(e: Expr, v4: u8, v6: u8) -> Expr {
    e.map(
        move |c: Column| {
            let ca = c.str()?;
            let mut memo: std::collections::HashMap<&str, Option<String>> = std::collections::HashMap::new();
            for v in ca.iter().flatten() {
                memo.entry(v).or_insert_with(|| prefix_of(v, v4, v6));
            }
            let out: StringChunked = ca.iter().map(|v| v.and_then(|s| memo.get(s).and_then(|p| p.as_deref()))).collect();
            Ok(out.with_name(c.name().clone()).into_column())
        },
        |_, f| Ok(Field::new(f.name().clone(), DataType::String)),
    )
}

fn scan(root: &Path, table: &str) -> PolarsResult<LazyFrame> {
    let pattern = format!("{}/{table}/**/*.parquet", root.display());
    // The `date=` partition column is not used (rows carry their own ts); keep it as text.
    let hive_options = HiveOptions { try_parse_dates: false, ..HiveOptions::new_enabled() };
    let args = ScanArgsParquet { hive_options, ..Default::default() };
    LazyFrame::scan_parquet(PlRefPath::new(pattern), args)
}

fn valid_id() -> Expr {
    col("probe_id").str().contains(lit("^[a-z0-9]{8,64}$"), true)
}

fn null_str() -> Expr {
    lit(NULL).cast(DataType::String)
}

fn in_window(since: Option<i64>, until: Option<i64>) -> Expr {
    let ts = col("ts").cast(DataType::Int64);
    let mut e = col("ts").is_not_null();
    if let Some(s) = since {
        e = e.and(ts.clone().gt_eq(lit(s)));
    }
    if let Some(u) = until {
        e = e.and(ts.lt(lit(u)));
    }
    e
}

fn pop_list(pops: &[String]) -> Expr {
    lit(Series::new("pops".into(), pops)).implode(false)
}

/// `rtt_report` rows in the window, with a `reason` column (null for valid rows) and the
/// client's aggregation prefixes `client_l0`.. (one per [`LEVELS`]).
pub fn rtt_reports(root: &Path, pops: &[String], max_rtt_ms: f64, since: Option<i64>, until: Option<i64>) -> PolarsResult<LazyFrame> {
    let mut lf = scan(root, "rtt_report")?.filter(in_window(since, until));
    for (i, (v4, v6)) in LEVELS.iter().enumerate() {
        lf = lf.with_column(prefix_expr(col("client_ip"), *v4, *v6).alias(format!("client_l{i}")));
    }
    let bad_rtt = col("rtt_ms").is_null().or(col("rtt_ms").lt_eq(lit(0.0))).or(col("rtt_ms").gt(lit(max_rtt_ms))).or(col("rtt_ms").is_nan());
    let reason = when(col("probe_id").is_null().or(valid_id().not()))
        .then(lit("bad_probe_id"))
        .when(col("pop").is_null().or(col("pop").is_in(pop_list(pops), false).not()))
        .then(lit("unknown_pop"))
        .when(col("client_l0").is_null())
        .then(lit("bad_client_ip"))
        .when(col("ok").is_null())
        .then(lit("null_ok"))
        .when(col("ok").and(bad_rtt))
        .then(lit("bad_rtt"))
        .otherwise(null_str());
    Ok(lf.with_column(reason.alias("reason")))
}

/// `dns_probe` rows in the window (widened by the pairing gap on both sides, so reports near
/// the window's edges still find their probes), with `reason` and the resolver's prefixes
/// `resolver` (/32 or /128) and `resolver_l0` (/24 or /48).
pub fn dns_probes(root: &Path, pops: &[String], since: Option<i64>, until: Option<i64>) -> PolarsResult<LazyFrame> {
    let lf = scan(root, "dns_probe")?
        .filter(in_window(since.map(|s| s - MAX_PAIR_GAP_MICROS), until.map(|u| u + MAX_PAIR_GAP_MICROS)))
        .with_column(prefix_expr(col("resolver_ip"), 32, 128).alias("resolver"))
        .with_column(prefix_expr(col("resolver_ip"), LEVELS[0].0, LEVELS[0].1).alias("resolver_l0"));
    let reason = when(col("probe_id").is_null().or(valid_id().not()))
        .then(lit("bad_probe_id"))
        .when(col("resolver").is_null())
        .then(lit("bad_resolver_ip"))
        .when(col("pop").is_null())
        .then(lit("no_pop"))
        .when(col("pop").is_in(pop_list(pops), false).not())
        .then(lit("unknown_pop"))
        .otherwise(null_str());
    Ok(lf.with_column(reason.alias("reason")))
}
