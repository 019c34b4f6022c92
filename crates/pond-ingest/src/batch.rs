//! Parsed lines → one columnar [`TableBatch`] per measurement (Arrow
//! builders, filled straight from the zero-copy parser), plus the per-line
//! errors of the body.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use pond_lineproto::{FieldValue, Precision};

use crate::LineError;

/// Name of the timestamp column of every measurement table.
pub const TIME_COLUMN: &str = "time";
/// Table in each database recording the last write-ahead-log sequence applied.
pub const WAL_STATE_TABLE: &str = "_pond_ingest_wal";

/// What a column holds; tags and string fields are both VARCHAR in DuckDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tag,
    Float,
    Integer,
    UInteger,
    String,
    Boolean,
}

impl Kind {
    pub fn duckdb_type(self) -> &'static str {
        match self {
            Kind::Tag | Kind::String => "VARCHAR",
            Kind::Float => "DOUBLE",
            Kind::Integer => "BIGINT",
            Kind::UInteger => "UBIGINT",
            Kind::Boolean => "BOOLEAN",
        }
    }

    pub fn arrow_type(self) -> DataType {
        match self {
            Kind::Tag | Kind::String => DataType::Utf8,
            Kind::Float => DataType::Float64,
            Kind::Integer => DataType::Int64,
            Kind::UInteger => DataType::UInt64,
            Kind::Boolean => DataType::Boolean,
        }
    }

    pub(crate) fn of(v: &FieldValue<'_>) -> Kind {
        match v {
            FieldValue::Float(_) => Kind::Float,
            FieldValue::Integer(_) => Kind::Integer,
            FieldValue::UInteger(_) => Kind::UInteger,
            FieldValue::String(_) => Kind::String,
            FieldValue::Boolean(_) => Kind::Boolean,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Tag => "tag",
            Kind::Float => "float",
            Kind::Integer => "integer",
            Kind::UInteger => "unsigned integer",
            Kind::String => "string",
            Kind::Boolean => "boolean",
        }
    }
}

pub(crate) enum Values {
    Str(StringBuilder),
    Float(Float64Builder),
    Int(Int64Builder),
    UInt(UInt64Builder),
    Bool(BooleanBuilder),
}

impl Values {
    pub(crate) fn new(kind: Kind) -> Self {
        match kind {
            Kind::Tag | Kind::String => Values::Str(StringBuilder::new()),
            Kind::Float => Values::Float(Float64Builder::new()),
            Kind::Integer => Values::Int(Int64Builder::new()),
            Kind::UInteger => Values::UInt(UInt64Builder::new()),
            Kind::Boolean => Values::Bool(BooleanBuilder::new()),
        }
    }
    /// Empty, with room for `rows` values.
    pub(crate) fn with_capacity(kind: Kind, rows: usize) -> Self {
        match kind {
            Kind::Tag | Kind::String => Values::Str(StringBuilder::with_capacity(rows, rows * 8)),
            Kind::Float => Values::Float(Float64Builder::with_capacity(rows)),
            Kind::Integer => Values::Int(Int64Builder::with_capacity(rows)),
            Kind::UInteger => Values::UInt(UInt64Builder::with_capacity(rows)),
            Kind::Boolean => Values::Bool(BooleanBuilder::with_capacity(rows)),
        }
    }
    pub(crate) fn len(&self) -> usize {
        use arrow_array::builder::ArrayBuilder;
        match self {
            Values::Str(b) => b.len(),
            Values::Float(b) => b.len(),
            Values::Int(b) => b.len(),
            Values::UInt(b) => b.len(),
            Values::Bool(b) => b.len(),
        }
    }
    pub(crate) fn nulls(&mut self, n: usize) {
        match self {
            Values::Str(b) => b.append_nulls(n),
            Values::Float(b) => b.append_nulls(n),
            Values::Int(b) => b.append_nulls(n),
            Values::UInt(b) => b.append_nulls(n),
            Values::Bool(b) => b.append_nulls(n),
        }
    }
    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            Values::Str(b) => Arc::new(b.finish()),
            Values::Float(b) => Arc::new(b.finish()),
            Values::Int(b) => Arc::new(b.finish()),
            Values::UInt(b) => Arc::new(b.finish()),
            Values::Bool(b) => Arc::new(b.finish()),
        }
    }
}

pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) values: Values,
}

/// The rows of one measurement in one request.
pub struct TableBatch {
    pub measurement: String,
    pub(crate) time: TimestampNanosecondBuilder,
    pub(crate) columns: Vec<Column>,
    /// Per row: the line number and the line's byte range in
    /// [`ParsedBody::good_lines`] (for error reports).
    pub lines: Vec<(usize, u32, u32)>,
    /// Integer fields may go into an existing DOUBLE column (converted):
    /// MessagePack cannot tell `1` from `1.0` for a client; line protocol's
    /// `1i` into a float column stays an error, as in InfluxDB.
    pub(crate) ints_to_double: bool,
    /// Column index of each tag, then each field, of the last line
    /// [`TableBatch::prepare`] accepted (lines of a body mostly share one shape).
    slots: Vec<usize>,
    /// Rows to make room for in new columns while the table is empty.
    capacity: usize,
}

/// A finished [`TableBatch`]: Arrow arrays plus the column kinds.
pub struct FinishedTable {
    pub measurement: String,
    pub columns: Vec<(String, Kind)>,
    /// `time` first, then `columns` in order.
    pub batch: RecordBatch,
    pub lines: Vec<(usize, u32, u32)>,
    pub ints_to_double: bool,
}

impl TableBatch {
    pub(crate) fn new(measurement: String) -> Self {
        Self {
            measurement,
            time: TimestampNanosecondBuilder::new(),
            columns: Vec::new(),
            lines: Vec::new(),
            ints_to_double: false,
            slots: Vec::new(),
            capacity: 0,
        }
    }

    /// Makes room for `rows` rows (in the columns to come, too) while empty.
    pub(crate) fn reserve(&mut self, rows: usize) {
        if self.lines.is_empty() {
            let rows = rows.min(1 << 20);
            self.capacity = rows;
            self.time = TimestampNanosecondBuilder::with_capacity(rows);
            self.lines.reserve(rows);
        }
    }

    /// Names of the tag and field columns of these rows.
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    /// Checks a line against the columns seen so far in this request; nothing
    /// is added when it fails.
    pub(crate) fn check(&self, line: &pond_lineproto::Line<'_>) -> Result<(), String> {
        let check_one = |name: &str, kind: Kind| -> Result<(), String> {
            if name.eq_ignore_ascii_case(TIME_COLUMN) {
                return Err(format!("'{name}' cannot be a tag or field name (it is the timestamp column)"));
            }
            if let Some(i) = self.find(name) {
                let c = &self.columns[i];
                if c.name != name {
                    return Err(format!("'{name}' and '{}' differ only in case (column names are case-insensitive)", c.name));
                }
                if c.kind != kind {
                    return Err(format!(
                        "{} '{name}' is a {} here but a {} in an earlier line of this request",
                        if kind == Kind::Tag { "tag" } else { "field" },
                        kind.name(),
                        c.kind.name()
                    ));
                }
            }
            Ok(())
        };
        for (k, _) in &line.fields {
            if line.tags.iter().any(|(t, _)| t.eq_ignore_ascii_case(k)) {
                return Err(format!("'{k}' is both a tag and a field"));
            }
        }
        // Two names of one line that differ only in case would share a column.
        let names = || line.tags.iter().map(|(k, _)| k).chain(line.fields.iter().map(|(k, _)| k));
        for (i, a) in names().enumerate() {
            if let Some(b) = names().skip(i + 1).find(|b| a.eq_ignore_ascii_case(b)) {
                return Err(format!("'{a}' and '{b}' differ only in case (column names are case-insensitive)"));
            }
        }
        for (k, _) in &line.tags {
            check_one(k, Kind::Tag)?;
        }
        for (k, v) in &line.fields {
            check_one(k, Kind::of(v))?;
        }
        Ok(())
    }

    /// Column index by name, case-insensitively (a short linear scan: no
    /// allocation per value).
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name.len() == name.len() && c.name.eq_ignore_ascii_case(name))
    }

    fn column(&mut self, name: &str, kind: Kind) -> &mut Values {
        let i = self.column_index(name, kind);
        &mut self.columns[i].values
    }

    /// The column `name`, added (null so far) when new.
    fn column_index(&mut self, name: &str, kind: Kind) -> usize {
        match self.find(name) {
            Some(i) => i,
            None => {
                let mut values =
                    if self.lines.is_empty() && self.capacity > 0 { Values::with_capacity(kind, self.capacity) } else { Values::new(kind) };
                values.nulls(self.lines.len());
                self.columns.push(Column { name: name.to_string(), kind, values });
                self.columns.len() - 1
            }
        }
    }

    /// [`TableBatch::check`] for a line, then its columns (added when new)
    /// for [`TableBatch::push_prepared`]. A line naming the same columns
    /// with the same kinds as the previous one needs only a comparison per
    /// name: column names are unique case-insensitively, so an exact match
    /// is the column the search would find, and it passed the checks before.
    pub(crate) fn prepare(&mut self, line: &pond_lineproto::Line<'_>) -> Result<(), String> {
        let tags = line.tags.len();
        if self.slots.len() == tags + line.fields.len() {
            let columns = &self.columns;
            let same = |slot: usize, name: &str, kind: Kind| {
                columns.get(slot).is_some_and(|c| c.kind == kind && pond_lineproto::same_name(&c.name, name))
            };
            let (tag_slots, field_slots) = self.slots.split_at(tags);
            if line.tags.iter().zip(tag_slots).all(|((k, _), &i)| same(i, k, Kind::Tag))
                && line.fields.iter().zip(field_slots).all(|((k, v), &i)| same(i, k, Kind::of(v)))
            {
                return Ok(());
            }
        }
        self.check(line)?;
        self.slots.clear();
        for (k, _) in &line.tags {
            let i = self.column_index(k, Kind::Tag);
            self.slots.push(i);
        }
        for (k, v) in &line.fields {
            let i = self.column_index(k, Kind::of(v));
            self.slots.push(i);
        }
        Ok(())
    }

    /// Appends a line [`TableBatch::prepare`] accepted just before.
    pub(crate) fn push_prepared(&mut self, line: &pond_lineproto::Line<'_>, time: i64, line_number: usize, range: (u32, u32)) {
        self.time.append_value(time);
        let (tag_slots, field_slots) = self.slots.split_at(line.tags.len());
        for ((_, v), &i) in line.tags.iter().zip(tag_slots) {
            if let Values::Str(b) = &mut self.columns[i].values {
                b.append_value(v);
            }
        }
        for ((_, v), &i) in line.fields.iter().zip(field_slots) {
            match (&mut self.columns[i].values, v) {
                (Values::Str(b), FieldValue::String(s)) => b.append_value(s),
                (Values::Float(b), FieldValue::Float(x)) => b.append_value(*x),
                (Values::Int(b), FieldValue::Integer(x)) => b.append_value(*x),
                (Values::UInt(b), FieldValue::UInteger(x)) => b.append_value(*x),
                (Values::Bool(b), FieldValue::Boolean(x)) => b.append_value(*x),
                _ => {}
            }
        }
        self.lines.push((line_number, range.0, range.1));
        // The line's names are distinct columns: when there are as many as
        // columns, every column has its value.
        if self.slots.len() != self.columns.len() {
            let rows = self.lines.len();
            for c in &mut self.columns {
                let missing = rows - c.values.len();
                if missing > 0 {
                    c.values.nulls(missing);
                }
            }
        }
    }

    pub(crate) fn push(&mut self, line: &pond_lineproto::Line<'_>, time: i64, line_number: usize, range: (u32, u32)) {
        self.time.append_value(time);
        for (k, v) in &line.tags {
            if let Values::Str(b) = self.column(k, Kind::Tag) {
                b.append_value(v);
            }
        }
        for (k, v) in &line.fields {
            match (self.column(k, Kind::of(v)), v) {
                (Values::Str(b), FieldValue::String(s)) => b.append_value(s),
                (Values::Float(b), FieldValue::Float(x)) => b.append_value(*x),
                (Values::Int(b), FieldValue::Integer(x)) => b.append_value(*x),
                (Values::UInt(b), FieldValue::UInteger(x)) => b.append_value(*x),
                (Values::Bool(b), FieldValue::Boolean(x)) => b.append_value(*x),
                _ => {}
            }
        }
        self.lines.push((line_number, range.0, range.1));
        let rows = self.lines.len();
        for c in &mut self.columns {
            let missing = rows - c.values.len();
            if missing > 0 {
                c.values.nulls(missing);
            }
        }
    }

    pub fn finish(mut self) -> FinishedTable {
        let mut fields = vec![Field::new(TIME_COLUMN, DataType::Timestamp(TimeUnit::Nanosecond, None), false)];
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(self.time.finish())];
        let mut columns = Vec::new();
        for c in &mut self.columns {
            fields.push(Field::new(&c.name, c.kind.arrow_type(), true));
            arrays.push(c.values.finish());
            columns.push((c.name.clone(), c.kind));
        }
        let schema = Arc::new(Schema::new(fields));
        // Every column has one value per row by construction.
        let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap_or_else(|_| RecordBatch::new_empty(schema));
        FinishedTable { measurement: self.measurement, columns, batch, lines: self.lines, ints_to_double: self.ints_to_double }
    }
}

/// A body turned into per-measurement batches.
pub struct ParsedBody {
    pub tables: Vec<TableBatch>,
    pub errors: Vec<LineError>,
    /// The accepted lines, newline-separated (what the write-ahead log stores).
    pub good_lines: Vec<u8>,
    pub rows: usize,
}

/// The accepted lines' text, gathered as runs of adjacent lines of the body
/// (one copy per run rather than one per line).
struct GoodLines<'a> {
    body: &'a [u8],
    out: Vec<u8>,
    /// The body range not yet copied into `out` (`run.0 == run.1`: none).
    run: (usize, usize),
    /// `out`'s length once the run is copied, with its newline.
    len: usize,
}

impl<'a> GoodLines<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self { body, out: Vec::with_capacity(body.len() + 1), run: (0, 0), len: 0 }
    }

    /// Adds `body[start..end]` and a newline; its range in the output.
    #[inline]
    fn push(&mut self, start: usize, end: usize) -> (u32, u32) {
        let at = self.len;
        let (run_start, run_end) = self.run;
        if run_start < run_end && start == run_end + 1 && self.body.get(run_end) == Some(&b'\n') {
            // Directly after the run, separated by its newline.
            self.run.1 = end;
        } else {
            self.flush();
            self.run = (start, end);
        }
        self.len += end - start + 1;
        (at as u32, (at + end - start) as u32)
    }

    fn flush(&mut self) {
        let (start, end) = self.run;
        if start < end {
            self.out.extend_from_slice(&self.body[start..end]);
            self.out.push(b'\n');
        }
        self.run = (0, 0);
    }

    fn finish(mut self) -> Vec<u8> {
        self.flush();
        self.out
    }
}

/// Parses a line-protocol body. Lines without a timestamp get `default_time`
/// (nanoseconds); the others are converted from `precision`.
pub fn parse_body(body: &[u8], precision: Precision, default_time: i64) -> ParsedBody {
    let mut tables: Vec<TableBatch> = Vec::new();
    let mut errors = Vec::new();
    let mut good = GoodLines::new(body);
    let mut rows = 0;
    // One line, its vectors reused for every line of the body.
    let mut line = pond_lineproto::Line::empty();
    let mut lines = pond_lineproto::parse_lines(body);
    // The table of the previous line (lines of one measurement come in runs).
    let mut last_table = usize::MAX;
    while let Some(raw) = lines.next_into(&mut line) {
        let fail = |message: String| LineError {
            line_number: raw.line_number,
            original_line: String::from_utf8_lossy(raw.text).into_owned(),
            error_message: message,
        };
        if let Err(e) = raw.parsed {
            errors.push(fail(e.message));
            continue;
        }
        let time = match line.timestamp {
            None => default_time,
            Some(ts) => match precision.to_nanos(ts) {
                Some(t) => t,
                None => {
                    errors.push(fail(format!("timestamp {ts} is out of range for precision {precision:?}")));
                    continue;
                }
            },
        };
        if line.measurement.starts_with("_pond") {
            errors.push(fail(format!("measurement names starting with '_pond' are reserved ('{}')", line.measurement)));
            continue;
        }
        // Table names are unique case-insensitively, so an exact match with
        // the previous line's table is the table the search would find.
        let ti = match tables.get(last_table) {
            Some(t) if pond_lineproto::same_name(&t.measurement, &line.measurement) => last_table,
            _ => match tables.iter().position(|t| t.measurement.eq_ignore_ascii_case(&line.measurement)) {
                Some(i) => i,
                None => {
                    let mut t = TableBatch::new(line.measurement.to_string());
                    if tables.is_empty() {
                        // Room for the body's lines if they are all like this one.
                        t.reserve(body.len() / (raw.text.len() + 1) + 1);
                    }
                    tables.push(t);
                    tables.len() - 1
                }
            },
        };
        last_table = ti;
        let table = &mut tables[ti];
        if table.measurement != line.measurement {
            errors.push(fail(format!(
                "measurement '{}' differs from '{}' only in case (table names are case-insensitive)",
                line.measurement, table.measurement
            )));
            continue;
        }
        if let Err(e) = table.prepare(&line) {
            errors.push(fail(e));
            continue;
        }
        let range = good.push(raw.offset, raw.offset + raw.text.len());
        table.push_prepared(&line, time, raw.line_number, range);
        rows += 1;
    }
    ParsedBody { tables, errors, good_lines: good.finish(), rows }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType};
    use arrow_array::Array;

    #[test]
    fn rows_and_columns() {
        let body = b"cpu,host=a v=1 10\ncpu,host=b v=2,n=3i 20\nmem free=5u\nbad\ncpu v=1i 30\n";
        let p = parse_body(body, Precision::Second, 99);
        assert_eq!(p.rows, 3);
        assert_eq!(p.errors.len(), 2);
        assert_eq!(p.errors[0].line_number, 4);
        assert_eq!(p.errors[1].line_number, 5);
        assert!(p.errors[1].error_message.contains("integer here but a float"), "{}", p.errors[1].error_message);
        assert_eq!(p.good_lines, b"cpu,host=a v=1 10\ncpu,host=b v=2,n=3i 20\nmem free=5u\n");
        let mut tables = p.tables.into_iter();
        let cpu = tables.next().unwrap().finish();
        assert_eq!(cpu.columns, vec![("host".into(), Kind::Tag), ("v".into(), Kind::Float), ("n".into(), Kind::Integer)]);
        let b = &cpu.batch;
        assert_eq!(b.num_rows(), 2);
        let t = b.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!(t.values(), &[10_000_000_000, 20_000_000_000]);
        assert_eq!(b.column(2).as_primitive::<Float64Type>().values(), &[1.0, 2.0]);
        let n = b.column(3).as_primitive::<Int64Type>();
        assert!(n.is_null(0));
        assert_eq!(n.value(1), 3);
        let mem = tables.next().unwrap().finish();
        assert_eq!(mem.batch.column(0).as_primitive::<TimestampNanosecondType>().value(0), 99, "default time");
    }

    #[test]
    fn reserved_and_conflicting_names() {
        let p = parse_body(b"m,time=x v=1\nm v=1,t=2\nm,t=1 t=2\n_pond_x v=1\nM v=1\nm V=1\n", Precision::Nanosecond, 0);
        let msgs: Vec<_> = p.errors.iter().map(|e| (e.line_number, e.error_message.clone())).collect();
        assert!(msgs[0].1.contains("timestamp column"), "{msgs:?}");
        assert!(msgs[1].1.contains("both a tag and a field"), "{msgs:?}");
        assert!(msgs[2].1.contains("reserved"), "{msgs:?}");
        assert!(msgs[3].1.contains("only in case"), "{msgs:?}");
        assert!(msgs[4].1.contains("only in case"), "{msgs:?}");
        assert_eq!(p.rows, 1);
    }

    #[test]
    fn names_of_one_line_differing_in_case_are_rejected() {
        let p = parse_body(b"m,a=1,A=2 v=1\nm,a=1 v=1,V=2\nm,a=1 v=1\n", Precision::Nanosecond, 0);
        let msgs: Vec<_> = p.errors.iter().map(|e| (e.line_number, e.error_message.as_str())).collect();
        assert_eq!(
            msgs,
            vec![
                (1, "'a' and 'A' differ only in case (column names are case-insensitive)"),
                (2, "'v' and 'V' differ only in case (column names are case-insensitive)")
            ]
        );
        assert_eq!(p.rows, 1);
        let t = p.tables.into_iter().next().unwrap().finish();
        assert_eq!(t.columns, vec![("a".into(), Kind::Tag), ("v".into(), Kind::Float)]);
        assert_eq!(t.batch.num_rows(), 1);
    }

    /// Lines whose shape changes from one to the next (new, missing,
    /// reordered columns, another kind, other tables) land in the right
    /// columns, with nulls where a line has no value.
    #[test]
    fn changing_line_shapes() {
        let body = b"cpu,h=a v=1,n=1i 1\ncpu,h=b v=2,n=2i 2\ncpu,h=c n=3i,v=3 3\ncpu,h=d v=4 4\ncpu v=5,s=\"x\" 5\n\
                     mem f=1 6\ncpu,h=e v=6i 7\ncpu,h=f n=7i,v=7,s=\"y\" 8\ncpu,H=g v=8 9\ncpu,h=h v=9 10\n";
        let p = parse_body(body, Precision::Nanosecond, 0);
        let msgs: Vec<_> = p.errors.iter().map(|e| (e.line_number, e.error_message.as_str())).collect();
        assert_eq!(
            msgs,
            vec![
                (7, "field 'v' is a integer here but a float in an earlier line of this request"),
                (9, "'H' and 'h' differ only in case (column names are case-insensitive)")
            ]
        );
        assert_eq!(p.rows, 8);
        let mut tables = p.tables.into_iter();
        let cpu = tables.next().unwrap().finish();
        assert_eq!(
            cpu.columns,
            vec![("h".into(), Kind::Tag), ("v".into(), Kind::Float), ("n".into(), Kind::Integer), ("s".into(), Kind::String)]
        );
        let b = &cpu.batch;
        let h = b.column(1).as_string::<i32>();
        let got: Vec<_> = (0..b.num_rows()).map(|i| h.is_valid(i).then(|| h.value(i))).collect();
        assert_eq!(got, vec![Some("a"), Some("b"), Some("c"), Some("d"), None, Some("f"), Some("h")]);
        assert_eq!(b.column(2).as_primitive::<Float64Type>().values(), &[1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 9.0]);
        let n = b.column(3).as_primitive::<Int64Type>();
        let got: Vec<_> = (0..b.num_rows()).map(|i| n.is_valid(i).then(|| n.value(i))).collect();
        assert_eq!(got, vec![Some(1), Some(2), Some(3), None, None, Some(7), None]);
        let s = b.column(4).as_string::<i32>();
        let got: Vec<_> = (0..b.num_rows()).map(|i| s.is_valid(i).then(|| s.value(i))).collect();
        assert_eq!(got, vec![None, None, None, None, Some("x"), Some("y"), None]);
        assert_eq!(cpu.lines.iter().map(|l| l.0).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 8, 10]);
        let mem = tables.next().unwrap().finish();
        assert_eq!(mem.batch.num_rows(), 1);
    }

    /// The accepted lines are copied as they were, one newline after each,
    /// whatever surrounds them (comments, blank lines, CRLF, rejected lines,
    /// no final newline); each row's range points at its own line.
    #[test]
    fn good_lines_and_their_ranges() {
        let body = b"# head\na v=1 1\na v=2 2\r\na v=3 3\n\n  a v=4 4\nbad\na v=5 5\na v=x 6\na v=7 7\na v=8 8";
        let p = parse_body(body, Precision::Nanosecond, 0);
        assert_eq!(p.rows, 7);
        assert_eq!(p.good_lines, b"a v=1 1\na v=2 2\na v=3 3\n  a v=4 4\na v=5 5\na v=7 7\na v=8 8\n");
        let t = &p.tables[0];
        let texts: Vec<_> = t.lines.iter().map(|&(n, s, e)| (n, &p.good_lines[s as usize..e as usize])).collect();
        assert_eq!(
            texts,
            vec![
                (2, &b"a v=1 1"[..]),
                (3, b"a v=2 2"),
                (4, b"a v=3 3"),
                (6, b"  a v=4 4"),
                (8, b"a v=5 5"),
                (10, b"a v=7 7"),
                (11, b"a v=8 8")
            ]
        );
        let p = parse_body(b"bad\n", Precision::Nanosecond, 0);
        assert!(p.good_lines.is_empty());
    }

    #[test]
    fn timestamp_overflow_is_a_line_error() {
        let p = parse_body(b"m v=1 9223372036854775807\n", Precision::Second, 0);
        assert_eq!(p.rows, 0);
        assert!(p.errors[0].error_message.contains("out of range"));
    }
}
