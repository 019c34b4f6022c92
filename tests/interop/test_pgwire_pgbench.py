"""pgbench (PostgreSQL 15's client) against Pond with custom scripts: point
selects by a random id and single-row inserts, in the simple, extended and
prepared protocols. pgbench's own `-i` uses PostgreSQL-only DDL, so the tables
are created here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import psycopg
import pytest

from helpers import PASSWORD

PGBENCH = shutil.which("pgbench")

SELECT = "\\set aid random(1, 10000)\nSELECT abalance FROM {accts} WHERE aid = :aid;\n"
INSERT = ("\\set aid random(1, 10000)\n\\set delta random(-5000, 5000)\n"
          "INSERT INTO {hist} (tid, aid, delta, mtime) VALUES (1, :aid, :delta, CURRENT_TIMESTAMP);\n")


@pytest.mark.skipif(PGBENCH is None, reason="pgbench is not installed (apt-get install postgresql-client)")
@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_point_select_and_insert(pond, uname, tmp_path, mode):
    accts, hist = uname("pgb_accts"), uname("pgb_hist")
    host, port = pond.pg_host_port
    with psycopg.connect(host=host, port=port, user="admin", password=PASSWORD, dbname="default", autocommit=True) as pg:
        pg.execute(f"CREATE TABLE {accts} (aid INTEGER PRIMARY KEY, bid INTEGER, abalance INTEGER, filler VARCHAR)")
        pg.execute(f"INSERT INTO {accts} SELECT range, range % 10, range * 2, 'x' FROM range(1, 10001)")
        pg.execute(f"CREATE TABLE {hist} (tid INTEGER, aid INTEGER, delta INTEGER, mtime TIMESTAMP)")
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        clients, per_client = 4, 50
        for name, script in [("select", SELECT), ("insert", INSERT)]:
            f = tmp_path / f"{name}.sql"
            f.write_text(script.format(accts=accts, hist=hist))
            r = subprocess.run(["pgbench", "-h", host, "-p", str(port), "-U", "admin", "-n", "-f", str(f),
                                "-c", str(clients), "-t", str(per_client), "-M", mode, "default"],
                               capture_output=True, text=True, env=env, timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "number of failed transactions: 0 " in r.stdout, r.stdout
            done = re.search(r"number of transactions actually processed: (\d+)", r.stdout)
            assert done and int(done.group(1)) == clients * per_client, r.stdout
        count, lo, hi = pg.execute(f"SELECT count(*), min(aid), max(aid) FROM {hist}").fetchone()
        assert count == clients * per_client and 1 <= lo <= hi <= 10000
