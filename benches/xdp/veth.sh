#!/usr/bin/env bash
# Issue 26's figures: DNS servers on one end of a veth pair between two network namespaces,
# dnsperf on the other, and the CPU the whole machine spends per query (the kernel's softirq
# work included, wherever it runs): geodns through AF_XDP and on sockets, gdnsd, Knot on
# sockets and Knot through XDP, on the peer fixture (../shared/peers/gen.py DIR).
#
#   [RATE=N] benches/xdp/veth.sh FIXTURE GEODNS_BIN [SECONDS [REPS [MODES [SERVERS]]]]
#
# e.g. benches/xdp/veth.sh /tmp/peers target/release/geodns 10 3 ecs,noecs
#
# Each run starts one server pinned to CPU 0 (one worker: geodns's one AF_XDP queue or one UDP
# socket, gdnsd udp_threads 1, Knot udp-workers 1), waits 2 s, runs dnsperf pinned to CPU 1
# (-c 8 -q 100 -T 1) for SECONDS and reads /proc/stat before and after; then stops the server
# (two XDP programs cannot share the interface). dnsperf sends as fast as replies come back,
# which saturates its core; with RATE=N in the environment it sends N queries/s instead
# (-Q N), the same offered load for every server. Servers are interleaved run by run; the
# medians of REPS runs are printed, with queries/s, the machine's busy CPU per query, the same
# less dnsperf's user time (the load generator's own work; the kernel's, wherever it runs,
# stays in), and less dnsperf's whole process (which also takes out the kernel's work in
# dnsperf's context: sending queries, and the receive softirq it runs, XDP included, so it
# flatters XDP servers). Needs root, iproute2, clang, dnsperf, gdnsd, knot.
#
# One more "server", `floor`, is no server at all: an XDP program (rig.bpf.c) that sends each
# query straight back with the QR bit set, from the kernel, on dnsperf's own core. What it costs
# per query is the rig's floor: dnsperf, both veth ends and the client's UDP receive, which any
# server pays and none can save. (The client's end then needs an XDP program too, one that
# passes everything, to take frames sent back with XDP_TX.)
#
# RIG=wire puts a third namespace between client and server that forwards every frame both ways
# with XDP (rig.bpf.c's `wire`), so that frames reach the server's end as XDP frames, not as
# socket buffers the sender built: as from a NIC's driver running XDP, which this machine does
# not have. Servers without an XDP program of their own get one there that passes everything;
# both ends checksum in software. The forwarding costs every server the same, and is in the
# floor. Needs ethtool as well.
set -euo pipefail
FIX=$(realpath "$1"); GEODNS=$(realpath "$2"); SECS=${3:-10}; REPS=${4:-3}
MODES=${5:-ecs,noecs}; SERVERS=${6:-geodns-xdp,geodns-socket,gdnsd,knot,knot-xdp,floor}
cd "$(dirname "$0")/../.."
ROOT=$PWD
W=$(mktemp -d /tmp/geodns-veth.XXXXXX)
SRV=gvb-s$$; CLI=gvb-c$$; IF=gvb$$s; PEER=gvb$$c
RIG=${RIG:-pair}; RTR=gvb-r$$; A=gvb$$a; B=gvb$$b
ADDR=10.99.0.1
cleanup() {
  [ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
  ip netns del "$SRV" 2>/dev/null; ip netns del "$CLI" 2>/dev/null; ip netns del "$RTR" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
BPF=(clang -O2 -target bpf -I/usr/include/$(gcc -dumpmachine) -c benches/xdp/rig.bpf.c)
"${BPF[@]}" -o "$W/rig.o"
ip netns add "$SRV"; ip netns add "$CLI"
if [ "$RIG" = wire ]; then
  # client end <-> a [router namespace, XDP redirects both ways] b <-> server end
  ip netns add "$RTR"
  ip link add "$PEER" type veth peer name "$A"; ip link add "$IF" type veth peer name "$B"
  ip link set "$A" netns "$RTR"; ip link set "$B" netns "$RTR"
  for d in "$A" "$B"; do ip -n "$RTR" link set "$d" up; done
  ifindex() { ip -n "$RTR" -o link show dev "$1" | cut -d: -f1; }
  "${BPF[@]}" -DWIRE_TO="$(ifindex "$B")" -o "$W/to-b.o"
  "${BPF[@]}" -DWIRE_TO="$(ifindex "$A")" -o "$W/to-a.o"
  ip -n "$RTR" link set dev "$A" xdpdrv obj "$W/to-b.o" sec xdp program wire
  ip -n "$RTR" link set dev "$B" xdpdrv obj "$W/to-a.o" sec xdp program wire
else
  ip link add "$IF" type veth peer name "$PEER"
fi
ip link set "$IF" netns "$SRV"; ip link set "$PEER" netns "$CLI"
ip -n "$SRV" addr add $ADDR/24 dev "$IF"; ip -n "$CLI" addr add 10.99.0.2/24 dev "$PEER"
for ns in "$SRV" "$CLI"; do ip -n "$ns" link set lo up; done
ip -n "$SRV" link set "$IF" up; ip -n "$CLI" link set "$PEER" up
# A frame forwarded by XDP keeps a checksum left for the device to fill in (a veth offers the
# offload), which nothing then fills: on the wire both ends checksum in software.
if [ "$RIG" = wire ]; then
  ip netns exec "$CLI" ethtool -K "$PEER" tx off >/dev/null
  ip netns exec "$SRV" ethtool -K "$IF" tx off >/dev/null
fi
# Frames sent by XDP (the floor's, and the wire's) reach a veth end only if it has an XDP
# program: the client's gets one that passes everything.
client_pass() { ip -n "$CLI" link set dev "$PEER" xdpdrv obj "$W/rig.o" sec xdp program pass; }
[ "$RIG" = wire ] && client_pass

# The peers' configs, moved to the veth address and a work directory of their own.
cp -r "$FIX/gdnsd-t1" "$W/gdnsd"
sed -i "s#127.0.0.1#$ADDR#; s#$FIX/gdnsd-t1#$W/gdnsd#g" "$W/gdnsd/config"
for k in knot knot-xdp; do
  mkdir -p "$W/$k/run" "$W/$k/db"
  sed "s#127.0.0.1#$ADDR#; s#$FIX/knot-geo-t1/run#$W/$k/run#; s#$FIX/knot-geo-t1/db#$W/$k/db#" \
    "$FIX/knot-geo-t1/knot.conf" > "$W/$k/knot.conf"
done
printf 'xdp:\n  listen: %s@5302\n  udp: on\n  tcp: off\n' "$IF" >> "$W/knot-xdp/knot.conf"

start() { # server -> SPID, PORT
  local run=(ip netns exec "$SRV" taskset -c 0)
  case $1 in geodns*) PORT=5310 ;; gdnsd) PORT=5301 ;; knot*) PORT=5302 ;; floor) PORT=5399 ;; esac
  if [ "$1" = floor ]; then
    # No server: the XDP program sends each query back as its reply. The client's end needs an
    # XDP program too (one that passes everything) to take frames sent with XDP_TX.
    ip -n "$SRV" link set dev "$IF" xdpdrv obj "$W/rig.o" sec xdp program reflect
    [ "$RIG" = wire ] || client_pass
    sleep infinity & SPID=$!
    return
  fi
  # On the wire the server's end takes XDP frames only with a program: servers without their
  # own get one that passes everything (as a NIC's driver builds socket buffers for them).
  case $RIG,$1 in wire,geodns-socket|wire,gdnsd|wire,knot)
    ip -n "$SRV" link set dev "$IF" xdpdrv obj "$W/rig.o" sec xdp program pass ;;
  esac
  # `exec`: the background job is the server itself, so stopping it stops the server.
  case $1 in
    geodns-xdp) GEODNS_BIN=$GEODNS GEODNS_ADDR=$ADDR GEODNS_XDP=$IF \
                  exec "${run[@]}" "$ROOT/scripts/peer-serve.sh" "$FIX" $PORT 1 ;;
    geodns-socket) GEODNS_BIN=$GEODNS GEODNS_ADDR=$ADDR \
                  exec "${run[@]}" "$ROOT/scripts/peer-serve.sh" "$FIX" $PORT 1 ;;
    gdnsd) exec "${run[@]}" gdnsd -c "$W/gdnsd" start ;;
    knot) exec "${run[@]}" knotd -c "$W/knot/knot.conf" ;;
    knot-xdp) exec "${run[@]}" knotd -c "$W/knot-xdp/knot.conf" ;;
  esac > "$W/$1.log" 2>&1 &
  SPID=$!
  sleep 2
  if ! kill -0 "$SPID" 2>/dev/null; then echo "$1 did not start:" >&2; cat "$W/$1.log" >&2; exit 1; fi
}
stop() {
  kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; SPID=
  # A server that leaves its XDP program behind must not take the next one's place.
  ip -n "$SRV" link set dev "$IF" xdp off 2>/dev/null || true
  [ "$RIG" = wire ] || ip -n "$CLI" link set dev "$PEER" xdp off 2>/dev/null || true
  sleep 0.5
}
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }

echo "server,mode,rep,qps,completed,lost,busy_s,dnsperf_user_s,dnsperf_sys_s" > "$W/runs.csv"
IFS=, read -ra SV <<< "$SERVERS"; IFS=, read -ra MS <<< "$MODES"
for rep in $(seq 1 "$REPS"); do
  for mode in "${MS[@]}"; do
    for s in "${SV[@]}"; do
      start "$s"
      if [ "$mode" = ecs ]; then q=(-d "$FIX/queries/ecs.bin" -B); else q=(-d "$FIX/queries/noecs.txt"); fi
      ip netns exec "$CLI" taskset -c 1 dnsperf -s $ADDR -p $PORT "${q[@]}" -l 1 -c 8 -q 100 -T 1 ${RATE:+-Q "$RATE"} >/dev/null 2>&1 || true
      b0=$(busy)
      ip netns exec "$CLI" taskset -c 1 dnsperf -s $ADDR -p $PORT "${q[@]}" -l "$SECS" -c 8 -q 100 -T 1 ${RATE:+-Q "$RATE"} \
        > "$W/dnsperf.out" 2>&1 &
      DP=$!
      sleep 0.2
      DPID=$(pgrep -n -x dnsperf || true)
      # dnsperf's user time: the load generator's own work (its system time is the kernel
      # sending and receiving, which depends on the server's path, and stays in).
      d0=$(awk '{print $14}' /proc/$DPID/stat 2>/dev/null || echo 0)
      s0=$(awk '{print $15}' /proc/$DPID/stat 2>/dev/null || echo 0)
      d1=$d0; s1=$s0
      while kill -0 $DP 2>/dev/null; do
        d1=$(awk '{print $14}' /proc/$DPID/stat 2>/dev/null || echo "$d1")
        s1=$(awk '{print $15}' /proc/$DPID/stat 2>/dev/null || echo "$s1"); sleep 0.2
      done
      b1=$(busy)
      qps=$(awk '/Queries per second/{print $4}' "$W/dnsperf.out")
      done_=$(awk '/Queries completed/{print $3}' "$W/dnsperf.out")
      lost=$(awk '/Queries lost/{print $3}' "$W/dnsperf.out")
      stop
      tick=$(getconf CLK_TCK)
      echo "$s,$mode,$rep,$qps,$done_,$lost,$(echo "($b1-$b0)/$tick" | bc -l),$(echo "($d1-$d0)/$tick" | bc -l),$(echo "($s1-$s0)/$tick" | bc -l)" >> "$W/runs.csv"
      tail -1 "$W/runs.csv" >&2
    done
  done
done
python3 - "$W/runs.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
keys = []
for r in rows:
    k = (r["server"], r["mode"])
    if k not in keys:
        keys.append(k)
fig = {}
for k in keys:
    rs = [r for r in rows if (r["server"], r["mode"]) == k and r["completed"]]
    med = lambda f: statistics.median(f(r) for r in rs)
    done = lambda r: float(r["completed"])
    fig[k] = dict(
        qps=med(lambda r: float(r["qps"])),
        us=med(lambda r: float(r["busy_s"]) * 1e6 / done(r)),
        less=med(lambda r: (float(r["busy_s"]) - float(r["dnsperf_user_s"])) * 1e6 / done(r)),
        proc=med(lambda r: (float(r["busy_s"]) - float(r["dnsperf_user_s"]) - float(r["dnsperf_sys_s"])) * 1e6 / done(r)),
        lost=med(lambda r: int(r["lost"] or 0)),
    )
print("| server | queries | queries/s | machine µs/query | less dnsperf's user time | less dnsperf's process | machine ÷ gdnsd | lost |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for k in sorted(keys, key=lambda k: (k[1], keys.index(k))):
    f = fig[k]
    base = fig.get(("gdnsd", k[1]))
    ratio = f"{f['us'] / base['us']:.2f}" if base else "-"
    print(f"| {k[0]} | {k[1]} | {f['qps']:,.0f} | {f['us']:.2f} | {f['less']:.2f} | {f['proc']:.2f} | {ratio} | {f['lost']} |")
PY
for s in "${SV[@]}"; do echo "== $s (last run's log)"; grep -iE "xdp|error|warn" "$W/$s.log" | head -3 || true; done
cp "$W/runs.csv" "/tmp/veth-runs-$(date -u +%Y%m%dT%H%M%SZ).csv"
