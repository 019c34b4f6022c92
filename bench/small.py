#!/usr/bin/env python3
"""Small statements (issue 18): Pond next to DuckDB's own cost and DuckDB's Quack protocol, in one run.

    .venv/bin/python bench/small.py            # ~6 minutes
    .venv/bin/python bench/small.py --quick    # shorter runs (~2 minutes)
    (or: bash bench/small.sh, which builds first)

Sections, all side by side in the same run on the same machine:
  1. point selects: DuckDB in process (prepared, 2 threads, file database) vs pgbench over Pond's PG wire
     (8 clients, -M simple and -M prepared) as a superuser and as a user holding only a table grant;
  2. `SELECT 1` latency: Flight SQL from a Rust client (GetFlightInfo + DoGet), HTTP /api/v1/query with keep-alive;
  3. single-row INSERT transactions (autocommit, and BEGIN; INSERT; COMMIT), 1 and 8 clients: DuckDB in process
     on a file database, Pond over Flight SQL (Rust client) and over PG wire (pgbench), DuckDB's Quack protocol.

Needs `cargo build --release --workspace --all-targets` (pond + examples latency, small_statements,
duckdb_point_floor), pgbench, and the venv's duckdb==1.5.5 (Quack). Results: bench/results/small.json and small.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))
sys.path.insert(0, str(ROOT / "bench"))

from pond_server import PondServer, ensure_extensions, pond_bin  # noqa: E402

import pgwire as bench_pgwire  # noqa: E402
import run as bench_run  # noqa: E402

PASSWORD = bench_run.PASSWORD
READER_PASSWORD = "bench-reader-pw"
ACCOUNTS = 100_000
RESULTS = ROOT / "bench" / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def example(name: str) -> Path:
    exe = pond_bin().parent / "examples" / name
    if not exe.exists():
        raise RuntimeError(f"{exe} not built: cargo build --release --workspace --all-targets")
    return exe


def run_json(args: list[str], env: dict | None = None, timeout: float = 900) -> dict:
    out = subprocess.run([str(a) for a in args], env={**os.environ, **(env or {})}, capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {out.stderr.strip()[-800:]}")
    return json.loads(out.stdout)


def pgbench(host: str, port: int, user: str, password: str, db: str, script: str, mode: str, seconds: float,
            clients: int) -> dict:
    r = bench_pgwire.pgbench(host, port, user, password, db, mode, int(seconds), clients, script=script)
    if r["failed"]:
        raise RuntimeError(f"pgbench: {r['failed']} failed transactions ({user}, -M {mode})")
    return r


# ----------------------------------------------------------------------------- Quack


def quack_inserts(quack: bench_run.Quack, clients: int, seconds: float, tx: bool) -> dict:
    """The same single-row inserts through Quack, one duckdb client connection per thread (duckdb
    releases the GIL while a statement runs)."""
    cons = [quack.client() for _ in range(clients)]
    counts, lat, errors = [0] * clients, [[] for _ in range(clients)], []
    start = time.perf_counter() + 0.2

    def work(c: int) -> None:
        con = cons[c]
        try:
            while time.perf_counter() < start:
                time.sleep(0.0005)
            end = start + seconds
            n = 0
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                sql = f"INSERT INTO r.ins VALUES ({c}, {n}, 'payload-{n}')"
                if tx:
                    con.execute("BEGIN")
                    con.execute(sql)
                    con.execute("COMMIT")
                else:
                    con.execute(sql)
                lat[c].append((time.perf_counter() - t0) * 1e6)
                n += 1
            counts[c] = n
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for con in cons:
        con.close()
    if errors:
        return {"error": errors[0][:400]}
    samples = sorted(x for per in lat for x in per)
    total = sum(counts)
    return {"transactions": total, "tx_per_s": total / elapsed, "p50_us": bench_run.pct(samples, 50),
            "p99_us": bench_run.pct(samples, 99)}


# ----------------------------------------------------------------------------- sections


def point_selects(pond: PondServer, seconds: float, work: Path) -> dict:
    out: dict = {}
    floor = run_json([example("duckdb_point_floor"), seconds, ACCOUNTS, work / "floor.duckdb"])
    out["duckdb_in_process"] = floor
    log(f"DuckDB in process, prepared point select: {floor['threads_1']['qps']:.0f} qps (1 thread), "
        f"{floor['threads_2']['qps']:.0f} (2 threads)")
    host, port = pond.pg_host_port
    script = f"\\set aid random(1, {ACCOUNTS})\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
    for mode in ("simple", "prepared"):
        for who, user, pw in (("superuser", "admin", PASSWORD), ("table_grant", "bench_reader", READER_PASSWORD)):
            r = pgbench(host, port, user, pw, "default", script, mode, seconds, clients=8)
            r["vs_duckdb_2_threads"] = r["tps"] / floor["threads_2"]["qps"]
            out[f"pgbench_{mode}_{who}"] = r
            log(f"pgbench -M {mode} -c 8 as {who}: {r['tps']:.0f} tps ({r['vs_duckdb_2_threads']:.2f}x DuckDB)")
    return out


def select_one(pond: PondServer, n: int) -> dict:
    env = {"POND_PASSWORD": PASSWORD}
    out = {"flight_rust": run_json([example("latency"), pond.flight_addr, n], env)}
    log(f"Flight SQL SELECT 1 (Rust client): p50 {out['flight_rust']['p50_us']:.0f} us, p99 {out['flight_rust']['p99_us']:.0f} us")
    out["flight_noop"] = run_json([example("small_statements"), "flight-noop", pond.flight_addr, n], env)
    out["duckdb_select_1"] = run_json([example("small_statements"), "duckdb-select", n])
    log(f"  floors: two Flight round trips without DuckDB (GetSqlInfo + DoGet) p50 {out['flight_noop']['p50_us']:.0f} us; "
        f"DuckDB in process SELECT 1 p50 {out['duckdb_select_1']['default_threads']['p50_us']:.0f} us "
        f"({out['duckdb_select_1']['threads_1']['p50_us']:.0f} us with 1 thread)")
    out["flight_rust_table_grant"] = run_json([example("latency"), pond.flight_addr, n],
                                              {"POND_PASSWORD": READER_PASSWORD, "POND_USER": "bench_reader"})
    log(f"  as the table-grant user: p50 {out['flight_rust_table_grant']['p50_us']:.0f} us")
    out["http_keepalive"] = run_json([example("small_statements"), "http-select", pond.http_addr, n], env)
    log(f"HTTP /api/v1/query SELECT 1 (keep-alive): p50 {out['http_keepalive']['p50_us']:.0f} us, "
        f"p99 {out['http_keepalive']['p99_us']:.0f} us")
    return out


def inserts(pond: PondServer, seconds: float, work: Path, ext_dir: Path) -> dict:
    import psycopg

    out: dict = {}
    host, port = pond.pg_host_port
    env = {"POND_PASSWORD": PASSWORD}
    with psycopg.connect(host=host, port=port, user="admin", password=PASSWORD, dbname="default", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS bench_ins")
        c.execute("CREATE DATABASE bench_ins")
        c.execute("CREATE TABLE bench_ins.main.ins (client INTEGER, n BIGINT, payload VARCHAR)")
    quack = bench_run.Quack(work / "quack.duckdb", ext_dir, writable=True)
    quack.start()
    try:
        for clients in (1, 8):
            for tx in (False, True):
                key = f"{'tx' if tx else 'autocommit'}_{clients}"
                row: dict = {}
                mode = "tx" if tx else "auto"
                db = work / f"inproc_{key}.duckdb"
                row["duckdb_in_process"] = run_json([example("small_statements"), "duckdb-insert", db, clients, seconds, mode])
                row["pond_flight"] = run_json([example("small_statements"), "flight-insert", pond.flight_addr, clients, seconds,
                                               mode, "bench_ins.main.ins"], env)
                body = "INSERT INTO bench_ins.main.ins VALUES (:client_id, :n, 'payload');\n"
                script = "\\set n random(1, 1000000000)\n" + (f"BEGIN;\n{body}COMMIT;\n" if tx else body)
                row["pond_pgwire"] = pgbench(host, port, "admin", PASSWORD, "default", script, "simple", seconds, clients)
                row["quack"] = quack_inserts(quack, clients, seconds, tx)
                base = row["duckdb_in_process"]["tx_per_s"]
                for k in ("pond_flight", "pond_pgwire", "quack"):
                    if "tps" in row[k]:
                        row[k]["tx_per_s"] = row[k]["tps"]
                    if "tx_per_s" in row[k]:
                        row[k]["vs_in_process"] = row[k]["tx_per_s"] / base
                out[key] = row
                log(f"INSERT {key}: in-process {base:.0f}/s, Flight {row['pond_flight']['tx_per_s']:.0f}/s, "
                    f"PG wire {row['pond_pgwire']['tx_per_s']:.0f}/s, Quack "
                    + (f"{row['quack']['tx_per_s']:.0f}/s" if "tx_per_s" in row["quack"] else row["quack"].get("error", "?")))
    finally:
        quack.stop()
    return out


# ----------------------------------------------------------------------------- report


def render(r: dict) -> str:
    m = r["machine"]
    lines = [f"# Small statements ({r['started']}, commit {r['commit']})", "",
             f"Machine: {m.get('cpu_cores')} cores {m.get('cpu_model', '')}, {m.get('ram_gib', '?')} GiB, kernel {m.get('kernel')}; "
             f"load average before the run {r.get('loadavg', '?')}. Client and server on one machine (loopback); "
             f"{r['seconds_per_run']} s per throughput run.", ""]
    p = r.get("point_selects", {})
    if "duckdb_in_process" in p:
        f = p["duckdb_in_process"]
        lines += ["## 1. Point selects: `SELECT abalance FROM pgbench_accounts WHERE aid = :aid` (100K rows, `aid` primary key)", "",
                  "| | queries/s | / DuckDB in process (2 threads) |", "|---|---|---|",
                  f"| DuckDB in process, prepared, 1 thread | {f['threads_1']['qps']:,.0f} | {f['threads_1']['qps'] / f['threads_2']['qps']:.2f} |",
                  f"| DuckDB in process, prepared, 2 threads | {f['threads_2']['qps']:,.0f} | 1.00 |"]
        for k, v in p.items():
            if k.startswith("pgbench_"):
                _, mode, *who = k.split("_")
                lines.append(f"| Pond PG wire, pgbench -M {mode}, 8 clients, {' '.join(who).replace('table grant', 'user with one table grant')} "
                             f"| {v['tps']:,.0f} | **{v['vs_duckdb_2_threads']:.2f}** |")
        lines.append("")
    s = r.get("select_one", {})
    if s:
        lines += ["## 2. `SELECT 1` latency (one connection)", "", "| client | p50 | p90 | p99 |", "|---|---|---|---|"]
        for k, label in (("flight_rust", "Flight SQL, Rust client (GetFlightInfo + DoGet), superuser"),
                         ("flight_rust_table_grant", "Flight SQL, Rust client, user with one table grant"),
                         ("http_keepalive", "HTTP POST /api/v1/query, keep-alive, bearer token"),
                         ("flight_noop", "floor: GetSqlInfo + DoGet (two Flight round trips, no DuckDB)")):
            if k in s:
                v = s[k]
                lines.append(f"| {label} | {v['p50_us']:.0f} µs | {v['p90_us']:.0f} µs | {v['p99_us']:.0f} µs |")
        for k, label in (("default_threads", "floor: DuckDB in process, prepare + execute + Arrow, default threads"),
                         ("threads_1", "floor: DuckDB in process, the same with `SET threads = 1`")):
            v = s.get("duckdb_select_1", {}).get(k)
            if v:
                lines.append(f"| {label} | {v['p50_us']:.0f} µs | {v['p90_us']:.0f} µs | {v['p99_us']:.0f} µs |")
        if "flight_noop" in s and "duckdb_select_1" in s:
            floor = s["flight_noop"]["p50_us"] + s["duckdb_select_1"]["default_threads"]["p50_us"]
            lines.append("")
            lines.append(f"Flight `SELECT 1` p50 / (round-trip floor + DuckDB floor, {floor:.0f} µs): "
                         f"**{s['flight_rust']['p50_us'] / floor:.2f}**.")
        lines.append("")
    ins = r.get("inserts", {})
    if ins:
        lines += ["## 3. Single-row INSERT transactions (`INSERT INTO ins VALUES (client, n, 'payload')`, file databases)", "",
                  "| clients | kind | DuckDB in process | Pond Flight SQL | Pond PG wire | Quack | Flight / in-process | PG wire / in-process | Flight / Quack | PG wire / Quack |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for key, row in ins.items():
            kind, clients = key.rsplit("_", 1)
            q = row["quack"].get("tx_per_s")
            fl, pg, base = row["pond_flight"]["tx_per_s"], row["pond_pgwire"]["tx_per_s"], row["duckdb_in_process"]["tx_per_s"]
            qs = f"{q:,.0f}/s" if q else f"error: {row['quack'].get('error', '?')[:80]}"
            lines.append(f"| {clients} | {kind} | {base:,.0f}/s | {fl:,.0f}/s | {pg:,.0f}/s | {qs} | {fl / base:.2f} | {pg / base:.2f} "
                         f"| {fl / q if q else float('nan'):.2f} | {pg / q if q else float('nan'):.2f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s runs, 1,000 latency samples")
    ap.add_argument("--only", choices=["point_selects", "select_one", "inserts"], action="append")
    ap.add_argument("--out", default="small", help="result file name under bench/results")
    args = ap.parse_args()
    seconds = 3 if args.quick else 10
    samples = 1000 if args.quick else 5000
    ext_dir = ensure_extensions(["icu", "httpfs", "quack"])
    work = Path(tempfile.mkdtemp(prefix="pond-bench-small-"))
    res: dict = {"machine": bench_run.machine_info(), "started": dt.datetime.utcnow().isoformat(timespec="seconds") + "Z",
                 "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                          text=True).stdout.strip(), "seconds_per_run": seconds,
                 "loadavg": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    pond = PondServer(data_dir=work / "data", password=PASSWORD, extensions="icu", ext_dir=ext_dir)
    try:
        pond.start(timeout=300)
        import psycopg

        host, port = pond.pg_host_port
        with psycopg.connect(host=host, port=port, user="admin", password=PASSWORD, dbname="default", autocommit=True) as c:
            c.execute("CREATE TABLE pgbench_accounts (aid INTEGER PRIMARY KEY, bid INTEGER, abalance INTEGER, filler CHAR(84))")
            c.execute(f"INSERT INTO pgbench_accounts SELECT range, (range - 1) // 100000 + 1, range % 1000, '' "
                      f"FROM range(1, {ACCOUNTS} + 1)")
            c.execute(f"CREATE USER bench_reader PASSWORD '{READER_PASSWORD}'")
            c.execute("GRANT SELECT ON TABLE default.main.pgbench_accounts TO bench_reader")
        sections = {"point_selects": lambda: point_selects(pond, seconds, work),
                    "select_one": lambda: select_one(pond, samples),
                    "inserts": lambda: inserts(pond, seconds, work, ext_dir)}
        for name, fn in sections.items():
            if args.only and name not in args.only:
                continue
            res[name] = fn()
    finally:
        pond.stop()
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(res, indent=2) + "\n")
    md = render(res)
    (RESULTS / f"{args.out}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
