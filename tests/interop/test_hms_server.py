"""The suite's real Hive Metastore (hms_server.py): it starts, takes a partitioned table
through its Thrift API, answers partition listings and filters, and keeps its Derby
database across a restart. Catalog tests build on this; Pond itself is not involved.
"""

from __future__ import annotations

import pytest

from hms_server import HiveMetastore

DB = "hms_selftest"


@pytest.fixture(scope="module")
def hms():
    with HiveMetastore() as metastore:
        yield metastore


@pytest.fixture(scope="module")
def events(hms, tmp_path_factory):
    base = tmp_path_factory.mktemp("hms-data")
    hms.create_database(DB)
    hms.create_table(DB, "events", [("v", "double"), ("tag", "string")],
                     partition_keys=[("dt", "string"), ("h", "int")], location=base / "events", fmt="parquet")
    added = hms.add_partitions(DB, "events", [
        (["2024-01-01", 0], None),
        (["2024-01-02", 1], None),
        (["2024-01-02", 2], base / "not-key-value"),
    ])
    assert added == 3
    return base


def test_table_as_registered(hms, events):
    with hms.client() as c:
        t = c.get_table(DB, "events")
    assert [(f.name, f.type) for f in t.sd.cols] == [("v", "double"), ("tag", "string")]
    assert [(f.name, f.type) for f in t.partitionKeys] == [("dt", "string"), ("h", "int")]
    assert t.sd.serdeInfo.serializationLib == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    assert t.sd.inputFormat == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    assert t.tableType == "EXTERNAL_TABLE"
    # The metastore rewrites file:/// URIs to file:/.
    assert t.sd.location == f"file:{events / 'events'}"


def test_partition_names_and_filter(hms, events):
    with hms.client() as c:
        assert c.get_partition_names(DB, "events", -1) == ["dt=2024-01-01/h=0", "dt=2024-01-02/h=1", "dt=2024-01-02/h=2"]
        parts = c.get_partitions_by_filter(DB, "events", 'dt = "2024-01-02" and h = 1', -1)
        assert [p.values for p in parts] == [["2024-01-02", "1"]]
        assert parts[0].sd.location == f"file:{events / 'events' / 'dt=2024-01-02' / 'h=1'}"
        assert c.get_partition_names_ps(DB, "events", ["2024-01-02"], -1) == ["dt=2024-01-02/h=1", "dt=2024-01-02/h=2"]
        [moved] = c.get_partitions_by_names(DB, "events", ["dt=2024-01-02/h=2"])
        assert moved.sd.location == f"file:{events / 'not-key-value'}"


def test_restart_keeps_the_metastore_database(hms, events):
    port = hms.port
    hms.restart()
    assert hms.port == port
    with hms.client() as c:
        assert DB in c.get_all_databases()
        assert len(c.get_partition_names(DB, "events", -1)) == 3
