//! The engine's error type and the classification protocols map to status codes.

/// What kind of failure an [`Error`] is; each protocol maps this to its own
/// status codes in one place (gRPC status, HTTP status, later SQLSTATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad SQL or bad arguments: the caller must change the request.
    InvalidArgument,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    /// Credentials are missing or no longer valid.
    Unauthenticated,
    /// Too many sessions, or another limit.
    ResourceExhausted,
    Cancelled,
    DeadlineExceeded,
    /// A prerequisite is missing (e.g. an extension that must be installed).
    FailedPrecondition,
    /// A part of the server is not available (its DuckDB extension did not
    /// load at start): clients back off and retry (HTTP 503, gRPC UNAVAILABLE).
    Unavailable,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error reported by DuckDB; the message is DuckDB's own.
    #[error("{0}")]
    DuckDb(String),
    #[error("database '{0}' does not exist (SHOW DATABASES lists them)")]
    DatabaseNotFound(String),
    #[error("database '{0}' already exists")]
    DatabaseExists(String),
    #[error("invalid database name '{name}': {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("too many sessions: the server allows {0} at once (raise --max-sessions or close idle clients)")]
    TooManySessions(usize),
    #[error("session {0} does not exist or was closed after being idle")]
    SessionNotFound(String),
    #[error("query cancelled")]
    Cancelled,
    #[error("query exceeded the timeout of {0:?} and was interrupted")]
    Timeout(std::time::Duration),
    #[error("DuckDB extension '{name}' is not installed in {dir} and could not be downloaded. Install it offline with: {command}")]
    ExtensionMissing { name: String, dir: String, command: String },
    #[error("extension installer: {0}")]
    ExtensionInstall(String),
    /// A feature that is unavailable on this server until the operator acts
    /// (time-series storage without its extension); the message names the fix.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Meta(#[from] pond_meta::Error),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The caller may not do this (grants, sandbox, superuser-only statements).
    /// The message starts with "permission denied".
    #[error("{0}")]
    PermissionDenied(String),
    /// Credentials are no longer valid (user dropped, token revoked or expired).
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// An external catalog's error; it names the catalog, the table and what failed.
    #[error(transparent)]
    Catalog(#[from] pond_catalog::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::DuckDb(msg) => classify_duckdb(msg),
            Error::DatabaseNotFound(_) | Error::SessionNotFound(_) => ErrorKind::NotFound,
            Error::DatabaseExists(_) => ErrorKind::AlreadyExists,
            Error::InvalidName { .. } | Error::InvalidRequest(_) => ErrorKind::InvalidArgument,
            Error::TooManySessions(_) => ErrorKind::ResourceExhausted,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Timeout(_) => ErrorKind::DeadlineExceeded,
            Error::ExtensionMissing { .. } => ErrorKind::FailedPrecondition,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::ExtensionInstall(_) | Error::Meta(_) | Error::Io { .. } | Error::Internal(_) => ErrorKind::Internal,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::Catalog(e) => match e {
                pond_catalog::Error::NotFound { .. } => ErrorKind::NotFound,
                pond_catalog::Error::InvalidOption(_) | pond_catalog::Error::TooManyPartitions { .. } => ErrorKind::InvalidArgument,
                pond_catalog::Error::Unsupported { .. } => ErrorKind::InvalidArgument,
                pond_catalog::Error::Storage { .. } => ErrorKind::FailedPrecondition,
                // The metastore is down or slow: clients may back off and retry.
                pond_catalog::Error::Provider { retryable: true, .. } => ErrorKind::Unavailable,
                pond_catalog::Error::Provider { .. } => ErrorKind::FailedPrecondition,
            },
        }
    }

    /// A short machine-readable code for JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Error::DuckDb(_) => match self.kind() {
                ErrorKind::InvalidArgument => "sql_error",
                ErrorKind::Internal => "engine_error",
                _ => "sql_error",
            },
            Error::DatabaseNotFound(_) => "database_not_found",
            Error::DatabaseExists(_) => "database_exists",
            Error::InvalidName { .. } => "invalid_name",
            Error::InvalidRequest(_) => "invalid_request",
            Error::TooManySessions(_) => "too_many_sessions",
            Error::SessionNotFound(_) => "session_not_found",
            Error::Cancelled => "cancelled",
            Error::Timeout(_) => "timeout",
            Error::ExtensionMissing { .. } => "extension_missing",
            Error::ExtensionInstall(_) => "extension_install_failed",
            Error::Unavailable(_) => "unavailable",
            Error::Meta(_) | Error::Io { .. } | Error::Internal(_) => "internal",
            Error::PermissionDenied(_) => "permission_denied",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::NotFound(_) => "not_found",
            Error::AlreadyExists(_) => "already_exists",
            Error::Catalog(pond_catalog::Error::NotFound { .. }) => "not_found",
            Error::Catalog(pond_catalog::Error::TooManyPartitions { .. }) => "too_many_partitions",
            Error::Catalog(pond_catalog::Error::Unsupported { .. }) => "unsupported",
            Error::Catalog(pond_catalog::Error::Provider { retryable: true, .. }) => "catalog_unavailable",
            Error::Catalog(_) => "catalog_error",
        }
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// DuckDB prefixes its messages with the error class ("Parser Error: …").
fn classify_duckdb(msg: &str) -> ErrorKind {
    let class = msg.split(':').next().unwrap_or("");
    match class {
        "INTERRUPT Error" | "Interrupt Error" => ErrorKind::Cancelled,
        "Out of Memory Error" => ErrorKind::ResourceExhausted,
        "Permission Error" => ErrorKind::PermissionDenied,
        "Internal Error" | "FATAL Error" | "Fatal Error" | "IO Error" => ErrorKind::Internal,
        _ => ErrorKind::InvalidArgument,
    }
}

impl From<duckdb::Error> for Error {
    fn from(e: duckdb::Error) -> Self {
        let msg = e.to_string();
        // A measurement view read while the lake is not attached (its extension did not load).
        if crate::lake::is_lake_missing_error(&msg) {
            return Error::Unavailable(crate::lake::lake_missing_query_message());
        }
        Error::DuckDb(msg)
    }
}

impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::InvalidRequest(format!("Arrow error: {e}"))
    }
}

impl From<pond_auth::Error> for Error {
    fn from(e: pond_auth::Error) -> Self {
        use pond_auth::Error as A;
        match e {
            A::PermissionDenied(m) => Error::PermissionDenied(format!("permission denied: {m}")),
            A::NotFound(m) => Error::NotFound(m),
            A::AlreadyExists(m) => Error::AlreadyExists(m),
            A::InvalidRequest(m) => Error::InvalidRequest(m),
            A::InvalidToken | A::InvalidCredentials | A::Jwt(_) | A::MissingCredentials => Error::Unauthenticated(e.to_string()),
            A::Meta(m) => Error::Meta(m),
            other => Error::Internal(other.to_string()),
        }
    }
}
