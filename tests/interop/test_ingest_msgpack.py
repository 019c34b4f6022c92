"""Arc's MessagePack write formats built with the Python `msgpack` package (as Arc's
own Python clients do) against `pond serve`, checked with SQL; bad payloads; the format
description; and the ingest queue's back-pressure: 503 with Retry-After when full,
nothing accepted lost.
"""

from __future__ import annotations

import gzip
import threading
import time
import uuid

import msgpack
import requests

from helpers import PASSWORD
from pond_server import PondServer


def sql(server: PondServer, text: str):
    r = requests.post(f"{server.http_url}/api/v1/query", auth=("admin", PASSWORD), json={"sql": text}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def write(server: PondServer, db: str, payload, path: str = "/api/v1/write/msgpack", raw: bytes | None = None,
          headers: dict | None = None):
    body = raw if raw is not None else msgpack.packb(payload)
    h = {"x-arc-database": db, "Content-Type": "application/msgpack"}
    h.update(headers or {})
    return requests.post(f"{server.http_url}{path}", data=body, headers=h, auth=("admin", PASSWORD), timeout=60)


def test_arc_payload_shapes_are_stored(pond):
    db = f"mp_{uuid.uuid4().hex[:8]}"
    # Columnar (Arc's recommended format), milliseconds.
    r = write(pond, db, {"m": "cpu", "columns": {
        "time": [1700000000000, 1700000001000, 1700000002000],
        "host": ["server01", "server02", "server01"],
        "region": ["us-east", "us-east", "eu"],
        "usage_idle": [95.0, 94.5, 94.2],
        "cores": [8, 8, 16],
        "online": [True, False, None],
    }})
    assert r.status_code == 204, r.text
    # Row format with h, tags and fields, nanoseconds; the v2 path.
    r = write(pond, db, {"m": "cpu", "t": 1700000003123456789, "h": "server03",
                         "tags": {"region": "ap"}, "fields": {"usage_idle": 90.25, "cores": 4}}, path="/write/v2/msgpack")
    assert r.status_code == 204, r.text
    # Batch mixing row (seconds, compact fields, integer measurement) and columnar (microseconds), gzip.
    body = gzip.compress(msgpack.packb({"batch": [
        {"m": 7, "t": 1700000004, "f": [1.5, 2]},
        {"m": "cpu", "columns": {"time": [1700000005000000], "host": ["server04"], "usage_idle": [80.0]}},
    ]}))
    r = write(pond, db, None, raw=body)
    assert r.status_code == 204, r.text
    # A top-level array of records, zstd-free but Content-Encoding gzip.
    r = write(pond, db, None, raw=gzip.compress(msgpack.packb([
        {"m": "mem", "t": 1700000006000, "h": "server01", "fields": {"free": 1024, "note": "ok"}},
        {"m": "mem", "t": 1700000007000, "h": "server02", "fields": {"free": 2048.5}},
    ])), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 204, r.text

    rows = sql(pond, f"SELECT epoch_ns(time), host, region, usage_idle, cores, online FROM {db}.main.cpu ORDER BY time")
    assert rows == [
        [1700000000000000000, "server01", "us-east", 95.0, 8, True],
        [1700000001000000000, "server02", "us-east", 94.5, 8, False],
        [1700000002000000000, "server01", "eu", 94.2, 16, None],
        [1700000003123456789, "server03", "ap", 90.25, 4, None],
        [1700000005000000000, "server04", None, 80.0, None, None],
    ]
    assert sql(pond, f"SELECT epoch_ns(time), field_0, field_1 FROM {db}.main.measurement_7") == [[1700000004000000000, 1.5, 2]]
    # Integers and floats of one field in one request: DOUBLE.
    assert sql(pond, f"SELECT host, free, note FROM {db}.main.mem ORDER BY time") == [
        ["server01", 1024.0, "ok"], ["server02", 2048.5, None]]
    types = sql(pond, "SELECT column_name, data_type FROM duckdb_columns() "
                      f"WHERE database_name = '{db}' AND schema_name = 'main' AND table_name = 'cpu' ORDER BY column_index")
    assert types == [["time", "TIMESTAMP_NS"], ["host", "VARCHAR"], ["region", "VARCHAR"], ["usage_idle", "DOUBLE"],
                     ["cores", "BIGINT"], ["online", "BOOLEAN"]]


def test_bad_payloads_get_clear_errors(pond):
    db = f"mpbad_{uuid.uuid4().hex[:8]}"
    good = msgpack.packb({"m": "t", "columns": {"time": [1, 2], "v": [1.0, 2.0]}})
    r = write(pond, db, None, raw=good[:-3])
    assert r.status_code == 400
    assert "invalid MessagePack body: truncated at byte" in r.json()["error"]
    r = write(pond, db, None, raw=b"cpu,host=a v=1 1")
    assert r.status_code == 400 and "invalid MessagePack body" in r.json()["error"], r.text
    r = write(pond, db, None, raw=b"\x1f\x8bnot gzip")
    assert r.status_code == 400 and "gzip" in r.json()["error"], r.text
    # Partial: the good records are written, the bad ones listed by record number.
    r = write(pond, db, [
        {"m": "t", "t": 1700000000, "fields": {"v": 1.0}},               # 1: fine
        {"t": 1700000001, "fields": {"v": 2.0}},                         # 2: no m
        {"m": "t", "columns": {"time": [1, 2, 3], "v": [1.0, 2.0]}},     # 3-5: lengths differ
        {"m": "t", "columns": {"time": [1700000002, 1700000003], "v": [3.0, "x"]}},  # 6 fine, 7 bad type
        {"m": "t", "t": "yesterday", "fields": {"v": 4.0}},              # 8: bad time
        [1, 2, 3],                                                       # 9: not a map
    ])
    assert r.status_code == 400, r.text
    j = r.json()
    assert j["error"] == "partial write of MessagePack records occurred"
    assert j["lines_written"] == 2
    got = [(d["line_number"], d["original_line"]) for d in j["data"]]
    assert got == [(2, "item 2"), (3, "item 3"), (7, "item 4, entry 1"), (8, "item 5"), (9, "item 6")], j
    msgs = [d["error_message"] for d in j["data"]]
    assert "missing 'm'" in msgs[0]
    assert "column 'v' has 2 values but an earlier column has 3" in msgs[1]
    assert "column 'v' holds float values but this one is string" in msgs[2]
    assert "timestamp must be an integer or a float, not string" in msgs[3]
    assert "must be a map" in msgs[4]
    assert sql(pond, f"SELECT epoch_ns(time), v FROM {db}.main.t ORDER BY time") == [
        [1700000000000000000, 1.0], [1700000002000000000, 3.0]]
    # Type conflict with the stored column: that record only; the table keeps its type.
    r = write(pond, db, {"m": "t", "columns": {"time": [1700000010, 1700000011], "v": [True, None]}})
    assert r.status_code == 400, r.text
    assert "BOOLEAN" in r.json()["data"][0]["error_message"] and "DOUBLE" in r.json()["data"][0]["error_message"]
    assert sql(pond, f"SELECT count(*), count(v) FROM {db}.main.t") == [[3, 2]]
    # The server keeps serving.
    assert write(pond, db, {"m": "t", "t": 1700000020, "fields": {"v": 9.0}}).status_code == 204


def test_spec_describes_the_formats(pond):
    r = requests.get(f"{pond.http_url}/api/v1/write/msgpack/spec", auth=("admin", PASSWORD), timeout=30)
    assert r.status_code == 200
    spec = r.json()
    assert "POST /api/v1/write/msgpack" in spec["endpoints"]
    # The examples in the description are themselves accepted.
    db = f"mpspec_{uuid.uuid4().hex[:8]}"
    for name in ("columnar", "row"):
        r = write(pond, db, spec["formats"][name]["example"])
        assert r.status_code == 204, r.text
    assert sql(pond, f"SELECT count(*) FROM {db}.main.cpu") == [[3]]


def test_full_queue_answers_503_and_loses_nothing(tmp_path, ext_dir):
    """With room for one waiting request, large writes keep the writer busy while
    small ones arrive: the extra ones get 503 + Retry-After and write nothing; every
    204 is stored exactly once; retried 503s then succeed."""
    server = PondServer(data_dir=tmp_path / "data", ext_dir=ext_dir, password=PASSWORD,
                        extra_args=["--ingest-queue-depth", "1"]).start()
    try:
        url = f"{server.http_url}/api/v1/write/msgpack"
        tok = requests.post(f"{server.http_url}/api/v1/auth/login", auth=("admin", PASSWORD), timeout=30).json()["token"]
        headers = {"Authorization": f"Bearer {tok}", "x-arc-database": "bp"}
        n_big = 300_000
        big_times = list(range(1_600_000_000_000_000_000, 1_600_000_000_000_000_000 + n_big))
        stop = threading.Event()
        results: list[tuple[str, int, int, str | None]] = []  # (kind, id, status, retry_after)
        lock = threading.Lock()

        def small(wid: int):
            s = requests.Session()
            k = 0
            while not stop.is_set():
                body = msgpack.packb({"m": "small", "t": 1_700_000_000_000_000_000 + wid * 1_000_000 + k,
                                      "tags": {"w": str(wid)}, "fields": {"k": k}})
                r = s.post(url, data=body, headers=headers, timeout=60)
                with lock:
                    results.append(("small", wid * 1_000_000 + k, r.status_code, r.headers.get("Retry-After")))
                k += 1

        def big(wid: int):
            s = requests.Session()
            k = 0
            while not stop.is_set():
                bid = wid * 1000 + k
                body = msgpack.packb({"m": "big", "columns": {"time": big_times, "b": [bid] * n_big}})
                r = s.post(url, data=body, headers=headers, timeout=120)
                with lock:
                    results.append(("big", bid, r.status_code, r.headers.get("Retry-After")))
                k += 1

        threads = [threading.Thread(target=small, args=(w,)) for w in range(6)]
        threads += [threading.Thread(target=big, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.5)
            with lock:
                busy = sum(1 for r in results if r[2] == 503)
                bigs = sum(1 for r in results if r[0] == "big" and r[2] == 204)
            if busy >= 5 and bigs >= 2:
                break
        stop.set()
        for t in threads:
            t.join()
        statuses = {r[2] for r in results}
        assert statuses <= {204, 503}, results
        rejected = [r for r in results if r[2] == 503]
        assert rejected, "the queue never filled"
        assert all(r[3] is not None and int(r[3]) >= 1 for r in rejected), "503 without Retry-After"
        small_ok = {r[1] for r in results if r[0] == "small" and r[2] == 204}
        small_busy = {r[1] for r in results if r[0] == "small" and r[2] == 503}
        big_ok = {r[1] for r in results if r[0] == "big" and r[2] == 204}
        big_busy = {r[1] for r in results if r[0] == "big" and r[2] == 503}
        assert small_ok and big_ok, "some writes must have been accepted while others were refused"
        stored = sql(server, "SELECT CAST(w AS BIGINT) * 1000000 + k, count(*) FROM bp.main.small GROUP BY ALL")
        assert {i for i, _ in stored} == small_ok, "a 204 is missing or a 503 was written"
        assert all(n == 1 for _, n in stored)
        stored_big = dict(sql(server, "SELECT b, count(*) FROM bp.main.big GROUP BY b")) if big_ok else {}
        assert set(stored_big) == big_ok and all(n == n_big for n in stored_big.values())
        # Retrying what was refused succeeds and adds exactly those records.
        for i in sorted(small_busy):
            wid, k = divmod(i, 1_000_000)
            body = msgpack.packb({"m": "small", "t": 1_700_000_000_000_000_000 + i, "tags": {"w": str(wid)}, "fields": {"k": k}})
            for _ in range(50):
                r = requests.post(url, data=body, headers=headers, timeout=60)
                if r.status_code != 503:
                    break
                time.sleep(0.1)
            assert r.status_code == 204, r.text
        total = sql(server, "SELECT count(*), count(DISTINCT (w, k)) FROM bp.main.small")
        assert total == [[len(small_ok) + len(small_busy)] * 2]
        assert not (big_busy & set(stored_big))
    finally:
        server.stop()
