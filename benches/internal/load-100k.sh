#!/usr/bin/env bash
# A server following internal-zone snapshots while answering geo queries: publishes a snapshot
# of RECORDS A records every 2 s during dnsperf runs, interleaved with runs without
# publications. Prints, per run, q/s; then the server's load times (fetch+verify+compile+swap,
# from the publish to "in force") and its resident memory before and after.
#
# Logged per load: fetch and verify (ZooKeeper reads, checksum), then compile and swap.
#
# usage: benches/internal/load-100k.sh [GEODNS_BINARY] [FANOUT_BENCH_BINARY] [RECORDS] [SECONDS] [REPS]
#   (needs java, zookeeper, dnsperf; the fanout binary is target/release/deps/fanout-*)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "${1:-target/release/geodns}")
FAN=$(realpath "${2:-$(ls -t target/release/deps/fanout-* | grep -v '\.d$' | head -1)}")
RECORDS=${3:-100000} LEN=${4:-10} REPS=${5:-3}
W=$(mktemp -d /tmp/load-100k.XXXXXX)
pids=()
trap 'kill "${pids[@]}" $ZK_PID 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
. benches/internal/zk.sh
start_zk
server_config 5397 'jitter_ms = 0'
RUST_LOG=info "$BIN" serve -c "$W/geodns.toml" 2> "$W/server.log" & pids+=($!)
SRV=${pids[0]}
sleep 1
for i in $(seq 200000); do echo "www.example.com A"; done > "$W/q.txt"
"$FAN" publish "127.0.0.1:$ZK_PORT" "$RECORDS" 2>/dev/null
until grep -q "internal snapshot in force" "$W/server.log"; do sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' /proc/$SRV/status; }
echo "rss after the first ${RECORDS}-record snapshot: $(( $(rss) / 1024 )) MB"
for rep in $(seq "$REPS"); do
  for mode in quiet loading; do
    if [ $mode = loading ]; then
      ( end=$((SECONDS + LEN)); while [ $SECONDS -lt $end ]; do "$FAN" publish "127.0.0.1:$ZK_PORT" "$RECORDS" 2>/dev/null; sleep 2; done ) &
      pub=$!
    fi
    qps=$(dnsperf -s 127.0.0.1 -p 5397 -d "$W/q.txt" -l "$LEN" -c 8 -q 100 2>&1 | awk '/Queries per second/ {print $4}')
    [ $mode = loading ] && wait $pub
    echo "rep $rep $mode: $qps q/s"
  done
done
# Settle: the last publication's load finishes before memory is read.
n=-1; while [ "$n" != "$(grep -c 'in force' "$W/server.log")" ]; do n=$(grep -c 'in force' "$W/server.log"); sleep 3; done
echo "fetch+verify ms: $(grep 'snapshot fetched and verified' "$W/server.log" | sed -E 's/.* ms=([0-9]+).*/\1/' | sort -n | tr '\n' ' ')"
echo "compile+swap ms: $(grep 'internal snapshot in force' "$W/server.log" | sed -E 's/.* ms=([0-9]+).*/\1/' | sort -n | tr '\n' ' ')"
echo "rss at the end: $(( $(rss) / 1024 )) MB, peak $(( $(awk '/VmHWM/ {print $2}' /proc/$SRV/status) / 1024 )) MB"
