//! The web console's HTTP side against a real server: login through the form
//! (its own CSRF cookie), the session cookie's attributes, API calls with the
//! cookie and the session's CSRF token (refused without it), logout, and a
//! non-superuser kept out of the administration page and other databases.

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{TestServer, ADMIN_PASSWORD};

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The `name=value` part and the attributes of the Set-Cookie header for `name`.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
    headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find(|v| v.starts_with(&format!("{name}="))).map(|v| {
        let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
        (pair.to_string(), attrs.to_string())
    })
}

/// The value of `<input … name="csrf" value="…">` or `<meta name="pond-csrf" content="…">`.
fn token_in(html: &str, marker: &str, attr: &str) -> String {
    let at = html.find(marker).unwrap_or_else(|| panic!("{marker} not in page: {html}"));
    let rest = &html[at..];
    let v = rest.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
    rest[v..v + rest[v..].find('"').unwrap()].to_string()
}

struct Login {
    cookie: String,
    csrf: String,
}

async fn login(s: &TestServer, user: &str, password: &str) -> Result<Login, (StatusCode, String)> {
    login_with(&client(), s, user, password).await
}

async fn login_with(c: &reqwest::Client, s: &TestServer, user: &str, password: &str) -> Result<Login, (StatusCode, String)> {
    let tls = s.server().tls_enabled();
    let page = c.get(s.http_url("/console/login")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let (login_cookie, attrs) = set_cookie(page.headers(), "pond_console_login").expect("login form cookie");
    assert!(attrs.contains("HttpOnly") && attrs.contains("SameSite=Strict"), "{attrs}");
    let html = page.text().await.unwrap();
    let form_token = token_in(&html, "name=\"csrf\"", "value");
    let r = c
        .post(s.http_url("/console/login"))
        .header("cookie", login_cookie)
        .form(&[("user", user), ("password", password), ("csrf", form_token.as_str())])
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::SEE_OTHER {
        return Err((r.status(), r.text().await.unwrap()));
    }
    assert_eq!(r.headers()[LOCATION], "/console/");
    let (cookie, attrs) = set_cookie(r.headers(), "pond_console").expect("session cookie");
    for want in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(attrs.contains(want), "session cookie lacks {want}: {attrs}");
    }
    assert_eq!(attrs.contains("Secure"), tls, "the cookie is Secure exactly under TLS: {attrs}");
    let page = c.get(s.http_url("/console/")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let csrf = token_in(&html, "name=\"pond-csrf\"", "content");
    Ok(Login { cookie, csrf })
}

async fn console_query(s: &TestServer, l: &Login, sql: &str, csrf: Option<&str>) -> reqwest::Response {
    let mut req = client().post(s.http_url("/api/v1/query")).header("cookie", &l.cookie).json(&json!({"sql": sql}));
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_login_cookie_csrf_and_logout() {
    let s = TestServer::start().await;
    // Pages need a session.
    let r = client().get(s.http_url("/console/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/console/login");

    let (status, body) = login(&s, "admin", "wrong password").await.err().expect("wrong password refused");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Wrong user name or password"), "{body}");
    // A login form posted without the form's cookie (another site's form) is refused.
    let r = client()
        .post(s.http_url("/console/login"))
        .form(&[("user", "admin"), ("password", ADMIN_PASSWORD), ("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(r.headers(), "pond_console").is_none());

    let l = login(&s, "admin", ADMIN_PASSWORD).await.expect("admin logs in");
    // The API runs as the session's user, with the CSRF token.
    let r = console_query(&s, &l, "SELECT current_user AS u, 41 + 1 AS n", Some(&l.csrf)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"][0][1], 42, "{v}");
    // Without it, or with another token, state-changing requests stop before any handler.
    for bad in [None, Some("not-the-token"), Some("")] {
        let r = console_query(&s, &l, "CREATE TABLE csrf_victim (i INTEGER)", bad).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{bad:?}");
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "csrf_failed");
    }
    let r =
        console_query(&s, &l, "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'csrf_victim'", Some(&l.csrf)).await;
    assert_eq!(r.json::<Value>().await.unwrap()["data"][0][0], 0, "the refused statement must not have run");
    // Parquet downloads run as the session's user too, and need the token.
    let export = |csrf: Option<&str>| {
        let mut req = client()
            .post(s.http_url("/console/api/export"))
            .header("cookie", &l.cookie)
            .json(&json!({"sql": "SELECT range AS i, 'v' || range AS s FROM range(100000)"}));
        if let Some(t) = csrf {
            req = req.header("x-csrf-token", t.to_string());
        }
        req.send()
    };
    assert_eq!(export(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    let r = export(Some(&l.csrf)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/vnd.apache.parquet");
    let bytes = r.bytes().await.unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap();
    let mut rows = 0usize;
    let mut sum = 0i64;
    for b in reader {
        let b = b.unwrap();
        rows += b.num_rows();
        let col = b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().expect("BIGINT column");
        sum += col.iter().flatten().sum::<i64>();
    }
    assert_eq!((rows, sum), (100_000, 99_999 * 100_000 / 2));
    // InfluxDB v1's /query changes state even as a GET: it needs the token too.
    let r = client().get(s.http_url("/query?q=CREATE%20DATABASE%20csrf_db")).header("cookie", &l.cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = console_query(&s, &l, "SELECT count(*) FROM (SHOW DATABASES) WHERE database_name = 'csrf_db'", Some(&l.csrf)).await;
    assert_eq!(r.json::<Value>().await.unwrap()["data"][0][0], 0, "the refused GET must not have created a database");
    // Other GETs with the cookie need no token.
    let r = client().get(s.http_url("/api/v1/auth/verify")).header("cookie", &l.cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["user"].as_str(), v["credential"].as_str()), (Some("admin"), Some("session")));
    // The catalog for completion.
    let r = client().get(s.http_url("/console/api/catalog")).header("cookie", &l.cookie).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(v["databases"].as_array().unwrap().iter().any(|d| d["name"] == "default"), "{v}");
    // Pages carry the security headers.
    let r = client().get(s.http_url("/console/admin")).header("cookie", &l.cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    // Logout needs the token too.
    let r = client().post(s.http_url("/console/logout")).header("cookie", &l.cookie).form(&[("csrf", "nope")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r =
        client().post(s.http_url("/console/logout")).header("cookie", &l.cookie).form(&[("csrf", l.csrf.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (cleared, attrs) = set_cookie(r.headers(), "pond_console").expect("cookie cleared");
    assert_eq!(cleared, "pond_console=");
    assert!(attrs.contains("Max-Age=0"), "{attrs}");
    // The old cookie is worth nothing now.
    let r = console_query(&s, &l, "SELECT 1", Some(&l.csrf)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // No Basic challenge for the console's calls (a browser would pop up a password dialog).
    assert!(!r.headers().contains_key("www-authenticate"));
    let r = client().get(s.http_url("/api/v1/auth/verify")).send().await.unwrap();
    assert!(r.headers().contains_key("www-authenticate"), "other clients still get the challenge");
    let r = client().get(s.http_url("/console/")).header("cookie", &l.cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_non_superuser_is_kept_out_of_admin_and_other_databases() {
    let s = TestServer::start().await;
    let admin = login(&s, "admin", ADMIN_PASSWORD).await.expect("admin logs in");
    for sql in [
        "CREATE DATABASE shop",
        "CREATE DATABASE secret_db",
        "CREATE TABLE shop.main.orders (id INTEGER, amount DOUBLE)",
        "CREATE TABLE secret_db.main.salaries (name VARCHAR, pay DOUBLE)",
        "CREATE USER bob PASSWORD 'bob-password-1'",
        "GRANT READ ON DATABASE shop TO bob",
    ] {
        let r = console_query(&s, &admin, sql, Some(&admin.csrf)).await;
        assert_eq!(r.status(), StatusCode::OK, "{sql}: {}", r.text().await.unwrap());
    }
    let bob = login(&s, "bob", "bob-password-1").await.expect("bob logs in");
    let html = client().get(s.http_url("/console/")).header("cookie", &bob.cookie).send().await.unwrap().text().await.unwrap();
    assert!(!html.contains("/console/admin"), "no administration link for bob");
    // The administration page is refused by the server, not only hidden.
    let r = client().get(s.http_url("/console/admin")).header("cookie", &bob.cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // So are the administration APIs behind it (the engine decides).
    let r = client().get(s.http_url("/api/v1/users")).header("cookie", &bob.cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", r.text().await.unwrap());
    let r = console_query(&s, &bob, "SHOW SECRETS", Some(&bob.csrf)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The catalog lists only what bob may see.
    let v: Value =
        client().get(s.http_url("/console/api/catalog")).header("cookie", &bob.cookie).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = v["databases"].as_array().unwrap().iter().filter_map(|d| d["name"].as_str()).collect();
    assert!(names.contains(&"shop") && !names.contains(&"secret_db"), "{names:?}");
    // Queries run with bob's grants.
    let r = console_query(&s, &bob, "SELECT count(*) FROM shop.main.orders", Some(&bob.csrf)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = console_query(&s, &bob, "SELECT * FROM secret_db.main.salaries", Some(&bob.csrf)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", r.text().await.unwrap());
    let r = client()
        .post(s.http_url("/console/api/export"))
        .header("cookie", &bob.cookie)
        .header("x-csrf-token", &bob.csrf)
        .json(&json!({"sql": "SELECT * FROM secret_db.main.salaries"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", r.text().await.unwrap());
    let r = console_query(&s, &bob, "INSERT INTO shop.main.orders VALUES (1, 2.0)", Some(&bob.csrf)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "read-only grant: {}", r.text().await.unwrap());
    // A superuser flag taken away counts at once.
    let r = console_query(&s, &admin, "CREATE USER carol PASSWORD 'carol-password-1' SUPERUSER", Some(&admin.csrf)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let carol = login(&s, "carol", "carol-password-1").await.expect("carol logs in");
    let r = client().get(s.http_url("/console/admin")).header("cookie", &carol.cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = console_query(&s, &admin, "ALTER USER carol NOSUPERUSER", Some(&admin.csrf)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = client().get(s.http_url("/console/admin")).header("cookie", &carol.cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_assets_are_embedded() {
    let s = TestServer::start().await;
    let r = client().get(s.http_url("/console/assets/editor.js")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(r.text().await.unwrap().contains("RecordBatchReader"));
    let r = client().get(s.http_url("/console/assets/../Cargo.toml")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_cookie_is_secure_under_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = pond::tls::generate_dev_certs(dir.path(), &Default::default()).expect("certificates");
    let s = TestServer::start_with(|b| b.tls(certs.settings())).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca_cert).unwrap()).unwrap();
    let c = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let l = login_with(&c, &s, "admin", ADMIN_PASSWORD).await.expect("admin logs in over TLS");
    let r = c
        .post(s.http_url("/api/v1/query"))
        .header("cookie", &l.cookie)
        .header("x-csrf-token", &l.csrf)
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}
