//! DuckDB extensions: loading at start, installing from DuckDB's repository when
//! it is reachable, and an offline installer that takes the official signed
//! binaries from PyPI (`duckdb-extension-<name>==<duckdb version>` wheels).
//!
//! Extensions live in `<extension_dir>/v<version>/<platform>/<name>.duckdb_extension`,
//! the layout DuckDB's own `INSTALL` uses, so `LOAD <name>` finds them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// DuckDB version of the bundled engine (matches the `duckdb` crate pin).
pub const DUCKDB_VERSION: &str = "1.5.5";

/// Extensions Pond knows how to fetch offline.
pub const KNOWN_EXTENSIONS: &[&str] =
    &["icu", "httpfs", "tpch", "tpcds", "ducklake", "postgres_scanner", "iceberg", "aws", "delta", "quack", "avro"];

/// DuckDB's platform string for this build.
pub fn platform() -> &'static str {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux_amd64",
        ("linux", "aarch64") => "linux_arm64",
        ("macos", "x86_64") => "osx_amd64",
        ("macos", "aarch64") => "osx_arm64",
        _ => "unknown",
    }
}

/// Where DuckDB looks for an installed extension.
pub fn extension_path(extension_dir: &Path, name: &str) -> PathBuf {
    extension_dir.join(format!("v{DUCKDB_VERSION}")).join(platform()).join(format!("{name}.duckdb_extension"))
}

/// The command a user runs to install `names` offline into `extension_dir`.
pub fn install_command(extension_dir: &Path, names: &[&str]) -> String {
    format!("pond extensions install --extension-dir {} {}", extension_dir.display(), names.join(" "))
}

/// Loads each extension on `conn`; a missing one is installed from DuckDB's
/// repository if `try_repository` and it is reachable, else a clear error names it.
pub fn load_all(conn: &duckdb::Connection, extension_dir: &Path, names: &[String], try_repository: bool) -> Result<()> {
    for name in names {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::InvalidRequest(format!("invalid extension name '{name}'")));
        }
        if conn.execute_batch(&format!("LOAD {name}")).is_ok() {
            tracing::debug!(extension = %name, "extension loaded");
            continue;
        }
        if try_repository {
            match conn.execute_batch(&format!("INSTALL {name}; LOAD {name}")) {
                Ok(()) => {
                    tracing::info!(extension = %name, "extension installed from DuckDB's repository");
                    continue;
                }
                Err(e) => tracing::debug!(extension = %name, error = %e, "repository install failed"),
            }
        }
        return Err(Error::ExtensionMissing {
            name: name.clone(),
            dir: extension_dir.display().to_string(),
            command: install_command(extension_dir, &[name.as_str()]),
        });
    }
    Ok(())
}

/// Loads `name` from `extension_dir` into a throwaway in-memory DuckDB (no
/// repository install, no autoload), to tell whether the installed file is one
/// this DuckDB version accepts (`pond doctor`). DuckDB's message on failure.
pub fn check_loadable(extension_dir: &Path, name: &str) -> std::result::Result<(), String> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("invalid extension name '{name}'"));
    }
    let config = duckdb::Config::default()
        .with("extension_directory", extension_dir.to_string_lossy())
        .and_then(|c| c.with("autoinstall_known_extensions", "false"))
        .and_then(|c| c.with("autoload_known_extensions", "false"))
        .map_err(|e| e.to_string())?;
    let conn = duckdb::Connection::open_in_memory_with_flags(config).map_err(|e| e.to_string())?;
    conn.execute_batch(&format!("LOAD {name}")).map_err(|e| e.to_string())
}

/// Installs extensions offline from the official PyPI wheels, using `python3 -m pip
/// download` (so pip's proxy settings and cache apply). Already installed
/// extensions are skipped. Returns the names that were installed.
pub fn install_from_pypi(extension_dir: &Path, names: &[String], python: &str) -> Result<Vec<String>> {
    let mut installed = Vec::new();
    for name in names {
        if !KNOWN_EXTENSIONS.contains(&name.as_str()) {
            return Err(Error::ExtensionInstall(format!("unknown extension '{name}'; known: {}", KNOWN_EXTENSIONS.join(", "))));
        }
        let target = extension_path(extension_dir, name);
        if target.exists() {
            continue;
        }
        let download = tempfile_dir()?;
        let package = format!("duckdb-extension-{}=={DUCKDB_VERSION}", name.replace('_', "-"));
        let status = Command::new(python)
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check", "-d"])
            .arg(&download)
            .arg(&package)
            .status()
            .map_err(|e| Error::ExtensionInstall(format!("could not run {python} -m pip: {e}")))?;
        if !status.success() {
            return Err(Error::ExtensionInstall(format!("pip download {package} failed ({status})")));
        }
        let wheel = std::fs::read_dir(&download)
            .map_err(|e| Error::io(&download, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| Error::ExtensionInstall(format!("pip download {package} produced no wheel")))?;
        extract_from_wheel(&wheel, name, &target)?;
        let _ = std::fs::remove_dir_all(&download);
        tracing::info!(extension = %name, path = %target.display(), "extension installed from PyPI");
        installed.push(name.clone());
    }
    Ok(installed)
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("pond-ext-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

/// Copies `<pkg>/extensions/v<ver>/<name>.duckdb_extension` out of a wheel.
pub fn extract_from_wheel(wheel: &Path, name: &str, target: &Path) -> Result<()> {
    let file = std::fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| Error::ExtensionInstall(format!("{}: {e}", wheel.display())))?;
    let suffix = format!("/v{DUCKDB_VERSION}/{name}.duckdb_extension");
    let index = (0..archive.len())
        .find(|&i| archive.by_index(i).map(|f| f.name().ends_with(&suffix)).unwrap_or(false))
        .ok_or_else(|| Error::ExtensionInstall(format!("{} holds no {name}.duckdb_extension for v{DUCKDB_VERSION}", wheel.display())))?;
    let mut entry = archive.by_index(index).map_err(|e| Error::ExtensionInstall(e.to_string()))?;
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(|e| Error::io(wheel, e))?;
    let parent = target.parent().ok_or_else(|| Error::Internal("extension path has no parent".into()))?;
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = target.with_extension("tmp");
    std::fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, target).map_err(|e| Error::io(target, e))?;
    Ok(())
}
