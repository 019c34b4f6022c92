//! The web console: pages served from the HTTP listener, inside the binary.
//! A login with Pond credentials (through [`pond_auth::Authenticator`]) opens
//! a server-side session named by an HttpOnly, SameSite=Strict cookie (Secure
//! under TLS) that holds an ordinary Pond login token; [`mount`] wraps the
//! HTTP API so that a request carrying the cookie (and, for anything but
//! GET/HEAD, the session's CSRF token in `x-csrf-token`) reaches the API as
//! that token. Everything a page does therefore runs through the existing
//! endpoints as the logged-in user, with the engine enforcing grants.
//!
//! The pages are HTML shells rendered here (`pages.rs`) plus ES modules
//! (`web/app`) and third-party bundles (`web/dist`, from the npm lockfile)
//! embedded at compile time (`assets.rs`). Start with [`mount`].

mod assets;
mod catalog;
mod error;
mod export;
mod oauth;
mod pages;
mod session;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use pond_auth::Authenticator;
use pond_engine::Engine;

pub use error::ConsoleError;
pub use session::{CSRF_HEADER, SESSION_COOKIE};

/// The console's shared state.
#[derive(Clone)]
pub struct Console {
    engine: Engine,
    auth: Arc<Authenticator>,
    sessions: Arc<session::Sessions>,
    oauth: Arc<oauth::OAuthState>,
    /// Cookies get `Secure` when the listener speaks TLS.
    secure: bool,
}

impl Console {
    /// A console whose sessions last as long as the authenticator's login tokens.
    pub fn new(engine: Engine, auth: Arc<Authenticator>, secure: bool) -> Self {
        let ttl = auth.token_ttl();
        Self { engine, auth, sessions: Arc::new(session::Sessions::new(ttl)), oauth: Arc::default(), secure }
    }
}

/// The console's routes merged into the HTTP API's router, and the session
/// cookie layer around both.
pub fn mount(api: Router, console: Console) -> Router {
    let pages = Router::new()
        .route("/console", get(pages::to_console))
        .route("/console/", get(pages::editor))
        .route("/console/catalog", get(pages::catalog))
        .route("/console/admin", get(pages::admin))
        .route("/console/login", get(pages::login_form).post(pages::login))
        .route("/console/logout", post(pages::logout))
        .route("/console/api/catalog", get(catalog::catalog))
        .route("/console/api/export", post(export::export))
        .route("/console/oauth2/authorize", get(oauth::authorize_form).post(oauth::authorize))
        .route("/console/oauth2/token", post(oauth::token))
        .route("/console/assets/{*path}", get(assets::asset))
        .layer(axum::middleware::from_fn(pages::security_headers))
        .with_state(console.clone());
    api.merge(pages).layer(axum::middleware::from_fn_with_state(console, session::cookie_layer))
}
