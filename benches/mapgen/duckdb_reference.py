#!/usr/bin/env python3
"""The mapgen aggregation in DuckDB, as the speed reference for `geodns mapgen`.

usage: duckdb_reference.py LOG_ROOT [THREADS] [CONFIG]     (pip install duckdb)

CONFIG is the server config whose PoPs are valid (default data/geodns.toml).

Does what mapgen's polars part does on the same logs: validate report rows, pair them with
probe queries on (probe_id, pop) within 10 minutes, and aggregate samples, median and p90 RTT
and failure rate per (client /24, PoP) at /24, /20 and /16, and per resolver and resolver /24
(client-weighted: median of per-client-subnet medians). IPv4 only (the simulated logs are).
Prints the row counts and the wall time.
"""
import sys
import time
import tomllib

import duckdb

root = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
config = sys.argv[3] if len(sys.argv) > 3 else "data/geodns.toml"
with open(config, "rb") as f:
    pops = ", ".join(f"'{p}'" for p in tomllib.load(f)["pops"])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
t0 = time.time()
con.execute(f"""
CREATE TEMP VIEW rtt AS
  SELECT epoch_us(ts) AS ts_r, probe_id, pop, client_ip, rtt_ms, ok
  FROM read_parquet('{root}/rtt_report/**/*.parquet', hive_partitioning = true)
  WHERE regexp_full_match(probe_id, '[a-z0-9]{{8,64}}')
    AND pop IN ({pops})
    AND client_ip SIMILAR TO '[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+'
    AND ok IS NOT NULL
    AND (NOT ok OR (rtt_ms > 0 AND rtt_ms <= 30000));
CREATE TEMP VIEW dns AS
  SELECT epoch_us(ts) AS ts_d, probe_id, pop, resolver_ip
  FROM read_parquet('{root}/dns_probe/**/*.parquet', hive_partitioning = true)
  WHERE pop IN ({pops})
    AND regexp_full_match(probe_id, '[a-z0-9]{{8,64}}')
    AND resolver_ip SIMILAR TO '[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+';
CREATE TEMP TABLE m AS
  SELECT r.*, d.resolver_ip,
         split_part(client_ip, '.', 1) || '.' || split_part(client_ip, '.', 2) || '.' || split_part(client_ip, '.', 3) AS c24,
         split_part(client_ip, '.', 1) || '.' || split_part(client_ip, '.', 2) || '.' || (split_part(client_ip, '.', 3)::INT & 240) AS c20,
         split_part(client_ip, '.', 1) || '.' || split_part(client_ip, '.', 2) AS c16,
         split_part(resolver_ip, '.', 1) || '.' || split_part(resolver_ip, '.', 2) || '.' || split_part(resolver_ip, '.', 3) AS r24
  FROM rtt r JOIN dns d USING (probe_id, pop)
  WHERE abs(r.ts_r - d.ts_d) <= 600000000;
""")
counts = {}
for key in ["c24", "c20", "c16"]:
    counts[key] = con.execute(f"""
      SELECT count(*) FROM (
        SELECT {key}, pop, count(*) AS samples, median(rtt_ms), quantile_cont(rtt_ms, 0.9),
               avg(CASE WHEN ok THEN 0.0 ELSE 1.0 END)
        FROM m GROUP BY {key}, pop)""").fetchone()[0]
for key in ["resolver_ip", "r24"]:
    counts[key] = con.execute(f"""
      SELECT count(*) FROM (
        SELECT {key}, pop, sum(n), median(cm), quantile_cont(cm, 0.9), avg(cf) FROM (
          SELECT {key}, c24, pop, count(*) AS n, median(rtt_ms) AS cm,
                 avg(CASE WHEN ok THEN 0.0 ELSE 1.0 END) AS cf
          FROM m GROUP BY {key}, c24, pop)
        GROUP BY {key}, pop)""").fetchone()[0]
pairs = con.execute("SELECT count(*) FROM m").fetchone()[0]
print(f"duckdb {duckdb.__version__}, {threads} threads: {pairs} pairings, groups {counts}, {time.time() - t0:.1f} s")
