"""Flight SQL through the ADBC driver (adbc_driver_flightsql, Go core): the client most users have."""

from __future__ import annotations

import datetime as dt
import decimal

import adbc_driver_manager
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from helpers import query_rows, query_table, run


def status(exc) -> adbc_driver_manager.AdbcStatusCode | None:
    return getattr(exc, "status_code", None)


# ---------------------------------------------------------------- execute / fetch


def test_execute_fetch_arrow_table(conn):
    t = query_table(conn, "SELECT 42 AS answer, 'pond' AS name, 1.5::DOUBLE AS x")
    assert t.column_names == ["answer", "name", "x"]
    assert t.to_pylist() == [{"answer": 42, "name": "pond", "x": 1.5}]
    assert t.schema.field("answer").type == pa.int32()


def test_fetch_many_rows_in_batches(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT range AS i, range * 2 AS j FROM range(300000)")
        t = cur.fetch_arrow_table()
    assert t.num_rows == 300000
    assert pc.sum(t["i"]).as_py() == 300000 * 299999 // 2
    assert t["j"][299999].as_py() == 599998


def test_fetchall_and_description(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM (VALUES (1, 'a'), (2, 'b')) t(id, v) ORDER BY id")
        assert [d[0] for d in cur.description] == ["id", "v"]
        assert cur.fetchall() == [(1, "a"), (2, "b")]


def test_empty_result_keeps_schema(conn):
    t = query_table(conn, "SELECT 1::BIGINT AS a, 'x' AS b WHERE false")
    assert t.num_rows == 0
    assert t.schema.names == ["a", "b"]
    assert t.schema.field("a").type == pa.int64()


def test_ddl_dml_take_effect_without_fetch(conn, connect, uname):
    t = uname("nofetch")
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {t} (i INTEGER)")
        cur.execute(f"INSERT INTO {t} VALUES (1), (2), (3)")
    other = connect()
    assert query_rows(other, f"SELECT count(*) FROM {t}") == [(3,)]


def test_multi_statement_string(conn, uname):
    t = uname("multi")
    run(conn, f"CREATE TABLE {t} (i INTEGER); INSERT INTO {t} VALUES (7); INSERT INTO {t} VALUES (8)")
    assert query_rows(conn, f"SELECT sum(i) FROM {t}") == [(15,)]


def test_update_rowcount(conn, uname):
    t = uname("rc")
    run(conn, f"CREATE TABLE {t} AS SELECT range AS i FROM range(10)")
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {t} SET i = i + 100 WHERE i < 4")
        # DB-API rowcount is -1 when unknown; if reported it must be right.
        assert cur.rowcount in (-1, 4)
    assert query_rows(conn, f"SELECT count(*) FROM {t} WHERE i >= 100") == [(4,)]


# ---------------------------------------------------------------- parameters


def test_parameters_scalar(conn):
    rows = query_rows(conn, "SELECT ? + 1 AS a, ? AS s, ?::DOUBLE AS d", (41, "hi", 2.5))
    assert rows == [(42, "hi", 2.5)]


def test_parameters_types_and_null(conn, uname):
    t = uname("params")
    run(conn, f"CREATE TABLE {t} (i BIGINT, s VARCHAR, d DATE, ts TIMESTAMP, b BLOB, n DECIMAL(10,2), f BOOLEAN)")
    values = (5, "naïve", dt.date(2024, 2, 29), dt.datetime(2024, 1, 2, 3, 4, 5, 6), b"\x00\xff", decimal.Decimal("12.34"), True)
    run(conn, f"INSERT INTO {t} VALUES (?, ?, ?, ?, ?, ?, ?)", values)
    run(conn, f"INSERT INTO {t} VALUES (?, ?, ?, ?, ?, ?, ?)", (None,) * 7)
    rows = query_rows(conn, f"SELECT * FROM {t} ORDER BY i NULLS LAST")
    assert rows[0] == values
    assert rows[1] == (None,) * 7
    assert query_rows(conn, f"SELECT s FROM {t} WHERE i = ?", (5,)) == [("naïve",)]
    assert query_rows(conn, f"SELECT count(*) FROM {t} WHERE s = ?", ("nope",)) == [(0,)]


def test_prepare_reports_parameter_schema(conn):
    with conn.cursor() as cur:
        param_schema = cur.adbc_prepare("SELECT ?::INTEGER + 1 AS a, ?::VARCHAR AS b")
        assert param_schema is not None and len(param_schema) == 2, param_schema
        cur.execute("SELECT ?::INTEGER + 1 AS a, ?::VARCHAR AS b", (1, "x"))
        assert cur.fetchall() == [(2, "x")]


def test_prepared_statement_reused(conn):
    with conn.cursor() as cur:
        for i in range(5):
            cur.execute("SELECT ? * 10 AS v", (i,))
            assert cur.fetchall() == [(i * 10,)]


def test_executemany(conn, uname):
    t = uname("many")
    run(conn, f"CREATE TABLE {t} (id INTEGER, v VARCHAR)")
    rows = [(i, f"v{i}") for i in range(500)]
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {t} VALUES (?, ?)", rows)
    assert query_rows(conn, f"SELECT count(*), sum(id), max(v) FROM {t}") == [(500, sum(range(500)), "v99")]
    assert query_rows(conn, f"SELECT v FROM {t} WHERE id = 123") == [("v123",)]


def test_executemany_arrow_batch(conn, uname):
    t = uname("many_arrow")
    run(conn, f"CREATE TABLE {t} (id INTEGER, v DOUBLE)")
    data = pa.table({"id": pa.array(range(1000), pa.int32()), "v": pa.array([i / 4 for i in range(1000)])})
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {t} VALUES (?, ?)", data)
    assert query_rows(conn, f"SELECT count(*), sum(v) FROM {t}") == [(1000, sum(i / 4 for i in range(1000)))]


# ---------------------------------------------------------------- bulk ingest


def _sample(n: int, start: int = 0) -> pa.Table:
    return pa.table({
        "id": pa.array(range(start, start + n), pa.int64()),
        "name": pa.array([f"n{i}" for i in range(start, start + n)]),
        "ts": pa.array([dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i) for i in range(start, start + n)], pa.timestamp("us")),
    })


def test_ingest_create_append_replace(conn, uname):
    t = uname("ing")
    with conn.cursor() as cur:
        cur.adbc_ingest(t, _sample(100), mode="create")
    assert query_rows(conn, f"SELECT count(*), min(id), max(id) FROM {t}") == [(100, 0, 99)]
    got = query_table(conn, f"SELECT * FROM {t} ORDER BY id")
    assert got.equals(_sample(100))

    with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as ei:
        cur.adbc_ingest(t, _sample(1), mode="create")
    assert status(ei.value) in (adbc_driver_manager.AdbcStatusCode.ALREADY_EXISTS,
                                adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT), ei.value

    with conn.cursor() as cur:
        cur.adbc_ingest(t, _sample(50, 100), mode="append")
    assert query_rows(conn, f"SELECT count(*), max(id) FROM {t}") == [(150, 149)]

    with conn.cursor() as cur:
        cur.adbc_ingest(t, _sample(10, 1000), mode="replace")
    assert query_rows(conn, f"SELECT count(*), min(id) FROM {t}") == [(10, 1000)]

    # replace may change the schema
    with conn.cursor() as cur:
        cur.adbc_ingest(t, pa.table({"other": ["a", "b"]}), mode="replace")
    assert query_table(conn, f"SELECT * FROM {t}").column_names == ["other"]


def test_ingest_create_append_mode(conn, uname):
    t = uname("ing_ca")
    with conn.cursor() as cur:
        cur.adbc_ingest(t, _sample(5), mode="create_append")  # creates
        cur.adbc_ingest(t, _sample(5, 5), mode="create_append")  # appends
    assert query_rows(conn, f"SELECT count(*), max(id) FROM {t}") == [(10, 9)]


def test_ingest_append_to_missing_table_fails(conn, uname):
    with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as ei:
        cur.adbc_ingest(uname("missing"), _sample(3), mode="append")
    assert status(ei.value) in (adbc_driver_manager.AdbcStatusCode.NOT_FOUND,
                                adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT), ei.value


def test_ingest_record_batch_reader_large(conn, uname):
    t = uname("ing_big")
    n = 1_000_000
    batches = [pa.record_batch({"i": pa.array(range(s, s + 100_000), pa.int64()),
                                "f": pa.array([float(x) for x in range(s, s + 100_000)])})
               for s in range(0, n, 100_000)]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, batches)
    with conn.cursor() as cur:
        cur.adbc_ingest(t, reader, mode="create")
    assert query_rows(conn, f"SELECT count(*), sum(i) FROM {t}") == [(n, n * (n - 1) // 2)]


def test_ingest_temporary(conn, connect, uname):
    t = uname("ing_tmp")
    with conn.cursor() as cur:
        cur.adbc_ingest(t, _sample(7), mode="create", temporary=True)
    assert query_rows(conn, f"SELECT count(*) FROM {t}") == [(7,)]
    assert query_rows(conn, f"SELECT count(*) FROM temp.main.{t}") == [(7,)]
    # not a persistent table, and invisible to another session
    assert query_rows(conn, f"SELECT count(*) FROM duckdb_tables() WHERE table_name = '{t}' AND NOT temporary") == [(0,)]
    other = connect()
    with pytest.raises(adbc_driver_manager.Error):
        query_rows(other, f"SELECT count(*) FROM {t}")
    with conn.cursor() as cur:
        cur.adbc_ingest(t, _sample(3, 7), mode="append", temporary=True)
    assert query_rows(conn, f"SELECT count(*) FROM {t}") == [(10,)]


def test_ingest_catalog_and_schema(conn, uname):
    db = uname("ingdb")
    run(conn, f"CREATE DATABASE {db}")
    try:
        run(conn, f"CREATE SCHEMA {db}.staging")
        # separate cursors: an ADBC statement keeps ingest options set by earlier calls
        with conn.cursor() as cur:
            cur.adbc_ingest("events", _sample(12), mode="create", catalog_name=db, db_schema_name="staging")
        with conn.cursor() as cur:
            cur.adbc_ingest("events2", _sample(3), mode="create", catalog_name=db)
        assert query_rows(conn, f"SELECT count(*) FROM {db}.staging.events") == [(12,)]
        assert query_rows(conn, f"SELECT count(*) FROM {db}.main.events2") == [(3,)]
        # nothing leaked into the default database
        assert query_rows(conn, "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'default' "
                                "AND table_name IN ('events', 'events2')") == [(0,)]
    finally:
        run(conn, f"DROP DATABASE {db}")


# ---------------------------------------------------------------- transactions


def test_autocommit_off_commit_and_rollback(connect, uname):
    t = uname("tx")
    setup = connect()
    run(setup, f"CREATE TABLE {t} (i INTEGER)")

    txc = connect(autocommit=False)
    observer = connect()

    run(txc, f"INSERT INTO {t} VALUES (1), (2)")
    assert query_rows(txc, f"SELECT count(*) FROM {t}") == [(2,)]
    assert query_rows(observer, f"SELECT count(*) FROM {t}") == [(0,)], "uncommitted rows leaked"
    txc.rollback()
    assert query_rows(txc, f"SELECT count(*) FROM {t}") == [(0,)]
    assert query_rows(observer, f"SELECT count(*) FROM {t}") == [(0,)]

    run(txc, f"INSERT INTO {t} VALUES (10), (20), (30)")
    assert query_rows(observer, f"SELECT count(*) FROM {t}") == [(0,)]
    txc.commit()
    assert query_rows(observer, f"SELECT count(*), sum(i) FROM {t}") == [(3, 60)]

    # after commit a new transaction starts; a rollback undoes only it
    run(txc, f"DELETE FROM {t}")
    txc.rollback()
    assert query_rows(observer, f"SELECT count(*) FROM {t}") == [(3,)]


def test_rollback_of_ingest_and_ddl(connect, uname):
    t = uname("txddl")
    txc = connect(autocommit=False)
    observer = connect()
    with txc.cursor() as cur:
        cur.adbc_ingest(t, _sample(5), mode="create")
    txc.rollback()
    with pytest.raises(adbc_driver_manager.Error):
        query_rows(observer, f"SELECT * FROM {t}")


def test_toggle_autocommit(connect, uname):
    t = uname("toggle")
    c = connect(autocommit=False)
    observer = connect()
    run(c, f"CREATE TABLE {t} (i INTEGER)")
    c.commit()
    run(c, f"INSERT INTO {t} VALUES (1)")
    c.adbc_connection.set_autocommit(True)  # commits the open transaction (ADBC semantics)
    assert query_rows(observer, f"SELECT count(*) FROM {t}") == [(1,)]
    run(c, f"INSERT INTO {t} VALUES (2)")
    assert query_rows(observer, f"SELECT count(*) FROM {t}") == [(2,)]


# ---------------------------------------------------------------- metadata


def _catalog_names(conn) -> list[str]:
    objs = conn.adbc_get_objects(depth="catalogs").read_all()
    return objs.column("catalog_name").to_pylist()


def test_get_objects_catalogs_are_databases(conn, uname):
    db = uname("objdb")
    assert "default" in _catalog_names(conn)
    run(conn, f"CREATE DATABASE {db}")
    try:
        names = _catalog_names(conn)
        assert db in names
        # DuckDB internals are not databases
        assert "system" not in names and "temp" not in names
    finally:
        run(conn, f"DROP DATABASE {db}")
    assert db not in _catalog_names(conn)


def test_get_objects_tables_and_columns(conn, uname):
    db = uname("objcols")
    run(conn, f"CREATE DATABASE {db}")
    try:
        run(conn, f"CREATE TABLE {db}.main.people (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, born DATE)")
        run(conn, f"CREATE VIEW {db}.main.people_v AS SELECT id FROM {db}.main.people")
        objs = conn.adbc_get_objects(depth="all", catalog_filter=db).read_all().to_pylist()
        assert [o["catalog_name"] for o in objs] == [db]
        schemas = {s["db_schema_name"]: s for s in objs[0]["catalog_db_schemas"]}
        assert "main" in schemas
        tables = {t["table_name"]: t for t in schemas["main"]["db_schema_tables"]}
        assert set(tables) >= {"people", "people_v"}
        assert tables["people"]["table_type"] in ("BASE TABLE", "TABLE")
        assert tables["people_v"]["table_type"] == "VIEW"
        cols = [(c["column_name"], c["ordinal_position"]) for c in tables["people"]["table_columns"]]
        assert cols == [("id", 1), ("name", 2), ("born", 3)]

        # table name filter (LIKE pattern)
        objs = conn.adbc_get_objects(depth="tables", catalog_filter=db, table_name_filter="peop%_v").read_all().to_pylist()
        names = [t["table_name"] for s in objs[0]["catalog_db_schemas"] for t in s["db_schema_tables"]]
        assert names == ["people_v"]
        # table type filter
        objs = conn.adbc_get_objects(depth="tables", catalog_filter=db, table_types_filter=["VIEW"]).read_all().to_pylist()
        names = [t["table_name"] for s in objs[0]["catalog_db_schemas"] for t in s["db_schema_tables"]]
        assert names == ["people_v"]
    finally:
        run(conn, f"DROP DATABASE {db}")


def test_get_table_schema(conn, uname):
    t = uname("schema")
    run(conn, f"CREATE TABLE {t} (a INTEGER, b VARCHAR, c DOUBLE, d TIMESTAMP, e DECIMAL(10,3), f BOOLEAN, g BIGINT[])")
    schema = conn.adbc_get_table_schema(t)
    assert schema.names == ["a", "b", "c", "d", "e", "f", "g"]
    assert schema.field("a").type == pa.int32()
    assert schema.field("b").type in (pa.string(), pa.large_string(), pa.string_view())
    assert schema.field("c").type == pa.float64()
    assert schema.field("d").type == pa.timestamp("us")
    assert schema.field("e").type == pa.decimal128(10, 3)
    assert schema.field("f").type == pa.bool_()
    assert pa.types.is_list(schema.field("g").type) and schema.field("g").type.value_type == pa.int64()
    # qualified lookup
    schema2 = conn.adbc_get_table_schema(t, catalog_filter="default", db_schema_filter="main")
    assert schema2.names == schema.names
    with pytest.raises(adbc_driver_manager.Error):
        conn.adbc_get_table_schema(t + "_nope")


def test_get_table_types(conn):
    types = conn.adbc_get_table_types()
    assert "VIEW" in types
    assert "BASE TABLE" in types or "TABLE" in types


def test_get_info(conn):
    info = conn.adbc_get_info()
    assert info.get("vendor_name"), info
    assert info.get("vendor_version"), info


# ---------------------------------------------------------------- databases


def test_cross_database_join(conn, uname):
    a, b = uname("xa"), uname("xb")
    run(conn, f"CREATE DATABASE {a}")
    run(conn, f"CREATE DATABASE {b}")
    try:
        run(conn, f"CREATE TABLE {a}.main.orders AS SELECT range AS id, range % 3 AS cust FROM range(30)")
        run(conn, f"CREATE TABLE {b}.main.customers AS SELECT * FROM (VALUES (0, 'ann'), (1, 'bob'), (2, 'cy')) t(id, name)")
        t = uname("local")
        run(conn, f"CREATE TABLE \"default\".main.{t} AS SELECT 1 AS k")
        rows = query_rows(conn, f"""
            SELECT c.name, count(*) AS n
            FROM {a}.main.orders o JOIN {b}.main.customers c ON o.cust = c.id
            JOIN "default".main.{t} d ON d.k = 1
            GROUP BY c.name ORDER BY c.name""")
        assert rows == [("ann", 10), ("bob", 10), ("cy", 10)]
    finally:
        run(conn, f"DROP DATABASE {a}")
        run(conn, f"DROP DATABASE {b}")


def _databases(conn) -> list[str]:
    t = query_table(conn, "SHOW DATABASES")
    return t.column("database_name").to_pylist()


def test_database_create_rename_drop_round_trip(conn, connect, uname):
    a, b = uname("rt_a"), uname("rt_b")
    run(conn, f"CREATE DATABASE {a}")
    assert a in _databases(conn)
    run(conn, f"CREATE TABLE {a}.main.t AS SELECT range AS i FROM range(5)")
    run(conn, f"ALTER DATABASE {a} RENAME TO {b}")
    dbs = _databases(conn)
    assert b in dbs and a not in dbs
    # data followed the rename; visible from a fresh session too
    other = connect()
    assert query_rows(other, f"SELECT sum(i) FROM {b}.main.t") == [(10,)]
    with pytest.raises(adbc_driver_manager.Error):
        query_rows(other, f"SELECT * FROM {a}.main.t")
    run(conn, f"DROP DATABASE {b}")
    assert b not in _databases(conn)
    with pytest.raises(adbc_driver_manager.Error):
        query_rows(other, f"SELECT * FROM {b}.main.t")
    # the name can be reused and starts empty
    run(conn, f"CREATE DATABASE {b}")
    try:
        assert query_rows(conn, f"SELECT count(*) FROM duckdb_tables() WHERE database_name = '{b}'") == [(0,)]
    finally:
        run(conn, f"DROP DATABASE {b}")


def test_database_if_exists_variants(conn, uname):
    d = uname("ifx")
    run(conn, f"CREATE DATABASE IF NOT EXISTS {d}")
    run(conn, f"CREATE DATABASE IF NOT EXISTS {d}")
    with pytest.raises(adbc_driver_manager.Error) as ei:
        run(conn, f"CREATE DATABASE {d}")
    assert "exist" in str(ei.value).lower()
    run(conn, f"DROP DATABASE {d}")
    run(conn, f"DROP DATABASE IF EXISTS {d}")
    with pytest.raises(adbc_driver_manager.Error) as ei:
        run(conn, f"DROP DATABASE {d}")
    assert status(ei.value) == adbc_driver_manager.AdbcStatusCode.NOT_FOUND, ei.value


def test_database_names_are_case_insensitive(conn, uname):
    d = uname("Mixed").replace("mixed", "MiXeD")
    run(conn, f"CREATE DATABASE {d}")
    try:
        assert d.lower() in _databases(conn)
        run(conn, f"CREATE TABLE {d.lower()}.main.t (i INTEGER)")
    finally:
        run(conn, f"DROP DATABASE {d.lower()}")


@pytest.mark.parametrize("bad", ['"1abc"', '"a-b"', '"a b"', '"../etc"', "memory", "system", "temp", '"' + "a" * 64 + '"', '""'])
def test_database_name_validation(conn, bad):
    with pytest.raises(adbc_driver_manager.Error) as ei:
        run(conn, f"CREATE DATABASE {bad}")
    assert status(ei.value) == adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT, ei.value


def test_default_database_cannot_be_dropped_or_renamed(conn, uname):
    with pytest.raises(adbc_driver_manager.Error):
        run(conn, 'DROP DATABASE "default"')
    with pytest.raises(adbc_driver_manager.Error):
        run(conn, f'ALTER DATABASE "default" RENAME TO {uname("d")}')
    assert "default" in _databases(conn)


def test_rename_to_existing_fails(conn, uname):
    a, b = uname("ra"), uname("rb")
    run(conn, f"CREATE DATABASE {a}")
    run(conn, f"CREATE DATABASE {b}")
    try:
        with pytest.raises(adbc_driver_manager.Error) as ei:
            run(conn, f"ALTER DATABASE {a} RENAME TO {b}")
        assert "exist" in str(ei.value).lower()
    finally:
        run(conn, f"DROP DATABASE {a}")
        run(conn, f"DROP DATABASE {b}")


# ---------------------------------------------------------------- per-session state


def test_temp_table_visible_only_to_its_connection(connect, uname):
    t = uname("tmp")
    c1, c2 = connect(), connect()
    run(c1, f"CREATE TEMP TABLE {t} AS SELECT 1 AS x")
    assert query_rows(c1, f"SELECT x FROM {t}") == [(1,)]
    with pytest.raises(adbc_driver_manager.Error) as ei:
        query_rows(c2, f"SELECT x FROM {t}")
    assert t in str(ei.value)
    run(c2, f"CREATE TEMP TABLE {t} AS SELECT 2 AS x")  # same name, its own table
    assert query_rows(c1, f"SELECT x FROM {t}") == [(1,)]
    assert query_rows(c2, f"SELECT x FROM {t}") == [(2,)]


def test_use_is_per_connection(connect, uname):
    d = uname("usedb")
    c1, c2 = connect(), connect()
    run(c1, f"CREATE DATABASE {d}")
    try:
        run(c1, f"USE {d}")
        assert query_rows(c1, "SELECT current_database()") == [(d,)]
        assert query_rows(c2, "SELECT current_database()") == [("default",)]
        run(c1, "CREATE TABLE only_here (i INTEGER)")
        assert query_rows(c2, f"SELECT count(*) FROM duckdb_tables() WHERE table_name = 'only_here' AND database_name = '{d}'") == [(1,)]
        assert query_rows(c2, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'only_here' AND database_name = 'default'") == [(0,)]
        run(c1, 'USE "default"')
        assert query_rows(c1, "SELECT current_database()") == [("default",)]
    finally:
        run(c1, f"DROP DATABASE {d}")


def test_use_unknown_database_fails(conn, uname):
    with pytest.raises(adbc_driver_manager.Error) as ei:
        run(conn, f"USE {uname('nodb')}")
    assert status(ei.value) in (adbc_driver_manager.AdbcStatusCode.NOT_FOUND,
                                adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT), ei.value


def test_settings_are_per_session(connect):
    c1, c2 = connect(), connect()
    run(c1, "SET TimeZone = 'America/New_York'")
    assert query_rows(c1, "SELECT current_setting('TimeZone')") == [("America/New_York",)]
    assert query_rows(c2, "SELECT current_setting('TimeZone')") != [("America/New_York",)]


def test_database_header_selects_database(connect, uname):
    d = uname("hdr")
    admin = connect()
    run(admin, f"CREATE DATABASE {d}")
    try:
        c = connect(database=d)
        assert query_rows(c, "SELECT current_database()") == [(d,)]
        run(c, "CREATE TABLE via_header AS SELECT 99 AS v")
        assert query_rows(admin, f"SELECT v FROM {d}.main.via_header") == [(99,)]
    finally:
        run(admin, f"DROP DATABASE {d}")


def test_database_header_unknown_database(connect, uname):
    with pytest.raises(adbc_driver_manager.Error) as ei:
        c = connect(database=uname("ghost"))
        query_rows(c, "SELECT 1")
    assert status(ei.value) == adbc_driver_manager.AdbcStatusCode.NOT_FOUND, ei.value
    assert "does not exist" in str(ei.value)


def test_session_option_catalog(connect, uname):
    """ADBC's current catalog/schema go through SetSessionOptions/GetSessionOptions."""
    d = uname("sopt")
    c = connect()
    run(c, f"CREATE DATABASE {d}")
    try:
        assert c.adbc_current_catalog == "default"
        c.adbc_connection.set_options(**{"adbc.connection.catalog": d})
        assert c.adbc_current_catalog == d
        assert query_rows(c, "SELECT current_database()") == [(d,)]
        run(c, f"CREATE SCHEMA {d}.s2")
        c.adbc_connection.set_options(**{"adbc.connection.db_schema": "s2"})
        assert c.adbc_current_db_schema == "s2"
        assert query_rows(c, "SELECT current_schema()") == [("s2",)]
    finally:
        run(c, 'USE "default"')
        run(c, f"DROP DATABASE {d}")


def test_many_concurrent_connections(connect):
    import concurrent.futures as cf

    conns = [connect() for _ in range(8)]

    def work(i):
        return query_rows(conns[i], f"SELECT sum(range) + {i} FROM range(200000)")[0][0]

    with cf.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(work, range(8)))
    assert results == [sum(range(200000)) + i for i in range(8)]
