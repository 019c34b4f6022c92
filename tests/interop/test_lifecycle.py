"""Server lifecycle: data survives a restart, SIGTERM during work exits cleanly and promptly."""

from __future__ import annotations

import subprocess
import sys
import time

import adbc_driver_manager
import pytest

from helpers import PASSWORD, Http, adbc_connect, query_rows, run
from pond_server import PondServer


def test_restart_keeps_databases_and_data(tmp_path, ext_dir):
    data = tmp_path / "data"
    s1 = PondServer(data_dir=data, ext_dir=ext_dir, password=PASSWORD).start()
    try:
        c = adbc_connect(s1)
        run(c, "CREATE DATABASE keep_me")
        run(c, "CREATE TABLE keep_me.main.t AS SELECT range AS i FROM range(1000)")
        run(c, "CREATE DATABASE old_name")
        run(c, "CREATE TABLE old_name.main.u AS SELECT 'v' AS s")
        run(c, "ALTER DATABASE old_name RENAME TO new_name")
        run(c, "CREATE DATABASE dropped")
        run(c, "DROP DATABASE dropped")
        run(c, 'CREATE TABLE "default".main.d AS SELECT 42 AS answer')
        run(c, "CREATE TEMP TABLE tmp_gone AS SELECT 1 AS x")
        c.close()
    finally:
        assert s1.stop() == 0, s1.log_tail()

    s2 = PondServer(data_dir=data, ext_dir=ext_dir, password=PASSWORD).start()
    try:
        c = adbc_connect(s2)
        dbs = [r[0] for r in query_rows(c, "SHOW DATABASES")]
        assert {"default", "keep_me", "new_name"} <= set(dbs), dbs
        assert "old_name" not in dbs and "dropped" not in dbs
        assert query_rows(c, "SELECT count(*), sum(i) FROM keep_me.main.t") == [(1000, 499500)]
        assert query_rows(c, "SELECT s FROM new_name.main.u") == [("v",)]
        assert query_rows(c, 'SELECT answer FROM "default".main.d') == [(42,)]
        with pytest.raises(adbc_driver_manager.Error):
            query_rows(c, "SELECT * FROM tmp_gone")
        # a dropped name can be created again, empty
        run(c, "CREATE DATABASE dropped")
        assert query_rows(c, "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'dropped'") == [(0,)]
        c.close()
    finally:
        assert s2.stop() == 0, s2.log_tail()


LONG_QUERY_CLIENT = """
import sys
import adbc_driver_flightsql.dbapi as fs
conn = fs.connect(sys.argv[1], db_kwargs={"username": "admin", "password": sys.argv[2]}, autocommit=True)
cur = conn.cursor()
print("RUNNING", flush=True)
try:
    cur.execute("SELECT sum(hash(range)) FROM range(10000000000)")
    cur.fetchall()
    print("FINISHED", flush=True)
except Exception as e:
    print("ERROR", str(e)[:300].replace("\\n", " "), flush=True)
"""


def test_sigterm_during_long_query_exits_cleanly(tmp_path, ext_dir):
    server = PondServer(data_dir=tmp_path / "data", ext_dir=ext_dir, password=PASSWORD).start()
    client = subprocess.Popen([sys.executable, "-c", LONG_QUERY_CLIENT, server.flight_uri, PASSWORD],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert client.stdout.readline().startswith("RUNNING")
        time.sleep(1.5)  # the statement is running inside DuckDB now
        t0 = time.monotonic()
        rc = server.stop(timeout=30)
        elapsed = time.monotonic() - t0
        out, _ = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert rc == 0, f"exit code {rc} after SIGTERM with a running query (-9: killed after 30 s); log:\n{server.log_tail()}"
    assert elapsed < 20, f"shutdown took {elapsed:.1f}s with a running query"
    assert out.startswith("ERROR"), f"the running query should fail when the server stops: {out!r}"


def test_ready_and_health_endpoints_without_auth(pond):
    h = Http(pond)
    assert h.session.get(f"{h.base}/health", timeout=10).status_code == 200
    assert h.session.get(f"{h.base}/ready", timeout=10).status_code == 200
