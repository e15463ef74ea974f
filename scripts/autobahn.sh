#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client (cases 1.* to 7.* and 10.*) against the
# raw echo example and checks its report: every case must end OK, NON-STRICT or
# INFORMATIONAL, else this exits 1 listing the failing cases.
#
# The suite (PyPI `autobahntestsuite`) runs only under Python 2.7. The interpreter is
# $PYTHON27, else a pyenv 2.7, else python2.7/python2 on PATH; where none exists this
# prints "skipped" and exits 0. It is installed once into a virtualenv
# ($AUTOBAHN_VENV, default target/autobahn/venv) from tests/autobahn/requirements-py27.txt.
#
# Usage: scripts/autobahn.sh            (the report goes to target/autobahn/reports)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { echo "autobahn: $*" >&2; }

# --- a Python 2.7 interpreter, or skip -------------------------------------------
find_python27() {
  local c
  for c in "${PYTHON27:-}" "$HOME"/.pyenv/versions/2.7*/bin/python \
           "$(command -v python2.7 || true)" "$(command -v python2 || true)"; do
    if [ -n "$c" ] && [ -x "$c" ] \
       && "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' 2>/dev/null; then
      echo "$c"
      return 0
    fi
  done
  return 1
}
if ! py27=$(find_python27); then
  echo "autobahn: skipped: no Python 2.7 interpreter (set PYTHON27 to one)"
  exit 0
fi
log "python 2.7: $py27"

work="$root/target/autobahn"
venv="${AUTOBAHN_VENV:-$work/venv}"
mkdir -p "$work"

# --- the suite, in a virtualenv ------------------------------------------------------
if [ ! -x "$venv/bin/wstest" ]; then
  log "installing autobahntestsuite into $venv"
  if ! "$py27" -m pip --version >/dev/null 2>&1; then
    "$py27" -m ensurepip --default-pip >/dev/null
  fi
  # virtualenv 20.21 is the last release that runs on Python 2.7.
  tool="$work/virtualenv-py27"
  if [ ! -d "$tool/virtualenv" ]; then
    "$py27" -m pip install --quiet --disable-pip-version-check --target "$tool" 'virtualenv<20.22' \
      2>&1 | grep -v DEPRECATION >&2 || true
  fi
  if [ ! -d "$tool/virtualenv" ]; then
    log "installing virtualenv for Python 2.7 failed"
    exit 1
  fi
  rm -rf "$venv"
  PYTHONPATH="$tool" "$py27" -m virtualenv --quiet "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r tests/autobahn/requirements-py27.txt 2>&1 | grep -v DEPRECATION >&2 || true
  if [ ! -x "$venv/bin/wstest" ]; then
    log "installing autobahntestsuite failed"
    exit 1
  fi
fi

# --- the server under test -----------------------------------------------------------
log "building the raw_echo example (release)"
cargo build --release --quiet -p examples --example raw_echo
target_dir=$(cargo metadata --format-version 1 --no-deps \
  | "$py27" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
server_bin="$target_dir/release/examples/raw_echo"

port=${AUTOBAHN_PORT:-$("$py27" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')}

reports="$work/reports"
rm -rf "$reports"
mkdir -p "$reports"
server_log="$work/raw_echo.log"
FRAMEWORK_RAW_8082="$port" RUST_LOG="${RUST_LOG:-warn}" "$server_bin" >"$server_log" 2>&1 &
server_pid=$!
cleanup() {
  if kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

ready=0
for _ in $(seq 1 300); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    log "raw_echo exited early; its log:"
    cat "$server_log" >&2
    exit 1
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  log "raw_echo did not listen on port $port within 30 s"
  exit 1
fi
log "raw_echo listening on 127.0.0.1:$port"

# --- the fuzzing client ----------------------------------------------------------------
spec="$work/fuzzingclient.json"
sed -e "s|@PORT@|$port|g" -e "s|@OUTDIR@|$reports|g" tests/autobahn/fuzzingclient.json >"$spec"
start=$(date +%s)
log "running the fuzzing client (cases 1-7, 10); wstest output: $work/wstest.log"
(cd "$work" && timeout "${AUTOBAHN_TIMEOUT:-1800}" "$venv/bin/wstest" -m fuzzingclient -s "$spec") \
  >"$work/wstest.log" 2>&1 || {
  rc=$?
  log "wstest failed (exit $rc); last lines of its output:"
  tail -n 30 "$work/wstest.log" >&2
  exit 1
}
log "the suite took $(( $(date +%s) - start )) s"

if ! kill -0 "$server_pid" 2>/dev/null; then
  log "raw_echo died during the run; its log:"
  tail -n 50 "$server_log" >&2
  exit 1
fi

# --- the verdict -------------------------------------------------------------------------
"$py27" - "$reports/index.json" <<'PY'
from __future__ import print_function
import json, sys

ACCEPTED = ("OK", "NON-STRICT", "INFORMATIONAL")

def key(case_id):
    return tuple(int(p) for p in case_id.split("."))

with open(sys.argv[1]) as f:
    index = json.load(f)
if not index:
    print("autobahn: the report has no agent: nothing was tested")
    sys.exit(1)
failed = []
total = 0
for agent, cases in sorted(index.items()):
    by_category = {}
    for case_id in sorted(cases, key=key):
        result = cases[case_id]
        total += 1
        category = case_id.split(".")[0]
        counts = by_category.setdefault(category, {})
        behavior = result.get("behavior", "?")
        counts[behavior] = counts.get(behavior, 0) + 1
        if behavior not in ACCEPTED:
            failed.append((agent, case_id, behavior, result.get("behaviorClose", "?"),
                           result.get("remoteCloseCode"), result.get("reportfile")))
    for category in sorted(by_category, key=int):
        counts = by_category[category]
        summary = ", ".join("%s %d" % (b, n) for b, n in sorted(counts.items()))
        print("autobahn: %s: %s.*: %s" % (agent, category, summary))
if total == 0:
    print("autobahn: the report has no case: nothing was tested")
    sys.exit(1)
if failed:
    print("autobahn: %d of %d cases failed:" % (len(failed), total))
    for agent, case_id, behavior, close, code, report in failed:
        print("  %s %s: behavior %s, close %s, remote close code %s (%s)"
              % (agent, case_id, behavior, close, code, report))
    sys.exit(1)
print("autobahn: all %d cases OK, NON-STRICT or INFORMATIONAL" % total)
PY
