"""External catalogs, AWS Glue: a real moto server (one port serves Glue and S3)
started here, Glue databases and tables created through boto3, their Parquet files
in moto's S3, and a real `pond serve` reading them with the AWS SDK (Glue) and
httpfs (S3), credentials from a Pond secret or from the environment chain.

moto ignores MaxResults, NextToken and Segment, so paging, segments and
throttling retries are tested against `GlueStub` below: a small HTTP server that
speaks Glue's JSON protocol for the calls Pond makes (a stub, because no real
Glue can run here), with the data files still in moto's S3.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import PASSWORD, s3_client, http_query as q, http_rows as rows, parquet_bytes

AUTH = ("admin", PASSWORD)
BUCKET = "glue-lake"
KEY_ID = "AKIAPONDTEST0001"
SECRET_VALUE = "glue-secret-value-never-shown-42"
REGION = "us-east-1"








def glue_client(url: str):
    import boto3

    return boto3.client("glue", endpoint_url=url, aws_access_key_id="k", aws_secret_access_key="s", region_name=REGION)


PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}


def sd(columns, location):
    return {"Columns": [{"Name": n, "Type": t} for n, t in columns], "Location": location, **PARQUET}


@pytest.fixture(scope="module")
def world(moto, start_module_server):
    from pond_server import ensure_extensions

    ensure_extensions(["httpfs"])
    s3 = s3_client(moto)
    s3.create_bucket(Bucket=BUCKET)
    glue = glue_client(moto)
    db = "gsales_" + uuid.uuid4().hex[:6]
    glue.create_database(DatabaseInput={"Name": db})

    s3.put_object(Bucket=BUCKET, Key=f"{db}/orders/a.parquet", Body=parquet_bytes("SELECT range AS id, range % 5 AS qty FROM range(200)"))
    s3.put_object(Bucket=BUCKET, Key=f"{db}/orders/_SUCCESS", Body=b"")
    glue.create_table(DatabaseName=db, TableInput={"Name": "orders", "TableType": "EXTERNAL_TABLE",
                                                   "StorageDescriptor": sd([("id", "bigint"), ("qty", "int")], f"s3://{BUCKET}/{db}/orders")})

    # Partitioned by a date and a string key; one partition outside k=v layout (s3a://),
    # and one whose object is not Parquet (any query that read it would fail).
    events_cols = [("n", "bigint")]
    glue.create_table(DatabaseName=db, TableInput={
        "Name": "events", "TableType": "EXTERNAL_TABLE",
        "StorageDescriptor": sd(events_cols, f"s3://{BUCKET}/{db}/events"),
        "PartitionKeys": [{"Name": "dt", "Type": "date"}, {"Name": "region", "Type": "string"}]})
    expected = {}
    inputs = []
    for i, (dt, region) in enumerate([("2024-03-01", "eu"), ("2024-03-01", "us"), ("2024-03-02", "eu"), ("2024-03-03", "us")]):
        n = 10 * (i + 1)
        key = f"{db}/events/dt={dt}/region={region}/f.parquet" if i != 3 else f"{db}/odd/batch9/f.parquet"
        s3.put_object(Bucket=BUCKET, Key=key, Body=parquet_bytes(f"SELECT range AS n FROM range({n})"))
        loc = f"s3://{BUCKET}/{key.rsplit('/', 1)[0]}" if i != 3 else f"s3a://{BUCKET}/{db}/odd/batch9"
        inputs.append({"Values": [dt, region], "StorageDescriptor": sd(events_cols, loc)})
        expected[(dt, region)] = n
    s3.put_object(Bucket=BUCKET, Key=f"{db}/events/dt=2024-03-04/region=eu/broken.parquet", Body=b"not parquet at all")
    inputs.append({"Values": ["2024-03-04", "eu"], "StorageDescriptor": sd(events_cols, f"s3://{BUCKET}/{db}/events/dt=2024-03-04/region=eu")})
    glue.batch_create_partition(DatabaseName=db, TableName="events", PartitionInputList=inputs)

    # String keys only: a query that pins both is answered by BatchGetPartition.
    glue.create_table(DatabaseName=db, TableInput={
        "Name": "logs", "TableType": "EXTERNAL_TABLE", "StorageDescriptor": sd(events_cols, f"s3://{BUCKET}/{db}/logs"),
        "PartitionKeys": [{"Name": "region", "Type": "string"}, {"Name": "day", "Type": "string"}]})
    log_parts = []
    for region in ["eu", "us", "ap"]:
        for d in ["d1", "d2", "d3"]:
            key = f"{db}/logs/region={region}/day={d}/f.parquet"
            body = parquet_bytes(f"SELECT range AS n FROM range({len(region) + int(d[1])})") if region != "ap" else b"broken"
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            log_parts.append({"Values": [region, d], "StorageDescriptor": sd(events_cols, f"s3://{BUCKET}/{key.rsplit('/', 1)[0]}")})
    glue.batch_create_partition(DatabaseName=db, TableName="logs", PartitionInputList=log_parts)

    # An Iceberg table registered in Glue.
    glue.create_table(DatabaseName=db, TableInput={"Name": "ice", "TableType": "EXTERNAL_TABLE",
                                                   "Parameters": {"table_type": "ICEBERG", "metadata_location": f"s3://{BUCKET}/ice/metadata/v1.json"},
                                                   "StorageDescriptor": sd([("id", "bigint")], f"s3://{BUCKET}/ice")})

    pond = start_module_server("pond-glue", extensions="icu,httpfs", extra_args=["--allowed-paths", f"s3://{BUCKET}/"])
    r = q(pond, f"CREATE SECRET aws1 (TYPE aws, KEY_ID '{KEY_ID}', SECRET '{SECRET_VALUE}', REGION '{REGION}')")
    assert r.status_code == 200, r.text
    r = q(pond, f"ATTACH 'glue' AS g (TYPE glue, REGION '{REGION}', ENDPOINT '{moto}', S3_ENDPOINT '{moto}', "
                f"S3_URL_STYLE 'path', SECRET 'aws1', CACHE_TTL 0)")
    assert r.status_code == 200, r.text
    return {"db": db, "pond": pond, "moto": moto, "glue": glue, "s3": s3, "expected": expected}


def test_attach_lists_glue_databases_and_tables(world):
    pond, db = world["pond"], world["db"]
    assert ("g", "glue") in [(r[0], r[1]) for r in rows(pond, "SHOW DATABASES") if r[0] == "g"]
    tables = {r[0] for r in rows(pond, f"SELECT table_name FROM information_schema.tables WHERE table_catalog = 'g' AND table_schema = '{db}'")}
    assert {"orders", "events"} <= tables, tables


def test_unpartitioned_table_reads_from_s3(world):
    pond, db = world["pond"], world["db"]
    assert rows(pond, f"SELECT count(*), sum(qty), max(id) FROM g.{db}.orders") == [(200, sum(i % 5 for i in range(200)), 199)]


def test_expression_pushdown_prunes_before_listing(world):
    pond, db = world["pond"], world["db"]
    # The whole table includes the broken partition.
    r = q(pond, f"SELECT count(*) FROM g.{db}.events")
    assert r.status_code != 200 and "broken.parquet" in r.text, r.text
    got = rows(pond, f"SELECT dt::VARCHAR, region, count(*) FROM g.{db}.events WHERE dt <= DATE '2024-03-03' GROUP BY ALL ORDER BY ALL")
    assert got == [(dt, region, n) for (dt, region), n in sorted(world["expected"].items())]
    assert rows(pond, f"SELECT count(*) FROM g.{db}.events WHERE dt = DATE '2024-03-01' AND region IN ('us')") == [(20,)]
    plan = "\n".join(str(x) for x in rows(pond, f"EXPLAIN SELECT * FROM g.{db}.events WHERE dt = DATE '2024-03-02' AND region = 'eu'"))
    assert "metastore filter: (dt = '2024-03-02' and region = 'eu')" in plan and "1 partitions selected" in plan, plan
    assert "glue at " in plan, plan
    assert SECRET_VALUE not in plan and KEY_ID not in plan


def test_known_values_are_fetched_with_batch_get_partition(world):
    pond, db = world["pond"], world["db"]
    sql = f"SELECT count(*) FROM g.{db}.logs WHERE region = 'eu' AND day IN ('d1', 'd3', 'd9')"
    assert rows(pond, sql) == [((2 + 1) + (2 + 3),)]
    plan = str(rows(pond, "EXPLAIN " + sql))
    assert "3 partitions fetched by value" in plan and "2 partitions selected" in plan, plan


def test_iceberg_tables_are_refused_clearly(world):
    pond, db = world["pond"], world["db"]
    r = q(pond, f"SELECT * FROM g.{db}.ice")
    assert r.status_code != 200, r.text
    assert "ice" in r.text and "Iceberg" in r.text, r.text


def test_secret_never_shows_and_bad_settings_are_named(world):
    pond, moto = world["pond"], world["moto"]
    for text in [str(rows(pond, "SHOW SECRETS")), str(rows(pond, "SHOW DATABASES"))]:
        assert SECRET_VALUE not in text and KEY_ID not in text
    r = q(pond, f"ATTACH 'glue' AS g2 (TYPE glue, REGION '{REGION}', ENDPOINT '{moto}', SECRET 'nope')")
    assert r.status_code == 400 and "secret 'nope' does not exist" in r.text, r.text
    r = q(pond, "ATTACH 'glue' AS g3 (TYPE glue, REGION 'eu west')")
    assert r.status_code == 400 and "REGION 'eu west'" in r.text, r.text
    r = q(pond, "ATTACH 'glue' AS g4 (TYPE glue, REGION 'us-east-1', TRANSPORT 'framed')")
    assert r.status_code == 400 and "unknown ATTACH option TRANSPORT" in r.text, r.text


def test_glue_down_is_a_clear_error_within_the_timeout(world):
    import socket
    import time

    pond = world["pond"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    started = time.monotonic()
    r = q(pond, f"ATTACH 'glue' AS gdown (TYPE glue, REGION '{REGION}', ENDPOINT 'http://127.0.0.1:{dead}', SECRET 'aws1', TIMEOUT 3)")
    took = time.monotonic() - started
    assert r.status_code == 503, r.text
    assert "glue GetDatabases" in r.text and "127.0.0.1" in r.text, r.text
    assert took < 30, took


def test_credentials_from_the_environment_chain_and_restart(world, start_server):
    moto, db = world["moto"], world["db"]
    env = {"AWS_ACCESS_KEY_ID": "AKIAFROMENV", "AWS_SECRET_ACCESS_KEY": "from-env", "AWS_REGION": REGION}
    server = start_server("pond-glue-env", extensions="icu,httpfs", extra_args=["--allowed-paths", f"s3://{BUCKET}/"], extra_env=env)
    r = q(server, f"ATTACH 'glue' AS genv (TYPE glue, ENDPOINT '{moto}', S3_ENDPOINT '{moto}', S3_URL_STYLE 'path')")
    assert r.status_code == 200, r.text
    assert rows(server, f"SELECT count(*) FROM genv.{db}.orders") == [(200,)]
    server.stop()
    server.start()
    assert rows(server, f"SELECT count(*) FROM genv.{db}.events WHERE region = 'us'") == [(20 + 40,)]


class GlueStub:
    """Glue's JSON protocol for GetDatabases/GetTables/GetTable/GetPartitions, with
    pages of 2, honest Segments, and one ThrottlingException per operation first."""

    def __init__(self, db: str, table: dict, partitions: list[dict]):
        self.db, self.table, self.partitions = db, table, partitions
        self.requests: list[tuple[str, dict]] = []
        self.throttled: set[str] = set()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                op = self.headers.get("X-Amz-Target", "").split(".")[-1]
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                stub.requests.append((op, body))
                assert "AWS4-HMAC-SHA256" in self.headers.get("Authorization", ""), "requests are signed"
                if op not in stub.throttled:
                    stub.throttled.add(op)
                    return self.reply(400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
                return self.reply(200, stub.answer(op, body))

            def reply(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def page(self, items, body, key):
        start = int(body.get("NextToken") or 0)
        out = {key: items[start:start + 2]}
        if start + 2 < len(items):
            out["NextToken"] = str(start + 2)
        return out

    def answer(self, op, body):
        if op == "GetDatabases":
            return self.page([{"Name": "other"}, {"Name": "x2"}, {"Name": self.db}], body, "DatabaseList")
        if op == "GetTables":
            return self.page([self.table], body, "TableList")
        if op == "GetTable":
            return {"Table": self.table}
        if op == "GetPartitions":
            parts = self.partitions
            seg = body.get("Segment")
            if seg:
                parts = [p for i, p in enumerate(parts) if i % seg["TotalSegments"] == seg["SegmentNumber"]]
            return self.page(parts, body, "Partitions")
        return {}

    def close(self):
        self.server.shutdown()


def test_paging_segments_and_throttling_retries(world):
    pond, moto, db, s3 = world["pond"], world["moto"], world["db"], world["s3"]
    cols = [("n", "bigint")]
    parts = []
    for h in range(11):
        key = f"stub/h={h}/f.parquet"
        s3.put_object(Bucket=BUCKET, Key=key, Body=parquet_bytes(f"SELECT range AS n FROM range({h + 1})"))
        parts.append({"Values": [str(h)], "DatabaseName": db, "TableName": "hours",
                      "StorageDescriptor": sd(cols, f"s3://{BUCKET}/stub/h={h}")})
    table = {"Name": "hours", "DatabaseName": db, "TableType": "EXTERNAL_TABLE",
             "StorageDescriptor": sd(cols, f"s3://{BUCKET}/stub"), "PartitionKeys": [{"Name": "h", "Type": "int"}]}
    stub = GlueStub(db, table, parts)
    try:
        r = q(pond, f"ATTACH 'glue' AS gstub (TYPE glue, REGION '{REGION}', ENDPOINT '{stub.url}', S3_ENDPOINT '{moto}', "
                    f"S3_URL_STYLE 'path', SECRET 'aws1', CACHE_TTL 0)")
        assert r.status_code == 200, r.text
        # Every partition, read through 4 segments of pages of 2: each once.
        assert rows(pond, f"SELECT count(*), count(DISTINCT h) FROM gstub.{db}.hours") == [(sum(range(1, 12)), 11)]
        segs = {b["Segment"]["SegmentNumber"] for op, b in stub.requests if op == "GetPartitions" and b.get("Segment")}
        assert segs == {0, 1, 2, 3}, stub.requests
        assert all(b.get("ExcludeColumnSchema") for op, b in stub.requests if op == "GetPartitions")
        assert any(b.get("NextToken") for op, b in stub.requests if op == "GetPartitions"), "paged"
        # Databases listed across pages.
        assert db in {r[0] for r in rows(pond, "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = 'gstub'")}
        # Throttled first attempts were retried (each operation was refused once).
        assert {"GetDatabases", "GetPartitions"} <= stub.throttled
        # An expression goes to Glue as the request's Expression.
        assert rows(pond, f"SELECT count(*) FROM gstub.{db}.hours WHERE h >= 5") == [(sum(range(6, 12)),)]
        assert any(b.get("Expression") == "h >= 5" for op, b in stub.requests if op == "GetPartitions"), stub.requests
    finally:
        q(pond, "DETACH gstub")
        stub.close()
