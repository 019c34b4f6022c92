//! Time-series storage endpoints: the measurement listing and the status and
//! triggers of flush, compaction and retention. It translates HTTP to
//! `pond_ingest::Ingester` calls, which check grants and do the work.
//!
//! - `GET /api/v1/measurements[?db=]`: measurements the caller may read.
//! - `GET /api/v1/lake/status`: flush and compaction counters and settings.
//! - `POST /api/v1/lake/flush[?db=]`, `POST /api/v1/lake/compact[?db=]`: run now
//!   (WRITE on the database, or a superuser; without `db` superusers only).
//!   `?nodes=all[&wait_secs=N]` (superusers, a node of a cluster): every node
//!   flushes, so every node's queries see what any node acknowledged before.
//! - `GET /api/v1/cluster`: the nodes sharing the lake (superusers).
//! - `PUT /api/v1/lake/retention`: `{"database", "measurement"?, "seconds"}`
//!   (`seconds` null removes the limit; no measurement: the whole database).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::Caller;
use crate::write::ingest_error;
use crate::{HttpError, HttpState};

fn ingester(s: &HttpState) -> Result<&pond_ingest::Ingester, HttpError> {
    s.ingest.as_ref().ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, "not_found", "time-series ingest is disabled on this server"))
}

fn db_param(p: &HashMap<String, String>) -> Option<&str> {
    p.get("db").or_else(|| p.get("database")).map(String::as_str).filter(|s| !s.is_empty())
}

pub async fn measurements(
    State(s): State<HttpState>,
    caller: Caller,
    Query(p): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let list = ingester(&s)?.measurements(&caller.identity, db_param(&p)).await.map_err(ingest_error)?;
    Ok(Json(serde_json::json!({ "measurements": list })).into_response())
}

pub async fn status(State(s): State<HttpState>, _caller: Caller) -> Result<Response, HttpError> {
    Ok(Json(ingester(&s)?.lake_status()).into_response())
}

pub async fn flush(State(s): State<HttpState>, caller: Caller, Query(p): Query<HashMap<String, String>>) -> Result<Response, HttpError> {
    if p.get("nodes").is_some_and(|n| n == "all") {
        let wait = std::time::Duration::from_secs(p.get("wait_secs").and_then(|w| w.parse().ok()).unwrap_or(30).min(300));
        let pending = ingester(&s)?.flush_all_nodes(&caller.identity, wait).await.map_err(ingest_error)?;
        return Ok(Json(serde_json::json!({ "nodes_pending": pending })).into_response());
    }
    let r = ingester(&s)?.flush(&caller.identity, db_param(&p)).await.map_err(ingest_error)?;
    Ok(Json(serde_json::json!({ "flushed": r })).into_response())
}

pub async fn compact(State(s): State<HttpState>, caller: Caller, Query(p): Query<HashMap<String, String>>) -> Result<Response, HttpError> {
    let r = ingester(&s)?.compact(&caller.identity, db_param(&p)).await.map_err(ingest_error)?;
    Ok(Json(serde_json::json!({ "compacted": r })).into_response())
}

#[derive(serde::Deserialize)]
pub struct RetentionBody {
    database: String,
    measurement: Option<String>,
    seconds: Option<i64>,
}

pub async fn retention(State(s): State<HttpState>, caller: Caller, body: axum::body::Bytes) -> Result<Response, HttpError> {
    let b: RetentionBody = serde_json::from_slice(&body).map_err(|e| {
        HttpError::bad_request(format!(
            "retention body must be JSON {{\"database\": \"...\", \"measurement\": \"...\" (optional), \"seconds\": N or null}}: {e}"
        ))
    })?;
    ingester(&s)?.set_retention(&caller.identity, &b.database, b.measurement.as_deref(), b.seconds).await.map_err(ingest_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn cluster(State(s): State<HttpState>, caller: Caller) -> Result<Response, HttpError> {
    let engine = s.engine.clone();
    let nodes = tokio::task::spawn_blocking(move || engine.cluster_nodes(&caller.identity))
        .await
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(HttpError::from)?;
    Ok(Json(serde_json::json!({ "node": s.engine.node_id(), "nodes": nodes })).into_response())
}
