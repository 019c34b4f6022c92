"""Latency of PostgreSQL catalog answers: Pond's pg layer vs a real PostgreSQL.

Usage:
  .venv/bin/python bench/pg_catalog.py --pond 127.0.0.1:5433 --password … [--pg 'host=/tmp port=5432 user=postgres dbname=postgres']

Creates two small tables (primary key, foreign key, index) in a database
`bench_catalog` (Pond) or in the given PostgreSQL database, then reports the
median of: one catalog query on a warm connection, `select 1`, SQLAlchemy's
Inspector (columns, primary key, foreign keys, indexes), and a `psql -c '\\d t'`
process (a new connection each time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

import psycopg
import sqlalchemy as sa


def median_ms(f, n: int) -> float:
    xs = []
    for _ in range(n):
        a = time.perf_counter()
        f()
        xs.append((time.perf_counter() - a) * 1000)
    return statistics.median(xs)


def run(name: str, conninfo: dict, url: sa.URL, psql_args: list[str], env: dict) -> None:
    c = psycopg.connect(**conninfo, autocommit=True)
    for sql in ["DROP TABLE IF EXISTS bench_u", "DROP TABLE IF EXISTS bench_t",
                "CREATE TABLE bench_t (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, price DECIMAL(10,2))",
                "CREATE TABLE bench_u (id INTEGER REFERENCES bench_t(id), note TEXT)", "CREATE INDEX bench_ix ON bench_u(note)"]:
        c.execute(sql)
    print(f"{name}: catalog query (pg_class) {median_ms(lambda: c.execute('select relname from pg_catalog.pg_class').fetchall(), 50):.2f} ms")
    print(f"{name}: select 1 {median_ms(lambda: c.execute('select 1').fetchall(), 50):.2f} ms")
    engine = sa.create_engine(url)

    def inspect():
        i = sa.inspect(engine)
        i.get_columns("bench_t"), i.get_pk_constraint("bench_t"), i.get_foreign_keys("bench_u"), i.get_indexes("bench_u")

    print(f"{name}: SQLAlchemy Inspector (columns, pk, fks, indexes) {median_ms(inspect, 10):.1f} ms")
    psql = lambda: subprocess.run(psql_args + ["-c", "\\d bench_t"], capture_output=True, env=env, check=True)  # noqa: E731
    print(f"{name}: psql \\d (new process and connection) {median_ms(psql, 10):.1f} ms")
    engine.dispose()
    c.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pond", required=True, help="host:port of Pond's PostgreSQL listener")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", default=os.environ.get("PGPASSWORD", ""))
    ap.add_argument("--pg", help="libpq conninfo of a PostgreSQL to compare with (host=… port=… user=… dbname=…)")
    a = ap.parse_args()
    host, port = a.pond.rsplit(":", 1)
    admin = psycopg.connect(host=host, port=int(port), user=a.user, password=a.password, dbname="default", autocommit=True)
    admin.execute("CREATE DATABASE IF NOT EXISTS bench_catalog")
    admin.close()
    info = dict(host=host, port=int(port), user=a.user, password=a.password, dbname="bench_catalog")
    run("pond", info, sa.URL.create("postgresql+psycopg", a.user, a.password, host, int(port), "bench_catalog"),
        ["psql", "-X", "-h", host, "-p", port, "-U", a.user, "-d", "bench_catalog"], dict(os.environ, PGPASSWORD=a.password))
    if a.pg:
        kv = dict(p.split("=", 1) for p in a.pg.split())
        info = dict(host=kv.get("host"), port=int(kv.get("port", 5432)), user=kv.get("user"), dbname=kv.get("dbname"))
        url = sa.URL.create("postgresql+psycopg", kv.get("user"), None, None, None, kv.get("dbname"),
                            query={"host": kv.get("host"), "port": kv.get("port", "5432")})
        run("postgresql", info, url, ["psql", "-X", "-h", kv["host"], "-p", kv.get("port", "5432"), "-U", kv["user"], "-d", kv["dbname"]],
            dict(os.environ))


if __name__ == "__main__":
    main()
