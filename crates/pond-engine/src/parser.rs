//! How many statements DuckDB itself sees in a text, asked of a private, empty
//! DuckDB instance that only parses (`duckdb_extract_statements`, no binding,
//! no catalog). The sandbox uses it so that a text it checked as one statement
//! is one statement for DuckDB too, whatever Pond's own splitter thought
//! (comments ended by a lone `\r`, unusual quoting, …).

use std::ffi::{CStr, CString};
use std::ptr;

use duckdb::ffi;
use parking_lot::Mutex;

use crate::error::{Error, Result};

pub(crate) struct StatementCounter {
    db: ffi::duckdb_database,
    idle: Mutex<Vec<ffi::duckdb_connection>>,
}

// The database handle is thread-safe; each connection is used by one thread at
// a time (taken out of `idle` for the duration of a call).
unsafe impl Send for StatementCounter {}
unsafe impl Sync for StatementCounter {}

impl StatementCounter {
    pub(crate) fn new() -> Result<Self> {
        let mut db: ffi::duckdb_database = ptr::null_mut();
        // SAFETY: a null path opens an in-memory database; `db` receives the handle.
        let state = unsafe { ffi::duckdb_open(ptr::null(), &mut db) };
        if state != ffi::DuckDBSuccess {
            return Err(Error::Internal("cannot open DuckDB's parser instance".into()));
        }
        Ok(Self { db, idle: Mutex::new(Vec::new()) })
    }

    /// The number of statements DuckDB parses from `sql`, or its parser error.
    pub(crate) fn count(&self, sql: &str) -> Result<usize> {
        let text = CString::new(sql).map_err(|_| Error::InvalidRequest("SQL text contains a NUL byte".into()))?;
        let conn = match self.idle.lock().pop() {
            Some(c) => c,
            None => {
                let mut c: ffi::duckdb_connection = ptr::null_mut();
                // SAFETY: `self.db` is open for the lifetime of `self`.
                if unsafe { ffi::duckdb_connect(self.db, &mut c) } != ffi::DuckDBSuccess {
                    return Err(Error::Internal("cannot connect to DuckDB's parser instance".into()));
                }
                c
            }
        };
        let mut extracted: ffi::duckdb_extracted_statements = ptr::null_mut();
        // SAFETY: `conn` is a live connection used only by this thread; `text` is NUL-terminated.
        let n = unsafe { ffi::duckdb_extract_statements(conn, text.as_ptr(), &mut extracted) };
        let result = if n == 0 {
            // SAFETY: the error string belongs to `extracted` and is copied before it is destroyed.
            let msg = unsafe {
                let e = ffi::duckdb_extract_statements_error(extracted);
                if e.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(e).to_string_lossy().into_owned()
                }
            };
            if msg.is_empty() {
                Ok(0)
            } else {
                Err(Error::InvalidRequest(msg))
            }
        } else {
            Ok(n as usize)
        };
        // SAFETY: `extracted` was produced by duckdb_extract_statements above.
        unsafe { ffi::duckdb_destroy_extracted(&mut extracted) };
        self.idle.lock().push(conn);
        result
    }
}

impl Drop for StatementCounter {
    fn drop(&mut self) {
        for mut c in self.idle.lock().drain(..) {
            // SAFETY: idle connections are not in use.
            unsafe { ffi::duckdb_disconnect(&mut c) };
        }
        // SAFETY: every connection is closed; nothing else holds the database.
        unsafe { ffi::duckdb_close(&mut self.db) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_duckdb_sees() {
        let p = StatementCounter::new().unwrap();
        assert_eq!(p.count("SELECT 1").unwrap(), 1);
        assert_eq!(p.count("SELECT 1; SELECT 2").unwrap(), 2);
        // A `--` comment ends at a carriage return for DuckDB.
        assert_eq!(p.count("SET TimeZone = 'UTC' --\r; SELECT 2").unwrap(), 2);
        assert_eq!(p.count("SELECT ';' -- ;\n").unwrap(), 1);
        assert!(p.count("SELEC 1").unwrap_err().to_string().contains("syntax error"));
    }
}
