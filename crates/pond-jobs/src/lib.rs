//! Pond's background jobs: one scheduler thread and the jobs it runs. Today
//! that is continuous queries (downsampling, `cq.rs`); import and export jobs
//! are meant to be added as further kinds next to them.
//!
//! The engine calls this crate through [`Jobs::execute`] (the statements
//! `CREATE CONTINUOUS QUERY`, `DROP CONTINUOUS QUERY`, `SHOW CONTINUOUS
//! QUERIES`) and gives it a [`Host`]: connections with full rights, the
//! check of a statement against a user's current grants, and the note that
//! rows of a database changed (the query cache). This crate knows nothing of
//! sessions, protocols or grants beyond that.
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

pub mod cq;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parking_lot::Mutex;

pub use cq::{is_job_statement, Statement};

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
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

fn now_text() -> String {
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
        });
        jobs.reload()?;
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
        let st = cq::parse(statement).ok_or_else(|| Error::Syntax("not a continuous query statement".into()))??;
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

fn message(text: &str) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("message", DataType::Utf8, false)]));
    RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec![text.to_string()])) as ArrayRef])
        .unwrap_or_else(|_| RecordBatch::new_empty(schema))
}
