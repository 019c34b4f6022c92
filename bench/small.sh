#!/usr/bin/env bash
# Small-statement benchmark (issue 18): builds Pond and the bench clients, then runs
# bench/small.py (point selects, SELECT 1 latency, single-row INSERT transactions next to
# DuckDB in process and Quack). Arguments go to bench/small.py (e.g. --quick).
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$POND_ROOT"
cargo build --release --workspace --all-targets
exec "$POND_VENV/bin/python" bench/small.py "$@"
