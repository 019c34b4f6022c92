//! Online backups of a Pond server, and restore.
//!
//! A backup holds everything Pond owns — the system metadata (users, grants,
//! hashed tokens, secrets still sealed), every database, the audit log, the
//! lake's DuckLake catalog and Parquet files and the ingest log records not
//! yet in the lake — taken while the server keeps serving (`take.rs` says
//! how each part is made consistent). Backups go to a target directory as
//! content-addressed objects plus one manifest per backup (`store.rs`), so a
//! later backup stores only what changed: new Parquet files, and the
//! databases, which are copied whole (a logical copy per database, never a
//! torn file). `restore.rs` checks every object against the manifest before
//! it writes a new data directory.
//!
//! [`Backups`] is the service the server runs: `BACKUP TO` and the HTTP API
//! call it through `pond_engine::BackupService`, and it runs scheduled
//! backups with retention. Read [`take::take`] and [`restore::restore`] first.

pub mod manifest;
pub mod restore;
pub mod rewind;
mod s3lake;
pub mod store;
pub mod take;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pond_engine::{BackupService, BackupSummary, Engine};
use pond_ingest::Ingester;
use serde_json::json;

pub use manifest::{FileEntry, Kind, Manifest};
pub use restore::{KeySource, Restored};
pub use store::Store;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    InvalidTarget(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Damaged(String),
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    MasterKey(String),
    #[error("a file changed during the backup: {0}")]
    Changed(String),
    #[error("{0}")]
    Engine(String),
    #[error("backup target {0}")]
    Target(String),
    #[error("a backup is already running; try again when it has finished")]
    Busy,
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Scheduled backups: where, how often, how many to keep.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    /// The default target (`BACKUP` without `TO`, scheduled runs).
    pub target: Option<String>,
    pub every: Option<Duration>,
    /// Keep this many newest backups in the target after each scheduled run (0: keep all).
    pub keep: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
struct LastRun {
    id: Option<String>,
    target: String,
    started_at: String,
    finished_at: String,
    ok: bool,
    error: Option<String>,
    files: u64,
    bytes_copied: u64,
    bytes_reused: u64,
    seconds: f64,
    pruned: Vec<String>,
}

struct Inner {
    engine: Engine,
    ingest: Option<Ingester>,
    schedule: Schedule,
    /// One backup at a time.
    running: Mutex<()>,
    last: Mutex<Option<LastRun>>,
    next_at: Mutex<Option<String>>,
}

/// The backup service of one server. Cheap to clone.
#[derive(Clone)]
pub struct Backups {
    inner: Arc<Inner>,
}

impl Backups {
    pub fn new(engine: Engine, ingest: Option<Ingester>, schedule: Schedule) -> Self {
        // Staging directories of a backup interrupted by a crash (hard links: they pin disk space).
        if let Ok(entries) = std::fs::read_dir(engine.backup_staging_dir()) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("backup-") {
                    tracing::info!(path = %e.path().display(), "removing the staging directory of an interrupted backup");
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Self {
            inner: Arc::new(Inner { engine, ingest, schedule, running: Mutex::new(()), last: Mutex::new(None), next_at: Mutex::new(None) }),
        }
    }

    /// Takes a backup now into `target` (or the schedule's target).
    pub fn run(&self, target: Option<&str>) -> Result<take::Taken> {
        let target = match target.or(self.inner.schedule.target.as_deref()) {
            Some(t) => t.to_string(),
            None => {
                return Err(Error::InvalidTarget(
                    "no backup target: say BACKUP TO '<directory>' or start the server with --backup-to".into(),
                ))
            }
        };
        let store = Store::open(&target)?;
        let Some(_running) = self.inner.running.try_lock() else { return Err(Error::Busy) };
        let started_at = pond_meta::now_rfc3339();
        let t0 = std::time::Instant::now();
        let r = take::take(&self.inner.engine, self.inner.ingest.as_ref(), &store);
        let metrics = self.inner.engine.metrics();
        let mut last = LastRun { target: target.clone(), started_at, finished_at: pond_meta::now_rfc3339(), ..Default::default() };
        match &r {
            Ok(t) => {
                last.id = Some(t.manifest.id.clone());
                last.ok = true;
                last.files = t.manifest.files.len() as u64;
                last.bytes_copied = t.bytes_copied;
                last.bytes_reused = t.bytes_reused;
                last.seconds = t.seconds;
                metrics.record_backup(true, t.seconds, t.bytes_copied, t.bytes_reused);
                tracing::info!(id = %t.manifest.id, target = %target, files = last.files, bytes_copied = t.bytes_copied, bytes_reused = t.bytes_reused, seconds = t.seconds, "backup taken");
            }
            Err(e) => {
                last.error = Some(e.to_string());
                last.seconds = t0.elapsed().as_secs_f64();
                metrics.record_backup(false, last.seconds, 0, 0);
                tracing::error!(target = %target, error = %e, "backup failed");
            }
        }
        *self.inner.last.lock() = Some(last);
        r
    }

    /// Deletes the oldest backups in `target` beyond `keep`, then the objects
    /// only they used. Returns the deleted ids.
    pub fn prune(&self, target: &str, keep: usize) -> Result<Vec<String>> {
        let store = Store::open(target)?;
        let _running = self.inner.running.lock();
        prune(&store, keep)
    }

    /// Starts the schedule's thread (when it has a target and an interval).
    pub fn start_schedule(&self) -> Result<()> {
        let (Some(target), Some(every)) = (self.inner.schedule.target.clone(), self.inner.schedule.every) else { return Ok(()) };
        Store::open(&target)?;
        let weak = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("pond-backup".into())
            .spawn(move || loop {
                let due = std::time::Instant::now() + every;
                if let Some(inner) = weak.upgrade() {
                    *inner.next_at.lock() = Some((chrono::Utc::now() + chrono::Duration::from_std(every).unwrap_or_default()).to_rfc3339());
                }
                // Sleep in short steps so a stopped server's thread ends soon.
                while std::time::Instant::now() < due {
                    std::thread::sleep(Duration::from_millis(200).min(due.saturating_duration_since(std::time::Instant::now())));
                    if weak.strong_count() == 0 {
                        return;
                    }
                }
                let Some(inner) = weak.upgrade() else { return };
                let backups = Backups { inner };
                if backups.run(Some(&target)).is_ok() && backups.inner.schedule.keep > 0 {
                    match backups.prune(&target, backups.inner.schedule.keep) {
                        Ok(gone) => {
                            if let Some(l) = backups.inner.last.lock().as_mut() {
                                l.pruned = gone;
                            }
                        }
                        Err(e) => tracing::warn!(target = %target, error = %e, "pruning old backups failed"),
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the backup thread: {e}")))?;
        Ok(())
    }
}

/// Deletes the oldest backups of `store` beyond `keep` (0 keeps all) and the
/// objects no remaining backup uses.
pub fn prune(store: &Store, keep: usize) -> Result<Vec<String>> {
    if keep == 0 {
        return Ok(Vec::new());
    }
    let ids = store.list()?;
    let gone: Vec<String> = ids.iter().take(ids.len().saturating_sub(keep)).cloned().collect();
    for id in &gone {
        store.delete_manifest(id)?;
    }
    if !gone.is_empty() {
        store.collect_garbage()?;
    }
    Ok(gone)
}

impl BackupService for Backups {
    fn backup(&self, target: Option<&str>) -> std::result::Result<BackupSummary, String> {
        let t = self.run(target).map_err(|e| e.to_string())?;
        let target = target.or(self.inner.schedule.target.as_deref()).unwrap_or_default().to_string();
        Ok(BackupSummary {
            id: t.manifest.id.clone(),
            target,
            files: t.manifest.files.len() as u64,
            bytes_copied: t.bytes_copied,
            bytes_reused: t.bytes_reused,
            seconds: t.seconds,
            lake_pause_seconds: t.lake_pause_seconds,
        })
    }

    fn status(&self) -> serde_json::Value {
        let s = &self.inner.schedule;
        let backups: Vec<serde_json::Value> = s
            .target
            .as_deref()
            .and_then(|t| Store::open(t).ok())
            .map(|store| {
                store
                    .list()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|id| store.read_manifest(id).ok())
                    .map(|m| json!({"id": m.id, "started_at": m.started_at, "finished_at": m.finished_at, "files": m.files.len(), "bytes": m.total_bytes()}))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "running": self.inner.running.is_locked(),
            "schedule": {
                "target": s.target,
                "every_secs": s.every.map(|d| d.as_secs()),
                "keep": s.keep,
                "next_at": *self.inner.next_at.lock(),
            },
            "last": *self.inner.last.lock(),
            "backups": backups,
        })
    }
}

/// `30s`, `15m`, `6h`, `1d` or a number of seconds.
pub fn parse_interval(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().map_err(|_| format!("'{text}' is not an interval: write e.g. 30s, 15m, 6h or 1d"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        other => return Err(format!("'{text}': unknown unit '{other}' (use s, m, h or d)")),
    };
    if secs == 0 {
        return Err(format!("'{text}': the interval must be at least one second"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_interval("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_interval("1d").unwrap(), Duration::from_secs(86400));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("5 weeks").unwrap_err().contains("unknown unit"));
        assert!(parse_interval("soon").is_err());
    }

    fn manifest(id: &str, files: Vec<FileEntry>) -> Manifest {
        Manifest {
            format: manifest::FORMAT,
            id: id.into(),
            started_at: String::new(),
            finished_at: String::new(),
            pond_version: String::new(),
            duckdb_version: String::new(),
            master_key_id: String::new(),
            secrets: 0,
            databases: vec![],
            lake: None,
            files,
            notes: vec![],
        }
    }

    fn put(store: &Store, dir: &std::path::Path, name: &str, body: &[u8]) -> FileEntry {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        let (sha, n) = store::sha256_of(&p, u64::MAX).unwrap();
        store.put_object(&sha, &p, n).unwrap();
        FileEntry { path: format!("lake/data/{name}"), kind: Kind::LakeData, size: n, sha256: sha, taken_at: String::new() }
    }

    #[test]
    fn prune_keeps_objects_still_used() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("t").to_str().unwrap()).unwrap();
        let shared = put(&store, tmp.path(), "a", b"shared");
        let old = put(&store, tmp.path(), "b", b"only old");
        let new = put(&store, tmp.path(), "c", b"only new");
        store.write_manifest(&manifest("1", vec![shared.clone(), old.clone()])).unwrap();
        store.write_manifest(&manifest("2", vec![shared.clone(), new.clone()])).unwrap();
        assert_eq!(prune(&store, 1).unwrap(), vec!["1".to_string()]);
        assert_eq!(store.list().unwrap(), vec!["2".to_string()]);
        assert!(store.has_object(&shared.sha256) && store.has_object(&new.sha256));
        assert!(!store.has_object(&old.sha256));
    }

    #[test]
    fn damaged_objects_and_manifests_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("t").to_str().unwrap()).unwrap();
        let f = put(&store, tmp.path(), "a", b"contents");
        store.write_manifest(&manifest("1", vec![f.clone()])).unwrap();
        let m = restore::pick(&store, None).unwrap();
        restore::verify(&store, &m).unwrap();
        let obj = tmp.path().join("t/objects").join(&f.sha256[..2]).join(&f.sha256);
        std::fs::write(&obj, b"contentz").unwrap();
        let e = restore::verify(&store, &m).unwrap_err().to_string();
        assert!(e.contains("damaged") && e.contains("lake/data/a") && e.contains("checksum"), "{e}");
        let e = restore::restore(&store, &m, &tmp.path().join("new"), &KeySource::None).unwrap_err().to_string();
        assert!(e.contains("damaged"), "{e}");
        assert!(!tmp.path().join("new").exists());
        // A manifest edited by hand no longer matches its checksum.
        let mp = tmp.path().join("t/backups/1.json");
        let text = std::fs::read_to_string(&mp).unwrap().replace("\"secrets\": 0", "\"secrets\": 1");
        std::fs::write(&mp, text).unwrap();
        assert!(store.read_manifest("1").unwrap_err().to_string().contains("does not match its checksum"));
    }
}
