//! Checking a backup and rebuilding a data directory from it (offline: no
//! server runs on the new directory while it is written).
//!
//! Every object the manifest names is read and its size and SHA-256
//! compared before anything is written, so a damaged or partial backup is
//! refused whole. The new directory is written under a temporary name next
//! to it and renamed at the end: it either appears complete or not at all.

use std::fs;
use std::path::{Path, PathBuf};

use crate::manifest::Manifest;
use crate::store::Store;
use crate::{Error, Result};

/// Where the restored server's master key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A key file to install as `system/master.key` (mode 0600).
    File(PathBuf),
    /// The key the server will get from `POND_MASTER_KEY` (its text, to check the fingerprint).
    Environment(String),
    None,
}

#[derive(Debug, Clone)]
pub struct Restored {
    pub id: String,
    pub files: usize,
    pub bytes: u64,
    pub data_dir: PathBuf,
    /// What `--until` did to the lake and the log.
    pub rewound: Option<crate::rewind::Rewound>,
    /// With a [`LakeTarget`]: lake files sent to S3, and those already there.
    pub lake_files_sent: usize,
    pub lake_files_present: usize,
}

/// `--until`: the lake set back to this moment (see `rewind.rs`), with the
/// extension directory that holds ducklake.
#[derive(Debug, Clone)]
pub struct Until {
    pub at_ns: i64,
    pub extension_dir: PathBuf,
}

/// A restore onto S3: the lake's Parquet files go to `url` (s3://bucket/prefix)
/// instead of the new data dir's `lake/data/`, and the restored catalog is
/// pointed at it, so the server starts with `--lake-data-path url`.
#[derive(Debug, Clone)]
pub struct LakeTarget {
    pub url: String,
    pub s3: pond_engine::S3Config,
}

/// The file in a restored data dir that names the S3 data path its lake was
/// restored onto; the engine refuses to start it with any other.
pub const LAKE_DATA_PATH_MARKER: &str = pond_engine::LAKE_DATA_PATH_MARKER;

/// Picks backup `id`, or the newest in the store.
pub fn pick(store: &Store, id: Option<&str>) -> Result<Manifest> {
    match id {
        Some(id) => store.read_manifest(id),
        None => {
            let ids = store.list()?;
            let last =
                ids.last().ok_or_else(|| Error::NotFound(format!("{} holds no backup (no manifest under backups/)", store.display())))?;
            store.read_manifest(last)
        }
    }
}

/// Reads every object of backup `m` and checks it; the first problem is an error.
pub fn verify(store: &Store, m: &Manifest) -> Result<()> {
    for f in &m.files {
        if let Err(why) = store.check_object(&f.sha256, f.size) {
            return Err(Error::Damaged(format!("backup {} is damaged: {} — {why}; nothing was restored", m.id, f.path)));
        }
    }
    Ok(())
}

/// Restores backup `m` into `data_dir`, which must not exist or be empty.
pub fn restore(store: &Store, m: &Manifest, data_dir: &Path, key: &KeySource) -> Result<Restored> {
    restore_until(store, m, data_dir, key, None, None)
}

/// [`restore`], then (with `until`) the lake set back to an earlier moment,
/// then (with `lake`) its files moved onto S3, before the new directory appears.
pub fn restore_until(
    store: &Store,
    m: &Manifest,
    data_dir: &Path,
    key: &KeySource,
    until: Option<&Until>,
    lake: Option<&LakeTarget>,
) -> Result<Restored> {
    if data_dir.exists() && fs::read_dir(data_dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(Error::Exists(format!(
            "{} exists and is not empty: restore into a new directory (the original is never overwritten)",
            data_dir.display()
        )));
    }
    check_key(m, key)?;
    verify(store, m)?;
    let name = data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "pond-data".into());
    let parent = data_dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    let tmp = parent.join(format!(".{name}.restoring"));
    let _ = fs::remove_dir_all(&tmp);
    // Before anything is written: a wrong S3 setting fails here, not after the copy.
    let s3 = lake.map(|t| crate::s3lake::open_url(&t.url, Some(&t.s3))).transpose()?;
    let r = write_all(store, m, &tmp, key)
        .and_then(|()| until.map(|u| crate::rewind::rewind(&tmp, u.at_ns, &u.extension_dir)).transpose())
        .and_then(|rewound| {
            let moved = match (lake, &s3) {
                (Some(t), Some(s3)) => move_lake_to_s3(&tmp, t, s3)?,
                _ => (0, 0),
            };
            Ok((rewound, moved))
        });
    let (rewound, (lake_files_sent, lake_files_present)) = match r {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if data_dir.exists() {
        fs::remove_dir(data_dir).map_err(|e| io(data_dir, e))?;
    }
    fs::rename(&tmp, data_dir).map_err(|e| io(data_dir, e))?;
    Ok(Restored {
        id: m.id.clone(),
        files: m.files.len(),
        bytes: m.total_bytes(),
        data_dir: data_dir.to_path_buf(),
        rewound,
        lake_files_sent,
        lake_files_present,
    })
}

/// Sends the restored `lake/data/` files to the S3 path, removes the local
/// copies, and records the new data path in the catalog (DuckLake's
/// `ducklake_metadata` row `data_path`; every file path below it is relative)
/// and in the marker file.
fn move_lake_to_s3(root: &Path, target: &LakeTarget, s3: &crate::s3lake::LakeS3) -> Result<(usize, usize)> {
    let catalog = root.join("lake").join("catalog.ducklake");
    if !catalog.exists() {
        return Err(Error::InvalidTarget(
            "--lake-data-path: the backup holds no local lake catalog (a lake whose catalog is in PostgreSQL keeps its own data path)"
                .into(),
        ));
    }
    let data = root.join("lake").join("data");
    let (mut sent, mut kept) = (0usize, 0usize);
    for (rel, src) in crate::take::walk(&data)? {
        if s3.upload(&rel, &src)? {
            sent += 1;
        } else {
            kept += 1;
        }
    }
    tracing::info!(sent, already_there = kept, target = %target.url, "restored lake files on S3");
    let url = format!("{}/", target.url.trim_end_matches('/'));
    let conn = duckdb::Connection::open(&catalog).map_err(|e| Error::Engine(format!("{}: {e}", catalog.display())))?;
    let n = conn
        .execute("UPDATE ducklake_metadata SET value = ? WHERE key = 'data_path' AND scope IS NULL", [&url])
        .map_err(|e| Error::Engine(format!("{}: {e}", catalog.display())))?;
    if n != 1 {
        return Err(Error::Damaged(format!("{}: the lake catalog has no data_path entry", catalog.display())));
    }
    conn.execute_batch("CHECKPOINT").map_err(|e| Error::Engine(format!("{}: {e}", catalog.display())))?;
    drop(conn);
    fs::remove_dir_all(&data).map_err(|e| io(&data, e))?;
    fs::create_dir_all(&data).map_err(|e| io(&data, e))?;
    let marker = root.join(LAKE_DATA_PATH_MARKER);
    fs::write(&marker, format!("{}\n", target.url.trim_end_matches('/'))).map_err(|e| io(&marker, e))?;
    Ok((sent, kept))
}

fn check_key(m: &Manifest, key: &KeySource) -> Result<()> {
    let given = match key {
        KeySource::File(p) => {
            let text = fs::read_to_string(p).map_err(|e| io(p, e))?;
            Some(pond_secrets::MasterKey::parse(&text, &p.display().to_string()).map_err(|e| Error::MasterKey(e.to_string()))?)
        }
        KeySource::Environment(text) => {
            Some(pond_secrets::MasterKey::parse(text, pond_secrets::MASTER_KEY_ENV).map_err(|e| Error::MasterKey(e.to_string()))?)
        }
        KeySource::None => None,
    };
    match given {
        Some(k) if m.secrets > 0 && k.key_id() != m.master_key_id => Err(Error::MasterKey(format!(
            "backup {} holds {} secret(s) sealed with master key {}; the key given is {}",
            m.id,
            m.secrets,
            m.master_key_id,
            k.key_id()
        ))),
        None if m.secrets > 0 => Err(Error::MasterKey(format!(
            "backup {} holds {} secret(s) sealed with master key {}, which backups never contain: pass --master-key-file \
             (the original's system/master.key) or set {}",
            m.id,
            m.secrets,
            m.master_key_id,
            pond_secrets::MASTER_KEY_ENV
        ))),
        _ => Ok(()),
    }
}

fn write_all(store: &Store, m: &Manifest, root: &Path, key: &KeySource) -> Result<()> {
    for f in &m.files {
        let rel = Path::new(&f.path);
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(Error::Damaged(format!("backup {}: the manifest names a path outside the data directory: {}", m.id, f.path)));
        }
        let dest = root.join(rel);
        if let Some(d) = dest.parent() {
            fs::create_dir_all(d).map_err(|e| io(d, e))?;
        }
        store.get_object(&f.sha256, f.size, &dest)?;
    }
    if let KeySource::File(p) = key {
        let dest = root.join(pond_secrets::MASTER_KEY_FILE);
        if let Some(d) = dest.parent() {
            fs::create_dir_all(d).map_err(|e| io(d, e))?;
        }
        fs::copy(p, &dest).map_err(|e| io(&dest, e))?;
        set_private(&dest)?;
    }
    for d in ["system", "ingest", "lake", "databases", "audit"] {
        let p = root.join(d);
        fs::create_dir_all(&p).map_err(|e| io(&p, e))?;
    }
    Ok(())
}

#[cfg(unix)]
fn set_private(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).map_err(|e| io(p, e))
}

#[cfg(not(unix))]
fn set_private(_: &Path) -> Result<()> {
    Ok(())
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}
