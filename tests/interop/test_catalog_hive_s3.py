"""External catalogs over S3: a real Hive Metastore 2.3.10 whose tables and
partitions live at `s3a://` / `s3://` locations, the data files in a real
S3-compatible server (moto) started here, and a real `pond serve` reading them
through httpfs with the credentials of a Pond secret.

The metastore cannot load the S3A connector here (hadoop-aws is not on PyPI), so
its own directory checks for s3 locations go to local directories (see
`HiveMetastore(s3_buckets=...)`); it stores the `s3a://` text as given. Everything
Pond reads comes from the S3 server: the test proves it by checking that rows
change when an object in the bucket changes, and that a query fails without the
secret.
"""

from __future__ import annotations

import uuid

import pytest

from helpers import PASSWORD, s3_client, http_query as q, http_rows as rows, parquet_bytes

AUTH = ("admin", PASSWORD)
BUCKET = "hive-lake"
OTHER_BUCKET = "not-allowed"
KEY_ID = "pond-test-key"
SECRET_VALUE = "pond-test-secret-value-0123456789"








@pytest.fixture(scope="module")
def hms(tmp_path_factory):
    from conftest import start_hive_metastore

    m = start_hive_metastore(tmp_path_factory, "hms-s3", s3_buckets=[BUCKET, OTHER_BUCKET])
    yield m
    m.stop()


@pytest.fixture(scope="module")
def world(hms, moto, start_module_server):
    from pond_server import ensure_extensions

    ensure_extensions(["httpfs"])
    s3 = s3_client(moto)
    s3.create_bucket(Bucket=BUCKET)
    db = "s3sales_" + uuid.uuid4().hex[:6]
    hms.create_database(db)

    # Unpartitioned, at an s3a:// location with two files and a marker file.
    s3.put_object(Bucket=BUCKET, Key="orders/part-0.parquet", Body=parquet_bytes("SELECT range AS id, range * 2 AS amount FROM range(100)"))
    s3.put_object(Bucket=BUCKET, Key="orders/part-1.parquet", Body=parquet_bytes("SELECT range AS id, range * 2 AS amount FROM range(100, 150)"))
    s3.put_object(Bucket=BUCKET, Key="orders/_SUCCESS", Body=b"")
    hms.create_table(db, "orders", [("id", "bigint"), ("amount", "bigint")], location=f"s3a://{BUCKET}/orders")

    # Partitioned by day: two partitions in k=v layout under the table, one at an
    # s3:// location elsewhere in the bucket, and one whose only object is not
    # Parquet at all (a query that touched it would fail: pruning proof on S3).
    days = {"2024-03-01": 3, "2024-03-02": 5, "2024-03-03": 7}
    parts = []
    for d, n in days.items():
        key = f"events/dt={d}/f.parquet" if d != "2024-03-03" else "elsewhere/batch-7/f.parquet"
        s3.put_object(Bucket=BUCKET, Key=key, Body=parquet_bytes(f"SELECT range AS n, '{d}' AS tag FROM range({n})"))
        scheme = "s3" if d == "2024-03-03" else "s3a"
        parts.append(([d], f"{scheme}://{BUCKET}/{key.rsplit('/', 1)[0]}"))
    s3.put_object(Bucket=BUCKET, Key="events/dt=2024-03-04/broken.parquet", Body=b"not parquet")
    parts.append((["2024-03-04"], f"s3a://{BUCKET}/events/dt=2024-03-04"))
    hms.create_table(db, "events", [("n", "bigint"), ("tag", "string")], partition_keys=[("dt", "date")],
                     location=f"s3a://{BUCKET}/events")
    hms.add_partitions(db, "events", parts)

    host = moto.removeprefix("http://")
    pond = start_module_server("pond-catalog-s3", extensions="icu,httpfs", extra_args=["--allowed-paths", f"s3://{BUCKET}/"])
    r = q(pond, f"ATTACH '{hms.uri}' AS hs3 (TYPE hive, CACHE_TTL 0)")
    assert r.status_code == 200, r.text
    return {"db": db, "pond": pond, "s3": s3, "host": host, "days": days}


def create_secret(world) -> None:
    r = q(world["pond"], f"CREATE OR REPLACE SECRET lake_s3 (TYPE s3, KEY_ID '{KEY_ID}', SECRET '{SECRET_VALUE}', "
                         f"REGION 'us-east-1', ENDPOINT '{world['host']}', URL_STYLE 'path', USE_SSL 'false', "
                         f"SCOPE 's3://{BUCKET}')")
    assert r.status_code == 200, r.text


def test_without_a_secret_s3_reads_fail_clearly_and_leak_nothing(world):
    pond, db = world["pond"], world["db"]
    q(pond, "DROP SECRET IF EXISTS lake_s3")
    r = q(pond, f"SELECT count(*) FROM hs3.{db}.orders")
    assert r.status_code != 200, r.text
    text = r.json().get("error", r.text)
    # Without the secret's endpoint, httpfs goes to AWS (unreachable here): the error
    # names the catalog and the location, and none of DuckDB's internal SQL.
    assert f"catalog hs3: cannot list the files of s3://{BUCKET}/orders" in text, text
    assert "glob(" not in text and "LINE 1" not in text, text


def test_s3_tables_read_through_the_secret(world):
    pond, db = world["pond"], world["db"]
    create_secret(world)
    assert rows(pond, f"SELECT count(*), sum(amount), min(id), max(id) FROM hs3.{db}.orders") == [(150, 2 * sum(range(150)), 0, 149)]
    # Partition values come from the metastore, typed as declared (date), also for the
    # partition at an s3:// location outside the k=v layout.
    got = rows(pond, f"SELECT dt::VARCHAR, count(*), min(tag) FROM hs3.{db}.events WHERE dt <= DATE '2024-03-03' GROUP BY ALL ORDER BY 1")
    assert got == [(d, n, d) for d, n in world["days"].items()]
    assert rows(pond, f"SELECT typeof(dt) FROM hs3.{db}.events WHERE dt = DATE '2024-03-02' LIMIT 1") == [("DATE",)]


def test_pruning_on_s3_never_opens_other_partitions(world):
    pond, db = world["pond"], world["db"]
    create_secret(world)
    # The 2024-03-04 partition holds a broken object: any query that read it fails.
    r = q(pond, f"SELECT count(*) FROM hs3.{db}.events")
    assert r.status_code != 200 and "broken.parquet" in r.text, r.text
    assert rows(pond, f"SELECT count(*) FROM hs3.{db}.events WHERE dt = DATE '2024-03-02'") == [(5,)]
    plan = "\n".join(str(x) for x in rows(pond, f"EXPLAIN SELECT * FROM hs3.{db}.events WHERE dt = DATE '2024-03-02'"))
    assert "1 partitions selected of 4" in plan and "1 files read" in plan, plan
    assert SECRET_VALUE not in plan and KEY_ID not in plan


def test_objects_changed_in_s3_are_what_pond_reads(world):
    pond, db, s3 = world["pond"], world["db"], world["s3"]
    create_secret(world)
    before = rows(pond, f"SELECT count(*) FROM hs3.{db}.orders")[0][0]
    s3.put_object(Bucket=BUCKET, Key="orders/part-2.parquet", Body=parquet_bytes("SELECT 1000 + range AS id, 0 AS amount FROM range(25)"))
    try:
        assert rows(pond, f"SELECT count(*) FROM hs3.{db}.orders") == [(before + 25,)]
    finally:
        s3.delete_object(Bucket=BUCKET, Key="orders/part-2.parquet")
    assert rows(pond, f"SELECT count(*) FROM hs3.{db}.orders") == [(before,)]


def test_s3_listings_are_cached_for_the_ttl_and_dropped_by_refresh(world, hms):
    """With a cache TTL, an S3 location is listed once per TTL (not per query):
    an object added meanwhile is read after the TTL or REFRESH CATALOG, one
    deleted makes the query fail by name (never rows silently missing)."""
    pond, db, s3 = world["pond"], world["db"], world["s3"]
    create_secret(world)
    r = q(pond, f"ATTACH '{hms.uri}' AS hs3c (TYPE hive, CACHE_TTL 3600)")
    assert r.status_code == 200, r.text
    try:
        before = rows(pond, f"SELECT count(*) FROM hs3c.{db}.orders")[0][0]
        s3.put_object(Bucket=BUCKET, Key="orders/part-3.parquet", Body=parquet_bytes("SELECT 2000 + range AS id, 0 AS amount FROM range(10)"))
        try:
            plan = "\n".join(str(x) for x in rows(pond, f"EXPLAIN SELECT count(*) FROM hs3c.{db}.orders"))
            assert "1 of 1 listings cached" in plan, plan
            assert rows(pond, f"SELECT count(*) FROM hs3c.{db}.orders") == [(before,)]
            assert q(pond, f"REFRESH CATALOG hs3c {db} orders").status_code == 200
            assert rows(pond, f"SELECT count(*) FROM hs3c.{db}.orders") == [(before + 10,)]
        finally:
            s3.delete_object(Bucket=BUCKET, Key="orders/part-3.parquet")
        r = q(pond, f"SELECT count(*) FROM hs3c.{db}.orders")
        assert r.status_code != 200 and "part-3.parquet" in r.text, r.text
        assert q(pond, f"REFRESH CATALOG hs3c {db} orders").status_code == 200
        assert rows(pond, f"SELECT count(*) FROM hs3c.{db}.orders") == [(before,)]
    finally:
        q(pond, "DETACH hs3c")


def test_s3_outside_allowed_paths_is_refused(world, hms):
    pond, db, s3 = world["pond"], world["db"], world["s3"]
    create_secret(world)
    s3.create_bucket(Bucket=OTHER_BUCKET)
    s3.put_object(Bucket=OTHER_BUCKET, Key="t/f.parquet", Body=parquet_bytes("SELECT 1 AS id"))
    hms.create_table(db, "foreign_t", [("id", "int")], location=f"s3a://{OTHER_BUCKET}/t")
    r = q(pond, f"SELECT * FROM hs3.{db}.foreign_t")
    assert r.status_code != 200, r.text
    assert "allowed-paths" in r.text and OTHER_BUCKET in r.text, r.text
