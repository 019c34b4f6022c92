//! The engine's side of the query result cache (`pond-qcache`): which
//! statements may use it, what their key is, and the write generations the
//! engine bumps. A statement is cached only when it is one plain read
//! (SELECT/WITH/FROM/VALUES) outside a transaction, on a session without
//! temporary objects or computed settings, not rewritten by the sandbox or for
//! an external catalog, every table and view it names resolves to a Pond
//! database that is neither linked nor external (views are expanded, the
//! canonical measurement views included), and every function it calls is one
//! of DuckDB's own that DuckDB marks `CONSISTENT` (so no `now()`, `random()`,
//! `current_*`, macros, file readers or other table functions). Everything else
//! bypasses the cache. What a statement reads is worked out once per statement
//! text and current database, and again after any catalog change.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use pond_qcache::{Analysis, Cache, Collector, Entry, Key, KeyParts, Versions};

use crate::engine::Inner;
use crate::error::Result;

/// Plans remembered (statement text and current database/schema → read set).
const PLAN_ENTRIES: usize = 4096;
/// Views expanded inside each other at most this deep.
const VIEW_DEPTH: usize = 8;

/// Lower-case (database, schema, name) → the view's name as stored and its SQL (`None`: a table).
type CatalogMap = HashMap<(String, String, String), Option<(String, String)>>;

/// (text, database, schema) → (catalog generation, read set or `None`: uncacheable).
type PlanMap = HashMap<(String, String, String), (u64, Option<Arc<Vec<String>>>)>;

/// The cache and the bookkeeping around it (one per engine, when enabled).
pub(crate) struct QueryCache {
    pub(crate) cache: Cache,
    pub(crate) versions: Versions,
    plans: Mutex<PlanMap>,
    /// Function name → every overload is DuckDB's own and CONSISTENT; by catalog generation.
    functions: Mutex<(u64, Arc<HashMap<String, bool>>)>,
    catalog: Mutex<(u64, Arc<CatalogMap>)>,
    /// The grants in force and their epoch (a new `Policy` value is a new epoch;
    /// holding the old value keeps its address from being reused).
    policy: Mutex<(Option<Arc<pond_auth::Policy>>, u64)>,
}

impl QueryCache {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            cache: Cache::new(max_bytes),
            versions: Versions::default(),
            plans: Mutex::new(HashMap::new()),
            functions: Mutex::new((0, Arc::new(HashMap::new()))),
            catalog: Mutex::new((0, Arc::new(HashMap::new()))),
            policy: Mutex::new((None, 0)),
        }
    }

    fn policy_epoch(&self, current: Arc<pond_auth::Policy>) -> u64 {
        let mut p = self.policy.lock();
        match &p.0 {
            Some(old) if Arc::ptr_eq(old, &current) => p.1,
            _ => {
                p.0 = Some(current);
                p.1 += 1;
                p.1
            }
        }
    }
}

/// What the read set of a statement is known to be.
#[derive(Clone)]
enum Plan {
    Unknown,
    Reads(Arc<Vec<String>>),
}

/// What to do with a statement about to run.
pub(crate) enum Start {
    /// Answer with this result instead of running it.
    Hit(Arc<Entry>),
    /// Run it and store the result under this key.
    Store(Key, Collector),
    /// Run it; do not store.
    Skip,
}

/// A statement that may use the cache, with everything its key needs except
/// the write generations (taken just before it runs).
pub(crate) struct Probe {
    inner: Arc<Inner>,
    text: String,
    params: String,
    principal: String,
    target: (String, String),
    settings: Vec<String>,
    plan: Plan,
}

impl Probe {
    /// A probe for `text` if the cache is on and the statement looks like a
    /// plain read; `None` (counted as bypassed) otherwise. An uncacheable
    /// plan remembered for the text also ends here.
    pub(crate) fn new(
        inner: &Arc<Inner>,
        identity: &pond_auth::Identity,
        text: &str,
        params: Option<&crate::params::ParamRows>,
        target: (String, String),
        settings: Vec<String>,
    ) -> Option<Probe> {
        let qc = inner.qcache.as_ref()?;
        let identity = inner.auth.revalidate(identity).ok()?;
        let epoch = qc.policy_epoch(inner.auth.policy());
        let generation = inner.catalog_generation.load(Ordering::SeqCst);
        let plan = match qc.plans.lock().get(&(text.to_string(), target.0.clone(), target.1.clone())) {
            Some((g, Some(reads))) if *g == generation => Plan::Reads(reads.clone()),
            Some((g, None)) if *g == generation => {
                qc.cache.bypass();
                inner.metrics.query_cache("bypass");
                return None;
            }
            _ => Plan::Unknown,
        };
        Some(Probe {
            inner: inner.clone(),
            text: text.to_string(),
            params: params.map(|p| format!("{p:?}")).unwrap_or_default(),
            // The whole identity: a narrowed credential (scope) of the same user is another principal.
            principal: format!("{identity:?}\u{0}{epoch}"),
            target,
            settings,
            plan,
        })
    }

    fn key(&self, reads: &[String]) -> Option<Key> {
        let qc = self.inner.qcache.as_ref()?;
        let versions = qc.versions.snapshot(reads);
        Some(Key::new(&KeyParts {
            statement: &self.text,
            params: &self.params,
            principal: &self.principal,
            database: &self.target.0,
            schema: &self.target.1,
            settings: &self.settings,
            catalog: (0, self.inner.db_generation.load(Ordering::SeqCst)),
            versions: &versions,
        }))
    }

    /// The cached result, when the read set is known and an entry exists
    /// (counted as a hit, or a miss).
    pub(crate) fn lookup(&self) -> Option<Arc<Entry>> {
        let Plan::Reads(reads) = &self.plan else { return None };
        let qc = self.inner.qcache.as_ref()?;
        let key = self.key(reads)?;
        let hit = qc.cache.get(&key);
        self.inner.metrics.query_cache(if hit.is_some() { "hit" } else { "miss" });
        hit
    }

    /// Just before the statement runs on `conn`: works out the read set if
    /// it is not known yet (and then looks the result up), takes the write
    /// generations and returns the key to store the result under, with a
    /// collector for it.
    pub(crate) fn start(&self, conn: &duckdb::Connection, rewritten: bool) -> Start {
        let Some(qc) = self.inner.qcache.as_ref() else { return Start::Skip };
        if rewritten {
            qc.cache.bypass();
            self.inner.metrics.query_cache("bypass");
            return Start::Skip;
        }
        let reads = match &self.plan {
            Plan::Reads(r) => r.clone(),
            Plan::Unknown => {
                let generation = self.inner.catalog_generation.load(Ordering::SeqCst);
                let reads = match read_set(&self.inner, qc, conn, &self.text, &self.target) {
                    Ok(r) => Some(Arc::new(r)),
                    Err(why) => {
                        tracing::debug!(reason = %why, "statement bypasses the query cache");
                        None
                    }
                };
                let mut plans = qc.plans.lock();
                if plans.len() >= PLAN_ENTRIES {
                    plans.clear();
                }
                plans.insert((self.text.clone(), self.target.0.clone(), self.target.1.clone()), (generation, reads.clone()));
                drop(plans);
                let Some(reads) = reads else {
                    qc.cache.bypass();
                    self.inner.metrics.query_cache("bypass");
                    return Start::Skip;
                };
                // `lookup` could not look: the read set was not known.
                let Some(key) = self.key(&reads) else { return Start::Skip };
                if let Some(hit) = qc.cache.get(&key) {
                    self.inner.metrics.query_cache("hit");
                    return Start::Hit(hit);
                }
                self.inner.metrics.query_cache("miss");
                return Start::Store(key, Collector::new(qc.cache.entry_limit()));
            }
        };
        match self.key(&reads) {
            Some(key) => Start::Store(key, Collector::new(qc.cache.entry_limit())),
            None => Start::Skip,
        }
    }

    /// Stores a complete result.
    pub(crate) fn store(&self, key: Key, collector: Collector) {
        let Some(qc) = self.inner.qcache.as_ref() else { return };
        match collector.finish() {
            Some(entry) => {
                let evicted = qc.cache.insert(key, entry);
                self.inner.metrics.query_cache_stored(evicted, &qc.cache.stats());
            }
            None => qc.cache.too_large(),
        }
    }
}

/// The Pond databases `text` reads, or why it cannot be cached.
fn read_set(
    inner: &Arc<Inner>,
    qc: &QueryCache,
    conn: &duckdb::Connection,
    text: &str,
    target: &(String, String),
) -> Result<Vec<String>, String> {
    let generation = inner.catalog_generation.load(Ordering::SeqCst);
    let functions = {
        let f = qc.functions.lock();
        (f.0 == generation).then(|| f.1.clone())
    };
    let functions = match functions {
        Some(f) => f,
        None => {
            let f = Arc::new(load_functions(conn).map_err(|e| e.to_string())?);
            *qc.functions.lock() = (generation, f.clone());
            f
        }
    };
    let catalog = {
        let c = qc.catalog.lock();
        (c.0 == generation).then(|| c.1.clone())
    };
    let catalog = match catalog {
        Some(c) => c,
        None => {
            let c = Arc::new(load_catalog(conn).map_err(|e| e.to_string())?);
            *qc.catalog.lock() = (generation, c.clone());
            c
        }
    };
    let engine = inner.engine();
    let infos = engine.databases();
    let pond_dbs: BTreeSet<String> = infos.iter().map(|d| d.name.to_ascii_lowercase()).collect();
    let lakes = engine.lakes_by_name(&infos);
    let mut reads = BTreeSet::new();
    let mut called = BTreeSet::new();
    let mut resolver =
        Resolver { conn, catalog: &catalog, pond_dbs: &pond_dbs, lakes: &lakes, engine: &engine, reads: &mut reads, called: &mut called };
    resolver.statement(text, &(target.0.to_ascii_lowercase(), target.1.to_ascii_lowercase()), 0)?;
    for f in &called {
        if !functions.get(f).copied().unwrap_or(false) {
            return Err(format!("calls {f}, which is not a deterministic built-in function"));
        }
    }
    Ok(reads.into_iter().collect())
}

struct Resolver<'a> {
    conn: &'a duckdb::Connection,
    catalog: &'a CatalogMap,
    pond_dbs: &'a BTreeSet<String>,
    lakes: &'a HashMap<String, crate::lake::Lake>,
    engine: &'a crate::Engine,
    reads: &'a mut BTreeSet<String>,
    called: &'a mut BTreeSet<String>,
}

impl Resolver<'_> {
    /// Whether a view is the one Pond generated for a measurement (its text is
    /// exactly the canonical text for its database and name): its hot rows and
    /// lake files change only with ingest, flushes and compactions, which bump
    /// its database's generation. A user-made view never matches.
    fn is_measurement_view(&self, db: &str, schema: &str, name: &str, sql: &str) -> bool {
        if schema != "main" {
            return false;
        }
        let Some(lake) = self.lakes.get(db) else { return false };
        crate::lake::is_measurement_view_text(self.conn, lake, name, sql)
    }

    fn statement(&mut self, text: &str, current: &(String, String), depth: usize) -> Result<(), String> {
        if depth > VIEW_DEPTH {
            return Err("views nested too deeply".into());
        }
        let tree: String = self
            .conn
            .prepare_cached("SELECT json_serialize_sql($1::VARCHAR)")
            .and_then(|mut s| s.query_row([text], |r| r.get(0)))
            .map_err(|e| e.to_string())?;
        let tree: serde_json::Value = serde_json::from_str(&tree).map_err(|e| e.to_string())?;
        let a: Analysis = pond_qcache::analyze(&tree)?;
        if let Some(tf) = a.table_functions.iter().next() {
            return Err(format!("reads the table function {tf}"));
        }
        self.called.extend(a.functions.iter().filter(|f| !a.table_functions.contains(*f)).cloned());
        for t in &a.tables {
            let (c, s, n) = (t.catalog.to_ascii_lowercase(), t.schema.to_ascii_lowercase(), t.name.to_ascii_lowercase());
            let candidates: Vec<(String, String, String)> = match (c.is_empty(), s.is_empty()) {
                (false, _) => vec![(c.clone(), if s.is_empty() { "main".into() } else { s.clone() }, n.clone())],
                (true, false) => vec![(current.0.clone(), s.clone(), n.clone()), (s.clone(), "main".into(), n.clone())],
                (true, true) => vec![(current.0.clone(), current.1.clone(), n.clone()), (current.0.clone(), "main".into(), n.clone())],
            };
            let found: Vec<_> = candidates.into_iter().filter(|k| self.catalog.contains_key(k)).collect();
            if found.is_empty() {
                if c.is_empty() && s.is_empty() && a.ctes.contains(&n) {
                    continue;
                }
                return Err(format!("reads {n}, which is not a table or view of a Pond database"));
            }
            for k in found {
                let db = &k.0;
                if !self.pond_dbs.contains(db) {
                    return Err(format!("reads database {db}, which is not a Pond database"));
                }
                if self.engine.inner.links.is_linked(db) || self.engine.is_external(db) {
                    return Err(format!("reads database {db}, which changes outside Pond's sessions"));
                }
                self.reads.insert(db.clone());
                if let Some(Some((name, sql))) = self.catalog.get(&k) {
                    if self.is_measurement_view(&k.0, &k.1, name, sql) {
                        continue;
                    }
                    let query = crate::sandbox::view_query(sql).ok_or_else(|| format!("view {n} has a shape Pond does not read"))?;
                    self.statement(&query, &(k.0.clone(), k.1.clone()), depth + 1)?;
                }
            }
        }
        Ok(())
    }
}

fn load_functions(conn: &duckdb::Connection) -> Result<HashMap<String, bool>> {
    let mut stmt = conn.prepare(
        "SELECT lower(function_name), bool_and(database_name = 'system' AND coalesce(stability, '') = 'CONSISTENT') \
         FROM duckdb_functions() GROUP BY 1",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

fn load_catalog(conn: &duckdb::Connection) -> Result<CatalogMap> {
    let mut stmt = conn.prepare(
        "SELECT lower(database_name), lower(schema_name), lower(table_name), NULL::VARCHAR, NULL::VARCHAR FROM duckdb_tables() \
         UNION ALL SELECT lower(database_name), lower(schema_name), lower(view_name), view_name, sql FROM duckdb_views() WHERE NOT internal",
    )?;
    let rows = stmt.query_map([], |r| {
        let view = match (r.get::<_, Option<String>>(3)?, r.get::<_, Option<String>>(4)?) {
            (Some(name), Some(sql)) => Some((name, sql)),
            _ => None,
        };
        Ok(((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?), view))
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// The cache's statistics, as `/api/v1/cache` shows them (`enabled: false` when off).
pub(crate) fn stats(inner: &Inner) -> pond_qcache::Stats {
    inner.qcache.as_ref().map(|q| q.cache.stats()).unwrap_or_default()
}

/// Whether a statement starting with WITH may write (`WITH … INSERT/UPDATE/
/// DELETE`): any such word, quoted or not, says yes (a false yes only
/// invalidates more than needed).
pub(crate) fn mentions_write(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| ["insert", "update", "delete", "merge", "copy", "create", "drop", "alter"].iter().any(|k| w.eq_ignore_ascii_case(k)))
}
