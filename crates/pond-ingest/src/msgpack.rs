//! Arc's MessagePack write formats, decoded straight into the same
//! per-measurement [`TableBatch`]es line protocol produces (no value tree per
//! record: one pass over the bytes, values appended to Arrow builders).
//!
//! A body is one *item* (a map), `{"batch": [item, …]}`, or an array of
//! items; batches may nest. An item is either
//! - **row**: `{"m", "t", "h", "tags", "fields" | "f"}` — `m` the measurement
//!   (a string, or an integer `N` meaning `measurement_N`, as Arc does); `t`
//!   the timestamp (optional: the request's arrival time); `h` the host, stored
//!   as tag `host` (an integer `N` means `host_N`; it overrides `tags.host`);
//!   `tags` a map of tag values (numbers and booleans become text, nil is
//!   skipped); `fields` a map of field values, or `f` an array stored as fields
//!   `field_0`, `field_1`, …; or
//! - **columnar**: `{"m", "columns": {"time": [...], "col": [...], …}}` —
//!   arrays of equal length, one record per index; `time` is optional (the
//!   arrival time). String columns become VARCHAR columns (Arc has no separate
//!   notion of tags in this format), booleans BOOLEAN, integers BIGINT, floats
//!   DOUBLE (a column holding both integers and floats is DOUBLE); nil is NULL.
//!
//! Field types: integers → BIGINT (above `i64::MAX` is an error: send a
//! float), floats → DOUBLE, strings → VARCHAR, booleans → BOOLEAN; within one
//! request an integer field becomes DOUBLE once a float appears for it.
//!
//! Timestamps (Arc's rule): the unit is guessed from the magnitude — below
//! 1e10 seconds, below 1e13 milliseconds, below 1e16 microseconds, otherwise
//! nanoseconds (kept exactly; Arc truncates to microseconds). Row items decide
//! per record; a columnar `time` column decides once, from its first value, for
//! the whole column. Pond compares the absolute value (Arc treats every
//! negative value as seconds). Floats are accepted and keep their fraction
//! as far as a double's precision goes (send integers for exact nanoseconds).
//!
//! Errors: a body that is not MessagePack (truncated, reserved marker bytes,
//! trailing bytes) is rejected whole ([`Error::InvalidRequest`] naming the
//! byte offset). Everything else is an error for that record or item — the
//! rest is written, as with line protocol: a missing or bad `m`, a missing
//! `fields`, a non-map item, arrays of different lengths reject the item;
//! a value of the wrong type rejects its record. Records are numbered from 1
//! in body order (a columnar item with n entries counts n); that number is the
//! `line_number` of the error report.

use std::borrow::Cow;

use arrow_array::builder::{ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType};
use arrow_array::{Array, ArrayRef, BooleanArray};
use pond_lineproto::{FieldValue, Line};
use rmp::Marker;

use crate::batch::{Column, Kind, ParsedBody, TableBatch, Values, TIME_COLUMN};
use crate::{Error, LineError, Result};

/// Nesting allowed for `{"batch": …}` and for skipped values.
const MAX_DEPTH: usize = 32;

/// A body that is not well-formed MessagePack at `offset`.
#[derive(Debug)]
struct Malformed {
    offset: usize,
    what: &'static str,
}

type Wire<T> = std::result::Result<T, Malformed>;

/// One scalar read from the wire; containers and binary data are skipped
/// and reported by their type name.
#[derive(Debug, Clone, Copy)]
enum V<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    /// Above `i64::MAX`.
    Big(u64),
    Float(f64),
    Str(&'a str),
    /// A string that is not UTF-8.
    BadStr,
    Other(&'static str),
}

impl V<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            V::Nil => "nil",
            V::Bool(_) => "boolean",
            V::Int(_) | V::Big(_) => "integer",
            V::Float(_) => "float",
            V::Str(_) => "string",
            V::BadStr => "string that is not UTF-8",
            V::Other(t) => t,
        }
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn fail<T>(&self, what: &'static str) -> Wire<T> {
        Err(Malformed { offset: self.pos, what })
    }

    fn take(&mut self, n: usize) -> Wire<&'a [u8]> {
        match self.data.get(self.pos..self.pos.saturating_add(n)) {
            Some(s) if n <= self.data.len() - self.pos => {
                self.pos += n;
                Ok(s)
            }
            _ => self.fail("truncated"),
        }
    }

    fn byte(&mut self) -> Wire<u8> {
        Ok(self.take(1)?[0])
    }
    fn be<const N: usize>(&mut self) -> Wire<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u16(&mut self) -> Wire<usize> {
        Ok(u16::from_be_bytes(self.be()?) as usize)
    }
    fn u32(&mut self) -> Wire<usize> {
        Ok(u32::from_be_bytes(self.be()?) as usize)
    }

    fn peek(&self) -> Wire<Marker> {
        match self.data.get(self.pos) {
            Some(b) => Ok(Marker::from_u8(*b)),
            None => self.fail("truncated"),
        }
    }

    /// Length of a map at the cursor, or None (nothing consumed) for another type.
    fn map_len(&mut self) -> Wire<Option<usize>> {
        let n = match self.peek()? {
            Marker::FixMap(n) => {
                self.pos += 1;
                n as usize
            }
            Marker::Map16 => {
                self.pos += 1;
                self.u16()?
            }
            Marker::Map32 => {
                self.pos += 1;
                self.u32()?
            }
            _ => return Ok(None),
        };
        self.fits(n.saturating_mul(2))?;
        Ok(Some(n))
    }

    /// A declared count of `n` values needs at least `n` more bytes: refuse
    /// lengths the body cannot hold before anything is allocated for them.
    fn fits(&self, n: usize) -> Wire<()> {
        if n > self.data.len() - self.pos {
            return self.fail("truncated (a declared length is longer than the body)");
        }
        Ok(())
    }

    fn array_len(&mut self) -> Wire<Option<usize>> {
        let n = match self.peek()? {
            Marker::FixArray(n) => {
                self.pos += 1;
                n as usize
            }
            Marker::Array16 => {
                self.pos += 1;
                self.u16()?
            }
            Marker::Array32 => {
                self.pos += 1;
                self.u32()?
            }
            _ => return Ok(None),
        };
        self.fits(n)?;
        Ok(Some(n))
    }

    /// Reads one value; containers, binary and extension values are skipped.
    #[inline]
    fn value(&mut self) -> Wire<V<'a>> {
        let at = self.pos;
        let m = Marker::from_u8(self.byte()?);
        Ok(match m {
            Marker::FixPos(v) => V::Int(v as i64),
            Marker::FixNeg(v) => V::Int(v as i64),
            Marker::Null => V::Nil,
            Marker::True => V::Bool(true),
            Marker::False => V::Bool(false),
            Marker::U8 => V::Int(self.byte()? as i64),
            Marker::U16 => V::Int(u16::from_be_bytes(self.be()?) as i64),
            Marker::U32 => V::Int(u32::from_be_bytes(self.be()?) as i64),
            Marker::U64 => {
                let v = u64::from_be_bytes(self.be()?);
                if v > i64::MAX as u64 {
                    V::Big(v)
                } else {
                    V::Int(v as i64)
                }
            }
            Marker::I8 => V::Int(self.byte()? as i8 as i64),
            Marker::I16 => V::Int(i16::from_be_bytes(self.be()?) as i64),
            Marker::I32 => V::Int(i32::from_be_bytes(self.be()?) as i64),
            Marker::I64 => V::Int(i64::from_be_bytes(self.be()?)),
            Marker::F32 => V::Float(f32::from_be_bytes(self.be()?) as f64),
            Marker::F64 => V::Float(f64::from_be_bytes(self.be()?)),
            Marker::FixStr(n) => self.str_body(n as usize)?,
            Marker::Str8 => {
                let n = self.byte()? as usize;
                self.str_body(n)?
            }
            Marker::Str16 => {
                let n = self.u16()?;
                self.str_body(n)?
            }
            Marker::Str32 => {
                let n = self.u32()?;
                self.str_body(n)?
            }
            Marker::Reserved => {
                self.pos = at;
                return self.fail("reserved marker byte 0xc1");
            }
            _ => {
                self.pos = at;
                let name = self.skip(0)?;
                V::Other(name)
            }
        })
    }

    fn str_body(&mut self, n: usize) -> Wire<V<'a>> {
        let b = self.take(n)?;
        Ok(match std::str::from_utf8(b) {
            Ok(s) => V::Str(s),
            Err(_) => V::BadStr,
        })
    }

    /// Skips one value of any type; returns its type name.
    fn skip(&mut self, depth: usize) -> Wire<&'static str> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        let m = self.peek()?;
        let (name, items) = match m {
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => ("array", self.array_len()?.unwrap_or(0)),
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => ("map", self.map_len()?.unwrap_or(0).saturating_mul(2)),
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                self.pos += 1;
                let n = match m {
                    Marker::Bin8 => self.byte()? as usize,
                    Marker::Bin16 => self.u16()?,
                    _ => self.u32()?,
                };
                self.take(n)?;
                return Ok("binary");
            }
            Marker::FixExt1 | Marker::FixExt2 | Marker::FixExt4 | Marker::FixExt8 | Marker::FixExt16 => {
                self.pos += 1;
                let n = match m {
                    Marker::FixExt1 => 1,
                    Marker::FixExt2 => 2,
                    Marker::FixExt4 => 4,
                    Marker::FixExt8 => 8,
                    _ => 16,
                };
                self.take(n + 1)?;
                return Ok("extension");
            }
            Marker::Ext8 | Marker::Ext16 | Marker::Ext32 => {
                self.pos += 1;
                let n = match m {
                    Marker::Ext8 => self.byte()? as usize,
                    Marker::Ext16 => self.u16()?,
                    _ => self.u32()?,
                };
                self.take(n + 1)?;
                return Ok("extension");
            }
            _ => {
                let v = self.value()?;
                return Ok(v.type_name());
            }
        };
        for _ in 0..items {
            self.skip(depth + 1)?;
        }
        Ok(name)
    }

    /// A map key; None when the key is not a string (the key is consumed).
    fn key(&mut self) -> Wire<Option<&'a str>> {
        match self.value()? {
            V::Str(s) => Ok(Some(s)),
            _ => Ok(None),
        }
    }
}

/// Seconds, milliseconds, microseconds or nanoseconds by magnitude → the
/// factor to nanoseconds.
fn unit_factor(magnitude: f64) -> i64 {
    if magnitude < 1e10 {
        1_000_000_000
    } else if magnitude < 1e13 {
        1_000_000
    } else if magnitude < 1e16 {
        1_000
    } else {
        1
    }
}

/// A timestamp value in nanoseconds, with the unit factor given or guessed.
fn time_nanos(v: V<'_>, factor: Option<i64>) -> std::result::Result<i64, String> {
    match v {
        V::Int(t) => {
            let f = factor.unwrap_or_else(|| unit_factor(t.unsigned_abs() as f64));
            t.checked_mul(f).ok_or_else(|| format!("timestamp {t} is out of range"))
        }
        V::Float(t) if t.is_finite() => {
            let f = factor.unwrap_or_else(|| unit_factor(t.abs()));
            let ns = (t * f as f64).round();
            if ns.abs() < 9.2e18 {
                Ok(ns as i64)
            } else {
                Err(format!("timestamp {t} is out of range"))
            }
        }
        V::Big(t) => Err(format!("timestamp {t} is out of range")),
        other => Err(format!("timestamp must be an integer or a float, not {}", other.type_name())),
    }
}

fn factor_of(v: V<'_>) -> Option<i64> {
    match v {
        V::Int(t) => Some(unit_factor(t.unsigned_abs() as f64)),
        V::Float(t) if t.is_finite() => Some(unit_factor(t.abs())),
        _ => None,
    }
}

fn measurement_name(v: V<'_>) -> std::result::Result<String, String> {
    let name = match v {
        V::Str(s) => s.to_string(),
        V::Int(n) => format!("measurement_{n}"),
        V::Big(n) => format!("measurement_{n}"),
        V::Nil => return Err("missing 'm' (the measurement)".into()),
        other => return Err(format!("'m' must be a string or an integer, not {}", other.type_name())),
    };
    if name.is_empty() {
        return Err("'m' (the measurement) is empty".into());
    }
    if name.starts_with("_pond") {
        return Err(format!("measurement names starting with '_pond' are reserved ('{name}')"));
    }
    Ok(name)
}

/// Turns an integer column into a float column (values converted, nulls kept).
fn promote_to_float(values: &mut Values) {
    if let Values::Int(b) = values {
        let ints = b.finish();
        let mut f = Float64Builder::with_capacity(ints.len());
        for v in ints.iter() {
            f.append_option(v.map(|x| x as f64));
        }
        *values = Values::Float(f);
    }
}

/// Decoding state for one body.
struct Decoder {
    default_time: i64,
    /// Row items, one batch per measurement.
    row_tables: Vec<TableBatch>,
    /// Columnar items, one batch each.
    col_tables: Vec<TableBatch>,
    errors: Vec<LineError>,
    /// Records numbered so far.
    record: usize,
    /// Items seen so far (for messages).
    item: usize,
    rows: usize,
}

impl Decoder {
    fn error(&mut self, record: usize, item: usize, row: Option<usize>, message: String) {
        let original_line = match row {
            Some(r) => format!("item {item}, entry {r}"),
            None => format!("item {item}"),
        };
        self.errors.push(LineError { line_number: record, original_line, error_message: message });
    }

    /// The body's top level: an item, `{"batch": …}` or an array of them.
    fn top(&mut self, c: &mut Cursor<'_>, depth: usize) -> Wire<()> {
        if depth > MAX_DEPTH {
            return c.fail("batches nested too deeply");
        }
        if let Some(n) = c.array_len()? {
            for _ in 0..n {
                self.element(c, depth + 1)?;
            }
            return Ok(());
        }
        self.element(c, depth)
    }

    /// One element of a batch or array: a map (item or nested batch);
    /// anything else is an error for that record.
    fn element(&mut self, c: &mut Cursor<'_>, depth: usize) -> Wire<()> {
        if depth > MAX_DEPTH {
            return c.fail("batches nested too deeply");
        }
        match c.peek()? {
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => self.item(c, depth),
            _ => {
                let name = c.skip(0)?;
                self.item += 1;
                self.record += 1;
                let (r, i) = (self.record, self.item);
                self.error(r, i, None, format!("a record must be a map, not {name}"));
                Ok(())
            }
        }
    }

    /// A map: a row item, a columnar item, or `{"batch": [...]}`.
    fn item(&mut self, c: &mut Cursor<'_>, depth: usize) -> Wire<()> {
        let n = c.map_len()?.unwrap_or(0);
        // One pass over the keys; a "batch" key makes the map a batch and
        // everything else in it is ignored (Arc's rule).
        let mut is_batch = false;
        let mut m = V::Nil;
        let mut t = V::Nil;
        let mut h = V::Nil;
        let mut tags: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
        let mut fields: Vec<(Cow<'_, str>, FieldValue<'_>)> = Vec::new();
        let mut has_fields = false;
        let mut columnar: Option<Columnar> = None;
        let mut problem: Option<String> = None;
        for _ in 0..n {
            let Some(key) = c.key()? else {
                c.skip(0)?;
                problem.get_or_insert_with(|| "map keys must be strings".into());
                continue;
            };
            match key {
                "batch" => {
                    is_batch = true;
                    match c.array_len()? {
                        Some(len) => {
                            for _ in 0..len {
                                self.element(c, depth + 1)?;
                            }
                        }
                        None => {
                            let name = c.skip(0)?;
                            self.item += 1;
                            self.record += 1;
                            let (r, i) = (self.record, self.item);
                            self.error(r, i, None, format!("'batch' must be an array of records, not {name}"));
                        }
                    }
                }
                "m" => m = c.value()?,
                "t" => t = c.value()?,
                "h" => h = c.value()?,
                "tags" => match c.map_len()? {
                    Some(k) => {
                        for _ in 0..k {
                            let name = c.key()?;
                            let v = c.value()?;
                            let Some(name) = name else {
                                problem.get_or_insert_with(|| "tag names must be strings".into());
                                continue;
                            };
                            let text: Cow<'_, str> = match v {
                                V::Str(s) => Cow::Borrowed(s),
                                V::Int(i) => Cow::Owned(i.to_string()),
                                V::Big(i) => Cow::Owned(i.to_string()),
                                V::Float(f) => Cow::Owned(f.to_string()),
                                V::Bool(b) => Cow::Owned(b.to_string()),
                                V::Nil => continue,
                                other => {
                                    problem.get_or_insert_with(|| format!("tag '{name}' must be a string, not {}", other.type_name()));
                                    continue;
                                }
                            };
                            if text.is_empty() {
                                continue;
                            }
                            tags.push((Cow::Borrowed(name), text));
                        }
                    }
                    None => {
                        let name = c.skip(0)?;
                        problem.get_or_insert_with(|| format!("'tags' must be a map, not {name}"));
                    }
                },
                "fields" => match c.map_len()? {
                    Some(k) => {
                        has_fields = true;
                        for _ in 0..k {
                            let name = c.key()?;
                            let v = c.value()?;
                            let Some(name) = name else {
                                problem.get_or_insert_with(|| "field names must be strings".into());
                                continue;
                            };
                            match field_value(name, v) {
                                Ok(Some(fv)) => fields.push((Cow::Borrowed(name), fv)),
                                Ok(None) => {}
                                Err(e) => {
                                    problem.get_or_insert(e);
                                }
                            }
                        }
                    }
                    None => {
                        let name = c.skip(0)?;
                        problem.get_or_insert_with(|| format!("'fields' must be a map, not {name}"));
                    }
                },
                "f" => match c.array_len()? {
                    Some(k) => {
                        has_fields = true;
                        for i in 0..k {
                            let v = c.value()?;
                            let name = format!("field_{i}");
                            match field_value(&name, v) {
                                Ok(Some(fv)) => fields.push((Cow::Owned(name), fv)),
                                Ok(None) => {}
                                Err(e) => {
                                    problem.get_or_insert(e);
                                }
                            }
                        }
                    }
                    None => {
                        let name = c.skip(0)?;
                        problem.get_or_insert_with(|| format!("'f' (compact fields) must be an array, not {name}"));
                    }
                },
                "columns" => match c.map_len()? {
                    Some(k) => {
                        let mut col = Columnar::default();
                        col.decode(c, k)?;
                        columnar = Some(col);
                    }
                    None => {
                        let name = c.skip(0)?;
                        problem.get_or_insert_with(|| format!("'columns' must be a map of arrays, not {name}"));
                    }
                },
                _ => {
                    c.skip(0)?;
                }
            }
        }
        if is_batch {
            return Ok(());
        }
        self.item += 1;
        let item = self.item;
        if let Some(col) = columnar {
            self.finish_columnar(item, m, col, problem);
            return Ok(());
        }
        self.record += 1;
        let record = self.record;
        let fail = |this: &mut Self, msg: String| this.error(record, item, None, msg);
        if let Some(p) = problem {
            fail(self, p);
            return Ok(());
        }
        let measurement = match measurement_name(m) {
            Ok(name) => name,
            Err(e) => {
                fail(self, e);
                return Ok(());
            }
        };
        if !has_fields {
            fail(self, "missing 'fields' (a map) or 'f' (an array)".into());
            return Ok(());
        }
        if fields.is_empty() {
            fail(self, "no fields (every field value was nil)".into());
            return Ok(());
        }
        let time = match t {
            V::Nil => self.default_time,
            v => match time_nanos(v, None) {
                Ok(ns) => ns,
                Err(e) => {
                    fail(self, format!("'t': {e}"));
                    return Ok(());
                }
            },
        };
        match h {
            V::Nil => {}
            V::Str(s) if !s.is_empty() => set_host(&mut tags, Cow::Borrowed(s)),
            V::Str(_) => {}
            V::Int(n) => set_host(&mut tags, Cow::Owned(format!("host_{n}"))),
            other => {
                fail(self, format!("'h' (the host) must be a string or an integer, not {}", other.type_name()));
                return Ok(());
            }
        }
        let ti = match self.row_tables.iter().position(|tb| tb.measurement.eq_ignore_ascii_case(&measurement)) {
            Some(i) => i,
            None => {
                let mut tb = TableBatch::new(measurement.clone());
                tb.ints_to_double = true;
                self.row_tables.push(tb);
                self.row_tables.len() - 1
            }
        };
        let table = &mut self.row_tables[ti];
        if table.measurement != measurement {
            let msg =
                format!("measurement '{measurement}' differs from '{}' only in case (table names are case-insensitive)", table.measurement);
            fail(self, msg);
            return Ok(());
        }
        // Integers and floats of one field mix as DOUBLE within a request.
        for (name, v) in fields.iter_mut() {
            if let Some(i) = table.find(name) {
                let col = &mut table.columns[i];
                match (col.kind, &*v) {
                    (Kind::Float, FieldValue::Integer(x)) => *v = FieldValue::Float(*x as f64),
                    (Kind::Integer, FieldValue::Float(_)) if col.name == *name => {
                        promote_to_float(&mut col.values);
                        col.kind = Kind::Float;
                    }
                    _ => {}
                }
            }
        }
        let line = Line { measurement: Cow::Borrowed(&measurement), tags, fields, timestamp: None };
        if let Err(e) = table.check(&line) {
            fail(self, e);
            return Ok(());
        }
        table.push(&line, time, record, (0, 0));
        self.rows += 1;
        Ok(())
    }

    fn finish_columnar(&mut self, item: usize, m: V<'_>, col: Columnar, problem: Option<String>) {
        let first = self.record + 1;
        let n = col.len.unwrap_or(0);
        self.record += n.max(1);
        let problem = problem.or(col.problem).map(Err).unwrap_or_else(|| measurement_name(m).map(|_| ()));
        if let Err(e) = problem {
            self.error(first, item, None, format!("{e} ({n} records rejected)"));
            return;
        }
        let measurement = measurement_name(m).unwrap_or_default();
        if n == 0 {
            return;
        }
        let mut tb = TableBatch::new(measurement);
        tb.ints_to_double = true;
        let mut bad = col.bad;
        // Columns: name checks (reserved, case duplicates) reject the item.
        let mut columns: Vec<Column> = Vec::with_capacity(col.columns.len());
        for cb in col.columns {
            let Some(values) = cb.values else { continue };
            if cb.name.eq_ignore_ascii_case(TIME_COLUMN) {
                self.error(first, item, None, format!("'{}' cannot be a column name (it is the timestamp column)", cb.name));
                return;
            }
            if let Some(other) = columns.iter().find(|c| c.name.eq_ignore_ascii_case(&cb.name)) {
                let msg = format!("columns '{}' and '{}' differ only in case (column names are case-insensitive)", other.name, cb.name);
                self.error(first, item, None, msg);
                return;
            }
            columns.push(Column { name: cb.name, kind: cb.kind, values });
        }
        if columns.is_empty() {
            self.error(first, item, None, format!("no column besides 'time' has a value ({n} records rejected)"));
            return;
        }
        let mut time = col.time;
        if time.len() != n {
            // No time column: every record gets the arrival time.
            time = TimestampNanosecondBuilder::with_capacity(n);
            time.append_value_n(self.default_time, n);
        }
        // Records whose values were bad are listed and left out.
        if bad.iter().any(|b| b.is_some()) {
            let keep = BooleanArray::from(bad.iter().map(|b| b.is_none()).collect::<Vec<_>>());
            for (row, reason) in bad.iter_mut().enumerate() {
                if let Some(msg) = reason.take() {
                    self.error(first + row, item, Some(row), msg);
                }
            }
            let t: ArrayRef = std::sync::Arc::new(time.finish());
            let t = arrow_select::filter::filter(&t, &keep).ok();
            time = TimestampNanosecondBuilder::new();
            if let Some(t) = t {
                for v in t.as_primitive::<TimestampNanosecondType>().iter().flatten() {
                    time.append_value(v);
                }
            }
            for c in &mut columns {
                let a = c.values.finish();
                let filtered = arrow_select::filter::filter(&a, &keep).unwrap_or(a);
                c.values = rebuild(c.kind, &filtered);
            }
            tb.lines = (0..n).filter(|r| keep.value(*r)).map(|r| (first + r, 0, 0)).collect();
        } else {
            tb.lines = (0..n).map(|r| (first + r, 0, 0)).collect();
        }
        tb.time = time;
        tb.columns = columns;
        self.rows += tb.lines.len();
        if !tb.lines.is_empty() {
            self.col_tables.push(tb);
        }
    }
}

/// Builders again from a (filtered) array: the rare path of a columnar item
/// with bad records.
fn rebuild(kind: Kind, a: &ArrayRef) -> Values {
    match kind {
        Kind::Float => {
            let mut b = Float64Builder::with_capacity(a.len());
            a.as_primitive::<Float64Type>().iter().for_each(|v| b.append_option(v));
            Values::Float(b)
        }
        Kind::Integer => {
            let mut b = Int64Builder::with_capacity(a.len());
            a.as_primitive::<Int64Type>().iter().for_each(|v| b.append_option(v));
            Values::Int(b)
        }
        Kind::Boolean => {
            let mut b = BooleanBuilder::with_capacity(a.len());
            a.as_boolean().iter().for_each(|v| b.append_option(v));
            Values::Bool(b)
        }
        _ => {
            let mut b = StringBuilder::new();
            a.as_string::<i32>().iter().for_each(|v| b.append_option(v));
            Values::Str(b)
        }
    }
}

fn set_host<'a>(tags: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>, host: Cow<'a, str>) {
    tags.retain(|(k, _)| k != "host");
    tags.push((Cow::Borrowed("host"), host));
}

/// A row field's value; None for nil (skipped).
fn field_value<'a>(name: &str, v: V<'a>) -> std::result::Result<Option<FieldValue<'a>>, String> {
    Ok(Some(match v {
        V::Nil => return Ok(None),
        V::Bool(b) => FieldValue::Boolean(b),
        V::Int(i) => FieldValue::Integer(i),
        V::Float(f) => FieldValue::Float(f),
        V::Str(s) => FieldValue::String(Cow::Borrowed(s)),
        V::Big(u) => return Err(format!("field '{name}': {u} is out of range for BIGINT (send it as a float)")),
        other => return Err(format!("field '{name}' must be a number, string or boolean, not {}", other.type_name())),
    }))
}

/// One column of a columnar item while it is decoded.
struct ColumnBuild {
    name: String,
    kind: Kind,
    /// None while only nils were seen (the type is not known yet).
    values: Option<Values>,
}

/// A columnar item's `columns` map, decoded.
#[derive(Default)]
struct Columnar {
    len: Option<usize>,
    time: TimestampNanosecondBuilder,
    columns: Vec<ColumnBuild>,
    /// Per record: why it is rejected.
    bad: Vec<Option<String>>,
    /// Why the whole item is rejected.
    problem: Option<String>,
}

impl Columnar {
    fn mark(&mut self, row: usize, msg: impl FnOnce() -> String) {
        if self.bad.is_empty() {
            self.bad = vec![None; self.len.unwrap_or(0)];
        }
        if let Some(slot) = self.bad.get_mut(row) {
            if slot.is_none() {
                *slot = Some(msg());
            }
        }
    }

    fn decode(&mut self, c: &mut Cursor<'_>, ncols: usize) -> Wire<()> {
        for _ in 0..ncols {
            let key = c.key()?;
            let Some(len) = c.array_len()? else {
                let t = c.skip(0)?;
                if self.problem.is_none() {
                    self.problem = Some(match key {
                        Some(k) => format!("column '{k}' must be an array, not {t}"),
                        None => "column names must be strings".into(),
                    });
                }
                continue;
            };
            let Some(name) = key else {
                for _ in 0..len {
                    c.skip(0)?;
                }
                self.problem.get_or_insert_with(|| "column names must be strings".into());
                continue;
            };
            match self.len {
                None => self.len = Some(len),
                Some(n) if n != len => {
                    for _ in 0..len {
                        c.skip(0)?;
                    }
                    self.problem.get_or_insert_with(|| {
                        format!("column '{name}' has {len} values but an earlier column has {n} (columns must have equal lengths)")
                    });
                    continue;
                }
                Some(_) => {}
            }
            if name == TIME_COLUMN {
                self.decode_time(c, len)?;
            } else {
                self.decode_column(c, name, len)?;
            }
        }
        Ok(())
    }

    fn decode_time(&mut self, c: &mut Cursor<'_>, len: usize) -> Wire<()> {
        let mut b = TimestampNanosecondBuilder::with_capacity(len);
        let mut factor = None;
        for row in 0..len {
            let v = c.value()?;
            if factor.is_none() {
                factor = factor_of(v);
            }
            match (v, factor) {
                (V::Int(t), Some(f)) => match t.checked_mul(f) {
                    Some(ns) => b.append_value(ns),
                    None => {
                        b.append_value(0);
                        self.mark(row, || format!("column 'time': timestamp {t} is out of range"));
                    }
                },
                (v, f) => match time_nanos(v, f) {
                    Ok(ns) => b.append_value(ns),
                    Err(e) => {
                        b.append_value(0);
                        self.mark(row, || format!("column 'time': {e}"));
                    }
                },
            }
        }
        self.time = b;
        Ok(())
    }

    fn decode_column(&mut self, c: &mut Cursor<'_>, name: &str, len: usize) -> Wire<()> {
        let mut values: Option<Values> = None;
        let mut kind = Kind::Float;
        let mut leading_nils = 0usize;
        for row in 0..len {
            let v = c.value()?;
            if values.is_none() {
                let k = match v {
                    V::Nil => {
                        leading_nils += 1;
                        continue;
                    }
                    V::Float(_) => Kind::Float,
                    V::Int(_) | V::Big(_) => Kind::Integer,
                    V::Str(_) => Kind::Tag,
                    V::Bool(_) => Kind::Boolean,
                    _ => Kind::Tag,
                };
                kind = k;
                let mut nv = match k {
                    Kind::Float => Values::Float(Float64Builder::with_capacity(len)),
                    Kind::Integer => Values::Int(Int64Builder::with_capacity(len)),
                    Kind::Boolean => Values::Bool(BooleanBuilder::with_capacity(len)),
                    _ => Values::Str(StringBuilder::with_capacity(len, len * 8)),
                };
                nv.nulls(leading_nils);
                values = Some(nv);
            }
            let Some(vals) = values.as_mut() else { continue };
            let wrong = match (&mut *vals, v) {
                (_, V::Nil) => {
                    vals.nulls(1);
                    None
                }
                (Values::Float(b), V::Float(x)) => {
                    b.append_value(x);
                    None
                }
                (Values::Float(b), V::Int(x)) => {
                    b.append_value(x as f64);
                    None
                }
                (Values::Float(b), V::Big(x)) => {
                    b.append_value(x as f64);
                    None
                }
                (Values::Int(b), V::Int(x)) => {
                    b.append_value(x);
                    None
                }
                (Values::Int(_), V::Float(x)) => {
                    promote_to_float(vals);
                    kind = Kind::Float;
                    if let Values::Float(b) = vals {
                        b.append_value(x);
                    }
                    None
                }
                (Values::Str(b), V::Str(s)) => {
                    b.append_value(s);
                    None
                }
                (Values::Bool(b), V::Bool(x)) => {
                    b.append_value(x);
                    None
                }
                (Values::Int(_), V::Big(x)) => Some(format!("column '{name}': {x} is out of range for BIGINT (send it as a float)")),
                (_, other) => Some(format!("column '{name}' holds {} values but this one is {}", kind_values(kind), other.type_name())),
            };
            if let Some(msg) = wrong {
                vals.nulls(1);
                self.mark(row, || msg);
            }
        }
        self.columns.push(ColumnBuild { name: name.to_string(), kind, values });
        Ok(())
    }
}

fn kind_values(k: Kind) -> &'static str {
    match k {
        Kind::Float => "float",
        Kind::Integer => "integer",
        Kind::Boolean => "boolean",
        _ => "string",
    }
}

/// Decodes an Arc MessagePack body. The body itself becomes
/// [`ParsedBody::good_lines`]: the write-ahead log stores it as received and
/// replay decodes it again (deterministically: same records, same errors).
pub fn parse_body(body: Vec<u8>, default_time: i64) -> Result<ParsedBody> {
    let mut d = Decoder { default_time, row_tables: Vec::new(), col_tables: Vec::new(), errors: Vec::new(), record: 0, item: 0, rows: 0 };
    let mut c = Cursor { data: &body, pos: 0 };
    let r = if body.is_empty() {
        Err(Malformed { offset: 0, what: "empty body" })
    } else {
        d.top(&mut c, 0).and_then(|_| if c.pos == body.len() { Ok(()) } else { c.fail("trailing bytes after the MessagePack value") })
    };
    if let Err(m) = r {
        return Err(Error::InvalidRequest(format!(
            "invalid MessagePack body: {} at byte {} (near item {}); nothing was written",
            m.what,
            m.offset,
            d.item.max(1)
        )));
    }
    let mut tables = d.row_tables;
    tables.extend(d.col_tables);
    d.errors.sort_by_key(|e| e.line_number);
    Ok(ParsedBody { tables, errors: d.errors, good_lines: body, rows: d.rows })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use arrow_array::types::Int64Type;
    use rmp::encode as enc;

    fn s(out: &mut Vec<u8>, v: &str) {
        enc::write_str(out, v).unwrap();
    }

    /// Arc's columnar shape with `n` records.
    fn columnar(out: &mut Vec<u8>, m: &str, n: usize, t0: i64) {
        enc::write_map_len(out, 2).unwrap();
        s(out, "columns");
        enc::write_map_len(out, 3).unwrap();
        s(out, "host");
        enc::write_array_len(out, n as u32).unwrap();
        for i in 0..n {
            s(out, &format!("h{}", i % 3));
        }
        s(out, "time");
        enc::write_array_len(out, n as u32).unwrap();
        for i in 0..n {
            enc::write_sint(out, t0 + i as i64).unwrap();
        }
        s(out, "usage");
        enc::write_array_len(out, n as u32).unwrap();
        for i in 0..n {
            enc::write_f64(out, i as f64 / 2.0).unwrap();
        }
        s(out, "m");
        s(out, m);
    }

    fn finish(p: ParsedBody) -> Vec<crate::batch::FinishedTable> {
        p.tables.into_iter().map(|t| t.finish()).collect()
    }

    #[test]
    fn columnar_item_with_time_after_other_columns() {
        let mut b = Vec::new();
        columnar(&mut b, "cpu", 5, 1_700_000_000_123_456_789);
        let p = parse_body(b.clone(), 7).unwrap();
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.rows, 5);
        assert_eq!(p.good_lines, b);
        let t = finish(p);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].measurement, "cpu");
        assert_eq!(t[0].columns, vec![("host".into(), Kind::Tag), ("usage".into(), Kind::Float)]);
        let times = t[0].batch.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!(times.value(0), 1_700_000_000_123_456_789, "nanoseconds exactly");
        assert_eq!(times.value(4), 1_700_000_000_123_456_793);
        assert_eq!(t[0].lines.iter().map(|l| l.0).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn timestamp_units_by_magnitude() {
        for (t, want) in [
            (1_700_000_000i64, 1_700_000_000_000_000_000i64),
            (1_700_000_000_123, 1_700_000_000_123_000_000),
            (1_700_000_000_123_456, 1_700_000_000_123_456_000),
            (1_700_000_000_123_456_789, 1_700_000_000_123_456_789),
        ] {
            assert_eq!(time_nanos(V::Int(t), None).unwrap(), want);
        }
        // Float seconds keep their fraction (to a double's precision, about 256 ns here).
        assert!((time_nanos(V::Float(1_700_000_000.25), None).unwrap() - 1_700_000_000_250_000_000).abs() < 1_000);
        assert!(time_nanos(V::Str("x"), None).is_err());
        // A columnar time column decides the unit from its first value.
        let mut b = Vec::new();
        enc::write_map_len(&mut b, 2).unwrap();
        s(&mut b, "m");
        s(&mut b, "m");
        s(&mut b, "columns");
        enc::write_map_len(&mut b, 2).unwrap();
        s(&mut b, "time");
        enc::write_array_len(&mut b, 2).unwrap();
        enc::write_sint(&mut b, 1_700_000_000_000).unwrap();
        enc::write_sint(&mut b, 5).unwrap();
        s(&mut b, "v");
        enc::write_array_len(&mut b, 2).unwrap();
        enc::write_sint(&mut b, 1).unwrap();
        enc::write_f64(&mut b, 2.5).unwrap();
        let t = finish(parse_body(b, 0).unwrap());
        let times = t[0].batch.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!(times.values(), &[1_700_000_000_000_000_000, 5_000_000]);
        assert_eq!(t[0].columns[0].1, Kind::Float, "integers and floats mix as DOUBLE");
        assert_eq!(t[0].batch.column(1).as_primitive::<Float64Type>().values(), &[1.0, 2.5]);
    }

    #[test]
    fn row_items_batch_and_arrays() {
        let mut b = Vec::new();
        enc::write_map_len(&mut b, 1).unwrap();
        s(&mut b, "batch");
        enc::write_array_len(&mut b, 4).unwrap();
        // Row with tags, fields and host.
        enc::write_map_len(&mut b, 5).unwrap();
        s(&mut b, "m");
        s(&mut b, "cpu");
        s(&mut b, "t");
        enc::write_sint(&mut b, 1_700_000_000_000).unwrap();
        s(&mut b, "h");
        s(&mut b, "srv1");
        s(&mut b, "tags");
        enc::write_map_len(&mut b, 2).unwrap();
        s(&mut b, "region");
        s(&mut b, "eu");
        s(&mut b, "rack");
        enc::write_sint(&mut b, 7).unwrap();
        s(&mut b, "fields");
        enc::write_map_len(&mut b, 3).unwrap();
        s(&mut b, "v");
        enc::write_sint(&mut b, 3).unwrap();
        s(&mut b, "ok");
        enc::write_bool(&mut b, true).unwrap();
        s(&mut b, "msg");
        s(&mut b, "hi");
        // Compact fields and an integer measurement.
        enc::write_map_len(&mut b, 3).unwrap();
        s(&mut b, "m");
        enc::write_sint(&mut b, 42).unwrap();
        s(&mut b, "t");
        enc::write_sint(&mut b, 1).unwrap();
        s(&mut b, "f");
        enc::write_array_len(&mut b, 2).unwrap();
        enc::write_f64(&mut b, 0.5).unwrap();
        enc::write_sint(&mut b, -2).unwrap();
        // A float for v: the column becomes DOUBLE.
        enc::write_map_len(&mut b, 2).unwrap();
        s(&mut b, "m");
        s(&mut b, "cpu");
        s(&mut b, "fields");
        enc::write_map_len(&mut b, 1).unwrap();
        s(&mut b, "v");
        enc::write_f64(&mut b, 1.5).unwrap();
        // Not a map.
        enc::write_sint(&mut b, 5).unwrap();
        let p = parse_body(b, 99).unwrap();
        assert_eq!(p.rows, 3);
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].line_number, 4);
        assert!(p.errors[0].error_message.contains("must be a map"), "{:?}", p.errors);
        let t = finish(p);
        let cpu = &t[0];
        assert_eq!(cpu.measurement, "cpu");
        let names: Vec<_> = cpu.columns.iter().map(|(n, k)| (n.as_str(), *k)).collect();
        assert_eq!(
            names,
            vec![
                ("region", Kind::Tag),
                ("rack", Kind::Tag),
                ("host", Kind::Tag),
                ("v", Kind::Float),
                ("ok", Kind::Boolean),
                ("msg", Kind::String)
            ]
        );
        let times = cpu.batch.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!(times.values(), &[1_700_000_000_000_000_000, 99]);
        assert_eq!(cpu.batch.column(4).as_primitive::<Float64Type>().values(), &[3.0, 1.5]);
        assert_eq!(t[1].measurement, "measurement_42");
        assert_eq!(t[1].columns, vec![("field_0".into(), Kind::Float), ("field_1".into(), Kind::Integer)]);
        assert_eq!(t[1].batch.column(2).as_primitive::<Int64Type>().value(0), -2);

        // A top-level array of items works the same.
        let mut a = Vec::new();
        enc::write_array_len(&mut a, 2).unwrap();
        columnar(&mut a, "x", 2, 10);
        columnar(&mut a, "x", 3, 20);
        let p = parse_body(a, 0).unwrap();
        assert_eq!(p.rows, 5);
        assert_eq!(p.tables.len(), 2);
        assert_eq!(p.tables[1].lines.iter().map(|l| l.0).collect::<Vec<_>>(), vec![3, 4, 5]);
    }

    #[test]
    fn bad_items_and_records_are_listed() {
        let mut b = Vec::new();
        enc::write_array_len(&mut b, 4).unwrap();
        // Length mismatch: the whole item.
        enc::write_map_len(&mut b, 2).unwrap();
        s(&mut b, "m");
        s(&mut b, "a");
        s(&mut b, "columns");
        enc::write_map_len(&mut b, 2).unwrap();
        s(&mut b, "x");
        enc::write_array_len(&mut b, 2).unwrap();
        enc::write_sint(&mut b, 1).unwrap();
        enc::write_sint(&mut b, 2).unwrap();
        s(&mut b, "y");
        enc::write_array_len(&mut b, 1).unwrap();
        enc::write_sint(&mut b, 1).unwrap();
        // Missing m.
        enc::write_map_len(&mut b, 1).unwrap();
        s(&mut b, "fields");
        enc::write_map_len(&mut b, 1).unwrap();
        s(&mut b, "v");
        enc::write_sint(&mut b, 1).unwrap();
        // A wrong-typed value rejects that record only.
        enc::write_map_len(&mut b, 2).unwrap();
        s(&mut b, "m");
        s(&mut b, "c");
        s(&mut b, "columns");
        enc::write_map_len(&mut b, 1).unwrap();
        s(&mut b, "v");
        enc::write_array_len(&mut b, 3).unwrap();
        enc::write_f64(&mut b, 1.0).unwrap();
        s(&mut b, "oops");
        enc::write_f64(&mut b, 3.0).unwrap();
        // Missing fields.
        enc::write_map_len(&mut b, 1).unwrap();
        s(&mut b, "m");
        s(&mut b, "d");
        let p = parse_body(b, 0).unwrap();
        let errs: Vec<_> = p.errors.iter().map(|e| (e.line_number, e.error_message.as_str())).collect();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert_eq!(errs[0].0, 1);
        assert!(errs[0].1.contains("column 'y' has 1 values but an earlier column has 2"), "{errs:?}");
        assert_eq!(errs[1].0, 3);
        assert!(errs[1].1.contains("missing 'm'"), "{errs:?}");
        assert_eq!(errs[2].0, 5);
        assert!(errs[2].1.contains("column 'v' holds float values but this one is string"), "{errs:?}");
        assert_eq!(p.errors[2].original_line, "item 3, entry 1");
        assert!(errs[3].1.contains("missing 'fields'"), "{errs:?}");
        assert_eq!(p.rows, 2);
        let t = finish(p);
        assert_eq!(t[0].batch.column(1).as_primitive::<Float64Type>().values(), &[1.0, 3.0]);
        assert_eq!(t[0].lines.iter().map(|l| l.0).collect::<Vec<_>>(), vec![4, 6]);
    }

    #[test]
    fn damaged_bodies_never_panic() {
        let mut good = Vec::new();
        enc::write_array_len(&mut good, 3).unwrap();
        columnar(&mut good, "cpu", 20, 1_700_000_000_000);
        enc::write_map_len(&mut good, 1).unwrap();
        s(&mut good, "batch");
        enc::write_array_len(&mut good, 1).unwrap();
        columnar(&mut good, "mem", 3, 5);
        enc::write_map_len(&mut good, 3).unwrap();
        s(&mut good, "m");
        s(&mut good, "r");
        s(&mut good, "f");
        enc::write_array_len(&mut good, 2).unwrap();
        enc::write_f64(&mut good, 1.0).unwrap();
        s(&mut good, "x");
        s(&mut good, "t");
        enc::write_sint(&mut good, 7).unwrap();
        assert_eq!(parse_body(good.clone(), 0).unwrap().rows, 24);
        // Flip, drop and insert bytes at pseudo-random places: an error or a
        // smaller result, never a panic or a hang.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % b.len();
                match next() % 3 {
                    0 => b[at] = next() as u8,
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, next() as u8),
                }
                if b.is_empty() {
                    break;
                }
            }
            if let Ok(p) = parse_body(b, 0) {
                for t in p.tables {
                    let f = t.finish();
                    assert_eq!(f.batch.num_rows(), f.lines.len());
                }
            }
        }
    }

    #[test]
    fn malformed_bodies_are_rejected_whole() {
        let mut b = Vec::new();
        columnar(&mut b, "cpu", 10, 1);
        for cut in [1, b.len() / 2, b.len() - 1] {
            let e = parse_body(b[..cut].to_vec(), 0).err().unwrap().to_string();
            assert!(e.contains("truncated"), "{e}");
        }
        let mut extra = b.clone();
        extra.push(0x01);
        assert!(parse_body(extra, 0).err().unwrap().to_string().contains("trailing bytes"));
        assert!(parse_body(vec![0xc1], 0).err().unwrap().to_string().contains("reserved"));
        assert!(parse_body(Vec::new(), 0).is_err());
        // A huge declared length does not allocate or panic.
        assert!(parse_body(vec![0xdd, 0xff, 0xff, 0xff, 0xff], 0).is_err());
        assert!(parse_body(vec![0xdf, 0xff, 0xff, 0xff, 0xff], 0).is_err());
    }
}

#[cfg(test)]
mod speed {
    #![allow(clippy::unwrap_used)]
    use rmp::encode as enc;

    /// Decoding speed alone (no HTTP, no DuckDB): `cargo test --release
    /// --workspace --all-targets -- --ignored decode_speed --nocapture`.
    #[test]
    #[ignore]
    fn decode_speed() {
        let n = 10_000usize;
        let mut b = Vec::new();
        enc::write_map_len(&mut b, 2).unwrap();
        enc::write_str(&mut b, "m").unwrap();
        enc::write_str(&mut b, "cpu").unwrap();
        enc::write_str(&mut b, "columns").unwrap();
        enc::write_map_len(&mut b, 5).unwrap();
        enc::write_str(&mut b, "time").unwrap();
        enc::write_array_len(&mut b, n as u32).unwrap();
        for i in 0..n {
            enc::write_sint(&mut b, 1_700_000_000_000_000_000 + i as i64).unwrap();
        }
        enc::write_str(&mut b, "host").unwrap();
        enc::write_array_len(&mut b, n as u32).unwrap();
        for i in 0..n {
            enc::write_str(&mut b, &format!("server{:02}", i % 10)).unwrap();
        }
        for name in ["value", "cpu_idle", "cpu_user"] {
            enc::write_str(&mut b, name).unwrap();
            enc::write_array_len(&mut b, n as u32).unwrap();
            for i in 0..n {
                enc::write_f64(&mut b, i as f64 / 7.0).unwrap();
            }
        }
        let rounds = 300;
        let t = std::time::Instant::now();
        let mut rows = 0;
        for _ in 0..rounds {
            let p = super::parse_body(b.clone(), 0).unwrap();
            rows += p.rows;
            for t in p.tables {
                std::hint::black_box(t.finish());
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!("decode: {:.0} records/s ({} bytes per body)", rows as f64 / secs, b.len());
    }
}
