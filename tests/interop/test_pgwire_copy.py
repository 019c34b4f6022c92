"""`COPY … FROM STDIN` over the PostgreSQL listener with psycopg 3 and psql:
text, CSV (HEADER, DELIMITER, NULL) and binary; grants; errors that name the
line and column and commit nothing; a 1M-row load checked by count and sum."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import shutil
import subprocess
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

from helpers import PASSWORD

PSQL = shutil.which("psql")


def connect(server, user: str = "admin", password: str = PASSWORD, dbname: str = "default") -> psycopg.Connection:
    host, port = server.pg_host_port
    return psycopg.connect(host=host, port=port, user=user, password=password, dbname=dbname,
                           connect_timeout=10, autocommit=True)


@pytest.fixture
def pg(pond):
    with connect(pond) as conn:
        yield conn


def make_table(pg, name: str) -> None:
    pg.execute(f"CREATE TABLE {name} (id INTEGER, name VARCHAR, amount DOUBLE, day DATE, ts TIMESTAMP, "
               f"price DECIMAL(10,2), ok BOOLEAN, raw BLOB)")


ROWS = [
    (1, "plain", 1.5, dt.date(2024, 2, 29), dt.datetime(2024, 1, 2, 3, 4, 5, 123456), Decimal("12.34"), True, b"\x00\x01"),
    (2, "tab\tnew\nline \\ back", -2.25, dt.date(1999, 12, 31), dt.datetime(2000, 1, 1), Decimal("-0.50"), False, b""),
    (3, None, None, None, None, None, None, None),
    (4, 'comma, "quote"', 1e-7, dt.date(2030, 6, 1), dt.datetime(2030, 6, 1, 23, 59, 59), Decimal("99999999.99"), True, b"\xff"),
]


def csv_text(rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for row in rows:
        w.writerow(["" if v is None else "\\x" + v.hex() if isinstance(v, bytes) else
                    ("" if v is None else str(v)) for v in row])
    # Unquoted empty fields are NULL in CSV; the csv module never quotes them.
    return buf.getvalue()


def fetch(pg, name):
    return pg.execute(f"SELECT id, name, amount, day, ts, price, ok, raw FROM {name} ORDER BY id").fetchall()


def test_copy_from_stdin_text_csv_binary_with_psycopg(pg, uname):
    for fmt in ["text", "csv", "binary"]:
        t = uname(f"cin_{fmt}")
        make_table(pg, t)
        with pg.cursor() as cur:
            with cur.copy(f"COPY {t} FROM STDIN (FORMAT {fmt})") as copy:
                if fmt == "binary":
                    copy.set_types(["int4", "text", "float8", "date", "timestamp", "numeric", "bool", "bytea"])
                if fmt == "csv":
                    # psycopg's write_row speaks text and binary only: CSV is written by hand.
                    copy.write(csv_text(ROWS))
                else:
                    for row in ROWS:
                        copy.write_row(row)
            assert cur.rowcount == len(ROWS)
        got = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in fetch(pg, t)]
        assert got == ROWS, fmt


def test_copy_csv_options_header_delimiter_null_and_column_list(pg, uname):
    t = uname("cin_opts")
    make_table(pg, t)
    data = "name;id;amount\nalpha;1;NA\n\"NA\";2;2.5\n\"semi;colon\";3;3\n"
    with pg.cursor() as cur:
        with cur.copy(f"COPY {t} (name, id, amount) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';', NULL 'NA')") as copy:
            copy.write(data)
    rows = pg.execute(f"SELECT id, name, amount, day FROM {t} ORDER BY id").fetchall()
    assert rows == [(1, "alpha", None, None), (2, "NA", 2.5, None), (3, "semi;colon", 3.0, None)]


def test_copy_errors_name_line_and_column_and_commit_nothing(pg, uname):
    t = uname("cin_bad")
    make_table(pg, t)
    with pytest.raises(errors.InvalidTextRepresentation) as e:
        with pg.cursor() as cur:
            with cur.copy(f"COPY {t} (id, amount) FROM STDIN (FORMAT csv)") as copy:
                copy.write("1,1.0\n2,2.0\n3,not-a-number\n4,4.0\n")
    assert "line 3" in str(e.value) and "amount" in str(e.value) and "not-a-number" in str(e.value)
    assert pg.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
    with pytest.raises(errors.InvalidTextRepresentation, match="line 2.*extra data"):
        with pg.cursor() as cur:
            with cur.copy(f"COPY {t} (id) FROM STDIN") as copy:
                copy.write("1\n2\t3\n")
    with pytest.raises(errors.UndefinedTable):
        with pg.cursor() as cur:
            with cur.copy(f"COPY {t}_missing FROM STDIN") as copy:
                copy.write("1\n")
    with pytest.raises(errors.UndefinedColumn, match="nope"):
        with pg.cursor() as cur:
            with cur.copy(f"COPY {t} (nope) FROM STDIN") as copy:
                copy.write("1\n")
    # The connection is fine afterwards, and inside a transaction the failure aborts the block.
    assert pg.execute("select 1").fetchone() == (1,)
    pg.autocommit = False
    with pytest.raises(errors.InvalidTextRepresentation):
        with pg.cursor() as cur:
            with cur.copy(f"COPY {t} (id) FROM STDIN") as copy:
                copy.write("x\n")
    with pytest.raises(errors.InFailedSqlTransaction):
        pg.execute("select 1")
    pg.rollback()
    pg.autocommit = True
    # A COPY inside a transaction commits with it.
    pg.autocommit = False
    with pg.cursor() as cur:
        with cur.copy(f"COPY {t} (id) FROM STDIN") as copy:
            copy.write("10\n11\n")
    pg.rollback()
    pg.autocommit = True
    assert pg.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)


def test_copy_streams_batches_yet_a_late_error_or_copyfail_loads_nothing(pg, uname):
    # 300K good rows reach the appender in several batches before the bad
    # line arrives; the load must still roll back as a whole.
    t = uname("cin_late")
    pg.execute(f"CREATE TABLE {t} (id BIGINT, v DOUBLE)")
    n = 300_000
    good = "".join(f"{i}\t{i}.5\n" for i in range(n))
    with pytest.raises(errors.InvalidTextRepresentation, match=f"line {n + 1}, column id"):
        with pg.cursor() as cur:
            with cur.copy(f"COPY {t} FROM STDIN") as copy:
                copy.write(good)
                copy.write("oops\t1\n")
                copy.write("5\t5\n")
    assert pg.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
    # The client gives up midway: psycopg sends CopyFail.
    with pytest.raises(RuntimeError, match="client gave up"):
        with pg.cursor() as cur:
            with cur.copy(f"COPY {t} FROM STDIN") as copy:
                copy.write(good)
                raise RuntimeError("client gave up")
    assert pg.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
    # Inside a transaction the batches already appended go with the rollback.
    pg.autocommit = False
    with pytest.raises(errors.InvalidTextRepresentation):
        with pg.cursor() as cur:
            with cur.copy(f"COPY {t} FROM STDIN") as copy:
                copy.write(good)
                copy.write("bad\n")
    pg.rollback()
    pg.autocommit = True
    assert pg.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
    # And a good load of the same rows lands whole.
    with pg.cursor() as cur:
        with cur.copy(f"COPY {t} FROM STDIN") as copy:
            copy.write(good)
    assert pg.execute(f"SELECT count(*), sum(id) FROM {t}").fetchone() == (n, n * (n - 1) // 2)


def test_copy_needs_insert_read_only_user_is_refused(pond, pg, uname):
    db, user = uname("cindb"), uname("cinro")
    pg.execute(f"CREATE DATABASE {db}")
    pg.execute(f"CREATE TABLE {db}.main.t (id INTEGER)")
    pg.execute(f"CREATE USER {user} PASSWORD 'cin-pw-1234'")
    pg.execute(f"GRANT READ ON DATABASE {db} TO {user}")
    with connect(pond, user=user, password="cin-pw-1234", dbname=db) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            with conn.cursor() as cur:
                with cur.copy("COPY t FROM STDIN") as copy:
                    copy.write("1\n")
        assert conn.execute("select count(*) from t").fetchone() == (0,)
    pg.execute(f"GRANT INSERT ON TABLE {db}.main.t TO {user}")
    with connect(pond, user=user, password="cin-pw-1234", dbname=db) as conn:
        with conn.cursor() as cur:
            with cur.copy("COPY t FROM STDIN") as copy:
                copy.write("1\n2\n")
        assert conn.execute("select count(*) from t").fetchone() == (2,)


@pytest.mark.skipif(PSQL is None, reason="psql is not installed")
def test_psql_backslash_copy_from_file(pond, pg, uname, tmp_path):
    t = uname("cin_psql")
    pg.execute(f"CREATE TABLE {t} (id INTEGER, name VARCHAR)")
    src = tmp_path / "in.csv"
    src.write_text("id|name\n1|one\n2|\n3|three\n")
    host, port = pond.pg_host_port
    env = dict(os.environ, PGPASSWORD=PASSWORD)
    r = subprocess.run([PSQL, "-h", host, "-p", str(port), "-U", "admin", "-d", "default", "-X", "-v", "ON_ERROR_STOP=1",
                        "-c", f"\\copy {t} from '{src}' with (format csv, header, delimiter '|')"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "COPY 3" in r.stdout
    assert pg.execute(f"SELECT id, name FROM {t} ORDER BY id").fetchall() == [(1, "one"), (2, None), (3, "three")]


def test_copy_one_million_rows_count_and_checksum(pg, uname):
    t = uname("cin_big")
    pg.execute(f"CREATE TABLE {t} (id BIGINT, v DOUBLE, s VARCHAR)")
    n = 1_000_000
    with pg.cursor() as cur:
        with cur.copy(f"COPY {t} FROM STDIN") as copy:
            step = 100_000
            for start in range(0, n, step):
                copy.write("".join(f"{i}\t{i * 0.5}\tr{i % 97}\n" for i in range(start, start + step)))
        assert cur.rowcount == n
    count, ids, vs, slen = pg.execute(f"SELECT count(*), sum(id), sum(v), sum(length(s)) FROM {t}").fetchone()
    assert count == n and int(ids) == n * (n - 1) // 2 and vs == sum(i * 0.5 for i in range(n))
    assert int(slen) == sum(len(f"r{i % 97}") for i in range(n))
