//! Several Pond nodes on one lake. The nodes share the DuckLake catalog in a
//! PostgreSQL database and the Parquet files on S3; DuckLake's transactions
//! arbitrate their flushes. What else they must agree on lives in the same
//! PostgreSQL database, in the schema `pond_cluster`, kept by this crate:
//!
//! - `meta`: the system metadata document (users, grants, tokens, secrets
//!   still sealed, databases) with a version; this crate is the
//!   [`pond_meta::SharedBackend`] of every node's `MetaStore`, so an update
//!   on one node runs on the newest copy under a lock and the others adopt
//!   it within one tick of [`Cluster::start`]'s loop;
//! - `nodes`: one row per node, its heartbeat, last flush and unflushed rows
//!   (`SHOW NODES`, `GET /api/v1/cluster`);
//! - `control`: a counter a node bumps to ask every node for a flush (a
//!   cross-node read-your-writes point, `POST /api/v1/lake/flush?nodes=all`);
//! - an advisory lock that lets one node at a time run compaction, retention
//!   and snapshot expiry ([`Cluster::try_maintenance_lock`]).
//!
//! Every call has a timeout: a PostgreSQL that is down gives an error naming
//! it within [`TIMEOUT`], never a hang. Errors never contain the password.
//!
//! Start with [`Cluster::connect`] and [`Cluster::start`].

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pond_meta::{SharedBackend, SharedTxn, SystemMeta};

/// The longest a call to PostgreSQL may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// A node not heard from for this long is listed as down and not waited for.
pub const NODE_DOWN_AFTER: Duration = Duration::from_secs(10);
/// How often a node adopts metadata changes, answers flush requests and
/// sends its heartbeat.
pub const TICK: Duration = Duration::from_millis(250);

/// Advisory lock keys (`pg_advisory_*`): creating the schema, updating the
/// metadata, lake maintenance.
const LOCK_SCHEMA: i64 = 0x706f_6e64_0001;
const LOCK_META: i64 = 0x706f_6e64_0002;
const LOCK_MAINTENANCE: i64 = 0x706f_6e64_0003;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cluster catalog PostgreSQL ({0})")]
    Postgres(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// This node's view of itself, reported with every heartbeat.
#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    /// Unix seconds of the last flush that committed, if any.
    pub last_flush_unix: Option<f64>,
    /// Rows written into the lake by this node since it started.
    pub flushed_rows: u64,
    /// Rows acknowledged by this node and not yet in the lake.
    pub unflushed_rows: u64,
}

/// One node as the catalog knows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    pub node: String,
    pub http_url: Option<String>,
    pub up: bool,
    pub this_node: bool,
    pub seconds_since_heartbeat: f64,
    pub seconds_since_flush: Option<f64>,
    pub flushed_rows: u64,
    pub unflushed_rows: u64,
    pub started_at: String,
}

/// What the cluster loop calls on its node.
pub struct Hooks {
    /// The node's status for its heartbeat.
    pub status: Box<dyn Fn() -> NodeStatus + Send + Sync>,
    /// Flush every hot row now (a cluster-wide flush request).
    pub flush: Box<dyn Fn() + Send + Sync>,
}

/// The connection to the cluster's PostgreSQL and this node's identity.
pub struct Cluster {
    config: tokio_postgres::Config,
    /// `host:port/db`, for messages.
    shown: String,
    node: String,
    http_url: Mutex<Option<String>>,
    /// Idle connections (a small pool: the loop, metadata updates and the
    /// maintenance lock each take one while they work).
    idle: Mutex<Vec<Arc<tokio_postgres::Client>>>,
    stop: AtomicBool,
    /// The last cluster-wide flush request this node has served.
    flush_served: AtomicU64,
    hooks: Mutex<Option<Arc<Hooks>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster(node {} on {})", self.node, self.shown)
    }
}

/// Node names: what appears in `SHOW NODES`, file names and the catalog.
pub fn validate_node_id(node: &str) -> Result<()> {
    let ok = !node.is_empty() && node.len() <= 63 && node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "--node-id '{node}': use 1 to 63 letters, digits, '-' or '_' (it names the node in the catalog and in file names)"
        )))
    }
}

impl Cluster {
    /// Connects as node `node` to the PostgreSQL database of `conninfo`
    /// (libpq key/value form, password included; never shown) and creates
    /// the `pond_cluster` schema on first use.
    pub fn connect(conninfo: &str, node: &str) -> Result<Arc<Self>> {
        validate_node_id(node)?;
        let mut config = tokio_postgres::Config::from_str(conninfo)
            .map_err(|e| Error::Invalid(format!("the lake catalog's connection string is malformed ({e})")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(TIMEOUT);
        }
        config.application_name(format!("pond-node-{node}"));
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let shown = format!(
            "{host}:{}/{}",
            config.get_ports().first().copied().unwrap_or(5432),
            config.get_dbname().or(config.get_user()).unwrap_or("?")
        );
        let cluster = Arc::new(Self {
            config,
            shown,
            node: node.to_string(),
            http_url: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            flush_served: AtomicU64::new(0),
            hooks: Mutex::new(None),
            thread: Mutex::new(None),
        });
        cluster.setup()?;
        Ok(cluster)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The address other nodes and operators reach this node's HTTP API at.
    pub fn set_http_url(&self, url: String) {
        *self.http_url.lock() = Some(url);
    }

    fn setup(&self) -> Result<()> {
        self.call(|c| async move {
            c.batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({LOCK_SCHEMA}); \
                 CREATE SCHEMA IF NOT EXISTS pond_cluster; \
                 CREATE TABLE IF NOT EXISTS pond_cluster.meta (id int PRIMARY KEY, version bigint NOT NULL, doc text NOT NULL); \
                 CREATE TABLE IF NOT EXISTS pond_cluster.nodes (node text PRIMARY KEY, http_url text, \
                   started_at timestamptz NOT NULL DEFAULT now(), last_seen timestamptz NOT NULL DEFAULT now(), \
                   last_flush_at timestamptz, flushed_rows bigint NOT NULL DEFAULT 0, unflushed_rows bigint NOT NULL DEFAULT 0, \
                   flush_served bigint NOT NULL DEFAULT 0); \
                 CREATE TABLE IF NOT EXISTS pond_cluster.control (id int PRIMARY KEY, flush_requested bigint NOT NULL); \
                 INSERT INTO pond_cluster.control VALUES (1, 0) ON CONFLICT DO NOTHING; \
                 COMMIT"
            ))
            .await
        })?;
        // A (re)started node serves only flush requests made from now on.
        let requested = self.flush_requested()?;
        self.flush_served.store(requested, Ordering::SeqCst);
        let node = self.node.clone();
        self.call(move |c| async move {
            c.execute(
                "INSERT INTO pond_cluster.nodes (node, flush_served) VALUES ($1, $2) \
                 ON CONFLICT (node) DO UPDATE SET started_at = now(), last_seen = now(), flushed_rows = 0, flush_served = $2",
                &[&node, &(requested as i64)],
            )
            .await
            .map(|_| ())
        })
    }

    /// Runs `f` with a pooled connection (a new one if none is idle) on
    /// Pond's I/O runtime, within [`TIMEOUT`]. A connection that failed is dropped.
    fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Arc<tokio_postgres::Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let client = self.take_client()?;
        let fut = f(client.clone());
        match pond_rt::wait(async move { tokio::time::timeout(TIMEOUT, fut).await }) {
            Ok(Ok(v)) => {
                self.idle.lock().push(client);
                Ok(v)
            }
            Ok(Err(e)) => Err(self.error(&e)),
            Err(_) => Err(Error::Postgres(format!("{}: no answer within {TIMEOUT:?}", self.shown))),
        }
    }

    fn error(&self, e: &tokio_postgres::Error) -> Error {
        let what = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        };
        Error::Postgres(format!("{}: {what}", self.shown))
    }

    fn take_client(&self) -> Result<Arc<tokio_postgres::Client>> {
        while let Some(c) = self.idle.lock().pop() {
            if !c.is_closed() {
                return Ok(c);
            }
        }
        let config = self.config.clone();
        let shown = self.shown.clone();
        pond_rt::wait(async move {
            let connecting = config.connect(tokio_postgres::NoTls);
            match tokio::time::timeout(TIMEOUT + Duration::from_secs(1), connecting).await {
                Ok(Ok((client, connection))) => {
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "cluster catalog connection closed");
                        }
                    });
                    Ok(Arc::new(client))
                }
                Ok(Err(e)) => {
                    let why = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
                    Err(Error::Postgres(format!("cannot connect to {shown}: {why}")))
                }
                Err(_) => Err(Error::Postgres(format!("cannot reach {shown}: no answer within {TIMEOUT:?}"))),
            }
        })
    }

    /// The number of cluster-wide flush requests made so far.
    fn flush_requested(&self) -> Result<u64> {
        self.call(|c| async move {
            let row = c.query_one("SELECT flush_requested FROM pond_cluster.control WHERE id = 1", &[]).await?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    /// Asks every node that is up to flush, and waits (up to `wait`) until
    /// each has. Returns the nodes that did not answer in time.
    pub fn flush_all(&self, wait: Duration) -> Result<Vec<String>> {
        let n = self.call(|c| async move {
            let row = c
                .query_one(
                    "UPDATE pond_cluster.control SET flush_requested = flush_requested + 1 WHERE id = 1 RETURNING flush_requested",
                    &[],
                )
                .await?;
            Ok(row.get::<_, i64>(0))
        })?;
        // This node serves its own request at once.
        if let Some(h) = self.hooks.lock().clone() {
            (h.flush)();
        }
        self.flush_served.fetch_max(n as u64, Ordering::SeqCst);
        let me = self.node.clone();
        self.call(move |c| async move {
            c.execute(
                "UPDATE pond_cluster.nodes SET flush_served = greatest(flush_served, $2), last_seen = now() WHERE node = $1",
                &[&me, &n],
            )
            .await
            .map(|_| ())
        })?;
        let deadline = Instant::now() + wait;
        let down = NODE_DOWN_AFTER.as_secs_f64();
        loop {
            let pending: Vec<String> = self.call(move |c| async move {
                let rows = c
                    .query(
                        "SELECT node FROM pond_cluster.nodes WHERE flush_served < $1 \
                         AND extract(epoch FROM now() - last_seen)::float8 < $2::float8 ORDER BY node",
                        &[&n, &down],
                    )
                    .await?;
                Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
            })?;
            if pending.is_empty() || Instant::now() >= deadline {
                return Ok(pending);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every node the catalog knows, this one included.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let me = self.node.clone();
        let down = NODE_DOWN_AFTER.as_secs_f64();
        self.call(move |c| async move {
            let rows = c
                .query(
                    "SELECT node, http_url, extract(epoch FROM now() - last_seen)::float8, \
                     extract(epoch FROM now() - last_flush_at)::float8, flushed_rows, unflushed_rows, \
                     to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
                     FROM pond_cluster.nodes ORDER BY node",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    let node: String = r.get(0);
                    let since: f64 = r.get(2);
                    NodeInfo {
                        this_node: node == me,
                        node,
                        http_url: r.get(1),
                        up: since < down,
                        seconds_since_heartbeat: since,
                        seconds_since_flush: r.get(3),
                        flushed_rows: r.get::<_, i64>(4) as u64,
                        unflushed_rows: r.get::<_, i64>(5) as u64,
                        started_at: r.get(6),
                    }
                })
                .collect())
        })
    }

    fn heartbeat(&self, status: &NodeStatus) -> Result<()> {
        let me = self.node.clone();
        let url = self.http_url.lock().clone();
        let flushed = status.flushed_rows as i64;
        let unflushed = status.unflushed_rows as i64;
        let last = status.last_flush_unix;
        let served = self.flush_served.load(Ordering::SeqCst) as i64;
        self.call(move |c| async move {
            c.execute(
                "UPDATE pond_cluster.nodes SET last_seen = now(), http_url = $2, flushed_rows = $3, unflushed_rows = $4, \
                 last_flush_at = CASE WHEN $5::float8 IS NULL THEN last_flush_at ELSE to_timestamp($5::float8) END, \
                 flush_served = greatest(flush_served, $6) WHERE node = $1",
                &[&me, &url, &flushed, &unflushed, &last, &served],
            )
            .await
            .map(|_| ())
        })
    }

    /// Takes the lake maintenance lock if no other node holds it. Held until
    /// the guard is dropped (or this node's connection ends: a node that
    /// dies releases it).
    pub fn try_maintenance_lock(self: &Arc<Self>) -> Result<Option<MaintenanceGuard>> {
        let client = self.take_client()?;
        let c = client.clone();
        let got = pond_rt::wait(async move {
            tokio::time::timeout(
                TIMEOUT,
                async move { c.query_one(&format!("SELECT pg_try_advisory_lock({LOCK_MAINTENANCE})"), &[]).await },
            )
            .await
        });
        match got {
            Ok(Ok(row)) if row.get::<_, bool>(0) => Ok(Some(MaintenanceGuard { cluster: self.clone(), client: Some(client) })),
            Ok(Ok(_)) => {
                self.idle.lock().push(client);
                Ok(None)
            }
            Ok(Err(e)) => Err(self.error(&e)),
            Err(_) => Err(Error::Postgres(format!("{}: no answer within {TIMEOUT:?}", self.shown))),
        }
    }

    /// Starts the node's loop: every [`TICK`] it adopts metadata other nodes
    /// changed (`meta`), serves cluster-wide flush requests and sends its
    /// heartbeat. Errors are logged (once per kind) and retried.
    pub fn start(self: &Arc<Self>, meta: Arc<pond_meta::MetaStore>, hooks: Hooks) {
        let hooks = Arc::new(hooks);
        *self.hooks.lock() = Some(hooks.clone());
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name("pond-cluster".into())
            .spawn(move || {
                let mut last_error: Option<String> = None;
                while !me.stop.load(Ordering::SeqCst) {
                    let round = (|| -> Result<()> {
                        meta.refresh().map_err(|e| Error::Postgres(e.to_string()))?;
                        let requested = me.flush_requested()?;
                        if requested > me.flush_served.load(Ordering::SeqCst) {
                            (hooks.flush)();
                            me.flush_served.fetch_max(requested, Ordering::SeqCst);
                        }
                        me.heartbeat(&(hooks.status)())
                    })();
                    match round {
                        Ok(()) => {
                            if last_error.take().is_some() {
                                tracing::info!("cluster catalog reachable again");
                            }
                        }
                        Err(e) => {
                            let text = e.to_string();
                            if last_error.as_deref() != Some(text.as_str()) {
                                tracing::warn!(error = %text, "cluster loop: will retry");
                                last_error = Some(text);
                            }
                        }
                    }
                    std::thread::sleep(TICK);
                }
            })
            .expect("the cluster thread starts");
        *self.thread.lock() = Some(handle);
    }

    /// Stops the loop (at shutdown).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
    }
}

/// The lake maintenance lock of one node (see [`Cluster::try_maintenance_lock`]).
pub struct MaintenanceGuard {
    cluster: Arc<Cluster>,
    client: Option<Arc<tokio_postgres::Client>>,
}

impl Drop for MaintenanceGuard {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        let c = client.clone();
        let released = pond_rt::wait(async move {
            tokio::time::timeout(TIMEOUT, async move { c.execute(&format!("SELECT pg_advisory_unlock({LOCK_MAINTENANCE})"), &[]).await })
                .await
        });
        // If the unlock did not happen, closing the connection releases the lock.
        if matches!(released, Ok(Ok(_))) {
            self.cluster.idle.lock().push(client);
        }
    }
}

impl SharedBackend for Cluster {
    fn version(&self) -> std::result::Result<u64, String> {
        self.call(|c| async move {
            let row = c.query_opt("SELECT version FROM pond_cluster.meta WHERE id = 1", &[]).await?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0))
        })
        .map_err(|e| e.to_string())
    }

    fn load(&self) -> std::result::Result<Option<(u64, SystemMeta)>, String> {
        let row = self
            .call(|c| async move {
                let row = c.query_opt("SELECT version, doc FROM pond_cluster.meta WHERE id = 1", &[]).await?;
                Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1))))
            })
            .map_err(|e| e.to_string())?;
        row.map(|(v, doc)| parse_doc(&doc).map(|d| (v, d))).transpose()
    }

    fn begin(&self) -> std::result::Result<Box<dyn SharedTxn>, String> {
        let client = self.take_client().map_err(|e| e.to_string())?;
        let c = client.clone();
        let current = pond_rt::wait(async move {
            tokio::time::timeout(TIMEOUT, async move {
                c.batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock({LOCK_META})")).await?;
                let row = c.query_opt("SELECT version, doc FROM pond_cluster.meta WHERE id = 1", &[]).await?;
                Ok::<_, tokio_postgres::Error>(row.map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1))))
            })
            .await
        });
        let current = match current {
            Ok(Ok(row)) => row,
            Ok(Err(e)) => return Err(self.error(&e).to_string()),
            Err(_) => return Err(format!("cluster catalog PostgreSQL ({}): no answer within {TIMEOUT:?}", self.shown)),
        };
        let current = current.map(|(v, doc)| parse_doc(&doc).map(|d| (v, d))).transpose()?;
        Ok(Box::new(MetaTxn { client: Some(client), current, shown: self.shown.clone() }))
    }
}

fn parse_doc(doc: &str) -> std::result::Result<SystemMeta, String> {
    serde_json::from_str(doc).map_err(|e| format!("the shared system metadata in pond_cluster.meta is not valid: {e}"))
}

/// A locked metadata update: a PostgreSQL transaction holding the metadata lock.
struct MetaTxn {
    client: Option<Arc<tokio_postgres::Client>>,
    current: Option<(u64, SystemMeta)>,
    shown: String,
}

impl SharedTxn for MetaTxn {
    fn current(&self) -> Option<(u64, SystemMeta)> {
        self.current.clone()
    }

    fn commit(mut self: Box<Self>, version: u64, next: &SystemMeta) -> std::result::Result<(), String> {
        let client = self.client.take().ok_or("transaction already finished")?;
        let doc = serde_json::to_string(next).map_err(|e| e.to_string())?;
        let v = version as i64;
        let done = pond_rt::wait(async move {
            tokio::time::timeout(TIMEOUT, async move {
                client
                    .execute(
                        "INSERT INTO pond_cluster.meta VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET version = $1, doc = $2",
                        &[&v, &doc],
                    )
                    .await?;
                client.batch_execute("COMMIT").await
            })
            .await
        });
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "cluster catalog PostgreSQL ({}): {}",
                self.shown,
                e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
            )),
            Err(_) => Err(format!("cluster catalog PostgreSQL ({}): no answer within {TIMEOUT:?}", self.shown)),
        }
    }
}

impl Drop for MetaTxn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ =
                pond_rt::wait(async move { tokio::time::timeout(TIMEOUT, async move { client.batch_execute("ROLLBACK").await }).await });
        }
    }
}
