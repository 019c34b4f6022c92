//! Prometheus metrics shared by every protocol: queries, errors, latency,
//! sessions and bytes sent, labelled by protocol.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: String,
}

/// All of Pond's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    queries: Family<ProtocolLabel, Counter>,
    errors: Family<ProtocolLabel, Counter>,
    latency: Family<ProtocolLabel, Histogram>,
    bytes_sent: Family<ProtocolLabel, Counter>,
    rows_sent: Family<ProtocolLabel, Counter>,
    sessions: Gauge<i64, AtomicI64>,
    link_lag_bytes: Family<DatabaseLabel, Gauge<i64, AtomicI64>>,
    link_lag_seconds: Family<DatabaseLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    link_applied: Family<DatabaseLabel, Counter>,
    link_error: Family<DatabaseLabel, Gauge<i64, AtomicI64>>,
    sandbox: Family<VerdictLabel, Counter>,
    backup: BackupMetrics,
    cache: Family<CacheLabel, Counter>,
    cache_evictions: Counter,
    cache_bytes: Gauge<i64, AtomicI64>,
    cache_entries: Gauge<i64, AtomicI64>,
}

/// Figures of the backups (`pond-backup`).
#[derive(Default)]
struct BackupMetrics {
    runs: Family<ResultLabel, Counter>,
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_bytes: Family<KindLabel, Gauge<i64, AtomicI64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// How the query result cache answered a statement: `hit`, `miss` (run and
/// stored), `bypass` (not cacheable).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabel {
    pub result: &'static str,
}

/// How a non-superuser's statement got its verdict: `checked` (the sandbox ran),
/// `cached` (the same text before), `shape` (the same text but for literal values).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatabaseLabel {
    pub database: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pond");
        let queries = Family::<ProtocolLabel, Counter>::default();
        let errors = Family::<ProtocolLabel, Counter>::default();
        let latency = Family::<ProtocolLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0])
        });
        let bytes_sent = Family::<ProtocolLabel, Counter>::default();
        let rows_sent = Family::<ProtocolLabel, Counter>::default();
        let sessions = Gauge::<i64, AtomicI64>::default();
        registry.register("queries", "Statements executed", queries.clone());
        registry.register("query_errors", "Statements that failed", errors.clone());
        registry.register("query_duration_seconds", "Time from request to the first result batch", latency.clone());
        registry.register("bytes_sent", "Result bytes sent to clients", bytes_sent.clone());
        registry.register("rows_sent", "Result rows sent to clients", rows_sent.clone());
        registry.register("sessions", "Open client sessions", sessions.clone());
        let link_lag_bytes = Family::<DatabaseLabel, Gauge<i64, AtomicI64>>::default();
        let link_lag_seconds = Family::<DatabaseLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let link_applied = Family::<DatabaseLabel, Counter>::default();
        let link_error = Family::<DatabaseLabel, Gauge<i64, AtomicI64>>::default();
        registry.register("link_lag_bytes", "WAL bytes received from a linked PostgreSQL but not yet applied", link_lag_bytes.clone());
        registry.register("link_lag_seconds", "Age of the oldest source change not yet applied", link_lag_seconds.clone());
        registry.register("link_applied_changes", "Changes applied from a linked PostgreSQL", link_applied.clone());
        registry.register("link_error", "1 while a link is in error", link_error.clone());
        let sandbox = Family::<VerdictLabel, Counter>::default();
        registry.register(
            "sandbox_checks",
            "Non-superuser statements by how their verdict was reached (checked, cached, shape)",
            sandbox.clone(),
        );
        let backup = BackupMetrics::default();
        registry.register("backups", "Backups taken, by result (ok, error)", backup.runs.clone());
        registry.register(
            "backup_last_success_timestamp_seconds",
            "When the last successful backup finished (Unix time)",
            backup.last_success.clone(),
        );
        registry.register("backup_last_duration_seconds", "How long the last backup took", backup.last_seconds.clone());
        registry.register(
            "backup_last_bytes",
            "Bytes of the last successful backup: copied to the target, or reused from earlier backups",
            backup.last_bytes.clone(),
        );
        let cache = Family::<CacheLabel, Counter>::default();
        let cache_evictions = Counter::default();
        let cache_bytes = Gauge::<i64, AtomicI64>::default();
        let cache_entries = Gauge::<i64, AtomicI64>::default();
        registry.register("query_cache_lookups", "Query result cache lookups by result (hit, miss, bypass)", cache.clone());
        registry.register(
            "query_cache_evictions",
            "Results evicted from the query result cache to stay within its size",
            cache_evictions.clone(),
        );
        registry.register("query_cache_bytes", "Bytes of results held by the query result cache", cache_bytes.clone());
        registry.register("query_cache_entries", "Results held by the query result cache", cache_entries.clone());
        Self {
            inner: Arc::new(Inner {
                registry,
                queries,
                errors,
                latency,
                bytes_sent,
                rows_sent,
                sessions,
                link_lag_bytes,
                link_lag_seconds,
                link_applied,
                link_error,
                sandbox,
                backup,
                cache,
                cache_evictions,
                cache_bytes,
                cache_entries,
            }),
        }
    }

    fn label(protocol: &str) -> ProtocolLabel {
        ProtocolLabel { protocol: protocol.to_string() }
    }

    pub fn query(&self, protocol: &str, seconds: f64, ok: bool) {
        let l = Self::label(protocol);
        self.inner.queries.get_or_create(&l).inc();
        self.inner.latency.get_or_create(&l).observe(seconds);
        if !ok {
            self.inner.errors.get_or_create(&l).inc();
        }
    }

    /// One backup's outcome.
    pub fn record_backup(&self, ok: bool, seconds: f64, bytes_copied: u64, bytes_reused: u64) {
        let b = &self.inner.backup;
        b.runs.get_or_create(&ResultLabel { result: if ok { "ok" } else { "error" } }).inc();
        b.last_seconds.set(seconds);
        if ok {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
            b.last_success.set(now);
            b.last_bytes.get_or_create(&KindLabel { kind: "copied" }).set(bytes_copied as i64);
            b.last_bytes.get_or_create(&KindLabel { kind: "reused" }).set(bytes_reused as i64);
        }
    }

    pub fn error(&self, protocol: &str) {
        self.inner.errors.get_or_create(&Self::label(protocol)).inc();
    }

    pub fn sent(&self, protocol: &str, bytes: u64, rows: u64) {
        let l = Self::label(protocol);
        self.inner.bytes_sent.get_or_create(&l).inc_by(bytes);
        self.inner.rows_sent.get_or_create(&l).inc_by(rows);
    }

    pub(crate) fn sessions_changed(&self, delta: i64) {
        self.inner.sessions.inc_by(delta);
    }

    pub fn open_sessions(&self) -> i64 {
        self.inner.sessions.get()
    }

    /// A link's figures (see `Engine::refresh_link_metrics`).
    pub(crate) fn link(&self, database: &str, lag_bytes: u64, lag_seconds: f64, applied_delta: u64, error: bool) {
        let l = DatabaseLabel { database: database.to_string() };
        self.inner.link_lag_bytes.get_or_create(&l).set(lag_bytes as i64);
        self.inner.link_lag_seconds.get_or_create(&l).set(lag_seconds);
        self.inner.link_applied.get_or_create(&l).inc_by(applied_delta);
        self.inner.link_error.get_or_create(&l).set(error as i64);
    }

    pub(crate) fn sandbox_verdict(&self, verdict: &'static str) {
        self.inner.sandbox.get_or_create(&VerdictLabel { verdict }).inc();
    }

    pub(crate) fn query_cache(&self, result: &'static str) {
        self.inner.cache.get_or_create(&CacheLabel { result }).inc();
    }

    /// After the cache stored (or dropped) results.
    pub(crate) fn query_cache_stored(&self, evicted: u64, stats: &pond_qcache::Stats) {
        self.inner.cache_evictions.inc_by(evicted);
        self.inner.cache_bytes.set(stats.bytes as i64);
        self.inner.cache_entries.set(stats.entries as i64);
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}
