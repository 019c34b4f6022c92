use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{TestServer, ADMIN_PASSWORD};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post_query(s: &TestServer, body: Value) -> reqwest::Response {
    client().post(s.http_url("/api/v1/query")).basic_auth("admin", Some(ADMIN_PASSWORD)).json(&body).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_query_has_columns_data_and_counts() {
    let s = TestServer::start().await;
    let r =
        post_query(&s, json!({"sql": "SELECT 1 AS a, 'x' AS b, [1,2] AS l, {'k': 2.5} AS st, NULL AS n, 12.30::DECIMAL(5,2) AS d"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["columns"][0]["name"], "a");
    assert_eq!(v["data"], json!([[1, "x", [1, 2], {"k": 2.5}, null, 12.30]]));
    assert_eq!(v["row_count"], 1);
    assert!(v["execution_time_ms"].as_f64().unwrap() >= 0.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn arrow_and_csv_formats() {
    let s = TestServer::start().await;
    let r = post_query(&s, json!({"sql": "SELECT range AS i FROM range(5000)", "format": "arrow"})).await;
    assert_eq!(r.headers()["content-type"], "application/vnd.apache.arrow.stream");
    let bytes = r.bytes().await.unwrap();
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None).unwrap();
    let total: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(total, 5000);

    let r = post_query(&s, json!({"sql": "SELECT 1 AS a, 'x,y' AS b UNION ALL SELECT 2, 'z'", "format": "csv"})).await;
    let text = r.text().await.unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1..].sort();
    assert_eq!(lines, vec!["a,b", "1,\"x,y\"", "2,z"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_are_json_with_fitting_status() {
    let s = TestServer::start().await;
    let r = post_query(&s, json!({"sql": "SELEC 1"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("Parser Error"), "{v}");
    assert_eq!(v["code"], "sql_error");

    let r = post_query(&s, json!({"sql": "SELECT 1", "database": "nope"})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "database_not_found");

    let r = client()
        .post(s.http_url("/api/v1/query"))
        .basic_auth("admin", Some("wrong"))
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client().post(s.http_url("/api/v1/query")).json(&json!({"sql": "SELECT 1"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = post_query(&s, json!({"sql": "SELECT 1", "format": "xml"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("'format'"));

    let r = client().post(s.http_url("/api/v1/query")).basic_auth("admin", Some(ADMIN_PASSWORD)).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("line 1"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn body_limit_gives_413() {
    let s = TestServer::start_with(|b| b.max_body_bytes(1024)).await;
    let big = "x".repeat(4096);
    let r = post_query(&s, json!({"sql": format!("SELECT '{big}'")})).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bearer_token_login_health_ready_metrics_databases() {
    let s = TestServer::start().await;
    assert_eq!(client().get(s.http_url("/health")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(client().get(s.http_url("/ready")).send().await.unwrap().status(), StatusCode::OK);
    let login: Value = client()
        .post(s.http_url("/api/v1/auth/login"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    let r =
        client().post(s.http_url("/api/v1/query")).bearer_auth(&token).json(&json!({"sql": "CREATE DATABASE web"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let dbs: Value = client().get(s.http_url("/api/v1/databases")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = dbs["databases"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["default", "web"]);
    let m = client().get(s.http_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("pond_queries_total{protocol=\"http\"}"), "{m}");
    assert!(m.contains("pond_query_duration_seconds_bucket"), "{m}");
    assert!(m.contains("pond_bytes_sent_total"), "{m}");
    assert!(m.contains("pond_sessions"), "{m}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_json_result_streams() {
    let s = TestServer::start().await;
    let r = post_query(&s, json!({"sql": "SELECT range AS i FROM range(300000)"})).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["row_count"], 300000);
    assert_eq!(v["data"].as_array().unwrap().len(), 300000);
    assert_eq!(v["data"][299999][0], 299999);
    s.stop().await;
}
