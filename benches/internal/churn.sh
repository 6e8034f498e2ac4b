#!/usr/bin/env bash
# The fleet under constant churn (issue 24): a standalone ZooKeeper, then `fanout churn`
# (benches/fanout.rs) with the arguments given. DESIGN is `whole` (every publication whole,
# every follower fetching it from ZooKeeper: the design before deltas) or `deltas` (deltas,
# a whole snapshot every 100 publications, whole snapshots from peers).
#
#   benches/internal/churn.sh FANOUT_BIN FOLLOWERS RECORDS CHANGES_PER_MIN PUBLISH_EVERY_MS SECONDS DESIGN
#
# e.g. benches/internal/churn.sh target/release/deps/fanout-* 200 100000 1000 2000 60 deltas
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$1; shift
W=$(mktemp -d /tmp/geodns-churn.XXXXXX)
source benches/internal/zk.sh
start_zk
trap 'kill $ZK_PID 2>/dev/null; wait $ZK_PID 2>/dev/null; rm -rf "$W"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$BIN" churn "127.0.0.1:$ZK_PORT" "$@"
echo "zookeeper: $(ps -o rss=,time= -p $ZK_PID | awk '{print $1/1024 " MB RSS, CPU " $2}')"
