//! The one type map, used by the copy and by every applied change: a
//! PostgreSQL column type (OID + typmod, resolved through the source catalog
//! for enums, domains and arrays) becomes a DuckDB type, and a value in
//! PostgreSQL's text form (what pgoutput and the audit triggers deliver)
//! becomes text DuckDB's own casts read exactly.

use crate::error::{Error, Result};

/// A PostgreSQL type as `pg_type` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgType {
    pub oid: u32,
    pub name: String,
    /// `typtype`: b base, d domain, e enum, c composite, r range, p pseudo, m multirange.
    pub kind: char,
    /// `typcategory`: 'A' for arrays.
    pub category: char,
    /// Domain: the base type (`typbasetype`), with its typmod (`typtypmod`).
    pub base: u32,
    pub base_typmod: i32,
    /// Array: the element type (`typelem`).
    pub elem: u32,
}

/// How a text value becomes a DuckDB value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    /// DuckDB's cast reads PostgreSQL's text as is.
    Plain,
    /// `char(n)`: trailing blanks are padding.
    Unpadded,
    /// `\x0a0b` (hex) → DuckDB's `\x0A\x0B` blob text.
    Bytea,
    /// `1 year 2 mons -3 days +04:05:06` → `… microseconds` DuckDB reads.
    Interval,
    /// `{…}` array literal → JSON text, read with `CAST(CAST(v AS JSON) AS T[])`.
    Array(Box<Text>, Json),
}

/// How an array element is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Json {
    Number,
    Bool,
    String,
}

/// A column's mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The DuckDB type.
    pub duck: String,
    pub text: Text,
    /// The copy reads this column through postgres_scanner's own binary
    /// decoding; when false, the copy asks PostgreSQL for text
    /// ([`Mapped::pg_text_expr`]) and converts it like a change.
    pub native: bool,
    /// A short note for SHOW LINKS (e.g. why a value is kept as text).
    pub note: Option<String>,
}

impl Mapped {
    fn plain(duck: &str) -> Mapped {
        Mapped { duck: duck.into(), text: Text::Plain, native: true, note: None }
    }

    fn as_text(note: String) -> Mapped {
        Mapped { duck: "VARCHAR".into(), text: Text::Plain, native: false, note: Some(note) }
    }

    /// The PostgreSQL expression the copy selects for a non-native column.
    pub fn pg_text_expr(&self, quoted_column: &str) -> String {
        match self.text {
            Text::Array(..) => format!("array_to_json({quoted_column})::text"),
            _ => format!("{quoted_column}::text"),
        }
    }

    /// The DuckDB expression turning a text value (already normalised by
    /// [`to_duck_text`]) into this column's type.
    pub fn duck_from_text(&self, expr: &str) -> String {
        match self.text {
            Text::Array(..) => format!("CAST(CAST({expr} AS JSON) AS {})", self.duck),
            _ if self.duck == "VARCHAR" => expr.to_string(),
            _ => format!("CAST({expr} AS {})", self.duck),
        }
    }
}

/// Maps `oid`/`typmod`. `resolve` looks up types that are not built in.
pub fn map(oid: u32, typmod: i32, resolve: &mut dyn FnMut(u32) -> Result<PgType>) -> Result<Mapped> {
    map_depth(oid, typmod, resolve, 0)
}

fn map_depth(oid: u32, typmod: i32, resolve: &mut dyn FnMut(u32) -> Result<PgType>, depth: usize) -> Result<Mapped> {
    if depth > 8 {
        return Err(Error::Unsupported(format!("type {oid} nests domains or arrays too deeply")));
    }
    let m = match oid {
        16 => Mapped::plain("BOOLEAN"),
        17 => Mapped { duck: "BLOB".into(), text: Text::Bytea, native: true, note: None },
        // char(n) without its padding, as `::text` gives it in PostgreSQL (and the copy's scanner).
        1042 => Mapped { text: Text::Unpadded, ..Mapped::plain("VARCHAR") },
        18 | 19 | 25 | 1043 => Mapped::plain("VARCHAR"),
        20 => Mapped::plain("BIGINT"),
        21 => Mapped::plain("SMALLINT"),
        23 => Mapped::plain("INTEGER"),
        26 => Mapped::plain("UBIGINT"),
        114 | 3802 => Mapped { duck: "JSON".into(), text: Text::Plain, native: false, note: None },
        700 => Mapped::plain("FLOAT"),
        701 => Mapped::plain("DOUBLE"),
        1082 => Mapped::plain("DATE"),
        1083 => Mapped::plain("TIME"),
        1114 => Mapped::plain("TIMESTAMP"),
        1184 => Mapped::plain("TIMESTAMPTZ"),
        1186 => Mapped { duck: "INTERVAL".into(), text: Text::Interval, native: true, note: None },
        2950 => Mapped::plain("UUID"),
        1700 => numeric(typmod),
        _ => {
            let t = resolve(oid)?;
            match t.kind {
                'd' => return map_depth(t.base, t.base_typmod, resolve, depth + 1),
                'e' => Mapped { duck: "VARCHAR".into(), text: Text::Plain, native: false, note: None },
                _ if t.category == 'A' && t.elem != 0 => {
                    let e = map_depth(t.elem, typmod, resolve, depth + 1)?;
                    let json = match e.duck.as_str() {
                        "SMALLINT" | "INTEGER" | "BIGINT" | "UBIGINT" | "FLOAT" | "DOUBLE" => Json::Number,
                        d if d.starts_with("DECIMAL") => Json::Number,
                        "BOOLEAN" => Json::Bool,
                        _ => Json::String,
                    };
                    if matches!(e.text, Text::Array(..)) || e.duck == "BLOB" || e.duck == "INTERVAL" {
                        // Multidimensional arrays arrive as nested literals of one type.
                        let inner = if let Text::Array(inner, _) = e.text { *inner } else { e.text.clone() };
                        if e.duck == "BLOB" || e.duck == "INTERVAL" {
                            return Ok(Mapped::as_text(format!("{} is kept as PostgreSQL's text", t.name)));
                        }
                        Mapped { duck: format!("{}[]", e.duck), text: Text::Array(Box::new(inner), json), native: e.native, note: e.note }
                    } else {
                        Mapped { duck: format!("{}[]", e.duck), text: Text::Array(Box::new(e.text), json), native: e.native, note: e.note }
                    }
                }
                _ => Mapped::as_text(format!("{} is kept as PostgreSQL's text", t.name)),
            }
        }
    };
    Ok(m)
}

fn numeric(typmod: i32) -> Mapped {
    if typmod < 4 {
        return Mapped::as_text("numeric without precision is kept as its exact text".into());
    }
    let precision = ((typmod - 4) >> 16) & 0xffff;
    let scale = (typmod - 4) & 0x7ff;
    if (1..=38).contains(&precision) && scale <= precision {
        Mapped::plain(&format!("DECIMAL({precision},{scale})"))
    } else {
        Mapped::as_text(format!("numeric({precision},{scale}) is wider than DuckDB's DECIMAL(38): kept as its exact text"))
    }
}

/// PostgreSQL's text of a value → the text DuckDB's cast for the column reads.
pub fn to_duck_text(text: &Text, value: &str) -> Result<String> {
    match text {
        Text::Plain => Ok(value.to_string()),
        Text::Unpadded => Ok(value.trim_end_matches(' ').to_string()),
        Text::Bytea => bytea(value),
        Text::Interval => interval(value),
        // Trigger mode delivers arrays as JSON already (row_to_json).
        Text::Array(..) if value.starts_with('[') && !value.contains("={") => Ok(value.to_string()),
        Text::Array(elem, json) => {
            let mut out = String::with_capacity(value.len() + 8);
            array_to_json(value, elem, *json, &mut out)?;
            Ok(out)
        }
    }
}

fn bytea(value: &str) -> Result<String> {
    let hex = value.strip_prefix("\\x").ok_or_else(|| Error::Unsupported("bytea value is not in hex form (bytea_output=hex)".into()))?;
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Unsupported("bytea value has an odd or non-hex digit".into()));
    }
    let mut out = String::with_capacity(hex.len() * 2);
    for pair in hex.as_bytes().chunks(2) {
        out.push_str("\\x");
        out.push(pair[0].to_ascii_uppercase() as char);
        out.push(pair[1].to_ascii_uppercase() as char);
    }
    Ok(out)
}

/// `IntervalStyle=postgres`: `[N year[s]] [N mon[s]] [N day[s]] [[+-]HH:MM:SS[.f]]`.
fn interval(value: &str) -> Result<String> {
    let bad = || Error::Unsupported(format!("cannot read the interval '{value}'"));
    let (mut years, mut months, mut days, mut micros) = (0i64, 0i64, 0i64, 0i64);
    let mut words = value.split_whitespace().peekable();
    while let Some(w) = words.next() {
        if w.contains(':') {
            let (neg, hms) = match w.as_bytes()[0] {
                b'-' => (true, &w[1..]),
                b'+' => (false, &w[1..]),
                _ => (false, w),
            };
            let mut parts = hms.split(':');
            let h: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
            let m: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
            let sec = parts.next().unwrap_or("0");
            let (s, frac) = sec.split_once('.').unwrap_or((sec, ""));
            let s: i64 = s.parse().map_err(|_| bad())?;
            let frac_us: i64 = if frac.is_empty() {
                0
            } else {
                let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
                digits.parse().map_err(|_| bad())?
            };
            let t = ((h * 60 + m) * 60 + s) * 1_000_000 + frac_us;
            micros += if neg { -t } else { t };
            continue;
        }
        let n: i64 = w.parse().map_err(|_| bad())?;
        let unit = words.next().ok_or_else(bad)?;
        match unit.trim_end_matches('s') {
            "year" => years += n,
            "mon" => months += n,
            "day" => days += n,
            _ => return Err(bad()),
        }
    }
    Ok(format!("{years} years {months} months {days} days {micros} microseconds"))
}

/// A PostgreSQL array literal (`{1,NULL,"a b"}`, nested, optionally with a
/// `[l:u]=` dimension prefix) as JSON.
fn array_to_json(value: &str, elem: &Text, json: Json, out: &mut String) -> Result<()> {
    let bad = |why: &str| Error::Unsupported(format!("cannot read the array literal ({why})"));
    let body = match value.find("={") {
        Some(i) if value.starts_with('[') => &value[i + 1..],
        _ => value,
    };
    let b = body.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    let mut expect_value = true;
    while i < b.len() {
        match b[i] {
            b'{' => {
                out.push('[');
                depth += 1;
                expect_value = true;
                i += 1;
            }
            b'}' => {
                out.push(']');
                depth = depth.checked_sub(1).ok_or_else(|| bad("unbalanced braces"))?;
                expect_value = false;
                i += 1;
            }
            b',' => {
                out.push(',');
                expect_value = true;
                i += 1;
            }
            b'"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(bad("unterminated quote")),
                        Some(b'\\') => {
                            let c = body[i + 1..].chars().next().ok_or_else(|| bad("dangling escape"))?;
                            s.push(c);
                            i += 1 + c.len_utf8();
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => {
                            let c = body[i..].chars().next().expect("in bounds");
                            s.push(c);
                            i += c.len_utf8();
                        }
                    }
                }
                element(&s, false, elem, json, out)?;
                expect_value = false;
            }
            b' ' => i += 1,
            _ => {
                if !expect_value {
                    return Err(bad("unexpected text"));
                }
                let start = i;
                while i < b.len() && !matches!(b[i], b',' | b'}') {
                    i += 1;
                }
                let raw = body[start..i].trim();
                element(raw, raw.eq_ignore_ascii_case("null"), elem, json, out)?;
                expect_value = false;
            }
        }
    }
    if depth != 0 {
        return Err(bad("unbalanced braces"));
    }
    Ok(())
}

fn element(raw: &str, null: bool, elem: &Text, json: Json, out: &mut String) -> Result<()> {
    if null {
        out.push_str("null");
        return Ok(());
    }
    match json {
        Json::Number if raw.parse::<f64>().is_ok_and(f64::is_finite) => out.push_str(raw),
        Json::Bool => out.push_str(if raw == "t" || raw == "true" { "true" } else { "false" }),
        _ => {
            let v = to_duck_text(elem, raw)?;
            out.push_str(&serde_json::Value::String(v).to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_lookup(oid: u32) -> Result<PgType> {
        Err(Error::Internal(format!("unexpected lookup of {oid}")))
    }

    #[test]
    fn numeric_keeps_precision_or_text() {
        let m = map(1700, ((12 << 16) | 3) + 4, &mut no_lookup).unwrap();
        assert_eq!(m.duck, "DECIMAL(12,3)");
        let m = map(1700, -1, &mut no_lookup).unwrap();
        assert_eq!(m.duck, "VARCHAR");
        assert!(!m.native);
        let m = map(1700, ((50 << 16) | 2) + 4, &mut no_lookup).unwrap();
        assert_eq!(m.duck, "VARCHAR");
    }

    #[test]
    fn domains_enums_and_arrays_resolve() {
        let mut lookup = |oid: u32| -> Result<PgType> {
            Ok(match oid {
                9000 => PgType { oid, name: "posint".into(), kind: 'd', category: 'N', base: 23, base_typmod: -1, elem: 0 },
                9001 => PgType { oid, name: "mood".into(), kind: 'e', category: 'E', base: 0, base_typmod: -1, elem: 0 },
                1007 => PgType { oid, name: "_int4".into(), kind: 'b', category: 'A', base: 0, base_typmod: -1, elem: 23 },
                1009 => PgType { oid, name: "_text".into(), kind: 'b', category: 'A', base: 0, base_typmod: -1, elem: 25 },
                _ => return no_lookup(oid),
            })
        };
        assert_eq!(map(9000, -1, &mut lookup).unwrap().duck, "INTEGER");
        assert_eq!(map(9001, -1, &mut lookup).unwrap().duck, "VARCHAR");
        let a = map(1007, -1, &mut lookup).unwrap();
        assert_eq!(a.duck, "INTEGER[]");
        assert_eq!(to_duck_text(&a.text, "{1,NULL,-3}").unwrap(), "[1,null,-3]");
        assert_eq!(to_duck_text(&a.text, "{{1,2},{3,4}}").unwrap(), "[[1,2],[3,4]]");
        let t = map(1009, -1, &mut lookup).unwrap();
        assert_eq!(to_duck_text(&t.text, r#"{a,"b c","q\"x",NULL,"NULL",{}}"#).unwrap(), r#"["a","b c","q\"x",null,"NULL",[]]"#);
        assert_eq!(to_duck_text(&t.text, "{}").unwrap(), "[]");
        assert_eq!(to_duck_text(&a.text, "[0:1]={5,6}").unwrap(), "[5,6]");
    }

    #[test]
    fn intervals_and_bytea() {
        assert_eq!(interval("1 year 2 mons 3 days 04:05:06.5").unwrap(), "1 years 2 months 3 days 14706500000 microseconds");
        assert_eq!(interval("-1 days +02:00:00").unwrap(), "0 years 0 months -1 days 7200000000 microseconds");
        assert_eq!(interval("-00:00:01.000001").unwrap(), "0 years 0 months 0 days -1000001 microseconds");
        assert_eq!(interval("00:00:00").unwrap(), "0 years 0 months 0 days 0 microseconds");
        assert!(interval("1 fortnight").is_err());
        assert_eq!(bytea("\\x00ff").unwrap(), "\\x00\\xFF");
        assert_eq!(bytea("\\x").unwrap(), "");
    }
}
