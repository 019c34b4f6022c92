/// What can go wrong with a link. Messages name the source as `host:port/db`
/// and never carry its password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The statement or its options are wrong.
    #[error("{0}")]
    Invalid(String),
    /// The source refused or could not be reached.
    #[error("{0}")]
    Source(String),
    /// DuckDB failed while copying or applying.
    #[error("{0}")]
    Duck(String),
    /// A change the link cannot apply (e.g. a column type changed on the source).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<duckdb::Error> for Error {
    fn from(e: duckdb::Error) -> Self {
        Error::Duck(e.to_string())
    }
}
