//! Keeping the lake in shape: the bookkeeping tables of a database's lake
//! schema, widening a table with new columns, retention, compaction per
//! measurement, and file statistics.
//!
//! Compaction works one measurement at a time with a bounded number of
//! files per step (`ducklake_merge_adjacent_files(…, table, max_compacted_files
//! => n)`; DuckLake merges only files of the same partition, i.e. the same
//! day), so a caller can interleave flushes between steps and memory stays
//! bounded by one step's files. Each step is its own DuckLake transaction:
//! a crash at any point leaves the old files or the merged one registered,
//! never both (the replaced files are deleted later by `cleanup`).

use crate::{in_transaction, quote_ident, quote_literal, Lake, Result, FLUSHED_TABLE, RETENTION_TABLE, TIME_COLUMN};

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

/// The highest generation the lake records as flushed by this node (0 if none).
pub fn flushed_gen(conn: &duckdb::Connection, lake: &Lake) -> Result<u64> {
    let g: Option<u64> =
        conn.query_row(&format!("SELECT max(gen) FROM {}{}", lake.table(FLUSHED_TABLE), lake.flushed_filter()), [], |r| r.get(0))?;
    Ok(g.unwrap_or(0))
}

/// Records that the lake holds every row of this node up to generation
/// `gen` (inside the flush's transaction).
pub fn record_flushed(conn: &duckdb::Connection, lake: &Lake, gen: u64) -> Result<()> {
    if lake.node.is_empty() {
        conn.execute_batch(&format!("INSERT INTO {} (gen) VALUES ({gen})", lake.table(FLUSHED_TABLE)))?;
    } else {
        conn.execute(&format!("INSERT INTO {} (gen, node) VALUES ({gen}, ?)", lake.table(FLUSHED_TABLE)), [&lake.node])?;
    }
    Ok(())
}

/// The bookkeeping tables of a database's lake schema, created if missing;
/// `_pond_flushed` gains its `node` column ('' for rows of a lone server)
/// when the lake is first shared.
pub fn ensure_bookkeeping(conn: &duckdb::Connection, lake: &Lake) -> Result<()> {
    conn.execute_batch(&format!(
        "CREATE SCHEMA IF NOT EXISTS {c}.{s}; \
         CREATE TABLE IF NOT EXISTS {flushed} (gen UBIGINT NOT NULL, node VARCHAR DEFAULT ''); \
         CREATE TABLE IF NOT EXISTS {retention} (measurement VARCHAR NOT NULL, seconds BIGINT NOT NULL)",
        c = quote_ident(&lake.catalog),
        s = quote_ident(&lake.schema),
        flushed = lake.table(FLUSHED_TABLE),
        retention = lake.table(RETENTION_TABLE),
    ))?;
    if !lake.node.is_empty() && !columns(conn, &lake.catalog, &lake.schema, FLUSHED_TABLE)?.iter().any(|(n, _)| n == "node") {
        conn.execute_batch(&format!("ALTER TABLE {} ADD COLUMN node VARCHAR DEFAULT ''", lake.table(FLUSHED_TABLE)))?;
    }
    if !lake.node.is_empty() && flushed_gen(conn, lake)? == 0 {
        // A lake a lone server wrote (node ''): whichever node continues
        // from that server's data dir must not flush its log again, and a
        // fresh node only numbers its records after it. Both hold if every
        // node starts from the lone server's flushed generation.
        let lone: Option<u64> =
            conn.query_row(&format!("SELECT max(gen) FROM {} WHERE node = ''", lake.table(FLUSHED_TABLE)), [], |r| r.get(0))?;
        if let Some(g) = lone.filter(|g| *g > 0) {
            record_flushed(conn, lake, g)?;
        }
    }
    Ok(())
}

/// Columns (name, DuckDB type) of a table, in order.
pub fn columns(conn: &duckdb::Connection, db: &str, schema: &str, table: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? AND table_name = ? ORDER BY column_index",
    )?;
    let cols = stmt
        .query_map(duckdb::params![db, schema, table], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(cols)
}

/// Creates a measurement's lake table (`time` only, partitioned by day).
pub fn create_table_sql(lake: &Lake, table: &str) -> String {
    let lt = lake.table(table);
    format!(
        "CREATE TABLE IF NOT EXISTS {lt} ({time} TIMESTAMP_NS NOT NULL); \
         ALTER TABLE {lt} SET PARTITIONED BY (year({time}), month({time}), day({time}))",
        time = quote_ident(TIME_COLUMN)
    )
}

/// Makes the lake table hold every column of `source` (in order), creating
/// it if needed; `skip` names columns never stored (the generation).
pub fn widen_table(conn: &duckdb::Connection, lake: &Lake, table: &str, source: &[(String, String)], skip: &str) -> Result<()> {
    let lake_cols = columns(conn, &lake.catalog, &lake.schema, table)?;
    let lt = lake.table(table);
    if lake_cols.is_empty() {
        conn.execute_batch(&create_table_sql(lake, table))?;
    }
    for (name, ty) in source {
        if name == skip || name == TIME_COLUMN || lake_cols.iter().any(|(n, _)| n == name) {
            continue;
        }
        conn.execute_batch(&format!("ALTER TABLE {lt} ADD COLUMN {} {ty}", quote_ident(name)))?;
    }
    Ok(())
}

/// Data files and their bytes of one lake table.
pub fn file_stats(conn: &duckdb::Connection, lake: &Lake, table: &str) -> Result<(u64, u64)> {
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

/// Data files of every measurement of a lake schema.
pub fn files_of(conn: &duckdb::Connection, lake: &Lake) -> Result<u64> {
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

/// The retention of measurement `name` (its own, else the database's '*').
pub fn limit_for(limits: &[(String, i64)], name: &str) -> Option<i64> {
    limits.iter().find(|(m, _)| m == name).or_else(|| limits.iter().find(|(m, _)| m == "*")).map(|(_, s)| *s)
}

/// Deletes rows of `table` older than `seconds`. Returns the rows deleted.
pub fn apply_retention_to(conn: &duckdb::Connection, lake: &Lake, table: &str, seconds: i64) -> Result<u64> {
    // Computed here in UTC microseconds: `now()::TIMESTAMP` would depend on the time zone.
    let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
    let cutoff = format!("make_timestamp({}::BIGINT)::TIMESTAMP_NS", now_us.saturating_sub(seconds.saturating_mul(1_000_000)));
    Ok(conn.execute(&format!("DELETE FROM {} WHERE {} < {cutoff}", lake.table(table), quote_ident(TIME_COLUMN)), [])? as u64)
}

/// One bounded compaction step of one measurement: merges up to
/// `max_files` adjacent small files of the same day into one. Its own
/// DuckLake transaction.
pub fn merge_step(conn: &duckdb::Connection, lake: &Lake, table: &str, max_files: u64) -> Result<()> {
    conn.execute_batch(&format!(
        "CALL ducklake_merge_adjacent_files({}, {}, schema => {}, max_compacted_files => {max_files})",
        quote_literal(&lake.catalog),
        quote_literal(table),
        quote_literal(&lake.schema)
    ))?;
    Ok(())
}

/// Expires snapshots older than `retention_secs` (0: every snapshot but
/// the current one; kept snapshots serve point-in-time reads) and deletes
/// the files no snapshot refers to any more, once they are `grace_secs` old
/// (0: at once). Catalog-wide.
pub fn cleanup(conn: &duckdb::Connection, catalog: &str, grace_secs: u64, retention_secs: u64) -> Result<()> {
    let l = quote_literal(catalog);
    conn.execute_batch(&format!("CALL ducklake_expire_snapshots({l}, older_than => now() - to_seconds({retention_secs}))"))?;
    if grace_secs == 0 {
        conn.execute_batch(&format!("CALL ducklake_cleanup_old_files({l}, cleanup_all => true)"))?;
    } else {
        conn.execute_batch(&format!("CALL ducklake_cleanup_old_files({l}, older_than => now() - to_seconds({grace_secs}))"))?;
    }
    Ok(())
}
