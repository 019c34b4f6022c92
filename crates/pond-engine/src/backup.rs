//! What the engine gives a backup, and the hook `BACKUP TO` calls.
//!
//! The engine owns the DuckDB files, so it is the one that can copy them
//! while they are in use: [`Engine::copy_catalog_to`] copies one attached
//! catalog (a Pond database, the audit log, the lake's DuckLake catalog) into
//! a new DuckDB file with `COPY FROM DATABASE`, a single statement and so a
//! single transaction: the copy is the catalog as of that transaction's
//! start, while writers go on. Everything else a backup needs (the ingest
//! log, the lake's Parquet files, where the backup goes, manifests) belongs
//! to `pond-backup`, which registers itself as the [`BackupService`] so that
//! the SQL statement reaches it without the engine depending on it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sql::{quote_ident, quote_literal};
use crate::{Engine, Error, Result};

/// The result of one backup, as `BACKUP TO` answers it.
#[derive(Debug, Clone, Default)]
pub struct BackupSummary {
    /// The backup's id (its name in the target).
    pub id: String,
    /// Where it went (never with credentials).
    pub target: String,
    pub files: u64,
    /// Bytes written to the target by this backup.
    pub bytes_copied: u64,
    /// Bytes this backup shares with earlier ones in the same target (not copied again).
    pub bytes_reused: u64,
    pub seconds: f64,
    /// How long flushes and compaction were held while the lake and the log were taken.
    pub lake_pause_seconds: f64,
}

/// Runs backups for `BACKUP TO` and the HTTP API (implemented by `pond-backup`).
pub trait BackupService: Send + Sync {
    /// Takes a backup to `target` (a directory or `s3://bucket/prefix`; the
    /// configured default when `None`).
    fn backup(&self, target: Option<&str>) -> std::result::Result<BackupSummary, String>;
    /// Status for the HTTP API: the last run, the schedule, the backups in the default target.
    fn status(&self) -> serde_json::Value;
}

/// One attached catalog a backup copies, and where it belongs in a data directory.
#[derive(Debug, Clone)]
pub struct BackupCatalog {
    /// DuckDB catalog name.
    pub catalog: String,
    /// Path relative to the data directory (`databases/<id>.duckdb`, …).
    pub relative_path: String,
}

impl Engine {
    /// Registers the service `BACKUP TO` runs (once, at start).
    pub fn set_backup_service(&self, service: Arc<dyn BackupService>) {
        *self.inner.backup.write() = Some(service);
    }

    /// The registered backup service, if any.
    pub fn backup_service(&self) -> Option<Arc<dyn BackupService>> {
        self.inner.backup.read().clone()
    }

    pub(crate) fn clear_backup_service(&self) {
        self.inner.backup.write().take();
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    /// The system metadata as it is now (users, grants, databases, sealed secrets…).
    pub fn meta_snapshot(&self) -> pond_meta::SystemMeta {
        self.inner.meta.snapshot()
    }

    /// The fingerprint of the master key that seals the secrets.
    pub fn master_key_id(&self) -> String {
        self.inner.secrets.key_id().to_string()
    }

    /// The catalogs a backup copies for `meta`'s databases: every database's
    /// file, the audit log and, when the lake is attached, its DuckLake catalog.
    pub fn backup_catalogs(&self, meta: &pond_meta::SystemMeta) -> Vec<BackupCatalog> {
        let mut out: Vec<BackupCatalog> = meta
            .databases
            .iter()
            .map(|d| BackupCatalog { catalog: d.name.clone(), relative_path: format!("databases/{}.duckdb", d.file_id) })
            .collect();
        out.push(BackupCatalog { catalog: crate::AUDIT_CATALOG.to_string(), relative_path: "audit/audit.duckdb".into() });
        if *self.inner.lake_ready.lock() {
            out.push(BackupCatalog { catalog: lake_metadata_catalog(), relative_path: "lake/catalog.ducklake".into() });
        }
        out
    }

    /// Copies attached catalog `catalog` into a new DuckDB file `dest` (which
    /// must not exist, inside a directory DuckDB may write: the data dir's
    /// `tmp/`). One `COPY FROM DATABASE` statement: schemas, tables with
    /// their rows, views, macros, sequences with their current values,
    /// types, indexes, as of one transaction.
    pub fn copy_catalog_to(&self, catalog: &str, dest: &Path) -> Result<()> {
        let conn = self.root_clone()?;
        let alias = format!("__pond_backup_{}", self.inner.backup_seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        conn.execute_batch(&format!("ATTACH {} AS {}", quote_literal(&dest.display().to_string()), quote_ident(&alias)))?;
        // The copy is checkpointed before it is detached: DuckDB may close a
        // detached database later (when the last reference goes), and the
        // backup reads the file right after this returns; without the
        // checkpoint a restored copy was once found cut short.
        let copied = conn.execute_batch(&format!("COPY FROM DATABASE {} TO {}", quote_ident(catalog), quote_ident(&alias)));
        if copied.is_ok() {
            // Best effort: DETACH checkpoints too when it closes the file at once.
            if let Err(e) = conn.execute_batch(&format!("CHECKPOINT {}", quote_ident(&alias))) {
                tracing::debug!(catalog, error = %e, "checkpoint of the staged copy did not run; relying on DETACH");
            }
        }
        let detached = conn.execute_batch(&format!("DETACH {}", quote_ident(&alias)));
        copied.map_err(|e| {
            let e = e.to_string();
            if e.contains("can only write to a single attached database") {
                // A column default such as nextval('db.main.seq') names its own database: DuckDB
                // binds it against the original while creating the copy, which writes to both.
                Error::InvalidRequest(format!(
                    "cannot copy database {catalog} for the backup: a column default calls nextval() with a \
                     database-qualified sequence name ({catalog}.schema.sequence), which DuckDB cannot copy to another \
                     database; write the default unqualified (USE {catalog}; … DEFAULT nextval('sequence'))"
                ))
            } else {
                Error::Internal(format!("cannot copy {catalog} for the backup: {e}"))
            }
        })?;
        detached?;
        Ok(())
    }

    /// Where backups stage their copies before they go to the target.
    pub fn backup_staging_dir(&self) -> PathBuf {
        self.inner.config.data_dir.join("tmp")
    }

    /// The directory holding the lake's Parquet files when it is local
    /// (`None` for an S3 data path).
    pub fn lake_local_data_dir(&self) -> Option<PathBuf> {
        let p = self.lake_data_path();
        if p.contains("://") {
            None
        } else {
            Some(PathBuf::from(p))
        }
    }
}

/// The name DuckLake gives the metadata catalog behind Pond's lake.
pub fn lake_metadata_catalog() -> String {
    format!("__ducklake_metadata_{}", pond_lake::LAKE_ALIAS)
}

impl Engine {
    /// The lake's current DuckLake snapshot id.
    pub fn lake_snapshot_id(&self) -> Result<i64> {
        let conn = self.root_clone()?;
        let id: i64 = conn.query_row(
            &format!("SELECT max(snapshot_id) FROM {}.main.ducklake_snapshot", quote_ident(&lake_metadata_catalog())),
            [],
            |r| r.get(0),
        )?;
        Ok(id)
    }
}
