"""The PostgreSQL listener with the clients people use: psycopg 3 and psql.

Same users, grants and sandbox as Flight SQL and HTTP; the server is the real
`pond serve` process (PostgreSQL address from its ready file).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import threading
import time
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

from helpers import PASSWORD

PSQL = shutil.which("psql")


def pg_connect(server, user: str = "admin", password: str = PASSWORD, dbname: str = "default", **kw) -> psycopg.Connection:
    host, port = server.pg_host_port
    return psycopg.connect(host=host, port=port, user=user, password=password, dbname=dbname, connect_timeout=10, **kw)


@pytest.fixture
def pg(pond):
    conn = pg_connect(pond, autocommit=True)
    yield conn
    conn.close()


def test_connect_reports_postgres_15_and_answers_connect_queries(pg):
    assert pg.info.parameter_status("server_version").startswith("15.0 (Pond ")
    assert pg.info.parameter_status("server_encoding") == "UTF8"
    assert pg.info.parameter_status("DateStyle") == "ISO, MDY"
    assert pg.info.parameter_status("integer_datetimes") == "on"
    assert pg.info.server_version == 150000
    assert pg.execute("select pg_catalog.version()").fetchone()[0].startswith("PostgreSQL 15.0")
    assert pg.execute("select current_schema()").fetchone()[0] == "main"
    assert pg.execute("show standard_conforming_strings").fetchone()[0] == "on"
    assert pg.execute("SHOW TRANSACTION ISOLATION LEVEL").fetchone()[0]
    pg.execute("SET extra_float_digits = 3")
    pg.execute("SET application_name = 'interop'")
    assert pg.execute("select current_setting('application_name')").fetchone()[0] == "interop"


def test_parameters_of_several_types_round_trip(pg):
    values = (
        7,
        -9_000_000_000,
        "héllo 'quoted'",
        1.5,
        True,
        dt.date(2024, 2, 29),
        dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
        Decimal("12.34"),
        b"\x00\x01\xff",
        None,
    )
    row = pg.execute(
        "select %s::integer, %s::bigint, %s::varchar, %s::double, %s::boolean, %s::date, %s::timestamp, "
        "%s::decimal(10,2), %s::blob, %s::integer",
        values,
    ).fetchone()
    assert row == values
    # The same with binary results.
    with pg.cursor(binary=True) as cur:
        cur.execute("select %s::integer, %s::bigint, %s::varchar, %s::double, %s::boolean, %s::date, %s::timestamp, "
                    "%s::decimal(10,2), %s::blob, %s::integer", values)
        assert cur.fetchone() == values


def test_result_types_text_and_binary(pg, uname):
    t = uname("types")
    pg.execute(f"create table {t} (i int, l int[], u uuid, j json, tz timestamptz, iv interval, s smallint, r real)")
    pg.execute(f"insert into {t} values (1, [1, 2, NULL], '123e4567-e89b-12d3-a456-426614174000', '{{\"a\": 1}}', "
               "'2024-01-02 03:04:05+00', interval '1 day 2 hours', 3, 0.5)")
    for binary in (False, True):
        with pg.cursor(binary=binary) as cur:
            cur.execute(f"select * from {t}")
            i, lst, u, j, tz, iv, s, r = cur.fetchone()
            assert (i, lst, str(u), j, s, r) == (1, [1, 2, None], "123e4567-e89b-12d3-a456-426614174000", {"a": 1}, 3, 0.5)
            assert tz == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
            assert iv == dt.timedelta(days=1, hours=2)


def test_server_side_binding_and_many_rows(pg, uname):
    t = uname("bind")
    pg.execute(f"create table {t} (id integer, name varchar)")
    with pg.cursor() as cur:
        cur.executemany(f"insert into {t} values (%s, %s)", [(i, f"n{i}") for i in range(50)])
        # Repeated statements get prepared by psycopg (named statements).
        for i in range(8):
            assert cur.execute(f"select name from {t} where id = %s", (i,)).fetchone() == (f"n{i}",)
        cur.execute(f"select count(*), sum(id) from {t}")
        assert cur.fetchone() == (50, sum(range(50)))
        cur.execute(f"update {t} set name = 'x' where id < %s", (10,))
        assert cur.rowcount == 10
        cur.execute(f"delete from {t} where id >= %s", (40,))
        assert cur.rowcount == 10


def test_transactions_and_error_recovery(pond, uname):
    t = uname("acct")
    with pg_connect(pond) as conn:  # psycopg opens a transaction block by itself
        conn.execute(f"create table {t} (id int primary key, v int)")
        conn.commit()
        conn.execute(f"insert into {t} values (1, 1)")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        with pytest.raises(errors.UniqueViolation):
            conn.execute(f"insert into {t} values (1, 2)")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(errors.InFailedSqlTransaction):
            conn.execute("select 1")
        conn.rollback()
        assert conn.execute(f"select count(*) from {t}").fetchone() == (0,)
        conn.execute(f"insert into {t} values (2, 2)")
        conn.commit()
    with pg_connect(pond, autocommit=True) as conn:
        assert conn.execute(f"select id from {t}").fetchall() == [(2,)]
        with pytest.raises(errors.SyntaxError):
            conn.execute("selec 1")
        with pytest.raises(errors.UndefinedTable):
            conn.execute("select * from no_such_table_here")
        assert conn.execute("select 1").fetchone() == (1,)


def test_cancel_from_another_thread(pond):
    with pg_connect(pond, autocommit=True) as conn:
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled):
            conn.execute("SELECT count(*) FROM range(1000000000000) a")
        assert time.monotonic() - started < 20
        timer.join()
        assert conn.execute("select 'after'").fetchone() == ("after",)


def test_wrong_password_and_unknown_database(pond):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg_connect(pond, password="wrong")
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        pg_connect(pond, dbname="no_such_db")


def test_api_token_works_as_password(pond, pg, uname):
    import requests

    user = uname("tok")
    pg.execute(f"CREATE USER {user} PASSWORD 'tok-pw-12345'")
    r = requests.post(f"{pond.http_url}/api/v1/auth/tokens", json={"name": user}, auth=(user, "tok-pw-12345"), timeout=30)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    # The user name `token` asks for cleartext (SCRAM cannot carry a token); the token names the user.
    with pg_connect(pond, user="token", password=token, autocommit=True) as conn:
        assert conn.info.parameter_status("session_authorization") == user


def test_non_superuser_is_denied_and_sees_only_granted_databases(pond, pg, uname):
    pub, sec, user = uname("pub"), uname("sec"), uname("user")
    for sql in [
        f"CREATE DATABASE {pub}",
        f"CREATE DATABASE {sec}",
        f"CREATE TABLE {pub}.main.t AS SELECT range AS i FROM range(3)",
        f"CREATE TABLE {sec}.main.secret AS SELECT 'TOPSECRET' AS v",
        f"CREATE USER {user} PASSWORD 'user-pw-12345'",
        f"GRANT READ ON DATABASE {pub} TO {user}",
    ]:
        pg.execute(sql)
    with pg_connect(pond, user=user, password="user-pw-12345", dbname=pub, autocommit=True) as conn:
        assert conn.execute("select count(*) from t").fetchone() == (3,)
        with pytest.raises(errors.InsufficientPrivilege) as e:
            conn.execute(f"select * from {sec}.main.secret")
        assert e.value.sqlstate == "42501"
        assert "TOPSECRET" not in str(e.value)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("insert into t values (9)")
        names = {r[0] for r in conn.execute("SHOW DATABASES").fetchall()}
        assert pub in names and sec not in names
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        pg_connect(pond, user=user, password="user-pw-12345", dbname=sec)


@pytest.mark.skipif(PSQL is None, reason="psql is not installed (apt-get install postgresql-client)")
def test_psql_scripted(pond, uname):
    host, port = pond.pg_host_port
    env = dict(os.environ, PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="10")
    base = [PSQL, "-h", host, "-p", str(port), "-U", "admin", "-d", "default", "-X", "-v", "ON_ERROR_STOP=1"]

    def psql(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(base + list(args), capture_output=True, text=True, env=env, timeout=60)

    r = psql("-c", "select 1 as one")
    assert r.returncode == 0, r.stderr
    assert "one" in r.stdout and "(1 row)" in r.stdout
    r = psql("-At", "-c", "select 41 + 1")
    assert r.stdout.strip() == "42", r.stdout + r.stderr
    t = uname("psql")
    script = f"create table {t} (a int, b varchar);\ninsert into {t} values (1, 'x'), (2, 'y');\nselect b from {t} order by a;\n"
    r = subprocess.run(base + ["-At"], input=script, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["CREATE TABLE", "INSERT 0 2", "x", "y"], r.stdout
    r = psql("-c", "select * from no_such_table_psql")
    assert r.returncode != 0 and "no_such_table_psql" in r.stderr


def test_copy_to_stdout_with_psycopg_and_psql(pond, pg, uname):
    t = uname("copy")
    pg.execute(f"create table {t} as select range::integer as id, 'n' || range::varchar as name from range(1000)")
    with pg.cursor() as cur:
        with cur.copy(f"COPY (select * from {t} order by id) TO STDOUT") as copy:
            rows = list(copy.rows())
    assert len(rows) == 1000 and rows[0] == ("0", "n0")
    with pg.cursor() as cur:
        with cur.copy(f"COPY {t} (id) TO STDOUT (FORMAT binary)") as copy:
            copy.set_types(["int4"])
            ids = sorted(r[0] for r in copy.rows())
    assert ids == list(range(1000))
    if PSQL:
        host, port = pond.pg_host_port
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        r = subprocess.run([PSQL, "-h", host, "-p", str(port), "-U", "admin", "-d", "default", "-X", "-c",
                            f"COPY (select * from {t} where id < 2 order by id) TO STDOUT WITH (FORMAT csv, HEADER)"],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "id,name\n0,n0\n1,n1\n", r.stdout


@pytest.mark.skipif(PSQL is None, reason="psql is not installed (apt-get install postgresql-client)")
def test_psql_listing_meta_commands_show_only_what_the_user_may_see(pond, pg, uname):
    pub, sec, user, t = uname("lpub"), uname("lsec"), uname("luser"), uname("lt")
    for sql in [f"CREATE DATABASE {pub}", f"CREATE DATABASE {sec}", f"CREATE TABLE {pub}.main.{t} (a int)",
                f"CREATE USER {user} PASSWORD 'luser-pw-123'", f"GRANT READ ON DATABASE {pub} TO {user}"]:
        pg.execute(sql)
    host, port = pond.pg_host_port

    def psql(who: str, password: str, db: str, cmd: str) -> str:
        env = dict(os.environ, PGPASSWORD=password)
        r = subprocess.run([PSQL, "-h", host, "-p", str(port), "-U", who, "-d", db, "-X", "-c", cmd],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    out = psql("admin", PASSWORD, "default", "\\l")
    assert "List of databases" in out and pub in out and sec in out
    out = psql(user, "luser-pw-123", pub, "\\l")
    assert pub in out and sec not in out
    out = psql(user, "luser-pw-123", pub, "\\dt")
    assert t in out and "List of relations" in out
    out = psql("admin", PASSWORD, "default", "\\du")
    assert "admin" in out and "Superuser" in out and user in out


def test_describe_announces_the_parameter_types_duckdb_infers(pg, uname):
    """Parse with unspecified parameter types (what asyncpg and libpq's
    PQprepare(…, NULL) send), then Describe: the ParameterDescription carries
    DuckDB's inferred types, and a Bind that encodes the values in binary by
    those types (as asyncpg does) is read that way. Where DuckDB cannot tell,
    TEXT, as before."""
    import struct

    t = uname("desc")
    pg.execute(f"CREATE TABLE {t}(id BIGINT, score DOUBLE, name VARCHAR, day DATE)")
    pg.execute(f"INSERT INTO {t} VALUES (1, 0.5, 'a', DATE '2024-01-01'), (2, 1.5, 'b', DATE '2024-01-02')")
    pgc = pg.pgconn
    r = pgc.prepare(b"pond_desc1", f"SELECT name FROM {t} WHERE id = $1 AND score < $2 AND name <> $3".encode(), None)
    assert r.status == psycopg.pq.ExecStatus.COMMAND_OK, r.error_message
    d = pgc.describe_prepared(b"pond_desc1")
    assert d.status == psycopg.pq.ExecStatus.COMMAND_OK, d.error_message
    int8, float8, text = 20, 701, 25
    assert [d.param_type(i) for i in range(d.nparams)] == [int8, float8, text]
    # Values encoded in binary by the announced types.
    r = pgc.exec_prepared(b"pond_desc1", [struct.pack("!q", 2), struct.pack("!d", 9.0), b"zzz"], param_formats=[1, 1, 0])
    assert r.status == psycopg.pq.ExecStatus.TUPLES_OK, r.error_message
    assert r.ntuples == 1 and r.get_value(0, 0) == b"b"
    # A parameter DuckDB cannot type on its own stays TEXT.
    r = pgc.prepare(b"pond_desc2", b"SELECT $1 IS NULL", None)
    assert r.status == psycopg.pq.ExecStatus.COMMAND_OK, r.error_message
    d = pgc.describe_prepared(b"pond_desc2")
    assert d.nparams == 1 and d.param_type(0) == text
