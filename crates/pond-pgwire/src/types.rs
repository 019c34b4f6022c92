//! Arrow/DuckDB values ↔ PostgreSQL types: the OID each result column is
//! described with, its text and binary encodings, and the decoding of bound
//! parameters into DuckDB values. The mapping is documented in the README
//! ("PostgreSQL wire protocol").

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, IntervalUnit, TimeUnit};
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveTime};
use duckdb::types::{TimeUnit as DuckUnit, Value};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::messages::data::DataRow;

use crate::error::{Error, Result};

/// Days between 1970-01-01 (Arrow, DuckDB) and 2000-01-01 (PostgreSQL binary).
const PG_EPOCH_DAYS: i64 = 10_957;
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS * 86_400 * 1_000_000;

/// How one result column is described and encoded.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub pg: Type,
    pub format: FieldFormat,
}

/// The PostgreSQL type of an Arrow column; `duck` is DuckDB's type name
/// (it tells UUID and JSON apart from VARCHAR).
pub(crate) fn pg_type(dt: &DataType, duck: &str) -> Type {
    let duck = duck.to_ascii_uppercase();
    match dt {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) | DataType::Decimal32(..) | DataType::Decimal64(..) => {
            Type::NUMERIC
        }
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => match duck.as_str() {
            "UUID" => Type::UUID,
            "JSON" => Type::JSON,
            _ => Type::TEXT,
        },
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Interval(IntervalUnit::MonthDayNano) | DataType::Duration(_) => Type::INTERVAL,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            let inner = duck.strip_suffix("[]").unwrap_or("");
            array_of(&pg_type(f.data_type(), inner)).unwrap_or(Type::TEXT)
        }
        _ => Type::TEXT,
    }
}

fn array_of(t: &Type) -> Option<Type> {
    Some(match *t {
        Type::BOOL => Type::BOOL_ARRAY,
        Type::INT2 => Type::INT2_ARRAY,
        Type::INT4 => Type::INT4_ARRAY,
        Type::INT8 => Type::INT8_ARRAY,
        Type::NUMERIC => Type::NUMERIC_ARRAY,
        Type::FLOAT4 => Type::FLOAT4_ARRAY,
        Type::FLOAT8 => Type::FLOAT8_ARRAY,
        Type::TEXT => Type::TEXT_ARRAY,
        Type::UUID => Type::UUID_ARRAY,
        Type::JSON => Type::JSON_ARRAY,
        Type::BYTEA => Type::BYTEA_ARRAY,
        Type::DATE => Type::DATE_ARRAY,
        Type::TIME => Type::TIME_ARRAY,
        Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
        Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
        Type::INTERVAL => Type::INTERVAL_ARRAY,
        _ => return None,
    })
}

/// Field descriptions for a result schema; `binary(i)` says whether column i
/// is sent in binary.
pub(crate) fn fields(schema: &arrow_schema::Schema, duck: &[String], binary: impl Fn(usize) -> bool) -> (Vec<FieldInfo>, Vec<Column>) {
    let mut infos = Vec::with_capacity(schema.fields().len());
    let mut cols = Vec::with_capacity(schema.fields().len());
    for (i, f) in schema.fields().iter().enumerate() {
        let pg = pg_type(f.data_type(), duck.get(i).map(String::as_str).unwrap_or(""));
        let format = if binary(i) { FieldFormat::Binary } else { FieldFormat::Text };
        infos.push(FieldInfo::new(f.name().clone(), None, None, pg.clone(), format));
        cols.push(Column { pg, format });
    }
    (infos, cols)
}

/// Encodes every row of `batch` as a DataRow.
pub(crate) fn encode_batch(batch: &RecordBatch, cols: &[Column]) -> Result<Vec<DataRow>> {
    let mut enc = RowEncoder::new(cols.to_vec());
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut at = 0;
    while at < batch.num_rows() {
        at = enc.encode(batch, at, usize::MAX, &mut rows)?;
    }
    Ok(rows)
}

/// Turns result batches into DataRows, a chunk of rows at a time. A chunk is
/// written into one `Vec` (plain appends the compiler inlines), then cut
/// into one DataRow per row without copying; once those rows have been
/// written to the socket and dropped, the next chunk reuses the allocation.
pub(crate) struct RowEncoder {
    cols: Vec<Column>,
    /// What is left of the last chunk once its rows were cut off (empty).
    spent: BytesMut,
    /// Where each row of the chunk being written ends.
    ends: Vec<usize>,
}

impl RowEncoder {
    pub(crate) fn new(cols: Vec<Column>) -> Self {
        Self { cols, spent: BytesMut::new(), ends: Vec::new() }
    }

    /// Encodes rows of `batch` from `start` on, pushing one DataRow per row
    /// onto `out`, until the batch ends or about `budget` bytes are written.
    /// Returns the index of the first row not encoded.
    pub(crate) fn encode(&mut self, batch: &RecordBatch, start: usize, budget: usize, out: &mut Vec<DataRow>) -> Result<usize> {
        let n = batch.num_rows();
        if start >= n {
            return Ok(n);
        }
        let opts = FormatOptions::default();
        let mut encs = Vec::with_capacity(self.cols.len());
        for (c, col) in self.cols.iter().enumerate() {
            let arr = batch.column(c);
            let nulls = arr.nulls().filter(|nb| nb.null_count() > 0);
            let enc = match Fast::new(arr, col) {
                Some(f) => Enc::Fast(f),
                None => Enc::General(arr.as_ref(), ArrayFormatter::try_new(arr.as_ref(), &opts)?),
            };
            encs.push((nulls, enc));
        }
        // The previous chunk's allocation when all its rows are gone (else a new one).
        let mut buf = Vec::from(std::mem::take(&mut self.spent));
        buf.clear();
        buf.reserve(budget.min(CHUNK_BYTES));
        self.ends.clear();
        let mut scratch = BytesMut::new();
        let mut widest = 0usize;
        let mut r = start;
        while r < n {
            // A row that might not fit ends the chunk (rather than moving the
            // buffer mid-chunk), unless the chunk is still empty.
            if r > start && (buf.len() >= budget || buf.capacity() - buf.len() < widest) {
                break;
            }
            let row_start = buf.len();
            for ((nulls, enc), col) in encs.iter().zip(&self.cols) {
                if nulls.is_some_and(|nb| nb.is_null(r)) {
                    buf.extend_from_slice(&(-1i32).to_be_bytes());
                    continue;
                }
                match enc {
                    Enc::Fast(f) => {
                        // Length placeholder, patched once the value is written.
                        let at = buf.len();
                        buf.extend_from_slice(&[0; 4]);
                        f.encode(r, col.format, &mut buf);
                        let len = (buf.len() - at - 4) as i32;
                        buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
                    }
                    Enc::General(arr, fmt) => {
                        scratch.clear();
                        match col.format {
                            FieldFormat::Text => text(*arr, r, &col.pg, fmt, &mut scratch),
                            FieldFormat::Binary => binary(*arr, r, &col.pg, fmt, &mut scratch)?,
                        }
                        buf.extend_from_slice(&(scratch.len() as i32).to_be_bytes());
                        buf.extend_from_slice(&scratch);
                    }
                }
            }
            widest = widest.max(buf.len() - row_start);
            self.ends.push(buf.len());
            r += 1;
        }
        let fields = self.cols.len() as i16;
        // Zero-copy: the Vec becomes the BytesMut the rows are cut from.
        let mut rows = BytesMut::from(bytes::Bytes::from(buf));
        let mut at = 0;
        out.reserve(self.ends.len());
        for &end in &self.ends {
            out.push(DataRow::new(rows.split_to(end - at), fields));
            at = end;
        }
        self.spent = rows;
        Ok(r)
    }
}

/// Bytes of DataRows encoded at a time (and the size of the reused buffer).
pub(crate) const CHUNK_BYTES: usize = 256 * 1024;

/// How one column of a batch is encoded.
enum Enc<'a> {
    Fast(Fast<'a>),
    General(&'a dyn Array, ArrayFormatter<'a>),
}

/// A column of one of the hot types of analytic results, downcast once per
/// chunk: the row loop then writes its values with no per-value type
/// dispatch, formatter or allocation. Other types take the general path.
enum Fast<'a> {
    Int(IntCol<'a>),
    Str(&'a arrow_array::StringArray),
    LargeStr(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    Decimal(&'a arrow_array::Decimal128Array, u32),
    Date(&'a arrow_array::Date32Array),
    Bool(&'a arrow_array::BooleanArray),
    F32(&'a arrow_array::Float32Array),
    F64(&'a arrow_array::Float64Array),
    /// Timestamps in microseconds (DuckDB's TIMESTAMP and TIMESTAMPTZ); `true` with a time zone.
    Micros(&'a arrow_array::TimestampMicrosecondArray, bool),
}

enum IntCol<'a> {
    I8(&'a arrow_array::Int8Array),
    I16(&'a arrow_array::Int16Array),
    I32(&'a arrow_array::Int32Array),
    I64(&'a arrow_array::Int64Array),
    U8(&'a arrow_array::UInt8Array),
    U16(&'a arrow_array::UInt16Array),
    U32(&'a arrow_array::UInt32Array),
}

impl IntCol<'_> {
    #[inline]
    fn value(&self, i: usize) -> i64 {
        match self {
            IntCol::I8(a) => a.value(i) as i64,
            IntCol::I16(a) => a.value(i) as i64,
            IntCol::I32(a) => a.value(i) as i64,
            IntCol::I64(a) => a.value(i),
            IntCol::U8(a) => a.value(i) as i64,
            IntCol::U16(a) => a.value(i) as i64,
            IntCol::U32(a) => a.value(i) as i64,
        }
    }
}

impl<'a> Fast<'a> {
    fn new(a: &'a ArrayRef, col: &Column) -> Option<Self> {
        let binary = col.format == FieldFormat::Binary;
        let int = |c: IntCol<'a>| Some(Fast::Int(c));
        match a.data_type() {
            // Binary integers are written at the width of the column's PostgreSQL type.
            DataType::Int8 if !binary || col.pg == Type::INT2 => int(IntCol::I8(a.as_primitive())),
            DataType::Int16 if !binary || col.pg == Type::INT2 => int(IntCol::I16(a.as_primitive())),
            DataType::Int32 if !binary || col.pg == Type::INT4 => int(IntCol::I32(a.as_primitive())),
            DataType::Int64 if !binary || col.pg == Type::INT8 => int(IntCol::I64(a.as_primitive())),
            DataType::UInt8 if !binary || col.pg == Type::INT2 => int(IntCol::U8(a.as_primitive())),
            DataType::UInt16 if !binary || col.pg == Type::INT4 => int(IntCol::U16(a.as_primitive())),
            DataType::UInt32 if !binary || col.pg == Type::INT8 => int(IntCol::U32(a.as_primitive())),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if binary && !matches!(col.pg, Type::TEXT | Type::JSON) => None,
            DataType::Utf8 => Some(Fast::Str(a.as_string())),
            DataType::LargeUtf8 => Some(Fast::LargeStr(a.as_string())),
            DataType::Utf8View => Some(Fast::View(a.as_string_view())),
            DataType::Decimal128(_, s) if *s >= 0 && (!binary || col.pg == Type::NUMERIC) => {
                Some(Fast::Decimal(a.as_primitive(), *s as u32))
            }
            DataType::Date32 if !binary || col.pg == Type::DATE => Some(Fast::Date(a.as_primitive())),
            DataType::Boolean if !binary || col.pg == Type::BOOL => Some(Fast::Bool(a.as_boolean())),
            DataType::Float32 if !binary || col.pg == Type::FLOAT4 => Some(Fast::F32(a.as_primitive())),
            DataType::Float64 if !binary || col.pg == Type::FLOAT8 => Some(Fast::F64(a.as_primitive())),
            DataType::Timestamp(TimeUnit::Microsecond, tz) if !binary || col.pg == Type::TIMESTAMP || col.pg == Type::TIMESTAMPTZ => {
                Some(Fast::Micros(a.as_primitive(), tz.is_some()))
            }
            _ => None,
        }
    }

    #[inline]
    fn encode(&self, i: usize, format: FieldFormat, out: &mut Vec<u8>) {
        let binary = format == FieldFormat::Binary;
        match self {
            Fast::Int(c) => {
                let v = c.value(i);
                if !binary {
                    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
                } else {
                    match c {
                        IntCol::I8(_) | IntCol::I16(_) | IntCol::U8(_) => out.put_i16(v as i16),
                        IntCol::I32(_) | IntCol::U16(_) => out.put_i32(v as i32),
                        IntCol::I64(_) | IntCol::U32(_) => out.put_i64(v),
                    }
                }
            }
            Fast::Str(a) => out.extend_from_slice(a.value(i).as_bytes()),
            Fast::LargeStr(a) => out.extend_from_slice(a.value(i).as_bytes()),
            Fast::View(a) => out.extend_from_slice(a.value(i).as_bytes()),
            Fast::Decimal(a, scale) if binary => numeric_binary_i128(a.value(i), *scale, out),
            Fast::Decimal(a, scale) => decimal_text(a.value(i), *scale, out),
            Fast::Date(a) if binary => out.put_i32((a.value(i) as i64 - PG_EPOCH_DAYS) as i32),
            Fast::Date(a) => fmt_date(out, a.value(i) as i64),
            Fast::Bool(a) if binary => out.put_u8(a.value(i) as u8),
            Fast::Bool(a) => out.put_u8(if a.value(i) { b't' } else { b'f' }),
            Fast::F32(a) if binary => out.put_f32(a.value(i)),
            Fast::F32(a) => fmt_float(out, a.value(i) as f64, true),
            Fast::F64(a) if binary => out.put_f64(a.value(i)),
            Fast::F64(a) => fmt_float(out, a.value(i), false),
            Fast::Micros(a, _) if binary => out.put_i64(a.value(i) - PG_EPOCH_MICROS),
            Fast::Micros(a, tz) => fmt_timestamp(out, a.value(i), *tz),
        }
    }
}

/// `v` scaled by 10^-scale in PostgreSQL's text form (`-0.50`).
fn decimal_text<B: BufMut>(v: i128, scale: u32, out: &mut B) {
    let mut buf = itoa::Buffer::new();
    // 64-bit formatting is much cheaper, and almost every decimal fits.
    let abs = v.unsigned_abs();
    let digits = match u64::try_from(abs) {
        Ok(small) => buf.format(small).as_bytes(),
        Err(_) => buf.format(abs).as_bytes(),
    };
    if v < 0 {
        out.put_u8(b'-');
    }
    let scale = scale as usize;
    if scale == 0 {
        out.put_slice(digits);
    } else if digits.len() <= scale {
        out.put_slice(b"0.");
        out.put_bytes(b'0', scale - digits.len());
        out.put_slice(digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.put_slice(int);
        out.put_u8(b'.');
        out.put_slice(frac);
    }
}

/// [`numeric_binary_i128`] for the common case of a magnitude that fits 64
/// bits and a scale of at most 16: 64-bit arithmetic only (128-bit division
/// is a library call).
fn numeric_binary_u64<B: BufMut>(neg: bool, abs: u64, scale: u32, out: &mut B) {
    let pow = 10u64.pow(scale);
    let (mut int, frac) = (abs / pow, abs % pow);
    let pad = (4 - scale % 4) % 4;
    // At most 10^16 * 10^3: no overflow.
    let mut frac = frac * 10u64.pow(pad);
    let frac_groups = ((scale + pad) / 4) as usize;
    // u64 has at most 20 digits: 5 integer groups; scale 16: 4 fractional ones.
    let mut int_groups = [0i16; 5];
    let mut ni = 0;
    while int > 0 {
        int_groups[ni] = (int % 10_000) as i16;
        int /= 10_000;
        ni += 1;
    }
    let mut groups = [0i16; 9];
    let mut n = 0;
    for k in (0..ni).rev() {
        groups[n] = int_groups[k];
        n += 1;
    }
    n += frac_groups;
    for k in (ni..n).rev() {
        groups[k] = (frac % 10_000) as i16;
        frac /= 10_000;
    }
    let mut weight = ni as i16 - 1;
    let mut first = 0;
    while first < n && groups[first] == 0 {
        first += 1;
        weight -= 1;
    }
    let mut last = n;
    while last > first && groups[last - 1] == 0 {
        last -= 1;
    }
    if first == last {
        weight = 0;
    }
    out.put_i16((last - first) as i16);
    out.put_i16(weight);
    out.put_u16(if neg && first < last { 0x4000 } else { 0 });
    out.put_u16(scale as u16);
    for g in &groups[first..last] {
        out.put_i16(*g);
    }
}

/// PostgreSQL's binary NUMERIC of `v` scaled by 10^-scale, straight from the
/// integer: base-10000 digit groups aligned on the decimal point.
fn numeric_binary_i128<B: BufMut>(v: i128, scale: u32, out: &mut B) {
    let abs = v.unsigned_abs();
    if let (Ok(small), true) = (u64::try_from(abs), scale <= 16) {
        return numeric_binary_u64(v < 0, small, scale, out);
    }
    let pow = 10u128.checked_pow(scale);
    let Some(pow) = pow else {
        // Scales beyond u128 do not occur in Decimal128 (at most 38).
        let mut s = BytesMut::new();
        decimal_text(v, scale, &mut s);
        return numeric_binary(std::str::from_utf8(&s).unwrap_or("0"), out);
    };
    let (mut int, frac) = (abs / pow, abs % pow);
    let pad = (4 - scale % 4) % 4;
    let mut frac = frac * 10u128.pow(pad);
    let frac_groups = ((scale + pad) / 4) as usize;
    // Groups most significant first, at most 10 integer and 10 fractional ones.
    let mut groups = [0i16; 24];
    let mut n = 0;
    let mut int_groups = [0i16; 12];
    let mut ni = 0;
    while int > 0 {
        int_groups[ni] = (int % 10_000) as i16;
        int /= 10_000;
        ni += 1;
    }
    for k in (0..ni).rev() {
        groups[n] = int_groups[k];
        n += 1;
    }
    let start = n;
    for _ in 0..frac_groups {
        groups[n] = 0;
        n += 1;
    }
    for k in (start..n).rev() {
        groups[k] = (frac % 10_000) as i16;
        frac /= 10_000;
    }
    let mut weight = ni as i16 - 1;
    let mut first = 0;
    while first < n && groups[first] == 0 {
        first += 1;
        weight -= 1;
    }
    let mut last = n;
    while last > first && groups[last - 1] == 0 {
        last -= 1;
    }
    if first == last {
        weight = 0;
    }
    out.put_i16((last - first) as i16);
    out.put_i16(weight);
    out.put_u16(if v < 0 && first < last { 0x4000 } else { 0 });
    out.put_u16(scale as u16);
    for g in &groups[first..last] {
        out.put_i16(*g);
    }
}

fn timestamp_micros(a: &dyn Array, unit: &TimeUnit, i: usize) -> i64 {
    match unit {
        TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(i).saturating_mul(1_000_000),
        TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(i).saturating_mul(1_000),
        TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i),
        TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(i).div_euclid(1_000),
    }
}

fn time_micros(a: &dyn Array, i: usize) -> i64 {
    match a.data_type() {
        DataType::Time32(TimeUnit::Second) => a.as_primitive::<Time32SecondType>().value(i) as i64 * 1_000_000,
        DataType::Time32(_) => a.as_primitive::<Time32MillisecondType>().value(i) as i64 * 1_000,
        DataType::Time64(TimeUnit::Nanosecond) => a.as_primitive::<Time64NanosecondType>().value(i) / 1_000,
        _ => a.as_primitive::<Time64MicrosecondType>().value(i),
    }
}

fn date_days(a: &dyn Array, i: usize) -> i64 {
    match a.data_type() {
        DataType::Date64 => a.as_primitive::<Date64Type>().value(i).div_euclid(86_400_000),
        _ => a.as_primitive::<Date32Type>().value(i) as i64,
    }
}

/// (months, days, microseconds)
fn interval_parts(a: &dyn Array, i: usize) -> (i32, i32, i64) {
    match a.data_type() {
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = a.as_primitive::<IntervalMonthDayNanoType>().value(i);
            (v.months, v.days, v.nanoseconds / 1_000)
        }
        DataType::Duration(u) => {
            let micros = match u {
                TimeUnit::Second => a.as_primitive::<DurationSecondType>().value(i) * 1_000_000,
                TimeUnit::Millisecond => a.as_primitive::<DurationMillisecondType>().value(i) * 1_000,
                TimeUnit::Microsecond => a.as_primitive::<DurationMicrosecondType>().value(i),
                TimeUnit::Nanosecond => a.as_primitive::<DurationNanosecondType>().value(i) / 1_000,
            };
            (0, 0, micros)
        }
        _ => (0, 0, 0),
    }
}

fn fmt_time<B: BufMut>(out: &mut B, micros: i64) {
    let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if micros < 0 {
        // Not produced by the callers (times of day, absolute intervals); kept as it was.
        out.put_slice(format!("{h:02}:{m:02}:{s:02}").as_bytes());
        if frac != 0 {
            let f = format!("{frac:06}");
            out.put_slice(b".");
            out.put_slice(f.trim_end_matches('0').as_bytes());
        }
        return;
    }
    let two = |v: i64| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
    if (0..100).contains(&h) {
        out.put_slice(&two(h));
    } else {
        out.put_slice(itoa::Buffer::new().format(h).as_bytes());
    }
    let (m, s) = (two(m), two(s));
    out.put_slice(&[b':', m[0], m[1], b':', s[0], s[1]]);
    if frac != 0 {
        // Six digits, trailing zeros dropped.
        let mut digits = [0u8; 7];
        digits[0] = b'.';
        let mut f = frac;
        for k in (1..7).rev() {
            digits[k] = b'0' + (f % 10) as u8;
            f /= 10;
        }
        let mut end = 7;
        while digits[end - 1] == b'0' {
            end -= 1;
        }
        out.put_slice(&digits[..end]);
    }
}

/// (year, month, day) of a day count since 1970-01-01, by integer arithmetic
/// (Howard Hinnant's civil_from_days); valid for the whole proleptic calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn fmt_date<B: BufMut>(out: &mut B, days: i64) {
    let (y, m, dd) = civil_from_days(days);
    if (1..=9999).contains(&y) {
        // YYYY-MM-DD without a formatter (the common case).
        let digit = |v: u32| b'0' + v as u8;
        let y = y as u32;
        out.put_slice(&[
            digit(y / 1000),
            digit(y / 100 % 10),
            digit(y / 10 % 10),
            digit(y % 10),
            b'-',
            digit(m / 10),
            digit(m % 10),
            b'-',
            digit(dd / 10),
            digit(dd % 10),
        ]);
        return;
    }
    match NaiveDate::from_num_days_from_ce_opt((days + 719_163) as i32) {
        Some(d) => {
            use chrono::Datelike;
            if d.year() <= 0 {
                out.put_slice(format!("{:04}-{:02}-{:02} BC", 1 - d.year(), d.month(), d.day()).as_bytes());
            } else {
                out.put_slice(d.format("%Y-%m-%d").to_string().as_bytes());
            }
        }
        None => out.put_slice(if days > 0 { b"infinity" } else { b"-infinity" }),
    }
}

fn fmt_timestamp<B: BufMut>(out: &mut B, micros: i64, tz: bool) {
    fmt_date(out, micros.div_euclid(86_400_000_000));
    out.put_slice(b" ");
    fmt_time(out, micros.rem_euclid(86_400_000_000));
    if tz {
        out.put_slice(b"+00");
    }
}

fn fmt_interval(out: &mut BytesMut, (months, days, micros): (i32, i32, i64)) {
    let mut parts: Vec<String> = Vec::new();
    let unit = |n: i64, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    let (years, mons) = (months / 12, months % 12);
    if years != 0 {
        parts.push(unit(years as i64, "year", "years"));
    }
    if mons != 0 {
        parts.push(unit(mons as i64, "mon", "mons"));
    }
    if days != 0 {
        parts.push(unit(days as i64, "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let mut t = BytesMut::new();
        fmt_time(&mut t, micros.abs());
        let sign = if micros < 0 { "-" } else { "" };
        parts.push(format!("{sign}{}", String::from_utf8_lossy(&t)));
    }
    out.extend_from_slice(parts.join(" ").as_bytes());
}

fn fmt_float<B: BufMut>(out: &mut B, v: f64, single: bool) {
    if v.is_nan() {
        out.put_slice(b"NaN");
    } else if v.is_infinite() {
        out.put_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else if single {
        let _ = std::fmt::Write::write_fmt(&mut BytesWriter(out), format_args!("{}", v as f32));
    } else {
        let _ = std::fmt::Write::write_fmt(&mut BytesWriter(out), format_args!("{v}"));
    }
}

fn hex_bytes(out: &mut BytesMut, b: &[u8]) {
    out.extend_from_slice(b"\\x");
    for x in b {
        out.extend_from_slice(format!("{x:02x}").as_bytes());
    }
}

fn bytes_at(a: &dyn Array, i: usize) -> &[u8] {
    match a.data_type() {
        DataType::LargeBinary => a.as_binary::<i64>().value(i),
        DataType::BinaryView => a.as_binary_view().value(i),
        DataType::FixedSizeBinary(_) => a.as_fixed_size_binary().value(i),
        _ => a.as_binary::<i32>().value(i),
    }
}

fn list_parts(a: &dyn Array, i: usize) -> Option<ArrayRef> {
    match a.data_type() {
        DataType::List(_) => Some(a.as_list::<i32>().value(i)),
        DataType::LargeList(_) => Some(a.as_list::<i64>().value(i)),
        DataType::FixedSizeList(..) => Some(a.as_fixed_size_list().value(i)),
        _ => None,
    }
}

/// PostgreSQL's text form of value `i` of `a`.
fn text(a: &dyn Array, i: usize, pg: &Type, fallback: &ArrayFormatter<'_>, out: &mut BytesMut) {
    match a.data_type() {
        DataType::Boolean => out.extend_from_slice(if a.as_boolean().value(i) { b"t" } else { b"f" }),
        DataType::Float16 => fmt_float(out, a.as_primitive::<Float16Type>().value(i).to_f64(), true),
        DataType::Float32 => fmt_float(out, a.as_primitive::<Float32Type>().value(i) as f64, true),
        DataType::Float64 => fmt_float(out, a.as_primitive::<Float64Type>().value(i), false),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => hex_bytes(out, bytes_at(a, i)),
        DataType::Date32 | DataType::Date64 => fmt_date(out, date_days(a, i)),
        DataType::Time32(_) | DataType::Time64(_) => fmt_time(out, time_micros(a, i)),
        DataType::Timestamp(u, tz) => fmt_timestamp(out, timestamp_micros(a, u, i), tz.is_some()),
        DataType::Interval(IntervalUnit::MonthDayNano) | DataType::Duration(_) => fmt_interval(out, interval_parts(a, i)),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let Some(values) = list_parts(a, i) else { return };
            let inner_pg = pg_type(values.data_type(), "");
            let opts = FormatOptions::default();
            let Ok(fmt) = ArrayFormatter::try_new(values.as_ref(), &opts) else { return };
            out.extend_from_slice(b"{");
            let mut el = BytesMut::new();
            for j in 0..values.len() {
                if j > 0 {
                    out.extend_from_slice(b",");
                }
                if values.is_null(j) {
                    out.extend_from_slice(b"NULL");
                    continue;
                }
                el.clear();
                text(values.as_ref(), j, &inner_pg, &fmt, &mut el);
                let is_nested = matches!(values.data_type(), DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..));
                let s = String::from_utf8_lossy(&el);
                let needs_quote = !is_nested
                    && (s.is_empty()
                        || s.eq_ignore_ascii_case("null")
                        || s.chars().any(|c| matches!(c, '"' | '{' | '}' | ',' | '\\') || c.is_whitespace()));
                if needs_quote {
                    out.extend_from_slice(b"\"");
                    out.extend_from_slice(s.replace('\\', "\\\\").replace('"', "\\\"").as_bytes());
                    out.extend_from_slice(b"\"");
                } else {
                    out.extend_from_slice(&el);
                }
            }
            out.extend_from_slice(b"}");
        }
        _ => {
            let _ = pg;
            let _ = std::fmt::Write::write_fmt(&mut BytesWriter(out), format_args!("{}", fallback.value(i)));
        }
    }
}

struct BytesWriter<'a, B: BufMut>(&'a mut B);
impl<B: BufMut> std::fmt::Write for BytesWriter<'_, B> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// PostgreSQL's binary form of value `i` of `a` (as described by `pg`).
fn binary(a: &dyn Array, i: usize, pg: &Type, fallback: &ArrayFormatter<'_>, out: &mut BytesMut) -> Result<()> {
    match *pg {
        Type::BOOL => out.put_u8(a.as_boolean().value(i) as u8),
        Type::INT2 => out.put_i16(match a.data_type() {
            DataType::Int8 => a.as_primitive::<Int8Type>().value(i) as i16,
            DataType::UInt8 => a.as_primitive::<UInt8Type>().value(i) as i16,
            _ => a.as_primitive::<Int16Type>().value(i),
        }),
        Type::INT4 => out.put_i32(match a.data_type() {
            DataType::UInt16 => a.as_primitive::<UInt16Type>().value(i) as i32,
            _ => a.as_primitive::<Int32Type>().value(i),
        }),
        Type::INT8 => out.put_i64(match a.data_type() {
            DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i) as i64,
            _ => a.as_primitive::<Int64Type>().value(i),
        }),
        Type::FLOAT4 => out.put_f32(match a.data_type() {
            DataType::Float16 => a.as_primitive::<Float16Type>().value(i).to_f32(),
            _ => a.as_primitive::<Float32Type>().value(i),
        }),
        Type::FLOAT8 => out.put_f64(a.as_primitive::<Float64Type>().value(i)),
        Type::NUMERIC => numeric_binary(&fallback.value(i).to_string(), out),
        Type::TEXT | Type::JSON => {
            let _ = std::fmt::Write::write_fmt(&mut BytesWriter(out), format_args!("{}", fallback.value(i)));
        }
        Type::UUID => {
            let s = fallback.value(i).to_string();
            let hex: String = s.chars().filter(|c| *c != '-').collect();
            for k in 0..16 {
                out.put_u8(u8::from_str_radix(hex.get(2 * k..2 * k + 2).unwrap_or("00"), 16).unwrap_or(0));
            }
        }
        Type::BYTEA => out.extend_from_slice(bytes_at(a, i)),
        Type::DATE => out.put_i32((date_days(a, i) - PG_EPOCH_DAYS) as i32),
        Type::TIME => out.put_i64(time_micros(a, i)),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let DataType::Timestamp(u, _) = a.data_type() else { return Err(Error::Encode("timestamp column is not a timestamp".into())) };
            out.put_i64(timestamp_micros(a, u, i) - PG_EPOCH_MICROS)
        }
        Type::INTERVAL => {
            let (months, days, micros) = interval_parts(a, i);
            out.put_i64(micros);
            out.put_i32(days);
            out.put_i32(months);
        }
        _ => {
            let Some(values) = list_parts(a, i) else {
                return Err(Error::Encode(format!("binary format is not supported for type {pg}; request text")));
            };
            let inner = pg_type(values.data_type(), "");
            let opts = FormatOptions::default();
            let fmt = ArrayFormatter::try_new(values.as_ref(), &opts)?;
            out.put_i32(1);
            out.put_i32(values.null_count().min(1) as i32);
            out.put_u32(inner.oid());
            out.put_i32(values.len() as i32);
            out.put_i32(1);
            let mut el = BytesMut::new();
            for j in 0..values.len() {
                if values.is_null(j) {
                    out.put_i32(-1);
                    continue;
                }
                el.clear();
                binary(values.as_ref(), j, &inner, &fmt, &mut el)?;
                out.put_i32(el.len() as i32);
                out.extend_from_slice(&el);
            }
        }
    }
    Ok(())
}

/// PostgreSQL's binary NUMERIC from a decimal string ("-12.3400").
pub(crate) fn numeric_binary<B: BufMut>(s: &str, out: &mut B) {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if body.eq_ignore_ascii_case("nan") {
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(0xC000);
        out.put_u16(0);
        return;
    }
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    let int_part = int_part.trim_start_matches('0');
    let pad_left = (4 - int_part.len() % 4) % 4;
    let int_digits: String = "0".repeat(pad_left) + int_part;
    let pad_right = (4 - frac_part.len() % 4) % 4;
    let frac_digits: String = frac_part.to_string() + &"0".repeat(pad_right);
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).ok().and_then(|t| t.parse().ok()).unwrap_or(0)).collect()
    };
    let int_groups = group(&int_digits);
    let mut groups: Vec<i16> = int_groups.iter().copied().chain(group(&frac_digits)).collect();
    let mut weight = int_groups.len() as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if neg && !groups.is_empty() { 0x4000 } else { 0 });
    out.put_u16(frac_part.len() as u16);
    for g in groups {
        out.put_i16(g);
    }
}

/// Decimal string of a binary NUMERIC parameter.
pub(crate) fn numeric_from_binary(b: &[u8]) -> Option<String> {
    let rd = |k: usize| -> Option<i16> { Some(i16::from_be_bytes([*b.get(k)?, *b.get(k + 1)?])) };
    let (n, weight, sign, dscale) = (rd(0)? as usize, rd(2)?, rd(4)? as u16, rd(6)? as usize);
    if sign == 0xC000 {
        return Some("NaN".into());
    }
    let digits: Vec<i16> = (0..n).map(|k| rd(8 + 2 * k)).collect::<Option<_>>()?;
    let mut int = String::new();
    for k in 0..=weight.max(-1) {
        let d = digits.get(k as usize).copied().unwrap_or(0);
        if int.is_empty() {
            int = d.to_string();
        } else {
            int.push_str(&format!("{d:04}"));
        }
    }
    if int.is_empty() {
        int = "0".into();
    }
    let mut frac = String::new();
    let mut k = weight + 1;
    while frac.len() < dscale {
        let d = if k < 0 { 0 } else { digits.get(k as usize).copied().unwrap_or(0) };
        frac.push_str(&format!("{d:04}"));
        k += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Some(if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") })
}

/// A bound parameter as a DuckDB value.
pub(crate) fn param_value(raw: Option<&[u8]>, ty: &Type, binary: bool) -> Result<Value> {
    let Some(b) = raw else { return Ok(Value::Null) };
    let bad = |what: &str| Error::Param(format!("invalid {what} parameter value"));
    if !binary {
        let s = std::str::from_utf8(b).map_err(|_| bad("UTF-8"))?;
        return Ok(match *ty {
            Type::INT2 => Value::SmallInt(s.trim().parse().map_err(|_| bad("smallint"))?),
            Type::INT4 => Value::Int(s.trim().parse().map_err(|_| bad("integer"))?),
            Type::INT8 => Value::BigInt(s.trim().parse().map_err(|_| bad("bigint"))?),
            Type::FLOAT4 => Value::Float(s.trim().parse().map_err(|_| bad("real"))?),
            Type::FLOAT8 => Value::Double(s.trim().parse().map_err(|_| bad("double precision"))?),
            Type::BOOL => Value::Boolean(matches!(s.trim().to_ascii_lowercase().as_str(), "t" | "true" | "1" | "y" | "yes" | "on")),
            Type::BYTEA => match s.strip_prefix("\\x") {
                Some(h) => Value::Blob(
                    (0..h.len() / 2)
                        .map(|k| u8::from_str_radix(&h[2 * k..2 * k + 2], 16))
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|_| bad("bytea"))?,
                ),
                None => Value::Blob(s.as_bytes().to_vec()),
            },
            _ => Value::Text(s.to_string()),
        });
    }
    let fixed = |n: usize| -> Result<&[u8]> {
        if b.len() == n {
            Ok(b)
        } else {
            Err(bad(&format!("{ty}")))
        }
    };
    Ok(match *ty {
        Type::BOOL => Value::Boolean(fixed(1)?[0] != 0),
        Type::INT2 => Value::SmallInt(i16::from_be_bytes(fixed(2)?.try_into().map_err(|_| bad("smallint"))?)),
        Type::INT4 => Value::Int(i32::from_be_bytes(fixed(4)?.try_into().map_err(|_| bad("integer"))?)),
        Type::INT8 => Value::BigInt(i64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad("bigint"))?)),
        Type::OID => Value::UInt(u32::from_be_bytes(fixed(4)?.try_into().map_err(|_| bad("oid"))?)),
        Type::FLOAT4 => Value::Float(f32::from_be_bytes(fixed(4)?.try_into().map_err(|_| bad("real"))?)),
        Type::FLOAT8 => Value::Double(f64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad("double"))?)),
        Type::BYTEA => Value::Blob(b.to_vec()),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON | Type::XML => {
            Value::Text(String::from_utf8(b.to_vec()).map_err(|_| bad("UTF-8"))?)
        }
        Type::JSONB => Value::Text(String::from_utf8(b.get(1..).unwrap_or_default().to_vec()).map_err(|_| bad("jsonb"))?),
        Type::DATE => Value::Date32((i32::from_be_bytes(fixed(4)?.try_into().map_err(|_| bad("date"))?) as i64 + PG_EPOCH_DAYS) as i32),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let v = i64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad("timestamp"))?);
            let micros = v + PG_EPOCH_MICROS;
            if *ty == Type::TIMESTAMPTZ {
                let dt = DateTime::from_timestamp_micros(micros).ok_or_else(|| bad("timestamptz"))?;
                Value::Text(dt.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
            } else {
                Value::Timestamp(DuckUnit::Microsecond, micros)
            }
        }
        Type::TIME => {
            let v = i64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad("time"))?);
            let t = NaiveTime::from_num_seconds_from_midnight_opt((v / 1_000_000) as u32, ((v % 1_000_000) * 1000) as u32)
                .ok_or_else(|| bad("time"))?;
            Value::Text(t.format("%H:%M:%S%.6f").to_string())
        }
        Type::INTERVAL => {
            let b = fixed(16)?;
            let micros = i64::from_be_bytes(b[0..8].try_into().map_err(|_| bad("interval"))?);
            let days = i32::from_be_bytes(b[8..12].try_into().map_err(|_| bad("interval"))?);
            let months = i32::from_be_bytes(b[12..16].try_into().map_err(|_| bad("interval"))?);
            Value::Interval { months, days, nanos: micros * 1000 }
        }
        Type::UUID => {
            let b = fixed(16)?;
            let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
            Value::Text(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
        }
        Type::NUMERIC => Value::Text(numeric_from_binary(b).ok_or_else(|| bad("numeric"))?),
        _ => return Err(Error::Param(format!("binary parameters of type {ty} are not supported; send this parameter in text format"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn num(s: &str) -> String {
        let mut out = BytesMut::new();
        numeric_binary(s, &mut out);
        numeric_from_binary(&out).unwrap_or_default()
    }

    #[test]
    fn decimal_fast_paths_match_the_string_forms() {
        for (v, scale) in
            [(1234i128, 2u32), (-50, 2), (0, 2), (5, 4), (-123456789012345678, 6), (10_000, 0), (99999999999, 2), (1, 0), (-1, 9)]
        {
            let mut text = BytesMut::new();
            decimal_text(v, scale, &mut text);
            let s = std::str::from_utf8(&text).unwrap().to_string();
            let mut via_string = BytesMut::new();
            numeric_binary(&s, &mut via_string);
            let mut direct = BytesMut::new();
            numeric_binary_i128(v, scale, &mut direct);
            assert_eq!(direct, via_string, "{s}");
            assert_eq!(
                numeric_from_binary(&direct).map(|t| t.trim_start_matches('-').to_string()),
                Some(s.trim_start_matches('-').to_string())
            );
        }
        let mut t = BytesMut::new();
        decimal_text(-50, 2, &mut t);
        assert_eq!(&t[..], b"-0.50");
        for days in [-719_162i64, -1, 0, 59, 10_957, 19_782, 2_932_896] {
            let mut fast = BytesMut::new();
            fmt_date(&mut fast, days);
            let d = NaiveDate::from_num_days_from_ce_opt((days + 719_163) as i32).unwrap();
            assert_eq!(std::str::from_utf8(&fast).unwrap(), d.format("%Y-%m-%d").to_string());
        }
        let mut d = BytesMut::new();
        fmt_date(&mut d, 19_782);
        assert_eq!(&d[..], b"2024-02-29");
    }

    #[test]
    fn chunks_reuse_one_buffer_once_their_rows_are_gone() {
        let ids = arrow_array::Int64Array::from_iter_values(0..100_000);
        let names = arrow_array::StringArray::from_iter_values((0..100_000).map(|i| format!("name {i}")));
        let batch = RecordBatch::try_from_iter([("id", Arc::new(ids) as ArrayRef), ("name", Arc::new(names) as ArrayRef)]).unwrap();
        let cols = vec![Column { pg: Type::INT8, format: FieldFormat::Binary }, Column { pg: Type::TEXT, format: FieldFormat::Text }];
        let mut enc = RowEncoder::new(cols);
        let mut rows = Vec::new();
        let next = enc.encode(&batch, 0, CHUNK_BYTES, &mut rows).unwrap();
        assert!(next > 1000 && next < 100_000, "{next}");
        assert_eq!(rows.len(), next);
        assert_eq!(&rows[7].data[..], &[&8i32.to_be_bytes()[..], &7i64.to_be_bytes(), &6i32.to_be_bytes(), b"name 7"].concat()[..]);
        let first = rows[0].data.as_ptr();
        rows.clear();
        let after = enc.encode(&batch, next, CHUNK_BYTES, &mut rows).unwrap();
        assert_eq!(rows[0].data.as_ptr(), first, "the second chunk reuses the first one's buffer");
        assert_eq!(&rows[0].data[16..], format!("name {next}").as_bytes());
        // Rows still held: the next chunk goes elsewhere.
        let held = rows[0].data.as_ptr();
        let mut more = Vec::new();
        enc.encode(&batch, after, CHUNK_BYTES, &mut more).unwrap();
        assert_ne!(more[0].data.as_ptr(), held);
        assert_eq!(&rows[0].data[16..], format!("name {next}").as_bytes());
    }

    #[test]
    fn numeric_binary_round_trips() {
        for s in ["0", "1", "-1", "12.34", "-0.0001", "10000", "123456789.123456789", "0.50", "99999999999999999999999999999999999999"] {
            assert_eq!(num(s), s, "{s}");
        }
    }

    #[test]
    fn interval_text_is_postgres_style() {
        let mut out = BytesMut::new();
        fmt_interval(&mut out, (14, 3, 4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000));
        assert_eq!(&out[..], b"1 year 2 mons 3 days 04:05:06.5");
        out.clear();
        fmt_interval(&mut out, (0, 0, 0));
        assert_eq!(&out[..], b"00:00:00");
    }

    #[test]
    fn timestamps_use_a_space() {
        let mut out = BytesMut::new();
        fmt_timestamp(&mut out, 1_700_000_000_123_000, true);
        assert_eq!(&out[..], b"2023-11-14 22:13:20.123+00");
    }
}
