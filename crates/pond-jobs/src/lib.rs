//! Pond's background jobs: one scheduler thread and the jobs it runs —
//! continuous queries (downsampling, `cq.rs`), import jobs (`import.rs`:
//! InfluxDB 1.x, PostgreSQL, HTTP JSON into a measurement or a table) and
//! export jobs (`export.rs`: a scheduled or on-demand `COPY … TO` Parquet/CSV,
//! local or S3). Runs of imports and exports share one registry with
//! progress, cancel and history (`runs.rs`).
//!
//! The engine calls this crate through [`Jobs::execute`] (the statements
//! `CREATE/DROP CONTINUOUS QUERY`, `SHOW CONTINUOUS QUERIES`, `IMPORT INTO …`,
//! `CREATE/DROP/RUN EXPORT JOB`, `SHOW EXPORT JOBS`, `SHOW JOBS`, `CANCEL JOB`)
//! and the HTTP API through [`Jobs::list`], [`Jobs::get`], [`Jobs::cancel`] and
//! [`Jobs::submit`]. It gives this crate a [`Host`]: connections with full
//! rights, the check of a statement against a user's current grants, the
//! note that rows of a database changed (the query cache), secrets resolved
//! for a source, and line-protocol writes through the ingest path as a user.
//! This crate knows nothing of sessions, protocols or grants beyond that.
//!
//! Continuous queries live in the database their INSERT writes to, in the
//! hidden table `_pond_cq.queries` (definition, owner, watermark), so a run's
//! INSERT and the advance of its watermark commit in ONE DuckDB transaction:
//! a crash before the commit leaves neither, after it both. Definitions
//! therefore survive restarts, backups and restores with their data. A run
//! processes `[watermark, end)`, `end` being the last EVERY boundary at or
//! before `now - grace`, and is checked against its owner's grants as they
//! are at that moment (a revoke stops it, with the error in SHOW).
//!
//! Start with [`Jobs::start`] and [`Jobs::execute`].

pub mod convert;
pub mod cq;
pub mod export;
pub mod import;
pub mod runs;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parking_lot::Mutex;

pub use cq::Statement;
pub use runs::{RunView, State};

/// Failpoints (`POND_FAILPOINT`, see `pond_lake::failpoint`): a continuous
/// query's INSERT done, its transaction not committed; and just after the commit.
pub const FAILPOINT_CQ_INSERTED: &str = "cq-inserted";
pub const FAILPOINT_CQ_COMMITTED: &str = "cq-committed";

/// The shortest EVERY interval.
const MIN_EVERY_US: i64 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("{0}")]
    Invalid(String),
    #[error("continuous query {0} does not exist (SHOW CONTINUOUS QUERIES lists them)")]
    NotFound(String),
    #[error("continuous query {0} already exists")]
    Exists(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Host(String),
    /// A source of an import failed or answered badly (already redacted).
    #[error("{0}")]
    Source(String),
    /// A job or run that does not exist (the message says which).
    #[error("{0}")]
    Missing(String),
    #[error("DuckDB: {0}")]
    DuckDb(String),
}

impl From<duckdb::Error> for Error {
    fn from(e: duckdb::Error) -> Self {
        Error::DuckDb(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What jobs need from the engine.
pub trait Host: Send + Sync {
    /// A connection with full rights (internal work; never handed to a client).
    fn connection(&self) -> Result<duckdb::Connection, String>;
    /// Checks that `user`, with the grants in force now, may run `sql` with
    /// `database.schema` current. `Err`: the reason, as the user would see it.
    fn authorize(&self, user: &str, database: &str, schema: &str, sql: &str) -> Result<(), Error>;
    /// The Pond database `sql` (an INSERT) writes to, `database` being current;
    /// refused for databases nobody may write (linked ones).
    fn target_database(&self, sql: &str, database: &str) -> Result<String, Error>;
    /// Rows of `database` changed and are visible.
    fn data_changed(&self, database: &str);
    /// Names of the Pond databases.
    fn databases(&self) -> Vec<String>;
    /// False once the engine is shutting down.
    fn alive(&self) -> bool;
    /// Whether `user` exists and is a superuser now.
    fn is_superuser(&self, user: &str) -> Result<bool, Error>;
    /// The PostgreSQL connection a secret of TYPE postgres holds.
    fn postgres_source(&self, secret: &str) -> Result<PostgresSource, Error>;
    /// The credentials a secret of TYPE http holds.
    fn http_credentials(&self, secret: &str) -> Result<HttpCredentials, Error>;
    /// Writes line protocol (nanosecond times) into `database` as `user`,
    /// through the time-series ingest path and its grant checks. `Ok`: the
    /// refused lines (1-based line number, reason); empty when all were written.
    fn write_lines(&self, user: &str, database: &str, lines: Vec<u8>) -> Result<Vec<(usize, String)>, WriteError>;
    /// The catalog holding Pond's own tables (job definitions and history).
    fn system_catalog(&self) -> String;
}

/// Replaces a secret's values in a text by `<redacted>`.
pub type Redact = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A PostgreSQL source resolved from a secret. Never shown: `shown` is.
#[derive(Clone)]
pub struct PostgresSource {
    /// libpq keyword/value string for DuckDB's postgres_scanner.
    pub libpq: String,
    /// `host:port/dbname`, for messages.
    pub shown: String,
    /// The postgres_scanner extension file.
    pub scanner: std::path::PathBuf,
    /// Takes the secret's values (password, connection string) out of a message.
    pub redact: Redact,
}

/// Credentials for an HTTP source (basic or bearer).
#[derive(Clone, Default)]
pub struct HttpCredentials {
    pub user: Option<String>,
    pub password: Option<String>,
    pub bearer: Option<String>,
}

/// How a line-protocol write through the host went wrong.
#[derive(Debug)]
pub enum WriteError {
    /// The ingest queue is full: retry shortly.
    Busy,
    Failed(Error),
}

/// Whether `text` is a job statement (to route it here); the words only.
pub fn is_job_statement(text: &str) -> bool {
    let words: Vec<String> = text.split_whitespace().take(3).map(|w| w.trim_end_matches(';').to_ascii_lowercase()).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    cq::is_job_statement(text)
        || import::is_statement(&words)
        || export::is_statement(&words)
        || matches!(words.as_slice(), ["show", "jobs"] | ["cancel", "job", _])
}

/// A parsed job statement of any kind.
enum Parsed {
    Cq(cq::Statement),
    Import(import::Request),
    Export(export::Statement),
    ShowJobs,
    Cancel(u64),
}

fn parse_statement(text: &str) -> Result<Parsed> {
    if let Some(st) = cq::parse(text) {
        return st.map(Parsed::Cq);
    }
    let words: Vec<String> = text.split_whitespace().take(3).map(|w| w.trim_end_matches(';').to_ascii_lowercase()).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    if import::is_statement(&words) {
        return import::parse(text).map(Parsed::Import);
    }
    if export::is_statement(&words) {
        return export::parse(text).map(Parsed::Export);
    }
    let mut c = cq::Cursor { s: text, i: 0 };
    if c.word("show") && c.word("jobs") && c.rest().is_empty() {
        return Ok(Parsed::ShowJobs);
    }
    let mut c = cq::Cursor { s: text, i: 0 };
    if c.word("cancel") && c.word("job") {
        let id = c.string().or_else(|| c.peek_word().map(str::to_string)).unwrap_or_default();
        c.i += if c.s[c.i..].trim_start().starts_with(&id) { c.s[c.i..].len() - c.s[c.i..].trim_start().len() + id.len() } else { 0 };
        let id: u64 = id.parse().map_err(|_| Error::Syntax("CANCEL JOB id (SHOW JOBS lists the ids)".into()))?;
        if !c.rest().is_empty() {
            return Err(Error::Syntax("nothing may follow CANCEL JOB id".into()));
        }
        return Ok(Parsed::Cancel(id));
    }
    Err(Error::Syntax("not a job statement".into()))
}

/// An export job as stored.
#[derive(Debug, Clone)]
struct ExportDef {
    name: String,
    owner: String,
    every: Option<String>,
    every_us: Option<i64>,
    copy: String,
    home: (String, String),
    created_at: String,
    /// The last schedule boundary handled.
    last_due_us: Option<i64>,
}

/// An export job as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportView {
    pub name: String,
    pub owner: String,
    pub every: Option<String>,
    pub next_run: Option<String>,
    pub statement: String,
    pub created_at: String,
    pub last_run_id: Option<u64>,
    pub last_state: Option<State>,
    pub last_error: Option<String>,
}

/// Who runs a job statement.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub superuser: bool,
    /// The session's current database and schema.
    pub database: String,
    pub schema: String,
}

/// A continuous query as stored.
#[derive(Debug, Clone)]
struct Definition {
    name: String,
    /// Where it lives: the database its INSERT writes to.
    database: String,
    /// Current database and schema at CREATE: the query's names resolve there.
    home: (String, String),
    every: String,
    every_us: i64,
    grace: String,
    grace_us: i64,
    insert: String,
    owner: String,
    created_at: String,
}

#[derive(Debug, Clone, Default)]
struct Status {
    until_us: Option<i64>,
    runs: i64,
    last_run: Option<String>,
    last_error: Option<String>,
    rows: i64,
    next_due: Option<Instant>,
}

struct Entry {
    def: Definition,
    status: Status,
}

/// The scheduler and its registry. See the crate documentation.
pub struct Jobs {
    host: Arc<dyn Host>,
    /// By lower-case name.
    registry: Mutex<BTreeMap<String, Entry>>,
    /// Held by a run and by DROP, so a dropped query never commits a run.
    run_lock: Mutex<()>,
    seen_databases: Mutex<Vec<String>>,
    stop: AtomicBool,
    /// Runs of imports and exports.
    runs: Arc<runs::Runs>,
    /// Export jobs by lower-case name.
    exports: Mutex<BTreeMap<String, ExportDef>>,
    /// `"catalog"._pond_jobs.exports`, once created.
    exports_table: Mutex<Option<String>>,
}

pub(crate) fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

pub(crate) fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn us_text(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()).unwrap_or_else(|| us.to_string())
}

fn qualified(db: &str) -> String {
    format!("\"{}\".{}.queries", db.replace('"', "\"\""), pond_lake::CQ_SCHEMA)
}

impl Jobs {
    /// Loads every continuous query and starts the scheduler thread.
    pub fn start(host: Arc<dyn Host>) -> Result<Arc<Jobs>> {
        let jobs = Arc::new(Jobs {
            host,
            registry: Mutex::new(BTreeMap::new()),
            run_lock: Mutex::new(()),
            seen_databases: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            runs: Arc::new(runs::Runs::new()),
            exports: Mutex::new(BTreeMap::new()),
            exports_table: Mutex::new(None),
        });
        jobs.reload()?;
        // Import and export jobs keep their tables in the system catalog; without
        // it they still run, with history in memory only.
        if let Err(e) = jobs.load_import_export() {
            tracing::warn!(error = %e, "import/export job tables are not available; history stays in memory");
        }
        let me = jobs.clone();
        std::thread::Builder::new()
            .name("pond-jobs".into())
            .spawn(move || me.scheduler())
            .map_err(|e| Error::Host(format!("cannot start the job scheduler: {e}")))?;
        Ok(jobs)
    }

    /// Stops the scheduler; returns once the run in progress, if any, is over
    /// (so a shutdown's checkpoint finds no job transaction open).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        drop(self.run_lock.lock());
        // Imports and exports in progress stop at their next batch (what they wrote stays).
        self.runs.cancel_all();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.runs.any_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn conn(&self) -> Result<duckdb::Connection> {
        self.host.connection().map_err(Error::Host)
    }

    /// Reads the definitions of every database (statuses of known queries are kept).
    fn reload(&self) -> Result<()> {
        let mut dbs = self.host.databases();
        dbs.sort();
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT DISTINCT database_name FROM duckdb_tables() WHERE schema_name = $1 AND table_name = 'queries'")?;
        let holders: Vec<String> = stmt.query_map([pond_lake::CQ_SCHEMA], |r| r.get(0))?.collect::<std::result::Result<_, _>>()?;
        let mut found = BTreeMap::new();
        for db in holders.into_iter().filter(|d| dbs.contains(d)) {
            let mut stmt = conn.prepare(&format!(
                "SELECT name, home_db, home_schema, every, every_us, grace, grace_us, query, owner, created_at, until_us, runs, last_run FROM {}",
                qualified(&db)
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    Definition {
                        name: r.get(0)?,
                        database: db.clone(),
                        home: (r.get(1)?, r.get(2)?),
                        every: r.get(3)?,
                        every_us: r.get(4)?,
                        grace: r.get(5)?,
                        grace_us: r.get(6)?,
                        insert: r.get(7)?,
                        owner: r.get(8)?,
                        created_at: r.get(9)?,
                    },
                    r.get::<_, Option<i64>>(10)?,
                    r.get::<_, i64>(11)?,
                    r.get::<_, Option<String>>(12)?,
                ))
            })?;
            for row in rows {
                let (def, until_us, runs, last_run) = row?;
                found.insert(def.name.to_ascii_lowercase(), (def, until_us, runs, last_run));
            }
        }
        let mut reg = self.registry.lock();
        let mut old = std::mem::take(&mut *reg);
        for (key, (def, until_us, runs, last_run)) in found {
            let mut status = old.remove(&key).map(|e| e.status).unwrap_or_default();
            status.until_us = until_us;
            status.runs = runs;
            status.last_run = last_run;
            reg.insert(key, Entry { def, status });
        }
        *self.seen_databases.lock() = dbs;
        Ok(())
    }

    /// Runs a job statement for `caller`.
    pub fn execute(&self, statement: &str, caller: &Caller) -> Result<RecordBatch> {
        let st = match parse_statement(statement)? {
            Parsed::Cq(st) => st,
            Parsed::Import(req) => {
                let id = self.submit_import(req, caller)?;
                return Ok(started(id));
            }
            Parsed::Export(st) => return self.export_statement(st, caller),
            Parsed::ShowJobs => return Ok(runs::batch(&self.list(caller))),
            Parsed::Cancel(id) => {
                return Ok(message(&if self.cancel(caller, id)? {
                    format!("job {id} is being cancelled")
                } else {
                    format!("job {id} had already ended")
                }))
            }
        };
        match st {
            Statement::Show => Ok(self.show(caller)),
            Statement::Drop { name, if_exists } => {
                self.drop_query(&name, if_exists, caller)?;
                Ok(message(&format!("continuous query {name} dropped")))
            }
            Statement::Create(c) => {
                let created = self.create(c.clone(), caller)?;
                Ok(message(&if created {
                    format!("continuous query {} created", c.name)
                } else {
                    format!("continuous query {} exists", c.name)
                }))
            }
        }
    }

    fn create(&self, c: cq::CreateStatement, caller: &Caller) -> Result<bool> {
        let key = c.name.to_ascii_lowercase();
        if self.registry.lock().contains_key(&key) {
            return if c.if_not_exists { Ok(false) } else { Err(Error::Exists(c.name)) };
        }
        // The creator must be allowed to run the INSERT itself (runs are checked again, each time).
        self.host.authorize(&caller.user, &caller.database, &caller.schema, &c.insert)?;
        let database = self.host.target_database(&c.insert, &caller.database)?;
        let conn = self.conn()?;
        let every_us = cq::interval_us(&conn, &c.every, "EVERY", false)?;
        if every_us < MIN_EVERY_US {
            return Err(Error::Invalid(format!("EVERY '{}' is shorter than one second", c.every)));
        }
        let grace = c.grace.clone().unwrap_or_else(|| c.every.clone());
        let grace_us = match &c.grace {
            Some(g) => cq::interval_us(&conn, g, "GRACE", true)?,
            None => every_us,
        };
        let (_, query) = cq::split_insert(&c.insert)?;
        let (width_us, _source) = cq::inspect(&conn, query)?;
        if every_us % width_us != 0 {
            return Err(Error::Invalid(format!(
                "EVERY '{}' must be a multiple of the time_bucket width: a bucket must never be split between two runs",
                c.every
            )));
        }
        use_home(&conn, &caller.database, &caller.schema)?;
        // A dry run over an empty window: the INSERT must bind (columns, types) now, not at the first run.
        let (head, _) = cq::split_insert(&c.insert)?;
        let probe = format!("{head} {}", cq::windowed(&conn, query, Some(0), 0)?);
        conn.execute_batch("BEGIN TRANSACTION")?;
        let dry = conn.execute(&probe, []);
        let _ = conn.execute_batch("ROLLBACK");
        dry.map_err(|e| Error::Invalid(format!("the query of continuous query {} does not run: {e}", c.name)))?;
        let def = Definition {
            name: c.name.clone(),
            database: database.clone(),
            home: (caller.database.clone(), caller.schema.clone()),
            every: c.every.clone(),
            every_us,
            grace,
            grace_us,
            insert: c.insert.clone(),
            owner: caller.user.clone(),
            created_at: now_text(),
        };
        let table = qualified(&database);
        conn.execute_batch(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{db}\".{schema}; CREATE TABLE IF NOT EXISTS {table} (\
             name VARCHAR PRIMARY KEY, home_db VARCHAR NOT NULL, home_schema VARCHAR NOT NULL, every VARCHAR NOT NULL, \
             every_us BIGINT NOT NULL, grace VARCHAR NOT NULL, grace_us BIGINT NOT NULL, query VARCHAR NOT NULL, \
             owner VARCHAR NOT NULL, created_at VARCHAR NOT NULL, until_us BIGINT, runs BIGINT NOT NULL DEFAULT 0, last_run VARCHAR)",
            db = database.replace('"', "\"\""),
            schema = pond_lake::CQ_SCHEMA
        ))?;
        let mut reg = self.registry.lock();
        if reg.contains_key(&key) {
            return if c.if_not_exists { Ok(false) } else { Err(Error::Exists(c.name)) };
        }
        conn.execute(
            &format!(
                "INSERT INTO {table} (name, home_db, home_schema, every, every_us, grace, grace_us, query, owner, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            duckdb::params![
                def.name,
                def.home.0,
                def.home.1,
                def.every,
                def.every_us,
                def.grace,
                def.grace_us,
                def.insert,
                def.owner,
                def.created_at
            ],
        )?;
        tracing::info!(name = %def.name, database = %database, every = %def.every, "continuous query created");
        reg.insert(key, Entry { def, status: Status { next_due: Some(Instant::now()), ..Default::default() } });
        Ok(true)
    }

    fn drop_query(&self, name: &str, if_exists: bool, caller: &Caller) -> Result<()> {
        let _run = self.run_lock.lock();
        let key = name.to_ascii_lowercase();
        let def = match self.registry.lock().get(&key) {
            Some(e) => e.def.clone(),
            None if if_exists => return Ok(()),
            None => return Err(Error::NotFound(name.to_string())),
        };
        if !caller.superuser && caller.user != def.owner {
            return Err(Error::PermissionDenied(format!(
                "permission denied: continuous query {} belongs to {} (its owner or a superuser may drop it)",
                def.name, def.owner
            )));
        }
        let conn = self.conn()?;
        conn.execute(&format!("DELETE FROM {} WHERE name = ?", qualified(&def.database)), [&def.name])?;
        self.registry.lock().remove(&key);
        tracing::info!(name = %def.name, "continuous query dropped");
        Ok(())
    }

    fn show(&self, caller: &Caller) -> RecordBatch {
        let reg = self.registry.lock();
        let rows: Vec<&Entry> = reg.values().filter(|e| caller.superuser || e.def.owner == caller.user).collect();
        let s = |f: &dyn Fn(&Entry) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(rows.iter().map(|e| f(e)).collect::<Vec<_>>()))
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("database", DataType::Utf8, true),
            Field::new("every", DataType::Utf8, true),
            Field::new("grace", DataType::Utf8, true),
            Field::new("owner", DataType::Utf8, true),
            Field::new("last_run", DataType::Utf8, true),
            Field::new("processed_until", DataType::Utf8, true),
            Field::new("runs", DataType::Int64, false),
            Field::new("last_rows", DataType::Int64, false),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("query", DataType::Utf8, true),
        ]));
        let columns = vec![
            s(&|e| Some(e.def.name.clone())),
            s(&|e| Some(e.def.database.clone())),
            s(&|e| Some(e.def.every.clone())),
            s(&|e| Some(e.def.grace.clone())),
            s(&|e| Some(e.def.owner.clone())),
            s(&|e| e.status.last_run.clone()),
            s(&|e| e.status.until_us.map(us_text)),
            Arc::new(Int64Array::from(rows.iter().map(|e| e.status.runs).collect::<Vec<_>>())) as ArrayRef,
            Arc::new(Int64Array::from(rows.iter().map(|e| e.status.rows).collect::<Vec<_>>())),
            s(&|e| e.status.last_error.clone()),
            s(&|e| Some(e.def.insert.clone())),
        ];
        RecordBatch::try_new(schema.clone(), columns).unwrap_or_else(|_| RecordBatch::new_empty(schema))
    }

    fn scheduler(self: Arc<Self>) {
        let mut conn: Option<duckdb::Connection> = None;
        while !self.stop.load(Ordering::SeqCst) && self.host.alive() {
            std::thread::sleep(Duration::from_millis(200));
            let mut dbs = self.host.databases();
            dbs.sort();
            if *self.seen_databases.lock() != dbs {
                if let Err(e) = self.reload() {
                    tracing::warn!(error = %e, "cannot reload continuous queries");
                }
            }
            self.exports_due();
            let due: Vec<String> = {
                let now = Instant::now();
                self.registry.lock().iter().filter(|(_, e)| e.status.next_due.is_none_or(|d| d <= now)).map(|(k, _)| k.clone()).collect()
            };
            for key in due {
                if self.stop.load(Ordering::SeqCst) {
                    break;
                }
                if conn.is_none() {
                    match self.conn() {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "continuous queries: no connection");
                            break;
                        }
                    }
                }
                let Some(c) = conn.as_ref() else { break };
                self.run_due(c, &key);
            }
        }
    }

    /// One run of a due query; the outcome goes into its status.
    fn run_due(&self, conn: &duckdb::Connection, key: &str) {
        let _run = self.run_lock.lock();
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        let Some((def, until)) = self.registry.lock().get(key).map(|e| (e.def.clone(), e.status.until_us)) else { return };
        let started = Instant::now();
        let r = self.run(conn, &def, until);
        let mut reg = self.registry.lock();
        let Some(e) = reg.get_mut(key) else { return };
        e.status.next_due = Some(started + Duration::from_micros(def.every_us.max(MIN_EVERY_US) as u64));
        match r {
            Ok(Some((end, rows))) => {
                e.status.until_us = Some(end);
                e.status.runs += 1;
                e.status.rows = rows;
                e.status.last_run = Some(now_text());
                e.status.last_error = None;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(name = %def.name, error = %err, "continuous query run failed");
                e.status.last_error = Some(err.to_string());
                e.status.last_run = Some(now_text());
            }
        }
    }

    /// Processes `[until, end)`: the INSERT and the watermark commit together.
    /// `Ok(None)`: nothing new is complete yet.
    fn run(&self, conn: &duckdb::Connection, def: &Definition, until: Option<i64>) -> Result<Option<(i64, i64)>> {
        let end = cq::window_end(now_us(), def.every_us, def.grace_us);
        if until.is_some_and(|u| end <= u) {
            return Ok(None);
        }
        self.host.authorize(&def.owner, &def.home.0, &def.home.1, &def.insert)?;
        use_home(conn, &def.home.0, &def.home.1)?;
        let (head, query) = cq::split_insert(&def.insert)?;
        let sql = format!("{head} {}", cq::windowed(conn, query, until, end)?);
        conn.execute_batch("BEGIN TRANSACTION")?;
        let r = (|| -> Result<i64> {
            let rows = conn.execute(&sql, [])? as i64;
            pond_lake::failpoint::hit(FAILPOINT_CQ_INSERTED);
            let updated = conn.execute(
                &format!("UPDATE {} SET until_us = ?, runs = runs + 1, last_run = ? WHERE name = ?", qualified(&def.database)),
                duckdb::params![end, now_text(), def.name],
            )?;
            if updated != 1 {
                return Err(Error::Invalid(format!("continuous query {} is no longer stored", def.name)));
            }
            conn.execute_batch("COMMIT")?;
            Ok(rows)
        })();
        let rows = match r {
            Ok(rows) => rows,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        pond_lake::failpoint::hit(FAILPOINT_CQ_COMMITTED);
        self.host.data_changed(&def.database);
        tracing::debug!(name = %def.name, rows, until = %us_text(end), "continuous query ran");
        Ok(Some((end, rows)))
    }
}

fn use_home(conn: &duckdb::Connection, db: &str, schema: &str) -> Result<()> {
    conn.execute_batch(&format!("USE \"{}\".\"{}\"", db.replace('"', "\"\""), schema.replace('"', "\"\"")))
        .map_err(|e| Error::Invalid(format!("database {db}.{schema}, where the continuous query was created, is not usable: {e}")))
}

/// The answer to IMPORT: the new run's id.
fn started(id: u64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("job_id", DataType::Int64, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
    ]));
    let text = format!("import job {id} started (SHOW JOBS shows its progress; CANCEL JOB {id} stops it)");
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![id as i64])) as ArrayRef,
            Arc::new(StringArray::from(vec!["running"])),
            Arc::new(StringArray::from(vec![text])),
        ],
    )
    .unwrap_or_else(|_| RecordBatch::new_empty(schema))
}

fn message(text: &str) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("message", DataType::Utf8, false)]));
    RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec![text.to_string()])) as ArrayRef])
        .unwrap_or_else(|_| RecordBatch::new_empty(schema))
}

fn exports_batch(views: &[ExportView]) -> RecordBatch {
    let s =
        |f: &dyn Fn(&ExportView) -> Option<String>| -> ArrayRef { Arc::new(StringArray::from(views.iter().map(f).collect::<Vec<_>>())) };
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("owner", DataType::Utf8, true),
        Field::new("every", DataType::Utf8, true),
        Field::new("next_run", DataType::Utf8, true),
        Field::new("last_run_id", DataType::Int64, true),
        Field::new("last_state", DataType::Utf8, true),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("created_at", DataType::Utf8, true),
        Field::new("statement", DataType::Utf8, true),
    ]));
    let columns = vec![
        s(&|v| Some(v.name.clone())),
        s(&|v| Some(v.owner.clone())),
        s(&|v| v.every.clone()),
        s(&|v| v.next_run.clone()),
        Arc::new(Int64Array::from(views.iter().map(|v| v.last_run_id.map(|i| i as i64)).collect::<Vec<_>>())) as ArrayRef,
        s(&|v| v.last_state.map(|st| st.as_str().to_string())),
        s(&|v| v.last_error.clone()),
        s(&|v| Some(v.created_at.clone())),
        s(&|v| Some(v.statement.clone())),
    ];
    RecordBatch::try_new(schema.clone(), columns).unwrap_or_else(|_| RecordBatch::new_empty(schema))
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl Jobs {
    /// Creates (if needed) and reads the export definitions and the run history.
    fn load_import_export(&self) -> Result<()> {
        let catalog = self.host.system_catalog();
        let conn = self.conn()?;
        self.runs.load(&conn, &catalog)?;
        let table = format!("{}.{}.exports", quote(&catalog), runs::JOBS_SCHEMA);
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (name VARCHAR PRIMARY KEY, owner VARCHAR NOT NULL, every VARCHAR, every_us BIGINT, \
             statement VARCHAR NOT NULL, home_db VARCHAR NOT NULL, home_schema VARCHAR NOT NULL, created_at VARCHAR NOT NULL, last_due_us BIGINT)"
        ))?;
        let mut stmt = conn.prepare(&format!(
            "SELECT name, owner, every, every_us, statement, home_db, home_schema, created_at, last_due_us FROM {table}"
        ))?;
        let defs = stmt.query_map([], |r| {
            Ok(ExportDef {
                name: r.get(0)?,
                owner: r.get(1)?,
                every: r.get(2)?,
                every_us: r.get(3)?,
                copy: r.get(4)?,
                home: (r.get(5)?, r.get(6)?),
                created_at: r.get(7)?,
                last_due_us: r.get(8)?,
            })
        })?;
        let mut map = self.exports.lock();
        for d in defs {
            let d = d?;
            map.insert(d.name.to_ascii_lowercase(), d);
        }
        *self.exports_table.lock() = Some(table);
        Ok(())
    }

    /// Starts an import for `caller`; returns the run's id at once.
    fn submit_import(&self, req: import::Request, caller: &Caller) -> Result<u64> {
        let plan = import::Plan::new(req, caller, self.host.as_ref())?;
        let conn = self.conn().ok();
        let (id, progress) =
            self.runs.start(conn.as_ref(), runs::Kind::Import, None, &caller.user, plan.describe_source(), plan.target.describe());
        let host = self.host.clone();
        let registry = self.runs.clone();
        let spawned = std::thread::Builder::new().name(format!("pond-import-{id}")).spawn(move || {
            tracing::info!(id, source = %plan.describe_source(), target = %plan.target.describe(), "import started");
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| import::run(&plan, host.as_ref(), id, &progress)))
                .unwrap_or_else(|_| Err(Error::Host("the import stopped unexpectedly".into())));
            let outcome = r.map_err(|e| e.to_string());
            match &outcome {
                Ok(()) => tracing::info!(id, "import finished"),
                Err(e) => tracing::warn!(id, error = %e, "import failed"),
            }
            registry.finish(host.connection().ok().as_ref(), id, outcome);
        });
        if let Err(e) = spawned {
            self.runs.finish(conn.as_ref(), id, Err(format!("cannot start the import thread: {e}")));
            return Err(Error::Host(format!("cannot start the import thread: {e}")));
        }
        Ok(id)
    }

    /// Runs visible to `caller`, newest first.
    pub fn list(&self, caller: &Caller) -> Vec<RunView> {
        self.runs.list(&caller.user, caller.superuser)
    }

    /// One run.
    pub fn get(&self, caller: &Caller, id: u64) -> Result<RunView> {
        self.runs
            .get(id, &caller.user, caller.superuser)
            .ok_or_else(|| Error::Missing(format!("job {id} does not exist (SHOW JOBS lists them)")))
    }

    /// Asks a run to stop; `false` if it had already ended.
    pub fn cancel(&self, caller: &Caller, id: u64) -> Result<bool> {
        self.runs.cancel(id, &caller.user, caller.superuser).map_err(|m| {
            if m.starts_with("permission denied") {
                Error::PermissionDenied(m)
            } else {
                Error::Missing(m)
            }
        })
    }

    /// Export jobs visible to `caller`.
    pub fn exports(&self, caller: &Caller) -> Vec<ExportView> {
        let defs: Vec<ExportDef> = self.exports.lock().values().filter(|d| caller.superuser || d.owner == caller.user).cloned().collect();
        defs.into_iter()
            .map(|d| {
                let last = self.runs.last_export(&d.name);
                let next_run = match (d.every_us, d.last_due_us) {
                    (Some(e), Some(l)) => Some(us_text(l + e)),
                    (Some(e), None) => Some(us_text(export::due(now_us(), e) + e)),
                    _ => None,
                };
                ExportView {
                    name: d.name,
                    owner: d.owner,
                    every: d.every,
                    next_run,
                    statement: d.copy,
                    created_at: d.created_at,
                    last_run_id: last.as_ref().map(|r| r.id),
                    last_state: last.as_ref().map(|r| r.state),
                    last_error: last.and_then(|r| r.error),
                }
            })
            .collect()
    }

    /// `POST /api/v1/jobs`: `{"statement": "IMPORT INTO …"}` (any job
    /// statement) or `{"type": "import", "into": "measurement", "target": …,
    /// "from": "influxdb", "url": …, "options": {…}}`.
    pub fn submit(&self, caller: &Caller, body: serde_json::Value) -> Result<serde_json::Value> {
        let serde_json::Value::Object(mut map) = body else {
            return Err(Error::Invalid(
                "the body is a JSON object: {\"statement\": \"IMPORT INTO …\"} or {\"type\": \"import\", …}".into(),
            ));
        };
        if let Some(st) = map.remove("statement") {
            let text = st.as_str().ok_or_else(|| Error::Invalid("\"statement\" is a string".into()))?.to_string();
            if !is_job_statement(&text) {
                return Err(Error::Invalid(
                    "\"statement\" must be a job statement (IMPORT INTO …, CREATE/RUN/DROP EXPORT JOB …, CANCEL JOB …)".into(),
                ));
            }
            if let Parsed::Import(req) = parse_statement(&text)? {
                let id = self.submit_import(req, caller)?;
                return Ok(serde_json::json!({"id": id, "state": "running"}));
            }
            if let Parsed::Export(export::Statement::Run { name }) = parse_statement(&text)? {
                let id = self.run_export_now(&name, caller)?;
                return Ok(serde_json::json!({"id": id, "state": "running"}));
            }
            let b = self.execute(&text, caller)?;
            let msg = b
                .column_by_name("message")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .filter(|c| c.len() > 0)
                .map(|c| c.value(0).to_string());
            return Ok(serde_json::json!({"message": msg}));
        }
        match map.remove("type").and_then(|t| t.as_str().map(str::to_string)).as_deref() {
            Some("import") => {}
            other => {
                return Err(Error::Invalid(format!("\"type\" must be \"import\" (exports are created with a statement), not {other:?}")))
            }
        }
        let req: import::Request =
            serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| Error::Invalid(format!("import request: {e}")))?;
        let id = self.submit_import(req, caller)?;
        Ok(serde_json::json!({"id": id, "state": "running"}))
    }

    fn export_statement(&self, st: export::Statement, caller: &Caller) -> Result<RecordBatch> {
        match st {
            export::Statement::Show => Ok(exports_batch(&self.exports(caller))),
            export::Statement::Run { name } => {
                let id = self.run_export_now(&name, caller)?;
                let b = started(id);
                Ok(b)
            }
            export::Statement::Drop { name, if_exists } => {
                let key = name.to_ascii_lowercase();
                let Some(def) = self.exports.lock().get(&key).cloned() else {
                    if if_exists {
                        return Ok(message(&format!("export job {name} does not exist")));
                    }
                    return Err(Error::Missing(format!("export job {name} does not exist (SHOW EXPORT JOBS lists them)")));
                };
                if !caller.superuser && caller.user != def.owner {
                    return Err(Error::PermissionDenied(format!("permission denied: export job {} belongs to {}", def.name, def.owner)));
                }
                if let Some(t) = self.exports_table.lock().clone() {
                    self.conn()?.execute(&format!("DELETE FROM {t} WHERE name = ?"), [&def.name])?;
                }
                self.exports.lock().remove(&key);
                tracing::info!(name = %def.name, "export job dropped");
                Ok(message(&format!("export job {} dropped", def.name)))
            }
            export::Statement::Create { name, if_not_exists, every, copy } => {
                if !caller.superuser {
                    return Err(Error::PermissionDenied(
                        "permission denied: export jobs write files, so only superusers create them".into(),
                    ));
                }
                let key = name.to_ascii_lowercase();
                if self.exports.lock().contains_key(&key) {
                    return if if_not_exists {
                        Ok(message(&format!("export job {name} exists")))
                    } else {
                        Err(Error::Invalid(format!("export job {name} already exists")))
                    };
                }
                let conn = self.conn()?;
                let every_us = match &every {
                    Some(e) => {
                        let us = cq::interval_us(&conn, e, "EVERY", false)?;
                        if us < MIN_EVERY_US {
                            return Err(Error::Invalid(format!("EVERY '{e}' is shorter than one second")));
                        }
                        Some(us)
                    }
                    None => None,
                };
                // The statement must bind now (names, columns), not at its first run.
                use_home(&conn, &caller.database, &caller.schema)?;
                conn.prepare(&export::expand(&copy, &name, now_us(), 0))
                    .map_err(|e| Error::Invalid(format!("the COPY of export job {name} does not run: {e}")))?;
                let def = ExportDef {
                    name: name.clone(),
                    owner: caller.user.clone(),
                    every: every.clone(),
                    every_us,
                    copy,
                    home: (caller.database.clone(), caller.schema.clone()),
                    created_at: now_text(),
                    last_due_us: every_us.map(|e| export::due(now_us(), e)),
                };
                let table = self.exports_table.lock().clone().ok_or_else(|| {
                    Error::Host(
                        "export jobs are not available: their table in the system catalog could not be created (see the server log)".into(),
                    )
                })?;
                conn.execute(
                    &format!("INSERT INTO {table} (name, owner, every, every_us, statement, home_db, home_schema, created_at, last_due_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                    duckdb::params![def.name, def.owner, def.every, def.every_us, def.copy, def.home.0, def.home.1, def.created_at, def.last_due_us],
                )?;
                tracing::info!(name = %def.name, every = ?def.every, "export job created");
                self.exports.lock().insert(key, def);
                Ok(message(&format!("export job {name} created")))
            }
        }
    }

    fn run_export_now(&self, name: &str, caller: &Caller) -> Result<u64> {
        let def = self
            .exports
            .lock()
            .get(&name.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| Error::Missing(format!("export job {name} does not exist (SHOW EXPORT JOBS lists them)")))?;
        if !caller.superuser && caller.user != def.owner {
            return Err(Error::PermissionDenied(format!("permission denied: export job {} belongs to {}", def.name, def.owner)));
        }
        if self.runs.running_export(&def.name) {
            return Err(Error::Invalid(format!("export job {} is running already", def.name)));
        }
        self.start_export(def, now_us())
    }

    /// Starts every scheduled export whose boundary has come.
    fn exports_due(&self) {
        let now = now_us();
        let due: Vec<(ExportDef, i64)> = {
            let mut map = self.exports.lock();
            map.values_mut()
                .filter_map(|d| {
                    let e = d.every_us?;
                    let boundary = export::due(now, e);
                    if d.last_due_us.is_some_and(|l| boundary <= l) {
                        return None;
                    }
                    d.last_due_us = Some(boundary);
                    Some((d.clone(), boundary))
                })
                .collect()
        };
        for (def, boundary) in due {
            if let (Some(t), Ok(conn)) = (self.exports_table.lock().clone(), self.conn()) {
                if let Err(e) = conn.execute(&format!("UPDATE {t} SET last_due_us = ? WHERE name = ?"), duckdb::params![boundary, def.name])
                {
                    tracing::warn!(name = %def.name, error = %e, "cannot record the export job's schedule");
                }
            }
            if self.runs.running_export(&def.name) {
                tracing::warn!(name = %def.name, "export job still running at its next boundary; this run is skipped");
                continue;
            }
            if let Err(e) = self.start_export(def.clone(), boundary) {
                tracing::warn!(name = %def.name, error = %e, "cannot start the export job");
            }
        }
    }

    fn start_export(&self, def: ExportDef, run_time_us: i64) -> Result<u64> {
        let conn = self.conn()?;
        let target = export::copy_target(&def.copy).unwrap_or_default();
        let (id, progress) = self.runs.start(Some(&conn), runs::Kind::Export, Some(def.name.clone()), &def.owner, def.copy.clone(), target);
        let host = self.host.clone();
        let registry = self.runs.clone();
        let spawned = std::thread::Builder::new().name(format!("pond-export-{id}")).spawn(move || {
            let r = (|| -> Result<()> {
                if !host.is_superuser(&def.owner)? {
                    return Err(Error::PermissionDenied(format!(
                        "export job {} belongs to {}, who is no longer a superuser",
                        def.name, def.owner
                    )));
                }
                use_home(&conn, &def.home.0, &def.home.1)?;
                let sql = export::expand(&def.copy, &def.name, run_time_us, id);
                progress.set_interrupt(Some(conn.interrupt_handle()));
                let r = conn.execute(&sql, []);
                progress.set_interrupt(None);
                let rows = r? as u64;
                let bytes = export::copy_target(&sql).map(|t| export::local_bytes(&t)).unwrap_or(0);
                progress.add_batch(rows, bytes);
                Ok(())
            })();
            let outcome = r.map_err(|e| e.to_string());
            match &outcome {
                Ok(()) => tracing::info!(id, name = %def.name, "export job ran"),
                Err(e) => tracing::warn!(id, name = %def.name, error = %e, "export job failed"),
            }
            registry.finish(Some(&conn), id, outcome);
        });
        spawned.map_err(|e| Error::Host(format!("cannot start the export thread: {e}")))?;
        Ok(id)
    }
}
