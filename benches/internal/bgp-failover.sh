#!/usr/bin/env bash
# From a service failure to (a) the route's withdrawal seen in BIRD and (b) DNS answers moving
# to the next PoP, over N runs. ExaBGP runs `geodns announce` (TCP check, interval 1000 ms,
# timeout 1000 ms, fall 2: the defaults) peering with BIRD 2 on loopback; announce publishes
# the PoP's health to ZooKeeper, which `geodns serve` follows. Damping is off (repeated failures
# are flaps by design). The service is a python3 HTTP
# server killed with SIGKILL at t0. Prints median and max for both.
#
# usage: benches/internal/bgp-failover.sh [GEODNS_BINARY] [N]   (needs exabgp, bird2, java, zookeeper, dig)
set -euo pipefail
trap 'echo "failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/../.."
BIN=$(realpath "${1:-target/release/geodns}") N=${2:-20}
W=$(mktemp -d /tmp/bgp-failover.XXXXXX)
pids=()
svc=""
trap 'kill ${svc:-} "${pids[@]}" $ZK_PID 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
. benches/internal/zk.sh
start_zk
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BGP=$(port) SVC=$(port)
cat > "$W/bird.conf" <<CFG
router id 127.0.0.2;
protocol device {}
protocol bgp exa { local 127.0.0.2 port $BGP as 65000; neighbor 127.0.0.1 as 65001; multihop; passive on; ipv4 { import all; export none; }; }
CFG
cat > "$W/announce.toml" <<CFG
pop = "ams"
[[vips]]
prefix = "192.0.2.10/32"
next_hop = "127.0.0.1"
check = { kind = "tcp", addr = "127.0.0.1:$SVC" }
# Damping off: this measures detection, and N failures in a row are N flaps.
[damping]
suppress = 1e12
[publish]
zookeeper = { connect = "127.0.0.1:$ZK_PORT" }
CFG
cat > "$W/exabgp.conf" <<CFG
process announce { run $BIN announce -c $W/announce.toml; encoder text; }
neighbor 127.0.0.2 { router-id 127.0.0.1; local-address 127.0.0.1; local-as 65001; peer-as 65000; api { processes [ announce ]; } }
CFG
server_config 5396
RUST_LOG=warn "$BIN" serve -c "$W/geodns.toml" 2> "$W/server.log" & pids+=($!)
bird -f -c "$W/bird.conf" -s "$W/bird.ctl" -P "$W/bird.pid" 2> "$W/bird.log" & pids+=($!)
start_svc() { python3 -m http.server "$SVC" --bind 127.0.0.1 > /dev/null 2>&1 & svc=$!; }
start_svc
env exabgp.tcp.port="$BGP" exabgp.daemon.user=root exabgp.api.cli=false RUST_LOG=warn \
  exabgp "$W/exabgp.conf" > "$W/exabgp.log" 2>&1 & pids+=($!)
routed() { birdc -s "$W/bird.ctl" show route 2>/dev/null | grep -q '192.0.2.10/32'; }
www() { dig @127.0.0.1 -p 5396 +short +tries=1 +time=1 www.example.com A +subnet=198.51.100.200/32; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
: > "$W/bgp.txt"; : > "$W/dns.txt"
for i in $(seq "$N"); do
  until routed && [ "$(www)" = 192.0.2.10 ]; do sleep 0.05; done
  sleep 0.5
  t0=$(date +%s%N)
  kill -9 "$svc"; wait "$svc" 2>/dev/null || true
  bgp="" dns=""
  while [ -z "$bgp" ] || [ -z "$dns" ]; do
    [ -z "$bgp" ] && ! routed && bgp=$(ms "$t0")
    [ -z "$dns" ] && [ "$(www)" = 192.0.2.20 ] && dns=$(ms "$t0")
    sleep 0.01
  done
  echo "$bgp" >> "$W/bgp.txt"; echo "$dns" >> "$W/dns.txt"
  start_svc
done
for f in bgp dns; do
  sort -n "$W/$f.txt" | awk -v what="$f" '{v[NR]=$1} END {printf "%s: n=%d median=%d ms max=%d ms\n", what, NR, v[int(NR/2)+1], v[NR]}'
done
