#!/usr/bin/env python3
"""Query result cache: a repeated dashboard query with and without the cache, in one run.

Starts its own `pond serve` ($POND_BIN) with `--query-cache-size 256MB`, ingests
~1M `cpu` points over line protocol (HOSTS hosts x POINTS points), flushes them
to the lake, then times typical dashboard queries over HTTP `/api/v1/query`
(median of RUNS runs each): once with `Cache-Control: no-cache` (the statement
runs in DuckDB every time) and once without (the second and later runs are
answered from the cache). A third column times the cached query right after a
line-protocol write to *another* database (must still hit) and a fourth after
a write to the same measurement (must miss: the answer changes). Writes
bench/results/qcache.md and .json with the machine it ran on.

    .venv/bin/python bench/qcache.py [--hosts 100] [--points 10000] [--runs 20]
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
START = 1_700_006_400  # 2023-11-15 00:00:00 UTC

QUERIES = {
    "time_bucket 5 min avg per host":
        "SELECT time_bucket(INTERVAL '5 minutes', time::TIMESTAMP) AS b, host, avg(usage_user), max(usage_system) "
        "FROM bench.cpu GROUP BY ALL ORDER BY b, host",
    "last point per host":
        "SELECT host, max(time) AS t, arg_max(usage_user, time) AS u FROM bench.cpu GROUP BY host ORDER BY host",
    "whole-table count and avg":
        "SELECT count(*), avg(usage_idle) FROM bench.cpu",
}


def q(s: requests.Session, url: str, sql: str, cache: bool) -> dict:
    headers = {} if cache else {"Cache-Control": "no-cache"}
    r = s.post(f"{url}/api/v1/query", json={"sql": sql}, headers=headers, timeout=600)
    r.raise_for_status()
    return r.json()


def timed(s: requests.Session, url: str, sql: str, cache: bool, runs: int) -> tuple[float, dict]:
    q(s, url, sql, cache)  # warm (fills the cache when on)
    times = []
    res = {}
    for _ in range(runs):
        t0 = time.perf_counter()
        res = q(s, url, sql, cache)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), res


def write(s: requests.Session, url: str, db: str, line: str) -> None:
    r = s.post(f"{url}/write?db={db}&precision=s", data=line.encode(), timeout=60)
    assert r.status_code == 204, r.text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--points", type=int, default=10_000, help="points per host (10 s apart)")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    ext = Path(os.environ.get("POND_EXTENSION_DIR", os.path.expanduser("~/.cache/pond/extensions")))
    tmp = Path(tempfile.mkdtemp(prefix="pond-qcache-bench-"))
    server = PondServer(data_dir=tmp / "data", ext_dir=ext, password=PASSWORD,
                        extra_args=["--query-cache-size", "256MB", "--lake-compact-interval-secs", "0"]).start()
    total = args.hosts * args.points
    try:
        s = requests.Session()
        s.auth = AUTH
        url = server.http_url
        lines = []
        for p in range(args.points):
            ts = START + p * 10
            for h in range(args.hosts):
                v = (p * 7 + h * 13) % 100
                lines.append(f"cpu,host=host{h:03d} usage_user={v}.5,usage_system={(v * 3) % 100}.25,usage_idle={100 - v}.0 {ts}")
            if len(lines) >= 20_000 or p == args.points - 1:
                write(s, url, "bench", "\n".join(lines))
                lines = []
        s.post(f"{url}/api/v1/lake/flush?db=bench", timeout=600).raise_for_status()
        write(s, url, "other", "x v=1 1700000000")
        results = {}
        for name, sql in QUERIES.items():
            off_ms, off_res = timed(s, url, sql, False, args.runs)
            on_ms, on_res = timed(s, url, sql, True, args.runs)
            assert on_res["data"] == off_res["data"], f"{name}: cached result differs"
            # A write elsewhere: still a hit.
            write(s, url, "other", "x v=2 1700000001")
            t0 = time.perf_counter()
            q(s, url, sql, True)
            other_ms = (time.perf_counter() - t0) * 1000
            # A write to the measurement: a miss, with the new row in the answer.
            write(s, url, "bench", f"cpu,host=host000 usage_user=1,usage_system=1,usage_idle=1 {START + args.points * 10}")
            t0 = time.perf_counter()
            fresh = q(s, url, sql, True)
            same_ms = (time.perf_counter() - t0) * 1000
            if "count" in name:
                assert fresh["data"][0][0] > on_res["data"][0][0], "a write did not reach the cached query"
            results[name] = {"uncached_median_ms": round(off_ms, 2), "cached_median_ms": round(on_ms, 2),
                             "ratio": round(off_ms / on_ms, 1) if on_ms > 0 else None,
                             "after_write_elsewhere_ms": round(other_ms, 2), "after_write_same_db_ms": round(same_ms, 2),
                             "rows": on_res["row_count"]}
        stats = s.get(f"{url}/api/v1/cache", timeout=60).json()
    finally:
        server.stop()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    machine = {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(),
               "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}
    result = {"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit, "machine": machine,
              "rows": total, "runs": args.runs, "queries": results, "cache_stats": stats}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "qcache.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# Query result cache ({result['at']}, commit {commit}; {cpu}, {machine['cpus']} cores, {machine['mem_gib']} GiB, "
          f"{machine['platform']})", "",
          f"{total:,} `cpu` rows in the lake ({args.hosts} hosts x {args.points:,} points), HTTP `/api/v1/query` with keep-alive, "
          f"one client, median of {args.runs} runs. Uncached: `Cache-Control: no-cache` on the same server.", "",
          "| query | uncached (ms) | cached (ms) | ratio | after a write to another db (ms) | after a write to the measurement (ms) | rows |",
          "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        md.append(f"| {name} | {r['uncached_median_ms']} | {r['cached_median_ms']} | {r['ratio']}x | "
                  f"{r['after_write_elsewhere_ms']} | {r['after_write_same_db_ms']} | {r['rows']} |")
    md += ["", f"Cache after the run: {stats['entries']} entries, {stats['bytes']:,} bytes, {stats['hits']} hits, "
               f"{stats['misses']} misses, {stats['bypassed']} bypassed."]
    (out / "qcache.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
