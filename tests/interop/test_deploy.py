"""The deployment files and `pond doctor` against the real binary (issue 19, "Deployment").

No container engine or systemd runs here, so the image is checked through what
can be run without one: the Dockerfile's runtime environment (its ENV lines,
with the data and extension directories and ports moved to temporary ones) must
start a server that its HEALTHCHECK command finds healthy, that serves a
time-series write and an icu query while the kernel refuses writable+executable
memory (prctl PR_SET_MDWE, what the unit's MemoryDenyWriteExecute=yes enforces),
and that `pond doctor` then reports. The extension list the image installs must
be the serve set, and the ports it exposes those it listens on. The linters
(hadolint, systemd-analyze) run in scripts/check_deploy.sh.

`pond doctor` must pass on a good data dir and fail, naming the problem and the
fix, on each broken part: a missing or unreadable data dir, bad metadata, a
master key others may read, a missing database file, a lake without its
catalog, a missing or broken extension, a port in use, a key that does not
belong to its certificate, an expired certificate.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from pond_server import REPO_ROOT, PondServer, ensure_extensions, extension_file, pond_bin
from test_serve_defaults import copy_extensions, serve_extensions

PASSWORD = "deploy-Secret-123"
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


# ---------------------------------------------------------------- the Dockerfile


def dockerfile() -> dict:
    """What the Dockerfile's final stage sets: env, exposed ports, health check, and the ARG list of extensions."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    stages: list[list[str]] = []
    ext_arg = None
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stages.append([])
        if word == "ARG" and rest.startswith("POND_EXTENSIONS="):
            ext_arg = shlex.split(rest)[0].split("=", 1)[1].split()
        if stages:
            stages[-1].append(line)
    env: dict[str, str] = {}
    exposed: set[int] = set()
    health = None
    command: dict[str, list[str]] = {}
    for line in stages[-1]:
        word, _, rest = line.partition(" ")
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
        elif word == "EXPOSE":
            exposed |= {int(p.split("/")[0]) for p in rest.split()}
        elif word == "HEALTHCHECK":
            health = json.loads(rest[rest.index("CMD") + 3:].strip())
        elif word in ("ENTRYPOINT", "CMD"):
            command[word] = json.loads(rest)
    return {"env": env, "exposed": exposed, "health": health, "extensions": ext_arg,
            "argv": command.get("ENTRYPOINT", []) + command.get("CMD", [])}


def test_dockerfile_installs_the_serve_extensions():
    assert dockerfile()["extensions"] == serve_extensions()


def test_dockerfile_exposes_the_ports_it_listens_on():
    d = dockerfile()
    listen = {k: v for k, v in d["env"].items() if k.endswith("_ADDR")}
    assert set(listen) == {"POND_FLIGHT_ADDR", "POND_HTTP_ADDR", "POND_PG_ADDR"}, listen
    assert all(v.startswith("0.0.0.0:") for v in listen.values()), "inside a container Pond must listen on every interface"
    assert {int(v.rsplit(":", 1)[1]) for v in listen.values()} == d["exposed"]
    assert d["health"][0] == "pond", d["health"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict[str, str]:
    """The test process's environment without POND_* settings that would leak into the binary."""
    return {k: v for k, v in os.environ.items() if not k.startswith("POND_")}


def mdwe_supported() -> bool:
    out = subprocess.run(
        ["python3", "-c", f"import ctypes; print(ctypes.CDLL(None, use_errno=True).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0))"],
        capture_output=True, text=True, timeout=30,
    )
    return out.stdout.strip() == "0"


def deny_write_execute():
    """preexec_fn: from here on the kernel refuses memory that is (or becomes) writable and executable."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE) failed")


@pytest.fixture(scope="module")
def serve_ext_dir(tmp_path_factory, ext_dir):
    names = serve_extensions()
    ensure_extensions(names, ext_dir)
    return copy_extensions(names, ext_dir, tmp_path_factory.mktemp("deploy-extensions"))


def test_image_environment_is_healthy_and_doctor_sees_the_running_server(tmp_path, serve_ext_dir):
    d = dockerfile()
    env = clean_env()
    env.update(d["env"])
    ports = {}
    for key in ("POND_FLIGHT_ADDR", "POND_HTTP_ADDR", "POND_PG_ADDR"):
        ports[key] = free_port()
        env[key] = f"0.0.0.0:{ports[key]}"
    env["POND_DATA_DIR"] = str(tmp_path / "data")
    env["POND_EXTENSION_DIR"] = str(serve_ext_dir)
    env["POND_ADMIN_PASSWORD"] = PASSWORD
    mdwe = mdwe_supported()
    log = open(tmp_path / "serve.log", "wb")
    argv = [str(pond_bin()) if a == "pond" else a for a in d["argv"]]
    assert argv[1:] == ["serve"], d["argv"]
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=deny_write_execute if mdwe else None)
    log.close()
    health = [str(pond_bin()) if a == "pond" else a for a in d["health"]]
    try:
        deadline = time.monotonic() + 120
        while True:
            probe = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
            if probe.returncode == 0:
                break
            assert proc.poll() is None, f"pond serve exited {proc.returncode}:\n{(tmp_path / 'serve.log').read_text()}"
            assert time.monotonic() < deadline, f"the HEALTHCHECK never passed: {probe.stderr}"
            time.sleep(0.2)
        assert f"127.0.0.1:{ports['POND_HTTP_ADDR']}/health" in probe.stdout, probe.stdout
        # The lake (ducklake) and icu, loaded under MemoryDenyWriteExecute semantics.
        http = f"http://127.0.0.1:{ports['POND_HTTP_ADDR']}"
        auth = ("admin", PASSWORD)
        r = requests.post(f"{http}/write?db=metrics", data="cpu,host=a usage=1.5 1700000000000000000\n", auth=auth, timeout=60)
        assert r.status_code == 204, r.text
        r = requests.post(f"{http}/api/v1/query", auth=auth, timeout=60, json={
            "sql": "SELECT (SELECT count(*) FROM metrics.cpu) AS n, "
                   "strftime(timezone('America/New_York', TIMESTAMPTZ '2024-01-01 00:00:00+00'), '%H') AS h",
            "format": "json"})
        assert r.status_code == 200, r.text
        assert r.json()["data"] == [[1, "19"]]
        # Doctor against the running server's settings: its ports are taken, by Pond.
        out = subprocess.run([str(pond_bin()), "doctor"], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 1, out.stdout + out.stderr
        http_line = next(ln for ln in out.stdout.splitlines() if " port http " in f" {ln} ")
        assert http_line.startswith("FAIL") and f"another Pond server (pid {proc.pid})" in http_line, out.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
    assert code == 0, (tmp_path / "serve.log").read_text()
    assert subprocess.run(health, env=env, capture_output=True, timeout=30).returncode != 0, "health passes with no server"
    out = subprocess.run([str(pond_bin()), "doctor"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"checks: \d+ OK, 0 WARN, 0 FAIL", out.stdout), out.stdout
    if not mdwe:
        pytest.skip("this kernel has no PR_SET_MDWE: the server ran without write-execute protection")


# ---------------------------------------------------------------- pond doctor


@pytest.fixture(scope="module")
def served(tmp_path_factory, serve_ext_dir):
    """A data dir a real server has used: databases default and metrics, a lake with Parquet files."""
    root = tmp_path_factory.mktemp("served")
    server = PondServer(root / "data", password=PASSWORD, ext_dir=serve_ext_dir, extensions="icu")
    with server:
        auth = ("admin", PASSWORD)
        r = requests.post(f"{server.http_url}/write?db=metrics", data="cpu,host=a usage=2 1700000000000000000\n", auth=auth, timeout=60)
        assert r.status_code == 204, r.text
        r = requests.post(f"{server.http_url}/api/v1/lake/flush", auth=auth, timeout=120)
        assert r.status_code in (200, 204), r.text
    assert list((root / "data" / "lake" / "data").rglob("*.parquet")), "the fixture needs flushed lake files"
    return root / "data"


def doctor(data_dir: Path, ext_dir: Path, *extra: str, env: dict | None = None, user: int | None = None,
           binary: Path | None = None) -> tuple[int, str]:
    args = [str(binary or pond_bin()), "doctor", "--data-dir", str(data_dir), "--extension-dir", str(ext_dir), "--offline"]
    for flag in ("--flight-addr", "--http-addr", "--pg-addr"):
        if flag not in extra:
            args += [flag, f"127.0.0.1:{free_port()}"]
    args += extra
    e = clean_env()
    e.update(env or {})
    preexec = (lambda: (os.setgroups([]), os.setgid(user), os.setuid(user))) if user is not None else None
    out = subprocess.run(args, env=e, capture_output=True, text=True, timeout=120, preexec_fn=preexec)
    return out.returncode, out.stdout + out.stderr


def line(output: str, subject: str) -> str:
    """The report line about `subject` (the column after the status)."""
    for ln in output.splitlines():
        parts = ln.split(None, 1)
        if len(parts) == 2 and parts[1].startswith(subject + " "):
            return ln
    raise AssertionError(f"no line about {subject!r}:\n{output}")


@pytest.fixture
def data(tmp_path, served):
    copy = tmp_path / "data"
    shutil.copytree(served, copy)
    return copy


def test_doctor_passes_on_a_good_setup(data, serve_ext_dir):
    code, out = doctor(data, serve_ext_dir)
    assert code == 0, out
    for subject in ["data dir", "metadata", "master key", "databases", "lake catalog", "extension icu",
                    "extension ducklake", "port flight", "port http", "port pg", "tls"]:
        assert line(out, subject).startswith("OK"), line(out, subject)
    assert "2 databases" in line(out, "metadata"), out
    key = (data / "system" / "master.key").read_text().strip()
    assert key not in out, "doctor printed the master key"


def test_doctor_fails_on_a_data_dir_that_cannot_exist(tmp_path, serve_ext_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, out = doctor(blocker / "pond-data", serve_ext_dir)
    assert code == 1, out
    assert line(out, "data dir").startswith("FAIL") and "is not a directory" in line(out, "data dir"), out
    code, out = doctor(blocker, serve_ext_dir)
    assert code == 1 and "is not a directory" in line(out, "data dir"), out
    # A missing dir whose parent is writable is created at start: a warning only.
    code, out = doctor(tmp_path / "new", serve_ext_dir)
    assert code == 0 and line(out, "data dir").startswith("WARN"), out


def test_doctor_fails_on_an_unreadable_data_dir(served, serve_ext_dir):
    # Root reads everything: run doctor as nobody on a copy of the binary outside /root.
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        tmp = Path(tmp)
        os.chmod(tmp, 0o755)
        data = tmp / "data"
        shutil.copytree(served, data)
        kw = {}
        if os.geteuid() == 0:
            binary = tmp / "pond"
            shutil.copyfile(pond_bin(), binary)
            os.chmod(binary, 0o755)
            ext = tmp / "ext"
            shutil.copytree(serve_ext_dir, ext)
            for p in [ext, *ext.rglob("*")]:
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
            kw = {"user": 65534, "binary": binary}
        else:
            ext = serve_ext_dir
        os.chmod(data, 0o700 if os.geteuid() == 0 else 0o000)
        try:
            code, out = doctor(data, ext, **kw)
        finally:
            os.chmod(data, 0o700)
    assert code == 1, out
    assert line(out, "data dir").startswith("FAIL") and "cannot" in line(out, "data dir"), out


def test_doctor_fails_on_bad_metadata_key_file_and_missing_files(data, serve_ext_dir):
    key = data / "system" / "master.key"
    os.chmod(key, 0o644)
    meta = json.loads((data / "system" / "pond.json").read_text())
    metrics = next(d for d in meta["databases"] if d["name"] == "metrics")
    (data / "databases" / f"{metrics['file_id']}.duckdb").unlink()
    (data / "lake" / "catalog.ducklake").unlink()
    code, out = doctor(data, serve_ext_dir)
    assert code == 1, out
    assert line(out, "master key").startswith("FAIL") and "chmod 600" in line(out, "master key"), out
    assert line(out, "database metrics").startswith("FAIL") and "missing" in line(out, "database metrics"), out
    assert line(out, "lake catalog").startswith("FAIL") and "Parquet" in line(out, "lake catalog"), out
    assert key.read_text().strip() not in out
    # Fixed key mode: that line passes; the others still fail.
    os.chmod(key, 0o600)
    code, out = doctor(data, serve_ext_dir)
    assert line(out, "master key").startswith("OK") and code == 1, out
    # Metadata that does not parse.
    (data / "system" / "pond.json").write_text("{ not json")
    code, out = doctor(data, serve_ext_dir)
    assert code == 1 and line(out, "metadata").startswith("FAIL") and "not valid JSON" in line(out, "metadata"), out


def test_doctor_master_key_from_the_environment(data, serve_ext_dir):
    hex_key = "ab" * 32
    code, out = doctor(data, serve_ext_dir, env={"POND_MASTER_KEY": hex_key})
    assert code == 0 and "POND_MASTER_KEY" in line(out, "master key"), out
    assert hex_key not in out
    code, out = doctor(data, serve_ext_dir, env={"POND_MASTER_KEY": "not-a-key"})
    assert code == 1 and line(out, "master key").startswith("FAIL"), out
    assert "not-a-key" not in out


def test_doctor_fails_on_missing_and_broken_extensions(data, tmp_path, serve_ext_dir):
    empty = tmp_path / "no-extensions"
    empty.mkdir()
    code, out = doctor(data, empty)
    assert code == 1, out
    icu = line(out, "extension icu")
    assert icu.startswith("FAIL") and f"pond extensions install --extension-dir {empty} icu" in icu, icu
    # The lake's extension only disables time-series storage: a warning.
    assert line(out, "extension ducklake").startswith("WARN"), out
    broken = copy_extensions(["icu", "ducklake"], serve_ext_dir, tmp_path / "broken")
    extension_file("icu", broken).write_bytes(b"\x7fELF not really an extension")
    code, out = doctor(data, broken)
    assert code == 1, out
    assert line(out, "extension icu").startswith("FAIL") and "cannot load" in line(out, "extension icu"), out
    assert line(out, "extension ducklake").startswith("OK"), out


def test_doctor_fails_on_a_port_in_use(data, serve_ext_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, out = doctor(data, serve_ext_dir, "--http-addr", f"127.0.0.1:{port}")
    assert code == 1, out
    http = line(out, "port http")
    assert http.startswith("FAIL") and "in use" in http and f"(pid {os.getpid()})" in http, http
    assert line(out, "port flight").startswith("OK"), out
    # Two listeners on one port.
    p = free_port()
    code, out = doctor(data, serve_ext_dir, "--http-addr", f"127.0.0.1:{p}", "--pg-addr", f"0.0.0.0:{p}")
    assert code == 1 and "also the http listener's address" in line(out, "port pg"), out


def test_doctor_checks_tls_files(data, tmp_path, serve_ext_dir):
    def certs(name: str, *extra: str) -> Path:
        out = tmp_path / name
        subprocess.run([str(pond_bin()), "cert", "generate", "--out-dir", str(out), *extra], check=True, capture_output=True, timeout=60)
        return out

    a, b = certs("a"), certs("b")
    code, out = doctor(data, serve_ext_dir, "--tls-cert", str(a / "server.pem"), "--tls-key", str(a / "server-key.pem"))
    assert code == 0, out
    assert line(out, "tls").startswith("OK") and "valid until" in line(out, "tls certificate"), out
    key_text = (a / "server-key.pem").read_text()
    assert key_text.splitlines()[1] not in out
    # A key of another certificate.
    code, out = doctor(data, serve_ext_dir, "--tls-cert", str(a / "server.pem"), "--tls-key", str(b / "server-key.pem"))
    assert code == 1 and line(out, "tls").startswith("FAIL") and "does not belong" in line(out, "tls"), out
    # A key file that is not there.
    code, out = doctor(data, serve_ext_dir, "--tls-cert", str(a / "server.pem"), "--tls-key", str(a / "missing.pem"))
    assert code == 1 and "cannot read" in line(out, "tls"), out
    # Soon to expire: a warning; a key others may read: a warning.
    soon = certs("soon", "--days", "5")
    os.chmod(soon / "server-key.pem", 0o644)
    code, out = doctor(data, serve_ext_dir, "--tls-cert", str(soon / "server.pem"), "--tls-key", str(soon / "server-key.pem"))
    assert code == 0, out
    assert line(out, "tls certificate").startswith("WARN") and "expires on" in line(out, "tls certificate"), out
    assert line(out, "tls key").startswith("WARN") and "chmod 600" in line(out, "tls key"), out
    # (Expired and not-yet-valid certificates: unit tests in crates/pond/src/doctor.rs,
    # since `pond cert generate` makes only valid ones.)


def test_doctor_reads_the_config_file(data, tmp_path, serve_ext_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        config = tmp_path / "pond.toml"
        config.write_text(f'tcp-addr = "127.0.0.1:{port}"\n')
        code, out = doctor(data, serve_ext_dir, "--config", str(config))
    assert code == 1 and f"127.0.0.1:{port} is in use" in line(out, "port tcp"), out
