//! Asks a Hive Metastore what Pond would ask it, through [`pond_catalog::hms::HmsClient`].
//!
//! ```text
//! cargo run -p pond-catalog --example hms_probe -- thrift://127.0.0.1:9083 db table ["filter" ...]
//! ```
//! Prints the databases, the tables of `db`, the table's columns, partition keys,
//! location and SerDe, its partition names, and the partitions each filter selects.
//! `HMS_TRANSPORT=framed` switches the transport.

use std::error::Error;
use std::time::{Duration, Instant};

use pond_catalog::hms::{FieldSchema, HmsClient, Timeouts, Transport};

fn columns(fields: &Option<Vec<FieldSchema>>) -> String {
    let fields = fields.as_deref().unwrap_or_default();
    let cols: Vec<String> =
        fields.iter().map(|f| format!("{} {}", f.name.as_deref().unwrap_or("?"), f.type_.as_deref().unwrap_or("?"))).collect();
    cols.join(", ")
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [uri, db, table, filters @ ..] = args.as_slice() else {
        return Err("usage: hms_probe thrift://host:port db table [filter ...]".into());
    };
    let transport: Transport = std::env::var("HMS_TRANSPORT").unwrap_or_else(|_| "buffered".into()).parse()?;
    let timeouts = Timeouts { connect: Duration::from_secs(5), rpc: Duration::from_secs(60) };

    let started = Instant::now();
    let mut client = HmsClient::connect(std::slice::from_ref(uri), transport, timeouts)?;
    println!("connected to {} ({}) in {:?}", client.endpoint().unwrap_or("?"), transport.as_str(), started.elapsed());
    println!("databases: {:?}", client.all_databases()?);
    println!("tables in {db}: {:?}", client.all_tables(db)?);

    let t = client.get_table(db, table)?;
    let sd = t.sd.unwrap_or_default();
    let serde = sd.serde_info.unwrap_or_default();
    println!("table {db}.{table} ({})", t.table_type.as_deref().unwrap_or("?"));
    println!("  columns:        {}", columns(&sd.cols));
    println!("  partition keys: {}", columns(&t.partition_keys));
    println!("  location:       {}", sd.location.as_deref().unwrap_or("?"));
    println!("  input format:   {}", sd.input_format.as_deref().unwrap_or("?"));
    println!("  serde:          {} {:?}", serde.serialization_lib.as_deref().unwrap_or("?"), serde.parameters.unwrap_or_default());
    println!("  parameters:     {:?}", t.parameters.unwrap_or_default());

    let started = Instant::now();
    let names = client.partition_names(db, table)?;
    println!("partition names: {} in {:?}", names.len(), started.elapsed());
    for name in names.iter().take(10) {
        println!("  {name}");
    }
    if names.len() > 10 {
        println!("  ... ({} more)", names.len() - 10);
    }
    if let Some(first) = names.first() {
        // Prefix selection on the first key, the way Pond prunes without a metastore filter.
        let started = Instant::now();
        let first_value = first.split('/').next().and_then(|kv| kv.split_once('=')).map(|(_, v)| v.to_string());
        let prefix = client.partition_names_ps(db, table, &[first_value.clone().unwrap_or_default()])?;
        println!("  names_ps [{}]: {} names in {:?}", first_value.unwrap_or_default(), prefix.len(), started.elapsed());
        let started = Instant::now();
        let parts = client.partitions_by_names(db, table, std::slice::from_ref(first))?;
        println!("  by_names [{first}]: {} in {:?}", parts.len(), started.elapsed());
        for p in parts {
            println!(
                "  by name {first}: values {:?} at {}",
                p.values.unwrap_or_default(),
                p.sd.and_then(|s| s.location).unwrap_or_default()
            );
        }
    }

    for filter in filters {
        let started = Instant::now();
        match client.partitions_by_filter(db, table, filter) {
            Ok(parts) => {
                let values: Vec<Vec<String>> = parts.into_iter().map(|p| p.values.unwrap_or_default()).take(5).collect();
                println!("filter {filter:?}: ok in {:?}: {values:?}", started.elapsed());
            }
            Err(e) => println!("filter {filter:?}: {:?} (retryable {}): {}", e.kind, e.retryable, e.message),
        }
    }
    Ok(())
}
