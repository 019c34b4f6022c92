//! `pond_metastore`: Pond's external catalogs (Hive Metastore, AWS Glue,
//! Dataproc Metastore) as a DuckDB extension loadable by plain DuckDB 1.5.5.
//!
//! ```sql
//! LOAD '/path/to/pond_metastore.duckdb_extension';
//! SELECT * FROM metastore_tables('thrift://hms:9083');
//! SELECT * FROM metastore_partitions('thrift://hms:9083', 'db', 't', filter := 'dt >= ''2024-01-01''');
//! SELECT * FROM metastore_scan('thrift://hms:9083', 'db', 't', filter := 'dt = ''2024-01-01''');
//! ```
//!
//! The catalog work is pond-catalog's, shared with Pond's server by path:
//! option validation ([`pond_catalog::AttachSpec`]), providers, partition
//! selection, metadata cache and the reader query. This crate adds the C API
//! glue ([`table`], [`duck`]), credentials from DuckDB's secret manager
//! ([`catalogs`]) and the queries each function answers with ([`plans`]).

mod catalogs;
mod duck;
mod plans;
mod table;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use libduckdb_sys as ffi;

/// The C API version the extension asks DuckDB for.
const C_API_VERSION: &str = "v1.2.0";

/// The entry point DuckDB calls on `LOAD` (`<file name>_init_c_api`).
///
/// # Safety
/// Called by DuckDB with the load's `info` and `access`.
#[no_mangle]
pub unsafe extern "C" fn pond_metastore_init_c_api(info: ffi::duckdb_extension_info, access: *const ffi::duckdb_extension_access) -> bool {
    let outcome = catch_unwind(AssertUnwindSafe(|| unsafe { load(info, access) }));
    let message = match outcome {
        Ok(Ok(loaded)) => return loaded,
        Ok(Err(e)) => format!("pond_metastore: {e}"),
        Err(_) => "pond_metastore: internal error while loading (a panic)".to_string(),
    };
    if let Some(set_error) = unsafe { access.as_ref() }.and_then(|a| a.set_error) {
        let text = std::ffi::CString::new(message.replace('\0', " ")).unwrap_or_default();
        unsafe { set_error(info, text.as_ptr()) };
    }
    false
}

unsafe fn load(info: ffi::duckdb_extension_info, access: *const ffi::duckdb_extension_access) -> Result<bool, String> {
    if access.is_null() {
        return Err("DuckDB passed no extension access".into());
    }
    if !unsafe { ffi::duckdb_rs_extension_api_init(info, access, C_API_VERSION) }.map_err(|e| e.to_string())? {
        // DuckDB refused the API version and has recorded why.
        return Ok(false);
    }
    let get_database = unsafe { (*access).get_database }.ok_or("DuckDB passed no get_database")?;
    let handle = unsafe { get_database(info) };
    if handle.is_null() {
        return Ok(false); // DuckDB has recorded the reason
    }
    let load_db = unsafe { *handle };
    let mut con: ffi::duckdb_connection = std::ptr::null_mut();
    if unsafe { ffi::duckdb_connect(load_db, &mut con) } != ffi::duckdb_state_DuckDBSuccess {
        return Err("cannot connect to the database that loads the extension".into());
    }
    let con = unsafe { duck::Conn::from_raw(con) };
    let db = unsafe { duck::Database::from_load_handle(load_db) }?;
    let shared = Arc::new(table::Shared { db, catalogs: Default::default() });
    table::register(&con, &shared)?;
    Ok(true)
}
