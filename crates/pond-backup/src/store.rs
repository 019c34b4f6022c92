//! Where backups live: a directory holding content-addressed objects and
//! one manifest per backup.
//!
//! ```text
//! <root>/objects/<aa>/<sha256>        file contents, named by their SHA-256
//! <root>/backups/<id>.json             the manifest of backup <id>
//! <root>/backups/<id>.json.sha256      the manifest's own checksum
//! ```
//!
//! A file already stored (the same bytes, e.g. a lake Parquet file an
//! earlier backup copied) is not written again: that is what makes backups
//! incremental. A backup exists once its manifest does; the manifest is
//! written last, through a temporary name and a rename, so an interrupted
//! backup leaves only unreferenced objects, which pruning removes.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::manifest::Manifest;
use crate::{Error, Result};

/// A backup target directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}

impl Store {
    /// A target given as a path (`s3://` targets are not supported yet).
    pub fn open(target: &str) -> Result<Self> {
        let t = target.trim();
        if t.is_empty() {
            return Err(Error::InvalidTarget("the backup target is empty: give a directory".into()));
        }
        if t.contains("://") {
            return Err(Error::InvalidTarget(format!(
                "backup target '{t}': only directories are supported (an s3:// target is not implemented yet)"
            )));
        }
        Ok(Self { root: PathBuf::from(t) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn object_path(&self, sha: &str) -> PathBuf {
        self.root.join("objects").join(&sha[..2]).join(sha)
    }

    fn manifest_path(&self, id: &str) -> PathBuf {
        self.root.join("backups").join(format!("{id}.json"))
    }

    pub fn has_object(&self, sha: &str) -> bool {
        self.object_path(sha).is_file()
    }

    /// Stores the first `len` bytes of `src` as object `sha` (already
    /// computed by the caller) unless it is there; returns whether it wrote.
    pub fn put_object(&self, sha: &str, src: &Path, len: u64) -> Result<bool> {
        let dest = self.object_path(sha);
        if dest.is_file() {
            return Ok(false);
        }
        let dir = dest.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let tmp = dir.join(format!(".{sha}.tmp"));
        {
            let mut from = File::open(src).map_err(|e| io(src, e))?.take(len);
            let mut to = File::create(&tmp).map_err(|e| io(&tmp, e))?;
            let copied = std::io::copy(&mut from, &mut to).map_err(|e| io(&tmp, e))?;
            if copied != len {
                let _ = fs::remove_file(&tmp);
                return Err(Error::Changed(format!("{} shrank while it was copied ({copied} of {len} bytes)", src.display())));
            }
            to.sync_all().map_err(|e| io(&tmp, e))?;
        }
        fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))?;
        Ok(true)
    }

    /// Copies object `sha` to `dest`, checking its size and checksum on the way.
    pub fn get_object(&self, sha: &str, size: u64, dest: &Path) -> Result<()> {
        let src = self.object_path(sha);
        let mut from = File::open(&src).map_err(|e| io(&src, e))?;
        let mut to = File::create(dest).map_err(|e| io(dest, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = from.read(&mut buf).map_err(|e| io(&src, e))?;
            if k == 0 {
                break;
            }
            hasher.update(&buf[..k]);
            to.write_all(&buf[..k]).map_err(|e| io(dest, e))?;
            n += k as u64;
        }
        to.sync_all().map_err(|e| io(dest, e))?;
        let got = hex::encode(hasher.finalize());
        if n != size || got != sha {
            return Err(Error::Damaged(format!("object {sha} changed while it was restored ({n} bytes, checksum {got})")));
        }
        Ok(())
    }

    /// Checks object `sha`: present, `size` bytes, the right checksum.
    pub fn check_object(&self, sha: &str, size: u64) -> std::result::Result<(), String> {
        let path = self.object_path(sha);
        let meta = fs::metadata(&path).map_err(|_| format!("object {sha} is missing ({})", path.display()))?;
        if meta.len() != size {
            return Err(format!("object {sha} has {} bytes, the manifest says {size}", meta.len()));
        }
        let (got, _) = sha256_of(&path, u64::MAX).map_err(|e| e.to_string())?;
        if got != sha {
            return Err(format!("object {sha} has checksum {got}: its contents changed"));
        }
        Ok(())
    }

    /// Writes a backup's manifest (last: the backup exists from here on).
    pub fn write_manifest(&self, m: &Manifest) -> Result<()> {
        let dir = self.root.join("backups");
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let body = serde_json::to_vec_pretty(m).map_err(|e| Error::Internal(format!("cannot encode the manifest: {e}")))?;
        let sum = hex::encode(Sha256::digest(&body));
        let path = self.manifest_path(&m.id);
        let sum_path = dir.join(format!("{}.json.sha256", m.id));
        write_atomic(&sum_path, format!("{sum}\n").as_bytes())?;
        write_atomic(&path, &body)?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads and checks the manifest of backup `id`.
    pub fn read_manifest(&self, id: &str) -> Result<Manifest> {
        let path = self.manifest_path(id);
        let body = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(format!(
                    "no backup '{id}' in {} (it has: {})",
                    self.root.display(),
                    self.list().unwrap_or_default().join(", ")
                )))
            }
            Err(e) => return Err(io(&path, e)),
        };
        let sum_path = self.root.join("backups").join(format!("{id}.json.sha256"));
        let want = fs::read_to_string(&sum_path)
            .map_err(|_| Error::Damaged(format!("backup {id}: its manifest checksum {} is missing", sum_path.display())))?;
        let got = hex::encode(Sha256::digest(&body));
        if want.trim() != got {
            return Err(Error::Damaged(format!("backup {id}: the manifest {} does not match its checksum", path.display())));
        }
        let m: Manifest = serde_json::from_slice(&body)
            .map_err(|e| Error::Damaged(format!("backup {id}: the manifest {} cannot be read: {e}", path.display())))?;
        if m.format != crate::manifest::FORMAT {
            return Err(Error::Damaged(format!(
                "backup {id} has manifest format {}; this Pond reads format {}",
                m.format,
                crate::manifest::FORMAT
            )));
        }
        Ok(m)
    }

    /// Backup ids, oldest first (ids sort by time).
    pub fn list(&self) -> Result<Vec<String>> {
        let dir = self.root.join("backups");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir, e)),
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Removes backup `id`'s manifest (its objects go at the next [`Store::collect_garbage`]).
    pub fn delete_manifest(&self, id: &str) -> Result<()> {
        let path = self.manifest_path(id);
        fs::remove_file(&path).map_err(|e| io(&path, e))?;
        let _ = fs::remove_file(self.root.join("backups").join(format!("{id}.json.sha256")));
        Ok(())
    }

    /// Deletes every object no remaining manifest refers to; returns how many.
    pub fn collect_garbage(&self) -> Result<u64> {
        let mut live = std::collections::HashSet::new();
        for id in self.list()? {
            for f in self.read_manifest(&id)?.files {
                live.insert(f.sha256);
            }
        }
        let objects = self.root.join("objects");
        let mut removed = 0;
        let Ok(dirs) = fs::read_dir(&objects) else { return Ok(0) };
        for d in dirs.flatten() {
            let Ok(files) = fs::read_dir(d.path()) else { continue };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if !live.contains(&name) {
                    fs::remove_file(f.path()).map_err(|e| io(&f.path(), e))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// SHA-256 (hex) and length of the first `limit` bytes of `path`.
pub fn sha256_of(path: &Path, limit: u64) -> Result<(String, u64)> {
    let mut f = File::open(path).map_err(|e| io(path, e))?.take(limit);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|e| io(path, e))?;
        if k == 0 {
            break;
        }
        hasher.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(hasher.finalize()), n))
}

fn write_atomic(path: &Path, body: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(body).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| io(path, e))
}
