//! HTTP API (axum): queries in JSON, Arrow IPC or CSV, health, readiness,
//! Prometheus metrics and database listing. It translates HTTP to engine
//! sessions (one short-lived session per request) and engine errors to HTTP
//! status codes with JSON bodies; it holds no business logic of its own.
//!
//! Start with [`router`] and the `query` module.

pub mod auth;
mod backup;
mod cache;
mod error;
mod jobs;
mod json;
mod lake;
mod query;
mod write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pond_auth::Authenticator;
use pond_engine::Engine;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::HttpError;

/// Shared state of the HTTP listener.
#[derive(Clone)]
pub struct HttpState {
    pub engine: Engine,
    pub auth: Arc<Authenticator>,
    /// False while the server shuts down: `/ready` then answers 503.
    pub ready: Arc<AtomicBool>,
    /// Time-series ingest (line protocol endpoints); `None` disables them.
    pub ingest: Option<pond_ingest::Ingester>,
}

#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self { max_body_bytes: 64 * 1024 * 1024 }
    }
}

/// All routes.
pub fn router(state: HttpState, options: &HttpOptions) -> Router {
    let x_request_id = header::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/databases", get(databases))
        .route("/api/v1/query", post(query::query))
        .route("/api/v1/cache", get(cache::stats).post(cache::clear).delete(cache::clear))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/verify", get(auth::verify))
        .route("/api/v1/auth/tokens", post(auth::create_token).get(auth::list_tokens))
        .route("/api/v1/auth/tokens/{id}", get(auth::get_token).patch(auth::patch_token).delete(auth::delete_token))
        .route("/api/v1/auth/tokens/{id}/rotate", post(auth::rotate_token))
        .route("/api/v1/auth/tokens/{id}/revoke", post(auth::revoke_token))
        .route("/api/v1/auth/oauth2/clients", post(auth::create_oauth_client).get(auth::list_oauth_clients))
        .route("/api/v1/auth/oauth2/clients/{id}", axum::routing::delete(auth::delete_oauth_client))
        .route("/oauth2/token", post(auth::oauth_token))
        .route("/api/v1/users", get(auth::list_users).post(auth::create_user))
        .route("/api/v1/users/{name}", axum::routing::patch(auth::patch_user).delete(auth::delete_user))
        .route("/api/v1/grants", get(auth::list_grants).post(auth::grant).delete(auth::revoke))
        .route("/write", post(write::write_v1))
        .route("/query", post(write::query_v1).get(write::query_v1))
        .route("/ping", get(write::ping).head(write::ping))
        .route("/api/v2/write", post(write::write_v2))
        .route("/api/v3/write_lp", post(write::write_v3))
        .route("/api/v1/write/line-protocol", post(write::write_arc_lp))
        .route("/api/v1/write/json", post(write::write_json))
        .route("/api/v1/write/msgpack", post(write::write_msgpack))
        .route("/write/v2/msgpack", post(write::write_msgpack))
        .route("/api/v1/write/msgpack/spec", get(write::msgpack_spec))
        .route("/api/v1/measurements", get(lake::measurements))
        .route("/api/v1/lake/status", get(lake::status))
        .route("/api/v1/cluster", get(lake::cluster))
        .route("/api/v1/backup", get(backup::status).post(backup::run))
        .route("/api/v1/jobs", get(jobs::list).post(jobs::submit))
        .route("/api/v1/jobs/{id}", get(jobs::get).delete(jobs::cancel))
        .route("/api/v1/lake/flush", post(lake::flush))
        .route("/api/v1/lake/compact", post(lake::compact))
        .route("/api/v1/lake/retention", axum::routing::put(lake::retention))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
        .with_state(state)
}

/// Serves `router` on `listener` (plain TCP) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        // Responses go out at once instead of waiting for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    });
    serve_on(listener, router, shutdown).await
}

/// Serves `router` on any listener until `shutdown` resolves: `pond` passes
/// one whose connections have completed their TLS handshake. HTTP/1.1 and
/// HTTP/2 are both spoken.
pub async fn serve_on<L>(
    listener: L,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    use axum::serve::ListenerExt;
    // Client addresses reach handlers (failed-login throttling, audit); axum
    // provides them for any listener wrapped in `tap_io`.
    let listener = listener.tap_io(|_| {});
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).with_graceful_shutdown(shutdown).await
}

async fn health() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn ready(State(s): State<HttpState>) -> Response {
    if s.ready.load(Ordering::SeqCst) {
        Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "shutting down"}))).into_response()
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    s.engine.refresh_link_metrics();
    let mut resp = s.engine.metrics().encode().into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    resp
}

async fn databases(State(s): State<HttpState>, caller: auth::Caller) -> Result<Response, HttpError> {
    let list: Vec<_> = s
        .engine
        .visible_databases(&caller.identity)
        .into_iter()
        .map(|d| serde_json::json!({"name": d.name, "created_at": d.created_at}))
        .collect();
    Ok(Json(serde_json::json!({"databases": list})).into_response())
}

async fn not_found() -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
