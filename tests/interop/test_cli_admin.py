"""`pond user`, `pond grant`, `pond revoke`, `pond grants` and `pond token` against a
real server: the commands a superuser runs from a shell. Passwords travel in
environment variables, never in process arguments."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import requests

from conftest import _start, _stop
from helpers import PASSWORD
from pond_server import pond_bin


@pytest.fixture(scope="module")
def server(tmp_path_factory, ext_dir):
    s = _start(tmp_path_factory, ext_dir, "pond-cli-admin")
    yield s
    _stop(s)


def pond(server, *args: str, new_password: str | None = None, user_password: str = PASSWORD, user: str = "admin"):
    env = dict(os.environ, POND_URL=server.http_url, POND_PASSWORD=user_password, POND_USER=user)
    if new_password is not None:
        env["POND_NEW_PASSWORD"] = new_password
    return subprocess.run([str(pond_bin()), *args], capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def query(server, auth, sql):
    return requests.post(f"{server.http_url}/api/v1/query", json={"sql": sql}, auth=auth, timeout=30)


def test_users_grants_and_tokens_from_the_command_line(server):
    pw = "cli-user-pw-123"
    r = pond(server, "user", "create", "cliuser", new_password=pw)
    assert r.returncode == 0, r.stderr
    users = [json.loads(line)["name"] for line in pond(server, "user", "list").stdout.splitlines()]
    assert users == ["admin", "cliuser"]
    assert query(server, ("admin", PASSWORD), "CREATE TABLE cli_t AS SELECT 7 AS v").ok
    assert query(server, ("cliuser", pw), "SELECT * FROM cli_t").status_code == 403

    r = pond(server, "grant", "cliuser", "read", "--database", "default")
    assert r.returncode == 0, r.stderr
    assert query(server, ("cliuser", pw), "SELECT * FROM cli_t").json()["data"] == [[7]]
    grants = [json.loads(line) for line in pond(server, "grants", "--for", "cliuser").stdout.splitlines()]
    assert grants == [{"user": "cliuser", "database": "default", "schema": "", "table": "", "privileges": "READ"}]

    # A token for the user, printed once on stdout; it works as a bearer.
    r = pond(server, "token", "create", "cli-token", "--for", "cliuser", "--database", "default")
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip()
    assert secret.startswith("pond_t_")
    headers = {"Authorization": f"Bearer {secret}"}
    ok = requests.post(f"{server.http_url}/api/v1/query", json={"sql": "SELECT v FROM cli_t"}, headers=headers, timeout=30)
    assert ok.json()["data"] == [[7]]
    listed = pond(server, "token", "list").stdout
    assert "cli-token" in listed and secret not in listed
    token_id = json.loads(listed.splitlines()[0])["id"]
    assert pond(server, "token", "revoke", token_id).returncode == 0
    denied = requests.post(f"{server.http_url}/api/v1/query", json={"sql": "SELECT 1"}, headers=headers, timeout=30)
    assert denied.status_code == 401

    # Table grants and revokes.
    assert pond(server, "grant", "cliuser", "insert", "--database", "default", "--table", "main.cli_t").returncode == 0
    assert query(server, ("cliuser", pw), "INSERT INTO cli_t VALUES (8)").ok
    assert pond(server, "revoke", "cliuser", "read", "--database", "default").returncode == 0
    assert query(server, ("cliuser", pw), "SELECT * FROM cli_t").status_code == 403

    # The user changes their own password with the same command.
    r = pond(server, "user", "password", "cliuser", new_password="cli-user-pw-456", user="cliuser", user_password=pw)
    assert r.returncode == 0, r.stderr
    assert query(server, ("cliuser", pw), "SELECT 1").status_code == 401
    assert pond(server, "user", "drop", "cliuser").returncode == 0
    assert query(server, ("cliuser", "cli-user-pw-456"), "SELECT 1").status_code == 401


def test_errors_are_clear_and_need_a_superuser(server):
    r = pond(server, "user", "drop", "nobody")
    assert r.returncode != 0 and "user 'nobody' does not exist" in r.stderr
    r = pond(server, "user", "list", user_password="wrong-password")
    assert r.returncode != 0 and "401" in r.stderr
    assert pond(server, "user", "create", "plain", new_password="plain-pw-1234").returncode == 0
    r = pond(server, "user", "create", "sneaky", new_password="sneaky-pw-123", user="plain", user_password="plain-pw-1234")
    assert r.returncode != 0 and "403" in r.stderr and "superuser" in r.stderr
    r = pond(server, "user", "create", "short", new_password="abc")
    assert r.returncode != 0 and "at least 8" in r.stderr


def test_sql_prints_statement_tags_as_psql_does(server):
    """`pond sql -c` prints the tag of a statement that returns no rows (issue 12:
    `CREATE DATABASE` printed nothing), rows as a table with a row count."""
    host, port = server.flight_host_port

    def sql(text: str, *extra: str) -> str:
        env = dict(os.environ, POND_PASSWORD=PASSWORD, POND_USER="admin")
        env.pop("POND_DATABASE", None)
        r = subprocess.run([str(pond_bin()), "sql", "--host", host, "--port", str(port), *extra, "-c", text],
                           capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    db = "cli_tags"
    assert sql(f"CREATE DATABASE {db}") == "CREATE DATABASE"
    assert sql("CREATE TABLE t (id INTEGER, v DOUBLE)", "-d", db) == "CREATE TABLE"
    assert sql("INSERT INTO t SELECT range, range * 0.5 FROM range(5)", "-d", db) == "INSERT 0 5"
    assert sql("UPDATE t SET v = 0 WHERE id < 3", "-d", db) == "UPDATE 3"
    assert sql("DELETE FROM t WHERE id = 4", "-d", db) == "DELETE 1"
    assert sql("CREATE OR REPLACE TABLE u AS SELECT * FROM t", "-d", db) == "SELECT 4"
    assert sql("CREATE VIEW w AS SELECT id FROM t", "-d", db) == "CREATE VIEW"
    assert sql("SET TimeZone = 'UTC'") == "SET"
    assert sql("DROP TABLE u", "-d", db) == "DROP TABLE"
    out = sql("SELECT count(*) AS n FROM t", "-d", db).splitlines()
    assert out[-1] == "(1 row)" and any(line.replace(" ", "") == "|4|" for line in out), out
    # An empty result still shows its columns, as psql does.
    out = sql("SELECT id, v FROM t WHERE id > 100", "-d", db).splitlines()
    assert out[-1] == "(0 rows)" and any("id" in line and "v" in line for line in out), out
    # A column that happens to be called Count is a result, not a status.
    out = sql('SELECT 7 AS "Count"').splitlines()
    assert out[-1] == "(1 row)", out
    assert sql(f"DROP DATABASE {db}") == "DROP DATABASE"
