//! The flush writer: Pond's own day-split Parquet files registered with
//! DuckLake — partition pruning, schema evolution across files, type
//! conflicts, a long transaction across several flushes, and the memory
//! bound counting only unflushed rows. (Crashes between the flush's steps
//! are killed for real in `tests/interop/test_lake_crash.py`.)

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::{column_strings, query, TestServer, ADMIN_PASSWORD};

const ADMIN: (&str, &str) = ("admin", ADMIN_PASSWORD);
const DAY: i64 = 86_400_000_000_000;
/// 2024-01-01T00:00:00Z in nanoseconds.
const JAN1: i64 = 1_704_067_200_000_000_000;

async fn post(s: &TestServer, path: &str, body: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new().post(s.http_url(path)).basic_auth(ADMIN.0, Some(ADMIN.1)).body(body.to_string()).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn write(s: &TestServer, db: &str, body: &str) {
    let (status, b) = post(s, &format!("/write?db={db}"), body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{b}");
}

async fn flush(s: &TestServer, db: &str) {
    let (status, b) = post(s, &format!("/api/v1/lake/flush?db={db}"), "").await;
    assert_eq!(status, StatusCode::OK, "{b}");
}

async fn col(s: &TestServer, sql: &str, c: usize) -> Vec<String> {
    let mut f = s.flight().await;
    column_strings(&query(&mut f, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")), c)
}

async fn one(s: &TestServer, sql: &str) -> String {
    col(s, sql, 0).await.join(",")
}

fn no_auto_flush(b: pond::ServerBuilder) -> pond::ServerBuilder {
    b.lake(1_000_000_000, Duration::from_secs(3600), None, Duration::ZERO)
}

/// Every lake file of a database's lake schema, as (relative path) under the data dir.
fn lake_files(s: &TestServer) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![s.dir.path().join("lake/data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") && p.to_string_lossy().contains("/cpu/") {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_one_hour_query_over_a_month_reads_only_that_days_files() {
    let s = TestServer::start_with(no_auto_flush).await;
    // 30 days, one point per host per 10 minutes, written out of day order
    // (a body holds days 29..0, each day in time order).
    let mut body = String::new();
    for day in (0..30).rev() {
        for slot in 0..144 {
            let t = JAN1 + day * DAY + slot * 600_000_000_000;
            for host in ["a", "b"] {
                body.push_str(&format!("cpu,host={host} v={slot} {t}\n"));
            }
        }
    }
    write(&s, "pr", &body).await;
    flush(&s, "pr").await;
    let files = lake_files(&s);
    assert_eq!(files.len(), 30, "one file per day: {files:?}");
    assert!(files.iter().all(|f| f.contains("/year=2024/month=1/day=") && f.contains("/pond-")), "{files:?}");
    assert_eq!(one(&s, "SELECT count(*) FROM pr.cpu").await, "8640");
    // Registered with partition values (three keys per file) and column statistics.
    let id = s.server().engine().database_file_id("pr").unwrap();
    let meta = "__ducklake_metadata___pond_lake";
    assert_eq!(
        one(
            &s,
            &format!(
                "SELECT count(*) FROM {meta}.ducklake_file_partition_value p JOIN {meta}.ducklake_table t USING (table_id) \
                 JOIN {meta}.ducklake_schema sc ON sc.schema_id = t.schema_id WHERE sc.schema_name = '{id}' AND t.table_name = 'cpu'"
            )
        )
        .await,
        "90"
    );
    assert_eq!(
        one(
            &s,
            &format!(
                "SELECT count(DISTINCT data_file_id) FROM {meta}.ducklake_file_column_stats c JOIN {meta}.ducklake_table t USING (table_id) \
                 JOIN {meta}.ducklake_schema sc ON sc.schema_id = t.schema_id \
                 WHERE sc.schema_name = '{id}' AND t.table_name = 'cpu' AND c.min_value IS NOT NULL"
            )
        )
        .await,
        "30"
    );
    // One hour of Jan 15: DuckLake reads one file of 30.
    let hour = "time >= TIMESTAMP '2024-01-15 10:00:00' AND time < TIMESTAMP '2024-01-15 11:00:00'";
    assert_eq!(one(&s, &format!("SELECT count(*) FROM pr.cpu WHERE {hour}")).await, "12");
    let plan = col(&s, &format!("EXPLAIN ANALYZE SELECT count(*) FROM pr.cpu WHERE {hour}"), 1).await.join("\n");
    assert!(plan.contains("Total Files Read: 1"), "{plan}");
    assert!(plan.contains("day=15"), "{plan}");
    assert!(!plan.contains("day=14"), "{plan}");
    s.stop().await;
}

#[tokio::test]
async fn old_files_read_nulls_for_new_columns_and_type_conflicts_reject_the_line() {
    let s = TestServer::start_with(no_auto_flush).await;
    write(&s, "ev", &format!("cpu,host=a v=1 {JAN1}\ncpu,host=b v=2 {}", JAN1 + DAY)).await;
    flush(&s, "ev").await;
    // A new tag and field after the first files exist.
    write(&s, "ev", &format!("cpu,host=c,dc=x v=3,temp=20.5 {}", JAN1 + 2 * DAY)).await;
    // A field whose type conflicts: that line is refused, the others are kept.
    let (status, b) = post(&s, "/api/v3/write_lp?db=ev&accept_partial=true", &format!("cpu v=\"text\" {JAN1}\nmem v=4 {}", JAN1 + 3)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["data"][0]["line_number"], 1, "{b}");
    assert!(b["data"][0]["error_message"].as_str().unwrap().contains("column cpu.v is DOUBLE"), "{b}");
    write(&s, "ev", &format!("cpu v=4 {}", JAN1 + 3)).await;
    flush(&s, "ev").await;
    assert_eq!(lake_files(&s).len(), 4, "{:?}", lake_files(&s));
    assert_eq!(
        one(&s, "SELECT string_agg(host || ':' || coalesce(dc, '-') || ':' || coalesce(temp::VARCHAR, '-'), ' ' ORDER BY time, host) FROM ev.cpu WHERE host IS NOT NULL").await,
        "a:-:- b:-:- c:x:20.5"
    );
    assert_eq!(one(&s, "SELECT count(*) || '/' || sum(v)::INT FROM ev.cpu").await, "4/10");
    assert_eq!(one(&s, "SELECT typeof(v) FROM ev.cpu LIMIT 1").await, "DOUBLE");
    s.stop().await;
}

#[tokio::test]
async fn a_transaction_open_across_several_flushes_sees_every_row_once() {
    let s = TestServer::start_with(no_auto_flush).await;
    write(&s, "tx", &format!("cpu v=0 {JAN1}")).await;
    flush(&s, "tx").await;
    let pg = s.pg_as("admin", ADMIN_PASSWORD, "tx").await.unwrap();
    pg.batch_execute("BEGIN").await.unwrap();
    assert_eq!(count(&pg).await, (1, 1));
    // Three flushes, each followed by more than the 2 s grace period after
    // which flushed rows normally leave memory.
    for i in 1..=3i64 {
        write(&s, "tx", &format!("cpu v={i} {}", JAN1 + i)).await;
        flush(&s, "tx").await;
        tokio::time::sleep(Duration::from_millis(2600)).await;
        assert_eq!(count(&pg).await, (1 + i, 1 + i), "inside the transaction after flush {i}");
    }
    pg.batch_execute("COMMIT").await.unwrap();
    assert_eq!(count(&pg).await, (4, 4));
    // With the transaction gone, the flushed rows leave memory.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let st = lake_status(&s).await;
    assert_eq!(st["unflushed_rows"], 0, "{st}");
    assert_eq!(st["hot_rows"], 0, "{st}");
    s.stop().await;
}

async fn count(pg: &tokio_postgres::Client) -> (i64, i64) {
    let r = pg.query_one("SELECT count(*)::BIGINT, count(DISTINCT time)::BIGINT FROM cpu", &[]).await.unwrap();
    (r.get::<_, i64>(0), r.get::<_, i64>(1))
}

async fn lake_status(s: &TestServer) -> Value {
    reqwest::Client::new()
        .get(s.http_url("/api/v1/lake/status"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
