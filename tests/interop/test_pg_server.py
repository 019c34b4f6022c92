"""Self-test of the PostgreSQL fixture (tests/interop/pg_server.py) that LINK DATABASE tests use:
start, scram password auth on TCP, wal_level, settings, roles, restart keeping data, crash."""

from __future__ import annotations

import psycopg
import pytest

from pg_server import SUPERUSER_PASSWORD


def test_logical_server_settings_and_scram(postgres):
    assert postgres.setting("wal_level") == "logical"
    assert int(postgres.setting("max_replication_slots")) >= 10
    assert int(postgres.setting("max_wal_senders")) >= 10
    assert postgres.setting("listen_addresses") == "127.0.0.1"
    assert postgres.setting("unix_socket_directories") == str(postgres.dir)
    assert postgres.execute("SHOW server_version")[0][0].startswith("15.")
    # TCP with the right password works, the URI form too.
    with postgres.connect(tcp=True) as c:
        assert c.execute("SELECT current_user").fetchone()[0] == "postgres"
    with psycopg.connect(postgres.dsn(db="postgres")) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
    # A wrong password is really rejected (scram-sha-256 on host lines).
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres.dsn(password="wrong-password"), connect_timeout=10)
    hba = postgres.execute("SELECT type, auth_method FROM pg_hba_file_rules ORDER BY line_number")
    assert ("host", "scram-sha-256") in hba and ("local", "trust") in hba
    assert all(m == "scram-sha-256" for t, m in hba if t == "host")


def test_role_without_replication(postgres):
    db = postgres.create_database("rolecheck")
    postgres.create_role("plain_user", "plain-Pw-1", databases=(db,))
    with postgres.connect(db, "plain_user", "plain-Pw-1") as c:
        c.execute("CREATE TABLE mine (id int primary key)")
        su, repl = c.execute("SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user").fetchone()
        assert (su, repl) == (False, False)
        assert c.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'mine'").fetchone()[0] == "plain_user"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres.dsn("plain_user", "bad", db), connect_timeout=10)


def test_restart_keeps_data_and_crash_recovers(start_postgres):
    pg = start_postgres("replica")
    assert pg.setting("wal_level") == "replica"
    port = pg.port
    pg.execute("CREATE TABLE keep (id int primary key, v text)")
    pg.execute("INSERT INTO keep SELECT g, 'v' || g FROM generate_series(1, 1000) g")
    pg.restart()
    assert pg.port == port and pg.execute("SELECT count(*) FROM keep")[0][0] == 1000
    pg.execute("INSERT INTO keep VALUES (1001, 'after restart')")
    pg.kill()
    assert not pg.running()
    pg.start()
    assert pg.execute("SELECT count(*) FROM keep")[0][0] == 1001
    pg.restart(wal_level="logical")
    assert pg.setting("wal_level") == "logical"
    # Logical decoding works: a slot with pgoutput can be created and dropped.
    pg.execute("CREATE PUBLICATION p FOR TABLE keep")
    pg.execute("SELECT pg_create_logical_replication_slot('s1', 'pgoutput')")
    assert pg.execute("SELECT slot_name, plugin FROM pg_replication_slots") == [("s1", "pgoutput")]
    pg.execute("SELECT pg_drop_replication_slot('s1')")
