#!/usr/bin/env bash
# The fleet on today's whole-snapshot design (issue 24's baseline): a standalone ZooKeeper,
# then `fanout churn` (benches/fanout.rs) with the arguments given.
#
#   benches/internal/churn.sh FANOUT_BIN FOLLOWERS RECORDS CHANGES_PER_MIN PUBLISH_EVERY_MS SECONDS
#
# e.g. benches/internal/churn.sh target/release/deps/fanout-* 200 100000 1000 2000 60
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
