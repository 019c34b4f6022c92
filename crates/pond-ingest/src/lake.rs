//! Moving measurement rows from the hot store into the database's lake
//! (flush), and what the HTTP API asks of the lake (compaction, retention,
//! statistics). The lake's layout, file writer and maintenance primitives
//! live in `pond-lake`; this module applies them to the hot store.
//!
//! Flush of database `db` up to generation `g` (every log record at or below
//! `g` is in the hot store), for the hot batches with `flushed < gen <= g`:
//! 1. lake tables get the hot columns they lack (their own transaction:
//!    an empty column is harmless if the rest never happens);
//! 2. each measurement's batches are split by UTC day and written as one
//!    zstd Parquet file per day in the table's hive layout, durable
//!    (`pond_lake::files`, failpoint `flush-written`);
//! 3. ONE DuckLake transaction registers every file
//!    (`ducklake_add_data_files`, partition values and statistics) and
//!    appends `g` to the lake's `_pond_flushed` (failpoint `flush-registered`);
//! 4. the lake thread then lets the writer delete the log segments up to
//!    `g` (failpoint `flush-released`).
//!
//! The view hides hot rows at or below the lake's flushed generation, so from
//! the commit on no row is visible twice. A crash before the commit leaves
//! files no snapshot refers to: the next start deletes them
//! (`ducklake_delete_orphaned_files`) before replaying the log, which still
//! has their rows; a crash after it leaves a log that replay skips by
//! generation. Nothing is lost or registered twice. The copied batches leave
//! memory a grace period after the commit, and not while a transaction
//! older than the commit is open (`hot.rs`).
//!
//! Start with [`flush`] and [`compact`].

use std::path::Path;

use pond_engine::lake::{measurement_view_query, Lake, BUFFER_SCHEMA, FLUSHED_TABLE, GEN_COLUMN};
use pond_engine::sql::{quote_ident, quote_literal};
use pond_lake::files::{self, FileJob, WrittenFile};
use pond_lake::{failpoint, in_transaction, maintenance};

use crate::batch::{TIME_COLUMN, WAL_STATE_TABLE};
use crate::hot::{HotStore, HOT_FUNCTION};
use crate::Result;

pub use pond_lake::maintenance::{flushed_gen, measurements, retention, set_retention};

/// What one flush did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FlushReport {
    pub database: String,
    pub rows: u64,
    pub measurements: usize,
    pub files: usize,
    pub generation: u64,
}

/// What one compaction did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CompactReport {
    pub database: String,
    pub files_before: u64,
    pub files_after: u64,
    pub retention_rows_deleted: u64,
}

/// One measurement as `GET /api/v1/measurements` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MeasurementInfo {
    pub database: String,
    pub name: String,
    pub rows: u64,
    pub buffered_rows: u64,
    pub files: u64,
    pub bytes: u64,
    pub retention_seconds: Option<i64>,
}

/// Who encodes a flush's Parquet files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Encoder {
    /// arrow-rs, on worker threads below the request path's priority (local data paths).
    Arrow,
    /// DuckDB's `COPY … TO` one file per day (data paths on S3: DuckDB's httpfs writes there).
    DuckDbCopy,
    /// The previous design, kept for the benchmark: `INSERT` through DuckLake's
    /// own hive partitioning, one row at a time per partition key.
    DuckLakeInsert,
}

impl Encoder {
    /// The encoder for a data path: arrow-rs for a local directory, DuckDB's COPY for a URL.
    pub fn for_data_path(data_path: &str) -> Self {
        if data_path.contains("://") {
            Encoder::DuckDbCopy
        } else {
            Encoder::Arrow
        }
    }
}

/// How flushes write.
#[derive(Debug, Clone)]
pub struct FlushOptions {
    /// The lake's data path (`Engine::lake_data_path`).
    pub data_path: String,
    pub encoder: Encoder,
    /// Threads encoding files at once (different measurements and days).
    pub workers: usize,
}

/// One measurement's part of a flush.
struct Plan {
    name: String,
    columns: Vec<(String, String)>,
    batches: Vec<arrow_array::RecordBatch>,
}

/// Moves every hot row of database `db` (file id `db_id`) with a generation
/// in `(flushed, upto]` into the lake and records `upto` (see the module
/// doc for the steps and why a crash between them loses and repeats nothing).
pub fn flush(
    conn: &duckdb::Connection,
    store: &HotStore,
    db: &str,
    db_id: &str,
    lake: &Lake,
    upto: u64,
    opts: &FlushOptions,
) -> Result<FlushReport> {
    let before = flushed_gen(conn, lake)?;
    let mut report = FlushReport { database: db.to_string(), generation: before, ..Default::default() };
    if upto <= before {
        return Ok(report);
    }
    let plans: Vec<Plan> = store
        .tables_of(db_id)
        .into_iter()
        .filter_map(|t| {
            let batches = t.batches_between(before, upto);
            (!batches.is_empty()).then(|| Plan { name: t.name.clone(), columns: t.columns(), batches })
        })
        .collect();
    if opts.encoder == Encoder::DuckLakeInsert {
        report.rows = insert_flush(conn, db_id, lake, &plans, before, upto)?;
    } else {
        if !plans.is_empty() {
            pond_lake::retry_conflicts(|| {
                in_transaction(conn, || {
                    for p in &plans {
                        maintenance::widen_table(conn, lake, &p.name, &p.columns, GEN_COLUMN)?;
                    }
                    Ok::<_, crate::Error>(())
                })
            })?;
        }
        let mut jobs = Vec::new();
        let mut owner = Vec::new();
        for (i, p) in plans.iter().enumerate() {
            let dir = files::table_dir(conn, lake, &opts.data_path, &p.name)?;
            let schema = files::file_schema(&p.columns);
            let time = p.batches[0].schema().index_of(TIME_COLUMN)?;
            for (day, slices) in pond_lake::days::split_by_day(&p.batches, time)? {
                jobs.push(FileJob { path: files::day_file_path(Path::new(&dir), day, upto), schema: schema.clone(), slices });
                owner.push(i);
            }
        }
        let planned: Vec<std::path::PathBuf> = jobs.iter().map(|j| j.path.clone()).collect();
        let written = match opts.encoder {
            Encoder::DuckDbCopy => copy_files(conn, db_id, &plans, &owner, &jobs, before, upto),
            _ => files::write_files(jobs, opts.workers).map_err(crate::Error::from),
        };
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                remove_local(&planned);
                return Err(e);
            }
        };
        failpoint::hit(failpoint::FLUSH_WRITTEN);
        // Nodes sharing the lake commit into the same catalog: a conflict with
        // another node's commit is retried on the new snapshot.
        let registered = pond_lake::retry_conflicts(|| {
            in_transaction(conn, || {
                for (i, p) in plans.iter().enumerate() {
                    let paths: Vec<String> =
                        written.iter().zip(&owner).filter(|(_, o)| **o == i).map(|(w, _)| w.path.display().to_string()).collect();
                    files::register(conn, lake, &p.name, &paths)?;
                }
                maintenance::record_flushed(conn, lake, upto)?;
                Ok::<_, crate::Error>(())
            })
        });
        if let Err(e) = registered {
            // Not registered: the files are nobody's (the rows stay in memory and are retried).
            remove_local(&planned);
            return Err(e);
        }
        failpoint::hit(failpoint::FLUSH_REGISTERED);
        report.rows = written.iter().map(|w| w.rows).sum();
        report.files = written.len();
    }
    report.measurements = plans.len();
    report.generation = upto;
    store.mark_flushed(db_id, upto);
    Ok(report)
}

/// Best-effort removal of files of a failed flush (local paths only; the
/// next start's orphan sweep catches the rest).
fn remove_local(paths: &[std::path::PathBuf]) {
    for p in paths {
        if !p.to_string_lossy().contains("://") {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Writes each job's day with DuckDB's `COPY` from `pond_hot` (rows of the
/// flush's generations and the day's time range).
fn copy_files(
    conn: &duckdb::Connection,
    db_id: &str,
    plans: &[Plan],
    owner: &[usize],
    jobs: &[FileJob],
    before: u64,
    upto: u64,
) -> Result<Vec<WrittenFile>> {
    let gen_col = quote_ident(GEN_COLUMN);
    let time = quote_ident(TIME_COLUMN);
    let mut out = Vec::with_capacity(jobs.len());
    for (job, i) in jobs.iter().zip(owner) {
        let p = &plans[*i];
        let path = job.path.display().to_string();
        let local = !path.contains("://");
        if local {
            if let Some(dir) = job.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
            }
        }
        let day = job.slices.first().map(|s| s.schema().index_of(TIME_COLUMN)).transpose()?.and_then(|ti| {
            job.slices[0]
                .column(ti)
                .as_any()
                .downcast_ref::<arrow_array::TimestampNanosecondArray>()
                .map(|a| pond_lake::days::day_of(a.value(0)))
        });
        let day = day.unwrap_or(0);
        let lo = day * pond_lake::days::NANOS_PER_DAY;
        let cols = p.columns.iter().map(|(n, _)| quote_ident(n)).collect::<Vec<_>>().join(", ");
        let rows = conn.execute(
            &format!(
                "COPY (SELECT {cols} FROM {HOT_FUNCTION}({}, {}) WHERE {gen_col} > {before} AND {gen_col} <= {upto} \
                 AND {time} >= make_timestamp_ns({lo}) AND {time} < make_timestamp_ns({hi})) TO {} (FORMAT parquet, COMPRESSION zstd)",
                quote_literal(db_id),
                quote_literal(&p.name),
                quote_literal(&path),
                hi = lo + pond_lake::days::NANOS_PER_DAY,
            ),
            [],
        )? as u64;
        let mut bytes = 0;
        if local {
            let f = std::fs::File::open(&job.path).map_err(|e| crate::Error::io(&job.path, e))?;
            f.sync_all().map_err(|e| crate::Error::io(&job.path, e))?;
            bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
        }
        out.push(WrittenFile { path: job.path.clone(), rows, bytes });
    }
    Ok(out)
}

/// The previous flush (benchmark baseline): `INSERT … SELECT` from
/// `pond_hot` into each lake table in one DuckLake transaction.
fn insert_flush(conn: &duckdb::Connection, db_id: &str, lake: &Lake, plans: &[Plan], before: u64, upto: u64) -> Result<u64> {
    let gen_col = quote_ident(GEN_COLUMN);
    in_transaction(conn, || {
        let mut rows = 0u64;
        for p in plans {
            maintenance::widen_table(conn, lake, &p.name, &p.columns, GEN_COLUMN)?;
            rows += conn.execute(
                &format!(
                    "INSERT INTO {} BY NAME SELECT * EXCLUDE ({gen_col}) FROM {HOT_FUNCTION}({}, {}) WHERE {gen_col} > {before} AND {gen_col} <= {upto}",
                    lake.table(&p.name),
                    quote_literal(db_id),
                    quote_literal(&p.name)
                ),
                [],
            )? as u64;
        }
        maintenance::record_flushed(conn, lake, upto)?;
        Ok::<_, crate::Error>(rows)
    })
}

/// Creates the view of every measurement another node sharing the lake
/// made in a database this node knows (and replaces a measurement view
/// whose text is not this node's, e.g. one made before the lake was
/// shared). Returns the views made.
pub fn sync_views(conn: &duckdb::Connection, engine: &pond_engine::Engine) -> Result<usize> {
    let schemas = crate::existing_lake_schemas(conn)?;
    let mut made = 0;
    for d in engine.databases() {
        let Some(id) = crate::database_id_of(&d) else { continue };
        if !schemas.contains(&id) {
            continue;
        }
        let lake = engine.lake_for_id(&id);
        let wanted = measurements(conn, &lake)?;
        if wanted.is_empty() {
            continue;
        }
        let mut stmt = conn.prepare_cached(
            "SELECT table_name, NULL FROM duckdb_tables() WHERE database_name = $1 AND schema_name = 'main' \
             UNION ALL SELECT view_name, sql FROM duckdb_views() WHERE database_name = $1 AND schema_name = 'main'",
        )?;
        let existing: Vec<(String, Option<String>)> =
            stmt.query_map([&d.name], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        for name in wanted {
            let found = existing.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name));
            let create = match found {
                None => true,
                // A table of that name is the user's: left alone.
                Some((_, None)) => false,
                Some((_, Some(sql))) => {
                    !pond_engine::lake::is_measurement_view_text(conn, &lake, &name, sql) && is_pond_view(sql, &lake, &name)
                }
            };
            if create {
                conn.execute_batch(&format!(
                    "CREATE OR REPLACE VIEW {}.main.{} AS {}",
                    quote_ident(&d.name),
                    quote_ident(&name),
                    measurement_view_query(&lake, &name)
                ))?;
                made += 1;
            }
        }
    }
    Ok(made)
}

/// Whether a view's text reads this measurement's lake table and hot rows
/// the way Pond's views do (only such views are replaced by [`sync_views`]).
fn is_pond_view(sql: &str, lake: &Lake, name: &str) -> bool {
    sql.contains(HOT_FUNCTION) && sql.contains(&lake.table(name)) && sql.contains(FLUSHED_TABLE)
}

/// Whether database `db` has buffer tables (or the generation table) of an older Pond.
pub fn has_buffer_tables(conn: &duckdb::Connection, db: &str) -> Result<bool> {
    // The old generation table alone (a database whose buffers were empty) counts too: it must go.
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND (schema_name = ? OR schema_name = 'main' AND table_name = ?)",
        duckdb::params![db, BUFFER_SCHEMA, WAL_STATE_TABLE],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Moves what an older Pond kept in DuckDB buffer tables (`db._pond_buffer.*`,
/// the generation of its last write in `db.main._pond_ingest_wal`) into the
/// lake, drops them and points the measurement views at the hot store.
/// Returns the rows moved.
pub fn migrate_buffer_tables(conn: &duckdb::Connection, db: &str, lake: &Lake) -> Result<u64> {
    let mut stmt = conn.prepare("SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? ORDER BY 1")?;
    let tables = stmt.query_map(duckdb::params![db, BUFFER_SCHEMA], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    if tables.is_empty() {
        conn.execute_batch(&format!("DROP TABLE IF EXISTS {}.main.{}", quote_ident(db), quote_ident(WAL_STATE_TABLE)))?;
        return Ok(0);
    }
    let state: Option<u64> = conn
        .query_row(&format!("SELECT max(seq) FROM {}.main.{}", quote_ident(db), quote_ident(WAL_STATE_TABLE)), [], |r| r.get(0))
        .ok()
        .flatten();
    let before = flushed_gen(conn, lake)?;
    let gen_col = quote_ident(GEN_COLUMN);
    let moved = in_transaction(conn, || {
        let mut rows = 0u64;
        let mut applied = before;
        for t in &tables {
            let buf = format!("{}.{}.{}", quote_ident(db), quote_ident(BUFFER_SCHEMA), quote_ident(t));
            maintenance::widen_table(conn, lake, t, &maintenance::columns(conn, db, BUFFER_SCHEMA, t)?, GEN_COLUMN)?;
            let max: Option<u64> = conn.query_row(&format!("SELECT max({gen_col}) FROM {buf}"), [], |r| r.get(0))?;
            applied = applied.max(max.unwrap_or(0));
            rows += conn.execute(
                &format!("INSERT INTO {} BY NAME SELECT * EXCLUDE ({gen_col}) FROM {buf} WHERE {gen_col} > {before}", lake.table(t)),
                [],
            )? as u64;
        }
        let upto = applied.max(state.unwrap_or(0));
        if upto > before {
            maintenance::record_flushed(conn, lake, upto)?;
        }
        Ok::<_, crate::Error>(rows)
    })?;
    // The lake holds the rows now: the old objects can go (a crash before this
    // point repeats the copy of nothing, since the generation is recorded).
    for t in &tables {
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS {}.{}.{}; CREATE OR REPLACE VIEW {}.main.{} AS {}",
            quote_ident(db),
            quote_ident(BUFFER_SCHEMA),
            quote_ident(t),
            quote_ident(db),
            quote_ident(t),
            measurement_view_query(lake, t)
        ))?;
    }
    conn.execute_batch(&format!(
        "DROP SCHEMA IF EXISTS {}.{}; DROP TABLE IF EXISTS {}.main.{}",
        quote_ident(db),
        quote_ident(BUFFER_SCHEMA),
        quote_ident(db),
        quote_ident(WAL_STATE_TABLE)
    ))?;
    Ok(moved)
}

/// Compaction of database `db`: retention, then per measurement bounded
/// merge steps (`max_files` files each, same day only) until a step changes
/// nothing, each step its own transaction taken under `lock` so flushes
/// interleave; then expiry of old snapshots and cleanup of replaced files.
pub fn compact(
    conn: &duckdb::Connection,
    db: &str,
    lake: &Lake,
    cleanup_grace_secs: u64,
    snapshot_retention_secs: u64,
    lock: &parking_lot::Mutex<()>,
    max_files: u64,
) -> Result<CompactReport> {
    let files_before = maintenance::files_of(conn, lake)?;
    let limits = retention(conn, lake)?;
    let mut retention_rows_deleted = 0;
    for t in measurements(conn, lake)? {
        if let Some(secs) = maintenance::limit_for(&limits, &t) {
            let _g = lock.lock();
            retention_rows_deleted += maintenance::apply_retention_to(conn, lake, &t, secs)?;
        }
        let mut files = maintenance::file_stats(conn, lake, &t)?.0;
        loop {
            {
                let _g = lock.lock();
                maintenance::merge_step(conn, lake, &t, max_files)?;
            }
            failpoint::hit(failpoint::COMPACT_MERGED);
            let now = maintenance::file_stats(conn, lake, &t)?.0;
            if now >= files {
                break;
            }
            files = now;
        }
    }
    {
        let _g = lock.lock();
        maintenance::cleanup(conn, &lake.catalog, cleanup_grace_secs, snapshot_retention_secs)?;
    }
    Ok(CompactReport { database: db.to_string(), files_before, files_after: maintenance::files_of(conn, lake)?, retention_rows_deleted })
}

/// Statistics of every measurement of `db` (file id `db_id`).
pub fn measurement_infos(conn: &duckdb::Connection, store: &HotStore, db: &str, db_id: &str, lake: &Lake) -> Result<Vec<MeasurementInfo>> {
    let limits = retention(conn, lake)?;
    let mut out = Vec::new();
    for name in measurements(conn, lake)? {
        // One statement over the view: a consistent count while flushes run.
        // A user with WRITE may have dropped or replaced the view: skip it.
        let counted =
            conn.query_row(&format!("SELECT count(*)::UBIGINT FROM {}.main.{}", quote_ident(db), quote_ident(&name)), [], |r| r.get(0));
        let rows: u64 = match counted {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(database = %db, measurement = %name, error = %e, "measurement view unreadable; not listed");
                continue;
            }
        };
        let buffered_rows = store.table(db_id, &name).map(|t| t.unflushed().0).unwrap_or(0);
        let (files, bytes) = maintenance::file_stats(conn, lake, &name)?;
        out.push(MeasurementInfo {
            database: db.to_string(),
            rows,
            buffered_rows,
            files,
            bytes,
            retention_seconds: maintenance::limit_for(&limits, &name),
            name,
        });
    }
    Ok(out)
}
