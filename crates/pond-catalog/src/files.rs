//! Locations: the one place a catalog's location text (`file:/x`, `s3a://b/k`,
//! `/x`) becomes what DuckDB reads, and the listing of a local directory's data
//! files. Hive's hidden files (names starting with `_` or `.`, such as
//! `_SUCCESS` and `.crc` files) are not data.

use std::path::Path;

use crate::catalog::FileLister;
use crate::error::{Error, Result};

/// Where a location points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(String),
    /// `s3://bucket/key` (an `s3a://` or `s3n://` location rewritten).
    S3(String),
}

/// Normalizes a catalog location; other schemes (hdfs, abfs, gs) are refused
/// with their name.
pub fn location(catalog: &str, text: &str) -> Result<Location> {
    let t = text.trim().trim_end_matches('/');
    if let Some(rest) = t.strip_prefix("file://") {
        // file:///x (empty authority) or file://localhost/x
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        return Ok(Location::Local(if path.is_empty() { "/".into() } else { path.to_string() }));
    }
    if let Some(rest) = t.strip_prefix("file:") {
        return Ok(Location::Local(rest.to_string()));
    }
    for scheme in ["s3://", "s3a://", "s3n://"] {
        if let Some(rest) = t.strip_prefix(scheme) {
            return Ok(Location::S3(format!("s3://{rest}")));
        }
    }
    if t.starts_with('/') {
        return Ok(Location::Local(t.to_string()));
    }
    let scheme = t.split("://").next().unwrap_or(t);
    Err(Error::Storage {
        catalog: catalog.into(),
        location: text.into(),
        message: format!("the {scheme} scheme is not supported (local paths, file: and s3:// locations are)"),
    })
}

/// Whether a file name is a Hive hidden file (not data).
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}

/// Lists local directories (recursively: Hive reads nested directories of a
/// location when asked to, and writers such as Spark's may create them).
pub struct LocalFiles<'a> {
    pub catalog: &'a str,
}

impl FileLister for LocalFiles<'_> {
    fn list(&self, location_text: &str) -> Result<Vec<String>> {
        match location(self.catalog, location_text)? {
            Location::Local(path) => list_local(self.catalog, Path::new(&path)),
            Location::S3(url) => {
                Err(Error::Storage { catalog: self.catalog.into(), location: url, message: "S3 locations need the engine's lister".into() })
            }
        }
    }
}

/// The data files under `dir`, sorted; a missing directory is an empty partition.
pub fn list_local(catalog: &str, dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::Storage { catalog: catalog.into(), location: d.display().to_string(), message: e.to_string() }),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_hidden(&name) {
                continue;
            }
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(_) => {
                    // An empty file is valid in text formats but not Parquet; Hive
                    // writers leave empty files for empty buckets: skip them.
                    if entry.metadata().map(|m| m.len() > 0).unwrap_or(true) {
                        out.push(path.to_string_lossy().into_owned());
                    }
                }
                Err(_) => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(location("c", "file:/a/b/").unwrap(), Location::Local("/a/b".into()));
        assert_eq!(location("c", "file:///a/b").unwrap(), Location::Local("/a/b".into()));
        assert_eq!(location("c", "/a").unwrap(), Location::Local("/a".into()));
        assert_eq!(location("c", "s3a://bk/x/y").unwrap(), Location::S3("s3://bk/x/y".into()));
        let e = location("c", "hdfs://nn:8020/x").unwrap_err().to_string();
        assert!(e.contains("hdfs scheme is not supported"), "{e}");
    }

    #[test]
    fn listing_skips_hidden_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("_SUCCESS"), b"").unwrap();
        std::fs::write(d.join(".part-0.crc"), b"x").unwrap();
        std::fs::write(d.join("part-0"), b"x").unwrap();
        std::fs::write(d.join("empty"), b"").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/part-1"), b"y").unwrap();
        let files = list_local("c", d).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files[0].ends_with("part-0") && files[1].ends_with("sub/part-1"));
        assert!(list_local("c", &d.join("missing")).unwrap().is_empty());
    }
}
