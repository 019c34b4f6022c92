//! The JSON write format (`POST /api/v1/write/json`), turned into line
//! protocol so it takes exactly the path (log, replay, checks) of every other
//! write. The body is an array of points (or one point, or `{"batch": [...]}`):
//!
//! ```json
//! [{"measurement": "cpu", "tags": {"host": "a"}, "fields": {"value": 1.5, "n": 3, "ok": true, "msg": "hi"},
//!   "time": 1700000000000}]
//! ```
//! - `tags`: string values (numbers and booleans are written as text); optional.
//! - `fields`: at least one; numbers become DOUBLE (JSON does not tell `1`
//!   from `1.0`, and a column must keep one type), strings VARCHAR, booleans
//!   BOOLEAN; `null` fields are skipped. Send line protocol for integer columns.
//! - `time`: optional integer; its unit is guessed from its magnitude as Arc
//!   does (< 1e10 seconds, < 1e13 milliseconds, < 1e16 microseconds, else
//!   nanoseconds); absent = the time the request arrives.

use serde_json::Value;

use crate::{Error, Result};

/// Converts a JSON body to line protocol with nanosecond timestamps.
pub fn to_line_protocol(body: &[u8]) -> Result<Vec<u8>> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| Error::InvalidRequest(format!("body is not valid JSON: {e}")))?;
    let points = match doc {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("batch") {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(Error::InvalidRequest("'batch' must be an array of points".into())),
            None => vec![Value::Object(o)],
        },
        _ => return Err(Error::InvalidRequest("body must be a JSON array of points".into())),
    };
    let mut out = String::new();
    for (i, p) in points.iter().enumerate() {
        point(p, &mut out).map_err(|e| Error::InvalidRequest(format!("point {}: {e}", i + 1)))?;
        out.push('\n');
    }
    Ok(out.into_bytes())
}

fn escape(s: &str, extra: &[char], out: &mut String) -> std::result::Result<(), String> {
    for c in s.chars() {
        if c == '\n' || c == '\r' {
            return Err(format!("newline in '{s}'"));
        }
        if c == '\\' || c == ',' || c == ' ' || extra.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(())
}

fn point(p: &Value, out: &mut String) -> std::result::Result<(), String> {
    let o = p.as_object().ok_or("a point must be an object")?;
    let m = o.get("measurement").or_else(|| o.get("m")).and_then(Value::as_str).ok_or("missing 'measurement' (a string)")?;
    if m.is_empty() {
        return Err("empty measurement".into());
    }
    escape(m, &[], out)?;
    if let Some(tags) = o.get("tags") {
        let tags = tags.as_object().ok_or("'tags' must be an object")?;
        for (k, v) in tags {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => continue,
                _ => return Err(format!("tag '{k}' must be a string")),
            };
            out.push(',');
            escape(k, &['='], out)?;
            out.push('=');
            escape(&text, &['='], out)?;
        }
    }
    let fields = o.get("fields").and_then(Value::as_object).ok_or("missing 'fields' (an object)")?;
    let mut first = true;
    for (k, v) in fields {
        if v.is_null() {
            continue;
        }
        out.push(if first { ' ' } else { ',' });
        first = false;
        escape(k, &['='], out)?;
        out.push('=');
        match v {
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => {
                let f = n.as_f64().ok_or("bad number")?;
                out.push_str(&format!("{f:?}"));
            }
            Value::String(s) => {
                out.push('"');
                for c in s.chars() {
                    if c == '\n' || c == '\r' {
                        return Err(format!("newline in string field '{k}'"));
                    }
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            _ => return Err(format!("field '{k}' must be a number, string or boolean")),
        }
    }
    if first {
        return Err("no fields".into());
    }
    match o.get("time").or_else(|| o.get("t")) {
        None | Some(Value::Null) => {}
        Some(t) => {
            let t = t.as_i64().ok_or("'time' must be an integer")?;
            let a = t.unsigned_abs();
            let factor: i64 = if a < 10_000_000_000 {
                1_000_000_000
            } else if a < 10_000_000_000_000 {
                1_000_000
            } else if a < 10_000_000_000_000_000 {
                1_000
            } else {
                1
            };
            let ns = t.checked_mul(factor).ok_or("'time' is out of range")?;
            out.push_str(&format!(" {ns}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use pond_lineproto::{parse_line, FieldValue};

    #[test]
    fn points_become_line_protocol_that_parses_back() {
        let body = br#"[{"measurement": "c p,u", "tags": {"ho=st": "a b", "n": 1}, "fields": {"v": 1.5, "i": -3, "u": 18446744073709551615, "s": "say \"hi\" \\", "b": true, "z": null}, "time": 1700000000},
                        {"measurement": "m", "fields": {"v": 1}}]"#;
        let lp = to_line_protocol(body).unwrap();
        let text = String::from_utf8(lp).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let l = parse_line(lines[0].as_bytes()).unwrap();
        assert_eq!(l.measurement, "c p,u");
        assert_eq!(l.tags[0].0, "ho=st");
        assert_eq!(l.tags[0].1, "a b");
        assert_eq!(l.tags[1].1, "1");
        assert_eq!(l.fields.len(), 5);
        assert!(l.fields.contains(&("s".into(), FieldValue::String(r#"say "hi" \"#.into()))));
        assert!(l.fields.contains(&("u".into(), FieldValue::Float(u64::MAX as f64))));
        assert!(l.fields.contains(&("i".into(), FieldValue::Float(-3.0))));
        assert_eq!(l.timestamp, Some(1_700_000_000_000_000_000));
        assert_eq!(parse_line(lines[1].as_bytes()).unwrap().timestamp, None);
    }

    #[test]
    fn timestamp_units_and_errors() {
        let ts = |t: i64| {
            let lp = to_line_protocol(format!(r#"{{"batch": [{{"measurement": "m", "fields": {{"v": 1}}, "time": {t}}}]}}"#).as_bytes())
                .unwrap();
            parse_line(String::from_utf8(lp).unwrap().trim_end().as_bytes()).unwrap().timestamp.unwrap()
        };
        assert_eq!(ts(1_700_000_000_123), 1_700_000_000_123_000_000);
        assert_eq!(ts(1_700_000_000_123_456), 1_700_000_000_123_456_000);
        assert_eq!(ts(1_700_000_000_123_456_789), 1_700_000_000_123_456_789);
        for bad in [r#"[{"fields": {"v": 1}}]"#, r#"[{"measurement": "m"}]"#, r#"[{"measurement": "m", "fields": {"v": [1]}}]"#, "nope"] {
            assert!(matches!(to_line_protocol(bad.as_bytes()), Err(Error::InvalidRequest(_))), "{bad}");
        }
    }
}
