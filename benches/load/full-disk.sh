#!/usr/bin/env bash
# The collector under load while its disk fills, then kill -9: how many acknowledged reports
# are lost? Needs root (mounts a tmpfs), wrk, and python3 with pyarrow (to count rows).
#
# usage: benches/load/full-disk.sh [GEODNS_BINARY] [TMPFS_SIZE] [PREFILL]
#   TMPFS_SIZE  e.g. 64m: the load fills it by itself
#   PREFILL     yes: fill it with dd before the collector starts
# Prints: requests acknowledged (2xx, from wrk), rows acknowledged (3 per report), rows in
# complete files after the kill, and the difference (lost acknowledged rows).
set -euo pipefail
bin=${1:-target/release/geodns}
size=${2:-64m}
prefill=${3:-no}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'kill -9 $pid 2>/dev/null || true; umount -l "$dir/logs" 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir -p "$dir/logs"
mount -t tmpfs -o size="$size" tmpfs "$dir/logs"
[ "$prefill" = yes ] && { dd if=/dev/zero of="$dir/logs/fill" bs=64k 2>/dev/null || true; }
cat > "$dir/beacon.toml" <<EOF
collector_id = "c1"
listen = "127.0.0.1:8098"
pops = ["ams", "iad", "sin"]
probe_zone = "probe.example.com"
rate_per_second = 1000000
rate_burst = 1000000
[log]
dir = "logs"
EOF
RUST_LOG=warn "$bin" beacon -c "$dir/beacon.toml" 2> "$dir/collector.log" &
pid=$!
sleep 1
# 12 s of load; the collector is killed with SIGKILL at 12 s, while wrk still runs.
wrk -t2 -c32 -d14s -s "$here/report.lua" http://127.0.0.1:8098/v1/report > "$dir/wrk.txt" &
wrk_pid=$!
sleep 12
curl -s 127.0.0.1:8098/metrics | grep -E '^geodns_beacon_(log_write_failing|rows_written_total|requests_accepted_total|write_errors_total) ' || true
curl -s -o /dev/null -w 'healthz %{http_code}\n' 127.0.0.1:8098/healthz || true
kill -9 $pid
wait $wrk_pid || true
requests=$(awk '/requests in/ {print $1}' "$dir/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$dir/wrk.txt")
acked=$(( requests - ${non2xx:-0} ))
# A request in flight at the kill counts as an error in wrk, not as a response.
rows=$(python3 - "$dir/logs/rtt_report" <<'EOF'
import os, sys
import pyarrow.parquet as pq
n = 0
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        if f.endswith('.parquet') and not f.startswith('.'):
            n += pq.ParquetFile(os.path.join(root, f)).metadata.num_rows
print(n)
EOF
)
echo "tmpfs $size prefill=$prefill: acknowledged $acked reports = $((acked * 3)) rows; in files $rows rows; lost $((acked * 3 - rows)) acknowledged rows"
grep -E 'ERROR|WARN' "$dir/collector.log" | head -3 || true
