#!/usr/bin/env python3
"""Backup and restore throughput, in one run, next to a plain file copy.

Starts its own `pond serve` ($POND_BIN) with `--backup-to`, loads a database
table (ROWS rows, ~40 bytes each) and LINES line-protocol points flushed to
the lake, then measures:
- a full online backup (`POST /api/v1/backup`): seconds, MB/s of what it
  wrote, and how long flushes were held for the lake's copy;
- the same bytes copied by `cp -a` of the data dir (the disk's own rate);
- write-acknowledgement latency (one line-protocol writer, a write every
  20 ms) while the backup runs vs before it;
- an incremental backup right after (new Parquet files only, databases whole);
- `pond restore --check` and `pond restore` into a new directory.
Writes bench/results/backup.md and .json with the machine it ran on.

    .venv/bin/python bench/backup.py [--rows 20000000] [--lines 2000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
from pond_server import PondServer, pond_bin  # noqa: E402

PASSWORD = "bench-admin-pw-1"
AUTH = ("admin", PASSWORD)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def sql(s: requests.Session, url: str, text: str) -> dict:
    r = s.post(f"{url}/api/v1/query", json={"sql": text}, timeout=3600)
    r.raise_for_status()
    return r.json()


class Writer(threading.Thread):
    """One client writing a small line-protocol batch every 20 ms; latencies in ms."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop, self.lat, self.n = url, threading.Event(), [], 0

    def run(self) -> None:
        s = requests.Session()
        s.auth = AUTH
        while not self.stop.is_set():
            body = "\n".join(f"probe,w=w{i} v={self.n + i}i {1_800_000_000 + self.n + i}000000000" for i in range(10))
            t0 = time.perf_counter()
            r = s.post(f"{self.url}/write?db=probe", data=body, timeout=60)
            self.lat.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 204, r.text
            self.n += 10
            time.sleep(0.02)

    def take(self) -> list[float]:
        out, self.lat = self.lat, []
        return out


def pct(v: list[float], p: float) -> float:
    v = sorted(v)
    return round(v[min(len(v) - 1, int(len(v) * p))], 1) if v else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--lines", type=int, default=2_000_000)
    args = ap.parse_args()
    ext = Path(os.environ.get("POND_EXTENSION_DIR", os.path.expanduser("~/.cache/pond/extensions")))
    tmp = Path(tempfile.mkdtemp(prefix="pond-backup-bench-"))
    target = tmp / "bk"
    server = PondServer(data_dir=tmp / "data", ext_dir=ext, password=PASSWORD,
                        extra_args=["--backup-to", str(target), "--lake-compact-interval-secs", "0",
                                    "--ingest-flush-rows", "500000"]).start()
    env = dict(os.environ, POND_PASSWORD=PASSWORD)
    res: dict = {}
    try:
        s = requests.Session()
        s.auth = AUTH
        url = server.http_url
        sql(s, url, "CREATE DATABASE sales")
        sql(s, url, f"CREATE TABLE sales.main.orders AS SELECT range AS id, (range * 7) % 1000 AS qty, "
                    f"(range % 9973) / 100.0 AS price, 'note ' || (range % 5000) AS note FROM range({args.rows})")
        batch = []
        for i in range(args.lines):
            batch.append(f"cpu,host=h{i % 500:03d} usage={i % 100}.5,idle={(i * 3) % 100}i {1_700_000_000 + i}000000000")
            if len(batch) == 50_000:
                s.post(f"{url}/write?db=metrics", data="\n".join(batch), timeout=120).raise_for_status()
                batch = []
        if batch:
            s.post(f"{url}/write?db=metrics", data="\n".join(batch), timeout=120).raise_for_status()
        s.post(f"{url}/api/v1/lake/flush", timeout=600).raise_for_status()
        sql(s, url, "CHECKPOINT sales")
        data = tmp / "data"
        res["data_dir_bytes"] = du(data)
        res["lake_files"] = len(list((data / "lake" / "data").rglob("*.parquet")))

        # The disk's own rate on the same bytes.
        t0 = time.perf_counter()
        subprocess.run(["cp", "-a", str(data), str(tmp / "plain-copy")], check=True)
        subprocess.run(["sync", "-f", str(tmp / "plain-copy")], check=True)
        res["cp_seconds"] = round(time.perf_counter() - t0, 2)
        shutil.rmtree(tmp / "plain-copy")

        w = Writer(url)
        w.start()
        time.sleep(5)
        before = w.take()
        t0 = time.perf_counter()
        r = s.post(f"{url}/api/v1/backup", json={}, timeout=3600)
        r.raise_for_status()
        full = r.json()
        full["wall_seconds"] = round(time.perf_counter() - t0, 2)
        during = w.take()
        # More lake data, then the incremental one.
        s.post(f"{url}/api/v1/lake/flush", timeout=600).raise_for_status()
        t0 = time.perf_counter()
        r = s.post(f"{url}/api/v1/backup", json={}, timeout=3600)
        r.raise_for_status()
        inc = r.json()
        inc["wall_seconds"] = round(time.perf_counter() - t0, 2)
        w.stop.set()
        w.join()
        res["full"], res["incremental"] = full, inc
        res["write_latency_ms"] = {
            "before": {"n": len(before), "p50": pct(before, 0.5), "p99": pct(before, 0.99)},
            "during_full_backup": {"n": len(during), "p50": pct(during, 0.5), "p99": pct(during, 0.99)},
        }
        expected = sql(s, url, "SELECT count(*), sum(qty) FROM sales.main.orders")["data"]
        expected_cpu = sql(s, url, "SELECT count(*) FROM metrics.cpu")["data"]
    finally:
        server.stop()

    # DuckDB's own logical copy of the same database file, in process: the
    # floor of an online copy that lets writers go on.
    import duckdb
    biggest = max((tmp / "data" / "databases").glob("*.duckdb"), key=lambda p: p.stat().st_size)
    c = duckdb.connect()
    c.execute(f"ATTACH '{biggest}' AS src (READ_ONLY)")
    c.execute(f"ATTACH '{tmp / 'duck-copy.duckdb'}' AS dst")
    t0 = time.perf_counter()
    c.execute("COPY FROM DATABASE src TO dst")
    c.execute("DETACH dst")
    res["duckdb_copy_seconds"] = round(time.perf_counter() - t0, 2)
    c.close()

    t0 = time.perf_counter()
    subprocess.run([str(pond_bin()), "restore", "--from", str(target), "--check"], check=True, env=env, capture_output=True)
    res["check_seconds"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    subprocess.run([str(pond_bin()), "restore", "--from", str(target), "--data-dir", str(tmp / "restored")],
                   check=True, env=env, capture_output=True)
    res["restore_seconds"] = round(time.perf_counter() - t0, 2)
    restored = PondServer(data_dir=tmp / "restored", ext_dir=ext, password=PASSWORD).start()
    try:
        s = requests.Session()
        s.auth = AUTH
        assert sql(s, restored.http_url, "SELECT count(*), sum(qty) FROM sales.main.orders")["data"] == expected
        # The last backup is the incremental one, taken after the probe writes.
        assert sql(s, restored.http_url, "SELECT count(*) FROM metrics.cpu")["data"] == expected_cpu
    finally:
        restored.stop()
    shutil.rmtree(tmp, ignore_errors=True)

    mb = 1e6
    full = res["full"]
    res["full_mb_per_s"] = round(full["bytes_copied"] / mb / full["seconds"], 1)
    res["cp_mb_per_s"] = round(res["data_dir_bytes"] / mb / res["cp_seconds"], 1)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    machine = {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()[0],
               "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}
    out = {"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit, "machine": machine,
           "rows": args.rows, "lines": args.lines, **res}
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "backup.json").write_text(json.dumps(out, indent=2) + "\n")
    wl = res["write_latency_ms"]
    inc = res["incremental"]
    md = [f"# Backup and restore ({out['at']}, commit {commit}; {cpu}, {machine['cpus']} cores, {machine['mem_gib']} GiB, "
          f"load average {machine['load_avg']:.1f})", "",
          f"Data dir {res['data_dir_bytes'] / mb:,.0f} MB: a {args.rows:,}-row table and {args.lines:,} points "
          f"in {res['lake_files']} lake Parquet files. One server, one target directory on the same disk.", "",
          "| measurement | value |", "|---|---|",
          f"| full online backup | {full['seconds']:.2f} s, {full['bytes_copied'] / mb:,.0f} MB written = "
          f"**{res['full_mb_per_s']} MB/s** |",
          f"| `cp -a` of the data dir + sync (same bytes, the disk's rate) | {res['cp_seconds']:.2f} s = {res['cp_mb_per_s']} MB/s |",
          f"| backup / cp time | {full['seconds'] / res['cp_seconds']:.2f}× |",
          f"| DuckDB's own `COPY FROM DATABASE` of the table's database, in process | {res['duckdb_copy_seconds']:.2f} s |",
          f"| backup / DuckDB's copy time | {full['seconds'] / res['duckdb_copy_seconds']:.2f}× |",
          f"| flushes held during the full backup | {full['lake_pause_seconds'] * 1000:.0f} ms |",
          f"| incremental backup right after | {inc['seconds']:.2f} s, {inc['bytes_copied'] / mb:,.0f} MB written, "
          f"{inc['bytes_reused'] / mb:,.0f} MB reused; flushes held {inc['lake_pause_seconds'] * 1000:.0f} ms |",
          f"| write ack latency before (p50 / p99) | {wl['before']['p50']} / {wl['before']['p99']} ms ({wl['before']['n']} writes) |",
          f"| write ack latency during the full backup (p50 / p99) | {wl['during_full_backup']['p50']} / "
          f"{wl['during_full_backup']['p99']} ms ({wl['during_full_backup']['n']} writes) |",
          f"| `pond restore --check` (reads and hashes every object) | {res['check_seconds']:.2f} s |",
          f"| `pond restore` into a new directory (check included) | {res['restore_seconds']:.2f} s |",
          "", "The restored server answered the table's count/sum and the measurement's count as the original did."]
    (ROOT / "bench" / "results" / "backup.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
