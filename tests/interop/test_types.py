"""Type round-trip matrix: every DuckDB type over Flight SQL (ADBC and raw pyarrow.flight) and
HTTP Arrow must equal what in-process duckdb==1.5.5 returns as Arrow for the same query.

Where Pond legitimately differs from the in-process reference, the difference is written
down in KNOWN_DIFFERENCES and asserted exactly (so a change in either direction is noticed).
"""

from __future__ import annotations

import decimal
import json
import math
import re

import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.ipc as ipc
import pytest
import requests

import flight_proto as fp
from helpers import ADMIN, PASSWORD, Http, adbc_connect, query_rows, run

# (column, DuckDB type, value row 1, value row 2); row 3 is NULL in every column.
COLUMNS: list[tuple[str, str, str, str]] = [
    ("c_boolean", "BOOLEAN", "true", "false"),
    ("c_tinyint", "TINYINT", "127", "-128"),
    ("c_smallint", "SMALLINT", "32767", "-32768"),
    ("c_integer", "INTEGER", "2147483647", "-2147483648"),
    ("c_bigint", "BIGINT", "9223372036854775807", "-9223372036854775808"),
    ("c_utinyint", "UTINYINT", "255", "0"),
    ("c_usmallint", "USMALLINT", "65535", "0"),
    ("c_uinteger", "UINTEGER", "4294967295", "0"),
    ("c_ubigint", "UBIGINT", "18446744073709551615", "0"),
    ("c_hugeint", "HUGEINT", "170141183460469231731687303715884105727", "-170141183460469231731687303715884105728"),
    # The second value does not fit decimal128(38, 0); DuckDB's own conversion wraps it.
    ("c_uhugeint", "UHUGEINT", "99999999999999999999999999999999999999", "340282366920938463463374607431768211455"),
    ("c_float", "FLOAT", "1.5", "'-inf'"),
    ("c_double", "DOUBLE", "2.25", "'nan'"),
    ("c_decimal_4_1", "DECIMAL(4,1)", "123.4", "-999.9"),
    ("c_decimal_18_3", "DECIMAL(18,3)", "999999999999999.999", "-0.001"),
    ("c_decimal_38_10", "DECIMAL(38,10)", "1234567890123456789012345678.0123456789", "-0.0000000001"),
    ("c_varchar", "VARCHAR", "'héllo 🦆'", "''"),
    ("c_blob", "BLOB", "'\\xAA\\xBB\\x00'::BLOB", "''::BLOB"),
    ("c_date", "DATE", "DATE '2024-02-29'", "DATE '1900-01-01'"),
    ("c_time", "TIME", "TIME '12:34:56.789'", "TIME '23:59:59.999999'"),
    ("c_timestamp", "TIMESTAMP", "TIMESTAMP '2024-01-02 03:04:05.123456'", "TIMESTAMP '1900-01-01 00:00:00'"),
    ("c_timestamp_s", "TIMESTAMP_S", "TIMESTAMP_S '2024-01-02 03:04:05'", "TIMESTAMP_S '1960-06-30 12:00:00'"),
    ("c_timestamp_ms", "TIMESTAMP_MS", "TIMESTAMP_MS '2024-01-02 03:04:05.123'", "TIMESTAMP_MS '1969-12-31 23:59:59.999'"),
    ("c_timestamp_ns", "TIMESTAMP_NS", "TIMESTAMP_NS '2024-01-02 03:04:05.123456789'", "TIMESTAMP_NS '1970-01-01 00:00:00.000000001'"),
    ("c_timestamptz", "TIMESTAMPTZ", "TIMESTAMPTZ '2024-01-02 03:04:05.123456+02'", "TIMESTAMPTZ '1999-12-31 23:59:59+00'"),
    ("c_timetz", "TIMETZ", "TIMETZ '12:00:00+01'", "TIMETZ '23:59:59-08'"),
    ("c_interval", "INTERVAL", "INTERVAL '1 year 2 months 3 days 04:05:06.789'", "INTERVAL '-1 day'"),
    ("c_uuid", "UUID", "'12345678-1234-5678-1234-567812345678'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'"),
    ("c_json", "JSON", "'{\"a\": 1}'", "'[1, 2, null]'"),
    ("c_enum", "mood", "'ok'", "'happy'"),
    ("c_list", "INTEGER[]", "[1, 2, NULL]", "[]"),
    ("c_list_struct", "STRUCT(a INTEGER, b VARCHAR)[]", "[{'a': 1, 'b': 'x'}]", "[]"),
    ("c_array", "DOUBLE[3]", "[1.0, 2.0, 3.0]", "[NULL, 5.0, 6.0]"),
    ("c_struct", "STRUCT(x INTEGER, y VARCHAR)", "{'x': 1, 'y': 'z'}", "{'x': NULL, 'y': NULL}"),
    ("c_map", "MAP(VARCHAR, INTEGER)", "MAP {'k1': 1, 'k2': 2}", "MAP {}"),
    ("c_union", "UNION(num INTEGER, str VARCHAR)", "union_value(num := 7)", "union_value(str := 'seven')"),
    ("c_bit", "BIT", "'10110'::BIT", "'1'::BIT"),
    ("c_varint", "VARINT", "123456789012345678901234567890", "-1"),
]

TRANSPORTS = ["adbc", "adbc_pond", "flight_raw", "http_arrow"]

# (transport, column) -> (Arrow type Pond returns, why). Asserted exactly: the column must
# have that type, and its values must equal the reference's values cast to it.
KNOWN_DIFFERENCES: dict[tuple[str, str], tuple[str, str]] = {}


def setup_sql() -> list[str]:
    cols = ", ".join(f"{name} {ty}" for name, ty, _, _ in COLUMNS)
    row1 = ", ".join(v for _, _, v, _ in COLUMNS)
    row2 = ", ".join(v for _, _, _, v in COLUMNS)
    nulls = ", ".join("NULL" for _ in COLUMNS)
    return [
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
        f"CREATE TABLE types_t (id INTEGER, {cols})",
        f"INSERT INTO types_t VALUES (1, {row1}), (2, {row2}), (3, {nulls})",
    ]


SELECT = "SELECT * FROM types_t ORDER BY id"


@pytest.fixture(scope="module")
def types_db(pond):
    import uuid

    db = f"types_{uuid.uuid4().hex[:8]}"
    admin = adbc_connect(pond)
    run(admin, f"CREATE DATABASE {db}")
    c = adbc_connect(pond, database=db)
    for stmt in setup_sql():
        run(c, stmt)
    tz = query_rows(c, "SELECT current_setting('TimeZone')")[0][0]
    c.close()
    yield db, tz
    run(admin, f"DROP DATABASE {db}")
    admin.close()


def _reference_connection(types_db, ext_dir, with_table: bool):
    """In-process DuckDB set up like the server: icu loaded, same time zone, optionally types_t."""
    import duckdb

    _, tz = types_db
    con = duckdb.connect(config={"extension_directory": str(ext_dir)})
    con.execute("LOAD icu")
    con.execute(f"SET TimeZone = '{tz}'")
    if with_table:
        for stmt in setup_sql():
            con.execute(stmt)
    return con


@pytest.fixture(scope="module")
def reference_table(types_db, ext_dir):
    con = _reference_connection(types_db, ext_dir, with_table=True)
    table = con.execute(SELECT).to_arrow_table()
    con.close()
    return table


def _fetch_adbc(pond, db, sql):
    c = adbc_connect(pond, database=db)
    try:
        with c.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table()
    finally:
        c.close()


def _fetch_flight_raw(pond, db, sql):
    client = flight.FlightClient(pond.flight_uri)
    try:
        auth = client.authenticate_basic_token(ADMIN, PASSWORD)
        o = flight.FlightCallOptions(headers=[auth, (b"database", db.encode())])
        info = client.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query(sql)), o)
        return pa.concat_tables(client.do_get(ep.ticket, o).read_all() for ep in info.endpoints)
    finally:
        client.close()


def _fetch_http(pond, db, sql):
    r = Http(pond).query(sql, database=db, fmt="arrow")
    assert r.status_code == 200, r.text
    return ipc.open_stream(r.content).read_all()


def _fetch_adbc_pond(pond, db, sql):
    """Pond's own ADBC driver (crates/pond-adbc)."""
    from test_adbc_pond import pond_connect

    with pond_connect(pond, **{"pond.database": db}) as c, c.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


FETCHERS = {"adbc": _fetch_adbc, "adbc_pond": _fetch_adbc_pond, "flight_raw": _fetch_flight_raw, "http_arrow": _fetch_http}


@pytest.fixture(scope="module")
def fetched(pond, types_db):
    """fetched(transport) -> the whole table; fetched(transport, column) -> `id` plus that column,
    so one failing type does not hide the others."""
    db, _ = types_db
    cache: dict = {}

    def get(transport: str, column: str | None = None) -> pa.Table:
        key = (transport, column)
        if key not in cache:
            sql = SELECT if column is None else f"SELECT id, {column} FROM types_t ORDER BY id"
            cache[key] = FETCHERS[transport](pond, db, sql)
        return cache[key]

    return get


def _values_equal(got: pa.Array, want: pa.Array) -> bool:
    if got.equals(want):
        return True
    try:
        a, b = got.to_pylist(), want.to_pylist()
    except Exception:  # noqa: BLE001 - values Python cannot represent; Arrow said unequal
        return False

    def same(x, y):
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            return True
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(same(p, q) for p, q in zip(x, y))
        return x == y

    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


def _show(arr: pa.Array) -> str:
    try:
        return repr(arr.to_pylist())
    except Exception:  # noqa: BLE001
        return str(arr)


def _column(table: pa.Table, name: str) -> tuple[pa.Field, pa.Array]:
    idx = table.schema.get_field_index(name)
    assert idx >= 0, f"column {name} missing; got {table.schema.names}"
    col = table.column(idx)
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return table.schema.field(idx), arr


def test_reference_sanity(reference_table):
    assert reference_table.num_rows == 3
    assert reference_table.column_names == ["id"] + [c[0] for c in COLUMNS]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_column_names_and_row_count(fetched, reference_table, transport):
    got = fetched(transport)
    assert got.column_names == reference_table.column_names
    assert got.num_rows == reference_table.num_rows
    assert got.column("id").to_pylist() == [1, 2, 3]


@pytest.mark.parametrize("column", [c[0] for c in COLUMNS])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_type_round_trip(fetched, reference_table, transport, column):
    got_field, got = _column(fetched(transport, column), column)
    ref_field, want = _column(reference_table, column)
    known = KNOWN_DIFFERENCES.get((transport, column))
    if known is not None:
        documented_type, why = known
        assert str(got_field.type) == documented_type, (
            f"documented difference changed: expected {documented_type} ({why}), got {got_field.type}; reference {ref_field.type}")
        want = want.cast(got_field.type)
    else:
        assert got_field.type == ref_field.type, (
            f"{transport} {column}: Arrow type {got_field.type} != reference {ref_field.type}")
        assert (got_field.metadata or {}) == (ref_field.metadata or {}), (
            f"{transport} {column}: field metadata {got_field.metadata} != reference {ref_field.metadata}")
    assert _values_equal(got, want), f"{transport} {column}: values {_show(got)} != reference {_show(want)}"
    assert got.null_count == want.null_count


# ----------------------------------------------------------------------------- HTTP JSON and CSV
#
# The text formats have no Arrow reference; DuckDB's own renderings are the reference:
# `to_json(col)` for JSON and `COPY ... TO 'x.csv' (HEADER)` for CSV. Accepted, documented
# representation choices of Pond are listed below and asserted exactly.

TIMESTAMP_COLUMNS = {"c_timestamp", "c_timestamp_s", "c_timestamp_ms", "c_timestamp_ns", "c_timestamptz"}

# Pond's JSON renders these differently from to_json(), on purpose.
JSON_KNOWN_DIFFERENCES: dict[str, tuple[list, str]] = {
    "c_blob": (["aabb00", "", None], "BLOB as lower-case hex"),
    "c_json": (['{"a": 1}', "[1, 2, null]", None], "JSON values as strings holding the JSON text"),
    "c_interval": (["14 mons 3 days 4 hours 5 mins 6.789000000 secs", "-1 days", None], "Arrow's interval text"),
    "c_timetz": (["12:00:00", "23:59:59", None], "DuckDB's Arrow export drops TIMETZ offsets (in-process Arrow too)"),
}
# Pond's CSV renders these differently from DuckDB's COPY, on purpose.
CSV_KNOWN_DIFFERENCES: dict[str, tuple[list[str], str]] = {
    "c_blob": (["aabb00", '""', ""], "BLOB as lower-case hex"),
    "c_interval": (["14 mons 3 days 4 hours 5 mins 6.789000000 secs", "-1 days", ""], "Arrow's interval text"),
    "c_timetz": (["12:00:00", "23:59:59", ""], "DuckDB's Arrow export drops TIMETZ offsets (in-process Arrow too)"),
}
NESTED_COLUMNS = {"c_list", "c_list_struct", "c_array", "c_struct", "c_map", "c_union"}

TYPE_ALIASES = {
    "TIMESTAMP WITH TIME ZONE": {"TIMESTAMPTZ"},
    "TIME WITH TIME ZONE": {"TIMETZ"},
    "BIGNUM": {"VARINT"},
    "ENUM('sad', 'ok', 'happy')": {"mood", "ENUM"},
    # DuckDB's C API does not expose fixed array sizes to Pond's type names.
    "DOUBLE[3]": {"DOUBLE[]"},
}


@pytest.fixture(scope="module")
def reference_text(types_db, ext_dir, tmp_path_factory):
    """{column: (DuckDB type name, [to_json values parsed], [CSV lines])} from in-process DuckDB."""
    con = _reference_connection(types_db, ext_dir, with_table=True)
    types = {name: ty for name, ty, *_ in con.execute("DESCRIBE types_t").fetchall()}
    out = {}
    tmp = tmp_path_factory.mktemp("csvref")
    for name, *_ in COLUMNS:
        js = [None if v is None else json.loads(v, parse_float=decimal.Decimal)
              for (v,) in con.execute(f"SELECT to_json({name})::VARCHAR FROM types_t ORDER BY id").fetchall()]
        path = tmp / f"{name}.csv"
        con.execute(f"COPY (SELECT {name} FROM types_t ORDER BY id) TO '{path}' (HEADER)")
        out[name] = (types[name], js, path.read_text().split("\n"))
    con.close()
    return out


def _norm_json(v, column):
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"  # JSON has no NaN/Infinity: Pond sends strings, to_json bare tokens
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, decimal.Decimal)):
        return decimal.Decimal(v).normalize()
    if isinstance(v, str):
        if column in TIMESTAMP_COLUMNS:
            v = v.replace("T", " ", 1)  # ISO 8601 'T' separator accepted
            v = re.sub(r"(Z|[+-]00(:00)?)$", "+00", v)
        return v
    if isinstance(v, list):
        return [_norm_json(x, column) for x in v]
    if isinstance(v, dict):
        return {k: _norm_json(x, column) for k, x in v.items()}
    return v


def _type_ok(got: str, duck: str) -> bool:
    def n(t):
        return t.replace('"', "").upper()

    return n(got) == n(duck) or got in TYPE_ALIASES.get(duck, set())


@pytest.mark.parametrize("column", [c[0] for c in COLUMNS])
def test_http_json_column(pond, types_db, reference_text, column):
    db, _ = types_db
    r = Http(pond).query(f"SELECT {column} FROM types_t ORDER BY id", database=db, fmt="json")
    assert r.status_code == 200, r.text
    body = json.loads(r.text, parse_float=decimal.Decimal)
    duck_type, want, _ = reference_text[column]
    got_type = body["columns"][0]["type"]
    got = [row[0] for row in body["data"]]
    problems = []
    if not _type_ok(got_type, duck_type):
        problems.append(f"type {got_type!r} != DuckDB type {duck_type!r}")
    if column in JSON_KNOWN_DIFFERENCES:
        documented, why = JSON_KNOWN_DIFFERENCES[column]
        if got != documented:
            problems.append(f"values {got!r} != documented {documented!r} ({why})")
    elif _norm_json(got, column) != _norm_json(want, column):
        problems.append(f"values {got!r} != to_json {want!r}")
    assert not problems, f"{column}: " + "; ".join(problems)


@pytest.mark.parametrize("column", [c[0] for c in COLUMNS])
def test_http_csv_column(pond, types_db, reference_text, column):
    db, _ = types_db
    try:
        r = Http(pond).query(f"SELECT {column} FROM types_t ORDER BY id", database=db, fmt="csv")
        text = r.text
    except requests.exceptions.RequestException as e:
        pytest.fail(f"{column}: CSV response aborted: {e!r}")
    assert r.status_code == 200, text
    lines = text.split("\n")
    _, _, ref = reference_text[column]
    assert lines[0] == column
    assert len(lines) == 5 and lines[4] == "", f"expected header + 3 rows, got {lines!r}"
    rows = lines[1:4]
    # NULL must be an empty field; test_http_csv_null_vs_empty_string checks that it is not '""'
    assert rows[2] in ("", '""'), f"{column}: NULL rendered as {rows[2]!r}"
    rows[2] = ""
    if column in CSV_KNOWN_DIFFERENCES:
        documented, why = CSV_KNOWN_DIFFERENCES[column]
        assert rows == documented, f"{column}: {rows!r} != documented {documented!r} ({why})"
    elif column in NESTED_COLUMNS:
        assert rows[0] and rows[1] is not None  # any faithful text; must not abort or be empty
    else:
        norm = (lambda x: x.replace("T", " ", 1)) if column in TIMESTAMP_COLUMNS else (lambda x: x)
        got = [norm(x) for x in rows]
        want = ref[1:4]
        if column in ("c_double", "c_float"):
            got, want = [x.lower() for x in got], [x.lower() for x in want]
        assert got == want, f"{column}: CSV {rows!r} != DuckDB COPY {ref[1:4]!r}"


def test_http_csv_null_vs_empty_string(pond):
    """CSV must keep NULL (empty field) apart from the empty string ("") like DuckDB's COPY does."""
    r = Http(pond).query("SELECT * FROM (VALUES (1, NULL), (2, ''), (3, 'x')) t(id, s) ORDER BY id", fmt="csv")
    assert r.status_code == 200, r.text
    assert r.text.split("\n")[1:4] == ["1,", '2,""', "3,x"], r.text


# ----------------------------------------------------------------------------- ingest round trip
# adbc_ingest of Arrow data, read back over Flight, must equal what in-process DuckDB stores and
# returns for `CREATE TABLE t AS SELECT * FROM <arrow table>`.

def _ingest_source() -> pa.Table:
    import datetime as dt

    n = [None]
    return pa.table({
        "a_bool": pa.array([True, False] + n),
        "a_int8": pa.array([-128, 127] + n, pa.int8()),
        "a_int16": pa.array([-32768, 32767] + n, pa.int16()),
        "a_int32": pa.array([-(2**31), 2**31 - 1] + n, pa.int32()),
        "a_int64": pa.array([-(2**63), 2**63 - 1] + n, pa.int64()),
        "a_uint8": pa.array([0, 255] + n, pa.uint8()),
        "a_uint16": pa.array([0, 65535] + n, pa.uint16()),
        "a_uint32": pa.array([0, 2**32 - 1] + n, pa.uint32()),
        "a_uint64": pa.array([0, 2**64 - 1] + n, pa.uint64()),
        "a_float32": pa.array([1.5, float("inf")] + n, pa.float32()),
        "a_float64": pa.array([-2.25, float("nan")] + n, pa.float64()),
        "a_decimal": pa.array([decimal.Decimal("12345.678"), decimal.Decimal("-0.001")] + n, pa.decimal128(12, 3)),
        "a_decimal38": pa.array([decimal.Decimal("1" * 28 + ".0123456789"), decimal.Decimal("0")] + n, pa.decimal128(38, 10)),
        "a_string": pa.array(["héllo", ""] + n),
        "a_large_string": pa.array(["big", "x" * 1000] + n, pa.large_string()),
        "a_binary": pa.array([b"\x00\x01", b""] + n),
        "a_large_binary": pa.array([b"\xff" * 3, b"z"] + n, pa.large_binary()),
        "a_date32": pa.array([dt.date(2024, 2, 29), dt.date(1900, 1, 1)] + n, pa.date32()),
        "a_time64": pa.array([dt.time(12, 34, 56, 789), dt.time(0, 0)] + n, pa.time64("us")),
        "a_ts_s": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), dt.datetime(1960, 1, 1)] + n, pa.timestamp("s")),
        "a_ts_ms": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 123000), dt.datetime(1960, 1, 1)] + n, pa.timestamp("ms")),
        "a_ts_us": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 123456), dt.datetime(1960, 1, 1)] + n, pa.timestamp("us")),
        "a_ts_ns": pa.array([1_704_164_645_123_456_789, 1] + n, pa.timestamp("ns")),
        "a_ts_tz": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)] + n,
                            pa.timestamp("us", tz="UTC")),
        "a_interval": pa.array([pa.MonthDayNano([1, 2, 3_000_000_000]), pa.MonthDayNano([0, -1, 0])] + n, pa.month_day_nano_interval()),
        "a_list": pa.array([[1, None, 3], []] + n, pa.list_(pa.int32())),
        "a_large_list": pa.array([["a"], ["b", "c"]] + n, pa.large_list(pa.string())),
        "a_fixed_list": pa.array([[1.0, 2.0], [3.0, None]] + n, pa.list_(pa.float64(), 2)),
        "a_struct": pa.array([{"x": 1, "y": "s"}, {"x": None, "y": None}] + n, pa.struct([("x", pa.int64()), ("y", pa.string())])),
        "a_map": pa.array([[("k", 1)], []] + n, pa.map_(pa.string(), pa.int32())),
        "a_dict": pa.array(["red", "blue", None]).dictionary_encode(),
        "a_string_view": pa.array(["view", ""] + n, pa.string_view()),
    })


INGEST_COLUMNS = list(_ingest_source().column_names)


@pytest.fixture(scope="module")
def ingest_reference(types_db, ext_dir):
    """{column: (Arrow table, DuckDB type)} from in-process CREATE TABLE AS SELECT * FROM <arrow>."""
    src = _ingest_source()
    con = _reference_connection(types_db, ext_dir, with_table=False)
    out = {}
    for column in INGEST_COLUMNS:
        con.register("src", src.select([column]))
        con.execute(f"CREATE TABLE ing_{column} AS SELECT * FROM src")
        con.unregister("src")
        out[column] = (con.execute(f"SELECT * FROM ing_{column}").to_arrow_table(),
                       con.execute(f"DESCRIBE ing_{column}").fetchall()[0][1])
    con.close()
    return out


# Known bug, kept visible: duckdb-rs's Arrow appender (used for bulk ingest) writes a
# NULL INTERVAL as 0. Strict, so the test fails once the appender is fixed.
INGEST_KNOWN_BUGS = {"a_interval": "NULL INTERVAL stored as 0 by duckdb-rs's Arrow appender"}


@pytest.mark.parametrize("column", [
    pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=INGEST_KNOWN_BUGS[c])) if c in INGEST_KNOWN_BUGS else c
    for c in INGEST_COLUMNS
])
def test_ingest_round_trip(pond, types_db, ingest_reference, column):
    db, _ = types_db
    src = _ingest_source().select([column])
    c = adbc_connect(pond, database=db)
    try:
        with c.cursor() as cur:
            cur.adbc_ingest(f"ing_{column}", src, mode="create")
        with c.cursor() as cur:
            cur.execute(f"SELECT * FROM ing_{column}")
            got = cur.fetch_arrow_table()
    finally:
        c.close()
    want, duck_type = ingest_reference[column]
    gf, ga = _column(got, column)
    wf, wa = _column(want, column)
    assert gf.type == wf.type, f"{column}: Arrow type {gf.type} != in-process {wf.type} (DuckDB type {duck_type})"
    assert _values_equal(ga, wa), f"{column}: {_show(ga)} != in-process {_show(wa)}"


# Nested parameters are a documented limitation of Pond's DoPut bind: a clear error, not bad data.
BIND_UNSUPPORTED = {"a_list", "a_large_list", "a_fixed_list", "a_struct", "a_map"}


@pytest.mark.parametrize("column", INGEST_COLUMNS)
def test_bind_parameters_round_trip(pond, types_db, ingest_reference, column):
    """Prepared INSERT with Arrow parameters (DoPut bind, executemany) for every type."""
    db, _ = types_db
    want, duck_type = ingest_reference[column]
    src = _ingest_source().select([column])
    c = adbc_connect(pond, database=db)
    try:
        run(c, f"CREATE TABLE bind_{column} (id INTEGER, v {duck_type})")
        params = pa.table({"id": pa.array(range(src.num_rows), pa.int32()), "v": src.column(0)})
        if column in BIND_UNSUPPORTED:
            with c.cursor() as cur, pytest.raises(adbc_driver_manager.Error, match="not (yet )?supported"):
                cur.executemany(f"INSERT INTO bind_{column} VALUES (?, ?)", params)
            return
        with c.cursor() as cur:
            cur.executemany(f"INSERT INTO bind_{column} VALUES (?, ?)", params)
        with c.cursor() as cur:
            cur.execute(f"SELECT v AS {column} FROM bind_{column} ORDER BY id")
            got = cur.fetch_arrow_table()
    finally:
        c.close()
    gf, ga = _column(got, column)
    wf, wa = _column(want, column)
    assert gf.type == wf.type, f"{column}: Arrow type {gf.type} != in-process {wf.type} (DuckDB type {duck_type})"
    assert _values_equal(ga, wa), f"{column}: {_show(ga)} != in-process {_show(wa)}"
