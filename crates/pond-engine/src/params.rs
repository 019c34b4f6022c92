//! Converting bound parameters (an Arrow record batch, one row per execution)
//! into DuckDB values, and Arrow types into DuckDB column types for ingest.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit as ArrowUnit};
use duckdb::types::{TimeUnit, Value};

use crate::error::{Error, Result};

/// Parameter rows for one execution each.
pub type ParamRows = Vec<Vec<Value>>;

/// Turns every row of `batch` into one parameter row.
pub fn rows_from_batch(batch: &RecordBatch) -> Result<ParamRows> {
    let mut rows = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        let mut row = Vec::with_capacity(batch.num_columns());
        for (c, col) in batch.columns().iter().enumerate() {
            row.push(value_at(col.as_ref(), r).map_err(|e| {
                Error::InvalidRequest(format!("parameter {} ('{}') in row {}: {e}", c + 1, batch.schema().field(c).name(), r + 1))
            })?);
        }
        rows.push(row);
    }
    Ok(rows)
}

fn unit(u: &ArrowUnit) -> TimeUnit {
    match u {
        ArrowUnit::Second => TimeUnit::Second,
        ArrowUnit::Millisecond => TimeUnit::Millisecond,
        ArrowUnit::Microsecond => TimeUnit::Microsecond,
        ArrowUnit::Nanosecond => TimeUnit::Nanosecond,
    }
}

/// One Arrow value as a DuckDB value.
pub fn value_at(a: &dyn Array, i: usize) -> std::result::Result<Value, String> {
    if a.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match a.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Boolean(a.as_boolean().value(i)),
        DataType::Int8 => Value::TinyInt(a.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => Value::SmallInt(a.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => Value::Int(a.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => Value::BigInt(a.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => Value::UTinyInt(a.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => Value::USmallInt(a.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => Value::UInt(a.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => Value::UBigInt(a.as_primitive::<UInt64Type>().value(i)),
        DataType::Float16 => Value::Float(a.as_primitive::<Float16Type>().value(i).to_f32()),
        DataType::Float32 => Value::Float(a.as_primitive::<Float32Type>().value(i)),
        DataType::Float64 => Value::Double(a.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Value::Text(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::Text(a.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Value::Text(a.as_string_view().value(i).to_string()),
        DataType::Binary => Value::Blob(a.as_binary::<i32>().value(i).to_vec()),
        DataType::LargeBinary => Value::Blob(a.as_binary::<i64>().value(i).to_vec()),
        DataType::BinaryView => Value::Blob(a.as_binary_view().value(i).to_vec()),
        DataType::FixedSizeBinary(_) => Value::Blob(a.as_fixed_size_binary().value(i).to_vec()),
        DataType::Date32 => Value::Date32(a.as_primitive::<Date32Type>().value(i)),
        DataType::Date64 => Value::Date32((a.as_primitive::<Date64Type>().value(i) / 86_400_000) as i32),
        DataType::Timestamp(u, tz) => {
            let v = match u {
                ArrowUnit::Second => a.as_primitive::<TimestampSecondType>().value(i),
                ArrowUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(i),
                ArrowUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i),
                ArrowUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(i),
            };
            if tz.is_none() && matches!(u, ArrowUnit::Nanosecond) {
                // Bound as text: the driver's TIMESTAMP binding keeps only microseconds.
                let dt = chrono::DateTime::from_timestamp(v.div_euclid(1_000_000_000), v.rem_euclid(1_000_000_000) as u32)
                    .ok_or("timestamp out of range")?;
                return Ok(Value::Text(dt.format("%Y-%m-%d %H:%M:%S%.9f").to_string()));
            }
            if tz.is_some() {
                // DuckDB binds TIMESTAMP; an instant with a zone is passed as UTC text
                // with an offset so DuckDB casts it to TIMESTAMPTZ where needed.
                let micros = match u {
                    ArrowUnit::Second => v * 1_000_000,
                    ArrowUnit::Millisecond => v * 1_000,
                    ArrowUnit::Microsecond => v,
                    ArrowUnit::Nanosecond => v / 1_000,
                };
                let dt = chrono::DateTime::from_timestamp_micros(micros).ok_or("timestamp out of range")?;
                Value::Text(dt.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
            } else {
                Value::Timestamp(unit(u), v)
            }
        }
        DataType::Time32(ArrowUnit::Second) => Value::Time64(TimeUnit::Second, a.as_primitive::<Time32SecondType>().value(i) as i64),
        DataType::Time32(_) => Value::Time64(TimeUnit::Millisecond, a.as_primitive::<Time32MillisecondType>().value(i) as i64),
        DataType::Time64(ArrowUnit::Microsecond) => {
            Value::Time64(TimeUnit::Microsecond, a.as_primitive::<Time64MicrosecondType>().value(i))
        }
        DataType::Time64(_) => Value::Time64(TimeUnit::Nanosecond, a.as_primitive::<Time64NanosecondType>().value(i)),
        DataType::Decimal128(p, s) => {
            let v = a.as_primitive::<Decimal128Type>().value(i);
            if *p <= 38 && *s >= 0 {
                Value::Decimal(duckdb::types::Decimal::new(*p, *s as u8, v).map_err(|e| e.to_string())?)
            } else {
                Value::Text(Decimal128Type::format_decimal(v, *p, *s))
            }
        }
        DataType::Decimal256(p, s) => Value::Text(Decimal256Type::format_decimal(a.as_primitive::<Decimal256Type>().value(i), *p, *s)),
        DataType::Interval(_) => {
            let s = arrow_cast::display::ArrayFormatter::try_new(a, &Default::default()).map_err(|e| e.to_string())?;
            Value::Text(s.value(i).to_string())
        }
        DataType::List(_) => list_values(a.as_list::<i32>().value(i).as_ref())?,
        DataType::LargeList(_) => list_values(a.as_list::<i64>().value(i).as_ref())?,
        DataType::Dictionary(_, _) => {
            let s = arrow_cast::display::ArrayFormatter::try_new(a, &Default::default()).map_err(|e| e.to_string())?;
            Value::Text(s.value(i).to_string())
        }
        other => return Err(format!("parameters of Arrow type {other} are not supported")),
    })
}

fn list_values(a: &dyn Array) -> std::result::Result<Value, String> {
    (0..a.len()).map(|j| value_at(a, j)).collect::<std::result::Result<Vec<_>, _>>().map(Value::List)
}

/// DuckDB column type for an Arrow type, for `CREATE TABLE` during bulk ingest.
pub fn duckdb_type(dt: &DataType) -> Result<String> {
    pond_lake::duckdb_type(dt).map_err(Error::InvalidRequest)
}

/// DuckDB's name for a result column's logical type ("HUGEINT", "DECIMAL(18,3)",
/// "INTEGER[]", "STRUCT(a INTEGER)", "JSON", …). Enum members and fixed array
/// sizes are not exposed by the C API, so those print as "ENUM" and "T[]".
pub fn logical_type_name(lt: &duckdb::core::LogicalTypeHandle) -> String {
    use duckdb::core::LogicalTypeId as Id;
    if let Some(alias) = lt.get_alias() {
        return alias;
    }
    let children = |lt: &duckdb::core::LogicalTypeHandle| -> Vec<String> {
        (0..lt.num_children())
            .map(|i| format!("{} {}", crate::sql::quote_ident(&lt.child_name(i)), logical_type_name(&lt.child(i))))
            .collect()
    };
    match lt.try_id() {
        Ok(id) => match id {
            Id::Boolean => "BOOLEAN".into(),
            Id::Tinyint => "TINYINT".into(),
            Id::Smallint => "SMALLINT".into(),
            Id::Integer => "INTEGER".into(),
            Id::Bigint => "BIGINT".into(),
            Id::UTinyint => "UTINYINT".into(),
            Id::USmallint => "USMALLINT".into(),
            Id::UInteger => "UINTEGER".into(),
            Id::UBigint => "UBIGINT".into(),
            Id::Hugeint => "HUGEINT".into(),
            Id::UHugeint => "UHUGEINT".into(),
            Id::Float => "FLOAT".into(),
            Id::Double => "DOUBLE".into(),
            Id::Decimal => format!("DECIMAL({},{})", lt.decimal_width(), lt.decimal_scale()),
            Id::Varchar => "VARCHAR".into(),
            Id::Blob => "BLOB".into(),
            Id::Date => "DATE".into(),
            Id::Time => "TIME".into(),
            Id::TimeNs => "TIME_NS".into(),
            Id::TimeTZ => "TIME WITH TIME ZONE".into(),
            Id::Timestamp => "TIMESTAMP".into(),
            Id::TimestampS => "TIMESTAMP_S".into(),
            Id::TimestampMs => "TIMESTAMP_MS".into(),
            Id::TimestampNs => "TIMESTAMP_NS".into(),
            Id::TimestampTZ => "TIMESTAMP WITH TIME ZONE".into(),
            Id::Interval => "INTERVAL".into(),
            Id::Uuid => "UUID".into(),
            Id::Enum => "ENUM".into(),
            Id::Bit => "BIT".into(),
            Id::Bignum => "BIGNUM".into(),
            Id::List | Id::Array => format!("{}[]", logical_type_name(&lt.child(0))),
            Id::Struct => format!("STRUCT({})", children(lt).join(", ")),
            Id::Union => format!("UNION({})", children(lt).join(", ")),
            Id::Map => format!("MAP({}, {})", logical_type_name(&lt.child(0)), logical_type_name(&lt.child(1))),
            Id::SqlNull => "NULL".into(),
            Id::Geometry => "GEOMETRY".into(),
            Id::Variant => "VARIANT".into(),
            other => format!("{other:?}").to_uppercase(),
        },
        Err(raw) => format!("TYPE#{raw}"),
    }
}
