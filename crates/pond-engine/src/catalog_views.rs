//! DuckDB's own catalog listings, filtered for non-superusers.
//!
//! `information_schema.tables` (and `columns`, `schemata`, `views`) and the
//! `duckdb_tables()` family list every attached database. When a
//! non-superuser's statement reads one of them, the sandbox records where, and
//! the statement text is rewritten so that the reference becomes a subquery of
//! the same listing limited to what the caller may see (databases with a grant,
//! tables with any privilege, the session's own temporary objects). Everything
//! else in the statement was checked as usual; the generated subquery is Pond's.

use crate::error::{Error, Result};
use crate::sql::quote_literal;

/// A listing the rewrite knows, with the columns naming database, schema and table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listing {
    /// How DuckDB is asked for the unfiltered listing.
    source: &'static str,
    /// Columns blanked for non-superusers: file paths, and view texts that can
    /// name objects the caller may not see.
    blank: &'static [&'static str],
    database: &'static str,
    schema: Option<&'static str>,
    table: Option<&'static str>,
}

const INFO_SCHEMA: &[(&str, Listing)] = &[
    (
        "tables",
        Listing {
            source: "system.information_schema.tables",
            blank: &[],
            database: "table_catalog",
            schema: Some("table_schema"),
            table: Some("table_name"),
        },
    ),
    (
        "columns",
        Listing {
            source: "system.information_schema.columns",
            blank: &[],
            database: "table_catalog",
            schema: Some("table_schema"),
            table: Some("table_name"),
        },
    ),
    (
        "views",
        Listing {
            source: "system.information_schema.views",
            blank: &["view_definition"],
            database: "table_catalog",
            schema: Some("table_schema"),
            table: Some("table_name"),
        },
    ),
    (
        "schemata",
        Listing {
            source: "system.information_schema.schemata",
            blank: &[],
            database: "catalog_name",
            schema: Some("schema_name"),
            table: None,
        },
    ),
];

const FUNCTIONS: &[(&str, Listing)] = &[
    (
        "duckdb_tables",
        Listing {
            source: "duckdb_tables()",
            blank: &[],
            database: "database_name",
            schema: Some("schema_name"),
            table: Some("table_name"),
        },
    ),
    (
        "duckdb_views",
        Listing {
            source: "duckdb_views()",
            blank: &["sql"],
            database: "database_name",
            schema: Some("schema_name"),
            table: Some("view_name"),
        },
    ),
    (
        "duckdb_columns",
        Listing {
            source: "duckdb_columns()",
            blank: &[],
            database: "database_name",
            schema: Some("schema_name"),
            table: Some("table_name"),
        },
    ),
    (
        "duckdb_constraints",
        Listing {
            source: "duckdb_constraints()",
            blank: &[],
            database: "database_name",
            schema: Some("schema_name"),
            table: Some("table_name"),
        },
    ),
    (
        "duckdb_indexes",
        Listing {
            source: "duckdb_indexes()",
            blank: &[],
            database: "database_name",
            schema: Some("schema_name"),
            table: Some("table_name"),
        },
    ),
    (
        "duckdb_schemas",
        Listing { source: "duckdb_schemas()", blank: &[], database: "database_name", schema: Some("schema_name"), table: None },
    ),
    ("duckdb_databases", Listing { source: "duckdb_databases()", blank: &["path"], database: "database_name", schema: None, table: None }),
];

/// `information_schema.<name>` (optionally `system.`-qualified) as a listing.
pub(crate) fn info_schema_listing(catalog: &str, schema: &str, table: &str) -> Option<Listing> {
    if !(catalog.is_empty() || catalog.eq_ignore_ascii_case("system")) || !schema.eq_ignore_ascii_case("information_schema") {
        return None;
    }
    INFO_SCHEMA.iter().find(|(n, _)| n.eq_ignore_ascii_case(table)).map(|(_, l)| *l)
}

/// `duckdb_tables()` and friends (unqualified, without arguments) as a listing.
pub(crate) fn function_listing(name: &str) -> Option<Listing> {
    FUNCTIONS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, l)| *l)
}

/// Where in the statement text a listing is read.
#[derive(Debug, Clone)]
pub(crate) struct Rewrite {
    /// Byte offset of the reference (DuckDB's `query_location`).
    pub at: usize,
    pub listing: Listing,
    /// The reference is a table function call (`name(...)`), not a dotted name.
    pub call: bool,
    /// The reference has its own alias in the statement.
    pub aliased: bool,
    /// The name the reference is known by when it has no alias (for `tables.col`).
    pub name: String,
}

/// What the caller may see: databases, (database, schema) pairs and tables.
#[derive(Debug, Default)]
pub(crate) struct Visible {
    pub databases: Vec<String>,
    pub tables: Vec<(String, String, String)>,
}

impl Listing {
    /// A subquery with the listing's rows limited to `visible`.
    fn filtered(&self, visible: &Visible) -> String {
        let db_list = |dbs: &[String]| {
            if dbs.is_empty() {
                "false".to_string()
            } else {
                format!("{} IN ({})", self.database, dbs.iter().map(|d| quote_literal(d)).collect::<Vec<_>>().join(", "))
            }
        };
        let condition = match (self.schema, self.table) {
            (Some(s), Some(t)) => {
                let rows: Vec<String> = visible
                    .tables
                    .iter()
                    .map(|(d, sc, tb)| {
                        format!(
                            "({} = {} AND {s} = {} AND {t} = {})",
                            self.database,
                            quote_literal(d),
                            quote_literal(sc),
                            quote_literal(tb)
                        )
                    })
                    .collect();
                if rows.is_empty() {
                    "false".to_string()
                } else {
                    rows.join(" OR ")
                }
            }
            _ => db_list(&visible.databases),
        };
        // Pond's time-series buffers are never listed.
        let condition = match self.schema {
            Some(s) => format!("({condition}) AND lower({s}) <> {}", quote_literal(crate::lake::BUFFER_SCHEMA)),
            None => condition,
        };
        let star = if self.blank.is_empty() {
            "*".to_string()
        } else {
            format!("* REPLACE ({})", self.blank.iter().map(|c| format!("NULL::VARCHAR AS {c}")).collect::<Vec<_>>().join(", "))
        };
        format!("(SELECT {star} FROM {} WHERE {condition})", self.source)
    }
}

/// Applies the rewrites (any order) to `sql`.
pub(crate) fn apply(sql: &str, mut rewrites: Vec<Rewrite>, visible: &Visible) -> Result<String> {
    rewrites.sort_by_key(|r| std::cmp::Reverse(r.at));
    let mut out = sql.to_string();
    let mut last_start = usize::MAX;
    for r in rewrites {
        let end = reference_end(&out, r.at, r.call).ok_or_else(cannot)?;
        if end > last_start {
            return Err(cannot());
        }
        let mut replacement = r.listing.filtered(visible);
        if !r.aliased {
            replacement.push_str(&format!(" AS {}", crate::sql::quote_ident(&r.name)));
        }
        out.replace_range(r.at..end, &replacement);
        last_start = r.at;
    }
    Ok(out)
}

fn cannot() -> Error {
    Error::PermissionDenied("permission denied: Pond could not limit this catalog listing to what you may see".into())
}

/// The end of a dotted name (`a.b."c"`) or of a call `name( … )` starting at `at`.
fn reference_end(sql: &str, at: usize, call: bool) -> Option<usize> {
    let b = sql.as_bytes();
    let mut i = at;
    let ident = |i: &mut usize| crate::sql::skip_identifier(b, i);
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        if !ident(&mut i) {
            return None;
        }
        let mut j = i;
        skip_ws(&mut j);
        if j < b.len() && b[j] == b'.' {
            i = j + 1;
            skip_ws(&mut i);
            continue;
        }
        break;
    }
    if call {
        skip_ws(&mut i);
        if b.get(i) != Some(&b'(') {
            return None;
        }
        i += 1;
        skip_ws(&mut i);
        if b.get(i) != Some(&b')') {
            return None;
        }
        i += 1;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible() -> Visible {
        Visible { databases: vec!["pub".into()], tables: vec![("pub".into(), "main".into(), "t".into())] }
    }

    #[test]
    fn rewrites_names_and_calls_in_place() {
        let sql = "SELECT table_name FROM information_schema.tables WHERE 1 = 1";
        let at = sql.find("information_schema").unwrap();
        let r = Rewrite {
            at,
            listing: info_schema_listing("", "information_schema", "tables").unwrap(),
            call: false,
            aliased: false,
            name: "tables".into(),
        };
        let out = apply(sql, vec![r], &visible()).unwrap();
        assert!(out.starts_with("SELECT table_name FROM (SELECT * FROM system.information_schema.tables WHERE ((table_catalog = 'pub'"));
        assert!(out.contains("AND lower(table_schema) <> '_pond_buffer'"), "{out}");
        assert!(out.ends_with(") AS \"tables\" WHERE 1 = 1"), "{out}");

        let sql = "SELECT * FROM duckdb_databases ( ) d";
        let r = Rewrite {
            at: 14,
            listing: function_listing("duckdb_databases").unwrap(),
            call: true,
            aliased: true,
            name: "duckdb_databases".into(),
        };
        assert_eq!(
            apply(sql, vec![r], &visible()).unwrap(),
            "SELECT * FROM (SELECT * REPLACE (NULL::VARCHAR AS path) FROM duckdb_databases() WHERE database_name IN ('pub')) d"
        );
    }

    #[test]
    fn nothing_visible_means_no_rows_and_bad_offsets_are_refused() {
        let sql = "FROM duckdb_tables()";
        let r = Rewrite {
            at: 5,
            listing: function_listing("duckdb_tables").unwrap(),
            call: true,
            aliased: false,
            name: "duckdb_tables".into(),
        };
        let out = apply(sql, vec![r.clone()], &Visible::default()).unwrap();
        assert!(out.contains("WHERE (false)"), "{out}");
        let bad = Rewrite { at: 0, ..r };
        assert!(apply(sql, vec![bad], &Visible::default()).is_err());
    }
}
