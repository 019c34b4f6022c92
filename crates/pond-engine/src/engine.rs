//! [`Engine`]: one DuckDB instance with every Pond database attached, the
//! database catalog (create, drop, rename, list) and the session registry.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use pond_auth::{Authenticator, Identity};
use pond_meta::{DatabaseRecord, MetaStore};

use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::extensions;
use crate::metrics::Metrics;
use crate::session::Session;
use crate::sql::{quote_ident, quote_literal};

/// Name of the database that exists from the first start and cannot be dropped.
pub const DEFAULT_DATABASE: &str = "default";

/// Catalog names DuckDB reserves; Pond databases may not use them.
const RESERVED: &[&str] = &["memory", "system", "temp", "main", "information_schema", "pg_catalog", AUDIT_CATALOG];

/// DuckDB catalog holding the audit log (`pond_system.main.audit_log`), in
/// `<data>/audit/audit.duckdb`; not a Pond database, so only superusers reach it.
pub const AUDIT_CATALOG: &str = "pond_system";

/// A database as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DatabaseInfo {
    pub name: String,
    pub created_at: String,
    pub path: String,
}

/// Cheap to clone; all clones share one DuckDB instance.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: EngineConfig,
    /// Connection used for administration (ATTACH/DETACH) and to open new sessions.
    pub(crate) root: Mutex<duckdb::Connection>,
    /// The DuckDB instance's C handle: connections for describing statements.
    pub(crate) instance: crate::describe::Instance,
    pub(crate) meta: Arc<MetaStore>,
    /// Serialises create/drop/rename so checks and changes do not interleave.
    ddl: Mutex<()>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Every open session, registered or not (HTTP requests), for cancellation.
    pub(crate) live: Mutex<HashMap<String, std::sync::Weak<Session>>>,
    pub(crate) open_sessions: AtomicUsize,
    /// Bumped by every drop or rename, so sessions re-check their database.
    pub(crate) db_generation: std::sync::atomic::AtomicU64,
    pub(crate) metrics: Metrics,
    closed: AtomicBool,
    pub(crate) auth: Arc<Authenticator>,
    /// Names of DuckDB's built-in functions (for the sandbox).
    pub(crate) system_functions: parking_lot::RwLock<Arc<std::collections::HashSet<String>>>,
    /// Bumped after statements that may change the catalog (sessions cache macro names by it).
    pub(crate) catalog_generation: std::sync::atomic::AtomicU64,
    /// DuckDB's parser on a private instance (statement counts for the sandbox).
    pub(crate) statement_counter: crate::parser::StatementCounter,
    /// File ids of databases whose lake schema exists (see `lake.rs`).
    pub(crate) lakes: Mutex<std::collections::HashSet<String>>,
    /// The lake is attached.
    pub(crate) lake_ready: Mutex<bool>,
    /// Sessions with an open transaction, and when it began (see
    /// [`Engine::oldest_open_transaction`]).
    pub(crate) open_transactions: Mutex<HashMap<String, std::time::Instant>>,
    /// Attached external catalogs (see `external.rs`).
    pub(crate) externals: crate::external::Externals,
    /// Pond secrets, sealed in the metadata (see `secrets.rs`).
    pub(crate) secrets: pond_secrets::SecretStore,
    /// Databases linked to PostgreSQL (see `links.rs`).
    pub(crate) links: crate::links::Links,
    /// Idle sessions of finished stateless requests, by caller, protocol and
    /// database (see [`Engine::open_reusable_session`]).
    idle: Mutex<HashMap<IdleKey, Vec<Arc<Session>>>>,
    /// What `BACKUP TO` calls (registered by the server; `backup.rs`).
    pub(crate) backup: parking_lot::RwLock<Option<Arc<dyn crate::backup::BackupService>>>,
    pub(crate) backup_seq: AtomicU64,
    /// The query result cache, when enabled (see `qcache.rs`).
    pub(crate) qcache: Option<crate::qcache::QueryCache>,
    /// Background jobs: continuous queries (`pond-jobs`, see `jobs.rs`).
    pub(crate) jobs: std::sync::OnceLock<Arc<pond_jobs::Jobs>>,
    /// The ingest path import jobs write measurements through (see `jobs.rs`).
    pub(crate) line_writer: parking_lot::RwLock<Option<Arc<dyn crate::jobs::LineWriter>>>,
}

type IdleKey = (Identity, &'static str, Option<String>);

/// Idle sessions kept per caller and database, and in all.
const IDLE_PER_KEY: usize = 4;
const IDLE_TOTAL: usize = 64;
/// An idle session older than this is closed instead of reused.
const IDLE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// A session for one stateless request (HTTP). Dropped when the request is
/// done (its result fully sent), it goes back to the engine for the same
/// caller's next request if it only read; otherwise it closes.
pub struct ReusableSession {
    session: Option<Arc<Session>>,
    engine: std::sync::Weak<Inner>,
    key: Option<IdleKey>,
}

impl std::ops::Deref for ReusableSession {
    type Target = Arc<Session>;
    fn deref(&self) -> &Arc<Session> {
        self.session.as_ref().expect("session present until drop")
    }
}

impl Drop for ReusableSession {
    fn drop(&mut self) {
        let (Some(session), Some(key), Some(inner)) = (self.session.take(), self.key.take(), self.engine.upgrade()) else { return };
        if !session.reusable() || inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut idle = inner.idle.lock();
        if idle.values().map(Vec::len).sum::<usize>() >= IDLE_TOTAL {
            return;
        }
        let list = idle.entry(key).or_default();
        if list.len() < IDLE_PER_KEY {
            session.touch();
            list.push(session);
        }
    }
}

impl Engine {
    /// Opens DuckDB, loads extensions, attaches every database (creating
    /// `default` on the first start) and removes files left by interrupted
    /// create/drop operations.
    pub fn open(config: EngineConfig, meta: Arc<MetaStore>, auth: Arc<Authenticator>, metrics: Metrics) -> Result<Self> {
        let db_dir = databases_dir(&config);
        std::fs::create_dir_all(&db_dir).map_err(|e| Error::io(&db_dir, e))?;
        let ext_dir = config.extension_dir();
        std::fs::create_dir_all(&ext_dir).map_err(|e| Error::io(&ext_dir, e))?;

        // Opened through the C API (`describe.rs`) so that statements can be
        // described on connections of Pond's own. The settings, in this order,
        // are the ones duckdb-rs's `Config` builder applied before
        // (`enable_autoload_extension(true)` sets autoinstall as well as autoload).
        let mut settings: Vec<(&str, String)> = vec![
            ("extension_directory", ext_dir.to_string_lossy().into_owned()),
            ("autoinstall_known_extensions", "false".into()),
            ("autoinstall_known_extensions", "1".into()),
            ("autoload_known_extensions", "1".into()),
        ];
        if let Some(t) = config.threads {
            settings.push(("threads", t.to_string()));
        }
        if let Some(m) = &config.memory_limit {
            settings.push(("max_memory", m.clone()));
        }
        settings.push(("duckdb_api", "rust".into()));
        let instance = crate::describe::Instance::open_in_memory(&settings)?;
        let root = instance.connection()?;
        extensions::load_all(&root, &ext_dir, &config.extensions, config.install_from_repository)?;
        // The lake's extensions (ducklake, httpfs for S3, postgres_scanner for a
        // PostgreSQL catalog), now: loading is not possible once external access
        // is off. A missing one is logged and makes the lake unavailable (503).
        let lake_loaded = crate::lake::load_extensions(&root, &config);
        let system_functions = builtin_functions(&root)?;
        let secrets = crate::secrets::open_store(&config, meta.clone())?;

        let qcache_bytes = config.query_cache_bytes;
        let inner = Arc::new(Inner {
            config,
            root: Mutex::new(root),
            instance,
            meta,
            ddl: Mutex::new(()),
            sessions: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            open_sessions: AtomicUsize::new(0),
            db_generation: std::sync::atomic::AtomicU64::new(0),
            metrics,
            closed: AtomicBool::new(false),
            auth,
            system_functions: parking_lot::RwLock::new(Arc::new(system_functions)),
            catalog_generation: std::sync::atomic::AtomicU64::new(1),
            statement_counter: crate::parser::StatementCounter::new()?,
            lakes: Mutex::new(std::collections::HashSet::new()),
            lake_ready: Mutex::new(false),
            open_transactions: Mutex::new(HashMap::new()),
            externals: Default::default(),
            secrets,
            links: Default::default(),
            idle: Mutex::new(HashMap::new()),
            backup: parking_lot::RwLock::new(None),
            backup_seq: AtomicU64::new(0),
            qcache: (qcache_bytes > 0).then(|| crate::qcache::QueryCache::new(qcache_bytes)),
            jobs: std::sync::OnceLock::new(),
            line_writer: parking_lot::RwLock::new(None),
        });
        let engine = Engine { inner };
        engine.attach_all()?;
        if engine.inner.meta.is_shared() {
            // Databases other nodes create, drop or rename follow here.
            let weak = Arc::downgrade(&engine.inner);
            engine.inner.meta.on_remote_change(move || {
                if let Some(inner) = weak.upgrade() {
                    Engine { inner }.sync_databases();
                }
            });
        }
        engine.install_storage_secrets();
        engine.attach_recorded_catalogs()?;
        engine.start_audit_log()?;
        if lake_loaded {
            let root = engine.inner.root.lock();
            engine.open_lake(&root)?;
        }
        engine.lock_down()?;
        engine.start_recorded_links();
        Ok(engine)
    }

    /// DuckDB's own limits, as defence in depth under Pond's statement checks:
    /// no file or network access outside Pond's directories (plus any the
    /// operator allows), no extension auto-install. Superusers keep everything
    /// else; with `external_access` on they also keep files and URLs.
    fn lock_down(&self) -> Result<()> {
        let config = &self.inner.config;
        if config.external_access {
            tracing::warn!(
                "DuckDB external access is on: superusers can read and write files and URLs (non-superusers are still sandboxed)"
            );
            return Ok(());
        }
        let tmp = config.data_dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut dirs: Vec<String> = vec![
            databases_dir(config).display().to_string(),
            config.data_dir.join("audit").display().to_string(),
            tmp.display().to_string(),
            config.extension_dir().display().to_string(),
            config.data_dir.join("lake").display().to_string(),
        ];
        if let Some(p) = &config.lake_data_path {
            dirs.push(p.clone());
        }
        dirs.extend(config.allowed_paths.iter().cloned());
        let list = dirs.iter().map(|d| quote_literal(&format!("{}/", d.trim_end_matches('/')))).collect::<Vec<_>>().join(", ");
        let root = self.inner.root.lock();
        root.execute_batch(&format!(
            "SET temp_directory = {}; SET allowed_directories = [{list}]; SET enable_external_access = false;",
            quote_literal(&tmp.display().to_string())
        ))?;
        tracing::info!(allowed = %dirs.join(", "), "DuckDB external access off outside Pond's directories");
        Ok(())
    }

    /// Attaches the audit database and stores audit events from the auth layer
    /// in `pond_system.main.audit_log` on a background thread.
    fn start_audit_log(&self) -> Result<()> {
        // Its own directory: DuckDB may touch it, while system/pond.json (password
        // hashes, token digests) stays outside every directory DuckDB may reach.
        let dir = self.inner.config.data_dir.join("audit");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join("audit.duckdb");
        let conn = {
            let root = self.inner.root.lock();
            root.execute_batch(&format!(
                "ATTACH IF NOT EXISTS {} AS {AUDIT_CATALOG}; CREATE TABLE IF NOT EXISTS {AUDIT_CATALOG}.main.audit_log (\
                 \"at\" TIMESTAMPTZ NOT NULL, kind VARCHAR NOT NULL, user_name VARCHAR, source VARCHAR, protocol VARCHAR, \
                 success BOOLEAN NOT NULL, detail VARCHAR NOT NULL)",
                quote_literal(&path.display().to_string())
            ))?;
            root.try_clone()?
        };
        let Some(rx) = self.inner.auth.audit().take_receiver() else { return Ok(()) };
        std::thread::Builder::new()
            .name("pond-audit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                        if batch.len() >= 1000 {
                            break;
                        }
                    }
                    if let Err(e) = write_audit(&conn, &batch) {
                        tracing::warn!(error = %e, events = batch.len(), "could not store audit events (they are in the log)");
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the audit writer: {e}")))?;
        Ok(())
    }

    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.inner.auth
    }

    /// Databases the identity may see, sorted by name.
    /// Attached external catalogs are listed too (with an empty path).
    pub fn visible_databases(&self, identity: &Identity) -> Vec<DatabaseInfo> {
        let policy = self.inner.auth.policy();
        let externals = self.inner.meta.snapshot().catalogs.into_iter().map(|c| DatabaseInfo {
            name: c.name,
            created_at: c.created_at,
            path: String::new(),
        });
        let mut v: Vec<DatabaseInfo> = self
            .databases()
            .into_iter()
            .chain(externals)
            .filter(|d| policy.allows(identity, &d.name, None, pond_auth::Privilege::Usage))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn attach_all(&self) -> Result<()> {
        let inner = &self.inner;
        let mut fresh = None;
        if !inner.meta.snapshot().databases.iter().any(|d| d.name == DEFAULT_DATABASE) {
            let record = new_record(DEFAULT_DATABASE);
            let id = record.file_id.clone();
            // Checked again under the update: another node may have made it.
            let added = inner.meta.update(|m| {
                if m.databases.iter().any(|d| d.name == DEFAULT_DATABASE) {
                    return Ok::<_, Error>(false);
                }
                m.databases.push(record);
                Ok(true)
            })?;
            if added {
                fresh = Some(id);
            }
        }
        let snapshot = inner.meta.snapshot();
        let root = inner.root.lock();
        for db in &snapshot.databases {
            let path = self.file_path(&db.file_id);
            if !path.exists() && fresh.as_deref() != Some(db.file_id.as_str()) {
                tracing::warn!(database = %db.name, path = %path.display(), "database file is missing; starting it empty");
            }
            root.execute_batch(&attach_sql(&path, &db.name))?;
        }
        drop(root);
        self.remove_orphans(&snapshot.databases);
        tracing::info!(databases = snapshot.databases.len(), "databases attached");
        Ok(())
    }

    /// Files in the databases directory that no database refers to are left over
    /// from a crash between a file operation and the metadata write.
    fn remove_orphans(&self, records: &[DatabaseRecord]) {
        let dir = databases_dir(&self.inner.config);
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let id = name.split('.').next().unwrap_or("");
            if !records.iter().any(|r| r.file_id == id) {
                tracing::warn!(file = %name, "removing database file no database refers to");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn file_path(&self, file_id: &str) -> PathBuf {
        databases_dir(&self.inner.config).join(format!("{file_id}.duckdb"))
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// All databases, sorted by name.
    pub fn databases(&self) -> Vec<DatabaseInfo> {
        let mut v: Vec<_> = self
            .inner
            .meta
            .snapshot()
            .databases
            .into_iter()
            .map(|d| DatabaseInfo { path: self.file_path(&d.file_id).display().to_string(), name: d.name, created_at: d.created_at })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Resolves a database name as a client wrote it (case-insensitive).
    pub fn resolve_database(&self, name: &str) -> Result<String> {
        self.inner
            .meta
            .snapshot()
            .databases
            .into_iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
            .map(|d| d.name)
            .ok_or_else(|| Error::DatabaseNotFound(name.to_string()))
    }

    pub fn database_exists(&self, name: &str) -> bool {
        self.resolve_database(name).is_ok()
    }

    /// `CREATE DATABASE`. Returns false if it existed and `if_not_exists`.
    pub fn create_database(&self, name: &str, if_not_exists: bool) -> Result<bool> {
        let name = validate_name(name)?;
        let _ddl = self.inner.ddl.lock();
        if self.database_exists(&name) {
            return if if_not_exists { Ok(false) } else { Err(Error::DatabaseExists(name)) };
        }
        let record = new_record(&name);
        let path = self.file_path(&record.file_id);
        self.inner.root.lock().execute_batch(&attach_sql(&path, &name))?;
        let res = self.inner.meta.update(|m| {
            // Another node sharing the metadata may have created it meanwhile.
            if m.databases.iter().any(|d| d.name == name) {
                return Err(Error::DatabaseExists(name.clone()));
            }
            m.databases.push(record);
            Ok::<_, Error>(())
        });
        if let Err(e) = res {
            let _ = self.inner.root.lock().execute_batch(&format!("DETACH {}", quote_ident(&name)));
            remove_db_files(&path);
            if matches!(e, Error::DatabaseExists(_)) {
                // Another node made it meanwhile: attach it here too.
                self.sync_databases_locked();
                if if_not_exists {
                    return Ok(false);
                }
            }
            return Err(e);
        }
        self.inner.catalog_generation.fetch_add(1, Ordering::SeqCst);
        tracing::info!(database = %name, "database created");
        Ok(true)
    }

    /// `DROP DATABASE`. Returns false if it did not exist and `if_exists`.
    pub fn drop_database(&self, name: &str, if_exists: bool) -> Result<bool> {
        // A linked database stops syncing and cleans its source first.
        self.unlink_if_linked(name)?;
        let _ddl = self.inner.ddl.lock();
        self.sync_databases_locked();
        let Ok(name) = self.resolve_database(name) else {
            return if if_exists { Ok(false) } else { Err(Error::DatabaseNotFound(name.to_string())) };
        };
        if name == DEFAULT_DATABASE {
            return Err(Error::InvalidRequest(format!("database '{DEFAULT_DATABASE}' cannot be dropped")));
        }
        let record = self.record(&name)?;
        let path = self.file_path(&record.file_id);
        self.inner.root.lock().execute_batch(&format!("DETACH {}", quote_ident(&name)))?;
        let res = self.inner.meta.update(|m| {
            m.databases.retain(|d| d.name != name);
            pond_auth::policy::database_dropped(m, &name);
            Ok::<_, Error>(())
        });
        if let Err(e) = res {
            let _ = self.inner.root.lock().execute_batch(&attach_sql(&path, &name));
            return Err(e);
        }
        remove_db_files(&path);
        self.drop_lake(&record.file_id);
        self.inner.db_generation.fetch_add(1, Ordering::SeqCst);
        self.inner.catalog_generation.fetch_add(1, Ordering::SeqCst);
        tracing::info!(database = %name, "database dropped");
        Ok(true)
    }

    /// `ALTER DATABASE from RENAME TO to`: a metadata change plus re-attaching the
    /// same file under the new name.
    pub fn rename_database(&self, from: &str, to: &str) -> Result<()> {
        if self.inner.links.is_linked(from) {
            return Err(Error::InvalidRequest(format!(
                "database {from} is linked to PostgreSQL: UNLINK DATABASE {from} before renaming it"
            )));
        }
        let to = validate_name(to)?;
        let _ddl = self.inner.ddl.lock();
        self.sync_databases_locked();
        let from = self.resolve_database(from)?;
        if from == DEFAULT_DATABASE {
            return Err(Error::InvalidRequest(format!("database '{DEFAULT_DATABASE}' cannot be renamed")));
        }
        if self.database_exists(&to) {
            return Err(Error::DatabaseExists(to));
        }
        let record = self.record(&from)?;
        let path = self.file_path(&record.file_id);
        {
            let root = self.inner.root.lock();
            root.execute_batch(&format!("DETACH {}", quote_ident(&from)))?;
            if let Err(e) = attach_after_detach(&root, &path, &to) {
                let _ = root.execute_batch(&attach_sql(&path, &from));
                return Err(e.into());
            }
        }
        let res = self.inner.meta.update(|m| {
            if m.databases.iter().any(|d| d.name == to) {
                return Err(Error::DatabaseExists(to.clone()));
            }
            if let Some(d) = m.databases.iter_mut().find(|d| d.name == from) {
                d.name = to.clone();
            }
            pond_auth::policy::database_renamed(m, &from, &to);
            Ok::<_, Error>(())
        });
        if let Err(e) = res {
            let root = self.inner.root.lock();
            let _ = root.execute_batch(&format!("DETACH {}", quote_ident(&to)));
            let _ = root.execute_batch(&attach_sql(&path, &from));
            return Err(e);
        }
        self.inner.db_generation.fetch_add(1, Ordering::SeqCst);
        self.inner.catalog_generation.fetch_add(1, Ordering::SeqCst);
        tracing::info!(from = %from, to = %to, "database renamed");
        Ok(())
    }

    /// Makes the attached databases match the metadata after another node
    /// changed it: attaches databases created there (a new local file: each
    /// node keeps its own copy of ordinary tables; measurements live in the
    /// shared lake), detaches and deletes the files of dropped ones, and
    /// re-attaches renamed ones under their new name (matched by file id).
    pub(crate) fn sync_databases(&self) {
        let _ddl = self.inner.ddl.lock();
        self.sync_databases_locked();
    }

    /// [`Engine::sync_databases`] for a caller that holds the DDL lock. A
    /// statement about databases on a node sharing the metadata starts
    /// with it: its update may have adopted another node's change (a
    /// database this node has not attached yet) a moment before.
    fn sync_databases_locked(&self) {
        if !self.inner.meta.is_shared() {
            return;
        }
        let records = self.inner.meta.snapshot().databases;
        let dir = databases_dir(&self.inner.config);
        let attached: Vec<(String, String)> = {
            let root = self.inner.root.lock();
            let listed =
                root.prepare("SELECT database_name, path FROM duckdb_databases() WHERE NOT internal AND path IS NOT NULL").and_then(
                    |mut st| st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?.collect::<Result<Vec<_>, _>>(),
                );
            match listed {
                Ok(v) => v
                    .into_iter()
                    .filter_map(|(name, path)| {
                        let p = std::path::Path::new(&path);
                        (p.parent() == Some(dir.as_path())).then(|| Some((p.file_stem()?.to_string_lossy().into_owned(), name))).flatten()
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list attached databases to follow another node's change");
                    return;
                }
            }
        };
        let mut changed = false;
        let root = self.inner.root.lock();
        for (id, name) in &attached {
            match records.iter().find(|r| &r.file_id == id) {
                Some(r) if &r.name == name => {}
                Some(r) => {
                    let path = self.file_path(id);
                    let res = root
                        .execute_batch(&format!("DETACH {}", quote_ident(name)))
                        .and_then(|_| attach_after_detach(&root, &path, &r.name));
                    match res {
                        Ok(()) => tracing::info!(from = %name, to = %r.name, "database renamed on another node"),
                        Err(e) => tracing::warn!(database = %name, error = %e, "cannot follow another node's rename"),
                    }
                    changed = true;
                }
                None => {
                    if let Err(e) = root.execute_batch(&format!("DETACH {}", quote_ident(name))) {
                        tracing::warn!(database = %name, error = %e, "cannot detach a database another node dropped");
                        continue;
                    }
                    remove_db_files(&self.file_path(id));
                    self.inner.lakes.lock().remove(id);
                    tracing::info!(database = %name, "database dropped on another node");
                    changed = true;
                }
            }
        }
        for r in &records {
            if attached.iter().any(|(id, _)| id == &r.file_id) {
                continue;
            }
            match root.execute_batch(&attach_sql(&self.file_path(&r.file_id), &r.name)) {
                Ok(()) => tracing::info!(database = %r.name, "database created on another node"),
                Err(e) => tracing::warn!(database = %r.name, error = %e, "cannot attach a database another node created"),
            }
            changed = true;
        }
        drop(root);
        if changed {
            self.inner.db_generation.fetch_add(1, Ordering::SeqCst);
            self.inner.catalog_generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn record(&self, name: &str) -> Result<DatabaseRecord> {
        self.inner.meta.snapshot().databases.into_iter().find(|d| d.name == name).ok_or_else(|| Error::DatabaseNotFound(name.to_string()))
    }

    /// Opens a session: its own DuckDB connection with `database` (default:
    /// `default`) as the current database. Long-lived sessions are registered
    /// so they can be found by id and closed when idle.
    pub fn open_session(&self, identity: Identity, protocol: &'static str, database: Option<&str>, register: bool) -> Result<Arc<Session>> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::InvalidRequest("server is shutting down".into()));
        }
        let max = self.inner.config.max_sessions;
        if self.inner.open_sessions.fetch_add(1, Ordering::SeqCst) >= max {
            self.inner.open_sessions.fetch_sub(1, Ordering::SeqCst);
            // Sessions kept idle for reuse give their slots to a new one.
            let idle = std::mem::take(&mut *self.inner.idle.lock());
            if idle.is_empty() {
                return Err(Error::TooManySessions(max));
            }
            drop(idle);
            if self.inner.open_sessions.fetch_add(1, Ordering::SeqCst) >= max {
                self.inner.open_sessions.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::TooManySessions(max));
            }
        }
        self.inner.metrics.sessions_changed(1);
        // From here on the Session's Drop gives the slot back.
        let conn = match self.inner.root.lock().try_clone() {
            Ok(c) => c,
            Err(e) => {
                self.inner.open_sessions.fetch_sub(1, Ordering::SeqCst);
                self.inner.metrics.sessions_changed(-1);
                return Err(e.into());
            }
        };
        let session = Arc::new(Session::new(Arc::downgrade(&self.inner), identity, protocol, conn));
        self.inner.live.lock().insert(session.id.clone(), Arc::downgrade(&session));
        let db = self.resolve_database(database.unwrap_or(DEFAULT_DATABASE))?;
        // Naming a database the caller has no grant on is refused (the default one is
        // where every session starts, with or without grants).
        if database.is_some() && !self.inner.auth.policy().allows(&session.identity, &db, None, pond_auth::Privilege::Usage) {
            return Err(Error::PermissionDenied(format!("permission denied for database {db}")));
        }
        session.use_database_blocking(&db, None)?;
        if register {
            self.inner.sessions.lock().insert(session.id.clone(), session.clone());
        }
        Ok(session)
    }

    /// [`Engine::open_session`] on the blocking pool: opening a connection
    /// takes DuckDB locks, which must not stall the async workers.
    pub async fn open_session_async(
        &self,
        identity: Identity,
        protocol: &'static str,
        database: Option<String>,
        register: bool,
    ) -> Result<Arc<Session>> {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || engine.open_session(identity, protocol, database.as_deref(), register))
            .await
            .map_err(|e| Error::Internal(format!("worker failed: {e}")))?
    }

    /// A session for one stateless request: an idle one the same caller's
    /// earlier request left (same identity, protocol and database; it ran only
    /// reads and is done), else a new one. Saves opening a DuckDB connection
    /// and a thread hand-off per request. The caller's rights are still
    /// re-validated before each statement, as for any session.
    pub async fn open_reusable_session(
        &self,
        identity: Identity,
        protocol: &'static str,
        database: Option<String>,
    ) -> Result<ReusableSession> {
        let key = (identity, protocol, database);
        let reused = {
            let mut idle = self.inner.idle.lock();
            let mut found = None;
            if let Some(list) = idle.get_mut(&key) {
                while let Some(s) = list.pop() {
                    if s.reusable() && s.idle_for() < IDLE_MAX_AGE {
                        found = Some(s);
                        break;
                    }
                }
                if list.is_empty() {
                    idle.remove(&key);
                }
            }
            found
        };
        let session = match reused {
            Some(s) => s,
            None => self.open_session_async(key.0.clone(), protocol, key.2.clone(), false).await?,
        };
        Ok(ReusableSession { session: Some(session), engine: Arc::downgrade(&self.inner), key: Some(key) })
    }

    pub fn session_exists(&self, id: &str) -> bool {
        self.inner.sessions.lock().contains_key(id)
    }

    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.inner.sessions.lock().get(id).cloned();
        if let Some(s) = &s {
            s.touch();
        }
        s
    }

    /// Closes a registered session: cancels what it runs; its connection (and
    /// any open transaction, rolled back) goes when the last user lets go.
    pub fn close_session(&self, id: &str) -> bool {
        let s = self.inner.sessions.lock().remove(id);
        if let Some(s) = &s {
            s.cancel();
        }
        s.is_some()
    }

    pub fn session_count(&self) -> usize {
        self.inner.open_sessions.load(Ordering::SeqCst)
    }

    /// Closes registered sessions idle for longer than the idle timeout.
    pub fn reap_idle_sessions(&self) -> usize {
        self.inner.idle.lock().retain(|_, list| {
            list.retain(|s| s.idle_for() < IDLE_MAX_AGE);
            !list.is_empty()
        });
        let timeout = self.inner.config.idle_timeout;
        let idle: Vec<String> = self
            .inner
            .sessions
            .lock()
            .iter()
            .filter(|(_, s)| !s.is_running() && s.idle_for() > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &idle {
            tracing::info!(session = %id, "closing idle session");
            self.close_session(id);
        }
        idle.len()
    }

    /// Interrupts every running statement of every session (used when a
    /// shutdown's drain period is over).
    pub fn cancel_all(&self) {
        let live: Vec<Arc<Session>> = self.inner.live.lock().values().filter_map(|w| w.upgrade()).collect();
        for s in live {
            s.cancel();
        }
    }

    /// Refuses new sessions, cancels running statements and checkpoints every
    /// database so the files are complete without their WALs.
    pub fn shutdown(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::SeqCst);
        let sessions: Vec<_> = self.inner.sessions.lock().drain().map(|(_, s)| s).collect();
        for s in &sessions {
            s.cancel();
        }
        drop(sessions);
        self.inner.idle.lock().clear();
        // The service holds the engine: dropping it here lets DuckDB close.
        self.clear_backup_service();
        self.cancel_all();
        self.stop_links();
        if let Some(j) = self.inner.jobs.get() {
            j.stop();
        }
        // The writer holds the engine: dropping it here lets DuckDB close.
        self.clear_line_writer();
        let root = self.inner.root.lock();
        for db in self.databases() {
            if let Err(e) = root.execute_batch(&format!("CHECKPOINT {}", quote_ident(&db.name))) {
                tracing::warn!(database = %db.name, error = %e, "checkpoint at shutdown failed");
            }
        }
        tracing::info!("engine shut down");
        Ok(())
    }

    /// DuckDB's version string.
    pub fn duckdb_version(&self) -> String {
        self.inner.root.lock().version().unwrap_or_else(|_| extensions::DUCKDB_VERSION.to_string())
    }
}

impl Inner {
    pub(crate) fn engine(self: &Arc<Self>) -> Engine {
        Engine { inner: self.clone() }
    }
}

pub(crate) fn builtin_functions(conn: &duckdb::Connection) -> Result<std::collections::HashSet<String>> {
    let mut stmt = conn.prepare("SELECT DISTINCT lower(function_name) FROM duckdb_functions() WHERE database_name = 'system'")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<std::result::Result<_, _>>()?;
    Ok(names)
}

fn write_audit(conn: &duckdb::Connection, events: &[pond_auth::AuditEvent]) -> Result<()> {
    conn.execute_batch("BEGIN")?;
    let r = (|| -> Result<()> {
        let mut stmt =
            conn.prepare_cached(&format!("INSERT INTO {AUDIT_CATALOG}.main.audit_log VALUES (CAST(? AS TIMESTAMPTZ), ?, ?, ?, ?, ?, ?)"))?;
        for e in events {
            stmt.execute(duckdb::params![e.at, e.kind, e.user, e.source, e.protocol, e.success, e.detail])?;
        }
        Ok(())
    })();
    match r {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn databases_dir(config: &EngineConfig) -> PathBuf {
    config.data_dir.join("databases")
}

fn new_record(name: &str) -> DatabaseRecord {
    DatabaseRecord { name: name.to_string(), file_id: uuid::Uuid::new_v4().simple().to_string(), created_at: pond_meta::now_rfc3339() }
}

fn attach_sql(path: &std::path::Path, name: &str) -> String {
    format!("ATTACH {} AS {}", quote_literal(&path.to_string_lossy()), quote_ident(name))
}

/// Attaches `path` as `name` right after it was detached under another name.
/// A connection that still holds the detached database (a statement ending
/// on another session) keeps its file registered for a moment; DuckDB then
/// answers "Unique file handle conflict": wait for it, up to a second.
fn attach_after_detach(root: &duckdb::Connection, path: &std::path::Path, name: &str) -> duckdb::Result<()> {
    let mut tries = 0;
    loop {
        match root.execute_batch(&attach_sql(path, name)) {
            Err(e) if tries < 20 && e.to_string().contains("Unique file handle conflict") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn remove_db_files(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("duckdb.wal"));
}

/// Database names: a letter or `_`, then letters, digits or `_`; at most 63
/// characters; not one of DuckDB's reserved catalog names. Stored in lower case.
pub fn validate_name(name: &str) -> Result<String> {
    let bad = |reason: &str| Error::InvalidName { name: name.to_string(), reason: reason.to_string() };
    if name.is_empty() {
        return Err(bad("the name is empty"));
    }
    if name.len() > 63 {
        return Err(bad("at most 63 characters"));
    }
    let mut chars = name.chars();
    let first = chars.next().unwrap_or('0');
    if !(first.is_ascii_alphabetic() || first == '_') {
        return Err(bad("must start with a letter or '_'"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        return Err(bad(&format!("character '{c}' is not allowed (use letters, digits and '_')")));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED.contains(&lower.as_str()) {
        return Err(bad("the name is reserved by DuckDB"));
    }
    Ok(lower)
}

impl Engine {
    pub(crate) fn root_clone(&self) -> Result<duckdb::Connection> {
        Ok(self.inner.root.lock().try_clone()?)
    }

    /// A DuckDB connection of Pond's own, outside every session and sandbox,
    /// for internal writers (time-series ingest). Callers check grants first.
    pub fn internal_connection(&self) -> Result<duckdb::Connection> {
        self.root_clone()
    }

    /// Tells sessions that tables were created or altered outside them, so
    /// listings and statement checks see the change.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    pub fn catalog_changed(&self) {
        self.inner.catalog_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Rows of `database` changed outside a session (time-series ingest, a
    /// flush or compaction, a continuous query), and the change is visible:
    /// cached results that read the database no longer apply.
    pub fn data_changed(&self, database: &str) {
        if let Some(qc) = self.inner.qcache.as_ref() {
            qc.versions.bump(database);
        }
    }

    /// The query result cache's counters and size (`enabled: false` when off).
    pub fn query_cache_stats(&self) -> crate::QueryCacheStats {
        crate::qcache::stats(&self.inner)
    }

    /// Empties the query result cache; returns how many results it held.
    pub fn clear_query_cache(&self) -> usize {
        let n = self.inner.qcache.as_ref().map(|q| q.cache.clear()).unwrap_or(0);
        if let Some(q) = self.inner.qcache.as_ref() {
            self.inner.metrics.query_cache_stored(0, &q.cache.stats());
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert_eq!(validate_name("Sales_2024").unwrap(), "sales_2024");
        for bad in ["", "1abc", "a-b", "a b", "memory", "SYSTEM", "x\"y", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad} should be rejected");
        }
    }
}
