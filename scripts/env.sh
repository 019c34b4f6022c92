# Shared settings for Pond's scripts (sourced, not run).
# Build output and downloaded DuckDB extensions live outside the checkout so a
# fresh clone on the same machine reuses them (DuckDB's C++ takes ~17 minutes
# to compile on 2 cores).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pond/target}"
export POND_EXTENSION_DIR="${POND_EXTENSION_DIR:-$HOME/.cache/pond/extensions}"
export POND_BIN="${POND_BIN:-$CARGO_TARGET_DIR/release/pond}"
POND_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export POND_ROOT
export POND_VENV="${POND_VENV:-$POND_ROOT/.venv}"
# Extensions the test suite and benchmarks use.
POND_TEST_EXTENSIONS="icu tpch httpfs ducklake postgres_scanner quack"
