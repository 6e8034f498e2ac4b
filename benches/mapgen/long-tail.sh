#!/bin/sh
# Map quality where measurements are thin (docs/map-quality.md): generate a long-tail world
# (scripts/gen-world.py --internet), simulate SESSIONS_PER_24 beacon sessions per measured
# client /24 straight into logs, run mapgen with the world's GeoIP database and no routes
# (once as is, once with a tenth of the sessions held out), and score the map against the
# ground truth, the nearest-PoP baselines and the per-resolver bounds.
#
# usage: benches/mapgen/long-tail.sh DIR [SESSIONS_PER_24] [WORLD_SEED] [ISPS] [SUBNETS] [SIM_SEED]
#        (after cargo build --release; GEODNS=path/to/geodns to score another build)
set -eu
dir=$1
per24=${2:-1.5}
wseed=${3:-1}
isps=${4:-3200}
subnets=${5:-20000}
sseed=${6:-2}
geodns=${GEODNS:-target/release/geodns}
python3 scripts/gen-world.py "$dir" --internet --seed "$wseed" --isps "$isps" --subnets "$subnets"
sessions=$(python3 - "$dir/world.toml" "$per24" <<'PY'
import sys, tomllib
w = tomllib.load(open(sys.argv[1], "rb"))
measured = sum(2 ** (24 - int(n["prefix"].split("/")[1])) for n in w["networks"] if n.get("beacon", True))
print(int(measured * float(sys.argv[2])))
PY
)
echo "$sessions sessions ($per24 per measured /24)"
rm -rf "$dir/logs" "$dir/sim"
"$geodns" simulate --world "$dir/world.toml" --users "$sessions" --seed "$sseed" --logs-only "$dir/logs" --out "$dir/sim" 2>/dev/null >/dev/null
"$geodns" mapgen --config "$dir/geodns.toml" --geoip "$dir/sim/geoip.mmdb" --logs "$dir/logs" \
    --out "$dir/map.arrow" --report "$dir/report.json" >"$dir/summary.txt" 2>/dev/null
grep -E '^(pooling|map) ' "$dir/summary.txt" || true
"$geodns" map score "$dir/map.arrow" --world "$dir/world.toml" --truth "$dir/sim"
echo
echo "with --holdout 0.1 (the map from 90 % of the sessions, judged on the rest, then against the truth):"
"$geodns" mapgen --config "$dir/geodns.toml" --geoip "$dir/sim/geoip.mmdb" --logs "$dir/logs" \
    --out "$dir/map-holdout.arrow" --holdout 0.1 2>/dev/null | sed -n '/^holdout/,/^map /p' | grep -v '^map '
"$geodns" map score "$dir/map-holdout.arrow" --world "$dir/world.toml" --truth "$dir/sim" | grep -E 'key space'
