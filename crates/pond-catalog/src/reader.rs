//! A table's storage descriptor → the DuckDB query that reads the selected
//! partitions' files.
//!
//! The query reads only the files it is given (the selected partitions'), with
//! partition columns typed as the catalog declares them and filled from the
//! catalog's partition values, not from directory names: partitions whose
//! location is not in `key=value` layout read correctly. When every file does
//! sit under its own `key=value` directories, one reader with DuckDB's hive
//! partitioning reads them all (one scan, parallel over files); otherwise each
//! partition is its own reader under `UNION ALL`.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::model::Table;
use crate::paths;
use crate::types::duckdb_type;

/// How a table's files are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Parquet,
    /// Hive's LazySimpleSerDe text: one line per row, one delimiter.
    Text {
        delim: String,
        null: String,
        escape: Option<String>,
        skip_header: u64,
    },
    /// OpenCSVSerde: quoted CSV.
    Csv {
        delim: String,
        quote: String,
        escape: String,
        skip_header: u64,
    },
    /// One JSON object per line (Hive's JsonSerDe, the OpenX JSON SerDe).
    Json,
    /// Avro files, through DuckDB's `avro` extension.
    Avro,
}

impl Format {
    pub fn name(&self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Text { .. } => "text",
            Format::Csv { .. } => "csv",
            Format::Json => "json",
            Format::Avro => "avro",
        }
    }
}

/// The format of `table`, or why Pond cannot read it.
pub fn format_of(catalog: &str, table: &Table) -> Result<Format> {
    let unsupported = |reason: String| Error::Unsupported { catalog: catalog.into(), table: table.qualified(), reason };
    if table.table_type.eq_ignore_ascii_case("VIRTUAL_VIEW") || table.table_type.eq_ignore_ascii_case("MATERIALIZED_VIEW") {
        return Err(unsupported("it is a Hive view (Pond does not translate HiveQL view text)".into()));
    }
    let transactional = table.params.iter().any(|(k, v)| k.eq_ignore_ascii_case("transactional") && v.eq_ignore_ascii_case("true"));
    if transactional {
        return Err(unsupported("it is a transactional (ACID) table; its delta files need Hive's merge-on-read".into()));
    }
    if table.params.get("table_type").is_some_and(|t| t.eq_ignore_ascii_case("ICEBERG")) {
        return Err(unsupported("it is an Iceberg table, which Pond does not read through a metastore yet (read it with DuckDB's iceberg extension: iceberg_scan on its metadata_location)".into()));
    }
    let s = &table.storage;
    let serde = s.serde.as_deref().unwrap_or("").to_ascii_lowercase();
    let input = s.input_format.as_deref().unwrap_or("").to_ascii_lowercase();
    let param = |names: &[&str]| names.iter().find_map(|n| s.serde_params.get(*n).or_else(|| table.params.get(*n)).cloned());
    let skip_header = param(&["skip.header.line.count"]).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    if serde.contains("parquet") || input.contains("parquet") {
        Ok(Format::Parquet)
    } else if serde.contains("opencsvserde") {
        Ok(Format::Csv {
            delim: param(&["separatorChar"]).unwrap_or_else(|| ",".into()),
            quote: param(&["quoteChar"]).unwrap_or_else(|| "\"".into()),
            escape: param(&["escapeChar"]).unwrap_or_else(|| "\\".into()),
            skip_header,
        })
    } else if serde.contains("jsonserde") || serde.contains("json") {
        Ok(Format::Json)
    } else if serde.contains("avro") || input.contains("avro") {
        Ok(Format::Avro)
    } else if serde.contains("orc") || input.contains("orc") {
        Err(unsupported("ORC files have no reader in this DuckDB build (use Parquet, or read the table elsewhere)".into()))
    } else if serde.contains("lazysimpleserde") || (serde.is_empty() && input.contains("textinputformat")) {
        let delim = param(&["field.delim", "separatorChar"]).unwrap_or_else(|| "\u{1}".into());
        // Hive accepts a delimiter given as a decimal byte value ("44" for ',').
        let delim = match delim.parse::<u8>() {
            Ok(b) if delim.len() > 1 => (b as char).to_string(),
            _ => delim,
        };
        Ok(Format::Text {
            delim,
            null: param(&["serialization.null.format"]).unwrap_or_else(|| "\\N".into()),
            escape: param(&["escape.delim"]),
            skip_header,
        })
    } else {
        let what = s.serde.clone().or_else(|| s.input_format.clone()).unwrap_or_else(|| "no SerDe".into());
        Err(unsupported(format!("its storage format ({what}) is not supported; Parquet, text, CSV, JSON and Avro are")))
    }
}

/// One selected partition (or the whole of an unpartitioned table): its key
/// values (`None` is NULL) and its data files.
#[derive(Debug, Clone)]
pub struct Slice {
    pub values: Vec<Option<String>>,
    pub files: Vec<String>,
}

/// A partition value as text, `None` for Hive's NULL partition.
pub fn partition_value(v: &str) -> Option<String> {
    crate::predicate::value_or_null(v).map(str::to_string)
}

/// `'text'` with quotes doubled.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `"name"` with quotes doubled.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Column names with their DuckDB types.
pub type TypedColumns = Vec<(String, String)>;

/// The columns of `table` as DuckDB types: data columns, then partition keys.
pub fn typed_columns(catalog: &str, table: &Table) -> Result<(TypedColumns, TypedColumns)> {
    let map = |cols: &[crate::model::Column]| -> Result<Vec<(String, String)>> {
        cols.iter()
            .map(|c| {
                duckdb_type(&c.catalog_type).map(|t| (c.name.clone(), t)).map_err(|reason| Error::Unsupported {
                    catalog: catalog.into(),
                    table: table.qualified(),
                    reason: format!("column {}: {reason}", c.name),
                })
            })
            .collect()
    };
    Ok((map(&table.columns)?, map(&table.partition_keys)?))
}

/// The query reading `slices` of `table`.
pub fn reader_sql(catalog: &str, table: &Table, format: &Format, slices: &[Slice]) -> Result<String> {
    let (data, keys) = typed_columns(catalog, table)?;
    let slices: Vec<&Slice> = slices.iter().filter(|s| !s.files.is_empty()).collect();
    if slices.is_empty() {
        let cols: Vec<String> = data.iter().chain(&keys).map(|(n, t)| format!("CAST(NULL AS {t}) AS {}", ident(n))).collect();
        return Ok(format!("SELECT {} WHERE false", cols.join(", ")));
    }
    let data_list = data.iter().map(|(n, _)| ident(n)).collect::<Vec<_>>();
    if !keys.is_empty() && *format != Format::Avro && slices.iter().all(|s| in_hive_layout(s, &keys)) {
        let files: Vec<&String> = slices.iter().flat_map(|s| &s.files).collect();
        let hive_types: Vec<String> = keys.iter().map(|(n, t)| format!("{}: {t}", literal(n))).collect();
        let extra = format!("hive_partitioning = true, hive_types = {{{}}}", hive_types.join(", "));
        let cols: Vec<String> = data_list.iter().cloned().chain(keys.iter().map(|(n, _)| ident(n))).collect();
        return Ok(format!("SELECT {} FROM {}", cols.join(", "), reader_call(format, &files, &data, &extra)));
    }
    let parts: Vec<String> = slices
        .iter()
        .map(|s| {
            let files: Vec<&String> = s.files.iter().collect();
            let mut cols = data_list.clone();
            for ((name, ty), v) in keys.iter().zip(&s.values) {
                let value = v.as_deref().map(literal).unwrap_or_else(|| "NULL".into());
                cols.push(format!("CAST({value} AS {ty}) AS {}", ident(name)));
            }
            format!("SELECT {} FROM {}", cols.join(", "), reader_call(format, &files, &data, "hive_partitioning = false"))
        })
        .collect();
    Ok(parts.join(" UNION ALL "))
}

/// Whether every file of the slice sits under `/key=value/` directories for
/// every key, with values DuckDB's hive partitioning reads back unchanged.
fn in_hive_layout(slice: &Slice, keys: &[(String, String)]) -> bool {
    keys.iter().zip(&slice.values).all(|((k, _), v)| {
        let Some(v) = v else { return false };
        if paths::escape(v) != *v || paths::escape(k) != *k || v.is_empty() {
            return false;
        }
        let needle = format!("/{k}={v}/");
        slice.files.iter().all(|f| f.contains(&needle))
    }) && slice.files.iter().all(|f| {
        // No other key=value directory that DuckDB would also take for a partition column.
        f.split('/').filter(|c| c.contains('=')).count() == keys.len()
    })
}

fn reader_call(format: &Format, files: &[&String], data: &[(String, String)], extra: &str) -> String {
    let list = format!("[{}]", files.iter().map(|f| literal(f)).collect::<Vec<_>>().join(", "));
    let columns = || {
        let cols: BTreeMap<usize, String> =
            data.iter().enumerate().map(|(i, (n, t))| (i, format!("{}: {}", literal(n), literal(t)))).collect();
        format!("{{{}}}", cols.into_values().collect::<Vec<_>>().join(", "))
    };
    match format {
        Format::Parquet => format!("read_parquet({list}, {extra})"),
        Format::Text { delim, null, escape, skip_header } => format!(
            "read_csv({list}, {extra}, auto_detect = false, header = false, delim = {}, quote = '', escape = {}, nullstr = {}, \
             skip = {skip_header}, null_padding = true, columns = {})",
            literal(delim),
            literal(escape.as_deref().unwrap_or("")),
            literal(null),
            columns()
        ),
        Format::Csv { delim, quote, escape, skip_header } => format!(
            "read_csv({list}, {extra}, auto_detect = false, header = false, delim = {}, quote = {}, escape = {}, skip = {skip_header}, \
             null_padding = true, columns = {})",
            literal(delim),
            literal(quote),
            literal(escape),
            columns()
        ),
        Format::Json => format!("read_json({list}, {extra}, format = 'newline_delimited', columns = {})", columns()),
        Format::Avro => format!("read_avro({list})"),
    }
}
