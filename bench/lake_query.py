"""Query benchmark on ingested time-series data, before and after compaction.

Starts its own `pond serve` ($POND_BIN) with a small flush threshold (so the
lake holds many small Parquet files, as after a day of steady ingest), ingests
one day of `cpu` data over line protocol (HOSTS hosts, one point every STEP
seconds), then times three typical queries over HTTP (median of RUNS runs):
a 5-minute time_bucket aggregate, the last point per host and a one-hour
range of the day; compacts (POST /api/v1/lake/compact) and times them again.
Writes bench/results/lake_query.md and .json with the machine it ran on.

    .venv/bin/python bench/lake_query.py [--hosts 100] [--step 10] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
from pond_server import PondServer  # noqa: E402

PASSWORD = "bench-admin-pw-1"
AUTH = ("admin", PASSWORD)
DAY_START = 1_700_006_400  # 2023-11-15 00:00:00 UTC

QUERIES = {
    "time_bucket 5 min avg per host (whole day)":
        "SELECT time_bucket(INTERVAL '5 minutes', time::TIMESTAMP) AS b, host, avg(usage_user), max(usage_system) "
        "FROM bench.cpu GROUP BY ALL ORDER BY b, host",
    "last point per host":
        "SELECT host, max(time) AS t, arg_max(usage_user, time) AS u FROM bench.cpu GROUP BY host ORDER BY host",
    "one-hour range (12:00-13:00) aggregate":
        "SELECT host, count(*), avg(usage_idle) FROM bench.cpu WHERE time >= TIMESTAMP_NS '2023-11-15 12:00:00' "
        "AND time < TIMESTAMP_NS '2023-11-15 13:00:00' GROUP BY host ORDER BY host",
}


def q(server: PondServer, sql: str):
    r = requests.post(f"{server.http_url}/api/v1/query", auth=AUTH, json={"sql": sql}, timeout=600)
    r.raise_for_status()
    return r.json()


def time_queries(server: PondServer, runs: int) -> dict:
    out = {}
    for name, sql in QUERIES.items():
        q(server, sql)  # warm
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            res = q(server, sql)
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1), "rows": res["row_count"]}
    return out


def measurement(server: PondServer) -> dict:
    m = requests.get(f"{server.http_url}/api/v1/measurements?db=bench", auth=AUTH, timeout=60).json()["measurements"]
    return {k: m[0][k] for k in ("rows", "files", "bytes")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--step", type=int, default=10, help="seconds between points of one host")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--flush-rows", type=int, default=20_000)
    args = ap.parse_args()
    ext = Path(os.environ.get("POND_EXTENSION_DIR", os.path.expanduser("~/.cache/pond/extensions")))
    tmp = Path(tempfile.mkdtemp(prefix="pond-lake-bench-"))
    server = PondServer(data_dir=tmp / "data", ext_dir=ext, password=PASSWORD,
                        extra_args=["--ingest-flush-rows", str(args.flush_rows), "--lake-cleanup-grace-secs", "0",
                                    "--lake-compact-interval-secs", "0"]).start()
    try:
        s = requests.Session()
        s.auth = AUTH
        points = 86_400 // args.step
        total = points * args.hosts
        t0 = time.perf_counter()
        lines = []
        for p in range(points):
            ts = (DAY_START + p * args.step) * 1_000_000_000
            for h in range(args.hosts):
                v = (p * 7 + h * 13) % 100
                lines.append(f"cpu,host=host{h:03d},region=r{h % 4} usage_user={v}.5,usage_system={(v * 3) % 100}.25,usage_idle={100 - v}.0 {ts}")
            if len(lines) >= 10_000 or p == points - 1:
                r = s.post(f"{server.http_url}/write?db=bench&precision=ns", data="\n".join(lines).encode(), timeout=120)
                assert r.status_code == 204, r.text
                lines = []
        ingest_s = time.perf_counter() - t0
        s.post(f"{server.http_url}/api/v1/lake/flush?db=bench", timeout=600).raise_for_status()
        before_m = measurement(server)
        assert before_m["rows"] == total, before_m
        before = time_queries(server, args.runs)
        t0 = time.perf_counter()
        comp = s.post(f"{server.http_url}/api/v1/lake/compact?db=bench", timeout=1800)
        comp.raise_for_status()
        compact_s = time.perf_counter() - t0
        after_m = measurement(server)
        after = time_queries(server, args.runs)
    finally:
        server.stop()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}
    result = {"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit, "machine": machine,
              "rows": total, "hosts": args.hosts, "step_s": args.step, "flush_rows": args.flush_rows,
              "ingest_s": round(ingest_s, 2), "ingest_rows_per_s": round(total / ingest_s),
              "compact_s": round(compact_s, 2), "before": {"lake": before_m, "queries": before},
              "after": {"lake": after_m, "queries": after}}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "lake_query.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# Lake query benchmark ({result['at']}, commit {commit}, {machine['cpus']} cores, {machine['mem_gib']} GiB, {machine['platform']})", "",
          f"{total:,} rows ({args.hosts} hosts, one point per {args.step} s, one day), ingested over HTTP line protocol in "
          f"{ingest_s:.1f} s ({total / ingest_s:,.0f} rows/s, one client, 10,000-line bodies); flush every {args.flush_rows:,} rows.",
          f"Lake before compaction: {before_m['files']} files, {before_m['bytes']:,} bytes; after ({compact_s:.1f} s): "
          f"{after_m['files']} files, {after_m['bytes']:,} bytes.", "",
          "| query | before compaction (median ms) | after (median ms) | rows |", "|---|---|---|---|"]
    for name in QUERIES:
        md.append(f"| {name} | {before[name]['median_ms']} | {after[name]['median_ms']} | {after[name]['rows']} |")
    (out / "lake_query.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
