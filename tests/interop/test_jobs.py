"""Import and export jobs against real servers: InfluxDB 1.6.7 (`influxd`),
PostgreSQL 15 and an S3-compatible store (moto).

Every import is compared row by row with what was written to the source
(tags, integer/float/string/boolean fields, nanosecond times); a source that
is down gives a failed run with a clear error and no credentials in it; an
export to S3 is read back from the bucket and compared.
"""

from __future__ import annotations

import io
import time
import uuid

import pytest

from helpers import ADMIN, PASSWORD, Http, s3_client
from influx_server import InfluxServer, InfluxStartError
from pg_server import free_port

PG_PASSWORD_CANARY = "pg-canary-Zq7-secret"


@pytest.fixture(scope="module")
def influx():
    try:
        server = InfluxServer().start()
    except InfluxStartError as e:
        pytest.fail(f"could not start InfluxDB 1.x: {e}")
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def srv(start_module_server):
    return start_module_server("pond-jobs", extensions="icu,httpfs", extra_args=["--allowed-paths", "s3://pond-jobs-export/"])


@pytest.fixture(scope="module")
def http(srv):
    return Http(srv)


def sql(http: Http, text: str, database: str = "default") -> list[dict]:
    r = http.query(text, database=database)
    assert r.status_code == 200, f"{text}: {r.status_code} {r.text}"
    body = r.json()
    names = [c["name"] for c in body["columns"]]
    return [dict(zip(names, row)) for row in body["data"]]


def sql_error(http: Http, text: str, database: str = "default") -> str:
    r = http.query(text, database=database)
    assert r.status_code != 200, f"{text} succeeded: {r.text}"
    return r.text


def wait_job(http: Http, job_id: int, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = http.get(f"/api/v1/jobs/{job_id}", auth=(ADMIN, PASSWORD))
        assert r.status_code == 200, r.text
        run = r.json()
        if run["state"] != "running":
            return run
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still running after {timeout}s")


def start_import(http: Http, statement: str, database: str = "default") -> int:
    rows = sql(http, statement, database)
    return rows[0]["job_id"]


def influx_points(n: int) -> tuple[str, list[tuple]]:
    """Line protocol for `n` points of measurement cpu and the rows Pond must hold:
    (time ns, host, region, f, i, s, b); some tags and fields missing."""
    floats = [0.1, 1e-7, 2.0, -3.25, 1.5e300, 123456.789012345, 5e-324]
    lines, rows = [], []
    base = 1_700_000_000_000_000_000
    for k in range(n):
        t = base + k * 1_000_003 + 7  # not a multiple of a microsecond
        host = f"h{k % 3}"
        region = None if k % 5 == 0 else f"r {k % 2}"  # a space in a tag value
        f = floats[k % len(floats)] * (1 + k % 3)
        i = (2**53 + 1) * (-1 if k % 2 else 1) + k
        s = None if k % 7 == 0 else f'say "hi", k={k} ü'
        b = k % 3 == 0
        tags = f"cpu,host={host}" + (f",region={region.replace(' ', chr(92) + ' ')}" if region else "")
        fields = [f"f={f!r}", f"i={i}i", f"b={'true' if b else 'false'}"]
        if s is not None:
            fields.append('s="' + s.replace('"', '\\"') + '"')
        lines.append(f"{tags} {','.join(fields)} {t}")
        rows.append((t, host, region, f, i, s, b))
    return "\n".join(lines) + "\n", rows


def test_influxdb_into_a_measurement_row_for_row(influx, http):
    db = f"tel_{uuid.uuid4().hex[:6]}"
    influx.create_database(db)
    body, expected = influx_points(2500)
    influx.write(db, body)
    pond_db = f"imp_{uuid.uuid4().hex[:6]}"
    sql(http, f"CREATE DATABASE {pond_db}")
    job = start_import(http, f"IMPORT INTO MEASUREMENT cpu FROM INFLUXDB '{influx.url}' "
                             f"(DATABASE '{db}', MEASUREMENT 'cpu', CHUNK_SIZE 300)", pond_db)
    run = wait_job(http, job)
    assert run["state"] == "succeeded", run
    assert run["rows"] == 2500
    assert run["batches"] >= 2500 // 300
    assert run["bytes"] > 0
    got = sql(http, "SELECT epoch_ns(time) AS t, host, region, f, i, s, b FROM cpu ORDER BY time", pond_db)
    assert [(r["t"], r["host"], r["region"], float(r["f"]), r["i"], r["s"], r["b"]) for r in got] == expected
    # The column types follow InfluxDB's field types, not JSON's guesses.
    types = {r["column_name"]: r["data_type"] for r in sql(
        http, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'cpu'", pond_db)}
    assert types["f"] == "DOUBLE" and types["i"] == "BIGINT" and types["b"] == "BOOLEAN" and types["s"] == "VARCHAR", types


def test_influxdb_time_range_into_a_table(influx, http):
    db = f"tel_{uuid.uuid4().hex[:6]}"
    influx.create_database(db)
    body, expected = influx_points(100)
    influx.write(db, body)
    lo, hi = expected[10][0], expected[20][0]

    def rfc(ns: int) -> str:
        secs, frac = divmod(ns, 1_000_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"

    table = f"cpu_{uuid.uuid4().hex[:6]}"
    job = start_import(http, f"IMPORT INTO TABLE {table} FROM INFLUXDB '{influx.url}' "
                             f"(DATABASE '{db}', MEASUREMENT 'cpu', START '{rfc(lo)}', END '{rfc(hi)}')")
    run = wait_job(http, job)
    assert run["state"] == "succeeded", run
    got = sql(http, f"SELECT epoch_ns(time) AS t, host, region, f, i, s, b FROM {table} ORDER BY time")
    assert [(r["t"], r["host"], r["region"], float(r["f"]), r["i"], r["s"], r["b"]) for r in got] == expected[10:20]


def test_influxdb_errors_are_clear_and_the_server_keeps_running(influx, http):
    # A server that is down: a closed port.
    job = start_import(http, f"IMPORT INTO MEASUREMENT m FROM INFLUXDB 'http://127.0.0.1:{free_port()}' "
                             "(DATABASE 'x', MEASUREMENT 'm', TIMEOUT 5)")
    started = time.time()
    run = wait_job(http, job, timeout=60)
    assert time.time() - started < 30
    assert run["state"] == "failed"
    assert "cannot connect" in run["error"] and "InfluxDB" in run["error"], run
    # A measurement that does not exist.
    db = f"tel_{uuid.uuid4().hex[:6]}"
    influx.create_database(db)
    run = wait_job(http, start_import(http, f"IMPORT INTO MEASUREMENT m FROM INFLUXDB '{influx.url}' (DATABASE '{db}', MEASUREMENT 'nope')"))
    assert run["state"] == "failed" and "nope" in run["error"], run
    # Options are checked when the statement is given.
    assert "CHUNK_SIZE" in sql_error(http, f"IMPORT INTO MEASUREMENT m FROM INFLUXDB '{influx.url}' (DATABASE 'a', MEASUREMENT 'b', CHUNK_SIZE 0)")
    assert "no option" in sql_error(http, f"IMPORT INTO MEASUREMENT m FROM INFLUXDB '{influx.url}' (DATABASE 'a', MEASUREMENT 'b', PASSWORD 'x')")
    assert sql(http, "SELECT 42 AS x") == [{"x": 42}]


@pytest.fixture(scope="module")
def pg_source(postgres):
    postgres.create_role("importer", PG_PASSWORD_CANARY)
    postgres.execute("DROP TABLE IF EXISTS readings")
    postgres.execute("""CREATE TABLE readings (
        id integer PRIMARY KEY, big bigint, temp double precision, price numeric(12, 4), station text,
        ok boolean, ts timestamptz, day date)""")
    postgres.execute("""INSERT INTO readings
        SELECT g, g::bigint * 1000000007, g / 7.0, g * 1.2345, 'st' || (g % 4), g % 2 = 0,
               timestamptz '2024-03-01 00:00:00+00' + g * interval '1 second' + g * interval '1 microsecond',
               date '2024-03-01' + g
        FROM generate_series(1, 30000) g""")
    postgres.execute("GRANT SELECT ON readings TO importer")
    return postgres


def test_postgres_table_into_a_table(pg_source, http):
    secret = f"pg_{uuid.uuid4().hex[:6]}"
    sql(http, f"CREATE SECRET {secret} (TYPE postgres, CONNECTION_STRING '{pg_source.dsn('importer', PG_PASSWORD_CANARY)}')")
    table = f"readings_{uuid.uuid4().hex[:6]}"
    run = wait_job(http, start_import(http, f"IMPORT INTO TABLE {table} FROM POSTGRES (SECRET '{secret}', TABLE 'public.readings')"))
    assert run["state"] == "succeeded", run
    assert run["rows"] == 30000 and run["batches"] >= 1
    expected = pg_source.execute(
        "SELECT id, big, temp, price::text, station, ok, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), day::text "
        "FROM readings ORDER BY id")
    got = sql(http, f"SELECT id, big, temp, price::VARCHAR AS price, station, ok, "
                    f"strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S.%f') AS ts, day::VARCHAR AS day FROM {table} ORDER BY id")
    assert [tuple(r.values()) for r in got] == [tuple(r) for r in expected]
    text = http.get("/api/v1/jobs", auth=(ADMIN, PASSWORD)).text + str(sql(http, "SHOW JOBS"))
    assert PG_PASSWORD_CANARY not in text


def test_postgres_query_into_a_measurement(pg_source, http):
    secret = f"pg_{uuid.uuid4().hex[:6]}"
    sql(http, f"CREATE SECRET {secret} (TYPE postgres, HOST '127.0.0.1', PORT '{pg_source.port}', USER 'importer', "
              f"PASSWORD '{PG_PASSWORD_CANARY}', DATABASE 'postgres')")
    pond_db = f"pgm_{uuid.uuid4().hex[:6]}"
    sql(http, f"CREATE DATABASE {pond_db}")
    q = "SELECT ts, station, temp, big, ok FROM readings WHERE id <= 5000"
    run = wait_job(http, start_import(
        http, f"IMPORT INTO MEASUREMENT weather FROM POSTGRES (SECRET '{secret}', QUERY '{q}', TIME 'ts', TAGS 'station')", pond_db))
    assert run["state"] == "succeeded", run
    expected = pg_source.execute(
        "SELECT (extract(epoch FROM ts) * 1000000)::bigint * 1000, station, temp, big, ok FROM readings WHERE id <= 5000 ORDER BY ts")
    got = sql(http, "SELECT epoch_ns(time) AS t, station, temp, big, ok FROM weather ORDER BY time", pond_db)
    assert [tuple(r.values()) for r in got] == [tuple(r) for r in expected]


def test_postgres_down_fails_clearly_without_the_password(http):
    secret = f"pg_{uuid.uuid4().hex[:6]}"
    port = free_port()
    sql(http, f"CREATE SECRET {secret} (TYPE postgres, CONNECTION_STRING "
              f"'postgresql://importer:{PG_PASSWORD_CANARY}@127.0.0.1:{port}/postgres')")
    started = time.time()
    run = wait_job(http, start_import(http, f"IMPORT INTO TABLE t_{secret} FROM POSTGRES (SECRET '{secret}', TABLE 'readings')"), timeout=60)
    assert time.time() - started < 30
    assert run["state"] == "failed"
    assert f"127.0.0.1:{port}" in run["error"], run
    assert PG_PASSWORD_CANARY not in run["error"]
    listing = http.get("/api/v1/jobs", auth=(ADMIN, PASSWORD)).text + str(sql(http, "SHOW JOBS"))
    assert PG_PASSWORD_CANARY not in listing
    assert sql(http, "SELECT 1 AS one") == [{"one": 1}]


def test_export_to_s3_reads_back(moto, http):
    import pyarrow.parquet as pq

    s3 = s3_client(moto)
    bucket = "pond-jobs-export"
    s3.create_bucket(Bucket=bucket)
    host = moto.removeprefix("http://")
    secret = f"s3_{uuid.uuid4().hex[:6]}"
    sql(http, f"CREATE SECRET {secret} (TYPE s3, KEY_ID 'test-key', SECRET 'test-secret', REGION 'us-east-1', "
              f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL 'false')")
    table = f"exp_{uuid.uuid4().hex[:6]}"
    sql(http, f"CREATE TABLE {table} AS SELECT i AS id, 'v' || i AS name, i / 4.0 AS x FROM range(5000) t(i)")
    job = f"to_s3_{uuid.uuid4().hex[:6]}"
    sql(http, f"CREATE EXPORT JOB {job} AS COPY (SELECT * FROM {table} ORDER BY id) "
              f"TO 's3://{bucket}/{job}/{{run_time}}.parquet' (FORMAT parquet)")
    run = wait_job(http, start_import(http, f"RUN EXPORT JOB {job}"))
    assert run["state"] == "succeeded", run
    assert run["rows"] == 5000
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{job}/")["Contents"]]
    assert len(keys) == 1 and keys[0].endswith("Z.parquet"), keys
    data = s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    t = pq.read_table(io.BytesIO(data))
    assert t.column("id").to_pylist() == list(range(5000))
    assert t.column("name").to_pylist() == [f"v{i}" for i in range(5000)]
    assert t.column("x").to_pylist() == [i / 4.0 for i in range(5000)]
    # Listed with its last run; dropped.
    shown = [j for j in sql(http, "SHOW EXPORT JOBS") if j["name"] == job]
    assert shown and shown[0]["last_state"] == "succeeded", shown
    sql(http, f"DROP EXPORT JOB {job}")
    assert not [j for j in sql(http, "SHOW EXPORT JOBS") if j["name"] == job]
