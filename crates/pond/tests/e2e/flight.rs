use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
use futures::TryStreamExt;
use std::sync::Arc;
use tonic::Code;

use crate::{column_strings, query, rows, TestServer, ADMIN_PASSWORD};

fn code(e: &impl std::fmt::Display) -> String {
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handshake_returns_bearer_and_rejects_wrong_password() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    assert_eq!(column_strings(&query(&mut c, "SELECT 41 + 1").await.unwrap(), 0), vec!["42"]);
    let err = s.flight_as("admin", "wrong").await.expect_err("wrong password is rejected");
    assert!(code(&err).contains("Unauthenticated") || code(&err).contains("invalid user name or password"), "{err}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ddl_and_dml_run_without_doget() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    // GetFlightInfo only: the statement must take effect even though the result is never fetched.
    c.execute("CREATE TABLE eager(a INTEGER)".into(), None).await.unwrap();
    c.execute("INSERT INTO eager VALUES (1), (2), (3)".into(), None).await.unwrap();
    let n = c.execute_update("INSERT INTO eager VALUES (4), (5)".into(), None).await.unwrap();
    assert_eq!(n, 2);
    let mut other = s.flight().await;
    assert_eq!(column_strings(&query(&mut other, "SELECT count(*) FROM eager").await.unwrap(), 0), vec!["5"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prepared_statements_bind_one_and_many_rows() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    query(&mut c, "CREATE TABLE p(id BIGINT, name VARCHAR)").await.unwrap();
    let mut ins = c.prepare("INSERT INTO p VALUES (?, ?)".into(), None).await.unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false), Field::new("b", DataType::Utf8, true)]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(vec![1, 2, 3])), Arc::new(StringArray::from(vec![Some("x"), None, Some("z")]))],
    )
    .unwrap();
    ins.set_parameters(batch).unwrap();
    assert_eq!(ins.execute_update().await.unwrap(), 3);
    ins.close().await.unwrap();

    let mut sel = c.prepare("SELECT name FROM p WHERE id = ?".into(), None).await.unwrap();
    let one = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![3]))],
    )
    .unwrap();
    sel.set_parameters(one).unwrap();
    let info = sel.execute().await.unwrap();
    let mut got = Vec::new();
    for ep in info.endpoint {
        let b: Vec<RecordBatch> = c.do_get(ep.ticket.unwrap()).await.unwrap().try_collect().await.unwrap();
        got.extend(b);
    }
    assert_eq!(column_strings(&got, 0), vec!["z"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_commit_and_roll_back() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    query(&mut c, "CREATE TABLE t(a INTEGER)").await.unwrap();
    let txn = c.begin_transaction().await.unwrap();
    c.execute_update("INSERT INTO t VALUES (1)".into(), Some(txn.clone())).await.unwrap();
    let mut other = s.flight().await;
    assert_eq!(column_strings(&query(&mut other, "SELECT count(*) FROM t").await.unwrap(), 0), vec!["0"], "uncommitted rows are invisible");
    c.end_transaction(txn, arrow_flight::sql::EndTransaction::Rollback).await.unwrap();
    assert_eq!(column_strings(&query(&mut c, "SELECT count(*) FROM t").await.unwrap(), 0), vec!["0"]);
    let txn = c.begin_transaction().await.unwrap();
    c.execute_update("INSERT INTO t VALUES (2)".into(), Some(txn.clone())).await.unwrap();
    c.end_transaction(txn, arrow_flight::sql::EndTransaction::Commit).await.unwrap();
    assert_eq!(column_strings(&query(&mut other, "SELECT sum(a) FROM t").await.unwrap(), 0), vec!["2"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_keep_their_own_state() {
    let s = TestServer::start().await;
    let mut a = s.flight().await;
    let mut b = s.flight().await;
    query(&mut a, "CREATE TEMP TABLE mine AS SELECT 1 AS x").await.unwrap();
    query(&mut a, "CREATE DATABASE other").await.unwrap();
    query(&mut a, "USE other").await.unwrap();
    assert_eq!(column_strings(&query(&mut a, "SELECT current_database()").await.unwrap(), 0), vec!["other"]);
    assert_eq!(column_strings(&query(&mut b, "SELECT current_database()").await.unwrap(), 0), vec!["default"]);
    assert!(query(&mut b, "SELECT * FROM mine").await.is_err(), "temp tables are per session");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_lists_databases_tables_and_sql_info() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    query(&mut c, "CREATE DATABASE sales").await.unwrap();
    query(&mut c, "CREATE TABLE sales.main.orders(id INTEGER PRIMARY KEY, amount DECIMAL(10,2))").await.unwrap();
    query(&mut c, "USE sales").await.unwrap();
    query(&mut c, "CREATE TABLE items(order_id INTEGER REFERENCES orders(id), sku VARCHAR)").await.unwrap();

    let info = c.get_catalogs().await.unwrap();
    let cats: Vec<RecordBatch> = c.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap().try_collect().await.unwrap();
    let names = column_strings(&cats, 0);
    assert!(names.contains(&"sales".to_string()) && names.contains(&"default".to_string()), "{names:?}");
    assert!(!names.contains(&"memory".to_string()) && !names.contains(&"system".to_string()));

    let info = c.get_db_schemas(CommandGetDbSchemas { catalog: Some("sales".into()), db_schema_filter_pattern: None }).await.unwrap();
    let schemas: Vec<RecordBatch> = c.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap().try_collect().await.unwrap();
    assert_eq!(column_strings(&schemas, 1), vec!["main"]);

    let info = c
        .get_tables(CommandGetTables {
            catalog: Some("sales".into()),
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("ord%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables: Vec<RecordBatch> = c.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap().try_collect().await.unwrap();
    assert_eq!(column_strings(&tables, 2), vec!["orders"]);
    let schema_bytes = tables[0].column(4).as_any().downcast_ref::<arrow::array::BinaryArray>().unwrap().value(0).to_vec();
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(&schema_bytes).unwrap();
    assert_eq!(schema.field(1).data_type(), &DataType::Decimal128(10, 2));
    assert_eq!(schema.field(1).metadata().get("ARROW:FLIGHT:SQL:TABLE_NAME").map(String::as_str), Some("orders"));

    let info = c
        .get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys {
            catalog: Some("sales".into()),
            db_schema: None,
            table: "orders".into(),
        })
        .await
        .unwrap();
    let pk: Vec<RecordBatch> = c.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap().try_collect().await.unwrap();
    assert_eq!(column_strings(&pk, 3), vec!["id"]);

    let info = c
        .get_imported_keys(arrow_flight::sql::CommandGetImportedKeys {
            catalog: Some("sales".into()),
            db_schema: None,
            table: "items".into(),
        })
        .await
        .unwrap();
    let fk: Vec<RecordBatch> = c.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap().try_collect().await.unwrap();
    assert_eq!(column_strings(&fk, 2), vec!["orders"]);
    assert_eq!(column_strings(&fk, 7), vec!["order_id"]);

    let info = c.get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::FlightSqlServerTransaction]).await.unwrap();
    let si: Vec<RecordBatch> = c.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap().try_collect().await.unwrap();
    assert_eq!(rows(&si), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_results_stream_in_coalesced_messages() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    let batches = query(&mut c, "SELECT i, i::VARCHAR AS s FROM range(1000000) t(i)").await.unwrap();
    assert_eq!(rows(&batches), 1_000_000);
    // DuckDB produces 2,048-row chunks; Pond coalesces them into far fewer batches.
    assert!(batches.len() < 100, "expected coalesced batches, got {}", batches.len());
    let sum: i64 = batches.iter().map(|b| arrow::compute::sum(b.column(0).as_any().downcast_ref::<Int64Array>().unwrap()).unwrap()).sum();
    assert_eq!(sum, 999_999 * 1_000_000 / 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_map_to_grpc_codes_with_duckdb_message() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    let e = query(&mut c, "SELEC 1").await.unwrap_err().to_string();
    assert!(e.contains("Parser Error") && e.contains(Code::InvalidArgument.description()), "{e}");
    let e = query(&mut c, "SELECT * FROM no_such_table").await.unwrap_err().to_string();
    assert!(e.contains("no_such_table"), "{e}");
    let e = query(&mut c, "USE nowhere").await.unwrap_err().to_string();
    assert!(e.contains("database 'nowhere' does not exist") && e.contains(Code::NotFound.description()), "{e}");
    // The session still works after errors.
    assert_eq!(column_strings(&query(&mut c, "SELECT 1").await.unwrap(), 0), vec!["1"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_timeout_interrupts_duckdb() {
    let s = TestServer::start_with(|b| b.query_timeout(Some(Duration::from_millis(300)))).await;
    let mut c = s.flight().await;
    let started = Instant::now();
    let e = query(&mut c, "SELECT count(*) FROM range(100000000000)").await.unwrap_err().to_string();
    assert!(e.contains("timeout") && e.contains(Code::DeadlineExceeded.description()), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20), "interrupted promptly");
    assert_eq!(column_strings(&query(&mut c, "SELECT 7").await.unwrap(), 0), vec!["7"], "session usable after a timeout");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_disconnect_mid_stream_stops_query_and_server_keeps_serving() {
    let s = TestServer::start().await;
    {
        let mut c = s.flight().await;
        let info = c.execute("SELECT i, repeat('x', 100) FROM range(50000000) t(i)".into(), None).await.unwrap();
        let mut stream = c.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap();
        let first = stream.try_next().await.unwrap();
        assert!(first.is_some());
        // Dropping the stream and the client closes the HTTP/2 stream mid-result.
    }
    let mut other = s.flight().await;
    assert_eq!(column_strings(&query(&mut other, "SELECT 'still here'").await.unwrap(), 0), vec!["still here"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_sessions_is_enforced() {
    let s = TestServer::start_with(|b| b.max_sessions(2)).await;
    // An HTTP request's finished session is kept for the caller's next request,
    // but gives its slot to a new session.
    let r = reqwest::Client::new()
        .post(s.http_url("/api/v1/query"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&serde_json::json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    r.bytes().await.unwrap();
    let _a = s.flight().await;
    let _b = s.flight().await;
    let e = s.flight_as("admin", ADMIN_PASSWORD).await.expect_err("third session refused").to_string();
    assert!(e.contains("too many sessions"), "{e}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_ingest_creates_and_appends() {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use arrow_flight::sql::CommandStatementIngest;
    use arrow_flight::sql::{TableDefinitionOptions, TableExistsOption, TableNotExistOption};
    let s = TestServer::start().await;
    let mut c: FlightSqlServiceClient<_> = s.flight().await;
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("v", DataType::Utf8, true)]));
    let batch =
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(StringArray::from(vec!["a", "b"]))]).unwrap();
    let cmd = |if_not_exist: TableNotExistOption, if_exists: TableExistsOption| CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions { if_not_exist: if_not_exist as i32, if_exists: if_exists as i32 }),
        table: "ingested".into(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    };
    let n = c
        .execute_ingest(cmd(TableNotExistOption::Create, TableExistsOption::Fail), futures::stream::iter(vec![Ok(batch.clone())]))
        .await
        .unwrap();
    assert_eq!(n, 2);
    let again =
        c.execute_ingest(cmd(TableNotExistOption::Create, TableExistsOption::Fail), futures::stream::iter(vec![Ok(batch.clone())])).await;
    assert!(again.is_err(), "create mode fails when the table exists");
    c.execute_ingest(cmd(TableNotExistOption::Fail, TableExistsOption::Append), futures::stream::iter(vec![Ok(batch.clone())]))
        .await
        .unwrap();
    assert_eq!(column_strings(&query(&mut c, "SELECT count(*), count(DISTINCT v) FROM ingested").await.unwrap(), 0), vec!["4"]);
    c.execute_ingest(cmd(TableNotExistOption::Create, TableExistsOption::Replace), futures::stream::iter(vec![Ok(batch.clone())]))
        .await
        .unwrap();
    assert_eq!(column_strings(&query(&mut c, "SELECT count(*) FROM ingested").await.unwrap(), 0), vec!["2"]);
    // A stream that breaks after two good batches (an undecodable message):
    // the call fails and none of its rows are loaded.
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use prost::Message;
    let descriptor = arrow_flight::FlightDescriptor::new_cmd(
        arrow_flight::sql::ProstMessageExt::as_any(&cmd(TableNotExistOption::Fail, TableExistsOption::Append)).encode_to_vec(),
    );
    let mut messages: Vec<arrow_flight::FlightData> = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter(vec![Ok(batch.clone()), Ok(batch)]))
        .try_collect()
        .await
        .unwrap();
    messages.push(arrow_flight::FlightData { data_header: bytes::Bytes::from_static(b"not a flatbuffer"), ..Default::default() });
    let broken = match c.do_put(futures::stream::iter(messages)).await {
        Ok(mut results) => results.message().await.map(|_| ()),
        Err(e) => Err(tonic::Status::internal(e.to_string())),
    };
    assert!(broken.is_err(), "a broken stream is an error");
    assert_eq!(column_strings(&query(&mut c, "SELECT count(*) FROM ingested").await.unwrap(), 0), vec!["2"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_the_call_interrupts_duckdb() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    // The client gives up on a query that would run for minutes.
    let slow = c.execute("SELECT count(*) FROM range(1000000000000) a".into(), None);
    assert!(tokio::time::timeout(Duration::from_millis(500), slow).await.is_err());
    // The same session runs its next statement at once: DuckDB was interrupted,
    // not left running with the session's connection.
    let started = Instant::now();
    assert_eq!(column_strings(&query(&mut c, "SELECT 'next'").await.unwrap(), 0), vec!["next"]);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_sessions_are_closed() {
    let s = TestServer::start_with(|b| b.idle_timeout(Duration::from_millis(200))).await;
    let mut c = s.flight().await;
    query(&mut c, "CREATE TEMP TABLE scratch AS SELECT 1 AS x").await.unwrap();
    assert_eq!(s.server().engine().session_count(), 1);
    crate::eventually(|| s.server().engine().session_count() == 0, "idle session to close").await;
    // The token still authenticates; a fresh session has none of the old state.
    let e = query(&mut c, "SELECT * FROM scratch").await.unwrap_err().to_string();
    assert!(e.contains("scratch"), "{e}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_commit_ends_the_transaction() {
    let s = TestServer::start().await;
    let mut a = s.flight().await;
    let mut b = s.flight().await;
    query(&mut a, "CREATE TABLE acct(id INTEGER PRIMARY KEY, v INTEGER)").await.unwrap();
    let ta = a.begin_transaction().await.unwrap();
    let tb = b.begin_transaction().await.unwrap();
    a.execute_update("INSERT INTO acct VALUES (2, 1)".into(), Some(ta.clone())).await.unwrap();
    b.execute_update("INSERT INTO acct VALUES (2, 2)".into(), Some(tb.clone())).await.unwrap();
    a.end_transaction(ta, arrow_flight::sql::EndTransaction::Commit).await.unwrap();
    // DuckDB finds the duplicate key when b commits, fails the COMMIT and rolls b back.
    let e = b.end_transaction(tb, arrow_flight::sql::EndTransaction::Commit).await.unwrap_err().to_string();
    assert!(e.contains("duplicate key"), "{e}");
    // b's session knows it is out of the transaction and can begin a new one.
    let again = b.begin_transaction().await.expect("a new transaction after the failed commit");
    b.end_transaction(again, arrow_flight::sql::EndTransaction::Rollback).await.unwrap();
    assert_eq!(column_strings(&query(&mut b, "SELECT v FROM acct").await.unwrap(), 0), vec!["1"]);
    s.stop().await;
}

/// Fetches every endpoint of a prepared statement's FlightInfo; returns the
/// FlightInfo's schema, the stream's schema and the batches.
async fn run_prepared(
    c: &mut arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
    p: &mut arrow_flight::sql::client::PreparedStatement<tonic::transport::Channel>,
) -> (Schema, Schema, Vec<RecordBatch>) {
    let info = p.execute().await.unwrap();
    let announced = info.clone().try_decode_schema().unwrap();
    let mut streamed = None;
    let mut batches = Vec::new();
    for ep in info.endpoint {
        let mut stream = c.do_get(ep.ticket.unwrap()).await.unwrap();
        while let Some(b) = stream.try_next().await.unwrap() {
            batches.push(b);
        }
        streamed = stream.schema().map(|s| s.as_ref().clone());
    }
    (announced, streamed.expect("the stream has a schema"), batches)
}

/// Issue 18: CreatePreparedStatement answers with the result schema the stream
/// will have (names, types, nullability) and with typed parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prepared_statements_describe_result_and_parameters_up_front() {
    use arrow::array::Int32Array;
    use arrow::datatypes::TimeUnit;
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    for sql in [
        "CREATE TABLE orders(id INTEGER, customer VARCHAR, amount DECIMAL(10,2), placed TIMESTAMP)",
        "CREATE TABLE customers(name VARCHAR, since DATE)",
        "INSERT INTO orders VALUES (1, 'ann', 12.50, TIMESTAMP '2024-01-02 03:04:05'), (2, 'bob', 7.25, NULL)",
        "INSERT INTO customers VALUES ('ann', DATE '2020-01-01'), ('bob', NULL)",
    ] {
        query(&mut c, sql).await.unwrap();
    }
    let sql = "SELECT o.id, o.customer, o.amount, o.placed, c.since, o.amount * 2 AS doubled \
               FROM orders o JOIN customers c ON c.name = o.customer WHERE o.id = ? AND c.name = ?";
    let mut p = c.prepare(sql.into(), None).await.unwrap();
    let described = p.dataset_schema().unwrap().clone();
    let types: Vec<(&str, &DataType)> = described.fields().iter().map(|f| (f.name().as_str(), f.data_type())).collect();
    assert_eq!(
        types[..5],
        [
            ("id", &DataType::Int32),
            ("customer", &DataType::Utf8),
            ("amount", &DataType::Decimal128(10, 2)),
            ("placed", &DataType::Timestamp(TimeUnit::Microsecond, None)),
            ("since", &DataType::Date32),
        ]
    );
    assert_eq!(types[5].0, "doubled");
    let params = p.parameter_schema().unwrap().clone();
    let params: Vec<(&str, &DataType)> = params.fields().iter().map(|f| (f.name().as_str(), f.data_type())).collect();
    assert_eq!(params, [("$1", &DataType::Int32), ("$2", &DataType::Utf8)]);

    // Executing afterwards works, and the stream has exactly the described schema.
    let bind = |id: i32, name: &str| {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("$1", DataType::Int32, true), Field::new("$2", DataType::Utf8, true)])),
            vec![Arc::new(Int32Array::from(vec![id])), Arc::new(StringArray::from(vec![name]))],
        )
        .unwrap()
    };
    p.set_parameters(bind(1, "ann")).unwrap();
    let (announced, streamed, batches) = run_prepared(&mut c, &mut p).await;
    assert_eq!(announced, described);
    assert_eq!(streamed, described);
    assert_eq!(column_strings(&batches, 1), vec!["ann"]);
    assert_eq!(column_strings(&batches, 2), vec!["12.50"]);
    // An empty result has the same schema.
    p.set_parameters(bind(99, "nobody")).unwrap();
    let (announced, streamed, batches) = run_prepared(&mut c, &mut p).await;
    assert_eq!((announced, streamed, rows(&batches)), (described.clone(), described, 0));
    p.close().await.unwrap();

    // Without parameters: a schema, an empty parameter schema.
    let mut p = c.prepare("SELECT count(*) AS n, max(amount) AS top, list(customer) AS who FROM orders".into(), None).await.unwrap();
    let described = p.dataset_schema().unwrap().clone();
    assert_eq!(described.field(0).data_type(), &DataType::Int64);
    assert_eq!(described.field(1).data_type(), &DataType::Decimal128(10, 2));
    assert!(matches!(described.field(2).data_type(), DataType::List(_)), "{described:?}");
    assert!(p.parameter_schema().unwrap().fields().is_empty());
    let (announced, streamed, batches) = run_prepared(&mut c, &mut p).await;
    assert_eq!((&announced, &streamed), (&described, &described));
    assert_eq!(column_strings(&batches, 0), vec!["2"]);

    // A parameter DuckDB cannot type before a value is bound stays Null, and
    // the result is not promised (DuckDB binds again once the value comes).
    let p = c.prepare("SELECT ? IS NULL AS missing".into(), None).await.unwrap();
    assert_eq!(p.parameter_schema().unwrap().field(0).data_type(), &DataType::Null);
    assert!(p.dataset_schema().unwrap().fields().is_empty());

    // DML: its result (the row count) is described too.
    let mut p = c.prepare("INSERT INTO orders (id, customer) VALUES (?, ?)".into(), None).await.unwrap();
    let described = p.dataset_schema().unwrap().clone();
    p.set_parameters(bind(3, "cy")).unwrap();
    let (announced, streamed, _) = run_prepared(&mut c, &mut p).await;
    assert_eq!((&announced, &streamed), (&described, &described));

    // The describing connection follows the session: its database and settings.
    query(&mut c, "CREATE DATABASE other").await.unwrap();
    query(&mut c, "CREATE TABLE other.main.orders(code VARCHAR)").await.unwrap();
    query(&mut c, "USE other").await.unwrap();
    let p = c.prepare("SELECT * FROM orders".into(), None).await.unwrap();
    assert_eq!(p.dataset_schema().unwrap().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["code"]);
    query(&mut c, "SET TimeZone = 'America/New_York'").await.unwrap();
    let mut p = c.prepare("SELECT TIMESTAMPTZ '2024-01-01 00:00:00+00' AS at".into(), None).await.unwrap();
    let described = p.dataset_schema().unwrap().clone();
    assert_eq!(described.field(0).data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("America/New_York".into())));
    let (announced, streamed, _) = run_prepared(&mut c, &mut p).await;
    assert_eq!((&announced, &streamed), (&described, &described));

    // Pond's own statements keep an empty schema up front.
    let p = c.prepare("SHOW DATABASES".into(), None).await.unwrap();
    assert!(p.dataset_schema().unwrap().fields().is_empty());
    s.stop().await;
}

/// Issue 18: a user without a grant learns nothing at prepare time: the
/// statement is refused there, before DuckDB describes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prepared_statements_are_authorized_before_they_are_described() {
    let s = TestServer::start().await;
    let mut admin = s.flight().await;
    for sql in [
        "CREATE DATABASE vault",
        "CREATE TABLE vault.main.gold(secret_col INTEGER, owner VARCHAR)",
        "CREATE USER dora PASSWORD 'dora-pw-1234'",
    ] {
        query(&mut admin, sql).await.unwrap();
    }
    let mut dora = s.flight_as("dora", "dora-pw-1234").await.unwrap();
    for sql in ["SELECT * FROM vault.main.gold", "SELECT * FROM vault.main.gold WHERE secret_col = ?"] {
        let e = dora.prepare(sql.into(), None).await.expect_err("refused at prepare time");
        assert!(e.to_string().contains("permission denied"), "{sql}: {e}");
        assert!(!e.to_string().contains("secret_col"), "{e}");
    }
    query(&mut admin, "GRANT READ ON DATABASE vault TO dora").await.unwrap();
    let p = dora.prepare("SELECT * FROM vault.main.gold WHERE secret_col = ?".into(), None).await.unwrap();
    let names: Vec<&str> = p.dataset_schema().unwrap().fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["secret_col", "owner"]);
    assert_eq!(p.parameter_schema().unwrap().field(0).data_type(), &DataType::Int32);
    s.stop().await;
}
