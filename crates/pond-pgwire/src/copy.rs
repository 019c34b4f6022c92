//! `COPY … TO STDOUT`: the query runs through the engine like any SELECT (the
//! sandbox and grants apply) and its rows stream to the client as CopyData in
//! PostgreSQL's text, CSV or binary COPY format. `COPY … FROM STDIN` is not
//! supported yet.

use arrow_array::RecordBatch;
use bytes::{BufMut, Bytes, BytesMut};
use pgwire::api::results::FieldFormat;
use pgwire::messages::copy::CopyData;

use crate::error::Result;
use crate::types::{self, Column};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyFormat {
    Text,
    Csv { header: bool },
    Binary,
}

impl CopyFormat {
    /// The format code of CopyOutResponse.
    pub(crate) fn code(self) -> i8 {
        if self == CopyFormat::Binary {
            1
        } else {
            0
        }
    }
}

/// A `COPY … TO STDOUT` statement: the SELECT that produces its rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CopyOut {
    pub query: String,
    pub format: CopyFormat,
}

/// Recognizes `COPY (query) TO STDOUT [options]` and `COPY table [(cols)] TO STDOUT [options]`.
pub(crate) fn parse_copy_out(sql: &str) -> Option<CopyOut> {
    let s = sql.trim().trim_end_matches(';').trim();
    let lower = s.to_ascii_lowercase();
    if !lower.starts_with("copy") || !lower[4..].starts_with(|c: char| c.is_whitespace() || c == '(') {
        return None;
    }
    let at = lower.rfind(" to stdout").or_else(|| lower.rfind(")to stdout").map(|i| i + 1))?;
    let target = s[4..at].trim();
    let options = lower[at + " to stdout".len()..].trim();
    let query = if let Some(inner) = target.strip_prefix('(') {
        inner.strip_suffix(')')?.trim().to_string()
    } else {
        match target.find('(') {
            Some(p) => {
                let cols = target[p + 1..].trim().strip_suffix(')')?;
                format!("SELECT {cols} FROM {}", target[..p].trim())
            }
            None => format!("SELECT * FROM {target}"),
        }
    };
    // Exactly one statement: the target text must not smuggle in a second one.
    if pond_engine::sql::split_statements(&query).len() != 1 {
        return None;
    }
    let words: Vec<&str> = options.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',')).filter(|w| !w.is_empty()).collect();
    let has = |w: &str| words.contains(&w);
    let format = if has("binary") {
        CopyFormat::Binary
    } else if has("csv") {
        let header = words.iter().position(|w| *w == "header").is_some_and(|i| !matches!(words.get(i + 1), Some(&("false" | "off" | "0"))));
        CopyFormat::Csv { header }
    } else {
        CopyFormat::Text
    };
    Some(CopyOut { query, format })
}

/// What goes in front of the first row: the binary signature or the CSV header.
pub(crate) fn prefix(format: CopyFormat, names: &[String]) -> Option<Bytes> {
    match format {
        CopyFormat::Binary => {
            let mut buf = BytesMut::new();
            buf.put_slice(b"PGCOPY\n\xFF\r\n\x00");
            buf.put_i32(0);
            buf.put_i32(0);
            Some(buf.freeze())
        }
        CopyFormat::Csv { header: true } => Some(csv_header(names)),
        _ => None,
    }
}

/// The CSV header line.
fn csv_header(names: &[String]) -> Bytes {
    let mut out = BytesMut::new();
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        csv_field(&mut out, n.as_bytes());
    }
    out.put_u8(b'\n');
    out.freeze()
}

fn csv_field(out: &mut BytesMut, v: &[u8]) {
    let quote = v.is_empty() || v.iter().any(|c| matches!(c, b',' | b'"' | b'\n' | b'\r'));
    if !quote {
        out.extend_from_slice(v);
        return;
    }
    out.put_u8(b'"');
    for &c in v {
        if c == b'"' {
            out.put_u8(b'"');
        }
        out.put_u8(c);
    }
    out.put_u8(b'"');
}

/// One CopyData message per row of `batch` (pgwire counts them for the `COPY n`
/// tag); the pending `prefix` goes in front of the first row.
pub(crate) fn copy_rows(batch: &RecordBatch, cols: &[Column], format: CopyFormat, prefix: &mut Option<Bytes>) -> Result<Vec<CopyData>> {
    let binary_cols: Vec<Column> = cols.iter().map(|c| Column { pg: c.pg.clone(), format: FieldFormat::Binary }).collect();
    let text_cols: Vec<Column> = cols.iter().map(|c| Column { pg: c.pg.clone(), format: FieldFormat::Text }).collect();
    let rows = types::encode_batch(batch, if format == CopyFormat::Binary { &binary_cols } else { &text_cols })?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut buf = BytesMut::with_capacity(row.data.len() + 16);
        if let Some(p) = prefix.take() {
            buf.put_slice(&p);
        }
        let mut data: &[u8] = &row.data;
        if format == CopyFormat::Binary {
            buf.put_i16(row.field_count);
            buf.put_slice(data);
        } else {
            for i in 0..row.field_count {
                let len = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                data = &data[4..];
                let value = if len < 0 { None } else { Some(&data[..len as usize]) };
                if len > 0 {
                    data = &data[len as usize..];
                }
                if i > 0 {
                    buf.put_u8(if format == CopyFormat::Text { b'\t' } else { b',' });
                }
                match (format, value) {
                    (CopyFormat::Text, None) => buf.put_slice(b"\\N"),
                    (CopyFormat::Text, Some(v)) => {
                        for &c in v {
                            match c {
                                b'\\' => buf.put_slice(b"\\\\"),
                                b'\t' => buf.put_slice(b"\\t"),
                                b'\n' => buf.put_slice(b"\\n"),
                                b'\r' => buf.put_slice(b"\\r"),
                                c => buf.put_u8(c),
                            }
                        }
                    }
                    (_, None) => {}
                    (_, Some(v)) => csv_field(&mut buf, v),
                }
            }
            buf.put_u8(b'\n');
        }
        out.push(CopyData::new(Bytes::from(buf)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_to_stdout_forms() {
        let q = parse_copy_out("COPY (select 1) TO STDOUT WITH (FORMAT csv, HEADER)").unwrap();
        assert_eq!(q, CopyOut { query: "select 1".into(), format: CopyFormat::Csv { header: true } });
        let q = parse_copy_out("copy t (a, b) to stdout").unwrap();
        assert_eq!(q, CopyOut { query: "SELECT a, b FROM t".into(), format: CopyFormat::Text });
        let q = parse_copy_out("COPY db.main.t TO STDOUT (FORMAT binary);").unwrap();
        assert_eq!(q, CopyOut { query: "SELECT * FROM db.main.t".into(), format: CopyFormat::Binary });
        assert_eq!(parse_copy_out("COPY t TO '/tmp/x.csv'"), None);
        assert_eq!(parse_copy_out("copy t from stdin"), None);
        assert_eq!(parse_copy_out("select 'copy t to stdout'"), None);
        assert_eq!(parse_copy_out("COPY t; drop table x TO STDOUT"), None);
    }
}
