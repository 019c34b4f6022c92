"""Fixtures for Pond's interoperability suite: a real `pond serve` process and real clients.

Run: .venv/bin/python -m pytest tests/interop -q
Binary: $POND_BIN, else $CARGO_TARGET_DIR/release/pond (default ~/.cache/pond/target).
"""

from __future__ import annotations

import itertools
import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import PASSWORD, Http, adbc_connect, start_moto  # noqa: E402
from pond_server import PondServer, PondStartError, ensure_extensions, pond_bin  # noqa: E402
from pg_server import PostgresServer, PostgresStartError  # noqa: E402
from hms_server import HiveMetastore, HmsStartError  # noqa: E402

# Extensions the suite needs for the server and the in-process reference.
NEEDED_EXTENSIONS = ["icu", "tpch"]


def start_hive_metastore(tmp_path_factory, name: str = "hms", **kw) -> HiveMetastore:
    """A real Hive Metastore 2.3.10 (hms_server.py) in a new temp dir; a start failure fails the test."""
    try:
        return HiveMetastore(base_dir=tmp_path_factory.mktemp(name), **kw).start()
    except HmsStartError as e:
        pytest.fail(f"the Hive Metastore did not start: {e}")


@pytest.fixture(scope="module")
def hms(tmp_path_factory):
    """A Hive Metastore for a module's tests (the catalog and extension tests)."""
    m = start_hive_metastore(tmp_path_factory)
    yield m
    m.stop()


@pytest.fixture(scope="module")
def moto():
    """A real S3-compatible server (moto) for a module's tests: its URL."""
    url, proc = start_moto()
    yield url
    proc.kill()
    proc.wait()


def _start_postgres(wal_level: str, **kw) -> PostgresServer:
    try:
        return PostgresServer(wal_level, **kw).start()
    except PostgresStartError as e:
        pytest.fail(f"could not start PostgreSQL 15 (wal_level={wal_level}): {e}")


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL 15 with wal_level=logical for a module's tests (tests/interop/pg_server.py)."""
    server = _start_postgres("logical")
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def postgres_replica():
    """The same with wal_level=replica (no logical decoding: LINK must use triggers)."""
    server = _start_postgres("replica")
    yield server
    server.cleanup()


@pytest.fixture
def start_postgres():
    """Factory for extra PostgreSQL servers: start_postgres(wal_level="logical", **kw); removed after the test."""
    started = []

    def make(wal_level: str = "logical", **kw) -> PostgresServer:
        server = _start_postgres(wal_level, **kw)
        started.append(server)
        return server

    yield make
    for server in started:
        server.cleanup()


@pytest.fixture(scope="session")
def ext_dir():
    return ensure_extensions(NEEDED_EXTENSIONS)


def _start(tmp_path_factory, ext_dir, name, **kw) -> PondServer:
    if not pond_bin().exists():
        pytest.fail(f"pond binary missing at {pond_bin()}; build it with `bash scripts/setup.sh` (or `cargo build --release --workspace`) or set POND_BIN")
    base = tmp_path_factory.mktemp(name)
    kw.setdefault("password", PASSWORD)
    server = PondServer(data_dir=base / "data", ext_dir=ext_dir, **kw)
    try:
        server.start()
    except PondStartError as e:
        pytest.fail(str(e))
    return server


def _stop(server: PondServer) -> None:
    rc = server.stop()
    assert rc == 0, f"pond exited with {rc} after SIGTERM; log tail:\n{server.log_tail()}"


@pytest.fixture(scope="session")
def pond(tmp_path_factory, ext_dir):
    """The main server, shared by the whole session (tests use unique names)."""
    server = _start(tmp_path_factory, ext_dir, "pond-main", extensions="icu,tpch")
    yield server
    _stop(server)


@pytest.fixture(scope="module")
def pond_timeout(tmp_path_factory, ext_dir):
    """A second server with a 1.5 s statement timeout."""
    server = _start(tmp_path_factory, ext_dir, "pond-timeout", query_timeout_ms=1500)
    yield server
    _stop(server)


def _server_factory(tmp_path_factory, ext_dir):
    started = []

    def make(name: str, **kw) -> PondServer:
        server = _start(tmp_path_factory, ext_dir, name, **kw)
        started.append(server)
        return server

    yield make
    for server in started:
        _stop(server)


@pytest.fixture
def start_server(tmp_path_factory, ext_dir):
    """Factory for extra servers with their own flags; each is stopped (exit 0 checked) after the test."""
    yield from _server_factory(tmp_path_factory, ext_dir)


@pytest.fixture(scope="module")
def start_module_server(tmp_path_factory, ext_dir):
    """The same, for servers shared by a module's tests (stopped after the module)."""
    yield from _server_factory(tmp_path_factory, ext_dir)


_counter = itertools.count()


@pytest.fixture
def uname():
    """Unique lower-case identifiers: uname('t') -> 't_1a2b3c_7'."""
    run = uuid.uuid4().hex[:6]

    def make(prefix: str = "x") -> str:
        return f"{prefix}_{run}_{next(_counter)}"

    return make


@pytest.fixture
def connect(pond):
    """Factory for ADBC connections to the main server; all are closed after the test."""
    opened = []

    def make(server: PondServer | None = None, **kw):
        conn = adbc_connect(server or pond, **kw)
        opened.append(conn)
        return conn

    yield make
    for conn in reversed(opened):
        try:
            conn.close()
        except Exception:
            pass


@pytest.fixture
def conn(connect):
    return connect()


@pytest.fixture(scope="session")
def http(pond):
    return Http(pond)


@pytest.fixture
def reference(ext_dir):
    """In-process duckdb==1.5.5 with the same extension files (icu loaded)."""
    import duckdb

    con = duckdb.connect(config={"extension_directory": str(ext_dir)})
    con.execute("LOAD icu")
    yield con
    con.close()


def pytest_report_header(config):
    return [f"pond binary: {pond_bin()} (exists={pond_bin().exists()})",
            f"extension dir: {os.environ.get('POND_EXTENSION_DIR') or '~/.cache/pond/extensions'}"]


