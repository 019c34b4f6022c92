//! The engine: one embedded DuckDB instance holding every Pond database, the
//! sessions clients run statements in, and Pond's own SQL statements.
//!
//! It owns everything that is the same whatever protocol a client speaks:
//! databases (create, drop, rename, list; one DuckDB file each, all attached so
//! cross-database joins work), sessions (own connection, transactions, prepared
//! statements, cancellation, timeouts, limits), result streaming as Arrow record
//! batches, bulk ingest and metrics, and the check of every statement against
//! the caller's grants (the sandbox, `sandbox.rs`) before DuckDB sees it. Protocol crates translate their wire format
//! to calls on [`Engine`] and [`Session`]; they hold no business logic.
//!
//! Start with [`Engine::open`], [`Engine::open_session`] and [`Session::query`].

pub mod backup;
mod catalog_views;
pub mod config;
mod describe;
pub mod engine;
pub mod error;
pub mod extensions;
pub mod external;
pub mod introspect;
mod jobs;
pub mod lake;
mod links;
pub mod metrics;
pub mod params;
mod parser;
mod qcache;
mod sandbox;
mod secrets;
pub mod session;
mod shape;
pub mod sql;
mod timetravel;

pub use backup::{BackupCatalog, BackupService, BackupSummary};
pub use config::{EngineConfig, PostgresCatalog, S3Config};
pub use engine::{DatabaseInfo, Engine, ReusableSession, AUDIT_CATALOG, DEFAULT_DATABASE};
pub use error::{Error, ErrorKind, Result};
pub use jobs::{LineWriteError, LineWriter};
pub use lake::LAKE_DATA_PATH_MARKER;
pub use metrics::Metrics;
pub use pond_qcache::Stats as QueryCacheStats;
pub use session::{IngestMessage, IngestMode, IngestRequest, PreparedInfo, QueryStream, Session};
