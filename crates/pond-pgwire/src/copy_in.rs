//! `COPY table [(columns)] FROM STDIN` in PostgreSQL's text, CSV and binary
//! formats: CopyData chunks are decoded into Arrow columns of the table's own
//! types (text through arrow's vectorised casts, binary fields by their wire
//! encoding) and each batch goes to the engine's bulk ingest as soon as it is
//! full (a bounded channel: memory stays flat however long the COPY is), which
//! checks INSERT like any insert and appends everything in one transaction
//! committed at CopyDone. A bad row stops the COPY with its line and column;
//! nothing is committed.
//!
//! Start with [`parse_copy_in`] and [`Decoder`].

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::{new_null_array, Array, ArrayRef, RecordBatch};
use arrow_cast::cast::{cast_with_options, CastOptions};
use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate};
use pgwire::error::ErrorInfo;
use pond_engine::{Engine, IngestMessage, IngestMode, IngestRequest, Session};
use tokio::sync::mpsc;

use crate::error::info;

/// Rows per Arrow batch handed to the appender.
const BATCH_ROWS: usize = 65_536;
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const SIGNATURE: &[u8] = b"PGCOPY\n\xFF\r\n\x00";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InFormat {
    Text,
    Csv,
    Binary,
}

/// A parsed `COPY … FROM STDIN`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CopyIn {
    /// `[table]`, `[schema or database, table]` or `[database, schema, table]`.
    pub table: Vec<String>,
    pub columns: Option<Vec<String>>,
    pub format: InFormat,
    pub delimiter: u8,
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
}

impl CopyIn {
    pub(crate) fn format_code(&self) -> i8 {
        i8::from(self.format == InFormat::Binary)
    }
}

/// Splits an identifier list `a.b."C"` into its parts (unquoted parts lower-cased).
fn ident_parts(s: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = s.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c.is_whitespace() {
                    break;
                }
                if !(c.is_alphanumeric() || c == '_' || c == '$') {
                    return None;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(parts),
            Some('.') => {}
            Some(_) => return None,
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
    }
}

/// Option words and quoted strings of the WITH part.
fn option_tokens(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';') {
            chars.next();
        } else if c == '\''
            || (c == 'E' || c == 'e') && {
                let mut look = chars.clone();
                look.next();
                look.peek() == Some(&'\'')
            }
        {
            let escaped = c != '\'';
            if escaped {
                chars.next();
            }
            chars.next();
            let mut v = String::from("'");
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted string in COPY options".into()),
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        v.push('\'');
                    }
                    Some('\'') => break,
                    Some('\\') if escaped => match chars.next() {
                        Some('t') => v.push('\t'),
                        Some('n') => v.push('\n'),
                        Some('r') => v.push('\r'),
                        Some(o) => v.push(o),
                        None => return Err("unterminated quoted string in COPY options".into()),
                    },
                    Some(o) => v.push(o),
                }
            }
            out.push(v);
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';' | '\'') {
                    break;
                }
                w.push(c.to_ascii_lowercase());
                chars.next();
            }
            out.push(w);
        }
    }
    Ok(out)
}

/// Recognizes `COPY table [(cols)] FROM STDIN [[WITH] (options) | legacy options]`.
/// `None`: not a COPY FROM STDIN; `Some(Err)`: one with options Pond does not take.
pub(crate) fn parse_copy_in(sql: &str) -> Option<Result<CopyIn, String>> {
    let s = sql.trim().trim_end_matches(';').trim();
    let lower = s.to_ascii_lowercase();
    if !lower.starts_with("copy") || !lower[4..].starts_with(char::is_whitespace) {
        return None;
    }
    let at = lower.find(" from stdin").or_else(|| lower.find(")from stdin").map(|i| i + 1))?;
    let after = &s[at + " from stdin".len()..];
    if after.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let target = s[4..at].trim();
    let (name, columns) = match target.find('(') {
        Some(p) => {
            let inner = target[p + 1..].trim().strip_suffix(')')?;
            let cols: Option<Vec<String>> =
                inner.split(',').map(|c| ident_parts(c).filter(|v| v.len() == 1).map(|mut v| v.remove(0))).collect();
            (target[..p].trim(), Some(cols?))
        }
        None => (target, None),
    };
    let table = ident_parts(name).filter(|p| p.len() <= 3)?;
    Some(parse_options(after).map(|o| CopyIn { table, columns, ..o }))
}

fn parse_options(after: &str) -> Result<CopyIn, String> {
    let tokens = option_tokens(after)?;
    let mut c = CopyIn {
        table: vec![],
        columns: None,
        format: InFormat::Text,
        delimiter: b'\t',
        null: "\\N".into(),
        header: false,
        quote: b'"',
        escape: b'"',
    };
    let (mut delimiter, mut null, mut quote, mut escape) = (None, None, None, None);
    let single = |v: Option<&String>, what: &str| -> Result<u8, String> {
        match v.and_then(|v| v.strip_prefix('\'')) {
            Some(x) if x.len() == 1 => Ok(x.as_bytes()[0]),
            _ => Err(format!("COPY {what} must be a single one-byte character in quotes")),
        }
    };
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let next = tokens.get(i + 1);
        match t {
            "with" => {}
            "format" => {
                c.format = match next.map(String::as_str) {
                    Some("text") => InFormat::Text,
                    Some("csv") => InFormat::Csv,
                    Some("binary") => InFormat::Binary,
                    other => {
                        return Err(format!("COPY format {} is not recognized: use text, csv or binary", other.unwrap_or("(missing)")))
                    }
                };
                i += 1;
            }
            "csv" => c.format = InFormat::Csv,
            "binary" => c.format = InFormat::Binary,
            "header" => {
                c.header = true;
                match next.map(String::as_str) {
                    Some("true" | "on" | "1") => i += 1,
                    Some("false" | "off" | "0") => {
                        c.header = false;
                        i += 1
                    }
                    Some("match") => i += 1,
                    _ => {}
                }
            }
            "delimiter" => {
                i += 1;
                delimiter = Some(single(tokens.get(i), "delimiter")?);
            }
            "null" => {
                i += 1;
                null = Some(tokens.get(i).and_then(|v| v.strip_prefix('\'')).ok_or("COPY NULL needs a quoted string")?.to_string());
            }
            "quote" => {
                i += 1;
                quote = Some(single(tokens.get(i), "quote")?);
            }
            "escape" => {
                i += 1;
                escape = Some(single(tokens.get(i), "escape")?);
            }
            "as" | "encoding" => {
                // `ENCODING 'UTF8'` is all Pond speaks; `AS` is legacy noise.
                if t == "encoding" {
                    i += 1;
                }
            }
            other => {
                return Err(format!("COPY option '{other}' is not supported (Pond takes FORMAT, HEADER, DELIMITER, NULL, QUOTE, ESCAPE)"))
            }
        }
        i += 1;
    }
    if c.format == InFormat::Csv {
        c.delimiter = b',';
        c.null = String::new();
    }
    if let Some(d) = delimiter {
        c.delimiter = d;
    }
    let null_given = null.is_some();
    if let Some(n) = null {
        c.null = n;
    }
    if let Some(q) = quote {
        c.quote = q;
    }
    c.escape = escape.unwrap_or(c.quote);
    if c.format == InFormat::Binary && (delimiter.is_some() || null_given || c.header) {
        return Err("COPY options DELIMITER, NULL and HEADER do not apply to FORMAT binary".into());
    }
    if matches!(c.delimiter, b'\n' | b'\r') || (c.format == InFormat::Text && c.delimiter == b'\\') {
        return Err("COPY delimiter cannot be newline, carriage return or backslash".into());
    }
    Ok(c)
}

/// One input column's buffer until the next batch.
enum Buf {
    /// Text forms, cast to the column's type per batch.
    Str(StringBuilder),
    /// BLOB columns: bytes as they are.
    Bin(BinaryBuilder),
}

/// Turns CopyData chunks into Arrow batches of the target table's schema.
pub(crate) struct Decoder {
    opts: CopyIn,
    /// The whole table, in its column order (what the appender takes).
    table_schema: SchemaRef,
    /// For each input field, its column in `table_schema`.
    targets: Vec<usize>,
    bufs: Vec<Buf>,
    rows_in_batch: usize,
    /// Input line (text/CSV) or tuple (binary) number of the first row in `bufs`.
    batch_first_line: u64,
    /// Lines (or tuples) consumed so far.
    line: u64,
    carry: Vec<u8>,
    header_pending: bool,
    binary_header_done: bool,
    ended: bool,
    batches: Vec<RecordBatch>,
    rows: u64,
    /// Reused field buffer (text unescaping).
    field: Vec<u8>,
}

impl Decoder {
    /// `table_schema`: every column of the target table, as `SELECT *` returns it.
    pub(crate) fn new(opts: CopyIn, table_schema: SchemaRef, table_name: &str) -> Result<Self, String> {
        let targets: Vec<usize> = match &opts.columns {
            None => (0..table_schema.fields().len()).collect(),
            Some(cols) => cols
                .iter()
                .map(|c| {
                    table_schema
                        .fields()
                        .iter()
                        .position(|f| f.name().eq_ignore_ascii_case(c))
                        .ok_or_else(|| format!("column \"{c}\" of relation \"{table_name}\" does not exist"))
                })
                .collect::<Result<_, _>>()?,
        };
        for &t in &targets {
            let f = table_schema.field(t);
            if !supported(f.data_type()) {
                return Err(format!("COPY FROM STDIN does not load column \"{}\" of type {}", f.name(), f.data_type()));
            }
        }
        let bufs = targets.iter().map(|&t| new_buf(table_schema.field(t).data_type())).collect();
        let header_pending = opts.header;
        Ok(Self {
            opts,
            table_schema,
            targets,
            bufs,
            rows_in_batch: 0,
            batch_first_line: 1,
            line: 0,
            carry: Vec::new(),
            header_pending,
            binary_header_done: false,
            ended: false,
            batches: Vec::new(),
            rows: 0,
            field: Vec::new(),
        })
    }

    /// The table's schema (what the batches carry).
    pub(crate) fn schema(&self) -> SchemaRef {
        self.table_schema.clone()
    }

    /// Takes one CopyData payload.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        if self.ended {
            return Ok(());
        }
        let mut input = std::mem::take(&mut self.carry);
        input.extend_from_slice(data);
        let used = match self.opts.format {
            InFormat::Binary => self.feed_binary(&input)?,
            _ => self.feed_lines(&input, false)?,
        };
        input.drain(..used);
        self.carry = input;
        Ok(())
    }

    /// Batches filled so far (handed to the load while the COPY goes on).
    pub(crate) fn take_batches(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.batches)
    }

    /// CopyDone: decodes what is left and returns the batches and the row count.
    pub(crate) fn finish(mut self) -> Result<(Vec<RecordBatch>, u64), String> {
        let rest = std::mem::take(&mut self.carry);
        if !self.ended && !rest.is_empty() {
            if self.opts.format == InFormat::Binary {
                return Err(format!("COPY binary data ends inside tuple {}", self.line + 1));
            }
            // The last line may lack its newline.
            let used = self.feed_lines(&rest, true)?;
            debug_assert_eq!(used, rest.len());
        }
        if self.opts.format == InFormat::Binary && !self.binary_header_done && self.rows == 0 && self.line == 0 {
            return Err("COPY binary data is missing its PGCOPY signature".into());
        }
        self.flush()?;
        Ok((self.batches, self.rows))
    }

    fn feed_lines(&mut self, input: &[u8], last: bool) -> Result<usize, String> {
        let mut pos = 0;
        while pos < input.len() && !self.ended {
            let Some(end) = self.record_end(&input[pos..]) else {
                if !last {
                    break;
                }
                let rec = &input[pos..];
                pos = input.len();
                self.record(rec)?;
                break;
            };
            let rec = &input[pos..pos + end];
            pos += end + 1;
            self.record(rec)?;
        }
        Ok(pos)
    }

    /// Where the record starting at `b` ends (its newline), quotes respected for CSV.
    fn record_end(&self, b: &[u8]) -> Option<usize> {
        if self.opts.format == InFormat::Text {
            return memchr_nl(b);
        }
        let (q, e) = (self.opts.quote, self.opts.escape);
        let mut in_quote = false;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if in_quote {
                if c == e && e != q && b.get(i + 1) == Some(&q) {
                    i += 1;
                } else if c == q {
                    if q == e && b.get(i + 1) == Some(&q) {
                        i += 1;
                    } else {
                        in_quote = false;
                    }
                } else if c == e && e != q && b.get(i + 1) == Some(&e) {
                    i += 1;
                }
            } else if c == q {
                in_quote = true;
            } else if c == b'\n' {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    fn record(&mut self, mut rec: &[u8]) -> Result<(), String> {
        self.line += 1;
        if let Some(r) = rec.strip_suffix(b"\r") {
            rec = r;
        }
        if rec == b"\\." {
            self.ended = true;
            return Ok(());
        }
        if self.header_pending {
            self.header_pending = false;
            self.batch_first_line = self.line + 1;
            return Ok(());
        }
        if self.rows_in_batch == 0 {
            self.batch_first_line = self.line;
        }
        let n = self.targets.len();
        let mut col = 0;
        let mut pos = 0;
        loop {
            if col >= n {
                return Err(format!("line {}: extra data after last expected column", self.line));
            }
            let (value, next) = if self.opts.format == InFormat::Text { self.text_field(rec, pos)? } else { self.csv_field(rec, pos)? };
            self.push(col, value)?;
            col += 1;
            match next {
                Some(p) => pos = p,
                None => break,
            }
        }
        if col < n {
            let name = self.table_schema.field(self.targets[col]).name().clone();
            return Err(format!("line {}: missing data for column \"{name}\"", self.line));
        }
        self.rows_in_batch += 1;
        self.rows += 1;
        if self.rows_in_batch >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// One text-format field from `pos`: `Some(bytes)` or `None` for NULL, and
    /// where the next field starts. The unescaped bytes are in `self.field`.
    fn text_field(&mut self, rec: &[u8], pos: usize) -> Result<(Option<()>, Option<usize>), String> {
        let d = self.opts.delimiter;
        let end = rec[pos..].iter().position(|&c| c == d).map(|e| pos + e);
        let raw = &rec[pos..end.unwrap_or(rec.len())];
        let next = end.map(|e| e + 1);
        if raw == self.opts.null.as_bytes() {
            return Ok((None, next));
        }
        self.field.clear();
        let mut i = 0;
        while i < raw.len() {
            let c = raw[i];
            if c != b'\\' || i + 1 == raw.len() {
                self.field.push(c);
                i += 1;
                continue;
            }
            let n = raw[i + 1];
            i += 2;
            match n {
                b'b' => self.field.push(8),
                b'f' => self.field.push(12),
                b'n' => self.field.push(b'\n'),
                b'r' => self.field.push(b'\r'),
                b't' => self.field.push(b'\t'),
                b'v' => self.field.push(11),
                b'0'..=b'7' => {
                    let mut v = (n - b'0') as u32;
                    for _ in 0..2 {
                        match raw.get(i) {
                            Some(&o @ b'0'..=b'7') => {
                                v = v * 8 + (o - b'0') as u32;
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    self.field.push(v as u8);
                }
                b'x' => {
                    let mut v = 0u32;
                    let mut digits = 0;
                    while digits < 2 {
                        match raw.get(i).and_then(|c| (*c as char).to_digit(16)) {
                            Some(h) => {
                                v = v * 16 + h;
                                i += 1;
                                digits += 1;
                            }
                            None => break,
                        }
                    }
                    if digits == 0 {
                        self.field.push(b'x');
                    } else {
                        self.field.push(v as u8);
                    }
                }
                other => self.field.push(other),
            }
        }
        Ok((Some(()), next))
    }

    /// One CSV field from `pos`; quoted values are never NULL.
    fn csv_field(&mut self, rec: &[u8], pos: usize) -> Result<(Option<()>, Option<usize>), String> {
        let (d, q, e) = (self.opts.delimiter, self.opts.quote, self.opts.escape);
        self.field.clear();
        let mut i = pos;
        let mut quoted = false;
        let mut in_quote = false;
        while i < rec.len() {
            let c = rec[i];
            if in_quote {
                if c == e && rec.get(i + 1) == Some(&q) {
                    self.field.push(q);
                    i += 2;
                    continue;
                }
                if c == e && e != q && rec.get(i + 1) == Some(&e) {
                    self.field.push(e);
                    i += 2;
                    continue;
                }
                if c == q {
                    in_quote = false;
                } else {
                    self.field.push(c);
                }
            } else if c == d {
                break;
            } else if c == q {
                in_quote = true;
                quoted = true;
            } else {
                self.field.push(c);
            }
            i += 1;
        }
        if in_quote {
            return Err(format!("line {}: unterminated CSV quoted field", self.line));
        }
        let next = (i < rec.len()).then_some(i + 1);
        if !quoted && self.field == self.opts.null.as_bytes() {
            return Ok((None, next));
        }
        Ok((Some(()), next))
    }

    /// Appends the current field (in `self.field`) or NULL to input column `col`.
    fn push(&mut self, col: usize, value: Option<()>) -> Result<(), String> {
        match (&mut self.bufs[col], value) {
            (Buf::Str(b), None) => b.append_null(),
            (Buf::Bin(b), None) => b.append_null(),
            (Buf::Str(b), Some(())) => match std::str::from_utf8(&self.field) {
                Ok(s) => b.append_value(s),
                Err(_) => {
                    let name = self.table_schema.field(self.targets[col]).name();
                    return Err(format!("line {}, column {name}: invalid UTF-8", self.line));
                }
            },
            (Buf::Bin(b), Some(())) => {
                // Text forms of bytea: `\x0102…` (hex) or the bytes themselves.
                if self.opts.format != InFormat::Binary && self.field.starts_with(b"\\x") {
                    match hex_decode(&self.field[2..]) {
                        Some(v) => b.append_value(v),
                        None => {
                            let name = self.table_schema.field(self.targets[col]).name();
                            return Err(format!("line {}, column {name}: invalid hexadecimal bytea", self.line));
                        }
                    }
                } else {
                    b.append_value(&self.field);
                }
            }
        }
        Ok(())
    }

    fn feed_binary(&mut self, b: &[u8]) -> Result<usize, String> {
        let mut pos = 0;
        if !self.binary_header_done {
            if b.len() < SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if &b[..SIGNATURE.len()] != SIGNATURE {
                return Err("COPY binary data does not start with the PGCOPY signature".into());
            }
            let ext = i32::from_be_bytes([b[15], b[16], b[17], b[18]]);
            if ext < 0 {
                return Err("COPY binary header extension length is negative".into());
            }
            let header = SIGNATURE.len() + 8 + ext as usize;
            if b.len() < header {
                return Ok(0);
            }
            pos = header;
            self.binary_header_done = true;
        }
        let n = self.targets.len();
        while !self.ended {
            let Some(count) = b.get(pos..pos + 2) else { break };
            let count = i16::from_be_bytes([count[0], count[1]]);
            if count == -1 {
                self.ended = true;
                pos += 2;
                break;
            }
            if count as usize != n {
                return Err(format!("tuple {}: has {count} fields, expected {n}", self.line + 1));
            }
            // Is the whole tuple here?
            let mut p = pos + 2;
            let mut complete = true;
            for _ in 0..n {
                let Some(len) = b.get(p..p + 4) else {
                    complete = false;
                    break;
                };
                let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                p += 4 + len.max(0) as usize;
                if p > b.len() {
                    complete = false;
                    break;
                }
            }
            if !complete {
                break;
            }
            self.line += 1;
            if self.rows_in_batch == 0 {
                self.batch_first_line = self.line;
            }
            let mut p = pos + 2;
            for col in 0..n {
                let len = i32::from_be_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]]);
                p += 4;
                if len < 0 {
                    self.push(col, None)?;
                    continue;
                }
                let raw = &b[p..p + len as usize];
                p += len as usize;
                let dt = self.table_schema.field(self.targets[col]).data_type().clone();
                self.field.clear();
                binary_to_text(raw, &dt, &mut self.field).map_err(|what| {
                    let name = self.table_schema.field(self.targets[col]).name();
                    format!("tuple {}, column {name}: {what}", self.line)
                })?;
                self.push(col, Some(()))?;
            }
            pos = p;
            self.rows_in_batch += 1;
            self.rows += 1;
            if self.rows_in_batch >= BATCH_ROWS {
                self.flush()?;
            }
        }
        Ok(pos)
    }

    /// Casts the buffered columns to the table's types and stores a batch.
    fn flush(&mut self) -> Result<(), String> {
        if self.rows_in_batch == 0 {
            return Ok(());
        }
        let rows = self.rows_in_batch;
        let mut columns: Vec<ArrayRef> = self.table_schema.fields().iter().map(|f| new_null_array(f.data_type(), rows)).collect();
        let unit = if self.opts.format == InFormat::Binary { "tuple" } else { "line" };
        for (i, buf) in self.bufs.iter_mut().enumerate() {
            let field = self.table_schema.field(self.targets[i]);
            let raw: ArrayRef = match buf {
                Buf::Str(b) => Arc::new(b.finish()),
                Buf::Bin(b) => Arc::new(b.finish()),
            };
            columns[self.targets[i]] = convert(&raw, field, |row| {
                // Rows with a header or `\.` in between never happen inside a batch.
                let line = self.batch_first_line + row as u64;
                let shown = raw.as_any().downcast_ref::<arrow_array::StringArray>().map(|s| s.value(row).to_string()).unwrap_or_default();
                format!("{unit} {line}, column {}: invalid input \"{}\" for type {}", field.name(), shown, field.data_type())
            })?;
        }
        let batch = RecordBatch::try_new(self.table_schema.clone(), columns).map_err(|e| format!("COPY batch: {e}"))?;
        self.batches.push(batch);
        self.rows_in_batch = 0;
        Ok(())
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

fn hex_decode(h: &[u8]) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    h.chunks(2).map(|p| Some(((p[0] as char).to_digit(16)? * 16 + (p[1] as char).to_digit(16)?) as u8)).collect()
}

fn supported(dt: &DataType) -> bool {
    use DataType::*;
    matches!(
        dt,
        Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float32
            | Float64
            | Utf8
            | LargeUtf8
            | Utf8View
            | Binary
            | LargeBinary
            | Date32
            | Timestamp(_, _)
            | Time64(_)
            | Decimal128(_, _)
            | Decimal256(_, _)
    )
}

fn new_buf(dt: &DataType) -> Buf {
    match dt {
        DataType::Binary | DataType::LargeBinary => Buf::Bin(BinaryBuilder::new()),
        _ => Buf::Str(StringBuilder::new()),
    }
}

/// The raw column (strings or bytes) as the table's type; a value that does
/// not convert becomes an error naming its row.
fn convert(raw: &ArrayRef, field: &Field, describe: impl Fn(usize) -> String) -> Result<ArrayRef, String> {
    let target = field.data_type();
    if raw.data_type() == target {
        return Ok(raw.clone());
    }
    let safe = CastOptions { safe: true, ..Default::default() };
    let out = cast_with_options(raw, target, &safe).map_err(|e| format!("column {}: {e}", field.name()))?;
    if out.null_count() != raw.null_count() {
        for row in 0..raw.len() {
            if out.is_null(row) && !raw.is_null(row) {
                return Err(describe(row));
            }
        }
    }
    Ok(out)
}

/// A binary COPY field as the text form the column's cast reads.
fn binary_to_text(raw: &[u8], dt: &DataType, out: &mut Vec<u8>) -> Result<(), String> {
    use std::io::Write;
    let be = |n: usize| -> Result<&[u8], String> {
        if raw.len() == n {
            Ok(raw)
        } else {
            Err(format!("binary value of {} bytes where {dt} expects {n}", raw.len()))
        }
    };
    let int = || -> Result<i64, String> {
        Ok(match raw.len() {
            1 => raw[0] as i8 as i64,
            2 => i16::from_be_bytes([raw[0], raw[1]]) as i64,
            4 => i32::from_be_bytes(be(4)?.try_into().map_err(|_| "bad int")?) as i64,
            8 => i64::from_be_bytes(be(8)?.try_into().map_err(|_| "bad int")?),
            n => return Err(format!("binary integer of {n} bytes")),
        })
    };
    let w = |out: &mut Vec<u8>, args: std::fmt::Arguments| out.write_fmt(args).map_err(|e| e.to_string());
    match dt {
        DataType::Boolean => out.extend_from_slice(if be(1)?[0] != 0 { b"true" } else { b"false" }),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => {
            w(out, format_args!("{}", int()?))?
        }
        // Their PostgreSQL type is numeric: the client sends numeric's binary form.
        DataType::UInt64 | DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => {
            let s = crate::types::numeric_from_binary(raw).ok_or("invalid binary numeric")?;
            out.extend_from_slice(s.as_bytes());
        }
        DataType::Float32 | DataType::Float64 => match raw.len() {
            4 => w(out, format_args!("{:?}", f32::from_be_bytes(be(4)?.try_into().map_err(|_| "bad float")?)))?,
            8 => w(out, format_args!("{:?}", f64::from_be_bytes(be(8)?.try_into().map_err(|_| "bad float")?)))?,
            n => return Err(format!("binary float of {n} bytes")),
        },
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary | DataType::LargeBinary => out.extend_from_slice(raw),
        DataType::Date32 => {
            let d = i32::from_be_bytes(be(4)?.try_into().map_err(|_| "bad date")?) + PG_EPOCH_DAYS;
            let date = NaiveDate::from_num_days_from_ce_opt(d + 719_163).ok_or("date out of range")?;
            w(out, format_args!("{}", date.format("%Y-%m-%d")))?
        }
        DataType::Timestamp(_, tz) => {
            let micros = i64::from_be_bytes(be(8)?.try_into().map_err(|_| "bad timestamp")?) + PG_EPOCH_MICROS;
            let t = DateTime::from_timestamp_micros(micros).ok_or("timestamp out of range")?;
            let z = if tz.is_some() { "+00:00" } else { "" };
            w(out, format_args!("{}{z}", t.format("%Y-%m-%dT%H:%M:%S%.6f")))?
        }
        DataType::Time64(TimeUnit::Microsecond) | DataType::Time64(_) => {
            let v = i64::from_be_bytes(be(8)?.try_into().map_err(|_| "bad time")?);
            let (s, us) = (v / 1_000_000, v % 1_000_000);
            w(out, format_args!("{:02}:{:02}:{:02}.{us:06}", s / 3600, s / 60 % 60, s % 60))?
        }
        other => return Err(format!("binary COPY does not load type {other}")),
    }
    Ok(())
}

/// A `COPY … FROM STDIN` between CopyInResponse and CopyDone.
pub(crate) struct Receiving {
    decoder: Option<Decoder>,
    /// The first decoding error; later CopyData is ignored until CopyDone.
    error: Option<String>,
    display: String,
    format: i8,
    columns: usize,
    /// To the running load; dropped without `Finish` on any failure, which
    /// rolls the load back.
    tx: Option<mpsc::Sender<IngestMessage>>,
    load: tokio::task::JoinHandle<pond_engine::Result<i64>>,
}

fn engine_info(e: pond_engine::Error) -> ErrorInfo {
    crate::Error::from(e).to_info()
}

/// Batches in flight between the decoder and DuckDB's appender.
const IN_FLIGHT_BATCHES: usize = 2;

impl Receiving {
    /// Resolves the table as the session would, checks that the caller may
    /// insert into it (before any data is sent), reads its columns and starts
    /// the load.
    pub(crate) async fn start(engine: &Engine, session: &Arc<Session>, opts: CopyIn) -> Result<Self, ErrorInfo> {
        let p = &opts.table;
        let (db, schema, table) = match p.len() {
            1 => (session.current_database(), session.current_schema(), p[0].clone()),
            2 if engine.database_exists(&p[0]) => (engine.resolve_database(&p[0]).map_err(engine_info)?, "main".to_string(), p[1].clone()),
            2 => (session.current_database(), p[0].clone(), p[1].clone()),
            _ => (engine.resolve_database(&p[0]).map_err(engine_info)?, p[1].clone(), p[2].clone()),
        };
        let display = p.join(".");
        let missing = || info("42P01", format!("relation \"{display}\" does not exist"));
        if !engine.table_visible(&session.identity, &db, &schema, &table) {
            return Err(missing());
        }
        session.authorize_ingest(&db, &schema, &table, true, IngestMode::Append).map_err(engine_info)?;
        let table_schema = engine.table_schema(&db, &schema, &table).await.map_err(|_| missing())?;
        let format = opts.format_code();
        let decoder = Decoder::new(opts, table_schema, &display).map_err(|m| info("42703", m))?;
        let columns = decoder.targets.len();
        let req = IngestRequest { table, catalog: Some(db), schema: Some(schema), temporary: false, mode: IngestMode::Append };
        let (tx, rx) = mpsc::channel(IN_FLIGHT_BATCHES);
        let load = {
            let session = session.clone();
            let schema = decoder.schema();
            tokio::spawn(async move { session.ingest(req, schema, rx).await })
        };
        Ok(Self { decoder: Some(decoder), error: None, display, format, columns, tx: Some(tx), load })
    }

    /// CopyInResponse's format code and column count.
    pub(crate) fn shape(&self) -> (i8, usize) {
        (self.format, self.columns)
    }

    /// Decodes one CopyData payload and passes on the batches it filled
    /// (waiting while the appender is behind).
    pub(crate) async fn feed(&mut self, data: &[u8]) {
        let Some(d) = self.decoder.as_mut() else { return };
        match d.feed(data) {
            Ok(()) => {
                let ready = d.take_batches();
                self.send(ready).await;
            }
            Err(e) => {
                self.error = Some(e);
                self.decoder = None;
                self.tx = None;
            }
        }
    }

    async fn send(&mut self, batches: Vec<RecordBatch>) {
        for b in batches {
            let Some(tx) = &self.tx else { return };
            if tx.send(IngestMessage::Batch(b)).await.is_err() {
                // The load stopped early; its error is the answer at CopyDone.
                self.tx = None;
            }
        }
    }

    /// CopyDone: the last rows, then the commit (or the session's open
    /// transaction keeps them); the row count.
    pub(crate) async fn finish(mut self) -> Result<u64, ErrorInfo> {
        let display = std::mem::take(&mut self.display);
        let bad = |e: String| info("22P02", format!("COPY {display}, {e}"));
        let decoded = match (self.error.take(), self.decoder.take()) {
            (Some(e), _) => Err(e),
            (None, Some(d)) => d.finish(),
            (None, None) => Err("COPY state lost".to_string()),
        };
        match decoded {
            Ok((batches, rows)) => {
                self.send(batches).await;
                if let Some(tx) = self.tx.take() {
                    let _ = tx.send(IngestMessage::Finish).await;
                }
                self.load.await.map_err(|e| info("XX000", format!("COPY: {e}")))?.map_err(engine_info)?;
                Ok(rows)
            }
            Err(e) => {
                self.abort().await;
                Err(bad(e))
            }
        }
    }

    /// CopyFail or a decoding error: the load rolls back; returns once it has.
    pub(crate) async fn abort(mut self) {
        self.tx = None;
        let _ = (&mut self.load).await;
    }
}

/// A schema from fields (tests).
#[cfg(test)]
fn schema_of(fields: Vec<Field>) -> SchemaRef {
    use arrow_schema::Schema;
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type};

    fn schema() -> SchemaRef {
        schema_of(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
        ])
    }

    #[test]
    fn parses_statement_forms() {
        let c = parse_copy_in("COPY t FROM STDIN").unwrap().unwrap();
        assert_eq!((c.table.clone(), c.format, c.delimiter, c.null.as_str()), (vec!["t".to_string()], InFormat::Text, b'\t', "\\N"));
        let c = parse_copy_in("copy db.main.\"T x\" (a, \"B\") from stdin with (format csv, header true, delimiter ';', null 'NA')")
            .unwrap()
            .unwrap();
        assert_eq!(c.table, vec!["db", "main", "T x"]);
        assert_eq!(c.columns, Some(vec!["a".to_string(), "B".to_string()]));
        assert_eq!((c.format, c.header, c.delimiter, c.null.as_str()), (InFormat::Csv, true, b';', "NA"));
        // psql's \copy … csv header sends the legacy form.
        let c = parse_copy_in("COPY t FROM STDIN CSV HEADER DELIMITER '|'").unwrap().unwrap();
        assert_eq!((c.format, c.header, c.delimiter), (InFormat::Csv, true, b'|'));
        let c = parse_copy_in("COPY t FROM STDIN (FORMAT BINARY)").unwrap().unwrap();
        assert_eq!(c.format, InFormat::Binary);
        assert!(parse_copy_in("COPY t FROM STDIN (FORMAT xml)").unwrap().unwrap_err().contains("xml"));
        assert!(parse_copy_in("COPY t FROM STDIN (FREEZE)").unwrap().unwrap_err().contains("freeze"));
        assert!(parse_copy_in("COPY t FROM '/etc/passwd'").is_none());
        assert!(parse_copy_in("COPY t TO STDOUT").is_none());
        assert!(parse_copy_in("select 1").is_none());
    }

    #[test]
    fn text_rows_across_chunks_with_escapes_and_nulls() {
        let opts = parse_copy_in("COPY t FROM STDIN").unwrap().unwrap();
        let mut d = Decoder::new(opts, schema(), "t").unwrap();
        d.feed(b"1\ta\\tb\t1.5\n2\t\\N\t").unwrap();
        d.feed(b"2.5\n3\tx\\\\y\t\\N\n\\.\n").unwrap();
        let (batches, rows) = d.finish().unwrap();
        assert_eq!(rows, 3);
        let b = &batches[0];
        assert_eq!(b.column(0).as_primitive::<Int32Type>().values().to_vec(), vec![1, 2, 3]);
        let names = b.column(1).as_string::<i32>();
        assert_eq!((names.value(0), names.is_null(1), names.value(2)), ("a\tb", true, "x\\y"));
        assert!(b.column(2).is_null(2));
    }

    #[test]
    fn csv_quotes_header_and_null_option() {
        let opts = parse_copy_in("COPY t (name, id) FROM STDIN WITH (FORMAT csv, HEADER, NULL 'NA')").unwrap().unwrap();
        let mut d = Decoder::new(opts, schema(), "t").unwrap();
        d.feed(b"name,id\n\"a,\"\"b\"\"\nc\",1\nNA,2\n\"NA\",3").unwrap();
        let (batches, rows) = d.finish().unwrap();
        assert_eq!(rows, 3);
        let names = batches[0].column(1).as_string::<i32>();
        assert_eq!(names.value(0), "a,\"b\"\nc");
        assert!(names.is_null(1));
        assert_eq!(names.value(2), "NA");
        assert_eq!(batches[0].column(2).null_count(), 3, "amount not in the column list: NULL");
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let opts = parse_copy_in("COPY t FROM STDIN (FORMAT csv, HEADER)").unwrap().unwrap();
        let mut d = Decoder::new(opts, schema(), "t").unwrap();
        d.feed(b"id,name,amount\n1,a,1\n2,b,oops\n").unwrap();
        let e = d.finish().unwrap_err();
        assert!(e.contains("line 3") && e.contains("amount") && e.contains("oops"), "{e}");
        let opts = parse_copy_in("COPY t FROM STDIN").unwrap().unwrap();
        let mut d = Decoder::new(opts.clone(), schema(), "t").unwrap();
        let e = d.feed(b"1\ta\t1\n2\tb\t3\t4\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("extra data"), "{e}");
        let mut d = Decoder::new(opts.clone(), schema(), "t").unwrap();
        let e = d.feed(b"1\ta\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("\"amount\""), "{e}");
        let bad = CopyIn { columns: Some(vec!["nope".into()]), ..opts };
        assert!(Decoder::new(bad, schema(), "t").err().unwrap().contains("\"nope\""));
    }

    #[test]
    fn binary_tuples_split_anywhere() {
        let s = schema_of(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]);
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        for (id, name) in [(7i64, Some("x")), (-1, None)] {
            data.extend_from_slice(&2i16.to_be_bytes());
            data.extend_from_slice(&8i32.to_be_bytes());
            data.extend_from_slice(&id.to_be_bytes());
            match name {
                Some(n) => {
                    data.extend_from_slice(&(n.len() as i32).to_be_bytes());
                    data.extend_from_slice(n.as_bytes());
                }
                None => data.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        data.extend_from_slice(&(-1i16).to_be_bytes());
        let opts = parse_copy_in("COPY t FROM STDIN (FORMAT binary)").unwrap().unwrap();
        let mut d = Decoder::new(opts, s, "t").unwrap();
        for chunk in data.chunks(5) {
            d.feed(chunk).unwrap();
        }
        let (batches, rows) = d.finish().unwrap();
        assert_eq!(rows, 2);
        assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().values().to_vec(), vec![7, -1]);
        assert!(batches[0].column(1).is_null(1));
    }
}
