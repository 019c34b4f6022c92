"""Authentication and authorization through real clients against a `pond serve` of its own:
ADBC (Flight SQL) and raw pyarrow.flight logins, every HTTP credential form, the API token
lifecycle and scopes, OAuth2 client credentials, grants and users changing under an open
connection, failed-login backoff, the audit trail, and secrets kept out of the server log.

Failed logins from 127.0.0.1 are throttled after 5 in a row, so every test that sends wrong
credentials sends at most 4 before a good one (`ok_login`), except the backoff test itself.
"""

from __future__ import annotations

import json
import time
import uuid

import adbc_driver_manager
import pyarrow.flight as flight
import pytest

import flight_proto as fp
from helpers import ADMIN, PASSWORD
from security_support import HttpApi, adbc, basic, start_dedicated, stop_dedicated

ALICE, ALICE_PW = "alice", "alice-Pw-31415926"
ADMIN_AUTH = (ADMIN, PASSWORD)

# Every secret a test sends or receives; none may reach the server log or the audit table.
SECRETS: set[str] = {PASSWORD, ALICE_PW}


def remember(*secrets: str) -> None:
    SECRETS.update(s for s in secrets if s)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, ext_dir):
    server = start_dedicated(tmp_path_factory, ext_dir, "pond-auth")
    api = HttpApi(server)
    r = api.query(f"""
        CREATE DATABASE adb;
        CREATE DATABASE bdb;
        CREATE TABLE adb.main.items AS SELECT range::INTEGER AS id, 'item' || range AS name FROM range(3);
        CREATE TABLE bdb.main.other AS SELECT 'bdb-row' AS r;
        CREATE USER {ALICE} PASSWORD '{ALICE_PW}';
        GRANT READ, WRITE ON DATABASE adb TO {ALICE};
        GRANT READ ON DATABASE bdb TO {ALICE}
    """)
    assert r.status_code == 200, r.text
    yield server, api
    stop_dedicated(server)


@pytest.fixture
def api(srv):
    return srv[1]


@pytest.fixture
def server(srv):
    return srv[0]


def ok_login(api: HttpApi) -> None:
    """A successful login from this address: clears the failed-login counter."""
    r = api.request("GET", "/api/v1/auth/verify", ADMIN_AUTH)
    assert r.status_code == 200, r.text


def new_user(api: HttpApi, prefix: str, *grants: str, superuser: bool = False) -> tuple[str, str]:
    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    password = f"pw-{uuid.uuid4().hex}"
    remember(password)
    sql = [f"CREATE USER {name} PASSWORD '{password}'{' SUPERUSER' if superuser else ''}"]
    sql += [g.format(u=name) for g in grants]
    r = api.query(";\n".join(sql))
    assert r.status_code == 200, r.text
    return name, password


def create_token(api: HttpApi, auth, **body) -> dict:
    body.setdefault("name", f"tok-{uuid.uuid4().hex[:6]}")
    r = api.request("POST", "/api/v1/auth/tokens", auth, json=body)
    assert r.status_code == 201, r.text
    t = r.json()
    remember(t["token"])
    return t


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def whoami(api: HttpApi, auth) -> dict:
    r = api.request("GET", "/api/v1/auth/verify", auth)
    assert r.status_code == 200, r.text
    return r.json()


def count_items(api: HttpApi, auth) -> int:
    r = api.query("SELECT count(*) FROM adb.main.items", auth)
    assert r.status_code == 200, r.text
    return r.json()["data"][0][0]


def flight_rows(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def flight_error(conn, sql: str) -> str:
    with pytest.raises(adbc_driver_manager.Error) as ei:
        flight_rows(conn, sql)
    return str(ei.value)


# ---------------------------------------------------------------- Flight logins


def test_adbc_username_password_login(server, api):
    conn = adbc(server, user=ALICE, password=ALICE_PW)
    try:
        assert {r[0] for r in flight_rows(conn, "SHOW GRANTS")} == {ALICE}
        assert flight_rows(conn, "SELECT count(*) FROM adb.main.items") == [(3,)]
    finally:
        conn.close()
    with pytest.raises(adbc_driver_manager.Error) as ei:
        bad = adbc(server, user=ALICE, password="wrong-password-1")
        try:
            flight_rows(bad, "SELECT 1")
        finally:
            bad.close()
    assert "invalid user name or password" in str(ei.value) or "UNAUTHENTICATED" in str(ei.value), ei.value
    ok_login(api)


def test_adbc_api_token_login(server, api):
    tok = create_token(api, (ALICE, ALICE_PW), permission="write")
    conn = adbc(server, bearer=tok["token"])
    try:
        assert {r[0] for r in flight_rows(conn, "SHOW GRANTS")} == {ALICE}
        assert flight_rows(conn, "SELECT count(*) FROM adb.main.items") == [(3,)]
    finally:
        conn.close()
    # InfluxDB style: the token as the password of a Basic handshake, any user name.
    conn = adbc(server, user="anyone", password=tok["token"])
    try:
        assert {r[0] for r in flight_rows(conn, "SHOW GRANTS")} == {ALICE}
    finally:
        conn.close()
    bad = adbc(server, bearer="pond_t_" + "x" * 43)
    try:
        assert "invalid, expired or revoked token" in flight_error(bad, "SELECT 1")
    finally:
        bad.close()
    ok_login(api)


def test_raw_flight_handshake_and_direct_bearers(server, api):
    client = flight.FlightClient(server.flight_uri)
    try:
        key, value = client.authenticate_basic_token(ALICE, ALICE_PW)
        assert key.lower() == b"authorization" and value.startswith(b"Bearer pond_s_")
        remember(value.decode()[len("Bearer "):])
        tok = create_token(api, (ALICE, ALICE_PW))
        r = api.request("POST", "/api/v1/auth/login", (ALICE, ALICE_PW))
        http_session = r.json()["token"]
        remember(http_session)
        for token in (value.decode()[len("Bearer "):], tok["token"], http_session):
            opts = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
            info = client.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query("SELECT 7 AS x")), opts)
            assert client.do_get(info.endpoints[0].ticket, opts).read_all().to_pylist() == [{"x": 7}]
        opts = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer not-a-token")])
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query("SELECT 1")), opts)
    finally:
        client.close()
    ok_login(api)


# ---------------------------------------------------------------- HTTP credential forms


@pytest.fixture(scope="module")
def alice_token(srv):
    return create_token(srv[1], (ALICE, ALICE_PW), name="alice-main", permission="write")["token"]


GOOD_HTTP = ["basic_password", "basic_token_any_user", "bearer_api_token", "token_scheme", "x_api_key",
             "query_params_password", "query_params_token", "bearer_login_session"]


@pytest.mark.parametrize("variant", GOOD_HTTP)
def test_http_credential_forms_accepted(api, alice_token, variant):
    kw: dict = {}
    if variant == "basic_password":
        auth = (ALICE, ALICE_PW)
    elif variant == "basic_token_any_user":
        auth = {"Authorization": basic("whoever", alice_token)}
    elif variant == "bearer_api_token":
        auth = bearer(alice_token)
    elif variant == "token_scheme":
        auth = {"Authorization": f"Token {alice_token}"}
    elif variant == "x_api_key":
        auth = {"x-api-key": alice_token}
    elif variant == "query_params_password":
        auth, kw = None, {"params": {"u": ALICE, "p": ALICE_PW}}
    elif variant == "query_params_token":
        auth, kw = None, {"params": {"u": "x", "p": alice_token}}
    else:
        r = api.request("POST", "/api/v1/auth/login", (ALICE, ALICE_PW))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token"].startswith("pond_s_") and body["token_type"] == "Bearer" and body["user"] == ALICE
        remember(body["token"])
        auth = bearer(body["token"])
    r = api.request("GET", "/api/v1/auth/verify", auth, **kw)
    assert r.status_code == 200, r.text
    assert r.json()["user"] == ALICE and r.json()["superuser"] is False
    r = api.request("POST", "/api/v1/query", auth, json={"sql": "SELECT count(*) FROM adb.main.items"}, **kw)
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [[3]]


BAD_HTTP = {
    "wrong_password": ((ALICE, "wrong-password-1"), {}),
    "unknown_user": (("nobody_here", ALICE_PW), {}),
    "basic_wrong_token": ({"Authorization": basic("whoever", "pond_t_" + "y" * 43)}, {}),
    "bearer_garbage": ({"Authorization": "Bearer garbage"}, {}),
    "bearer_unknown_api_token": ({"Authorization": "Bearer pond_t_" + "z" * 43}, {}),
    "bearer_unknown_session": ({"Authorization": "Bearer pond_s_" + "z" * 43}, {}),
    "token_scheme_wrong": ({"Authorization": "Token pond_t_" + "q" * 43}, {}),
    "x_api_key_wrong": ({"x-api-key": "pond_t_" + "w" * 43}, {}),
    "query_params_wrong": (None, {"params": {"u": ALICE, "p": "wrong-password-2"}}),
    "no_credentials": (None, {}),
    "malformed_basic": ({"Authorization": "Basic !!!not-base64!!!"}, {}),
    "unknown_scheme": ({"Authorization": "Digest abc"}, {}),
    "password_as_bearer": ({"Authorization": f"Bearer {ALICE_PW}"}, {}),
}


@pytest.mark.parametrize("variant", list(BAD_HTTP))
def test_http_wrong_credentials_401(api, variant):
    auth, kw = BAD_HTTP[variant]
    try:
        for method, path, extra in [("GET", "/api/v1/auth/verify", {}),
                                    ("POST", "/api/v1/query", {"json": {"sql": "SELECT 1"}})]:
            r = api.request(method, path, auth, **extra, **kw)
            assert r.status_code == 401, (variant, path, r.status_code, r.text)
            assert r.headers.get("WWW-Authenticate", "").startswith("Basic"), r.headers
            assert r.json()["code"] == "unauthorized", r.text
            assert ALICE_PW not in r.text
    finally:
        ok_login(api)


# ---------------------------------------------------------------- API tokens


def test_token_lifecycle(api, server):
    alice = (ALICE, ALICE_PW)
    t = create_token(api, alice, name="ci", description="nightly job", permission="write")
    secret, tid = t["token"], t["id"]
    assert secret.startswith("pond_t_") and len(secret) > 30
    assert (t["name"], t["description"], t["user"], t["permission"], t["active"]) == ("ci", "nightly job", ALICE, "write", True)
    assert secret.startswith(t["hint"]) and t["hint"] != secret
    info = whoami(api, bearer(secret))
    assert (info["user"], info["credential"], info["token_id"]) == (ALICE, "api_token", tid)
    assert count_items(api, bearer(secret)) == 3

    # Listed and fetched without the secret.
    r = api.request("GET", "/api/v1/auth/tokens", alice)
    assert r.status_code == 200 and tid in r.text and secret not in r.text
    r = api.request("GET", f"/api/v1/auth/tokens/{tid}", alice)
    assert r.status_code == 200 and r.json()["id"] == tid and secret not in r.text and "token" not in r.json()
    r = api.request("PATCH", f"/api/v1/auth/tokens/{tid}", alice, json={"name": "ci-renamed"})
    assert r.status_code == 200 and r.json()["name"] == "ci-renamed", r.text

    # Rotation: the old secret stops, the new one works.
    r = api.request("POST", f"/api/v1/auth/tokens/{tid}/rotate", alice)
    assert r.status_code == 200, r.text
    rotated = r.json()["token"]
    remember(rotated)
    assert rotated != secret and rotated.startswith("pond_t_") and secret not in r.text
    assert api.request("GET", "/api/v1/auth/verify", bearer(secret)).status_code == 401
    assert count_items(api, bearer(rotated)) == 3
    conn = adbc(server, bearer=rotated)
    try:
        assert flight_rows(conn, "SELECT count(*) FROM adb.main.items") == [(3,)]
        # Revocation: the next call fails, also on an open Flight connection.
        r = api.request("POST", f"/api/v1/auth/tokens/{tid}/revoke", alice)
        assert r.status_code == 200 and r.json()["revoked"] is True and r.json()["active"] is False, r.text
        assert api.request("POST", "/api/v1/query", bearer(rotated), json={"sql": "SELECT 1"}).status_code == 401
        err = flight_error(conn, "SELECT count(*) FROM adb.main.items")
        assert "invalid, expired or revoked token" in err or "UNAUTHENTICATED" in err, err
    finally:
        conn.close()
    assert api.request("POST", f"/api/v1/auth/tokens/{tid}/rotate", alice).status_code >= 400
    r = api.request("DELETE", f"/api/v1/auth/tokens/{tid}", alice)
    assert r.status_code == 204, r.text
    assert api.request("GET", f"/api/v1/auth/tokens/{tid}", alice).status_code == 404
    ok_login(api)


def test_token_expiry(api):
    t = create_token(api, (ALICE, ALICE_PW), expires_in=1)
    assert t["expires_at"]
    assert count_items(api, bearer(t["token"])) == 3
    time.sleep(2.2)
    r = api.query("SELECT 1", bearer(t["token"]))
    assert r.status_code == 401, r.text
    assert api.request("GET", f"/api/v1/auth/tokens/{t['id']}", (ALICE, ALICE_PW)).json()["active"] is False
    r = api.request("POST", "/api/v1/auth/tokens", (ALICE, ALICE_PW), json={"name": "zero", "expires_in": 0})
    assert r.status_code == 400, r.text
    ok_login(api)


def test_read_token_cannot_write_where_owner_can(api, server):
    read = create_token(api, (ALICE, ALICE_PW), permission="read")
    insert = "INSERT INTO adb.main.items VALUES (100, 'x')"
    r = api.query(insert, bearer(read["token"]))
    assert r.status_code == 403 and r.json()["code"] == "permission_denied", r.text
    assert count_items(api, bearer(read["token"])) == 3
    conn = adbc(server, bearer=read["token"])
    try:
        assert "permission denied" in flight_error(conn, insert).lower()
        assert "permission denied" in flight_error(conn, "CREATE TABLE adb.main.x (a INTEGER)").lower()
    finally:
        conn.close()
    # The owner herself can.
    r = api.query(insert + "; DELETE FROM adb.main.items WHERE id = 100", (ALICE, ALICE_PW))
    assert r.status_code == 200, r.text
    # A read-only credential cannot mint a write token.
    r = api.request("POST", "/api/v1/auth/tokens", bearer(read["token"]), json={"name": "esc", "permission": "write"})
    assert r.status_code == 403, r.text


def test_database_scoped_token(api, server):
    scoped = create_token(api, (ALICE, ALICE_PW), databases=["adb"], permission="write")
    auth = bearer(scoped["token"])
    assert count_items(api, auth) == 3
    r = api.query("SELECT * FROM bdb.main.other", auth)
    assert r.status_code == 403 and "bdb-row" not in r.text, r.text
    assert api.query("SELECT * FROM bdb.main.other", (ALICE, ALICE_PW)).status_code == 200
    r = api.query("SHOW DATABASES", auth)
    assert [row[0] for row in r.json()["data"]] == ["adb"], r.text
    r = api.query("SELECT 1", auth, database="bdb")
    assert r.status_code == 403, r.text
    r = api.request("GET", "/api/v1/databases", auth)
    assert [d["name"] for d in r.json()["databases"]] == ["adb"], r.text
    conn = adbc(server, bearer=scoped["token"])
    try:
        assert "permission denied" in flight_error(conn, "SELECT * FROM bdb.main.other").lower()
        assert flight_rows(conn, "SELECT count(*) FROM adb.main.items") == [(3,)]
        catalogs = {o["catalog_name"] for o in conn.adbc_get_objects(depth="catalogs").read_all().to_pylist()}
        assert catalogs == {"adb"}, catalogs
    finally:
        conn.close()
    # A scoped credential cannot mint a token reaching further.
    for body in ({"name": "wider", "databases": ["adb", "bdb"]}, {"name": "all"}):
        r = api.request("POST", "/api/v1/auth/tokens", auth, json=body)
        assert r.status_code == 403, (body, r.text)


def test_token_ownership_rules(api):
    alice = (ALICE, ALICE_PW)
    r = api.request("POST", "/api/v1/auth/tokens", alice, json={"name": "for-admin", "user": ADMIN})
    assert r.status_code == 403, r.text
    r = api.request("POST", "/api/v1/auth/tokens", alice, json={"name": "adm", "permission": "admin"})
    assert r.status_code == 400, r.text
    admin_tok = create_token(api, ADMIN_AUTH, name="admin-read", permission="read")
    # Alice cannot see, rotate or revoke admin's token.
    for method, suffix in [("GET", ""), ("POST", "/rotate"), ("POST", "/revoke"), ("DELETE", "")]:
        r = api.request(method, f"/api/v1/auth/tokens/{admin_tok['id']}{suffix}", alice)
        assert r.status_code in (403, 404), (method, suffix, r.status_code, r.text)
    assert admin_tok["id"] not in api.request("GET", "/api/v1/auth/tokens", alice).text
    # A read token of a superuser is not a superuser.
    info = whoami(api, bearer(admin_tok["token"]))
    assert info["superuser"] is False
    r = api.query("CREATE DATABASE via_read_token", bearer(admin_tok["token"]))
    assert r.status_code == 403, r.text
    r = api.query("CREATE USER via_read_token PASSWORD 'long-enough-1'", bearer(admin_tok["token"]))
    assert r.status_code == 403, r.text
    # An admin token of a superuser is.
    adm = create_token(api, ADMIN_AUTH, name="admin-full", permission="admin")
    assert whoami(api, bearer(adm["token"]))["superuser"] is True
    r = api.query("CREATE DATABASE via_admin_token; DROP DATABASE via_admin_token", bearer(adm["token"]))
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------- OAuth2


def oauth_token(api: HttpApi, client_id: str, secret: str, scope: str | None = None, *, use_basic: bool = False):
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    if use_basic:
        return api.request("POST", "/oauth2/token", (client_id, secret), data=form)
    return api.request("POST", "/oauth2/token", None, data={**form, "client_id": client_id, "client_secret": secret})


def test_oauth2_client_credentials(api, server):
    r = api.request("POST", "/api/v1/auth/oauth2/clients", ADMIN_AUTH,
                    json={"user": ALICE, "databases": ["adb"], "permission": "write"})
    assert r.status_code == 201, r.text
    client_id, client_secret = r.json()["client_id"], r.json()["client_secret"]
    remember(client_secret)

    r = oauth_token(api, client_id, client_secret)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0 and body["access_token"]
    assert r.headers.get("Cache-Control") == "no-store"
    access = body["access_token"]
    remember(access)
    # HTTP: works within the client's scope (adb, write), nothing beyond it.
    auth = bearer(access)
    assert whoami(api, auth)["credential"] == "oauth2"
    assert count_items(api, auth) == 3
    r = api.query("SELECT * FROM bdb.main.other", auth)
    assert r.status_code == 403, r.text
    # Flight: the same token as a bearer header.
    conn = adbc(server, bearer=access)
    try:
        assert flight_rows(conn, "SELECT count(*) FROM adb.main.items") == [(3,)]
        flight_rows(conn, "INSERT INTO adb.main.items VALUES (200, 'oauth')")
        flight_rows(conn, "DELETE FROM adb.main.items WHERE id = 200")
        assert "permission denied" in flight_error(conn, "SELECT * FROM bdb.main.other").lower()
    finally:
        conn.close()

    # Client authentication with Basic.
    r = oauth_token(api, client_id, client_secret, use_basic=True)
    assert r.status_code == 200, r.text
    remember(r.json()["access_token"])

    # Wrong secret / unknown client.
    for cid, sec in [(client_id, "wrong-secret"), ("no-such-client", client_secret)]:
        r = oauth_token(api, cid, sec)
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
        assert client_secret not in r.text
    r = oauth_token(api, client_id, "wrong-secret", use_basic=True)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text

    # Scope narrowing: read-only; a database outside the client's scope is refused.
    r = oauth_token(api, client_id, client_secret, scope="read database:adb")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "read database:adb"
    narrow = r.json()["access_token"]
    remember(narrow)
    assert count_items(api, bearer(narrow)) == 3
    r = api.query("INSERT INTO adb.main.items VALUES (300, 'x')", bearer(narrow))
    assert r.status_code == 403, r.text
    r = oauth_token(api, client_id, client_secret, scope="database:bdb")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope", r.text
    r = oauth_token(api, client_id, client_secret, scope="superpowers")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope", r.text

    # Protocol errors.
    r = api.request("POST", "/oauth2/token", None, data={"grant_type": "password", "client_id": client_id, "client_secret": client_secret})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type", r.text
    r = api.request("POST", "/oauth2/token", None, data={"client_id": client_id, "client_secret": client_secret})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request", r.text
    r = api.request("POST", "/oauth2/token", None, json={"grant_type": "client_credentials", "client_id": client_id,
                                                         "client_secret": client_secret})
    assert r.status_code == 200, r.text
    remember(r.json()["access_token"])

    # Only superusers manage clients; listings never show secrets.
    r = api.request("POST", "/api/v1/auth/oauth2/clients", (ALICE, ALICE_PW), json={"user": ALICE})
    assert r.status_code == 403, r.text
    assert api.request("GET", "/api/v1/auth/oauth2/clients", (ALICE, ALICE_PW)).status_code == 403
    r = api.request("GET", "/api/v1/auth/oauth2/clients", ADMIN_AUTH)
    assert r.status_code == 200 and client_id in r.text and client_secret not in r.text, r.text

    # Deleting the client ends its tokens.
    r = api.request("DELETE", f"/api/v1/auth/oauth2/clients/{client_id}", ADMIN_AUTH)
    assert r.status_code == 204, r.text
    assert api.query("SELECT 1", auth).status_code == 401
    assert oauth_token(api, client_id, client_secret).status_code == 401
    ok_login(api)


# ---------------------------------------------------------------- changes under an open connection


def test_revoke_takes_effect_on_open_connection(api, server):
    bob, bob_pw = new_user(api, "bob", "GRANT READ ON DATABASE adb TO {u}")
    conn = adbc(server, user=bob, password=bob_pw)
    try:
        assert flight_rows(conn, "SELECT count(*) FROM adb.main.items") == [(3,)]
        api.admin_rows(f"REVOKE READ ON DATABASE adb FROM {bob}")
        assert "permission denied" in flight_error(conn, "SELECT count(*) FROM adb.main.items").lower()
        # A table grant brings back exactly that table.
        api.admin_rows(f"GRANT SELECT ON TABLE adb.main.items TO {bob}")
        assert flight_rows(conn, "SELECT count(*) FROM adb.main.items") == [(3,)]
        api.admin_rows(f"REVOKE SELECT ON TABLE adb.main.items FROM {bob}")
        assert "permission denied" in flight_error(conn, "SELECT count(*) FROM adb.main.items").lower()
    finally:
        conn.close()


def test_drop_user_takes_effect_on_open_connections(api, server):
    bob, bob_pw = new_user(api, "bob", "GRANT READ ON DATABASE adb TO {u}")
    tok = create_token(api, (bob, bob_pw))
    r = api.request("POST", "/api/v1/auth/login", (bob, bob_pw))
    session = r.json()["token"]
    remember(session)
    conn = adbc(server, user=bob, password=bob_pw)
    tconn = adbc(server, bearer=tok["token"])
    try:
        assert flight_rows(conn, "SELECT count(*) FROM adb.main.items") == [(3,)]
        assert flight_rows(tconn, "SELECT count(*) FROM adb.main.items") == [(3,)]
        assert count_items(api, bearer(session)) == 3
        api.admin_rows(f"DROP USER {bob}")
        for c in (conn, tconn):
            err = flight_error(c, "SELECT count(*) FROM adb.main.items")
            assert "no longer exists" in err or "invalid" in err or "UNAUTHENTICATED" in err, err
        assert api.query("SELECT 1", bearer(session)).status_code == 401
        assert api.query("SELECT 1", bearer(tok["token"])).status_code == 401
        assert api.query("SELECT 1", (bob, bob_pw)).status_code == 401
    finally:
        conn.close()
        tconn.close()
        ok_login(api)


def test_rename_user_ends_old_sessions(api, server):
    bob, bob_pw = new_user(api, "bob", "GRANT READ ON DATABASE adb TO {u}")
    conn = adbc(server, user=bob, password=bob_pw)
    try:
        assert flight_rows(conn, "SELECT count(*) FROM adb.main.items") == [(3,)]
        api.admin_rows(f"ALTER USER {bob} RENAME TO {bob}_renamed")
        with pytest.raises(adbc_driver_manager.Error):
            flight_rows(conn, "SELECT count(*) FROM adb.main.items")
        assert api.query("SELECT 1", (bob, bob_pw)).status_code == 401
        assert count_items(api, (f"{bob}_renamed", bob_pw)) == 3
    finally:
        conn.close()
        api.admin_rows(f"DROP USER IF EXISTS {bob}_renamed")
        ok_login(api)


def test_superuser_demotion_takes_effect_on_open_connection(api, server):
    carol, carol_pw = new_user(api, "carol", superuser=True)
    conn = adbc(server, user=carol, password=carol_pw)
    try:
        flight_rows(conn, "CREATE DATABASE carol_db")
        api.admin_rows(f"ALTER USER {carol} NOSUPERUSER")
        assert "permission denied" in flight_error(conn, "DROP DATABASE carol_db").lower()
        assert "permission denied" in flight_error(conn, "SELECT count(*) FROM adb.main.items").lower()
        assert "permission denied" in flight_error(conn, f"ALTER USER {carol} SUPERUSER").lower()
    finally:
        conn.close()
        api.admin_rows("DROP DATABASE IF EXISTS carol_db")
        api.admin_rows(f"DROP USER IF EXISTS {carol}")


# ---------------------------------------------------------------- users and grants


def test_user_changes_own_password(api, server):
    erin, old = new_user(api, "erin", "GRANT READ ON DATABASE adb TO {u}")
    new = f"new-{uuid.uuid4().hex}"
    newer = f"newer-{uuid.uuid4().hex}"
    remember(new, newer)
    conn = adbc(server, user=erin, password=old)
    try:
        flight_rows(conn, f"ALTER USER {erin} PASSWORD '{new}'")
        assert "permission denied" in flight_error(conn, "ALTER USER admin PASSWORD 'hijacked-pw-1'").lower()
        assert "at least 8" in flight_error(conn, f"ALTER USER {erin} PASSWORD 'short'")
    finally:
        conn.close()
    assert api.query("SELECT 1", (erin, old)).status_code == 401
    assert count_items(api, (erin, new)) == 3
    # Over HTTP too (PATCH on herself), but not on someone else.
    r = api.request("PATCH", f"/api/v1/users/{erin}", (erin, new), json={"password": newer})
    assert r.status_code == 204, r.text
    r = api.request("PATCH", f"/api/v1/users/{ALICE}", (erin, newer), json={"password": "stolen-password-1"})
    assert r.status_code == 403, r.text
    r = api.request("PATCH", f"/api/v1/users/{erin}", (erin, newer), json={"superuser": True})
    assert r.status_code == 403, r.text
    assert api.query("SELECT 1", (erin, new)).status_code == 401
    assert count_items(api, (erin, newer)) == 3
    assert count_items(api, (ALICE, ALICE_PW)) == 3
    ok_login(api)


def test_users_and_grants_over_http(api):
    name = f"frank_{uuid.uuid4().hex[:6]}"
    pw = f"pw-{uuid.uuid4().hex}"
    remember(pw)
    r = api.request("POST", "/api/v1/users", ADMIN_AUTH, json={"name": name, "password": pw})
    assert r.status_code == 201, r.text
    r = api.request("GET", "/api/v1/users", ADMIN_AUTH)
    assert r.status_code == 200 and name in r.text and "$argon2" not in r.text and pw not in r.text, r.text
    assert api.query("SELECT count(*) FROM adb.main.items", (name, pw)).status_code == 403
    grant = {"user": name, "database": "adb", "privileges": ["read"]}
    assert api.request("POST", "/api/v1/grants", ADMIN_AUTH, json=grant).status_code == 204
    r = api.request("GET", "/api/v1/grants", ADMIN_AUTH, params={"user": name})
    assert r.status_code == 200 and r.json()["grants"] == [
        {"user": name, "database": "adb", "schema": "", "table": "", "privileges": "READ"}], r.text
    assert count_items(api, (name, pw)) == 3
    table_grant = {"user": name, "database": "bdb", "table": "other", "privileges": ["select"]}
    assert api.request("POST", "/api/v1/grants", ADMIN_AUTH, json=table_grant).status_code == 204
    assert api.query("SELECT r FROM bdb.main.other", (name, pw)).json()["data"] == [["bdb-row"]]
    assert api.request("DELETE", "/api/v1/grants", ADMIN_AUTH, json=grant).status_code == 204
    assert api.query("SELECT count(*) FROM adb.main.items", (name, pw)).status_code == 403
    # Non-superusers manage nothing.
    alice = (ALICE, ALICE_PW)
    assert api.request("GET", "/api/v1/users", alice).status_code == 403
    assert api.request("POST", "/api/v1/users", alice, json={"name": "x_evil", "password": "long-enough-1"}).status_code == 403
    assert api.request("POST", "/api/v1/grants", alice, json={**grant, "user": ALICE, "database": "bdb",
                                                              "privileges": ["write"]}).status_code == 403
    assert api.request("DELETE", f"/api/v1/users/{name}", alice).status_code == 403
    # Rename and delete.
    r = api.request("PATCH", f"/api/v1/users/{name}", ADMIN_AUTH, json={"name": f"{name}_2"})
    assert r.status_code == 204, r.text
    assert api.query("SELECT 1", (name, pw)).status_code == 401
    assert api.query("SELECT r FROM bdb.main.other", (f"{name}_2", pw)).status_code == 200
    assert api.request("DELETE", f"/api/v1/users/{name}_2", ADMIN_AUTH).status_code == 204
    assert api.query("SELECT 1", (f"{name}_2", pw)).status_code == 401
    ok_login(api)


# ---------------------------------------------------------------- backoff


def test_failed_login_backoff(api, server):
    dave, dave_pw = new_user(api, "dave", "GRANT READ ON DATABASE adb TO {u}")
    ok_login(api)
    for i in range(5):
        r = api.query("SELECT 1", (dave, f"wrong-password-{i}"))
        assert r.status_code == 401, (i, r.text)
    r = api.query("SELECT 1", (dave, dave_pw))
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "too_many_failed_logins", r.text
    retry = int(r.headers["Retry-After"])
    assert 1 <= retry <= 60, r.headers
    # The same address is refused over Flight, even with the right password.
    with pytest.raises(adbc_driver_manager.Error) as ei:
        conn = adbc(server, user=dave, password=dave_pw)
        try:
            flight_rows(conn, "SELECT 1")
        finally:
            conn.close()
    assert "too many failed logins" in str(ei.value) or "RESOURCE_EXHAUSTED" in str(ei.value), ei.value
    # After waiting, the right password works again (and clears the counter).
    time.sleep(retry + 0.5)
    assert count_items(api, (dave, dave_pw)) == 3
    r = api.query("SELECT 1", (dave, "wrong-password-again"))
    assert r.status_code == 401, "one failure after a success is not throttled"
    ok_login(api)


# ---------------------------------------------------------------- audit and logs


def audit_rows(api: HttpApi, where: str = "true") -> list[dict]:
    r = api.query(f"SELECT \"at\", kind, user_name, source, protocol, success, detail FROM pond_system.main.audit_log WHERE {where}",
                  ADMIN_AUTH)
    assert r.status_code == 200, r.text
    cols = [c["name"] for c in r.json()["columns"]]
    return [dict(zip(cols, row)) for row in r.json()["data"]]


def test_credentials_inside_denied_statements_are_redacted(api, server):
    """A denied statement is audited (table and log) with its text; credentials in it must be blanked.
    These canaries are checked here only, so the general secret checks below stay independent."""
    key, sec, pg = "AKIA-canary-" + uuid.uuid4().hex[:8], "sk-canary-" + uuid.uuid4().hex, "pg-canary-" + uuid.uuid4().hex[:10]
    statements = {
        "create_secret": f"CREATE SECRET leak (TYPE s3, KEY_ID '{key}', SECRET '{sec}')",
        "attach_uri_with_password": f"ATTACH 'postgresql://scott:{pg}@127.0.0.1:1/db' AS pg (TYPE postgres)",
        "create_user": f"CREATE USER evil_user PASSWORD '{pg}x'",
    }
    for sql in statements.values():
        r = api.query(sql, (ALICE, ALICE_PW))
        assert r.status_code == 403, r.text
        assert key not in r.text and sec not in r.text and pg not in r.text, r.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = audit_rows(api, f"kind = 'denied' AND user_name = '{ALICE}' AND protocol = 'http'")
        if sum(1 for r in rows if "CREATE SECRET" in r["detail"] or "ATTACH" in r["detail"]) >= 2:
            break
        time.sleep(0.2)
    audit = json.dumps(rows)
    log = server.log_path.read_text(errors="replace")
    leaks = [(what, where) for what, canary in [("S3 key id", key), ("S3 secret", sec), ("password in a URI", pg)]
             for where, text in [("audit table", audit), ("server log", log)] if canary in text]
    assert not leaks, f"credentials from denied statements stored in clear: {leaks}"


def test_audit_log_records_security_events(api, server):
    r = api.query("CREATE DATABASE audit_probe", (ALICE, ALICE_PW))
    assert r.status_code == 403
    assert api.query("SELECT 1", (ALICE, "wrong-password-audit")).status_code == 401
    ok_login(api)
    conn = adbc(server, user=ALICE, password=ALICE_PW)
    conn.close()
    want = {"login", "auth_failed", "denied", "grant_change", "user_change", "token_change"}
    deadline = time.monotonic() + 10
    while True:
        rows = audit_rows(api)
        kinds = {r["kind"] for r in rows}
        if want <= kinds or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert want <= kinds, kinds
    assert any(r["kind"] == "login" and r["user_name"] == ALICE and r["protocol"] == "flight" and r["success"] for r in rows)
    assert any(r["kind"] == "auth_failed" and r["user_name"] == ALICE and r["source"] == "127.0.0.1"
               and r["protocol"] == "http" and not r["success"] for r in rows)
    assert any(r["kind"] == "denied" and r["user_name"] == ALICE and "audit_probe" in r["detail"] for r in rows)
    assert any(r["kind"] == "grant_change" and ALICE in r["detail"] for r in rows), [r for r in rows if r["kind"] == "grant_change"]
    assert any(r["kind"] == "user_change" and ALICE in r["detail"] for r in rows)
    assert any(r["kind"] == "token_change" for r in rows)
    assert any(r["kind"] == "auth_failed" and "too many failed logins" in r["detail"] for r in rows), \
        "the backoff test's refusals are audited"
    # Non-superusers cannot read it.
    r = api.query("SELECT * FROM pond_system.main.audit_log", (ALICE, ALICE_PW))
    assert r.status_code in (403, 400) and "wrong-password" not in r.text, r.text
    text = json.dumps(rows)
    leaked = sorted(s for s in SECRETS if s in text)
    assert not leaked, f"secrets in the audit table: {leaked}"


def test_no_secrets_in_server_log(server):
    """Runs last: no password, token, client secret or access token used above is in the log."""
    log = server.log_path.read_text(errors="replace")
    assert "audit" in log, "the log should carry the audit events"
    leaked = sorted(s for s in SECRETS if s in log)
    assert not leaked, f"secrets found in the server log {server.log_path}: {leaked}"
    assert "$argon2" not in log
