#!/usr/bin/env bash
# Issue 24's fleet simulation: a standalone ZooKeeper, then `fanout fleet` (benches/fanout.rs):
# HOSTS registrations, the real `geodns presenter`, FOLLOWERS followers taking deltas and
# serving each other whole snapshots, CHANGES_PER_MIN registrations leaving and coming back.
#
#   benches/internal/fleet.sh FANOUT_BIN GEODNS_BIN FOLLOWERS HOSTS CHANGES_PER_MIN SECONDS
#
# e.g. benches/internal/fleet.sh target/release/deps/fanout-* target/release/geodns 2000 100000 1000 300
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$1; GEODNS=$2; shift 2
W=$(mktemp -d /tmp/geodns-fleet.XXXXXX)
source benches/internal/zk.sh
start_zk
trap 'kill $ZK_PID 2>/dev/null; wait $ZK_PID 2>/dev/null; rm -rf "$W"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
CPU0=$(awk '{print $14+$15}' /proc/$ZK_PID/stat)
"$BIN" fleet "127.0.0.1:$ZK_PORT" "$GEODNS" "$@"
CPU1=$(awk '{print $14+$15}' /proc/$ZK_PID/stat)
echo "zookeeper: $(ps -o rss= -p $ZK_PID | awk '{print $1/1024}') MB RSS, $(( (CPU1-CPU0)/100 )) s CPU during the run"
