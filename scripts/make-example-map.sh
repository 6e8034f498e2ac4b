#!/usr/bin/env bash
# Rebuilds data/example-map.arrow from data/example-nets.csv. The creation time and generation
# are fixed, so the output is byte-identical on every run (tests/example_map.rs checks that the
# committed file is what this script makes).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet -- map import-nets data/example-nets.csv data/example-map.arrow \
  --generation example-1 --created-at 2026-11-26T00:00:00Z
