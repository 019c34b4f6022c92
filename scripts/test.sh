#!/usr/bin/env bash
# Runs the whole test suite: Rust unit tests, the end-to-end test binary (real
# server, real listeners, real DuckDB), and the Python interop suite (real
# ADBC / pyarrow.flight / HTTP clients against a real `pond serve` process).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$POND_ROOT"
"$(dirname "$0")/setup.sh"

echo "== rustfmt and clippy" >&2
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings

echo "== the pond_metastore extension: rustfmt, clippy, unit tests (its own workspace)" >&2
(cd extensions/metastore && export CARGO_TARGET_DIR="${POND_EXT_TARGET_DIR:-$HOME/.cache/pond/target-ext}" \
  && cargo fmt -- --check && cargo clippy --release --locked -- -D warnings && cargo test --release --locked)

echo "== deployment files (hadolint, systemd-analyze)" >&2
"$(dirname "$0")/check_deploy.sh"

echo "== cargo test (unit + end-to-end)" >&2
cargo test --release --workspace --all-targets -- --test-threads=4

echo "== interop tests (Python clients against pond serve)" >&2
"$POND_VENV/bin/python" -m pytest tests/interop -q
