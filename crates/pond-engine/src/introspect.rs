//! What exists: databases' schemas, tables and views, their columns and keys,
//! read from DuckDB's own catalog functions (`duckdb_tables()`, …) and limited
//! to Pond databases. Protocols turn these into their metadata answers
//! (Flight SQL GetTables, later pg_catalog); the security work filters them
//! by the caller's grants here, once, for every protocol.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::SchemaRef;

use pond_auth::{Identity, Privilege};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::sql::{quote_ident, quote_literal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub catalog: String,
    pub schema: String,
    pub name: String,
    /// "BASE TABLE", "VIEW" or "LOCAL TEMPORARY".
    pub table_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumn {
    pub catalog: String,
    pub schema: String,
    pub table: String,
    pub column: String,
    /// 1-based position in the key.
    pub seq: i32,
    pub key_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub pk: KeyColumn,
    pub fk: KeyColumn,
}

/// Filters of a table listing; patterns use SQL LIKE syntax (`%`, `_`).
#[derive(Debug, Clone, Default)]
pub struct TableFilter {
    pub catalog: Option<String>,
    pub schema_pattern: Option<String>,
    pub table_pattern: Option<String>,
    pub table_types: Vec<String>,
}

pub const TABLE_TYPES: &[&str] = &["BASE TABLE", "LOCAL TEMPORARY", "VIEW"];

impl Engine {
    /// Runs a catalog query on a fresh connection (so it never disturbs a
    /// session's running statement) and returns its batches.
    async fn catalog_query(&self, sql: String) -> Result<Vec<RecordBatch>> {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = engine.system_connection()?;
            let mut stmt = conn.prepare(&sql)?;
            let batches: Vec<RecordBatch> = stmt.query_arrow([])?.collect();
            Ok(batches)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    fn database_list_sql(&self) -> String {
        // External catalogs list like databases (their placeholder views carry the columns).
        let names: Vec<String> =
            self.databases().iter().map(|d| d.name.clone()).chain(self.inner.externals.names()).map(|n| quote_literal(&n)).collect();
        names.join(", ")
    }

    /// Schemas of Pond databases, as (catalog, schema), sorted.
    pub async fn list_schemas(&self, who: &Identity, catalog: Option<&str>, schema_pattern: Option<&str>) -> Result<Vec<(String, String)>> {
        let mut sql = format!(
            "SELECT database_name, schema_name FROM duckdb_schemas() WHERE database_name IN ({}) AND schema_name <> {}",
            self.database_list_sql(),
            quote_literal(crate::lake::BUFFER_SCHEMA)
        );
        if let Some(c) = catalog {
            sql.push_str(&format!(" AND database_name = {}", quote_literal(c)));
        }
        if let Some(p) = schema_pattern {
            sql.push_str(&format!(" AND schema_name LIKE {} ESCAPE '\\'", quote_literal(p)));
        }
        sql.push_str(" ORDER BY 1, 2");
        let batches = self.catalog_query(sql).await?;
        let policy = self.authenticator().policy();
        Ok(rows(&batches)
            .into_iter()
            .map(|r| (r[0].clone().unwrap_or_default(), r[1].clone().unwrap_or_default()))
            .filter(|(db, _)| policy.allows(who, db, None, Privilege::Usage))
            .collect())
    }

    /// Tables and views of Pond databases, sorted by catalog, schema, name.
    pub async fn list_tables(&self, who: &Identity, f: &TableFilter) -> Result<Vec<TableInfo>> {
        let objects =
            "SELECT database_name, schema_name, table_name, CASE WHEN temporary THEN 'LOCAL TEMPORARY' ELSE 'BASE TABLE' END AS t \
             FROM duckdb_tables() WHERE NOT internal \
             UNION ALL SELECT database_name, schema_name, view_name, 'VIEW' FROM duckdb_views() WHERE NOT internal";
        let mut sql = format!(
            "SELECT * FROM ({objects}) WHERE database_name IN ({}) AND schema_name <> {}",
            self.database_list_sql(),
            quote_literal(crate::lake::BUFFER_SCHEMA)
        );
        if let Some(c) = &f.catalog {
            sql.push_str(&format!(" AND database_name = {}", quote_literal(c)));
        }
        if let Some(p) = &f.schema_pattern {
            sql.push_str(&format!(" AND schema_name LIKE {} ESCAPE '\\'", quote_literal(p)));
        }
        if let Some(p) = &f.table_pattern {
            sql.push_str(&format!(" AND table_name LIKE {} ESCAPE '\\'", quote_literal(p)));
        }
        if !f.table_types.is_empty() {
            let types: Vec<String> = f.table_types.iter().map(|t| quote_literal(t)).collect();
            sql.push_str(&format!(" AND t IN ({})", types.join(", ")));
        }
        sql.push_str(" ORDER BY 1, 2, 3");
        let batches = self.catalog_query(sql).await?;
        Ok(rows(&batches)
            .into_iter()
            .map(|r| TableInfo {
                catalog: r[0].clone().unwrap_or_default(),
                schema: r[1].clone().unwrap_or_default(),
                name: r[2].clone().unwrap_or_default(),
                table_type: r[3].clone().unwrap_or_default(),
            })
            .filter(|t| self.table_visible(who, &t.catalog, &t.schema, &t.name))
            .collect())
    }

    /// The Arrow schema a `SELECT *` of the table returns.
    pub async fn table_schema(&self, catalog: &str, schema: &str, table: &str) -> Result<SchemaRef> {
        let sql = format!("SELECT * FROM {}.{}.{} LIMIT 0", quote_ident(catalog), quote_ident(schema), quote_ident(table));
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = engine.system_connection()?;
            let mut stmt = conn.prepare(&sql)?;
            let arrow = stmt.query_arrow([])?;
            Ok(arrow.get_schema())
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Primary key columns of a table, in key order.
    pub async fn primary_keys(&self, who: &Identity, catalog: Option<&str>, schema: Option<&str>, table: &str) -> Result<Vec<KeyColumn>> {
        let mut sql = format!(
            "SELECT database_name, schema_name, table_name, unnest(constraint_column_names) AS col, \
             generate_subscripts(constraint_column_names, 1) AS seq, constraint_name \
             FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' AND database_name IN ({}) AND table_name = {}",
            self.database_list_sql(),
            quote_literal(table)
        );
        if let Some(c) = catalog {
            sql.push_str(&format!(" AND database_name = {}", quote_literal(c)));
        }
        if let Some(s) = schema {
            sql.push_str(&format!(" AND schema_name = {}", quote_literal(s)));
        }
        sql = format!("SELECT database_name, schema_name, table_name, col, seq::VARCHAR, constraint_name FROM ({sql}) ORDER BY 1, 2, 3, 5");
        let batches = self.catalog_query(sql).await?;
        Ok(rows(&batches).into_iter().map(key_column).filter(|k| self.table_visible(who, &k.catalog, &k.schema, &k.table)).collect())
    }

    /// Foreign keys, optionally restricted to the referencing (fk) table and/or
    /// the referenced (pk) table.
    pub async fn foreign_keys(
        &self,
        who: &Identity,
        fk_table: Option<(Option<&str>, Option<&str>, &str)>,
        pk_table: Option<(Option<&str>, Option<&str>, &str)>,
    ) -> Result<Vec<ForeignKey>> {
        // duckdb_constraints() lists FOREIGN KEY constraints on the referencing
        // table with the referenced table and columns.
        let mut sql = format!(
            "SELECT database_name, schema_name, table_name, constraint_column_names, referenced_table, referenced_column_names, constraint_name \
             FROM duckdb_constraints() WHERE constraint_type = 'FOREIGN KEY' AND database_name IN ({})",
            self.database_list_sql()
        );
        if let Some((c, s, t)) = fk_table {
            sql.push_str(&format!(" AND table_name = {}", quote_literal(t)));
            if let Some(c) = c {
                sql.push_str(&format!(" AND database_name = {}", quote_literal(c)));
            }
            if let Some(s) = s {
                sql.push_str(&format!(" AND schema_name = {}", quote_literal(s)));
            }
        }
        if let Some((c, s, t)) = pk_table {
            sql.push_str(&format!(" AND referenced_table = {}", quote_literal(t)));
            if let Some(c) = c {
                sql.push_str(&format!(" AND database_name = {}", quote_literal(c)));
            }
            if let Some(s) = s {
                sql.push_str(&format!(" AND schema_name = {}", quote_literal(s)));
            }
        }
        let sql = format!(
            "SELECT database_name, schema_name, table_name, unnest(constraint_column_names) AS fk_col, referenced_table, \
             unnest(referenced_column_names) AS pk_col, generate_subscripts(constraint_column_names, 1)::VARCHAR AS seq, constraint_name \
             FROM ({sql}) ORDER BY 1, 2, 3, 7"
        );
        let batches = self.catalog_query(sql).await?;
        Ok(rows(&batches)
            .into_iter()
            .map(|r| {
                let get = |i: usize| r[i].clone().unwrap_or_default();
                let seq = get(6).parse().unwrap_or(1);
                ForeignKey {
                    // DuckDB foreign keys reference tables in the same database and schema.
                    pk: KeyColumn { catalog: get(0), schema: get(1), table: get(4), column: get(5), seq, key_name: None },
                    fk: KeyColumn { catalog: get(0), schema: get(1), table: get(2), column: get(3), seq, key_name: r[7].clone() },
                }
            })
            .filter(|k| {
                self.table_visible(who, &k.fk.catalog, &k.fk.schema, &k.fk.table)
                    && self.table_visible(who, &k.pk.catalog, &k.pk.schema, &k.pk.table)
            })
            .collect())
    }

    /// Whether listings show the table to `who` (any privilege on it; temp objects are the session's own).
    pub fn table_visible(&self, who: &Identity, db: &str, schema: &str, table: &str) -> bool {
        who.effective_superuser() || db == "temp" || self.authenticator().policy().table_visible(who, db, schema, table)
    }

    /// A new connection to the shared instance, for work outside any session.
    pub fn system_connection(&self) -> Result<duckdb::Connection> {
        self.root_clone()
    }
}

fn key_column(r: Vec<Option<String>>) -> KeyColumn {
    let get = |i: usize| r[i].clone().unwrap_or_default();
    KeyColumn { catalog: get(0), schema: get(1), table: get(2), column: get(3), seq: get(4).parse().unwrap_or(1), key_name: r[5].clone() }
}

/// All values of all batches as optional strings (catalog answers are text).
fn rows(batches: &[RecordBatch]) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<Arc<dyn Array>> =
            b.columns().iter().map(|c| arrow_cast::cast(c, &arrow_schema::DataType::Utf8).unwrap_or_else(|_| c.clone())).collect();
        for r in 0..b.num_rows() {
            out.push(
                cols.iter()
                    .map(|c| c.as_string_opt::<i32>().and_then(|s| if s.is_null(r) { None } else { Some(s.value(r).to_string()) }))
                    .collect(),
            );
        }
    }
    out
}

/// One database's catalog as a PostgreSQL-style catalog is built from it:
/// only what the caller may see (see [`Engine::catalog_facts`]).
#[derive(Debug, Clone, Default)]
pub struct CatalogFacts {
    /// The caller's databases (USAGE), sorted.
    pub databases: Vec<String>,
    /// (name, superuser) of the users the caller may list: everyone for a
    /// superuser, only the caller otherwise.
    pub users: Vec<(String, bool)>,
    pub schemas: Vec<SchemaFact>,
    pub relations: Vec<RelationFact>,
    pub columns: Vec<ColumnFact>,
    pub constraints: Vec<ConstraintFact>,
    pub indexes: Vec<IndexFact>,
}

#[derive(Debug, Clone)]
pub struct SchemaFact {
    pub oid: i64,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct RelationFact {
    pub oid: i64,
    pub schema_oid: i64,
    pub name: String,
    pub is_view: bool,
    pub comment: Option<String>,
    /// A view's definition; only for superusers (it can name objects others may not see).
    pub sql: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ColumnFact {
    pub table_oid: i64,
    pub name: String,
    /// 1-based.
    pub position: i32,
    /// DuckDB's type, e.g. `DECIMAL(10,2)`, `INTEGER[]`.
    pub data_type: String,
    pub nullable: bool,
    pub default: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ConstraintFact {
    pub table_oid: i64,
    /// Unique within the table.
    pub index: i32,
    /// PRIMARY KEY, UNIQUE, FOREIGN KEY or CHECK.
    pub kind: String,
    pub name: String,
    pub columns: Vec<String>,
    /// 1-based positions of `columns`.
    pub positions: Vec<i32>,
    pub referenced_table: Option<String>,
    pub referenced_columns: Vec<String>,
    pub expression: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IndexFact {
    pub oid: i64,
    pub table_oid: i64,
    pub name: String,
    pub unique: bool,
    /// Indexed expressions as DuckDB lists them (`[note]`).
    pub expressions: Option<String>,
    pub sql: Option<String>,
}

impl Engine {
    /// Changes whenever what [`Engine::catalog_facts`] returns may have changed:
    /// DDL in any session, ingest-created tables, databases, users and grants.
    pub fn catalog_version(&self) -> (u64, u64) {
        (self.inner.catalog_generation.load(std::sync::atomic::Ordering::SeqCst), self.inner.meta.generation())
    }

    /// The schemas, tables, views, columns, constraints and indexes of
    /// `database` that `who` may see (tables with any privilege, the schemas
    /// holding them; everything for superusers), plus the caller's databases
    /// and users. Protocols build their own catalog answers from this (the
    /// PostgreSQL listener's pg_catalog), so grants are applied here, once.
    pub async fn catalog_facts(&self, who: &Identity, database: &str) -> Result<CatalogFacts> {
        let policy = self.authenticator().policy();
        let databases: Vec<String> = self
            .databases()
            .into_iter()
            .map(|d| d.name)
            .chain(self.inner.externals.names())
            .filter(|d| policy.allows(who, d, None, Privilege::Usage))
            .collect();
        let users = if who.effective_superuser() {
            self.authenticator()
                .list_users(who)
                .map_err(Error::from)?
                .into_iter()
                .filter(|u| !u.role)
                .map(|u| (u.name, u.superuser))
                .collect()
        } else {
            vec![(who.user.clone(), false)]
        };
        let mut facts = CatalogFacts { databases, users, ..Default::default() };
        if !facts.databases.iter().any(|d| d == database) {
            return Ok(facts);
        }
        let db = quote_literal(database);
        let superuser = who.effective_superuser();
        let batches = self
            .catalog_query(format!(
                "SELECT table_oid, schema_oid, schema_name, table_name, false, comment, NULL FROM duckdb_tables() \
                 WHERE database_name = {db} AND NOT internal \
                 UNION ALL SELECT view_oid, schema_oid, schema_name, view_name, true, comment, sql FROM duckdb_views() \
                 WHERE database_name = {db} AND NOT internal ORDER BY 1"
            ))
            .await?;
        let mut visible_schemas = std::collections::BTreeSet::new();
        for r in rows(&batches) {
            let get = |i: usize| r[i].clone().unwrap_or_default();
            if !self.table_visible(who, database, &get(2), &get(3)) {
                continue;
            }
            visible_schemas.insert(get(1).parse::<i64>().unwrap_or(0));
            facts.relations.push(RelationFact {
                oid: get(0).parse().unwrap_or(0),
                schema_oid: get(1).parse().unwrap_or(0),
                name: get(3),
                is_view: get(4) == "true",
                comment: r[5].clone(),
                sql: if superuser { r[6].clone() } else { None },
            });
        }
        let batches = self
            .catalog_query(format!("SELECT oid, schema_name FROM duckdb_schemas() WHERE database_name = {db} AND NOT starts_with(schema_name, 'pg_') ORDER BY 1"))
            .await?;
        for r in rows(&batches) {
            let oid = r[0].clone().unwrap_or_default().parse().unwrap_or(0);
            let name = r[1].clone().unwrap_or_default();
            // A non-superuser sees the database's main schema and the schemas of tables they may see.
            if superuser || name == "main" || visible_schemas.contains(&oid) {
                facts.schemas.push(SchemaFact { oid, name });
            }
        }
        let oids: std::collections::HashSet<i64> = facts.relations.iter().map(|r| r.oid).collect();
        let batches = self
            .catalog_query(format!(
                "SELECT table_oid, column_name, column_index, data_type, is_nullable, column_default, comment FROM duckdb_columns() \
                 WHERE database_name = {db} AND NOT internal ORDER BY 1, 3"
            ))
            .await?;
        for r in rows(&batches) {
            let get = |i: usize| r[i].clone().unwrap_or_default();
            let table_oid = get(0).parse().unwrap_or(0);
            if !oids.contains(&table_oid) {
                continue;
            }
            facts.columns.push(ColumnFact {
                table_oid,
                name: get(1),
                position: get(2).parse().unwrap_or(0),
                data_type: get(3),
                nullable: get(4) == "true",
                default: r[5].clone(),
                comment: r[6].clone(),
            });
        }
        let batches = self
            .catalog_query(format!(
                "SELECT table_oid, constraint_index, constraint_type, constraint_name, \
                 array_to_string(list_transform(constraint_column_names, x -> replace(x, chr(31), '')), chr(31)), \
                 array_to_string(list_transform(constraint_column_indexes, x -> x + 1), ','), referenced_table, \
                 array_to_string(list_transform(referenced_column_names, x -> replace(x, chr(31), '')), chr(31)), expression \
                 FROM duckdb_constraints() WHERE database_name = {db} \
                 AND constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY', 'CHECK') ORDER BY 1, 2"
            ))
            .await?;
        let split = |s: Option<String>, sep: char| -> Vec<String> {
            s.filter(|s| !s.is_empty()).map(|s| s.split(sep).map(str::to_string).collect()).unwrap_or_default()
        };
        for r in rows(&batches) {
            let get = |i: usize| r[i].clone().unwrap_or_default();
            let table_oid = get(0).parse().unwrap_or(0);
            if !oids.contains(&table_oid) {
                continue;
            }
            facts.constraints.push(ConstraintFact {
                table_oid,
                index: get(1).parse().unwrap_or(0),
                kind: get(2),
                name: get(3),
                columns: split(r[4].clone(), '\u{1f}'),
                positions: split(r[5].clone(), ',').iter().filter_map(|p| p.parse().ok()).collect(),
                referenced_table: r[6].clone().filter(|t| !t.is_empty()),
                referenced_columns: split(r[7].clone(), '\u{1f}'),
                expression: r[8].clone(),
            });
        }
        let batches = self
            .catalog_query(format!(
                "SELECT index_oid, table_oid, index_name, is_unique, expressions, sql FROM duckdb_indexes() \
                 WHERE database_name = {db} ORDER BY 1"
            ))
            .await?;
        for r in rows(&batches) {
            let get = |i: usize| r[i].clone().unwrap_or_default();
            let table_oid = get(1).parse().unwrap_or(0);
            if !oids.contains(&table_oid) {
                continue;
            }
            facts.indexes.push(IndexFact {
                oid: get(0).parse().unwrap_or(0),
                table_oid,
                name: get(2),
                unique: get(3) == "true",
                expressions: r[4].clone(),
                sql: r[5].clone(),
            });
        }
        Ok(facts)
    }
}
