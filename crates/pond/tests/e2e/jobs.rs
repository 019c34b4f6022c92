//! Import and export jobs: JSON endpoints (array and NDJSON) into a table and
//! a measurement with exact rows, a bad row in the middle (rows before it
//! kept, the error names the line), a source that is down, cancel of a
//! source that never ends, credentials from a secret never shown, export
//! jobs on a schedule into Parquet files read back, and their definitions
//! across a restart. A small axum server plays the sources.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{TestServer, ADMIN_PASSWORD};

const ADMIN: (&str, &str) = ("admin", ADMIN_PASSWORD);

async fn sql_as(s: &TestServer, user: (&str, &str), sql: &str) -> Result<Value, String> {
    let v = crate::http_query(s, user, "default", sql).await?;
    // Rows as objects keyed by column name.
    let names: Vec<String> = v["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    let rows = v["data"].as_array().unwrap().iter().map(|row| {
        let obj: serde_json::Map<String, Value> = names.iter().cloned().zip(row.as_array().unwrap().iter().cloned()).collect();
        Value::Object(obj)
    });
    Ok(Value::Array(rows.collect()))
}

async fn admin(s: &TestServer, sql: &str) -> Value {
    sql_as(s, ADMIN, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The job id IMPORT answered with.
fn job_id(v: &Value) -> u64 {
    v[0]["job_id"].as_u64().unwrap_or_else(|| panic!("no job id in {v}"))
}

/// Polls `GET /api/v1/jobs/{id}` until the run is no longer running.
async fn finished(s: &TestServer, id: u64) -> Value {
    for _ in 0..300 {
        let v: Value = reqwest::Client::new()
            .get(s.http_url(&format!("/api/v1/jobs/{id}")))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] != "running" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} did not end");
}

struct Source {
    addr: SocketAddr,
    /// Authorization headers the endpoints saw.
    auth_seen: Arc<std::sync::Mutex<Vec<String>>>,
    streamed: Arc<AtomicUsize>,
}

async fn source() -> Source {
    let auth_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let streamed = Arc::new(AtomicUsize::new(0));
    let seen = auth_seen.clone();
    let count = streamed.clone();
    let app = Router::new()
        .route(
            "/array",
            get(|| async {
                r#"[{"id": 1, "name": "a", "v": 0.1, "big": 9007199254740993, "ok": true},
                    {"id": 2, "name": "b\"q", "v": 2, "big": -1, "ok": false, "extra": {"k": [1]}},
                    {"id": 3, "name": null}]"#
            }),
        )
        .route(
            "/ndjson",
            get(|| async {
                let mut body = String::new();
                for i in 0..5 {
                    body.push_str(&format!(
                        "{{\"time\": \"2024-01-01T00:00:0{i}.123456789Z\", \"host\": \"h{}\", \"v\": {i}.5, \"n\": {i}}}\n",
                        i % 2
                    ));
                }
                body.push_str("{\"time\": \"2024-01-01T00:00:09Z\", \"host\": \"h0\", \"v\": oops}\n");
                body.push_str("{\"time\": \"2024-01-01T00:00:10Z\", \"host\": \"h0\", \"v\": 1.0}\n");
                body
            }),
        )
        .route(
            "/private",
            get(move |h: HeaderMap| {
                let seen = seen.clone();
                async move {
                    let a = h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    seen.lock().unwrap().push(a.clone());
                    if a.is_empty() {
                        (axum::http::StatusCode::UNAUTHORIZED, "no".to_string())
                    } else {
                        (axum::http::StatusCode::OK, "{\"x\": 1}\n".to_string())
                    }
                }
            }),
        )
        .route(
            "/endless",
            get(move || {
                let count = count.clone();
                async move {
                    let stream = futures::stream::unfold(0u64, move |i| {
                        let count = count.clone();
                        async move {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            count.fetch_add(1, Ordering::SeqCst);
                            Some((Ok::<_, std::io::Error>(format!("{{\"i\": {i}}}\n")), i + 1))
                        }
                    });
                    axum::body::Body::from_stream(stream)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Source { addr, auth_seen, streamed }
}

#[tokio::test]
async fn json_array_into_a_table_keeps_exact_values() {
    let s = TestServer::start().await;
    let src = source().await;
    let v = admin(&s, &format!("IMPORT INTO TABLE people FROM JSON 'http://{}/array'", src.addr)).await;
    let id = job_id(&v);
    let run = finished(&s, id).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["rows"], 3);
    assert_eq!(run["batches"], 1);
    let rows = admin(&s, "SELECT id, name, v::VARCHAR AS v, big::VARCHAR AS big, ok, extra FROM people ORDER BY id").await;
    assert_eq!(
        rows,
        json!([
            {"id": 1, "name": "a", "v": "0.1", "big": "9007199254740993", "ok": true, "extra": null},
            {"id": 2, "name": "b\"q", "v": "2.0", "big": "-1", "ok": false, "extra": "{\"k\": [1]}"},
            {"id": 3, "name": null, "v": null, "big": null, "ok": null, "extra": null},
        ])
    );
    // SHOW JOBS lists the run with its counts.
    let jobs = admin(&s, "SHOW JOBS").await;
    assert_eq!(jobs[0]["id"], id);
    assert_eq!(jobs[0]["kind"], "import");
    assert_eq!(jobs[0]["state"], "succeeded");
    assert_eq!(jobs[0]["rows"], 3);
    assert!(jobs[0]["target"].as_str().unwrap().contains("people"), "{jobs}");
    // A second import appends by column name.
    let id2 = job_id(&admin(&s, &format!("IMPORT INTO TABLE people FROM JSON 'http://{}/array' (FORMAT 'array')", src.addr)).await);
    assert_eq!(finished(&s, id2).await["state"], "succeeded");
    assert_eq!(admin(&s, "SELECT count(*) AS n FROM people").await[0]["n"], 6);
    s.stop().await;
}

#[tokio::test]
async fn ndjson_into_a_measurement_stops_at_the_bad_line_and_keeps_the_rows_before() {
    let s = TestServer::start().await;
    let src = source().await;
    let id =
        job_id(&admin(&s, &format!("IMPORT INTO MEASUREMENT cpu FROM JSON 'http://{}/ndjson' (TIME 'time', TAGS 'host')", src.addr)).await);
    let run = finished(&s, id).await;
    assert_eq!(run["state"], "failed", "{run}");
    let err = run["error"].as_str().unwrap();
    assert!(err.contains("line 6") && err.contains("not a JSON object"), "{err}");
    assert_eq!(run["rows"], 5);
    let rows = admin(&s, "SELECT epoch_ns(time) AS t, host, v, n FROM cpu ORDER BY time").await;
    let expected: Vec<Value> = (0..5)
        .map(|i| json!({"t": 1_704_067_200_123_456_789i64 + i * 1_000_000_000, "host": format!("h{}", i % 2), "v": i as f64 + 0.5, "n": i}))
        .collect();
    assert_eq!(rows, Value::Array(expected));
    s.stop().await;
}

#[tokio::test]
async fn a_source_that_is_down_fails_with_a_clear_error() {
    let s = TestServer::start().await;
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let id = job_id(&admin(&s, &format!("IMPORT INTO TABLE t FROM JSON 'http://{closed}/x'")).await);
    let run = finished(&s, id).await;
    assert_eq!(run["state"], "failed");
    let err = run["error"].as_str().unwrap();
    assert!(err.contains("cannot connect") && err.contains(&closed.to_string()), "{err}");
    // The server still answers.
    assert_eq!(admin(&s, "SELECT 1 AS x").await[0]["x"], 1);
    s.stop().await;
}

#[tokio::test]
async fn cancel_stops_an_endless_import() {
    let s = TestServer::start().await;
    let src = source().await;
    let v = reqwest::Client::new()
        .post(s.http_url("/api/v1/jobs"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .json(&json!({"type": "import", "into": "table", "target": "endless", "from": "json",
                      "url": format!("http://{}/endless", src.addr), "options": {"format": "ndjson"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), StatusCode::ACCEPTED);
    let id = v.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r =
        reqwest::Client::new().delete(s.http_url(&format!("/api/v1/jobs/{id}"))).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["cancelled"], true);
    let run = finished(&s, id).await;
    assert_eq!(run["state"], "cancelled", "{run}");
    // The source is no longer read.
    let after = src.streamed.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(src.streamed.load(Ordering::SeqCst) <= after + 10, "still streaming after the cancel");
    // Cancelling again says it had ended; an unknown id is 404.
    let again = admin(&s, &format!("CANCEL JOB {id}")).await;
    assert!(again[0]["message"].as_str().unwrap().contains("already ended"), "{again}");
    let missing = reqwest::Client::new().delete(s.http_url("/api/v1/jobs/12345")).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn credentials_come_from_a_secret_and_are_never_shown() {
    let s = TestServer::start().await;
    let src = source().await;
    admin(&s, "CREATE SECRET api (TYPE http, USER 'bot', PASSWORD 'hunter2-very-secret')").await;
    let id = job_id(&admin(&s, &format!("IMPORT INTO TABLE priv FROM JSON 'http://{}/private' (SECRET 'api')", src.addr)).await);
    assert_eq!(finished(&s, id).await["state"], "succeeded");
    assert_eq!(admin(&s, "SELECT x FROM priv").await, json!([{"x": 1}]));
    // Basic auth reached the source.
    let seen = src.auth_seen.lock().unwrap().clone();
    assert!(seen.iter().any(|a| a.starts_with("Basic ")), "{seen:?}");
    // Credentials in the URL are refused, and the statement never echoes them.
    let e = sql_as(&s, ADMIN, &format!("IMPORT INTO TABLE priv FROM JSON 'http://bot:hunter2-very-secret@{}/private'", src.addr))
        .await
        .unwrap_err();
    assert!(e.contains("secret") && !e.contains("hunter2"), "{e}");
    let listing = reqwest::Client::new()
        .get(s.http_url("/api/v1/jobs"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!listing.contains("hunter2"), "{listing}");
    assert!(!admin(&s, "SHOW JOBS").await.to_string().contains("hunter2"));
    // Non-superusers may not use secrets, and see only their own runs.
    admin(&s, "CREATE USER bob PASSWORD 'bob-pass-123'").await;
    admin(&s, "GRANT READ, WRITE ON DATABASE \"default\" TO bob").await;
    let e = sql_as(&s, ("bob", "bob-pass-123"), &format!("IMPORT INTO TABLE b FROM JSON 'http://{}/private' (SECRET 'api')", src.addr))
        .await
        .unwrap_err();
    assert!(e.contains("only superusers"), "{e}");
    assert_eq!(sql_as(&s, ("bob", "bob-pass-123"), "SHOW JOBS").await.unwrap(), json!([]));
    let e = sql_as(&s, ("bob", "bob-pass-123"), &format!("CANCEL JOB {id}")).await.unwrap_err();
    assert!(e.contains("does not exist") || e.contains("permission"), "{e}");
    s.stop().await;
}

#[tokio::test]
async fn export_jobs_run_on_schedule_and_survive_a_restart() {
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().to_path_buf();
    let allowed = out_dir.display().to_string();
    let s = TestServer::start_with(|b| b.engine_config(move |e| e.allowed_paths = vec![allowed])).await;
    admin(&s, "CREATE TABLE src AS SELECT i AS id, 'n' || i AS name FROM range(100) t(i)").await;
    let stmt = format!(
        "CREATE EXPORT JOB dump EVERY INTERVAL '1 second' AS COPY (SELECT * FROM src ORDER BY id) TO '{}/dump-{{run_time}}.parquet' (FORMAT parquet)",
        out_dir.display()
    );
    admin(&s, &stmt).await;
    // Non-superusers may not create one.
    admin(&s, "CREATE USER eve PASSWORD 'eve-pass-123'").await;
    admin(&s, "GRANT READ, WRITE ON DATABASE \"default\" TO eve").await;
    let e = sql_as(&s, ("eve", "eve-pass-123"), &stmt.replace("JOB dump", "JOB mine")).await.unwrap_err();
    assert!(e.contains("only superusers"), "{e}");
    // A run within a few seconds, with a file named by its time.
    let mut files = Vec::new();
    for _ in 0..100 {
        files = std::fs::read_dir(&out_dir).unwrap().flatten().map(|e| e.path()).collect();
        if !files.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!files.is_empty(), "no export file");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("dump-20") && name.ends_with("Z.parquet"), "{name}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let back =
        admin(&s, &format!("SELECT count(*) AS n, sum(id)::BIGINT AS s, max(name) AS m FROM read_parquet('{}')", files[0].display())).await;
    assert_eq!(back, json!([{"n": 100, "s": 4950, "m": "n99"}]));
    let jobs = admin(&s, "SHOW JOBS").await;
    let run = jobs.as_array().unwrap().iter().find(|j| j["kind"] == "export").expect("an export run").clone();
    assert_eq!(run["name"], "dump");
    assert_eq!(run["rows"], 100);
    assert!(run["bytes"].as_u64().unwrap() > 0, "{run}");
    let shown = admin(&s, "SHOW EXPORT JOBS").await;
    assert_eq!(shown[0]["name"], "dump");
    assert_eq!(shown[0]["every"], "1 second");
    // The definition survives a restart; the old runs are in the history.
    let dir = s.stop().await;
    let allowed = out_dir.display().to_string();
    let server = TestServer::launch(dir.path().to_path_buf(), move |b| b.engine_config(move |e| e.allowed_paths = vec![allowed])).await;
    let s = TestServer { server: Some(server), dir };
    let shown = admin(&s, "SHOW EXPORT JOBS").await;
    assert_eq!(shown[0]["name"], "dump", "{shown}");
    assert!(admin(&s, "SHOW JOBS").await.as_array().unwrap().iter().any(|j| j["id"] == run["id"]));
    admin(&s, "DROP EXPORT JOB dump").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let count = std::fs::read_dir(&out_dir).unwrap().count();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), count, "a dropped job still runs");
    // A job without EVERY runs when asked, once.
    admin(
        &s,
        &format!("CREATE EXPORT JOB once AS COPY (SELECT 1 AS x) TO '{}/once-{{run_id}}.csv' (FORMAT csv, HEADER)", out_dir.display()),
    )
    .await;
    let id = job_id(&admin(&s, "RUN EXPORT JOB once").await);
    assert_eq!(finished(&s, id).await["state"], "succeeded");
    assert_eq!(std::fs::read_to_string(out_dir.join(format!("once-{id}.csv"))).unwrap(), "x\n1\n");
    // A COPY to a place DuckDB may not write fails at run time with DuckDB's reason.
    // (or at CREATE, if DuckDB checks the path when it binds the statement).
    match sql_as(&s, ADMIN, "CREATE EXPORT JOB nowhere AS COPY (SELECT 1 AS x) TO '/proc/pond-nope.csv'").await {
        Err(e) => assert!(e.contains("nowhere") || e.contains("pond-nope"), "{e}"),
        Ok(_) => {
            let id = job_id(&admin(&s, "RUN EXPORT JOB nowhere").await);
            let run = finished(&s, id).await;
            assert_eq!(run["state"], "failed", "{run}");
            assert!(run["error"].as_str().unwrap().contains("pond-nope"), "{run}");
        }
    }
    s.stop().await;
}
