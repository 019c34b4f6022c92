//! The lake: one DuckLake catalog for the instance (`<data-dir>/lake/
//! catalog.ducklake`, Parquet files under `<data-dir>/lake/data/` or an S3
//! prefix), attached under a hidden alias, with one lake schema per Pond
//! database (named by the database's file id), holding the cold part of its
//! time-series measurements.
//!
//! Why one catalog and not one per database: DuckDB cannot attach a second
//! DuckLake once external access is off (checked with 1.5.5: "Failed to
//! initialize DuckLake: Current transaction is aborted"), and Pond turns it
//! off at start; a schema per database keeps the data apart just as well.
//!
//! It owns where the lake lives and attaching it. The names Pond reserves
//! for it, the canonical text of a measurement view ([`measurement_view_query`])
//! that the sandbox recognises, the file layout and writer live in the
//! `pond-lake` crate below (re-exported here); what goes into the lake
//! (flush, compaction, retention) is `pond-ingest`'s business.
//!
//! Look first at [`Engine::attach_lake`] and [`measurement_view_query`].

use std::path::{Path, PathBuf};

use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::sql::{quote_ident, quote_literal};

/// A file in the data dir naming the S3 data path `pond restore
/// --lake-data-path` put this lake's files on; the lake then opens only
/// with that `--lake-data-path` (else every query would miss its files).
pub const LAKE_DATA_PATH_MARKER: &str = "lake/data_path";

pub use pond_lake::{
    is_hidden_catalog, is_hidden_schema, measurement_view_query, Lake, BUFFER_SCHEMA, FLUSHED_TABLE, GEN_COLUMN, HOT_FUNCTION, LAKE_ALIAS,
    RETENTION_TABLE,
};

impl Engine {
    /// When the oldest transaction still open in any session began. Hot rows
    /// a flush moved into the lake stay in memory while a transaction older
    /// than that flush is open: its lake snapshot predates the flush, so it
    /// still reads them from memory (`pond-ingest`'s `hot.rs`).
    pub fn oldest_open_transaction(&self) -> Option<std::time::Instant> {
        self.inner.open_transactions.lock().values().min().copied()
    }

    /// `<data-dir>/lake`: the lake catalog (unless in PostgreSQL) and data (unless on S3).
    pub fn lake_root(&self) -> PathBuf {
        self.inner.config.data_dir.join("lake")
    }

    /// This node's name when several share the lake (`--node-id`), else "".
    pub fn node_id(&self) -> &str {
        self.inner.config.cluster.as_ref().map(|c| c.node()).unwrap_or("")
    }

    /// The cluster this server is a node of, if any.
    pub fn cluster(&self) -> Option<&std::sync::Arc<pond_cluster::Cluster>> {
        self.inner.config.cluster.as_ref()
    }

    /// The nodes sharing the lake, from the cluster's catalog (superusers).
    pub fn cluster_nodes(&self, identity: &pond_auth::Identity) -> Result<Vec<pond_cluster::NodeInfo>> {
        if !identity.effective_superuser() {
            return Err(Error::PermissionDenied("permission denied: only superusers list the cluster's nodes".into()));
        }
        let Some(c) = self.cluster() else {
            return Err(Error::InvalidRequest("this server is not a node of a cluster (start it with --node-id)".into()));
        };
        c.nodes().map_err(|e| Error::Unavailable(e.to_string()))
    }

    /// The lake schema of database file id `id`, as this node sees it.
    pub fn lake_for_id(&self, id: &str) -> Lake {
        Lake::new(id, self.node_id())
    }

    /// Each database's lake part, keyed by its lower-cased name (what the
    /// sandbox and the result cache use to recognise measurement views).
    pub(crate) fn lakes_by_name(&self, infos: &[crate::engine::DatabaseInfo]) -> std::collections::HashMap<String, Lake> {
        infos
            .iter()
            .filter_map(|d| {
                let id = Path::new(&d.path).file_stem()?.to_string_lossy().into_owned();
                Some((d.name.to_ascii_lowercase(), self.lake_for_id(&id)))
            })
            .collect()
    }

    /// A database's stable file id (its lake schema is named by it).
    pub fn database_file_id(&self, name: &str) -> Result<String> {
        self.databases()
            .into_iter()
            .find(|d| d.name == name)
            .and_then(|d| std::path::Path::new(&d.path).file_stem().map(|s| s.to_string_lossy().into_owned()))
            .ok_or_else(|| Error::DatabaseNotFound(name.to_string()))
    }

    /// Where the lake's Parquet files go: `<data-dir>/lake/data/` or the S3 prefix.
    pub fn lake_data_path(&self) -> String {
        match &self.inner.config.lake_data_path {
            Some(p) => format!("{}/", p.trim_end_matches('/')),
            None => format!("{}/", self.lake_root().join("data").display()),
        }
    }

    /// Attaches the lake at start (before external access is turned off). A
    /// missing ducklake extension only disables measurements (logged).
    pub(crate) fn open_lake(&self, root: &duckdb::Connection) -> Result<()> {
        let dir = self.lake_root();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let marker = self.inner.config.data_dir.join(LAKE_DATA_PATH_MARKER);
        if let Ok(text) = std::fs::read_to_string(&marker) {
            let want = text.trim().trim_end_matches('/');
            let given = self.inner.config.lake_data_path.as_deref().map(|p| p.trim_end_matches('/'));
            if given != Some(want) {
                return Err(Error::InvalidRequest(format!(
                    "this data directory's lake was restored onto {want} ({}): start with --lake-data-path {want} and the \
                     --lake-s3-* settings that reach it",
                    marker.display()
                )));
            }
        }
        if self.inner.config.lake_data_path.is_none() {
            let data = dir.join("data");
            std::fs::create_dir_all(&data).map_err(|e| Error::io(&data, e))?;
        }
        if let (Some(s3), Some(prefix)) = (&self.inner.config.s3, &self.inner.config.lake_data_path) {
            root.execute_batch(&s3_secret_sql(s3, prefix)).map_err(|_| {
                // DuckDB's message could quote the statement, which holds the secret.
                Error::InvalidRequest("cannot create the S3 secret for the lake data path (check the S3 settings)".into())
            })?;
        }
        let (location, fresh) = match &self.inner.config.lake_catalog {
            // DuckLake creates its tables in the PostgreSQL database on first use.
            Some(pg) => (format!("ducklake:postgres:{}", pg.full_conninfo()), true),
            None => {
                let file = dir.join("catalog.ducklake");
                (format!("ducklake:{}", file.display()), !file.exists())
            }
        };
        // Small flushes must still become Parquet files (rows inlined in the
        // catalog are much slower to write and to read). DuckLake records the
        // data path and refuses another one; the default path lives inside the
        // data dir and follows it when the directory is moved or restored
        // elsewhere (file paths in the catalog are relative to it). A
        // configured path must match.
        let follow = if self.inner.config.lake_data_path.is_none() && self.inner.config.lake_catalog.is_none() {
            ", OVERRIDE_DATA_PATH true"
        } else {
            ""
        };
        let attach = format!(
            "ATTACH IF NOT EXISTS {} AS {} (DATA_PATH {}, DATA_INLINING_ROW_LIMIT 0{follow})",
            quote_literal(&location),
            quote_ident(LAKE_ALIAS),
            quote_literal(&self.lake_data_path()),
        );
        root.execute_batch(&attach).map_err(|e| {
            let mut msg = e.to_string();
            if let Some(p) = self.inner.config.lake_catalog.as_ref().and_then(|c| c.password.as_deref()).filter(|p| !p.is_empty()) {
                msg = msg.replace(p, "<redacted>");
            }
            Error::InvalidRequest(format!("cannot open the lake catalog: {msg}"))
        })?;
        if fresh {
            root.execute_batch(&format!("CALL {}.set_option('parquet_compression', 'zstd')", quote_ident(LAKE_ALIAS)))?;
        }
        *self.inner.lake_ready.lock() = true;
        Ok(())
    }

    /// Ok when the lake is attached; otherwise [`Error::Unavailable`] naming
    /// the extensions that did not load at start and the command that
    /// installs them. Every use of the lake checks this first.
    pub fn lake_available(&self) -> Result<()> {
        if *self.inner.lake_ready.lock() {
            return Ok(());
        }
        let wanted = lake_extensions(&self.inner.config);
        let loaded = loaded_extensions(&self.inner.root.lock());
        let mut missing: Vec<&str> = wanted.iter().copied().filter(|n| !loaded.contains(*n)).collect();
        if missing.is_empty() {
            missing = wanted;
        }
        Err(Error::Unavailable(unavailable_message(&self.inner.config.extension_dir(), &missing)))
    }

    /// The lake schema of database `db`, created (with its bookkeeping
    /// tables) on first use.
    pub fn attach_lake(&self, db: &str) -> Result<Lake> {
        let id = self.database_file_id(db)?;
        let lake = self.lake_for_id(&id);
        self.lake_available()?;
        let mut lakes = self.inner.lakes.lock();
        if lakes.contains(&id) {
            return Ok(lake);
        }
        let root = self.inner.root.lock();
        // Another node may create the same schema at the same moment: DuckLake
        // refuses the second commit, and the retry finds the schema there.
        pond_lake::retry_conflicts(|| pond_lake::maintenance::ensure_bookkeeping(&root, &lake))
            .map_err(|e| Error::Internal(format!("cannot prepare the lake of database {db}: {e}")))?;
        lakes.insert(id);
        Ok(lake)
    }

    /// Drops a dropped database's lake schema (its files go at the next cleanup).
    pub(crate) fn drop_lake(&self, id: &str) {
        if !*self.inner.lake_ready.lock() {
            return;
        }
        self.inner.lakes.lock().remove(id);
        let lake = self.lake_for_id(id);
        let sql = format!("DROP SCHEMA IF EXISTS {}.{} CASCADE", quote_ident(&lake.catalog), quote_ident(&lake.schema));
        if let Err(e) = self.inner.root.lock().execute_batch(&sql) {
            tracing::warn!(database_id = %id, error = %e, "cannot drop the lake schema of a dropped database");
        }
    }
}

/// Whether `sql` (a view's stored text) is exactly the view Pond generates
/// for measurement `name` of `lake` (normalised by DuckDB's parser), the
/// one test both the sandbox and the result cache make before treating a
/// view as a measurement.
pub fn is_measurement_view_text(conn: &duckdb::Connection, lake: &Lake, name: &str, sql: &str) -> bool {
    let Some(stored) = crate::sandbox::view_query(sql) else { return false };
    let canonical = measurement_view_query(lake, name);
    let normalized: Option<String> = conn
        .prepare_cached("SELECT json_deserialize_sql(json_serialize_sql($1::VARCHAR))")
        .and_then(|mut st| st.query_row([canonical], |r| r.get(0)))
        .ok();
    normalized.is_some_and(|n| n == stored)
}

/// The extensions the lake needs with this configuration: ducklake, httpfs
/// for an S3 data path, postgres_scanner for a PostgreSQL catalog.
pub fn lake_extensions(config: &EngineConfig) -> Vec<&'static str> {
    let mut names = vec!["ducklake"];
    if config.s3.is_some() {
        names.push("httpfs");
    }
    if config.lake_catalog.is_some() {
        names.push("postgres_scanner");
    }
    names
}

/// Loads the lake's extensions at start. They cannot be loaded on first use
/// instead: DuckDB refuses `LOAD` once external access is off, which
/// [`Engine::open`] does right after. A missing one does not stop the start:
/// one error line names it and the command that installs it, and every use
/// of the lake answers [`Error::Unavailable`] until a restart. Returns
/// whether all loaded.
pub(crate) fn load_extensions(root: &duckdb::Connection, config: &EngineConfig) -> bool {
    let dir = config.extension_dir();
    let mut missing = Vec::new();
    for name in lake_extensions(config) {
        if let Err(e) = crate::extensions::load_all(root, &dir, &[name.to_string()], config.install_from_repository) {
            tracing::debug!(extension = name, error = %e, "lake extension did not load");
            missing.push(name);
        }
    }
    if missing.is_empty() {
        return true;
    }
    tracing::error!(
        "{}; until then line-protocol, MessagePack and JSON writes, measurement queries and the lake endpoints answer 503",
        unavailable_message(&dir, &missing)
    );
    false
}

/// What every use of the lake answers while `missing` extensions are not loaded.
fn unavailable_message(extension_dir: &Path, missing: &[&str]) -> String {
    let (what, pronoun) = if missing.len() == 1 { ("extension", "it") } else { ("extensions", "them") };
    format!(
        "time-series storage is unavailable: DuckDB {what} {} did not load at start; install {pronoun} with: {} (then restart pond)",
        missing.join(", "),
        crate::extensions::install_command(extension_dir, missing)
    )
}

/// Names of the extensions loaded in the instance (empty if DuckDB cannot say).
fn loaded_extensions(conn: &duckdb::Connection) -> std::collections::HashSet<String> {
    let names = conn
        .prepare("SELECT extension_name FROM duckdb_extensions() WHERE loaded")
        .and_then(|mut stmt| stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<std::collections::HashSet<String>, _>>());
    names.unwrap_or_default()
}

/// DuckDB's error for a measurement view read while the lake is not attached.
pub(crate) fn is_lake_missing_error(msg: &str) -> bool {
    msg.contains(&format!("Catalog \"{LAKE_ALIAS}\" does not exist"))
}

/// The answer to a measurement query while the lake is not attached (an error
/// conversion knows no extension directory: the start-up log has the command).
pub(crate) fn lake_missing_query_message() -> String {
    "time-series storage is unavailable: DuckDB extension ducklake did not load at start, so measurements cannot be read; \
     install it with: pond extensions install --extension-dir <the server's extension directory> ducklake (the start-up log \
     shows the exact command), then restart pond"
        .to_string()
}

/// `CREATE OR REPLACE SECRET` (in memory only) scoped to the lake data path.
fn s3_secret_sql(s3: &crate::config::S3Config, prefix: &str) -> String {
    let mut parts = vec!["TYPE s3".to_string(), format!("SCOPE {}", quote_literal(prefix))];
    let mut opt = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k} {}", quote_literal(v)));
        }
    };
    opt("KEY_ID", &s3.access_key_id);
    opt("SECRET", &s3.secret_access_key);
    opt("REGION", &s3.region);
    opt("ENDPOINT", &s3.endpoint);
    if s3.url_style_path {
        parts.push("URL_STYLE 'path'".into());
    }
    parts.push(format!("USE_SSL {}", s3.use_ssl));
    format!("CREATE OR REPLACE SECRET pond_lake_s3 ({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_lake_names_the_extensions_and_the_install_command() {
        let dir = Path::new("/srv/pond/extensions");
        let one = unavailable_message(dir, &["ducklake"]);
        assert!(one.contains("extension ducklake did not load"), "{one}");
        assert!(one.contains("pond extensions install --extension-dir /srv/pond/extensions ducklake "), "{one}");
        let two = unavailable_message(dir, &["ducklake", "httpfs"]);
        assert!(
            two.contains("extensions ducklake, httpfs") && two.contains("--extension-dir /srv/pond/extensions ducklake httpfs"),
            "{two}"
        );

        let mut config = EngineConfig::new("/srv/pond");
        assert_eq!(lake_extensions(&config), vec!["ducklake"]);
        config.s3 = Some(crate::config::S3Config::default());
        assert_eq!(lake_extensions(&config), vec!["ducklake", "httpfs"]);

        assert!(is_lake_missing_error("Binder Error: Catalog \"__pond_lake\" does not exist!"));
        assert!(!is_lake_missing_error("Binder Error: Catalog \"lake\" does not exist!"));
        let e: Error = Error::Unavailable(lake_missing_query_message());
        assert_eq!(e.kind(), crate::ErrorKind::Unavailable);
        assert_eq!(e.code(), "unavailable");
    }
}
