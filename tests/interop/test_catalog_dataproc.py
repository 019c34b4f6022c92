"""External catalogs, Google Dataproc Metastore: Pond finds the service's Thrift
endpoint through the Dataproc Metastore API (`services.get`) with an OAuth2 token
from a service-account key, then reads the tables from a real Hive Metastore 2.3.10.

Google's API cannot run here, so `DataprocStub` stands in for two endpoints: the
token endpoint (it verifies the JWT assertion's RS256 signature with the service
account's public key, its issuer, audience and scope) and `services.get` (it
checks the bearer token it issued). Its `endpointUri` points at the real
metastore started below; everything after discovery is the real Thrift path.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import duckdb
import pytest

from helpers import PASSWORD, http_query as q, http_rows as rows

AUTH = ("admin", PASSWORD)
SERVICE = "projects/pond-test/locations/europe-west1/services/hms1"
CLIENT_EMAIL = "pond-reader@pond-test.iam.gserviceaccount.com"






def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class DataprocStub:
    def __init__(self, public_key, hms_uri: str):
        self.public_key = public_key
        self.hms_uri = hms_uri
        self.state = "ACTIVE"
        self.protocol = "THRIFT"
        self.issued: set[str] = set()
        self.assertions: list[dict] = []
        self.gets: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                if self.path != "/token" or form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
                    return self.reply(400, {"error": "unsupported_grant_type"})
                claims = stub.verify(form["assertion"][0], f"{stub.url}/token")
                if claims is None:
                    return self.reply(400, {"error": "invalid_grant", "error_description": "bad assertion"})
                stub.assertions.append(claims)
                token = "ya29." + uuid.uuid4().hex
                stub.issued.add(token)
                return self.reply(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

            def do_GET(self):
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or auth[7:] not in stub.issued:
                    return self.reply(401, {"error": {"code": 401, "message": "Request had invalid authentication credentials."}})
                stub.gets.append(self.path)
                if self.path != f"/v1/{SERVICE}":
                    return self.reply(404, {"error": {"code": 404, "message": f"Resource '{self.path}' was not found"}})
                return self.reply(200, {"name": SERVICE, "state": stub.state, "endpointUri": stub.hms_uri,
                                        "hiveMetastoreConfig": {"version": "2.3.6", "endpointProtocol": stub.protocol}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def verify(self, jwt: str, audience: str):
        """The assertion's claims if it is signed by the service account's key and well-formed."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        head, body, sig = jwt.split(".")
        if json.loads(b64url_decode(head)).get("alg") != "RS256":
            return None
        try:
            self.public_key.verify(b64url_decode(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return None
        claims = json.loads(b64url_decode(body))
        ok = (claims.get("iss") == CLIENT_EMAIL and claims.get("aud") == audience
              and "https://www.googleapis.com/auth/cloud-platform" in claims.get("scope", "")
              and claims.get("exp", 0) > time.time())
        return claims if ok else None

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def world(hms, start_module_server, tmp_path_factory):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    stub = DataprocStub(key.public_key(), hms.uri)
    sa = {"type": "service_account", "project_id": "pond-test", "private_key_id": "k1", "private_key": pem,
          "client_email": CLIENT_EMAIL, "client_id": "1", "token_uri": f"{stub.url}/token"}

    data = tmp_path_factory.mktemp("dpdata")
    db = "dp_" + uuid.uuid4().hex[:6]
    hms.create_database(db)
    parts = []
    for d in ["2024-05-01", "2024-05-02"]:
        loc = data / "visits" / f"day={d}"
        loc.mkdir(parents=True)
        duckdb.sql(f"COPY (SELECT range AS v FROM range({3 if d.endswith('1') else 4})) TO '{loc / 'f.parquet'}' (FORMAT parquet)")
        parts.append(([d], loc))
    hms.create_table(db, "visits", [("v", "bigint")], partition_keys=[("day", "string")], location=data / "visits")
    hms.add_partitions(db, "visits", parts)

    pond = start_module_server("pond-dataproc", extra_args=["--allowed-paths", str(data)])
    sa_sql = json.dumps(sa).replace("'", "''")
    r = q(pond, f"CREATE SECRET gsa (TYPE gcp, SERVICE_ACCOUNT_JSON '{sa_sql}')")
    assert r.status_code == 200, r.text
    yield {"db": db, "pond": pond, "stub": stub, "pem": pem}
    stub.close()


def test_attach_discovers_the_thrift_endpoint_and_reads(world):
    pond, db, stub = world["pond"], world["db"], world["stub"]
    r = q(pond, f"ATTACH '{SERVICE}' AS dp (TYPE dataproc, SECRET 'gsa', API_ENDPOINT '{stub.url}')")
    assert r.status_code == 200, r.text
    assert ("dp", "dataproc") in [(x[0], x[1]) for x in rows(pond, "SHOW DATABASES")]
    assert rows(pond, f"SELECT day, count(*) FROM dp.{db}.visits GROUP BY day ORDER BY day") == [("2024-05-01", 3), ("2024-05-02", 4)]
    assert rows(pond, f"SELECT count(*) FROM dp.{db}.visits WHERE day = '2024-05-02'") == [(4,)]
    # The token came from a signed assertion, and services.get was called with it.
    assert stub.assertions and stub.assertions[0]["iss"] == CLIENT_EMAIL
    assert f"/v1/{SERVICE}" in stub.gets
    plan = str(rows(pond, f"EXPLAIN SELECT * FROM dp.{db}.visits WHERE day = '2024-05-02'"))
    assert "dataproc at " in plan and SERVICE in plan and "1 partitions selected" in plan, plan
    assert world["pem"][40:80] not in plan


def test_grpc_endpoints_and_inactive_services_are_explained(world):
    pond, stub = world["pond"], world["stub"]
    try:
        stub.protocol = "GRPC"
        r = q(pond, f"ATTACH '{SERVICE}' AS dpg (TYPE dataproc, SECRET 'gsa', API_ENDPOINT '{stub.url}')")
        assert r.status_code != 200 and "gRPC" in r.text and "TYPE hive" in r.text, r.text
        stub.protocol = "THRIFT"
        stub.state = "SUSPENDED"
        r = q(pond, f"ATTACH '{SERVICE}' AS dps (TYPE dataproc, SECRET 'gsa', API_ENDPOINT '{stub.url}')")
        assert r.status_code != 200 and "is SUSPENDED, not ACTIVE" in r.text, r.text
    finally:
        stub.protocol, stub.state = "THRIFT", "ACTIVE"


def test_bad_names_secrets_and_a_key_the_token_endpoint_refuses(world):
    pond, stub = world["pond"], world["stub"]
    r = q(pond, f"ATTACH 'thrift://h:9083' AS dpx (TYPE dataproc, API_ENDPOINT '{stub.url}')")
    assert r.status_code == 400 and "projects/<project>/locations/<region>/services/<service>" in r.text, r.text
    q(pond, "CREATE SECRET s3only (TYPE s3, KEY_ID 'a', SECRET 'b')")
    r = q(pond, f"ATTACH '{SERVICE}' AS dpy (TYPE dataproc, SECRET 's3only', API_ENDPOINT '{stub.url}')")
    assert r.status_code == 400 and "TYPE gcp" in r.text, r.text
    # A different key: the stub refuses the assertion; Pond says the token failed, without the key.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    sa = {"type": "service_account", "private_key": other, "client_email": CLIENT_EMAIL, "token_uri": f"{stub.url}/token",
          "project_id": "pond-test", "private_key_id": "k2", "client_id": "2"}
    r = q(pond, "CREATE SECRET wrongkey (TYPE gcp, SERVICE_ACCOUNT_JSON '{}')".format(json.dumps(sa).replace("'", "''")))
    assert r.status_code == 200, r.text
    r = q(pond, f"ATTACH '{SERVICE}' AS dpz (TYPE dataproc, SECRET 'wrongkey', API_ENDPOINT '{stub.url}', TIMEOUT 3)")
    assert r.status_code != 200 and "token" in r.text, r.text
    assert other[40:80] not in r.text


def test_api_down_is_a_clear_error_within_the_timeout(world):
    pond = world["pond"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    started = time.monotonic()
    r = q(pond, f"ATTACH '{SERVICE}' AS dpd (TYPE dataproc, SECRET 'gsa', API_ENDPOINT 'http://127.0.0.1:{dead}', TIMEOUT 2)")
    assert r.status_code == 503, r.text
    assert "dataproc services.get" in r.text and f"127.0.0.1:{dead}" in r.text, r.text
    assert time.monotonic() - started < 30
