"""LINK DATABASE benchmark: a real PostgreSQL 15 (tests/interop/pg_server.py) and a real `pond serve`.

1. Initial copy: `pgbench -i -s SCALE` (SCALE x 100,000 rows in pgbench_accounts, plus
   branches, tellers, an empty history) in PostgreSQL; `LINK DATABASE` timed (rows/s over
   all four tables) against the same four tables copied with DuckDB's postgres_scanner
   (`CREATE TABLE … AS SELECT * FROM pg.public.<t>`): inside Pond after `ATTACH '…' AS pg
   (TYPE postgres)` when Pond allows it, else in the Python duckdb package loading the same
   postgres_scanner extension file (the result says which). Ratio link / scanner (goal >= 0.9).
2. Steady state, per rate R in --rates (changes/s): pgbench at a fixed rate `-R R/2` with a
   custom script of two changes per transaction (an UPDATE of pgbench_accounts by random aid
   and an INSERT into pgbench_history) for --duration seconds while the link streams. A
   probe thread inserts one row into a small probe table every 100 ms and polls Pond (every
   10 ms) until the row is visible: lag = visible in Pond - commit returned in PostgreSQL
   (p50/p99/max; polled over HTTP). SHOW LINKS lag_seconds is sampled every second. After the run: time for
   SYNC DATABASE to drain, and an exact check (counts and sums) of the two tables.
   A rate is "sustained" when pgbench reached >= 95% of it, the probe lag in the last third
   of the run stayed < 5 s and the SYNC after the run took < 5 s.

Writes bench/results/link.md and link.json with the machine it ran on.

    bash bench/link.sh                       # = .venv/bin/python bench/link.py
    .venv/bin/python bench/link.py [--scale 50] [--duration 120] [--rates 5000,10000,20000]
    .venv/bin/python bench/link.py --scale 5 --duration 20 --rates 10000     # quick
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
sys.path.insert(0, str(ROOT / "bench"))
from catalog import machine  # noqa: E402
from pg_server import PostgresServer  # noqa: E402
from pond_server import PondServer, ensure_extensions, extension_file  # noqa: E402

PASSWORD = "bench-admin-pw-1"
TABLES = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pond_conn(pond: PondServer) -> psycopg.Connection:
    host, port = pond.pg_host_port
    return psycopg.connect(host=host, port=port, user="admin", password=PASSWORD, dbname="default", autocommit=True)


def pctl(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def pgbench_bin(pg: PostgresServer) -> str:
    own = pg.bindir / "pgbench"
    return str(own) if own.exists() else (shutil.which("pgbench") or "pgbench")


def pgbench(pg: PostgresServer, db: str, *args: str, timeout: float | None = None) -> str:
    cmd = [pgbench_bin(pg), "-h", str(pg.dir), "-p", str(pg.port), "-U", "postgres", *args, db]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout + r.stderr


# ------------------------------------------------------------------------------------------
# 1. initial copy
# ------------------------------------------------------------------------------------------

def scanner_copy(pg: PostgresServer, db: str, pond: PondServer, work: Path) -> dict:
    """The four tables through postgres_scanner: in Pond if it allows ATTACH … (TYPE postgres), else in Python duckdb."""
    conninfo = f"host=127.0.0.1 port={pg.port} dbname={db} user=postgres password={pg.password}"
    where = "pond"
    with pond_conn(pond) as c:
        try:
            c.execute(f"ATTACH '{conninfo}' AS pgscan (TYPE postgres, READ_ONLY)")
            c.execute("CREATE DATABASE IF NOT EXISTS scancopy")
        except psycopg.Error as e:
            where = f"python duckdb (Pond refused the ATTACH: {str(e).splitlines()[0][:200]})"
        if where == "pond":
            t0 = time.perf_counter()
            for t in TABLES:
                c.execute(f"CREATE OR REPLACE TABLE scancopy.main.{t} AS SELECT * FROM pgscan.public.{t}")
            secs = time.perf_counter() - t0
            c.execute("DETACH pgscan")
            return {"where": where, "seconds": secs}
    import duckdb

    ext = extension_file("postgres_scanner")
    con = duckdb.connect(str(work / "scanner.duckdb"))
    con.execute(f"LOAD '{ext}'")
    con.execute(f"ATTACH '{conninfo}' AS pgscan (TYPE postgres, READ_ONLY)")
    t0 = time.perf_counter()
    for t in TABLES:
        con.execute(f"CREATE OR REPLACE TABLE {t} AS SELECT * FROM pgscan.public.{t}")
    con.execute("CHECKPOINT")
    secs = time.perf_counter() - t0
    con.close()
    return {"where": where, "seconds": secs, "extension": str(ext)}


def initial_copy(pg: PostgresServer, db: str, pond: PondServer, work: Path, runs: int) -> tuple[dict, str]:
    total = sum(pg.execute(f"SELECT count(*) FROM {t}", db=db)[0][0] for t in TABLES)
    link_runs, scan_runs, keep = [], [], None
    for i in range(runs):
        name = f"bench{i}"
        with pond_conn(pond) as c:
            t0 = time.perf_counter()
            cur = c.execute(f"LINK DATABASE {name} TO POSTGRES '{pg.dsn(db=db)}'")
            secs = time.perf_counter() - t0
            answer = dict(zip([d.name for d in cur.description], cur.fetchone()))
            log(f"LINK run {i + 1}: {secs:.1f}s, {answer}")
            link_runs.append({"seconds": secs, "answer": {k: str(v) for k, v in answer.items()}})
            if i < runs - 1:
                c.execute(f"DROP DATABASE {name}")
            else:
                keep = name
        s = scanner_copy(pg, db, pond, work)
        log(f"postgres_scanner run {i + 1} ({s['where']}): {s['seconds']:.1f}s")
        scan_runs.append(s)
    link_s = statistics.median(r["seconds"] for r in link_runs)
    scan_s = statistics.median(r["seconds"] for r in scan_runs)
    res = {"rows": total, "link_seconds": round(link_s, 2), "link_rows_per_sec": round(total / link_s),
           "scanner_seconds": round(scan_s, 2), "scanner_rows_per_sec": round(total / scan_s),
           "ratio_link_vs_scanner": round(scan_s / link_s, 3), "scanner_where": scan_runs[0]["where"],
           "runs": runs, "link_runs": link_runs, "scanner_runs": scan_runs}
    return res, keep


# ------------------------------------------------------------------------------------------
# 2. steady state
# ------------------------------------------------------------------------------------------

class Probe(threading.Thread):
    """Every 100 ms: insert a row into link_probe on the source, then poll Pond until it is there."""

    def __init__(self, pg: PostgresServer, db: str, pond: PondServer, name: str, start_id: int):
        super().__init__(daemon=True)
        self.pg, self.db, self.pond, self.name = pg, db, pond, name
        self.next_id = start_id
        self.samples: list[tuple[float, float]] = []  # (seconds since start, lag)
        self.stop_event = threading.Event()
        self.t0 = time.monotonic()

    def run(self):
        # Polled over HTTP: on a PostgreSQL-wire connection that already ran the same query
        # shape, Pond (9690a0c) kept answering the old result after link applies.
        http = requests.Session()
        url, auth = f"{self.pond.http_url}/api/v1/query", ("admin", PASSWORD)
        with self.pg.connect(self.db) as src:
            while not self.stop_event.is_set():
                started = time.monotonic()
                k = self.next_id
                self.next_id += 1
                src.execute("INSERT INTO link_probe (id) VALUES (%s)", (k,))
                committed = time.monotonic()
                deadline = committed + 30
                sql = f"SELECT count(*) FROM {self.name}.main.link_probe WHERE id = {k}"
                while time.monotonic() < deadline:
                    if http.post(url, auth=auth, json={"sql": sql}, timeout=30).json()["data"][0][0]:
                        break
                    time.sleep(0.01)
                self.samples.append((committed - self.t0, time.monotonic() - committed))
                time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))


class LagSampler(threading.Thread):
    def __init__(self, pond: PondServer, name: str):
        super().__init__(daemon=True)
        self.pond, self.name = pond, name
        self.samples: list[float] = []
        self.states: set[str] = set()
        self.stop_event = threading.Event()

    def run(self):
        with pond_conn(self.pond) as c:
            while not self.stop_event.wait(1.0):
                cur = c.execute("SHOW LINKS")
                cols = [d.name for d in cur.description]
                for r in cur.fetchall():
                    row = dict(zip(cols, r))
                    if row["database"] == self.name:
                        self.states.add(str(row["state"]))
                        if row["lag_seconds"] is not None:
                            self.samples.append(float(row["lag_seconds"]))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def steady(pg: PostgresServer, db: str, pond: PondServer, name: str, rate: int, duration: int, scale: int,
           work: Path, probe_start: int) -> dict:
    script = work / "changes.sql"
    script.write_text(
        f"\\set aid random(1, {100000 * scale})\n\\set bid random(1, {scale})\n\\set tid random(1, {10 * scale})\n"
        "\\set delta random(-5000, 5000)\n"
        "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n"
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);\n")
    tps_target = rate / 2
    probe, sampler = Probe(pg, db, pond, name, probe_start), LagSampler(pond, name)
    probe.start()
    sampler.start()
    out = pgbench(pg, db, "-n", "-M", "prepared", "-f", str(script), "-c", "8", "-j", "2", "-R", str(tps_target), "-T", str(duration),
                  timeout=duration + 300)
    probe.stop_event.set()
    sampler.stop_event.set()
    probe.join(150)
    sampler.join(10)
    t = time.perf_counter()
    with pond_conn(pond) as c:
        c.execute(f"SYNC DATABASE {name}")
    drain = time.perf_counter() - t
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    done = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    lags = [lag for _, lag in probe.samples]
    tail = [lag for at, lag in probe.samples if at >= 2 * duration / 3]
    check = exact_check(pg, db, pond, name)
    achieved = 2 * tps
    res = {"target_changes_per_sec": rate, "achieved_changes_per_sec": round(achieved), "transactions": done,
           "probe_samples": len(lags), "lag_p50_ms": round(1000 * pctl(lags, 50), 1), "lag_p99_ms": round(1000 * pctl(lags, 99), 1),
           "lag_max_ms": round(1000 * max(lags), 1) if lags else None,
           "lag_last_third_max_ms": round(1000 * max(tail), 1) if tail else None,
           "show_links_lag_seconds_p50": round(pctl(sampler.samples, 50), 3) if sampler.samples else None,
           "show_links_lag_seconds_max": round(max(sampler.samples), 3) if sampler.samples else None,
           "states_seen": sorted(sampler.states), "sync_after_run_seconds": round(drain, 2),
           "pond_rss_mib": round(rss_mib(pond.proc.pid)), "exact_after_sync": check,
           "pgbench_latency": re.findall(r"(latency average = .*|rate limit schedule lag: .*)", out)}
    res["sustained"] = bool(achieved >= 0.95 * rate and tail and max(tail) < 5 and drain < 5 and check["equal"])
    return res, probe.next_id


def exact_check(pg: PostgresServer, db: str, pond: PondServer, name: str) -> dict:
    q_src = ("SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT sum(abalance) FROM pgbench_accounts), "
             "(SELECT count(*) FROM pgbench_history), (SELECT coalesce(sum(delta), 0) FROM pgbench_history), "
             "(SELECT count(*) FROM link_probe)")
    src = tuple(int(x) for x in pg.execute(q_src, db=db)[0])
    with pond_conn(pond) as c:
        dst = tuple(int(x) for x in c.execute(q_src.replace("FROM pgbench_", f"FROM {name}.main.pgbench_")
                                                   .replace("FROM link_probe", f"FROM {name}.main.link_probe")).fetchone())
    return {"equal": src == dst, "postgres": src, "pond": dst}


# ------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=50)
    ap.add_argument("--duration", type=int, default=120)
    ap.add_argument("--rates", default="5000,10000,20000", help="changes/s, comma-separated, tried in order")
    ap.add_argument("--copy-runs", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "link"))
    args = ap.parse_args()
    rates = [int(x) for x in args.rates.split(",") if x]
    ext = ensure_extensions(["icu", "postgres_scanner"])
    work = Path(tempfile.mkdtemp(prefix="pond-bench-link-"))
    load_before = os.getloadavg()
    pg = PostgresServer("logical", settings={"shared_buffers": "'1GB'", "max_wal_size": "'8GB'",
                                             "checkpoint_timeout": "'15min'", "synchronous_commit": "on"}).start()
    pond = None
    result: dict = {"machine": machine(), "scale": args.scale, "duration": args.duration,
                    "postgres": {"version": pg.execute("SHOW server_version")[0][0], "fsync": "off", "wal_level": "logical"},
                    "load_average_before": [round(x, 2) for x in load_before]}
    try:
        db = pg.create_database("bench")
        t = time.perf_counter()
        pgbench(pg, db, "-i", "-s", str(args.scale), "-q")
        log(f"pgbench -i -s {args.scale}: {time.perf_counter() - t:.1f}s")
        pg.execute("CREATE TABLE link_probe (id bigint PRIMARY KEY, t timestamptz NOT NULL DEFAULT clock_timestamp())", db=db)
        pg.execute("VACUUM ANALYZE", db=db)
        pond = PondServer(data_dir=work / "data", password=PASSWORD, ext_dir=ext, extensions="icu,postgres_scanner").start()
        log(f"Pond on {pond.pg_addr}; PostgreSQL 15 on 127.0.0.1:{pg.port}")
        copy, name = initial_copy(pg, db, pond, work, args.copy_runs)
        result["copy"] = copy
        log(f"copy: link {copy['link_rows_per_sec']:,} rows/s, scanner {copy['scanner_rows_per_sec']:,} rows/s, "
            f"ratio {copy['ratio_link_vs_scanner']}")
        result["steady"] = []
        probe_id = 1
        for rate in rates:
            log(f"steady state at {rate} changes/s for {args.duration}s")
            r, probe_id = steady(pg, db, pond, name, rate, args.duration, args.scale, work, probe_id)
            log(f"  {r}")
            result["steady"].append(r)
        sustained = [r["target_changes_per_sec"] for r in result["steady"] if r["sustained"]]
        result["highest_sustained_changes_per_sec"] = max(sustained) if sustained else None
    finally:
        result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        if pond is not None:
            pond.stop()
        pg.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    write(result, Path(args.out))
    return 0


def write(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    m, c = result["machine"], result["copy"]
    lines = ["# LINK DATABASE benchmark (PostgreSQL 15 → Pond)\n",
             f"{m['cores']} cores, {m['cpu']}, {m['mem_gib']} GiB, kernel {m['kernel']}, commit {m['commit']}, {m['date_utc']}; "
             f"load average before {result['load_average_before']}, after {result['load_average_after']}; "
             f"PostgreSQL {result['postgres']['version']} (fsync off, wal_level logical) on the same machine\n",
             f"## Initial copy (pgbench -i -s {result['scale']}: {c['rows']:,} rows in the 4 pgbench tables, plus the empty probe table; "
             f"median of {c['runs']})\n",
             "| | seconds | rows/s |", "|---|---|---|",
             f"| LINK DATABASE | {c['link_seconds']} | {c['link_rows_per_sec']:,} |",
             f"| postgres_scanner CREATE TABLE AS ({c['scanner_where']}) | {c['scanner_seconds']} | {c['scanner_rows_per_sec']:,} |",
             "", f"Ratio LINK / postgres_scanner: **{c['ratio_link_vs_scanner']}** (goal ≥ 0.9)\n",
             f"## Steady state ({result['duration']} s per rate; pgbench UPDATE + INSERT per transaction, 8 clients, fixed rate)\n",
             "| target changes/s | achieved | probe lag p50 ms | p99 ms | max ms | SHOW LINKS lag_seconds max | SYNC after run s | exact | sustained |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["steady"]:
        lines.append(f"| {r['target_changes_per_sec']:,} | {r['achieved_changes_per_sec']:,} | {r['lag_p50_ms']} | {r['lag_p99_ms']} | "
                     f"{r['lag_max_ms']} | {r['show_links_lag_seconds_max']} | {r['sync_after_run_seconds']} | "
                     f"{r['exact_after_sync']['equal']} | {r['sustained']} |")
    lines += ["", f"Highest sustained rate: {result.get('highest_sustained_changes_per_sec')} changes/s "
                  "(goal: p99 lag < 1 s at 10,000 changes/s)"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
