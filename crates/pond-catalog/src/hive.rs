//! The Hive Metastore provider: [`Provider`] over the Thrift client in
//! [`crate::hms`], translating the metastore's structures into the model.
//!
//! Connections are pooled (one per concurrent call, reused), opened on first
//! use with failover across the configured URIs, and dropped after any
//! transport error so the next call reconnects.

use std::collections::BTreeMap;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::hms::{self, HmsClient};
use crate::model::{Column, Partition, Storage, Table};
use crate::provider::Provider;

pub use crate::hms::Transport;

/// How to reach the metastore.
#[derive(Debug, Clone)]
pub struct HiveConfig {
    /// `thrift://host:port`, tried in order.
    pub uris: Vec<String>,
    pub transport: Transport,
    /// Bound on connecting and on each call.
    pub timeout: Duration,
}

pub struct HiveProvider {
    catalog: String,
    config: HiveConfig,
    pool: Mutex<Vec<HmsClient>>,
}

/// Idle connections kept per catalog.
const POOL_SIZE: usize = 4;

impl HiveProvider {
    pub fn new(catalog: &str, config: HiveConfig) -> Self {
        HiveProvider { catalog: catalog.to_string(), config, pool: Mutex::new(Vec::new()) }
    }

    /// Runs `f` on a pooled (or new) connection; a connection that failed is dropped.
    fn with<T>(
        &self,
        operation: &'static str,
        target: &str,
        f: impl FnOnce(&mut HmsClient) -> std::result::Result<T, hms::HmsError>,
    ) -> Result<T> {
        let pooled = self.pool.lock().pop();
        let mut client = match pooled {
            Some(c) => c,
            None => {
                let timeouts = hms::Timeouts { connect: self.config.timeout.min(Duration::from_secs(5)), rpc: self.config.timeout };
                HmsClient::connect(&self.config.uris, self.config.transport, timeouts).map_err(|e| self.error(operation, target, e))?
            }
        };
        match f(&mut client) {
            Ok(v) => {
                let mut pool = self.pool.lock();
                if pool.len() < POOL_SIZE {
                    pool.push(client);
                }
                Ok(v)
            }
            Err(e) => {
                // A metastore exception leaves the connection usable; anything else does not.
                if matches!(e.kind, hms::ErrorKind::NotFound | hms::ErrorKind::MetaException) {
                    let mut pool = self.pool.lock();
                    if pool.len() < POOL_SIZE {
                        pool.push(client);
                    }
                }
                Err(self.error(operation, target, e))
            }
        }
    }

    fn error(&self, operation: &'static str, target: &str, e: hms::HmsError) -> Error {
        if e.kind == hms::ErrorKind::NotFound {
            return Error::NotFound { catalog: self.catalog.clone(), what: target.trim_start_matches(" for ").to_string() };
        }
        Error::Provider {
            catalog: self.catalog.clone(),
            provider: "hive metastore",
            operation,
            target: target.to_string(),
            retryable: e.retryable,
            message: e.message,
        }
    }
}

fn columns(fields: Option<Vec<hms::FieldSchema>>) -> Vec<Column> {
    fields
        .unwrap_or_default()
        .into_iter()
        .map(|f| Column {
            name: f.name.unwrap_or_default(),
            catalog_type: f.type_.unwrap_or_default(),
            comment: f.comment.filter(|c| !c.is_empty()),
        })
        .collect()
}

fn storage(sd: Option<&hms::StorageDescriptor>) -> Storage {
    let Some(sd) = sd else { return Storage::default() };
    let serde = sd.serde_info.as_ref();
    Storage {
        location: sd.location.clone().filter(|l| !l.is_empty()),
        input_format: sd.input_format.clone(),
        output_format: sd.output_format.clone(),
        serde: serde.and_then(|s| s.serialization_lib.clone()),
        serde_params: serde.and_then(|s| s.parameters.clone()).map(|p| p.into_iter().collect()).unwrap_or_default(),
    }
}

fn partition(p: hms::Partition) -> Partition {
    Partition { location: storage(p.sd.as_ref()).location, values: p.values.unwrap_or_default() }
}

impl Provider for HiveProvider {
    fn kind(&self) -> &'static str {
        "hive"
    }

    fn endpoint(&self) -> String {
        self.config.uris.join(",")
    }

    fn namespaces(&self) -> Result<Vec<String>> {
        self.with("get_all_databases", "", |c| c.all_databases())
    }

    fn tables(&self, namespace: &str) -> Result<Vec<String>> {
        self.with("get_all_tables", &format!(" for database {namespace}"), |c| c.all_tables(namespace))
    }

    fn table(&self, namespace: &str, table: &str) -> Result<Table> {
        let target = format!(" for table {namespace}.{table}");
        let t = self.with("get_table", &target, |c| c.get_table(namespace, table))?;
        let sd = t.sd.as_ref();
        let params: BTreeMap<String, String> = t.parameters.clone().map(|p| p.into_iter().collect()).unwrap_or_default();
        Ok(Table {
            namespace: t.db_name.clone().unwrap_or_else(|| namespace.to_string()),
            name: t.table_name.clone().unwrap_or_else(|| table.to_string()),
            columns: columns(sd.and_then(|s| s.cols.clone())),
            partition_keys: columns(t.partition_keys.clone()),
            storage: storage(sd),
            params,
            table_type: t.table_type.clone().unwrap_or_default(),
        })
    }

    fn partitions(&self, table: &Table) -> Result<Vec<Partition>> {
        let target = format!(" for table {}", table.qualified());
        let parts = self.with("get_partitions", &target, |c| c.partitions(&table.namespace, &table.name))?;
        Ok(parts.into_iter().map(partition).collect())
    }

    fn partitions_by_filter(&self, table: &Table, filter: &str) -> Result<Option<Vec<Partition>>> {
        let target = format!(" for table {}", table.qualified());
        match self.with("get_partitions_by_filter", &target, |c| c.partitions_by_filter(&table.namespace, &table.name, filter)) {
            Ok(parts) => Ok(Some(parts.into_iter().map(partition).collect())),
            // The metastore refused the filter (e.g. a key type its filter cannot compare).
            Err(Error::Provider { retryable: false, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn partition_names(&self, table: &Table) -> Result<Option<Vec<String>>> {
        let target = format!(" for table {}", table.qualified());
        self.with("get_partition_names", &target, |c| c.partition_names(&table.namespace, &table.name)).map(Some)
    }

    fn partition_names_with_prefix(&self, table: &Table, values: &[String]) -> Result<Option<Vec<String>>> {
        let target = format!(" for table {}", table.qualified());
        self.with("get_partition_names_ps", &target, |c| c.partition_names_ps(&table.namespace, &table.name, values)).map(Some)
    }

    fn partitions_by_names(&self, table: &Table, names: &[String]) -> Result<Vec<Partition>> {
        let target = format!(" for table {}", table.qualified());
        let parts = self.with("get_partitions_by_names", &target, |c| c.partitions_by_names(&table.namespace, &table.name, names))?;
        Ok(parts.into_iter().map(partition).collect())
    }
}
