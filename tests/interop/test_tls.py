"""TLS and mutual TLS against a real `pond serve`.

Certificates come from the real `pond cert generate` command; the clients are
the ADBC Flight SQL driver, pyarrow.flight and curl.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest
import requests

import flight_proto as fp
from helpers import ADMIN, PASSWORD
from pond_server import PondServer, PondStartError, pond_bin

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")

ROOT_CERTS = "adbc.flight.sql.client_option.tls_root_certs"
MTLS_CERT = "adbc.flight.sql.client_option.mtls_cert_chain"
MTLS_KEY = "adbc.flight.sql.client_option.mtls_private_key"


def run_pond(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(pond_bin()), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    r = run_pond("cert", "generate", "--out-dir", str(out), "--client", "interop-client")
    assert r.returncode == 0, r.stderr
    assert f"--tls-cert {out / 'server.pem'} --tls-key {out / 'server-key.pem'}" in r.stdout, r.stdout
    return out


def pem(certs: Path, name: str) -> str:
    return (certs / name).read_text()


def _serve(tmp_path_factory, ext_dir, name: str, args: list[str]):
    server = PondServer(data_dir=tmp_path_factory.mktemp(name) / "data", password=PASSWORD, ext_dir=ext_dir, extra_args=args)
    try:
        server.start()
    except PondStartError as e:
        pytest.fail(str(e))
    yield server
    rc = server.stop()
    assert rc == 0, f"pond exited with {rc} after SIGTERM; log tail:\n{server.log_tail()}"


@pytest.fixture(scope="module")
def pond_tls(tmp_path_factory, ext_dir, certs):
    """TLS on both listeners, no client certificates."""
    yield from _serve(tmp_path_factory, ext_dir, "tls-server",
                      ["--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server-key.pem")])


@pytest.fixture(scope="module")
def pond_mtls(tmp_path_factory, ext_dir, certs):
    """TLS with client certificates required (signed by the generated CA)."""
    yield from _serve(tmp_path_factory, ext_dir, "mtls-server",
                      ["--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server-key.pem"),
                       "--tls-client-ca", str(certs / "ca.pem")])


def adbc_query(server: PondServer, extra: dict, uri: str | None = None):
    import adbc_driver_flightsql.dbapi as flight_sql

    kwargs = {"username": ADMIN, "password": PASSWORD, **extra}
    with flight_sql.connect(uri or server.flight_uri, db_kwargs=kwargs, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 42 AS answer")
            return cur.fetchall()


def flight_query(client: flight.FlightClient, sql: str) -> pa.Table:
    auth = client.authenticate_basic_token(ADMIN, PASSWORD, flight.FlightCallOptions(timeout=20))
    options = flight.FlightCallOptions(headers=[auth], timeout=20)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query(sql)), options)
    return pa.concat_tables([client.do_get(ep.ticket, options).read_all() for ep in info.endpoints])


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CURL, "-sS", "--max-time", "20", *args], capture_output=True, text=True, timeout=60)


def test_cert_generate_writes_private_keys_and_refuses_to_overwrite(certs):
    for key in ("ca-key.pem", "server-key.pem", "client-key.pem"):
        assert stat.S_IMODE((certs / key).stat().st_mode) == 0o600, key
    before = pem(certs, "server.pem")
    r = run_pond("cert", "generate", "--out-dir", str(certs))
    assert r.returncode != 0
    assert "--force" in r.stderr and "server.pem" in r.stderr, r.stderr
    assert pem(certs, "server.pem") == before


def test_ready_file_and_log_say_tls(pond_tls):
    assert pond_tls.tls
    assert pond_tls.flight_uri.startswith("grpc+tls://")
    assert pond_tls.http_url.startswith("https://")
    assert "grpc+tls://" in pond_tls.log_tail(200)


def test_adbc_over_tls(pond_tls, certs):
    assert adbc_query(pond_tls, {ROOT_CERTS: pem(certs, "ca.pem")}) == [(42,)]


def test_adbc_rejects_a_server_it_does_not_trust(pond_tls):
    # Only the system roots: the development CA is not among them.
    with pytest.raises(Exception):
        adbc_query(pond_tls, {})


def test_pyarrow_flight_over_tls(pond_tls, certs):
    client = flight.FlightClient(pond_tls.flight_uri, tls_root_certs=pem(certs, "ca.pem").encode())
    try:
        assert flight_query(client, "SELECT 1 AS one").column("one").to_pylist() == [1]
    finally:
        client.close()


def test_plain_text_to_tls_ports_fails(pond_tls):
    client = flight.FlightClient(f"grpc://{pond_tls.flight_addr}")
    try:
        with pytest.raises((flight.FlightError, pa.ArrowException)):
            client.authenticate_basic_token(ADMIN, PASSWORD, flight.FlightCallOptions(timeout=10))
    finally:
        client.close()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://{pond_tls.http_addr}/health", timeout=10)


@needs_curl
def test_curl_https_http1_and_http2(pond_tls, certs):
    ca = str(certs / "ca.pem")
    url = f"{pond_tls.http_url}/health"
    for flag, version in (("--http1.1", "1.1"), ("--http2", "2")):
        r = curl("--cacert", ca, flag, "-w", "\n%{http_code} %{http_version}", url)
        assert r.returncode == 0, r.stderr
        body, status = r.stdout.rsplit("\n", 1)
        assert status == f"200 {version}"
        assert json.loads(body)["status"] == "ok"
    r = curl("--cacert", ca, "-u", f"{ADMIN}:{PASSWORD}", f"{pond_tls.http_url}/api/v1/query",
             "-d", json.dumps({"sql": "SELECT 42 AS answer", "format": "json"}))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["data"] == [[42]]
    # Without the CA curl refuses the certificate.
    assert curl(url).returncode != 0


def test_mtls_adbc_with_and_without_client_certificate(pond_mtls, certs):
    ca = pem(certs, "ca.pem")
    with_cert = {ROOT_CERTS: ca, MTLS_CERT: pem(certs, "client.pem"), MTLS_KEY: pem(certs, "client-key.pem")}
    assert adbc_query(pond_mtls, with_cert) == [(42,)]
    with pytest.raises(Exception):
        adbc_query(pond_mtls, {ROOT_CERTS: ca})


def test_mtls_pyarrow_flight_with_and_without_client_certificate(pond_mtls, certs):
    ca = pem(certs, "ca.pem").encode()
    client = flight.FlightClient(pond_mtls.flight_uri, tls_root_certs=ca,
                                 cert_chain=pem(certs, "client.pem").encode(), private_key=pem(certs, "client-key.pem").encode())
    try:
        assert flight_query(client, "SELECT 1 AS one").column("one").to_pylist() == [1]
    finally:
        client.close()
    client = flight.FlightClient(pond_mtls.flight_uri, tls_root_certs=ca)
    try:
        with pytest.raises((flight.FlightError, pa.ArrowException)):
            client.authenticate_basic_token(ADMIN, PASSWORD, flight.FlightCallOptions(timeout=10))
    finally:
        client.close()


@needs_curl
def test_mtls_curl_with_and_without_client_certificate(pond_mtls, certs):
    url = f"{pond_mtls.http_url}/health"
    ca = str(certs / "ca.pem")
    r = curl("--cacert", ca, "--cert", str(certs / "client.pem"), "--key", str(certs / "client-key.pem"), url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "ok"
    r = curl("--cacert", ca, url)
    assert r.returncode != 0, r.stdout


def test_pond_cli_over_tls(pond_tls, certs):
    """`pond sql` and the administration commands reach a TLS server when given the CA."""
    import os

    host, port = pond_tls.flight_addr.rsplit(":", 1)
    env = dict(os.environ, POND_PASSWORD=PASSWORD)
    sql = subprocess.run([str(pond_bin()), "sql", "--host", "localhost", "--port", port, "--cacert", str(certs / "ca.pem"),
                          "-c", "SELECT 6 * 7 AS answer"], capture_output=True, text=True, timeout=60, env=env)
    assert sql.returncode == 0, sql.stderr
    assert "42" in sql.stdout
    # Without the CA the server is not trusted.
    bad = subprocess.run([str(pond_bin()), "sql", "--host", "localhost", "--port", port, "--tls", "-c", "SELECT 1"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode != 0
    http_port = pond_tls.http_addr.rsplit(":", 1)[1]
    users = subprocess.run([str(pond_bin()), "user", "list", "--url", f"https://localhost:{http_port}",
                            "--cacert", str(certs / "ca.pem")], capture_output=True, text=True, timeout=60, env=env)
    assert users.returncode == 0, users.stderr
    assert json.loads(users.stdout.splitlines()[0])["name"] == ADMIN
def test_psycopg_sslmode_require_and_verify_full(pond_tls, certs):
    """The PostgreSQL listener switches to TLS on request, with the same certificate."""
    import psycopg

    host, port = pond_tls.pg_host_port
    base = dict(host=host, port=port, user="admin", password=PASSWORD, dbname="default", connect_timeout=10)
    with psycopg.connect(**base, sslmode="require") as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("select 1").fetchone() == (1,)
    with psycopg.connect(**dict(base, host="localhost"), sslmode="verify-full", sslrootcert=str(certs / "ca.pem")) as conn:
        assert conn.pgconn.ssl_in_use
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(**dict(base, host="localhost"), sslmode="verify-full", sslrootcert=str(certs / "client.pem"))
