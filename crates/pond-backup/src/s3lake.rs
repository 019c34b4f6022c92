//! The lake's Parquet files when they live on S3 (`--lake-data-path s3://…`),
//! reached with the settings the engine's httpfs uses: read by a backup,
//! written by a restore onto S3.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;
use pond_engine::{Engine, S3Config};
use tokio::io::AsyncWriteExt;

use crate::{Error, Result};

pub(crate) struct LakeS3 {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

/// The lake's data path as an object store.
pub(crate) fn open(engine: &Engine) -> Result<LakeS3> {
    open_url(&engine.lake_data_path(), engine.config().s3.as_ref())
}

/// `url` (s3://bucket/prefix) as an object store, with the lake's S3 settings.
pub(crate) fn open_url(url: &str, s3: Option<&S3Config>) -> Result<LakeS3> {
    let url = url.to_string();
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(Error::InvalidTarget(format!("the lake's data path {url} is neither local nor s3://")));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let mut b = object_store::aws::AmazonS3Builder::new().with_bucket_name(bucket);
    if let Some(c) = s3 {
        if let Some(e) = &c.endpoint {
            let scheme = if c.use_ssl { "https" } else { "http" };
            let e = if e.contains("://") { e.clone() } else { format!("{scheme}://{e}") };
            let options = object_store::ClientOptions::new()
                .with_connect_timeout(std::time::Duration::from_secs(10))
                .with_allow_http(e.starts_with("http://"));
            b = b.with_client_options(options).with_endpoint(e);
        }
        b = b.with_virtual_hosted_style_request(!c.url_style_path);
        if let Some(r) = &c.region {
            b = b.with_region(r);
        }
        if let (Some(k), Some(s)) = (&c.access_key_id, &c.secret_access_key) {
            b = b.with_access_key_id(k).with_secret_access_key(s);
        }
    }
    let store = b.build().map_err(|e| Error::InvalidTarget(format!("the lake's data path {url}: {e}")))?;
    Ok(LakeS3 { store: Arc::new(store), prefix: prefix.trim_matches('/').to_string(), url })
}

impl LakeS3 {
    fn err(&self, e: object_store::Error) -> Error {
        Error::Target(format!("{} (the lake's data path): {e}", self.url))
    }

    /// Every object under the data path: (path relative to it, size), sorted.
    pub(crate) fn list(&self) -> Result<Vec<(String, u64)>> {
        let store = self.store.clone();
        let prefix = ObjPath::from(self.prefix.as_str());
        let r: std::result::Result<Vec<(String, u64)>, object_store::Error> = pond_rt::wait(async move {
            let mut out = Vec::new();
            let mut s = store.list(Some(&prefix));
            while let Some(m) = s.next().await {
                let m = m?;
                let full = m.location.to_string();
                let rel = full.strip_prefix(prefix.as_ref()).unwrap_or(&full).trim_start_matches('/').to_string();
                out.push((rel, m.size));
            }
            Ok(out)
        });
        let mut v = r.map_err(|e| self.err(e))?;
        v.sort();
        Ok(v)
    }

    fn object(&self, rel: &str) -> ObjPath {
        ObjPath::from(if self.prefix.is_empty() { rel.to_string() } else { format!("{}/{rel}", self.prefix) })
    }

    /// Uploads the local file `src` as `rel` (relative to the data path),
    /// unless an object of the same size is there already (lake files are
    /// immutable and uniquely named). True when it was sent.
    pub(crate) fn upload(&self, rel: &str, src: &Path) -> Result<bool> {
        let len = std::fs::metadata(src).map_err(|e| Error::Io { path: src.display().to_string(), source: e })?.len();
        let store = self.store.clone();
        let path = self.object(rel);
        let src = src.to_path_buf();
        let r: std::result::Result<bool, object_store::Error> = pond_rt::wait(async move {
            match store.head(&path).await {
                Ok(m) if m.size == len => return Ok(false),
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            // Multipart above the writer's buffer, one PUT below it.
            let mut w = object_store::buffered::BufWriter::new(store, path);
            let mut f =
                tokio::fs::File::open(&src).await.map_err(|e| object_store::Error::Generic { store: "local file", source: Box::new(e) })?;
            tokio::io::copy(&mut f, &mut w).await.map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
            w.shutdown().await.map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
            Ok(true)
        });
        r.map_err(|e| self.err(e))
    }

    /// Downloads `rel` (relative to the data path) into `dest`.
    pub(crate) fn download(&self, rel: &str, dest: &Path) -> Result<()> {
        let store = self.store.clone();
        let path = self.object(rel);
        let bytes = pond_rt::wait(async move {
            match store.get(&path).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            }
        })
        .map_err(|e| self.err(e))?;
        let mut f = std::fs::File::create(dest).map_err(|e| Error::Io { path: dest.display().to_string(), source: e })?;
        f.write_all(&bytes).map_err(|e| Error::Io { path: dest.display().to_string(), source: e })?;
        Ok(())
    }
}
