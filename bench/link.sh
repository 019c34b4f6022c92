#!/usr/bin/env bash
# LINK DATABASE benchmark (PostgreSQL 15 → Pond): initial copy vs postgres_scanner, then
# streaming lag under pgbench at fixed change rates. Arguments go to bench/link.py
# (e.g. --scale 5 --duration 20 --rates 10000 for a quick run).
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$POND_ROOT"
exec "$POND_VENV/bin/python" bench/link.py "$@"
