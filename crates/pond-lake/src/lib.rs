//! Pond's lake: one DuckLake catalog for the instance holding the cold part
//! of every time-series measurement, one lake schema per Pond database
//! (named by the database's file id).
//!
//! This crate owns what the lake *is*, below both the engine (which attaches
//! it and lets the sandbox recognise its views) and ingest (which fills it):
//! the names Pond reserves ([`LAKE_ALIAS`], [`FLUSHED_TABLE`], …), the
//! canonical measurement view ([`measurement_view_query`]), the file layout
//! and the flush writer — hot batches split by UTC day ([`days`]), written
//! as zstd Parquet files in the table's hive layout and registered with
//! DuckLake together with the flushed generation in one transaction
//! ([`files`]) — plus crash failpoints ([`failpoint`]) and maintenance:
//! compaction per measurement, retention, statistics ([`maintenance`]).
//! It knows nothing about the hot store, sessions or grants.
//!
//! Look first at [`files::write_day_files`], [`files::register`] and
//! [`measurement_view_query`].

pub mod days;
pub mod failpoint;
pub mod files;
pub mod maintenance;

/// Schema in which older Pond versions kept unflushed rows inside each
/// database (migrated at start; the name stays reserved).
pub const BUFFER_SCHEMA: &str = "_pond_buffer";
/// Hidden column of hot rows: the write-ahead-log sequence that wrote the row.
pub const GEN_COLUMN: &str = "_pond_gen";
/// Lake table (per database schema) recording the highest generation copied into the lake.
pub const FLUSHED_TABLE: &str = "_pond_flushed";
/// Lake table (per database schema) with retention limits.
pub const RETENTION_TABLE: &str = "_pond_retention";
/// DuckDB alias of the lake.
pub const LAKE_ALIAS: &str = "__pond_lake";
/// The schema in a database linked to PostgreSQL that records the link's position (`pond-link`).
pub const LINK_STATE_SCHEMA: &str = "_pond_link";
/// Schema of a database holding its continuous queries and their watermarks (`pond-jobs`).
pub const CQ_SCHEMA: &str = "_pond_cq";
/// The time column of every measurement (`TIMESTAMP_NS`, UTC, never NULL).
pub const TIME_COLUMN: &str = "time";
/// Table function (registered by `pond-ingest`) returning a measurement's
/// hot rows: `pond_hot('<database file id>', '<measurement>')`.
pub const HOT_FUNCTION: &str = "pond_hot";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    DuckDb(String),
    #[error("cannot write Parquet file {path}: {message}")]
    Parquet { path: String, message: String },
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Arrow(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<duckdb::Error> for Error {
    fn from(e: duckdb::Error) -> Self {
        Error::DuckDb(e.to_string())
    }
}

impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::Arrow(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Quotes an identifier for DuckDB.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for DuckDB.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// One database's part of the lake as one node sees it: catalog
/// [`LAKE_ALIAS`], schema = file id, and the node whose flushed generations
/// and hot rows count (empty for a server that is the lake's only writer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lake {
    pub catalog: String,
    pub schema: String,
    pub node: String,
}

impl Lake {
    /// The lake schema of database file id `file_id`, for node `node` ("" when alone).
    pub fn new(file_id: &str, node: &str) -> Self {
        Self { catalog: LAKE_ALIAS.to_string(), schema: file_id.to_string(), node: node.to_string() }
    }

    /// The condition selecting this node's rows of [`FLUSHED_TABLE`]: every
    /// row when alone (an older lake has no `node` column), else its own.
    pub fn flushed_filter(&self) -> String {
        if self.node.is_empty() {
            String::new()
        } else {
            format!(" WHERE node = {}", quote_literal(&self.node))
        }
    }

    /// `"catalog"."schema"."name"`.
    pub fn table(&self, name: &str) -> String {
        format!("{}.{}.{}", quote_ident(&self.catalog), quote_ident(&self.schema), quote_ident(name))
    }

    /// DuckLake's metadata catalog of this lake (`__ducklake_metadata_<alias>`).
    pub fn metadata_catalog(&self) -> String {
        quote_ident(&format!("__ducklake_metadata_{}", self.catalog))
    }
}

/// Catalogs no client may name or see: the lake and DuckLake's metadata catalog.
pub fn is_hidden_catalog(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with(LAKE_ALIAS) || n.starts_with("__ducklake_metadata")
}

/// Schemas no client may name or see.
pub fn is_hidden_schema(name: &str) -> bool {
    name.eq_ignore_ascii_case(BUFFER_SCHEMA) || name.eq_ignore_ascii_case(LINK_STATE_SCHEMA) || name.eq_ignore_ascii_case(CQ_SCHEMA)
}

/// The query of the view `<db>.main.<name>`: the lake's rows, then the hot
/// rows (in memory, see `pond-ingest`) whose generation the lake does not yet
/// record as flushed by this node. The lake schema and the hot store are
/// keyed by the database's file id, so the view survives a database rename.
pub fn measurement_view_query(lake: &Lake, name: &str) -> String {
    format!(
        "SELECT * FROM {} UNION ALL BY NAME SELECT * EXCLUDE ({gen}) FROM {HOT_FUNCTION}({}, {}) \
         WHERE {gen} > (SELECT coalesce(max(gen), 0) FROM {}{})",
        lake.table(name),
        quote_literal(&lake.schema),
        quote_literal(name),
        lake.table(FLUSHED_TABLE),
        lake.flushed_filter(),
        gen = quote_ident(GEN_COLUMN),
    )
}

/// Whether DuckDB's error is a DuckLake commit conflict with another
/// writer of the same catalog (another node): the work can be retried on
/// the new snapshot.
pub fn is_conflict(message: &str) -> bool {
    message.contains("Transaction conflict") || message.contains("conflict") && message.contains("another transaction")
}

/// Runs `f` until it succeeds, retrying up to 8 times (with a short growing
/// pause) while it fails with a DuckLake commit conflict ([`is_conflict`]).
pub fn retry_conflicts<T, E: std::fmt::Display>(mut f: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let mut attempt = 0u32;
    loop {
        match f() {
            Err(e) if attempt < 8 && is_conflict(&e.to_string()) => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5 * u64::from(attempt) + rand_jitter_ms()));
            }
            other => return other,
        }
    }
}

/// A few milliseconds of jitter so two nodes retrying the same conflict do not collide again.
fn rand_jitter_ms() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    u64::from(nanos % 7)
}

/// Runs `f` in one DuckDB transaction on `conn` (rolled back on error).
pub fn in_transaction<T, E: From<Error>>(conn: &duckdb::Connection, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    conn.execute_batch("BEGIN TRANSACTION").map_err(|e| E::from(Error::from(e)))?;
    match f() {
        Ok(v) => {
            conn.execute_batch("COMMIT").map_err(|e| E::from(Error::from(e)))?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// DuckDB's column type for an Arrow type: `CREATE TABLE` for Flight bulk
/// ingest (engine) and import jobs' staging tables (jobs). The error names
/// the type DuckDB has no column for.
pub fn duckdb_type(dt: &arrow_schema::DataType) -> std::result::Result<String, String> {
    use arrow_schema::{DataType, TimeUnit as ArrowUnit};
    Ok(match dt {
        DataType::Null => "INTEGER".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => "BLOB".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Timestamp(u, None) => match u {
            ArrowUnit::Second => "TIMESTAMP_S".into(),
            ArrowUnit::Millisecond => "TIMESTAMP_MS".into(),
            ArrowUnit::Microsecond => "TIMESTAMP".into(),
            ArrowUnit::Nanosecond => "TIMESTAMP_NS".into(),
        },
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Interval(_) | DataType::Duration(_) => "INTERVAL".into(),
        DataType::Decimal128(p, s) if *p <= 38 => format!("DECIMAL({p},{s})"),
        DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => "DOUBLE".into(),
        DataType::List(f) | DataType::LargeList(f) => format!("{}[]", duckdb_type(f.data_type())?),
        DataType::FixedSizeList(f, n) => format!("{}[{n}]", duckdb_type(f.data_type())?),
        DataType::Struct(fields) => {
            let parts: std::result::Result<Vec<String>, String> =
                fields.iter().map(|f| Ok(format!("{} {}", quote_ident(f.name()), duckdb_type(f.data_type())?))).collect();
            format!("STRUCT({})", parts?.join(", "))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!("MAP({}, {})", duckdb_type(kv[0].data_type())?, duckdb_type(kv[1].data_type())?)
            }
            _ => return Err("malformed Arrow map type".into()),
        },
        DataType::Dictionary(_, v) => duckdb_type(v)?,
        other => return Err(format!("cannot ingest Arrow type {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_names() {
        assert!(is_hidden_catalog("__pond_lake"));
        assert!(is_hidden_catalog("__DUCKLAKE_METADATA___pond_lake"));
        assert!(!is_hidden_catalog("lake"));
        assert!(is_hidden_schema("_Pond_Buffer"));
        assert!(!is_hidden_schema("main"));
        let q = measurement_view_query(&Lake::new("x", ""), "c\"p");
        assert!(q.contains("\"c\"\"p\""), "{q}");
        assert!(!q.contains("node"), "a lone server's view reads every flushed generation: {q}");
        let q = measurement_view_query(&Lake::new("x", "n1"), "cpu");
        assert!(q.contains("WHERE node = 'n1'"), "{q}");
        assert_eq!(Lake::new("x", "").metadata_catalog(), "\"__ducklake_metadata___pond_lake\"");
    }
}
