"""Pond started exactly as `scripts/serve.sh` leaves a fresh machine serves every
default feature (issue 12: the first line-protocol write used to answer 500
because the serve set-up installed only icu).

`scripts/serve.sh` runs `scripts/setup.sh --serve`, which installs the extensions
listed in `POND_SERVE_EXTENSIONS` (scripts/env.sh), then `pond serve
--extension-dir <that directory>` with the default `--extensions`. Here the
extension directory holds exactly those files (copied from the suite's), Pond
runs with its default `--extensions`, and a line-protocol write, an Arc
MessagePack write and queries over the lake after a flush must work, on the
default local lake and with the lake flags serve.sh passes through (S3 data
path, PostgreSQL catalog). A server whose extension directory lacks ducklake
answers 503 with Retry-After and the install command (never 500) and keeps
nothing of the refused writes.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import msgpack
import pytest
import requests

from helpers import PASSWORD
from pond_server import REPO_ROOT, PondServer, ensure_extensions, extension_file
from helpers import s3_client
from test_lake import postgres  # noqa: F401  (a fixture; moto comes from conftest)

AUTH = ("admin", PASSWORD)
BASE_NS = 1_700_000_000_000_000_000


def serve_extensions() -> list[str]:
    """`POND_SERVE_EXTENSIONS` as scripts/env.sh defines it (the list setup.sh --serve installs)."""
    out = subprocess.run(["bash", "-c", 'source scripts/env.sh && echo "$POND_SERVE_EXTENSIONS"'],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=30)
    names = out.stdout.split()
    assert names, f"POND_SERVE_EXTENSIONS is empty: {out.stderr}"
    return names


def copy_extensions(names: list[str], source: Path, target: Path) -> Path:
    for name in names:
        dst = extension_file(name, target)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(extension_file(name, source), dst)
    return target


@pytest.fixture(scope="module")
def serve_ext_dir(tmp_path_factory, ext_dir):
    """An extension directory holding only what the serve set-up installs."""
    names = serve_extensions()
    ensure_extensions(names, ext_dir)
    return copy_extensions(names, ext_dir, tmp_path_factory.mktemp("serve-extensions"))


def sql(server: PondServer, text: str):
    r = requests.post(f"{server.http_url}/api/v1/query", auth=AUTH, json={"sql": text}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def write_lines(server: PondServer, db: str, body: str) -> requests.Response:
    return requests.post(f"{server.http_url}/write?db={db}&precision=ns", auth=AUTH, data=body.encode(), timeout=60)


def write_msgpack(server: PondServer, db: str, payload) -> requests.Response:
    return requests.post(f"{server.http_url}/api/v1/write/msgpack", data=msgpack.packb(payload), auth=AUTH, timeout=60,
                         headers={"x-arc-database": db, "Content-Type": "application/msgpack"})


def write_json(server: PondServer, db: str, records) -> requests.Response:
    return requests.post(f"{server.http_url}/api/v1/write/json", json=records, auth=AUTH, timeout=60,
                         headers={"x-arc-database": db})


def cpu_lines(n: int) -> str:
    return "\n".join(f"cpu,host=h{i % 3} usage={i * 0.25},n={i}i {BASE_NS + i * 1_000_000_000}" for i in range(n))


def mem_columns(n: int) -> dict:
    # Arc's columnar MessagePack, milliseconds.
    return {"m": "mem", "columns": {
        "time": [1_700_000_000_000 + i * 1000 for i in range(n)],
        "host": [f"h{i % 2}" for i in range(n)],
        "free": [float(i) for i in range(n)],
    }}


def test_serve_setup_installs_the_serve_list():
    """setup.sh --serve installs POND_SERVE_EXTENSIONS (the list this suite starts Pond with), and
    the list covers what the default configuration and the lake flags load."""
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    assert "$POND_SERVE_EXTENSIONS" in setup
    assert {"icu", "ducklake", "httpfs", "postgres_scanner"} <= set(serve_extensions())
    serve = (REPO_ROOT / "scripts" / "serve.sh").read_text()
    assert "setup.sh\" --serve" in serve and "--extensions" not in serve


@pytest.mark.parametrize("lake", ["default", "s3", "pgcatalog"])
def test_serve_setup_serves_ingest_and_the_lake(tmp_path, serve_ext_dir, lake, request):
    """Default --extensions, extension dir from the serve set-up only: line protocol and
    MessagePack writes, a flush, queries over the lake; fails if a needed extension is missing."""
    args: list[str] = []
    env: dict[str, str] = {}
    loaded_needed = {"icu", "ducklake"}
    bucket = None
    if lake == "s3":
        moto_url = request.getfixturevalue("moto")
        bucket = f"pond-{uuid.uuid4().hex[:8]}"
        s3_client(moto_url).create_bucket(Bucket=bucket)
        args += ["--lake-data-path", f"s3://{bucket}/lake", "--lake-s3-endpoint", moto_url.removeprefix("http://"),
                 "--lake-s3-region", "us-east-1", "--lake-s3-url-style", "path", "--lake-s3-use-ssl", "false"]
        env = {"POND_LAKE_S3_ACCESS_KEY_ID": "test-key", "POND_LAKE_S3_SECRET_ACCESS_KEY": "test-secret"}
        loaded_needed.add("httpfs")
    if lake == "pgcatalog":
        import psycopg

        pg = request.getfixturevalue("postgres")
        pg_db = f"lake_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname="postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {pg_db}")
        args += ["--lake-catalog", f"host=127.0.0.1 port={pg.port} dbname={pg_db} user=postgres"]
        loaded_needed.add("postgres_scanner")
    server = PondServer(data_dir=tmp_path / "data", ext_dir=serve_ext_dir, password=PASSWORD, extensions=None,
                        extra_args=args, extra_env=env).start()
    try:
        log = server.log_path.read_text(errors="replace")
        assert "time-series storage is unavailable" not in log, server.log_tail()
        loaded = {r[0] for r in sql(server, "SELECT extension_name FROM duckdb_extensions() WHERE loaded")}
        assert loaded_needed <= loaded, loaded

        r = write_lines(server, "servedb", cpu_lines(300))
        assert r.status_code == 204, r.text
        r = write_msgpack(server, "servedb", mem_columns(40))
        assert r.status_code == 204, r.text
        r = write_json(server, "servedb", [{"measurement": "disk", "tags": {"host": "h0"}, "fields": {"used": 0.5},
                                            "time": 1_700_000_000}])
        assert r.status_code == 204, r.text
        r = requests.post(f"{server.http_url}/api/v1/lake/flush?db=servedb", auth=AUTH, timeout=60)
        assert r.status_code == 200, r.text
        flushed = r.json()["flushed"]
        assert flushed and flushed[0]["rows"] == 341, flushed

        # Queries over the lake (nothing is left in memory after the flush).
        assert sql(server, "SELECT count(*), sum(n), max(epoch_ns(time)) FROM servedb.main.cpu") == [
            [300, sum(range(300)), BASE_NS + 299 * 1_000_000_000]]
        assert sql(server, "SELECT host, count(*), sum(free) FROM servedb.mem GROUP BY host ORDER BY host") == [
            ["h0", 20, float(sum(range(0, 40, 2)))], ["h1", 20, float(sum(range(1, 40, 2)))]]
        assert sql(server, "SELECT host, used FROM servedb.disk") == [["h0", 0.5]]
        measurements = requests.get(f"{server.http_url}/api/v1/measurements?db=servedb", auth=AUTH, timeout=30)
        assert measurements.status_code == 200, measurements.text
        by_name = {m["name"]: m for m in measurements.json()["measurements"]}
        assert by_name["cpu"]["rows"] == 300 and by_name["cpu"]["files"] >= 1 and by_name["cpu"]["buffered_rows"] == 0
        assert by_name["mem"]["rows"] == 40 and by_name["mem"]["files"] >= 1
        if lake == "s3":
            objs = s3_client(request.getfixturevalue("moto")).list_objects_v2(Bucket=bucket, Prefix="lake/").get("Contents", [])
            assert any(o["Key"].endswith(".parquet") and "/cpu/" in o["Key"] for o in objs), objs
        else:
            assert list((tmp_path / "data" / "lake").glob("data/**/cpu/**/*.parquet"))
        # icu (the default --extensions): named time zones.
        assert sql(server, "SELECT hour(timezone('Asia/Tokyo', TIMESTAMPTZ '2023-11-14 22:18:19+00'))") == [[7]]
    finally:
        assert server.stop() == 0, server.log_tail()


def test_missing_ducklake_answers_503_with_the_install_command(tmp_path, ext_dir, serve_ext_dir):
    """Without ducklake Pond still starts (a clear log line), the endpoints that need the lake
    answer 503 with Retry-After and the exact install command, and nothing of those writes is kept."""
    without = [n for n in serve_extensions() if n != "ducklake"]
    dir_without = copy_extensions(without, serve_ext_dir, tmp_path / "extensions")
    command = f"pond extensions install --extension-dir {dir_without} ducklake"
    server = PondServer(data_dir=tmp_path / "data", ext_dir=dir_without, password=PASSWORD, extensions=None,
                        extra_args=["--offline"]).start()
    try:
        log = server.log_path.read_text(errors="replace")
        assert "time-series storage is unavailable" in log and command in log, server.log_tail()

        refused = {
            "line protocol": write_lines(server, "nolake", cpu_lines(3)),
            "msgpack": write_msgpack(server, "nolake", mem_columns(3)),
            "json": write_json(server, "nolake", [{"measurement": "disk", "fields": {"used": 1.0}}]),
            "v3": requests.post(f"{server.http_url}/api/v3/write_lp?db=nolake", auth=AUTH, data=b"cpu v=1", timeout=30),
            "measurements": requests.get(f"{server.http_url}/api/v1/measurements?db=default", auth=AUTH, timeout=30),
            "flush": requests.post(f"{server.http_url}/api/v1/lake/flush?db=default", auth=AUTH, timeout=30),
        }
        for what, r in refused.items():
            assert r.status_code == 503, (what, r.status_code, r.text)
            assert int(r.headers["Retry-After"]) >= 1, what
            body = r.json()
            assert body["code"] == "unavailable", (what, body)
            assert "ducklake" in body["error"] and command in body["error"], (what, body)
        # Everything else still works; the refused writes created no database.
        assert sql(server, "SELECT 41 + 1") == [[42]]
        assert "nolake" not in {r[0] for r in sql(server, "SHOW DATABASES")}
    finally:
        assert server.stop() == 0, server.log_tail()

    # Once ducklake is installed (and Pond restarted) the same data dir works, with none of
    # the refused writes replayed from the write-ahead log.
    copy_extensions(["ducklake"], serve_ext_dir, dir_without)
    server = PondServer(data_dir=tmp_path / "data", ext_dir=dir_without, password=PASSWORD, extensions=None,
                        extra_args=["--offline"]).start()
    try:
        assert "nolake" not in {r[0] for r in sql(server, "SHOW DATABASES")}
        r = write_lines(server, "nolake", cpu_lines(3))
        assert r.status_code == 204, r.text
        assert sql(server, "SELECT count(*) FROM nolake.cpu") == [[3]]
    finally:
        assert server.stop() == 0, server.log_tail()
