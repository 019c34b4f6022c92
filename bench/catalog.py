"""External catalog benchmark: a real Hive Metastore 2.3.10 and a real `pond serve`.

1. Planning over many partitions: a table with N partitions (1K, 10K, 100K by
   default) registered in the metastore; one-partition queries are timed over HTTP:
   `EXPLAIN` (Pond's planning: metastore selection, listing of the selected
   directory, DuckDB's plan) and the query itself, for a string key (answered by the
   metastore's filter) and a date key (partition names filtered in Pond). Cold = the
   first query after REFRESH CATALOG, warm = median of later ones (metadata cached).
   Only the queried partition has a data file: any listing of another partition
   would show up as extra files in EXPLAIN's "files read".
2. Scan throughput: the same Parquet files (PARTS partitions x ROWS rows) read through
   the catalog and by `read_parquet` directly, in the same server, alternating, median
   of RUNS; the ratio catalog/direct (goal >= 0.95).

Writes bench/results/catalog.md and catalog.json with the machine it ran on.

    .venv/bin/python bench/catalog.py [--sizes 1000,10000,100000] [--runs 7] [--rows 4000000]
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

import duckdb
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
from hms_server import HiveMetastore  # noqa: E402
from pond_server import PondServer, ensure_extensions  # noqa: E402

PASSWORD = "bench-admin-pw-1"
AUTH = ("admin", PASSWORD)


def q(server: PondServer, sql: str):
    r = requests.post(f"{server.http_url}/api/v1/query", auth=AUTH, json={"sql": sql}, timeout=3600)
    if r.status_code != 200:
        raise RuntimeError(f"{sql[:120]}: {r.status_code} {r.text[:500]}")
    return r.json()["data"]


def timed(server: PondServer, sql: str) -> tuple[float, list]:
    t = time.perf_counter()
    data = q(server, sql)
    return (time.perf_counter() - t) * 1000, data


def planned_ms(note: str) -> float:
    """Pond's own planning time for the table, from EXPLAIN's external_scan row."""
    return float(note.rsplit("planned in ", 1)[1].split(" ms")[0])


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next((int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), 0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"cores": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem / 2**20, 1), "kernel": platform.release(),
            "commit": commit, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def day(i: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(1_500_000_000 + i * 86_400))


def planning(hms: HiveMetastore, pond: PondServer, data: Path, sizes: list[int], runs: int) -> list[dict]:
    out = []
    for n in sizes:
        db = f"plan{n}"
        hms.create_database(db)
        base = data / db
        for table, key_type in [("by_string", "string"), ("by_date", "date")]:
            hms.create_table(db, table, [("v", "bigint")], partition_keys=[("dt", key_type)], location=base / table)
            target = n // 2
            loc = base / table / f"dt={day(target)}"
            loc.mkdir(parents=True, exist_ok=True)
            duckdb.sql(f"COPY (SELECT range AS v FROM range(1000)) TO '{loc}/f.parquet' (FORMAT parquet)")
            took = hms.add_partitions_bulk(db, table, ([day(i)] for i in range(n)), batch=2000, report=False)
            print(f"  {n} partitions added to {db}.{table} in {took:.1f} s", flush=True)
            sql = f"SELECT count(*), sum(v) FROM hive.{db}.{table} WHERE dt = '{day(target)}'"
            q(pond, f"REFRESH CATALOG hive {db} {table}")
            cold_plan, plan = timed(pond, "EXPLAIN " + sql)
            note = next(r[1] for r in plan if r[0] == "external_scan")
            cold_total, rows = timed(pond, sql)
            assert rows == [[1000, 499500]], rows
            cold_pond = planned_ms(note)
            warm = [timed(pond, "EXPLAIN " + sql) for _ in range(runs)]
            warm_plan = statistics.median(t for t, _ in warm)
            warm_pond = statistics.median(planned_ms(next(r[1] for r in p if r[0] == "external_scan")) for _, p in warm)
            warm_total = statistics.median(timed(pond, sql)[0] for _ in range(runs))
            r = {"partitions": n, "key": key_type, "cold_planning_in_pond_ms": cold_pond, "warm_planning_in_pond_ms": warm_pond,
                 "cold_plan_ms": round(cold_plan, 1), "cold_total_ms": round(cold_total, 1),
                 "warm_plan_ms": round(warm_plan, 1), "warm_total_ms": round(warm_total, 1), "explain": note}
            print(f"  {r}", flush=True)
            out.append(r)
    return out


def scan(hms: HiveMetastore, pond: PondServer, data: Path, parts: int, rows: int, runs: int) -> dict:
    db = "scan"
    hms.create_database(db)
    base = data / "scan_t"
    per = rows // parts
    for p in range(parts):
        loc = base / f"p={p}"
        loc.mkdir(parents=True, exist_ok=True)
        duckdb.sql(f"COPY (SELECT range AS id, random() AS x, (range % 97)::INTEGER AS k, 'tag' || (range % 13) AS s "
                   f"FROM range({per})) TO '{loc}/f.parquet' (FORMAT parquet)")
    hms.create_table(db, "t", [("id", "bigint"), ("x", "double"), ("k", "int"), ("s", "string")],
                     partition_keys=[("p", "int")], location=base)
    hms.add_partitions(db, "t", [([p], base / f"p={p}") for p in range(parts)])
    agg = "count(*), sum(x), sum(k), count(DISTINCT s)"
    via_catalog = f"SELECT {agg} FROM hive.{db}.t"
    direct = f"SELECT {agg} FROM read_parquet('{base}/*/*.parquet', hive_partitioning = false)"
    a, b = q(pond, via_catalog), q(pond, direct)
    assert a[0][0] == b[0][0] == per * parts, (a, b)
    times = {"catalog": [], "direct": []}
    for _ in range(runs):
        times["catalog"].append(timed(pond, via_catalog)[0])
        times["direct"].append(timed(pond, direct)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["direct"] / med["catalog"]
    mb = sum(f.stat().st_size for f in base.rglob("*.parquet")) / 2**20
    r = {"rows": per * parts, "partitions": parts, "parquet_mib": round(mb, 1), "catalog_ms": round(med["catalog"], 1),
         "direct_ms": round(med["direct"], 1), "throughput_ratio_catalog_vs_direct": round(ratio, 3),
         "catalog_mrows_s": round(per * parts / med["catalog"] / 1000, 1), "runs": runs}
    print(f"  {r}", flush=True)
    return r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "catalog"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    ext_dir = ensure_extensions(["icu"])
    with tempfile.TemporaryDirectory(prefix="pond-bench-catalog-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        hms = HiveMetastore(base_dir=tmp / "hms", heap="2g").start()
        pond = PondServer(data_dir=tmp / "pond", password=PASSWORD, ext_dir=ext_dir,
                          extra_args=["--allowed-paths", str(data)]).start()
        try:
            q(pond, f"ATTACH '{hms.uri}' AS hive (TYPE hive, CACHE_TTL 600, TIMEOUT 120)")
            print("planning:", flush=True)
            plans = planning(hms, pond, data, sizes, args.runs)
            print("scan:", flush=True)
            scans = scan(hms, pond, data, args.parts, args.rows, args.runs)
        finally:
            pond.stop()
            hms.stop()
    result = {"machine": machine(), "planning": plans, "scan": scans}
    Path(args.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# External catalog (Hive Metastore 2.3.10) benchmark",
        "",
        f"Machine: {result['machine']}",
        "",
        "## Planning a one-partition query (HTTP, ms)",
        "",
        "Planning in Pond = metadata, partition selection and listing for the table (EXPLAIN's `planned in`);",
        "EXPLAIN and query = client-side HTTP round trips.",
        "",
        "| partitions | key type | planning in Pond cold | warm (median) | EXPLAIN cold | query cold | EXPLAIN warm | query warm | selection |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in plans:
        lines.append(f"| {p['partitions']:,} | {p['key']} | {p['cold_planning_in_pond_ms']} | {p['warm_planning_in_pond_ms']} | "
                     f"{p['cold_plan_ms']} | {p['cold_total_ms']} | {p['warm_plan_ms']} | "
                     f"{p['warm_total_ms']} | {p['explain'].split(': ', 1)[-1]} |")
    s = scans
    lines += [
        "",
        f"## Scan throughput: {s['rows']:,} rows in {s['partitions']} Parquet partitions ({s['parquet_mib']} MiB)",
        "",
        "| through the catalog | read_parquet directly | ratio catalog/direct |",
        "|---:|---:|---:|",
        f"| {s['catalog_ms']} ms ({s['catalog_mrows_s']} M rows/s) | {s['direct_ms']} ms | {s['throughput_ratio_catalog_vs_direct']} |",
        "",
    ]
    Path(args.out + ".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
