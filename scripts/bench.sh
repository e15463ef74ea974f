#!/usr/bin/env bash
# Benchmarks the framework side by side with its peers and writes BENCHMARKS.md.
#
#   bash scripts/bench.sh            full run: release build (and Sockudo's, below),
#                                    then every scenario, 3 rounds (about 18 minutes
#                                    after the builds)
#   bash scripts/bench.sh --smoke    every server and scenario for a fraction of a
#                                    second, one round (CI: checks that the harness
#                                    runs, not how fast); writes target/bench-smoke.md,
#                                    never BENCHMARKS.md; exits non-zero on any failure
#
# Other options go to the runner: --rounds N, --only echo,echo64k,echo-tls,rpc,fanout,
# fanout10k,fanout-tls,idle,storm,cluster,recovery, --time-scale X (longer or shorter
# windows), --out FILE, --logs DIR. BENCH_PROFILE=release|dev picks the build
# (default: release for a full run, dev for --smoke, which then reuses what
# `cargo test` compiled).
#
# Servers run pinned to CPU 0 and the load generator to CPU 1 (taskset, when there
# are two CPUs). Run the full mode on a quiet machine: anything else on those cores
# shows up in the numbers (BENCHMARKS.md reports how much CPU other processes used).
#
# The cluster scenario runs its engines itself (Debian's redis-server and
# nats-server, each started per run on a free loopback port and killed after it);
# they are installed with apt-get when missing, as scripts/test.sh does.
#
# echo-tls and fanout-tls run the echo and fanout loads against each server plain and
# over TLS (wss://), in the same rounds: the runner makes a self-signed certificate for
# the run (rcgen) in the logs' tls/ directory; the servers serve it and the load
# generator trusts it (rustls, ring provider: no OpenSSL).
#
# Sockudo (crate `sockudo`, a Pusher-protocol server, a program of its own) is a peer
# in fanout, fanout10k, fanout-tls (over TLS too: its SSL_* settings), idle and
# storm. A full run builds it first, once, with the fewest features (`cargo install
# --locked --no-default-features --features local`, into target/sockudo; its build
# needs protoc and protobuf's well-known types: Debian's protobuf-compiler and
# libprotobuf-dev, installed when missing), and a failed build is reported in
# BENCHMARKS.md with its error. The smoke run never builds it (a release build of many minutes): it runs Sockudo when
# target/sockudo/bin/sockudo is there and says it skipped it otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=false
for arg in "$@"; do
  if [ "$arg" = "--smoke" ]; then smoke=true; fi
done

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nats-server >/dev/null || missing+=(nats-server)
if ! $smoke; then
  command -v protoc >/dev/null || missing+=(protobuf-compiler)
  [ -f /usr/include/google/protobuf/timestamp.proto ] || missing+=(libprotobuf-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
  command -v apt-get >/dev/null || { echo "bench.sh: the benchmark needs ${missing[*]}: install them" >&2; exit 1; }
  echo "bench.sh: installing ${missing[*]} with apt-get" >&2
  apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q)
  as_root "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2 \
    || { as_root "${apt[@]}" update >&2 && as_root "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2; } \
    || { echo "bench.sh: apt-get install ${missing[*]} failed" >&2; exit 1; }
fi

# Sockudo: the version the harness speaks to, built once (cargo install does
# nothing when this version is already installed with these features).
sockudo_version=5.2.0
if ! $smoke; then
  mkdir -p target/sockudo
  rm -f target/sockudo/build-error.txt
  echo "bench.sh: building Sockudo $sockudo_version (cargo install, first time: many minutes)" >&2
  if ! CARGO_TARGET_DIR=target/sockudo-build cargo install --locked --root target/sockudo \
      --no-default-features --features local "sockudo@$sockudo_version" \
      >target/sockudo/build.log 2>&1; then
    # The runner reports this in BENCHMARKS.md and runs the other servers.
    { echo "cargo install --locked --no-default-features --features local sockudo@$sockudo_version failed ($(rustc --version)):"
      grep -iE 'error|could not find|requires rustc' target/sockudo/build.log | head -n 20
    } >target/sockudo/build-error.txt
    echo "bench.sh: the Sockudo build failed, see target/sockudo/build.log" >&2
  fi
fi
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
