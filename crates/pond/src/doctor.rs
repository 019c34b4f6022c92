//! `pond doctor`: checks what a server with a given [`ServerConfig`] would
//! meet at start — the data directory and what it holds (system metadata,
//! master key, database files, the lake's catalog), the DuckDB extensions,
//! the listener ports, the TLS files and the other key files — and says for
//! each what is wrong and how to fix it.
//!
//! It changes nothing: metadata is parsed with [`pond_meta::read`], the master
//! key with `pond-secrets`, TLS with [`TlsSettings::load`](crate::tls::TlsSettings::load)
//! (the code the server runs), extensions are loaded into a throwaway
//! in-memory DuckDB. The only writes are a temporary file created and removed
//! to prove a directory is writable. Key material never appears in a message:
//! keys are named by file or fingerprint.
//!
//! Start with [`run`] and [`Report`].

use std::fmt::Write as _;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::ServerConfig;

/// A certificate expiring sooner than this is a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One finding: what was checked (`subject`, e.g. `data dir`, `port http`) and
/// what was found, including the fix when it is not OK.
#[derive(Debug, Clone)]
pub struct Check {
    pub status: Status,
    pub subject: String,
    pub message: String,
}

/// Every finding of one run, in the order checked.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, status: Status, subject: impl Into<String>, message: impl Into<String>) {
        self.checks.push(Check { status, subject: subject.into(), message: message.into() });
    }
    fn ok(&mut self, subject: impl Into<String>, message: impl Into<String>) {
        self.push(Status::Ok, subject, message)
    }
    fn warn(&mut self, subject: impl Into<String>, message: impl Into<String>) {
        self.push(Status::Warn, subject, message)
    }
    fn fail(&mut self, subject: impl Into<String>, message: impl Into<String>) {
        self.push(Status::Fail, subject, message)
    }

    /// Whether any check failed (`pond doctor` then exits non-zero).
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// Checks whose subject starts with `prefix` (for tests and callers that
    /// look at one area).
    pub fn about<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Check> + 'a {
        self.checks.iter().filter(move |c| c.subject.starts_with(prefix))
    }

    /// One line per check (`FAIL  port http: …`), then a count.
    pub fn render(&self) -> String {
        let width = self.checks.iter().map(|c| c.subject.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            let _ = writeln!(out, "{:<4}  {:<width$}  {}", c.status.label(), c.subject, c.message);
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        let _ = writeln!(
            out,
            "{} checks: {} OK, {} WARN, {} FAIL",
            self.checks.len(),
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Fail)
        );
        out
    }
}

/// Key files named by flags that are not part of [`ServerConfig`] (the server
/// reads them into its JWT settings at start).
#[derive(Debug, Clone, Default)]
pub struct KeyFiles {
    pub jwt_secret_file: Option<PathBuf>,
    pub jwt_public_keys: Vec<PathBuf>,
}

/// Runs every check against `config` as `pond serve` would use it.
/// `master_key_env` is the value of `POND_MASTER_KEY` (if set); the caller
/// reads it so tests need not touch the process environment.
pub fn run(config: &ServerConfig, keys: &KeyFiles, master_key_env: Option<&str>) -> Report {
    let mut r = Report::default();
    let data_dir = &config.engine.data_dir;
    if check_data_dir(&mut r, data_dir) {
        let meta = check_metadata(&mut r, data_dir);
        check_master_key(&mut r, data_dir, master_key_env, meta.as_ref());
        if let Some(meta) = &meta {
            check_databases(&mut r, data_dir, meta);
        }
        check_lake(&mut r, config);
        check_loose_file(&mut r, "admin password", &data_dir.join("admin-password"));
    }
    check_extensions(&mut r, config);
    check_ports(&mut r, config);
    check_tls(&mut r, config);
    check_jwt(&mut r, keys);
    r
}

// ---------------------------------------------------------------- data dir

/// Returns whether the directory exists and can be looked into.
fn check_data_dir(r: &mut Report, dir: &Path) -> bool {
    let subject = "data dir";
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            r.fail(subject, format!("{} is not a directory; point --data-dir (POND_DATA_DIR) at a directory", dir.display()));
            false
        }
        Ok(_) => {
            if let Err(e) = std::fs::read_dir(dir) {
                r.fail(subject, format!("{} cannot be read ({e}); give the user Pond runs as access (chown/chmod)", dir.display()));
                return false;
            }
            match probe_writable(dir) {
                Ok(()) => r.ok(subject, format!("{} exists and is writable", dir.display())),
                Err(e) => r.fail(
                    subject,
                    format!("{} is not writable ({e}); Pond writes its metadata and databases there: fix its owner or mode", dir.display()),
                ),
            }
            for sub in ["system", "databases", "audit", "lake", "ingest", "tmp"] {
                let path = dir.join(sub);
                if path.is_dir() {
                    if let Err(e) = probe_writable(&path) {
                        r.fail(format!("data dir {sub}/"), format!("{} is not writable ({e}); fix its owner or mode", path.display()));
                    }
                }
            }
            true
        }
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            // `pond serve` creates it: fine when the nearest existing ancestor is writable.
            let ancestor = dir.ancestors().skip(1).find(|a| a.exists() || a.as_os_str().is_empty());
            match ancestor {
                Some(a) if a.as_os_str().is_empty() || (a.is_dir() && probe_writable(a).is_ok()) => r.warn(
                    subject,
                    format!("{} does not exist yet; pond serve creates it (check the path if you expected data there)", dir.display()),
                ),
                Some(a) if !a.is_dir() => r.fail(
                    subject,
                    format!("{} cannot be created: {} is not a directory; choose another --data-dir", dir.display(), a.display()),
                ),
                Some(a) => r.fail(
                    subject,
                    format!(
                        "{} does not exist and cannot be created ({} is not writable); create it for the user Pond runs as",
                        dir.display(),
                        a.display()
                    ),
                ),
                None => r.fail(subject, format!("{} does not exist and has no existing parent", dir.display())),
            }
            false
        }
        Err(e) => {
            r.fail(subject, format!("{} cannot be examined ({e}); give the user Pond runs as access to it", dir.display()));
            false
        }
    }
}

/// Creates and removes a temporary file in `dir`.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    tempfile::Builder::new().prefix(".pond-doctor-").tempfile_in(dir).map(drop)
}

fn check_metadata(r: &mut Report, data_dir: &Path) -> Option<pond_meta::SystemMeta> {
    let path = data_dir.join("system").join("pond.json");
    match pond_meta::read(&path) {
        Ok(Some(meta)) => {
            r.ok(
                "metadata",
                format!(
                    "{} parses: {} databases, {} users, {} secrets",
                    path.display(),
                    meta.databases.len(),
                    meta.users.len(),
                    meta.secrets.len()
                ),
            );
            Some(meta)
        }
        Ok(None) => {
            r.ok("metadata", format!("{} does not exist yet (a fresh data dir; created at the first start)", path.display()));
            None
        }
        Err(e) => {
            r.fail("metadata", format!("{e}; restore system/pond.json from a backup (Pond will not start without it)"));
            None
        }
    }
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

fn check_master_key(r: &mut Report, data_dir: &Path, env: Option<&str>, meta: Option<&pond_meta::SystemMeta>) {
    let subject = "master key";
    let secrets = meta.map(|m| m.secrets.as_slice()).unwrap_or_default();
    let key = if let Some(text) = env {
        match pond_secrets::MasterKey::parse(text, pond_secrets::MASTER_KEY_ENV) {
            Ok(k) => {
                r.ok(subject, format!("from {} (key id {})", pond_secrets::MASTER_KEY_ENV, k.key_id()));
                k
            }
            Err(e) => {
                r.fail(subject, format!("{e}; set it to 32 random bytes as 64 hex characters (openssl rand -hex 32)"));
                return;
            }
        }
    } else {
        let path = data_dir.join(pond_secrets::MASTER_KEY_FILE);
        if !path.exists() {
            if secrets.is_empty() {
                r.ok(subject, format!("{} does not exist yet; created (mode 0600) at the first start", path.display()));
            } else {
                r.fail(
                    subject,
                    format!(
                        "{} is missing but {} secrets are sealed with a master key; restore the key file or set {}",
                        path.display(),
                        secrets.len(),
                        pond_secrets::MASTER_KEY_ENV
                    ),
                );
            }
            return;
        }
        if let Some(mode) = mode_of(&path).filter(|m| m & 0o077 != 0) {
            r.fail(
                subject,
                format!("{} has mode {mode:04o}: Pond refuses a key file others may read; chmod 600 {}", path.display(), path.display()),
            );
            return;
        }
        match pond_secrets::MasterKey::load(data_dir, None) {
            Ok(k) => {
                r.ok(subject, format!("{} (mode 0600, key id {})", path.display(), k.key_id()));
                k
            }
            Err(e) => {
                r.fail(subject, format!("{e}; restore the key file from a backup"));
                return;
            }
        }
    };
    let foreign: Vec<&str> = secrets.iter().filter(|s| s.key_id != key.key_id()).map(|s| s.name.as_str()).collect();
    if foreign.is_empty() {
        return;
    }
    let previous = std::env::var(pond_secrets::MASTER_KEY_PREVIOUS_ENV).ok();
    let previous_id = previous.and_then(|p| pond_secrets::MasterKey::parse(&p, pond_secrets::MASTER_KEY_PREVIOUS_ENV).ok());
    if foreign.iter().all(|name| secrets.iter().any(|s| s.name == *name && previous_id.as_ref().is_some_and(|p| p.key_id() == s.key_id))) {
        r.warn("secrets", format!("{} secrets are sealed with the previous key; the next start re-seals them", foreign.len()));
    } else {
        r.fail(
            "secrets",
            format!(
                "secrets {} were sealed with another master key than {}; start with that key in {} (or in {} to re-seal)",
                foreign.join(", "),
                key.key_id(),
                pond_secrets::MASTER_KEY_ENV,
                pond_secrets::MASTER_KEY_PREVIOUS_ENV
            ),
        );
    }
}

/// DuckDB database files start with a block header whose bytes 8..12 are `DUCK`.
fn is_duckdb_file(path: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; 12];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut head)?;
    Ok(n == head.len() && &head[8..12] == b"DUCK")
}

fn check_databases(r: &mut Report, data_dir: &Path, meta: &pond_meta::SystemMeta) {
    let dir = data_dir.join("databases");
    let mut problems = 0;
    for db in &meta.databases {
        let path = dir.join(format!("{}.duckdb", db.file_id));
        match is_duckdb_file(&path) {
            Ok(true) => {}
            Ok(false) => {
                problems += 1;
                r.fail(
                    format!("database {}", db.name),
                    format!("{} is not a DuckDB database file; restore it from a backup", path.display()),
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                problems += 1;
                r.fail(
                    format!("database {}", db.name),
                    format!(
                        "{} is missing (the metadata refers to it); restore it from a backup, or DROP DATABASE {} to forget it",
                        path.display(),
                        db.name
                    ),
                );
            }
            Err(e) => {
                problems += 1;
                r.fail(format!("database {}", db.name), format!("{} cannot be read ({e}); fix its owner or mode", path.display()));
            }
        }
    }
    if problems == 0 {
        r.ok("databases", format!("{} database files present in {}", meta.databases.len(), dir.display()));
    }
    let audit = data_dir.join("audit").join("audit.duckdb");
    if !meta.databases.is_empty() && !audit.exists() {
        r.warn("audit log", format!("{} is missing; an empty one is created at start (earlier audit events are lost)", audit.display()));
    }
}

fn check_lake(r: &mut Report, config: &ServerConfig) {
    let subject = "lake catalog";
    if config.engine.lake_catalog.is_some() {
        r.ok(subject, "kept in PostgreSQL (--lake-catalog); not checked here");
        return;
    }
    let lake = config.engine.data_dir.join("lake");
    let catalog = lake.join("catalog.ducklake");
    let wal = config.ingest_wal_dir.clone().unwrap_or_else(|| config.engine.data_dir.join("ingest"));
    let has_files = |dir: &Path| walk_has_file(dir, 6);
    let wal_records = std::fs::read_dir(&wal)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("wal-") && e.metadata().map(|m| m.len() > 0).unwrap_or(false))
        })
        .unwrap_or(false);
    let data = if config.engine.lake_data_path.is_none() { has_files(&lake.join("data")) } else { false };
    match is_duckdb_file(&catalog) {
        Ok(true) => r.ok(subject, format!("{} present", catalog.display())),
        Ok(false) => r.fail(subject, format!("{} is not a DuckDB (DuckLake) catalog file; restore it from a backup", catalog.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if data || wal_records {
                let what = if data { "Parquet files under lake/data" } else { "time-series write-ahead log segments in ingest/" };
                r.fail(
                    subject,
                    format!("{} is missing but the data dir holds {what}: restore the catalog from a backup", catalog.display()),
                );
            } else {
                r.ok(subject, format!("{} does not exist yet (created at start when ducklake loads)", catalog.display()));
            }
        }
        Err(e) => r.fail(subject, format!("{} cannot be read ({e}); fix its owner or mode", catalog.display())),
    }
}

fn walk_has_file(dir: &Path, depth: usize) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| match e.file_type() {
        Ok(t) if t.is_file() => true,
        Ok(t) if t.is_dir() && depth > 0 => walk_has_file(&e.path(), depth - 1),
        _ => false,
    })
}

// ---------------------------------------------------------------- extensions

fn check_extensions(r: &mut Report, config: &ServerConfig) {
    use pond_engine::extensions::{check_loadable, extension_path, install_command, DUCKDB_VERSION};
    let dir = config.engine.extension_dir();
    let online = config.engine.install_from_repository;
    let mut names: Vec<(String, bool)> = config.engine.extensions.iter().map(|n| (n.clone(), true)).collect();
    for lake in pond_engine::lake::lake_extensions(&config.engine) {
        if !names.iter().any(|(n, _)| n == lake) {
            names.push((lake.to_string(), false));
        }
    }
    for (name, required) in names {
        let subject = format!("extension {name}");
        let path = extension_path(&dir, &name);
        if !path.exists() {
            let install = install_command(&dir, &[name.as_str()]);
            let effect =
                if required { "pond serve stops at start without it (--extensions)" } else { "time-series storage answers 503 without it" };
            let mut message =
                format!("not installed for DuckDB {DUCKDB_VERSION} ({} missing): {effect}; install it with: {install}", path.display());
            if online {
                message.push_str(" (Pond also tries DuckDB's repository at start unless --offline)");
            }
            if required && !online {
                r.fail(subject, message);
            } else {
                r.warn(subject, message);
            }
            continue;
        }
        match check_loadable(&dir, &name) {
            Ok(()) => r.ok(subject, format!("{} loads", path.display())),
            Err(e) => r.fail(
                subject,
                format!(
                    "{} is there but DuckDB {DUCKDB_VERSION} cannot load it ({e}); delete it and reinstall: {}",
                    path.display(),
                    install_command(&dir, &[name.as_str()])
                ),
            ),
        }
    }
}

// ---------------------------------------------------------------- ports

fn check_ports(r: &mut Report, config: &ServerConfig) {
    let mut listeners = vec![("flight", "--flight-addr", config.flight_addr), ("http", "--http-addr", config.http_addr)];
    if let Some(a) = config.pg_addr {
        listeners.push(("pg", "--pg-addr", a));
    }
    if let Some(a) = config.tcp_addr {
        listeners.push(("tcp", "--tcp-addr", a));
    }
    for (i, (name, flag, addr)) in listeners.iter().enumerate() {
        let subject = format!("port {name}");
        if addr.port() == 0 {
            r.ok(subject, format!("{addr}: port 0, a free port is picked at start"));
            continue;
        }
        if let Some((other, _, _)) = listeners[..i].iter().find(|(_, _, a)| a.port() == addr.port() && overlaps(a, addr)) {
            r.fail(subject, format!("{addr} is also the {other} listener's address; give {flag} another port"));
            continue;
        }
        match std::net::TcpListener::bind(addr) {
            Ok(l) => {
                drop(l);
                r.ok(subject, format!("{addr} is free"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let holder = match listening_process(addr.port()) {
                    Some(p) if p.comm == "pond" => format!("another Pond server (pid {}) is listening there: stop it first", p.pid),
                    Some(p) => format!("process {} (pid {}) is listening there: stop it", p.comm, p.pid),
                    None => "another process (not visible to this user) is listening there: stop it".to_string(),
                };
                r.fail(subject, format!("{addr} is in use: {holder}, or give {flag} another port"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => r.fail(
                subject,
                format!("{addr}: not allowed to bind ({e}); ports below 1024 need CAP_NET_BIND_SERVICE: choose a higher port for {flag}"),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                r.fail(subject, format!("{addr}: no such address on this host ({e}); use one of its addresses or 0.0.0.0 in {flag}"))
            }
            Err(e) => r.fail(subject, format!("{addr} cannot be bound ({e}); check {flag}")),
        }
    }
}

fn overlaps(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

struct Holder {
    pid: u32,
    comm: String,
}

/// The process listening on TCP `port`, from /proc (Linux; `None` elsewhere or
/// when the socket belongs to a process this user cannot see).
fn listening_process(port: u16) -> Option<Holder> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if fields.len() < 10 || fields[3] != "0A" {
                continue;
            }
            let local_port = fields[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.push(format!("socket:[{}]", fields[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_string();
                return Some(Holder { pid, comm });
            }
        }
    }
    None
}

// ---------------------------------------------------------------- TLS and key files

fn check_tls(r: &mut Report, config: &ServerConfig) {
    let tls = &config.tls;
    if !tls.is_enabled() {
        r.ok("tls", "off: the listeners speak plain TCP (set --tls-cert and --tls-key for TLS)");
        return;
    }
    match tls.load() {
        Ok(_) => r.ok("tls", "certificate chain and private key load and belong together"),
        Err(e) => {
            r.fail("tls", format!("{e}"));
            return;
        }
    }
    if let Some(cert) = &tls.cert {
        check_expiry(r, "tls certificate", cert);
    }
    if let Some(ca) = &tls.client_ca {
        check_expiry(r, "tls client CA", ca);
    }
    if let Some(key) = &tls.key {
        check_loose_file(r, "tls key", key);
    }
}

/// The soonest-expiring certificate of a PEM file decides.
fn check_expiry(r: &mut Report, subject: &str, path: &Path) {
    use rustls::pki_types::pem::PemObject as _;
    let certs = std::fs::read(path)
        .ok()
        .map(|bytes| rustls::pki_types::CertificateDer::pem_slice_iter(&bytes).filter_map(|c| c.ok()).collect::<Vec<_>>())
        .unwrap_or_default();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut soonest = None;
    for der in &certs {
        let Ok(cert) = x509_certificate::X509Certificate::from_der(der.as_ref()) else {
            r.fail(subject, format!("{}: a certificate cannot be parsed as X.509", path.display()));
            return;
        };
        if cert.validity_not_before().timestamp() > now {
            r.fail(
                subject,
                format!(
                    "{}: not valid before {} (check the clock, or reissue it)",
                    path.display(),
                    cert.validity_not_before().format("%Y-%m-%d %H:%M UTC")
                ),
            );
            return;
        }
        let after = cert.validity_not_after();
        if soonest.as_ref().is_none_or(|(secs, _)| after.timestamp() < *secs) {
            soonest = Some((after.timestamp(), after.format("%Y-%m-%d %H:%M UTC").to_string()));
        }
    }
    let Some((secs, text)) = soonest else { return };
    let days = (secs - now).div_euclid(86_400);
    if secs <= now {
        r.fail(subject, format!("{} expired on {text}; renew it (clients refuse expired certificates)", path.display()));
    } else if days < EXPIRY_WARNING_DAYS {
        r.warn(subject, format!("{} expires on {text} (in {days} days); renew it soon", path.display()));
    } else {
        r.ok(subject, format!("{} valid until {text} ({days} days)", path.display()));
    }
}

/// A key-like file: WARN when group or others may read it.
fn check_loose_file(r: &mut Report, subject: &str, path: &Path) {
    if !path.exists() {
        return;
    }
    match mode_of(path) {
        Some(mode) if mode & 0o077 != 0 => r.warn(
            subject,
            format!("{} has mode {mode:04o}: others on this host may read it; chmod 600 {}", path.display(), path.display()),
        ),
        Some(mode) => r.ok(subject, format!("{} (mode {mode:04o})", path.display())),
        None => r.ok(subject, format!("{}", path.display())),
    }
}

fn check_jwt(r: &mut Report, keys: &KeyFiles) {
    if keys.jwt_secret_file.is_none() && keys.jwt_public_keys.is_empty() {
        return;
    }
    let mut config = pond_auth::JwtConfig::default();
    if let Some(path) = &keys.jwt_secret_file {
        match std::fs::read(path) {
            Ok(bytes) => {
                config.hmac_secret = Some(bytes.trim_ascii().to_vec());
                check_loose_file(r, "jwt secret file", path);
            }
            Err(e) => {
                r.fail("jwt secret file", format!("cannot read {} ({e}); check --jwt-secret-file", path.display()));
                return;
            }
        }
    }
    for path in &keys.jwt_public_keys {
        match std::fs::read_to_string(path) {
            Ok(text) => config.public_keys_pem.push(text),
            Err(e) => {
                r.fail("jwt public key", format!("cannot read {} ({e}); check --jwt-public-key", path.display()));
                return;
            }
        }
    }
    match config.validate() {
        Ok(()) => r.ok("jwt keys", "the JWT secret and public keys are usable"),
        Err(e) => r.fail("jwt keys", format!("{e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_prints_one_line_per_check_and_a_count() {
        let mut r = Report::default();
        r.ok("data dir", "fine");
        r.fail("port http", "in use");
        let text = r.render();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            ["OK    data dir   fine", "FAIL  port http  in use", "2 checks: 1 OK, 0 WARN, 1 FAIL"]
        );
        assert!(r.failed());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_listening_socket_is_traced_to_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = listening_process(port).expect("this process listens there");
        assert_eq!(holder.pid, std::process::id());
        drop(listener);
        assert!(listening_process(port).is_none());
    }

    fn cert_file(dir: &Path, name: &str, from_days: i64, to_days: i64) -> PathBuf {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(to_days);
        let key = rcgen::KeyPair::generate().unwrap();
        let path = dir.join(name);
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        path
    }

    #[test]
    fn certificate_expiry_fails_when_past_and_warns_when_near() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("expired.pem", -30, -1, Status::Fail, "expired on"),
            ("future.pem", 2, 30, Status::Fail, "not valid before"),
            ("soon.pem", -1, 10, Status::Warn, "expires on"),
            ("fine.pem", -1, 400, Status::Ok, "valid until"),
        ];
        for (name, from, to, status, words) in cases {
            let mut r = Report::default();
            check_expiry(&mut r, "tls certificate", &cert_file(dir.path(), name, from, to));
            let c = &r.checks[0];
            assert_eq!((c.status, r.checks.len()), (status, 1), "{name}: {}", c.message);
            assert!(c.message.contains(words), "{name}: {}", c.message);
        }
        // A chain decides by its soonest-expiring certificate.
        let chain = dir.path().join("chain.pem");
        let fine = std::fs::read_to_string(dir.path().join("fine.pem")).unwrap();
        let expired = std::fs::read_to_string(dir.path().join("expired.pem")).unwrap();
        std::fs::write(&chain, fine + &expired).unwrap();
        let mut r = Report::default();
        check_expiry(&mut r, "tls certificate", &chain);
        assert_eq!(r.checks[0].status, Status::Fail);
    }

    #[test]
    fn ports_shared_by_two_listeners_fail_without_binding() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        config.http_addr = ([127, 0, 0, 1], port).into();
        config.pg_addr = Some(([0, 0, 0, 0], port).into());
        config.flight_addr = ([127, 0, 0, 1], 0).into();
        let mut r = Report::default();
        check_ports(&mut r, &config);
        let pg = r.about("port pg").next().unwrap();
        assert_eq!(pg.status, Status::Fail);
        assert!(pg.message.contains("also the http listener's address"), "{}", pg.message);
        assert_eq!(r.about("port flight").next().unwrap().status, Status::Ok);
    }
}
