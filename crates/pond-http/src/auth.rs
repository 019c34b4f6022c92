//! Who is calling over HTTP, and the authentication endpoints: login, API
//! tokens (Arc-compatible paths), OAuth2 client credentials, users and grants.
//!
//! Credentials are read from `Authorization: Basic|Bearer|Token`, `x-api-key`,
//! or the InfluxDB v1 query parameters `u`/`p`; all go to the one
//! [`pond_auth::Authenticator`]. User and grant endpoints run the same SQL
//! statements every protocol accepts (`CREATE USER`, `GRANT`, …), so they
//! behave identically.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pond_auth::{Credentials, Identity, NewToken, TokenPatch};
use serde::Deserialize;

use crate::{HttpError, HttpState};

/// The authenticated caller of a request (an axum extractor).
pub struct Caller {
    pub identity: Identity,
    pub source: Option<String>,
}

/// The client address, when the listener records it.
pub fn source_of(parts: &Parts) -> Option<String> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string())
}

fn credentials(headers: &HeaderMap, query: Option<&str>) -> Result<Credentials, HttpError> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| pond_auth::Error::Malformed("authorization header is not ASCII".into()))?;
        return Ok(pond_auth::parse_authorization(v)?);
    }
    if let Some(v) = headers.get("x-api-key") {
        let v = v.to_str().map_err(|_| pond_auth::Error::Malformed("x-api-key header is not ASCII".into()))?;
        return Ok(Credentials::Token(v.trim().to_string()));
    }
    // InfluxDB v1 clients: ?u=user&p=password (or a token as p).
    if let Some(q) = query {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap_or_default();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let Some(p) = get("p") {
            return Ok(Credentials::Password { user: get("u").unwrap_or_default(), password: p });
        }
    }
    Err(pond_auth::Error::MissingCredentials.into())
}

impl FromRequestParts<HttpState> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, Self::Rejection> {
        let creds = credentials(&parts.headers, parts.uri.query())?;
        let source = source_of(parts);
        let auth = state.auth.clone();
        let src = source.clone();
        // Password checks are slow (argon2): keep them off the async workers.
        let identity = tokio::task::spawn_blocking(move || auth.authenticate(&creds, src.as_deref(), "http"))
            .await
            .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
        Ok(Caller { identity, source })
    }
}

/// `POST /api/v1/auth/login`: a session bearer token for later calls.
pub async fn login(State(state): State<HttpState>, caller: Caller) -> Result<Response, HttpError> {
    let token = state.auth.issue_token(&caller.identity);
    state.auth.record_login(&caller.identity, caller.source.as_deref(), "http");
    Ok(Json(serde_json::json!({
        "token": token,
        "token_type": "Bearer",
        "expires_in": state.auth.token_ttl().as_secs(),
        "user": caller.identity.user,
    }))
    .into_response())
}

/// `GET /api/v1/auth/verify`: who the credentials belong to.
pub async fn verify(caller: Caller) -> Json<serde_json::Value> {
    let id = &caller.identity;
    let (kind, token_id) = match &id.via {
        pond_auth::Via::Password => ("password", None),
        pond_auth::Via::Session => ("session", None),
        pond_auth::Via::ApiToken(t) => ("api_token", Some(t.clone())),
        pond_auth::Via::OAuth(c) => ("oauth2", Some(c.clone())),
        pond_auth::Via::Jwt => ("jwt", None),
    };
    Json(serde_json::json!({
        "valid": true,
        "user": id.user,
        "superuser": id.effective_superuser(),
        "credential": kind,
        "token_id": token_id,
        "scope": id.scope.as_ref().map(|s| serde_json::json!({"databases": s.databases, "write": s.write})),
    }))
}

// ----- API tokens ----------------------------------------------------------------------

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, HttpError> {
    serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("request body must be JSON {shape}: {e} (line {}, column {})", e.line(), e.column())))
}

const TOKEN_SHAPE: &str =
    "{\"name\": \"…\", \"description\": \"…\", \"databases\": [\"…\"], \"permission\": \"read|write|admin\", \"expires_in\": seconds, \"user\": \"…\"}";

pub async fn create_token(State(state): State<HttpState>, caller: Caller, body: axum::body::Bytes) -> Result<Response, HttpError> {
    let req: NewToken = json_body(&body, TOKEN_SHAPE)?;
    let (info, secret) = state.auth.create_api_token(&caller.identity, req)?;
    let mut v = serde_json::to_value(&info).map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    v["token"] = serde_json::Value::String(secret);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub async fn list_tokens(State(state): State<HttpState>, caller: Caller) -> Json<serde_json::Value> {
    Json(serde_json::json!({"tokens": state.auth.list_api_tokens(&caller.identity)}))
}

pub async fn get_token(State(state): State<HttpState>, caller: Caller, Path(id): Path<String>) -> Result<Response, HttpError> {
    Ok(Json(state.auth.get_api_token(&caller.identity, &id)?).into_response())
}

pub async fn patch_token(
    State(state): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let patch: TokenPatch = json_body(&body, TOKEN_SHAPE)?;
    Ok(Json(state.auth.update_api_token(&caller.identity, &id, patch)?).into_response())
}

pub async fn delete_token(State(state): State<HttpState>, caller: Caller, Path(id): Path<String>) -> Result<Response, HttpError> {
    state.auth.delete_api_token(&caller.identity, &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn revoke_token(State(state): State<HttpState>, caller: Caller, Path(id): Path<String>) -> Result<Response, HttpError> {
    Ok(Json(state.auth.revoke_api_token(&caller.identity, &id)?).into_response())
}

pub async fn rotate_token(State(state): State<HttpState>, caller: Caller, Path(id): Path<String>) -> Result<Response, HttpError> {
    let (info, secret) = state.auth.rotate_api_token(&caller.identity, &id)?;
    let mut v = serde_json::to_value(&info).map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    v["token"] = serde_json::Value::String(secret);
    Ok(Json(v).into_response())
}

// ----- OAuth2 ----------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    let mut resp = (status, Json(serde_json::json!({"error": error, "error_description": description.into()}))).into_response();
    resp.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Basic realm=\"pond\""));
    }
    resp
}

/// `POST /oauth2/token` (RFC 6749 client credentials): form or JSON body; the
/// client may authenticate with Basic or with `client_id`/`client_secret` fields.
pub async fn oauth_token(State(state): State<HttpState>, parts: Parts, body: axum::body::Bytes) -> Response {
    let is_json = parts.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
    let parsed: Result<TokenRequest, String> = if is_json {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes(&body).map_err(|e| e.to_string())
    };
    let mut req = match parsed {
        Ok(r) => r,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", format!("unreadable body: {e}")),
    };
    if let Some(Ok(Credentials::Password { user, password })) =
        parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(pond_auth::parse_authorization)
    {
        req.client_id = Some(user);
        req.client_secret = Some(password);
    }
    match req.grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type '{other}' is not supported (use client_credentials)"),
            )
        }
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is missing"),
    }
    let (Some(id), Some(secret)) = (req.client_id, req.client_secret) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client_id and client_secret are required");
    };
    let source = source_of(&parts);
    let auth = state.auth.clone();
    let scope = req.scope.clone();
    let r = tokio::task::spawn_blocking(move || auth.oauth_client_credentials(&id, &secret, scope.as_deref(), source.as_deref())).await;
    match r {
        Ok(Ok((token, ttl, scope))) => {
            let mut resp =
                Json(serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl.as_secs(), "scope": scope}))
                    .into_response();
            resp.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
            resp
        }
        Ok(Err(pond_auth::Error::InvalidScope(m))) => oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", m),
        Ok(Err(pond_auth::Error::TooManyFailures(w))) => oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_client",
            format!("too many failed attempts; retry in {} s", w.as_secs().max(1)),
        ),
        Ok(Err(e)) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", e.to_string()),
        Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClient {
    user: String,
    #[serde(default)]
    databases: Vec<String>,
    #[serde(default)]
    permission: Option<String>,
}

pub async fn create_oauth_client(State(state): State<HttpState>, caller: Caller, body: axum::body::Bytes) -> Result<Response, HttpError> {
    let req: NewClient = json_body(&body, "{\"user\": \"…\", \"databases\": [\"…\"], \"permission\": \"read|write\"}")?;
    let auth = state.auth.clone();
    let (id, secret) = tokio::task::spawn_blocking(move || {
        auth.create_oauth_client(&caller.identity, &req.user, req.databases, req.permission.as_deref().unwrap_or("read"))
    })
    .await
    .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"client_id": id, "client_secret": secret}))).into_response())
}

pub async fn list_oauth_clients(State(state): State<HttpState>, caller: Caller) -> Result<Response, HttpError> {
    if !caller.identity.effective_superuser() {
        return Err(pond_auth::Error::PermissionDenied("listing OAuth2 clients requires a superuser".into()).into());
    }
    let clients: Vec<_> = state
        .auth
        .list_oauth_clients()
        .into_iter()
        .map(|c| serde_json::json!({"client_id": c.client_id, "user": c.user, "databases": c.databases, "permission": c.permission, "created_at": c.created_at}))
        .collect();
    Ok(Json(serde_json::json!({"clients": clients})).into_response())
}

pub async fn delete_oauth_client(State(state): State<HttpState>, caller: Caller, Path(id): Path<String>) -> Result<Response, HttpError> {
    state.auth.delete_oauth_client(&caller.identity, &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- users and grants: the SQL statements, over HTTP ------------------------------------

fn ident(s: &str) -> String {
    pond_engine::sql::quote_ident(s)
}

/// Runs one Pond administration statement as the caller; returns its rows as JSON objects.
async fn run_admin(state: &HttpState, caller: Caller, sql: String) -> Result<Vec<serde_json::Value>, HttpError> {
    let session = state.engine.open_session_async(caller.identity, "http", None, false).await?;
    let batches = session.query(&sql, None).await?.collect().await?;
    let mut rows = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            let mut obj = serde_json::Map::new();
            for (i, f) in b.schema().fields().iter().enumerate() {
                let col = b.column(i);
                let v = arrow::util::display::array_value_to_string(col, r).unwrap_or_default();
                obj.insert(f.name().clone(), serde_json::Value::String(v));
            }
            rows.push(serde_json::Value::Object(obj));
        }
    }
    Ok(rows)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    superuser: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    password: Option<String>,
    superuser: Option<bool>,
    name: Option<String>,
}

pub async fn list_users(State(state): State<HttpState>, caller: Caller) -> Result<Response, HttpError> {
    let rows = run_admin(&state, caller, "SHOW USERS".into()).await?;
    Ok(Json(serde_json::json!({"users": rows})).into_response())
}

pub async fn create_user(State(state): State<HttpState>, caller: Caller, body: axum::body::Bytes) -> Result<Response, HttpError> {
    let u: NewUser = json_body(&body, "{\"name\": \"…\", \"password\": \"…\", \"superuser\": false}")?;
    let sql = format!(
        "CREATE USER {} PASSWORD {}{}",
        ident(&u.name),
        pond_engine::sql::quote_literal(&u.password),
        if u.superuser { " SUPERUSER" } else { "" }
    );
    run_admin(&state, caller, sql).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"name": u.name, "superuser": u.superuser}))).into_response())
}

pub async fn patch_user(
    State(state): State<HttpState>,
    caller: Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let p: UserPatch = json_body(&body, "{\"password\": \"…\", \"superuser\": true|false, \"name\": \"new name\"}")?;
    let mut statements = Vec::new();
    if let Some(pw) = &p.password {
        statements.push(format!("ALTER USER {} PASSWORD {}", ident(&name), pond_engine::sql::quote_literal(pw)));
    }
    if let Some(s) = p.superuser {
        statements.push(format!("ALTER USER {} {}", ident(&name), if s { "SUPERUSER" } else { "NOSUPERUSER" }));
    }
    if let Some(to) = &p.name {
        statements.push(format!("ALTER USER {} RENAME TO {}", ident(&name), ident(to)));
    }
    if statements.is_empty() {
        return Err(HttpError::bad_request("nothing to change: send password, superuser or name"));
    }
    let session = state.engine.open_session_async(caller.identity, "http", None, false).await?;
    for sql in statements {
        session.update(&sql, None).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn delete_user(State(state): State<HttpState>, caller: Caller, Path(name): Path<String>) -> Result<Response, HttpError> {
    run_admin(&state, caller, format!("DROP USER {}", ident(&name))).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    user: String,
    database: String,
    /// `schema.table` or `table` (schema `main`); absent for a database grant.
    #[serde(default)]
    table: Option<String>,
    privileges: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct GrantQuery {
    user: Option<String>,
}

pub async fn list_grants(State(state): State<HttpState>, caller: Caller, Query(q): Query<GrantQuery>) -> Result<Response, HttpError> {
    let sql = match q.user {
        Some(u) => format!("SHOW GRANTS FOR {}", ident(&u)),
        None => "SHOW GRANTS".into(),
    };
    let rows = run_admin(&state, caller, sql).await?;
    Ok(Json(serde_json::json!({"grants": rows})).into_response())
}

async fn grant_or_revoke(state: HttpState, caller: Caller, body: axum::body::Bytes, revoke: bool) -> Result<Response, HttpError> {
    let g: GrantBody = json_body(&body, "{\"user\": \"…\", \"database\": \"…\", \"table\": \"schema.table\", \"privileges\": [\"read\"]}")?;
    if g.privileges.is_empty() || g.privileges.iter().any(|p| !p.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')) {
        return Err(HttpError::bad_request("privileges must be a non-empty list of names such as read, write, select, insert"));
    }
    let target = match &g.table {
        None => format!("DATABASE {}", ident(&g.database)),
        Some(t) => {
            let parts: Vec<&str> = t.split('.').collect();
            let (schema, table) = match parts.as_slice() {
                [t] => ("main", *t),
                [s, t] => (*s, *t),
                _ => return Err(HttpError::bad_request("field 'table' must be 'table' or 'schema.table'")),
            };
            format!("TABLE {}.{}.{}", ident(&g.database), ident(schema), ident(table))
        }
    };
    let sql = format!(
        "{} {} ON {target} {} {}",
        if revoke { "REVOKE" } else { "GRANT" },
        g.privileges.join(", "),
        if revoke { "FROM" } else { "TO" },
        ident(&g.user)
    );
    run_admin(&state, caller, sql).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn grant(State(state): State<HttpState>, caller: Caller, body: axum::body::Bytes) -> Result<Response, HttpError> {
    grant_or_revoke(state, caller, body, false).await
}

pub async fn revoke(State(state): State<HttpState>, caller: Caller, body: axum::body::Bytes) -> Result<Response, HttpError> {
    grant_or_revoke(state, caller, body, true).await
}
