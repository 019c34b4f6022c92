//! What the source holds: the linked tables, their columns (mapped once by
//! `types.rs`), keys and replica identity; and the same tables in DuckDB.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::conn::{run, Source};
use crate::error::{Error, Result};
use crate::types::{self, Mapped, PgType};

pub const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
    pub mapped: Mapped,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// `relreplident`: d default, n nothing, f full, i index.
    pub identity: char,
    pub columns: Vec<Column>,
    /// Primary-key column names (empty without a primary key).
    pub key: Vec<String>,
}

impl Table {
    /// Whether updates and deletes of this table can be published: a primary
    /// key (default identity) or REPLICA IDENTITY FULL.
    pub fn has_identity(&self) -> bool {
        self.identity == 'f' || (self.identity == 'd' && !self.key.is_empty())
    }

    pub fn source_name(&self) -> String {
        format!("{}.{}", pg_ident(&self.schema), pg_ident(&self.name))
    }

    /// The DuckDB schema: PostgreSQL's `public` is DuckDB's `main`.
    pub fn duck_schema(&self) -> &str {
        duck_schema(&self.schema)
    }
}

pub fn duck_schema(pg_schema: &str) -> &str {
    if pg_schema == "public" {
        "main"
    } else {
        pg_schema
    }
}

/// PostgreSQL identifier quoting.
pub fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn pg_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// DuckDB identifier quoting (same rules).
pub fn duck_ident(s: &str) -> String {
    pg_ident(s)
}

/// The source's catalog, read through a control connection; type lookups cached.
pub struct Catalog {
    pub client: Arc<tokio_postgres::Client>,
    pub shown: String,
    types: HashMap<u32, PgType>,
}

/// What the source allows.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub wal_level: String,
    pub superuser: bool,
    pub replication: bool,
}

impl Catalog {
    pub fn open(source: &Source) -> Result<Catalog> {
        Ok(Catalog { client: Arc::new(source.connect()?), shown: source.to_string(), types: HashMap::new() })
    }

    pub fn query(&self, what: &str, sql: &str) -> Result<Vec<tokio_postgres::Row>> {
        let client = self.client.clone();
        let sql = sql.to_string();
        run(&self.shown, what, QUERY_TIMEOUT, async move { client.query(sql.as_str(), &[]).await })
    }

    pub fn execute(&self, what: &str, sql: &str) -> Result<()> {
        let client = self.client.clone();
        let sql = sql.to_string();
        run(&self.shown, what, QUERY_TIMEOUT, async move { client.batch_execute(sql.as_str()).await })
    }

    pub fn capabilities(&self) -> Result<Capabilities> {
        let rows = self.query(
            "reading the source's settings",
            "SELECT current_setting('wal_level'), r.rolsuper, r.rolreplication FROM pg_roles r WHERE r.rolname = current_user",
        )?;
        let row = rows.first().ok_or_else(|| Error::Source("the source did not describe the current role".into()))?;
        Ok(Capabilities { wal_level: row.get(0), superuser: row.get(1), replication: row.get(2) })
    }

    pub fn pg_type(&mut self, oid: u32) -> Result<PgType> {
        if let Some(t) = self.types.get(&oid) {
            return Ok(t.clone());
        }
        let rows = self.query(
            "reading a column type",
            &format!(
                "SELECT typname::text, typtype::text, typcategory::text, typbasetype::int8, typtypmod, typelem::int8 FROM pg_type WHERE oid = {oid}"
            ),
        )?;
        let row = rows.first().ok_or_else(|| Error::Source(format!("type {oid} does not exist on the source")))?;
        let ch = |s: String| s.chars().next().unwrap_or(' ');
        let t = PgType {
            oid,
            name: row.get(0),
            kind: ch(row.get(1)),
            category: ch(row.get(2)),
            base: row.get::<_, i64>(3) as u32,
            base_typmod: row.get(4),
            elem: row.get::<_, i64>(5) as u32,
        };
        self.types.insert(oid, t.clone());
        Ok(t)
    }

    /// The value rows that existed before `ALTER TABLE … ADD COLUMN … DEFAULT`
    /// read for the new column (`attmissingval`), as PostgreSQL's text.
    pub fn missing_value(&self, schema: &str, table: &str, column: &str) -> Result<Option<String>> {
        let rows = self.query(
            "reading a new column's default",
            &format!(
                "SELECT attmissingval::text FROM pg_attribute WHERE attrelid = {}::regclass AND attname = {} AND atthasmissing",
                pg_literal(&format!("{}.{}", pg_ident(schema), pg_ident(table))),
                pg_literal(column)
            ),
        )?;
        let Some(text) = rows.first().and_then(|r| r.get::<_, Option<String>>(0)) else { return Ok(None) };
        let json = types::to_duck_text(&types::Text::Array(Box::new(types::Text::Plain), types::Json::String), &text)?;
        let values: Vec<Option<String>> = serde_json::from_str(&json).map_err(|e| Error::Internal(format!("attmissingval: {e}")))?;
        Ok(values.into_iter().next().flatten())
    }

    pub fn map_type(&mut self, oid: u32, typmod: i32) -> Result<Mapped> {
        let mut resolve = |o: u32| self.pg_type(o);
        types::map(oid, typmod, &mut resolve)
    }

    /// The tables to link: every ordinary or partitioned table of `schemas`,
    /// or exactly `tables` (`schema.table` or `table` in `public`).
    pub fn tables(&mut self, schemas: &[String], tables: &[String]) -> Result<Vec<Table>> {
        let filter = if tables.is_empty() {
            let list = schemas.iter().map(|s| pg_literal(s)).collect::<Vec<_>>().join(", ");
            format!("n.nspname IN ({list})")
        } else {
            let pairs = tables
                .iter()
                .map(|t| {
                    let (s, n) = t.split_once('.').unwrap_or(("public", t));
                    format!("(n.nspname = {} AND c.relname = {})", pg_literal(s.trim()), pg_literal(n.trim()))
                })
                .collect::<Vec<_>>()
                .join(" OR ");
            format!("({pairs})")
        };
        let rows = self.query(
            "listing the tables to link",
            &format!(
                "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relreplident::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {filter} ORDER BY 2, 3"
            ),
        )?;
        let mut out = Vec::new();
        for row in rows {
            let oid = row.get::<_, i64>(0) as u32;
            let identity: String = row.get(3);
            let mut t = Table {
                schema: row.get(1),
                name: row.get(2),
                identity: identity.chars().next().unwrap_or('d'),
                columns: Vec::new(),
                key: Vec::new(),
            };
            let cols = self.query(
                "reading table columns",
                &format!(
                    "SELECT attname::text, atttypid::int8, atttypmod FROM pg_attribute \
                     WHERE attrelid = {oid} AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"
                ),
            )?;
            for c in cols {
                let (name, type_oid, typmod): (String, i64, i32) = (c.get(0), c.get(1), c.get(2));
                let mapped = self.map_type(type_oid as u32, typmod)?;
                t.columns.push(Column { name, type_oid: type_oid as u32, typmod, mapped });
            }
            let keys = self.query(
                "reading primary keys",
                &format!(
                    "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                     WHERE i.indisprimary AND i.indrelid = {oid} ORDER BY array_position(i.indkey::int2[], a.attnum)"
                ),
            )?;
            t.key = keys.iter().map(|r| r.get(0)).collect();
            out.push(t);
        }
        if !tables.is_empty() && out.len() < tables.len() {
            let found: Vec<String> = out.iter().map(|t| format!("{}.{}", t.schema, t.name)).collect();
            let missing: Vec<&String> = tables
                .iter()
                .filter(|want| {
                    let w = if want.contains('.') { want.to_string() } else { format!("public.{want}") };
                    !found.contains(&w)
                })
                .collect();
            return Err(Error::Invalid(format!("the source has no table {missing:?} (TABLES names schema.table)")));
        }
        if out.is_empty() {
            return Err(Error::Invalid(format!("the source has no tables in schema(s) {}", schemas.join(", "))));
        }
        Ok(out)
    }
}

/// DuckDB DDL for one linked table (no constraints: the source enforces them).
pub fn create_table_sql(db: &str, t: &Table) -> String {
    let cols = t.columns.iter().map(|c| format!("{} {}", duck_ident(&c.name), c.mapped.duck)).collect::<Vec<_>>().join(", ");
    format!(
        "CREATE SCHEMA IF NOT EXISTS {db}.{s}; CREATE TABLE {db}.{s}.{n} ({cols});",
        db = duck_ident(db),
        s = duck_ident(t.duck_schema()),
        n = duck_ident(&t.name)
    )
}

pub fn target_name(db: &str, pg_schema: &str, name: &str) -> String {
    format!("{}.{}.{}", duck_ident(db), duck_ident(duck_schema(pg_schema)), duck_ident(name))
}
