//! Pond's system metadata: the list of databases and the users that may log in
//! with their grants, API tokens and OAuth2 clients, kept as one JSON document `<data-dir>/system/pond.json`.
//!
//! Every change is written to a temporary file, fsynced, renamed over the old
//! document and the directory is fsynced, so a crash at any point leaves either the
//! old or the new document, never a torn one. This crate owns only the format and
//! the atomic write; the engine and the auth crate decide what goes in.
//!
//! Several nodes sharing one lake share this document too
//! ([`MetaStore::open_shared`]): a [`SharedBackend`] (PostgreSQL, in
//! `pond-cluster`) holds the authoritative copy with a version number; an
//! update runs `f` on the newest copy while the backend holds the row lock,
//! so two nodes never overwrite each other's change, and
//! [`MetaStore::refresh`] adopts what other nodes wrote. The local file is
//! then a cache of the shared copy.
//!
//! Start with [`MetaStore`] and [`SystemMeta`].

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("system metadata I/O error at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("system metadata file {path} is not valid JSON: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("shared system metadata: {0}")]
    Shared(String),
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

/// Where several nodes keep the one authoritative copy of the document.
pub trait SharedBackend: Send + Sync {
    /// The version of the shared copy (0: none yet). Cheap: polled.
    fn version(&self) -> std::result::Result<u64, String>;
    /// The shared copy and its version, if there is one.
    fn load(&self) -> std::result::Result<Option<(u64, SystemMeta)>, String>;
    /// Locks the shared copy for one update: the lock is released when the
    /// returned transaction is committed or dropped (rolled back).
    fn begin(&self) -> std::result::Result<Box<dyn SharedTxn>, String>;
}

/// One locked update of the shared copy.
pub trait SharedTxn {
    /// The copy as it is under the lock, with its version (none: first use).
    fn current(&self) -> Option<(u64, SystemMeta)>;
    /// Stores `next` as version `version` and releases the lock.
    fn commit(self: Box<Self>, version: u64, next: &SystemMeta) -> std::result::Result<(), String>;
}

/// The metadata document on disk plus an in-memory copy. Changes go through
/// [`MetaStore::update`], which persists before it returns.
pub struct MetaStore {
    path: PathBuf,
    current: Mutex<Current>,
    /// Bumped by every change, so readers can cache what they derive from it.
    generation: std::sync::atomic::AtomicU64,
    shared: Option<Arc<dyn SharedBackend>>,
    /// Called after a change another node made was adopted.
    listeners: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
    /// An update adopted another node's change: the listeners hear of it at
    /// the next [`MetaStore::refresh`] (not inside the update, whose caller
    /// may hold locks the listeners take).
    remote_pending: std::sync::atomic::AtomicBool,
}

struct Current {
    doc: SystemMeta,
    /// The shared copy's version `doc` is (0 without a backend).
    version: u64,
}

impl MetaStore {
    /// Opens (or creates) `<dir>/pond.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let (path, doc) = open_file(dir)?;
        Ok(Self {
            path,
            current: Mutex::new(Current { doc, version: 0 }),
            generation: std::sync::atomic::AtomicU64::new(1),
            shared: None,
            listeners: Mutex::new(Vec::new()),
            remote_pending: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Opens the document shared through `backend`. The first node to start
    /// seeds the shared copy with its local document; every node then keeps
    /// `<dir>/pond.json` as a cache of the shared copy.
    pub fn open_shared(dir: &Path, backend: Arc<dyn SharedBackend>) -> Result<Self> {
        let (path, local) = open_file(dir)?;
        let txn = backend.begin().map_err(Error::Shared)?;
        let (version, doc) = match txn.current() {
            Some(found) => {
                drop(txn);
                found
            }
            None => {
                txn.commit(1, &local).map_err(Error::Shared)?;
                (1, local)
            }
        };
        write_atomically(&path, &doc)?;
        Ok(Self {
            path,
            current: Mutex::new(Current { doc, version }),
            generation: std::sync::atomic::AtomicU64::new(1),
            shared: Some(backend),
            listeners: Mutex::new(Vec::new()),
            remote_pending: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether the document is shared with other nodes.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// A copy of the current document.
    pub fn snapshot(&self) -> SystemMeta {
        self.current.lock().doc.clone()
    }

    /// Applies `f` to a copy of the document; if `f` succeeds the copy is written
    /// atomically and becomes current. Concurrent updates are serialised (with
    /// a shared backend, across nodes: `f` sees the newest shared copy).
    pub fn update<T, E>(&self, f: impl FnOnce(&mut SystemMeta) -> std::result::Result<T, E>) -> std::result::Result<T, E>
    where
        E: From<Error>,
    {
        let mut guard = self.current.lock();
        let Some(backend) = &self.shared else {
            let mut next = guard.doc.clone();
            let out = f(&mut next)?;
            if next != guard.doc {
                write_atomically(&self.path, &next)?;
                guard.doc = next;
                self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
            }
            return Ok(out);
        };
        let txn = backend.begin().map_err(|e| E::from(Error::Shared(e)))?;
        let mut adopted = false;
        if let Some((version, doc)) = txn.current() {
            if version != guard.version {
                guard.doc = doc;
                guard.version = version;
                adopted = true;
            }
        }
        let mut next = guard.doc.clone();
        let result = f(&mut next);
        let changed = result.is_ok() && next != guard.doc;
        if changed {
            let version = guard.version + 1;
            txn.commit(version, &next).map_err(|e| E::from(Error::Shared(e)))?;
            guard.doc = next;
            guard.version = version;
        } else {
            drop(txn);
        }
        if changed || adopted {
            // The cache follows; the shared copy is what counts.
            if let Err(e) = write_atomically(&self.path, &guard.doc) {
                tracing::warn!(error = %e, "cannot update the local cache of the shared system metadata; the next refresh rewrites it");
            }
            self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        if adopted {
            self.remote_pending.store(true, std::sync::atomic::Ordering::Release);
        }
        result
    }

    /// Adopts the shared copy if another node changed it; returns whether it
    /// did. Without a backend: nothing to do.
    pub fn refresh(&self) -> Result<bool> {
        let Some(backend) = &self.shared else { return Ok(false) };
        let pending = self.remote_pending.swap(false, std::sync::atomic::Ordering::AcqRel);
        let version = backend.version().map_err(Error::Shared)?;
        let mut adopted = false;
        if version != self.current.lock().version {
            if let Some((version, doc)) = backend.load().map_err(Error::Shared)? {
                let mut guard = self.current.lock();
                if version > guard.version {
                    write_atomically(&self.path, &doc)?;
                    guard.doc = doc;
                    guard.version = version;
                    self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
                    adopted = true;
                }
            }
        }
        if adopted || pending {
            self.notify();
        }
        Ok(adopted || pending)
    }

    /// Registers `f`, called (on the refreshing thread) after a change made
    /// by another node was adopted.
    pub fn on_remote_change(&self, f: impl Fn() + Send + Sync + 'static) {
        self.listeners.lock().push(Box::new(f));
    }

    fn notify(&self) {
        for f in self.listeners.lock().iter() {
            f();
        }
    }

    /// Changes with every successful update (starts at 1).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens `<dir>/pond.json` (the document, or an empty one).
fn open_file(dir: &Path) -> Result<(PathBuf, SystemMeta)> {
    fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    let path = dir.join("pond.json");
    // A leftover temp file from a crash mid-write is garbage: the rename never happened.
    let _ = fs::remove_file(tmp_path(&path));
    let doc = read(&path)?.unwrap_or_else(|| SystemMeta { version: 1, ..Default::default() });
    Ok((path, doc))
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

    /// A shared copy in memory standing in for PostgreSQL (pond-cluster's
    /// backend is tested against a real one in tests/interop/test_cluster.py).
    /// (One thread uses it, so a transaction needs no lock here.)
    #[derive(Default)]
    struct MemShared {
        copy: Mutex<Option<(u64, SystemMeta)>>,
    }

    struct MemTxn {
        shared: Arc<MemShared>,
    }

    impl SharedBackend for Arc<MemShared> {
        fn version(&self) -> std::result::Result<u64, String> {
            Ok(self.copy.lock().as_ref().map(|c| c.0).unwrap_or(0))
        }
        fn load(&self) -> std::result::Result<Option<(u64, SystemMeta)>, String> {
            Ok(self.copy.lock().clone())
        }
        fn begin(&self) -> std::result::Result<Box<dyn SharedTxn>, String> {
            Ok(Box::new(MemTxn { shared: self.clone() }))
        }
    }

    impl SharedTxn for MemTxn {
        fn current(&self) -> Option<(u64, SystemMeta)> {
            self.shared.copy.lock().clone()
        }
        fn commit(self: Box<Self>, version: u64, next: &SystemMeta) -> std::result::Result<(), String> {
            *self.shared.copy.lock() = Some((version, next.clone()));
            Ok(())
        }
    }

    fn add_db(store: &MetaStore, name: &str) -> std::result::Result<(), Error> {
        store.update(|m| {
            if m.databases.iter().any(|d| d.name == name) {
                return Err(Error::Shared(format!("{name} exists")));
            }
            m.databases.push(DatabaseRecord { name: name.into(), file_id: name.into(), created_at: String::new() });
            Ok(())
        })
    }

    #[test]
    fn nodes_sharing_the_document_see_and_build_on_each_others_changes() {
        let shared: Arc<MemShared> = Arc::default();
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = MetaStore::open_shared(d1.path(), Arc::new(shared.clone())).unwrap();
        let b = MetaStore::open_shared(d2.path(), Arc::new(shared.clone())).unwrap();
        let heard = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = heard.clone();
        b.on_remote_change(move || {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        add_db(&a, "x").unwrap();
        // b has not refreshed, yet its update runs on the newest copy: a's
        // change is kept and a duplicate is refused.
        assert!(add_db(&b, "x").is_err());
        add_db(&b, "y").unwrap();
        let names = |s: &MetaStore| s.snapshot().databases.into_iter().map(|d| d.name).collect::<Vec<_>>();
        assert_eq!(names(&b), ["x", "y"]);
        // The listener hears of the adopted change at the next refresh, not inside the update.
        assert_eq!(heard.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(b.refresh().unwrap());
        assert_eq!(heard.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(names(&a), ["x"]);
        assert!(a.refresh().unwrap());
        assert_eq!(names(&a), ["x", "y"]);
        assert!(!a.refresh().unwrap());
        // The local files are caches of the shared copy.
        assert_eq!(read(a.path()).unwrap().unwrap().databases.len(), 2);
    }
}
