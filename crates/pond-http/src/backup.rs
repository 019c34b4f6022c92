//! Backup endpoints (superusers only), translated to the engine's backup
//! service (`pond-backup`):
//!
//! - `GET /api/v1/backup`: the schedule, the last run and the backups in the
//!   default target.
//! - `POST /api/v1/backup` with an optional body `{"to": "<directory>"}`:
//!   takes a backup now and answers with its id and sizes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::Caller;
use crate::{HttpError, HttpState};

fn service(s: &HttpState, caller: &Caller) -> Result<std::sync::Arc<dyn pond_engine::BackupService>, HttpError> {
    if !caller.identity.effective_superuser() {
        return Err(HttpError::new(StatusCode::FORBIDDEN, "permission_denied", "backups are for superusers only"));
    }
    s.engine.backup_service().ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, "not_found", "backups are not available in this server"))
}

pub async fn status(State(s): State<HttpState>, caller: Caller) -> Result<Response, HttpError> {
    let svc = service(&s, &caller)?;
    let v = tokio::task::spawn_blocking(move || svc.status())
        .await
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(Json(v).into_response())
}

#[derive(serde::Deserialize, Default)]
struct RunBody {
    to: Option<String>,
}

pub async fn run(State(s): State<HttpState>, caller: Caller, body: axum::body::Bytes) -> Result<Response, HttpError> {
    let svc = service(&s, &caller)?;
    let b: RunBody = if body.iter().all(u8::is_ascii_whitespace) {
        RunBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| HttpError::bad_request(format!("backup body must be JSON {{\"to\": \"<directory>\"}} (or empty): {e}")))?
    };
    let r = tokio::task::spawn_blocking(move || svc.backup(b.to.as_deref()))
        .await
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match r {
        Ok(s) => Ok(Json(serde_json::json!({
            "id": s.id, "target": s.target, "files": s.files,
            "bytes_copied": s.bytes_copied, "bytes_reused": s.bytes_reused, "seconds": s.seconds, "lake_pause_seconds": s.lake_pause_seconds,
        }))
        .into_response()),
        Err(e) if e.contains("already running") => Err(HttpError::new(StatusCode::CONFLICT, "busy", e)),
        Err(e) => Err(HttpError::new(StatusCode::BAD_REQUEST, "backup_failed", e)),
    }
}
