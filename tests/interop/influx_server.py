"""A real InfluxDB 1.x (`influxd`, Debian package `influxdb`, 1.6.7 here) for
the import-job tests: its own config with the data, meta and WAL directories
in a temp dir and both listeners (HTTP API, RPC) on free loopback ports.

    server = InfluxServer().start()
    server.write("telegraf", "cpu,host=a value=1.5 1700000000000000000")
    server.url  # http://127.0.0.1:<port>
    server.cleanup()

`scripts/setup.sh` installs the package when it is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import requests

from pg_server import free_port


class InfluxStartError(RuntimeError):
    pass


def influxd_bin() -> Path:
    found = os.environ.get("POND_INFLUXD") or shutil.which("influxd") or "/usr/bin/influxd"
    p = Path(found)
    if not p.exists():
        raise InfluxStartError("influxd (InfluxDB 1.x) not found: run `bash scripts/setup.sh` "
                               "(installs the Debian package influxdb) or `sudo apt-get install -y influxdb`")
    return p


class InfluxServer:
    def __init__(self, base_dir: Optional[Path] = None):
        self.bin = influxd_bin()
        self.dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="pond-influx-"))
        self.port = free_port()
        self.rpc_port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.dir / "influxd.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> str:
        text = subprocess.run([str(self.bin), "config"], capture_output=True, text=True, check=True).stdout
        text = text.replace("/var/lib/influxdb", str(self.dir))
        # The RPC listener (backup/restore) and the HTTP API, on loopback only.
        text = re.sub(r'^bind-address = ".*"', f'bind-address = "127.0.0.1:{self.rpc_port}"', text, count=1, flags=re.M)
        text = re.sub(r'(\[http\][^\[]*?)bind-address = ".*?"', rf'\1bind-address = "127.0.0.1:{self.port}"', text, count=1, flags=re.S)
        # Quiet and small: no usage reports, no internal monitoring database.
        text = text.replace("reporting-disabled = false", "reporting-disabled = true")
        text = re.sub(r'(\[monitor\][^\[]*?)store-enabled = true', r'\1store-enabled = false', text, count=1, flags=re.S)
        return text

    def start(self, timeout: float = 60) -> "InfluxServer":
        conf = self.dir / "influxdb.conf"
        conf.write_text(self._config())
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(self.bin), "-config", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise InfluxStartError(f"influxd exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/ping", timeout=1).status_code == 204:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise InfluxStartError(f"influxd did not answer /ping within {timeout}s:\n{self.log_tail()}")

    def query(self, q: str, db: Optional[str] = None) -> dict:
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        r = requests.post(f"{self.url}/query", params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')

    def write(self, db: str, lines: str) -> None:
        r = requests.post(f"{self.url}/write", params={"db": db, "precision": "ns"}, data=lines.encode(), timeout=60)
        if r.status_code != 204:
            raise RuntimeError(f"influx write: {r.status_code} {r.text}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
