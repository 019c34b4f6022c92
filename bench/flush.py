#!/usr/bin/env python3
"""Flush alone, old path vs new writers, on the same rows, side by side in one run.

Usage (from the repository root):
    .venv/bin/python bench/flush.py [--rows 10000000] [--reps 3]

For each encoder — `ducklake-insert` (the previous design: INSERT through
DuckLake's hive partitioning), `duckdb-copy` (Pond splits by day, DuckDB COPY
writes one file per day) and `arrow` (Pond splits by day, arrow-rs writes) —
it starts `pond serve --lake-encoder <e>` with flushes deferred, writes the
same Arc-shaped rows (`cpu,host=… value=…,cpu_idle=…,cpu_user=…`, 1-second
points of 1,000 hosts crossing a midnight) over HTTP, then times
`POST /api/v1/lake/flush` (everything into Parquet and registered). Machine
info and results go to bench/results/flush.md and flush.json.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))
from pond_server import PondServer, ensure_extensions  # noqa: E402

PASSWORD = "bench-Secret-12"
AUTH = ("admin", PASSWORD)
RESULTS = ROOT / "bench" / "results"
ENCODERS = ["ducklake-insert", "duckdb-copy", "arrow"]
# 2024-01-01 23:00:00 UTC: the rows cross midnight (two days per flush).
START = 1_704_150_000_000_000_000


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {cpu}, {mem:.1f} GiB RAM, kernel {platform.release()}"


def bodies(rows: int, per_body: int = 100_000, hosts: int = 1000):
    i = 0
    while i < rows:
        n = min(per_body, rows - i)
        out = []
        for k in range(i, i + n):
            t = START + (k // hosts) * 1_000_000_000
            h = k % hosts
            # Values that do not repeat in a short cycle (compress like real metrics, not like a counter).
            out.append(f"cpu,host=host{h} value={k * 2654435761 % 1000003 / 1000},cpu_idle={k * 40503 % 10007 / 100},"
                       f"cpu_user={k * 7919 % 10009 / 100} {t}")
        yield "\n".join(out).encode()
        i += n


def run(encoder: str, payloads: list[bytes], rows: int, ext_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as d:
        args = ["--lake-encoder", encoder, "--ingest-flush-rows", "1000000000", "--ingest-flush-interval-ms", "3600000",
                "--ingest-wal-segment-mib", "100000", "--ingest-max-hot-rows", str(rows * 2), "--lake-compact-interval-secs", "0"]
        s = PondServer(data_dir=Path(d) / "data", ext_dir=ext_dir, password=PASSWORD, extra_args=args).start()
        try:
            for p in payloads:
                r = requests.post(f"{s.http_url}/write?db=bench", auth=AUTH, data=p, timeout=300)
                assert r.status_code == 204, r.text
            t0 = time.perf_counter()
            r = requests.post(f"{s.http_url}/api/v1/lake/flush?db=bench", auth=AUTH, timeout=3600)
            secs = time.perf_counter() - t0
            assert r.status_code == 200, r.text
            stored = requests.post(f"{s.http_url}/api/v1/query", auth=AUTH, json={"sql": "SELECT count(*) FROM bench.cpu"},
                                   timeout=600).json()["data"][0][0]
            files = sum(1 for _ in (Path(d) / "data" / "lake" / "data").rglob("*.parquet"))
            size = sum(p.stat().st_size for p in (Path(d) / "data" / "lake" / "data").rglob("*.parquet"))
            assert stored == rows, (stored, rows)
            return {"seconds": secs, "rows_per_s": rows / secs, "files": files, "bytes": size}
        finally:
            s.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    ext_dir = ensure_extensions(["ducklake"])
    payloads = list(bodies(a.rows))
    results: dict[str, list[dict]] = {e: [] for e in ENCODERS}
    # Interleaved, so drift on a shared machine hits every encoder alike.
    for rep in range(a.reps):
        for e in ENCODERS:
            r = run(e, payloads, a.rows, ext_dir)
            print(f"rep {rep + 1} {e:16s} {r['seconds']:.2f} s  {r['rows_per_s'] / 1e6:.2f} M rows/s  {r['files']} files  {r['bytes'] / 2**20:.0f} MiB", flush=True)
            results[e].append(r)
    med = {e: statistics.median(x["rows_per_s"] for x in v) for e, v in results.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [f"# Flush alone: {a.rows:,} rows, median of {a.reps} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit})",
             "", f"machine: {machine()}; load average at the end: {open('/proc/loadavg').read().split()[:3]}", "",
             "| encoder | rows/s (median) | runs (s) | files | MiB | vs ducklake-insert |", "|---|---|---|---|---|---|"]
    for e in ENCODERS:
        v = results[e]
        runs = " / ".join("%.2f" % x["seconds"] for x in v)
        lines.append(f"| {e} | {med[e] / 1e6:.2f} M | {runs} | {v[0]['files']} | "
                     f"{v[0]['bytes'] / 2**20:.0f} | {med[e] / med['ducklake-insert']:.2f}× |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "flush.md").write_text(text)
    (RESULTS / "flush.json").write_text(json.dumps({"machine": machine(), "rows": a.rows, "results": results}, indent=1))


if __name__ == "__main__":
    main()
