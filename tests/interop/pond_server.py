"""Start and stop a real `pond serve` process (shared by the pytest suite and bench/run.py).

Nothing here imports pytest, so the benchmark can use it as a plain module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

DUCKDB_VERSION = "1.5.5"
PLATFORM = "linux_amd64"
REPO_ROOT = Path(__file__).resolve().parents[2]


def pond_bin() -> Path:
    """`POND_BIN`, else `$CARGO_TARGET_DIR/release/pond` (default target dir: ~/.cache/pond/target)."""
    env = os.environ.get("POND_BIN")
    if env:
        return Path(env)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/pond/target")
    return Path(target) / "release" / "pond"


def extension_dir() -> Path:
    env = os.environ.get("POND_EXTENSION_DIR")
    return Path(env) if env else Path(os.path.expanduser("~/.cache/pond/extensions"))


def extension_file(name: str, ext_dir: Optional[Path] = None) -> Path:
    ext_dir = ext_dir or extension_dir()
    return ext_dir / f"v{DUCKDB_VERSION}" / PLATFORM / f"{name}.duckdb_extension"


def _pip_install_extensions(names: list[str], ext_dir: Path) -> None:
    """Fallback: fetch the official wheels with pip and unpack the binaries."""
    target = ext_dir / f"v{DUCKDB_VERSION}" / PLATFORM
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pkgs = [f"duckdb-extension-{n.replace('_', '-')}=={DUCKDB_VERSION}" for n in names]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp, *pkgs],
            check=True,
        )
        for whl in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(whl) as zf:
                for member in zf.namelist():
                    if member.endswith(".duckdb_extension"):
                        out = target / Path(member).name
                        out.write_bytes(zf.read(member))


def ensure_extensions(names: list[str], ext_dir: Optional[Path] = None) -> Path:
    """Make sure EXTDIR/v1.5.5/linux_amd64/<name>.duckdb_extension exists for every name.

    Uses `pond extensions install` (the supported way); falls back to pip + unzip when
    the binary cannot do it, so the in-process reference still works.
    """
    ext_dir = ext_dir or extension_dir()
    missing = [n for n in names if not extension_file(n, ext_dir).exists()]
    if not missing:
        return ext_dir
    binary = pond_bin()
    if binary.exists():
        subprocess.run(
            [str(binary), "extensions", "install", "--extension-dir", str(ext_dir), "--python", sys.executable, *missing],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=600,
        )
    missing = [n for n in names if not extension_file(n, ext_dir).exists()]
    if missing:
        _pip_install_extensions(missing, ext_dir)
    still = [n for n in names if not extension_file(n, ext_dir).exists()]
    if still:
        raise RuntimeError(f"could not install DuckDB extensions {still} into {ext_dir}")
    return ext_dir


class PondStartError(RuntimeError):
    pass


@dataclass
class PondServer:
    """One `pond serve` process on ephemeral loopback ports."""

    data_dir: Path
    password: str = "pond-test-pw"
    # --extensions; None: Pond's default (the flag is not passed and POND_EXTENSIONS is unset).
    extensions: Optional[str] = "icu"
    query_timeout_ms: Optional[int] = None
    max_sessions: Optional[int] = None
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    ext_dir: Optional[Path] = None
    proc: Optional[subprocess.Popen] = None
    flight_addr: str = ""
    http_addr: str = ""
    # The PostgreSQL listener ("" when it is off); read from the ready file.
    pg_addr: str = ""
    # The TCP-DuckDB line-protocol listener ("" unless --tcp-addr is in extra_args); read from the ready file.
    tcp_addr: str = ""
    # True when the server listens with TLS (--tls-cert/--tls-key in extra_args); read from the ready file.
    tls: bool = False
    log_path: Optional[Path] = None

    @property
    def flight_uri(self) -> str:
        return f"{'grpc+tls' if self.tls else 'grpc'}://{self.flight_addr}"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.http_addr}"

    @property
    def pg_host_port(self) -> tuple[str, int]:
        host, port = self.pg_addr.rsplit(":", 1)
        return host, int(port)

    @property
    def tcp_host_port(self) -> tuple[str, int]:
        host, port = self.tcp_addr.rsplit(":", 1)
        return host, int(port)

    @property
    def flight_host_port(self) -> tuple[str, int]:
        host, port = self.flight_addr.rsplit(":", 1)
        return host, int(port)

    def start(self, timeout: float = 120.0) -> "PondServer":
        binary = pond_bin()
        if not binary.exists():
            raise PondStartError(f"pond binary not found at {binary} (set POND_BIN or build with cargo build --release -p pond)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ext_dir = self.ext_dir or extension_dir()
        ready = self.data_dir.parent / f"{self.data_dir.name}.ready.json"
        if ready.exists():
            ready.unlink()
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        args = [
            str(binary), "serve",
            "--data-dir", str(self.data_dir),
            "--flight-addr", "127.0.0.1:0",
            "--http-addr", "127.0.0.1:0",
            "--pg-addr", "127.0.0.1:0",
            "--extension-dir", str(ext_dir),
            "--ready-file", str(ready),
        ]
        if self.extensions is not None:
            args += ["--extensions", self.extensions]
        if self.query_timeout_ms is not None:
            args += ["--query-timeout-ms", str(self.query_timeout_ms)]
        if self.max_sessions is not None:
            args += ["--max-sessions", str(self.max_sessions)]
        args += self.extra_args
        env = dict(os.environ)
        if self.extensions is None:
            env.pop("POND_EXTENSIONS", None)
        env["POND_ADMIN_PASSWORD"] = self.password
        env.setdefault("RUST_LOG", "info")
        env.update(self.extra_env)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PondStartError(f"pond exited with {self.proc.returncode} before ready:\n{self.log_tail()}")
            if ready.exists():
                try:
                    info = json.loads(ready.read_text())
                    self.flight_addr = info["flight"]
                    self.http_addr = info["http"]
                    self.pg_addr = info.get("pg") or ""
                    self.tcp_addr = info.get("tcp") or ""
                    self.tls = bool(info.get("tls", False))
                    return self
                except (json.JSONDecodeError, KeyError):
                    pass  # partially written; retry
            time.sleep(0.05)
        self.kill()
        raise PondStartError(f"pond did not write {ready} within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code (kills and returns -9 after timeout)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "PondServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
