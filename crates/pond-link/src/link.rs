//! A link's life: LINK (checks, slot or triggers, consistent copy), the
//! background thread that applies changes batch by batch, SYNC, SHOW LINKS
//! figures, UNLINK, and resuming after a restart or crash.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};

use crate::apply::Applier;
use crate::conn::Source;
use crate::copy::copy_tables;
use crate::error::{Error, Result};
use crate::pgoutput::{self, Message};
use crate::rt;
use crate::schema::{duck_ident, pg_ident, pg_literal, Catalog, Column, Table};
use crate::triggers;

/// The schema in a linked DuckDB database that records the link's position.
pub const STATE_SCHEMA: &str = "_pond_link";

/// Changes gathered before they are applied (inside a source transaction too).
const CHUNK: usize = 20_000;
/// A batch commits at the latest this long after its first transaction ended.
const MAX_DELAY: Duration = Duration::from_millis(250);
/// An idle stream commits at once, but not sooner than this after the last
/// commit: each batch costs a pass over the keys of every table it touches,
/// so a busy stream must not commit per transaction.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// How long SYNC waits.
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);
/// PostgreSQL's epoch (2000-01-01) in Unix microseconds.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Logical replication (pgoutput) from a slot.
    Logical,
    /// Audit triggers on the source, read in commit order.
    Triggers,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Logical => "logical",
            Mode::Triggers => "triggers",
        }
    }

    pub fn parse(s: &str) -> Result<Mode> {
        match s.to_ascii_lowercase().as_str() {
            "logical" => Ok(Mode::Logical),
            "triggers" | "trigger" => Ok(Mode::Triggers),
            other => Err(Error::Invalid(format!("MODE must be logical or triggers, not '{other}'"))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Copying,
    Streaming,
    Error,
    Paused,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Copying => "copying",
            State::Streaming => "streaming",
            State::Error => "error",
            State::Paused => "paused",
        }
    }
}

/// Everything a link needs; the engine keeps it (with the source sealed) in its metadata.
#[derive(Clone)]
pub struct LinkConfig {
    /// The DuckDB database (Pond database name) the link owns.
    pub database: String,
    /// A stable id (letters, digits, `_`) naming the slot, publications, triggers.
    pub id: String,
    pub source: Source,
    pub schemas: Vec<String>,
    pub tables: Vec<String>,
    /// None: logical when the source allows it, else triggers.
    pub mode: Option<Mode>,
    /// DuckDB's postgres_scanner extension file (the copy).
    pub scanner: PathBuf,
    /// Trigger mode: how often the audit table is read.
    pub poll_interval: Duration,
}

impl LinkConfig {
    fn slot(&self) -> String {
        format!("pond_{}", self.id)
    }

    fn publications(&self) -> [String; 2] {
        [format!("pond_{}", self.id), format!("pond_{}_ins", self.id)]
    }
}

/// What SHOW LINKS and the metrics show.
#[derive(Debug, Clone)]
pub struct Status {
    pub state: State,
    pub mode: Mode,
    pub source: String,
    /// LSN (logical) or audit position (triggers) of the last applied change.
    pub position: String,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub tables: usize,
    pub applied_changes: u64,
    pub last_error: Option<String>,
    pub notes: Vec<String>,
}

/// LINK's answer.
#[derive(Debug, Clone)]
pub struct LinkReport {
    pub mode: Mode,
    pub tables: usize,
    pub rows: u64,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct SyncReport {
    pub position: String,
    pub waited: Duration,
}

pub(crate) struct Shared {
    pub status: Mutex<Status>,
    /// Last applied position (LSN, or audit id in trigger mode).
    pub applied: AtomicU64,
    pub wal_end: AtomicU64,
    pub busy: AtomicBool,
    pub stop: AtomicBool,
    pub wake: Condvar,
    pub wake_lock: Mutex<()>,
    /// Source commit time (Unix micros) of the oldest change received but not applied.
    pub oldest_unapplied: AtomicU64,
    pub sync_requested: AtomicBool,
    /// Trigger mode: claims of the audit table started (SYNC waits for the next one).
    pub claims_started: AtomicU64,
    /// The error is one the link cannot get past by retrying (it waits for UNLINK).
    pub permanent: AtomicBool,
}

impl Shared {
    fn set_error(&self, e: &Error) {
        let mut s = self.status.lock();
        s.state = State::Error;
        s.last_error = Some(e.to_string());
        drop(s);
        self.notify();
    }

    pub(crate) fn notify(&self) {
        let _g = self.wake_lock.lock();
        self.wake.notify_all();
    }
}

pub struct Link {
    cfg: LinkConfig,
    mode: Mode,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Link {
    /// LINK: checks the source, sets up change capture, copies every table in
    /// one DuckDB transaction, then streams in the background. `duck` is the
    /// link's own connection; `db` must exist and be empty.
    pub fn create(cfg: LinkConfig, duck: duckdb::Connection) -> Result<(Link, LinkReport)> {
        let mut catalog = Catalog::open(&cfg.source)?;
        let caps = catalog.capabilities()?;
        let logical_ok = caps.wal_level == "logical" && (caps.superuser || caps.replication);
        let (mode, why) = match cfg.mode {
            Some(Mode::Logical) if !logical_ok => {
                let mut missing = Vec::new();
                if caps.wal_level != "logical" {
                    missing.push(format!("wal_level is {} (needs logical)", caps.wal_level));
                }
                if !(caps.superuser || caps.replication) {
                    missing.push(format!("role {} has neither REPLICATION nor SUPERUSER", cfg.source.user()));
                }
                return Err(Error::Invalid(format!(
                    "MODE logical is not possible on {}: {}; use MODE 'triggers' or fix the source",
                    cfg.source,
                    missing.join(", ")
                )));
            }
            Some(m) => (m, String::new()),
            None if logical_ok => (Mode::Logical, String::new()),
            None => (
                Mode::Triggers,
                format!(
                    " (trigger mode: {})",
                    if caps.wal_level != "logical" {
                        format!("wal_level is {}", caps.wal_level)
                    } else {
                        format!("role {} lacks REPLICATION", cfg.source.user())
                    }
                ),
            ),
        };
        let tables = catalog.tables(&cfg.schemas, &cfg.tables)?;
        let shared = new_shared(&cfg, mode, tables.len());
        let progress = AtomicU64::new(0);
        let rows = match mode {
            Mode::Logical => setup_and_copy_logical(&cfg, &mut catalog, &tables, &duck, &progress)?,
            Mode::Triggers => triggers::setup_and_copy(&cfg, &mut catalog, &tables, &duck, &progress)?,
        };
        if let Some(p) = read_position(&duck, &cfg.database)? {
            shared.applied.store(p, Ordering::Relaxed);
        }
        shared.status.lock().state = State::Streaming;
        let link = Link { cfg: cfg.clone(), mode, shared, thread: Mutex::new(None) };
        link.note_tables(&tables);
        link.start(duck, Some((catalog, tables)));
        let n = link.status().tables;
        let message = format!("linked {n} table(s), {rows} row(s) copied; changes stream by {}{why}", mode.as_str());
        Ok((link, LinkReport { mode, tables: n, rows, message }))
    }

    /// After a restart: resumes from the position DuckDB recorded (or copies
    /// again if the copy never committed). Errors show in the status and are retried.
    pub fn resume(cfg: LinkConfig, mode: Mode, duck: duckdb::Connection) -> Link {
        let shared = new_shared(&cfg, mode, 0);
        let link = Link { cfg, mode, shared, thread: Mutex::new(None) };
        link.start(duck, None);
        link
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn database(&self) -> &str {
        &self.cfg.database
    }

    fn note_tables(&self, tables: &[Table]) {
        let mut s = self.shared.status.lock();
        s.tables = tables.len();
        s.notes = notes(self.mode, tables);
    }

    fn start(&self, duck: duckdb::Connection, ready: Option<(Catalog, Vec<Table>)>) {
        let cfg = self.cfg.clone();
        let shared = self.shared.clone();
        let mode = self.mode;
        let handle = std::thread::Builder::new()
            .name(format!("pond-link-{}", cfg.database))
            .spawn(move || run_link(cfg, mode, shared, duck, ready))
            .expect("a link thread starts");
        *self.thread.lock() = Some(handle);
    }

    pub fn status(&self) -> Status {
        let mut s = self.shared.status.lock().clone();
        let applied = self.shared.applied.load(Ordering::Relaxed);
        let busy = self.shared.busy.load(Ordering::Relaxed);
        if self.mode == Mode::Logical {
            s.position = Lsn(applied).to_string();
            let end = self.shared.wal_end.load(Ordering::Relaxed);
            s.lag_bytes = if busy { end.saturating_sub(applied) } else { 0 };
        }
        let oldest = self.shared.oldest_unapplied.load(Ordering::Relaxed);
        s.lag_seconds = if oldest == 0 { 0.0 } else { (unix_micros().saturating_sub(oldest)) as f64 / 1e6 };
        s
    }

    /// SYNC: returns once every change committed on the source before the call is applied.
    pub fn sync(&self) -> Result<SyncReport> {
        let started = Instant::now();
        if let Some(e) = self.permanent_error() {
            return Err(Error::Source(format!("link of {} is in error: {e}", self.cfg.database)));
        }
        // A link retrying after a source outage tries again now.
        self.shared.sync_requested.store(true, Ordering::Relaxed);
        self.shared.notify();
        let target = match self.mode {
            Mode::Logical => {
                let catalog = Catalog::open(&self.cfg.source)?;
                let rows =
                    catalog.query("SYNC (marking the source's position)", "SELECT pg_logical_emit_message(true, 'pond_sync', '')::text")?;
                let text: String = rows.first().map(|r| r.get(0)).unwrap_or_default();
                Lsn::parse(&text).map_err(|_| Error::Source(format!("the source returned an unreadable position '{text}'")))?.0
            }
            Mode::Triggers => {
                // The next claim of the audit table starts after this call.
                let target = self.shared.claims_started.load(Ordering::Relaxed) + 1;
                self.shared.sync_requested.store(true, Ordering::Relaxed);
                self.shared.notify();
                target
            }
        };
        let mut guard = self.shared.wake_lock.lock();
        loop {
            if self.shared.applied.load(Ordering::Relaxed) >= target {
                break;
            }
            if let Some(e) = self.permanent_error() {
                return Err(Error::Source(format!("link of {} is in error: {e}", self.cfg.database)));
            }
            if started.elapsed() > SYNC_TIMEOUT {
                return Err(Error::Source(format!(
                    "SYNC DATABASE {} gave up after {SYNC_TIMEOUT:?}: changes are still being applied (see SHOW LINKS)",
                    self.cfg.database
                )));
            }
            self.shared.wake.wait_for(&mut guard, Duration::from_millis(100));
        }
        Ok(SyncReport { position: self.status().position, waited: started.elapsed() })
    }

    fn permanent_error(&self) -> Option<String> {
        let s = self.shared.status.lock();
        (s.state == State::Error && self.shared.permanent.load(Ordering::Relaxed)).then(|| s.last_error.clone().unwrap_or_default())
    }

    /// Stops the background thread (server shutdown, UNLINK, DROP DATABASE).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.notify();
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
    }

    /// UNLINK: stops, then removes the slot and publications (or triggers and
    /// the audit table) from the source. Returns what could not be removed
    /// (the source may be down), in words that say how to remove it by hand.
    pub fn unlink(&self) -> Vec<String> {
        self.stop();
        let mut left = Vec::new();
        let catalog = match Catalog::open(&self.cfg.source) {
            Ok(c) => c,
            Err(e) => {
                left.push(format!("could not reach the source to clean up ({e}); remove {} by hand", self.source_objects()));
                return left;
            }
        };
        let result = match self.mode {
            Mode::Logical => drop_logical(&catalog, &self.cfg),
            Mode::Triggers => triggers::remove(&catalog, &self.cfg),
        };
        if let Err(e) = result {
            left.push(format!("could not remove {} ({e})", self.source_objects()));
        }
        left
    }

    fn source_objects(&self) -> String {
        match self.mode {
            Mode::Logical => {
                let [p1, p2] = self.cfg.publications();
                format!("replication slot {} and publications {p1}, {p2}", self.cfg.slot())
            }
            Mode::Triggers => format!("the pond_{} triggers and audit table", self.cfg.id),
        }
    }
}

/// What SHOW LINKS says about the tables: what is not replicated, what is kept as text.
fn notes(mode: Mode, tables: &[Table]) -> Vec<String> {
    let mut out = Vec::new();
    for t in tables {
        if mode == Mode::Logical && !t.has_identity() {
            out.push(format!(
                "{}.{} has no primary key and no REPLICA IDENTITY FULL: only inserts and truncates are replicated",
                t.schema, t.name
            ));
        }
        for c in &t.columns {
            if let Some(n) = &c.mapped.note {
                out.push(format!("{}.{}.{}: {n}", t.schema, t.name, c.name));
            }
        }
    }
    out
}

fn new_shared(cfg: &LinkConfig, mode: Mode, tables: usize) -> Arc<Shared> {
    Arc::new(Shared {
        status: Mutex::new(Status {
            state: State::Copying,
            mode,
            source: cfg.source.to_string(),
            position: String::new(),
            lag_bytes: 0,
            lag_seconds: 0.0,
            tables,
            applied_changes: 0,
            last_error: None,
            notes: Vec::new(),
        }),
        applied: AtomicU64::new(0),
        wal_end: AtomicU64::new(0),
        busy: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        wake: Condvar::new(),
        wake_lock: Mutex::new(()),
        oldest_unapplied: AtomicU64::new(0),
        sync_requested: AtomicBool::new(false),
        claims_started: AtomicU64::new(0),
        permanent: AtomicBool::new(false),
    })
}

pub(crate) fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

pub(crate) fn pg_time_to_unix(micros: i64) -> u64 {
    (micros + PG_EPOCH_MICROS).max(0) as u64
}

/// The position row: `(position, copied)`; None before the copy committed.
pub(crate) fn read_position(duck: &duckdb::Connection, db: &str) -> Result<Option<u64>> {
    let exists: i64 = duck.query_row(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = 'state'",
        duckdb::params![db, STATE_SCHEMA],
        |r| r.get(0),
    )?;
    if exists == 0 {
        return Ok(None);
    }
    let row: Option<(i64, bool)> = duck
        .query_row(&format!("SELECT position, copied FROM {}.{STATE_SCHEMA}.state", duck_ident(db)), [], |r| Ok((r.get(0)?, r.get(1)?)))
        .ok();
    Ok(row.filter(|r| r.1).map(|r| r.0 as u64))
}

/// Creates the target tables (dropping leftovers of an unfinished copy) and the state table.
fn prepare_target(duck: &duckdb::Connection, db: &str, tables: &[Table]) -> Result<()> {
    let q = duck_ident(db);
    for t in tables {
        duck.execute_batch(&format!("DROP TABLE IF EXISTS {q}.{}.{}", duck_ident(t.duck_schema()), duck_ident(&t.name)))?;
        duck.execute_batch(&crate::schema::create_table_sql(db, t))?;
    }
    duck.execute_batch(&format!(
        "CREATE SCHEMA IF NOT EXISTS {q}.{STATE_SCHEMA}; CREATE OR REPLACE TABLE {q}.{STATE_SCHEMA}.state \
         (position BIGINT NOT NULL, copied BOOLEAN NOT NULL, updated_at TIMESTAMPTZ NOT NULL)"
    ))?;
    Ok(())
}

/// Inside the caller's DuckDB transaction: fresh target tables, every table
/// copied at the source's `snapshot`, and `position` recorded as where changes resume.
pub(crate) fn copy_at(
    cfg: &LinkConfig,
    snapshot: &str,
    tables: &[Table],
    duck: &duckdb::Connection,
    progress: &AtomicU64,
    position: u64,
) -> Result<u64> {
    prepare_target(duck, &cfg.database, tables)?;
    let rows = copy_tables(&cfg.source, Some(snapshot), tables, duck, &cfg.database, &cfg.scanner, progress)?;
    duck.execute(
        &format!("INSERT INTO {}.{STATE_SCHEMA}.state VALUES (?, true, now())", duck_ident(&cfg.database)),
        duckdb::params![position as i64],
    )?;
    Ok(rows)
}

pub(crate) fn record_position(duck: &duckdb::Connection, db: &str, position: u64) -> Result<()> {
    duck.execute(
        &format!("UPDATE {}.{STATE_SCHEMA}.state SET position = ?, updated_at = now()", duck_ident(db)),
        duckdb::params![position as i64],
    )?;
    Ok(())
}

fn drop_logical(catalog: &Catalog, cfg: &LinkConfig) -> Result<()> {
    let slot = pg_literal(&cfg.slot());
    // The walsender of a stopped stream may take a moment to let go of the slot.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match catalog.execute(
            "dropping the replication slot",
            &format!("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {slot}"),
        ) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline && e.to_string().contains("active") => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(e),
        }
    }
    for p in cfg.publications() {
        catalog.execute("dropping the publication", &format!("DROP PUBLICATION IF EXISTS {}", pg_ident(&p)))?;
    }
    Ok(())
}

/// Logical mode's LINK (and a copy redone after a crash): publications,
/// a slot that exports its snapshot, the copy at that snapshot, the position.
fn setup_and_copy_logical(
    cfg: &LinkConfig,
    catalog: &mut Catalog,
    tables: &[Table],
    duck: &duckdb::Connection,
    progress: &AtomicU64,
) -> Result<u64> {
    drop_logical(catalog, cfg)?;
    let [all_ops, inserts] = cfg.publications();
    let with_identity: Vec<String> = tables.iter().filter(|t| t.has_identity()).map(Table::source_name).collect();
    let without: Vec<String> = tables.iter().filter(|t| !t.has_identity()).map(Table::source_name).collect();
    let mut ddl = String::new();
    ddl.push_str(&format!("CREATE PUBLICATION {}", pg_ident(&all_ops)));
    if !with_identity.is_empty() {
        ddl.push_str(&format!(" FOR TABLE {}", with_identity.join(", ")));
    }
    ddl.push_str(" WITH (publish_via_partition_root = true);");
    ddl.push_str(&format!("CREATE PUBLICATION {}", pg_ident(&inserts)));
    if !without.is_empty() {
        ddl.push_str(&format!(" FOR TABLE {}", without.join(", ")));
    }
    ddl.push_str(" WITH (publish = 'insert, truncate', publish_via_partition_root = true);");
    catalog.execute("creating the publications", &ddl)?;

    // A gated replication session creates the slot and exports its snapshot;
    // the session stays open (and the snapshot valid) until the copy adopted it.
    let pubs = cfg.publications().to_vec();
    let rc = cfg.source.replication(&cfg.slot(), &pubs);
    let shown = cfg.source.to_string();
    let slot = cfg.slot();
    let (client, consistent, snapshot) = rt::wait(async move {
        let mut client = match tokio::time::timeout(Duration::from_secs(15), ReplicationClient::connect_gated(rc)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(Error::Source(format!("replication connection to {shown}: {e}"))),
            Err(_) => return Err(Error::Source(format!("replication connection to {shown}: no answer within 15s"))),
        };
        let sql = format!("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT", pg_ident(&slot));
        let rows = match tokio::time::timeout(Duration::from_secs(60), client.simple_query(&sql)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => return Err(Error::Source(format!("creating replication slot {slot} on {shown}: {e}"))),
            Err(_) => return Err(Error::Source(format!("creating replication slot {slot} on {shown}: no answer within 60s"))),
        };
        let row = rows.first().ok_or_else(|| Error::Source("CREATE_REPLICATION_SLOT returned no row".into()))?;
        let field = |i: usize| row.get(i).and_then(|v| v.as_ref()).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        let lsn = Lsn::parse(&field(1)).map_err(|_| Error::Source("CREATE_REPLICATION_SLOT returned an unreadable LSN".into()))?;
        Ok((client, lsn.0, field(2)))
    })?;
    duck.execute_batch("BEGIN")?;
    let copied = copy_at(cfg, &snapshot, tables, duck, progress, consistent);
    match copied {
        Ok(rows) => {
            duck.execute_batch("COMMIT")?;
            rt::wait(async move {
                let mut client = client;
                client.abort();
            });
            Ok(rows)
        }
        Err(e) => {
            let _ = duck.execute_batch("ROLLBACK");
            rt::wait(async move {
                let mut client = client;
                client.abort();
            });
            Err(e)
        }
    }
}

/// The link thread: (re)copies if needed, then applies changes until stopped;
/// a failure is shown in the status and retried with backoff, except changes
/// the link cannot follow (they wait for UNLINK).
fn run_link(cfg: LinkConfig, mode: Mode, shared: Arc<Shared>, duck: duckdb::Connection, mut ready: Option<(Catalog, Vec<Table>)>) {
    let mut backoff = Duration::from_secs(1);
    while !shared.stop.load(Ordering::Relaxed) {
        let attempt_started = Instant::now();
        let attempt = (|| -> Result<()> {
            let (mut catalog, tables) = match ready.take() {
                Some(r) => r,
                None => {
                    let mut catalog = Catalog::open(&cfg.source)?;
                    let tables = catalog.tables(&cfg.schemas, &cfg.tables)?;
                    if read_position(&duck, &cfg.database)?.is_none() {
                        shared.status.lock().state = State::Copying;
                        let progress = AtomicU64::new(0);
                        match mode {
                            Mode::Logical => setup_and_copy_logical(&cfg, &mut catalog, &tables, &duck, &progress)?,
                            Mode::Triggers => triggers::setup_and_copy(&cfg, &mut catalog, &tables, &duck, &progress)?,
                        };
                    }
                    let tables = current_tables(&duck, &cfg.database, tables)?;
                    (catalog, tables)
                }
            };
            {
                let mut s = shared.status.lock();
                s.tables = tables.len();
                s.notes = notes(mode, &tables);
            }
            let position = read_position(&duck, &cfg.database)?.ok_or_else(|| Error::Internal("the copy recorded no position".into()))?;
            shared.applied.store(position, Ordering::Relaxed);
            {
                let mut s = shared.status.lock();
                s.state = State::Streaming;
                s.last_error = None;
            }
            shared.permanent.store(false, Ordering::Relaxed);
            shared.notify();
            match mode {
                Mode::Logical => stream_logical(&cfg, &shared, &duck, &mut catalog, &tables, position),
                Mode::Triggers => triggers::poll(&cfg, &shared, &duck, &mut catalog, &tables, position),
            }
        })();
        let _ = duck.execute_batch("ROLLBACK");
        shared.busy.store(false, Ordering::Relaxed);
        shared.oldest_unapplied.store(0, Ordering::Relaxed);
        match attempt {
            Ok(()) => break, // stopped
            Err(e) => {
                if shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                tracing::warn!(database = %cfg.database, error = %e, "link stopped; retrying");
                let permanent = matches!(e, Error::Unsupported(_));
                shared.permanent.store(permanent, Ordering::Relaxed);
                shared.set_error(&e);
                if attempt_started.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_secs(1);
                }
                let wait = if permanent { Duration::from_secs(3600) } else { backoff };
                let mut g = shared.wake_lock.lock();
                let until = Instant::now() + wait;
                shared.sync_requested.store(false, Ordering::Relaxed);
                while !shared.stop.load(Ordering::Relaxed)
                    && Instant::now() < until
                    && (permanent || !shared.sync_requested.load(Ordering::Relaxed))
                {
                    shared.wake.wait_for(&mut g, Duration::from_millis(200));
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    let _ = duck.execute_batch("ROLLBACK");
}

/// The linked tables as DuckDB holds them: DuckDB's columns, typed from the
/// source catalog where it still has them (a column dropped on the source but
/// not yet here keeps DuckDB's type until the relation message drops it).
fn current_tables(duck: &duckdb::Connection, db: &str, source: Vec<Table>) -> Result<Vec<Table>> {
    let mut out = Vec::new();
    for mut t in source {
        let mut stmt = duck.prepare(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? AND table_name = ? ORDER BY column_index",
        )?;
        let cols: Vec<(String, String)> = stmt
            .query_map(duckdb::params![db, t.duck_schema(), t.name], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<std::result::Result<_, _>>()?;
        if cols.is_empty() {
            continue; // a table that appeared on the source after LINK
        }
        let by_name: std::collections::HashMap<String, Column> = t.columns.drain(..).map(|c| (c.name.clone(), c)).collect();
        t.columns = cols
            .into_iter()
            .map(|(name, ty)| {
                by_name.get(&name).cloned().unwrap_or(Column {
                    name,
                    type_oid: 0,
                    typmod: -1,
                    mapped: crate::types::Mapped { duck: ty, text: crate::types::Text::Plain, native: true, note: None },
                })
            })
            .collect();
        out.push(t);
    }
    Ok(out)
}

type Event = std::result::Result<ReplicationEvent, Error>;

/// Logical mode: reads the slot from `start`, applies transactions in
/// batches (one DuckDB transaction each, with the position), acknowledges
/// only what DuckDB committed.
fn stream_logical(
    cfg: &LinkConfig,
    shared: &Arc<Shared>,
    duck: &duckdb::Connection,
    catalog: &mut Catalog,
    tables: &[Table],
    start: u64,
) -> Result<()> {
    let rc = cfg.source.replication(&cfg.slot(), &cfg.publications()).with_start_lsn(Lsn(start)).with_ack_lsn(Lsn(start));
    let (tx, rx) = mpsc::sync_channel::<Event>(8192);
    let acked = Arc::new(AtomicU64::new(start));
    let task_acked = acked.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let task_stop = stop.clone();
    let task_shared = shared.clone();
    let shown = cfg.source.to_string();
    rt::spawn(async move {
        let mut client = match ReplicationClient::connect(rc).await {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Err(Error::Source(format!("replication connection to {shown}: {e}"))));
                return;
            }
        };
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut last_ack = start;
        loop {
            tokio::select! {
                ev = client.recv() => {
                    let mut ev: Event = match ev {
                        Ok(Some(ev)) => Ok(ev),
                        Ok(None) => Err(Error::Source(format!("the replication stream from {shown} ended"))),
                        Err(e) => Err(Error::Source(format!("replication from {shown}: {e}"))),
                    };
                    let end = ev.is_err();
                    if let Ok(ReplicationEvent::KeepAlive { wal_end, .. } | ReplicationEvent::XLogData { wal_end, .. }) = &ev {
                        task_shared.wal_end.fetch_max(wal_end.0, Ordering::Relaxed);
                    }
                    loop {
                        match tx.try_send(ev) {
                            Ok(()) => break,
                            Err(mpsc::TrySendError::Full(back)) => {
                                ev = back;
                                if task_stop.load(Ordering::Relaxed) { break; }
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                            Err(mpsc::TrySendError::Disconnected(_)) => { client.stop(); return; }
                        }
                    }
                    if end { break; }
                }
                _ = tick.tick() => {
                    if task_stop.load(Ordering::Relaxed) { break; }
                    let a = task_acked.load(Ordering::Relaxed);
                    if a > last_ack {
                        client.update_applied_lsn(Lsn(a));
                        last_ack = a;
                    }
                }
            }
        }
        let a = task_acked.load(Ordering::Relaxed);
        if a > last_ack {
            client.update_applied_lsn(Lsn(a));
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), client.shutdown()).await;
    });
    let result = apply_stream(cfg, shared, duck, catalog, tables, start, &rx, &acked);
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    result
}

#[allow(clippy::too_many_arguments)]
fn apply_stream(
    cfg: &LinkConfig,
    shared: &Arc<Shared>,
    duck: &duckdb::Connection,
    catalog: &mut Catalog,
    tables: &[Table],
    start: u64,
    rx: &mpsc::Receiver<Event>,
    acked: &AtomicU64,
) -> Result<()> {
    let mut applier = Applier::new(&cfg.database, tables);
    let mut duck_txn = false;
    let mut in_txn = false;
    let mut skip = false;
    let mut applied = start;
    let mut batch_lsn: Option<u64> = None;
    let mut batch_started = Instant::now();
    let mut force = false;
    let mut idle = false;
    let mut last_commit = Instant::now();
    let mut peeked: Option<Event> = None;
    let begin = |open: &mut bool| -> Result<()> {
        if !*open {
            duck.execute_batch("BEGIN")?;
            *open = true;
        }
        Ok(())
    };
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let ev = match peeked.take() {
            Some(ev) => ev,
            None => {
                let wait = if batch_lsn.is_some() {
                    MAX_DELAY.saturating_sub(batch_started.elapsed()).min(MIN_INTERVAL.saturating_sub(last_commit.elapsed()))
                } else {
                    Duration::from_millis(300)
                };
                match rx.recv_timeout(wait) {
                    Ok(ev) => ev,
                    Err(RecvTimeoutError::Timeout) => {
                        if let (Some(lsn), false) = (batch_lsn, in_txn) {
                            commit(duck, &cfg.database, &mut applier, &mut duck_txn, lsn, shared, acked)?;
                            applied = lsn;
                            batch_lsn = None;
                            last_commit = Instant::now();
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return Err(Error::Source("the replication stream stopped".into())),
                }
            }
        };
        match ev? {
            ReplicationEvent::Begin { final_lsn, commit_time_micros, .. } => {
                in_txn = true;
                skip = final_lsn.0 < applied;
                if !skip {
                    shared.busy.store(true, Ordering::Relaxed);
                    let _ = shared.oldest_unapplied.compare_exchange(
                        0,
                        pg_time_to_unix(commit_time_micros),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
            }
            ReplicationEvent::XLogData { data, .. } => {
                let msg = pgoutput::decode(&data)?;
                match msg {
                    Message::Relation(rel) => {
                        begin(&mut duck_txn)?;
                        applier.relation(duck, catalog, rel)?;
                    }
                    Message::Other => {}
                    change if !skip => {
                        begin(&mut duck_txn)?;
                        applier.change(duck, change)?;
                        if applier.pending() >= CHUNK {
                            applier.flush(duck)?;
                        }
                    }
                    _ => {}
                }
            }
            ReplicationEvent::Message { prefix, .. } => {
                if prefix == "pond_sync" {
                    force = true;
                }
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                in_txn = false;
                if !skip {
                    if batch_lsn.is_none() {
                        batch_started = Instant::now();
                    }
                    batch_lsn = Some(end_lsn.0);
                }
                skip = false;
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                // Nothing received is waiting to be applied: the source may forget
                // its WAL up to here (records of other databases, checkpoints; a
                // fast shutdown waits for this), and transactions committed before
                // it have all been sent and applied.
                if !in_txn && batch_lsn.is_none() && !duck_txn && applier.pending() == 0 {
                    acked.fetch_max(wal_end.0, Ordering::Relaxed);
                }
            }
            ReplicationEvent::StoppedAt { .. } => return Ok(()),
        }
        if let (Some(lsn), false) = (batch_lsn, in_txn) {
            if peeked.is_none() {
                match rx.try_recv() {
                    Ok(ev) => peeked = Some(ev),
                    Err(mpsc::TryRecvError::Empty) | Err(mpsc::TryRecvError::Disconnected) => idle = true,
                }
            }
            if force
                || batch_started.elapsed() >= MAX_DELAY
                || applier.pending() >= CHUNK * 5
                || (idle && last_commit.elapsed() >= MIN_INTERVAL)
            {
                commit(duck, &cfg.database, &mut applier, &mut duck_txn, lsn, shared, acked)?;
                applied = lsn;
                batch_lsn = None;
                force = false;
                last_commit = Instant::now();
            }
            idle = false;
        }
    }
}

fn commit(
    duck: &duckdb::Connection,
    db: &str,
    applier: &mut Applier,
    duck_txn: &mut bool,
    lsn: u64,
    shared: &Shared,
    acked: &AtomicU64,
) -> Result<()> {
    if !*duck_txn {
        duck.execute_batch("BEGIN")?;
        *duck_txn = true;
    }
    applier.flush(duck)?;
    record_position(duck, db, lsn)?;
    duck.execute_batch("COMMIT")?;
    *duck_txn = false;
    acked.store(lsn, Ordering::Relaxed);
    shared.applied.store(lsn, Ordering::Relaxed);
    shared.busy.store(false, Ordering::Relaxed);
    shared.oldest_unapplied.store(0, Ordering::Relaxed);
    shared.status.lock().applied_changes = applier.applied();
    shared.notify();
    Ok(())
}
