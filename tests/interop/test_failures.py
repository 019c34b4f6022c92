"""Failure cases: errors, authentication, cancellation, timeouts, clients vanishing mid-stream."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import adbc_driver_manager
import pyarrow.flight as flight
import pytest

import flight_proto as fp
from helpers import ADMIN, PASSWORD, Http, adbc_connect, query_rows, run

Status = adbc_driver_manager.AdbcStatusCode
# Takes well over a minute on 2 cores: anything finishing fast was interrupted.
SLOW_QUERY = "SELECT sum(hash(range)) FROM range(10000000000)"


def status(exc):
    return getattr(exc, "status_code", None)


def test_bad_sql_message_and_code(conn):
    with pytest.raises(adbc_driver_manager.Error) as ei:
        run(conn, "SELECT FROM WHERE")
    assert status(ei.value) == Status.INVALID_ARGUMENT, ei.value
    assert "Parser Error" in str(ei.value) and "syntax error" in str(ei.value)

    with pytest.raises(adbc_driver_manager.Error) as ei:
        run(conn, "SELECT no_such_column FROM range(1)")
    assert status(ei.value) == Status.INVALID_ARGUMENT, ei.value
    assert "Binder Error" in str(ei.value) and "no_such_column" in str(ei.value)

    with pytest.raises(adbc_driver_manager.Error) as ei:
        run(conn, "SELECT 1/0::INTEGER, 'abc'::INTEGER")
    assert "Conversion Error" in str(ei.value)
    # the connection is still fine
    assert query_rows(conn, "SELECT 1") == [(1,)]


def test_runtime_error_while_streaming(conn):
    """An error raised after some rows were produced must reach the client, not truncate silently."""
    with pytest.raises(adbc_driver_manager.Error) as ei:
        with conn.cursor() as cur:
            cur.execute("SELECT CASE WHEN range < 3000000 THEN range ELSE error('boom at ' || range) END AS v FROM range(4000000)")
            cur.fetch_arrow_table()
    assert "boom at" in str(ei.value)
    assert query_rows(conn, "SELECT 2") == [(2,)]


def test_constraint_violation(conn, uname):
    t = uname("pk")
    run(conn, f"CREATE TABLE {t} (id INTEGER PRIMARY KEY)")
    run(conn, f"INSERT INTO {t} VALUES (1)")
    with pytest.raises(adbc_driver_manager.Error) as ei:
        run(conn, f"INSERT INTO {t} VALUES (1)")
    assert "Constraint Error" in str(ei.value) and "Duplicate key" in str(ei.value)


def test_error_inside_transaction_then_rollback(connect, uname):
    t = uname("txerr")
    c = connect(autocommit=False)
    run(c, f"CREATE TABLE {t} (i INTEGER)")
    c.commit()
    run(c, f"INSERT INTO {t} VALUES (1)")
    with pytest.raises(adbc_driver_manager.Error):
        run(c, "SELECT * FROM missing_table_in_tx")
    c.rollback()
    run(c, f"INSERT INTO {t} VALUES (2)")
    c.commit()
    assert query_rows(connect(), f"SELECT list(i ORDER BY i) FROM {t}") == [([2],)]


def test_unknown_database_in_query(conn, uname):
    with pytest.raises(adbc_driver_manager.Error) as ei:
        run(conn, f"SELECT * FROM {uname('nodb')}.main.t")
    assert "does not exist" in str(ei.value)
    assert status(ei.value) == Status.INVALID_ARGUMENT, ei.value


def test_wrong_password(pond):
    with pytest.raises(adbc_driver_manager.Error) as ei:
        c = adbc_connect(pond, password="wrong-password")
        query_rows(c, "SELECT 1")
    assert status(ei.value) == Status.UNAUTHENTICATED, ei.value


def test_cancel_long_query(connect):
    c = connect()
    cur = c.cursor()
    outcome = {}

    def worker():
        t0 = time.monotonic()
        try:
            cur.execute(SLOW_QUERY)
            outcome["rows"] = cur.fetchall()
        except Exception as e:  # noqa: BLE001
            outcome["error"] = e
        outcome["elapsed"] = time.monotonic() - t0

    th = threading.Thread(target=worker)
    th.start()
    time.sleep(1.5)
    cur.adbc_cancel()
    th.join(timeout=30)
    assert not th.is_alive(), "execute did not return within 30 s of cancel"
    assert "error" in outcome, f"long query was not cancelled: {outcome}"
    assert status(outcome["error"]) == Status.CANCELLED, outcome["error"]
    cur.close()
    # The same session answers at once: the server really interrupted DuckDB
    # (otherwise the session would still be busy for a minute).
    t0 = time.monotonic()
    assert query_rows(c, "SELECT 41 + 1") == [(42,)]
    assert time.monotonic() - t0 < 10


def test_client_timeout_then_session_usable(connect):
    """A client-side deadline (gRPC DEADLINE_EXCEEDED from the client) also stops the server's work."""
    c = connect(db_kwargs={"adbc.flight.sql.rpc.timeout_seconds.query": "1.5"})
    t0 = time.monotonic()
    with pytest.raises(adbc_driver_manager.Error) as ei:
        query_rows(c, SLOW_QUERY)
    assert time.monotonic() - t0 < 20
    assert status(ei.value) in (Status.TIMEOUT, Status.CANCELLED), ei.value
    t0 = time.monotonic()
    assert query_rows(c, "SELECT 5") == [(5,)]
    assert time.monotonic() - t0 < 10


def test_server_query_timeout(pond_timeout):
    c = adbc_connect(pond_timeout)
    try:
        assert query_rows(c, "SELECT count(*) FROM range(1000)") == [(1000,)]
        t0 = time.monotonic()
        with pytest.raises(adbc_driver_manager.Error) as ei:
            query_rows(c, SLOW_QUERY)
        elapsed = time.monotonic() - t0
        assert status(ei.value) == Status.TIMEOUT, ei.value
        assert "timeout" in str(ei.value).lower(), ei.value
        assert 1.0 < elapsed < 20, elapsed
        t0 = time.monotonic()
        assert query_rows(c, "SELECT 3") == [(3,)]
        assert time.monotonic() - t0 < 10
    finally:
        c.close()


def test_server_query_timeout_http(pond_timeout):
    h = Http(pond_timeout)
    r = h.query(SLOW_QUERY, timeout=60)
    assert r.status_code >= 400, r.text
    body = r.json()
    assert body.get("code") == "timeout", body
    assert h.query("SELECT 1 AS one").json()["data"] == [[1]]


def test_server_query_timeout_raw_flight(pond_timeout):
    client = flight.FlightClient(pond_timeout.flight_uri)
    try:
        auth = client.authenticate_basic_token(ADMIN, PASSWORD)
        o = flight.FlightCallOptions(headers=[auth], timeout=60)
        with pytest.raises(flight.FlightTimedOutError):  # gRPC DEADLINE_EXCEEDED
            info = client.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query(SLOW_QUERY)), o)
            client.do_get(info.endpoints[0].ticket, o).read_all()
    finally:
        client.close()


CHILD = textwrap.dedent("""
    import sys, time
    import adbc_driver_flightsql.dbapi as fs
    conn = fs.connect(sys.argv[1], db_kwargs={"username": sys.argv[2], "password": sys.argv[3]}, autocommit=True)
    cur = conn.cursor()
    cur.execute("SELECT range AS i, repeat('x', 200) AS pad FROM range(200000000)")
    reader = cur.fetch_record_batch()
    n = 0
    for batch in reader:
        n += batch.num_rows
        if n >= 50000:
            break
    print("STREAMING", n, flush=True)
    time.sleep(600)
""")


def test_client_killed_mid_stream(pond, connect):
    other = connect()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, pond.flight_uri, ADMIN, PASSWORD],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("STREAMING"), (line, proc.stderr.read() if proc.poll() is not None else "")
        # while the stalled stream is open, another client works normally
        for i in range(5):
            t0 = time.monotonic()
            assert query_rows(other, f"SELECT sum(range) FROM range({100000 + i})") == [(sum(range(100000 + i)),)]
            assert time.monotonic() - t0 < 10
    finally:
        proc.kill()
        proc.wait()
    # after the client vanished, the server keeps serving old and new clients
    time.sleep(1)
    assert query_rows(other, "SELECT 1") == [(1,)]
    fresh = connect()
    t = None
    with fresh.cursor() as cur:
        cur.execute("SELECT range AS i FROM range(3000000)")
        t = cur.fetch_arrow_table()
    assert t.num_rows == 3000000


def test_client_closes_raw_stream_early(pond, connect):
    client = flight.FlightClient(pond.flight_uri)
    auth = client.authenticate_basic_token(ADMIN, PASSWORD)
    o = flight.FlightCallOptions(headers=[auth])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(
        fp.statement_query("SELECT range AS i, md5(range::VARCHAR) AS h FROM range(500000000)")), o)
    reader = client.do_get(info.endpoints[0].ticket, o)
    first = reader.read_chunk()
    assert first.data.num_rows > 0
    reader.cancel()
    client.close()
    # the same token on a new channel: the session must be free again quickly
    client2 = flight.FlightClient(pond.flight_uri)
    try:
        t0 = time.monotonic()
        o2 = flight.FlightCallOptions(headers=[auth], timeout=30)
        info = client2.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query("SELECT 9 AS v")), o2)
        assert client2.do_get(info.endpoints[0].ticket, o2).read_all().to_pylist() == [{"v": 9}]
        assert time.monotonic() - t0 < 15
    finally:
        client2.close()
    assert query_rows(connect(), "SELECT 1") == [(1,)]


def test_max_sessions(start_server):
    server = start_server("pond-maxsess", max_sessions=2)
    conns = []
    try:
        for _ in range(2):
            c = adbc_connect(server)
            conns.append(c)
            assert query_rows(c, "SELECT 1") == [(1,)]
        with pytest.raises(adbc_driver_manager.Error) as ei:
            c = adbc_connect(server)
            conns.append(c)
            query_rows(c, "SELECT 1")
        assert "too many sessions" in str(ei.value).lower(), ei.value
        # the admitted sessions keep working
        assert query_rows(conns[0], "SELECT 2") == [(2,)]
    finally:
        for c in conns:
            try:
                c.close()
            except Exception:
                pass


def test_server_healthy_after_failures(http, conn):
    assert http.get("/health").status_code == 200
    assert query_rows(conn, "SELECT 'still here'") == [("still here",)]



@pytest.mark.parametrize("password", ["pw-needs-pad-1", "pw-needs-pad-123"])
def test_adbc_basic_auth_needing_padding(start_server, password):
    """The Go Flight client (ADBC) sends Basic credentials in unpadded base64 (RawStdEncoding)."""
    assert len(f"{ADMIN}:{password}") % 3 != 0
    server = start_server("pond-pad", password=password)
    c = adbc_connect(server, password=password)
    try:
        assert query_rows(c, "SELECT 1") == [(1,)]
    finally:
        c.close()
