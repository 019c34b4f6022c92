"""Pond's own ADBC driver (crates/pond-adbc, libadbc_driver_pond.so) through PyPI's
adbc-driver-manager, against a real `pond serve`.

The type matrix against in-process DuckDB runs in test_types.py (transport "adbc_pond").
Long leak runs: POND_ADBC_CYCLES=10000 (default 1500 here).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import adbc_driver_manager
import adbc_driver_manager.dbapi as dbapi
import pyarrow as pa
import pytest

from helpers import ADMIN, PASSWORD, adbc_connect, run
from pond_server import pond_bin


def pond_adbc_library() -> str:
    path = os.environ.get("POND_ADBC_LIB") or str(pond_bin().parent / "libadbc_driver_pond.so")
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing; build the workspace (cargo build --release --workspace --all-targets)")
    return path


def pond_connect(server, *, autocommit: bool = True, password: str = PASSWORD, **db_kwargs):
    kwargs = {"uri": server.flight_uri, "username": ADMIN, "password": password, **db_kwargs}
    return dbapi.connect(driver=pond_adbc_library(), db_kwargs=kwargs, autocommit=autocommit)


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_query_and_parameters(pond):
    with pond_connect(pond) as conn, conn.cursor() as cur:
        cur.execute("SELECT 41 + 1 AS answer, 'x' AS s")
        assert cur.fetchall() == [(42, "x")]
        # DB-API parameters: prepare + bind.
        cur.execute("SELECT ? + 1 AS n, ? AS s", (41, "hello"))
        assert cur.fetchall() == [(42, "hello")]
        cur.execute("SELECT 1 AS one")
        assert cur.description[0][0] == "one"


def test_driver_info_and_vendor(pond):
    with pond_connect(pond) as conn:
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "Pond"
        assert info["driver_name"].startswith("ADBC Pond Driver")


def test_wrong_password_is_unauthenticated(pond):
    with pytest.raises(adbc_driver_manager.Error) as e:
        pond_connect(pond, password="definitely-wrong")
    assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.UNAUTHENTICATED, e.value
    assert e.value.sqlstate == "28000"
    assert "definitely-wrong" not in str(e.value)


def test_token_via_authorization_header(pond):
    # A bearer token from one driver's handshake works as adbc.flight.sql.authorization_header.
    import pyarrow.flight as flight

    client = flight.FlightClient(pond.flight_uri)
    key, value = client.authenticate_basic_token(ADMIN, PASSWORD)
    client.close()
    kwargs = {"uri": pond.flight_uri, "adbc.flight.sql.authorization_header": value.decode()}
    with dbapi.connect(driver=pond_adbc_library(), db_kwargs=kwargs, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT 5")
        assert cur.fetchone() == (5,)
    kwargs["adbc.flight.sql.authorization_header"] = "Bearer not-a-token"
    with pytest.raises(adbc_driver_manager.Error) as e:
        with dbapi.connect(driver=pond_adbc_library(), db_kwargs=kwargs, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT 5")
    assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.UNAUTHENTICATED


def test_unknown_option_and_bad_uri_are_errors(pond):
    with pytest.raises(adbc_driver_manager.Error):
        pond_connect(pond, **{"pond.compresion": "lz4"})
    with pytest.raises(adbc_driver_manager.Error) as e:
        dbapi.connect(driver=pond_adbc_library(), db_kwargs={"uri": "grpc://127.0.0.1:1", "username": ADMIN, "password": PASSWORD})
    assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.IO


def test_errors_keep_duckdb_message_and_sqlstate(pond):
    with pond_connect(pond) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
            cur.execute("SELEC 1")
        assert "syntax error" in str(e.value)
        assert e.value.sqlstate == "42601"
        cur.execute("CREATE TABLE uniq_t(id INTEGER PRIMARY KEY)")
        cur.execute("INSERT INTO uniq_t VALUES (1)")
        with pytest.raises(adbc_driver_manager.IntegrityError) as e:
            cur.execute("INSERT INTO uniq_t VALUES (1)")
        assert "Duplicate key" in str(e.value) or "Constraint" in str(e.value)
        cur.execute("DROP TABLE uniq_t")


def test_mid_stream_error_reaches_the_caller(pond):
    with pond_connect(pond) as conn, conn.cursor() as cur:
        cur.execute("SELECT CASE WHEN i < 900000 THEN i ELSE error('boom at ' || i) END AS v FROM range(1000000) t(i)")
        with pytest.raises(Exception) as e:
            cur.fetch_arrow_table()
        assert "boom at" in str(e.value)


def test_ingest_round_trips_every_mode(pond, uname):
    table = uname("ing")
    data = pa.table({
        "id": pa.array([1, 2, 3], pa.int64()),
        "name": pa.array(["a", None, "c"]),
        "amount": pa.array([1.5, None, -2.25]),
        "ts": pa.array([1_700_000_000_000_000, None, 0], pa.timestamp("us")),
        "tags": pa.array([["x"], [], None], pa.list_(pa.string())),
    })
    with pond_connect(pond) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest(table, data, mode="create") == 3
        cur.execute(f"SELECT * FROM {table} ORDER BY id")
        got = cur.fetch_arrow_table()
        assert got.column_names == data.column_names
        assert got.to_pylist() == data.to_pylist()
        assert cur.adbc_ingest(table, data, mode="append") == 3
        cur.execute(f"SELECT count(*) FROM {table}")
        assert cur.fetchone() == (6,)
        assert cur.adbc_ingest(table, data.slice(0, 1), mode="replace") == 1
        assert cur.adbc_ingest(table, data, mode="create_append") == 3
        cur.execute(f"SELECT count(*) FROM {table}")
        assert cur.fetchone() == (4,)
        with pytest.raises(adbc_driver_manager.Error):
            cur.adbc_ingest(table, data, mode="create")
        # A stream of many batches, into a temporary table.
        big = pa.table({"i": pa.array(range(300_000), pa.int64())})
        assert cur.adbc_ingest(table + "_tmp", big.to_reader(max_chunksize=10_000), mode="create", temporary=True) == 300_000
        cur.execute(f"SELECT sum(i) FROM temp.main.{table}_tmp")
        assert cur.fetchone() == (sum(range(300_000)),)


def test_transactions_commit_and_rollback(pond, uname):
    t = uname("tx")
    with pond_connect(pond, autocommit=False) as a, pond_connect(pond) as b:
        with a.cursor() as ca, b.cursor() as cb:
            ca.execute(f"CREATE TABLE {t}(x INTEGER)")
            a.commit()
            ca.execute(f"INSERT INTO {t} VALUES (1)")
            cb.execute(f"SELECT count(*) FROM {t}")
            assert cb.fetchone() == (0,)
            a.commit()
            cb.execute(f"SELECT count(*) FROM {t}")
            assert cb.fetchone() == (1,)
            ca.execute(f"INSERT INTO {t} VALUES (2)")
            a.rollback()
            cb.execute(f"SELECT count(*) FROM {t}")
            assert cb.fetchone() == (1,)


def test_cancel_from_another_thread(pond):
    with pond_connect(pond) as conn, conn.cursor() as cur:
        timer = threading.Timer(0.7, cur.adbc_cancel)
        timer.start()
        start = time.monotonic()
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute("SELECT sum(a.i * b.i) FROM range(100000000) a(i), range(1000) b(i)")
            cur.fetchall()
        timer.join()
        assert time.monotonic() - start < 10
        assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.CANCELLED or "ancel" in str(e.value), e.value
        t = time.monotonic()
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
        assert time.monotonic() - t < 5


def test_cancel_while_a_fetch_blocks(pond):
    """The stream is open and the caller is reading when another thread cancels."""
    with pond_connect(pond, **{"pond.prefetch_batches": "1"}) as conn, conn.cursor() as cur:
        cur.execute("SELECT i, sleep_ms_free FROM (SELECT i, i * 2 AS sleep_ms_free FROM range(50000000) t(i))")
        reader = cur.fetch_record_batch()
        next(iter(reader))
        cur.adbc_cancel()
        with pytest.raises(Exception):
            for _ in reader:
                pass


def test_metadata_objects_and_exact_table_schema(pond, uname):
    t = uname("meta")
    with pond_connect(pond) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {t}_a_b(x INTEGER NOT NULL, y DECIMAL(12,3))")
        cur.execute(f"CREATE TABLE {t}_axb(z VARCHAR)")
        cur.execute(f"INSERT INTO {t}_a_b SELECT i, i FROM range(7) t(i)")
        schema = conn.adbc_get_table_schema(f"{t}_a_b", db_schema_filter="main")
        assert schema.names == ["x", "y"]
        assert schema.field("y").type == pa.decimal128(12, 3)
        objs = conn.adbc_get_objects(depth="all", db_schema_filter="main", table_name_filter=f"{t}%").read_all().to_pylist()
        tables = {tb["table_name"]: tb for c in objs for s in (c["catalog_db_schemas"] or []) for tb in (s["db_schema_tables"] or [])}
        assert set(tables) == {f"{t}_a_b", f"{t}_axb"}
        cols = [c["column_name"] for c in tables[f"{t}_a_b"]["table_columns"]]
        assert cols == ["x", "y"]
        catalogs = conn.adbc_get_objects(depth="catalogs").read_all().column("catalog_name").to_pylist()
        assert "memory" in catalogs or len(catalogs) >= 1
        assert {"BASE TABLE", "VIEW"} <= set(conn.adbc_get_table_types())
        stats = conn.adbc_connection.get_statistics(None, None, f"{t}_a_b", True)
        rows = pa.RecordBatchReader._import_from_c(stats.address).read_all().to_pylist()
        values = {st["table_name"]: st["statistic_value"] for c in rows for s in c["catalog_db_schemas"] for st in s["db_schema_statistics"]}
        # The name is a LIKE pattern ('_' matches any character): both tables match.
        assert values == {f"{t}_a_b": 7, f"{t}_axb": 0}
        # DuckDB's kept row count still counts deleted rows: it is reported as
        # approximate, and exact counts are counted (and said to be exact).
        cur.execute(f"DELETE FROM {t}_a_b WHERE x < 2")

        def statistics(approximate):
            s = conn.adbc_connection.get_statistics(None, None, f"{t}_a_b", approximate)
            rows = pa.RecordBatchReader._import_from_c(s.address).read_all().to_pylist()
            return {st["table_name"]: (st["statistic_value"], st["statistic_is_approximate"])
                    for c in rows for s in c["catalog_db_schemas"] for st in s["db_schema_statistics"]}

        assert statistics(False) == {f"{t}_a_b": (5, False), f"{t}_axb": (0, False)}
        assert all(approx for _, approx in statistics(True).values())


def test_compression_gives_the_same_data(pond):
    sql = "SELECT i, 'row ' || i AS s, i / 3.0 AS d FROM range(200000) t(i) ORDER BY i"
    tables = []
    for comp in ("none", "lz4", "zstd"):
        with pond_connect(pond, **{"pond.compression": comp}) as conn, conn.cursor() as cur:
            cur.execute(sql)
            tables.append(cur.fetch_arrow_table())
    assert tables[0].equals(tables[1]) and tables[0].equals(tables[2])


def test_database_option_selects_the_database(pond, uname):
    db = uname("adbcdb")
    admin = adbc_connect(pond)
    run(admin, f"CREATE DATABASE {db}")
    try:
        with pond_connect(pond, **{"pond.database": db}) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            assert cur.fetchone() == (db,)
        # The Go driver's spelling means the same.
        with pond_connect(pond, **{"adbc.flight.sql.rpc.call_header.database": db}) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            assert cur.fetchone() == (db,)
    finally:
        run(admin, f"DROP DATABASE {db}")
        admin.close()


def test_streaming_3m_rows_with_bounded_memory(pond):
    """3M rows of ~110 bytes (~330 MB as Arrow) are read batch by batch while
    client RSS grows by far less than the result."""
    with pond_connect(pond) as conn, conn.cursor() as cur:
        cur.execute("SELECT i, repeat('x', 100) || i::VARCHAR AS s FROM range(3000000) t(i)")
        reader = cur.fetch_record_batch()
        base = rss_kb()
        peak = base
        rows = 0
        total = 0
        for batch in reader:
            rows += batch.num_rows
            total += batch.nbytes
            peak = max(peak, rss_kb())
        assert rows == 3_000_000
        assert total > 300 * 1024 * 1024
        growth_mb = (peak - base) / 1024
        assert growth_mb < 120, f"client RSS grew {growth_mb:.0f} MB while streaming {total / 2**20:.0f} MB"


def test_tls_root_certs_and_skip_verify(tmp_path_factory, ext_dir):
    from pond_server import PondServer

    out = tmp_path_factory.mktemp("adbc-certs")
    r = subprocess.run([str(pond_bin()), "cert", "generate", "--out-dir", str(out), "--client", "adbc-client"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    server = PondServer(data_dir=tmp_path_factory.mktemp("adbc-tls") / "data", password=PASSWORD, ext_dir=ext_dir,
                        extra_args=["--tls-cert", str(out / "server.pem"), "--tls-key", str(out / "server-key.pem")])
    server.start()
    try:
        assert server.flight_uri.startswith("grpc+tls://")
        ca = (out / "ca.pem").read_text()
        with pond_connect(server, **{"adbc.flight.sql.client_option.tls_root_certs": ca}) as conn, conn.cursor() as cur:
            cur.execute("SELECT 42")
            assert cur.fetchone() == (42,)
        with pond_connect(server, **{"adbc.flight.sql.client_option.tls_skip_verify": "true"}) as conn, conn.cursor() as cur:
            cur.execute("SELECT 43")
            assert cur.fetchone() == (43,)
        with pytest.raises(adbc_driver_manager.Error):
            with pond_connect(server) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
    finally:
        assert server.stop() == 0
    # Mutual TLS: the server requires a client certificate signed by its CA.
    mtls = PondServer(data_dir=tmp_path_factory.mktemp("adbc-mtls") / "data", password=PASSWORD, ext_dir=ext_dir,
                      extra_args=["--tls-cert", str(out / "server.pem"), "--tls-key", str(out / "server-key.pem"),
                                  "--tls-client-ca", str(out / "ca.pem")])
    mtls.start()
    try:
        base = {"adbc.flight.sql.client_option.tls_root_certs": (out / "ca.pem").read_text()}
        with pytest.raises(adbc_driver_manager.Error):
            with pond_connect(mtls, **base) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
        client = {**base, "adbc.flight.sql.client_option.mtls_cert_chain": (out / "client.pem").read_text(),
                  "adbc.flight.sql.client_option.mtls_private_key": (out / "client-key.pem").read_text()}
        with pond_connect(mtls, **client) as conn, conn.cursor() as cur:
            cur.execute("SELECT 44")
            assert cur.fetchone() == (44,)
    finally:
        assert mtls.stop() == 0


def test_connect_query_close_cycles_keep_fds_and_rss_flat(pond):
    cycles = int(os.environ.get("POND_ADBC_CYCLES", "1500"))
    warm = max(cycles // 5, 50)

    def cycle(i):
        with pond_connect(pond) as conn, conn.cursor() as cur:
            cur.execute("SELECT ?::BIGINT AS i", (i,))
            assert cur.fetchone() == (i,)

    def server_sessions() -> int:
        import requests

        text = requests.get(pond.http_url + "/metrics", timeout=10).text
        return int(float(next(ln.split()[1] for ln in text.splitlines() if ln.startswith("pond_sessions "))))

    for i in range(warm):
        cycle(i)
    fds, rss, sessions = fd_count(), rss_kb(), server_sessions()
    for i in range(cycles):
        cycle(i)
    time.sleep(0.5)
    fd_growth, rss_growth_mb = fd_count() - fds, (rss_kb() - rss) / 1024
    print(f"{cycles} cycles after {warm} warm-up: fds {fds} -> {fds + fd_growth}, RSS {rss / 1024:.1f} MB -> {rss / 1024 + rss_growth_mb:.1f} MB")
    # Every connection closed its server session (and its prepared statements first).
    assert server_sessions() <= sessions + 2, f"server sessions {sessions} -> {server_sessions()}"
    assert fd_growth <= 3, f"{fd_growth} file descriptors leaked over {cycles} cycles"
    assert rss_growth_mb < 16, f"RSS grew {rss_growth_mb:.1f} MB over {cycles} cycles"


def test_driver_manifest_lets_driver_pond_load(pond, tmp_path, monkeypatch):
    """scripts/adbc_manifest.sh writes pond.toml; a driver manager finds it by name."""
    env = dict(os.environ, CARGO_TARGET_DIR=str(pond_bin().parent.parent))
    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "adbc_manifest.sh")
    r = subprocess.run(["bash", script, str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    monkeypatch.setenv("ADBC_DRIVER_PATH", str(tmp_path))
    kwargs = {"uri": pond.flight_uri, "username": ADMIN, "password": PASSWORD,
              "additional_manifest_search_path_list": str(tmp_path)}
    with dbapi.connect(driver="pond", db_kwargs=kwargs, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT 'by name' AS how")
        assert cur.fetchone() == ("by name",)
        assert conn.adbc_get_info()["driver_name"].startswith("ADBC Pond Driver")


def test_query_timeout_option(pond):
    opts = {"adbc.flight.sql.rpc.timeout_seconds.query": "0.5"}
    with pond_connect(pond, **opts) as conn, conn.cursor() as cur:
        start = time.monotonic()
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute("SELECT sum(a.i * b.i) FROM range(100000000) a(i), range(1000) b(i)")
        assert time.monotonic() - start < 5
        assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.TIMEOUT, e.value
