//! Where backups live: a directory or an S3 prefix (through the
//! `object_store` crate, the same code for both), holding content-addressed
//! objects and one manifest per backup.
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
//! written last, so an interrupted backup leaves only unreferenced objects,
//! which pruning removes.
//!
//! An `s3://bucket/prefix` target takes its endpoint, region and keys from
//! `POND_BACKUP_S3_ENDPOINT`, `POND_BACKUP_S3_REGION`,
//! `POND_BACKUP_S3_ACCESS_KEY_ID` and `POND_BACKUP_S3_SECRET_ACCESS_KEY`,
//! else from the standard `AWS_*` variables.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};

use crate::manifest::Manifest;
use crate::{Error, Result};

/// Objects up to this size are written with one PUT; larger ones in parts.
const PART: usize = 16 * 1024 * 1024;

/// A backup target.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// The target as given, for messages (never with credentials).
    display: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("target", &self.display).finish()
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Store {
    /// A target directory (created if missing) or `s3://bucket/prefix`.
    pub fn open(target: &str) -> Result<Self> {
        let t = target.trim();
        if t.is_empty() {
            return Err(Error::InvalidTarget("the backup target is empty: give a directory or s3://bucket/prefix".into()));
        }
        if let Some(rest) = t.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::InvalidTarget(format!("backup target '{t}': no bucket (write s3://bucket/prefix)")));
            }
            // Client options first: setting them replaces `allow_http` too.
            let mut options = object_store::ClientOptions::new().with_connect_timeout(Duration::from_secs(10));
            let endpoint = env("POND_BACKUP_S3_ENDPOINT").map(|e| if e.contains("://") { e } else { format!("https://{e}") });
            if let Some(e) = &endpoint {
                options = options.with_allow_http(e.starts_with("http://"));
            }
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).with_client_options(options);
            if let Some(e) = endpoint {
                b = b.with_virtual_hosted_style_request(false).with_endpoint(e);
            }
            if let Some(r) = env("POND_BACKUP_S3_REGION") {
                b = b.with_region(r);
            }
            if let (Some(k), Some(s)) = (env("POND_BACKUP_S3_ACCESS_KEY_ID"), env("POND_BACKUP_S3_SECRET_ACCESS_KEY")) {
                b = b.with_access_key_id(k).with_secret_access_key(s);
            }
            let retry = object_store::RetryConfig {
                max_retries: 4,
                retry_timeout: Duration::from_secs(60),
                backoff: object_store::BackoffConfig::default(),
            };
            let s3 = b.with_retry(retry).build().map_err(|e| Error::InvalidTarget(format!("backup target '{t}': {e}")))?;
            let inner: Arc<dyn ObjectStore> = if prefix.trim_matches('/').is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.trim_matches('/')))
            };
            return Ok(Self { inner, display: t.to_string() });
        }
        if t.contains("://") {
            return Err(Error::InvalidTarget(format!("backup target '{t}': use a directory or s3://bucket/prefix")));
        }
        std::fs::create_dir_all(t).map_err(|e| io(Path::new(t), e))?;
        let local = object_store::local::LocalFileSystem::new_with_prefix(t)
            .map_err(|e| Error::InvalidTarget(format!("backup target '{t}': {e}")))?;
        Ok(Self { inner: Arc::new(local), display: t.to_string() })
    }

    /// The target as given.
    pub fn display(&self) -> &str {
        &self.display
    }

    fn object_path(sha: &str) -> ObjPath {
        ObjPath::from(format!("objects/{}/{sha}", &sha[..2.min(sha.len())]))
    }

    fn manifest_path(id: &str) -> ObjPath {
        ObjPath::from(format!("backups/{id}.json"))
    }

    fn sum_path(id: &str) -> ObjPath {
        ObjPath::from(format!("backups/{id}.json.sha256"))
    }

    fn err(&self, what: &str, e: object_store::Error) -> Error {
        Error::Target(format!("{} ({what}): {e}", self.display))
    }

    fn size_of(&self, path: &ObjPath) -> Result<Option<u64>> {
        let (store, p) = (self.inner.clone(), path.clone());
        match pond_rt::wait(async move { store.head(&p).await }) {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(&format!("looking up {path}"), e)),
        }
    }

    pub fn has_object(&self, sha: &str) -> bool {
        matches!(self.size_of(&Self::object_path(sha)), Ok(Some(_)))
    }

    /// Stores the first `len` bytes of `src` as object `sha` (already
    /// computed by the caller) unless it is there; returns whether it wrote.
    pub fn put_object(&self, sha: &str, src: &Path, len: u64) -> Result<bool> {
        let path = Self::object_path(sha);
        if self.size_of(&path)? == Some(len) {
            return Ok(false);
        }
        let mut file = File::open(src).map_err(|e| io(src, e))?.take(len);
        let store = self.inner.clone();
        let mut copied = 0u64;
        if len as usize <= PART {
            let mut buf = Vec::with_capacity(len as usize);
            file.read_to_end(&mut buf).map_err(|e| io(src, e))?;
            copied = buf.len() as u64;
            if copied == len {
                let p = path.clone();
                pond_rt::wait(async move { store.put(&p, PutPayload::from(buf)).await })
                    .map_err(|e| self.err(&format!("writing {path}"), e))?;
            }
        } else {
            let p = path.clone();
            let upload =
                pond_rt::wait(async move { store.put_multipart(&p).await }).map_err(|e| self.err(&format!("writing {path}"), e))?;
            let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; PART];
            let mut failed: Option<Error> = None;
            loop {
                let k = match file.read(&mut buf) {
                    Ok(k) => k,
                    Err(e) => {
                        failed = Some(io(src, e));
                        break;
                    }
                };
                if k == 0 {
                    break;
                }
                copied += k as u64;
                let chunk = buf[..k].to_vec();
                // `write` starts the part's upload on the runtime, so it runs there too.
                let (back, r) = pond_rt::wait(async move {
                    let r = w.wait_for_capacity(2).await;
                    if r.is_ok() {
                        w.write(&chunk);
                    }
                    (w, r)
                });
                w = back;
                if let Err(e) = r {
                    failed = Some(self.err(&format!("writing {path}"), e));
                    break;
                }
            }
            if failed.is_some() || copied != len {
                let _ = pond_rt::wait(async move { w.abort().await });
                if let Some(e) = failed {
                    return Err(e);
                }
            } else {
                pond_rt::wait(async move { w.finish().await }).map_err(|e| self.err(&format!("writing {path}"), e))?;
            }
        }
        if copied != len {
            return Err(Error::Changed(format!("{} shrank while it was copied ({copied} of {len} bytes)", src.display())));
        }
        Ok(true)
    }

    /// Streams object `sha` through `sink` (chunk by chunk); returns its checksum and size.
    fn read_object(&self, sha: &str, mut sink: impl FnMut(&[u8]) -> Result<()>) -> Result<(String, u64)> {
        let path = Self::object_path(sha);
        let (store, p) = (self.inner.clone(), path.clone());
        let got = pond_rt::wait(async move { store.get(&p).await });
        let mut stream = match got {
            Ok(r) => r.into_stream(),
            Err(object_store::Error::NotFound { .. }) => return Err(Error::Damaged(format!("object {sha} is missing"))),
            Err(e) => return Err(self.err(&format!("reading {path}"), e)),
        };
        let mut hasher = Sha256::new();
        let mut n = 0u64;
        loop {
            let (next, rest) = pond_rt::wait(async move {
                let next = stream.next().await;
                (next, stream)
            });
            stream = rest;
            match next {
                None => break,
                Some(Ok(bytes)) => {
                    hasher.update(&bytes);
                    n += bytes.len() as u64;
                    sink(&bytes)?;
                }
                Some(Err(e)) => return Err(self.err(&format!("reading {path}"), e)),
            }
        }
        Ok((hex::encode(hasher.finalize()), n))
    }

    /// Copies object `sha` to `dest`, checking its size and checksum on the way.
    pub fn get_object(&self, sha: &str, size: u64, dest: &Path) -> Result<()> {
        let mut to = File::create(dest).map_err(|e| io(dest, e))?;
        let (got, n) = self.read_object(sha, |b| to.write_all(b).map_err(|e| io(dest, e)))?;
        to.sync_all().map_err(|e| io(dest, e))?;
        if n != size || got != sha {
            return Err(Error::Damaged(format!("object {sha} changed while it was restored ({n} bytes, checksum {got})")));
        }
        Ok(())
    }

    /// Checks object `sha`: present, `size` bytes, the right checksum.
    pub fn check_object(&self, sha: &str, size: u64) -> std::result::Result<(), String> {
        match self.size_of(&Self::object_path(sha)) {
            Ok(None) => return Err(format!("object {sha} is missing")),
            Ok(Some(n)) if n != size => return Err(format!("object {sha} has {n} bytes, the manifest says {size}")),
            Ok(Some(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
        let (got, _) = self.read_object(sha, |_| Ok(())).map_err(|e| e.to_string())?;
        if got != sha {
            return Err(format!("object {sha} has checksum {got}: its contents changed"));
        }
        Ok(())
    }

    fn put_bytes(&self, path: ObjPath, body: Vec<u8>) -> Result<()> {
        let store = self.inner.clone();
        let p = path.clone();
        pond_rt::wait(async move { store.put(&p, PutPayload::from(body)).await }).map_err(|e| self.err(&format!("writing {path}"), e))?;
        Ok(())
    }

    fn get_bytes(&self, path: &ObjPath) -> Result<Option<Vec<u8>>> {
        let (store, p) = (self.inner.clone(), path.clone());
        match pond_rt::wait(async move {
            match store.get(&p).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(e) => Err(e),
            }
        }) {
            Ok(b) => Ok(b.map(|b| b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(&format!("reading {path}"), e)),
        }
    }

    /// Writes a backup's manifest (last: the backup exists from here on).
    pub fn write_manifest(&self, m: &Manifest) -> Result<()> {
        let body = serde_json::to_vec_pretty(m).map_err(|e| Error::Internal(format!("cannot encode the manifest: {e}")))?;
        let sum = hex::encode(Sha256::digest(&body));
        self.put_bytes(Self::sum_path(&m.id), format!("{sum}\n").into_bytes())?;
        self.put_bytes(Self::manifest_path(&m.id), body)
    }

    /// Reads and checks the manifest of backup `id`.
    pub fn read_manifest(&self, id: &str) -> Result<Manifest> {
        let Some(body) = self.get_bytes(&Self::manifest_path(id))? else {
            return Err(Error::NotFound(format!(
                "no backup '{id}' in {} (it has: {})",
                self.display,
                self.list().unwrap_or_default().join(", ")
            )));
        };
        let want = self
            .get_bytes(&Self::sum_path(id))?
            .ok_or_else(|| Error::Damaged(format!("backup {id}: its manifest checksum (backups/{id}.json.sha256) is missing")))?;
        let got = hex::encode(Sha256::digest(&body));
        if String::from_utf8_lossy(&want).trim() != got {
            return Err(Error::Damaged(format!("backup {id}: the manifest backups/{id}.json does not match its checksum")));
        }
        let m: Manifest = serde_json::from_slice(&body)
            .map_err(|e| Error::Damaged(format!("backup {id}: the manifest backups/{id}.json cannot be read: {e}")))?;
        if m.format != crate::manifest::FORMAT {
            return Err(Error::Damaged(format!(
                "backup {id} has manifest format {}; this Pond reads format {}",
                m.format,
                crate::manifest::FORMAT
            )));
        }
        Ok(m)
    }

    fn list_under(&self, prefix: &str) -> Result<Vec<ObjPath>> {
        let store = self.inner.clone();
        let p = ObjPath::from(prefix);
        let r: std::result::Result<Vec<_>, object_store::Error> = pond_rt::wait(async move {
            let mut out = Vec::new();
            let mut s = store.list(Some(&p));
            while let Some(m) = s.next().await {
                out.push(m?.location);
            }
            Ok(out)
        });
        match r {
            Ok(v) => Ok(v),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.err(&format!("listing {prefix}/"), e)),
        }
    }

    /// Backup ids, oldest first (ids sort by time).
    pub fn list(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .list_under("backups")?
            .iter()
            .filter_map(|p| p.filename().and_then(|n| n.strip_suffix(".json")).map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Removes backup `id`'s manifest (its objects go at the next [`Store::collect_garbage`]).
    pub fn delete_manifest(&self, id: &str) -> Result<()> {
        for p in [Self::manifest_path(id), Self::sum_path(id)] {
            let store = self.inner.clone();
            let q = p.clone();
            match pond_rt::wait(async move { store.delete(&q).await }) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err(&format!("deleting {p}"), e)),
            }
        }
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
        let mut removed = 0;
        for p in self.list_under("objects")? {
            let name = p.filename().unwrap_or("").to_string();
            if live.contains(&name) {
                continue;
            }
            let store = self.inner.clone();
            let q = p.clone();
            match pond_rt::wait(async move { store.delete(&q).await }) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                Err(e) => return Err(self.err(&format!("deleting {p}"), e)),
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
