"""Several Pond nodes on one lake: three real `pond serve` processes started with
`--node-id`, one real PostgreSQL 15 holding the DuckLake catalog and the shared
system metadata, and a real S3-compatible server (moto) holding the Parquet
files. Every count is exact, by node and batch: no acknowledged row may be lost
or seen twice, whatever the nodes do at the same time (concurrent flushes,
schema changes from two nodes, kill -9 and restart, compaction while others
write and read). Plain DuckDB then reads the same lake through its ducklake
extension and gets the same answer.
"""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time
import uuid

import pytest
import requests

from helpers import PASSWORD, s3_client
from pond_server import PondServer, extension_file

AUTH = ("admin", PASSWORD)
BASE_NS = 1_760_000_000_000_000_000


def sql(server: PondServer, text: str, auth=AUTH):
    r = requests.post(f"{server.http_url}/api/v1/query", auth=auth, json={"sql": text}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def write(server: PondServer, body: str, db: str = "metrics") -> requests.Response:
    return requests.post(f"{server.http_url}/write?db={db}&precision=ns", auth=AUTH, data=body.encode(), timeout=60)


def batch_lines(node: str, batch: int, n: int) -> str:
    # Times are unique per (node, batch, i): a duplicate would show up in the counts.
    node_no = int(node[1:])
    return "\n".join(
        f"cpu,node={node},host=h{i % 3} batch={batch}i,i={i}i,v={i * 0.25} {BASE_NS + node_no * 10**15 + batch * 10**9 + i * 1000}"
        for i in range(n)
    )


def wait_for(what: str, check, timeout: float = 20.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = check()
            if last:
                return last
        except AssertionError as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"{what}: not true within {timeout}s (last: {last})")


class Lake:
    """The shared parts: a PostgreSQL database for the catalog and an S3 prefix for the files."""

    def __init__(self, pg, moto_url: str):
        self.pg = pg
        self.moto = moto_url
        self.db = f"lake_{uuid.uuid4().hex[:8]}"
        self.bucket = f"pond-{uuid.uuid4().hex[:8]}"
        with pg.connect() as c:
            c.execute(f"CREATE DATABASE {self.db}")
        s3_client(moto_url).create_bucket(Bucket=self.bucket)

    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.pg.port} dbname={self.db} user=postgres"

    def node(self, tmp_path, ext_dir, name: str, flush_rows: int = 400, flush_ms: int = 300, extra: tuple = (),
             data_dir=None) -> PondServer:
        host = self.moto.removeprefix("http://")
        args = [
            "--node-id", name,
            "--lake-catalog", self.conninfo(),
            "--lake-data-path", f"s3://{self.bucket}/lake",
            "--lake-s3-endpoint", host, "--lake-s3-region", "us-east-1", "--lake-s3-url-style", "path", "--lake-s3-use-ssl", "false",
            "--ingest-flush-rows", str(flush_rows), "--ingest-flush-interval-ms", str(flush_ms), *extra,
            "--lake-compact-interval-secs", "0", "--lake-cleanup-grace-secs", "30",
        ]
        env = {
            "POND_LAKE_S3_ACCESS_KEY_ID": "test-key",
            "POND_LAKE_S3_SECRET_ACCESS_KEY": "test-secret",
            "POND_LAKE_CATALOG_PASSWORD": self.pg.password,
            # Every node unseals the shared secrets with the same key.
            "POND_MASTER_KEY": "0" * 64,
        }
        return PondServer(data_dir=data_dir or tmp_path / name, ext_dir=ext_dir, password=PASSWORD, extra_args=args, extra_env=env).start()


@pytest.fixture
def lake(postgres, moto):
    return Lake(postgres, moto)


@pytest.fixture
def nodes(lake, tmp_path, ext_dir):
    started = [lake.node(tmp_path, ext_dir, n) for n in ("n1", "n2", "n3")]
    yield started
    for s in started:
        s.stop()


def flush_all(server: PondServer) -> None:
    r = requests.post(f"{server.http_url}/api/v1/lake/flush?nodes=all", auth=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["nodes_pending"] == [], r.text


def counts(server: PondServer):
    return sql(server, "SELECT node, count(*), count(DISTINCT (batch, i)), sum(i) FROM metrics.cpu GROUP BY node ORDER BY node")


def test_three_nodes_ingest_at_once_and_every_node_reads_every_row_once(nodes, lake):
    batches, per_batch = 25, 120

    def ingest(server: PondServer, name: str):
        for b in range(batches):
            r = write(server, batch_lines(name, b, per_batch))
            assert r.status_code == 204, r.text

    # The database is made once (shared metadata); then all three write at once,
    # and flush concurrently into the same lake tables (flush every 400 rows).
    assert write(nodes[0], batch_lines("n1", 999, 1)).status_code == 204
    wait_for("n2 and n3 see database metrics", lambda: all(
        any(d["name"] == "metrics" for d in requests.get(f"{s.http_url}/api/v1/databases", auth=AUTH, timeout=10).json()["databases"])
        for s in nodes[1:]))
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        for f in [pool.submit(ingest, s, f"n{k + 1}") for k, s in enumerate(nodes)]:
            f.result()
    flush_all(nodes[1])
    expected = [[f"n{k}", batches * per_batch + (k == 1), batches * per_batch + (k == 1), batches * per_batch * (per_batch - 1) // 2]
                for k in (1, 2, 3)]
    for s in nodes:
        assert counts(s) == expected, s.http_url
    # Every node's rows are in the shared lake now: the Parquet files are on S3.
    keys = [o["Key"] for o in s3_client(lake.moto).list_objects_v2(Bucket=lake.bucket, Prefix="lake/").get("Contents", [])]
    assert sum(k.endswith(".parquet") for k in keys) >= 3, keys
    # The cluster listing shows the three nodes, up.
    r = requests.get(f"{nodes[2].http_url}/api/v1/cluster", auth=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    listed = r.json()
    assert listed["node"] == "n3"
    assert [(n["node"], n["up"], n["this_node"]) for n in listed["nodes"]] == [("n1", True, False), ("n2", True, False), ("n3", True, True)]
    # The same over SQL, for superusers only.
    shown = sql(nodes[0], "SHOW NODES")
    assert [(row[0], row[1], row[2]) for row in shown] == [("n1", True, True), ("n2", False, True), ("n3", False, True)], shown
    wait_for("heartbeats carry every node's flushed rows",
             lambda: sum(row[6] for row in sql(nodes[0], "SHOW NODES")) >= 3 * batches * per_batch)
    sql(nodes[0], "CREATE USER dave WITH PASSWORD 'dave-pass-1234'")
    r = requests.post(f"{nodes[0].http_url}/api/v1/query", auth=("dave", "dave-pass-1234"), json={"sql": "SHOW NODES"}, timeout=30)
    assert r.status_code == 403 and "superusers" in r.text, r.text
    # Nothing secret in any log or listing.
    assert lake.pg.password not in r.text
    for s in nodes:
        log = s.log_path.read_text(errors="replace")
        assert lake.pg.password not in log and "test-secret" not in log


def test_users_grants_and_databases_are_shared(nodes):
    n1, n2, n3 = nodes
    sql(n1, "CREATE USER carol WITH PASSWORD 'carol-pass-123'")
    sql(n1, "CREATE DATABASE shop")
    # A measurement is shared (the lake); ordinary tables are per node.
    assert write(n1, f"sales,store=a amount=5i {BASE_NS}", db="shop").status_code == 204
    flush_all(n1)
    sql(n1, "GRANT READ ON DATABASE shop TO carol")
    carol = ("carol", "carol-pass-123")

    def carol_reads(status: int):
        def check():
            answers = [requests.post(f"{s.http_url}/api/v1/query", auth=carol, json={"sql": "SELECT sum(amount) FROM shop.sales"}, timeout=10)
                       for s in nodes]
            assert all(a.status_code == status for a in answers), [(a.status_code, a.text[:200]) for a in answers]
            return True
        return check

    # n2 and n3 know carol, her grant, database shop and the measurement
    # another node made, within a few ticks of their cluster loop.
    wait_for("carol reads shop.sales on every node", carol_reads(200))
    assert sql(n3, "SELECT sum(amount) FROM shop.sales") == [[5]]
    # Revoked on n2: every node refuses her after the next tick.
    sql(n2, "REVOKE READ ON DATABASE shop FROM carol")
    wait_for("the revoke reaches every node", carol_reads(403))
    # Two nodes creating the same database at once: one wins, the other is told.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda s: requests.post(f"{s.http_url}/api/v1/query", auth=AUTH,
                                                        json={"sql": "CREATE DATABASE twin"}, timeout=30), [n2, n3]))
    assert sorted(a.status_code for a in answers)[0] == 200, [a.text for a in answers]
    assert sum(a.status_code == 200 for a in answers) == 1, [a.text for a in answers]
    wait_for("n1 lists twin once", lambda: [d["name"] for d in requests.get(
        f"{n1.http_url}/api/v1/databases", auth=AUTH, timeout=10).json()["databases"]].count("twin") == 1)
    # Dropped on n3: gone from n1 too.
    sql(n3, "DROP DATABASE twin")
    wait_for("n1 forgets twin", lambda: "twin" not in [d["name"] for d in requests.get(
        f"{n1.http_url}/api/v1/databases", auth=AUTH, timeout=10).json()["databases"]])


def test_schema_changes_from_two_nodes_at_once(nodes):
    n1, n2, _ = nodes
    assert write(n1, f"evo,src=n1 a=1i {BASE_NS}").status_code == 204
    flush_all(n1)
    wait_for("n2 has the evo view", lambda: sql(n2, "SELECT count(*) FROM metrics.evo")[0][0] == 1)
    # At the same moment: n1 adds field x as a float and b; n2 adds x as a string and c.
    bodies = {
        "n1": "\n".join(f"evo,src=n1 a={i}i,x={i}.5,b={i}i {BASE_NS + 10 + i}" for i in range(50)),
        "n2": "\n".join(f'evo,src=n2 a={i}i,x="s{i}",c={i}i {BASE_NS + 100 + i}' for i in range(50)),
    }
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        r1, r2 = pool.map(lambda p: write(p[0], p[1]), [(n1, bodies["n1"]), (n2, bodies["n2"])])
    # The catalog gave x one type: whichever node lost has its lines with x
    # rejected as a type conflict (400, naming the column), the rest of its batch kept.
    results = {"n1": r1, "n2": r2}
    losers = [k for k, r in results.items() if r.status_code != 204]
    assert len(losers) == 1, {k: (r.status_code, r.text[:300]) for k, r in results.items()}
    assert "x" in results[losers[0]].text and "type" in results[losers[0]].text, results[losers[0]].text
    flush_all(n2)
    if losers == ["n2"]:
        want = [["n1", 51, 50, 0, 50, "DOUBLE"]]  # n2's lines all carried x as a string
    else:
        want = [["n1", 1, 0, 0, 0, "VARCHAR"], ["n2", 50, 0, 50, 50, "VARCHAR"]]
    for s in nodes:
        # Every node reads every column either node added, x with the type the catalog chose.
        got = sql(s, "SELECT src, count(*), count(b), count(c), count(x), any_value(typeof(x)) FROM metrics.evo GROUP BY src ORDER BY src")
        assert got == want, (s.http_url, got)


def test_a_node_killed_mid_ingest_replays_its_log_into_the_shared_lake_once(lake, tmp_path, ext_dir):
    n1 = lake.node(tmp_path, ext_dir, "n1", flush_rows=10_000_000)
    n2 = lake.node(tmp_path, ext_dir, "n2", flush_rows=700)
    try:
        assert write(n1, batch_lines("n1", 0, 100)).status_code == 204
        acked: list[int] = []
        stop = threading.Event()

        def writer():
            b = 0
            while not stop.is_set():
                try:
                    r = write(n2, batch_lines("n2", b, 100))
                except requests.RequestException:
                    return  # the node died under this request: not acknowledged
                if r.status_code == 204:
                    acked.append(b)
                b += 1

        t = threading.Thread(target=writer)
        t.start()
        # n2 dies with writes in flight, some of its rows flushed (every 700) and some only in its log.
        wait_for("n2 acknowledged 20 batches", lambda: len(acked) >= 20)
        n2.proc.send_signal(signal.SIGKILL)
        n2.proc.wait()
        stop.set()
        t.join()
        n2b = PondServer(data_dir=n2.data_dir, ext_dir=ext_dir, password=PASSWORD, extra_args=n2.extra_args, extra_env=n2.extra_env).start()
        try:
            flush_all(n1)
            for s in (n1, n2b):
                per_batch = dict(map(tuple, sql(s, "SELECT batch, count(*) FROM metrics.cpu WHERE node = 'n2' GROUP BY batch")))
                # Every acknowledged batch exactly once; the one in flight at the kill wholly or not at all.
                assert all(per_batch.get(b) == 100 for b in acked), (s.http_url, acked, per_batch)
                assert set(per_batch) - set(acked) <= {max(acked) + 1} and all(v == 100 for v in per_batch.values()), per_batch
                assert sql(s, "SELECT count(*) FROM metrics.cpu WHERE node = 'n1'") == [[100]]
            before = sql(n2b, "SELECT count(*), sum(i) FROM metrics.cpu")
            # A second restart replays nothing again.
            n2b.stop()
            n2b = PondServer(data_dir=n2.data_dir, ext_dir=ext_dir, password=PASSWORD, extra_args=n2.extra_args,
                             extra_env=n2.extra_env).start()
            assert sql(n2b, "SELECT count(*), sum(i) FROM metrics.cpu") == before
        finally:
            n2b.stop()
    finally:
        n1.stop()


def test_a_node_whose_disk_is_lost_is_replaced_from_its_log_on_shared_storage(lake, tmp_path, ext_dir):
    """The window a lost disk opens is what a node acknowledged but had not
    flushed. With --ingest-wal-dir on storage that outlives the machine (here a
    directory outside the node's data dir), a replacement node with the same
    --node-id and a brand-new data dir replays that log into the shared lake:
    nothing acknowledged is lost. The log takes one process at a time."""
    from pond_server import PondStartError

    wal = tmp_path / "shared-storage" / "n2-wal"
    n1 = lake.node(tmp_path, ext_dir, "n1")
    # Nothing of n2's is flushed: no row threshold, an hour's interval.
    n2 = lake.node(tmp_path, ext_dir, "n2", flush_rows=10_000_000, flush_ms=3_600_000, extra=("--ingest-wal-dir", str(wal)))
    try:
        for b in range(5):
            assert write(n2, batch_lines("n2", b, 100)).status_code == 204
        assert sql(n2, "SELECT count(*) FROM metrics.cpu WHERE node = 'n2'") == [[500]]
        # Acknowledged on n2 only: the other node cannot see it, the lake does not hold it.
        wait_for("n1 knows the database", lambda: sql(n1, "SELECT count(*) FROM metrics.cpu WHERE node = 'n2'") == [[0]])
        # A second process on the same log is refused, naming the directory.
        try:
            lake.node(tmp_path, ext_dir, "n2", flush_rows=10_000_000, extra=("--ingest-wal-dir", str(wal)),
                      data_dir=tmp_path / "n2-intruder")
            raise AssertionError("two processes opened one ingest log")
        except PondStartError as e:
            assert "in use by another Pond process" in str(e) and str(wal) in str(e), str(e)
        # The machine dies and its disk with it.
        n2.proc.send_signal(signal.SIGKILL)
        n2.proc.wait()
        import shutil
        shutil.rmtree(n2.data_dir)
        n2b = lake.node(tmp_path, ext_dir, "n2", flush_rows=10_000_000, extra=("--ingest-wal-dir", str(wal)),
                        data_dir=tmp_path / "n2-replacement")
        try:
            flush_all(n1)
            for s in (n1, n2b):
                assert sql(s, "SELECT batch, count(*), count(DISTINCT i) FROM metrics.cpu WHERE node = 'n2' GROUP BY batch "
                              "ORDER BY batch") == [[b, 100, 100] for b in range(5)], s.http_url
        finally:
            n2b.stop()
    finally:
        n1.stop()
        if n2.proc.poll() is None:
            n2.stop()


def test_three_nodes_create_the_same_measurement_at_once(nodes):
    # The database exists; the measurement does not: all three create its lake
    # table, and add their own columns, in the same moment.
    assert write(nodes[0], f"seed v=1i {BASE_NS}").status_code == 204

    def burst(k: int):
        s = nodes[k]
        out = []
        for b in range(5):
            body = "\n".join(f"fresh,node=n{k + 1} v={i}i,f{k + 1}={i}i {BASE_NS + k * 10**12 + b * 10**6 + i}" for i in range(40))
            out.append(write(s, body).status_code)
        return out

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(burst, range(3)))
    assert all(c == 204 for cs in codes for c in cs), codes
    flush_all(nodes[0])
    for s in nodes:
        got = sql(s, "SELECT node, count(*), count(f1), count(f2), count(f3) FROM metrics.fresh GROUP BY node ORDER BY node")
        assert got == [["n1", 200, 200, 0, 0], ["n2", 200, 0, 200, 0], ["n3", 200, 0, 0, 200]], (s.http_url, got)


def test_compaction_on_one_node_while_the_others_write_and_read(nodes):
    n1, n2, n3 = nodes
    for b in range(6):
        for k, s in enumerate(nodes):
            assert write(s, batch_lines(f"n{k + 1}", b, 150)).status_code == 204
        flush_all(n1)
    errors: list[str] = []
    stop = time.time() + 6

    def writer(s: PondServer, name: str):
        b = 100
        while time.time() < stop:
            r = write(s, batch_lines(name, b, 50))
            if r.status_code != 204:
                errors.append(r.text)
            b += 1
        return b - 100

    def reader(s: PondServer):
        while time.time() < stop:
            r = requests.post(f"{s.http_url}/api/v1/query", auth=AUTH, json={"sql": "SELECT count(*), sum(i) FROM metrics.cpu"}, timeout=60)
            if r.status_code != 200:
                errors.append(r.text)

    # A long query on n2 reads the files compaction is about to replace: they
    # are deleted only after the grace period (30 s here), so it still finds them.
    slow_sql = "SELECT count(*), sum(c.i) FROM metrics.cpu c, range(100000) r WHERE c.node = 'n1'"
    with concurrent.futures.ThreadPoolExecutor(7) as pool:
        slow = pool.submit(lambda: requests.post(f"{n2.http_url}/api/v1/query", auth=AUTH, json={"sql": slow_sql}, timeout=300))
        w2, w3 = pool.submit(writer, n2, "n2"), pool.submit(writer, n3, "n3")
        readers = [pool.submit(reader, s) for s in (n2, n3)]
        compactions = []
        while time.time() < stop:
            r = requests.post(f"{n1.http_url}/api/v1/lake/compact", auth=AUTH, timeout=120)
            compactions.append(r.status_code)
            if r.status_code != 200:
                errors.append(r.text)
        more2, more3 = w2.result(), w3.result()
        slow_answer = slow.result()
        assert slow_answer.status_code == 200, slow_answer.text
        assert slow_answer.json()["data"] == [[900 * 100000, 100000 * 6 * 150 * 149 // 2]]
        for f in readers:
            f.result()
    assert not errors, errors[:3]
    assert compactions and all(c == 200 for c in compactions)
    flush_all(n3)
    want = [["n1", 900, 900, 6 * 150 * 149 // 2], ["n2", 900 + more2 * 50, 900 + more2 * 50, 6 * 150 * 149 // 2 + more2 * 50 * 49 // 2],
            ["n3", 900 + more3 * 50, 900 + more3 * 50, 6 * 150 * 149 // 2 + more3 * 50 * 49 // 2]]
    for s in nodes:
        assert counts(s) == want, s.http_url


def test_plain_duckdb_reads_the_shared_lake(nodes, lake, ext_dir):
    import duckdb

    for k, s in enumerate(nodes):
        assert write(s, batch_lines(f"n{k + 1}", 0, 200)).status_code == 204
    flush_all(nodes[0])
    pond_answer = sql(nodes[0], "SELECT count(*), sum(i), sum(v) FROM metrics.cpu")[0]
    con = duckdb.connect()
    for ext in ("ducklake", "postgres_scanner", "httpfs"):
        con.execute(f"LOAD '{extension_file(ext, ext_dir)}'")
    host = lake.moto.removeprefix("http://")
    con.execute(f"CREATE SECRET (TYPE s3, KEY_ID 'test-key', SECRET 'test-secret', ENDPOINT '{host}', URL_STYLE 'path', "
                f"USE_SSL false, REGION 'us-east-1')")
    con.execute(f"ATTACH 'ducklake:postgres:{lake.conninfo()} password={lake.pg.password}' AS l (READ_ONLY)")
    schema = con.execute("SELECT schema_name FROM duckdb_tables() WHERE database_name = 'l' AND table_name = 'cpu'").fetchone()[0]
    got = con.execute(f'SELECT count(*), sum(i), sum(v) FROM l."{schema}".cpu').fetchone()
    assert list(got) == pond_answer, (got, pond_answer)


def test_maintenance_runs_on_one_node_at_a_time(nodes, lake):
    n1, n2, _ = nodes
    for b in range(3):
        assert write(n1, batch_lines("n1", b, 100)).status_code == 204
        flush_all(n1)
    # Whoever holds the cluster's maintenance lock (here: this test, as another
    # node would) makes every other node skip its compaction round.
    key = 0x706F_6E64_0003
    with lake.pg.connect(db=lake.db) as holder:
        assert holder.execute(f"SELECT pg_try_advisory_lock({key})").fetchone()[0] is True
        for s in (n1, n2):
            r = requests.post(f"{s.http_url}/api/v1/lake/compact", auth=AUTH, timeout=120)
            assert r.status_code == 200 and r.json()["compacted"] == [], r.text
        assert "another node is compacting" in n1.log_path.read_text(errors="replace")
        holder.execute(f"SELECT pg_advisory_unlock({key})")
    r = requests.post(f"{n2.http_url}/api/v1/lake/compact", auth=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    done = [c for c in r.json()["compacted"] if c["database"] == "metrics"]
    assert done and done[0]["files_before"] >= 3 and done[0]["files_after"] < done[0]["files_before"], r.text
    assert counts(n1) == [["n1", 300, 300, 3 * 4950]]
