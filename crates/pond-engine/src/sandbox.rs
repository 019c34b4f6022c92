//! The statement checker: what a non-superuser's statement touches, decided
//! before DuckDB binds or runs it, and compared with the caller's grants.
//!
//! Fail-closed throughout: anything not understood is denied.
//!
//! - SELECT-like statements (SELECT, WITH, VALUES, FROM-first, DESCRIBE,
//!   SUMMARIZE) are parsed by DuckDB's own parser (`json_serialize_sql`, no
//!   binding) and the whole tree is walked: every base table is resolved to
//!   the existing objects it can mean and needs SELECT on each (views also have
//!   their definition checked, recursively, as the caller); CTE names count only
//!   inside their scope; table functions are limited to generators (`range`,
//!   `unnest`, …); scalar functions must be DuckDB built-ins outside a deny list
//!   (file, settings, environment, `query`, serialized-SQL functions), not
//!   shadowed by a user macro.
//! - Other statements are parsed with sqlparser (DuckDB dialect). Only INSERT,
//!   UPDATE, DELETE, TRUNCATE, CREATE/DROP/ALTER of tables, views, schemas,
//!   sequences and indexes, transaction control, EXPLAIN and a short list of SET
//!   options are allowed; their relations and functions get the same checks.
//!   Everything else (COPY, ATTACH, INSTALL, LOAD, PRAGMA, EXPORT, CREATE SECRET,
//!   CREATE MACRO, CALL, …) is for superusers.
//! - Objects outside Pond's databases (`memory`, `system`, other attached files)
//!   are never reachable; the session's own temporary objects are.

use std::collections::HashSet;
use std::ops::ControlFlow;

use pond_auth::{Identity, Policy, Privilege};
use serde_json::Value;
use sqlparser::ast::{self as sq, Visit};

use crate::error::{Error, Result};

/// Table functions a non-superuser may call: generators that read nothing.
const ALLOWED_TABLE_FUNCTIONS: &[&str] = &["range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree"];

/// Built-in scalar functions that reach outside the caller's data.
const DENIED_FUNCTIONS: &[&str] = &[
    "getenv",
    "current_setting",
    "set_config",
    "query",
    "query_table",
    "json_execute_serialized_sql",
    "json_serialize_plan",
    "json_deserialize_sql",
    "json_serialize_sql",
    "glob",
    "sniff_csv",
    "which_secret",
    "load_aws_credentials",
    "checkpoint",
    "force_checkpoint",
    "enable_logging",
    "disable_logging",
    "truncate_duckdb_logs",
    "pg_get_viewdef",
    "pg_get_constraintdef",
    "pg_get_expr",
    "col_description",
    "obj_description",
    "shobj_description",
    "has_any_column_privilege",
    "has_column_privilege",
    "has_database_privilege",
    "has_foreign_data_wrapper_privilege",
    "has_function_privilege",
    "has_language_privilege",
    "has_schema_privilege",
    "has_sequence_privilege",
    "has_server_privilege",
    "has_table_privilege",
    "has_tablespace_privilege",
    "current_schemas",
    "currval",
    "nextval",
    "setval",
];

/// Name prefixes of function families that read files, catalogs or settings.
const DENIED_PREFIXES: &[&str] = &[
    "read_",
    "parquet_",
    "duckdb_",
    "pragma_",
    "iceberg_",
    "delta_",
    "postgres_",
    "sqlite_",
    "mysql_",
    "ducklake_",
    "icu_collate",
    "httpfs",
    "s3_",
    "azure_",
    "gcs_",
    "http_",
    "st_read",
];

/// SET/RESET options a non-superuser may change: session-local ones only (others,
/// such as default_order, are global in DuckDB and would change every session).
const ALLOWED_SETTINGS: &[&str] = &["timezone", "calendar"];

/// Everything the checker needs about the caller and the catalog.
pub(crate) struct Checker<'a> {
    pub conn: &'a duckdb::Connection,
    pub identity: &'a Identity,
    pub policy: &'a Policy,
    /// Pond's databases (DuckDB catalog names).
    pub databases: &'a [String],
    /// Lake alias of each database (lower-cased name → alias), to recognise measurement views.
    pub lakes: &'a std::collections::HashMap<String, crate::lake::Lake>,
    pub current_db: String,
    pub current_schema: String,
    /// Built-in (system) function names.
    pub system_functions: &'a HashSet<String>,
    /// Functions defined outside the system catalog (macros), which may shadow built-ins.
    pub user_functions: &'a HashSet<String>,
    /// Tables and views by lower-cased name.
    pub catalog: &'a CatalogSnapshot,
    /// Counts statements the way DuckDB's parser does.
    pub counter: &'a crate::parser::StatementCounter,
    /// Catalog listings to limit to what the caller may see (see `catalog_views`).
    pub rewrites: std::cell::RefCell<Vec<crate::catalog_views::Rewrite>>,
    /// Attached external catalogs (lower-cased): their tables are checked by
    /// grants alone (see `external.rs`).
    pub externals: &'a [String],
}

/// Every table and view the session can see, by lower-cased name: read once
/// and reused until a statement may have changed the catalog.
#[derive(Debug, Default)]
pub(crate) struct CatalogSnapshot {
    by_name: std::collections::HashMap<String, Vec<Object>>,
}

impl CatalogSnapshot {
    fn objects(&self) -> impl Iterator<Item = &Object> {
        self.by_name.values().flatten()
    }

    pub(crate) fn load(conn: &duckdb::Connection) -> Result<Self> {
        let mut stmt = conn.prepare_cached(
            "SELECT database_name, schema_name, table_name, NULL::VARCHAR FROM duckdb_tables() \
             UNION ALL SELECT database_name, schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Option<String>>(3)?))
        })?;
        let mut by_name: std::collections::HashMap<String, Vec<Object>> = std::collections::HashMap::new();
        for row in rows {
            let (db, schema, name, view_sql) = row?;
            by_name.entry(name.to_lowercase()).or_default().push(Object {
                db: db.to_ascii_lowercase(),
                schema: schema.to_ascii_lowercase(),
                name,
                view_sql,
            });
        }
        Ok(Self { by_name })
    }
}

fn denied(msg: impl Into<String>) -> Error {
    let msg = msg.into();
    if msg.starts_with("permission denied") {
        Error::PermissionDenied(msg)
    } else {
        Error::PermissionDenied(format!("permission denied: {msg}"))
    }
}

/// Something a name can mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Object {
    db: String,
    schema: String,
    name: String,
    /// The view's SQL for views.
    view_sql: Option<String>,
}

impl Checker<'_> {
    /// Checks one statement (already split; Pond's own statements excluded).
    /// Returns the text to run instead when catalog listings had to be limited.
    pub fn check(&self, sql: &str) -> Result<Option<String>> {
        self.check_text(sql)?;
        let rewrites = std::mem::take(&mut *self.rewrites.borrow_mut());
        if rewrites.is_empty() {
            return Ok(None);
        }
        crate::catalog_views::apply(sql, rewrites, &self.visible()).map(Some)
    }

    /// What the caller may see, for limited catalog listings.
    fn visible(&self) -> crate::catalog_views::Visible {
        let databases: Vec<String> = self
            .databases
            .iter()
            .chain(self.externals)
            .filter(|d| self.policy.allows(self.identity, d, None, Privilege::Usage))
            .cloned()
            .collect();
        let tables = self
            .catalog
            .objects()
            .filter(|o| !crate::lake::is_hidden_schema(&o.schema))
            .filter(|o| {
                o.db == "temp" || (databases.contains(&o.db) && self.policy.table_visible(self.identity, &o.db, &o.schema, &o.name))
            })
            .map(|o| (o.db.clone(), o.schema.clone(), o.name.clone()))
            .collect();
        crate::catalog_views::Visible { databases, tables }
    }

    fn check_text(&self, sql: &str) -> Result<()> {
        // What was checked must be exactly what DuckDB runs: one statement.
        match self.counter.count(sql) {
            Ok(1) => {}
            Ok(_) => return Err(denied("send one statement at a time (DuckDB reads several here)")),
            Err(e) => return Err(Error::InvalidRequest(format!("Parser Error: {e}"))),
        }
        let parsed: Value = {
            let mut stmt = self.conn.prepare_cached("SELECT json_serialize_sql($1::VARCHAR)")?;
            let text: String = stmt.query_row([sql], |r| r.get(0))?;
            serde_json::from_str(&text).map_err(|e| Error::Internal(format!("unreadable parse tree: {e}")))?
        };
        if parsed.get("error").and_then(Value::as_bool) == Some(true) {
            let kind = parsed.get("error_type").and_then(Value::as_str).unwrap_or("");
            let message = parsed.get("error_message").and_then(Value::as_str).unwrap_or("");
            if kind == "parser" {
                return Err(Error::InvalidRequest(format!("Parser Error: {message}")));
            }
            return self.check_other(sql);
        }
        let statements = parsed.get("statements").and_then(Value::as_array).cloned().unwrap_or_default();
        if statements.len() != 1 {
            return Err(denied("send one statement at a time"));
        }
        self.walk_query(&statements[0], &Scope::default(), &self.current_db.clone(), &self.current_schema.clone(), 0)
    }

    // ----- SELECT-like statements: DuckDB's parse tree ------------------------------------

    fn walk_query(&self, v: &Value, scope: &Scope, db: &str, schema: &str, depth: usize) -> Result<()> {
        if depth > 16 {
            return Err(denied("views nested too deeply to check"));
        }
        match v {
            Value::Array(items) => items.iter().try_for_each(|i| self.walk_query(i, scope, db, schema, depth)),
            Value::Object(map) => {
                // Query nodes: CTE names are visible to later CTEs and to the body.
                if let Some(ctes) = map.get("cte_map").and_then(|c| c.get("map")).and_then(Value::as_array) {
                    let mut inner = scope.clone();
                    for entry in ctes {
                        let name = entry.get("key").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
                        if let Some(def) = entry.get("value") {
                            self.walk_query(def, &inner, db, schema, depth)?;
                        }
                        inner.names.push(name);
                    }
                    for (k, child) in map {
                        if k != "cte_map" {
                            self.walk_query(child, &inner, db, schema, depth)?;
                        }
                    }
                    return Ok(());
                }
                let node_type = map.get("type").and_then(Value::as_str).unwrap_or("");
                if node_type == "RECURSIVE_CTE_NODE" || node_type == "CTE_NODE" {
                    let name =
                        map.get("cte_name").or_else(|| map.get("ctename")).and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
                    let mut inner = scope.clone();
                    inner.names.push(name);
                    return map.values().try_for_each(|c| self.walk_query(c, &inner, db, schema, depth));
                }
                if let Some(class) = map.get("class").and_then(Value::as_str) {
                    if class == "FUNCTION" {
                        self.check_function_json(map, db, schema)?;
                    }
                    return map.values().try_for_each(|c| self.walk_query(c, scope, db, schema, depth));
                }
                if map.contains_key("sample") && map.contains_key("alias") {
                    // A table reference.
                    match node_type {
                        "BASE_TABLE" => {
                            let parts = ["catalog_name", "schema_name", "table_name"]
                                .map(|k| map.get(k).and_then(Value::as_str).unwrap_or("").to_string());
                            if let Some(listing) = crate::catalog_views::info_schema_listing(&parts[0], &parts[1], &parts[2]) {
                                return self.limit_listing(map, listing, false, &parts[2], depth);
                            }
                            return self.check_relation(&parts, scope, db, schema, depth);
                        }
                        "TABLE_FUNCTION" => {
                            let f = map.get("function");
                            let name = f.and_then(|f| f.get("function_name")).and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
                            let qualified = f
                                .map(|f| {
                                    ["schema", "catalog"].iter().any(|k| f.get(*k).and_then(Value::as_str).is_some_and(|s| !s.is_empty()))
                                })
                                .unwrap_or(false);
                            let no_args = f.and_then(|f| f.get("children")).and_then(Value::as_array).is_none_or(|c| c.is_empty());
                            if let (Some(listing), false, true) = (crate::catalog_views::function_listing(&name), qualified, no_args) {
                                let fmap = f.and_then(Value::as_object).cloned().unwrap_or_default();
                                let mut at = fmap.clone();
                                at.insert("alias".into(), map.get("alias").cloned().unwrap_or(Value::Null));
                                return self.limit_listing(&at, listing, true, &name, depth);
                            }
                            if name == "metastore_scan" && !qualified && !self.user_functions.contains(&name) {
                                let args: Vec<String> = f
                                    .and_then(|f| f.get("children"))
                                    .and_then(Value::as_array)
                                    .map(|c| {
                                        c.iter()
                                            .filter_map(|a| a.get("value").and_then(|v| v.get("value")).and_then(Value::as_str))
                                            .map(str::to_string)
                                            .collect()
                                    })
                                    .unwrap_or_default();
                                return match args.as_slice() {
                                    [c, s, t] if self.externals.contains(&c.to_ascii_lowercase()) => self.require_external(c, s, t),
                                    _ => Err(denied("metastore_scan() takes an attached catalog, a database and a table")),
                                };
                            }
                            if qualified || !ALLOWED_TABLE_FUNCTIONS.contains(&name.as_str()) || self.user_functions.contains(&name) {
                                return Err(denied(format!("table function {name}() is reserved for superusers")));
                            }
                            // Its arguments are expressions: check them too (skip the function node itself).
                            if let Some(children) = f.and_then(|f| f.get("children")) {
                                self.walk_query(children, scope, db, schema, depth)?;
                            }
                            return Ok(());
                        }
                        "SHOW_REF" => {
                            if map.get("query").is_some_and(|q| !q.is_null()) {
                                return map.values().try_for_each(|c| self.walk_query(c, scope, db, schema, depth));
                            }
                            let name = map.get("table_name").and_then(Value::as_str).unwrap_or("");
                            if name.starts_with("__") || name.starts_with('"') || name.is_empty() {
                                return Err(denied("this SHOW form lists the whole catalog; use SHOW TABLES or SHOW DATABASES"));
                            }
                            return self.check_relation(&[String::new(), String::new(), name.to_string()], scope, db, schema, depth);
                        }
                        "SUBQUERY" | "JOIN" | "EXPRESSION_LIST" | "EMPTY" | "EMPTY_FROM" | "PIVOT" => {}
                        other => return Err(denied(format!("table reference of kind {other} is reserved for superusers"))),
                    }
                }
                map.values().try_for_each(|c| self.walk_query(c, scope, db, schema, depth))
            }
            _ => Ok(()),
        }
    }

    /// Records a catalog listing to limit; only in the caller's own text (not in views).
    fn limit_listing(
        &self,
        node: &serde_json::Map<String, Value>,
        listing: crate::catalog_views::Listing,
        call: bool,
        name: &str,
        depth: usize,
    ) -> Result<()> {
        let at = node.get("query_location").and_then(Value::as_u64).filter(|l| *l < u32::MAX as u64);
        let (Some(at), 0) = (at, depth) else {
            return Err(denied(format!("catalog listing {name} is only available directly in your own statements")));
        };
        let aliased = node.get("alias").and_then(Value::as_str).is_some_and(|a| !a.is_empty());
        self.rewrites.borrow_mut().push(crate::catalog_views::Rewrite { at: at as usize, listing, call, aliased, name: name.to_string() });
        Ok(())
    }

    fn check_function_json(&self, f: &serde_json::Map<String, Value>, db: &str, schema: &str) -> Result<()> {
        if f.get("is_operator").and_then(Value::as_bool) == Some(true) {
            return Ok(());
        }
        let name = f.get("function_name").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        let fschema = f.get("schema").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        let fcatalog = f.get("catalog").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        let first_arg = f
            .get("children")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .and_then(|a| a.get("value"))
            .and_then(|v| v.get("value"))
            .and_then(Value::as_str)
            .map(str::to_string);
        self.check_function(&name, &fschema, &fcatalog, first_arg.as_deref(), db, schema)
    }

    fn check_function(&self, name: &str, fschema: &str, fcatalog: &str, first_arg: Option<&str>, db: &str, schema: &str) -> Result<()> {
        let builtin_qualifier = matches!(fcatalog, "" | "system") && matches!(fschema, "" | "main" | "pg_catalog");
        if !builtin_qualifier {
            return Err(denied(format!("function {fcatalog}.{fschema}.{name}() is reserved for superusers")));
        }
        if matches!(name, "nextval" | "currval") {
            return self.check_sequence(name, first_arg, db, schema);
        }
        if DENIED_FUNCTIONS.contains(&name) || DENIED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            return Err(denied(format!("function {name}() is reserved for superusers")));
        }
        if self.user_functions.contains(name) {
            return Err(denied(format!("function {name}() is a macro; calling macros is reserved for superusers")));
        }
        if !self.system_functions.contains(name) {
            return Err(Error::InvalidRequest(format!("Catalog Error: function {name}() does not exist or is not allowed")));
        }
        Ok(())
    }

    /// `nextval('seq')` / `currval('seq')`: the sequence's database decides.
    fn check_sequence(&self, name: &str, arg: Option<&str>, db: &str, schema: &str) -> Result<()> {
        let Some(arg) = arg.filter(|a| !a.contains('"')) else {
            return Err(denied(format!("{name}() needs a constant sequence name")));
        };
        let parts: Vec<String> = arg.split('.').map(|s| s.trim().to_ascii_lowercase()).collect();
        let target_db = match parts.len() {
            1 => db.to_string(),
            2 if self.databases.contains(&parts[0]) => parts[0].clone(),
            2 => db.to_string(),
            3 => parts[0].clone(),
            _ => return Err(denied(format!("{name}(): bad sequence name"))),
        };
        let _ = schema;
        let privilege = if name == "nextval" { Privilege::Create } else { Privilege::Select };
        if target_db == "temp" || (self.databases.contains(&target_db) && self.policy.allows(self.identity, &target_db, None, privilege)) {
            Ok(())
        } else {
            Err(denied(format!(
                "{name}() on a sequence in database {target_db} (needs {})",
                if name == "nextval" { "WRITE" } else { "READ" }
            )))
        }
    }

    /// A relation read by the statement: every existing object it can mean
    /// needs SELECT; views are checked inside too.
    fn check_relation(&self, parts: &[String; 3], scope: &Scope, db: &str, schema: &str, depth: usize) -> Result<()> {
        let [catalog, sch, table] = parts;
        if catalog.is_empty() && sch.is_empty() && scope.names.iter().any(|n| n.eq_ignore_ascii_case(table)) {
            return Ok(());
        }
        if !catalog.is_empty() && self.externals.contains(&catalog.to_ascii_lowercase()) {
            return self.require_external(catalog, sch, table);
        }
        let objects = self.resolve(catalog, sch, table, db, schema)?;
        for o in objects {
            self.require(&o, Privilege::Select)?;
            if let Some(sql) = o.view_sql.as_deref().filter(|sql| !self.is_measurement_view(&o, sql)) {
                // Say which view, not what inside it the caller may not see.
                self.check_view(sql, &o, depth + 1).map_err(|e| match e {
                    Error::PermissionDenied(_) | Error::InvalidRequest(_) => Error::PermissionDenied(format!(
                        "permission denied for view {}.{}.{} (it reads data you have no SELECT on)",
                        o.db, o.schema, o.name
                    )),
                    other => other,
                })?;
            }
        }
        Ok(())
    }

    /// A view Pond generated for a measurement (its text is exactly the
    /// canonical text for its database and name) is a leaf: the grant on
    /// `<db>.main.<name>` decides, since the lake and buffer it reads are
    /// hidden. A user-made view never matches, so it cannot borrow this.
    fn is_measurement_view(&self, o: &Object, sql: &str) -> bool {
        if o.schema != "main" {
            return false;
        }
        let Some(lake) = self.lakes.get(&o.db) else { return false };
        crate::lake::is_measurement_view_text(self.conn, lake, &o.name, sql)
    }

    fn check_view(&self, sql: &str, view: &Object, depth: usize) -> Result<()> {
        // A view's text is `CREATE VIEW name AS <query>;` — check the query part with
        // the view's own database and schema for unqualified names.
        let mut stmt = self.conn.prepare_cached("SELECT json_serialize_sql($1::VARCHAR)")?;
        let query = view_query(sql).ok_or_else(|| denied(format!("cannot check view {}.{}.{}", view.db, view.schema, view.name)))?;
        let text: String = stmt.query_row([query], |r| r.get(0))?;
        let parsed: Value = serde_json::from_str(&text).map_err(|e| Error::Internal(e.to_string()))?;
        let statements = parsed.get("statements").and_then(Value::as_array).cloned().unwrap_or_default();
        if statements.len() != 1 {
            return Err(denied(format!("cannot check view {}.{}.{}", view.db, view.schema, view.name)));
        }
        let (vdb, vschema) =
            if view.db == "temp" { (self.current_db.clone(), self.current_schema.clone()) } else { (view.db.clone(), view.schema.clone()) };
        self.walk_query(&statements[0], &Scope::default(), &vdb, &vschema, depth)
    }

    /// SELECT on a table of an external catalog (a database in Pond's model).
    fn require_external(&self, catalog: &str, schema: &str, table: &str) -> Result<()> {
        let (c, s, t) = (catalog.to_ascii_lowercase(), schema.to_ascii_lowercase(), table.to_ascii_lowercase());
        if self.policy.allows(self.identity, &c, Some((&s, &t)), Privilege::Select) {
            return Ok(());
        }
        Err(denied(format!("permission denied for table {c}.{s}.{t} (needs {})", Privilege::Select)))
    }

    fn require(&self, o: &Object, privilege: Privilege) -> Result<()> {
        if o.db == "temp" {
            return Ok(());
        }
        if self.databases.contains(&o.db) && self.policy.allows(self.identity, &o.db, Some((&o.schema, &o.name)), privilege) {
            return Ok(());
        }
        Err(denied(format!("permission denied for table {}.{}.{} (needs {privilege})", o.db, o.schema, o.name)))
    }

    /// Every existing table or view the (possibly partial) name can refer to.
    fn resolve(&self, catalog: &str, schema: &str, table: &str, db: &str, cur_schema: &str) -> Result<Vec<Object>> {
        let (c, s, t) = (catalog.to_ascii_lowercase(), schema.to_ascii_lowercase(), table.to_string());
        let candidates: Vec<(String, String)> = if !c.is_empty() {
            vec![(c.clone(), if s.is_empty() { "main".into() } else { s.clone() })]
        } else if !s.is_empty() {
            // `x.t`: schema x of the current database, or database x's main schema.
            vec![(db.to_string(), s.clone()), (s.clone(), "main".into()), ("temp".into(), s.clone())]
        } else {
            vec![("temp".into(), "main".into()), (db.to_string(), cur_schema.to_string()), (db.to_string(), "main".into())]
        };
        let mut out: Vec<Object> = Vec::new();
        for o in self.catalog.by_name.get(&t.to_lowercase()).map(Vec::as_slice).unwrap_or_default() {
            // Pond's hidden places (lakes, buffers) do not exist for clients.
            if crate::lake::is_hidden_schema(&o.schema) || crate::lake::is_hidden_catalog(&o.db) {
                continue;
            }
            if candidates.iter().any(|(d, s)| *d == o.db && *s == o.schema) && !out.contains(o) {
                out.push(o.clone());
            }
        }
        if out.is_empty() {
            let shown = [catalog, schema, table].iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>().join(".");
            return Err(Error::InvalidRequest(format!("Catalog Error: table {shown} does not exist or you have no access to it")));
        }
        Ok(out)
    }

    // ----- other statements: sqlparser ------------------------------------------------------

    fn check_other(&self, sql: &str) -> Result<()> {
        let dialect = sqlparser::dialect::DuckDbDialect {};
        let statements = sqlparser::parser::Parser::parse_sql(&dialect, sql)
            .map_err(|e| denied(format!("Pond cannot verify this statement, so only superusers may run it ({e})")))?;
        let [statement] = statements.as_slice() else { return Err(denied("send one statement at a time")) };
        self.check_statement(statement)
    }

    fn check_statement(&self, st: &sq::Statement) -> Result<()> {
        use sq::Statement as S;
        let db = self.current_db.clone();
        match st {
            S::StartTransaction { .. } | S::Commit { .. } | S::Rollback { .. } => Ok(()),
            // EXPLAIN of a query: check the query with DuckDB's parser like any SELECT
            // (catalog listings are not limited inside EXPLAIN: refused).
            S::Explain { statement, .. } if matches!(statement.as_ref(), S::Query(_)) => {
                self.check_text(&statement.to_string())?;
                if self.rewrites.borrow().is_empty() {
                    Ok(())
                } else {
                    Err(denied("EXPLAIN of a catalog listing is reserved for superusers"))
                }
            }
            S::Explain { statement, .. } => self.check_statement(statement),
            S::Query(q) => {
                // DuckDB did not see a SELECT here but sqlparser did: do not guess.
                let _ = q;
                Err(denied("Pond cannot verify this statement, so only superusers may run it"))
            }
            S::Insert(ins) => {
                let target = match &ins.table {
                    sq::TableObject::TableName(n) => n.clone(),
                    _ => return Err(denied("INSERT into a table function is reserved for superusers")),
                };
                self.require_target(&target, Privilege::Insert)?;
                if ins.on.is_some() {
                    self.require_target(&target, Privilege::Update)?;
                }
                if ins.returning.is_some() {
                    self.require_target(&target, Privilege::Select)?;
                }
                if let Some(src) = &ins.source {
                    self.check_parts(src.as_ref())?;
                }
                self.check_functions(st)
            }
            S::Update { table, assignments, from, selection, returning, .. } => {
                self.check_update(st, table, assignments, from.as_ref(), selection.as_ref(), returning.is_some())
            }
            S::Delete(del) => {
                let tables: Vec<sq::ObjectName> = match &del.from {
                    sq::FromTable::WithFromKeyword(t) | sq::FromTable::WithoutKeyword(t) => t.iter().filter_map(table_name).collect(),
                };
                if tables.len() != 1 || !del.tables.is_empty() {
                    return Err(denied("multi-table DELETE is reserved for superusers"));
                }
                self.require_target(&tables[0], Privilege::Delete)?;
                if del.selection.is_some() || del.returning.is_some() {
                    self.require_target(&tables[0], Privilege::Select)?;
                }
                if let Some(using) = &del.using {
                    self.check_parts(using)?;
                }
                if let Some(sel) = &del.selection {
                    self.check_parts(sel)?;
                }
                self.check_functions(st)
            }
            S::Truncate { table_names, .. } => {
                for t in table_names {
                    self.require_target(&t.name, Privilege::Delete)?;
                }
                Ok(())
            }
            S::CreateTable(ct) => {
                self.require_ddl(&ct.name, ct.temporary)?;
                if let Some(q) = &ct.query {
                    self.check_parts(q.as_ref())?;
                }
                self.check_functions(st)
            }
            S::CreateView { name, query, temporary, .. } => {
                self.require_ddl(name, *temporary)?;
                self.check_parts(query.as_ref())?;
                self.check_functions(st)
            }
            S::CreateSchema { schema_name, .. } => {
                let name = match schema_name {
                    sq::SchemaName::Simple(n) | sq::SchemaName::NamedAuthorization(n, _) => n.clone(),
                    sq::SchemaName::UnnamedAuthorization(_) => return Err(denied("CREATE SCHEMA without a name")),
                };
                // A schema name may be `db.schema`.
                let parts = idents(&name);
                let target_db = if parts.len() == 2 { parts[0].clone() } else { db };
                self.require_db(&target_db, Privilege::Create)
            }
            S::CreateSequence { name, temporary, .. } => self.require_ddl(name, *temporary),
            S::CreateIndex(ci) => {
                self.require_target(&ci.table_name, Privilege::Create)?;
                self.check_functions(st)
            }
            S::Drop { object_type, names, .. } => {
                use sq::ObjectType as O;
                match object_type {
                    O::Table | O::View | O::Sequence | O::Index => names.iter().try_for_each(|n| self.require_ddl(n, false)),
                    O::Schema => names.iter().try_for_each(|n| {
                        let parts = idents(n);
                        let target_db = if parts.len() == 2 { parts[0].clone() } else { db.clone() };
                        self.require_db(&target_db, Privilege::Create)
                    }),
                    other => Err(denied(format!("DROP {other} is reserved for superusers"))),
                }
            }
            S::AlterTable { name, .. } => {
                self.require_ddl(name, false)?;
                self.check_functions(st)
            }
            S::Set(set) => self.check_set(set),
            other => {
                let text = other.to_string();
                let words: Vec<&str> = text.split_whitespace().collect();
                let n = if matches!(words.first().map(|w| w.to_ascii_uppercase()).as_deref(), Some("CREATE" | "DROP" | "ALTER" | "FORCE")) {
                    2
                } else {
                    1
                };
                let kind = words.iter().take(n).copied().collect::<Vec<_>>().join(" ").to_ascii_uppercase();
                Err(denied(format!("{kind} statements are reserved for superusers")))
            }
        }
    }

    fn check_update(
        &self,
        st: &sq::Statement,
        table: &sq::TableWithJoins,
        assignments: &[sq::Assignment],
        from: Option<&sq::UpdateTableFromKind>,
        selection: Option<&sq::Expr>,
        returning: bool,
    ) -> Result<()> {
        let Some(target) = table_name(table) else { return Err(denied("UPDATE of this form is reserved for superusers")) };
        if !table.joins.is_empty() {
            return Err(denied("UPDATE with joins is reserved for superusers"));
        }
        self.require_target(&target, Privilege::Update)?;
        if selection.is_some() || returning || from.is_some() {
            self.require_target(&target, Privilege::Select)?;
        }
        if let Some(from) = from {
            self.check_parts(from)?;
        }
        if let Some(sel) = selection {
            self.check_parts(sel)?;
        }
        for a in assignments {
            self.check_parts(&a.value)?;
        }
        self.check_functions(st)
    }

    fn check_set(&self, set: &sq::Set) -> Result<()> {
        // Values must be literals: an expression would run with the setting's rights
        // (and its result could come back in an error message).
        let literal = |e: &sq::Expr| matches!(e, sq::Expr::Value(_) | sq::Expr::Identifier(_));
        let names: Vec<String> = match set {
            sq::Set::SingleAssignment { variable, scope, values, .. } => {
                if scope.is_some() {
                    return Err(denied("SET GLOBAL/SESSION scopes are reserved for superusers"));
                }
                if !values.iter().all(literal) {
                    return Err(denied("SET takes a literal value"));
                }
                vec![variable.to_string()]
            }
            sq::Set::SetTimeZone { value, .. } => {
                if !literal(value) {
                    return Err(denied("SET takes a literal value"));
                }
                vec!["timezone".into()]
            }
            _ => return Err(denied("this SET form is reserved for superusers")),
        };
        for n in names {
            let n = n.to_ascii_lowercase().trim_matches('"').to_string();
            if !ALLOWED_SETTINGS.contains(&n.as_str()) {
                return Err(denied(format!("SET {n} is reserved for superusers (allowed: {})", ALLOWED_SETTINGS.join(", "))));
            }
        }
        Ok(())
    }

    /// Relations read inside part of a statement (sources, subqueries) need SELECT.
    /// Table functions are checked first: a table of the same name must not make
    /// `read_text(…)` look like a table reference.
    fn check_parts<V: Visit>(&self, part: &V) -> Result<()> {
        let mut found = Relations::default();
        let _ = part.visit(&mut found);
        if let Some(bad) = found.denied {
            return Err(denied(format!("{bad} is reserved for superusers")));
        }
        for n in found.tables {
            let parts = idents(&n);
            let p3 = match parts.as_slice() {
                [t] => [String::new(), String::new(), t.clone()],
                [s, t] => [String::new(), s.clone(), t.clone()],
                [c, s, t] => [c.clone(), s.clone(), t.clone()],
                _ => return Err(denied(format!("cannot resolve {n}"))),
            };
            self.check_relation(&p3, &Scope::default(), &self.current_db, &self.current_schema, 0)?;
        }
        Ok(())
    }

    /// Every function called anywhere in the statement.
    fn check_functions(&self, st: &sq::Statement) -> Result<()> {
        let mut out = Ok(());
        let _ = sq::visit_expressions(st, |e| {
            if let sq::Expr::Function(f) = e {
                let parts = idents(&f.name);
                let first = match &f.args {
                    sq::FunctionArguments::List(l) => l.args.first().and_then(|a| match a {
                        sq::FunctionArg::Unnamed(sq::FunctionArgExpr::Expr(sq::Expr::Value(v))) => match &v.value {
                            sq::Value::SingleQuotedString(s) => Some(s.clone()),
                            _ => None,
                        },
                        _ => None,
                    }),
                    _ => None,
                };
                let (name, schema, catalog) = match parts.as_slice() {
                    [n] => (n.clone(), String::new(), String::new()),
                    [s, n] => (n.clone(), s.clone(), String::new()),
                    [c, s, n] => (n.clone(), s.clone(), c.clone()),
                    _ => (String::new(), "?".into(), "?".into()),
                };
                if let Err(e) = self.check_function(
                    &name.to_ascii_lowercase(),
                    &schema,
                    &catalog,
                    first.as_deref(),
                    &self.current_db,
                    &self.current_schema,
                ) {
                    out = Err(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        out
    }

    /// The table a DML statement changes.
    fn require_target(&self, name: &sq::ObjectName, privilege: Privilege) -> Result<()> {
        let parts = idents(name);
        let p3 = match parts.as_slice() {
            [t] => [String::new(), String::new(), t.clone()],
            [s, t] => [String::new(), s.clone(), t.clone()],
            [c, s, t] => [c.clone(), s.clone(), t.clone()],
            _ => return Err(denied(format!("cannot resolve {name}"))),
        };
        let objects = self.resolve(&p3[0], &p3[1], &p3[2], &self.current_db, &self.current_schema)?;
        objects.iter().try_for_each(|o| self.require(o, privilege))
    }

    /// Creating or dropping an object: WRITE on the database it lands in.
    fn require_ddl(&self, name: &sq::ObjectName, temporary: bool) -> Result<()> {
        let parts = idents(name);
        if parts.iter().any(|p| crate::lake::is_hidden_schema(p) || crate::lake::is_hidden_catalog(p)) {
            return Err(denied(format!("{name} is reserved for Pond's time-series storage")));
        }
        let target_db = match parts.as_slice() {
            [_] => self.current_db.clone(),
            [a, _] if self.databases.contains(a) || a == "temp" => a.clone(),
            [_, _] => self.current_db.clone(),
            [c, _, _] => c.clone(),
            _ => return Err(denied(format!("cannot resolve {name}"))),
        };
        if temporary || target_db == "temp" {
            return Ok(());
        }
        self.require_db(&target_db, Privilege::Create)
    }

    fn require_db(&self, db: &str, privilege: Privilege) -> Result<()> {
        if self.databases.iter().any(|d| d == db) && self.policy.allows(self.identity, db, None, privilege) {
            Ok(())
        } else {
            Err(denied(format!("permission denied for database {db} (needs {privilege})")))
        }
    }
}

/// The tables a sqlparser tree reads, and the first source that is not a
/// table (a table function other than the generators, or another form).
#[derive(Default)]
struct Relations {
    tables: Vec<sq::ObjectName>,
    denied: Option<String>,
}

impl sq::Visitor for Relations {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &sq::TableFactor) -> ControlFlow<()> {
        use sq::TableFactor as F;
        let what = match factor {
            F::Table { name, args: Some(_), .. } => {
                let n = idents(name);
                match n.as_slice() {
                    [f] if ALLOWED_TABLE_FUNCTIONS.contains(&f.to_ascii_lowercase().as_str()) => None,
                    _ => Some(format!("table function {name}()")),
                }
            }
            F::Table { name, .. } => {
                self.tables.push(name.clone());
                None
            }
            F::Derived { .. } | F::NestedJoin { .. } | F::UNNEST { .. } => None,
            other => Some(format!("FROM {}", other.to_string().split_whitespace().next().unwrap_or("?"))),
        };
        match what {
            Some(w) => {
                self.denied = Some(w);
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    }
}

/// Tables a successful statement dropped (`None`) or renamed (`Some(new name)`),
/// as written (1 to 3 name parts): their table grants must follow.
pub(crate) fn dropped_or_renamed_tables(sql: &str) -> Vec<(Vec<String>, Option<String>)> {
    let Ok(statements) = sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::DuckDbDialect {}, sql) else { return Vec::new() };
    let mut out = Vec::new();
    for st in &statements {
        match st {
            sq::Statement::Drop { object_type: sq::ObjectType::Table | sq::ObjectType::View, names, .. } => {
                out.extend(names.iter().map(|n| (idents(n), None)));
            }
            sq::Statement::AlterTable { name, operations, .. } => {
                for op in operations {
                    if let sq::AlterTableOperation::RenameTable { table_name } = op {
                        let (sq::RenameTableNameKind::As(new) | sq::RenameTableNameKind::To(new)) = table_name;
                        if let Some(last) = idents(new).pop() {
                            out.push((idents(name), Some(last)));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[derive(Debug, Clone, Default)]
struct Scope {
    names: Vec<String>,
}

fn idents(name: &sq::ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) if i.quote_style.is_some() => i.value.clone(),
            Some(i) => i.value.to_ascii_lowercase(),
            None => p.to_string(),
        })
        .collect()
}

fn table_name(t: &sq::TableWithJoins) -> Option<sq::ObjectName> {
    match &t.relation {
        sq::TableFactor::Table { name, args: None, .. } => Some(name.clone()),
        _ => None,
    }
}

/// The query of a `CREATE [OR REPLACE] [TEMP] VIEW name [(cols)] AS <query>;`
/// text as DuckDB stores it; `None` when the text does not have that shape.
pub(crate) fn view_query(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    // A word (case-insensitive) at i.
    let word = |i: &mut usize, w: &str| -> bool {
        let end = *i + w.len();
        let ok = end <= b.len()
            && sql[*i..end].eq_ignore_ascii_case(w)
            && (end == b.len() || !(b[end].is_ascii_alphanumeric() || b[end] == b'_'));
        if ok {
            *i = end;
        }
        ok
    };
    // An identifier, quoted or not, at i.
    let ident = |i: &mut usize| crate::sql::skip_identifier(b, i);
    skip_ws(&mut i);
    if !word(&mut i, "create") {
        return None;
    }
    skip_ws(&mut i);
    if word(&mut i, "or") {
        skip_ws(&mut i);
        if !word(&mut i, "replace") {
            return None;
        }
        skip_ws(&mut i);
    }
    if word(&mut i, "temporary") || word(&mut i, "temp") {
        skip_ws(&mut i);
    }
    if !word(&mut i, "view") {
        return None;
    }
    skip_ws(&mut i);
    loop {
        if !ident(&mut i) {
            return None;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            continue;
        }
        break;
    }
    skip_ws(&mut i);
    if i < b.len() && b[i] == b'(' {
        i += 1;
        loop {
            skip_ws(&mut i);
            if !ident(&mut i) {
                return None;
            }
            skip_ws(&mut i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b')') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
        skip_ws(&mut i);
    }
    if !word(&mut i, "as") {
        return None;
    }
    let q = sql[i..].trim().trim_end_matches(';').trim();
    (!q.is_empty()).then(|| q.to_string())
}

/// The databases a statement writes to (DML targets, DDL objects, COPY …
/// FROM), resolved against `current_db`; `is_database` tells a database name
/// from a schema name in two-part names. A statement sqlparser cannot read
/// counts as writing to the current database when it starts like a write.
pub(crate) fn written_databases(sql: &str, current_db: &str, is_database: &dyn Fn(&str) -> bool) -> Vec<String> {
    let Ok(statements) = sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::DuckDbDialect {}, sql) else {
        let first = sql.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
        let writes = ["insert", "update", "delete", "create", "drop", "alter", "truncate", "copy", "merge", "upsert"];
        return if writes.contains(&first.as_str()) { vec![current_db.to_string()] } else { Vec::new() };
    };
    let mut names: Vec<sq::ObjectName> = Vec::new();
    let mut schemas: Vec<sq::ObjectName> = Vec::new();
    for st in &statements {
        use sq::Statement as S;
        match st {
            S::Insert(ins) => {
                if let sq::TableObject::TableName(n) = &ins.table {
                    names.push(n.clone());
                }
            }
            S::Update { table, .. } => names.extend(table_name(table)),
            S::Delete(del) => {
                let (sq::FromTable::WithFromKeyword(t) | sq::FromTable::WithoutKeyword(t)) = &del.from;
                names.extend(t.iter().filter_map(table_name));
                names.extend(del.tables.iter().cloned());
            }
            S::Truncate { table_names, .. } => names.extend(table_names.iter().map(|t| t.name.clone())),
            S::CreateTable(ct) => names.push(ct.name.clone()),
            S::CreateView { name, .. } => names.push(name.clone()),
            S::CreateIndex(ci) => names.push(ci.table_name.clone()),
            S::CreateSequence { name, .. } => names.push(name.clone()),
            S::AlterTable { name, .. } => names.push(name.clone()),
            S::Drop { object_type: sq::ObjectType::Schema, names: n, .. } => schemas.extend(n.iter().cloned()),
            S::Drop { names: n, .. } => names.extend(n.iter().cloned()),
            S::CreateSchema { schema_name: sq::SchemaName::Simple(n) | sq::SchemaName::NamedAuthorization(n, _), .. } => {
                schemas.push(n.clone())
            }
            S::Copy { source: sq::CopySource::Table { table_name, .. }, to: false, .. } => names.push(table_name.clone()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for n in names {
        let parts = idents(&n);
        match parts.as_slice() {
            [c, _, _] => out.push(c.clone()),
            [a, _] if is_database(a) => out.push(a.clone()),
            _ => out.push(current_db.to_string()),
        }
    }
    for n in schemas {
        let parts = idents(&n);
        match parts.as_slice() {
            [c, _] => out.push(c.clone()),
            _ => out.push(current_db.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_text_to_query() {
        assert_eq!(view_query("CREATE VIEW v AS SELECT * FROM t;").as_deref(), Some("SELECT * FROM t"));
        assert_eq!(view_query("CREATE VIEW \"a as b\" AS SELECT 1 AS x;").as_deref(), Some("SELECT 1 AS x"));
        assert_eq!(view_query("CREATE VIEW v(a, b) AS SELECT 1, 2;").as_deref(), Some("SELECT 1, 2"));
        assert_eq!(view_query("garbage"), None);
        // A quoted column name must not end the column list early.
        assert_eq!(
            view_query("CREATE VIEW v(\"a) AS SELECT 1 AS q --\") AS SELECT * FROM s.main.t;").as_deref(),
            Some("SELECT * FROM s.main.t")
        );
        assert_eq!(view_query("CREATE VIEW \"x\"\"y\".main.v AS SELECT 2;").as_deref(), Some("SELECT 2"));
    }

    #[test]
    fn written_databases_resolve_targets() {
        let dbs = |n: &str| n == "shop" || n == "other";
        assert_eq!(written_databases("INSERT INTO shop.main.t VALUES (1)", "default", &dbs), vec!["shop"]);
        assert_eq!(written_databases("UPDATE t SET a = 1", "shop", &dbs), vec!["shop"]);
        assert_eq!(written_databases("DELETE FROM shop.t", "default", &dbs), vec!["shop"]);
        assert_eq!(written_databases("DELETE FROM s.t", "default", &dbs), vec!["default"]);
        assert_eq!(written_databases("DROP TABLE other.main.x", "shop", &dbs), vec!["other"]);
        assert_eq!(written_databases("CREATE TABLE x AS SELECT * FROM shop.main.t", "default", &dbs), vec!["default"]);
        assert!(written_databases("SELECT * FROM shop.main.t", "shop", &dbs).is_empty());
        assert_eq!(written_databases("TRUNCATE shop.main.t", "default", &dbs), vec!["shop"]);
    }
}
