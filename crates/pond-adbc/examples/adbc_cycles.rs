//! Leak and crash harness: loads `libadbc_driver_pond.so` through the ADBC
//! driver manager and runs N load/connect/query/close cycles against a
//! running Pond. scripts/adbc_valgrind.sh runs it under valgrind.
//!
//!   adbc_cycles <path/to/libadbc_driver_pond.so> <grpc://host:port> <password> <cycles>

use adbc_core::options::{AdbcVersion, OptionDatabase, OptionValue};
use adbc_core::{Connection, Database, Driver, Statement};
use adbc_driver_manager::ManagedDriver;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, lib, uri, password, cycles] = args.as_slice() else {
        return Err("usage: adbc_cycles <library> <uri> <password> <cycles>".into());
    };
    let cycles: usize = cycles.parse()?;
    for i in 0..cycles {
        // Each cycle loads the library again (the manager dlcloses it on drop;
        // the library is linked with -z nodelete, so one copy stays mapped).
        let mut driver = ManagedDriver::load_dynamic_from_filename(lib, None, AdbcVersion::V110)?;
        let opts: Vec<(OptionDatabase, OptionValue)> = vec![
            (OptionDatabase::Uri, uri.as_str().into()),
            (OptionDatabase::Username, "admin".into()),
            (OptionDatabase::Password, password.as_str().into()),
        ];
        let db = driver.new_database_with_opts(opts)?;
        for _ in 0..if i % 10 == 0 { 1 } else { 2 } {
            let mut conn = db.new_connection()?;
            let mut st = conn.new_statement()?;
            st.set_sql_query(format!("SELECT {i} AS i, 'x' || {i} AS s"))?;
            let rows: usize = st.execute()?.map(|b| b.map(|b| b.num_rows()).unwrap_or(0)).sum();
            assert_eq!(rows, 1);
            // An error and its message must be freed too.
            st.set_sql_query("SELEC 1")?;
            assert!(st.execute().is_err());
        }
        if (i + 1) % 100 == 0 {
            eprintln!("{} cycles", i + 1);
        }
    }
    Ok(())
}
