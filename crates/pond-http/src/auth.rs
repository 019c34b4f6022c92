//! Who is calling over HTTP: `Authorization: Basic` or `Bearer`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pond_auth::Identity;

use crate::{HttpError, HttpState};

pub async fn authenticate(state: &HttpState, headers: &HeaderMap) -> Result<Identity, HttpError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(pond_auth::Error::MissingCredentials)?
        .to_str()
        .map_err(|_| pond_auth::Error::Malformed("authorization header is not ASCII".into()))?
        .to_string();
    let auth = state.auth.clone();
    // Password checks are slow (argon2): keep them off the async workers.
    let id = tokio::task::spawn_blocking(move || auth.verify_authorization_header(&value))
        .await
        .map_err(|e| HttpError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    id.map_err(|e| {
        tracing::info!(error = %e, "http authentication failed");
        e.into()
    })
}

/// `POST /api/v1/auth/login` with Basic credentials: a bearer token for later calls.
pub async fn login(State(state): State<HttpState>, headers: HeaderMap) -> Result<Response, HttpError> {
    let identity = authenticate(&state, &headers).await?;
    let token = state.auth.issue_token(&identity);
    Ok(Json(serde_json::json!({
        "token": token,
        "token_type": "Bearer",
        "expires_in": state.auth.token_ttl().as_secs(),
        "user": identity.user,
    }))
    .into_response())
}
