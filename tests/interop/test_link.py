"""LINK DATABASE … TO POSTGRES: a real PostgreSQL 15 (tests/interop/pg_server.py) copied
consistently into Pond, then kept up to date (logical replication, or audit triggers when
the source cannot decode WAL or the role has no REPLICATION).

Every comparison is exact: both sides are fetched completely and compared as multisets
of Python values, with explicit normalisation only where the two drivers differ
(timestamptz as UTC instants, float4 rounded to float32, intervals as
(months, days, microseconds), arrays and JSON compared through their JSON text).

Statements (superuser): LINK DATABASE x TO POSTGRES '<uri>' | SECRET 'name' [(SCHEMAS …,
TABLES …, MODE …)], SYNC DATABASE x, UNLINK DATABASE x, DROP DATABASE x, SHOW LINKS.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import random
import re
import string
import struct
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import requests

from helpers import PASSWORD
from pg_server import SUPERUSER_PASSWORD, PostgresServer

SHOW_LINKS_COLUMNS = ["database", "source", "mode", "state", "applied_lsn", "lag_bytes", "lag_seconds", "tables", "last_error"]
LINK_RESULT_COLUMNS = ["database", "mode", "tables", "rows", "message"]
STREAM_TIMEOUT = 30.0  # seconds a streamed change may take to become visible without SYNC


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def pond_connect(server, user: str = "admin", password: str = PASSWORD) -> psycopg.Connection:
    host, port = server.pg_host_port
    SERVERS[port] = server
    return psycopg.connect(host=host, port=port, user=user, password=password, dbname="default",
                           autocommit=True, connect_timeout=10)


def rows(conn, sql: str, params=None) -> list[tuple]:
    cur = conn.execute(sql, params)
    return cur.fetchall() if cur.description else []


def lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


class LinkError(Exception):
    """A statement refused by Pond over HTTP (status, message)."""


def http_sql(server, sql: str, timeout: float = 900):
    r = requests.post(f"{server.http_url}/api/v1/query", auth=("admin", PASSWORD), json={"sql": sql}, timeout=timeout)
    if r.status_code != 200:
        try:
            msg = r.json().get("error", r.text)
        except ValueError:
            msg = r.text
        raise LinkError(f"{r.status_code}: {msg}")
    return r.json()


def link_sql(name: str, source: str, options: str = "", *, secret: bool = False) -> str:
    src = f"SECRET {lit(source)}" if secret else lit(source)
    return f"LINK DATABASE {name} TO POSTGRES {src}" + (f" ({options})" if options else "")


def link(pond_conn, name: str, source: str, options: str = "", *, secret: bool = False) -> dict:
    """LINK DATABASE name TO POSTGRES '<uri>' | SECRET 'name' [(options)] over HTTP on the server
    `pond_conn` (a psycopg connection to Pond) belongs to; its one answer row as a dict.
    (test_link_answer_over_pg_wire checks the same answer over the PostgreSQL protocol.)"""
    body = http_sql(SERVERS[pond_conn.info.port], link_sql(name, source, options, secret=secret))
    cols = [c["name"] for c in body["columns"]]
    assert cols == LINK_RESULT_COLUMNS, cols
    assert len(body["data"]) == 1, body
    return dict(zip(cols, body["data"][0]))


# psycopg connections to Pond know their port; the tests' Pond servers by PostgreSQL port.
SERVERS: dict[int, object] = {}


def show_links(pond_conn) -> dict[str, dict]:
    cur = pond_conn.execute("SHOW LINKS")
    cols = [d.name for d in cur.description]
    assert [c for c in cols if c in SHOW_LINKS_COLUMNS] == SHOW_LINKS_COLUMNS, cols
    return {r[0]: dict(zip(cols, r)) for r in cur.fetchall()}


def sync(pond_conn, name: str) -> float:
    t = time.monotonic()
    pond_conn.execute(f"SYNC DATABASE {name}")
    return time.monotonic() - t


def wait_for(pred, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except psycopg.Error as e:  # a table not there yet, for instance
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def poll(pc, sql: str, want: list[tuple], what: str, timeout: float = STREAM_TIMEOUT) -> None:
    """Polls `sql` on the connection `pc` until it answers `want`. On a timeout the failure also
    says what a fresh connection and HTTP see for the same query (a stale answer cached on
    the polling connection looks different from a change that never arrived)."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = rows(pc, sql)
        if got == want:
            return
        time.sleep(0.1)
    server = SERVERS[pc.info.port]
    with pond_connect(server) as fresh:
        fresh_got = rows(fresh, sql)
    http_got = [tuple(r) for r in http_sql(server, sql)["data"]]
    pytest.fail(f"timed out after {timeout}s waiting for {what}: {sql!r} answered {got!r} on the polling connection; "
                f"a new PostgreSQL-wire connection gets {fresh_got!r}, HTTP {http_got!r}; want {want!r}")


def pond_table(name: str, table: str, schema: str = "public") -> str:
    return f"{name}.{'main' if schema == 'public' else schema}.{table}"


def compare(pg: PostgresServer, db: str, pond_conn, name: str, table: str, cols: str = "*", *,
            schema: str = "public", key: str | None = None, pond_cols: str | None = None, norm=None) -> int:
    """Both sides in full, as multisets (and in key order when key is given); returns the row count."""
    src = pg.execute(f"SELECT {cols} FROM {schema}.{table}" + (f" ORDER BY {key}" if key else ""), db=db)
    dst = rows(pond_conn, f"SELECT {pond_cols or cols} FROM {pond_table(name, table, schema)}" + (f" ORDER BY {key}" if key else ""))
    if norm:
        src, dst = [norm(r) for r in src], [norm(r) for r in dst]
    if key and len(src) == len(dst) and src != dst:
        diffs = []
        for a, b in zip(src, dst):
            if a != b:
                cols_ = [f"col {i}: PostgreSQL {x!r:.120} / Pond {y!r:.120}" for i, (x, y) in enumerate(zip(a, b)) if x != y]
                diffs.append(f"key {a[0]!r:.60}: " + "; ".join(cols_))
        pytest.fail(f"{table}: {len(diffs)} of {len(src)} rows differ (first 8):\n" + "\n".join(diffs[:8]))
    if collections.Counter(src) != collections.Counter(dst):
        only_src = list((collections.Counter(src) - collections.Counter(dst)).elements())[:10]
        only_dst = list((collections.Counter(dst) - collections.Counter(src)).elements())[:10]
        pytest.fail(f"{table}: PostgreSQL has {len(src)} rows, Pond {len(dst)}; only in PostgreSQL (first 10): {only_src}; "
                    f"only in Pond (first 10): {only_dst}")
    if key:
        assert src == dst, f"{table}: same multiset but a different order by {key}"
    return len(src)


def pond_columns(pond_conn, name: str, table: str, schema: str = "main") -> list[tuple[str, str]]:
    return rows(pond_conn, f"SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = {lit(name)} "
                           f"AND table_schema = {lit(schema)} AND table_name = {lit(table)} ORDER BY ordinal_position")


def pond_tables(pond_conn, name: str) -> set[str]:
    # Pond keeps the link's own bookkeeping in schema _pond_link of the linked database.
    return {f"{s}.{t}" for s, t in rows(pond_conn, f"SELECT table_schema, table_name FROM information_schema.tables "
                                                   f"WHERE table_catalog = {lit(name)} AND table_schema NOT LIKE '\\_pond%' ESCAPE '\\'")}


def source_catalog(pg: PostgresServer, db: str) -> set[tuple[str, str]]:
    """What a link could leave behind in a source database: relations, triggers, functions,
    schemas, publications, event triggers, and the cluster's replication slots for this database."""
    return set(pg.execute("""
        SELECT 'rel', n.nspname || '.' || c.relname || ':' || c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
        UNION ALL SELECT 'trigger', tgrelid::regclass::text || '.' || tgname FROM pg_trigger WHERE NOT tgisinternal
        UNION ALL SELECT 'function', n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
        UNION ALL SELECT 'schema', nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
        UNION ALL SELECT 'publication', pubname FROM pg_publication
        UNION ALL SELECT 'event trigger', evtname FROM pg_event_trigger
        UNION ALL SELECT 'slot', slot_name FROM pg_replication_slots WHERE database = current_database()
    """, db=db))


def slots(pg: PostgresServer, db: str) -> list[str]:
    return [r[0] for r in pg.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", params=(db,))]


def error_of(fn) -> str:
    with pytest.raises((psycopg.Error, LinkError)) as e:
        fn()
    return str(e.value)


def f32(x):
    return None if x is None else struct.unpack("f", struct.pack("f", x))[0]


def interval_parts(text: str | None):
    """(months, days, microseconds) from PostgreSQL's ('1 year 2 mons 3 days 04:05:06.789',
    '-1 years -2 mons +3 days -04:05:06') or DuckDB's ('1 year 2 months 3 days 04:05:06.789') text."""
    if text is None:
        return None
    months = days = micros = 0
    tokens = text.split()
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if ":" in tok:
            sign = -1 if tok.startswith("-") else 1
            h, m, s = tok.lstrip("+-").split(":")
            micros += sign * ((int(h) * 60 + int(m)) * 60_000_000 + int(Decimal(s) * 1_000_000))
            i += 1
            continue
        n, unit = int(tok), tokens[i + 1].lower()
        i += 2
        if unit.startswith("year"):
            months += 12 * n
        elif unit.startswith("mon"):
            months += n
        elif unit.startswith("day"):
            days += n
        else:
            raise ValueError(f"interval unit {unit!r} in {text!r}")
    return months, days, micros


def utc(x):
    return None if x is None else x.astimezone(dt.timezone.utc)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lpond(start_module_server):
    """Pond for this module (its data dir and log are checked for passwords at the end)."""
    return start_module_server("pond-link", extensions="icu")


@pytest.fixture
def pc(lpond):
    conn = pond_connect(lpond)
    yield conn
    conn.close()


def _drop_source(pg: PostgresServer, db: str) -> None:
    for _ in range(50):
        try:
            pg.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = %s AND active_pid IS NOT NULL",
                       params=(db,))
            pg.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s AND NOT active",
                       params=(db,))
            pg.drop_database(db)
            return
        except psycopg.Error:
            time.sleep(0.2)


@pytest.fixture
def world(lpond, postgres, uname):
    """Makes source databases and link names; drops the links (DROP DATABASE in Pond) and the
    source databases after the test, whatever happened."""

    class World:
        pond = lpond
        pg = postgres
        made_links: list[tuple] = []
        made_dbs: list[tuple] = []

        def source(self, pg: PostgresServer | None = None) -> str:
            pg = pg or postgres
            db = uname("src")
            pg.create_database(db)
            self.made_dbs.append((pg, db))
            return db

        def name(self, server=None) -> str:
            n = uname("lk")
            self.made_links.append((server or lpond, n))
            return n

    w = World()
    w.made_links, w.made_dbs = [], []
    yield w
    for server, n in w.made_links:
        try:
            if server.proc is not None and server.proc.poll() is None:
                with pond_connect(server) as c:
                    c.execute(f"DROP DATABASE IF EXISTS {n}")
        except Exception:
            pass
    for pg, db in w.made_dbs:
        if pg.running():
            _drop_source(pg, db)


# --------------------------------------------------------------------------------------
# a. every type, copied and streamed
# --------------------------------------------------------------------------------------

TYPES_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy 😀');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN shorttext AS varchar(20);
CREATE TABLE alltypes (
  id int PRIMARY KEY,
  c_small smallint, c_int integer, c_big bigint,
  c_num numeric(10,2), c_num38 numeric(38,10), c_numu numeric, c_num50 numeric(50,10),
  c_real real, c_double double precision,
  c_text text, c_varchar varchar(30), c_char char(5),
  c_bool boolean, c_date date, c_time time, c_ts timestamp, c_tstz timestamptz, c_interval interval,
  c_uuid uuid, c_bytea bytea, c_json json, c_jsonb jsonb,
  c_intarr int[], c_textarr text[], c_mood mood, c_posint posint, c_short shorttext
);
"""

TYPES_ROWS = [
    (1, 1, 2, 3, "12.34", "1.5", "3.14159", "1.5", 1.25, 2.5, "hello", "world", "ab", True, "2024-02-29",
     "12:34:56.789", "2024-01-02 03:04:05.123456", "2024-01-02 03:04:05.123456+05:30", "1 year 2 mons 3 days 04:05:06.789",
     "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", b"\x00\xff\x10", '{"b": 1, "a": [1, 2]}', '{"b": 1, "a": [1, 2]}',
     [1, 2, 3], ["a", "b"], "ok", 7, "short"),
    (2,) + (None,) * 27,
    (3, -32768, -2147483648, -9223372036854775808, "-99999999.99", "-9999999999999999999999999999.9999999999",
     "-123456789012345678901234567890123456789012345678901234567890.123456789012345678901234567890",
     "-1234567890123456789012345678901234567890.1234567890", -3.4e38, -1.7976931348623157e308,
     "x" * 1000, "", "     ", False, "0001-01-01", "00:00:00", "1970-01-01 00:00:00", "1900-01-01 00:00:00+00",
     "-1 years -2 mons +3 days -04:05:06.5", "00000000-0000-0000-0000-000000000000", b"", "[]", "[]", [], [], "sad", 1, ""),
    (4, 0, 0, 0, "0.01", "0.0000000001", "NaN", "0", 0.1, 1e-300,
     "héllo wörld ß 日本語 😀 \t\n \"quotes\" 'single' \\backslash", "Ünïcödé ✓", "é", None, "2000-01-01",
     "23:59:59.999999", "2099-12-31 23:59:59.999999", "2099-12-31 23:59:59.999999-08", "0 days",
     "ffffffff-ffff-ffff-ffff-ffffffffffff", bytes(range(256)), '{"emoji": "😀", "nested": {"k": null}}',
     '{"z": 1, "a": "ü", "arr": [true, false, null], "n": 1.50}', [None, 1, None], ["", "with space", "😀", None],
     "happy 😀", 2147483647, "twenty characters.."),
    (5, 32767, 2147483647, 9223372036854775807, "99999999.99", "9999999999999999999999999999.9999999999",
     "0.000000000000000000000000000000000000000000000000001", "1000000000000000000000000000000000000000",
     3.4e38, 1.7976931348623157e308, "tab\there", "x", "abcde", True, "1999-12-31", "00:00:00.000001",
     "2000-02-29 12:00:00", "2000-02-29 12:00:00+00", "-00:00:00.000001", "123e4567-e89b-12d3-a456-426614174000",
     b"\x00" * 10, "null", '"just a string"', [2147483647, -2147483648], ["{braces}", "a,b", "\"q\""], "ok", 42, None),
    (6, None, None, None, None, None, "Infinity", None, None, None, None, None, None, None, None, None, None, None,
     "1 mon", None, None, "  {\"spaced\" :  true }  ", "{}", [None], [None], None, None, None),
    (7, None, None, None, None, None, "-Infinity", "-0.0000000001", float("nan"), float("inf"), None, None, None, None,
     None, None, None, None, "178000000 years", None, None, None, None, None, None, None, None, None),
]

TYPES_PG_SELECT = ("id, c_small, c_int, c_big, c_num, c_num38, c_numu::text, c_num50::text, c_real, c_double, c_text, "
                   "c_varchar, c_char::text, c_bool, c_date, c_time, c_ts, c_tstz, c_interval::text, c_uuid::text, c_bytea, "
                   "c_json::text, c_jsonb::text, to_json(c_intarr)::text, to_json(c_textarr)::text, c_mood::text, c_posint, "
                   "c_short::text")
TYPES_POND_SELECT = ("id, c_small, c_int, c_big, c_num, c_num38, c_numu, c_num50, c_real, c_double, c_text, "
                     "c_varchar, c_char::text, c_bool, c_date, c_time, c_ts, c_tstz, c_interval::VARCHAR, c_uuid::VARCHAR, c_bytea, "
                     "c_json::VARCHAR, c_jsonb::VARCHAR, to_json(c_intarr)::VARCHAR, to_json(c_textarr)::VARCHAR, c_mood, "
                     "c_posint, c_short")
EXPECTED_TYPES = [
    ("id", "INTEGER"), ("c_small", "SMALLINT"), ("c_int", "INTEGER"), ("c_big", "BIGINT"),
    ("c_num", "DECIMAL(10,2)"), ("c_num38", "DECIMAL(38,10)"), ("c_numu", "VARCHAR"), ("c_num50", "VARCHAR"),
    ("c_real", "FLOAT"), ("c_double", "DOUBLE"), ("c_text", "VARCHAR"), ("c_varchar", "VARCHAR"), ("c_char", "VARCHAR"),
    ("c_bool", "BOOLEAN"), ("c_date", "DATE"), ("c_time", "TIME"), ("c_ts", "TIMESTAMP"),
    ("c_tstz", "TIMESTAMP WITH TIME ZONE"), ("c_interval", "INTERVAL"), ("c_uuid", "UUID"), ("c_bytea", "BLOB"),
    ("c_json", "JSON"), ("c_jsonb", "JSON"), ("c_intarr", "INTEGER[]"), ("c_textarr", "VARCHAR[]"), ("c_mood", "VARCHAR"),
    ("c_posint", "INTEGER"), ("c_short", "VARCHAR"),
]


def _norm_types(r):
    r = list(r)
    r[4] = None if r[4] is None else Decimal(r[4])
    r[5] = None if r[5] is None else Decimal(r[5])
    r[8] = f32(r[8])
    if isinstance(r[8], float) and r[8] != r[8]:
        r[8] = "nan"
    r[17] = utc(r[17])
    r[18] = interval_parts(r[18])
    r[20] = None if r[20] is None else bytes(r[20])
    r[23] = None if r[23] is None else json.dumps(json.loads(r[23]))
    r[24] = None if r[24] is None else json.dumps(json.loads(r[24]))
    if isinstance(r[9], float) and r[9] != r[9]:
        r[9] = "nan"
    return tuple(r)


def _insert_types(pg, db, rows_, id_offset=0):
    with pg.connect(db) as c:
        for r in rows_:
            c.execute("INSERT INTO alltypes VALUES (" + ", ".join(["%s"] * len(r)) + ")", (r[0] + id_offset,) + r[1:])


def test_copy_and_stream_every_type(world, pc):
    pg, db, name = world.pg, world.source(), world.name()
    with pg.connect(db) as c:
        c.execute(TYPES_DDL)
    _insert_types(pg, db, TYPES_ROWS)
    # The values really are what the test says (PostgreSQL's text of the unconstrained numerics).
    assert pg.execute("SELECT c_numu::text FROM alltypes WHERE id = 3", db=db)[0][0].startswith("-1234567890123456789012345678901234567890")

    res = link(pc, name, pg.dsn(db=db))
    assert res["database"] == name and res["mode"] == "logical", res
    assert res["tables"] == 1 and res["rows"] == len(TYPES_ROWS), res
    assert pond_columns(pc, name, "alltypes") == EXPECTED_TYPES
    compare(pg, db, pc, name, "alltypes", TYPES_PG_SELECT, pond_cols=TYPES_POND_SELECT, key="id", norm=_norm_types)

    # The same values through the stream (inserts), and updates that move every column to other values.
    _insert_types(pg, db, TYPES_ROWS, id_offset=100)
    cols = [c for c, _ in EXPECTED_TYPES[1:]]
    with pg.connect(db) as c:
        c.execute(f"UPDATE alltypes a SET ({', '.join(cols)}) = (SELECT {', '.join(cols)} FROM alltypes b WHERE b.id = 104) WHERE a.id = 101")
        c.execute(f"UPDATE alltypes a SET ({', '.join(cols)}) = (SELECT {', '.join(cols)} FROM alltypes b WHERE b.id = 101) WHERE a.id = 102")
        c.execute("DELETE FROM alltypes WHERE id = 103")
    sync(pc, name)
    n = compare(pg, db, pc, name, "alltypes", TYPES_PG_SELECT, pond_cols=TYPES_POND_SELECT, key="id", norm=_norm_types)
    assert n == 2 * len(TYPES_ROWS) - 1
    assert pond_columns(pc, name, "alltypes") == EXPECTED_TYPES


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_link_answer_over_pg_wire(world, pc, protocol):
    """LINK over the PostgreSQL protocol answers its row (RowDescription + DataRow) and returns
    only once the copy is done."""
    pg, db, name = world.pg, world.source(), world.name()
    pg.execute("CREATE TABLE t (id int PRIMARY KEY)", db=db)
    pg.execute("INSERT INTO t SELECT generate_series(1, 50000)", db=db)
    cur = pc.cursor()
    # psycopg sends a statement without parameters as a simple Query; binary results force Parse/Bind/Execute.
    cur.execute(link_sql(name, pg.dsn(db=db)), binary=(protocol == "extended"))
    assert cur.description is not None, f"LINK over the {protocol} protocol answered no row (status {cur.statusmessage!r})"
    assert [d.name for d in cur.description] == LINK_RESULT_COLUMNS
    got = cur.fetchall()
    assert len(got) == 1 and got[0][:4] == (name, "logical", 1, 50000), got
    # Returned only once the copy was done.
    assert rows(pc, f"SELECT count(*) FROM {name}.main.t") == [(50000,)]
    assert show_links(pc)[name]["state"] in ("copying", "streaming")


# --------------------------------------------------------------------------------------
# options, names, read-only, grants, SHOW LINKS, metrics
# --------------------------------------------------------------------------------------

def test_schemas_and_tables_options_and_names(world, pc):
    pg, db = world.pg, world.source()
    with pg.connect(db) as c:
        c.execute("CREATE SCHEMA s2; CREATE SCHEMA s3")
        for t in ["public.a", "public.b", "s2.c", "s2.b", "s3.d"]:
            c.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
            c.execute(f"INSERT INTO {t} SELECT g, '{t}' || g FROM generate_series(1, 10) g")
    n1 = world.name()
    res = link(pc, n1, pg.dsn(db=db), "SCHEMAS 'public,s2'")
    assert (res["tables"], res["rows"]) == (4, 40), res
    assert pond_tables(pc, n1) == {"main.a", "main.b", "s2.c", "s2.b"}
    n2 = world.name()
    res = link(pc, n2, pg.dsn(db=db), "TABLES 'public.a,s2.b', MODE 'logical'")
    assert (res["tables"], res["rows"], res["mode"]) == (2, 20, "logical"), res
    assert pond_tables(pc, n2) == {"main.a", "s2.b"}
    with pg.connect(db) as c:
        for t in ["public.a", "public.b", "s2.c", "s2.b", "s3.d"]:
            c.execute(f"INSERT INTO {t} VALUES (11, 'new')")
    sync(pc, n1)
    sync(pc, n2)
    for n, tables in [(n1, [("public", "a"), ("public", "b"), ("s2", "c"), ("s2", "b")]), (n2, [("public", "a"), ("s2", "b")])]:
        for schema, t in tables:
            assert compare(pg, db, pc, n, t, schema=schema, key="id") == 11
    # s3.d was not linked and stays out.
    assert not rows(pc, f"SELECT 1 FROM information_schema.tables WHERE table_catalog = {lit(n1)} AND table_name = 'd'")


def test_existing_non_empty_database_is_refused(world, pc):
    pg, db, name = world.pg, world.source(), world.name()
    pg.execute("CREATE TABLE t (id int PRIMARY KEY)", db=db)
    pc.execute(f"CREATE DATABASE {name}")
    pc.execute(f"CREATE TABLE {name}.main.mine (x int)")
    msg = error_of(lambda: link(pc, name, pg.dsn(db=db)))
    assert name in msg and re.search(r"not empty|exists", msg, re.I), msg
    assert rows(pc, f"SELECT count(*) FROM {name}.main.mine") == [(0,)]
    assert name not in show_links(pc)
    # An existing empty database is fine.
    name2 = world.name()
    pc.execute(f"CREATE DATABASE {name2}")
    assert link(pc, name2, pg.dsn(db=db))["tables"] == 1


def test_linked_tables_are_read_only_and_grants_work(world, pc, lpond, uname):
    pg, db, name = world.pg, world.source(), world.name()
    with pg.connect(db) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        c.execute("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
    link(pc, name, pg.dsn(db=db))
    t = f"{name}.main.t"
    for sql in [f"INSERT INTO {t} VALUES (3, 'x')", f"UPDATE {t} SET v = 'y'", f"DELETE FROM {t}",
                f"ALTER TABLE {t} ADD COLUMN z int", f"DROP TABLE {t}", f"TRUNCATE {t}"]:
        msg = error_of(lambda: pc.execute(sql))
        assert "UNLINK" in msg, f"{sql}: {msg}"
    assert rows(pc, f"SELECT id, v FROM {t} ORDER BY id") == [(1, "one"), (2, "two")]
    # Grants work as on any database: READ lets a user read; nothing lets anyone write.
    reader, other = uname("reader"), uname("nogrant")
    pc.execute(f"CREATE USER {reader} PASSWORD 'Reader-Pw-12345'")
    pc.execute(f"CREATE USER {other} PASSWORD 'Other-Pw-12345'")
    pc.execute(f"GRANT READ, WRITE ON DATABASE {name} TO {reader}")
    with pond_connect(lpond, reader, "Reader-Pw-12345") as rc:
        assert rows(rc, f"SELECT id, v FROM {t} ORDER BY id") == [(1, "one"), (2, "two")]
        msg = error_of(lambda: rc.execute(f"INSERT INTO {t} VALUES (9, 'nine')"))
        assert "UNLINK" in msg, msg
    with pond_connect(lpond, other, "Other-Pw-12345") as oc:
        error_of(lambda: oc.execute(f"SELECT * FROM {t}"))


def test_show_links_and_metrics(world, pc, lpond):
    pg, db, name = world.pg, world.source(), world.name()
    with pg.connect(db) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        c.execute("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g")
    link(pc, name, pg.dsn(db=db))
    with pg.connect(db) as c:
        for i in range(101, 151):
            c.execute("INSERT INTO t VALUES (%s, 'new')", (i,))
        c.execute("UPDATE t SET v = 'upd' WHERE id <= 10")
    sync(pc, name)
    info = show_links(pc)[name]
    assert info["source"] == f"127.0.0.1:{pg.port}/{db}", info
    assert info["mode"] == "logical" and info["state"] == "streaming", info
    assert SUPERUSER_PASSWORD not in str(info) and quote(SUPERUSER_PASSWORD, safe="") not in str(info)
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", str(info["applied_lsn"])), info
    assert not info["last_error"], info
    # After SYNC with an idle source, lag is (close to) zero.
    assert float(info["lag_bytes"]) >= 0 and float(info["lag_seconds"]) < 5, info
    r = requests.get(f"{lpond.http_url}/metrics", timeout=10)
    if r.status_code == 401:
        r = requests.get(f"{lpond.http_url}/metrics", auth=("admin", PASSWORD), timeout=10)
    assert r.status_code == 200, r.text[:300]
    metrics = {}
    for line in r.text.splitlines():
        m = re.match(r'^(pond_link_\w+)\{[^}]*database="' + re.escape(name) + r'"[^}]*\}\s+(\S+)', line)
        if m:
            metrics[m.group(1)] = float(m.group(2))
    assert set(metrics) >= {"pond_link_lag_bytes", "pond_link_lag_seconds", "pond_link_applied_changes_total"}, metrics
    assert metrics["pond_link_applied_changes_total"] >= 60, metrics
    assert metrics["pond_link_lag_bytes"] >= 0 and metrics["pond_link_lag_seconds"] >= 0, metrics


# --------------------------------------------------------------------------------------
# b, c. streaming without SYNC, and SYNC
# --------------------------------------------------------------------------------------

def test_changes_stream_without_sync(world, pc):
    pg, db, name = world.pg, world.source(), world.name()
    with pg.connect(db) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v text, n int)")
        c.execute("INSERT INTO t SELECT g, 'v' || g, g FROM generate_series(1, 100) g")
    link(pc, name, pg.dsn(db=db))
    t = f"{name}.main.t"
    assert rows(pc, f"SELECT count(*), sum(n) FROM {t}") == [(100, 5050)]
    with pg.connect(db) as c:
        c.execute("INSERT INTO t VALUES (101, 'streamed', 101)")
    poll(pc, f"SELECT v FROM {t} WHERE id = 101", [("streamed",)], "the insert")
    with pg.connect(db) as c:
        c.execute("UPDATE t SET v = 'changed', n = -5 WHERE id = 5")
    poll(pc, f"SELECT v, n FROM {t} WHERE id = 5", [("changed", -5)], "the update")
    with pg.connect(db) as c:
        c.execute("DELETE FROM t WHERE id = 7")
    poll(pc, f"SELECT count(*) FROM {t} WHERE id = 7", [(0,)], "the delete")
    # A multi-statement transaction shows up whole.
    with pg.connect(db) as c:
        with c.transaction():
            c.execute("INSERT INTO t SELECT g, 'tx', g FROM generate_series(200, 299) g")
            c.execute("DELETE FROM t WHERE id BETWEEN 10 AND 19")
    poll(pc, f"SELECT count(*) FROM {t} WHERE id >= 200", [(100,)], "the transaction")
    assert rows(pc, f"SELECT count(*) FROM {t} WHERE id BETWEEN 10 AND 19") == [(0,)]
    compare(pg, db, pc, name, "t", key="id")
    assert show_links(pc)[name]["state"] == "streaming"


def test_sync_makes_everything_committed_before_it_visible(world, pc):
    pg, db, name = world.pg, world.source(), world.name()
    with pg.connect(db) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v text, n bigint)")
        c.execute("INSERT INTO t SELECT g, md5(g::text), g FROM generate_series(1, 5000) g")
    link(pc, name, pg.dsn(db=db))
    rnd = random.Random(7)
    next_id = 5001
    with pg.connect(db) as c:
        for rnd_round in range(5):
            for _ in range(60):
                with c.transaction():
                    for _ in range(rnd.randint(1, 5)):
                        op = rnd.random()
                        if op < 0.4:
                            c.execute("INSERT INTO t VALUES (%s, %s, %s)", (next_id, f"r{rnd_round}", rnd.randint(-10**12, 10**12)))
                            next_id += 1
                        elif op < 0.8:
                            c.execute("UPDATE t SET v = v || '+', n = n + 1 WHERE id = %s", (rnd.randint(1, next_id),))
                        else:
                            c.execute("DELETE FROM t WHERE id = %s", (rnd.randint(1, next_id),))
            c.execute("UPDATE t SET n = n * 2 WHERE id %% 97 = %s", (rnd_round,))
            # SYNC immediately after the last commit: no polling, the compare must be exact.
            sync(pc, name)
            compare(pg, db, pc, name, "t", key="id")


# --------------------------------------------------------------------------------------
# d. keys and replica identity
# --------------------------------------------------------------------------------------

def test_keys_and_replica_identity(world, pc):
    pg, db, name = world.pg, world.source(), world.name()
    with pg.connect(db) as c:
        c.execute("CREATE TABLE pk (id int PRIMARY KEY, v text)")
        c.execute("INSERT INTO pk SELECT g, 'v' || g FROM generate_series(1, 50) g")
        c.execute("CREATE TABLE comp (a int, b text, v int, PRIMARY KEY (a, b))")
        c.execute("INSERT INTO comp SELECT g % 5, 'k' || (g / 5), g FROM generate_series(0, 49) g")
        c.execute("CREATE TABLE full_id (a int, b text)")
        c.execute("ALTER TABLE full_id REPLICA IDENTITY FULL")
        c.execute("INSERT INTO full_id VALUES (1, 'dup'), (1, 'dup'), (1, 'dup'), (2, NULL), (2, NULL), (3, 'x')")
        c.execute("CREATE TABLE nokey (a int, b text)")
        c.execute("INSERT INTO nokey VALUES (1, 'a'), (2, 'b')")
    res = link(pc, name, pg.dsn(db=db))
    assert res["tables"] == 4, res
    with pg.connect(db) as c:
        # Primary-key updates (the key itself changes).
        c.execute("UPDATE pk SET id = id + 1000 WHERE id <= 10")
        c.execute("UPDATE pk SET id = -id, v = 'neg' WHERE id BETWEEN 20 AND 25")
        # Composite key: a non-key column, one key part, delete.
        c.execute("UPDATE comp SET v = v * 10 WHERE a = 1")
        c.execute("UPDATE comp SET b = b || '_moved' WHERE a = 2 AND b = 'k3'")
        c.execute("DELETE FROM comp WHERE a = 3")
        c.execute("INSERT INTO comp VALUES (3, 'k0', 1)")
        # REPLICA IDENTITY FULL with duplicate rows: exactly one of the copies changes / goes.
        c.execute("UPDATE full_id SET b = 'one changed' WHERE ctid = (SELECT ctid FROM full_id WHERE a = 1 LIMIT 1)")
        c.execute("DELETE FROM full_id WHERE ctid = (SELECT ctid FROM full_id WHERE a = 2 LIMIT 1)")
        c.execute("UPDATE full_id SET a = 30 WHERE a = 3")
        # No key, default identity: inserts replicate; the source's own updates and deletes must still work.
        c.execute("INSERT INTO nokey VALUES (3, 'c'), (3, 'c')")
        try:
            c.execute("UPDATE nokey SET b = 'bb' WHERE a = 2")
            c.execute("DELETE FROM nokey WHERE a = 1")
        except psycopg.Error as e:
            pytest.fail(f"the link made the source reject UPDATE/DELETE on a table without a key: {e}")
    sync(pc, name)
    compare(pg, db, pc, name, "pk", key="id")
    compare(pg, db, pc, name, "comp", key="a, b")
    compare(pg, db, pc, name, "full_id")
    got = collections.Counter(rows(pc, f"SELECT a, b FROM {name}.main.nokey"))
    assert got[(3, "c")] == 2 and got[(2, "b")] + got[(2, "bb")] >= 1, got
    info = show_links(pc)[name]
    assert info["state"] == "streaming", info
    text = " ".join(str(v) for v in info.values())
    assert "nokey" in text and re.search(r"not replicated|only inserts?|update.*delete|delete.*update", text, re.I), \
        f"SHOW LINKS should say updates/deletes of nokey are not replicated: {info}"
    assert not re.search(r"\b(pk|comp|full_id)\b", str(info["last_error"] or "")), info


# --------------------------------------------------------------------------------------
# e, f, g. TOAST, TRUNCATE, DDL
# --------------------------------------------------------------------------------------

def test_toasted_value_survives_updates_of_other_columns(world, pc):
    pg, db, name = world.pg, world.source(), world.name()
    rnd = random.Random(42)
    big1 = "".join(rnd.choices(string.ascii_letters + string.digits + "äöü€😀", k=100_000))
    big2 = "".join(rnd.choices(string.ascii_letters + string.digits, k=50_000))
    with pg.connect(db) as c:
        c.execute("CREATE TABLE toasty (id int PRIMARY KEY, n int, big text, js jsonb)")
        c.execute("INSERT INTO toasty VALUES (1, 0, %s, %s::jsonb)", (big1, json.dumps({"k": big2})))
        c.execute("INSERT INTO toasty VALUES (2, 0, 'small', '{}')")
        toast_rows = c.execute("SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'toasty'").fetchone()[0]
        assert c.execute(f"SELECT count(*) FROM {toast_rows}").fetchone()[0] > 0, "the big value should be stored out of line"
    link(pc, name, pg.dsn(db=db))
    with pg.connect(db) as c:
        c.execute("UPDATE toasty SET n = n + 1 WHERE id = 1")   # pgoutput sends big as 'unchanged toast'
        c.execute("INSERT INTO toasty VALUES (3, 0, %s, %s::jsonb)", (big2, json.dumps([big1[:20000]])))
        c.execute("UPDATE toasty SET n = 5 WHERE id = 3")
        c.execute("UPDATE toasty SET n = 6 WHERE id = 3")
    sync(pc, name)
    got = rows(pc, f"SELECT id, n, big, js::VARCHAR FROM {name}.main.toasty ORDER BY id")
    want = world.pg.execute("SELECT id, n, big, js::text FROM toasty ORDER BY id", db=db)
    assert [r[:2] for r in got] == [(1, 1), (2, 0), (3, 6)]
    assert got[0][2] == big1 and got[2][2] == big2, "a toasted value changed in Pond after an update of another column"
    assert got == want


def test_truncate(world, pc):
    pg, db, name = world.pg, world.source(), world.name()
    with pg.connect(db) as c:
        c.execute("CREATE TABLE tr (id int PRIMARY KEY, v text)")
        c.execute("CREATE TABLE tr2 (id int PRIMARY KEY)")
        c.execute("CREATE TABLE keep (id int PRIMARY KEY)")
        for t in ("tr", "tr2", "keep"):
            c.execute(f"INSERT INTO {t} SELECT g {', g::text' if t == 'tr' else ''} FROM generate_series(1, 1000) g")
    link(pc, name, pg.dsn(db=db))
    with pg.connect(db) as c:
        c.execute("TRUNCATE tr")
    poll(pc, f"SELECT count(*) FROM {name}.main.tr", [(0,)], "TRUNCATE")
    with pg.connect(db) as c:
        c.execute("INSERT INTO tr VALUES (4, 'gone')")
        with c.transaction():
            c.execute("INSERT INTO tr2 VALUES (5000)")
            c.execute("TRUNCATE tr, tr2")
            c.execute("INSERT INTO tr2 VALUES (7)")
        c.execute("INSERT INTO tr VALUES (5, 'after')")
    sync(pc, name)
    assert compare(pg, db, pc, name, "tr", key="id") == 1
    assert compare(pg, db, pc, name, "tr2", key="id") == 1
    assert compare(pg, db, pc, name, "keep", key="id") == 1000


def test_add_and_drop_column_then_other_ddl_is_an_error(world, pc):
    pg, db, name = world.pg, world.source(), world.name()
    with pg.connect(db) as c:
        c.execute("CREATE TABLE ddl (id int PRIMARY KEY, a text, c int)")
        c.execute("INSERT INTO ddl SELECT g, 'a' || g, g FROM generate_series(1, 20) g")
    link(pc, name, pg.dsn(db=db))
    with pg.connect(db) as c:
        c.execute("ALTER TABLE ddl ADD COLUMN b int")
        c.execute("INSERT INTO ddl VALUES (21, 'new', 21, 210)")
        c.execute("UPDATE ddl SET b = -1 WHERE id = 3")
    sync(pc, name)
    assert [c for c, _ in pond_columns(pc, name, "ddl")] == ["id", "a", "c", "b"]
    compare(pg, db, pc, name, "ddl", "id, a, c, b", key="id")
    with pg.connect(db) as c:
        c.execute("ALTER TABLE ddl DROP COLUMN a")
        c.execute("INSERT INTO ddl VALUES (22, 22, 220)")
        c.execute("UPDATE ddl SET b = -2 WHERE id = 4")
    sync(pc, name)
    assert [c for c, _ in pond_columns(pc, name, "ddl")] == ["id", "c", "b"]
    compare(pg, db, pc, name, "ddl", "id, c, b", key="id")
    # A change Pond cannot follow: the link stops in state error and says what to do.
    with pg.connect(db) as c:
        c.execute("ALTER TABLE ddl ALTER COLUMN c TYPE text USING 'c=' || c")
        c.execute("INSERT INTO ddl VALUES (23, 'c=23', 230)")
    info = wait_for(lambda: (lambda i: i if i["state"] == "error" else None)(show_links(pc)[name]), STREAM_TIMEOUT,
                    "state error after ALTER COLUMN TYPE")
    msg = str(info["last_error"])
    assert "ddl" in msg and re.search(r"unlink|re-?link", msg, re.I), msg
    # UNLINK still works from the error state and cleans the source.
    pc.execute(f"UNLINK DATABASE {name}")
    assert slots(pg, db) == [] and pg.execute("SELECT pubname FROM pg_publication", db=db) == []


def test_add_column_with_default_fills_existing_rows(world, pc):
    """PostgreSQL 11+ adds a column with a constant default without rewriting: old rows read
    the default but no change is decoded for them. Pond's copy must show the same values."""
    pg, db, name = world.pg, world.source(), world.name()
    with pg.connect(db) as c:
        c.execute("CREATE TABLE d (id int PRIMARY KEY)")
        c.execute("INSERT INTO d SELECT generate_series(1, 10)")
    link(pc, name, pg.dsn(db=db))
    with pg.connect(db) as c:
        c.execute("ALTER TABLE d ADD COLUMN flag text DEFAULT 'on'")
        c.execute("INSERT INTO d VALUES (11, 'off')")
    sync(pc, name)
    compare(pg, db, pc, name, "d", "id, flag", key="id")


# --------------------------------------------------------------------------------------
# h. one big transaction
# --------------------------------------------------------------------------------------

def test_one_million_row_transaction_with_bounded_memory(world, pc, lpond):
    pg, db, name = world.pg, world.source(), world.name()
    with pg.connect(db) as c:
        c.execute("CREATE TABLE big (id int PRIMARY KEY, s text, n bigint)")
    link(pc, name, pg.dsn(db=db))
    pid = lpond.proc.pid
    before = rss_kib(pid)
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    try:
        with pg.connect(db) as c:
            c.execute("INSERT INTO big SELECT g, md5(g::text) || repeat('x', 40), g * 7 FROM generate_series(1, 1000000) g")
        commit = time.monotonic() - t0
        took = sync(pc, name)
    finally:
        stop.set()
        sampler.join()
    grew_mib = (peak[0] - before) / 1024
    print(f"\n1M-row transaction: committed in {commit:.1f}s, SYNC took {took:.1f}s; Pond RSS {before / 1024:.0f} MiB before, "
          f"peak {peak[0] / 1024:.0f} MiB (+{grew_mib:.0f} MiB)")
    want = pg.execute("SELECT count(*), sum(id), sum(n), md5(string_agg(id::text || ':' || s, ',' ORDER BY id)) FROM big", db=db)
    got = rows(pc, f"SELECT count(*), sum(id), sum(n), md5(string_agg(id::VARCHAR || ':' || s, ',' ORDER BY id)) FROM {name}.main.big")
    assert [tuple(int(x) if i < 3 else x for i, x in enumerate(r)) for r in got] == [tuple(want[0])]
    assert grew_mib < 1536, f"Pond's RSS grew by {grew_mib:.0f} MiB applying a 1M-row transaction"


# --------------------------------------------------------------------------------------
# i. crashes and restarts on both sides
# --------------------------------------------------------------------------------------

class Writer(threading.Thread):
    """Keeps changing table w (inserts, updates, deletes in small transactions) until stopped;
    reconnects when PostgreSQL goes away."""

    def __init__(self, pg: PostgresServer, db: str):
        super().__init__(daemon=True)
        self.pg, self.db = pg, db
        self.stop_event = threading.Event()
        self.commits = 0
        self.errors = 0
        self.rnd = random.Random(99)

    def run(self):
        conn = None
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = self.pg.connect(self.db)
                with conn.transaction():
                    for _ in range(self.rnd.randint(1, 4)):
                        k = self.rnd.randint(1, 3000)
                        op = self.rnd.random()
                        if op < 0.5:
                            conn.execute("INSERT INTO w VALUES (%s, %s, 'ins') ON CONFLICT (id) DO UPDATE SET v = w.v + 1, s = 'ups'",
                                         (k, k))
                        elif op < 0.85:
                            conn.execute("UPDATE w SET v = v + 1, s = s || '.' WHERE id = %s", (k,))
                        else:
                            conn.execute("DELETE FROM w WHERE id = %s", (k,))
                self.commits += 1
                time.sleep(0.002)
            except psycopg.Error:
                self.errors += 1
                try:
                    if conn is not None:
                        conn.close()
                except Exception:
                    pass
                conn = None
                time.sleep(0.2)
        if conn is not None:
            conn.close()

    def finish(self):
        self.stop_event.set()
        self.join(30)


def test_pond_killed_mid_stream_three_times(start_server, world, postgres):
    kpond = start_server("pond-link-kill", extensions="icu")
    pg, db, name = postgres, world.source(), world.name(kpond)
    with pg.connect(db) as c:
        c.execute("CREATE TABLE w (id int PRIMARY KEY, v bigint, s text)")
        c.execute("INSERT INTO w SELECT g, g, 'init' FROM generate_series(1, 2000) g")
    with pond_connect(kpond) as k:
        link(k, name, pg.dsn(db=db))
    writer = Writer(pg, db)
    writer.start()
    try:
        for i in range(3):
            time.sleep(3)
            before = writer.commits
            kpond.proc.kill()  # SIGKILL
            kpond.proc.wait()
            time.sleep(1)
            kpond.start()
            assert writer.commits > before, "the writer should keep committing while Pond is down"
    finally:
        writer.finish()
    assert writer.commits > 100, writer.commits
    with pond_connect(kpond) as k:
        sync(k, name)
        compare(pg, db, k, name, "w", key="id")
        assert show_links(k)[name]["state"] == "streaming"
    assert len(slots(pg, db)) == 1, "one slot, however many restarts"


def test_postgres_restart_mid_stream(start_postgres, world, pc):
    pg = start_postgres("logical")
    db, name = world.source(pg), world.name()
    with pg.connect(db) as c:
        c.execute("CREATE TABLE w (id int PRIMARY KEY, v bigint, s text)")
        c.execute("INSERT INTO w SELECT g, g, 'init' FROM generate_series(1, 2000) g")
    link(pc, name, pg.dsn(db=db))
    writer = Writer(pg, db)
    writer.start()
    try:
        time.sleep(3)
        pg.restart()
        time.sleep(3)
        pg.kill()   # and a crash (immediate shutdown, WAL recovery)
        pg.start()
        time.sleep(3)
    finally:
        writer.finish()
    assert writer.commits > 100 and writer.errors > 0, (writer.commits, writer.errors)
    sync(pc, name)
    compare(pg, db, pc, name, "w", key="id")
    assert show_links(pc)[name]["state"] == "streaming"


def test_idle_link_lets_the_source_release_wal(world, pc):
    """WAL the link has no use for (here: writes to a table outside the linked schema) is
    confirmed once everything before it is applied, so the slot does not pin the source's WAL
    (and a fast shutdown of the source does not wait for the link)."""
    pg, db, name = world.pg, world.source(), world.name()
    with pg.connect(db) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        c.execute("CREATE SCHEMA other")
        c.execute("CREATE TABLE other.noise (id int, pad text)")
    link(pc, name, pg.dsn(db=db))
    with pg.connect(db) as c:
        c.execute("INSERT INTO other.noise SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
        target = c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]

    def confirmed():
        row = pg.execute("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE database = %s",
                         params=(str(target), db))
        return row and row[0][0]

    # PostgreSQL 15 sends a keepalive for transactions it skips; Pond answers once idle.
    wait_for(confirmed, 45, "the slot's confirmed_flush_lsn to pass WAL the link does not use")
    assert show_links(pc)[name]["state"] == "streaming"


# --------------------------------------------------------------------------------------
# j. UNLINK and DROP DATABASE
# --------------------------------------------------------------------------------------

def test_unlink_cleans_the_source_and_keeps_writable_tables(world, pc):
    pg, db, name = world.pg, world.source(), world.name()
    with pg.connect(db) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        c.execute("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g")
    before = source_catalog(pg, db)
    link(pc, name, pg.dsn(db=db))
    assert len(slots(pg, db)) == 1 and len(pg.execute("SELECT pubname FROM pg_publication", db=db)) >= 1
    pg.execute("INSERT INTO t VALUES (101, 'last')", db=db)
    sync(pc, name)
    pc.execute(f"UNLINK DATABASE {name}")
    assert slots(pg, db) == []
    assert pg.execute("SELECT pubname FROM pg_publication", db=db) == []
    assert source_catalog(pg, db) == before
    assert name not in show_links(pc)
    # The tables stay, with their data, and are ordinary writable tables now.
    t = f"{name}.main.t"
    assert rows(pc, f"SELECT count(*) FROM {t}") == [(101,)]
    pc.execute(f"INSERT INTO {t} VALUES (500, 'mine')")
    pc.execute(f"UPDATE {t} SET v = 'changed' WHERE id = 1")
    pc.execute(f"DELETE FROM {t} WHERE id = 2")
    pc.execute(f"ALTER TABLE {t} ADD COLUMN extra int")
    assert rows(pc, f"SELECT count(*), count(*) FILTER (WHERE v = 'changed') FROM {t}") == [(101, 1)]
    # Source changes no longer arrive.
    pg.execute("INSERT INTO t VALUES (102, 'after unlink')", db=db)
    time.sleep(2)
    assert rows(pc, f"SELECT count(*) FROM {t} WHERE id = 102") == [(0,)]


def test_drop_database_of_a_linked_database_unlinks(world, pc):
    pg, db, name = world.pg, world.source(), world.name()
    pg.execute("CREATE TABLE t (id int PRIMARY KEY)", db=db)
    before = source_catalog(pg, db)
    link(pc, name, pg.dsn(db=db))
    assert len(slots(pg, db)) == 1
    pc.execute(f"DROP DATABASE {name}")
    assert slots(pg, db) == [] and pg.execute("SELECT pubname FROM pg_publication", db=db) == []
    assert source_catalog(pg, db) == before
    assert name not in show_links(pc)
    assert name not in [r[0] for r in rows(pc, "SHOW DATABASES")]


# --------------------------------------------------------------------------------------
# k. errors
# --------------------------------------------------------------------------------------

def test_wrong_password_is_a_clear_error_without_the_password(world, pc, lpond):
    pg, db, name = world.pg, world.source(), world.name()
    pg.execute("CREATE TABLE t (id int PRIMARY KEY)", db=db)
    wrong = "Wrong-Pw-canary-5d1e"
    msg = error_of(lambda: link(pc, name, pg.dsn(password=wrong, db=db)))
    assert re.search(r"authentication", msg, re.I), msg
    assert wrong not in msg and quote(wrong, safe="") not in msg, msg
    assert name not in show_links(pc)
    assert wrong.encode() not in lpond.log_path.read_bytes()
    # A failed LINK does not block the name.
    assert link(pc, name, pg.dsn(db=db))["tables"] == 1


@pytest.mark.parametrize("where", ["closed port", "unroutable address"])
def test_unreachable_source_fails_within_30s(world, pc, where):
    name = world.name()
    if where == "closed port":
        from pg_server import free_port

        dsn = f"postgresql://postgres:x@127.0.0.1:{free_port()}/postgres"
    else:
        dsn = "postgresql://postgres:x@10.255.255.1:5432/postgres"
    t = time.monotonic()
    msg = error_of(lambda: link(pc, name, dsn))
    took = time.monotonic() - t
    assert took < 30, f"LINK to an unreachable {where} took {took:.1f}s"
    assert msg.strip(), msg
    assert name not in show_links(pc)


def test_role_without_replication_gets_triggers_or_a_clear_error(world, pc, uname):
    pg, db = world.pg, world.source()
    role, pw = uname("app"), "App-Role-Pw-981"
    pg.create_role(role, pw, databases=(db,))
    with pg.connect(db, role, pw) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        c.execute("CREATE TABLE c2 (a int, b text, v int, PRIMARY KEY (a, b))")
        c.execute("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g")
        c.execute("INSERT INTO c2 VALUES (1, 'x', 1), (1, 'y', 2)")
    dsn = pg.dsn(role, pw, db)
    before = source_catalog(pg, db)
    forced = world.name()
    msg = error_of(lambda: link(pc, forced, dsn, "MODE 'logical'"))
    assert re.search(r"replication", msg, re.I) and pw not in msg, msg
    assert forced not in show_links(pc)
    assert source_catalog(pg, db) == before, "a refused LINK must leave nothing behind on the source"
    name = world.name()
    res = link(pc, name, dsn)
    assert res["mode"] == "triggers" and re.search(r"trigger", str(res["message"]), re.I), res
    assert res["rows"] == 102, res
    with pg.connect(db, role, pw) as c:
        c.execute("INSERT INTO t VALUES (101, 'new')")
        c.execute("UPDATE c2 SET v = 20 WHERE a = 1 AND b = 'y'")
        c.execute("DELETE FROM t WHERE id = 1")
    sync(pc, name)
    compare(pg, db, pc, name, "t", key="id")
    compare(pg, db, pc, name, "c2", key="a, b")
    pc.execute(f"UNLINK DATABASE {name}")
    assert source_catalog(pg, db) == before


# --------------------------------------------------------------------------------------
# l. trigger mode on a wal_level=replica server
# --------------------------------------------------------------------------------------

def test_trigger_mode_on_replica_wal_level(world, pc, postgres_replica):
    pg = postgres_replica
    assert pg.setting("wal_level") == "replica"
    db, name = world.source(pg), world.name()
    with pg.connect(db) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v text, n numeric(12,2))")
        c.execute("CREATE TABLE comp (a int, b text, v int, PRIMARY KEY (a, b))")
        c.execute("CREATE SCHEMA other")
        c.execute("CREATE TABLE other.o (id bigint PRIMARY KEY, ts timestamptz)")
        c.execute("INSERT INTO t SELECT g, 'v' || g, g / 3.0 FROM generate_series(1, 500) g")
        c.execute("INSERT INTO comp SELECT g % 7, 'k' || (g / 7), g FROM generate_series(0, 69) g")
        c.execute("INSERT INTO other.o SELECT g, now() - g * interval '1 hour' FROM generate_series(1, 10) g")
    before = source_catalog(pg, db)
    res = link(pc, name, pg.dsn(db=db), "SCHEMAS 'public,other'")
    assert res["mode"] == "triggers" and re.search(r"trigger", str(res["message"]), re.I), res
    assert (res["tables"], res["rows"]) == (3, 580), res
    assert show_links(pc)[name]["mode"] == "triggers"
    # Applied by the poll interval, without SYNC.
    with pg.connect(db) as c:
        c.execute("INSERT INTO t VALUES (1000, 'polled', 1.5)")
    poll(pc, f"SELECT v FROM {name}.main.t WHERE id = 1000", [("polled",)], "a polled insert")
    # Applied by SYNC: a burst including key updates on the composite key.
    with pg.connect(db) as c:
        for i in range(100):
            c.execute("UPDATE t SET v = v || '+', n = n + 1 WHERE id = %s", (i * 5 + 1,))
        c.execute("UPDATE comp SET b = b || '_m' WHERE a = 3")
        c.execute("UPDATE comp SET v = -v WHERE a = 4")
        c.execute("DELETE FROM comp WHERE a = 5")
        c.execute("UPDATE t SET id = id + 10000 WHERE id < 10")
        with c.transaction():
            c.execute("DELETE FROM t WHERE id BETWEEN 100 AND 199")
            c.execute("INSERT INTO t SELECT g, 'again', 0 FROM generate_series(100, 149) g")
        c.execute("UPDATE other.o SET ts = ts + interval '1 day' WHERE id % 2 = 0")
    sync(pc, name)
    compare(pg, db, pc, name, "t", key="id")
    compare(pg, db, pc, name, "comp", key="a, b")
    compare(pg, db, pc, name, "o", "id, ts", schema="other", key="id", norm=lambda r: (r[0], utc(r[1])))
    pc.execute(f"UNLINK DATABASE {name}")
    assert source_catalog(pg, db) == before, "UNLINK must remove the triggers, functions and the audit table"
    pc.execute(f"INSERT INTO {name}.main.t VALUES (-1, 'writable', 0)")


def test_password_with_special_characters(world, pc, uname):
    """A password with characters that must be percent-encoded in the URI (@ : / % ! # ? space)."""
    pg, db, name = world.pg, world.source(), world.name()
    role, pw = uname("special"), "p@ss:w/rd%41!#? x"
    pg.create_role(role, pw, superuser=True)
    pg.execute("CREATE TABLE t (id int PRIMARY KEY)", db=db)
    pg.execute("INSERT INTO t VALUES (1)", db=db)
    dsn = pg.dsn(role, pw, db)
    assert "%40" in dsn and "%2541" in dsn
    assert link(pc, name, dsn)["rows"] == 1
    pg.execute("INSERT INTO t VALUES (2)", db=db)
    sync(pc, name)
    compare(pg, db, pc, name, "t", key="id")


# --------------------------------------------------------------------------------------
# m. the password stays secret (runs last: checks everything this module's Pond saw)
# --------------------------------------------------------------------------------------

def test_password_never_stored_logged_or_shown(world, pc, lpond, uname):
    pg, db = world.pg, world.source()
    canary = "Canary-" + uuid.uuid4().hex[:12] + "-pw"
    role = uname("secretive")
    pg.create_role(role, canary, superuser=True)
    with pg.connect(db, role, canary) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        c.execute("INSERT INTO t VALUES (1, 'a')")
    by_uri, by_secret, secret = world.name(), world.name(), uname("pgsecret")
    link(pc, by_uri, pg.dsn(role, canary, db))
    pc.execute(f"CREATE SECRET {secret} (TYPE postgres, CONNECTION_STRING {lit(pg.dsn(role, canary, db))})")
    res = link(pc, by_secret, secret, secret=True)
    assert res["rows"] == 1, res
    pg.execute("INSERT INTO t VALUES (2, 'b')", db=db)
    sync(pc, by_uri)
    sync(pc, by_secret)
    compare(pg, db, pc, by_secret, "t", key="id")
    # A failed LINK with the password in the URI is not logged either.
    error_of(lambda: link(pc, world.name(), pg.dsn(role, canary, "no_such_db")))
    forms = {canary, quote(canary, safe=""), SUPERUSER_PASSWORD, quote(SUPERUSER_PASSWORD, safe="")}
    shown = {q: str(rows(pc, q)) for q in ["SHOW LINKS", "SHOW SECRETS", "SHOW DATABASES"]}
    for q_, text in shown.items():
        for f in forms:
            assert f not in text, f"{q_} shows a password: {text[:500]}"
    assert secret in shown["SHOW SECRETS"]
    try:
        pc.execute("CHECKPOINT")
    except psycopg.Error:
        pass
    leaks = []
    for path in Path(lpond.data_dir).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaks += [f"{path}: {f!r}" for f in forms if f.encode() in data]
    log = lpond.log_path.read_bytes()
    leaks += [f"server log: {f!r}" for f in forms if f.encode() in log]
    assert not leaks, "passwords found: " + "; ".join(leaks)
