//! How a PostgreSQL client proves who it is: SCRAM-SHA-256 (RFC 5802/7677)
//! against the verifier Pond stores per user, or a cleartext password.
//!
//! With `--pg-auth scram` (the default) a user with a stored verifier is
//! challenged with SCRAM-SHA-256: the password never crosses the wire and the
//! server holds no password equivalent. Cleartext is asked for instead when
//! the startup user is [`TOKEN_USER`] (the password is then an API token,
//! OAuth2 token or JWT, which SCRAM cannot carry) or when the user's password
//! predates verifiers (the login that follows stores one). A name that is no
//! Pond user is challenged with a decoy verifier, so the method does not tell
//! which names exist. `--pg-auth password` asks every client for cleartext
//! (tokens then work with any user name, as on HTTP Basic).
//!
//! The SCRAM arithmetic is pgwire's ([`ScramServerAuth`] with a
//! [`ScramSecret::Verifier`]); what is stored, the throttle and the audit trail
//! are `pond-auth`'s. Start with [`challenge`] and [`step`].

use std::str::FromStr;
use std::sync::Arc;

use parking_lot::Mutex;
use pgwire::api::auth::sasl::scram::{ScramSecret, ScramServerAuth, ScramServerAuthWaitingForClientFinal};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pond_auth::{Authenticator, Credentials, Identity};

/// The startup user name that means "my password is a token": cleartext is
/// requested for it whatever `--pg-auth` says.
pub const TOKEN_USER: &str = "token";

const MECHANISM: &str = "SCRAM-SHA-256";

/// Which authentication request the listener sends (`--pg-auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PgAuth {
    /// SCRAM-SHA-256 for users with a verifier, cleartext for [`TOKEN_USER`].
    #[default]
    Scram,
    /// Cleartext password for everyone (use TLS).
    Password,
}

impl FromStr for PgAuth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scram" | "scram-sha-256" => Ok(PgAuth::Scram),
            "password" | "cleartext" => Ok(PgAuth::Password),
            other => Err(format!("--pg-auth '{other}': use scram or password")),
        }
    }
}

/// Where one connection's authentication stands (kept in its session extensions).
pub(crate) struct Exchange(Mutex<State>);

enum State {
    Cleartext,
    /// SCRAM: waiting for the client-first message.
    ScramFirst(ScramSecret),
    /// SCRAM: server-first sent, waiting for the client's proof.
    ScramFinal(Box<ScramServerAuthWaitingForClientFinal>),
    Done,
}

/// What comes after an authentication message.
pub(crate) enum Step {
    /// Send this and wait for the client's next message.
    Continue(Authentication),
    /// Authenticated; send the optional final SASL message, then AuthenticationOk.
    Done(Identity, Option<Authentication>),
}

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message.into())))
}

fn failed_for(user: &str) -> PgWireError {
    fatal("28P01", format!("password authentication failed for user \"{user}\""))
}

fn throttled(e: pond_auth::Error) -> PgWireError {
    fatal("28P01", e.to_string())
}

/// The first authentication request for `user`, and the state to keep.
pub(crate) fn challenge(
    mode: PgAuth,
    auth: &Authenticator,
    user: &str,
    source: Option<&str>,
    protocol: &str,
) -> PgWireResult<(Authentication, Exchange)> {
    let verifier = match mode {
        PgAuth::Scram if user != TOKEN_USER => auth.scram_verifier(user),
        _ => None,
    };
    let Some(v) = verifier else {
        return Ok((Authentication::CleartextPassword, Exchange(Mutex::new(State::Cleartext))));
    };
    // A throttled address is refused before any work (the cleartext path checks in authenticate).
    auth.check_throttle(source, protocol).map_err(throttled)?;
    let secret = ScramSecret::Verifier {
        salt: v.salt.clone(),
        iterations: v.iterations as usize,
        stored_key: v.stored_key.clone(),
        server_key: v.server_key.clone(),
    };
    Ok((Authentication::SASL(vec![MECHANISM.to_string()]), Exchange(Mutex::new(State::ScramFirst(secret)))))
}

/// Handles one password-family message (PasswordMessage, SASLInitialResponse, SASLResponse).
pub(crate) async fn step(
    exchange: &Exchange,
    auth: &Arc<Authenticator>,
    user: &str,
    source: Option<String>,
    protocol: &'static str,
    msg: PasswordMessageFamily,
) -> PgWireResult<Step> {
    let state = std::mem::replace(&mut *exchange.0.lock(), State::Done);
    match state {
        State::Cleartext => {
            let password = msg.into_password()?.password;
            let auth = auth.clone();
            let creds = Credentials::Password { user: user.to_string(), password };
            // argon2 (on a cache miss) belongs on the blocking pool.
            let identity = tokio::task::spawn_blocking(move || auth.authenticate(&creds, source.as_deref(), protocol))
                .await
                .map_err(|e| fatal("XX000", format!("authentication worker failed: {e}")))?
                .map_err(|e| match e {
                    pond_auth::Error::TooManyFailures(_) => throttled(e),
                    _ => failed_for(user),
                })?;
            Ok(Step::Done(identity, None))
        }
        State::ScramFirst(secret) => {
            let initial = msg.into_sasl_initial_response()?;
            if initial.auth_method != MECHANISM {
                auth.finish_scram(user, false, source.as_deref(), protocol).ok();
                return Err(fatal("28000", format!("SASL mechanism '{}' is not supported: use {MECHANISM}", initial.auth_method)));
            }
            let data = initial.data.unwrap_or_default();
            match ScramServerAuth::new().on_client_first_message_with_secret(&data, secret) {
                Ok((server_first, waiting)) => {
                    *exchange.0.lock() = State::ScramFinal(Box::new(waiting));
                    Ok(Step::Continue(Authentication::SASLContinue(server_first.into_bytes().into())))
                }
                Err(e) => {
                    auth.finish_scram(user, false, source.as_deref(), protocol).ok();
                    Err(fatal("08P01", format!("invalid SCRAM client-first message: {e}")))
                }
            }
        }
        State::ScramFinal(waiting) => {
            let response = msg.into_sasl_response()?;
            match waiting.on_client_final_message(&response.data) {
                Ok(server_final) => {
                    let identity = auth.finish_scram(user, true, source.as_deref(), protocol).map_err(|_| failed_for(user))?;
                    Ok(Step::Done(identity, Some(Authentication::SASLFinal(server_final.into_bytes().into()))))
                }
                Err(e) => {
                    auth.finish_scram(user, false, source.as_deref(), protocol).ok();
                    Err(match e {
                        PgWireError::InvalidPassword(_) => failed_for(user),
                        other => fatal("08P01", format!("invalid SCRAM client-final message: {other}")),
                    })
                }
            }
        }
        State::Done => Err(fatal("08P01", "unexpected authentication message")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_auth_modes_parse() {
        assert_eq!("scram".parse::<PgAuth>(), Ok(PgAuth::Scram));
        assert_eq!("SCRAM-SHA-256".parse::<PgAuth>(), Ok(PgAuth::Scram));
        assert_eq!("password".parse::<PgAuth>(), Ok(PgAuth::Password));
        assert!("md5".parse::<PgAuth>().unwrap_err().contains("md5"));
    }
}
