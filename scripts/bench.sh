#!/usr/bin/env bash
# Benchmarks the framework side by side with its peers and writes BENCHMARKS.md.
#
#   bash scripts/bench.sh            full run: release build, then every scenario,
#                                    3 rounds (about 5 minutes after the build)
#   bash scripts/bench.sh --smoke    every server and scenario for a fraction of a
#                                    second, one round (CI: checks that the harness
#                                    runs, not how fast); writes target/bench-smoke.md,
#                                    never BENCHMARKS.md; exits non-zero on any failure
#
# Other options go to the runner: --rounds N, --only echo,rpc,fanout,idle,
# --time-scale X (longer or shorter windows), --out FILE, --logs DIR.
# BENCH_PROFILE=release|dev picks the build (default: release for a full run, dev for
# --smoke, which then reuses what `cargo test` compiled).
#
# Servers run pinned to CPU 0 and the load generator to CPU 1 (taskset, when there
# are two CPUs). Run the full mode on a quiet machine: anything else on those cores
# shows up in the numbers (BENCHMARKS.md reports how much CPU other processes used).
set -euo pipefail
cd "$(dirname "$0")/.."

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
