#!/usr/bin/env python3
"""Time-series queries on ingested data: Pond vs InfluxDB 1.6.7 (InfluxQL), same data, same run.

What it measures (issue 17, the query item): HOSTS hosts x 1-second points over
HOURS hours of `cpu,host=hNNNN usage_user=…,usage_system=…,usage_idle=… <ts>`,
loaded over line protocol into a real InfluxDB 1.6.7 (`influxd`, started by
tests/interop/influx_server.py) and a real `pond serve` ($POND_BIN, started by
tests/interop/pond_server.py, default settings except
`--lake-compact-interval-secs 0`), then three queries, each first checked to
return the same answer on both systems:

- 1-hour buckets over the whole range: InfluxQL `mean(usage_user),
  max(usage_system) … GROUP BY time(1h)` vs Pond `time_bucket(INTERVAL '1 hour', time)`;
- the last point per host: InfluxQL `last(usage_user) … GROUP BY host` vs
  Pond `max(time), arg_max(usage_user, time) … GROUP BY host`;
- every point of one host over the whole range (`SELECT *`), all rows fetched.

Both answer over HTTP JSON (InfluxDB `/query?epoch=ns`, Pond
`POST /api/v1/query` with `Cache-Control: no-cache`, so its result cache never
answers); the scan is also timed with Pond's Arrow IPC format
(`{"format": "arrow"}` in the request body). A time is the client's wall time
until the whole response body has arrived (parsing it is not counted).
One warm-up per query, then the median of RUNS runs, the two systems
alternating. Pond is measured after `POST /api/v1/lake/flush` (everything in
Parquet) and again after `POST /api/v1/lake/compact`. InfluxDB is queried once
its own background compactions have gone quiet. Each system loads alone
(WRITERS concurrent HTTP writers, BODY lines per request); load times are reported.

Writes bench/results/influx_query.md and .json with the machine it ran on.

    export POND_BIN=~/.cache/pond/target/release/pond POND_EXTENSION_DIR=~/.cache/pond/extensions
    .venv/bin/python bench/influx_query.py [--hours 4] [--hosts 1000] [--runs 5] [--writers 4]

A full day (--hours 24, 86.4M points) takes InfluxDB 1.6.7 several minutes to
load on 2 cores; the default is a few hours so the run stays near 10 minutes.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
from influx_server import InfluxServer  # noqa: E402
from pond_server import PondServer, PondStartError  # noqa: E402

PASSWORD = "bench-admin-pw-1"
AUTH = ("admin", PASSWORD)
DB = "bench"
START = 1_700_006_400  # 2023-11-15 00:00:00 UTC
REL_TOL = 1e-9


# ---------------------------------------------------------------- data

def make_bodies(hosts: int, seconds: int, body_lines: int) -> list[bytes]:
    """Line-protocol bodies, time-major (every host's point for second t, then t+1),
    as an agent fleet sends them. Values are deterministic pseudo-random with two
    decimals (65,536 distinct field sets picked by a hash of host and second), so
    neither store sees an unrealistically repetitive series."""
    rng = random.Random(17)
    prefixes = [f"cpu,host=h{h:04d} " for h in range(hosts)]
    fields = []
    for _ in range(1 << 16):
        u, s_ = rng.uniform(0, 70), rng.uniform(0, 25)
        fields.append(f"usage_user={u:.2f},usage_system={s_:.2f},usage_idle={100 - u - s_:.2f} ")
    bodies, buf = [], []
    for s in range(seconds):
        ts = f"{START + s}"
        base = s * 2654435761
        for h in range(hosts):
            buf.append(prefixes[h] + fields[((base + h * 40503) >> 7) & 0xFFFF] + ts)
        if len(buf) >= body_lines:
            bodies.append("\n".join(buf).encode())
            buf = []
    if buf:
        bodies.append("\n".join(buf).encode())
    return bodies


def load(url: str, bodies: list[bytes], writers: int, auth=None) -> dict:
    """POST every body to `url` with WRITERS threads; retries 503/500 with backoff."""
    nxt = iter(range(len(bodies)))
    lock = threading.Lock()
    retries = [0]
    errors: list[str] = []

    def worker() -> None:
        s = requests.Session()
        if auth:
            s.auth = auth
        while True:
            with lock:
                i = next(nxt, None)
            if i is None or errors:
                return
            delay = 0.05
            while True:
                r = s.post(url, data=bodies[i], timeout=300)
                if r.status_code == 204:
                    break
                if r.status_code in (500, 503) and delay < 30:
                    with lock:
                        retries[0] += 1
                    time.sleep(delay)
                    delay *= 2
                    continue
                errors.append(f"{r.status_code} {r.text[:300]}")
                return

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"write to {url} failed: {errors[0]}")
    return {"seconds": time.perf_counter() - t0, "retries": retries[0]}


def proc_cpu_seconds(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def wait_quiet(pid: int, limit: float = 240.0) -> float:
    """Wait until the process uses < 3% of a core for 3 s in a row (background
    compactions done); returns the seconds waited."""
    t0 = time.perf_counter()
    quiet = 0
    last = proc_cpu_seconds(pid)
    while time.perf_counter() - t0 < limit and quiet < 3:
        time.sleep(1)
        now = proc_cpu_seconds(pid)
        quiet = quiet + 1 if now - last < 0.03 else 0
        last = now
    return time.perf_counter() - t0


# ---------------------------------------------------------------- queries

def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_ns(v) -> int:
    """Pond renders timestamps as text; InfluxDB (epoch=ns) as integers."""
    if isinstance(v, int):
        return v
    d = datetime.fromisoformat(v.replace(" ", "T").replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return int(d.timestamp()) * 1_000_000_000 + d.microsecond * 1000


class Influx:
    def __init__(self, url: str):
        self.url = url
        self.s = requests.Session()

    def raw(self, q: str) -> bytes:
        r = self.s.get(f"{self.url}/query", params={"db": DB, "q": q, "epoch": "ns"}, timeout=600)
        r.raise_for_status()
        return r.content

    @staticmethod
    def series(body: bytes) -> list[dict]:
        res = json.loads(body)["results"][0]
        if "error" in res:
            raise RuntimeError(f"influxql: {res['error']}")
        return res.get("series", [])


class Pond:
    def __init__(self, url: str):
        self.url = url
        self.s = requests.Session()
        self.s.auth = AUTH

    def raw(self, sql: str, fmt: str = "json") -> bytes:
        body = {"sql": sql} if fmt == "json" else {"sql": sql, "format": fmt}
        r = self.s.post(f"{self.url}/api/v1/query", json=body, headers={"Cache-Control": "no-cache"}, timeout=600)
        if r.status_code != 200:
            raise RuntimeError(f"pond query {sql!r}: {r.status_code} {r.text[:500]}")
        return r.content

    def rows(self, sql: str) -> tuple[list[str], list[list]]:
        d = json.loads(self.raw(sql))
        return [c["name"] for c in d["columns"]], d["data"]


def queries(hosts: int, seconds: int, host: str, ts_literal: str) -> dict:
    lo, hi = START, START + seconds
    return {
        "bucket_1h": {
            "title": "1-hour buckets over the whole range: mean(usage_user), max(usage_system)",
            "influxql": f"SELECT mean(usage_user), max(usage_system) FROM cpu "
                        f"WHERE time >= '{iso(lo)}' AND time < '{iso(hi)}' GROUP BY time(1h)",
            "sql": f"SELECT time_bucket(INTERVAL '1 hour', time) AS t, avg(usage_user), max(usage_system) FROM {DB}.cpu "
                   f"WHERE time >= {ts_literal} '{iso(lo)[:-1].replace('T', ' ')}' "
                   f"AND time < {ts_literal} '{iso(hi)[:-1].replace('T', ' ')}' GROUP BY 1 ORDER BY 1",
        },
        "last_per_host": {
            "title": f"last point per host ({hosts} hosts)",
            "influxql": "SELECT last(usage_user) FROM cpu GROUP BY host",
            "sql": f"SELECT host, max(time), arg_max(usage_user, time) FROM {DB}.cpu GROUP BY host ORDER BY host",
        },
        "one_host_scan": {
            "title": f"every point of one host ({seconds:,} rows, all fields)",
            "influxql": f"SELECT * FROM cpu WHERE host = '{host}'",
            "sql": f"SELECT * FROM {DB}.cpu WHERE host = '{host}'",
        },
    }


def normalize_influx(name: str, body: bytes):
    series = Influx.series(body)
    if name == "bucket_1h":
        return [(int(t), m, x) for t, m, x in series[0]["values"]]
    if name == "last_per_host":
        return {s["tags"]["host"]: (int(s["values"][0][0]), s["values"][0][1]) for s in series}
    cols = series[0]["columns"]
    return scan_summary([dict(zip(cols, v)) for v in series[0]["values"]])


def normalize_pond(name: str, cols: list[str], data: list[list]):
    if name == "bucket_1h":
        return [(to_ns(t), m, x) for t, m, x in data]
    if name == "last_per_host":
        return {h: (to_ns(t), u) for h, t, u in data}
    return scan_summary([dict(zip(cols, v)) for v in data])


def scan_summary(rows: list[dict]) -> dict:
    """Row count, the set of times and per-field sums: equal answers, not just equal sizes."""
    times = sorted(to_ns(r["time"]) for r in rows)
    return {"rows": len(rows), "hosts": sorted({r["host"] for r in rows}),
            "time_min": times[0] if times else None, "time_max": times[-1] if times else None,
            "time_sum": sum(times),
            **{f: math.fsum(r[f] for r in rows) for f in ("usage_user", "usage_system", "usage_idle")}}


def same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-9)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def arrow_rows(body: bytes) -> int:
    import pyarrow.ipc as ipc
    return ipc.open_stream(io.BytesIO(body)).read_all().num_rows


def timed(fn) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000, out


# ---------------------------------------------------------------- main

def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "?")
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "loadavg": " ".join(open("/proc/loadavg").read().split()[:3])}


def start_pond(tmp: Path) -> PondServer:
    """The binary may be mid-rebuild: retry a few times, a minute apart."""
    ext = Path(os.environ.get("POND_EXTENSION_DIR", os.path.expanduser("~/.cache/pond/extensions")))
    for attempt in range(4):
        try:
            return PondServer(data_dir=tmp / f"pond{attempt}", ext_dir=ext, password=PASSWORD,
                              extra_args=["--lake-compact-interval-secs", "0"]).start()
        except (PondStartError, OSError) as e:
            if attempt == 3:
                raise
            print(f"pond did not start ({str(e).splitlines()[0]}); retrying in 60 s", flush=True)
            time.sleep(60)
    raise AssertionError("unreachable")


def dir_bytes(p: Path, suffix: str) -> tuple[int, int]:
    files = [f for f in p.rglob(f"*{suffix}") if f.is_file()]
    return len(files), sum(f.stat().st_size for f in files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=4, help="hours of 1-second points (24 = the issue's full day)")
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per query and system (median reported)")
    ap.add_argument("--writers", type=int, default=4, help="concurrent HTTP writers while loading")
    ap.add_argument("--body-lines", type=int, default=5000, help="lines per write request")
    ap.add_argument("--host", default="h0042", help="the host of the one-host scan")
    ap.add_argument("--no-compact", action="store_true", help="skip the second Pond pass after compaction")
    ap.add_argument("--out", default="influx_query", help="results file stem under bench/results")
    args = ap.parse_args()
    seconds = int(args.hours * 3600)
    points = seconds * args.hosts
    m0 = machine()
    print(f"generating {points:,} points ({args.hosts} hosts x {seconds:,} s) ...", flush=True)
    t0 = time.perf_counter()
    bodies = make_bodies(args.hosts, seconds, args.body_lines)
    gen_s = time.perf_counter() - t0
    lp_bytes = sum(len(b) for b in bodies)
    print(f"  {len(bodies):,} bodies, {lp_bytes / 1e6:,.0f} MB in {gen_s:.1f} s", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="pond-influxq-bench-"))
    (tmp / "influx").mkdir()
    influx = InfluxServer(base_dir=tmp / "influx").start()
    pond = None
    res: dict = {"load": {}}
    try:
        pond = start_pond(tmp)
        ix, pd = Influx(influx.url), Pond(pond.http_url)
        influx.create_database(DB)

        # Each system loads alone; InfluxDB first, then it is left to finish its compactions.
        w = load(f"{influx.url}/write?db={DB}&precision=s", bodies, args.writers)
        quiet_s = wait_quiet(influx.proc.pid)
        tsm = dir_bytes(tmp / "influx" / "data", ".tsm")
        res["load"]["influxdb"] = {"seconds": round(w["seconds"], 2), "lines_per_s": round(points / w["seconds"]),
                                   "retries": w["retries"], "compaction_wait_s": round(quiet_s, 1),
                                   "tsm_files": tsm[0], "tsm_mb": round(tsm[1] / 1e6, 1)}
        print(f"influxdb: loaded in {w['seconds']:.1f} s ({points / w['seconds']:,.0f} lines/s), "
              f"quiet after {quiet_s:.0f} s more; {tsm[0]} TSM files, {tsm[1] / 1e6:.0f} MB", flush=True)
        bodies_count = len(bodies)
        w = load(f"{pond.http_url}/write?db={DB}&precision=s", bodies, args.writers, auth=AUTH)
        del bodies
        t0 = time.perf_counter()
        r = pd.s.post(f"{pond.http_url}/api/v1/lake/flush?db={DB}", timeout=600)
        r.raise_for_status()
        flush_s = time.perf_counter() - t0
        pq = dir_bytes(pond.data_dir, ".parquet")
        res["load"]["pond"] = {"seconds": round(w["seconds"], 2), "lines_per_s": round(points / w["seconds"]),
                               "retries": w["retries"], "flush_s": round(flush_s, 2),
                               "sustained_lines_per_s": round(points / (w["seconds"] + flush_s)),
                               "parquet_files": pq[0], "parquet_mb": round(pq[1] / 1e6, 1)}
        print(f"pond: loaded in {w['seconds']:.1f} s ({points / w['seconds']:,.0f} lines/s), flush {flush_s:.1f} s; "
              f"{pq[0]} Parquet files, {pq[1] / 1e6:.0f} MB", flush=True)

        cols, desc = pd.rows(f"DESCRIBE {DB}.cpu")
        schema = {r[0]: r[1] for r in desc}
        res["pond_schema"] = schema
        ts_literal = "TIMESTAMPTZ" if "TIME ZONE" in schema["time"].upper() or "TZ" in schema["time"].upper() else "TIMESTAMP"
        qs = queries(args.hosts, seconds, args.host, ts_literal)
        count = pd.rows(f"SELECT count(*) FROM {DB}.cpu")[1][0][0]
        icount = Influx.series(ix.raw("SELECT count(usage_user) FROM cpu"))[0]["values"][0][1]
        assert count == points and icount == points, f"row counts: pond {count}, influxdb {icount}, expected {points}"

        def verify(phase: str) -> dict:
            out = {}
            for name, q in qs.items():
                a = normalize_influx(name, ix.raw(q["influxql"]))
                b = normalize_pond(name, *pd.rows(q["sql"]))
                ok = same(a, b)
                rows = a["rows"] if name == "one_host_scan" else len(a)
                out[name] = {"match": ok, "rows": rows}
                if not ok:
                    print(f"MISMATCH ({phase}) {name}:\n influx {str(a)[:600]}\n pond   {str(b)[:600]}", flush=True)
            return out

        def run_phase(phase: str, with_influx: bool) -> dict:
            out = {}
            for name, q in qs.items():
                fns = {"pond_json": lambda: pd.raw(q["sql"])}
                if with_influx:
                    fns = {"influxdb": lambda: ix.raw(q["influxql"]), **fns}
                if name == "one_host_scan":
                    fns["pond_arrow"] = lambda: pd.raw(q["sql"], "arrow")
                times: dict[str, list[float]] = {k: [] for k in fns}
                sizes = {}
                for k, fn in fns.items():  # warm-up
                    sizes[k] = len(fn())
                for i in range(args.runs):
                    order = list(fns) if i % 2 == 0 else list(reversed(fns))
                    for k in order:
                        ms, body = timed(fns[k])
                        times[k].append(ms)
                if "pond_arrow" in fns:
                    assert arrow_rows(pd.raw(q["sql"], "arrow")) == seconds
                out[name] = {k: {"median_ms": round(statistics.median(v), 2), "min_ms": round(min(v), 2),
                                 "max_ms": round(max(v), 2), "response_bytes": sizes[k]} for k, v in times.items()}
                print(f"  [{phase}] {name}: " + ", ".join(f"{k} {statistics.median(v):.1f} ms" for k, v in times.items()),
                      flush=True)
            return out

        res["verify_flushed"] = verify("flushed")
        res["flushed"] = run_phase("flushed", with_influx=True)
        if not args.no_compact:
            t0 = time.perf_counter()
            r = pd.s.post(f"{pond.http_url}/api/v1/lake/compact?db={DB}", timeout=900)
            r.raise_for_status()
            pq = dir_bytes(pond.data_dir, ".parquet")
            res["compact"] = {"seconds": round(time.perf_counter() - t0, 2), "response": r.json(),
                              "parquet_files_on_disk": pq[0], "parquet_mb": round(pq[1] / 1e6, 1)}
            print(f"pond: compacted in {res['compact']['seconds']} s; {pq[0]} Parquet files on disk", flush=True)
            res["verify_compacted"] = verify("compacted")
            res["compacted"] = run_phase("compacted", with_influx=False)
        res["lake_status"] = pd.s.get(f"{pond.http_url}/api/v1/lake/status", timeout=60).json()
        # Where InfluxDB's scan time goes: the same rows counted in the server (no per-row JSON).
        ms = [timed(lambda: ix.raw(f"SELECT count(usage_user), sum(usage_user), sum(usage_system), sum(usage_idle) "
                                   f"FROM cpu WHERE host = '{args.host}'"))[0] for _ in range(args.runs)]
        res["influx_scan_aggregated_ms"] = round(statistics.median(ms), 2)
        agg_sql = (f"SELECT count(*), sum(usage_user), sum(usage_system), sum(usage_idle) FROM {DB}.cpu "
                   f"WHERE host = '{args.host}'")
        pd.raw(agg_sql)
        res["pond_scan_aggregated_ms"] = round(statistics.median(timed(lambda: pd.raw(agg_sql))[0]
                                                                 for _ in range(args.runs)), 2)
        # Pond's fixed cost per query: a statement with no table, and one on the measurement that reads no rows.
        floor = {}
        for label, sql in (("select_1", "SELECT 1"),
                           ("empty_lake_query", f"SELECT count(*) FROM {DB}.cpu WHERE time < TIMESTAMP '2000-01-01'")):
            pd.raw(sql)
            floor[label] = round(statistics.median(timed(lambda: pd.raw(sql))[0] for _ in range(args.runs)), 2)
        res["pond_floor_ms"] = floor
    finally:
        if pond:
            pond.stop()
        influx.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    m1 = machine()
    pond_version = subprocess.run([os.environ.get("POND_BIN", os.path.expanduser("~/.cache/pond/target/release/pond")),
                                   "--version"], capture_output=True, text=True).stdout.strip()
    influx_version = subprocess.run([str(influx.bin), "version"], capture_output=True, text=True).stdout.strip()
    result = {"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
              "machine": {**m0, "loadavg_end": m1["loadavg"]}, "pond_version": pond_version,
              "influxdb_version": influx_version,
              "params": {"hours": args.hours, "hosts": args.hosts, "points": points, "runs": args.runs,
                         "writers": args.writers, "body_lines": args.body_lines, "bodies": bodies_count,
                         "line_protocol_mb": round(lp_bytes / 1e6, 1), "host": args.host},
              "queries": {k: {kk: v for kk, v in q.items()} for k, q in qs.items()}, **res}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = render(result)
    (out / f"{args.out}.md").write_text(md)
    print(md)


def render(r: dict) -> str:
    m, p, li, lp = r["machine"], r["params"], r["load"]["influxdb"], r["load"]["pond"]
    md = [f"# Time-series queries: Pond vs InfluxDB 1.6.7 ({r['at']}, commit {r['commit']})", "",
          f"{m['cpu']}, {m['cpus']} cores, {m['mem_gib']} GiB, {m['platform']}; load average {m['loadavg']} at the "
          f"start, {m['loadavg_end']} at the end. {r['influxdb_version']}; {r['pond_version']}.", "",
          f"Data: {p['points']:,} points = {p['hosts']:,} hosts x {p['hours']:g} h of 1-second points "
          f"({p['line_protocol_mb']:,.0f} MB of line protocol), the same bodies to both, {p['writers']} concurrent "
          f"HTTP writers, {p['body_lines']:,} lines per request. Each system loads alone.", "",
          "| load | seconds | lines/s | notes |", "|---|---|---|---|",
          f"| InfluxDB 1.6.7 | {li['seconds']} | {li['lines_per_s']:,} | then {li['compaction_wait_s']} s until its "
          f"compactions went quiet; {li['tsm_files']} TSM files, {li['tsm_mb']} MB |",
          f"| Pond (acknowledged) | {lp['seconds']} | {lp['lines_per_s']:,} | + flush {lp['flush_s']} s = "
          f"{lp['sustained_lines_per_s']:,} lines/s sustained; {lp['parquet_files']} Parquet files, {lp['parquet_mb']} MB |",
          "", f"Queries: HTTP JSON on both (InfluxDB `/query?epoch=ns`, Pond `/api/v1/query` with "
          f"`Cache-Control: no-cache`); time = until the whole body arrived. Warm-up, then median of {p['runs']} runs, "
          "alternating systems. Ratio = InfluxDB / Pond (goal ≥ 5×).", "",
          "| query | rows | answers match | InfluxDB (ms) | Pond, flushed (ms) | ratio | Pond, compacted (ms) | ratio |",
          "|---|---|---|---|---|---|---|---|"]
    for name, q in r["queries"].items():
        f = r["flushed"][name]
        c = r.get("compacted", {}).get(name)
        i_ms = f["influxdb"]["median_ms"]
        match = r["verify_flushed"][name]["match"] and (r.get("verify_compacted", {}).get(name, {}).get("match", True))
        row = (f"| {q['title']} | {r['verify_flushed'][name]['rows']:,} | {'yes' if match else '**NO**'} | {i_ms} | "
               f"{f['pond_json']['median_ms']} | **{i_ms / f['pond_json']['median_ms']:.1f}×** | ")
        row += (f"{c['pond_json']['median_ms']} | **{i_ms / c['pond_json']['median_ms']:.1f}×** |" if c else "– | – |")
        md.append(row)
        if "pond_arrow" in f:
            fa, ca = f["pond_arrow"]["median_ms"], c["pond_arrow"]["median_ms"] if c else None
            md.append(f"| same scan, Pond Arrow IPC | | | {i_ms} | {fa} | **{i_ms / fa:.1f}×** | "
                      + (f"{ca} | **{i_ms / ca:.1f}×** |" if ca else "– | – |"))
    scan = r["flushed"]["one_host_scan"]
    md += ["", f"Response sizes for the scan: InfluxDB {scan['influxdb']['response_bytes'] / 1e6:.1f} MB JSON, Pond "
               f"{scan['pond_json']['response_bytes'] / 1e6:.1f} MB JSON / {scan['pond_arrow']['response_bytes'] / 1e6:.1f} MB "
               f"Arrow. InfluxDB counting and summing the same host's rows in the server (no rows returned): "
               f"{r['influx_scan_aggregated_ms']} ms; Pond doing the same: {r['pond_scan_aggregated_ms']} ms."]
    fl = r["pond_floor_ms"]
    md += [f"Pond's fixed cost per HTTP query on this run: `SELECT 1` {fl['select_1']} ms; a query on the measurement "
           f"whose time filter excludes every file {fl['empty_lake_query']} ms."]
    if "compact" in r:
        md += [f"Pond compaction (`POST /api/v1/lake/compact`): {r['compact']['seconds']} s, "
               f"{r['compact']['parquet_files_on_disk']} Parquet files on disk afterwards."]
    md += ["", "Queries:", ""]
    for name, q in r["queries"].items():
        md += [f"- {name}: InfluxQL `{q['influxql']}`", f"  / Pond `{q['sql']}`"]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
