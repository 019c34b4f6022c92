"""PostgreSQL catalog compatibility: psql's meta-commands, SQLAlchemy 2's Inspector,
pandas read_sql/to_sql, and the catalog queries BI tools (Metabase, Grafana, DBeaver,
Superset) send — against the real `pond serve` process, with a superuser and with a
user who may see one table.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from helpers import PASSWORD

PSQL = shutil.which("psql")
needs_psql = pytest.mark.skipif(PSQL is None, reason="psql is not installed (apt-get install postgresql-client)")
BOB_PW = "bob-catalog-pw-1"


def pg_connect(server, user="admin", password=PASSWORD, dbname="default", **kw) -> psycopg.Connection:
    host, port = server.pg_host_port
    return psycopg.connect(host=host, port=port, user=user, password=password, dbname=dbname, connect_timeout=10, **kw)


def sa_engine(server, user="admin", password=PASSWORD, dbname="default") -> sa.Engine:
    host, port = server.pg_host_port
    return sa.create_engine(sa.URL.create("postgresql+psycopg", user, password, host, port, dbname))


@pytest.fixture(scope="module")
def cat(pond):
    """A database with a table (primary key, NOT NULL, decimal, default, comment), a
    table with a foreign key and an index, a view; a second database; a user who may
    read one table of a third database."""
    import uuid

    run = uuid.uuid4().hex[:6]
    names = {
        "db": f"cat_{run}",
        "other": f"catother_{run}",
        "pub": f"catpub_{run}",
        "bob": f"catbob_{run}",
    }
    conn = pg_connect(pond, autocommit=True)
    db, other, pub, bob = names["db"], names["other"], names["pub"], names["bob"]
    for sql in [
        f"CREATE DATABASE {db}",
        f"CREATE DATABASE {other}",
        f"CREATE DATABASE {pub}",
        f"CREATE TABLE {other}.main.elsewhere (q INTEGER)",
        f"CREATE TABLE {pub}.main.visible (a INTEGER NOT NULL, b VARCHAR)",
        f"CREATE TABLE {pub}.main.hidden (z INTEGER)",
        f"CREATE USER {bob} PASSWORD '{BOB_PW}'",
        f"GRANT SELECT ON TABLE {pub}.main.visible TO {bob}",
    ]:
        conn.execute(sql)
    conn.close()
    # Foreign keys stay inside one database: create these from a session in it.
    conn = pg_connect(pond, dbname=db, autocommit=True)
    for sql in [
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL DEFAULT 'x', "
        "price DECIMAL(10,2), ts TIMESTAMP, tags INTEGER[], ok BOOLEAN, f DOUBLE)",
        "COMMENT ON TABLE items IS 'things we sell'",
        "CREATE TABLE orders (oid_ INTEGER, item INTEGER REFERENCES items(id), note TEXT)",
        "CREATE INDEX orders_note ON orders(note)",
        "CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 10",
    ]:
        conn.execute(sql)
    conn.close()
    return names


def psql(server, cmds: list[str], user="admin", password=PASSWORD, db="default", check=True) -> subprocess.CompletedProcess:
    host, port = server.pg_host_port
    args = [PSQL, "-X", "-h", host, "-p", str(port), "-U", user, "-d", db]
    for c in cmds:
        args += ["-c", c]
    r = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, PGPASSWORD=password), timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def rows_of(out: str) -> list[list[str]]:
    """The cells of psql's aligned output (header and rows, no rules or footers)."""
    rows = []
    for line in out.splitlines():
        if "|" in line and not line.startswith("-"):
            rows.append([c.strip() for c in line.split("|")])
    return rows


# ----- psql ----------------------------------------------------------------------------


@needs_psql
def test_psql_lists_databases_schemas_tables_and_roles(pond, cat):
    db = cat["db"]
    out = psql(pond, ["\\l"], db=db).stdout
    assert "List of databases" in out
    names = {r[0] for r in rows_of(out)}
    assert {db, cat["other"], cat["pub"], "default"} <= names
    out = psql(pond, ["\\dn"], db=db).stdout
    assert "List of schemas" in out and ["main", "pond"] in rows_of(out)
    out = psql(pond, ["\\dt"], db=db).stdout
    rows = rows_of(out)
    assert ["main", "items", "table", "pond"] in rows and ["main", "orders", "table", "pond"] in rows
    # Tables of other databases are not in this database's catalog.
    assert "elsewhere" not in out and "cheap" not in out
    out = psql(pond, ["\\dv"], db=db).stdout
    assert ["main", "cheap", "view", "pond"] in rows_of(out)
    out = psql(pond, ["\\du"], db=db).stdout
    assert "admin" in out and "Superuser" in out and cat["bob"] in out


@needs_psql
def test_psql_describes_a_table_columns_types_nullability_defaults_indexes(pond, cat):
    out = psql(pond, ["\\d items"], db=cat["db"]).stdout
    assert 'Table "main.items"' in out
    cols = {r[0]: r for r in rows_of(out)[1:]}
    assert cols["id"][1:4] == ["integer", "", "not null"]
    assert cols["name"][1] == "text" and cols["name"][3] == "not null" and cols["name"][4] == "'x'"
    assert cols["price"][1] == "numeric(10,2)" and cols["price"][3] == ""
    assert cols["ts"][1] == "timestamp without time zone"
    assert cols["tags"][1] == "integer[]"
    assert cols["ok"][1] == "boolean" and cols["f"][1] == "double precision"
    assert "Indexes:" in out and re.search(r'"items_\w*pkey" PRIMARY KEY, art \(id\)', out), out
    assert "Referenced by:" in out and re.search(r'TABLE "orders" CONSTRAINT "\w+" FOREIGN KEY \(item\) REFERENCES items\(id\)', out), out
    out = psql(pond, ["\\d orders"], db=cat["db"]).stdout
    assert '"orders_note" art (note)' in out
    assert "Foreign-key constraints:" in out and re.search(r'"\w+" FOREIGN KEY \(item\) REFERENCES items\(id\)', out), out
    out = psql(pond, ["\\d cheap"], db=cat["db"]).stdout
    assert 'View "main.cheap"' in out and "name" in out
    r = psql(pond, ["\\d no_such_relation"], db=cat["db"], check=False)
    assert "Did not find any relation named" in r.stderr


@needs_psql
def test_psql_expanded_display_and_timing(pond, cat):
    out = psql(pond, ["\\x", "\\timing", "select 1 as one, 'two' as two"], db=cat["db"]).stdout
    assert "Expanded display is on." in out and "Timing is on." in out
    assert re.search(r"-\[ RECORD 1 \]-*\s*\n\s*one\s*\|\s*1\s*\n\s*two\s*\|\s*two", out), out
    assert re.search(r"Time: \d+\.\d+ ms", out)


@needs_psql
def test_psql_restricted_user_sees_only_granted_tables(pond, cat):
    bob, pub = cat["bob"], cat["pub"]
    out = psql(pond, ["\\dt"], user=bob, password=BOB_PW, db=pub).stdout
    assert "visible" in out and "hidden" not in out
    out = psql(pond, ["\\d visible"], user=bob, password=BOB_PW, db=pub).stdout
    assert 'Table "main.visible"' in out and "not null" in out
    r = psql(pond, ["\\d hidden"], user=bob, password=BOB_PW, db=pub, check=False)
    assert r.returncode != 0 and "Did not find any relation" in r.stderr
    out = psql(pond, ["\\l"], user=bob, password=BOB_PW, db=pub).stdout
    names = {r[0] for r in rows_of(out)}
    assert pub in names and cat["db"] not in names and cat["other"] not in names
    out = psql(pond, ["\\du"], user=bob, password=BOB_PW, db=pub).stdout
    assert bob in out and "admin" not in out


# ----- SQLAlchemy ------------------------------------------------------------------------


def test_sqlalchemy_connects_and_inspects(pond, cat):
    engine = sa_engine(pond, dbname=cat["db"])
    with engine.connect() as c:
        assert c.execute(sa.text("select 1")).scalar() == 1  # Superset's connection test
        assert c.execute(sa.text("select current_database()")).scalar() == cat["db"]
    insp = sa.inspect(engine)
    assert insp.default_schema_name == "main"
    assert "main" in insp.get_schema_names()
    assert sorted(insp.get_table_names()) == ["items", "orders"]
    assert insp.get_view_names() == ["cheap"]
    cols = {c["name"]: c for c in insp.get_columns("items")}
    assert list(cols) == ["id", "name", "price", "ts", "tags", "ok", "f"]
    assert isinstance(cols["id"]["type"], sa.INTEGER) and cols["id"]["nullable"] is False
    assert isinstance(cols["name"]["type"], sa.TEXT) and cols["name"]["nullable"] is False
    assert cols["name"]["default"] == "'x'"
    assert isinstance(cols["price"]["type"], sa.NUMERIC) and (cols["price"]["type"].precision, cols["price"]["type"].scale) == (10, 2)
    assert isinstance(cols["ts"]["type"], sa.TIMESTAMP) and cols["ts"]["nullable"] is True
    assert isinstance(cols["tags"]["type"], sa.ARRAY)
    assert isinstance(cols["ok"]["type"], sa.BOOLEAN) and isinstance(cols["f"]["type"], sa.DOUBLE_PRECISION)
    pk = insp.get_pk_constraint("items")
    assert pk["constrained_columns"] == ["id"] and pk["name"]
    fks = insp.get_foreign_keys("orders")
    assert len(fks) == 1
    assert fks[0]["constrained_columns"] == ["item"] and fks[0]["referred_table"] == "items"
    assert fks[0]["referred_columns"] == ["id"]
    idx = insp.get_indexes("orders")
    assert [(i["name"], i["column_names"], i["unique"]) for i in idx] == [("orders_note", ["note"], False)]
    assert insp.get_unique_constraints("items") == []
    assert insp.get_table_comment("items")["text"] == "things we sell"
    assert insp.has_table("items") and not insp.has_table("elsewhere") and not insp.has_table("nope")
    assert insp.get_columns("cheap")[0]["name"] == "id"
    engine.dispose()


def test_sqlalchemy_restricted_user_inspects_only_granted_tables(pond, cat):
    engine = sa_engine(pond, user=cat["bob"], password=BOB_PW, dbname=cat["pub"])
    insp = sa.inspect(engine)
    assert insp.get_table_names() == ["visible"]
    assert insp.has_table("visible") and not insp.has_table("hidden")
    assert [c["name"] for c in insp.get_columns("visible")] == ["a", "b"]
    with engine.connect() as c:
        rels = c.execute(sa.text("select relname from pg_catalog.pg_class")).scalars().all()
        assert rels == ["visible"]
        dbs = c.execute(sa.text("select datname from pg_catalog.pg_database")).scalars().all()
        assert cat["pub"] in dbs and cat["db"] not in dbs and cat["other"] not in dbs
        # Column lists of tables the user may not see are not there either.
        n = c.execute(sa.text("select count(*) from pg_catalog.pg_attribute where attname = 'z'")).scalar()
        assert n == 0
        assert c.execute(sa.text("select has_table_privilege('hidden', 'SELECT')")).scalar() is False
        assert c.execute(sa.text("select has_table_privilege('visible', 'SELECT')")).scalar() is True
    engine.dispose()


# ----- pandas --------------------------------------------------------------------------


def test_pandas_to_sql_and_read_sql_round_trip(pond, cat):
    engine = sa_engine(pond, dbname=cat["other"])
    df = pd.DataFrame(
        {
            "n": [1, 2, 3],
            "s": ["a", "b'quote", None],
            "x": [1.5, None, -2.25],
            "flag": [True, False, True],
            "when": pd.to_datetime(["2024-01-02 03:04:05", "2024-02-29 00:00:00", "2023-12-31 23:59:59"]),
        }
    )
    df.to_sql("frame", engine, index=False)
    back = pd.read_sql("select * from frame order by n", engine)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    # if_exists='replace' uses has_table and DROP; method='multi' inserts with one multi-row VALUES.
    df2 = df.assign(n=df["n"] * 10)
    df2.to_sql("frame", engine, index=False, if_exists="replace", method="multi")
    back = pd.read_sql_table("frame", engine)
    pd.testing.assert_frame_equal(back.sort_values("n").reset_index(drop=True), df2, check_dtype=False)
    df.to_sql("frame", engine, index=False, if_exists="append")
    assert pd.read_sql("select count(*) as c from frame", engine)["c"][0] == 6
    with pytest.raises(ValueError):
        df.to_sql("frame", engine, index=False, if_exists="fail")
    # Directly over a psycopg connection.
    with pg_connect(pond, dbname=cat["other"]) as conn:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pandas prefers SQLAlchemy
            direct = pd.read_sql("select n, s from frame where n < %(m)s order by n", conn, params={"m": 10})
    assert direct["n"].tolist() == [1, 2, 3] and direct["s"].tolist()[:2] == ["a", "b'quote"]
    engine.dispose()


# ----- BI tools' catalog queries ---------------------------------------------------------

# Written from what the tools document and send (pgJDBC's DatabaseMetaData for
# Metabase and DBeaver, Grafana's PostgreSQL data source, Superset via SQLAlchemy).
BI_QUERIES = {
    "jdbc_schemas": (
        "SELECT nspname AS TABLE_SCHEM, NULL AS TABLE_CATALOG FROM pg_catalog.pg_namespace "
        "WHERE nspname <> 'pg_toast' AND (nspname !~ '^pg_temp_' OR nspname = (pg_catalog.current_schemas(true))[1]) "
        "AND (nspname !~ '^pg_toast_temp_' OR nspname = replace((pg_catalog.current_schemas(true))[1], 'pg_temp_', 'pg_toast_temp_')) "
        "ORDER BY TABLE_SCHEM",
        lambda rows: ["main"] in [list(r[:1]) for r in rows],
    ),
    "jdbc_tables": (
        "SELECT NULL AS TABLE_CAT, n.nspname AS TABLE_SCHEM, c.relname AS TABLE_NAME, "
        "CASE n.nspname ~ '^pg_' OR n.nspname = 'information_schema' WHEN true THEN 'SYSTEM' ELSE "
        "CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'v' THEN 'VIEW' WHEN 'i' THEN 'INDEX' ELSE NULL END END AS TABLE_TYPE, "
        "d.description AS REMARKS FROM pg_catalog.pg_namespace n, pg_catalog.pg_class c "
        "LEFT JOIN pg_catalog.pg_description d ON (c.oid = d.objoid AND d.objsubid = 0 AND d.classoid = 'pg_class'::regclass) "
        "WHERE c.relnamespace = n.oid AND c.relname LIKE '%' AND (false OR (c.relkind IN ('r','p') AND n.nspname !~ '^pg_' "
        "AND n.nspname <> 'information_schema') OR (c.relkind = 'v' AND n.nspname <> 'pg_catalog' "
        "AND n.nspname <> 'information_schema')) ORDER BY TABLE_TYPE, TABLE_SCHEM, TABLE_NAME",
        lambda rows: [(r[2], r[3], r[4]) for r in rows]
        == [("items", "TABLE", "things we sell"), ("orders", "TABLE", None), ("cheap", "VIEW", None)],
    ),
    "jdbc_columns": (
        "SELECT * FROM (SELECT n.nspname, c.relname, a.attname, a.atttypid, a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) "
        "AS attnotnull, a.atttypmod, a.attlen, t.typtypmod, row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) AS attnum, "
        "nullif(a.attidentity, '') AS attidentity, pg_catalog.pg_get_expr(def.adbin, def.adrelid) AS adsrc, dsc.description, "
        "t.typbasetype, t.typtype FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_class c ON (c.relnamespace = n.oid) "
        "JOIN pg_catalog.pg_attribute a ON (a.attrelid = c.oid) JOIN pg_catalog.pg_type t ON (a.atttypid = t.oid) "
        "LEFT JOIN pg_catalog.pg_attrdef def ON (a.attrelid = def.adrelid AND a.attnum = def.adnum) "
        "LEFT JOIN pg_catalog.pg_description dsc ON (c.oid = dsc.objoid AND a.attnum = dsc.objsubid) "
        "WHERE c.relkind IN ('r','p','v','f','m') AND a.attnum > 0 AND NOT a.attisdropped AND c.relname LIKE 'items') c "
        "WHERE true ORDER BY nspname, c.relname, attnum",
        lambda rows: [(r[2], r[3], r[4]) for r in rows][:3] == [("id", 23, True), ("name", 25, True), ("price", 1700, False)]
        and rows[0][10] is None and rows[1][10] == "'x'",
    ),
    "jdbc_primary_keys": (
        "SELECT NULL AS TABLE_CAT, n.nspname AS TABLE_SCHEM, ct.relname AS TABLE_NAME, a.attname AS COLUMN_NAME, "
        "(information_schema._pg_expandarray(i.indkey)).n AS KEY_SEQ, ci.relname AS PK_NAME "
        "FROM pg_catalog.pg_class ct JOIN pg_catalog.pg_attribute a ON (ct.oid = a.attrelid) "
        "JOIN pg_catalog.pg_namespace n ON (ct.relnamespace = n.oid) JOIN pg_catalog.pg_index i ON (a.attrelid = i.indrelid) "
        "JOIN pg_catalog.pg_class ci ON (ci.oid = i.indexrelid) WHERE true AND ct.relname = 'items' AND i.indisprimary",
        None,  # pgJDBC's _pg_expandarray: not supported, must fail with a clear error and leave the connection usable
    ),
    "metabase_tables": (
        "SELECT n.nspname AS schema, c.relname AS name, CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'v' THEN 'VIEW' END AS type, "
        "obj_description(c.oid) AS description FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','f') "
        "AND n.nspname !~ '^information_schema$' AND n.nspname <> 'pg_catalog' "
        "AND has_schema_privilege(n.nspname, 'USAGE') AND has_table_privilege(c.oid, 'SELECT') ORDER BY 2",
        lambda rows: [(r[1], r[2], r[3]) for r in rows]
        == [("cheap", "VIEW", None), ("items", "TABLE", "things we sell"), ("orders", "TABLE", None)],
    ),
    "metabase_version": ("SELECT current_setting('server_version_num')::int / 100 AS version", lambda rows: rows == [(1500,)]),
    "grafana_timescale": ("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'", lambda rows: rows == []),
    "grafana_columns": (
        "SELECT column_name AS column, data_type AS type FROM information_schema.columns "
        "WHERE table_name = 'items' ORDER BY ordinal_position",
        lambda rows: rows[0] == ("id", "INTEGER"),
    ),
    "dbeaver_namespaces": (
        "SELECT n.oid, n.*, d.description FROM pg_catalog.pg_namespace n LEFT OUTER JOIN pg_catalog.pg_description d "
        "ON d.objoid = n.oid AND d.objsubid = 0 AND d.classoid = 'pg_namespace'::regclass ORDER BY nspname",
        lambda rows: "main" in [r[2] for r in rows],
    ),
    "dbeaver_settings": (
        "select * from pg_catalog.pg_settings where name = 'standard_conforming_strings'",
        lambda rows: rows[0][:2] == ("standard_conforming_strings", "on"),
    ),
    "dbeaver_current": ("SELECT current_schema(), session_user", lambda rows: rows == [("main", "admin")]),
    "dbeaver_database": (
        "SELECT db.oid, db.* FROM pg_catalog.pg_database db WHERE datname = current_database()",
        lambda rows: len(rows) == 1 and rows[0][2],
    ),
    "types": (
        "SELECT t.oid, t.typname, format_type(t.oid, NULL) FROM pg_catalog.pg_type t WHERE t.typname IN ('int4', 'numeric', '_text') "
        "ORDER BY 1",
        lambda rows: rows == [(23, "int4", "integer"), (1009, "_text", "text[]"), (1700, "numeric", "numeric")],
    ),
    "has_table_privilege": (
        "SELECT has_table_privilege('items', 'SELECT'), has_table_privilege('main.orders', 'INSERT')",
        lambda rows: rows == [(True, True)],
    ),
    "current_setting": ("SELECT current_setting('application_name'), current_setting('search_path')", lambda rows: rows[0][0] == "bi-test"),
    "show_search_path": ("SHOW search_path", lambda rows: len(rows) == 1),
    "show_isolation": ("SHOW TRANSACTION ISOLATION LEVEL", lambda rows: rows == [("serializable",)]),
    "version": ("SELECT version()", lambda rows: rows[0][0].startswith("PostgreSQL 15.0")),
}


def test_bi_tool_catalog_queries(pond, cat):
    with pg_connect(pond, dbname=cat["db"], autocommit=True) as conn:
        conn.execute("SET extra_float_digits = 3")
        conn.execute("SET application_name = 'bi-test'")
        failures = []
        for name, (sql, check) in BI_QUERIES.items():
            try:
                rows = conn.execute(sql).fetchall()
            except psycopg.Error as e:
                if check is None:
                    assert str(e).strip(), name
                    continue
                failures.append(f"{name}: {e}")
                continue
            if check is None:
                failures.append(f"{name}: expected an error")
            elif not check(rows):
                failures.append(f"{name}: unexpected rows {rows}")
        assert conn.execute("select 1").fetchone() == (1,)
    assert not failures, "\n".join(failures)
