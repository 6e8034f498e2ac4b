#!/bin/sh
# Builds the Debian packages into OUTDIR (default target/debian): geodns_*.deb, and
# geodns-dbgsym_*.ddeb with the debug symbols.
#
#   scripts/package-deb.sh [OUTDIR]
#
# The release binary (PROFILE=dev for a debug build; BUILD=0 to use what is built), then the
# man pages (one per command and config file) and shell completions generated from the
# command line into target/deb-assets, then cargo-deb (cargo install cargo-deb) with
# Cargo.toml's [package.metadata.deb], then the md5sums control file dh_md5sums would write
# (cargo-deb writes none). FAST=1 compresses quickly (tests). lintian accepts the result
# without errors or warnings (tests/integration/cli.rs runs it).
set -eu
cd "$(dirname "$0")/.."
out=${1:-target/debian}
profile=${PROFILE:-release}
[ "${BUILD:-1}" = 1 ] && cargo build --profile "$profile"
dir=$profile
[ "$profile" = dev ] && dir=debug
geodns="${CARGO_TARGET_DIR:-target}/$dir/geodns"
rm -rf target/deb-assets
mkdir -p target/deb-assets "$out"
"$geodns" manpage --dir target/deb-assets/man >/dev/null
"$geodns" completions bash >target/deb-assets/geodns.bash
"$geodns" completions zsh >target/deb-assets/_geodns
"$geodns" completions fish >target/deb-assets/geodns.fish
fast=""
compress=xz
if [ "${FAST:-0}" = 1 ]; then fast=--fast; compress=gzip; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo deb --profile "$profile" --no-build $fast -o "$work" 2>&1 \
    | grep -v -e 'debug info' -e 'debug = 1' -e 'To enable debug' -e 'dev profile is not supported' >&2 || true
for deb in "$work"/*.deb; do
    [ -e "$deb" ] || { echo "cargo deb made no package" >&2; exit 1; }
    rm -rf "$work/root"
    dpkg-deb -R "$deb" "$work/root"
    (cd "$work/root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort \
        | xargs -r -d '\n' md5sum) >"$work/root/DEBIAN/md5sums"
    chmod 0644 "$work/root/DEBIAN/md5sums"
    dpkg-deb --root-owner-group -Z"$compress" --build "$work/root" "$out/$(basename "$deb")" >/dev/null
done
cp "$work"/*.ddeb "$out"/ 2>/dev/null || true
# cargo-deb leaves the separated debug info (1.4 GB from a debug build) and the stripped copy
# under the target directory, one pair per build: the .ddeb holds them, so they go.
rm -f "${CARGO_TARGET_DIR:-target}/geodns/"*.debug "${CARGO_TARGET_DIR:-target}/geodns/"*.stripped-*
ls "$out"/*.deb
