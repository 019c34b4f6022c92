//! Runs of import and export jobs: their ids, state, progress counters, the
//! cancel switch, and the history (in memory, and in the hidden table
//! `pond_system._pond_jobs.runs` so it outlives a restart).
//!
//! A run is registered when it starts and updated when it ends; a run the
//! table still shows as running at start was cut short by a restart and is
//! marked failed. Everything shown here has been redacted by the job that
//! registered it: a source is described by host and path, never by its
//! credentials.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parking_lot::Mutex;

use crate::{now_text, now_us, Result};

/// Schema of the job tables in the system catalog.
pub const JOBS_SCHEMA: &str = "_pond_jobs";

/// Finished runs kept in memory (the table keeps them all).
const KEEP_FINISHED: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Import,
    Export,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Import => "import",
            Kind::Export => "export",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "running" => State::Running,
            "succeeded" => State::Succeeded,
            "cancelled" => State::Cancelled,
            _ => State::Failed,
        }
    }
}

/// What a running job reports and obeys: counters and the cancel switch.
#[derive(Default)]
pub struct Progress {
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
    pub batches: AtomicU64,
    cancel: AtomicBool,
    /// Interrupts the DuckDB statement the run is in, if any.
    interrupt: Mutex<Option<Arc<duckdb::InterruptHandle>>>,
}

impl Progress {
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        if let Some(h) = self.interrupt.lock().as_ref() {
            h.interrupt();
        }
    }

    /// The statement a cancel interrupts (`None` once it is over).
    pub fn set_interrupt(&self, handle: Option<Arc<duckdb::InterruptHandle>>) {
        let cancelled = self.cancelled();
        let mut slot = self.interrupt.lock();
        *slot = handle;
        if cancelled {
            if let Some(h) = slot.as_ref() {
                h.interrupt();
            }
        }
    }

    pub fn add_batch(&self, rows: u64, bytes: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
    }
}

/// A run as listed (SHOW JOBS, `/api/v1/jobs`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunView {
    pub id: u64,
    pub kind: Kind,
    /// The export job's name (imports have none).
    pub name: Option<String>,
    pub owner: String,
    pub state: State,
    /// The source, without credentials.
    pub source: String,
    pub target: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub rows: u64,
    pub bytes: u64,
    pub batches: u64,
    pub error: Option<String>,
}

struct Entry {
    view: RunView,
    progress: Arc<Progress>,
}

impl Entry {
    fn current(&self) -> RunView {
        let mut v = self.view.clone();
        if v.state == State::Running {
            v.rows = self.progress.rows.load(Ordering::Relaxed);
            v.bytes = self.progress.bytes.load(Ordering::Relaxed);
            v.batches = self.progress.batches.load(Ordering::Relaxed);
        }
        v
    }
}

/// The registry of runs.
pub struct Runs {
    entries: Mutex<BTreeMap<u64, Entry>>,
    last_id: AtomicU64,
    /// `"catalog"._pond_jobs.runs`, or `None` when it could not be created.
    table: Mutex<Option<String>>,
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl Runs {
    pub fn new() -> Runs {
        Runs { entries: Mutex::new(BTreeMap::new()), last_id: AtomicU64::new(0), table: Mutex::new(None) }
    }

    /// Creates the history table in `catalog` if needed, loads the last runs
    /// and marks those a restart cut short.
    pub fn load(&self, conn: &duckdb::Connection, catalog: &str) -> Result<()> {
        let table = format!("{}.{JOBS_SCHEMA}.runs", quote(catalog));
        conn.execute_batch(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}.{JOBS_SCHEMA}; CREATE TABLE IF NOT EXISTS {table} (\
             id UBIGINT PRIMARY KEY, kind VARCHAR NOT NULL, name VARCHAR, owner VARCHAR NOT NULL, state VARCHAR NOT NULL, \
             source VARCHAR NOT NULL, target VARCHAR NOT NULL, started_at VARCHAR NOT NULL, finished_at VARCHAR, \
             rows UBIGINT NOT NULL DEFAULT 0, bytes UBIGINT NOT NULL DEFAULT 0, batches UBIGINT NOT NULL DEFAULT 0, error VARCHAR)",
            quote(catalog)
        ))?;
        conn.execute(
            &format!("UPDATE {table} SET state = 'failed', finished_at = ?, error = 'interrupted: the server stopped during the run' WHERE state = 'running'"),
            [now_text()],
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT id, kind, name, owner, state, source, target, started_at, finished_at, rows, bytes, batches, error \
             FROM {table} ORDER BY id DESC LIMIT {KEEP_FINISHED}"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok(RunView {
                id: r.get(0)?,
                kind: if r.get::<_, String>(1)? == "export" { Kind::Export } else { Kind::Import },
                name: r.get(2)?,
                owner: r.get(3)?,
                state: State::parse(&r.get::<_, String>(4)?),
                source: r.get(5)?,
                target: r.get(6)?,
                started_at: r.get(7)?,
                finished_at: r.get(8)?,
                rows: r.get(9)?,
                bytes: r.get(10)?,
                batches: r.get(11)?,
                error: r.get(12)?,
            })
        })?;
        let mut entries = self.entries.lock();
        for v in rows {
            let v = v?;
            self.last_id.fetch_max(v.id, Ordering::SeqCst);
            entries.insert(v.id, Entry { view: v, progress: Arc::new(Progress::default()) });
        }
        *self.table.lock() = Some(table);
        Ok(())
    }

    /// A new id: increasing, and unlike any earlier one (also across restarts).
    fn next_id(&self) -> u64 {
        let base = now_us().max(0) as u64 / 1000;
        let mut cur = self.last_id.load(Ordering::SeqCst);
        loop {
            let next = base.max(cur + 1);
            match self.last_id.compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return next,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Registers a run that starts now.
    pub fn start(
        &self,
        conn: Option<&duckdb::Connection>,
        kind: Kind,
        name: Option<String>,
        owner: &str,
        source: String,
        target: String,
    ) -> (u64, Arc<Progress>) {
        let id = self.next_id();
        let progress = Arc::new(Progress::default());
        let view = RunView {
            id,
            kind,
            name,
            owner: owner.to_string(),
            state: State::Running,
            source,
            target,
            started_at: now_text(),
            finished_at: None,
            rows: 0,
            bytes: 0,
            batches: 0,
            error: None,
        };
        self.persist(conn, &view, true);
        self.entries.lock().insert(id, Entry { view, progress: progress.clone() });
        (id, progress)
    }

    /// Records the end of a run: `Err` is its (already redacted) error.
    pub fn finish(&self, conn: Option<&duckdb::Connection>, id: u64, outcome: std::result::Result<(), String>) {
        let view = {
            let mut entries = self.entries.lock();
            let Some(e) = entries.get_mut(&id) else { return };
            let mut v = e.current();
            v.finished_at = Some(now_text());
            match outcome {
                Ok(()) => v.state = State::Succeeded,
                Err(_) if e.progress.cancelled() => {
                    v.state = State::Cancelled;
                    v.error = Some("cancelled (rows written before the cancel are kept)".into());
                }
                Err(msg) => {
                    v.state = State::Failed;
                    v.error = Some(msg);
                }
            }
            e.view = v.clone();
            v
        };
        self.persist(conn, &view, false);
        self.prune();
    }

    fn persist(&self, conn: Option<&duckdb::Connection>, v: &RunView, insert: bool) {
        let Some(table) = self.table.lock().clone() else { return };
        let Some(conn) = conn else { return };
        let r = if insert {
            conn.execute(
                &format!("INSERT INTO {table} (id, kind, name, owner, state, source, target, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                duckdb::params![v.id, v.kind.as_str(), v.name, v.owner, v.state.as_str(), v.source, v.target, v.started_at],
            )
        } else {
            conn.execute(
                &format!("UPDATE {table} SET state = ?, finished_at = ?, rows = ?, bytes = ?, batches = ?, error = ? WHERE id = ?"),
                duckdb::params![v.state.as_str(), v.finished_at, v.rows, v.bytes, v.batches, v.error, v.id],
            )
        };
        if let Err(e) = r {
            tracing::warn!(id = v.id, error = %e, "cannot record the job run in the history table");
        }
    }

    fn prune(&self) {
        let mut entries = self.entries.lock();
        let finished: Vec<u64> = entries.iter().filter(|(_, e)| e.view.state != State::Running).map(|(id, _)| *id).collect();
        if finished.len() > KEEP_FINISHED {
            for id in &finished[..finished.len() - KEEP_FINISHED] {
                entries.remove(id);
            }
        }
    }

    /// Runs `user` may see (all for a superuser), newest first.
    pub fn list(&self, user: &str, superuser: bool) -> Vec<RunView> {
        self.entries.lock().values().rev().filter(|e| superuser || e.view.owner == user).map(Entry::current).collect()
    }

    pub fn get(&self, id: u64, user: &str, superuser: bool) -> Option<RunView> {
        self.entries.lock().get(&id).filter(|e| superuser || e.view.owner == user).map(Entry::current)
    }

    /// Whether a run of export job `name` is in progress.
    pub fn running_export(&self, name: &str) -> bool {
        self.entries
            .lock()
            .values()
            .any(|e| e.view.state == State::Running && e.view.kind == Kind::Export && e.view.name.as_deref() == Some(name))
    }

    /// The last run of export job `name`.
    pub fn last_export(&self, name: &str) -> Option<RunView> {
        self.entries.lock().values().rev().find(|e| e.view.kind == Kind::Export && e.view.name.as_deref() == Some(name)).map(Entry::current)
    }

    /// Asks a run to stop. `Ok(false)`: it had already ended.
    pub fn cancel(&self, id: u64, user: &str, superuser: bool) -> std::result::Result<bool, String> {
        let entries = self.entries.lock();
        let Some(e) = entries.get(&id) else { return Err(format!("job {id} does not exist (SHOW JOBS lists them)")) };
        if !superuser && e.view.owner != user {
            return Err(format!("permission denied: job {id} belongs to {} (its owner or a superuser may cancel it)", e.view.owner));
        }
        if e.view.state != State::Running {
            return Ok(false);
        }
        e.progress.cancel();
        Ok(true)
    }

    /// Cancels every running job (shutdown).
    pub fn cancel_all(&self) {
        for e in self.entries.lock().values().filter(|e| e.view.state == State::Running) {
            e.progress.cancel();
        }
    }

    /// Whether any run is in progress.
    pub fn any_running(&self) -> bool {
        self.entries.lock().values().any(|e| e.view.state == State::Running)
    }
}

impl Default for Runs {
    fn default() -> Self {
        Self::new()
    }
}

/// SHOW JOBS.
pub fn batch(runs: &[RunView]) -> RecordBatch {
    let s = |f: &dyn Fn(&RunView) -> Option<String>| -> ArrayRef { Arc::new(StringArray::from(runs.iter().map(f).collect::<Vec<_>>())) };
    let n = |f: &dyn Fn(&RunView) -> u64| -> ArrayRef { Arc::new(Int64Array::from(runs.iter().map(|r| f(r) as i64).collect::<Vec<_>>())) };
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("owner", DataType::Utf8, true),
        Field::new("state", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("target", DataType::Utf8, true),
        Field::new("started_at", DataType::Utf8, true),
        Field::new("finished_at", DataType::Utf8, true),
        Field::new("rows", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("batches", DataType::Int64, false),
        Field::new("error", DataType::Utf8, true),
    ]));
    let columns = vec![
        n(&|r| r.id),
        s(&|r| Some(r.kind.as_str().to_string())),
        s(&|r| r.name.clone()),
        s(&|r| Some(r.owner.clone())),
        s(&|r| Some(r.state.as_str().to_string())),
        s(&|r| Some(r.source.clone())),
        s(&|r| Some(r.target.clone())),
        s(&|r| Some(r.started_at.clone())),
        s(&|r| r.finished_at.clone()),
        n(&|r| r.rows),
        n(&|r| r.bytes),
        n(&|r| r.batches),
        s(&|r| r.error.clone()),
    ];
    RecordBatch::try_new(schema.clone(), columns).unwrap_or_else(|_| RecordBatch::new_empty(schema))
}
