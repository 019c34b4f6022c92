//! Arrow values as JSON text, written straight into the response buffer.
//! Numbers stay numbers (decimals keep every digit), nested lists, structs
//! and maps become arrays and objects, everything else is DuckDB-style text.

use arrow::array::{Array, AsArray};
use arrow::datatypes::*;
use arrow_cast::display::{ArrayFormatter, FormatOptions};

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
        DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => out.push_str(&display(a, i)),
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
    let opts = FormatOptions::default().with_null("null");
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
    fn nested() {
        let l = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1), None])]);
        assert_eq!(render(&l), vec!["[1,null]"]);
        let s = StructArray::from(vec![(
            Arc::new(Field::new("a", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
        )]);
        assert_eq!(render(&s), vec!["{\"a\":\"x\"}"]);
    }
}
