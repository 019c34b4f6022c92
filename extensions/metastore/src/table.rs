//! The three table functions over DuckDB's C API.
//!
//! Each is the same machine: bind reads the arguments, does the catalog work
//! and writes the query that produces the rows ([`crate::plans`]); it
//! prepares that query on a side connection to learn the result's columns and
//! types. Init runs the query (only the columns DuckDB asks for: projection
//! pushdown), streaming; each call of the function moves the next chunk of
//! the result into DuckDB's output chunk by reference (no copy).
//!
//! No panic and no Rust error crosses into DuckDB: every callback runs under
//! `catch_unwind`, and failures become DuckDB errors naming the function.

use std::ffi::{c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use libduckdb_sys as ffi;
use parking_lot::Mutex;

use crate::catalogs::{CallOptions, Catalogs, OPTION_PARAMETERS};
use crate::duck::{take_text, Conn, Database, LogicalType, Prepared, QueryResult};
use crate::plans;

/// What a database that loaded the extension shares between calls.
pub struct Shared {
    pub db: Database,
    pub catalogs: Catalogs,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tables,
    Partitions,
    Scan,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tables => "metastore_tables",
            Kind::Partitions => "metastore_partitions",
            Kind::Scan => "metastore_scan",
        }
    }

    fn positional(self) -> &'static [&'static str] {
        match self {
            Kind::Tables => &["uri"],
            Kind::Partitions | Kind::Scan => &["uri", "database", "table"],
        }
    }

    fn named(self) -> Vec<&'static str> {
        let extra: &[&str] = if self == Kind::Tables { &["database"] } else { &["filter"] };
        OPTION_PARAMETERS.iter().chain(extra).copied().collect()
    }
}

/// The extra info of a registered function.
struct Registration {
    kind: Kind,
    shared: Arc<Shared>,
}

struct BindData {
    shared: Arc<Shared>,
    kind: Kind,
    sql: String,
    columns: Vec<String>,
}

struct InitData {
    // Dropped in this order: the result, its statement, then the connection.
    result: Mutex<Option<QueryResult>>,
    _prepared: Prepared,
    _conn: Conn,
    /// Whether the first chunk's column types were checked against DuckDB's output.
    checked: Mutex<bool>,
}

/// Runs a callback body; a panic or an error becomes `report(message)`.
fn contain(kind: Kind, body: impl FnOnce() -> Result<(), String>, report: impl FnOnce(&str)) {
    let message = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("{}: {e}", kind.name()),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            format!("{}: internal error (please report): {what}", kind.name())
        }
    };
    // A message with a NUL byte still reaches DuckDB (truncated there).
    let text = message.replace('\0', " ");
    report(&text);
}

fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// Registers the three functions with the database `con` belongs to.
pub fn register(con: &Conn, shared: &Arc<Shared>) -> Result<(), String> {
    for kind in [Kind::Tables, Kind::Partitions, Kind::Scan] {
        unsafe {
            let mut f = ffi::duckdb_create_table_function();
            let name = c_string(kind.name());
            ffi::duckdb_table_function_set_name(f, name.as_ptr());
            let text = LogicalType::varchar();
            for _ in kind.positional() {
                ffi::duckdb_table_function_add_parameter(f, text.0);
            }
            for n in kind.named() {
                let n = c_string(n);
                ffi::duckdb_table_function_add_named_parameter(f, n.as_ptr(), text.0);
            }
            let extra = Box::into_raw(Box::new(Registration { kind, shared: shared.clone() }));
            ffi::duckdb_table_function_set_extra_info(f, extra as *mut c_void, Some(drop_box::<Registration>));
            ffi::duckdb_table_function_set_bind(f, Some(bind));
            ffi::duckdb_table_function_set_init(f, Some(init));
            ffi::duckdb_table_function_set_function(f, Some(scan));
            ffi::duckdb_table_function_supports_projection_pushdown(f, true);
            let state = ffi::duckdb_register_table_function(con.raw(), f);
            ffi::duckdb_destroy_table_function(&mut f);
            if state != ffi::duckdb_state_DuckDBSuccess {
                return Err(format!("cannot register {}", kind.name()));
            }
        }
    }
    Ok(())
}

unsafe extern "C" fn drop_box<T>(p: *mut c_void) {
    if !p.is_null() {
        // A destructor must not unwind into DuckDB either.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(p as *mut T) })));
    }
}

unsafe extern "C" fn bind(info: ffi::duckdb_bind_info) {
    let reg = unsafe { &*(ffi::duckdb_bind_get_extra_info(info) as *const Registration) };
    contain(
        reg.kind,
        || {
            let data = bind_inner(info, reg)?;
            let columns = data.1;
            for (name, ty) in &columns {
                let name = c_string(name);
                unsafe { ffi::duckdb_bind_add_result_column(info, name.as_ptr(), ty.0) };
            }
            let data = BindData {
                shared: reg.shared.clone(),
                kind: reg.kind,
                sql: data.0,
                columns: columns.into_iter().map(|(n, _)| n).collect(),
            };
            unsafe { ffi::duckdb_bind_set_bind_data(info, Box::into_raw(Box::new(data)) as *mut c_void, Some(drop_box::<BindData>)) };
            Ok(())
        },
        |m| unsafe { ffi::duckdb_bind_set_error(info, c_string(m).as_ptr()) },
    );
}

/// The arguments, the catalog work and the result's columns.
fn bind_inner(info: ffi::duckdb_bind_info, reg: &Registration) -> Result<(String, Vec<(String, LogicalType)>), String> {
    let kind = reg.kind;
    let mut args = Vec::new();
    for (i, what) in kind.positional().iter().enumerate() {
        let v = unsafe { take_text(ffi::duckdb_bind_get_parameter(info, i as ffi::idx_t)) };
        args.push(v.ok_or_else(|| format!("the {what} argument is NULL"))?);
    }
    let mut call = CallOptions { uri: args[0].clone(), ..Default::default() };
    let mut filter = None;
    let mut database = None;
    for n in kind.named() {
        let cname = c_string(n);
        if let Some(v) = unsafe { take_text(ffi::duckdb_bind_get_named_parameter(info, cname.as_ptr())) } {
            match n {
                "filter" => filter = Some(v).filter(|f| !f.trim().is_empty()),
                "database" => database = Some(v),
                _ => {
                    call.named.insert(n.to_string(), v);
                }
            }
        }
    }
    let conn = reg.shared.db.connect()?;
    if conn.value("SELECT current_setting('enable_external_access')::VARCHAR", &[])?.as_deref() == Some("false") {
        return Err("DuckDB's enable_external_access is off; reading an external catalog needs it".into());
    }
    let catalog = reg.shared.catalogs.open(&conn, &call)?;
    let sql = match kind {
        Kind::Tables => plans::tables_sql(&catalog, database.as_deref())?,
        Kind::Partitions | Kind::Scan => {
            let table = catalog.table(&args[1], &args[2]).map_err(|e| e.to_string())?;
            let filter = filter.map(|f| plans::parse_filter(&conn, &table, &f)).transpose()?;
            if kind == Kind::Partitions {
                plans::partitions_sql(&catalog, &table, filter.as_ref())?
            } else {
                let files =
                    plans::Files { conn: &conn, catalog: catalog.clone(), catalogs: &reg.shared.catalogs, turn: Default::default() };
                plans::scan_sql(&catalog, &table, filter.as_ref(), &files)?
            }
        }
    };
    let prepared = conn.prepare(&sql).map_err(|e| describe_query_error(&e, &args))?;
    Ok((sql, prepared.columns()))
}

/// A failure of the generated query, without DuckDB's pointer into that
/// (internal) statement.
fn describe_query_error(e: &str, args: &[String]) -> String {
    let first = e.split("\nLINE ").next().unwrap_or(e).trim_end();
    match args {
        [_, db, table] => format!("cannot read {db}.{table}: {first}"),
        _ => format!("cannot list the catalog: {first}"),
    }
}

unsafe extern "C" fn init(info: ffi::duckdb_init_info) {
    let bind = unsafe { &*(ffi::duckdb_init_get_bind_data(info) as *const BindData) };
    contain(
        bind.kind,
        || {
            let count = unsafe { ffi::duckdb_init_get_column_count(info) } as usize;
            let wanted: Vec<u64> = (0..count).map(|i| unsafe { ffi::duckdb_init_get_column_index(info, i as ffi::idx_t) }).collect();
            let sql = projected(&bind.sql, &bind.columns, &wanted);
            let conn = bind.shared.db.connect()?;
            let prepared = conn.prepare(&sql)?;
            let result = prepared.execute(true)?;
            let data = InitData { result: Mutex::new(Some(result)), _prepared: prepared, _conn: conn, checked: Mutex::new(false) };
            unsafe {
                ffi::duckdb_init_set_max_threads(info, 1);
                ffi::duckdb_init_set_init_data(info, Box::into_raw(Box::new(data)) as *mut c_void, Some(drop_box::<InitData>));
            }
            Ok(())
        },
        |m| unsafe { ffi::duckdb_init_set_error(info, c_string(m).as_ptr()) },
    );
}

/// The query reading only the columns DuckDB asks for (an index past the
/// columns is DuckDB's row id: a placeholder BIGINT).
fn projected(sql: &str, columns: &[String], wanted: &[u64]) -> String {
    let all: Vec<u64> = (0..columns.len() as u64).collect();
    if wanted == all.as_slice() {
        return sql.to_string();
    }
    let cols: Vec<String> = wanted
        .iter()
        .map(|&i| match columns.get(i as usize) {
            Some(c) => pond_catalog::reader::ident(c),
            None => "CAST(NULL AS BIGINT)".to_string(),
        })
        .collect();
    if cols.is_empty() {
        return format!("SELECT NULL FROM ({sql}) AS __pond_out");
    }
    format!("SELECT {} FROM ({sql}) AS __pond_out", cols.join(", "))
}

unsafe extern "C" fn scan(info: ffi::duckdb_function_info, output: ffi::duckdb_data_chunk) {
    let bind = unsafe { &*(ffi::duckdb_function_get_bind_data(info) as *const BindData) };
    let state = unsafe { &*(ffi::duckdb_function_get_init_data(info) as *const InitData) };
    contain(
        bind.kind,
        || {
            let mut slot = state.result.lock();
            let Some(result) = slot.as_ref() else {
                unsafe { ffi::duckdb_data_chunk_set_size(output, 0) };
                return Ok(());
            };
            let Some(chunk) = result.next_chunk() else {
                let error = result.error();
                *slot = None;
                unsafe { ffi::duckdb_data_chunk_set_size(output, 0) };
                return match error {
                    Some(e) => Err(e.split("\nLINE ").next().unwrap_or(&e).trim_end().to_string()),
                    None => Ok(()),
                };
            };
            let columns = unsafe { ffi::duckdb_data_chunk_get_column_count(output) } as usize;
            if chunk.columns() != columns {
                return Err(format!("internal: the query returned {} columns, DuckDB expects {columns}", chunk.columns()));
            }
            let mut checked = state.checked.lock();
            for c in 0..columns {
                let to = unsafe { ffi::duckdb_data_chunk_get_vector(output, c as ffi::idx_t) };
                let from = chunk.vector(c);
                if !*checked {
                    let (a, b) = unsafe {
                        (LogicalType(ffi::duckdb_vector_get_column_type(to)), LogicalType(ffi::duckdb_vector_get_column_type(from)))
                    };
                    if unsafe { ffi::duckdb_get_type_id(a.0) != ffi::duckdb_get_type_id(b.0) } {
                        return Err(format!("internal: column {c} changed type between planning and reading"));
                    }
                }
                // The output vector shares the chunk's buffers; they outlive `chunk`.
                unsafe { ffi::duckdb_vector_reference_vector(to, from) };
            }
            *checked = true;
            unsafe { ffi::duckdb_data_chunk_set_size(output, chunk.len() as ffi::idx_t) };
            Ok(())
        },
        |m| unsafe { ffi::duckdb_function_set_error(info, c_string(m).as_ptr()) },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_and_errors_become_messages() {
        let mut got = String::new();
        contain(Kind::Scan, || panic!("boom"), |m| got = m.to_string());
        assert_eq!(got, "metastore_scan: internal error (please report): boom");
        contain(Kind::Tables, || Err("bad\0uri".into()), |m| got = m.to_string());
        assert_eq!(got, "metastore_tables: bad uri");
        got.clear();
        contain(Kind::Partitions, || Ok(()), |m| got = m.to_string());
        assert!(got.is_empty());
    }

    #[test]
    fn projection() {
        let cols = vec!["a".to_string(), "b".to_string()];
        assert_eq!(projected("Q", &cols, &[0, 1]), "Q");
        assert_eq!(projected("Q", &cols, &[1]), "SELECT \"b\" FROM (Q) AS __pond_out");
        assert_eq!(projected("Q", &cols, &[u64::MAX]), "SELECT CAST(NULL AS BIGINT) FROM (Q) AS __pond_out");
    }
}
