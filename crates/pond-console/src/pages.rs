//! The console's HTML: the login page and its form handling, logout, and the
//! shells of the editor, catalog and administration pages (navigation, the
//! user's name and the session's CSRF token in `<meta>`; the page's ES module
//! does the rest). Pages need a session (else a redirect to the login page);
//! the administration page answers 403 to anyone but a superuser.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use pond_auth::Credentials;
use serde::Deserialize;

use crate::session::{cookie, same_token, set_cookie, Current, LOGIN_COOKIE, SESSION_COOKIE};
use crate::{Console, ConsoleError};

/// Escapes text for HTML element content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query parameter value.
pub(crate) fn url_encode(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)]).map(|q| q[2..].to_string()).unwrap_or_default()
}

/// Where to go after login: only the console's own pages (`next` from the query).
fn next_page(next: &str) -> &str {
    if next.starts_with("/console/") && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/console/"
    }
}

/// Headers every console response carries: only the console's own scripts
/// run, no framing, no referrers, no caching of pages.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        );
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

pub(crate) fn document(title: &str, head: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Pond</title><link rel=\"stylesheet\" href=\"/console/assets/console.css\">{head}</head>\
         <body>{body}</body></html>\n",
        esc(title)
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Page {
    Editor,
    Catalog,
    Admin,
}

impl Page {
    fn title(self) -> &'static str {
        match self {
            Page::Editor => "Query",
            Page::Catalog => "Catalog",
            Page::Admin => "Administration",
        }
    }
    fn module(self) -> &'static str {
        match self {
            Page::Editor => "editor.js",
            Page::Catalog => "catalog.js",
            Page::Admin => "admin.js",
        }
    }
}

fn shell(page: Page, current: &Current, superuser: bool) -> String {
    let s = &current.session;
    let mut nav = String::new();
    let mut links = vec![(Page::Editor, "/console/"), (Page::Catalog, "/console/catalog")];
    if superuser {
        links.push((Page::Admin, "/console/admin"));
    }
    for (p, href) in links {
        let current = if p == page { " aria-current=\"page\"" } else { "" };
        nav.push_str(&format!("<li><a href=\"{href}\"{current}>{}</a></li>", p.title()));
    }
    let head = format!(
        "<meta name=\"pond-csrf\" content=\"{}\"><meta name=\"pond-user\" content=\"{}\">\
         <meta name=\"pond-superuser\" content=\"{superuser}\"><meta name=\"pond-vendor\" content=\"{}\">\
         <link rel=\"stylesheet\" href=\"/console/assets/vendor/uplot.css\">\
         <script type=\"module\" src=\"/console/assets/{}\"></script>",
        esc(&s.csrf),
        esc(&s.user),
        crate::assets::VENDOR_BUILT,
        page.module()
    );
    let body = format!(
        "<a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header class=\"top\"><span class=\"brand\">Pond</span>\
         <nav aria-label=\"Console\"><ul>{nav}</ul></nav>\
         <form class=\"logout\" method=\"post\" action=\"/console/logout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <span class=\"who\" id=\"who\">{}{}</span> <button type=\"submit\" id=\"logout\">Log out</button></form></header>\
         <main id=\"main\" tabindex=\"-1\"><h1 class=\"visually-hidden\">{}</h1><div id=\"app\"><noscript>The console needs JavaScript.</noscript></div></main>",
        esc(&s.csrf),
        esc(&s.user),
        if superuser { " (superuser)" } else { "" },
        page.title()
    );
    document(page.title(), &head, &body)
}

async fn page(console: Console, current: Option<Extension<Current>>, page: Page) -> Response {
    let Some(Extension(current)) = current else { return Redirect::to("/console/login").into_response() };
    let identity = match console.identity(&current) {
        Ok(i) => i,
        Err(_) => return Redirect::to("/console/login").into_response(),
    };
    let superuser = identity.effective_superuser();
    if page == Page::Admin && !superuser {
        let body = format!(
            "<main id=\"main\"><h1>Not allowed</h1><p role=\"alert\">Administration is for superusers; {} is not one.</p>\
             <p><a href=\"/console/\">Back to the query page</a></p></main>",
            esc(&identity.user)
        );
        return (StatusCode::FORBIDDEN, Html(document("Not allowed", "", &body))).into_response();
    }
    Html(shell(page, &current, superuser)).into_response()
}

pub async fn to_console() -> Redirect {
    Redirect::permanent("/console/")
}

pub async fn editor(State(c): State<Console>, current: Option<Extension<Current>>) -> Response {
    page(c, current, Page::Editor).await
}

pub async fn catalog(State(c): State<Console>, current: Option<Extension<Current>>) -> Response {
    page(c, current, Page::Catalog).await
}

pub async fn admin(State(c): State<Console>, current: Option<Extension<Current>>) -> Response {
    page(c, current, Page::Admin).await
}

/// The login page with a fresh form token (also set as a SameSite=Strict
/// cookie: a form posted from another site carries no cookie and is refused).
fn login_page(console: &Console, status: StatusCode, message: Option<&str>, user: &str, next: &str) -> Response {
    let token = pond_auth::random_secret(24);
    let alert = message.map(|m| format!("<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>", esc(m))).unwrap_or_default();
    let body = format!(
        "<main id=\"main\" class=\"login\"><h1>Pond</h1>\
         <form method=\"post\" action=\"/console/login\" class=\"card\" aria-labelledby=\"login-title\">\
         <h2 id=\"login-title\">Log in</h2>{alert}\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\"><input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label for=\"user\">User</label><input id=\"user\" name=\"user\" autocomplete=\"username\" required value=\"{}\">\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\" id=\"login\">Log in</button></form></main>",
        esc(next_page(next)),
        esc(user)
    );
    let mut resp = (status, Html(document("Log in", "", &body))).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &token, "/console/login", std::time::Duration::from_secs(3600), console.secure),
    );
    resp
}

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

pub async fn login_form(State(c): State<Console>, current: Option<Extension<Current>>, Query(q): Query<LoginQuery>) -> Response {
    if current.is_some() {
        return Redirect::to(next_page(&q.next)).into_response();
    }
    login_page(&c, StatusCode::OK, None, "", &q.next)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

pub async fn login(
    State(c): State<Console>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return login_page(&c, StatusCode::BAD_REQUEST, Some("The login form could not be read; try again."), "", "");
    };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !same_token(expected, &form.csrf) {
        return login_page(
            &c,
            StatusCode::FORBIDDEN,
            Some("The login form expired or came from another site; try again."),
            &form.user,
            &form.next,
        );
    }
    let source = connect.map(|c| c.0 .0.ip().to_string());
    let auth = c.auth.clone();
    let creds = Credentials::Password { user: form.user.clone(), password: form.password };
    let src = source.clone();
    // argon2 is slow: off the async workers.
    let result = tokio::task::spawn_blocking(move || auth.authenticate(&creds, src.as_deref(), "console")).await;
    let identity = match result {
        Ok(Ok(identity)) => identity,
        Ok(Err(e)) => {
            let status = ConsoleError::from(e).status();
            let message = if status == StatusCode::TOO_MANY_REQUESTS {
                "Too many failed logins from this address; wait a minute."
            } else {
                "Wrong user name or password."
            };
            let status = if status == StatusCode::TOO_MANY_REQUESTS { status } else { StatusCode::UNAUTHORIZED };
            return login_page(&c, status, Some(message), &form.user, &form.next);
        }
        Err(e) => {
            tracing::error!(error = %e, "console login task failed");
            return login_page(
                &c,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("The server could not check the login."),
                &form.user,
                &form.next,
            );
        }
    };
    let bearer = c.auth.issue_token(&identity);
    c.auth.record_login(&identity, source.as_deref(), "console");
    let (id, _) = c.sessions.open(bearer, &identity.user);
    let mut resp = Redirect::to(next_page(&form.next)).into_response();
    let h = resp.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &id, "/", c.sessions.ttl(), c.secure));
    h.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", "/console/login", std::time::Duration::ZERO, c.secure));
    resp
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// Ends the session (its Pond token is revoked too) and clears the cookie.
pub async fn logout(State(c): State<Console>, current: Option<Extension<Current>>, body: axum::body::Bytes) -> Response {
    if let Some(Extension(current)) = current {
        let form: LogoutForm = serde_urlencoded::from_bytes(&body).unwrap_or(LogoutForm { csrf: String::new() });
        if !same_token(&form.csrf, &current.session.csrf) {
            return ConsoleError::Csrf.into_response();
        }
        if let Some(s) = c.sessions.close(&current.key) {
            c.auth.revoke_token(&s.bearer);
        }
    }
    let mut resp = Redirect::to("/console/login").into_response();
    resp.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/", std::time::Duration::ZERO, c.secure));
    resp
}
