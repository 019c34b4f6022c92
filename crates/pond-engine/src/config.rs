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
        }
    }

    pub fn extension_dir(&self) -> PathBuf {
        self.extension_dir.clone().unwrap_or_else(|| self.data_dir.join("extensions"))
    }
}
