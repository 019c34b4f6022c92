# Shared settings for Pond's scripts (sourced, not run).
# Build output and downloaded DuckDB extensions live outside the checkout so a
# fresh clone on the same machine reuses them (DuckDB's C++ takes ~17 minutes
# to compile on 2 cores).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pond/target}"
export POND_EXTENSION_DIR="${POND_EXTENSION_DIR:-$HOME/.cache/pond/extensions}"
export POND_BIN="${POND_BIN:-$CARGO_TARGET_DIR/release/pond}"
# The pond_metastore DuckDB extension (extensions/metastore/build.sh writes it there).
export POND_METASTORE_EXT="${POND_METASTORE_EXT:-$HOME/.cache/pond/target-ext/release/pond_metastore.duckdb_extension}"
POND_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export POND_ROOT
export POND_VENV="${POND_VENV:-$POND_ROOT/.venv}"
# Extensions `pond serve` loads with its defaults and with the lake flags that
# scripts/serve.sh passes through: icu (time zones; the default --extensions),
# ducklake (measurements), httpfs (--lake-data-path s3://...), postgres_scanner
# (--lake-catalog). `scripts/setup.sh --serve` installs exactly these, and
# tests/interop/test_serve_defaults.py starts Pond with only these installed.
POND_SERVE_EXTENSIONS="icu ducklake httpfs postgres_scanner"
# Extensions the test suite and benchmarks use (a superset of the serve list).
POND_TEST_EXTENSIONS="$POND_SERVE_EXTENSIONS tpch quack avro"
