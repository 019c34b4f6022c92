"""Measurements in the lake, with the real `pond serve` binary: line-protocol
ingest then queries before and after flushes, on local disk and on S3 (a real
moto S3 server started here, Parquet objects checked in the bucket), and
kill -9 during compaction over several rounds: every row present exactly once
(count and checksums) after each restart.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from helpers import PASSWORD, s3_client
from pond_server import PondServer

AUTH = ("admin", PASSWORD)


def sql(server: PondServer, text: str):
    r = requests.post(f"{server.http_url}/api/v1/query", auth=AUTH, json={"sql": text}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def write(server: PondServer, db: str, body: str) -> None:
    r = requests.post(f"{server.http_url}/write?db={db}&precision=ns", auth=AUTH, data=body.encode(), timeout=60)
    assert r.status_code == 204, r.text


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL 15 cluster (the one bench/pgwire.py starts) to hold a lake catalog."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from pgwire import Postgres

    pg = Postgres().start()
    yield pg
    pg.stop()


def lake_server(tmp_path, ext_dir, storage: str, moto_url: str | None, bucket: str | None = None, **extra) -> tuple[PondServer, str | None]:
    args = ["--ingest-flush-rows", str(extra.get("flush_rows", 500)), "--lake-cleanup-grace-secs", "0", "--lake-compact-interval-secs", "0"]
    env = {}
    if storage == "pgcatalog":
        pg = extra["pg"]
        args += ["--lake-catalog", f"host=127.0.0.1 port={pg.port} dbname={extra['pg_db']} user=postgres"]
        # The cluster trusts local connections; the password must still never show up anywhere.
        env = {"POND_LAKE_CATALOG_PASSWORD": "pg-catalog-secret"}
    if storage == "s3":
        if bucket is None:
            bucket = f"pond-{uuid.uuid4().hex[:8]}"
            s3_client(moto_url).create_bucket(Bucket=bucket)
        host = moto_url.removeprefix("http://")
        args += ["--lake-data-path", f"s3://{bucket}/lake", "--lake-s3-endpoint", host, "--lake-s3-region", "us-east-1",
                 "--lake-s3-url-style", "path", "--lake-s3-use-ssl", "false"]
        # Secrets only through the environment, never arguments.
        env = {"POND_LAKE_S3_ACCESS_KEY_ID": "test-key", "POND_LAKE_S3_SECRET_ACCESS_KEY": "test-secret"}
    server = PondServer(data_dir=tmp_path / "data", ext_dir=ext_dir, password=PASSWORD, extra_args=args, extra_env=env).start()
    return server, bucket


def lines(start: int, n: int, host_count: int = 4) -> str:
    base = 1_700_000_000_000_000_000
    return "\n".join(f"cpu,host=h{i % host_count} usage={i * 0.5},n={i}i {base + i * 1_000_000_000 + 7}" for i in range(start, start + n))


@pytest.mark.parametrize("storage", ["local", "s3", "pgcatalog"])
def test_ingest_flush_and_query(tmp_path, ext_dir, moto, storage, request):
    pg_extra = {}
    if storage == "pgcatalog":
        import psycopg

        pg = request.getfixturevalue("postgres")
        pg_db = f"lake_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname="postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {pg_db}")
        pg_extra = {"pg": pg, "pg_db": pg_db}
    server, bucket = lake_server(tmp_path, ext_dir, storage, moto, **pg_extra)
    try:
        for k in range(6):
            write(server, "lakedb", lines(k * 300, 300))
        r = requests.post(f"{server.http_url}/api/v1/lake/flush?db=lakedb", auth=AUTH, timeout=60)
        assert r.status_code == 200, r.text
        write(server, "lakedb", lines(1800, 10))  # buffered, not flushed
        n, s, last = sql(server, "SELECT count(*), sum(n), max(epoch_ns(time)) FROM lakedb.cpu")[0]
        assert n == 1810 and s == sum(range(1810)) and last == 1_700_000_000_000_000_000 + 1809 * 1_000_000_000 + 7
        per_host = sql(server, "SELECT host, count(*) FROM lakedb.main.cpu GROUP BY host ORDER BY host")
        assert per_host == [["h0", 453], ["h1", 453], ["h2", 452], ["h3", 452]]
        m = requests.get(f"{server.http_url}/api/v1/measurements?db=lakedb", auth=AUTH, timeout=30).json()["measurements"]
        assert m[0]["name"] == "cpu" and m[0]["rows"] == 1810 and m[0]["files"] >= 1 and m[0]["bytes"] > 0
        if storage == "s3":
            objs = s3_client(moto).list_objects_v2(Bucket=bucket, Prefix="lake/").get("Contents", [])
            assert any(o["Key"].endswith(".parquet") and "/cpu/" in o["Key"] for o in objs), objs
            assert not list((tmp_path / "data" / "lake").glob("data/**/*.parquet"))
        else:
            assert list((tmp_path / "data" / "lake").glob("data/**/cpu/**/*.parquet"))
        if storage == "pgcatalog":
            # The catalog lives in PostgreSQL: DuckLake's tables are there and list the flushed files.
            import psycopg

            assert not (tmp_path / "data" / "lake" / "catalog.ducklake").exists()
            with psycopg.connect(host="127.0.0.1", port=pg_extra["pg"].port, user="postgres", dbname=pg_extra["pg_db"]) as c:
                files = c.execute("SELECT count(*) FROM ducklake_data_file").fetchone()[0]
                tables = [r[0] for r in c.execute("SELECT table_name FROM ducklake_table WHERE end_snapshot IS NULL")]
            assert files >= 1 and "cpu" in tables, (files, tables)
        r = requests.post(f"{server.http_url}/api/v1/lake/compact?db=lakedb", auth=AUTH, timeout=120)
        assert r.status_code == 200, r.text
        assert sql(server, "SELECT count(*), sum(n) FROM lakedb.cpu")[0] == [1810, sum(range(1810))]
        # The secrets are in no log line.
        log = server.log_path.read_text(errors="replace")
        assert "test-secret" not in log and "pg-catalog-secret" not in log
    finally:
        server.stop()
    # After a restart (same lake, same bucket) every row is there once.
    server, _ = lake_server(tmp_path, ext_dir, storage, moto, bucket, **pg_extra)
    try:
        assert sql(server, "SELECT count(*), sum(n) FROM lakedb.cpu")[0] == [1810, sum(range(1810))]
    finally:
        server.stop()


ROUNDS = int(os.environ.get("POND_COMPACTION_CRASH_ROUNDS", "3"))


def test_kill9_during_compaction_loses_and_duplicates_nothing(tmp_path, ext_dir):
    expected_n = 0
    written = 0
    for round_ in range(ROUNDS):
        server, _ = lake_server(tmp_path, ext_dir, "local", None, flush_rows=200)
        try:
            if round_ > 0:
                got = sql(server, "SELECT count(*), coalesce(sum(n), 0), coalesce(sum(epoch_ns(time)), 0)::VARCHAR FROM cdb.cpu")[0]
                assert got == [expected_n, sum(range(written)), str(sum(1_700_000_000_000_000_007 + i * 1_000_000_000 for i in range(written)))], f"round {round_}"
            # Many small files: 10 writes of 250 rows, each flushed.
            for k in range(10):
                write(server, "cdb", lines(written, 250))
                written += 250
                expected_n += 250
            requests.post(f"{server.http_url}/api/v1/lake/flush?db=cdb", auth=AUTH, timeout=60)
            # Compact and kill -9 while it may be running.
            t = threading.Thread(target=lambda: _try_compact(server), daemon=True)
            t.start()
            time.sleep(random.uniform(0.0, 0.4))
            server.proc.kill()
            server.proc.wait()
        finally:
            server.kill()
    server, _ = lake_server(tmp_path, ext_dir, "local", None)
    try:
        got = sql(server, "SELECT count(*), sum(n), count(DISTINCT n) FROM cdb.cpu")[0]
        assert got == [expected_n, sum(range(written)), expected_n]
        r = requests.post(f"{server.http_url}/api/v1/lake/compact?db=cdb", auth=AUTH, timeout=120)
        assert r.status_code == 200, r.text
        assert sql(server, "SELECT count(*), sum(n), count(DISTINCT n) FROM cdb.cpu")[0] == [expected_n, sum(range(written)), expected_n]
    finally:
        server.stop()


def _try_compact(server: PondServer) -> None:
    try:
        requests.post(f"{server.http_url}/api/v1/lake/compact?db=cdb", auth=AUTH, timeout=60)
    except requests.RequestException:
        pass


def test_cached_prepared_statements_see_new_hot_rows(tmp_path, ext_dir):
    """Hot rows are read through a table function whose batch list is taken at each
    execution: a statement prepared once (psycopg server-side prepare over PG wire, an
    ADBC prepared statement over Flight SQL) sees every later acknowledged write, across
    flushes, and never a row twice."""
    import psycopg

    from helpers import adbc_connect

    server, _ = lake_server(tmp_path, ext_dir, "local", None, flush_rows=250)
    try:
        write(server, "prep", lines(0, 10))
        host, port = server.pg_host_port
        with psycopg.connect(host=host, port=port, user="admin", password=PASSWORD, dbname="prep", autocommit=True) as pg, \
                adbc_connect(server) as fl:
            cur = fl.cursor()
            expected = 10
            for k in range(12):
                # The same text each time: psycopg prepares it server-side from the 2nd run on
                # (prepare=True forces it from the first).
                got = pg.execute("SELECT count(*), sum(n) FROM prep.main.cpu", prepare=True).fetchone()
                assert got == (expected, sum(range(expected))), (k, got)
                cur.adbc_prepare("SELECT count(*), sum(n) FROM prep.main.cpu")
                cur.execute("SELECT count(*), sum(n) FROM prep.main.cpu")
                assert tuple(cur.fetchone()) == (expected, sum(range(expected))), (k, "flight")
                write(server, "prep", lines(expected, 100))
                expected += 100
            # Some of those writes crossed the flush threshold: rows are in the lake and in memory.
            m = requests.get(f"{server.http_url}/api/v1/measurements?db=prep", auth=AUTH, timeout=30).json()["measurements"][0]
            assert m["files"] >= 1 and m["rows"] == expected, m
            cur.close()
    finally:
        server.stop()
