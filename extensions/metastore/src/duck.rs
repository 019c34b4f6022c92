//! The few DuckDB C API calls the extension makes, wrapped so that every
//! handle is released on every path (Drop) and every failure becomes a
//! `String` naming what failed.
//!
//! The extension runs SQL of its own (the reader query of a scan, a secret
//! lookup, a glob over S3) on *side connections* to the database that loaded
//! it: the C API has no way to hand a query back to the caller's connection.
//! See [`Database`] for how those connections are opened.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;

use libduckdb_sys as ffi;

/// The database the extension was loaded into, as a non-owning handle.
///
/// The `duckdb_database` DuckDB gives an extension at load time points into
/// the load's own state and dangles once LOAD returns; a connection kept from
/// the load would hold the database open for ever (the functions that keep it
/// are owned by that same database: a reference cycle, so closing the
/// database would neither free it nor release its file). Instead the
/// extension remembers the `DatabaseInstance` itself, without a reference,
/// and opens a short-lived connection whenever a callback needs one. Every
/// callback runs inside a query of that database, so the instance is alive
/// then; the functions holding this handle are destroyed with it.
///
/// This relies on DuckDB 1.5.5's layout of two C++ objects on linux_amd64 /
/// libstdc++: the C API's `DatabaseWrapper { shared_ptr<DuckDB> database; }`
/// and `DuckDB { shared_ptr<DatabaseInstance> instance; … }`, each
/// `shared_ptr` being `{ T *ptr; control_block *ctrl; }`. `duckdb_connect`
/// only follows the two `ptr`s and then takes a reference of its own
/// (`DatabaseInstance::shared_from_this`). The extension's footer declares
/// the `C_STRUCT_UNSTABLE` ABI, which DuckDB loads only into exactly v1.5.5.
#[derive(Clone, Copy)]
pub struct Database {
    instance: *const c_void,
}

// The instance pointer is only dereferenced by DuckDB, inside callbacks of
// queries on that instance (DuckDB's own objects are thread-safe).
unsafe impl Send for Database {}
unsafe impl Sync for Database {}

/// `std::shared_ptr<T>` as libstdc++ lays it out.
#[repr(C)]
struct SharedPtr {
    ptr: *const c_void,
    ctrl: *const c_void,
}

impl Database {
    /// # Safety
    /// `db` is the handle `duckdb_extension_access::get_database` returned,
    /// still inside the extension's entry point.
    pub unsafe fn from_load_handle(db: ffi::duckdb_database) -> Result<Database, String> {
        if db.is_null() {
            return Err("DuckDB gave the extension no database".into());
        }
        let wrapper = db as *const SharedPtr;
        let duckdb = unsafe { (*wrapper).ptr } as *const SharedPtr;
        if duckdb.is_null() {
            return Err("DuckDB gave the extension an empty database handle".into());
        }
        let instance = unsafe { (*duckdb).ptr };
        if instance.is_null() {
            return Err("DuckDB gave the extension a database without an instance".into());
        }
        Ok(Database { instance })
    }

    /// A new connection to the database (closed when dropped).
    pub fn connect(&self) -> Result<Conn, String> {
        let duckdb = SharedPtr { ptr: self.instance, ctrl: ptr::null() };
        let wrapper = SharedPtr { ptr: &duckdb as *const SharedPtr as *const c_void, ctrl: ptr::null() };
        let mut con: ffi::duckdb_connection = ptr::null_mut();
        // SAFETY: see the type's documentation; `duckdb_connect` reads both
        // stack objects before it returns and keeps neither.
        let state = unsafe { ffi::duckdb_connect(&wrapper as *const SharedPtr as ffi::duckdb_database, &mut con) };
        if state != ffi::duckdb_state_DuckDBSuccess || con.is_null() {
            return Err("cannot open a connection to the database".into());
        }
        Ok(Conn { con })
    }
}

/// A connection the extension opened; disconnected when dropped.
pub struct Conn {
    con: ffi::duckdb_connection,
}

unsafe impl Send for Conn {}
// DuckDB serializes the queries of one connection (its client context lock);
// the extension's own concurrent users (the S3 lister) also take a lock.
unsafe impl Sync for Conn {}

impl Drop for Conn {
    fn drop(&mut self) {
        unsafe { ffi::duckdb_disconnect(&mut self.con) };
    }
}

impl Conn {
    /// # Safety
    /// `con` is an open connection the caller gives up.
    pub unsafe fn from_raw(con: ffi::duckdb_connection) -> Conn {
        Conn { con }
    }

    pub fn raw(&self) -> ffi::duckdb_connection {
        self.con
    }

    /// Prepares one statement.
    pub fn prepare(&self, sql: &str) -> Result<Prepared, String> {
        let text = CString::new(sql).map_err(|_| "a statement contains a NUL byte".to_string())?;
        let mut stmt: ffi::duckdb_prepared_statement = ptr::null_mut();
        let state = unsafe { ffi::duckdb_prepare(self.con, text.as_ptr(), &mut stmt) };
        let prepared = Prepared { stmt };
        if state != ffi::duckdb_state_DuckDBSuccess {
            let message = unsafe { cstr(ffi::duckdb_prepare_error(prepared.stmt)) };
            return Err(message.unwrap_or_else(|| "the statement could not be prepared".into()));
        }
        Ok(prepared)
    }

    /// Runs `sql` with text parameters and returns every row, each value as
    /// text (`None` for NULL). For small answers only.
    pub fn rows(&self, sql: &str, params: &[&str]) -> Result<Vec<Vec<Option<String>>>, String> {
        let stmt = self.prepare(sql)?;
        for (i, p) in params.iter().enumerate() {
            stmt.bind_text(i + 1, p)?;
        }
        let result = stmt.execute(false)?;
        let mut rows = Vec::new();
        while let Some(chunk) = result.next_chunk() {
            let n = chunk.len();
            let columns = chunk.columns();
            let mut batch: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(columns); n];
            for c in 0..columns {
                for (r, v) in chunk.text_column(c)?.into_iter().enumerate() {
                    batch[r].push(v);
                }
            }
            rows.extend(batch);
        }
        Ok(rows)
    }

    /// Runs a statement whose answer does not matter (e.g. CREATE SECRET).
    pub fn run(&self, sql: &str) -> Result<(), String> {
        self.prepare(sql)?.execute(false).map(drop)
    }

    /// The first value of the first row, as text.
    pub fn value(&self, sql: &str, params: &[&str]) -> Result<Option<String>, String> {
        Ok(self.rows(sql, params)?.into_iter().next().and_then(|r| r.into_iter().next()).flatten())
    }
}

/// A prepared statement; destroyed when dropped.
pub struct Prepared {
    stmt: ffi::duckdb_prepared_statement,
}

unsafe impl Send for Prepared {}

impl Drop for Prepared {
    fn drop(&mut self) {
        unsafe { ffi::duckdb_destroy_prepare(&mut self.stmt) };
    }
}

impl Prepared {
    pub fn bind_text(&self, index: usize, value: &str) -> Result<(), String> {
        let text = CString::new(value).map_err(|_| "a parameter contains a NUL byte".to_string())?;
        let state = unsafe { ffi::duckdb_bind_varchar(self.stmt, index as ffi::idx_t, text.as_ptr()) };
        if state != ffi::duckdb_state_DuckDBSuccess {
            return Err(format!("cannot bind parameter {index}"));
        }
        Ok(())
    }

    /// The result columns: names and logical types (owned by the caller).
    pub fn columns(&self) -> Vec<(String, LogicalType)> {
        let n = unsafe { ffi::duckdb_prepared_statement_column_count(self.stmt) };
        (0..n)
            .map(|i| {
                // DuckDB hands over a copy of the name: the caller frees it.
                let raw = unsafe { ffi::duckdb_prepared_statement_column_name(self.stmt, i) };
                let name = unsafe { cstr(raw) }.unwrap_or_default();
                unsafe { ffi::duckdb_free(raw as *mut c_void) };
                let ty = LogicalType(unsafe { ffi::duckdb_prepared_statement_column_logical_type(self.stmt, i) });
                (name, ty)
            })
            .collect()
    }

    /// Executes the statement; `streaming` results produce chunks as they are fetched.
    pub fn execute(&self, streaming: bool) -> Result<QueryResult, String> {
        let mut result: ffi::duckdb_result = unsafe { std::mem::zeroed() };
        let state = unsafe {
            if streaming {
                ffi::duckdb_execute_prepared_streaming(self.stmt, &mut result)
            } else {
                ffi::duckdb_execute_prepared(self.stmt, &mut result)
            }
        };
        let result = QueryResult { result };
        if state != ffi::duckdb_state_DuckDBSuccess {
            let mut raw = result.result;
            let message = unsafe { cstr(ffi::duckdb_result_error(&mut raw)) };
            return Err(message.unwrap_or_else(|| "the query failed".into()));
        }
        Ok(result)
    }
}

/// A query result; destroyed when dropped.
pub struct QueryResult {
    result: ffi::duckdb_result,
}

unsafe impl Send for QueryResult {}

impl Drop for QueryResult {
    fn drop(&mut self) {
        unsafe { ffi::duckdb_destroy_result(&mut self.result) };
    }
}

impl QueryResult {
    /// The next chunk of rows, None at the end. An execution error of a
    /// streaming result surfaces as [`QueryResult::error`].
    pub fn next_chunk(&self) -> Option<Chunk> {
        let chunk = unsafe { ffi::duckdb_fetch_chunk(self.result) };
        (!chunk.is_null()).then_some(Chunk { chunk })
    }

    /// The result's error, if it failed.
    pub fn error(&self) -> Option<String> {
        let mut raw = self.result;
        unsafe { cstr(ffi::duckdb_result_error(&mut raw)) }.filter(|m| !m.is_empty())
    }
}

/// A data chunk the extension owns; destroyed when dropped.
pub struct Chunk {
    chunk: ffi::duckdb_data_chunk,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        unsafe { ffi::duckdb_destroy_data_chunk(&mut self.chunk) };
    }
}

impl Chunk {
    pub fn len(&self) -> usize {
        unsafe { ffi::duckdb_data_chunk_get_size(self.chunk) as usize }
    }

    pub fn columns(&self) -> usize {
        unsafe { ffi::duckdb_data_chunk_get_column_count(self.chunk) as usize }
    }

    pub fn vector(&self, column: usize) -> ffi::duckdb_vector {
        unsafe { ffi::duckdb_data_chunk_get_vector(self.chunk, column as ffi::idx_t) }
    }

    /// A VARCHAR column's values.
    fn text_column(&self, column: usize) -> Result<Vec<Option<String>>, String> {
        let vector = self.vector(column);
        let ty = LogicalType(unsafe { ffi::duckdb_vector_get_column_type(vector) });
        if unsafe { ffi::duckdb_get_type_id(ty.0) } != ffi::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR {
            return Err("internal: a lookup query returned a non-text column".into());
        }
        let data = unsafe { ffi::duckdb_vector_get_data(vector) } as *mut ffi::duckdb_string_t;
        let validity = unsafe { ffi::duckdb_vector_get_validity(vector) };
        let mut out = Vec::with_capacity(self.len());
        for row in 0..self.len() {
            let valid = validity.is_null() || unsafe { ffi::duckdb_validity_row_is_valid(validity, row as ffi::idx_t) };
            if !valid {
                out.push(None);
                continue;
            }
            // SAFETY: `row` < the chunk's size; the string lives as long as the chunk.
            let s = unsafe { data.add(row) };
            let len = unsafe { ffi::duckdb_string_t_length(*s) } as usize;
            let bytes = unsafe { std::slice::from_raw_parts(ffi::duckdb_string_t_data(s) as *const u8, len) };
            out.push(Some(String::from_utf8_lossy(bytes).into_owned()));
        }
        Ok(out)
    }
}

/// A logical type the extension owns; destroyed when dropped.
pub struct LogicalType(pub ffi::duckdb_logical_type);

unsafe impl Send for LogicalType {}
unsafe impl Sync for LogicalType {}

impl Drop for LogicalType {
    fn drop(&mut self) {
        if !self.0.is_null() {
            unsafe { ffi::duckdb_destroy_logical_type(&mut self.0) };
        }
    }
}

impl LogicalType {
    pub fn varchar() -> LogicalType {
        LogicalType(unsafe { ffi::duckdb_create_logical_type(ffi::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR) })
    }
}

/// A C string DuckDB owns, copied.
///
/// # Safety
/// `p` is null or a NUL-terminated string.
pub unsafe fn cstr(p: *const c_char) -> Option<String> {
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// A DuckDB value as text (`None` for a NULL or absent value); the value is destroyed.
///
/// # Safety
/// `value` is null or a value the caller owns.
pub unsafe fn take_text(mut value: ffi::duckdb_value) -> Option<String> {
    if value.is_null() {
        return None;
    }
    let text = if unsafe { ffi::duckdb_is_null_value(value) } {
        None
    } else {
        let p = unsafe { ffi::duckdb_get_varchar(value) };
        let s = unsafe { cstr(p) };
        unsafe { ffi::duckdb_free(p as *mut c_void) };
        s
    };
    unsafe { ffi::duckdb_destroy_value(&mut value) };
    text
}
