//! OAuth2 authorization code with PKCE (RFC 6749 §4.1, RFC 7636) and refresh
//! tokens, for third-party apps acting as a console user with the user's consent.
//!
//! The app is a registered OAuth2 client (`POST /api/v1/auth/oauth2/clients`);
//! its databases and permission become the scope of every token it gets, so a
//! token carries at most the consenting user's rights narrowed to that scope.
//! Redirect URIs must be loopback addresses (`http://127.0.0.1:<port>/…`,
//! `http://localhost…`, `http://[::1]…`; RFC 8252 §7.3: clients register none
//! here), and PKCE with S256 is required.
//!
//! - `GET /console/oauth2/authorize?response_type=code&client_id&redirect_uri&state&code_challenge&code_challenge_method=S256`:
//!   the consent page (after the console login).
//! - `POST /console/oauth2/authorize`: Allow/Deny (the session's CSRF token) → redirect with `code` or `error`.
//! - `POST /console/oauth2/token`: `grant_type=authorization_code` (code, redirect_uri,
//!   code_verifier; client secret by Basic or form) or `grant_type=refresh_token` →
//!   an access token (a Pond login token) and a rotated refresh token.
//!
//! Codes live 60 s and are single use; refresh tokens live in memory for 30 days
//! (a restart ends them) and are replaced at each use.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use parking_lot::Mutex;
use pond_auth::{Identity, Scope, Via};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::pages::{document, esc};
use crate::session::{same_token, Current};
use crate::Console;

const CODE_TTL: Duration = Duration::from_secs(60);
const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

struct Grant {
    client_id: String,
    identity: Identity,
    redirect_uri: String,
    challenge: String,
    expires: Instant,
}

struct Refresh {
    client_id: String,
    identity: Identity,
    expires: Instant,
}

/// Pending codes and live refresh tokens (keyed by their SHA-256).
#[derive(Default)]
pub struct OAuthState {
    codes: Mutex<HashMap<[u8; 32], Grant>>,
    refresh: Mutex<HashMap<[u8; 32], Refresh>>,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn loopback(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else { return false };
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host_port.contains('@') {
        return false;
    }
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().map(|h| format!("[{h}]"))
    } else {
        host_port.split(':').next().map(str::to_string)
    };
    matches!(host.as_deref(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

#[derive(Deserialize)]
pub struct AuthorizeParams {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!("<main id=\"main\"><h1>Authorization failed</h1><p role=\"alert\">{}</p></main>", esc(message));
    (status, Html(document("Authorization failed", "", &body))).into_response()
}

/// What the flow needs of a registered client.
struct ClientInfo {
    secret_hash: String,
    databases: Vec<String>,
    write: bool,
}

/// The registered client named by `client_id`, if any.
fn client(c: &Console, client_id: &str) -> Option<ClientInfo> {
    c.auth.meta().snapshot().oauth_clients.into_iter().find(|x| x.client_id == client_id).map(|x| ClientInfo {
        secret_hash: x.secret_hash,
        databases: x.databases,
        write: x.permission != "read",
    })
}

/// Checks the request (before any redirect: an unknown client or a bad
/// redirect URI is shown to the user, never redirected to).
fn check(c: &Console, p: &AuthorizeParams) -> Result<(), String> {
    if client(c, &p.client_id).is_none() {
        return Err(format!("unknown OAuth2 client '{}'", p.client_id));
    }
    if !loopback(&p.redirect_uri) {
        return Err("redirect_uri must be a loopback address (http://127.0.0.1:PORT/…, http://localhost…, http://[::1]…)".into());
    }
    if p.response_type != "code" {
        return Err("response_type must be 'code'".into());
    }
    if p.code_challenge_method != "S256" || p.code_challenge.len() < 43 {
        return Err("PKCE is required: code_challenge (S256 of a 43–128 character verifier) and code_challenge_method=S256".into());
    }
    Ok(())
}

pub async fn authorize_form(
    State(c): State<Console>,
    current: Option<Extension<Current>>,
    Query(p): Query<AuthorizeParams>,
    uri: axum::http::Uri,
) -> Response {
    if let Err(e) = check(&c, &p) {
        return error_page(StatusCode::BAD_REQUEST, &e);
    }
    let Some(Extension(current)) = current else {
        let next = uri.path_and_query().map(|pq| pq.as_str().to_string()).unwrap_or_default();
        return Redirect::to(&format!("/console/login?next={}", crate::pages::url_encode(&next))).into_response();
    };
    let Ok(identity) = c.identity(&current) else { return Redirect::to("/console/login").into_response() };
    let Some(cl) = client(&c, &p.client_id) else { return error_page(StatusCode::BAD_REQUEST, "unknown client") };
    let scope = if cl.databases.is_empty() { "every database you may use".to_string() } else { cl.databases.join(", ") };
    let hidden = |name: &str, value: &str| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", esc(value));
    let body = format!(
        "<main id=\"main\" class=\"login\"><h1>Pond</h1><form method=\"post\" action=\"/console/oauth2/authorize\" class=\"card\" aria-labelledby=\"consent-title\">\
         <h2 id=\"consent-title\">Allow {client}?</h2>\
         <p>The application <strong>{client}</strong> asks to act as <strong>{user}</strong> on {scope}, {access}.</p>\
         {h1}{h2}{h3}{h4}{h5}\
         <button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Deny</button></form></main>",
        client = esc(&p.client_id),
        user = esc(&identity.user),
        scope = esc(&scope),
        access = if cl.write { "reading and writing" } else { "read only" },
        h1 = hidden("csrf", &current.session.csrf),
        h2 = hidden("client_id", &p.client_id),
        h3 = hidden("redirect_uri", &p.redirect_uri),
        h4 = hidden("state", p.state.as_deref().unwrap_or("")),
        h5 = hidden("code_challenge", &p.code_challenge),
    );
    let mut resp = Html(document("Allow access", "", &body)).into_response();
    // The form's answer redirects to the app's loopback address: let it.
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'self' http://127.0.0.1:* http://localhost:* http://[::1]:*",
        ),
    );
    resp
}

#[derive(Deserialize)]
pub struct Decision {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    decision: String,
}

fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    format!("{uri}{}{query}", if uri.contains('?') { '&' } else { '?' })
}

pub async fn authorize(State(c): State<Console>, current: Option<Extension<Current>>, body: axum::body::Bytes) -> Response {
    let Some(Extension(current)) = current else { return Redirect::to("/console/login").into_response() };
    let Ok(d) = serde_urlencoded::from_bytes::<Decision>(&body) else { return error_page(StatusCode::BAD_REQUEST, "unreadable form") };
    if !same_token(&d.csrf, &current.session.csrf) {
        return error_page(StatusCode::FORBIDDEN, "the form's CSRF token is missing or wrong");
    }
    let p = AuthorizeParams {
        response_type: "code".into(),
        client_id: d.client_id.clone(),
        redirect_uri: d.redirect_uri.clone(),
        state: None,
        code_challenge: d.code_challenge.clone(),
        code_challenge_method: "S256".into(),
    };
    if let Err(e) = check(&c, &p) {
        return error_page(StatusCode::BAD_REQUEST, &e);
    }
    let state = d.state.as_str();
    if d.decision != "allow" {
        return Redirect::to(&with_params(&d.redirect_uri, &[("error", "access_denied"), ("state", state)])).into_response();
    }
    let Ok(user) = c.identity(&current) else { return Redirect::to("/console/login").into_response() };
    let Some(cl) = client(&c, &d.client_id) else { return error_page(StatusCode::BAD_REQUEST, "unknown client") };
    let identity = Identity {
        user: user.user,
        superuser: user.superuser,
        scope: Some(Scope { databases: cl.databases, write: cl.write }),
        via: Via::OAuth(d.client_id.clone()),
    };
    let code = pond_auth::random_secret(32);
    let grant = Grant {
        client_id: d.client_id,
        identity,
        redirect_uri: d.redirect_uri.clone(),
        challenge: d.code_challenge,
        expires: Instant::now() + CODE_TTL,
    };
    {
        let mut codes = c.oauth.codes.lock();
        let now = Instant::now();
        codes.retain(|_, g| g.expires > now);
        codes.insert(digest(&code), grant);
    }
    Redirect::to(&with_params(&d.redirect_uri, &[("code", &code), ("state", state)])).into_response()
}

#[derive(Deserialize, Default)]
pub struct TokenForm {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_verifier: String,
    #[serde(default)]
    refresh_token: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = (status, Json(serde_json::json!({"error": error, "error_description": description}))).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The client's id and secret from Basic auth or the form.
fn client_credentials(headers: &HeaderMap, form: &TokenForm) -> (String, Option<String>) {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(b) = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")) {
            if let Ok((id, secret)) = pond_auth::decode_basic(b.trim()) {
                let decode = |s: &str| {
                    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
                        .ok()
                        .and_then(|v| v.into_iter().next())
                        .map(|(_, v)| v)
                };
                return (decode(&id).unwrap_or(id), Some(decode(&secret).unwrap_or(secret)));
            }
        }
    }
    (form.client_id.clone(), form.client_secret.clone())
}

fn verify_secret(hash: &str, secret: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
}

fn issue(c: &Console, client_id: &str, identity: Identity) -> Response {
    let access = c.auth.issue_token(&identity);
    let refresh = pond_auth::random_secret(32);
    {
        let mut map = c.oauth.refresh.lock();
        let now = Instant::now();
        map.retain(|_, r| r.expires > now);
        map.insert(digest(&refresh), Refresh { client_id: client_id.to_string(), identity: identity.clone(), expires: now + REFRESH_TTL });
    }
    let scope = identity.scope.as_ref().map(|s| {
        format!(
            "{}{}",
            if s.write { "write" } else { "read" },
            if s.databases.is_empty() { String::new() } else { format!(" {}", s.databases.join(" ")) }
        )
    });
    let mut resp = Json(serde_json::json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": c.auth.token_ttl().as_secs(),
        "refresh_token": refresh,
        "scope": scope,
    }))
    .into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub async fn token(State(c): State<Console>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(&body) else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_request", "the body must be application/x-www-form-urlencoded");
    };
    let (client_id, secret) = client_credentials(&headers, &form);
    let Some(cl) = client(&c, &client_id) else { return token_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client") };
    // A client that sends its secret must send the right one (confidential client); PKCE protects public ones.
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        let hash = cl.secret_hash.clone();
        let ok = tokio::task::spawn_blocking(move || verify_secret(&hash, &secret)).await.unwrap_or(false);
        if !ok {
            return token_error(StatusCode::UNAUTHORIZED, "invalid_client", "wrong client secret");
        }
    }
    match form.grant_type.as_str() {
        "authorization_code" => {
            let grant = c.oauth.codes.lock().remove(&digest(&form.code));
            let Some(g) = grant.filter(|g| g.expires > Instant::now() && g.client_id == client_id) else {
                return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "the code is unknown, used, expired or not this client's");
            };
            if g.redirect_uri != form.redirect_uri {
                return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "redirect_uri differs from the authorization request's");
            }
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(form.code_verifier.as_bytes()));
            if form.code_verifier.len() < 43 || !same_token(&computed, &g.challenge) {
                return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "code_verifier does not match the code_challenge");
            }
            match c.auth.revalidate(&g.identity) {
                Ok(identity) => issue(&c, &client_id, identity),
                Err(_) => token_error(StatusCode::BAD_REQUEST, "invalid_grant", "the user no longer exists"),
            }
        }
        "refresh_token" => {
            let r = c.oauth.refresh.lock().remove(&digest(&form.refresh_token));
            let Some(r) = r.filter(|r| r.expires > Instant::now() && r.client_id == client_id) else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the refresh token is unknown, used, expired or not this client's",
                );
            };
            match c.auth.revalidate(&r.identity) {
                Ok(identity) => issue(&c, &client_id, identity),
                Err(_) => token_error(StatusCode::BAD_REQUEST, "invalid_grant", "the user no longer exists"),
            }
        }
        other => token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant_type '{other}' (authorization_code, refresh_token; client_credentials is at /oauth2/token)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::loopback;

    #[test]
    fn only_loopback_redirects() {
        for ok in ["http://127.0.0.1:8123/cb", "http://localhost/cb?x=1", "http://[::1]:9/"] {
            assert!(loopback(ok), "{ok}");
        }
        for bad in [
            "https://evil.example/cb",
            "http://127.0.0.1.evil.example/",
            "http://user@127.0.0.1/",
            "javascript:alert(1)",
            "http://evil/?127.0.0.1",
        ] {
            assert!(!loopback(bad), "{bad}");
        }
    }
}
