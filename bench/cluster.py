"""Several Pond nodes on one lake, on this one machine: what each extra node costs.

    .venv/bin/python bench/cluster.py [--seconds 10]

Starts a real PostgreSQL 15 (the DuckLake catalog and the shared metadata) and a
moto S3 server (the Parquet files), then for 1, 2 and 3 `pond serve --node-id`
processes on a fresh lake each:
- sustained ingest: every node gets the same line-protocol load (two client
  threads per node posting pre-built 5,000-line bodies) for `--seconds`; the
  aggregate and per-node accepted lines/s. The nodes share this machine's cores,
  so this shows the overhead per node, not a speed-up;
- flush commit latency: the flushes of that run, from each node's log
  ("hot rows flushed to the lake", the write of the day files plus the one
  DuckLake registration commit in PostgreSQL), p50/p99;
- cross-node visibility: with `--ingest-flush-interval-ms` (default 1000), one
  row written to the first node, polled on the last one until it is there;
  p50/p99 over `--lag-samples` rows (idle nodes, the flush interval bounds it),
  and the same after `POST /api/v1/lake/flush?nodes=all` (the explicit way to
  make it shorter).
Writes bench/results/cluster.md and .json with the machine it ran on.

    .venv/bin/python bench/cluster.py --window [--seconds 10]

The lost-disk window instead: one node under the same load with flush
intervals of 60 s, 5 s, 1 s and 250 ms, and with `--ingest-wal-dir` outside
its data dir, side by side in one run: accepted lines/s, and the largest
number of acknowledged-but-unflushed rows seen in `GET /api/v1/cluster` while
it ran (what a lost disk would lose). Writes bench/results/cluster_window.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
from helpers import s3_client, start_moto  # noqa: E402
from pg_server import PostgresServer  # noqa: E402
from pond_server import PondServer, ensure_extensions  # noqa: E402

PASSWORD = "bench-admin-pw-1"
AUTH = ("admin", PASSWORD)
BASE_NS = 1_760_000_000_000_000_000


def bodies(node: int, n_bodies: int = 40, lines: int = 5000) -> list[bytes]:
    out = []
    for b in range(n_bodies):
        t0 = BASE_NS + node * 10**15 + b * 10**10
        out.append("\n".join(
            f"cpu,host=h{i % 50},region=r{i % 4} usage_user={i % 97}.5,usage_system={i % 13}.25,n={i}i {t0 + i * 1000}"
            for i in range(lines)).encode())
    return out


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def start_nodes(n: int, pg: PostgresServer, moto: str, ext_dir: Path, work: Path, flush_interval_ms: int,
                extra: tuple = ()) -> list[PondServer]:
    db = f"lake_{uuid.uuid4().hex[:8]}"
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    with pg.connect() as c:
        c.execute(f"CREATE DATABASE {db}")
    s3_client(moto).create_bucket(Bucket=bucket)
    nodes = []
    for k in range(1, n + 1):
        args = ["--node-id", f"n{k}", "--lake-catalog", f"host=127.0.0.1 port={pg.port} dbname={db} user=postgres",
                "--lake-data-path", f"s3://{bucket}/lake", "--lake-s3-endpoint", moto.removeprefix("http://"),
                "--lake-s3-region", "us-east-1", "--lake-s3-url-style", "path", "--lake-s3-use-ssl", "false",
                "--ingest-flush-interval-ms", str(flush_interval_ms), "--lake-compact-interval-secs", "0", *extra]
        env = {"POND_LAKE_S3_ACCESS_KEY_ID": "k", "POND_LAKE_S3_SECRET_ACCESS_KEY": "s", "POND_LAKE_CATALOG_PASSWORD": pg.password,
               "POND_MASTER_KEY": "1" * 64, "RUST_LOG": "info"}
        nodes.append(PondServer(data_dir=work / f"{n}-n{k}", ext_dir=ext_dir, password=PASSWORD, extra_args=args, extra_env=env).start())
    # The database exists once for all (shared metadata), before the load starts.
    requests.post(f"{nodes[0].http_url}/write?db=bench&precision=ns", auth=AUTH, data=b"cpu,host=h0 usage_user=1 1", timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline:
        if all(any(d["name"] == "bench" for d in requests.get(f"{s.http_url}/api/v1/databases", auth=AUTH, timeout=10).json()["databases"])
               for s in nodes):
            break
        time.sleep(0.2)
    return nodes


def sustained(nodes: list[PondServer], seconds: float) -> dict:
    payloads = {k: bodies(k) for k in range(len(nodes))}
    accepted = [0] * len(nodes)
    errors: list[str] = []
    stop = time.time() + seconds

    def client(k: int, offset: int):
        s = requests.Session()
        s.auth = AUTH
        url = f"{nodes[k].http_url}/write?db=bench&precision=ns"
        i = offset
        while time.time() < stop:
            body = payloads[k][i % len(payloads[k])]
            r = s.post(url, data=body, timeout=120)
            if r.status_code == 204:
                accepted[k] += body.count(b"\n") + 1
            else:
                errors.append(r.text[:200])
            i += 2

    started = time.time()
    threads = [threading.Thread(target=client, args=(k, o)) for k in range(len(nodes)) for o in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - started
    return {"lines_per_s": round(sum(accepted) / elapsed), "per_node": [round(a / elapsed) for a in accepted], "errors": len(errors)}


def flush_latencies(nodes: list[PondServer]) -> list[float]:
    ms = []
    for s in nodes:
        for line in s.log_path.read_text(errors="replace").splitlines():
            if "hot rows flushed to the lake" in line:
                m = re.search(r"\bms[=:]\s*\"?(\d+)", line)
                if m:
                    ms.append(float(m.group(1)))
    return ms


def visibility(nodes: list[PondServer], samples: int, flush_all: bool) -> list[float]:
    a, b = nodes[0], nodes[-1]
    lags = []
    for k in range(samples):
        marker = 10_000_000 + k + (1_000_000 if flush_all else 0)
        t0 = time.time()
        r = requests.post(f"{a.http_url}/write?db=bench&precision=ns", auth=AUTH,
                          data=f"probe,src=a m={marker}i {BASE_NS + marker}".encode(), timeout=60)
        assert r.status_code == 204, r.text
        if flush_all:
            requests.post(f"{a.http_url}/api/v1/lake/flush?nodes=all", auth=AUTH, timeout=60).raise_for_status()
        while True:
            r = requests.post(f"{b.http_url}/api/v1/query", auth=AUTH,
                              json={"sql": f"SELECT count(*) FROM bench.probe WHERE m = {marker}"}, timeout=60)
            if r.status_code == 200 and r.json()["data"][0][0] == 1:
                break
            if time.time() - t0 > 60:
                raise RuntimeError("a row did not become visible on another node within 60 s")
            time.sleep(0.01)
        lags.append((time.time() - t0) * 1000)
    return lags


def machine_info() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "load_1m": os.getloadavg()[0],
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def paced(node: PondServer, seconds: float, lines_per_s: int) -> dict:
    """One client posting 1,000-line bodies at a fixed rate (an ordinary day, not a flood)."""
    body = bodies(0, 1, 1000)[0]
    s = requests.Session()
    s.auth = AUTH
    url = f"{node.http_url}/write?db=bench&precision=ns"
    sent, errors, t0 = 0, 0, time.time()
    while time.time() - t0 < seconds:
        r = s.post(url, data=body, timeout=120)
        if r.status_code == 204:
            sent += 1000
        else:
            errors += 1
        ahead = sent / lines_per_s - (time.time() - t0)
        if ahead > 0:
            time.sleep(ahead)
    return {"lines_per_s": round(sent / (time.time() - t0)), "errors": errors}


def window(seconds: float) -> None:
    """The lost-disk window and what shrinking it costs (see the module text)."""
    ext_dir = ensure_extensions(["icu", "ducklake", "httpfs", "postgres_scanner"])
    pg = PostgresServer("logical").start()
    moto, moto_proc = start_moto()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            configs = [("flush every 60 s", 60_000, ()), ("flush every 5 s", 5_000, ()), ("flush every 1 s", 1_000, ()),
                       ("flush every 250 ms", 250, ()),
                       ("flush every 60 s, log in --ingest-wal-dir (same disk here)", 60_000,
                        ("--ingest-wal-dir", str(Path(tmp) / "shared" / "n1-wal")))]
            for name, ms, extra in configs:
                node = start_nodes(1, pg, moto, ext_dir, Path(tmp) / f"w{ms}-{len(rows)}", ms, extra)[0]
                try:
                    peak = [0]
                    done = threading.Event()

                    def watch():
                        while not done.is_set():
                            r = requests.get(f"{node.http_url}/api/v1/cluster", auth=AUTH, timeout=10).json()
                            peak[0] = max(peak[0], max(n["unflushed_rows"] for n in r["nodes"] if n["this_node"]))
                            time.sleep(0.1)

                    w = threading.Thread(target=watch)
                    w.start()
                    load = sustained([node], seconds)
                    flood_peak = peak[0]
                    # Start the steady phase from an empty window.
                    requests.post(f"{node.http_url}/api/v1/lake/flush", auth=AUTH, timeout=300).raise_for_status()
                    time.sleep(0.3)
                    peak[0] = 0
                    steady = paced(node, seconds, 20_000)
                    done.set()
                    w.join()
                    rows.append({"config": name, "flush_interval_ms": ms, "lines_per_s": load["lines_per_s"],
                                 "errors": load["errors"] + steady["errors"], "peak_unflushed_rows": flood_peak,
                                 "paced_lines_per_s": steady["lines_per_s"], "paced_peak_unflushed_rows": peak[0]})
                    print(rows[-1], flush=True)
                finally:
                    node.stop()
    finally:
        moto_proc.kill()
        pg.cleanup()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    m = machine_info()
    at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = ROOT / "bench" / "results"
    (out / "cluster_window.json").write_text(json.dumps({"at": at, "commit": commit, "machine": m, "seconds": seconds, "runs": rows},
                                                       indent=2) + "\n")
    base = rows[0]["lines_per_s"]
    md = [f"# The lost-disk window of one node ({at}, commit {commit}; {m['cpu']}, {m['cpus']} cores, {m['mem_gib']} GiB, "
          f"load average {m['load_1m']:.1f})", "",
          f"One `pond serve --node-id` on a PostgreSQL catalog and moto S3, two clients posting 5,000-line bodies for {seconds:.0f} s "
          "per configuration, one after another in one run. The window is what the node acknowledged but had not flushed "
          "(`unflushed_rows`, sampled every 100 ms): a lost disk loses it unless the log is on storage that outlives the node.", "",
          "Then the same node at a steady 20,000 lines/s for as long: there the flush interval bounds the window.", "",
          "| configuration | flood: accepted lines/s | vs 60 s | flood: largest window (rows) | steady 20K lines/s: largest window (rows) | errors |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['config']} | {r['lines_per_s']:,} | {r['lines_per_s'] / base:.2f}× | {r['peak_unflushed_rows']:,} | "
                  f"{r['paced_peak_unflushed_rows']:,} | {r['errors']} |")
    (out / "cluster_window.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--lag-samples", type=int, default=20)
    ap.add_argument("--flush-interval-ms", type=int, default=1000)
    ap.add_argument("--window", action="store_true", help="measure the lost-disk window instead (see above)")
    args = ap.parse_args()
    if args.window:
        window(args.seconds)
        return
    ext_dir = ensure_extensions(["icu", "ducklake", "httpfs", "postgres_scanner"])
    pg = PostgresServer("logical").start()
    moto, moto_proc = start_moto()
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in (1, 2, 3):
                nodes = start_nodes(n, pg, moto, ext_dir, Path(tmp), args.flush_interval_ms)
                try:
                    load = sustained(nodes, args.seconds)
                    time.sleep(args.flush_interval_ms / 1000 + 1)
                    flushes = flush_latencies(nodes)
                    lag = visibility(nodes, args.lag_samples, False) if n > 1 else []
                    lag_forced = visibility(nodes, max(5, args.lag_samples // 2), True) if n > 1 else []
                    results[n] = {**load, "flushes": len(flushes), "flush_ms_p50": pct(flushes, 50), "flush_ms_p99": pct(flushes, 99),
                                  "visibility_ms_p50": round(pct(lag, 50), 1) if lag else None,
                                  "visibility_ms_p99": round(pct(lag, 99), 1) if lag else None,
                                  "visibility_flush_all_ms_p50": round(pct(lag_forced, 50), 1) if lag_forced else None,
                                  "visibility_flush_all_ms_p99": round(pct(lag_forced, 99), 1) if lag_forced else None}
                    print(n, results[n], flush=True)
                finally:
                    for s in nodes:
                        s.stop()
    finally:
        moto_proc.kill()
        pg.cleanup()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    machine = {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "load_1m": os.getloadavg()[0],
               "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}
    result = {"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit, "machine": machine, "seconds": args.seconds,
              "flush_interval_ms": args.flush_interval_ms, "nodes": results}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")
    one = results[1]["lines_per_s"]
    md = [f"# Several nodes on one lake ({result['at']}, commit {commit}; {cpu}, {machine['cpus']} cores, {machine['mem_gib']} GiB, "
          f"load {machine['load_1m']:.1f})", "",
          f"All nodes on this one machine (they share its cores), PostgreSQL 15 catalog, moto S3 data path; {args.seconds:.0f} s of "
          f"line protocol per run, 2 clients per node, 5,000-line bodies; flush interval {args.flush_interval_ms} ms.", "",
          "| nodes | aggregate lines/s | vs 1 node | per node | flushes | flush ms p50 / p99 | visibility on another node ms p50 / p99 "
          "| with flush?nodes=all ms p50 / p99 |",
          "|---|---|---|---|---|---|---|---|"]
    for n, r in results.items():
        md.append(f"| {n} | {r['lines_per_s']:,} | {r['lines_per_s'] / one:.2f}x | {', '.join(f'{x:,}' for x in r['per_node'])} | "
                  f"{r['flushes']} | {r['flush_ms_p50']:.0f} / {r['flush_ms_p99']:.0f} | {r['visibility_ms_p50']} / {r['visibility_ms_p99']} | "
                  f"{r['visibility_flush_all_ms_p50']} / {r['visibility_flush_all_ms_p99']} |")
    (out / "cluster.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
