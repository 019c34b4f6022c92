//! The catalog crate's one error type.
//!
//! Every error names the catalog it happened in; provider errors also carry the
//! operation and whether trying again may help, so the framework retries only
//! transient failures (connection refused or reset, timeouts, throttling).

/// What went wrong in an external catalog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the catalog's service failed.
    #[error("catalog {catalog}: {provider} {operation}{target} failed: {message}")]
    Provider {
        catalog: String,
        provider: &'static str,
        operation: &'static str,
        /// ` for table db.t`, or empty.
        target: String,
        retryable: bool,
        message: String,
    },
    /// A namespace or table the catalog does not have.
    #[error("catalog {catalog}: {what} does not exist")]
    NotFound { catalog: String, what: String },
    /// A table Pond cannot read (a view, an ACID table, an unsupported format or type).
    #[error("catalog {catalog}: table {table} cannot be read: {reason}")]
    Unsupported { catalog: String, table: String, reason: String },
    /// A query would read more partitions than the catalog's MAX_PARTITIONS.
    #[error(
        "catalog {catalog}: the query would read {count} partitions of table {table}, more than MAX_PARTITIONS {max}; \
         add a condition on the partition keys ({keys})"
    )]
    TooManyPartitions { catalog: String, table: String, count: usize, max: usize, keys: String },
    /// An ATTACH option or URI that is not valid.
    #[error("{0}")]
    InvalidOption(String),
    /// Listing a partition's files failed.
    #[error("catalog {catalog}: cannot list the files of {location}: {message}")]
    Storage { catalog: String, location: String, message: String },
}

impl Error {
    /// Whether trying the same call again may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, Error::Provider { retryable: true, .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
