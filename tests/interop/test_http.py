"""Pond's HTTP API with `requests` (JSON, Arrow IPC and CSV answers; auth; errors; big results)."""

from __future__ import annotations

import csv
import io
import time

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
import requests

from helpers import ADMIN, PASSWORD, query_rows, run


def test_health_and_ready(http):
    r = http.get("/health")
    assert r.status_code == 200
    r = http.get("/ready")
    assert r.status_code == 200


def test_metrics_prometheus_text(http):
    http.query("SELECT 1")
    r = http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain") or "openmetrics" in r.headers["content-type"]
    text = r.text
    assert "# TYPE" in text
    assert "pond" in text


def test_query_json(http):
    r = http.query("SELECT 1 AS a, 'x' AS b, 2.5::DOUBLE AS c, NULL::INTEGER AS n, true AS t")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert [c["name"] for c in body["columns"]] == ["a", "b", "c", "n", "t"]
    assert [c["type"] for c in body["columns"]] == ["INTEGER", "VARCHAR", "DOUBLE", "INTEGER", "BOOLEAN"]
    assert body["data"] == [[1, "x", 2.5, None, True]]
    assert body["row_count"] == 1
    assert isinstance(body["execution_time_ms"], (int, float)) and body["execution_time_ms"] >= 0


def test_query_json_is_default_format(http):
    r = http.query("SELECT 42 AS v", fmt=None)
    assert r.json()["data"] == [[42]]
    r = http.query("SELECT 42 AS v", fmt="json")
    assert r.json()["data"] == [[42]]


def test_query_json_nested_and_temporal_values(http):
    r = http.query("SELECT [1, 2, NULL] AS l, {'x': 1, 'y': 'z'} AS s, DATE '2024-02-29' AS d, "
                   "TIMESTAMP '2024-01-02 03:04:05' AS ts, 123.45::DECIMAL(10,2) AS dec, 'a\"b\\c' AS q")
    assert r.status_code == 200, r.text
    row = r.json()["data"][0]
    assert row[0] == [1, 2, None]
    assert row[1] == {"x": 1, "y": "z"}
    assert str(row[2]).startswith("2024-02-29")
    assert "2024-01-02" in str(row[3]) and "03:04:05" in str(row[3])
    assert float(row[4]) == 123.45
    assert row[5] == 'a"b\\c'


def test_query_json_big_integers_exact(http):
    r = http.query("SELECT 9007199254740993::BIGINT AS b, 170141183460469231731687303715884105727::HUGEINT AS h")
    row = r.json()["data"][0]
    # exact either as a JSON number (Python parses ints exactly) or as a string
    assert int(row[0]) == 9007199254740993
    assert int(row[1]) == 170141183460469231731687303715884105727


def test_query_arrow(http):
    r = http.query("SELECT range AS i, range::VARCHAR AS s FROM range(1000)", fmt="arrow")
    assert r.status_code == 200, r.text[:200]
    assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
    t = ipc.open_stream(r.content).read_all()
    assert t.schema.field("i").type == pa.int64()
    assert t.num_rows == 1000
    assert t.column("s")[999].as_py() == "999"


def test_query_arrow_empty(http):
    r = http.query("SELECT 1::INTEGER AS i WHERE false", fmt="arrow")
    t = ipc.open_stream(r.content).read_all()
    assert t.num_rows == 0 and t.schema.names == ["i"]


def test_query_csv(http):
    r = http.query("SELECT * FROM (VALUES (1, 'plain', NULL), (2, 'with, comma', 1.5), (3, 'quote \"q\"', 2.0)) t(id, s, d) ORDER BY id",
                   fmt="csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["id", "s", "d"]
    assert rows[1][:2] == ["1", "plain"] and rows[1][2] == ""
    assert rows[2] == ["2", "with, comma", "1.5"]
    assert rows[3][1] == 'quote "q"'
    assert len(rows) == 4


def test_query_in_database(http, uname):
    d = uname("httpdb")
    assert http.query(f"CREATE DATABASE {d}").status_code == 200
    try:
        r = http.query("CREATE TABLE t AS SELECT 5 AS v", database=d)
        assert r.status_code == 200, r.text
        r = http.query("SELECT v, current_database() AS db FROM t", database=d)
        assert r.json()["data"] == [[5, d]]
        r = http.query(f"SELECT v FROM {d}.main.t")
        assert r.json()["data"] == [[5]]
    finally:
        http.query(f"DROP DATABASE {d}")


def test_list_databases(http, uname):
    d = uname("httplist")
    http.query(f"CREATE DATABASE {d}")
    try:
        r = http.get("/api/v1/databases", auth=(ADMIN, PASSWORD))
        assert r.status_code == 200, r.text
        body = r.json()
        items = body.get("databases", body) if isinstance(body, dict) else body
        names = [i if isinstance(i, str) else (i.get("name") or i.get("database_name")) for i in items]
        assert "default" in names and d in names, body
    finally:
        http.query(f"DROP DATABASE {d}")
    r = http.get("/api/v1/databases")
    assert r.status_code == 401


def test_bad_sql_400(http):
    r = http.query("SELEC 1")
    assert r.status_code == 400
    body = r.json()
    assert "Parser Error" in body["error"] and "syntax error" in body["error"]
    assert body["code"]


def test_unknown_database_404(http, uname):
    r = http.query("SELECT 1", database=uname("ghost"))
    assert r.status_code == 404
    body = r.json()
    assert "does not exist" in body["error"]
    assert body["code"] == "database_not_found"


def test_auth_required(http):
    r = http.query("SELECT 1", auth=None)
    assert r.status_code == 401
    assert "error" in r.json()
    r = http.query("SELECT 1", auth=(ADMIN, "wrong"))
    assert r.status_code == 401
    r = http.query("SELECT 1", auth=None, headers={"Authorization": "Bearer not-a-real-token"})
    assert r.status_code == 401


def test_login_and_bearer(http):
    r = http.post("/api/v1/auth/login", auth=(ADMIN, PASSWORD))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] and body["expires_in"] > 0
    r = http.query("SELECT 'bearer ok' AS s", auth=None, headers={"Authorization": f"Bearer {body['token']}"})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [["bearer ok"]]
    r = http.post("/api/v1/auth/login", auth=(ADMIN, "nope"))
    assert r.status_code == 401


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"sql": 5}'])
def test_malformed_request_bodies(http, body):
    r = http.session.post(f"{http.base}/api/v1/query", data=body, auth=(ADMIN, PASSWORD),
                          headers={"content-type": "application/json"}, timeout=30)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)


def test_unknown_format(http):
    r = http.query("SELECT 1", fmt="xml")
    assert 400 <= r.status_code < 500


def test_body_too_large_413(http):
    """Bodies above --max-body-bytes (default 64 MiB) are refused with 413 and a JSON error."""
    body = b'{"sql": "SELECT \'' + b"x" * (70 * 1024 * 1024) + b'\'"}'
    try:
        r = http.session.post(f"{http.base}/api/v1/query", data=body, auth=(ADMIN, PASSWORD),
                              headers={"content-type": "application/json"}, timeout=60)
    except requests.exceptions.ConnectionError as e:
        pytest.fail(f"connection dropped instead of a 413 answer: {e!r}")
    assert r.status_code == 413, r.text[:300]
    assert r.json()["code"]
    # The server closes a connection whose body it did not read; a pooled
    # keep-alive connection may already be gone, so the next request opens a new one.
    http.session.close()
    assert http.query("SELECT 1 AS ok").json()["data"] == [[1]]


def test_large_csv_streaming(http):
    n = 2_000_000
    t0 = time.monotonic()
    r = http.query(f"SELECT range AS id, 'name_' || range AS name, range * 0.5 AS half FROM range({n})",
                   fmt="csv", stream=True, timeout=300)
    assert r.status_code == 200
    lines = 0
    first = last = None
    for line in r.iter_lines(chunk_size=1 << 20):
        if first is None:
            first = line
        last = line
        lines += 1
    assert first == b"id,name,half"
    assert lines == n + 1
    assert last.split(b",")[0] == str(n - 1).encode()
    assert time.monotonic() - t0 < 240


def test_large_arrow_streaming(http):
    n = 2_000_000
    r = http.query(f"SELECT range AS id, range::VARCHAR AS s FROM range({n})", fmt="arrow", stream=True, timeout=300)
    assert r.status_code == 200
    reader = ipc.open_stream(r.raw)
    rows = 0
    for batch in reader:
        rows += batch.num_rows
    assert rows == n


def test_large_json(http):
    n = 300_000
    r = http.query(f"SELECT range AS id FROM range({n})", timeout=300)
    body = r.json()
    assert body["row_count"] == n
    assert len(body["data"]) == n and body["data"][-1] == [n - 1]


def test_http_sees_flight_writes(http, conn, uname):
    t = uname("shared")
    run(conn, f"CREATE TABLE {t} AS SELECT 1 AS v")
    assert http.query(f"SELECT v FROM {t}").json()["data"] == [[1]]
    assert http.query(f"INSERT INTO {t} VALUES (2)").status_code == 200
    assert query_rows(conn, f"SELECT sum(v) FROM {t}") == [(3,)]


def test_error_json_shape_for_internal_paths(http):
    r = http.get("/api/v1/no-such-endpoint", auth=(ADMIN, PASSWORD))
    assert r.status_code == 404

