//! Conversions an import needs: rows read from JSON (an InfluxDB answer or
//! an HTTP endpoint's objects) into Arrow batches, and Arrow batches into
//! line protocol for the time-series ingest path.
//!
//! JSON values are kept as their raw text until their column's type is
//! known, so integers stay exact and floats are parsed by Rust's correctly
//! rounded parser. Every error names the source row it comes from.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use crate::{Error, Result};

/// The type of a column built from JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Nanoseconds since the epoch.
    Time,
    Int,
    Float,
    Bool,
    Str,
}

impl ColumnType {
    fn name(self) -> &'static str {
        match self {
            ColumnType::Time => "timestamp",
            ColumnType::Int => "integer",
            ColumnType::Float => "float",
            ColumnType::Bool => "boolean",
            ColumnType::Str => "string",
        }
    }
}

/// What a raw JSON value is, from its first character.
fn kind_of(raw: &str) -> Option<ColumnType> {
    match raw.as_bytes().first()? {
        b'n' => None,
        b't' | b'f' => Some(ColumnType::Bool),
        b'"' | b'{' | b'[' => Some(ColumnType::Str),
        _ if raw.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) => Some(ColumnType::Float),
        _ if raw.parse::<i64>().is_ok() => Some(ColumnType::Int),
        _ => Some(ColumnType::Float),
    }
}

/// The column types of `rows` (objects as (key, raw value) pairs, keys in
/// first-seen order): integers and floats together make a float column;
/// objects and arrays are kept as JSON text. `first_row`: the number of the
/// first row in the source, for errors.
pub fn infer(rows: &[Vec<(String, String)>], first_row: u64) -> Result<Vec<(String, ColumnType)>> {
    let mut cols: Vec<(String, Option<ColumnType>)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        for (k, raw) in row {
            let pos = match cols.iter().position(|(c, _)| c == k) {
                Some(p) => p,
                None => {
                    cols.push((k.clone(), None));
                    cols.len() - 1
                }
            };
            let Some(kind) = kind_of(raw) else { continue };
            let slot = &mut cols[pos].1;
            *slot = match (*slot, kind) {
                (None, k) => Some(k),
                (Some(a), b) if a == b => Some(a),
                (Some(ColumnType::Int), ColumnType::Float) | (Some(ColumnType::Float), ColumnType::Int) => Some(ColumnType::Float),
                (Some(a), b) => {
                    return Err(Error::Invalid(format!(
                        "row {}, key '{k}': a {} where earlier rows have a {} (one key holds one type)",
                        first_row + i as u64,
                        b.name(),
                        a.name()
                    )))
                }
            };
        }
    }
    Ok(cols.into_iter().map(|(k, t)| (k, t.unwrap_or(ColumnType::Str))).collect())
}

fn bad(row: u64, column: &str, want: ColumnType, raw: &str) -> Error {
    let shown: String = raw.chars().take(40).collect();
    Error::Invalid(format!("row {row}, column '{column}': {shown} is not a {} value", want.name()))
}

/// A column's builder.
enum Builder {
    Time(TimestampNanosecondBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
}

impl Builder {
    fn new(t: ColumnType) -> Builder {
        match t {
            ColumnType::Time => Builder::Time(TimestampNanosecondBuilder::new()),
            ColumnType::Int => Builder::Int(Int64Builder::new()),
            ColumnType::Float => Builder::Float(Float64Builder::new()),
            ColumnType::Bool => Builder::Bool(BooleanBuilder::new()),
            ColumnType::Str => Builder::Str(StringBuilder::new()),
        }
    }

    fn null(&mut self) {
        match self {
            Builder::Time(b) => b.append_null(),
            Builder::Int(b) => b.append_null(),
            Builder::Float(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Str(b) => b.append_null(),
        }
    }

    /// Appends a raw JSON value; `Err(())` if it does not fit the column.
    fn push(&mut self, raw: &str) -> std::result::Result<(), ()> {
        if raw == "null" {
            self.null();
            return Ok(());
        }
        match self {
            Builder::Time(b) => b.append_value(raw.parse::<i64>().map_err(|_| ())?),
            Builder::Int(b) => b.append_value(raw.parse::<i64>().map_err(|_| ())?),
            Builder::Float(b) => {
                if raw.starts_with(['"', 't', 'f', '{', '[']) {
                    return Err(());
                }
                b.append_value(raw.parse::<f64>().map_err(|_| ())?)
            }
            Builder::Bool(b) => b.append_value(serde_json::from_str::<bool>(raw).map_err(|_| ())?),
            Builder::Str(b) => {
                if raw.starts_with('"') {
                    b.append_value(serde_json::from_str::<String>(raw).map_err(|_| ())?)
                } else if raw.starts_with(['{', '[']) {
                    b.append_value(raw)
                } else {
                    return Err(());
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> (DataType, ArrayRef) {
        match self {
            Builder::Time(mut b) => (DataType::Timestamp(TimeUnit::Nanosecond, None), Arc::new(b.finish())),
            Builder::Int(mut b) => (DataType::Int64, Arc::new(b.finish())),
            Builder::Float(mut b) => (DataType::Float64, Arc::new(b.finish())),
            Builder::Bool(mut b) => (DataType::Boolean, Arc::new(b.finish())),
            Builder::Str(mut b) => (DataType::Utf8, Arc::new(b.finish())),
        }
    }
}

/// A batch from positional rows (an InfluxDB series: every row has a value
/// for every column).
pub fn positional_batch(
    columns: &[(String, ColumnType)],
    rows: &[Vec<&serde_json::value::RawValue>],
    first_row: u64,
) -> Result<RecordBatch> {
    let mut builders: Vec<Builder> = columns.iter().map(|(_, t)| Builder::new(*t)).collect();
    for (i, row) in rows.iter().enumerate() {
        let n = first_row + i as u64;
        if row.len() != columns.len() {
            return Err(Error::Invalid(format!("row {n} has {} values for {} columns", row.len(), columns.len())));
        }
        for ((b, (name, t)), raw) in builders.iter_mut().zip(columns).zip(row) {
            b.push(raw.get()).map_err(|()| bad(n, name, *t, raw.get()))?;
        }
    }
    finish(columns, builders)
}

/// A batch from keyed rows (JSON objects).
pub fn keyed_batch(columns: &[(String, ColumnType)], rows: &[Vec<(String, String)>], first_row: u64) -> Result<RecordBatch> {
    let mut builders: Vec<Builder> = columns.iter().map(|(_, t)| Builder::new(*t)).collect();
    let mut seen = vec![false; columns.len()];
    for (i, row) in rows.iter().enumerate() {
        let n = first_row + i as u64;
        seen.iter_mut().for_each(|s| *s = false);
        for (k, raw) in row {
            let Some(p) = columns.iter().position(|(c, _)| c == k) else { continue };
            if seen[p] {
                return Err(Error::Invalid(format!("row {n}: key '{k}' appears twice")));
            }
            seen[p] = true;
            builders[p].push(raw).map_err(|()| bad(n, k, columns[p].1, raw))?;
        }
        for (p, s) in seen.iter().enumerate() {
            if !s {
                builders[p].null();
            }
        }
    }
    finish(columns, builders)
}

fn finish(columns: &[(String, ColumnType)], builders: Vec<Builder>) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays = Vec::with_capacity(columns.len());
    for ((name, _), b) in columns.iter().zip(builders) {
        let (t, a) = b.finish();
        fields.push(Field::new(name, t, true));
        arrays.push(a);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| Error::Invalid(e.to_string()))
}

/// One JSON object's keys and raw values, in document order.
pub struct Object(pub Vec<(String, String)>);

impl<'de> serde::Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Object;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Object, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<serde_json::value::RawValue>>()? {
                    out.push((k, v.get().to_string()));
                }
                Ok(Object(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// How integer times of a JSON source are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Ns,
    Us,
    Ms,
    S,
}

impl Precision {
    pub fn parse(s: &str) -> Result<Precision> {
        match s.to_ascii_lowercase().as_str() {
            "ns" | "n" => Ok(Precision::Ns),
            "us" | "u" => Ok(Precision::Us),
            "ms" => Ok(Precision::Ms),
            "s" => Ok(Precision::S),
            _ => Err(Error::Invalid(format!("PRECISION '{s}' is not one of ns, us, ms, s"))),
        }
    }

    fn factor(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
        }
    }
}

/// How a batch becomes points.
pub struct PointShape<'a> {
    pub measurement: &'a str,
    pub time: &'a str,
    pub tags: &'a [String],
    pub precision: Precision,
}

fn escape_key(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        if c == '\n' {
            out.push(' ');
            continue;
        }
        out.push(c);
    }
}

fn escape_measurement(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, ',' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

fn time_ns(col: &ArrayRef, precision: Precision) -> Result<Vec<Option<i64>>> {
    let out = match col.data_type() {
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
            let c = arrow_cast::cast(col, &DataType::Timestamp(TimeUnit::Nanosecond, None)).map_err(|e| Error::Invalid(e.to_string()))?;
            c.as_primitive::<TimestampNanosecondType>().iter().collect()
        }
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => {
            let c = arrow_cast::cast(col, &DataType::Int64).map_err(|e| Error::Invalid(e.to_string()))?;
            c.as_primitive::<Int64Type>().iter().map(|v| v.map(|v| v.saturating_mul(precision.factor()))).collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let c = arrow_cast::cast(col, &DataType::Utf8).map_err(|e| Error::Invalid(e.to_string()))?;
            let mut v = Vec::with_capacity(c.len());
            for s in c.as_string::<i32>().iter() {
                v.push(match s {
                    None => None,
                    Some(s) => Some(parse_time_text(s).ok_or_else(|| Error::Invalid(format!("'{s}' is not an RFC 3339 time")))?),
                });
            }
            v
        }
        other => return Err(Error::Invalid(format!("a time column of type {other} cannot give point times"))),
    };
    Ok(out)
}

fn parse_time_text(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt();
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return t.and_utc().timestamp_nanos_opt();
        }
    }
    None
}

/// A field column in line-protocol form.
enum FieldCol {
    Int(ArrayRef),
    UInt(ArrayRef),
    Float(ArrayRef),
    Bool(ArrayRef),
    Str(ArrayRef),
}

fn field_col(col: &ArrayRef) -> Result<FieldCol> {
    let cast = |t: &DataType| arrow_cast::cast(col, t).map_err(|e| Error::Invalid(e.to_string()));
    Ok(match col.data_type() {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => {
            FieldCol::Int(cast(&DataType::Int64)?)
        }
        DataType::UInt64 => FieldCol::UInt(col.clone()),
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => {
            FieldCol::Float(cast(&DataType::Float64)?)
        }
        DataType::Boolean => FieldCol::Bool(col.clone()),
        _ => FieldCol::Str(cast(&DataType::Utf8)?),
    })
}

/// Line protocol for `batch`: one line per row with a time and at least one
/// field (rows without fields are skipped). Returns the text and, per line,
/// its row index in the batch.
pub fn to_lines(batch: &RecordBatch, shape: &PointShape<'_>, first_row: u64) -> Result<(Vec<u8>, Vec<usize>)> {
    let schema = batch.schema();
    let time_idx =
        schema.fields().iter().position(|f| f.name().eq_ignore_ascii_case(shape.time)).ok_or_else(|| {
            Error::Invalid(format!("the source has no time column '{}' (name it with the option TIME 'column')", shape.time))
        })?;
    let times = time_ns(batch.column(time_idx), shape.precision)?;
    let mut tags = Vec::new();
    let mut fields = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        if i == time_idx {
            continue;
        }
        if shape.tags.iter().any(|t| t.eq_ignore_ascii_case(f.name())) {
            let c = arrow_cast::cast(batch.column(i), &DataType::Utf8).map_err(|e| Error::Invalid(e.to_string()))?;
            tags.push((f.name().clone(), c));
        } else {
            fields.push((f.name().clone(), field_col(batch.column(i))?));
        }
    }
    let mut out = String::with_capacity(batch.num_rows() * 64);
    let mut index = Vec::with_capacity(batch.num_rows());
    for (row, t) in times.iter().enumerate() {
        let Some(t) = t else {
            return Err(Error::Invalid(format!("row {}: the time column '{}' is null", first_row + row as u64, shape.time)));
        };
        let start = out.len();
        escape_measurement(shape.measurement, &mut out);
        for (k, c) in &tags {
            let c = c.as_string::<i32>();
            if c.is_null(row) || c.value(row).is_empty() {
                continue;
            }
            out.push(',');
            escape_key(k, &mut out);
            out.push('=');
            escape_key(c.value(row), &mut out);
        }
        let mut first = true;
        for (k, c) in &fields {
            let arr: &ArrayRef = match c {
                FieldCol::Int(a) | FieldCol::UInt(a) | FieldCol::Float(a) | FieldCol::Bool(a) | FieldCol::Str(a) => a,
            };
            if arr.is_null(row) {
                continue;
            }
            out.push(if first { ' ' } else { ',' });
            first = false;
            escape_key(k, &mut out);
            out.push('=');
            match c {
                FieldCol::Int(a) => {
                    out.push_str(&a.as_primitive::<Int64Type>().value(row).to_string());
                    out.push('i');
                }
                FieldCol::UInt(a) => {
                    out.push_str(&a.as_primitive::<UInt64Type>().value(row).to_string());
                    out.push('u');
                }
                FieldCol::Float(a) => {
                    let v = a.as_primitive::<Float64Type>().value(row);
                    if !v.is_finite() {
                        return Err(Error::Invalid(format!(
                            "row {}, column '{k}': {v} cannot be stored in a measurement",
                            first_row + row as u64
                        )));
                    }
                    // Rust prints the shortest text that reads back as the same float.
                    out.push_str(&format!("{v:?}"));
                }
                FieldCol::Bool(a) => out.push_str(if a.as_boolean().value(row) { "true" } else { "false" }),
                FieldCol::Str(a) => {
                    out.push('"');
                    for ch in a.as_string::<i32>().value(row).chars() {
                        if matches!(ch, '"' | '\\') {
                            out.push('\\');
                        }
                        out.push(ch);
                    }
                    out.push('"');
                }
            }
        }
        if first {
            // No field: not a point.
            out.truncate(start);
            continue;
        }
        out.push(' ');
        out.push_str(&t.to_string());
        out.push('\n');
        index.push(row);
    }
    Ok((out.into_bytes(), index))
}

/// DuckDB's name for an Arrow type, for a staging table (`None`: store it as
/// text): only the types DuckDB's appender takes from Arrow as they are.
pub fn duck_type(t: &DataType) -> Option<String> {
    let appendable = matches!(
        t,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Utf8
            | DataType::Binary
            | DataType::Date32
            | DataType::Timestamp(_, None)
            | DataType::Timestamp(TimeUnit::Microsecond, Some(_))
    ) || matches!(t, DataType::Decimal128(p, _) if *p <= 38);
    appendable.then(|| pond_lake::duckdb_type(t).ok()).flatten()
}

/// `batch` with every column DuckDB's appender cannot take from Arrow turned into text.
pub fn appendable(batch: RecordBatch) -> Result<RecordBatch> {
    if batch.schema().fields().iter().all(|f| duck_type(f.data_type()).is_some()) {
        return Ok(batch);
    }
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if duck_type(f.data_type()).is_some() {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        } else {
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(arrow_cast::cast(c, &DataType::Utf8).map_err(|e| Error::Invalid(format!("column '{}': {e}", f.name())))?);
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| Error::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(text: &str) -> Vec<(String, String)> {
        serde_json::from_str::<Object>(text).expect("object").0
    }

    #[test]
    fn json_rows_keep_exact_numbers_and_name_bad_rows() {
        let rows = vec![obj(r#"{"t": 1, "v": 0.1, "n": 9007199254740993, "s": "a"}"#), obj(r#"{"t": 2, "v": 2, "b": true}"#)];
        let cols = infer(&rows, 1).expect("types");
        assert_eq!(
            cols,
            vec![
                ("t".into(), ColumnType::Int),
                ("v".into(), ColumnType::Float),
                ("n".into(), ColumnType::Int),
                ("s".into(), ColumnType::Str),
                ("b".into(), ColumnType::Bool)
            ]
        );
        let b = keyed_batch(&cols, &rows, 1).expect("batch");
        assert_eq!(b.column(2).as_primitive::<Int64Type>().value(0), 9_007_199_254_740_993);
        assert_eq!(b.column(1).as_primitive::<Float64Type>().value(1), 2.0);
        assert!(b.column(4).is_null(0));
        let bad = vec![obj(r#"{"v": 1}"#), obj(r#"{"v": "x"}"#)];
        let e = infer(&bad, 10).expect_err("conflict").to_string();
        assert!(e.contains("row 11") && e.contains("'v'"), "{e}");
    }

    #[test]
    fn batches_become_line_protocol() {
        let rows =
            vec![obj(r#"{"time": 5, "host": "a b", "v": 1.5, "n": 3, "s": "x\"y", "ok": false}"#), obj(r#"{"time": 6, "host": null}"#)];
        let cols = infer(&rows, 1).expect("types");
        let b = keyed_batch(&cols, &rows, 1).expect("batch");
        let tags = vec!["host".to_string()];
        let (text, index) =
            to_lines(&b, &PointShape { measurement: "m", time: "time", tags: &tags, precision: Precision::S }, 1).expect("lines");
        assert_eq!(String::from_utf8(text).expect("utf8"), "m,host=a\\ b v=1.5,n=3i,s=\"x\\\"y\",ok=false 5000000000\n");
        assert_eq!(index, vec![0]);
    }
}
