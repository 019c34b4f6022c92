//! Engine and auth errors to HTTP status codes with `{"error", "code"}` bodies.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pond_engine::ErrorKind;

#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl HttpError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.to_string(), message: message.into(), retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

/// `Retry-After` for a feature that is unavailable until the operator acts
/// (installs an extension and restarts): long enough not to hammer the server.
pub const UNAVAILABLE_RETRY_SECS: u64 = 30;

impl From<pond_engine::Error> for HttpError {
    fn from(e: pond_engine::Error) -> Self {
        let (status, retry_after) = match e.kind() {
            ErrorKind::InvalidArgument => (StatusCode::BAD_REQUEST, None),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, None),
            ErrorKind::AlreadyExists => (StatusCode::CONFLICT, None),
            ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, None),
            ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, None),
            ErrorKind::ResourceExhausted => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, Some(UNAVAILABLE_RETRY_SECS)),
            ErrorKind::Cancelled => (StatusCode::BAD_REQUEST, None),
            ErrorKind::DeadlineExceeded => (StatusCode::REQUEST_TIMEOUT, None),
            ErrorKind::FailedPrecondition | ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        let mut err = Self::new(status, e.code(), e.to_string());
        err.retry_after = retry_after;
        err
    }
}

impl From<pond_auth::Error> for HttpError {
    fn from(e: pond_auth::Error) -> Self {
        use pond_auth::Error as A;
        let (status, code) = match &e {
            A::PermissionDenied(_) => (StatusCode::FORBIDDEN, "permission_denied"),
            A::InvalidRequest(_) | A::InvalidScope(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            A::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            A::AlreadyExists(_) => (StatusCode::CONFLICT, "already_exists"),
            A::TooManyFailures(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_failed_logins"),
            A::Meta(_) | A::Hash(_) | A::Io { .. } | A::Config(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            _ => (StatusCode::UNAUTHORIZED, "unauthorized"),
        };
        let mut err = Self::new(status, code, e.to_string());
        if let A::TooManyFailures(wait) = e {
            err.retry_after = Some(wait.as_secs().max(1));
        }
        err
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut resp = (self.status, Json(serde_json::json!({"error": self.message, "code": self.code}))).into_response();
        if unauthorized {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"pond\""));
        }
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_is_503_with_retry_after_and_the_message() {
        let e = HttpError::from(pond_engine::Error::Unavailable("install it with: pond extensions install ducklake".into()));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "unavailable");
        assert_eq!(e.retry_after, Some(UNAVAILABLE_RETRY_SECS));
        assert!(e.message.contains("pond extensions install ducklake"));
        let resp = e.into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], UNAVAILABLE_RETRY_SECS.to_string().as_str());
        let busy = HttpError::from(pond_engine::Error::TooManySessions(3));
        assert_eq!((busy.status, busy.retry_after), (StatusCode::SERVICE_UNAVAILABLE, Some(1)));
    }
}
