#!/bin/sh
# Map quality on a large generated world: generate the world, simulate USERS users straight
# into logs, run mapgen with the world's GeoIP database (with and without its routing table),
# and score both maps against the ground truth and the nearest-PoP baselines
# (docs/map-quality.md).
#
# usage: benches/mapgen/quality.sh DIR [USERS] [SEED]     (after cargo build --release)
set -eu
dir=$1
users=${2:-200000}
seed=${3:-1}
geodns=${GEODNS:-target/release/geodns}
python3 scripts/gen-world.py "$dir"
"$geodns" simulate --world "$dir/world.toml" --users "$users" --seed "$seed" --logs-only "$dir/logs" --out "$dir/sim" 2>/dev/null
for routes in no yes; do
    extra=""
    [ "$routes" = yes ] && extra="--routes $dir/sim/routes.txt"
    # shellcheck disable=SC2086
    "$geodns" mapgen --config "$dir/geodns.toml" --geoip "$dir/sim/geoip.mmdb" $extra --logs "$dir/logs" \
        --out "$dir/map-routes-$routes.arrow" --report "$dir/report-routes-$routes.json" >"$dir/summary-routes-$routes.txt" 2>/dev/null
    echo
    echo "mapgen --geoip $([ "$routes" = yes ] && echo "--routes ")($(grep '^map ' "$dir/summary-routes-$routes.txt" | sed 's/.*(\([0-9]* rows\).*/\1/'))"
    echo
    "$geodns" map score "$dir/map-routes-$routes.arrow" --world "$dir/world.toml" --truth "$dir/sim"
done
