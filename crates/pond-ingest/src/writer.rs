//! Applying batches to DuckDB: measurement tables (created and widened as
//! new tags and fields arrive), type checks per line, appends through
//! DuckDB's Arrow appender, and the per-database record of the last
//! write-ahead-log sequence applied, committed in the same transaction.

use std::collections::HashMap;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{Field, Schema};
use pond_engine::sql::quote_ident;

use crate::batch::{FinishedTable, Kind, TableBatch, TIME_COLUMN, WAL_STATE_TABLE};
use crate::{Error, LineError, Result};

/// Columns of a table as DuckDB has them: (name, DuckDB type).
#[derive(Debug, Clone)]
pub struct TableShape {
    pub name: String,
    pub columns: Vec<(String, String)>,
}

/// Known table shapes per (database, lower-case table name).
#[derive(Default)]
pub struct ShapeCache {
    tables: HashMap<(String, String), TableShape>,
}

impl ShapeCache {
    pub fn forget_database(&mut self, db: &str) {
        self.tables.retain(|(d, _), _| d != db);
    }
}

/// Looks a table up in DuckDB (case-insensitive name, schema `main`).
pub fn load_shape(conn: &duckdb::Connection, db: &str, table: &str) -> Result<Option<TableShape>> {
    let mut stmt = conn.prepare_cached(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() \
         WHERE database_name = ? AND schema_name = 'main' AND lower(table_name) = lower(?) ORDER BY column_index",
    )?;
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

/// Applies the tables of one or more requests to `db` in one transaction and
/// records `seq` as applied. Returns the rejected lines of each request.
/// Each job is its tables and the text their line ranges point into.
pub fn apply(
    conn: &duckdb::Connection,
    cache: &mut ShapeCache,
    db: &str,
    jobs: Vec<(Vec<TableBatch>, &[u8])>,
    seq: u64,
) -> Result<Vec<Vec<LineError>>> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    let r = (|| -> Result<Vec<Vec<LineError>>> {
        let mut out = Vec::with_capacity(jobs.len());
        for (tables, text) in jobs {
            let mut errors = Vec::new();
            for t in tables {
                if t.rows() == 0 {
                    continue;
                }
                apply_table(conn, cache, db, t.finish(), text, &mut errors)?;
            }
            out.push(errors);
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
        conn.execute_batch(&format!("DELETE FROM {state}; INSERT INTO {state} VALUES ({seq})"))?;
        Ok(out)
    })();
    match r {
        Ok(v) => {
            conn.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            cache.forget_database(db);
            Err(e)
        }
    }
}

/// Returns whether a table or column was created.
fn apply_table(
    conn: &duckdb::Connection,
    cache: &mut ShapeCache,
    db: &str,
    t: FinishedTable,
    text: &[u8],
    errors: &mut Vec<LineError>,
) -> Result<bool> {
    let key = (db.to_string(), t.measurement.to_ascii_lowercase());
    let mut ddl = false;
    if !cache.tables.contains_key(&key) {
        let shape = match load_shape(conn, db, &t.measurement)? {
            Some(s) => s,
            None => {
                let mut cols = vec![format!("{} TIMESTAMP_NS NOT NULL", quote_ident(TIME_COLUMN))];
                cols.extend(t.columns.iter().map(|(n, k)| format!("{} {}", quote_ident(n), k.duckdb_type())));
                conn.execute_batch(&format!("CREATE TABLE {} ({})", qualified(db, &t.measurement), cols.join(", ")))?;
                ddl = true;
                let mut columns = vec![(TIME_COLUMN.to_string(), "TIMESTAMP_NS".to_string())];
                columns.extend(t.columns.iter().map(|(n, k)| (n.clone(), k.duckdb_type().to_string())));
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
        match found {
            Some(ti) => {
                let (tname, ty) = &shape.columns[ti];
                if tname != name || !compatible(*kind, ty) {
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
                    qualified(db, &shape.name),
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
    for (bi, p) in placement.iter().enumerate() {
        if let Some(ti) = p {
            batch_cols[*ti] = Some(t.batch.column(bi + 1).clone());
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
    if batch.num_rows() > 0 {
        let mut appender = conn.appender_to_catalog_and_db(&shape.name, db, "main")?;
        appender.append_record_batch(batch)?;
        appender.flush()?;
    }
    Ok(ddl)
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
