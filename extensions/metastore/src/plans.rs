//! What each function returns, as one DuckDB query: the catalog work
//! (metadata, partition selection, file listing) happens here, in Rust,
//! through pond-catalog; the rows come from the query this module writes
//! (for `metastore_scan`, pond-catalog's own reader over the selected files).

use std::sync::Arc;

use pond_catalog::predicate::Pred;
use pond_catalog::reader::{ident, literal};
use pond_catalog::{Catalog, FileLister, Table};
use serde_json::Value;

use crate::catalogs::Catalogs;
use crate::duck::Conn;

/// Alias of the relation a `filter` is evaluated on.
const ROW: &str = "__pond_row";

/// `SELECT … FROM (VALUES …)` with typed columns; no rows → an empty, typed result.
fn values_sql(columns: &[(&str, String)], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        let cols: Vec<String> = columns.iter().map(|(n, t)| format!("CAST(NULL AS {t}) AS {}", ident(n))).collect();
        return format!("SELECT {} WHERE false", cols.join(", "));
    }
    let names: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
    let cols: Vec<String> = columns.iter().enumerate().map(|(i, (n, t))| format!("CAST(c{i} AS {t}) AS {}", ident(n))).collect();
    let tuples: Vec<String> = rows.iter().map(|r| format!("({})", r.join(", "))).collect();
    format!("SELECT {} FROM (VALUES {}) AS v({})", cols.join(", "), tuples.join(", "), names.join(", "))
}

fn text_or_null(v: Option<&str>) -> String {
    v.map(literal).unwrap_or_else(|| "NULL".into())
}

const COLUMN_LIST: &str = "STRUCT(name VARCHAR, type VARCHAR, duckdb_type VARCHAR)[]";

fn column_list(cols: &[pond_catalog::Column]) -> String {
    let items: Vec<String> = cols
        .iter()
        .map(|c| {
            let duck = pond_catalog::types::duckdb_type(&c.catalog_type).ok();
            format!(
                "{{'name': {}, 'type': {}, 'duckdb_type': {}}}",
                literal(&c.name),
                literal(&c.catalog_type),
                text_or_null(duck.as_deref())
            )
        })
        .collect();
    format!("CAST([{}] AS {COLUMN_LIST})", items.join(", "))
}

/// `metastore_tables`: one row per table, with its columns, partition keys,
/// location and format (or why it cannot be read).
pub fn tables_sql(catalog: &Catalog, only: Option<&str>) -> Result<String, String> {
    let namespaces = match only {
        Some(ns) => vec![ns.to_string()],
        None => catalog.namespaces().map_err(|e| e.to_string())?.as_ref().clone(),
    };
    let mut rows = Vec::new();
    for ns in namespaces {
        for name in catalog.tables(&ns).map_err(|e| e.to_string())?.iter() {
            let t = catalog.table(&ns, name).map_err(|e| e.to_string())?;
            let readable = pond_catalog::reader::format_of(catalog.name(), &t)
                .and_then(|f| pond_catalog::reader::typed_columns(catalog.name(), &t).map(|_| f));
            let (format, reason) = match &readable {
                Ok(f) => (Some(f.name().to_string()), None),
                Err(e) => (None, Some(e.to_string())),
            };
            rows.push(vec![
                literal(&t.namespace),
                literal(&t.name),
                literal(&t.table_type),
                text_or_null(format.as_deref()),
                text_or_null(t.storage.location.as_deref()),
                column_list(&t.columns),
                column_list(&t.partition_keys),
                text_or_null(reason.as_deref()),
            ]);
        }
    }
    let columns = [
        ("database", "VARCHAR".to_string()),
        ("table_name", "VARCHAR".to_string()),
        ("table_type", "VARCHAR".to_string()),
        ("format", "VARCHAR".to_string()),
        ("location", "VARCHAR".to_string()),
        ("columns", COLUMN_LIST.to_string()),
        ("partition_keys", COLUMN_LIST.to_string()),
        ("unreadable_because", "VARCHAR".to_string()),
    ];
    Ok(values_sql(&columns, &rows))
}

/// A `filter :=` argument: the condition's parse tree (checked to name only
/// partition keys) and the partition predicate pond-catalog prunes with.
pub struct Filter {
    pub text: String,
    pub pred: Option<Pred>,
}

/// Parses `text` with DuckDB's own parser (as the server parses a WHERE
/// clause) and extracts the partition predicate with the server's code.
pub fn parse_filter(conn: &Conn, table: &Table, text: &str) -> Result<Filter, String> {
    let keys = Catalog::keys(table);
    let key_names: Vec<&str> = table.partition_keys.iter().map(|k| k.name.as_str()).collect();
    if key_names.is_empty() {
        return Err(format!("filter: table {} is not partitioned; filter selects partitions (use WHERE for rows)", table.qualified()));
    }
    let statement = format!("SELECT * FROM {ROW} WHERE ({text})");
    let tree = conn.value("SELECT json_serialize_sql($1::VARCHAR)::VARCHAR", &[&statement])?.unwrap_or_default();
    let tree: Value = serde_json::from_str(&tree).map_err(|e| format!("internal: unreadable parse tree: {e}"))?;
    if tree.get("error").and_then(Value::as_bool) == Some(true) {
        let msg = tree.get("error_message").and_then(Value::as_str).unwrap_or("not a condition");
        return Err(format!("filter '{text}' is not a SQL condition: {msg}"));
    }
    let statements = tree.get("statements").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let [statement] = statements else {
        return Err(format!("filter '{text}' must be one condition, not several statements"));
    };
    let node = statement.get("node").unwrap_or(&Value::Null);
    let where_clause = node.get("where_clause").filter(|w| !w.is_null());
    let plain = node.get("type").and_then(Value::as_str) == Some("SELECT_NODE")
        && node.get("from_table").and_then(|f| f.get("table_name")).and_then(Value::as_str) == Some(ROW)
        && node.get("modifiers").and_then(Value::as_array).is_some_and(|m| m.is_empty())
        && node.get("group_expressions").and_then(Value::as_array).is_none_or(|g| g.is_empty());
    let Some(where_clause) = where_clause.filter(|_| plain) else {
        return Err(format!("filter '{text}' must be a condition on partition keys, e.g. dt >= '2024-01-01' AND region = 'eu'"));
    };
    check_names(where_clause, &key_names, table, text)?;
    let pred = pond_catalog::predicate::extract(where_clause, &[ROW.to_string()], &keys);
    Ok(Filter { text: text.to_string(), pred })
}

/// Every column the condition names must be a partition key; no subqueries.
fn check_names(v: &Value, keys: &[&str], table: &Table, text: &str) -> Result<(), String> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| check_names(i, keys, table, text)),
        Value::Object(map) => {
            match map.get("class").and_then(Value::as_str) {
                Some("SUBQUERY") => return Err(format!("filter '{text}' cannot hold a subquery")),
                Some("COLUMN_REF") => {
                    let names: Vec<&str> = map
                        .get("column_names")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let column = names.last().copied().unwrap_or_default();
                    if !keys.iter().any(|k| k.eq_ignore_ascii_case(column)) || names.len() > 1 {
                        return Err(format!(
                            "filter '{text}' names {}, which is not a partition key of {} (partition keys: {}); filter selects partitions, use WHERE for other columns",
                            names.join("."),
                            table.qualified(),
                            keys.join(", ")
                        ));
                    }
                }
                _ => {}
            }
            map.values().try_for_each(|c| check_names(c, keys, table, text))
        }
        _ => Ok(()),
    }
}

/// `metastore_partitions`: the partitions the filter selects (through the
/// metastore, as a scan would), with their key values typed and their location.
pub fn partitions_sql(catalog: &Catalog, table: &Table, filter: Option<&Filter>) -> Result<String, String> {
    let (_, keys) = pond_catalog::reader::typed_columns(catalog.name(), table).map_err(|e| e.to_string())?;
    let selection = catalog.select(table, filter.and_then(|f| f.pred.as_ref())).map_err(|e| e.to_string())?;
    let key_names: Vec<&str> = table.partition_keys.iter().map(|k| k.name.as_str()).collect();
    let rows: Vec<Vec<String>> = selection
        .partitions
        .iter()
        .map(|p| {
            let values: Vec<&str> = p.values.iter().map(String::as_str).collect();
            let mut row = vec![literal(&pond_catalog::paths::partition_name(&key_names, &values))];
            row.extend(p.values.iter().map(|v| text_or_null(pond_catalog::reader::partition_value(v).as_deref())));
            row.push(text_or_null(p.location.as_deref().or(table.storage.location.as_deref())));
            row
        })
        .collect();
    let mut columns: Vec<(&str, String)> = vec![("partition_name", "VARCHAR".into())];
    columns.extend(keys.iter().map(|(n, t)| (n.as_str(), t.clone())));
    columns.push(("location", "VARCHAR".into()));
    Ok(filtered(values_sql(&columns, &rows), filter))
}

/// `metastore_scan`: pond-catalog's reader over the selected partitions' files.
pub fn scan_sql(catalog: &Catalog, table: &Table, filter: Option<&Filter>, files: &dyn FileLister) -> Result<String, String> {
    let plan = catalog.plan_scan(table, filter.and_then(|f| f.pred.as_ref()), files).map_err(|e| e.to_string())?;
    Ok(filtered(plan.sql, filter))
}

/// The whole condition still applies to the rows: pruning uses only what it
/// certainly implies, so the answer never depends on how much was pruned.
fn filtered(sql: String, filter: Option<&Filter>) -> String {
    match filter {
        None => sql,
        Some(f) => format!("SELECT * FROM ({sql}) AS {ROW} WHERE ({})", f.text),
    }
}

/// Lists a location's data files: local directories directly, S3 prefixes
/// through DuckDB's own glob (httpfs, with DuckDB's secrets — and, for a
/// Glue catalog, the catalog's credentials given to DuckDB first).
pub struct Files<'a> {
    pub conn: &'a Conn,
    pub catalog: Arc<Catalog>,
    pub catalogs: &'a Catalogs,
    /// pond-catalog lists several locations at once; they take turns on the connection.
    pub turn: parking_lot::Mutex<()>,
}

impl Files<'_> {
    fn storage_error(&self, location: &str, message: String) -> pond_catalog::Error {
        pond_catalog::Error::Storage { catalog: self.catalog.name().to_string(), location: location.to_string(), message }
    }

    /// Gives DuckDB the catalog's own credentials for `bucket` when nothing in
    /// DuckDB's secret manager covers it (a temporary secret, scoped to the bucket).
    fn ensure_storage_access(&self, url: &str) -> pond_catalog::Result<()> {
        let Some(access) = self.catalog.storage_access()? else { return Ok(()) };
        let bucket = url.trim_start_matches("s3://").split('/').next().unwrap_or_default().to_string();
        let name =
            format!("pond_metastore_{}", bucket.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>());
        let current = self.conn.value("SELECT name FROM which_secret($1, 's3')", &[url]).map_err(|e| self.storage_error(url, e))?;
        if current.as_deref().is_some_and(|c| c != name) {
            return Ok(()); // the user's own secret applies
        }
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&access.key_id, &access.secret, &access.session_token, &access.region, &access.endpoint, &access.url_style, access.use_ssl)
            .hash(&mut h);
        let fingerprint = h.finish();
        if current.is_some() && self.catalogs.made_secrets.lock().get(&name) == Some(&fingerprint) {
            return Ok(());
        }
        let sql =
            format!("CREATE OR REPLACE TEMPORARY SECRET {} ({})", ident(&name), access.duckdb_secret_options(&format!("s3://{bucket}")));
        if let Err(e) = self.conn.run(&sql) {
            let first = access.scrub(e.lines().next().unwrap_or_default());
            return Err(self.storage_error(
                &format!("s3://{bucket}"),
                format!("cannot give DuckDB the catalog's credentials (LOAD httpfs first?): {first}"),
            ));
        }
        self.catalogs.made_secrets.lock().insert(name, fingerprint);
        Ok(())
    }
}

impl FileLister for Files<'_> {
    fn list(&self, location: &str) -> pond_catalog::Result<Vec<String>> {
        let catalog = self.catalog.name();
        match pond_catalog::files::location(catalog, location)? {
            pond_catalog::files::Location::Local(path) => pond_catalog::files::list_local(catalog, std::path::Path::new(&path)),
            pond_catalog::files::Location::S3(url) => {
                let _turn = self.turn.lock();
                self.ensure_storage_access(&url)?;
                let pattern = format!("{}/**", url.trim_end_matches('/'));
                let rows = self.conn.rows("SELECT file FROM glob($1) ORDER BY file", &[&pattern]).map_err(|e| {
                    // DuckDB appends the position in the extension's own statement: not the user's.
                    let message = e.split("\nLINE ").next().unwrap_or(&e).trim_end().to_string();
                    self.storage_error(&url, message)
                })?;
                Ok(rows
                    .into_iter()
                    .filter_map(|r| r.into_iter().next().flatten())
                    .filter(|f| f.rsplit('/').next().is_some_and(|n| !pond_catalog::files::is_hidden(n)))
                    .collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let cols = [("a", "INTEGER".to_string()), ("b", "VARCHAR".to_string())];
        assert_eq!(values_sql(&cols, &[]), "SELECT CAST(NULL AS INTEGER) AS \"a\", CAST(NULL AS VARCHAR) AS \"b\" WHERE false");
        let sql = values_sql(&cols, &[vec!["'1'".into(), "NULL".into()]]);
        assert_eq!(sql, "SELECT CAST(c0 AS INTEGER) AS \"a\", CAST(c1 AS VARCHAR) AS \"b\" FROM (VALUES ('1', NULL)) AS v(c0, c1)");
    }
}
