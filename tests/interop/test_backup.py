"""Backups through the real command line: `pond backup` against a running server,
`pond restore --list/--check`, `pond restore` into a new data dir, the restored
server answering as the original did, and damaged backups refused with exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import requests

from helpers import PASSWORD, adbc_connect, query_rows, run, s3_client
from pond_server import PondServer, pond_bin


def cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e["POND_PASSWORD"] = PASSWORD
    e.update(env or {})
    p = subprocess.run([str(pond_bin()), *args], capture_output=True, text=True, env=e, timeout=300)
    if check:
        assert p.returncode == 0, f"pond {' '.join(args)} exited {p.returncode}: {p.stdout}{p.stderr}"
    return p


def write_lines(server: PondServer, db: str, body: str) -> None:
    r = requests.post(f"{server.http_url}/write", params={"db": db}, data=body, auth=("admin", PASSWORD), timeout=30)
    assert r.status_code == 204, r.text


def test_cli_backup_and_restore_round_trip(tmp_path, ext_dir):
    target = tmp_path / "backups"
    s1 = PondServer(data_dir=tmp_path / "data", ext_dir=ext_dir, password=PASSWORD,
                    extra_args=["--backup-to", str(target), "--ingest-flush-rows", "100"]).start()
    try:
        c = adbc_connect(s1)
        run(c, "CREATE DATABASE sales")
        run(c, "CREATE TABLE sales.main.orders AS SELECT range AS id, range % 7 AS store, range * 0.5 AS amount FROM range(20000)")
        run(c, "CREATE USER dana PASSWORD 'dana-pw-1234'")
        run(c, "GRANT SELECT ON TABLE sales.main.orders TO dana")
        c.close()
        write_lines(s1, "metrics", "".join(f"cpu,host=h{i % 4} usage={i}i {1_700_000_000 + i}000000000\n" for i in range(1000)))

        out = cli("backup", "--url", s1.http_url).stdout
        assert "backup " in out and str(target) in out, out
        # Nothing changed: the second backup reuses the lake's files.
        second = cli("backup", "--url", s1.http_url).stdout
        assert "bytes already there" in second

        listing = cli("restore", "--from", str(target), "--list").stdout.strip().splitlines()
        assert len(listing) == 2 and "sales" in listing[0], listing
        first_id = listing[0].split()[0]
        assert "is intact" in cli("restore", "--from", str(target), "--backup", first_id, "--check").stdout

        c = adbc_connect(s1)
        expected_orders = query_rows(c, "SELECT store, count(*), sum(amount) FROM sales.main.orders GROUP BY ALL ORDER BY ALL")
        expected_cpu = query_rows(c, "SELECT host, count(*), sum(usage) FROM metrics.cpu GROUP BY ALL ORDER BY ALL")
        # Changes after the backup must not appear in the restore.
        run(c, "DELETE FROM sales.main.orders WHERE store = 3")
        c.close()
    finally:
        assert s1.stop() == 0, s1.log_tail()

    new = tmp_path / "restored"
    out = cli("restore", "--from", str(target), "--backup", first_id, "--data-dir", str(new)).stdout
    assert "restored backup" in out, out
    # Restoring over an existing directory is refused.
    again = cli("restore", "--from", str(target), "--data-dir", str(new), check=False)
    assert again.returncode != 0 and "not empty" in again.stderr, again.stderr

    s2 = PondServer(data_dir=new, ext_dir=ext_dir, password=PASSWORD).start()
    try:
        c = adbc_connect(s2)
        assert query_rows(c, "SELECT store, count(*), sum(amount) FROM sales.main.orders GROUP BY ALL ORDER BY ALL") == expected_orders
        assert query_rows(c, "SELECT host, count(*), sum(usage) FROM metrics.cpu GROUP BY ALL ORDER BY ALL") == expected_cpu
        c.close()
        dana = adbc_connect(s2, password="dana-pw-1234", db_kwargs={"username": "dana"})
        assert query_rows(dana, "SELECT count(*) FROM sales.main.orders") == [(20000,)]
        dana.close()
    finally:
        assert s2.stop() == 0, s2.log_tail()

    # Flip one byte of the newest backup's largest file: --check and restore both refuse, naming it.
    newest = sorted((target / "backups").glob("*.json"))[-1]
    entry = max(json.loads(newest.read_text())["files"], key=lambda f: f["size"])
    victim = target / "objects" / entry["sha256"][:2] / entry["sha256"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    bad = cli("restore", "--from", str(target), "--check", check=False)
    assert bad.returncode != 0 and "damaged" in bad.stderr and entry["path"] in bad.stderr, bad.stderr
    bad = cli("restore", "--from", str(target), "--data-dir", str(tmp_path / "never"), check=False)
    assert bad.returncode != 0 and not (tmp_path / "never").exists()


def test_backup_over_http_requires_a_superuser(pond):
    r = requests.post(f"{pond.http_url}/api/v1/backup", json={}, auth=("admin", PASSWORD), timeout=30)
    # The shared server has no --backup-to: the error says what to do.
    assert r.status_code == 400 and "--backup-to" in r.json()["error"], r.text
    r = requests.get(f"{pond.http_url}/api/v1/backup", timeout=30)
    assert r.status_code == 401


def test_backup_to_s3_and_restore_from_it(tmp_path, ext_dir, moto):
    """The same round trip through an S3-compatible server (moto): objects and
    manifests under s3://bucket/prefix, restore and --check read them back."""
    bucket = f"pond-bk-{uuid.uuid4().hex[:8]}"
    s3 = s3_client(moto)
    s3.create_bucket(Bucket=bucket)
    env = {
        "POND_BACKUP_S3_ENDPOINT": moto,
        "POND_BACKUP_S3_REGION": "us-east-1",
        "POND_BACKUP_S3_ACCESS_KEY_ID": "test-key",
        "POND_BACKUP_S3_SECRET_ACCESS_KEY": "test-secret",
    }
    target = f"s3://{bucket}/nightly"
    s1 = PondServer(data_dir=tmp_path / "data", ext_dir=ext_dir, password=PASSWORD, extra_env=env,
                    extra_args=["--backup-to", target, "--ingest-flush-rows", "50"]).start()
    try:
        c = adbc_connect(s1)
        run(c, "CREATE DATABASE inv")
        run(c, "CREATE TABLE inv.main.stock AS SELECT range AS sku, range % 13 AS qty FROM range(5000)")
        c.close()
        write_lines(s1, "iot", "".join(f"temp,room=r{i % 5} c={20 + i % 7}i {1_700_000_000 + i}000000000\n" for i in range(300)))
        out = cli("backup", "--url", s1.http_url).stdout
        assert target in out, out
        c = adbc_connect(s1)
        expected = query_rows(c, "SELECT sum(qty), count(*) FROM inv.main.stock")
        expected_temp = query_rows(c, "SELECT room, count(*), sum(c) FROM iot.temp GROUP BY ALL ORDER BY ALL")
        c.close()
    finally:
        assert s1.stop() == 0, s1.log_tail()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="nightly/")["Contents"]]
    assert any(k.startswith("nightly/backups/") and k.endswith(".json") for k in keys), keys
    assert any(k.startswith("nightly/objects/") for k in keys), keys

    assert "is intact" in cli("restore", "--from", target, "--check", env=env).stdout
    new = tmp_path / "from-s3"
    cli("restore", "--from", target, "--data-dir", str(new), env=env)
    s2 = PondServer(data_dir=new, ext_dir=ext_dir, password=PASSWORD).start()
    try:
        c = adbc_connect(s2)
        assert query_rows(c, "SELECT sum(qty), count(*) FROM inv.main.stock") == expected
        assert query_rows(c, "SELECT room, count(*), sum(c) FROM iot.temp GROUP BY ALL ORDER BY ALL") == expected_temp
        c.close()
    finally:
        assert s2.stop() == 0, s2.log_tail()

    # A damaged object in the bucket: refused.
    obj = next(k for k in keys if k.startswith("nightly/objects/"))
    s3.put_object(Bucket=bucket, Key=obj, Body=b"not what was stored")
    bad = cli("restore", "--from", target, "--check", env=env, check=False)
    assert bad.returncode != 0 and "damaged" in bad.stderr, bad.stderr
    # Wrong credentials or a missing bucket: a clear error, not a hang.
    bad = cli("restore", "--from", f"s3://no-such-bucket-{uuid.uuid4().hex[:6]}/x", "--list", env=env, check=False)
    assert bad.returncode != 0 and "backup target" in bad.stderr, bad.stderr


def test_lake_on_s3_is_backed_up_and_restores_as_a_local_lake(tmp_path, ext_dir, moto):
    """A server whose lake data lives on S3 (moto): the backup downloads the
    lake's Parquet files, and the restored data dir serves them from its own
    lake/data directory."""
    bucket = f"pond-lk-{uuid.uuid4().hex[:8]}"
    s3_client(moto).create_bucket(Bucket=bucket)
    host = moto.removeprefix("http://")
    args = ["--ingest-flush-rows", "100", "--lake-data-path", f"s3://{bucket}/lake", "--lake-s3-endpoint", host,
            "--lake-s3-region", "us-east-1", "--lake-s3-url-style", "path", "--lake-s3-use-ssl", "false",
            "--backup-to", str(tmp_path / "bk")]
    env = {"POND_LAKE_S3_ACCESS_KEY_ID": "test-key", "POND_LAKE_S3_SECRET_ACCESS_KEY": "test-secret"}
    s1 = PondServer(data_dir=tmp_path / "data", ext_dir=ext_dir, password=PASSWORD, extra_args=args, extra_env=env).start()
    try:
        write_lines(s1, "plant", "".join(f"power,line=l{i % 3} kw={i}i {1_700_000_000 + i}000000000\n" for i in range(1000)))
        r = requests.post(f"{s1.http_url}/api/v1/lake/flush", auth=("admin", PASSWORD), timeout=60)
        assert r.status_code == 200, r.text
        c = adbc_connect(s1)
        expected = query_rows(c, "SELECT line, count(*), sum(kw) FROM plant.power GROUP BY ALL ORDER BY ALL")
        c.close()
        assert sum(row[1] for row in expected) == 1000
        cli("backup", "--url", s1.http_url)
    finally:
        assert s1.stop() == 0, s1.log_tail()
    manifest = json.loads(sorted((tmp_path / "bk" / "backups").glob("*.json"))[-1].read_text())
    assert any(f["kind"] == "lake_data" for f in manifest["files"]), manifest["files"]
    new = tmp_path / "restored"
    cli("restore", "--from", str(tmp_path / "bk"), "--data-dir", str(new))
    assert list((new / "lake" / "data").rglob("*.parquet")), "lake files restored locally"
    s2 = PondServer(data_dir=new, ext_dir=ext_dir, password=PASSWORD).start()
    try:
        c = adbc_connect(s2)
        assert query_rows(c, "SELECT line, count(*), sum(kw) FROM plant.power GROUP BY ALL ORDER BY ALL") == expected
        c.close()
    finally:
        assert s2.stop() == 0, s2.log_tail()


def test_restore_onto_an_s3_lake_data_path(tmp_path, ext_dir, moto):
    """`pond restore --lake-data-path s3://…`: the lake's Parquet files go to
    the S3-compatible server (moto) instead of the new data dir, the restored
    catalog points there, and the restored server reads and writes the lake on
    S3. Without that --lake-data-path the restored dir refuses to start (its
    queries would miss every file); a second restore onto the same path sends
    nothing again."""
    from pond_server import PondStartError

    s1 = PondServer(data_dir=tmp_path / "data", ext_dir=ext_dir, password=PASSWORD,
                    extra_args=["--ingest-flush-rows", "100", "--backup-to", str(tmp_path / "bk")]).start()
    try:
        for day in range(3):  # three days: three partitions, several files
            write_lines(s1, "plant", "".join(
                f"power,line=l{i % 3} kw={i}i {1_700_000_000 + day * 86_400 + i}000000000\n" for i in range(500)))
            r = requests.post(f"{s1.http_url}/api/v1/lake/flush", auth=("admin", PASSWORD), timeout=60)
            assert r.status_code == 200, r.text
        c = adbc_connect(s1)
        expected = query_rows(c, "SELECT line, count(*), sum(kw) FROM plant.power GROUP BY ALL ORDER BY ALL")
        c.close()
        cli("backup", "--url", s1.http_url)
    finally:
        assert s1.stop() == 0, s1.log_tail()
    local_files = sorted(p.relative_to(tmp_path / "data" / "lake" / "data").as_posix()
                         for p in (tmp_path / "data" / "lake" / "data").rglob("*.parquet"))
    assert len(local_files) >= 3, local_files

    bucket = f"pond-rs-{uuid.uuid4().hex[:8]}"
    s3 = s3_client(moto)
    s3.create_bucket(Bucket=bucket)
    host = moto.removeprefix("http://")
    s3_args = ["--lake-s3-endpoint", host, "--lake-s3-region", "us-east-1", "--lake-s3-url-style", "path",
               "--lake-s3-use-ssl", "false"]
    env = {"POND_LAKE_S3_ACCESS_KEY_ID": "test-key", "POND_LAKE_S3_SECRET_ACCESS_KEY": "test-secret"}
    new = tmp_path / "restored"
    out = cli("restore", "--from", str(tmp_path / "bk"), "--data-dir", str(new),
              "--lake-data-path", f"s3://{bucket}/lake", *s3_args, env=env).stdout
    assert f"{len(local_files)} sent, 0 already there" in out, out
    assert f"--lake-data-path s3://{bucket}/lake" in out, out
    keys = sorted(o["Key"].removeprefix("lake/") for o in s3.list_objects_v2(Bucket=bucket, Prefix="lake/")["Contents"])
    assert keys == local_files, (keys, local_files)
    assert not list((new / "lake" / "data").rglob("*.parquet")), "the files live on S3 only"

    # Started without the S3 path: refused, saying which path to give.
    bare = PondServer(data_dir=new, ext_dir=ext_dir, password=PASSWORD)
    try:
        bare.start()
        raise AssertionError("a restored S3 lake started without --lake-data-path")
    except PondStartError as e:
        assert f"restored onto s3://{bucket}/lake" in str(e), str(e)

    s2 = PondServer(data_dir=new, ext_dir=ext_dir, password=PASSWORD, extra_env=env,
                    extra_args=["--ingest-flush-rows", "100", "--lake-data-path", f"s3://{bucket}/lake", *s3_args]).start()
    try:
        c = adbc_connect(s2)
        assert query_rows(c, "SELECT line, count(*), sum(kw) FROM plant.power GROUP BY ALL ORDER BY ALL") == expected
        c.close()
        # The restored lake keeps working on S3: a new flush lands in the bucket.
        write_lines(s2, "plant", "power,line=l9 kw=7i 1700500000000000000\n")
        r = requests.post(f"{s2.http_url}/api/v1/lake/flush", auth=("admin", PASSWORD), timeout=60)
        assert r.status_code == 200, r.text
        c = adbc_connect(s2)
        assert query_rows(c, "SELECT count(*) FROM plant.power") == [(sum(row[1] for row in expected) + 1,)]
        c.close()
    finally:
        assert s2.stop() == 0, s2.log_tail()
    after = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="lake/")["Contents"]]
    assert len(after) > len(keys), after
    assert not list((new / "lake" / "data").rglob("*.parquet"))

    # Restoring the same backup again onto the same path sends nothing.
    out = cli("restore", "--from", str(tmp_path / "bk"), "--data-dir", str(tmp_path / "again"),
              "--lake-data-path", f"s3://{bucket}/lake", *s3_args, env=env).stdout
    assert f"0 sent, {len(local_files)} already there" in out, out


def test_restore_until_sets_the_lake_back_to_an_earlier_moment(tmp_path, ext_dir):
    import time

    target = tmp_path / "backups"
    s1 = PondServer(data_dir=tmp_path / "data", ext_dir=ext_dir, password=PASSWORD,
                    extra_args=["--backup-to", str(target), "--ingest-flush-rows", "100000000",
                                "--lake-snapshot-retention-secs", "3600"]).start()
    auth = ("admin", PASSWORD)

    def flush():
        r = requests.post(f"{s1.http_url}/api/v1/lake/flush", auth=auth, timeout=60)
        assert r.status_code == 200, r.text

    def lines(tag: str, n: int, base: int) -> str:
        return "".join(f"cpu,phase={tag} v={i}i {base + i}000000000\n" for i in range(n))

    try:
        write_lines(s1, "metrics", lines("a", 100, 1_700_000_000))
        flush()
        time.sleep(1.2)
        before_b = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        time.sleep(1.2)
        # Phase b reaches the lake (a new measurement too); phase d stays in the ingest log only.
        write_lines(s1, "metrics", lines("b", 50, 1_700_001_000) + "mem free=1i 1700001000000000000\n")
        flush()
        write_lines(s1, "metrics", lines("d", 20, 1_700_002_000))
        out = cli("backup", "--url", s1.http_url).stdout
        assert "backup " in out, out
    finally:
        s1.stop()

    def restored(name: str, *extra: str) -> PondServer:
        cli("restore", "--from", str(target), "--data-dir", str(tmp_path / name), *extra)
        return PondServer(data_dir=tmp_path / name, ext_dir=ext_dir, password=PASSWORD).start()

    def phases(s: PondServer):
        r = requests.post(f"{s.http_url}/api/v1/query", auth=auth,
                          json={"sql": "SELECT phase, count(*), sum(v) FROM metrics.cpu GROUP BY phase ORDER BY phase"}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    # Without --until: everything, the logged phase d included.
    s2 = restored("whole")
    try:
        assert phases(s2) == [["a", 100, 4950], ["b", 50, 1225], ["d", 20, 190]]
    finally:
        s2.stop()
    # --until before phase b: the lake as it was then, and the later log records dropped.
    r = cli("restore", "--from", str(target), "--data-dir", str(tmp_path / "early"), "--until", before_b,
            "--extension-dir", str(ext_dir))
    assert "lake set back to snapshot" in r.stdout and "later ones dropped" in r.stdout, r.stdout
    s3 = PondServer(data_dir=tmp_path / "early", ext_dir=ext_dir, password=PASSWORD).start()
    try:
        assert phases(s3) == [["a", 100, 4950]]
        q = requests.post(f"{s3.http_url}/api/v1/query", auth=auth, json={"sql": "SELECT count(*) FROM metrics.mem"}, timeout=60)
        assert q.status_code == 200 and q.json()["data"] == [[0]], q.text
        # New writes after the rewind are kept across a restart (replay starts from the rewound generation).
        write_lines(s3, "metrics", lines("e", 5, 1_700_003_000))
        s3.stop()
        s3 = PondServer(data_dir=tmp_path / "early", ext_dir=ext_dir, password=PASSWORD).start()
        assert phases(s3) == [["a", 100, 4950], ["e", 5, 10]]
    finally:
        s3.stop()
    # Older than any kept snapshot: refused, nothing written.
    bad = cli("restore", "--from", str(target), "--data-dir", str(tmp_path / "ancient"), "--until", "2001-01-01T00:00:00Z",
              "--extension-dir", str(ext_dir), check=False)
    assert bad.returncode != 0 and "keeps no snapshot that old" in (bad.stdout + bad.stderr), bad.stdout + bad.stderr
    assert not (tmp_path / "ancient").exists() or not any((tmp_path / "ancient").iterdir())
