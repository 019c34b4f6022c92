//! External catalogs in the engine: which are attached (persisted in the system
//! metadata), their place in DuckDB, and the rewrite that makes their tables
//! readable in any SELECT.
//!
//! An attached catalog `hive1` is, in DuckDB, an in-memory database of that
//! name holding one schema per metastore database and one placeholder view per
//! table. The views carry the tables' columns and types, so listings
//! (information_schema, DESCRIBE, Flight SQL and PostgreSQL catalogs) show
//! external tables like Pond's own; a placeholder fails if it is ever executed
//! (it is never meant to be). Before a statement runs, every reference to
//! `hive1.<db>.<table>` (and every `metastore_scan('hive1', 'db', 'table')`) is
//! replaced by a subquery over exactly the files of the partitions the
//! statement's conditions on partition keys select — the metastore is asked
//! for those partitions, nothing lists the others (see `pond-catalog`).
//!
//! Grants: an attached catalog is a database in Pond's model; the sandbox
//! checks `SELECT` on `hive1.<db>.<table>` like any table. Writes are refused.
//!
//! Start with [`Engine::attach_catalog`] and [`rewrite`].

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use pond_catalog::{AttachSpec, Catalog, FileLister, ScanPlan};
use serde_json::Value;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::sql::{quote_ident, quote_literal};

/// Catalogs attached in this engine, by lower-cased name.
#[derive(Default)]
pub(crate) struct Externals {
    catalogs: RwLock<BTreeMap<String, Arc<Catalog>>>,
    /// DuckDB storage secrets made from catalogs' own credentials: secret name
    /// → fingerprint of what it holds (re-created only when that changes).
    storage_secrets: parking_lot::Mutex<std::collections::HashMap<String, u64>>,
    /// Placeholder views known to exist: (catalog, namespace, table), lower
    /// case. Saves a look into DuckDB's catalog (under the root connection's
    /// lock) on every read of an external table; dropped for a catalog when it
    /// is attached, detached or refreshed, the only times its views go away.
    placeholders: parking_lot::Mutex<std::collections::HashSet<(String, String, String)>>,
}

impl Externals {
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Catalog>> {
        self.catalogs.read().get(&name.to_ascii_lowercase()).cloned()
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.catalogs.read().keys().cloned().collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.catalogs.read().is_empty()
    }

    /// Forgets the placeholders of `catalog` (of one namespace, or one table).
    fn forget_placeholders(&self, catalog: &str, namespace: Option<&str>, table: Option<&str>) {
        let (ns, t) = (namespace.map(str::to_ascii_lowercase), table.map(str::to_ascii_lowercase));
        self.placeholders
            .lock()
            .retain(|(c, n, tb)| !(c == catalog && ns.as_ref().is_none_or(|x| x == n) && t.as_ref().is_none_or(|x| x == tb)));
    }
}

/// An attached catalog as listings show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExternalCatalogInfo {
    pub name: String,
    pub provider: String,
    pub endpoint: String,
}

/// Tables materialized as placeholder views at ATTACH/REFRESH; bigger
/// catalogs get theirs when first used.
const EAGER_TABLES: usize = 2_000;

impl Engine {
    /// Attaches the catalogs recorded in the metadata (at start). A metastore
    /// that is down does not stop Pond: the placeholders are made on first use.
    pub(crate) fn attach_recorded_catalogs(&self) -> Result<()> {
        for record in self.inner.meta.snapshot().catalogs {
            let spec = AttachSpec { provider: record.provider.clone(), uri: record.uri.clone(), options: record.options.clone() };
            let catalog = match spec.open(&record.name, &|s| self.inner.secrets.get(s).ok()) {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    tracing::error!(catalog = %record.name, error = %e, "cannot open an attached catalog; DETACH it or fix its options");
                    continue;
                }
            };
            self.inner.root.lock().execute_batch(&format!("ATTACH ':memory:' AS {}", quote_ident(&record.name)))?;
            self.inner.externals.catalogs.write().insert(record.name.clone(), catalog.clone());
            let engine = self.clone();
            let name = record.name.clone();
            std::thread::Builder::new()
                .name(format!("pond-catalog-{name}"))
                .spawn(move || {
                    if let Err(e) = engine.materialize(&name, &catalog, None) {
                        tracing::warn!(catalog = %name, error = %e, "catalog not listed at start; its tables appear when first used");
                    }
                })
                .map_err(|e| Error::Internal(format!("cannot start a catalog thread: {e}")))?;
        }
        Ok(())
    }

    /// `ATTACH '<uri>' AS name (TYPE hive, …)`: checks the metastore answers,
    /// records the catalog and lists its tables.
    pub fn attach_catalog(&self, name: &str, spec: AttachSpec, if_not_exists: bool) -> Result<bool> {
        let name = crate::engine::validate_name(name)?;
        if self.inner.externals.get(&name).is_some() {
            return if if_not_exists { Ok(false) } else { Err(Error::AlreadyExists(format!("catalog {name}"))) };
        }
        if self.database_exists(&name) {
            return Err(Error::DatabaseExists(name));
        }
        let catalog = Arc::new(spec.open(&name, &|s| self.inner.secrets.get(s).ok())?);
        // Fail now, with the metastore's answer, rather than at the first query.
        catalog.namespaces()?;
        self.inner.externals.forget_placeholders(&name.to_ascii_lowercase(), None, None);
        self.inner.root.lock().execute_batch(&format!("ATTACH ':memory:' AS {}", quote_ident(&name)))?;
        let record = pond_meta::CatalogRecord {
            name: name.clone(),
            provider: spec.provider.clone(),
            uri: spec.uri.clone(),
            options: spec.options.clone(),
            created_at: chrono::Utc::now().to_rfc3339(),
        };
        let persisted = self.inner.meta.update(|m| {
            m.catalogs.retain(|c| c.name != name);
            m.catalogs.push(record);
            Ok::<_, Error>(())
        });
        if let Err(e) = persisted {
            let _ = self.inner.root.lock().execute_batch(&format!("DETACH {}", quote_ident(&name)));
            return Err(e);
        }
        self.inner.externals.catalogs.write().insert(name.clone(), catalog.clone());
        if let Err(e) = self.materialize(&name, &catalog, None) {
            tracing::warn!(catalog = %name, error = %e, "catalog attached but not fully listed");
        }
        self.catalog_changed();
        tracing::info!(catalog = %name, provider = %spec.provider, endpoint = %catalog.endpoint(), "external catalog attached");
        Ok(true)
    }

    /// `DETACH name` of an external catalog; grants on it go too.
    pub fn detach_catalog(&self, name: &str) -> Result<bool> {
        let key = name.to_ascii_lowercase();
        if self.inner.externals.catalogs.write().remove(&key).is_none() {
            return Ok(false);
        }
        self.inner.meta.update(|m| {
            m.catalogs.retain(|c| c.name != key);
            m.grants.retain(|g| g.database != key);
            Ok::<_, Error>(())
        })?;
        {
            let root = self.inner.root.lock();
            root.execute_batch(&format!("DETACH {}", quote_ident(&key)))?;
            self.inner.externals.forget_placeholders(&key, None, None);
        }
        // The DuckDB secrets made from its credentials go too.
        let prefix = format!("pond_catalog_{key}_");
        let mut made = self.inner.externals.storage_secrets.lock();
        let gone: Vec<String> = made.keys().filter(|n| n.starts_with(&prefix)).cloned().collect();
        for n in gone {
            made.remove(&n);
            let _ = self.inner.root.lock().execute_batch(&format!("DROP SECRET IF EXISTS {}", quote_ident(&n)));
        }
        drop(made);
        self.catalog_changed();
        tracing::info!(catalog = %key, "external catalog detached");
        Ok(true)
    }

    /// `REFRESH CATALOG name [db [table]]`: drops cached metadata and lists again.
    pub fn refresh_catalog(&self, name: &str, namespace: Option<&str>, table: Option<&str>) -> Result<()> {
        let catalog = self.external(name)?;
        catalog.refresh(namespace, table);
        let key = name.to_ascii_lowercase();
        // Views are dropped and forgotten under the root connection's lock,
        // which `ensure_table` holds while it checks and remembers one.
        match (namespace, table) {
            (Some(ns), Some(t)) => {
                let root = self.inner.root.lock();
                root.execute_batch(&format!("DROP VIEW IF EXISTS {}.{}.{}", quote_ident(&key), quote_ident(ns), quote_ident(t)))?;
                self.inner.externals.forget_placeholders(&key, Some(ns), Some(t));
                drop(root);
                self.ensure_table(&key, &catalog, ns, t)?;
            }
            _ => {
                let root = self.inner.root.lock();
                root.execute_batch(&format!("DETACH {k}; ATTACH ':memory:' AS {k}", k = quote_ident(&key)))?;
                self.inner.externals.forget_placeholders(&key, None, None);
                drop(root);
                self.materialize(&key, &catalog, namespace)?;
            }
        }
        self.catalog_changed();
        Ok(())
    }

    /// The attached catalog of this name.
    pub(crate) fn external(&self, name: &str) -> Result<Arc<Catalog>> {
        self.inner.externals.get(name).ok_or_else(|| Error::NotFound(format!("external catalog {name}")))
    }

    /// Whether `name` is an attached external catalog.
    pub fn is_external(&self, name: &str) -> bool {
        self.inner.externals.get(name).is_some()
    }

    /// Every attached catalog, sorted by name.
    pub fn external_catalogs(&self) -> Vec<ExternalCatalogInfo> {
        self.inner
            .externals
            .catalogs
            .read()
            .iter()
            .map(|(name, c)| ExternalCatalogInfo { name: name.clone(), provider: c.kind().to_string(), endpoint: c.endpoint() })
            .collect()
    }

    /// Creates the placeholder schemas and views of a catalog (or of one namespace).
    fn materialize(&self, name: &str, catalog: &Catalog, only: Option<&str>) -> Result<()> {
        let namespaces = match only {
            Some(ns) => vec![ns.to_string()],
            None => catalog.namespaces()?.as_ref().clone(),
        };
        let mut made = 0;
        for ns in namespaces {
            self.inner.root.lock().execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {}.{}", quote_ident(name), quote_ident(&ns)))?;
            for t in catalog.tables(&ns)?.iter() {
                if made >= EAGER_TABLES {
                    tracing::info!(catalog = %name, "large catalog: further tables are listed when first used");
                    return Ok(());
                }
                match self.ensure_table(name, catalog, &ns, t) {
                    Ok(_) => made += 1,
                    Err(e) => tracing::warn!(catalog = %name, table = %format!("{ns}.{t}"), error = %e, "table not listed"),
                }
            }
        }
        Ok(())
    }

    /// The table's metadata, with its placeholder view created if missing.
    fn ensure_table(&self, name: &str, catalog: &Catalog, ns: &str, table: &str) -> Result<Arc<pond_catalog::Table>> {
        let t = catalog.table(ns, table)?;
        let known = (name.to_ascii_lowercase(), t.namespace.to_ascii_lowercase(), t.name.to_ascii_lowercase());
        if self.inner.externals.placeholders.lock().contains(&known) {
            return Ok(t);
        }
        let root = self.inner.root.lock();
        let exists: bool = root
            .prepare_cached("SELECT count(*) > 0 FROM duckdb_views() WHERE database_name = $1 AND schema_name = $2 AND view_name = $3")?
            .query_row([name, &t.namespace, &t.name], |r| r.get(0))?;
        if !exists {
            root.execute_batch(&placeholder_sql(name, &t))?;
        }
        self.inner.externals.placeholders.lock().insert(known);
        drop(root);
        if !exists {
            // Sessions re-read the catalog (limited listings see the new view).
            self.catalog_changed();
        }
        Ok(t)
    }

    /// Gives DuckDB the catalog's own credentials for the bucket of `url`
    /// (Glue: the catalog's AWS credentials, region and S3 endpoint) as an
    /// in-memory secret scoped to that bucket. Catalogs without their own
    /// (Hive) read with Pond's storage secrets as they are.
    fn ensure_storage_access(&self, catalog: &str, url: &str) -> pond_catalog::Result<()> {
        use std::hash::{Hash, Hasher};
        let Some(cat) = self.inner.externals.get(catalog) else { return Ok(()) };
        let Some(access) = cat.storage_access()? else { return Ok(()) };
        let bucket = url.trim_start_matches("s3://").split('/').next().unwrap_or_default().to_string();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&access.key_id, &access.secret, &access.session_token, &access.region, &access.endpoint, &access.url_style, access.use_ssl)
            .hash(&mut h);
        let fingerprint = h.finish();
        let name = format!(
            "pond_catalog_{}_{}",
            catalog,
            bucket.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>()
        );
        if self.inner.externals.storage_secrets.lock().get(&name) == Some(&fingerprint) {
            return Ok(());
        }
        let mut parts = vec![
            "TYPE s3".to_string(),
            format!("KEY_ID {}", quote_literal(&access.key_id)),
            format!("SECRET {}", quote_literal(&access.secret)),
            format!("REGION {}", quote_literal(&access.region)),
            format!("USE_SSL {}", access.use_ssl),
            format!("SCOPE {}", quote_literal(&format!("s3://{bucket}"))),
        ];
        if let Some(t) = &access.session_token {
            parts.push(format!("SESSION_TOKEN {}", quote_literal(t)));
        }
        if let Some(e) = &access.endpoint {
            parts.push(format!("ENDPOINT {}", quote_literal(e)));
        }
        if let Some(u) = &access.url_style {
            parts.push(format!("URL_STYLE {}", quote_literal(u)));
        }
        let sql = format!("CREATE OR REPLACE SECRET {} ({})", quote_ident(&name), parts.join(", "));
        if let Err(e) = self.inner.root.lock().execute_batch(&sql) {
            // DuckDB may quote the statement back: say what failed, never the statement.
            let first = e.to_string().lines().next().unwrap_or_default().replace(&access.secret, "***").replace(&access.key_id, "***");
            let first = match &access.session_token {
                Some(t) => first.replace(t, "***"),
                None => first,
            };
            return Err(pond_catalog::Error::Storage {
                catalog: catalog.to_string(),
                location: format!("s3://{bucket}"),
                message: format!("cannot give DuckDB the catalog's credentials (is the httpfs extension loaded?): {first}"),
            });
        }
        self.inner.externals.storage_secrets.lock().insert(name, fingerprint);
        Ok(())
    }

    /// Lists a partition's files, within the directories Pond may read.
    fn lister(&self, catalog: &str) -> EngineFiles<'_> {
        EngineFiles { engine: self, catalog: catalog.to_string() }
    }
}

/// The placeholder of an external table: its columns, typed, and a body that
/// fails if it is ever executed instead of being rewritten.
fn placeholder_sql(catalog: &str, t: &pond_catalog::Table) -> String {
    let cols: Vec<String> = t
        .columns
        .iter()
        .chain(&t.partition_keys)
        .map(|c| {
            let ty = pond_catalog::types::duckdb_type(&c.catalog_type).unwrap_or_else(|_| "VARCHAR".into());
            format!("CAST(NULL AS {ty}) AS {}", quote_ident(&c.name))
        })
        .collect();
    let message = format!(
        "{catalog}.{}.{} is an external table: it can be read in SELECT, INSERT … SELECT and CREATE TABLE … AS SELECT statements",
        t.namespace, t.name
    );
    format!(
        "CREATE SCHEMA IF NOT EXISTS {c}.{s}; CREATE OR REPLACE VIEW {c}.{s}.{v} AS SELECT {cols} FROM range(1) WHERE error({m}) IS NULL",
        c = quote_ident(catalog),
        s = quote_ident(&t.namespace),
        v = quote_ident(&t.name),
        cols = if cols.is_empty() { "NULL AS no_columns".to_string() } else { cols.join(", ") },
        m = quote_literal(&message),
    )
}

/// The engine's file lister: local directories Pond may read (the
/// operator's `--allowed-paths`, or anything with `--external-access`), and S3
/// prefixes through DuckDB's own globbing (httpfs, with the secrets DuckDB has).
struct EngineFiles<'a> {
    engine: &'a Engine,
    catalog: String,
}

impl EngineFiles<'_> {
    fn check_allowed(&self, location: &str) -> pond_catalog::Result<()> {
        let config = &self.engine.inner.config;
        if config.external_access {
            return Ok(());
        }
        let inside = config.allowed_paths.iter().any(|p| {
            let p = p.trim_end_matches('/');
            location == p || location.starts_with(&format!("{p}/"))
        });
        if inside {
            Ok(())
        } else {
            Err(pond_catalog::Error::Storage {
                catalog: self.catalog.clone(),
                location: location.to_string(),
                message: "it is outside the directories Pond may read; add it (or a parent) to --allowed-paths / POND_ALLOWED_PATHS".into(),
            })
        }
    }
}

impl FileLister for EngineFiles<'_> {
    fn list(&self, location: &str) -> pond_catalog::Result<Vec<String>> {
        match pond_catalog::files::location(&self.catalog, location)? {
            pond_catalog::files::Location::Local(path) => {
                self.check_allowed(&path)?;
                pond_catalog::files::list_local(&self.catalog, std::path::Path::new(&path))
            }
            pond_catalog::files::Location::S3(url) => {
                self.check_allowed(&url)?;
                let started = std::time::Instant::now();
                self.engine.ensure_storage_access(&self.catalog, &url)?;
                let access = started.elapsed();
                let conn = self.engine.root_clone().map_err(|e| pond_catalog::Error::Storage {
                    catalog: self.catalog.clone(),
                    location: url.clone(),
                    message: e.to_string(),
                })?;
                let connect = started.elapsed() - access;
                let pattern = format!("{}/**", url.trim_end_matches('/'));
                let mut stmt = conn.prepare("SELECT file FROM glob($1) ORDER BY file").map_err(|e| storage(&self.catalog, &url, e))?;
                let files: Vec<String> = stmt
                    .query_map([&pattern], |r| r.get::<_, String>(0))
                    .map_err(|e| storage(&self.catalog, &url, e))?
                    .filter_map(|r| r.ok())
                    .filter(|f| f.rsplit('/').next().is_some_and(|n| !pond_catalog::files::is_hidden(n)))
                    .collect();
                tracing::debug!(
                    location = %url,
                    files = files.len(),
                    access_ms = access.as_secs_f64() * 1000.0,
                    connect_ms = connect.as_secs_f64() * 1000.0,
                    total_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "listed an object-store location"
                );
                Ok(files)
            }
        }
    }
}

fn storage(catalog: &str, location: &str, e: duckdb::Error) -> pond_catalog::Error {
    // DuckDB appends the position in its own (internal) statement: not the user's.
    let text = e.to_string();
    let message = text.split("\nLINE ").next().unwrap_or(&text).trim_end().to_string();
    pond_catalog::Error::Storage { catalog: catalog.into(), location: location.into(), message }
}

/// What the rewrite did, for EXPLAIN and logs.
#[derive(Debug, Clone)]
pub(crate) struct ScanNote {
    pub catalog: String,
    pub provider: &'static str,
    pub endpoint: String,
    pub table: String,
    pub plan: ScanPlan,
    /// Metadata, partition selection and listing for this table.
    pub planning: std::time::Duration,
    /// Of which: the table's metadata (cache or catalog call, placeholder check).
    pub metadata: std::time::Duration,
}

impl ScanNote {
    /// One line for EXPLAIN.
    pub(crate) fn describe(&self) -> String {
        let s = &self.plan.selection;
        let total = s.total.map(|t| t.to_string()).unwrap_or_else(|| "?".into());
        format!(
            "external table {}.{} ({} at {}): {} partitions selected of {} ({}), {} files read, format {}, planned in {:.1} ms \
             (metadata {:.1} ms, partitions {:.1} ms, listing {:.1} ms, {} of {} listings cached)",
            self.catalog,
            self.table,
            self.provider,
            self.endpoint,
            s.partitions.len(),
            total,
            s.method,
            self.plan.files,
            self.plan.format,
            self.planning.as_secs_f64() * 1000.0,
            self.metadata.as_secs_f64() * 1000.0,
            self.plan.selecting.as_secs_f64() * 1000.0,
            self.plan.listing.as_secs_f64() * 1000.0,
            self.plan.listings_cached,
            self.plan.listings,
        )
    }
}

/// Whether `sql` may refer to one of `names` (a cheap test before parsing).
pub(crate) fn mentions(sql: &str, names: &[String]) -> bool {
    let lower = sql.to_ascii_lowercase();
    names.iter().any(|n| lower.contains(n.as_str()))
}

/// Replaces every reference to an external table in `sql` (a single SELECT-like
/// statement) by a reader over the selected partitions' files. Returns None when
/// the statement reads no external table.
pub(crate) fn rewrite(engine: &Engine, conn: &duckdb::Connection, sql: &str) -> Result<Option<(String, Vec<ScanNote>)>> {
    let externals = &engine.inner.externals;
    if externals.is_empty() {
        return Ok(None);
    }
    let names = externals.names();
    if !mentions(sql, &names) {
        return Ok(None);
    }
    if let Some(r) = rewrite_explain(engine, conn, sql)? {
        return Ok(Some(r));
    }
    let text: String = conn.prepare_cached("SELECT json_serialize_sql($1::VARCHAR)")?.query_row([sql], |r| r.get(0))?;
    let mut tree: Value = serde_json::from_str(&text).map_err(|e| Error::Internal(format!("unreadable parse tree: {e}")))?;
    if tree.get("error").and_then(Value::as_bool) == Some(true) {
        // Not a SELECT: writes into an external catalog are refused by name;
        // `INSERT … SELECT` and `CREATE TABLE … AS SELECT` get their query
        // rewritten; anything else reads the placeholder views, which say
        // what is possible.
        refuse_writes(sql, &names)?;
        return rewrite_embedded_query(engine, conn, sql);
    }
    let mut notes = Vec::new();
    let mut changed = false;
    if let Some(statements) = tree.get_mut("statements").and_then(Value::as_array_mut) {
        for st in statements {
            if let Some(node) = st.get_mut("node") {
                walk(engine, conn, node, &mut notes, &mut changed)?;
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    let out: String = conn.prepare_cached("SELECT json_deserialize_sql($1::JSON)")?.query_row([tree.to_string()], |r| r.get(0))?;
    Ok(Some((out, notes)))
}

/// `EXPLAIN [ANALYZE] <select over external tables>`: DuckDB's plan of the
/// rewritten query, preceded by one row per external table saying what was
/// selected (provider, endpoint, partitions of total, files, format).
fn rewrite_explain(engine: &Engine, conn: &duckdb::Connection, sql: &str) -> Result<Option<(String, Vec<ScanNote>)>> {
    let trimmed = sql.trim_start();
    let mut words = trimmed.splitn(3, char::is_whitespace);
    if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("explain")) {
        return Ok(None);
    }
    let rest = trimmed["explain".len()..].trim_start();
    let (analyze, query) = match rest.split_once(char::is_whitespace) {
        Some((w, q)) if w.eq_ignore_ascii_case("analyze") => (true, q),
        _ => (false, rest),
    };
    let Some((inner, notes)) = rewrite(engine, conn, query)? else { return Ok(None) };
    let explain = format!("EXPLAIN {}{inner}", if analyze { "ANALYZE " } else { "" });
    let mut stmt = conn.prepare(&explain)?;
    let plan: Vec<(String, String)> =
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?.collect::<std::result::Result<_, _>>()?;
    let rows: Vec<String> = notes
        .iter()
        .map(|n| ("external_scan".to_string(), n.describe()))
        .chain(plan)
        .map(|(k, v)| format!("({}, {})", quote_literal(&k), quote_literal(&v)))
        .collect();
    Ok(Some((format!("SELECT * FROM (VALUES {}) AS explain(explain_key, explain_value)", rows.join(", ")), notes)))
}

/// `INSERT INTO t [(cols)] <query>` and `CREATE TABLE t AS <query>`: the query
/// (the rest of the statement, located by sqlparser) is rewritten like a SELECT.
fn rewrite_embedded_query(engine: &Engine, conn: &duckdb::Connection, sql: &str) -> Result<Option<(String, Vec<ScanNote>)>> {
    use sqlparser::ast::{Spanned, Statement as S};
    let dialect = sqlparser::dialect::DuckDbDialect {};
    let Ok(statements) = sqlparser::parser::Parser::parse_sql(&dialect, sql) else { return Ok(None) };
    let [st] = statements.as_slice() else { return Ok(None) };
    let query = match st {
        S::Insert(i) if i.on.is_none() && i.returning.is_none() => i.source.as_ref(),
        S::CreateTable(c) => c.query.as_ref(),
        _ => None,
    };
    let Some(query) = query else { return Ok(None) };
    let start = query.span().start;
    let Some(offset) = byte_offset(sql, start.line as usize, start.column as usize) else { return Ok(None) };
    let (head, tail) = sql.split_at(offset);
    let tail = tail.trim_end().trim_end_matches(';');
    Ok(rewrite(engine, conn, tail)?.map(|(t, notes)| (format!("{head}{t}"), notes)))
}

/// The byte offset of a 1-based (line, column-in-characters) location.
fn byte_offset(text: &str, line: usize, column: usize) -> Option<usize> {
    if line == 0 || column == 0 {
        return None;
    }
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return l.char_indices().nth(column - 1).map(|(b, _)| offset + b);
        }
        offset += l.len();
    }
    None
}

/// Writes into an external catalog get a clear refusal.
fn refuse_writes(sql: &str, names: &[String]) -> Result<()> {
    let dialect = sqlparser::dialect::DuckDbDialect {};
    let Ok(statements) = sqlparser::parser::Parser::parse_sql(&dialect, sql) else { return Ok(()) };
    use sqlparser::ast::Statement as S;
    for st in &statements {
        let targets: Vec<String> = match st {
            S::Insert(i) => vec![i.table.to_string()],
            S::Update { table, .. } => vec![table.relation.to_string()],
            S::Delete(d) => match &d.from {
                sqlparser::ast::FromTable::WithFromKeyword(t) | sqlparser::ast::FromTable::WithoutKeyword(t) => {
                    t.iter().map(|t| t.relation.to_string()).collect()
                }
            },
            S::CreateTable(c) => vec![c.name.to_string()],
            S::CreateView { name, .. } => vec![name.to_string()],
            S::Drop { names, .. } => names.iter().map(|n| n.to_string()).collect(),
            S::AlterTable { name, .. } => vec![name.to_string()],
            S::Truncate { table_names, .. } => table_names.iter().map(|t| t.name.to_string()).collect(),
            _ => vec![],
        };
        for t in targets {
            let first = t.split('.').next().unwrap_or("").trim_matches('"').to_ascii_lowercase();
            if names.contains(&first) {
                let verb = sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                return Err(Error::InvalidRequest(format!(
                    "{t} is in external catalog {first}, which is read-only: {verb} cannot change it"
                )));
            }
        }
    }
    Ok(())
}

/// Visits every query node; rewrites the external references of each SELECT.
fn walk(engine: &Engine, conn: &duckdb::Connection, v: &mut Value, notes: &mut Vec<ScanNote>, changed: &mut bool) -> Result<()> {
    match v {
        Value::Array(items) => {
            for i in items {
                walk(engine, conn, i, notes, changed)?;
            }
        }
        Value::Object(map) => {
            for (_, child) in map.iter_mut() {
                walk(engine, conn, child, notes, changed)?;
            }
            if map.get("type").and_then(Value::as_str) == Some("SELECT_NODE") {
                let where_clause = map.get("where_clause").cloned().unwrap_or(Value::Null);
                if let Some(from) = map.get_mut("from_table") {
                    rewrite_refs(engine, conn, from, &where_clause, notes, changed)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// An external reference found in a FROM clause.
struct ExternalRef {
    catalog: String,
    namespace: String,
    table: String,
    alias: String,
}

fn external_ref(engine: &Engine, node: &Value) -> Result<Option<ExternalRef>> {
    let s = |k: &str| node.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match node.get("type").and_then(Value::as_str) {
        Some("BASE_TABLE") => {
            let catalog = s("catalog_name");
            if catalog.is_empty() || !engine.is_external(&catalog) {
                return Ok(None);
            }
            Ok(Some(ExternalRef {
                catalog: catalog.to_ascii_lowercase(),
                namespace: s("schema_name"),
                table: s("table_name"),
                alias: s("alias"),
            }))
        }
        Some("TABLE_FUNCTION") => {
            let f = node.get("function");
            let name = f.and_then(|f| f.get("function_name")).and_then(Value::as_str).unwrap_or("");
            if !name.eq_ignore_ascii_case("metastore_scan") {
                return Ok(None);
            }
            let args: Vec<Option<String>> = f
                .and_then(|f| f.get("children"))
                .and_then(Value::as_array)
                .map(|c| {
                    c.iter()
                        .map(|a| {
                            (a.get("class").and_then(Value::as_str) == Some("CONSTANT"))
                                .then(|| a.get("value").and_then(|v| v.get("value")).and_then(Value::as_str).map(str::to_string))
                                .flatten()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let [Some(catalog), Some(namespace), Some(table)] = args.as_slice() else {
                return Err(Error::InvalidRequest(
                    "metastore_scan takes three constant strings: the catalog, the database and the table".into(),
                ));
            };
            if !engine.is_external(catalog) {
                return Err(Error::NotFound(format!("external catalog {catalog} (SHOW DATABASES lists attached catalogs)")));
            }
            let alias = match s("alias") {
                a if a.is_empty() => table.clone(),
                a => a,
            };
            Ok(Some(ExternalRef { catalog: catalog.to_ascii_lowercase(), namespace: namespace.clone(), table: table.clone(), alias }))
        }
        _ => Ok(None),
    }
}

/// Rewrites the external references in one FROM tree (through joins, not into subqueries).
fn rewrite_refs(
    engine: &Engine,
    conn: &duckdb::Connection,
    node: &mut Value,
    where_clause: &Value,
    notes: &mut Vec<ScanNote>,
    changed: &mut bool,
) -> Result<()> {
    if node.get("type").and_then(Value::as_str) == Some("JOIN") {
        for side in ["left", "right"] {
            if let Some(child) = node.get_mut(side) {
                rewrite_refs(engine, conn, child, where_clause, notes, changed)?;
            }
        }
        return Ok(());
    }
    let Some(r) = external_ref(engine, node)? else { return Ok(()) };
    let started = std::time::Instant::now();
    let catalog = engine.external(&r.catalog)?;
    let table = engine.ensure_table(&r.catalog, &catalog, &r.namespace, &r.table)?;
    let metadata = started.elapsed();
    let qualifiers: Vec<String> = if r.alias.is_empty() { vec![r.table.clone()] } else { vec![r.alias.clone()] };
    let keys = Catalog::keys(&table);
    // Columns renamed in the FROM clause (`AS x(a, b)`) would make names in the
    // WHERE mean other columns: no pruning then.
    let renamed = node.get("column_name_alias").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    let pred = if where_clause.is_null() || renamed { None } else { pond_catalog::predicate::extract(where_clause, &qualifiers, &keys) };
    let plan = catalog.plan_scan(&table, pred.as_ref(), &engine.lister(&r.catalog))?;
    let planning = started.elapsed();
    let reader: String = conn.prepare_cached("SELECT json_serialize_sql($1::VARCHAR)")?.query_row([&plan.sql], |row| row.get(0))?;
    let reader: Value = serde_json::from_str(&reader).map_err(|e| Error::Internal(format!("unreadable parse tree: {e}")))?;
    let sub = reader
        .get("statements")
        .and_then(|s| s.get(0))
        .and_then(|s| s.get("node"))
        .cloned()
        .ok_or_else(|| Error::Internal(format!("the reader of {}.{} did not parse", r.catalog, table.qualified())))?;
    let alias = if r.alias.is_empty() { r.table.clone() } else { r.alias.clone() };
    let column_alias = node.get("column_name_alias").cloned().unwrap_or_else(|| Value::Array(vec![]));
    *node = serde_json::json!({
        "type": "SUBQUERY",
        "alias": alias,
        "sample": node.get("sample").cloned().unwrap_or(Value::Null),
        "query_location": node.get("query_location").cloned().unwrap_or(Value::Null),
        "subquery": {"node": sub, "named_param_map": []},
        "column_name_alias": column_alias,
    });
    *changed = true;
    notes.push(ScanNote {
        catalog: r.catalog.clone(),
        provider: catalog.kind(),
        endpoint: catalog.endpoint(),
        table: table.qualified(),
        plan,
        planning,
        metadata,
    });
    Ok(())
}
