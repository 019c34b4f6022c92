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
}
