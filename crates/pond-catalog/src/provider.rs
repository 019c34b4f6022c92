//! The one trait every external catalog implements (Hive Metastore now; Glue
//! and Dataproc next). The framework ([`crate::Catalog`]) adds caching,
//! retries, partition selection and limits on top, so a provider only
//! translates calls and structures.

use crate::aws::StorageAccess;
use crate::error::Result;
use crate::model::{Partition, Table};
use crate::predicate::Dialect;

/// One external catalog service. Calls block (the engine calls them from
/// worker threads) and must give up within the provider's configured timeout.
pub trait Provider: Send + Sync {
    /// `hive`, `glue`, …
    fn kind(&self) -> &'static str;
    /// Where it talks to, for diagnostics (never with credentials).
    fn endpoint(&self) -> String;
    /// The language of [`Provider::partitions_by_filter`]'s filter.
    fn filter_dialect(&self) -> Dialect {
        Dialect::Hive
    }
    fn namespaces(&self) -> Result<Vec<String>>;
    fn tables(&self, namespace: &str) -> Result<Vec<String>>;
    fn table(&self, namespace: &str, table: &str) -> Result<Table>;
    /// Every partition of the table.
    fn partitions(&self, table: &Table) -> Result<Vec<Partition>>;
    /// Partitions matching a filter in the service's own language (for Hive:
    /// `get_partitions_by_filter`). `Ok(None)`: the service cannot evaluate
    /// this filter; the framework then filters names locally.
    fn partitions_by_filter(&self, table: &Table, filter: &str) -> Result<Option<Vec<Partition>>>;
    /// Every partition's name (`k1=v1/k2=v2`), if the service lists names
    /// more cheaply than whole partitions; `Ok(None)` otherwise.
    fn partition_names(&self, table: &Table) -> Result<Option<Vec<String>>>;
    /// The names of the partitions whose leading keys have exactly these
    /// values (for Hive: `get_partition_names_ps`); `Ok(None)` if the service
    /// has no such call.
    fn partition_names_with_prefix(&self, table: &Table, values: &[String]) -> Result<Option<Vec<String>>>;
    /// Whether partitions known by value are best fetched by name
    /// ([`Provider::partitions_by_names`]) before anything else (Glue's
    /// `BatchGetPartition`); Hive lists names by prefix first.
    fn prefers_point_lookups(&self) -> bool {
        false
    }
    /// The partitions of these names.
    fn partitions_by_names(&self, table: &Table, names: &[String]) -> Result<Vec<Partition>>;
    /// Credentials for reading the tables' files, when the catalog carries
    /// its own (Glue: the catalog's AWS credentials). `Ok(None)`: the storage
    /// layer uses Pond's storage secrets as they are (Hive).
    fn storage_access(&self) -> Result<Option<StorageAccess>> {
        Ok(None)
    }
}
