"""The per-session statement caches (sandbox verdicts by statement text, DuckDB
prepared statements) must never outlive what they were built on: a revoked
grant, a dropped user, a different current database or a replaced table stop
the very next execution of a statement that was allowed before."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from helpers import PASSWORD

USER_PW = "cache-user-pw-1"


def connect(server, user="admin", password=PASSWORD, dbname="default") -> psycopg.Connection:
    host, port = server.pg_host_port
    return psycopg.connect(host=host, port=port, user=user, password=password, dbname=dbname, autocommit=True, connect_timeout=10)


@pytest.fixture
def setup(pond, uname):
    user, table, db = uname("cache_u"), uname("cache_t"), uname("cache_db")
    with connect(pond) as admin:
        admin.execute(f"CREATE TABLE {table} (aid INTEGER PRIMARY KEY, abalance INTEGER)")
        admin.execute(f"INSERT INTO {table} SELECT range, range * 2 FROM range(1, 101)")
        admin.execute(f"CREATE USER {user} PASSWORD '{USER_PW}'")
        admin.execute(f"GRANT SELECT ON TABLE default.main.{table} TO {user}")
        admin.execute(f"CREATE DATABASE {db}")
    yield user, table, db


def point_select(conn, table, aid):
    # prepare=True: Parse once, then Bind/Describe/Execute per call (the pgbench -M prepared path).
    return conn.execute(f"SELECT abalance FROM {table} WHERE aid = %s", [aid], prepare=True).fetchone()[0]


def test_revoke_applies_at_the_next_execution_of_a_cached_statement(pond, setup):
    user, table, _ = setup
    with connect(pond) as admin, connect(pond, user, USER_PW) as conn:
        for aid in (1, 2, 3, 4, 5, 6):
            assert point_select(conn, table, aid) == aid * 2
        admin.execute(f"REVOKE SELECT ON TABLE default.main.{table} FROM {user}")
        with pytest.raises(errors.InsufficientPrivilege, match=table):
            point_select(conn, table, 7)
        # Simple protocol, same text as before the revoke: denied too.
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"SELECT abalance FROM {table} WHERE aid = 7")
        admin.execute(f"GRANT SELECT ON TABLE default.main.{table} TO {user}")
        assert point_select(conn, table, 8) == 16


def test_dropped_user_stops_at_the_next_execution(pond, setup):
    user, table, _ = setup
    with connect(pond) as admin:
        conn = connect(pond, user, USER_PW)
        for aid in (1, 2, 3):
            assert point_select(conn, table, aid) == aid * 2
        admin.execute(f"DROP USER {user}")
        with pytest.raises(psycopg.Error, match="no longer exists"):
            point_select(conn, table, 4)
        conn.close()


def test_verdict_is_not_reused_in_another_database(pond, setup, uname):
    user, table, db = setup
    other = uname("cache_other")
    with connect(pond) as admin:
        # The same unqualified name in another database, which the user may use
        # (a grant on another of its tables) but not read.
        admin.execute(f"CREATE TABLE {db}.main.{table} (aid INTEGER, abalance INTEGER)")
        admin.execute(f"INSERT INTO {db}.main.{table} VALUES (1, 999)")
        admin.execute(f"CREATE TABLE {db}.main.{other} (x INTEGER)")
        admin.execute(f"GRANT SELECT ON TABLE {db}.main.{other} TO {user}")
        with connect(pond, user, USER_PW) as conn:
            sql = f"SELECT abalance FROM {table} WHERE aid = 1"
            assert conn.execute(sql).fetchone()[0] == 2
            assert conn.execute(sql).fetchone()[0] == 2
            conn.execute(f"USE {db}")
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(sql)
            conn.execute("USE default")
            assert conn.execute(sql).fetchone()[0] == 2


def test_table_replaced_by_view_over_secret_is_checked_again(pond, setup, uname):
    user, table, _ = setup
    secret = uname("cache_secret")
    with connect(pond) as admin, connect(pond, user, USER_PW) as conn:
        admin.execute(f"CREATE TABLE {secret} (aid INTEGER, abalance INTEGER)")
        admin.execute(f"INSERT INTO {secret} VALUES (1, -1)")
        for aid in (1, 2, 3):
            assert point_select(conn, table, aid) == aid * 2
        # The granted name now is a view reading a table the user may not read.
        admin.execute(f"DROP TABLE {table}")
        admin.execute(f"CREATE VIEW {table} AS SELECT * FROM {secret}")
        with pytest.raises(psycopg.Error):
            point_select(conn, table, 1)
