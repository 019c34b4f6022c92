//! Time-series ingest over HTTP (InfluxDB v1/v2/v3 and Arc line-protocol
//! endpoints), read back over Flight SQL; grants; write-ahead-log replay.

use std::io::Write;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{column_strings, query, TestServer, ADMIN_PASSWORD};

async fn post(s: &TestServer, path: &str, auth: (&str, &str), body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let r = reqwest::Client::new().post(s.http_url(path)).basic_auth(auth.0, Some(auth.1)).body(body).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

const ADMIN: (&str, &str) = ("admin", ADMIN_PASSWORD);

async fn sql(s: &TestServer, text: &str) -> Vec<String> {
    let mut c = s.flight().await;
    let b = query(&mut c, text).await.unwrap_or_else(|e| panic!("{text}: {e}"));
    (0..b.first().map(|b| b.num_columns()).unwrap_or(0)).map(|i| column_strings(&b, i).join(",")).collect()
}

#[tokio::test]
async fn v1_write_creates_database_and_keeps_nanoseconds_exact() {
    let s = TestServer::start().await;
    let body = "cpu,host=a value=1.5,n=3i,ok=true,msg=\"hi \\\"there\\\"\" 1700000000123456789\n\
                cpu,host=b value=2 -1\n\
                # comment\n\
                cpu value=3 1700000000000000001\n";
    let (status, b) = post(&s, "/write?db=metrics", ADMIN, body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{b}");
    let cols = sql(&s, "SELECT epoch_ns(time), host, value, n, ok, msg FROM metrics.main.cpu ORDER BY time").await;
    assert_eq!(cols[0], "-1,1700000000000000001,1700000000123456789");
    assert_eq!(cols[1], "b,NULL,a");
    assert_eq!(cols[2], "2.0,3.0,1.5");
    assert_eq!(cols[3], "NULL,NULL,3");
    assert_eq!(cols[4], "NULL,NULL,true");
    assert_eq!(cols[5], "NULL,NULL,hi \"there\"");
    let types = sql(&s, "SELECT column_name || ' ' || data_type FROM duckdb_columns() WHERE database_name = 'metrics' AND schema_name = 'main' AND table_name = 'cpu' ORDER BY column_index").await;
    assert_eq!(types[0], "time TIMESTAMP_NS,host VARCHAR,value DOUBLE,n BIGINT,ok BOOLEAN,msg VARCHAR");
    s.stop().await;
}

#[tokio::test]
async fn precisions_and_endpoints() {
    let s = TestServer::start().await;
    assert_eq!(post(&s, "/write?db=p&precision=s", ADMIN, "m v=1 2").await.0, StatusCode::NO_CONTENT);
    assert_eq!(post(&s, "/api/v2/write?org=x&bucket=p&precision=ms", ADMIN, "m v=2 3").await.0, StatusCode::NO_CONTENT);
    assert_eq!(post(&s, "/api/v3/write_lp?db=p&precision=auto", ADMIN, "m v=3 1700000000").await.0, StatusCode::NO_CONTENT);
    let r = reqwest::Client::new()
        .post(s.http_url("/api/v1/write/line-protocol"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("x-arc-database", "p")
        .body("m v=4 5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // gzip by Content-Encoding, zstd-free magic detection is covered by unit tests.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"m v=5 6").unwrap();
    let r = reqwest::Client::new()
        .post(s.http_url(&format!("/write?db=p&u=admin&p={ADMIN_PASSWORD}")))
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "?u=&p= credentials and gzip");
    let cols = sql(&s, "SELECT epoch_ns(time), v FROM p.main.m ORDER BY v").await;
    assert_eq!(cols[0], "2000000000,3000000,1700000000000000000,5,6");
    assert_eq!(post(&s, "/write?db=p&precision=weeks", ADMIN, "m v=1").await.0, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn partial_writes_keep_good_lines_and_report_bad_ones() {
    let s = TestServer::start().await;
    let body = "m,h=a v=1 1\nm,h= v=2 2\nm v=1i 3\nm v=4 4\nm v=1,v=2 5\n";
    let (status, b) = post(&s, "/api/v3/write_lp?db=pw", ADMIN, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "partial write of line protocol occurred");
    let data = b["data"].as_array().unwrap();
    let nums: Vec<u64> = data.iter().map(|d| d["line_number"].as_u64().unwrap()).collect();
    assert_eq!(nums, vec![2, 3, 5], "{b}");
    assert_eq!(data[0]["original_line"], "m,h= v=2 2");
    assert!(data[0]["error_message"].as_str().unwrap().contains("empty value for tag 'h'"));
    assert!(data[1]["error_message"].as_str().unwrap().contains("integer"), "{b}");
    assert!(data[2]["error_message"].as_str().unwrap().contains("duplicate field 'v'"));
    assert_eq!(sql(&s, "SELECT count(*) FROM pw.main.m").await[0], "2");
    // A type conflict with the stored table is an error for that line only.
    let (status, b) = post(&s, "/write?db=pw", ADMIN, "m v=\"text\" 10\nm,h=z w=1u 12").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["data"][0]["line_number"], 1);
    assert!(b["data"][0]["error_message"].as_str().unwrap().contains("DOUBLE"), "{b}");
    // Within one request the first line decides a new field's type.
    let (status, b) = post(&s, "/write?db=pw", ADMIN, "m v=5 11\nm v=\"x\" 13").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["data"][0]["line_number"], 2);
    assert!(b["data"][0]["error_message"].as_str().unwrap().contains("earlier line"), "{b}");
    assert_eq!(sql(&s, "SELECT count(*), count(w) FROM pw.main.m").await, vec!["4", "1"]);
    // accept_partial=false writes nothing.
    let (status, _) = post(&s, "/api/v3/write_lp?db=pw&accept_partial=false", ADMIN, "m v=7 20\nbad").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(sql(&s, "SELECT count(*) FROM pw.main.m").await[0], "4");
    s.stop().await;
}

#[tokio::test]
async fn grants_decide_who_writes() {
    let s = TestServer::start().await;
    post(&s, "/write?db=g", ADMIN, "cpu v=1 1").await;
    let mut c = s.flight().await;
    query(&mut c, "CREATE USER bob PASSWORD 'bob-pw-1234'").await.unwrap();
    let bob = ("bob", "bob-pw-1234");
    let (status, b) = post(&s, "/write?db=g", bob, "cpu v=2 2").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{b}");
    let (status, _) = post(&s, "/write?db=g", ("bob", "wrong"), "cpu v=2 2").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // INSERT on the table allows writing to it, not creating other measurements.
    query(&mut c, "GRANT INSERT ON TABLE g.main.cpu TO bob").await.unwrap();
    assert_eq!(post(&s, "/write?db=g", bob, "cpu v=2 2").await.0, StatusCode::NO_CONTENT);
    // …and not adding columns: a new tag or field changes the table (WRITE).
    for new_column in ["cpu v=3,temp=1 3", "cpu,host=a v=3 3"] {
        let (status, b) = post(&s, "/write?db=g", bob, new_column).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{new_column}: {b}");
        assert!(b["error"].as_str().unwrap().contains("WRITE on the database to add column"), "{b}");
    }
    let (status, b) = post(&s, "/write?db=g", bob, "mem v=2 2").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{b}");
    assert!(b["error"].as_str().unwrap().contains("WRITE on the database"), "{b}");
    query(&mut c, "GRANT WRITE ON DATABASE g TO bob").await.unwrap();
    assert_eq!(post(&s, "/write?db=g", bob, "mem v=2 2").await.0, StatusCode::NO_CONTENT);
    assert_eq!(post(&s, "/write?db=g", bob, "cpu,host=a v=3,temp=1 3").await.0, StatusCode::NO_CONTENT);
    // Only superusers create databases by writing.
    let (status, b) = post(&s, "/write?db=brand_new", bob, "m v=1").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(sql(&s, "SELECT count(*) FROM g.main.cpu").await[0], "3");
    s.stop().await;
}

#[tokio::test]
async fn unknown_database_is_404_when_creation_is_off_and_query_creates_it() {
    let s = TestServer::start_with(|b| b.ingest(pond_ingest::SyncMode::Fsync, false)).await;
    let (status, b) = post(&s, "/write?db=nope", ADMIN, "m v=1").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{b}");
    let r = reqwest::Client::new()
        .post(s.http_url("/query"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .form(&[("q", "CREATE DATABASE \"nope\"")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"results": [{"statement_id": 0}]}));
    assert_eq!(post(&s, "/write?db=nope", ADMIN, "m v=1").await.0, StatusCode::NO_CONTENT);
    s.stop().await;
}

#[tokio::test]
async fn body_limit_gives_413() {
    let s = TestServer::start_with(|b| b.max_body_bytes(1000)).await;
    let body = "m v=1\n".repeat(500);
    assert_eq!(post(&s, "/write?db=big", ADMIN, body).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Decompressed size counts too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all("m v=1\n".repeat(500).as_bytes()).unwrap();
    assert_eq!(post(&s, "/write?db=big", ADMIN, gz.finish().unwrap()).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    s.stop().await;
}

/// Restarts replay the write-ahead log exactly once: records already
/// committed are skipped, a record that never reached DuckDB (a crash between
/// the log sync and the commit) is applied once.
#[tokio::test]
async fn restart_replays_the_log_exactly_once() {
    let s = TestServer::start().await;
    assert_eq!(post(&s, "/write?db=r", ADMIN, "m v=1 1\nm v=2 2").await.0, StatusCode::NO_CONTENT);
    // Into the lake (generation 1 recorded there), so a log record with
    // sequence 1 is one the lake already holds.
    assert_eq!(post(&s, "/api/v1/lake/flush", ADMIN, "").await.0, StatusCode::OK);
    // Log records name databases by file id.
    let info = s.server().engine().databases().into_iter().find(|d| d.name == "r").unwrap();
    let id = std::path::Path::new(&info.path).file_stem().unwrap().to_string_lossy().to_string();
    let dir = s.stop().await;
    let wal = dir.path().join("ingest").join("ingest.wal");
    // Simulate a crash: one record already in the lake (seq 1) and one that is not (seq 1000).
    let mut buf = Vec::new();
    pond_ingest::wal::encode(1, pond_ingest::Precision::Nanosecond, 0, &id, b"m v=1 1\nm v=2 2\n", &mut buf);
    pond_ingest::wal::encode(1000, pond_ingest::Precision::Nanosecond, 0, &id, b"m v=3 3\n", &mut buf);
    // A record of a database that was dropped since: skipped, not written anywhere.
    pond_ingest::wal::encode(1001, pond_ingest::Precision::Nanosecond, 0, "00000000000000000000000000000000", b"m v=9 9\n", &mut buf);
    buf.extend_from_slice(&[7, 0, 0]); // a torn tail
    std::fs::write(&wal, &buf).unwrap();
    for round in 0..2 {
        let server = TestServer::launch(dir.path().to_path_buf(), |b| b).await;
        let s = TestServer { server: Some(server), dir: tempfile::tempdir().unwrap() };
        let expected = if round == 0 { "123" } else { "1234" };
        assert_eq!(sql(&s, "SELECT string_agg(v::INT::VARCHAR, '' ORDER BY v) FROM r.main.m").await[0], expected, "round {round}");
        // New writes continue after the highest sequence seen.
        if round == 0 {
            assert_eq!(post(&s, "/write?db=r", ADMIN, "m v=4 4").await.0, StatusCode::NO_CONTENT);
        }
        s.stop().await;
        if round == 0 {
            let s2 =
                TestServer { server: Some(TestServer::launch(dir.path().to_path_buf(), |b| b).await), dir: tempfile::tempdir().unwrap() };
            assert_eq!(sql(&s2, "SELECT count(*) FROM r.main.m").await[0], "4");
            // Start-up flushed the replayed records into the lake: nothing is left in memory.
            let listed = reqwest::Client::new()
                .get(s2.http_url("/api/v1/measurements?database=r"))
                .basic_auth(ADMIN.0, Some(ADMIN.1))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap();
            assert_eq!(listed["measurements"][0]["buffered_rows"], 0, "{listed}");
            assert_eq!(listed["measurements"][0]["rows"], 4, "{listed}");
            s2.server.unwrap().shutdown().await.unwrap();
            // Replaying an already-applied record again must not duplicate it.
            std::fs::write(&wal, &buf).unwrap();
        }
    }
    assert!(!wal.exists(), "the old log file is deleted once its records are in the lake");
    let left: u64 = std::fs::read_dir(wal.parent().unwrap()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert_eq!(left, 0, "every log segment is empty after replay");
}

#[tokio::test]
async fn concurrent_writers_share_group_commits() {
    let s = TestServer::start().await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let url = s.http_url("/api/v3/write_lp?db=conc");
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for b in 0..10 {
                let body: String = (0..100).map(|i| format!("cpu,host=h{w} v={i} {}\n", (b * 100 + i) as i64 + w * 1_000_000)).collect();
                let r = client.post(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).body(body).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::NO_CONTENT);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(sql(&s, "SELECT count(*), count(DISTINCT (host, time)) FROM conc.main.cpu").await, vec!["8000", "8000"]);
    s.stop().await;
}

#[tokio::test]
async fn json_points_are_written_like_line_protocol() {
    let s = TestServer::start().await;
    let r = reqwest::Client::new()
        .post(s.http_url("/api/v1/write/json"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("x-arc-database", "js")
        .body(
            r#"[{"measurement": "cpu", "tags": {"host": "a"}, "fields": {"value": 0.25, "n": 7}, "time": 1700000000123456789},
                  {"measurement": "cpu", "tags": {"host": "b"}, "fields": {"value": 1}, "time": 1700000000}]"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cols = sql(&s, "SELECT epoch_ns(time), host, value, n FROM js.main.cpu ORDER BY time").await;
    assert_eq!(cols, vec!["1700000000000000000,1700000000123456789", "b,a", "1.0,0.25", "NULL,7.0"]);
    let (status, b) = post(&s, "/api/v1/write/json?db=js", ADMIN, r#"[{"measurement": "cpu"}]"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["error"].as_str().unwrap().contains("point 1"), "{b}");
    s.stop().await;
}
