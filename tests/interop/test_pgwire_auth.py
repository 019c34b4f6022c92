"""PostgreSQL wire authentication: SCRAM-SHA-256 against Pond users, tokens as
cleartext passwords, `--pg-auth password`, the failed-login throttle and audit.

libpq's `require_auth` (psycopg's bundled libpq 18) refuses any method other
than the one named, so a successful `require_auth=scram-sha-256` connection
proves the server ran a SCRAM exchange (and checked the server signature).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import psycopg
import pytest
import requests

from helpers import PASSWORD

PSQL = shutil.which("psql")


def connect(server, user: str = "admin", password: str = PASSWORD, **kw) -> psycopg.Connection:
    host, port = server.pg_host_port
    return psycopg.connect(host=host, port=port, user=user, password=password, dbname="default",
                           connect_timeout=10, autocommit=True, **kw)


def api_token(server, user: str, password: str) -> str:
    r = requests.post(f"{server.http_url}/api/v1/auth/tokens", json={"name": user}, auth=(user, password), timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def audit_details(conn, user: str, kind: str) -> list[str]:
    """Audit rows are written by a background thread: wait for them a little."""
    for _ in range(50):
        rows = conn.execute("SELECT detail FROM pond_system.main.audit_log WHERE user_name = %s AND kind = %s "
                            "AND protocol = 'pgwire' ORDER BY \"at\"", (user, kind)).fetchall()
        if rows:
            return [r[0] for r in rows]
        time.sleep(0.1)
    return []


def test_scram_sha_256_for_password_users(pond, uname):
    user = uname("scram")
    with connect(pond, require_auth="scram-sha-256") as admin:
        assert admin.execute("select 1").fetchone() == (1,)
        admin.execute(f"CREATE USER {user} PASSWORD 'scram-pw-123'")
    # A new user logs in with SCRAM; a cleartext-only client is refused by libpq
    # because the server asks for SASL.
    with connect(pond, user=user, password="scram-pw-123", require_auth="scram-sha-256") as conn:
        assert conn.info.parameter_status("session_authorization") == user
    with pytest.raises(psycopg.OperationalError, match="SASL|sasl|scram|SCRAM"):
        connect(pond, user=user, password="scram-pw-123", require_auth="password")
    # Wrong password: the proof does not match (28P01, no detail about why).
    with pytest.raises(psycopg.OperationalError, match=f'password authentication failed for user "{user}"'):
        connect(pond, user=user, password="scram-pw-124", require_auth="scram-sha-256")
    # An unknown user gets the same SCRAM challenge and the same answer.
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "nobody_here"'):
        connect(pond, user="nobody_here", password="whatever-123", require_auth="scram-sha-256")
    # ALTER USER … PASSWORD replaces the verifier: the old password stops working.
    with connect(pond) as admin:
        admin.execute(f"ALTER USER {user} PASSWORD 'scram-pw-456'")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect(pond, user=user, password="scram-pw-123")
        with connect(pond, user=user, password="scram-pw-456", require_auth="scram-sha-256") as conn:
            assert conn.execute("select 2").fetchone() == (2,)
        details = audit_details(admin, user, "login")
        assert "SCRAM-SHA-256 proof accepted" in details, details
        assert "SCRAM-SHA-256 proof rejected" in audit_details(admin, user, "auth_failed")


def test_http_user_admin_sets_a_scram_verifier(pond, uname):
    user = uname("httpu")
    r = requests.post(f"{pond.http_url}/api/v1/users", json={"name": user, "password": "http-pw-1234"},
                      auth=("admin", PASSWORD), timeout=30)
    assert r.status_code in (200, 201), r.text
    with connect(pond, user=user, password="http-pw-1234", require_auth="scram-sha-256") as conn:
        assert conn.execute("select 3").fetchone() == (3,)


def test_tokens_as_passwords_use_the_token_user_name(pond, uname):
    user = uname("ptok")
    with connect(pond) as admin:
        admin.execute(f"CREATE USER {user} PASSWORD 'ptok-pw-123'")
    token = api_token(pond, user, "ptok-pw-123")
    # User name `token`: the server asks for cleartext and the token names the user.
    with connect(pond, user="token", password=token, require_auth="password") as conn:
        assert conn.info.parameter_status("session_authorization") == user
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(pond, user="token", password="pond_t_not-a-real-token")
    # Under SCRAM a real user name cannot carry a token (the proof is computed from it).
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(pond, user=user, password=token)


def test_pg_auth_password_mode_takes_tokens_with_any_user_name(start_server, uname):
    server = start_server("pg-cleartext", extra_args=["--pg-auth", "password"])
    user = uname("clr")
    with connect(server, require_auth="password") as admin:
        admin.execute(f"CREATE USER {user} PASSWORD 'clr-pw-1234'")
    token = api_token(server, user, "clr-pw-1234")
    with connect(server, user=user, password=token, require_auth="password") as conn:
        assert conn.info.parameter_status("session_authorization") == user
    with connect(server, user=user, password="clr-pw-1234", require_auth="password") as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        connect(server, user=user, password="clr-pw-1234", require_auth="scram-sha-256")


def test_failed_scram_logins_are_throttled(start_server, uname):
    server = start_server("pg-throttle")
    user = uname("thr")
    with connect(server) as admin:
        admin.execute(f"CREATE USER {user} PASSWORD 'thr-pw-1234'")
    for _ in range(5):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect(server, user=user, password="wrong-pw-000", require_auth="scram-sha-256")
    # Now even the right password waits: the throttle refuses before the exchange.
    with pytest.raises(psycopg.OperationalError, match="too many failed logins"):
        connect(server, user=user, password="thr-pw-1234")


@pytest.mark.skipif(PSQL is None, reason="psql is not installed (apt-get install postgresql-client)")
def test_psql_scram_right_and_wrong_password(pond, uname):
    user = uname("psqls")
    with connect(pond) as admin:
        admin.execute(f"CREATE USER {user} PASSWORD 'psql-pw-1234'")
    host, port = pond.pg_host_port

    def psql(password: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
        return subprocess.run([PSQL, "-h", host, "-p", str(port), "-U", user, "-d", "default", "-X", "-At",
                               "-c", "select 40 + 2"], capture_output=True, text=True, env=env, timeout=60)

    r = psql("psql-pw-1234")
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr
    r = psql("psql-pw-9999")
    assert r.returncode != 0 and "password authentication failed" in r.stderr
    with connect(pond) as admin:
        assert "SCRAM-SHA-256 proof accepted" in audit_details(admin, user, "login")
