"""External catalogs: a real Hive Metastore 2.3.10 (started here, see hms_server.py),
tables registered through its Thrift API with data files written by these tests, and
a real `pond serve` reading them over HTTP, Flight SQL (ADBC) and PostgreSQL wire.

What would break if the feature broke: rows equal to DuckDB's own read of the same
files; partition pruning proven by unreadable files in partitions a selective query
must not touch; partition values from the metastore (locations outside `k=v`
layout); grants; restart; a metastore that stops mid-session.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import duckdb
import psycopg
import pytest
import requests

from helpers import PASSWORD, adbc_connect

AUTH = ("admin", PASSWORD)


def q(server, text: str, auth=AUTH, timeout: float = 120):
    return requests.post(f"{server.http_url}/api/v1/query", auth=auth, json={"sql": text}, timeout=timeout)


def rows(server, text: str, auth=AUTH):
    r = q(server, text, auth)
    assert r.status_code == 200, r.text
    return [tuple(x) for x in r.json()["data"]]


def err(server, text: str, auth=AUTH, timeout: float = 120) -> tuple[int, str]:
    r = q(server, text, auth, timeout)
    assert r.status_code != 200, f"expected an error from {text!r}, got {r.text[:300]}"
    return r.status_code, r.json().get("error", r.text)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Where the tests' data files live (Pond is allowed to read it)."""
    return tmp_path_factory.mktemp("hivedata")


@pytest.fixture(scope="module")
def pond(start_module_server, lake):
    from pond_server import ensure_extensions

    ensure_extensions(["avro"])
    return start_module_server("pond-catalog", extensions="icu,avro", extra_args=["--allowed-paths", str(lake)])


def write_parquet(path: Path, select_sql: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.sql(f"COPY ({select_sql}) TO '{path}' (FORMAT parquet)")


@pytest.fixture(scope="module")
def world(hms, lake, pond):
    """One metastore database `sales` with tables of every kind, attached as hive1."""
    db = "sales_" + uuid.uuid4().hex[:6]
    hms.create_database(db)
    # Unpartitioned Parquet.
    write_parquet(lake / "orders" / "part-0.parquet", "SELECT range AS id, range * 1.5 AS amount, 'c' || (range % 7) AS customer FROM range(1000)")
    write_parquet(lake / "orders" / "part-1.parquet", "SELECT range AS id, range * 1.5 AS amount, 'c' || (range % 7) AS customer FROM range(1000, 1500)")
    (lake / "orders" / "_SUCCESS").write_text("")
    hms.create_table(db, "orders", [("id", "bigint"), ("amount", "double"), ("customer", "string")], location=lake / "orders")

    # Partitioned by a string day and an int hour, standard k=v layout; 3 x 4 partitions.
    parts = []
    for d in ["2024-01-01", "2024-01-02", "2024-01-03"]:
        for h in range(4):
            loc = lake / "events" / f"dt={d}" / f"h={h}"
            write_parquet(loc / "f.parquet", f"SELECT range AS n, '{d}/{h}' AS tag FROM range({10 + h})")
            parts.append(([d, h], loc))
    hms.create_table(db, "events", [("n", "bigint"), ("tag", "string")], partition_keys=[("dt", "string"), ("h", "int")],
                     location=lake / "events")
    hms.add_partitions(db, "events", parts)

    # Pruning proof: every partition but one holds a file that is not Parquet at all.
    hms.create_trap_table(db, "traps", lake, partitions=6, good=3)

    # Date-typed key, partitions at locations with no k=v in their path; one partition empty.
    odd = []
    for i, d in enumerate(["2023-12-30", "2023-12-31", "2024-01-01"]):
        loc = lake / "odd" / f"batch_{i}"
        loc.mkdir(parents=True, exist_ok=True)
        if i < 2:
            write_parquet(loc / "x.parquet", f"SELECT range AS k FROM range({i + 1})")
        odd.append(([d], loc))
    hms.create_table(db, "odd", [("k", "bigint")], partition_keys=[("day", "date")], location=lake / "odd")
    hms.add_partitions(db, "odd", odd)

    # Text formats.
    (lake / "text").mkdir(parents=True, exist_ok=True)
    (lake / "text" / "a.txt").write_text("alpha\x011\x01true\nbeta\x01\\N\x01false\n")
    hms.create_table(db, "plain_text", [("name", "string"), ("n", "int"), ("ok", "boolean")], location=lake / "text", fmt="text")
    (lake / "csv").mkdir(parents=True, exist_ok=True)
    (lake / "csv" / "a.csv").write_text("x,1\ny,2\n")
    hms.create_table(db, "comma", [("name", "string"), ("n", "int")], location=lake / "csv", fmt="csv")
    (lake / "ocsv").mkdir(parents=True, exist_ok=True)
    (lake / "ocsv" / "a.csv").write_text('"a,b","7"\n"c\\"d","8"\n')
    hms.create_table(db, "quoted", [("name", "string"), ("n", "string")], location=lake / "ocsv", fmt="opencsv")
    (lake / "json").mkdir(parents=True, exist_ok=True)
    (lake / "json" / "a.json").write_text('{"name": "j", "n": 5}\n{"name": "k"}\n')
    hms.create_table(db, "js", [("name", "string"), ("n", "int")], location=lake / "json", fmt="json")
    # Nested types in Parquet.
    write_parquet(lake / "nested" / "f.parquet",
                  "SELECT 1 AS id, {'a': 1, 'b': 'x'} AS s, [1, 2, 3] AS l, MAP {'k': 2} AS m")
    hms.create_table(db, "nested", [("id", "int"), ("s", "struct<a:int,b:string>"), ("l", "array<int>"), ("m", "map<string,int>")],
                     location=lake / "nested")
    # Avro, through DuckDB's avro extension.
    import fastavro

    (lake / "avro").mkdir(parents=True, exist_ok=True)
    schema = {"type": "record", "name": "r", "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": ["null", "string"]}]}
    with open(lake / "avro" / "a.avro", "wb") as f:
        fastavro.writer(f, schema, [{"id": 1, "name": "x"}, {"id": 2, "name": None}])
    hms.create_table(db, "avros", [("id", "bigint"), ("name", "string")], location=lake / "avro", fmt="avro")
    # Unsupported: ORC.
    (lake / "orc").mkdir(parents=True, exist_ok=True)
    hms.create_table(db, "orcs", [("id", "int")], location=lake / "orc", fmt="orc")

    r = q(pond, f"ATTACH '{hms.uri}' AS hive1 (TYPE hive, CACHE_TTL 60)")
    assert r.status_code == 200, r.text
    return {"db": db, "hms": hms, "lake": lake, "pond": pond}


def test_attach_lists_the_catalog_with_its_type(world):
    pond = world["pond"]
    dbs = rows(pond, "SHOW DATABASES")
    assert ("hive1", "hive") in dbs and ("default", "pond") in dbs
    r = requests.get(f"{pond.http_url}/api/v1/databases", auth=AUTH, timeout=30)
    assert r.status_code == 200 and "hive1" in r.text


def test_unpartitioned_parquet_reads_like_duckdb(world):
    pond, db, lake = world["pond"], world["db"], world["lake"]
    got = rows(pond, f"SELECT count(*), sum(amount), count(DISTINCT customer) FROM hive1.{db}.orders")
    want = duckdb.sql(f"SELECT count(*), sum(amount), count(DISTINCT customer) FROM read_parquet('{lake}/orders/*.parquet')").fetchall()
    assert got == [tuple(want[0])]


def test_partition_columns_typed_and_selective_query_selects_one_partition(world):
    pond, db = world["pond"], world["db"]
    got = rows(pond, f"SELECT dt, h, count(*), min(tag) FROM hive1.{db}.events WHERE dt = '2024-01-02' AND h = 3 GROUP BY ALL")
    assert got == [("2024-01-02", 3, 13, "2024-01-02/3")]
    # The whole table: every partition, values from the metastore.
    total = rows(pond, f"SELECT count(*), count(DISTINCT dt), sum(h) FROM hive1.{db}.events")
    assert total == [(3 * (10 + 11 + 12 + 13), 3, 3 * (0 * 10 + 1 * 11 + 2 * 12 + 3 * 13))]
    # Types as declared: h is INTEGER, dt VARCHAR.
    types = rows(pond, f"SELECT typeof(dt), typeof(h) FROM hive1.{db}.events LIMIT 1")
    assert types == [("VARCHAR", "INTEGER")]
    plan = "\n".join(r[1] for r in rows(pond, f"EXPLAIN SELECT * FROM hive1.{db}.events WHERE dt = '2024-01-02' AND h IN (1, 2)"))
    assert "2 partitions selected" in plan and "names with prefix 2024-01-02" in plan and "2 files read" in plan, plan
    # Only the integer key: the metastore evaluates the filter itself.
    plan = "\n".join(r[1] for r in rows(pond, f"EXPLAIN SELECT * FROM hive1.{db}.events WHERE h = 2"))
    assert "3 partitions selected" in plan and "metastore filter: h = 2" in plan and "3 files read" in plan, plan


def test_pruning_never_opens_other_partitions(world):
    pond, db = world["pond"], world["db"]
    assert rows(pond, f"SELECT v, region FROM hive1.{db}.traps WHERE region = 'r3'") == [(42, "r3")]
    assert rows(pond, f"SELECT count(*) FROM hive1.{db}.traps t WHERE t.region IN ('r3') AND v > 0") == [(1,)]
    # Reading everything touches the bad files: proof that the queries above pruned.
    status, message = err(pond, f"SELECT count(*) FROM hive1.{db}.traps")
    assert "bad.parquet" in message or "parquet" in message.lower(), message


def test_partition_values_come_from_the_metastore_not_paths(world):
    pond, db = world["pond"], world["db"]
    got = rows(pond, f"SELECT day, count(*) FROM hive1.{db}.odd GROUP BY day ORDER BY day")
    assert [(str(d), n) for d, n in got] == [("2023-12-30", 1), ("2023-12-31", 2)]
    assert rows(pond, f"SELECT typeof(day) FROM hive1.{db}.odd LIMIT 1") == [("DATE",)]
    got = rows(pond, f"SELECT count(*) FROM hive1.{db}.odd WHERE day >= DATE '2023-12-31'")
    assert got == [(2,)]
    plan = "\n".join(r[1] for r in rows(pond, f"EXPLAIN SELECT * FROM hive1.{db}.odd WHERE day = '2023-12-31'"))
    assert "1 partitions selected of 3" in plan and "filtered locally" in plan, plan


def test_text_csv_json_and_nested(world):
    pond, db = world["pond"], world["db"]
    assert rows(pond, f"SELECT * FROM hive1.{db}.plain_text ORDER BY name") == [("alpha", 1, True), ("beta", None, False)]
    assert rows(pond, f"SELECT * FROM hive1.{db}.comma ORDER BY name") == [("x", 1), ("y", 2)]
    assert rows(pond, f"SELECT * FROM hive1.{db}.quoted ORDER BY name") == [("a,b", "7"), ('c"d', "8")]
    assert rows(pond, f"SELECT * FROM hive1.{db}.js ORDER BY name") == [("j", 5), ("k", None)]
    got = rows(pond, f"SELECT id, s.a, s.b, l[2], m['k'] FROM hive1.{db}.nested")
    assert got == [(1, 1, "x", 2, 2)]
    assert rows(pond, f"SELECT * FROM hive1.{db}.avros ORDER BY id") == [(1, "x"), (2, None)]
    status, message = err(pond, f"SELECT * FROM hive1.{db}.orcs")
    assert "orcs" in message and "ORC" in message, message


def test_join_with_a_pond_database_and_metastore_scan(world):
    pond, db = world["pond"], world["db"]
    assert q(pond, "CREATE DATABASE IF NOT EXISTS crm").status_code == 200
    assert q(pond, "CREATE OR REPLACE TABLE crm.main.customers AS SELECT 'c' || range AS customer, 'name' || range AS name FROM range(7)").status_code == 200
    got = rows(pond, f"SELECT c.name, count(*) FROM hive1.{db}.orders o JOIN crm.main.customers c USING (customer) GROUP BY 1 ORDER BY 1 LIMIT 2")
    assert got == [("name0", 215), ("name1", 215)]
    assert rows(pond, f"SELECT count(*) FROM metastore_scan('hive1', '{db}', 'events') WHERE dt = '2024-01-01'") == [(46,)]
    # Copies into Pond.
    assert q(pond, f"CREATE OR REPLACE TABLE crm.main.day1 AS SELECT * FROM hive1.{db}.events WHERE dt = '2024-01-01'").status_code == 200
    assert q(pond, f"INSERT INTO crm.main.day1 SELECT * FROM hive1.{db}.events e WHERE e.dt = '2024-01-02' AND h = 0").status_code == 200
    assert rows(pond, "SELECT dt, count(*) FROM crm.main.day1 GROUP BY dt ORDER BY dt") == [("2024-01-01", 46), ("2024-01-02", 10)]


def test_flight_and_pgwire_see_and_read_external_tables(world):
    pond, db = world["pond"], world["db"]
    conn = adbc_connect(pond)
    try:
        objects = conn.adbc_get_objects(depth="tables", catalog_filter="hive1").read_all().to_pylist()
        tables = {t["table_name"] for c in objects for s in (c["catalog_db_schemas"] or []) for t in (s["db_schema_tables"] or [])}
        assert {"orders", "events"} <= tables, objects
        cur = conn.cursor()
        cur.execute(f"SELECT count(*) FROM hive1.{db}.events WHERE h = ?", (2,))
        assert cur.fetchall() == [(36,)]
    finally:
        conn.close()
    host, port = pond.pg_host_port
    with psycopg.connect(host=host, port=port, user="admin", password=PASSWORD, dbname="default", autocommit=True) as pg:
        names = {r[0] for r in pg.execute("SELECT table_name FROM information_schema.tables WHERE table_catalog = 'hive1'").fetchall()}
        assert {"orders", "events"} <= names
        assert pg.execute(f"SELECT count(*) FROM hive1.{db}.orders WHERE id < 10").fetchall() == [(10,)]


def test_grants_decide_and_writes_are_refused(world):
    pond, db = world["pond"], world["db"]
    user, pw = "cat_" + uuid.uuid4().hex[:6], "pw-" + uuid.uuid4().hex
    assert q(pond, f"CREATE USER {user} PASSWORD '{pw}'").status_code == 200
    status, message = err(pond, f"SELECT count(*) FROM hive1.{db}.orders", auth=(user, pw))
    assert status == 403, message
    assert user not in [r[0] for r in rows(pond, "SHOW DATABASES", auth=(user, pw))] and "hive1" not in [r[0] for r in rows(pond, "SHOW DATABASES", auth=(user, pw))]
    assert q(pond, f"GRANT SELECT ON TABLE hive1.{db}.orders TO {user}").status_code == 200
    assert rows(pond, f"SELECT count(*) FROM hive1.{db}.orders", auth=(user, pw)) == [(1500,)]
    status, _ = err(pond, f"SELECT count(*) FROM hive1.{db}.events", auth=(user, pw))
    assert status == 403
    status, _ = err(pond, f"SELECT count(*) FROM metastore_scan('hive1', '{db}', 'events')", auth=(user, pw))
    assert status == 403
    assert q(pond, f"GRANT READ ON DATABASE hive1 TO {user}").status_code == 200
    assert rows(pond, f"SELECT count(*) FROM hive1.{db}.events WHERE dt = '2024-01-03'", auth=(user, pw)) == [(46,)]
    # Superuser-only statements.
    status, _ = err(pond, f"REFRESH CATALOG hive1", auth=(user, pw))
    assert status == 403
    status, _ = err(pond, "DETACH hive1", auth=(user, pw))
    assert status == 403
    # Writes into the catalog are refused by name, for everyone.
    status, message = err(pond, f"INSERT INTO hive1.{db}.orders VALUES (1, 2.0, 'x')")
    assert "read-only" in message and "hive1" in message, message
    status, message = err(pond, f"DELETE FROM hive1.{db}.orders")
    assert "read-only" in message, message


def test_max_partitions_and_refresh(world):
    pond, db, hms, lake = world["pond"], world["db"], world["hms"], world["lake"]
    r = q(pond, f"ATTACH '{hms.uri}' AS hive_small (TYPE metastore, PROVIDER hive, MAX_PARTITIONS 4, CACHE_TTL 3600)")
    assert r.status_code == 200, r.text
    try:
        status, message = err(pond, f"SELECT count(*) FROM hive_small.{db}.events")
        assert "12 partitions" in message and "MAX_PARTITIONS 4" in message and "events" in message, message
        assert rows(pond, f"SELECT count(*) FROM hive_small.{db}.events WHERE dt = '2024-01-01'") == [(46,)]
        # A new partition is invisible while cached, visible after REFRESH CATALOG.
        loc = lake / "events" / "dt=2024-01-01" / "h=9"
        write_parquet(loc / "f.parquet", "SELECT range AS n, 'new' AS tag FROM range(5)")
        hms.add_partitions(db, "events", [(["2024-01-01", 9], loc)])
        day1_late = f"SELECT count(*) FROM hive_small.{db}.events WHERE dt = '2024-01-01' AND h >= 3"
        assert rows(pond, day1_late) == [(13,)]
        assert q(pond, f"REFRESH CATALOG hive_small {db} events").status_code == 200
        assert rows(pond, day1_late) == [(18,)]
    finally:
        assert q(pond, "DETACH hive_small").status_code == 200
    assert "hive_small" not in [r[0] for r in rows(pond, "SHOW DATABASES")]


def test_bad_uris_and_unknown_tables_give_clear_errors(world):
    pond, db = world["pond"], world["db"]
    started = time.monotonic()
    status, message = err(pond, "ATTACH 'thrift://127.0.0.1:1' AS nowhere (TYPE hive, TIMEOUT 2)")
    assert time.monotonic() - started < 30
    assert "nowhere" in message and "127.0.0.1:1" in message, message
    status, message = err(pond, "ATTACH 'http://127.0.0.1:9083' AS badscheme (TYPE hive)")
    assert "thrift://" in message, message
    status, message = err(pond, "ATTACH 'thrift://127.0.0.1:9083' AS badopt (TYPE hive, COLOUR 'red')")
    assert "COLOUR" in message, message
    status, message = err(pond, f"SELECT * FROM hive1.{db}.no_such_table")
    assert "no_such_table" in message, message


def test_secrets_are_sealed_listed_without_values_and_superuser_only(world):
    pond = world["pond"]
    canary = "sk-canary-" + uuid.uuid4().hex
    r = q(pond, f"CREATE SECRET lake_creds (TYPE s3, KEY_ID 'AKIAEXAMPLE', SECRET '{canary}', REGION 'eu-west-1')")
    assert r.status_code == 200, r.text
    listed = rows(pond, "SHOW SECRETS")
    assert [x[:2] for x in listed if x[0] == "lake_creds"] == [("lake_creds", "s3")]
    assert canary not in json.dumps(listed)
    meta = (pond.data_dir / "system" / "pond.json").read_text()
    assert "lake_creds" in meta and canary not in meta
    key = pond.data_dir / "system" / "master.key"
    assert key.exists() and (key.stat().st_mode & 0o077) == 0
    assert canary not in pond.log_path.read_text(errors="replace")
    status, message = err(pond, "CREATE SECRET nope (TYPE s3, KEY_ID 'a', SECRET 'b')", auth=("nobody", "x"))
    assert status == 401
    status, message = err(pond, "CREATE SECRET bad (TYPE ftp)")
    assert "ftp" in message, message
    assert q(pond, "DROP SECRET lake_creds").status_code == 200
    assert "lake_creds" not in [x[0] for x in rows(pond, "SHOW SECRETS")]


def test_restart_and_metastore_down_mid_session(world, start_module_server, tmp_path):
    hms, db, lake = world["hms"], world["db"], world["lake"]
    # A server of its own (restarted below), with a short metastore timeout.
    own = start_module_server("pond-catalog-restart", extra_args=["--allowed-paths", str(lake)])
    assert q(own, f"ATTACH '{hms.uri}' AS h2 (TYPE hive, TIMEOUT 3, CACHE_TTL 0)").status_code == 200
    assert q(own, "CREATE SECRET keep_me (TYPE s3, KEY_ID 'k', SECRET 'v')").status_code == 200
    own.stop()
    own.start()
    assert ("h2", "hive") in rows(own, "SHOW DATABASES")
    assert ("keep_me", "s3") in [x[:2] for x in rows(own, "SHOW SECRETS")]
    assert rows(own, f"SELECT count(*) FROM h2.{db}.orders") == [(1500,)]
    hms.stop()
    try:
        started = time.monotonic()
        status, message = err(own, f"SELECT count(*) FROM h2.{db}.orders", timeout=60)
        took = time.monotonic() - started
        assert took < 30, f"a query on a stopped metastore took {took:.1f} s"
        assert "h2" in message and "orders" in message, message
        # Other databases are unaffected.
        assert rows(own, "SELECT 41 + 1") == [(42,)]
    finally:
        hms.start(port=hms.port)
    assert rows(own, f"SELECT count(*) FROM h2.{db}.orders") == [(1500,)]
