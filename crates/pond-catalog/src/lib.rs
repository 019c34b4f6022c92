//! External catalogs: tables registered in a Hive Metastore (and, next, AWS
//! Glue and Dataproc Metastore), read by Pond's DuckDB.
//!
//! This crate owns the provider-agnostic model ([`model`]), the one trait a
//! provider implements ([`Provider`]), the Hive Metastore provider ([`hive`],
//! over the Thrift client in [`hms`]), and the framework every provider shares
//! ([`Catalog`]): metadata cache, retries, partition selection from conditions on
//! partition keys ([`predicate`]), the partition limit, and the DuckDB reader
//! query for the selected partitions' files ([`reader`]). It knows nothing of
//! sessions, grants or SQL statements: the engine decides what to read and who
//! may; this crate answers how.
//!
//! Start with [`Catalog::plan_scan`] and [`Provider`].

pub mod attach;
pub mod aws;
pub mod cache;
pub mod catalog;
#[cfg(feature = "dataproc")]
pub mod dataproc;
pub mod error;
pub mod files;
#[cfg(feature = "glue")]
pub mod glue;
pub mod hive;
pub mod hms;
pub mod model;
pub mod paths;
pub mod predicate;
pub mod provider;
pub mod reader;
use pond_rt as rt;
pub mod types;

pub use attach::AttachSpec;
pub use catalog::{Catalog, CatalogOptions, FileLister, ScanPlan, Selection};
pub use error::{Error, Result};
pub use model::{Column, Partition, Storage, Table};
pub use provider::Provider;
