#!/usr/bin/env python3
"""Pond's ADBC driver (libadbc_driver_pond.so) vs PyPI's adbc-driver-flightsql (the Go
Flight SQL driver), same server, same data, one run.

Usage (from the repository root):
    .venv/bin/python bench/adbc.py            # TPC-H SF1 lineitem (6M rows)
    .venv/bin/python bench/adbc.py --quick    # SF0.1, fewer iterations

Measures: fetching lineitem to an Arrow table (no compression, lz4, zstd), client peak
RSS during that fetch and while streaming it batch by batch, 1,000 x `SELECT 1` p50/p99
on one connection, and connect+query+close cycles per second. Every measurement runs in
a fresh child process (so peak RSS is that driver's alone). Writes bench/results/adbc.md
and adbc.json with the machine's details.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from pond_server import PondServer, ensure_extensions, pond_bin  # noqa: E402

PASSWORD = "bench-Secret-12"
CACHE = Path(os.path.expanduser("~/.cache/pond/bench"))
RESULTS = ROOT / "bench" / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pond_library() -> str:
    return os.environ.get("POND_ADBC_LIB") or str(pond_bin().parent / "libadbc_driver_pond.so")


def connect(driver: str, uri: str, compression: str | None = None, database: str | None = None):
    """driver: 'pond' (this repository's driver) or 'go' (adbc-driver-flightsql)."""
    if driver == "pond":
        import adbc_driver_manager.dbapi as dbapi

        kw = {"uri": uri, "username": "admin", "password": PASSWORD}
        if database:
            kw["pond.database"] = database
        if compression:
            kw["pond.compression"] = compression
        return dbapi.connect(driver=pond_library(), db_kwargs=kw, autocommit=True)
    import adbc_driver_flightsql.dbapi as fs

    kw = {"username": "admin", "password": PASSWORD}
    if database:
        kw["adbc.flight.sql.rpc.call_header.database"] = database
    if compression:
        # Pond compresses per call on this header; the Go driver decodes compressed IPC.
        kw["adbc.flight.sql.rpc.call_header.pond-compression"] = compression
    return fs.connect(uri, db_kwargs=kw, autocommit=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- child jobs


def job_fetch(driver, uri, compression, runs, q):
    conn = connect(driver, uri, compression, database="tpch")
    times, rows = [], 0
    base = peak_rss_mb()
    for _ in range(runs):
        with conn.cursor() as cur:
            t0 = time.perf_counter()
            cur.execute("SELECT * FROM lineitem")
            table = cur.fetch_arrow_table()
            times.append(time.perf_counter() - t0)
            rows, nbytes = table.num_rows, table.nbytes
            del table
    conn.close()
    q.put({"times_s": times, "rows": rows, "arrow_bytes": nbytes, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": base})


def job_stream(driver, uri, q):
    conn = connect(driver, uri, None, database="tpch")
    base = peak_rss_mb()
    with conn.cursor() as cur:
        t0 = time.perf_counter()
        cur.execute("SELECT * FROM lineitem")
        rows = sum(b.num_rows for b in cur.fetch_record_batch())
        took = time.perf_counter() - t0
    conn.close()
    q.put({"time_s": took, "rows": rows, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": base})


def job_latency(driver, uri, n, q):
    conn = connect(driver, uri)
    cur = conn.cursor()
    for _ in range(50):
        cur.execute("SELECT 1")
        cur.fetchall()
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        cur.execute("SELECT 1")
        cur.fetchall()
        lat.append(time.perf_counter() - t0)
    cur.close()
    conn.close()
    q.put({"latencies_s": lat})


def job_cycles(driver, uri, n, q):
    def cycle():
        conn = connect(driver, uri)
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
        conn.close()

    for _ in range(20):
        cycle()
    t0 = time.perf_counter()
    for _ in range(n):
        cycle()
    took = time.perf_counter() - t0
    q.put({"cycles": n, "time_s": took, "per_s": n / took})


def in_child(target, *args, timeout=1800):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    try:
        out = q.get(timeout=timeout)
    finally:
        p.join(60)
    return out


# ----------------------------------------------------------------------------- set-up


def pct(values, p):
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next((int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), 0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    import adbc_driver_flightsql
    import adbc_driver_manager
    import pyarrow

    return {"cores": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem / 2**20, 1), "kernel": platform.release(),
            "python": platform.python_version(), "pyarrow": pyarrow.__version__,
            "adbc_driver_manager": adbc_driver_manager.__version__, "adbc_driver_flightsql": adbc_driver_flightsql.__version__,
            "loadavg": open("/proc/loadavg").read().split()[0], "commit": commit, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def start_pond(sf: float, ext_dir: Path) -> PondServer:
    data = CACHE / f"adbc-sf{sf:g}" / "data"
    server = PondServer(data_dir=data, password=PASSWORD, extensions="icu,tpch", ext_dir=ext_dir)
    server.start(timeout=300)
    conn = connect("pond", server.flight_uri)
    with conn.cursor() as cur:
        try:
            cur.execute("SELECT count(*) FROM tpch.main.lineitem")
            n = cur.fetchone()[0]
        except Exception:  # noqa: BLE001 - not generated yet
            n = 0
    conn.close()
    if n == 0:
        log(f"generating TPC-H SF{sf:g} inside Pond (database tpch)")
        conn = connect("pond", server.flight_uri)
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS tpch")
            cur.execute("CREATE DATABASE tpch")
        conn.close()
        conn = connect("pond", server.flight_uri, database="tpch")
        with conn.cursor() as cur:
            cur.execute(f"CALL dbgen(sf={sf})")
        conn.close()
    return server


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    sf = 0.1 if args.quick else 1.0
    runs = 2 if args.quick else 5
    n_lat = 200 if args.quick else 1000
    n_cycles = 100 if args.quick else 500
    ext_dir = ensure_extensions(["icu", "tpch"])
    server = start_pond(sf, ext_dir)
    uri = server.flight_uri
    res: dict = {"machine": machine(), "sf": sf, "fetch": {}, "stream": {}, "latency": {}, "cycles": {}}
    try:
        # Rounds alternate the drivers (one fetch per child process), so that
        # load from other processes on a shared machine hits both alike.
        for comp in (None, "lz4", "zstd"):
            for r in range(runs):
                for drv in ("pond", "go"):
                    log(f"fetch lineitem: {drv} compression={comp or 'none'} round {r + 1}/{runs}")
                    one = in_child(job_fetch, drv, uri, comp, 1)
                    acc = res["fetch"].setdefault(f"{drv}/{comp or 'none'}", {**one, "times_s": [], "peak_rss_mb": 0.0})
                    acc["times_s"] += one["times_s"]
                    acc["peak_rss_mb"] = max(acc["peak_rss_mb"], one["peak_rss_mb"])
        for drv in ("pond", "go"):
            log(f"stream lineitem batch by batch: {drv}")
            res["stream"][drv] = in_child(job_stream, drv, uri)
            log(f"{n_lat} x SELECT 1: {drv}")
            res["latency"][drv] = in_child(job_latency, drv, uri, n_lat)
            log(f"{n_cycles} connect+query+close: {drv}")
            res["cycles"][drv] = in_child(job_cycles, drv, uri, n_cycles)
    finally:
        server.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "adbc.json").write_text(json.dumps(res, indent=1))
    md = render(res)
    (RESULTS / "adbc.md").write_text(md)
    print(md)


def render(res: dict) -> str:
    m = res["machine"]
    lines = [f"# ADBC drivers: Pond (Rust) vs adbc-driver-flightsql {m['adbc_driver_flightsql']} (Go)", "",
             f"{m['date_utc']}, commit {m['commit']}, {m['cores']} cores ({m['cpu']}), {m['mem_gib']} GiB, kernel {m['kernel']}, "
             f"Python {m['python']}, pyarrow {m['pyarrow']}, adbc-driver-manager {m['adbc_driver_manager']}. "
             f"Client and server on the same machine; load average at the start {m.get('loadavg', '?')}. TPC-H SF{res['sf']:g}. "
             "Each fetch runs in a new process (connect included); rounds alternate the drivers.", "",
             "| measurement | Pond driver | Go driver | Pond / Go |", "|---|---|---|---|"]
    for comp in ("none", "lz4", "zstd"):
        p, g = res["fetch"][f"pond/{comp}"], res["fetch"][f"go/{comp}"]
        pm, gm = statistics.median(p["times_s"]), statistics.median(g["times_s"])
        lines.append(f"| fetch lineitem ({p['rows']:,} rows) to an Arrow table, compression {comp}, median of {len(p['times_s'])} | "
                     f"{pm:.3f} s | {gm:.3f} s | **{pm / gm:.2f}×** time |")
    p, g = res["fetch"]["pond/none"], res["fetch"]["go/none"]
    lines.append(f"| client peak RSS during that fetch (table {p['arrow_bytes'] / 2**20:.0f} MiB) | {p['peak_rss_mb']:.0f} MB | "
                 f"{g['peak_rss_mb']:.0f} MB | {p['peak_rss_mb'] / g['peak_rss_mb']:.2f}× |")
    p, g = res["stream"]["pond"], res["stream"]["go"]
    lines.append(f"| stream lineitem batch by batch: time / client peak RSS | {p['time_s']:.3f} s / {p['peak_rss_mb']:.0f} MB | "
                 f"{g['time_s']:.3f} s / {g['peak_rss_mb']:.0f} MB | {p['time_s'] / g['time_s']:.2f}× / {p['peak_rss_mb'] / g['peak_rss_mb']:.2f}× |")
    p, g = res["latency"]["pond"]["latencies_s"], res["latency"]["go"]["latencies_s"]
    lines.append(f"| {len(p):,} × `SELECT 1` (execute + fetchall) p50 | {pct(p, 50) * 1e3:.3f} ms | {pct(g, 50) * 1e3:.3f} ms | "
                 f"**{pct(g, 50) / pct(p, 50):.2f}× faster** |")
    lines.append(f"| same, p99 | {pct(p, 99) * 1e3:.3f} ms | {pct(g, 99) * 1e3:.3f} ms | {pct(g, 99) / pct(p, 99):.2f}× faster |")
    p, g = res["cycles"]["pond"], res["cycles"]["go"]
    lines.append(f"| connect + `SELECT 1` + close (new database object each time) | {p['per_s']:.0f}/s | {g['per_s']:.0f}/s | "
                 f"**{p['per_s'] / g['per_s']:.2f}×** |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
