//! Pond as a library: build a [`Server`] in-process, start it, and stop it.
//! The `pond` binary and the end-to-end tests both use this.
//!
//! ```no_run
//! # async fn run() -> Result<(), pond::ServerError> {
//! let server = pond::Server::builder()
//!     .data_dir("/tmp/pond-data")
//!     .flight_addr("127.0.0.1:0".parse().unwrap())
//!     .http_addr("127.0.0.1:0".parse().unwrap())
//!     .admin_password("secret")
//!     .start()
//!     .await?;
//! println!("Flight SQL on {}", server.flight_addr());
//! server.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! TLS (and mutual TLS) for every listener lives in [`tls`].

pub mod doctor;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pond_auth::{Authenticator, Bootstrap};
use pond_engine::{Engine, EngineConfig, Metrics};
use pond_flight::{Compression, FlightOptions, FlightSqlServer};
use pond_http::{HttpOptions, HttpState};
use pond_meta::MetaStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Engine(#[from] pond_engine::Error),
    #[error(transparent)]
    Auth(#[from] pond_auth::Error),
    #[error(transparent)]
    Meta(#[from] pond_meta::Error),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { addr: SocketAddr, what: &'static str, source: std::io::Error },
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Other(String),
}

/// Everything a server needs; see [`ServerBuilder`] for defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub engine: EngineConfig,
    pub flight_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// PostgreSQL wire protocol listener; `None` turns it off.
    pub pg_addr: Option<SocketAddr>,
    /// How PostgreSQL clients authenticate: SCRAM-SHA-256 (default) or cleartext.
    pub pg_auth: pond_pgwire::PgAuth,
    /// TCP-DuckDB's line protocol listener; `None` (the default) turns it off.
    pub tcp_addr: Option<SocketAddr>,
    /// Password of the bootstrap `admin` on the first start (never logged).
    pub admin_password: Option<String>,
    pub flight_compression: Compression,
    pub max_body_bytes: usize,
    pub token_ttl: Duration,
    /// When set, the chosen addresses are written here as JSON once listening.
    pub ready_file: Option<PathBuf>,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// External JWTs accepted as bearer tokens (none without keys).
    pub jwt: pond_auth::JwtConfig,
    /// Lifetime of OAuth2 access tokens.
    pub oauth_token_ttl: Duration,
    /// Certificate, key and optional client CA; when set every listener
    /// speaks TLS only.
    pub tls: tls::TlsSettings,
    /// Time-series ingest: log sync mode, database creation on first write, queue depth.
    /// Scheduled backups and the default backup target.
    pub backup: pond_backup::Schedule,
    pub ingest_sync: pond_ingest::SyncMode,
    /// Where the ingest log lives; `None`: `<data-dir>/ingest`.
    pub ingest_wal_dir: Option<PathBuf>,
    pub ingest_create_databases: bool,
    pub ingest_queue_depth: usize,
    /// Lake flush and compaction (see `pond_ingest::IngestConfig`).
    pub ingest_flush_rows: u64,
    /// Rows kept in memory before the lake above which writes get 503.
    pub ingest_max_hot_rows: u64,
    /// Write-ahead log segment size (closed segments adding up to more start a flush).
    pub ingest_wal_segment_bytes: u64,
    pub ingest_flush_interval: Duration,
    pub lake_compact_interval: Option<Duration>,
    pub lake_cleanup_grace: Duration,
    /// Lake snapshots younger than this survive compaction (point-in-time reads).
    pub lake_snapshot_retention: Duration,
    /// This server's name as one of several nodes sharing the lake (needs a
    /// PostgreSQL lake catalog and a shared data path): system metadata then
    /// lives in that PostgreSQL too (`pond-cluster`). `None`: a lone server.
    pub node_id: Option<String>,
    /// Who encodes flushed Parquet files (`None`: by data path).
    pub lake_encoder: Option<pond_ingest::lake::Encoder>,
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            engine: EngineConfig::new(data_dir),
            flight_addr: ([127, 0, 0, 1], 32010).into(),
            http_addr: ([127, 0, 0, 1], 8000).into(),
            pg_addr: Some(([127, 0, 0, 1], 5433).into()),
            pg_auth: pond_pgwire::PgAuth::Scram,
            tcp_addr: None,
            admin_password: None,
            flight_compression: Compression::None,
            max_body_bytes: 64 * 1024 * 1024,
            token_ttl: Duration::from_secs(12 * 3600),
            ready_file: None,
            drain_timeout: Duration::from_secs(10),
            jwt: pond_auth::JwtConfig::default(),
            oauth_token_ttl: Duration::from_secs(3600),
            tls: tls::TlsSettings::default(),
            backup: pond_backup::Schedule::default(),
            ingest_sync: pond_ingest::SyncMode::Fdatasync,
            ingest_wal_dir: None,
            ingest_create_databases: true,
            ingest_queue_depth: 1024,
            ingest_flush_rows: 1_000_000,
            ingest_max_hot_rows: 16_000_000,
            ingest_wal_segment_bytes: 64 * 1024 * 1024,
            ingest_flush_interval: Duration::from_secs(60),
            lake_compact_interval: Some(Duration::from_secs(3600)),
            lake_cleanup_grace: Duration::from_secs(60),
            lake_snapshot_retention: Duration::ZERO,
            node_id: None,
            lake_encoder: None,
        }
    }
}

/// Builds a [`Server`].
pub struct ServerBuilder {
    config: ServerConfig,
}

impl ServerBuilder {
    pub fn config(config: ServerConfig) -> Self {
        Self { config }
    }
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.engine.data_dir = dir.into();
        self
    }
    pub fn flight_addr(mut self, addr: SocketAddr) -> Self {
        self.config.flight_addr = addr;
        self
    }
    pub fn http_addr(mut self, addr: SocketAddr) -> Self {
        self.config.http_addr = addr;
        self
    }
    /// PostgreSQL listener address (`None`: no PostgreSQL listener).
    pub fn pg_addr(mut self, addr: Option<SocketAddr>) -> Self {
        self.config.pg_addr = addr;
        self
    }
    /// TCP-DuckDB protocol listener address (`None`, the default: no such listener).
    pub fn tcp_addr(mut self, addr: Option<SocketAddr>) -> Self {
        self.config.tcp_addr = addr;
        self
    }
    /// PostgreSQL authentication request: SCRAM-SHA-256 or cleartext password.
    pub fn pg_auth(mut self, auth: pond_pgwire::PgAuth) -> Self {
        self.config.pg_auth = auth;
        self
    }
    pub fn admin_password(mut self, password: impl Into<String>) -> Self {
        self.config.admin_password = Some(password.into());
        self
    }
    pub fn extension_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.engine.extension_dir = Some(dir.into());
        self
    }
    pub fn extensions(mut self, names: Vec<String>) -> Self {
        self.config.engine.extensions = names;
        self
    }
    pub fn query_timeout(mut self, t: Option<Duration>) -> Self {
        self.config.engine.query_timeout = t;
        self
    }
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.config.engine.max_sessions = n;
        self
    }
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.config.engine.idle_timeout = t;
        self
    }
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.config.max_body_bytes = n;
        self
    }
    pub fn jwt(mut self, jwt: pond_auth::JwtConfig) -> Self {
        self.config.jwt = jwt;
        self
    }
    pub fn oauth_token_ttl(mut self, ttl: Duration) -> Self {
        self.config.oauth_token_ttl = ttl;
        self
    }
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.config.token_ttl = ttl;
        self
    }
    pub fn engine_config(mut self, f: impl FnOnce(&mut EngineConfig)) -> Self {
        f(&mut self.config.engine);
        self
    }
    /// TLS on every listener (see [`tls::TlsSettings`]).
    pub fn tls(mut self, settings: tls::TlsSettings) -> Self {
        self.config.tls = settings;
        self
    }

    /// Lake flush thresholds and compaction schedule (`None`: on demand only).
    pub fn lake(mut self, flush_rows: u64, flush_interval: Duration, compact_interval: Option<Duration>, cleanup_grace: Duration) -> Self {
        self.config.ingest_flush_rows = flush_rows.max(1);
        self.config.ingest_flush_interval = flush_interval;
        self.config.lake_compact_interval = compact_interval;
        self.config.lake_cleanup_grace = cleanup_grace;
        self
    }

    /// Scheduled backups and the default backup target.
    pub fn backup(mut self, schedule: pond_backup::Schedule) -> Self {
        self.config.backup = schedule;
        self
    }

    /// How long lake snapshots are kept for point-in-time reads.
    /// Runs as node `id` of a cluster sharing the lake (see [`ServerConfig::node_id`]).
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.config.node_id = Some(id.into());
        self
    }

    pub fn lake_snapshot_retention(mut self, keep: Duration) -> Self {
        self.config.lake_snapshot_retention = keep;
        self
    }

    /// Time-series ingest settings.
    pub fn ingest(mut self, sync: pond_ingest::SyncMode, create_databases: bool) -> Self {
        self.config.ingest_sync = sync;
        self.config.ingest_create_databases = create_databases;
        self
    }

    /// Opens the data dir, starts DuckDB and both listeners.
    pub async fn start(self) -> Result<Server, ServerError> {
        Server::start(self.config).await
    }
}

/// A running Pond server.
pub struct Server {
    engine: Engine,
    ingest: pond_ingest::Ingester,
    flight_addr: SocketAddr,
    http_addr: SocketAddr,
    pg_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    tls: bool,
    stop: watch::Sender<bool>,
    ready: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Result<(), ServerError>>>,
    drain_timeout: Duration,
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder { config: ServerConfig::new("./pond-data") }
    }

    pub fn builder_from(config: ServerConfig) -> ServerBuilder {
        ServerBuilder { config }
    }

    async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        // Certificate problems stop the start before anything is touched.
        let tls = config.tls.load()?;
        let data_dir = config.engine.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| ServerError::Io { path: data_dir.display().to_string(), source })?;
        let cluster = match &config.node_id {
            Some(node) => {
                let Some(catalog) = config.engine.lake_catalog.clone() else {
                    return Err(ServerError::Other(
                        "--node-id needs --lake-catalog: nodes share the lake's PostgreSQL catalog (and --lake-data-path)".into(),
                    ));
                };
                if config.engine.lake_data_path.is_none() {
                    return Err(ServerError::Other(
                        "--node-id needs --lake-data-path (s3://… or a directory every node reaches): the default lies inside one node's data dir"
                            .into(),
                    ));
                }
                let node = node.clone();
                let c = tokio::task::spawn_blocking(move || pond_cluster::Cluster::connect(&catalog.full_conninfo(), &node))
                    .await
                    .map_err(|e| ServerError::Other(format!("cluster start failed: {e}")))?
                    .map_err(|e| ServerError::Other(format!("cannot join the cluster: {e}")))?;
                Some(c)
            }
            None => None,
        };
        let meta = match &cluster {
            Some(c) => {
                let (dir, backend) = (data_dir.join("system"), c.clone());
                Arc::new(
                    tokio::task::spawn_blocking(move || MetaStore::open_shared(&dir, backend))
                        .await
                        .map_err(|e| ServerError::Other(format!("cluster start failed: {e}")))??,
                )
            }
            None => Arc::new(MetaStore::open(&data_dir.join("system"))?),
        };
        let mut config = config;
        config.engine.cluster = cluster.clone();
        let auth =
            Arc::new(Authenticator::new(meta.clone(), config.token_ttl).with_jwt(&config.jwt)?.with_oauth_ttl(config.oauth_token_ttl));
        match auth.bootstrap(&data_dir, config.admin_password.as_deref())? {
            Bootstrap::Generated { password, file } => {
                // Printed once, on the terminal only (never through the logs).
                eprintln!("Pond created user 'admin' with password: {password}\n(also saved in {}, mode 0600)", file.display());
            }
            Bootstrap::FromEnvironment => tracing::info!("created user 'admin' with the password from POND_ADMIN_PASSWORD"),
            Bootstrap::Existing => {}
        }

        let metrics = Metrics::new();
        let engine_config = config.engine.clone();
        let engine_auth = auth.clone();
        let engine_meta = meta.clone();
        let engine = tokio::task::spawn_blocking(move || Engine::open(engine_config, engine_meta, engine_auth, metrics))
            .await
            .map_err(|e| ServerError::Other(format!("engine start failed: {e}")))??;

        let mut ingest_config = pond_ingest::IngestConfig::new(&data_dir);
        ingest_config.sync = config.ingest_sync;
        if let Some(dir) = &config.ingest_wal_dir {
            ingest_config.dir = dir.clone();
        }
        ingest_config.create_databases = config.ingest_create_databases;
        ingest_config.queue_depth = config.ingest_queue_depth.max(1);
        ingest_config.flush_rows = config.ingest_flush_rows;
        ingest_config.max_hot_rows = config.ingest_max_hot_rows;
        ingest_config.wal_truncate_bytes = config.ingest_wal_segment_bytes;
        ingest_config.flush_interval = config.ingest_flush_interval;
        ingest_config.compact_interval = config.lake_compact_interval;
        ingest_config.cleanup_grace = config.lake_cleanup_grace;
        ingest_config.snapshot_retention = config.lake_snapshot_retention;
        ingest_config.encoder = config.lake_encoder;
        ingest_config.max_body_bytes = config.max_body_bytes;
        let ingest_engine = engine.clone();
        let ingest = tokio::task::spawn_blocking(move || pond_ingest::Ingester::open(ingest_engine, ingest_config))
            .await
            .map_err(|e| ServerError::Other(format!("ingest start failed: {e}")))?
            .map_err(|e| ServerError::Other(format!("ingest start failed: {e}")))?;
        // Import jobs write measurements through the ingester.
        engine.set_line_writer(Arc::new(ingest.clone()));
        // Continuous queries start only now that the ingest log is replayed.
        engine.start_jobs();
        if let Some(c) = &cluster {
            let (status_ingest, flush_ingest) = (ingest.clone(), ingest.clone());
            c.start(
                meta.clone(),
                pond_cluster::Hooks {
                    status: Box::new(move || {
                        let st = status_ingest.lake_status();
                        pond_cluster::NodeStatus {
                            last_flush_unix: st
                                .last_flush_at
                                .as_deref()
                                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                                .map(|t| t.timestamp_millis() as f64 / 1000.0),
                            flushed_rows: st.flushed_rows,
                            unflushed_rows: st.unflushed_rows,
                        }
                    }),
                    flush: Box::new(move || {
                        if let Err(e) = flush_ingest.flush_all_blocking() {
                            tracing::warn!(error = %e, "flush asked for by another node failed");
                        }
                    }),
                },
            );
        }
        let backups = pond_backup::Backups::new(engine.clone(), Some(ingest.clone()), config.backup.clone());
        backups.start_schedule().map_err(|e| ServerError::Other(format!("backup schedule: {e}")))?;
        engine.set_backup_service(Arc::new(backups));

        let flight_listener = tokio::net::TcpListener::bind(config.flight_addr).await.map_err(|source| ServerError::Bind {
            addr: config.flight_addr,
            what: "Flight SQL",
            source,
        })?;
        let http_listener = tokio::net::TcpListener::bind(config.http_addr).await.map_err(|source| ServerError::Bind {
            addr: config.http_addr,
            what: "HTTP",
            source,
        })?;
        let flight_addr =
            flight_listener.local_addr().map_err(|source| ServerError::Bind { addr: config.flight_addr, what: "Flight SQL", source })?;
        let pg_listener = match config.pg_addr {
            Some(addr) => {
                Some(tokio::net::TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, what: "PostgreSQL", source })?)
            }
            None => None,
        };
        let pg_addr = match (&pg_listener, config.pg_addr) {
            (Some(l), Some(addr)) => Some(l.local_addr().map_err(|source| ServerError::Bind { addr, what: "PostgreSQL", source })?),
            _ => None,
        };
        let tcp_listener = match config.tcp_addr {
            Some(addr) => {
                Some(tokio::net::TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, what: "TCP-DuckDB", source })?)
            }
            None => None,
        };
        let tcp_addr = match (&tcp_listener, config.tcp_addr) {
            (Some(l), Some(addr)) => Some(l.local_addr().map_err(|source| ServerError::Bind { addr, what: "TCP-DuckDB", source })?),
            _ => None,
        };
        let http_addr = http_listener.local_addr().map_err(|source| ServerError::Bind { addr: config.http_addr, what: "HTTP", source })?;

        let (stop, stop_rx) = watch::channel(false);
        let wait = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let ready = Arc::new(AtomicBool::new(true));
        let mut tasks = Vec::new();

        let flight = FlightSqlServer::new(
            engine.clone(),
            auth.clone(),
            FlightOptions { compression: config.flight_compression, ..Default::default() },
        );
        let rx = stop_rx.clone();
        let flight_tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            let served = match flight_tls {
                Some(tls) => flight.serve_with_incoming(tls::TlsListener::new(flight_listener, tls).into_stream(), wait(rx)).await,
                None => flight.serve(flight_listener, wait(rx)).await,
            };
            served.map_err(|e| ServerError::Other(format!("Flight SQL listener: {e}")))
        }));

        let state = HttpState { engine: engine.clone(), auth: auth.clone(), ready: ready.clone(), ingest: Some(ingest.clone()) };
        let router = pond_http::router(state, &HttpOptions { max_body_bytes: config.max_body_bytes });
        // The web console on the same listener (its session cookie becomes the API's bearer token).
        let router = pond_console::mount(router, pond_console::Console::new(engine.clone(), auth.clone(), tls.is_some()));
        let rx = stop_rx.clone();
        let http_tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            let served = match http_tls {
                Some(tls) => pond_http::serve_on(tls::TlsListener::new(http_listener, tls), router, wait(rx)).await,
                None => pond_http::serve(http_listener, router, wait(rx)).await,
            };
            served.map_err(|e| ServerError::Other(format!("HTTP listener: {e}")))
        }));

        if let Some(listener) = pg_listener {
            let pg = pond_pgwire::PgServer::new(engine.clone(), tls.clone(), config.pg_auth);
            let rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                pg.serve(listener, wait(rx)).await.map_err(|e| ServerError::Other(format!("PostgreSQL listener: {e}")))
            }));
        }

        if let Some(listener) = tcp_listener {
            let options = pond_tcp::TcpOptions {
                max_connections: config.engine.max_sessions,
                idle_timeout: config.engine.idle_timeout,
                ..Default::default()
            };
            let server = pond_tcp::TcpServer::new(engine.clone(), options);
            let rx = stop_rx.clone();
            let tcp_tls = tls.clone();
            tasks.push(tokio::spawn(async move {
                let served = match tcp_tls {
                    Some(config) => server.serve(tls::TlsListener::new(listener, tls::without_alpn(&config)), wait(rx)).await,
                    None => server.serve(listener, wait(rx)).await,
                };
                served.map_err(|e| ServerError::Other(format!("TCP-DuckDB listener: {e}")))
            }));
        }

        // Close sessions that have been idle too long.
        let reaper_engine = engine.clone();
        let every = (config.engine.idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(10));
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => { reaper_engine.reap_idle_sessions(); }
                    _ = rx.wait_for(|s| *s) => break,
                }
            }
        });

        let (flight_scheme, http_scheme) = if tls.is_some() { ("grpc+tls", "https") } else { ("grpc", "http") };
        let (flight_url, http_url) = (format!("{flight_scheme}://{flight_addr}"), format!("{http_scheme}://{http_addr}"));
        let tls_mode = match (&tls, &config.tls.client_ca) {
            (None, _) => "off",
            (Some(_), None) => "on",
            (Some(_), Some(_)) => "on, client certificates required",
        };
        let pg_text = pg_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
        let tcp_text = tcp_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
        if let Some(c) = &cluster {
            c.set_http_url(http_url.clone());
            tracing::info!(node = %c.node(), "joined the cluster sharing the lake");
        }
        tracing::info!(flight = %flight_url, http = %http_url, pg = %pg_text, tcp = %tcp_text, tls = tls_mode, data_dir = %data_dir.display(), "Pond is listening");
        if let Some(path) = &config.ready_file {
            let doc = serde_json::json!({
                "flight": flight_addr.to_string(),
                "http": http_addr.to_string(),
                "pg": pg_addr.map(|a| a.to_string()),
                "tcp": tcp_addr.map(|a| a.to_string()),
                "tls": tls.is_some(),
                "flight_url": flight_url,
                "http_url": http_url,
            });
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, doc.to_string())
                .and_then(|_| std::fs::rename(&tmp, path))
                .map_err(|source| ServerError::Io { path: path.display().to_string(), source })?;
        }
        Ok(Self {
            engine,
            ingest,
            flight_addr,
            http_addr,
            pg_addr,
            tcp_addr,
            tls: tls.is_some(),
            stop,
            ready,
            tasks,
            drain_timeout: config.drain_timeout,
        })
    }

    pub fn flight_addr(&self) -> SocketAddr {
        self.flight_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The PostgreSQL listener's address, when it is on.
    pub fn pg_addr(&self) -> Option<SocketAddr> {
        self.pg_addr
    }

    /// The TCP-DuckDB protocol listener's address, when it is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Whether the listeners speak TLS (`grpc+tls://`, `https://`).
    pub fn tls_enabled(&self) -> bool {
        self.tls
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain
    /// timeout), cancels what still runs and checkpoints every database.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.ready.store(false, Ordering::SeqCst);
        let _ = self.stop.send(true);
        let mut drain = Box::pin(futures::future::join_all(self.tasks));
        let results = match tokio::time::timeout(self.drain_timeout, &mut drain).await {
            Ok(results) => Some(results),
            Err(_) => {
                tracing::warn!(timeout = ?self.drain_timeout, "in-flight requests did not finish in time; interrupting them");
                self.engine.cancel_all();
                tokio::time::timeout(Duration::from_secs(5), &mut drain).await.ok()
            }
        };
        for r in results.unwrap_or_default() {
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "listener stopped with an error");
            }
        }
        let ingest = self.ingest.clone();
        let _ = tokio::task::spawn_blocking(move || ingest.shutdown()).await;
        if let Some(c) = self.engine.cluster().cloned() {
            let _ = tokio::task::spawn_blocking(move || c.stop()).await;
        }
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.shutdown()).await.map_err(|e| ServerError::Other(e.to_string()))??;
        Ok(())
    }
}
