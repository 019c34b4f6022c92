//! psql's listing meta-commands (`\l`, `\dt`, `\du`): their pg_catalog queries
//! are recognized and answered from Pond's own listings (`SHOW DATABASES`,
//! `SHOW TABLES`, `SHOW USERS`), which the engine filters by the caller's
//! grants. Other pg_catalog queries go to DuckDB's pg_catalog views.

/// A psql listing this layer answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    Databases,
    Tables,
    Users,
}

/// Recognizes the queries psql sends for `\l`, `\dt` and `\du` (without patterns).
pub(crate) fn psql_listing(sql: &str) -> Option<Listing> {
    let n = sql.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
    if !n.starts_with("select ") {
        return None;
    }
    if n.contains("from pg_catalog.pg_database d") && n.contains("d.datname as \"name\"") && !n.contains(" where ") {
        return Some(Listing::Databases);
    }
    if n.contains("from pg_catalog.pg_class c")
        && n.contains("c.relkind in ('r','p','')")
        && n.contains("pg_catalog.pg_table_is_visible(c.oid)")
        && !n.contains("c.relname operator")
        && !n.contains("c.relname ~")
    {
        return Some(Listing::Tables);
    }
    if n.starts_with("select r.rolname, r.rolsuper")
        && n.contains("from pg_catalog.pg_roles r")
        && !n.contains("r.rolname operator")
        && !n.contains("r.rolname ~ ")
    {
        return Some(Listing::Users);
    }
    None
}

/// The engine statement whose rows answer `listing`.
pub(crate) fn engine_statement(listing: Listing) -> &'static str {
    match listing {
        Listing::Databases => "SHOW DATABASES",
        Listing::Tables => "SHOW TABLES",
        Listing::Users => "SHOW USERS",
    }
}

/// Column names and text rows in the shape psql expects, from the engine
/// listing's rows (`SHOW USERS`: name, superuser).
pub(crate) fn shape(listing: Listing, rows: Vec<Vec<String>>, schema: &str) -> (Vec<&'static str>, Vec<Vec<String>>) {
    match listing {
        Listing::Databases => (
            vec!["Name", "Owner", "Encoding", "Collate", "Ctype", "Access privileges"],
            rows.into_iter().map(|r| vec![r[0].clone(), "pond".into(), "UTF8".into(), "C".into(), "C".into(), String::new()]).collect(),
        ),
        Listing::Tables => (
            vec!["Schema", "Name", "Type", "Owner"],
            rows.into_iter().map(|r| vec![schema.to_string(), r[0].clone(), "table".into(), "pond".into()]).collect(),
        ),
        Listing::Users => (
            vec![
                "rolname",
                "rolsuper",
                "rolinherit",
                "rolcreaterole",
                "rolcreatedb",
                "rolcanlogin",
                "rolconnlimit",
                "rolvaliduntil",
                "memberof",
                "rolreplication",
                "rolbypassrls",
            ],
            rows.into_iter()
                .map(|r| {
                    let sup = if r.get(1).map(String::as_str) == Some("true") { "t" } else { "f" };
                    vec![
                        r[0].clone(),
                        sup.into(),
                        "t".into(),
                        sup.into(),
                        sup.into(),
                        "t".into(),
                        "-1".into(),
                        String::new(),
                        "{}".into(),
                        "f".into(),
                        sup.into(),
                    ]
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_15_listing_queries_are_recognized() {
        let l = "SELECT d.datname as \"Name\",\n  pg_catalog.pg_get_userbyid(d.datdba) as \"Owner\"\nFROM pg_catalog.pg_database d\nORDER BY 1;";
        assert_eq!(psql_listing(l), Some(Listing::Databases));
        let dt = "SELECT n.nspname as \"Schema\",\n  c.relname as \"Name\"\nFROM pg_catalog.pg_class c\n LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\nWHERE c.relkind IN ('r','p','')\n AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 1,2;";
        assert_eq!(psql_listing(dt), Some(Listing::Tables));
        let du = "SELECT r.rolname, r.rolsuper, r.rolinherit\nFROM pg_catalog.pg_roles r\nWHERE r.rolname !~ '^pg_'\nORDER BY 1;";
        assert_eq!(psql_listing(du), Some(Listing::Users));
        assert_eq!(psql_listing("select * from pg_catalog.pg_class"), None);
    }
}
