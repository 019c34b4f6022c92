//! Applying batches to DuckDB: measurement buffer tables (created and
//! widened as new tags and fields arrive) with their lake table and the
//! user-facing view, type checks per line, appends through DuckDB's Arrow
//! appender, and the per-database record of the last write-ahead-log
//! sequence applied, committed in the same transaction.
//!
//! A measurement `m` of database `db` is three objects: the buffer table
//! `db._pond_buffer.m` (native DuckDB, every column plus `_pond_gen`, the
//! log sequence that wrote the row), the lake table `<lake>.main.m`
//! (DuckLake, Parquet) and the view `db.main.m` over both (see
//! `pond_engine::lake`). Rows reach the lake by a flush (`lake.rs`).

use std::collections::HashMap;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use arrow_schema::{Field, Schema};
use pond_engine::lake::{measurement_view_query, Lake, BUFFER_SCHEMA, GEN_COLUMN};
use pond_engine::sql::{quote_ident, quote_literal};

use crate::batch::{FinishedTable, Kind, TableBatch, TIME_COLUMN, WAL_STATE_TABLE};
use crate::{Error, LineError, Result};

/// Columns of a table as DuckDB has them: (name, DuckDB type).
#[derive(Debug, Clone)]
pub struct TableShape {
    pub name: String,
    pub columns: Vec<(String, String)>,
}

/// Known buffer table shapes per (database, lower-case table name).
#[derive(Default)]
pub struct ShapeCache {
    tables: HashMap<(String, String), TableShape>,
}

impl ShapeCache {
    pub fn forget_database(&mut self, db: &str) {
        self.tables.retain(|(d, _), _| d != db);
    }
}

/// Looks a measurement's buffer table up in DuckDB (case-insensitive name);
/// its columns include the hidden generation column.
pub fn load_shape(conn: &duckdb::Connection, db: &str, table: &str) -> Result<Option<TableShape>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() \
         WHERE database_name = ? AND schema_name = {} AND lower(table_name) = lower(?) ORDER BY column_index",
        quote_literal(BUFFER_SCHEMA)
    ))?;
    let rows =
        stmt.query_map(duckdb::params![db, table], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    let mut shape: Option<TableShape> = None;
    for row in rows {
        let (t, c, ty) = row?;
        shape.get_or_insert_with(|| TableShape { name: t, columns: Vec::new() }).columns.push((c, ty));
    }
    Ok(shape)
}

/// The last sequence applied to a database (0 if none).
pub fn applied_seq(conn: &duckdb::Connection, db: &str) -> Result<u64> {
    let exists: i64 = conn.query_row(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' AND table_name = ?",
        duckdb::params![db, WAL_STATE_TABLE],
        |r| r.get(0),
    )?;
    if exists == 0 {
        return Ok(0);
    }
    let seq: Option<u64> = conn.query_row(&format!("SELECT max(seq) FROM {}.main.{WAL_STATE_TABLE}", quote_ident(db)), [], |r| r.get(0))?;
    Ok(seq.unwrap_or(0))
}

fn qualified(db: &str, table: &str) -> String {
    format!("{}.main.{}", quote_ident(db), quote_ident(table))
}

fn buffer_table(db: &str, table: &str) -> String {
    format!("{}.{}.{}", quote_ident(db), quote_ident(BUFFER_SCHEMA), quote_ident(table))
}

/// Whether `db.main` has a table or view of this name (case-insensitive).
fn main_object_exists(conn: &duckdb::Connection, db: &str, name: &str) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = $1 AND schema_name = 'main' AND lower(table_name) = lower($2) \
         UNION ALL SELECT view_name FROM duckdb_views() WHERE database_name = $1 AND schema_name = 'main' AND lower(view_name) = lower($2)",
    )?;
    let mut rows = stmt.query(duckdb::params![db, name])?;
    Ok(match rows.next()? {
        Some(r) => Some(r.get(0)?),
        None => None,
    })
}

/// Creates the lake table of each new measurement (returns whether it did) (DuckLake commits on its
/// own; a transaction cannot write two databases), partitioned by day.
/// A lake table without buffer (a crash right after) is harmless: the next
/// write finds it.
fn prepare_lake_tables(
    conn: &duckdb::Connection,
    cache: &ShapeCache,
    db: &str,
    lake: &Lake,
    jobs: &[(Vec<TableBatch>, &[u8])],
) -> Result<bool> {
    let mut created = false;
    for (tables, _) in jobs {
        for t in tables {
            let key = (db.to_string(), t.measurement.to_ascii_lowercase());
            if t.rows() == 0 || cache.tables.contains_key(&key) || load_shape(conn, db, &t.measurement)?.is_some() {
                continue;
            }
            if let Some(existing) = main_object_exists(conn, db, &t.measurement)? {
                return Err(Error::InvalidRequest(format!(
                    "table {db}.main.{existing} exists and is not a measurement; line protocol cannot write to it (use another measurement name)"
                )));
            }
            if t.measurement.to_ascii_lowercase().starts_with("_pond_") {
                return Err(Error::InvalidRequest(format!(
                    "measurement name '{}' is reserved (names starting with _pond_)",
                    t.measurement
                )));
            }
            let lake_t = lake.table(&t.measurement);
            let exists: i64 = conn.query_row(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
                duckdb::params![lake.catalog, lake.schema, t.measurement],
                |r| r.get(0),
            )?;
            if exists == 0 {
                // Only `time` for now: the flush adds the other columns (the view
                // unions by name, so a column the lake lacks reads as the buffer's).
                conn.execute_batch(&format!(
                    "BEGIN; CREATE TABLE {lake_t} ({time} TIMESTAMP_NS NOT NULL); \
                     ALTER TABLE {lake_t} SET PARTITIONED BY (year({time}), month({time}), day({time})); COMMIT",
                    time = quote_ident(TIME_COLUMN)
                ))
                .inspect_err(|_| {
                    let _ = conn.execute_batch("ROLLBACK");
                })?;
                created = true;
            }
        }
    }
    Ok(created)
}

/// What [`apply`] did: the rejected lines of each request, and whether a
/// table, view or column was created (the engine's catalog caches go stale).
pub struct Applied {
    pub errors: Vec<Vec<LineError>>,
    pub ddl: bool,
}

/// Applies the tables of one or more requests to `db` in one transaction and
/// records `seq` as applied. Returns the rejected lines of each request.
/// Each job is its tables and the text their line ranges point into.
/// Rows are stamped with generation `seq`; `lake` is the database's lake schema.
///
/// The rows of one measurement from every request of the group go to DuckDB
/// as one concatenated batch through one appender: an appender per request
/// and table costs a catalog lookup and a flush into the transaction's local
/// storage each, and 1,000-row requests would leave every 2,048-row vector
/// half empty.
pub fn apply(
    conn: &duckdb::Connection,
    cache: &mut ShapeCache,
    db: &str,
    lake: &Lake,
    jobs: Vec<(Vec<TableBatch>, &[u8])>,
    seq: u64,
) -> Result<Applied> {
    let mut ddl = prepare_lake_tables(conn, cache, db, lake, &jobs)?;
    conn.execute_batch("BEGIN TRANSACTION")?;
    let r = (|| -> Result<Vec<Vec<LineError>>> {
        let mut out = Vec::with_capacity(jobs.len());
        // Buffer table name → its batches in this group, in arrival order.
        let mut pending: Vec<(String, Vec<RecordBatch>)> = Vec::new();
        for (tables, text) in jobs {
            let mut errors = Vec::new();
            for t in tables {
                if t.rows() == 0 {
                    continue;
                }
                let (table, batch, created) = apply_table(conn, cache, db, lake, t.finish(), text, seq, &mut errors)?;
                ddl |= created;
                if batch.num_rows() == 0 {
                    continue;
                }
                match pending.iter_mut().find(|(n, _)| *n == table) {
                    Some((_, v)) => v.push(batch),
                    None => pending.push((table, vec![batch])),
                }
            }
            out.push(errors);
        }
        for (table, batches) in pending {
            append(conn, cache, db, &table, batches)?;
        }
        let state = qualified(db, WAL_STATE_TABLE);
        let have = cache.tables.contains_key(&(db.to_string(), WAL_STATE_TABLE.to_string()));
        if !have {
            conn.execute_batch(&format!("CREATE TABLE IF NOT EXISTS {state} (seq UBIGINT NOT NULL)"))?;
            cache.tables.insert(
                (db.to_string(), WAL_STATE_TABLE.to_string()),
                TableShape { name: WAL_STATE_TABLE.into(), columns: vec![("seq".into(), "UBIGINT".into())] },
            );
        }
        let mut stmt = conn.prepare_cached(&format!("UPDATE {state} SET seq = ?"))?;
        if stmt.execute([seq])? != 1 {
            conn.execute_batch(&format!("DELETE FROM {state}; INSERT INTO {state} VALUES ({seq})"))?;
        }
        Ok(out)
    })();
    match r {
        Ok(errors) => {
            conn.execute_batch("COMMIT")?;
            Ok(Applied { errors, ddl })
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            cache.forget_database(db);
            Err(e)
        }
    }
}

/// Appends the batches of one buffer table in one go. Batches from before a
/// column was added in this group lack it (new columns come last): it is
/// filled with NULLs.
fn append(conn: &duckdb::Connection, cache: &ShapeCache, db: &str, table: &str, batches: Vec<RecordBatch>) -> Result<()> {
    let shape =
        cache.tables.get(&(db.to_string(), table.to_ascii_lowercase())).ok_or_else(|| Error::Internal("table shape missing".into()))?;
    let Some(last) = batches.last() else { return Ok(()) };
    let schema = last.schema();
    if schema.fields().len() != shape.columns.len() {
        return Err(Error::Internal(format!(
            "buffer batch of {table} has {} columns, the table {}",
            schema.fields().len(),
            shape.columns.len()
        )));
    }
    let mut full = Vec::with_capacity(batches.len());
    for b in batches {
        if b.num_columns() == schema.fields().len() {
            full.push(b);
            continue;
        }
        let n = b.num_rows();
        let mut cols = b.columns().to_vec();
        for f in &schema.fields()[cols.len()..] {
            cols.push(arrow_array::new_null_array(f.data_type(), n));
        }
        full.push(RecordBatch::try_new(schema.clone(), cols)?);
    }
    let batch = if full.len() == 1 {
        full.pop().unwrap_or_else(|| RecordBatch::new_empty(schema.clone()))
    } else {
        arrow_select::concat::concat_batches(&schema, &full)?
    };
    let mut appender = conn.appender_to_catalog_and_db(&shape.name, db, BUFFER_SCHEMA)?;
    appender.append_record_batch(batch)?;
    appender.flush()?;
    Ok(())
}

/// Checks one request's rows of one measurement against its buffer table
/// (creating or widening it) and returns the table's name, the rows to
/// append in the table's column order, and whether a table or column was
/// created.
#[allow(clippy::too_many_arguments)]
fn apply_table(
    conn: &duckdb::Connection,
    cache: &mut ShapeCache,
    db: &str,
    lake: &Lake,
    t: FinishedTable,
    text: &[u8],
    seq: u64,
    errors: &mut Vec<LineError>,
) -> Result<(String, RecordBatch, bool)> {
    let key = (db.to_string(), t.measurement.to_ascii_lowercase());
    let mut ddl = false;
    if !cache.tables.contains_key(&key) {
        let shape = match load_shape(conn, db, &t.measurement)? {
            Some(s) => s,
            None => {
                let mut cols = vec![format!("{} TIMESTAMP_NS NOT NULL", quote_ident(TIME_COLUMN))];
                let fresh: Vec<&(String, Kind)> = t.columns.iter().filter(|(n, _)| !n.eq_ignore_ascii_case(GEN_COLUMN)).collect();
                cols.extend(fresh.iter().map(|(n, k)| format!("{} {}", quote_ident(n), k.duckdb_type())));
                cols.push(format!("{} UBIGINT NOT NULL", quote_ident(GEN_COLUMN)));
                conn.execute_batch(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {}.{}; CREATE TABLE {} ({}); CREATE VIEW {} AS {}",
                    quote_ident(db),
                    quote_ident(BUFFER_SCHEMA),
                    buffer_table(db, &t.measurement),
                    cols.join(", "),
                    qualified(db, &t.measurement),
                    measurement_view_query(lake, &t.measurement)
                ))?;
                ddl = true;
                let mut columns = vec![(TIME_COLUMN.to_string(), "TIMESTAMP_NS".to_string())];
                columns.extend(fresh.iter().map(|(n, k)| (n.clone(), k.duckdb_type().to_string())));
                columns.push((GEN_COLUMN.to_string(), "UBIGINT".to_string()));
                TableShape { name: t.measurement.clone(), columns }
            }
        };
        cache.tables.insert(key.clone(), shape);
    }
    let shape = cache.tables.get_mut(&key).ok_or_else(|| Error::Internal("table shape missing".into()))?;
    if !shape.columns.first().is_some_and(|(n, ty)| n.eq_ignore_ascii_case(TIME_COLUMN) && ty == "TIMESTAMP_NS") {
        return Err(Error::InvalidRequest(format!(
            "table {db}.main.{} exists but its first column is not 'time TIMESTAMP_NS'; line protocol cannot write to it",
            shape.name
        )));
    }
    // Batch column index → table column index; conflicting columns reject rows.
    let n = t.batch.num_rows();
    let mut rejected = vec![false; n];
    let mut reasons: Vec<Option<String>> = vec![None; n];
    let mut placement: Vec<Option<usize>> = Vec::with_capacity(t.columns.len());
    for (bi, (name, kind)) in t.columns.iter().enumerate() {
        let col = t.batch.column(bi + 1);
        let found = shape.columns.iter().position(|(c, _)| c.eq_ignore_ascii_case(name));
        if name.eq_ignore_ascii_case(GEN_COLUMN) {
            let why = format!("column name '{name}' is reserved by Pond");
            for (row, r) in rejected.iter_mut().enumerate() {
                if col.is_valid(row) {
                    *r = true;
                    reasons[row].get_or_insert_with(|| why.clone());
                }
            }
            placement.push(None);
            continue;
        }
        match found {
            Some(ti) => {
                let (tname, ty) = &shape.columns[ti];
                let widen = t.ints_to_double && ty == "DOUBLE" && matches!(kind, Kind::Integer | Kind::UInteger) && tname == name;
                if widen {
                    placement.push(Some(ti));
                } else if tname != name || !compatible(*kind, ty) {
                    let why = if tname != name {
                        format!("column '{name}' conflicts with existing column '{tname}' (names are case-insensitive)")
                    } else {
                        format!("{} '{name}' has type {} but column {}.{tname} is {ty}", kind_word(*kind), kind.duckdb_type(), shape.name)
                    };
                    for (row, r) in rejected.iter_mut().enumerate() {
                        if col.is_valid(row) {
                            *r = true;
                            reasons[row].get_or_insert_with(|| why.clone());
                        }
                    }
                    placement.push(None);
                } else {
                    placement.push(Some(ti));
                }
            }
            None => {
                conn.execute_batch(&format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    buffer_table(db, &shape.name),
                    quote_ident(name),
                    kind.duckdb_type()
                ))?;
                ddl = true;
                shape.columns.push((name.clone(), kind.duckdb_type().to_string()));
                placement.push(Some(shape.columns.len() - 1));
            }
        }
    }
    let mut batch_cols: Vec<Option<ArrayRef>> = vec![None; shape.columns.len()];
    batch_cols[0] = Some(t.batch.column(0).clone());
    if let Some(gi) = shape.columns.iter().position(|(c, _)| c == GEN_COLUMN) {
        batch_cols[gi] = Some(std::sync::Arc::new(UInt64Array::from(vec![seq; n])));
    }
    for (bi, p) in placement.iter().enumerate() {
        if let Some(ti) = p {
            let col = t.batch.column(bi + 1);
            batch_cols[*ti] = Some(if shape.columns[*ti].1 == "DOUBLE" && col.data_type() != &arrow_schema::DataType::Float64 {
                arrow::compute::cast(col, &arrow_schema::DataType::Float64)?
            } else {
                col.clone()
            });
        }
    }
    let fields: Vec<Field> = shape
        .columns
        .iter()
        .enumerate()
        .map(|(i, (name, ty))| {
            let dt = batch_cols[i].as_ref().map(|c| c.data_type().clone()).unwrap_or_else(|| duck_to_arrow(ty));
            Field::new(name, dt, i != 0)
        })
        .collect();
    let arrays: Vec<ArrayRef> =
        batch_cols.into_iter().zip(&fields).map(|(c, f)| c.unwrap_or_else(|| arrow_array::new_null_array(f.data_type(), n))).collect();
    let mut batch = RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), arrays)?;
    if rejected.iter().any(|r| *r) {
        for (row, r) in rejected.iter().enumerate() {
            if *r {
                let (line_number, start, end) = t.lines[row];
                let original_line = String::from_utf8_lossy(text.get(start as usize..end as usize).unwrap_or_default()).into_owned();
                errors.push(LineError { line_number, original_line, error_message: reasons[row].clone().unwrap_or_default() });
            }
        }
        let keep = BooleanArray::from(rejected.iter().map(|r| !r).collect::<Vec<_>>());
        batch = arrow_select::filter::filter_record_batch(&batch, &keep)?;
    }
    Ok((shape.name.clone(), batch, ddl))
}

fn kind_word(k: Kind) -> &'static str {
    if k == Kind::Tag {
        "tag"
    } else {
        "field"
    }
}

fn compatible(kind: Kind, duck: &str) -> bool {
    kind.duckdb_type() == duck
}

fn duck_to_arrow(ty: &str) -> arrow_schema::DataType {
    use arrow_schema::DataType as D;
    match ty {
        "DOUBLE" => D::Float64,
        "BIGINT" => D::Int64,
        "UBIGINT" => D::UInt64,
        "BOOLEAN" => D::Boolean,
        "INTEGER" => D::Int32,
        "TIMESTAMP_NS" => D::Timestamp(arrow_schema::TimeUnit::Nanosecond, None),
        _ => D::Utf8,
    }
}
