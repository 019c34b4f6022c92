//! Console sessions: kept in memory, named by a random id in the
//! `pond_console` cookie (only its SHA-256 is stored), each holding the Pond
//! login token the API calls run with and a CSRF token.
//!
//! [`cookie_layer`] runs before every route of the HTTP listener: a request
//! without an `Authorization`/`x-api-key` header that carries a live
//! session's cookie gets `Authorization: Bearer <the session's token>`, so
//! pond-http authenticates it like any other caller. A state-changing request
//! (not GET/HEAD/OPTIONS, and InfluxDB v1's `/query` whatever its method) must also send the session's CSRF token in
//! `x-csrf-token`, or it is refused with 403 before reaching any handler.
//! The login and logout forms check their own tokens (a form field).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use pond_auth::Identity;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Console, ConsoleError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "pond_console";
/// The cookie of the login form's CSRF token (double submit).
pub const LOGIN_COOKIE: &str = "pond_console_login";
/// The header the console's scripts send with every API call.
pub const CONSOLE_HEADER: &str = "x-pond-console";
/// The header carrying the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// One logged-in browser.
#[derive(Clone)]
pub struct Session {
    /// The Pond login token API calls run with (revoked at logout).
    pub bearer: String,
    pub csrf: String,
    pub user: String,
    pub expires: Instant,
}

/// What a console handler learns about the request's session.
#[derive(Clone)]
pub struct Current {
    pub key: [u8; 32],
    pub session: Session,
}

pub struct Sessions {
    ttl: Duration,
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, map: Mutex::new(HashMap::new()) }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session; returns its cookie value.
    pub fn open(&self, bearer: String, user: &str) -> (String, Session) {
        let id = pond_auth::random_secret(32);
        let session = Session { bearer, csrf: pond_auth::random_secret(24), user: user.to_string(), expires: Instant::now() + self.ttl };
        let mut map = self.map.lock();
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(digest(&id), session.clone());
        (id, session)
    }

    fn get(&self, id: &str) -> Option<Current> {
        let key = digest(id);
        let map = self.map.lock();
        map.get(&key).filter(|s| s.expires > Instant::now()).map(|s| Current { key, session: s.clone() })
    }

    pub fn close(&self, key: &[u8; 32]) -> Option<Session> {
        self.map.lock().remove(key)
    }
}

/// The value of cookie `name`, if the request sent it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Constant-time comparison of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A `Set-Cookie` value with the console's attributes.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{secure}", max_age.as_secs());
    // Values are Pond's own base64url/hex tokens: always valid header text.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether a request cannot change state. InfluxDB v1's `/query` runs
/// `CREATE DATABASE`/`DROP …` even as a GET, so it always needs the token.
fn safe(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) && path != "/query"
}

pub async fn cookie_layer(State(console): State<Console>, mut req: Request, next: Next) -> Response {
    let has_credentials = req.headers().contains_key(header::AUTHORIZATION) || req.headers().contains_key("x-api-key");
    if has_credentials {
        return next.run(req).await;
    }
    // The console's own calls (its cookie, or its marker header once the cookie is gone)
    // never get a Basic challenge: browsers would answer it with a password dialog.
    let from_console = req.headers().contains_key(CONSOLE_HEADER) || cookie(req.headers(), SESSION_COOKIE).is_some();
    let Some(current) = cookie(req.headers(), SESSION_COOKIE).and_then(|id| console.sessions.get(id)) else {
        let mut resp = next.run(req).await;
        if from_console {
            resp.headers_mut().remove(header::WWW_AUTHENTICATE);
        }
        return resp;
    };
    // Forms that check the token themselves, and the OAuth2 token endpoint (called by apps, not pages).
    let own_form = matches!(req.uri().path(), "/console/login" | "/console/logout" | "/console/oauth2/authorize" | "/console/oauth2/token");
    if !safe(req.method(), req.uri().path()) && !own_form {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !same_token(sent, &current.session.csrf) {
            tracing::warn!(path = %req.uri().path(), user = %current.session.user, "console request without a valid CSRF token refused");
            return ConsoleError::Csrf.into_response();
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", current.session.bearer)) {
        req.headers_mut().insert(header::AUTHORIZATION, v);
    }
    req.extensions_mut().insert(current);
    let mut resp = next.run(req).await;
    resp.headers_mut().remove(header::WWW_AUTHENTICATE);
    resp
}

impl Console {
    /// The identity behind a session, re-checked now (a dropped user or a
    /// changed superuser flag counts at once).
    pub(crate) fn identity(&self, current: &Current) -> Result<Identity, ConsoleError> {
        let id = self.auth.verify_token(&current.session.bearer).map_err(|_| ConsoleError::NotLoggedIn)?;
        Ok(self.auth.revalidate(&id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_strict_and_secure_under_tls() {
        let plain = set_cookie(SESSION_COOKIE, "abc", "/", Duration::from_secs(60), false);
        assert_eq!(plain, "pond_console=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Strict");
        let tls = set_cookie(SESSION_COOKIE, "abc", "/", Duration::from_secs(60), true);
        assert!(tls.to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn sessions_expire_and_close() {
        let s = Sessions::new(Duration::from_millis(50));
        let (id, session) = s.open("pond_s_x".into(), "u");
        let current = s.get(&id).expect("open session");
        assert_eq!(current.session.csrf, session.csrf);
        assert!(s.get("another").is_none());
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.get(&id).is_none(), "expired");
        let (id, _) = s.open("pond_s_y".into(), "u");
        let key = s.get(&id).unwrap().key;
        assert!(s.close(&key).is_some());
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn cookie_parsing_finds_the_named_cookie() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; pond_console=xyz; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "pond"), None);
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("abc", "ab"));
    }
}
