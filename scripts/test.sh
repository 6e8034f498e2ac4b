#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests that drive the real geodns
# binary with real clients: dig, kdig, real recursive resolvers (unbound, PowerDNS Recursor) on
# loopback, and headless Chromium running the beacon snippet in a
# private network namespace (iproute2; needs root), and a standalone Apache Spark cluster
# (pyspark from PyPI); python3 runs the world generator. Installs what is missing; a
# missing tool is never a reason to skip a test.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=()
command -v dig >/dev/null 2>&1 || pkgs+=(bind9-dnsutils)
command -v kdig >/dev/null 2>&1 || pkgs+=(knot-dnsutils)
command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
command -v ip >/dev/null 2>&1 || pkgs+=(iproute2)
# nftables drops packets between a test's network namespaces (the control-plane fault matrix).
command -v nft >/dev/null 2>&1 || pkgs+=(nftables)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
# kill(1) and pkill for signalling the processes tests start (`kill` alone is a shell builtin).
[ -x /bin/kill ] || [ -x /usr/bin/kill ] || pkgs+=(procps)
command -v unbound >/dev/null 2>&1 || pkgs+=(unbound)
command -v pdns_recursor >/dev/null 2>&1 || pkgs+=(pdns-recursor)
# ZooKeeper (with its Java runtime) for the internal-zone tests; started by the tests.
[ -e /usr/share/java/zookeeper.jar ] || pkgs+=(zookeeper)
# Real BGP for the announce tests: ExaBGP runs `geodns announce`, BIRD 2 is its peer.
command -v exabgp >/dev/null 2>&1 || pkgs+=(exabgp)
command -v bird >/dev/null 2>&1 || pkgs+=(bird2)
# A real load generator for the rate-limiting test.
command -v dnsperf >/dev/null 2>&1 || pkgs+=(dnsperf)
# The XDP program of the AF_XDP path (server/build.rs): clang, and libbpf's headers.
command -v clang >/dev/null 2>&1 || pkgs+=(clang)
[ -e /usr/include/bpf/bpf_helpers.h ] || pkgs+=(libbpf-dev)
# ethtool reads a veth's per-queue XDP counters in the AF_XDP test.
command -v ethtool >/dev/null 2>&1 || pkgs+=(ethtool)
# promtool (in Debian's prometheus package) lints every process's metrics.
command -v promtool >/dev/null 2>&1 || pkgs+=(prometheus)
# Other GeoDNS servers load our MMDB export: gdnsd, Knot (with its geoip module), PowerDNS
# (with its geoip backend).
command -v gdnsd >/dev/null 2>&1 || pkgs+=(gdnsd)
command -v knotd >/dev/null 2>&1 || pkgs+=(knot)
ls /usr/lib/*/knot/modules-*/geoip.so >/dev/null 2>&1 || pkgs+=(knot-module-geoip)
command -v pdns_server >/dev/null 2>&1 || pkgs+=(pdns-server)
ls /usr/lib/*/pdns/libgeoipbackend.so >/dev/null 2>&1 || pkgs+=(pdns-backend-geoip)
# cargo-deb builds the Debian package the packaging test inspects (pinned: the test builds
# from the debug profile, which later versions may refuse).
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --version 3.8.0 --locked
# man (man-db, with groff) renders every man page in the tests.
command -v man >/dev/null 2>&1 || pkgs+=(man-db)
# lintian judges the package, readelf (binutils) that its binary is stripped.
command -v lintian >/dev/null 2>&1 || pkgs+=(lintian)
command -v readelf >/dev/null 2>&1 || pkgs+=(binutils)
# systemd-analyze checks the service unit.
command -v systemd-analyze >/dev/null 2>&1 || pkgs+=(systemd)
# Apache Spark runs mapgen's first stage in a test (a standalone master and two workers):
# the pyspark package from PyPI carries Spark's jars and launch scripts, pinned, in a
# virtualenv outside the clone that later runs reuse; Java is Debian's, as for ZooKeeper.
pyspark_version=4.3.0
spark_env="${GEODNS_TOOLS_DIR:-/var/tmp/geodns-tools}/pyspark-$pyspark_version"
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || pkgs+=(python3-venv)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "installing ${pkgs[*]}" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null 2>&1 \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${pkgs[@]}"; }
fi

if [ ! -x "$spark_env/bin/spark-submit" ]; then
  echo "installing pyspark $pyspark_version in $spark_env" >&2
  rm -rf "$spark_env"
  python3 -m venv "$spark_env"
  "$spark_env/bin/pip" install -q "pyspark==$pyspark_version"
fi
export PATH="$spark_env/bin:$PATH"

# Habits the suite enforces (docs/testing.md): formatting and lints fail the run.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
cargo test --workspace --locked
# Benches are not run here (they are measurements, see docs/perf.md), but they must build.
cargo check --workspace --benches --locked
