"""Exactly once across crashes, step by step: the real `pond serve` aborts at
a failpoint (`POND_FAILPOINT`) between the steps of a flush — Parquet files
written but not registered, registered but the log not yet released, log
released — and after one bounded compaction step; the restarted server must
hold every acknowledged row exactly once, with no unregistered file left on
disk and none registered twice.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import requests

from helpers import PASSWORD
from pond_server import PondServer

AUTH = ("admin", PASSWORD)
BASE = 1_704_067_200_000_000_000  # 2024-01-01
DAY = 86_400_000_000_000
META = "__ducklake_metadata___pond_lake"


def sql(server: PondServer, text: str):
    r = requests.post(f"{server.http_url}/api/v1/query", auth=AUTH, json={"sql": text}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def lines(start: int, n: int) -> str:
    # Three days, so one flush writes several files.
    return "\n".join(f"cpu,host=h{i % 7} usage={i * 0.5},n={i}i {BASE + (i % 3) * DAY + i}" for i in range(start, start + n))


def write(server: PondServer, start: int, n: int) -> bool:
    """True when acknowledged."""
    try:
        r = requests.post(f"{server.http_url}/write?db=crash", auth=AUTH, data=lines(start, n).encode(), timeout=60)
    except requests.RequestException:
        return False
    return r.status_code == 204


def server(tmp_path: Path, ext_dir, failpoint: str | None = None) -> PondServer:
    env = {"POND_FAILPOINT": failpoint} if failpoint else {}
    args = ["--ingest-flush-rows", "1000000000", "--ingest-wal-segment-mib", "1", "--lake-compact-interval-secs", "0",
            "--lake-cleanup-grace-secs", "0"]
    return PondServer(data_dir=tmp_path / "data", ext_dir=ext_dir, password=PASSWORD, extra_args=args, extra_env=env).start()


def files_on_disk(tmp_path: Path) -> set[str]:
    return {str(p) for p in (tmp_path / "data" / "lake" / "data").rglob("*.parquet") if "/cpu/" in str(p)}


def registered(s: PondServer) -> list[str]:
    rows = sql(s, f"SELECT f.path FROM {META}.ducklake_data_file f JOIN {META}.ducklake_table t USING (table_id) "
                  f"WHERE t.table_name = 'cpu' AND f.end_snapshot IS NULL AND t.end_snapshot IS NULL")
    return [r[0] for r in rows]


def check(s: PondServer, tmp_path: Path, acked: int, maybe: int) -> int:
    """Every acknowledged row once; the unacknowledged last batch wholly or not at all; files == registrations."""
    n, distinct, total = sql(s, "SELECT count(*), count(DISTINCT n), coalesce(sum(n), 0)::BIGINT FROM crash.cpu")[0]
    assert n == distinct, "a row is there twice"
    assert n in (acked, acked + maybe), (n, acked, maybe)
    assert total == sum(range(n))
    reg = registered(s)
    assert len(reg) == len(set(reg)), "a file is registered twice"
    assert len(reg) == len(files_on_disk(tmp_path)), (reg, files_on_disk(tmp_path))
    return n


def flush(s: PondServer) -> None:
    try:
        requests.post(f"{s.http_url}/api/v1/lake/flush?db=crash", auth=AUTH, timeout=60)
    except requests.RequestException:
        pass


def compact(s: PondServer) -> None:
    try:
        requests.post(f"{s.http_url}/api/v1/lake/compact?db=crash", auth=AUTH, timeout=60)
    except requests.RequestException:
        pass


def aborted(s: PondServer) -> None:
    assert s.proc.wait(timeout=60) == -signal.SIGABRT, s.log_tail()
    assert "POND_FAILPOINT" in s.log_tail()


@pytest.mark.parametrize("step", ["flush-written", "flush-registered", "flush-released"])
def test_a_crash_between_flush_steps_loses_and_duplicates_nothing(tmp_path, ext_dir, step):
    # A first flushed generation, so the crash hits a lake that already has files.
    s = server(tmp_path, ext_dir)
    try:
        assert write(s, 0, 3000)
        flush(s)
        acked = 3000
    finally:
        s.stop()
    s = server(tmp_path, ext_dir, step)
    maybe = 0
    try:
        # More than a log segment (1 MiB): closed segments start a flush by
        # themselves, so the failpoint may already fire during these writes
        # (the write that was in flight then may or may not be acknowledged).
        for n in [6000] * 4 + [0, 10, 10]:
            if n == 0:
                flush(s)
                continue
            if not write(s, acked, n):
                maybe = n
                break
            acked += n
        aborted(s)
    finally:
        s.kill()
    if step == "flush-written":
        assert files_on_disk(tmp_path), "the flush wrote files before the crash"
    s = server(tmp_path, ext_dir)
    try:
        n = check(s, tmp_path, acked, maybe)
        # The restarted server goes on: more rows, a flush, a restart, all once.
        assert write(s, 100_000, 500)
        flush(s)
    finally:
        s.stop()
    s = server(tmp_path, ext_dir)
    try:
        n2, distinct = sql(s, "SELECT count(*), count(DISTINCT n) FROM crash.cpu")[0]
        assert (n2, distinct) == (n + 500, n + 500)
        check_files = registered(s)
        assert len(check_files) == len(files_on_disk(tmp_path))
    finally:
        s.stop()


def test_a_crash_after_a_compaction_step_loses_and_duplicates_nothing(tmp_path, ext_dir):
    s = server(tmp_path, ext_dir)
    acked = 0
    try:
        for k in range(8):  # 8 flushes x 3 days = 24 small files
            assert write(s, acked, 300)
            acked += 300
            flush(s)
    finally:
        s.stop()
    before = None
    s = server(tmp_path, ext_dir, "compact-merged")
    try:
        before = len(registered(s))
        compact(s)
        aborted(s)
    finally:
        s.kill()
    s = server(tmp_path, ext_dir)
    try:
        n, distinct = sql(s, "SELECT count(*), count(DISTINCT n) FROM crash.cpu")[0]
        assert (n, distinct) == (acked, acked)
        after = len(registered(s))
        assert after < before, (before, after)
        compact(s)
        assert sql(s, "SELECT count(*), count(DISTINCT n) FROM crash.cpu")[0] == [acked, acked]
        assert len(registered(s)) == 3, "one file per day once compacted"
        assert len(files_on_disk(tmp_path)) == 3
    finally:
        s.stop()
