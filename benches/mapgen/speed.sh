#!/bin/sh
# mapgen speed and peak memory against DuckDB doing the same validation, pairing and
# aggregations (duckdb_reference.py), on logs of a generated world (docs/perf.md).
#
# usage: benches/mapgen/speed.sh DIR USERS     (after cargo build --release; pip install duckdb)
# The world has 14 PoPs, so each table gets 14 x USERS rows: 714286 users make 10M rows.
# World and logs are generated once per DIR and reused.
set -eu
dir=$1
users=$2
geodns=${GEODNS:-target/release/geodns}
[ -f "$dir/world.toml" ] || python3 scripts/gen-world.py "$dir"
[ -d "$dir/logs" ] || "$geodns" simulate --world "$dir/world.toml" --users "$users" --logs-only "$dir/logs" --out "$dir/sim" 2>/dev/null
echo "$(du -sh "$dir/logs" | cut -f1) of logs in $dir/logs"
/usr/bin/time -f "geodns mapgen: %e s, max RSS %M KB" "$geodns" mapgen --config "$dir/geodns.toml" \
    --logs "$dir/logs" --out "$dir/map.arrow" --tmp-dir "$dir" 2>&1 >"$dir/summary.txt" | grep -v '^mapgen:'
grep -E '^(input|measured|map) ' "$dir/summary.txt"
/usr/bin/time -f "duckdb (python3 process): %e s, max RSS %M KB" python3 benches/mapgen/duckdb_reference.py "$dir/logs" 2 "$dir/geodns.toml"
