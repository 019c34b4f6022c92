"""Time-series ingest with the real InfluxDB client libraries (`influxdb` for v1,
`influxdb-client` for v2) against `pond serve`, the InfluxDB 3 partial-write answer,
and kill -9 during sustained ingest (line protocol and Arc MessagePack side by side):
every acknowledged point is present exactly once after a restart.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests

from helpers import PASSWORD
from pond_server import PondServer


def sql(server: PondServer, text: str):
    r = requests.post(f"{server.http_url}/api/v1/query", auth=("admin", PASSWORD), json={"sql": text}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def token(server: PondServer) -> str:
    r = requests.post(f"{server.http_url}/api/v1/auth/login", auth=("admin", PASSWORD), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def test_influxdb_v1_client_creates_database_and_writes(pond):
    from influxdb import InfluxDBClient

    host, port = pond.http_addr.rsplit(":", 1)
    db = f"v1_{uuid.uuid4().hex[:8]}"
    client = InfluxDBClient(host=host, port=int(port), username="admin", password=PASSWORD, database=db)
    client.create_database(db)
    points = [
        {"measurement": "cpu", "tags": {"host": "a", "region": "eu west"}, "fields": {"value": 0.5, "n": 3, "msg": 'say "hi"'},
         "time": 1700000000123456789},
        {"measurement": "cpu", "tags": {"host": "b"}, "fields": {"value": 1.5, "n": 4}, "time": 1700000000123456790},
    ]
    assert client.write_points(points, time_precision="n")
    assert client.write_points(["mem,host=a free=10i 1700000000"], time_precision="s", protocol="line")
    rows = sql(pond, f"SELECT epoch_ns(time), host, region, value, n, msg FROM {db}.main.cpu ORDER BY time")
    assert rows == [
        [1700000000123456789, "a", "eu west", 0.5, 3, 'say "hi"'],
        [1700000000123456790, "b", None, 1.5, 4, None],
    ]
    assert sql(pond, f"SELECT epoch_ns(time), free FROM {db}.main.mem") == [[1700000000000000000, 10]]
    # Bad lines: the v1 client raises on the 400 with InfluxDB 3's partial-write body.
    from influxdb.exceptions import InfluxDBClientError

    with pytest.raises(InfluxDBClientError) as e:
        client.write_points(["mem,host=a free=1i 1", "mem,host= free=2i 2"], protocol="line")
    assert e.value.code == 400
    assert "partial write" in str(e.value.content)


def test_influxdb_v2_client_writes_to_a_bucket(pond):
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    bucket = f"v2_{uuid.uuid4().hex[:8]}"
    with InfluxDBClient(url=pond.http_url, token=token(pond), org="pond") as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        api.write(bucket=bucket, record=Point("weather").tag("city", "Oslo").field("temp", -3.5).field("ok", True)
                  .time(1700000000987654321, WritePrecision.NS))
        api.write(bucket=bucket, record="weather,city=Rome temp=21.25 1700000001", write_precision=WritePrecision.S)
    rows = sql(pond, f"SELECT epoch_ns(time), city, temp, ok FROM {bucket}.main.weather ORDER BY time")
    assert rows == [[1700000000987654321, "Oslo", -3.5, True], [1700000001000000000, "Rome", 21.25, None]]


def test_v3_partial_write_answer(pond):
    db = f"v3_{uuid.uuid4().hex[:8]}"
    body = "m,h=a v=1 1\nm v=oops 2\nm v=3 3\n"
    r = requests.post(f"{pond.http_url}/api/v3/write_lp", params={"db": db, "precision": "nanosecond"}, data=body,
                      headers={"Authorization": f"Bearer {token(pond)}"}, timeout=30)
    assert r.status_code == 400
    j = r.json()
    assert j["error"] == "partial write of line protocol occurred"
    assert j["data"] == [{"original_line": "m v=oops 2", "line_number": 2,
                          "error_message": "invalid value 'oops' for field 'v'"}]
    assert sql(pond, f"SELECT count(*) FROM {db}.main.m") == [[2]]


# Nanosecond timestamps large enough that MessagePack's unit detection reads them as nanoseconds.
T0 = 1_600_000_000_000_000_000


def _writer(url: str, tok: str, wid: int, stop: threading.Event, acked: list, sent: list):
    """Odd writers send Arc columnar MessagePack, even ones line protocol: the same rows."""
    import msgpack

    s = requests.Session()
    batch = 0
    headers = {"Authorization": f"Bearer {tok}"}
    if wid % 2:
        url = url.split("/api/")[0] + "/api/v1/write/msgpack"
        headers["x-arc-database"] = "crash"
    while not stop.is_set():
        base = (wid * 10_000_000 + batch * 1000)
        if wid % 2:
            body = msgpack.packb({"m": "crash", "columns": {
                "time": [T0 + base + i for i in range(1000)], "w": [f"w{wid}"] * 1000, "v": list(range(1000))}})
        else:
            body = "".join(f"crash,w=w{wid} v={i}i {T0 + base + i}\n" for i in range(1000))
        sent.append(base)
        try:
            r = s.post(url, data=body, headers=headers, timeout=10)
        except requests.RequestException:
            return
        if r.status_code == 204:
            acked.append(base)
        batch += 1


# "memory": every row stays in memory until the kill (replay does all the work);
# "lake": a small flush threshold and 1 MiB log segments, so flushes to the lake
# and deletions of flushed log segments run during the ingest and the kill.
LAKE_ARGS = {"memory": [], "lake": ["--ingest-flush-rows", "3000", "--ingest-flush-interval-ms", "200", "--ingest-wal-segment-mib", "1"]}


@pytest.mark.parametrize("round_", range(3))
@pytest.mark.parametrize("storage", ["memory", "lake"])
def test_kill9_during_ingest_loses_and_duplicates_nothing(tmp_path, ext_dir, round_, storage):
    data = tmp_path / "data"
    args = LAKE_ARGS[storage]
    server = PondServer(data_dir=data, ext_dir=ext_dir, password=PASSWORD, extra_args=args).start()
    try:
        tok = token(server)
        url = f"{server.http_url}/api/v3/write_lp?db=crash&precision=ns"
        stop = threading.Event()
        acked: list[list[int]] = [[] for _ in range(4)]
        sent: list[list[int]] = [[] for _ in range(4)]
        threads = [threading.Thread(target=_writer, args=(url, tok, w, stop, acked[w], sent[w])) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0 + 0.5 * round_)
        server.proc.kill()  # SIGKILL while requests are in flight
        server.proc.wait()
        stop.set()
        for t in threads:
            t.join()
    finally:
        server.kill()
    total_acked = sum(len(a) for a in acked)
    assert total_acked > 0
    assert acked[1] or acked[3], "no MessagePack write was acknowledged before the kill"
    server = PondServer(data_dir=data, ext_dir=ext_dir, password=PASSWORD, extra_args=args).start()
    try:
        if storage == "lake":
            m = requests.get(f"{server.http_url}/api/v1/measurements?db=crash", auth=("admin", PASSWORD), timeout=30).json()
            assert m["measurements"][0]["files"] > 0, m  # rows did reach the lake
        for _ in range(2):
            rows = sql(server, f"SELECT w, ((epoch_ns(time) - {T0}) // 1000) * 1000 - (CAST(substr(w, 2) AS BIGINT) * 10000000) AS b, "
                               "count(*), count(DISTINCT time) FROM crash.main.crash GROUP BY ALL")
            have = {(w, b): (n, d) for w, b, n, d in rows}
            for w in range(4):
                for base in acked[w]:
                    assert have.get((f"w{w}", base - w * 10_000_000)) == (1000, 1000), f"acked batch {w}/{base} missing or partial"
            # Nothing twice, and nothing that was never sent.
            assert all(n == d == 1000 for n, d in have.values())
            assert len(have) <= sum(len(s) for s in sent)
            # A second restart replays nothing again.
            assert server.stop() == 0
            server = PondServer(data_dir=data, ext_dir=ext_dir, password=PASSWORD, extra_args=args).start()
    finally:
        server.stop()
