#!/usr/bin/env bash
# Builds pond_metastore.duckdb_extension for DuckDB v1.5.5 / linux_amd64 in its
# own target directory (never the server's: that one builds DuckDB bundled).
#
#   extensions/metastore/build.sh            # release build + metadata footer
#
# Output: $POND_METASTORE_EXT, by default
#   ~/.cache/pond/target-ext/release/pond_metastore.duckdb_extension
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CARGO_TARGET_DIR="${POND_EXT_TARGET_DIR:-$HOME/.cache/pond/target-ext}"
out="${POND_METASTORE_EXT:-$CARGO_TARGET_DIR/release/pond_metastore.duckdb_extension}"
(cd "$here" && cargo build --release --locked)
version="v$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -1)"
python3 "$here/append_metadata.py" "$CARGO_TARGET_DIR/release/libpond_metastore.so" "$out" \
    --platform linux_amd64 --duckdb-version v1.5.5 --abi C_STRUCT_UNSTABLE --extension-version "$version"
