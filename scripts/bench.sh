#!/usr/bin/env bash
# Benchmarks the framework side by side with its peers and writes BENCHMARKS.md.
#
#   bash scripts/bench.sh            full run: release build, then every scenario,
#                                    3 rounds (about 9 minutes after the build)
#   bash scripts/bench.sh --smoke    every server and scenario for a fraction of a
#                                    second, one round (CI: checks that the harness
#                                    runs, not how fast); writes target/bench-smoke.md,
#                                    never BENCHMARKS.md; exits non-zero on any failure
#
# Other options go to the runner: --rounds N, --only echo,rpc,fanout,idle,cluster,recovery,
# --time-scale X (longer or shorter windows), --out FILE, --logs DIR.
# BENCH_PROFILE=release|dev picks the build (default: release for a full run, dev for
# --smoke, which then reuses what `cargo test` compiled).
#
# Servers run pinned to CPU 0 and the load generator to CPU 1 (taskset, when there
# are two CPUs). Run the full mode on a quiet machine: anything else on those cores
# shows up in the numbers (BENCHMARKS.md reports how much CPU other processes used).
#
# The cluster scenario runs its engines itself (Debian's redis-server and
# nats-server, each started per run on a free loopback port and killed after it);
# they are installed with apt-get when missing, as scripts/test.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nats-server >/dev/null || missing+=(nats-server)
if [ ${#missing[@]} -gt 0 ]; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
  command -v apt-get >/dev/null || { echo "bench.sh: the cluster scenario needs ${missing[*]}: install them" >&2; exit 1; }
  echo "bench.sh: installing ${missing[*]} with apt-get" >&2
  apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q)
  as_root "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2 \
    || { as_root "${apt[@]}" update >&2 && as_root "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2; } \
    || { echo "bench.sh: apt-get install ${missing[*]} failed" >&2; exit 1; }
fi

smoke=false
for arg in "$@"; do
  if [ "$arg" = "--smoke" ]; then smoke=true; fi
done
if $smoke; then profile=${BENCH_PROFILE:-dev}; else profile=${BENCH_PROFILE:-release}; fi

case "$profile" in
  release) cargo build --release -p framework-bench-harness; built=target/release/framework-bench ;;
  dev) cargo build -p framework-bench-harness; built=target/debug/framework-bench ;;
  *) echo "BENCH_PROFILE must be release or dev" >&2; exit 2 ;;
esac

# Run a private copy: a concurrent `cargo build` in this workspace would otherwise
# replace the binary between runs and mix two builds in one table.
mkdir -p target/bench-bin
cp "$built" target/bench-bin/framework-bench.tmp
mv -f target/bench-bin/framework-bench.tmp target/bench-bin/framework-bench
bin=target/bench-bin/framework-bench

if $smoke; then
  exec "$bin" run --logs target/bench-logs/smoke "$@"
else
  exec "$bin" run --out BENCHMARKS.md --logs target/bench-logs "$@"
fi
