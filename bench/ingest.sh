#!/usr/bin/env bash
# Ingest benchmark: starts `pond serve` (WAL on, group-commit fdatasync) on a
# temp data dir, logs in, runs crates/pond/examples/ingest_load.rs against
# /api/v3/write_lp (line protocol) and /api/v1/write/msgpack (Arc columnar
# MessagePack; MSGPACK_SIZES records per body, default "1000 10000 100000"),
# and prints machine info and
# the JSON results. FORMATS="lp msgpack" (default) picks the runs.
# POND_EXTRA_ARGS adds `pond serve` flags, e.g. to defer flushes and measure the
# acknowledgement path alone: "--ingest-flush-rows 1000000000
# --ingest-wal-segment-mib 100000 --ingest-max-hot-rows 200000000".
# Optional: INFLUXD=1 also runs InfluxDB 1.x (`influxd` from the Debian package)
# with the same generator on /write.
#   bench/ingest.sh [CONNECTIONS] [SECONDS]
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$POND_ROOT"
CONNS="${1:-8}"; SECS="${2:-10}"
LOAD="${INGEST_LOAD:-$CARGO_TARGET_DIR/release/examples/ingest_load}"
[ -x "$LOAD" ] || cargo build --release --workspace --all-targets
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/{print $2}') GiB RAM, $(uname -r)"
DATA="$(mktemp -d)"; trap 'kill $PID 2>/dev/null || true; [ -n "${IPID:-}" ] && kill $IPID 2>/dev/null; rm -rf "$DATA"' EXIT
POND_ADMIN_PASSWORD=bench-password "$POND_BIN" serve --data-dir "$DATA/pond" --http-addr 127.0.0.1:0 --flight-addr 127.0.0.1:0 \
  --extensions '' --offline --ready-file "$DATA/ready.json" --ingest-sync "${POND_INGEST_SYNC:-fdatasync}" ${POND_EXTRA_ARGS:-} >"$DATA/pond.log" 2>&1 &
PID=$!
for _ in $(seq 100); do [ -f "$DATA/ready.json" ] && break; sleep 0.1; done
HTTP="$(python3 -c "import json,sys;print(json.load(open('$DATA/ready.json'))['http'])")"
TOKEN="$(curl -s -u admin:bench-password -X POST "http://$HTTP/api/v1/auth/login" | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')"
# After each run: how long until every acknowledged row is in Parquet (a flush
# of what is still in memory), so records / (run + drain) is the rate the lake
# keeps up with.
drain() {
  local t0 t1
  t0=$(date +%s.%N)
  curl -s -u admin:bench-password -X POST "http://$HTTP/api/v1/lake/flush" >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print('drain to the lake: %.2f s' % ($t1 - $t0))"
}
for f in ${FORMATS:-lp msgpack}; do
  if [ "$f" = lp ]; then
    echo "pond line protocol (WAL ${POND_INGEST_SYNC:-fdatasync}, group commit):"
    POND_TOKEN="$TOKEN" "$LOAD" "http://$HTTP/api/v3/write_lp?db=bench" "$CONNS" "$SECS"
    drain
  else
    for n in ${MSGPACK_SIZES:-1000 10000 100000}; do
      echo "pond MessagePack columnar, $n records per body (WAL ${POND_INGEST_SYNC:-fdatasync}, group commit):"
      POND_TOKEN="$TOKEN" "$LOAD" "http://$HTTP/api/v1/write/msgpack" "$CONNS" "$SECS" "$n" msgpack
      drain
    done
  fi
done
curl -s -u admin:bench-password "http://$HTTP/api/v1/lake/status"; echo; grep -c "flushed to the lake" "$DATA/pond.log" || true
curl -s -u admin:bench-password "http://$HTTP/api/v1/query" -d '{"sql":"SELECT count(*) AS rows_stored FROM bench.main.cpu","database":"bench"}'; echo
# Pond stops before the peer runs, so the two never share the CPU.
kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true
if [ "${INFLUXD:-0}" = 1 ] && ! command -v influxd >/dev/null; then
  # The side-by-side peer: InfluxDB 1.6.7 from Debian's package.
  echo "installing InfluxDB (Debian package influxdb) for the side-by-side run..." >&2
  if [ "$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q influxdb >/dev/null;
  else sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q influxdb >/dev/null; fi
fi
if [ "${INFLUXD:-0}" = 1 ] && command -v influxd >/dev/null; then
  mkdir -p "$DATA/influx"
  influxd config 2>/dev/null | sed -e "s#/var/lib/influxdb#$DATA/influx#g" -e 's#bind-address = ":8086"#bind-address = "127.0.0.1:18086"#' \
    -e 's#bind-address = "127.0.0.1:8088"#bind-address = "127.0.0.1:18088"#' > "$DATA/influx.conf"
  influxd -config "$DATA/influx.conf" >"$DATA/influx.log" 2>&1 &
  IPID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:18086/ping" && break; sleep 0.2; done
  curl -s -XPOST "http://127.0.0.1:18086/query" --data-urlencode 'q=CREATE DATABASE bench' >/dev/null
  echo "influxdb 1.x:"
  "$LOAD" "http://127.0.0.1:18086/write?db=bench" "$CONNS" "$SECS"
fi
