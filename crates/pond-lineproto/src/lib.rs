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
    // One UTF-8 check for the whole body (the common case: it is valid) so
    // that names and strings need none of their own.
    Lines { body, text: std::str::from_utf8(body).ok(), pos: 0, line_number: 0 }
}

/// Iterator returned by [`parse_lines`].
pub struct Lines<'a> {
    body: &'a [u8],
    /// `body` as text when all of it is valid UTF-8.
    text: Option<&'a str>,
    pos: usize,
    line_number: usize,
}

/// One line found by [`Lines::next_into`]: like [`RawLine`], but the parsed
/// line went into the caller's [`Line`].
#[derive(Debug)]
pub struct LineRef<'a> {
    pub line_number: usize,
    /// The line as in the body (without its `\r\n`).
    pub text: &'a [u8],
    /// Byte offset of `text` in the body.
    pub offset: usize,
    pub parsed: Result<(), ParseError>,
}

impl<'a> Lines<'a> {
    /// The next non-blank, non-comment line: its number, where it is, and
    /// the bytes to parse (leading whitespace removed) with their text when
    /// known to be valid UTF-8.
    #[inline]
    fn next_raw(&mut self) -> Option<(usize, usize, &'a [u8], usize)> {
        while self.pos < self.body.len() {
            let start = self.pos;
            let rest = &self.body[start..];
            let end = find_newline(rest).unwrap_or(rest.len());
            self.pos += end + 1;
            self.line_number += 1;
            let mut line = &rest[..end];
            if let [head @ .., b'\r'] = line {
                line = head;
            }
            let lead = line.iter().position(|b| *b != b' ' && *b != b'\t').unwrap_or(line.len());
            if lead == line.len() || line[lead] == b'#' {
                continue;
            }
            return Some((self.line_number, start, line, lead));
        }
        None
    }

    /// The text of `body[start..end]` when the body is valid UTF-8.
    #[inline]
    fn text_of(&self, start: usize, end: usize) -> Option<&'a str> {
        self.text.and_then(|t| t.get(start..end))
    }

    /// Like [`Iterator::next`], but parses into `line` (cleared first), so a
    /// caller reading many lines reuses its vectors instead of allocating two
    /// per line. After an error `line` holds a partial parse.
    pub fn next_into(&mut self, line: &mut Line<'a>) -> Option<LineRef<'a>> {
        let (line_number, offset, text, lead) = self.next_raw()?;
        let trimmed = &text[lead..];
        let s = self.text_of(offset + lead, offset + text.len());
        let parsed = parse_into(trimmed, s, line).map_err(|message| ParseError { line_number, message });
        Some(LineRef { line_number, text, offset, parsed })
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = RawLine<'a>;

    fn next(&mut self) -> Option<RawLine<'a>> {
        let mut line = Line::empty();
        let r = self.next_into(&mut line)?;
        let parsed = r.parsed.map(|()| line);
        Some(RawLine { line_number: r.line_number, text: r.text, parsed })
    }
}

/// Position of the first `\n`, eight bytes at a time.
#[inline]
fn find_newline(haystack: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut chunks = haystack.chunks_exact(8);
    let mut base = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ NL;
        // A zero byte in `x` is a newline in the chunk (exact for the lowest one).
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks.remainder().iter().position(|b| *b == b'\n').map(|i| base + i)
}

/// Which characters a backslash escapes in each part of a line.
#[derive(Clone, Copy)]
enum Part {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

/// Byte classes for [`Cursor::ident`]: bit 0 stops a measurement, bit 1 a
/// tag key, tag value or field key, bit 2 needs a look in any part.
const STOP_MEASUREMENT: u8 = 1;
const STOP_KEY: u8 = 2;
const SPECIAL: u8 = 4;
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b',' as usize] = STOP_MEASUREMENT | STOP_KEY;
    t[b' ' as usize] = STOP_MEASUREMENT | STOP_KEY;
    t[b'=' as usize] = STOP_KEY;
    t[b'\\' as usize] = SPECIAL;
    t[b'\t' as usize] = SPECIAL;
    t[b'\n' as usize] = SPECIAL;
    t[b'\r' as usize] = SPECIAL;
    t
};

impl Part {
    fn escapable(self, b: u8) -> bool {
        match self {
            Part::Measurement => b == b',' || b == b' ',
            _ => b == b',' || b == b'=' || b == b' ',
        }
    }
    fn stops(self) -> u8 {
        match self {
            Part::Measurement => STOP_MEASUREMENT,
            _ => STOP_KEY,
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
    /// `b` as text when known to be valid UTF-8.
    s: Option<&'a str>,
    i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// `b[start..end]` as text; `None` when it is not valid UTF-8.
    #[inline]
    fn str(&self, start: usize, end: usize) -> Option<&'a str> {
        match self.s {
            Some(s) => s.get(start..end),
            None => std::str::from_utf8(&self.b[start..end]).ok(),
        }
    }

    /// Reads an identifier up to one of the `part`'s stops (unescaped) or the end.
    #[inline(always)]
    fn ident(&mut self, part: Part) -> Result<Cow<'a, str>, String> {
        let start = self.i;
        match self.plain_ident(part) {
            Some(s) => Ok(Cow::Borrowed(s)),
            None => self.ident_slow(part, start),
        }
    }

    /// The common case of [`Cursor::ident`]: no escape, tab or newline, and
    /// valid UTF-8 (`None` otherwise, for [`Cursor::ident_slow`]). Small
    /// enough to return in registers.
    #[inline(always)]
    fn plain_ident(&mut self, part: Part) -> Option<&'a str> {
        let start = self.i;
        let look = part.stops() | SPECIAL;
        while let Some(&c) = self.b.get(self.i) {
            if CLASS[c as usize] & look != 0 {
                if CLASS[c as usize] & part.stops() == 0 {
                    return None;
                }
                break;
            }
            self.i += 1;
        }
        self.str(start, self.i)
    }

    /// [`Cursor::ident`] from `start` again, for names with a backslash, a
    /// tab or a newline, or not valid UTF-8.
    #[inline(never)]
    fn ident_slow(&mut self, part: Part, start: usize) -> Result<Cow<'a, str>, String> {
        self.i = start;
        let mut escaped = false;
        let look = part.stops() | SPECIAL;
        while let Some(&c) = self.b.get(self.i) {
            let class = CLASS[c as usize];
            if class & look == 0 {
                self.i += 1;
                continue;
            }
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
            if class & part.stops() != 0 {
                break;
            }
            if c == b'\t' {
                return Err(format!("tab character in {} (use a single space as separator)", part.name()));
            }
            // `\n` or `\r`.
            return Err(format!("newline in {}", part.name()));
        }
        let s = self.str(start, self.i).ok_or_else(|| not_utf8(part))?;
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

#[cold]
fn not_utf8(part: Part) -> String {
    format!("{} is not valid UTF-8", part.name())
}

impl Line<'_> {
    /// A line with nothing in it (for [`Lines::next_into`] and
    /// [`parse_line_into`] to fill).
    pub fn empty() -> Self {
        Line { measurement: Cow::Borrowed(""), tags: Vec::new(), fields: Vec::new(), timestamp: None }
    }
}

/// Parses one line (no newline, no leading whitespace, not a comment).
/// The error is the message alone; [`parse_lines`] adds the line number.
pub fn parse_line(b: &[u8]) -> Result<Line<'_>, String> {
    let mut line = Line::empty();
    parse_line_into(b, &mut line)?;
    Ok(line)
}

/// [`parse_line`] into an existing [`Line`] (cleared first; after an error it
/// holds a partial parse), reusing its vectors.
pub fn parse_line_into<'a>(b: &'a [u8], line: &mut Line<'a>) -> Result<(), String> {
    parse_into(b, None, line)
}

/// The parser; `s` is `b` as text when the caller already knows it is valid
/// UTF-8.
fn parse_into<'a>(b: &'a [u8], s: Option<&'a str>, line: &mut Line<'a>) -> Result<(), String> {
    let s = s.or_else(|| std::str::from_utf8(b).ok());
    let mut c = Cursor { b, s, i: 0 };
    line.tags.clear();
    line.fields.clear();
    line.timestamp = None;
    line.measurement = c.ident(Part::Measurement)?;
    if line.measurement.is_empty() {
        return Err("missing measurement name".into());
    }
    let tags = &mut line.tags;
    if c.peek() == Some(b',') {
        loop {
            c.i += 1;
            let key = c.ident(Part::TagKey)?;
            // Messages and checks use the text, not the `Cow`: the `Cow` itself
            // never has its address taken, so it stays in registers until pushed.
            let name: &str = &key;
            if name.is_empty() {
                return Err("empty tag key".into());
            }
            if c.peek() != Some(b'=') {
                return Err(format!("tag '{name}' has no value (expected '=')"));
            }
            c.i += 1;
            let value = c.ident(Part::TagValue)?;
            if c.peek() == Some(b'=') {
                return Err(format!("unescaped '=' in the value of tag '{name}'"));
            }
            if value.is_empty() {
                return Err(format!("empty value for tag '{name}'"));
            }
            if tags.iter().any(|(k, _)| same_name(k, name)) {
                return Err(format!("duplicate tag '{name}'"));
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
    let fields = &mut line.fields;
    loop {
        let key = c.ident(Part::FieldKey)?;
        let name: &str = &key;
        if name.is_empty() {
            return Err("empty field key".into());
        }
        if c.peek() != Some(b'=') {
            return Err(format!("field '{name}' has no value (expected '=')"));
        }
        c.i += 1;
        let value = field_value(&mut c, name)?;
        if fields.iter().any(|(k, _)| same_name(k, name)) {
            return Err(format!("duplicate field '{name}' (multiple instances of the field found)"));
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
    if c.peek().is_some() {
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
        line.timestamp = Some(ts);
    }
    Ok(())
}

#[inline(always)]
fn field_value<'a>(c: &mut Cursor<'a>, key: &str) -> Result<FieldValue<'a>, String> {
    if c.peek() == Some(b'"') {
        return string_value(c, key);
    }
    let start = c.i;
    while let Some(&x) = c.b.get(c.i) {
        if x == b',' || x == b' ' {
            break;
        }
        c.i += 1;
    }
    let raw = &c.b[start..c.i];
    match scalar(raw) {
        Some(v) => Ok(v),
        None => Err(bad_value(raw, key)),
    }
}

#[cold]
fn bad_value(raw: &[u8], key: &str) -> String {
    if raw.is_empty() {
        format!("field '{key}' has an empty value")
    } else {
        format!("invalid value '{}' for field '{key}'", String::from_utf8_lossy(raw))
    }
}

/// A double-quoted string value (the cursor on its opening quote).
#[inline(never)]
fn string_value<'a>(c: &mut Cursor<'a>, key: &str) -> Result<FieldValue<'a>, String> {
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
    let end = c.i;
    c.i += 1;
    let s = c.str(start, end).ok_or_else(|| format!("string value of field '{key}' is not valid UTF-8"))?;
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
    Ok(FieldValue::String(Cow::Owned(out)))
}

#[inline(always)]
fn scalar(raw: &[u8]) -> Option<FieldValue<'static>> {
    let (last, body) = raw.split_last()?;
    match last {
        b'i' => return parse_i64(body).map(FieldValue::Integer),
        b'u' => return parse_u64(body).map(FieldValue::UInteger),
        b'0'..=b'9' | b'.' => return parse_float(raw).map(FieldValue::Float),
        _ => {}
    }
    match raw {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => return Some(FieldValue::Boolean(true)),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => return Some(FieldValue::Boolean(false)),
        _ => {}
    }
    parse_float(raw).map(FieldValue::Float)
}

/// Exact powers of ten as f64 (10^22 is the largest one).
const POW10: [f64; 23] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];

/// Decimal float: optional sign, digits with an optional point (at least one
/// digit), optional exponent. No `nan`, `inf` or hex.
#[inline]
fn parse_float(raw: &[u8]) -> Option<f64> {
    let mut i = 0;
    let neg = raw.first() == Some(&b'-');
    if neg || raw.first() == Some(&b'+') {
        i += 1;
    }
    // The digits as one integer while it fits (19 digits always do), and how
    // many of them follow the point.
    let mut mantissa: u64 = 0;
    let mut significant = 0usize;
    let mut digits = 0;
    let mut fraction = 0usize;
    while i < raw.len() && raw[i].is_ascii_digit() {
        if significant < 19 {
            mantissa = mantissa * 10 + (raw[i] - b'0') as u64;
            significant += (mantissa != 0) as usize;
        } else {
            significant += 1;
        }
        i += 1;
        digits += 1;
    }
    if i < raw.len() && raw[i] == b'.' {
        i += 1;
        while i < raw.len() && raw[i].is_ascii_digit() {
            if significant < 19 {
                mantissa = mantissa * 10 + (raw[i] - b'0') as u64;
                significant += (mantissa != 0) as usize;
            } else {
                significant += 1;
            }
            fraction += 1;
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    let mut has_exponent = false;
    if i < raw.len() && (raw[i] == b'e' || raw[i] == b'E') {
        has_exponent = true;
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
    // Fast path (Clinger): an integer below 2^53 and a power of ten up to
    // 10^22 are both exact doubles, so one IEEE division is correctly
    // rounded. Everything else goes to the standard library.
    if !has_exponent && significant < 19 && mantissa < (1 << 53) && fraction < POW10.len() {
        let v = mantissa as f64 / POW10[fraction];
        return Some(if neg { -v } else { v });
    }
    // Only ASCII digits, signs, '.', 'e' remain: valid UTF-8.
    let v: f64 = std::str::from_utf8(raw).ok()?.parse().ok()?;
    v.is_finite().then_some(v)
}

/// `a == b` for short names without a call to `memcmp`: names of a line
/// are mostly a few bytes long.
#[inline]
pub fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0;
    }
    if n <= 16 {
        // The first and the last eight bytes (overlapping) cover all of them.
        return word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8);
    }
    a == b
}

/// Eight bytes of `b` from `at`, little-endian (0 when `b` is too short).
#[inline]
fn word(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|w| w.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// The value of eight ASCII digits (the first one in the lowest byte of
/// `w`); `None` when one of them is not a digit.
#[inline]
fn eight_digits(w: u64) -> Option<u64> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    // Every byte is 0x30..=0x39: its high nibble is 3, and adding 6 keeps it 3.
    if (w & 0xF0F0_F0F0_F0F0_F0F0) != ZEROS || (w.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) != ZEROS {
        return None;
    }
    let d = w - ZEROS;
    // Pairs of digits, then fours, then all eight.
    let d = (d.wrapping_mul(10) + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
    let d = (d.wrapping_mul(100) + (d >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some(d.wrapping_mul(10_000).wrapping_add(d >> 32) & 0xFFFF_FFFF)
}

/// The value of a run of ASCII digits (none: `None`), when it fits in a u64.
#[inline]
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    let mut rest = digits;
    // Sixteen digits at most this way: below 10^16, no overflow.
    let mut words = 0;
    while rest.len() >= 8 && words < 2 {
        v = v * 100_000_000 + eight_digits(word(rest, 0))?;
        rest = &rest[8..];
        words += 1;
    }
    if words == 2 {
        for d in rest {
            let x = d.wrapping_sub(b'0');
            if x > 9 {
                return None;
            }
            v = v.checked_mul(10)?.checked_add(x as u64)?;
        }
    } else {
        for d in rest {
            let x = d.wrapping_sub(b'0');
            if x > 9 {
                return None;
            }
            v = v * 10 + x as u64;
        }
    }
    Some(v)
}

#[inline]
fn parse_i64(raw: &[u8]) -> Option<i64> {
    let (neg, digits) = match raw.first()? {
        b'-' => (true, &raw[1..]),
        b'+' => (false, &raw[1..]),
        _ => (false, raw),
    };
    let v = parse_digits(digits)?;
    if neg {
        // Down to -2^63.
        (v <= 1 << 63).then(|| 0i64.wrapping_sub_unsigned(v))
    } else {
        i64::try_from(v).ok()
    }
}

fn parse_u64(raw: &[u8]) -> Option<u64> {
    parse_digits(raw.strip_prefix(b"+").unwrap_or(raw))
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

    #[test]
    fn fast_float_path_agrees_with_the_standard_library() {
        // Short decimals take the exact fast path; long ones, exponents and
        // more than 2^53 go to `str::parse`. Both must give the same bits.
        let mut cases: Vec<String> = vec![
            "0",
            "-0",
            "0.0",
            "-0.0",
            "00012.500",
            "9007199254740991",
            "9007199254740992",
            "9007199254740993",
            "123456789012345678",
            "1234567890123456789",
            "12345678901234567890",
            "0.1",
            "0.2",
            "0.3",
            "1.7976931348623157",
            "4.9406564584124654",
            "0.0000000000000000000001",
            "0.00000000000000000000001",
            "1.00000000000000000000000001",
            "3.141592653589793",
            "2.718281828459045235360287",
            "-87.7",
            "43.85",
            "100",
            "1e22",
            "1e23",
            "-1.5e-300",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        // The load generator's values, and a sweep of fractions.
        for n in 0..3000 {
            let x = (n % 1000) as f64 / 10.0;
            cases.push(format!("{x}"));
            cases.push(format!("{}", 100.0 - x));
            cases.push(format!("{}", x / 2.0));
            cases.push(format!("-{}.{:06}", n * 7919 % 100000, n * 104729 % 1000000));
        }
        for text in cases {
            let want: f64 = text.parse().unwrap();
            match one(&format!("m v={text}")).fields[0].1 {
                FieldValue::Float(got) => assert_eq!(got.to_bits(), want.to_bits(), "{text}"),
                ref other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn integers_near_the_limits() {
        assert_eq!(one("m v=1 999999999999999999").timestamp, Some(999_999_999_999_999_999));
        assert_eq!(one("m v=1 -999999999999999999").timestamp, Some(-999_999_999_999_999_999));
        assert_eq!(one("m v=1 -9223372036854775808").timestamp, Some(i64::MIN));
        assert_eq!(one("m v=1 9223372036854775807").timestamp, Some(i64::MAX));
        assert!(err("m v=1 9223372036854775808").contains("invalid timestamp"));
        assert!(err("m v=1 12345678901234567/").contains("invalid timestamp"));
        assert!(err("m v=1 -").contains("invalid timestamp"));
        assert_eq!(one("m v=000000000000000000000000042i").fields[0].1, FieldValue::Integer(42));
    }

    #[test]
    fn same_name_is_equality() {
        let names = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "abcdefg",
            "abcdefh",
            "abcdefgh",
            "abcdefgi",
            "bbcdefgh",
            "cpu_idle",
            "cpu_user",
            "abcdefghijklmnop",
            "abcdefghijklmnoq",
            "bbcdefghijklmnop",
            "abcdefghXjklmnop",
            "abcdefghijklmnopq",
            "abcdefghijklmnopr",
            "ünï",
            "üni",
        ];
        for a in names {
            for b in names {
                assert_eq!(same_name(a, b), a == b, "{a} {b}");
            }
        }
    }

    #[test]
    fn digits_eight_at_a_time() {
        for text in [
            "0",
            "7",
            "12345678",
            "99999999",
            "123456789",
            "1234567890123456",
            "12345678901234567",
            "1700000000000000000",
            "18446744073709551615",
            "00000000000000000000018446744073709551615",
        ] {
            assert_eq!(parse_digits(text.as_bytes()), text.parse::<u64>().ok(), "{text}");
        }
        for bad in [
            "",
            "18446744073709551616",
            "99999999999999999999",
            "1234567/",
            "1234567:",
            "12345678x",
            "x2345678",
            "1234567812345678 ",
            "123456781234567-1",
        ] {
            assert_eq!(parse_digits(bad.as_bytes()), None, "{bad}");
        }
        // A non-digit at every position of a 19-digit number.
        for at in 0..19 {
            for c in [b'/', b':', b' ', b'a', 0x80, 0xb0] {
                let mut t = b"1700000000000000000".to_vec();
                t[at] = c;
                assert_eq!(parse_digits(&t), None, "{at} {c}");
            }
        }
    }

    #[test]
    fn newline_search_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                let mut b = vec![b'x'; len];
                if at < len {
                    b[at] = b'\n';
                    // Bytes that differ from a newline by one bit, around it.
                    if at + 1 < len {
                        b[at + 1] = b'\x0b';
                    }
                    if at > 0 {
                        b[at - 1] = b'\x8a';
                    }
                }
                assert_eq!(find_newline(&b), (at < len).then_some(at), "{len} {at}");
            }
        }
    }

    #[test]
    fn next_into_reuses_one_line_and_agrees_with_the_iterator() {
        let body = "# c\ncpu,host=a v=1,s=\"x\" 1\r\nbad\n  mem,h=\\ b f=2i\n\nm\u{ff} v=1\ncpu,host=b v=2 2";
        let mut bytes = body.as_bytes().to_vec();
        // The \xff above is a char; make the body invalid UTF-8 in one line too.
        let at = bytes.windows(2).position(|w| w == "\u{ff}".as_bytes()).unwrap();
        bytes.splice(at..at + 2, [0xff]);
        for body in [body.as_bytes(), &bytes[..]] {
            let want: Vec<RawLine<'_>> = parse_lines(body).collect();
            let mut lines = parse_lines(body);
            let mut line = Line::empty();
            let mut n = 0;
            while let Some(r) = lines.next_into(&mut line) {
                let w = &want[n];
                assert_eq!(r.line_number, w.line_number);
                assert_eq!(r.text, w.text);
                assert_eq!(&body[r.offset..r.offset + r.text.len()], r.text);
                match (&r.parsed, &w.parsed) {
                    (Ok(()), Ok(l)) => assert_eq!(&line, l),
                    (Err(a), Err(b)) => assert_eq!(a, b),
                    other => panic!("{other:?}"),
                }
                n += 1;
            }
            assert_eq!(n, want.len());
            assert_eq!(n, 5);
        }
        let bad = parse_lines(&bytes).nth(3).unwrap();
        assert_eq!(bad.parsed.unwrap_err().message, "measurement is not valid UTF-8");
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
