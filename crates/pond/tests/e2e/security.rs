//! Users, grants, tokens, JWT, OAuth2, the sandbox and the audit log, over
//! Flight SQL and HTTP against a real server.

use std::time::Duration;

use arrow_flight::sql::client::FlightSqlServiceClient;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::{column_strings, query, BoxError, TestServer, ADMIN_PASSWORD};

const JWT_SECRET: &[u8] = b"e2e-jwt-secret-e2e-jwt-secret-xx";

async fn http(s: &TestServer, auth: (&str, &str), sql: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(s.http_url("/api/v1/query"))
        .basic_auth(auth.0, Some(auth.1))
        .json(&json!({"sql": sql}))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn admin_sql(s: &TestServer, sql: &str) {
    let (status, body) = http(s, ("admin", ADMIN_PASSWORD), sql).await;
    assert_eq!(status, StatusCode::OK, "{sql}: {body}");
}

/// A Flight client that sends a bearer credential on every call (no handshake).
async fn flight_bearer(s: &TestServer, token: &str) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", s.server().flight_addr())).unwrap().connect().await.unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    client.set_token(token.to_string());
    client
}

/// Two databases, a user with READ on one of them.
async fn setup(s: &TestServer) {
    for sql in [
        "CREATE DATABASE pub",
        "CREATE DATABASE sec",
        "CREATE TABLE pub.main.t AS SELECT range AS i FROM range(3)",
        "CREATE TABLE sec.main.secret AS SELECT 'TOPSECRET' AS v",
        "CREATE VIEW pub.main.leaky AS SELECT * FROM sec.main.secret",
        "CREATE USER alice PASSWORD 'alice-pw-123'",
        "GRANT READ ON DATABASE pub TO alice",
    ] {
        admin_sql(s, sql).await;
    }
}

fn denied(e: &BoxError) -> bool {
    e.to_string().contains("permission denied")
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_decide_what_a_user_reads_and_writes_on_both_protocols() {
    let s = TestServer::start().await;
    setup(&s).await;
    let mut alice = s.flight_as("alice", "alice-pw-123").await.unwrap();
    let ok = query(&mut alice, "SELECT count(*) FROM pub.main.t").await.unwrap();
    assert_eq!(column_strings(&ok, 0), vec!["3"]);
    for sql in [
        "SELECT * FROM sec.main.secret",
        "SELECT * FROM pub.main.leaky",
        "WITH t AS (SELECT * FROM sec.main.secret) SELECT * FROM t",
        "INSERT INTO pub.main.t VALUES (9)",
        "CREATE TABLE pub.main.x (a INT)",
        "SELECT * FROM read_text('/etc/passwd')",
        "COPY pub.main.t TO '/tmp/pond-e2e-leak.csv'",
        "CREATE USER bob PASSWORD 'bob-pw-1234'",
        "CREATE DATABASE mine",
    ] {
        let e = query(&mut alice, sql).await.expect_err(sql);
        assert!(denied(&e), "{sql}: {e}");
        assert!(!e.to_string().contains("TOPSECRET"));
        let (status, body) = http(&s, ("alice", "alice-pw-123"), sql).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{sql}: {body}");
        assert_eq!(body["code"], "permission_denied");
    }
    assert!(!std::path::Path::new("/tmp/pond-e2e-leak.csv").exists());
    // Listings show only what alice may see.
    let dbs = query(&mut alice, "SHOW DATABASES").await.unwrap();
    assert_eq!(column_strings(&dbs, 0), vec!["pub"]);
    let catalogs = alice.get_catalogs().await.unwrap();
    let ticket = catalogs.endpoint[0].ticket.clone().unwrap();
    let batches: Vec<_> = futures::TryStreamExt::try_collect(alice.do_get(ticket).await.unwrap()).await.unwrap();
    assert_eq!(column_strings(&batches, 0), vec!["pub"]);
    // DuckDB's own listings are limited the same way.
    let listed = query(&mut alice, "SELECT DISTINCT table_catalog FROM information_schema.tables").await.unwrap();
    assert_eq!(column_strings(&listed, 0), vec!["pub"]);
    let listed = query(&mut alice, "SELECT database_name, path FROM duckdb_databases()").await.unwrap();
    assert_eq!((column_strings(&listed, 0), column_strings(&listed, 1)), (vec!["pub".to_string()], vec!["NULL".to_string()]));

    // A table grant adds INSERT on one table; write on the database allows DDL.
    admin_sql(&s, "GRANT INSERT ON TABLE pub.main.t TO alice").await;
    query(&mut alice, "INSERT INTO pub.main.t VALUES (10)").await.unwrap();
    admin_sql(&s, "GRANT WRITE ON DATABASE pub TO alice").await;
    query(&mut alice, "CREATE TABLE pub.main.mine AS SELECT 1 AS a").await.unwrap();
    let grants = query(&mut alice, "SHOW GRANTS").await.unwrap();
    assert_eq!(column_strings(&grants, 1), vec!["pub", "pub"]);

    // Revoking takes effect on the next statement of the open session.
    admin_sql(&s, "REVOKE ALL ON DATABASE pub FROM alice").await;
    admin_sql(&s, "REVOKE INSERT ON pub.main.t FROM alice").await;
    let e = query(&mut alice, "SELECT count(*) FROM pub.main.t").await.expect_err("revoked");
    assert!(denied(&e), "{e}");
    // Dropping the user ends what the session may do.
    admin_sql(&s, "GRANT READ ON DATABASE pub TO alice").await;
    query(&mut alice, "SELECT 1").await.unwrap();
    admin_sql(&s, "DROP USER alice").await;
    let e = query(&mut alice, "SELECT 1").await.expect_err("dropped user");
    assert!(e.to_string().contains("no longer exists") || e.to_string().contains("revoked token"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn users_are_administered_by_sql_and_http_and_audited() {
    let s = TestServer::start().await;
    admin_sql(&s, "CREATE USER carol PASSWORD 'carol-pw-123'").await;
    let c = reqwest::Client::new();
    // HTTP user endpoints run the same statements.
    let r = c
        .post(s.http_url("/api/v1/users"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"name": "dave", "password": "dave-pw-1234"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c.get(s.http_url("/api/v1/users")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    let users: Value = r.json().await.unwrap();
    let names: Vec<&str> = users["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["admin", "carol", "dave"]);
    // A non-superuser may change only their own password.
    let (status, _) = http(&s, ("carol", "carol-pw-123"), "ALTER USER carol PASSWORD 'carol-new-pw'").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = http(&s, ("carol", "carol-new-pw"), "ALTER USER admin PASSWORD 'hijacked-pw'").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = http(&s, ("carol", "carol-pw-123"), "SELECT 1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "old password no longer works");
    let r = c
        .post(s.http_url("/api/v1/grants"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"user": "dave", "database": "default", "privileges": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, body) = http(&s, ("admin", ADMIN_PASSWORD), "SHOW GRANTS FOR dave").await;
    assert_eq!(body["data"][0], json!(["dave", "default", "", "", "READ"]));
    // Audit rows reach the table (written in the background).
    let mut kinds = Vec::new();
    for _ in 0..50 {
        let (_, body) = http(&s, ("admin", ADMIN_PASSWORD), "SELECT DISTINCT kind FROM pond_system.main.audit_log ORDER BY 1").await;
        kinds = body["data"].as_array().map(|a| a.iter().map(|r| r[0].as_str().unwrap_or("").to_string()).collect()).unwrap_or_default();
        if ["auth_failed", "denied", "grant_change", "login", "user_change"].iter().all(|k| kinds.iter().any(|x| x == k)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for k in ["auth_failed", "denied", "grant_change", "login", "user_change"] {
        assert!(kinds.iter().any(|x| x == k), "audit kinds {kinds:?} lack {k}");
    }
    let (_, body) = http(&s, ("admin", ADMIN_PASSWORD), "SELECT detail FROM pond_system.main.audit_log").await;
    let text = body.to_string();
    for secret in ["carol-pw-123", "carol-new-pw", "dave-pw-1234", "hijacked-pw"] {
        assert!(!text.contains(secret), "audit log contains a password");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_tokens_work_on_every_protocol_and_rotate() {
    let s = TestServer::start().await;
    setup(&s).await;
    let c = reqwest::Client::new();
    let r = c
        .post(s.http_url("/api/v1/auth/tokens"))
        .basic_auth("alice", Some("alice-pw-123"))
        .json(&json!({"name": "ci", "databases": ["pub"], "permission": "read"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let (id, secret) = (created["id"].as_str().unwrap().to_string(), created["token"].as_str().unwrap().to_string());
    // HTTP: Bearer, Token, x-api-key, Basic with the token as password, ?p=.
    let q = json!({"sql": "SELECT count(*) AS n FROM pub.main.t"});
    let url = s.http_url("/api/v1/query");
    for req in [
        c.post(&url).bearer_auth(&secret),
        c.post(&url).header("authorization", format!("Token {secret}")),
        c.post(&url).header("x-api-key", &secret),
        c.post(&url).basic_auth("anything", Some(&secret)),
        c.post(format!("{url}?p={secret}")),
    ] {
        let r = req.json(&q).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Flight: the token directly as a bearer.
    let mut f = flight_bearer(&s, &secret).await;
    assert_eq!(column_strings(&query(&mut f, "SELECT count(*) FROM pub.main.t").await.unwrap(), 0), vec!["3"]);
    // The listing never shows the secret.
    let list = c.get(s.http_url("/api/v1/auth/tokens")).bearer_auth(&secret).send().await.unwrap().text().await.unwrap();
    assert!(list.contains(&id) && !list.contains(&secret));
    // Rotation: the old secret stops, the new one works.
    let r = c.post(s.http_url(&format!("/api/v1/auth/tokens/{id}/rotate"))).basic_auth("alice", Some("alice-pw-123")).send().await.unwrap();
    let new_secret = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    let r = c.post(&url).bearer_auth(&secret).json(&q).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let e = query(&mut f, "SELECT 1").await.expect_err("old secret");
    assert!(e.to_string().contains("invalid"), "{e}");
    let r = c.get(s.http_url("/api/v1/auth/verify")).bearer_auth(&new_secret).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["user"].as_str(), v["credential"].as_str()), (Some("alice"), Some("api_token")));
    // Revocation.
    let r = c.post(s.http_url(&format!("/api/v1/auth/tokens/{id}/revoke"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.post(&url).bearer_auth(&new_secret).json(&q).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_client_credentials_and_jwt() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let jwt = pond_auth::JwtConfig {
        hmac_secret: Some(JWT_SECRET.to_vec()),
        issuer: Some("https://idp.example".into()),
        audience: Some("pond".into()),
        ..Default::default()
    };
    let s = TestServer::start_with(|b| b.jwt(jwt)).await;
    setup(&s).await;
    let c = reqwest::Client::new();
    let r = c
        .post(s.http_url("/api/v1/auth/oauth2/clients"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"user": "alice", "databases": ["pub"], "permission": "read"}))
        .send()
        .await
        .unwrap();
    let client: Value = r.json().await.unwrap();
    let (cid, csecret) = (client["client_id"].as_str().unwrap(), client["client_secret"].as_str().unwrap());
    let token_url = s.http_url("/oauth2/token");
    let r = c
        .post(&token_url)
        .form(&[("grant_type", "client_credentials"), ("client_id", cid), ("client_secret", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = c.post(&token_url).basic_auth(cid, Some(csecret)).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tok: Value = r.json().await.unwrap();
    assert_eq!(tok["token_type"], "Bearer");
    let access = tok["access_token"].as_str().unwrap();
    let mut f = flight_bearer(&s, access).await;
    assert_eq!(column_strings(&query(&mut f, "SELECT count(*) FROM pub.main.t").await.unwrap(), 0), vec!["3"]);

    // JWT signed by the configured secret; claims checked.
    let now = chrono::Utc::now().timestamp();
    let make = |iss: &str, aud: &str, exp: i64| {
        encode(&Header::default(), &json!({"sub": "alice", "iss": iss, "aud": aud, "exp": exp}), &EncodingKey::from_secret(JWT_SECRET))
            .unwrap()
    };
    let good = make("https://idp.example", "pond", now + 300);
    let mut f = flight_bearer(&s, &good).await;
    assert_eq!(column_strings(&query(&mut f, "SELECT count(*) FROM pub.main.t").await.unwrap(), 0), vec!["3"]);
    let e = query(&mut f, "SELECT * FROM sec.main.secret").await.expect_err("grants apply to JWT users");
    assert!(denied(&e), "{e}");
    for (bad, why) in [
        (make("https://evil", "pond", now + 300), "issuer"),
        (make("https://idp.example", "other", now + 300), "audience"),
        (make("https://idp.example", "pond", now - 300), "expired"),
    ] {
        let r = c.post(s.http_url("/api/v1/query")).bearer_auth(&bad).json(&json!({"sql": "SELECT 1"})).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.text().await.unwrap().contains(why), "{why}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failed_logins_are_slowed_down() {
    let s = TestServer::start().await;
    admin_sql(&s, "CREATE USER erin PASSWORD 'erin-pw-1234'").await;
    for _ in 0..5 {
        let (status, _) = http(&s, ("erin", "wrong-password"), "SELECT 1").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let r = reqwest::Client::new()
        .post(s.http_url("/api/v1/query"))
        .basic_auth("erin", Some("erin-pw-1234"))
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = http(&s, ("erin", "erin-pw-1234"), "SELECT 1").await;
    assert_eq!(status, StatusCode::OK);
    // Flight handshakes count too (same source address).
    for _ in 0..5 {
        assert!(s.flight_as("erin", "nope-nope").await.is_err());
    }
    let e = s.flight_as("erin", "erin-pw-1234").await.expect_err("throttled");
    assert!(e.to_string().contains("too many failed logins"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn duckdb_cannot_reach_files_outside_the_data_dir_even_for_superusers() {
    let s = TestServer::start().await;
    let mut admin = s.flight().await;
    let e = query(&mut admin, "SELECT * FROM read_text('/etc/hostname')").await.expect_err("external access is off");
    assert!(e.to_string().contains("disabled") || e.to_string().contains("Permission"), "{e}");
    // Inside the data dir it works (e.g. a superuser's export).
    let dir = s.dir.path().join("tmp").join("t.csv");
    query(&mut admin, &format!("COPY (SELECT 42 AS x) TO '{}'", dir.display())).await.unwrap();
    assert!(dir.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn table_grants_die_with_the_table_and_follow_renames() {
    let s = TestServer::start().await;
    setup(&s).await;
    admin_sql(&s, "CREATE TABLE sec.main.orders AS SELECT 1 AS id").await;
    admin_sql(&s, "GRANT SELECT ON TABLE sec.main.orders TO alice").await;
    let mut alice = s.flight_as("alice", "alice-pw-123").await.unwrap();
    query(&mut alice, "SELECT * FROM sec.main.orders").await.unwrap();
    admin_sql(&s, "ALTER TABLE sec.main.orders RENAME TO orders2").await;
    query(&mut alice, "SELECT * FROM sec.main.orders2").await.unwrap();
    admin_sql(&s, "DROP TABLE sec.main.orders2").await;
    // A new table with the old name does not inherit the grant.
    admin_sql(&s, "CREATE TABLE sec.main.orders2 AS SELECT 'new' AS v").await;
    let e = query(&mut alice, "SELECT * FROM sec.main.orders2").await.expect_err("grant died with the table");
    assert!(denied(&e), "{e}");
    let (_, body) = http(&s, ("admin", ADMIN_PASSWORD), "SHOW GRANTS FOR alice").await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "only the database grant is left: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_group_grants() {
    let s = TestServer::start().await;
    setup(&s).await;
    for sql in ["CREATE ROLE auditors", "GRANT READ ON DATABASE sec TO auditors", "GRANT auditors TO alice"] {
        admin_sql(&s, sql).await;
    }
    let mut alice = s.flight_as("alice", "alice-pw-123").await.unwrap();
    assert_eq!(column_strings(&query(&mut alice, "SELECT v FROM sec.main.secret").await.unwrap(), 0), vec!["TOPSECRET"]);
    let (_, users) = http(&s, ("admin", ADMIN_PASSWORD), "SHOW USERS").await;
    let alice_row = users["data"].as_array().unwrap().iter().find(|r| r[0] == "alice").unwrap().clone();
    assert_eq!((alice_row[3].as_str(), alice_row[4].as_str()), (Some("false"), Some("auditors")));
    // A role cannot log in, and revoking the membership takes effect at once.
    assert!(s.flight_as("auditors", "").await.is_err());
    admin_sql(&s, "REVOKE auditors FROM alice").await;
    let e = query(&mut alice, "SELECT v FROM sec.main.secret").await.expect_err("membership revoked");
    assert!(denied(&e), "{e}");
    admin_sql(&s, "GRANT auditors TO alice").await;
    admin_sql(&s, "DROP ROLE auditors").await;
    assert!(denied(&query(&mut alice, "SELECT v FROM sec.main.secret").await.expect_err("role dropped")));
    let (status, body) = http(&s, ("admin", ADMIN_PASSWORD), "DROP ROLE alice").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// The count of `pond_sandbox_checks_total{verdict=…}` on /metrics.
async fn sandbox_checks(s: &TestServer, verdict: &str) -> u64 {
    let text = reqwest::Client::new()
        .get(s.http_url("/metrics"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("pond_sandbox_checks_total{{verdict=\"{verdict}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map(|v| v.trim().parse().unwrap()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn statements_differing_only_in_values_share_a_verdict_and_nothing_else_does() {
    let s = TestServer::start().await;
    setup(&s).await;
    let mut alice = s.flight_as("alice", "alice-pw-123").await.unwrap();
    let checked = sandbox_checks(&s, "checked").await;
    let r = query(&mut alice, "SELECT i FROM pub.main.t WHERE i = 1").await.unwrap();
    assert_eq!(column_strings(&r, 0), vec!["1"]);
    let shaped = sandbox_checks(&s, "shape").await;
    let r = query(&mut alice, "SELECT i FROM pub.main.t WHERE i = 2").await.unwrap();
    assert_eq!(column_strings(&r, 0), vec!["2"], "the second value's own rows, not the first's");
    assert_eq!(sandbox_checks(&s, "shape").await, shaped + 1, "the second statement reused the first's verdict");
    assert_eq!(sandbox_checks(&s, "checked").await, checked + 1);

    // Another table, another database, a string where a table goes: checked, denied.
    for sql in [
        "SELECT v FROM sec.main.secret WHERE 1 = 1",
        "SELECT i FROM pub.main.leaky WHERE i = 1",
        "SELECT * FROM read_text('/etc/passwd') WHERE 1 = 1",
    ] {
        let e = query(&mut alice, sql).await.expect_err(sql);
        assert!(denied(&e), "{sql}: {e}");
    }
    // A statement the sandbox rewrote (a listing limited to alice's objects) is
    // never reused by shape: with another value it is rewritten again.
    let sql = |db: &str| format!("SELECT DISTINCT table_catalog FROM information_schema.tables WHERE table_catalog <> '{db}'");
    assert_eq!(column_strings(&query(&mut alice, &sql("nothing")).await.unwrap(), 0), vec!["pub"]);
    assert!(column_strings(&query(&mut alice, &sql("pub")).await.unwrap(), 0).is_empty(), "sec stays hidden");

    // A revoke applies to the next statement of every shape.
    admin_sql(&s, "REVOKE READ ON DATABASE pub FROM alice").await;
    let e = query(&mut alice, "SELECT i FROM pub.main.t WHERE i = 3").await.expect_err("revoked");
    assert!(denied(&e), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_requests_of_one_caller_reuse_a_session_that_only_read() {
    let s = TestServer::start().await;
    setup(&s).await;
    admin_sql(&s, "CREATE USER bob PASSWORD 'bob-pw-12345'").await;
    admin_sql(&s, "GRANT READ ON DATABASE pub TO bob").await;
    let alice = ("alice", "alice-pw-123");
    let sql = "SELECT count(*) AS n FROM pub.main.t";
    let (status, body) = http(&s, alice, sql).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The second request runs on the first one's session: its verdict is still there.
    let cached = sandbox_checks(&s, "cached").await;
    let (status, body) = http(&s, alice, sql).await;
    assert_eq!((status, body["data"][0][0].clone()), (StatusCode::OK, json!(3)), "{body}");
    assert_eq!(sandbox_checks(&s, "cached").await, cached + 1, "alice's session was reused");
    // Another caller never gets it.
    let checked = sandbox_checks(&s, "checked").await;
    let (status, _) = http(&s, ("bob", "bob-pw-12345"), sql).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sandbox_checks(&s, "checked").await, checked + 1, "bob's statement was checked on a session of his own");
    // A request that leaves state behind (a temporary table) is not reused:
    // each request still starts clean.
    admin_sql(&s, "CREATE TEMP TABLE scratch AS SELECT 42 AS v").await;
    let (status, body) = http(&s, ("admin", ADMIN_PASSWORD), "SELECT v FROM scratch").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A revoke reaches a reused session at its next statement.
    admin_sql(&s, "REVOKE READ ON DATABASE pub FROM alice").await;
    let (status, body) = http(&s, alice, sql).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}
