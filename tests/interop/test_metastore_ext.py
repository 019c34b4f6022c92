"""The `pond_metastore` DuckDB extension (extensions/metastore) loaded into plain
DuckDB (the `duckdb` Python package, v1.5.5) with allow_unsigned_extensions:
`metastore_tables`, `metastore_partitions` and `metastore_scan` against a real
Hive Metastore 2.3.10 (hms_server.py), moto's Glue + S3, and Dataproc discovery
through the same `DataprocStub` as test_catalog_dataproc.py (the one stand-in:
Google's API cannot run here; everything after discovery is the real metastore).

What would break if the feature broke: rows equal to DuckDB's own read of the
same files; pruning proven by partitions whose files are not Parquet at all (a
filtered scan that listed or read them would fail); typed partition columns;
clear errors (and a usable connection afterwards) for wrong URIs, missing
databases and tables, bad filters; no leak under valgrind for a load/query loop.

The extension file: $POND_METASTORE_EXT, else
~/.cache/pond/target-ext/release/pond_metastore.duckdb_extension (built by
extensions/metastore/build.sh, which scripts/setup.sh runs). Missing = failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import duckdb
import pytest

from pond_server import ensure_extensions, extension_dir

EXT = Path(os.environ.get("POND_METASTORE_EXT", Path.home() / ".cache/pond/target-ext/release/pond_metastore.duckdb_extension"))


@pytest.fixture(scope="module")
def ext() -> Path:
    if not EXT.exists():
        pytest.fail(f"{EXT} does not exist: build it with extensions/metastore/build.sh (bash scripts/setup.sh does)")
    return EXT


def connect(ext: Path, **config) -> duckdb.DuckDBPyConnection:
    """Plain DuckDB with the extension loaded (and the suite's extension directory for httpfs)."""
    c = duckdb.connect(config={"allow_unsigned_extensions": "true", "extension_directory": str(extension_dir()),
                               "autoinstall_known_extensions": "false", **config})
    c.execute(f"LOAD '{ext}'")
    return c


def error_of(con, sql: str) -> str:
    with pytest.raises(duckdb.Error) as e:
        con.execute(sql).fetchall()
    return str(e.value)


def test_the_file_is_a_duckdb_1_5_5_extension(ext):
    tail = ext.read_bytes()[-512:]
    fields = [tail[i * 32:(i + 1) * 32].rstrip(b"\0").decode() for i in range(8)][::-1]
    assert fields[0] == "4" and fields[1] == "linux_amd64" and fields[2] == "v1.5.5", fields
    assert fields[4] == "C_STRUCT_UNSTABLE", fields
    assert tail[256:] == b"\0" * 256, "unsigned: the signature space is empty"
    # Without allow_unsigned_extensions DuckDB refuses it.
    with pytest.raises(duckdb.Error, match="unsigned|signature"):
        duckdb.connect().execute(f"LOAD '{ext}'")
    con = connect(ext)
    names = {r[0] for r in con.execute("SELECT function_name FROM duckdb_functions() WHERE function_name LIKE 'metastore_%'").fetchall()}
    assert names == {"metastore_tables", "metastore_partitions", "metastore_scan"}


# ---------------------------------------------------------------- Hive Metastore


def write_parquet(path: Path, select_sql: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.sql(f"COPY ({select_sql}) TO '{path}' (FORMAT parquet)")


@pytest.fixture(scope="module")
def world(hms, tmp_path_factory):
    lake = tmp_path_factory.mktemp("ext-lake")
    db = "extdb_" + uuid.uuid4().hex[:6]
    hms.create_database(db)
    # Unpartitioned Parquet in two files (and a hidden file that is not data).
    duckdb.sql(f"COPY (SELECT range AS id, range * 1.5 AS amount, 'c' || (range % 7) AS customer FROM range(900)) "
               f"TO '{lake / 'orders'}' (FORMAT parquet, PER_THREAD_OUTPUT, FILE_SIZE_BYTES '4kb')")
    (lake / "orders" / "_SUCCESS").write_text("")
    hms.create_table(db, "orders", [("id", "bigint"), ("amount", "double"), ("customer", "string")], location=lake / "orders")

    # dt (string) x h (int), written by DuckDB's own partitioned COPY (k=v directories).
    duckdb.sql(f"COPY (SELECT n, dt || '/' || h AS tag, dt, h FROM (VALUES ('2024-01-01'), ('2024-01-02'), ('2024-01-03')) d(dt), "
               f"range(3) r(h), LATERAL (SELECT range AS n FROM range(5 + h))) TO '{lake / 'events'}' (FORMAT parquet, PARTITION_BY (dt, h))")
    hms.create_table(db, "events", [("n", "bigint"), ("tag", "string")], partition_keys=[("dt", "string"), ("h", "int")],
                     location=lake / "events")
    hms.add_partitions(db, "events", [([d, h], lake / "events" / f"dt={d}" / f"h={h}") for d in ["2024-01-01", "2024-01-02", "2024-01-03"] for h in range(3)])

    hms.create_trap_table(db, "traps", lake, partitions=5, good=3)

    # A date key, locations without k=v in their path.
    odd = []
    for i, d in enumerate(["2023-12-30", "2023-12-31"]):
        loc = lake / "odd" / f"batch_{i}"
        write_parquet(loc / "x.parquet", f"SELECT range AS k FROM range({i + 1})")
        odd.append(([d], loc))
    hms.create_table(db, "odd", [("k", "bigint")], partition_keys=[("day", "date")], location=lake / "odd")
    hms.add_partitions(db, "odd", odd)

    # Text formats: CSV (LazySimpleSerDe with ','), Hive's default \x01 text, JSON lines.
    csv_parts = []
    for region, body in [("eu", "x,1\ny,2\n"), ("us", "z,3\n")]:
        loc = lake / "comma" / f"region={region}"
        loc.mkdir(parents=True)
        (loc / "a.csv").write_text(body)
        csv_parts.append(([region], loc))
    hms.create_table(db, "comma", [("name", "string"), ("n", "int")], partition_keys=[("region", "string")],
                     location=lake / "comma", fmt="csv")
    hms.add_partitions(db, "comma", csv_parts)
    (lake / "text").mkdir()
    (lake / "text" / "a.txt").write_text("alpha\x011\x01true\nbeta\x01\\N\x01false\n")
    hms.create_table(db, "plain_text", [("name", "string"), ("n", "int"), ("ok", "boolean")], location=lake / "text", fmt="text")
    (lake / "json").mkdir()
    (lake / "json" / "a.json").write_text('{"name": "j", "n": 5}\n{"name": "k"}\n')
    hms.create_table(db, "js", [("name", "string"), ("n", "int")], location=lake / "json", fmt="json")
    return {"db": db, "uri": hms.uri, "lake": lake}


def test_tables_lists_columns_formats_and_partition_keys(ext, world):
    con = connect(ext)
    db = world["db"]
    got = con.execute(
        f"SELECT table_name, format, [c.name FOR c IN partition_keys], [c.duckdb_type FOR c IN columns] "
        f"FROM metastore_tables('{world['uri']}', database := '{db}') ORDER BY table_name").fetchall()
    by = {r[0]: r[1:] for r in got}
    assert by["events"] == ("parquet", ["dt", "h"], ["BIGINT", "VARCHAR"])
    assert by["comma"][0] == "text" and by["js"][0] == "json" and by["orders"][2] == ["BIGINT", "DOUBLE", "VARCHAR"]
    every = {r[0] for r in con.execute(f"SELECT database FROM metastore_tables('{world['uri']}')").fetchall()}
    assert db in every


def test_scan_reads_like_duckdb_with_typed_partition_columns(ext, world):
    con = connect(ext)
    uri, db, lake = world["uri"], world["db"], world["lake"]
    got = con.execute(f"SELECT count(*), sum(amount), count(DISTINCT customer) FROM metastore_scan('{uri}', '{db}', 'orders')").fetchall()
    want = duckdb.sql(f"SELECT count(*), sum(amount), count(DISTINCT customer) FROM read_parquet('{lake}/orders/*.parquet')").fetchall()
    assert got == want
    rows = con.execute(f"SELECT dt, h, n, tag FROM metastore_scan('{uri}', '{db}', 'events') ORDER BY ALL").fetchall()
    want = duckdb.sql(f"SELECT dt::VARCHAR, h::INTEGER, n, tag FROM read_parquet('{lake}/events/*/*/*.parquet', hive_partitioning = true) ORDER BY ALL").fetchall()
    assert rows == want and len(rows) == 3 * (5 + 6 + 7)
    types = con.execute(f"SELECT typeof(dt), typeof(h) FROM metastore_scan('{uri}', '{db}', 'events') LIMIT 1").fetchall()
    assert types == [("VARCHAR", "INTEGER")]
    one = con.execute(f"SELECT dt, h, count(*), min(tag) FROM metastore_scan('{uri}', '{db}', 'events', filter := 'dt = ''2024-01-02'' AND h = 2') GROUP BY ALL").fetchall()
    assert one == [("2024-01-02", 2, 7, "2024-01-02/2")]
    # Values from the metastore, not from paths; a DATE key.
    odd = con.execute(f"SELECT day::VARCHAR, count(*) FROM metastore_scan('{uri}', '{db}', 'odd') GROUP BY ALL ORDER BY 1").fetchall()
    assert odd == [("2023-12-30", 1), ("2023-12-31", 2)]
    assert con.execute(f"SELECT typeof(day) FROM metastore_scan('{uri}', '{db}', 'odd', filter := 'day > DATE ''2023-12-30''')").fetchall() == [("DATE",), ("DATE",)]


def test_text_csv_and_json_tables(ext, world):
    con = connect(ext)
    uri, db = world["uri"], world["db"]
    assert con.execute(f"SELECT name, n, region FROM metastore_scan('{uri}', '{db}', 'comma') ORDER BY name").fetchall() == [
        ("x", 1, "eu"), ("y", 2, "eu"), ("z", 3, "us")]
    assert con.execute(f"SELECT name, n FROM metastore_scan('{uri}', '{db}', 'comma', filter := 'region = ''us''')").fetchall() == [("z", 3)]
    assert con.execute(f"SELECT * FROM metastore_scan('{uri}', '{db}', 'plain_text') ORDER BY name").fetchall() == [
        ("alpha", 1, True), ("beta", None, False)]
    assert con.execute(f"SELECT * FROM metastore_scan('{uri}', '{db}', 'js') ORDER BY name").fetchall() == [("j", 5), ("k", None)]


def test_filter_prunes_through_the_metastore_before_listing(ext, world):
    con = connect(ext)
    uri, db = world["uri"], world["db"]
    assert con.execute(f"SELECT v, region FROM metastore_scan('{uri}', '{db}', 'traps', filter := 'region = ''r3''')").fetchall() == [(42, "r3")]
    assert con.execute(f"SELECT count(*) FROM metastore_scan('{uri}', '{db}', 'traps', filter := 'region IN (''r3'') AND region <> ''r1''')").fetchall() == [(1,)]
    parts = con.execute(f"SELECT partition_name, region FROM metastore_partitions('{uri}', '{db}', 'traps', filter := 'region >= ''r3''')").fetchall()
    assert sorted(parts) == [("region=r3", "r3"), ("region=r4", "r4")]
    assert len(con.execute(f"SELECT * FROM metastore_partitions('{uri}', '{db}', 'events')").fetchall()) == 9
    typed = con.execute(f"SELECT typeof(h), h FROM metastore_partitions('{uri}', '{db}', 'events', filter := 'h = 1')").fetchall()
    assert typed == [("INTEGER", 1)] * 3
    # Reading everything touches the unreadable files: proof the queries above pruned.
    message = error_of(con, f"SELECT count(*) FROM metastore_scan('{uri}', '{db}', 'traps')")
    assert "bad.parquet" in message, message


def test_clear_errors_and_the_connection_stays_usable(ext, world):
    con = connect(ext)
    uri, db = world["uri"], world["db"]
    m = error_of(con, "SELECT * FROM metastore_tables('http://localhost:9083')")
    assert "metastore_tables" in m and "cannot tell the catalog type of 'http://localhost:9083'" in m, m
    m = error_of(con, "SELECT * FROM metastore_tables('thrift://localhost')")
    assert "needs a port" in m, m
    m = error_of(con, "SELECT * FROM metastore_tables('thrift://127.0.0.1:1', timeout := '2')")
    assert "metastore_tables" in m and "127.0.0.1:1" in m and "failed" in m, m
    m = error_of(con, f"SELECT * FROM metastore_scan('{uri}', '{db}', 'no_such_table')")
    assert "no_such_table" in m and "does not exist" in m, m
    m = error_of(con, f"SELECT * FROM metastore_scan('{uri}', 'no_such_db_x', 'events')")
    assert "no_such_db_x" in m and "does not exist" in m, m
    m = error_of(con, f"SELECT * FROM metastore_scan('{uri}', '{db}', 'events', filter := 'n > 3')")
    assert "n, which is not a partition key" in m and "dt, h" in m, m
    m = error_of(con, f"SELECT * FROM metastore_scan('{uri}', '{db}', 'events', filter := 'dt = = 3')")
    assert "is not a SQL condition" in m, m
    m = error_of(con, f"SELECT * FROM metastore_scan('{uri}', '{db}', 'events', region := 'eu-west-1')")
    assert "parameter region does not apply to a hive catalog" in m, m
    m = error_of(con, f"SELECT * FROM metastore_scan('{uri}', '{db}', 'events', cache_ttl := 'soon')")
    assert "CACHE_TTL must be a number" in m, m
    m = error_of(con, f"SELECT * FROM metastore_scan('{uri}', '{db}', NULL)")
    assert "table argument is NULL" in m, m
    # After all of that, the same connection still answers.
    assert con.execute(f"SELECT count(*) FROM metastore_scan('{uri}', '{db}', 'orders')").fetchall() == [(900,)]


def test_projection_joins_and_parallel_scans(ext, world):
    con = connect(ext, threads=4)
    uri, db = world["uri"], world["db"]
    got = con.execute(
        f"SELECT e.dt, count(*) FROM metastore_scan('{uri}', '{db}', 'events') e "
        f"JOIN metastore_partitions('{uri}', '{db}', 'events', filter := 'h = 0') p ON e.dt = p.dt AND e.h = p.h "
        f"GROUP BY ALL ORDER BY 1").fetchall()
    assert got == [("2024-01-01", 5), ("2024-01-02", 5), ("2024-01-03", 5)]
    assert con.execute(f"SELECT tag FROM metastore_scan('{uri}', '{db}', 'events', filter := 'h = 2') ORDER BY tag LIMIT 1").fetchall() == [("2024-01-01/2",)]


# ---------------------------------------------------------------- Glue + S3 (moto)

BUCKET = "ext-glue-lake"
KEY_ID = "AKIAPONDEXTTEST01"
SECRET_VALUE = "ext-secret-never-printed-7"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def glue_world(moto):
    import boto3

    from helpers import parquet_bytes, s3_client
    from test_catalog_glue import sd

    ensure_extensions(["httpfs"])
    s3 = s3_client(moto)
    s3.create_bucket(Bucket=BUCKET)
    glue = boto3.client("glue", endpoint_url=moto, aws_access_key_id="k", aws_secret_access_key="s", region_name=REGION)
    db = "gext_" + uuid.uuid4().hex[:6]
    glue.create_database(DatabaseInput={"Name": db})
    cols = [("n", "bigint")]
    glue.create_table(DatabaseName=db, TableInput={
        "Name": "events", "TableType": "EXTERNAL_TABLE",
        "StorageDescriptor": sd(cols, f"s3://{BUCKET}/{db}/events"),
        "PartitionKeys": [{"Name": "dt", "Type": "date"}, {"Name": "region", "Type": "string"}]})
    inputs, expected = [], {}
    for i, (dt, region) in enumerate([("2024-03-01", "eu"), ("2024-03-01", "us"), ("2024-03-02", "eu")]):
        key = f"{db}/events/dt={dt}/region={region}/f.parquet"
        s3.put_object(Bucket=BUCKET, Key=key, Body=parquet_bytes(f"SELECT range AS n FROM range({10 * (i + 1)})"))
        inputs.append({"Values": [dt, region], "StorageDescriptor": sd(cols, f"s3://{BUCKET}/{key.rsplit('/', 1)[0]}")})
        expected[(dt, region)] = 10 * (i + 1)
    # A partition whose object is not Parquet: any scan that read it would fail.
    s3.put_object(Bucket=BUCKET, Key=f"{db}/events/dt=2024-03-09/region=eu/broken.parquet", Body=b"not parquet at all")
    inputs.append({"Values": ["2024-03-09", "eu"], "StorageDescriptor": sd(cols, f"s3a://{BUCKET}/{db}/events/dt=2024-03-09/region=eu")})
    glue.batch_create_partition(DatabaseName=db, TableName="events", PartitionInputList=inputs)
    return {"db": db, "moto": moto, "expected": expected}


def glue_args(w) -> str:
    return f"region := '{REGION}', endpoint := '{w['moto']}', cache_ttl := '0'"


def test_glue_with_a_duckdb_secret(ext, glue_world):
    w = glue_world
    con = connect(ext, allow_unredacted_secrets=True)
    con.execute("LOAD httpfs")
    host = w["moto"].removeprefix("http://")
    con.execute(f"CREATE SECRET s3moto (TYPE s3, KEY_ID '{KEY_ID}', SECRET '{SECRET_VALUE}', REGION '{REGION}', "
                f"ENDPOINT '{host}', USE_SSL false, URL_STYLE 'path')")
    db = w["db"]
    got = con.execute(f"SELECT dt::VARCHAR, region, count(*) FROM metastore_scan('glue', '{db}', 'events', {glue_args(w)}, "
                      f"filter := 'dt <= DATE ''2024-03-02''') GROUP BY ALL ORDER BY ALL").fetchall()
    assert got == [(dt, r, n) for (dt, r), n in sorted(w["expected"].items())]
    assert con.execute(f"SELECT count(*) FROM metastore_scan('glue', '{db}', 'events', {glue_args(w)}, "
                       f"filter := 'dt = DATE ''2024-03-01'' AND region = ''us''')").fetchall() == [(20,)]
    parts = con.execute(f"SELECT partition_name FROM metastore_partitions('glue', '{db}', 'events', {glue_args(w)}) ORDER BY 1").fetchall()
    assert len(parts) == 4
    m = error_of(con, f"SELECT count(*) FROM metastore_scan('glue', '{db}', 'events', {glue_args(w)})")
    assert "broken.parquet" in m and SECRET_VALUE not in m, m
    tables = con.execute(f"SELECT table_name, format FROM metastore_tables('glue', {glue_args(w)}, database := '{db}')").fetchall()
    assert tables == [("events", "parquet")]


def test_glue_redacted_secret_is_explained_and_the_default_chain_works(ext, glue_world, monkeypatch):
    w = glue_world
    con = connect(ext)
    con.execute("LOAD httpfs")
    con.execute(f"CREATE SECRET s3moto (TYPE s3, KEY_ID '{KEY_ID}', SECRET '{SECRET_VALUE}', REGION '{REGION}')")
    m = error_of(con, f"SELECT * FROM metastore_tables('glue', {glue_args(w)})")
    assert "allow_unredacted_secrets" in m and "s3moto" in m and SECRET_VALUE not in m, m
    # secret := '': the AWS default chain (here the environment); the extension hands
    # the catalog's credentials to DuckDB for the bucket (the user's secret does not cover
    # moto's endpoint, so it is dropped first).
    con.execute("DROP SECRET s3moto")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_VALUE)
    got = con.execute(f"SELECT count(*) FROM metastore_scan('glue', '{w['db']}', 'events', {glue_args(w)}, secret := '', "
                      f"s3_endpoint := '{w['moto']}', s3_url_style := 'path', filter := 'region = ''eu'' AND dt < DATE ''2024-03-05''')").fetchall()
    assert got == [(10 + 30,)]
    made = con.execute("SELECT name, scope FROM duckdb_secrets() WHERE name LIKE 'pond_metastore_%'").fetchall()
    assert made == [(f"pond_metastore_{BUCKET.replace('-', '_')}", [f"s3://{BUCKET}"])], made


# ---------------------------------------------------------------- Dataproc (stub API + real metastore)


def test_dataproc_discovers_the_metastore_with_google_default_credentials(ext, hms, tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from test_catalog_dataproc import CLIENT_EMAIL, SERVICE, DataprocStub

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    stub = DataprocStub(key.public_key(), hms.uri)
    try:
        sa = {"type": "service_account", "project_id": "pond-test", "private_key_id": "k1", "private_key": pem,
              "client_email": CLIENT_EMAIL, "client_id": "1", "token_uri": f"{stub.url}/token"}
        sa_file = tmp_path / "sa.json"
        sa_file.write_text(json.dumps(sa))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(sa_file))
        db = "dpx_" + uuid.uuid4().hex[:6]
        hms.create_database(db)
        loc = tmp_path / "visits" / "day=2024-05-01"
        write_parquet(loc / "f.parquet", "SELECT range AS v FROM range(3)")
        hms.create_table(db, "visits", [("v", "bigint")], partition_keys=[("day", "string")], location=tmp_path / "visits")
        hms.add_partitions(db, "visits", [(["2024-05-01"], loc)])
        con = connect(ext)
        got = con.execute(f"SELECT day, count(*) FROM metastore_scan('{SERVICE}', '{db}', 'visits', endpoint := '{stub.url}', "
                          f"filter := 'day = ''2024-05-01''') GROUP BY ALL").fetchall()
        assert got == [("2024-05-01", 3)]
        assert stub.assertions and stub.assertions[0]["iss"] == CLIENT_EMAIL and f"/v1/{SERVICE}" in stub.gets
        m = error_of(con, f"SELECT * FROM metastore_tables('projects/p', endpoint := '{stub.url}')")
        assert "projects/p" in m, m
    finally:
        stub.close()


# ---------------------------------------------------------------- valgrind

LOOP = """
import sys, duckdb
ext, uri, db = sys.argv[1:4]
for i in range(int(sys.argv[4])):
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{ext}'")
    assert con.execute(f"SELECT count(*) FROM metastore_scan('{uri}', '{db}', 'events', filter := 'h = 1')").fetchall() == [(18,)]
    assert len(con.execute(f"SELECT * FROM metastore_tables('{uri}', database := '{db}')").fetchall()) >= 5
    try:
        con.execute(f"SELECT * FROM metastore_scan('{uri}', '{db}', 'nope')").fetchall()
    except duckdb.Error:
        pass
    con.close()
print("loop done")
"""


@pytest.mark.skipif(not Path("/usr/bin/valgrind").exists(), reason="valgrind is not installed")
def test_no_leak_under_valgrind_for_a_load_query_loop(ext, world, tmp_path):
    """Python + DuckDB under memcheck: every `definitely lost` block whose allocation
    stack passes through the extension (libpond_metastore / pond_* frames), and every
    invalid read/write/free or use of an uninitialised value there, fails the test.
    Python's own reports are not the extension's and are not counted (PYTHONMALLOC=malloc
    makes them visible but they do not mention the extension's frames)."""
    script = tmp_path / "loop.py"
    script.write_text(textwrap.dedent(LOOP))
    log = tmp_path / "vg.log"
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    proc = subprocess.run(
        ["/usr/bin/valgrind", "--leak-check=full", "--show-leak-kinds=definite", "--num-callers=40", f"--log-file={log}",
         sys.executable, str(script), str(ext), world["uri"], world["db"], "3"],
        env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0 and "loop done" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = log.read_text()
    assert "LEAK SUMMARY" in report or "All heap blocks were freed" in report, report[-3000:]
    text = "\n".join(re.sub(r"^==\d+== ?", "", line) for line in report.splitlines())
    records = [r for r in text.split("\n\n") if "definitely lost in loss record" in r]
    ours = [r for r in records if any(m in r for m in ("pond_metastore", "pond_catalog", "pond_secrets", "pond_rt"))]
    assert not ours, "\n\n".join(ours)[:6000]
    # Memory errors (invalid reads/writes, uninitialised values) in the extension's frames.
    ours_errors = [r for r in text.split("\n\n") if any(k in r for k in ("Invalid read", "Invalid write", "Invalid free", "uninitialised"))
                   and any(m in r for m in ("pond_metastore", "pond_catalog", "pond_secrets", "pond_rt"))]
    assert not ours_errors, "\n\n".join(ours_errors)[:6000]
    print(f"valgrind: {len(records)} definitely-lost records in total, none through the extension\n"
          + text[text.find("LEAK SUMMARY"):][:1500])
