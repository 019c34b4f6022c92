//! InfluxDB line protocol: a byte-level, zero-copy parser ([`parse_lines`],
//! [`parse_line`]) and the timestamp precisions clients name ([`Precision`]).
//!
//! It owns the grammar only — nothing about tables, databases or storage
//! (that is `pond-ingest`). Names and values borrow from the request body and
//! are copied only when they contain escapes ([`Cow::Owned`]).
//!
//! ```text
//! measurement[,tag=value...] field=value[,field=value...] [timestamp]
//! ```
//! - measurement: `\,` and `\ ` escape a comma and a space;
//! - tag keys, tag values and field keys: `\,` `\=` `\ `;
//! - string fields are double-quoted; inside them only `\"` and `\\` are escapes;
//! - `1i` is a signed 64-bit integer, `1u` an unsigned one, `1`, `-1.5`, `1e3`
//!   floats, `t T true True TRUE f F false False FALSE` booleans;
//! - the timestamp is optional and may be negative;
//! - lines starting with `#` are comments; blank lines are skipped.
//!
//! A backslash before any other character is kept literally, as InfluxDB does.
//! Lines are separated by `\n` (a trailing `\r` is dropped); string field
//! values cannot contain a raw newline.

use std::borrow::Cow;
use std::fmt;

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub measurement: Cow<'a, str>,
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
    /// As written, in the request's precision; `None` when absent.
    pub timestamp: Option<i64>,
}

/// A field value with its line-protocol type.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Float(f64),
    Integer(i64),
    UInteger(u64),
    String(Cow<'a, str>),
    Boolean(bool),
}

impl FieldValue<'_> {
    /// A copy that borrows nothing.
    pub fn into_owned(self) -> FieldValue<'static> {
        match self {
            FieldValue::Float(v) => FieldValue::Float(v),
            FieldValue::Integer(v) => FieldValue::Integer(v),
            FieldValue::UInteger(v) => FieldValue::UInteger(v),
            FieldValue::String(s) => FieldValue::String(Cow::Owned(s.into_owned())),
            FieldValue::Boolean(v) => FieldValue::Boolean(v),
        }
    }

    /// The type's name as error messages use it.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Float(_) => "float",
            FieldValue::Integer(_) => "integer",
            FieldValue::UInteger(_) => "unsigned integer",
            FieldValue::String(_) => "string",
            FieldValue::Boolean(_) => "boolean",
        }
    }
}

/// Why a line was rejected, with its 1-based line number in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line_number: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line_number, self.message)
    }
}

impl std::error::Error for ParseError {}

/// One non-blank, non-comment line of a body: its number, its bytes and the
/// parse result.
#[derive(Debug)]
pub struct RawLine<'a> {
    pub line_number: usize,
    pub text: &'a [u8],
    pub parsed: Result<Line<'a>, ParseError>,
}

/// Iterates over the lines of a body, skipping blank lines and comments.
pub fn parse_lines(body: &[u8]) -> Lines<'_> {
    Lines { body, pos: 0, line_number: 0 }
}

/// Iterator returned by [`parse_lines`].
pub struct Lines<'a> {
    body: &'a [u8],
    pos: usize,
    line_number: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = RawLine<'a>;

    fn next(&mut self) -> Option<RawLine<'a>> {
        while self.pos < self.body.len() {
            let rest = &self.body[self.pos..];
            let end = memchr(b'\n', rest).unwrap_or(rest.len());
            self.pos += end + 1;
            self.line_number += 1;
            let mut line = &rest[..end];
            if let [head @ .., b'\r'] = line {
                line = head;
            }
            let start = line.iter().position(|b| *b != b' ' && *b != b'\t').unwrap_or(line.len());
            let trimmed = &line[start..];
            if trimmed.is_empty() || trimmed[0] == b'#' {
                continue;
            }
            let parsed = parse_line(trimmed).map_err(|message| ParseError { line_number: self.line_number, message });
            return Some(RawLine { line_number: self.line_number, text: line, parsed });
        }
        None
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}

/// Which characters a backslash escapes in each part of a line.
#[derive(Clone, Copy)]
enum Part {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

impl Part {
    fn escapable(self, b: u8) -> bool {
        match self {
            Part::Measurement => b == b',' || b == b' ',
            _ => b == b',' || b == b'=' || b == b' ',
        }
    }
    fn name(self) -> &'static str {
        match self {
            Part::Measurement => "measurement",
            Part::TagKey => "tag key",
            Part::TagValue => "tag value",
            Part::FieldKey => "field key",
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Reads an identifier up to one of the `stops` (unescaped) or the end.
    fn ident(&mut self, part: Part, stops: &[u8]) -> Result<Cow<'a, str>, String> {
        let start = self.i;
        let mut escaped = false;
        while let Some(c) = self.peek() {
            if c == b'\\' {
                if let Some(n) = self.b.get(self.i + 1) {
                    if part.escapable(*n) || *n == b'\\' {
                        escaped = true;
                        self.i += 2;
                        continue;
                    }
                }
                self.i += 1;
                continue;
            }
            if stops.contains(&c) {
                break;
            }
            if c == b'\t' {
                return Err(format!("tab character in {} (use a single space as separator)", part.name()));
            }
            if c == b'\n' || c == b'\r' {
                return Err(format!("newline in {}", part.name()));
            }
            self.i += 1;
        }
        let raw = &self.b[start..self.i];
        let s = std::str::from_utf8(raw).map_err(|_| format!("{} is not valid UTF-8", part.name()))?;
        if !escaped {
            return Ok(Cow::Borrowed(s));
        }
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(&n) = chars.peek() {
                    if n.is_ascii() && (part.escapable(n as u8) || n == '\\') {
                        out.push(n);
                        chars.next();
                        continue;
                    }
                }
            }
            out.push(c);
        }
        Ok(Cow::Owned(out))
    }
}

/// Parses one line (no newline, no leading whitespace, not a comment).
/// The error is the message alone; [`parse_lines`] adds the line number.
pub fn parse_line(b: &[u8]) -> Result<Line<'_>, String> {
    let mut c = Cursor { b, i: 0 };
    let measurement = c.ident(Part::Measurement, b",  ")?;
    if measurement.is_empty() {
        return Err("missing measurement name".into());
    }
    let mut tags: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
    if c.peek() == Some(b',') {
        loop {
            c.i += 1;
            let key = c.ident(Part::TagKey, b"=, ")?;
            if key.is_empty() {
                return Err("empty tag key".into());
            }
            if c.peek() != Some(b'=') {
                return Err(format!("tag '{key}' has no value (expected '=')"));
            }
            c.i += 1;
            let value = c.ident(Part::TagValue, b", =")?;
            if c.peek() == Some(b'=') {
                return Err(format!("unescaped '=' in the value of tag '{key}'"));
            }
            if value.is_empty() {
                return Err(format!("empty value for tag '{key}'"));
            }
            if tags.iter().any(|(k, _)| *k == key) {
                return Err(format!("duplicate tag '{key}'"));
            }
            tags.push((key, value));
            if c.peek() != Some(b',') {
                break;
            }
        }
    }
    if c.peek() != Some(b' ') {
        return Err("missing fields (expected a space and field=value after the measurement and tags)".into());
    }
    while c.peek() == Some(b' ') {
        c.i += 1;
    }
    if c.peek().is_none() {
        return Err("missing fields".into());
    }
    let mut fields: Vec<(Cow<'_, str>, FieldValue<'_>)> = Vec::new();
    loop {
        let key = c.ident(Part::FieldKey, b"=, ")?;
        if key.is_empty() {
            return Err("empty field key".into());
        }
        if c.peek() != Some(b'=') {
            return Err(format!("field '{key}' has no value (expected '=')"));
        }
        c.i += 1;
        let value = field_value(&mut c, &key)?;
        if fields.iter().any(|(k, _)| *k == key) {
            return Err(format!("duplicate field '{key}' (multiple instances of the field found)"));
        }
        fields.push((key, value));
        match c.peek() {
            Some(b',') => c.i += 1,
            Some(b' ') | None => break,
            Some(other) => return Err(format!("unexpected '{}' after the value of field '{}'", other as char, fields[fields.len() - 1].0)),
        }
    }
    while c.peek() == Some(b' ') {
        c.i += 1;
    }
    let timestamp = if c.peek().is_some() {
        let start = c.i;
        while let Some(x) = c.peek() {
            if x == b' ' || x == b'\t' {
                break;
            }
            c.i += 1;
        }
        let raw = &b[start..c.i];
        let ts = parse_i64(raw).ok_or_else(|| format!("invalid timestamp '{}'", String::from_utf8_lossy(raw)))?;
        while matches!(c.peek(), Some(b' ') | Some(b'\t')) {
            c.i += 1;
        }
        if c.peek().is_some() {
            return Err(format!("trailing content after the timestamp: '{}'", String::from_utf8_lossy(&b[c.i..])));
        }
        Some(ts)
    } else {
        None
    };
    Ok(Line { measurement, tags, fields, timestamp })
}

fn field_value<'a>(c: &mut Cursor<'a>, key: &str) -> Result<FieldValue<'a>, String> {
    if c.peek() == Some(b'"') {
        c.i += 1;
        let start = c.i;
        let mut escaped = false;
        loop {
            match c.peek() {
                None => return Err(format!("unterminated string value of field '{key}'")),
                Some(b'\\') if matches!(c.b.get(c.i + 1), Some(b'"') | Some(b'\\')) => {
                    escaped = true;
                    c.i += 2;
                }
                Some(b'"') => break,
                Some(_) => c.i += 1,
            }
        }
        let raw = &c.b[start..c.i];
        c.i += 1;
        let s = std::str::from_utf8(raw).map_err(|_| format!("string value of field '{key}' is not valid UTF-8"))?;
        if !escaped {
            return Ok(FieldValue::String(Cow::Borrowed(s)));
        }
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars().peekable();
        while let Some(ch) = chars.next() {
            if ch == '\\' {
                if let Some(&n) = chars.peek() {
                    if n == '"' || n == '\\' {
                        out.push(n);
                        chars.next();
                        continue;
                    }
                }
            }
            out.push(ch);
        }
        return Ok(FieldValue::String(Cow::Owned(out)));
    }
    let start = c.i;
    while let Some(x) = c.peek() {
        if x == b',' || x == b' ' {
            break;
        }
        c.i += 1;
    }
    let raw = &c.b[start..c.i];
    scalar(raw).ok_or_else(|| {
        if raw.is_empty() {
            format!("field '{key}' has an empty value")
        } else {
            format!("invalid value '{}' for field '{key}'", String::from_utf8_lossy(raw))
        }
    })
}

fn scalar(raw: &[u8]) -> Option<FieldValue<'static>> {
    let (last, body) = raw.split_last()?;
    match last {
        b'i' => return parse_i64(body).map(FieldValue::Integer),
        b'u' => return parse_u64(body).map(FieldValue::UInteger),
        _ => {}
    }
    match raw {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => return Some(FieldValue::Boolean(true)),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => return Some(FieldValue::Boolean(false)),
        _ => {}
    }
    parse_float(raw).map(FieldValue::Float)
}

/// Decimal float: optional sign, digits with an optional point (at least one
/// digit), optional exponent. No `nan`, `inf` or hex.
fn parse_float(raw: &[u8]) -> Option<f64> {
    let mut i = 0;
    if matches!(raw.first(), Some(b'-') | Some(b'+')) {
        i += 1;
    }
    let mut digits = 0;
    while i < raw.len() && raw[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < raw.len() && raw[i] == b'.' {
        i += 1;
        while i < raw.len() && raw[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if i < raw.len() && (raw[i] == b'e' || raw[i] == b'E') {
        i += 1;
        if i < raw.len() && (raw[i] == b'-' || raw[i] == b'+') {
            i += 1;
        }
        let exp_start = i;
        while i < raw.len() && raw[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    if i != raw.len() {
        return None;
    }
    // Only ASCII digits, signs, '.', 'e' remain: valid UTF-8.
    let v: f64 = std::str::from_utf8(raw).ok()?.parse().ok()?;
    v.is_finite().then_some(v)
}

fn parse_i64(raw: &[u8]) -> Option<i64> {
    let (neg, digits) = match raw.first()? {
        b'-' => (true, &raw[1..]),
        b'+' => (false, &raw[1..]),
        _ => (false, raw),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let x = (d - b'0') as i64;
        v = v.checked_mul(10)?;
        v = if neg { v.checked_sub(x)? } else { v.checked_add(x)? };
    }
    Some(v)
}

fn parse_u64(raw: &[u8]) -> Option<u64> {
    let digits = raw.strip_prefix(b"+").unwrap_or(raw);
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    Some(v)
}

/// The unit of the timestamps in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Nanosecond,
    Microsecond,
    Millisecond,
    Second,
    Minute,
    Hour,
    /// InfluxDB 3's guess by magnitude (see [`Precision::to_nanos`]).
    Auto,
}

impl Precision {
    /// The spellings of InfluxDB v1 (`n ns u us µ µs ms s m h`), v2 and v3
    /// (`nanosecond microsecond millisecond second auto`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "n" | "ns" | "nanosecond" | "nanoseconds" => Precision::Nanosecond,
            "u" | "us" | "µ" | "µs" | "microsecond" | "microseconds" => Precision::Microsecond,
            "ms" | "millisecond" | "milliseconds" => Precision::Millisecond,
            "s" | "second" | "seconds" => Precision::Second,
            "m" | "minute" | "minutes" => Precision::Minute,
            "h" | "hour" | "hours" => Precision::Hour,
            "auto" => Precision::Auto,
            _ => return None,
        })
    }

    /// Stable one-byte code (for write-ahead log records).
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(c: u8) -> Option<Self> {
        [
            Precision::Nanosecond,
            Precision::Microsecond,
            Precision::Millisecond,
            Precision::Second,
            Precision::Minute,
            Precision::Hour,
            Precision::Auto,
        ]
        .get(c as usize)
        .copied()
    }

    /// Converts a timestamp in this precision to nanoseconds since the epoch;
    /// `None` when it does not fit in an i64. `Auto` takes magnitudes below
    /// 5e9 as seconds, below 5e12 as milliseconds, below 5e15 as microseconds
    /// and everything else as nanoseconds.
    pub fn to_nanos(self, ts: i64) -> Option<i64> {
        let factor: i64 = match self {
            Precision::Nanosecond => 1,
            Precision::Microsecond => 1_000,
            Precision::Millisecond => 1_000_000,
            Precision::Second => 1_000_000_000,
            Precision::Minute => 60_000_000_000,
            Precision::Hour => 3_600_000_000_000,
            Precision::Auto => {
                let a = ts.unsigned_abs();
                if a < 5_000_000_000 {
                    1_000_000_000
                } else if a < 5_000_000_000_000 {
                    1_000_000
                } else if a < 5_000_000_000_000_000 {
                    1_000
                } else {
                    1
                }
            }
        };
        ts.checked_mul(factor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn one(s: &str) -> Line<'_> {
        parse_line(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        parse_line(s.as_bytes()).expect_err(s)
    }

    #[test]
    fn simple_line() {
        let l = one("cpu,host=a,region=eu value=1.5,n=3i,u=7u,s=\"x\",b=t 1700000000000000000");
        assert_eq!(l.measurement, "cpu");
        assert_eq!(l.tags, vec![(Cow::from("host"), Cow::from("a")), (Cow::from("region"), Cow::from("eu"))]);
        assert_eq!(
            l.fields,
            vec![
                (Cow::from("value"), FieldValue::Float(1.5)),
                (Cow::from("n"), FieldValue::Integer(3)),
                (Cow::from("u"), FieldValue::UInteger(7)),
                (Cow::from("s"), FieldValue::String(Cow::from("x"))),
                (Cow::from("b"), FieldValue::Boolean(true)),
            ]
        );
        assert_eq!(l.timestamp, Some(1_700_000_000_000_000_000));
        assert!(matches!(l.measurement, Cow::Borrowed(_)), "no copy without escapes");
    }

    #[test]
    fn no_tags_no_timestamp() {
        let l = one("m v=1");
        assert!(l.tags.is_empty());
        assert_eq!(l.timestamp, None);
        assert_eq!(one("m v=1 -5").timestamp, Some(-5));
        assert_eq!(one("m v=1 +5").timestamp, Some(5));
    }

    #[test]
    fn escapes_in_names_and_values() {
        let l = one(r#"my\ meas\,ure,ta\ g\=k=va\,l\ u\=e fi\=eld\ k=1i"#);
        assert_eq!(l.measurement, "my meas,ure");
        assert_eq!(l.tags[0].0, "ta g=k");
        assert_eq!(l.tags[0].1, "va,l u=e");
        assert_eq!(l.fields[0].0, "fi=eld k");
        // A backslash before anything else stays literal; `=` needs no escape in a measurement.
        let l = one(r#"a\b=c,t=x\y v=1"#);
        assert_eq!(l.measurement, r"a\b=c");
        assert_eq!(l.tags[0].1, r"x\y");
        // A double backslash is one backslash.
        assert_eq!(one(r"m\\ v=1").measurement, r"m\");
    }

    #[test]
    fn string_fields() {
        let l = one(r#"m s="he said \"hi\" \\ back\slash, a=b c",t=1i"#);
        assert_eq!(l.fields[0].1, FieldValue::String(Cow::from(r#"he said "hi" \ back\slash, a=b c"#)));
        assert_eq!(l.fields[1].1, FieldValue::Integer(1));
        assert_eq!(one(r#"m s="""#).fields[0].1, FieldValue::String(Cow::from("")));
        assert_eq!(one("m s=\"ünï\" 1").fields[0].1, FieldValue::String(Cow::from("ünï")));
        assert!(err(r#"m s="open"#).contains("unterminated"));
    }

    #[test]
    fn numbers() {
        let v = |s: &str| one(&format!("m v={s}")).fields[0].1.clone().into_owned();
        assert_eq!(v("1"), FieldValue::Float(1.0));
        assert_eq!(v("-1.5"), FieldValue::Float(-1.5));
        assert_eq!(v("1e3"), FieldValue::Float(1000.0));
        assert_eq!(v("1.5E-2"), FieldValue::Float(0.015));
        assert_eq!(v("+2."), FieldValue::Float(2.0));
        assert_eq!(v(".5"), FieldValue::Float(0.5));
        assert_eq!(v("-9223372036854775808i"), FieldValue::Integer(i64::MIN));
        assert_eq!(v("9223372036854775807i"), FieldValue::Integer(i64::MAX));
        assert_eq!(v("18446744073709551615u"), FieldValue::UInteger(u64::MAX));
        for bad in [
            "9223372036854775808i",
            "18446744073709551616u",
            "-1u",
            "1.5i",
            "abc",
            "1e",
            "nan",
            "inf",
            "1..2",
            "--1",
            "1x",
            "i",
            "u",
            "0x10",
        ] {
            let e = err(&format!("m v={bad}"));
            assert!(e.contains("invalid value"), "{bad}: {e}");
        }
        assert!(err("m v=1e999").contains("invalid value"), "overflowing floats are rejected");
    }

    #[test]
    fn booleans() {
        for t in ["t", "T", "true", "True", "TRUE"] {
            let text = format!("m b={t}");
            assert_eq!(one(&text).fields[0].1, FieldValue::Boolean(true));
        }
        for f in ["f", "F", "false", "False", "FALSE"] {
            let text = format!("m b={f}");
            assert_eq!(one(&text).fields[0].1, FieldValue::Boolean(false));
        }
        assert!(err("m b=tRUE").contains("invalid value"));
    }

    #[test]
    fn grammar_errors() {
        assert!(err("m").contains("missing fields"));
        assert!(err("m ").contains("missing fields"));
        assert!(err("m,t=1").contains("missing fields"));
        assert!(err(",t=1 v=1").contains("missing measurement"));
        assert!(err("m,t= v=1").contains("empty value for tag 't'"));
        assert!(err("m,t v=1").contains("tag 't' has no value"));
        assert!(err("m,=x v=1").contains("empty tag key"));
        assert!(err("m,t=1,t=2 v=1").contains("duplicate tag 't'"));
        assert!(err("m v=1,v=2").contains("duplicate field 'v'"));
        assert!(err("m v=").contains("empty value"));
        assert!(err("m v").contains("field 'v' has no value"));
        assert!(err("m =1").contains("empty field key"));
        assert!(err("m v=1 123 456").contains("trailing content"));
        assert!(err("m v=1 12x").contains("invalid timestamp"));
        assert!(err("m v=1 99999999999999999999").contains("invalid timestamp"));
        assert!(err("m v=\"a\"x").contains("unexpected 'x'"));
        assert!(err("m\tv=1").contains("tab"));
        assert!(err("m,t=a=b v=1").contains("unescaped '='"));
        assert!(err("m v=1,").contains("empty field key"));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert!(parse_line(b"m\xff v=1").unwrap_err().contains("UTF-8"));
        assert!(parse_line(b"m s=\"\xff\"").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn body_with_comments_blank_lines_and_numbers() {
        let body = b"# a comment\n\ncpu v=1 1\n  \r\nbad line\r\n  # indented comment\nmem,h=x free=2i 2\r\n";
        let lines: Vec<_> = parse_lines(body).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].line_number, 3);
        assert!(lines[0].parsed.is_ok());
        assert_eq!(lines[1].line_number, 5);
        assert_eq!(lines[1].text, b"bad line");
        let e = lines[1].parsed.as_ref().unwrap_err();
        assert_eq!(e.line_number, 5);
        assert!(e.to_string().starts_with("line 5: "));
        assert_eq!(lines[2].line_number, 7);
        assert_eq!(lines[2].parsed.as_ref().unwrap().measurement, "mem");
        assert_eq!(parse_lines(b"").count(), 0);
        assert_eq!(parse_lines(b"\n\n#x").count(), 0);
        // No trailing newline.
        assert_eq!(parse_lines(b"a v=1\nb v=2").count(), 2);
    }

    #[test]
    fn extra_spaces_between_sections_are_accepted() {
        let l = one("m  v=1   5  ");
        assert_eq!(l.timestamp, Some(5));
    }

    #[test]
    fn precisions() {
        assert_eq!(Precision::parse("ns"), Some(Precision::Nanosecond));
        assert_eq!(Precision::parse("n"), Some(Precision::Nanosecond));
        assert_eq!(Precision::parse("µ"), Some(Precision::Microsecond));
        assert_eq!(Precision::parse("u"), Some(Precision::Microsecond));
        assert_eq!(Precision::parse("us"), Some(Precision::Microsecond));
        assert_eq!(Precision::parse("ms"), Some(Precision::Millisecond));
        assert_eq!(Precision::parse("second"), Some(Precision::Second));
        assert_eq!(Precision::parse("m"), Some(Precision::Minute));
        assert_eq!(Precision::parse("h"), Some(Precision::Hour));
        assert_eq!(Precision::parse("auto"), Some(Precision::Auto));
        assert_eq!(Precision::parse("weeks"), None);
        assert_eq!(Precision::Second.to_nanos(2), Some(2_000_000_000));
        assert_eq!(Precision::Minute.to_nanos(1), Some(60_000_000_000));
        assert_eq!(Precision::Hour.to_nanos(-1), Some(-3_600_000_000_000));
        assert_eq!(Precision::Microsecond.to_nanos(i64::MAX), None);
        assert_eq!(Precision::Auto.to_nanos(1_700_000_000), Some(1_700_000_000_000_000_000));
        assert_eq!(Precision::Auto.to_nanos(1_700_000_000_000), Some(1_700_000_000_000_000_000));
        assert_eq!(Precision::Auto.to_nanos(1_700_000_000_000_000), Some(1_700_000_000_000_000_000));
        assert_eq!(Precision::Auto.to_nanos(1_700_000_000_000_000_000), Some(1_700_000_000_000_000_000));
        for p in [Precision::Nanosecond, Precision::Hour, Precision::Auto] {
            assert_eq!(Precision::from_code(p.code()), Some(p));
        }
    }

    /// Every string the parser accepts can be written back and parsed to the
    /// same line (a cheap property check over a handful of shapes).
    #[test]
    fn round_trip_of_escaped_names() {
        for name in ["a b", "a,b", "a=b", r"a\b", "x"] {
            let esc_m = name.replace(' ', r"\ ").replace(',', r"\,");
            let esc_k = name.replace(' ', r"\ ").replace(',', r"\,").replace('=', r"\=");
            let text = format!("{esc_m},{esc_k}={esc_k} {esc_k}=1i");
            let l = one(&text);
            assert_eq!(l.measurement, name, "{text}");
            assert_eq!(l.tags[0].0, name, "{text}");
            assert_eq!(l.tags[0].1, name, "{text}");
            assert_eq!(l.fields[0].0, name, "{text}");
        }
    }
}
