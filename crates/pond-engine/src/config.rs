//! Engine configuration (filled by the CLI or by code embedding Pond).

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Root of everything Pond stores.
    pub data_dir: PathBuf,
    /// DuckDB extension directory; default `<data_dir>/extensions`.
    pub extension_dir: Option<PathBuf>,
    /// Extensions loaded at start (icu by default, so time-zone arithmetic works).
    pub extensions: Vec<String>,
    /// Try `INSTALL` from DuckDB's repository for missing extensions.
    pub install_from_repository: bool,
    /// Most sessions open at once (Flight SQL connections plus in-flight HTTP requests).
    pub max_sessions: usize,
    /// Sessions idle longer than this are closed (open transactions roll back).
    pub idle_timeout: Duration,
    /// Statements running longer than this are interrupted. `None`: no limit.
    pub query_timeout: Option<Duration>,
    /// DuckDB worker threads; `None`: DuckDB's default (all cores).
    pub threads: Option<usize>,
    /// DuckDB memory limit such as "4GB"; `None`: DuckDB's default (80% of RAM).
    pub memory_limit: Option<String>,
    /// Target size of one result message; DuckDB's 2,048-row chunks are coalesced up to it.
    pub result_batch_bytes: usize,
    /// Let DuckDB reach files and URLs outside Pond's directories (superusers only;
    /// non-superusers are sandboxed either way). Off by default.
    pub external_access: bool,
    /// Extra directories (or URL prefixes such as `s3://bucket/`) DuckDB may use
    /// while external access is off.
    pub allowed_paths: Vec<String>,
    /// Where lakes keep their Parquet files: `None` for `<data_dir>/lake/<db-id>/data/`,
    /// or a prefix such as `s3://bucket/prefix` (one sub-prefix per database).
    pub lake_data_path: Option<String>,
    /// S3 settings for `lake_data_path` (a DuckDB secret is created from them).
    pub s3: Option<S3Config>,
    /// The lake's catalog in a PostgreSQL database instead of `<data_dir>/lake/catalog.ducklake`
    /// (so several Pond nodes can share one lake).
    pub lake_catalog: Option<PostgresCatalog>,
    /// Bytes of query results kept by the result cache (`pond-qcache`); 0: off.
    pub query_cache_bytes: usize,
    /// This server is one node of several sharing the lake (`--node-id`):
    /// the connection to the cluster's PostgreSQL, holding the node's name.
    pub cluster: Option<std::sync::Arc<pond_cluster::Cluster>>,
}

/// A PostgreSQL database holding the DuckLake catalog. The password is kept
/// apart from the connection string so it is never printed.
#[derive(Clone, Default)]
pub struct PostgresCatalog {
    /// libpq key/value connection string without the password, e.g.
    /// `host=db.internal port=5432 dbname=lake user=pond`.
    pub conninfo: String,
    pub password: Option<String>,
}

impl PostgresCatalog {
    /// The connection string DuckDB's postgres extension gets (password included).
    pub fn full_conninfo(&self) -> String {
        match &self.password {
            Some(p) => format!("{} password='{}'", self.conninfo, p.replace('\\', "\\\\").replace('\'', "\\'")),
            None => self.conninfo.clone(),
        }
    }
}

impl std::fmt::Debug for PostgresCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCatalog")
            .field("conninfo", &self.conninfo)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// S3-compatible object storage. The secret is never logged or shown.
#[derive(Clone, Default)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`), as MinIO and moto need.
    pub url_style_path: bool,
    /// Plain HTTP to the endpoint (tests, local servers).
    pub use_ssl: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "<set>"))
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("url_style_path", &self.url_style_path)
            .field("use_ssl", &self.use_ssl)
            .finish()
    }
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            extension_dir: None,
            extensions: vec!["icu".to_string()],
            install_from_repository: true,
            max_sessions: 512,
            idle_timeout: Duration::from_secs(3600),
            query_timeout: None,
            threads: None,
            memory_limit: None,
            result_batch_bytes: 1536 * 1024,
            external_access: false,
            allowed_paths: Vec::new(),
            lake_data_path: None,
            s3: None,
            lake_catalog: None,
            query_cache_bytes: 0,
            cluster: None,
        }
    }

    pub fn extension_dir(&self) -> PathBuf {
        self.extension_dir.clone().unwrap_or_else(|| self.data_dir.join("extensions"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_password_is_quoted_for_libpq_and_never_printed() {
        let c = PostgresCatalog { conninfo: "host=h dbname=lake".into(), password: Some(r"it's\x".into()) };
        assert_eq!(c.full_conninfo(), r"host=h dbname=lake password='it\'s\\x'");
        let shown = format!("{c:?}");
        assert!(!shown.contains("it's") && shown.contains("<redacted>"), "{shown}");
        assert_eq!(PostgresCatalog { conninfo: "host=h".into(), password: None }.full_conninfo(), "host=h");
    }
}
