#!/usr/bin/env bash
# Installs everything Pond needs on a fresh machine: the Python environment for
# interop tests and benchmarks, the release build, and DuckDB extensions.
#   scripts/setup.sh           # full set-up (tests, benchmarks)
#   scripts/setup.sh --serve   # only what `pond serve` needs
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$POND_ROOT"

mode="${1:-full}"

# A Python with pip, to download the extension wheels: $POND_PYTHON if set, the
# project's venv, the system's python3, or else a new venv (a fresh Debian has
# python3 without pip; its venv module brings pip along when python3-venv is installed).
pip_python() {
  local candidate
  for candidate in "${POND_PYTHON:-}" "$POND_VENV/bin/python" python3; do
    if [ -n "$candidate" ] && "$candidate" -m pip --version >/dev/null 2>&1; then
      echo "$candidate"
      return
    fi
  done
  if [ ! -e "$POND_VENV" ]; then
    if python3 -m venv "$POND_VENV" >/dev/null 2>&1 && "$POND_VENV/bin/python" -m pip --version >/dev/null 2>&1; then
      echo "$POND_VENV/bin/python"
      return
    fi
    rm -rf "$POND_VENV" # a venv without pip (no ensurepip) would only mislead the next run
  fi
  return 1
}

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
# The build also produced Pond's ADBC driver, $CARGO_TARGET_DIR/release/libadbc_driver_pond.so;
# a manifest in the venv lets Python load it as driver="pond".
if [ "$mode" != "--serve" ]; then
  "$(dirname "$0")/adbc_manifest.sh"
fi

if [ "$mode" = "--serve" ]; then
  # Every extension the default configuration (and the lake flags) loads, from
  # the same offline source as the tests: the official PyPI wheels.
  # Nothing is downloaded for extensions already installed.
  python="$(pip_python)" || python=python3
  # shellcheck disable=SC2086
  if ! "$POND_BIN" extensions install --extension-dir "$POND_EXTENSION_DIR" --python "$python" $POND_SERVE_EXTENSIONS; then
    echo "could not install the DuckDB extensions $POND_SERVE_EXTENSIONS into $POND_EXTENSION_DIR:" >&2
    echo "they come from PyPI's official wheels through '$python -m pip download', so PyPI must be reachable" >&2
    echo "and that Python must have pip (install python3-pip or python3-venv, or set POND_PYTHON)" >&2
    exit 1
  fi
else
  # shellcheck disable=SC2086
  "$POND_BIN" extensions install --extension-dir "$POND_EXTENSION_DIR" --python "$POND_VENV/bin/python" $POND_TEST_EXTENSIONS
fi
