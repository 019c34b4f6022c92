//! Point-in-time reads of measurements: `FROM cpu AT (TIMESTAMP => '…')`
//! or `AT (VERSION => n)`.
//!
//! A measurement is a view (lake rows plus hot rows), and DuckDB has no time
//! travel for views; its lake table is a DuckLake table, which has. After
//! the statement was authorized as written, every table reference with an
//! `AT` clause that names a measurement is pointed at the measurement's lake
//! table, keeping the clause (and the name as alias, so `cpu.host` still
//! resolves). The answer is the lake as it was at that moment: rows written
//! then but still in memory, not yet flushed, are not in it (the flush
//! interval bounds how far behind that is). How far back works depends on
//! how long snapshots are kept (`--lake-snapshot-retention-secs`).

use serde_json::Value;

use crate::lake::LAKE_ALIAS;
use crate::{Engine, Error, Result};

/// Whether `sql` may hold an `AT (` clause (a cheap test before parsing).
pub(crate) fn mentions_at(sql: &str) -> bool {
    let b = sql.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i].eq_ignore_ascii_case(&b'a')
            && b[i + 1].eq_ignore_ascii_case(&b't')
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            let rest = &sql[i + 2..];
            if rest.trim_start().starts_with('(') {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// Rewrites `AT` references to measurements in `sql` (a single statement,
/// already authorized). `current` is the session's database. None when
/// nothing was rewritten.
pub(crate) fn rewrite(engine: &Engine, conn: &duckdb::Connection, sql: &str, current: &str) -> Result<Option<String>> {
    if !mentions_at(sql) {
        return Ok(None);
    }
    let text: String = conn.prepare_cached("SELECT json_serialize_sql($1::VARCHAR)")?.query_row([sql], |r| r.get(0))?;
    let mut tree: Value = serde_json::from_str(&text).map_err(|e| Error::Internal(format!("unreadable parse tree: {e}")))?;
    if tree.get("error").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let mut changed = false;
    visit(engine, conn, &mut tree, current, &mut changed)?;
    if !changed {
        return Ok(None);
    }
    let out: String = conn.prepare_cached("SELECT json_deserialize_sql($1::JSON)")?.query_row([tree.to_string()], |r| r.get(0))?;
    Ok(Some(out))
}

fn visit(engine: &Engine, conn: &duckdb::Connection, node: &mut Value, current: &str, changed: &mut bool) -> Result<()> {
    match node {
        Value::Object(map) => {
            let is_at_ref =
                map.get("type").and_then(Value::as_str) == Some("BASE_TABLE") && map.get("at_clause").is_some_and(|a| !a.is_null());
            if is_at_ref {
                let s = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                if let Some((file_id, table)) = measurement(engine, conn, &s("catalog_name"), &s("schema_name"), &s("table_name"), current)?
                {
                    if s("alias").is_empty() {
                        map.insert("alias".into(), Value::String(s("table_name")));
                    }
                    map.insert("catalog_name".into(), Value::String(LAKE_ALIAS.to_string()));
                    map.insert("schema_name".into(), Value::String(file_id));
                    map.insert("table_name".into(), Value::String(table));
                    *changed = true;
                }
                return Ok(());
            }
            for v in map.values_mut() {
                visit(engine, conn, v, current, changed)?;
            }
        }
        Value::Array(items) => {
            for v in items {
                visit(engine, conn, v, current, changed)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The lake schema (file id) and table of a reference, when it names a measurement.
fn measurement(
    engine: &Engine,
    conn: &duckdb::Connection,
    catalog: &str,
    schema: &str,
    table: &str,
    current: &str,
) -> Result<Option<(String, String)>> {
    let db = match (catalog, schema) {
        ("", "") => current.to_string(),
        ("", s) if engine.database_exists(&s.to_ascii_lowercase()) => s.to_ascii_lowercase(),
        ("", s) if s.eq_ignore_ascii_case("main") => current.to_string(),
        (c, s) if s.eq_ignore_ascii_case("main") && engine.database_exists(&c.to_ascii_lowercase()) => c.to_ascii_lowercase(),
        _ => return Ok(None),
    };
    let Ok(file_id) = engine.database_file_id(&db) else { return Ok(None) };
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = $1 AND schema_name = $2 AND lower(table_name) = lower($3)",
        )?
        .query_row([LAKE_ALIAS, file_id.as_str(), table], |r| r.get(0))?;
    Ok((n > 0).then(|| (file_id, table.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_clause_detection() {
        assert!(mentions_at("SELECT * FROM cpu AT (TIMESTAMP => now())"));
        assert!(mentions_at("select * from cpu at(version => 3)"));
        assert!(!mentions_at("SELECT created_at FROM t"));
        assert!(!mentions_at("SELECT format('x') FROM t"));
        assert!(!mentions_at("SELECT 1"));
    }
}
