//! The query result cache (`--query-cache-size`): hits return the same
//! result, and every path by which data or rights change makes the next
//! answer fresh. Each invalidation test reads, writes, reads again and
//! checks the new value, so a stale cache entry fails it.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{column_strings, query, TestServer, ADMIN_PASSWORD};

async fn start() -> TestServer {
    TestServer::start_with(|b| b.engine_config(|e| e.query_cache_bytes = 64 << 20)).await
}

/// `POST /api/v1/query` as `user`; the JSON answer (or the status on failure).
async fn http_sql(s: &TestServer, user: (&str, &str), sql: &str, headers: &[(&str, &str)]) -> Result<Value, StatusCode> {
    let mut r = reqwest::Client::new().post(s.http_url("/api/v1/query")).basic_auth(user.0, Some(user.1)).json(&json!({ "sql": sql }));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    if r.status() != StatusCode::OK {
        return Err(r.status());
    }
    Ok(r.json().await.unwrap())
}

const ADMIN: (&str, &str) = ("admin", ADMIN_PASSWORD);

async fn admin(s: &TestServer, sql: &str) -> Value {
    http_sql(s, ADMIN, sql, &[]).await.unwrap_or_else(|st| panic!("{sql}: {st}"))
}

async fn stats(s: &TestServer) -> Value {
    let r = reqwest::Client::new().get(s.http_url("/api/v1/cache")).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

fn hits(v: &Value) -> u64 {
    v["hits"].as_u64().unwrap()
}

/// Reads `sql` twice as `user` (the second answer must come from the cache and
/// equal the first); returns the data.
async fn cached(s: &TestServer, user: (&str, &str), sql: &str) -> Value {
    let first = http_sql(s, user, sql, &[]).await.unwrap_or_else(|st| panic!("{sql}: {st}"));
    let before = hits(&stats(s).await);
    let second = http_sql(s, user, sql, &[]).await.unwrap();
    assert_eq!(hits(&stats(s).await), before + 1, "second read of {sql} was not a hit");
    assert_eq!(first["data"], second["data"]);
    assert_eq!(first["columns"], second["columns"]);
    second["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hits_are_identical_and_the_cache_is_managed_by_superusers() {
    let s = start().await;
    admin(&s, "CREATE TABLE t AS SELECT range AS i, 'r' || range AS s, range * 1.5 AS d FROM range(5000)").await;
    let sql = "SELECT i % 7 AS k, count(*) AS n, sum(d) AS total, max(s) AS m FROM t GROUP BY ALL ORDER BY k";
    let data = cached(&s, ADMIN, sql).await;
    assert_eq!(data.as_array().unwrap().len(), 7);
    // Arrow over Flight SQL from the same cache entry as well.
    let mut c = s.flight().await;
    let a = query(&mut c, sql).await.unwrap();
    let b = query(&mut c, sql).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(column_strings(&a, 1).iter().map(|n| n.parse::<i64>().unwrap()).sum::<i64>(), 5000);
    // Flight SQL's per-call bypass header.
    let before = hits(&stats(&s).await);
    c.set_header("pond-cache", "off");
    assert_eq!(query(&mut c, sql).await.unwrap(), a);
    assert_eq!(hits(&stats(&s).await), before);
    let st = stats(&s).await;
    assert_eq!(st["enabled"], true);
    assert!(st["entries"].as_u64().unwrap() >= 1, "{st}");
    assert!(st["bytes"].as_u64().unwrap() > 0, "{st}");
    // Metrics.
    let m = reqwest::get(s.http_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(m.contains("pond_query_cache_lookups_total{result=\"hit\"}"), "{m}");
    assert!(m.contains("pond_query_cache_bytes"), "{m}");
    // Per-request bypass.
    let before = hits(&stats(&s).await);
    http_sql(&s, ADMIN, sql, &[("cache-control", "no-cache")]).await.unwrap();
    assert_eq!(hits(&stats(&s).await), before);
    // Clearing; non-superusers may neither look nor clear.
    admin(&s, "CREATE USER eve PASSWORD 'eve-pw-1234'").await;
    let c = reqwest::Client::new();
    for m in [reqwest::Method::GET, reqwest::Method::POST, reqwest::Method::DELETE] {
        let r = c.request(m, s.http_url("/api/v1/cache")).basic_auth("eve", Some("eve-pw-1234")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let r = c.delete(s.http_url("/api/v1/cache")).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.json::<Value>().await.unwrap()["cleared"].as_u64().unwrap() >= 1);
    assert_eq!(stats(&s).await["entries"], 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_over_every_protocol_make_the_next_answer_fresh() {
    // (Whole DOUBLE values come back as JSON integers.)
    let s = start().await;
    admin(&s, "CREATE DATABASE shop").await;
    admin(&s, "CREATE TABLE shop.main.orders (id INTEGER, amount DOUBLE)").await;
    let sql = "SELECT count(*) AS n, coalesce(sum(amount), 0) AS total FROM shop.main.orders";
    assert_eq!(cached(&s, ADMIN, sql).await, json!([[0, 0]]));
    // HTTP
    admin(&s, "INSERT INTO shop.main.orders VALUES (1, 10)").await;
    assert_eq!(cached(&s, ADMIN, sql).await, json!([[1, 10]]));
    // Flight SQL (statement update)
    let mut c = s.flight().await;
    c.execute_update("INSERT INTO shop.main.orders VALUES (2, 5)".into(), None).await.unwrap();
    assert_eq!(cached(&s, ADMIN, sql).await, json!([[2, 15]]));
    // PostgreSQL wire protocol
    let pg = s.pg_as("admin", ADMIN_PASSWORD, "shop").await.unwrap();
    pg.simple_query("INSERT INTO orders VALUES (3, 1)").await.unwrap();
    assert_eq!(cached(&s, ADMIN, sql).await, json!([[3, 16]]));
    // An explicit transaction: nothing changes until COMMIT, then the answer does.
    pg.simple_query("BEGIN").await.unwrap();
    pg.simple_query("UPDATE orders SET amount = amount * 2").await.unwrap();
    assert_eq!(http_sql(&s, ADMIN, sql, &[]).await.unwrap()["data"], json!([[3, 16]]));
    pg.simple_query("COMMIT").await.unwrap();
    assert_eq!(cached(&s, ADMIN, sql).await, json!([[3, 32]]));
    // DDL: a dropped and re-created table of the same name.
    admin(&s, "DROP TABLE shop.main.orders").await;
    admin(&s, "CREATE TABLE shop.main.orders AS SELECT 7 AS id, 1.0::DOUBLE AS amount").await;
    assert_eq!(cached(&s, ADMIN, sql).await, json!([[1, 1]]));
    // A write to another database leaves the entry alone (versions are per database).
    admin(&s, "CREATE TABLE other_t AS SELECT 1 AS x").await;
    let before = hits(&stats(&s).await);
    http_sql(&s, ADMIN, sql, &[]).await.unwrap();
    assert_eq!(hits(&stats(&s).await), before + 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn line_protocol_ingest_and_flush_make_the_next_answer_fresh() {
    let s = start().await;
    let write = |body: &'static str| {
        let url = s.http_url("/write?db=metrics&precision=s");
        async move {
            let r = reqwest::Client::new().post(url).basic_auth(ADMIN.0, Some(ADMIN.1)).body(body).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
        }
    };
    write("cpu,host=a value=1 1700000000\ncpu,host=b value=2 1700000001").await;
    let sql = "SELECT count(*) AS n, sum(value) AS total FROM metrics.main.cpu";
    assert_eq!(cached(&s, ADMIN, sql).await, json!([[2, 3]]));
    write("cpu,host=a value=10 1700000002").await;
    assert_eq!(cached(&s, ADMIN, sql).await, json!([[3, 13]]));
    // Through the lake: the same rows, and still fresh afterwards.
    let r =
        reqwest::Client::new().post(s.http_url("/api/v1/lake/flush?db=metrics")).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(cached(&s, ADMIN, sql).await, json!([[3, 13]]));
    write("cpu,host=c value=100 1700000003").await;
    assert_eq!(cached(&s, ADMIN, sql).await, json!([[4, 113]]));
    // A user's view over the measurement: expanded, still versioned by the measurement's writes.
    admin(&s, "CREATE VIEW metrics.main.big AS SELECT host, value FROM metrics.main.cpu WHERE value >= 2").await;
    let over_view = "SELECT count(*) AS n FROM metrics.main.big";
    assert_eq!(cached(&s, ADMIN, over_view).await, json!([[3]]));
    write("cpu,host=d value=5 1700000004").await;
    assert_eq!(cached(&s, ADMIN, over_view).await, json!([[4]]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_are_part_of_the_key() {
    let s = start().await;
    for sql in [
        "CREATE DATABASE pub",
        "CREATE TABLE pub.main.t AS SELECT range AS i FROM range(10)",
        "CREATE USER bob PASSWORD 'bob-pw-1234'",
        "CREATE USER carol PASSWORD 'carol-pw-123'",
        "GRANT READ ON DATABASE pub TO bob",
    ] {
        admin(&s, sql).await;
    }
    let bob = ("bob", "bob-pw-1234");
    let carol = ("carol", "carol-pw-123");
    let sql = "SELECT sum(i) AS s FROM pub.main.t";
    assert_eq!(cached(&s, bob, sql).await, json!([[45]]));
    // Another user with fewer grants: refused, although bob's answer is cached.
    assert_eq!(http_sql(&s, carol, sql, &[]).await.unwrap_err(), StatusCode::FORBIDDEN);
    // A revoke applies to the very next statement.
    admin(&s, "REVOKE READ ON DATABASE pub FROM bob").await;
    assert_eq!(http_sql(&s, bob, sql, &[]).await.unwrap_err(), StatusCode::FORBIDDEN);
    // A user dropped: refused too.
    admin(&s, "GRANT READ ON DATABASE pub TO carol").await;
    assert_eq!(cached(&s, carol, sql).await, json!([[45]]));
    admin(&s, "DROP USER carol").await;
    assert_eq!(http_sql(&s, carol, sql, &[]).await.unwrap_err(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_pond_cannot_version_is_never_cached() {
    let s = start().await;
    admin(&s, "CREATE TABLE t AS SELECT range AS i FROM range(3)").await;
    admin(&s, "CREATE VIEW rnd AS SELECT random() AS r, i FROM t").await;
    admin(&s, "CREATE MACRO twice(x) AS x * 2").await;
    for sql in [
        "SELECT random() AS r",
        "SELECT now() AS t, count(*) FROM t",
        "SELECT current_timestamp AS t",
        "SELECT max(r) FROM rnd",
        "SELECT twice(i) FROM t",
        "SELECT * FROM range(3)",
        "SELECT count(*) FROM duckdb_tables()",
        "SELECT * FROM t USING SAMPLE 2",
        "SELECT count(*) FROM pond_system.main.audit_log",
    ] {
        let before = stats(&s).await;
        let a = admin(&s, sql).await;
        let b = admin(&s, sql).await;
        let after = stats(&s).await;
        assert_eq!(hits(&after), hits(&before), "{sql} was served from the cache");
        assert_eq!(after["bypassed"].as_u64().unwrap(), before["bypassed"].as_u64().unwrap() + 2, "{sql}: {after}");
        if sql.contains("random") {
            assert_ne!(a["data"], b["data"], "{sql}");
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn off_by_default() {
    let s = TestServer::start().await;
    admin(&s, "SELECT 42").await;
    admin(&s, "SELECT 42").await;
    let st = stats(&s).await;
    assert_eq!(st["enabled"], false);
    assert_eq!(st["hits"], 0);
    s.stop().await;
}
