//! Arrow values as JSON and CSV text, written straight into the response
//! buffer. Numbers stay numbers (decimals keep every digit), nested lists,
//! structs and maps become arrays and objects, everything else is DuckDB-style
//! text. Where Arrow loses DuckDB's type (UHUGEINT arrives as DECIMAL(38,0),
//! BIT as BLOB), the column's DuckDB type name restores the value.

use arrow::array::{Array, AsArray};
use arrow::datatypes::*;
use arrow_cast::display::{ArrayFormatter, FormatOptions};

/// How to render a column whose Arrow type does not tell the whole story.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plain,
    /// DuckDB UHUGEINT exported as Decimal128(38,0): the bits are a u128.
    UHugeint,
    /// DuckDB BIT exported as a blob: first byte = padding bits.
    Bit,
    /// DuckDB BIGNUM (VARINT) exported as a blob in DuckDB's own layout.
    Bignum,
}

impl Kind {
    pub fn from_duckdb_type(t: &str) -> Self {
        match t {
            "UHUGEINT" => Kind::UHugeint,
            "BIT" => Kind::Bit,
            "BIGNUM" | "VARINT" => Kind::Bignum,
            _ => Kind::Plain,
        }
    }
}

/// Writes value `i` of `a` as JSON, with a hint from the DuckDB type.
pub fn write_typed(out: &mut String, a: &dyn Array, i: usize, kind: Kind) {
    if !a.is_null(i) {
        if let Some(text) = special(a, i, kind) {
            match kind {
                Kind::UHugeint | Kind::Bignum => out.push_str(&text),
                _ => string(out, &text),
            }
            return;
        }
    }
    write_value(out, a, i)
}

fn special(a: &dyn Array, i: usize, kind: Kind) -> Option<String> {
    match (kind, a.data_type()) {
        (Kind::UHugeint, DataType::Decimal128(_, 0)) => Some((a.as_primitive::<Decimal128Type>().value(i) as u128).to_string()),
        (Kind::Bit, DataType::Binary) => Some(bit_string(a.as_binary::<i32>().value(i))),
        (Kind::Bit, DataType::LargeBinary) => Some(bit_string(a.as_binary::<i64>().value(i))),
        (Kind::Bignum, DataType::Binary) => bignum_string(a.as_binary::<i32>().value(i)),
        (Kind::Bignum, DataType::LargeBinary) => bignum_string(a.as_binary::<i64>().value(i)),
        _ => None,
    }
}

/// DuckDB's BIT layout: one byte with the number of padding bits, then the bits.
fn bit_string(bytes: &[u8]) -> String {
    let Some((&padding, rest)) = bytes.split_first() else { return String::new() };
    let mut s = String::with_capacity(rest.len() * 8);
    for b in rest {
        for k in (0..8).rev() {
            s.push(if b >> k & 1 == 1 { '1' } else { '0' });
        }
    }
    s.split_off((padding as usize).min(s.len()))
}

/// DuckDB's BIGNUM layout: a 3-byte header whose top bit is set for
/// non-negative numbers and whose low 23 bits give the byte count, then the
/// magnitude big-endian; negative numbers have every bit inverted.
fn bignum_string(bytes: &[u8]) -> Option<String> {
    if bytes.len() < 3 {
        return None;
    }
    let negative = bytes[0] & 0x80 == 0;
    let mut digits: Vec<u8> = bytes[3..].iter().map(|b| if negative { !b } else { *b }).collect();
    // Repeated division by 10 of the big-endian magnitude.
    let mut out = Vec::new();
    while digits.iter().any(|d| *d != 0) {
        let mut rem = 0u32;
        for d in digits.iter_mut() {
            let cur = (rem << 8) | *d as u32;
            *d = (cur / 10) as u8;
            rem = cur % 10;
        }
        out.push(b'0' + rem as u8);
    }
    if out.is_empty() {
        out.push(b'0');
    }
    if negative {
        out.push(b'-');
    }
    out.reverse();
    String::from_utf8(out).ok()
}

/// Writes value `i` of `a` as a CSV field (DuckDB's text form; NULL is empty,
/// an empty string is `""`; nested values are written as JSON).
pub fn write_csv_field(out: &mut String, a: &dyn Array, i: usize, kind: Kind) {
    if a.is_null(i) {
        return;
    }
    let text = match (special(a, i, kind), a.data_type()) {
        (Some(t), _) => t,
        (None, DataType::Union(_, _)) => {
            let mut s = String::new();
            write_value(&mut s, a, i);
            if s == "null" {
                return;
            }
            s
        }
        (None, DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) | DataType::Struct(_) | DataType::Map(_, _)) => {
            let mut s = String::new();
            write_value(&mut s, a, i);
            s
        }
        (None, DataType::Decimal128(_, _) | DataType::Decimal256(_, _)) => decimal(a, i),
        (None, _) => display(a, i),
    };
    if text.is_empty() || text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&text);
    }
}

/// Exact decimal text from the stored integer (no rounding to the precision).
fn decimal(a: &dyn Array, i: usize) -> String {
    let (digits, scale) = match a.data_type() {
        DataType::Decimal128(_, s) => (a.as_primitive::<Decimal128Type>().value(i).to_string(), *s),
        DataType::Decimal256(_, s) => (a.as_primitive::<Decimal256Type>().value(i).to_string(), *s),
        _ => return display(a, i),
    };
    if scale <= 0 {
        return format!("{digits}{}", "0".repeat((-scale) as usize));
    }
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(d) => ("-", d.to_string()),
        None => ("", digits),
    };
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// Writes value `i` of `a` as JSON.
pub fn write_value(out: &mut String, a: &dyn Array, i: usize) {
    use std::fmt::Write;
    if a.is_null(i) {
        out.push_str("null");
        return;
    }
    macro_rules! num {
        ($t:ty) => {{
            let _ = write!(out, "{}", a.as_primitive::<$t>().value(i));
        }};
    }
    match a.data_type() {
        DataType::Boolean => out.push_str(if a.as_boolean().value(i) { "true" } else { "false" }),
        DataType::Int8 => num!(Int8Type),
        DataType::Int16 => num!(Int16Type),
        DataType::Int32 => num!(Int32Type),
        DataType::Int64 => num!(Int64Type),
        DataType::UInt8 => num!(UInt8Type),
        DataType::UInt16 => num!(UInt16Type),
        DataType::UInt32 => num!(UInt32Type),
        DataType::UInt64 => num!(UInt64Type),
        DataType::Float32 => float(out, a.as_primitive::<Float32Type>().value(i) as f64),
        DataType::Float64 => float(out, a.as_primitive::<Float64Type>().value(i)),
        DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => out.push_str(&decimal(a, i)),
        DataType::Utf8 => string(out, a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => string(out, a.as_string::<i64>().value(i)),
        DataType::Utf8View => string(out, a.as_string_view().value(i)),
        DataType::List(_) => list(out, a.as_list::<i32>().value(i).as_ref()),
        DataType::LargeList(_) => list(out, a.as_list::<i64>().value(i).as_ref()),
        DataType::FixedSizeList(_, _) => list(out, a.as_fixed_size_list().value(i).as_ref()),
        DataType::Struct(fields) => {
            let s = a.as_struct();
            out.push('{');
            for (k, f) in fields.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                string(out, f.name());
                out.push(':');
                write_value(out, s.column(k).as_ref(), i);
            }
            out.push('}');
        }
        DataType::Union(fields, _) => {
            let u = a.as_union();
            let tag = u.type_id(i);
            let child = u.child(tag);
            let at = u.value_offset(i);
            if child.is_null(at) {
                out.push_str("null");
            } else {
                let name = fields.iter().find(|(id, _)| *id == tag).map(|(_, f)| f.name().clone()).unwrap_or_default();
                out.push('{');
                string(out, &name);
                out.push(':');
                write_value(out, child.as_ref(), at);
                out.push('}');
            }
        }
        DataType::Map(_, _) => {
            let m = a.as_map();
            let entries = m.value(i);
            out.push('{');
            for k in 0..entries.len() {
                if k > 0 {
                    out.push(',');
                }
                string(out, &display(entries.column(0).as_ref(), k));
                out.push(':');
                write_value(out, entries.column(1).as_ref(), k);
            }
            out.push('}');
        }
        _ => string(out, &display(a, i)),
    }
}

fn list(out: &mut String, values: &dyn Array) {
    out.push('[');
    for j in 0..values.len() {
        if j > 0 {
            out.push(',');
        }
        write_value(out, values, j);
    }
    out.push(']');
}

fn float(out: &mut String, v: f64) {
    use std::fmt::Write;
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v > 0.0 {
        out.push_str("\"Infinity\"");
    } else {
        out.push_str("\"-Infinity\"");
    }
}

fn display(a: &dyn Array, i: usize) -> String {
    // DuckDB's own text forms: "2024-01-02 03:04:05.123456", "…+00".
    let opts = FormatOptions::default()
        .with_null("null")
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:::z"));
    match ArrayFormatter::try_new(a, &opts) {
        Ok(f) => f.value(i).to_string(),
        Err(_) => String::new(),
    }
}

/// Writes `s` as a JSON string literal.
pub fn string(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::*;
    use std::sync::Arc;

    fn render(a: &dyn Array) -> Vec<String> {
        (0..a.len())
            .map(|i| {
                let mut s = String::new();
                write_value(&mut s, a, i);
                s
            })
            .collect()
    }

    #[test]
    fn scalars() {
        assert_eq!(render(&Int64Array::from(vec![Some(1), None])), vec!["1", "null"]);
        assert_eq!(render(&Float64Array::from(vec![1.5, f64::NAN])), vec!["1.5", "\"NaN\""]);
        assert_eq!(render(&StringArray::from(vec!["a\"b\n"])), vec!["\"a\\\"b\\n\""]);
        let d = Decimal128Array::from(vec![12345]).with_precision_and_scale(10, 2).unwrap();
        assert_eq!(render(&d), vec!["123.45"]);
    }

    #[test]
    fn exact_decimals_bits_and_uhugeint() {
        let d = Decimal128Array::from(vec![i128::MAX, -5]).with_precision_and_scale(38, 0).unwrap();
        assert_eq!(render(&d), vec![i128::MAX.to_string(), "-5".to_string()]);
        let d = Decimal128Array::from(vec![-5]).with_precision_and_scale(10, 3).unwrap();
        assert_eq!(render(&d), vec!["-0.005"]);
        let u = Decimal128Array::from(vec![-1]).with_precision_and_scale(38, 0).unwrap();
        let mut s = String::new();
        write_typed(&mut s, &u, 0, Kind::UHugeint);
        assert_eq!(s, u128::MAX.to_string());
        assert_eq!(bit_string(&[3, 0xf6]), "10110");
        assert_eq!(bignum_string(&[0x7f, 0xff, 0xfe, 0xfe]).unwrap(), "-1");
        let big = [0x80, 0x00, 0x0d, 0x01, 0x8e, 0xe9, 0x0f, 0xf6, 0xc3, 0x73, 0xe0, 0xee, 0x4e, 0x3f, 0x0a, 0xd2];
        assert_eq!(bignum_string(&big).unwrap(), "123456789012345678901234567890");
        let mut csv = String::new();
        write_csv_field(&mut csv, &StringArray::from(vec![""]), 0, Kind::Plain);
        assert_eq!(csv, "\"\"");
    }

    #[test]
    fn nested() {
        let l = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1), None])]);
        assert_eq!(render(&l), vec!["[1,null]"]);
        let s =
            StructArray::from(vec![(Arc::new(Field::new("a", DataType::Utf8, true)), Arc::new(StringArray::from(vec!["x"])) as ArrayRef)]);
        assert_eq!(render(&s), vec!["{\"a\":\"x\"}"]);
    }
}
