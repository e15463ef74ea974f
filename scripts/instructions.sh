#!/usr/bin/env bash
# Instructions per message of the benchmark's servers, counted by valgrind: a
# deterministic measure for changes of a few percent, which this machine's CPU
# times (±20 % between runs) cannot show. With --cache, also cachegrind's
# simulated L1 misses per message (the kernel is not simulated).
#
#   bash scripts/instructions.sh framework rpc jsonrpsee rpc
#   bash scripts/instructions.sh --cache framework echo fastwebsockets echo
#
# Arguments are SERVER SCENARIO pairs, as `framework-bench server` takes them; the
# closed-loop scenarios (echo, echo64k, rpc) count round trips. Builds the harness
# in release with `--features valgrind` into target/valgrind, then for each pair
# runs the server pinned to CPU 0 under cachegrind twice, with the load generator
# (100 connections) pinned to CPU 1 for SHORT and LONG seconds (environment, default
# 2 and 10), and divides the difference in instructions by the difference in
# messages, so that start-up and shutdown cancel out. Needs valgrind (Debian's
# package `valgrind`).
#
# With --i1 SIZE,ASSOC,LINE (after --cache), the simulated L1i has that geometry
# (cachegrind's default is this machine's: 32768,8,64). Misses that go away
# with more ways at the same size (32768,16,64) are conflicts: hot code lines
# that happen to share a set, which moves with every build's layout; those
# that go away only with more size (65536,8,64) are the hot code's footprint.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=no
geometry=()
if [ "${1:-}" = "--cache" ]; then
  cache=yes
  shift
  if [ "${1:-}" = "--i1" ]; then
    geometry=("--I1=${2:?--i1 needs SIZE,ASSOC,LINE}")
    shift 2
  fi
fi
if [ $# -eq 0 ] || [ $(($# % 2)) -ne 0 ]; then
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
short=${SHORT:-2}
long=${LONG:-10}
target=target/valgrind
cargo build --release -q -p framework-bench-harness --features valgrind --target-dir "$target"
bin=$target/release/framework-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Server on CPU 0, load generator on CPU 1 (run directly, not through a function,
# so that $! is valgrind's own pid, which the end of a run signals).
pin0=() pin1=()
if [ "$(nproc)" -ge 2 ]; then pin0=(taskset -c 0) pin1=(taskset -c 1); fi

# The count cachegrind's summary in file $1 gives on the line matching $2.
count() { grep -E "$2" "$1" | head -1 | sed 's/.*: *\([0-9,]*\).*/\1/' | tr -d ,; }

# One run: prints "instructions messages [I1-misses D1-misses]".
run() {
  local server=$1 scenario=$2 secs=$3 out=$work/run
  "${pin0[@]}" valgrind --tool=cachegrind --cache-sim=$cache "${geometry[@]}" --cachegrind-out-file=/dev/null \
    "$bin" server --server "$server" --scenario "$scenario" --port 0 >"$out.server" 2>&1 &
  local pid=$! port=""
  for _ in $(seq 1 600); do
    port=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$out.server")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "instructions.sh: $server did not start under valgrind:" >&2
    tail -20 "$out.server" >&2
    exit 1
  fi
  "${pin1[@]}" "$bin" load --server "$server" --scenario "$scenario" --port "$port" \
    --warmup 0 --secs "$secs" --conns 100 >"$out.load" 2>&1 || true
  kill -INT "$pid" 2>/dev/null || true
  sleep 1
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local messages
  messages=$(grep -o '"messages":[0-9]*' "$out.load" | head -1 | cut -d: -f2)
  if [ -z "$messages" ] || [ -z "$(count "$out.server" 'I +refs:')" ]; then
    echo "instructions.sh: no result for $server $scenario:" >&2
    tail -n 5 "$out.load" "$out.server" >&2
    exit 1
  fi
  echo "$(count "$out.server" 'I +refs:') $messages $(count "$out.server" 'I1 +misses:')" \
    "$(count "$out.server" 'D1 +misses:')"
}

while [ $# -gt 0 ]; do
  server=$1 scenario=$2
  shift 2
  first=$(run "$server" "$scenario" "$short") || exit 1
  second=$(run "$server" "$scenario" "$long") || exit 1
  read -r i1 m1 a1 b1 <<<"$first"
  read -r i2 m2 a2 b2 <<<"$second"
  if [ "$m2" -le "$m1" ]; then
    echo "instructions.sh: $server $scenario: the longer run got no more messages ($m1, $m2)" >&2
    exit 1
  fi
  line=$(awk -v i1="$i1" -v i2="$i2" -v m1="$m1" -v m2="$m2" \
    'BEGIN { printf "%.0f instructions per message", (i2 - i1) / (m2 - m1) }')
  if [ "$cache" = yes ]; then
    line+=$(awk -v a1="$a1" -v a2="$a2" -v b1="$b1" -v b2="$b2" -v m1="$m1" -v m2="$m2" \
      'BEGIN { printf ", %.1f L1i and %.1f L1d misses", (a2 - a1) / (m2 - m1), (b2 - b1) / (m2 - m1) }')
  fi
  echo "$server $scenario: $line (messages $m1 in ${short} s, $m2 in ${long} s)"
done
