"""External catalog benchmark, AWS Glue: a real moto server (Glue and S3 on one
port) and a real `pond serve`.

1. Planning: a table with N partitions (1K, 10K by default; string key) registered
   in moto's Glue with batch_create_partition; a one-partition query timed over HTTP:
   EXPLAIN (Pond's planning: `GetPartitions` with an `Expression`, listing the one
   selected prefix in S3, DuckDB's plan) and the query. Cold = first after REFRESH
   CATALOG, warm = median of later ones. Only the queried partition has an object.
   moto evaluates the expression in Python over every partition it holds, so cold
   numbers here are bounded by moto, not by Glue or Pond.
2. Scan throughput from moto's S3: the same Parquet objects read through the catalog
   and by `read_parquet('s3://…')` directly in the same server, alternating, median of
   RUNS; ratio catalog/direct (goal >= 0.95). Also `read_parquet` over the same
   explicit file list the catalog's reader uses (DuckDB sends a HEAD per file for a
   list, none for a glob, whose LIST gives sizes), and those requests timed against
   moto directly: what the remaining difference is made of.

Writes bench/results/catalog_glue.md and .json with the machine it ran on.

    .venv/bin/python bench/catalog_glue.py [--sizes 1000,10000] [--runs 7] [--rows 2000000]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
sys.path.insert(0, str(ROOT / "bench"))
from catalog import AUTH, PASSWORD, machine, planned_ms, q, timed  # noqa: E402
from helpers import s3_client, start_moto  # noqa: E402
from pond_server import PondServer, ensure_extensions  # noqa: E402

BUCKET = "bench-glue"
REGION = "us-east-1"
PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}


def sd(cols, loc):
    return {"Columns": [{"Name": n, "Type": t} for n, t in cols], "Location": loc, **PARQUET}


def parquet(sql: str) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(duckdb.connect().sql(sql).to_arrow_table(), buf)
    return buf.getvalue()


def planning(glue, s3, pond, sizes, runs):
    out = []
    for n in sizes:
        db = f"plan{n}"
        glue.create_database(DatabaseInput={"Name": db})
        cols = [("v", "bigint")]
        glue.create_table(DatabaseName=db, TableInput={"Name": "t", "StorageDescriptor": sd(cols, f"s3://{BUCKET}/{db}/t"),
                                                       "PartitionKeys": [{"Name": "k", "Type": "string"}]})
        target = n // 2
        s3.put_object(Bucket=BUCKET, Key=f"{db}/t/k=p{target}/f.parquet", Body=parquet("SELECT range AS v FROM range(1000)"))
        for start in range(0, n, 100):
            glue.batch_create_partition(DatabaseName=db, TableName="t", PartitionInputList=[
                {"Values": [f"p{i}"], "StorageDescriptor": sd(cols, f"s3://{BUCKET}/{db}/t/k=p{i}")} for i in range(start, min(n, start + 100))])
        sql = f"SELECT count(*), sum(v) FROM g.{db}.t WHERE k = 'p{target}'"
        q(pond, f"REFRESH CATALOG g {db} t")
        cold_plan, plan = timed(pond, "EXPLAIN " + sql)
        note = next(r[1] for r in plan if r[0] == "external_scan")
        cold_total, rows = timed(pond, sql)
        assert rows == [[1000, 499500]], rows
        warm = [timed(pond, "EXPLAIN " + sql) for _ in range(runs)]
        r = {"partitions": n, "cold_planning_in_pond_ms": planned_ms(note), "cold_plan_ms": round(cold_plan, 1),
             "cold_total_ms": round(cold_total, 1),
             "warm_planning_in_pond_ms": statistics.median(planned_ms(next(x[1] for x in p if x[0] == "external_scan")) for _, p in warm),
             "warm_plan_ms": round(statistics.median(t for t, _ in warm), 1),
             "warm_total_ms": round(statistics.median(timed(pond, sql)[0] for _ in range(runs)), 1), "explain": note}
        print(f"  {r}", flush=True)
        out.append(r)
    return out


def moto_requests(url, parts, runs, threads):
    """Median ms of the requests each direct read makes of moto: the catalog
    reader's HEAD per file (`threads` at a time, as DuckDB's scan threads open
    files) and the glob's LISTs (one after the other)."""
    import concurrent.futures

    clients = [s3_client(url) for _ in range(threads)]
    keys = [f"scan/t/p={p}/f.parquet" for p in range(parts)]

    def heads():
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            list(ex.map(lambda i: clients[i % threads].head_object(Bucket=BUCKET, Key=keys[i]), range(parts)))

    def lists():
        clients[0].list_objects_v2(Bucket=BUCKET, Prefix="scan/t/", Delimiter="/")
        clients[0].list_objects_v2(Bucket=BUCKET, Prefix="scan/t/")

    def med(f):
        out = []
        for _ in range(runs):
            t = time.perf_counter()
            f()
            out.append((time.perf_counter() - t) * 1000)
        return round(statistics.median(out), 1)

    return {"threads": threads, f"{parts}_heads_ms": med(heads), "2_lists_ms": med(lists)}


def scan(glue, s3, pond, parts, rows, runs):
    db = "scan"
    glue.create_database(DatabaseInput={"Name": db})
    cols = [("id", "bigint"), ("x", "double"), ("k", "int"), ("s", "string")]
    per = rows // parts
    for p in range(parts):
        body = parquet(f"SELECT range AS id, random() AS x, (range % 97)::INTEGER AS k, 'tag' || (range % 13) AS s FROM range({per})")
        s3.put_object(Bucket=BUCKET, Key=f"scan/t/p={p}/f.parquet", Body=body)
    glue.create_table(DatabaseName=db, TableInput={"Name": "t", "StorageDescriptor": sd(cols, f"s3://{BUCKET}/scan/t"),
                                                   "PartitionKeys": [{"Name": "p", "Type": "int"}]})
    glue.batch_create_partition(DatabaseName=db, TableName="t", PartitionInputList=[
        {"Values": [str(p)], "StorageDescriptor": sd(cols, f"s3://{BUCKET}/scan/t/p={p}")} for p in range(parts)])
    agg = "count(*), sum(x), sum(k), count(DISTINCT s)"
    via = f"SELECT {agg} FROM g.{db}.t"
    direct = f"SELECT {agg} FROM read_parquet('s3://{BUCKET}/scan/t/*/*.parquet', hive_partitioning = false)"
    files = ", ".join(f"'s3://{BUCKET}/scan/t/p={p}/f.parquet'" for p in range(parts))
    listed = f"SELECT {agg} FROM read_parquet([{files}], hive_partitioning = false)"
    a, b, c = q(pond, via), q(pond, direct), q(pond, listed)
    assert a[0][0] == b[0][0] == c[0][0] == per * parts, (a, b, c)
    times = {"catalog": [], "direct": [], "list": []}
    for _ in range(runs):
        times["catalog"].append(timed(pond, via)[0])
        times["direct"].append(timed(pond, direct)[0])
        times["list"].append(timed(pond, listed)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    r = {"rows": per * parts, "partitions": parts, "catalog_ms": round(med["catalog"], 1), "direct_ms": round(med["direct"], 1),
         "direct_list_ms": round(med["list"], 1),
         "throughput_ratio_catalog_vs_direct": round(med["direct"] / med["catalog"], 3),
         "throughput_ratio_catalog_vs_direct_list": round(med["list"] / med["catalog"], 3), "runs": runs}
    print(f"  {r}", flush=True)
    return r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "catalog_glue"))
    args = ap.parse_args()
    ext = ensure_extensions(["icu", "httpfs"])
    url, moto = start_moto()
    work = Path(tempfile.mkdtemp(prefix="pond-bench-glue-"))
    pond = PondServer(data_dir=work / "data", password=PASSWORD, ext_dir=ext, extensions="icu,httpfs",
                      extra_args=["--allowed-paths", f"s3://{BUCKET}/"]).start()
    try:
        import boto3

        s3 = s3_client(url)
        s3.create_bucket(Bucket=BUCKET)
        glue = boto3.client("glue", endpoint_url=url, aws_access_key_id="k", aws_secret_access_key="s", region_name=REGION)
        q(pond, f"CREATE SECRET aws1 (TYPE aws, KEY_ID 'bench', SECRET 'bench-secret', REGION '{REGION}')")
        q(pond, f"ATTACH 'glue' AS g (TYPE glue, REGION '{REGION}', ENDPOINT '{url}', S3_ENDPOINT '{url}', S3_URL_STYLE 'path', "
                "SECRET 'aws1', TIMEOUT 120)")
        print("planning", flush=True)
        plan = planning(glue, s3, pond, [int(x) for x in args.sizes.split(",")], args.runs)
        print("scan", flush=True)
        sc = scan(glue, s3, pond, args.parts, args.rows, args.runs)
        threads = int(q(pond, "SELECT current_setting('threads')")[0][0])
        sc["moto_requests"] = moto_requests(url, args.parts, max(args.runs, 15), threads)
        print(f"  {sc['moto_requests']}", flush=True)
    finally:
        pond.stop()
        moto.kill()
    result = {"machine": machine(), "planning": plan, "scan": sc}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    m = result["machine"]
    lines = [f"# External catalog (AWS Glue in moto) benchmark\n",
             f"{m['cores']} cores, {m['cpu']}, {m['mem_gib']} GiB, kernel {m['kernel']}, commit {m['commit']}, {m['date_utc']}\n",
             "| partitions | cold planning in Pond ms | cold total ms | warm planning in Pond ms | warm total ms |", "|---|---|---|---|---|"]
    for r in plan:
        lines.append(f"| {r['partitions']} | {r['cold_planning_in_pond_ms']} | {r['cold_total_ms']} | {r['warm_planning_in_pond_ms']} | {r['warm_total_ms']} |")
    lines += ["", f"Scan from moto S3: {sc['rows']} rows in {sc['partitions']} partitions: catalog {sc['catalog_ms']} ms, "
              f"read_parquet {sc['direct_ms']} ms, ratio {sc['throughput_ratio_catalog_vs_direct']} (median of {sc['runs']})",
              "", f"read_parquet over the catalog reader's explicit file list: {sc['direct_list_ms']} ms, ratio catalog vs it "
              f"{sc['throughput_ratio_catalog_vs_direct_list']}",
              "", f"moto alone, median of {max(args.runs, 15)}: {args.parts} HEADs ({sc['moto_requests']['threads']} at a time, "
              f"the explicit list's) {sc['moto_requests'][f'{args.parts}_heads_ms']} ms; 2 LISTs (the glob's) "
              f"{sc['moto_requests']['2_lists_ms']} ms",
              "", f"load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
