//! What a statement returns and what its parameters are, before it runs:
//! DuckDB's prepared-statement C API (`duckdb_prepare`, the prepared
//! statement's column names and logical types, `duckdb_param_logical_type`),
//! with the column types turned into Arrow by DuckDB's own converter
//! (`duckdb_to_arrow_schema` with the connection's Arrow options), the same
//! call that gives a result stream its schema. Flight SQL's
//! CreatePreparedStatement answers with it.
//!
//! The duckdb crate keeps a connection's C handle to itself, so the engine
//! opens its DuckDB instance here ([`Instance`]) and hands the crate the
//! database handle for its own connections; describing uses a connection of
//! its own ([`Describer`]), which `Session` keeps in step with the session's
//! connection (see `Session::describe`). All unsafe code for this lives in
//! this module; every DuckDB object it creates is freed on every path, and no
//! Rust panic can cross into DuckDB (nothing here calls back from C).

use std::ffi::{c_char, CStr, CString};
use std::ptr;
use std::sync::Arc;

use arrow_schema::{DataType, Schema, SchemaRef};
use duckdb::arrow::ffi::FFI_ArrowSchema;
use duckdb::ffi;

use crate::error::{Error, Result};

/// The engine's DuckDB instance, opened through the C API so that connections
/// other than the duckdb crate's can be made to it.
pub(crate) struct Instance {
    db: ffi::duckdb_database,
}

// DuckDB's database handle may be used from any thread (connections are made
// from it concurrently); it is closed once, in Drop.
unsafe impl Send for Instance {}
unsafe impl Sync for Instance {}

impl Instance {
    /// Opens an in-memory instance with `settings` applied in order (DuckDB
    /// configuration options, as `duckdb::Config::with` would set them).
    pub(crate) fn open_in_memory(settings: &[(&str, String)]) -> Result<Self> {
        let mut config: ffi::duckdb_config = ptr::null_mut();
        // SAFETY: `config` receives a new configuration object.
        if unsafe { ffi::duckdb_create_config(&mut config) } != ffi::DuckDBSuccess {
            return Err(Error::Internal("cannot create a DuckDB configuration".into()));
        }
        let opened = Self::open_with(config, settings);
        // SAFETY: `config` was created above and is not used after this point
        // (duckdb_open_ext copies what it needs).
        unsafe { ffi::duckdb_destroy_config(&mut config) };
        opened
    }

    fn open_with(config: ffi::duckdb_config, settings: &[(&str, String)]) -> Result<Self> {
        for (name, value) in settings {
            let (n, v) = (c_string(name)?, c_string(value)?);
            // SAFETY: `config` is live; both strings are NUL-terminated and outlive the call.
            if unsafe { ffi::duckdb_set_config(config, n.as_ptr(), v.as_ptr()) } != ffi::DuckDBSuccess {
                return Err(Error::Internal(format!("DuckDB rejected the setting {name} = '{value}'")));
            }
        }
        let path = c_string(":memory:")?;
        let mut db: ffi::duckdb_database = ptr::null_mut();
        let mut err: *mut c_char = ptr::null_mut();
        // SAFETY: all pointers are valid; on failure `err` may receive a message
        // that we own and free with duckdb_free.
        let state = unsafe { ffi::duckdb_open_ext(path.as_ptr(), &mut db, config, &mut err) };
        if state != ffi::DuckDBSuccess {
            // SAFETY: `err` is null or a NUL-terminated string allocated by DuckDB.
            let msg = unsafe { take_duckdb_string(err) };
            return Err(Error::Internal(format!("cannot open DuckDB: {}", msg.unwrap_or_default())));
        }
        Ok(Self { db })
    }

    /// A duckdb crate connection to this instance.
    pub(crate) fn connection(&self) -> Result<duckdb::Connection> {
        // SAFETY: `self.db` is an open database. The crate does not close it
        // (`Instance` does, in Drop); DuckDB keeps the instance alive while any
        // connection to it exists, so connections may outlive `self`.
        Ok(unsafe { duckdb::Connection::open_from_raw(self.db) }?)
    }

    /// A new connection for describing statements.
    pub(crate) fn describer(&self) -> Result<Describer> {
        let mut conn: ffi::duckdb_connection = ptr::null_mut();
        // SAFETY: `self.db` is open; `conn` receives the connection.
        if unsafe { ffi::duckdb_connect(self.db, &mut conn) } != ffi::DuckDBSuccess {
            // SAFETY: duckdb_disconnect accepts a null or partially made connection.
            unsafe { ffi::duckdb_disconnect(&mut conn) };
            return Err(Error::Internal("cannot open a DuckDB connection to describe statements".into()));
        }
        Ok(Describer { conn })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: opened in `open_in_memory`, closed only here. Connections still
        // open keep DuckDB's instance alive on their own.
        unsafe { ffi::duckdb_close(&mut self.db) };
    }
}

/// A statement's result schema and parameter types, as DuckDB planned them.
#[derive(Debug, Clone)]
pub struct Described {
    /// The Arrow schema of the result; `None` when it is not fixed before the
    /// statement runs (a parameter of unknown type, a column whose type
    /// depends on a parameter's value, ENUM and UNION columns, whose Arrow
    /// form follows the data).
    pub schema: Option<SchemaRef>,
    /// One type per parameter, in order; `DataType::Null` where DuckDB cannot
    /// tell before a value is bound (`SELECT ?`).
    pub params: Vec<DataType>,
}

/// A DuckDB connection used only to prepare statements and read their types.
/// Never executes a described statement.
pub(crate) struct Describer {
    conn: ffi::duckdb_connection,
}

// A DuckDB connection may move between threads; `&mut self` on every method
// keeps it to one thread at a time.
unsafe impl Send for Describer {}

impl Drop for Describer {
    fn drop(&mut self) {
        // SAFETY: made in `Instance::describer`, disconnected only here.
        unsafe { ffi::duckdb_disconnect(&mut self.conn) };
    }
}

impl Describer {
    /// Runs a statement that sets up the connection (`USE`, `SET`); its result is discarded.
    pub(crate) fn execute(&mut self, sql: &str) -> Result<()> {
        let text = c_string(sql)?;
        // SAFETY: a zeroed duckdb_result is the documented initial state.
        let mut result: ffi::duckdb_result = unsafe { std::mem::zeroed() };
        // SAFETY: the connection is live; `text` is NUL-terminated.
        let state = unsafe { ffi::duckdb_query(self.conn, text.as_ptr(), &mut result) };
        let error = if state == ffi::DuckDBSuccess {
            None
        } else {
            // SAFETY: the message belongs to `result` and is copied before it is destroyed.
            Some(unsafe { borrowed_string(ffi::duckdb_result_error(&mut result)) }.unwrap_or_else(|| "unknown error".into()))
        };
        // SAFETY: duckdb_query initialises `result` whether or not it succeeded.
        unsafe { ffi::duckdb_destroy_result(&mut result) };
        match error {
            Some(e) => Err(Error::DuckDb(e)),
            None => Ok(()),
        }
    }

    /// Prepares `sql` (one statement) and reads its result columns and
    /// parameter types. Errors are DuckDB's (syntax, unknown table, …).
    pub(crate) fn describe(&mut self, sql: &str) -> Result<Described> {
        let text = c_string(sql)?;
        let mut stmt = PreparedStatement(ptr::null_mut());
        // SAFETY: the connection is live; `text` is NUL-terminated; `stmt` frees
        // whatever duckdb_prepare left in it, on success and on failure.
        let state = unsafe { ffi::duckdb_prepare(self.conn, text.as_ptr(), &mut stmt.0) };
        if state != ffi::DuckDBSuccess {
            // SAFETY: the message belongs to the statement and is copied before it is freed.
            let msg = unsafe { borrowed_string(ffi::duckdb_prepare_error(stmt.0)) };
            return Err(Error::DuckDb(msg.unwrap_or_else(|| "cannot prepare the statement".into())));
        }
        let params = self.parameter_types(&stmt)?;
        // With a parameter of unknown type DuckDB binds the statement again
        // when the value comes, and only then knows the result's columns.
        let schema = if params.contains(&DataType::Null) { None } else { self.result_schema(&stmt)? };
        Ok(Described { schema, params })
    }

    fn parameter_types(&self, stmt: &PreparedStatement) -> Result<Vec<DataType>> {
        // SAFETY: `stmt` is a successfully prepared statement.
        let n = unsafe { ffi::duckdb_nparams(stmt.0) };
        let mut types = Vec::with_capacity(n as usize);
        for i in 1..=n {
            // SAFETY: 1 <= i <= nparams; the returned type (or null) is owned by the guard.
            let t = LogicalType(unsafe { ffi::duckdb_param_logical_type(stmt.0, i) });
            let known = !t.0.is_null() && !matches!(t.type_id(), ffi::DUCKDB_TYPE_DUCKDB_TYPE_INVALID | ffi::DUCKDB_TYPE_DUCKDB_TYPE_ANY);
            let arrow = if known { self.to_arrow(&[t], &[format!("${i}")])?.fields().first().map(|f| f.data_type().clone()) } else { None };
            types.push(arrow.unwrap_or(DataType::Null));
        }
        Ok(types)
    }

    fn result_schema(&self, stmt: &PreparedStatement) -> Result<Option<SchemaRef>> {
        // SAFETY: `stmt` is a successfully prepared statement.
        let n = unsafe { ffi::duckdb_prepared_statement_column_count(stmt.0) };
        let mut types = Vec::with_capacity(n as usize);
        let mut names = Vec::with_capacity(n as usize);
        for i in 0..n {
            // SAFETY: i < column_count; the type is owned by the guard, the name
            // (a strdup'd copy, or null) is copied and freed by take_duckdb_string.
            let t = LogicalType(unsafe { ffi::duckdb_prepared_statement_column_logical_type(stmt.0, i) });
            let name = unsafe { take_duckdb_string(ffi::duckdb_prepared_statement_column_name(stmt.0, i) as *mut c_char) };
            // A type DuckDB settles only once parameters are bound.
            if t.0.is_null() || matches!(t.type_id(), ffi::DUCKDB_TYPE_DUCKDB_TYPE_INVALID | ffi::DUCKDB_TYPE_DUCKDB_TYPE_ANY) {
                return Ok(None);
            }
            let Some(name) = name else { return Ok(None) };
            types.push(t);
            names.push(name);
        }
        let schema = self.to_arrow(&types, &names)?;
        if schema.fields().iter().any(|f| follows_data(f.data_type())) {
            return Ok(None);
        }
        Ok(Some(schema))
    }

    /// DuckDB's own Arrow conversion, with this connection's Arrow options.
    fn to_arrow(&self, types: &[LogicalType], names: &[String]) -> Result<SchemaRef> {
        let names = names.iter().map(|n| c_string(n)).collect::<Result<Vec<_>>>()?;
        let mut name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let mut type_ptrs: Vec<ffi::duckdb_logical_type> = types.iter().map(|t| t.0).collect();
        let mut options = ArrowOptions(ptr::null_mut());
        // SAFETY: the connection is live; the options object is owned by the guard.
        unsafe { ffi::duckdb_connection_get_arrow_options(self.conn, &mut options.0) };
        if options.0.is_null() {
            return Err(Error::Internal("DuckDB gave no Arrow options for the connection".into()));
        }
        let mut out = FFI_ArrowSchema::empty();
        // SAFETY: `type_ptrs` and `name_ptrs` hold `types.len()` live types and
        // NUL-terminated names that outlive the call; `out` is an empty Arrow C
        // schema (same layout as ffi::ArrowSchema) released by its own Drop.
        let error = ErrorData(unsafe {
            ffi::duckdb_to_arrow_schema(
                options.0,
                type_ptrs.as_mut_ptr(),
                name_ptrs.as_mut_ptr(),
                types.len() as ffi::idx_t,
                &mut out as *mut FFI_ArrowSchema as *mut ffi::ArrowSchema,
            )
        });
        if let Some(msg) = error.message() {
            return Err(Error::DuckDb(msg));
        }
        let schema = Schema::try_from(&out).map_err(|e| Error::Internal(format!("DuckDB's Arrow schema could not be read: {e}")))?;
        Ok(Arc::new(schema))
    }
}

/// Arrow types whose form in a result follows the data rather than the
/// declared type (see `session::reconcile`): no fixed schema can be promised.
fn follows_data(t: &DataType) -> bool {
    match t {
        DataType::Dictionary(..) | DataType::Union(..) => true,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) | DataType::Map(f, _) => follows_data(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| follows_data(f.data_type())),
        _ => false,
    }
}

struct PreparedStatement(ffi::duckdb_prepared_statement);

impl Drop for PreparedStatement {
    fn drop(&mut self) {
        // SAFETY: null or a statement from duckdb_prepare, destroyed only here.
        unsafe { ffi::duckdb_destroy_prepare(&mut self.0) };
    }
}

struct LogicalType(ffi::duckdb_logical_type);

impl LogicalType {
    fn type_id(&self) -> ffi::duckdb_type {
        // SAFETY: called only on a non-null type.
        unsafe { ffi::duckdb_get_type_id(self.0) }
    }
}

impl Drop for LogicalType {
    fn drop(&mut self) {
        // SAFETY: null or a type DuckDB handed over, destroyed only here.
        unsafe { ffi::duckdb_destroy_logical_type(&mut self.0) };
    }
}

struct ArrowOptions(ffi::duckdb_arrow_options);

impl Drop for ArrowOptions {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: options from duckdb_connection_get_arrow_options, destroyed only here.
            unsafe { ffi::duckdb_destroy_arrow_options(&mut self.0) };
        }
    }
}

struct ErrorData(ffi::duckdb_error_data);

impl ErrorData {
    fn message(&self) -> Option<String> {
        // SAFETY: null or live error data; the message is copied.
        unsafe {
            if !ffi::duckdb_error_data_has_error(self.0) {
                return None;
            }
            Some(borrowed_string(ffi::duckdb_error_data_message(self.0)).unwrap_or_else(|| "unknown error".into()))
        }
    }
}

impl Drop for ErrorData {
    fn drop(&mut self) {
        // SAFETY: null or error data DuckDB handed over, destroyed only here.
        unsafe { ffi::duckdb_destroy_error_data(&mut self.0) };
    }
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::InvalidRequest("SQL text contains a NUL byte".into()))
}

/// Copies a string DuckDB still owns.
///
/// # Safety
/// `p` is null or a NUL-terminated string valid for the duration of the call.
unsafe fn borrowed_string(p: *const c_char) -> Option<String> {
    // SAFETY: per the contract above.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Copies and frees a string DuckDB allocated for the caller.
///
/// # Safety
/// `p` is null or a NUL-terminated string allocated by DuckDB and not freed yet.
unsafe fn take_duckdb_string(p: *mut c_char) -> Option<String> {
    // SAFETY: per the contract above.
    let s = unsafe { borrowed_string(p) };
    if !p.is_null() {
        // SAFETY: DuckDB allocated it; freed once, here.
        unsafe { ffi::duckdb_free(p.cast()) };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> Instance {
        Instance::open_in_memory(&[("threads", "1".to_string())]).unwrap()
    }

    #[test]
    fn result_and_parameter_types_before_running() {
        let db = instance();
        let conn = db.connection().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER, name VARCHAR, price DECIMAL(10,2), placed TIMESTAMP)").unwrap();
        let mut d = db.describer().unwrap();
        let out = d.describe("SELECT name, price, placed, id + 1 AS next FROM t WHERE id = ? AND name = $2").unwrap();
        let schema = out.schema.unwrap();
        let got: Vec<(&str, &DataType)> = schema.fields().iter().map(|f| (f.name().as_str(), f.data_type())).collect();
        assert_eq!(
            got,
            vec![
                ("name", &DataType::Utf8),
                ("price", &DataType::Decimal128(10, 2)),
                ("placed", &DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None)),
                ("next", &DataType::Int32),
            ]
        );
        assert_eq!(out.params, vec![DataType::Int32, DataType::Utf8]);
        // Same schema as the executed statement's stream.
        let mut stmt = conn.prepare("SELECT name, price, placed, id + 1 AS next FROM t WHERE id = ? AND name = ?").unwrap();
        let stream = stmt.stream_arrow(duckdb::params![1, "a"]).unwrap();
        assert_eq!(stream.get_schema(), schema);
    }

    #[test]
    fn unknown_parameter_types_are_null_and_errors_are_duckdbs() {
        let db = instance();
        let mut d = db.describer().unwrap();
        let out = d.describe("SELECT 1 AS one WHERE ? IS NULL").unwrap();
        assert_eq!(out.params, vec![DataType::Null]);
        assert!(out.schema.is_none(), "{out:?}");
        let e = d.describe("SELECT * FROM missing_table").unwrap_err();
        assert!(e.to_string().contains("missing_table"), "{e}");
        assert!(d.describe("SELEC 1").is_err());
        // The connection is still usable after errors.
        d.execute("SET threads = 1").unwrap();
        assert!(d.describe("SELECT 42").unwrap().params.is_empty());
    }
}
