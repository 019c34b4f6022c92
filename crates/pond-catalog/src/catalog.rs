//! [`Catalog`]: one attached external catalog — a provider plus everything
//! that is the same for every provider: the metadata cache, retries of
//! transient failures, partition selection (metastore filter first, local
//! filtering of partition names second, never every partition object for a
//! selective query), the partition limit, and the file listing of the
//! selected partitions only.
//!
//! Listings of object-store locations (S3) are cached for the same TTL as the
//! metadata, per table and location, and dropped by the same `REFRESH
//! CATALOG`: a LIST is a round trip per query otherwise (Trino keeps a
//! file-status cache for the same reason). Within the TTL a file added to a
//! listed location is not read yet (as a partition added in the metastore is
//! not), and a file deleted makes the query fail when DuckDB opens it (never
//! rows silently dropped or invented). Only names are cached: DuckDB still
//! checks each file's size when it opens it, so a file rewritten in place is
//! read as it now is. Local directories are listed every time (a readdir is
//! cheap).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::model::{Partition, Table};
use crate::predicate::{Key, Pred};
use crate::provider::Provider;
use crate::reader::{self, Format, Slice};
use crate::types::key_kind;

/// Settings of an attached catalog that apply whatever the provider.
#[derive(Debug, Clone)]
pub struct CatalogOptions {
    /// How long metadata stays cached; zero disables the cache.
    pub cache_ttl: Duration,
    /// A query reading more partitions of one table fails.
    pub max_partitions: Option<usize>,
    /// Tries of a call that failed transiently (1 = no retry).
    pub attempts: u32,
    /// No retry starts after this much time spent on one call (the
    /// provider's own timeout bounds each try), so a metastore that hangs
    /// costs one timeout, not one per try.
    pub retry_budget: Duration,
}

impl Default for CatalogOptions {
    fn default() -> Self {
        CatalogOptions { cache_ttl: Duration::from_secs(60), max_partitions: None, attempts: 3, retry_budget: Duration::from_secs(10) }
    }
}

/// Lists the data files of a location (a partition's or a table's directory).
pub trait FileLister: Sync {
    fn list(&self, location: &str) -> Result<Vec<String>>;
}

/// Above this many selected partitions under the table's own location, the
/// table's location is listed once (one recursive listing; on S3 one paged
/// LIST) instead of once per partition.
const LIST_ROOT_FROM: usize = 4;
/// Partition directories listed at once (S3 listings are round trips).
const LIST_PARALLEL: usize = 8;

/// How partitions were selected, for EXPLAIN and diagnostics.
#[derive(Debug, Clone)]
pub struct Selection {
    pub partitions: Vec<Partition>,
    /// All partitions of the table, when the selection learned it.
    pub total: Option<usize>,
    /// `unpartitioned`, `all partitions`, `metastore filter: …`, `partition names filtered locally`.
    pub method: String,
}

/// What reading a table through the catalog will do.
#[derive(Debug, Clone)]
pub struct ScanPlan {
    pub sql: String,
    pub format: &'static str,
    pub selection: Selection,
    pub files: usize,
    /// Time spent selecting partitions (metastore calls or the cache).
    pub selecting: Duration,
    /// Time spent listing the selected locations' files.
    pub listing: Duration,
    /// Locations whose listing came from the cache, of those listed.
    pub listings_cached: usize,
    pub listings: usize,
}

/// A partition name and its values (None if it does not name the table's keys).
type ParsedName = (String, Option<Vec<String>>);

fn parse_names(names: &[String], keys: &[&str]) -> Vec<ParsedName> {
    names.iter().map(|n| (n.clone(), crate::paths::parse_partition_name(n, keys))).collect()
}

/// When a table's partitions were first cached, and them by name.
type PartitionsByName = (std::time::Instant, HashMap<String, Partition>);

/// (namespace, table, metastore filter) of a cached filter answer.
type FilterKey = (String, String, String);

/// Partition fetches by name go in batches of this many.
const NAMES_BATCH: usize = 100;

pub struct Catalog {
    name: String,
    provider: Box<dyn Provider>,
    options: CatalogOptions,
    namespaces: Cache<(), Arc<Vec<String>>>,
    tables: Cache<String, Arc<Vec<String>>>,
    table: Cache<(String, String), Arc<Table>>,
    /// Every partition name of a table, parsed once into values.
    names: Cache<(String, String), Arc<Vec<ParsedName>>>,
    filtered: Cache<FilterKey, Arc<Option<Vec<Partition>>>>,
    prefixed: Cache<FilterKey, Arc<Option<Vec<String>>>>,
    /// Partitions fetched by name, per table, dropped whole when the TTL passes.
    by_name: parking_lot::Mutex<HashMap<(String, String), PartitionsByName>>,
    /// Files of object-store locations: (namespace, table, location).
    listings: Cache<FilterKey, Arc<Vec<String>>>,
    /// Calls made to the provider (for tests and metrics).
    calls: AtomicU64,
}

impl Catalog {
    pub fn new(name: &str, provider: Box<dyn Provider>, options: CatalogOptions) -> Self {
        let ttl = options.cache_ttl;
        Catalog {
            name: name.to_string(),
            provider,
            options,
            namespaces: Cache::new(ttl),
            tables: Cache::new(ttl),
            table: Cache::new(ttl),
            names: Cache::new(ttl),
            filtered: Cache::new(ttl),
            prefixed: Cache::new(ttl),
            by_name: Default::default(),
            listings: Cache::new(ttl),
            calls: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> &'static str {
        self.provider.kind()
    }

    pub fn endpoint(&self) -> String {
        self.provider.endpoint()
    }

    pub fn options(&self) -> &CatalogOptions {
        &self.options
    }

    /// Calls made to the provider so far.
    pub fn provider_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Runs a provider call, retrying transient failures with exponential
    /// backoff and jitter (bounded by `attempts`).
    fn call<T>(&self, f: impl Fn() -> Result<T>) -> Result<T> {
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            self.calls.fetch_add(1, Ordering::Relaxed);
            match f() {
                Err(e)
                    if e.retryable() && attempt < self.options.attempts.max(1) && started.elapsed() + delay < self.options.retry_budget =>
                {
                    let jitter = rand::thread_rng().gen_range(0.5..1.5);
                    tracing::debug!(catalog = %self.name, attempt, error = %e, "retrying a catalog call");
                    std::thread::sleep(delay.mul_f64(jitter));
                    delay *= 2;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// Credentials for the tables' files, if the catalog has its own (see
    /// [`Provider::storage_access`]).
    pub fn storage_access(&self) -> Result<Option<crate::aws::StorageAccess>> {
        self.call(|| self.provider.storage_access())
    }

    pub fn namespaces(&self) -> Result<Arc<Vec<String>>> {
        self.namespaces.get_or_fetch(&(), || self.call(|| self.provider.namespaces()).map(Arc::new))
    }

    pub fn tables(&self, namespace: &str) -> Result<Arc<Vec<String>>> {
        let key = namespace.to_ascii_lowercase();
        self.tables.get_or_fetch(&key, || self.call(|| self.provider.tables(namespace)).map(Arc::new))
    }

    pub fn table(&self, namespace: &str, table: &str) -> Result<Arc<Table>> {
        let key = (namespace.to_ascii_lowercase(), table.to_ascii_lowercase());
        self.table.get_or_fetch(&key, || self.call(|| self.provider.table(namespace, table)).map(Arc::new))
    }

    /// Drops cached metadata: everything, a namespace's, or one table's.
    pub fn refresh(&self, namespace: Option<&str>, table: Option<&str>) {
        let ns = namespace.map(str::to_ascii_lowercase);
        let t = table.map(str::to_ascii_lowercase);
        let hit = |n: &String, tb: &String| ns.as_ref().is_none_or(|x| x == n) && t.as_ref().is_none_or(|x| x == tb);
        if ns.is_none() {
            self.namespaces.invalidate(|_| true);
        }
        if t.is_none() {
            self.tables.invalidate(|n| ns.as_ref().is_none_or(|x| x == n));
        }
        self.table.invalidate(|(n, tb)| hit(n, tb));
        self.names.invalidate(|(n, tb)| hit(n, tb));
        self.filtered.invalidate(|(n, tb, _)| hit(n, tb));
        self.prefixed.invalidate(|(n, tb, _)| hit(n, tb));
        self.by_name.lock().retain(|(n, tb), _| !hit(n, tb));
        self.listings.invalidate(|(n, tb, _)| hit(n, tb));
    }

    /// The partition keys of `table` as the predicate code sees them.
    pub fn keys(table: &Table) -> Vec<Key> {
        table.partition_keys.iter().map(|c| Key { name: c.name.clone(), kind: key_kind(&c.catalog_type) }).collect()
    }

    /// The partitions of `table` that may hold rows matching `pred`.
    pub fn select(&self, table: &Table, pred: Option<&Pred>) -> Result<Selection> {
        if !table.is_partitioned() {
            let p = Partition { values: vec![], location: table.storage.location.clone() };
            return Ok(Selection { partitions: vec![p], total: Some(1), method: "unpartitioned".into() });
        }
        let keys = Self::keys(table);
        let tkey = (table.namespace.to_ascii_lowercase(), table.name.to_ascii_lowercase());
        let local = |parts: Vec<Partition>| -> Vec<Partition> {
            match pred {
                None => parts,
                Some(p) => parts
                    .into_iter()
                    .filter(|part| {
                        let values: Vec<Option<&str>> = part.values.iter().map(|v| crate::predicate::value_or_null(v)).collect();
                        p.matches(&values, &keys)
                    })
                    .collect(),
            }
        };
        let selection = 'sel: {
            let Some(pred) = pred else {
                // The full listing is cached like a filter's answer (key: no filter).
                let key = (tkey.0.clone(), tkey.1.clone(), String::new());
                let all = self.filtered.get_or_fetch(&key, || self.call(|| self.provider.partitions(table)).map(|p| Arc::new(Some(p))))?;
                let all = all.as_ref().clone().unwrap_or_default();
                let total = all.len();
                break 'sel Selection { partitions: all, total: Some(total), method: "all partitions".into() };
            };
            let key_names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
            let by_names = |names: &[ParsedName]| -> Result<Vec<Partition>> {
                let mut v: Vec<Option<&str>> = Vec::with_capacity(keys.len());
                let wanted: Vec<String> = names
                    .iter()
                    .filter(|(_, values)| match values {
                        Some(values) => {
                            v.clear();
                            v.extend(values.iter().map(|x| crate::predicate::value_or_null(x)));
                            pred.matches(&v, &keys)
                        }
                        None => true,
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                self.check_limit(table, wanted.len())?;
                // Partitions fetched before (within the TTL) are not asked for again.
                let (mut partitions, missing) = self.cached_partitions(&tkey, &wanted);
                let mut fetched = Vec::with_capacity(missing.len());
                for batch in missing.chunks(NAMES_BATCH) {
                    fetched.extend(self.call(|| self.provider.partitions_by_names(table, batch))?);
                }
                self.remember_partitions(&tkey, &key_names, &fetched);
                partitions.extend(fetched);
                Ok(partitions)
            };
            // 0. Every key pinned to a few values, and the service fetches by value
            //    cheaply (Glue's BatchGetPartition): ask for exactly those.
            if self.provider.prefers_point_lookups() {
                if let Some(points) = pred.point_values(&keys, NAMES_BATCH * 10) {
                    let names: Vec<ParsedName> = points
                        .into_iter()
                        .map(|v| {
                            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
                            (crate::paths::partition_name(&key_names, &refs), Some(v))
                        })
                        .collect();
                    let partitions = by_names(&names)?;
                    break 'sel Selection { partitions, total: None, method: format!("{} partitions fetched by value", names.len()) };
                }
            }
            // 1. Every name already cached: filter it here, fetch the chosen by name.
            if let Some(names) = self.names.peek(&tkey).filter(|n| !n.is_empty()) {
                let partitions = by_names(&names)?;
                break 'sel Selection { partitions, total: Some(names.len()), method: "cached partition names filtered locally".into() };
            }
            // 2. Equality on the leading string keys: only those names (Trino's way).
            let prefix = pred.string_prefix(&keys);
            if !prefix.is_empty() {
                let key = (tkey.0.clone(), tkey.1.clone(), format!("prefix:{}", prefix.join("/")));
                let listed = self
                    .prefixed
                    .get_or_fetch(&key, || self.call(|| self.provider.partition_names_with_prefix(table, &prefix)).map(Arc::new))?;
                if let Some(names) = listed.as_ref() {
                    let partitions = by_names(&parse_names(names, &key_names))?;
                    break 'sel Selection {
                        partitions,
                        total: None,
                        method: format!("partition names with prefix {} filtered locally", prefix.join("/")),
                    };
                }
            }
            // 3. The metastore's own filter, when it expresses the whole
            //    condition (a partial one, e.g. only the hour of a date-and-hour
            //    condition, would fetch many partition objects: names are cheaper).
            let dialect = self.provider.filter_dialect();
            if let Some(filter) = pred.filter(&keys, dialect).filter(|_| pred.filter_is_exact(&keys, dialect)) {
                let key = (tkey.0.clone(), tkey.1.clone(), filter.clone());
                let fetched =
                    self.filtered.get_or_fetch(&key, || match self.call(|| self.provider.partitions_by_filter(table, &filter)) {
                        Ok(v) => Ok(Arc::new(v)),
                        // The service refused the filter (not a transport failure): filter locally instead.
                        Err(e @ Error::Provider { retryable: false, .. }) => {
                            tracing::debug!(catalog = %self.name, %filter, error = %e, "metastore filter refused; filtering names locally");
                            Ok(Arc::new(None))
                        }
                        Err(e) => Err(e),
                    })?;
                if let Some(parts) = fetched.as_ref() {
                    break 'sel Selection { partitions: local(parts.clone()), total: None, method: format!("metastore filter: {filter}") };
                }
            }
            let names = self.names.get_or_fetch(&tkey, || {
                self.call(|| self.provider.partition_names(table)).map(|n| Arc::new(parse_names(&n.unwrap_or_default(), &key_names)))
            })?;
            if names.is_empty() {
                // No names listing (or no partitions): fetch everything and filter.
                let all = self.call(|| self.provider.partitions(table))?;
                let total = all.len();
                break 'sel Selection { partitions: local(all), total: Some(total), method: "all partitions filtered locally".into() };
            }
            // 4. Every name (then cached), filtered here.
            let partitions = by_names(&names)?;
            Selection { partitions, total: Some(names.len()), method: "partition names filtered locally".into() }
        };
        self.check_limit(table, selection.partitions.len())?;
        Ok(selection)
    }

    /// The cached partitions among `names`, and the names not cached.
    fn cached_partitions(&self, tkey: &(String, String), names: &[String]) -> (Vec<Partition>, Vec<String>) {
        let cache = self.by_name.lock();
        match cache.get(tkey).filter(|(at, _)| at.elapsed() < self.options.cache_ttl) {
            Some((_, known)) => {
                let mut hit = Vec::new();
                let mut missing = Vec::new();
                for n in names {
                    match known.get(n) {
                        Some(p) => hit.push(p.clone()),
                        None => missing.push(n.clone()),
                    }
                }
                (hit, missing)
            }
            None => (Vec::new(), names.to_vec()),
        }
    }

    fn remember_partitions(&self, tkey: &(String, String), keys: &[&str], parts: &[Partition]) {
        if self.options.cache_ttl.is_zero() || parts.is_empty() {
            return;
        }
        let mut cache = self.by_name.lock();
        let entry = cache.entry(tkey.clone()).or_insert_with(|| (std::time::Instant::now(), HashMap::new()));
        if entry.0.elapsed() >= self.options.cache_ttl {
            *entry = (std::time::Instant::now(), HashMap::new());
        }
        for p in parts {
            let values: Vec<&str> = p.values.iter().map(String::as_str).collect();
            entry.1.insert(crate::paths::partition_name(keys, &values), p.clone());
        }
    }

    fn check_limit(&self, table: &Table, count: usize) -> Result<()> {
        match self.options.max_partitions {
            Some(max) if count > max => Err(Error::TooManyPartitions {
                catalog: self.name.clone(),
                table: table.qualified(),
                count,
                max,
                keys: table.partition_keys.iter().map(|k| k.name.clone()).collect::<Vec<_>>().join(", "),
            }),
            _ => Ok(()),
        }
    }

    /// The DuckDB query reading the rows of `table` that may match `pred`:
    /// partitions selected, their files listed, the reader built.
    pub fn plan_scan(&self, table: &Table, pred: Option<&Pred>, files: &dyn FileLister) -> Result<ScanPlan> {
        let format = reader::format_of(&self.name, table)?;
        reader::typed_columns(&self.name, table)?;
        let started = std::time::Instant::now();
        let selection = self.select(table, pred)?;
        let selecting = started.elapsed();
        let mut locations = Vec::with_capacity(selection.partitions.len());
        for p in &selection.partitions {
            let Some(location) = p.location.as_deref().or(table.storage.location.as_deref()) else {
                return Err(Error::Unsupported {
                    catalog: self.name.clone(),
                    table: table.qualified(),
                    reason: "a partition has no location".into(),
                });
            };
            locations.push(location.trim_end_matches('/').to_string());
        }
        // The whole table: its location may be listed once instead of per partition.
        let whole = selection.total == Some(selection.partitions.len());
        let started = std::time::Instant::now();
        self.listings.prune();
        let lister = CachedFiles { catalog: self, table, inner: files, asked: AtomicU64::new(0), cached: AtomicU64::new(0) };
        let listed = list_locations(table, &locations, whole, &lister)?;
        let listing = started.elapsed();
        let count = listed.iter().map(Vec::len).sum();
        let slices: Vec<Slice> = selection
            .partitions
            .iter()
            .zip(listed)
            .map(|(p, files)| Slice { values: p.values.iter().map(|v| reader::partition_value(v)).collect(), files })
            .collect();
        let sql = reader::reader_sql(&self.name, table, &format, &slices)?;
        Ok(ScanPlan {
            sql,
            format: format_name(&format),
            selection,
            files: count,
            selecting,
            listing,
            listings_cached: lister.cached.load(Ordering::Relaxed) as usize,
            listings: lister.asked.load(Ordering::Relaxed) as usize,
        })
    }
}

/// A lister that answers object-store locations from the catalog's listing
/// cache (see the module's notes on what a cached listing means).
struct CachedFiles<'a> {
    catalog: &'a Catalog,
    table: &'a Table,
    inner: &'a dyn FileLister,
    asked: AtomicU64,
    cached: AtomicU64,
}

impl FileLister for CachedFiles<'_> {
    fn list(&self, location: &str) -> Result<Vec<String>> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        let remote = matches!(crate::files::location(&self.catalog.name, location), Ok(crate::files::Location::S3(_)));
        if !remote {
            return self.inner.list(location);
        }
        let key = (self.table.namespace.to_ascii_lowercase(), self.table.name.to_ascii_lowercase(), location.to_string());
        let mut fetched = false;
        let files = self.catalog.listings.get_or_fetch(&key, || {
            fetched = true;
            self.inner.list(location).map(Arc::new)
        })?;
        if !fetched {
            self.cached.fetch_add(1, Ordering::Relaxed);
        }
        Ok(files.as_ref().clone())
    }
}

/// The files of each location, in order. When the whole table is read and
/// many partitions are under the table's own location, that location is
/// listed once and each file given to the deepest partition directory it is
/// in (files under hidden `_`/`.` directories skipped, as a per-partition
/// listing does). The other locations are listed a few at a time.
fn list_locations(table: &Table, locations: &[String], whole: bool, files: &dyn FileLister) -> Result<Vec<Vec<String>>> {
    let mut out: Vec<Option<Vec<String>>> = vec![None; locations.len()];
    if let Some(root) = table.storage.location.as_deref().map(|r| r.trim_end_matches('/').to_string()).filter(|_| whole) {
        let root_path = path_part(&root);
        let under: Vec<usize> = (0..locations.len()).filter(|&i| locations[i].starts_with(&format!("{root}/"))).collect();
        if under.len() >= LIST_ROOT_FROM {
            let mut by_dir: HashMap<String, usize> = HashMap::with_capacity(under.len());
            for &i in &under {
                by_dir.insert(path_part(&locations[i]), i);
                out[i] = Some(Vec::new());
            }
            for f in files.list(&root)? {
                let path = path_part(&f);
                let Some(rel) = path.strip_prefix(&root_path) else { continue };
                let mut dir = rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                while !dir.is_empty() {
                    if let Some(&i) = by_dir.get(&format!("{root_path}{dir}")) {
                        let inner = &rel[dir.len()..];
                        if !inner.split('/').any(crate::files::is_hidden) {
                            out[i].as_mut().expect("set above").push(f.clone());
                        }
                        break;
                    }
                    dir = dir.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                }
            }
        }
    }
    let rest: Vec<usize> = (0..locations.len()).filter(|&i| out[i].is_none()).collect();
    for chunk in rest.chunks(LIST_PARALLEL) {
        let got: Vec<Result<Vec<String>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk.iter().map(|&i| scope.spawn(move || files.list(&locations[i]))).collect();
            handles.into_iter().map(|h| h.join().expect("a listing thread panicked")).collect()
        });
        for (&i, r) in chunk.iter().zip(got) {
            out[i] = Some(r?);
        }
    }
    Ok(out.into_iter().map(Option::unwrap_or_default).collect())
}

/// A location or file without its scheme and bucket (`s3a://b/x/y` → `/x/y`,
/// `file:/x` → `/x`), so `s3a://` locations and the `s3://` files listed
/// for them compare equal.
fn path_part(text: &str) -> String {
    let p = match text.split_once("://") {
        Some((_, rest)) => rest.find('/').map(|i| &rest[i..]).unwrap_or(""),
        None => text.strip_prefix("file:").unwrap_or(text),
    };
    p.trim_end_matches('/').to_string()
}

fn format_name(f: &Format) -> &'static str {
    f.name()
}

#[cfg(test)]
mod tests {
    //! The framework's selection logic against an in-memory provider (the
    //! provider itself is tested against a real Hive Metastore in the interop suite).
    use super::*;
    use crate::model::{Column, Storage};
    use crate::predicate::Op;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Fake {
        partitions: Vec<Partition>,
        calls: Mutex<Vec<&'static str>>,
        fail_first: Mutex<u32>,
    }

    impl Fake {
        fn log(&self, op: &'static str) -> Result<()> {
            self.calls.lock().push(op);
            let mut f = self.fail_first.lock();
            if *f > 0 {
                *f -= 1;
                return Err(Error::Provider {
                    catalog: "c".into(),
                    provider: "fake",
                    operation: op,
                    target: String::new(),
                    retryable: true,
                    message: "connection reset".into(),
                });
            }
            Ok(())
        }
        fn names(&self) -> Vec<String> {
            self.partitions.iter().map(|p| crate::paths::partition_name(&["region", "h"], &[&p.values[0], &p.values[1]])).collect()
        }
    }

    impl Provider for Arc<Fake> {
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn endpoint(&self) -> String {
            "memory".into()
        }
        fn namespaces(&self) -> Result<Vec<String>> {
            self.log("namespaces")?;
            Ok(vec!["db".into()])
        }
        fn tables(&self, _: &str) -> Result<Vec<String>> {
            self.log("tables")?;
            Ok(vec!["t".into()])
        }
        fn table(&self, ns: &str, t: &str) -> Result<Table> {
            self.log("table")?;
            if t != "t" {
                return Err(Error::NotFound { catalog: "c".into(), what: format!("table {ns}.{t}") });
            }
            Ok(table())
        }
        fn partitions(&self, _: &Table) -> Result<Vec<Partition>> {
            self.log("partitions")?;
            Ok(self.partitions.clone())
        }
        fn partitions_by_filter(&self, _: &Table, filter: &str) -> Result<Option<Vec<Partition>>> {
            self.log("by_filter")?;
            // Only `h = n` is understood here.
            let n: Option<&str> = filter.trim_matches(|c| c == '(' || c == ')').strip_prefix("h = ");
            Ok(n.map(|n| self.partitions.iter().filter(|p| p.values[1] == n).cloned().collect()))
        }
        fn partition_names(&self, _: &Table) -> Result<Option<Vec<String>>> {
            self.log("names")?;
            Ok(Some(self.names()))
        }
        fn partition_names_with_prefix(&self, _: &Table, values: &[String]) -> Result<Option<Vec<String>>> {
            self.log("names_ps")?;
            Ok(Some(self.names().into_iter().filter(|n| n.starts_with(&format!("region={}/", values[0]))).collect()))
        }
        fn partitions_by_names(&self, _: &Table, names: &[String]) -> Result<Vec<Partition>> {
            self.log("by_names")?;
            let all = self.names();
            Ok(self.partitions.iter().zip(all).filter(|(_, n)| names.contains(n)).map(|(p, _)| p.clone()).collect())
        }
    }

    fn table() -> Table {
        let col = |n: &str, t: &str| Column { name: n.into(), catalog_type: t.into(), comment: None };
        Table {
            namespace: "db".into(),
            name: "t".into(),
            columns: vec![col("v", "int")],
            partition_keys: vec![col("region", "string"), col("h", "int")],
            storage: Storage { location: Some("/x".into()), ..Default::default() },
            params: Default::default(),
            table_type: "EXTERNAL_TABLE".into(),
        }
    }

    fn catalog(max: Option<usize>) -> (Catalog, Arc<Fake>) {
        let mut partitions = Vec::new();
        for r in ["eu", "us", "ap"] {
            for h in 0..10 {
                partitions.push(Partition { values: vec![r.into(), h.to_string()], location: Some(format!("/x/{r}/{h}")) });
            }
        }
        let fake = Arc::new(Fake { partitions, ..Default::default() });
        let options = CatalogOptions { max_partitions: max, ..Default::default() };
        (Catalog::new("c", Box::new(fake.clone()), options), fake)
    }

    fn eq(key: usize, v: &str) -> Pred {
        Pred::Cmp { key, op: Op::Eq, value: v.into() }
    }

    #[test]
    fn selection_uses_the_cheapest_listing_and_never_every_partition() {
        let (c, fake) = catalog(None);
        let t = table();
        // Equality on the leading string key: names by prefix, then by name.
        let s = c.select(&t, Some(&Pred::And(vec![eq(0, "us"), eq(1, "3")]))).unwrap();
        assert_eq!(s.partitions.len(), 1);
        assert_eq!(s.partitions[0].values, vec!["us", "3"]);
        assert_eq!(*fake.calls.lock(), vec!["names_ps", "by_names"]);
        fake.calls.lock().clear();
        // Only the integer key: the metastore's filter.
        let s = c.select(&t, Some(&eq(1, "7"))).unwrap();
        assert_eq!(s.partitions.len(), 3);
        assert!(s.method.starts_with("metastore filter"), "{}", s.method);
        assert_eq!(*fake.calls.lock(), vec!["by_filter"]);
        fake.calls.lock().clear();
        // A range the fake metastore refuses: every name, filtered here, then cached.
        let range = Pred::Cmp { key: 1, op: Op::Ge, value: "8".into() };
        let s = c.select(&t, Some(&range)).unwrap();
        assert_eq!((s.partitions.len(), s.total), (6, Some(30)));
        assert_eq!(*fake.calls.lock(), vec!["by_filter", "names", "by_names"]);
        fake.calls.lock().clear();
        let s = c.select(&t, Some(&eq(0, "eu"))).unwrap();
        assert_eq!(s.partitions.len(), 10);
        assert!(s.method.starts_with("cached partition names"), "{}", s.method);
        assert_eq!(*fake.calls.lock(), vec!["by_names"]);
        fake.calls.lock().clear();
        // Partitions already fetched by name are not fetched again.
        let s = c.select(&t, Some(&Pred::And(vec![eq(0, "eu"), eq(1, "2")]))).unwrap();
        assert_eq!(s.partitions.len(), 1);
        assert!(fake.calls.lock().is_empty(), "{:?}", fake.calls.lock());
        assert!(!fake.calls.lock().contains(&"partitions"));
    }

    #[test]
    fn limits_retries_and_not_found() {
        let (c, fake) = catalog(Some(5));
        let t = table();
        let e = c.select(&t, None).unwrap_err().to_string();
        assert!(e.contains("30 partitions") && e.contains("MAX_PARTITIONS 5") && e.contains("region, h"), "{e}");
        let e = c.select(&t, Some(&eq(0, "eu"))).unwrap_err().to_string();
        assert!(e.contains("10 partitions"), "{e}");
        assert!(c.select(&t, Some(&Pred::And(vec![eq(0, "eu"), eq(1, "1")]))).is_ok());
        // Transient failures are retried; not-found is not.
        *fake.fail_first.lock() = 2;
        fake.calls.lock().clear();
        assert!(c.namespaces().is_ok());
        assert_eq!(fake.calls.lock().len(), 3);
        fake.calls.lock().clear();
        assert!(matches!(c.table("db", "nope"), Err(Error::NotFound { .. })));
        assert_eq!(fake.calls.lock().len(), 1);
        // Cached, then dropped by REFRESH.
        c.table("db", "t").unwrap();
        c.table("db", "t").unwrap();
        assert_eq!(fake.calls.lock().iter().filter(|c| **c == "table").count(), 2);
        c.refresh(Some("db"), Some("t"));
        c.table("db", "t").unwrap();
        assert_eq!(fake.calls.lock().iter().filter(|c| **c == "table").count(), 3);
    }

    /// A lister over a fixed set of files that records what it was asked.
    struct Files {
        all: Vec<String>,
        asked: Mutex<Vec<String>>,
    }

    impl FileLister for Files {
        fn list(&self, location: &str) -> Result<Vec<String>> {
            self.asked.lock().push(location.to_string());
            let dir = path_part(location);
            Ok(self.all.iter().filter(|f| path_part(f).starts_with(&format!("{dir}/"))).cloned().collect())
        }
    }

    #[test]
    fn object_store_listings_are_cached_until_the_ttl_or_a_refresh() {
        let part = |v: &str, loc: &str| Partition { values: vec![v.into(), "1".into()], location: Some(loc.into()) };
        let partitions = vec![part("eu", "s3a://bk/t/region=eu/h=1"), part("us", "/x/us/1")];
        let fake = Arc::new(Fake { partitions, ..Default::default() });
        let c = Catalog::new("c", Box::new(fake.clone()), CatalogOptions::default());
        let mut t = table();
        t.storage.location = Some("s3a://bk/t".into());
        t.storage.serde = Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe".into());
        let objects = vec!["s3://bk/t/region=eu/h=1/a.parquet".to_string(), "/x/us/1/b.parquet".to_string()];
        let files = Files { all: objects.clone(), asked: Mutex::new(vec![]) };
        let plan = c.plan_scan(&t, None, &files).unwrap();
        assert_eq!((plan.files, plan.listings, plan.listings_cached), (2, 2, 0));
        // An object added within the TTL is not seen; local directories are listed again.
        let mut more = objects;
        more.push("s3://bk/t/region=eu/h=1/c.parquet".into());
        let files = Files { all: more, asked: Mutex::new(vec![]) };
        let plan = c.plan_scan(&t, None, &files).unwrap();
        assert_eq!((plan.files, plan.listings, plan.listings_cached), (2, 2, 1));
        assert_eq!(*files.asked.lock(), vec!["/x/us/1".to_string()]);
        // REFRESH CATALOG of another table keeps it; of this table drops it.
        c.refresh(Some("db"), Some("other"));
        assert_eq!(c.plan_scan(&t, None, &files).unwrap().listings_cached, 1);
        c.refresh(Some("db"), Some("t"));
        let plan = c.plan_scan(&t, None, &files).unwrap();
        assert_eq!((plan.files, plan.listings_cached), (3, 0));
        // CACHE_TTL 0: every query lists.
        let c = Catalog::new("c", Box::new(fake), CatalogOptions { cache_ttl: Duration::ZERO, ..Default::default() });
        for _ in 0..2 {
            assert_eq!(c.plan_scan(&t, None, &files).unwrap().listings_cached, 0);
        }
        assert!(plan.sql.contains("c.parquet"), "{}", plan.sql);
    }

    #[test]
    fn a_whole_table_is_listed_once_and_files_go_to_their_partitions() {
        let mut t = table();
        t.storage.location = Some("s3a://bk/t".into());
        let locations: Vec<String> = (0..5).map(|i| format!("s3a://bk/t/p={i}")).chain(["s3a://bk/elsewhere/p9".to_string()]).collect();
        let mut all: Vec<String> = (0..5).map(|i| format!("s3://bk/t/p={i}/f.parquet")).collect();
        all.push("s3://bk/t/p=2/sub/g.parquet".into());
        all.push("s3://bk/t/p=3/_temporary/x.parquet".into());
        all.push("s3://bk/t/p=77/not-selected.parquet".into());
        all.push("s3://bk/elsewhere/p9/h.parquet".into());
        let files = Files { all, asked: Mutex::new(vec![]) };
        let got = list_locations(&t, &locations, true, &files).unwrap();
        assert_eq!(files.asked.lock().clone(), vec!["s3a://bk/t".to_string(), "s3a://bk/elsewhere/p9".to_string()]);
        assert_eq!(got[2], vec!["s3://bk/t/p=2/f.parquet", "s3://bk/t/p=2/sub/g.parquet"]);
        assert_eq!(got[3], vec!["s3://bk/t/p=3/f.parquet"], "hidden directories are skipped");
        assert_eq!(got[5], vec!["s3://bk/elsewhere/p9/h.parquet"]);
        assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 7);
        // A selection (not the whole table) lists each partition, never the root.
        let files = Files { all: files.all, asked: Mutex::new(vec![]) };
        let got = list_locations(&t, &locations, false, &files).unwrap();
        assert_eq!(files.asked.lock().len(), 6);
        assert!(!files.asked.lock().contains(&"s3a://bk/t".to_string()));
        assert_eq!(got[3].len(), 2, "a per-partition listing is the lister's business");
    }
}
