"""Client helpers shared by the interop tests (ADBC, HTTP)."""

from __future__ import annotations

import os
import subprocess

import requests

from pond_server import PondServer

ADMIN = "admin"
# "admin:" + password is a multiple of 3 bytes, so its base64 has no "=" padding either way;
# test_adbc_basic_auth_needing_padding covers passwords that need padding.
PASSWORD = "interop-Secret-123"


def adbc_connect(server: PondServer, *, autocommit: bool = True, password: str = PASSWORD,
                 database: str | None = None, db_kwargs: dict | None = None):
    import adbc_driver_flightsql.dbapi as flight_sql

    kwargs = {"username": ADMIN, "password": password}
    if database is not None:
        kwargs["adbc.flight.sql.rpc.call_header.database"] = database
    kwargs.update(db_kwargs or {})
    return flight_sql.connect(server.flight_uri, db_kwargs=kwargs, autocommit=autocommit)


def query_table(conn, sql: str, params=None):
    with conn.cursor() as cur:
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, params)
        return cur.fetch_arrow_table()


def query_rows(conn, sql: str, params=None):
    with conn.cursor() as cur:
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, params)
        return cur.fetchall()


def run(conn, sql: str, params=None) -> None:
    with conn.cursor() as cur:
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, params)


def pooled_session() -> requests.Session:
    """A requests session that opens a new connection when a pooled keep-alive
    connection turns out to have been closed by the server while idle (the
    race shows up as RemoteDisconnected before any response was read)."""
    from requests.adapters import HTTPAdapter
    from urllib3.exceptions import ReadTimeoutError
    from urllib3.util.retry import Retry

    class DroppedKeepAliveRetry(Retry):
        def increment(self, *args, **kwargs):
            # A slow answer is not a dropped connection: never send a query twice for it.
            if isinstance(kwargs.get("error"), ReadTimeoutError):
                raise kwargs["error"]
            return super().increment(*args, **kwargs)

    s = requests.Session()
    retry = DroppedKeepAliveRetry(total=2, connect=2, read=2, status=0, other=0, allowed_methods=None, raise_on_status=False)
    s.mount("http://", HTTPAdapter(max_retries=retry))
    s.mount("https://", HTTPAdapter(max_retries=retry))
    return s


class Http:
    """Tiny requests wrapper for Pond's HTTP API."""

    def __init__(self, server: PondServer):
        self.base = server.http_url
        self.session = pooled_session()
        self.auth = (ADMIN, PASSWORD)

    def query(self, sql: str, *, database: str | None = None, fmt: str | None = None,
              auth=..., headers=None, stream: bool = False, timeout: float = 120):
        body = {"sql": sql}
        if database is not None:
            body["database"] = database
        if fmt is not None:
            body["format"] = fmt
        return self.session.post(
            f"{self.base}/api/v1/query", json=body,
            auth=self.auth if auth is ... else auth,
            headers=headers, stream=stream, timeout=timeout,
        )

    def get(self, path: str, **kw):
        kw.setdefault("timeout", 30)
        return self.session.get(f"{self.base}{path}", **kw)

    def post(self, path: str, **kw):
        kw.setdefault("timeout", 30)
        return self.session.post(f"{self.base}{path}", **kw)




def start_moto() -> tuple[str, subprocess.Popen]:
    """A real moto S3 server on a free loopback port: (url, process). Stop it with kill()."""
    import shutil
    import socket
    import time
    from pathlib import Path

    exe = Path(os.environ.get("POND_VENV", ".venv")) / "bin" / "moto_server"
    if not exe.exists():
        exe = Path(shutil.which("moto_server") or "moto_server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(url, timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.1)
    return url, proc


def s3_client(url: str):
    """boto3 S3 client for a moto server (any key works there)."""
    import boto3

    return boto3.client("s3", endpoint_url=url, aws_access_key_id="test-key", aws_secret_access_key="test-secret", region_name="us-east-1")


def http_query(server: PondServer, sql: str, auth: tuple[str, str] = ("admin", PASSWORD), timeout: float = 120) -> requests.Response:
    """POST /api/v1/query as `auth` (admin by default); the raw response."""
    return requests.post(f"{server.http_url}/api/v1/query", auth=auth, json={"sql": sql}, timeout=timeout)


def http_rows(server: PondServer, sql: str, auth: tuple[str, str] = ("admin", PASSWORD)) -> list[tuple]:
    """The rows of a query over HTTP as tuples; fails the test on an error."""
    r = http_query(server, sql, auth)
    assert r.status_code == 200, r.text
    return [tuple(x) for x in r.json()["data"]]


def parquet_bytes(select_sql: str) -> bytes:
    """A Parquet file (in memory) with the result of a DuckDB query."""
    import io

    import duckdb
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(duckdb.connect().sql(select_sql).to_arrow_table(), buf)
    return buf.getvalue()
