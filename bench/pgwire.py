#!/usr/bin/env python3
"""PostgreSQL-wire benchmark: Pond vs a real PostgreSQL 15, side by side in one run.

  (a) pgbench point-select TPS (custom script, random id, 8 clients), -M simple and -M prepared;
  COPY … FROM STDIN of 1M rows (text) into both servers;
  DuckDB's own in-process floor for the same point select (crates/pond/examples/duckdb_point_floor.rs);
  (b) fetching 1M and 6M rows of TPC-H lineitem (SF1) with psycopg 3, text and binary
      results, against PostgreSQL (same rows loaded with COPY) and against Pond's own
      Flight SQL fetch with the ADBC driver.

Usage (from the repository root, after a release build):
    .venv/bin/python bench/pgwire.py            # full run (~10 minutes on 2 cores)
    .venv/bin/python bench/pgwire.py --quick    # 100K/600K rows, shorter pgbench
    .venv/bin/python bench/pgwire.py --pgbench-only [--seconds 10]   # point selects only, no TPC-H data

PostgreSQL: /usr/local/bin/initdb and pg_ctl (Debian's 15), run as the `postgres` user in a
temp dir on a free port, fsync off, shared_buffers 1GB. Pond: `pond serve` ($POND_BIN) on a
copy of bench/run.py's cached TPC-H data dir (generated on first use).
Results: bench/results/pgwire.json and pgwire.md (with machine info); --pgbench-only writes
pgwire_pgbench.json/.md (or --out NAME).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))
sys.path.insert(0, str(ROOT / "bench"))

from pond_server import PondServer, ensure_extensions  # noqa: E402

import run as bench_run  # noqa: E402  (bench/run.py: cached TPC-H data)

PG_BIN = Path("/usr/local/bin")
PASSWORD = bench_run.PASSWORD
RESULTS = ROOT / "bench" / "results"
LINEITEM_DDL = """CREATE TABLE lineitem (l_orderkey bigint, l_partkey bigint, l_suppkey bigint, l_linenumber bigint,
 l_quantity numeric(15,2), l_extendedprice numeric(15,2), l_discount numeric(15,2), l_tax numeric(15,2),
 l_returnflag text, l_linestatus text, l_shipdate date, l_commitdate date, l_receiptdate date,
 l_shipinstruct text, l_shipmode text, l_comment text)"""
ACCOUNTS = 100_000
READER_PASSWORD = "bench-reader-pw"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next((int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), 0)
    return {"cores": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem / 2**20, 1), "kernel": platform.release(),
            "python": platform.python_version()}


def commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip() or "?"


class Postgres:
    """A throwaway PostgreSQL 15 cluster owned by the `postgres` OS user."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pond-bench-pg-"))
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        self.data = self.dir / "data"

    def _as_postgres(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        subprocess.run(cmd, check=True, capture_output=True, text=True)

    def start(self) -> "Postgres":
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c shared_buffers=1GB -c max_connections=50")
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "pg.log"), "-w", "start")
        return self

    def stop(self) -> None:
        try:
            self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def conninfo(self) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "user": "postgres", "password": "", "dbname": "postgres"}


def load_postgres(pg: Postgres, reference: Path, rows: int) -> None:
    """lineitem (first `rows` rows in dbgen order) and the pgbench accounts table, via COPY."""
    import duckdb
    import psycopg

    with psycopg.connect(**pg.conninfo(), autocommit=True) as conn:
        conn.execute(LINEITEM_DDL)
        src = duckdb.connect(str(reference), read_only=True)
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY lineitem FROM STDIN (FORMAT csv)") as copy:
            reader = src.execute(f"SELECT * FROM lineitem LIMIT {rows}").to_arrow_reader(200_000)
            import pyarrow.csv as pacsv
            import io
            for batch in reader:
                buf = io.BytesIO()
                pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=False))
                copy.write(buf.getvalue())
        conn.execute("VACUUM ANALYZE lineitem")
        log(f"PostgreSQL: lineitem loaded ({rows} rows) in {time.perf_counter() - t0:.1f}s")
        setup_accounts(conn)


COPY_ROWS = 1_000_000


def copy_payload(rows: int) -> list[bytes]:
    """Text-format COPY data for (BIGINT, DOUBLE, VARCHAR, DATE), in ~1 MiB writes."""
    chunks, lines = [], []
    size = 0
    for i in range(rows):
        line = f"{i}\t{i * 0.25}\tname-{i % 1000}\t2024-{i % 12 + 1:02d}-{i % 28 + 1:02d}\n"
        lines.append(line)
        size += len(line)
        if size >= 1 << 20:
            chunks.append("".join(lines).encode())
            lines, size = [], 0
    if lines:
        chunks.append("".join(lines).encode())
    return chunks


def copy_in(info: dict, ddl: str, payload: list[bytes], rows: int, reps: int) -> dict:
    """Best time of `reps` loads of the same rows with psycopg's COPY … FROM STDIN into a fresh table."""
    import psycopg

    best = float("inf")
    with psycopg.connect(**info, autocommit=True) as conn:
        for _ in range(reps):
            conn.execute("DROP TABLE IF EXISTS copy_bench")
            conn.execute(ddl)
            t0 = time.perf_counter()
            with conn.cursor() as cur, cur.copy("COPY copy_bench FROM STDIN") as copy:
                for c in payload:
                    copy.write(c)
            best = min(best, time.perf_counter() - t0)
            n = conn.execute("SELECT count(*) FROM copy_bench").fetchone()[0]
            assert n == rows, (n, rows)
        conn.execute("DROP TABLE copy_bench")
    return {"rows": rows, "seconds": best, "rows_per_sec": rows / best}


def setup_accounts(conn) -> None:
    conn.execute("CREATE TABLE accts (aid integer PRIMARY KEY, bid integer, abalance integer, filler varchar)")
    conn.execute(f"INSERT INTO accts SELECT g, g % 10, g * 2, 'x' FROM generate_series(1, {ACCOUNTS}) g")


def pgbench(host: str, port: int, user: str, password: str, db: str, mode: str, seconds: int, clients: int,
            script: str | None = None) -> dict:
    """pgbench with a custom script (default: the point select on `accts`) for `seconds`."""
    path = Path(tempfile.mkstemp(suffix=".sql")[1])
    path.write_text(script or f"\\set aid random(1, {ACCOUNTS})\nSELECT abalance FROM accts WHERE aid = :aid;\n")
    env = dict(os.environ, PGPASSWORD=password)
    try:
        r = subprocess.run(["pgbench", "-h", host, "-p", str(port), "-U", user, "-n", "-f", str(path), "-c", str(clients),
                            "-j", str(min(clients, 2)), "-T", str(int(seconds)), "-M", mode, db],
                           capture_output=True, text=True, env=env, timeout=seconds + 120)
    finally:
        path.unlink()
    if r.returncode != 0:
        raise RuntimeError(f"pgbench failed: {r.stdout}\n{r.stderr}")
    tps = float(re.search(r"tps = ([\d.]+) \(without initial", r.stdout).group(1))
    failed = int(re.search(r"number of failed transactions: (\d+)", r.stdout).group(1))
    lat = float(re.search(r"latency average = ([\d.]+) ms", r.stdout).group(1))
    return {"tps": tps, "failed": failed, "latency_ms": lat}


def duckdb_floor(seconds: int) -> dict:
    """DuckDB's own point-select rate in process (crates/pond/examples/duckdb_point_floor.rs):
    what Pond's pgbench rate is bounded by, whatever the wire protocol costs."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/pond/target"))
    exe = target / "release" / "examples" / "duckdb_point_floor"
    if not exe.exists():
        raise RuntimeError(f"{exe} not found: build with `cargo build --release --workspace --all-targets`")
    r = subprocess.run([str(exe), str(seconds), str(ACCOUNTS)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def psycopg_fetch(conninfo: dict, sql: str, binary: bool, reps: int) -> dict:
    """Seconds to run `sql` and turn every row into Python objects (psycopg's C implementation)."""
    import psycopg

    times = []
    wire = []
    n = 0
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        for _ in range(reps):
            t0 = time.perf_counter()
            with conn.cursor(binary=binary) as cur:
                cur.execute(sql)
                # execute() returns once libpq holds the whole result: server work + transfer.
                wire.append(time.perf_counter() - t0)
                n = 0
                while True:
                    chunk = cur.fetchmany(100_000)
                    if not chunk:
                        break
                    n += len(chunk)
            times.append(time.perf_counter() - t0)
    return {"seconds": min(times), "all": times, "rows": n, "wire_seconds": min(wire)}


def flight_fetch(server: PondServer, sql: str, reps: int) -> dict:
    import adbc_driver_flightsql.dbapi as flight_sql

    times = []
    n = 0
    conn = flight_sql.connect(server.flight_uri, db_kwargs={"username": "admin", "password": PASSWORD,
                                                            "adbc.flight.sql.rpc.call_header.database": "tpch"},
                              autocommit=True)
    try:
        for _ in range(reps):
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                cur.execute(sql)
                n = cur.fetch_arrow_table().num_rows
            times.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return {"seconds": min(times), "all": times, "rows": n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="SF0.1 rows (100K, 600K), 3 s pgbench")
    ap.add_argument("--reps", type=int, default=2, help="fetch repetitions (best is reported)")
    ap.add_argument("--pgbench-only", action="store_true",
                    help="only the pgbench point selects (fresh Pond data dir, no TPC-H data, no fetches)")
    ap.add_argument("--out", default=None, help="result file name under bench/results (default pgwire, or pgwire_pgbench)")
    ap.add_argument("--seconds", type=int, default=None, help="pgbench duration per run (default 10, --quick 3)")
    args = ap.parse_args()
    sf = 0.1 if args.quick else 1.0
    sizes = [100_000, 600_572] if args.quick else [1_000_000, 6_001_215]
    seconds = args.seconds or (3 if args.quick else 10)
    ext_dir = ensure_extensions(["icu", "tpch"])
    work = Path(tempfile.mkdtemp(prefix="pond-bench-pgwire-"))
    if args.pgbench_only:
        sizes = []
        reference = None
    else:
        reference = bench_run.reference_db(sf, ext_dir)
        # Pond on a private copy of the cached data dir (the cache may be in use by bench/run.py).
        cached = bench_run.start_pond(sf, ext_dir)
        cached.stop()
        shutil.copytree(bench_run.pond_data_dir(sf), work / "data")
    pond = PondServer(data_dir=work / "data", password=PASSWORD, extensions="icu,tpch", ext_dir=ext_dir)
    pg = Postgres()
    results: dict = {"machine": machine(), "commit": commit(), "started": dt.datetime.utcnow().isoformat(timespec="seconds") + "Z",
                     "pgbench": {}, "fetch": []}
    try:
        pond.start(timeout=300)
        ph, pp = pond.pg_host_port
        pond_info = {"host": ph, "port": pp, "user": "admin", "password": PASSWORD, "dbname": "tpch"}
        import psycopg

        with psycopg.connect(**{**pond_info, "dbname": "default"}, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS accts")
            conn.execute("CREATE TABLE accts (aid INTEGER PRIMARY KEY, bid INTEGER, abalance INTEGER, filler VARCHAR)")
            conn.execute(f"INSERT INTO accts SELECT range, range % 10, range * 2, 'x' FROM range(1, {ACCOUNTS + 1})")
            # A non-superuser with SELECT on the table: every statement goes through the sandbox.
            conn.execute(f"CREATE USER bench_reader PASSWORD '{READER_PASSWORD}'")
            conn.execute("GRANT SELECT ON TABLE default.main.accts TO bench_reader")
        pg.start()
        log(f"PostgreSQL 15 on port {pg.port}; Pond PG wire on {pp}")
        if reference is not None:
            load_postgres(pg, reference, sizes[-1])
        else:
            with psycopg.connect(**pg.conninfo(), autocommit=True) as conn:
                setup_accounts(conn)

        for mode in ["simple", "prepared"]:
            for name, (h, p, u, pw, db) in {"pond": (ph, pp, "admin", PASSWORD, "default"),
                                            "pond_user": (ph, pp, "bench_reader", READER_PASSWORD, "default"),
                                            "postgres": ("127.0.0.1", pg.port, "postgres", "", "postgres")}.items():
                r = pgbench(h, p, u, pw, db, mode, seconds, clients=8)
                results["pgbench"].setdefault(mode, {})[name] = r
                log(f"pgbench -M {mode} -c 8 {name}: {r['tps']:.0f} tps, {r['failed']} failed")

        payload = copy_payload(COPY_ROWS)
        results["copy_in"] = {
            "pond": copy_in({**pond_info, "dbname": "default"},
                            "CREATE TABLE copy_bench (id BIGINT, v DOUBLE, s VARCHAR, d DATE)", payload, COPY_ROWS, args.reps),
            "postgres": copy_in(pg.conninfo(), "CREATE TABLE copy_bench (id BIGINT, v DOUBLE PRECISION, s TEXT, d DATE)",
                                payload, COPY_ROWS, args.reps),
        }
        log(f"COPY FROM STDIN {COPY_ROWS} rows: pond {results['copy_in']['pond']['seconds']:.2f}s, "
            f"postgres {results['copy_in']['postgres']['seconds']:.2f}s")

        results["duckdb_floor"] = duckdb_floor(seconds)
        f = results["duckdb_floor"]
        log(f"DuckDB in process (duckdb crate, prepared point select): {f['threads_1']['qps']:.0f} qps on 1 thread, "
            f"{f['threads_2']['qps']:.0f} on 2")

        for rows in sizes:
            sql = f"SELECT * FROM lineitem LIMIT {rows}"
            row = {"rows": rows}
            for binary in (False, True):
                kind = "binary" if binary else "text"
                row[f"pond_{kind}"] = psycopg_fetch(pond_info, sql, binary, args.reps)
                row[f"postgres_{kind}"] = psycopg_fetch(pg.conninfo(), sql, binary, args.reps)
                log(f"{rows} rows psycopg {kind}: pond {row[f'pond_{kind}']['seconds']:.2f}s, "
                    f"postgres {row[f'postgres_{kind}']['seconds']:.2f}s")
            row["pond_flight_adbc"] = flight_fetch(pond, sql, args.reps)
            log(f"{rows} rows Flight SQL (ADBC, Arrow table): {row['pond_flight_adbc']['seconds']:.2f}s")
            log(f"{rows} rows until libpq holds the result (server + transfer): "
                + ", ".join(f"{k} {row[k]['wire_seconds']:.2f}s" for k in ("pond_text", "postgres_text", "pond_binary", "postgres_binary")))
            for k in ("pond_text", "pond_binary", "postgres_text", "postgres_binary", "pond_flight_adbc"):
                assert row[k]["rows"] == rows, (k, row[k]["rows"])
            results["fetch"].append(row)
    finally:
        pond.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.out or ("pgwire_pgbench" if args.pgbench_only else "pgwire")
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / f"{name}.md").write_text(render(results))
    print(render(results))
    return 0


def render(r: dict) -> str:
    m = r["machine"]
    out = [f"# PostgreSQL wire: Pond vs PostgreSQL 15 ({r['started']}, commit {r['commit']})", "",
           f"Machine: {m['cores']} cores {m['cpu']}, {m['mem_gib']} GiB, kernel {m['kernel']}, Python {m['python']}.", "",
           "## pgbench point select (8 clients, 2 threads, random id of 100K, custom script)", "",
           "Pond as `admin` (superuser) and as `bench_reader` (SELECT grant only: the sandbox checks every statement).", "",
           "| mode | Pond tps (admin) | Pond tps (non-superuser) | PostgreSQL tps | Pond / PostgreSQL | failed (Pond, user, PG) |",
           "|---|---|---|---|---|---|"]
    for mode, v in r["pgbench"].items():
        user = v.get("pond_user", {"tps": float("nan"), "failed": "-"})
        out.append(f"| {mode} | {v['pond']['tps']:.0f} | {user['tps']:.0f} | {v['postgres']['tps']:.0f} "
                   f"| {v['pond']['tps'] / v['postgres']['tps']:.2f} | {v['pond']['failed']}, {user['failed']}, {v['postgres']['failed']} |")
    f = r.get("duckdb_floor")
    if f:
        pg = {m: v["postgres"]["tps"] for m, v in r["pgbench"].items()}
        pond = {m: v["pond"]["tps"] for m, v in r["pgbench"].items()}
        best_pg, best_pond = max(pg.values()), max(pond.values())
        out += ["", f"## DuckDB's own floor: the same point select in process ({f['duckdb']}, duckdb crate, no network)", "",
                "`crates/pond/examples/duckdb_point_floor.rs`: in-memory pgbench_accounts (100K rows, `aid` primary key), "
                "prepared `SELECT abalance … WHERE aid = ?`, random ids, one connection per thread, `SET threads = 1`.", "",
                "| | queries/s | µs per query per thread | / best PostgreSQL tps | / best Pond tps |", "|---|---|---|---|---|"]
        for t in (1, 2):
            v = f[f"threads_{t}"]
            out.append(f"| DuckDB in process, {t} thread{'s' if t > 1 else ''} | {v['qps']:.0f} | {v['us_per_query_per_thread']:.0f} "
                       f"| {v['qps'] / best_pg:.2f} | {v['qps'] / best_pond:.2f} |")
        out.append(f"| Pond over PG wire, 8 clients (best mode) | {best_pond:.0f} | | {best_pond / best_pg:.2f} | 1.00 |")
        out.append(f"| PostgreSQL 15, 8 clients (best mode) | {best_pg:.0f} | | 1.00 | {best_pg / best_pond:.2f} |")
    c = r.get("copy_in")
    if c:
        out += ["", f"## COPY … FROM STDIN ({c['pond']['rows']:,} rows of BIGINT, DOUBLE, VARCHAR, DATE; text format; psycopg, ~1 MiB writes; best of runs)", "",
                "| | seconds | rows/s | Pond / PostgreSQL time |", "|---|---|---|---|",
                f"| Pond | {c['pond']['seconds']:.2f} | {c['pond']['rows_per_sec']:,.0f} | {c['pond']['seconds'] / c['postgres']['seconds']:.2f} |",
                f"| PostgreSQL 15 | {c['postgres']['seconds']:.2f} | {c['postgres']['rows_per_sec']:,.0f} | 1.00 |"]
    if not r["fetch"]:
        return "\n".join(out) + "\n"
    out += ["", "## Fetching TPC-H lineitem (`SELECT * … LIMIT n`, best of runs, seconds; psycopg builds Python rows)", "",
            "| rows | psycopg text Pond | text PG | binary Pond | binary PG | Flight SQL ADBC (Pond) | Pond/PG text | Pond/PG binary | Pond binary / Flight |",
            "|---|---|---|---|---|---|---|---|---|"]
    for f in r["fetch"]:
        s = {k: v["seconds"] for k, v in f.items() if isinstance(v, dict)}
        out.append(f"| {f['rows']:,} | {s['pond_text']:.2f} | {s['postgres_text']:.2f} | {s['pond_binary']:.2f} | {s['postgres_binary']:.2f} "
                   f"| {s['pond_flight_adbc']:.2f} | {s['pond_text'] / s['postgres_text']:.2f} | {s['pond_binary'] / s['postgres_binary']:.2f} "
                   f"| {s['pond_binary'] / s['pond_flight_adbc']:.1f} |")
    out += ["", "Time until `execute()` returns, i.e. libpq holds the whole result (server work and transfer, no Python rows):", "",
            "| rows | text Pond | text PG | binary Pond | binary PG | Flight SQL ADBC (Pond, whole fetch) |", "|---|---|---|---|---|---|"]
    for f in r["fetch"]:
        w = {k: v.get("wire_seconds", float("nan")) for k, v in f.items() if isinstance(v, dict)}
        out.append(f"| {f['rows']:,} | {w['pond_text']:.2f} | {w['postgres_text']:.2f} | {w['pond_binary']:.2f} | {w['postgres_binary']:.2f} "
                   f"| {f['pond_flight_adbc']['seconds']:.2f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
