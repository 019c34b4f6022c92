//! Taking a backup of a running server.
//!
//! What each part contains, and how it is made consistent:
//! - `system/pond.json`: the metadata document as it is in memory at the
//!   start (every change to it is one atomic replacement, so any copy is whole).
//! - each database, and the audit log: `COPY FROM DATABASE` into a fresh
//!   DuckDB file (`Engine::copy_catalog_to`), one transaction each, so each
//!   is exactly the database at that transaction's start. DuckDB transactions
//!   write one database at a time, so no commit spans two of them.
//! - the lake and the ingest log, together: the lake is held still
//!   (`Ingester::pause_lake`: no flush registers files or lets a log segment
//!   go, no compaction or cleanup deletes a file), its DuckLake catalog is
//!   copied like a database, every Parquet file is hard-linked (or copied)
//!   into a staging directory, and every log segment is hard-linked with its
//!   length at that moment. The catalog then says which records the lake
//!   holds (its flushed sequence) and the log holds every later record that
//!   was written before the pause: the lake part is the state after exactly
//!   those writes. Writes are not stopped, only flushes wait; the pause
//!   lasts as long as the catalog copy and the links (milliseconds to a
//!   second), the copying to the target happens after it.
//!
//! Then every staged file is hashed and stored unless the target already
//! has those bytes (a Parquet file with the same path and size as in the
//! previous backup is not even read again: lake files are immutable and
//! uniquely named), and the manifest is written last.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use pond_engine::Engine;
use pond_ingest::Ingester;

use crate::manifest::{FileEntry, Kind, LakeEntry, Manifest, FORMAT};
use crate::store::{sha256_of, Store};
use crate::{Error, Result};

/// The outcome of one backup.
#[derive(Debug, Clone)]
pub struct Taken {
    pub manifest: Manifest,
    pub bytes_copied: u64,
    pub bytes_reused: u64,
    pub seconds: f64,
    /// How long flushes and compaction waited for the lake's copy.
    pub lake_pause_seconds: f64,
}

struct Staged {
    path: String,
    kind: Kind,
    file: PathBuf,
    len: u64,
    taken_at: String,
    /// Already in the target (a lake file an earlier backup holds): not staged, not read.
    known: Option<String>,
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}

fn now() -> String {
    pond_meta::now_rfc3339()
}

/// A new backup id from the current time.
pub fn new_id() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ").to_string()
}

/// Takes one backup of the running server into `store`.
pub fn take(engine: &Engine, ingest: Option<&Ingester>, store: &Store) -> Result<Taken> {
    let t0 = Instant::now();
    let mut id = new_id();
    // Two backups in the same millisecond into one target get distinct ids.
    while store.list()?.contains(&id) {
        std::thread::sleep(std::time::Duration::from_millis(2));
        id = new_id();
    }
    let staging = engine.backup_staging_dir().join(format!("backup-{id}"));
    fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
    let result = take_into(engine, ingest, store, &id, &staging, t0);
    let _ = fs::remove_dir_all(&staging);
    result
}

fn take_into(engine: &Engine, ingest: Option<&Ingester>, store: &Store, id: &str, staging: &Path, t0: Instant) -> Result<Taken> {
    let started_at = now();
    let mut staged: Vec<Staged> = Vec::new();
    let notes: Vec<String> = Vec::new();

    let meta = engine.meta_snapshot();
    let meta_file = staging.join("system/pond.json");
    mkdir_parent(&meta_file)?;
    let body = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Internal(format!("cannot encode the metadata: {e}")))?;
    fs::write(&meta_file, &body).map_err(|e| io(&meta_file, e))?;
    staged.push(Staged {
        path: "system/pond.json".into(),
        kind: Kind::Metadata,
        file: meta_file,
        len: body.len() as u64,
        taken_at: started_at.clone(),
        known: None,
    });

    let catalogs = engine.backup_catalogs(&meta);
    let lake_catalog = pond_engine::backup::lake_metadata_catalog();
    for c in catalogs.iter().filter(|c| c.catalog != lake_catalog) {
        let dest = staging.join(&c.relative_path);
        mkdir_parent(&dest)?;
        let taken_at = now();
        engine.copy_catalog_to(&c.catalog, &dest).map_err(|e| Error::Engine(e.to_string()))?;
        let kind = if c.relative_path.starts_with("audit/") { Kind::Audit } else { Kind::Database };
        let len = file_len(&dest)?;
        staged.push(Staged { path: c.relative_path.clone(), kind, file: dest, len, taken_at, known: None });
    }

    // Lake files already in the previous backup are known by path and size (they never change).
    let previous: HashMap<(String, u64), String> = match store.list()?.last() {
        Some(prev) => match store.read_manifest(prev) {
            Ok(m) => m.files.into_iter().filter(|f| f.kind == Kind::LakeData).map(|f| ((f.path, f.size), f.sha256)).collect(),
            Err(e) => {
                tracing::warn!(backup = %prev, error = %e, "previous backup unreadable: every file is hashed again");
                HashMap::new()
            }
        },
        None => HashMap::new(),
    };
    // The lake and the ingest log, at one point.
    let mut lake = None;
    let paused = Instant::now();
    {
        let _pause = ingest.map(Ingester::pause_lake);
        let taken_at = now();
        let mut data_files = 0;
        let mut log_bytes = 0;
        let mut snapshot_id = None;
        if let Some(c) = catalogs.iter().find(|c| c.catalog == lake_catalog) {
            let dest = staging.join(&c.relative_path);
            mkdir_parent(&dest)?;
            engine.copy_catalog_to(&c.catalog, &dest).map_err(|e| Error::Engine(e.to_string()))?;
            snapshot_id = engine.lake_snapshot_id().ok();
            let len = file_len(&dest)?;
            staged.push(Staged {
                path: c.relative_path.clone(),
                kind: Kind::LakeCatalog,
                file: dest,
                len,
                taken_at: taken_at.clone(),
                known: None,
            });
            match engine.lake_local_data_dir() {
                Some(data) => {
                    for (rel, src) in walk(&data)? {
                        let path = format!("lake/data/{rel}");
                        let dest = staging.join(&path);
                        mkdir_parent(&dest)?;
                        link_or_copy(&src, &dest)?;
                        let len = file_len(&dest)?;
                        data_files += 1;
                        staged.push(Staged { path, kind: Kind::LakeData, file: dest, len, taken_at: taken_at.clone(), known: None });
                    }
                }
                None => {
                    // On S3: new files are downloaded while the lake is held still
                    // (compaction could delete them otherwise); known ones are skipped.
                    let lake_store = crate::s3lake::open(engine)?;
                    for (rel, size) in lake_store.list()? {
                        let path = format!("lake/data/{rel}");
                        data_files += 1;
                        if let Some(sha) = previous.get(&(path.clone(), size)).filter(|sha| store.has_object(sha)) {
                            let known = Some(sha.clone());
                            staged.push(Staged {
                                path,
                                kind: Kind::LakeData,
                                file: PathBuf::new(),
                                len: size,
                                taken_at: taken_at.clone(),
                                known,
                            });
                            continue;
                        }
                        let dest = staging.join(&path);
                        mkdir_parent(&dest)?;
                        lake_store.download(&rel, &dest)?;
                        let len = file_len(&dest)?;
                        staged.push(Staged { path, kind: Kind::LakeData, file: dest, len, taken_at: taken_at.clone(), known: None });
                    }
                }
            }
        }
        if let Some(ing) = ingest {
            let dir = &ing.config().dir;
            if dir.is_dir() {
                for (rel, src) in walk(dir)? {
                    let path = format!("ingest/{rel}");
                    let dest = staging.join(&path);
                    mkdir_parent(&dest)?;
                    // The length now: the writer may append after the pause;
                    // only this prefix belongs to the backup.
                    let len = file_len(&src)?;
                    link_or_copy(&src, &dest)?;
                    log_bytes += len;
                    staged.push(Staged { path, kind: Kind::IngestLog, file: dest, len, taken_at: taken_at.clone(), known: None });
                }
            }
        }
        if snapshot_id.is_some() || log_bytes > 0 {
            lake = Some(LakeEntry { taken_at, snapshot_id, data_files, log_bytes });
        }
    }
    let lake_pause_seconds = paused.elapsed().as_secs_f64();
    tracing::info!(backup = %id, lake_pause_ms = (lake_pause_seconds * 1000.0) as u64, "lake and ingest log taken");

    let mut files = Vec::with_capacity(staged.len());
    let (mut copied, mut reused) = (0u64, 0u64);
    for s in staged {
        if let Some(sha) = s.known {
            reused += s.len;
            files.push(FileEntry { path: s.path, kind: s.kind, size: s.len, sha256: sha, taken_at: s.taken_at });
            continue;
        }
        let known = previous.get(&(s.path.clone(), s.len)).filter(|sha| store.has_object(sha)).cloned();
        let sha = match known {
            Some(sha) => sha,
            None => {
                let (sha, n) = sha256_of(&s.file, s.len)?;
                if n != s.len {
                    return Err(Error::Changed(format!("{} shrank during the backup", s.path)));
                }
                sha
            }
        };
        if store.put_object(&sha, &s.file, s.len)? {
            copied += s.len;
        } else {
            reused += s.len;
        }
        files.push(FileEntry { path: s.path, kind: s.kind, size: s.len, sha256: sha, taken_at: s.taken_at });
    }

    let manifest = Manifest {
        format: FORMAT,
        id: id.to_string(),
        started_at,
        finished_at: now(),
        pond_version: env!("CARGO_PKG_VERSION").to_string(),
        duckdb_version: engine.duckdb_version(),
        master_key_id: engine.master_key_id(),
        secrets: meta.secrets.len(),
        databases: meta.databases.iter().map(|d| (d.name.clone(), d.file_id.clone())).collect(),
        lake,
        files,
        notes,
    };
    store.write_manifest(&manifest)?;
    Ok(Taken { manifest, bytes_copied: copied, bytes_reused: reused, seconds: t0.elapsed().as_secs_f64(), lake_pause_seconds })
}

fn mkdir_parent(p: &Path) -> Result<()> {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).map_err(|e| io(d, e))?;
    }
    Ok(())
}

fn file_len(p: &Path) -> Result<u64> {
    Ok(fs::metadata(p).map_err(|e| io(p, e))?.len())
}

/// A hard link when `src` and `dest` share a file system (instant, and the
/// bytes stay even if the original is deleted), else a copy.
fn link_or_copy(src: &Path, dest: &Path) -> Result<()> {
    if fs::hard_link(src, dest).is_ok() {
        return Ok(());
    }
    fs::copy(src, dest).map_err(|e| io(src, e))?;
    Ok(())
}

/// Every regular file under `dir`, as (path relative to `dir` with `/`, full path), sorted.
/// Temporary files (names starting with `.`) are skipped.
pub(crate) fn walk(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&d, e)),
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let ft = e.file_type().map_err(|err| io(&e.path(), err))?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let rel = e.path().strip_prefix(dir).unwrap_or(&e.path()).to_string_lossy().replace('\\', "/");
                out.push((rel, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}
