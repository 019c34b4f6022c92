//! Time-series ingest: InfluxDB line protocol into one DuckDB table per
//! measurement, acknowledged only after the write-ahead log is on disk.
//!
//! It owns the path of a write after authentication: body decompression
//! ([`decode_body`]), parsing into per-measurement Arrow batches (`batch.rs`,
//! `msgpack.rs`, using `pond-lineproto`), grant checks, the write-ahead log
//! with group commit (`wal.rs`), the single writer thread that checks rows
//! against their measurement and keeps them in the hot store (`writer.rs`,
//! `hot.rs`), and the lake thread that flushes them into DuckLake and
//! compacts it (`lake.rs`). It does not speak HTTP (that is `pond-http`) and
//! does not own databases (that is `pond-engine`).
//!
//! Path of a write ([`Ingester::write`]): parse and check → queue to the
//! writer thread → the writer takes every queued request, appends one log
//! record each, starts one `fdatasync` for all of them and meanwhile checks
//! the rows and appends them to the hot store (memory; measurement views read
//! it through `pond_hot`) → once both finished, every request of the group is
//! answered. An acknowledged write is therefore visible to the next query and
//! in the log. The lake thread flushes hot rows by size and age; a log
//! segment is deleted once the lake holds all of its records. At start the
//! log is replayed (records above the generation their lake recorded), the
//! replayed rows are flushed and the log emptied: nothing is applied twice,
//! whatever the moment of a crash.
//!
//! Start with [`Ingester::open`] and [`Ingester::write`].

pub mod batch;
pub mod hot;
pub mod json;
pub mod lake;
pub mod msgpack;
pub mod wal;
pub mod writer;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use parking_lot::Mutex;
use pond_auth::{Identity, Privilege};
use pond_engine::Engine;
pub use pond_lineproto::Precision;
pub use wal::{Format, SyncMode};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database '{0}' does not exist (create it with CREATE DATABASE, or let a superuser's first write create it)")]
    DatabaseNotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("request body is larger than {0} bytes (after decompression); split the batch")]
    TooLarge(usize),
    #[error("ingest queue is full; retry shortly")]
    Busy,
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    DuckDb(String),
    #[error(transparent)]
    Engine(#[from] pond_engine::Error),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.display().to_string(), source }
    }
}

impl From<duckdb::Error> for Error {
    fn from(e: duckdb::Error) -> Self {
        Error::DuckDb(e.to_string())
    }
}

impl From<pond_lake::Error> for Error {
    fn from(e: pond_lake::Error) -> Self {
        match e {
            pond_lake::Error::DuckDb(m) => Error::DuckDb(m),
            pond_lake::Error::Io { path, source } => Error::Io { path, source },
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::Internal(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A rejected line, as InfluxDB 3 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line_number: usize,
    pub original_line: String,
    pub error_message: String,
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Directory of the write-ahead log (`<data-dir>/ingest`).
    pub dir: PathBuf,
    pub sync: SyncMode,
    /// Unknown databases are created by a superuser's first write (InfluxDB's behaviour).
    pub create_databases: bool,
    /// Largest decompressed body.
    pub max_body_bytes: usize,
    /// Requests waiting for the writer before new ones get "busy" (503).
    pub queue_depth: usize,
    /// A log segment is closed once it is larger than this; closed segments
    /// are deleted once the lake holds their records (a flush round is started
    /// when they add up to more than this).
    pub wal_truncate_bytes: u64,
    /// Rows held in memory (flushed or not) before writes get "busy" (503).
    pub max_hot_rows: u64,
    /// A database's buffer is flushed to its lake once it holds this many rows…
    pub flush_rows: u64,
    /// …or its oldest unflushed row is this old.
    pub flush_interval: std::time::Duration,
    /// Compaction (retention, file merging, snapshot expiry, file cleanup) of
    /// every lake runs this often; `None`: only on demand.
    pub compact_interval: Option<std::time::Duration>,
    /// Files a compaction replaced are deleted once they are this old (running
    /// queries may still read them); 0 deletes them at once.
    pub cleanup_grace: std::time::Duration,
    /// Lake snapshots younger than this are kept at compaction, for
    /// point-in-time reads (`AT (TIMESTAMP => …)`); 0 keeps only the current one.
    pub snapshot_retention: std::time::Duration,
    /// Threads encoding a flush's Parquet files at once (below the request
    /// path's CPU priority).
    pub flush_workers: usize,
    /// Who encodes flushed files; `None`: arrow-rs for a local data path,
    /// DuckDB's COPY for S3.
    pub encoder: Option<lake::Encoder>,
    /// Files merged into one per compaction step (bounds its memory and how
    /// long a flush may wait for it).
    pub compact_max_files: u64,
}

impl IngestConfig {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("ingest"),
            sync: SyncMode::Fdatasync,
            create_databases: true,
            max_body_bytes: 64 * 1024 * 1024,
            queue_depth: 1024,
            wal_truncate_bytes: 64 * 1024 * 1024,
            max_hot_rows: 16_000_000,
            flush_rows: 1_000_000,
            flush_interval: std::time::Duration::from_secs(60),
            compact_interval: Some(std::time::Duration::from_secs(3600)),
            cleanup_grace: std::time::Duration::from_secs(60),
            snapshot_retention: std::time::Duration::ZERO,
            flush_workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            encoder: None,
            compact_max_files: 64,
        }
    }
}

/// One request to write.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub database: String,
    /// Line protocol or an Arc MessagePack body.
    pub format: Format,
    /// Line protocol only.
    pub precision: Precision,
    /// Decoded (decompressed) body.
    pub body: Vec<u8>,
    /// Acknowledge without waiting for the log sync.
    pub no_sync: bool,
    /// Write the good lines when some are bad (false: all or nothing).
    pub accept_partial: bool,
}

/// What happened to a request's lines.
#[derive(Debug, Clone, Default)]
pub struct WriteOutcome {
    pub lines_written: usize,
    pub errors: Vec<LineError>,
}

enum Msg {
    Write(Job),
    /// Stop the writer; the sender is answered once its connection is closed.
    Stop(std::sync::mpsc::Sender<()>),
}

/// A lake operation for the lake thread, and where to answer.
enum Task {
    Flush { database: Option<String>, reply: tokio::sync::oneshot::Sender<Result<Vec<lake::FlushReport>>> },
    Compact { database: Option<String>, reply: tokio::sync::oneshot::Sender<Result<Vec<lake::CompactReport>>> },
    Stop(std::sync::mpsc::Sender<()>),
}

/// Flush and compaction counters for the status endpoint.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LakeStatus {
    pub flushes: u64,
    pub flushed_rows: u64,
    pub last_flush_at: Option<String>,
    pub compactions: u64,
    pub last_compaction_at: Option<String>,
    pub last_error: Option<String>,
    pub flush_rows: u64,
    pub flush_interval_seconds: u64,
    pub compact_interval_seconds: Option<u64>,
    /// Rows in memory (unflushed, and flushed ones not yet released).
    pub hot_rows: u64,
    /// Rows in memory the lake does not have yet (what `max_hot_rows` bounds).
    pub unflushed_rows: u64,
    /// Who encodes flushed Parquet files.
    pub encoder: Option<lake::Encoder>,
    /// Bytes of closed log segments waiting for the lake.
    pub wal_closed_bytes: u64,
}

struct Job {
    database: String,
    /// What the log records (see [`database_id_of`]).
    database_id: String,
    format: Format,
    precision: Precision,
    default_time: i64,
    lines: Vec<u8>,
    tables: Vec<batch::TableBatch>,
    no_sync: bool,
    reply: tokio::sync::oneshot::Sender<Result<Vec<LineError>>>,
}

/// See [`Ingester::pause_lake`].
pub struct LakePause<'a> {
    _guard: parking_lot::MutexGuard<'a, ()>,
}

/// The ingest service; cheap to clone.
#[derive(Clone)]
pub struct Ingester {
    inner: Arc<Inner>,
}

/// What the writer and lake threads share.
struct Shared {
    store: Arc<hot::HotStore>,
    /// Every log record up to this sequence is in the hot store (or was refused).
    applied_upto: AtomicU64,
    /// Every log record up to this sequence is in the lake.
    flushed_upto: AtomicU64,
    /// Bytes of closed log segments (the writer's count).
    wal_closed_bytes: AtomicU64,
    /// Taken by lake DDL on the writer thread and by flushes and compactions.
    lake_lock: Mutex<()>,
    status: Mutex<LakeStatus>,
}

struct Inner {
    engine: Engine,
    config: IngestConfig,
    tx: SyncSender<Msg>,
    tasks: std::sync::mpsc::Sender<Task>,
    /// Table lookups for grant checks (off the writer thread).
    lookup: Mutex<duckdb::Connection>,
    shared: Arc<Shared>,
}

impl Ingester {
    /// Registers `pond_hot`, moves older buffer tables into the lake, replays
    /// the log into memory, flushes what it replayed, empties the log and
    /// starts the writer and lake threads.
    pub fn open(engine: Engine, config: IngestConfig) -> Result<Self> {
        let (mut log, records) = wal::Wal::open(&config.dir)?;
        let conn = engine.internal_connection()?;
        let store = hot::HotStore::new();
        hot::register(&conn, store.clone())?;
        let shared = Arc::new(Shared {
            store: store.clone(),
            applied_upto: AtomicU64::new(0),
            flushed_upto: AtomicU64::new(0),
            wal_closed_bytes: AtomicU64::new(0),
            lake_lock: Mutex::new(()),
            status: Mutex::new(LakeStatus {
                flush_rows: config.flush_rows,
                flush_interval_seconds: config.flush_interval.as_secs(),
                compact_interval_seconds: config.compact_interval.map(|d| d.as_secs()),
                ..Default::default()
            }),
        });
        if let Err(e) = engine.lake_available() {
            // Without the lake nothing can be replayed or flushed, and nothing may
            // be lost: the log stays as it is (with nothing applied or flushed, no
            // segment is released) and writes are refused until a restart with it.
            if !records.is_empty() {
                tracing::warn!(records = records.len(), "write-ahead log kept unreplayed for a start with the lake: {e}");
            }
            let seq = records.iter().map(|r| r.seq).max().unwrap_or(0);
            return Self::spawn(engine, config, conn, log, shared, seq);
        }
        let opts = flush_options(&engine, &config);
        shared.status.lock().encoder = Some(opts.encoder);
        // Files of a flush that a crash stopped before its registration commit
        // belong to no snapshot: delete them before the log is replayed (which
        // writes those rows again), so none is ever registered twice.
        // Nodes sharing the lake: another node's files are unregistered between
        // their write and its commit, so only old unregistered files are orphans
        // (this node's younger ones go at a later start or compaction).
        let orphan_age = engine.cluster().map(|_| CLUSTER_ORPHAN_AGE_SECS);
        let orphans = pond_lake::files::remove_orphans(&conn, pond_engine::lake::LAKE_ALIAS, orphan_age)?;
        if !orphans.is_empty() {
            tracing::info!(files = orphans.len(), "unregistered lake files of an interrupted flush deleted");
        }
        let ids: HashMap<String, String> = engine.databases().into_iter().filter_map(|d| Some((database_id_of(&d)?, d.name))).collect();
        let lake_schemas = existing_lake_schemas(&conn)?;
        // Flushed generation per database id, for the lakes that exist.
        let mut flushed: HashMap<String, u64> = HashMap::new();
        let mut last_seq = 0u64;
        for (id, db) in &ids {
            let has_buffers = lake::has_buffer_tables(&conn, db)?;
            if !lake_schemas.contains(id) && !has_buffers {
                continue;
            }
            let lake_part = engine.attach_lake(db)?;
            if has_buffers {
                let moved = lake::migrate_buffer_tables(&conn, db, &lake_part)?;
                tracing::info!(database = %db, rows = moved, "buffer tables of an older version moved into the lake");
            }
            let g = lake::flushed_gen(&conn, &lake_part)?;
            last_seq = last_seq.max(g);
            flushed.insert(id.clone(), g);
        }
        let mut replayed = 0usize;
        for rec in &records {
            last_seq = last_seq.max(rec.seq);
            // Records name the database by its file id: a rename since the write
            // still finds it, and a dropped database (even if one of the same
            // name was created since) gets nothing.
            let Some(db) = ids.get(&rec.database).cloned() else {
                tracing::warn!(database_id = %rec.database, seq = rec.seq, "write-ahead log record for a database that no longer exists; skipped");
                continue;
            };
            let done = flushed.get(&rec.database).copied().unwrap_or(0);
            if rec.seq <= done {
                continue;
            }
            let parsed = parse(rec.format, rec.lines.clone(), rec.precision, rec.default_time)?;
            let lake_part = engine.attach_lake(&db)?;
            let target = writer::Target {
                db: &db,
                db_id: &rec.database,
                lake: &lake_part,
                lake_lock: &shared.lake_lock,
                shared_lake: engine.cluster().is_some(),
            };
            writer::apply(&conn, &store, &target, vec![(parsed.tables, &parsed.good_lines)], rec.seq)?;
            replayed += 1;
        }
        if replayed > 0 {
            // Into the lake now, so the log can be emptied.
            for id in store.database_ids() {
                let Some(db) = ids.get(&id) else { continue };
                let lake_part = engine.attach_lake(db)?;
                lake::flush(&conn, &store, db, &id, &lake_part, last_seq, &opts)?;
            }
            store.retire(std::time::Duration::ZERO, None);
            engine.catalog_changed();
        }
        if !records.is_empty() {
            tracing::info!(records = records.len(), replayed, "write-ahead log replayed");
        }
        log.truncate()?;
        if engine.cluster().is_some() {
            // Measurements other nodes made while this one was down get their views before it serves.
            let made = lake::sync_views(&conn, &engine)?;
            if made > 0 {
                engine.catalog_changed();
            }
        }
        shared.applied_upto.store(last_seq, Ordering::Release);
        shared.flushed_upto.store(last_seq, Ordering::Release);
        Self::spawn(engine, config, conn, log, shared, last_seq)
    }

    /// Starts the writer thread (numbering log records after `seq`) and the lake thread.
    fn spawn(engine: Engine, config: IngestConfig, conn: duckdb::Connection, log: wal::Wal, shared: Arc<Shared>, seq: u64) -> Result<Self> {
        let (tx, rx) = sync_channel(config.queue_depth);
        let (tasks, task_rx) = std::sync::mpsc::channel();
        let lookup = Mutex::new(engine.internal_connection()?);
        let compactor_tasks = tasks.clone();
        let inner = Arc::new(Inner { engine: engine.clone(), config: config.clone(), tx, tasks, lookup, shared: shared.clone() });
        let next_compaction = config.compact_interval.map(|d| std::time::Instant::now() + d);
        let (compact_tx, compact_rx) = std::sync::mpsc::channel();
        let compactor = Compactor {
            engine: engine.clone(),
            conn: engine.internal_connection()?,
            config: config.clone(),
            shared: shared.clone(),
            tasks: compactor_tasks,
        };
        let flusher = LakeLoop {
            engine: engine.clone(),
            conn: engine.internal_connection()?,
            opts: flush_options(&engine, &config),
            config: config.clone(),
            shared: shared.clone(),
            next_compaction,
            compactor: compact_tx,
            // The first look comes at once (a restarted node may lack views made meanwhile).
            next_view_sync: std::time::Instant::now().checked_sub(VIEW_SYNC_EVERY).unwrap_or_else(std::time::Instant::now),
        };
        let w = WriterLoop { engine, conn, log, seq, config, shared, db_ids: HashMap::new() };
        std::thread::Builder::new()
            .name("pond-ingest".into())
            .spawn(move || w.run(rx))
            .map_err(|e| Error::Internal(format!("cannot start the ingest writer: {e}")))?;
        std::thread::Builder::new()
            .name("pond-lake".into())
            .spawn(move || flusher.run(task_rx))
            .map_err(|e| Error::Internal(format!("cannot start the lake thread: {e}")))?;
        std::thread::Builder::new()
            .name("pond-compact".into())
            .spawn(move || compactor.run(compact_rx))
            .map_err(|e| Error::Internal(format!("cannot start the compaction thread: {e}")))?;
        Ok(Self { inner })
    }

    pub fn config(&self) -> &IngestConfig {
        &self.inner.config
    }

    /// Holds the lake still for a backup: while the guard lives no flush
    /// registers files or advances the flushed sequence (so no log segment
    /// is deleted) and no compaction step, retention or cleanup changes or
    /// deletes a file. Writes go on: they are logged and held in memory.
    pub fn pause_lake(&self) -> LakePause<'_> {
        LakePause { _guard: self.inner.shared.lake_lock.lock() }
    }

    /// Flush and compaction counters.
    pub fn lake_status(&self) -> LakeStatus {
        let sh = &self.inner.shared;
        let mut st = sh.status.lock().clone();
        st.hot_rows = sh.store.rows();
        st.unflushed_rows = sh.store.unflushed_rows();
        st.wal_closed_bytes = sh.wal_closed_bytes.load(Ordering::Relaxed);
        st
    }

    /// Resolves a database the identity may manage (superuser, or WRITE on it).
    fn managed_database(&self, identity: &Identity, name: &str) -> Result<String> {
        let db = self.inner.engine.resolve_database(name).map_err(|_| Error::DatabaseNotFound(name.to_string()))?;
        if !self.inner.engine.authenticator().policy().allows(identity, &db, None, Privilege::Create) {
            return Err(Error::PermissionDenied(format!("permission denied for database {db} (needs WRITE on it or a superuser)")));
        }
        Ok(db)
    }

    fn task_targets(&self, identity: &Identity, database: Option<&str>) -> Result<Option<String>> {
        match database {
            Some(d) => Ok(Some(self.managed_database(identity, d)?)),
            None if identity.effective_superuser() => Ok(None),
            None => Err(Error::PermissionDenied("permission denied: only superusers act on every database (name one)".into())),
        }
    }

    /// Flushes every database's hot rows into the lake now, from a thread
    /// that is not async (a cluster-wide flush request from another node).
    pub fn flush_all_blocking(&self) -> Result<Vec<lake::FlushReport>> {
        self.inner.engine.lake_available()?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send_task(Task::Flush { database: None, reply })?;
        rx.blocking_recv().map_err(|_| Error::Internal("the ingest writer has stopped".into()))?
    }

    /// Asks every node sharing the lake to flush its hot rows (this one
    /// first) and waits up to `wait` until each has: afterwards a query on
    /// any node sees every row acknowledged anywhere before the call.
    /// Superusers only. Returns the nodes that are up but did not answer in time.
    pub async fn flush_all_nodes(&self, identity: &Identity, wait: std::time::Duration) -> Result<Vec<String>> {
        if !identity.effective_superuser() {
            return Err(Error::PermissionDenied("permission denied: only superusers flush every node".into()));
        }
        let Some(cluster) = self.inner.engine.cluster().cloned() else {
            return Err(Error::InvalidRequest("nodes=all: this server is not a node of a cluster (--node-id)".into()));
        };
        tokio::task::spawn_blocking(move || cluster.flush_all(wait))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::Engine(pond_engine::Error::Unavailable(e.to_string())))
    }

    /// Flushes the buffer of one database (or all) into its lake now.
    pub async fn flush(&self, identity: &Identity, database: Option<&str>) -> Result<Vec<lake::FlushReport>> {
        self.inner.engine.lake_available()?;
        let database = self.task_targets(identity, database)?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send_task(Task::Flush { database, reply })?;
        rx.await.map_err(|_| Error::Internal("the ingest writer has stopped".into()))?
    }

    /// Compacts the lake of one database (or all) now (retention included).
    pub async fn compact(&self, identity: &Identity, database: Option<&str>) -> Result<Vec<lake::CompactReport>> {
        self.inner.engine.lake_available()?;
        let database = self.task_targets(identity, database)?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send_task(Task::Compact { database, reply })?;
        rx.await.map_err(|_| Error::Internal("the ingest writer has stopped".into()))?
    }

    fn send_task(&self, t: Task) -> Result<()> {
        self.inner.tasks.send(t).map_err(|_| Error::Internal("the lake thread has stopped".into()))
    }

    /// Sets the retention of a measurement (or with `None` for measurement,
    /// of the whole database); `seconds` `None` removes it. Needs WRITE.
    pub async fn set_retention(&self, identity: &Identity, database: &str, measurement: Option<&str>, seconds: Option<i64>) -> Result<()> {
        self.inner.engine.lake_available()?;
        let db = self.managed_database(identity, database)?;
        if let Some(s) = seconds {
            if s <= 0 {
                return Err(Error::InvalidRequest(format!("retention must be a positive number of seconds (got {s})")));
            }
        }
        let engine = self.inner.engine.clone();
        let m = measurement.unwrap_or("*").to_string();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let alias = engine.attach_lake(&db)?;
            let conn = engine.internal_connection()?;
            Ok(lake::set_retention(&conn, &alias, &m, seconds)?)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Measurements the identity may see (SELECT on the view, or the database
    /// through a database grant), with rows, files and bytes.
    pub async fn measurements(&self, identity: &Identity, database: Option<&str>) -> Result<Vec<lake::MeasurementInfo>> {
        self.inner.engine.lake_available()?;
        let engine = self.inner.engine.clone();
        let policy = engine.authenticator().policy();
        let dbs: Vec<String> = match database {
            Some(d) => vec![engine.resolve_database(d).map_err(|_| Error::DatabaseNotFound(d.to_string()))?],
            None => engine.databases().into_iter().map(|d| d.name).collect(),
        };
        let id = identity.clone();
        let store = self.inner.shared.store.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<lake::MeasurementInfo>> {
            let conn = engine.internal_connection()?;
            let schemas = existing_lake_schemas(&conn)?;
            let mut out = Vec::new();
            for db in dbs {
                if !policy.allows(&id, &db, None, Privilege::Usage) {
                    continue;
                }
                let file_id = engine.database_file_id(&db)?;
                if !schemas.contains(&file_id) {
                    continue;
                }
                let alias = engine.attach_lake(&db)?;
                for m in lake::measurement_infos(&conn, &store, &db, &file_id, &alias)? {
                    if policy.allows(&id, &db, Some(("main", &m.name)), Privilege::Select) {
                        out.push(m);
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Stops the writer after the writes queued before this call; later
    /// writes fail. Blocks until the writer's DuckDB connection is closed.
    pub fn shutdown(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.inner.tx.send(Msg::Stop(tx)).is_ok() {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(30));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        if self.inner.tasks.send(Task::Stop(tx)).is_ok() {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(30));
        }
    }

    /// Resolves the target database, creating it when allowed.
    async fn database(&self, identity: &Identity, name: &str) -> Result<String> {
        if name.is_empty() {
            return Err(Error::InvalidRequest("no database given (db=, bucket= or the x-arc-database header)".into()));
        }
        if let Ok(db) = self.inner.engine.resolve_database(name) {
            return Ok(db);
        }
        if !(self.inner.config.create_databases && identity.effective_superuser()) {
            return Err(Error::DatabaseNotFound(name.to_string()));
        }
        let engine = self.inner.engine.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || -> Result<String> {
            engine.create_database(&n, true)?;
            Ok(engine.resolve_database(&n)?)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// `CREATE DATABASE` on behalf of InfluxDB v1's `/query` (superusers only).
    pub async fn create_database(&self, identity: &Identity, name: &str) -> Result<()> {
        if !identity.effective_superuser() {
            if self.inner.engine.database_exists(name) {
                return Ok(());
            }
            return Err(Error::PermissionDenied(format!("permission denied: only superusers create databases ('{name}')")));
        }
        let engine = self.inner.engine.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || engine.create_database(&n, true).map(|_| ()))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(Error::from)
    }

    /// Parses, checks and writes a body; returns after the write is committed
    /// and (unless `no_sync` or async mode) the log is synced.
    pub async fn write(&self, identity: &Identity, req: WriteRequest) -> Result<WriteOutcome> {
        // Before anything is created or logged: a refused write leaves no trace
        // (a retried one is not stored twice once the lake is back).
        self.inner.engine.lake_available()?;
        let db = self.database(identity, &req.database).await?;
        let policy = self.inner.engine.authenticator().policy();
        if !policy.allows(identity, &db, None, Privilege::Usage) {
            return Err(Error::PermissionDenied(format!("permission denied for database {db}")));
        }
        let database_id = self
            .inner
            .engine
            .databases()
            .iter()
            .find(|d| d.name == db)
            .and_then(database_id_of)
            .ok_or_else(|| Error::DatabaseNotFound(db.clone()))?;
        let default_time = now_nanos();
        let inner = self.inner.clone();
        let id = identity.clone();
        let db2 = db.clone();
        let database_id2 = database_id.clone();
        let precision = req.precision;
        let format = req.format;
        let parsed = tokio::task::spawn_blocking(move || -> Result<batch::ParsedBody> {
            let parsed = parse(format, req.body, precision, default_time)?;
            if !id.effective_superuser() {
                let conn = inner.lookup.lock();
                for t in &parsed.tables {
                    let shape = writer::main_object_exists(&conn, &db2, &t.measurement)?;
                    let write = policy.allows(&id, &db2, None, Privilege::Create);
                    let (ok, need) = match &shape {
                        Some(s) if write || !policy.allows(&id, &db2, Some(("main", s)), Privilege::Insert) => {
                            (write, "INSERT on the table or WRITE on the database".to_string())
                        }
                        // INSERT alone may add rows, not columns: a new tag or
                        // field changes the table, which needs WRITE.
                        Some(s) => match new_column(&inner, &conn, &database_id2, s, t)? {
                            Some(c) => (false, format!("WRITE on the database to add column '{c}'; INSERT only adds rows")),
                            None => (true, String::new()),
                        },
                        None => (write, "WRITE on the database to create it".to_string()),
                    };
                    if !ok {
                        let e = Error::PermissionDenied(format!(
                            "permission denied for measurement {db2}.main.{} (needs {need})",
                            t.measurement
                        ));
                        inner.engine.authenticator().audit().record(
                            pond_auth::AuditEvent::new("denied", false, format!("{e}; line protocol write"))
                                .user(&id.user)
                                .protocol("http"),
                        );
                        return Err(e);
                    }
                }
            }
            Ok(parsed)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let mut outcome = WriteOutcome { lines_written: 0, errors: parsed.errors };
        if (!outcome.errors.is_empty() && !req.accept_partial) || parsed.rows == 0 {
            return Ok(outcome);
        }
        if self.inner.shared.store.unflushed_rows() > self.inner.config.max_hot_rows {
            // The lake thread has not caught up: the client retries later.
            return Err(Error::Busy);
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            database: db,
            database_id,
            format,
            precision,
            default_time,
            lines: parsed.good_lines,
            tables: parsed.tables,
            no_sync: req.no_sync,
            reply,
        };
        match self.inner.tx.try_send(Msg::Write(job)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(Error::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(Error::Internal("the ingest writer has stopped".into())),
        }
        let rejected = rx.await.map_err(|_| Error::Internal("the ingest writer has stopped".into()))??;
        outcome.lines_written = parsed.rows - rejected.len();
        outcome.errors.extend(rejected);
        outcome.errors.sort_by_key(|e| e.line_number);
        Ok(outcome)
    }
}

/// Import jobs (`pond-jobs`) write measurements through the same path as an
/// HTTP write, as the job's owner: from their own thread, so the write runs
/// on Pond's I/O runtime and the thread waits for it.
impl pond_engine::LineWriter for Ingester {
    fn write_lines(
        &self,
        identity: &Identity,
        database: &str,
        lines: Vec<u8>,
    ) -> Result<Vec<(usize, String)>, pond_engine::LineWriteError> {
        let me = self.clone();
        let identity = identity.clone();
        let req = WriteRequest {
            database: database.to_string(),
            format: Format::LineProtocol,
            precision: Precision::Nanosecond,
            body: lines,
            no_sync: false,
            accept_partial: false,
        };
        match pond_rt::wait(async move { me.write(&identity, req).await }) {
            Ok(outcome) => Ok(outcome.errors.into_iter().map(|e| (e.line_number, e.error_message)).collect()),
            Err(Error::Busy) => Err(pond_engine::LineWriteError::Busy),
            Err(e) => Err(pond_engine::LineWriteError::Failed(e.to_string())),
        }
    }
}

/// The first tag or field of `t` that measurement `name` of database file
/// id `db_id` does not have yet (`None`: all exist, or the measurement is
/// unknown and the writer will say why).
fn new_column(inner: &Inner, conn: &duckdb::Connection, db_id: &str, name: &str, t: &batch::TableBatch) -> Result<Option<String>> {
    let known = match inner.shared.store.table(db_id, name) {
        Some(h) => h.columns(),
        None => match writer::lake_shape(conn, &inner.engine.lake_for_id(db_id), name)? {
            Some((_, cols)) => cols,
            None => return Ok(None),
        },
    };
    Ok(t.column_names().find(|c| !known.iter().any(|(k, _)| k.eq_ignore_ascii_case(c))).map(str::to_string))
}

/// Decodes a body of either format into per-measurement batches (at write
/// time and again at replay, from the logged body).
fn parse(format: Format, body: Vec<u8>, precision: Precision, default_time: i64) -> Result<batch::ParsedBody> {
    match format {
        Format::LineProtocol => Ok(batch::parse_body(&body, precision, default_time)),
        Format::MessagePack => msgpack::parse_body(body, default_time),
    }
}

/// A database's stable id: the stem of its file name (not its name, which a
/// rename changes).
pub(crate) fn database_id_of(d: &pond_engine::DatabaseInfo) -> Option<String> {
    Path::new(&d.path).file_stem().map(|s| s.to_string_lossy().into_owned())
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Lake schemas that exist (named by database file id).
pub(crate) fn existing_lake_schemas(conn: &duckdb::Connection) -> Result<std::collections::HashSet<String>> {
    let mut stmt = conn.prepare_cached("SELECT schema_name FROM duckdb_schemas() WHERE database_name = ?")?;
    let v = stmt.query_map([pond_engine::lake::LAKE_ALIAS], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
    Ok(v)
}

/// The writer thread: log, sync, checks, hot store, answers.
struct WriterLoop {
    engine: Engine,
    conn: duckdb::Connection,
    log: wal::Wal,
    seq: u64,
    config: IngestConfig,
    shared: Arc<Shared>,
    /// File id of each database name the writer has seen.
    db_ids: HashMap<String, String>,
}

impl WriterLoop {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut buf = Vec::new();
        let mut stop = None;
        loop {
            let first = match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            };
            let mut jobs = Vec::new();
            match first {
                Msg::Write(j) => jobs.push(j),
                Msg::Stop(ack) => stop = Some(ack),
            }
            while stop.is_none() && jobs.len() < 1024 {
                match rx.try_recv() {
                    Ok(Msg::Write(j)) => jobs.push(j),
                    Ok(Msg::Stop(ack)) => stop = Some(ack),
                    Err(_) => break,
                }
            }
            if !jobs.is_empty() {
                self.group(jobs, &mut buf);
            }
            if stop.is_some() {
                break;
            }
        }
        drop(self);
        if let Some(ack) = stop {
            let _ = ack.send(());
        }
        tracing::info!("ingest writer stopped");
    }

    /// Closes a full log segment and deletes the ones the lake holds.
    fn log_housekeeping(&mut self) {
        if self.log.len() > self.config.wal_truncate_bytes {
            if let Err(e) = self.log.rotate() {
                tracing::error!(error = %e, "cannot start a new write-ahead log segment");
            }
        }
        let before = self.log.closed_bytes();
        if let Err(e) = self.log.release(self.shared.flushed_upto.load(Ordering::Acquire)) {
            tracing::error!(error = %e, "cannot delete a flushed write-ahead log segment");
        }
        if self.log.closed_bytes() < before {
            pond_lake::failpoint::hit(pond_lake::failpoint::FLUSH_RELEASED);
        }
        self.shared.wal_closed_bytes.store(self.log.closed_bytes(), Ordering::Relaxed);
    }

    /// One group commit: log records, one sync (in parallel with the checks
    /// and hot-store appends), answers.
    fn group(&mut self, jobs: Vec<Job>, buf: &mut Vec<u8>) {
        buf.clear();
        let mut seqs = Vec::with_capacity(jobs.len());
        for j in &jobs {
            self.seq += 1;
            seqs.push(self.seq);
            wal::encode_as(self.seq, j.format, j.precision, j.default_time, &j.database_id, &j.lines, buf);
        }
        if let Err(e) = self.log.append(buf, self.seq) {
            let msg = e.to_string();
            for j in jobs {
                let _ = j.reply.send(Err(Error::Internal(format!("write-ahead log: {msg}"))));
            }
            return;
        }
        let need_sync = self.config.sync != SyncMode::Async && jobs.iter().any(|j| !j.no_sync);
        // Group by database, keeping order.
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Vec<(usize, u64)>> = HashMap::new();
        for (i, j) in jobs.iter().enumerate() {
            if !groups.contains_key(&j.database) {
                order.push(j.database.clone());
            }
            groups.entry(j.database.clone()).or_default().push((i, seqs[i]));
        }
        let mut jobs: Vec<Option<Job>> = jobs.into_iter().map(Some).collect();
        let mut results: Vec<Option<Result<Vec<LineError>>>> = (0..jobs.len()).map(|_| None).collect();
        // A database dropped and created again under the same name has a new
        // file id: its hot rows (of the old id) are no longer anyone's.
        for j in jobs.iter().flatten() {
            if let Some(old) = self.db_ids.insert(j.database.clone(), j.database_id.clone()) {
                if old != j.database_id {
                    self.shared.store.forget_database(&old);
                }
            }
        }
        let mut lakes: HashMap<String, Result<pond_engine::lake::Lake>> = HashMap::new();
        for db in &order {
            lakes.insert(db.clone(), self.engine.attach_lake(db).map_err(Error::from));
        }
        let log = &self.log;
        let mode = self.config.sync;
        let conn = &self.conn;
        let store = &self.shared.store;
        let lake_lock = &self.shared.lake_lock;
        let shared_lake = self.engine.cluster().is_some();
        let mut ddl = false;
        let synced = std::thread::scope(|s| {
            let syncer = need_sync.then(|| s.spawn(move || log.sync(mode)));
            for db in &order {
                let members = &groups[db];
                let max_seq = members.iter().map(|(_, s)| *s).max().unwrap_or(0);
                let mut texts = Vec::new();
                let mut batches = Vec::new();
                let mut db_id = String::new();
                for (i, _) in members {
                    if let Some(j) = jobs[*i].as_mut() {
                        db_id = j.database_id.clone();
                        texts.push((*i, (j.format, j.precision), j.default_time, std::mem::take(&mut j.lines)));
                        batches.push(std::mem::take(&mut j.tables));
                    }
                }
                let lake_part = match &lakes[db] {
                    Ok(l) => l.clone(),
                    Err(e) => {
                        let unavailable = matches!(e, Error::Engine(inner) if inner.kind() == pond_engine::ErrorKind::Unavailable);
                        let msg = format!("cannot attach the lake of database {db}: {e}");
                        for (i, ..) in &texts {
                            results[*i] = Some(Err(if unavailable {
                                Error::Engine(pond_engine::Error::Unavailable(msg.clone()))
                            } else {
                                Error::Internal(msg.clone())
                            }));
                        }
                        continue;
                    }
                };
                let target = writer::Target { db, db_id: &db_id, lake: &lake_part, lake_lock, shared_lake };
                let jobs_in: Vec<_> = batches.into_iter().zip(&texts).map(|(b, t)| (b, t.3.as_slice())).collect();
                match writer::apply(conn, store, &target, jobs_in, max_seq) {
                    Ok(applied) => {
                        ddl |= applied.ddl;
                        for ((i, ..), e) in texts.iter().zip(applied.errors) {
                            results[*i] = Some(Ok(e));
                        }
                    }
                    Err(e) if texts.len() > 1 => {
                        // One bad request must not fail the others: apply them one by one.
                        tracing::warn!(database = %db, error = %e, "group apply failed; applying requests one by one");
                        ddl = true;
                        for ((i, (format, precision), default_time, lines), (_, seq)) in texts.iter().zip(members) {
                            results[*i] = Some(parse(*format, lines.clone(), *precision, *default_time).and_then(|parsed| {
                                writer::apply(conn, store, &target, vec![(parsed.tables, parsed.good_lines.as_slice())], *seq)
                                    .map(|a| a.errors.into_iter().next().unwrap_or_default())
                            }));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for (i, ..) in &texts {
                            results[*i] = Some(Err(Error::DuckDb(msg.clone())));
                        }
                    }
                }
            }
            match syncer {
                Some(h) => h.join().unwrap_or_else(|_| Err(Error::Internal("log sync panicked".into()))),
                None => Ok(()),
            }
        });
        self.shared.applied_upto.store(self.seq, Ordering::Release);
        if ddl {
            self.engine.catalog_changed();
        }
        // The rows are visible (hot store): cached query results over these databases are stale.
        for db in &order {
            self.engine.data_changed(db);
        }
        let sync_error = synced.err().map(|e| e.to_string());
        for (i, j) in jobs.iter_mut().enumerate() {
            let Some(job) = j.take() else { continue };
            let r = results[i].take().unwrap_or_else(|| Err(Error::Internal("request was not applied".into())));
            let r = match (&sync_error, r) {
                (Some(msg), Ok(_)) if !job.no_sync => Err(Error::Internal(format!("write-ahead log sync failed: {msg}"))),
                (_, r) => r,
            };
            let _ = job.reply.send(r);
        }
        self.log_housekeeping();
    }
}

/// The lake thread: flushes by size, age and log volume, compactions on
/// schedule, and the flush and compaction requests of the HTTP API.
struct LakeLoop {
    engine: Engine,
    conn: duckdb::Connection,
    opts: lake::FlushOptions,
    config: IngestConfig,
    shared: Arc<Shared>,
    next_compaction: Option<std::time::Instant>,
    /// The compaction thread's queue.
    compactor: std::sync::mpsc::Sender<CompactMsg>,
    /// When measurements other nodes made were last looked for (nodes sharing the lake).
    next_view_sync: std::time::Instant,
}

/// How often a node sharing the lake looks for measurements other nodes made.
const VIEW_SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Unregistered lake files younger than this may be another node's flush in
/// progress; older ones are orphans of an interrupted flush.
const CLUSTER_ORPHAN_AGE_SECS: u64 = 3600;

/// How flushes write with this engine and configuration.
fn flush_options(engine: &Engine, config: &IngestConfig) -> lake::FlushOptions {
    let data_path = engine.lake_data_path();
    let encoder = config.encoder.unwrap_or_else(|| lake::Encoder::for_data_path(&data_path));
    lake::FlushOptions { data_path, encoder, workers: config.flush_workers.max(1) }
}

impl LakeLoop {
    fn run(mut self, rx: Receiver<Task>) {
        let tick = self.config.flush_interval.min(std::time::Duration::from_millis(200));
        let mut stop = None;
        loop {
            match rx.recv_timeout(tick) {
                Ok(Task::Stop(ack)) => {
                    stop = Some(ack);
                    break;
                }
                Ok(t) => self.task(t),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            self.housekeeping();
        }
        drop(self);
        if let Some(ack) = stop {
            let _ = ack.send(());
        }
    }

    /// Database name of each file id that has hot rows; forgets dropped databases.
    fn hot_databases(&self) -> Vec<(String, String)> {
        let names: HashMap<String, String> =
            self.engine.databases().into_iter().filter_map(|d| Some((database_id_of(&d)?, d.name))).collect();
        let mut out = Vec::new();
        for id in self.shared.store.database_ids() {
            match names.get(&id) {
                Some(n) => out.push((n.clone(), id)),
                None => self.shared.store.forget_database(&id),
            }
        }
        out
    }

    /// Starts a flush round when a database has enough or old enough rows, or
    /// the closed log segments are big; compacts on schedule.
    fn housekeeping(&mut self) {
        self.shared.store.retire(hot::RETIRE_GRACE, self.engine.oldest_open_transaction());
        if self.engine.cluster().is_some() && self.next_view_sync.elapsed() >= VIEW_SYNC_EVERY {
            self.next_view_sync = std::time::Instant::now();
            match lake::sync_views(&self.conn, &self.engine) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(views = n, "measurement views created for measurements other nodes made");
                    self.engine.catalog_changed();
                }
                Err(e) => tracing::warn!(error = %e, "cannot follow measurements other nodes made"),
            }
        }
        let mut due = self.shared.wal_closed_bytes.load(Ordering::Relaxed) > self.config.wal_truncate_bytes;
        if !due {
            for (_, id) in self.hot_databases() {
                let mut rows = 0;
                let mut oldest: Option<std::time::Instant> = None;
                for t in self.shared.store.tables_of(&id) {
                    let (r, since) = t.unflushed();
                    rows += r;
                    oldest = match (oldest, since) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                if rows >= self.config.flush_rows || oldest.is_some_and(|o| o.elapsed() >= self.config.flush_interval) {
                    due = true;
                    break;
                }
            }
        }
        if due {
            if let Err(e) = self.flush_round(None) {
                tracing::warn!(error = %e, "flush to the lake failed; the rows stay in memory and are retried");
                self.shared.status.lock().last_error = Some(format!("flush: {e}"));
            }
        }
        if let (Some(at), Some(every)) = (self.next_compaction, self.config.compact_interval) {
            if std::time::Instant::now() >= at {
                self.next_compaction = Some(std::time::Instant::now() + every);
                let _ = self.compactor.send(CompactMsg::Run { database: None, reply: None });
            }
        }
    }

    /// Flushes every database with unflushed rows (or only `only`) up to the
    /// writer's applied sequence; after a full round the log up to it can go.
    fn flush_round(&mut self, only: Option<&str>) -> Result<Vec<lake::FlushReport>> {
        let upto = self.shared.applied_upto.load(Ordering::Acquire);
        let mut out = Vec::new();
        let started = std::time::Instant::now();
        for (db, id) in self.hot_databases() {
            if only.is_some_and(|o| o != db) {
                continue;
            }
            let pending = self.shared.store.tables_of(&id).iter().any(|t| t.unflushed().0 > 0);
            if !pending {
                continue;
            }
            let _g = self.shared.lake_lock.lock();
            let lake_part = self.engine.attach_lake(&db)?;
            let r = lake::flush(&self.conn, &self.shared.store, &db, &id, &lake_part, upto, &self.opts)?;
            self.engine.data_changed(&db);
            let mut st = self.shared.status.lock();
            st.flushes += 1;
            st.flushed_rows += r.rows;
            st.last_flush_at = Some(pond_meta::now_rfc3339());
            out.push(r);
        }
        if only.is_none() {
            self.shared.flushed_upto.fetch_max(upto, Ordering::AcqRel);
        }
        let rows: u64 = out.iter().map(|r| r.rows).sum();
        if rows > 0 {
            tracing::info!(rows, ms = started.elapsed().as_millis() as u64, "hot rows flushed to the lake");
        }
        Ok(out)
    }

    fn task(&mut self, t: Task) {
        match t {
            Task::Flush { database, reply } => {
                let _ = reply.send(self.flush_round(database.as_deref()));
            }
            Task::Compact { database, reply } => {
                if let Err(std::sync::mpsc::SendError(CompactMsg::Run { reply: Some(reply), .. })) =
                    self.compactor.send(CompactMsg::Run { database, reply: Some(reply) })
                {
                    let _ = reply.send(Err(Error::Internal("the compaction thread has stopped".into())));
                }
            }
            Task::Stop(_) => {}
        }
    }
}

/// A request to the compaction thread.
enum CompactMsg {
    Run { database: Option<String>, reply: Option<tokio::sync::oneshot::Sender<Result<Vec<lake::CompactReport>>>> },
}

/// The compaction thread: retention and bounded merge steps per measurement
/// (`lake::compact`), off the lake thread so flushes go on between steps
/// and writes never wait for a compaction.
struct Compactor {
    engine: Engine,
    conn: duckdb::Connection,
    config: IngestConfig,
    shared: Arc<Shared>,
    tasks: std::sync::mpsc::Sender<Task>,
}

impl Compactor {
    fn run(mut self, rx: Receiver<CompactMsg>) {
        while let Ok(CompactMsg::Run { database, reply }) = rx.recv() {
            let r = self.compact_all(database);
            match reply {
                Some(reply) => {
                    let _ = reply.send(r);
                }
                None => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "scheduled compaction failed");
                        self.shared.status.lock().last_error = Some(format!("compaction: {e}"));
                    }
                }
            }
        }
    }

    fn compact_all(&mut self, database: Option<String>) -> Result<Vec<lake::CompactReport>> {
        // Nodes sharing the lake compact one at a time: the others skip the round.
        let _turn = match self.engine.cluster() {
            Some(c) => match c.try_maintenance_lock().map_err(|e| Error::Internal(e.to_string()))? {
                Some(guard) => Some(guard),
                None => {
                    tracing::info!("lake maintenance skipped: another node is compacting");
                    return Ok(Vec::new());
                }
            },
            None => None,
        };
        // Flush first (on the lake thread), so retention and merging see every row.
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tasks
            .send(Task::Flush { database: database.clone(), reply })
            .map_err(|_| Error::Internal("the lake thread has stopped".into()))?;
        rx.blocking_recv().map_err(|_| Error::Internal("the lake thread has stopped".into()))??;
        let schemas = existing_lake_schemas(&self.conn)?;
        let targets: Vec<String> = match database {
            Some(d) => vec![d],
            None => self.engine.databases().into_iter().map(|d| d.name).collect(),
        };
        let mut out = Vec::new();
        for db in targets {
            let id = self.engine.database_file_id(&db)?;
            if !schemas.contains(&id) {
                continue;
            }
            let lake_part = self.engine.attach_lake(&db)?;
            if lake::measurements(&self.conn, &lake_part)?.is_empty() {
                continue;
            }
            let r = lake::compact(
                &self.conn,
                &db,
                &lake_part,
                self.config.cleanup_grace.as_secs(),
                self.config.snapshot_retention.as_secs(),
                &self.shared.lake_lock,
                self.config.compact_max_files,
            )?;
            self.engine.data_changed(&db);
            tracing::info!(database = %db, files_before = r.files_before, files_after = r.files_after, retention_rows_deleted = r.retention_rows_deleted, "lake compacted");
            out.push(r);
        }
        if self.engine.cluster().is_some() {
            let orphans = pond_lake::files::remove_orphans(&self.conn, pond_engine::lake::LAKE_ALIAS, Some(CLUSTER_ORPHAN_AGE_SECS))?;
            if !orphans.is_empty() {
                tracing::info!(files = orphans.len(), "unregistered lake files of interrupted flushes deleted");
            }
        }
        let mut st = self.shared.status.lock();
        st.compactions += 1;
        st.last_compaction_at = Some(pond_meta::now_rfc3339());
        Ok(out)
    }
}

/// Decompresses a body by `Content-Encoding` (gzip, zstd, identity) or, when
/// none is given, by its magic bytes; refuses more than `limit` bytes.
pub fn decode_body(content_encoding: Option<&str>, body: &[u8], limit: usize) -> Result<Vec<u8>> {
    let enc = content_encoding.map(|s| s.trim().to_ascii_lowercase());
    let kind = match enc.as_deref() {
        Some("gzip") | Some("x-gzip") => "gzip",
        Some("zstd") => "zstd",
        Some("identity") | Some("") => "identity",
        Some(other) => return Err(Error::InvalidRequest(format!("unsupported Content-Encoding '{other}' (use gzip or zstd)"))),
        None if body.starts_with(&[0x1f, 0x8b]) => "gzip",
        None if body.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) => "zstd",
        None => "identity",
    };
    if kind == "identity" {
        if body.len() > limit {
            return Err(Error::TooLarge(limit));
        }
        return Ok(body.to_vec());
    }
    let mut out = Vec::with_capacity(body.len() * 4);
    let read = match kind {
        "gzip" => flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1).read_to_end(&mut out),
        _ => match zstd::stream::read::Decoder::new(body) {
            Ok(d) => d.take(limit as u64 + 1).read_to_end(&mut out),
            Err(e) => Err(e),
        },
    };
    read.map_err(|e| Error::InvalidRequest(format!("cannot decompress the {kind} body: {e}")))?;
    if out.len() > limit {
        return Err(Error::TooLarge(limit));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    #[test]
    fn bodies_are_decompressed_by_header_or_magic() {
        let text = b"m v=1\n".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::stream::encode_all(&text[..], 1).unwrap();
        assert_eq!(decode_body(Some("gzip"), &gz, 1 << 20).unwrap(), text);
        assert_eq!(decode_body(None, &gz, 1 << 20).unwrap(), text);
        assert_eq!(decode_body(Some("zstd"), &zs, 1 << 20).unwrap(), text);
        assert_eq!(decode_body(None, &zs, 1 << 20).unwrap(), text);
        assert_eq!(decode_body(None, &text, 1 << 20).unwrap(), text);
        assert!(matches!(decode_body(None, &gz, 100), Err(Error::TooLarge(100))));
        assert!(matches!(decode_body(None, &text, 100), Err(Error::TooLarge(100))));
        assert!(matches!(decode_body(Some("gzip"), b"not gzip", 100), Err(Error::InvalidRequest(_))));
        assert!(matches!(decode_body(Some("br"), b"x", 100), Err(Error::InvalidRequest(_))));
    }
}
