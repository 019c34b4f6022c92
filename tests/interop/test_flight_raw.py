"""Flight SQL with the raw pyarrow.flight client and hand-built protobuf commands."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import flight_proto as fp
from helpers import ADMIN, PASSWORD

# pyarrow maps gRPC codes to exceptions: INVALID_ARGUMENT -> pa.ArrowInvalid,
# NOT_FOUND -> pa.ArrowKeyError, UNAUTHENTICATED -> FlightUnauthenticatedError,
# CANCELLED -> FlightCancelledError, DEADLINE_EXCEEDED -> FlightTimedOutError, others FlightServerError.
ANY_ERROR = (flight.FlightError, pa.ArrowException)


@pytest.fixture
def client(pond):
    c = flight.FlightClient(pond.flight_uri)
    yield c
    c.close()


def login(client, password=PASSWORD) -> tuple[bytes, bytes]:
    header = client.authenticate_basic_token(ADMIN, password)
    return header


def opts(auth, *extra, timeout=None) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[auth, *extra], timeout=timeout)


def fetch(client, options, command: bytes) -> pa.Table:
    info = client.get_flight_info(flight.FlightDescriptor.for_command(command), options)
    tables = []
    for ep in info.endpoints:
        tables.append(client.do_get(ep.ticket, options).read_all())
    if not tables:
        return info.schema.empty_table()
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def sql(client, options, text: str) -> pa.Table:
    return fetch(client, options, fp.statement_query(text))


def test_handshake_returns_bearer_token(client):
    key, value = login(client)
    assert key.lower() == b"authorization"
    assert value.startswith(b"Bearer ") and len(value) > len(b"Bearer ") + 8


def test_get_flight_info_and_do_get(client):
    auth = login(client)
    info = client.get_flight_info(
        flight.FlightDescriptor.for_command(fp.statement_query("SELECT range AS i, 'r' || range AS s FROM range(5000)")),
        opts(auth))
    assert info.schema.names == ["i", "s"]
    assert info.schema.field("i").type == pa.int64()
    assert len(info.endpoints) >= 1
    table = pa.concat_tables(client.do_get(ep.ticket, opts(auth)).read_all() for ep in info.endpoints)
    assert table.num_rows == 5000
    assert table.column("s")[4999].as_py() == "r4999"
    assert info.total_records in (-1, 5000)


def test_large_result_batches_fit_grpc_limits(client):
    auth = login(client)
    # ~80 MB of strings: must arrive as many messages, none above the receive limit
    reader = client.do_get(
        client.get_flight_info(flight.FlightDescriptor.for_command(
            fp.statement_query("SELECT range AS i, repeat('x', 32) AS pad FROM range(2000000)")), opts(auth)).endpoints[0].ticket,
        opts(auth))
    rows = batches = 0
    for chunk in reader:
        rows += chunk.data.num_rows
        batches += 1
    assert rows == 2_000_000
    assert batches > 10


def test_statement_runs_in_get_flight_info(client, uname):
    """DDL/DML take effect at GetFlightInfo, without DoGet."""
    auth = login(client)
    t = uname("gfi")
    client.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query(f"CREATE TABLE {t} (i INTEGER)")), opts(auth))
    client.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query(f"INSERT INTO {t} VALUES (1), (2)")), opts(auth))
    assert sql(client, opts(auth), f"SELECT count(*) AS n FROM {t}").to_pylist() == [{"n": 2}]


def test_token_is_the_session(pond, client, uname):
    """Two gRPC channels presenting the same bearer token share one DuckDB session."""
    auth = login(client)
    t = uname("tok")
    sql(client, opts(auth), f"CREATE TEMP TABLE {t} AS SELECT 5 AS v")
    other = flight.FlightClient(pond.flight_uri)
    try:
        assert sql(other, opts(auth), f"SELECT v FROM {t}").to_pylist() == [{"v": 5}]
        # a fresh handshake is a fresh session
        auth2 = login(other)
        assert auth2 != auth
        with pytest.raises(ANY_ERROR):
            sql(other, opts(auth2), f"SELECT v FROM {t}")
    finally:
        other.close()


def test_wrong_password(client):
    with pytest.raises(flight.FlightUnauthenticatedError):
        login(client, password="not-the-password")


def test_unknown_user(client):
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.authenticate_basic_token("nobody", PASSWORD)


def test_missing_and_bad_token(client):
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query("SELECT 1")))
    bad = (b"authorization", b"Bearer definitely-not-a-token")
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query("SELECT 1")), opts(bad))


def test_bad_sql_is_invalid_argument_with_duckdb_message(client):
    auth = login(client)
    with pytest.raises(pa.ArrowInvalid) as ei:
        sql(client, opts(auth), "SELEC 1")
    msg = str(ei.value)
    assert "syntax error" in msg.lower(), msg
    assert "Parser Error" in msg, msg
    with pytest.raises(pa.ArrowInvalid) as ei:
        sql(client, opts(auth), "SELECT * FROM no_such_table_xyz")
    assert "no_such_table_xyz" in str(ei.value) and "Catalog Error" in str(ei.value)


def test_database_header(client, uname):
    auth = login(client)
    d = uname("rawhdr")
    sql(client, opts(auth), f"CREATE DATABASE {d}")
    try:
        t = sql(client, opts(auth, (b"database", d.encode())), "SELECT current_database() AS db")
        assert t.to_pylist() == [{"db": d}]
        sql(client, opts(auth, (b"database", d.encode())), "CREATE TABLE hdr_t AS SELECT 1 AS one")
        assert sql(client, opts(auth), f"SELECT one FROM {d}.main.hdr_t").to_pylist() == [{"one": 1}]
        # The header selects the database for that call only: without it, the
        # session's own database applies again (no USE needed).
        assert sql(client, opts(auth), "SELECT current_database() AS db").to_pylist() == [{"db": "default"}]
        sql(client, opts(auth), f"USE {d}")
        assert sql(client, opts(auth, (b"database", b"default")), "SELECT current_database() AS db").to_pylist() == [{"db": "default"}]
        assert sql(client, opts(auth), "SELECT current_database() AS db").to_pylist() == [{"db": d}]
    finally:
        sql(client, opts(auth), 'USE "default"')
        sql(client, opts(auth), f"DROP DATABASE {d}")


def test_database_header_unknown(client, uname):
    auth = login(client)
    with pytest.raises(pa.ArrowKeyError) as ei:  # gRPC NOT_FOUND
        sql(client, opts(auth, (b"database", uname("ghost").encode())), "SELECT 1")
    assert "does not exist" in str(ei.value)


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_compression_header(client, codec):
    auth = login(client)
    q = "SELECT range AS i, (range % 7)::VARCHAR AS s, range / 3.0 AS d FROM range(500000)"
    plain = sql(client, opts(auth), q)
    compressed = sql(client, opts(auth, (b"pond-compression", codec.encode())), q)
    assert compressed.equals(plain)
    assert compressed.num_rows == 500000


def test_get_catalogs(client, uname):
    auth = login(client)
    d = uname("rawcat")
    sql(client, opts(auth), f"CREATE DATABASE {d}")
    try:
        t = fetch(client, opts(auth), fp.get_catalogs())
        assert t.schema.names == ["catalog_name"]
        names = t.column("catalog_name").to_pylist()
        assert "default" in names and d in names
    finally:
        sql(client, opts(auth), f"DROP DATABASE {d}")


def test_get_db_schemas(client, uname):
    auth = login(client)
    d = uname("rawsch")
    sql(client, opts(auth), f"CREATE DATABASE {d}")
    try:
        sql(client, opts(auth), f"CREATE SCHEMA {d}.analytics")
        t = fetch(client, opts(auth), fp.get_db_schemas(d))
        assert t.schema.names == ["catalog_name", "db_schema_name"]
        pairs = set(zip(t.column("catalog_name").to_pylist(), t.column("db_schema_name").to_pylist()))
        assert {(d, "main"), (d, "analytics")} <= pairs
    finally:
        sql(client, opts(auth), f"DROP DATABASE {d}")


def test_primary_and_foreign_keys(client, uname):
    auth = login(client)
    p, c = uname("pk_parent"), uname("fk_child")
    sql(client, opts(auth), f"CREATE TABLE {p} (id INTEGER PRIMARY KEY, code VARCHAR)")
    sql(client, opts(auth), f"CREATE TABLE {c} (cid INTEGER PRIMARY KEY, pid INTEGER REFERENCES {p}(id))")
    pk = fetch(client, opts(auth), fp.get_primary_keys(p, "default", "main")).to_pylist()
    assert [(r["table_name"], r["column_name"], r["key_sequence"]) for r in pk] == [(p, "id", 1)]
    imported = fetch(client, opts(auth), fp.get_imported_keys(c, "default", "main")).to_pylist()
    assert len(imported) == 1
    assert (imported[0]["pk_table_name"], imported[0]["pk_column_name"], imported[0]["fk_table_name"], imported[0]["fk_column_name"]) == (p, "id", c, "pid")
    exported = fetch(client, opts(auth), fp.get_exported_keys(p, "default", "main")).to_pylist()
    assert [(r["fk_table_name"], r["fk_column_name"]) for r in exported] == [(c, "pid")]


def test_cross_reference(client, uname):
    auth = login(client)
    p, c, other = uname("xr_parent"), uname("xr_child"), uname("xr_other")
    sql(client, opts(auth), f"CREATE TABLE {p} (id INTEGER PRIMARY KEY)")
    sql(client, opts(auth), f"CREATE TABLE {other} (id INTEGER PRIMARY KEY)")
    sql(client, opts(auth), f"CREATE TABLE {c} (id INTEGER, pid INTEGER REFERENCES {p}(id), oid INTEGER REFERENCES {other}(id))")
    rows = fetch(client, opts(auth), fp.get_cross_reference(p, c, "default", "main")).to_pylist()
    assert [(r["pk_table_name"], r["pk_column_name"], r["fk_table_name"], r["fk_column_name"]) for r in rows] == [(p, "id", c, "pid")]


def test_sql_info_and_xdbc_type_info(client):
    auth = login(client)
    info = fetch(client, opts(auth), fp.get_sql_info(0, 1, 2))  # server name, version, arrow version
    assert info.num_rows == 3
    assert set(info.column("info_name").to_pylist()) == {0, 1, 2}
    types = fetch(client, opts(auth), fp.get_xdbc_type_info())
    assert types.num_rows > 5
    assert "type_name" in types.schema.names


def test_session_options_actions(client, uname):
    auth = login(client)
    d = uname("rawopt")
    sql(client, opts(auth), f"CREATE DATABASE {d}")
    try:
        results = list(client.do_action(flight.Action("SetSessionOptions", fp.set_session_options_request({"catalog": d})), opts(auth)))
        if results:
            errors = fp.parse_fields(results[0].body.to_pybytes()).get(1, [])
            assert errors == [], f"SetSessionOptions reported errors: {errors}"
        assert sql(client, opts(auth), "SELECT current_database() AS db").to_pylist() == [{"db": d}]
        got = list(client.do_action(flight.Action("GetSessionOptions", b""), opts(auth)))
        options = fp.parse_session_options(got[0].body.to_pybytes())
        assert options.get("catalog") == d, options
        # unknown database -> reported as an error, session unchanged
        results = list(client.do_action(flight.Action("SetSessionOptions", fp.set_session_options_request({"catalog": uname("nope")})), opts(auth)))
        assert results and fp.parse_fields(results[0].body.to_pybytes()).get(1), "expected an error entry for an unknown catalog"
        assert sql(client, opts(auth), "SELECT current_database() AS db").to_pylist() == [{"db": d}]
    finally:
        sql(client, opts(auth), 'USE "default"')
        sql(client, opts(auth), f"DROP DATABASE {d}")


def test_close_session(client, uname):
    auth = login(client)
    t = uname("closing")
    sql(client, opts(auth), f"CREATE TEMP TABLE {t} AS SELECT 1 AS x")
    list(client.do_action(flight.Action("CloseSession", b""), opts(auth)))
    # the token's session is gone: either the token is refused or a fresh session without the temp table
    try:
        sql(client, opts(auth), f"SELECT * FROM {t}")
        pytest.fail("temp table survived CloseSession")
    except ANY_ERROR:
        pass
    auth2 = login(client)
    assert sql(client, opts(auth2), "SELECT 1 AS one").to_pylist() == [{"one": 1}]


def test_cancel_flight_info(client):
    auth = login(client)
    info = client.get_flight_info(
        flight.FlightDescriptor.for_command(fp.statement_query("SELECT range AS i, md5(range::VARCHAR) AS h FROM range(5000000000)")), opts(auth))
    results = list(client.do_action(
        flight.Action("CancelFlightInfo", fp.cancel_flight_info_request(info.serialize())), opts(auth)))
    assert results
    status = fp.parse_fields(results[0].body.to_pybytes()).get(1, [0])[0]
    assert status in (1, 2), f"CancelFlightInfo status {status} (1=CANCELLED, 2=CANCELLING)"
    # the cancelled result cannot be streamed to the end any more: DoGet must fail
    # (or at most end early), not time out streaming billions of rows
    rows, err = 0, None
    try:
        for chunk in client.do_get(info.endpoints[0].ticket, opts(auth, timeout=60)):
            rows += chunk.data.num_rows
    except ANY_ERROR as e:
        err = e
    assert not isinstance(err, flight.FlightTimedOutError), f"DoGet kept streaming after cancel ({rows} rows)"
    assert err is not None, f"DoGet after CancelFlightInfo ended without an error after {rows} rows (silent truncation)"
    # and the session is free for the next statement
    assert sql(client, opts(auth, timeout=30), "SELECT 7 AS v").to_pylist() == [{"v": 7}]


def test_cancel_query_action(client):
    """The deprecated Flight SQL CancelQuery action (older JDBC drivers use it)."""
    auth = login(client)
    info = client.get_flight_info(
        flight.FlightDescriptor.for_command(fp.statement_query("SELECT range AS i, md5(range::VARCHAR) AS h FROM range(5000000000)")), opts(auth))
    results = list(client.do_action(flight.Action("CancelQuery", fp.cancel_query_request(info.serialize())), opts(auth)))
    assert results
    type_url, payload = fp.unpack_any(results[0].body.to_pybytes())
    assert type_url.endswith("ActionCancelQueryResult"), type_url
    assert fp.parse_fields(payload).get(1, [0])[0] in (1, 2)  # CANCELLED / CANCELLING
    assert sql(client, opts(auth, timeout=30), "SELECT 8 AS v").to_pylist() == [{"v": 8}]


def test_list_actions(client):
    auth = login(client)
    names = {a.type for a in client.list_actions(opts(auth))}
    assert {"CreatePreparedStatement", "ClosePreparedStatement", "BeginTransaction", "EndTransaction"} <= names, names
