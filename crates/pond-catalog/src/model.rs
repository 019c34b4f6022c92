//! The provider-agnostic model of an external catalog: namespaces (Hive
//! databases, Glue databases), tables with their columns, storage descriptor and
//! partition keys, and partitions (values + location).
//!
//! Providers translate their own structures into these; everything above the
//! providers (selection, caching, the reader SQL) sees only this model.

use std::collections::BTreeMap;

/// One column as the catalog declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The catalog's type text, e.g. `int`, `decimal(10,2)`, `array<struct<a:int>>`.
    pub catalog_type: String,
    pub comment: Option<String>,
}

/// Where and how a table's (or a partition's) data is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Storage {
    pub location: Option<String>,
    pub input_format: Option<String>,
    pub output_format: Option<String>,
    pub serde: Option<String>,
    pub serde_params: BTreeMap<String, String>,
}

/// A table of an external catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub namespace: String,
    pub name: String,
    pub columns: Vec<Column>,
    pub partition_keys: Vec<Column>,
    pub storage: Storage,
    /// Table properties (`TBLPROPERTIES`).
    pub params: BTreeMap<String, String>,
    /// `MANAGED_TABLE`, `EXTERNAL_TABLE`, `VIRTUAL_VIEW`, …
    pub table_type: String,
}

impl Table {
    /// `namespace.name`, as errors show it.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    pub fn is_partitioned(&self) -> bool {
        !self.partition_keys.is_empty()
    }
}

/// One partition: its key values (in partition-key order, as the catalog
/// stores them: text) and where its files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub values: Vec<String>,
    pub location: Option<String>,
}
