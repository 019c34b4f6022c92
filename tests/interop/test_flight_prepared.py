"""Flight SQL prepared statements describe themselves at creation (issue 18): the
result schema the stream will have, and typed parameters, through ADBC
(adbc_driver_flightsql) and through raw pyarrow.flight with hand-built commands."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import flight_proto as fp
from helpers import ADMIN, PASSWORD, run

# What the join below returns: DuckDB's types as Arrow, every column nullable.
JOIN_SCHEMA = pa.schema([
    ("id", pa.int32()),
    ("customer", pa.string()),
    ("amount", pa.decimal128(10, 2)),
    ("placed", pa.timestamp("us")),
    ("since", pa.date32()),
])
JOIN_ROW = {"id": 1, "customer": "ann", "amount": decimal.Decimal("12.50"),
            "placed": dt.datetime(2024, 1, 2, 3, 4, 5), "since": dt.date(2020, 1, 1)}


@pytest.fixture
def tables(conn, uname):
    """Two tables and the parameterised join over them."""
    orders, customers = uname("orders"), uname("customers")
    run(conn, f"CREATE TABLE {orders}(id INTEGER, customer VARCHAR, amount DECIMAL(10,2), placed TIMESTAMP)")
    run(conn, f"CREATE TABLE {customers}(name VARCHAR, since DATE)")
    run(conn, f"INSERT INTO {orders} VALUES (1, 'ann', 12.50, TIMESTAMP '2024-01-02 03:04:05'), (2, 'bob', 7.25, NULL)")
    run(conn, f"INSERT INTO {customers} VALUES ('ann', DATE '2020-01-01'), ('bob', NULL)")
    join = (f"SELECT o.id, o.customer, o.amount, o.placed, c.since FROM {orders} o "
            f"JOIN {customers} c ON c.name = o.customer WHERE o.id = ? AND c.name = ?")
    return orders, customers, join


def create_user(conn, uname) -> tuple[str, str]:
    user, password = uname("prep_user"), "prep-user-pw-123"
    run(conn, f"CREATE USER {user} PASSWORD '{password}'")
    return user, password


# ---------------------------------------------------------------- ADBC


def test_adbc_prepare_gives_typed_parameters_and_result_schema(conn, tables):
    _, _, join = tables
    with conn.cursor() as cur:
        params = cur.adbc_prepare(join)
        assert params.names == ["$1", "$2"]
        assert params.types == [pa.int32(), pa.string()]
        schema = cur.adbc_execute_schema(join)
        assert schema.equals(JOIN_SCHEMA), schema
        # Executing afterwards works; the result has exactly the described schema.
        cur.execute(join, (1, "ann"))
        t = cur.fetch_arrow_table()
        assert t.schema.equals(schema), t.schema
        assert t.to_pylist() == [JOIN_ROW]
        cur.execute(join, (99, "nobody"))
        t = cur.fetch_arrow_table()
        assert t.num_rows == 0 and t.schema.equals(schema)


def test_adbc_prepare_without_parameters_and_in_a_transaction(connect, tables):
    orders, _, _ = tables
    conn = connect(autocommit=False)
    sql = f"SELECT count(*) AS n, max(amount) AS top, min(placed) AS first FROM {orders}"
    with conn.cursor() as cur:
        params = cur.adbc_prepare(sql)
        assert params is None or len(params) == 0
        schema = cur.adbc_execute_schema(sql)
        assert schema.equals(pa.schema([("n", pa.int64()), ("top", pa.decimal128(10, 2)), ("first", pa.timestamp("us"))])), schema
        cur.execute(sql)
        t = cur.fetch_arrow_table()
        assert t.schema.equals(schema)
        assert t.to_pylist() == [{"n": 2, "top": decimal.Decimal("12.50"), "first": dt.datetime(2024, 1, 2, 3, 4, 5)}]
    conn.rollback()


def test_adbc_parameter_duckdb_cannot_type_is_null(conn):
    with conn.cursor() as cur:
        params = cur.adbc_prepare("SELECT ? IS NULL AS missing")
        assert params.types == [pa.null()]
        cur.execute("SELECT ? IS NULL AS missing", (None,))
        assert cur.fetchall() == [(True,)]


def test_adbc_prepare_is_refused_without_a_grant(pond, conn, connect, tables, uname):
    import adbc_driver_manager

    orders, _, join = tables
    user, password = create_user(conn, uname)
    other = connect(password=password, db_kwargs={"username": user})
    for sql in (join, f"SELECT * FROM {orders}"):
        with other.cursor() as cur:
            with pytest.raises(adbc_driver_manager.Error) as e:
                cur.adbc_prepare(sql)
            assert "permission denied" in str(e.value), e.value
            assert "amount" not in str(e.value)


# ---------------------------------------------------------------- raw pyarrow.flight


@pytest.fixture
def client(pond):
    c = flight.FlightClient(pond.flight_uri)
    yield c
    c.close()


def prepare(client, options, sql: str) -> tuple[bytes, pa.Schema, pa.Schema | None]:
    results = list(client.do_action(flight.Action("CreatePreparedStatement", fp.create_prepared_statement(sql)), options))
    assert len(results) == 1
    handle, dataset, parameters = fp.parse_prepared_statement_result(results[0].body.to_pybytes())
    assert handle
    dataset_schema = pa.ipc.read_schema(pa.py_buffer(dataset))
    parameter_schema = pa.ipc.read_schema(pa.py_buffer(parameters)) if parameters else None
    return handle, dataset_schema, parameter_schema


def execute(client, options, handle: bytes, params: pa.Table | None) -> tuple[pa.Schema, pa.Table]:
    descriptor = flight.FlightDescriptor.for_command(fp.prepared_statement_query(handle))
    if params is not None:
        writer, reader = client.do_put(descriptor, params.schema, options)
        writer.write_table(params)
        writer.done_writing()
        reader.read()
        writer.close()
    info = client.get_flight_info(descriptor, options)
    tables = [client.do_get(ep.ticket, options).read_all() for ep in info.endpoints]
    return info.schema, pa.concat_tables(tables)


def test_raw_flight_prepared_statement_schemas_match_the_stream(client, tables):
    _, _, join = tables
    options = flight.FlightCallOptions(headers=[client.authenticate_basic_token(ADMIN, PASSWORD)])
    handle, dataset, parameters = prepare(client, options, join)
    assert dataset.equals(JOIN_SCHEMA), dataset
    assert parameters.names == ["$1", "$2"]
    assert parameters.types == [pa.int32(), pa.string()]
    bound = pa.table({"$1": pa.array([1], pa.int32()), "$2": pa.array(["ann"])})
    announced, table = execute(client, options, handle, bound)
    assert announced.equals(dataset), announced
    assert table.schema.equals(dataset), table.schema
    assert table.to_pylist() == [JOIN_ROW]
    list(client.do_action(flight.Action("ClosePreparedStatement", fp.close_prepared_statement(handle)), options))

    # No parameters: an empty parameter schema, the result described all the same.
    handle, dataset, parameters = prepare(client, options, "SELECT 42 AS answer, 'pond' AS name, [1, 2] AS l")
    assert parameters is None or len(parameters) == 0
    assert dataset.equals(pa.schema([("answer", pa.int32()), ("name", pa.string()), ("l", pa.list_(pa.int32()))])), dataset
    announced, table = execute(client, options, handle, None)
    assert announced.equals(dataset) and table.schema.equals(dataset)
    assert table.to_pylist() == [{"answer": 42, "name": "pond", "l": [1, 2]}]


def test_raw_flight_prepare_is_refused_without_a_grant(client, conn, tables, uname):
    orders, _, join = tables
    user, password = create_user(conn, uname)
    options = flight.FlightCallOptions(headers=[client.authenticate_basic_token(user, password)])
    for sql in (join, f"SELECT amount FROM {orders}"):
        with pytest.raises((flight.FlightError, pa.ArrowException)) as e:
            prepare(client, options, sql)
        assert "permission denied" in str(e.value), e.value
    # With a grant the same statement is described.
    run(conn, f"GRANT READ ON DATABASE \"default\" TO {user}")
    _, dataset, parameters = prepare(client, options, join)
    assert dataset.equals(JOIN_SCHEMA)
    assert parameters.types == [pa.int32(), pa.string()]
