"""A real Apache Hive Metastore 2.3.10 for tests and benchmarks, and helpers that fill it.

The metastore's jars come from PyPI's `pyspark==4.0.1` source distribution (Maven
Central is not reachable here): `ensure_hms()` downloads it once, keeps only the 46
jars the metastore needs in `~/.cache/pond/hms/jars` and deletes the tarball.
`HiveMetastore` runs `org.apache.hadoop.hive.metastore.HiveMetaStore` on Java 17 with an
embedded Derby database in a directory of its own. Tables and partitions are created
through the metastore's real Thrift API with PyPI's `hmsclient`, the way Hive or Spark
would register them.

Nothing here imports pytest, so benchmarks use it as a plain module.

    python tests/interop/hms_server.py fetch            # download and cache the jars
    python tests/interop/hms_server.py serve [--port P] # run one until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence
from xml.sax.saxutils import escape

PYSPARK_REQUIREMENT = "pyspark==4.0.1"
JARS_IN_SDIST = "pyspark-4.0.1/deps/jars/"
MAIN_CLASS = "org.apache.hadoop.hive.metastore.HiveMetaStore"

# The jars HMS 2.3.10 needs to run with Derby (checked against the pyspark 4.0.1 sdist).
JARS = [
    "hive-metastore-2.3.10", "hive-common-2.3.10", "hive-exec-2.3.10-core", "hive-serde-2.3.10",
    "hive-shims-0.23-2.3.10", "hive-shims-2.3.10", "hive-shims-common-2.3.10",
    "hive-shims-scheduler-2.3.10", "hive-storage-api-2.8.1", "libthrift-0.16.0", "libfb303-0.9.3",
    "datanucleus-api-jdo-4.2.4", "datanucleus-core-4.1.17", "datanucleus-rdbms-4.1.19",
    "derby-10.16.1.1", "derbyshared-10.16.1.1", "derbytools-10.16.1.1", "javax.jdo-3.2.0-m3",
    "jdo-api-3.0.1", "hadoop-client-api-3.4.1", "hadoop-client-runtime-3.4.1", "commons-lang-2.6",
    "commons-lang3-3.17.0", "commons-collections-3.2.2", "commons-dbcp-1.4", "commons-pool-1.5.4",
    "HikariCP-2.5.1", "guava-33.4.0-jre", "failureaccess-1.0.2", "log4j-1.2-api-2.24.3",
    "log4j-api-2.24.3", "log4j-core-2.24.3", "log4j-layout-template-json-2.24.3",
    "log4j-slf4j2-impl-2.24.3", "slf4j-api-2.0.16", "jcl-over-slf4j-2.0.16", "antlr-runtime-3.5.2",
    "javolution-5.5.1", "jta-1.1", "transaction-api-1.1", "jackson-core-2.18.2",
    "jackson-databind-2.18.2", "jackson-annotations-2.18.2", "commons-io-2.18.0",
    "commons-codec-1.17.2", "commons-cli-1.9.0",
]

# Storage descriptor classes per table format, as Hive itself writes them.
TEXT_INPUT = "org.apache.hadoop.mapred.TextInputFormat"
TEXT_OUTPUT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
LAZY_SIMPLE_SERDE = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"
FORMATS: dict[str, tuple[str, str, str]] = {
    # name: (input format, output format, serde)
    "parquet": (
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
    ),
    # LazySimpleSerDe with `field.delim` ',' (Hive's ROW FORMAT DELIMITED FIELDS TERMINATED BY ',').
    "csv": (TEXT_INPUT, TEXT_OUTPUT, LAZY_SIMPLE_SERDE),
    # LazySimpleSerDe with no delimiter set: Hive's default, \x01 (Ctrl-A).
    "text": (TEXT_INPUT, TEXT_OUTPUT, LAZY_SIMPLE_SERDE),
    "opencsv": (TEXT_INPUT, TEXT_OUTPUT, "org.apache.hadoop.hive.serde2.OpenCSVSerde"),
    "json": (TEXT_INPUT, TEXT_OUTPUT, "org.apache.hive.hcatalog.data.JsonSerDe"),
    "avro": (
        "org.apache.hadoop.hive.ql.io.avro.AvroContainerInputFormat",
        "org.apache.hadoop.hive.ql.io.avro.AvroContainerOutputFormat",
        "org.apache.hadoop.hive.serde2.avro.AvroSerDe",
    ),
    "orc": (
        "org.apache.hadoop.hive.ql.io.orc.OrcInputFormat",
        "org.apache.hadoop.hive.ql.io.orc.OrcOutputFormat",
        "org.apache.hadoop.hive.ql.io.orc.OrcSerde",
    ),
}


class HmsStartError(RuntimeError):
    pass


def default_cache() -> Path:
    return Path(os.environ.get("POND_HMS_CACHE") or os.path.expanduser("~/.cache/pond/hms"))


def _log(msg: str) -> None:
    print(f"hms_server: {msg}", file=sys.stderr, flush=True)


def ensure_java() -> str:
    """The `java` executable; installs Debian's openjdk-17-jre-headless when it is missing."""
    java = shutil.which("java")
    if java:
        return java
    _log("java not found: installing openjdk-17-jre-headless with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "openjdk-17-jre-headless"]
    if subprocess.run(install, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    java = shutil.which("java")
    if not java:
        raise HmsStartError("openjdk-17-jre-headless installed but `java` is still not on PATH")
    return java


def _jars_complete(jars: Path) -> bool:
    return (jars / ".complete").exists() and all((jars / f"{j}.jar").exists() for j in JARS)


def ensure_hms(cache: Optional[Path] = None) -> Path:
    """Make sure the metastore's jars are in CACHE/jars and Java is installed; returns CACHE.

    The first call downloads the pyspark sdist (~430 MB) with pip, extracts the jars and
    deletes the tarball; later calls return at once. Concurrent callers wait on a lock.
    """
    cache = Path(cache) if cache else default_cache()
    jars = cache / "jars"
    ensure_java()
    if _jars_complete(jars):
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _jars_complete(jars):
            return cache
        _log(f"downloading {PYSPARK_REQUIREMENT} (sdist, ~430 MB) for the Hive Metastore jars")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="download-", dir=cache) as tmp:
            _pip_download_sdist(Path(tmp))
            tarball = next(Path(tmp).glob("pyspark-*.tar.gz"), None)
            if tarball is None:
                raise HmsStartError(f"pip download left no pyspark tarball in {tmp}: {os.listdir(tmp)}")
            staging = Path(tmp) / "jars"
            _extract_jars(tarball, staging)
            tarball.unlink()
            (staging / ".complete").write_text(PYSPARK_REQUIREMENT + "\n")
            if jars.exists():
                shutil.rmtree(jars)
            staging.rename(jars)
        _log(f"cached {len(JARS)} jars in {jars} ({time.monotonic() - started:.0f} s)")
    return cache


def _pip_download_sdist(dest: Path) -> None:
    # Building the sdist's metadata needs setuptools and wheel in this interpreter.
    missing = [m for m in ("setuptools", "wheel") if not _importable(m)]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *missing], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-cache-dir", "--no-deps", "--no-binary", ":all:", "--no-build-isolation", PYSPARK_REQUIREMENT, "-d", str(dest)],
        check=True,
    )


def _importable(module: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def _extract_jars(tarball: Path, out: Path) -> None:
    wanted = {f"{JARS_IN_SDIST}{j}.jar": f"{j}.jar" for j in JARS}
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tf:
        for member in tf:
            name = wanted.pop(member.name, None)
            if name is None or not member.isfile():
                continue
            src = tf.extractfile(member)
            assert src is not None
            with src, open(out / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            if not wanted:
                break
    if wanted:
        raise HmsStartError(f"{tarball.name} lacks jars: {sorted(wanted.values())}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))  # the metastore binds every interface
        except OSError:
            return False
    return True


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the Python process dies (Linux prctl),
    so a killed test run leaves no metastore holding its port and 260 MB."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _hive_site(settings: dict[str, str]) -> str:
    props = "\n".join(
        f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>" for k, v in settings.items()
    )
    return f'<?xml version="1.0"?>\n<configuration>\n{props}\n</configuration>\n'


class HiveMetastore:
    """One `HiveMetaStore` JVM with its own Derby database, warehouse and log.

        with HiveMetastore() as hms:
            hms.create_database("sales")
            ...  # connect to hms.uri

    `restart()` keeps the Derby database (and the port). `close()` (also at the end of
    the `with` block) stops it and deletes the directory it created, unless `keep=True`.
    The JVM is also stopped when the thread that started it ends (Linux PDEATHSIG), so a
    killed test run leaves no metastore behind: start it from a thread that outlives it.
    `hive_conf` adds hive-site.xml settings, `jvm_args` JVM options (after Pond's, so
    `-XX:TieredStopAtLevel=4` brings back the C2 compiler for long benchmark runs).

    `s3_buckets` lets tables and partitions live at `s3://` / `s3a://` locations in those
    buckets. The metastore itself only checks and creates directories at locations; the
    S3A connector (hadoop-aws) is not among the jars on PyPI, so for the metastore those
    schemes are mapped onto local directories `<base>/s3-shadow/<bucket>` with Hadoop's
    ViewFileSystemOverloadScheme (configuration only). The metastore stores the `s3a://`
    text as given; the data itself is written to and read from a real S3 server.
    """

    def __init__(self, base_dir: Optional[Path] = None, cache: Optional[Path] = None,
                 framed: bool = False, heap: str = "512m", keep: bool = False,
                 hive_conf: Optional[dict[str, str]] = None, jvm_args: Sequence[str] = (),
                 s3_buckets: Sequence[str] = ()):
        self.cache = Path(cache) if cache else default_cache()
        self.hive_conf = dict(hive_conf or {})
        self.jvm_args = list(jvm_args)
        self._own_dir = base_dir is None
        self.base = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="pond-hms-"))
        for scheme in ("s3", "s3a") if s3_buckets else ():
            self.hive_conf.setdefault(f"fs.{scheme}.impl", "org.apache.hadoop.fs.viewfs.ViewFileSystemOverloadScheme")
        for bucket in s3_buckets:
            shadow = self.base / "s3-shadow" / bucket
            shadow.mkdir(parents=True, exist_ok=True)
            self.hive_conf.setdefault(f"fs.viewfs.mounttable.{bucket}.linkMergeSlash", f"file://{shadow}")
        self.framed = framed
        self.heap = heap
        self.keep = keep
        self.port: Optional[int] = None
        self.proc: Optional[subprocess.Popen] = None
        self.startup_seconds: Optional[float] = None
        self.warehouse = self.base / "warehouse"
        self.db_path = self.base / "metastore_db"
        self.log_path = self.base / "hms.log"

    @property
    def uri(self) -> str:
        if self.port is None:
            raise HmsStartError("the metastore was never started")
        return f"thrift://127.0.0.1:{self.port}"

    def _write_conf(self) -> Path:
        conf = self.base / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        self.warehouse.mkdir(parents=True, exist_ok=True)
        settings = {
            "javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={self.db_path};create=true",
            "javax.jdo.option.ConnectionDriverName": "org.apache.derby.jdbc.EmbeddedDriver",
            "datanucleus.schema.autoCreateAll": "true",
            "hive.metastore.schema.verification": "false",
            "hive.metastore.warehouse.dir": f"file://{self.warehouse}",
            # Without this, log4j2's async logger wants com.lmax.disruptor (not in the jars).
            "hive.async.log.enabled": "false",
            # Otherwise every directory the metastore creates gets chmod/chown by forked
            # shell commands (Hadoop's local file system): the slowest part of add_partitions.
            "hive.warehouse.subdir.inherit.perms": "false",
            "hive.metastore.thrift.framed.transport.enabled": "true" if self.framed else "false",
            **self.hive_conf,
        }
        (conf / "hive-site.xml").write_text(_hive_site(settings))
        return conf

    def start(self, port: Optional[int] = None, timeout: float = 120.0) -> "HiveMetastore":
        if self.proc is not None and self.proc.poll() is None:
            raise HmsStartError(f"the metastore is already running on port {self.port}")
        ensure_hms(self.cache)
        self.port = port or self.port or free_port()
        conf = self._write_conf()
        cmd = [
            # C1 only and the serial collector: a short-lived JVM on a small machine starts
            # faster and spends less CPU compiling (add_partitions ran ~1.5x faster).
            ensure_java(), f"-Xmx{self.heap}", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
            # Hive's log4j2 file appender would write to /tmp/<user>/hive.log: keep it here.
            f"-Dhive.log.dir={self.base / 'logs'}", f"-Dderby.system.home={self.base}", *self.jvm_args,
            "-cp", f"{conf}:{self.cache / 'jars'}/*", MAIN_CLASS, "-p", str(self.port),
        ]
        if not _port_free(self.port):
            raise HmsStartError(f"port {self.port} is already in use; the metastore cannot listen there")
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.base, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        deadline = started + timeout
        while True:
            if self.proc.poll() is not None:
                raise HmsStartError(f"the metastore exited with {self.proc.returncode}; log tail:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise HmsStartError(f"the metastore did not listen on {self.port} within {timeout:.0f} s; "
                                    f"log tail:\n{self.log_tail()}")
            time.sleep(0.2)
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def restart(self, timeout: float = 120.0) -> "HiveMetastore":
        """Stop and start again on the same port with the same Derby database."""
        self.stop()
        return self.start(self.port, timeout)

    def close(self) -> None:
        self.stop()
        if self._own_dir and not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, n: int = 60) -> str:
        """The last lines of the JVM's output and of Hive's own log (logs/hive.log)."""
        parts = []
        for path in (self.log_path, self.base / "logs" / "hive.log"):
            try:
                lines = path.read_text(errors="replace").splitlines()[-n:]
            except OSError:
                continue
            parts.append(f"--- {path}\n" + "\n".join(lines))
        return "\n".join(parts) or "(no log)"

    def __enter__(self) -> "HiveMetastore":
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- Thrift client helpers (PyPI hmsclient) -------------------------------------

    @contextlib.contextmanager
    def client(self) -> Iterator["HMSClient"]:  # noqa: F821 (hmsclient is imported lazily)
        """An open `hmsclient.HMSClient` (a ThriftHiveMetastore.Client) for this metastore."""
        from hmsclient import HMSClient
        from thrift.protocol import TBinaryProtocol
        from thrift.transport import TSocket, TTransport

        sock = TSocket.TSocket("127.0.0.1", self.port)
        sock.setTimeout(600_000)
        trans = TTransport.TFramedTransport(sock) if self.framed else TTransport.TBufferedTransport(sock)
        client = HMSClient(iprot=TBinaryProtocol.TBinaryProtocol(trans))
        client.open()
        try:
            yield client
        finally:
            client.close()

    def create_database(self, name: str, location: Optional[str] = None, description: str = "") -> None:
        from hmsclient.genthrift.hive_metastore.ttypes import Database

        with self.client() as c:
            c.create_database(Database(name=name, description=description, locationUri=location, parameters={}))

    def create_trap_table(self, db: str, name: str, root: Path, partitions: int, good: int) -> None:
        """Table `name` under `root/name`, partitioned by `region` (r0, r1, ...): every
        partition holds a file that is not Parquet at all except `r<good>` (one row, v = 42).
        A query that lists or reads any other partition fails, so a right answer proves pruning."""
        import duckdb

        parts = []
        for i in range(partitions):
            loc = Path(root) / name / f"region=r{i}"
            loc.mkdir(parents=True, exist_ok=True)
            if i == good:
                duckdb.sql(f"COPY (SELECT 42 AS v) TO '{loc / 'good.parquet'}' (FORMAT parquet)")
            else:
                (loc / "bad.parquet").write_bytes(b"this is not a parquet file")
            parts.append(([f"r{i}"], loc))
        self.create_table(db, name, [("v", "int")], partition_keys=[("region", "string")], location=Path(root) / name)
        self.add_partitions(db, name, parts)

    def create_table(self, db: str, name: str, columns: Sequence[tuple[str, str]],
                     partition_keys: Sequence[tuple[str, str]] = (), location: Optional[str | Path] = None,
                     fmt: str = "parquet", serde_params: Optional[dict[str, str]] = None,
                     table_params: Optional[dict[str, str]] = None, external: bool = True) -> None:
        """Register a table the way Hive's DDL would (see FORMATS for the classes per format).

        `location` is a path or URI (paths become `file:` URIs); None lets the metastore
        choose `<warehouse>/<db>.db/<name>`. `fmt='csv'` sets `field.delim` ','; `'text'`
        leaves Hive's default \\x01. `serde_params` override or add SerDe parameters.
        """
        from hmsclient.genthrift.hive_metastore.ttypes import Table

        params = dict(table_params or {})
        if external:
            params.setdefault("EXTERNAL", "TRUE")
        table = Table(
            dbName=db, tableName=name, owner="pond-tests", createTime=int(time.time()), lastAccessTime=0,
            retention=0, sd=_storage_descriptor(columns, _location_uri(location), fmt, serde_params),
            partitionKeys=_field_schemas(partition_keys), parameters=params,
            tableType="EXTERNAL_TABLE" if external else "MANAGED_TABLE",
        )
        with self.client() as c:
            c.create_table(table)

    def add_partitions(self, db: str, table: str,
                       partitions: Iterable[tuple[Sequence[object], Optional[str | Path]]],
                       batch: int = 1000) -> int:
        """Add partitions given as (values, location); location None = `<table>/k=v/...`.

        Values are turned into strings (Hive stores partition values as text). Sent in
        `add_partitions_req` batches without asking for the result back. Returns the count.
        """
        from hmsclient.genthrift.hive_metastore.ttypes import AddPartitionsRequest, Partition

        count = 0
        with self.client() as c:
            t = c.get_table(db, table)
            now = int(time.time())
            pending: list[Partition] = []

            def flush() -> None:
                nonlocal pending
                if pending:
                    c.add_partitions_req(AddPartitionsRequest(dbName=db, tblName=table, parts=pending,
                                                              ifNotExists=False, needResult=False))
                    pending = []

            for values, location in partitions:
                sd = _copy_sd(t.sd, _location_uri(location))
                pending.append(Partition(values=[_hive_value(v) for v in values], dbName=db, tableName=table,
                                         createTime=now, lastAccessTime=0, sd=sd, parameters={}))
                count += 1
                if len(pending) >= batch:
                    flush()
            flush()
        return count

    def add_partitions_bulk(self, db: str, table: str, values: Iterable[Sequence[object]],
                            batch: int = 1000, location_fn=None, report=True) -> float:
        """The benchmark's path to 100,000 partitions: batched `add_partitions_req`.

        `location_fn(values)` gives each partition's location; by default
        `<table location>/k=v/...` (Hive's layout and escaping), created here first so
        the metastore finds the directory instead of creating it. Prints and returns
        the seconds it took.
        """
        started = time.monotonic()
        if location_fn is None:
            with self.client() as c:
                t = c.get_table(db, table)
            root = _local_path(t.sd.location)
            keys = [k.name for k in t.partitionKeys]
            if root is not None:
                def location_fn(v, root=root, keys=keys):
                    path = root.joinpath(*(f"{escape_path_name(k)}={escape_path_name(_hive_value(x))}" for k, x in zip(keys, v)))
                    path.mkdir(parents=True, exist_ok=True)
                    return path
        parts = ((v, location_fn(v) if location_fn else None) for v in values)
        n = self.add_partitions(db, table, parts, batch=batch)
        took = time.monotonic() - started
        if report:
            print(f"added {n} partitions to {db}.{table} in {took:.1f} s ({n / max(took, 1e-9):.0f}/s, "
                  f"batches of {batch})", flush=True)
        return took


# Characters Hive escapes as %XX in partition directory names (FileUtils.escapePathName).
_PATH_ESCAPES = frozenset([chr(c) for c in range(1, 0x20)] + list('"#%\'*/:=?\\{[]^') + ["\x7f"])


def escape_path_name(text: str) -> str:
    """A partition key or value as Hive writes it in a directory name (`a/b` -> `a%2Fb`)."""
    return "".join(f"%{ord(ch):02X}" if ch in _PATH_ESCAPES else ch for ch in text)


def _local_path(uri: Optional[str]) -> Optional[Path]:
    """The local path of a `file:` location, else None."""
    if not uri or not uri.startswith("file:"):
        return None
    return Path("/" + uri[len("file:"):].lstrip("/"))


def _location_uri(location: Optional[str | Path]) -> Optional[str]:
    if location is None:
        return None
    text = str(location)
    if "://" in text or text.startswith("file:"):
        return text
    # Not Path.as_uri(): the metastore takes the text literally (as Hadoop's Path does),
    # so %-escapes would end up in directory names.
    return f"file:{Path(text).resolve()}"


def _hive_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _field_schemas(cols: Sequence[tuple[str, str]]):
    from hmsclient.genthrift.hive_metastore.ttypes import FieldSchema

    return [FieldSchema(name=n, type=t, comment=None) for n, t in cols]


def _storage_descriptor(columns, location, fmt, serde_params):
    from hmsclient.genthrift.hive_metastore.ttypes import SerDeInfo, StorageDescriptor

    try:
        input_format, output_format, serde = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown table format {fmt!r}; one of {sorted(FORMATS)}") from None
    params = {"serialization.format": "1"}
    if fmt == "csv":
        params.update({"field.delim": ",", "serialization.format": ","})
    params.update(serde_params or {})
    return StorageDescriptor(
        cols=_field_schemas(columns), location=location, inputFormat=input_format, outputFormat=output_format,
        compressed=False, numBuckets=-1, serdeInfo=SerDeInfo(name=None, serializationLib=serde, parameters=params),
        bucketCols=[], sortCols=[], parameters={}, storedAsSubDirectories=False,
    )


def _copy_sd(sd, location):
    from hmsclient.genthrift.hive_metastore.ttypes import SerDeInfo, StorageDescriptor

    return StorageDescriptor(
        cols=sd.cols, location=location, inputFormat=sd.inputFormat, outputFormat=sd.outputFormat,
        compressed=sd.compressed, numBuckets=sd.numBuckets,
        serdeInfo=SerDeInfo(name=sd.serdeInfo.name, serializationLib=sd.serdeInfo.serializationLib,
                            parameters=dict(sd.serdeInfo.parameters or {})),
        bucketCols=sd.bucketCols or [], sortCols=sd.sortCols or [], parameters={},
        storedAsSubDirectories=False,
    )


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download and cache the metastore's jars (and Java) only")
    serve = sub.add_parser("serve", help="run a metastore until interrupted")
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--dir", type=Path, default=None, help="Derby database, warehouse and log (default: a temp dir)")
    serve.add_argument("--framed", action="store_true", help="framed Thrift transport instead of buffered")
    args = parser.parse_args(argv)

    if args.command == "fetch":
        print(ensure_hms() / "jars")
        return 0

    hms = HiveMetastore(base_dir=args.dir, framed=args.framed)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        hms.start(args.port)
        print(hms.uri, flush=True)
        _log(f"listening after {hms.startup_seconds:.1f} s; dir {hms.base}, log {hms.log_path}")
        while not stop and hms.proc is not None and hms.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        hms.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
