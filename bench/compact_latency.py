#!/usr/bin/env python3
"""Acknowledgement latency of writes while a compaction runs, side by side for
two binaries (this build and, with --before PATH, an older one).

Usage: .venv/bin/python bench/compact_latency.py [--before PATH] [--files 200]

Per binary: a fresh `pond serve` gets FILES small flushes (1,000 rows each, so
FILES files per day to merge), then a probe client writes 1,000-line bodies
back to back on one connection while `POST /api/v1/lake/compact` runs; the
latencies of the writes sent during the compaction are reported (p50/p99/max)
next to those of the same probe with no compaction.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))
from pond_server import PondServer, ensure_extensions  # noqa: E402

PASSWORD = "bench-Secret-12"
AUTH = ("admin", PASSWORD)
BASE = 1_704_067_200_000_000_000


def body(start: int, n: int = 1000) -> bytes:
    return "\n".join(f"cpu,host=h{i % 50} v={i * 0.5} {BASE + i * 1_000_000}" for i in range(start, start + n)).encode()


def pct(v: list[float], p: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(len(s) * p / 100))] if s else float("nan")


def probe(url: str, stop: threading.Event, out: list[tuple[float, float]], start: int) -> None:
    sess = requests.Session()
    i = start
    while not stop.is_set():
        t0 = time.perf_counter()
        r = sess.post(f"{url}/write?db=c", auth=AUTH, data=body(i), timeout=120)
        out.append((t0, time.perf_counter() - t0))
        assert r.status_code == 204, r.text
        i += 1000


def run(binary: str | None, files: int, ext_dir: Path) -> dict:
    env_bin = os.environ.get("POND_BIN")
    if binary:
        os.environ["POND_BIN"] = binary
    try:
        with tempfile.TemporaryDirectory() as d:
            s = PondServer(data_dir=Path(d) / "data", ext_dir=ext_dir, password=PASSWORD,
                           extra_args=["--lake-compact-interval-secs", "0", "--lake-cleanup-grace-secs", "0",
                                       "--ingest-flush-rows", "1000000000"]).start()
            try:
                for k in range(files):
                    requests.post(f"{s.http_url}/write?db=c", auth=AUTH, data=body(k * 1000), timeout=60)
                    requests.post(f"{s.http_url}/api/v1/lake/flush?db=c", auth=AUTH, timeout=60)
                # Baseline: the probe alone for 5 s.
                base: list[tuple[float, float]] = []
                stop = threading.Event()
                t = threading.Thread(target=probe, args=(s.http_url, stop, base, 10_000_000))
                t.start(); time.sleep(5); stop.set(); t.join()
                # During a compaction.
                during: list[tuple[float, float]] = []
                stop = threading.Event()
                t = threading.Thread(target=probe, args=(s.http_url, stop, during, 20_000_000))
                t.start(); time.sleep(1)
                c0 = time.perf_counter()
                r = requests.post(f"{s.http_url}/api/v1/lake/compact?db=c", auth=AUTH, timeout=600)
                c1 = time.perf_counter()
                stop.set(); t.join()
                assert r.status_code == 200, r.text
                lat = [x[1] * 1000 for x in during if c0 <= x[0] <= c1]
                b = [x[1] * 1000 for x in base]
                return {"compaction_s": c1 - c0, "writes_during": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99),
                        "max": max(lat, default=float("nan")), "base_p50": pct(b, 50), "base_p99": pct(b, 99)}
            finally:
                s.stop()
    finally:
        if env_bin is None:
            os.environ.pop("POND_BIN", None)
        else:
            os.environ["POND_BIN"] = env_bin


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before")
    ap.add_argument("--files", type=int, default=200)
    a = ap.parse_args()
    ext_dir = ensure_extensions(["ducklake"])
    runs = [("this build", None)] + ([("before", a.before)] if a.before else [])
    print(f"load average: {open('/proc/loadavg').read().split()[:3]}; {a.files} flushes of 1,000 rows before the compaction")
    for label, b in runs:
        r = run(b, a.files, ext_dir)
        print(f"{label:10s} compaction {r['compaction_s']:.2f} s; acks during it ({r['writes_during']}): p50 {r['p50']:.1f} ms, "
              f"p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms; without compaction p50 {r['base_p50']:.1f} ms, p99 {r['base_p99']:.1f} ms",
              flush=True)


if __name__ == "__main__":
    main()
