//! The crate's one error type, and how every error becomes the protocol's
//! one-line answer (`Error: <message>`).

/// Why a request was not carried out. Messages never quote a password or a
/// connection string.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A protocol command with the wrong arguments.
    #[error("{command}: {problem}; expected: {usage}")]
    Usage { command: &'static str, problem: String, usage: &'static str },
    #[error("empty request: send a command (login, connect, …) or a SQL statement")]
    Empty,
    #[error("login first: send `login <user> <password>`")]
    LoginFirst,
    #[error("login failed: unknown user or wrong password")]
    LoginFailed,
    /// Too many failed logins from this address, and the like.
    #[error(transparent)]
    Auth(pond_auth::Error),
    #[error(transparent)]
    Engine(#[from] pond_engine::Error),
    #[error("the request is longer than {0} bytes and was skipped")]
    LineTooLong(usize),
    #[error("the request is not valid UTF-8")]
    NotUtf8,
    #[error("the result is larger than {0} bytes: add a LIMIT or select fewer columns")]
    ResultTooLarge(usize),
    #[error("cannot encode the result as JSON: {0}")]
    Json(String),
    /// An error about a statement that carried a secret, with the secret removed.
    #[error("{0}")]
    Redacted(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The answer line (without its `\n`): `Error: ` and the message on one line.
    pub fn answer(&self) -> String {
        format!("Error: {}", one_line(&self.to_string()))
    }
}

/// `e` without `secret` (a password or connection string the request carried):
/// DuckDB quotes the statement after `LINE n:`, so that part goes, and any
/// remaining occurrence of the secret (as written or as quoted) becomes `***`.
pub fn redact(e: &Error, secret: &str) -> Error {
    let mut message = e.to_string();
    if let Some(i) = message.find("LINE ") {
        message.truncate(i);
    }
    for form in [secret.replace('\'', "''"), secret.to_string()] {
        if !form.is_empty() {
            message = message.replace(&form, "***");
        }
    }
    Error::Redacted(message.trim().to_string())
}

/// Newlines (DuckDB's messages have several) become spaces.
pub fn one_line(text: &str) -> String {
    text.trim().replace("\r\n", " ").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_one_line() {
        let e = Error::Engine(pond_engine::Error::DuckDb("Parser Error: syntax error\n\nLINE 1: selec\r\n ^".into()));
        assert_eq!(e.answer(), "Error: Parser Error: syntax error  LINE 1: selec  ^");
        assert!(!e.answer().contains('\n'));
    }

    #[test]
    fn secrets_are_cut_from_error_answers() {
        let e = Error::Engine(pond_engine::Error::DuckDb(
            "Parser Error: syntax error at or near \"LINK\"\n\nLINE 1: LINK DATABASE \"d\" TO POSTGRES 'host=x password=it''s-sec..."
                .into(),
        ));
        let r = redact(&e, "host=x password=it's-secret");
        assert_eq!(r.answer(), "Error: Parser Error: syntax error at or near \"LINK\"");
        let e = Error::Engine(pond_engine::Error::InvalidRequest(
            "cannot reach 'host=x password=it''s-secret' nor host=x password=it's-secret".into(),
        ));
        assert_eq!(redact(&e, "host=x password=it's-secret").to_string(), "cannot reach '***' nor ***");
    }
}
