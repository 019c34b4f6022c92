//! `GET /console/api/catalog`: the databases, schemas, tables and columns the
//! session's user may see, from the engine's grant-filtered
//! [`pond_engine::Engine::catalog_facts`], for the catalog page and the
//! editor's completion.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

use crate::session::Current;
use crate::{Console, ConsoleError};

/// At most this many databases are described in one answer.
const MAX_DATABASES: usize = 64;

#[derive(Serialize)]
struct Column {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    nullable: bool,
}

#[derive(Serialize)]
struct Table {
    name: String,
    view: bool,
    columns: Vec<Column>,
}

#[derive(Serialize)]
struct Schema {
    name: String,
    tables: Vec<Table>,
}

#[derive(Serialize)]
struct Database {
    name: String,
    schemas: Vec<Schema>,
}

pub async fn catalog(State(c): State<Console>, current: Option<Extension<Current>>) -> Result<Response, ConsoleError> {
    let Some(Extension(current)) = current else { return Err(ConsoleError::NotLoggedIn) };
    let who = c.identity(&current)?;
    let first = c.engine.catalog_facts(&who, "").await?;
    let mut out = Vec::new();
    let truncated = first.databases.len() > MAX_DATABASES;
    for db in first.databases.iter().take(MAX_DATABASES) {
        let facts = c.engine.catalog_facts(&who, db).await?;
        let mut columns: HashMap<i64, Vec<Column>> = HashMap::new();
        for col in facts.columns {
            columns.entry(col.table_oid).or_default().push(Column { name: col.name, data_type: col.data_type, nullable: col.nullable });
        }
        let mut schemas: Vec<Schema> = facts.schemas.iter().map(|s| Schema { name: s.name.clone(), tables: Vec::new() }).collect();
        for rel in facts.relations {
            let Some(pos) = facts.schemas.iter().position(|s| s.oid == rel.schema_oid) else { continue };
            let cols = columns.remove(&rel.oid).unwrap_or_default();
            schemas[pos].tables.push(Table { name: rel.name, view: rel.is_view, columns: cols });
        }
        for s in &mut schemas {
            s.tables.sort_by(|a, b| a.name.cmp(&b.name));
        }
        schemas.sort_by(|a, b| a.name.cmp(&b.name));
        out.push(Database { name: db.clone(), schemas });
    }
    Ok(Json(serde_json::json!({"user": who.user, "databases": out, "truncated": truncated})).into_response())
}
