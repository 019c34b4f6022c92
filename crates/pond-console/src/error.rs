//! The console's one error type and its HTTP answer (`{"error", "code"}`, like the API's).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("not logged in to the console (or the session expired)")]
    NotLoggedIn,
    #[error("the CSRF token is missing or wrong: reload the page")]
    Csrf,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("no such console file: {0}")]
    NotFound(String),
    #[error(transparent)]
    Auth(#[from] pond_auth::Error),
    #[error(transparent)]
    Engine(#[from] pond_engine::Error),
}

impl ConsoleError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotLoggedIn => StatusCode::UNAUTHORIZED,
            Self::Csrf | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Auth(pond_auth::Error::TooManyFailures(_)) => StatusCode::TOO_MANY_REQUESTS,
            Self::Auth(pond_auth::Error::PermissionDenied(_)) => StatusCode::FORBIDDEN,
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
            Self::Engine(e) => match e.kind() {
                pond_engine::ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
                pond_engine::ErrorKind::NotFound => StatusCode::NOT_FOUND,
                pond_engine::ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
                pond_engine::ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::NotLoggedIn => "not_logged_in",
            Self::Csrf => "csrf_failed",
            Self::Forbidden(_) => "permission_denied",
            Self::NotFound(_) => "not_found",
            Self::BadRequest(_) => "invalid_request",
            Self::Auth(_) => "unauthenticated",
            Self::Engine(_) => "engine_error",
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        (self.status(), Json(serde_json::json!({"error": self.to_string(), "code": self.code()}))).into_response()
    }
}
