#!/usr/bin/env python3
"""mapgen's first stage on Apache Spark (docs/mapgen.md, "On a Spark cluster").

Reads the beacon logs where they are (any path or URI Spark reads: a local directory, HDFS,
S3), checks and pairs them, and writes the first stage's output, the aggregates
(docs/mapgen.md, "The aggregates"), which `geodns mapgen --aggregates DIR` turns into the map
on one machine. The rules are mapgen's (`mapgen/src/logs.rs`, `pairing.rs`, `aggregate.rs`),
restated here in Spark SQL so that the map is the same one, bit for bit:

- the same file checks (contract version, column types, copies of a file), bad files refused
  or, with --skip-bad-files, left out and listed;
- the same row validation, counted by the same reasons; the same window and duplicate rule;
- pairing on probe id and PoP within 10 minutes;
- the same session hash and holdout split (Spark's xxhash64, which mapgen computes too);
- the same statistics, in the same arithmetic: each group's RTTs sorted, the lower median,
  the p90 by linear interpolation, and the variance of log RTT summed in ascending order with
  Spark's `ln` (fdlibm, which mapgen computes too).

Run:  spark-submit --master spark://HOST:7077 spark/first_stage.py \\
          --config geodns.toml --logs hdfs:///beacon --out hdfs:///mapgen/agg [--days 30]

Only built-in Spark SQL runs on the executors (no Python UDF, nothing to install on them).
"""

import argparse
import datetime
import json
import sys
import time

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

SCHEMA = 2  # the aggregates' layout (mapgen/src/aggregates.rs, SCHEMA)
CONTRACT_KEY = "geodns.beacon.schema"  # the beacon log contract's version key
CONTRACT_VERSION = "1"
MIN_RTT_MS = 0.001
PAIR_GAP_US = 600_000_000  # a report pairs with probe queries within 10 minutes
SESSION_US = 600_000_000  # one session: a client address in one 10-minute window
CLOCK_SKEW_US = 300_000_000  # rows stamped later than now + this are from the future
V4_TAG = -4294967296  # 0xFFFFFFFF00000000 as a signed 64-bit integer
DAY_US = 86_400_000_000

# The contract's columns mapgen reads, with the Parquet types it accepts and how the local
# reader names them in errors (mapgen/src/logs.rs, contract_columns).
TIMESTAMP = ("INT64", "TIMESTAMP(MICROS,true)", "Timestamp(Microsecond, UTC)")
UTF8 = ("BINARY", "STRING", "Utf8")
FLOAT64 = ("DOUBLE", None, "Float64")
BOOLEAN = ("BOOLEAN", None, "Boolean")
COLUMNS = {
    "rtt_report": {"ts": TIMESTAMP, "probe_id": UTF8, "pop": UTF8, "client_ip": UTF8,
                   "rtt_ms": FLOAT64, "ok": BOOLEAN},
    "dns_probe": {"ts": TIMESTAMP, "probe_id": UTF8, "pop": UTF8, "resolver_ip": UTF8},
}


class Refused(Exception):
    """The run cannot give a correct map; the message says why (and names the file)."""


# ---------------------------------------------------------------------------------------
# Addresses: Rust's `IpAddr::from_str` grammar, and mapgen's integer keys (mapgen/src/key.rs)

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_V4 = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
_H16 = r"[0-9a-fA-F]{1,4}"
_LS32 = rf"({_H16}:{_H16}|{_V4})"
# RFC 3986's IPv6address, which is what Rust accepts: "::" stands for at least one group.
_V6 = "(" + "|".join([
    rf"({_H16}:){{6}}{_LS32}",
    rf"::({_H16}:){{5}}{_LS32}",
    rf"({_H16})?::({_H16}:){{4}}{_LS32}",
    rf"(({_H16}:){{0,1}}{_H16})?::({_H16}:){{3}}{_LS32}",
    rf"(({_H16}:){{0,2}}{_H16})?::({_H16}:){{2}}{_LS32}",
    rf"(({_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
    rf"(({_H16}:){{0,4}}{_H16})?::{_LS32}",
    rf"(({_H16}:){{0,5}}{_H16})?::{_H16}",
    rf"(({_H16}:){{0,6}}{_H16})?::",
]) + ")"
V4_RE = rf"^{_V4}\z"
V6_RE = rf"^{_V6}\z"


def _v4_bits(s):
    """The 32 bits of a dotted quad (checked already), as a long."""
    o = F.split(s, r"\.")
    return (o[0].cast("long") * 16777216 + o[1].cast("long") * 65536
            + o[2].cast("long") * 256 + o[3].cast("long"))


def with_address_key(df, text, key):
    """Adds column `key`: mapgen's key of the address in column `text` (`key::parse`), or
    null. An IPv4 address `a` is 0xFFFFFFFF00000000 | a, an IPv6 address its upper 64 bits,
    an IPv4-mapped IPv6 address counts as IPv4, and multicast IPv6 (never a source) is
    refused. Built in steps, each a column of its own, so the generated code stays small."""
    s = F.col(text)
    df = df.withColumn("_family", F.when(s.rlike(V4_RE), 4).when(s.rlike(V6_RE), 6))
    # IPv6: an IPv4 tail becomes two hex groups, then "::" is expanded to its zero groups.
    df = df.withColumn("_tail", F.when(F.col("_family") == 6, F.regexp_extract(
        s, rf"({_V4})\z", 1)))
    tail_bits = _v4_bits(F.col("_tail"))
    df = df.withColumn("_hex", F.when(
        F.col("_family") == 6,
        F.when(F.length("_tail") > 0, F.concat(
            F.expr(f"substring({text}, 1, length({text}) - length(_tail))"),
            F.lower(F.hex(F.shiftright(tail_bits, 16))), F.lit(":"),
            F.lower(F.hex(tail_bits.bitwiseAND(65535))))).otherwise(s)))
    df = df.withColumn("_sides", F.split(F.col("_hex"), "::", 2))
    side = lambda i: F.when(F.col("_sides")[i] == "", F.array().cast("array<string>")) \
        .otherwise(F.split(F.col("_sides")[i], ":"))
    df = df.withColumn("_groups", F.when(
        F.size("_sides") == 2,
        F.concat(side(0), F.array_repeat(F.lit("0"), 8 - F.size(side(0)) - F.size(side(1))),
                 side(1))).otherwise(F.split(F.col("_hex"), ":")))
    df = df.withColumn("_g", F.transform("_groups", lambda x: F.conv(x, 16, 10).cast("long")))
    g = [F.col("_g")[i] for i in range(8)]
    upper = (F.shiftleft(g[0], 48).bitwiseOR(F.shiftleft(g[1], 32))
             .bitwiseOR(F.shiftleft(g[2], 16)).bitwiseOR(g[3]))
    mapped = (g[0] == 0) & (g[1] == 0) & (g[2] == 0) & (g[3] == 0) & (g[4] == 0) & (g[5] == 65535)
    v6_key = (F.when(mapped, F.lit(V4_TAG).bitwiseOR(F.shiftleft(g[6], 16).bitwiseOR(g[7])))
              .when(F.shiftright(g[0], 8) == 255, F.lit(None).cast("long"))
              .otherwise(upper))
    df = df.withColumn(key, F.when(F.col("_family") == 4, F.lit(V4_TAG).bitwiseOR(_v4_bits(s)))
                       .when(F.col("_family") == 6, v6_key))
    return df.drop("_family", "_tail", "_hex", "_sides", "_groups", "_g")


def is_v4_key(k):
    return F.shiftright(k, 32) == -1


def truncate(k, v4, v6):
    """`key::truncate`: the key cut to /v4 or /v6 (at most 64)."""
    m4 = V4_TAG | ((0xFFFFFFFF << (32 - v4)) & 0xFFFFFFFF)
    m6 = (-1 << (64 - v6)) if v6 < 64 else -1
    return F.when(is_v4_key(k), k.bitwiseAND(F.lit(m4))).otherwise(k.bitwiseAND(F.lit(m6)))


def prefix_text(k, v4, v6):
    """A (truncated) key as CIDR text, as the aggregates carry it."""
    octet = lambda shift: F.shiftright(k, shift).bitwiseAND(255).cast("string")
    v4_text = F.concat_ws(".", octet(24), octet(16), octet(8), octet(0))
    group = lambda shift: F.lower(F.hex(F.shiftright(k, shift).bitwiseAND(65535)))
    v6_text = F.concat(F.concat_ws(":", group(48), group(32), group(16), group(0)), F.lit("::"))
    return F.when(is_v4_key(k), F.concat(v4_text, F.lit(f"/{v4}"))).otherwise(
        F.concat(v6_text, F.lit(f"/{v6}")))


# ---------------------------------------------------------------------------------------
# Files: listed, checked against the contract and for copies, as mapgen/src/logs.rs does

def hadoop_fs(spark, uri):
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())
    return fs, fs.makeQualified(path)


def list_files(spark, root, table):
    """The `.parquet` files under root/table, in mapgen's order, except names starting with
    `.` or `_` anywhere below the table's directory."""
    fs, base = hadoop_fs(spark, f"{root.rstrip('/')}/{table}")
    if not fs.exists(base):
        return None
    out = []
    it = fs.listFiles(base, True)
    base_text = base.toUri().getPath().rstrip("/")
    while it.hasNext():
        st = it.next()
        p = st.getPath()
        rel = p.toUri().getPath()[len(base_text) + 1:].split("/")
        if any(part.startswith((".", "_")) for part in rel) or not rel[-1].endswith(".parquet"):
            continue
        out.append((rel, p.toString(), st.getLen()))
    out.sort(key=lambda f: f[0])
    return [(path, size) for _, path, size in out]


def check_file(spark, path, columns):
    """None if the file is readable Parquet of the contract's version with the columns mapgen
    reads, in their types; else what is wrong, worded as mapgen words it."""
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    try:
        hp = jvm.org.apache.hadoop.fs.Path(path)
        reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(
            jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(hp, conf))
        try:
            meta = reader.getFooter().getFileMetaData()
        finally:
            reader.close()
    except Exception as e:  # noqa: BLE001 -- any failure to read the footer names the file
        return f"not a readable Parquet file: {str(e).splitlines()[0]}"
    kv = meta.getKeyValueMetaData()
    if not kv.containsKey(CONTRACT_KEY):
        return (f"no {CONTRACT_KEY} key in the file's metadata: not a beacon log "
                f"(want version {CONTRACT_VERSION})")
    version = kv.get(CONTRACT_KEY)
    if version != CONTRACT_VERSION:
        return f"{CONTRACT_KEY} = {version}: this mapgen reads version {CONTRACT_VERSION}"
    schema = meta.getSchema()
    for name, (physical, logical, shown) in columns.items():
        if not schema.containsField(name):
            return f"column {name}: missing"
        t = schema.getType(name)
        found_logical = None
        ok = t.isPrimitive() and t.getRepetition().name() != "REPEATED"
        if ok:
            ann = t.getLogicalTypeAnnotation()
            found_logical = None if ann is None else ann.toString()
            ok = (t.asPrimitiveType().getPrimitiveTypeName().name() == physical
                  and (logical is None or found_logical == logical))
        if not ok:
            return f"column {name}: want {shown}, found {t.toString().strip()}"
    return None


def content_digest(spark, path):
    jvm = spark._jvm
    fs, p = hadoop_fs(spark, path)
    stream = fs.open(p)
    try:
        return jvm.org.apache.commons.codec.digest.DigestUtils.sha256Hex(stream)
    finally:
        stream.close()


def checked_files(spark, args, table, report):
    """The good files of one table; refuses the run over a bad one unless --skip-bad-files.
    A file whose bytes are an earlier good file's is a copy (every row would count twice)."""
    files = list_files(spark, args.logs, table)
    where = f"{args.logs.rstrip('/')}/{table}"
    if files is None:
        raise Refused(f"{where}: no such directory; mapgen needs both dns_probe and "
                      f"rtt_report logs")
    sizes = {}
    for _, size in files:
        sizes[size] = sizes.get(size, 0) + 1
    good, bad, seen = [], [], {}
    for path, size in files:
        digest = content_digest(spark, path) if sizes[size] > 1 else None
        if digest is not None and digest in seen:
            report["copied_files"].append(f"{path} = {seen[digest]}")
            continue
        problem = check_file(spark, path, COLUMNS[table])
        if problem is None:
            good.append(path)
            if digest is not None:
                seen[digest] = path
        else:
            bad.append(f"{path}: {problem}")
    if bad and not args.skip_bad_files:
        listed = "\n  ".join(bad[:10])
        more = f"\n  and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise Refused(f"{len(bad)} {table} files do not follow the log contract (move them "
                      f"aside, or rerun with --skip-bad-files):\n  {listed}{more}")
    report["skipped_files"].extend(bad)
    if not good:
        raise Refused(f"{where}: no usable .parquet file in it; mapgen needs both dns_probe "
                      f"and rtt_report logs")
    return good


# ---------------------------------------------------------------------------------------
# Rows: the window, validation by reason, as mapgen/src/logs.rs

def show(c):
    return F.coalesce(c.cast("string"), F.lit("null"))


def rfc3339_seconds(us):
    return datetime.datetime.fromtimestamp(max(us, 0) // 1_000_000, datetime.timezone.utc) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micros(us):
    t = datetime.datetime.fromtimestamp(us // 1_000_000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{us % 1_000_000:06d}Z"


def parse_time(flag, text):
    try:
        t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Refused(f"--{flag} {text!r}: want RFC 3339, e.g. 2026-11-25T00:00:00Z") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    d = t - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def outside_window(df, window):
    """Rows the window leaves out, by reason: [(reason, rows, sample, invalid)]."""
    since, until, future = window
    ts = F.col("ts_us")
    reasons = [("future_ts", ts >= future, True)]
    if since is not None:
        reasons.append(("before_window", ts < since, False))
    if until < future:
        reasons.append(("after_window", (ts >= until) & (ts < future), False))
    exprs = [F.sum(F.col("ts").isNull().cast("long")).alias("null_ts")]
    for name, cond, _ in reasons:
        exprs += [F.sum(cond.cast("long")).alias(name),
                  F.min(F.when(cond, ts)).alias(name + "_min"),
                  F.max(F.when(cond, ts)).alias(name + "_max")]
    row = df.agg(*exprs).collect()[0]
    out = []
    if row["null_ts"]:
        out.append(("null_ts", row["null_ts"], "ts is null", True))
    for name, _, invalid in reasons:
        if row[name]:
            sample = (f"ts from {rfc3339_seconds(row[name + '_min'])} "
                      f"to {rfc3339_seconds(row[name + '_max'])}")
            out.append((name, row[name], sample, invalid))
    return out


def in_window(window):
    since, until, _ = window
    cond = F.col("ts").isNotNull() & (F.col("ts_us") < until)
    if since is not None:
        cond = cond & (F.col("ts_us") >= since)
    return cond


def pop_index(pops):
    """A PoP id's index in the config's order, or null."""
    at = F.array_position(F.array(*[F.lit(p) for p in pops]), F.col("pop")).cast("int")
    return F.when(at > 0, at - 1)


def valid_id():
    # The contract's probe id, lowercase [a-z0-9]{8,64} (beacon/src/schema.rs).
    return F.col("probe_id").rlike(r"^[a-z0-9]{8,64}\z")


def validate(df, sample, outside):
    """One pass over the window's rows: the refused ones counted by reason (with up to three
    samples), the good ones counted, and their oldest and newest timestamp. Rows the window
    left out that are invalid (no timestamp, from the future) count as read and refused.
    Returns (rows read, bad rows by reason, good rows, (oldest, newest) good timestamp)."""
    groups = (df.groupBy("reason")
              .agg(F.count(F.lit(1)).alias("rows"),
                   F.array_distinct(F.array(F.min(sample), F.max(sample), F.first(sample)))
                   .alias("samples"),
                   F.min("ts_us").alias("oldest"), F.max("ts_us").alias("newest"))
              .collect())
    bad, rows, good, span = {}, 0, 0, (None, None)
    for g in groups:
        rows += g["rows"]
        if g["reason"] is None:
            good, span = g["rows"], (g["oldest"], g["newest"])
        else:
            bad[g["reason"]] = (g["rows"], [x for x in g["samples"] if x is not None][:3])
    for reason, n, text, invalid in outside:
        if invalid:
            rows += n
            bad[reason] = (n, [text])
    return rows, bad, good, span


def read_table(spark, paths, columns):
    return spark.read.parquet(*paths).select(*columns)


# ---------------------------------------------------------------------------------------
# The statistics, in mapgen's arithmetic (mapgen/src/aggregate.rs, pop_stat)

def client_stats(m):
    g = (m.groupBy("client", "pop")
         .agg(F.count(F.lit(1)).alias("samples"),
              F.array_sort(F.collect_list("rtt")).alias("ok")))
    k = F.size("ok")
    at = lambda i: F.element_at(F.col("ok"), i + 1).cast("double")
    pos = (k - 1).cast("double") * F.lit(0.9)
    i = pos.cast("int")
    p90 = F.when(pos == i.cast("double"), at(i)).otherwise(
        at(i) + (pos - i.cast("double")) * (at(i + 1) - at(i)))
    logs = F.transform("ok", lambda x: F.ln(x.cast("double")))
    mean = F.aggregate(logs, F.lit(0.0).cast("double"), lambda a, x: a + x) / k.cast("double")
    g = g.withColumn("mean_log", F.when(k >= 2, mean))
    var = F.aggregate(F.transform("ok", lambda x: F.ln(x.cast("double"))),
                      F.lit(0.0).cast("double"),
                      lambda a, x: a + (x - F.col("mean_log")) * (x - F.col("mean_log")))
    return g.select(
        "client", "pop", "samples",
        F.when(k > 0, at(((k - 1) / 2).cast("int"))).alias("median_ms"),
        F.when(k > 0, p90).alias("p90_ms"),
        (F.lit(1.0) - k.cast("double") / F.col("samples").cast("double")).alias("fail_rate"),
        F.when(k >= 2, var / (k - 1).cast("double")).alias("log_var"),
    )


# ---------------------------------------------------------------------------------------

def options():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logs", required=True, help="log root with dns_probe/ and rtt_report/")
    p.add_argument("--out", required=True, help="where to write the aggregates")
    pops = p.add_mutually_exclusive_group(required=True)
    pops.add_argument("--config", help="server config (geodns.toml): its PoP ids")
    pops.add_argument("--pops", help="the PoP ids, comma-separated, in the config's order")
    window = p.add_mutually_exclusive_group()
    window.add_argument("--since", help="reports from this time on (RFC 3339)")
    window.add_argument("--days", type=int, help="the last N days of reports")
    p.add_argument("--until", help="reports before this time (RFC 3339); default now")
    p.add_argument("--holdout", type=float, default=0.0)
    p.add_argument("--max-rtt-ms", type=float, default=30_000.0)
    p.add_argument("--max-invalid-share", type=float, default=0.5)
    p.add_argument("--skip-bad-files", action="store_true")
    a = p.parse_args()
    for name in ("holdout", "max_invalid_share"):
        v = getattr(a, name)
        if not 0.0 <= v <= 1.0:
            p.error(f"--{name.replace('_', '-')} {v}: want a share from 0 to 1")
    return a


def pop_ids(args):
    if args.pops:
        return [p for p in args.pops.split(",") if p]
    if tomllib is None:
        raise Refused("--config needs Python 3.11 (tomllib); give --pops instead")
    try:
        with open(args.config, "rb") as f:
            cfg = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise Refused(f"{args.config}: {e}") from None
    # The server keeps PoPs in a sorted map: their index is their rank by id.
    return sorted(cfg.get("pops", {}))


def run(spark, args):
    started = time.monotonic()
    progress = lambda text: print(f"[{time.monotonic() - started:7.1f}s] {text}",
                                  file=sys.stderr, flush=True)
    pops = pop_ids(args)
    if not pops:
        raise Refused("no PoPs: the config has no [pops.*] tables")
    now = time.time_ns() // 1000
    future = now + CLOCK_SKEW_US
    until = parse_time("until", args.until) if args.until else None
    since = parse_time("since", args.since) if args.since else None
    if args.days is not None:
        since = (until if until is not None else now) - args.days * DAY_US
    args.since_us, args.until_us = since, until
    window = (since, min(until, future) if until is not None else future, future)
    probe_window = (None if since is None else since - PAIR_GAP_US,
                    min(window[1] + PAIR_GAP_US, future), future)

    files = {"skipped_files": [], "copied_files": []}
    report_files = checked_files(spark, args, "rtt_report", files)
    probe_files = checked_files(spark, args, "dns_probe", files)
    progress(f"{len(report_files)} rtt_report and {len(probe_files)} dns_probe files checked")
    while True:
        report = {"skipped_files": list(files["skipped_files"]),
                  "copied_files": files["copied_files"], "bad": [], "outside_window": []}
        try:
            return stage(spark, args, pops, (window, probe_window), report_files, probe_files,
                         report, progress)
        except Refused:
            raise
        except Exception as e:  # noqa: BLE001 -- a file whose pages cannot be decoded?
            path = undecodable_file(e)
            if path is None:
                raise
            problem = f"{path}: data cannot be decoded: {root_cause(e)}"
            if not args.skip_bad_files:
                raise Refused(f"a log file does not follow the log contract (move it aside, "
                              f"or rerun with --skip-bad-files):\n  {problem}") from None
            progress(f"left out {path}: its data cannot be decoded; starting again")
            files["skipped_files"].append(problem)
            report_files = [f for f in report_files if not same_file(f, path)]
            probe_files = [f for f in probe_files if not same_file(f, path)]
            if not report_files or not probe_files:
                raise Refused(f"{path}: every file of its table is corrupt") from None


def first_line(e):
    return (str(e).strip().splitlines() or ["?"])[0]


def root_cause(e):
    """The innermost cause in a JVM error's trace (what went wrong, not where)."""
    import re
    causes = re.findall(r"Caused by: (.+)", str(e))
    return causes[-1].strip() if causes else first_line(e)


def undecodable_file(e):
    """The file a failed Spark job could not read, if its error names one."""
    import re
    m = re.search(r"Encountered error while reading file (\S+?)\.?(\s|$)", str(e))
    return m.group(1) if m else None


def same_file(listed, named):
    strip = lambda p: p.replace("file:///", "/").replace("file:/", "/")
    return strip(listed) == strip(named)


def stage(spark, args, pops, windows, report_files, probe_files, report, progress):
    """The first stage proper, on files that passed the checks."""
    window, probe_window = windows
    since, until = args.since_us, args.until_us
    # Reports: validated in mapgen's order of reasons.
    r = read_table(spark, report_files, ["ts", "probe_id", "pop", "client_ip", "rtt_ms", "ok"])
    r = r.withColumn("ts_us", F.unix_micros("ts"))
    r_out = outside_window(r, window)
    r = (r.where(in_window(window))
         .withColumn("pop_i", pop_index(pops)))
    r = with_address_key(r, "client_ip", "client_key")
    rtt_ok = (F.col("rtt_ms") >= MIN_RTT_MS) & (F.col("rtt_ms") <= args.max_rtt_ms)
    r = r.withColumn("reason", F.when(~valid_id() | F.col("probe_id").isNull(), "bad_probe_id")
                     .when(F.col("pop_i").isNull(), "unknown_pop")
                     .when(F.col("client_key").isNull(), "bad_client_ip")
                     .when(F.col("ok").isNull(), "null_ok")
                     .when(F.col("ok") & ~F.coalesce(rtt_ok, F.lit(False)), "bad_rtt"))
    r_sample = F.when(F.col("reason").isNotNull(), F.concat(
        F.lit("probe_id="), show(F.col("probe_id")), F.lit(" pop="), show(F.col("pop")),
        F.lit(" client_ip="), show(F.col("client_ip")), F.lit(" rtt_ms="),
        show(F.col("rtt_ms")), F.lit(" ok="), show(F.col("ok"))))

    # Probe queries, in the window widened by the pairing gap.
    d = read_table(spark, probe_files, ["ts", "probe_id", "pop", "resolver_ip"])
    d = d.withColumn("ts_us", F.unix_micros("ts"))
    d_out = outside_window(d, probe_window)
    d = (d.where(in_window(probe_window))
         .withColumn("pop_i", pop_index(pops)))
    d = with_address_key(d, "resolver_ip", "resolver")
    d = d.withColumn("reason", F.when(~valid_id() | F.col("probe_id").isNull(), "bad_probe_id")
                     .when(F.col("resolver").isNull(), "bad_resolver_ip")
                     .when(F.col("pop").isNull(), "no_pop")
                     .when(F.col("pop_i").isNull(), "unknown_pop"))
    d_sample = F.when(F.col("reason").isNotNull(), F.concat(
        F.lit("probe_id="), show(F.col("probe_id")), F.lit(" pop="), show(F.col("pop")),
        F.lit(" resolver_ip="), show(F.col("resolver_ip"))))

    counts, good, span = {}, {}, None
    for table, df, sample, out in (("rtt_report", r, r_sample, r_out),
                                   ("dns_probe", d, d_sample, d_out)):
        rows, bad, good[table], good_span = validate(df, sample, out)
        if table == "rtt_report":
            span = good_span
        for reason in sorted(bad):
            n, samples = bad[reason]
            report["bad"].append({"table": table, "reason": reason, "rows": n,
                                  "samples": samples})
        for reason, n, text, invalid in sorted(out):
            if not invalid:
                report["outside_window"].append(
                    {"table": table, "reason": reason, "rows": n, "samples": [text]})
        counts[table] = (rows, sum(n for n, _ in bad.values()))
    (rtt_rows, _), (dns_rows, _) = counts["rtt_report"], counts["dns_probe"]
    progress(f"read {rtt_rows} rtt_report and {dns_rows} dns_probe rows")
    if rtt_rows == 0 or dns_rows == 0:
        raise Refused(f"the window holds {rtt_rows} rtt_report and {dns_rows} dns_probe rows; "
                      f"both are needed")
    for table, (total, bad) in counts.items():
        if bad > args.max_invalid_share * total:
            raise Refused(f"{bad} of {total} {table} rows are invalid (more than "
                          f"{args.max_invalid_share * 100:.0f} %); see the reasons with --report")

    # Duplicates: a row with the probe id, PoP and timestamp of another is used once.
    key = ["probe_id", "pop_i", "ts_us"]
    reports = r.where(F.col("reason").isNull()).select(*key, "client_key",
                            F.when(F.col("ok"), F.col("rtt_ms").cast("float")).alias("rtt")
                            ).dropDuplicates(key).cache()
    probes = d.where(F.col("reason").isNull()).select(*key, "resolver").dropDuplicates(key).cache()
    for table, before, after in (("rtt_report", good["rtt_report"], reports.count()),
                                 ("dns_probe", good["dns_probe"], probes.count())):
        if before > after:
            report["bad"].append({
                "table": table, "reason": "duplicate_row", "rows": before - after,
                "samples": ["the probe id, PoP and timestamp of another row; used once"]})

    # Pairing: each report with every probe query of its id and PoP within 10 minutes.
    progress("pairing reports with probe queries")
    p = probes.withColumnRenamed("ts_us", "ts_d")
    m = reports.join(p, ["probe_id", "pop_i"]).where(
        F.abs(F.col("ts_us") - F.col("ts_d")) <= PAIR_GAP_US)
    window_no = F.expr(f"(ts_us - pmod(ts_us, {SESSION_US})) div {SESSION_US}")
    m = m.select(
        truncate(F.col("client_key"), 24, 48).alias("client"),
        F.col("resolver"), F.col("pop_i").alias("pop"), F.col("rtt"),
        F.shiftrightunsigned(F.xxhash64(F.col("client_key"), window_no), 16)
        .alias("session"))
    if args.holdout > 0.0:
        held_cond = F.shiftright(F.col("session"), 16).cast("double") < (
            args.holdout * 4294967295.0)
        m = m.withColumn("held", held_cond).cache()
        held = m.where("held").select("client", "resolver", F.col("pop").cast("short"),
                                      "rtt", "session")
        kept = m.where(~F.col("held"))
    else:
        held, kept = None, m
    kept = kept.select("client", "resolver", "pop", "rtt").cache()
    measurements = kept.count()
    if measurements == 0:
        raise Refused("no report pairs with a probe query (same probe id and PoP within 10 "
                      "minutes)")
    progress(f"{measurements} pairings; computing the statistics")

    out = args.out.rstrip("/")
    # meta.json goes first and comes back last: a run that dies half way leaves tables
    # without it, which the local step refuses, never new tables under an old meta.json.
    fs, meta_path = hadoop_fs(spark, f"{out}/meta.json")
    if fs.exists(meta_path):
        fs.delete(meta_path, False)
    pop_names = F.array(*[F.lit(x) for x in pops])
    stats = client_stats(kept)
    stats = stats.select(prefix_text(F.col("client"), 24, 48).alias("client"),
                         F.element_at(pop_names, F.col("pop") + 1).alias("pop"),
                         "samples", "median_ms", "p90_ms", "fail_rate", "log_var").cache()
    stats.write.mode("overwrite").parquet(f"{out}/client_stats.parquet")
    per_subnet = stats.groupBy("client").agg(F.sum("samples").alias("n"),
                                             F.max("samples").alias("most"))
    totals = per_subnet.agg(F.sum("n"), F.sum("most")).collect()[0]
    pairings_per_session = float(totals[0]) / float(max(totals[1], 1))
    (kept.groupBy("resolver", "client").count()
     .select(prefix_text(F.col("resolver"), 32, 64).alias("resolver"),
             prefix_text(F.col("client"), 24, 48).alias("client"),
             F.col("count").cast("double").alias("samples"))
     .write.mode("overwrite").parquet(f"{out}/populations.parquet"))
    fs, held_path = hadoop_fs(spark, f"{out}/held.parquet")
    if held is not None:
        held.write.mode("overwrite").parquet(f"{out}/held.parquet")
    elif fs.exists(held_path):
        fs.delete(held_path, True)

    meta = {
        "schema": SCHEMA,
        "pops": pops,
        "holdout": args.holdout,
        "max_rtt_ms": args.max_rtt_ms,
        "since": rfc3339_micros(since) if since is not None else None,
        "until": rfc3339_micros(until) if until is not None else None,
        "pairings_per_session": pairings_per_session,
        "input": {
            "dns_rows": dns_rows,
            "rtt_rows": rtt_rows,
            "skipped_files": report["skipped_files"],
            "copied_files": report["copied_files"],
            "bad": report["bad"],
            "outside_window": report["outside_window"],
            "measurements": measurements,
            "window": ([rfc3339_seconds(span[0]), rfc3339_seconds(span[1])]
                       if span[0] is not None else None),
        },
    }
    write_text(spark, f"{out}/meta.json", json.dumps(meta, indent=2))
    progress(f"wrote {out}")


def write_text(spark, uri, text):
    """Writes a small file through Hadoop's file system (any URI the cluster reads)."""
    fs, path = hadoop_fs(spark, uri)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode()))
    finally:
        stream.close()


def main():
    args = options()
    # ANSI mode off: the key arithmetic wraps on 64 bits, as it does in mapgen.
    spark = (SparkSession.builder.appName("geodns mapgen first stage")
             .config("spark.sql.ansi.enabled", "false")
             # Let adaptive execution size the partitions of cached frames too (small worlds
             # would otherwise write 200 part files per table).
             .config("spark.sql.optimizer.canChangeCachedPlanOutputPartitioning", "true")
             .getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    try:
        run(spark, args)
    except Refused as e:
        print(f"error: refusing the input: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 -- Spark's own failures: the trace, then one line
        import traceback
        traceback.print_exc()
        print(f"error: {first_line(e)}", file=sys.stderr)
        sys.exit(1)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
