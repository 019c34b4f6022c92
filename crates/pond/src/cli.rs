//! Command line: `pond serve`, `pond doctor`, `pond health`, `pond sql`, `pond version`,
//! `pond extensions install`, `pond cert generate`, `pond config reference`, and the
//! administration commands `pond user`, `pond grant`, `pond revoke`, `pond grants`,
//! `pond token` (clients of a running server's HTTP API).
//!
//! Every flag also reads an environment variable. `pond serve --config FILE`
//! (POND_CONFIG) reads a TOML file with the same settings, keys spelled like
//! the long flags (`flight-addr = "0.0.0.0:32010"`; `flight_addr` also works);
//! `pond doctor` takes the same flags, variables and file. Precedence: flag >
//! environment > file > default. `docs/configuration.md` is generated from
//! these definitions (`pond config reference`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "pond", version, about = "Pond: DuckDB as a secure, multi-user, networked analytics server", args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Check a data dir, the extensions, ports, TLS and key files as `pond serve`
    /// with the same flags would meet them; exits non-zero when a check fails.
    Doctor(ServeArgs),
    /// Probe a running server's HTTP /health endpoint (for container health checks).
    Health(HealthArgs),
    /// Interactive SQL shell over Flight SQL.
    Sql(SqlArgs),
    /// Print version information.
    Version,
    /// Manage DuckDB extensions.
    Extensions {
        #[command(subcommand)]
        command: ExtensionsCommand,
    },
    /// Configuration reference.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// TLS certificates for development and tests.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Manage users of a running server (superuser).
    User {
        #[command(flatten)]
        conn: AdminConn,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Grant privileges on a database (READ, WRITE, ALL) or a table (SELECT, INSERT, UPDATE, DELETE, ALL).
    Grant(GrantArgs),
    /// Revoke privileges granted with `pond grant`.
    Revoke(GrantArgs),
    /// Show grants (of one user, or all for superusers).
    Grants {
        #[command(flatten)]
        conn: AdminConn,
        #[arg(long = "for")]
        for_user: Option<String>,
    },
    /// Take an online backup of a running server (superuser): everything it owns, consistent, incremental.
    Backup {
        #[command(flatten)]
        conn: AdminConn,
        /// Target directory (default: the server's --backup-to).
        #[arg(long = "to")]
        to: Option<String>,
    },
    /// Rebuild a data directory from a backup (the server must not run on it).
    Restore(RestoreArgs),
    /// Manage API tokens (your own; superusers: everyone's).
    Token {
        #[command(flatten)]
        conn: AdminConn,
        #[command(subcommand)]
        command: TokenCommand,
    },
}

/// How administration commands reach the server. The password comes from
/// POND_PASSWORD or a prompt, never from a flag.
#[derive(Debug, Args, Clone)]
pub struct AdminConn {
    /// The server's HTTP API.
    #[arg(long = "url", env = "POND_URL", default_value = "http://127.0.0.1:8000", global = true)]
    pub url: String,
    #[arg(long = "user", short = 'u', env = "POND_USER", default_value = "admin", global = true)]
    pub user: String,
    /// CA certificate to trust for https URLs (e.g. from `pond cert generate`).
    #[arg(long = "cacert", env = "POND_CACERT", global = true)]
    pub cacert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users.
    List,
    /// Create a user; the password is read from POND_NEW_PASSWORD or prompted for.
    Create {
        name: String,
        #[arg(long = "superuser")]
        superuser: bool,
    },
    /// Set a user's password (POND_NEW_PASSWORD or prompt). Anyone may change their own.
    Password { name: String },
    /// Rename a user.
    Rename { name: String, new_name: String },
    /// Make a user a superuser, or (with --off) an ordinary user.
    Superuser {
        name: String,
        #[arg(long = "off")]
        off: bool,
    },
    /// Drop a user with their grants and tokens.
    Drop { name: String },
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    #[command(flatten)]
    pub conn: AdminConn,
    /// The user.
    pub to: String,
    /// Privileges, comma-separated (read,write | select,insert,update,delete | all).
    #[arg(value_delimiter = ',')]
    pub privileges: Vec<String>,
    #[arg(long = "database", short = 'd')]
    pub database: String,
    /// `table` or `schema.table`: a table grant instead of a database grant.
    #[arg(long = "table", short = 't')]
    pub table: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// List tokens (never their secrets).
    List,
    /// Create a token; its secret is printed once.
    Create {
        name: String,
        #[arg(long = "description", default_value = "")]
        description: String,
        /// Owner (superusers only; default: you).
        #[arg(long = "for")]
        owner: Option<String>,
        /// Databases the token may use (repeat or comma-separate; default: all the owner may).
        #[arg(long = "database", short = 'd', value_delimiter = ',')]
        databases: Vec<String>,
        /// read, write or admin.
        #[arg(long = "permission", default_value = "read")]
        permission: String,
        /// Lifetime in seconds.
        #[arg(long = "expires-in")]
        expires_in: Option<u64>,
    },
    /// Replace a token's secret (the old one stops working); prints the new secret once.
    Rotate { id: String },
    /// Revoke a token (kept in the list as revoked).
    Revoke { id: String },
    /// Delete a token.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every flag, environment variable and config-file key with its
    /// default and description, as Markdown (docs/configuration.md).
    Reference,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// URL to probe (default: /health on --http-addr, loopback when it is 0.0.0.0 or ::).
    #[arg(long = "url", env = "POND_HEALTH_URL")]
    pub url: Option<String>,
    /// The server's HTTP listener, as given to `pond serve`.
    #[arg(long = "http-addr", env = "POND_HTTP_ADDR", default_value = "127.0.0.1:8000")]
    pub http_addr: SocketAddr,
    /// The server's certificate; when set the probe uses https (without
    /// verifying the certificate, and only towards a loopback address).
    #[arg(long = "tls-cert", env = "POND_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Give up after this many milliseconds.
    #[arg(long = "timeout-ms", env = "POND_HEALTH_TIMEOUT_MS", default_value_t = 3000)]
    pub timeout_ms: u64,
}

impl HealthArgs {
    /// The URL to probe.
    pub fn target(&self) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let mut addr = self.http_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        let scheme = if self.tls_cert.is_some() { "https" } else { "http" };
        format!("{scheme}://{addr}/health")
    }
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Write a development CA, a server certificate it signs and optionally a
    /// client certificate (for --tls-client-ca). Keys are written with mode 0600.
    Generate(CertGenerateArgs),
}

#[derive(Debug, Args)]
pub struct CertGenerateArgs {
    /// Directory for ca.pem, ca-key.pem, server.pem, server-key.pem (and client.pem, client-key.pem).
    #[arg(long = "out-dir")]
    pub out_dir: PathBuf,
    /// Host name or IP address the server certificate is valid for; repeat or
    /// separate with commas (default: localhost, 127.0.0.1, ::1).
    #[arg(long = "host", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long = "days", default_value_t = 365)]
    pub days: u32,
    /// Also write a client certificate with this common name (mutual TLS).
    #[arg(long = "client")]
    pub client: Option<String>,
    /// Replace existing files.
    #[arg(long = "force")]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ExtensionsCommand {
    /// Install extensions offline from the official PyPI wheels
    /// (duckdb-extension-<name>==1.5.5) into the extension directory.
    Install(ExtensionsInstallArgs),
}

#[derive(Debug, Args)]
pub struct ExtensionsInstallArgs {
    /// Extension directory (default: <data-dir>/extensions).
    #[arg(long = "extension-dir", env = "POND_EXTENSION_DIR")]
    pub extension_dir: Option<PathBuf>,
    #[arg(long = "data-dir", env = "POND_DATA_DIR", default_value = "./pond-data")]
    pub data_dir: PathBuf,
    /// Python interpreter whose pip downloads the wheels.
    #[arg(long = "python", env = "POND_PYTHON", default_value = "python3")]
    pub python: String,
    /// Extensions to install (default: icu).
    pub names: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Directory for databases, system metadata and extensions.
    #[arg(long = "data-dir", env = "POND_DATA_DIR", default_value = "./pond-data")]
    pub data_dir: PathBuf,
    /// Optional TOML file with the same settings as these flags.
    #[arg(long = "config", env = "POND_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub lake_s3: LakeS3Args,
    #[command(flatten)]
    pub backup: BackupArgs,
    /// Write the listening addresses as JSON to this file once ready.
    #[arg(long = "ready-file", env = "POND_READY_FILE")]
    pub ready_file: Option<PathBuf>,
}

/// Scheduled backups (`pond-backup`).
#[derive(Debug, Args, Clone)]
pub struct BackupArgs {
    /// Default backup target directory: `BACKUP` without `TO`, `pond backup` without `--to`, and scheduled backups.
    #[arg(long = "backup-to", env = "POND_BACKUP_TO")]
    pub backup_to: Option<String>,
    /// Take a backup to --backup-to this often (e.g. 30m, 6h, 1d); off when unset.
    #[arg(long = "backup-every", env = "POND_BACKUP_EVERY")]
    pub backup_every: Option<String>,
    /// After each scheduled backup keep this many newest backups in --backup-to (0 keeps all).
    #[arg(long = "backup-keep", env = "POND_BACKUP_KEEP", default_value_t = 7)]
    pub backup_keep: usize,
}

/// `pond restore`: rebuild a data directory from a backup (offline).
#[derive(Debug, Args, Clone)]
pub struct RestoreArgs {
    /// The backup target directory (what --backup-to or BACKUP TO named).
    #[arg(long = "from", env = "POND_RESTORE_FROM")]
    pub from: String,
    /// Which backup (an id from --list); the newest when omitted.
    #[arg(long = "backup", env = "POND_RESTORE_BACKUP")]
    pub backup: Option<String>,
    /// The new data directory (must not exist or be empty).
    #[arg(long = "data-dir", env = "POND_DATA_DIR", required_unless_present_any = ["list", "check"])]
    pub data_dir: Option<PathBuf>,
    /// The master key file the backup's secrets were sealed with (the original's system/master.key);
    /// installed in the new data dir. Not needed when POND_MASTER_KEY is set or the backup holds no secrets.
    #[arg(long = "master-key-file", env = "POND_RESTORE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Set the restored lake back to its state at this time (RFC 3339, or 'YYYY-MM-DD HH:MM:SS' in UTC):
    /// the DuckLake snapshot in force then (kept by --lake-snapshot-retention-secs), and only the ingest
    /// log records that arrived by then.
    #[arg(long = "until", env = "POND_RESTORE_UNTIL")]
    pub until: Option<String>,
    /// Put the restored lake's Parquet files on S3 at this s3://bucket/prefix (with the --lake-s3-* settings
    /// and keys as for serve) instead of under the new data dir; start the restored server with the same
    /// --lake-data-path. Files already there with the same size are not sent again.
    #[arg(long = "lake-data-path", env = "POND_LAKE_DATA_PATH")]
    pub lake_data_path: Option<String>,
    #[command(flatten)]
    pub s3: LakeS3Args,
    /// Where the ducklake extension is (needed by --until); the server's --extension-dir.
    #[arg(long = "extension-dir", env = "POND_EXTENSION_DIR")]
    pub extension_dir: Option<PathBuf>,
    /// List the backups in --from and exit.
    #[arg(long = "list")]
    pub list: bool,
    /// Only check the backup (every file against the manifest's checksums).
    #[arg(long = "check")]
    pub check: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ListenArgs {
    /// Arrow Flight SQL listener (port 0 picks a free port).
    #[arg(long = "flight-addr", env = "POND_FLIGHT_ADDR", default_value = "127.0.0.1:32010")]
    pub flight_addr: SocketAddr,
    /// HTTP listener (port 0 picks a free port).
    #[arg(long = "http-addr", env = "POND_HTTP_ADDR", default_value = "127.0.0.1:8000")]
    pub http_addr: SocketAddr,
    /// PostgreSQL wire protocol listener (port 0 picks a free port; `off` disables it).
    #[arg(long = "pg-addr", env = "POND_PG_ADDR", default_value = "127.0.0.1:5433")]
    pub pg_addr: String,
    /// PostgreSQL authentication: `scram` (SCRAM-SHA-256 for users with a stored
    /// verifier; cleartext for the user name `token`, whose password is an API
    /// token or JWT) or `password` (cleartext for everyone; tokens with any user name).
    #[arg(long = "pg-auth", env = "POND_PG_AUTH", default_value = "scram")]
    pub pg_auth: String,
    /// TCP-DuckDB's line protocol listener (TCP-DuckDB used port 4000; port 0
    /// picks a free port). Off unless set.
    #[arg(long = "tcp-addr", env = "POND_TCP_ADDR")]
    pub tcp_addr: Option<String>,
    /// IPC compression of Flight results: none, lz4 or zstd.
    #[arg(long = "flight-compression", env = "POND_FLIGHT_COMPRESSION", default_value = "none")]
    pub flight_compression: String,
    /// Largest HTTP request body in bytes (larger: 413).
    #[arg(long = "max-body-bytes", env = "POND_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: usize,
}

/// Time-series ingest (InfluxDB line protocol endpoints).
#[derive(Debug, Args, Clone)]
pub struct IngestArgs {
    /// How the ingest write-ahead log reaches the disk before a write is acknowledged: fsync, fdatasync or async.
    #[arg(long = "ingest-sync", env = "POND_INGEST_SYNC", default_value = "fdatasync")]
    pub ingest_sync: String,
    /// Directory of the ingest write-ahead log (default: <data-dir>/ingest). On storage that outlives the
    /// machine (a replicated volume, NFS), a node whose disk is lost is replaced without losing acknowledged
    /// writes: start the replacement with the same --node-id and this directory. One process at a time.
    #[arg(long = "ingest-wal-dir", env = "POND_INGEST_WAL_DIR")]
    pub ingest_wal_dir: Option<PathBuf>,
    /// Create unknown databases on a superuser's first write (InfluxDB's behaviour); false: 404.
    #[arg(long = "ingest-create-databases", env = "POND_INGEST_CREATE_DATABASES", default_value_t = true,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub ingest_create_databases: bool,
    /// Write requests waiting for the writer before new ones get 503.
    #[arg(long = "ingest-queue-depth", env = "POND_INGEST_QUEUE_DEPTH", default_value_t = 1024)]
    pub ingest_queue_depth: usize,
    /// Write-ahead log segment size in MiB; closed segments adding up to more start a flush.
    #[arg(long = "ingest-wal-segment-mib", env = "POND_INGEST_WAL_SEGMENT_MIB", default_value_t = 64)]
    pub ingest_wal_segment_mib: u64,
    /// Rows kept in memory before the lake (flushed or not) above which writes get 503.
    #[arg(long = "ingest-max-hot-rows", env = "POND_INGEST_MAX_HOT_ROWS", default_value_t = 16_000_000)]
    pub ingest_max_hot_rows: u64,
    /// Flush a database's buffered rows to its lake (Parquet) once it holds this many rows.
    #[arg(long = "ingest-flush-rows", env = "POND_INGEST_FLUSH_ROWS", default_value_t = 1_000_000)]
    pub ingest_flush_rows: u64,
    /// …or once its oldest buffered row is this many milliseconds old.
    #[arg(long = "ingest-flush-interval-ms", env = "POND_INGEST_FLUSH_INTERVAL_MS", default_value_t = 60_000)]
    pub ingest_flush_interval_ms: u64,
    /// Compact every lake (retention, file merging, snapshot expiry, file cleanup) this often; 0: only on demand.
    #[arg(long = "lake-compact-interval-secs", env = "POND_LAKE_COMPACT_INTERVAL_SECS", default_value_t = 3600)]
    pub lake_compact_interval_secs: u64,
    /// Files replaced by a compaction are deleted once this many seconds old (running queries may read them).
    #[arg(long = "lake-cleanup-grace-secs", env = "POND_LAKE_CLEANUP_GRACE_SECS", default_value_t = 60)]
    pub lake_cleanup_grace_secs: u64,
    /// Keep lake snapshots this many seconds for point-in-time reads (`FROM cpu AT (TIMESTAMP => …)`);
    /// older ones expire at the next compaction. 0 keeps only the current snapshot (compaction then frees the most space).
    #[arg(long = "lake-snapshot-retention-secs", env = "POND_LAKE_SNAPSHOT_RETENTION_SECS", default_value_t = 0)]
    pub lake_snapshot_retention_secs: u64,
    /// Who encodes flushed Parquet files: auto (arrow-rs for a local data path, DuckDB COPY for S3),
    /// arrow, duckdb-copy, or ducklake-insert (the previous design, for benchmarks).
    #[arg(long = "lake-encoder", env = "POND_LAKE_ENCODER", default_value = "auto")]
    pub lake_encoder: String,
    /// Lake data files on S3-compatible storage, e.g. s3://bucket/prefix (default: <data-dir>/lake/<db>/data).
    /// Credentials only from POND_LAKE_S3_ACCESS_KEY_ID and POND_LAKE_S3_SECRET_ACCESS_KEY.
    #[arg(long = "lake-data-path", env = "POND_LAKE_DATA_PATH")]
    pub lake_data_path: Option<String>,
    /// Keep the lake's catalog in PostgreSQL (libpq key/value string without the password, e.g.
    /// "host=db port=5432 dbname=lake user=pond"), so several nodes can share one lake.
    /// Password only from POND_LAKE_CATALOG_PASSWORD. Default: <data-dir>/lake/catalog.ducklake.
    #[arg(long = "lake-catalog", env = "POND_LAKE_CATALOG")]
    pub lake_catalog: Option<String>,
    /// Run as this node (a name of letters, digits, '-' or '_') of several sharing one lake: needs
    /// --lake-catalog and --lake-data-path; users, grants, tokens and databases are then kept in the
    /// catalog's PostgreSQL database and shared by every node. Keep it stable: a node's ingest log
    /// replays under its name.
    #[arg(long = "node-id", env = "POND_NODE_ID")]
    pub node_id: Option<String>,
}

/// How Pond reaches an S3 lake data path (`serve`, and `restore` onto S3).
#[derive(Debug, Args, Clone)]
pub struct LakeS3Args {
    /// S3 endpoint host[:port] (default: AWS).
    #[arg(long = "lake-s3-endpoint", env = "POND_LAKE_S3_ENDPOINT")]
    pub lake_s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long = "lake-s3-region", env = "POND_LAKE_S3_REGION")]
    pub lake_s3_region: Option<String>,
    /// S3 URL style: vhost or path (MinIO, moto and most self-hosted servers need path).
    #[arg(long = "lake-s3-url-style", env = "POND_LAKE_S3_URL_STYLE", default_value = "vhost")]
    pub lake_s3_url_style: String,
    /// Use HTTPS to the S3 endpoint.
    #[arg(long = "lake-s3-use-ssl", env = "POND_LAKE_S3_USE_SSL", default_value_t = true,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub lake_s3_use_ssl: bool,
}

impl LakeS3Args {
    /// `--lake-data-path` checked (an s3:// URL, without a trailing slash); None when unset.
    pub fn data_path(&self, path: Option<&str>) -> Result<Option<String>, String> {
        let Some(path) = path.map(str::trim).filter(|p| !p.is_empty()) else { return Ok(None) };
        if !path.starts_with("s3://") {
            return Err(format!("--lake-data-path '{path}': use an s3://bucket/prefix URL (local lakes live under the data directory)"));
        }
        Ok(Some(path.trim_end_matches('/').to_string()))
    }

    /// The S3 settings; keys only from POND_LAKE_S3_ACCESS_KEY_ID and POND_LAKE_S3_SECRET_ACCESS_KEY.
    pub fn config(&self) -> Result<pond_engine::S3Config, String> {
        let style = self.lake_s3_url_style.to_ascii_lowercase();
        if style != "path" && style != "vhost" {
            return Err(format!("--lake-s3-url-style '{style}': use path or vhost"));
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Ok(pond_engine::S3Config {
            endpoint: self.lake_s3_endpoint.clone(),
            region: self.lake_s3_region.clone(),
            access_key_id: env("POND_LAKE_S3_ACCESS_KEY_ID"),
            secret_access_key: env("POND_LAKE_S3_SECRET_ACCESS_KEY"),
            url_style_path: style == "path",
            use_ssl: self.lake_s3_use_ssl,
        })
    }
}

/// TLS for every listener (Flight SQL and HTTP); `pond cert generate` makes
/// development certificates.
#[derive(Debug, Args, Clone)]
pub struct TlsArgs {
    /// PEM certificate chain (server certificate first); turns TLS on for every listener. Needs --tls-key.
    #[arg(long = "tls-cert", env = "POND_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long = "tls-key", env = "POND_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): clients must present a certificate signed by one (mutual TLS).
    #[arg(long = "tls-client-ca", env = "POND_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct EngineArgs {
    /// DuckDB extension directory (default: <data-dir>/extensions).
    #[arg(long = "extension-dir", env = "POND_EXTENSION_DIR")]
    pub extension_dir: Option<PathBuf>,
    /// Extensions loaded at start, comma-separated; a missing one stops the start.
    /// The lake's own (ducklake; httpfs with an S3 data path; postgres_scanner with
    /// a PostgreSQL catalog) load regardless: a missing one makes time-series
    /// storage answer 503 with the install command instead.
    #[arg(long = "extensions", env = "POND_EXTENSIONS", default_value = "icu", value_delimiter = ',')]
    pub extensions: Vec<String>,
    /// Do not try DuckDB's online repository for missing extensions.
    #[arg(long = "offline", env = "POND_OFFLINE")]
    pub offline: bool,
    /// Most sessions open at once.
    #[arg(long = "max-sessions", env = "POND_MAX_SESSIONS", default_value_t = 512)]
    pub max_sessions: usize,
    /// Close sessions idle for this many seconds.
    #[arg(long = "idle-timeout-secs", env = "POND_IDLE_TIMEOUT_SECS", default_value_t = 3600)]
    pub idle_timeout_secs: u64,
    /// Interrupt statements running longer than this (0: no limit).
    #[arg(long = "query-timeout-ms", env = "POND_QUERY_TIMEOUT_MS", default_value_t = 0)]
    pub query_timeout_ms: u64,
    /// DuckDB worker threads (default: all cores).
    #[arg(long = "threads", env = "POND_THREADS")]
    pub threads: Option<usize>,
    /// DuckDB memory limit, e.g. "8GB" (default: DuckDB's).
    #[arg(long = "memory-limit", env = "POND_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// Let superusers' SQL read and write files and URLs anywhere (DuckDB external
    /// access). Off: only the data dir and --allowed-paths. Non-superusers are sandboxed either way.
    #[arg(long = "external-access", env = "POND_EXTERNAL_ACCESS")]
    pub external_access: bool,
    /// Directories or URL prefixes (e.g. s3://bucket/) superusers may use while external access is off; comma-separated.
    #[arg(long = "allowed-paths", env = "POND_ALLOWED_PATHS", value_delimiter = ',')]
    pub allowed_paths: Vec<String>,
    /// Memory for the query result cache, e.g. 256MB (0: off). Whole results of
    /// plain, deterministic reads are kept and served again only while no write
    /// has touched the databases they read, so they are never stale.
    #[arg(long = "query-cache-size", env = "POND_QUERY_CACHE_SIZE", default_value = "0", value_parser = pond_qcache::parse_size)]
    pub query_cache_size: usize,
}

/// Credentials and their lifetimes; external JWT verification.
#[derive(Debug, Args, Clone)]
pub struct AuthArgs {
    /// Lifetime of login session tokens (Flight handshake, /api/v1/auth/login), seconds.
    #[arg(long = "token-ttl-secs", env = "POND_TOKEN_TTL_SECS", default_value_t = 12 * 3600)]
    pub token_ttl_secs: u64,
    /// Lifetime of OAuth2 access tokens from /oauth2/token, seconds.
    #[arg(long = "oauth-token-ttl-secs", env = "POND_OAUTH_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub oauth_token_ttl_secs: u64,
    /// File holding the HS256 secret for external JWTs (at least 32 bytes).
    #[arg(long = "jwt-secret-file", env = "POND_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM public keys (RS256 or ES256) for external JWTs, comma-separated files.
    #[arg(long = "jwt-public-key", env = "POND_JWT_PUBLIC_KEY", value_delimiter = ',')]
    pub jwt_public_keys: Vec<PathBuf>,
    /// JWKS with the identity provider's keys: a file or an http(s) URL (fetched at start).
    #[arg(long = "jwt-jwks", env = "POND_JWT_JWKS")]
    pub jwt_jwks: Option<String>,
    /// Required `iss` of external JWTs.
    #[arg(long = "jwt-issuer", env = "POND_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of external JWTs.
    #[arg(long = "jwt-audience", env = "POND_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// JWT claim naming the Pond user.
    #[arg(long = "jwt-user-claim", env = "POND_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,
}

#[derive(Debug, Args, Clone)]
pub struct LogArgs {
    /// Log format: text or json.
    #[arg(long = "log-format", env = "POND_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Log filter (tracing EnvFilter syntax), e.g. "info" or "pond=debug".
    #[arg(long = "log-level", env = "POND_LOG", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// Server host.
    #[arg(long = "host", env = "POND_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Flight SQL port.
    #[arg(long = "port", env = "POND_PORT", default_value_t = 32010)]
    pub port: u16,
    #[arg(long = "user", short = 'u', env = "POND_USER", default_value = "admin")]
    pub user: String,
    /// Password; prefer the POND_PASSWORD environment variable (flags are visible to other local users). Prompted for when absent.
    #[arg(long = "password", env = "POND_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Database to use.
    #[arg(long = "database", short = 'd', env = "POND_DATABASE")]
    pub database: Option<String>,
    /// Run one command and exit.
    #[arg(short = 'c', long = "command")]
    pub command: Option<String>,
    /// Run the statements in a file and exit.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Print how long each statement took.
    #[arg(long = "timing")]
    pub timing: bool,
    /// Connect with TLS (grpc+tls), trusting the system's roots.
    #[arg(long = "tls", env = "POND_SQL_TLS")]
    pub tls: bool,
    /// Trust this CA certificate (PEM) too; implies --tls.
    #[arg(long = "cacert", env = "POND_CACERT")]
    pub cacert: Option<PathBuf>,
}

impl ServeArgs {
    pub fn server_config(&self) -> Result<pond::ServerConfig, String> {
        let mut c = pond::ServerConfig::new(self.data_dir.clone());
        c.flight_addr = self.listen.flight_addr;
        c.http_addr = self.listen.http_addr;
        c.pg_addr = match self.listen.pg_addr.trim() {
            "off" | "none" | "" => None,
            a => Some(a.parse().map_err(|e| format!("--pg-addr '{a}' is not an address (host:port) or 'off': {e}"))?),
        };
        c.pg_auth = self.listen.pg_auth.parse()?;
        c.tcp_addr = match self.listen.tcp_addr.as_deref().map(str::trim) {
            None | Some("off" | "none" | "") => None,
            Some(a) => Some(a.parse().map_err(|e| format!("--tcp-addr '{a}' is not an address (host:port) or 'off': {e}"))?),
        };
        c.flight_compression = self.listen.flight_compression.parse()?;
        c.max_body_bytes = self.listen.max_body_bytes;
        c.ingest_sync = pond_ingest::SyncMode::parse(&self.ingest.ingest_sync)
            .ok_or_else(|| format!("--ingest-sync '{}': use fsync, fdatasync or async", self.ingest.ingest_sync))?;
        c.ingest_create_databases = self.ingest.ingest_create_databases;
        c.ingest_wal_dir = self.ingest.ingest_wal_dir.clone();
        c.ingest_queue_depth = self.ingest.ingest_queue_depth;
        c.ingest_flush_rows = self.ingest.ingest_flush_rows.max(1);
        c.ingest_max_hot_rows = self.ingest.ingest_max_hot_rows.max(1);
        c.ingest_wal_segment_bytes = self.ingest.ingest_wal_segment_mib.max(1).saturating_mul(1024 * 1024);
        c.ingest_flush_interval = Duration::from_millis(self.ingest.ingest_flush_interval_ms.max(10));
        c.lake_compact_interval =
            (self.ingest.lake_compact_interval_secs > 0).then(|| Duration::from_secs(self.ingest.lake_compact_interval_secs));
        c.lake_cleanup_grace = Duration::from_secs(self.ingest.lake_cleanup_grace_secs);
        c.lake_snapshot_retention = Duration::from_secs(self.ingest.lake_snapshot_retention_secs);
        c.lake_encoder = match self.ingest.lake_encoder.to_ascii_lowercase().as_str() {
            "auto" | "" => None,
            "arrow" => Some(pond_ingest::lake::Encoder::Arrow),
            "duckdb-copy" => Some(pond_ingest::lake::Encoder::DuckDbCopy),
            "ducklake-insert" => Some(pond_ingest::lake::Encoder::DuckLakeInsert),
            other => return Err(format!("--lake-encoder '{other}': use auto, arrow, duckdb-copy or ducklake-insert")),
        };
        if let Some(path) = self.lake_s3.data_path(self.ingest.lake_data_path.as_deref())? {
            c.engine.lake_data_path = Some(path);
            c.engine.s3 = Some(self.lake_s3.config()?);
        }
        if let Some(conninfo) = self.ingest.lake_catalog.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            if conninfo.split_whitespace().any(|kv| kv.to_ascii_lowercase().starts_with("password")) {
                return Err("--lake-catalog: leave the password out of the connection string and set POND_LAKE_CATALOG_PASSWORD".into());
            }
            if conninfo.contains("://") {
                return Err(format!("--lake-catalog '{conninfo}': use libpq key/value form (host=… port=… dbname=… user=…), not a URL"));
            }
            c.engine.lake_catalog = Some(pond_engine::PostgresCatalog {
                conninfo: conninfo.to_string(),
                password: std::env::var("POND_LAKE_CATALOG_PASSWORD").ok().filter(|v| !v.is_empty()),
            });
        }
        c.node_id = self.ingest.node_id.as_deref().map(str::trim).filter(|n| !n.is_empty()).map(str::to_string);
        if let Some(n) = &c.node_id {
            pond_cluster::validate_node_id(n).map_err(|e| e.to_string())?;
        }
        c.backup = pond_backup::Schedule {
            target: self.backup.backup_to.clone().filter(|t| !t.trim().is_empty()),
            every: match self.backup.backup_every.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
                Some(t) => Some(pond_backup::parse_interval(t).map_err(|e| format!("--backup-every {e}"))?),
                None => None,
            },
            keep: self.backup.backup_keep,
        };
        if c.backup.every.is_some() && c.backup.target.is_none() {
            return Err("--backup-every needs --backup-to (where the backups go)".into());
        }
        c.ready_file = self.ready_file.clone();
        c.admin_password = std::env::var("POND_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty());
        c.tls = pond::tls::TlsSettings {
            cert: self.tls.tls_cert.clone(),
            key: self.tls.tls_key.clone(),
            client_ca: self.tls.tls_client_ca.clone(),
        };
        let e = &mut c.engine;
        e.extension_dir = self.engine.extension_dir.clone();
        e.extensions = self.engine.extensions.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        e.install_from_repository = !self.engine.offline;
        e.max_sessions = self.engine.max_sessions;
        e.idle_timeout = Duration::from_secs(self.engine.idle_timeout_secs);
        e.query_timeout = (self.engine.query_timeout_ms > 0).then(|| Duration::from_millis(self.engine.query_timeout_ms));
        e.threads = self.engine.threads;
        e.memory_limit = self.engine.memory_limit.clone();
        e.external_access = self.engine.external_access;
        e.query_cache_bytes = self.engine.query_cache_size;
        e.allowed_paths = self.engine.allowed_paths.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        c.token_ttl = Duration::from_secs(self.auth.token_ttl_secs.max(1));
        c.oauth_token_ttl = Duration::from_secs(self.auth.oauth_token_ttl_secs.max(1));
        Ok(c)
    }

    /// JWT settings; reads key files now (a JWKS URL is fetched by the caller).
    pub fn jwt_config(&self, jwks_text: Option<String>) -> Result<pond_auth::JwtConfig, String> {
        let a = &self.auth;
        let read = |p: &PathBuf, what: &str| std::fs::read(p).map_err(|e| format!("cannot read {what} {}: {e}", p.display()));
        let hmac_secret = match &a.jwt_secret_file {
            Some(p) => Some(read(p, "--jwt-secret-file")?.trim_ascii().to_vec()),
            None => None,
        };
        let mut public_keys_pem = Vec::new();
        for p in &a.jwt_public_keys {
            public_keys_pem.push(String::from_utf8(read(p, "--jwt-public-key")?).map_err(|_| format!("{} is not PEM text", p.display()))?);
        }
        Ok(pond_auth::JwtConfig {
            hmac_secret,
            public_keys_pem,
            jwks_json: jwks_text,
            issuer: a.jwt_issuer.clone(),
            audience: a.jwt_audience.clone(),
            user_claim: Some(a.jwt_user_claim.clone()),
            leeway_secs: None,
        })
    }
}

/// Parses the command line, applying a `serve --config` TOML file to every
/// setting that neither a flag nor an environment variable gave.
pub fn parse() -> Result<Cli, String> {
    parse_from(std::env::args().collect())
}

pub fn parse_from(args: Vec<String>) -> Result<Cli, String> {
    let matches = Cli::command().get_matches_from(&args);
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    let (Command::Serve(serve) | Command::Doctor(serve)) = &cli.command else { return Ok(cli) };
    let Some(path) = &serve.config else { return Ok(cli) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let table: toml::Table = text.parse().map_err(|e| format!("config file {} is not valid TOML: {e}", path.display()))?;
    let Some((name, sub)) = matches.subcommand() else { return Ok(cli) };
    // Long names of serve's flags, and whether each takes a value (`--x=false`) or is a switch.
    let known: Vec<(String, bool)> = Cli::command()
        .find_subcommand(name)
        .map(|c| c.get_arguments().filter_map(|a| a.get_long().map(|l| (l.to_string(), a.get_action().takes_values()))).collect())
        .unwrap_or_default();
    let mut injected = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some(&(_, takes_value)) = known.iter().find(|(l, _)| *l == long).filter(|_| long != "config") else {
            return Err(format!("config file {}: unknown setting '{key}'", path.display()));
        };
        let id = long.replace('-', "_");
        let from_user = matches!(sub.value_source(&id), Some(ValueSource::CommandLine | ValueSource::EnvVariable));
        if from_user {
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            // A setting that takes a value gets it either way; a switch only when true.
            toml::Value::Boolean(b) if takes_value => b.to_string(),
            toml::Value::Boolean(b) => {
                if *b {
                    injected.push(format!("--{long}"));
                }
                continue;
            }
            toml::Value::Array(items) => {
                items.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect::<Vec<_>>().join(",")
            }
            other => return Err(format!("config file {}: setting '{key}' has an unsupported value {other}", path.display())),
        };
        injected.push(format!("--{long}={text}"));
    }
    // Re-parse with the file's settings placed before the user's own flags.
    let pos = args.iter().position(|a| a == name).map(|p| p + 1).unwrap_or(args.len());
    let mut merged = args[..pos].to_vec();
    merged.extend(injected);
    merged.extend_from_slice(&args[pos..]);
    let matches = Cli::command().try_get_matches_from(&merged).map_err(|e| e.to_string())?;
    Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeArgs, String> {
        let argv = std::iter::once("pond").chain(args.iter().copied()).map(String::from).collect();
        match parse_from(argv)?.command {
            Command::Serve(s) => Ok(s),
            _ => Err("not serve".into()),
        }
    }

    #[test]
    fn config_file_fills_what_flags_do_not_set() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pond.toml");
        std::fs::write(&file, "flight-addr = \"127.0.0.1:4000\"\nhttp_addr = \"127.0.0.1:4001\"\nmax-sessions = 7\nextensions = [\"icu\", \"tpch\"]\noffline = true\n").unwrap();
        let cfg = file.to_str().unwrap();
        let s = serve(&["serve", "--config", cfg]).unwrap();
        assert_eq!(s.listen.flight_addr.port(), 4000);
        assert_eq!(s.listen.http_addr.port(), 4001);
        assert_eq!(s.engine.max_sessions, 7);
        assert_eq!(s.engine.extensions, vec!["icu", "tpch"]);
        assert!(s.engine.offline);
        // A flag wins over the file.
        let s = serve(&["serve", "--config", cfg, "--flight-addr", "127.0.0.1:5000"]).unwrap();
        assert_eq!(s.listen.flight_addr.port(), 5000);
        assert_eq!(s.listen.http_addr.port(), 4001);
    }

    #[test]
    fn security_flags_read_env_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pond.toml");
        std::fs::write(&file, "external-access = true\nallowed-paths = [\"/srv/a\", \"s3://b/\"]\njwt-issuer = \"https://idp\"\n").unwrap();
        let s = serve(&["serve", "--config", file.to_str().unwrap(), "--jwt-audience", "pond"]).unwrap();
        let c = s.server_config().unwrap();
        assert!(c.engine.external_access);
        assert_eq!(c.engine.allowed_paths, vec!["/srv/a", "s3://b/"]);
        let jwt = s.jwt_config(None).unwrap();
        assert_eq!((jwt.issuer.as_deref(), jwt.audience.as_deref()), (Some("https://idp"), Some("pond")));
        let d = serve(&["serve"]).unwrap().server_config().unwrap();
        assert!(!d.engine.external_access, "DuckDB external access is off by default");
    }

    #[test]
    fn config_file_booleans_reach_settings_that_default_to_true() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pond.toml");
        std::fs::write(&file, "ingest-create-databases = false\noffline = false\n").unwrap();
        let s = serve(&["serve", "--config", file.to_str().unwrap()]).unwrap();
        assert!(!s.ingest.ingest_create_databases, "false in the file turns it off");
        assert!(!s.engine.offline);
    }

    #[test]
    fn config_file_errors_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pond.toml");
        std::fs::write(&file, "flight-adr = \"x\"\n").unwrap();
        let e = serve(&["serve", "--config", file.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("unknown setting 'flight-adr'"), "{e}");
        std::fs::write(&file, "flight-addr = \"not an address\"\n").unwrap();
        let e = serve(&["serve", "--config", file.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("flight-addr"), "{e}");
    }

    #[test]
    fn tls_settings_from_flag_env_and_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pond.toml");
        std::fs::write(&file, "tls-cert = \"/file/server.pem\"\ntls_key = \"/file/server-key.pem\"\ntls-client-ca = \"/file/ca.pem\"\n")
            .unwrap();
        let cfg = file.to_str().unwrap();
        let s = serve(&["serve", "--config", cfg]).unwrap();
        assert_eq!(s.tls.tls_cert, Some(PathBuf::from("/file/server.pem")));
        assert_eq!(s.tls.tls_key, Some(PathBuf::from("/file/server-key.pem")));
        assert_eq!(s.tls.tls_client_ca, Some(PathBuf::from("/file/ca.pem")));
        // The only test that sets POND_TLS_*: environment beats the file, a flag beats both.
        std::env::set_var("POND_TLS_CERT", "/env/server.pem");
        let from_env = serve(&["serve", "--config", cfg]);
        let from_flag = serve(&["serve", "--config", cfg, "--tls-cert", "/flag/server.pem"]);
        std::env::remove_var("POND_TLS_CERT");
        let s = from_env.unwrap();
        assert_eq!(s.tls.tls_cert, Some(PathBuf::from("/env/server.pem")));
        assert_eq!(s.tls.tls_key, Some(PathBuf::from("/file/server-key.pem")));
        let s = from_flag.unwrap();
        assert_eq!(s.tls.tls_cert, Some(PathBuf::from("/flag/server.pem")));
        let c = s.server_config().unwrap();
        assert_eq!(c.tls, pond::tls::TlsSettings::new("/flag/server.pem", "/file/server-key.pem").with_client_ca("/file/ca.pem"));
        // Without any of them TLS stays off.
        assert!(!serve(&["serve"]).unwrap().server_config().unwrap().tls.is_enabled());
    }

    #[test]
    fn cert_generate_flags() {
        let argv = |a: &[&str]| std::iter::once("pond").chain(a.iter().copied()).map(String::from).collect();
        let Command::Cert { command: CertCommand::Generate(g) } =
            parse_from(argv(&["cert", "generate", "--out-dir", "certs"])).unwrap().command
        else {
            panic!("not cert generate")
        };
        assert_eq!((g.out_dir, g.hosts.len(), g.days, g.client, g.force), (PathBuf::from("certs"), 0, 365, None, false));
        let args = [
            "cert",
            "generate",
            "--out-dir",
            "c",
            "--host",
            "db.local,10.0.0.5",
            "--host",
            "::1",
            "--days",
            "30",
            "--client",
            "bob",
            "--force",
        ];
        let Command::Cert { command: CertCommand::Generate(g) } = parse_from(argv(&args)).unwrap().command else {
            panic!("not cert generate")
        };
        assert_eq!(g.hosts, vec!["db.local", "10.0.0.5", "::1"]);
        assert_eq!((g.days, g.client.as_deref(), g.force), (30, Some("bob"), true));
    }

    #[test]
    fn defaults_match_the_documentation() {
        let s = serve(&["serve"]).unwrap();
        assert_eq!(s.listen.flight_addr.to_string(), "127.0.0.1:32010");
        assert_eq!(s.listen.http_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(s.listen.pg_addr, "127.0.0.1:5433");
        assert_eq!(s.data_dir, PathBuf::from("./pond-data"));
    }

    #[test]
    fn tcp_listener_is_off_unless_an_address_is_given() {
        if std::env::var_os("POND_TCP_ADDR").is_none() {
            assert_eq!(serve(&["serve"]).unwrap().server_config().unwrap().tcp_addr, None);
        }
        let c = serve(&["serve", "--tcp-addr", "127.0.0.1:4000"]).unwrap().server_config().unwrap();
        assert_eq!(c.tcp_addr, Some("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(serve(&["serve", "--tcp-addr", "off"]).unwrap().server_config().unwrap().tcp_addr, None);
        let e = serve(&["serve", "--tcp-addr", "nowhere"]).unwrap().server_config().unwrap_err();
        assert!(e.contains("--tcp-addr 'nowhere'"), "{e}");
    }
}
