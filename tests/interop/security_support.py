"""Shared pieces of the security suites (test_sandbox.py, test_auth.py).

Each suite starts its own `pond serve` (module-scoped) so that failed-login throttling,
dropped users and global-setting probes never disturb the other suites. Clients are the
real ones: the ADBC Flight SQL driver and `requests` against the HTTP API.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest
import requests

from helpers import ADMIN, PASSWORD, pooled_session
from pond_server import PondServer, PondStartError, pond_bin


def start_dedicated(tmp_path_factory, ext_dir, name: str, **kw) -> PondServer:
    """A server of its own for one module; stop it with `stop_dedicated`."""
    if not pond_bin().exists():
        pytest.fail(f"pond binary missing at {pond_bin()}; build it or set POND_BIN")
    base = tmp_path_factory.mktemp(name)
    server = PondServer(data_dir=base / "data", ext_dir=ext_dir, password=PASSWORD, **kw)
    try:
        server.start()
    except PondStartError as e:
        pytest.fail(str(e))
    return server


def stop_dedicated(server: PondServer) -> None:
    rc = server.stop()
    assert rc == 0, f"pond exited with {rc} after SIGTERM; log tail:\n{server.log_tail()}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class HttpApi:
    """`requests` against one server; `auth` is a (user, password) tuple, a header dict, or None."""

    def __init__(self, server: PondServer):
        self.base = server.http_url
        self.s = pooled_session()

    @staticmethod
    def _kw(auth, kw):
        kw.setdefault("timeout", 60)
        if isinstance(auth, tuple):
            kw["auth"] = auth
        elif isinstance(auth, dict):
            kw["headers"] = {**auth, **kw.get("headers", {})}
        return kw

    def query(self, sql: str, auth=(ADMIN, PASSWORD), *, database: str | None = None, params=None, headers=None):
        body = {"sql": sql}
        if database is not None:
            body["database"] = database
        kw = self._kw(auth, {"headers": headers or {}, "params": params})
        return self.s.post(f"{self.base}/api/v1/query", json=body, **kw)

    def request(self, method: str, path: str, auth=None, **kw):
        return self.s.request(method, f"{self.base}{path}", **self._kw(auth, kw))

    def admin_rows(self, sql: str) -> list:
        """Rows of a statement run as admin (fails the test on an error)."""
        r = self.query(sql)
        assert r.status_code == 200, f"admin statement failed ({r.status_code}): {sql}\n{r.text[:2000]}"
        return r.json()["data"]


def adbc(server: PondServer, *, user: str | None = None, password: str | None = None,
         bearer: str | None = None, database: str | None = None, autocommit: bool = True):
    """An ADBC Flight SQL connection logged in with a password or with a bearer token."""
    import adbc_driver_flightsql.dbapi as flight_sql

    kwargs: dict[str, str] = {}
    if bearer is not None:
        kwargs["adbc.flight.sql.authorization_header"] = f"Bearer {bearer}"
    else:
        kwargs["username"] = user or ADMIN
        kwargs["password"] = password if password is not None else PASSWORD
    if database is not None:
        kwargs["adbc.flight.sql.rpc.call_header.database"] = database
    return flight_sql.connect(server.flight_uri, db_kwargs=kwargs, autocommit=autocommit)


@dataclass
class Outcome:
    """What one request or statement sequence produced, as text to search for leaks."""

    ok: bool
    text: str
    status: int | None = None  # HTTP status
    code: str | None = None  # HTTP error code field

    def short(self) -> str:
        return f"ok={self.ok} status={self.status} code={self.code} text={self.text[:600]!r}"


def run_http(api: HttpApi, auth, steps: list[str], *, database: str | None = None) -> Outcome:
    """All steps in one request (one short-lived session), joined by ';' as a client would."""
    r = api.query(";\n".join(steps), auth, database=database)
    code = None
    if r.status_code != 200:
        try:
            code = r.json().get("code")
        except ValueError:
            pass
    return Outcome(ok=r.status_code == 200, text=r.text, status=r.status_code, code=code)


def run_pg(server: PondServer, user: str, password: str, steps: list[str]) -> Outcome:
    """Steps in order on one PostgreSQL connection (psycopg, simple query protocol so
    multi-statement strings reach the server as written); stops at the first error."""
    import psycopg

    host, port = server.pg_host_port
    texts: list[str] = []
    try:
        conn = psycopg.connect(host=host, port=port, user=user, password=password, dbname="default",
                               autocommit=True, connect_timeout=10, cursor_factory=psycopg.ClientCursor)
    except Exception as e:  # noqa: BLE001 - a refused login is an outcome too
        return Outcome(ok=False, text=f"{type(e).__name__}: {e}")
    try:
        for step in steps:
            try:
                with conn.cursor() as cur:
                    cur.execute(step)
                    texts.append(repr(cur.fetchall()) if cur.description else str(cur.statusmessage))
            except Exception as e:  # noqa: BLE001 - any driver error is an outcome
                texts.append(f"{type(e).__name__}: {e}")
                return Outcome(ok=False, text="\n".join(texts))
    finally:
        conn.close()
    return Outcome(ok=True, text="\n".join(texts))


def run_flight(conn, steps: list[str], params=None) -> Outcome:
    """Steps in order on one ADBC connection (one Pond session); stops at the first error.
    `params` are bound to the last step."""
    texts = []
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        try:
            with conn.cursor() as cur:
                if last and params is not None:
                    cur.execute(step, params)
                else:
                    cur.execute(step)
                texts.append(repr(cur.fetch_arrow_table().to_pylist()))
        except Exception as e:  # noqa: BLE001 - any driver error is an outcome
            texts.append(f"{type(e).__name__}: {e}")
            return Outcome(ok=False, text="\n".join(texts))
    return Outcome(ok=True, text="\n".join(texts))
