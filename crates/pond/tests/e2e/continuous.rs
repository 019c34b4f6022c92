//! Continuous queries: downsampling a measurement into a table, only new
//! complete buckets per run, definitions and watermarks across a restart,
//! the owner's grants at every run. The downsampled table is compared with
//! the same aggregate computed from scratch, so a gap or a bucket counted
//! twice fails the test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{TestServer, ADMIN_PASSWORD};

const ADMIN: (&str, &str) = ("admin", ADMIN_PASSWORD);

async fn sql_as(s: &TestServer, user: (&str, &str), sql: &str) -> Result<Value, String> {
    crate::http_query(s, user, "metrics", sql).await.map(|v| v["data"].clone())
}

async fn admin(s: &TestServer, sql: &str) -> Value {
    sql_as(s, ADMIN, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn write(s: &TestServer, body: String) {
    let r = reqwest::Client::new()
        .post(s.http_url("/write?db=metrics&precision=ms"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

/// `n` points per host, one every 100 ms from `start_ms`.
fn points(start_ms: i64, n: i64) -> String {
    let mut out = String::new();
    for i in 0..n {
        for (h, v) in [("a", 1.0), ("b", 2.5)] {
            out.push_str(&format!("cpu,host={h} value={} {}\n", v + i as f64, start_ms + i * 100));
        }
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

const DOWNSAMPLED: &str = "SELECT strftime(time, '%Y-%m-%d %H:%M:%S') AS t, host, n, total FROM cpu_1s ORDER BY t, host";
const FROM_SCRATCH: &str =
    "SELECT strftime(time_bucket(INTERVAL '1 second', time), '%Y-%m-%d %H:%M:%S') AS t, host, count(*) AS n, sum(value) AS total \
     FROM cpu GROUP BY ALL ORDER BY t, host";

/// Waits until the downsampled table equals the aggregate from scratch.
async fn converges(s: &TestServer, what: &str) {
    let mut last = (Value::Null, Value::Null);
    for _ in 0..150 {
        let a = admin(s, DOWNSAMPLED).await;
        let b = admin(s, FROM_SCRATCH).await;
        if a == b && a.as_array().is_some_and(|r| !r.is_empty()) {
            return;
        }
        last = (a, b);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: the downsampled table never matched the aggregate from scratch:\n{}\n{}", last.0, last.1);
}

async fn show(s: &TestServer) -> Value {
    admin(s, "SHOW CONTINUOUS QUERIES").await
}

async fn setup(s: &TestServer) {
    // Points from a minute ago (complete buckets, for the first run); the write creates the database.
    write(s, points(now_ms() - 60_000, 50)).await;
    admin(s, "CREATE TABLE cpu_1s (time TIMESTAMP, host VARCHAR, n BIGINT, total DOUBLE)").await;
}

const CREATE: &str = "CREATE CONTINUOUS QUERY cpu_1s EVERY INTERVAL '1 second' GRACE INTERVAL '0 seconds' AS \
     INSERT INTO cpu_1s SELECT time_bucket(INTERVAL '1 second', time) AS time, host, count(*), sum(value) FROM cpu GROUP BY ALL";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downsamples_new_buckets_only_and_survives_a_restart() {
    let s = TestServer::start().await;
    setup(&s).await;
    admin(&s, CREATE).await;
    let listed = show(&s).await;
    assert_eq!(listed[0][0], "cpu_1s");
    assert_eq!(listed[0][1], "metrics");
    assert_eq!(listed[0][2], "1 second");
    converges(&s, "first run").await;
    // New points, a little in the future: later runs pick up only them.
    write(&s, points(now_ms() + 1500, 20)).await;
    converges(&s, "later runs").await;
    let listed = show(&s).await;
    assert!(listed[0][7].as_i64().unwrap() >= 2, "{listed}");
    assert!(listed[0][6].is_string(), "processed_until: {listed}");
    assert!(listed[0][9].is_null(), "last_error: {listed}");
    // Names and errors.
    let e = sql_as(&s, ADMIN, CREATE).await.unwrap_err();
    assert!(e.contains("already exists"), "{e}");
    admin(&s, &CREATE.replace("CONTINUOUS QUERY cpu_1s", "CONTINUOUS QUERY IF NOT EXISTS cpu_1s")).await;
    for (bad, says) in [
        (CREATE.replace("INTERVAL '1 second', time", "INTERVAL '7 seconds', time"), "multiple of the time_bucket width"),
        (CREATE.replace("time_bucket(INTERVAL '1 second', time)", "time"), "time_bucket"),
        (CREATE.replace("FROM cpu", "FROM cpu, cpu_1s"), "exactly one table"),
        (CREATE.replace("EVERY INTERVAL '1 second'", "EVERY INTERVAL '1 month'"), "months"),
        (CREATE.replace("sum(value)", "sum(nosuchcolumn)"), "does not run"),
    ] {
        let bad = bad.replace("QUERY cpu_1s", "QUERY other");
        let e = sql_as(&s, ADMIN, &bad).await.unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
    // Restart: the definition and its watermark are still there, and runs go on without double counting.
    let dir = s.stop().await;
    let s = TestServer { server: Some(TestServer::launch(dir.path().to_path_buf(), |b| b).await), dir };
    let listed = show(&s).await;
    assert_eq!(listed[0][0], "cpu_1s");
    assert!(listed[0][6].is_string(), "watermark kept: {listed}");
    write(&s, points(now_ms() + 1500, 10)).await;
    converges(&s, "after a restart").await;
    admin(&s, "DROP CONTINUOUS QUERY cpu_1s").await;
    assert_eq!(show(&s).await, json!([]));
    let e = sql_as(&s, ADMIN, "DROP CONTINUOUS QUERY cpu_1s").await.unwrap_err();
    assert!(e.contains("does not exist"), "{e}");
    admin(&s, "DROP CONTINUOUS QUERY IF EXISTS cpu_1s").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_with_the_owners_current_grants() {
    let s = TestServer::start().await;
    setup(&s).await;
    for sql in
        ["CREATE USER ops PASSWORD 'ops-pw-1234'", "CREATE USER viewer PASSWORD 'viewer-pw-12'", "GRANT READ ON DATABASE metrics TO viewer"]
    {
        admin(&s, sql).await;
    }
    // Without INSERT on the target: refused at CREATE.
    let viewer = ("viewer", "viewer-pw-12");
    let e = sql_as(&s, viewer, CREATE).await.unwrap_err();
    assert!(e.contains("permission denied"), "{e}");
    admin(&s, "GRANT READ, WRITE ON DATABASE metrics TO ops").await;
    let ops = ("ops", "ops-pw-1234");
    sql_as(&s, ops, CREATE).await.unwrap();
    converges(&s, "owner with grants").await;
    // The state is hidden from clients with grants on the database.
    let e = sql_as(&s, viewer, "SELECT * FROM _pond_cq.queries").await.unwrap_err();
    assert!(e.contains("does not exist") || e.contains("permission denied"), "{e}");
    // Others do not see or drop it; the owner does.
    assert_eq!(sql_as(&s, viewer, "SHOW CONTINUOUS QUERIES").await.unwrap(), json!([]));
    assert!(sql_as(&s, viewer, "DROP CONTINUOUS QUERY cpu_1s").await.unwrap_err().contains("permission denied"));
    // A revoke stops the next run: nothing more is inserted, and SHOW says why.
    admin(&s, "REVOKE WRITE ON DATABASE metrics FROM ops").await;
    // A run that passed its check just before the revoke may still commit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = admin(&s, "SELECT count(*) FROM cpu_1s").await;
    write(&s, points(now_ms() + 500, 10)).await;
    let mut error = Value::Null;
    for _ in 0..60 {
        let listed = sql_as(&s, ops, "SHOW CONTINUOUS QUERIES").await.unwrap();
        error = listed[0][9].clone();
        if error.is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(error.as_str().is_some_and(|e| e.contains("permission denied")), "{error}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(admin(&s, "SELECT count(*) FROM cpu_1s").await, before);
    sql_as(&s, ops, "DROP CONTINUOUS QUERY cpu_1s").await.unwrap();
    s.stop().await;
}
