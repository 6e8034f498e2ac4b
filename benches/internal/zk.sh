# Sourced by the internal-zone benches: starts a standalone ZooKeeper (Debian's package) on a
# free port in $W/zk, with tickTime 2000 (the default) and no per-address connection cap.
# Sets ZK_PORT and ZK_PID. Also server_config, below.
start_zk() {
  mkdir -p "$W/zk/data"
  ZK_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$W/zk/zoo.cfg" <<CFG
tickTime=2000
dataDir=$W/zk/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
maxClientCnxns=0
4lw.commands.whitelist=*
CFG
  java -Xmx1g -Dzookeeper.root.logger=WARN,CONSOLE -cp '/usr/share/java/*:/etc/zookeeper/conf' \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$W/zk/zoo.cfg" > "$W/zk/zk.log" 2>&1 &
  ZK_PID=$!
  for _ in $(seq 100); do
    [ "$(echo ruok | nc -q1 127.0.0.1 "$ZK_PORT" 2>/dev/null)" = imok ] && return 0
    sleep 0.2
  done
  echo "ZooKeeper did not start" >&2; cat "$W/zk/zk.log" >&2; return 1
}

# Writes $W/geodns.toml: the example config (its zone and map copied to $W) on DNS port $1,
# no metrics, probe log or health file, following the ZooKeeper above; extra [zookeeper]
# lines in $2.
server_config() {
  cp data/example.com.zone data/example-map.arrow "$W/"
  sed -e "s/127.0.0.1:5353/127.0.0.1:$1/" -e 's/^metrics = .*//' -e '/^\[probe_log\]/,/^$/d' \
      -e 's/^health_file = .*//' data/geodns.toml > "$W/geodns.toml"
  printf '\n[zookeeper]\nconnect = "127.0.0.1:%s"\nzones = ["internal.example"]\n%s\n' "$ZK_PORT" "${2:-}" >> "$W/geodns.toml"
}
