//! Statements PostgreSQL clients send at connect time that mean something
//! else (or nothing) to DuckDB: `SET extra_float_digits`, `SHOW search_path`,
//! `select pg_catalog.version()`, `current_setting(…)`. They are answered here,
//! before the engine and its sandbox, for every user: they only read or set
//! this connection's PostgreSQL session parameters, never data.

use std::collections::HashMap;

/// PostgreSQL session parameters a connection starts with (lower-case names).
pub(crate) fn default_settings(server_version: &str) -> HashMap<String, String> {
    [
        ("server_version", server_version),
        ("server_version_num", "150000"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("datestyle", "ISO, MDY"),
        ("timezone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("intervalstyle", "postgres"),
        ("search_path", "\"$user\", public"),
        ("transaction_isolation", "serializable"),
        ("default_transaction_isolation", "serializable"),
        ("transaction_read_only", "off"),
        ("default_transaction_read_only", "off"),
        ("extra_float_digits", "1"),
        ("application_name", ""),
        ("max_identifier_length", "63"),
        ("lc_collate", "C"),
        ("lc_ctype", "C"),
        ("bytea_output", "hex"),
        ("client_min_messages", "notice"),
        ("statement_timeout", "0"),
        ("lock_timeout", "0"),
        ("idle_in_transaction_session_timeout", "0"),
        ("is_superuser", "off"),
        ("in_hot_standby", "off"),
        ("default_table_access_method", "heap"),
        ("max_index_keys", "32"),
        ("block_size", "8192"),
        ("lc_messages", "C"),
        ("lc_monetary", "C"),
        ("lc_numeric", "C"),
        ("lc_time", "C"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Whether `name` is one of the PostgreSQL session parameters this layer keeps.
pub(crate) fn is_pg_setting(name: &str) -> bool {
    default_settings("").contains_key(&name.to_ascii_lowercase())
}

/// Parameters `SET` may change here (DuckDB's own settings go to the engine).
const SETTABLE: &[&str] = &[
    "extra_float_digits",
    "application_name",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "client_min_messages",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "bytea_output",
    "standard_conforming_strings",
    "search_path",
    "timezone",
    "time zone",
    "default_transaction_isolation",
    "transaction_isolation",
    "default_transaction_read_only",
    "row_security",
    "jit",
    "escape_string_warning",
    "synchronous_commit",
];

/// What a locally answered statement returns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Local {
    /// One row of text columns.
    Row(Vec<(String, String)>),
    /// A command tag only.
    Tag(&'static str),
    /// `SET name = value`: store it, reply `SET`.
    Set(String, String),
    /// `RESET name` / `RESET ALL`.
    Reset(Option<String>),
}

/// Lower-cases, collapses whitespace and drops a trailing semicolon.
fn normalize(sql: &str) -> String {
    let s = sql.trim().trim_end_matches(';').trim();
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase()
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2 && ((v.starts_with('\'') && v.ends_with('\'')) || (v.starts_with('"') && v.ends_with('"'))) {
        v[1..v.len() - 1].replace("''", "'")
    } else {
        v.to_string()
    }
}

/// Recognizes a statement answered by the pg layer. `settings` are the
/// connection's current parameters; `schema` its current schema.
pub(crate) fn intercept(sql: &str, settings: &HashMap<String, String>, schema: &str) -> Option<Local> {
    let n = normalize(sql);
    let get = |name: &str| settings.get(name).cloned().unwrap_or_default();
    let version = || {
        let v = get("server_version");
        format!("PostgreSQL {v} on x86_64-pc-linux-gnu")
    };
    match n.as_str() {
        "select version()" | "select pg_catalog.version()" => return Some(Local::Row(vec![("version".into(), version())])),
        "select current_schema()" | "select pg_catalog.current_schema()" | "select current_schema" => {
            return Some(Local::Row(vec![("current_schema".into(), schema.to_string())]))
        }
        "show transaction isolation level" => {
            return Some(Local::Row(vec![("transaction_isolation".into(), get("transaction_isolation"))]))
        }
        _ => {}
    }
    // DuckDB has no savepoints. Drivers set one around their own catalog lookups
    // (psycopg's TypeInfo, SQLAlchemy): setting and releasing one is accepted and
    // changes nothing; `ROLLBACK TO SAVEPOINT` goes to the engine and fails.
    if n.starts_with("savepoint ") {
        return Some(Local::Tag("SAVEPOINT"));
    }
    if n.starts_with("release ") {
        return Some(Local::Tag("RELEASE"));
    }
    // psycopg sends DEALLOCATE ALL after DDL; prepared statements live in the
    // protocol layer, where a later Parse under the same name replaces them.
    if n == "deallocate all" || n == "deallocate prepare all" {
        return Some(Local::Tag("DEALLOCATE ALL"));
    }
    if n.starts_with("deallocate ") {
        return Some(Local::Tag("DEALLOCATE"));
    }
    if n == "discard all" {
        return Some(Local::Tag("DISCARD ALL"));
    }
    if let Some(rest) = n.strip_prefix("set transaction ").or_else(|| n.strip_prefix("set session characteristics as transaction ")) {
        let _ = rest;
        return Some(Local::Tag("SET"));
    }
    if let Some(rest) = n.strip_prefix("show ") {
        let name = rest.trim();
        let key = if name == "time zone" { "timezone" } else { name };
        if settings.contains_key(key) {
            return Some(Local::Row(vec![(key.to_string(), get(key))]));
        }
        return None;
    }
    if let Some(rest) = n.strip_prefix("reset ") {
        let name = rest.trim();
        if name == "all" {
            return Some(Local::Reset(None));
        }
        if SETTABLE.contains(&name) {
            return Some(Local::Reset(Some(name.to_string())));
        }
        return None;
    }
    if let Some(rest) = n.strip_prefix("set ") {
        let rest = rest.strip_prefix("session ").or_else(|| rest.strip_prefix("local ")).unwrap_or(rest);
        let (name, value) = if let Some(v) = rest.strip_prefix("time zone ") {
            ("timezone".to_string(), v.to_string())
        } else {
            let cut = rest.find([' ', '=']).unwrap_or(rest.len());
            let (name, tail) = rest.split_at(cut);
            let tail = tail.trim_start();
            let value = tail.strip_prefix("to ").or_else(|| tail.strip_prefix('=')).unwrap_or(tail);
            (name.to_string(), value.trim().to_string())
        };
        // Only literal values are kept here; anything else (a function call, a
        // subquery) goes to the engine, whose checks refuse it.
        let literal = value.chars().all(|c| c.is_ascii_alphanumeric() || " _-.,:/+'\"$".contains(c));
        if SETTABLE.contains(&name.as_str()) && literal {
            // Keep the value's original spelling (application names are case-sensitive).
            let original = original_value(sql, &value).unwrap_or(value);
            return Some(Local::Set(name, unquote(&original)));
        }
        return None;
    }
    if let Some(args) = n.strip_prefix("select current_setting(").or_else(|| n.strip_prefix("select pg_catalog.current_setting(")) {
        // Only the bare call: anything around it (`::int / 100`) is computed by the catalog layer.
        let arg = args.strip_suffix(')').filter(|a| !a.contains(')'))?;
        let name = unquote(arg.split(',').next().unwrap_or(""));
        if settings.contains_key(&name) {
            return Some(Local::Row(vec![("current_setting".into(), get(&name))]));
        }
    }
    None
}

/// The value's text as the client wrote it (normalization lower-cased it).
fn original_value(sql: &str, lowered: &str) -> Option<String> {
    let trimmed = sql.trim().trim_end_matches(';').trim();
    let lower = trimmed.to_ascii_lowercase();
    let at = lower.rfind(lowered)?;
    trimmed.get(at..at + lowered.len()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> HashMap<String, String> {
        default_settings("15.0 (Pond 0.1.0, DuckDB v1.5.5)")
    }

    #[test]
    fn client_connect_statements_are_answered() {
        let st = s();
        assert!(
            matches!(intercept("select pg_catalog.version()", &st, "main"), Some(Local::Row(r)) if r[0].1.starts_with("PostgreSQL 15.0"))
        );
        assert_eq!(intercept("SELECT current_schema()", &st, "main"), Some(Local::Row(vec![("current_schema".into(), "main".into())])));
        assert_eq!(
            intercept("show standard_conforming_strings", &st, "main"),
            Some(Local::Row(vec![("standard_conforming_strings".into(), "on".into())]))
        );
        assert_eq!(intercept("SET extra_float_digits = 3", &st, "main"), Some(Local::Set("extra_float_digits".into(), "3".into())));
        assert_eq!(
            intercept("SET application_name TO 'My App';", &st, "main"),
            Some(Local::Set("application_name".into(), "My App".into()))
        );
        assert_eq!(intercept("SET TIME ZONE 'UTC'", &st, "main"), Some(Local::Set("timezone".into(), "UTC".into())));
        // Expressions are not values: they go to the engine (and its checks).
        assert_eq!(intercept("SET TimeZone = current_setting('allowed_directories')", &st, "main"), None);
        assert_eq!(intercept("SET application_name = (SELECT 1)", &st, "main"), None);
        assert!(matches!(intercept("SHOW TRANSACTION ISOLATION LEVEL", &st, "main"), Some(Local::Row(_))));
        assert_eq!(intercept("SAVEPOINT \"_pg3_1\"", &st, "main"), Some(Local::Tag("SAVEPOINT")));
        assert_eq!(intercept("RELEASE \"_pg3_1\"", &st, "main"), Some(Local::Tag("RELEASE")));
        assert_eq!(intercept("ROLLBACK TO SAVEPOINT a", &st, "main"), None);
        assert_eq!(intercept("DEALLOCATE ALL", &st, "main"), Some(Local::Tag("DEALLOCATE ALL")));
        assert!(matches!(intercept("select current_setting('search_path')", &st, "main"), Some(Local::Row(_))));
        assert_eq!(intercept("select current_setting('server_version_num')::int / 100", &st, "main"), None);
        // DuckDB's own statements pass through.
        assert_eq!(intercept("SHOW TABLES", &st, "main"), None);
        assert_eq!(intercept("SET threads = 2", &st, "main"), None);
        assert_eq!(intercept("select 1", &st, "main"), None);
    }
}
