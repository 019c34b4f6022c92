//! Conditions on partition keys: taken from a statement's `WHERE` clause (in
//! DuckDB's JSON parse tree, `json_serialize_sql`), rendered as a Hive
//! Metastore filter string, and evaluated locally on partition values.
//!
//! Only what is certainly implied by the statement is kept: conjuncts that are
//! not understood are dropped (an `AND` keeps the rest), an `OR` with any branch
//! not understood is dropped whole. So a kept [`Pred`] is always weaker than the
//! query's own condition, and pruning with it never loses a row. Every kept
//! comparison is null-rejecting (a NULL partition value never matches), which is
//! also what makes pruning an outer join's inner side safe.

use serde_json::Value;

use crate::types::KeyKind;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn flip(self) -> Op {
        match self {
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
            o => o,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// A condition on partition keys. `key` indexes the table's partition keys;
/// values are normalized for the key's kind (integers in decimal, dates as
/// `YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    Cmp { key: usize, op: Op, value: String },
    In { key: usize, values: Vec<String> },
    And(Vec<Pred>),
    Or(Vec<Pred>),
}

/// A catalog service's partition filter language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Hive Metastore `get_partitions_by_filter`: string and integer keys.
    Hive,
    /// AWS Glue `GetPartitions` `Expression`: string, integer and date keys.
    Glue,
}

/// A partition key as the extraction sees it.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub kind: KeyKind,
}

/// Hive's name for a NULL partition value.
pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// A partition value as a comparison sees it: Hive's NULL partition is NULL.
pub fn value_or_null(v: &str) -> Option<&str> {
    (v != DEFAULT_PARTITION).then_some(v)
}

/// The condition on `keys` implied by `expr` (a `where_clause` node), for a
/// table referred to by any of `qualifiers` (its alias, or its name).
pub fn extract(expr: &Value, qualifiers: &[String], keys: &[Key]) -> Option<Pred> {
    let class = expr.get("class").and_then(Value::as_str).unwrap_or("");
    let kind = expr.get("type").and_then(Value::as_str).unwrap_or("");
    match (class, kind) {
        ("CONJUNCTION", "CONJUNCTION_AND") => {
            let parts: Vec<Pred> = children(expr).iter().filter_map(|c| extract(c, qualifiers, keys)).collect();
            match parts.len() {
                0 => None,
                1 => parts.into_iter().next(),
                _ => Some(Pred::And(parts)),
            }
        }
        ("CONJUNCTION", "CONJUNCTION_OR") => {
            let parts: Option<Vec<Pred>> = children(expr).iter().map(|c| extract(c, qualifiers, keys)).collect();
            parts.filter(|p| !p.is_empty()).map(Pred::Or)
        }
        ("COMPARISON", _) => {
            let op = match kind {
                "COMPARE_EQUAL" => Op::Eq,
                "COMPARE_NOTEQUAL" => Op::Ne,
                "COMPARE_LESSTHAN" => Op::Lt,
                "COMPARE_LESSTHANOREQUALTO" => Op::Le,
                "COMPARE_GREATERTHAN" => Op::Gt,
                "COMPARE_GREATERTHANOREQUALTO" => Op::Ge,
                _ => return None,
            };
            let (left, right) = (expr.get("left")?, expr.get("right")?);
            if let Some(key) = key_of(left, qualifiers, keys) {
                let value = constant(right, keys[key].kind)?;
                Some(Pred::Cmp { key, op, value })
            } else {
                let key = key_of(right, qualifiers, keys)?;
                let value = constant(left, keys[key].kind)?;
                Some(Pred::Cmp { key, op: op.flip(), value })
            }
        }
        ("OPERATOR", "COMPARE_IN") => {
            let items = children(expr);
            let (first, rest) = items.split_first()?;
            let key = key_of(first, qualifiers, keys)?;
            let values: Option<Vec<String>> = rest.iter().map(|v| constant(v, keys[key].kind)).collect();
            Some(Pred::In { key, values: values? })
        }
        ("BETWEEN", "COMPARE_BETWEEN") => {
            let key = key_of(expr.get("input")?, qualifiers, keys)?;
            let lower = constant(expr.get("lower")?, keys[key].kind)?;
            let upper = constant(expr.get("upper")?, keys[key].kind)?;
            Some(Pred::And(vec![Pred::Cmp { key, op: Op::Ge, value: lower }, Pred::Cmp { key, op: Op::Le, value: upper }]))
        }
        _ => None,
    }
}

fn children(expr: &Value) -> &[Value] {
    expr.get("children").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// The partition key a column reference names, if it is one of this table's.
fn key_of(expr: &Value, qualifiers: &[String], keys: &[Key]) -> Option<usize> {
    if expr.get("class").and_then(Value::as_str) != Some("COLUMN_REF") {
        return None;
    }
    let names: Vec<&str> = expr.get("column_names")?.as_array()?.iter().filter_map(Value::as_str).collect();
    let column = match names.as_slice() {
        [c] => *c,
        [.., q, c] if qualifiers.iter().any(|x| x.eq_ignore_ascii_case(q)) => *c,
        _ => return None,
    };
    keys.iter().position(|k| k.name.eq_ignore_ascii_case(column))
}

/// A constant (possibly under a CAST) as a partition value of `kind`.
fn constant(expr: &Value, kind: KeyKind) -> Option<String> {
    let expr = match expr.get("class").and_then(Value::as_str) {
        Some("CAST") => {
            let target = expr.get("cast_type")?.get("id")?.as_str()?;
            let fits = match kind {
                KeyKind::Date => target == "DATE",
                KeyKind::Integer => matches!(target, "TINYINT" | "SMALLINT" | "INTEGER" | "BIGINT"),
                KeyKind::String => target == "VARCHAR",
                KeyKind::Other => false,
            };
            if !fits {
                return None;
            }
            expr.get("child")?
        }
        Some("CONSTANT") => expr,
        _ => return None,
    };
    if expr.get("class").and_then(Value::as_str) != Some("CONSTANT") {
        return None;
    }
    let value = expr.get("value")?;
    if value.get("is_null").and_then(Value::as_bool) != Some(false) {
        return None;
    }
    let v = value.get("value")?;
    match kind {
        KeyKind::String => v.as_str().map(str::to_string),
        KeyKind::Integer => match v {
            Value::Number(n) => n.as_i64().map(|i| i.to_string()),
            Value::String(s) => s.trim().parse::<i64>().ok().map(|i| i.to_string()),
            _ => None,
        },
        KeyKind::Date => v.as_str().and_then(normalize_date),
        KeyKind::Other => None,
    }
}

/// `YYYY-MM-DD` (a valid calendar date) or None.
pub fn normalize_date(s: &str) -> Option<String> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i32 = s[0..4].parse().ok()?;
    let m: u32 = s[5..7].parse().ok()?;
    let d: u32 = s[8..10].parse().ok()?;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days).contains(&d).then(|| s.to_string())
}

impl Pred {
    /// The partition keys this condition uses.
    pub fn keys(&self, out: &mut Vec<usize>) {
        match self {
            Pred::Cmp { key, .. } | Pred::In { key, .. } => {
                if !out.contains(key) {
                    out.push(*key)
                }
            }
            Pred::And(v) | Pred::Or(v) => v.iter().for_each(|p| p.keys(out)),
        }
    }

    /// Every combination of values the condition allows, when it pins every
    /// key to a few values by equality (`k1 = 'a' AND k2 IN ('x', 'y')`): the
    /// partitions can then be fetched by value. Only string keys (textual
    /// equality; an integer stored as `05` must still match `5`), and at most
    /// `limit` combinations.
    pub fn point_values(&self, keys: &[Key], limit: usize) -> Option<Vec<Vec<String>>> {
        if keys.is_empty() || keys.iter().any(|k| k.kind != KeyKind::String) {
            return None;
        }
        let conjuncts: Vec<&Pred> = match self {
            Pred::And(v) => v.iter().collect(),
            p => vec![p],
        };
        let mut combos: Vec<Vec<String>> = vec![Vec::new()];
        for i in 0..keys.len() {
            let values: Vec<String> = conjuncts.iter().find_map(|p| match p {
                Pred::Cmp { key, op: Op::Eq, value } if *key == i => Some(vec![value.clone()]),
                Pred::In { key, values } if *key == i => Some(values.clone()),
                _ => None,
            })?;
            if combos.len() * values.len() > limit {
                return None;
            }
            combos = combos.iter().flat_map(|c| values.iter().map(move |v| [c.clone(), vec![v.clone()]].concat())).collect();
        }
        Some(combos)
    }

    /// The values the leading string keys must equal exactly (`k1 = 'a' AND
    /// k2 = 'b' AND …`), for a names listing by prefix. Only string keys: their
    /// equality is textual, as the metastore's prefix match is; an integer
    /// stored as `05` must still match `5`, so other kinds end the prefix.
    pub fn string_prefix(&self, keys: &[Key]) -> Vec<String> {
        let conjuncts: Vec<&Pred> = match self {
            Pred::And(v) => v.iter().collect(),
            p => vec![p],
        };
        let mut prefix = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if k.kind != KeyKind::String {
                break;
            }
            let value = conjuncts.iter().find_map(|p| match p {
                Pred::Cmp { key, op: Op::Eq, value } if *key == i => Some(value.clone()),
                Pred::In { key, values } if *key == i && values.len() == 1 => Some(values[0].clone()),
                _ => None,
            });
            match value {
                Some(v) => prefix.push(v),
                None => break,
            }
        }
        prefix
    }

    /// Whether a partition with these values (in key order; `None` is NULL)
    /// may hold matching rows. A value that does not parse as its key's kind
    /// is kept: pruning must never drop a partition it cannot judge.
    pub fn matches(&self, values: &[Option<&str>], keys: &[Key]) -> bool {
        match self {
            Pred::And(v) => v.iter().all(|p| p.matches(values, keys)),
            Pred::Or(v) => v.iter().any(|p| p.matches(values, keys)),
            Pred::In { key, values: wanted } => {
                wanted.iter().any(|w| Pred::Cmp { key: *key, op: Op::Eq, value: w.clone() }.matches(values, keys))
            }
            Pred::Cmp { key, op, value } => {
                let Some(Some(actual)) = values.get(*key) else { return false };
                let ord = match keys[*key].kind {
                    KeyKind::String => actual.cmp(&value.as_str()),
                    KeyKind::Integer => match (actual.trim().parse::<i64>(), value.parse::<i64>()) {
                        (Ok(a), Ok(b)) => a.cmp(&b),
                        _ => return true,
                    },
                    KeyKind::Date => match normalize_date(actual) {
                        Some(a) => a.as_str().cmp(value.as_str()),
                        None => return true,
                    },
                    KeyKind::Other => return true,
                };
                use std::cmp::Ordering::*;
                match op {
                    Op::Eq => ord == Equal,
                    Op::Ne => ord != Equal,
                    Op::Lt => ord == Less,
                    Op::Le => ord != Greater,
                    Op::Gt => ord == Greater,
                    Op::Ge => ord != Less,
                }
            }
        }
    }

    /// Whether [`Pred::hms_filter`] renders all of this condition (nothing
    /// dropped), so the metastore's answer is already the selection.
    pub fn hms_filter_is_exact(&self, keys: &[Key]) -> bool {
        self.filter_is_exact(keys, Dialect::Hive)
    }

    /// The Hive Metastore filter string (`get_partitions_by_filter`) for this
    /// condition, or None when it uses something the metastore cannot be
    /// trusted to evaluate (keys that are neither strings nor integers, values
    /// with both quote characters).
    pub fn hms_filter(&self, keys: &[Key]) -> Option<String> {
        self.filter(keys, Dialect::Hive)
    }

    /// Whether [`Pred::filter`] renders all of this condition in `dialect`.
    pub fn filter_is_exact(&self, keys: &[Key], dialect: Dialect) -> bool {
        match self {
            Pred::And(v) | Pred::Or(v) => v.iter().all(|p| p.filter_is_exact(keys, dialect)),
            p => p.filter(keys, dialect).is_some(),
        }
    }

    /// The condition in a catalog service's filter language, or None when it
    /// uses something the service cannot be trusted to evaluate. An `AND`
    /// keeps the parts it can render (a weaker filter is still correct: what
    /// it returns is filtered again locally with the whole condition).
    pub fn filter(&self, keys: &[Key], dialect: Dialect) -> Option<String> {
        match self {
            Pred::And(v) => {
                let parts: Vec<String> = v.iter().filter_map(|p| p.filter(keys, dialect)).collect();
                (!parts.is_empty()).then(|| format!("({})", parts.join(" and ")))
            }
            Pred::Or(v) => {
                let parts: Option<Vec<String>> = v.iter().map(|p| p.filter(keys, dialect)).collect();
                Some(format!("({})", parts?.join(" or ")))
            }
            Pred::In { key, values } => {
                let parts: Option<Vec<String>> =
                    values.iter().map(|v| Pred::Cmp { key: *key, op: Op::Eq, value: v.clone() }.filter(keys, dialect)).collect();
                let parts = parts?;
                if parts.is_empty() {
                    return None;
                }
                Some(format!("({})", parts.join(" or ")))
            }
            Pred::Cmp { key, op, value } => {
                let k = &keys[*key];
                if !k.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return None;
                }
                let literal = match (dialect, k.kind) {
                    (_, KeyKind::Integer) => value.clone(),
                    (Dialect::Hive, KeyKind::String) if !value.contains('"') => format!("\"{value}\""),
                    (Dialect::Hive, KeyKind::String) if !value.contains('\'') => format!("'{value}'"),
                    // Glue compares date keys as dates given 'YYYY-MM-DD' (values are normalized so).
                    (Dialect::Glue, KeyKind::String | KeyKind::Date) if !value.contains('\'') && !value.contains('\\') => {
                        format!("'{value}'")
                    }
                    _ => return None,
                };
                Some(format!("{} {} {literal}", k.name, op.text()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<Key> {
        vec![
            Key { name: "dt".into(), kind: KeyKind::Date },
            Key { name: "h".into(), kind: KeyKind::Integer },
            Key { name: "region".into(), kind: KeyKind::String },
        ]
    }

    /// The WHERE clause of `sql` as DuckDB 1.5's json_serialize_sql writes it
    /// (hand-built here: the crate does not link DuckDB).
    fn col(names: &[&str]) -> Value {
        serde_json::json!({"class": "COLUMN_REF", "type": "COLUMN_REF", "column_names": names})
    }
    fn lit(v: Value, ty: &str) -> Value {
        serde_json::json!({"class": "CONSTANT", "type": "VALUE_CONSTANT", "value": {"type": {"id": ty}, "is_null": false, "value": v}})
    }
    fn cmp(kind: &str, l: Value, r: Value) -> Value {
        serde_json::json!({"class": "COMPARISON", "type": kind, "left": l, "right": r})
    }
    fn and(c: Vec<Value>) -> Value {
        serde_json::json!({"class": "CONJUNCTION", "type": "CONJUNCTION_AND", "children": c})
    }
    fn or(c: Vec<Value>) -> Value {
        serde_json::json!({"class": "CONJUNCTION", "type": "CONJUNCTION_OR", "children": c})
    }
    fn date(s: &str) -> Value {
        serde_json::json!({"class": "CAST", "type": "OPERATOR_CAST", "child": lit(Value::from(s), "VARCHAR"), "cast_type": {"id": "DATE"}})
    }

    #[test]
    fn and_keeps_what_it_understands() {
        let w = and(vec![
            cmp("COMPARE_EQUAL", col(&["dt"]), date("2024-01-02")),
            cmp("COMPARE_GREATERTHAN", col(&["x"]), lit(3.into(), "INTEGER")),
            cmp("COMPARE_LESSTHAN", lit(5.into(), "INTEGER"), col(&["t", "h"])),
        ]);
        let p = extract(&w, &["t".into()], &keys()).unwrap();
        assert_eq!(
            p,
            Pred::And(vec![
                Pred::Cmp { key: 0, op: Op::Eq, value: "2024-01-02".into() },
                Pred::Cmp { key: 1, op: Op::Gt, value: "5".into() },
            ])
        );
        let k = keys();
        assert!(p.matches(&[Some("2024-01-02"), Some("7"), Some("eu")], &k));
        assert!(!p.matches(&[Some("2024-01-02"), Some("5"), Some("eu")], &k));
        assert!(!p.matches(&[Some("2024-01-03"), Some("7"), Some("eu")], &k));
        assert!(!p.matches(&[None, Some("7"), Some("eu")], &k), "NULL never matches");
    }

    #[test]
    fn or_with_an_unknown_branch_is_dropped() {
        let w = or(vec![
            cmp("COMPARE_EQUAL", col(&["region"]), lit("eu".into(), "VARCHAR")),
            cmp("COMPARE_EQUAL", col(&["x"]), lit(1.into(), "INTEGER")),
        ]);
        assert_eq!(extract(&w, &[], &keys()), None);
    }

    #[test]
    fn other_tables_columns_are_not_keys() {
        let w = cmp("COMPARE_EQUAL", col(&["other", "h"]), lit(1.into(), "INTEGER"));
        assert_eq!(extract(&w, &["t".into()], &keys()), None);
        // A string constant for an integer key is cast by DuckDB; a string key
        // compared with a number is not a string comparison: dropped.
        let w = cmp("COMPARE_EQUAL", col(&["h"]), lit("12".into(), "VARCHAR"));
        assert_eq!(extract(&w, &[], &keys()), Some(Pred::Cmp { key: 1, op: Op::Eq, value: "12".into() }));
        let w = cmp("COMPARE_EQUAL", col(&["region"]), lit(12.into(), "INTEGER"));
        assert_eq!(extract(&w, &[], &keys()), None);
    }

    #[test]
    fn in_and_between() {
        let w = serde_json::json!({"class": "OPERATOR", "type": "COMPARE_IN",
            "children": [col(&["region"]), lit("eu".into(), "VARCHAR"), lit("us".into(), "VARCHAR")]});
        let p = extract(&w, &[], &keys()).unwrap();
        assert_eq!(p.hms_filter(&keys()).unwrap(), "(region = \"eu\" or region = \"us\")");
        assert!(p.matches(&[None, None, Some("us")], &keys()));
        assert!(!p.matches(&[None, None, Some("ap")], &keys()));
        let w = serde_json::json!({"class": "BETWEEN", "type": "COMPARE_BETWEEN",
            "input": col(&["h"]), "lower": lit(2.into(), "INTEGER"), "upper": lit(10.into(), "INTEGER")});
        let p = extract(&w, &[], &keys()).unwrap();
        assert_eq!(p.hms_filter(&keys()).unwrap(), "(h >= 2 and h <= 10)");
        // Integers compare as numbers, not text.
        assert!(p.matches(&[None, Some("9"), None], &keys()));
        assert!(!p.matches(&[None, Some("11"), None], &keys()));
    }

    #[test]
    fn hms_filter_rendering() {
        let k = keys();
        let p = Pred::Cmp { key: 2, op: Op::Ne, value: "it's".into() };
        assert_eq!(p.hms_filter(&k).unwrap(), "region <> \"it's\"");
        let p = Pred::Cmp { key: 2, op: Op::Eq, value: "a\"b".into() };
        assert_eq!(p.hms_filter(&k).unwrap(), "region = 'a\"b'");
        let p = Pred::Cmp { key: 2, op: Op::Eq, value: "a\"b'c".into() };
        assert_eq!(p.hms_filter(&k), None);
        // Date keys are filtered locally (the metastore compares them unreliably).
        let p = Pred::Cmp { key: 0, op: Op::Eq, value: "2024-01-01".into() };
        assert_eq!(p.hms_filter(&k), None);
        let both = Pred::And(vec![p.clone(), Pred::Cmp { key: 1, op: Op::Lt, value: "4".into() }]);
        assert_eq!(both.hms_filter(&k).unwrap(), "(h < 4)");
        assert!(!both.hms_filter_is_exact(&k));
        assert!(Pred::And(vec![Pred::Cmp { key: 1, op: Op::Lt, value: "4".into() }]).hms_filter_is_exact(&k));
        assert_eq!(Pred::Or(vec![p, Pred::Cmp { key: 1, op: Op::Lt, value: "4".into() }]).hms_filter(&k), None);
    }

    #[test]
    fn glue_expression_rendering() {
        let k = keys();
        let day = Pred::Cmp { key: 0, op: Op::Ge, value: "2024-01-01".into() };
        assert_eq!(day.filter(&k, Dialect::Glue).unwrap(), "dt >= '2024-01-01'");
        let both = Pred::And(vec![day.clone(), Pred::In { key: 2, values: vec!["eu".into(), "us".into()] }]);
        assert_eq!(both.filter(&k, Dialect::Glue).unwrap(), "(dt >= '2024-01-01' and (region = 'eu' or region = 'us'))");
        assert!(both.filter_is_exact(&k, Dialect::Glue));
        assert!(!both.filter_is_exact(&k, Dialect::Hive), "Hive leaves date keys to Pond");
        // A quote in a value is never sent to Glue (no escaping is documented): Pond filters.
        let quoted = Pred::Cmp { key: 2, op: Op::Eq, value: "it's".into() };
        assert_eq!(quoted.filter(&k, Dialect::Glue), None);
        assert_eq!(Pred::Or(vec![quoted, day]).filter(&k, Dialect::Glue), None);
        assert_eq!(Pred::Cmp { key: 1, op: Op::Lt, value: "4".into() }.filter(&k, Dialect::Glue).unwrap(), "h < 4");
    }

    #[test]
    fn point_values_when_every_key_is_pinned() {
        let k = vec![Key { name: "region".into(), kind: KeyKind::String }, Key { name: "day".into(), kind: KeyKind::String }];
        let eq = |key, v: &str| Pred::Cmp { key, op: Op::Eq, value: v.into() };
        let both = Pred::And(vec![eq(1, "d1"), Pred::In { key: 0, values: vec!["eu".into(), "us".into()] }]);
        assert_eq!(both.point_values(&k, 100).unwrap(), vec![vec!["eu", "d1"], vec!["us", "d1"]]);
        assert_eq!(both.point_values(&k, 1), None, "over the limit");
        assert_eq!(eq(0, "eu").point_values(&k, 100), None, "a key left free");
        let ranged = Pred::And(vec![eq(0, "eu"), Pred::Cmp { key: 1, op: Op::Ge, value: "d".into() }]);
        assert_eq!(ranged.point_values(&k, 100), None);
        assert_eq!(eq(0, "1").point_values(&keys(), 100), None, "non-string keys are never pinned by text");
    }

    #[test]
    fn string_prefix_for_names_listing() {
        let k = vec![
            Key { name: "region".into(), kind: KeyKind::String },
            Key { name: "day".into(), kind: KeyKind::String },
            Key { name: "h".into(), kind: KeyKind::Integer },
        ];
        let eq = |key, v: &str| Pred::Cmp { key, op: Op::Eq, value: v.into() };
        assert_eq!(Pred::And(vec![eq(1, "d"), eq(0, "eu"), eq(2, "3")]).string_prefix(&k), vec!["eu", "d"]);
        assert_eq!(eq(0, "eu").string_prefix(&k), vec!["eu"]);
        assert!(eq(1, "d").string_prefix(&k).is_empty(), "a gap at the first key: no prefix");
        assert!(Pred::Or(vec![eq(0, "a"), eq(0, "b")]).string_prefix(&k).is_empty());
        assert_eq!(Pred::In { key: 0, values: vec!["x".into()] }.string_prefix(&k), vec!["x"]);
    }

    #[test]
    fn unparseable_values_are_kept() {
        let k = keys();
        let p = Pred::Cmp { key: 1, op: Op::Eq, value: "3".into() };
        assert!(p.matches(&[None, Some("not-a-number"), None], &k));
        assert!(normalize_date("2024-02-30").is_none());
        assert!(normalize_date("2024-02-29").is_some());
        assert!(normalize_date("2023-02-29").is_none());
    }
}
