#!/usr/bin/env bash
# Runs the ADBC driver's leak/crash harness (crates/pond-adbc/examples/adbc_cycles.rs)
# under valgrind: load libadbc_driver_pond.so through the driver manager, then
# connect, query, fail a query and close, CYCLES times (default 1000), against a
# real `pond serve`. Fails on any definite leak or memory error.
#   scripts/adbc_valgrind.sh [CYCLES]
# The last result is recorded in bench/results/adbc_valgrind.txt.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$POND_ROOT"
cycles="${1:-1000}"
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }
harness="$CARGO_TARGET_DIR/release/examples/adbc_cycles"
lib="$CARGO_TARGET_DIR/release/libadbc_driver_pond.so"
[ -x "$harness" ] && [ -f "$lib" ] || { echo "build first: cargo build --release --workspace --all-targets" >&2; exit 1; }

work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
password="valgrind-Secret-1"
POND_ADMIN_PASSWORD="$password" "$POND_BIN" serve --data-dir "$work/data" --flight-addr 127.0.0.1:0 \
  --http-addr 127.0.0.1:0 --pg-addr 127.0.0.1:0 --extension-dir "$POND_EXTENSION_DIR" --extensions "" \
  --max-sessions 4096 --ready-file "$work/ready.json" >"$work/pond.log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do [ -s "$work/ready.json" ] && break; sleep 0.5; done
flight="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["flight"])' "$work/ready.json")"

out="bench/results/adbc_valgrind.txt"
mkdir -p "$(dirname "$out")"
{
  echo "# scripts/adbc_valgrind.sh $cycles — $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD), $(valgrind --version)"
  start=$(date +%s)
  set +e
  valgrind --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --error-exitcode=3 \
    --num-callers=30 "$harness" "$lib" "grpc://$flight" "$password" "$cycles" 2>&1 | grep -v "^[0-9]* cycles$"
  rc=${PIPESTATUS[0]}
  set -e
  echo "exit code $rc after $(( $(date +%s) - start )) s (0 = no definite leaks, no memory errors)"
} | tee "$out"
grep -q "^exit code 0 " "$out"
