#!/usr/bin/env bash
# Installs everything Pond needs on a fresh machine: the Python environment for
# interop tests and benchmarks, the release build, and DuckDB extensions.
#   scripts/setup.sh           # full set-up (tests, benchmarks)
#   scripts/setup.sh --serve   # only what `pond serve` needs
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$POND_ROOT"

mode="${1:-full}"

if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

if [ "$mode" != "--serve" ]; then
  if [ ! -x "$POND_VENV/bin/python" ]; then
    python3 -m venv "$POND_VENV"
  fi
  "$POND_VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt
  # The Hive Metastore the catalog tests start (jars cached in ~/.cache/pond/hms; Java if missing).
  "$POND_VENV/bin/python" tests/interop/hms_server.py fetch
fi

echo "building pond (release; the first build compiles DuckDB and takes ~17 minutes)..." >&2
# Always the same cargo invocation (whole workspace, all targets): another
# selection can unify build-dependency features differently and recompile DuckDB.
cargo build --release --workspace --all-targets

if [ "$mode" = "--serve" ]; then
  "$POND_BIN" extensions install --extension-dir "$POND_EXTENSION_DIR" icu
else
  # shellcheck disable=SC2086
  "$POND_BIN" extensions install --extension-dir "$POND_EXTENSION_DIR" --python "$POND_VENV/bin/python" $POND_TEST_EXTENSIONS
fi
