//! [`Session`]: one client's DuckDB connection and everything that is per
//! client: current database and schema, open transaction, prepared statements,
//! and the statement that is running (which can be cancelled or time out).
//!
//! All DuckDB work runs on tokio's blocking pool, never on the async workers.
//! A running statement holds the session's connection; its results flow through
//! a small bounded channel ([`QueryStream`]), so a slow reader slows DuckDB down
//! instead of filling memory.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::coalesce::BatchCoalescer;
use duckdb::types::Value;
use futures::Stream;
use parking_lot::Mutex;
use pond_auth::Identity;
use tokio::sync::{mpsc, Notify};

use crate::engine::Inner;
use crate::error::{Error, Result};
use crate::params::{duckdb_type, logical_type_name, ParamRows};
use crate::sql::{self, quote_ident, PondStatement, Statement};

/// Batches buffered between DuckDB and the network per running statement.
const CHANNEL_BATCHES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum StopReason {
    None = 0,
    Cancelled = 1,
    Timeout = 2,
    Superseded = 3,
}

/// Shared state of one running statement.
pub(crate) struct RunState {
    finished: AtomicBool,
    reason: AtomicU8,
    wake: Notify,
    interrupt: Arc<duckdb::InterruptHandle>,
    timeout: Option<Duration>,
}

impl RunState {
    fn stop(&self, reason: StopReason) {
        if self.finished.load(Ordering::SeqCst) {
            return;
        }
        let _ = self.reason.compare_exchange(StopReason::None as u8, reason as u8, Ordering::SeqCst, Ordering::SeqCst);
        self.wake.notify_one();
        self.interrupt.interrupt();
    }

    fn reason(&self) -> StopReason {
        match self.reason.load(Ordering::SeqCst) {
            1 => StopReason::Cancelled,
            2 => StopReason::Timeout,
            3 => StopReason::Superseded,
            _ => StopReason::None,
        }
    }

    /// The error to report when a statement stopped early.
    fn stop_error(&self) -> Option<Error> {
        match self.reason() {
            StopReason::None => None,
            StopReason::Cancelled => Some(Error::Cancelled),
            StopReason::Timeout => Some(Error::Timeout(self.timeout.unwrap_or_default())),
            StopReason::Superseded => {
                Some(Error::InvalidRequest("result discarded: a newer statement ran on this session before it was fetched".into()))
            }
        }
    }

    /// Maps a DuckDB error raised by an interrupt to the reason we interrupted.
    fn map_error(&self, e: Error) -> Error {
        self.stop_error().unwrap_or(e)
    }
}

enum Msg {
    /// The result schema and DuckDB's type name of every column.
    Schema(SchemaRef, Arc<Vec<String>>),
    Batch(RecordBatch),
    Error(Error),
}

/// A statement's result: the schema, then record batches as DuckDB produces
/// them (coalesced to about `result_batch_bytes`). Dropping it before the end
/// stops DuckDB.
pub struct QueryStream {
    schema: SchemaRef,
    duckdb_types: Arc<Vec<String>>,
    rx: mpsc::Receiver<Msg>,
    run: Arc<RunState>,
    done: bool,
}

impl QueryStream {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// DuckDB's type name of each column (Arrow types lose some: UUID, JSON,
    /// HUGEINT vs DECIMAL(38,0), UHUGEINT, BIT, ENUM).
    pub fn duckdb_types(&self) -> Arc<Vec<String>> {
        self.duckdb_types.clone()
    }

    /// Reads the whole result into memory (for small, internal results).
    pub async fn collect(mut self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        while let Some(b) = futures::StreamExt::next(&mut self).await {
            out.push(b?);
        }
        Ok(out)
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Msg::Batch(b))) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(Some(Msg::Error(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Msg::Schema(..))) => Poll::Ready(Some(Err(Error::Internal("schema sent twice".into())))),
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for QueryStream {
    fn drop(&mut self) {
        if !self.done {
            self.run.stop(StopReason::Cancelled);
        }
    }
}

/// A prepared statement kept in a session.
#[derive(Clone)]
struct Prepared {
    statements: Vec<Statement>,
    param_count: usize,
    params: Option<Arc<ParamRows>>,
}

/// What clients learn when they prepare a statement.
#[derive(Debug, Clone)]
pub struct PreparedInfo {
    pub handle: Vec<u8>,
    pub param_count: usize,
    /// Result schema, when DuckDB can tell it without running the statement
    /// (the schema the statement's result stream will have).
    pub dataset_schema: Option<SchemaRef>,
    /// One type per parameter (`param_count` of them); `DataType::Null` where
    /// DuckDB cannot tell before a value is bound, or the statement was not described.
    pub parameter_types: Vec<DataType>,
}

/// How bulk ingest treats the target table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMode {
    /// Create; fail if it exists.
    Create,
    /// Append; fail if it does not exist.
    Append,
    /// Drop and re-create if it exists.
    Replace,
    /// Create if missing, then append.
    CreateAppend,
}

/// What a bulk load sends to [`Session::ingest`]: batches, then `Finish`.
/// Only `Finish` commits: a stream that ends without it (the sender dropped
/// after a client error, a cancel or a lost connection) loads nothing.
#[derive(Debug)]
pub enum IngestMessage {
    Batch(RecordBatch),
    Finish,
}

#[derive(Debug, Clone)]
pub struct IngestRequest {
    pub table: String,
    pub catalog: Option<String>,
    pub schema: Option<String>,
    pub temporary: bool,
    pub mode: IngestMode,
}

struct State {
    /// The session's database and schema (USE, SetSessionOptions).
    database: String,
    schema: String,
    /// What the connection is switched to right now; differs from the
    /// session's while a call names another database (Flight `database` header).
    conn_target: (String, String),
    /// The engine's database generation when `conn_target` was last checked.
    seen_generation: u64,
    transaction: Option<Vec<u8>>,
    prepared: HashMap<Vec<u8>, Prepared>,
    /// SET/RESET statements run on the connection, in order (the describing
    /// connection replays them; see [`Session::describe`]).
    settings: Vec<String>,
    /// The connection has state another connection cannot copy: temporary
    /// objects (names may resolve differently elsewhere) or a setting with a
    /// computed value. Its statements are no longer described.
    diverged: bool,
    /// DDL ran in the open transaction: other connections do not see it yet.
    uncommitted_ddl: bool,
}

/// The connection a session describes statements on (`describe.rs`), and how
/// far it follows the session's connection.
struct Mirror {
    describer: crate::describe::Describer,
    /// The database and schema it is switched to.
    target: (String, String),
    /// How many of the session's `settings` it has run.
    settings: usize,
    /// Following the session failed (a SET it could not replay): no more describing.
    broken: bool,
}

/// SET/RESET statements a session may run before its statements are no longer described.
const MIRRORED_SETTINGS: usize = 64;

/// Macro names and the table/view catalog, as the sandbox needs them.
type CatalogView = (Arc<HashSet<String>>, Arc<crate::sandbox::CatalogSnapshot>);

/// DuckDB prepared statements a session's connection keeps, by statement text.
const STATEMENT_CACHE_ENTRIES: usize = 128;

/// Statement texts a session keeps sandbox verdicts for (the cache is emptied when full).
const AUTH_CACHE_ENTRIES: usize = 256;

/// A statement the sandbox allowed, and everything the verdict depended on.
/// It is reused only while all of it is unchanged: the same grants (the very
/// `Policy` value; any grant, revoke or user change makes a new one), the
/// same catalog and database generations, and the same current database and
/// schema. The caller's identity is still re-validated before every statement.
struct AuthVerdict {
    policy: Arc<pond_auth::Policy>,
    catalog_generation: u64,
    db_generation: u64,
    target: (String, String),
    rewritten: Option<String>,
}

/// One client session. See the module documentation.
pub struct Session {
    pub id: String,
    pub identity: Identity,
    pub protocol: &'static str,
    engine: Weak<Inner>,
    conn: Arc<Mutex<duckdb::Connection>>,
    interrupt: Arc<duckdb::InterruptHandle>,
    state: Mutex<State>,
    last_used: AtomicU64,
    current: Mutex<Option<Arc<RunState>>>,
    /// Database for the statements of the current call only (see `set_call_database`).
    call_database: Mutex<Option<String>>,
    created: Instant,
    /// Macro names and tables/views seen by this session, with the catalog generation they were read at.
    catalog_cache: Mutex<(u64, CatalogView)>,
    /// Sandbox verdicts by statement text, and by statement shape (literal
    /// values taken out, see `shape.rs`) for statements the sandbox ran
    /// unchanged (non-superusers; see [`AuthVerdict`]).
    auth_cache: Mutex<HashMap<String, AuthVerdict>>,
    shape_cache: Mutex<HashMap<String, AuthVerdict>>,
    /// Every statement so far only read (SELECT, WITH, FROM, VALUES): the
    /// session holds nothing a stateless request left behind (no temporary
    /// objects, settings, USE, transaction), so the engine may hand it to the
    /// same caller's next request (see [`crate::Engine::open_reusable_session`]).
    only_read: AtomicBool,
    /// Where prepared statements are described, made at the first prepare.
    mirror: Mutex<Option<Mirror>>,
    /// The current call asked not to use the query result cache (see `set_call_cache`).
    skip_cache: AtomicBool,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(inner) = self.engine.upgrade() {
            inner.live.lock().remove(&self.id);
            inner.open_transactions.lock().remove(&self.id);
            inner.open_sessions.fetch_sub(1, Ordering::SeqCst);
            inner.metrics.sessions_changed(-1);
        }
    }
}

impl Session {
    pub(crate) fn new(engine: Weak<Inner>, identity: Identity, protocol: &'static str, conn: duckdb::Connection) -> Self {
        let interrupt = conn.interrupt_handle();
        // DuckDB prepared statements kept per connection, by text (duckdb-rs keeps 16):
        // clients that cycle through more statements than that re-plan each one.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_ENTRIES);
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            identity,
            protocol,
            engine,
            conn: Arc::new(Mutex::new(conn)),
            interrupt,
            state: Mutex::new(State {
                database: String::new(),
                schema: "main".into(),
                conn_target: (String::new(), "main".into()),
                seen_generation: 0,
                transaction: None,
                prepared: HashMap::new(),
                settings: Vec::new(),
                diverged: false,
                uncommitted_ddl: false,
            }),
            last_used: AtomicU64::new(0),
            current: Mutex::new(None),
            call_database: Mutex::new(None),
            created: Instant::now(),
            catalog_cache: Mutex::new((0, (Arc::new(HashSet::new()), Arc::new(crate::sandbox::CatalogSnapshot::default())))),
            auth_cache: Mutex::new(HashMap::new()),
            shape_cache: Mutex::new(HashMap::new()),
            only_read: AtomicBool::new(true),
            mirror: Mutex::new(None),
            skip_cache: AtomicBool::new(false),
        }
    }

    /// See `only_read`: nothing but reads ran, nothing runs now, no transaction is open.
    pub(crate) fn reusable(&self) -> bool {
        self.only_read.load(Ordering::SeqCst) && !self.is_running() && !self.in_transaction()
    }

    fn engine(&self) -> Result<Arc<Inner>> {
        self.engine.upgrade().ok_or_else(|| Error::InvalidRequest("server is shutting down".into()))
    }

    pub(crate) fn touch(&self) {
        self.last_used.store(self.created.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn idle_for(&self) -> Duration {
        self.created.elapsed().saturating_sub(Duration::from_millis(self.last_used.load(Ordering::Relaxed)))
    }

    pub(crate) fn is_running(&self) -> bool {
        self.current.lock().as_ref().is_some_and(|r| !r.finished.load(Ordering::SeqCst))
    }

    pub fn current_database(&self) -> String {
        self.state.lock().database.clone()
    }

    pub fn current_schema(&self) -> String {
        self.state.lock().schema.clone()
    }

    /// Runs the statements of the current call in `database` (already
    /// resolved) without changing the session's database; `None` returns to
    /// the session's database. Protocols call this at the start of every call.
    pub fn set_call_database(&self, database: Option<String>) -> Result<()> {
        if let Some(db) = &database {
            let inner = self.engine()?;
            if !inner.auth.policy().allows(&self.identity, db, None, pond_auth::Privilege::Usage) {
                *self.call_database.lock() = None;
                return Err(Error::PermissionDenied(format!("permission denied for database {db}")));
            }
        }
        *self.call_database.lock() = database;
        Ok(())
    }

    /// Checks `sql` as this session's statement, without running it (the
    /// runs of a continuous query, with its owner's grants).
    pub(crate) fn check_only(&self, sql: &str) -> Result<()> {
        let conn = self.conn.lock();
        for st in sql::parse(sql)? {
            self.authorize(&conn, &st)?;
        }
        Ok(())
    }

    /// Whether the statements of the current call may be answered from, and
    /// stored in, the query result cache (protocols call this per call).
    pub fn set_call_cache(&self, use_cache: bool) {
        self.skip_cache.store(!use_cache, Ordering::SeqCst);
    }

    /// A query-cache probe for a single plain read outside a transaction on a
    /// connection whose state another could copy (see `qcache.rs`).
    fn cache_probe(&self, statements: &[Statement], params: Option<&ParamRows>) -> Option<crate::qcache::Probe> {
        let inner = self.engine.upgrade()?;
        inner.qcache.as_ref()?;
        let [Statement::DuckDb(text)] = statements else { return None };
        if self.skip_cache.load(Ordering::SeqCst) || !matches!(first_word(text).as_str(), "select" | "with" | "from" | "values") {
            return None;
        }
        let call_db = self.call_database.lock().clone();
        let (target, settings) = {
            let state = self.state.lock();
            if state.transaction.is_some() || state.diverged {
                return None;
            }
            // Name resolution is worked out from the current database and schema
            // only: a session that changed its search path does not use the cache.
            if state.settings.iter().any(|t| {
                let t = t.to_ascii_lowercase();
                t.contains("search_path") || t.contains("schema")
            }) {
                return None;
            }
            let target = match call_db {
                Some(db) => (db, "main".to_string()),
                None => (state.database.clone(), state.schema.clone()),
            };
            (target, state.settings.clone())
        };
        crate::qcache::Probe::new(&inner, &self.identity, text, params, target, settings)
    }

    /// A result from the query cache, as a stream.
    fn cached_stream(&self, entry: &pond_qcache::Entry) -> QueryStream {
        let (tx, rx) = mpsc::channel::<Msg>(entry.batches.len().max(1));
        for b in &entry.batches {
            let _ = tx.try_send(Msg::Batch(b.clone()));
        }
        let run = Arc::new(RunState {
            finished: AtomicBool::new(true),
            reason: AtomicU8::new(StopReason::None as u8),
            wake: Notify::new(),
            interrupt: self.interrupt.clone(),
            timeout: None,
        });
        QueryStream { schema: entry.schema.clone(), duckdb_types: entry.duckdb_types.clone(), rx, run, done: false }
    }

    /// A statement that may have written: results cached before no longer
    /// apply to the databases it wrote (all, when that is not known).
    fn note_write(&self, st: &Statement) {
        let Some(inner) = self.engine.upgrade() else { return };
        let Some(qc) = inner.qcache.as_ref() else { return };
        match st {
            Statement::DuckDb(text) => {
                let first = first_word(text);
                let plain_read = matches!(first.as_str(), "select" | "from" | "values" | "show" | "describe" | "summarize")
                    || (first == "with" && !crate::qcache::mentions_write(text));
                if plain_read {
                    return;
                }
                let current = self.connection_database();
                let engine = inner.engine();
                let written = crate::sandbox::written_databases(text, &current, &|n| engine.database_exists(n));
                if written.is_empty() {
                    qc.versions.bump_all();
                }
                for db in written {
                    qc.versions.bump(&db);
                }
            }
            // Listings change nothing.
            Statement::Pond(
                PondStatement::ShowDatabases
                | PondStatement::ShowTables
                | PondStatement::ShowUsers
                | PondStatement::ShowGrants { .. }
                | PondStatement::ShowSecrets
                | PondStatement::ShowLinks
                | PondStatement::ShowNodes,
            ) => {}
            Statement::Pond(PondStatement::Job(text)) if first_word(text) == "show" => {}
            Statement::Pond(_) => qc.versions.bump_all(),
        }
    }

    /// Switches the connection to the call's database, or back to the
    /// session's, before a statement runs.
    fn align_connection(&self, conn: &duckdb::Connection, call_db: Option<&str>) -> Result<()> {
        let mut state = self.state.lock();
        let wanted = match call_db {
            Some(db) => (db.to_string(), "main".to_string()),
            None => (state.database.clone(), state.schema.clone()),
        };
        // A drop or rename elsewhere may have taken the connection's database away.
        let generation = self.engine().map(|en| en.db_generation.load(Ordering::SeqCst)).unwrap_or(0);
        let recheck = generation != state.seen_generation;
        state.seen_generation = generation;
        if wanted != state.conn_target || recheck {
            let gone = recheck && self.engine().map(|en| !en.engine().database_exists(&wanted.0)).unwrap_or(false);
            let switched = if gone {
                Err(Error::DatabaseNotFound(wanted.0.clone()))
            } else {
                conn.execute_batch(&format!("USE {}.{}", quote_ident(&wanted.0), quote_ident(&wanted.1))).map_err(Error::from)
            };
            if let Err(e) = switched {
                let gone = gone || self.engine().map(|en| !en.engine().database_exists(&wanted.0)).unwrap_or(false);
                if !gone {
                    return Err(e);
                }
                // Another session dropped or renamed this session's database: say
                // so once and carry on in `default` (never write elsewhere silently).
                let fallback = crate::DEFAULT_DATABASE.to_string();
                conn.execute_batch(&format!("USE {}", quote_ident(&fallback)))?;
                state.database = fallback.clone();
                state.schema = "main".into();
                state.conn_target = (fallback.clone(), "main".into());
                return Err(Error::InvalidRequest(format!(
                    "database '{}' no longer exists (dropped or renamed by another session); this session now uses '{fallback}'",
                    wanted.0
                )));
            }
            state.conn_target = wanted;
        }
        Ok(())
    }

    /// The database the connection works in right now (the call's or the session's).
    fn connection_database(&self) -> String {
        self.state.lock().conn_target.0.clone()
    }

    pub fn in_transaction(&self) -> bool {
        self.state.lock().transaction.is_some()
    }

    /// Stops the running statement, if any (DuckDB is interrupted).
    pub fn cancel(&self) {
        if let Some(run) = self.current.lock().as_ref() {
            run.stop(StopReason::Cancelled);
        }
    }

    /// Starts `work` on the blocking pool with the session's connection. A
    /// statement still running from before (e.g. a result nobody fetched) is
    /// stopped first: DuckDB runs one statement per connection.
    fn spawn<T, F>(self: &Arc<Self>, work: F) -> (Arc<RunState>, tokio::task::JoinHandle<Result<T>>)
    where
        T: Send + 'static,
        F: FnOnce(&Arc<Session>, &duckdb::Connection, &Arc<RunState>) -> Result<T> + Send + 'static,
    {
        self.touch();
        let timeout = self.engine.upgrade().and_then(|e| e.config.query_timeout);
        let run = Arc::new(RunState {
            finished: AtomicBool::new(false),
            reason: AtomicU8::new(StopReason::None as u8),
            wake: Notify::new(),
            interrupt: self.interrupt.clone(),
            timeout,
        });
        if let Some(prev) = self.current.lock().replace(run.clone()) {
            prev.stop(StopReason::Superseded);
        }
        if let Some(t) = timeout {
            let weak = Arc::downgrade(&run);
            tokio::spawn(async move {
                tokio::time::sleep(t).await;
                if let Some(run) = weak.upgrade() {
                    run.stop(StopReason::Timeout);
                }
            });
        }
        let me = self.clone();
        let r = run.clone();
        let conn = self.conn.clone();
        let call_db = self.call_database.lock().clone();
        let handle = tokio::task::spawn_blocking(move || {
            let guard = conn.lock();
            let out = match r.stop_error() {
                Some(e) => Err(e),
                None => me.align_connection(&guard, call_db.as_deref()).and_then(|()| work(&me, &guard, &r)),
            };
            r.finished.store(true, Ordering::SeqCst);
            drop(guard);
            me.touch();
            out.map_err(|e| me.sanitize(r.map_error(e)))
        });
        (run, handle)
    }

    /// Runs `sql` (one or more statements; parameters apply to the last) and
    /// streams the last statement's result. Returns once DuckDB has executed
    /// the statements and produced the first batch, so DDL and DML take effect
    /// even if the caller never reads the stream.
    pub async fn query(self: &Arc<Self>, sql: &str, params: Option<ParamRows>) -> Result<QueryStream> {
        let statements = sql::parse(sql)?;
        self.query_statements(statements, params.map(Arc::new)).await
    }

    async fn query_statements(self: &Arc<Self>, statements: Vec<Statement>, params: Option<Arc<ParamRows>>) -> Result<QueryStream> {
        if statements.is_empty() {
            return Err(Error::InvalidRequest("empty query: no SQL statement given".into()));
        }
        let started = Instant::now();
        let metrics = self.engine()?.metrics.clone();
        let probe = self.cache_probe(&statements, params.as_deref());
        if let Some(entry) = probe.as_ref().and_then(|p| p.lookup()) {
            self.touch();
            metrics.query(self.protocol, started.elapsed().as_secs_f64(), true);
            return Ok(self.cached_stream(&entry));
        }
        let (tx, mut rx) = mpsc::channel::<Msg>(CHANNEL_BATCHES);
        let batch_bytes = self.engine()?.config.result_batch_bytes;
        let (run, handle) = self.spawn(move |session, conn, run| {
            let r = produce(session, conn, run, &statements, params.as_deref(), &tx, batch_bytes, probe.as_ref());
            if let Err(e) = r {
                let _ = send(run, &tx, Msg::Error(session.sanitize(run.map_error(e))));
            }
            // Done before the stream ends (the channel closes with `tx`): whoever
            // sees the end finds the session idle, and nothing is left to interrupt.
            run.finished.store(true, Ordering::SeqCst);
            drop(tx);
            Ok(())
        });
        // If the caller goes away while DuckDB is still working towards the
        // first batch (client cancelled the call, disconnected), stop DuckDB.
        let guard = StopOnDrop(Some(run.clone()));
        let first = rx.recv().await;
        guard.disarm();
        let ok = matches!(first, Some(Msg::Schema(..)));
        metrics.query(self.protocol, started.elapsed().as_secs_f64(), ok);
        match first {
            Some(Msg::Schema(schema, duckdb_types)) => Ok(QueryStream { schema, duckdb_types, rx, run, done: false }),
            Some(Msg::Error(e)) => Err(e),
            Some(Msg::Batch(_)) => Err(Error::Internal("batch before schema".into())),
            // The work never started (e.g. the session's database vanished): its error.
            None => match handle.await {
                Ok(Err(e)) => Err(e),
                _ => Err(run.stop_error().unwrap_or_else(|| Error::Internal("statement ended without a result".into()))),
            },
        }
    }

    /// Runs `sql` and returns the number of rows changed (DoPut updates).
    pub async fn update(self: &Arc<Self>, sql: &str, params: Option<ParamRows>) -> Result<i64> {
        let statements = sql::parse(sql)?;
        self.update_statements(statements, params.map(Arc::new)).await
    }

    async fn update_statements(self: &Arc<Self>, statements: Vec<Statement>, params: Option<Arc<ParamRows>>) -> Result<i64> {
        if statements.is_empty() {
            return Err(Error::InvalidRequest("empty statement".into()));
        }
        let started = Instant::now();
        let metrics = self.engine()?.metrics.clone();
        let (run, handle) = self.spawn(move |session, conn, _run| {
            let n = statements.len();
            let mut changed = 0i64;
            session.preauthorize(conn, &statements)?;
            for (i, st) in statements.iter().enumerate() {
                let last = i + 1 == n;
                let (identity, rewritten) = session.authorize(conn, st)?;
                let r = match st {
                    Statement::Pond(p) => session.run_pond(conn, p, &identity).map(|_| ()),
                    Statement::DuckDb(text) if last => {
                        let text = rewritten.as_deref().unwrap_or(text);
                        execute_update(conn, text, params.as_deref(), session.in_transaction()).map(|n| changed = n)
                    }
                    Statement::DuckDb(text) => execute_one(conn, rewritten.as_deref().unwrap_or(text), &identity),
                };
                session.track_transaction(st, r.is_ok());
                r?;
                session.after_statement(st);
            }
            Ok(changed)
        });
        let guard = StopOnDrop(Some(run));
        let r = handle.await.map_err(|e| Error::Internal(format!("worker failed: {e}")))?;
        guard.disarm();
        metrics.query(self.protocol, started.elapsed().as_secs_f64(), r.is_ok());
        r
    }

    /// DuckDB's "Did you mean …" hints can name objects the caller may not see:
    /// non-superusers get errors without them.
    fn sanitize(&self, e: Error) -> Error {
        if self.identity.effective_superuser() {
            return e;
        }
        match e {
            Error::DuckDb(msg) => Error::DuckDb(strip_suggestions(&msg)),
            other => other,
        }
    }

    /// Checks a statement before it runs: the caller's identity is re-validated
    /// (dropped users and revoked tokens stop here), superusers pass, everyone
    /// else goes through the sandbox. Denials are audited. Returns the fresh
    /// identity, and the text to run instead when catalog listings were limited.
    pub(crate) fn authorize(&self, conn: &duckdb::Connection, st: &Statement) -> Result<(Identity, Option<String>)> {
        let reads = matches!(st, Statement::DuckDb(text) if matches!(first_word(text).as_str(), "select" | "with" | "from" | "values"));
        if !reads {
            self.only_read.store(false, Ordering::SeqCst);
        }
        if let Statement::DuckDb(text) = st {
            // Linked databases follow their source: nobody writes to them.
            let current = self.state.lock().conn_target.0.clone();
            self.engine()?.engine().check_linked_write(text, &current)?;
        }
        let (identity, rewritten) = self.authorize_statement(conn, st)?;
        // Tables of external catalogs become readers over the selected files
        // (after the grant check, which saw the statement as written).
        if let Statement::DuckDb(text) = st {
            let engine = self.engine()?.engine();
            let base = rewritten.as_deref().unwrap_or(text);
            let started = std::time::Instant::now();
            if let Some((sql, notes)) = crate::external::rewrite(&engine, conn, base)? {
                let rewrite_ms = started.elapsed().as_secs_f64() * 1000.0;
                for n in &notes {
                    tracing::debug!(scan = %n.describe(), rewrite_ms, "external table read");
                }
                return Ok((identity, Some(sql)));
            }
            // `AT (TIMESTAMP => …)` on a measurement reads its lake table as it was.
            let current = self.state.lock().conn_target.0.clone();
            if let Some(sql) = crate::timetravel::rewrite(&engine, conn, base, &current)? {
                return Ok((identity, Some(sql)));
            }
        }
        Ok((identity, rewritten))
    }

    fn authorize_statement(&self, conn: &duckdb::Connection, st: &Statement) -> Result<(Identity, Option<String>)> {
        let inner = self.engine()?;
        let identity = inner.auth.revalidate(&self.identity)?;
        if identity.effective_superuser() {
            return Ok((identity, None));
        }
        // A repeated statement (a prepared statement executed again, a dashboard
        // refreshing) skips the sandbox while nothing its verdict rests on
        // changed; so does one differing from a checked statement only in
        // literal values (a point select with another id), by its shape.
        let key = match st {
            Statement::DuckDb(text) => Some((
                text,
                crate::shape::shape(text),
                inner.auth.policy(),
                inner.catalog_generation.load(Ordering::SeqCst),
                inner.db_generation.load(Ordering::SeqCst),
                self.state.lock().conn_target.clone(),
            )),
            Statement::Pond(_) => None,
        };
        if let Some((text, shape, policy, catalog_generation, db_generation, target)) = &key {
            let valid = |v: &AuthVerdict| {
                Arc::ptr_eq(&v.policy, policy)
                    && v.catalog_generation == *catalog_generation
                    && v.db_generation == *db_generation
                    && v.target == *target
            };
            if let Some(v) = self.auth_cache.lock().get(text.as_str()) {
                if valid(v) {
                    inner.metrics.sandbox_verdict("cached");
                    return Ok((identity, v.rewritten.clone()));
                }
            }
            if let Some(shape) = shape {
                if let Some(v) = self.shape_cache.lock().get(shape) {
                    // Only verdicts that ran the statement as written are kept by shape.
                    if valid(v) {
                        inner.metrics.sandbox_verdict("shape");
                        return Ok((identity, None));
                    }
                }
            }
        }
        if key.is_some() {
            inner.metrics.sandbox_verdict("checked");
        }
        let r = self.check_statement(conn, st, &identity, &inner);
        if let (Ok(rewritten), Some((text, shape, policy, catalog_generation, db_generation, target))) = (&r, key) {
            let verdict = AuthVerdict { policy, catalog_generation, db_generation, target, rewritten: rewritten.clone() };
            let (cache, key) = match shape {
                Some(shape) if rewritten.is_none() => (&self.shape_cache, shape),
                _ => (&self.auth_cache, text.clone()),
            };
            let mut cache = cache.lock();
            if cache.len() >= AUTH_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key, verdict);
        }
        if let Err(e) = &r {
            if e.kind() == crate::ErrorKind::PermissionDenied {
                inner.auth.audit().record(
                    pond_auth::AuditEvent::new("denied", false, format!("{e}; statement: {}", redact(st)))
                        .user(&identity.user)
                        .protocol(self.protocol),
                );
            }
        }
        r.map(|text| (identity, text))
    }

    /// Checks every statement (as split by the protocol) before any of them runs, for protocols
    /// that execute a multi-statement request one statement at a time (the
    /// PostgreSQL simple query): like [`Session::query`], a request runs nothing
    /// if any statement is denied outright. SQL that does not parse is left to
    /// the statements' own execution to report.
    pub async fn preauthorize_sql(self: &Arc<Self>, texts: &[&str]) -> Result<()> {
        // Classified one by one: joining them again could let a comment swallow a separator.
        let Ok(statements) = texts.iter().map(|t| sql::classify(t)).collect::<Result<Vec<_>>>() else { return Ok(()) };
        if statements.len() < 2 || self.identity.effective_superuser() {
            return Ok(());
        }
        let (_run, handle) = self.spawn(move |session, conn, _| session.preauthorize(conn, &statements));
        handle.await.map_err(|e| Error::Internal(format!("worker failed: {e}")))?
    }

    /// A request of several statements runs none of them if any is denied
    /// outright. (Each is checked again when it runs: a later statement may use
    /// an object an earlier one creates, so "does not exist" is not final here.)
    fn preauthorize(&self, conn: &duckdb::Connection, statements: &[Statement]) -> Result<()> {
        if statements.len() < 2 || self.identity.effective_superuser() {
            return Ok(());
        }
        for st in statements {
            match self.authorize(conn, st) {
                Err(e @ Error::PermissionDenied(_)) | Err(e @ Error::Unauthenticated(_)) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    fn check_statement(
        &self,
        conn: &duckdb::Connection,
        st: &Statement,
        identity: &Identity,
        inner: &Arc<Inner>,
    ) -> Result<Option<String>> {
        let engine = inner.engine();
        let policy = inner.auth.policy();
        match st {
            Statement::Pond(PondStatement::CreateDatabase { .. })
            | Statement::Pond(PondStatement::DropDatabase { .. })
            | Statement::Pond(PondStatement::RenameDatabase { .. }) => {
                Err(Error::PermissionDenied("permission denied: creating, dropping and renaming databases requires a superuser".into()))
            }
            Statement::Pond(PondStatement::AttachCatalog { .. })
            | Statement::Pond(PondStatement::Detach { .. })
            | Statement::Pond(PondStatement::RefreshCatalog { .. }) => {
                Err(Error::PermissionDenied("permission denied: ATTACH, DETACH and REFRESH CATALOG require a superuser".into()))
            }
            Statement::Pond(PondStatement::CreateSecret(_))
            | Statement::Pond(PondStatement::DropSecret { .. })
            | Statement::Pond(PondStatement::ShowSecrets) => {
                Err(Error::PermissionDenied("permission denied: secrets are managed by superusers only".into()))
            }
            Statement::Pond(PondStatement::LinkDatabase { .. })
            | Statement::Pond(PondStatement::SyncDatabase { .. })
            | Statement::Pond(PondStatement::UnlinkDatabase { .. })
            | Statement::Pond(PondStatement::ShowLinks) => {
                Err(Error::PermissionDenied("permission denied: LINK, SYNC, UNLINK DATABASE and SHOW LINKS require a superuser".into()))
            }
            Statement::Pond(PondStatement::Backup { .. }) => {
                Err(Error::PermissionDenied("permission denied: BACKUP requires a superuser".into()))
            }
            Statement::Pond(PondStatement::ShowNodes) => {
                Err(Error::PermissionDenied("permission denied: only superusers list the cluster's nodes".into()))
            }
            Statement::Pond(PondStatement::Use { database, .. }) => {
                let db = engine.resolve_database(database)?;
                if policy.allows(identity, &db, None, pond_auth::Privilege::Usage) {
                    Ok(None)
                } else {
                    Err(Error::PermissionDenied(format!("permission denied for database {db}")))
                }
            }
            // User and grant statements are checked by the auth layer; listings filter.
            Statement::Pond(_) => Ok(None),
            Statement::DuckDb(text) => {
                let infos = engine.databases();
                let lakes = engine.lakes_by_name(&infos);
                let databases: Vec<String> = infos.into_iter().map(|d| d.name).collect();
                let system_functions = inner.system_functions.read().clone();
                let (user_functions, catalog) = self.catalog_view(conn, inner)?;
                let (current_db, current_schema) = self.state.lock().conn_target.clone();
                let checker = crate::sandbox::Checker {
                    conn,
                    identity,
                    policy: &policy,
                    databases: &databases,
                    lakes: &lakes,
                    current_db,
                    current_schema,
                    system_functions: &system_functions,
                    user_functions: &user_functions,
                    catalog: &catalog,
                    counter: &inner.statement_counter,
                    rewrites: Default::default(),
                    externals: &inner.externals.names(),
                };
                checker.check(text)
            }
        }
    }

    /// Macro names (including this session's temporary ones) and every table
    /// and view, cached until a statement may have changed the catalog.
    fn catalog_view(&self, conn: &duckdb::Connection, inner: &Arc<Inner>) -> Result<CatalogView> {
        let generation = inner.catalog_generation.load(Ordering::SeqCst);
        {
            let cached = self.catalog_cache.lock();
            if cached.0 == generation {
                return Ok(cached.1.clone());
            }
        }
        let mut stmt =
            conn.prepare_cached("SELECT DISTINCT lower(function_name) FROM duckdb_functions() WHERE database_name <> 'system'")?;
        let names: HashSet<String> = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<std::result::Result<_, _>>()?;
        let view = (Arc::new(names), Arc::new(crate::sandbox::CatalogSnapshot::load(conn)?));
        *self.catalog_cache.lock() = (generation, view.clone());
        Ok(view)
    }

    /// After a statement that may have changed the catalog, caches built on it are refreshed.
    fn after_statement(&self, st: &Statement) {
        self.note_write(st);
        let Statement::DuckDb(text) = st else { return };
        let first = first_word(text);
        self.note_connection_state(&first, text);
        let catalog_changing = [
            "create", "drop", "alter", "attach", "detach", "load", "install", "import", "use", "set", "reset", "commit", "rollback",
            "abort", "end", "comment",
        ];
        if !catalog_changing.contains(&first.as_str()) {
            return;
        }
        let Ok(inner) = self.engine() else { return };
        inner.catalog_generation.fetch_add(1, Ordering::SeqCst);
        if first == "load" {
            if let Ok(conn) = inner.engine().root_clone() {
                if let Ok(names) = crate::engine::builtin_functions(&conn) {
                    *inner.system_functions.write() = Arc::new(names);
                }
            }
        }
        if first == "drop" || first == "alter" {
            self.grants_follow_tables(&inner, text);
        }
    }

    /// Notes what a statement did to the connection that another connection
    /// does not share (see [`Session::describe`]).
    fn note_connection_state(&self, first: &str, text: &str) {
        let mut state = self.state.lock();
        match first {
            "set" | "reset" if replayable_setting(text) => state.settings.push(text.to_string()),
            "set" | "reset" => state.diverged = true,
            "create" | "drop" | "alter" | "comment" => {
                if state.transaction.is_some() {
                    state.uncommitted_ddl = true;
                }
                if first == "create" && mentions_temporary(text) {
                    state.diverged = true;
                }
            }
            _ => {}
        }
    }

    /// Table grants die with their table and move with a rename, so a new table
    /// of an old name does not inherit them.
    fn grants_follow_tables(&self, inner: &Arc<Inner>, text: &str) {
        let changes = crate::sandbox::dropped_or_renamed_tables(text);
        if changes.is_empty() {
            return;
        }
        let engine = inner.engine();
        let (cur_db, cur_schema) = self.state.lock().conn_target.clone();
        let r = inner.auth.meta().update(|m| {
            for (parts, to) in &changes {
                let (db, schema, table) = match parts.as_slice() {
                    [t] => (cur_db.clone(), cur_schema.clone(), t.clone()),
                    [a, t] if engine.database_exists(a) => (a.to_ascii_lowercase(), "main".to_string(), t.clone()),
                    [s, t] => (cur_db.clone(), s.clone(), t.clone()),
                    [d, s, t] => (d.to_ascii_lowercase(), s.clone(), t.clone()),
                    _ => continue,
                };
                pond_auth::policy::table_renamed(m, &db, &schema, &table, to.as_deref());
            }
            Ok::<_, Error>(())
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not update table grants after DROP/RENAME");
        }
    }

    /// Resolves what a GRANT/REVOKE names to existing objects.
    fn resolve_grant_target(
        &self,
        conn: &duckdb::Connection,
        engine: &crate::Engine,
        on: &crate::sql::GrantOn,
    ) -> Result<pond_auth::GrantTarget> {
        use crate::sql::GrantOn;
        let (current_db, current_schema) = self.state.lock().conn_target.clone();
        // An external catalog is a database in the grant model; its tables are
        // checked against the metastore (`hive1.db.t`).
        match on {
            GrantOn::Database(d) if engine.is_external(d) => return Ok(pond_auth::GrantTarget::Database(d.to_ascii_lowercase())),
            GrantOn::Table(parts) if parts.len() == 3 && engine.is_external(&parts[0]) => {
                let c = parts[0].to_ascii_lowercase();
                let t = engine.external(&c)?.table(&parts[1], &parts[2])?;
                return Ok(pond_auth::GrantTarget::Table {
                    database: c,
                    schema: t.namespace.to_ascii_lowercase(),
                    table: t.name.to_ascii_lowercase(),
                });
            }
            _ => {}
        }
        let (db, schema, table) = match on {
            GrantOn::Database(d) => return Ok(pond_auth::GrantTarget::Database(engine.resolve_database(d)?)),
            GrantOn::Table(parts) => match parts.as_slice() {
                [t] => (current_db, current_schema, t.clone()),
                [a, t] if engine.database_exists(a) => (engine.resolve_database(a)?, "main".to_string(), t.clone()),
                [s, t] => (current_db, s.clone(), t.clone()),
                [d, s, t] => (engine.resolve_database(d)?, s.clone(), t.clone()),
                _ => return Err(Error::InvalidRequest("a table name has at most three parts".into())),
            },
        };
        let mut stmt = conn.prepare_cached(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = $1 AND lower(schema_name) = lower($2) AND lower(table_name) = lower($3) \
             UNION ALL SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = $1 AND lower(schema_name) = lower($2) AND lower(view_name) = lower($3)",
        )?;
        let found: Option<(String, String)> = stmt.query_map([&db, &schema, &table], |r| Ok((r.get(0)?, r.get(1)?)))?.next().transpose()?;
        let (schema, table) = found.ok_or_else(|| Error::NotFound(format!("table {db}.{schema}.{table}")))?;
        Ok(pond_auth::GrantTarget::Table { database: db, schema, table })
    }

    /// Keeps the session's idea of an open transaction in step with
    /// BEGIN/COMMIT/ROLLBACK sent as plain SQL.
    /// A COMMIT or ROLLBACK ends the transaction even when it fails (DuckDB
    /// then rolls back); a BEGIN opens one only when it succeeds.
    fn track_transaction(&self, st: &Statement, succeeded: bool) {
        if let Statement::DuckDb(text) = st {
            let first = text.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
            let mut state = self.state.lock();
            let open = match first.trim_end_matches(';') {
                "begin" | "start" if succeeded && state.transaction.is_none() => {
                    state.transaction = Some(new_handle());
                    true
                }
                "commit" | "rollback" | "end" | "abort" => {
                    state.transaction = None;
                    state.uncommitted_ddl = false;
                    false
                }
                _ => return,
            };
            if let Some(inner) = self.engine.upgrade() {
                let mut txns = inner.open_transactions.lock();
                if open {
                    txns.insert(self.id.clone(), Instant::now());
                } else {
                    txns.remove(&self.id);
                }
            }
        }
    }

    /// Executes one of Pond's own statements; returns its result batch.
    fn run_pond(&self, conn: &duckdb::Connection, st: &PondStatement, identity: &Identity) -> Result<RecordBatch> {
        let engine = self.engine()?.engine();
        let auth = engine.authenticator().clone();
        match st {
            PondStatement::CreateDatabase { name, if_not_exists } => {
                engine.create_database(name, *if_not_exists)?;
            }
            PondStatement::DropDatabase { name, if_exists } => {
                let resolved = engine.resolve_database(name).ok();
                if resolved.as_deref() == Some(crate::DEFAULT_DATABASE) {
                    return Err(Error::InvalidRequest(format!("database '{}' cannot be dropped", crate::DEFAULT_DATABASE)));
                }
                if resolved.as_deref() == Some(self.current_database().as_str())
                    || resolved.as_deref() == Some(self.connection_database().as_str())
                {
                    return Err(Error::InvalidRequest(format!(
                        "cannot drop database '{name}' while it is this session's current database (USE another first)"
                    )));
                }
                engine.drop_database(name, *if_exists)?;
            }
            PondStatement::RenameDatabase { from, to } => {
                engine.rename_database(from, to)?;
                let mut state = self.state.lock();
                let new_name = to.to_ascii_lowercase();
                if state.database.eq_ignore_ascii_case(from) {
                    state.database = new_name.clone();
                }
                if state.conn_target.0.eq_ignore_ascii_case(from) {
                    state.conn_target.0 = new_name.clone();
                    drop(state);
                    conn.execute_batch(&format!("USE {}", quote_ident(&new_name)))?;
                }
            }
            PondStatement::ShowDatabases => {
                let externals = engine.external_catalogs();
                let rows: Vec<(String, String)> = engine
                    .visible_databases(identity)
                    .into_iter()
                    .map(|d| {
                        let kind = externals.iter().find(|c| c.name == d.name).map(|c| c.provider.clone());
                        (d.name, kind.unwrap_or_else(|| "pond".to_string()))
                    })
                    .collect();
                let (names, types): (Vec<String>, Vec<String>) = rows.into_iter().unzip();
                return string_batch(&[("database_name", names), ("type", types)]);
            }
            PondStatement::AttachCatalog { name, uri, options, if_not_exists } => {
                let spec = pond_catalog::AttachSpec::from_attach(uri, options.clone())
                    .ok_or_else(|| Error::InvalidRequest("not an external catalog ATTACH".into()))??;
                engine.attach_catalog(name, spec, *if_not_exists)?;
            }
            // IF EXISTS is in `text`: DuckDB applies it to its own attachments.
            PondStatement::Detach { name, text, .. } => {
                // Not an external catalog: a Pond database is dropped, not
                // detached; anything else is DuckDB's own attachment.
                if !engine.detach_catalog(name)? {
                    if engine.database_exists(name) {
                        return Err(Error::InvalidRequest(format!("{name} is a Pond database: use DROP DATABASE {name}")));
                    }
                    conn.execute_batch(text)?;
                }
            }
            PondStatement::RefreshCatalog { name, namespace, table } => {
                engine.refresh_catalog(name, namespace.as_deref(), table.as_deref())?;
            }
            PondStatement::CreateSecret(c) => engine.create_secret(c)?,
            PondStatement::DropSecret { name, if_exists } => engine.drop_secret(name, *if_exists)?,
            PondStatement::LinkDatabase { name, source, options } => {
                let (db, mode, tables, rows, message) = engine.link_database(name, source, options)?;
                let schema = Arc::new(Schema::new(vec![
                    Field::new("database", DataType::Utf8, false),
                    Field::new("mode", DataType::Utf8, false),
                    Field::new("tables", DataType::Int64, false),
                    Field::new("rows", DataType::Int64, false),
                    Field::new("message", DataType::Utf8, false),
                ]));
                return Ok(RecordBatch::try_new(
                    schema,
                    vec![
                        Arc::new(StringArray::from(vec![db])) as ArrayRef,
                        Arc::new(StringArray::from(vec![mode])),
                        Arc::new(arrow_array::Int64Array::from(vec![tables as i64])),
                        Arc::new(arrow_array::Int64Array::from(vec![rows as i64])),
                        Arc::new(StringArray::from(vec![message])),
                    ],
                )?);
            }
            PondStatement::SyncDatabase { name } => {
                let (db, position, waited_ms) = engine.sync_database(name)?;
                let schema = Arc::new(Schema::new(vec![
                    Field::new("database", DataType::Utf8, false),
                    Field::new("position", DataType::Utf8, false),
                    Field::new("waited_ms", DataType::Float64, false),
                ]));
                return Ok(RecordBatch::try_new(
                    schema,
                    vec![
                        Arc::new(StringArray::from(vec![db])) as ArrayRef,
                        Arc::new(StringArray::from(vec![position])),
                        Arc::new(arrow_array::Float64Array::from(vec![waited_ms])),
                    ],
                )?);
            }
            PondStatement::Backup { target } => {
                let service = engine
                    .backup_service()
                    .ok_or_else(|| Error::Unavailable("backups are not available in this server (no backup service)".into()))?;
                let s = service.backup(target.as_deref()).map_err(Error::InvalidRequest)?;
                let schema = Arc::new(Schema::new(vec![
                    Field::new("id", DataType::Utf8, false),
                    Field::new("target", DataType::Utf8, false),
                    Field::new("files", DataType::Int64, false),
                    Field::new("bytes_copied", DataType::Int64, false),
                    Field::new("bytes_reused", DataType::Int64, false),
                    Field::new("seconds", DataType::Float64, false),
                ]));
                return Ok(RecordBatch::try_new(
                    schema,
                    vec![
                        Arc::new(StringArray::from(vec![s.id])) as ArrayRef,
                        Arc::new(StringArray::from(vec![s.target])),
                        Arc::new(arrow_array::Int64Array::from(vec![s.files as i64])),
                        Arc::new(arrow_array::Int64Array::from(vec![s.bytes_copied as i64])),
                        Arc::new(arrow_array::Int64Array::from(vec![s.bytes_reused as i64])),
                        Arc::new(arrow_array::Float64Array::from(vec![s.seconds])),
                    ],
                )?);
            }
            PondStatement::UnlinkDatabase { name } => {
                let message = engine.unlink_database(name)?;
                return string_batch(&[("message", vec![message])]);
            }
            PondStatement::ShowLinks => {
                let rows = engine.link_rows();
                let strings = |f: &dyn Fn(&crate::links::LinkRow) -> String| -> ArrayRef {
                    Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
                };
                let schema = Arc::new(Schema::new(vec![
                    Field::new("database", DataType::Utf8, false),
                    Field::new("source", DataType::Utf8, false),
                    Field::new("mode", DataType::Utf8, false),
                    Field::new("state", DataType::Utf8, false),
                    Field::new("applied_lsn", DataType::Utf8, false),
                    Field::new("lag_bytes", DataType::Int64, false),
                    Field::new("lag_seconds", DataType::Float64, false),
                    Field::new("tables", DataType::Int64, false),
                    Field::new("applied_changes", DataType::Int64, false),
                    Field::new("last_error", DataType::Utf8, true),
                    Field::new("notes", DataType::Utf8, false),
                ]));
                return Ok(RecordBatch::try_new(
                    schema,
                    vec![
                        strings(&|r| r.database.clone()),
                        strings(&|r| r.status.source.clone()),
                        strings(&|r| r.status.mode.as_str().to_string()),
                        strings(&|r| r.status.state.as_str().to_string()),
                        strings(&|r| r.status.position.clone()),
                        Arc::new(arrow_array::Int64Array::from(rows.iter().map(|r| r.status.lag_bytes as i64).collect::<Vec<_>>())),
                        Arc::new(arrow_array::Float64Array::from(rows.iter().map(|r| r.status.lag_seconds).collect::<Vec<_>>())),
                        Arc::new(arrow_array::Int64Array::from(rows.iter().map(|r| r.status.tables as i64).collect::<Vec<_>>())),
                        Arc::new(arrow_array::Int64Array::from(rows.iter().map(|r| r.status.applied_changes as i64).collect::<Vec<_>>())),
                        Arc::new(StringArray::from(rows.iter().map(|r| r.status.last_error.clone()).collect::<Vec<_>>())),
                        strings(&|r| r.status.notes.join("; ")),
                    ],
                )?);
            }
            PondStatement::ShowNodes => {
                let nodes = engine.cluster_nodes(identity)?;
                let schema = Arc::new(Schema::new(vec![
                    Field::new("node", DataType::Utf8, false),
                    Field::new("this_node", DataType::Boolean, false),
                    Field::new("up", DataType::Boolean, false),
                    Field::new("http_url", DataType::Utf8, true),
                    Field::new("seconds_since_heartbeat", DataType::Float64, false),
                    Field::new("seconds_since_flush", DataType::Float64, true),
                    Field::new("flushed_rows", DataType::Int64, false),
                    Field::new("unflushed_rows", DataType::Int64, false),
                    Field::new("started_at", DataType::Utf8, false),
                ]));
                let col = |f: &dyn Fn(&pond_cluster::NodeInfo) -> String| -> ArrayRef {
                    Arc::new(StringArray::from(nodes.iter().map(f).collect::<Vec<_>>()))
                };
                return Ok(RecordBatch::try_new(
                    schema,
                    vec![
                        col(&|n| n.node.clone()),
                        Arc::new(arrow_array::BooleanArray::from(nodes.iter().map(|n| n.this_node).collect::<Vec<_>>())),
                        Arc::new(arrow_array::BooleanArray::from(nodes.iter().map(|n| n.up).collect::<Vec<_>>())),
                        Arc::new(StringArray::from(nodes.iter().map(|n| n.http_url.clone()).collect::<Vec<_>>())),
                        Arc::new(arrow_array::Float64Array::from(nodes.iter().map(|n| n.seconds_since_heartbeat).collect::<Vec<_>>())),
                        Arc::new(arrow_array::Float64Array::from(nodes.iter().map(|n| n.seconds_since_flush).collect::<Vec<_>>())),
                        Arc::new(arrow_array::Int64Array::from(nodes.iter().map(|n| n.flushed_rows as i64).collect::<Vec<_>>())),
                        Arc::new(arrow_array::Int64Array::from(nodes.iter().map(|n| n.unflushed_rows as i64).collect::<Vec<_>>())),
                        col(&|n| n.started_at.clone()),
                    ],
                )?);
            }
            PondStatement::ShowSecrets => {
                let rows = engine.list_secrets();
                let names = rows.iter().map(|r| r.0.clone()).collect();
                let types = rows.iter().map(|r| r.1.clone()).collect();
                let created = rows.iter().map(|r| r.2.clone()).collect();
                return string_batch(&[("name", names), ("type", types), ("created_at", created)]);
            }
            PondStatement::ShowTables => {
                let db = self.connection_database();
                let schema = self.state.lock().conn_target.1.clone();
                let mut stmt = conn.prepare_cached(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = $1 AND schema_name = $2 \
                     UNION SELECT view_name FROM duckdb_views() WHERE database_name = $1 AND schema_name = $2 AND NOT internal ORDER BY 1",
                )?;
                let all: Vec<String> = stmt.query_map([&db, &schema], |r| r.get::<_, String>(0))?.collect::<std::result::Result<_, _>>()?;
                let policy = auth.policy();
                let names = all.into_iter().filter(|t| policy.table_visible(identity, &db, &schema, t)).collect();
                return string_batch(&[("name", names)]);
            }
            PondStatement::CreateUser { name, password, superuser } => auth.create_user(identity, name, password, *superuser)?,
            PondStatement::AlterUserPassword { name, password } => auth.alter_password(identity, name, password)?,
            PondStatement::RenameUser { from, to } => auth.rename_user(identity, from, to)?,
            PondStatement::AlterUserSuperuser { name, superuser } => auth.set_superuser(identity, name, *superuser)?,
            PondStatement::DropUser { name, if_exists } => {
                auth.drop_user(identity, name, *if_exists)?;
            }
            PondStatement::Grant { revoke, privileges, on, user } => {
                let target = self.resolve_grant_target(conn, &engine, on)?;
                if *revoke {
                    auth.revoke(identity, user, &target, privileges)?;
                } else {
                    auth.grant(identity, user, &target, privileges)?;
                }
            }
            PondStatement::ShowUsers => {
                let users = auth.list_users(identity)?;
                return string_batch(&[
                    ("name", users.iter().map(|u| u.name.clone()).collect()),
                    ("superuser", users.iter().map(|u| u.superuser.to_string()).collect()),
                    ("created_at", users.iter().map(|u| u.created_at.clone()).collect()),
                    ("role", users.iter().map(|u| u.role.to_string()).collect()),
                    ("member_of", users.iter().map(|u| u.member_of.join(",")).collect()),
                ]);
            }
            PondStatement::CreateRole { name } => auth.create_role(identity, name)?,
            PondStatement::DropRole { name, if_exists } => {
                auth.drop_role(identity, name, *if_exists)?;
            }
            PondStatement::GrantRole { revoke, role, member } => auth.grant_role(identity, role, member, *revoke)?,
            PondStatement::ShowGrants { user } => {
                let grants = auth.show_grants(identity, user.as_deref())?;
                return string_batch(&[
                    ("user", grants.iter().map(|g| g.user.clone()).collect()),
                    ("database", grants.iter().map(|g| g.database.clone()).collect()),
                    ("schema", grants.iter().map(|g| g.schema.clone().unwrap_or_default()).collect()),
                    ("table", grants.iter().map(|g| g.table.clone().unwrap_or_default()).collect()),
                    ("privileges", grants.iter().map(|g| g.privileges.join(",").to_ascii_uppercase()).collect()),
                ]);
            }
            PondStatement::Use { database, schema } => {
                let db = engine.resolve_database(database)?;
                self.use_database_on(conn, &db, schema.as_deref())?;
            }
            PondStatement::Job(text) => {
                let (database, schema) = self.state.lock().conn_target.clone();
                return engine.job_statement(text, identity, &database, &schema);
            }
        }
        Ok(success_batch())
    }

    fn use_database_on(&self, conn: &duckdb::Connection, db: &str, schema: Option<&str>) -> Result<()> {
        let target = match schema {
            Some(s) => format!("{}.{}", quote_ident(db), quote_ident(s)),
            None => quote_ident(db),
        };
        conn.execute_batch(&format!("USE {target}"))?;
        let mut state = self.state.lock();
        state.database = db.to_string();
        state.schema = schema.unwrap_or("main").to_string();
        state.conn_target = (state.database.clone(), state.schema.clone());
        Ok(())
    }

    /// Used when the session opens (no statement can be running yet).
    pub(crate) fn use_database_blocking(&self, db: &str, schema: Option<&str>) -> Result<()> {
        let conn = self.conn.lock();
        self.use_database_on(&conn, db, schema)
    }

    /// Switches the current database (and optionally schema), like `USE`.
    pub async fn set_database(self: &Arc<Self>, database: &str, schema: Option<&str>) -> Result<()> {
        let inner = self.engine()?;
        let db = inner.engine().resolve_database(database)?;
        let identity = inner.auth.revalidate(&self.identity)?;
        if !inner.auth.policy().allows(&identity, &db, None, pond_auth::Privilege::Usage) {
            return Err(Error::PermissionDenied(format!("permission denied for database {db}")));
        }
        let schema = schema.map(str::to_string);
        let (_r, h) = self.spawn(move |s, conn, _| s.use_database_on(conn, &db, schema.as_deref()));
        h.await.map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Switches the current schema within the current database.
    pub async fn set_schema(self: &Arc<Self>, schema: &str) -> Result<()> {
        let db = self.current_database();
        self.set_database(&db, Some(schema)).await
    }

    // ----- prepared statements -------------------------------------------------

    /// Prepares `sql`. A single DuckDB statement is authorized (as it would be
    /// to run) and described by DuckDB: result schema and parameter types
    /// (see [`Session::describe`]). Pond statements and multi-statement strings
    /// are kept as text and run when executed; they have no schema up front.
    pub async fn prepare(self: &Arc<Self>, sql: &str) -> Result<PreparedInfo> {
        let statements = sql::parse(sql)?;
        if statements.is_empty() {
            return Err(Error::InvalidRequest("cannot prepare an empty statement".into()));
        }
        let single = match statements.as_slice() {
            [Statement::DuckDb(text)] => Some(text.clone()),
            _ => None,
        };
        let (parameter_types, dataset_schema) = match single {
            Some(text) => {
                let (_r, h) = self.spawn(move |session, conn, _| {
                    // The sandbox first: nothing is described for a statement the caller may not run.
                    let (_identity, rewritten) = session.authorize(conn, &Statement::DuckDb(text.clone()))?;
                    if let Some(d) = session.describe(rewritten.as_deref().unwrap_or(&text)) {
                        return Ok((d.params, d.schema));
                    }
                    // Not described: DuckDB counts the parameters on the session's
                    // own connection (and reports the statement's errors now).
                    let n = if text.contains(['?', '$']) { conn.prepare(&text)?.parameter_count() } else { 0 };
                    Ok((vec![DataType::Null; n], None))
                });
                h.await.map_err(|e| Error::Internal(e.to_string()))??
            }
            None => (Vec::new(), None),
        };
        let param_count = parameter_types.len();
        let handle = new_handle();
        self.state.lock().prepared.insert(handle.clone(), Prepared { statements, param_count, params: None });
        Ok(PreparedInfo { handle, param_count, dataset_schema, parameter_types })
    }

    /// Describes `text` (authorized already) on the session's describing
    /// connection, a second DuckDB connection that follows this one: switched
    /// to the same database and schema, with the same SET/RESET statements
    /// replayed. Where it could resolve names or types differently — the
    /// session made temporary objects, or has DDL in its open transaction —
    /// or DuckDB cannot prepare the statement there, the answer is `None` and
    /// the statement is prepared as before, without a schema.
    fn describe(&self, text: &str) -> Option<crate::describe::Described> {
        let (target, settings) = {
            let state = self.state.lock();
            if state.diverged || state.uncommitted_ddl || state.settings.len() > MIRRORED_SETTINGS {
                return None;
            }
            (state.conn_target.clone(), state.settings.clone())
        };
        let mut slot = self.mirror.lock();
        if slot.is_none() {
            let describer =
                self.engine().ok()?.instance.describer().map_err(|e| tracing::warn!(error = %e, "no describing connection")).ok()?;
            *slot = Some(Mirror { describer, target: (String::new(), String::new()), settings: 0, broken: false });
        }
        let m = slot.as_mut()?;
        if m.broken {
            return None;
        }
        let followed = (|| {
            if m.target != target {
                m.describer.execute(&format!("USE {}.{}", quote_ident(&target.0), quote_ident(&target.1)))?;
                m.target = target;
            }
            for s in settings.get(m.settings..).unwrap_or_default() {
                m.describer.execute(s)?;
                m.settings += 1;
            }
            Ok::<_, Error>(())
        })();
        if let Err(e) = followed {
            tracing::debug!(error = %e, "describing connection cannot follow the session; statements are no longer described");
            m.broken = true;
            return None;
        }
        m.describer.describe(text).map_err(|e| tracing::debug!(error = %e, "statement not described")).ok()
    }

    fn prepared(&self, handle: &[u8]) -> Result<Prepared> {
        self.state
            .lock()
            .prepared
            .get(handle)
            .cloned()
            .ok_or_else(|| Error::InvalidRequest("unknown or closed prepared statement handle".into()))
    }

    pub fn prepared_param_count(&self, handle: &[u8]) -> Result<usize> {
        Ok(self.prepared(handle)?.param_count)
    }

    /// Binds parameter rows to a prepared statement (replacing earlier ones).
    pub fn bind(&self, handle: &[u8], rows: ParamRows) -> Result<()> {
        let mut state = self.state.lock();
        let p =
            state.prepared.get_mut(handle).ok_or_else(|| Error::InvalidRequest("unknown or closed prepared statement handle".into()))?;
        if let Some(row) = rows.first() {
            if row.len() != p.param_count {
                return Err(Error::InvalidRequest(format!(
                    "statement has {} parameter(s) but {} value(s) were bound",
                    p.param_count,
                    row.len()
                )));
            }
        }
        p.params = Some(Arc::new(rows));
        Ok(())
    }

    pub fn close_prepared(&self, handle: &[u8]) -> bool {
        self.state.lock().prepared.remove(handle).is_some()
    }

    pub async fn query_prepared(self: &Arc<Self>, handle: &[u8]) -> Result<QueryStream> {
        let p = self.prepared(handle)?;
        self.check_bound(&p)?;
        self.query_statements(p.statements, p.params).await
    }

    pub async fn update_prepared(self: &Arc<Self>, handle: &[u8]) -> Result<i64> {
        let p = self.prepared(handle)?;
        self.check_bound(&p)?;
        self.update_statements(p.statements, p.params).await
    }

    fn check_bound(&self, p: &Prepared) -> Result<()> {
        if p.param_count > 0 && p.params.as_ref().is_none_or(|r| r.is_empty()) {
            return Err(Error::InvalidRequest(format!("statement has {} parameter(s) but none were bound", p.param_count)));
        }
        Ok(())
    }

    // ----- transactions --------------------------------------------------------

    /// Begins a transaction; returns its id.
    pub async fn begin(self: &Arc<Self>) -> Result<Vec<u8>> {
        if self.in_transaction() {
            return Err(Error::InvalidRequest("a transaction is already open on this session".into()));
        }
        self.update("BEGIN TRANSACTION", None).await?;
        Ok(self.state.lock().transaction.clone().unwrap_or_default())
    }

    /// Checks a transaction id sent by a client against the open transaction.
    pub fn check_transaction(&self, id: &[u8]) -> Result<()> {
        match &self.state.lock().transaction {
            Some(t) if t.as_slice() == id => Ok(()),
            _ => Err(Error::InvalidRequest("unknown transaction id (it was committed, rolled back, or never begun here)".into())),
        }
    }

    pub async fn commit(self: &Arc<Self>) -> Result<()> {
        self.update("COMMIT", None).await.map(|_| ())
    }

    pub async fn rollback(self: &Arc<Self>) -> Result<()> {
        self.update("ROLLBACK", None).await.map(|_| ())
    }

    // ----- bulk ingest ---------------------------------------------------------

    /// Bulk ingest needs INSERT on an existing table, WRITE on the database to
    /// create or replace one; temporary tables are the session's own.
    pub fn authorize_ingest(&self, db: &str, schema: &str, table: &str, exists: bool, mode: IngestMode) -> Result<()> {
        let inner = self.engine()?;
        inner.engine().check_linked_write(
            &format!("INSERT INTO {}.{}.{} VALUES (1)", quote_ident(db), quote_ident(schema), quote_ident(table)),
            db,
        )?;
        let identity = inner.auth.revalidate(&self.identity)?;
        if identity.effective_superuser() || db == "temp" {
            return Ok(());
        }
        let policy = inner.auth.policy();
        let (privilege, what) = match (exists, mode) {
            (true, IngestMode::Append) | (true, IngestMode::CreateAppend) => {
                (pond_auth::Privilege::Insert, format!("table {db}.{schema}.{table}"))
            }
            _ => (pond_auth::Privilege::Create, format!("database {db}")),
        };
        let table_ref = (privilege == pond_auth::Privilege::Insert).then_some((schema, table));
        if inner.engine().database_exists(db) && policy.allows(&identity, db, table_ref, privilege) {
            return Ok(());
        }
        let e = Error::PermissionDenied(format!("permission denied for {what} (needs {privilege})"));
        inner
            .auth
            .audit()
            .record(pond_auth::AuditEvent::new("denied", false, format!("{e}; bulk ingest")).user(&identity.user).protocol(self.protocol));
        Err(e)
    }

    /// Appends record batches from `batches` into a table, creating or
    /// replacing it as `req.mode` says. Atomic unless a transaction is open (then
    /// it is part of that transaction). Returns the number of rows ingested.
    pub async fn ingest(
        self: &Arc<Self>,
        req: IngestRequest,
        schema: SchemaRef,
        mut batches: mpsc::Receiver<IngestMessage>,
    ) -> Result<i64> {
        let started = Instant::now();
        let metrics = self.engine()?.metrics.clone();
        let (_run, handle) = self.spawn(move |session, conn, run| {
            // Inside an open transaction the ingest joins it; otherwise it gets its own.
            let own_txn = !session.in_transaction();
            if own_txn {
                conn.execute_batch("BEGIN TRANSACTION")?;
            }
            let r = (|| {
                let (catalog, schema_name) = if req.temporary {
                    session.state.lock().diverged = true;
                    ("temp".to_string(), "main".to_string())
                } else {
                    let db = match &req.catalog {
                        Some(c) => session.engine()?.engine().resolve_database(c)?,
                        None => session.connection_database(),
                    };
                    (db, req.schema.clone().unwrap_or_else(|| session.current_schema()))
                };
                let qualified = format!("{}.{}.{}", quote_ident(&catalog), quote_ident(&schema_name), quote_ident(&req.table));
                let exists: i64 = conn.query_row(
                    "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
                    duckdb::params![catalog, schema_name, req.table],
                    |r| r.get(0),
                )?;
                session.authorize_ingest(&catalog, &schema_name, &req.table, exists > 0, req.mode)?;
                let create = match (exists > 0, req.mode) {
                    (true, IngestMode::Create) => {
                        return Err(Error::InvalidRequest(format!(
                            "table {catalog}.{schema_name}.{} already exists (mode create)",
                            req.table
                        )))
                    }
                    (false, IngestMode::Append) => {
                        return Err(Error::InvalidRequest(format!(
                            "table {catalog}.{schema_name}.{} does not exist (mode append)",
                            req.table
                        )))
                    }
                    (true, IngestMode::Replace) => {
                        conn.execute_batch(&format!("DROP TABLE {qualified}"))?;
                        true
                    }
                    (true, _) => false,
                    (false, _) => true,
                };
                if create {
                    let cols: Result<Vec<String>> =
                        schema.fields().iter().map(|f| Ok(format!("{} {}", quote_ident(f.name()), duckdb_type(f.data_type())?))).collect();
                    let kw = if req.temporary { "CREATE TEMPORARY TABLE" } else { "CREATE TABLE" };
                    let target = if req.temporary { quote_ident(&req.table) } else { qualified.clone() };
                    conn.execute_batch(&format!("{kw} {target} ({})", cols?.join(", ")))?;
                }
                let mut appender = conn.appender_to_catalog_and_db(&req.table, &catalog, &schema_name)?;
                let mut rows = 0i64;
                let mut finished = false;
                while let Some(msg) = batches.blocking_recv() {
                    if run.stop_error().is_some() {
                        return Err(Error::Cancelled);
                    }
                    match msg {
                        IngestMessage::Batch(batch) => {
                            rows += batch.num_rows() as i64;
                            appender.append_record_batch(decode_dictionaries(batch)?)?;
                        }
                        IngestMessage::Finish => {
                            finished = true;
                            break;
                        }
                    }
                }
                if run.stop_error().is_some() {
                    return Err(Error::Cancelled);
                }
                if !finished {
                    return Err(Error::InvalidRequest(format!("the data for {qualified} stopped before its end; nothing was loaded")));
                }
                appender.flush()?;
                Ok(rows)
            })();
            match r {
                Ok(rows) => {
                    if own_txn {
                        conn.execute_batch("COMMIT")?;
                    }
                    // A table may have been created: listings and checks must see it.
                    if let Ok(inner) = session.engine() {
                        inner.catalog_generation.fetch_add(1, Ordering::SeqCst);
                        if let Some(qc) = inner.qcache.as_ref() {
                            qc.versions.bump_all();
                        }
                    }
                    Ok(rows)
                }
                Err(e) => {
                    if own_txn {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    Err(e)
                }
            }
        });
        let r = handle.await.map_err(|e| Error::Internal(e.to_string()))?;
        metrics.query(self.protocol, started.elapsed().as_secs_f64(), r.is_ok());
        r
    }
}

/// Stops a statement when dropped, unless disarmed: ties DuckDB's work to the
/// lifetime of the request future that waits for it.
struct StopOnDrop(Option<Arc<RunState>>);

impl StopOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(run) = self.0.take() {
            run.stop(StopReason::Cancelled);
        }
    }
}

/// Removes DuckDB's "Did you mean …?" suggestions from an error message.
fn strip_suggestions(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(at) = rest.find("Did you mean") {
        out.push_str(rest[..at].trim_end_matches([' ', '\n']));
        // The hint runs to the end of its line.
        rest = match rest[at..].find('\n') {
            Some(nl) => &rest[at + nl..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

fn first_word(text: &str) -> String {
    let t = text.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
    t.split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("").to_ascii_lowercase()
}

/// Whether a CREATE statement makes a temporary object: `CREATE [OR REPLACE]
/// TEMP|TEMPORARY …`, or a name in the `temp` catalog. Errs towards yes.
fn mentions_temporary(text: &str) -> bool {
    text.split_whitespace()
        .skip(1)
        .take(7)
        .take_while(|w| !w.contains('(') && !w.eq_ignore_ascii_case("as"))
        .map(|w| w.to_ascii_lowercase())
        .any(|w| w == "temp" || w == "temporary" || w.starts_with("temp.") || w.starts_with("\"temp\"."))
}

/// `RESET …`, or `SET [SESSION|GLOBAL|LOCAL] name {=|TO} value` whose value
/// is a plain literal (a quoted string without quotes inside, a number, a
/// word): running it again on another connection does only what it did here.
fn replayable_setting(text: &str) -> bool {
    let t = text.trim().trim_end_matches(';').trim_end();
    if first_word(t) == "reset" {
        return true;
    }
    let value = match t.find('=') {
        Some(i) => &t[i + 1..],
        None => match t.to_ascii_lowercase().find(" to ") {
            Some(i) => &t[i + 4..],
            None => return false,
        },
    };
    let v = value.trim();
    let quoted = v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') && !v[1..v.len() - 1].contains('\'');
    let bare = !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+'));
    quoted || bare
}

/// Statement text for the audit log, without secrets.
fn redact(st: &Statement) -> String {
    let text = match st {
        Statement::Pond(PondStatement::CreateSecret(c)) => {
            return format!("CREATE SECRET {} (TYPE {}, values redacted)", c.name, c.secret_type)
        }
        Statement::Pond(PondStatement::LinkDatabase { name, .. }) => return format!("LINK DATABASE {name} TO POSTGRES '***'"),
        Statement::Pond(p) if p.has_secret() => return "CREATE/ALTER USER … PASSWORD '***'".into(),
        Statement::Pond(p) => format!("{p:?}"),
        Statement::DuckDb(t) => t.clone(),
    };
    // Blank every string literal: connection strings, keys and passwords hide in them.
    let text = {
        let mut out = String::with_capacity(text.len());
        let mut in_str = false;
        for c in text.chars() {
            if c == '\'' {
                in_str = !in_str;
                out.push(c);
                if in_str {
                    out.push_str("***");
                }
            } else if !in_str {
                out.push(c);
            }
        }
        out
    };
    text.chars().take(500).collect()
}

/// A result of text columns (SHOW statements).
fn string_batch(columns: &[(&str, Vec<String>)]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(columns.iter().map(|(n, _)| Field::new(*n, DataType::Utf8, false)).collect::<Vec<_>>()));
    let arrays = columns.iter().map(|(_, v)| Arc::new(StringArray::from(v.clone())) as ArrayRef).collect();
    Ok(RecordBatch::try_new(schema, arrays)?)
}

fn new_handle() -> Vec<u8> {
    uuid::Uuid::new_v4().as_bytes().to_vec()
}

fn success_batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("Success", DataType::Boolean, true)]));
    RecordBatch::try_new(schema, vec![Arc::new(BooleanArray::from(Vec::<bool>::new())) as ArrayRef])
        .unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(Schema::empty())))
}

/// Sends on the channel, giving up when the statement is stopped (e.g. the
/// client went away or a newer statement superseded this one).
fn send(run: &RunState, tx: &mpsc::Sender<Msg>, msg: Msg) -> Result<()> {
    match tx.try_send(msg) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(Error::Cancelled),
        Err(mpsc::error::TrySendError::Full(msg)) => {
            if let Some(e) = run.stop_error() {
                return Err(e);
            }
            futures::executor::block_on(async {
                tokio::select! {
                    r = tx.send(msg) => r.map_err(|_| Error::Cancelled),
                    _ = run.wake.notified() => Err(run.stop_error().unwrap_or(Error::Cancelled)),
                }
            })
        }
    }
}

fn bind_values(row: Option<&Vec<Value>>) -> Vec<Value> {
    row.cloned().unwrap_or_default()
}

fn execute_update(conn: &duckdb::Connection, text: &str, params: Option<&ParamRows>, in_transaction: bool) -> Result<i64> {
    // Prepared anew each time: DuckDB plans with the tables' statistics at
    // prepare time (a filter on an empty table becomes an empty plan), so a
    // cached statement can answer from data that has changed since.
    let mut stmt = conn.prepare(text)?;
    match params {
        Some(rows) if rows.len() > 1 => {
            // Many parameter rows run as one transaction unless one is open.
            let own_txn = !in_transaction;
            if own_txn {
                conn.execute_batch("BEGIN TRANSACTION")?;
            }
            let mut total = 0i64;
            for row in rows.iter() {
                match stmt.execute(duckdb::params_from_iter(row.iter())) {
                    Ok(n) => total += n as i64,
                    Err(e) => {
                        if own_txn {
                            let _ = conn.execute_batch("ROLLBACK");
                        }
                        return Err(e.into());
                    }
                }
            }
            if own_txn {
                conn.execute_batch("COMMIT")?;
            }
            Ok(total)
        }
        _ => Ok(stmt.execute(duckdb::params_from_iter(bind_values(params.and_then(|r| r.first())).iter()))? as i64),
    }
}

/// The body of a query: runs all statements, streams the last one's result.
#[allow(clippy::too_many_arguments)]
fn produce(
    session: &Arc<Session>,
    conn: &duckdb::Connection,
    run: &Arc<RunState>,
    statements: &[Statement],
    params: Option<&ParamRows>,
    tx: &mpsc::Sender<Msg>,
    batch_bytes: usize,
    probe: Option<&crate::qcache::Probe>,
) -> Result<()> {
    let n = statements.len();
    if params.is_some() && n > 1 {
        return Err(Error::InvalidRequest("parameters can only be bound to a single statement".into()));
    }
    session.preauthorize(conn, statements)?;
    for (i, st) in statements.iter().enumerate() {
        let last = i + 1 == n;
        let (identity, rewritten) = session.authorize(conn, st)?;
        match st {
            Statement::Pond(p) => {
                let batch = session.run_pond(conn, p, &identity)?;
                if last {
                    let types = batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| duckdb_type(f.data_type()).unwrap_or_else(|_| f.data_type().to_string()))
                        .collect();
                    send(run, tx, Msg::Schema(batch.schema(), Arc::new(types)))?;
                    if batch.num_rows() > 0 {
                        send(run, tx, Msg::Batch(batch))?;
                    }
                }
            }
            Statement::DuckDb(text) if last => {
                let text = rewritten.as_deref().unwrap_or(text);
                let rows: Vec<Vec<Value>> = match params {
                    Some(r) if !r.is_empty() => r.clone(),
                    _ => vec![Vec::new()],
                };
                // The query cache's key takes the write generations now, before the statement runs.
                let mut cached = None;
                match probe.map(|p| p.start(conn, rewritten.is_some())) {
                    Some(crate::qcache::Start::Hit(entry)) => {
                        send(run, tx, Msg::Schema(entry.schema.clone(), entry.duckdb_types.clone()))?;
                        for b in &entry.batches {
                            send(run, tx, Msg::Batch(b.clone()))?;
                        }
                        return Ok(());
                    }
                    Some(crate::qcache::Start::Store(key, collector)) => cached = Some((key, collector)),
                    _ => {}
                }
                // Not prepare_cached: see execute_update.
                let mut stmt = conn.prepare(text)?;
                let mut schema_sent = false;
                for row in &rows {
                    let executed = stmt.stream_arrow(duckdb::params_from_iter(row.iter())).map(drop);
                    session.track_transaction(st, executed.is_ok());
                    executed?;
                    let schema = stmt.schema();
                    let types: Vec<String> = (0..schema.fields().len()).map(|i| logical_type_name(&stmt.column_logical_type(i))).collect();
                    let collect = cached.as_mut().map(|(_, c)| c);
                    stream_result(&stmt, &schema, Arc::new(types), run, tx, batch_bytes, !schema_sent, collect)?;
                    schema_sent = true;
                }
                if let (Some(p), Some((key, c))) = (probe, cached) {
                    p.store(key, c);
                }
            }
            Statement::DuckDb(text) => {
                let r = execute_one(conn, rewritten.as_deref().unwrap_or(text), &identity);
                session.track_transaction(st, r.is_ok());
                r?;
            }
        }
        session.after_statement(st);
    }
    Ok(())
}

/// Runs a statement that is not the last of its request. Superusers may send
/// anything DuckDB accepts; for everyone else exactly one statement runs (the
/// one that was checked), whatever DuckDB's parser would make of the text.
fn execute_one(conn: &duckdb::Connection, text: &str, identity: &Identity) -> Result<()> {
    if identity.effective_superuser() {
        conn.execute_batch(text)?;
    } else {
        conn.prepare(text)?.execute([])?;
    }
    Ok(())
}

/// Streams DuckDB's chunks, coalesced to about `batch_bytes` per batch. The
/// first chunk is fetched before the schema is announced, so execution errors
/// reach the caller as errors of the request rather than of the stream.
#[allow(clippy::too_many_arguments)]
fn stream_result(
    stmt: &duckdb::Statement<'_>,
    schema: &SchemaRef,
    types: Arc<Vec<String>>,
    run: &RunState,
    tx: &mpsc::Sender<Msg>,
    batch_bytes: usize,
    announce: bool,
    mut collect: Option<&mut pond_qcache::Collector>,
) -> Result<()> {
    let first = next_batch(stmt, schema)?;
    // The schema announced (FlightInfo) must be the one the batches carry;
    // where DuckDB's schema export and its chunk export disagree (ENUM as
    // dictionary vs string, UNION nullability), the batches win.
    let schema = &match &first {
        Some(b) => reconcile(schema, b),
        None => schema.clone(),
    };
    let first = match first {
        Some(b) => Some(RecordBatch::try_new(schema.clone(), b.columns().to_vec())?),
        None => None,
    };
    if announce {
        if let Some(c) = collect.as_deref_mut() {
            c.schema(schema.clone(), types.clone());
        }
        send(run, tx, Msg::Schema(schema.clone(), types))?;
    }
    let mut out = |b: RecordBatch| -> Result<()> {
        if let Some(c) = collect.as_deref_mut() {
            c.batch(&b);
        }
        send(run, tx, Msg::Batch(b))
    };
    let Some(first) = first else { return Ok(()) };
    // A result of one chunk (most small queries, every DML count) goes out as
    // it is: no coalescing buffers to allocate and copy into.
    let Some(second) = next_batch(stmt, schema)? else { return out(first) };
    let per_row = (first.get_array_memory_size() / first.num_rows().max(1)).max(1);
    let target_rows = (batch_bytes / per_row).clamp(2048, 1 << 20);
    let mut coalescer = BatchCoalescer::new(schema.clone(), target_rows);
    coalescer.push_batch(first)?;
    coalescer.push_batch(second)?;
    loop {
        while let Some(b) = coalescer.next_completed_batch() {
            out(b)?;
        }
        match next_batch(stmt, schema)? {
            Some(b) => coalescer.push_batch(b)?,
            None => break,
        }
    }
    coalescer.finish_buffered_batch()?;
    while let Some(b) = coalescer.next_completed_batch() {
        out(b)?;
    }
    Ok(())
}

fn reconcile(schema: &SchemaRef, batch: &RecordBatch) -> SchemaRef {
    let same = schema.fields().len() == batch.num_columns()
        && schema.fields().iter().zip(batch.columns()).all(|(f, c)| f.data_type() == c.data_type());
    if same {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| Field::new(f.name(), c.data_type().clone(), true).with_metadata(f.metadata().clone()))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The appender takes no dictionary-encoded columns: decode them.
fn decode_dictionaries(batch: RecordBatch) -> Result<RecordBatch> {
    if !batch.schema().fields().iter().any(|f| matches!(f.data_type(), DataType::Dictionary(_, _))) {
        return Ok(batch);
    }
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if let DataType::Dictionary(_, value) = f.data_type() {
            cols.push(arrow_cast::cast(c, value)?);
            fields.push(Field::new(f.name(), value.as_ref().clone(), f.is_nullable()));
        } else {
            cols.push(c.clone());
            fields.push(f.as_ref().clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

fn next_batch(stmt: &duckdb::Statement<'_>, schema: &SchemaRef) -> Result<Option<RecordBatch>> {
    let Some(array) = stmt.step()? else { return Ok(None) };
    let batch = RecordBatch::from(&array);
    if batch.num_rows() == 0 {
        return Ok(None);
    }
    // Keep the statement's schema (field metadata, nullability) on every batch.
    Ok(Some(RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).unwrap_or(batch)))
}

#[cfg(test)]
mod describe_tests {
    #[test]
    fn settings_replayed_only_with_literal_values() {
        use super::replayable_setting as r;
        assert!(r("SET TimeZone = 'America/New_York'"));
        assert!(r("SET search_path TO 'a,b';"));
        assert!(r("set threads = 2"));
        assert!(r("RESET TimeZone"));
        assert!(!r("SET TimeZone = secret.main.hidden_const('x')"));
        assert!(!r("SET TimeZone = 'a' || 'b'"));
        assert!(!r("SET x = nextval('s')"));
    }

    #[test]
    fn temporary_objects_are_noticed() {
        use super::mentions_temporary as t;
        assert!(t("CREATE TEMP TABLE x (a INT)"));
        assert!(t("create or replace temporary view v AS SELECT 1"));
        assert!(t("CREATE TABLE temp.main.x (a INT)"));
        assert!(!t("CREATE TABLE weather (temp DOUBLE)"));
        assert!(!t("CREATE TABLE t AS SELECT 1 AS temp"));
    }
}

#[cfg(test)]
mod sanitize_tests {
    #[test]
    fn suggestions_are_removed() {
        let m = "Catalog Error: Table with name secret_t does not exist!\nDid you mean \"secret.main.secret_t\"?\n\nLINE 1: ...";
        assert_eq!(super::strip_suggestions(m), "Catalog Error: Table with name secret_t does not exist!\n\nLINE 1: ...");
        assert_eq!(super::strip_suggestions("no hint"), "no hint");
    }
}
