#!/usr/bin/env bash
# Propagation from `geodns register` to the answer on a server: N hosts registered one after
# another; for each, the time from starting `geodns register` to the first `dig` that gets its
# address (polled every 10 ms). Presenter and server run with their defaults (server jitter
# 500 ms, presenter debounce 50 ms). Prints median, p90, p99 and max in ms.
#
# usage: benches/internal/propagation.sh [GEODNS_BINARY] [N]    (needs java, zookeeper, dig, nc)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "${1:-target/release/geodns}") N=${2:-100}
W=$(mktemp -d /tmp/propagation.XXXXXX)
pids=()
trap 'kill "${pids[@]}" $ZK_PID 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
. benches/internal/zk.sh
start_zk
cat > "$W/presenter.toml" <<CFG
[zookeeper]
connect = "127.0.0.1:$ZK_PORT"
[[zones]]
origin = "internal.example"
primary = "ns1.internal.example"
hostmaster = "hostmaster.internal.example"
ns = ["ns1.internal.example"]
CFG
server_config 5395
RUST_LOG=warn "$BIN" presenter -c "$W/presenter.toml" 2> "$W/presenter.log" & pids+=($!)
RUST_LOG=warn "$BIN" serve -c "$W/geodns.toml" 2> "$W/server.log" & pids+=($!)
sleep 2
: > "$W/ms.txt"
for i in $(seq "$N"); do
  name="h$i.prn1.internal.example"
  addr="10.0.$((i / 256)).$((i % 256))"
  t0=$(date +%s%N)
  RUST_LOG=warn "$BIN" register --zookeeper "127.0.0.1:$ZK_PORT" --name "$name" --address "$addr" 2>> "$W/register.log" & pids+=($!)
  until [ "$(dig @127.0.0.1 -p 5395 +short +tries=1 +time=1 "$name" A)" = "$addr" ]; do sleep 0.01; done
  echo $(( ($(date +%s%N) - t0) / 1000000 )) >> "$W/ms.txt"
done
sort -n "$W/ms.txt" | awk '
  function q(p,  i) { i = int(NR * p) + 1; if (i > NR) i = NR; return v[i] }
  {v[NR] = $1}
  END {printf "n=%d median=%d ms p90=%d ms p99=%d ms max=%d ms\n", NR, q(0.5), q(0.9), q(0.99), v[NR]}'
