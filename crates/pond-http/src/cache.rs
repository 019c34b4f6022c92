//! The query result cache over HTTP (superusers only):
//! - `GET /api/v1/cache`: enabled, size bound, bytes and entries held, hits,
//!   misses, bypassed statements, inserts, evictions.
//! - `POST /api/v1/cache` or `DELETE /api/v1/cache`: empties it
//!   (`{"cleared": N}`).
//!
//! A query skips the cache with the header `Cache-Control: no-cache` (or
//! `no-store`), see `query.rs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::Caller;
use crate::{HttpError, HttpState};

fn superuser(caller: &Caller) -> Result<(), HttpError> {
    if caller.identity.effective_superuser() {
        Ok(())
    } else {
        Err(HttpError::new(StatusCode::FORBIDDEN, "permission_denied", "the query cache is managed by superusers only"))
    }
}

pub async fn stats(State(s): State<HttpState>, caller: Caller) -> Result<Response, HttpError> {
    superuser(&caller)?;
    Ok(Json(s.engine.query_cache_stats()).into_response())
}

pub async fn clear(State(s): State<HttpState>, caller: Caller) -> Result<Response, HttpError> {
    superuser(&caller)?;
    let cleared = s.engine.clear_query_cache();
    Ok(Json(serde_json::json!({ "cleared": cleared })).into_response())
}
