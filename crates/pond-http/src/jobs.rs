//! Import and export jobs over HTTP, translated to the engine's job calls
//! (`pond-jobs` decides who may see, start and cancel what):
//!
//! - `GET /api/v1/jobs`: `{"jobs": [runs, newest first], "export_jobs": [...]}`,
//!   what the caller owns (everything for a superuser).
//! - `POST /api/v1/jobs?db=<database>`: starts an import, `{"type": "import",
//!   "into": "measurement", "target": "cpu", "from": "influxdb", "url": "…",
//!   "options": {"database": "telegraf", "measurement": "cpu"}}`, or runs any
//!   job statement, `{"statement": "CREATE EXPORT JOB …"}`; answers 202 with
//!   `{"id": …}` for a started run.
//! - `GET /api/v1/jobs/{id}`: one run with its progress.
//! - `DELETE /api/v1/jobs/{id}`: cancels a run (`{"cancelled": true|false}`;
//!   false when it had already ended).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::Caller;
use crate::{HttpError, HttpState};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> pond_engine::Result<T> + Send + 'static) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(HttpError::from)
}

fn job_id(text: &str) -> Result<u64, HttpError> {
    text.parse().map_err(|_| HttpError::bad_request(format!("'{text}' is not a job id (GET /api/v1/jobs lists them)")))
}

pub async fn list(State(s): State<HttpState>, caller: Caller) -> Result<Response, HttpError> {
    let engine = s.engine.clone();
    let v = blocking(move || engine.job_list(&caller.identity)).await?;
    Ok(Json(v).into_response())
}

pub async fn get(State(s): State<HttpState>, caller: Caller, Path(id): Path<String>) -> Result<Response, HttpError> {
    let id = job_id(&id)?;
    let engine = s.engine.clone();
    let v = blocking(move || engine.job_get(&caller.identity, id)).await?;
    Ok(Json(v).into_response())
}

pub async fn cancel(State(s): State<HttpState>, caller: Caller, Path(id): Path<String>) -> Result<Response, HttpError> {
    let id = job_id(&id)?;
    let engine = s.engine.clone();
    let cancelled = blocking(move || engine.job_cancel(&caller.identity, id)).await?;
    Ok(Json(serde_json::json!({ "id": id, "cancelled": cancelled })).into_response())
}

#[derive(serde::Deserialize)]
pub struct SubmitParams {
    db: Option<String>,
}

pub async fn submit(
    State(s): State<HttpState>,
    caller: Caller,
    Query(p): Query<SubmitParams>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let body: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        HttpError::bad_request(format!("the body must be JSON: {{\"type\": \"import\", …}} or {{\"statement\": \"…\"}} ({e})"))
    })?;
    let engine = s.engine.clone();
    let db = p.db.unwrap_or_else(|| pond_engine::DEFAULT_DATABASE.to_string());
    let v = blocking(move || engine.job_submit(&caller.identity, &db, body)).await?;
    let status = if v.get("id").is_some() { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(v)).into_response())
}
