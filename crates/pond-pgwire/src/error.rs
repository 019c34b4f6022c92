//! The crate's error type and the one place engine errors become SQLSTATEs.

use pgwire::error::{ErrorInfo, PgWireError};
use pond_engine::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] pond_engine::Error),
    #[error("cannot encode a result value: {0}")]
    Encode(String),
    #[error("{0}")]
    Param(String),
    /// A query against the PostgreSQL catalog failed (DuckDB's message).
    #[error("{0}")]
    Catalog(String),
    #[error("cannot listen for PostgreSQL clients: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::Encode(e.to_string())
    }
}

impl Error {
    /// The SQLSTATE a client receives for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::Engine(e) => engine_sqlstate(e),
            Error::Encode(_) => "XX000",
            Error::Param(_) => "22P02",
            Error::Catalog(msg) if msg.starts_with("permission denied") => "42501",
            Error::Catalog(msg) => duckdb_sqlstate(msg),
            Error::Io(_) => "58030",
        }
    }

    /// The ErrorResponse fields (severity ERROR).
    pub fn to_info(&self) -> ErrorInfo {
        ErrorInfo::new("ERROR".into(), self.sqlstate().into(), self.to_string())
    }
}

impl From<Error> for PgWireError {
    fn from(e: Error) -> Self {
        PgWireError::UserError(Box::new(e.to_info()))
    }
}

/// An ERROR with an explicit SQLSTATE (for conditions the pg layer itself detects).
pub(crate) fn info(code: &str, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new("ERROR".into(), code.into(), message.into())
}

/// SQLSTATE of an engine error: Pond's error kind first, DuckDB's error
/// class and message where the kind alone is too coarse.
fn engine_sqlstate(e: &pond_engine::Error) -> &'static str {
    use pond_engine::Error as E;
    match e {
        E::DatabaseNotFound(_) => return "3D000",
        E::TooManySessions(_) => return "53300",
        E::InvalidName { .. } => return "42602",
        E::DatabaseExists(_) => return "42P04",
        _ => {}
    }
    match e.kind() {
        ErrorKind::PermissionDenied => "42501",
        ErrorKind::Unauthenticated => "28000",
        ErrorKind::ResourceExhausted => "53000",
        ErrorKind::Cancelled | ErrorKind::DeadlineExceeded => "57014",
        // object_not_in_prerequisite_state: the statement needs something the
        // server lacks (not 57P03, which PostgreSQL sends at connection time).
        ErrorKind::FailedPrecondition | ErrorKind::Unavailable => "55000",
        ErrorKind::Internal => "XX000",
        ErrorKind::AlreadyExists => "42710",
        ErrorKind::NotFound => "42704",
        ErrorKind::InvalidArgument => match e {
            E::DuckDb(msg) => duckdb_sqlstate(msg),
            // The sandbox words its refusals like DuckDB ("Catalog Error: table … does not exist").
            E::InvalidRequest(msg) => match duckdb_sqlstate(msg) {
                "XX000" => "22023",
                code => code,
            },
            _ => "22023",
        },
    }
}

/// DuckDB prefixes messages with its error class ("Catalog Error: …").
pub(crate) fn duckdb_sqlstate(msg: &str) -> &'static str {
    let class = msg.split(':').next().unwrap_or("");
    let lower = msg.to_ascii_lowercase();
    match class {
        "Parser Error" | "Syntax Error" => "42601",
        "Catalog Error" => {
            if lower.contains("table function") {
                "42883"
            } else if lower.contains("table") || lower.contains("view") {
                if lower.contains("already exists") {
                    "42P07"
                } else {
                    "42P01"
                }
            } else if lower.contains("function") {
                "42883"
            } else if lower.contains("schema") {
                "3F000"
            } else if lower.contains("already exists") {
                "42710"
            } else {
                "42704"
            }
        }
        "Binder Error" => {
            if lower.contains("column") && (lower.contains("not found") || lower.contains("does not have a column")) {
                "42703"
            } else if lower.contains("function") {
                "42883"
            } else {
                "42P18"
            }
        }
        "Conversion Error" | "Invalid Input Error" => "22P02",
        "Out of Range Error" => "22003",
        "Constraint Error" => {
            if lower.contains("not null") {
                "23502"
            } else if lower.contains("foreign key") {
                "23503"
            } else if lower.contains("check constraint") {
                "23514"
            } else {
                "23505"
            }
        }
        "TransactionContext Error" => {
            if lower.contains("aborted") {
                "25P02"
            } else {
                "25000"
            }
        }
        "Permission Error" => "42501",
        "Not implemented Error" => "0A000",
        "Invalid Error" | "Invalid Type Error" | "Mismatch Type Error" => "42804",
        _ => {
            if lower.contains("division by zero") {
                "22012"
            } else {
                "XX000"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duckdb_classes_map_to_sqlstates() {
        assert_eq!(duckdb_sqlstate("Parser Error: syntax error at or near \"selec\""), "42601");
        assert_eq!(duckdb_sqlstate("Catalog Error: Table with name nope does not exist!"), "42P01");
        assert_eq!(duckdb_sqlstate("Catalog Error: Scalar Function with name foo does not exist!"), "42883");
        assert_eq!(duckdb_sqlstate("Catalog Error: Table Function with name foo does not exist!"), "42883");
        assert_eq!(duckdb_sqlstate("Catalog Error: Table with name t already exists!"), "42P07");
        let sandbox =
            Error::Engine(pond_engine::Error::InvalidRequest("Catalog Error: table x does not exist or you have no access to it".into()));
        assert_eq!(sandbox.sqlstate(), "42P01");
        assert_eq!(duckdb_sqlstate("Binder Error: Referenced column \"x\" not found in FROM clause!"), "42703");
        assert_eq!(duckdb_sqlstate("Constraint Error: Duplicate key \"id: 1\" violates primary key constraint"), "23505");
        let denied = Error::Engine(pond_engine::Error::PermissionDenied("permission denied for table t".into()));
        assert_eq!(denied.sqlstate(), "42501");
        assert_eq!(Error::Engine(pond_engine::Error::DatabaseNotFound("x".into())).sqlstate(), "3D000");
        assert_eq!(Error::Engine(pond_engine::Error::Unavailable("no ducklake".into())).sqlstate(), "55000");
    }
}
