//! Pond's query result cache: whole Arrow results of plain reads, kept in a
//! byte-bounded LRU, and served again only while nothing they depend on has
//! changed, so a cached answer is never stale.
//!
//! This crate owns the mechanics and knows nothing of sessions or DuckDB:
//! - [`Cache`]: entries by [`Key`], least recently used evicted past the byte
//!   bound, hit/miss/eviction counters ([`Stats`]).
//! - [`Key`]: everything a result depends on — the statement text, its
//!   parameters, the caller (user, superuser or not, and the grants epoch), the
//!   current database and schema, the session settings, and the write
//!   generation of every database the statement reads.
//! - [`Versions`]: the write generations. The engine bumps one after every write
//!   it sees (DML and DDL in a session, time-series ingest, flushes and
//!   compactions, continuous queries), after the write is visible; a key
//!   takes the generations before the statement runs, so a result can be newer
//!   than its key but never older.
//! - [`analyze`]: which parts of a statement (DuckDB's `json_serialize_sql`
//!   tree) make it uncacheable — volatile functions are judged by the engine
//!   from DuckDB's own stability data; this finds table references, function
//!   names, table functions, special keywords (`current_timestamp`, …),
//!   `SAMPLE`, time travel.
//!
//! Start with [`Cache::get`], [`Cache::insert`] and [`analyze`].

mod analyze;

pub use analyze::{analyze, Analysis, TableRef};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parking_lot::Mutex;

/// Everything a cached result depends on, in one canonical string (each part
/// length-prefixed, so no two different keys can collide).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(String);

/// The parts of a [`Key`].
#[derive(Debug, Clone)]
pub struct KeyParts<'a> {
    pub statement: &'a str,
    /// The bound parameters, rendered (empty without parameters).
    pub params: &'a str,
    /// Who asks: the user, whether superuser, and the grants epoch.
    pub principal: &'a str,
    pub database: &'a str,
    pub schema: &'a str,
    /// SET statements the session ran, in order.
    pub settings: &'a [String],
    /// Generations that version the catalog (database list, DDL).
    pub catalog: (u64, u64),
    /// Write generations of the databases the statement reads (from [`Versions::snapshot`]).
    pub versions: &'a [(String, u64)],
}

impl Key {
    pub fn new(p: &KeyParts<'_>) -> Self {
        let mut s = String::with_capacity(p.statement.len() + 128);
        let mut part = |v: &str| {
            s.push_str(&v.len().to_string());
            s.push(':');
            s.push_str(v);
        };
        part(p.statement);
        part(p.params);
        part(p.principal);
        part(p.database);
        part(p.schema);
        part(&p.settings.len().to_string());
        for set in p.settings {
            part(set);
        }
        part(&format!("{}/{}", p.catalog.0, p.catalog.1));
        for (db, g) in p.versions {
            part(db);
            part(&g.to_string());
        }
        Key(s)
    }
}

/// A whole result.
#[derive(Debug)]
pub struct Entry {
    pub schema: SchemaRef,
    /// DuckDB's type name of each column (protocols use it besides Arrow's types).
    pub duckdb_types: Arc<Vec<String>>,
    pub batches: Vec<RecordBatch>,
    bytes: usize,
}

impl Entry {
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Collects a result as it streams; gives up (and caches nothing) past `limit` bytes.
#[derive(Debug)]
pub struct Collector {
    schema: Option<(SchemaRef, Arc<Vec<String>>)>,
    batches: Vec<RecordBatch>,
    bytes: usize,
    limit: usize,
    over: bool,
}

impl Collector {
    pub fn new(limit: usize) -> Self {
        Self { schema: None, batches: Vec::new(), bytes: 0, limit, over: false }
    }

    pub fn schema(&mut self, schema: SchemaRef, duckdb_types: Arc<Vec<String>>) {
        self.schema = Some((schema, duckdb_types));
    }

    /// Keeps a batch (a cheap clone: Arrow buffers are shared).
    pub fn batch(&mut self, b: &RecordBatch) {
        if self.over {
            return;
        }
        self.bytes += b.get_array_memory_size();
        if self.bytes > self.limit {
            self.over = true;
            self.batches.clear();
            return;
        }
        self.batches.push(b.clone());
    }

    /// The finished entry, unless the result was too large or had no schema.
    pub fn finish(self) -> Option<Entry> {
        if self.over {
            return None;
        }
        let (schema, duckdb_types) = self.schema?;
        // Bookkeeping per entry besides the batches (key, schema): counted so a
        // flood of tiny results still respects the bound.
        let bytes = self.bytes + 512;
        Some(Entry { schema, duckdb_types, batches: self.batches, bytes })
    }
}

/// Counters and sizes, as `/api/v1/cache` shows them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub enabled: bool,
    pub max_bytes: usize,
    pub bytes: usize,
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
    /// Statements that could not be cached (volatile functions, files, temporary
    /// objects, transactions, statements that write, …).
    pub bypassed: u64,
    pub inserts: u64,
    pub evictions: u64,
    /// Results not kept because they were larger than an entry may be.
    pub too_large: u64,
}

struct Lru {
    map: hashlink::LinkedHashMap<Key, Arc<Entry>>,
    bytes: usize,
}

/// The result cache. See the crate documentation.
pub struct Cache {
    max_bytes: usize,
    lru: Mutex<Lru>,
    hits: AtomicU64,
    misses: AtomicU64,
    bypassed: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
    too_large: AtomicU64,
}

impl Cache {
    /// A cache holding at most `max_bytes` of results.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            lru: Mutex::new(Lru { map: hashlink::LinkedHashMap::new(), bytes: 0 }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
        }
    }

    /// The largest result kept: an eighth of the cache, so one result never
    /// pushes out everything else.
    pub fn entry_limit(&self) -> usize {
        self.max_bytes / 8
    }

    /// The entry for `key` (counted as a hit, and made most recently used), or
    /// `None` (counted as a miss).
    pub fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        let mut lru = self.lru.lock();
        match lru.map.to_back(key) {
            Some(e) => {
                let e = e.clone();
                drop(lru);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(e)
            }
            None => {
                drop(lru);
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Counts a statement that was not looked up because it cannot be cached.
    pub fn bypass(&self) {
        self.bypassed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a miss found without a lookup (the statement's first run).
    pub fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a result that was too large to keep.
    pub fn too_large(&self) {
        self.too_large.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores a result; returns how many entries were evicted to make room.
    pub fn insert(&self, key: Key, entry: Entry) -> u64 {
        if entry.bytes > self.entry_limit() {
            self.too_large.fetch_add(1, Ordering::Relaxed);
            return 0;
        }
        let mut lru = self.lru.lock();
        let add = entry.bytes;
        if let Some(old) = lru.map.insert(key, Arc::new(entry)) {
            lru.bytes -= old.bytes;
        }
        lru.bytes += add;
        let mut evicted = 0;
        while lru.bytes > self.max_bytes {
            let Some((_, e)) = lru.map.pop_front() else { break };
            lru.bytes -= e.bytes;
            evicted += 1;
        }
        drop(lru);
        self.inserts.fetch_add(1, Ordering::Relaxed);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
        evicted
    }

    /// Drops every entry; returns how many there were.
    pub fn clear(&self) -> usize {
        let mut lru = self.lru.lock();
        let n = lru.map.len();
        lru.map.clear();
        lru.bytes = 0;
        n
    }

    pub fn stats(&self) -> Stats {
        let lru = self.lru.lock();
        Stats {
            enabled: true,
            max_bytes: self.max_bytes,
            bytes: lru.bytes,
            entries: lru.map.len(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bypassed: self.bypassed.load(Ordering::Relaxed),
            inserts: self.inserts.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            too_large: self.too_large.load(Ordering::Relaxed),
        }
    }
}

/// Write generations: one per database (by lower-case name) and one for
/// writes whose databases are not known, which every key includes.
#[derive(Default)]
pub struct Versions {
    all: AtomicU64,
    databases: Mutex<HashMap<String, u64>>,
}

impl Versions {
    /// A write to `database` became visible.
    pub fn bump(&self, database: &str) {
        *self.databases.lock().entry(database.to_ascii_lowercase()).or_insert(0) += 1;
    }

    /// A write to unknown databases became visible: every key changes.
    pub fn bump_all(&self) {
        self.all.fetch_add(1, Ordering::SeqCst);
    }

    /// The generations a key over `databases` includes (sorted, deduplicated),
    /// led by the all-databases generation.
    pub fn snapshot(&self, databases: &[String]) -> Vec<(String, u64)> {
        let mut dbs: Vec<String> = databases.iter().map(|d| d.to_ascii_lowercase()).collect();
        dbs.sort();
        dbs.dedup();
        let mut out = Vec::with_capacity(dbs.len() + 1);
        out.push((String::new(), self.all.load(Ordering::SeqCst)));
        let map = self.databases.lock();
        for d in dbs {
            let g = map.get(&d).copied().unwrap_or(0);
            out.push((d, g));
        }
        out
    }
}

/// Parses a byte size such as `256MB`, `1GiB`, `64m`, `1048576` (0 turns the cache off).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a size (e.g. 256MB, 1GB, 0 to turn off)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("'{s}': unknown size unit '{other}' (use B, KB, MB, GB, KiB, MiB, GiB)")),
    };
    Ok((n * mult) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int64Array;
    use arrow_schema::{DataType, Field, Schema};

    fn entry(rows: usize) -> Entry {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..rows as i64))]).expect("batch");
        let mut c = Collector::new(usize::MAX);
        c.schema(schema, Arc::new(vec!["BIGINT".into()]));
        c.batch(&b);
        c.finish().expect("entry")
    }

    fn key(text: &str, versions: &[(String, u64)]) -> Key {
        Key::new(&KeyParts {
            statement: text,
            params: "",
            principal: "u",
            database: "default",
            schema: "main",
            settings: &[],
            catalog: (1, 0),
            versions,
        })
    }

    #[test]
    fn keys_differ_in_every_part() {
        let v = vec![("db".to_string(), 1)];
        assert_eq!(key("select 1", &v), key("select 1", &v));
        assert_ne!(key("select 1", &v), key("select 2", &v));
        assert_ne!(key("select 1", &v), key("select 1", &[("db".to_string(), 2)]));
        // Length prefixes: moving a boundary changes the key.
        let a = Key::new(&KeyParts {
            statement: "ab",
            params: "c",
            principal: "u",
            database: "d",
            schema: "s",
            settings: &[],
            catalog: (0, 0),
            versions: &[],
        });
        let b = Key::new(&KeyParts {
            statement: "a",
            params: "bc",
            principal: "u",
            database: "d",
            schema: "s",
            settings: &[],
            catalog: (0, 0),
            versions: &[],
        });
        assert_ne!(a, b);
    }

    #[test]
    fn lru_evicts_least_recently_used_past_the_bound() {
        let size = entry(1000).bytes();
        let cache = Cache::new(size * 8 * 3 / 2 + 8 * size);
        // entry limit is max/8, which is > size
        let keys: Vec<Key> = (0..40).map(|i| key(&format!("q{i}"), &[])).collect();
        for k in &keys[..3] {
            cache.insert(k.clone(), entry(1000));
        }
        assert!(cache.get(&keys[0]).is_some());
        let cap = cache.stats().max_bytes / size;
        for k in &keys[3..3 + cap] {
            cache.insert(k.clone(), entry(1000));
        }
        let s = cache.stats();
        assert!(s.bytes <= s.max_bytes, "{s:?}");
        assert!(s.evictions > 0);
        // keys[1] was used least recently: gone before keys[0].
        assert!(cache.get(&keys[1]).is_none());
        cache.clear();
        assert_eq!(cache.stats().entries, 0);
        assert_eq!(cache.stats().bytes, 0);
    }

    #[test]
    fn results_over_the_entry_limit_are_not_kept() {
        let cache = Cache::new(entry(10).bytes() * 8);
        cache.insert(key("big", &[]), entry(100_000));
        assert_eq!(cache.stats().entries, 0);
        assert_eq!(cache.stats().too_large, 1);
    }

    #[test]
    fn versions_change_only_for_written_databases() {
        let v = Versions::default();
        let dbs = vec!["A".to_string()];
        let before = v.snapshot(&dbs);
        v.bump("b");
        assert_eq!(before, v.snapshot(&dbs));
        v.bump("a");
        assert_ne!(before, v.snapshot(&dbs));
        let mid = v.snapshot(&dbs);
        v.bump_all();
        assert_ne!(mid, v.snapshot(&dbs));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("256MB"), Ok(256_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64 mib"), Ok(64 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }
}
