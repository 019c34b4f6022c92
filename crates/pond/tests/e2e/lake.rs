//! Measurements in the lake: hot rows + DuckLake + view, flush by size and on
//! demand, schema evolution across a flush, restart and replay, migration of
//! the previous design's buffer tables,
//! the measurement/flush/compact/retention endpoints, and what other users see.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{column_strings, query, TestServer, ADMIN_PASSWORD};

const ADMIN: (&str, &str) = ("admin", ADMIN_PASSWORD);

async fn call(s: &TestServer, method: reqwest::Method, path: &str, auth: (&str, &str), body: Option<String>) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new().request(method, s.http_url(path)).basic_auth(auth.0, Some(auth.1));
    if let Some(b) = body {
        r = r.body(b);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn write(s: &TestServer, db: &str, body: &str) {
    let (status, b) = call(s, reqwest::Method::POST, &format!("/write?db={db}"), ADMIN, Some(body.to_string())).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{b}");
}

async fn one(s: &TestServer, text: &str) -> String {
    let mut c = s.flight().await;
    let b = query(&mut c, text).await.unwrap_or_else(|e| panic!("{text}: {e}"));
    column_strings(&b, 0).join(",")
}

fn parquet_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") && p.to_string_lossy().contains("/cpu/") {
                n += 1;
            }
        }
    }
    n
}

fn small_flush(b: pond::ServerBuilder) -> pond::ServerBuilder {
    b.lake(5, Duration::from_secs(3600), None, Duration::ZERO)
}

#[tokio::test]
async fn rows_flush_to_parquet_and_every_row_is_seen_once() {
    let s = TestServer::start_with(small_flush).await;
    let lake_dir = s.dir.path().join("lake");
    // 3 rows: below the flush threshold, buffered only.
    write(&s, "lk", "cpu,host=a v=1 1\ncpu,host=a v=2 2\ncpu,host=b v=3 3").await;
    assert_eq!(parquet_files(&lake_dir), 0);
    assert_eq!(one(&s, "SELECT count(*) FROM lk.cpu").await, "3");
    // 3 more: past 5 rows, the writer flushes after the commit.
    write(&s, "lk", "cpu,host=a v=4 4\ncpu,host=b v=5 5\ncpu,host=c v=6 1700000000123456789").await;
    let mut waited = 0;
    while parquet_files(&lake_dir) == 0 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    assert!(parquet_files(&lake_dir) >= 1, "a flush wrote a Parquet file");
    assert_eq!(one(&s, "SELECT count(*) FROM lk.cpu").await, "6");
    assert_eq!(one(&s, "SELECT sum(v)::INT FROM lk.cpu").await, "21");
    assert_eq!(one(&s, "SELECT max(epoch_ns(time)) FROM lk.cpu").await, "1700000000123456789");
    // Schema evolution after a flush: a new field shows up for new rows only.
    write(&s, "lk", "cpu,host=d v=7,temp=1.5 8").await;
    assert_eq!(one(&s, "SELECT string_agg(coalesce(temp::VARCHAR, '-'), '' ORDER BY time) FROM lk.cpu").await, "-----1.5-");
    // On-demand flush, then the listing counts lake rows and files.
    let (status, b) = call(&s, reqwest::Method::POST, "/api/v1/lake/flush?db=lk", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    // 1 row, or 4 when the threshold flush above ran while the second write
    // was in the hot store but not yet applied (a flush takes rows up to the
    // writer's applied sequence; the 3 left behind stay below the threshold).
    let flushed = b["flushed"][0]["rows"].as_u64().unwrap_or(0);
    assert!(flushed == 1 || flushed == 4, "{b}");
    assert_eq!(one(&s, "SELECT string_agg(coalesce(temp::VARCHAR, '-'), '' ORDER BY time) FROM lk.cpu").await, "-----1.5-");
    let (_, m) = call(&s, reqwest::Method::GET, "/api/v1/measurements?db=lk", ADMIN, None).await;
    let cpu = &m["measurements"][0];
    assert_eq!(cpu["name"], "cpu", "{m}");
    assert_eq!(cpu["rows"], 7, "{m}");
    assert_eq!(cpu["buffered_rows"], 0, "{m}");
    assert!(cpu["files"].as_u64().unwrap() >= 2 && cpu["bytes"].as_u64().unwrap() > 0, "{m}");
    // Joins with ordinary tables and the current-database form work.
    let mut c = s.flight().await;
    query(&mut c, "CREATE TABLE lk.main.hosts AS SELECT 'a' AS host, 'rack1' AS rack").await.unwrap();
    assert_eq!(one(&s, "SELECT count(*) FROM lk.cpu JOIN lk.hosts USING (host)").await, "3");
    // Restart: the buffer still holds the rows of the last flush (hidden); none is counted twice.
    let dir = s.stop().await;
    let s = TestServer { server: Some(TestServer::launch(dir.path().to_path_buf(), small_flush).await), dir };
    assert_eq!(one(&s, "SELECT count(*) FROM lk.cpu").await, "7");
    assert_eq!(one(&s, "SELECT sum(v)::INT FROM lk.cpu").await, "28");
    write(&s, "lk", "cpu,host=e v=8 9").await;
    assert_eq!(one(&s, "SELECT count(*) FROM lk.cpu").await, "8");
    // Compaction merges files and keeps every row.
    let (status, b) = call(&s, reqwest::Method::POST, "/api/v1/lake/compact?db=lk", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(one(&s, "SELECT count(*) FROM lk.cpu").await, "8");
    assert_eq!(one(&s, "SELECT sum(v)::INT FROM lk.cpu").await, "36");
    s.stop().await;
}

#[tokio::test]
async fn retention_deletes_old_rows_in_lake_and_buffer() {
    let s = TestServer::start_with(small_flush).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let old = now - 3 * 86_400 * 1_000_000_000;
    write(&s, "ret", &format!("cpu v=1 {old}\ncpu v=2 {old}\ncpu v=3 {now}\nmem v=1 {old}")).await;
    // Rows in the lake and in the buffer: flush some, add more old ones.
    call(&s, reqwest::Method::POST, "/api/v1/lake/flush?db=ret", ADMIN, None).await;
    write(&s, "ret", &format!("cpu v=4 {old}")).await;
    let (status, b) = call(
        &s,
        reqwest::Method::PUT,
        "/api/v1/lake/retention",
        ADMIN,
        Some(json!({"database": "ret", "measurement": "cpu", "seconds": 86400}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{b}");
    let (status, b) =
        call(&s, reqwest::Method::PUT, "/api/v1/lake/retention", ADMIN, Some(json!({"database": "ret", "seconds": -5}).to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    let (status, b) = call(&s, reqwest::Method::POST, "/api/v1/lake/compact?db=ret", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["compacted"][0]["retention_rows_deleted"], 3, "{b}");
    assert_eq!(one(&s, "SELECT string_agg(v::INT::VARCHAR, '') FROM ret.cpu").await, "3");
    // mem has no limit.
    assert_eq!(one(&s, "SELECT count(*) FROM ret.mem").await, "1");
    let (_, m) = call(&s, reqwest::Method::GET, "/api/v1/measurements?db=ret", ADMIN, None).await;
    assert_eq!(m["measurements"][0]["retention_seconds"], 86400, "{m}");
    s.stop().await;
}

#[tokio::test]
async fn users_see_measurements_not_lakes_or_buffers() {
    let s = TestServer::start_with(small_flush).await;
    write(&s, "a", "cpu,host=x v=1 1\nmem v=2 2").await;
    write(&s, "b", "cpu,host=y v=9 1").await;
    call(&s, reqwest::Method::POST, "/api/v1/lake/flush", ADMIN, None).await;
    write(&s, "a", "cpu,host=x v=3 3").await;
    let mut admin = s.flight().await;
    query(&mut admin, "CREATE USER reader PASSWORD 'reader-pw-1'").await.unwrap();
    query(&mut admin, "GRANT READ ON DATABASE a TO reader").await.unwrap();
    query(&mut admin, "CREATE USER one PASSWORD 'one-pw-1234'").await.unwrap();
    query(&mut admin, "GRANT SELECT ON TABLE a.main.cpu TO one").await.unwrap();
    let b_id = s.server().engine().database_file_id("b").unwrap();
    let a_id = s.server().engine().database_file_id("a").unwrap();
    let mut r = s.flight_as("reader", "reader-pw-1").await.unwrap();
    assert_eq!(column_strings(&query(&mut r, "SELECT count(*) FROM a.cpu").await.unwrap(), 0), vec!["2"]);
    for denied in [
        "SELECT * FROM b.cpu".to_string(),
        "SELECT * FROM b._pond_buffer.cpu".to_string(),
        "SELECT * FROM a._pond_buffer.cpu".to_string(),
        format!("SELECT * FROM __pond_lake.\"{b_id}\".cpu"),
        format!("SELECT * FROM __pond_lake.\"{a_id}\".cpu"),
        "CREATE TABLE a._pond_buffer.x (i INT)".to_string(),
    ] {
        assert!(query(&mut r, &denied).await.is_err(), "{denied} must fail");
    }
    // A user-made view with other text gets no exemption: it is checked inside.
    query(&mut admin, &format!("CREATE VIEW a.main.sneaky AS SELECT * FROM __pond_lake.\"{b_id}\".cpu")).await.unwrap();
    assert!(query(&mut r, "SELECT * FROM a.sneaky").await.is_err());
    // Listings never show the buffer schema or the lakes.
    for listing in [
        "SELECT count(*) FROM duckdb_schemas() WHERE schema_name = '_pond_buffer'",
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = '_pond_buffer'",
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = '_pond_buffer'",
        "SELECT count(*) FROM duckdb_databases() WHERE database_name LIKE '%lake%'",
        "SELECT count(*) FROM information_schema.schemata WHERE catalog_name LIKE '%lake%'",
    ] {
        assert_eq!(column_strings(&query(&mut r, listing).await.unwrap(), 0), vec!["0"], "{listing}");
    }
    // A table grant on one measurement reads it, not another.
    let mut o = s.flight_as("one", "one-pw-1234").await.unwrap();
    assert_eq!(column_strings(&query(&mut o, "SELECT sum(v)::INT FROM a.main.cpu").await.unwrap(), 0), vec!["4"]);
    assert!(query(&mut o, "SELECT * FROM a.main.mem").await.is_err());
    let (_, m) = call(&s, reqwest::Method::GET, "/api/v1/measurements", ("one", "one-pw-1234"), None).await;
    let names: Vec<String> = m["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| format!("{}.{}", x["database"].as_str().unwrap(), x["name"].as_str().unwrap()))
        .collect();
    assert_eq!(names, vec!["a.cpu"], "{m}");
    // Triggers need WRITE on the database.
    let (status, _) = call(&s, reqwest::Method::POST, "/api/v1/lake/flush?db=a", ("reader", "reader-pw-1"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&s, reqwest::Method::POST, "/api/v1/lake/compact", ("reader", "reader-pw-1"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Dropping a database drops its lake schema: a new one of the same name starts empty.
    query(&mut admin, "DROP DATABASE b").await.unwrap();
    write(&s, "b", "cpu,host=z v=1 1").await;
    assert_eq!(one(&s, "SELECT count(*) FROM b.cpu").await, "1");
    s.stop().await;
}

/// A data dir of the previous design (unflushed rows in native tables
/// `<db>._pond_buffer.<m>`, the last applied log sequence in
/// `main._pond_ingest_wal`) is migrated at start: rows the lake does not hold
/// move into it once, the old objects go, the views read lake + hot rows, and
/// new writes continue above the old sequence.
#[tokio::test]
async fn buffer_tables_of_the_previous_design_move_into_the_lake_once() {
    let s = TestServer::start().await;
    write(&s, "old", "cpu,host=a v=1 1").await;
    let (status, b) = call(&s, reqwest::Method::POST, "/api/v1/lake/flush?db=old", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let info = s.server().engine().databases().into_iter().find(|d| d.name == "old").unwrap();
    let dir = s.stop().await;
    {
        let c = duckdb::Connection::open(&info.path).unwrap();
        c.execute_batch(
            "CREATE SCHEMA _pond_buffer; \
             CREATE TABLE _pond_buffer.cpu (time TIMESTAMP_NS NOT NULL, host VARCHAR, v DOUBLE, _pond_gen UBIGINT NOT NULL); \
             INSERT INTO _pond_buffer.cpu VALUES ('1970-01-01 00:00:00.000000001'::TIMESTAMP_NS, 'a', 1, 1), \
               ('1970-01-01 00:00:00.000000002'::TIMESTAMP_NS, 'b', 2, 5), ('1970-01-01 00:00:00.000000003'::TIMESTAMP_NS, 'c', 3, 6); \
             CREATE TABLE _pond_buffer.mem (time TIMESTAMP_NS NOT NULL, free BIGINT, _pond_gen UBIGINT NOT NULL); \
             INSERT INTO _pond_buffer.mem VALUES ('1970-01-01 00:00:00.000000004'::TIMESTAMP_NS, 7, 6); \
             CREATE TABLE main._pond_ingest_wal (seq UBIGINT NOT NULL); INSERT INTO main._pond_ingest_wal VALUES (7); \
             CREATE OR REPLACE VIEW main.cpu AS SELECT * FROM _pond_buffer.cpu",
        )
        .unwrap();
    }
    let s = TestServer { server: Some(TestServer::launch(dir.path().to_path_buf(), |b| b).await), dir };
    // Row `a` (generation 1) was already in the lake: not copied again.
    assert_eq!(one(&s, "SELECT string_agg(host, '' ORDER BY time) FROM old.cpu").await, "abc");
    assert_eq!(one(&s, "SELECT sum(free) FROM old.mem").await, "7");
    assert_eq!(
        one(
            &s,
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'old' AND schema_name <> 'main' OR table_name = '_pond_ingest_wal'"
        )
        .await,
        "0"
    );
    write(&s, "old", "cpu,host=d v=4 4").await;
    let (status, b) = call(&s, reqwest::Method::POST, "/api/v1/lake/flush?db=old", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert!(b["flushed"][0]["generation"].as_u64().unwrap() > 7, "{b}");
    let dir = s.stop().await;
    let s = TestServer { server: Some(TestServer::launch(dir.path().to_path_buf(), |b| b).await), dir };
    assert_eq!(one(&s, "SELECT string_agg(host, '' ORDER BY time) FROM old.cpu").await, "abcd");
    s.stop().await;
}

#[tokio::test]
async fn a_data_dir_moved_elsewhere_keeps_its_measurements() {
    let s = TestServer::start().await;
    write(&s, "mv", "cpu,host=a v=1 1\ncpu,host=b v=2 2").await;
    let (status, b) = call(&s, reqwest::Method::POST, "/api/v1/lake/flush?db=mv", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    write(&s, "mv", "cpu,host=c v=3 3").await;
    let dir = s.stop().await;
    // A restore to another path: DuckLake recorded the old data path.
    let moved = tempfile::tempdir().unwrap();
    let target = moved.path().join("restored");
    std::fs::rename(dir.path(), &target).unwrap_or_else(|_| {
        let status = std::process::Command::new("cp").arg("-a").arg(dir.path()).arg(&target).status().unwrap();
        assert!(status.success());
    });
    let s = TestServer { server: Some(TestServer::launch(target.clone(), |b| b).await), dir: moved };
    assert_eq!(one(&s, "SELECT string_agg(host, '' ORDER BY time) FROM mv.cpu").await, "abc");
    write(&s, "mv", "cpu,host=d v=4 4").await;
    let (status, b) = call(&s, reqwest::Method::POST, "/api/v1/lake/flush?db=mv", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(one(&s, "SELECT sum(v)::INT FROM mv.cpu").await, "10");
    let files = parquet_files(&target.join("lake"));
    assert!(files >= 2, "new files land under the new data dir ({files})");
    s.stop().await;
}

/// Issue 12: without the ducklake extension Pond still starts; writes, the lake
/// endpoints and measurement queries answer 503 / UNAVAILABLE / SQLSTATE 55000
/// naming the extension (never 500), the write-ahead log is kept as it is, and
/// a restart with the extension finds every acknowledged row and none refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_ducklake_is_unavailable_and_loses_nothing() {
    let s = TestServer::start().await;
    write(&s, "nolake", "cpu,host=a v=1 1\ncpu,host=b v=2 2").await;
    let dir = s.stop().await;

    // The same data dir with an extension dir that has icu only; the log still holds the write.
    let ext = tempfile::tempdir().unwrap();
    let icu = pond_engine::extensions::extension_path(ext.path(), "icu");
    std::fs::create_dir_all(icu.parent().unwrap()).unwrap();
    std::fs::copy(pond_engine::extensions::extension_path(&crate::extension_dir(), "icu"), &icu).unwrap();
    let ext_path = ext.path().to_path_buf();
    let s = TestServer { server: Some(TestServer::launch(dir.path().to_path_buf(), |b| b.extension_dir(ext_path)).await), dir };
    let command = format!("pond extensions install --extension-dir {} ducklake", ext.path().display());

    let r = reqwest::Client::new()
        .post(s.http_url("/write?db=nolake"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body("cpu,host=c v=3 3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some());
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["code"], "unavailable", "{b}");
    assert!(b["error"].as_str().unwrap().contains(&command), "{b}");
    for (method, path) in [(reqwest::Method::GET, "/api/v1/measurements"), (reqwest::Method::POST, "/api/v1/lake/flush?db=nolake")] {
        let (status, b) = call(&s, method, path, ADMIN, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {b}");
        assert!(b["error"].as_str().unwrap().contains(&command), "{path}: {b}");
    }
    // A measurement query over every protocol: unavailable, naming ducklake.
    let body = json!({"sql": "SELECT count(*) FROM nolake.cpu"}).to_string();
    let (status, b) = call(&s, reqwest::Method::POST, "/api/v1/query", ADMIN, Some(body)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert!(b["error"].as_str().unwrap().contains("extension ducklake did not load"), "{b}");
    let mut c = s.flight().await;
    let e = query(&mut c, "SELECT count(*) FROM nolake.cpu").await.unwrap_err().to_string();
    assert!(e.contains("ducklake") && e.contains(tonic::Code::Unavailable.description()), "{e}");
    let pg = s.pg_as("admin", ADMIN_PASSWORD, "nolake").await.unwrap();
    let e = pg.simple_query("SELECT count(*) FROM cpu").await.unwrap_err();
    assert_eq!(e.code(), Some(&tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE), "{e:?}");
    // Everything else works.
    assert_eq!(one(&s, "SELECT 41 + 1").await, "42");
    let dir = s.stop().await;

    // With ducklake again: the acknowledged write is replayed from the kept log, the refused one never was.
    let s = TestServer { server: Some(TestServer::launch(dir.path().to_path_buf(), |b| b).await), dir };
    assert_eq!(one(&s, "SELECT string_agg(host, ',' ORDER BY host) FROM nolake.cpu").await, "a,b");
    s.stop().await;
}
