//! What a SELECT reads and calls, from DuckDB's parse tree
//! (`json_serialize_sql`), as far as the cache needs it: the table
//! references (to version them), the function names (the engine checks their
//! stability with DuckDB), and anything that makes a result depend on more
//! than the tables' contents, which makes the statement uncacheable here.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

/// A table or view as the statement names it (empty parts were omitted).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRef {
    pub catalog: String,
    pub schema: String,
    pub name: String,
}

/// What a cacheable-looking statement reads and calls.
#[derive(Debug, Default, Clone)]
pub struct Analysis {
    pub tables: BTreeSet<TableRef>,
    /// CTE names anywhere in the statement (a reference of this name may be one).
    pub ctes: HashSet<String>,
    /// Scalar, aggregate and window function names (lower case), operators included.
    pub functions: BTreeSet<String>,
    /// Table functions (lower case).
    pub table_functions: BTreeSet<String>,
}

/// Keywords DuckDB's parser leaves as column references and its binder turns
/// into functions of the clock, the session or the caller.
fn special_keyword(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("current_") || n.starts_with("local") || matches!(n.as_str(), "user" | "session_user" | "today" | "now")
}

const TABLE_REFS: &[&str] = &["BASE_TABLE", "JOIN", "SUBQUERY", "EMPTY", "EXPRESSION_LIST", "TABLE_FUNCTION", "PIVOT"];

/// Analyses the output of `json_serialize_sql` for one statement. `Err` says
/// why the statement cannot be cached.
pub fn analyze(tree: &Value) -> Result<Analysis, String> {
    if tree.get("error").and_then(Value::as_bool) != Some(false) {
        return Err("not a plain SELECT".into());
    }
    let statements = tree.get("statements").and_then(Value::as_array).ok_or("no statements")?;
    if statements.len() != 1 {
        return Err("not exactly one statement".into());
    }
    let mut a = Analysis::default();
    walk(&statements[0], &mut a, 0)?;
    Ok(a)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn walk(v: &Value, a: &mut Analysis, depth: usize) -> Result<(), String> {
    if depth > 256 {
        return Err("statement nested too deeply".into());
    }
    match v {
        Value::Array(items) => {
            for i in items {
                walk(i, a, depth + 1)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            if let Some(class) = map.get("class").and_then(Value::as_str) {
                match class {
                    "FUNCTION" | "WINDOW" | "AGGREGATE" => {
                        let name = text(v, "function_name").to_ascii_lowercase();
                        if !text(v, "schema").is_empty() || !text(v, "catalog").is_empty() {
                            return Err(format!("qualified function {name}"));
                        }
                        a.functions.insert(name);
                    }
                    "COLUMN_REF" => {
                        if let Some(names) = map.get("column_names").and_then(Value::as_array) {
                            if let [one] = names.as_slice() {
                                if special_keyword(one.as_str().unwrap_or("")) {
                                    return Err(format!("{} depends on the clock or the session", one.as_str().unwrap_or("")));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            } else if map.contains_key("alias") && map.contains_key("sample") {
                // A table reference.
                let kind = text(v, "type");
                if !TABLE_REFS.contains(&kind.as_str()) {
                    return Err(format!("reads a {kind} reference"));
                }
                if kind == "BASE_TABLE" {
                    if !map.get("at_clause").is_none_or(Value::is_null) {
                        return Err("reads a table AT a point in time".into());
                    }
                    a.tables.insert(TableRef {
                        catalog: text(v, "catalog_name"),
                        schema: text(v, "schema_name"),
                        name: text(v, "table_name"),
                    });
                }
                if kind == "TABLE_FUNCTION" {
                    let f = map.get("function").ok_or("table function without a function")?;
                    a.table_functions.insert(text(f, "function_name").to_ascii_lowercase());
                    if let Some(children) = f.get("children") {
                        walk(children, a, depth + 1)?;
                    }
                    for (k, child) in map {
                        if k != "function" && k != "sample" {
                            walk(child, a, depth + 1)?;
                        }
                    }
                    return check_sample(v);
                }
            }
            check_sample(v)?;
            if let Some(ctes) = map.get("cte_map").and_then(|m| m.get("map")).and_then(Value::as_array) {
                for c in ctes {
                    a.ctes.insert(text(c, "key").to_ascii_lowercase());
                }
            }
            for child in map.values() {
                walk(child, a, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `USING SAMPLE` draws rows at random.
fn check_sample(v: &Value) -> Result<(), String> {
    match v.get("sample") {
        Some(s) if !s.is_null() => Err("samples rows at random".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base(catalog: &str, schema: &str, name: &str) -> Value {
        json!({"type": "BASE_TABLE", "alias": "", "sample": null, "schema_name": schema, "table_name": name, "catalog_name": catalog, "at_clause": null})
    }

    fn func(name: &str, children: Vec<Value>) -> Value {
        json!({"class": "FUNCTION", "type": "FUNCTION", "function_name": name, "schema": "", "catalog": "", "children": children})
    }

    fn col(name: &str) -> Value {
        json!({"class": "COLUMN_REF", "type": "COLUMN_REF", "column_names": [name]})
    }

    fn select(list: Vec<Value>, from: Value) -> Value {
        json!({"error": false, "statements": [{"node": {"type": "SELECT_NODE", "modifiers": [], "cte_map": {"map": []},
            "select_list": list, "from_table": from, "where_clause": null, "sample": null}}]})
    }

    #[test]
    fn tables_and_functions_are_found() {
        let join = json!({"type": "JOIN", "alias": "", "sample": null, "left": base("", "", "cpu"), "right": base("db", "s", "t")});
        let a = analyze(&select(vec![func("avg", vec![col("v")]), func("time_bucket", vec![col("time")])], join)).expect("cacheable");
        assert_eq!(a.tables.len(), 2);
        assert!(a.tables.contains(&TableRef { catalog: "db".into(), schema: "s".into(), name: "t".into() }));
        assert!(a.functions.contains("avg") && a.functions.contains("time_bucket"));
    }

    #[test]
    fn clock_keywords_sampling_and_time_travel_are_refused() {
        assert!(analyze(&select(vec![col("current_timestamp")], base("", "", "t"))).is_err());
        assert!(analyze(&select(vec![col("CURRENT_USER")], base("", "", "t"))).is_err());
        let mut sampled = base("", "", "t");
        sampled["sample"] = json!({"sample_size": 10});
        assert!(analyze(&select(vec![col("a")], sampled)).is_err());
        let mut at = base("", "", "t");
        at["at_clause"] = json!({"unit": "TIMESTAMP"});
        assert!(analyze(&select(vec![col("a")], at)).is_err());
        let show = json!({"type": "SHOW_REF", "alias": "", "sample": null});
        assert!(analyze(&select(vec![col("a")], show)).is_err());
        assert!(analyze(&json!({"error": true})).is_err());
    }

    #[test]
    fn table_functions_are_reported_apart() {
        let tf = json!({"type": "TABLE_FUNCTION", "alias": "", "sample": null,
            "function": func("read_csv", vec![json!({"class": "CONSTANT", "value": "x.csv"})])});
        let a = analyze(&select(vec![col("a")], tf)).expect("analysed");
        assert!(a.table_functions.contains("read_csv"));
        assert!(!a.functions.contains("read_csv"));
    }
}
