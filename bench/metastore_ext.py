"""The pond_metastore DuckDB extension against Pond's server, on the same real Hive
Metastore 2.3.10, in one run.

A table with N partitions (100,000 by default; key `dt`, a string or a date) of
which only the queried one has a data file. The same one-partition query is timed
two ways:

- extension: plain DuckDB (the Python package, in process) with the extension
  loaded: `SELECT count(*), sum(v) FROM metastore_scan(uri, db, t, filter := 'dt = …')`;
- server: `pond serve` with `ATTACH '<uri>' AS h (TYPE hive)`:
  `SELECT count(*), sum(v) FROM h.db.t WHERE dt = '…'` over HTTP.

Planning = EXPLAIN of the query (the extension plans in its bind; the server in
its rewrite, and reports "planned in" itself). Total = the query. Cold = a fresh
DuckDB (extension) / right after REFRESH CATALOG (server); warm = median of --runs
with metadata cached. Ratios are extension / server (below 1: the extension is faster;
the server's times include an HTTP round trip on loopback).

Writes bench/results/metastore_ext.md and .json with the machine it ran on.

    .venv/bin/python bench/metastore_ext.py [--sizes 100000] [--runs 7] [--keys string,date]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
sys.path.insert(0, str(ROOT / "bench"))
from catalog import AUTH, PASSWORD, day, machine, planned_ms, q  # noqa: E402
from hms_server import HiveMetastore  # noqa: E402
from pond_server import PondServer, ensure_extensions  # noqa: E402

EXT = Path(os.environ.get("POND_METASTORE_EXT", Path.home() / ".cache/pond/target-ext/release/pond_metastore.duckdb_extension"))


def ms(f) -> tuple[float, object]:
    t = time.perf_counter()
    out = f()
    return (time.perf_counter() - t) * 1000, out


def ext_conn() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    c.execute(f"LOAD '{EXT}'")
    return c


def measure(hms: HiveMetastore, pond: PondServer, data: Path, n: int, key: str, runs: int) -> dict:
    db = f"ext{n}_{key}"
    hms.create_database(db)
    base = data / db
    # No per-partition stats at add time (the metastore would list every new directory).
    hms.create_table(db, "t", [("v", "bigint")], partition_keys=[("dt", key)], location=base,
                     table_params={"DO_NOT_UPDATE_STATS": "true"})
    target = day(n // 2)
    loc = base / f"dt={target}"
    loc.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT range AS v FROM range(1000)) TO '{loc}/f.parquet' (FORMAT parquet)")
    took = hms.add_partitions_bulk(db, "t", ([day(i)] for i in range(n)), batch=2000, report=False)
    print(f"  {n:,} partitions ({key} key) added in {took:.1f} s", flush=True)
    literal = f"DATE '{target}'" if key == "date" else f"'{target}'"
    flt = f"dt = {literal}".replace("'", "''")
    ext_sql = f"SELECT count(*), sum(v) FROM metastore_scan('{hms.uri}', '{db}', 't', filter := '{flt}', cache_ttl := '600', timeout := '120')"
    srv_sql = f"SELECT count(*), sum(v) FROM h.{db}.t WHERE dt = {literal}"
    want = [(1000, 499500)]

    # Extension, cold: a new database each time (its catalogs, and their cache, are per database).
    cold_ext = []
    for _ in range(3):
        con = ext_conn()
        plan_ms, _ = ms(lambda: con.execute("EXPLAIN " + ext_sql).fetchall())
        con.close()
        con = ext_conn()
        total_ms, rows = ms(lambda: con.execute(ext_sql).fetchall())
        assert rows == want, rows
        cold_ext.append((plan_ms, total_ms))
        con.close()
    con = ext_conn()
    con.execute(ext_sql).fetchall()
    warm_ext_plan = statistics.median(ms(lambda: con.execute("EXPLAIN " + ext_sql).fetchall())[0] for _ in range(runs))
    warm_ext_total = statistics.median(ms(lambda: con.execute(ext_sql).fetchall())[0] for _ in range(runs))
    con.close()

    # Server, cold: after REFRESH CATALOG.
    cold_srv = []
    for _ in range(3):
        q(pond, f"REFRESH CATALOG h {db} t")
        plan_ms, plan = ms(lambda: q(pond, "EXPLAIN " + srv_sql))
        note = next(r[1] for r in plan if r[0] == "external_scan")
        q(pond, f"REFRESH CATALOG h {db} t")
        total_ms, rows = ms(lambda: q(pond, srv_sql))
        assert [tuple(r) for r in rows] == want, rows
        cold_srv.append((plan_ms, total_ms, planned_ms(note)))
    q(pond, srv_sql)
    warm = [ms(lambda: q(pond, "EXPLAIN " + srv_sql)) for _ in range(runs)]
    warm_srv_plan = statistics.median(t for t, _ in warm)
    warm_srv_in_pond = statistics.median(planned_ms(next(r[1] for r in p if r[0] == "external_scan")) for _, p in warm)
    warm_srv_total = statistics.median(ms(lambda: q(pond, srv_sql))[0] for _ in range(runs))

    med = lambda xs, i: round(statistics.median(x[i] for x in xs), 1)  # noqa: E731
    r = {
        "partitions": n, "key": key,
        "ext_cold_plan_ms": med(cold_ext, 0), "ext_cold_total_ms": med(cold_ext, 1),
        "ext_warm_plan_ms": round(warm_ext_plan, 1), "ext_warm_total_ms": round(warm_ext_total, 1),
        "srv_cold_plan_ms": med(cold_srv, 0), "srv_cold_total_ms": med(cold_srv, 1), "srv_cold_planned_in_pond_ms": med(cold_srv, 2),
        "srv_warm_plan_ms": round(warm_srv_plan, 1), "srv_warm_total_ms": round(warm_srv_total, 1),
        "srv_warm_planned_in_pond_ms": round(warm_srv_in_pond, 1), "server_explain": note,
    }
    for phase in ["cold_plan", "cold_total", "warm_plan", "warm_total"]:
        r[f"ratio_{phase}"] = round(r[f"ext_{phase}_ms"] / r[f"srv_{phase}_ms"], 2)
    print(f"  {r}", flush=True)
    return r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000")
    ap.add_argument("--keys", default="string,date")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "metastore_ext"))
    args = ap.parse_args()
    if not EXT.exists():
        sys.exit(f"{EXT} does not exist: run extensions/metastore/build.sh")
    ext_dir = ensure_extensions(["icu"])
    results = []
    with tempfile.TemporaryDirectory(prefix="pond-bench-ext-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        hms = HiveMetastore(base_dir=tmp / "hms", heap="2g").start()
        pond = PondServer(data_dir=tmp / "pond", password=PASSWORD, ext_dir=ext_dir, extra_args=["--allowed-paths", str(data)]).start()
        try:
            q(pond, f"ATTACH '{hms.uri}' AS h (TYPE hive, CACHE_TTL 600, TIMEOUT 120)")
            for n in [int(s) for s in args.sizes.split(",") if s]:
                for key in [k for k in args.keys.split(",") if k]:
                    results.append(measure(hms, pond, data, n, key, args.runs))
                    write(args.out, results)  # each result as soon as it is measured
        finally:
            pond.stop()
            hms.stop()
    print(write(args.out, results))
    return 0


def write(out_path: str, results: list[dict]) -> str:
    out = {"machine": machine(), "duckdb": duckdb.__version__, "extension": str(EXT), "results": results}
    Path(out_path + ".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# pond_metastore extension vs Pond's server: one-partition query, same Hive Metastore",
        "",
        f"Machine: {out['machine']}; DuckDB (Python) {out['duckdb']}",
        "",
        "Milliseconds. Extension: in-process DuckDB, `metastore_scan(…, filter := 'dt = …')`. Server: `pond serve`, "
        "`ATTACH … (TYPE hive)`, `WHERE dt = …`, over HTTP on loopback. Plan = EXPLAIN; total = the query. "
        "Cold: fresh DuckDB / after REFRESH CATALOG (median of 3); warm: metadata cached (median of runs). "
        "Ratio = extension / server.",
        "",
        "| partitions | key | phase | extension | server | ratio | server's own planning |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        for phase, own in [("cold_plan", r["srv_cold_planned_in_pond_ms"]), ("cold_total", ""), ("warm_plan", r["srv_warm_planned_in_pond_ms"]), ("warm_total", "")]:
            lines.append(f"| {r['partitions']:,} | {r['key']} | {phase.replace('_', ' ')} | {r[f'ext_{phase}_ms']} | {r[f'srv_{phase}_ms']} | "
                         f"{r[f'ratio_{phase}']} | {own} |")
    lines += ["", "Server's EXPLAIN (last cold run): " + "; ".join(f"{r['key']}: {r['server_explain']}" for r in results), ""]
    Path(out_path + ".md").write_text("\n".join(lines))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
