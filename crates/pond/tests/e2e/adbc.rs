//! Pond's ADBC driver (`crates/pond-adbc`), loaded as the C shared library
//! `libadbc_driver_pond.so` through the `adbc_driver_manager` crate, against
//! a real server. The library is a build product of the same workspace
//! build, found next to this test binary (`target/release/`). `cargo test`
//! does not relink the cdylib: run `cargo build --release --workspace
//! --all-targets` first (scripts/test.sh does, through scripts/setup.sh).

use std::sync::Arc;
use std::time::{Duration, Instant};

use adbc_core::error::Status;
use adbc_core::options::{AdbcVersion, IngestMode, ObjectDepth, OptionConnection, OptionDatabase, OptionStatement, OptionValue};
use adbc_core::{Connection, Database, Driver, Optionable, Statement};
use adbc_driver_manager::{ManagedConnection, ManagedDatabase, ManagedDriver};
use arrow::array::{AsArray, Int64Array, RecordBatch, RecordBatchReader, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};

use crate::{TestServer, ADMIN_PASSWORD};

fn library() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/release/deps/e2e-… → target/release/libadbc_driver_pond.so
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let lib = dir.join("libadbc_driver_pond.so");
    assert!(lib.exists(), "{} is missing: build the workspace (cargo build --release --workspace --all-targets)", lib.display());
    lib
}

fn driver() -> ManagedDriver {
    ManagedDriver::load_dynamic_from_filename(library(), None, AdbcVersion::V110).expect("driver loads")
}

fn database(s: &TestServer, extra: Vec<(&str, &str)>) -> adbc_core::error::Result<ManagedDatabase> {
    let uri = format!("grpc://{}", s.server().flight_addr());
    let mut opts: Vec<(OptionDatabase, OptionValue)> = vec![
        (OptionDatabase::Uri, uri.as_str().into()),
        (OptionDatabase::Username, "admin".into()),
        (OptionDatabase::Password, ADMIN_PASSWORD.into()),
    ];
    for (k, v) in extra {
        opts.push((OptionDatabase::from(k), v.into()));
    }
    driver().new_database_with_opts(opts)
}

fn collect(r: impl RecordBatchReader) -> Vec<RecordBatch> {
    r.collect::<Result<Vec<_>, _>>().expect("stream reads")
}

fn query(c: &mut ManagedConnection, sql: &str) -> adbc_core::error::Result<Vec<RecordBatch>> {
    let mut st = c.new_statement()?;
    st.set_sql_query(sql)?;
    let r = st.execute()?;
    Ok(collect(r))
}

fn update(c: &mut ManagedConnection, sql: &str) -> adbc_core::error::Result<Option<i64>> {
    let mut st = c.new_statement()?;
    st.set_sql_query(sql)?;
    st.execute_update()
}

fn first_i64(b: &[RecordBatch]) -> i64 {
    let col = arrow::compute::cast(b.iter().find(|b| b.num_rows() > 0).expect("a row").column(0), &DataType::Int64).unwrap();
    col.as_primitive::<Int64Type>().value(0)
}

/// Runs blocking ADBC calls off the test's async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking part")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adbc_queries_stream_and_connections_have_their_own_sessions() {
    let s = TestServer::start().await;
    let db = database(&s, vec![]).unwrap();
    blocking(move || {
        let mut a = db.new_connection().unwrap();
        let mut b = db.new_connection().unwrap();
        // A result much larger than one message arrives as many batches.
        let batches = query(&mut a, "SELECT i, i::VARCHAR AS s FROM range(500000) t(i)").unwrap();
        assert!(batches.len() > 1, "streamed in several batches");
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 500_000);
        update(&mut a, "CREATE TABLE sess(x BIGINT)").unwrap();
        // Transactions are per connection: b does not see a's uncommitted row.
        a.set_option(OptionConnection::AutoCommit, "false".into()).unwrap();
        assert_eq!(update(&mut a, "INSERT INTO sess VALUES (1)").unwrap(), Some(1));
        assert_eq!(first_i64(&query(&mut b, "SELECT count(*) FROM sess").unwrap()), 0);
        a.commit().unwrap();
        assert_eq!(first_i64(&query(&mut b, "SELECT count(*) FROM sess").unwrap()), 1);
        update(&mut a, "INSERT INTO sess VALUES (2)").unwrap();
        a.rollback().unwrap();
        assert_eq!(first_i64(&query(&mut b, "SELECT count(*) FROM sess").unwrap()), 1);
        // Session state (the current schema) is per connection too.
        update(&mut b, "CREATE SCHEMA other").unwrap();
        b.set_option(OptionConnection::CurrentSchema, "other".into()).unwrap();
        assert_eq!(b.get_option_string(OptionConnection::CurrentSchema).unwrap(), "other");
        a.set_option(OptionConnection::AutoCommit, "true".into()).unwrap();
        assert_eq!(a.get_option_string(OptionConnection::CurrentSchema).unwrap(), "main");
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adbc_prepared_binding_and_bulk_ingest() {
    let s = TestServer::start().await;
    let db = database(&s, vec![("pond.compression", "zstd")]).unwrap();
    blocking(move || {
        let mut c = db.new_connection().unwrap();
        update(&mut c, "CREATE TABLE p(id BIGINT, name VARCHAR)").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)]));
        let rows = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3])), Arc::new(StringArray::from(vec![Some("x"), None, Some("z")]))],
        )
        .unwrap();
        // Prepared INSERT with three rows bound, then a stream of two batches.
        let mut ins = c.new_statement().unwrap();
        ins.set_sql_query("INSERT INTO p VALUES (?, ?)").unwrap();
        ins.prepare().unwrap();
        assert_eq!(ins.get_parameter_schema().unwrap().fields().len(), 2);
        ins.bind(rows.clone()).unwrap();
        assert_eq!(ins.execute_update().unwrap(), Some(3));
        let more = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![4])), Arc::new(StringArray::from(vec!["w"]))])
            .unwrap();
        let reader = arrow::record_batch::RecordBatchIterator::new(vec![Ok(more.clone()), Ok(more)], schema.clone());
        ins.bind_stream(Box::new(reader)).unwrap();
        assert_eq!(ins.execute_update().unwrap(), Some(2));
        // Prepared SELECT with a parameter.
        let mut sel = c.new_statement().unwrap();
        sel.set_sql_query("SELECT name FROM p WHERE id = ?").unwrap();
        sel.prepare().unwrap();
        let one = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![3]))],
        )
        .unwrap();
        sel.bind(one).unwrap();
        let got = collect(sel.execute().unwrap());
        assert_eq!(got[0].column(0).as_string::<i32>().value(0), "z");
        // execute_schema without running the query.
        let mut sch = c.new_statement().unwrap();
        sch.set_sql_query("SELECT id, name FROM p").unwrap();
        let schema_only = sch.execute_schema().unwrap();
        assert_eq!(schema_only.field(0).data_type(), &DataType::Int64);

        // Bulk ingest: create, append, replace, create_append, temporary.
        let ingest = |c: &mut ManagedConnection, mode: IngestMode, temporary: bool, batch: RecordBatch| {
            let mut st = c.new_statement().unwrap();
            st.set_option(OptionStatement::TargetTable, "loaded".into()).unwrap();
            st.set_option(OptionStatement::IngestMode, mode.into()).unwrap();
            if temporary {
                st.set_option(OptionStatement::Temporary, "true".into()).unwrap();
            }
            st.bind(batch).unwrap();
            st.execute_update()
        };
        assert_eq!(ingest(&mut c, IngestMode::Create, false, rows.clone()).unwrap(), Some(3));
        let err = ingest(&mut c, IngestMode::Create, false, rows.clone()).expect_err("create fails when the table exists");
        assert_eq!(err.status, Status::AlreadyExists, "{err}");
        assert_eq!(ingest(&mut c, IngestMode::Append, false, rows.clone()).unwrap(), Some(3));
        assert_eq!(first_i64(&query(&mut c, "SELECT count(*) FROM loaded").unwrap()), 6);
        assert_eq!(ingest(&mut c, IngestMode::Replace, false, rows.clone()).unwrap(), Some(3));
        assert_eq!(ingest(&mut c, IngestMode::CreateAppend, false, rows.clone()).unwrap(), Some(3));
        assert_eq!(first_i64(&query(&mut c, "SELECT count(*) FROM loaded").unwrap()), 6);
        assert_eq!(ingest(&mut c, IngestMode::Create, true, rows.clone()).unwrap(), Some(3));
        assert_eq!(first_i64(&query(&mut c, "SELECT count(*) FROM temp.main.loaded").unwrap()), 3);
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adbc_errors_keep_the_server_message_and_status() {
    let s = TestServer::start().await;
    let uri = format!("grpc://{}", s.server().flight_addr());
    let db = database(&s, vec![]).unwrap();
    blocking(move || {
        // Wrong password: Unauthenticated, SQLSTATE 28000, no password in the message.
        let bad = driver()
            .new_database_with_opts(vec![
                (OptionDatabase::Uri, uri.as_str().into()),
                (OptionDatabase::Username, "admin".into()),
                (OptionDatabase::Password, "not-the-password".into()),
            ])
            .unwrap();
        let Err(err) = bad.new_connection() else { panic!("a wrong password was accepted") };
        assert_eq!(err.status, Status::Unauthenticated, "{err}");
        assert_eq!(err.sqlstate.iter().map(|c| *c as u8 as char).collect::<String>(), "28000");
        assert!(!err.message.contains("not-the-password"));

        let mut c = db.new_connection().unwrap();
        let err = query(&mut c, "SELEC 1").expect_err("syntax error");
        assert_eq!(err.status, Status::InvalidArguments, "{err}");
        assert!(err.message.contains("syntax error"), "DuckDB's message intact: {}", err.message);
        let err = query(&mut c, "SELECT * FROM no_such_table").expect_err("missing table");
        assert!(err.message.contains("no_such_table"), "{}", err.message);

        // An error after rows were sent reaches the caller from the stream.
        let mut st = c.new_statement().unwrap();
        st.set_sql_query("SELECT CASE WHEN i < 900000 THEN i ELSE error('boom at ' || i) END AS v FROM range(1000000) t(i)").unwrap();
        let outcome = st.execute().map(|r| r.collect::<Result<Vec<_>, _>>());
        let msg = match outcome {
            Err(e) => e.message,
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(_)) => panic!("the error was lost"),
        };
        assert!(msg.contains("boom at"), "{msg}");
        // The connection is still usable.
        assert_eq!(first_i64(&query(&mut c, "SELECT 7").unwrap()), 7);
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adbc_cancel_from_another_thread_stops_the_query() {
    let s = TestServer::start().await;
    let db = database(&s, vec![]).unwrap();
    blocking(move || {
        let mut c = db.new_connection().unwrap();
        let mut st = c.new_statement().unwrap();
        st.set_sql_query("SELECT sum(a.i * b.i) FROM range(100000000) a(i), range(1000) b(i)").unwrap();
        let handle = st.get_cancel_handle();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            handle.try_cancel().expect("cancel call")
        });
        let start = Instant::now();
        let res = st.execute().map(|r| r.collect::<Result<Vec<_>, _>>());
        canceller.join().unwrap();
        let elapsed = start.elapsed();
        match res {
            Err(e) => assert_eq!(e.status, Status::Cancelled, "{e}"),
            Ok(Err(e)) => assert!(e.to_string().to_lowercase().contains("cancel") || e.to_string().contains("nterrupt"), "{e}"),
            Ok(Ok(_)) => panic!("the query finished instead of being cancelled"),
        }
        assert!(elapsed < Duration::from_secs(10), "cancel took {elapsed:?}");
        // The server stopped the statement: the session answers at once.
        let t = Instant::now();
        assert_eq!(first_i64(&query(&mut c, "SELECT 1").unwrap()), 1);
        assert!(t.elapsed() < Duration::from_secs(5), "the session was still busy: {:?}", t.elapsed());
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adbc_metadata_objects_table_schema_statistics_info() {
    let s = TestServer::start().await;
    let db = database(&s, vec![]).unwrap();
    blocking(move || {
        let mut c = db.new_connection().unwrap();
        update(&mut c, "CREATE TABLE a_b(x INTEGER NOT NULL, y DECIMAL(12,3))").unwrap();
        update(&mut c, "CREATE TABLE axb(z VARCHAR)").unwrap();
        update(&mut c, "INSERT INTO a_b SELECT i, i FROM range(42) t(i)").unwrap();
        update(&mut c, "CREATE VIEW v_ab AS SELECT x FROM a_b").unwrap();

        // Exact names: a_b is not a LIKE pattern matching axb.
        let schema = c.get_table_schema(None, Some("main"), "a_b").unwrap();
        assert_eq!(schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), vec!["x", "y"]);
        assert_eq!(schema.field(1).data_type(), &DataType::Decimal128(12, 3));
        let err = c.get_table_schema(None, None, "a%").expect_err("no table named a%");
        assert_eq!(err.status, Status::NotFound);

        let objects = |c: &ManagedConnection, depth: ObjectDepth, table: Option<&str>, column: Option<&str>| {
            let r = c.get_objects(depth, None, Some("main"), table, None, column).unwrap();
            let batches = collect(r);
            arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string()
        };
        let all = objects(&c, ObjectDepth::All, Some("a\\_b"), None);
        assert!(all.contains("a_b") && !all.contains("axb"), "{all}");
        assert!(all.contains("DECIMAL(12,3)") && all.contains("x"), "{all}");
        let cols = objects(&c, ObjectDepth::Columns, Some("a_b"), Some("y"));
        assert!(cols.contains("y") && !cols.contains("column_name: x"), "{cols}");
        let tables = objects(&c, ObjectDepth::Tables, Some("%"), None);
        assert!(tables.contains("axb") && tables.contains("v_ab") && tables.contains("VIEW"), "{tables}");
        let catalogs = collect(c.get_objects(ObjectDepth::Catalogs, None, None, None, None, None).unwrap());
        assert!(catalogs.iter().map(|b| b.num_rows()).sum::<usize>() >= 1);
        let views = objects(&c, ObjectDepth::Tables, None, None);
        assert!(views.contains("BASE TABLE"), "{views}");

        let types = collect(c.get_table_types().unwrap());
        let types: Vec<String> = types[0].column(0).as_string::<i32>().iter().flatten().map(str::to_string).collect();
        assert!(types.contains(&"BASE TABLE".to_string()) && types.contains(&"VIEW".to_string()), "{types:?}");

        let stats = collect(c.get_statistics(None, None, Some("a_b"), true).unwrap());
        let text = arrow::util::pretty::pretty_format_batches(&stats).unwrap().to_string();
        assert!(text.contains("a_b") && text.contains("42"), "{text}");
        assert_eq!(collect(c.get_statistic_names().unwrap()).iter().map(|b| b.num_rows()).sum::<usize>(), 0);

        let info = collect(c.get_info(None).unwrap());
        let text = arrow::util::pretty::pretty_format_batches(&info).unwrap().to_string();
        assert!(text.contains("Pond") && text.contains("ADBC Pond Driver"), "{text}");
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adbc_partitions_database_option_and_many_cycles() {
    let s = TestServer::start().await;
    let db = database(&s, vec![]).unwrap();
    let uri = format!("grpc://{}", s.server().flight_addr());
    blocking(move || {
        let mut c = db.new_connection().unwrap();
        update(&mut c, "CREATE DATABASE sales").unwrap_or_default();
        let mut st = c.new_statement().unwrap();
        st.set_sql_query("SELECT 5 AS five").unwrap();
        let parts = st.execute_partitions().unwrap();
        assert_eq!(parts.partitions.len(), 1);
        let batches = collect(c.read_partition(&parts.partitions[0]).unwrap());
        assert_eq!(first_i64(&batches), 5);

        // pond.database selects the database per call.
        let sales = driver()
            .new_database_with_opts(vec![
                (OptionDatabase::Uri, uri.as_str().into()),
                (OptionDatabase::Username, "admin".into()),
                (OptionDatabase::Password, ADMIN_PASSWORD.into()),
                (OptionDatabase::from("pond.database"), "sales".into()),
            ])
            .unwrap();
        let mut sc = sales.new_connection().unwrap();
        let cur = query(&mut sc, "SELECT current_database()").unwrap();
        assert_eq!(cur[0].column(0).as_string::<i32>().value(0), "sales");
        assert_eq!(sc.get_option_string(OptionConnection::CurrentCatalog).unwrap(), "sales");

        // Load the library, connect, query, close: many times in one process.
        for i in 0..200 {
            let db = driver()
                .new_database_with_opts(vec![
                    (OptionDatabase::Uri, uri.as_str().into()),
                    (OptionDatabase::Username, "admin".into()),
                    (OptionDatabase::Password, ADMIN_PASSWORD.into()),
                ])
                .unwrap();
            let mut c = db.new_connection().unwrap();
            assert_eq!(first_i64(&query(&mut c, &format!("SELECT {i}")).unwrap()), i);
        }
    })
    .await;
    s.stop().await;
}
