//! Continuous queries: the statement grammar, the definition, the time window
//! of a run and the rewrite of the query to that window.
//!
//! `CREATE CONTINUOUS QUERY [IF NOT EXISTS] name EVERY [INTERVAL] '1 minute'
//! [GRACE [INTERVAL] '30 seconds'] AS INSERT INTO target [(cols)] SELECT
//! time_bucket(INTERVAL '1 minute', time) …, agg(…) FROM measurement … GROUP BY …`
//!
//! A run covers `[watermark, end)`, where `end` is the last boundary of the
//! EVERY grid (aligned like `time_bucket`'s default origin, 2000-01-03) at or
//! before `now - grace`; the first run has no lower bound. The query's one
//! source table is replaced by `(SELECT * FROM source WHERE time >= start AND
//! time < end)` in DuckDB's own parse tree (`json_serialize_sql` →
//! `json_deserialize_sql`), so only rows of complete, new buckets are read:
//! the bucket width must divide EVERY, so no bucket straddles two runs.

use serde_json::Value;

use crate::{Error, Result};

/// Microseconds from the Unix epoch to 2000-01-03 00:00:00 UTC, `time_bucket`'s default origin.
pub const ORIGIN_US: i64 = 946_857_600_000_000;

/// The column every measurement's rows are bucketed by.
pub const TIME_COLUMN: &str = "time";

/// A parsed `CREATE CONTINUOUS QUERY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateStatement {
    pub name: String,
    pub if_not_exists: bool,
    pub every: String,
    pub grace: Option<String>,
    /// `INSERT INTO … SELECT …` as written.
    pub insert: String,
}

/// One of the job statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Create(CreateStatement),
    Drop { name: String, if_exists: bool },
    Show,
}

/// Whether `text` is a job statement (to route it here); the words only.
pub fn is_job_statement(text: &str) -> bool {
    let words: Vec<String> = text.split_whitespace().take(3).map(|w| w.trim_end_matches(';').to_ascii_lowercase()).collect();
    matches!(
        words.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
        ["create", "continuous", "query"] | ["drop", "continuous", "query"] | ["show", "continuous", "queries"]
    )
}

/// A small scanner over the statement's head (the query itself is DuckDB's to parse).
pub(crate) struct Cursor<'a> {
    pub(crate) s: &'a str,
    pub(crate) i: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn ws(&mut self) {
        let b = self.s.as_bytes();
        while self.i < b.len() && b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    /// The next bare word (letters, digits, `_`), without consuming it.
    pub(crate) fn peek_word(&mut self) -> Option<&'a str> {
        self.ws();
        let b = self.s.as_bytes();
        let mut j = self.i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        (j > self.i).then(|| &self.s[self.i..j])
    }

    pub(crate) fn word(&mut self, w: &str) -> bool {
        match self.peek_word() {
            Some(x) if x.eq_ignore_ascii_case(w) => {
                self.i += x.len();
                true
            }
            _ => false,
        }
    }

    pub(crate) fn expect(&mut self, w: &str, what: &str) -> Result<()> {
        if self.word(w) {
            Ok(())
        } else {
            Err(Error::Syntax(format!("expected {what}")))
        }
    }

    /// A quoted (`"…"`, `""` escapes) or bare identifier.
    pub(crate) fn ident(&mut self) -> Option<String> {
        self.ws();
        let b = self.s.as_bytes();
        if self.i < b.len() && b[self.i] == b'"' {
            let mut out = String::new();
            let mut j = self.i + 1;
            while j < b.len() {
                if b[j] == b'"' {
                    if j + 1 < b.len() && b[j + 1] == b'"' {
                        out.push('"');
                        j += 2;
                        continue;
                    }
                    self.i = j + 1;
                    return Some(out);
                }
                let ch = self.s[j..].chars().next()?;
                out.push(ch);
                j += ch.len_utf8();
            }
            return None;
        }
        let w = self.peek_word()?;
        self.i += w.len();
        Some(w.to_string())
    }

    /// A single-quoted string (`''` escapes).
    pub(crate) fn string(&mut self) -> Option<String> {
        self.ws();
        let b = self.s.as_bytes();
        if self.i >= b.len() || b[self.i] != b'\'' {
            return None;
        }
        let mut out = String::new();
        let mut j = self.i + 1;
        while j < b.len() {
            if b[j] == b'\'' {
                if j + 1 < b.len() && b[j + 1] == b'\'' {
                    out.push('\'');
                    j += 2;
                    continue;
                }
                self.i = j + 1;
                return Some(out);
            }
            let ch = self.s[j..].chars().next()?;
            out.push(ch);
            j += ch.len_utf8();
        }
        None
    }

    /// `[INTERVAL] '1 minute'` or `[INTERVAL] 1 MINUTE`.
    pub(crate) fn interval(&mut self, what: &str) -> Result<String> {
        self.word("interval");
        if let Some(s) = self.string() {
            return Ok(s);
        }
        let n = self.peek_word().filter(|w| w.bytes().all(|c| c.is_ascii_digit()));
        let Some(n) = n else { return Err(Error::Syntax(format!("expected an interval after {what}, e.g. INTERVAL '1 minute'"))) };
        self.i += n.len();
        let unit = self.peek_word().ok_or_else(|| Error::Syntax(format!("expected a unit after {what} {n}, e.g. MINUTE")))?;
        self.i += unit.len();
        Ok(format!("{n} {unit}"))
    }

    /// `a.b.c`: one to three identifiers joined by dots.
    pub(crate) fn qualified_name(&mut self) -> Option<Vec<String>> {
        let mut parts = vec![self.ident()?];
        while self.s[self.i..].starts_with('.') && parts.len() < 3 {
            self.i += 1;
            parts.push(self.ident()?);
        }
        Some(parts)
    }

    /// `(KEY value, …)`: keys upper-cased; values are strings, numbers or bare words.
    pub(crate) fn options(&mut self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        self.ws();
        if !self.s[self.i..].starts_with('(') {
            return Ok(out);
        }
        self.i += 1;
        loop {
            self.ws();
            if self.s[self.i..].starts_with(')') {
                self.i += 1;
                return Ok(out);
            }
            let key = self.peek_word().ok_or_else(|| Error::Syntax("expected an option name in ( … )".into()))?;
            self.i += key.len();
            let key = key.to_ascii_uppercase();
            self.ws();
            let value = if let Some(s) = self.string() {
                s
            } else {
                let b = self.s.as_bytes();
                let start = self.i;
                while self.i < b.len() && (b[self.i].is_ascii_alphanumeric() || matches!(b[self.i], b'_' | b'.' | b'-' | b'+')) {
                    self.i += 1;
                }
                if start == self.i {
                    return Err(Error::Syntax(format!("expected a value after {key}: a 'string', a number or a word")));
                }
                self.s[start..self.i].to_string()
            };
            out.push((key, value));
            self.ws();
            if self.s[self.i..].starts_with(',') {
                self.i += 1;
            } else if !self.s[self.i..].starts_with(')') {
                return Err(Error::Syntax("expected , or ) in the option list".into()));
            }
        }
    }

    pub(crate) fn rest(&mut self) -> &'a str {
        self.ws();
        self.s[self.i..].trim_end().trim_end_matches(';').trim_end()
    }
}

/// Parses a job statement (`None`: not one).
pub fn parse(text: &str) -> Option<Result<Statement>> {
    if !is_job_statement(text) {
        return None;
    }
    Some(parse_inner(text))
}

fn parse_inner(text: &str) -> Result<Statement> {
    let mut c = Cursor { s: text, i: 0 };
    if c.word("show") {
        c.expect("continuous", "CONTINUOUS")?;
        c.expect("queries", "QUERIES")?;
        if !c.rest().is_empty() {
            return Err(Error::Syntax("nothing may follow SHOW CONTINUOUS QUERIES".into()));
        }
        return Ok(Statement::Show);
    }
    if c.word("drop") {
        c.expect("continuous", "CONTINUOUS")?;
        c.expect("query", "QUERY")?;
        let if_exists = if c.word("if") {
            c.expect("exists", "EXISTS after IF")?;
            true
        } else {
            false
        };
        let name = c.ident().ok_or_else(|| Error::Syntax("expected a name: DROP CONTINUOUS QUERY [IF EXISTS] name".into()))?;
        if !c.rest().is_empty() {
            return Err(Error::Syntax(format!("nothing may follow DROP CONTINUOUS QUERY {name}")));
        }
        return Ok(Statement::Drop { name, if_exists });
    }
    c.expect("create", "CREATE")?;
    c.expect("continuous", "CONTINUOUS")?;
    c.expect("query", "QUERY")?;
    let if_not_exists = if c.word("if") {
        c.expect("not", "NOT after IF")?;
        c.expect("exists", "EXISTS after IF NOT")?;
        true
    } else {
        false
    };
    let usage = "CREATE CONTINUOUS QUERY name EVERY INTERVAL '1 minute' [GRACE INTERVAL '30 seconds'] AS INSERT INTO target SELECT …";
    let name = c.ident().ok_or_else(|| Error::Syntax(format!("expected a name: {usage}")))?;
    if name.is_empty() || name.len() > 128 {
        return Err(Error::Invalid("a continuous query's name has 1 to 128 characters".into()));
    }
    c.expect("every", &format!("EVERY after the name: {usage}"))?;
    let every = c.interval("EVERY")?;
    let grace = if c.word("grace") { Some(c.interval("GRACE")?) } else { None };
    c.expect("as", &format!("AS before the query: {usage}"))?;
    let insert = c.rest().to_string();
    split_insert(&insert)?;
    Ok(Statement::Create(CreateStatement { name, if_not_exists, every, grace, insert }))
}

/// `INSERT INTO target [(cols)]` and the query after it.
pub fn split_insert(insert: &str) -> Result<(&str, &str)> {
    let mut c = Cursor { s: insert, i: 0 };
    let err = || Error::Invalid("the body of a continuous query is INSERT INTO target [(columns)] SELECT …".into());
    if !(c.word("insert") && c.word("into")) {
        return Err(err());
    }
    // target: ident(.ident)*
    c.ident().ok_or_else(err)?;
    loop {
        c.ws();
        if insert[c.i..].starts_with('.') {
            c.i += 1;
            c.ident().ok_or_else(err)?;
        } else {
            break;
        }
    }
    c.ws();
    if insert[c.i..].starts_with('(') {
        // A column list: balanced parentheses (identifiers only, so no strings to skip but quoted names).
        let b = insert.as_bytes();
        let mut depth = 0;
        let mut quoted = false;
        while c.i < b.len() {
            match b[c.i] {
                b'"' => quoted = !quoted,
                b'(' if !quoted => depth += 1,
                b')' if !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        c.i += 1;
                        break;
                    }
                }
                _ => {}
            }
            c.i += 1;
        }
    }
    let head_end = c.i;
    let query = c.rest();
    let first = query.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
    if !matches!(first.as_str(), "select" | "with" | "from") || query.is_empty() {
        return Err(err());
    }
    Ok((insert[..head_end].trim(), query))
}

/// The end of the window a run at `now_us` may process: the last EVERY
/// boundary at or before `now - grace`.
pub fn window_end(now_us: i64, every_us: i64, grace_us: i64) -> i64 {
    let t = now_us - grace_us - ORIGIN_US;
    t.div_euclid(every_us) * every_us + ORIGIN_US
}

/// Table references in DuckDB's parse tree, mutably: every `BASE_TABLE` not
/// naming a CTE.
fn base_tables<'v>(v: &'v mut Value, ctes: &[String], out: &mut Vec<&'v mut Value>) {
    let is_table = v.get("type").and_then(Value::as_str) == Some("BASE_TABLE") && v.get("alias").is_some() && v.get("class").is_none();
    if is_table {
        let unqualified = v.get("schema_name").and_then(Value::as_str).unwrap_or("").is_empty()
            && v.get("catalog_name").and_then(Value::as_str).unwrap_or("").is_empty();
        let name = v.get("table_name").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        if !(unqualified && ctes.contains(&name)) {
            out.push(v);
        }
        return;
    }
    match v {
        Value::Array(items) => {
            for i in items {
                base_tables(i, ctes, out);
            }
        }
        Value::Object(map) => {
            for (_, child) in map.iter_mut() {
                base_tables(child, ctes, out);
            }
        }
        _ => {}
    }
}

fn cte_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| cte_names(i, out)),
        Value::Object(map) => {
            if let Some(list) = map.get("cte_map").and_then(|m| m.get("map")).and_then(Value::as_array) {
                for c in list {
                    if let Some(k) = c.get("key").and_then(Value::as_str) {
                        out.push(k.to_ascii_lowercase());
                    }
                }
            }
            map.values().for_each(|c| cte_names(c, out));
        }
        _ => {}
    }
}

/// `time_bucket` calls: the width literal of each (`None` where it is not a literal
/// or the call passes an origin or offset).
fn bucket_widths(v: &Value, out: &mut Vec<Option<String>>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| bucket_widths(i, out)),
        Value::Object(map) => {
            if map.get("class").and_then(Value::as_str) == Some("FUNCTION")
                && map.get("function_name").and_then(Value::as_str).is_some_and(|f| f.eq_ignore_ascii_case("time_bucket"))
            {
                let children = map.get("children").and_then(Value::as_array);
                let width = children.filter(|c| c.len() == 2).and_then(|c| {
                    let first = &c[0];
                    let constant = if first.get("class").and_then(Value::as_str) == Some("CAST") { first.get("child")? } else { first };
                    constant.get("value")?.get("value")?.as_str().map(str::to_string)
                });
                out.push(width);
            }
            map.values().for_each(|c| bucket_widths(c, out));
        }
        _ => {}
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn serialize(conn: &duckdb::Connection, sql: &str) -> Result<Value> {
    let text: String = conn.prepare_cached("SELECT json_serialize_sql($1::VARCHAR)")?.query_row([sql], |r| r.get(0))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("cannot read the query's parse tree: {e}")))?;
    if v.get("error").and_then(Value::as_bool) != Some(false) {
        let msg = v.get("error_message").and_then(Value::as_str).unwrap_or("not a SELECT");
        return Err(Error::Invalid(format!("the query of a continuous query must be a SELECT: {msg}")));
    }
    Ok(v)
}

/// The query's facts checked at CREATE: the bucket width (µs) and the source table as written.
pub fn inspect(conn: &duckdb::Connection, query: &str) -> Result<(i64, String)> {
    let mut tree = serialize(conn, query)?;
    let mut widths = Vec::new();
    bucket_widths(&tree, &mut widths);
    let width = match widths.as_slice() {
        [Some(w)] => interval_us(conn, w, "time_bucket's width", false)?,
        [] => {
            return Err(Error::Invalid("a continuous query groups rows by time_bucket(INTERVAL '…', time): none found in the query".into()))
        }
        _ => {
            return Err(Error::Invalid(
                "a continuous query has exactly one time_bucket(INTERVAL '…', time) with a literal width and no origin or offset".into(),
            ))
        }
    };
    let mut ctes = Vec::new();
    cte_names(&tree, &mut ctes);
    let mut tables = Vec::new();
    base_tables(&mut tree, &ctes, &mut tables);
    let [source] = tables.as_slice() else {
        return Err(Error::Invalid(format!(
            "a continuous query reads exactly one table or measurement (found {}); joins with other tables are not supported",
            tables.len()
        )));
    };
    Ok((width, table_name(source)))
}

fn table_name(t: &Value) -> String {
    ["catalog_name", "schema_name", "table_name"]
        .iter()
        .filter_map(|k| t.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// The query limited to `[start, end)` of the source's time column.
pub fn windowed(conn: &duckdb::Connection, query: &str, start: Option<i64>, end: i64) -> Result<String> {
    let mut tree = serialize(conn, query)?;
    let mut ctes = Vec::new();
    cte_names(&tree, &mut ctes);
    let mut tables = Vec::new();
    base_tables(&mut tree, &ctes, &mut tables);
    let [source] = tables.as_mut_slice() else {
        return Err(Error::Invalid("the continuous query no longer reads exactly one table".into()));
    };
    let time = quote_ident(TIME_COLUMN);
    let lower = start.map(|s| format!("{time} >= make_timestamp({s}::BIGINT) AND ")).unwrap_or_default();
    let filtered = format!("SELECT * FROM {} WHERE {lower}{time} < make_timestamp({end}::BIGINT)", table_name(source));
    let sub = serialize(conn, &filtered)?;
    let sub_statement = sub.get("statements").and_then(|s| s.get(0)).cloned().ok_or_else(|| Error::Invalid("empty parse tree".into()))?;
    let alias = match source.get("alias").and_then(Value::as_str) {
        Some(a) if !a.is_empty() => a.to_string(),
        _ => source.get("table_name").and_then(Value::as_str).unwrap_or("source").to_string(),
    };
    let location = source.get("query_location").cloned().unwrap_or(Value::Null);
    **source = serde_json::json!({
        "type": "SUBQUERY",
        "alias": alias,
        "sample": null,
        "query_location": location,
        "subquery": sub_statement,
        "column_name_alias": [],
    });
    let text: String = conn.prepare_cached("SELECT json_deserialize_sql($1::JSON)")?.query_row([tree.to_string()], |r| r.get(0))?;
    Ok(text)
}

/// An interval's length in microseconds; months and years are refused (not a
/// fixed length), and so is a negative one (zero only if `zero_ok`).
pub fn interval_us(conn: &duckdb::Connection, text: &str, what: &str, zero_ok: bool) -> Result<i64> {
    let r: std::result::Result<(i64, i64), duckdb::Error> = conn
        .prepare_cached(
            "SELECT date_part('month', i) + 12 * date_part('year', i), \
             epoch_us(TIMESTAMP '2000-01-03' + i) - epoch_us(TIMESTAMP '2000-01-03') FROM (SELECT CAST($1 AS INTERVAL) AS i)",
        )
        .and_then(|mut s| s.query_row([text], |r| Ok((r.get(0)?, r.get(1)?))));
    let (months, us) = r.map_err(|e| Error::Invalid(format!("{what} '{text}' is not an interval: {e}")))?;
    if months != 0 {
        return Err(Error::Invalid(format!(
            "{what} '{text}' has months or years, whose length varies: use days, hours, minutes or seconds"
        )));
    }
    if us < 0 || (us == 0 && !zero_ok) {
        return Err(Error::Invalid(format!("{what} '{text}' must be positive")));
    }
    Ok(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_parse() {
        let c =
            parse("CREATE CONTINUOUS QUERY cpu_1m EVERY INTERVAL '1 minute' AS INSERT INTO cpu_1m SELECT 1;").expect("job").expect("ok");
        assert_eq!(
            c,
            Statement::Create(CreateStatement {
                name: "cpu_1m".into(),
                if_not_exists: false,
                every: "1 minute".into(),
                grace: None,
                insert: "INSERT INTO cpu_1m SELECT 1".into()
            })
        );
        let c = parse("create continuous query if not exists \"A b\" every interval 5 minutes grace interval '30 seconds' as insert into x (a, \"b)\") select 1")
            .expect("job")
            .expect("ok");
        match c {
            Statement::Create(c) => {
                assert_eq!(c.name, "A b");
                assert!(c.if_not_exists);
                assert_eq!(c.every, "5 minutes");
                assert_eq!(c.grace.as_deref(), Some("30 seconds"));
                assert_eq!(split_insert(&c.insert).expect("split"), ("insert into x (a, \"b)\")", "select 1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse("DROP CONTINUOUS QUERY IF EXISTS q").expect("job").expect("ok"),
            Statement::Drop { name: "q".into(), if_exists: true }
        );
        assert_eq!(parse("show continuous queries;").expect("job").expect("ok"), Statement::Show);
        assert!(parse("SELECT 1").is_none());
    }

    #[test]
    fn bad_statements_say_what_is_missing() {
        let e = parse("CREATE CONTINUOUS QUERY q AS INSERT INTO t SELECT 1").expect("job").expect_err("no EVERY");
        assert!(e.to_string().contains("EVERY"), "{e}");
        let e = parse("CREATE CONTINUOUS QUERY q EVERY INTERVAL '1 minute' AS DELETE FROM t").expect("job").expect_err("not insert");
        assert!(e.to_string().contains("INSERT INTO"), "{e}");
        assert!(parse("DROP CONTINUOUS QUERY q extra").expect("job").is_err());
    }

    #[test]
    fn windows_end_on_boundaries_before_the_grace() {
        let minute = 60_000_000;
        let t = ORIGIN_US + 10 * minute + 5_000_000; // 10 min 5 s past a boundary
        assert_eq!(window_end(t, minute, 0), ORIGIN_US + 10 * minute);
        assert_eq!(window_end(t, minute, 10_000_000), ORIGIN_US + 9 * minute);
        // Before the origin too.
        assert_eq!(window_end(ORIGIN_US - 1, minute, 0), ORIGIN_US - minute);
    }
}
