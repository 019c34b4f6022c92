//! The driver's one error type, and its mapping to ADBC status codes and
//! SQLSTATEs (in one place). The server's message is kept intact; secrets
//! (passwords, tokens) never appear in messages.

use adbc_core::error::{Error as AdbcError, Status as AdbcStatus};
use tonic::Code;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a gRPC error.
    #[error("{}", .0.message())]
    Server(Box<tonic::Status>),
    /// The channel could not be opened (address, TLS, network).
    #[error("cannot connect to {uri}: {message}")]
    Connect { uri: String, message: String },
    /// A caller mistake: a bad option, a missing query, a wrong state.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    NotFound(String),
    #[error("operation cancelled")]
    Cancelled,
    #[error("{0}")]
    Timeout(String),
    #[error("invalid Arrow data: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{0}")]
    Internal(String),
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        if s.code() == Code::Cancelled && s.message().is_empty() {
            return Error::Cancelled;
        }
        // tonic's own deadline (the timeout options) ends a call this way.
        if s.code() == Code::Cancelled && s.message() == "Timeout expired" {
            return Error::Timeout(
                "the call exceeded its timeout (adbc.flight.sql.rpc.timeout_seconds.*); the server was asked to stop it".into(),
            );
        }
        Error::Server(Box::new(s))
    }
}

impl From<arrow_flight::error::FlightError> for Error {
    fn from(e: arrow_flight::error::FlightError) -> Self {
        use arrow_flight::error::FlightError as F;
        match e {
            F::Tonic(s) => (*s).into(),
            F::Arrow(a) => Error::Arrow(a),
            F::ExternalError(e) => match e.downcast::<Error>() {
                Ok(e) => *e,
                Err(e) => Error::Internal(e.to_string()),
            },
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Internal(format!("cannot decode the server's answer: {e}"))
    }
}

/// ADBC status and SQLSTATE of a gRPC code.
fn grpc_status(code: Code) -> (AdbcStatus, &'static str) {
    match code {
        Code::Ok => (AdbcStatus::Ok, "00000"),
        Code::InvalidArgument => (AdbcStatus::InvalidArguments, "42000"),
        Code::NotFound => (AdbcStatus::NotFound, "42S02"),
        Code::AlreadyExists => (AdbcStatus::AlreadyExists, "42S01"),
        Code::PermissionDenied => (AdbcStatus::Unauthorized, "42501"),
        Code::Unauthenticated => (AdbcStatus::Unauthenticated, "28000"),
        Code::ResourceExhausted => (AdbcStatus::IO, "53000"),
        Code::FailedPrecondition => (AdbcStatus::InvalidState, "55000"),
        Code::Aborted => (AdbcStatus::Integrity, "40000"),
        Code::OutOfRange => (AdbcStatus::InvalidData, "22003"),
        Code::Unimplemented => (AdbcStatus::NotImplemented, "0A000"),
        Code::Cancelled => (AdbcStatus::Cancelled, "57014"),
        Code::DeadlineExceeded => (AdbcStatus::Timeout, "HYT00"),
        Code::Unavailable => (AdbcStatus::IO, "08006"),
        Code::DataLoss => (AdbcStatus::IO, "08S01"),
        Code::Internal | Code::Unknown => (AdbcStatus::Internal, "XX000"),
    }
}

/// DuckDB's messages name the kind of error first ("Constraint Error: …",
/// "Conversion Error: …"); a few deserve a more precise status.
fn refine(status: AdbcStatus, sqlstate: &'static str, message: &str) -> (AdbcStatus, &'static str) {
    let lower = message.to_ascii_lowercase();
    if lower.contains("constraint error") || lower.contains("duplicate key") {
        (AdbcStatus::Integrity, "23000")
    } else if lower.contains("conversion error") || lower.contains("out of range") {
        (AdbcStatus::InvalidData, "22000")
    } else if lower.contains("division by zero") {
        (AdbcStatus::InvalidData, "22012")
    } else if lower.contains("parser error") || lower.contains("syntax error") {
        (AdbcStatus::InvalidArguments, "42601")
    } else if lower.contains("already exists") && matches!(status, AdbcStatus::InvalidArguments | AdbcStatus::Internal) {
        (AdbcStatus::AlreadyExists, "42P07")
    } else if lower.contains("does not exist") && matches!(status, AdbcStatus::InvalidArguments | AdbcStatus::Internal) {
        (AdbcStatus::NotFound, "42P01")
    } else if lower.contains("interrupt") && status == AdbcStatus::Internal {
        (AdbcStatus::Cancelled, "57014")
    } else {
        (status, sqlstate)
    }
}

impl Error {
    pub fn status_and_sqlstate(&self) -> (AdbcStatus, &'static str) {
        match self {
            Error::Server(s) => {
                let (st, sql) = grpc_status(s.code());
                refine(st, sql, s.message())
            }
            Error::Connect { .. } => (AdbcStatus::IO, "08001"),
            Error::InvalidArgument(_) => (AdbcStatus::InvalidArguments, "HY024"),
            Error::InvalidState(_) => (AdbcStatus::InvalidState, "HY010"),
            Error::NotImplemented(_) => (AdbcStatus::NotImplemented, "0A000"),
            Error::NotFound(_) => (AdbcStatus::NotFound, "42S02"),
            Error::Cancelled => (AdbcStatus::Cancelled, "57014"),
            Error::Timeout(_) => (AdbcStatus::Timeout, "HYT00"),
            Error::Arrow(_) => (AdbcStatus::InvalidData, "22000"),
            Error::Internal(_) => (AdbcStatus::Internal, "XX000"),
        }
    }

    /// The gRPC code number as the vendor code, for server errors.
    fn vendor_code(&self) -> i32 {
        match self {
            Error::Server(s) => s.code() as i32,
            _ => 0,
        }
    }
}

impl From<Error> for AdbcError {
    fn from(e: Error) -> Self {
        let (status, sqlstate) = e.status_and_sqlstate();
        let mut out = AdbcError::with_message_and_status(e.to_string(), status);
        out.vendor_code = e.vendor_code();
        for (i, b) in sqlstate.bytes().take(5).enumerate() {
            out.sqlstate[i] = b as std::os::raw::c_char;
        }
        out
    }
}

/// Errors inside a result stream travel as Arrow errors; keep status and
/// SQLSTATE readable in the message.
impl From<Error> for arrow_schema::ArrowError {
    fn from(e: Error) -> Self {
        match e {
            Error::Arrow(a) => a,
            other => {
                let (status, sqlstate) = other.status_and_sqlstate();
                arrow_schema::ArrowError::ExternalError(Box::new(StreamError { message: other.to_string(), status, sqlstate }))
            }
        }
    }
}

#[derive(Debug)]
pub struct StreamError {
    pub message: String,
    pub status: AdbcStatus,
    pub sqlstate: &'static str,
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (ADBC status {:?}, SQLSTATE {})", self.message, self.status, self.sqlstate)
    }
}

impl std::error::Error for StreamError {}

pub fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_message_is_kept_and_mapped() {
        let e: AdbcError = Error::from(tonic::Status::unauthenticated("invalid user name or password")).into();
        assert_eq!(e.status, AdbcStatus::Unauthenticated);
        assert_eq!(e.message, "invalid user name or password");
        let state: String = e.sqlstate.iter().map(|c| *c as u8 as char).collect();
        assert_eq!(state, "28000");
    }

    #[test]
    fn duckdb_constraint_errors_are_integrity() {
        let e = Error::from(tonic::Status::invalid_argument("Constraint Error: Duplicate key \"id: 1\""));
        assert_eq!(e.status_and_sqlstate(), (AdbcStatus::Integrity, "23000"));
    }
}
