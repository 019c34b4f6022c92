//! Moving measurement rows from the hot store into the database's lake
//! (flush), merging small Parquet files (compaction), deleting old rows
//! (retention), and the per-measurement statistics the HTTP API lists.
//!
//! Flush of database `db` up to generation `g` (every log record at or below
//! `g` is in the hot store): in ONE DuckLake transaction, copy every hot row
//! with `flushed < generation <= g` into the lake table (through
//! `pond_hot`) and append `g` to the lake's `_pond_flushed`. The view hides
//! hot rows at or below the lake's flushed generation, so from that commit on
//! no row is visible twice, and a crash anywhere leaves either the old state
//! or a lake that already holds rows the log still has (replay skips them by
//! generation): nothing is lost or copied twice. The copied batches leave
//! memory a grace period after the commit, not right away: a query binds
//! the lake and the hot rows one after the other, and one that saw the lake
//! before the commit must still find them. Flushes run on their own thread
//! (`lib.rs`), holding the lake lock the writer takes to create lake tables.
//!
//! Start with [`flush`] and [`compact`].

use pond_engine::lake::{measurement_view_query, Lake, BUFFER_SCHEMA, FLUSHED_TABLE, GEN_COLUMN, RETENTION_TABLE};
use pond_engine::sql::{quote_ident, quote_literal};

use crate::batch::{TIME_COLUMN, WAL_STATE_TABLE};
use crate::hot::{HotStore, HOT_FUNCTION};
use crate::Result;

/// What one flush did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FlushReport {
    pub database: String,
    pub rows: u64,
    pub measurements: usize,
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

/// Names of the measurements of a database (its lake tables).
pub fn measurements(conn: &duckdb::Connection, lake: &Lake) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name NOT IN (?, ?) ORDER BY table_name",
    )?;
    let names = stmt
        .query_map(duckdb::params![lake.catalog, lake.schema, FLUSHED_TABLE, RETENTION_TABLE], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

/// The highest generation the lake records as flushed (0 if none).
pub fn flushed_gen(conn: &duckdb::Connection, lake: &Lake) -> Result<u64> {
    let g: Option<u64> = conn.query_row(&format!("SELECT max(gen) FROM {}", lake.table(FLUSHED_TABLE)), [], |r| r.get(0))?;
    Ok(g.unwrap_or(0))
}

fn columns(conn: &duckdb::Connection, db: &str, schema: &str, table: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? AND table_name = ? ORDER BY column_index",
    )?;
    let cols = stmt
        .query_map(duckdb::params![db, schema, table], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(cols)
}

fn in_transaction<T>(conn: &duckdb::Connection, f: impl FnOnce() -> Result<T>) -> Result<T> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    match f() {
        Ok(v) => {
            conn.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Makes the lake table hold every column of `source` (in order), creating it if needed.
fn widen_lake_table(conn: &duckdb::Connection, lake: &Lake, table: &str, source: &[(String, String)]) -> Result<()> {
    let lake_cols = columns(conn, &lake.catalog, &lake.schema, table)?;
    let lt = lake.table(table);
    if lake_cols.is_empty() {
        conn.execute_batch(&format!(
            "CREATE TABLE {lt} ({time} TIMESTAMP_NS NOT NULL); \
             ALTER TABLE {lt} SET PARTITIONED BY (year({time}), month({time}), day({time}))",
            time = quote_ident(TIME_COLUMN)
        ))?;
    }
    for (name, ty) in source {
        if name == GEN_COLUMN || name == TIME_COLUMN || lake_cols.iter().any(|(n, _)| n == name) {
            continue;
        }
        conn.execute_batch(&format!("ALTER TABLE {lt} ADD COLUMN {} {ty}", quote_ident(name)))?;
    }
    Ok(())
}

/// Copies every hot row of database `db` (file id `db_id`) with a
/// generation in `(flushed, upto]` into the lake and records `upto`, in one
/// lake transaction.
pub fn flush(conn: &duckdb::Connection, store: &HotStore, db: &str, db_id: &str, lake: &Lake, upto: u64) -> Result<FlushReport> {
    let before = flushed_gen(conn, lake)?;
    let mut report = FlushReport { database: db.to_string(), rows: 0, measurements: 0, generation: before };
    if upto <= before {
        return Ok(report);
    }
    let gen_col = quote_ident(GEN_COLUMN);
    let tables = store.tables_of(db_id);
    report.rows = in_transaction(conn, || {
        let mut rows = 0u64;
        for t in &tables {
            widen_lake_table(conn, lake, &t.name, &t.columns())?;
            let n = conn.execute(
                &format!(
                    "INSERT INTO {} BY NAME SELECT * EXCLUDE ({gen_col}) FROM {HOT_FUNCTION}({}, {}) WHERE {gen_col} > {before} AND {gen_col} <= {upto}",
                    lake.table(&t.name),
                    quote_literal(db_id),
                    quote_literal(&t.name)
                ),
                [],
            )?;
            if n > 0 {
                report.measurements += 1;
            }
            rows += n as u64;
        }
        conn.execute_batch(&format!("INSERT INTO {} VALUES ({upto})", lake.table(FLUSHED_TABLE)))?;
        Ok(rows)
    })?;
    report.generation = upto;
    store.mark_flushed(db_id, upto);
    Ok(report)
}

/// Whether database `db` has buffer tables of an older Pond.
pub fn has_buffer_tables(conn: &duckdb::Connection, db: &str) -> Result<bool> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?",
        duckdb::params![db, BUFFER_SCHEMA],
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
            widen_lake_table(conn, lake, t, &columns(conn, db, BUFFER_SCHEMA, t)?)?;
            let max: Option<u64> = conn.query_row(&format!("SELECT max({gen_col}) FROM {buf}"), [], |r| r.get(0))?;
            applied = applied.max(max.unwrap_or(0));
            rows += conn.execute(
                &format!("INSERT INTO {} BY NAME SELECT * EXCLUDE ({gen_col}) FROM {buf} WHERE {gen_col} > {before}", lake.table(t)),
                [],
            )? as u64;
        }
        let upto = applied.max(state.unwrap_or(0));
        if upto > before {
            conn.execute_batch(&format!("INSERT INTO {} VALUES ({upto})", lake.table(FLUSHED_TABLE)))?;
        }
        Ok(rows)
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

/// Data files and their bytes of one lake table.
fn file_stats(conn: &duckdb::Connection, lake: &Lake, table: &str) -> Result<(u64, u64)> {
    let v = conn.query_row(
        &format!(
            "SELECT count(*)::UBIGINT, coalesce(sum(data_file_size_bytes), 0)::UBIGINT FROM ducklake_list_files({}, {}, schema => {})",
            quote_literal(&lake.catalog),
            quote_literal(table),
            quote_literal(&lake.schema)
        ),
        [],
        |r| Ok((r.get::<_, u64>(0)?, r.get::<_, u64>(1)?)),
    )?;
    Ok(v)
}

fn files_of(conn: &duckdb::Connection, lake: &Lake) -> Result<u64> {
    let mut n = 0;
    for t in measurements(conn, lake)? {
        n += file_stats(conn, lake, &t)?.0;
    }
    Ok(n)
}

/// Retention limits of the lake: measurement ('*' for every one) → seconds.
pub fn retention(conn: &duckdb::Connection, lake: &Lake) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare(&format!("SELECT measurement, seconds FROM {} ORDER BY 1", lake.table(RETENTION_TABLE)))?;
    let v = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?.collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Sets (or with `None` removes) the retention of a measurement or, with
/// `measurement` '*', of the whole database. Stored in the lake.
pub fn set_retention(conn: &duckdb::Connection, lake: &Lake, measurement: &str, seconds: Option<i64>) -> Result<()> {
    let t = lake.table(RETENTION_TABLE);
    in_transaction(conn, || {
        conn.execute(&format!("DELETE FROM {t} WHERE measurement = ?"), [measurement])?;
        if let Some(s) = seconds {
            conn.execute(&format!("INSERT INTO {t} VALUES (?, ?)"), duckdb::params![measurement, s])?;
        }
        Ok(())
    })
}

fn limit_for(limits: &[(String, i64)], name: &str) -> Option<i64> {
    limits.iter().find(|(m, _)| m == name).or_else(|| limits.iter().find(|(m, _)| m == "*")).map(|(_, s)| *s)
}

/// Deletes lake rows older than each measurement's retention (compaction
/// flushes first, so the hot rows are in the lake). Returns the rows deleted.
pub fn apply_retention(conn: &duckdb::Connection, lake: &Lake) -> Result<u64> {
    let limits = retention(conn, lake)?;
    if limits.is_empty() {
        return Ok(0);
    }
    let time = quote_ident(TIME_COLUMN);
    let mut deleted = 0u64;
    for t in measurements(conn, lake)? {
        let Some(secs) = limit_for(&limits, &t) else { continue };
        // Computed here in UTC microseconds: `now()::TIMESTAMP` would depend on the time zone.
        let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
        let cutoff = format!("make_timestamp({}::BIGINT)::TIMESTAMP_NS", now_us.saturating_sub(secs.saturating_mul(1_000_000)));
        deleted += conn.execute(&format!("DELETE FROM {} WHERE {time} < {cutoff}", lake.table(&t)), [])? as u64;
    }
    Ok(deleted)
}

/// Retention of `db`, then (for the whole lake: DuckLake's calls work per
/// catalog) merging adjacent small files, expiring old snapshots and
/// deleting the files no snapshot refers to. Each DuckLake call is its own
/// transaction, so a crash at any point leaves a consistent lake (at worst,
/// files the next cleanup deletes).
pub fn compact(conn: &duckdb::Connection, db: &str, lake: &Lake, cleanup_grace_secs: u64) -> Result<CompactReport> {
    let files_before = files_of(conn, lake)?;
    let retention_rows_deleted = apply_retention(conn, lake)?;
    let l = quote_literal(&lake.catalog);
    conn.execute_batch(&format!("CALL ducklake_merge_adjacent_files({l})"))?;
    conn.execute_batch(&format!("CALL ducklake_expire_snapshots({l}, older_than => now())"))?;
    if cleanup_grace_secs == 0 {
        conn.execute_batch(&format!("CALL ducklake_cleanup_old_files({l}, cleanup_all => true)"))?;
    } else {
        conn.execute_batch(&format!("CALL ducklake_cleanup_old_files({l}, older_than => now() - to_seconds({cleanup_grace_secs}))"))?;
    }
    Ok(CompactReport { database: db.to_string(), files_before, files_after: files_of(conn, lake)?, retention_rows_deleted })
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
        let (files, bytes) = file_stats(conn, lake, &name)?;
        out.push(MeasurementInfo {
            database: db.to_string(),
            rows,
            buffered_rows,
            files,
            bytes,
            retention_seconds: limit_for(&limits, &name),
            name,
        });
    }
    Ok(out)
}
