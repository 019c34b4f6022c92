#!/usr/bin/env python3
"""Pond benchmark: Flight SQL fetch vs in-process DuckDB vs Quack, latency, DoGet sizes, inserts.

Usage (from the repository root):
    .venv/bin/python bench/run.py            # TPC-H SF1 (lineitem: 6M rows)
    .venv/bin/python bench/run.py --quick    # SF0.1 and fewer iterations (~2 minutes)

Starts its own `pond serve` (binary: $POND_BIN, else $CARGO_TARGET_DIR/release/pond, default
~/.cache/pond/target) and a Quack server subprocess (duckdb Python + quack + httpfs). Generated
TPC-H data is cached under ~/.cache/pond/bench. Results: bench/results/latest.json and latest.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from pond_server import PondServer, ensure_extensions, pond_bin  # noqa: E402

# len("admin:" + PASSWORD) % 3 == 0: no base64 padding (see the interop suite for the padding case)
PASSWORD = "bench-Secret-12"
CACHE = Path(os.path.expanduser("~/.cache/pond/bench"))
RESULTS = ROOT / "bench" / "results"
LINEITEM_ROWS = {1.0: 6001215, 0.1: 600572}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- helpers


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def timed(fn, reps: int, warmup: int = 1) -> tuple[list[float], object]:
    result = None
    for _ in range(warmup):
        result = fn()
        result = None
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        if _ != reps - 1:
            result = None
    return times, result


def summary(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": len(times)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def adbc_connect(server: PondServer, database: str | None = None, headers: dict | None = None):
    import adbc_driver_flightsql.dbapi as fs

    kw = {"username": "admin", "password": PASSWORD}
    if database:
        kw["adbc.flight.sql.rpc.call_header.database"] = database
    for k, v in (headers or {}).items():
        kw[f"adbc.flight.sql.rpc.call_header.{k}"] = v
    return fs.connect(server.flight_uri, db_kwargs=kw, autocommit=True)


# ----------------------------------------------------------------------------- machine info


def machine_info() -> dict:
    info: dict = {"date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cpu_cores"] = os.cpu_count()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    info["kernel"] = platform.release()
    info["os"] = platform.platform()
    info["python"] = platform.python_version()
    versions = {}
    for mod in ("duckdb", "pyarrow", "adbc_driver_flightsql", "adbc_driver_manager"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = "unknown"
    try:
        out = subprocess.run([str(pond_bin()), "--version"], capture_output=True, text=True, timeout=30)
        versions["pond"] = (out.stdout or out.stderr).strip()
    except Exception:  # noqa: BLE001
        versions["pond"] = "unknown"
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        versions["pond_git"] = out.stdout.strip() or "uncommitted"
    except Exception:  # noqa: BLE001
        pass
    info["versions"] = versions
    return info


# ----------------------------------------------------------------------------- data


def reference_db(sf: float, ext_dir: Path) -> Path:
    """A DuckDB file with TPC-H at this scale, generated once (same generator as Pond's)."""
    import duckdb

    path = CACHE / f"tpch-sf{sf:g}.duckdb"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.duckdb")
    for p in (tmp, Path(str(tmp) + ".wal")):
        if p.exists():
            p.unlink()
    log(f"generating reference TPC-H SF{sf:g} into {path}")
    con = duckdb.connect(str(tmp), config={"extension_directory": str(ext_dir)})
    con.execute("LOAD tpch")
    con.execute(f"CALL dbgen(sf={sf})")
    con.execute("CHECKPOINT")
    con.close()
    tmp.rename(path)
    return path


def pond_data_dir(sf: float) -> Path:
    return CACHE / f"pond-sf{sf:g}" / "data"


def start_pond(sf: float, ext_dir: Path) -> PondServer:
    """Start Pond on the cached data dir; (re)generate TPC-H into database `tpch` if needed."""
    data = pond_data_dir(sf)
    for attempt in range(2):
        server = PondServer(data_dir=data, password=PASSWORD, extensions="icu,tpch", ext_dir=ext_dir)
        server.start(timeout=300)
        try:
            conn = adbc_connect(server)
            cur = conn.cursor()
            try:
                cur.execute("SELECT count(*) FROM tpch.main.lineitem")
                n = cur.fetchall()[0][0]
            except Exception:  # noqa: BLE001
                n = None
            if n != LINEITEM_ROWS.get(sf, n) or n is None:
                log(f"generating TPC-H SF{sf:g} inside Pond (database tpch)")
                cur.execute("DROP DATABASE IF EXISTS tpch")
                cur.execute("CREATE DATABASE tpch")
                cur.close()
                conn.close()
                conn = adbc_connect(server, database="tpch")
                cur = conn.cursor()
                t0 = time.perf_counter()
                cur.execute(f"CALL dbgen(sf={sf})")
                cur.execute("SELECT count(*) FROM tpch.main.lineitem")
                n = cur.fetchall()[0][0]
                log(f"dbgen done in {time.perf_counter() - t0:.1f}s: lineitem has {n} rows")
            cur.close()
            conn.close()
            return server
        except Exception:
            server.stop()
            if attempt == 0:
                log("cached Pond data unusable; regenerating:\n" + traceback.format_exc())
                shutil.rmtree(data.parent, ignore_errors=True)
                continue
            raise
    raise RuntimeError("unreachable")


# ----------------------------------------------------------------------------- Quack

QUACK_SERVER = textwrap.dedent("""
    import sys, time, duckdb
    db, ext_dir, port, token, writable = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
    try:
        con = duckdb.connect(db, read_only=not writable, config={"extension_directory": ext_dir})
        if writable:
            con.execute("CREATE TABLE IF NOT EXISTS ins (client INTEGER, n BIGINT, payload VARCHAR)")
        con.execute("LOAD httpfs")
        con.execute("LOAD quack")
        con.execute(f"FROM quack_serve('quack:localhost:{port}', token => '{token}', disable_ssl => true)").fetchall()
    except Exception as e:
        print("FAILED", repr(e), flush=True)
        sys.exit(3)
    print("READY", flush=True)
    while True:
        time.sleep(3600)
""")


class Quack:
    """A Quack server on `db` (read-only; `writable` opens it for writes and creates
    the insert benchmark's table `ins`), and its clients."""

    def __init__(self, db: Path, ext_dir: Path, writable: bool = False):
        self.db, self.ext_dir, self.writable = db, ext_dir, writable
        self.port = free_port()
        self.token = "bench-quack-token"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", QUACK_SERVER, str(self.db), str(self.ext_dir), str(self.port), self.token,
             "1" if self.writable else "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("READY"):
                return
            if line.startswith("FAILED") or (not line and self.proc.poll() is not None):
                raise RuntimeError(f"Quack server failed: {line.strip()}")
        raise RuntimeError("Quack server not ready in time")

    def client(self):
        import duckdb

        con = duckdb.connect(config={"extension_directory": str(self.ext_dir)})
        con.execute("LOAD httpfs")
        con.execute("LOAD quack")
        con.execute(f"CREATE SECRET (TYPE quack, TOKEN '{self.token}')")
        con.execute(f"ATTACH 'quack:localhost:{self.port}' AS r (DISABLE_SSL true)")
        return con

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ----------------------------------------------------------------------------- benchmarks


def bench_fetch(server: PondServer, ref_db: Path, ext_dir: Path, reps: int, quick: bool) -> dict:
    import duckdb
    import pyarrow.flight as flight

    sys.path.insert(0, str(ROOT / "tests" / "interop"))
    import flight_proto as fp

    q = "SELECT * FROM lineitem"
    out: dict = {"query": q}

    ref = duckdb.connect(str(ref_db), read_only=True, config={"extension_directory": str(ext_dir)})
    times, ref_table = timed(lambda: ref.execute(q).to_arrow_table(), reps)
    rows = ref_table.num_rows
    out["rows"] = rows
    out["arrow_bytes"] = ref_table.nbytes
    ref.close()
    out["inprocess_duckdb"] = summary(times)
    log(f"in-process duckdb: {rows} rows, median {statistics.median(times):.3f}s")

    def pond_adbc(headers=None):
        conn = adbc_connect(server, database="tpch", headers=headers)

        def run():
            with conn.cursor() as cur:
                cur.execute(q)
                return cur.fetch_arrow_table()

        try:
            times, t = timed(run, reps)
            assert t.num_rows == rows, (t.num_rows, rows)
            res = summary(times)
            # same schema and values as in-process DuckDB (lineitem is ordered by dbgen)
            res["identical_to_inprocess"] = t.schema.equals(ref_table.schema) and t.equals(ref_table)
            return res
        finally:
            conn.close()

    out["pond_adbc"] = pond_adbc()
    log(f"pond ADBC: median {out['pond_adbc']['median_s']:.3f}s")
    for codec in ("lz4", "zstd"):
        try:
            out[f"pond_adbc_{codec}"] = pond_adbc({"pond-compression": codec})
            log(f"pond ADBC {codec}: median {out[f'pond_adbc_{codec}']['median_s']:.3f}s")
        except Exception as e:  # noqa: BLE001
            out[f"pond_adbc_{codec}"] = {"error": repr(e)}

    # raw pyarrow.flight (C++ client, no Go in between)
    client = flight.FlightClient(server.flight_uri)
    auth = client.authenticate_basic_token("admin", PASSWORD)
    o = flight.FlightCallOptions(headers=[auth, (b"database", b"tpch")])

    def raw():
        info = client.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query(q)), o)
        return client.do_get(info.endpoints[0].ticket, o).read_all()

    try:
        times, t = timed(raw, reps)
        assert t.num_rows == rows
        del t
        out["pond_pyarrow_flight"] = summary(times)
        log(f"pond pyarrow.flight: median {statistics.median(times):.3f}s")
    except Exception as e:  # noqa: BLE001
        out["pond_pyarrow_flight"] = {"error": repr(e)}
    client.close()

    ref_table = None  # free ~1 GB before the next section
    base = out["inprocess_duckdb"]["median_s"]
    out["ratio_pond_adbc_vs_inprocess"] = out["pond_adbc"]["median_s"] / base
    out["goal_ratio"] = 1.3
    return out


def bench_quack(ref_db: Path, ext_dir: Path, reps: int, rows: int, pond_median: float) -> dict:
    out: dict = {"query": "SELECT * FROM r.lineitem"}
    quack = Quack(ref_db, ext_dir)
    try:
        try:
            quack.start()
            con = quack.client()
        except Exception as e:  # noqa: BLE001
            out["skipped"] = f"Quack could not start or load its extension: {e}"
            log(out["skipped"])
            return out
        times, t = timed(lambda: con.execute("SELECT * FROM r.lineitem").to_arrow_table(), reps)
        assert t.num_rows == rows, (t.num_rows, rows)
        del t
        con.close()
        out["quack"] = summary(times)
        out["ratio_quack_vs_pond_adbc"] = statistics.median(times) / pond_median
        log(f"quack: median {statistics.median(times):.3f}s")
    finally:
        quack.stop()
    return out


def bench_latency(server: PondServer, n: int) -> dict:
    conn = adbc_connect(server)
    cur = conn.cursor()
    for _ in range(min(50, n)):
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
    res = {"queries": n, "p50_ms": pct(lat, 50) * 1e3, "p90_ms": pct(lat, 90) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
           "mean_ms": statistics.mean(lat) * 1e3, "qps_serial": n / sum(lat)}
    log(f"SELECT 1: p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms")
    res["rust_client"] = bench_latency_rust(server, n)
    return res


def bench_latency_rust(server: PondServer, n: int) -> dict:
    """The same round trip from the Rust Flight SQL client (crates/pond/examples/latency.rs):
    GetFlightInfo + DoGet with no driver in between, i.e. the server's own latency."""
    exe = pond_bin().parent / "examples" / "latency"
    if not exe.exists():
        return {"error": f"{exe} not built (cargo build --release --workspace --all-targets)"}
    env = dict(os.environ, POND_PASSWORD=server.password)
    out = subprocess.run([str(exe), server.flight_addr, str(n)], env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-500:]}
    res = json.loads(out.stdout)
    log(f"SELECT 1 (Rust client): p50 {res['p50_us']:.0f} us, p99 {res['p99_us']:.0f} us")
    return res


SANDBOX_QUERIES = {
    "select_1": "SELECT 1",
    "point": "SELECT l_quantity FROM tpch.main.lineitem WHERE l_orderkey = 1 LIMIT 1",
    "join3": "SELECT n_name, count(*) FROM tpch.main.customer JOIN tpch.main.orders ON c_custkey = o_custkey "
             "JOIN tpch.main.nation ON c_nationkey = n_nationkey WHERE o_orderkey < 100 GROUP BY 1",
}


def bench_sandbox(server: PondServer, n: int) -> dict:
    """Cost of the statement checks: the same queries as a superuser (not checked)
    and as a user with READ on tpch (parsed by DuckDB, every table resolved and
    checked), alternating so both see the same machine noise."""
    import adbc_driver_flightsql.dbapi as fs

    reader_pw = "bench-reader-pw-1"
    admin = adbc_connect(server)
    cur = admin.cursor()
    cur.execute("DROP USER IF EXISTS bench_reader")
    cur.execute(f"CREATE USER bench_reader PASSWORD '{reader_pw}'")
    cur.execute("GRANT READ ON DATABASE tpch TO bench_reader")
    cur.close()
    reader = fs.connect(server.flight_uri, db_kwargs={"username": "bench_reader", "password": reader_pw}, autocommit=True)
    out = {}
    for name, sql in SANDBOX_QUERIES.items():
        times = {"superuser": [], "reader": []}
        curs = {"superuser": admin.cursor(), "reader": reader.cursor()}
        for _ in range(20):
            for c in curs.values():
                c.execute(sql)
                c.fetchall()
        for _ in range(n):
            for who, c in curs.items():
                t0 = time.perf_counter()
                c.execute(sql)
                c.fetchall()
                times[who].append(time.perf_counter() - t0)
        su, rd = pct(times["superuser"], 50) * 1e3, pct(times["reader"], 50) * 1e3
        out[name] = {"sql": sql, "superuser_p50_ms": su, "reader_p50_ms": rd, "ratio": rd / su}
        log(f"sandbox {name}: superuser p50 {su:.2f} ms, reader p50 {rd:.2f} ms ({rd / su:.2f}x)")
        for c in curs.values():
            c.close()
    reader.close()
    admin.close()
    return out


def bench_doget(server: PondServer, ref_db: Path, ext_dir: Path, quick: bool) -> dict:
    import duckdb
    import pyarrow.flight as flight

    import flight_proto as fp

    out = {}
    client = flight.FlightClient(server.flight_uri)
    auth = client.authenticate_basic_token("admin", PASSWORD)
    o = flight.FlightCallOptions(headers=[auth, (b"database", b"tpch")])
    conn = adbc_connect(server, database="tpch")
    ref = duckdb.connect(str(ref_db), read_only=True, config={"extension_directory": str(ext_dir)})
    for n, reps in ((1_000, 30 if quick else 100), (10_000, 20 if quick else 50), (100_000, 8 if quick else 20)):
        q = f"SELECT * FROM lineitem LIMIT {n}"
        total, doget_only = [], []
        for i in range(reps + 2):
            t0 = time.perf_counter()
            info = client.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query(q)), o)
            t1 = time.perf_counter()
            t = client.do_get(info.endpoints[0].ticket, o).read_all()
            t2 = time.perf_counter()
            assert t.num_rows == n
            if i >= 2:
                total.append(t2 - t0)
                doget_only.append(t2 - t1)

        def adbc_run():
            with conn.cursor() as cur:
                cur.execute(q)
                return cur.fetch_arrow_table()

        adbc_times, t = timed(adbc_run, reps, warmup=2)
        assert t.num_rows == n
        inproc_times, t = timed(lambda: ref.execute(q).to_arrow_table(), reps, warmup=2)
        assert t.num_rows == n
        out[f"{n}"] = {
            "rows": n, "reps": reps,
            "pyarrow_flight_total_ms_median": statistics.median(total) * 1e3,
            "pyarrow_flight_doget_ms_median": statistics.median(doget_only) * 1e3,
            "adbc_ms_median": statistics.median(adbc_times) * 1e3,
            "inprocess_ms_median": statistics.median(inproc_times) * 1e3,
            "rows_per_s_pyarrow_flight": n / statistics.median(total),
        }
        log(f"DoGet {n} rows: flight {statistics.median(total) * 1e3:.2f} ms, adbc {statistics.median(adbc_times) * 1e3:.2f} ms")
    ref.close()
    conn.close()
    client.close()
    return out


def _insert_worker(args) -> dict:
    uri, password, table, worker, start_at, duration = args
    import adbc_driver_flightsql.dbapi as fs

    conn = fs.connect(uri, db_kwargs={"username": "admin", "password": password,
                                      "adbc.flight.sql.rpc.call_header.database": "bench_w"}, autocommit=True)
    cur = conn.cursor()
    cur.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", (worker, -1, "warmup"))
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + duration
    n, lat = 0, []
    while True:
        t0 = time.perf_counter()
        if time.time() >= end:
            break
        cur.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", (worker, n, "payload-" + str(n)))
        lat.append(time.perf_counter() - t0)
        n += 1
    cur.close()
    conn.close()
    return {"count": n, "lat": lat}


def bench_inserts(server: PondServer, duration: float) -> dict:
    conn = adbc_connect(server)
    cur = conn.cursor()
    cur.execute("DROP DATABASE IF EXISTS bench_w")
    cur.execute("CREATE DATABASE bench_w")
    out = {"duration_s": duration, "statement": "INSERT INTO t VALUES (?, ?, ?) -- autocommit, one row"}
    ctx = mp.get_context("spawn")
    for clients in (1, 4):
        table = f"bench_w.main.ins_{clients}"
        cur.execute(f"CREATE TABLE {table} (worker INTEGER, n BIGINT, payload VARCHAR)")
        start_at = time.time() + 5.0  # workers start together, after connecting
        with ctx.Pool(clients) as pool:
            res = pool.map(_insert_worker, [(server.flight_uri, PASSWORD, f"main.ins_{clients}", w, start_at, duration)
                                            for w in range(clients)])
        total = sum(r["count"] for r in res)
        lat = [x for r in res for x in r["lat"]]
        cur.execute(f"SELECT count(*) FROM {table} WHERE n >= 0")
        stored = cur.fetchall()[0][0]
        assert stored == total, (stored, total)
        out[f"clients_{clients}"] = {"transactions": total, "tx_per_s": total / duration,
                                     "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3}
        log(f"INSERT with {clients} client(s): {total / duration:.0f} tx/s")
    cur.execute("DROP DATABASE bench_w")
    cur.close()
    conn.close()
    return out


# ----------------------------------------------------------------------------- report


def fmt_s(d: dict | None) -> str:
    if not d:
        return "-"
    if "error" in d:
        return "error"
    return f"{d['median_s']:.3f} s (min {d['min_s']:.3f})"


def markdown(res: dict) -> str:
    m = res["machine"]
    v = m.get("versions", {})
    lines = [
        f"# Pond benchmark ({'quick, ' if res['quick'] else ''}TPC-H SF{res['scale_factor']:g})",
        "",
        f"- Date (UTC): {m.get('date_utc')}",
        f"- Machine: {m.get('cpu_model')}, {m.get('cpu_cores')} cores, {m.get('ram_gib')} GiB RAM, kernel {m.get('kernel')}",
        f"- Versions: pond `{v.get('pond')}` ({v.get('pond_git')}), duckdb {v.get('duckdb')}, pyarrow {v.get('pyarrow')}, "
        f"adbc-driver-flightsql {v.get('adbc_driver_flightsql')}, Python {m.get('python')}",
        "- Client and server share the machine (loopback).",
        "",
    ]
    sb = res.get("sandbox")
    if sb and "select_1" in sb:
        lines += ["## Statement checks (non-superuser) vs superuser, ADBC round trip p50", "",
                  "| Query | superuser | READ user | ratio |", "|---|---|---|---|"]
        for name, r in sb.items():
            lines.append(f"| {name} | {r['superuser_p50_ms']:.2f} ms | {r['reader_p50_ms']:.2f} ms | {r['ratio']:.2f}x |")
        lines.append("")
    f = res.get("fetch")
    if f and "rows" in f:
        lines += [
            f"## 1-2. Fetch `lineitem` ({f['rows']:,} rows, {f['arrow_bytes'] / 1e6:.0f} MB as Arrow)",
            "",
            "| Path | Time (median) | vs in-process |",
            "|---|---|---|",
        ]
        base = f["inprocess_duckdb"]["median_s"]

        def row(label, d):
            if not d or "median_s" not in d:
                return f"| {label} | {(d or {}).get('error', (d or {}).get('skipped', '-'))} | - |"
            return f"| {label} | {fmt_s(d)} | {d['median_s'] / base:.2f}x |"

        lines.append(row("in-process duckdb (`to_arrow_table`)", f["inprocess_duckdb"]))
        lines.append(row("Pond Flight SQL, ADBC", f["pond_adbc"]))
        lines.append(row("Pond Flight SQL, ADBC, lz4", f.get("pond_adbc_lz4")))
        lines.append(row("Pond Flight SQL, ADBC, zstd", f.get("pond_adbc_zstd")))
        lines.append(row("Pond Flight SQL, pyarrow.flight", f.get("pond_pyarrow_flight")))
        q = res.get("quack", {})
        if "quack" in q:
            lines.append(row("Quack (duckdb client, ATTACH)", q["quack"]))
        else:
            lines.append(f"| Quack | skipped: {q.get('skipped', q.get('error', '-'))} | - |")
        lines += ["", f"Pond ADBC / in-process: **{f['ratio_pond_adbc_vs_inprocess']:.2f}x** (goal <= {f['goal_ratio']}x). "
                  f"Result identical to in-process (schema and values): {f['pond_adbc'].get('identical_to_inprocess')}."]
        if "ratio_quack_vs_pond_adbc" in q:
            lines.append(f"Quack / Pond ADBC: **{q['ratio_quack_vs_pond_adbc']:.2f}x** (>1 means Pond is faster).")
        lines.append("")
    elif f:
        lines += ["## 1-2. Fetch lineitem", "", f"error: {f.get('error')}", ""]
    lat = res.get("latency")
    if lat and "p50_ms" in lat:
        lines += ["## 3. `SELECT 1` round trips (ADBC, one connection)", "",
                  "| Queries | p50 | p90 | p99 | mean | serial QPS |", "|---|---|---|---|---|---|",
                  f"| {lat['queries']} | {lat['p50_ms']:.2f} ms | {lat['p90_ms']:.2f} ms | {lat['p99_ms']:.2f} ms | "
                  f"{lat['mean_ms']:.2f} ms | {lat['qps_serial']:.0f} |", ""]
        rc = lat.get("rust_client") or {}
        if "p50_us" in rc:
            lines += ["Same query from the Rust Flight SQL client (`crates/pond/examples/latency.rs`, GetFlightInfo + DoGet, "
                      "no driver in between):", "",
                      "| Queries | p50 | p90 | p99 | mean |", "|---|---|---|---|---|",
                      f"| {rc['queries']} | {rc['p50_us']:.0f} us | {rc['p90_us']:.0f} us | {rc['p99_us']:.0f} us | {rc['mean_us']:.0f} us |", ""]
        elif rc:
            lines += [f"Rust client: error: {rc.get('error')}", ""]
    elif lat:
        lines += ["## 3. SELECT 1", "", f"error: {lat.get('error')}", ""]
    dg = res.get("doget")
    if dg and "error" not in dg:
        lines += ["## 4. Small and medium results (`SELECT * FROM lineitem LIMIT n`)", "",
                  "| Rows | GetFlightInfo+DoGet (pyarrow.flight) | DoGet only | ADBC execute+fetch | in-process duckdb | rows/s (pyarrow.flight) |",
                  "|---|---|---|---|---|---|"]
        for k, d in dg.items():
            lines.append(f"| {d['rows']:,} | {d['pyarrow_flight_total_ms_median']:.2f} ms | {d['pyarrow_flight_doget_ms_median']:.2f} ms | "
                         f"{d['adbc_ms_median']:.2f} ms | {d['inprocess_ms_median']:.2f} ms | {d['rows_per_s_pyarrow_flight']:,.0f} |")
        lines.append("")
    elif dg:
        lines += ["## 4. DoGet", "", f"error: {dg.get('error')}", ""]
    ins = res.get("inserts")
    if ins and "error" not in ins:
        lines += [f"## 5. Single-row INSERT transactions (autocommit, {ins['duration_s']:g} s each)", "",
                  "| Clients | Transactions/s | p50 | p99 |", "|---|---|---|---|"]
        for c in (1, 4):
            d = ins.get(f"clients_{c}")
            if d:
                lines.append(f"| {c} | {d['tx_per_s']:,.0f} | {d['p50_ms']:.2f} ms | {d['p99_ms']:.2f} ms |")
        lines.append("")
    elif ins:
        lines += ["## 5. Inserts", "", f"error: {ins.get('error')}", ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="SF0.1 and fewer iterations (~2 minutes)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    args = ap.parse_args()

    sf = 0.1 if args.quick else 1.0
    reps = 3 if args.quick else 5
    latency_n = 500 if args.quick else 2000
    insert_duration = 4.0 if args.quick else 10.0

    if not pond_bin().exists():
        print(f"pond binary not found at {pond_bin()}: build it with `cargo build --release -p pond` or set POND_BIN",
              file=sys.stderr)
        return 2
    ext_dir = ensure_extensions(["icu", "tpch", "httpfs", "quack"])
    res: dict = {"quick": args.quick, "scale_factor": sf, "machine": machine_info()}
    t_start = time.perf_counter()

    ref_db = reference_db(sf, ext_dir)
    server = start_pond(sf, ext_dir)
    log(f"pond listening: flight {server.flight_addr}, http {server.http_addr}")
    try:
        def section(name, fn):
            try:
                res[name] = fn()
            except Exception as e:  # noqa: BLE001
                log(f"{name} failed: {e!r}")
                res[name] = {"error": repr(e), "traceback": traceback.format_exc()}

        section("fetch", lambda: bench_fetch(server, ref_db, ext_dir, reps, args.quick))
        f = res["fetch"]
        if "pond_adbc" in f:
            section("quack", lambda: bench_quack(ref_db, ext_dir, reps, f["rows"], f["pond_adbc"]["median_s"]))
        section("latency", lambda: bench_latency(server, latency_n))
        section("sandbox", lambda: bench_sandbox(server, latency_n // 4))
        section("doget", lambda: bench_doget(server, ref_db, ext_dir, args.quick))
        section("inserts", lambda: bench_inserts(server, insert_duration))
    finally:
        rc = server.stop()
        res["pond_exit_code"] = rc
    res["wall_time_s"] = time.perf_counter() - t_start

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    md = markdown(res)
    (args.out / "latest.md").write_text(md)
    print(md)
    log(f"wrote {args.out / 'latest.json'} and {args.out / 'latest.md'} in {res['wall_time_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
