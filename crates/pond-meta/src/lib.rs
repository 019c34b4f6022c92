//! Pond's system metadata: the list of databases and the users that may log in
//! with their grants, API tokens and OAuth2 clients, kept as one JSON document `<data-dir>/system/pond.json`.
//!
//! Every change is written to a temporary file, fsynced, renamed over the old
//! document and the directory is fsynced, so a crash at any point leaves either the
//! old or the new document, never a torn one. This crate owns only the format and
//! the atomic write; the engine and the auth crate decide what goes in.
//!
//! Start with [`MetaStore`] and [`SystemMeta`].

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("system metadata I/O error at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("system metadata file {path} is not valid JSON: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One database known to Pond. Its DuckDB file is named by `file_id`, not by its
/// name, so renaming a database is a metadata-only change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatabaseRecord {
    pub name: String,
    pub file_id: String,
    pub created_at: String,
}

/// A user that may log in. `password_hash` is a PHC string (argon2id).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub password_hash: String,
    /// SCRAM-SHA-256 verifier in PostgreSQL's stored form
    /// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64):
    /// enough to check a SCRAM proof, not enough to log in with. Set whenever
    /// the password is set; `None` for roles and for users whose password
    /// predates it (filled in at their next password login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scram_sha256: Option<String>,
    #[serde(default)]
    pub superuser: bool,
    pub created_at: String,
    /// A role groups grants and cannot log in (no password).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_role: bool,
    /// Roles whose grants this user (or role) also has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_of: Vec<String>,
}

/// A privilege granted to a user, on a whole database or on one table (or view).
///
/// Database grants hold `read` and/or `write`; table grants hold any of
/// `select`, `insert`, `update`, `delete`. Names are stored lower-cased as Pond
/// resolves them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GrantRecord {
    pub user: String,
    pub database: String,
    /// `None` for a database-level grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub privileges: Vec<String>,
}

/// An API token. Only a SHA-256 digest of the secret is kept; the secret is shown
/// once when the token is created or rotated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The user whose rights the token carries (never more than that user has).
    pub owner: String,
    /// Hex SHA-256 of the full secret.
    pub secret_sha256: String,
    /// The first characters of the secret, to recognise it in lists.
    pub hint: String,
    /// Databases the token may touch; empty means every database the owner may.
    #[serde(default)]
    pub databases: Vec<String>,
    /// `read` or `write` (write includes read).
    pub permission: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// An OAuth2 client allowed to use the client-credentials flow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OAuthClientRecord {
    pub client_id: String,
    /// PHC string (argon2id) of the client secret.
    pub secret_hash: String,
    /// The user whose rights the client's tokens carry.
    pub user: String,
    #[serde(default)]
    pub databases: Vec<String>,
    pub permission: String,
    pub created_at: String,
}

/// A named credential (`CREATE SECRET`), sealed by the `pond-secrets` crate with
/// AES-256-GCM: this crate stores only the ciphertext, never the values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecretRecord {
    /// Lower-cased secret name.
    pub name: String,
    /// `s3`, `aws`, `gcp` or `postgres`.
    pub secret_type: String,
    pub created_at: String,
    /// Fingerprint of the master key that sealed the record (first 16 hex
    /// characters of the key's SHA-256), so a record sealed by another key is
    /// recognised without trying to open it.
    pub key_id: String,
    /// The 96-bit AES-GCM nonce, base64.
    pub nonce_b64: String,
    /// The sealed options (JSON) with the GCM tag appended, base64.
    pub ciphertext_b64: String,
}

/// An attached external catalog (`ATTACH 'thrift://…' AS name (TYPE hive, …)`),
/// kept as written so a restart attaches it again. Credentials are never
/// stored here: options name a secret instead.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CatalogRecord {
    /// Lower-cased catalog name (a database name in Pond's model).
    pub name: String,
    /// `hive`, …
    pub provider: String,
    pub uri: String,
    /// Upper-cased option names and their values.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
    pub created_at: String,
}

/// A database kept in sync with a PostgreSQL database (`LINK DATABASE`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkRecord {
    /// The Pond database the link owns.
    pub database: String,
    /// A stable id naming the slot, publications or triggers on the source.
    pub id: String,
    /// The Pond secret (TYPE postgres) holding the connection; the string itself is never stored here.
    pub secret: String,
    /// Whether Pond created that secret for this link (and drops it at UNLINK).
    #[serde(default)]
    pub own_secret: bool,
    /// `logical` or `triggers`.
    pub mode: String,
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default)]
    pub tables: Vec<String>,
    pub created_at: String,
}

/// The whole metadata document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SystemMeta {
    /// Format version of this document.
    #[serde(default = "format_version")]
    pub version: u32,
    #[serde(default)]
    pub databases: Vec<DatabaseRecord>,
    #[serde(default)]
    pub users: Vec<UserRecord>,
    #[serde(default)]
    pub grants: Vec<GrantRecord>,
    #[serde(default)]
    pub tokens: Vec<TokenRecord>,
    #[serde(default)]
    pub oauth_clients: Vec<OAuthClientRecord>,
    #[serde(default)]
    pub secrets: Vec<SecretRecord>,
    #[serde(default)]
    pub catalogs: Vec<CatalogRecord>,
    #[serde(default)]
    pub links: Vec<LinkRecord>,
}

fn format_version() -> u32 {
    1
}

/// The metadata document on disk plus an in-memory copy. Changes go through
/// [`MetaStore::update`], which persists before it returns.
pub struct MetaStore {
    path: PathBuf,
    current: Mutex<SystemMeta>,
    /// Bumped by every change, so readers can cache what they derive from it.
    generation: std::sync::atomic::AtomicU64,
}

impl MetaStore {
    /// Opens (or creates) `<dir>/pond.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        let path = dir.join("pond.json");
        // A leftover temp file from a crash mid-write is garbage: the rename never happened.
        let _ = fs::remove_file(tmp_path(&path));
        let current = read(&path)?.unwrap_or_else(|| SystemMeta { version: 1, ..Default::default() });
        Ok(Self { path, current: Mutex::new(current), generation: std::sync::atomic::AtomicU64::new(1) })
    }

    /// A copy of the current document.
    pub fn snapshot(&self) -> SystemMeta {
        self.current.lock().clone()
    }

    /// Applies `f` to a copy of the document; if `f` succeeds the copy is written
    /// atomically and becomes current. Concurrent updates are serialised.
    pub fn update<T, E>(&self, f: impl FnOnce(&mut SystemMeta) -> std::result::Result<T, E>) -> std::result::Result<T, E>
    where
        E: From<Error>,
    {
        let mut guard = self.current.lock();
        let mut next = guard.clone();
        let out = f(&mut next)?;
        if next != *guard {
            write_atomically(&self.path, &next)?;
            *guard = next;
            self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        Ok(out)
    }

    /// Changes with every successful update (starts at 1).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads and parses the document at `path` without changing anything on disk
/// (`pond doctor` checks a data dir this way); `None` when there is no file yet.
pub fn read(path: &Path) -> Result<Option<SystemMeta>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| Error::Corrupt { path: path.to_path_buf(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path: path.to_path_buf(), source }),
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    path.with_extension("json.tmp")
}

fn write_atomically(path: &Path, meta: &SystemMeta) -> Result<()> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let tmp = tmp_path(path);
    let bytes = serde_json::to_vec_pretty(meta).map_err(|e| io(std::io::Error::other(e)))?;
    {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// Current time as RFC 3339 text, for `created_at` fields.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_persists_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path()).unwrap();
        store
            .update(|m| {
                m.databases.push(DatabaseRecord { name: "a".into(), file_id: "f1".into(), created_at: now_rfc3339() });
                Ok::<_, Error>(())
            })
            .unwrap();
        let reopened = MetaStore::open(dir.path()).unwrap();
        assert_eq!(reopened.snapshot().databases[0].name, "a");
    }

    #[test]
    fn failed_update_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path()).unwrap();
        let r: std::result::Result<(), Error> = store.update(|m| {
            m.users.clear();
            m.databases.push(DatabaseRecord { name: "x".into(), file_id: "f".into(), created_at: String::new() });
            Err(Error::Io { path: PathBuf::new(), source: std::io::Error::other("boom") })
        });
        assert!(r.is_err());
        assert!(store.snapshot().databases.is_empty());
        assert!(!store.path().exists());
    }

    #[test]
    fn document_without_secrets_still_loads() {
        let old = r#"{"version":1,"databases":[{"name":"a","file_id":"f1","created_at":"2024-01-01T00:00:00Z"}],"users":[]}"#;
        let meta: SystemMeta = serde_json::from_str(old).unwrap();
        assert_eq!(meta.databases[0].name, "a");
        assert!(meta.secrets.is_empty());
    }

    #[test]
    fn leftover_temp_file_from_crash_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path()).unwrap();
        store
            .update(|m| {
                m.databases.push(DatabaseRecord { name: "kept".into(), file_id: "f".into(), created_at: String::new() });
                Ok::<_, Error>(())
            })
            .unwrap();
        // Simulate a crash after writing the temp file but before the rename.
        fs::write(tmp_path(store.path()), b"{ torn").unwrap();
        let reopened = MetaStore::open(dir.path()).unwrap();
        assert_eq!(reopened.snapshot().databases[0].name, "kept");
    }
}
