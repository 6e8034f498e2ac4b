#!/usr/bin/env bash
# Probe-zone queries/s with probe logging on versus off, interleaved (off, on, off, on, ...).
# Each server is pinned to CPU 0 (with its log writer thread), dnsperf to CPU 1.
#
# usage: benches/load/probe-log.sh [SECONDS] [REPS]    (needs dnsperf; release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
LEN=${1:-10} REPS=${2:-3}
BIN=target/release/geodns
W=$(mktemp -d /tmp/probe-log-bench.XXXXXX)
python3 benches/load/make-probe-queries.py 200000 > "$W/probes.txt"
cp data/example.com.zone data/example-map.arrow "$W/"
for mode in off on; do
  port=$([ $mode = off ] && echo 5391 || echo 5392)
  sed -e "s/127.0.0.1:5353/127.0.0.1:$port/" -e 's/^metrics = .*//' -e "s|dir = \"beacon-logs\"|dir = \"$W/logs-$mode\"|" \
      -e 's/^health_file = .*//' data/geodns.toml > "$W/$mode.toml"
  if [ $mode = off ]; then sed -i '/^\[probe_log\]/,/^max_age_ms/d' "$W/$mode.toml"; fi
done
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
taskset -c 0 $BIN serve -c "$W/off.toml" 2> "$W/off.log" & pids+=($!)
taskset -c 0 $BIN serve -c "$W/on.toml" 2> "$W/on.log" & pids+=($!)
sleep 1
echo "mode,rep,qps,server_cpu_s,us_per_query"
for rep in $(seq "$REPS"); do
  for mode in off on; do
    port=$([ $mode = off ] && echo 5391 || echo 5392)
    pid=$([ $mode = off ] && echo "${pids[0]}" || echo "${pids[1]}")
    t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p $port -d "$W/probes.txt" -l "$LEN" -c 8 -q 100 -T 1 2>&1)
    t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    qps=$(sed -n 's/.*Queries per second: *\([0-9.]*\).*/\1/p' <<<"$out")
    done_q=$(sed -n 's/.*Queries completed: *\([0-9]*\).*/\1/p' <<<"$out")
    cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/hz}')
    echo "$mode,$rep,$qps,$cpu,$(awk -v c="$cpu" -v n="$done_q" 'BEGIN{printf "%.2f", c*1e6/n}')"
  done
done
kill -TERM "${pids[1]}"; sleep 2
rows=$(grep -o 'rows=[0-9]*' "$W/on.log" | tail -1)
echo "# logging server flushed: $rows; logs in $W/logs-on"
