//! Arc's MessagePack writes over HTTP (row, columnar, batch, arrays,
//! compression, both endpoints), read back over Flight SQL; bad input;
//! replay of a logged MessagePack body; the format description.

use std::io::Write;

use reqwest::StatusCode;
use rmp::encode as enc;
use serde_json::Value;

use crate::{column_strings, query, TestServer, ADMIN_PASSWORD};

async fn post(s: &TestServer, path: &str, db: Option<&str>, headers: &[(&str, &str)], body: Vec<u8>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().post(s.http_url(path)).basic_auth("admin", Some(ADMIN_PASSWORD)).body(body);
    if let Some(db) = db {
        req = req.header("x-arc-database", db);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn sql(s: &TestServer, text: &str) -> Vec<String> {
    let mut c = s.flight().await;
    let b = query(&mut c, text).await.unwrap_or_else(|e| panic!("{text}: {e}"));
    (0..b.first().map(|b| b.num_columns()).unwrap_or(0)).map(|i| column_strings(&b, i).join(",")).collect()
}

fn st(out: &mut Vec<u8>, v: &str) {
    enc::write_str(out, v).unwrap();
}

/// `{"m": m, "columns": {"time": [...], "host": [...], "usage": [...]}}`
fn columnar(out: &mut Vec<u8>, m: &str, times: &[i64], hosts: &[&str], usage: &[f64]) {
    enc::write_map_len(out, 2).unwrap();
    st(out, "m");
    st(out, m);
    st(out, "columns");
    enc::write_map_len(out, 3).unwrap();
    st(out, "time");
    enc::write_array_len(out, times.len() as u32).unwrap();
    for t in times {
        enc::write_sint(out, *t).unwrap();
    }
    st(out, "host");
    enc::write_array_len(out, hosts.len() as u32).unwrap();
    for h in hosts {
        st(out, h);
    }
    st(out, "usage");
    enc::write_array_len(out, usage.len() as u32).unwrap();
    for u in usage {
        enc::write_f64(out, *u).unwrap();
    }
}

/// `{"m": m, "t": t, "h": h, "fields": {"usage": usage}}`
fn row(out: &mut Vec<u8>, m: &str, t: i64, h: &str, usage: f64) {
    enc::write_map_len(out, 4).unwrap();
    st(out, "m");
    st(out, m);
    st(out, "t");
    enc::write_sint(out, t).unwrap();
    st(out, "h");
    st(out, h);
    st(out, "fields");
    enc::write_map_len(out, 1).unwrap();
    st(out, "usage");
    enc::write_f64(out, usage).unwrap();
}

#[tokio::test]
async fn msgpack_formats_land_in_measurement_tables() {
    let s = TestServer::start().await;
    // Columnar with nanosecond times.
    let mut b = Vec::new();
    columnar(&mut b, "cpu", &[1_700_000_000_123_456_789, 1_700_000_000_123_456_790], &["a", "b"], &[1.5, 2.5]);
    let (status, body) = post(&s, "/api/v1/write/msgpack", Some("mp"), &[], b).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // A batch mixing a row record (ms) and a columnar item (s), gzip by magic bytes, on the v2 path.
    let mut b = Vec::new();
    enc::write_map_len(&mut b, 1).unwrap();
    st(&mut b, "batch");
    enc::write_array_len(&mut b, 2).unwrap();
    row(&mut b, "cpu", 1_700_000_001_000, "c", 3.5);
    columnar(&mut b, "cpu", &[1_700_000_002], &["d"], &[4.5]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b).unwrap();
    let (status, body) = post(&s, "/write/v2/msgpack", Some("mp"), &[], gz.finish().unwrap()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // A top-level array of row records, zstd by Content-Encoding, microseconds.
    let mut b = Vec::new();
    enc::write_array_len(&mut b, 2).unwrap();
    row(&mut b, "cpu", 1_700_000_003_000_000, "e", 5.5);
    row(&mut b, "mem", 1_700_000_004_000_000, "e", 6.5);
    let z = zstd::stream::encode_all(&b[..], 1).unwrap();
    let (status, body) = post(&s, "/api/v1/write/msgpack", Some("mp"), &[("content-encoding", "zstd")], z).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let cols = sql(&s, "SELECT epoch_ns(time), host, usage FROM mp.main.cpu ORDER BY time").await;
    assert_eq!(cols[0], "1700000000123456789,1700000000123456790,1700000001000000000,1700000002000000000,1700000003000000000");
    assert_eq!(cols[1], "a,b,c,d,e");
    assert_eq!(cols[2], "1.5,2.5,3.5,4.5,5.5");
    assert_eq!(sql(&s, "SELECT host, usage FROM mp.main.mem").await, vec!["e", "6.5"]);
    let types = sql(&s, "SELECT column_name || ' ' || data_type FROM duckdb_columns() WHERE database_name = 'mp' AND schema_name = 'main' AND table_name = 'cpu' ORDER BY column_index").await;
    assert_eq!(types[0], "time TIMESTAMP_NS,host VARCHAR,usage DOUBLE");
    // No header: the default database.
    let mut b = Vec::new();
    row(&mut b, "dflt", 1, "x", 1.0);
    assert_eq!(post(&s, "/api/v1/write/msgpack", None, &[], b).await.0, StatusCode::NO_CONTENT);
    assert_eq!(sql(&s, "SELECT count(*) FROM \"default\".main.dflt").await[0], "1");
    s.stop().await;
}

#[tokio::test]
async fn msgpack_bad_input_is_reported_and_good_records_written() {
    let s = TestServer::start().await;
    // Truncated: rejected whole, with the byte offset.
    let mut b = Vec::new();
    columnar(&mut b, "t", &[1, 2, 3], &["a", "b", "c"], &[1.0, 2.0, 3.0]);
    let (status, body) = post(&s, "/api/v1/write/msgpack", Some("bad"), &[], b[..b.len() - 4].to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("invalid MessagePack body: truncated at byte"), "{body}");
    // Not MessagePack at all.
    let (status, body) = post(&s, "/api/v1/write/msgpack", Some("bad"), &[], b"\xc1garbage".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Some bad records: the good ones are written, the bad ones listed by record number.
    let mut b = Vec::new();
    enc::write_array_len(&mut b, 4).unwrap();
    row(&mut b, "t", 1_700_000_000, "a", 1.0); // record 1
    enc::write_map_len(&mut b, 1).unwrap(); // record 2: no m
    st(&mut b, "fields");
    enc::write_map_len(&mut b, 1).unwrap();
    st(&mut b, "usage");
    enc::write_f64(&mut b, 1.0).unwrap();
    // records 3-4: length mismatch
    enc::write_map_len(&mut b, 2).unwrap();
    st(&mut b, "m");
    st(&mut b, "t");
    st(&mut b, "columns");
    enc::write_map_len(&mut b, 2).unwrap();
    st(&mut b, "usage");
    enc::write_array_len(&mut b, 2).unwrap();
    enc::write_f64(&mut b, 1.0).unwrap();
    enc::write_f64(&mut b, 2.0).unwrap();
    st(&mut b, "host");
    enc::write_array_len(&mut b, 1).unwrap();
    st(&mut b, "x");
    enc::write_str(&mut b, "not a map").unwrap(); // record 5
    let (status, body) = post(&s, "/api/v1/write/msgpack", Some("bad"), &[], b).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "partial write of MessagePack records occurred");
    assert_eq!(body["lines_written"], 1);
    let data = body["data"].as_array().unwrap();
    let nums: Vec<u64> = data.iter().map(|d| d["line_number"].as_u64().unwrap()).collect();
    assert_eq!(nums, vec![2, 3, 5], "{body}");
    assert!(data[0]["error_message"].as_str().unwrap().contains("missing 'm'"), "{body}");
    assert!(data[1]["error_message"].as_str().unwrap().contains("column 'host' has 1 values but an earlier column has 2"), "{body}");
    assert!(data[2]["error_message"].as_str().unwrap().contains("must be a map, not string"), "{body}");
    assert_eq!(sql(&s, "SELECT count(*) FROM bad.main.t").await[0], "1");
    // A type conflict with the stored table rejects those records only; the table keeps its types.
    let mut b = Vec::new();
    enc::write_map_len(&mut b, 2).unwrap();
    st(&mut b, "m");
    st(&mut b, "t");
    st(&mut b, "columns");
    enc::write_map_len(&mut b, 2).unwrap();
    st(&mut b, "time");
    enc::write_array_len(&mut b, 2).unwrap();
    enc::write_sint(&mut b, 1_700_000_010).unwrap();
    enc::write_sint(&mut b, 1_700_000_011).unwrap();
    st(&mut b, "usage");
    enc::write_array_len(&mut b, 2).unwrap();
    st(&mut b, "text");
    enc::write_nil(&mut b).unwrap();
    let (status, body) = post(&s, "/api/v1/write/msgpack", Some("bad"), &[], b).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["data"][0]["line_number"], 1, "{body}");
    assert!(body["data"][0]["error_message"].as_str().unwrap().contains("DOUBLE"), "{body}");
    assert_eq!(body["lines_written"], 1);
    let types = sql(&s, "SELECT column_name || ' ' || data_type FROM duckdb_columns() WHERE database_name = 'bad' AND schema_name = 'main' AND table_name = 't' ORDER BY column_index").await;
    assert_eq!(types[0], "time TIMESTAMP_NS,host VARCHAR,usage DOUBLE");
    assert_eq!(sql(&s, "SELECT count(*), count(usage) FROM bad.main.t").await, vec!["2", "1"]);
    // The server is still fine, and describes the formats.
    let r = reqwest::Client::new()
        .get(s.http_url("/api/v1/write/msgpack/spec"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let spec: Value = r.json().await.unwrap();
    assert!(spec["formats"]["columnar"]["example"]["columns"]["time"].is_array(), "{spec}");
    assert!(spec["endpoints"].as_array().unwrap().iter().any(|e| e == "POST /api/v1/write/msgpack"));
    let r = reqwest::Client::new().get(s.http_url("/api/v1/write/msgpack/spec")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn msgpack_grants_and_body_limit() {
    let s = TestServer::start_with(|b| b.max_body_bytes(4000)).await;
    let mut b = Vec::new();
    row(&mut b, "g", 1, "a", 1.0);
    assert_eq!(post(&s, "/api/v1/write/msgpack", Some("gr"), &[], b.clone()).await.0, StatusCode::NO_CONTENT);
    let mut c = s.flight().await;
    query(&mut c, "CREATE USER carol PASSWORD 'carol-pw-1234'").await.unwrap();
    let send_as = |body: Vec<u8>| {
        reqwest::Client::new()
            .post(s.http_url("/api/v1/write/msgpack"))
            .basic_auth("carol", Some("carol-pw-1234"))
            .header("x-arc-database", "gr")
            .body(body)
            .send()
    };
    assert_eq!(send_as(b.clone()).await.unwrap().status(), StatusCode::FORBIDDEN);
    query(&mut c, "GRANT INSERT ON TABLE gr.main.g TO carol").await.unwrap();
    assert_eq!(send_as(b.clone()).await.unwrap().status(), StatusCode::NO_CONTENT);
    let mut other = Vec::new();
    row(&mut other, "newtable", 1, "a", 1.0);
    assert_eq!(send_as(other).await.unwrap().status(), StatusCode::FORBIDDEN, "creating a measurement needs WRITE");
    let mut big = Vec::new();
    let n = 1000;
    columnar(&mut big, "g", &(0..n).collect::<Vec<_>>(), &vec!["h"; n as usize], &vec![1.0; n as usize]);
    assert_eq!(post(&s, "/api/v1/write/msgpack", Some("gr"), &[], big).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(sql(&s, "SELECT count(*) FROM gr.main.g").await[0], "2");
    s.stop().await;
}

/// A MessagePack body in the log that never reached the lake (a crash before
/// the flush) is decoded again and applied once.
#[tokio::test]
async fn msgpack_log_records_replay_exactly_once() {
    let s = TestServer::start().await;
    let mut first = Vec::new();
    columnar(&mut first, "cpu", &[1_700_000_000_000_000_001, 1_700_000_000_000_000_002], &["a", "b"], &[1.0, 2.0]);
    assert_eq!(post(&s, "/api/v1/write/msgpack", Some("rp"), &[], first.clone()).await.0, StatusCode::NO_CONTENT);
    // In the lake with generation 1: the record of sequence 1 below is one the lake holds.
    assert_eq!(post(&s, "/api/v1/lake/flush", None, &[], Vec::new()).await.0, StatusCode::OK);
    let info = s.server().engine().databases().into_iter().find(|d| d.name == "rp").unwrap();
    let id = std::path::Path::new(&info.path).file_stem().unwrap().to_string_lossy().to_string();
    let dir = s.stop().await;
    let wal = dir.path().join("ingest").join("ingest.wal");
    let mut second = Vec::new();
    enc::write_array_len(&mut second, 2).unwrap();
    row(&mut second, "cpu", 1_700_000_000_000_000_003, "c", 3.0);
    st(&mut second, "a bad record stays rejected on replay");
    let mut buf = Vec::new();
    let mp = pond_ingest::Format::MessagePack;
    pond_ingest::wal::encode_as(1, mp, pond_ingest::Precision::Nanosecond, 0, &id, &first, &mut buf);
    pond_ingest::wal::encode_as(500, mp, pond_ingest::Precision::Nanosecond, 0, &id, &second, &mut buf);
    std::fs::write(&wal, &buf).unwrap();
    for _ in 0..2 {
        let server = TestServer::launch(dir.path().to_path_buf(), |b| b).await;
        let s = TestServer { server: Some(server), dir: tempfile::tempdir().unwrap() };
        let cols = sql(&s, "SELECT epoch_ns(time), host FROM rp.main.cpu ORDER BY time").await;
        assert_eq!(cols[0], "1700000000000000001,1700000000000000002,1700000000000000003");
        assert_eq!(cols[1], "a,b,c");
        s.stop().await;
        // Replaying already-applied records again must not duplicate them.
        std::fs::write(&wal, &buf).unwrap();
    }
}

/// Regression (issue 4): a MessagePack integer written to an existing DOUBLE
/// column is converted, not rejected; line protocol's `7i` still is.
#[tokio::test]
async fn msgpack_integer_into_double_column_is_converted() {
    let s = TestServer::start().await;
    let mut b = Vec::new();
    columnar(&mut b, "cpu", &[1_000], &["a"], &[1.5]);
    assert_eq!(post(&s, "/api/v1/write/msgpack", Some("wid"), &[], b).await.0, StatusCode::NO_CONTENT);
    // A row record with an integer usage (and a new integer field, which stays BIGINT).
    let mut b = Vec::new();
    enc::write_map_len(&mut b, 4).unwrap();
    st(&mut b, "m");
    st(&mut b, "cpu");
    st(&mut b, "t");
    enc::write_sint(&mut b, 2_000).unwrap();
    st(&mut b, "h");
    st(&mut b, "b");
    st(&mut b, "fields");
    enc::write_map_len(&mut b, 2).unwrap();
    st(&mut b, "usage");
    enc::write_sint(&mut b, 7).unwrap();
    st(&mut b, "n");
    enc::write_uint(&mut b, 3).unwrap();
    let (status, body) = post(&s, "/api/v1/write/msgpack", Some("wid"), &[], b).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // A columnar item whose usage column is all integers (one negative).
    let mut b = Vec::new();
    enc::write_map_len(&mut b, 2).unwrap();
    st(&mut b, "m");
    st(&mut b, "cpu");
    st(&mut b, "columns");
    enc::write_map_len(&mut b, 2).unwrap();
    st(&mut b, "time");
    enc::write_array_len(&mut b, 2).unwrap();
    enc::write_sint(&mut b, 3_000).unwrap();
    enc::write_sint(&mut b, 4_000).unwrap();
    st(&mut b, "usage");
    enc::write_array_len(&mut b, 2).unwrap();
    enc::write_sint(&mut b, -2).unwrap();
    enc::write_uint(&mut b, 40).unwrap();
    let (status, body) = post(&s, "/api/v1/write/msgpack", Some("wid"), &[], b).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let cols = sql(&s, "SELECT usage, n FROM wid.main.cpu ORDER BY time").await;
    assert_eq!(cols[0], "1.5,7.0,-2.0,40.0");
    assert_eq!(cols[1], "NULL,3,NULL,NULL");
    let types = sql(&s, "SELECT column_name || ' ' || data_type FROM duckdb_columns() WHERE database_name = 'wid' AND schema_name = 'main' AND table_name = 'cpu' ORDER BY column_index").await;
    assert!(types[0].contains("usage DOUBLE"), "{types:?}");
    assert!(!types[0].contains("n DOUBLE"), "{types:?}");
    // Line protocol keeps InfluxDB's rule: an integer into a float column is an error.
    let r = reqwest::Client::new()
        .post(s.http_url("/api/v3/write_lp?db=wid"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body("cpu,host=c usage=7i 5000\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(body["data"][0]["error_message"].as_str().unwrap().contains("DOUBLE"), "{body}");
    assert_eq!(sql(&s, "SELECT count(*) FROM wid.main.cpu").await[0], "4");
    s.stop().await;
}
