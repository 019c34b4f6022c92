#!/usr/bin/env bash
# Ingest with wrk as the generator (C, little CPU): line protocol (1,000-line
# bodies) and Arc columnar MessagePack (MSGPACK_RECORDS per body, default
# 10,000), CONNECTIONS connections for SECONDS each, then the drain (an
# on-demand flush of what is still in memory), so the sustained rate is
# records stored / (run + drain). Default settings: WAL on, group-commit
# fdatasync. With INFLUXD=1 the same wrk run goes to InfluxDB 1.x (/write).
# POND_BIN_BEFORE=path also runs an older binary the same way (side by side).
# Needs the Debian packages wrk (and influxdb for INFLUXD=1).
#   bench/ingest_wrk.sh [CONNECTIONS] [SECONDS]
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$POND_ROOT"
CONNS="${1:-8}"; SECS="${2:-20}"; NREC="${MSGPACK_RECORDS:-10000}"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/{print $2}') GiB RAM, $(uname -r); commit $(git rev-parse --short HEAD); load average before: $(cut -d" " -f1-3 /proc/loadavg)"
W="$(mktemp -d)"; trap 'kill ${PID:-} ${IPID:-} 2>/dev/null || true; rm -rf "$W"' EXIT
"$POND_VENV/bin/python" bench/wrk_bodies.py lp "$W/lp" 100 1000
"$POND_VENV/bin/python" bench/wrk_bodies.py msgpack "$W/mp" 20 "$NREC"
AUTH="Basic $(printf 'admin:bench-password' | base64)"

wrk_run() { # url-path-prefix bodies-dir n records-per-body ctype
  local out
  out="$(BODIES="$2" NBODIES="$3" WPATH="$1" AUTH="$AUTH" CTYPE="$5" wrk -t1 -c"$CONNS" -d"${SECS}s" -s bench/wrk_post.lua "http://$HOST" | grep '^WRK')"
  echo "  $out"
  local req non2xx
  req="$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")"; non2xx="$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$out")"
  ACKED=$(( (req - non2xx) * $4 ))
}

pond_run() { # label binary
  rm -rf "$W/pond" "$W/ready.json"
  POND_ADMIN_PASSWORD=bench-password "$2" serve --data-dir "$W/pond" --http-addr 127.0.0.1:0 --flight-addr 127.0.0.1:0 --pg-addr off \
    --extensions '' --offline --ready-file "$W/ready.json" >"$W/pond.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do [ -f "$W/ready.json" ] && break; sleep 0.1; done
  HOST="$(python3 -c "import json;print(json.load(open('$W/ready.json'))['http'])")"
  for f in lp msgpack; do
    if [ $f = lp ]; then wrk_run "/api/v3/write_lp?db=bench" "$W/lp" 100 1000 text/plain
    else wrk_run "/api/v1/write/msgpack" "$W/mp" 20 "$NREC" application/msgpack; fi
    local t0 t1
    t0=$(date +%s.%N); curl -s -u admin:bench-password -X POST "http://$HOST/api/v1/lake/flush" >/dev/null; t1=$(date +%s.%N)
    python3 -c "a=$ACKED; s=$SECS; d=$t1-$t0; print('  $1 $f: acknowledged %.0f records/s, drain %.2f s, sustained %.0f records/s' % (a/s, d, a/(s+d)))"
  done
  curl -s -u admin:bench-password "http://$HOST/api/v1/query" -d '{"sql":"SELECT count(*) AS rows_stored FROM bench.main.cpu","database":"bench"}'; echo
  kill $PID; wait $PID 2>/dev/null || true; PID=
}

pond_run "pond" "$POND_BIN"
[ -n "${POND_BIN_BEFORE:-}" ] && pond_run "pond-before" "$POND_BIN_BEFORE"
if [ "${INFLUXD:-0}" = 1 ]; then
  mkdir -p "$W/influx"
  influxd config 2>/dev/null | sed -e "s#/var/lib/influxdb#$W/influx#g" -e 's#bind-address = ":8086"#bind-address = "127.0.0.1:18086"#' \
    -e 's#bind-address = "127.0.0.1:8088"#bind-address = "127.0.0.1:18088"#' > "$W/influx.conf"
  influxd -config "$W/influx.conf" >"$W/influx.log" 2>&1 &
  IPID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:18086/ping" && break; sleep 0.2; done
  curl -s -XPOST "http://127.0.0.1:18086/query" --data-urlencode 'q=CREATE DATABASE bench' >/dev/null
  HOST=127.0.0.1:18086
  wrk_run "/write?db=bench" "$W/lp" 100 1000 text/plain
  python3 -c "print('  influxdb lp: acknowledged %.0f lines/s' % ($ACKED/$SECS))"
  kill $IPID; wait $IPID 2>/dev/null || true; IPID=
fi
