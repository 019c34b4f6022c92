//! A backup's manifest: every file of the data directory it holds, with size
//! and SHA-256, and the point in time each part was taken at.

use serde::{Deserialize, Serialize};

/// The manifest format this Pond writes and reads.
pub const FORMAT: u32 = 1;

/// What a file is (restore puts each kind in its place in a data directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `system/pond.json`: databases, users, grants, tokens (hashed), sealed secrets.
    Metadata,
    /// `databases/<id>.duckdb`.
    Database,
    /// `audit/audit.duckdb`.
    Audit,
    /// `lake/catalog.ducklake`.
    LakeCatalog,
    /// `lake/data/...parquet`.
    LakeData,
    /// `ingest/wal-<n>.log`: records not yet in the lake.
    IngestLog,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the data directory.
    pub path: String,
    pub kind: Kind,
    pub size: u64,
    pub sha256: String,
    /// When this file's contents were fixed (RFC 3339): the start of the
    /// transaction that copied it, or the moment the lake was held still.
    pub taken_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Sortable by time: `YYYYMMDDTHHMMSSmmmZ`.
    pub id: String,
    pub started_at: String,
    pub finished_at: String,
    pub pond_version: String,
    pub duckdb_version: String,
    /// Fingerprint of the master key that sealed the secrets (the key itself is never in a backup).
    pub master_key_id: String,
    /// Number of sealed secrets in the metadata.
    pub secrets: usize,
    /// Databases by name and file id.
    pub databases: Vec<(String, String)>,
    /// Highest ingest sequence in the copied log (every write acknowledged
    /// before the lake was held still is in the backup).
    pub lake: Option<LakeEntry>,
    pub files: Vec<FileEntry>,
    /// What the backup could not include, said plainly (e.g. lake data on S3).
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LakeEntry {
    pub taken_at: String,
    /// The DuckLake snapshot the copied catalog ends at.
    pub snapshot_id: Option<i64>,
    pub data_files: u64,
    pub log_bytes: u64,
}

impl Manifest {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}
