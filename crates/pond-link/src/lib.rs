//! PostgreSQL links: `LINK DATABASE x TO POSTGRES …` copies a PostgreSQL
//! database's tables into a DuckDB database consistently, then keeps them in
//! sync by logical replication (pgoutput) or, where the source does not allow
//! it, by audit triggers. Every batch of changes is applied in one DuckDB
//! transaction that also records the source position, so a restart resumes
//! exactly where the last commit left off.
//!
//! The engine gives a link a DuckDB connection and the name of the database it
//! owns; this crate knows nothing of users, grants or protocols.

mod apply;
mod conn;
mod copy;
mod error;
mod link;
mod pgoutput;
use pond_rt as rt;
mod schema;
mod triggers;
mod types;

pub use conn::Source;
pub use error::{Error, Result};
pub use link::{Link, LinkConfig, LinkReport, Mode, State, Status, SyncReport, STATE_SCHEMA};
