#!/usr/bin/env bash
# Serves the peer-benchmark fixture (made by the peers harness's gen.py: DIR/map/nets.csv and
# DIR/zones/example.com.zone) with geodns, for an interleaved dnsperf run beside gdnsd:
#
#   bench.sh -d DIR -x "geodns|5310|$PWD/scripts/peer-serve.sh \$DIR \$PORT \$THREADS"
#
# The fixture's zone has a static `www A` as the default for servers that need one; here `www`
# is a geo name, so that line is dropped. Unmatched addresses answer ams, as for the peers.
# GEODNS_EXTRA, if set, is appended to the config (e.g. an [rrl] section, to measure its cost).
# GEODNS_ADDR (default 127.0.0.1) is the address to listen on; GEODNS_XDP, if set, an interface
# to answer on through AF_XDP (benches/xdp/veth.sh).
set -euo pipefail
DIR=$1 PORT=$2 THREADS=${3:-1}
BIN=${GEODNS_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/geodns}
WORK=$(mktemp -d /tmp/geodns-peer.XXXXXX)
grep -v '^www ' "$DIR/zones/example.com.zone" > "$WORK/example.com.zone"
"$BIN" map import-nets "$DIR/map/nets.csv" "$WORK/map.arrow" --generation peers 2>/dev/null
XDP=""
[ -n "${GEODNS_XDP:-}" ] && XDP="\"$GEODNS_XDP\""
cat > "$WORK/geodns.toml" <<TOML
server_id = "peer-bench"
map = "map.arrow"
default_order = ["ams", "iad", "sin"]
watch_interval_ms = 0
[listen]
dns = ["${GEODNS_ADDR:-127.0.0.1}:$PORT"]
udp_workers = $THREADS
xdp = [$XDP]
[pops.ams]
vip4 = ["192.0.2.1"]
[pops.iad]
vip4 = ["192.0.2.2"]
[pops.sin]
vip4 = ["192.0.2.3"]
[[zones]]
origin = "example.com"
file = "example.com.zone"
geo.www = { ttl = 60 }
TOML
printf '%b\n' "${GEODNS_EXTRA:-}" >> "$WORK/geodns.toml"
exec "$BIN" serve --config "$WORK/geodns.toml"
