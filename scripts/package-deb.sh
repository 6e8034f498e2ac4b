#!/bin/sh
# Builds the Debian package (target/debian/geodns_*.deb): the release binary, then the man page
# and shell completions generated from the command line into target/deb-assets, then cargo-deb
# (cargo install cargo-deb) with Cargo.toml's [package.metadata.deb].
set -eu
cd "$(dirname "$0")/.."
cargo build --release
geodns="${CARGO_TARGET_DIR:-target}/release/geodns"
mkdir -p target/deb-assets
"$geodns" manpage >target/deb-assets/geodns.1
"$geodns" completions bash >target/deb-assets/geodns.bash
"$geodns" completions zsh >target/deb-assets/_geodns
"$geodns" completions fish >target/deb-assets/geodns.fish
cargo deb --no-build "$@"
