"""A real PostgreSQL 15 for tests and benchmarks (the source of `LINK DATABASE`).

`PostgresServer` runs a throwaway cluster from Debian's PostgreSQL 15 binaries
(`/usr/lib/postgresql/15/bin`, else `pg_config --bindir`) in a temporary directory:

- listens on 127.0.0.1 on a free port, unix socket in its own directory;
- TCP (host and replication lines) needs a password, `scram-sha-256`, so a wrong
  password is really rejected; the unix socket is `trust` (the fixture's own admin use);
- superuser `postgres` with a known password (`SUPERUSER_PASSWORD`);
- `wal_level` logical or replica, `max_replication_slots`/`max_wal_senders` 20;
- start / stop / restart (data kept) / kill (an immediate shutdown: no checkpoint,
  crash recovery at the next start).

As root, initdb and pg_ctl run as the `postgres` OS user (`runuser -u postgres`)
on a directory it owns; as any other user they run directly.

Nothing here imports pytest, so benchmarks use it as a plain module.

    python tests/interop/pg_server.py serve [--wal-level replica]   # run one until Ctrl-C
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional
from urllib.parse import quote

SUPERUSER = "postgres"
# Distinctive on purpose: tests grep Pond's files and logs for it.
SUPERUSER_PASSWORD = "pgSuper-7Qz41-canary"
PG_MAJOR = "15"


class PostgresStartError(RuntimeError):
    pass


def pg_bindir() -> Path:
    """Where PostgreSQL 15's server binaries are; raises PostgresStartError with what to do if absent."""
    env = os.environ.get("POND_PG_BINDIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin"))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
            if out:
                candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    for c in candidates:
        if (c / "postgres").exists() and (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise PostgresStartError(
        "PostgreSQL 15 server binaries (postgres, initdb, pg_ctl) not found in "
        + ", ".join(str(c) for c in candidates)
        + ": run `bash scripts/setup.sh` (installs the Debian packages postgresql-15 and postgresql-client-15) "
        "or `sudo apt-get install -y postgresql-15 postgresql-client-15`, or set POND_PG_BINDIR")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PostgresServer:
    """One throwaway PostgreSQL 15 cluster."""

    def __init__(self, wal_level: str = "logical", *, port: Optional[int] = None,
                 password: str = SUPERUSER_PASSWORD, base_dir: Optional[Path] = None,
                 fsync: bool = False, settings: Optional[dict[str, str]] = None):
        if wal_level not in ("logical", "replica", "minimal"):
            raise ValueError(f"wal_level {wal_level!r}")
        self.bindir = pg_bindir()
        self.wal_level = wal_level
        self.password = password
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.fsync = fsync
        self.settings = dict(settings or {})
        # Outside pytest's tmp dirs: /tmp/pytest-of-root is 0700, so `postgres` could not enter it.
        self.dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="pond-pg-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresStartError("running as root but there is no `postgres` OS user to run PostgreSQL as "
                                         "(the Debian package postgresql-15 creates it)")
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
            os.chown(self.dir, self._uid, self._gid)
        os.chmod(self.dir, 0o700 if not self._as_root else 0o755)

    # -- process control ---------------------------------------------------------------

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise PostgresStartError(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{self.log_tail()}")
        return r

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text)
        if self._as_root:
            os.chown(path, self._uid, self._gid)
        os.chmod(path, 0o600)

    def _conf(self) -> str:
        s = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": _quote_literal(str(self.dir)),
            "wal_level": self.wal_level,
            "max_replication_slots": "20",
            "max_wal_senders": "20",
            "max_connections": "100",
            "password_encryption": "'scram-sha-256'",
            "fsync": "on" if self.fsync else "off",
            "full_page_writes": "on",
            "log_min_messages": "warning",
            "log_connections": "off",
        }
        s.update(self.settings)
        return "".join(f"{k} = {v}\n" for k, v in s.items())

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self) -> None:
        pwfile = self.dir / "pwfile"
        self._write(pwfile, self.password + "\n")
        try:
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                      "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        finally:
            pwfile.unlink(missing_ok=True)
        self._write(self.data / "pg_hba.conf", (
            "# written by tests/interop/pg_server.py\n"
            "local   all          all                 trust\n"
            "local   replication  all                 trust\n"
            "host    all          all   127.0.0.1/32  scram-sha-256\n"
            "host    replication  all   127.0.0.1/32  scram-sha-256\n"
            "host    all          all   ::1/128       scram-sha-256\n"
            "host    replication  all   ::1/128       scram-sha-256\n"))
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\ninclude = 'pond_test.conf'\n")

    def start(self, timeout: float = 60) -> "PostgresServer":
        if not self.initialized():
            self.init()
        self._write(self.data / "pond_test.conf", self._conf())
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-w",
                  "-t", str(int(timeout)), "start", timeout=timeout + 30)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(**self.admin_kwargs(), connect_timeout=5) as c:
                    c.execute("SELECT 1")
                return
            except psycopg.Error as e:
                last = e
                time.sleep(0.1)
        raise PostgresStartError(f"PostgreSQL on port {self.port} not answering: {last}\n{self.log_tail()}")

    def stop(self, mode: str = "fast", timeout: int = 60) -> None:
        """pg_ctl stop; raises PostgresStartError if the server is still up after `timeout` seconds."""
        if not self.running():
            return
        r = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", str(timeout), "stop",
                      check=False, timeout=timeout + 30)
        if r.returncode != 0 and self.running():
            raise PostgresStartError(
                f"PostgreSQL did not stop within {timeout}s (pg_ctl stop -m {mode}). A fast shutdown waits until every "
                "WAL sender has sent all WAL and its client has confirmed it: a logical replication client that does "
                f"not answer the server's keepalives holds it until wal_sender_timeout.\n{r.stdout}{r.stderr}\n{self.log_tail()}")

    def restart(self, *, wal_level: Optional[str] = None, mode: str = "fast") -> "PostgresServer":
        """Stop and start again on the same port with the same data (optionally another wal_level)."""
        self.stop(mode)
        if wal_level:
            self.wal_level = wal_level
        return self.start()

    def kill(self) -> None:
        """A crash: immediate shutdown (SIGQUIT to every process, no checkpoint); start() then replays WAL."""
        self.stop("immediate")

    def pid(self) -> Optional[int]:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def cleanup(self) -> None:
        try:
            self.stop("immediate")
        except PostgresStartError:
            pid = self.pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # -- clients -----------------------------------------------------------------------

    def dsn(self, user: str = SUPERUSER, password: Optional[str] = None, db: str = "postgres",
            host: Optional[str] = None, port: Optional[int] = None) -> str:
        """A `postgresql://user:password@127.0.0.1:port/db` URI (TCP: the password is checked)."""
        pw = self.password if password is None and user == SUPERUSER else password
        auth = quote(user, safe="")
        if pw is not None:
            auth += ":" + quote(pw, safe="")
        return f"postgresql://{auth}@{host or self.host}:{port or self.port}/{quote(db, safe='')}"

    def admin_kwargs(self, db: str = "postgres", user: str = SUPERUSER) -> dict:
        """Connection keywords for the unix socket (trust): the fixture's own admin use."""
        return {"host": str(self.dir), "port": self.port, "user": user, "dbname": db}

    def connect(self, db: str = "postgres", user: str = SUPERUSER, password: Optional[str] = None, *, tcp: bool = False):
        """A psycopg connection in autocommit; over the unix socket (trust) unless tcp=True or a password is given."""
        import psycopg

        if tcp or password is not None:
            pw = password if password is not None else (self.password if user == SUPERUSER else None)
            return psycopg.connect(host=self.host, port=self.port, user=user, password=pw, dbname=db,
                                   autocommit=True, connect_timeout=10)
        return psycopg.connect(**self.admin_kwargs(db, user), autocommit=True, connect_timeout=10)

    def execute(self, sql: str, db: str = "postgres", params=None) -> list[tuple]:
        """Run one statement as the superuser; the rows (empty when it returns none)."""
        with self.connect(db) as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str, owner: str = SUPERUSER) -> str:
        self.execute(f"CREATE DATABASE {_quote_ident(name)} OWNER {_quote_ident(owner)}")
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def create_role(self, name: str, password: str, *, replication: bool = False, superuser: bool = False,
                    databases: tuple[str, ...] = ()) -> str:
        """A login role (NOSUPERUSER NOREPLICATION unless asked) with a scram password; for each of
        `databases`: CONNECT and CREATE on it and ALL on its schema public (so it can own tables there)."""
        attrs = ["LOGIN", "SUPERUSER" if superuser else "NOSUPERUSER", "REPLICATION" if replication else "NOREPLICATION"]
        self.execute(f"CREATE ROLE {_quote_ident(name)} {' '.join(attrs)} PASSWORD {_quote_literal(password)}")
        for db in databases:
            self.execute(f"GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {_quote_ident(db)} TO {_quote_ident(name)}")
            self.execute(f"GRANT ALL ON SCHEMA public TO {_quote_ident(name)}", db=db)
        return name

    def setting(self, name: str) -> str:
        return self.execute("SELECT current_setting(%s)", params=(name,))[0][0]


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--wal-level", default="logical")
    s.add_argument("--port", type=int)
    args = ap.parse_args()
    if args.cmd == "serve":
        pg = PostgresServer(args.wal_level, port=args.port).start()
        print(f"PostgreSQL 15 on {pg.dsn()} (socket dir {pg.dir}); Ctrl-C stops it", flush=True)
        try:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        finally:
            pg.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
