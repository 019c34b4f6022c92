//! The hot part of every measurement: acknowledged rows not yet in the lake,
//! kept in memory as the Arrow batches the parsers built, and the DuckDB
//! table function `pond_hot(database_id, measurement)` that measurement
//! views read them through.
//!
//! Why memory and not a DuckDB table: appending to a DuckDB table and
//! committing it (which writes DuckDB's own log and later a checkpoint) was
//! the ceiling of ingest — 0.6–0.7M lines/s where parsing, the log and HTTP
//! together allow 1.4M, and 1.1M MessagePack records/s where they allow 6M
//! (`bench/ingest.sh`, storage switched off, same machine). Here an append is
//! a pointer push; durability comes from Pond's write-ahead log, which keeps
//! every record until the lake holds its rows (replayed into memory at
//! start).
//!
//! Each batch carries its generation (the log sequence of its group commit);
//! the view shows hot rows above the lake's flushed generation, exactly as
//! before, so a flush (copy into the lake + record the generation, one lake
//! transaction) never makes a row visible twice or not at all. Flushed
//! batches stay in memory for a grace period (`RETIRE_GRACE`): a query that
//! read the lake before the flush committed still finds them here, and
//! they also stay while a transaction that began before their flush is open
//! (`Engine::oldest_open_transaction`): its lake snapshot predates the flush,
//! so it reads those rows from here, each exactly once.
//!
//! A scan takes its snapshot of the batch list when it starts (DuckDB calls
//! `init` for every execution), so a cached prepared statement sees new rows;
//! the column list is fixed at bind time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use duckdb::core::{DataChunkHandle, LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::{BindInfo, InitInfo, TableFunctionInfo, VTab};
use parking_lot::{Mutex, RwLock};
use pond_engine::lake::GEN_COLUMN;

use crate::batch::TIME_COLUMN;

pub use pond_engine::lake::HOT_FUNCTION;

/// Rows of one request (or group) of one measurement, in the table's column
/// order at the time (a prefix of the current columns: new ones come last).
#[derive(Clone)]
struct HotBatch {
    gen: u64,
    batch: RecordBatch,
}

struct HotState {
    /// (name, DuckDB type), `time` first; not the generation column.
    columns: Vec<(String, String)>,
    batches: Vec<HotBatch>,
    /// Highest generation the lake holds (as far as this process flushed).
    flushed: u64,
    /// Flushes not yet retired: generation and when it committed. Batches at
    /// or below a generation leave memory once its flush is older than the
    /// grace period.
    flushes: std::collections::VecDeque<(u64, Instant)>,
    /// When the oldest unflushed row arrived.
    unflushed_since: Option<Instant>,
}

/// One measurement's hot rows.
pub struct HotTable {
    /// The measurement's name as first written (views and the lake use it).
    pub name: String,
    state: RwLock<HotState>,
}

impl HotTable {
    /// Current columns (name, DuckDB type), `time` first.
    pub fn columns(&self) -> Vec<(String, String)> {
        self.state.read().columns.clone()
    }

    /// Adds a column (type checks are the writer's).
    pub fn add_column(&self, name: &str, duck_type: &str) {
        self.state.write().columns.push((name.to_string(), duck_type.to_string()));
    }

    /// The batches with a generation in `(after, upto]`, oldest first.
    pub fn batches_between(&self, after: u64, upto: u64) -> Vec<RecordBatch> {
        self.state.read().batches.iter().filter(|b| b.gen > after && b.gen <= upto).map(|b| b.batch.clone()).collect()
    }

    /// Rows above the flushed generation, and since when the oldest waits.
    pub fn unflushed(&self) -> (u64, Option<Instant>) {
        let s = self.state.read();
        let rows = s.batches.iter().filter(|b| b.gen > s.flushed).map(|b| b.batch.num_rows() as u64).sum();
        (rows, s.unflushed_since)
    }
}

/// Every measurement's hot rows, by (database file id, lower-case name).
#[derive(Default)]
pub struct HotStore {
    tables: RwLock<HashMap<(String, String), Arc<HotTable>>>,
    /// Rows held (flushed or not).
    rows: AtomicU64,
    /// Rows not yet in the lake: the memory bound the writer checks (rows
    /// already flushed but kept for readers are not the writer's concern).
    unflushed: AtomicU64,
}

impl HotStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn table(&self, db_id: &str, name: &str) -> Option<Arc<HotTable>> {
        self.tables.read().get(&(db_id.to_string(), name.to_ascii_lowercase())).cloned()
    }

    /// The table of a measurement, made with `columns` if new.
    pub fn get_or_create(&self, db_id: &str, name: &str, columns: Vec<(String, String)>, flushed: u64) -> Arc<HotTable> {
        let key = (db_id.to_string(), name.to_ascii_lowercase());
        self.tables
            .write()
            .entry(key)
            .or_insert_with(|| {
                Arc::new(HotTable {
                    name: name.to_string(),
                    state: RwLock::new(HotState {
                        columns,
                        batches: Vec::new(),
                        flushed,
                        flushes: Default::default(),
                        unflushed_since: None,
                    }),
                })
            })
            .clone()
    }

    /// Appends rows of generation `gen` (generations only grow).
    pub fn push(&self, table: &HotTable, gen: u64, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        self.rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        let mut s = table.state.write();
        if gen > s.flushed {
            self.unflushed.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        }
        if s.unflushed_since.is_none() {
            s.unflushed_since = Some(Instant::now());
        }
        s.batches.push(HotBatch { gen, batch });
    }

    /// Rows held in memory.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Rows held in memory that the lake does not have yet.
    pub fn unflushed_rows(&self) -> u64 {
        self.unflushed.load(Ordering::Relaxed)
    }

    /// Tables of one database.
    pub fn tables_of(&self, db_id: &str) -> Vec<Arc<HotTable>> {
        let mut v: Vec<Arc<HotTable>> = self.tables.read().iter().filter(|((d, _), _)| d == db_id).map(|(_, t)| t.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Database ids that have tables.
    pub fn database_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tables.read().keys().map(|(d, _)| d.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Forgets a database (dropped, or its tables are reloaded from the lake).
    pub fn forget_database(&self, db_id: &str) {
        let mut tables = self.tables.write();
        tables.retain(|(d, _), t| {
            if d == db_id {
                let s = t.state.read();
                let n: u64 = s.batches.iter().map(|b| b.batch.num_rows() as u64).sum();
                let u: u64 = s.batches.iter().filter(|b| b.gen > s.flushed).map(|b| b.batch.num_rows() as u64).sum();
                self.rows.fetch_sub(n, Ordering::Relaxed);
                self.unflushed.fetch_sub(u, Ordering::Relaxed);
                false
            } else {
                true
            }
        });
    }

    /// Records that the lake now holds every row of `db_id` up to `gen`; the
    /// batches go at the next [`HotStore::retire`].
    pub fn mark_flushed(&self, db_id: &str, gen: u64) {
        for t in self.tables_of(db_id) {
            let mut s = t.state.write();
            let newly: u64 = s.batches.iter().filter(|b| b.gen > s.flushed && b.gen <= gen).map(|b| b.batch.num_rows() as u64).sum();
            self.unflushed.fetch_sub(newly, Ordering::Relaxed);
            s.flushed = s.flushed.max(gen);
            s.flushes.push_back((gen, Instant::now()));
            s.unflushed_since = if s.batches.iter().any(|b| b.gen > s.flushed) { Some(Instant::now()) } else { None };
        }
    }

    /// Drops batches whose flush is at least `grace` old (a query that read
    /// the lake just before that flush committed still finds them meanwhile)
    /// and older than `oldest_transaction` (a transaction open since before
    /// the flush reads the lake as it was, so it needs them here).
    pub fn retire(&self, grace: std::time::Duration, oldest_transaction: Option<Instant>) {
        for t in self.tables.read().values() {
            let mut s = t.state.write();
            let mut limit = None;
            while let Some((g, at)) = s.flushes.front().copied() {
                if at.elapsed() < grace || oldest_transaction.is_some_and(|t| t <= at) {
                    break;
                }
                limit = Some(g);
                s.flushes.pop_front();
            }
            let Some(limit) = limit else { continue };
            let before: u64 = s.batches.iter().map(|b| b.batch.num_rows() as u64).sum();
            s.batches.retain(|b| b.gen > limit);
            let after: u64 = s.batches.iter().map(|b| b.batch.num_rows() as u64).sum();
            self.rows.fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}

fn duck_logical(ty: &str) -> LogicalTypeId {
    match ty {
        "TIMESTAMP_NS" => LogicalTypeId::TimestampNs,
        "DOUBLE" => LogicalTypeId::Double,
        "BIGINT" => LogicalTypeId::Bigint,
        "UBIGINT" => LogicalTypeId::UBigint,
        "BOOLEAN" => LogicalTypeId::Boolean,
        "INTEGER" => LogicalTypeId::Integer,
        _ => LogicalTypeId::Varchar,
    }
}

pub use pond_lake::files::arrow_type;

/// The DuckDB table function over a [`HotStore`] (registered once per
/// DuckDB instance, with the store as its extra info).
pub struct HotScan;

pub struct HotBind {
    table: Option<Arc<HotTable>>,
    /// Output columns (name, Arrow type); the generation column last.
    columns: Vec<(String, DataType)>,
}

pub struct HotInit {
    /// Output column → index into `HotBind::columns` (`None`: a column DuckDB
    /// asked for that is not a real one, such as a row id for `count(*)`).
    projection: Vec<Option<usize>>,
    batches: Vec<HotBatch>,
    cursor: Mutex<(usize, usize)>,
}

const VECTOR: usize = 2048;

/// How long flushed batches stay in memory after the flush committed.
pub const RETIRE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl VTab for HotScan {
    type BindData = HotBind;
    type InitData = HotInit;

    fn bind(bind: &BindInfo) -> Result<Self::BindData, Box<dyn std::error::Error>> {
        let db_id = bind.get_parameter(0).to_string();
        let name = bind.get_parameter(1).to_string();
        let store = bind.get_extra_info::<Arc<HotStore>>();
        if store.is_null() {
            return Err("pond_hot: no store".into());
        }
        // SAFETY: the extra info is the Arc<HotStore> given at registration;
        // DuckDB keeps it alive as long as the function exists.
        let store = unsafe { &*store };
        let table = store.table(&db_id, &name);
        let mut cols: Vec<(String, String)> = match &table {
            Some(t) => t.columns(),
            None => vec![(TIME_COLUMN.to_string(), "TIMESTAMP_NS".to_string())],
        };
        cols.push((GEN_COLUMN.to_string(), "UBIGINT".to_string()));
        for (n, ty) in &cols {
            bind.add_result_column(n, LogicalTypeHandle::from(duck_logical(ty)));
        }
        if let Some(t) = &table {
            bind.set_cardinality(t.state.read().batches.iter().map(|b| b.batch.num_rows() as u64).sum(), false);
        }
        Ok(HotBind { table, columns: cols.into_iter().map(|(n, ty)| (n, arrow_type(&ty))).collect() })
    }

    fn init(init: &InitInfo) -> Result<Self::InitData, Box<dyn std::error::Error>> {
        let bind = init.get_bind_data::<HotBind>();
        // SAFETY: DuckDB passes the bind data this function's bind returned.
        let bind = unsafe { &*bind };
        let projection =
            init.get_column_indices().into_iter().map(|i| usize::try_from(i).ok().filter(|i| *i < bind.columns.len())).collect();
        let batches = bind.table.as_ref().map(|t| t.state.read().batches.clone()).unwrap_or_default();
        // Slices are handed out under a lock, so several DuckDB threads can
        // scan at once; with one, the query's own thread would only spin
        // waiting for the worker that runs the pipeline (seen in perf as a
        // third of a flush's CPU).
        let rows: usize = batches.iter().map(|b| b.batch.num_rows()).sum();
        init.set_max_threads(rows.div_ceil(VECTOR * 8).clamp(1, 8) as u64);
        Ok(HotInit { projection, batches, cursor: Mutex::new((0, 0)) })
    }

    fn func(func: &TableFunctionInfo<Self>, output: &mut DataChunkHandle) -> Result<(), Box<dyn std::error::Error>> {
        let init = func.get_init_data();
        let bind = func.get_bind_data();
        let (bi, offset, len) = {
            let mut cur = init.cursor.lock();
            loop {
                let Some(b) = init.batches.get(cur.0) else {
                    output.set_len(0);
                    return Ok(());
                };
                let n = b.batch.num_rows();
                if cur.1 >= n {
                    *cur = (cur.0 + 1, 0);
                    continue;
                }
                let len = (n - cur.1).min(VECTOR);
                let r = (cur.0, cur.1, len);
                cur.1 += len;
                break r;
            }
        };
        let hb = &init.batches[bi];
        let schema = hb.batch.schema();
        let gen_index = bind.columns.len() - 1;
        let mut fields = Vec::with_capacity(init.projection.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(init.projection.len());
        for (out_i, p) in init.projection.iter().enumerate() {
            let (name, dt, array): (String, DataType, ArrayRef) = match p {
                Some(ci) if *ci == gen_index => {
                    (GEN_COLUMN.to_string(), DataType::UInt64, Arc::new(UInt64Array::from_value(hb.gen, len)) as ArrayRef)
                }
                Some(ci) => {
                    let (cname, cty) = &bind.columns[*ci];
                    // Batches are in column order; a batch from before a column existed lacks it.
                    match schema.index_of(cname).ok().map(|i| hb.batch.column(i).slice(offset, len)) {
                        Some(a) if a.data_type() == cty => (cname.clone(), cty.clone(), a),
                        Some(a) => (cname.clone(), cty.clone(), arrow::compute::cast(&a, cty)?),
                        None => (cname.clone(), cty.clone(), arrow_array::new_null_array(cty, len)),
                    }
                }
                // Not a real column (a row id): zeros of DuckDB's BIGINT.
                None => (format!("_{out_i}"), DataType::Int64, Arc::new(arrow_array::Int64Array::from_value(0, len)) as ArrayRef),
            };
            fields.push(Field::new(name, dt, true));
            arrays.push(array);
        }
        let rb = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(len)),
        )?;
        duckdb::vtab::record_batch_to_duckdb_data_chunk(&rb, output)?;
        output.set_len(len);
        Ok(())
    }

    fn supports_pushdown() -> bool {
        true
    }

    fn parameters() -> Option<Vec<LogicalTypeHandle>> {
        Some(vec![LogicalTypeHandle::from(LogicalTypeId::Varchar), LogicalTypeHandle::from(LogicalTypeId::Varchar)])
    }
}

/// Registers `pond_hot` in the DuckDB instance of `conn` (functions are
/// instance-wide), reading `store`.
pub fn register(conn: &duckdb::Connection, store: Arc<HotStore>) -> duckdb::Result<()> {
    conn.register_table_function_with_extra_info::<HotScan, Arc<HotStore>>(HOT_FUNCTION, &store)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use arrow_array::Float64Array;

    fn rows(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Float64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(vec![1.0; n]))]).unwrap()
    }

    #[test]
    fn the_memory_bound_counts_unflushed_rows_and_open_transactions_keep_flushed_ones() {
        let store = HotStore::new();
        let t = store.get_or_create("db", "m", vec![("time".into(), "TIMESTAMP_NS".into())], 0);
        store.push(&t, 1, rows(10));
        store.push(&t, 2, rows(5));
        assert_eq!((store.rows(), store.unflushed_rows()), (15, 15));
        assert_eq!(t.batches_between(0, 1).len(), 1);
        // A transaction that began before the flush keeps its batches in memory…
        let txn = Instant::now();
        store.mark_flushed("db", 1);
        assert_eq!((store.rows(), store.unflushed_rows()), (15, 5));
        store.retire(std::time::Duration::ZERO, Some(txn));
        assert_eq!(store.rows(), 15);
        // …one that began after it does not, nor does none.
        store.retire(std::time::Duration::ZERO, Some(Instant::now()));
        assert_eq!((store.rows(), store.unflushed_rows()), (5, 5));
        store.forget_database("db");
        assert_eq!((store.rows(), store.unflushed_rows()), (0, 0));
    }
}
