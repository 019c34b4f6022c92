//! Applying parsed batches: type checks per line against the measurement's
//! columns, creating a new measurement (its lake table and the user-facing
//! view), widening it with new tags and fields, and handing the rows to the
//! hot store (`hot.rs`).
//!
//! A measurement `m` of database `db` is two DuckDB objects and one in
//! memory: the lake table `<lake>.<db id>.m` (DuckLake, Parquet), the hot
//! rows (`pond_hot('<db id>', 'm')`) and the view `db.main.m` over both (see
//! `pond_engine::lake`). Rows reach the lake by a flush (`lake.rs`).

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{Field, Schema};
use pond_engine::lake::{measurement_view_query, Lake, GEN_COLUMN};
use pond_engine::sql::quote_ident;

use crate::batch::{FinishedTable, Kind, TableBatch, TIME_COLUMN};
use crate::hot::{arrow_type, HotStore, HotTable};
use crate::{Error, LineError, Result};

/// A lake table's stored name and its columns (name, DuckDB type).
pub type LakeShape = (String, Vec<(String, String)>);

/// A measurement's lake table columns (name, DuckDB type), if it exists
/// (case-insensitive name); returns the stored name too.
pub fn lake_shape(conn: &duckdb::Connection, lake: &Lake, table: &str) -> Result<Option<LakeShape>> {
    let mut stmt = conn.prepare_cached(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() \
         WHERE database_name = ? AND schema_name = ? AND lower(table_name) = lower(?) ORDER BY column_index",
    )?;
    let rows = stmt.query_map(duckdb::params![lake.catalog, lake.schema, table], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
    })?;
    let mut shape: Option<LakeShape> = None;
    for row in rows {
        let (t, c, ty) = row?;
        shape.get_or_insert_with(|| (t, Vec::new())).1.push((c, ty));
    }
    Ok(shape)
}

fn qualified(db: &str, table: &str) -> String {
    format!("{}.main.{}", quote_ident(db), quote_ident(table))
}

/// Whether `db.main` has a table or view of this name (case-insensitive); its stored name.
pub fn main_object_exists(conn: &duckdb::Connection, db: &str, name: &str) -> Result<Option<String>> {
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

/// The hot table of a measurement: known in memory, or loaded from its lake
/// table (after a restart), or created with its lake table and view. Returns
/// whether DuckDB objects were created.
#[allow(clippy::too_many_arguments)]
fn measurement(
    conn: &duckdb::Connection,
    store: &HotStore,
    db: &str,
    db_id: &str,
    lake: &Lake,
    t: &FinishedTable,
    lake_lock: &parking_lot::Mutex<()>,
) -> Result<(Arc<HotTable>, bool)> {
    if let Some(h) = store.table(db_id, &t.measurement) {
        return Ok((h, false));
    }
    let flushed = crate::lake::flushed_gen(conn, lake)?;
    if let Some((name, cols)) = lake_shape(conn, lake, &t.measurement)? {
        // Another node sharing the lake may have made it: this node's view may not exist yet.
        let mut created = false;
        if !lake.node.is_empty() && main_object_exists(conn, db, &name)?.is_none() {
            conn.execute_batch(&format!("CREATE OR REPLACE VIEW {} AS {}", qualified(db, &name), measurement_view_query(lake, &name)))?;
            created = true;
        }
        return Ok((store.get_or_create(db_id, &name, cols, flushed), created));
    }
    if let Some(existing) = main_object_exists(conn, db, &t.measurement)? {
        return Err(Error::InvalidRequest(format!(
            "table {db}.main.{existing} exists and is not a measurement; line protocol cannot write to it (use another measurement name)"
        )));
    }
    if t.measurement.to_ascii_lowercase().starts_with("_pond_") {
        return Err(Error::InvalidRequest(format!("measurement name '{}' is reserved (names starting with _pond_)", t.measurement)));
    }
    // The lake table starts with `time` only: a flush adds the other columns
    // (the view unions by name, so a column the lake lacks reads as the hot rows').
    // Another node sharing the lake may create it at the same moment: its
    // commit wins, ours conflicts and the retry finds the table.
    let lake_t = lake.table(&t.measurement);
    {
        let _g = lake_lock.lock();
        let made_elsewhere = pond_lake::retry_conflicts(|| {
            if let Some((name, cols)) = lake_shape(conn, lake, &t.measurement)? {
                return Ok::<_, Error>(Some((name, cols)));
            }
            conn.execute_batch(&format!(
                "BEGIN; CREATE TABLE IF NOT EXISTS {lake_t} ({time} TIMESTAMP_NS NOT NULL); \
                 ALTER TABLE {lake_t} SET PARTITIONED BY (year({time}), month({time}), day({time})); COMMIT",
                time = quote_ident(TIME_COLUMN)
            ))
            .inspect_err(|_| {
                let _ = conn.execute_batch("ROLLBACK");
            })?;
            Ok(None)
        })?;
        if let Some((name, cols)) = made_elsewhere {
            if main_object_exists(conn, db, &name)?.is_none() {
                conn.execute_batch(&format!("CREATE OR REPLACE VIEW {} AS {}", qualified(db, &name), measurement_view_query(lake, &name)))?;
            }
            return Ok((store.get_or_create(db_id, &name, cols, flushed), true));
        }
    }
    conn.execute_batch(&format!(
        "CREATE OR REPLACE VIEW {} AS {}",
        qualified(db, &t.measurement),
        measurement_view_query(lake, &t.measurement)
    ))?;
    let cols = vec![(TIME_COLUMN.to_string(), "TIMESTAMP_NS".to_string())];
    Ok((store.get_or_create(db_id, &t.measurement, cols, flushed), true))
}

/// What [`apply`] did: the rejected lines of each request, and whether a
/// table, view or column was created (the engine's catalog caches go stale).
pub struct Applied {
    pub errors: Vec<Vec<LineError>>,
    pub ddl: bool,
}

/// Where a database's rows go: its name, file id, lake part, and the lock
/// lake DDL takes against flushes.
pub struct Target<'a> {
    pub db: &'a str,
    pub db_id: &'a str,
    pub lake: &'a Lake,
    pub lake_lock: &'a parking_lot::Mutex<()>,
    /// Other nodes write to the same lake: new columns go into the lake
    /// table before the write is acknowledged ([`share_new_columns`]).
    pub shared_lake: bool,
}

/// On a node sharing the lake, the catalog decides each column's type: the
/// columns of `t` this node does not know are looked up in the lake table
/// (another node may have added them, with its type) and the ones it lacks
/// are added there, in one DuckLake transaction retried on conflict, before
/// any row is accepted. Two nodes adding the same field with different
/// types then get one type, and the other's lines are rejected as type
/// conflicts instead of breaking a later flush. Returns whether the hot
/// table gained columns.
fn share_new_columns(
    conn: &duckdb::Connection,
    lake: &Lake,
    hot: &HotTable,
    t: &FinishedTable,
    lake_lock: &parking_lot::Mutex<()>,
) -> Result<bool> {
    let known = hot.columns();
    let unknown: Vec<&(String, Kind)> = t
        .columns
        .iter()
        .filter(|(n, _)| !known.iter().any(|(k, _)| k.eq_ignore_ascii_case(n)) && !n.eq_ignore_ascii_case(GEN_COLUMN))
        .collect();
    if unknown.is_empty() {
        return Ok(false);
    }
    let _g = lake_lock.lock();
    let lake_t = lake.table(&hot.name);
    let shape = pond_lake::retry_conflicts(|| {
        let cols = lake_shape(conn, lake, &hot.name)?.map(|(_, c)| c).unwrap_or_default();
        let missing: Vec<&&(String, Kind)> = unknown.iter().filter(|(n, _)| !cols.iter().any(|(c, _)| c.eq_ignore_ascii_case(n))).collect();
        if missing.is_empty() {
            return Ok::<_, Error>(cols);
        }
        let mut sql = String::from("BEGIN;");
        for (name, kind) in missing {
            sql.push_str(&format!(" ALTER TABLE {lake_t} ADD COLUMN {} {};", quote_ident(name), kind.duckdb_type()));
        }
        sql.push_str(" COMMIT");
        conn.execute_batch(&sql).inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
        Ok(lake_shape(conn, lake, &hot.name)?.map(|(_, c)| c).unwrap_or_default())
    })?;
    let mut added = false;
    for (name, ty) in shape {
        if !known.iter().any(|(k, _)| k.eq_ignore_ascii_case(&name)) {
            hot.add_column(&name, &ty);
            added = true;
        }
    }
    Ok(added)
}

/// Checks the tables of one or more requests and hands their rows to the hot
/// store with generation `seq`. Returns the rejected lines of each request.
/// Each job is its tables and the text their line ranges point into.
pub fn apply(
    conn: &duckdb::Connection,
    store: &HotStore,
    target: &Target,
    jobs: Vec<(Vec<TableBatch>, &[u8])>,
    seq: u64,
) -> Result<Applied> {
    let mut ddl = false;
    let mut out = Vec::with_capacity(jobs.len());
    let mut ready: Vec<(Arc<HotTable>, RecordBatch)> = Vec::new();
    for (tables, text) in jobs {
        let mut errors = Vec::new();
        for t in tables {
            if t.rows() == 0 {
                continue;
            }
            let t = t.finish();
            let (hot, created) = measurement(conn, store, target.db, target.db_id, target.lake, &t, target.lake_lock)?;
            let shared = target.shared_lake && share_new_columns(conn, target.lake, &hot, &t, target.lake_lock)?;
            let (batch, widened) = apply_table(&hot, target.db, t, text, &mut errors)?;
            ddl |= created || widened || shared;
            if batch.num_rows() > 0 {
                ready.push((hot, batch));
            }
        }
        out.push(errors);
    }
    // One batch per measurement and group: scans and flushes then work on
    // full DuckDB vectors instead of one small batch per request.
    let mut by_table: Vec<(Arc<HotTable>, Vec<RecordBatch>)> = Vec::new();
    for (hot, batch) in ready {
        match by_table.iter_mut().find(|(h, _)| Arc::ptr_eq(h, &hot)) {
            Some((_, v)) => v.push(batch),
            None => by_table.push((hot, vec![batch])),
        }
    }
    for (hot, batches) in by_table {
        for b in coalesce(batches) {
            store.push(&hot, seq, b);
        }
    }
    Ok(Applied { errors: out, ddl })
}

/// Concatenates one table's batches of a group. A batch from before a column
/// was added in this group lacks it (new columns come last): it gets NULLs.
/// Batches that cannot be made alike stay separate.
fn coalesce(mut batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
    if batches.len() < 2 {
        return batches;
    }
    let schema = match batches.iter().max_by_key(|b| b.num_columns()) {
        Some(b) => b.schema(),
        None => return batches,
    };
    let mut full = Vec::with_capacity(batches.len());
    for b in &batches {
        if b.schema() == schema {
            full.push(b.clone());
            continue;
        }
        let fields = schema.fields();
        let same_prefix = b.schema().fields().iter().zip(fields.iter()).all(|(x, y)| x == y);
        if !same_prefix {
            return batches;
        }
        let mut cols = b.columns().to_vec();
        for f in &fields[cols.len()..] {
            cols.push(arrow_array::new_null_array(f.data_type(), b.num_rows()));
        }
        match RecordBatch::try_new(schema.clone(), cols) {
            Ok(x) => full.push(x),
            Err(_) => return batches,
        }
    }
    match arrow_select::concat::concat_batches(&schema, &full) {
        Ok(one) => vec![one],
        Err(_) => std::mem::take(&mut batches),
    }
}

/// Checks one request's rows of one measurement against its columns
/// (adding new ones) and returns the rows to keep in the table's column
/// order, and whether a column was added.
fn apply_table(hot: &HotTable, db: &str, t: FinishedTable, text: &[u8], errors: &mut Vec<LineError>) -> Result<(RecordBatch, bool)> {
    let mut widened = false;
    let mut columns = hot.columns();
    if !columns.first().is_some_and(|(n, ty)| n.eq_ignore_ascii_case(TIME_COLUMN) && ty == "TIMESTAMP_NS") {
        return Err(Error::InvalidRequest(format!(
            "table {db}.main.{} exists but its first column is not 'time TIMESTAMP_NS'; line protocol cannot write to it",
            hot.name
        )));
    }
    // Batch column index → table column index; conflicting columns reject rows.
    let n = t.batch.num_rows();
    let mut rejected = vec![false; n];
    let mut reasons: Vec<Option<String>> = vec![None; n];
    let mut placement: Vec<Option<usize>> = Vec::with_capacity(t.columns.len());
    for (bi, (name, kind)) in t.columns.iter().enumerate() {
        let col = t.batch.column(bi + 1);
        let found = columns.iter().position(|(c, _)| c.eq_ignore_ascii_case(name));
        let why = if name.eq_ignore_ascii_case(GEN_COLUMN) {
            Some(format!("column name '{name}' is reserved by Pond"))
        } else {
            match found {
                Some(ti) => {
                    let (tname, ty) = &columns[ti];
                    let widen = t.ints_to_double && ty == "DOUBLE" && matches!(kind, Kind::Integer | Kind::UInteger) && tname == name;
                    if widen || (tname == name && compatible(*kind, ty)) {
                        placement.push(Some(ti));
                        None
                    } else if tname != name {
                        Some(format!("column '{name}' conflicts with existing column '{tname}' (names are case-insensitive)"))
                    } else {
                        Some(format!(
                            "{} '{name}' has type {} but column {}.{tname} is {ty}",
                            kind_word(*kind),
                            kind.duckdb_type(),
                            hot.name
                        ))
                    }
                }
                None => {
                    hot.add_column(name, kind.duckdb_type());
                    columns.push((name.clone(), kind.duckdb_type().to_string()));
                    widened = true;
                    placement.push(Some(columns.len() - 1));
                    None
                }
            }
        };
        if let Some(why) = why {
            for (row, r) in rejected.iter_mut().enumerate() {
                if col.is_valid(row) {
                    *r = true;
                    reasons[row].get_or_insert_with(|| why.clone());
                }
            }
            placement.push(None);
        }
    }
    let mut batch_cols: Vec<Option<ArrayRef>> = vec![None; columns.len()];
    batch_cols[0] = Some(t.batch.column(0).clone());
    for (bi, p) in placement.iter().enumerate() {
        if let Some(ti) = p {
            let col = t.batch.column(bi + 1);
            batch_cols[*ti] = Some(if columns[*ti].1 == "DOUBLE" && col.data_type() != &arrow_schema::DataType::Float64 {
                arrow::compute::cast(col, &arrow_schema::DataType::Float64)?
            } else {
                col.clone()
            });
        }
    }
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, (name, ty))| {
            let dt = batch_cols[i].as_ref().map(|c| c.data_type().clone()).unwrap_or_else(|| arrow_type(ty));
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
    Ok((batch, widened))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use arrow_array::{Float64Array, StringArray};

    #[test]
    fn a_groups_batches_become_one_with_nulls_for_columns_added_later() {
        let f = |n: &str| Field::new(n, arrow_schema::DataType::Float64, true);
        let narrow = RecordBatch::try_new(Arc::new(Schema::new(vec![f("a")])), vec![Arc::new(Float64Array::from(vec![1.0, 2.0]))]).unwrap();
        let wide = RecordBatch::try_new(
            Arc::new(Schema::new(vec![f("a"), f("b")])),
            vec![Arc::new(Float64Array::from(vec![3.0])), Arc::new(Float64Array::from(vec![9.0]))],
        )
        .unwrap();
        let out = coalesce(vec![narrow.clone(), wide]);
        assert_eq!(out.len(), 1);
        let b = &out[0];
        assert_eq!(b.num_rows(), 3);
        let col_b = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
        assert!(col_b.is_null(0) && col_b.is_null(1) && col_b.value(2) == 9.0);
        // Unlike columns stay apart rather than being forced together.
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("a", arrow_schema::DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(vec!["x"]))],
        )
        .unwrap();
        assert_eq!(coalesce(vec![narrow, other]).len(), 2);
    }
}
