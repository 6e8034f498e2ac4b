#!/bin/sh
# mapgen's first stage on Apache Spark against the local run, interleaved on the same logs
# (docs/perf.md, "mapgen's first stage on Spark"): local mapgen; Spark local[2] then the local
# step from its aggregates; a standalone cluster of two one-core workers on loopback then the
# local step. Prints wall time and peak RSS of each, the aggregates' size, and checks that
# the three maps are byte-identical.
#
# usage: benches/mapgen/spark.sh DIR USERS [ROUNDS]   (after cargo build --release, with
#        spark-submit and spark-class on PATH: scripts/test.sh installs pyspark 4.3.0)
# The world has 14 PoPs, so each table gets 14 x USERS rows: 714286 users make 10M rows.
set -eu
dir=$1
users=$2
rounds=${3:-1}
geodns=${GEODNS:-target/release/geodns}
job=$(dirname "$0")/../../spark/first_stage.py
[ -f "$dir/world.toml" ] || python3 scripts/gen-world.py "$dir"
[ -d "$dir/logs" ] || "$geodns" simulate --world "$dir/world.toml" --users "$users" --logs-only "$dir/logs" --out "$dir/sim" 2>/dev/null
echo "$(du -sh "$dir/logs" | cut -f1) of logs in $dir/logs"
export SPARK_LOCAL_IP=127.0.0.1 SPARK_LOCAL_DIRS="$dir/spark-tmp" SPARK_LOG_DIR="$dir/spark-tmp"
mkdir -p "$dir/spark-tmp"
fixed="--created-at 2026-12-06T00:00:00Z --generation bench"
conf="--conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1 --conf spark.ui.enabled=false"

# The cluster: a master and two workers with one core and 8 GB each.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "spark.master.rest.enabled false" > "$dir/spark-tmp/master.properties"
spark-class org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$port" --webui-port 0 \
    --properties-file "$dir/spark-tmp/master.properties" > "$dir/spark-tmp/master.log" 2>&1 &
pids=$!
for i in 1 2; do
  spark-class org.apache.spark.deploy.worker.Worker --host 127.0.0.1 --webui-port 0 --cores 1 \
      --memory 8g --work-dir "$dir/spark-tmp/w$i" "spark://127.0.0.1:$port" > "$dir/spark-tmp/w$i.log" 2>&1 &
  pids="$pids $!"
done
trap 'kill $pids 2>/dev/null' EXIT
until [ "$(grep -c 'Registering worker' "$dir/spark-tmp/master.log" 2>/dev/null)" -ge 2 ]; do sleep 1; done

timed() { label=$1; shift; /usr/bin/time -f "$label: %e s, max RSS %M KB" "$@" > "$dir/out.txt" 2> "$dir/err.txt" || { cat "$dir/err.txt"; exit 1; }; grep -F "$label: " "$dir/err.txt"; }
for r in $(seq "$rounds"); do
  echo "round $r"
  # shellcheck disable=SC2086
  timed "local mapgen" "$geodns" mapgen --config "$dir/geodns.toml" --logs "$dir/logs" \
      --out "$dir/local.arrow" --tmp-dir "$dir" $fixed
  for where in "local[2]" "spark://127.0.0.1:$port"; do
    agg="$dir/agg-$(echo "$where" | tr -c 'a-z0-9\n' '_')"
    # shellcheck disable=SC2086
    timed "spark $where first stage" spark-submit --master "$where" --driver-memory 8g \
        --executor-memory 7g $conf "$job" --config "$dir/geodns.toml" --logs "$dir/logs" --out "$agg"
    # shellcheck disable=SC2086
    timed "local step from $where" "$geodns" mapgen --config "$dir/geodns.toml" \
        --aggregates "$agg" --out "$dir/from-spark.arrow" $fixed
    echo "aggregates: $(du -sh "$agg" | cut -f1)"
    cmp "$dir/local.arrow" "$dir/from-spark.arrow" && echo "map identical to the local run's"
  done
done
