#!/usr/bin/env bash
# Behaviour kept across a refactor: runs two builds of geodns on the same inputs and compares
# what they make, byte for byte: maps, reports (JSON and HTML), summaries, exports, DNS
# answers (external and internal zones), the internal-zone snapshot a presenter publishes (its
# creation time aside), the metrics' series names.
#
# usage: scripts/compare-builds.sh BEFORE_BINARY AFTER_BINARY WORKDIR
# (needs python3, dig, java and Debian's zookeeper, as scripts/test.sh installs them)
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(realpath "$1"); after=$(realpath "$2"); work=$3
mkdir -p "$work/in"
work=$(realpath "$work")

# Inputs, made once by the first build: a long-tail world and two zoo worlds, each with logs.
worlds=(long-tail zoo3 zoo11)
if [ ! -e "$work/in/done" ]; then
  python3 scripts/gen-world.py "$work/in/long-tail" --internet --seed 5 --isps 300 --subnets 2000 >/dev/null
  python3 scripts/gen-world.py "$work/in/zoo3" --zoo --seed 3 >/dev/null
  python3 scripts/gen-world.py "$work/in/zoo11" --zoo --seed 11 >/dev/null
  for w in "${worlds[@]}"; do
    "$before" simulate --world "$work/in/$w/world.toml" --users 3000 --seed 2 \
      --logs-only "$work/in/$w/logs" --out "$work/in/$w/sim" >/dev/null 2>&1
  done
  touch "$work/in/done"
fi

at=(--created-at 2026-12-01T00:00:00Z --generation 42)
run() { # build outdir
  local bin=$1 out=$2
  rm -rf "$out"; mkdir -p "$out"
  for w in "${worlds[@]}"; do
    local d=$work/in/$w
    "$bin" mapgen "${at[@]}" --config "$d/geodns.toml" --geoip "$d/sim/geoip.mmdb" --logs "$d/logs" \
      --since 2020-01-01T00:00:00Z --out "$out/$w.arrow" --report "$out/$w.json" --html "$out/$w.html" \
      --previous data/example-map.arrow --force >"$out/$w.txt" 2>/dev/null || echo "exit $?" >>"$out/$w.txt"
    "$bin" mapgen "${at[@]}" --config "$d/geodns.toml" --geoip "$d/sim/geoip.mmdb" --logs "$d/logs" \
      --since 2020-01-01T00:00:00Z --out "$out/$w-holdout.arrow" --holdout 0.2 --min-samples 3 \
      --report "$out/$w-holdout.json" >"$out/$w-holdout.txt" 2>/dev/null || echo "exit $?" >>"$out/$w-holdout.txt"
    "$bin" map score "$out/$w.arrow" --world "$d/world.toml" --truth "$d/sim" >"$out/$w.score" 2>&1 || true
  done
  "$bin" map --help >/dev/null
  "$bin" map explain data/example-map.arrow 198.51.100.7 >"$out/explain.txt" 2>&1 || true
  "$bin" map explain "$out/long-tail.arrow" 10.0.0.1 >"$out/diff.txt" 2>&1 || true
  "$bin" map stats "$out/zoo3.arrow" >"$out/stats.txt" 2>&1 || true
  "$bin" map export-mmdb "$out/zoo11.arrow" "$out/example.mmdb" >"$out/export.txt" 2>&1 || true
  # The export's metadata carries its build time: compare the tree and data before it.
  python3 -c 'import sys; b=open(sys.argv[1],"rb").read(); open(sys.argv[1],"wb").write(b[:b.rindex(b"\xab\xcd\xefMaxMind.com")])' \
    "$out/example.mmdb" || true
  "$bin" check -c data/geodns.toml >"$out/check.txt" 2>&1 || true
  serve "$bin" "$out"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

digq() { # port args...
  local port=$1; shift
  dig @127.0.0.1 -p "$port" +tries=1 +time=2 "$@" | grep -v -e '^;; Query time' -e '^;; WHEN' -e '^;; SERVER' \
    -e '^;; MSG SIZE' -e '^; <<>> DiG' | sed -e 's/id: [0-9]*/id: N/' -e 's/uptime=[0-9]*/uptime=N/' \
    -e 's/internal-created=[^ "]*/internal-created=T/'
}

serve() { # build outdir: the example config, and internal zones from a real ZooKeeper
  local bin=$1 out=$2 s=$work/serve
  rm -rf "$s"; mkdir -p "$s/zk/data"
  cp data/example.com.zone data/example-map.arrow "$s/"
  local port zkport mport
  port=$(free_port); zkport=$(free_port); mport=$(free_port)
  printf 'tickTime=200\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=*\n' \
    "$s/zk/data" "$zkport" >"$s/zk/zoo.cfg"
  java -Xmx256m -Dzookeeper.root.logger=WARN,CONSOLE -cp '/usr/share/java/*:/etc/zookeeper/conf' \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$s/zk/zoo.cfg" >"$s/zk/log" 2>&1 &
  local zkpid=$!
  for _ in $(seq 100); do
    [ "$(echo ruok | timeout 1 bash -c "cat >/dev/tcp/127.0.0.1/$zkport" 2>/dev/null; echo ok)" ] && \
      python3 -c "import socket;s=socket.create_connection(('127.0.0.1',$zkport));s.send(b'ruok');assert s.recv(4)==b'imok'" 2>/dev/null && break
    sleep 0.2
  done
  sed -e "s/127.0.0.1:5353/127.0.0.1:$port/" -e "s/127.0.0.1:9153/127.0.0.1:$mport/" data/geodns.toml >"$s/geodns.toml"
  printf '\n[zookeeper]\nconnect = "127.0.0.1:%s"\njitter_ms = 0\nrecheck_ms = 1000\nzones = ["internal.example"]\n' "$zkport" >>"$s/geodns.toml"
  cat >"$s/presenter.toml" <<TOML
[zookeeper]
connect = "127.0.0.1:$zkport"
[[zones]]
origin = "internal.example"
primary = "ns1.internal.example"
hostmaster = "hostmaster.internal.example"
ns = ["ns1.internal.example"]
[[rules]]
role = "web"
cluster = "prn1"
name = "web.prn1.internal.example"
[guard]
grace_ms = 1000
TOML
  cat >"$s/human.zone" <<'ZONE'
ns1 300 IN A 10.0.0.53
www.corp 300 IN CNAME web.prn1.internal.example.
corp 300 IN MX 10 mx1.corp
mx1.corp 300 IN A 10.0.0.25
ZONE
  "$bin" register --zookeeper "127.0.0.1:$zkport" --name web1.prn1.internal.example --address 10.1.0.1 \
    --address fd00::1 --service web:prn1:80 >/dev/null 2>&1 &
  local r1=$!
  "$bin" register --zookeeper "127.0.0.1:$zkport" --name web2.prn1.internal.example --address 10.1.0.2 \
    --service web:prn1:8080 >/dev/null 2>&1 &
  local r2=$!
  sleep 1
  "$bin" publish -c "$s/presenter.toml" --zone internal.example "$s/human.zone" >"$out/publish.txt" 2>&1 || true
  "$bin" presenter -c "$s/presenter.toml" >"$s/presenter.log" 2>&1 &
  local pp=$!
  "$bin" serve -c "$s/geodns.toml" >"$s/serve.log" 2>&1 &
  local sp=$!
  for _ in $(seq 100); do
    digq "$port" web1.prn1.internal.example A +short 2>/dev/null | grep -q 10.1.0.1 && \
      digq "$port" web.prn1.internal.example A +short 2>/dev/null | grep -q 10.1.0.2 && break
    sleep 0.3
  done
  {
    for q in "www.example.com A" "www.example.com AAAA" "www.example.com A +subnet=203.0.113.0/24" \
             "www.example.com A +subnet=198.51.100.0/24" "www.example.com A +subnet=2001:db8::/48" \
             "www.example.com A +subnet=0.0.0.0/0" "example.com SOA" "example.com NS" "txt.example.com TXT" \
             "nope.example.com A" "abc123.ams.probe.example.com A" "www.other.org A" "version.bind CH TXT" \
             "id.server CH TXT" "www.example.com A +nsid" "www.example.com ANY" "www.example.com A +norec +cd" \
             "web1.prn1.internal.example A" "web1.prn1.internal.example AAAA" "web.prn1.internal.example A" \
             "_web._tcp.web.prn1.internal.example SRV" "internal.example SOA" "internal.example NS" \
             "www.corp.internal.example A" "corp.internal.example MX" "nope.internal.example A" "www.example.com A +tcp" \
             "www.example.com A +edns=1" "www.example.com A +bufsize=512"; do
      echo "== $q"; digq "$port" $q
    done
    echo "== _status"; digq "$port" _status.example.com TXT +short
  } >"$out/answers.txt" 2>&1
  curl -s "http://127.0.0.1:$mport/metrics" | grep -v '^#' | sed -E -e 's/ [0-9.e+-]+$//' -e 's/config="[0-9a-f]*"/config="H"/' | sort -u >"$out/metric-series.txt" || true
  cp "$s/internal-snapshot.json" "$out/snapshot.json" 2>/dev/null || ls "$s" >"$out/snapshot.json"
  sed -i -E -e 's/"created_at":"[^"]*"/"created_at":"T"/' -e 's/"checksum":"[^"]*"/"checksum":"C"/' "$out/snapshot.json"
  kill $sp $pp $r1 $r2 2>/dev/null || true; wait $sp $pp $r1 $r2 2>/dev/null || true
  kill $zkpid; wait $zkpid 2>/dev/null || true
}

run "$before" "$work/before"
run "$after" "$work/after"
sed -i -E -e '/zookeeper_client/d' -e 's/ in [0-9]+(\.[0-9]+)? ?(ms|s)\b/ in D/g' -e "s#$work/(before|after)#OUT#g" \
  -e 's/loaded=[0-9TZ:-]+/loaded=T/' -e 's/config=[0-9a-f]+/config=H/' "$work"/{before,after}/*.{txt,html}
if diff -r "$work/before" "$work/after" >"$work/diff.txt"; then
  echo "same: $(ls "$work/after" | wc -l) files in $work/after"
else
  echo "DIFFERENT (see $work/diff.txt):"; head -50 "$work/diff.txt"; exit 1
fi
